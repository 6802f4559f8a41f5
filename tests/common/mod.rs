//! The end-to-end test harness: one real PostgreSQL cluster per test binary (started on first use, in a
//! temporary directory, stopped when the test process exits), a template database migrated and seeded
//! once and cloned for each test, and the real server started on free ports.

#![allow(dead_code)]

pub mod chromium;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use oee_core::Config;
use oee_core::store::cluster::{ClusterOptions, EmbeddedCluster};
use oee_server::{App, Services};
use sqlx::postgres::PgConnectOptions;
use sqlx::{ConnectOptions, Connection, PgPool};

const TEMPLATE: &str = "oee_template";

struct Shared {
    /// Kept for the life of the process; the server stops with it.
    _cluster: Mutex<EmbeddedCluster>,
    socket_dir: PathBuf,
    base: PgConnectOptions,
}

static SHARED: OnceLock<Shared> = OnceLock::new();

/// A scratch directory for this test process, removed from earlier runs whose process is gone.
pub fn scratch_dir(name: &str) -> PathBuf {
    let root = std::env::temp_dir();
    if let Ok(entries) = std::fs::read_dir(&root) {
        for e in entries.flatten() {
            let n = e.file_name().to_string_lossy().to_string();
            if let Some(pid) = n.strip_prefix("oee-test-").and_then(|p| p.parse::<u32>().ok())
                && !Path::new(&format!("/proc/{pid}")).exists()
            {
                let _ = std::fs::remove_dir_all(e.path());
            }
        }
    }
    let dir = root.join(format!("oee-test-{}", std::process::id())).join(name);
    std::fs::create_dir_all(&dir).expect("create scratch dir");
    // The cluster may run as an unprivileged user (when tests run as root): let it pass through.
    for d in [root.join(format!("oee-test-{}", std::process::id())), dir.clone()] {
        use std::os::unix::fs::PermissionsExt;
        let _ = std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o755));
    }
    dir
}

fn shared() -> &'static Shared {
    SHARED.get_or_init(|| {
        let mode = timescale_mode();
        let settings = if mode == oee_core::config::TimescaleMode::Auto {
            oee_core::store::cluster::with_timescale_preload(vec![])
        } else {
            vec![]
        };
        let opts = ClusterOptions {
            dir: scratch_dir("cluster").join("pg"),
            bin_dir: PathBuf::new(),
            run_as: "postgres".into(),
            settings,
            disposable: true,
        };
        let cluster = EmbeddedCluster::start(&opts).expect("start the test PostgreSQL cluster");
        let base = cluster.connect_options("postgres");
        let socket_dir = base.get_socket().expect("unix socket").to_path_buf();
        // The template is built on a runtime of its own: pools belong to the runtime that made them.
        let base2 = base.clone();
        std::thread::spawn(move || {
            tokio::runtime::Runtime::new().unwrap().block_on(async {
                let mut admin = base2.connect().await.expect("connect to the test cluster");
                sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE DATABASE {TEMPLATE}")))
                    .execute(&mut admin)
                    .await
                    .expect("create template");
                admin.close().await.ok();
                let pool = oee_core::store::connect(base2.clone().database(TEMPLATE), 2).await.unwrap();
                oee_core::store::prepare(&pool, mode).await.expect("migrate");
                oee_core::store::seed::seed_first_run(&pool, chrono::Utc::now()).await.expect("seed");
                pool.close().await;
            })
        })
        .join()
        .expect("template thread");
        Shared { _cluster: Mutex::new(cluster), socket_dir, base }
    })
}

/// Which mode the tests' databases run in: TimescaleDB hypertables when its library is installed, unless
/// `OEE_TEST_TIMESCALEDB=off` asks for plain tables (CI runs the time-series tests both ways). The first
/// call says which on standard error, past the test output capture, so a run's log shows its mode.
pub fn timescale_mode() -> oee_core::config::TimescaleMode {
    use oee_core::config::TimescaleMode;
    static MODE: OnceLock<TimescaleMode> = OnceLock::new();
    *MODE.get_or_init(|| {
        let off = std::env::var("OEE_TEST_TIMESCALEDB").is_ok_and(|v| v == "off");
        let (mode, line) = if off {
            (TimescaleMode::Off, "plain PostgreSQL tables (OEE_TEST_TIMESCALEDB=off)")
        } else if !oee_core::store::cluster::timescale_library_installed(Path::new("")) {
            (TimescaleMode::Off, "plain PostgreSQL tables (TimescaleDB is not installed for this PostgreSQL)")
        } else {
            (TimescaleMode::Auto, "TimescaleDB hypertables (OEE_TEST_TIMESCALEDB=off for plain tables)")
        };
        use std::io::Write;
        let _ = writeln!(std::io::stderr(), "tests run on: {line}");
        mode
    })
}

/// A database of its own for one test.
#[derive(Clone, Debug)]
pub struct TestDb {
    pub name: String,
    pub options: PgConnectOptions,
}

impl TestDb {
    /// A URL for `database.url`.
    pub fn url(&self) -> String {
        format!(
            "postgres://{}@localhost:5432/{}?host={}",
            oee_core::store::cluster::SUPERUSER,
            self.name,
            shared().socket_dir.display()
        )
    }

    pub async fn pool(&self) -> PgPool {
        oee_core::store::connect(self.options.clone(), 4).await.expect("connect to the test database")
    }
}

async fn create_database(template: Option<&str>) -> TestDb {
    let s = shared();
    let name = format!("t_{}", uuid::Uuid::new_v4().simple());
    let sql = match template {
        Some(t) => format!("CREATE DATABASE {name} TEMPLATE {t}"),
        None => format!("CREATE DATABASE {name}"),
    };
    let mut admin = s.base.connect().await.expect("connect to the test cluster");
    // Copies of one template are serialised by PostgreSQL; retry if it is busy.
    for attempt in 0.. {
        match sqlx::raw_sql(sqlx::AssertSqlSafe(sql.clone())).execute(&mut admin).await {
            Ok(_) => break,
            Err(e) if attempt < 50 && e.to_string().contains("being accessed") => {
                tokio::time::sleep(Duration::from_millis(100)).await
            }
            Err(e) => panic!("create test database: {e}"),
        }
    }
    admin.close().await.ok();
    TestDb { options: s.base.clone().database(&name), name }
}

/// A migrated and seeded database (a copy of the template).
pub async fn seeded_db() -> TestDb {
    create_database(Some(TEMPLATE)).await
}

/// An empty database, as on a first start.
pub async fn empty_db() -> TestDb {
    create_database(None).await
}

/// A port nothing listens on right now, for a server a test starts (which binds it a moment later).
///
/// The ports come from below Linux's ephemeral range (32768–60999), so no outgoing connection, which takes
/// its local port from that range, can take one between this choice and the server's bind; each process
/// starts at its own place (by its id) and never hands out a port twice.
pub fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering};
    const FIRST: u32 = 20_000;
    const COUNT: u32 = 12_000;
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let start = std::process::id().wrapping_mul(997) % COUNT;
    for _ in 0..COUNT {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let port = (FIRST + (start + n) % COUNT) as u16;
        let tcp = std::net::TcpListener::bind(("127.0.0.1", port));
        let udp = std::net::UdpSocket::bind(("127.0.0.1", port));
        if tcp.is_ok() && udp.is_ok() {
            return port;
        }
    }
    panic!("no free port between {FIRST} and {}", FIRST + COUNT)
}

/// A config for a server on free loopback ports against `db`.
pub fn test_config(db: &TestDb) -> Config {
    let mut c = Config { data_dir: scratch_dir(&db.name), ..Config::default() };
    c.plant.timezone = "UTC".into();
    c.http.listen = "127.0.0.1:0".parse().unwrap();
    let mqtt_port = free_port();
    c.broker.listen = SocketAddr::from(([127, 0, 0, 1], mqtt_port));
    c.mqtt.port = mqtt_port;
    c.database.url = db.url();
    c.database.max_connections = 8;
    c.database.timescaledb = timescale_mode();
    c.bridge.reply_timeout_ms = 10_000;
    c.tablets.discovery_listen = "127.0.0.1:0".into();
    // The tests' own MQTT clients connect without credentials; the access tests turn this off.
    c.broker.allow_anonymous = true;
    // Likewise over HTTP: the reference-compatibility tests post without a token, as its devices did.
    c.bridge.open_device_api = true;
    // And tablets register on their first request, as the reference's did (contract C9).
    c.tablets.open_registration = true;
    c
}

/// A running server and what a test needs to talk to it.
pub struct TestApp {
    pub app: App,
    pub db: TestDb,
    pub pool: PgPool,
    pub http: String,
    pub mqtt_port: u16,
    pub client: reqwest::Client,
    /// A client that sends an admin-scope API token: for the web's read and admin APIs, which refuse
    /// anonymous callers.
    pub api: reqwest::Client,
}

/// Starts every service against a fresh seeded database.
pub async fn spawn_app() -> TestApp {
    let db = seeded_db().await;
    spawn_app_with(test_config(&db), db, Services::ALL).await
}

/// Starts `services` with `config` against `db`.
pub async fn spawn_app_with(config: Config, db: TestDb, services: Services) -> TestApp {
    let mqtt_port = config.mqtt.port;
    let app = App::start(&config, services).await.expect("start the server");
    let http = app.http_addr.map(|a| format!("http://{a}")).unwrap_or_default();
    let pool = db.pool().await;
    let api = api_client(&pool, oee_core::store::account::TokenScope::Admin).await;
    TestApp { app, db, pool, http, mqtt_port, client: reqwest::Client::new(), api }
}

/// A client whose every request carries a new API token of `scope`.
pub async fn api_client(pool: &PgPool, scope: oee_core::store::account::TokenScope) -> reqwest::Client {
    let name = format!("tests {}", uuid::Uuid::new_v4());
    let (_, secret) = oee_core::store::account::create_token(pool, &name, scope, None, chrono::Utc::now())
        .await
        .expect("create an API token");
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert(
        reqwest::header::AUTHORIZATION,
        reqwest::header::HeaderValue::from_str(&format!("Bearer {secret}")).expect("a token is a header value"),
    );
    reqwest::Client::builder().default_headers(headers).build().expect("build the HTTP client")
}

impl TestApp {
    /// The reference's worked example (its §6.9) on machine `name` on 2024-01-10: job J1 08:00–12:00 (ideal
    /// cycle 30 s, 90 good, 10 rejects); Up 08–10, Down 10–11, Up 11–12, Closed 12–13. Returns the machine.
    pub async fn worked_example(&self, name: &str) -> i32 {
        let m = self.add_machine(name).await;
        let job: i64 = sqlx::query_scalar(
            "INSERT INTO job (machine_id, job_number, ideal_cycle_time_s, start_time, end_time, active) \
             VALUES ($1, 'J1', 30, '2024-01-10 08:00Z', '2024-01-10 12:00Z', false) RETURNING id",
        )
        .bind(m)
        .fetch_one(&self.pool)
        .await
        .unwrap();
        sqlx::query(
            "INSERT INTO production_quantity (machine_id, job_id, start_time, end_time, quantity_good, \
             quantity_rejects) VALUES ($1, $2, '2024-01-10 08:00Z', '2024-01-10 12:00Z', 90, 10)",
        )
        .bind(m)
        .bind(job)
        .execute(&self.pool)
        .await
        .unwrap();
        sqlx::query(
            "INSERT INTO activity (machine_id, activity_code_id, start_time, end_time) VALUES \
             ($1, 1, '2024-01-10 08:00Z', '2024-01-10 10:00Z'), ($1, 2, '2024-01-10 10:00Z', '2024-01-10 11:00Z'), \
             ($1, 1, '2024-01-10 11:00Z', '2024-01-10 12:00Z'), ($1, 3, '2024-01-10 12:00Z', '2024-01-10 13:00Z')",
        )
        .bind(m)
        .execute(&self.pool)
        .await
        .unwrap();
        m
    }

    /// Adds a machine the way `oee-server machine add` does; returns its id.
    pub async fn add_machine(&self, name: &str) -> i32 {
        oee_core::store::machine::add_machine(&self.pool, name, chrono_tz::Tz::UTC, chrono::Utc::now())
            .await
            .expect("add machine")
            .id
    }

    /// Puts the machine in or out of shift directly (the shift scheduler's job).
    pub async fn set_schedule(&self, machine: i32, in_shift: bool) {
        sqlx::query("UPDATE machine SET schedule_state = $2 WHERE id = $1")
            .bind(machine)
            .bind(if in_shift { 1i16 } else { 3i16 })
            .execute(&self.pool)
            .await
            .unwrap();
    }

    /// Gives the machine a running job directly (job commands are not part of this path).
    pub async fn start_job(&self, machine: i32) -> i64 {
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO job (machine_id, job_number, ideal_cycle_time_s, start_time) VALUES ($1, 'J1', 10, now()) RETURNING id",
        )
        .bind(machine)
        .fetch_one(&self.pool)
        .await
        .unwrap();
        sqlx::query("UPDATE machine SET active_job_id = $2 WHERE id = $1")
            .bind(machine)
            .bind(id)
            .execute(&self.pool)
            .await
            .unwrap();
        id
    }

    /// Moves the start of the machine's open activity back to `at`, as if it had begun then.
    pub async fn backdate_current_activity(&self, machine: i32, at: chrono::DateTime<chrono::Utc>) {
        sqlx::query("UPDATE activity SET start_time = $2 WHERE machine_id = $1 AND end_time IS NULL")
            .bind(machine)
            .bind(at)
            .execute(&self.pool)
            .await
            .unwrap();
        sqlx::query("UPDATE machine SET current_since = $2 WHERE id = $1")
            .bind(machine)
            .bind(at)
            .execute(&self.pool)
            .await
            .unwrap();
    }

    /// The machine's current code, from its row.
    pub async fn current_code(&self, machine: i32) -> i32 {
        sqlx::query_scalar("SELECT current_code_id FROM machine WHERE id = $1")
            .bind(machine)
            .fetch_one(&self.pool)
            .await
            .unwrap()
    }

    /// Codes of the machine's activities in time order, and how many are open.
    pub async fn activities(&self, machine: i32) -> (Vec<i32>, i64) {
        let codes: Vec<i32> =
            sqlx::query_scalar("SELECT activity_code_id FROM activity WHERE machine_id = $1 ORDER BY start_time, id")
                .bind(machine)
                .fetch_all(&self.pool)
                .await
                .unwrap();
        let open: i64 = sqlx::query_scalar("SELECT count(*) FROM activity WHERE machine_id = $1 AND end_time IS NULL")
            .bind(machine)
            .fetch_one(&self.pool)
            .await
            .unwrap();
        (codes, open)
    }

    /// `POST /api/machine-state-change` with a JSON body.
    pub async fn post_state(&self, body: serde_json::Value) -> (u16, String, String) {
        let r = self.client.post(format!("{}/api/machine-state-change", self.http)).json(&body).send().await.unwrap();
        let status = r.status().as_u16();
        let ctype = r.headers().get("content-type").map(|v| v.to_str().unwrap().to_string()).unwrap_or_default();
        (status, ctype, r.text().await.unwrap())
    }

    /// An MQTT client on this server's broker, with its event loop driven in the background; received
    /// publishes arrive on the returned channel.
    pub async fn mqtt_client(
        &self,
        id: &str,
    ) -> (rumqttc::AsyncClient, tokio::sync::mpsc::UnboundedReceiver<rumqttc::Publish>) {
        mqtt_client(self.mqtt_port, id).await
    }

    /// An MQTT client logged in as the server itself (with the server's secret), for what only the server
    /// may publish, such as tablet session commands.
    pub async fn server_mqtt_client(
        &self,
        id: &str,
    ) -> (rumqttc::AsyncClient, tokio::sync::mpsc::UnboundedReceiver<rumqttc::Publish>) {
        let secret = oee_core::store::device::server_secret(&self.pool).await.unwrap();
        mqtt_client_as(self.mqtt_port, id, Some((oee_core::access::SERVER_USER, &secret))).await
    }
}

/// A rumqttc client of the broker on `port`, without credentials.
pub async fn mqtt_client(
    port: u16,
    id: &str,
) -> (rumqttc::AsyncClient, tokio::sync::mpsc::UnboundedReceiver<rumqttc::Publish>) {
    mqtt_client_as(port, id, None).await
}

/// A rumqttc client of the broker on `port`, logged in with `login` (user name, password) if given.
pub async fn mqtt_client_as(
    port: u16,
    id: &str,
    login: Option<(&str, &str)>,
) -> (rumqttc::AsyncClient, tokio::sync::mpsc::UnboundedReceiver<rumqttc::Publish>) {
    let mut o = rumqttc::MqttOptions::new(id, "127.0.0.1", port);
    o.set_keep_alive(Duration::from_secs(10));
    // As large as the broker takes (rumqttc's own default is 10 KiB, which would end the connection).
    o.set_max_packet_size(1 << 20, 1 << 20);
    if let Some((user, password)) = login {
        o.set_credentials(user, password);
    }
    let (client, mut eventloop) = rumqttc::AsyncClient::new(o, 1000);
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
    tokio::spawn(async move {
        let mut ready = Some(ready_tx);
        loop {
            match eventloop.poll().await {
                Ok(rumqttc::Event::Incoming(rumqttc::Packet::ConnAck(_))) => {
                    if let Some(r) = ready.take() {
                        let _ = r.send(());
                    }
                }
                Ok(rumqttc::Event::Incoming(rumqttc::Packet::Publish(p))) => {
                    if tx.send(p).is_err() {
                        return;
                    }
                }
                Ok(_) => {}
                Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
    });
    tokio::time::timeout(Duration::from_secs(10), ready_rx).await.expect("MQTT connect").unwrap();
    (client, rx)
}

/// Waits for the next publish on `rx` whose topic is `topic`.
pub async fn next_on(
    rx: &mut tokio::sync::mpsc::UnboundedReceiver<rumqttc::Publish>,
    topic: &str,
) -> serde_json::Value {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let p = tokio::time::timeout_at(deadline, rx.recv())
            .await
            .unwrap_or_else(|_| panic!("nothing on {topic}"))
            .unwrap();
        if p.topic == topic {
            return serde_json::from_slice(&p.payload).unwrap();
        }
    }
}

/// The topic commands sent with [`command`] are answered on; subscribe to it first.
pub const REPLY: &str = "oee/v1/replies/test/commands";

/// Publishes `body` to `topic` with [`REPLY`] as its `reply_to` and waits for the verdict.
pub async fn command(
    client: &rumqttc::AsyncClient,
    rx: &mut tokio::sync::mpsc::UnboundedReceiver<rumqttc::Publish>,
    topic: String,
    mut body: serde_json::Value,
) -> serde_json::Value {
    body["reply_to"] = serde_json::json!(REPLY);
    client.publish(topic, rumqttc::QoS::AtLeastOnce, false, serde_json::to_vec(&body).unwrap()).await.unwrap();
    next_on(rx, REPLY).await
}

/// Polls `check` until it returns true (10 s at most).
pub async fn eventually<F, Fut>(what: &str, check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    within(Duration::from_secs(10), what, check).await
}

/// Polls `check` until it returns true, for at most `limit`.
pub async fn within<F, Fut>(limit: Duration, what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + limit;
    while !check().await {
        assert!(tokio::time::Instant::now() < deadline, "timed out after {limit:?} waiting until {what}");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// Runs an outside MQTT client tool (`mosquitto_pub`, `mosquitto_sub`) from Debian's mosquitto-clients.
/// Asynchronous, so the broker on this test's runtime keeps running meanwhile.
pub fn mosquitto_tool(tool: &str) -> tokio::process::Command {
    let found = std::env::var("PATH").unwrap_or_default().split(':').any(|d| Path::new(d).join(tool).is_file());
    assert!(found, "{tool} is not installed: run deploy/install-deps.sh (Debian package mosquitto-clients)");
    let mut cmd = tokio::process::Command::new(tool);
    cmd.kill_on_drop(true);
    cmd
}

/// What a late subscriber gets on `topic` of the broker on `port` (its retained message, or the first one
/// published within `wait_s` seconds), as JSON; `None` when nothing came. Subscribes with Debian's
/// `mosquitto_sub`, an outside client.
pub async fn late_subscriber(port: u16, topic: &str, wait_s: u32) -> Option<serde_json::Value> {
    let out = mosquitto_tool("mosquitto_sub")
        .args(["-h", "127.0.0.1", "-p", &port.to_string(), "-C", "1", "-W", &wait_s.to_string(), "-t", topic])
        .output()
        .await
        .expect("run mosquitto_sub");
    if !out.status.success() || out.stdout.is_empty() {
        return None;
    }
    serde_json::from_slice(&out.stdout).ok()
}

/// A Mosquitto broker on a free loopback port, stopped on drop.
pub struct Mosquitto {
    pub port: u16,
    child: Child,
}

impl Mosquitto {
    pub fn start() -> Mosquitto {
        Mosquitto::start_with("allow_anonymous true\n", |_| {})
    }

    /// A Mosquitto with `conf` added to its listener and persistence lines; `prepare` may first write
    /// files into its directory (a password file, an ACL file).
    pub fn start_with(conf: &str, prepare: impl FnOnce(&Path)) -> Mosquitto {
        let bin = ["/usr/sbin/mosquitto", "/usr/bin/mosquitto"]
            .into_iter()
            .find(|p| Path::new(p).is_file())
            .expect("mosquitto is not installed: run deploy/install-deps.sh (Debian package mosquitto)");
        let port = free_port();
        let dir = scratch_dir(&format!("mosquitto-{port}"));
        prepare(&dir);
        let conf_text = conf.replace("{dir}", &dir.to_string_lossy());
        let conf = dir.join("mosquitto.conf");
        std::fs::write(
            &conf,
            format!("listener {port} 127.0.0.1\n{conf_text}persistence false\nmax_queued_messages 100000\n"),
        )
        .unwrap();
        let child = Command::new(bin)
            .arg("-c")
            .arg(&conf)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start mosquitto");
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(std::time::Instant::now() < deadline, "mosquitto did not start on port {port}");
            std::thread::sleep(Duration::from_millis(20));
        }
        Mosquitto { port, child }
    }
}

impl Drop for Mosquitto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The real `oee-server` binary with `args`, on a data directory of its own, its HTTP port and its broker's
/// port on loopback (`mqtt` is also where its clients look for the broker), the plant on UTC and tablet
/// discovery on a free loopback port. Callers add their own switches.
pub fn server_binary(args: &[&str], data_dir: &Path, http: u16, mqtt: u16) -> tokio::process::Command {
    let mut c = tokio::process::Command::new(env!("CARGO_BIN_EXE_oee-server"));
    c.args(args)
        .env("OEE_DATA_DIR", data_dir)
        .env("OEE_PLANT__TIMEZONE", "UTC")
        .env("OEE_HTTP__LISTEN", format!("127.0.0.1:{http}"))
        .env("OEE_BROKER__LISTEN", format!("127.0.0.1:{mqtt}"))
        .env("OEE_MQTT__PORT", mqtt.to_string())
        .env("OEE_TABLETS__DISCOVERY_LISTEN", "127.0.0.1:0")
        .env(
            "OEE_DATABASE__TIMESCALEDB",
            if timescale_mode() == oee_core::config::TimescaleMode::Off { "off" } else { "auto" },
        )
        .kill_on_drop(true);
    c
}

/// A browser: a client that keeps cookies and does not follow redirects, signed in as someone.
pub struct Browser {
    pub client: reqwest::Client,
    pub http: String,
}

impl Browser {
    /// A browser with no session yet.
    pub fn new(http: &str) -> Browser {
        let client = reqwest::Client::builder()
            .cookie_store(true)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .expect("build the HTTP client");
        Browser { client, http: http.to_string() }
    }

    /// The value of the first hidden `csrf_token` input of the page at `path`.
    pub async fn form_token(&self, path: &str) -> String {
        let html = self.client.get(format!("{}{path}", self.http)).send().await.unwrap().text().await.unwrap();
        let at = html.find(r#"name="csrf_token" value=""#).unwrap_or_else(|| panic!("no csrf_token on {path}: {html}"));
        let rest = &html[at + r#"name="csrf_token" value=""#.len()..];
        rest[..rest.find('"').unwrap()].to_string()
    }

    /// Posts the sign-in form; returns the answer (a 302 on success).
    pub async fn sign_in(&self, user: &str, password: &str) -> reqwest::Response {
        let token = self.form_token("/login").await;
        self.client
            .post(format!("{}/login", self.http))
            .form(&[("username", user), ("password", password), ("csrf_token", &token)])
            .send()
            .await
            .unwrap()
    }

    /// A browser signed in as a new user with `role` (password "password-1"); returns it and the user's id.
    pub async fn signed_in_as(t: &TestApp, name: &str, role: oee_core::access::Role) -> (Browser, i32) {
        let u = oee_core::store::user::add_user(&t.pool, name, "password-1", role, false).await.expect("add the user");
        let b = Browser::new(&t.http);
        let r = b.sign_in(name, "password-1").await;
        assert_eq!(r.status(), 302, "{name} signs in");
        (b, u.id)
    }

    /// The session's CSRF token (from a page every signed-in person may open).
    pub async fn csrf(&self) -> String {
        self.form_token("/account/password").await
    }

    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.client.get(format!("{}{path}", self.http)).send().await.unwrap()
    }

    /// Posts a URL-encoded form with the session's CSRF token added.
    pub async fn post_form(&self, path: &str, fields: &[(&str, &str)]) -> reqwest::Response {
        let token = self.csrf().await;
        let mut all: Vec<(&str, &str)> = fields.to_vec();
        all.push(("csrf_token", &token));
        self.client.post(format!("{}{path}", self.http)).form(&all).send().await.unwrap()
    }
}

/// Reads a server-sent event stream (`/status/events`, a board's) until a `status` event whose data
/// satisfies `wanted`, which sees every status event on the way (10 s at most); returns that event's data.
/// `buffer` keeps what was read past it for the next call.
pub async fn next_status_event(
    r: &mut reqwest::Response,
    buffer: &mut String,
    mut wanted: impl FnMut(&serde_json::Value) -> bool,
) -> serde_json::Value {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        while let Some(end) = buffer.find("\n\n") {
            let block: String = buffer.drain(..end + 2).collect();
            let data: String = block.lines().filter_map(|l| l.strip_prefix("data:")).map(str::trim).collect();
            if block.lines().any(|l| l.trim() == "event: status")
                && let Ok(v) = serde_json::from_str::<serde_json::Value>(&data)
                && wanted(&v)
            {
                return v;
            }
        }
        let chunk = tokio::time::timeout_at(deadline, r.chunk())
            .await
            .expect("the event arrives within 10 s")
            .expect("the stream is readable")
            .expect("the stream stays open");
        buffer.push_str(&String::from_utf8_lossy(&chunk));
    }
}
