//! Queries of history edits (activities, jobs and production records of the past), run by ingest inside a
//! batch's transaction while it holds the machine's row lock. An open end is NULL in the database and
//! `None` in Rust; comparisons treat it as later than any time. The look-ups of one row by its id also
//! serve the web side, which finds the machine an edit belongs to before sending it to ingest.

use chrono::{DateTime, Utc};
use sqlx::{PgExecutor, Postgres, Transaction};

use crate::error::Error;
use crate::history::{Fixes, Span, StoredActivity, StoredJob, StoredRecord};

type ActivityRow = (i64, i32, i32, DateTime<Utc>, Option<DateTime<Utc>>, Option<i32>);

fn stored_activity((id, _, code_id, start, end, user_id): ActivityRow) -> StoredActivity {
    StoredActivity { id, code_id, span: Span { start, end }, user_id }
}

/// An activity and the machine it belongs to.
pub async fn activity<'c>(db: impl PgExecutor<'c>, id: i64) -> Result<Option<(i32, StoredActivity)>, Error> {
    let row: Option<ActivityRow> = sqlx::query_as(
        "SELECT id, machine_id, activity_code_id, start_time, end_time, user_id FROM activity WHERE id = $1",
    )
    .bind(id)
    .fetch_optional(db)
    .await?;
    Ok(row.map(|r| (r.1, stored_activity(r))))
}

/// A machine's activities, other than `except`, that overlap `span` or touch `old` (end at its start or
/// start at its end): the ones an edit over `span` that was at `old` may move.
pub async fn activities_near(
    tx: &mut Transaction<'_, Postgres>,
    machine: i32,
    span: Span,
    old: Option<Span>,
    except: Option<i64>,
) -> Result<Vec<StoredActivity>, Error> {
    let rows: Vec<ActivityRow> = sqlx::query_as(
        "SELECT id, machine_id, activity_code_id, start_time, end_time, user_id FROM activity \
         WHERE machine_id = $1 AND id IS DISTINCT FROM $6 \
           AND ((start_time < COALESCE($3, 'infinity') AND COALESCE(end_time, 'infinity') > $2) \
                OR end_time = $4 OR start_time = $5) \
         ORDER BY start_time, id",
    )
    .bind(machine)
    .bind(span.start)
    .bind(span.end)
    .bind(old.map(|o| o.start))
    .bind(old.and_then(|o| o.end))
    .bind(except)
    .fetch_all(&mut **tx)
    .await?;
    Ok(rows.into_iter().map(stored_activity).collect())
}

/// Deletes, trims and splits a machine's activities as planned. Ends move before starts and tails are
/// inserted last, so a split open activity is closed before its open tail exists.
pub async fn apply_fixes(tx: &mut Transaction<'_, Postgres>, machine: i32, fixes: &Fixes) -> Result<(), Error> {
    if !fixes.delete.is_empty() {
        sqlx::query("DELETE FROM activity WHERE machine_id = $1 AND id = ANY($2)")
            .bind(machine)
            .bind(&fixes.delete)
            .execute(&mut **tx)
            .await?;
    }
    if !fixes.end_at.is_empty() {
        sqlx::query(
            "UPDATE activity a SET end_time = u.t FROM UNNEST($2::int8[], $3::timestamptz[]) AS u(id, t) \
             WHERE a.machine_id = $1 AND a.id = u.id",
        )
        .bind(machine)
        .bind(fixes.end_at.iter().map(|m| m.0).collect::<Vec<_>>())
        .bind(fixes.end_at.iter().map(|m| m.1).collect::<Vec<_>>())
        .execute(&mut **tx)
        .await?;
    }
    if !fixes.start_at.is_empty() {
        sqlx::query(
            "UPDATE activity a SET start_time = u.t FROM UNNEST($2::int8[], $3::timestamptz[]) AS u(id, t) \
             WHERE a.machine_id = $1 AND a.id = u.id",
        )
        .bind(machine)
        .bind(fixes.start_at.iter().map(|m| m.0).collect::<Vec<_>>())
        .bind(fixes.start_at.iter().map(|m| m.1).collect::<Vec<_>>())
        .execute(&mut **tx)
        .await?;
    }
    if !fixes.insert.is_empty() {
        sqlx::query(
            "INSERT INTO activity (machine_id, activity_code_id, start_time, end_time, user_id) \
             SELECT $1, * FROM UNNEST($2::int4[], $3::timestamptz[], $4::timestamptz[], $5::int4[])",
        )
        .bind(machine)
        .bind(fixes.insert.iter().map(|a| a.code_id).collect::<Vec<_>>())
        .bind(fixes.insert.iter().map(|a| a.span.start).collect::<Vec<_>>())
        .bind(fixes.insert.iter().map(|a| a.span.end).collect::<Vec<_>>())
        .bind(fixes.insert.iter().map(|a| a.user_id).collect::<Vec<_>>())
        .execute(&mut **tx)
        .await?;
    }
    Ok(())
}

/// Adds a past (closed) activity; returns its id.
pub async fn insert_activity(
    tx: &mut Transaction<'_, Postgres>,
    machine: i32,
    code_id: i32,
    start: DateTime<Utc>,
    end: DateTime<Utc>,
    user_id: Option<i32>,
) -> Result<i64, Error> {
    Ok(sqlx::query_scalar(
        "INSERT INTO activity (machine_id, activity_code_id, start_time, end_time, user_id) \
         VALUES ($1, $2, $3, $4, $5) RETURNING id",
    )
    .bind(machine)
    .bind(code_id)
    .bind(start)
    .bind(end)
    .bind(user_id)
    .fetch_one(&mut **tx)
    .await?)
}

/// Changes an activity's code and span (`user_id` only when given).
pub async fn update_activity(
    tx: &mut Transaction<'_, Postgres>,
    id: i64,
    code_id: i32,
    span: Span,
    user_id: Option<i32>,
) -> Result<(), Error> {
    sqlx::query(
        "UPDATE activity SET activity_code_id = $2, start_time = $3, end_time = $4, \
                user_id = COALESCE($5, user_id) WHERE id = $1",
    )
    .bind(id)
    .bind(code_id)
    .bind(span.start)
    .bind(span.end)
    .bind(user_id)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Copies the machine's open activity into its row (code, start, user), after an edit that may have moved,
/// recoded or split it; returns what it copied.
pub async fn sync_current_activity(
    tx: &mut Transaction<'_, Postgres>,
    machine: i32,
) -> Result<Option<(i32, DateTime<Utc>, Option<i32>)>, Error> {
    Ok(sqlx::query_as(
        "UPDATE machine m SET current_code_id = a.activity_code_id, current_since = a.start_time, \
                current_user_id = a.user_id \
         FROM activity a WHERE a.machine_id = m.id AND a.end_time IS NULL AND m.id = $1 \
         RETURNING m.current_code_id, m.current_since, m.current_user_id",
    )
    .bind(machine)
    .fetch_optional(&mut **tx)
    .await?)
}

/// A job as history edits see it.
#[derive(Debug, Clone, PartialEq)]
pub struct JobRow {
    pub machine_id: i32,
    pub job: StoredJob,
    pub active: bool,
}

type JobSpanRow = (i32, DateTime<Utc>, Option<DateTime<Utc>>, bool);

/// A job and the machine it ran on.
pub async fn job<'c>(db: impl PgExecutor<'c>, id: i64) -> Result<Option<JobRow>, Error> {
    let row: Option<JobSpanRow> =
        sqlx::query_as("SELECT machine_id, start_time, end_time, active FROM job WHERE id = $1")
            .bind(id)
            .fetch_optional(db)
            .await?;
    Ok(row.map(|(machine_id, start, end, active)| JobRow {
        machine_id,
        job: StoredJob { id, span: Span { start, end: if active { None } else { end } } },
        active,
    }))
}

/// A machine's jobs, other than `except`, that overlap `span` (a running job reaching to any later time).
pub async fn jobs_overlapping(
    tx: &mut Transaction<'_, Postgres>,
    machine: i32,
    span: Span,
    except: Option<i64>,
) -> Result<Vec<StoredJob>, Error> {
    let rows: Vec<(i64, DateTime<Utc>, Option<DateTime<Utc>>)> = sqlx::query_as(
        "SELECT id, start_time, CASE WHEN active THEN NULL ELSE end_time END FROM job \
         WHERE machine_id = $1 AND id IS DISTINCT FROM $4 AND start_time < COALESCE($3, 'infinity') \
           AND (active OR COALESCE(end_time, 'infinity') > $2) \
         ORDER BY start_time",
    )
    .bind(machine)
    .bind(span.start)
    .bind(span.end)
    .bind(except)
    .fetch_all(&mut **tx)
    .await?;
    Ok(rows.into_iter().map(|(id, start, end)| StoredJob { id, span: Span { start, end } }).collect())
}

/// Adds a finished job of the past with one production record over its whole span; returns its id.
#[allow(clippy::too_many_arguments)]
pub async fn insert_past_job(
    tx: &mut Transaction<'_, Postgres>,
    machine: i32,
    job_number: &str,
    ideal_cycle_time_s: Option<f64>,
    start: DateTime<Utc>,
    end: DateTime<Utc>,
    good: i64,
    rejects: i64,
) -> Result<i64, Error> {
    Ok(sqlx::query_scalar(
        "WITH j AS (INSERT INTO job (machine_id, job_number, ideal_cycle_time_s, start_time, end_time, active) \
                    VALUES ($1, $2, $3, $4, $5, false) RETURNING id), \
              p AS (INSERT INTO production_quantity \
                        (machine_id, job_id, start_time, end_time, quantity_good, quantity_rejects) \
                    SELECT $1, j.id, $4, $5, $6, $7 FROM j) \
         SELECT id FROM j",
    )
    .bind(machine)
    .bind(job_number)
    .bind(ideal_cycle_time_s)
    .bind(start)
    .bind(end)
    .bind(good)
    .bind(rejects)
    .fetch_one(&mut **tx)
    .await?)
}

/// Changes a job: its span (a running job keeps no end), and its number and ideal cycle time when given
/// (`Some(None)` clears the cycle time).
pub async fn update_job(
    tx: &mut Transaction<'_, Postgres>,
    id: i64,
    span: Span,
    job_number: Option<&str>,
    ideal_cycle_time_s: Option<Option<f64>>,
) -> Result<(), Error> {
    sqlx::query(
        "UPDATE job SET start_time = $2, end_time = CASE WHEN active THEN end_time ELSE $3 END, \
                job_number = COALESCE($4, job_number), \
                ideal_cycle_time_s = CASE WHEN $5 THEN $6 ELSE ideal_cycle_time_s END \
         WHERE id = $1",
    )
    .bind(id)
    .bind(span.start)
    .bind(span.end)
    .bind(job_number)
    .bind(ideal_cycle_time_s.is_some())
    .bind(ideal_cycle_time_s.flatten())
    .execute(&mut **tx)
    .await?;
    Ok(())
}

type RecordRow = (i64, i32, Option<i64>, DateTime<Utc>, DateTime<Utc>, i64, i64);

fn stored_record((id, _, _, start, end, good, rejects): RecordRow) -> StoredRecord {
    StoredRecord { id, span: Span::closed(start, end), good, rejects }
}

/// A job's production records.
pub async fn job_records(tx: &mut Transaction<'_, Postgres>, job: i64) -> Result<Vec<StoredRecord>, Error> {
    let rows: Vec<RecordRow> = sqlx::query_as(
        "SELECT id, machine_id, job_id, start_time, end_time, quantity_good, quantity_rejects \
         FROM production_quantity WHERE job_id = $1 ORDER BY start_time, id",
    )
    .bind(job)
    .fetch_all(&mut **tx)
    .await?;
    Ok(rows.into_iter().map(stored_record).collect())
}

/// A production record, with its machine and job.
pub async fn record<'c>(db: impl PgExecutor<'c>, id: i64) -> Result<Option<(i32, Option<i64>, StoredRecord)>, Error> {
    let row: Option<RecordRow> = sqlx::query_as(
        "SELECT id, machine_id, job_id, start_time, end_time, quantity_good, quantity_rejects \
         FROM production_quantity WHERE id = $1",
    )
    .bind(id)
    .fetch_optional(db)
    .await?;
    Ok(row.map(|r| (r.1, r.2, stored_record(r))))
}

/// Adds a production record; returns its id.
pub async fn insert_record(
    tx: &mut Transaction<'_, Postgres>,
    machine: i32,
    job: Option<i64>,
    span: (DateTime<Utc>, DateTime<Utc>),
    good: i64,
    rejects: i64,
) -> Result<i64, Error> {
    Ok(sqlx::query_scalar(
        "INSERT INTO production_quantity (machine_id, job_id, start_time, end_time, quantity_good, quantity_rejects) \
         VALUES ($1, $2, $3, $4, $5, $6) RETURNING id",
    )
    .bind(machine)
    .bind(job)
    .bind(span.0)
    .bind(span.1)
    .bind(good)
    .bind(rejects)
    .fetch_one(&mut **tx)
    .await?)
}

/// Overwrites a production record's span and counts.
pub async fn update_record(
    tx: &mut Transaction<'_, Postgres>,
    id: i64,
    span: (DateTime<Utc>, DateTime<Utc>),
    good: i64,
    rejects: i64,
) -> Result<(), Error> {
    sqlx::query(
        "UPDATE production_quantity SET start_time = $2, end_time = $3, quantity_good = $4, quantity_rejects = $5 \
         WHERE id = $1",
    )
    .bind(id)
    .bind(span.0)
    .bind(span.1)
    .bind(good)
    .bind(rejects)
    .execute(&mut **tx)
    .await?;
    Ok(())
}
