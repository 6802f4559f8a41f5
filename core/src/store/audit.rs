//! The audit trail of history edits: who changed which activity, job or production record of a machine's
//! past, when, and the record before and after (`history_audit`). The web writes it where it sends a
//! history command and learns ingest's verdict; the machine report shows it.

use chrono::{DateTime, Utc};
use serde_json::Value;
use sqlx::PgPool;

use crate::error::Error;

/// The kind of record a history edit changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuditKind {
    Activity,
    Job,
    Production,
}

impl AuditKind {
    /// The name stored in `history_audit.kind` and shown on the page.
    pub fn name(self) -> &'static str {
        match self {
            AuditKind::Activity => "activity",
            AuditKind::Job => "job",
            AuditKind::Production => "production",
        }
    }
}

/// A record as the audit trail keeps it: its row as JSON (for a job, with its parts' totals).
pub async fn snapshot(pool: &PgPool, kind: AuditKind, id: i64) -> Result<Option<Value>, Error> {
    let sql = match kind {
        AuditKind::Activity => {
            "SELECT jsonb_build_object('id', a.id, 'machine_id', a.machine_id, 'activity_code_id', a.activity_code_id, \
                    'code', c.short_description, 'start_time', a.start_time, 'end_time', a.end_time, \
                    'user_id', a.user_id) \
             FROM activity a JOIN activity_code c ON c.id = a.activity_code_id WHERE a.id = $1"
        }
        AuditKind::Job => {
            "SELECT jsonb_build_object('id', j.id, 'machine_id', j.machine_id, 'job_number', j.job_number, \
                    'ideal_cycle_time_s', j.ideal_cycle_time_s, 'start_time', j.start_time, \
                    'end_time', j.end_time, 'active', j.active, \
                    'quantity_good', coalesce((SELECT sum(quantity_good) FROM production_quantity p \
                                               WHERE p.job_id = j.id), 0), \
                    'quantity_rejects', coalesce((SELECT sum(quantity_rejects) FROM production_quantity p \
                                                  WHERE p.job_id = j.id), 0)) \
             FROM job j WHERE j.id = $1"
        }
        AuditKind::Production => {
            "SELECT jsonb_build_object('id', id, 'machine_id', machine_id, 'job_id', job_id, \
                    'start_time', start_time, 'end_time', end_time, 'quantity_good', quantity_good, \
                    'quantity_rejects', quantity_rejects) \
             FROM production_quantity WHERE id = $1"
        }
    };
    Ok(sqlx::query_scalar(sql).bind(id).fetch_optional(pool).await?)
}

/// One change to keep.
#[derive(Debug, Clone)]
pub struct NewAuditEntry<'a> {
    pub machine_id: i32,
    pub user_id: Option<i32>,
    pub user_name: &'a str,
    pub kind: AuditKind,
    pub record_id: i64,
    pub before: Option<Value>,
    pub after: Option<Value>,
}

/// Keeps one change in the trail.
pub async fn record_change(pool: &PgPool, e: &NewAuditEntry<'_>) -> Result<(), Error> {
    sqlx::query(
        "INSERT INTO history_audit (machine_id, user_id, user_name, kind, record_id, before, after) \
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(e.machine_id)
    .bind(e.user_id)
    .bind(e.user_name)
    .bind(e.kind.name())
    .bind(e.record_id)
    .bind(&e.before)
    .bind(&e.after)
    .execute(pool)
    .await?;
    Ok(())
}

/// A change as the trail kept it.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct AuditEntry {
    pub id: i64,
    pub user_id: Option<i32>,
    pub user_name: String,
    pub changed_at: DateTime<Utc>,
    pub kind: String,
    pub record_id: i64,
    pub before: Option<Value>,
    pub after: Option<Value>,
}

/// A machine's most recent changes, newest first, at most `limit`.
pub async fn machine_changes(pool: &PgPool, machine: i32, limit: i64) -> Result<Vec<AuditEntry>, Error> {
    Ok(sqlx::query_as(
        "SELECT id, user_id, user_name, changed_at, kind, record_id, before, after FROM history_audit \
         WHERE machine_id = $1 ORDER BY changed_at DESC, id DESC LIMIT $2",
    )
    .bind(machine)
    .bind(limit)
    .fetch_all(pool)
    .await?)
}
