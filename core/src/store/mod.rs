//! The database access layer: connecting (to a configured server or the embedded cluster), migrations,
//! first-run seeding, and one function per query, named for what it answers.

pub mod account;
pub mod audit;
pub mod board;
pub mod cache;
pub mod cluster;
pub mod code;
pub mod command;
pub mod device;
pub mod group;
pub mod history;
pub mod job;
pub mod machine;
pub mod report;
pub mod retention;
pub mod schedule;
pub mod seed;
pub mod setting;
pub mod tablet;
pub mod telemetry;
pub mod timescale;
pub mod user;

use std::str::FromStr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{ConnectOptions, Connection, PgPool};

use crate::config::{Config, DatabaseConfig, TimescaleMode};
use crate::error::Error;
use cluster::{ClusterOptions, EmbeddedCluster};
use timescale::{Host, StorageMode};

/// Name of the database the server uses on the embedded cluster.
pub const EMBEDDED_DATABASE: &str = "oee";

/// The migrations under `migrations/`, embedded in the binary.
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../migrations");

/// An open database: the pool, and the embedded cluster behind it when there is one.
#[derive(Clone, Debug)]
pub struct Database {
    pub pool: PgPool,
    cluster: Option<Arc<Mutex<EmbeddedCluster>>>,
    /// How the time series are stored, once the TimescaleDB step ran (the server and `init`).
    storage: Option<StorageMode>,
}

impl Database {
    /// Opens the configured database for the server (starting and supervising the embedded cluster when
    /// `database.url` is empty, creating it on first use), creates the database if needed, runs migrations
    /// and the TimescaleDB step.
    pub async fn open(config: &Config) -> Result<Database, Error> {
        Self::open_as(config, Opening::Server).await
    }

    /// Opens the database for an administration command: the embedded cluster of a server running beside it
    /// is used as it is and left running. A database that does not exist yet, or was never initialised, is
    /// refused with [`Error::NoDatabase`] and nothing is created (a mistyped data directory must not become
    /// a new, empty plant). Migrations run; the TimescaleDB step is left to the server. A database holding
    /// the TimescaleDB extension that its server cannot load is refused as by the server.
    pub async fn open_for_command(config: &Config) -> Result<Database, Error> {
        Self::open_as(config, Opening::Command).await
    }

    /// As [`open`](Self::open), for `oee-server init`: creates what is missing (the embedded cluster, the
    /// database) but uses the cluster of a server running beside it as it is.
    pub async fn open_for_init(config: &Config) -> Result<Database, Error> {
        Self::open_as(config, Opening::Init).await
    }

    async fn open_as(config: &Config, opening: Opening) -> Result<Database, Error> {
        let mode = config.database.timescaledb;
        let host = if config.database.url.trim().is_empty() { Host::Embedded } else { Host::External };
        let (options, cluster) = if host == Host::Embedded {
            let dir = config.embedded_db_dir();
            if opening == Opening::Command && !dir.join("PG_VERSION").exists() {
                return Err(Error::NoDatabase(format!(
                    "in {}: it holds no embedded PostgreSQL cluster, and database.url is not set",
                    dir.display()
                )));
            }
            let opts = ClusterOptions {
                dir: dir.clone(),
                bin_dir: config.database.embedded.bin_dir.clone(),
                run_as: config.database.embedded.run_as.clone(),
                settings: config.database.embedded.settings.clone().into_iter().collect(),
                disposable: false,
            };
            let start = match opening {
                Opening::Server => EmbeddedCluster::start,
                Opening::Command | Opening::Init => EmbeddedCluster::attach_or_start,
            };
            let cluster = tokio::task::spawn_blocking(move || {
                let mut opts = opts;
                // Commands preload it too: a database holding the extension cannot be changed without it.
                if mode == TimescaleMode::Auto && cluster::timescale_library_installed(&opts.bin_dir) {
                    opts.settings = cluster::with_timescale_preload(opts.settings);
                }
                start(&opts)
            })
            .await
            .map_err(|e| Error::Cluster { dir, reason: e.to_string() })??;
            let options = cluster.connect_options(EMBEDDED_DATABASE);
            (options, Some(Arc::new(Mutex::new(cluster))))
        } else {
            let options = PgConnectOptions::from_str(&config.database.url)
                .map_err(|e| Error::ConfigParse(format!("database.url is not a PostgreSQL URL: {e}")))?;
            (options, None)
        };
        let db_name = options.get_database().unwrap_or(EMBEDDED_DATABASE).to_string();
        let place = || match &cluster {
            Some(c) => format!("`{db_name}` in the embedded PostgreSQL cluster in {}", cluster_dir_of(c)),
            None => format!("`{db_name}` at database.url"),
        };
        if opening == Opening::Command {
            if !database_exists(&options).await? {
                return Err(Error::NoDatabase(place()));
            }
        } else {
            create_database_if_missing(&options).await?;
        }
        let pool = connect(options, config.database.max_connections).await?;
        let storage = match Self::prepare_as(&pool, config, opening, host, place).await {
            Ok(storage) => storage,
            Err(e) => {
                pool.close().await;
                return Err(e);
            }
        };
        Ok(Database { pool, cluster, storage })
    }

    async fn prepare_as(
        pool: &PgPool,
        config: &Config,
        opening: Opening,
        host: Host,
        place: impl Fn() -> String,
    ) -> Result<Option<StorageMode>, Error> {
        if opening == Opening::Command && !initialised(pool).await? {
            return Err(Error::NoDatabase(format!("{}: the database is there but was never initialised", place())));
        }
        timescale::check_loadable(pool, host, config.database.timescaledb).await?;
        if opening == Opening::Command {
            migrate(pool).await?;
            return Ok(None);
        }
        Ok(Some(prepare_database(pool, &config.database).await?))
    }

    /// How the time series are stored (hypertables or plain tables, and why): known to the server and to
    /// `init`, which ran the TimescaleDB step; `None` for commands and [`from_pool`](Self::from_pool).
    pub fn storage(&self) -> Option<&StorageMode> {
        self.storage.as_ref()
    }

    /// Whether this process started the embedded cluster (and stops it on [`close`](Self::close)); false for
    /// an external server or the cluster of a server running beside this process.
    pub fn started_cluster(&self) -> bool {
        self.cluster.as_ref().is_some_and(|c| c.lock().unwrap_or_else(|p| p.into_inner()).started_here())
    }

    /// Wraps an existing pool (tests, tools).
    pub fn from_pool(pool: PgPool) -> Database {
        Database { pool, cluster: None, storage: None }
    }

    /// Closes the pool, then stops the embedded cluster if this process started it.
    pub async fn close(self) {
        self.pool.close().await;
        if let Some(cluster) = self.cluster
            && let Ok(cluster) = Arc::try_unwrap(cluster)
        {
            let mut cluster = cluster.into_inner().unwrap_or_else(|p| p.into_inner());
            let _ = tokio::task::spawn_blocking(move || cluster.stop()).await;
        }
    }
}

/// How a process opens the database.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Opening {
    /// The server: owns its embedded cluster, creates what is missing.
    Server,
    /// An administration command: uses what exists, creates nothing.
    Command,
    /// `oee-server init`: creates what is missing, uses a running server's cluster.
    Init,
}

fn cluster_dir_of(cluster: &Arc<Mutex<EmbeddedCluster>>) -> String {
    cluster.lock().unwrap_or_else(|p| p.into_inner()).dir().display().to_string()
}

/// Longest name of a machine or a group (the columns' width).
pub const NAME_MAX: usize = 100;

/// A machine's or a group's (`what`) name, trimmed, when it has 1 to [`NAME_MAX`] characters.
fn check_name<'a>(what: &str, name: &'a str) -> Result<&'a str, Error> {
    let name = name.trim();
    if name.is_empty() || name.chars().count() > NAME_MAX {
        return Err(Error::field("name", format!("a {what} name must have 1 to {NAME_MAX} characters")));
    }
    Ok(name)
}

/// A unique violation of a machine's or a group's (`what`) name as the field error.
fn duplicate_name(e: sqlx::Error, what: &str, name: &str) -> Error {
    match &e {
        sqlx::Error::Database(d) if d.is_unique_violation() => name_taken(what, name),
        _ => Error::Database(e),
    }
}

fn name_taken(what: &str, name: &str) -> Error {
    Error::field("name", format!("a {what} named `{name}` already exists: choose another name"))
}

/// A pool over `options`.
pub async fn connect(options: PgConnectOptions, max_connections: u32) -> Result<PgPool, Error> {
    PgPoolOptions::new()
        .max_connections(max_connections.max(2))
        .acquire_timeout(Duration::from_secs(10))
        .connect_with(options)
        .await
        .map_err(Error::Database)
}

/// Runs migrations and, when wanted and possible, turns time-series tables into hypertables with the
/// default chunk intervals (tests and tools; the server uses [`prepare_database`] with its configuration).
pub async fn prepare(pool: &PgPool, timescale: TimescaleMode) -> Result<StorageMode, Error> {
    prepare_database(pool, &DatabaseConfig { timescaledb: timescale, ..DatabaseConfig::default() }).await
}

/// Runs migrations, then the TimescaleDB step of `db` ([`timescale::enable`]) and the telemetry rollups:
/// says how the time series are stored.
pub async fn prepare_database(pool: &PgPool, db: &DatabaseConfig) -> Result<StorageMode, Error> {
    migrate(pool).await?;
    let mode = timescale::enable(pool, db).await?;
    // The rollups follow the tables: a continuous aggregate once telemetry is a hypertable.
    telemetry::prepare_rollups(pool, &mode.timescale()).await?;
    Ok(mode)
}

/// Runs the migrations. A TimescaleDB that PostgreSQL cannot load shows up here (the first schema change
/// ends the connection) when the check before missed it: said as such, not as a failed migration.
async fn migrate(pool: &PgPool) -> Result<(), Error> {
    MIGRATOR.run(pool).await.map_err(|e| {
        let message = e.to_string();
        if timescale::is_load_failure(&message) {
            Error::TimescaleUnavailable(format!(
                "the database holds the TimescaleDB extension, which its PostgreSQL server cannot load ({message}): \
                 install TimescaleDB for that PostgreSQL version and keep shared_preload_libraries = 'timescaledb'"
            ))
        } else {
            Error::Migrate(message)
        }
    })
}

/// Whether the target database exists (connecting to it is how to tell).
async fn database_exists(options: &PgConnectOptions) -> Result<bool, Error> {
    match options.connect().await {
        Ok(conn) => {
            let _ = conn.close().await;
            Ok(true)
        }
        Err(sqlx::Error::Database(e)) if e.code().as_deref() == Some("3D000") => Ok(false),
        Err(e) => Err(Error::Database(e)),
    }
}

/// Whether the database was initialised (by `oee-server init` or a server's first start): migrated and seeded.
async fn initialised(pool: &PgPool) -> Result<bool, Error> {
    let migrated: bool = sqlx::query_scalar("SELECT to_regclass('settings') IS NOT NULL").fetch_one(pool).await?;
    Ok(migrated && sqlx::query_scalar::<_, bool>("SELECT EXISTS (SELECT 1 FROM settings)").fetch_one(pool).await?)
}

/// Creates the target database through the maintenance database when it does not exist yet.
async fn create_database_if_missing(options: &PgConnectOptions) -> Result<(), Error> {
    let Some(name) = options.get_database().map(str::to_string) else { return Ok(()) };
    match options.connect().await {
        Ok(conn) => {
            let _ = conn.close().await;
            Ok(())
        }
        Err(sqlx::Error::Database(e)) if e.code().as_deref() == Some("3D000") => {
            let mut admin = options.clone().database("postgres").connect().await.map_err(Error::Database)?;
            let sql = format!("CREATE DATABASE \"{}\"", name.replace('"', "\"\""));
            sqlx::raw_sql(sqlx::AssertSqlSafe(sql)).execute(&mut admin).await.map_err(Error::Database)?;
            let _ = admin.close().await;
            tracing::info!(database = %name, "created the database");
            Ok(())
        }
        Err(e) => Err(Error::Database(e)),
    }
}

/// Whether the database answers.
pub async fn ping(pool: &PgPool) -> Result<(), Error> {
    sqlx::query("SELECT 1").execute(pool).await?;
    Ok(())
}
