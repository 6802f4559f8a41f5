//! The `oee-server` binary itself: environment overrides, administration commands beside a running
//! server, SIGTERM stopping the server and its embedded PostgreSQL, config errors, `init` and commands that
//! find no database, and setting up a plant (codes, groups, machine settings) from the command line.

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
    let (ok, out, err) = env.run(&["init"]).await;
    assert!(ok && out.contains("initialised"), "{out}{err}");
    assert!(postmaster_pid(&env.data_dir).is_none(), "init stopped the database it started");
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

/// Whether `text` has a terminal colour sequence in it.
fn has_ansi(text: &str) -> bool {
    text.contains('\u{1b}')
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_command_without_a_database_refuses_and_creates_nothing_until_init() {
    let env = Env::new("cli-no-db");
    let config = env.data_dir.join("plant.toml");
    std::fs::write(&config, "[plant]\ntimezone = \"UTC\"\n").unwrap();
    let data = env.data_dir.join("data");
    let run = |args: &'static [&'static str], extra: &'static [(&'static str, &'static str)]| {
        let mut c = env.command(args);
        c.env("OEE_DATA_DIR", &data).env("OEE_CONFIG", &config);
        for (k, v) in extra {
            c.env(k, v);
        }
        async move {
            let out = c.output().await.expect("run oee-server");
            (
                out.status.success(),
                String::from_utf8_lossy(&out.stdout).to_string(),
                String::from_utf8_lossy(&out.stderr).to_string(),
            )
        }
    };

    let (ok, out, err) = run(&["machine", "list"], &[]).await;
    assert!(!ok, "{out}{err}");
    assert!(out.is_empty(), "{out}");
    assert!(
        err.contains(&*data.to_string_lossy())
            && err.contains(&*config.to_string_lossy())
            && err.contains("oee-server init"),
        "{err}"
    );
    assert!(!has_ansi(&err), "{err:?}");
    assert!(!data.exists(), "the refused command created {}", data.display());

    let (ok, out, err) = run(&["init"], &[]).await;
    assert!(ok && out.contains("initialised") && out.contains("user passwd admin"), "{out}{err}");
    assert!(data.join("postgres/PG_VERSION").exists());
    let (ok, out, err) = run(&["init"], &[]).await;
    assert!(ok && out.contains("already initialised"), "{out}{err}");

    // variables that are not configuration do not break a command, and a command prints only its answer
    let (ok, out, err) = run(&["code", "list"], &[("OEE_BENCH_QUICK", "1")]).await;
    assert!(ok, "{err}");
    assert!(out.lines().any(|l| l.contains("Closed") && l.contains("not_scheduled")), "{out}");
    assert_eq!(err, "", "a command that worked wrote to standard error");
    let (ok, _, err) = run(&["machine", "list"], &[("OEE_BENCH__QUICK", "1")]).await;
    assert!(!ok && err.contains("bench"), "a mistyped configuration variable is still named: {err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn codes_groups_and_machine_settings_are_set_up_from_the_command_line() {
    let env = Env::new("cli-setup");
    let ok_run = |args: &'static [&'static str]| {
        let env = &env;
        async move {
            let (ok, out, err) = env.run(args).await;
            assert!(ok, "{args:?} failed: {err}");
            assert_eq!(err, "", "{args:?} wrote to standard error");
            out
        }
    };
    ok_run(&["init"]).await;
    ok_run(&["machine", "add", "Line 1"]).await;

    // a colour that is not #RRGGBB is refused, on standard error, and nothing is stored
    let (ok, out, err) = env.run(&["code", "add", "Jam", "--colour", "red"]).await;
    assert!(!ok && out.is_empty(), "{out}");
    assert!(err.contains("`red` is not a colour") && err.contains("#RRGGBB") && !has_ansi(&err), "{err}");
    let out = ok_run(&["code", "add", "Jam", "--colour", "ff8000", "--description", "Feeder jammed"]).await;
    assert!(out.contains("added activity code 5") && out.contains("#ff8000") && out.contains("breakdown"), "{out}");
    let (ok, _, err) = env.run(&["code", "edit", "Jam", "--colour", "#12345"]).await;
    assert!(!ok && err.contains("`#12345` is not a colour"), "{err}");
    let (ok, _, err) = env.run(&["code", "edit", "Up", "--state", "2"]).await;
    assert!(!ok && err.contains("its machine state stays 1"), "{err}");
    let out =
        ok_run(&["code", "add", "Fast run", "--state", "uptime", "--category", "reduced_speed", "--colour", "#00aa00"])
            .await;
    assert!(out.contains("added activity code 6"), "{out}");
    let out = ok_run(&["code", "list"]).await;
    assert!(out.lines().any(|l| l.contains("Jam") && l.contains("#ff8000") && l.ends_with("Feeder jammed")), "{out}");

    ok_run(&["group", "add", "Presses"]).await;
    let (ok, _, err) = env.run(&["group", "add", "Presses"]).await;
    assert!(!ok && err.contains("a group named `Presses` already exists"), "{err}");
    let out = ok_run(&[
        "machine",
        "set",
        "Line 1",
        "--group",
        "Presses",
        "--workflow",
        "running_total",
        "--job-start-input",
        "parts_per_minute",
        "--job-number-input",
        "text",
        "--autofill",
        "30",
        "--end-job-on-shift-end",
        "false",
        "--job-start-code",
        "Fast run",
        "--exclude-codes",
        "Jam",
    ])
    .await;
    assert!(out.contains("group:                2 `Presses`"), "{out}");
    let (ok, _, err) = env.run(&["machine", "set", "1", "--job-start-code", "Jam"]).await;
    assert!(!ok && err.contains("not an uptime code"), "{err}");
    let (ok, _, err) = env.run(&["machine", "set", "1", "--autofill", "-3"]).await;
    assert!(!ok && err.contains("autofill amount"), "{err}");

    let out = ok_run(&["machine", "show", "Line 1"]).await;
    for line in [
        "machine 1 `Line 1`",
        "active:               yes",
        "MQTT topic name:      line-1",
        "group:                2 `Presses`",
        "shift pattern:        1 `9-5`",
        "workflow:             running_total",
        "job start input:      parts_per_minute",
        "autofill:             30",
        "job number input:     text",
        "job start code:       6 `Fast run`",
        "end job on shift end: no",
        "excluded codes:       5 `Jam`",
    ] {
        assert!(out.contains(line), "no `{line}` in:\n{out}");
    }
    let out = ok_run(&["group", "list"]).await;
    assert!(out.lines().any(|l| l.contains("Presses") && l.ends_with(" 1")), "{out}");
    ok_run(&["group", "rename", "Presses", "Press shop"]).await;
    let out = ok_run(&["machine", "set", "Line 1", "--no-autofill", "--active", "false", "--exclude-codes", ""]).await;
    for line in [
        "group:                2 `Press shop`",
        "autofill:             off",
        "active:               no",
        "excluded codes:       none",
    ] {
        assert!(out.contains(line), "no `{line}` in:\n{out}");
    }

    // the database itself, for what the commands do not cover
    let (ok, out, err) = env.run(&["db", "shell", "--print"]).await;
    assert!(ok && out.contains("psql") && out.contains(" -U oee -d oee"), "{out}{err}");
    assert!(err.contains("no server is running"), "the line works only beside a running server: {err}");
    let mut shell = env.command(&["db", "shell"]);
    shell.stdin(std::process::Stdio::piped()).stdout(std::process::Stdio::piped());
    let mut child = shell.spawn().unwrap();
    use tokio::io::AsyncWriteExt;
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(b"SELECT 'workflow=' || workflow_type FROM machine;\n").await.unwrap();
    drop(stdin);
    let out = child.wait_with_output().await.unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success() && text.contains("workflow=running_total"), "{text}");
    assert!(postmaster_pid(&env.data_dir).is_none(), "the shell stopped the database it started");
}
