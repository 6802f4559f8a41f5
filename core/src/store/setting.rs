//! Plant settings an administrator changes at run time (migration 0012): while one is set it overrides the
//! config file's value of the same key; cleared, the config file decides again.

use chrono::{DateTime, Utc};
use sqlx::PgPool;

use crate::error::Error;

/// The key of the minor-stop threshold, named as its config key (`[oee] minor_stop_threshold_s`).
pub const MINOR_STOP_THRESHOLD: &str = "oee.minor_stop_threshold_s";

/// The largest minor-stop threshold, in seconds: a day (the config file's limit too).
pub const MAX_MINOR_STOP_THRESHOLD_S: u64 = 86_400;

/// A setting's value and who set it when.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Setting<T> {
    pub value: T,
    pub updated_at: DateTime<Utc>,
    pub updated_by: Option<String>,
}

/// The minor-stop threshold an administrator set, in seconds; `None`: the config file's value applies.
pub async fn minor_stop_threshold(pool: &PgPool) -> Result<Option<Setting<u64>>, Error> {
    let row: Option<(serde_json::Value, DateTime<Utc>, Option<String>)> =
        sqlx::query_as("SELECT value, updated_at, updated_by FROM plant_setting WHERE key = $1")
            .bind(MINOR_STOP_THRESHOLD)
            .fetch_optional(pool)
            .await?;
    let Some((value, updated_at, updated_by)) = row else { return Ok(None) };
    // A value written by hand that is not a whole number of seconds in range is ignored, with a warning,
    // rather than failing every report.
    match value.as_u64().filter(|s| *s <= MAX_MINOR_STOP_THRESHOLD_S) {
        Some(value) => Ok(Some(Setting { value, updated_at, updated_by })),
        None => {
            tracing::warn!(
                "plant_setting `{MINOR_STOP_THRESHOLD}` holds {value}, not 0 to {MAX_MINOR_STOP_THRESHOLD_S} seconds: \
                 the config file's value applies"
            );
            Ok(None)
        }
    }
}

/// Sets the minor-stop threshold to `seconds` (or back to the config file's value with `None`) and forgets
/// every cached OEE day, all computed with the threshold before. Returns how many cached days were forgotten.
pub async fn set_minor_stop_threshold(
    pool: &PgPool,
    seconds: Option<u64>,
    by: Option<&str>,
    now: DateTime<Utc>,
) -> Result<u64, Error> {
    if let Some(s) = seconds
        && s > MAX_MINOR_STOP_THRESHOLD_S
    {
        return Err(Error::field(
            "minor_stop_threshold_s",
            format!("{s} seconds is more than a day: give 0 to {MAX_MINOR_STOP_THRESHOLD_S} seconds"),
        ));
    }
    let mut tx = pool.begin().await?;
    match seconds {
        Some(s) => {
            sqlx::query(
                "INSERT INTO plant_setting (key, value, updated_at, updated_by) VALUES ($1, $2, $3, $4) \
                 ON CONFLICT (key) DO UPDATE SET value = $2, updated_at = $3, updated_by = $4",
            )
            .bind(MINOR_STOP_THRESHOLD)
            .bind(serde_json::json!(s))
            .bind(now)
            .bind(by)
            .execute(&mut *tx)
            .await?;
        }
        None => {
            sqlx::query("DELETE FROM plant_setting WHERE key = $1")
                .bind(MINOR_STOP_THRESHOLD)
                .execute(&mut *tx)
                .await?;
        }
    }
    // Rows of another threshold are ignored by readers anyway; deleting them keeps the table to what is
    // used. A reader filling days it claimed before this finds its claims gone and stores nothing.
    let forgotten = sqlx::query("DELETE FROM oee_day_cache").execute(&mut *tx).await?.rows_affected();
    tx.commit().await?;
    Ok(forgotten)
}

/// The OEE engine's settings in force: the config file's (`oee`), with the minor-stop threshold an
/// administrator set, if any.
pub async fn oee_engine(pool: &PgPool, oee: &crate::config::OeeConfig) -> Result<crate::oee::EngineConfig, Error> {
    let mut engine = oee.engine();
    if let Some(s) = minor_stop_threshold(pool).await? {
        engine.minor_stop_threshold_ms = s.value as i64 * 1000;
    }
    Ok(engine)
}
