//! The read-only pages as a viewer sees them in a real browser (Debian's Chromium, headless, through
//! ChromeDriver): a board link opened signed out, then, signed in as a viewer, the machine report, each
//! graph, the tables page and the breakdown of an OEE figure, for the reference's worked example (§6.9,
//! 2024-01-10 in UTC, the test plant's zone). A screenshot of each page is kept in `target/test-artifacts/`.
//!
//! Needs the Debian packages `chromium` and `chromium-driver`; without them the test fails and says so.

mod common;

use common::chromium::*;
use common::*;
use oee_core::access::Role;

/// Keeps a screenshot of the page as `pages-<name>.png`.
async fn keep(b: &Chromium, name: &str) {
    let png = b.screenshot_png().await;
    let (w, h) = png_size(&png);
    assert!(w >= 400 && h >= 400, "{name}: {w}x{h}");
    std::fs::write(artifacts_dir().join(format!("pages-{name}.png")), &png).unwrap();
}

/// Opens `path` and waits until the element `css` is on the page.
async fn show(b: &Chromium, t: &TestApp, path: &str, css: &str) {
    b.open(&format!("{}{path}", t.http)).await;
    b.wait_for(path, &format!("document.readyState === 'complete' && !!document.querySelector({css:?})")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_viewer_sees_the_report_the_graphs_the_tables_and_a_breakdown_in_chromium() {
    let t = spawn_app().await;
    let m = t.worked_example("M1").await;
    oee_core::store::user::add_user(&t.pool, "v", "password-1", Role::Viewer, false).await.unwrap();
    let (_, secret) = oee_core::store::board::create_board_link(&t.pool, "Hall 1", None, None, chrono::Utc::now())
        .await
        .expect("create a board link");
    let mut b = Chromium::start().await;
    b.describe = "return location.pathname + ': ' + document.body.innerText.slice(0, 1500);";

    // The board needs no one signed in.
    show(&b, &t, &format!("/board/{secret}"), &format!("#machine-{m}")).await;
    keep(&b, "board").await;

    show(&b, &t, "/login", "input[name=username]").await;
    b.type_into("[name=\"username\"]", "v").await;
    b.type_into("[name=\"password\"]", "password-1").await;
    b.tap("main form button[type=submit]").await;
    b.wait_for("the status page", "location.pathname === '/status' && document.readyState === 'complete'").await;

    let window = "from=2024-01-10T00:00:00Z&to=2024-01-11T00:00:00Z";
    show(&b, &t, &format!("/machine?machine_id={m}&date=2024-01-10"), "svg").await;
    keep(&b, "machine-report").await;
    for graph in ["timeline", "oee", "pareto", "losses"] {
        show(&b, &t, &format!("/graphs?graph={graph}&machine={m}&{window}"), "main svg").await;
        keep(&b, &format!("graph-{graph}")).await;
    }
    show(&b, &t, "/tables?table=daily_oee&from=2024-01-10&to=2024-01-10", "table a.explain-link").await;
    keep(&b, "tables").await;
    // The table's OEE figure leads to its breakdown.
    b.tap("table a.explain-link").await;
    b.wait_for("the breakdown", "location.pathname === '/explain' && !!document.querySelector('#explain-oee')").await;
    assert!(b.text("#explain-availability").await.contains("75.0 %"), "the worked example's availability");
    keep(&b, "explain").await;
    b.quit().await;
}
