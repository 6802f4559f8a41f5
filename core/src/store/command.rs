//! Queries ingest runs to apply a batch of commands in one transaction: lock the machines, read the codes,
//! remember request ids, and write the activity changes with array (UNNEST) statements.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use sqlx::{PgPool, Postgres, Transaction};

use crate::activity::{Change, Code, MachineSnapshot, MachineState, ScheduleState};
use crate::error::Error;

/// A machine locked for this transaction, with how topics may name it.
#[derive(Debug, Clone)]
pub struct LockedMachine {
    pub snapshot: MachineSnapshot,
    pub topic_name: Option<String>,
    /// The code a started job moves the machine to.
    pub job_start_code_id: i32,
}

/// Locks the named machines' rows (in id order, so concurrent workers cannot deadlock) and reads their
/// current state. Machines that do not exist are simply absent.
pub async fn lock_machines(
    tx: &mut Transaction<'_, Postgres>,
    ids: &[i32],
    slugs: &[String],
) -> Result<Vec<LockedMachine>, Error> {
    type Row = (i32, Option<String>, i16, Option<i64>, i32, DateTime<Utc>, Option<i32>, i32);
    let rows: Vec<Row> = sqlx::query_as(
        "SELECT id, topic_name, schedule_state, active_job_id, current_code_id, current_since, current_user_id, \
                job_start_activity_id \
         FROM machine WHERE id = ANY($1) OR topic_name = ANY($2) ORDER BY id FOR UPDATE",
    )
    .bind(ids)
    .bind(slugs)
    .fetch_all(&mut **tx)
    .await?;
    rows.into_iter()
        .map(|(id, topic_name, schedule, job, code, since, user, job_start_code_id)| {
            Ok(LockedMachine {
                snapshot: MachineSnapshot {
                    id,
                    schedule: ScheduleState::try_from(schedule).map_err(Error::Invalid)?,
                    active_job_id: job,
                    code_id: code,
                    since,
                    user_id: user,
                },
                topic_name,
                job_start_code_id,
            })
        })
        .collect()
}

/// The codes among `ids` that exist.
pub async fn codes(tx: &mut Transaction<'_, Postgres>, ids: &[i32]) -> Result<HashMap<i32, Code>, Error> {
    let rows: Vec<(i32, i16)> = sqlx::query_as("SELECT id, machine_state FROM activity_code WHERE id = ANY($1)")
        .bind(ids)
        .fetch_all(&mut **tx)
        .await?;
    rows.into_iter()
        .map(|(id, state)| Ok((id, Code { id, state: MachineState::try_from(state).map_err(Error::Invalid)? })))
        .collect()
}

/// The users among `ids` that exist.
pub async fn existing_users(tx: &mut Transaction<'_, Postgres>, ids: &[i32]) -> Result<Vec<i32>, Error> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    Ok(sqlx::query_scalar("SELECT id FROM app_user WHERE id = ANY($1)").bind(ids).fetch_all(&mut **tx).await?)
}

/// A verdict remembered for a request id.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct RememberedVerdict {
    pub request_id: String,
    pub machine_id: Option<i32>,
    pub status: i16,
    pub reason: Option<String>,
    pub message: Option<String>,
    pub code_id: Option<i32>,
}

/// Verdicts already given to any of these request ids.
pub async fn remembered_verdicts(
    tx: &mut Transaction<'_, Postgres>,
    request_ids: &[String],
) -> Result<Vec<RememberedVerdict>, Error> {
    if request_ids.is_empty() {
        return Ok(Vec::new());
    }
    // Not a cached prepared statement: a generic plan made while the table was empty would scan the whole
    // table forever after; planned per call, the primary key is used.
    Ok(sqlx::query_as(
        "SELECT request_id, machine_id, status, reason, message, code_id FROM command_log WHERE request_id = ANY($1)",
    )
    .persistent(false)
    .bind(request_ids)
    .fetch_all(&mut **tx)
    .await?)
}

/// Remembers verdicts by request id.
pub async fn remember_verdicts(tx: &mut Transaction<'_, Postgres>, rows: &[RememberedVerdict]) -> Result<(), Error> {
    if rows.is_empty() {
        return Ok(());
    }
    sqlx::query(
        "INSERT INTO command_log (request_id, machine_id, status, reason, message, code_id) \
         SELECT * FROM UNNEST($1::text[], $2::int4[], $3::int2[], $4::text[], $5::text[], $6::int4[]) \
         ON CONFLICT (request_id) DO NOTHING",
    )
    .bind(rows.iter().map(|r| r.request_id.clone()).collect::<Vec<_>>())
    .bind(rows.iter().map(|r| r.machine_id).collect::<Vec<_>>())
    .bind(rows.iter().map(|r| r.status).collect::<Vec<_>>())
    .bind(rows.iter().map(|r| r.reason.clone()).collect::<Vec<_>>())
    .bind(rows.iter().map(|r| r.message.clone()).collect::<Vec<_>>())
    .bind(rows.iter().map(|r| r.code_id).collect::<Vec<_>>())
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Writes accepted changes, given in the order they were accepted: for each machine the open activity is
/// closed at its first change, each change opens an activity that the machine's next change closes, and
/// the machine row points at its last change.
pub async fn apply_changes(tx: &mut Transaction<'_, Postgres>, changes: &[Change]) -> Result<(), Error> {
    if changes.is_empty() {
        return Ok(());
    }
    // Per machine, the index of its next change (to end each new activity) and its first and last.
    let mut next_of: Vec<Option<usize>> = vec![None; changes.len()];
    let mut first: HashMap<i32, usize> = HashMap::new();
    let mut last: HashMap<i32, usize> = HashMap::new();
    for (i, c) in changes.iter().enumerate() {
        if let Some(prev) = last.insert(c.machine_id, i) {
            next_of[prev] = Some(i);
        }
        first.entry(c.machine_id).or_insert(i);
    }
    let mut firsts: Vec<usize> = first.into_values().collect();
    firsts.sort_unstable();
    sqlx::query(
        "UPDATE activity a SET end_time = u.t FROM UNNEST($1::int4[], $2::timestamptz[]) AS u(m, t) \
         WHERE a.machine_id = u.m AND a.end_time IS NULL",
    )
    .bind(firsts.iter().map(|&i| changes[i].machine_id).collect::<Vec<_>>())
    .bind(firsts.iter().map(|&i| changes[i].at).collect::<Vec<_>>())
    .execute(&mut **tx)
    .await?;

    sqlx::query(
        "INSERT INTO activity (machine_id, activity_code_id, start_time, end_time, user_id) \
         SELECT * FROM UNNEST($1::int4[], $2::int4[], $3::timestamptz[], $4::timestamptz[], $5::int4[])",
    )
    .bind(changes.iter().map(|c| c.machine_id).collect::<Vec<_>>())
    .bind(changes.iter().map(|c| c.code_id).collect::<Vec<_>>())
    .bind(changes.iter().map(|c| c.at).collect::<Vec<_>>())
    .bind(next_of.iter().map(|n| n.map(|j| changes[j].at)).collect::<Vec<_>>())
    .bind(changes.iter().map(|c| c.user_id).collect::<Vec<_>>())
    .execute(&mut **tx)
    .await?;

    let mut lasts: Vec<usize> = last.into_values().collect();
    lasts.sort_unstable();
    sqlx::query(
        "UPDATE machine m SET current_code_id = u.code, current_since = u.t, current_user_id = u.usr \
         FROM UNNEST($1::int4[], $2::int4[], $3::timestamptz[], $4::int4[]) AS u(id, code, t, usr) WHERE m.id = u.id",
    )
    .bind(lasts.iter().map(|&i| changes[i].machine_id).collect::<Vec<_>>())
    .bind(lasts.iter().map(|&i| changes[i].code_id).collect::<Vec<_>>())
    .bind(lasts.iter().map(|&i| changes[i].at).collect::<Vec<_>>())
    .bind(lasts.iter().map(|&i| changes[i].user_id).collect::<Vec<_>>())
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Resolves machines named by id or topic name without locking them (for commands that do not change
/// machine state): `(id, topic_name)` of those that exist.
pub async fn find_machines(
    tx: &mut Transaction<'_, Postgres>,
    ids: &[i32],
    slugs: &[String],
) -> Result<Vec<(i32, Option<String>)>, Error> {
    Ok(sqlx::query_as("SELECT id, topic_name FROM machine WHERE id = ANY($1) OR topic_name = ANY($2)")
        .bind(ids)
        .bind(slugs)
        .fetch_all(&mut **tx)
        .await?)
}

/// One telemetry message to store.
#[derive(Debug, Clone)]
pub struct TelemetryRow {
    pub machine_id: i32,
    pub ts: DateTime<Utc>,
    pub data: serde_json::Value,
}

/// Stores telemetry rows.
pub async fn insert_telemetry(tx: &mut Transaction<'_, Postgres>, rows: &[TelemetryRow]) -> Result<(), Error> {
    if rows.is_empty() {
        return Ok(());
    }
    sqlx::query(
        "INSERT INTO telemetry (machine_id, ts, data) SELECT * FROM UNNEST($1::int4[], $2::timestamptz[], $3::jsonb[])",
    )
    .bind(rows.iter().map(|r| r.machine_id).collect::<Vec<_>>())
    .bind(rows.iter().map(|r| r.ts).collect::<Vec<_>>())
    .bind(rows.iter().map(|r| sqlx::types::Json(&r.data)).collect::<Vec<_>>())
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Starts a job on a machine; returns its id.
pub async fn insert_job(
    tx: &mut Transaction<'_, Postgres>,
    machine: i32,
    job_number: &str,
    ideal_cycle_time_s: Option<f64>,
    at: DateTime<Utc>,
) -> Result<i64, Error> {
    Ok(sqlx::query_scalar(
        "INSERT INTO job (machine_id, job_number, ideal_cycle_time_s, start_time, active) \
         VALUES ($1, $2, $3, $4, true) RETURNING id",
    )
    .bind(machine)
    .bind(job_number)
    .bind(ideal_cycle_time_s)
    .bind(at)
    .fetch_one(&mut **tx)
    .await?)
}

/// Ends a job at `at` and records its last counts, from the end of its previous record (or its start).
pub async fn end_job(
    tx: &mut Transaction<'_, Postgres>,
    job: i64,
    at: DateTime<Utc>,
    good: i64,
    rejects: i64,
) -> Result<(), Error> {
    sqlx::query(
        "INSERT INTO production_quantity (machine_id, job_id, start_time, end_time, quantity_good, quantity_rejects) \
         SELECT j.machine_id, j.id, LEAST($2, COALESCE((SELECT max(p.end_time) FROM production_quantity p \
                WHERE p.job_id = j.id), j.start_time)), $2, $3, $4 \
         FROM job j WHERE j.id = $1",
    )
    .bind(job)
    .bind(at)
    .bind(good)
    .bind(rejects)
    .execute(&mut **tx)
    .await?;
    sqlx::query("UPDATE job SET end_time = $2, active = false WHERE id = $1")
        .bind(job)
        .bind(at)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// Points machines at their running job (or none).
pub async fn set_active_jobs(tx: &mut Transaction<'_, Postgres>, jobs: &[(i32, Option<i64>)]) -> Result<(), Error> {
    if jobs.is_empty() {
        return Ok(());
    }
    sqlx::query(
        "UPDATE machine m SET active_job_id = u.job FROM UNNEST($1::int4[], $2::int8[]) AS u(id, job) WHERE m.id = u.id",
    )
    .bind(jobs.iter().map(|j| j.0).collect::<Vec<_>>())
    .bind(jobs.iter().map(|j| j.1).collect::<Vec<_>>())
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// A message ingest could not apply, kept for inspection.
#[derive(Debug, Clone)]
pub struct RawEvent {
    pub received_at: DateTime<Utc>,
    pub topic: String,
    pub payload: Vec<u8>,
    pub status: i16,
    pub error: String,
}

/// Keeps refused or unreadable messages.
pub async fn record_raw_events(tx: &mut Transaction<'_, Postgres>, events: &[RawEvent]) -> Result<(), Error> {
    if events.is_empty() {
        return Ok(());
    }
    sqlx::query(
        "INSERT INTO raw_event (received_at, topic, payload, status, error) \
         SELECT * FROM UNNEST($1::timestamptz[], $2::text[], $3::bytea[], $4::int2[], $5::text[])",
    )
    .bind(events.iter().map(|e| e.received_at).collect::<Vec<_>>())
    .bind(events.iter().map(|e| e.topic.clone()).collect::<Vec<_>>())
    .bind(events.iter().map(|e| e.payload.clone()).collect::<Vec<_>>())
    .bind(events.iter().map(|e| e.status).collect::<Vec<_>>())
    .bind(events.iter().map(|e| e.error.clone()).collect::<Vec<_>>())
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Forgets request ids older than `days`.
pub async fn prune_command_log(pool: &PgPool, days: u32) -> Result<u64, Error> {
    Ok(sqlx::query("DELETE FROM command_log WHERE handled_at < now() - make_interval(days => $1)")
        .bind(days as i32)
        .execute(pool)
        .await?
        .rows_affected())
}
