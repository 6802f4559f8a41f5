//! The `oee-server` binary itself: environment overrides, administration commands beside a running
//! server, SIGTERM stopping the server and its embedded PostgreSQL, and config errors.

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::*;
use serde_json::json;
use tokio::process::Command;

struct Env {
    data_dir: PathBuf,
    http: u16,
    mqtt: u16,
}

impl Env {
    fn new(name: &str) -> Env {
        Env { data_dir: scratch_dir(name), http: free_port(), mqtt: free_port() }
    }

    fn command(&self, args: &[&str]) -> Command {
        server_binary(args, &self.data_dir, self.http, self.mqtt)
    }

    async fn run(&self, args: &[&str]) -> (bool, String, String) {
        let out = self.command(args).output().await.expect("run oee-server");
        (out.status.success(), String::from_utf8_lossy(&out.stdout).into(), String::from_utf8_lossy(&out.stderr).into())
    }
}

fn postmaster_pid(dir: &Path) -> Option<i32> {
    std::fs::read_to_string(dir.join("postgres/postmaster.pid")).ok()?.lines().next()?.trim().parse().ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_binary_serves_administers_and_stops_cleanly_on_sigterm() {
    let env = Env::new("cli");
    let (ok, out, err) = env.run(&["machine", "add", "Line 1"]).await;
    assert!(ok, "{err}");
    assert!(out.contains("added machine 1 `Line 1`") && out.contains("oee/v1/machines/line-1/state"), "{out}");
    assert!(postmaster_pid(&env.data_dir).is_none(), "the command stopped the database it started");

    let mut server = env.command(&["serve"]).spawn().expect("start oee-server serve");
    let http = format!("http://127.0.0.1:{}", env.http);
    let client = reqwest::Client::new();
    eventually("the server answers /health", || async {
        client.get(format!("{http}/health")).send().await.is_ok_and(|r| r.status() == 200)
    })
    .await;
    let pg = postmaster_pid(&env.data_dir).expect("the embedded database runs");

    // administration beside the running server uses its database
    let (ok, out, err) = env.run(&["user", "add", "op", "--password", "1234"]).await;
    assert!(ok && out.contains("added user 2 `op`"), "{out}{err}");
    let (ok, out, _) = env.run(&["machine", "list"]).await;
    assert!(ok && out.contains("Line 1") && out.contains("line-1"), "{out}");
    assert_eq!(postmaster_pid(&env.data_dir), Some(pg), "the running server's database was left alone");

    // inside a pairing window an administrator opened, a tablet registers itself and is paired with the
    // free machine; an administrator moves it
    let (ok, out, err) = env.run(&["tablet", "open-window", "--minutes", "5"]).await;
    assert!(ok && out.contains("new tablets may register until"), "{out}{err}");
    let r = client.get(format!("{http}/check-state?device_uuid=tab-1")).send().await.unwrap();
    assert!(r.text().await.unwrap().contains(r#""machine": "Line 1", "device_name": "Tablet 1""#));
    let (ok, out, err) = env.run(&["tablet", "list"]).await;
    assert!(
        ok && out.lines().any(|l| l.contains("Tablet 1") && l.contains("Line 1") && l.ends_with("tab-1")),
        "{out}{err}"
    );
    let (ok, out, err) = env.run(&["tablet", "unpair", "tab-1"]).await;
    assert!(ok && out.contains("tablet 1 is paired with no machine"), "{out}{err}");
    let (ok, _, err) = env.run(&["tablet", "pair", "Tablet 1", "Line 9"]).await;
    assert!(!ok && err.contains("no machine named `Line 9`"), "{err}");
    let (ok, out, err) = env.run(&["tablet", "pair", "1", "Line 1"]).await;
    assert!(ok && out.contains("tablet 1 is paired with machine 1"), "{out}{err}");

    // a device gets its token beside the running server and uses it at once
    let (ok, out, err) = env.run(&["device", "add", "plc-1", "--machine", "Line 1"]).await;
    assert!(ok, "{out}{err}");
    let token = out
        .lines()
        .find_map(|l| l.strip_prefix("HTTP token:"))
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or_else(|| panic!("no token in:\n{out}"))
        .to_string();
    let post = |token: Option<String>| {
        let mut r = client
            .post(format!("{http}/api/machine-state-change"))
            .json(&json!({"machine_id": 1, "activity_code_id": 3}));
        if let Some(t) = token {
            r = r.bearer_auth(t);
        }
        r.send()
    };
    assert_eq!(post(None).await.unwrap().status(), 401);
    assert_eq!(post(Some(token)).await.unwrap().status(), 200);

    let pid = server.id().expect("server pid") as i32;
    assert_eq!(send_sigterm(pid), 0);
    let status =
        tokio::time::timeout(Duration::from_secs(60), server.wait()).await.expect("stops within 60 s").unwrap();
    assert!(status.success(), "{status:?}");
    assert!(!Path::new(&format!("/proc/{pg}")).exists(), "PostgreSQL stopped with the server");
    assert!(postmaster_pid(&env.data_dir).is_none());

    // the change survived, and the next command starts the database again by itself
    let (ok, out, _) = env.run(&["machine", "list"]).await;
    assert!(ok && out.contains("Closed"), "{out}");
}

/// Sends SIGTERM through the `kill` command (no unsafe code in tests).
fn send_sigterm(pid: i32) -> i32 {
    std::process::Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .map(|s| s.code().unwrap_or(1))
        .unwrap_or(1)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn config_mistakes_are_reported_before_anything_starts() {
    let env = Env::new("cli-config");
    let file = env.data_dir.join("bad.toml");
    std::fs::write(&file, "[http]\nlisten_on = \"0.0.0.0:80\"\n").unwrap();
    let (ok, _, err) = env.run(&["--config", file.to_str().unwrap(), "serve"]).await;
    assert!(!ok);
    assert!(err.contains("listen_on"), "{err}");

    let (ok, _, err) = env.run(&["--config", "/nonexistent/oee.toml", "machine", "list"]).await;
    assert!(!ok && err.contains("/nonexistent/oee.toml"), "{err}");

    let mut c = env.command(&["machine", "list"]);
    c.env("OEE_PLANT__TIMEZONE", "Mars/Olympus");
    let out = c.output().await.unwrap();
    assert!(!out.status.success());

    let (ok, _, err) = env.run(&["serve", "--only", "frontend"]).await;
    assert!(!ok && err.contains("frontend"), "{err}");
}
