//! Shift patterns and how far each machine has followed its pattern: what the scheduler reads under the
//! machines' row locks and records, and what administrators change (`oee-server shift …`).

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use sqlx::{PgExecutor, PgPool, Postgres, Transaction};

use crate::activity::ScheduleState;
use crate::error::Error;
use crate::shift::Period;

/// The channel on which the database announces changed shift patterns and machine shifts.
pub const SCHEDULE_CHANNEL: &str = "oee_schedule";

/// Active machines that follow a shift pattern, by id.
pub async fn scheduled_machine_ids(pool: &PgPool) -> Result<Vec<i32>, Error> {
    Ok(sqlx::query_scalar("SELECT id FROM machine WHERE active AND shift_id IS NOT NULL ORDER BY id")
        .fetch_all(pool)
        .await?)
}

/// How a machine follows its pattern, read beside its locked row.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct ScheduleRow {
    pub machine_id: i32,
    pub shift_id: i32,
    pub end_job_on_shift_end: bool,
    pub applied_until: Option<DateTime<Utc>>,
    /// Start of the running job.
    pub job_start: Option<DateTime<Utc>>,
}

/// Shift, shift-end rule, applied-until instant and running job's start of those of `ids` that are active
/// and follow a pattern (call after locking their rows).
pub async fn schedule_rows(tx: &mut Transaction<'_, Postgres>, ids: &[i32]) -> Result<Vec<ScheduleRow>, Error> {
    Ok(sqlx::query_as(
        "SELECT m.id AS machine_id, m.shift_id, m.end_job_on_shift_end, m.schedule_applied_until AS applied_until, \
                j.start_time AS job_start \
         FROM machine m LEFT JOIN job j ON j.id = m.active_job_id \
         WHERE m.id = ANY($1) AND m.active AND m.shift_id IS NOT NULL ORDER BY m.id",
    )
    .bind(ids)
    .fetch_all(&mut **tx)
    .await?)
}

/// Every shift pattern's periods, by shift id (a pattern without periods is absent).
pub async fn shift_patterns<'c>(db: impl PgExecutor<'c>) -> Result<HashMap<i32, Vec<Period>>, Error> {
    let rows: Vec<(i32, i16, i16, i16)> = sqlx::query_as(
        "SELECT shift_id, day, start_minute, shift_state FROM shift_period ORDER BY shift_id, day, start_minute",
    )
    .fetch_all(db)
    .await?;
    let mut out: HashMap<i32, Vec<Period>> = HashMap::new();
    for (shift, day, start, state) in rows {
        let state = ScheduleState::try_from(state).map_err(Error::Invalid)?;
        out.entry(shift).or_default().push(Period { day: day as u8, start_minute: start as u16, state });
    }
    Ok(out)
}

/// The periods of the patterns that active machines follow (what the scheduler must wake for).
pub async fn periods_in_use(pool: &PgPool) -> Result<Vec<Period>, Error> {
    let rows: Vec<(i16, i16, i16)> = sqlx::query_as(
        "SELECT DISTINCT p.day, p.start_minute, p.shift_state FROM shift_period p \
         WHERE p.shift_id IN (SELECT shift_id FROM machine WHERE active AND shift_id IS NOT NULL)",
    )
    .fetch_all(pool)
    .await?;
    rows.into_iter()
        .map(|(day, start, state)| {
            let state = ScheduleState::try_from(state).map_err(Error::Invalid)?;
            Ok(Period { day: day as u8, start_minute: start as u16, state })
        })
        .collect()
}

/// What the scheduler records for a machine: its schedule state (unchanged when `None`) and the instant up
/// to which its transitions are applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AppliedSchedule {
    pub machine_id: i32,
    pub schedule: Option<ScheduleState>,
    pub applied_until: DateTime<Utc>,
}

/// Records the machines' schedule states and applied-until instants.
pub async fn record_applied_schedules(
    tx: &mut Transaction<'_, Postgres>,
    rows: &[AppliedSchedule],
) -> Result<(), Error> {
    if rows.is_empty() {
        return Ok(());
    }
    sqlx::query(
        "UPDATE machine m SET schedule_state = COALESCE(u.state, m.schedule_state), schedule_applied_until = u.until \
         FROM UNNEST($1::int4[], $2::int2[], $3::timestamptz[]) AS u(id, state, until) WHERE m.id = u.id",
    )
    .bind(rows.iter().map(|r| r.machine_id).collect::<Vec<_>>())
    .bind(rows.iter().map(|r| r.schedule.map(i16::from)).collect::<Vec<_>>())
    .bind(rows.iter().map(|r| r.applied_until).collect::<Vec<_>>())
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// A shift pattern as listed to administrators.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShiftSummary {
    pub id: i32,
    pub name: String,
    pub periods: Vec<Period>,
    /// Names of the machines that follow it.
    pub machines: Vec<String>,
}

/// Every shift pattern, by id, with its periods and machines.
pub async fn list_shifts(pool: &PgPool) -> Result<Vec<ShiftSummary>, Error> {
    let shifts: Vec<(i32, String, Vec<String>)> = sqlx::query_as(
        "SELECT s.id, s.name, COALESCE(array_agg(m.name ORDER BY m.id) FILTER (WHERE m.id IS NOT NULL), '{}') \
         FROM shift s LEFT JOIN machine m ON m.shift_id = s.id GROUP BY s.id ORDER BY s.id",
    )
    .fetch_all(pool)
    .await?;
    let mut patterns = shift_patterns(pool).await?;
    Ok(shifts
        .into_iter()
        .map(|(id, name, machines)| ShiftSummary {
            id,
            name,
            periods: patterns.remove(&id).unwrap_or_default(),
            machines,
        })
        .collect())
}

/// Creates an empty shift pattern (no periods: out of shift until its days are set); returns its id.
pub async fn add_shift(pool: &PgPool, name: &str) -> Result<i32, Error> {
    let name = name.trim();
    if name.is_empty() || name.len() > 100 {
        return Err(Error::Invalid("a shift pattern name must have 1 to 100 characters".into()));
    }
    sqlx::query_scalar("INSERT INTO shift (name) VALUES ($1) RETURNING id").bind(name).fetch_one(pool).await.map_err(
        |e| match &e {
            sqlx::Error::Database(d) if d.is_unique_violation() => {
                Error::Conflict(format!("a shift pattern named `{name}` already exists: see `oee-server shift list`"))
            }
            _ => Error::Database(e),
        },
    )
}

async fn shift_id_by_name(tx: &mut Transaction<'_, Postgres>, name: &str) -> Result<i32, Error> {
    sqlx::query_scalar("SELECT id FROM shift WHERE name = $1")
        .bind(name.trim())
        .fetch_optional(&mut **tx)
        .await?
        .ok_or_else(|| {
            Error::NotFound(format!(
                "there is no shift pattern named `{}`: see `oee-server shift list`, or create it with \
                 `oee-server shift add`",
                name.trim()
            ))
        })
}

/// Replaces the periods of `days` in the pattern named `shift` with `periods` (which must lie on those
/// days), in one transaction. Machines that follow the pattern take it up from now on.
pub async fn set_shift_days(pool: &PgPool, shift: &str, days: &[u8], periods: &[Period]) -> Result<(), Error> {
    if let Some(p) = periods.iter().find(|p| !days.contains(&p.day)) {
        return Err(Error::Invalid(format!("a period on day {} is not among the days being set", p.day)));
    }
    let mut tx = pool.begin().await?;
    let shift_id = shift_id_by_name(&mut tx, shift).await?;
    sqlx::query("DELETE FROM shift_period WHERE shift_id = $1 AND day = ANY($2)")
        .bind(shift_id)
        .bind(days.iter().map(|&d| d as i16).collect::<Vec<_>>())
        .execute(&mut *tx)
        .await?;
    insert_shift_periods(&mut tx, shift_id, periods).await?;
    tx.commit().await?;
    Ok(())
}

/// Adds `periods` to the pattern `shift_id`; a period the pattern already has at that day and minute is kept.
pub(crate) async fn insert_shift_periods(
    tx: &mut Transaction<'_, Postgres>,
    shift_id: i32,
    periods: &[Period],
) -> Result<(), Error> {
    sqlx::query(
        "INSERT INTO shift_period (shift_id, day, start_minute, shift_state) \
         SELECT $1, * FROM UNNEST($2::smallint[], $3::smallint[], $4::smallint[]) ON CONFLICT DO NOTHING",
    )
    .bind(shift_id)
    .bind(periods.iter().map(|p| p.day as i16).collect::<Vec<_>>())
    .bind(periods.iter().map(|p| p.start_minute as i16).collect::<Vec<_>>())
    .bind(periods.iter().map(|p| i16::from(p.state)).collect::<Vec<_>>())
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Makes the machine named `machine` (or with that id) follow the pattern named `shift` from now on;
/// returns the machine's id.
pub async fn set_machine_shift(pool: &PgPool, machine: &str, shift: &str) -> Result<i32, Error> {
    let mut tx = pool.begin().await?;
    let shift_id = shift_id_by_name(&mut tx, shift).await?;
    let id = super::machine::machine_id_by_name(&mut *tx, machine).await?;
    sqlx::query("UPDATE machine SET shift_id = $2 WHERE id = $1").bind(id).bind(shift_id).execute(&mut *tx).await?;
    tx.commit().await?;
    Ok(id)
}
