//! Time series on TimescaleDB and on plain PostgreSQL, in one run: `cargo bench --bench timeseries`.
//!
//! For each mode the bench starts the server in this process on a fresh embedded cluster (in a temporary
//! directory, removed at the end), twice:
//! 1. **Ingest**: the whole server on an empty database, flooded with MQTT telemetry (two readings a
//!    message, as the load bench's scenario B); committed readings per second and publish → commit latency.
//! 2. **History**: broker and web only (no ingest, so none of the server's maintenance jobs runs), a year
//!    of readings written with set-based SQL straight into `telemetry`, the hourly rollups refreshed, then
//!    bucketed queries through `GET /api/v1/telemetry`, the disk used, and on TimescaleDB compression of
//!    every chunk older than a day followed by the same queries, whose answers must not change.
//!
//! It prints a table and writes its own section of `BENCHMARKS.md`. Every step is bounded, and a watchdog
//! ends the process if the whole run overstays. `OEE_BENCH_QUICK=1` runs a tiny shape (ten days of
//! history) to check the bench itself and leaves `BENCHMARKS.md` alone.

#[path = "shared/flood.rs"]
mod flood;
#[path = "shared/host.rs"]
mod host;
#[path = "shared/sections.rs"]
mod sections;
#[path = "shared/server.rs"]
mod server;

use std::fmt::Write as _;
use std::future::Future;
use std::path::Path;
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use flood::{Flood, Publishers};
use host::HostInfo;
use oee_core::Config;
use oee_core::config::{CompressionConfig, TimescaleMode};
use oee_core::store::telemetry::bucket_floor;
use oee_core::store::timescale::{self, Timescale};
use oee_server::{App, Services};
use sqlx::PgPool;
use tokio::time::Instant;

const SECTION_START: &str = "<!-- timeseries:start -->";
const SECTION_END: &str = "<!-- timeseries:end -->";

/// MQTT publisher connections of the ingest flood, and how long they may publish.
const PUBLISHERS: Publishers = Publishers { connections: 4, window: Duration::from_secs(20) };
/// Per-request bound of the telemetry queries.
const HTTP_TIMEOUT: Duration = Duration::from_secs(60);
/// Bound of one step that is not a query: a server start, one generation statement, a refresh, compression.
const STEP: Duration = Duration::from_secs(600);
/// The key every generated reading has.
const KEY: &str = "temperature";
/// Two answers agree when each value differs by at most this much, relative: the sums behind an average
/// may be added in another order.
const TOLERANCE: f64 = 1e-9;

/// What is generated and measured.
struct Shape {
    quick: bool,
    /// Days of history.
    days: i64,
    /// The one dense machine: a reading every this many seconds.
    dense_step_s: i64,
    /// Machines with sparse readings, and their step.
    sparse_machines: usize,
    sparse_step_s: i64,
    /// Machines and messages of the ingest flood.
    flood_machines: usize,
    flood_messages: u64,
    /// The query windows (days back from the end of the history).
    windows: [i64; 2],
    /// The raw-readings query over the history's first days: how many, and its bucket (shorter than an
    /// hour, so read from the readings, not the rollups).
    raw_days: i64,
    raw_bucket: &'static str,
    /// Warm repeats of each query (after the cold one).
    repeats: usize,
    watchdog: Duration,
}

impl Shape {
    fn full() -> Shape {
        Shape {
            quick: false,
            days: 365,
            dense_step_s: 1,
            sparse_machines: 100,
            sparse_step_s: 300,
            flood_machines: 100,
            flood_messages: 200_000,
            windows: [30, 365],
            raw_days: 7,
            raw_bucket: "10m",
            repeats: 3,
            watchdog: Duration::from_secs(45 * 60),
        }
    }

    fn quick() -> Shape {
        Shape {
            quick: true,
            // Long enough for a chunk to be compressed.
            days: 10,
            dense_step_s: 1,
            sparse_machines: 10,
            sparse_step_s: 300,
            flood_machines: 10,
            flood_messages: 5_000,
            windows: [3, 10],
            raw_days: 1,
            raw_bucket: "10m",
            repeats: 2,
            watchdog: Duration::from_secs(8 * 60),
        }
    }

    fn dense_rows(&self) -> i64 {
        self.days * 86_400 / self.dense_step_s
    }

    fn sparse_rows(&self) -> i64 {
        self.days * 86_400 / self.sparse_step_s * self.sparse_machines as i64
    }
}

/// Where the time series live.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Timescale,
    Plain,
}

impl Mode {
    fn name(self) -> &'static str {
        match self {
            Mode::Timescale => "TimescaleDB",
            Mode::Plain => "plain PostgreSQL",
        }
    }

    fn tag(self) -> &'static str {
        match self {
            Mode::Timescale => "ts",
            Mode::Plain => "plain",
        }
    }
}

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    server::start_logging("warn");
    let quick = std::env::var("OEE_BENCH_QUICK").is_ok_and(|v| v == "1");
    let shape = if quick { Shape::quick() } else { Shape::full() };
    server::start_watchdog("timeseries", shape.watchdog);
    let host = HostInfo::gather();
    let started = Instant::now();
    // Both modes get the same history, ending at the start of this hour.
    let end = bucket_floor(Utc::now(), TimeDelta::hours(1));

    let mut runs = Vec::new();
    for mode in [Mode::Timescale, Mode::Plain] {
        eprintln!("== {}", mode.name());
        let ingest = ingest_phase(mode, &shape).await;
        let history = history_phase(mode, &shape, end).await;
        runs.push(ModeRun { mode, ingest, history });
    }
    let agreement = compare_modes(&runs);
    let total = started.elapsed();

    println!("{}", text_report(&shape, &runs, &agreement, total));
    if shape.quick {
        println!("OEE_BENCH_QUICK=1: BENCHMARKS.md left as it is");
        return;
    }
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("BENCHMARKS.md");
    let old = std::fs::read_to_string(&path).unwrap_or_default();
    let section = markdown(&host, &shape, end, &runs, &agreement, total);
    let md = sections::replace_section(&old, SECTION_START, SECTION_END, &section);
    std::fs::write(&path, md).unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
    println!("wrote {}", path.display());
}

// ---------------------------------------------------------------------------------------------------
// Set-up

/// The server's configuration in `mode`: none of its own maintenance may run during the measurements
/// (no retention, no compression, the rollup refresh once a day), and a year of hourly buckets fits in one
/// answer.
fn mode_config(dir: &Path, mode: Mode) -> Config {
    let mut c = server::loopback_config(dir);
    let settings = &mut c.database.embedded.settings;
    match mode {
        Mode::Timescale => {
            c.database.timescaledb = TimescaleMode::Auto;
            settings.insert("shared_preload_libraries".into(), "timescaledb".into());
            settings.insert("timescaledb.telemetry_level".into(), "off".into());
        }
        Mode::Plain => c.database.timescaledb = TimescaleMode::Off,
    }
    // Fewer checkpoints while a year of readings is written.
    settings.insert("max_wal_size".into(), "2GB".into());
    c.retention.telemetry_days = 0;
    c.compression.after_days = 0;
    c.telemetry.rollup_every_s = 86_400;
    c.oee.max_buckets = 10_000;
    c
}

/// Runs `fut`, giving up (and ending the bench) after `limit`.
async fn bounded<T>(what: &str, limit: Duration, fut: impl Future<Output = T>) -> T {
    match tokio::time::timeout(limit, fut).await {
        Ok(v) => v,
        Err(_) => panic!("{what} took more than {} s", limit.as_secs()),
    }
}

async fn start_server(config: &Config, services: Services, mode: Mode) -> (App, Timescale) {
    let app = bounded("starting the server", STEP, App::start(config, services))
        .await
        .unwrap_or_else(|e| panic!("start the server ({}): {e:#}", mode.name()));
    let ts = timescale::status(&app.db.pool).await.expect("ask the database whether TimescaleDB is active");
    if mode == Mode::Timescale && !ts.compression() {
        panic!(
            "the TimescaleDB mode needs TimescaleDB with its Timescale-licensed part, but the database has {:?}: \
             install it (../shared/timescaledb/install.sh)",
            ts
        );
    }
    if mode == Mode::Plain {
        assert!(!ts.active, "database.timescaledb = \"off\" should keep plain tables");
    }
    (app, ts)
}

async fn add_machines(pool: &PgPool, prefix: &str, n: usize) -> Vec<i32> {
    let mut ids = Vec::with_capacity(n);
    for i in 1..=n {
        let name = format!("{prefix}-{i:03}");
        let m = oee_core::store::machine::add_machine(pool, &name, chrono_tz::Tz::UTC, Utc::now())
            .await
            .unwrap_or_else(|e| panic!("add machine {name}: {e}"));
        ids.push(m.id);
    }
    ids
}

/// VACUUM ANALYZE and CHECKPOINT, so that what one step left behind is not cleaned up during the next;
/// returns how long it took.
async fn settle(pool: &PgPool) -> Duration {
    let started = Instant::now();
    for sql in ["VACUUM ANALYZE", "CHECKPOINT"] {
        bounded(sql, STEP, sqlx::raw_sql(sql).execute(pool)).await.unwrap_or_else(|e| panic!("{sql}: {e}"));
    }
    started.elapsed()
}

/// Bytes of the files under `dir` (the cluster's data directory and its WAL).
fn dir_bytes(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else { return 0 };
    entries
        .flatten()
        .map(|e| match e.file_type() {
            Ok(t) if t.is_dir() => dir_bytes(&e.path()),
            Ok(t) if t.is_file() => e.metadata().map(|m| m.len()).unwrap_or(0),
            _ => 0,
        })
        .sum()
}

// ---------------------------------------------------------------------------------------------------
// 1. Ingest

/// What the telemetry flood measured.
struct Ingest {
    sent: u64,
    acked: u64,
    readings: u64,
    drained: bool,
    readings_per_s: f64,
    p50_ms: Option<f64>,
    p99_ms: Option<f64>,
    max_ms: Option<f64>,
    publish_secs: f64,
    span_secs: f64,
    notes: Vec<String>,
}

async fn ingest_phase(mode: Mode, shape: &Shape) -> Ingest {
    let dir = server::fresh_dir(&format!("oee-tsbench-{}-ingest", mode.tag()));
    let mut config = mode_config(&dir, mode);
    // Commit timestamps are what the latencies are computed from.
    config.database.embedded.settings.insert("track_commit_timestamp".into(), "on".into());
    eprintln!("ingest: starting the server (embedded PostgreSQL under {})", dir.display());
    let (app, _) = start_server(&config, Services::ALL, mode).await;
    let pool = app.db.pool.clone();
    let port = app.mqtt_addr.map(|a| a.port()).unwrap_or(config.mqtt.port);
    let machines = add_machines(&pool, "flood", shape.flood_machines).await;
    warm_up(&pool, port, machines[0]).await;

    let since = flood::now_micros();
    let before = flood::ingest_counts(&app);
    let report = flood::flood(port, &machines, Flood::Telemetry, shape.flood_messages, None, PUBLISHERS).await;
    eprintln!(
        "ingest: published {} ({} acknowledged) in {:.1} s; waiting for the rows",
        report.sent, report.acked, report.publish_secs
    );
    // Each message carries two readings, each one row.
    let (readings, drained) =
        flood::wait_for_rows(&pool, "SELECT count(*) FROM telemetry WHERE ts >= $1", since, report.acked * 2).await;
    let after = flood::ingest_counts(&app);
    let metrics = flood::commit_metrics(&pool, Flood::Telemetry, since).await.unwrap_or_else(|e| {
        eprintln!("ingest: cannot compute commit latencies: {e}");
        flood::CommitMetrics::default()
    });
    let span_secs = match (report.first_publish, metrics.last_commit) {
        (Some(first), Some(last)) => (last - first).num_microseconds().unwrap_or(0) as f64 / 1e6,
        _ => 0.0,
    };
    let mut notes = vec![before.delta_note(after)];
    if !drained {
        notes.push(format!(
            "only {readings} of {} readings became rows before the wait ended ({} s at most, or {} s without progress)",
            report.acked * 2,
            flood::DRAIN_MAX.as_secs(),
            flood::DRAIN_STALL.as_secs()
        ));
    }
    if report.connection_errors > 0 {
        notes.push(format!("publisher connection errors: {}", report.connection_errors));
    }
    bounded("stopping the server", STEP, app.stop()).await;
    let _ = std::fs::remove_dir_all(&dir);
    Ingest {
        sent: report.sent,
        acked: report.acked,
        readings,
        drained,
        readings_per_s: if span_secs > 0.0 { readings as f64 / span_secs } else { 0.0 },
        p50_ms: metrics.p50_ms,
        p99_ms: metrics.p99_ms,
        max_ms: metrics.max_ms,
        publish_secs: report.publish_secs,
        span_secs,
        notes,
    }
}

/// One message until its row shows up: proves that ingest has subscribed before the flood.
async fn warm_up(pool: &PgPool, port: u16, machine: i32) {
    let one = Publishers { connections: 1, window: Duration::from_secs(10) };
    for _ in 0..10 {
        let since = flood::now_micros();
        let r = flood::flood(port, &[machine], Flood::Telemetry, 1, None, one).await;
        let sql = "SELECT count(*) FROM telemetry WHERE ts >= $1 AND key = 'temperature'";
        if r.acked == 1 && flood::wait_for_rows(pool, sql, since, 1).await.1 {
            return;
        }
        eprintln!("warm-up: the telemetry message did not become a row; retrying");
    }
    panic!("ingest stored none of 10 warm-up telemetry messages");
}

// ---------------------------------------------------------------------------------------------------
// 2. History, rollups, queries, disk, compression

/// One bucketed query (or 100 of them, one per machine).
#[derive(Debug, Clone)]
struct Case {
    /// One machine (the dense one) or every sparse machine.
    many: bool,
    days: i64,
    /// The window is the history's first `days` (compressed on TimescaleDB), not its last.
    oldest: bool,
    bucket: &'static str,
    agg: &'static str,
}

impl Case {
    fn label(&self, shape: &Shape) -> String {
        let machines = if self.many { format!("{} machines", shape.sparse_machines) } else { "1 machine".into() };
        let which = if self.oldest { " (the oldest)" } else { "" };
        format!("{machines}, {} d{which}, bucket={}, agg={}", self.days, self.bucket, self.agg)
    }
}

/// One bucket: its start (Unix seconds) and value.
type Points = Vec<(i64, f64)>;

/// What one case measured: the first run, the median of the repeats, and the answers (one per machine).
struct Timed {
    cold: Duration,
    warm: Duration,
    source: String,
    answers: Vec<Points>,
}

/// The sizes of `telemetry` at one moment.
#[derive(Default, Clone, Copy)]
struct Size {
    total: i64,
    indexes: i64,
}

struct History {
    version: String,
    generated_rows: i64,
    generate: Duration,
    settle: Duration,
    refresh: Duration,
    rollup_rows: i64,
    rollup_bytes: i64,
    size: Size,
    chunks: i64,
    /// TimescaleDB: the chunk interval of `telemetry`.
    chunk_interval: Option<String>,
    /// TimescaleDB: what compression did, how long it took, and the size after it.
    compressed: Option<(u64, Duration, Size)>,
    cases: Vec<(Case, Timed)>,
    /// TimescaleDB: the same cases over the compressed chunks.
    after_compression: Vec<Timed>,
    peak_dir_bytes: u64,
}

fn cases(shape: &Shape) -> Vec<Case> {
    let mut out = Vec::new();
    for many in [false, true] {
        for days in shape.windows {
            for bucket in ["1h", "1d"] {
                for agg in ["avg", "max"] {
                    out.push(Case { many, days, oldest: false, bucket, agg });
                }
            }
        }
    }
    for agg in ["avg", "max"] {
        out.push(Case { many: false, days: shape.raw_days, oldest: true, bucket: shape.raw_bucket, agg });
    }
    out
}

async fn history_phase(mode: Mode, shape: &Shape, end: DateTime<Utc>) -> History {
    let dir = server::fresh_dir(&format!("oee-tsbench-{}-history", mode.tag()));
    let config = mode_config(&dir, mode);
    eprintln!("history: starting broker and web (embedded PostgreSQL under {})", dir.display());
    let services = Services { broker: true, ingest: false, bridge: false, web: true };
    let (app, ts) = start_server(&config, services, mode).await;
    let pool = app.db.pool.clone();
    let http = format!("http://{}", app.http_addr.expect("the web service serves HTTP"));
    let version: String =
        sqlx::query_scalar("SELECT version()").fetch_one(&pool).await.expect("ask PostgreSQL its version");
    let dense = add_machines(&pool, "dense", 1).await[0];
    let sparse = add_machines(&pool, "sparse", shape.sparse_machines).await;
    let mut peak = dir_bytes(&dir);

    let started = Instant::now();
    let generated_rows = generate(&pool, shape, end, dense, &sparse).await;
    let generate_time = started.elapsed();
    eprintln!(
        "history: {generated_rows} readings written in {:.1} s ({:.0}/s)",
        generate_time.as_secs_f64(),
        generated_rows as f64 / generate_time.as_secs_f64()
    );
    peak = peak.max(dir_bytes(&dir));
    let settle_time = settle(&pool).await;
    let size = telemetry_size(&pool, mode).await;
    let chunks = chunk_count(&pool, mode).await;
    let chunk_interval = chunk_interval(&pool, mode).await;

    let started = Instant::now();
    bounded("refreshing the rollups", STEP, oee_core::store::telemetry::refresh_rollups(&pool, &ts, Utc::now()))
        .await
        .expect("refresh the rollups");
    let refresh = started.elapsed();
    eprintln!("history: rollups refreshed in {:.1} s", refresh.as_secs_f64());
    settle(&pool).await;
    peak = peak.max(dir_bytes(&dir));
    let (rollup_rows, rollup_bytes) = rollup_size(&pool, mode).await;

    let client = http_client(&pool).await;
    let all = cases(shape);
    let mut timed = Vec::new();
    for case in &all {
        let t = run_case(&client, &http, shape, end, case, dense, &sparse).await;
        eprintln!(
            "  {:<50} cold {:>9.1} ms  warm {:>9.1} ms  ({})",
            case.label(shape),
            ms(t.cold),
            ms(t.warm),
            t.source
        );
        timed.push((case.clone(), t));
    }

    let mut compressed = None;
    let mut after_compression = Vec::new();
    if mode == Mode::Timescale {
        let cfg = CompressionConfig { after_days: 1, ..CompressionConfig::default() };
        let started = Instant::now();
        let report = bounded("compressing", STEP, oee_core::store::retention::compress(&pool, &cfg, &ts, Utc::now()))
            .await
            .expect("compress the old chunks");
        let took = started.elapsed();
        eprintln!("history: compression in {:.1} s: {}", took.as_secs_f64(), report.message);
        settle(&pool).await;
        peak = peak.max(dir_bytes(&dir));
        compressed = Some((report.chunks, took, telemetry_size(&pool, mode).await));
        for (case, before) in &timed {
            let t = run_case(&client, &http, shape, end, case, dense, &sparse).await;
            eprintln!(
                "  compressed: {:<38} cold {:>9.1} ms  warm {:>9.1} ms",
                case.label(shape),
                ms(t.cold),
                ms(t.warm)
            );
            if let Err(e) = agree(&before.answers, &t.answers) {
                panic!("{} answers differently after compression: {e}", case.label(shape));
            }
            after_compression.push(t);
        }
    }

    bounded("stopping the server", STEP, app.stop()).await;
    let _ = std::fs::remove_dir_all(&dir);
    History {
        version,
        generated_rows,
        generate: generate_time,
        settle: settle_time,
        refresh,
        rollup_rows,
        rollup_bytes,
        size,
        chunks,
        chunk_interval,
        compressed,
        cases: timed,
        after_compression,
        peak_dir_bytes: peak,
    }
}

/// The value of a generated reading at time `t` for machine number `i`: a temperature with one decimal, a
/// slow daily and hourly swing plus a deterministic jitter (so neighbouring readings differ, as a
/// sensor's do).
const VALUE: &str = "round((60 + 8 * sin(extract(epoch FROM t) / 3600.0) + 4 * sin(extract(epoch FROM t) / 13751.0) \
                     + ((extract(epoch FROM t)::bigint * 7919 + i * 104729) % 100) / 50.0)::numeric, 1)::float8";

/// Writes the history into `telemetry`, a slab of at most 30 days per statement (each bounded): the dense
/// machine's readings, then the sparse machines' (interleaved by time, as they would arrive). Returns the
/// rows written.
async fn generate(pool: &PgPool, shape: &Shape, end: DateTime<Utc>, dense: i32, sparse: &[i32]) -> i64 {
    let start = end - TimeDelta::days(shape.days);
    let dense_sql = format!(
        "INSERT INTO telemetry (machine_id, key, ts, value) \
         SELECT $1, '{KEY}', t, {VALUE} \
         FROM generate_series($2::timestamptz, $3::timestamptz - make_interval(secs => $4), make_interval(secs => $4)) t \
         CROSS JOIN (VALUES (0)) AS u(i)"
    );
    let sparse_sql = format!(
        "INSERT INTO telemetry (machine_id, key, ts, value) \
         SELECT m, '{KEY}', t, {VALUE} \
         FROM generate_series($2::timestamptz, $3::timestamptz - make_interval(secs => $4), make_interval(secs => $4)) t \
         CROSS JOIN unnest($1::int[]) WITH ORDINALITY AS u(m, i)"
    );
    let mut rows = 0i64;
    for (what, sql, step) in
        [("dense", dense_sql.as_str(), shape.dense_step_s), ("sparse", sparse_sql.as_str(), shape.sparse_step_s)]
    {
        let mut from = start;
        while from < end {
            let to = (from + TimeDelta::days(30)).min(end);
            let q = sqlx::query(sqlx::AssertSqlSafe(sql.to_string()));
            let q = if what == "dense" { q.bind(dense) } else { q.bind(sparse.to_vec()) };
            let done =
                bounded("writing a slab of readings", STEP, q.bind(from).bind(to).bind(step as f64).execute(pool))
                    .await
                    .unwrap_or_else(|e| panic!("write the {what} readings from {from} to {to}: {e}"));
            rows += done.rows_affected() as i64;
            from = to;
        }
        eprintln!("history: {what} readings written ({rows} so far)");
    }
    rows
}

async fn telemetry_size(pool: &PgPool, mode: Mode) -> Size {
    let sql = match mode {
        Mode::Timescale => "SELECT total_bytes, index_bytes FROM hypertable_detailed_size('telemetry')",
        Mode::Plain => "SELECT pg_total_relation_size('telemetry'), pg_indexes_size('telemetry')",
    };
    let (total, indexes): (Option<i64>, Option<i64>) =
        sqlx::query_as(sql).fetch_one(pool).await.expect("read the size of telemetry");
    Size { total: total.unwrap_or(0), indexes: indexes.unwrap_or(0) }
}

async fn chunk_interval(pool: &PgPool, mode: Mode) -> Option<String> {
    if mode == Mode::Plain {
        return None;
    }
    sqlx::query_scalar(
        "SELECT time_interval::text FROM timescaledb_information.dimensions \
         WHERE hypertable_schema = current_schema() AND hypertable_name = 'telemetry'",
    )
    .fetch_optional(pool)
    .await
    .expect("read the chunk interval")
}

async fn chunk_count(pool: &PgPool, mode: Mode) -> i64 {
    if mode == Mode::Plain {
        return 0;
    }
    sqlx::query_scalar("SELECT count(*) FROM show_chunks('telemetry')").fetch_one(pool).await.expect("count chunks")
}

/// Rows and bytes of the hourly rollups (the continuous aggregate's materialised hypertable on TimescaleDB).
async fn rollup_size(pool: &PgPool, mode: Mode) -> (i64, i64) {
    let rows: i64 =
        sqlx::query_scalar("SELECT count(*) FROM telemetry_hourly").fetch_one(pool).await.expect("count rollup rows");
    let bytes_sql = match mode {
        Mode::Timescale => {
            "SELECT hypertable_size(format('%I.%I', materialization_hypertable_schema, \
                    materialization_hypertable_name)::regclass) \
             FROM timescaledb_information.continuous_aggregates WHERE view_name = 'telemetry_hourly'"
        }
        Mode::Plain => "SELECT pg_total_relation_size('telemetry_hourly')",
    };
    let bytes: Option<i64> = sqlx::query_scalar(bytes_sql).fetch_one(pool).await.expect("read the rollups' size");
    (rows, bytes.unwrap_or(0))
}

/// An HTTP client carrying a new read-scope API token.
async fn http_client(pool: &PgPool) -> reqwest::Client {
    let name = format!("timeseries bench {}", Utc::now().format("%Y%m%d%H%M%S%.f"));
    let (_, secret) = oee_core::store::account::create_token(
        pool,
        &name,
        oee_core::store::account::TokenScope::Read,
        None,
        Utc::now(),
    )
    .await
    .expect("create an API token");
    let mut auth = reqwest::header::HeaderMap::new();
    auth.insert(
        reqwest::header::AUTHORIZATION,
        reqwest::header::HeaderValue::from_str(&format!("Bearer {secret}")).expect("a token is a header value"),
    );
    reqwest::Client::builder().timeout(HTTP_TIMEOUT).default_headers(auth).build().expect("build the HTTP client")
}

/// Runs `case` once cold and `shape.repeats` times warm. For many machines one run is one request per
/// machine, one after another, and its time is their total.
async fn run_case(
    client: &reqwest::Client,
    http: &str,
    shape: &Shape,
    end: DateTime<Utc>,
    case: &Case,
    dense: i32,
    sparse: &[i32],
) -> Timed {
    let machines: Vec<i32> = if case.many { sparse.to_vec() } else { vec![dense] };
    let to = if case.oldest { end - TimeDelta::days(shape.days - case.days) } else { end };
    let from = to - TimeDelta::days(case.days);
    let mut runs = Vec::new();
    let mut answers = Vec::new();
    let mut source = String::new();
    for run in 0..=shape.repeats {
        let started = Instant::now();
        for &m in &machines {
            let url = format!(
                "{http}/api/v1/telemetry?machine={m}&key={KEY}&from={}&to={}&bucket={}&agg={}",
                from.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                to.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                case.bucket,
                case.agg
            );
            let (s, points) = get_points(client, &url).await;
            if run == 0 {
                source = s;
                answers.push(points);
            }
        }
        runs.push(started.elapsed());
    }
    let cold = runs[0];
    let mut warm = runs[1..].to_vec();
    warm.sort();
    Timed { cold, warm: warm.get(warm.len() / 2).copied().unwrap_or(cold), source, answers }
}

/// One bucketed answer: where it was read from, and its points.
async fn get_points(client: &reqwest::Client, url: &str) -> (String, Points) {
    let r = client.get(url).send().await.unwrap_or_else(|e| panic!("GET {url}: {e}"));
    let status = r.status();
    let body = r.text().await.unwrap_or_else(|e| panic!("read the answer to GET {url}: {e}"));
    assert!(status.is_success(), "GET {url}: HTTP {status}: {body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap_or_else(|e| panic!("GET {url}: not JSON ({e})"));
    let source = v["source"].as_str().unwrap_or("?").to_string();
    let points = v["points"]
        .as_array()
        .unwrap_or_else(|| panic!("GET {url}: no points in {body:.200}"))
        .iter()
        .map(|p| {
            let t = p["t"]
                .as_str()
                .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
                .unwrap_or_else(|| panic!("GET {url}: a point without a time: {p}"));
            let v = p["v"].as_f64().unwrap_or_else(|| panic!("GET {url}: a point without a value: {p}"));
            (t.timestamp(), v)
        })
        .collect();
    (source, points)
}

/// Whether two sets of answers agree: the same buckets, and values equal within [`TOLERANCE`].
fn agree(a: &[Points], b: &[Points]) -> Result<(), String> {
    if a.len() != b.len() {
        return Err(format!("{} answers against {}", a.len(), b.len()));
    }
    for (n, (x, y)) in a.iter().zip(b).enumerate() {
        if x.len() != y.len() {
            return Err(format!("answer {n}: {} buckets against {}", x.len(), y.len()));
        }
        if x.is_empty() {
            return Err(format!("answer {n} has no buckets"));
        }
        for ((tx, vx), (ty, vy)) in x.iter().zip(y) {
            if tx != ty || (vx - vy).abs() > TOLERANCE * vx.abs().max(1.0) {
                return Err(format!("answer {n}: bucket {tx} = {vx} against bucket {ty} = {vy}"));
            }
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------------
// Results

struct ModeRun {
    mode: Mode,
    ingest: Ingest,
    history: History,
}

/// Whether both modes answered every case alike; the cases that differed.
fn compare_modes(runs: &[ModeRun]) -> Vec<String> {
    let mut differ = Vec::new();
    if let [a, b] = runs {
        for ((case, x), (_, y)) in a.history.cases.iter().zip(&b.history.cases) {
            if let Err(e) = agree(&x.answers, &y.answers) {
                differ.push(format!("{:?}: {e}", case));
            }
        }
    }
    differ
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn opt_ms(v: Option<f64>) -> String {
    v.map(|v| format!("{v:.1}")).unwrap_or_else(|| "–".into())
}

fn mb(bytes: i64) -> String {
    format!("{:.1} MB", bytes as f64 / 1e6)
}

fn per_million(bytes: i64, rows: i64) -> String {
    if rows == 0 { "–".into() } else { mb((bytes as f64 * 1e6 / rows as f64) as i64) }
}

fn text_report(shape: &Shape, runs: &[ModeRun], differ: &[String], total: Duration) -> String {
    let mut s = String::new();
    for r in runs {
        let (i, h) = (&r.ingest, &r.history);
        let _ = writeln!(s, "\n{}", r.mode.name());
        let _ = writeln!(
            s,
            "  ingest: {} messages sent, {} acked, {} readings committed{}, {:.0} readings/s, p50 {} ms, p99 {} ms, max {} ms",
            i.sent,
            i.acked,
            i.readings,
            if i.drained { "" } else { " (NOT all)" },
            i.readings_per_s,
            opt_ms(i.p50_ms),
            opt_ms(i.p99_ms),
            opt_ms(i.max_ms)
        );
        let _ = writeln!(
            s,
            "  history: {} rows in {:.1} s; VACUUM ANALYZE + CHECKPOINT {:.1} s; rollup refresh {:.1} s ({} rows, {})",
            h.generated_rows,
            h.generate.as_secs_f64(),
            h.settle.as_secs_f64(),
            h.refresh.as_secs_f64(),
            h.rollup_rows,
            mb(h.rollup_bytes)
        );
        let _ = writeln!(
            s,
            "  disk: telemetry {} ({} indexes), {} per million readings",
            mb(h.size.total),
            mb(h.size.indexes),
            per_million(h.size.total, h.generated_rows)
        );
        if let Some((chunks, took, after)) = h.compressed {
            let _ = writeln!(
                s,
                "  compression: {chunks} of {} chunks ({}) in {:.1} s; telemetry {} after, {} per million readings",
                h.chunks,
                h.chunk_interval.as_deref().unwrap_or("?"),
                took.as_secs_f64(),
                mb(after.total),
                per_million(after.total, h.generated_rows)
            );
        }
        for (n, (case, t)) in h.cases.iter().enumerate() {
            let after = h
                .after_compression
                .get(n)
                .map(|a| format!("  compressed: cold {:.1} warm {:.1}", ms(a.cold), ms(a.warm)))
                .unwrap_or_default();
            let _ = writeln!(
                s,
                "  {:<50} {:<6} cold {:>9.1} ms warm {:>9.1} ms{after}",
                case.label(shape),
                t.source,
                ms(t.cold),
                ms(t.warm)
            );
        }
        let _ = writeln!(s, "  peak size of the cluster's directory: {}", mb(h.peak_dir_bytes as i64));
    }
    if differ.is_empty() {
        let _ = writeln!(s, "\nboth modes gave the same answers to every query");
    } else {
        let _ = writeln!(s, "\nthe modes answered differently:\n  {}", differ.join("\n  "));
    }
    let _ = writeln!(s, "whole run: {:.0} s", total.as_secs_f64());
    s
}

fn markdown(
    host: &HostInfo,
    shape: &Shape,
    end: DateTime<Utc>,
    runs: &[ModeRun],
    differ: &[String],
    total: Duration,
) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "{SECTION_START}");
    let _ = writeln!(s, "## Time series: TimescaleDB and plain PostgreSQL\n");
    let _ = writeln!(
        s,
        "Written by `benches/timeseries.rs` from the numbers it measured; re-run it rather than editing this \
         section.\n"
    );
    let _ = writeln!(
        s,
        "- Command: `cargo bench --bench timeseries` (both modes in one run, {:.0} s)",
        total.as_secs_f64()
    );
    s.push_str(&host.report_lines());
    if let Some(r) = runs.first() {
        let _ = writeln!(s, "- Database: {}", r.history.version);
    }
    let _ = writeln!(
        s,
        "- Modes: **TimescaleDB** 2.28.3 (`database.timescaledb = \"auto\"`, `shared_preload_libraries = \
         timescaledb`, `timescaledb.telemetry_level = off`; `telemetry` a hypertable with chunks of {}, the hourly \
         rollups a continuous aggregate with real-time aggregation) and **plain PostgreSQL** \
         (`database.timescaledb = \"off\"`; `telemetry` a table, the rollups a table the server refreshes). Each \
         on its own embedded cluster in a temporary directory, `shared_buffers = 512MB`, `max_wal_size = 2GB`, \
         `synchronous_commit = on`; everything on 127.0.0.1 and the cluster's unix socket, the load generator \
         on the same CPUs",
        runs.iter().find_map(|r| r.history.chunk_interval.clone()).unwrap_or_else(|| "?".into())
    );
    let start = end - TimeDelta::days(shape.days);
    let _ = writeln!(
        s,
        "- History (the same in both modes), written with set-based SQL (`INSERT … SELECT … generate_series`, a \
         30-day slab per statement) straight into `telemetry`, key `{KEY}`, values with one decimal (an hourly \
         and a slower swing plus a deterministic jitter), from {} to {} ({} days):",
        start.format("%Y-%m-%d %H:%M UTC"),
        end.format("%Y-%m-%d %H:%M UTC"),
        shape.days
    );
    let _ = writeln!(
        s,
        "  - 1 machine with a reading every {} s: {} rows",
        shape.dense_step_s,
        thousands(shape.dense_rows())
    );
    let _ = writeln!(
        s,
        "  - {} machines with a reading every {} s: {} rows",
        shape.sparse_machines,
        shape.sparse_step_s,
        thousands(shape.sparse_rows())
    );
    let _ = writeln!(
        s,
        "- The server's own maintenance is kept out of the measurements: no retention, no scheduled compression, \
         the rollup refresh at most daily; `oee.max_buckets = 10000` so a year of hourly buckets is one answer\n"
    );

    let _ = writeln!(s, "### Telemetry ingest through the server (MQTT)\n");
    let _ = writeln!(
        s,
        "The whole server on an empty database; {} publishers (QoS 1) spread {} messages of two readings \
         (`temperature`, `rpm`) over {} machines, as fast as the broker acknowledges (at most {} s), as the load \
         bench's scenario B does with more.\n",
        PUBLISHERS.connections,
        thousands(shape.flood_messages as i64),
        shape.flood_machines,
        PUBLISHERS.window.as_secs()
    );
    let _ = writeln!(
        s,
        "| Mode | Messages sent | Acknowledged | Readings committed | Readings/s committed | p50 ms | p99 ms | max ms |"
    );
    let _ = writeln!(s, "|---|---:|---:|---:|---:|---:|---:|---:|");
    for r in runs {
        let i = &r.ingest;
        let _ = writeln!(
            s,
            "| {} | {} | {} | {}{} | {:.0} | {} | {} | {} |",
            r.mode.name(),
            i.sent,
            i.acked,
            i.readings,
            if i.drained { "" } else { " (not all)" },
            i.readings_per_s,
            opt_ms(i.p50_ms),
            opt_ms(i.p99_ms),
            opt_ms(i.max_ms)
        );
    }
    let _ = writeln!(
        s,
        "\nReadings/s: committed readings over the time from the first publish to the commit of the last reading. \
         Latency: publish → commit of each message's `temperature` row, from PostgreSQL's commit timestamps \
         (`track_commit_timestamp = on`); it includes queueing behind the flood's backlog."
    );
    for r in runs {
        let i = &r.ingest;
        let _ = writeln!(
            s,
            "- {}: published in {:.1} s, first publish → last commit {:.1} s; {}",
            r.mode.name(),
            i.publish_secs,
            i.span_secs,
            i.notes.join("; ")
        );
    }
    let _ = writeln!(s);

    let _ = writeln!(s, "### Writing the history, refreshing the rollups\n");
    let _ = writeln!(
        s,
        "| Mode | Rows written | Time | Rows/s | VACUUM ANALYZE + CHECKPOINT | Rollup refresh | Rollup rows | Rollup size |"
    );
    let _ = writeln!(s, "|---|---:|---:|---:|---:|---:|---:|---:|");
    for r in runs {
        let h = &r.history;
        let _ = writeln!(
            s,
            "| {} | {} | {:.1} s | {:.0} | {:.1} s | {:.1} s | {} | {} |",
            r.mode.name(),
            thousands(h.generated_rows),
            h.generate.as_secs_f64(),
            h.generated_rows as f64 / h.generate.as_secs_f64().max(1e-9),
            h.settle.as_secs_f64(),
            h.refresh.as_secs_f64(),
            thousands(h.rollup_rows),
            mb(h.rollup_bytes)
        );
    }
    let _ = writeln!(
        s,
        "\nThe refresh is `core::store::telemetry::refresh_rollups` right after the history was written, so it \
         rolls up the whole year: the continuous aggregate's `refresh_continuous_aggregate` on TimescaleDB, the \
         first fill of the rollup table on plain PostgreSQL. Later refreshes only redo the hours that changed.\n"
    );

    let _ = writeln!(s, "### Disk per million readings\n");
    let _ = writeln!(
        s,
        "| Mode | `telemetry` (table + indexes) | of which indexes | Per million readings | Peak size of the cluster's directory |"
    );
    let _ = writeln!(s, "|---|---:|---:|---:|---:|");
    for r in runs {
        let h = &r.history;
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} | {} |",
            r.mode.name(),
            mb(h.size.total),
            mb(h.size.indexes),
            per_million(h.size.total, h.generated_rows),
            mb(h.peak_dir_bytes as i64)
        );
        if let Some((chunks, took, after)) = h.compressed {
            let _ = writeln!(
                s,
                "| {} after compressing {chunks} of {} chunks (older than a day) in {:.1} s | {} | {} | {} | |",
                r.mode.name(),
                h.chunks,
                took.as_secs_f64(),
                mb(after.total),
                mb(after.indexes),
                per_million(after.total, h.generated_rows)
            );
        }
    }
    let _ = writeln!(
        s,
        "\nPlain: `pg_total_relation_size('telemetry')`, indexes `pg_indexes_size`. TimescaleDB: \
         `hypertable_detailed_size('telemetry')` (all chunks, their indexes and TOAST), after `VACUUM ANALYZE`. \
         Compression is `core::store::retention::compress` with `after_days = 1` (segment by machine and key, \
         order by time); the rollups are not compressed. The directory size includes WAL and the rollups.\n"
    );

    let _ = writeln!(s, "### Bucketed queries through `GET /api/v1/telemetry`\n");
    let _ = writeln!(
        s,
        "After the refresh and a `VACUUM ANALYZE`. Cold: the first run of the query; warm: the median of the {} \
         runs after it. With 1 machine a run is one request (the machine with one-second readings); with {} \
         machines it is {} requests, one per machine, one after another, and the time is their **total**. \
         Buckets of whole hours are read from the rollups (`source` rollup), the `{}` bucket from the readings \
         (raw), over the history's first days, which TimescaleDB has compressed in the third and fourth \
         columns. The operating system's page cache is not dropped, so cold means cold for the server, not for the \
         disk.\n",
        shape.repeats, shape.sparse_machines, shape.sparse_machines, shape.raw_bucket
    );
    let ts = runs.iter().find(|r| r.mode == Mode::Timescale);
    let plain = runs.iter().find(|r| r.mode == Mode::Plain);
    let _ = writeln!(
        s,
        "| Query | Source | TimescaleDB cold ms | TimescaleDB warm ms | TimescaleDB compressed: cold ms | compressed: warm ms | Plain cold ms | Plain warm ms |"
    );
    let _ = writeln!(s, "|---|---|---:|---:|---:|---:|---:|---:|");
    let base = ts.or(plain).map(|r| &r.history.cases[..]).unwrap_or(&[]);
    for (n, (case, t)) in base.iter().enumerate() {
        let cell = |r: Option<&ModeRun>, f: fn(&Timed) -> Duration, compressed: bool| -> String {
            let h = r.map(|r| &r.history);
            let timed = match compressed {
                false => h.and_then(|h| h.cases.get(n)).map(|(_, t)| t),
                true => h.and_then(|h| h.after_compression.get(n)),
            };
            timed.map(|t| format!("{:.1}", ms(f(t)))).unwrap_or_else(|| "–".into())
        };
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} | {} | {} | {} | {} |",
            case.label(shape),
            t.source,
            cell(ts, |t| t.cold, false),
            cell(ts, |t| t.warm, false),
            cell(ts, |t| t.cold, true),
            cell(ts, |t| t.warm, true),
            cell(plain, |t| t.cold, false),
            cell(plain, |t| t.warm, false)
        );
    }
    let _ = writeln!(s);
    if differ.is_empty() {
        let _ = writeln!(
            s,
            "Both modes gave the same buckets and values (within {TOLERANCE:e} relative) to every query, and on \
             TimescaleDB every query gave the same answer after compression as before (checked by the bench, \
             which stops otherwise).\n"
        );
    } else {
        let _ = writeln!(s, "**The modes answered differently**: {}\n", differ.join("; "));
    }
    let _ = writeln!(s, "### The 30-day OEE group report\n");
    let _ = writeln!(
        s,
        "Not measured in two modes: the report reads activities, jobs and production counts, which are plain \
         tables in both modes (`docs/decisions.md` says why), so TimescaleDB does not change it. `cargo bench \
         --bench report` measures it (section \"OEE report over a year of history\")."
    );
    let _ = writeln!(s, "{SECTION_END}");
    s
}

/// `n` with commas between groups of three digits.
fn thousands(n: i64) -> String {
    let digits = n.unsigned_abs().to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    if n < 0 { format!("-{out}") } else { out }
}
