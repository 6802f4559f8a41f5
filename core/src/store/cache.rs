//! The daily OEE cache (migration 0004): per machine and plant day, the engine's additive sums of a day
//! entirely in the past. Triggers on the history tables delete a day's row when anything under it
//! changes; a row computed with other engine settings is ignored.

use chrono::{DateTime, NaiveDate, Utc};
use serde::Serialize;
use sqlx::pool::PoolConnection;
use sqlx::types::Json;
use sqlx::{PgConnection, PgPool, Postgres};

use crate::error::Error;
use crate::oee::{EngineConfig, SUMS_VERSION, Sums};

/// One machine's sums over one plant day.
#[derive(Debug, Clone, PartialEq)]
pub struct DaySums {
    pub machine_id: i32,
    pub day: NaiveDate,
    pub day_start: DateTime<Utc>,
    pub day_end: DateTime<Utc>,
    pub sums: Sums,
}

/// The advisory lock history writers hold shared (taken by the cache triggers, until they commit) and a
/// reader holds exclusively while it takes the snapshot it computes days to store from.
pub const WRITERS_LOCK: i64 = 3_993_807_950;

/// How long a reader waits for the history writers in flight before it gives up storing days (writers
/// arriving meanwhile queue behind it, so this bounds their stall).
const WRITERS_WAIT: &str = "500ms";

type CachedRow = (i32, NaiveDate, DateTime<Utc>, DateTime<Utc>, Json<Sums>);

/// The cached days of `machines` lying inside [from, to), computed with the engine settings `cfg` (rows
/// from other settings or engine versions are left out, as if missing).
pub async fn cached_days(
    pool: &PgPool,
    machines: &[i32],
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    cfg: EngineConfig,
) -> Result<Vec<DaySums>, Error> {
    let rows: Vec<CachedRow> = sqlx::query_as(
        "SELECT machine_id, day, day_start, day_end, sums FROM oee_day_cache \
         WHERE machine_id = ANY($1) AND day_start >= $2 AND day_end <= $3 \
           AND minor_stop_threshold_ms = $4 AND engine_version = $5 AND sums IS NOT NULL",
    )
    .bind(machines)
    .bind(from)
    .bind(to)
    .bind(cfg.minor_stop_threshold_ms)
    .bind(SUMS_VERSION)
    .fetch_all(pool)
    .await?;
    Ok(rows
        .into_iter()
        .map(|(machine_id, day, day_start, day_end, Json(sums))| DaySums { machine_id, day, day_start, day_end, sums })
        .collect())
}

#[derive(Serialize)]
struct NewRow<'a> {
    machine_id: i32,
    day_start: DateTime<Utc>,
    day_end: DateTime<Utc>,
    sums: &'a Sums,
}

/// A day a reader is about to compute.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct DayClaim {
    pub machine_id: i32,
    pub day: NaiveDate,
    pub day_start: DateTime<Utc>,
    pub day_end: DateTime<Utc>,
}

/// Claims days about to be computed (rows without sums, committed before the reader's snapshot), so that
/// a history writer committing later deletes the claim and the stale result is not stored.
pub async fn claim_days(pool: &PgPool, days: &[DayClaim], cfg: EngineConfig) -> Result<(), Error> {
    if days.is_empty() {
        return Ok(());
    }
    sqlx::query(
        "INSERT INTO oee_day_cache (machine_id, day, day_start, day_end, minor_stop_threshold_ms, engine_version) \
         SELECT r.machine_id, r.day, r.day_start, r.day_end, $2, $3 \
         FROM jsonb_to_recordset($1) AS r (machine_id int, day date, day_start timestamptz, day_end timestamptz) \
         WHERE EXISTS (SELECT 1 FROM machine m WHERE m.id = r.machine_id) \
         ON CONFLICT (machine_id, day_start) DO UPDATE SET day = EXCLUDED.day, day_end = EXCLUDED.day_end, \
             minor_stop_threshold_ms = EXCLUDED.minor_stop_threshold_ms, engine_version = EXCLUDED.engine_version, \
             sums = NULL, computed_at = now()",
    )
    .bind(Json(days))
    .bind(cfg.minor_stop_threshold_ms)
    .bind(SUMS_VERSION)
    .execute(pool)
    .await?;
    Ok(())
}

/// A read-only snapshot of the history that includes every history write committed or in flight when it
/// was taken (see migration 0004).
pub struct HistorySnapshot {
    conn: PoolConnection<Postgres>,
    /// Whether the connection is clean again (no lock, no transaction) and may go back to the pool.
    clean: bool,
}

impl Drop for HistorySnapshot {
    fn drop(&mut self) {
        if !self.clean {
            self.conn.close_on_drop();
        }
    }
}

impl HistorySnapshot {
    /// Waits (briefly) for the history writers in flight and takes the snapshot; `None` when they did not
    /// finish in time, in which case the caller reads without one and stores nothing.
    pub async fn take(pool: &PgPool) -> Result<Option<HistorySnapshot>, Error> {
        let mut snap = HistorySnapshot { conn: pool.acquire().await?, clean: false };
        let conn = &mut *snap.conn;
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!("SET lock_timeout = '{WRITERS_WAIT}'"))).execute(&mut *conn).await?;
        let locked = sqlx::query("SELECT pg_advisory_lock($1)").bind(WRITERS_LOCK).execute(&mut *conn).await;
        sqlx::raw_sql("RESET lock_timeout").execute(&mut *conn).await?;
        match locked {
            Ok(_) => {}
            Err(sqlx::Error::Database(e)) if e.code().as_deref() == Some("55P03") => {
                snap.clean = true;
                return Ok(None);
            }
            Err(e) => return Err(e.into()),
        }
        sqlx::raw_sql("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY").execute(&mut *conn).await?;
        // The transaction's snapshot is taken as this first statement starts, while the lock is held.
        sqlx::query("SELECT pg_advisory_unlock($1)").bind(WRITERS_LOCK).execute(&mut *conn).await?;
        Ok(Some(snap))
    }

    /// The connection to read through.
    pub fn conn(&mut self) -> &mut PgConnection {
        &mut self.conn
    }

    /// Ends the read-only transaction and returns the connection to the pool.
    pub async fn finish(mut self) -> Result<(), Error> {
        sqlx::raw_sql("COMMIT").execute(&mut *self.conn).await?;
        self.clean = true;
        Ok(())
    }
}

/// Stores computed days into their claims (one statement for all of them); a claim deleted meanwhile by a
/// history writer stays deleted.
pub async fn fill_claimed_days(pool: &PgPool, days: &[DaySums], cfg: EngineConfig) -> Result<(), Error> {
    if days.is_empty() {
        return Ok(());
    }
    let rows: Vec<NewRow<'_>> = days
        .iter()
        .map(|d| NewRow { machine_id: d.machine_id, day_start: d.day_start, day_end: d.day_end, sums: &d.sums })
        .collect();
    sqlx::query(
        "UPDATE oee_day_cache c SET sums = r.sums, computed_at = now() \
         FROM jsonb_to_recordset($1) AS r (machine_id int, day_start timestamptz, day_end timestamptz, sums jsonb) \
         WHERE c.machine_id = r.machine_id AND c.day_start = r.day_start AND c.day_end = r.day_end \
           AND c.sums IS NULL AND c.minor_stop_threshold_ms = $2 AND c.engine_version = $3",
    )
    .bind(Json(&rows))
    .bind(cfg.minor_stop_threshold_ms)
    .bind(SUMS_VERSION)
    .execute(pool)
    .await?;
    Ok(())
}

/// How many cached days a machine has (for operators and tests).
pub async fn cached_day_count(pool: &PgPool, machine: i32) -> Result<i64, Error> {
    Ok(sqlx::query_scalar("SELECT count(*) FROM oee_day_cache WHERE machine_id = $1 AND sums IS NOT NULL")
        .bind(machine)
        .fetch_one(pool)
        .await?)
}
