//! The one error type of `oee-core`.

use std::path::PathBuf;

/// What went wrong in configuration, the database or the embedded cluster.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot read the config file {path}: {source}")]
    ConfigRead { path: PathBuf, source: std::io::Error },
    #[error("configuration: {0}")]
    ConfigParse(String),
    #[error("environment variable {var}: {reason}")]
    ConfigEnv { var: String, reason: String },
    #[error(
        "{0}. Install them (Debian/Ubuntu: sudo apt-get install postgresql), set database.embedded.bin_dir, \
         or set database.url to an existing PostgreSQL server"
    )]
    PostgresMissing(String),
    #[error("embedded PostgreSQL cluster in {dir}: {reason}")]
    Cluster { dir: PathBuf, reason: String },
    /// An administration command found no database to work on: nothing was created (`oee-server init`
    /// creates it, as `serve` does on its first start). Says where it looked.
    #[error("there is no database {0}")]
    NoDatabase(String),
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    #[error("database migration failed: {0}")]
    Migrate(String),
    /// The database holds the TimescaleDB extension, but its server cannot load it (not installed, or not
    /// preloaded). Says what to install or configure.
    #[error("{0}")]
    TimescaleUnavailable(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    Invalid(String),
    /// A part of the server the request needs (the broker, ingest) did not answer: trying again later may
    /// succeed. Says what was not done.
    #[error("{0}")]
    Unavailable(String),
    /// One input of a form or request is wrong: `field` names it (as the form and the JSON body name it), so
    /// a page can show `message` next to it.
    #[error("{field}: {message}")]
    Field { field: &'static str, message: String },
}

impl Error {
    /// A refusal of one named input.
    pub fn field(field: &'static str, message: impl Into<String>) -> Error {
        Error::Field { field, message: message.into() }
    }
}
