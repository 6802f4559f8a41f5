//! A bounded benchmark of the tablet API and its live updates: `cargo bench --bench tablet`.
//!
//! It starts the whole server in this process (broker, ingest, bridge, web) on an embedded PostgreSQL
//! cluster in a fresh temporary directory and plays 20 tablets against it over loopback, as the Android
//! app does: each registers with `GET /check-state`, logs in, starts a job and holds the live-updates
//! websocket (`/api/input-device-updates`) open. Then:
//!
//! 1. `POST /android-update` at a fixed offered rate spread evenly over the tablets, alternating Down (2)
//!    and Up (1): the HTTP round trip, and the time from sending each request to the arrival of its
//!    `activity_change` frame on that tablet's socket;
//! 2. the same for a few changes one at a time, with nothing else in flight;
//! 3. `GET /check-state` during the job at the same rate: the HTTP round trip.
//!
//! It prints a table and writes its own section of `BENCHMARKS.md`.
//!
//! Environment: `OEE_BENCH_QUICK=1` runs each phase for about two seconds to check the bench itself, and
//! leaves `BENCHMARKS.md` alone.
//!
//! Everything listens on 127.0.0.1, every wait is bounded, and a watchdog ends the process if a run goes on
//! far longer than expected.

#[path = "shared/host.rs"]
mod host;
#[path = "shared/sections.rs"]
mod sections;
#[path = "shared/server.rs"]
mod server;

use host::HostInfo;
use std::collections::VecDeque;
use std::fmt::Write as _;
use std::path::Path;
use std::time::Duration;

use chrono::Utc;
use futures_util::{SinkExt, StreamExt};
use oee_core::Config;
use oee_server::{App, Services};
use serde_json::{Value, json};
use sqlx::PgPool;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message;

/// Machines, each with one tablet.
const TABLETS: usize = 20;
/// Requests per second offered in each phase, spread evenly over the tablets.
const RATE: u32 = 20;
/// What the tablets' operator logs in with: the seeded administrator.
const USER_ID: &str = "1";
const PASSWORD: &str = "digitme2";
const CODE_UP: i32 = 1;
const CODE_DOWN: i32 = 2;
/// Phase 2: changes one at a time, this far apart, so that ingest's status publisher (at most one round per
/// 100 ms) is idle when each arrives.
const ISOLATED_GAP: Duration = Duration::from_millis(500);
/// A change whose frame has not arrived this long after its request was sent counts as never arrived.
const PUSH_WITHIN: Duration = Duration::from_secs(5);
/// Per-request bound, above the bridge's 5 s wait for ingest's verdict.
const HTTP_TIMEOUT: Duration = Duration::from_secs(15);
/// Bound on each set-up step and on closing a socket.
const STEP_WITHIN: Duration = Duration::from_secs(30);
const SECTION_START: &str = "<!-- tablet-bench:start -->";
const SECTION_END: &str = "<!-- tablet-bench:end -->";

type Socket = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// The length of a run.
#[derive(Clone, Copy)]
struct Shape {
    /// How long phases 1 and 3 offer their load.
    window: Duration,
    /// The process gives up after this long.
    watchdog: Duration,
    quick: bool,
}

impl Shape {
    fn from_env() -> Shape {
        let quick = std::env::var("OEE_BENCH_QUICK").is_ok_and(|v| !v.is_empty() && v != "0");
        if quick {
            Shape { window: Duration::from_secs(2), watchdog: Duration::from_secs(300), quick }
        } else {
            Shape { window: Duration::from_secs(30), watchdog: Duration::from_secs(600), quick }
        }
    }

    /// Requests each tablet sends in a phase.
    fn per_tablet(&self) -> usize {
        ((self.window.as_secs_f64() * f64::from(RATE) / TABLETS as f64).round() as usize).max(1)
    }

    /// Changes made one at a time in phase 2, each by another tablet.
    fn isolated_changes(&self) -> usize {
        if self.quick { 4 } else { TABLETS }
    }

    /// Time between two requests of one tablet.
    fn period(&self) -> Duration {
        Duration::from_secs_f64(TABLETS as f64 / f64::from(RATE))
    }
}

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    // By default: no notes about the slow `CHECKPOINT`s before the phases and no broker errors about
    // connections going away when the server stops.
    server::start_logging("warn,sqlx::query=error,rumqttd=off");
    let run_started = Instant::now();
    let shape = Shape::from_env();
    server::start_watchdog("tablet", shape.watchdog);

    let host = HostInfo::gather();
    let dir = server::fresh_dir("oee-tablet-bench");
    let config = server::loopback_config(&dir);
    eprintln!("tablet bench: starting the server (embedded PostgreSQL under {})", dir.display());
    let app = start_app(&config).await;
    let pool = app.db.pool.clone();
    let http = format!("http://{}", app.http_addr.expect("the server serves HTTP"));
    let pg_version: String =
        sqlx::query_scalar("SELECT version()").fetch_one(&pool).await.expect("ask PostgreSQL its version");
    let client =
        reqwest::Client::builder().timeout(HTTP_TIMEOUT).tcp_nodelay(true).build().expect("build the HTTP client");

    eprintln!("setting up {TABLETS} machines with a tablet each");
    let tablets = set_up(&pool, &client, &http).await;

    checkpoint(&pool).await;
    eprintln!(
        "phase 1: POST /android-update at {RATE}/s for {:.1} s, with live-update frames",
        shape.window.as_secs_f64()
    );
    let phase_start = Utc::now();
    let (tablets, updates) = update_phase(tablets, &client, &http, shape, Pace::Load).await;
    eprintln!("phase 2: {} changes one at a time, {} ms apart", shape.isolated_changes(), ISOLATED_GAP.as_millis());
    let (tablets, isolated) = update_phase(tablets, &client, &http, shape, Pace::OneAtATime).await;
    let stored = check_stored(&pool, &tablets, updates.http_ms.len() + isolated.http_ms.len(), phase_start).await;

    checkpoint(&pool).await;
    eprintln!("phase 3: GET /check-state at {RATE}/s for {:.1} s", shape.window.as_secs_f64());
    let check_states = check_state_phase(&tablets, &client, &http, shape).await;

    // Frames during phase 3 would be changes nobody made.
    let mut stray_frames = 0;
    for mut t in tablets {
        while t.frames.try_recv().is_ok() {
            stray_frames += 1;
        }
        t.close().await;
    }
    eprintln!("stopping the server");
    app.stop().await;
    let _ = std::fs::remove_dir_all(&dir);

    let results = Results {
        host,
        shape,
        pg_version,
        updates,
        isolated,
        check_states,
        stored,
        stray_frames,
        run_s: run_started.elapsed().as_secs_f64(),
    };
    println!("{}", results.text());
    if shape.quick {
        println!("quick run: BENCHMARKS.md left unchanged");
        return;
    }
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("BENCHMARKS.md");
    let old = std::fs::read_to_string(&path).unwrap_or_default();
    std::fs::write(&path, sections::replace_section(&old, SECTION_START, SECTION_END, &results.markdown()))
        .unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
    println!("wrote the tablet section of {}", path.display());
}

// ---------------------------------------------------------------------------------------------------
// Set-up

async fn start_app(config: &Config) -> App {
    tokio::time::timeout(Duration::from_secs(180), App::start(config, Services::ALL))
        .await
        .expect("the server did not start within 180 s")
        .expect("start the server")
}

/// One tablet: its UUID, its machine, and the frames its websocket received, each stamped on arrival by a
/// task of its own (so that a tablet busy with an HTTP request does not delay the stamp).
struct Tablet {
    uuid: String,
    machine: i32,
    /// The code of the machine's activity after the tablet's last accepted change.
    code: i32,
    frames: mpsc::UnboundedReceiver<(Instant, String)>,
    stop: oneshot::Sender<()>,
    reader: tokio::task::JoinHandle<()>,
}

impl Tablet {
    /// Closes the websocket cleanly (bounded).
    async fn close(self) {
        let _ = self.stop.send(());
        if tokio::time::timeout(STEP_WITHIN, self.reader).await.is_err() {
            eprintln!("tablet {}: its websocket did not close within {STEP_WITHIN:?}", self.uuid);
        }
    }
}

/// Machines in shift, each with a tablet that the app has registered, logged in and started a job on,
/// and whose websocket has told it the machine is Up.
async fn set_up(pool: &PgPool, client: &reqwest::Client, http: &str) -> Vec<Tablet> {
    let mut machines = Vec::with_capacity(TABLETS);
    for i in 1..=TABLETS {
        let m = oee_core::store::machine::add_machine(
            pool,
            &format!("tablet-bench-{i:02}"),
            chrono_tz::Tz::UTC,
            Utc::now(),
        )
        .await
        .unwrap_or_else(|e| panic!("add machine tablet-bench-{i:02}: {e}"));
        machines.push(m.id);
    }
    // In shift, with no shift pattern: the scheduler leaves machines without one alone, so a shift boundary
    // during the run cannot change their state under the bench.
    sqlx::query("UPDATE machine SET schedule_state = 1, shift_id = NULL WHERE id = ANY($1)")
        .bind(&machines)
        .execute(pool)
        .await
        .expect("put the machines in shift");

    let ws_base = http.replacen("http://", "ws://", 1);
    let mut tablets = Vec::with_capacity(TABLETS);
    for (i, &machine) in machines.iter().enumerate() {
        let uuid = uuid::Uuid::new_v4().to_string();
        // The first /check-state registers the tablet and pairs it with the first machine without one.
        let (status, v) = get_json(client, &format!("{http}/check-state"), &uuid).await;
        assert_eq!((status, v["state"].as_str()), (200, Some("no_user")), "first /check-state: {v}");
        let name = format!("tablet-bench-{:02}", i + 1);
        assert_eq!(v["machine"].as_str(), Some(name.as_str()), "tablet {uuid} paired with another machine: {v}");

        let login = json!({"device_uuid": uuid, "user_id": USER_ID, "password": PASSWORD});
        let (status, v) = post_json(client, &format!("{http}/android-login"), &login).await;
        assert_eq!((status, &v), (200, &json!({"success": true})), "login on {name}");
        let job = json!({"device_uuid": uuid, "job_number": "J1", "ideal_cycle_time": "10"});
        let (status, v) = post_json(client, &format!("{http}/android-start-job"), &job).await;
        assert_eq!((status, &v), (200, &json!({"success": true})), "job start on {name}");

        let (mut ws, _) = tokio::time::timeout(
            STEP_WITHIN,
            tokio_tungstenite::connect_async(format!("{ws_base}/api/input-device-updates")),
        )
        .await
        .expect("no websocket upgrade within 30 s")
        .expect("websocket upgrade");
        ws.send(Message::text(json!({"device_uuid": uuid}).to_string())).await.expect("send the tablet's uuid");
        let first = tokio::time::timeout(STEP_WITHIN, next_text(&mut ws))
            .await
            .expect("no first frame within 30 s")
            .expect("the socket closed before its first frame");
        assert_eq!(first, CODE_UP.to_string(), "{name}'s first frame: the job start left it Up");

        let (tx, frames) = mpsc::unbounded_channel();
        let (stop, stopped) = oneshot::channel();
        let reader = tokio::spawn(read_frames(ws, tx, stopped));
        tablets.push(Tablet { uuid, machine, code: CODE_UP, frames, stop, reader });
    }
    tablets
}

/// The next text frame, or `None` when the socket ends.
async fn next_text(ws: &mut Socket) -> Option<String> {
    loop {
        match ws.next().await? {
            Ok(Message::Text(t)) => return Some(t.as_str().to_owned()),
            Ok(Message::Close(_)) | Err(_) => return None,
            Ok(_) => continue,
        }
    }
}

/// Stamps every text frame on arrival and hands it on, until told to stop (then closes the socket).
async fn read_frames(
    mut ws: Socket,
    frames: mpsc::UnboundedSender<(Instant, String)>,
    mut stop: oneshot::Receiver<()>,
) {
    loop {
        tokio::select! {
            text = next_text(&mut ws) => match text {
                Some(text) => {
                    if frames.send((Instant::now(), text)).is_err() {
                        break;
                    }
                }
                None => return,
            },
            _ = &mut stop => break,
        }
    }
    let _ = ws.close(None).await;
    // The close handshake: read until the server's close frame ends the stream.
    let _ = tokio::time::timeout(Duration::from_secs(2), async { while ws.next().await.is_some() {} }).await;
}

async fn get_json(client: &reqwest::Client, url: &str, uuid: &str) -> (u16, Value) {
    let r = client.get(url).query(&[("device_uuid", uuid)]).send().await.unwrap_or_else(|e| panic!("GET {url}: {e}"));
    let status = r.status().as_u16();
    let text = r.text().await.unwrap_or_else(|e| panic!("GET {url}: {e}"));
    (status, serde_json::from_str(&text).unwrap_or_else(|e| panic!("GET {url}: not JSON ({e}): {text}")))
}

async fn post_json(client: &reqwest::Client, url: &str, body: &Value) -> (u16, Value) {
    let r = client.post(url).json(body).send().await.unwrap_or_else(|e| panic!("POST {url}: {e}"));
    let status = r.status().as_u16();
    let text = r.text().await.unwrap_or_else(|e| panic!("POST {url}: {e}"));
    (status, serde_json::from_str(&text).unwrap_or_else(|e| panic!("POST {url}: not JSON ({e}): {text}")))
}

/// Before each phase: write out dirty buffers now, so that a checkpoint does not fall inside the phase's
/// short window and get billed to it. Best effort.
async fn checkpoint(pool: &PgPool) {
    match tokio::time::timeout(Duration::from_secs(60), sqlx::raw_sql("CHECKPOINT").execute(pool)).await {
        Ok(Ok(_)) => {}
        Ok(Err(e)) => eprintln!("  CHECKPOINT: {e}"),
        Err(_) => eprintln!("  CHECKPOINT took over 60 s; going on"),
    }
}

// ---------------------------------------------------------------------------------------------------
// Phases

/// When a tablet sends its `n`th request of a phase: tablet `k` of `TABLETS` is offset by `k / RATE`, so the
/// requests of all tablets are spread evenly at `RATE` per second.
fn send_time(start: Instant, shape: Shape, tablet: usize, n: usize) -> Instant {
    start + Duration::from_secs_f64(tablet as f64 / f64::from(RATE)) + shape.period() * n as u32
}

/// What one phase measured, over all tablets.
#[derive(Default)]
struct Phase {
    /// HTTP round trips of the answers that were right, in ms.
    http_ms: Vec<f64>,
    /// Requests sent.
    sent: usize,
    /// Wrong answers (status or body) and transport errors; the first few, for the report.
    failed: usize,
    failures: Vec<String>,
    /// From sending `/android-update` to its `activity_change` frame, in ms (phase 1 only).
    push_ms: Vec<f64>,
    /// Accepted changes whose frame did not arrive within `PUSH_WITHIN`.
    push_missing: usize,
    /// `activity_change` frames that matched no change waiting for one, and frames of other kinds.
    unmatched_frames: usize,
    /// How far a request was sent behind its schedule (each tablet waits for its previous answer).
    max_behind_ms: f64,
}

impl Phase {
    fn merge(&mut self, o: Phase) {
        self.http_ms.extend(o.http_ms);
        self.sent += o.sent;
        self.failed += o.failed;
        for f in o.failures {
            if self.failures.len() < 5 {
                self.failures.push(f);
            }
        }
        self.push_ms.extend(o.push_ms);
        self.push_missing += o.push_missing;
        self.unmatched_frames += o.unmatched_frames;
        self.max_behind_ms = self.max_behind_ms.max(o.max_behind_ms);
    }

    fn fail(&mut self, what: String) {
        self.failed += 1;
        if self.failures.len() < 5 {
            self.failures.push(what);
        }
    }

    fn sort(&mut self) {
        self.http_ms.sort_by(f64::total_cmp);
        self.push_ms.sort_by(f64::total_cmp);
    }
}

/// How the changes of a phase are spread over the tablets.
#[derive(Clone, Copy)]
enum Pace {
    /// `RATE` per second spread evenly over all tablets.
    Load,
    /// One change at a time, `ISOLATED_GAP` apart, by the first tablets in turn.
    OneAtATime,
}

/// Phases 1 and 2: tablets change their machine between Down and Up as `pace` says, and match the frames on
/// their sockets to their changes. Returns the tablets for the next phase.
async fn update_phase(
    tablets: Vec<Tablet>,
    client: &reqwest::Client,
    http: &str,
    shape: Shape,
    pace: Pace,
) -> (Vec<Tablet>, Phase) {
    // A little ahead, so that every tablet's task is running before its first send.
    let start = Instant::now() + Duration::from_millis(200);
    let url = format!("{http}/android-update");
    let tasks: Vec<_> = tablets
        .into_iter()
        .enumerate()
        .map(|(k, t)| {
            let client = client.clone();
            let url = url.clone();
            tokio::spawn(async move {
                let mut t = t;
                let phase = match pace {
                    Pace::Load => {
                        tablet_updates(&mut t, &client, &url, |n| send_time(start, shape, k, n), shape.per_tablet())
                            .await
                    }
                    Pace::OneAtATime => {
                        let count = usize::from(k < shape.isolated_changes());
                        tablet_updates(&mut t, &client, &url, |_| start + ISOLATED_GAP * k as u32, count).await
                    }
                };
                (t, phase)
            })
        })
        .collect();
    let mut all = Phase::default();
    let mut tablets = Vec::new();
    for task in tasks {
        let (t, phase) = task.await.expect("a tablet's task panicked");
        tablets.push(t);
        all.merge(phase);
    }
    all.sort();
    (tablets, all)
}

/// A change sent and not yet seen on the socket.
struct Pending {
    code: i32,
    sent: Instant,
}

/// One tablet's part of phase 1.
async fn tablet_updates(
    t: &mut Tablet,
    client: &reqwest::Client,
    url: &str,
    schedule: impl Fn(usize) -> Instant,
    count: usize,
) -> Phase {
    let mut phase = Phase::default();
    let mut pending: VecDeque<Pending> = VecDeque::new();
    let mut n = 0;
    let mut socket_open = true;
    // Anything still on the socket from the set-up is not a change of this phase.
    while t.frames.try_recv().is_ok() {}
    loop {
        // Frames stamped so far first, then what has waited too long for one.
        let now = Instant::now();
        while let Ok((at, text)) = t.frames.try_recv() {
            match_frame(&mut phase, &mut pending, at, &text);
        }
        while pending.front().is_some_and(|p| now >= p.sent + PUSH_WITHIN) {
            pending.pop_front();
            phase.push_missing += 1;
        }
        let next = (n < count).then(|| schedule(n));
        let Some(wake) = next.into_iter().chain(pending.front().map(|p| p.sent + PUSH_WITHIN)).min() else {
            break;
        };
        tokio::select! {
            frame = t.frames.recv(), if socket_open => match frame {
                Some((at, text)) => match_frame(&mut phase, &mut pending, at, &text),
                None => {
                    // The remaining sends still run; their frames count as missing.
                    phase.fail(format!("tablet {}: its websocket closed", t.uuid));
                    socket_open = false;
                }
            },
            _ = tokio::time::sleep_until(wake) => {}
        }
        if let Some(due) = next
            && Instant::now() >= due
        {
            let code = if t.code == CODE_UP { CODE_DOWN } else { CODE_UP };
            n += 1;
            let sent = Instant::now();
            phase.max_behind_ms = phase.max_behind_ms.max((sent - due).as_secs_f64() * 1000.0);
            phase.sent += 1;
            let body = json!({"device_uuid": t.uuid, "activity_code_id": code});
            match post(client, url, &body).await {
                Ok((200, text)) if text == r#"{"success": true}"# => {
                    phase.http_ms.push(sent.elapsed().as_secs_f64() * 1000.0);
                    pending.push_back(Pending { code, sent });
                    t.code = code;
                }
                Ok((status, text)) => phase.fail(format!("/android-update on machine {}: {status} {text}", t.machine)),
                Err(e) => phase.fail(format!("/android-update on machine {}: {e}", t.machine)),
            }
        }
    }
    phase
}

/// Matches a frame to the oldest change of its code sent before it arrived.
fn match_frame(phase: &mut Phase, pending: &mut VecDeque<Pending>, at: Instant, text: &str) {
    let code = serde_json::from_str::<Value>(text)
        .ok()
        .filter(|v| v["action"] == "activity_change")
        .and_then(|v| v["activity_code_id"].as_i64());
    let found = code.and_then(|code| pending.iter().position(|p| i64::from(p.code) == code && p.sent <= at));
    let Some(i) = found else {
        phase.unmatched_frames += 1;
        return;
    };
    let p = pending.remove(i).expect("a pending change at the found index");
    let waited = at - p.sent;
    if waited <= PUSH_WITHIN {
        phase.push_ms.push(waited.as_secs_f64() * 1000.0);
    } else {
        phase.push_missing += 1;
    }
    // Changes sent before this one whose frames have not come never will: the socket tells only the
    // newest activity.
    let older = pending.iter().take_while(|q| q.sent < p.sent).count();
    phase.push_missing += older;
    pending.drain(..older);
}

/// POSTs `body`; the status and the whole answer.
async fn post(client: &reqwest::Client, url: &str, body: &Value) -> Result<(u16, String), reqwest::Error> {
    let r = client.post(url).json(body).send().await?;
    let status = r.status().as_u16();
    Ok((status, r.text().await?))
}

/// Phase 2: every tablet asks `/check-state` at its share of the rate, as the app does when a screen
/// closes; each answer must show the running job.
async fn check_state_phase(tablets: &[Tablet], client: &reqwest::Client, http: &str, shape: Shape) -> Phase {
    let start = Instant::now() + Duration::from_millis(200);
    let url = format!("{http}/check-state");
    let tasks: Vec<_> = tablets
        .iter()
        .enumerate()
        .map(|(k, t)| {
            let client = client.clone();
            let url = url.clone();
            let uuid = t.uuid.clone();
            let machine = t.machine;
            tokio::spawn(async move {
                let mut phase = Phase::default();
                for n in 0..shape.per_tablet() {
                    let due = send_time(start, shape, k, n);
                    tokio::time::sleep_until(due).await;
                    let sent = Instant::now();
                    phase.max_behind_ms = phase.max_behind_ms.max((sent - due).as_secs_f64() * 1000.0);
                    phase.sent += 1;
                    let r = client.get(&url).query(&[("device_uuid", &uuid)]).send().await;
                    let answer = match r {
                        Ok(r) => {
                            let status = r.status().as_u16();
                            r.text().await.map(|text| (status, text))
                        }
                        Err(e) => Err(e),
                    };
                    match answer {
                        Ok((200, text))
                            if serde_json::from_str::<Value>(&text)
                                .is_ok_and(|v| v["state"] == "active_job" && v["job_number"] == "J1") =>
                        {
                            phase.http_ms.push(sent.elapsed().as_secs_f64() * 1000.0)
                        }
                        Ok((status, text)) => phase.fail(format!("/check-state on machine {machine}: {status} {text}")),
                        Err(e) => phase.fail(format!("/check-state on machine {machine}: {e}")),
                    }
                }
                phase
            })
        })
        .collect();
    let mut all = Phase::default();
    for task in tasks {
        all.merge(task.await.expect("a tablet's task panicked"));
    }
    all.sort();
    all
}

/// What the database holds after the changes: one new activity per accepted change, and every machine on
/// the code of its tablet's last accepted change.
struct Stored {
    activities: i64,
    accepted: usize,
    machines_on_last_code: usize,
}

async fn check_stored(pool: &PgPool, tablets: &[Tablet], accepted: usize, since: chrono::DateTime<Utc>) -> Stored {
    let machines: Vec<i32> = tablets.iter().map(|t| t.machine).collect();
    let activities: i64 =
        sqlx::query_scalar("SELECT count(*) FROM activity WHERE machine_id = ANY($1) AND start_time >= $2")
            .bind(&machines)
            .bind(since)
            .fetch_one(pool)
            .await
            .expect("count the new activities");
    let codes: Vec<(i32, i32)> = sqlx::query_as("SELECT id, current_code_id FROM machine WHERE id = ANY($1)")
        .bind(&machines)
        .fetch_all(pool)
        .await
        .expect("read the machines' codes");
    let machines_on_last_code = tablets.iter().filter(|t| codes.contains(&(t.machine, t.code))).count();
    Stored { activities, accepted, machines_on_last_code }
}

// ---------------------------------------------------------------------------------------------------
// Results

struct Results {
    host: HostInfo,
    shape: Shape,
    pg_version: String,
    updates: Phase,
    isolated: Phase,
    check_states: Phase,
    stored: Stored,
    stray_frames: usize,
    run_s: f64,
}

/// The nearest-rank quantile of sorted values.
fn quantile(sorted: &[f64], q: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    Some(sorted[rank - 1])
}

fn ms(v: Option<f64>) -> String {
    v.map(|v| format!("{v:.1}")).unwrap_or_else(|| "–".into())
}

/// One line of the table: name, samples, p50, p99, max, what went wrong.
struct Row {
    name: &'static str,
    samples: usize,
    p50: Option<f64>,
    p99: Option<f64>,
    max: Option<f64>,
    missing: String,
}

impl Results {
    fn rows(&self) -> [Row; 5] {
        let u = &self.updates;
        let i = &self.isolated;
        let c = &self.check_states;
        let never = |p: &Phase| format!("{} never arrived within {} s", p.push_missing, PUSH_WITHIN.as_secs());
        let row = |name, v: &[f64], missing| Row {
            name,
            samples: v.len(),
            p50: quantile(v, 0.5),
            p99: quantile(v, 0.99),
            max: v.last().copied(),
            missing,
        };
        [
            row("POST /android-update round trip", &u.http_ms, format!("{} of {} failed", u.failed, u.sent)),
            row("/android-update → activity_change frame", &u.push_ms, never(u)),
            row("one at a time: /android-update round trip", &i.http_ms, format!("{} of {} failed", i.failed, i.sent)),
            row("one at a time: → activity_change frame", &i.push_ms, never(i)),
            row("GET /check-state (active job) round trip", &c.http_ms, format!("{} of {} failed", c.failed, c.sent)),
        ]
    }

    fn notes(&self) -> Vec<String> {
        let u = &self.updates;
        let mut notes = vec![
            format!(
                "sent behind schedule at most: updates {:.1} ms, check-state {:.1} ms",
                u.max_behind_ms, self.check_states.max_behind_ms
            ),
            format!(
                "stored: {} new activities for {} accepted changes; {} of {TABLETS} machines on their tablet's last code",
                self.stored.activities, self.stored.accepted, self.stored.machines_on_last_code
            ),
            format!(
                "frames matching no change: {} under load, {} one at a time, {} during the check-states",
                u.unmatched_frames, self.isolated.unmatched_frames, self.stray_frames
            ),
        ];
        for f in u.failures.iter().chain(&self.isolated.failures).chain(&self.check_states.failures) {
            notes.push(format!("failure: {f}"));
        }
        notes
    }

    fn text(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(
            s,
            "\n{TABLETS} tablets, {RATE} requests/s for {:.1} s per loaded phase, {} changes one at a time; whole run \
             {:.0} s",
            self.shape.window.as_secs_f64(),
            self.shape.isolated_changes(),
            self.run_s
        );
        let _ =
            writeln!(s, "{:<44} {:>8} {:>9} {:>9} {:>9}  missing", "figure", "samples", "p50 ms", "p99 ms", "max ms");
        for r in self.rows() {
            let _ = writeln!(
                s,
                "{:<44} {:>8} {:>9} {:>9} {:>9}  {}",
                r.name,
                r.samples,
                ms(r.p50),
                ms(r.p99),
                ms(r.max),
                r.missing
            );
        }
        for n in self.notes() {
            let _ = writeln!(s, "  {n}");
        }
        s
    }

    fn markdown(&self) -> String {
        let h = &self.host;
        let window = self.shape.window.as_secs_f64();
        let per_tablet = self.shape.per_tablet();
        let mut s = String::new();
        let _ = writeln!(s, "{SECTION_START}");
        let _ = writeln!(s, "## Tablets\n");
        let _ = writeln!(
            s,
            "Written by `benches/tablet.rs` from the numbers it measured; re-run it rather than editing this section.\n"
        );
        let _ = writeln!(
            s,
            "- Command: `cargo bench --bench tablet`; the whole run took {:.0} s (quick check: `OEE_BENCH_QUICK=1 \
             cargo bench --bench tablet`, which leaves this file alone)",
            self.run_s
        );
        s.push_str(&h.report_lines());
        let _ = writeln!(s, "- Database: {}; the embedded private cluster on local disk", self.pg_version);
        let _ = writeln!(
            s,
            "- Set-up: the whole server (broker, ingest, bridge, web) in the bench's own process, HTTP and websockets \
             on 127.0.0.1, one HTTP client with keep-alive for all tablets. {TABLETS} machines in shift (with no \
             shift pattern, so the scheduler leaves them alone), each with a tablet that registered with \
             `GET /check-state`, was paired automatically, logged in user {USER_ID} with `POST /android-login`, \
             started job J1 (ideal cycle time 10 s) with `POST /android-start-job`, and holds \
             `/api/input-device-updates` open\n"
        );
        let _ = writeln!(
            s,
            "Three phases, each tablet waiting for its previous answer before the next request:\n\n\
             1. Under load: `POST /android-update` at {RATE} requests/s offered for {window:.0} s, spread evenly \
             (each tablet every {:.1} s, {per_tablet} requests, tablet k offset by k/{RATE} s), alternating Down (2) \
             and Up (1). Each tablet matches the `activity_change` frames on its socket, stamped on arrival by a \
             task of their own, to its changes. Sent behind schedule at most {:.1} ms.\n\
             2. One at a time: {} changes, each by another tablet, {} ms apart, so that nothing else is in flight.\n\
             3. `GET /check-state` during the job, at {RATE} requests/s for {window:.0} s, spread as in 1. Sent \
             behind schedule at most {:.1} ms.\n\n\
             A `CHECKPOINT` before phases 1 and 3. Latencies are from sending the request to the whole answer, or \
             to the frame's arrival.\n",
            self.shape.period().as_secs_f64(),
            self.updates.max_behind_ms,
            self.shape.isolated_changes(),
            ISOLATED_GAP.as_millis(),
            self.check_states.max_behind_ms
        );
        let _ = writeln!(s, "| Figure | Samples | p50 ms | p99 ms | max ms | Missing |");
        let _ = writeln!(s, "|---|---:|---:|---:|---:|---|");
        for r in self.rows() {
            let _ = writeln!(
                s,
                "| {} | {} | {} | {} | {} | {} |",
                r.name,
                r.samples,
                ms(r.p50),
                ms(r.p99),
                ms(r.max),
                r.missing
            );
        }
        let _ = writeln!(s);
        let _ = writeln!(
            s,
            "Checked: every answer (`{{\"success\": true}}`; `/check-state` in state `active_job` with job J1); {} \
             new activities stored for {} accepted changes; {} of {TABLETS} machines on their tablet's last code; \
             frames matching no change: {} under load, {} one at a time, {} during the check-states.\n",
            self.stored.activities,
            self.stored.accepted,
            self.stored.machines_on_last_code,
            self.updates.unmatched_frames,
            self.isolated.unmatched_frames,
            self.stray_frames
        );
        let _ = writeln!(s, "What bounds each figure:\n");
        let _ = writeln!(
            s,
            "- **`/android-update` round trip**: the bridge reads the tablet and its session, publishes the command \
             to the broker and waits for ingest's verdict, which comes once ingest has judged the change and \
             committed it durably (`synchronous_commit = on`: an fsync of the WAL on local disk) and has crossed \
             the broker back. Two broker hops and one durable commit. At {RATE} requests/s the server is mostly \
             idle, so this is latency, not throughput (the HTTP scenarios above give the throughput)."
        );
        let _ = writeln!(
            s,
            "- **Push latency** (from sending `/android-update` to its frame): the above, then ingest's status \
             publisher reads the changed machines' status from the database and publishes it retained; one broker \
             hop to the bridge and the websocket frame follow. The publisher makes at most one round per 100 ms for \
             all machines, so under load (a change somewhere every {:.0} ms) a change waits for the next round, \
             0–100 ms: that wait is most of the figure, as the one-at-a-time figure, where the publisher is idle \
             when each change arrives, shows. Two changes of one machine within a round become one frame with the \
             later code; here each machine changes only every {:.1} s.",
            1000.0 / f64::from(RATE),
            self.shape.period().as_secs_f64()
        );
        let _ = writeln!(
            s,
            "- **`/check-state`**: reads only (the tablet with its session, the machine with its job, the codes to \
             pick): three indexed queries on a warm database and the JSON body; no broker, no commit."
        );
        let _ = writeln!(s, "{SECTION_END}");
        s
    }
}
