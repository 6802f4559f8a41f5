//! Crash tests: the whole `oee-server` process is killed with SIGKILL (`kill -9`) in the middle of a bounded
//! stream of state changes, started again on the same data directory, and what the clients sent, what was
//! acknowledged to them and what is stored are counted and printed.
//!
//! - Over HTTP an answer 200 means committed: nothing acknowledged may be lost.
//! - Through an external Mosquitto, which outlives the server, ingest's persistent session and its
//!   acknowledgements after commit mean nothing the broker acknowledged may be lost, and `request_id` makes
//!   the redelivery of what was committed but not yet acknowledged harmless.
//! - Through the embedded broker, which keeps messages in memory only and dies with the process, messages
//!   it acknowledged but ingest had not committed are lost: that window is measured, at a fixed rate.
//!
//! Each server runs its own embedded PostgreSQL in its data directory, as a default installation does, so
//! the database goes down and comes back with the process. Every machine follows a shift pattern with no
//! shifts, so no shift transition can land inside a stream and refuse the changes stamped before it.

mod common;

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use chrono::{DateTime, SecondsFormat, SubsecRound, TimeDelta, Utc};
use common::{Mosquitto, free_port, scratch_dir, server_binary, within};
use oee_core::store::cluster::SUPERUSER;
use oee_core::store::{EMBEDDED_DATABASE, machine, schedule};
use rumqttc::{AsyncClient, Event, MqttOptions, Outgoing, Packet, QoS};
use serde_json::json;
use sqlx::PgPool;
use sqlx::postgres::PgConnectOptions;
use tokio::process::Child;
use tokio::sync::mpsc;

/// The crash tests run one at a time: each loads the machine on its own, so that one test's load does not
/// slow another's server and a measured loss window means what it says.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Machines each stream is spread over.
const MACHINES: usize = 4;
/// Generous limits for what a slow machine may take: a server start (with its database's crash recovery),
/// and the backlog of a restart being applied.
const START_LIMIT: Duration = Duration::from_secs(120);
const SETTLE_LIMIT: Duration = Duration::from_secs(120);

/// The `oee-server serve` process on fixed loopback ports and one data directory, which can be killed and
/// started again.
struct Server {
    data_dir: PathBuf,
    http: u16,
    /// The broker ingest and the bridge use: the embedded one's port, or an external broker's.
    mqtt: u16,
    embedded_broker: bool,
    child: Option<Child>,
}

impl Server {
    /// A server with every service, its devices connecting to its embedded broker.
    fn embedded(name: &str) -> Server {
        Server { data_dir: scratch_dir(name), http: free_port(), mqtt: free_port(), embedded_broker: true, child: None }
    }

    /// A server without a broker (`--only ingest,bridge,web`) that uses the broker on `port`.
    fn with_broker(name: &str, port: u16) -> Server {
        Server { data_dir: scratch_dir(name), http: free_port(), mqtt: port, embedded_broker: false, child: None }
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.http)
    }

    fn log_path(&self) -> PathBuf {
        self.data_dir.join("server.log")
    }

    /// Starts the process and waits until `/health` says every part is ok.
    async fn start(&mut self) {
        assert!(self.child.is_none(), "the server is already running");
        let log = std::fs::OpenOptions::new().create(true).append(true).open(self.log_path()).expect("open the log");
        let args: &[&str] = if self.embedded_broker { &["serve"] } else { &["serve", "--only", "ingest,bridge,web"] };
        let mut c = server_binary(args, &self.data_dir, self.http, self.mqtt);
        c.env("OEE_BROKER__ALLOW_ANONYMOUS", "true")
            .env("OEE_BRIDGE__OPEN_DEVICE_API", "true")
            // A slow machine should answer late rather than 503: only what ingest committed counts anyway.
            .env("OEE_BRIDGE__REPLY_TIMEOUT_MS", "30000")
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("clone the log"))
            .stderr(log);
        self.child = Some(c.spawn().expect("start oee-server serve"));
        let client = reqwest::Client::builder().timeout(Duration::from_secs(30)).build().unwrap();
        let health = self.url("/health");
        let deadline = tokio::time::Instant::now() + START_LIMIT;
        loop {
            if client.get(&health).send().await.is_ok_and(|r| r.status() == 200) {
                return;
            }
            if let Ok(Some(status)) = self.child.as_mut().unwrap().try_wait() {
                panic!("the server exited during start-up ({status}):\n{}", self.log_tail());
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "the server did not report healthy within {START_LIMIT:?}:\n{}",
                self.log_tail()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// `kill -9`: the process ends at once, whatever it was doing.
    async fn kill(&mut self) {
        let mut child = self.child.take().expect("the server runs");
        child.start_kill().expect("send SIGKILL");
        let status = child.wait().await.expect("reap the server");
        assert!(!status.success(), "the server was killed, not stopped: {status}");
    }

    /// SIGTERM, as a service manager stops it, and waits until it has exited.
    async fn stop(&mut self) {
        let Some(mut child) = self.child.take() else { return };
        let pid = child.id().expect("server pid").to_string();
        let sent = std::process::Command::new("kill").args(["-TERM", &pid]).status().is_ok_and(|s| s.success());
        assert!(sent, "send SIGTERM to the server");
        let status =
            tokio::time::timeout(Duration::from_secs(60), child.wait()).await.expect("stops within 60 s").unwrap();
        assert!(status.success(), "{status}:\n{}", self.log_tail());
    }

    /// A connection pool on the server's embedded database (its unix socket in the cluster directory).
    async fn pool(&self) -> PgPool {
        let socket_dir = self.data_dir.join("postgres");
        assert!(socket_dir.join(".s.PGSQL.5432").exists(), "the embedded database's socket is in {socket_dir:?}");
        let options =
            PgConnectOptions::new().socket(&socket_dir).port(5432).username(SUPERUSER).database(EMBEDDED_DATABASE);
        oee_core::store::connect(options, 2).await.expect("connect to the embedded database")
    }

    fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(self.log_path()).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }
}

/// Adds the machines the streams go to, on a shift pattern with no shifts, and waits until the scheduler
/// has taken the pattern up. Returns their ids and the instant after which their changes may be stamped.
async fn add_machines(pool: &PgPool) -> (Vec<i32>, DateTime<Utc>) {
    const NO_SHIFTS: &str = "No shifts";
    schedule::add_shift(pool, NO_SHIFTS).await.expect("add a shift pattern");
    let mut ids = Vec::new();
    for i in 1..=MACHINES {
        let name = format!("Press {i}");
        ids.push(machine::add_machine(pool, &name, chrono_tz::Tz::UTC, Utc::now()).await.expect("add a machine").id);
        schedule::set_machine_shift(pool, &name, NO_SHIFTS).await.expect("set the machine's shift pattern");
    }
    within(Duration::from_secs(30), "the scheduler has applied the machines' pattern", || async {
        let pending: i64 =
            sqlx::query_scalar("SELECT count(*) FROM machine WHERE id = ANY($1) AND schedule_applied_until IS NULL")
                .bind(&ids)
                .fetch_one(pool)
                .await
                .unwrap();
        pending == 0
    })
    .await;
    let latest: DateTime<Utc> = sqlx::query_scalar("SELECT max(current_since) FROM machine WHERE id = ANY($1)")
        .bind(&ids)
        .fetch_one(pool)
        .await
        .unwrap();
    (ids, latest.max(Utc::now()))
}

/// Unique, increasing timestamps for one machine's changes (whole milliseconds), never ahead of the clock:
/// a stamp ahead of the time ingest received the change would be taken as that time, and the stored row
/// could then not be told apart.
struct Stamps {
    last: DateTime<Utc>,
}

impl Stamps {
    fn after(since: DateTime<Utc>) -> Stamps {
        Stamps { last: since.trunc_subsecs(3) }
    }

    async fn next(&mut self) -> DateTime<Utc> {
        let next = Utc::now().trunc_subsecs(3).max(self.last + TimeDelta::milliseconds(1));
        // Only when two changes fall within one millisecond: wait for the clock to reach the stamp.
        while Utc::now() < next {
            tokio::time::sleep(Duration::from_micros(200)).await;
        }
        self.last = next;
        next
    }
}

fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// One change a client sent: its machine and timestamp, and whether it was acknowledged (HTTP 200, MQTT
/// PUBACK).
#[derive(Debug, Clone, Copy)]
struct Sent {
    machine: i32,
    at: DateTime<Utc>,
    acknowledged: bool,
}

/// Activity rows of `machines` that start after `since`, by (machine, start): how many rows start there.
async fn stored(pool: &PgPool, machines: &[i32], since: DateTime<Utc>) -> HashMap<(i32, DateTime<Utc>), i64> {
    let rows: Vec<(i32, DateTime<Utc>, i64)> = sqlx::query_as(
        "SELECT machine_id, start_time, count(*) FROM activity \
         WHERE machine_id = ANY($1) AND start_time > $2 GROUP BY machine_id, start_time",
    )
    .bind(machines)
    .bind(since)
    .fetch_all(pool)
    .await
    .unwrap();
    rows.into_iter().map(|(m, at, n)| ((m, at), n)).collect()
}

/// What a crash cost, counted from the clients' records and the table.
#[derive(Debug)]
struct Tally {
    sent: usize,
    acknowledged: usize,
    stored: usize,
    /// Acknowledged but not stored.
    lost: usize,
    /// Stored although the client never got an acknowledgement (in flight when the process died).
    stored_unacknowledged: usize,
    /// Changes stored more than once.
    duplicated: usize,
    /// Rows that match no change that was sent.
    unknown: usize,
}

impl Tally {
    fn of(sent: &[Sent], rows: &HashMap<(i32, DateTime<Utc>), i64>) -> Tally {
        let keys: HashSet<(i32, DateTime<Utc>)> = sent.iter().map(|s| (s.machine, s.at)).collect();
        assert_eq!(keys.len(), sent.len(), "every change was sent with a timestamp of its own");
        let is_stored = |s: &Sent| rows.contains_key(&(s.machine, s.at));
        Tally {
            sent: sent.len(),
            acknowledged: sent.iter().filter(|s| s.acknowledged).count(),
            stored: sent.iter().filter(|s| is_stored(s)).count(),
            lost: sent.iter().filter(|s| s.acknowledged && !is_stored(s)).count(),
            stored_unacknowledged: sent.iter().filter(|s| !s.acknowledged && is_stored(s)).count(),
            duplicated: rows.values().filter(|&&n| n > 1).count(),
            unknown: rows.keys().filter(|k| !keys.contains(k)).count(),
        }
    }

    fn print(&self, what: &str) {
        eprintln!(
            "{what}: sent {}, acknowledged {}, stored {}, lost {} (stored without acknowledgement {}, stored \
             twice {}, unknown rows {})",
            self.sent,
            self.acknowledged,
            self.stored,
            self.lost,
            self.stored_unacknowledged,
            self.duplicated,
            self.unknown
        );
    }
}

/// Waits until `counter` reaches `n`: the kill point of a stream, chosen by count.
async fn reached(counter: &AtomicUsize, n: usize, what: &str) {
    within(Duration::from_secs(120), what, || async { counter.load(Ordering::Relaxed) >= n }).await;
}

// ---------------------------------------------------------------------------------------------------------
// HTTP

/// One HTTP device: `count` state changes to `machine`, one after the other, alternating Down and Closed,
/// each with its own timestamp. A request that fails (the server is gone) is followed by a short pause, so
/// the bounded stream outlasts the restart.
async fn http_device(
    url: String,
    machine: i32,
    since: DateTime<Utc>,
    count: usize,
    acked: Arc<AtomicUsize>,
) -> Vec<Sent> {
    let client = reqwest::Client::builder().timeout(Duration::from_secs(60)).build().unwrap();
    let mut stamps = Stamps::after(since);
    let mut sent = Vec::with_capacity(count);
    for i in 0..count {
        let at = stamps.next().await;
        let code = if i % 2 == 0 { 2 } else { 3 };
        let body = json!({"machine_id": machine, "activity_code_id": code, "timestamp": rfc3339(at)});
        let answer = client.post(&url).json(&body).send().await;
        let acknowledged = matches!(&answer, Ok(r) if r.status() == 200);
        if acknowledged {
            acked.fetch_add(1, Ordering::Relaxed);
        }
        sent.push(Sent { machine, at, acknowledged });
        if answer.is_err() {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    sent
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_under_http_load_loses_no_acknowledged_change() {
    let _alone = ONE_AT_A_TIME.lock().await;
    const PER_MACHINE: usize = 150;
    const KILL_AFTER_ACKS: usize = 150;
    let mut server = Server::embedded("crash-http");
    server.start().await;
    let pool = server.pool().await;
    let (machines, since) = add_machines(&pool).await;
    pool.close().await;

    let acked = Arc::new(AtomicUsize::new(0));
    let url = server.url("/api/machine-state-change");
    let devices: Vec<_> = machines
        .iter()
        .map(|&m| tokio::spawn(http_device(url.clone(), m, since, PER_MACHINE, acked.clone())))
        .collect();
    reached(&acked, KILL_AFTER_ACKS, "the server acknowledged the first changes").await;
    server.kill().await;
    let acked_at_kill = acked.load(Ordering::Relaxed);
    server.start().await;
    let mut sent = Vec::new();
    for d in devices {
        sent.extend(d.await.expect("HTTP device"));
    }

    let pool = server.pool().await;
    let tally = Tally::of(&sent, &stored(&pool, &machines, since).await);
    tally.print(&format!("kill -9 under HTTP load (killed after {acked_at_kill} acknowledged)"));
    assert_eq!(tally.sent, MACHINES * PER_MACHINE);
    assert!(tally.acknowledged >= KILL_AFTER_ACKS);
    assert_eq!(tally.lost, 0, "every change answered 200 is in the database");
    assert_eq!(tally.duplicated, 0, "no change is stored twice");
    assert_eq!(tally.unknown, 0, "nothing is stored that was not sent");

    // The restarted server takes changes as before.
    let r = reqwest::Client::new()
        .post(&url)
        .json(&json!({"machine_id": machines[0], "activity_code_id": 3}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    pool.close().await;
    server.stop().await;
}

// ---------------------------------------------------------------------------------------------------------
// MQTT

/// What a device's event loop tells its publishing loop.
#[derive(Debug)]
enum Wire {
    /// The publish was handed to the connection.
    Written,
    /// The broker acknowledged it (PUBACK).
    Acknowledged,
    /// The connection ended: the device stops (it does not reconnect, so nothing is sent twice).
    Closed,
}

/// An MQTT device with one message in flight at a time, so each PUBACK is its last publish's.
struct Device {
    client: AsyncClient,
    wire: mpsc::UnboundedReceiver<Wire>,
}

fn reply_topic(machine: i32) -> String {
    format!("oee/v1/replies/crash/machine-{machine}")
}

impl Device {
    /// Connects to the broker on `port` and subscribes to `machine`'s verdicts, which are counted in `verdicts`.
    async fn connect(port: u16, id: &str, machine: i32, verdicts: Arc<AtomicUsize>) -> Device {
        let mut o = MqttOptions::new(id, "127.0.0.1", port);
        o.set_keep_alive(Duration::from_secs(10)).set_inflight(1);
        let (client, mut eventloop) = AsyncClient::new(o, 10);
        let (tx, wire) = mpsc::unbounded_channel();
        let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
        let replies = reply_topic(machine);
        client.subscribe(&replies, QoS::AtLeastOnce).await.unwrap();
        tokio::spawn(async move {
            let mut ready = Some(ready_tx);
            loop {
                match eventloop.poll().await {
                    Ok(Event::Incoming(Packet::SubAck(_))) => {
                        if let Some(r) = ready.take() {
                            let _ = r.send(());
                        }
                    }
                    Ok(Event::Outgoing(Outgoing::Publish(_))) => {
                        let _ = tx.send(Wire::Written);
                    }
                    Ok(Event::Incoming(Packet::PubAck(_))) => {
                        let _ = tx.send(Wire::Acknowledged);
                    }
                    Ok(Event::Incoming(Packet::Publish(p))) if p.topic == replies => {
                        verdicts.fetch_add(1, Ordering::Relaxed);
                    }
                    Ok(_) => {}
                    Err(_) => {
                        let _ = tx.send(Wire::Closed);
                        return;
                    }
                }
            }
        });
        tokio::time::timeout(Duration::from_secs(30), ready_rx).await.expect("MQTT connect and subscribe").unwrap();
        Device { client, wire }
    }

    /// Publishes one state change (QoS 1) and waits for its fate: `None` if it never left (the connection had
    /// ended), else whether the broker acknowledged it.
    async fn publish(&mut self, machine: i32, at: DateTime<Utc>, code: i32, request_id: &str) -> Option<bool> {
        let body = json!({
            "activity_code_id": code,
            "timestamp": rfc3339(at),
            "request_id": request_id,
            "reply_to": reply_topic(machine),
        });
        let topic = format!("oee/v1/machines/{machine}/state");
        self.client.publish(topic, QoS::AtLeastOnce, false, serde_json::to_vec(&body).unwrap()).await.ok()?;
        let mut written = false;
        loop {
            match tokio::time::timeout(Duration::from_secs(60), self.wire.recv()).await.expect("the device hangs") {
                Some(Wire::Written) => written = true,
                Some(Wire::Acknowledged) => return Some(true),
                Some(Wire::Closed) | None => return written.then_some(false),
            }
        }
    }
}

/// One MQTT device: up to `count` state changes to `machine` at `per_s` a second, each with its own
/// timestamp and `request_id`. It stops when its connection ends. Returns what it sent and its last stamp.
async fn mqtt_device(
    port: u16,
    machine: i32,
    since: DateTime<Utc>,
    count: usize,
    per_s: u32,
    verdicts: Arc<AtomicUsize>,
) -> (Vec<Sent>, DateTime<Utc>) {
    let mut device = Device::connect(port, &format!("crash-device-{machine}"), machine, verdicts).await;
    let mut stamps = Stamps::after(since);
    let mut sent = Vec::with_capacity(count);
    let mut pace = tokio::time::interval(Duration::from_secs(1) / per_s);
    pace.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    for i in 0..count {
        pace.tick().await;
        let at = stamps.next().await;
        let code = if i % 2 == 0 { 2 } else { 3 };
        match device.publish(machine, at, code, &format!("crash-{machine}-{i}")).await {
            Some(acknowledged) => sent.push(Sent { machine, at, acknowledged }),
            None => break,
        }
        if !sent.last().is_some_and(|s| s.acknowledged) {
            break;
        }
    }
    (sent, stamps.last)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_with_an_external_mosquitto_loses_no_acknowledged_message() {
    let _alone = ONE_AT_A_TIME.lock().await;
    const PER_MACHINE: usize = 250;
    const PER_S: u32 = 50;
    const KILL_AFTER_VERDICTS: usize = 200;
    let broker = Mosquitto::start();
    let mut server = Server::with_broker("crash-mosquitto", broker.port);
    server.start().await;
    let pool = server.pool().await;
    let (machines, since) = add_machines(&pool).await;
    pool.close().await;

    let verdicts = Arc::new(AtomicUsize::new(0));
    let devices: Vec<_> = machines
        .iter()
        .map(|&m| tokio::spawn(mqtt_device(broker.port, m, since, PER_MACHINE, PER_S, verdicts.clone())))
        .collect();
    reached(&verdicts, KILL_AFTER_VERDICTS, "ingest committed the first messages").await;
    server.kill().await;
    let committed_at_kill = verdicts.load(Ordering::Relaxed);
    server.start().await;
    let mut sent = Vec::new();
    for d in devices {
        sent.extend(d.await.expect("MQTT device").0);
    }

    let pool = server.pool().await;
    let acknowledged: Vec<Sent> = sent.iter().filter(|s| s.acknowledged).copied().collect();
    within(SETTLE_LIMIT, "every acknowledged message is applied", || async {
        let rows = stored(&pool, &machines, since).await;
        acknowledged.iter().all(|s| rows.contains_key(&(s.machine, s.at)))
    })
    .await;
    let tally = Tally::of(&sent, &stored(&pool, &machines, since).await);
    tally.print(&format!("kill -9 with an external Mosquitto (killed after {committed_at_kill} verdicts)"));
    assert_eq!(tally.sent, MACHINES * PER_MACHINE, "Mosquitto stayed up: every message was sent");
    assert_eq!(tally.acknowledged, tally.sent, "Mosquitto stayed up: it acknowledged every message");
    assert_eq!(tally.lost, 0, "every message Mosquitto acknowledged is stored");
    assert_eq!(tally.duplicated, 0, "a redelivered message is not applied again");
    assert_eq!(tally.unknown, 0, "nothing is stored that was not sent");
    pool.close().await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_with_the_embedded_broker_loses_at_most_what_ingest_had_not_committed() {
    let _alone = ONE_AT_A_TIME.lock().await;
    // 200 messages a second over four machines; the process is killed once ingest has committed three
    // seconds' worth. The bound on the count only stops a stream that is never killed.
    const PER_S: u32 = 50;
    const PER_MACHINE: usize = 1500;
    const KILL_AFTER_VERDICTS: usize = 600;
    let mut server = Server::embedded("crash-embedded");
    server.start().await;
    let pool = server.pool().await;
    let (machines, since) = add_machines(&pool).await;
    pool.close().await;

    let verdicts = Arc::new(AtomicUsize::new(0));
    let devices: Vec<_> = machines
        .iter()
        .map(|&m| tokio::spawn(mqtt_device(server.mqtt, m, since, PER_MACHINE, PER_S, verdicts.clone())))
        .collect();
    reached(&verdicts, KILL_AFTER_VERDICTS, "ingest committed the first messages").await;
    server.kill().await;
    let mut sent = Vec::new();
    let mut last = HashMap::new();
    for (d, &m) in devices.into_iter().zip(&machines) {
        let (s, at) = d.await.expect("MQTT device");
        sent.extend(s);
        last.insert(m, at);
    }
    server.start().await;

    let pool = server.pool().await;
    let tally = Tally::of(&sent, &stored(&pool, &machines, since).await);
    tally.print(&format!("kill -9 with the embedded broker at {} messages/s", PER_S as usize * MACHINES));
    assert!(tally.sent < MACHINES * PER_MACHINE, "the stream was cut by the kill, not by its bound");
    assert!(tally.stored <= tally.sent && tally.acknowledged <= tally.sent);
    assert!(tally.acknowledged >= KILL_AFTER_VERDICTS);
    assert_eq!(tally.duplicated, 0, "no message is stored twice");
    assert_eq!(tally.unknown, 0, "nothing is stored that was not sent");

    // The restarted server serves again: over MQTT (a new device) and over HTTP.
    let m = machines[0];
    let mut stamps = Stamps::after(last[&m]);
    let at = stamps.next().await;
    let mut device = Device::connect(server.mqtt, "crash-device-after", m, Arc::default()).await;
    assert_eq!(device.publish(m, at, 3, "crash-after").await, Some(true), "the broker acknowledges again");
    within(SETTLE_LIMIT, "a change sent after the restart is stored", || async {
        stored(&pool, &[m], since).await.contains_key(&(m, at))
    })
    .await;
    let r = reqwest::Client::new()
        .post(server.url("/api/machine-state-change"))
        .json(&json!({"machine_id": m, "activity_code_id": 2}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    pool.close().await;
    server.stop().await;
}
