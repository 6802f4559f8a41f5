//! The embedded PostgreSQL under supervision, with the real `oee-server` binary: a cluster stopped or
//! killed while the server runs is started again and nothing sent meanwhile is lost; a server killed with
//! SIGKILL starts again at once on the same data directory; a cluster started by hand is refused with
//! what to do; and a database held down for 30 s under HTTP and MQTT load comes back by itself.

mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use common::*;
use rumqttc::QoS;
use serde_json::json;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{ConnectOptions, PgPool};
use tokio::process::{Child, Command};

/// One server's data directory and ports, and the file its output goes to.
struct Server {
    data_dir: PathBuf,
    http: u16,
    mqtt: u16,
    log: PathBuf,
}

impl Server {
    fn new(name: &str) -> Server {
        let data_dir = scratch_dir(name);
        let log = data_dir.join("server-output.log");
        Server { data_dir, http: free_port(), mqtt: free_port(), log }
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut c = server_binary(args, &self.data_dir, self.http, self.mqtt);
        // An HTTP change waits out a database outage instead of answering 503.
        c.env("OEE_BRIDGE__REPLY_TIMEOUT_MS", "90000")
            // The load devices send no credentials, as the reference system's did.
            .env("OEE_BRIDGE__OPEN_DEVICE_API", "true")
            .env("OEE_BROKER__ALLOW_ANONYMOUS", "true");
        c
    }

    /// Starts `serve`, its output appended to the log file.
    fn spawn(&self) -> Child {
        let out = std::fs::OpenOptions::new().create(true).append(true).open(&self.log).unwrap();
        let err = out.try_clone().unwrap();
        self.command(&["serve"]).stdout(Stdio::from(out)).stderr(Stdio::from(err)).spawn().expect("start oee-server")
    }

    /// Starts `serve` and waits until it answers `/health` with its database up.
    async fn start(&self) -> Child {
        let mut child = self.spawn();
        let url = format!("http://127.0.0.1:{}/health", self.http);
        let client = reqwest::Client::new();
        let started = tokio::time::Instant::now();
        loop {
            if client.get(&url).send().await.is_ok_and(|r| r.status() == 200) {
                return child;
            }
            if let Ok(Some(status)) = child.try_wait() {
                panic!("oee-server exited during start-up ({status}):\n{}", self.output());
            }
            assert!(started.elapsed() < Duration::from_secs(120), "no answer on /health:\n{}", self.output());
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Runs an administration command beside the server.
    async fn run(&self, args: &[&str]) -> (bool, String) {
        let out = self.command(args).output().await.expect("run oee-server");
        (
            out.status.success(),
            format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)),
        )
    }

    /// Adds a machine that follows a pattern without shifts, so no shift change can add activities to
    /// what a test counts, whatever the hour; returns its id.
    async fn add_machine(&self, name: &str) -> i32 {
        let (ok, out) = self.run(&["machine", "add", name]).await;
        assert!(ok, "{out}");
        let id = out.split_whitespace().nth(2).and_then(|w| w.parse().ok()).unwrap_or_else(|| panic!("{out}"));
        let (ok, out) = self.run(&["shift", "add", "No shifts"]).await;
        assert!(ok || out.contains("already exists"), "{out}");
        let (ok, out) = self.run(&["machine", "shift", name, "No shifts"]).await;
        assert!(ok, "{out}");
        // A pattern without shifts is out of shift from the moment the machine follows it: the running
        // scheduler moves the machine there (Closed) by itself. Tests count activities from after that.
        let pool = self.pool().await;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            let now: Option<(i16, i32)> =
                sqlx::query_as("SELECT schedule_state, current_code_id FROM machine WHERE id = $1")
                    .bind(id)
                    .fetch_optional(&pool)
                    .await
                    .ok()
                    .flatten();
            if now == Some((3, 3)) {
                break;
            }
            assert!(tokio::time::Instant::now() < deadline, "machine {id} never left the shift: {now:?}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        pool.close().await;
        id
    }

    fn cluster_dir(&self) -> PathBuf {
        self.data_dir.join("postgres")
    }

    fn output(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// A pool on the server's own database, through the cluster's socket.
    async fn pool(&self) -> PgPool {
        let options = PgConnectOptions::new()
            .socket(self.cluster_dir())
            .port(5432)
            .username(oee_core::store::cluster::SUPERUSER)
            .database(oee_core::store::EMBEDDED_DATABASE)
            .disable_statement_logging();
        // Short waits for a connection: while the database is down a look at it fails soon.
        PgPoolOptions::new()
            .max_connections(2)
            .acquire_timeout(Duration::from_secs(2))
            .connect_with(options)
            .await
            .expect("connect to the server's database")
    }
}

/// `POST /api/machine-state-change` to the server on `http_port`; the status (0: no answer).
async fn post_state(client: &reqwest::Client, http_port: u16, machine: i32, code: i32) -> u16 {
    let r = client
        .post(format!("http://127.0.0.1:{http_port}/api/machine-state-change"))
        .json(&json!({"machine_id": machine, "activity_code_id": code}))
        .timeout(Duration::from_secs(120))
        .send()
        .await;
    r.map_or(0, |r| r.status().as_u16())
}

/// The pid in the cluster's `postmaster.pid`, if it names a live process.
fn postmaster_pid(cluster_dir: &Path) -> Option<i32> {
    let pid: i32 =
        std::fs::read_to_string(cluster_dir.join("postmaster.pid")).ok()?.lines().next()?.trim().parse().ok()?;
    alive(pid).then_some(pid)
}

/// Whether `pid` runs (a zombie does not).
fn alive(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .is_ok_and(|s| s.rsplit(')').next().and_then(|r| r.split_whitespace().next()) != Some("Z"))
}

/// Sends a signal with the `kill` command (no unsafe code in tests).
fn kill(signal: &str, pid: i32) {
    let ok = std::process::Command::new("kill").args([format!("-{signal}"), pid.to_string()]).status().unwrap();
    assert!(ok.success(), "kill -{signal} {pid}");
}

/// Activities of a machine, and its current code; `None` while the database cannot be reached.
async fn stored(pool: &PgPool, machine: i32) -> Option<(i64, i32)> {
    sqlx::query_as(
        "SELECT (SELECT count(*) FROM activity WHERE machine_id = $1), current_code_id FROM machine WHERE id = $1",
    )
    .bind(machine)
    .fetch_one(pool)
    .await
    .ok()
}

/// Stops the server with SIGTERM and checks it stopped its database.
async fn stop(server: &Server, mut child: Child) {
    let pg = postmaster_pid(&server.cluster_dir());
    kill("TERM", child.id().expect("server pid") as i32);
    let status = tokio::time::timeout(Duration::from_secs(60), child.wait()).await.expect("stops within 60 s").unwrap();
    assert!(status.success(), "{status:?}\n{}", server.output());
    assert!(pg.is_none_or(|pg| !alive(pg)), "PostgreSQL stopped with the server");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_stopped_or_killed_under_the_server_is_started_again_and_no_change_is_lost() {
    let server = Server::new("supervised");
    let child = server.start().await;
    let m = server.add_machine("Press").await;
    let pool = server.pool().await;
    let client = reqwest::Client::new();
    let (before, mut code) = stored(&pool, m).await.unwrap();

    // An immediate stop (what `pg_ctl stop -m immediate` sends), then a kill of the postmaster.
    for (round, signal) in ["QUIT", "KILL"].into_iter().enumerate() {
        let pg = postmaster_pid(&server.cluster_dir()).expect("the database runs");
        kill(signal, pg);
        code = if code == 3 { 2 } else { 3 };
        // Sent at once: ingest holds it until the database is back.
        assert_eq!(post_state(&client, server.http, m, code).await, 200, "{}", server.output());
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        loop {
            let now = stored(&pool, m).await;
            if now == Some((before + 1 + round as i64, code)) {
                break;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "round {round}: the change is not stored: (activities, code) = {now:?}, expected ({}, {code})\n{}",
                before + 1 + round as i64,
                server.output()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let again = postmaster_pid(&server.cluster_dir()).expect("the database runs again");
        assert_ne!(again, pg);
        assert!(!alive(pg));
    }
    let log = server.output();
    assert_eq!(log.matches("the embedded PostgreSQL exited while the server runs").count(), 2, "{log}");
    assert!(log.contains("killed by signal 9") && log.contains("the embedded PostgreSQL runs again"), "{log}");
    stop(&server, child).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_killed_with_sigkill_starts_again_at_once_on_the_same_data_directory() {
    let server = Server::new("killed");
    let mut child = server.start().await;
    let m = server.add_machine("Lathe").await;
    let client = reqwest::Client::new();
    for round in 0..3 {
        let code = if round % 2 == 0 { 3 } else { 2 };
        assert_eq!(post_state(&client, server.http, m, code).await, 200);
        let pg = postmaster_pid(&server.cluster_dir()).expect("the database runs");
        // SIGKILL, reaped, and the next server started straight away: its old PostgreSQL is still stopping.
        child.kill().await.unwrap();
        child = server.start().await;
        assert!(!alive(pg), "the old PostgreSQL is gone");
        let pool = server.pool().await;
        assert_eq!(stored(&pool, m).await.map(|s| s.1), Some(code), "the acknowledged change survived");
        pool.close().await;
    }
    stop(&server, child).await;
}

/// `pg_ctl` run as the cluster's owner (`postgres` when the tests run as root, as the server does then).
fn pg_ctl(cluster_dir: &Path, args: &[&str]) -> std::process::Output {
    let bin = std::fs::read_dir("/usr/lib/postgresql")
        .expect("PostgreSQL server binaries in /usr/lib/postgresql (deploy/install-deps.sh)")
        .flatten()
        .map(|e| e.path().join("bin/pg_ctl"))
        .filter(|p| p.is_file())
        .max()
        .expect("pg_ctl");
    let root = std::process::Command::new("id").arg("-u").output().is_ok_and(|o| o.stdout.trim_ascii() == b"0");
    let mut cmd = if root {
        let mut c = std::process::Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(&bin);
        c
    } else {
        std::process::Command::new(&bin)
    };
    cmd.arg("-D").arg(cluster_dir).args(args).output().expect("run pg_ctl")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_started_by_hand_on_the_data_directory_is_refused_with_what_to_do() {
    let server = Server::new("by-hand");
    let child = server.start().await;
    let m = server.add_machine("Drill").await;
    stop(&server, child).await;

    let dir = server.cluster_dir();
    let mut socket = format!("-c listen_addresses= -c unix_socket_directories={}", dir.display());
    // Started by hand as an administrator would: with TimescaleDB preloaded where the database uses it.
    if common::timescale_mode() == oee_core::config::TimescaleMode::Auto {
        socket.push_str(" -c shared_preload_libraries=timescaledb");
    }
    let out =
        pg_ctl(&dir, &["start", "-w", "-t", "60", "-o", &socket, "-l", &dir.join("by-hand.log").to_string_lossy()]);
    assert!(out.status.success(), "{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    let by_hand = postmaster_pid(&dir).expect("the cluster started by hand runs");

    let out = tokio::time::timeout(Duration::from_secs(60), server.command(&["serve"]).output())
        .await
        .expect("refused within 60 s")
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(
        err.contains(&*dir.to_string_lossy())
            && err.contains(&format!("did not start (pid {by_hand})"))
            && err.contains("pg_ctl stop")
            && err.contains("database.url"),
        "{err}"
    );
    assert_eq!(postmaster_pid(&dir), Some(by_hand), "the refusal left the cluster alone");
    // An administration command uses a running cluster as it is, and leaves it running.
    let (ok, out) = server.run(&["machine", "list"]).await;
    assert!(ok && out.contains("Drill"), "{out}");
    assert_eq!(postmaster_pid(&dir), Some(by_hand));

    let out = pg_ctl(&dir, &["stop", "-w", "-m", "fast"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let child = server.start().await;
    let pool = server.pool().await;
    assert!(stored(&pool, m).await.is_some());
    pool.close().await;
    stop(&server, child).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_held_down_for_30_s_under_load_comes_back_by_itself_and_loses_nothing() {
    const PER_MACHINE: usize = 50;
    const PACE: Duration = Duration::from_millis(350);
    let server = Server::new("outage");
    let child = server.start().await;
    let http_machines = [server.add_machine("HTTP 1").await, server.add_machine("HTTP 2").await];
    let mqtt_machines = [server.add_machine("MQTT 1").await, server.add_machine("MQTT 2").await];
    let pool = server.pool().await;
    let mut first = Vec::new();
    for m in http_machines.into_iter().chain(mqtt_machines) {
        first.push(stored(&pool, m).await.unwrap());
    }
    // Each machine alternates between Down and Closed, starting with the code it does not have, so every
    // change is a new activity.
    let code_at = |start: i32, i: usize| if i.is_multiple_of(2) == (start == 3) { 2 } else { 3 };

    let (mqtt, mut replies) = mqtt_client(server.mqtt, "load-plc").await;
    let reply = "oee/v1/replies/test/load";
    mqtt.subscribe(reply, QoS::AtLeastOnce).await.unwrap();
    let mut senders = Vec::new();
    for (k, &m) in http_machines.iter().enumerate() {
        let start = first[k].1;
        let http = reqwest::Client::new();
        let port = server.http;
        senders.push(tokio::spawn(async move {
            let mut acknowledged = 0;
            for i in 0..PER_MACHINE {
                // One at a time: a change waits for the one before, so their order is the machine's.
                if post_state(&http, port, m, code_at(start, i)).await == 200 {
                    acknowledged += 1;
                }
                tokio::time::sleep(PACE).await;
            }
            acknowledged
        }));
    }
    for (k, &m) in mqtt_machines.iter().enumerate() {
        let start = first[2 + k].1;
        let client = mqtt.clone();
        senders.push(tokio::spawn(async move {
            for i in 0..PER_MACHINE {
                let body = json!({
                    "activity_code_id": code_at(start, i), "request_id": format!("{m}-{i}"), "reply_to": reply
                });
                let topic = format!("oee/v1/machines/{m}/state");
                client.publish(topic, QoS::AtLeastOnce, false, serde_json::to_vec(&body).unwrap()).await.unwrap();
                tokio::time::sleep(PACE).await;
            }
            0
        }));
    }

    // Five seconds into the load the database goes down and cannot start for 30 s: its directory is
    // closed to it, then its postmaster is stopped at once. The supervisor keeps trying meanwhile.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let dir = server.cluster_dir();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o000)).unwrap();
    let pg = postmaster_pid(&dir).expect("the database runs");
    kill("QUIT", pg);
    let down = tokio::time::Instant::now();
    within(Duration::from_secs(20), "the supervisor has tried to start it again", || async {
        server.output().contains("the embedded PostgreSQL did not start again")
    })
    .await;
    assert!(stored(&pool, http_machines[0]).await.is_none(), "the database is down");
    tokio::time::sleep_until(down + Duration::from_secs(30)).await;
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700)).unwrap();

    let mut acknowledged = 0;
    for s in senders {
        acknowledged += tokio::time::timeout(Duration::from_secs(150), s).await.expect("the senders finish").unwrap();
    }
    let mut verdicts = BTreeSet::new();
    within(Duration::from_secs(60), "every MQTT command has its verdict", || {
        while let Ok(p) = replies.try_recv() {
            let v: serde_json::Value = serde_json::from_slice(&p.payload).unwrap();
            assert_eq!(v["status"], 200, "{v}");
            verdicts.insert(v["request_id"].as_str().unwrap().to_string());
        }
        let n = verdicts.len();
        async move { n == 2 * PER_MACHINE }
    })
    .await;
    acknowledged += verdicts.len();

    let mut total = 0;
    for (k, m) in http_machines.into_iter().chain(mqtt_machines).enumerate() {
        let (count, code) = stored(&pool, m).await.expect("the database is back");
        let made = (count - first[k].0) as usize;
        assert_eq!((made, code), (PER_MACHINE, code_at(first[k].1, PER_MACHINE - 1)), "machine {m}");
        total += made;
    }
    let sent = 4 * PER_MACHINE;
    println!("sent {sent}, acknowledged {acknowledged}, stored {total} (HTTP and MQTT, 30 s without the database)");
    assert_eq!((acknowledged, total), (sent, sent));
    let log = server.output();
    assert!(log.contains("the embedded PostgreSQL runs again"), "{log}");
    assert!(log.matches("the embedded PostgreSQL did not start again").count() >= 3, "{log}");
    pool.close().await;
    stop(&server, child).await;
}
