//! The status page (`/status`): a card per machine in its activity's colour with the day's figures, the
//! supervisors' forms on the cards, the group filter and date picker, "no signal", long activities
//! highlighted, and the live stream of statuses the page follows (`/status/events`).

mod common;

use common::*;
use oee_core::access::Role;
use rumqttc::QoS;
use serde_json::json;

/// The card of machine `m` in a status page, from its opening tag to its end.
fn card(html: &str, m: i32) -> String {
    let at = html.find(&format!(r#"id="machine-{m}""#)).unwrap_or_else(|| panic!("no card of machine {m}: {html}"));
    let start = html[..at].rfind("<article").expect("the card's opening tag");
    let end = at + html[at..].find("</article>").expect("the card's end");
    html[start..end].to_string()
}

async fn page(b: &Browser, path: &str) -> (u16, String) {
    let r = b.get(path).await;
    (r.status().as_u16(), r.text().await.unwrap())
}

/// The short names of the codes that are "up" (uptime, overtime), and of one that is down.
async fn up_codes(t: &TestApp) -> Vec<String> {
    sqlx::query_scalar("SELECT short_description FROM activity_code WHERE machine_state IN (1, 4) AND active")
        .fetch_all(&t.pool)
        .await
        .unwrap()
}

fn location(r: &reqwest::Response) -> String {
    r.headers().get("location").and_then(|v| v.to_str().ok()).unwrap_or_default().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_machine_has_a_card_in_its_activitys_colour_and_only_supervisors_get_the_forms() {
    let t = spawn_app().await;
    let press = t.add_machine("Press <1>").await;
    let lathe = t.add_machine("Lathe").await;
    t.set_schedule(lathe, true).await;
    sqlx::query("UPDATE activity_code SET graph_colour = '#123abc' WHERE id = 2").execute(&t.pool).await.unwrap();
    let (client, mut rx) = t.mqtt_client("plc").await;
    client.subscribe(REPLY, QoS::AtLeastOnce).await.unwrap();
    let v = command(&client, &mut rx, format!("oee/v1/machines/{lathe}/state"), json!({"activity_code_id": 2})).await;
    assert_eq!(v["status"], 200, "{v}");

    let (viewer, _) = Browser::signed_in_as(&t, "vera", Role::Viewer).await;
    let (status, html) = page(&viewer, "/status").await;
    assert_eq!(status, 200);
    assert!(html.contains("Summary "), "the day's heading");
    let (p, l) = (card(&html, press), card(&html, lathe));
    assert!(p.contains("Press &lt;1&gt;"), "names are escaped: {p}");
    let press_code = t.current_code(press).await;
    assert!(p.contains(&format!("code-{press_code}")), "{p}");
    assert!(l.contains("code-2") && l.contains("Lathe"), "{l}");
    for part in ["OEE ", "Availability ", "Performance ", "Quality ", "Produced: 0", "Target: 0", "No job"] {
        assert!(l.contains(part), "{part} on the card: {l}");
    }
    assert!(!html.contains("/status/machines/"), "a viewer sees no forms");
    assert!(!l.contains("<select name=\"activity_code\""));
    // the colour comes from the codes' stylesheet, the page itself has no inline style
    assert!(!html.contains("style="));
    let css = viewer.get("/status/codes.css").await;
    assert_eq!(css.headers()["content-type"], "text/css; charset=utf-8");
    assert!(css.text().await.unwrap().contains(".code-2 { --code: #123abc; }"));
    let js = viewer.get("/static/status.js").await;
    assert_eq!(js.status(), 200);
    assert!(js.text().await.unwrap().contains("/status/events"));

    let (supervisor, _) = Browser::signed_in_as(&t, "sam", Role::Supervisor).await;
    let (_, html) = page(&supervisor, "/status").await;
    let l = card(&html, lathe);
    for action in ["state", "job/start"] {
        assert!(l.contains(&format!(r#"action="/status/machines/{lathe}/{action}""#)), "{action}: {l}");
    }
    assert!(!l.contains("/production") && !l.contains("/job/end"), "no job: nothing to count or end");
    let select = &l[l.find("name=\"activity_code\"").unwrap()..];
    let select = &select[..select.find("</select>").unwrap()];
    assert!(select.contains(r#"value="2" selected"#), "{select}");
    for up in up_codes(&t).await {
        assert!(!select.contains(&format!(">{up}<")), "without a job, {up} is not offered: {select}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_supervisor_starts_a_job_adds_parts_changes_the_state_and_ends_it_from_the_card() {
    let t = spawn_app().await;
    let m = t.add_machine("Press").await;
    t.set_schedule(m, true).await;
    let (b, sam) = Browser::signed_in_as(&t, "sam", Role::Supervisor).await;
    let path = |action: &str| format!("/status/machines/{m}/{action}");

    // up without a job is refused, and the page says why
    let r = b.post_form(&path("state"), &[("activity_code", "1")]).await;
    assert_eq!((r.status().as_u16(), location(&r)), (302, format!("/status#machine-{m}")));
    let (_, html) = page(&b, "/status").await;
    assert!(html.contains("Press: not done. machine") && html.contains("has no active job: start a job"), "{html}");
    assert_ne!(t.current_code(m).await, 1);

    let r =
        b.post_form(&path("job/start"), &[("job_number", "J-77"), ("ideal_cycle_time", "12"), ("group", "1")]).await;
    assert_eq!((r.status().as_u16(), location(&r)), (302, format!("/status?group=1#machine-{m}")));
    let (job, number, ict, user): (i64, String, Option<f64>, Option<i32>) = sqlx::query_as(
        "SELECT j.id, j.job_number, j.ideal_cycle_time_s, m.current_user_id FROM machine m \
         JOIN job j ON j.id = m.active_job_id WHERE m.id = $1",
    )
    .bind(m)
    .fetch_one(&t.pool)
    .await
    .unwrap();
    assert_eq!((number.as_str(), ict, user), ("J-77", Some(12.0), Some(sam)));
    let (_, html) = page(&b, "/status").await;
    assert!(html.contains("Press: job started"), "the flash says so");
    let c = card(&html, m);
    assert!(c.contains("J-77") && c.contains(&format!(r#"name="job_id" value="{job}""#)), "{c}");
    assert!(c.contains(&format!(r#"action="/status/machines/{m}/production""#)), "{c}");

    let job_id = job.to_string();
    let r = b
        .post_form(&path("production"), &[("job_id", &job_id), ("quantity_good", "5"), ("quantity_rejects", "1")])
        .await;
    assert_eq!(r.status(), 302);
    let counted: (i64, i64) = sqlx::query_as(
        "SELECT sum(quantity_good)::int8, sum(quantity_rejects)::int8 FROM production_quantity WHERE job_id = $1",
    )
    .bind(job)
    .fetch_one(&t.pool)
    .await
    .unwrap();
    assert_eq!(counted, (5, 1));

    assert_eq!(b.post_form(&path("state"), &[("activity_code", "2")]).await.status(), 302);
    assert_eq!(t.current_code(m).await, 2);
    assert_eq!(b.post_form(&path("state"), &[("activity_code", "1")]).await.status(), 302);
    assert_eq!(t.current_code(m).await, 1, "with a job, up is accepted");
    let (_, html) = page(&b, "/status").await;
    assert!(card(&html, m).contains("Produced: 6"), "{}", card(&html, m));

    let r =
        b.post_form(&path("job/end"), &[("job_id", &job_id), ("quantity_good", "10"), ("quantity_rejects", "2")]).await;
    assert_eq!(r.status(), 302);
    let (active, good, rejects): (bool, i64, i64) = sqlx::query_as(
        "SELECT j.active, sum(p.quantity_good)::int8, sum(p.quantity_rejects)::int8 FROM job j \
         JOIN production_quantity p ON p.job_id = j.id WHERE j.id = $1 GROUP BY j.active",
    )
    .bind(job)
    .fetch_one(&t.pool)
    .await
    .unwrap();
    assert_eq!((active, good, rejects), (false, 15, 3));
    let (_, html) = page(&b, "/status").await;
    assert!(html.contains("Press: job ended"));
    assert!(card(&html, m).contains("No job"));

    // a form that is not valid is refused with what was wrong
    b.post_form(&path("job/start"), &[("job_number", " ")]).await;
    let (_, html) = page(&b, "/status").await;
    assert!(html.contains("Press: not done. Form error: &#x60;job_number&#x60; is missing"), "{html}");
    // an unknown machine is a page that says so, not a redirect
    assert_eq!(b.post_form("/status/machines/999999/state", &[("activity_code", "2")]).await.status(), 404);
    assert_eq!(b.post_form("/status/machines/x/state", &[("activity_code", "2")]).await.status(), 404);

    let (viewer, _) = Browser::signed_in_as(&t, "vera", Role::Viewer).await;
    assert_eq!(viewer.post_form(&path("state"), &[("activity_code", "2")]).await.status(), 403);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_group_filter_and_the_date_picker_choose_the_cards_and_the_day() {
    let t = spawn_app().await;
    let press = t.add_machine("Press").await;
    let lathe = t.add_machine("Lathe").await;
    let line2: i32 = sqlx::query_scalar("INSERT INTO machine_group (name) VALUES ('Line 2') RETURNING id")
        .fetch_one(&t.pool)
        .await
        .unwrap();
    sqlx::query("UPDATE machine SET group_id = $2 WHERE id = $1")
        .bind(lathe)
        .bind(line2)
        .execute(&t.pool)
        .await
        .unwrap();
    // a finished job with its parts on a day long past
    sqlx::query(
        "WITH j AS (INSERT INTO job (machine_id, job_number, ideal_cycle_time_s, start_time, end_time, active) \
                    VALUES ($1, 'OLD-1', 10, '2025-06-02T08:00:00Z', '2025-06-02T10:00:00Z', false) RETURNING id) \
         INSERT INTO production_quantity (machine_id, job_id, start_time, end_time, quantity_good, quantity_rejects) \
         SELECT $1, id, '2025-06-02T08:00:00Z', '2025-06-02T10:00:00Z', 500, 20 FROM j",
    )
    .bind(press)
    .execute(&t.pool)
    .await
    .unwrap();
    let (b, _) = Browser::signed_in_as(&t, "vera", Role::Viewer).await;

    let (_, html) = page(&b, &format!("/status?group={line2}")).await;
    assert!(html.contains(&format!(r#"id="machine-{lathe}""#)) && !html.contains(&format!(r#"id="machine-{press}""#)));
    assert!(html.contains(&format!(r#"<option value="{line2}" selected>Line 2</option>"#)), "{html}");
    let (_, html) = page(&b, "/status").await;
    assert!(html.contains(&format!(r#"id="machine-{lathe}""#)) && html.contains(&format!(r#"id="machine-{press}""#)));
    assert!(card(&html, press).contains("Produced: 0"), "today nothing was made");

    let (status, html) = page(&b, "/status?date=2025-06-02").await;
    assert_eq!(status, 200);
    assert!(html.contains("Summary Mon 02 Jun 2025"), "{html}");
    assert!(html.contains(r#"name="date" value="2025-06-02""#));
    let c = card(&html, press);
    for part in ["Produced: 520", "Good: 500", "Rejects: 20"] {
        assert!(c.contains(part), "{part}: {c}");
    }

    let (status, html) = page(&b, "/status?date=02/06/2025").await;
    assert_eq!(status, 400);
    assert!(html.contains("the date must be YYYY-MM-DD"), "{html}");
    let (status, html) = page(&b, "/status?group=999999").await;
    assert_eq!(status, 404);
    assert!(html.contains("machine group 999999 does not exist"));
    assert_eq!(page(&b, "/status?group=abc").await.0, 400);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_machines_say_no_signal_and_long_activities_are_highlighted() {
    let db = seeded_db().await;
    let mut config = test_config(&db);
    config.ingest.no_signal_after_s = 7200;
    config.web.status_highlight_after_minutes = 90;
    let t = spawn_app_with(config, db, oee_server::Services::ALL).await;
    let (fresh, hour, silent) =
        (t.add_machine("Fresh").await, t.add_machine("Hour").await, t.add_machine("Silent").await);
    let now = chrono::Utc::now();
    t.backdate_current_activity(hour, now - chrono::Duration::minutes(61)).await;
    t.backdate_current_activity(silent, now - chrono::Duration::minutes(125)).await;
    let (b, _) = Browser::signed_in_as(&t, "vera", Role::Viewer).await;
    let (_, html) = page(&b, "/status").await;
    let open_tag = |m: i32| {
        let c = card(&html, m);
        c[..c.find('>').unwrap()].to_string()
    };
    assert!(!open_tag(fresh).contains("long") && !open_tag(fresh).contains("no-signal"), "{}", open_tag(fresh));
    assert!(!open_tag(hour).contains("long") && !open_tag(hour).contains("no-signal"), "{}", open_tag(hour));
    assert!(card(&html, hour).contains("1 h 1 min"), "{}", card(&html, hour));
    assert!(open_tag(silent).contains(" long") && open_tag(silent).contains("no-signal"), "{}", open_tag(silent));
    assert!(card(&html, silent).contains("2 h 5 min"));
    assert!(card(&html, silent).contains("No signal"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_event_stream_delivers_a_state_change_made_over_mqtt() {
    let t = spawn_app().await;
    let m = t.add_machine("Press").await;
    t.set_schedule(m, true).await;
    let (b, _) = Browser::signed_in_as(&t, "vera", Role::Viewer).await;
    let mut r = b.get("/status/events").await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "text/event-stream");
    let mut buffer = String::new();
    // first, the current status of every machine
    let first = next_status_event(&mut r, &mut buffer, |v| v["machine_id"] == m).await;
    let current = first["code_id"].as_i64().unwrap();
    let target = if current == 3 { 2 } else { 3 };

    let (client, mut rx) = t.mqtt_client("plc").await;
    client.subscribe(REPLY, QoS::AtLeastOnce).await.unwrap();
    let v = command(&client, &mut rx, format!("oee/v1/machines/{m}/state"), json!({"activity_code_id": target})).await;
    assert_eq!(v["status"], 200, "{v}");
    let changed = next_status_event(&mut r, &mut buffer, |v| v["machine_id"] == m && v["code_id"] == target).await;
    assert_eq!(changed["job_id"], serde_json::Value::Null);
    assert_eq!(changed["no_signal"], false);
    assert!(changed["since_local"].as_str().unwrap().contains(':'), "{changed}");

    // anonymous callers are sent to sign in, not streamed to
    let anonymous = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let r = anonymous.get(format!("{}/status/events", t.http)).send().await.unwrap();
    assert_eq!(r.status(), 302);
}
