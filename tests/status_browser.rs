//! The status page in a real browser (Debian's Chromium through ChromeDriver): a supervisor signs in, the
//! page follows the live stream, and a state change made over MQTT recolours and renames the machine's
//! card without a reload. A screenshot is kept as `target/test-artifacts/status.png`.
//!
//! Needs the Debian packages `chromium` and `chromium-driver`; without them the test fails and says so.

mod common;

use common::chromium::*;
use common::*;
use oee_core::access::Role;
use rumqttc::QoS;
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_status_page_follows_a_state_change_without_reloading() {
    let t = spawn_app().await;
    let press = t.add_machine("Press 1").await;
    let lathe = t.add_machine("Lathe 2").await;
    t.set_schedule(press, true).await;
    oee_core::store::user::add_user(&t.pool, "sam", "password-1", Role::Supervisor, false).await.unwrap();
    // A code the machine is not in: a new machine starts Down in shift and Closed out of it (seeded 9-5).
    let target = if t.current_code(press).await == 3 { 2 } else { 3 };
    let planned: (i32, String) = sqlx::query_as("SELECT id, short_description FROM activity_code WHERE id = $1")
        .bind(target)
        .fetch_one(&t.pool)
        .await
        .unwrap();
    assert_ne!(t.current_code(press).await, planned.0, "the change is a change");

    let mut b = Chromium::start().await;
    b.describe = "return location.pathname + ': ' + document.body.innerText.slice(0, 1500);";
    b.open(&format!("{}/login?next=%2Fstatus", t.http)).await;
    b.wait_for("the sign-in page", "document.querySelector('[name=\"username\"]')").await;
    b.type_into("[name=\"username\"]", "sam").await;
    b.type_into("[name=\"password\"]", "password-1").await;
    b.tap("main form button[type=submit]").await;
    b.wait_for("the status page", "location.pathname === '/status' && document.getElementById('board')").await;
    b.wait_for("the live stream", "document.getElementById('board').dataset.live === 'on'").await;
    // A mark that a reload would wipe out.
    b.script("window.notReloaded = true; return true;").await;
    let card = format!("#machine-{press}");
    assert!(b.text(&format!("{card} .code-name")).await != planned.1);
    assert!(b.text(&format!("#machine-{lathe} h2")).await.contains("Lathe 2"));

    let (client, mut rx) = t.mqtt_client("plc").await;
    client.subscribe(REPLY, QoS::AtLeastOnce).await.unwrap();
    let v = command(&client, &mut rx, format!("oee/v1/machines/{press}/state"), json!({"activity_code_id": planned.0}))
        .await;
    assert_eq!(v["status"], 200, "{v}");
    b.wait_for(
        "the card shows the new activity",
        &format!(
            "document.querySelector('{card}').classList.contains('code-{}') && \
             document.querySelector('{card} .code-name').textContent === {:?}",
            planned.0, planned.1
        ),
    )
    .await;
    assert_eq!(b.script("return window.notReloaded === true;").await, true, "the page was not reloaded");
    let chosen = b.script(&format!("return document.querySelector('{card} select[name=activity_code]').value;")).await;
    assert_eq!(chosen, planned.0.to_string(), "the state form offers the new activity as the current one");
    // The card's frame is the code's colour, from the codes' stylesheet.
    let colour: String = sqlx::query_scalar("SELECT graph_colour FROM activity_code WHERE id = $1")
        .bind(planned.0)
        .fetch_one(&t.pool)
        .await
        .unwrap();
    let drawn = b
        .script(&format!(
            "return getComputedStyle(document.querySelector('{card}')).getPropertyValue('--code').trim();"
        ))
        .await;
    assert_eq!(drawn.as_str().unwrap().to_lowercase(), colour.trim().to_lowercase());

    let png = b.screenshot_png().await;
    let (w, h) = png_size(&png);
    assert!(w >= 400 && h >= 400, "{w}x{h}");
    std::fs::write(artifacts_dir().join("status.png"), &png).unwrap();
    b.quit().await;
}
