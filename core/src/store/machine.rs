//! Machines: creating them, listing them, and their current status.

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use sqlx::{PgPool, Postgres, Transaction};

use crate::activity::{CLOSED_CODE_ID, DOWN_CODE_ID, ScheduleState};
use crate::error::Error;
use crate::payload::MachineStatus;
use crate::shift::{Period, schedule_at};
use crate::topic::slugify;

/// A machine as listed to administrators.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct MachineSummary {
    pub id: i32,
    pub name: String,
    pub topic_name: Option<String>,
    pub group_name: Option<String>,
    pub shift_name: Option<String>,
    pub activity_code: String,
}

/// The id of the machine named `machine`, or with that id (a name wins over an id).
pub async fn machine_id_by_name<'c>(db: impl sqlx::PgExecutor<'c>, machine: &str) -> Result<i32, Error> {
    let machine = machine.trim();
    let id: Option<i32> =
        sqlx::query_scalar("SELECT id FROM machine WHERE name = $1 OR id::text = $1 ORDER BY name = $1 DESC LIMIT 1")
            .bind(machine)
            .fetch_optional(db)
            .await?;
    id.ok_or_else(|| {
        Error::NotFound(format!(
            "there is no machine named `{machine}` (or with that id): see `oee-server machine list`"
        ))
    })
}

/// The id of the machine a topic segment names (its id or its topic name), if there is one.
pub async fn machine_id_by_segment(pool: &PgPool, segment: &str) -> Result<Option<i32>, Error> {
    Ok(sqlx::query_scalar("SELECT id FROM machine WHERE id::text = $1 OR topic_name = $1 LIMIT 1")
        .bind(segment)
        .fetch_optional(pool)
        .await?)
}

/// Creates a machine in the first group and shift pattern, in the schedule state the pattern gives now,
/// with a first open activity: Down in shift, Closed out of shift; the scheduler takes it from `now` on. Its
/// topic name is derived from its name.
pub async fn add_machine(pool: &PgPool, name: &str, tz: Tz, now: DateTime<Utc>) -> Result<MachineSummary, Error> {
    let name = name.trim();
    if name.is_empty() || name.len() > 100 {
        return Err(Error::Invalid("a machine name must have 1 to 100 characters".into()));
    }
    let mut tx = pool.begin().await?;
    let group_id: Option<i32> = sqlx::query_scalar("SELECT min(id) FROM machine_group").fetch_one(&mut *tx).await?;
    let shift_id: Option<i32> = sqlx::query_scalar("SELECT min(id) FROM shift").fetch_one(&mut *tx).await?;
    let schedule = match shift_id {
        Some(id) => schedule_at(&shift_periods(&mut tx, id, now).await?, tz, now),
        None => ScheduleState::OutOfShift,
    };
    let code = if schedule == ScheduleState::InShift { DOWN_CODE_ID } else { CLOSED_CODE_ID };
    let slug = free_slug(&mut tx, &slugify(name)).await?;
    let id: i32 = sqlx::query_scalar(
        "INSERT INTO machine (name, topic_name, group_id, shift_id, schedule_state, current_code_id, current_since, \
                              schedule_applied_until) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $7) RETURNING id",
    )
    .bind(name)
    .bind(&slug)
    .bind(group_id)
    .bind(shift_id)
    .bind(i16::from(schedule))
    .bind(code)
    .bind(now)
    .fetch_one(&mut *tx)
    .await
    .map_err(|e| match &e {
        sqlx::Error::Database(d) if d.is_unique_violation() => {
            Error::Conflict(format!("a machine named `{name}` already exists"))
        }
        _ => Error::Database(e),
    })?;
    sqlx::query("INSERT INTO activity (machine_id, activity_code_id, start_time) VALUES ($1, $2, $3)")
        .bind(id)
        .bind(code)
        .bind(now)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    list_machines(pool)
        .await?
        .into_iter()
        .find(|m| m.id == id)
        .ok_or_else(|| Error::NotFound(format!("machine {id} vanished after it was created")))
}

async fn free_slug(tx: &mut Transaction<'_, Postgres>, base: &str) -> Result<String, Error> {
    let taken: Vec<String> = sqlx::query_scalar("SELECT topic_name FROM machine WHERE topic_name LIKE $1 || '%'")
        .bind(base)
        .fetch_all(&mut **tx)
        .await?;
    let mut candidate = base.to_string();
    let mut n = 2;
    while taken.contains(&candidate) {
        candidate = format!("{base}-{n}");
        n += 1;
    }
    Ok(candidate)
}

/// The periods of one shift pattern in force at `at`.
pub async fn shift_periods(
    tx: &mut Transaction<'_, Postgres>,
    shift_id: i32,
    at: DateTime<Utc>,
) -> Result<Vec<Period>, Error> {
    let rows: Vec<(i16, i16, i16)> = sqlx::query_as(
        "SELECT day, start_minute, shift_state FROM shift_period WHERE version_id = \
         (SELECT id FROM shift_version WHERE shift_id = $1 AND effective_from <= $2 \
          ORDER BY effective_from DESC LIMIT 1)",
    )
    .bind(shift_id)
    .bind(at)
    .fetch_all(&mut **tx)
    .await?;
    rows.into_iter()
        .map(|(day, start, state)| {
            Ok(Period {
                day: day as u8,
                start_minute: start as u16,
                state: ScheduleState::try_from(state).map_err(Error::Invalid)?,
            })
        })
        .collect()
}

/// Every machine, by id.
pub async fn list_machines(pool: &PgPool) -> Result<Vec<MachineSummary>, Error> {
    Ok(sqlx::query_as(
        "SELECT m.id, m.name, m.topic_name, g.name AS group_name, s.name AS shift_name, \
                c.short_description AS activity_code \
         FROM machine m \
         LEFT JOIN machine_group g ON g.id = m.group_id \
         LEFT JOIN shift s ON s.id = m.shift_id \
         JOIN activity_code c ON c.id = m.current_code_id \
         ORDER BY m.id",
    )
    .fetch_all(pool)
    .await?)
}

/// Current status of the given machines (all machines when `ids` is `None`); `signal` is left `Ok` for the
/// caller to judge from `last_signal_at`.
pub async fn machine_statuses(pool: &PgPool, ids: Option<&[i32]>) -> Result<Vec<MachineStatus>, Error> {
    Ok(sqlx::query_as(
        "SELECT m.id AS machine_id, m.name AS machine_name, m.topic_name, m.current_code_id AS activity_code_id, \
                c.short_description AS activity_code, c.graph_colour AS colour, c.machine_state, \
                m.schedule_state, m.active_job_id AS job_id, j.job_number, m.current_user_id AS user_id, \
                m.current_since AS since, d.id AS input_device_id, d.active_user_session_id AS session_id, \
                GREATEST(m.current_since, t.ts, p.end_time) AS last_signal_at \
         FROM machine m \
         JOIN activity_code c ON c.id = m.current_code_id \
         LEFT JOIN job j ON j.id = m.active_job_id \
         LEFT JOIN input_device d ON d.machine_id = m.id \
         LEFT JOIN LATERAL (SELECT ts FROM telemetry WHERE machine_id = m.id ORDER BY ts DESC LIMIT 1) t ON true \
         LEFT JOIN LATERAL (SELECT end_time FROM production_quantity WHERE machine_id = m.id \
                            ORDER BY end_time DESC LIMIT 1) p ON true \
         WHERE $1::int4[] IS NULL OR m.id = ANY($1) \
         ORDER BY m.id",
    )
    .bind(ids)
    .fetch_all(pool)
    .await?)
}
