//! Shift patterns and how far each machine has followed its pattern: what the scheduler reads under the
//! machines' row locks and records, and what administrators change (`oee-server shift …`, the week editor).
//!
//! A pattern keeps its history as versions, each effective from the moment it was made (migration 0011):
//! an edit writes a new version from `now` on, and whatever reads a pattern for a past instant takes the
//! version in force then.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use sqlx::{PgConnection, PgExecutor, PgPool, Postgres, Transaction};

use crate::activity::ScheduleState;
use crate::error::Error;
use crate::shift::{Period, Version, Week};

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

/// The versions of shift patterns in force at some time in [`from`, `until`) (unbounded where `None`), by
/// pattern, in the order they took effect; `shifts` limits them to some patterns.
pub async fn pattern_versions<'c>(
    db: impl PgExecutor<'c>,
    shifts: Option<&[i32]>,
    from: Option<DateTime<Utc>>,
    until: Option<DateTime<Utc>>,
) -> Result<HashMap<i32, Vec<Version>>, Error> {
    type Row = (i32, i32, Option<DateTime<Utc>>, Option<i16>, Option<i16>, Option<i16>);
    let rows: Vec<Row> = sqlx::query_as(
        "SELECT v.shift_id, v.id, NULLIF(v.effective_from, '-infinity'), p.day, p.start_minute, p.shift_state \
         FROM (SELECT id, shift_id, effective_from, \
                      lead(effective_from) OVER (PARTITION BY shift_id ORDER BY effective_from) AS next_from \
               FROM shift_version WHERE $1::int4[] IS NULL OR shift_id = ANY($1)) v \
         LEFT JOIN shift_period p ON p.version_id = v.id \
         WHERE ($2::timestamptz IS NULL OR v.next_from IS NULL OR v.next_from > $2) \
           AND ($3::timestamptz IS NULL OR v.effective_from < $3) \
         ORDER BY v.shift_id, v.effective_from, p.day, p.start_minute",
    )
    .bind(shifts)
    .bind(from)
    .bind(until)
    .fetch_all(db)
    .await?;
    let mut out: HashMap<i32, Vec<Version>> = HashMap::new();
    let mut last_version = None;
    for (shift, version, effective_from, day, start, state) in rows {
        let versions = out.entry(shift).or_default();
        if last_version != Some(version) {
            versions.push(Version { from: effective_from, periods: Vec::new() });
            last_version = Some(version);
        }
        if let (Some(day), Some(start), Some(state), Some(v)) = (day, start, state, versions.last_mut()) {
            v.periods.push(period(day, start, state)?);
        }
    }
    Ok(out)
}

fn period(day: i16, start: i16, state: i16) -> Result<Period, Error> {
    Ok(Period {
        day: u8::try_from(day).map_err(|_| Error::Invalid(format!("shift day {day} is not 0-6")))?,
        start_minute: u16::try_from(start)
            .map_err(|_| Error::Invalid(format!("shift start minute {start} is not 0-1439")))?,
        state: ScheduleState::try_from(state).map_err(Error::Invalid)?,
    })
}

/// The versions of the patterns that active machines follow, from the one in force at `now` on (what the
/// scheduler must wake for), one list per pattern.
pub async fn versions_in_use(pool: &PgPool, now: DateTime<Utc>) -> Result<Vec<Vec<Version>>, Error> {
    let shifts: Vec<i32> =
        sqlx::query_scalar("SELECT DISTINCT shift_id FROM machine WHERE active AND shift_id IS NOT NULL")
            .fetch_all(pool)
            .await?;
    Ok(pattern_versions(pool, Some(&shifts), Some(now), None).await?.into_values().collect())
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
    /// The periods of its latest version.
    pub periods: Vec<Period>,
    /// When its latest version took effect; `None`: it was never changed.
    pub since: Option<DateTime<Utc>>,
    /// Names of the machines that follow it.
    pub machines: Vec<String>,
}

/// Every shift pattern, by id, with its latest periods and its machines.
pub async fn list_shifts(pool: &PgPool) -> Result<Vec<ShiftSummary>, Error> {
    type Row = (i32, String, Option<DateTime<Utc>>, Vec<String>);
    let shifts: Vec<Row> = sqlx::query_as(
        "SELECT s.id, s.name, \
                (SELECT NULLIF(max(effective_from), '-infinity') FROM shift_version WHERE shift_id = s.id), \
                COALESCE(array_agg(m.name ORDER BY m.id) FILTER (WHERE m.id IS NOT NULL), '{}') \
         FROM shift s LEFT JOIN machine m ON m.shift_id = s.id GROUP BY s.id ORDER BY s.id",
    )
    .fetch_all(pool)
    .await?;
    let mut out = Vec::with_capacity(shifts.len());
    let mut conn = pool.acquire().await?;
    for (id, name, since, machines) in shifts {
        let periods = latest_periods(&mut conn, id).await?;
        out.push(ShiftSummary { id, name, periods, since, machines });
    }
    Ok(out)
}

/// The periods of a pattern's latest version (what an edit starts from).
async fn latest_periods(conn: &mut PgConnection, shift_id: i32) -> Result<Vec<Period>, Error> {
    let rows: Vec<(i16, i16, i16)> = sqlx::query_as(
        "SELECT day, start_minute, shift_state FROM shift_period \
         WHERE version_id = (SELECT id FROM shift_version WHERE shift_id = $1 ORDER BY effective_from DESC LIMIT 1) \
         ORDER BY day, start_minute",
    )
    .bind(shift_id)
    .fetch_all(conn)
    .await?;
    rows.into_iter().map(|(d, m, s)| period(d, m, s)).collect()
}

/// A pattern's name checked: 1 to 100 characters once trimmed.
fn shift_name(name: &str) -> Result<&str, Error> {
    let name = name.trim();
    if name.is_empty() || name.chars().count() > 100 {
        return Err(Error::field("name", "a shift pattern's name must have 1 to 100 characters"));
    }
    Ok(name)
}

fn name_taken(name: &str) -> impl FnOnce(sqlx::Error) -> Error + '_ {
    move |e| match &e {
        sqlx::Error::Database(d) if d.is_unique_violation() => Error::field(
            "name",
            format!("a shift pattern named `{name}` already exists: choose another name (see `oee-server shift list`)"),
        ),
        _ => Error::Database(e),
    }
}

/// Creates an empty shift pattern (no periods: out of shift until its days are set); returns its id.
pub async fn add_shift(pool: &PgPool, name: &str) -> Result<i32, Error> {
    let name = shift_name(name)?;
    sqlx::query_scalar("INSERT INTO shift (name) VALUES ($1) RETURNING id")
        .bind(name)
        .fetch_one(pool)
        .await
        .map_err(name_taken(name))
}

/// Renames the pattern `shift_id`; its history and machines stay as they are.
pub async fn rename_shift(pool: &PgPool, shift_id: i32, name: &str) -> Result<(), Error> {
    let name = shift_name(name)?;
    let done = sqlx::query("UPDATE shift SET name = $2 WHERE id = $1")
        .bind(shift_id)
        .bind(name)
        .execute(pool)
        .await
        .map_err(name_taken(name))?;
    if done.rows_affected() == 0 {
        return Err(no_shift_with_id(shift_id));
    }
    Ok(())
}

fn no_shift_with_id(shift_id: i32) -> Error {
    Error::NotFound(format!("there is no shift pattern with id {shift_id}: see `oee-server shift list`"))
}

/// The id of the pattern named `shift`, or else of the one whose id it is (a name wins over an id).
pub async fn shift_id_by_name_or_id<'c>(db: impl PgExecutor<'c>, shift: &str) -> Result<i32, Error> {
    let shift = shift.trim();
    sqlx::query_scalar("SELECT id FROM shift WHERE name = $1 OR id::text = $1 ORDER BY name = $1 DESC LIMIT 1")
        .bind(shift)
        .fetch_optional(db)
        .await?
        .ok_or_else(|| {
            Error::NotFound(format!(
                "there is no shift pattern named `{shift}` (or with that id): see `oee-server shift list`, or create \
                 it with `oee-server shift add`"
            ))
        })
}

/// The week of the pattern `shift_id` as an editor shows it: its latest version (see [`Week::of`]).
pub async fn shift_week(pool: &PgPool, shift_id: i32) -> Result<Week, Error> {
    let mut conn = pool.acquire().await?;
    let exists: bool = sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM shift WHERE id = $1)")
        .bind(shift_id)
        .fetch_one(&mut *conn)
        .await?;
    if !exists {
        return Err(no_shift_with_id(shift_id));
    }
    Ok(Week::of(&latest_periods(&mut conn, shift_id).await?))
}

/// Makes `week` the pattern `shift_id` from `now` on, after checking it (a refusal names the input, see
/// [`Week::periods`]). The days before `now` keep the version they had; machines that follow the pattern
/// take the new one up at once.
pub async fn set_shift_week(pool: &PgPool, shift_id: i32, week: &Week, now: DateTime<Utc>) -> Result<(), Error> {
    let periods = week.periods()?;
    let mut tx = pool.begin().await?;
    lock_shift(&mut tx, shift_id).await?;
    write_version(&mut tx, shift_id, &periods, now).await?;
    tx.commit().await?;
    Ok(())
}

/// Replaces the periods of `days` in the pattern `shift` (a name or an id) with `periods` (which must lie
/// on those days) from `now` on, keeping its other days; returns the pattern's id. Machines that follow the
/// pattern take it up at once.
pub async fn set_shift_days(
    pool: &PgPool,
    shift: &str,
    days: &[u8],
    periods: &[Period],
    now: DateTime<Utc>,
) -> Result<i32, Error> {
    if let Some(p) = periods.iter().find(|p| !days.contains(&p.day)) {
        return Err(Error::Invalid(format!("a period on day {} is not among the days being set", p.day)));
    }
    let mut tx = pool.begin().await?;
    let shift_id = shift_id_by_name_or_id(&mut *tx, shift).await?;
    lock_shift(&mut tx, shift_id).await?;
    let mut week: Vec<Period> = latest_periods(&mut tx, shift_id).await?;
    week.retain(|p| !days.contains(&p.day));
    week.extend_from_slice(periods);
    write_version(&mut tx, shift_id, &week, now).await?;
    tx.commit().await?;
    Ok(shift_id)
}

/// Locks the pattern's row, so that edits of one pattern follow one another (machines may still be given
/// the pattern meanwhile).
async fn lock_shift(tx: &mut Transaction<'_, Postgres>, shift_id: i32) -> Result<(), Error> {
    sqlx::query_scalar::<_, i32>("SELECT id FROM shift WHERE id = $1 FOR NO KEY UPDATE")
        .bind(shift_id)
        .fetch_optional(&mut **tx)
        .await?
        .ok_or_else(|| no_shift_with_id(shift_id))?;
    Ok(())
}

/// Writes `periods` as the pattern's version from `now` on (the pattern's row is locked). Versions that
/// would begin after `now` give way to it. The latest version is rewritten in place instead when it began
/// at `now` itself, or when no machine has ever followed the pattern (no report or schedule has used it, so
/// there is no history to keep); an edit that changes nothing writes nothing.
async fn write_version(
    tx: &mut Transaction<'_, Postgres>,
    shift_id: i32,
    periods: &[Period],
    now: DateTime<Utc>,
) -> Result<(), Error> {
    // Periods first, while their versions still say when they began (the triggers compare it).
    sqlx::query(
        "DELETE FROM shift_period WHERE version_id IN \
         (SELECT id FROM shift_version WHERE shift_id = $1 AND effective_from > $2)",
    )
    .bind(shift_id)
    .bind(now)
    .execute(&mut **tx)
    .await?;
    sqlx::query("DELETE FROM shift_version WHERE shift_id = $1 AND effective_from > $2")
        .bind(shift_id)
        .bind(now)
        .execute(&mut **tx)
        .await?;
    let (latest, began_now, followed): (i32, bool, bool) = sqlx::query_as(
        "SELECT id, effective_from = $2, EXISTS (SELECT 1 FROM machine_shift_history WHERE shift_id = $1) \
         FROM shift_version WHERE shift_id = $1 ORDER BY effective_from DESC LIMIT 1",
    )
    .bind(shift_id)
    .bind(now)
    .fetch_one(&mut **tx)
    .await?;
    let mut wanted = periods.to_vec();
    wanted.sort_by_key(|p| (p.day, p.start_minute));
    wanted.dedup_by_key(|p| (p.day, p.start_minute));
    if latest_periods(tx, shift_id).await? == wanted {
        return Ok(());
    }
    let version = if began_now || !followed {
        sqlx::query("DELETE FROM shift_period WHERE version_id = $1").bind(latest).execute(&mut **tx).await?;
        latest
    } else {
        sqlx::query_scalar("INSERT INTO shift_version (shift_id, effective_from) VALUES ($1, $2) RETURNING id")
            .bind(shift_id)
            .bind(now)
            .fetch_one(&mut **tx)
            .await?
    };
    insert_periods(tx, shift_id, Some(version), &wanted).await
}

/// Adds `periods` to the latest version of the pattern `shift_id`; a period it already has at that day and
/// minute is kept.
pub(crate) async fn insert_shift_periods(
    tx: &mut Transaction<'_, Postgres>,
    shift_id: i32,
    periods: &[Period],
) -> Result<(), Error> {
    insert_periods(tx, shift_id, None, periods).await
}

/// Adds `periods` to a version of the pattern (its latest when `None`, which the database looks up).
async fn insert_periods(
    tx: &mut Transaction<'_, Postgres>,
    shift_id: i32,
    version: Option<i32>,
    periods: &[Period],
) -> Result<(), Error> {
    sqlx::query(
        "INSERT INTO shift_period (shift_id, version_id, day, start_minute, shift_state) \
         SELECT $1, $2, * FROM UNNEST($3::smallint[], $4::smallint[], $5::smallint[]) ON CONFLICT DO NOTHING",
    )
    .bind(shift_id)
    .bind(version)
    .bind(periods.iter().map(|p| p.day as i16).collect::<Vec<_>>())
    .bind(periods.iter().map(|p| p.start_minute as i16).collect::<Vec<_>>())
    .bind(periods.iter().map(|p| i16::from(p.state)).collect::<Vec<_>>())
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Makes the machine named `machine` (or with that id) follow the pattern `shift` (a name or an id) from
/// now on; returns the machine's id. Reports of the days before keep the pattern it followed then.
pub async fn set_machine_shift(pool: &PgPool, machine: &str, shift: &str) -> Result<i32, Error> {
    let mut tx = pool.begin().await?;
    let shift_id = shift_id_by_name_or_id(&mut *tx, shift).await?;
    let id = super::machine::machine_id_by_name(&mut *tx, machine).await?;
    sqlx::query("UPDATE machine SET shift_id = $2 WHERE id = $1").bind(id).bind(shift_id).execute(&mut *tx).await?;
    tx.commit().await?;
    Ok(id)
}
