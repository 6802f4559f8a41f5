//! Whether the database runs TimescaleDB, and with which parts of it: turning the time-series tables into
//! hypertables when the extension can be created, the one line that says at start which mode the server
//! runs in, and the refusal of a database whose TimescaleDB cannot be loaded.

use sqlx::PgPool;

use crate::config::{DatabaseConfig, TimescaleMode};
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

/// The time-series tables that become hypertables, with their time column.
pub const HYPERTABLES: [(&str, &str); 2] = [("telemetry", "ts"), ("raw_event", "received_at")];

/// How the time series are stored, as the server says once at start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StorageMode {
    /// `telemetry` and `raw_event` are hypertables with chunks of these many hours.
    Hypertables { timescale: Timescale, telemetry_chunk_hours: u32, raw_event_chunk_hours: u32 },
    /// Plain PostgreSQL tables, and why.
    Plain(PlainReason),
}

/// Why the time series are in plain tables.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PlainReason {
    /// `database.timescaledb = "off"`.
    Off,
    /// The PostgreSQL server has no TimescaleDB.
    NotInstalled,
    /// TimescaleDB is installed on the external server but not in its `shared_preload_libraries`.
    NotPreloaded,
    /// `CREATE EXTENSION timescaledb` failed: PostgreSQL's reason.
    CannotCreate(String),
}

impl StorageMode {
    /// What the database offers: [`Timescale::plain`] for plain tables.
    pub fn timescale(&self) -> Timescale {
        match self {
            StorageMode::Hypertables { timescale, .. } => timescale.clone(),
            StorageMode::Plain(_) => Timescale::plain(),
        }
    }
}

impl std::fmt::Display for StorageMode {
    /// The start-up line, e.g. `database: TimescaleDB 2.28.3, hypertables for telemetry and raw_event
    /// (chunks 24 h / 168 h); compression available`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StorageMode::Hypertables { timescale, telemetry_chunk_hours, raw_event_chunk_hours } => {
                let version = timescale.version.as_deref().unwrap_or("(version unknown)");
                let compression = if timescale.compression() {
                    "compression available"
                } else {
                    "no compression (this TimescaleDB build lacks its Timescale-licensed part)"
                };
                write!(
                    f,
                    "database: TimescaleDB {version}, hypertables for telemetry and raw_event (chunks \
                     {telemetry_chunk_hours} h / {raw_event_chunk_hours} h); {compression}"
                )
            }
            StorageMode::Plain(reason) => {
                let why = match reason {
                    PlainReason::Off => "database.timescaledb = \"off\"".to_string(),
                    PlainReason::NotInstalled => "TimescaleDB not installed".to_string(),
                    PlainReason::NotPreloaded => "TimescaleDB not preloaded on the external server: add \
                                                  shared_preload_libraries = 'timescaledb' to its \
                                                  postgresql.conf and restart it"
                        .to_string(),
                    PlainReason::CannotCreate(e) => format!("CREATE EXTENSION timescaledb failed: {e}"),
                };
                write!(f, "database: plain PostgreSQL tables ({why})")
            }
        }
    }
}

/// Where the database runs, for the remedy a refusal names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Host {
    /// The embedded cluster, which this server starts with TimescaleDB preloaded unless
    /// `database.timescaledb = "off"`.
    Embedded,
    /// A server at `database.url`, configured by its administrator.
    External,
}

/// What a database says about its TimescaleDB before anything else runs on it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found {
    /// `extversion` of the extension in this database, if it holds it.
    pub extension: Option<String>,
    /// Whether the server has that version of the extension installed.
    pub installed: bool,
    /// Whether `shared_preload_libraries` names `timescaledb`.
    pub preloaded: bool,
    /// The server's major version.
    pub pg_major: u32,
}

/// Why a database holding the TimescaleDB extension cannot be opened, with the remedy; `None` when it can
/// (no extension, or the extension installed and preloaded). Without the library or the preload, the first
/// schema change ends the connection, and the hypertables' rows cannot be read.
pub fn refusal(found: &Found, host: Host, mode: TimescaleMode) -> Option<String> {
    let version = found.extension.as_deref()?;
    let pg = found.pg_major;
    let head = format!("the database holds the TimescaleDB extension (version {version}), which ");
    if !found.installed {
        return Some(format!(
            "{head}is not installed for PostgreSQL {pg} on the database server: install TimescaleDB {version} \
             for PostgreSQL {pg} (Timescale's package timescaledb-2-postgresql-{pg}, or the build this database \
             was made with) and start again; telemetry and raw events are kept in its hypertables"
        ));
    }
    if found.preloaded {
        return None;
    }
    Some(match (host, mode) {
        (Host::Embedded, TimescaleMode::Off) => format!(
            "{head}must be preloaded, and database.timescaledb = \"off\" starts the embedded PostgreSQL without \
             it: set database.timescaledb = \"auto\" (OEE_DATABASE__TIMESCALEDB=auto) and start again"
        ),
        (Host::Embedded, TimescaleMode::Auto) => format!(
            "{head}must be preloaded, and the embedded PostgreSQL runs without it (started by another process, \
             or shared_preload_libraries overridden): stop it, and start the server again so that it starts \
             the cluster with shared_preload_libraries = 'timescaledb'"
        ),
        (Host::External, _) => format!(
            "{head}must be preloaded, and the server at database.url runs without it: add \
             shared_preload_libraries = 'timescaledb' to its postgresql.conf and restart it"
        ),
    })
}

/// What `pool`'s database says about its TimescaleDB ([`Found`]); only catalog reads, which work even
/// when the extension's library cannot be loaded.
pub async fn found(pool: &PgPool) -> Result<Found, Error> {
    let (extension, installed, preloaded, version_num): (Option<String>, bool, bool, String) = sqlx::query_as(
        "SELECT e.extversion, \
                EXISTS (SELECT 1 FROM pg_available_extension_versions v \
                        WHERE v.name = 'timescaledb' AND v.version = e.extversion), \
                'timescaledb' = ANY (string_to_array(replace(current_setting('shared_preload_libraries'), ' ', ''), ',')), \
                current_setting('server_version_num') \
         FROM (SELECT (SELECT extversion FROM pg_extension WHERE extname = 'timescaledb') AS extversion) e",
    )
    .fetch_one(pool)
    .await?;
    let pg_major = version_num.parse::<u32>().unwrap_or(0) / 10_000;
    Ok(Found { extension, installed, preloaded, pg_major })
}

/// Refuses, with the remedy, a database that holds the TimescaleDB extension but cannot load it: before
/// migrations, which would otherwise fail with PostgreSQL's bare "must be preloaded".
pub async fn check_loadable(pool: &PgPool, host: Host, mode: TimescaleMode) -> Result<(), Error> {
    match refusal(&found(pool).await?, host, mode) {
        Some(reason) => Err(Error::TimescaleUnavailable(reason)),
        None => Ok(()),
    }
}

/// Whether an error PostgreSQL gave (on a migration, say) comes from a TimescaleDB it cannot load.
pub fn is_load_failure(message: &str) -> bool {
    message.contains("extension \"timescaledb\" must be preloaded")
        || (message.contains("$libdir/timescaledb") && message.contains("could not access file"))
}

/// Turns `telemetry` and `raw_event` into hypertables when `database.timescaledb = "auto"` and the
/// extension can be created (existing rows move into chunks), keeps their chunk intervals as configured,
/// and turns on compression where the licence provides it. Creates no TimescaleDB policies: the server's
/// own scheduler compresses and drops chunks. Returns the mode, for the start-up line.
pub async fn enable(pool: &PgPool, db: &DatabaseConfig) -> Result<StorageMode, Error> {
    let existing = status(pool).await?;
    if db.timescaledb == TimescaleMode::Off && !existing.active {
        return Ok(StorageMode::Plain(PlainReason::Off));
    }
    if !existing.active {
        let (available, preloaded): (bool, bool) = sqlx::query_as(
            "SELECT EXISTS (SELECT 1 FROM pg_available_extensions WHERE name = 'timescaledb'), \
                    'timescaledb' = ANY (string_to_array(replace(current_setting('shared_preload_libraries'), ' ', ''), ','))",
        )
        .fetch_one(pool)
        .await?;
        if !available {
            return Ok(StorageMode::Plain(PlainReason::NotInstalled));
        }
        // Without the preload, CREATE EXTENSION ends the connection: ask first.
        if !preloaded {
            return Ok(StorageMode::Plain(PlainReason::NotPreloaded));
        }
        if let Err(e) = sqlx::query("CREATE EXTENSION IF NOT EXISTS timescaledb").execute(pool).await {
            return Ok(StorageMode::Plain(PlainReason::CannotCreate(e.to_string())));
        }
    }
    let timescale = status(pool).await?;
    if db.timescaledb == TimescaleMode::Auto {
        make_hypertables(pool, db, &timescale).await?;
    }
    Ok(StorageMode::Hypertables {
        timescale,
        telemetry_chunk_hours: db.telemetry_chunk_hours,
        raw_event_chunk_hours: db.raw_event_chunk_hours,
    })
}

/// One step for all servers sharing the database (several ingest hosts may start at once).
async fn make_hypertables(pool: &PgPool, db: &DatabaseConfig, timescale: &Timescale) -> Result<(), Error> {
    let mut tx = pool.begin().await?;
    sqlx::query("SELECT pg_advisory_xact_lock(hashtext('oee-server timescaledb hypertables'))")
        .execute(&mut *tx)
        .await?;
    // TimescaleDB warns that telemetry's `key` is varchar rather than text, which changes nothing here; the
    // warning (and the notice about moving rows) would reach the log of a start and a command's output.
    sqlx::query("SET LOCAL client_min_messages = error").execute(&mut *tx).await?;
    for (table, column) in HYPERTABLES {
        let hours = if table == "telemetry" { db.telemetry_chunk_hours } else { db.raw_event_chunk_hours };
        let interval = format!("{hours} hours");
        let (is_hypertable, current): (bool, Option<bool>) = sqlx::query_as(
            "SELECT EXISTS (SELECT 1 FROM timescaledb_information.hypertables \
                            WHERE hypertable_schema = current_schema() AND hypertable_name = $1), \
                    (SELECT d.time_interval = $2::interval FROM timescaledb_information.dimensions d \
                     WHERE d.hypertable_schema = current_schema() AND d.hypertable_name = $1 AND d.column_name = $3)",
        )
        .bind(table)
        .bind(&interval)
        .bind(column)
        .fetch_one(&mut *tx)
        .await?;
        if !is_hypertable {
            // The tables keep their own indexes; TimescaleDB's default one on time alone is not wanted.
            sqlx::query(
                "SELECT create_hypertable($1::regclass, by_range($2::name, $3::interval), \
                 create_default_indexes => false, migrate_data => true)",
            )
            .bind(table)
            .bind(column)
            .bind(&interval)
            .execute(&mut *tx)
            .await?;
            tracing::debug!(table, interval, "made a hypertable");
        } else if current == Some(false) {
            // Applies to chunks made from now on; existing chunks keep their span.
            sqlx::query("SELECT set_chunk_time_interval($1::regclass, $2::interval)")
                .bind(table)
                .bind(&interval)
                .execute(&mut *tx)
                .await?;
            tracing::info!(table, interval, "changed the chunk interval for new chunks");
        }
    }
    if timescale.compression() {
        let settings = [
            ("telemetry", "timescaledb.compress_segmentby = 'machine_id, key', timescaledb.compress_orderby = 'ts'"),
            ("raw_event", "timescaledb.compress_segmentby = '', timescaledb.compress_orderby = 'received_at'"),
        ];
        for (table, how) in settings {
            let enabled: bool = sqlx::query_scalar(
                "SELECT compression_enabled FROM timescaledb_information.hypertables \
                 WHERE hypertable_schema = current_schema() AND hypertable_name = $1",
            )
            .bind(table)
            .fetch_one(&mut *tx)
            .await?;
            if !enabled {
                let sql = format!("ALTER TABLE {table} SET (timescaledb.compress, {how})");
                sqlx::raw_sql(sqlx::AssertSqlSafe(sql)).execute(&mut *tx).await?;
            }
        }
    }
    tx.commit().await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(version: &str, licence: &str) -> Timescale {
        Timescale { active: true, version: Some(version.into()), licence: Some(licence.into()) }
    }

    #[test]
    fn the_start_line_says_the_mode_and_why() {
        let cases = [
            (
                StorageMode::Hypertables {
                    timescale: ts("2.28.3", "timescale"),
                    telemetry_chunk_hours: 24,
                    raw_event_chunk_hours: 168,
                },
                "database: TimescaleDB 2.28.3, hypertables for telemetry and raw_event (chunks 24 h / 168 h); \
                 compression available",
            ),
            (
                StorageMode::Hypertables {
                    timescale: ts("2.28.3", "apache"),
                    telemetry_chunk_hours: 6,
                    raw_event_chunk_hours: 24,
                },
                "database: TimescaleDB 2.28.3, hypertables for telemetry and raw_event (chunks 6 h / 24 h); \
                 no compression (this TimescaleDB build lacks its Timescale-licensed part)",
            ),
            (
                StorageMode::Plain(PlainReason::Off),
                "database: plain PostgreSQL tables (database.timescaledb = \"off\")",
            ),
            (
                StorageMode::Plain(PlainReason::NotInstalled),
                "database: plain PostgreSQL tables (TimescaleDB not installed)",
            ),
            (
                StorageMode::Plain(PlainReason::NotPreloaded),
                "database: plain PostgreSQL tables (TimescaleDB not preloaded on the external server: add \
                 shared_preload_libraries = 'timescaledb' to its postgresql.conf and restart it)",
            ),
            (
                StorageMode::Plain(PlainReason::CannotCreate("permission denied".into())),
                "database: plain PostgreSQL tables (CREATE EXTENSION timescaledb failed: permission denied)",
            ),
        ];
        for (mode, line) in cases {
            assert_eq!(mode.to_string(), line);
        }
    }

    #[test]
    fn only_a_database_holding_an_extension_it_cannot_load_is_refused() {
        let found = |extension: Option<&str>, installed, preloaded| Found {
            extension: extension.map(str::to_string),
            installed,
            preloaded,
            pg_major: 15,
        };
        for host in [Host::Embedded, Host::External] {
            for mode in [TimescaleMode::Auto, TimescaleMode::Off] {
                assert_eq!(refusal(&found(None, false, false), host, mode), None, "no extension: plain tables");
                assert_eq!(refusal(&found(None, true, true), host, mode), None);
                assert_eq!(refusal(&found(Some("2.28.3"), true, true), host, mode), None);
                let gone = refusal(&found(Some("2.28.3"), false, false), host, mode).unwrap();
                assert!(gone.contains("version 2.28.3"), "{gone}");
                assert!(gone.contains("install TimescaleDB 2.28.3 for PostgreSQL 15"), "{gone}");
                assert!(gone.contains("timescaledb-2-postgresql-15"), "{gone}");
            }
        }
        let off = refusal(&found(Some("2.28.3"), true, false), Host::Embedded, TimescaleMode::Off).unwrap();
        assert!(off.contains("set database.timescaledb = \"auto\""), "{off}");
        let auto = refusal(&found(Some("2.28.3"), true, false), Host::Embedded, TimescaleMode::Auto).unwrap();
        assert!(auto.contains("shared_preload_libraries = 'timescaledb'"), "{auto}");
        let external = refusal(&found(Some("2.28.3"), true, false), Host::External, TimescaleMode::Auto).unwrap();
        assert!(external.contains("add shared_preload_libraries = 'timescaledb' to its postgresql.conf"), "{external}");
    }

    #[test]
    fn load_failures_are_told_from_other_database_errors() {
        assert!(is_load_failure("error returned from database: extension \"timescaledb\" must be preloaded"));
        assert!(is_load_failure("could not access file \"$libdir/timescaledb-2.28.3\": No such file or directory"));
        assert!(!is_load_failure("relation \"telemetry\" does not exist"));
    }
}
