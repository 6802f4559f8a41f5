//! A bounded benchmark of OEE reports over a year of history: `cargo bench --bench report`.
//!
//! It fills an embedded PostgreSQL cluster with a year of history for 100 machines (one activity about
//! every 5 minutes, three jobs a day with ideal cycle times, a production record every 15 minutes), all
//! with set-based SQL (`benches/shared/history.rs`, which the pages bench reads too), then starts the whole server on that cluster and times the 30-day report of the
//! group and of one machine through `GET /api/v1/oee` over loopback HTTP: the first call after a fresh
//! start of the server and its PostgreSQL ("cold"), then repeats ("warm"). It also times the engine
//! alone (`store::report::engine_inputs` and `oee::History::sums`, no HTTP) and writes its figures into its own
//! section of `BENCHMARKS.md`.
//!
//! Environment:
//! - `OEE_BENCH_QUICK=1`: 10 machines × 30 days, to check the bench itself; `BENCHMARKS.md` is left alone.
//! - `OEE_REPORT_BENCH_DIR=/some/dir`: keep the generated dataset there and reuse it on later runs
//!   (it is generated when the directory holds none). Without it, the data lives in a temporary
//!   directory that is removed at the end.
//!
//! Everything listens on 127.0.0.1 or a unix socket, and every step is bounded: a watchdog ends the
//! process if a run goes on far longer than expected.

#[path = "shared/history.rs"]
mod history;
#[path = "shared/host.rs"]
mod host;
#[path = "shared/samples.rs"]
mod samples;
#[path = "shared/sections.rs"]
mod sections;
#[path = "shared/server.rs"]
mod server;

use history::{Cluster, Dataset, Shape};
use host::HostInfo;
use samples::median;
use std::fmt::Write as _;
use std::path::Path;
use std::time::Duration;

use chrono::{DateTime, NaiveDate, SecondsFormat, TimeDelta, Utc};
use oee_core::Config;
use oee_core::oee::{EngineConfig, History, Sums, Window};
use oee_core::store::{Database, report};
use serde_json::Value;
use sqlx::PgPool;
use tokio::time::Instant;

/// Length of the timed report window.
const REPORT_DAYS: i64 = 30;
const SECTION_START: &str = "<!-- report-bench:start -->";
const SECTION_END: &str = "<!-- report-bench:end -->";
/// Per-request bound.
const HTTP_TIMEOUT: Duration = Duration::from_secs(300);

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    // By default: no notes about slow statements (bulk loading is slow on purpose) and no broker errors
    // about its connections going away when a server is stopped between cases.
    server::start_logging("warn,sqlx::query=error,rumqttd=off");
    let run_started = Instant::now();
    let shape = Shape::from_env(Duration::from_secs(600), Duration::from_secs(3600));
    server::start_watchdog("report", shape.watchdog);
    let host = HostInfo::gather();
    let cluster = Cluster::open("report", shape.size).await;
    let config = &cluster.config;
    let dataset = &cluster.dataset;

    // The report window ends where the history ends: now for a fresh dataset, the generation time for a
    // reused one (later times would only add one open activity per machine).
    let to = dataset.end;
    let from = to - TimeDelta::days(REPORT_DAYS);
    let token = read_token(config).await;
    let mut auth = reqwest::header::HeaderMap::new();
    auth.insert(
        reqwest::header::AUTHORIZATION,
        reqwest::header::HeaderValue::from_str(&format!("Bearer {token}")).expect("a token is a header value"),
    );
    let client =
        reqwest::Client::builder().timeout(HTTP_TIMEOUT).default_headers(auth).build().expect("build the HTTP client");
    let machines = cluster.machine_ids().await;
    let one = machines[0];
    let day_count = days_touched(from, to);
    let cases = [
        Case {
            name: format!("group of {} machines, {REPORT_DAYS} days, by=day", machines.len()),
            query: format!("group={}&from={}&to={}&by=day", dataset.group, rfc3339(from), rfc3339(to)),
            machines: machines.len(),
            buckets: day_count,
            window: (from, to),
        },
        Case {
            name: format!("group of {} machines, {REPORT_DAYS} days, whole window", machines.len()),
            query: format!("group={}&from={}&to={}", dataset.group, rfc3339(from), rfc3339(to)),
            machines: machines.len(),
            buckets: 0,
            window: (from, to),
        },
        Case {
            name: format!("one machine, {REPORT_DAYS} days, whole window"),
            query: format!("machine={one}&from={}&to={}", rfc3339(from), rfc3339(to)),
            machines: 1,
            buckets: 0,
            window: (from, to),
        },
        Case {
            name: format!("one machine, {REPORT_DAYS} days, by=day"),
            query: format!("machine={one}&from={}&to={}&by=day", rfc3339(from), rfc3339(to)),
            machines: 1,
            buckets: day_count,
            window: (from, to),
        },
    ];

    let mut timings = Vec::new();
    let mut engine = None;
    let mut pg_version = String::new();
    let mut sizes = Vec::new();
    for (i, case) in cases.iter().enumerate() {
        // A fresh server (and PostgreSQL with empty shared buffers) for every case's first call.
        let app = cluster.start_server().await;
        let http = format!("http://{}", app.http_addr.expect("the server serves HTTP"));
        eprintln!("timing: {}", case.name);
        timings.push(time_case(&client, &http, case, shape.repeats).await);
        if i + 1 == cases.len() {
            eprintln!("timing: the engine alone");
            engine = Some(time_engine(&app.db.pool, &machines, from, to, shape.repeats).await);
            pg_version = sqlx::query_scalar("SELECT version()")
                .fetch_one(&app.db.pool)
                .await
                .expect("ask PostgreSQL its version");
            sizes = table_sizes(&app.db.pool).await;
        }
        app.stop().await;
    }
    let engine = engine.expect("the engine was timed");

    cluster.finish();
    let dataset = cluster.dataset;

    let run_s = run_started.elapsed().as_secs_f64();
    let results = Results { host, shape, dataset, pg_version, sizes, timings, engine, run_s, from, to };
    println!("{}", results.text());
    if shape.quick {
        println!("quick run: BENCHMARKS.md left unchanged");
        return;
    }
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("BENCHMARKS.md");
    let old = std::fs::read_to_string(&path).unwrap_or_default();
    let new = sections::replace_section(&old, SECTION_START, SECTION_END, &results.markdown());
    std::fs::write(&path, new).unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
    println!("wrote the report section of {}", path.display());
}

// ---------------------------------------------------------------------------------------------------
// Set-up

/// A read-scope API token for the report requests (a new one per run; tokens are cheap rows).
async fn read_token(config: &Config) -> String {
    let db = Database::open(config).await.expect("open the database");
    let name = format!("report bench {}", chrono::Utc::now().format("%Y%m%d%H%M%S%.f"));
    let (_, secret) = oee_core::store::account::create_token(
        &db.pool,
        &name,
        oee_core::store::account::TokenScope::Read,
        None,
        chrono::Utc::now(),
    )
    .await
    .expect("create an API token");
    db.close().await;
    secret
}

// ---------------------------------------------------------------------------------------------------
// Timing

/// One request to time.
struct Case {
    name: String,
    query: String,
    machines: usize,
    /// Buckets the answer must have (0: none asked for).
    buckets: usize,
    window: (DateTime<Utc>, DateTime<Utc>),
}

struct Timing {
    name: String,
    query: String,
    first_ms: f64,
    /// Warm repeats, sorted.
    warm_ms: Vec<f64>,
    bytes: usize,
    oee: Option<f64>,
    /// The daily cache on the first call and on the last warm one: (days read from it, days computed).
    cache: [(i64, i64); 2],
}

fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// Calendar days (UTC, the bench plant's time zone) that [from, to) touches: the API's `by=day` buckets.
fn days_touched(from: DateTime<Utc>, to: DateTime<Utc>) -> usize {
    let first: NaiveDate = from.date_naive();
    let last: NaiveDate = (to - TimeDelta::milliseconds(1)).date_naive();
    ((last - first).num_days() + 1) as usize
}

async fn time_case(client: &reqwest::Client, http: &str, case: &Case, repeats: usize) -> Timing {
    let url = format!("{http}/api/v1/oee?{}", case.query);
    let (first_ms, body) = timed_get(client, &url).await;
    let (bytes, oee) = check_answer(case, &body);
    let first_cache = cache_use(&body);
    let mut warm_ms = Vec::with_capacity(repeats);
    let mut warm_cache = (0, 0);
    for _ in 0..repeats {
        let (ms, again) = timed_get(client, &url).await;
        check_answer(case, &again);
        warm_cache = cache_use(&again);
        warm_ms.push(ms);
    }
    warm_ms.sort_by(f64::total_cmp);
    eprintln!(
        "  first {first_ms:.0} ms, warm median {:.0} ms; days from the cache / computed: first {first_cache:?}, warm \
         {warm_cache:?}",
        median(&warm_ms)
    );
    let cache = [first_cache, warm_cache];
    Timing { name: case.name.clone(), query: case.query.clone(), first_ms, warm_ms, bytes, oee, cache }
}

/// The answer's `cache`: machine-days read from the daily cache and machine-days computed.
fn cache_use(body: &str) -> (i64, i64) {
    let v: Value = serde_json::from_str(body).unwrap_or_default();
    let n = |k: &str| v.pointer(&format!("/cache/{k}")).and_then(Value::as_i64).unwrap_or(0);
    (n("days_read"), n("days_computed"))
}

/// One GET: the time until the whole body has arrived, and the body.
async fn timed_get(client: &reqwest::Client, url: &str) -> (f64, String) {
    let t = Instant::now();
    let r = client.get(url).send().await.unwrap_or_else(|e| panic!("GET {url}: {e}"));
    let status = r.status();
    let body = r.text().await.unwrap_or_else(|e| panic!("GET {url}: reading the body: {e}"));
    let ms = t.elapsed().as_secs_f64() * 1000.0;
    assert_eq!(status, 200, "GET {url} answered {status}: {body}");
    (ms, body)
}

/// Checks an answer against what the generator made: one bucket per day asked for, every machine's
/// whole window counted, and all of it covered by activities. Extra fields are ignored.
fn check_answer(case: &Case, body: &str) -> (usize, Option<f64>) {
    let v: Value = serde_json::from_str(body).unwrap_or_else(|e| panic!("{}: the answer is not JSON: {e}", case.name));
    let buckets = v.get("buckets").and_then(Value::as_array).map(Vec::len).unwrap_or(0);
    assert_eq!(buckets, case.buckets, "{}: buckets in the answer", case.name);
    let total = v.get("total").unwrap_or_else(|| panic!("{}: the answer has no `total`: {body:.300}", case.name));
    let (from, to) = case.window;
    if let Some(all_ms) = total.pointer("/sums/all_ms").and_then(Value::as_i64) {
        assert_eq!(all_ms, case.machines as i64 * (to - from).num_milliseconds(), "{}: total all_ms", case.name);
        if let Some(by_code) = total.pointer("/sums/by_code_ms").and_then(Value::as_object) {
            let covered: i64 = by_code.values().filter_map(Value::as_i64).sum();
            assert_eq!(covered, all_ms, "{}: time in activity codes (the history covers the window)", case.name);
        }
    }
    (body.len(), total.pointer("/figures/oee").and_then(Value::as_f64))
}

/// The engine without HTTP: reading every machine's inputs, then the daily sums.
struct EngineTiming {
    fetch_ms: Vec<f64>,
    compute_ms: Vec<f64>,
    activities: usize,
    jobs: usize,
    production: usize,
}

async fn time_engine(
    pool: &PgPool,
    machines: &[i32],
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    repeats: usize,
) -> EngineTiming {
    let now = Utc::now();
    let days: Vec<(DateTime<Utc>, DateTime<Utc>)> = {
        let mut out = Vec::new();
        let mut at = from;
        while at < to {
            let midnight = (at.date_naive() + TimeDelta::days(1)).and_hms_opt(0, 0, 0).expect("midnight").and_utc();
            let cut = midnight.min(to);
            out.push((at, cut));
            at = cut;
        }
        out
    };
    let mut timing =
        EngineTiming { fetch_ms: Vec::new(), compute_ms: Vec::new(), activities: 0, jobs: 0, production: 0 };
    for _ in 0..repeats {
        let t = Instant::now();
        let inputs = read_inputs(pool, machines, from, to).await;
        timing.fetch_ms.push(t.elapsed().as_secs_f64() * 1000.0);
        let t = Instant::now();
        let mut total = Sums::default();
        for i in &inputs {
            let history = History::new(i.activities.clone(), i.jobs.clone(), i.production.clone());
            for &(start, end) in &days {
                total.add(&history.sums(Window::new(start, end, now), EngineConfig::default()));
            }
        }
        timing.compute_ms.push(t.elapsed().as_secs_f64() * 1000.0);
        assert_eq!(total.all_ms, machines.len() as i64 * (to - from).num_milliseconds(), "engine: all_ms");
        timing.activities = inputs.iter().map(|i| i.activities.len()).sum();
        timing.jobs = inputs.iter().map(|i| i.jobs.len()).sum();
        timing.production = inputs.iter().map(|i| i.production.len()).sum();
    }
    timing.fetch_ms.sort_by(f64::total_cmp);
    timing.compute_ms.sort_by(f64::total_cmp);
    timing
}

/// Every machine's engine inputs for [from, to), read as the API reads them (each table once for all machines).
async fn read_inputs(
    pool: &PgPool,
    machines: &[i32],
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> Vec<report::EngineInputs> {
    let stretches: Vec<report::Stretch> =
        machines.iter().map(|&machine| report::Stretch { machine, start: from, end: to }).collect();
    let mut conn = pool.acquire().await.expect("a database connection");
    let mut by_machine = report::engine_inputs(&mut conn, &stretches).await.expect("read the engine's inputs");
    machines.iter().map(|m| by_machine.remove(m).unwrap_or_default()).collect()
}

/// Rows and on-disk size (table, indexes, TOAST) of the tables the history lives in.
async fn table_sizes(pool: &PgPool) -> Vec<(String, i64, i64)> {
    let mut out = Vec::new();
    for table in ["activity", "job", "production_quantity", "machine"] {
        let row: (i64, i64) = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT (SELECT count(*) FROM {table}), pg_total_relation_size('{table}')"
        )))
        .fetch_one(pool)
        .await
        .unwrap_or_else(|e| panic!("size of {table}: {e}"));
        out.push((table.to_string(), row.0, row.1));
    }
    let db: i64 = sqlx::query_scalar("SELECT pg_database_size(current_database())")
        .fetch_one(pool)
        .await
        .expect("size of the database");
    out.push(("whole database".to_string(), -1, db));
    out
}

// ---------------------------------------------------------------------------------------------------
// Results

struct Results {
    host: HostInfo,
    shape: Shape,
    dataset: Dataset,
    pg_version: String,
    sizes: Vec<(String, i64, i64)>,
    timings: Vec<Timing>,
    engine: EngineTiming,
    run_s: f64,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
}

fn mib(bytes: i64) -> String {
    format!("{:.0} MiB", bytes as f64 / 1024.0 / 1024.0)
}

fn opt_pct(v: Option<f64>) -> String {
    v.map(|v| format!("{:.1} %", v * 100.0)).unwrap_or_else(|| "–".into())
}

impl Results {
    fn text(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(
            s,
            "\n{} machines × {} days; generation {}; whole run {:.0} s",
            self.shape.size.machines,
            self.shape.size.days,
            self.dataset.generation_line(),
            self.run_s
        );
        for (table, rows, bytes) in &self.sizes {
            let _ = writeln!(
                s,
                "  {table:<20} {:>12} rows {:>10}",
                if *rows >= 0 { rows.to_string() } else { "".into() },
                mib(*bytes)
            );
        }
        let _ = writeln!(
            s,
            "\n{:<48} {:>10} {:>10} {:>10} {:>10} {:>10}",
            "request", "first ms", "median ms", "min ms", "max ms", "bytes"
        );
        for t in &self.timings {
            let _ = writeln!(
                s,
                "{:<48} {:>10.0} {:>10.0} {:>10.0} {:>10.0} {:>10}",
                t.name,
                t.first_ms,
                median(&t.warm_ms),
                t.warm_ms.first().copied().unwrap_or(f64::NAN),
                t.warm_ms.last().copied().unwrap_or(f64::NAN),
                t.bytes
            );
        }
        let e = &self.engine;
        let _ = writeln!(
            s,
            "engine alone: reading inputs median {:.0} ms, daily sums median {:.0} ms ({} activities, {} jobs, {} production records)",
            median(&e.fetch_ms),
            median(&e.compute_ms),
            e.activities,
            e.jobs,
            e.production
        );
        s
    }

    fn markdown(&self) -> String {
        let h = &self.host;
        let d = &self.dataset;
        let e = &self.engine;
        let mut s = String::new();
        let _ = writeln!(s, "{SECTION_START}");
        let _ = writeln!(s, "## OEE report over a year of history\n");
        let _ = writeln!(
            s,
            "Written by `benches/report.rs` from the numbers it measured; re-run it rather than editing this \
             section (`benches/load.rs` keeps it when it rewrites the file).\n"
        );
        let _ = writeln!(
            s,
            "- Command: `cargo bench --bench report`; the whole run took {:.0} s ({:.1} min)",
            self.run_s,
            self.run_s / 60.0
        );
        s.push_str(&h.report_lines());
        let _ = writeln!(
            s,
            "- Database: {}; the embedded private cluster on local disk, `shared_buffers = 512MB`",
            self.pg_version
        );
        let _ = writeln!(
            s,
            "- Set-up: the whole server (broker, ingest, bridge, web) in the bench's own process; requests over \
             HTTP on 127.0.0.1, one at a time; plant time zone UTC\n"
        );

        let _ = writeln!(s, "### Data\n");
        let _ = writeln!(
            s,
            "{} machines in one group, {} days of history ending {}. Each machine alternates about every 5 minutes \
             between a working activity (Up in shift, Closed outside it; about 8–10 minutes) and a stop (Down in \
             shift, Overtime outside it; 0–2 minutes), the shift being Monday to Friday 06:00–22:00; every \
             activity ends where the next starts and the last is open, as in `machine.current_code_id/current_since`. \
             Jobs run back to back, three a day, with ideal cycle times of 20–36.5 s; the last is running. One \
             production record per 15 minutes belongs to the job running then. Generated with set-based SQL \
             (`INSERT … SELECT … generate_series`, one statement per machine and table, foreign keys and indexes \
             in place), then `VACUUM ANALYZE` and `CHECKPOINT`.\n",
            d.machines,
            d.days,
            d.end.format("%Y-%m-%d %H:%M UTC")
        );
        let _ = writeln!(s, "- Generation: {}", self.dataset.generation_line());
        let _ = writeln!(s);
        let _ = writeln!(s, "| Table | Rows | Size (table, indexes, TOAST) |");
        let _ = writeln!(s, "|---|---:|---:|");
        for (table, rows, bytes) in &self.sizes {
            let rows = if *rows >= 0 { rows.to_string() } else { String::new() };
            let _ = writeln!(s, "| {table} | {rows} | {} |", mib(*bytes));
        }
        let _ = writeln!(s);

        let _ = writeln!(s, "### Timings\n");
        let _ = writeln!(
            s,
            "Window: {} to {} ({REPORT_DAYS} days). `GET /api/v1/oee?…` until the whole body has arrived. \
             First call: the first request after starting the server and its PostgreSQL afresh (empty shared \
             buffers; the operating system's file cache may still hold the data). Warm: {} repeats right after.\n",
            rfc3339(self.from),
            rfc3339(self.to),
            self.shape.repeats
        );
        let _ = writeln!(
            s,
            "| Request | Query | First call ms | Warm median ms | Warm min ms | Warm max ms | Days cached / computed, \
             first | warm | Answer bytes | OEE |"
        );
        let _ = writeln!(s, "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|");
        for t in &self.timings {
            let _ = writeln!(
                s,
                "| {} | `{}` | {:.0} | {:.0} | {:.0} | {:.0} | {} / {} | {} / {} | {} | {} |",
                t.name,
                t.query,
                t.first_ms,
                median(&t.warm_ms),
                t.warm_ms.first().copied().unwrap_or(f64::NAN),
                t.warm_ms.last().copied().unwrap_or(f64::NAN),
                t.cache[0].0,
                t.cache[0].1,
                t.cache[1].0,
                t.cache[1].1,
                t.bytes,
                opt_pct(t.oee)
            );
        }
        let _ = writeln!(s);
        let _ = writeln!(
            s,
            "Engine alone, the group's {REPORT_DAYS} days by day (warm, median of {}): reading the inputs with \
             `store::report::engine_inputs` for all machines at once {:.0} ms (min {:.0}, max {:.0}); the daily sums with \
             `oee::History::sums` {:.0} ms (min {:.0}, max {:.0}). Inputs: {} activities, {} jobs, {} production records.\n",
            self.shape.repeats,
            median(&e.fetch_ms),
            e.fetch_ms.first().copied().unwrap_or(f64::NAN),
            e.fetch_ms.last().copied().unwrap_or(f64::NAN),
            median(&e.compute_ms),
            e.compute_ms.first().copied().unwrap_or(f64::NAN),
            e.compute_ms.last().copied().unwrap_or(f64::NAN),
            e.activities,
            e.jobs,
            e.production
        );
        let _ = writeln!(
            s,
            "Every answer was checked: HTTP 200, one bucket per day touched when `by=day`, and `total.sums.all_ms` \
             equal to the window times the number of machines, all of it in activity codes."
        );
        let _ = writeln!(s, "{SECTION_END}");
        s
    }
}

// ---------------------------------------------------------------------------------------------------
// Machine description
