//! The daily OEE cache (migration 0004): per machine and plant day, the engine's additive sums of a day
//! entirely in the past. Triggers on the history tables delete a day's row when anything under it
//! changes; a row computed with other engine settings is ignored.

use chrono::{DateTime, NaiveDate, Utc};
use serde::Serialize;
use sqlx::PgPool;
use sqlx::types::Json;

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
           AND minor_stop_threshold_ms = $4 AND engine_version = $5",
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
    day: NaiveDate,
    day_start: DateTime<Utc>,
    day_end: DateTime<Utc>,
    sums: &'a Sums,
}

/// Stores computed past days (one statement for all of them), replacing rows of the same machine and
/// day start.
pub async fn store_days(pool: &PgPool, days: &[DaySums], cfg: EngineConfig) -> Result<(), Error> {
    if days.is_empty() {
        return Ok(());
    }
    let rows: Vec<NewRow<'_>> = days
        .iter()
        .map(|d| NewRow {
            machine_id: d.machine_id,
            day: d.day,
            day_start: d.day_start,
            day_end: d.day_end,
            sums: &d.sums,
        })
        .collect();
    sqlx::query(
        "INSERT INTO oee_day_cache (machine_id, day, day_start, day_end, minor_stop_threshold_ms, engine_version, sums) \
         SELECT r.machine_id, r.day, r.day_start, r.day_end, $2, $3, r.sums \
         FROM jsonb_to_recordset($1) AS r (machine_id int, day date, day_start timestamptz, day_end timestamptz, sums jsonb) \
         WHERE EXISTS (SELECT 1 FROM machine m WHERE m.id = r.machine_id) \
         ON CONFLICT (machine_id, day_start) DO UPDATE SET day = EXCLUDED.day, day_end = EXCLUDED.day_end, \
             minor_stop_threshold_ms = EXCLUDED.minor_stop_threshold_ms, engine_version = EXCLUDED.engine_version, \
             sums = EXCLUDED.sums, computed_at = now()",
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
    Ok(sqlx::query_scalar("SELECT count(*) FROM oee_day_cache WHERE machine_id = $1")
        .bind(machine)
        .fetch_one(pool)
        .await?)
}
