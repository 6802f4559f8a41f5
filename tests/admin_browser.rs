//! A plant set up in a real browser (Debian's Chromium, headless, through ChromeDriver), as a new administrator
//! would: sign in as the seeded admin, choose a new password, then create a group, an activity code with a
//! loss category, a shift pattern with two shifts on weekdays and an overnight shift, a machine with the
//! pausable workflow on that pattern, and an operator with a PIN. The tablet API then offers that machine's
//! workflow and the new code. A screenshot of each page is kept in `target/test-artifacts/`.
//!
//! Needs the Debian packages `chromium` and `chromium-driver`; without them the test fails and says so.

mod common;

use common::chromium::*;
use common::*;
use serde_json::{Value, json};

/// Fills the input or textarea named `name` (CSS-escaped) with `text`.
async fn fill(b: &Chromium, name: &str, text: &str) {
    b.type_into(&format!("[name=\"{name}\"]"), text).await;
}

/// Chooses the option whose label is `label` in the select named `name`.
async fn choose(b: &Chromium, name: &str, label: &str) {
    let script = format!(
        "var s = document.querySelector('select[name=\"{name}\"]'); \
         var o = [].find.call(s.options, function (o) {{ return o.textContent.trim() === {label:?}; }}); \
         if (!o) {{ return 'no option ' + {label:?} + ' in ' + [].map.call(s.options, function (o) {{ return o.textContent; }}).join('|'); }} \
         s.value = o.value; return 'ok';"
    );
    assert_eq!(b.script(&script).await, "ok", "select {name}");
}

/// Chooses the option with value `value` in the select named `name`.
async fn choose_value(b: &Chromium, name: &str, value: &str) {
    let script =
        format!("var s = document.querySelector('select[name=\"{name}\"]'); s.value = {value:?}; return s.value;");
    assert_eq!(b.script(&script).await, value, "select {name}");
}

/// Ticks or unticks the checkbox named `name`.
async fn tick(b: &Chromium, name: &str, on: bool) {
    let script =
        format!("var c = document.querySelector('input[name=\"{name}\"]'); c.checked = {on}; return c.checked;");
    assert_eq!(b.script(&script).await, on, "checkbox {name}");
}

/// Submits the page's first form inside `main` with a real click on its submit button, and waits for the
/// next page.
async fn submit(b: &Chromium, form: &str) {
    let before = b.script("return document.documentElement.dataset.step = String(Math.random());").await;
    b.tap(&format!("{form} button[type=submit]")).await;
    let before = before.as_str().unwrap().to_string();
    b.wait_for(
        "the next page",
        &format!("document.readyState === 'complete' && document.documentElement.dataset.step !== {before:?}"),
    )
    .await;
}

/// Keeps a screenshot of the page as `admin-<name>.png`.
async fn keep(b: &Chromium, name: &str) {
    let png = b.screenshot_png().await;
    let (w, h) = png_size(&png);
    assert!(w >= 400 && h >= 400, "{name}: {w}x{h}");
    std::fs::write(artifacts_dir().join(format!("admin-{name}.png")), &png).unwrap();
}

async fn path(b: &Chromium) -> String {
    b.script("return location.pathname + location.search;").await.as_str().unwrap().to_string()
}

async fn flash(b: &Chromium) -> String {
    b.script("var f = document.querySelector('.flash'); return f ? f.textContent : (document.querySelector('.error') || {textContent: 'no flash'}).textContent;")
        .await
        .as_str()
        .unwrap()
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_administrator_sets_up_a_plant_in_chromium_and_the_tablet_api_shows_it() {
    let t = spawn_app().await;
    let mut b = Chromium::start().await;
    b.describe = "return location.pathname + ': ' + document.body.innerText.slice(0, 1500);";

    // Sign in as the seeded administrator: the server asks for a new password first.
    b.open(&format!("{}/", t.http)).await;
    b.wait_for("the sign-in page", "location.pathname === '/login'").await;
    keep(&b, "sign-in").await;
    fill(&b, "username", "admin").await;
    fill(&b, "password", "digitme2").await;
    submit(&b, "main form").await;
    assert_eq!(path(&b).await, "/account/password");
    keep(&b, "password").await;
    fill(&b, "current_password", "digitme2").await;
    fill(&b, "password", "plant-admin-2026").await;
    fill(&b, "confirm_password", "plant-admin-2026").await;
    submit(&b, "form[action='/account/password']").await;
    assert_eq!(path(&b).await, "/status");

    b.open(&format!("{}/admin-home", t.http)).await;
    b.wait_for(
        "the admin home",
        "document.querySelector('h1') && document.querySelector('h1').textContent === 'Administration'",
    )
    .await;
    keep(&b, "home").await;

    // A group.
    b.open(&format!("{}/admin/groups/new", t.http)).await;
    fill(&b, "name", "Line A").await;
    keep(&b, "group").await;
    submit(&b, "main form").await;
    assert!(flash(&b).await.contains("Line A"), "{}", flash(&b).await);

    // An activity code with a loss category and a colour from the picker.
    b.open(&format!("{}/admin/codes/new", t.http)).await;
    fill(&b, "short_description", "Tool change").await;
    fill(&b, "long_description", "Changing a worn tool").await;
    choose_value(&b, "machine_state", "2").await;
    choose_value(&b, "loss_category", "setup").await;
    b.script("document.querySelector('input[name=\"graph_colour\"]').value = '#3366cc'; return 1;").await;
    keep(&b, "code").await;
    submit(&b, "main form").await;
    assert!(flash(&b).await.contains("Tool change"), "{}", flash(&b).await);

    // A shift pattern: two shifts on weekdays, a night shift into Saturday, no shifts at the weekend.
    b.open(&format!("{}/admin/shifts/new", t.http)).await;
    fill(&b, "name", "Two shifts").await;
    submit(&b, "main form").await;
    let editor = path(&b).await;
    assert!(editor.starts_with("/admin/shifts/"), "{editor}");
    for day in ["mon", "tue", "wed", "thu", "fri"] {
        tick(&b, &format!("{day}.off"), false).await;
        fill(&b, &format!("{day}.0.start"), "06:00").await;
        fill(&b, &format!("{day}.0.end"), "14:00").await;
        fill(&b, &format!("{day}.1.start"), "14:00").await;
        fill(&b, &format!("{day}.1.end"), "22:00").await;
    }
    fill(&b, "fri.2.start", "22:00").await;
    fill(&b, "fri.2.end", "06:00").await;
    tick(&b, "fri.2.overnight", true).await;
    for day in ["sat", "sun"] {
        tick(&b, &format!("{day}.off"), true).await;
    }
    submit(&b, "main form").await;
    assert!(!flash(&b).await.contains("no flash"), "saved: {}", flash(&b).await);
    keep(&b, "shift").await;
    let preview = b.script("return document.querySelectorAll('.week-preview rect[fill=\"#1b7f3b\"]').length;").await;
    assert!(preview.as_u64().unwrap() >= 11, "the preview draws each shift: {preview}");

    // A machine with the pausable workflow on that pattern, in the group.
    b.open(&format!("{}/admin/machines/new", t.http)).await;
    fill(&b, "name", "Press 7").await;
    choose(&b, "group", "Line A").await;
    choose(&b, "shift_pattern", "Two shifts").await;
    choose_value(&b, "workflow_type", "pausable").await;
    keep(&b, "machine").await;
    submit(&b, "main form").await;
    assert!(flash(&b).await.contains("Press 7"), "{}", flash(&b).await);

    // An operator with a PIN.
    b.open(&format!("{}/admin/users/new", t.http)).await;
    fill(&b, "username", "olga").await;
    choose_value(&b, "role", "operator").await;
    fill(&b, "password", "2468").await;
    fill(&b, "confirm_password", "2468").await;
    keep(&b, "user").await;
    submit(&b, "main form").await;
    assert!(flash(&b).await.contains("olga"), "{}", flash(&b).await);
    b.open(&format!("{}/admin/tablets", t.http)).await;
    keep(&b, "tablets").await;
    b.open(&format!("{}/admin/settings", t.http)).await;
    keep(&b, "settings").await;
    b.quit().await;

    // What the browser saved, as the database holds it.
    let (machine, workflow, group, shift): (i32, String, String, String) = sqlx::query_as(
        "SELECT m.id, m.workflow_type, g.name, s.name FROM machine m JOIN machine_group g ON g.id = m.group_id \
         JOIN shift s ON s.id = m.shift_id WHERE m.name = 'Press 7'",
    )
    .fetch_one(&t.pool)
    .await
    .unwrap();
    assert_eq!((workflow.as_str(), group.as_str(), shift.as_str()), ("pausable", "Line A", "Two shifts"));
    let (loss, colour): (String, String) =
        sqlx::query_as("SELECT loss_category, graph_colour FROM activity_code WHERE short_description = 'Tool change'")
            .fetch_one(&t.pool)
            .await
            .unwrap();
    assert_eq!((loss.as_str(), colour.to_lowercase().as_str()), ("setup", "#3366cc"));
    let (olga, role): (i32, String) =
        sqlx::query_as("SELECT id, role FROM app_user WHERE username = 'olga'").fetch_one(&t.pool).await.unwrap();
    assert_eq!(role, "operator");
    let week = t.api.get(format!("{}/api/v1/shifts", t.http)).send().await.unwrap().json::<Value>().await.unwrap();
    assert!(week.to_string().contains("Two shifts"), "{week}");

    // The tablet API: the tablet pairs with the new machine, the operator logs in with the PIN, and the
    // machine's workflow and the new code are offered.
    t.set_schedule(machine, true).await;
    let uuid = uuid::Uuid::new_v4().to_string();
    let check_state = || {
        let r = t.client.get(format!("{}/check-state", t.http)).query(&[("device_uuid", uuid.as_str())]).send();
        async move { r.await.unwrap().json::<Value>().await.unwrap() }
    };
    assert_eq!(check_state().await["machine"], "Press 7");
    let post = |path: &'static str, body: Value| {
        let r = t.client.post(format!("{}{path}", t.http)).json(&body);
        async move { r.send().await.unwrap().status().as_u16() }
    };
    let login = json!({"user_id": olga.to_string(), "password": "2468", "device_uuid": uuid});
    assert_eq!(post("/android-login", login).await, 200, "the operator's PIN works on the tablet");
    let body = json!({"device_uuid": uuid, "job_number": "7", "ideal_cycle_time": "10"});
    assert_eq!(post("/android-start-job", body).await, 200);
    let v = check_state().await;
    assert_eq!(v["workflow_type"], "pausable", "{v}");
    let offered: Vec<String> = v["activity_codes"]
        .as_array()
        .unwrap_or_else(|| panic!("no activity codes: {v}"))
        .iter()
        .map(|c| c["description"].as_str().unwrap().to_string())
        .collect();
    assert!(offered.contains(&"Tool change".to_string()), "{offered:?}");
}
