//! Queries ingest runs to apply a batch of commands in one transaction: lock the machines, read the codes,
//! remember request ids, and write the activity changes and production counts with array (UNNEST) statements.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use sqlx::{Postgres, Transaction};

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

/// A verdict remembered for a request id, in its scope: the machine and the kind of command.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct RememberedVerdict {
    pub request_id: String,
    pub machine_id: i32,
    /// The command's kind, as its topic suffix (`state`, `job/start`, …).
    pub kind: String,
    pub status: i16,
    pub reason: Option<String>,
    pub message: Option<String>,
    pub code_id: Option<i32>,
    /// The row a history command added or changed.
    pub row_id: Option<i64>,
}

/// Where a request id counts: the same id on another machine, or with another kind of command, is another
/// request.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RequestScope {
    pub request_id: String,
    pub machine_id: i32,
    pub kind: String,
}

/// Verdicts already given in any of these scopes (each answered with its scope's `kind`; rows from before
/// request ids were scoped by kind answer any kind).
pub async fn remembered_verdicts(
    tx: &mut Transaction<'_, Postgres>,
    scopes: &[RequestScope],
) -> Result<Vec<RememberedVerdict>, Error> {
    if scopes.is_empty() {
        return Ok(Vec::new());
    }
    // Not a cached prepared statement: a generic plan made while the table was empty would scan the whole
    // table forever after; planned per call, the primary key is used.
    Ok(sqlx::query_as(
        "SELECT DISTINCT ON (u.r, u.m, u.k) c.request_id, c.machine_id, u.k AS kind, c.status, c.reason, c.message, \
                c.code_id, c.row_id \
         FROM UNNEST($1::text[], $2::int4[], $3::text[]) AS u(r, m, k) \
         JOIN command_log c ON c.request_id = u.r AND c.machine_id = u.m AND c.kind IN (u.k, '') \
         ORDER BY u.r, u.m, u.k, c.kind = ''",
    )
    .persistent(false)
    .bind(scopes.iter().map(|s| s.request_id.clone()).collect::<Vec<_>>())
    .bind(scopes.iter().map(|s| s.machine_id).collect::<Vec<_>>())
    .bind(scopes.iter().map(|s| s.kind.clone()).collect::<Vec<_>>())
    .fetch_all(&mut **tx)
    .await?)
}

/// Remembers verdicts by request id, machine and kind.
pub async fn remember_verdicts(tx: &mut Transaction<'_, Postgres>, rows: &[RememberedVerdict]) -> Result<(), Error> {
    if rows.is_empty() {
        return Ok(());
    }
    sqlx::query(
        "INSERT INTO command_log (request_id, machine_id, kind, status, reason, message, code_id, row_id) \
         SELECT * FROM UNNEST($1::text[], $2::int4[], $3::text[], $4::int2[], $5::text[], $6::text[], $7::int4[], \
                              $8::int8[]) \
         ON CONFLICT (request_id, machine_id, kind) DO NOTHING",
    )
    .bind(rows.iter().map(|r| r.request_id.clone()).collect::<Vec<_>>())
    .bind(rows.iter().map(|r| r.machine_id).collect::<Vec<_>>())
    .bind(rows.iter().map(|r| r.kind.clone()).collect::<Vec<_>>())
    .bind(rows.iter().map(|r| r.status).collect::<Vec<_>>())
    .bind(rows.iter().map(|r| r.reason.clone()).collect::<Vec<_>>())
    .bind(rows.iter().map(|r| r.message.clone()).collect::<Vec<_>>())
    .bind(rows.iter().map(|r| r.code_id).collect::<Vec<_>>())
    .bind(rows.iter().map(|r| r.row_id).collect::<Vec<_>>())
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

/// Stores telemetry rows: one `telemetry` row per reading (key and number) of each message.
pub async fn insert_telemetry(tx: &mut Transaction<'_, Postgres>, rows: &[TelemetryRow]) -> Result<(), Error> {
    let (mut machines, mut keys, mut times, mut values) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for r in rows {
        let Some(readings) = r.data.as_object() else { continue };
        for (key, value) in readings {
            if let Some(v) = value.as_f64() {
                machines.push(r.machine_id);
                keys.push(key.as_str());
                times.push(r.ts);
                values.push(v);
            }
        }
    }
    if machines.is_empty() {
        return Ok(());
    }
    sqlx::query(
        "INSERT INTO telemetry (machine_id, key, ts, value) \
         SELECT * FROM UNNEST($1::int4[], $2::text[], $3::timestamptz[], $4::float8[])",
    )
    .bind(machines)
    .bind(keys)
    .bind(times)
    .bind(values)
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

/// Ends a job at `at` and records its last counts (none when both are 0), from `from` when the caller knows
/// where its records end (counts of the same batch not yet written), else from the end of its latest record
/// (or its start).
pub async fn end_job(
    tx: &mut Transaction<'_, Postgres>,
    job: i64,
    at: DateTime<Utc>,
    good: i64,
    rejects: i64,
    from: Option<DateTime<Utc>>,
) -> Result<(), Error> {
    sqlx::query(
        "INSERT INTO production_quantity (machine_id, job_id, start_time, end_time, quantity_good, quantity_rejects) \
         SELECT j.machine_id, j.id, LEAST($2, COALESCE($5, (SELECT max(p.end_time) FROM production_quantity p \
                WHERE p.job_id = j.id), j.start_time)), $2, $3, $4 \
         FROM job j WHERE j.id = $1 AND ($3 > 0 OR $4 > 0)",
    )
    .bind(job)
    .bind(at)
    .bind(good)
    .bind(rejects)
    .bind(from)
    .execute(&mut **tx)
    .await?;
    sqlx::query("UPDATE job SET end_time = $2, active = false WHERE id = $1")
        .bind(job)
        .bind(at)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// Where a machine's next production record starts, and its counters' last totals.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProductionCursor {
    pub machine_id: i32,
    /// The running job and its start.
    pub job: Option<(i64, DateTime<Utc>)>,
    /// The end of the running job's latest record, else the job's start; with no job, the end of the
    /// machine's latest record. `None`: the machine has no job and no record.
    pub from: Option<DateTime<Utc>>,
    pub totals: crate::production::Totals,
}

/// The production cursors of locked machines (reference §4.2 `produced`: a record starts where the job's
/// previous one ended, or at the job's start).
pub async fn production_cursors(
    tx: &mut Transaction<'_, Postgres>,
    machines: &[i32],
) -> Result<Vec<ProductionCursor>, Error> {
    if machines.is_empty() {
        return Ok(Vec::new());
    }
    type Row = (i32, Option<i64>, Option<DateTime<Utc>>, Option<DateTime<Utc>>, Option<i64>, Option<i64>);
    let rows: Vec<Row> = sqlx::query_as(
        "SELECT m.id, j.id, j.start_time, \
                CASE WHEN j.id IS NOT NULL \
                     THEN COALESCE((SELECT max(p.end_time) FROM production_quantity p WHERE p.job_id = j.id), \
                                   j.start_time) \
                     ELSE (SELECT max(p.end_time) FROM production_quantity p WHERE p.machine_id = m.id) END, \
                c.good_total, c.rejects_total \
         FROM machine m LEFT JOIN job j ON j.id = m.active_job_id \
         LEFT JOIN production_counter c ON c.machine_id = m.id \
         WHERE m.id = ANY($1)",
    )
    .bind(machines)
    .fetch_all(&mut **tx)
    .await?;
    Ok(rows
        .into_iter()
        .map(|(machine_id, job, job_start, from, good, rejects)| ProductionCursor {
            machine_id,
            job: job.zip(job_start),
            from,
            totals: crate::production::Totals { good, rejects },
        })
        .collect())
}

/// A count of parts to record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProductionRow {
    pub machine_id: i32,
    pub job_id: Option<i64>,
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
    pub good: i64,
    pub rejects: i64,
}

/// Records counts of parts.
pub async fn insert_production(tx: &mut Transaction<'_, Postgres>, rows: &[ProductionRow]) -> Result<(), Error> {
    if rows.is_empty() {
        return Ok(());
    }
    sqlx::query(
        "INSERT INTO production_quantity (machine_id, job_id, start_time, end_time, quantity_good, quantity_rejects) \
         SELECT * FROM UNNEST($1::int4[], $2::int8[], $3::timestamptz[], $4::timestamptz[], $5::int8[], $6::int8[])",
    )
    .bind(rows.iter().map(|r| r.machine_id).collect::<Vec<_>>())
    .bind(rows.iter().map(|r| r.job_id).collect::<Vec<_>>())
    .bind(rows.iter().map(|r| r.start).collect::<Vec<_>>())
    .bind(rows.iter().map(|r| r.end).collect::<Vec<_>>())
    .bind(rows.iter().map(|r| r.good).collect::<Vec<_>>())
    .bind(rows.iter().map(|r| r.rejects).collect::<Vec<_>>())
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Keeps machines' last counter totals, each with when it was read.
pub async fn save_counter_totals(
    tx: &mut Transaction<'_, Postgres>,
    rows: &[(i32, crate::production::Totals, DateTime<Utc>)],
) -> Result<(), Error> {
    if rows.is_empty() {
        return Ok(());
    }
    sqlx::query(
        "INSERT INTO production_counter (machine_id, good_total, rejects_total, updated_at) \
         SELECT * FROM UNNEST($1::int4[], $2::int8[], $3::int8[], $4::timestamptz[]) \
         ON CONFLICT (machine_id) DO UPDATE SET good_total = EXCLUDED.good_total, \
             rejects_total = EXCLUDED.rejects_total, updated_at = EXCLUDED.updated_at",
    )
    .bind(rows.iter().map(|r| r.0).collect::<Vec<_>>())
    .bind(rows.iter().map(|r| r.1.good).collect::<Vec<_>>())
    .bind(rows.iter().map(|r| r.1.rejects).collect::<Vec<_>>())
    .bind(rows.iter().map(|r| r.2).collect::<Vec<_>>())
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

/// Appends text to jobs' notes, in the order given.
pub async fn append_job_notes(tx: &mut Transaction<'_, Postgres>, notes: &[(i64, String)]) -> Result<(), Error> {
    for (job, note) in notes {
        sqlx::query("UPDATE job SET notes = notes || $2 WHERE id = $1").bind(job).bind(note).execute(&mut **tx).await?;
    }
    Ok(())
}
