//! Devices and their credentials, and the server's own MQTT secret.

use sqlx::PgPool;

use crate::access::valid_device_name;
use crate::error::Error;
use crate::password;

/// The PostgreSQL notification channel on which a change to a device is announced, with the device's name
/// as payload: the embedded broker listens on it to close a revoked device's open connections and to give
/// a device whose machines changed its new rights at once.
pub const CHANGED: &str = "oee_device_changed";

/// What the broker needs to let a device in.
#[derive(Debug, Clone)]
pub struct DeviceLogin {
    pub name: String,
    pub mqtt_password_digest: String,
    pub active: bool,
    /// Topic segments of its machines: each machine's id and, when it has one, its topic name.
    pub machines: Vec<String>,
}

/// A device as listed to administrators.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct DeviceSummary {
    pub id: i32,
    pub name: String,
    pub active: bool,
    pub machines: Vec<String>,
}

/// A device just created, with the secrets shown once and never again.
#[derive(Debug, Clone)]
pub struct NewDevice {
    pub id: i32,
    pub name: String,
    pub token: String,
    pub mqtt_password: String,
}

/// The server's own MQTT secret (made by the migrations on first start).
pub async fn server_secret(pool: &PgPool) -> Result<String, Error> {
    let s: Option<String> =
        sqlx::query_scalar("SELECT value FROM server_secret WHERE name = 'mqtt'").fetch_optional(pool).await?;
    s.ok_or_else(|| Error::Invalid("the database has no server secret: run the migrations".into()))
}

/// A device's MQTT login by its name (its MQTT user name).
pub async fn mqtt_login(pool: &PgPool, name: &str) -> Result<Option<DeviceLogin>, Error> {
    let row: Option<(String, String, bool, Vec<String>)> = sqlx::query_as(
        "SELECT d.name, d.mqtt_password_digest, d.active, \
                COALESCE(array_agg(s.segment) FILTER (WHERE s.segment IS NOT NULL), '{}') \
           FROM device d LEFT JOIN device_machine_segment s ON s.device_id = d.id \
          WHERE d.name = $1 \
          GROUP BY d.id",
    )
    .bind(name)
    .fetch_optional(pool)
    .await?;
    Ok(row.map(|(name, mqtt_password_digest, active, machines)| DeviceLogin {
        name,
        mqtt_password_digest,
        active,
        machines,
    }))
}

/// The active device holding the HTTP bearer `token`, with its machines' topic segments (ids and topic
/// names).
pub async fn by_token(pool: &PgPool, token: &str) -> Result<Option<(String, Vec<String>)>, Error> {
    let row: Option<(String, Vec<String>)> = sqlx::query_as(
        "SELECT d.name, COALESCE(array_agg(s.segment) FILTER (WHERE s.segment IS NOT NULL), '{}') \
           FROM device d LEFT JOIN device_machine_segment s ON s.device_id = d.id \
          WHERE d.token_digest = $1 AND d.active \
          GROUP BY d.id",
    )
    .bind(password::digest(token))
    .fetch_optional(pool)
    .await?;
    Ok(row)
}

/// Creates a device for `machines` (ids) with a new token and MQTT password.
pub async fn add(pool: &PgPool, name: &str, machines: &[i32]) -> Result<NewDevice, Error> {
    if !valid_device_name(name) {
        return Err(Error::Invalid(format!(
            "`{name}` cannot be a device name: use 1 to 64 letters, digits, `-`, `_` or `.` (it is the device's \
             MQTT user name and a topic level)"
        )));
    }
    let token = password::new_secret();
    let mqtt_password = password::new_secret();
    let mut tx = pool.begin().await?;
    let id: Option<i32> = sqlx::query_scalar(
        "INSERT INTO device (name, mqtt_password_digest, token_digest) VALUES ($1, $2, $3) \
         ON CONFLICT (name) DO NOTHING RETURNING id",
    )
    .bind(name)
    .bind(password::digest(&mqtt_password))
    .bind(password::digest(&token))
    .fetch_optional(&mut *tx)
    .await?;
    let id = id.ok_or_else(|| Error::Conflict(format!("a device named `{name}` exists already")))?;
    sqlx::query(
        "INSERT INTO device_machine (device_id, machine_id) SELECT $1, unnest($2::int[]) ON CONFLICT DO NOTHING",
    )
    .bind(id)
    .bind(machines)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(NewDevice { id, name: name.to_string(), token, mqtt_password })
}

/// Every device with its machines' names.
pub async fn list(pool: &PgPool) -> Result<Vec<DeviceSummary>, Error> {
    Ok(sqlx::query_as(
        "SELECT d.id, d.name, d.active, \
                COALESCE(array_agg(m.name ORDER BY m.id) FILTER (WHERE m.id IS NOT NULL), '{}') AS machines \
           FROM device d LEFT JOIN device_machine dm ON dm.device_id = d.id LEFT JOIN machine m ON m.id = dm.machine_id \
          GROUP BY d.id ORDER BY d.id",
    )
    .fetch_all(pool)
    .await?)
}

/// Revokes a device (by name or id): its token and MQTT password stop working at once for new
/// connections and requests, and the embedded broker closes its open connections (told on [`CHANGED`]).
/// The row stays, for the record.
pub async fn revoke(pool: &PgPool, device: &str) -> Result<String, Error> {
    let mut tx = pool.begin().await?;
    let name: Option<String> = sqlx::query_scalar(
        "UPDATE device SET active = false, revoked_at = COALESCE(revoked_at, now()) \
          WHERE name = $1 OR id::text = $1 RETURNING name",
    )
    .bind(device.trim())
    .fetch_optional(&mut *tx)
    .await?;
    let name =
        name.ok_or_else(|| Error::NotFound(format!("there is no device `{device}`: see `oee-server device list`")))?;
    announce(&mut tx, &name).await?;
    tx.commit().await?;
    Ok(name)
}

/// Gives a device (by name or id) exactly the machines `machines` (ids) and returns its name; open
/// connections of the device on the embedded broker get the new rights at once (told on [`CHANGED`]).
pub async fn set_machines(pool: &PgPool, device: &str, machines: &[i32]) -> Result<String, Error> {
    let mut tx = pool.begin().await?;
    let found: Option<(i32, String)> =
        sqlx::query_as("SELECT id, name FROM device WHERE name = $1 OR id::text = $1 FOR UPDATE")
            .bind(device.trim())
            .fetch_optional(&mut *tx)
            .await?;
    let (id, name) =
        found.ok_or_else(|| Error::NotFound(format!("there is no device `{device}`: see `oee-server device list`")))?;
    let missing: Vec<i32> = sqlx::query_scalar(
        "SELECT m FROM unnest($1::int[]) AS m WHERE NOT EXISTS (SELECT 1 FROM machine WHERE id = m)",
    )
    .bind(machines)
    .fetch_all(&mut *tx)
    .await?;
    if !missing.is_empty() {
        let ids: Vec<String> = missing.iter().map(i32::to_string).collect();
        return Err(Error::field(
            "machines",
            format!("there is no machine {}: see `oee-server machine list`", ids.join(", ")),
        ));
    }
    sqlx::query("DELETE FROM device_machine WHERE device_id = $1").bind(id).execute(&mut *tx).await?;
    sqlx::query(
        "INSERT INTO device_machine (device_id, machine_id) SELECT $1, unnest($2::int[]) ON CONFLICT DO NOTHING",
    )
    .bind(id)
    .bind(machines)
    .execute(&mut *tx)
    .await?;
    announce(&mut tx, &name).await?;
    tx.commit().await?;
    Ok(name)
}

/// The active devices among `names`, each with its machines' topic segments; a name missing from the
/// answer is revoked or unknown. The embedded broker re-checks its connected devices with this.
pub async fn standing(pool: &PgPool, names: &[String]) -> Result<Vec<(String, Vec<String>)>, Error> {
    Ok(sqlx::query_as(
        "SELECT d.name, COALESCE(array_agg(s.segment) FILTER (WHERE s.segment IS NOT NULL), '{}') \
           FROM device d LEFT JOIN device_machine_segment s ON s.device_id = d.id \
          WHERE d.name = ANY($1) AND d.active \
          GROUP BY d.id",
    )
    .bind(names)
    .fetch_all(pool)
    .await?)
}

/// Announces on [`CHANGED`] that the device `name` changed, when the transaction commits.
async fn announce(tx: &mut sqlx::Transaction<'_, sqlx::Postgres>, name: &str) -> Result<(), Error> {
    sqlx::query("SELECT pg_notify($1, $2)").bind(CHANGED).bind(name).execute(&mut **tx).await?;
    Ok(())
}

/// An ACL file for an external Mosquitto (`acl_file`) giving each active device the rights the embedded
/// broker's guard gives it on our topics: publish its own machines' commands (not `session`), read their
/// status and its own reply topics. Mosquitto denies what is not listed, so topics outside `oee/` are not
/// granted to devices there. The server's own user (`server_user`) may do anything.
pub async fn mosquitto_acl(pool: &PgPool, server_user: &str) -> Result<String, Error> {
    use crate::topic::{self, CommandKind};
    let devices: Vec<(String, Vec<String>)> = sqlx::query_as(
        "SELECT d.name, COALESCE(array_agg(s.segment ORDER BY s.segment) FILTER (WHERE s.segment IS NOT NULL), '{}') \
           FROM device d LEFT JOIN device_machine_segment s ON s.device_id = d.id \
          WHERE d.active GROUP BY d.id ORDER BY d.name",
    )
    .fetch_all(pool)
    .await?;
    let mut out = String::from(
        "# Written by `oee-server device mosquitto-acl`: write it again after adding or revoking a device.\n",
    );
    out.push_str(&format!("\nuser {server_user}\ntopic readwrite #\n"));
    for (name, machines) in devices {
        out.push_str(&format!("\nuser {name}\n"));
        for m in &machines {
            for kind in CommandKind::ALL.into_iter().filter(|k| *k != CommandKind::Session) {
                out.push_str(&format!("topic write {}\n", topic::command(m, kind)));
            }
            out.push_str(&format!("topic read {}\n", topic::status(m)));
        }
        out.push_str(&format!("topic read {}#\n", crate::access::reply_prefix(&name)));
    }
    Ok(out)
}
