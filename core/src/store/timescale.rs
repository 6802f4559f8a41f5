//! Whether the database runs TimescaleDB, and with which parts of it.

use sqlx::PgPool;

use crate::error::Error;

/// What the database offers for the time series.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Timescale {
    /// The extension is created in this database: `telemetry` and `raw_event` are hypertables.
    pub active: bool,
    /// The extension's version, when active.
    pub version: Option<String>,
    /// `timescaledb.license`: `timescale` (compression and continuous aggregates) or `apache`.
    pub licence: Option<String>,
}

impl Timescale {
    /// Plain PostgreSQL tables.
    pub fn plain() -> Timescale {
        Timescale { active: false, version: None, licence: None }
    }

    /// Whether chunks can be compressed and continuous aggregates made (the Timescale-licensed part).
    pub fn compression(&self) -> bool {
        self.active && self.licence.as_deref() == Some("timescale")
    }
}

/// What `pool`'s database offers.
pub async fn status(pool: &PgPool) -> Result<Timescale, Error> {
    let version: Option<String> =
        sqlx::query_scalar("SELECT extversion FROM pg_extension WHERE extname = 'timescaledb'")
            .fetch_optional(pool)
            .await?;
    let Some(version) = version else { return Ok(Timescale::plain()) };
    let licence: Option<String> =
        sqlx::query_scalar("SELECT current_setting('timescaledb.license', true)").fetch_one(pool).await?;
    Ok(Timescale { active: true, version: Some(version), licence })
}
