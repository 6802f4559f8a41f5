//! "Explain this number" (`/explain?machine=N&from=…&to=…`) over real HTTP: for the reference's worked
//! example (§6.9) the page shows the same availability, performance, quality and OEE as `/api/v1/oee` for
//! the same window, with the inputs they come from; each data-quality flag appears when its condition
//! holds and not otherwise; the status page, the machine report and the daily OEE table link to it; and
//! it is for signed-in people only. The day is a fixed past day in UTC (the test plant's zone).

mod common;

use common::*;
use oee_core::access::Role;
use serde_json::Value;

const WINDOW: &str = "from=2024-01-10&to=2024-01-11";

/// An attribute's text as the browser reads it (the templates escape `=` and `&`).
fn unescape(html: &str) -> String {
    html.replace("&#x3D;", "=").replace("&amp;", "&")
}

/// The text of the row with `id`, tags removed.
fn row(html: &str, id: &str) -> String {
    let at = html.find(&format!("id=\"{id}\"")).unwrap_or_else(|| panic!("no row {id}: {html}"));
    let rest = &html[at..];
    let row = &rest[..rest.find("</tr>").unwrap()];
    let mut text = String::new();
    let mut in_tag = true;
    for c in row.chars() {
        match c {
            '<' => in_tag = true,
            '>' => {
                in_tag = false;
                text.push(' ');
            }
            c if !in_tag => text.push(c),
            _ => {}
        }
    }
    unescape(&text).split_whitespace().collect::<Vec<_>>().join(" ")
}

fn pct(v: &Value) -> String {
    format!("{:.1} %", v.as_f64().unwrap() * 100.0)
}

fn min(ms: &Value) -> String {
    format!("{:.1} min", ms.as_f64().unwrap() / 60_000.0)
}

/// The data-quality flags the page lists, by name.
fn flags(html: &str) -> Vec<String> {
    html.match_indices("<li class=\"flag\"><strong>")
        .map(|(at, m)| {
            let rest = &html[at + m.len()..];
            rest[..rest.find("</strong>").unwrap()].to_string()
        })
        .collect()
}

async fn explain(b: &Browser, query: &str) -> String {
    let r = b.get(&format!("/explain?{query}")).await;
    assert_eq!(r.status(), 200, "/explain?{query}");
    r.text().await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_worked_example_is_explained_with_the_figures_of_the_oee_report() {
    let t = spawn_app().await;
    let m = t.worked_example("M1").await;
    let (b, _) = Browser::signed_in_as(&t, "v", Role::Viewer).await;
    let api: Value =
        t.api.get(format!("{}/api/v1/oee?machine={m}&{WINDOW}", t.http)).send().await.unwrap().json().await.unwrap();
    let total = &api["total"];
    let (f, s) = (&total["figures"], &total["sums"]);
    let html = explain(&b, &format!("machine={m}&{WINDOW}")).await;
    assert!(html.contains("machine M1"), "{html}");

    // The same figures as the report, each with its formula and the numbers put in.
    let a = row(&html, "explain-availability");
    assert!(
        a.contains(&format!("{} ÷ {} = {}", min(&s["run_ms"]), min(&s["planned_ms"]), pct(&f["availability"]))),
        "{a}"
    );
    let p = row(&html, "explain-performance");
    assert!(
        p.contains(&format!("{} ÷ {} = {}", min(&s["ideal_ms"]), min(&s["covered_run_ms"]), pct(&f["performance"]))),
        "{p}"
    );
    let q = row(&html, "explain-quality");
    assert!(q.contains(&format!("= 90 ÷ (90 + 10) = {}", pct(&f["quality"]))), "{q}");
    let o = row(&html, "explain-oee");
    let oee = format!(
        "{} × {} × {} = {}",
        pct(&f["availability"]),
        pct(&f["performance"]),
        pct(&f["quality"]),
        pct(&f["oee"])
    );
    assert!(o.contains(&oee), "{o}");

    // The worked example's own numbers (reference §6.9): 4 h planned, 3 h run, 100 parts at 30 s.
    assert_eq!(row(&html, "input-planned"), "Planned time 240.0 min run time plus breakdowns, setups, planned stops");
    assert!(row(&html, "input-run").starts_with("Run time 180.0 min"));
    assert!(row(&html, "input-ideal").starts_with("Ideal time 50.0 min"));
    assert_eq!(row(&html, "input-good"), "Good parts 90");
    assert_eq!(row(&html, "input-rejects"), "Rejected parts 10");
    assert_eq!(pct(&f["availability"]), "75.0 %");
    assert!(html.contains("Breakdowns"), "the six big losses are listed");
    assert!(flags(&html).is_empty(), "the worked example has complete data: {:?}", flags(&html));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_flag_appears_when_its_condition_holds() {
    let t = spawn_app().await;
    let (b, _) = Browser::signed_in_as(&t, "v", Role::Viewer).await;

    // Parts counted in the evening, when no planned time was recorded, at the job's 30 s: 250 more minutes
    // of ideal time than the 180 minutes run, so performance is over 100 % too.
    let m = t.worked_example("M2").await;
    sqlx::query(
        "INSERT INTO production_quantity (machine_id, job_id, start_time, end_time, quantity_good, quantity_rejects) \
         SELECT machine_id, id, '2024-01-10 20:00Z', '2024-01-10 21:00Z', 500, 0 FROM job WHERE machine_id = $1",
    )
    .bind(m)
    .execute(&t.pool)
    .await
    .unwrap();
    let html = explain(&b, &format!("machine={m}&{WINDOW}")).await;
    let got = flags(&html);
    assert!(got.contains(&"performance over 100 %".to_string()), "{got:?}");
    assert!(got.contains(&"production outside planned time".to_string()), "{got:?}");
    assert!(html.contains("500 parts were counted while no planned time was recorded"), "{html}");
    assert!(!got.contains(&"missing ideal cycle time".to_string()), "{got:?}");

    // A job with no ideal cycle time, running in the afternoon.
    let m = t.worked_example("M3").await;
    sqlx::query(
        "INSERT INTO job (machine_id, job_number, ideal_cycle_time_s, start_time, end_time, active) \
         VALUES ($1, 'NO-ICT', NULL, '2024-01-10 14:00Z', '2024-01-10 15:00Z', false)",
    )
    .bind(m)
    .execute(&t.pool)
    .await
    .unwrap();
    let html = explain(&b, &format!("machine={m}&{WINDOW}")).await;
    let got = flags(&html);
    assert_eq!(got, vec!["missing ideal cycle time".to_string()], "{html}");
    assert!(html.contains("NO-ICT on M3"), "the job is named");
    // Outside that job's window the flag does not hold.
    let html = explain(&b, &format!("machine={m}&from=2024-01-10T08:00:00Z&to=2024-01-10T12:00:00Z")).await;
    assert!(flags(&html).is_empty(), "{:?}", flags(&html));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn figures_link_to_their_breakdown_and_strangers_are_sent_to_sign_in() {
    let t = spawn_app().await;
    let m = t.worked_example("M1").await;
    let (b, _) = Browser::signed_in_as(&t, "v", Role::Viewer).await;
    let link = format!("href=\"/explain?machine={m}&from=2024-01-10&to=2024-01-11\"");
    for page in [
        "/status?date=2024-01-10".to_string(),
        format!("/machine?machine_id={m}&date=2024-01-10"),
        "/tables?table=daily_oee&from=2024-01-10&to=2024-01-10".to_string(),
    ] {
        let html = unescape(&b.get(&page).await.text().await.unwrap());
        let links = html.matches(&link).count();
        let want = if page.starts_with("/tables") { 1 } else { 4 };
        assert_eq!(links, want, "{page} links OEE, A, P and Q to the breakdown: {html}");
    }

    // Wrong parameters are refused with a page that says what to do, not an error.
    let backwards = format!("machine={m}&from=2024-01-11&to=2024-01-10");
    for (query, status) in [("", 400), ("machine=x", 400), ("machine=999", 404), (backwards.as_str(), 400)] {
        let r = b.get(&format!("/explain?{query}")).await;
        assert_eq!(r.status(), status, "{query}");
    }

    let anonymous = Browser::new(&t.http);
    let r = anonymous.get(&format!("/explain?machine={m}&{WINDOW}")).await;
    assert_eq!(r.status(), 302);
    let location = r.headers().get("location").and_then(|v| v.to_str().ok()).unwrap_or_default().to_string();
    assert!(location.starts_with("/login?next="), "{location}");
}
