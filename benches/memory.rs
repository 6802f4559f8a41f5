//! A bounded measurement of the server's memory under MQTT load: `cargo bench --bench memory`.
//!
//! It runs the real `oee-server serve` binary as a child process, so that the resident memory measured
//! (`VmRSS` of `/proc/<pid>/status`) is the server's alone, not the load generator's; the server runs its
//! embedded PostgreSQL (a process of its own, not counted) in a fresh temporary directory, and everything
//! listens on 127.0.0.1. The bench records the server's RSS
//!
//! 1. idle, once it has started and the machines and devices exist;
//! 2. at its highest during a load: DEVICES devices, each with its own credentials, publish MESSAGES state
//!    changes (QoS 1) and READINGS plant readings (QoS 0), while SUBSCRIBERS anonymous clients each watch
//!    one machine's status and one plant area;
//! 3. right after every client has disconnected, and SETTLE (30 s) later;
//!
//! and then runs the same load a second time, to tell memory that stays bounded from memory that grows.
//! It prints a table and writes its own section of `BENCHMARKS.md`.
//!
//! Environment: `OEE_BENCH_QUICK=1` runs a tenth of the load with short pauses to check the bench itself,
//! and leaves `BENCHMARKS.md` alone.
//!
//! Every wait is bounded and a watchdog ends the process if a run goes on far longer than expected.

#[path = "shared/host.rs"]
mod host;
#[path = "shared/sections.rs"]
mod sections;
#[path = "shared/server.rs"]
mod server;

use host::HostInfo;
use std::fmt::Write as _;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use chrono::Utc;
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use sqlx::PgPool;
use tokio::process::{Child, Command};
use tokio::time::Instant;

const SECTION_START: &str = "<!-- memory:start -->";
const SECTION_END: &str = "<!-- memory:end -->";

/// Devices, each with one machine of its own and its own MQTT credentials.
const DEVICES: usize = 200;
/// State changes each device publishes in one load round (QoS 1).
const MESSAGES: u64 = 250;
/// Plant readings each device publishes in one load round (QoS 0), to `plant/area-{k}/{device}/temp`.
const READINGS: u64 = 50;
/// Anonymous subscribers, each on one machine's status and one area's readings.
const SUBSCRIBERS: usize = 1_000;
/// Plant areas the devices and subscribers are spread over.
const AREAS: usize = 10;
/// Bytes of each reading's payload.
const READING_BYTES: usize = 200;
/// How long after the load the last figure is taken.
const SETTLE: Duration = Duration::from_secs(30);
/// The server is left alone this long after start before its idle figure.
const IDLE: Duration = Duration::from_secs(10);
/// A load round gives up waiting for ingest after this long...
const ROUND_MAX: Duration = Duration::from_secs(120);
/// ...or after this long without a new committed row.
const STALL: Duration = Duration::from_secs(10);
/// Whatever happens, the process ends after this long.
const WATCHDOG: Duration = Duration::from_secs(900);
/// How often RSS is read during a load.
const SAMPLE_EVERY: Duration = Duration::from_millis(200);

const CODE_DOWN: i32 = 2;
const CODE_CLOSED: i32 = 3;

/// The size of a run: full, or a tenth to check the bench.
#[derive(Clone, Copy)]
struct Shape {
    quick: bool,
    devices: usize,
    messages: u64,
    readings: u64,
    subscribers: usize,
    settle: Duration,
    idle: Duration,
}

impl Shape {
    fn from_env() -> Shape {
        let quick = std::env::var("OEE_BENCH_QUICK").is_ok_and(|v| v == "1");
        if quick {
            Shape {
                quick,
                devices: DEVICES / 10,
                messages: MESSAGES / 10,
                readings: READINGS / 10,
                subscribers: SUBSCRIBERS / 10,
                settle: Duration::from_secs(3),
                idle: Duration::from_secs(2),
            }
        } else {
            Shape {
                quick,
                devices: DEVICES,
                messages: MESSAGES,
                readings: READINGS,
                subscribers: SUBSCRIBERS,
                settle: SETTLE,
                idle: IDLE,
            }
        }
    }
}

/// The server's resident memory at one moment of the run.
struct Figure {
    when: String,
    rss_kib: u64,
    anon_kib: u64,
}

/// What one load round did.
struct Round {
    published: u64,
    delivered: u64,
    committed: u64,
    expected: u64,
    seconds: f64,
    peak_kib: u64,
    /// RSS once every subscriber was connected and subscribed, before the devices came.
    subscribed: (u64, u64),
}

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    server::start_logging("warn");
    server::start_watchdog("memory", WATCHDOG);
    let shape = Shape::from_env();
    let host = HostInfo::gather();
    let dir = server::fresh_dir("oee-bench-memory");
    let http_port = server::free_port();
    let mqtt_port = server::free_port();
    let log_path = dir.join("server.log");
    eprintln!("memory bench: starting oee-server (embedded PostgreSQL under {})", dir.display());
    let mut child = spawn_server(&dir, http_port, mqtt_port, &log_path);
    let pid = child.id().expect("the server's process id");
    wait_for_health(&mut child, http_port, &log_path).await;

    let mut config = server::loopback_config(&dir);
    config.database.max_connections = 4;
    let db = oee_core::store::Database::open_for_command(&config).await.expect("open the server's database");
    let pool = db.pool.clone();
    let devices = add_devices(&pool, shape.devices).await;
    let machines: Vec<i32> = devices.iter().map(|d| d.machine).collect();

    let mut figures = Vec::new();
    tokio::time::sleep(shape.idle).await;
    figures.push(figure(pid, "idle, after start"));
    let mut rounds = Vec::new();
    for n in 1..=2 {
        eprintln!("round {n}: {} devices, {} subscribers", shape.devices, shape.subscribers);
        let round = load_round(&shape, pid, &pool, mqtt_port, &devices, &machines, n).await;
        figures.push(Figure {
            when: format!("round {n}: {} subscribers connected, before the devices", shape.subscribers),
            rss_kib: round.subscribed.0,
            anon_kib: round.subscribed.1,
        });
        figures.push(Figure {
            when: format!("round {n}: highest during the load"),
            rss_kib: round.peak_kib,
            anon_kib: 0,
        });
        figures.push(figure(pid, &format!("round {n}: every client gone")));
        tokio::time::sleep(shape.settle).await;
        figures.push(figure(pid, &format!("round {n}: {} s later", shape.settle.as_secs())));
        rounds.push(round);
    }

    eprintln!("stopping the server");
    db.pool.close().await;
    stop_server(&mut child).await;
    let _ = std::fs::remove_dir_all(&dir);

    let text = text_table(&figures, &rounds);
    println!("{text}");
    if shape.quick {
        println!("quick run: BENCHMARKS.md left unchanged");
        return;
    }
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("BENCHMARKS.md");
    let old = std::fs::read_to_string(&path).unwrap_or_default();
    let section = markdown(&host, &shape, &figures, &rounds);
    std::fs::write(&path, sections::replace_section(&old, SECTION_START, SECTION_END, &section))
        .unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
    println!("wrote the memory section of {}", path.display());
}

// ---------------------------------------------------------------------------------------------------
// The server process

fn spawn_server(dir: &Path, http: u16, mqtt: u16, log: &Path) -> Child {
    let out = std::fs::File::create(log).unwrap_or_else(|e| panic!("cannot create {}: {e}", log.display()));
    let err = out.try_clone().expect("clone the log file handle");
    Command::new(env!("CARGO_BIN_EXE_oee-server"))
        .arg("serve")
        // The bench's own switch is no key of the server's configuration.
        .env_remove("OEE_BENCH_QUICK")
        .env("OEE_DATA_DIR", dir.join("data"))
        .env("OEE_PLANT__TIMEZONE", "UTC")
        .env("OEE_HTTP__LISTEN", format!("127.0.0.1:{http}"))
        .env("OEE_BROKER__LISTEN", format!("127.0.0.1:{mqtt}"))
        .env("OEE_MQTT__PORT", mqtt.to_string())
        .env("OEE_TABLETS__DISCOVERY_LISTEN", "127.0.0.1:0")
        // The subscribers connect without credentials; the devices use their own.
        .env("OEE_BROKER__ALLOW_ANONYMOUS", "true")
        .stdout(std::process::Stdio::from(out))
        .stderr(std::process::Stdio::from(err))
        .kill_on_drop(true)
        .spawn()
        .expect("start oee-server")
}

async fn wait_for_health(child: &mut Child, http: u16, log: &Path) {
    let url = format!("http://127.0.0.1:{http}/health");
    let client = reqwest::Client::new();
    let started = Instant::now();
    loop {
        if client.get(&url).send().await.is_ok_and(|r| r.status() == 200) {
            return;
        }
        if let Ok(Some(status)) = child.try_wait() {
            panic!(
                "oee-server exited during start-up ({status}):\n{}",
                std::fs::read_to_string(log).unwrap_or_default()
            );
        }
        assert!(started.elapsed() < Duration::from_secs(180), "oee-server did not answer /health within 180 s");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Stops the server as systemd would (SIGTERM) and waits for it; kills it after 60 s.
async fn stop_server(child: &mut Child) {
    if let Some(pid) = child.id() {
        let _ = Command::new("kill").args(["-TERM", &pid.to_string()]).status().await;
    }
    if tokio::time::timeout(Duration::from_secs(60), child.wait()).await.is_err() {
        let _ = child.kill().await;
    }
}

/// The server's resident memory now.
fn figure(pid: u32, when: &str) -> Figure {
    let (rss_kib, anon_kib) = rss(pid);
    Figure { when: when.to_string(), rss_kib, anon_kib }
}

/// `VmRSS` and `RssAnon` of the process, in KiB.
fn rss(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|kb| kb.parse::<u64>().ok())
            .unwrap_or(0)
    };
    (field("VmRSS:"), field("RssAnon:"))
}

// ---------------------------------------------------------------------------------------------------
// The load

/// A device of the run: its name, password and machine.
struct Device {
    name: String,
    password: String,
    machine: i32,
}

async fn add_devices(pool: &PgPool, count: usize) -> Vec<Device> {
    let mut out = Vec::with_capacity(count);
    for i in 0..count {
        let m = oee_core::store::machine::add_machine(pool, &format!("mem-{i:03}"), chrono_tz::Tz::UTC, Utc::now())
            .await
            .expect("add a machine")
            .id;
        let d = oee_core::store::device::add(pool, &format!("dev-{i:03}"), &[m]).await.expect("add a device");
        out.push(Device { name: d.name, password: d.mqtt_password, machine: m });
    }
    out
}

async fn activity_rows(pool: &PgPool, machines: &[i32]) -> u64 {
    let n: i64 = sqlx::query_scalar("SELECT count(*) FROM activity WHERE machine_id = ANY($1)")
        .bind(machines)
        .fetch_one(pool)
        .await
        .unwrap_or(0);
    n as u64
}

/// One load round: subscribers first, then every device publishes its messages and disconnects; the round
/// ends when ingest has committed every state change (or has committed nothing new for [`STALL`], or after
/// [`ROUND_MAX`]) and every subscriber has disconnected. The server's RSS is sampled meanwhile.
async fn load_round(
    shape: &Shape,
    server_pid: u32,
    pool: &PgPool,
    port: u16,
    devices: &[Device],
    machines: &[i32],
    round: usize,
) -> Round {
    let started = Instant::now();
    let rows_before = activity_rows(pool, machines).await;
    let peak = Arc::new(AtomicU64::new(0));
    let sampling = Arc::new(AtomicBool::new(true));
    let sampler = {
        let (peak, sampling) = (peak.clone(), sampling.clone());
        tokio::spawn(async move {
            while sampling.load(Ordering::Relaxed) {
                peak.fetch_max(rss(server_pid).0, Ordering::Relaxed);
                tokio::time::sleep(SAMPLE_EVERY).await;
            }
        })
    };

    let delivered = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let mut connecting = Vec::with_capacity(shape.subscribers);
    for i in 0..shape.subscribers {
        let filters = vec![
            format!("oee/v1/machines/{}/status", machines[i % machines.len()]),
            format!("plant/area-{}/#", i % AREAS),
        ];
        let id = format!("watch-{round}-{i}");
        connecting.push(tokio::spawn(subscriber(port, id, filters, delivered.clone(), stop.clone())));
    }
    let mut subscribers = Vec::with_capacity(connecting.len());
    for c in connecting {
        subscribers.push(c.await.expect("a subscriber"));
    }
    let subscribed = rss(server_pid);

    let published = Arc::new(AtomicU64::new(0));
    let mut publishers = Vec::with_capacity(devices.len());
    for (i, d) in devices.iter().enumerate() {
        let (name, password) = (d.name.clone(), d.password.clone());
        let area = i % AREAS;
        publishers.push(tokio::spawn(device(port, name, password, d.machine, area, *shape, published.clone())));
    }
    for p in publishers {
        p.await.expect("a device");
    }
    let expected = shape.devices as u64 * shape.messages;
    let mut committed = activity_rows(pool, machines).await - rows_before;
    let mut last_progress = Instant::now();
    while committed < expected && started.elapsed() < ROUND_MAX && last_progress.elapsed() < STALL {
        tokio::time::sleep(Duration::from_millis(250)).await;
        let now = activity_rows(pool, machines).await - rows_before;
        if now > committed {
            last_progress = Instant::now();
        }
        committed = now;
    }
    stop.store(true, Ordering::Relaxed);
    for s in subscribers {
        let _ = s.await;
    }
    sampling.store(false, Ordering::Relaxed);
    let _ = sampler.await;
    Round {
        published: published.load(Ordering::Relaxed),
        delivered: delivered.load(Ordering::Relaxed),
        committed,
        expected,
        seconds: started.elapsed().as_secs_f64(),
        peak_kib: peak.load(Ordering::Relaxed),
        subscribed,
    }
}

/// Connects an anonymous subscriber to `filters` and returns, once they are granted, the task that reads
/// (counting what arrives in `delivered`) until `stop` is set, then disconnects.
async fn subscriber(
    port: u16,
    id: String,
    filters: Vec<String>,
    delivered: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
) -> tokio::task::JoinHandle<()> {
    let mut o = MqttOptions::new(id.clone(), "127.0.0.1", port);
    o.set_keep_alive(Duration::from_secs(30));
    let (client, mut events) = AsyncClient::new(o, 16);
    let subs: Vec<_> = filters.iter().map(|f| rumqttc::SubscribeFilter::new(f.clone(), QoS::AtMostOnce)).collect();
    client.subscribe_many(subs).await.expect("queue a subscription");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        match tokio::time::timeout_at(deadline, events.poll()).await {
            Ok(Ok(Event::Incoming(Packet::SubAck(_)))) => break,
            Ok(Ok(_)) => {}
            // Refused or broken while the broker is busy: the client connects again at the next poll.
            Ok(Err(_)) => tokio::time::sleep(Duration::from_millis(100)).await,
            Err(_) => panic!("subscriber {id} was not subscribed within 60 s"),
        }
    }
    tokio::spawn(async move {
        while !stop.load(Ordering::Relaxed) {
            match tokio::time::timeout(Duration::from_millis(200), events.poll()).await {
                Ok(Ok(Event::Incoming(Packet::Publish(_)))) => {
                    delivered.fetch_add(1, Ordering::Relaxed);
                }
                Ok(Ok(_)) | Err(_) => {}
                Ok(Err(_)) => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
        let _ = client.disconnect().await;
        let until = Instant::now() + Duration::from_secs(5);
        while let Ok(Ok(e)) = tokio::time::timeout_at(until, events.poll()).await {
            if matches!(e, Event::Outgoing(rumqttc::Outgoing::Disconnect)) {
                break;
            }
        }
    })
}

/// A device: connects with its own credentials, publishes its state changes (QoS 1, waiting for every
/// PUBACK) and readings (QoS 0), then disconnects.
async fn device(
    port: u16,
    name: String,
    password: String,
    machine: i32,
    area: usize,
    shape: Shape,
    published: Arc<AtomicU64>,
) {
    let mut o = MqttOptions::new(name.clone(), "127.0.0.1", port);
    o.set_keep_alive(Duration::from_secs(30));
    o.set_credentials(name.clone(), password);
    let (client, mut events) = AsyncClient::new(o, 64);
    let acks = Arc::new(AtomicU64::new(0));
    let poller = {
        let acks = acks.clone();
        tokio::spawn(async move {
            loop {
                match events.poll().await {
                    Ok(Event::Incoming(Packet::PubAck(_))) => {
                        acks.fetch_add(1, Ordering::Relaxed);
                    }
                    Ok(Event::Outgoing(rumqttc::Outgoing::Disconnect)) => return,
                    Ok(_) => {}
                    Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
                }
            }
        })
    };
    let reading = "x".repeat(READING_BYTES);
    let per_reading = (shape.messages / shape.readings.max(1)).max(1);
    let mut readings = 0;
    for i in 0..shape.messages {
        let code = if i % 2 == 0 { CODE_DOWN } else { CODE_CLOSED };
        let body = format!("{{\"activity_code_id\":{code}}}");
        client.publish(format!("oee/v1/machines/{machine}/state"), QoS::AtLeastOnce, false, body).await.expect("queue");
        published.fetch_add(1, Ordering::Relaxed);
        if i % per_reading == 0 && readings < shape.readings {
            let topic = format!("plant/area-{area}/{name}/temp");
            client.publish(topic, QoS::AtMostOnce, false, reading.clone()).await.expect("queue");
            published.fetch_add(1, Ordering::Relaxed);
            readings += 1;
        }
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    while acks.load(Ordering::Relaxed) < shape.messages && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let _ = client.disconnect().await;
    let _ = tokio::time::timeout(Duration::from_secs(5), poller).await;
}

// ---------------------------------------------------------------------------------------------------
// The report

fn mib(kib: u64) -> String {
    format!("{:.0}", kib as f64 / 1024.0)
}

fn text_table(figures: &[Figure], rounds: &[Round]) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "{:<40} {:>10} {:>10}", "moment", "RSS MiB", "anon MiB");
    for f in figures {
        let anon = if f.anon_kib == 0 { "-".to_string() } else { mib(f.anon_kib) };
        let _ = writeln!(s, "{:<40} {:>10} {:>10}", f.when, mib(f.rss_kib), anon);
    }
    for (i, r) in rounds.iter().enumerate() {
        let _ = writeln!(
            s,
            "round {}: {} published, {} delivered to subscribers, {}/{} state changes committed, {:.1} s",
            i + 1,
            r.published,
            r.delivered,
            r.committed,
            r.expected,
            r.seconds
        );
    }
    s
}

fn markdown(host: &HostInfo, shape: &Shape, figures: &[Figure], rounds: &[Round]) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "{SECTION_START}");
    let _ = writeln!(
        s,
        "## Broker memory
"
    );
    let _ = writeln!(
        s,
        "Written by `benches/memory.rs` from the numbers it measured; re-run it rather than editing this section.
"
    );
    let _ = writeln!(s, "- Command: `cargo bench --bench memory`");
    s.push_str(&host.report_lines());
    let _ = writeln!(
        s,
        "- Set-up: the real `oee-server serve` as a child process with the default configuration (anonymous \
         MQTT allowed for the subscribers), its embedded PostgreSQL (a process of its own, not counted); all \
         traffic on 127.0.0.1. RSS is `VmRSS` of the server process; anon is its `RssAnon` (heap and stacks)."
    );
    let _ = writeln!(
        s,
        "- Load, twice: {} devices with their own credentials, each publishing {} state changes (QoS 1) and {} \
         readings of {READING_BYTES} bytes (QoS 0) to `plant/area-k/…`; {} anonymous subscribers, each on one \
         machine's status and one of {AREAS} areas' readings (`plant/area-k/#`). A round ends when ingest has \
         committed the state changes; then every client disconnects.\n",
        shape.devices, shape.messages, shape.readings, shape.subscribers
    );
    let _ = writeln!(s, "| Moment | RSS MiB | anon MiB |");
    let _ = writeln!(s, "|---|---:|---:|");
    for f in figures {
        let anon = if f.anon_kib == 0 { "–".to_string() } else { mib(f.anon_kib) };
        let _ = writeln!(s, "| {} | {} | {} |", f.when, mib(f.rss_kib), anon);
    }
    let _ = writeln!(s);
    for (i, r) in rounds.iter().enumerate() {
        let _ = writeln!(
            s,
            "- Round {}: {} messages published, {} delivered to subscribers, {} of {} state changes committed, \
             {:.1} s.",
            i + 1,
            r.published,
            r.delivered,
            r.committed,
            r.expected,
            r.seconds
        );
    }
    let _ = writeln!(s);
    let analysis = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/benches/memory-analysis.md"))
        .unwrap_or_else(|_| "Not analysed yet: write benches/memory-analysis.md.\n".to_string());
    let _ = write!(s, "{analysis}");
    let _ = writeln!(s, "{SECTION_END}");
    s
}
