//! The machine report (`/machine?machine_id=&date=`, reference §7.2) over real HTTP: the day's timeline and
//! its jobs, activities and production tables; supervisors' add and edit forms, applied by ingest and
//! checked in the database; refusals shown beside the form that was sent; the audit trail of every edit;
//! and what viewers may not do. The day shown is a fixed past day in UTC (the test plant's zone).

mod common;

use chrono::{DateTime, TimeZone, Utc};
use common::*;
use oee_core::access::Role;

const DAY: &str = "2024-01-10";

/// A row of `history_audit`: kind, record, user id and name, before, after.
type AuditRow = (String, i64, Option<i32>, String, Option<serde_json::Value>, Option<serde_json::Value>);

/// 2024-01-10 at `h`:`m`, UTC.
fn at(h: u32, m: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2024, 1, 10, h, m, 0).unwrap()
}

/// The form fields of a span on the day, and the day the report shows.
fn span<'a>(from: &'a str, to: &'a str) -> Vec<(&'static str, &'a str)> {
    vec![("date", DAY), ("start_date", DAY), ("start_time", from), ("end_date", DAY), ("end_time", to)]
}

fn with<'a>(fields: &[(&'static str, &'a str)], more: &[(&'static str, &'a str)]) -> Vec<(&'static str, &'a str)> {
    fields.iter().chain(more).copied().collect()
}

/// The day's timeline of a report: its chart, from `<svg` to `</svg>`.
fn timeline(html: &str) -> String {
    let at = html.find("<svg class=\"chart timeline-chart\"").unwrap_or_else(|| panic!("a timeline: {html}"));
    html[at..at + html[at..].find("</svg>").unwrap() + "</svg>".len()].to_string()
}

/// The hover titles of an SVG's shapes, in order.
fn titles(svg: &str) -> Vec<String> {
    svg.split("<title>").skip(1).map(|s| s[..s.find("</title>").unwrap()].to_string()).collect()
}

fn location(r: &reqwest::Response) -> String {
    r.headers().get("location").and_then(|v| v.to_str().ok()).unwrap_or_default().to_string()
}

/// The refusal shown inside the form that posts to `action`, if any.
fn refusal_beside(html: &str, action: &str) -> Option<String> {
    let at = html.find(&format!("action=\"{action}\""))?;
    let form = &html[at..at + html[at..].find("</form>")?];
    let marker = "class=\"error form-error\" role=\"alert\">";
    let text = &form[form.find(marker)? + marker.len()..];
    Some(text[..text.find('<')?].to_string())
}

/// Posts `fields` to `path` and expects the report of the day back (302) with nothing refused.
async fn saved(b: &Browser, machine: i32, path: &str, fields: &[(&str, &str)]) {
    let r = b.post_form(path, fields).await;
    let status = r.status().as_u16();
    let back = location(&r);
    assert_eq!(status, 302, "{path}: {}", r.text().await.unwrap());
    assert_eq!(back, format!("/machine?machine_id={machine}&date={DAY}"));
}

async fn one<T>(t: &TestApp, sql: &'static str, id: i64) -> T
where
    T: for<'r> sqlx::FromRow<'r, sqlx::postgres::PgRow> + Send + Unpin,
{
    sqlx::query_as(sql).bind(id).fetch_one(&t.pool).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_supervisor_adds_and_edits_the_days_history_through_the_report_and_each_edit_is_audited() {
    let t = spawn_app().await;
    let m = t.add_machine("Press 1").await;
    let (b, sam) = Browser::signed_in_as(&t, "sam", Role::Supervisor).await;
    let report = format!("/machine?machine_id={m}&date={DAY}");

    let r = b.get(&report).await;
    assert_eq!(r.status().as_u16(), 200);
    let html = r.text().await.unwrap();
    assert!(html.contains("Press 1 - Wed 10 Jan 2024"), "{html}");
    for part in ["Timeline", "Jobs", "Activity", "Production", "Add Past Job", "Add Past Activity"] {
        assert!(html.contains(part), "{part}");
    }
    assert!(html.contains("No changes made through the web yet."));

    // a past job, 08:00 to 10:00, with its parts
    let job_fields =
        [("job_number", "W-501"), ("ideal_cycle_time", "12"), ("quantity_good", "100"), ("quantity_rejects", "4")];
    saved(&b, m, &format!("/machine/{m}/jobs"), &with(&job_fields, &span("08:00", "10:00"))).await;
    let (job, start, end, active): (i64, DateTime<Utc>, Option<DateTime<Utc>>, bool) =
        one(&t, "SELECT id, start_time, end_time, active FROM job WHERE machine_id = $1", i64::from(m)).await;
    assert_eq!((start, end, active), (at(8, 0), Some(at(10, 0)), false));

    // refusals are shown beside the form that was sent, with 400, and change nothing
    let add_activity = format!("/machine/{m}/activities");
    let up = [("activity_code", "1")];
    let r = b.post_form(&add_activity, &with(&up, &span("10:30", "11:00"))).await;
    assert_eq!(r.status().as_u16(), 400);
    let html = r.text().await.unwrap();
    assert_eq!(
        refusal_beside(&html, &add_activity).as_deref(),
        Some("Not saved: Cannot set to uptime when no job is active"),
        "{html}"
    );
    assert!(html.contains("value=\"10:30\""), "the refused form keeps what was sent");
    let form = &html[html.find(&format!("action=\"{add_activity}\"")).unwrap()..];
    let form = &form[..form.find("</form>").unwrap()];
    let csrf = b.csrf().await;
    assert!(form.contains(&format!("name=\"csrf_token\" value=\"{csrf}\"")), "{form}");
    assert!(form.contains(&format!("name=\"date\" value=\"{DAY}\"")), "{form}");
    let r = b.post_form(&add_activity, &with(&up, &span("09:30", "08:30"))).await;
    assert_eq!(r.status().as_u16(), 400);
    let html = r.text().await.unwrap();
    assert_eq!(refusal_beside(&html, &add_activity).as_deref(), Some("Not saved: End time before start time"));
    let activities: i64 = sqlx::query_scalar("SELECT count(*) FROM activity WHERE machine_id = $1 AND end_time < $2")
        .bind(m)
        .bind(at(23, 0))
        .fetch_one(&t.pool)
        .await
        .unwrap();
    assert_eq!(activities, 0);

    // up within the job, as the signed-in person; then down until 09:45
    saved(&b, m, &add_activity, &with(&up, &span("08:30", "09:30"))).await;
    let (activity, user): (i64, Option<i32>) =
        sqlx::query_as("SELECT id, user_id FROM activity WHERE machine_id = $1 AND start_time = $2")
            .bind(m)
            .bind(at(8, 30))
            .fetch_one(&t.pool)
            .await
            .unwrap();
    assert_eq!(user, Some(sam));
    let edit_activity = format!("/machine/{m}/activities/{activity}");
    let r = b.post_form(&edit_activity, &with(&[("activity_code", "2")], &span("09:00", "08:45"))).await;
    assert_eq!(r.status().as_u16(), 400);
    let html = r.text().await.unwrap();
    assert_eq!(refusal_beside(&html, &edit_activity).as_deref(), Some("Not saved: End time before start time"));
    assert_eq!(refusal_beside(&html, &add_activity), None, "only the form sent shows the refusal");
    saved(&b, m, &edit_activity, &with(&[("activity_code", "2")], &span("08:30", "09:45"))).await;
    let stored: (i32, DateTime<Utc>, Option<DateTime<Utc>>) =
        one(&t, "SELECT activity_code_id, start_time, end_time FROM activity WHERE id = $1", activity).await;
    assert_eq!(stored, (2, at(8, 30), Some(at(9, 45))));

    // the job's number and end
    let edit = [("job_number", "W-501b")];
    saved(&b, m, &format!("/machine/{m}/jobs/{job}"), &with(&edit, &span("08:00", "10:30"))).await;
    let edited: (String, Option<DateTime<Utc>>) =
        one(&t, "SELECT job_number, end_time FROM job WHERE id = $1", job).await;
    assert_eq!(edited, ("W-501b".to_string(), Some(at(10, 30))));

    // past production for the job, then a change of its counts
    let job_id = job.to_string();
    let parts = [("job", job_id.as_str()), ("quantity_good", "7"), ("quantity_rejects", "1")];
    saved(&b, m, &format!("/machine/{m}/production"), &with(&parts, &span("10:30", "10:45"))).await;
    let (record, good): (i64, i64) =
        one(&t, "SELECT id, quantity_good FROM production_quantity WHERE job_id = $1 ORDER BY id DESC LIMIT 1", job)
            .await;
    assert_eq!(good, 7);
    let counts = [("quantity_good", "8"), ("quantity_rejects", "1")];
    saved(&b, m, &format!("/machine/{m}/production/{record}"), &with(&counts, &span("10:30", "10:45"))).await;
    let (good,): (i64,) = one(&t, "SELECT quantity_good FROM production_quantity WHERE id = $1", record).await;
    assert_eq!(good, 8);

    // the trail: one row per applied edit, who made it, the record before and after
    let rows: Vec<AuditRow> = sqlx::query_as(
        "SELECT kind, record_id, user_id, user_name, before, after FROM history_audit WHERE machine_id = $1 \
             ORDER BY id",
    )
    .bind(m)
    .fetch_all(&t.pool)
    .await
    .unwrap();
    let kinds: Vec<(&str, i64, bool)> = rows.iter().map(|r| (r.0.as_str(), r.1, r.4.is_some())).collect();
    assert_eq!(
        kinds,
        [
            ("job", job, false),
            ("activity", activity, false),
            ("activity", activity, true),
            ("job", job, true),
            ("production", record, false),
            ("production", record, true),
        ]
    );
    assert!(rows.iter().all(|r| r.2 == Some(sam) && r.3 == "sam"));
    let (before, after) = (rows[2].4.as_ref().unwrap(), rows[2].5.as_ref().unwrap());
    assert_eq!((before["activity_code_id"].as_i64(), after["activity_code_id"].as_i64()), (Some(1), Some(2)));
    assert_eq!(after["end_time"].as_str().map(|s| s.starts_with("2024-01-10T09:45:00")), Some(true));
    assert_eq!(rows[3].4.as_ref().unwrap()["job_number"], "W-501");
    assert_eq!(rows[3].5.as_ref().unwrap()["job_number"], "W-501b");
    assert_eq!(rows[5].5.as_ref().unwrap()["quantity_good"], 8);

    // the reference's own form endpoint is audited too
    let csrf = b.csrf().await;
    let r = b
        .client
        .put(format!("{}/api/production/{record}", t.http))
        .form(&[("quantity_good", "9"), ("csrf_token", csrf.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let audited: i64 =
        sqlx::query_scalar("SELECT count(*) FROM history_audit WHERE kind = 'production' AND record_id = $1")
            .bind(record)
            .fetch_one(&t.pool)
            .await
            .unwrap();
    assert_eq!(audited, 3);

    // the page shows it all: the timeline in the codes' colours, the tables, the trail
    let r = b.get(&report).await;
    assert_eq!(r.status().as_u16(), 200);
    let html = r.text().await.unwrap();
    assert!(html.contains("<link rel=\"stylesheet\" href=\"/status/codes.css\">"));
    let svg = timeline(&html);
    assert_eq!(titles(&svg), ["Press 1 · Down: 08:30 to 09:45, job W-501b, sam"], "{svg}");
    assert!(svg.to_lowercase().contains(r##"fill="#b22222"><title>"##), "in Down's colour: {svg}");
    for cell in ["<td>W-501b</td><td>08:00</td><td>10:30</td><td>12</td>", "<td>10:30</td><td>10:45</td><td>9</td>"] {
        assert!(html.contains(cell), "{cell}: {html}");
    }
    assert!(html.contains(&format!("changed activity {activity}")));
    assert!(html.contains("activity_code_id: 1 → 2"), "{html}");
    assert!(html.contains("quantity_good: 8 → 9"), "{html}");
    assert_eq!(html.matches("class=\"audit-row\"").count(), 7);
    assert!(!html.contains("No changes made through the web yet."));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_or_unknown_machine_is_404_and_a_bad_date_400() {
    let t = spawn_app().await;
    let m = t.add_machine("Press 1").await;
    let (b, _) = Browser::signed_in_as(&t, "sam", Role::Supervisor).await;
    for path in ["/machine", "/machine?machine_id=", "/machine?machine_id=999999", "/machine?machine_id=abc"] {
        let r = b.get(path).await;
        assert_eq!(r.status().as_u16(), 404, "{path}");
        assert!(r.text().await.unwrap().contains("status page"), "{path} says where to go");
    }
    assert_eq!(b.get(&format!("/machine?machine_id={m}&date=10.01.2024")).await.status().as_u16(), 400);
    assert_eq!(b.get(&format!("/machine?machine_id={m}")).await.status().as_u16(), 200, "today when no date");
    for path in ["/machine/999999/activities", "/machine/abc/jobs", "/machine/999999/production/1"] {
        assert_eq!(b.post_form(path, &span("08:00", "09:00")).await.status().as_u16(), 404, "{path}");
    }
    // a record that is not there: the report again, saying so
    let r = b.post_form(&format!("/machine/{m}/activities/999999"), &span("08:00", "09:00")).await;
    assert_eq!(r.status().as_u16(), 404);
    assert!(r.text().await.unwrap().contains("activity 999999 does not exist"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_viewer_sees_the_report_without_forms_and_may_not_post() {
    let t = spawn_app().await;
    let m = t.add_machine("Press 1").await;
    let (sup, _) = Browser::signed_in_as(&t, "sam", Role::Supervisor).await;
    let job_fields = [("job_number", "W-7"), ("quantity_good", "5"), ("quantity_rejects", "0")];
    saved(&sup, m, &format!("/machine/{m}/jobs"), &with(&job_fields, &span("08:00", "10:00"))).await;

    let (viewer, _) = Browser::signed_in_as(&t, "vic", Role::Viewer).await;
    let r = viewer.get(&format!("/machine?machine_id={m}&date={DAY}")).await;
    assert_eq!(r.status().as_u16(), 200);
    let html = r.text().await.unwrap();
    assert!(html.contains("<td>W-7</td>"), "{html}");
    assert!(html.contains("added job"), "the trail is shown to viewers too");
    assert!(!html.contains("method=\"post\" action=\"/machine/"), "{html}");
    assert!(!html.contains("Add Past Job"));
    let job: i64 =
        sqlx::query_scalar("SELECT id FROM job WHERE machine_id = $1").bind(m).fetch_one(&t.pool).await.unwrap();
    for path in [format!("/machine/{m}/jobs"), format!("/machine/{m}/jobs/{job}"), format!("/machine/{m}/activities")] {
        let r = viewer.post_form(&path, &with(&[("job_number", "X")], &span("11:00", "12:00"))).await;
        assert_eq!(r.status().as_u16(), 403, "{path}");
    }
    let number: String =
        sqlx::query_scalar("SELECT job_number FROM job WHERE id = $1").bind(job).fetch_one(&t.pool).await.unwrap();
    assert_eq!(number, "W-7");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_timeline_titles_each_activity_with_its_code_times_job_and_operator() {
    let t = spawn_app().await;
    let m = t.worked_example("M1").await;
    let (b, vera) = Browser::signed_in_as(&t, "vera", Role::Viewer).await;
    sqlx::query("UPDATE activity SET user_id = $2 WHERE machine_id = $1 AND start_time = $3")
        .bind(m)
        .bind(vera)
        .bind(at(10, 0))
        .execute(&t.pool)
        .await
        .unwrap();
    let r = b.get(&format!("/machine?machine_id={m}&date={DAY}")).await;
    assert_eq!(r.status().as_u16(), 200);
    let html = r.text().await.unwrap();
    let svg = timeline(&html);
    assert_eq!(
        titles(&svg),
        [
            "M1 · Up: 08:00 to 10:00, job J1, no operator",
            "M1 · Down: 10:00 to 11:00, job J1, vera",
            "M1 · Up: 11:00 to 12:00, job J1, no operator",
            "M1 · Closed: 12:00 to 13:00, job none, no operator",
        ],
        "{svg}"
    );
    // Each activity is one shape in its code's colour, where the day's hours put it.
    let svg = svg.to_lowercase();
    assert_eq!(svg.matches("<title>").count(), 4);
    assert_eq!(svg.matches(r##"fill="#00ff80"><title>m1 · up"##).count(), 2, "{svg}");
    assert!(svg.contains(r##"fill="#c6c6c6"><title>m1 · closed"##), "{svg}");
    assert!(svg.contains(">06:00</text>") && svg.contains(">12:00</text>"), "hours under the day: {svg}");
    assert!(!html.contains("activity-bar"), "one way of drawing a timeline");

    // A running activity is drawn up to now: on yesterday's report, which it covers whole whatever the time.
    let now = Utc::now();
    t.backdate_current_activity(m, now - chrono::Duration::days(3)).await;
    let yesterday = (now - chrono::Duration::days(1)).format("%Y-%m-%d");
    let r = b.get(&format!("/machine?machine_id={m}&date={yesterday}")).await;
    let titles = titles(&timeline(&r.text().await.unwrap()));
    assert_eq!(titles.len(), 1, "{titles:?}");
    assert!(titles[0].starts_with("M1 · ") && titles[0].ends_with(" to now, job none, no operator"), "{titles:?}");
}
