//! The one typed configuration of the server.
//!
//! Defaults run out of the box; a TOML file overrides them; environment variables override the file.
//! An environment variable `OEE_SECTION__KEY` sets `[section] key` (double underscore between levels,
//! case-insensitive), e.g. `OEE_HTTP__LISTEN=0.0.0.0:80` or `OEE_DATABASE__URL=postgres://…`; of the
//! top-level keys, `OEE_DATA_DIR`. Other `OEE_…` names without a double underscore are not configuration
//! (`OEE_CONFIG` names the file; tests, benchmarks and scripts have their own) and are left alone.
//! `config/oee-server.toml` documents every key.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::Error;

/// Prefix of every environment override.
pub const ENV_PREFIX: &str = "OEE_";

/// Top-level keys an environment variable without a double underscore sets (`OEE_DATA_DIR`).
const ENV_TOP_LEVEL_KEYS: [&str; 1] = ["data_dir"];

/// `OEE_…` variables that are not configuration: the config file's path (read by the command line), and
/// what the embedded cluster, tests, benchmarks and the example device scripts read.
const ENV_NOT_CONFIG: [&str; 10] = [
    "OEE_CONFIG",
    "OEE_TEST_TIMESCALEDB",
    "OEE_EMBEDDED_CLUSTER_OWNER",
    "OEE_BENCH_QUICK",
    "OEE_REPORT_BENCH_DIR",
    "OEE_FUZZ_CASES",
    "OEE_FUZZ_SEED",
    "OEE_TOKEN",
    "OEE_MQTT_USER",
    "OEE_MQTT_PASSWORD",
];

/// The whole server configuration.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Directory for the server's own files (the embedded PostgreSQL cluster lives below it).
    pub data_dir: PathBuf,
    /// The plant's wall clock: shift boundaries and the times people see.
    pub plant: PlantConfig,
    pub http: HttpConfig,
    pub mqtt: MqttConfig,
    pub broker: BrokerConfig,
    pub database: DatabaseConfig,
    pub ingest: IngestConfig,
    pub bridge: BridgeConfig,
    /// Operator tablets.
    pub tablets: TabletsConfig,
    pub scheduler: SchedulerConfig,
    pub oee: OeeConfig,
    /// The browser side: sessions and sign-in.
    pub web: WebConfig,
    /// How long time series are kept.
    pub retention: RetentionConfig,
    /// TimescaleDB compression of old time-series chunks.
    pub compression: CompressionConfig,
    /// Telemetry rollups.
    pub telemetry: TelemetryConfig,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            data_dir: PathBuf::from("data"),
            plant: PlantConfig::default(),
            http: HttpConfig::default(),
            mqtt: MqttConfig::default(),
            broker: BrokerConfig::default(),
            database: DatabaseConfig::default(),
            ingest: IngestConfig::default(),
            bridge: BridgeConfig::default(),
            tablets: TabletsConfig::default(),
            scheduler: SchedulerConfig::default(),
            oee: OeeConfig::default(),
            web: WebConfig::default(),
            retention: RetentionConfig::default(),
            compression: CompressionConfig::default(),
            telemetry: TelemetryConfig::default(),
        }
    }
}

/// Where the plant is in time.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
#[serde(default, deny_unknown_fields)]
pub struct PlantConfig {
    /// IANA time zone name ("Europe/London"). Empty: the machine's own zone (`TZ`, `/etc/timezone`,
    /// `/etc/localtime`), or UTC when none is set.
    pub timezone: String,
}

/// The HTTP listener shared by the device bridge and the web pages.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct HttpConfig {
    pub listen: SocketAddr,
    /// Largest request body accepted, in bytes; larger ones get 413 before anything is published.
    /// 0: as large as one MQTT packet allows (`mqtt.max_packet_size` less [`BODY_HEADROOM_BYTES`]).
    pub max_body_bytes: usize,
    /// Seconds a client has to send a request's headers, counted from when the connection opens or its
    /// previous answer was sent: an idle connection is closed after this long.
    pub header_read_timeout_s: u64,
    /// Seconds a client has to send a request's whole body once its headers arrived (else 408).
    pub body_read_timeout_s: u64,
    /// Most connections open at once (websockets included); more wait to be accepted until one closes.
    pub max_connections: usize,
    /// The address people type to reach the server (`https://oee.example.com`). When it starts with
    /// `https://`, browser session cookies are marked `Secure` (sent over HTTPS only). Empty: unknown.
    pub public_url: String,
}

/// What the bridge adds to a request body before publishing it (topic, request id, reply topic, timestamp),
/// with room to spare: the default body limit is one MQTT packet less this.
pub const BODY_HEADROOM_BYTES: usize = 4096;

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            listen: SocketAddr::from(([0, 0, 0, 0], 8080)),
            max_body_bytes: 0,
            header_read_timeout_s: 30,
            body_read_timeout_s: 30,
            max_connections: 10_000,
            public_url: String::new(),
        }
    }
}

/// Browser sessions and sign-in.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct WebConfig {
    /// A browser session unused for this many minutes ends.
    pub session_idle_minutes: u32,
    /// A browser session ends this many hours after sign-in, used or not.
    pub session_lifetime_hours: u32,
    /// Failed sign-ins are counted over this many minutes.
    pub sign_in_window_minutes: u32,
    /// After this many failed sign-ins for one user name within the window, that name is refused until
    /// the window has passed.
    pub sign_in_max_failures_per_user: u32,
    /// After this many failed sign-ins from one address within the window, that address is refused until
    /// the window has passed.
    pub sign_in_max_failures_per_address: u32,
    /// The status page highlights a machine that has been in the same activity for longer than this.
    pub status_highlight_after_minutes: u32,
}

impl Default for WebConfig {
    fn default() -> Self {
        WebConfig {
            session_idle_minutes: 8 * 60,
            session_lifetime_hours: 7 * 24,
            sign_in_window_minutes: 15,
            sign_in_max_failures_per_user: 5,
            sign_in_max_failures_per_address: 30,
            status_highlight_after_minutes: 30,
        }
    }
}

/// How ingest and the bridge reach *a* broker (the embedded one by default).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct MqttConfig {
    pub host: String,
    pub port: u16,
    /// Optional credentials for an external broker.
    pub username: String,
    pub password: String,
    /// Prefix of every client id this server uses (ingest, bridge).
    pub client_id_prefix: String,
    /// Largest MQTT packet accepted or sent, in bytes.
    pub max_packet_size: usize,
}

impl Default for MqttConfig {
    fn default() -> Self {
        MqttConfig {
            host: "127.0.0.1".into(),
            port: 1883,
            username: String::new(),
            password: String::new(),
            client_id_prefix: "oee".into(),
            max_packet_size: 256 * 1024,
        }
    }
}

/// The embedded rumqttd broker.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct BrokerConfig {
    /// MQTT 3.1.1 listener.
    pub listen: SocketAddr,
    /// Most client connections open at once (the server's own clients count too); one more is answered
    /// CONNACK "server unavailable".
    pub max_connections: usize,
    pub max_payload_size: usize,
    /// The in-memory log of each command filter the server subscribes to (ingest's buffer when it falls
    /// behind): bytes of one segment, and how many segments are kept.
    pub max_segment_size: usize,
    pub max_segment_count: usize,
    /// Bytes the in-memory log of every other filter keeps (in four segments): what a subscriber of that
    /// filter may fall behind by before it loses messages.
    pub filter_log_bytes: usize,
    /// Most distinct filters that clients other than the server may create in the broker core (rumqttd
    /// keeps a filter's log until it restarts); further new filters are refused.
    pub max_filters: usize,
    /// Most distinct topics clients other than the server may publish to (rumqttd remembers each until it
    /// restarts); publishes to further new topics are acknowledged and dropped.
    pub max_topics: usize,
    /// Most topics on which clients other than the server may keep a retained message; further retained
    /// publishes are delivered but not retained. 0: clients may retain nothing.
    pub max_retained: usize,
    pub connection_timeout_ms: u16,
    /// Seconds between two re-checks of every connected device against the database: a device revoked or
    /// given other machines by any means gets its new rights on open connections within this time (a
    /// `oee-server device revoke` is acted on at once, through a database notification).
    pub device_recheck_s: u64,
    /// Lets MQTT clients in without credentials, with the rights of a device of every machine (they still
    /// may not write a status, a verdict or a session command). Off: every client needs a device's
    /// credentials (`oee-server device add`).
    pub allow_anonymous: bool,
}

impl Default for BrokerConfig {
    fn default() -> Self {
        BrokerConfig {
            listen: SocketAddr::from(([0, 0, 0, 0], 1883)),
            max_connections: 10_000,
            max_payload_size: 256 * 1024,
            max_segment_size: 4 * 1024 * 1024,
            max_segment_count: 32,
            filter_log_bytes: 256 * 1024,
            max_filters: 4_000,
            max_topics: 50_000,
            max_retained: 1_000,
            connection_timeout_ms: 10_000,
            device_recheck_s: 5,
            allow_anonymous: false,
        }
    }
}

/// PostgreSQL: an external server (`url`) or the embedded private cluster (empty `url`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct DatabaseConfig {
    /// `postgres://user:pass@host:5432/db`. Empty: run a private cluster under `data_dir`.
    pub url: String,
    pub max_connections: u32,
    /// `auto`: use TimescaleDB hypertables when the extension can be created; `off`: never.
    pub timescaledb: TimescaleMode,
    /// Time span of one `telemetry` chunk (TimescaleDB), in hours.
    pub telemetry_chunk_hours: u32,
    /// Time span of one `raw_event` chunk (TimescaleDB), in hours.
    pub raw_event_chunk_hours: u32,
    pub embedded: EmbeddedDatabaseConfig,
}

impl Default for DatabaseConfig {
    fn default() -> Self {
        DatabaseConfig {
            url: String::new(),
            max_connections: 16,
            timescaledb: TimescaleMode::Auto,
            telemetry_chunk_hours: 24,
            raw_event_chunk_hours: 168,
            embedded: EmbeddedDatabaseConfig::default(),
        }
    }
}

/// Whether to turn time-series tables into TimescaleDB hypertables.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum TimescaleMode {
    Auto,
    Off,
}

/// The private PostgreSQL cluster used when no `database.url` is given.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct EmbeddedDatabaseConfig {
    /// Cluster directory. Empty: `<data_dir>/postgres`.
    pub dir: PathBuf,
    /// Directory holding `initdb`, `pg_ctl` and `postgres`. Empty: the newest `/usr/lib/postgresql/*/bin`.
    pub bin_dir: PathBuf,
    /// PostgreSQL refuses to run as root: when this server runs as root, the cluster runs as this user.
    pub run_as: String,
    /// Extra `postgresql.conf` settings, e.g. `{ shared_buffers = "1GB" }`.
    pub settings: std::collections::BTreeMap<String, String>,
}

impl Default for EmbeddedDatabaseConfig {
    fn default() -> Self {
        EmbeddedDatabaseConfig {
            dir: PathBuf::new(),
            bin_dir: PathBuf::new(),
            run_as: "postgres".into(),
            settings: Default::default(),
        }
    }
}

/// The ingest service: the one writer of machine state.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct IngestConfig {
    /// MQTT client id of this ingest worker; its persistent session holds unacknowledged commands across
    /// restarts, so keep it stable. Empty: `<mqtt.client_id_prefix>-ingest`. Give each worker its own.
    pub client_id: String,
    /// Most commands applied in one database transaction.
    pub batch_max: usize,
    /// Extra MQTT connections that share the telemetry topics between them (a broker lets each connection
    /// have only so many unacknowledged messages, which bounds one connection's throughput). Telemetry
    /// needs no ordering; state commands always use the one main connection, which keeps each machine's
    /// order. 0: the main connection takes telemetry too.
    pub telemetry_connections: usize,
    /// Non-empty: subscribe through MQTT shared subscriptions, one group per kind of command
    /// (`$share/<group>-state/…`, …), so several ingest workers split the load.
    pub shared_group: String,
    /// A command's `timestamp` may be at most this far in the future (clock skew allowance).
    pub max_future_skew_s: u64,
    /// Replaced by `retention.request_id_days`; a config that still sets it is refused with that name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request_id_retention_days: Option<u32>,
    /// A machine heard from (a state change, a reading, a production count) less recently than this many
    /// seconds ago shows `"signal": "no_signal"` in its status instead of silently keeping its last state.
    /// 0: off (right for devices that only report changes; set it above the heartbeat interval of devices
    /// that send readings regularly).
    pub no_signal_after_s: u64,
}

impl Default for IngestConfig {
    fn default() -> Self {
        IngestConfig {
            client_id: String::new(),
            batch_max: 2_000,
            telemetry_connections: 3,
            shared_group: String::new(),
            max_future_skew_s: 300,
            request_id_retention_days: None,
            no_signal_after_s: 0,
        }
    }
}

/// Operator tablets: how they find the server, and what they may do.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct TabletsConfig {
    /// UDP address on which tablets' discovery broadcasts are answered (with the bridge). Empty: no discovery.
    pub discovery_listen: String,
    /// The HTTP port tablets are told to use: the port they reach the server on, e.g. 80 behind a reverse
    /// proxy. 0: the port of `http.listen`.
    pub external_http_port: u16,
    /// Most discovery answers per second to one address (a tablet asks a few times; more is a flood).
    pub discovery_answers_per_s: u32,
    /// A new tablet is paired with the first machine that has none, and tablets may pick their machine
    /// (the reference's behaviour). Off: an administrator pairs each tablet (`oee-server tablet pair`).
    pub auto_pair: bool,
    /// Any new tablet registers itself on its first request, as in the reference system. Off: new tablets
    /// register only while an administrator has opened a pairing window (`oee-server tablet open-window`).
    pub open_registration: bool,
    /// Most new tablets that may register in one pairing window.
    pub window_max_new: u32,
    /// Tablets offer a start time (earlier today) when starting a job.
    pub delayed_start: bool,
    /// How often a running-total tablet asks its operator for the count, in seconds.
    pub running_total_update_s: u32,
    /// An SQL query whose rows (job number, description; both text) are the job numbers tablets check a typed
    /// job number against. Empty: no checking.
    pub job_validation_query: String,
    /// The PostgreSQL database that query runs in (e.g. the ERP's). Empty: the server's own database.
    pub job_validation_url: String,
}

impl Default for TabletsConfig {
    fn default() -> Self {
        TabletsConfig {
            discovery_listen: "0.0.0.0:8090".into(),
            external_http_port: 0,
            discovery_answers_per_s: 5,
            auto_pair: true,
            open_registration: false,
            window_max_new: 20,
            delayed_start: false,
            running_total_update_s: 3600,
            job_validation_query: String::new(),
            job_validation_url: String::new(),
        }
    }
}

impl TabletsConfig {
    /// The UDP address to answer discovery on, when discovery is on.
    pub fn discovery_addr(&self) -> Result<Option<SocketAddr>, Error> {
        let listen = self.discovery_listen.trim();
        if listen.is_empty() {
            return Ok(None);
        }
        listen.parse().map(Some).map_err(|_| {
            Error::ConfigParse(format!(
                "tablets.discovery_listen `{listen}` is not an address like 0.0.0.0:8090 (empty turns discovery off)"
            ))
        })
    }
}

/// The HTTP device bridge.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct BridgeConfig {
    /// How long an HTTP request waits for ingest's verdict before answering 503 (the web pages' forms that
    /// change machines wait as long).
    pub reply_timeout_ms: u64,
    /// Devices may send commands over HTTP (`/api/machine-state-change`, `/api/v1/machines/…`) without a
    /// token, for any machine, as the reference system allowed. Off: each device sends its own token.
    pub open_device_api: bool,
}

impl Default for BridgeConfig {
    fn default() -> Self {
        BridgeConfig { reply_timeout_ms: 5_000, open_device_api: false }
    }
}

/// The shift scheduler (part of ingest): moves machines in and out of shift on time.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct SchedulerConfig {
    /// After a stop, shift transitions missed in at most this many days are replayed, each at its own
    /// instant. Stopped longer: machines move to their pattern's current state, stamped at start-up.
    pub catch_up_days: u32,
}

impl Default for SchedulerConfig {
    fn default() -> Self {
        SchedulerConfig { catch_up_days: 7 }
    }
}

impl SchedulerConfig {
    /// How far back missed transitions are replayed.
    pub fn max_catch_up(&self) -> chrono::TimeDelta {
        chrono::TimeDelta::days(i64::from(self.catch_up_days))
    }
}

/// How long time series are kept; 0 keeps them for ever. A daily job (at `schedule`, a cron expression in
/// the plant's zone) drops what is older: whole chunks on TimescaleDB, batched deletes on plain tables.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct RetentionConfig {
    /// Days of telemetry readings kept.
    pub telemetry_days: u32,
    /// Days of raw events (messages ingest could not apply) kept.
    pub raw_event_days: u32,
    /// Days of answered request ids kept, so a redelivered command is applied once. At least 1.
    pub request_id_days: u32,
    /// When the retention job runs: a cron expression with seconds (`sec min hour day month weekday`).
    pub schedule: String,
    /// Rows one delete statement removes on plain tables, so no statement holds locks for long.
    pub batch_rows: u32,
}

impl Default for RetentionConfig {
    fn default() -> Self {
        RetentionConfig {
            telemetry_days: 365,
            raw_event_days: 90,
            request_id_days: 30,
            schedule: "0 30 2 * * *".into(),
            batch_rows: 10_000,
        }
    }
}

/// Compression of time-series chunks older than `after_days` (TimescaleDB with its Timescale-licensed part
/// only; 0: never), segmented by machine and key, ordered by time.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct CompressionConfig {
    pub after_days: u32,
    /// When the compression job runs: a cron expression with seconds.
    pub schedule: String,
}

impl Default for CompressionConfig {
    fn default() -> Self {
        CompressionConfig { after_days: 7, schedule: "0 45 2 * * *".into() }
    }
}

/// Telemetry rollups: per machine, key and hour, so long ranges are answered without reading every reading.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct TelemetryConfig {
    /// Seconds between refreshes of the rollups (the hours since the last refresh are read live).
    pub rollup_every_s: u64,
}

impl Default for TelemetryConfig {
    fn default() -> Self {
        TelemetryConfig { rollup_every_s: 60 }
    }
}

/// OEE reports (`GET /api/v1/oee`, `GET /api/v1/telemetry`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct OeeConfig {
    /// Breakdowns shorter than this many seconds count as minor stops (a performance loss, run time)
    /// instead of availability losses. 0: only codes whose loss category is `minor_stop` are minor stops.
    pub minor_stop_threshold_s: u64,
    /// Keep each machine's sums per past plant day in the database, so reports over past days are read,
    /// not recomputed. Today is always computed live.
    pub daily_cache: bool,
    /// Most buckets (hours, shifts, days, jobs) one report may have.
    pub max_buckets: usize,
    /// Most telemetry readings one request returns (and the default `limit`).
    pub telemetry_max_rows: i64,
}

impl Default for OeeConfig {
    fn default() -> Self {
        OeeConfig { minor_stop_threshold_s: 0, daily_cache: true, max_buckets: 5_000, telemetry_max_rows: 10_000 }
    }
}

impl OeeConfig {
    /// The engine's settings.
    pub fn engine(&self) -> crate::oee::EngineConfig {
        crate::oee::EngineConfig { minor_stop_threshold_ms: self.minor_stop_threshold_s.min(86_400) as i64 * 1000 }
    }
}

/// Checks a maintenance job's schedule as the scheduler reads it: a cron expression with seconds (`sec min
/// hour day month weekday`), where a day of the month and a weekday both given must both match.
pub fn check_schedule(expr: &str) -> Result<(), String> {
    croner::parser::CronParser::builder()
        .seconds(croner::parser::Seconds::Required)
        .dom_and_dow(true)
        .build()
        .parse(expr)
        .map(|_| ())
        .map_err(|e| e.to_string())
}

impl Config {
    /// Defaults, then the TOML file at `path` (if given), then `OEE_…` environment variables.
    pub fn load(path: Option<&Path>) -> Result<Config, Error> {
        let file = match path {
            Some(p) => {
                Some(std::fs::read_to_string(p).map_err(|source| Error::ConfigRead { path: p.to_path_buf(), source })?)
            }
            None => None,
        };
        Self::from_sources(file.as_deref(), std::env::vars())
    }

    /// Builds a config from an optional TOML text and a set of environment variables.
    pub fn from_sources(
        toml_text: Option<&str>,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Config, Error> {
        let mut table = match toml_text {
            Some(text) => toml::from_str::<toml::Table>(text).map_err(|e| Error::ConfigParse(e.to_string()))?,
            None => toml::Table::new(),
        };
        for (key, value) in env {
            let Some(rest) = key.strip_prefix(ENV_PREFIX) else { continue };
            if !rest.contains("__") && !ENV_TOP_LEVEL_KEYS.contains(&rest.to_ascii_lowercase().as_str()) {
                if !ENV_NOT_CONFIG.contains(&key.as_str()) {
                    tracing::warn!(
                        "ignoring the environment variable {key}: configuration variables are OEE_SECTION__KEY \
                         (two underscores, e.g. OEE_HTTP__LISTEN) or OEE_DATA_DIR"
                    );
                }
                continue;
            }
            let path: Vec<String> = rest.split("__").map(|s| s.to_ascii_lowercase()).collect();
            if path.iter().any(|p| p.is_empty()) {
                return Err(Error::ConfigEnv { var: key.clone(), reason: "empty key segment".into() });
            }
            set_path(&mut table, &path, env_value(&value))
                .map_err(|reason| Error::ConfigEnv { var: key.clone(), reason })?;
        }
        let config = Config::deserialize(toml::Value::Table(table)).map_err(|e| Error::ConfigParse(e.to_string()))?;
        config.validate()?;
        Ok(config)
    }

    /// Checks what the types alone cannot, so a mistake is reported at start, not when first used.
    pub fn validate(&self) -> Result<(), Error> {
        self.plant_timezone()?;
        self.tablets.discovery_addr()?;
        if self.tablets.discovery_answers_per_s == 0 {
            return Err(Error::ConfigParse("tablets.discovery_answers_per_s must be at least 1".into()));
        }
        if self.broker.max_segment_size < 1024 {
            return Err(Error::ConfigParse("broker.max_segment_size must be at least 1024 bytes".into()));
        }
        if self.broker.filter_log_bytes < 4096 {
            return Err(Error::ConfigParse("broker.filter_log_bytes must be at least 4096 bytes".into()));
        }
        if self.broker.max_filters == 0 || self.broker.max_topics == 0 || self.broker.max_connections == 0 {
            return Err(Error::ConfigParse(
                "broker.max_filters, broker.max_topics and broker.max_connections must be at least 1".into(),
            ));
        }
        if self.broker.device_recheck_s == 0 {
            return Err(Error::ConfigParse("broker.device_recheck_s must be at least 1 second".into()));
        }
        if self.broker.max_segment_count == 0 {
            return Err(Error::ConfigParse("broker.max_segment_count must be at least 1".into()));
        }
        if self.http.header_read_timeout_s == 0 || self.http.body_read_timeout_s == 0 {
            return Err(Error::ConfigParse(
                "http.header_read_timeout_s and http.body_read_timeout_s must be at least 1 second".into(),
            ));
        }
        if self.http.max_connections == 0 {
            return Err(Error::ConfigParse("http.max_connections must be at least 1".into()));
        }
        if self.ingest.batch_max == 0 {
            return Err(Error::ConfigParse("ingest.batch_max must be at least 1".into()));
        }
        let threshold = self.oee.minor_stop_threshold_s;
        if threshold > 86_400 {
            return Err(Error::ConfigParse(format!(
                "oee.minor_stop_threshold_s must be between 0 and 86400 seconds, not {threshold}"
            )));
        }
        if self.oee.max_buckets == 0 || self.oee.telemetry_max_rows < 1 {
            return Err(Error::ConfigParse("oee.max_buckets and oee.telemetry_max_rows must be at least 1".into()));
        }
        if self.database.telemetry_chunk_hours == 0 || self.database.raw_event_chunk_hours == 0 {
            return Err(Error::ConfigParse(
                "database.telemetry_chunk_hours and database.raw_event_chunk_hours must be at least 1 hour".into(),
            ));
        }
        if let Some(days) = self.ingest.request_id_retention_days {
            return Err(Error::ConfigParse(format!(
                "ingest.request_id_retention_days ({days}) was replaced by retention.request_id_days: move the \
                 value there (the daily retention job now removes old request ids)"
            )));
        }
        if self.retention.request_id_days == 0 {
            return Err(Error::ConfigParse(
                "retention.request_id_days must be at least 1: answered request ids are how a redelivered command \
                 is applied once"
                    .into(),
            ));
        }
        if self.retention.batch_rows == 0 {
            return Err(Error::ConfigParse("retention.batch_rows must be at least 1".into()));
        }
        if self.telemetry.rollup_every_s == 0 {
            return Err(Error::ConfigParse("telemetry.rollup_every_s must be at least 1 second".into()));
        }
        for (key, expr) in
            [("retention.schedule", &self.retention.schedule), ("compression.schedule", &self.compression.schedule)]
        {
            check_schedule(expr).map_err(|e| {
                Error::ConfigParse(format!(
                    "{key} = \"{expr}\" is not a cron expression ({e}): write six fields, sec min hour day month \
                     weekday, e.g. \"0 30 2 * * *\" for 02:30 every day in the plant's time zone"
                ))
            })?;
        }
        Ok(())
    }

    /// The directory of the embedded cluster.
    pub fn embedded_db_dir(&self) -> PathBuf {
        if self.database.embedded.dir.as_os_str().is_empty() {
            self.data_dir.join("postgres")
        } else {
            self.database.embedded.dir.clone()
        }
    }

    /// The largest request body the HTTP server reads: `http.max_body_bytes`, or what fits one MQTT packet.
    pub fn http_body_limit(&self) -> usize {
        match self.http.max_body_bytes {
            0 => self.mqtt.max_packet_size.saturating_sub(BODY_HEADROOM_BYTES).max(1024),
            n => n,
        }
    }

    /// The plant's time zone, resolved.
    pub fn plant_timezone(&self) -> Result<chrono_tz::Tz, Error> {
        crate::shift::resolve_timezone(&self.plant.timezone)
    }
}

/// An environment value as TOML: numbers and booleans typed, anything else a string.
fn env_value(raw: &str) -> toml::Value {
    if let Ok(i) = raw.parse::<i64>() {
        return toml::Value::Integer(i);
    }
    if let Ok(f) = raw.parse::<f64>()
        && raw.contains('.')
        && !raw.contains(':')
    {
        return toml::Value::Float(f);
    }
    match raw {
        "true" => toml::Value::Boolean(true),
        "false" => toml::Value::Boolean(false),
        _ => toml::Value::String(raw.to_string()),
    }
}

fn set_path(table: &mut toml::Table, path: &[String], value: toml::Value) -> Result<(), String> {
    let (last, parents) = path.split_last().ok_or("empty key")?;
    let mut cur = table;
    for p in parents {
        let entry = cur.entry(p.clone()).or_insert_with(|| toml::Value::Table(toml::Table::new()));
        cur = entry.as_table_mut().ok_or_else(|| format!("`{p}` is not a section"))?;
    }
    cur.insert(last.clone(), value);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn defaults_listen_on_8080_and_1883_with_embedded_database() {
        let c = Config::from_sources(None, env(&[])).unwrap();
        assert_eq!(c.http.listen.port(), 8080);
        assert_eq!(c.broker.listen.port(), 1883);
        assert!(c.database.url.is_empty());
        assert_eq!(c.embedded_db_dir(), PathBuf::from("data/postgres"));
    }

    #[test]
    fn env_overrides_file_which_overrides_defaults() {
        let file = "[http]\nlisten = \"127.0.0.1:9000\"\n[ingest]\nbatch_max = 10\n";
        let c = Config::from_sources(
            Some(file),
            env(&[("OEE_HTTP__LISTEN", "127.0.0.1:9100"), ("OEE_DATABASE__MAX_CONNECTIONS", "3"), ("HOME", "/x")]),
        )
        .unwrap();
        assert_eq!(c.http.listen.port(), 9100);
        assert_eq!(c.ingest.batch_max, 10);
        assert_eq!(c.database.max_connections, 3);
    }

    #[test]
    fn the_replaced_request_id_key_is_refused_with_its_new_name() {
        let e = Config::from_sources(Some("[ingest]\nrequest_id_retention_days = 7\n"), env(&[]))
            .and_then(|c| c.validate())
            .unwrap_err()
            .to_string();
        assert!(e.contains("retention.request_id_days"), "{e}");
        let c = Config::from_sources(Some("[retention]\nrequest_id_days = 7\n"), env(&[])).unwrap();
        c.validate().unwrap();
        assert_eq!(c.retention.request_id_days, 7);
    }

    #[test]
    fn env_reaches_nested_tables_and_top_level_keys() {
        let c = Config::from_sources(
            None,
            env(&[("OEE_DATA_DIR", "/var/lib/oee"), ("OEE_DATABASE__EMBEDDED__RUN_AS", "nobody")]),
        )
        .unwrap();
        assert_eq!(c.data_dir, PathBuf::from("/var/lib/oee"));
        assert_eq!(c.database.embedded.run_as, "nobody");
    }

    #[test]
    fn oee_variables_that_are_not_configuration_are_left_alone() {
        let c = Config::from_sources(
            None,
            env(&[
                ("OEE_CONFIG", "/etc/oee-server.toml"),
                ("OEE_BENCH_QUICK", "1"),
                ("OEE_MQTT_USER", "plc-1"),
                ("OEE_SOMETHING_ELSE", "x"),
                ("OEE_DATA_DIR", "/srv/oee"),
                ("OEE_MQTT__PORT", "1884"),
            ]),
        )
        .unwrap();
        assert_eq!(c.data_dir, PathBuf::from("/srv/oee"));
        assert_eq!(c.mqtt.port, 1884);
        assert_eq!(Config { data_dir: "data".into(), mqtt: MqttConfig::default(), ..c }, Config::default());
        // a double underscore still means configuration, so a mistyped key is still named
        let err = Config::from_sources(None, env(&[("OEE_BENCH__QUICK", "1")])).unwrap_err();
        assert!(err.to_string().contains("bench"), "{err}");
    }

    #[test]
    fn maintenance_schedules_must_be_cron_expressions_with_seconds() {
        for ok in ["0 30 2 * * *", "* * * * * *", "0 0 3 * * SUN", "0 */15 * * * *"] {
            assert!(check_schedule(ok).is_ok(), "{ok}");
        }
        for (key, bad) in [("retention.schedule", "30 2 * * *"), ("compression.schedule", "at night")] {
            let err =
                Config::from_sources(Some(&format!("[{}]\nschedule = \"{bad}\"\n", &key[..key.len() - 9])), env(&[]))
                    .unwrap_err()
                    .to_string();
            assert!(err.contains(key) && err.contains(bad) && err.contains("six fields"), "{err}");
        }
    }

    #[test]
    fn unknown_keys_are_refused_with_their_name() {
        let err = Config::from_sources(Some("[http]\nlisten_port = 1\n"), env(&[])).unwrap_err();
        assert!(err.to_string().contains("listen_port"), "{err}");
        let err = Config::from_sources(None, env(&[("OEE_HTTP__PORT", "80")])).unwrap_err();
        assert!(err.to_string().contains("port"), "{err}");
    }

    #[test]
    fn the_minor_stop_threshold_reaches_the_engine_in_milliseconds() {
        let c = Config::from_sources(None, env(&[("OEE_OEE__MINOR_STOP_THRESHOLD_S", "120")])).unwrap();
        assert_eq!(c.oee.engine().minor_stop_threshold_ms, 120_000);
    }

    #[test]
    fn values_are_checked_when_loaded() {
        for (var, value, want) in [
            ("OEE_PLANT__TIMEZONE", "Mars/Olympus", "Mars/Olympus"),
            ("OEE_BROKER__MAX_SEGMENT_SIZE", "10", "max_segment_size"),
            ("OEE_BROKER__DEVICE_RECHECK_S", "0", "device_recheck_s"),
            ("OEE_BROKER__FILTER_LOG_BYTES", "1000", "filter_log_bytes"),
            ("OEE_BROKER__MAX_FILTERS", "0", "max_filters"),
            ("OEE_BROKER__MAX_TOPICS", "0", "max_topics"),
            ("OEE_BROKER__MAX_CONNECTIONS", "0", "max_connections"),
            ("OEE_INGEST__BATCH_MAX", "0", "batch_max"),
            ("OEE_OEE__MINOR_STOP_THRESHOLD_S", "90000", "minor_stop_threshold_s"),
            ("OEE_OEE__MAX_BUCKETS", "0", "max_buckets"),
            ("OEE_HTTP__HEADER_READ_TIMEOUT_S", "0", "header_read_timeout_s"),
            ("OEE_HTTP__MAX_CONNECTIONS", "0", "max_connections"),
        ] {
            let err = Config::from_sources(None, env(&[(var, value)])).unwrap_err().to_string();
            assert!(err.contains(want), "{var}: {err}");
        }
    }

    #[test]
    fn the_body_limit_follows_the_mqtt_packet_size_unless_set() {
        let c = Config::default();
        assert_eq!(c.http_body_limit(), 256 * 1024 - BODY_HEADROOM_BYTES);
        let c = Config::from_sources(None, env(&[("OEE_MQTT__MAX_PACKET_SIZE", "1048576")])).unwrap();
        assert_eq!(c.http_body_limit(), 1024 * 1024 - BODY_HEADROOM_BYTES);
        let c = Config::from_sources(None, env(&[("OEE_HTTP__MAX_BODY_BYTES", "65536")])).unwrap();
        assert_eq!(c.http_body_limit(), 65536);
    }

    #[test]
    fn the_shipped_config_file_parses_to_the_defaults() {
        let text = include_str!("../../config/oee-server.toml");
        let c = Config::from_sources(Some(text), env(&[])).unwrap();
        assert_eq!(c, Config::default());
    }
}
