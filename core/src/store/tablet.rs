//! Tablets (`input_device`) and their operator sessions: registration and pairing (configuration, written
//! by the bridge and the CLI), what the tablet API reads, and the session writes ingest makes under the
//! machine's row lock.

use chrono::{DateTime, Utc};
use sqlx::{PgPool, Postgres, Transaction};

use crate::error::Error;
use crate::verdict::Refusal;

/// A tablet as the tablet API sees it.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct Tablet {
    pub id: i32,
    pub uuid: String,
    pub name: String,
    pub machine_id: Option<i32>,
    pub machine_name: Option<String>,
    /// The open session's user, when someone is logged in.
    pub session_id: Option<i32>,
    pub user_id: Option<i32>,
    pub user_name: Option<String>,
    /// When the tablet last asked for its state (recorded at most about once a minute).
    pub last_seen_at: Option<DateTime<Utc>>,
}

/// Tablets by UUID, by id, or all of them (neither given), by id.
async fn tablets(pool: &PgPool, uuid: Option<&str>, id: Option<i32>) -> Result<Vec<Tablet>, Error> {
    Ok(sqlx::query_as(
        "SELECT d.id, d.uuid, d.name, d.machine_id, m.name AS machine_name, \
                d.active_user_session_id AS session_id, s.user_id, u.username AS user_name, d.last_seen_at \
         FROM input_device d \
         LEFT JOIN machine m ON m.id = d.machine_id \
         LEFT JOIN user_session s ON s.id = d.active_user_session_id \
         LEFT JOIN app_user u ON u.id = s.user_id \
         WHERE ($1::text IS NULL OR d.uuid = $1) AND ($2::int4 IS NULL OR d.id = $2) \
         ORDER BY d.id",
    )
    .bind(uuid)
    .bind(id)
    .fetch_all(pool)
    .await?)
}

/// The tablet with this UUID, if it is registered.
pub async fn tablet_by_uuid(pool: &PgPool, uuid: &str) -> Result<Option<Tablet>, Error> {
    Ok(tablets(pool, Some(uuid), None).await?.pop())
}

/// The tablet with this id, if there is one.
pub async fn tablet_by_id(pool: &PgPool, id: i32) -> Result<Option<Tablet>, Error> {
    Ok(tablets(pool, None, Some(id)).await?.pop())
}

/// Every tablet, by id.
pub async fn list_tablets(pool: &PgPool) -> Result<Vec<Tablet>, Error> {
    tablets(pool, None, None).await
}

/// Records that the tablet asked for its state at `now`, unless that was already recorded less than a
/// minute before (so a tablet polling every few seconds writes about once a minute).
pub async fn note_tablet_seen(pool: &PgPool, tablet_id: i32, now: DateTime<Utc>) -> Result<(), Error> {
    sqlx::query(
        "UPDATE input_device SET last_seen_at = $2 \
         WHERE id = $1 AND (last_seen_at IS NULL OR last_seen_at <= $2 - interval '1 minute')",
    )
    .bind(tablet_id)
    .bind(now)
    .execute(pool)
    .await?;
    Ok(())
}

/// Renames the tablet `tablet_id`: 1 to 100 characters, unique, and not `Tablet <n>` for another tablet's
/// number (new tablets are named so).
pub async fn rename_tablet(pool: &PgPool, tablet_id: i32, name: &str) -> Result<(), Error> {
    let name = name.trim();
    if name.is_empty() || name.chars().count() > 100 {
        return Err(Error::field("name", "a tablet's name must have 1 to 100 characters"));
    }
    if let Some(n) = name.strip_prefix("Tablet ").and_then(|n| n.parse::<i64>().ok())
        && n != i64::from(tablet_id)
    {
        return Err(Error::field(
            "name",
            format!("`{name}` is kept for the tablet numbered {n} (new tablets are named so): choose another name"),
        ));
    }
    let done = sqlx::query("UPDATE input_device SET name = $2 WHERE id = $1")
        .bind(tablet_id)
        .bind(name)
        .execute(pool)
        .await
        .map_err(|e| match &e {
            sqlx::Error::Database(d) if d.is_unique_violation() => {
                Error::field("name", format!("a tablet named `{name}` already exists: choose another name"))
            }
            _ => Error::Database(e),
        })?;
    if done.rows_affected() == 0 {
        return Err(Error::NotFound(format!("there is no tablet {tablet_id}: see the list of tablets")));
    }
    Ok(())
}

/// Who may register as a new tablet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// Any new UUID (the reference system's behaviour, `tablets.open_registration`).
    Open,
    /// Only while a pairing window is open, at most this many tablets per window.
    Window { max_new: u32 },
}

/// Opens the pairing window for `minutes` from `now` (counting registrations afresh); returns when it closes.
pub async fn open_pairing_window(pool: &PgPool, now: DateTime<Utc>, minutes: u32) -> Result<DateTime<Utc>, Error> {
    let until = now + chrono::Duration::minutes(i64::from(minutes.clamp(1, 24 * 60)));
    sqlx::query(
        "INSERT INTO tablet_pairing_window (open_until, registered) VALUES ($1, 0) \
         ON CONFLICT (singleton) DO UPDATE SET open_until = $1, registered = 0",
    )
    .bind(until)
    .execute(pool)
    .await?;
    Ok(until)
}

/// Closes the pairing window.
pub async fn close_pairing_window(pool: &PgPool) -> Result<(), Error> {
    sqlx::query("DELETE FROM tablet_pairing_window").execute(pool).await?;
    Ok(())
}

/// Until when the pairing window is open and how many tablets registered in it, when it is open.
pub async fn pairing_window(pool: &PgPool) -> Result<Option<(DateTime<Utc>, i32)>, Error> {
    Ok(sqlx::query_as("SELECT open_until, registered FROM tablet_pairing_window WHERE open_until > now()")
        .fetch_optional(pool)
        .await?)
}

/// The tablet with this UUID, registered now as "Tablet <id>" when it is new and `admission` lets it in
/// (`None` when it does not). A new tablet is paired with the first active machine (by id) that has no tablet
/// when `auto_pair` is on.
pub async fn register_tablet(
    pool: &PgPool,
    uuid: &str,
    auto_pair: bool,
    admission: Admission,
) -> Result<Option<Tablet>, Error> {
    if let Some(t) = tablet_by_uuid(pool, uuid).await? {
        return Ok(Some(t));
    }
    if let Admission::Window { max_new } = admission {
        // One statement decides, so a burst of new tablets cannot register more than the window allows.
        let admitted: Option<i32> = sqlx::query_scalar(
            "UPDATE tablet_pairing_window SET registered = registered + 1 \
              WHERE open_until > now() AND registered < $1 RETURNING registered",
        )
        .bind(i32::try_from(max_new).unwrap_or(i32::MAX))
        .fetch_optional(pool)
        .await?;
        if admitted.is_none() {
            return Ok(None);
        }
    }
    let inserted: Option<i32> = sqlx::query_scalar(
        "WITH n AS (SELECT nextval(pg_get_serial_sequence('input_device', 'id'))::int4 AS id) \
         INSERT INTO input_device (id, uuid, name) SELECT id, $1, 'Tablet ' || id FROM n \
         ON CONFLICT DO NOTHING RETURNING id",
    )
    .bind(uuid)
    .fetch_optional(pool)
    .await?;
    if let (Some(id), true) = (inserted, auto_pair) {
        // Two tablets registering at once may pick the same machine: the unique pairing lets one win and
        // the other tries the next free machine.
        for _ in 0..3 {
            let r = sqlx::query(
                "UPDATE input_device SET machine_id = ( \
                     SELECT m.id FROM machine m WHERE m.active \
                       AND NOT EXISTS (SELECT 1 FROM input_device x WHERE x.machine_id = m.id) \
                     ORDER BY m.id LIMIT 1) \
                 WHERE id = $1 AND machine_id IS NULL",
            )
            .bind(id)
            .execute(pool)
            .await;
            match r {
                Err(sqlx::Error::Database(d)) if d.is_unique_violation() => continue,
                other => {
                    other?;
                    break;
                }
            }
        }
    }
    tablet_by_uuid(pool, uuid)
        .await?
        .map(Some)
        .ok_or_else(|| Error::Invalid(format!("tablet `{uuid}` could not be registered: its name is taken")))
}

/// A machine a tablet may be paired with.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct PairingChoice {
    pub id: i32,
    pub name: String,
    /// Whether another tablet is paired with it.
    pub paired: bool,
}

/// Active machines, by id, and whether each has a tablet.
pub async fn pairing_choices(pool: &PgPool) -> Result<Vec<PairingChoice>, Error> {
    Ok(sqlx::query_as(
        "SELECT m.id, m.name, EXISTS (SELECT 1 FROM input_device d WHERE d.machine_id = m.id) AS paired \
         FROM machine m WHERE m.active ORDER BY m.id",
    )
    .fetch_all(pool)
    .await?)
}

/// Pairs a tablet with a machine (or unpairs it with `None`). Refused while someone is logged in on the
/// tablet, and when the machine has another tablet.
pub async fn pair_tablet(pool: &PgPool, tablet_id: i32, machine_id: Option<i32>) -> Result<(), Error> {
    let mut tx = pool.begin().await?;
    let Some((current, session)) = lock_tablet(&mut tx, tablet_id).await? else {
        return Err(Error::NotFound(format!("there is no tablet {tablet_id} (oee-server tablet list shows them)")));
    };
    if current == machine_id {
        return Ok(());
    }
    if session.is_some() {
        return Err(Error::Conflict(format!(
            "someone is logged in on tablet {tablet_id}: log them out first (POST /api/force-logout/{tablet_id})"
        )));
    }
    if let Some(m) = machine_id {
        let exists: bool = sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM machine WHERE id = $1)")
            .bind(m)
            .fetch_one(&mut *tx)
            .await?;
        if !exists {
            return Err(Error::NotFound(format!("there is no machine {m} (oee-server machine list shows them)")));
        }
    }
    sqlx::query("UPDATE input_device SET machine_id = $2 WHERE id = $1")
        .bind(tablet_id)
        .bind(machine_id)
        .execute(&mut *tx)
        .await
        .map_err(|e| match &e {
            sqlx::Error::Database(d) if d.is_unique_violation() => Error::Conflict(format!(
                "Machine already assigned to another device: machine {} already has a tablet; unpair that one first",
                machine_id.unwrap_or_default()
            )),
            _ => Error::Database(e),
        })?;
    tx.commit().await?;
    Ok(())
}

/// Logs `user_id` in on the tablet, closing its earlier session; the tablet must be paired with
/// `machine_id` (whose row the caller has locked). Returns the new session's id.
pub async fn begin_session(
    tx: &mut Transaction<'_, Postgres>,
    tablet_id: i32,
    machine_id: i32,
    user_id: i32,
    at: DateTime<Utc>,
) -> Result<Result<i32, Refusal>, Error> {
    if let Err(r) = paired_session(tx, tablet_id, machine_id).await? {
        return Ok(Err(r));
    }
    close_sessions(tx, tablet_id, at).await?;
    let session: i32 = sqlx::query_scalar(
        "INSERT INTO user_session (user_id, input_device_id, time_login) VALUES ($1, $2, $3) RETURNING id",
    )
    .bind(user_id)
    .bind(tablet_id)
    .bind(at)
    .fetch_one(&mut **tx)
    .await?;
    sqlx::query("UPDATE input_device SET active_user_id = $2, active_user_session_id = $3 WHERE id = $1")
        .bind(tablet_id)
        .bind(user_id)
        .bind(session)
        .execute(&mut **tx)
        .await?;
    sqlx::query("UPDATE machine SET active_user_id = $2 WHERE id = $1")
        .bind(machine_id)
        .bind(user_id)
        .execute(&mut **tx)
        .await?;
    Ok(Ok(session))
}

/// Logs the tablet's operator out; refused when nobody is logged in on it.
pub async fn end_session(
    tx: &mut Transaction<'_, Postgres>,
    tablet_id: i32,
    machine_id: i32,
    at: DateTime<Utc>,
) -> Result<Result<(), Refusal>, Error> {
    match paired_session(tx, tablet_id, machine_id).await? {
        Err(r) => return Ok(Err(r)),
        Ok(None) => return Ok(Err(Refusal::NotLoggedIn(tablet_id))),
        Ok(Some(_)) => {}
    }
    close_sessions(tx, tablet_id, at).await?;
    sqlx::query("UPDATE machine SET active_user_id = NULL WHERE id = $1").bind(machine_id).execute(&mut **tx).await?;
    Ok(Ok(()))
}

/// The tablet's open session, after checking it is paired with the machine.
async fn paired_session(
    tx: &mut Transaction<'_, Postgres>,
    tablet_id: i32,
    machine_id: i32,
) -> Result<Result<Option<i32>, Refusal>, Error> {
    Ok(match lock_tablet(tx, tablet_id).await? {
        Some((Some(m), session)) if m == machine_id => Ok(session),
        _ => Err(Refusal::TabletNotPaired { device_id: tablet_id, machine_id }),
    })
}

/// Locks the tablet's row: its machine and open session, if the tablet exists.
async fn lock_tablet(
    tx: &mut Transaction<'_, Postgres>,
    tablet_id: i32,
) -> Result<Option<(Option<i32>, Option<i32>)>, Error> {
    Ok(sqlx::query_as("SELECT machine_id, active_user_session_id FROM input_device WHERE id = $1 FOR UPDATE")
        .bind(tablet_id)
        .fetch_optional(&mut **tx)
        .await?)
}

/// Closes every open session of the tablet at `at` and clears its logged-in user.
async fn close_sessions(tx: &mut Transaction<'_, Postgres>, tablet_id: i32, at: DateTime<Utc>) -> Result<(), Error> {
    sqlx::query(
        "UPDATE user_session SET active = false, time_logout = GREATEST($2, time_login) \
         WHERE input_device_id = $1 AND active",
    )
    .bind(tablet_id)
    .bind(at)
    .execute(&mut **tx)
    .await?;
    sqlx::query("UPDATE input_device SET active_user_id = NULL, active_user_session_id = NULL WHERE id = $1")
        .bind(tablet_id)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// Closes sessions no tablet points at any more (left open by a tablet unpaired or removed): the only
/// session write outside ingest, as no machine's state depends on them.
pub async fn close_orphan_sessions(pool: &PgPool, at: DateTime<Utc>) -> Result<u64, Error> {
    Ok(sqlx::query(
        "UPDATE user_session s SET active = false, time_logout = GREATEST($1, s.time_login) \
         WHERE s.active AND NOT EXISTS (SELECT 1 FROM input_device d WHERE d.active_user_session_id = s.id)",
    )
    .bind(at)
    .execute(pool)
    .await?
    .rows_affected())
}

/// What the tablet API shows of a machine.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct TabletMachine {
    pub id: i32,
    pub name: String,
    pub workflow_type: String,
    pub job_start_input_type: String,
    pub job_number_input_type: String,
    pub autofill_job_start_amount: f64,
    pub current_code_id: i32,
    /// When the current activity began.
    pub current_since: DateTime<Utc>,
    pub current_machine_state: i16,
    pub colour: String,
    pub job_id: Option<i64>,
    pub job_number: Option<String>,
    pub job_start: Option<DateTime<Utc>>,
}

/// The machine as its tablet shows it, if it exists.
pub async fn tablet_machine(pool: &PgPool, machine_id: i32) -> Result<Option<TabletMachine>, Error> {
    Ok(sqlx::query_as(
        "SELECT m.id, m.name, m.workflow_type, m.job_start_input_type, m.job_number_input_type, \
                m.autofill_job_start_amount, m.current_code_id, m.current_since, c.machine_state AS current_machine_state, \
                c.graph_colour AS colour, m.active_job_id AS job_id, j.job_number, j.start_time AS job_start \
         FROM machine m JOIN activity_code c ON c.id = m.current_code_id \
         LEFT JOIN job j ON j.id = m.active_job_id WHERE m.id = $1",
    )
    .bind(machine_id)
    .fetch_optional(pool)
    .await?)
}

/// An activity code a tablet offers.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct TabletCode {
    pub id: i32,
    pub colour: String,
    pub description: String,
}

/// The active codes a machine's tablet offers, by id: all but the machine's excluded ones; the four
/// default codes cannot be excluded.
pub async fn tablet_codes(pool: &PgPool, machine_id: i32) -> Result<Vec<TabletCode>, Error> {
    Ok(sqlx::query_as(
        "SELECT c.id, c.graph_colour AS colour, c.short_description AS description FROM activity_code c \
         WHERE c.active AND (c.id <= 4 OR NOT EXISTS ( \
             SELECT 1 FROM machine_activity_code_exclusion e WHERE e.machine_id = $1 AND e.activity_code_id = c.id)) \
         ORDER BY c.id",
    )
    .bind(machine_id)
    .fetch_all(pool)
    .await?)
}

/// A job's counts so far and when its latest count ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, sqlx::FromRow)]
pub struct JobTotals {
    pub good: i64,
    pub rejects: i64,
    pub last_count: Option<DateTime<Utc>>,
}

/// The job's total good and rejected parts.
pub async fn job_totals(pool: &PgPool, job_id: i64) -> Result<JobTotals, Error> {
    Ok(sqlx::query_as(
        "SELECT COALESCE(sum(quantity_good), 0)::int8 AS good, COALESCE(sum(quantity_rejects), 0)::int8 AS rejects, \
                max(end_time) AS last_count \
         FROM production_quantity WHERE job_id = $1",
    )
    .bind(job_id)
    .fetch_one(pool)
    .await?)
}

/// The machine's open activity.
pub async fn current_activity_id(pool: &PgPool, machine_id: i32) -> Result<Option<i64>, Error> {
    Ok(sqlx::query_scalar("SELECT id FROM activity WHERE machine_id = $1 AND end_time IS NULL")
        .bind(machine_id)
        .fetch_optional(pool)
        .await?)
}

/// Tablets someone is logged in on: `(tablet, its machine)`.
pub async fn logged_in_tablets(pool: &PgPool) -> Result<Vec<(i32, Option<i32>)>, Error> {
    Ok(sqlx::query_as("SELECT id, machine_id FROM input_device WHERE active_user_session_id IS NOT NULL ORDER BY id")
        .fetch_all(pool)
        .await?)
}

/// The tablet named `name` (its name, id or UUID) and the machine named `machine` (its name or id), for
/// the administration commands.
pub async fn find_for_pairing(pool: &PgPool, tablet: &str, machine: Option<&str>) -> Result<(i32, Option<i32>), Error> {
    let tablet = tablet.trim();
    let tablet_id: Option<i32> = sqlx::query_scalar(
        "SELECT id FROM input_device WHERE name = $1 OR uuid = $1 OR id::text = $1 \
         ORDER BY name = $1 DESC, uuid = $1 DESC LIMIT 1",
    )
    .bind(tablet)
    .fetch_optional(pool)
    .await?;
    let tablet_id = tablet_id.ok_or_else(|| {
        Error::NotFound(format!("there is no tablet `{tablet}` (by name, id or UUID): see `oee-server tablet list`"))
    })?;
    let Some(machine) = machine else { return Ok((tablet_id, None)) };
    Ok((tablet_id, Some(super::machine::machine_id_by_name(pool, machine).await?)))
}
