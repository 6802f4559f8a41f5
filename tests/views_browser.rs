//! The managers' pages used as a person uses them, in a real browser (Debian's Chromium, headless, through
//! ChromeDriver): a supervisor starts a job and adds parts from a machine's card on the status page; edits
//! a past activity on the machine report and sees the timeline, the figures and the audit trail change;
//! downloads tables as XLSX files with the page's button; and an administrator makes an andon board link
//! that a wall screen nobody signed in on shows, then revokes it and the screen stops showing the board.
//! The history is the reference's worked example (§6.9) on 2024-01-10 in UTC (the test plant's zone).
//! A screenshot of the status page, of the report, of every graph and of every table is kept in
//! `target/test-artifacts/` as `views-*.png`.
//!
//! Needs the Debian packages `chromium` and `chromium-driver`; without them the tests fail and say so.

mod common;

use std::io::Cursor;

use calamine::{Data, Reader, Xlsx, open_workbook_from_rs};
use common::chromium::*;
use common::*;
use oee_core::access::Role;
use serde_json::Value;

const DAY: &str = "2024-01-10";
/// 2024-01-10 in Excel's serial days.
const DAY_SERIAL: f64 = 45301.0;
/// The page description for a failed wait: where the browser is and what it shows.
const DESCRIBE: &str = "return location.pathname + location.search + ': ' + document.body.innerText.slice(0, 1500);";

/// A Chromium session that tells where it was when a wait fails.
async fn chromium() -> Chromium {
    let mut b = Chromium::start().await;
    b.describe = DESCRIBE;
    b
}

/// Keeps a screenshot of the page as `views-<name>.png`.
async fn keep(b: &Chromium, name: &str) {
    let png = b.screenshot_png().await;
    let (w, h) = png_size(&png);
    assert!(w >= 400 && h >= 300, "{name}: {w}x{h}");
    std::fs::write(artifacts_dir().join(format!("views-{name}.png")), &png).unwrap();
}

/// Opens `path` and waits until the element `css` is on the loaded page.
async fn show(b: &Chromium, t: &TestApp, path: &str, css: &str) {
    b.open(&format!("{}{path}", t.http)).await;
    b.wait_for(path, &format!("document.readyState === 'complete' && !!document.querySelector({css:?})")).await;
}

/// Clicks `button` (which leads to another page) and waits until the next page has loaded.
async fn submit(b: &Chromium, button: &str) {
    let mark = b.script("return document.documentElement.dataset.step = String(Math.random());").await;
    let mark = mark.as_str().unwrap().to_string();
    b.tap(button).await;
    b.wait_for(
        &format!("the page after {button}"),
        &format!("document.readyState === 'complete' && document.documentElement.dataset.step !== {mark:?}"),
    )
    .await;
}

/// Signs in on the sign-in page as `user` with "password-1"; the status page follows.
async fn sign_in(b: &Chromium, t: &TestApp, user: &str) {
    show(b, t, "/login", "input[name=username]").await;
    b.type_into("[name=\"username\"]", user).await;
    b.type_into("[name=\"password\"]", "password-1").await;
    submit(b, "main form button[type=submit]").await;
    b.wait_for("the status page", "location.pathname === '/status' && !!document.getElementById('board')").await;
}

/// The script's string answer.
async fn string(b: &Chromium, script: &str) -> String {
    let v = b.script(script).await;
    v.as_str().unwrap_or_else(|| panic!("{script} answered {v}")).to_string()
}

/// What the page's message line (the flash) says.
async fn flash(b: &Chromium) -> String {
    string(b, "var f = document.querySelector('.flash'); return f ? f.textContent : 'no message';").await
}

/// The HTTP status the browser's current page was answered with.
async fn page_status(b: &Chromium) -> u64 {
    let v = b.script("return performance.getEntriesByType('navigation')[0].responseStatus;").await;
    v.as_u64().unwrap_or_else(|| panic!("no status of the page: {v}"))
}

async fn oee_api(t: &TestApp, query: &str) -> Value {
    let r = t.api.get(format!("{}/api/v1/oee?{query}", t.http)).send().await.unwrap();
    assert_eq!(r.status(), 200, "/api/v1/oee?{query}");
    r.json().await.unwrap()
}

fn close(v: &Value, x: f64) -> bool {
    v.as_f64().is_some_and(|v| (v - x).abs() < 1e-9)
}

/// The first sheet ("Table") of a downloaded workbook.
fn table_sheet(path: &std::path::Path) -> calamine::Range<Data> {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert!(bytes.starts_with(b"PK"), "{} is no XLSX (zip) file", path.display());
    let mut wb: Xlsx<_> =
        open_workbook_from_rs(Cursor::new(bytes)).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    wb.worksheet_range("Table").unwrap_or_else(|e| panic!("{}: no sheet Table: {e}", path.display()))
}

fn float(range: &calamine::Range<Data>, at: (u32, u32)) -> f64 {
    match range.get_value(at) {
        Some(Data::Float(x)) => *x,
        Some(Data::Int(n)) => *n as f64,
        Some(Data::DateTime(d)) => d.as_f64(),
        other => panic!("cell {at:?} holds {other:?}, not a number"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_supervisor_starts_a_job_and_adds_parts_from_a_card_of_the_status_page() {
    let t = spawn_app().await;
    let m = t.add_machine("Press 1").await;
    t.set_schedule(m, true).await;
    let sam = oee_core::store::user::add_user(&t.pool, "sam", "password-1", Role::Supervisor, false).await.unwrap();
    let b = chromium().await;
    sign_in(&b, &t, "sam").await;
    b.wait_for("the live stream", "document.getElementById('board').dataset.live === 'on'").await;

    let card = format!("#machine-{m}");
    assert_eq!(b.text(&format!("{card} .job")).await, "No job");
    // The card's "Start a job": open it, fill it in, send it.
    let start = format!("{card} form[action=\"/status/machines/{m}/job/start\"]");
    b.tap(&format!("{card} details:has(> form[action$=\"/job/start\"]) > summary")).await;
    b.type_into(&format!("{start} input[name=job_number]"), "J-501").await;
    b.type_into(&format!("{start} input[name=ideal_cycle_time]"), "12").await;
    submit(&b, &format!("{start} button[type=submit]")).await;
    b.wait_for(
        "the card shows the running job",
        &format!(
            "location.pathname === '/status' && document.querySelector('{card} .job').textContent === 'J-501' \
             && document.querySelector('{card}').dataset.job !== ''"
        ),
    )
    .await;
    assert_eq!(flash(&b).await, "Press 1: job started");

    // The card now offers "Add parts" for that job.
    b.wait_for("the live stream", "document.getElementById('board').dataset.live === 'on'").await;
    let add = format!("{card} form[action=\"/status/machines/{m}/production\"]");
    b.tap(&format!("{card} details:has(> form[action$=\"/production\"]) > summary")).await;
    b.type_into(&format!("{add} input[name=quantity_good]"), "7").await;
    b.type_into(&format!("{add} input[name=quantity_rejects]"), "2").await;
    submit(&b, &format!("{add} button[type=submit]")).await;
    b.wait_for("the parts are added", "location.pathname === '/status' && !!document.querySelector('.flash')").await;
    assert_eq!(flash(&b).await, "Press 1: parts added");
    assert_eq!(b.text(&format!("{card} .job")).await, "J-501", "the job still runs");

    // Exactly one job and one production record were made, as the forms said.
    /// A job: id, number, ideal cycle time, whether it runs, and the machine's user.
    type Job = (i64, String, Option<f64>, bool, Option<i32>);
    let jobs: Vec<Job> = sqlx::query_as(
        "SELECT j.id, j.job_number, j.ideal_cycle_time_s, j.active, m.current_user_id FROM job j \
         JOIN machine m ON m.id = j.machine_id WHERE j.machine_id = $1",
    )
    .bind(m)
    .fetch_all(&t.pool)
    .await
    .unwrap();
    assert_eq!(jobs.len(), 1, "one job: {jobs:?}");
    let (job, number, cycle, active, user) = jobs[0].clone();
    assert_eq!((number.as_str(), cycle, active, user), ("J-501", Some(12.0), true, Some(sam.id)));
    let shown_job = string(&b, &format!("return document.querySelector('{card}').dataset.job;")).await;
    assert_eq!(shown_job, job.to_string(), "the card is the job's");
    type Record = (Option<i64>, i64, i64, chrono::DateTime<chrono::Utc>, chrono::DateTime<chrono::Utc>);
    let records: Vec<Record> = sqlx::query_as(
        "SELECT job_id, quantity_good::int8, quantity_rejects::int8, start_time, end_time \
         FROM production_quantity WHERE machine_id = $1",
    )
    .bind(m)
    .fetch_all(&t.pool)
    .await
    .unwrap();
    assert_eq!(records.len(), 1, "one production record: {records:?}");
    let (of_job, good, rejects, from, to) = records[0];
    assert_eq!((of_job, good, rejects), (Some(job), 7, 2));

    // The card counts the parts of the day it shows (a record reaching over midnight is shared between
    // the two days, so the exact count is checked when the record lies within the day shown).
    let shown_day = string(&b, "return document.querySelector('.status-filter input[name=date]').value;").await;
    let text = string(&b, &format!("return document.querySelector('{card}').innerText;")).await;
    let day = |t: chrono::DateTime<chrono::Utc>| t.date_naive().format("%Y-%m-%d").to_string();
    if day(from) == shown_day && day(to) == shown_day {
        for fact in ["Produced: 9", "Good: 7", "Rejects: 2"] {
            assert!(text.contains(fact), "{fact} in {text}");
        }
    } else {
        assert!(text.contains("Produced: "), "{text}");
    }
    keep(&b, "status-running-job").await;
    b.quit().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_supervisor_sees_every_graph_and_table_downloads_xlsx_and_edits_the_report_in_chromium() {
    let t = spawn_app().await;
    let m = t.worked_example("M1").await;
    let group: i32 = sqlx::query_scalar("SELECT group_id FROM machine WHERE id = $1")
        .bind(m)
        .fetch_one(&t.pool)
        .await
        .expect("the machine's group");
    oee_core::store::user::add_user(&t.pool, "sam", "password-1", Role::Supervisor, false).await.unwrap();
    let b = chromium().await;
    sign_in(&b, &t, "sam").await;

    // Every graph.
    let window = "from=2024-01-10T00:00:00Z&to=2024-01-11T00:00:00Z";
    let graphs = [
        ("timeline-machine", format!("graph=timeline&machine={m}")),
        ("timeline-group", format!("graph=timeline&group={group}")),
        ("oee-trend", format!("graph=oee&machine={m}")),
        ("pareto", format!("graph=pareto&machine={m}")),
        ("losses", format!("graph=losses&machine={m}")),
    ];
    for (name, query) in graphs {
        show(&b, &t, &format!("/graphs?{query}&{window}"), "main svg").await;
        assert_eq!(page_status(&b).await, 200, "{name}");
        let error = b.script("return !!document.querySelector('main .error');").await;
        assert_eq!(error, false, "{name}: {}", b.script(DESCRIBE).await);
        keep(&b, &format!("graph-{name}")).await;
    }

    // Every table, with its rows.
    let tables = [
        ("oee-report", format!("table=oee&date={DAY}")),
        ("daily-oee", format!("table=daily_oee&from={DAY}&to={DAY}")),
        ("daily-production", format!("table=production&from={DAY}&to={DAY}")),
        ("jobs", format!("table=jobs&from={DAY}&to={DAY}")),
        ("activity-by-machine", format!("table=activity&from={DAY}&to={DAY}")),
        ("activity-by-user", format!("table=activity&from={DAY}&to={DAY}&by=user")),
    ];
    for (name, query) in &tables {
        show(&b, &t, &format!("/tables?{query}"), "main table tbody tr").await;
        assert_eq!(page_status(&b).await, 200, "{name}");
        keep(&b, &format!("table-{name}")).await;
    }

    // The XLSX buttons: the browser saves the files, whose cells agree with the OEE API for the day.
    let api = oee_api(&t, &format!("machine={m}&{window}")).await;
    let total = &api["total"];
    assert!(close(&total["figures"]["oee"], 0.1875), "the worked example: {total}");
    show(&b, &t, &format!("/tables?table=daily_oee&from={DAY}&to={DAY}"), "a.button[href*='format=xlsx']").await;
    b.tap("a.button[href*='format=xlsx']").await;
    let file = b.downloaded(&format!("daily_oee_{DAY}_{DAY}.xlsx")).await;
    let sheet = table_sheet(&file);
    assert_eq!(sheet.get_value((0, 0)), Some(&Data::String("Machine".into())));
    assert_eq!(float(&sheet, (0, 1)), DAY_SERIAL, "the column is the day");
    assert_eq!(sheet.get_value((1, 0)), Some(&Data::String("M1".into())));
    let oee = float(&sheet, (1, 1));
    assert!(close(&total["figures"]["oee"], oee), "the workbook's OEE {oee} against the API's {total}");

    show(&b, &t, &format!("/tables?table=production&from={DAY}&to={DAY}"), "a.button[href*='format=xlsx']").await;
    b.tap("a.button[href*='format=xlsx']").await;
    let file = b.downloaded(&format!("daily_production_{DAY}_{DAY}.xlsx")).await;
    let sheet = table_sheet(&file);
    assert_eq!(sheet.get_value((1, 0)), Some(&Data::String("M1".into())));
    let good = float(&sheet, (1, 1));
    assert!(close(&total["good"], good), "the workbook's good parts {good} against the API's {total}");
    // The page stayed where it was: a download is no navigation.
    assert_eq!(string(&b, "return location.pathname;").await, "/tables");

    // The machine report: the Down hour 10:00–11:00 was really the plant closed.
    let report = format!("/machine?machine_id={m}&date={DAY}");
    let segments = "svg.timeline-chart rect:has(> title)";
    show(&b, &t, &report, segments).await;
    let bars = format!(
        "return [].map.call(document.querySelectorAll('{segments}'), function (r) {{ \
         return r.getAttribute('fill') + ' @' + r.getAttribute('x') + ' ' + r.textContent; }});"
    );
    let bars = bars.as_str();
    let before = b.script(bars).await;
    let figures = "return document.querySelector('p.figures').textContent.replace(/\\s+/g, ' ').trim();";
    let figures_before = string(&b, figures).await;
    assert!(before.to_string().contains("Down: 10:00 to 11:00, job J1"), "{before}");
    assert!(figures_before.starts_with("OEE 19% · Availability 75%"), "{figures_before}");
    assert!(b.text("#audit").await.contains("No changes made through the web yet."));

    let down: i64 = sqlx::query_scalar(
        "SELECT id FROM activity WHERE machine_id = $1 AND activity_code_id = 2 AND start_time = '2024-01-10 10:00Z'",
    )
    .bind(m)
    .fetch_one(&t.pool)
    .await
    .unwrap();
    let form = format!("form[action=\"/machine/{m}/activities/{down}\"]");
    b.tap(&format!("details:has(> {form}) > summary")).await;
    b.tap(&format!("{form} select[name=activity_code] option[value=\"3\"]")).await;
    let chosen =
        string(&b, &format!("return document.querySelector('{form} select[name=activity_code]').value;")).await;
    assert_eq!(chosen, "3", "Closed is chosen");
    submit(&b, &format!("{form} button[type=submit]")).await;
    assert_eq!(string(&b, "return location.pathname + location.search;").await, report);
    assert_eq!(flash(&b).await, "Activity changed");

    let after = b.script(bars).await;
    let figures_after = string(&b, figures).await;
    assert_ne!(after, before, "the timeline is redrawn");
    let after_text = after.to_string();
    assert!(after_text.contains("Closed: 10:00 to 11:00, job J1"), "{after}");
    assert!(!after_text.contains("Down:"), "{after}");
    // Closed is not planned: 3 h planned, all of it run; 100 parts of 30 s in 3 h; 90 good.
    assert!(
        figures_after.starts_with("OEE 25% · Availability 100% · Performance 28% · Quality 90%"),
        "{figures_after}"
    );
    let api = oee_api(&t, &format!("machine={m}&{window}")).await;
    assert!(close(&api["total"]["figures"]["oee"], 0.25), "the API agrees after the edit: {}", api["total"]);

    // The audit trail lists the edit: who, which record, what changed.
    let rows = b.script("return [].map.call(document.querySelectorAll('#audit tr.audit-row'), function (r) { return r.innerText; });").await;
    let rows: Vec<String> = serde_json::from_value(rows).unwrap();
    assert_eq!(rows.len(), 1, "{rows:?}");
    for fact in ["sam", &format!("changed activity {down}"), "activity_code_id: 2 → 3"] {
        assert!(rows[0].contains(fact), "{fact} in {}", rows[0]);
    }
    let code: i32 = sqlx::query_scalar("SELECT activity_code_id FROM activity WHERE id = $1")
        .bind(down)
        .fetch_one(&t.pool)
        .await
        .unwrap();
    assert_eq!(code, 3);
    keep(&b, "machine-report-edited").await;
    b.script("document.getElementById('audit').scrollIntoView(); return 1;").await;
    keep(&b, "machine-report-audit").await;
    b.quit().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_admin_makes_a_board_link_a_wall_screen_shows_it_and_stops_when_it_is_revoked() {
    let t = spawn_app().await;
    let m = t.add_machine("Press 9").await;
    oee_core::store::user::add_user(&t.pool, "ada", "password-1", Role::Admin, false).await.unwrap();
    let admin = chromium().await;
    sign_in(&admin, &t, "ada").await;

    // The administrator makes the link from the list of links.
    show(&admin, &t, "/admin/boards", "a.button[href='/admin/boards/new']").await;
    submit(&admin, "a.button[href='/admin/boards/new']").await;
    admin.type_into("[name=\"name\"]", "Hall screen").await;
    let shows = string(
        &admin,
        "var s = document.querySelector('select[name=group]'); return s.options[s.selectedIndex].textContent;",
    )
    .await;
    assert_eq!(shows, "All machines");
    submit(&admin, "main form[action='/admin/boards/new'] button[type=submit]").await;
    let text = string(&admin, "return document.querySelector('main').innerText;").await;
    assert!(text.contains("Board link `Hall screen` (All machines) created"), "{text}");
    let at = text.find(&format!("{}/board/", t.http)).unwrap_or_else(|| panic!("no link to {} in {text}", t.http));
    let link: String = text[at..].chars().take_while(|c| !c.is_whitespace()).collect();
    let secret = link.rsplit('/').next().unwrap();
    assert!(secret.len() >= 32 && secret.chars().all(|c| c.is_ascii_hexdigit()), "{link}");

    // A wall screen that nobody signs in on: the pages need a sign-in, the board link does not.
    let wall = chromium().await;
    wall.open(&format!("{}/status", t.http)).await;
    wall.wait_for("the sign-in page", "location.pathname === '/login'").await;
    wall.open(&link).await;
    let tile = format!("#machine-{m}");
    wall.wait_for(
        "the board's tiles, live",
        &format!("!!document.querySelector('{tile}') && document.getElementById('board').dataset.live === 'on'"),
    )
    .await;
    assert_eq!(page_status(&wall).await, 200);
    assert_eq!(wall.text(&format!("{tile} h2")).await, "Press 9");
    let code: String = sqlx::query_scalar(
        "SELECT c.short_description FROM machine m JOIN activity_code c ON c.id = m.current_code_id WHERE m.id = $1",
    )
    .bind(m)
    .fetch_one(&t.pool)
    .await
    .unwrap();
    assert_eq!(wall.text(&format!("{tile} .code-name")).await, code);
    assert_eq!(wall.text("header.andon-bar h1").await, "All machines");
    keep(&wall, "board-link").await;

    // The administrator revokes it from the list.
    show(&admin, &t, "/admin/boards", "a[href^='/admin/boards/new?revoke=']").await;
    assert!(admin.text("main table").await.contains("Hall screen"));
    submit(&admin, "a[href^='/admin/boards/new?revoke=']").await;
    submit(&admin, "main form[action$='/revoke'] button[type=submit]").await;
    assert_eq!(string(&admin, "return location.pathname;").await, "/admin/boards");
    assert_eq!(flash(&admin).await, "Board link revoked");
    let row = string(&admin, "return document.querySelector('main table tbody tr').className;").await;
    assert_eq!(row, "muted", "the revoked link is shown as gone");
    let revoked: Option<chrono::DateTime<chrono::Utc>> =
        sqlx::query_scalar("SELECT revoked_at FROM board_link WHERE name = 'Hall screen'")
            .fetch_one(&t.pool)
            .await
            .unwrap();
    assert!(revoked.is_some());
    admin.quit().await;

    // The open board is told to reload (its stream checks the link every few seconds) and then shows the
    // refusal page, answered 404, without anyone touching the screen.
    let refused = "document.readyState === 'complete' && !!document.querySelector('main h1') \
                   && document.querySelector('main h1').textContent === 'No such board'";
    wall.wait_for("the open board reloads into the refusal", refused).await;
    assert_eq!(page_status(&wall).await, 404);
    assert!(wall.text("main").await.contains("unknown or was revoked"));
    assert_eq!(wall.script(&format!("return !document.querySelector('{tile}');")).await, true, "no tiles");
    keep(&wall, "board-revoked").await;
    wall.quit().await;
    assert_eq!(t.client.get(&link).send().await.unwrap().status(), 404);
}
