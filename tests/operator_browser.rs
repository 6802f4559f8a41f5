//! The operator tablet page (`/operator`) in a real browser: Debian's Chromium, headless, driven through
//! ChromeDriver over the W3C WebDriver HTTP protocol. An operator pairs, logs in, runs a job, records a stop
//! and ends the job, and the database shows each step.
//!
//! Needs the Debian packages `chromium` and `chromium-driver`; without them the test fails and says so.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::*;
use serde_json::{Value, json};

const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
const CHROMIUM: &str = "/usr/bin/chromium";
/// W3C WebDriver's key for an element reference.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";
/// Upper bound for anything the page waits on (a loaded two-core CI box runs Chromium slowly).
const PATIENCE: Duration = Duration::from_secs(30);

/// A Chromium session on a ChromeDriver of our own. Dropping it ends the session and kills ChromeDriver's
/// process group (ChromeDriver and the browser it started).
struct Browser {
    driver: Child,
    addr: SocketAddr,
    session: Option<String>,
    http: reqwest::Client,
    log: PathBuf,
}

impl Browser {
    async fn start() -> Browser {
        for (bin, package) in [(CHROMEDRIVER, "chromium-driver"), (CHROMIUM, "chromium")] {
            assert!(
                Path::new(bin).is_file(),
                "{bin} is missing (Debian package {package}): this test drives Chromium through ChromeDriver; \
                 install the packages with `apt-get install chromium chromium-driver`"
            );
        }
        let port = free_port();
        let dir = scratch_dir(&format!("chromium-{port}"));
        let log = dir.join("chromedriver.log");
        let driver = Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .arg(format!("--log-path={}", log.display()))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()
            .expect("start chromedriver");
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let mut browser = Browser { driver, addr, session: None, http: reqwest::Client::new(), log };

        let deadline = tokio::time::Instant::now() + PATIENCE;
        loop {
            let ready = browser.http.get(format!("http://{addr}/status")).send().await;
            if let Ok(r) = ready
                && let Ok(v) = r.json::<Value>().await
                && v["value"]["ready"] == true
            {
                break;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "chromedriver did not start; see {}",
                browser.log.display()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }

        let profile = dir.join("profile");
        let options = json!({
            "binary": CHROMIUM,
            "args": [
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--window-size=800,1280",
                format!("--user-data-dir={}", profile.display()),
            ],
        });
        let caps = json!({"capabilities": {"alwaysMatch": {"browserName": "chrome", "goog:chromeOptions": options}}});
        let v = browser.call(reqwest::Method::POST, "/session", Some(caps)).await;
        let id = v["sessionId"].as_str().unwrap_or_else(|| panic!("no session id in {v}")).to_string();
        browser.session = Some(id);
        browser
    }

    /// One WebDriver command; its `value`. A WebDriver error fails the test with the driver's message.
    async fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        let url = format!("http://{}{path}", self.addr);
        let mut req = self.http.request(method.clone(), &url);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let r = req.send().await.unwrap_or_else(|e| panic!("{method} {path}: {e}"));
        let status = r.status();
        let v: Value = r.json().await.unwrap_or_else(|e| panic!("{method} {path}: answer is not JSON: {e}"));
        assert!(status.is_success(), "{method} {path}: {status} {}; see {}", v["value"], self.log.display());
        v["value"].clone()
    }

    fn path(&self, rest: &str) -> String {
        format!("/session/{}{rest}", self.session.as_deref().expect("a session"))
    }

    async fn open(&self, url: &str) {
        self.call(reqwest::Method::POST, &self.path("/url"), Some(json!({ "url": url }))).await;
    }

    /// Runs `body` (a function body: use `return`) in the page.
    async fn script(&self, body: &str) -> Value {
        let path = self.path("/execute/sync");
        self.call(reqwest::Method::POST, &path, Some(json!({ "script": body, "args": [] }))).await
    }

    /// Polls the JS expression `condition` until it is true; fails after [`PATIENCE`] with what the page
    /// shows.
    async fn wait_for(&self, what: &str, condition: &str) {
        self.wait_for_within(what, condition, PATIENCE).await
    }

    /// As [`Browser::wait_for`], failing after `patience`.
    async fn wait_for_within(&self, what: &str, condition: &str, patience: Duration) {
        let deadline = tokio::time::Instant::now() + patience;
        loop {
            if self.script(&format!("return !!({condition});")).await == true {
                return;
            }
            if tokio::time::Instant::now() >= deadline {
                let seen = self.script(SCREEN_STATE).await;
                panic!("timed out waiting until {what} ({condition}); the page shows {seen}");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn element(&self, css: &str) -> String {
        let path = self.path("/element");
        let v = self.call(reqwest::Method::POST, &path, Some(json!({ "using": "css selector", "value": css }))).await;
        v[ELEMENT].as_str().unwrap_or_else(|| panic!("no element reference for {css}: {v}")).to_string()
    }

    /// A real click (ChromeDriver refuses it when the element is hidden or covered).
    async fn tap(&self, css: &str) {
        let e = self.element(css).await;
        self.call(reqwest::Method::POST, &self.path(&format!("/element/{e}/click")), Some(json!({}))).await;
    }

    /// Clears the input and types `text` into it, key by key.
    async fn type_into(&self, css: &str, text: &str) {
        let e = self.element(css).await;
        self.call(reqwest::Method::POST, &self.path(&format!("/element/{e}/clear")), Some(json!({}))).await;
        self.call(reqwest::Method::POST, &self.path(&format!("/element/{e}/value")), Some(json!({ "text": text })))
            .await;
    }

    async fn text(&self, css: &str) -> String {
        let css = serde_json::to_string(css).unwrap();
        self.script(&format!("return document.querySelector({css}).textContent;")).await.as_str().unwrap().to_string()
    }

    async fn screenshot_png(&self) -> Vec<u8> {
        let v = self.call(reqwest::Method::GET, &self.path("/screenshot"), None).await;
        base64_decode(v.as_str().expect("a base64 screenshot"))
    }

    /// Ends the session (Chromium quits) while the test can still wait for it.
    async fn quit(mut self) {
        let path = self.path("");
        self.call(reqwest::Method::DELETE, &path, None).await;
        self.session = None;
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        // After a failure: ask ChromeDriver to close Chromium, synchronously (no runtime in drop).
        if let Some(id) = self.session.take()
            && let Ok(mut s) = TcpStream::connect_timeout(&self.addr, Duration::from_secs(2))
        {
            let _ = s.set_read_timeout(Some(Duration::from_secs(10)));
            let _ = write!(
                s,
                "DELETE /session/{id} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\nContent-Length: 0\r\n\r\n",
                self.addr
            );
            let _ = s.read_to_end(&mut Vec::new());
        }
        // The group this test started ChromeDriver in: ChromeDriver and anything of Chromium still alive.
        let _ = Command::new("kill")
            .args(["-KILL", "--", &format!("-{}", self.driver.id())])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

/// What the page shows, for a failure message.
const SCREEN_STATE: &str = "var s = [].filter.call(document.querySelectorAll('section.screen'), \
     function (e) { return !e.hidden; }).map(function (e) { return e.id; }); \
     var m = document.getElementById('message'); \
     return { screens: s, message: m.hidden ? null : m.textContent, \
              background: getComputedStyle(document.body).backgroundColor };";

/// A JS expression: the screen `name` is the one shown.
fn shown(name: &str) -> String {
    format!("!document.getElementById('screen-{name}').hidden")
}

/// Standard base64 (the screenshot), without a crate for it.
fn base64_decode(s: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(s.len() / 4 * 3);
    let (mut acc, mut bits) = (0u32, 0u32);
    for c in s.bytes() {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            b'=' | b'\r' | b'\n' => continue,
            _ => panic!("not base64: byte {c}"),
        };
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    out
}

#[test]
fn base64_decodes_standard_padding() {
    assert_eq!(base64_decode("TWFu"), b"Man");
    assert_eq!(base64_decode("TWE="), b"Ma");
    assert_eq!(base64_decode("TQ=="), b"M");
    assert_eq!(base64_decode(""), b"");
}

/// Checks a PNG's signature, header and end; returns its width and height.
fn png_size(png: &[u8]) -> (u32, u32) {
    assert!(png.len() > 8 + 25 + 12, "{} bytes is no PNG", png.len());
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n", "PNG signature");
    assert_eq!(&png[12..16], b"IHDR", "the first chunk is the header");
    assert_eq!(&png[png.len() - 8..png.len() - 4], b"IEND", "the last chunk is the end");
    let width = u32::from_be_bytes(png[16..20].try_into().unwrap());
    let height = u32::from_be_bytes(png[20..24].try_into().unwrap());
    (width, height)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_pairs_logs_in_runs_a_job_records_a_stop_and_logs_out_in_chromium() {
    // A stop code of its own colour, so the page's colour change is unmistakable.
    let db = seeded_db().await;
    let setup = db.pool().await;
    sqlx::query(
        "INSERT INTO activity_code (id, short_description, long_description, machine_state, graph_colour, loss_category) \
         VALUES (5, 'Tool change', 'Changing a worn tool', 2, '#3366cc', 'setup')",
    )
    .execute(&setup)
    .await
    .unwrap();
    setup.close().await;
    let t = spawn_app_with(test_config(&db), db, oee_server::Services::ALL).await;
    let m = t.add_machine("Press 1").await;
    t.set_schedule(m, true).await;
    // Job numbers like J42 need a text field (the default asks for a number).
    sqlx::query("UPDATE machine SET job_number_input_type = 'text' WHERE id = $1")
        .bind(m)
        .execute(&t.pool)
        .await
        .unwrap();

    let b = Browser::start().await;
    b.open(&format!("{}/operator", t.http)).await;

    // A new tablet is paired with the machine that has none (tablets.auto_pair) and asks for a login.
    b.wait_for("the login screen", &shown("login")).await;
    assert_eq!(b.text("#login-machine").await, "Press 1");
    assert!(b.text("#login-device").await.starts_with("Tablet "), "the tablet's name is shown");
    let uuid = b.script("return localStorage.getItem('oee.device_uuid');").await;
    let uuid = uuid.as_str().expect("the page keeps its UUID").to_string();
    assert_eq!(uuid.len(), 36, "{uuid}");
    assert_eq!(&uuid[14..15], "4", "a version 4 UUID: {uuid}");
    let paired: Option<i32> = sqlx::query_scalar("SELECT machine_id FROM input_device WHERE uuid = $1")
        .bind(&uuid)
        .fetch_one(&t.pool)
        .await
        .unwrap();
    assert_eq!(paired, Some(m));

    // A wrong PIN is refused and the server's reason is shown.
    b.type_into("#login-user", "1").await;
    b.type_into("#login-pin", "1234").await;
    b.tap("#login-submit").await;
    b.wait_for(
        "the refusal is shown",
        "!document.getElementById('message').hidden && \
         document.getElementById('message').textContent.indexOf('Wrong password') >= 0",
    )
    .await;
    assert!(b.script(&format!("return {};", shown("login"))).await == true, "still on the login screen");

    b.type_into("#login-user", "1").await;
    b.type_into("#login-pin", oee_core::store::seed::DEFAULT_ADMIN_PASSWORD).await;
    b.tap("#login-submit").await;
    b.wait_for("the job start screen", &shown("start")).await;
    assert_eq!(b.text("#start-machine").await, "Press 1");

    // Start job J42 with a cycle time.
    b.type_into("#start-job_number", "J42").await;
    b.type_into("#start-ideal_cycle_time", "12").await;
    b.tap("#start-submit").await;
    b.wait_for(
        "the job screen",
        &format!("{} && document.getElementById('job-number').textContent === 'J42'", shown("job")),
    )
    .await;
    let (job_id, number, ict): (i64, String, Option<f64>) =
        sqlx::query_as("SELECT id, job_number, ideal_cycle_time_s FROM job WHERE machine_id = $1 AND active")
            .bind(m)
            .fetch_one(&t.pool)
            .await
            .unwrap();
    assert_eq!((number.as_str(), ict), ("J42", Some(12.0)));
    let up = t.current_code(m).await;
    assert_ne!(up, 5);
    b.wait_for(
        "the background is the running code's colour",
        "getComputedStyle(document.body).backgroundColor === 'rgb(0, 255, 128)'",
    )
    .await;

    // A tap on the stop code: the machine's code changes, and so does the screen.
    b.tap("#job-codes button[data-code='5']").await;
    b.wait_for(
        "the background is the stop code's colour",
        "getComputedStyle(document.body).backgroundColor === 'rgb(51, 102, 204)'",
    )
    .await;
    assert_eq!(t.current_code(m).await, 5, "machine.current_code_id follows the tap");
    b.wait_for(
        "the stop is marked as current",
        "document.querySelector(\"#job-codes button.current\") && \
         document.querySelector(\"#job-codes button.current\").getAttribute('data-code') === '5'",
    )
    .await;

    // A change made elsewhere (an HTTP device here) reaches the page over the websocket at once: well
    // before the page's 30 s fallback poll, which this wait's bound of 10 s rules out.
    b.wait_for("the page has live updates", "document.getElementById('live').textContent === 'live'").await;
    t.post_state(serde_json::json!({"machine_id": m, "activity_code_id": 2})).await;
    b.wait_for_within(
        "the background turns to Down's colour without a tap",
        "getComputedStyle(document.body).backgroundColor === 'rgb(178, 34, 34)'",
        Duration::from_secs(10),
    )
    .await;
    b.tap("#job-codes button[data-code='5']").await;
    b.wait_for(
        "the stop code's colour again",
        "getComputedStyle(document.body).backgroundColor === 'rgb(51, 102, 204)'",
    )
    .await;

    let png = b.screenshot_png().await;
    let (width, height) = png_size(&png);
    assert!(width >= 400 && height >= 400, "{width}x{height}");
    assert!(png.len() > 4000, "a screenshot of the job screen has something on it: {} bytes", png.len());
    let artifacts = Path::new(env!("CARGO_MANIFEST_DIR")).join("target").join("test-artifacts");
    std::fs::create_dir_all(&artifacts).unwrap();
    std::fs::write(artifacts.join("operator-job.png"), &png).unwrap();

    // End the job with its quantities.
    b.tap("#job-end").await;
    b.wait_for("the end-job form", &shown("form")).await;
    b.type_into("#form-quantity_good", "100").await;
    b.type_into("#form-rejects", "3").await;
    b.tap("#form-submit").await;
    b.wait_for("the job start screen again", &shown("start")).await;
    let made: (i64, i64) =
        sqlx::query_as("SELECT quantity_good, quantity_rejects FROM production_quantity WHERE job_id = $1")
            .bind(job_id)
            .fetch_one(&t.pool)
            .await
            .unwrap();
    assert_eq!(made, (100, 3));
    let still_active: bool =
        sqlx::query_scalar("SELECT active FROM job WHERE id = $1").bind(job_id).fetch_one(&t.pool).await.unwrap();
    assert!(!still_active, "the job ended");
    assert_eq!(b.script("return document.body.style.backgroundColor;").await, "", "no job colour without a job");

    // Log out.
    b.tap("#start-logout").await;
    b.wait_for("the login screen again", &shown("login")).await;
    let session: Option<i32> = sqlx::query_scalar("SELECT active_user_session_id FROM input_device WHERE uuid = $1")
        .bind(&uuid)
        .fetch_one(&t.pool)
        .await
        .unwrap();
    assert_eq!(session, None, "the tablet has no open session");

    b.quit().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_auto_pairing_the_page_names_the_tablet_for_an_administrator_then_logs_in_once_paired() {
    let db = seeded_db().await;
    let mut config = test_config(&db);
    config.tablets.auto_pair = false;
    let t = spawn_app_with(config, db, oee_server::Services::ALL).await;
    let m = t.add_machine("Lathe 2").await;

    let b = Browser::start().await;
    b.open(&format!("{}/operator", t.http)).await;
    b.wait_for("the pairing screen", &shown("pair")).await;
    let name = b.text("#pair-device").await;
    assert!(name.starts_with("Tablet "), "{name}");
    b.wait_for(
        "the machine to pick",
        &format!("document.querySelector(\"#pair-machines button[data-machine='{m}']\")"),
    )
    .await;

    // Tablets may not pair themselves here: the refusal and the tablet's name are shown.
    b.tap(&format!("#pair-machines button[data-machine='{m}']")).await;
    b.wait_for("the refusal", "!document.getElementById('message').hidden").await;
    let message = b.text("#message").await;
    assert!(message.contains("paired by an administrator"), "{message}");
    assert!(message.contains(&format!("\"{name}\"")), "{message}");
    let uuid = b.script("return localStorage.getItem('oee.device_uuid');").await;
    let (tablet, machine): (i32, Option<i32>) =
        sqlx::query_as("SELECT id, machine_id FROM input_device WHERE uuid = $1")
            .bind(uuid.as_str().unwrap())
            .fetch_one(&t.pool)
            .await
            .unwrap();
    assert_eq!(machine, None, "still unpaired");

    // The administrator pairs it (as `oee-server tablet pair` does); Refresh shows the login.
    oee_core::store::tablet::pair_tablet(&t.pool, tablet, Some(m)).await.unwrap();
    b.tap("#pair-refresh").await;
    b.wait_for("the login screen", &shown("login")).await;
    assert_eq!(b.text("#login-machine").await, "Lathe 2");

    b.quit().await;
}
