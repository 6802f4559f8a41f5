//! A bounded load generator: `cargo bench --bench load`.
//!
//! It starts the whole server in this process (broker, ingest, bridge, web) on an embedded PostgreSQL
//! cluster in a fresh temporary directory, drives four scenarios over loopback, prints a table and writes
//! `BENCHMARKS.md` from the measured numbers. Every loop is bounded in count and in time, so the run ends
//! by itself (about three minutes in release mode).
//!
//! Commit latencies of MQTT commands are measured inside PostgreSQL: `track_commit_timestamp` gives the
//! commit time of every row's writing transaction (`pg_xact_commit_timestamp(xmin)`), and each command
//! carries its publish time as `timestamp`, which ingest stores. Both clocks are this machine's clock.

#[path = "shared/flood.rs"]
mod flood;
#[path = "shared/host.rs"]
mod host;
#[path = "shared/server.rs"]
mod server;

use flood::{
    CODE_CLOSED, CODE_DOWN, DRAIN_MAX, DRAIN_STALL, Flood, Publishers, commit_metrics, ingest_counts, now_micros,
    wait_for_rows,
};
use host::HostInfo;
use std::fmt::Write as _;
use std::path::Path;
use std::time::Duration;

use chrono::{DateTime, Utc};
use hdrhistogram::Histogram;
use oee_core::Config;
use oee_server::{App, Services};
use sqlx::PgPool;
use tokio::sync::mpsc;
use tokio::time::Instant;

/// Machines created for the run; publishers and HTTP workers split them.
const MACHINES: usize = 100;
/// MQTT publisher connections; each owns a disjoint set of machines so per-machine order is kept.
const PUBLISHERS: usize = 4;
const STATE_MESSAGES: u64 = 200_000;
const TELEMETRY_MESSAGES: u64 = 500_000;
/// Publishing stops after this long even if the message count is not reached.
const PUBLISH_WINDOW: Duration = Duration::from_secs(20);
/// Offered load and length of the fixed-rate MQTT scenario.
const MQTT_RATE: u32 = 10_000;
const FIXED_RATE_WINDOW: Duration = Duration::from_secs(10);
/// Offered load of the fixed-rate HTTP scenario.
const HTTP_RATE: u32 = 2_000;
const HTTP_WINDOW: Duration = Duration::from_secs(10);
/// The fixed-rate dispatcher stops sending when it falls this far behind its schedule.
const HTTP_GIVE_UP: Duration = Duration::from_secs(5);
/// Concurrent closed-loop HTTP workers (each owns distinct machines, so at most MACHINES).
const HTTP_WORKERS: usize = 64;
/// Per-request bound, above the bridge's 5 s wait for ingest's verdict.
const HTTP_TIMEOUT: Duration = Duration::from_secs(15);
/// Safety net: whatever happens, the process ends after this long.
const WATCHDOG: Duration = Duration::from_secs(360);

/// Down ↔ Closed: neither needs a job, so every command is accepted.
fn other_code(code: i32) -> i32 {
    if code == CODE_DOWN { CODE_CLOSED } else { CODE_DOWN }
}

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    server::start_logging("warn");
    server::start_watchdog("load", WATCHDOG);

    let host = HostInfo::gather();
    let dir = server::fresh_dir("oee-bench");
    let config = bench_config(&dir);
    eprintln!("load bench: starting the server (embedded PostgreSQL under {})", dir.display());
    let app = tokio::time::timeout(Duration::from_secs(180), App::start(&config, Services::ALL))
        .await
        .expect("the server did not start within 180 s")
        .expect("start the server");
    let pool = app.db.pool.clone();
    let http = format!("http://{}", app.http_addr.expect("the server serves HTTP"));
    let mqtt_port = app.mqtt_addr.map(|a| a.port()).unwrap_or(config.mqtt.port);
    let pg_version: String =
        sqlx::query_scalar("SELECT version()").fetch_one(&pool).await.expect("ask PostgreSQL its version");

    let machines = add_machines(&pool).await;
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(512)
        .timeout(HTTP_TIMEOUT)
        .build()
        .expect("build the HTTP client");
    warm_up(&client, &http, machines[0]).await;

    let mut outcomes = Vec::new();
    eprintln!("scenario A: MQTT state changes");
    outcomes.push(mqtt_scenario(&app, &pool, mqtt_port, &machines, Flood::State, None).await);
    settle(&pool).await;
    eprintln!("scenario B: MQTT telemetry");
    outcomes.push(mqtt_scenario(&app, &pool, mqtt_port, &machines, Flood::Telemetry, None).await);
    settle(&pool).await;
    eprintln!("scenario C: HTTP state changes at {HTTP_RATE} req/s");
    outcomes.push(http_fixed_rate(&app, &client, &http, &pool, &machines).await);
    settle(&pool).await;
    eprintln!("scenario D: HTTP state changes, {HTTP_WORKERS} closed-loop workers");
    outcomes.push(http_closed_loop(&app, &client, &http, &pool, &machines).await);

    settle(&pool).await;
    eprintln!("scenario E: MQTT state changes at {MQTT_RATE}/s");
    outcomes.push(mqtt_scenario(&app, &pool, mqtt_port, &machines, Flood::State, Some(MQTT_RATE)).await);

    eprintln!("stopping the server");
    app.stop().await;
    let _ = std::fs::remove_dir_all(&dir);

    println!("{}", text_table(&outcomes));
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("BENCHMARKS.md");
    let md = keep_other_sections(
        markdown(&host, &pg_version, &outcomes),
        &std::fs::read_to_string(&path).unwrap_or_default(),
    );
    std::fs::write(&path, md).unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
    println!("wrote {}", path.display());
}

// ---------------------------------------------------------------------------------------------------
// Set-up

fn bench_config(dir: &Path) -> Config {
    let mut c = server::loopback_config(dir);
    // Commit timestamps are what the MQTT latencies are computed from. synchronous_commit stays at its
    // default (on): the numbers are for durable commits.
    c.database.embedded.settings.insert("track_commit_timestamp".into(), "on".into());
    c
}

async fn add_machines(pool: &PgPool) -> Vec<i32> {
    let mut ids = Vec::with_capacity(MACHINES);
    for i in 1..=MACHINES {
        let m = oee_core::store::machine::add_machine(pool, &format!("bench-{i:03}"), chrono_tz::Tz::UTC, Utc::now())
            .await
            .unwrap_or_else(|e| panic!("add machine bench-{i:03}: {e}"));
        ids.push(m.id);
    }
    ids
}

/// One HTTP state change end to end (bridge → broker → ingest → verdict), retried until it succeeds:
/// proves that ingest has subscribed before anything is published, as nothing published earlier would
/// reach it.
async fn warm_up(client: &reqwest::Client, http: &str, machine: i32) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let r = client
            .post(format!("{http}/api/machine-state-change"))
            .json(&serde_json::json!({"machine_id": machine, "activity_code_id": CODE_DOWN}))
            .send()
            .await;
        match r {
            Ok(r) if r.status() == 200 => return,
            Ok(r) => eprintln!("warm-up: HTTP {}; retrying", r.status()),
            Err(e) => eprintln!("warm-up: {e}; retrying"),
        }
        assert!(Instant::now() < deadline, "the server did not accept a state change within 60 s");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Between scenarios: vacuum and checkpoint, so that one scenario's dead rows and dirty buffers are not
/// cleaned up (by autovacuum or a checkpoint) during the next one and billed to it. Best effort.
async fn settle(pool: &PgPool) {
    let started = Instant::now();
    for sql in ["VACUUM ANALYZE activity, machine, command_log, telemetry", "CHECKPOINT"] {
        match tokio::time::timeout(Duration::from_secs(60), sqlx::raw_sql(sql).execute(pool)).await {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => eprintln!("  settling: {sql}: {e}"),
            Err(_) => eprintln!("  settling: {sql} took over 60 s; going on"),
        }
    }
    eprintln!("  settled (VACUUM ANALYZE, CHECKPOINT) in {:.1} s", started.elapsed().as_secs_f64());
}

// ---------------------------------------------------------------------------------------------------
// Results

/// One scenario's measured result.
struct Outcome {
    name: &'static str,
    /// Messages published or requests sent.
    sent: u64,
    /// Broker-acknowledged publishes, or HTTP 200 answers.
    accepted: u64,
    /// Publishes the broker never acknowledged, or non-200 answers and transport errors.
    failed: u64,
    rows: u64,
    /// Committed rows/s (MQTT) or answered requests/s (HTTP).
    rate: f64,
    rate_unit: &'static str,
    p50_ms: Option<f64>,
    p99_ms: Option<f64>,
    max_ms: Option<f64>,
    /// What the latencies are measured from and to.
    latency: &'static str,
    target: &'static str,
    met: bool,
    notes: Vec<String>,
}

fn ms(v: Option<f64>) -> String {
    v.map(|v| format!("{v:.1}")).unwrap_or_else(|| "–".into())
}

fn text_table(outcomes: &[Outcome]) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "\n{:<44} {:>9} {:>9} {:>7} {:>9} {:>12} {:>9} {:>9} {:>9}  target",
        "scenario", "sent", "accepted", "failed", "rows", "rate", "p50 ms", "p99 ms", "max ms"
    );
    for o in outcomes {
        let _ = writeln!(
            s,
            "{:<44} {:>9} {:>9} {:>7} {:>9} {:>12} {:>9} {:>9} {:>9}  {} ({})",
            o.name,
            o.sent,
            o.accepted,
            o.failed,
            o.rows,
            format!("{:.0} {}", o.rate, o.rate_unit),
            ms(o.p50_ms),
            ms(o.p99_ms),
            ms(o.max_ms),
            o.target,
            if o.met { "met" } else { "NOT met" }
        );
        for n in &o.notes {
            let _ = writeln!(s, "    {n}");
        }
    }
    s
}

// ---------------------------------------------------------------------------------------------------
// Scenarios A and B: MQTT floods

async fn mqtt_scenario(
    app: &App,
    pool: &PgPool,
    port: u16,
    machines: &[i32],
    kind: Flood,
    offered: Option<u32>,
) -> Outcome {
    let since = now_micros();
    let before = ingest_counts(app);
    let total = match (kind, offered) {
        (_, Some(r)) => u64::from(r) * FIXED_RATE_WINDOW.as_secs(),
        (Flood::State, None) => STATE_MESSAGES,
        (Flood::Telemetry, None) => TELEMETRY_MESSAGES,
    };
    let publishers = Publishers { connections: PUBLISHERS, window: PUBLISH_WINDOW };
    let flood = flood::flood(port, machines, kind, total, offered, publishers).await;
    eprintln!(
        "  published {} ({} acknowledged by the broker) in {:.1} s; waiting for the rows",
        flood.sent, flood.acked, flood.publish_secs
    );
    // One accepted state command inserts one activity row; one telemetry message inserts one row.
    let count_sql = match kind {
        Flood::State => "SELECT count(*) FROM activity WHERE start_time >= $1",
        // One reading per message is counted: each message carries a temperature.
        Flood::Telemetry => "SELECT count(*) FROM telemetry WHERE ts >= $1 AND key = 'temperature'",
    };
    let (rows, drained) = wait_for_rows(pool, count_sql, since, flood.acked).await;
    let after = ingest_counts(app);
    let metrics = match commit_metrics(pool, kind, since).await {
        Ok(m) => m,
        Err(e) => {
            eprintln!("  cannot compute commit latencies: {e}");
            flood::CommitMetrics::default()
        }
    };

    // Throughput is end to end: from the first publish to the commit of the last row.
    let span = match (flood.first_publish, metrics.last_commit) {
        (Some(first), Some(last)) => (last - first).num_microseconds().unwrap_or(0) as f64 / 1e6,
        _ => 0.0,
    };
    let rate = if span > 0.0 { rows as f64 / span } else { 0.0 };
    let mut notes = vec![format!(
        "{PUBLISHERS} publishers (QoS 1), {} messages or {} s; published in {:.1} s ({:.0} msg/s offered); \
         first publish → last commit {:.1} s",
        total,
        PUBLISH_WINDOW.as_secs(),
        flood.publish_secs,
        if flood.publish_secs > 0.0 { flood.sent as f64 / flood.publish_secs } else { 0.0 },
        span
    )];
    notes.push(before.delta_note(after));
    // Ingest counts every message it is handed, so a shortfall was lost between broker and ingest.
    let never_delivered = flood.acked.saturating_sub(after.received - before.received);
    if never_delivered > 0 {
        notes.push(format!(
            "{never_delivered} messages acknowledged by the broker (QoS 1) never reached ingest: the broker dropped \
             them (rumqttd logs `Read cursor start jumped`, i.e. its per-filter commit log overflowed)"
        ));
    }
    if flood.connection_errors > 0 {
        notes.push(format!("publisher connection errors: {}", flood.connection_errors));
    }
    if !drained {
        notes.push(format!(
            "only {rows} of {} acknowledged messages became rows before the wait ended \
             ({} s at most, or {} s without progress)",
            flood.acked,
            DRAIN_MAX.as_secs(),
            DRAIN_STALL.as_secs()
        ));
    }
    if kind == Flood::Telemetry && rows == 0 {
        notes.push("0 rows committed: ingest does not store telemetry (yet) — re-run when it does".into());
    }
    let (name, target, latency, met) = match (kind, offered) {
        (Flood::State, Some(_)) => (
            "E  MQTT state changes, 10,000/s (fixed rate)",
            "p99 < 250 ms publish → commit",
            "publish → commit (per command, from commit timestamps)",
            metrics.p99_ms.is_some_and(|p| p < 250.0),
        ),
        (Flood::State, None) => (
            "A  MQTT state changes (flood)",
            "≥ 20,000 state changes/s committed, p99 < 250 ms",
            "publish → commit (per command, from commit timestamps)",
            rate >= 20_000.0 && metrics.p99_ms.is_some_and(|p| p < 250.0),
        ),
        (Flood::Telemetry, _) => (
            "B  MQTT telemetry (flood)",
            "≥ 100,000 telemetry msg/s committed",
            "publish → commit (per row, from commit timestamps)",
            rate >= 100_000.0,
        ),
    };
    Outcome {
        name,
        sent: flood.sent,
        accepted: flood.acked,
        failed: flood.sent - flood.acked.min(flood.sent),
        rows,
        rate,
        rate_unit: "rows/s",
        p50_ms: metrics.p50_ms,
        p99_ms: metrics.p99_ms,
        max_ms: metrics.max_ms,
        latency,
        target,
        met: met && drained,
        notes,
    }
}

// ---------------------------------------------------------------------------------------------------
// Scenarios C and D: HTTP

fn latency_histogram() -> Histogram<u64> {
    // Microseconds, 1 µs to 2 min, 3 significant digits.
    Histogram::new_with_bounds(1, 120_000_000, 3).expect("histogram bounds")
}

fn quantile_ms(h: &Histogram<u64>, q: f64) -> Option<f64> {
    (!h.is_empty()).then(|| h.value_at_quantile(q) as f64 / 1000.0)
}

/// Sends one state change; the answer's status, or the transport error.
async fn post_state(client: &reqwest::Client, url: &str, machine: i32, code: i32) -> Result<u16, String> {
    let r = client
        .post(url)
        .json(&serde_json::json!({"machine_id": machine, "activity_code_id": code}))
        .send()
        .await
        .map_err(|e| e.to_string())?;
    let status = r.status().as_u16();
    // Read the body so the connection goes back to the pool.
    r.bytes().await.map_err(|e| e.to_string())?;
    Ok(status)
}

/// What the HTTP answers were.
#[derive(Default)]
struct Answers {
    ok: u64,
    other: std::collections::BTreeMap<String, u64>,
}

impl Answers {
    fn add(&mut self, r: Result<u16, String>) {
        match r {
            Ok(200) => self.ok += 1,
            Ok(s) => *self.other.entry(format!("HTTP {s}")).or_default() += 1,
            Err(e) => *self.other.entry(e).or_default() += 1,
        }
    }

    fn failed(&self) -> u64 {
        self.other.values().sum()
    }

    fn note(&self) -> Option<String> {
        (!self.other.is_empty()).then(|| {
            let parts: Vec<String> = self.other.iter().map(|(k, n)| format!("{n}× {k}")).collect();
            format!("non-200 answers: {}", parts.join(", "))
        })
    }
}

async fn activity_rows_since(pool: &PgPool, since: DateTime<Utc>) -> u64 {
    let n: i64 = sqlx::query_scalar("SELECT count(*) FROM activity WHERE start_time >= $1")
        .bind(since)
        .fetch_one(pool)
        .await
        .expect("count activity rows");
    n.max(0) as u64
}

/// Open loop at [`HTTP_RATE`]: request `i` is due at `start + i / rate` whether or not earlier ones have
/// been answered, and its latency counts from when it was due, so a stalled server shows as latency
/// rather than as fewer, slower requests (coordinated omission). A machine has one request in flight
/// at a time, so its changes stay in order: requests take the next free machine from a pool, which
/// bounds the concurrency at the number of machines.
async fn http_fixed_rate(app: &App, client: &reqwest::Client, http: &str, pool: &PgPool, machines: &[i32]) -> Outcome {
    let url = format!("{http}/api/machine-state-change");
    let total = u64::from(HTTP_RATE) * HTTP_WINDOW.as_secs();
    let interval = Duration::from_secs(1) / HTTP_RATE;
    let since = now_micros();
    let before = ingest_counts(app);

    let (free_tx, mut free_rx) = mpsc::channel::<(i32, i32)>(machines.len());
    for &m in machines {
        free_tx.try_send((m, CODE_CLOSED)).expect("the machine pool holds every machine");
    }
    // (second of the schedule the request was due in, latency, answer)
    let (result_tx, mut result_rx) = mpsc::unbounded_channel::<(usize, Duration, Result<u16, String>)>();
    let collector = tokio::spawn(async move {
        let mut hist = latency_histogram();
        let mut answers = Answers::default();
        let mut last = None;
        // The worst latency of each second of the schedule shows whether slow answers are spread out or
        // come from one stall.
        let mut worst_per_second = vec![Duration::ZERO; HTTP_WINDOW.as_secs() as usize];
        while let Some((second, latency, r)) = result_rx.recv().await {
            hist.saturating_record(latency.as_micros() as u64);
            answers.add(r);
            last = Some(Instant::now());
            if let Some(w) = worst_per_second.get_mut(second) {
                *w = (*w).max(latency);
            }
        }
        (hist, answers, last, worst_per_second)
    });

    let start = Instant::now() + Duration::from_millis(50);
    let give_up = start + HTTP_WINDOW + HTTP_GIVE_UP;
    let mut sent = 0u64;
    for i in 0..total {
        let due = start + interval * i as u32;
        // Sleep only when ahead of the schedule: tokio's timer has millisecond ticks, so even a sleep until
        // a time already past waits for the next tick, which would cap the dispatcher below 2,000 req/s.
        // When behind, everything due goes out at once.
        if due > Instant::now() {
            tokio::time::sleep_until(due).await;
        }
        let Ok(Some((machine, code))) = tokio::time::timeout_at(give_up, free_rx.recv()).await else {
            break;
        };
        let (client, url, result_tx, free_tx) = (client.clone(), url.clone(), result_tx.clone(), free_tx.clone());
        tokio::spawn(async move {
            let r = post_state(&client, &url, machine, code).await;
            let _ = result_tx.send(((due - start).as_secs() as usize, due.elapsed(), r));
            let _ = free_tx.send((machine, other_code(code))).await;
        });
        sent += 1;
    }
    drop(result_tx);
    drop(free_tx);
    // Each request is bounded by the client's timeout, so the collector ends soon after the last one.
    let (hist, answers, last, worst_per_second) =
        tokio::time::timeout(HTTP_TIMEOUT + Duration::from_secs(5), collector)
            .await
            .expect("HTTP requests still unanswered after the client timeout")
            .expect("the collector task panicked");
    let span = last.map(|l| (l - start).as_secs_f64()).unwrap_or(0.0);
    let rate = if span > 0.0 { answers.ok as f64 / span } else { 0.0 };
    let rows = activity_rows_since(pool, since).await;
    let p99 = quantile_ms(&hist, 0.99);
    let mut notes = vec![format!(
        "offered {HTTP_RATE} req/s for {} s ({total} requests scheduled, {sent} sent); \
         at most one request in flight per machine ({} machines)",
        HTTP_WINDOW.as_secs(),
        machines.len()
    )];
    let worst: Vec<String> = worst_per_second.iter().map(|d| format!("{:.0}", d.as_secs_f64() * 1000.0)).collect();
    notes.push(format!("worst latency in each second of the schedule, ms: {}", worst.join(", ")));
    if sent < total {
        notes.push(format!(
            "the dispatcher fell more than {} s behind its schedule and sent only {sent} of {total}",
            HTTP_GIVE_UP.as_secs()
        ));
    }
    notes.push(before.delta_note(ingest_counts(app)));
    notes.extend(answers.note());
    Outcome {
        name: "C  HTTP state changes, 2,000 req/s (open loop)",
        sent,
        accepted: answers.ok,
        failed: answers.failed() + (sent - (answers.ok + answers.failed()).min(sent)),
        rows,
        rate,
        rate_unit: "req/s",
        p50_ms: quantile_ms(&hist, 0.5),
        p99_ms: p99,
        max_ms: (!hist.is_empty()).then(|| hist.max() as f64 / 1000.0),
        latency: "scheduled send → HTTP 200 (change committed)",
        target: "p99 < 20 ms at 2,000 req/s",
        met: sent == total
            && answers.failed() == 0
            && rate >= 0.95 * f64::from(HTTP_RATE)
            && p99.is_some_and(|p| p < 20.0),
        notes,
    }
}

/// Closed loop: [`HTTP_WORKERS`] workers, each owning distinct machines, send as fast as answers come.
async fn http_closed_loop(app: &App, client: &reqwest::Client, http: &str, pool: &PgPool, machines: &[i32]) -> Outcome {
    let url = format!("{http}/api/machine-state-change");
    let workers = HTTP_WORKERS.min(machines.len());
    let since = now_micros();
    let before = ingest_counts(app);
    let start = Instant::now();
    let deadline = start + HTTP_WINDOW;
    let mut tasks = tokio::task::JoinSet::new();
    for w in 0..workers {
        let mine: Vec<i32> = machines.iter().copied().skip(w).step_by(workers).collect();
        let (client, url) = (client.clone(), url.clone());
        tasks.spawn(async move {
            let mut hist = latency_histogram();
            let mut answers = Answers::default();
            let mut codes = vec![CODE_DOWN; mine.len()];
            let mut j = 0usize;
            while Instant::now() < deadline {
                let slot = j % mine.len();
                let t0 = Instant::now();
                let r = post_state(&client, &url, mine[slot], codes[slot]).await;
                hist.saturating_record(t0.elapsed().as_micros() as u64);
                answers.add(r);
                codes[slot] = other_code(codes[slot]);
                j += 1;
            }
            (hist, answers)
        });
    }
    let mut hist = latency_histogram();
    let mut answers = Answers::default();
    while let Some(r) = tasks.join_next().await {
        let (h, a) = r.expect("an HTTP worker panicked");
        hist.add(&h).expect("histograms with the same bounds");
        answers.ok += a.ok;
        for (k, n) in a.other {
            *answers.other.entry(k).or_default() += n;
        }
    }
    let elapsed = start.elapsed().as_secs_f64();
    let sent = answers.ok + answers.failed();
    let rate = answers.ok as f64 / elapsed;
    let rows = activity_rows_since(pool, since).await;
    let mut notes = vec![format!(
        "{workers} workers for {} s over {} machines; latency = request → answer",
        HTTP_WINDOW.as_secs(),
        machines.len()
    )];
    notes.push(before.delta_note(ingest_counts(app)));
    notes.extend(answers.note());
    Outcome {
        name: "D  HTTP state changes, max throughput",
        sent,
        accepted: answers.ok,
        failed: answers.failed(),
        rows,
        rate,
        rate_unit: "req/s",
        p50_ms: quantile_ms(&hist, 0.5),
        p99_ms: quantile_ms(&hist, 0.99),
        max_ms: (!hist.is_empty()).then(|| hist.max() as f64 / 1000.0),
        latency: "request sent → HTTP 200 (change committed)",
        target: "≥ 8,000 durable state changes/s",
        met: rate >= 8_000.0 && answers.failed() == 0,
        notes,
    }
}

// ---------------------------------------------------------------------------------------------------
// The report

/// Every marked section (`<!-- NAME:start -->` … `<!-- NAME:end -->`) of `old`, in order, markers included:
/// the other benches' own sections of BENCHMARKS.md.
fn marked_sections(old: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut rest = old;
    while let Some(a) = rest.find("<!-- ") {
        let Some(name_end) = rest[a..].find(":start -->") else { break };
        let name = &rest[a + 5..a + name_end];
        let end = format!("<!-- {name}:end -->");
        let Some(b) = rest[a..].find(&end) else { break };
        out.push(&rest[a..a + b + end.len()]);
        rest = &rest[a + b + end.len()..];
    }
    out
}

/// The load figures, followed by the other benches' sections of the old file as they were.
fn keep_other_sections(md: String, old: &str) -> String {
    let mut out = md.trim_end().to_string();
    for section in marked_sections(old) {
        out.push_str("\n\n");
        out.push_str(section);
    }
    out.push('\n');
    out
}

fn markdown(host: &HostInfo, pg_version: &str, outcomes: &[Outcome]) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "# Benchmarks\n");
    let _ = writeln!(
        s,
        "Written by `benches/load.rs` from the numbers it measured; re-run it rather than editing this file.\n"
    );
    let _ = writeln!(s, "- Command: `cargo bench --bench load`");
    s.push_str(&host.report_lines());
    let _ = writeln!(
        s,
        "- Database: {pg_version}; the embedded private cluster on local disk, `synchronous_commit = on` \
         (durable commits), `shared_buffers = 512MB`, `track_commit_timestamp = on`"
    );
    let _ = writeln!(
        s,
        "- Set-up: the whole server (broker, ingest, bridge, web) in the bench's own process and tokio runtime; \
         all traffic on 127.0.0.1; the load generator shares the same CPUs"
    );
    let _ = writeln!(
        s,
        "- Data: {MACHINES} machines; A: up to {STATE_MESSAGES} state messages, B: up to {TELEMETRY_MESSAGES} \
         telemetry messages (each within {} s); C: {HTTP_RATE} req/s for {} s; D: {HTTP_WORKERS} workers for {} s\n",
        PUBLISH_WINDOW.as_secs(),
        HTTP_WINDOW.as_secs(),
        HTTP_WINDOW.as_secs()
    );

    let _ = writeln!(s, "## Results\n");
    let _ = writeln!(
        s,
        "| Scenario | Sent | Accepted | Failed | Rows committed | Throughput | p50 ms | p99 ms | max ms | Target | Met |"
    );
    let _ = writeln!(s, "|---|---:|---:|---:|---:|---:|---:|---:|---:|---|---|");
    for o in outcomes {
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} | {} | {:.0} {} | {} | {} | {} | {} | {} |",
            o.name,
            o.sent,
            o.accepted,
            o.failed,
            o.rows,
            o.rate,
            o.rate_unit,
            ms(o.p50_ms),
            ms(o.p99_ms),
            ms(o.max_ms),
            o.target,
            if o.met { "yes" } else { "**no**" }
        );
    }
    let _ = writeln!(s);
    let _ = writeln!(
        s,
        "Sent: messages published or requests sent. Accepted: publishes the broker acknowledged (QoS 1), or \
         HTTP 200 answers. Rows committed: rows the scenario added (`activity` for state changes, `telemetry` \
         for telemetry). MQTT throughput is committed rows divided by the time from the first publish to the \
         commit of the last row; HTTP throughput is HTTP 200 answers per second.\n"
    );

    let _ = writeln!(s, "## Scenarios\n");
    for o in outcomes {
        let _ = writeln!(s, "### {}\n", o.name);
        let _ = writeln!(s, "- Latency: {}", o.latency);
        for n in &o.notes {
            let _ = writeln!(s, "- {n}");
        }
        let _ = writeln!(s);
    }
    let _ = writeln!(
        s,
        "MQTT latencies (A, B) come from PostgreSQL: `pg_xact_commit_timestamp(xmin)` minus the publish time \
         the message carried as `timestamp`. For state changes the sample of a command is the activity row it \
         closed (`end_time` = the command's time, `xmin` = its transaction), because the row a command \
         inserts is rewritten by the next command. The publishers flood as fast as the broker acknowledges, \
         so A and B latencies include queueing behind the backlog. HTTP latencies (C, D) are measured by the \
         client; in C from the time each request was due in the open-loop schedule. Before B, C and D the bench \
         runs `VACUUM ANALYZE` and `CHECKPOINT`, so a scenario does not pay for the previous one's clean-up.\n"
    );
    // The analysis is written by people after profiling, so it lives beside the bench and is carried over.
    let _ = writeln!(s, "## What bounds it\n");
    let analysis = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/benches/what-bounds-it.md"))
        .unwrap_or_else(|_| "Not analysed yet: profile, then write benches/what-bounds-it.md.\n".to_string());
    let _ = write!(s, "{analysis}");
    s
}
