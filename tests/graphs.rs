//! The graphs page (`/graphs`, reference §7.3) over real HTTP: each graph is SVG drawn on the server with
//! its details as titles, the figures agree with `/api/v1/oee` for the same window, bad choices are refused
//! with a reason, anonymous callers are sent to sign in, and a month of fifty machines stays under 200 KB.
//! History is written in SQL on fixed past days in UTC (the test plant's zone).

mod common;

use common::*;
use oee_core::access::Role;
use serde_json::Value;

async fn sql(t: &TestApp, q: &str) {
    sqlx::query(sqlx::AssertSqlSafe(q.to_string())).execute(&t.pool).await.unwrap();
}

async fn code_name(t: &TestApp, id: i32) -> String {
    sqlx::query_scalar("SELECT short_description FROM activity_code WHERE id = $1")
        .bind(id)
        .fetch_one(&t.pool)
        .await
        .unwrap()
}

/// Machine `name` on 2024-01-10: job J1 08:00–12:00 (ideal cycle 30 s, 90 good, 10 rejects); Up 08–10 (by
/// `user`), Down 10–11, Up 11–12, Closed 12–13, Down 13–14.
async fn history(t: &TestApp, name: &str, user: i32) -> i32 {
    let m = t.worked_example(name).await;
    // The operator on the first Up hour, and the machine down again after the plant closed.
    sql(
        t,
        &format!("UPDATE activity SET user_id = {user} WHERE machine_id = {m} AND start_time = '2024-01-10 08:00Z'"),
    )
    .await;
    sql(
        t,
        &format!(
            "INSERT INTO activity (machine_id, activity_code_id, start_time, end_time) \
             VALUES ({m}, 2, '2024-01-10 13:00Z', '2024-01-10 14:00Z')"
        ),
    )
    .await;
    m
}

/// The page's status and its SVG (the first `<svg>…</svg>` after the navigation), checked to be
/// well-formed: every element closed in order, attributes quoted.
async fn graph(b: &Browser, path: &str) -> (u16, String, String) {
    let r = b.get(path).await;
    let status = r.status().as_u16();
    let raw = r.text().await.unwrap();
    let svg = match (raw.find("<svg class=\"chart"), raw.rfind("</svg>")) {
        (Some(a), Some(e)) => raw[a..e + "</svg>".len()].to_string(),
        _ => String::new(),
    };
    if !svg.is_empty() {
        well_formed(&svg);
    }
    // The page's text as read (the templates escape ` and = too).
    let html = raw.replace("&#x60;", "`").replace("&#x3D;", "=").replace("&amp;", "&");
    (status, html, svg)
}

/// Panics unless `svg`'s tags nest properly and no text holds a bare `<` or `&`.
fn well_formed(svg: &str) {
    let mut stack: Vec<&str> = Vec::new();
    let mut rest = svg;
    while let Some(at) = rest.find('<') {
        let text = &rest[..at];
        assert!(!text.contains('>'), "a stray > in text: {text}");
        for (i, _) in text.match_indices('&') {
            let entity = &text[i..];
            assert!(
                ["&amp;", "&lt;", "&gt;", "&quot;", "&#39;"].iter().any(|e| entity.starts_with(e)),
                "a bare & in text: {text}"
            );
        }
        let end = rest[at..].find('>').expect("a tag is closed") + at;
        let tag = &rest[at + 1..end];
        assert_eq!(tag.matches('"').count() % 2, 0, "attribute quotes pair up: {tag}");
        if let Some(name) = tag.strip_prefix('/') {
            assert_eq!(stack.pop(), Some(name), "</{name}> closes what was opened");
        } else if !tag.ends_with('/') {
            stack.push(tag.split_whitespace().next().unwrap_or_default());
        }
        rest = &rest[end + 1..];
    }
    assert!(stack.is_empty(), "left open: {stack:?}");
}

/// The texts of every `<title>` in `svg`, in order.
fn titles(svg: &str) -> Vec<String> {
    svg.split("<title>").skip(1).map(|s| s[..s.find("</title>").unwrap()].to_string()).collect()
}

async fn oee_report(t: &TestApp, query: &str) -> Value {
    let r = t.api.get(format!("{}/api/v1/oee?{query}", t.http)).send().await.unwrap();
    assert_eq!(r.status(), 200);
    r.json().await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_timeline_titles_each_activity_with_its_code_times_job_and_operator() {
    let t = spawn_app().await;
    let (b, ann) = Browser::signed_in_as(&t, "ann", Role::Viewer).await;
    let m = history(&t, "Press 1", ann).await;
    let up = code_name(&t, 1).await;
    let (status, html, svg) =
        graph(&b, &format!("/graphs?graph=timeline&machine={m}&from=2024-01-10&to=2024-01-11")).await;
    assert_eq!(status, 200, "{html}");
    assert!(svg.starts_with("<svg"), "{html}");
    let all = titles(&svg);
    assert!(all.contains(&format!("Press 1 · {up}: 08:00 to 10:00, job J1, ann")), "{all:?}");
    assert!(all.iter().any(|t| t.ends_with("13:00 to 14:00, job none, no operator")), "{all:?}");
    assert_eq!(svg.matches("<rect x=").count() - svg.matches("width=\"12\" height=\"12\"").count(), 5 + 1);
    // Zoom links narrow and widen the window around it.
    assert!(
        html.contains(&format!("/graphs?graph=timeline&machine={m}&from=2024-01-10T06:00:00Z&to=2024-01-10T18:00:00Z")),
        "zoom in"
    );
    assert!(html.contains("from=2024-01-09T12:00:00Z&to=2024-01-11T12:00:00Z"), "zoom out");

    // A group: one row per machine, the machine's name in every title.
    let other = history(&t, "Lathe <2>", ann).await;
    sql(&t, "INSERT INTO machine_group (id, name) VALUES (77, 'Hall')").await;
    sql(&t, &format!("UPDATE machine SET group_id = 77 WHERE id IN ({m}, {other})")).await;
    let (status, html, svg) = graph(&b, "/graphs?graph=timeline&key=g_77&from=2024-01-10&to=2024-01-11").await;
    assert_eq!(status, 200, "{html}");
    assert!(html.contains("Machine state timeline – Hall"));
    assert!(svg.contains(">Press 1</text>") && svg.contains(">Lathe &lt;2&gt;</text>"), "{svg}");
    assert_eq!(titles(&svg).iter().filter(|t| t.starts_with("Lathe &lt;2&gt; · ")).count(), 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_trend_pareto_and_waterfall_agree_with_the_oee_api() {
    let t = spawn_app().await;
    let (b, ann) = Browser::signed_in_as(&t, "ann", Role::Viewer).await;
    let m = history(&t, "Press 1", ann).await;
    let window = "from=2024-01-09&to=2024-01-12";

    // OEE by day: three days, the 10th with the API's figures.
    let (status, html, svg) = graph(&b, &format!("/graphs?graph=oee&machine={m}&{window}")).await;
    assert_eq!(status, 200, "{html}");
    let day = oee_report(&t, &format!("machine={m}&from=2024-01-10&to=2024-01-11")).await;
    let pct = |v: &Value| format!("{:.1}%", v.as_f64().unwrap() * 100.0);
    let f = &day["total"]["figures"];
    let bar = format!(
        "Wed 10 Jan 2024: OEE {}, availability {}, performance {}, quality {}",
        pct(&f["oee"]),
        pct(&f["availability"]),
        pct(&f["performance"]),
        pct(&f["quality"])
    );
    assert!(titles(&svg).contains(&bar), "{bar} in {:?}", titles(&svg));
    assert!(svg.contains(">Tue 09/01<") && svg.contains(">Thu 11/01<"), "a tick per day");
    assert!(svg.contains("class=\"line-availability\"") || svg.matches("<circle").count() >= 3);

    // By shift (the seeded pattern is 09:00–17:00 every day): a point per shift, the 10th's with the API's
    // figures of that shift.
    let (status, html, svg) = graph(&b, &format!("/graphs?graph=oee&machine={m}&{window}&by=shift")).await;
    assert_eq!(status, 200, "{html}");
    let shift = oee_report(&t, &format!("machine={m}&from=2024-01-10T09:00:00Z&to=2024-01-10T17:00:00Z")).await;
    let availability =
        format!("Wed 10/01 09:00 to 17:00: Availability {}", pct(&shift["total"]["figures"]["availability"]));
    assert!(titles(&svg).contains(&availability), "{availability} in {:?}", titles(&svg));
    assert!(svg.contains(">09/01 09:00<") && svg.contains(">11/01 09:00<"), "a tick per shift");
    assert!(html.contains("&by=shift\">Zoom in</a>"), "the links keep the cut");

    // Downtime by reason, longest first, with minutes and count.
    let (down, closed) = (code_name(&t, 2).await, code_name(&t, 3).await);
    let (status, html, svg) = graph(&b, &format!("/graphs?graph=pareto&machine={m}&{window}")).await;
    assert_eq!(status, 200, "{html}");
    let reasons = titles(&svg);
    assert_eq!(
        reasons,
        vec![
            format!("{down}: 120 min in 2 stops, 67% of the downtime so far"),
            format!("{closed}: 60 min in 1 stop, 100% of the downtime so far"),
        ]
    );

    // The waterfall: the API's losses for the same window, in hours.
    let api = oee_report(&t, &format!("machine={m}&{window}")).await;
    let l = &api["total"]["losses"];
    let h = |v: &Value| format!("{:.2}", v.as_f64().unwrap() / 3_600_000.0);
    let (status, html, svg) = graph(&b, &format!("/graphs?graph=losses&machine={m}&{window}")).await;
    assert_eq!(status, 200, "{html}");
    let want: Vec<String> = [
        ("Planned time", &api["total"]["sums"]["planned_ms"]),
        ("Breakdowns", &l["breakdown_ms"]),
        ("Setup", &l["setup_ms"]),
        ("Planned stops", &l["planned_stop_ms"]),
        ("Minor stops", &l["minor_stop_ms"]),
        ("Reduced speed", &l["reduced_speed_ms"]),
        ("No ideal cycle time", &l["no_ideal_cycle_time_ms"]),
        ("Quality", &l["quality_ms"]),
        ("Fully productive", &l["fully_productive_ms"]),
    ]
    .iter()
    .map(|(n, v)| format!("{n}: {} h", h(v)))
    .collect();
    assert_eq!(titles(&svg), want);
    assert!(l["breakdown_ms"].as_f64().unwrap() > 0.0, "the window has losses: {l}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_choices_are_refused_with_a_reason_and_strangers_sign_in_first() {
    let t = spawn_app().await;
    let anonymous = Browser::new(&t.http);
    let r = anonymous.get("/graphs?graph=oee").await;
    assert_eq!(r.status(), 302);
    assert!(r.headers()["location"].to_str().unwrap().starts_with("/login?next=%2Fgraphs"));

    let (b, _) = Browser::signed_in_as(&t, "ann", Role::Viewer).await;
    let (status, html, _) = graph(&b, "/graphs").await;
    assert_eq!(status, 200, "the default graph: today's timeline of every machine");
    assert!(html.contains("Machine state timeline – all machines"));
    for (path, want, text) in [
        ("/graphs?graph=pie", 400, "`graph` must be timeline, oee, pareto or losses"),
        ("/graphs?key=--Groups--", 400, "Pick a machine or group"),
        ("/graphs?machine=999", 404, "machine 999 does not exist"),
        ("/graphs?group=999", 404, "machine group 999 does not exist"),
        ("/graphs?from=2024-01-10&to=2024-01-09", 400, "must be after"),
        ("/graphs?from=yesterday", 400, "`from` must be an RFC 3339 time"),
    ] {
        let (status, html, svg) = graph(&b, path).await;
        assert_eq!(status, want, "{path}");
        assert!(html.contains(text), "{path}: {html}");
        assert!(svg.is_empty(), "{path} draws nothing");
        assert!(html.contains("<form method=\"get\" action=\"/graphs\""), "{path}: the form stays");
    }

    // A timeline draws at most 3,100 machine-days: two machines over 1,600 days are refused, one is drawn,
    // and the Pareto over the same window is not bounded by it.
    t.add_machine("M1").await;
    t.add_machine("M2").await;
    let long = "from=2020-01-01T00:00:00Z&to=2024-05-19T00:00:00Z";
    let (status, html, svg) = graph(&b, &format!("/graphs?graph=timeline&{long}")).await;
    assert_eq!(status, 400, "{html}");
    assert!(html.contains("at most 3100 machine-days") && html.contains("2 machines × 1600 days"), "{html}");
    assert!(svg.is_empty());
    let one: i32 = sqlx::query_scalar("SELECT min(id) FROM machine").fetch_one(&t.pool).await.unwrap();
    let (status, html, svg) = graph(&b, &format!("/graphs?graph=timeline&machine={one}&{long}")).await;
    assert_eq!(status, 200, "{html}");
    assert!(!svg.is_empty());
    let (status, html, _) = graph(&b, &format!("/graphs?graph=pareto&{long}")).await;
    assert_eq!(status, 200, "{html}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_month_of_fifty_machines_stays_under_200_kb() {
    let t = spawn_app().await;
    let (b, _) = Browser::signed_in_as(&t, "ann", Role::Viewer).await;
    let mut first = 0;
    for i in 0..50 {
        let m = t.add_machine(&format!("Machine {i:02}")).await;
        if i == 0 {
            first = m;
        }
    }
    // Every machine: activities of 7 to 43 minutes, back to back through January 2024, cycling through
    // the first four codes.
    sql(
        &t,
        &format!(
            "INSERT INTO activity (machine_id, activity_code_id, start_time, end_time) \
             SELECT m, 1 + (n + m) % 4, t0, t0 + ((7 + (n * 13 + m) % 37) || ' minutes')::interval \
             FROM (SELECT m, n, '2024-01-01'::timestamptz + (n * interval '45 minutes') AS t0 \
                   FROM generate_series({first}, {first} + 49) m, generate_series(0, 31 * 32 - 1) n) s"
        ),
    )
    .await;
    let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM activity WHERE end_time < '2024-03-01'")
        .fetch_one(&t.pool)
        .await
        .unwrap();
    assert_eq!(rows, 50 * 31 * 32);
    for graph_name in ["timeline", "oee", "pareto", "losses"] {
        let path = format!("/graphs?graph={graph_name}&key=all&from=2024-01-01&to=2024-02-01");
        let r = b.get(&path).await;
        assert_eq!(r.status(), 200, "{path}");
        let bytes = r.bytes().await.unwrap();
        assert!(bytes.len() < 200_000, "{path}: {} bytes", bytes.len());
        let html = String::from_utf8(bytes.to_vec()).unwrap();
        let svg = &html[html.find("<svg class=\"chart").expect("a chart")..html.rfind("</svg>").unwrap() + 6];
        well_formed(svg);
        if graph_name == "timeline" {
            assert_eq!(svg.matches("text-anchor=\"end\">Machine ").count(), 50, "a row per machine");
            assert!(svg.contains("stretches (zoom in for each activity)</title>"), "folded into a path per code");
        }
    }
}
