//! Retention and compression of the time series, and the record of the server's maintenance jobs.
//!
//! Old rows go in whole chunks where a table is a TimescaleDB hypertable (`drop_chunks`: cheap, but a chunk
//! goes only once all of it is past the cut, so rows up to one chunk interval older than the cut may stay
//! until the next run), and in batches of `batch_rows` elsewhere (each delete its own statement, so none
//! holds its locks for long). Compression needs the Timescale-licensed part of TimescaleDB. The jobs are
//! called directly by the server's own scheduler, not by TimescaleDB's job runner, so they work on every
//! PostgreSQL and TimescaleDB build. Each run is recorded in `maintenance_run`, which `/health` shows.

use chrono::{DateTime, TimeDelta, Utc};
use sqlx::PgPool;

use crate::config::{CompressionConfig, RetentionConfig};
use crate::error::Error;
use crate::store::timescale::Timescale;

/// The retention job's name in `maintenance_run`.
pub const RETENTION_JOB: &str = "retention";
/// The compression job's name in `maintenance_run`.
pub const COMPRESSION_JOB: &str = "compression";
/// The telemetry rollup refresh's name in `maintenance_run`.
pub const ROLLUP_JOB: &str = "telemetry_rollup";

/// Why compression did nothing on a database without the Timescale-licensed part of TimescaleDB.
pub const COMPRESSION_UNAVAILABLE: &str = "compression needs TimescaleDB with its Timescale-licensed part";

/// A time series that is pruned by age: its table, and the statement that deletes one batch of its rows
/// older than `$1` (at most `$2` rows) where it is a plain table.
struct Series {
    table: &'static str,
    delete_batch: &'static str,
}

/// Deletes by `ctid`: one table of its own, so a row's `ctid` is unique (unlike a hypertable's chunks).
macro_rules! delete_batch {
    ($table:literal, $column:literal) => {
        concat!(
            "DELETE FROM ",
            $table,
            " WHERE ctid = ANY(ARRAY(SELECT ctid FROM ",
            $table,
            " WHERE ",
            $column,
            " < $1 LIMIT $2))"
        )
    };
}

const TELEMETRY: Series = Series { table: "telemetry", delete_batch: delete_batch!("telemetry", "ts") };
const RAW_EVENT: Series = Series { table: "raw_event", delete_batch: delete_batch!("raw_event", "received_at") };
const COMMAND_LOG: Series = Series { table: "command_log", delete_batch: delete_batch!("command_log", "handled_at") };

/// What retention removed from one table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pruned {
    pub table: &'static str,
    /// Rows older than this were due; `None`: the table is kept for ever (0 days).
    pub cut: Option<DateTime<Utc>>,
    /// Rows deleted (plain tables).
    pub rows: u64,
    /// Chunks dropped (hypertables).
    pub chunks: u64,
    /// Whether the table is a hypertable (pruned in chunks).
    pub hypertable: bool,
}

/// What one retention run removed, table by table.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RetentionReport {
    pub tables: Vec<Pruned>,
}

impl RetentionReport {
    /// The table's entry.
    pub fn table(&self, name: &str) -> Option<&Pruned> {
        self.tables.iter().find(|p| p.table == name)
    }

    /// Rows deleted from all tables.
    pub fn rows(&self) -> u64 {
        self.tables.iter().map(|p| p.rows).sum()
    }

    /// Chunks dropped from all tables.
    pub fn chunks(&self) -> u64 {
        self.tables.iter().map(|p| p.chunks).sum()
    }

    /// One line saying what happened to each table.
    pub fn message(&self) -> String {
        let parts: Vec<String> = self
            .tables
            .iter()
            .map(|p| match (p.cut, p.hypertable) {
                (None, _) => format!("{}: kept for ever", p.table),
                (Some(cut), true) => {
                    format!("{}: {} chunks dropped before {}", p.table, p.chunks, cut.format("%Y-%m-%d %H:%M UTC"))
                }
                (Some(cut), false) => {
                    format!("{}: {} rows deleted before {}", p.table, p.rows, cut.format("%Y-%m-%d %H:%M UTC"))
                }
            })
            .collect();
        parts.join("; ")
    }
}

/// Removes telemetry older than `telemetry_days`, raw events older than `raw_event_days` and answered
/// request ids older than `request_id_days`, counted back from `now`. 0 days keeps a table for ever.
pub async fn run(
    pool: &PgPool,
    cfg: &RetentionConfig,
    timescale: &Timescale,
    now: DateTime<Utc>,
) -> Result<RetentionReport, Error> {
    let mut report = RetentionReport::default();
    for (series, days) in
        [(TELEMETRY, cfg.telemetry_days), (RAW_EVENT, cfg.raw_event_days), (COMMAND_LOG, cfg.request_id_days)]
    {
        let hypertable = timescale.active && is_hypertable(pool, series.table).await?;
        let mut pruned = Pruned { table: series.table, cut: None, rows: 0, chunks: 0, hypertable };
        if days > 0 {
            let cut = now - TimeDelta::days(i64::from(days));
            pruned.cut = Some(cut);
            if series.table == TELEMETRY.table {
                // First, so that a rollup refresh running meanwhile never reaches the removed hours.
                crate::store::telemetry::note_removed_before(pool, cut).await?;
            }
            if hypertable {
                pruned.chunks = drop_chunks(pool, series.table, cut).await?;
            } else {
                pruned.rows = delete_in_batches(pool, series.delete_batch, cut, cfg.batch_rows).await?;
            }
        }
        report.tables.push(pruned);
    }
    Ok(report)
}

/// Whether `table` is a TimescaleDB hypertable (asked only when the extension is active).
async fn is_hypertable(pool: &PgPool, table: &str) -> Result<bool, Error> {
    Ok(sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM timescaledb_information.hypertables \
         WHERE hypertable_schema = current_schema() AND hypertable_name = $1)",
    )
    .bind(table)
    .fetch_one(pool)
    .await?)
}

/// Drops the chunks of `table` that lie wholly before `cut`; returns how many.
async fn drop_chunks(pool: &PgPool, table: &str, cut: DateTime<Utc>) -> Result<u64, Error> {
    let dropped: i64 = sqlx::query_scalar("SELECT count(*) FROM drop_chunks($1::regclass, older_than => $2)")
        .bind(table)
        .bind(cut)
        .fetch_one(pool)
        .await?;
    Ok(dropped as u64)
}

/// Runs `delete_batch` until a batch removes fewer than `batch_rows` rows; returns the rows deleted.
async fn delete_in_batches(
    pool: &PgPool,
    delete_batch: &'static str,
    cut: DateTime<Utc>,
    batch_rows: u32,
) -> Result<u64, Error> {
    let batch = i64::from(batch_rows.max(1));
    let mut total = 0;
    loop {
        let deleted = sqlx::query(delete_batch).bind(cut).bind(batch).execute(pool).await?.rows_affected();
        total += deleted;
        if deleted < batch as u64 {
            return Ok(total);
        }
    }
}

/// What one compression run did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompressionReport {
    /// Chunks compressed by this run.
    pub chunks: u64,
    /// What was done, or why nothing was.
    pub message: String,
}

/// The hypertables compressed, with their settings: telemetry by machine and key, in time order, so a
/// key's readings sit together as one column of numbers; raw events in time order.
const COMPRESSED: [(&str, &str); 2] = [
    (
        "telemetry",
        "ALTER TABLE telemetry SET (timescaledb.compress, timescaledb.compress_segmentby = 'machine_id, key', \
         timescaledb.compress_orderby = 'ts')",
    ),
    ("raw_event", "ALTER TABLE raw_event SET (timescaledb.compress, timescaledb.compress_orderby = 'received_at')"),
];

/// Compresses the chunks of `telemetry` and `raw_event` that lie wholly before `now - after_days` and are
/// not compressed yet. Without the Timescale-licensed part of TimescaleDB, or with `after_days` 0, does
/// nothing and says why.
pub async fn compress(
    pool: &PgPool,
    cfg: &CompressionConfig,
    timescale: &Timescale,
    now: DateTime<Utc>,
) -> Result<CompressionReport, Error> {
    if cfg.after_days == 0 {
        return Ok(CompressionReport { chunks: 0, message: "off (compression.after_days is 0)".into() });
    }
    if !timescale.compression() {
        let why = if timescale.active {
            format!(
                "{COMPRESSION_UNAVAILABLE} (timescaledb.license is {})",
                timescale.licence.as_deref().unwrap_or("not set")
            )
        } else {
            format!("{COMPRESSION_UNAVAILABLE} (the time series are plain tables)")
        };
        return Ok(CompressionReport { chunks: 0, message: why });
    }
    let cut = now - TimeDelta::days(i64::from(cfg.after_days));
    let mut parts = Vec::new();
    let mut total = 0;
    for (table, settings) in COMPRESSED {
        if !is_hypertable(pool, table).await? {
            parts.push(format!("{table}: not a hypertable"));
            continue;
        }
        enable_compression(pool, table, settings).await?;
        let n = compress_chunks(pool, table, cut).await?;
        total += n;
        parts.push(format!("{table}: {n} chunks compressed before {}", cut.format("%Y-%m-%d %H:%M UTC")));
    }
    Ok(CompressionReport { chunks: total, message: parts.join("; ") })
}

/// Turns compression on for `table` with `settings` unless it is on already (however it was set).
async fn enable_compression(pool: &PgPool, table: &str, settings: &'static str) -> Result<(), Error> {
    let enabled: bool = sqlx::query_scalar(
        "SELECT compression_enabled FROM timescaledb_information.hypertables \
         WHERE hypertable_schema = current_schema() AND hypertable_name = $1",
    )
    .bind(table)
    .fetch_one(pool)
    .await?;
    if !enabled {
        sqlx::query(settings).execute(pool).await?;
        tracing::info!("compression enabled on the hypertable {table}");
    }
    Ok(())
}

/// Compresses the uncompressed chunks of `table` that end before `cut`; returns how many.
async fn compress_chunks(pool: &PgPool, table: &str, cut: DateTime<Utc>) -> Result<u64, Error> {
    // Chunks compressed before are left out, so a nightly run does not touch (or log) every old chunk again.
    let n: i64 = sqlx::query_scalar(
        "SELECT count(compress_chunk(c, if_not_compressed => true)) \
         FROM show_chunks($1::regclass, older_than => $2) c \
         JOIN timescaledb_information.chunks i ON format('%I.%I', i.chunk_schema, i.chunk_name)::regclass = c \
         WHERE NOT i.is_compressed",
    )
    .bind(table)
    .bind(cut)
    .fetch_one(pool)
    .await?;
    Ok(n as u64)
}

/// The last run of one maintenance job.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct MaintenanceRun {
    pub job: String,
    pub started_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
    pub ok: bool,
    pub rows: i64,
    pub chunks: i32,
    /// What was done, or what went wrong.
    pub message: String,
}

/// Records `run` as its job's last run.
pub async fn record_run(pool: &PgPool, run: &MaintenanceRun) -> Result<(), Error> {
    sqlx::query(
        "INSERT INTO maintenance_run (job, started_at, finished_at, ok, rows, chunks, message) \
         VALUES ($1, $2, $3, $4, $5, $6, $7) \
         ON CONFLICT (job) DO UPDATE SET started_at = excluded.started_at, finished_at = excluded.finished_at, \
         ok = excluded.ok, rows = excluded.rows, chunks = excluded.chunks, message = excluded.message",
    )
    .bind(&run.job)
    .bind(run.started_at)
    .bind(run.finished_at)
    .bind(run.ok)
    .bind(run.rows)
    .bind(run.chunks)
    .bind(&run.message)
    .execute(pool)
    .await?;
    Ok(())
}

/// The last run of every maintenance job that has run, by job name.
pub async fn maintenance_runs(pool: &PgPool) -> Result<Vec<MaintenanceRun>, Error> {
    Ok(sqlx::query_as(
        "SELECT job, started_at, finished_at, ok, rows, chunks, message FROM maintenance_run ORDER BY job",
    )
    .fetch_all(pool)
    .await?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_plain_table_delete_removes_one_batch_of_old_rows_by_ctid() {
        assert_eq!(
            TELEMETRY.delete_batch,
            "DELETE FROM telemetry WHERE ctid = ANY(ARRAY(SELECT ctid FROM telemetry WHERE ts < $1 LIMIT $2))"
        );
    }

    #[test]
    fn the_report_says_what_happened_to_each_table() {
        let cut = DateTime::parse_from_rfc3339("2025-01-02T03:04:00Z").unwrap().with_timezone(&Utc);
        let report = RetentionReport {
            tables: vec![
                Pruned { table: "telemetry", cut: Some(cut), rows: 0, chunks: 3, hypertable: true },
                Pruned { table: "raw_event", cut: None, rows: 0, chunks: 0, hypertable: true },
                Pruned { table: "command_log", cut: Some(cut), rows: 12, chunks: 0, hypertable: false },
            ],
        };
        assert_eq!((report.rows(), report.chunks()), (12, 3));
        assert_eq!(
            report.message(),
            "telemetry: 3 chunks dropped before 2025-01-02 03:04 UTC; raw_event: kept for ever; \
             command_log: 12 rows deleted before 2025-01-02 03:04 UTC"
        );
    }
}
