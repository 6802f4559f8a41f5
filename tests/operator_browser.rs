//! The operator tablet page (`/operator`) in a real browser: Debian's Chromium, headless, driven through
//! ChromeDriver over the W3C WebDriver HTTP protocol. An operator pairs, logs in, runs a job, records a stop
//! and ends the job, and the database shows each step.
//!
//! Needs the Debian packages `chromium` and `chromium-driver`; without them the test fails and says so.

mod common;

use std::time::Duration;

use common::chromium::*;
use common::*;

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

    let mut b = Chromium::start().await;
    b.describe = SCREEN_STATE;
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
    std::fs::write(artifacts_dir().join("operator-job.png"), &png).unwrap();

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

    let mut b = Chromium::start().await;
    b.describe = SCREEN_STATE;
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
