//! A bounded benchmark of the managers' web pages and exports over a year of history: `cargo bench --bench pages`.
//!
//! It reads the report bench's dataset (100 machines × a year, `benches/shared/history.rs`; generated when
//! there is none), starts the whole server on it in this process and, signed in through `/login` as a
//! viewer (and once as a supervisor, whose status page carries the cards' forms), asks over loopback HTTP
//! for the status page, the machine report, every graph of `/graphs` over 30 days and over the whole
//! history, the first page of each table, and the CSV and XLSX exports of a year of daily OEE, daily
//! production and jobs. For each it records the body's size (and what gzip would make of it: the server
//! does not compress), the time until the whole body has arrived on the first request after a fresh start
//! of the server and its PostgreSQL ("first") and on warm repeats, and the process's peak resident memory
//! during the first request. It checks the issue's target, each graph page under 200 KB with 50 machines
//! and a month of data, and writes its figures into its own section of `BENCHMARKS.md`.
//!
//! Environment:
//! - `OEE_BENCH_QUICK=1`: 10 machines × 30 days, to check the bench itself; `BENCHMARKS.md` is left alone.
//! - `OEE_REPORT_BENCH_DIR=/some/dir`: the report bench's kept dataset, reused (and made there when the
//!   directory holds none). The run empties the OEE daily cache first and adds two users; it moves half the
//!   machines into a group of their own for the 50-machine pages and back at the end (or, after an
//!   interrupted run, at the start of the next).
//! - `OEE_PAGES_BENCH_KEEP=/some/dir`: write each page's first answer there (`NN.html`), to look at it.
//!
//! Everything listens on 127.0.0.1 or a unix socket, and every step is bounded: each request by a timeout,
//! the process by a watchdog and by a ceiling on its resident memory.

#[path = "shared/history.rs"]
mod history;
#[path = "shared/host.rs"]
mod host;
#[path = "shared/samples.rs"]
mod samples;
#[path = "shared/sections.rs"]
mod sections;
#[path = "shared/server.rs"]
mod server;

use std::fmt::Write as _;
use std::io::{Cursor, Write as _};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use calamine::{Reader, Xlsx, open_workbook_from_rs};
use chrono::{DateTime, NaiveDate, SecondsFormat, TimeDelta, Utc};
use history::{Cluster, Shape};
use host::HostInfo;
use oee_core::access::Role;
use oee_core::store::user;
use samples::median;
use sqlx::PgPool;
use tokio::time::Instant;

const SECTION_START: &str = "<!-- pages-bench:start -->";
const SECTION_END: &str = "<!-- pages-bench:end -->";
/// The short window of the graphs.
const MONTH_DAYS: i64 = 30;
/// The issue's target: each graph page under this many bytes with 50 machines and a month of data.
const GRAPH_TARGET_BYTES: usize = 200_000;
/// Machines in the group of the target's graphs.
const TARGET_MACHINES: i64 = 50;
/// The group that holds them while the bench runs.
const HALF_GROUP: &str = "Pages bench: 50 machines";
/// Per-request bound: a request that takes longer is recorded as timed out.
const HTTP_TIMEOUT: Duration = Duration::from_secs(900);
/// A first request slower than this is repeated only twice.
const SLOW_FIRST: Duration = Duration::from_secs(10);
/// Pages whose warm median is at least this long are listed under the results.
const SLOW_WARM: Duration = Duration::from_secs(5);
/// How often resident memory is sampled during a first request.
const SAMPLE_EVERY: Duration = Duration::from_millis(10);
/// The process ends when its resident memory passes this (the host must stay usable).
const MEMORY_CEILING_KIB: u64 = 8 * 1024 * 1024;
const PASSWORD: &str = "pages-bench-password-1";

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    server::start_logging("warn,sqlx::query=error,rumqttd=off");
    let run_started = Instant::now();
    let shape = Shape::from_env(Duration::from_secs(1200), Duration::from_secs(2 * 3600));
    server::start_watchdog("pages", shape.watchdog);
    let host = HostInfo::gather();
    let cluster = Cluster::open("pages", shape.size).await;
    let machines = cluster.machine_ids().await;

    let app = cluster.start_server().await;
    let half_count = TARGET_MACHINES.min(shape.size.machines / 2) as usize;
    let setup = set_up(&app.db.pool, cluster.dataset.group, &machines, half_count).await;
    let http = format!("http://{}", app.http_addr.expect("the server serves HTTP"));
    let viewer = Browser::signed_in(&http, &setup.viewer).await;
    let supervisor = Browser::signed_in(&http, &setup.supervisor).await;
    let pg_version: String =
        sqlx::query_scalar("SELECT version()").fetch_one(&app.db.pool).await.expect("ask PostgreSQL its version");
    app.stop().await;

    let plan = Plan::new(&cluster, &machines, &setup, half_count);
    let cases = plan.cases();
    let mut outcomes = Vec::new();
    for (i, case) in cases.iter().enumerate() {
        eprintln!("[{}/{}] {}: {}", i + 1, cases.len(), case.part.title(), case.name);
        let browser = match case.who {
            Role::Supervisor => &supervisor,
            _ => &viewer,
        };
        let app = cluster.start_server().await;
        let http = format!("http://{}", app.http_addr.expect("the server serves HTTP"));
        let outcome = measure(browser, &http, case, i + 1, shape.repeats).await;
        eprintln!("  {}", outcome.summary());
        outcomes.push(outcome);
        app.stop().await;
    }

    tear_down(&cluster, setup.half_group).await;
    cluster.finish();
    let run_s = run_started.elapsed().as_secs_f64();
    let failures = outcomes.iter().filter(|o| o.error.is_some()).count();
    let results = Results { host, shape, dataset: cluster.dataset, pg_version, plan, cases, outcomes, run_s };
    println!("{}", results.text());
    if shape.quick {
        println!("quick run: BENCHMARKS.md left unchanged");
    } else {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("BENCHMARKS.md");
        let old = std::fs::read_to_string(&path).unwrap_or_default();
        let new = sections::replace_section(&old, SECTION_START, SECTION_END, &results.markdown());
        std::fs::write(&path, new).unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
        println!("wrote the pages section of {}", path.display());
    }
    if failures > 0 {
        eprintln!("{failures} request(s) failed: see the results above");
        std::process::exit(1);
    }
}

// ---------------------------------------------------------------------------------------------------
// Set-up

/// What the run adds to the dataset.
struct SetUp {
    viewer: String,
    supervisor: String,
    half_group: i32,
    /// Whether any machine of the dataset follows a shift pattern.
    shifts: bool,
}

/// Empties the OEE daily cache (so that every run's first requests compute the same days), puts the
/// first machines into a group of their own (after moving back those an interrupted run left there), and
/// adds a viewer and a supervisor.
async fn set_up(pool: &PgPool, group: i32, machines: &[i32], half: usize) -> SetUp {
    let half = &machines[..half];
    restore_half_group(pool, group).await;
    let cleared = sqlx::query("DELETE FROM oee_day_cache").execute(pool).await.expect("empty the daily cache");
    eprintln!("emptied the OEE daily cache ({} days)", cleared.rows_affected());
    let half_group: i32 = sqlx::query_scalar("INSERT INTO machine_group (name) VALUES ($1) RETURNING id")
        .bind(HALF_GROUP)
        .fetch_one(pool)
        .await
        .expect("add the 50-machine group");
    sqlx::query("UPDATE machine SET group_id = $1 WHERE id = ANY($2)")
        .bind(half_group)
        .bind(half)
        .execute(pool)
        .await
        .expect("move machines into the 50-machine group");
    let stamp = Utc::now().format("%Y%m%d%H%M%S");
    let mut names = Vec::new();
    for (role, what) in [(Role::Viewer, "viewer"), (Role::Supervisor, "supervisor")] {
        let name = format!("pages-bench-{what}-{stamp}");
        user::add_user(pool, &name, PASSWORD, role, false).await.unwrap_or_else(|e| panic!("add the {what}: {e}"));
        names.push(name);
    }
    let supervisor = names.pop().expect("two users");
    let viewer = names.pop().expect("two users");
    let assigned: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM machine_shift_history WHERE machine_id = ANY($1) AND shift_id IS NOT NULL",
    )
    .bind(machines)
    .fetch_one(pool)
    .await
    .expect("count the machines' shift patterns");
    SetUp { viewer, supervisor, half_group, shifts: assigned > 0 }
}

/// Moves the machines of the 50-machine group back into the dataset's group and removes it.
async fn restore_half_group(pool: &PgPool, group: i32) {
    let moved = sqlx::query(
        "UPDATE machine SET group_id = $1 WHERE group_id IN (SELECT id FROM machine_group WHERE name = $2)",
    )
    .bind(group)
    .bind(HALF_GROUP)
    .execute(pool)
    .await
    .expect("move machines back into the dataset's group");
    sqlx::query("DELETE FROM machine_group WHERE name = $1")
        .bind(HALF_GROUP)
        .execute(pool)
        .await
        .expect("remove the 50-machine group");
    if moved.rows_affected() > 0 {
        eprintln!("moved {} machines back into the dataset's group", moved.rows_affected());
    }
}

async fn tear_down(cluster: &Cluster, half_group: i32) {
    let db = oee_core::store::Database::open(&cluster.config).await.expect("open the database");
    restore_half_group(&db.pool, cluster.dataset.group).await;
    let left: i64 = sqlx::query_scalar("SELECT count(*) FROM machine WHERE group_id = $1")
        .bind(half_group)
        .fetch_one(&db.pool)
        .await
        .expect("count the machines left in the 50-machine group");
    assert_eq!(left, 0, "machines left in the 50-machine group");
    db.close().await;
}

/// A browser: keeps its session cookie across restarts of the server (the session lives in the database),
/// follows no redirects, and says it accepts compressed answers, as browsers do.
struct Browser {
    client: reqwest::Client,
}

impl Browser {
    /// Signs `name` in through the sign-in form.
    async fn signed_in(http: &str, name: &str) -> Browser {
        let mut headers = reqwest::header::HeaderMap::new();
        headers.insert(reqwest::header::ACCEPT_ENCODING, reqwest::header::HeaderValue::from_static("gzip, deflate"));
        let client = reqwest::Client::builder()
            .cookie_store(true)
            .redirect(reqwest::redirect::Policy::none())
            .timeout(HTTP_TIMEOUT)
            .default_headers(headers)
            .build()
            .expect("build the HTTP client");
        let form = client
            .get(format!("{http}/login"))
            .send()
            .await
            .and_then(|r| r.error_for_status())
            .expect("open the sign-in page");
        let html = form.text().await.expect("read the sign-in page");
        let marker = r#"name="csrf_token" value=""#;
        let at = html.find(marker).unwrap_or_else(|| panic!("the sign-in page has no csrf_token: {html:.500}"));
        let rest = &html[at + marker.len()..];
        let token = &rest[..rest.find('"').expect("the token's closing quote")];
        let r = client
            .post(format!("{http}/login"))
            .form(&[("username", name), ("password", PASSWORD), ("csrf_token", token)])
            .send()
            .await
            .expect("post the sign-in form");
        let to = r.headers().get(reqwest::header::LOCATION).and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
        assert!(r.status() == 302 && !to.contains("login"), "{name} did not sign in: {} to `{to}`", r.status());
        Browser { client }
    }
}

// ---------------------------------------------------------------------------------------------------
// What is asked for

/// The parts of the section, in the order they run.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Part {
    Status,
    Machine,
    Graphs,
    Tables,
    Exports,
}

impl Part {
    const ALL: [Part; 5] = [Part::Status, Part::Machine, Part::Graphs, Part::Tables, Part::Exports];

    fn title(self) -> &'static str {
        match self {
            Part::Status => "Status page",
            Part::Machine => "Machine report",
            Part::Graphs => "Graphs",
            Part::Tables => "Tables, first page",
            Part::Exports => "Exports",
        }
    }
}

/// What a download must hold: at least this many rows under its header.
#[derive(Clone, Copy)]
enum Download {
    Csv { rows: usize },
    Xlsx { rows: usize },
}

/// One request to measure.
struct Case {
    part: Part,
    name: String,
    /// Path and query.
    path: String,
    who: Role,
    /// Pages: text the page must contain.
    expect: &'static str,
    download: Option<Download>,
    /// A graph page the issue's target speaks of (a month, 50 machines or fewer).
    target: bool,
}

/// The windows and subjects of the run.
struct Plan {
    machines: usize,
    half_count: usize,
    half_group: i32,
    /// Whether the machines follow shift patterns (the dataset assigns none: the trend by shift is empty).
    shifts: bool,
    one: i32,
    /// The graphs' short window and the whole history.
    month: (DateTime<Utc>, DateTime<Utc>),
    whole: (DateTime<Utc>, DateTime<Utc>),
    /// A whole past day (the last whole day of the history) and the tables' year of whole days.
    past_day: NaiveDate,
    year: (NaiveDate, NaiveDate),
}

fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

impl Plan {
    fn new(cluster: &Cluster, machines: &[i32], setup: &SetUp, half_count: usize) -> Plan {
        let d = &cluster.dataset;
        let to = d.end;
        let past_day = (to - TimeDelta::days(1)).date_naive();
        let first_whole_day = (to - TimeDelta::days(d.days)).date_naive() + TimeDelta::days(1);
        Plan {
            machines: machines.len(),
            half_count,
            half_group: setup.half_group,
            shifts: setup.shifts,
            one: machines[0],
            month: (to - TimeDelta::days(MONTH_DAYS), to),
            whole: (to - TimeDelta::days(d.days), to),
            past_day,
            year: (first_whole_day, past_day),
        }
    }

    fn days(window: (DateTime<Utc>, DateTime<Utc>)) -> i64 {
        (window.1 - window.0).num_days()
    }

    fn cases(&self) -> Vec<Case> {
        let page = |part, name: String, path: String, expect| Case {
            part,
            name,
            path,
            who: Role::Viewer,
            expect,
            download: None,
            target: false,
        };
        let mut out = vec![
            page(Part::Status, format!("today, {} machines", self.machines), "/status".into(), "report-bench-"),
            page(
                Part::Status,
                format!("{} (a whole past day), {} machines", self.past_day, self.machines),
                format!("/status?date={}", self.past_day),
                "report-bench-",
            ),
            Case {
                who: Role::Supervisor,
                ..page(
                    Part::Status,
                    format!("today, {} machines, as a supervisor (with the cards' forms)", self.machines),
                    "/status".into(),
                    "report-bench-",
                )
            },
            page(
                Part::Machine,
                format!("one machine, {} (a whole past day)", self.past_day),
                format!("/machine?machine_id={}&date={}", self.one, self.past_day),
                "<svg",
            ),
            page(Part::Machine, "one machine, today".into(), format!("/machine?machine_id={}", self.one), "<svg"),
        ];

        let subjects = [
            ("one machine".to_string(), format!("&machine={}", self.one), 1),
            (format!("{} machines", self.half_count), format!("&group={}", self.half_group), self.half_count),
            // The dataset's group lends half its machines to the other group: every machine is `key=all`.
            (format!("all {} machines", self.machines), String::new(), self.machines),
        ];
        let graphs = [
            ("state timeline", "timeline", ""),
            ("OEE trend by day", "oee", ""),
            (
                if self.shifts { "OEE trend by shift" } else { "OEE trend by shift (no shift patterns)" },
                "oee",
                "&by=shift",
            ),
            ("downtime Pareto", "pareto", ""),
            ("six big losses", "losses", ""),
        ];
        for (window, whole) in [(self.month, false), (self.whole, true)] {
            for (label, graph, extra) in graphs {
                for (who, query, count) in &subjects {
                    // One machine: its timeline only (the other graphs of one machine are smaller still); the
                    // 50 machines over the month only (the target).
                    if (*count == 1 && graph != "timeline") || (whole && *count == self.half_count) {
                        continue;
                    }
                    let case = page(
                        Part::Graphs,
                        format!("{label}, {who}, {} days", Plan::days(window)),
                        format!(
                            "/graphs?graph={graph}{query}&from={}&to={}{extra}",
                            rfc3339(window.0),
                            rfc3339(window.1)
                        ),
                        "<svg",
                    );
                    out.push(Case { target: !whole && *count <= self.half_count, ..case });
                }
            }
        }

        let (from, to) = self.year;
        let year_days = (to - from).num_days() + 1;
        let (month_from, month_to) = (self.past_day - TimeDelta::days(MONTH_DAYS - 1), self.past_day);
        let tables = [
            (format!("OEE report of a day, {} machines", self.machines), format!("table=oee&date={}", self.past_day)),
            (format!("daily OEE, {year_days} days"), format!("table=daily_oee&from={from}&to={to}")),
            (format!("daily production, {year_days} days"), format!("table=production&from={from}&to={to}")),
            (format!("jobs, {MONTH_DAYS} days"), format!("table=jobs&from={month_from}&to={month_to}")),
            (
                format!("activity durations by machine, {MONTH_DAYS} days"),
                format!("table=activity&from={month_from}&to={month_to}"),
            ),
        ];
        for (name, query) in tables {
            out.push(page(Part::Tables, name, format!("/tables?{query}"), "<table"));
        }

        let jobs_per_machine = year_days as usize * 3;
        let exports = [
            ("daily OEE", "daily_oee", self.machines),
            ("daily production", "production", self.machines),
            ("jobs", "jobs", self.machines * jobs_per_machine),
        ];
        for (name, table, rows) in exports {
            for (format, download) in [("xlsx", Download::Xlsx { rows }), ("csv", Download::Csv { rows })] {
                out.push(Case {
                    download: Some(download),
                    ..page(
                        Part::Exports,
                        format!("{name}, {year_days} days, {}", format.to_uppercase()),
                        format!("/tables?table={table}&from={from}&to={to}&format={format}"),
                        "",
                    )
                });
            }
        }
        out
    }
}

// ---------------------------------------------------------------------------------------------------
// Measuring

/// Resident memory of this process (the server, its clients, the bench), sampled by a thread of its own.
struct MemoryProbe {
    stop: Arc<AtomicBool>,
    peak_kib: Arc<AtomicU64>,
    thread: std::thread::JoinHandle<()>,
    baseline_kib: u64,
    /// Whether the kernel's high-water mark was reset at the start (`/proc/self/clear_refs`).
    hwm_reset: bool,
}

/// What a probe saw: resident memory before, and the peaks during.
#[derive(Clone, Copy, Default)]
struct Memory {
    baseline_kib: u64,
    sampled_peak_kib: u64,
    /// The kernel's `VmHWM` since the start, when it could be reset.
    hwm_kib: Option<u64>,
}

impl Memory {
    /// The larger of the two peaks, above the baseline.
    fn rise_kib(&self) -> u64 {
        self.sampled_peak_kib.max(self.hwm_kib.unwrap_or(0)).saturating_sub(self.baseline_kib)
    }
}

/// A field of `/proc/self/status`, in KiB.
fn status_kib(field: &str) -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    status.lines().find(|l| l.starts_with(field))?.split_whitespace().nth(1)?.parse().ok()
}

/// Hands the memory the allocator holds free back to the system, so that the baseline is what is in use:
/// glibc keeps what other threads freed (an earlier server's, an earlier request's) in its arenas.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[allow(unsafe_code)]
fn give_back_free_memory() {
    // SAFETY: malloc_trim only reads and updates the allocator's own state, under its own locks; 0 asks to
    // keep no padding at the top of the heap.
    unsafe { libc::malloc_trim(0) };
}

/// Other allocators hand memory back by themselves, or offer no way to ask.
#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn give_back_free_memory() {}

impl MemoryProbe {
    fn start(what: String) -> MemoryProbe {
        give_back_free_memory();
        // Writing 5 resets the peak resident set size (Linux 4.0 and later).
        let hwm_reset = std::fs::write("/proc/self/clear_refs", "5").is_ok();
        let baseline_kib = status_kib("VmRSS:").unwrap_or(0);
        let stop = Arc::new(AtomicBool::new(false));
        let peak_kib = Arc::new(AtomicU64::new(baseline_kib));
        let thread = {
            let (stop, peak) = (stop.clone(), peak_kib.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    let rss = status_kib("VmRSS:").unwrap_or(0);
                    peak.fetch_max(rss, Ordering::Relaxed);
                    if rss > MEMORY_CEILING_KIB {
                        eprintln!(
                            "pages bench: {what} took the process past {} MiB resident; giving up",
                            MEMORY_CEILING_KIB / 1024
                        );
                        std::process::exit(3);
                    }
                    std::thread::sleep(SAMPLE_EVERY);
                }
            })
        };
        MemoryProbe { stop, peak_kib, thread, baseline_kib, hwm_reset }
    }

    fn finish(self) -> Memory {
        self.stop.store(true, Ordering::Relaxed);
        let _ = self.thread.join();
        let last = status_kib("VmRSS:").unwrap_or(0);
        Memory {
            baseline_kib: self.baseline_kib,
            sampled_peak_kib: self.peak_kib.load(Ordering::Relaxed).max(last),
            hwm_kib: if self.hwm_reset { status_kib("VmHWM:") } else { None },
        }
    }
}

/// One answer, read to its end.
struct Fetched {
    status: u16,
    first_byte_ms: f64,
    ms: f64,
    bytes: usize,
    content_type: String,
    content_encoding: Option<String>,
    /// The body, when it was kept.
    body: Vec<u8>,
    /// Line ends in the body (CSV rows).
    newlines: usize,
}

/// GETs `url` and reads the whole body, keeping it when `keep` (else only counting it).
async fn fetch(browser: &Browser, url: &str, keep: bool) -> Result<Fetched, String> {
    let work = async {
        let t = Instant::now();
        let mut r = browser.client.get(url).send().await.map_err(|e| format!("GET failed: {e}"))?;
        let first_byte_ms = t.elapsed().as_secs_f64() * 1000.0;
        let header = |name| r.headers().get(name).and_then(|v| v.to_str().ok()).map(str::to_string);
        let content_type = header(reqwest::header::CONTENT_TYPE).unwrap_or_default();
        let content_encoding = header(reqwest::header::CONTENT_ENCODING);
        let status = r.status().as_u16();
        let (mut bytes, mut newlines, mut body) = (0, 0, Vec::new());
        while let Some(chunk) = r.chunk().await.map_err(|e| format!("reading the body failed: {e}"))? {
            bytes += chunk.len();
            newlines += chunk.iter().filter(|b| **b == b'\n').count();
            if keep || status != 200 {
                body.extend_from_slice(&chunk);
            }
        }
        let ms = t.elapsed().as_secs_f64() * 1000.0;
        Ok(Fetched { status, first_byte_ms, ms, bytes, content_type, content_encoding, body, newlines })
    };
    match tokio::time::timeout(HTTP_TIMEOUT, work).await {
        Ok(r) => r,
        Err(_) => Err(format!("no complete answer within {} s", HTTP_TIMEOUT.as_secs())),
    }
}

/// Checks an answer against what the case expects.
fn check(case: &Case, f: &Fetched) -> Result<(), String> {
    if f.status != 200 {
        let text = String::from_utf8_lossy(&f.body);
        return Err(format!("answered {}: {}", f.status, text.chars().take(300).collect::<String>()));
    }
    if let Some(e) = &f.content_encoding {
        return Err(format!("the answer is compressed ({e}); this bench reads plain answers only"));
    }
    match case.download {
        None => {
            let html = String::from_utf8_lossy(&f.body);
            if !html.contains(case.expect) {
                return Err(format!(
                    "the page has no `{}`: {}",
                    case.expect,
                    html.chars().take(300).collect::<String>()
                ));
            }
        }
        Some(Download::Csv { rows }) => {
            if !f.content_type.starts_with("text/csv") || f.newlines < rows + 1 {
                return Err(format!(
                    "a CSV of {} with {} lines, wanted at least {}",
                    f.content_type,
                    f.newlines,
                    rows + 1
                ));
            }
        }
        Some(Download::Xlsx { rows }) => {
            if f.body.is_empty() {
                return Ok(()); // Not kept: the last repeat is read as a workbook.
            }
            let mut wb: Xlsx<_> =
                open_workbook_from_rs(Cursor::new(&f.body)).map_err(|e| format!("not a workbook: {e}"))?;
            let range = wb.worksheet_range("Table").map_err(|e| format!("no sheet `Table`: {e}"))?;
            if range.height() < rows + 1 {
                return Err(format!("the workbook has {} rows, wanted at least {}", range.height(), rows + 1));
            }
        }
    }
    Ok(())
}

/// `gzip -6` size of `body` (what a compressing proxy would send), when `gzip` is installed.
fn gzip_size(body: &[u8]) -> Option<usize> {
    let mut child = std::process::Command::new("gzip")
        .arg("-6")
        .arg("-c")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .ok()?;
    let mut stdin = child.stdin.take()?;
    let input = body.to_vec();
    let writer = std::thread::spawn(move || stdin.write_all(&input));
    let out = child.wait_with_output().ok()?;
    writer.join().ok()?.ok()?;
    out.status.success().then_some(out.stdout.len())
}

/// What one case measured.
struct Outcome {
    bytes: usize,
    gzip: Option<usize>,
    first_byte_ms: f64,
    first_ms: f64,
    /// Warm repeats, sorted.
    warm_ms: Vec<f64>,
    memory: Memory,
    error: Option<String>,
}

impl Outcome {
    fn summary(&self) -> String {
        if let Some(e) = &self.error {
            return format!("FAILED: {e}");
        }
        format!(
            "{} bytes{}, first {:.0} ms, warm median {:.0} ms, peak RSS +{} MiB",
            self.bytes,
            self.gzip.map(|g| format!(" ({g} gzipped)")).unwrap_or_default(),
            self.first_ms,
            median(&self.warm_ms),
            self.memory.rise_kib() / 1024
        )
    }
}

/// Measures `case`, the `number`th of the run.
async fn measure(browser: &Browser, http: &str, case: &Case, number: usize, repeats: usize) -> Outcome {
    let url = format!("{http}{}", case.path);
    let export = case.download.is_some();
    let probe = MemoryProbe::start(case.name.clone());
    // The first request of an export is only counted, so that the bench holds none of it while memory is measured.
    let first = fetch(browser, &url, !export).await;
    let memory = probe.finish();
    let mut out =
        Outcome { bytes: 0, gzip: None, first_byte_ms: 0.0, first_ms: 0.0, warm_ms: Vec::new(), memory, error: None };
    let first = match first.and_then(|f| check(case, &f).map(|()| f)) {
        Ok(f) => f,
        Err(e) => {
            out.error = Some(e);
            return out;
        }
    };
    if let Some(dir) = std::env::var_os("OEE_PAGES_BENCH_KEEP").filter(|_| !export) {
        let file = Path::new(&dir).join(format!("{:02}.html", number));
        std::fs::write(&file, &first.body).unwrap_or_else(|e| panic!("cannot write {}: {e}", file.display()));
    }
    out.bytes = first.bytes;
    out.first_byte_ms = first.first_byte_ms;
    out.first_ms = first.ms;
    if !export {
        out.gzip = gzip_size(&first.body);
    }
    let repeats = if Duration::from_secs_f64(first.ms / 1000.0) > SLOW_FIRST { repeats.min(2) } else { repeats };
    for i in 0..repeats {
        // The last repeat of an XLSX export is kept and read back as a workbook.
        let keep = !export || (i + 1 == repeats && matches!(case.download, Some(Download::Xlsx { .. })));
        match fetch(browser, &url, keep).await.and_then(|f| check(case, &f).map(|()| f)) {
            Ok(f) => out.warm_ms.push(f.ms),
            Err(e) => {
                out.error = Some(format!("repeat {}: {e}", i + 1));
                break;
            }
        }
    }
    out.warm_ms.sort_by(f64::total_cmp);
    out
}

// ---------------------------------------------------------------------------------------------------
// Results

struct Results {
    host: HostInfo,
    shape: Shape,
    dataset: history::Dataset,
    pg_version: String,
    plan: Plan,
    cases: Vec<Case>,
    outcomes: Vec<Outcome>,
    run_s: f64,
}

fn kb(bytes: usize) -> String {
    format!("{:.1} KB", bytes as f64 / 1000.0)
}

fn mib(kib: u64) -> String {
    format!("{:.0} MiB", kib as f64 / 1024.0)
}

impl Results {
    fn rows(&self, part: Part) -> impl Iterator<Item = (&Case, &Outcome)> {
        self.cases.iter().zip(&self.outcomes).filter(move |(c, _)| c.part == part)
    }

    /// The largest graph page of the target, and whether every one of them is under it.
    fn target(&self) -> (Option<(&Case, &Outcome)>, bool) {
        let targeted: Vec<_> = self.rows(Part::Graphs).filter(|(c, _)| c.target).collect();
        let largest = targeted.iter().copied().max_by_key(|(_, o)| o.bytes);
        let met =
            !targeted.is_empty() && targeted.iter().all(|(_, o)| o.error.is_none() && o.bytes < GRAPH_TARGET_BYTES);
        (largest, met)
    }

    fn target_line(&self) -> String {
        let (largest, met) = self.target();
        let largest =
            largest.map_or_else(String::new, |(c, o)| format!("; the largest is {} ({})", kb(o.bytes), c.name));
        format!(
            "Target, each graph page under {} with {} machines and a month of data: {}{largest}",
            kb(GRAPH_TARGET_BYTES),
            self.plan.half_count,
            if met { "met" } else { "NOT met" },
        )
    }

    /// The other pages past the target's size, and the pages slow even when warm.
    fn outliers(&self) -> [String; 2] {
        let pages =
            || self.cases.iter().zip(&self.outcomes).filter(|(c, o)| c.part != Part::Exports && o.error.is_none());
        let list = |found: Vec<String>| if found.is_empty() { "none".to_string() } else { found.join("; ") };
        let large = pages()
            .filter(|(_, o)| o.bytes >= GRAPH_TARGET_BYTES)
            .map(|(c, o)| format!("{} – {} ({} gzipped)", c.name, kb(o.bytes), o.gzip.map(kb).unwrap_or_default()))
            .collect();
        let slow = pages()
            .filter(|(_, o)| median(&o.warm_ms) >= SLOW_WARM.as_secs_f64() * 1000.0)
            .map(|(c, o)| format!("{} – {:.1} s", c.name, median(&o.warm_ms) / 1000.0))
            .collect();
        [
            format!("Pages of {} or more: {}", kb(GRAPH_TARGET_BYTES), list(large)),
            format!("Pages whose warm median is {} s or more: {}", SLOW_WARM.as_secs(), list(slow)),
        ]
    }

    fn text(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(
            s,
            "\n{} machines × {} days ending {}; generation {}; whole run {:.0} s",
            self.dataset.machines,
            self.dataset.days,
            self.dataset.end.format("%Y-%m-%d %H:%M UTC"),
            self.dataset.generation_line(),
            self.run_s
        );
        for part in Part::ALL {
            let _ = writeln!(
                s,
                "\n{:<64} {:>11} {:>11} {:>9} {:>9} {:>9}",
                part.title(),
                "bytes",
                "gzip",
                "first ms",
                "warm ms",
                "RSS +MiB"
            );
            for (c, o) in self.rows(part) {
                if let Some(e) = &o.error {
                    let _ = writeln!(s, "{:<64} FAILED: {e}", c.name);
                    continue;
                }
                let _ = writeln!(
                    s,
                    "{:<64} {:>11} {:>11} {:>9.0} {:>9.0} {:>9}",
                    c.name,
                    o.bytes,
                    o.gzip.map(|g| g.to_string()).unwrap_or_default(),
                    o.first_ms,
                    median(&o.warm_ms),
                    o.memory.rise_kib() / 1024
                );
            }
        }
        let _ = writeln!(s, "\n{}", self.target_line());
        for line in self.outliers() {
            let _ = writeln!(s, "{line}");
        }
        s
    }

    fn markdown(&self) -> String {
        let h = &self.host;
        let d = &self.dataset;
        let p = &self.plan;
        let mut s = String::new();
        let _ = writeln!(s, "{SECTION_START}");
        let _ = writeln!(s, "## Managers' pages and exports over a year of history\n");
        let _ = writeln!(
            s,
            "Written by `benches/pages.rs` from the numbers it measured; re-run it rather than editing this \
             section.\n"
        );
        let _ = writeln!(
            s,
            "- Command: `OEE_REPORT_BENCH_DIR=… cargo bench --bench pages`; the whole run took {:.0} s ({:.1} min), \
             server restarts included (quick check: `OEE_BENCH_QUICK=1 cargo bench --bench pages`, which leaves \
             this file alone)",
            self.run_s,
            self.run_s / 60.0
        );
        s.push_str(&h.report_lines());
        let _ = writeln!(
            s,
            "- Database: {}; the embedded private cluster on local disk, `shared_buffers = 512MB`",
            self.pg_version
        );
        let _ = writeln!(
            s,
            "- Data: the report bench's dataset (see its section): {} machines × {} days ending {}, one activity \
             about every 5 minutes, three jobs a day, a production record every 15 minutes. Generation: {}",
            d.machines,
            d.days,
            d.end.format("%Y-%m-%d %H:%M UTC"),
            d.generation_line()
        );
        let _ = writeln!(
            s,
            "- Set-up: the whole server (broker, ingest, bridge, web) in the bench's own process, started afresh \
             (with its PostgreSQL: empty shared buffers, the operating system's file cache may still hold the \
             data) before each row; requests over HTTP on 127.0.0.1, one at a time, with the session cookie of a \
             viewer signed in through `/login` (a supervisor where said); plant time zone UTC. The OEE daily \
             cache was emptied at the start of the run and the rows ran in the order shown, so a row's first \
             request computes only the machine-days no earlier row had computed; warm repeats read them from \
             the cache. The {} machines are the first {} of the dataset's group, moved into a group of their \
             own for the run{}\n",
            p.half_count,
            p.half_count,
            if p.shifts {
                ""
            } else {
                ". The dataset's machines follow no shift pattern, so the OEE trend by shift has no points: its \
                 rows show the page without a chart"
            }
        );
        let _ = writeln!(s, "**{}.**\n", self.target_line());
        for line in self.outliers() {
            let _ = writeln!(s, "- {line}");
        }
        let _ = writeln!(s);
        let _ = writeln!(
            s,
            "How it is measured. Bytes: the body as sent (the server does not compress: no answer carried a \
             `Content-Encoding`, though the requests said `Accept-Encoding: gzip, deflate`); gzip: the same body \
             through `gzip -6`, what a compressing proxy would send. Times: until the whole body has arrived; \
             first: the first request after the fresh start; warm: the median (min–max) of {} repeats right \
             after, 2 when the first took over {} s. Memory: resident memory of the whole process (server and \
             bench; the PostgreSQL processes are not counted) during the first request: `VmRSS` of \
             `/proc/self/status` sampled every {} ms by a thread of its own, and `VmHWM` after resetting it \
             through `/proc/self/clear_refs`; the table shows the larger peak above `VmRSS` just before the \
             request, taken after `malloc_trim(0)` handed the allocator's free memory back (else a request \
             could reuse what an earlier one freed and show no rise). An export's first request was read and \
             counted without keeping its body.\n",
            self.shape.repeats,
            SLOW_FIRST.as_secs(),
            SAMPLE_EVERY.as_millis()
        );
        for part in [Part::Status, Part::Machine, Part::Graphs, Part::Tables] {
            let _ = writeln!(s, "### {}\n", part.title());
            let _ = writeln!(
                s,
                "| Page | Request | Bytes | gzip | First ms | Warm median ms (min–max) | Peak RSS above before |"
            );
            let _ = writeln!(s, "|---|---|---:|---:|---:|---:|---:|");
            for (c, o) in self.rows(part) {
                let name = if c.target { format!("{} (target)", c.name) } else { c.name.clone() };
                if let Some(e) = &o.error {
                    let _ = writeln!(s, "| {name} | `{}` | failed: {} | | | | |", c.path, e.replace('|', "/"));
                    continue;
                }
                let _ = writeln!(
                    s,
                    "| {name} | `{}` | {} | {} | {:.0} | {:.0} ({:.0}–{:.0}) | {} |",
                    c.path,
                    kb(o.bytes),
                    o.gzip.map(kb).unwrap_or_else(|| "–".into()),
                    o.first_ms,
                    median(&o.warm_ms),
                    o.warm_ms.first().copied().unwrap_or(f64::NAN),
                    o.warm_ms.last().copied().unwrap_or(f64::NAN),
                    mib(o.memory.rise_kib())
                );
            }
            let _ = writeln!(s);
        }
        let _ = writeln!(s, "### Exports\n");
        let _ = writeln!(
            s,
            "The whole table of {} machines as a download (`/tables?…&format=`), written by the server while the \
             rows are computed. First byte: until the answer's headers arrived.\n",
            p.machines
        );
        let _ = writeln!(
            s,
            "| Export | Request | Bytes | First: first byte ms | First: total ms | Warm median ms (min–max) | RSS before \
             | Peak RSS above before (sampled / `VmHWM`) |"
        );
        let _ = writeln!(s, "|---|---|---:|---:|---:|---:|---:|---:|");
        for (c, o) in self.rows(Part::Exports) {
            if let Some(e) = &o.error {
                let _ = writeln!(s, "| {} | `{}` | failed: {} | | | | | |", c.name, c.path, e.replace('|', "/"));
                continue;
            }
            let m = &o.memory;
            let _ = writeln!(
                s,
                "| {} | `{}` | {} | {:.0} | {:.0} | {:.0} ({:.0}–{:.0}) | {} | {} / {} |",
                c.name,
                c.path,
                kb(o.bytes),
                o.first_byte_ms,
                o.first_ms,
                median(&o.warm_ms),
                o.warm_ms.first().copied().unwrap_or(f64::NAN),
                o.warm_ms.last().copied().unwrap_or(f64::NAN),
                mib(m.baseline_kib),
                mib(m.sampled_peak_kib.saturating_sub(m.baseline_kib)),
                m.hwm_kib.map_or_else(|| "–".into(), |hwm| mib(hwm.saturating_sub(m.baseline_kib)))
            );
        }
        let _ = writeln!(s);
        let _ = writeln!(
            s,
            "Every answer was checked: HTTP 200 without compression; pages hold what they show (a machine's name, \
             an `<svg>`, a `<table>`); a CSV has a line per machine (per job) under its header, and the last warm \
             XLSX of each export was opened as a workbook whose sheet `Table` has as many rows."
        );
        let _ = writeln!(s, "{SECTION_END}");
        s
    }
}
