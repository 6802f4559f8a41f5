//! A headless Chromium driven through ChromeDriver over the W3C WebDriver HTTP protocol, for the tests that
//! use the pages as a person would. Needs Debian's `chromium` and `chromium-driver`; without them a test
//! fails and says so.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::{Value, json};

use super::{free_port, scratch_dir};

const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
const CHROMIUM: &str = "/usr/bin/chromium";
/// W3C WebDriver's key for an element reference.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";
/// Upper bound for anything the page waits on (a loaded two-core CI box runs Chromium slowly).
pub const PATIENCE: Duration = Duration::from_secs(30);

/// A Chromium session on a ChromeDriver of our own. Dropping it ends the session and kills ChromeDriver's
/// process group (ChromeDriver and the browser it started).
pub struct Chromium {
    /// A script (a function body) whose answer describes the page when a wait times out.
    pub describe: &'static str,
    driver: Child,
    addr: SocketAddr,
    session: Option<String>,
    http: reqwest::Client,
    log: PathBuf,
    /// Where Chromium saves what it downloads.
    downloads: PathBuf,
}

impl Chromium {
    pub async fn start() -> Chromium {
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
        let downloads = dir.join("downloads");
        std::fs::create_dir_all(&downloads).expect("create the downloads directory");
        let mut browser = Chromium {
            describe: DESCRIBE,
            driver,
            addr,
            session: None,
            http: reqwest::Client::new(),
            log,
            downloads: downloads.clone(),
        };

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
            // A download is saved without asking, into a directory of this session's own.
            "prefs": {
                "download.default_directory": downloads,
                "download.prompt_for_download": false,
                "download.directory_upgrade": true,
            },
        });
        let caps = json!({"capabilities": {"alwaysMatch": {"browserName": "chrome", "goog:chromeOptions": options}}});
        let v = browser.call(reqwest::Method::POST, "/session", Some(caps)).await;
        let id = v["sessionId"].as_str().unwrap_or_else(|| panic!("no session id in {v}")).to_string();
        browser.session = Some(id);
        browser
    }

    /// One WebDriver command; its `value`. A WebDriver error fails the test with the driver's message.
    pub async fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        self.try_call(method, path, body).await.unwrap_or_else(|e| panic!("{e}"))
    }

    /// One WebDriver command; its `value`, or the driver's error (for commands a test may retry).
    pub async fn try_call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Result<Value, String> {
        let url = format!("http://{}{path}", self.addr);
        let mut req = self.http.request(method.clone(), &url);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let r = req.send().await.unwrap_or_else(|e| panic!("{method} {path}: {e}"));
        let status = r.status();
        let v: Value = r.json().await.unwrap_or_else(|e| panic!("{method} {path}: answer is not JSON: {e}"));
        if !status.is_success() {
            return Err(format!("{method} {path}: {status} {}; see {}", v["value"], self.log.display()));
        }
        Ok(v["value"].clone())
    }

    fn path(&self, rest: &str) -> String {
        format!("/session/{}{rest}", self.session.as_deref().expect("a session"))
    }

    pub async fn open(&self, url: &str) {
        self.call(reqwest::Method::POST, &self.path("/url"), Some(json!({ "url": url }))).await;
    }

    /// Runs `body` (a function body: use `return`) in the page.
    pub async fn script(&self, body: &str) -> Value {
        let path = self.path("/execute/sync");
        self.call(reqwest::Method::POST, &path, Some(json!({ "script": body, "args": [] }))).await
    }

    /// Polls the JS expression `condition` until it is true; fails after [`PATIENCE`] with what the page
    /// shows.
    pub async fn wait_for(&self, what: &str, condition: &str) {
        self.wait_for_within(what, condition, PATIENCE).await
    }

    /// As [`Chromium::wait_for`], failing after `patience`.
    pub async fn wait_for_within(&self, what: &str, condition: &str, patience: Duration) {
        let deadline = tokio::time::Instant::now() + patience;
        loop {
            if self.script(&format!("return !!({condition});")).await == true {
                return;
            }
            if tokio::time::Instant::now() >= deadline {
                let seen = self.script(self.describe).await;
                panic!("timed out waiting until {what} ({condition}); the page shows {seen}");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub async fn element(&self, css: &str) -> String {
        let path = self.path("/element");
        let v = self.call(reqwest::Method::POST, &path, Some(json!({ "using": "css selector", "value": css }))).await;
        v[ELEMENT].as_str().unwrap_or_else(|| panic!("no element reference for {css}: {v}")).to_string()
    }

    /// A real click (ChromeDriver refuses it when the element is hidden or covered).
    /// A page that redraws itself (a list refreshed from the server) may hide or replace the element between
    /// finding it and clicking it: such a click is tried again, up to [`PATIENCE`].
    pub async fn tap(&self, css: &str) {
        let deadline = tokio::time::Instant::now() + PATIENCE;
        loop {
            let e = self.element(css).await;
            let clicked =
                self.try_call(reqwest::Method::POST, &self.path(&format!("/element/{e}/click")), Some(json!({}))).await;
            match clicked {
                Ok(_) => return,
                Err(why)
                    if (why.contains("not interactable") || why.contains("stale element"))
                        && tokio::time::Instant::now() < deadline =>
                {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Err(why) => panic!("clicking {css}: {why}"),
            }
        }
    }

    /// Clears the input and types `text` into it, key by key.
    pub async fn type_into(&self, css: &str, text: &str) {
        let e = self.element(css).await;
        self.call(reqwest::Method::POST, &self.path(&format!("/element/{e}/clear")), Some(json!({}))).await;
        self.call(reqwest::Method::POST, &self.path(&format!("/element/{e}/value")), Some(json!({ "text": text })))
            .await;
    }

    pub async fn text(&self, css: &str) -> String {
        let css = serde_json::to_string(css).unwrap();
        self.script(&format!("return document.querySelector({css}).textContent;")).await.as_str().unwrap().to_string()
    }

    pub async fn screenshot_png(&self) -> Vec<u8> {
        let v = self.call(reqwest::Method::GET, &self.path("/screenshot"), None).await;
        base64_decode(v.as_str().expect("a base64 screenshot"))
    }

    /// Where this session's downloads are saved.
    pub fn downloads(&self) -> &Path {
        &self.downloads
    }

    /// Waits (up to [`PATIENCE`]) until a download whose file name ends with `suffix` is complete; its path.
    /// Chromium writes a download as `….crdownload` and renames it when done, and may hold the final name
    /// meanwhile with an empty file: complete is a file of that name with content and nothing in progress.
    pub async fn downloaded(&self, suffix: &str) -> PathBuf {
        let deadline = tokio::time::Instant::now() + PATIENCE;
        loop {
            let files: Vec<(String, u64)> = std::fs::read_dir(&self.downloads)
                .map(|d| {
                    d.flatten()
                        .map(|e| (e.file_name().to_string_lossy().to_string(), e.metadata().map_or(0, |m| m.len())))
                        .collect()
                })
                .unwrap_or_default();
            let busy = files.iter().any(|(n, _)| n.ends_with(".crdownload"));
            if !busy && let Some((name, _)) = files.iter().find(|(n, len)| n.ends_with(suffix) && *len > 0) {
                return self.downloads.join(name);
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "no complete download ending with {suffix} arrived in {} (there are {files:?}); see {}",
                self.downloads.display(),
                self.log.display()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Ends the session (Chromium quits) while the test can still wait for it.
    pub async fn quit(mut self) {
        let path = self.path("");
        self.call(reqwest::Method::DELETE, &path, None).await;
        self.session = None;
    }
}

impl Drop for Chromium {
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

/// The default page description for a failed wait: the title and the start of the text.
const DESCRIBE: &str = "return document.title + ': ' + document.body.innerText.slice(0, 800);";

/// Where tests keep what a person would look at afterwards (screenshots): `target/test-artifacts`.
pub fn artifacts_dir() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("target").join("test-artifacts");
    std::fs::create_dir_all(&dir).expect("create target/test-artifacts");
    dir
}

/// Standard base64 (the screenshot), without a crate for it.
pub fn base64_decode(s: &str) -> Vec<u8> {
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
pub fn png_size(png: &[u8]) -> (u32, u32) {
    assert!(png.len() > 8 + 25 + 12, "{} bytes is no PNG", png.len());
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n", "PNG signature");
    assert_eq!(&png[12..16], b"IHDR", "the first chunk is the header");
    assert_eq!(&png[png.len() - 8..png.len() - 4], b"IEND", "the last chunk is the end");
    let width = u32::from_be_bytes(png[16..20].try_into().unwrap());
    let height = u32::from_be_bytes(png[20..24].try_into().unwrap());
    (width, height)
}
