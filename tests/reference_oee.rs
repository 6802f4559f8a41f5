//! The reference's read-only OEE endpoints (contracts C45–C48) on its worked example (reference §6.9).

mod common;

use common::*;

async fn get(t: &TestApp, path: &str) -> (u16, String, String) {
    let r = t.api.get(format!("{}{path}", t.http)).send().await.unwrap();
    let status = r.status().as_u16();
    let ctype = r.headers().get("content-type").map(|v| v.to_str().unwrap().to_string()).unwrap_or_default();
    (status, ctype, r.text().await.unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_worked_example_gives_the_reference_numbers() {
    let t = spawn_app().await;
    let m = t.worked_example("M1").await;
    let (status, ctype, body) = get(&t, &format!("/api/oee?machine_id={m}&date=2024-01-10")).await;
    assert_eq!((status, ctype.as_str(), body.as_str()), (200, "application/json", "0.1875\n"));
    let (status, _, body) = get(&t, &format!("/api/activity-durations?machine_id={m}&date=2024-01-10")).await;
    assert_eq!((status, body.as_str()), (200, "{\"1\":10800.0,\"2\":3600.0,\"3\":3600.0,\"4\":0}\n"));
    // a day with nothing: availability 1, performance 0 → 0
    let (status, _, body) = get(&t, &format!("/api/oee?machine_id={m}&date=2024-01-11")).await;
    assert_eq!((status, body.as_str()), (200, "0.0\n"));
    // today works too (the window runs to now)
    let (status, _, body) = get(&t, &format!("/api/oee?machine_id={m}")).await;
    assert_eq!(status, 200);
    assert!(body.trim().parse::<f64>().is_ok(), "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_queries_are_400_with_a_message() {
    let t = spawn_app().await;
    let m = t.add_machine("M1").await;
    let cases = [
        (format!("/api/oee?machine_id={m}&date=24-11-2026"), "Date must be in format YYYY-MM-DD"),
        ("/api/oee".to_string(), "machine_id"),
        ("/api/oee?machine_id=abc".to_string(), "abc"),
        ("/api/oee?machine_id=999".to_string(), "999"),
        (format!("/api/oee?machine_id={m}&date=2999-01-01"), "future"),
        (format!("/api/activity-durations?machine_id={m}&date=2999-01-01"), "future"),
        ("/api/activity-durations?date=2024-01-10".to_string(), "machine_id"),
    ];
    for (path, want) in cases {
        let (status, _, body) = get(&t, &path).await;
        assert_eq!(status, 400, "{path}: {body}");
        assert!(body.contains(want), "{path}: {body}");
    }
}

async fn v1(t: &TestApp, query: &str) -> (u16, serde_json::Value) {
    let r = t.api.get(format!("{}/api/v1/oee?{query}", t.http)).send().await.unwrap();
    (r.status().as_u16(), r.json().await.unwrap())
}

fn near(v: &serde_json::Value, want: f64) -> bool {
    v.as_f64().is_some_and(|x| (x - want).abs() < 1e-6)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_v1_api_gives_figures_sums_and_buckets() {
    let t = spawn_app().await;
    let m = t.worked_example("M1").await;
    let day = "from=2024-01-10T00:00:00Z&to=2024-01-11T00:00:00Z";
    let (status, v) = v1(&t, &format!("machine={m}&{day}")).await;
    assert_eq!(status, 200, "{v}");
    let f = &v["total"]["figures"];
    assert!(near(&f["availability"], 0.75) && near(&f["performance"], 3000.0 / 10800.0), "{f}");
    assert!(near(&f["quality"], 0.9) && near(&f["oee"], 0.1875), "{f}");
    assert!(near(&f["teep"], 0.1875 * 4.0 / 24.0) && near(&f["ict_coverage"], 1.0), "{f}");
    assert_eq!(v["total"]["sums"]["by_code_ms"], serde_json::json!({"1": 10_800_000, "2": 3_600_000, "3": 3_600_000}));
    assert_eq!(v["buckets"], serde_json::json!([]));

    // the same machine through its group, by hour: 24 buckets adding up to the day
    let (status, v) = v1(&t, &format!("group=1&{day}&by=hour")).await;
    assert_eq!(status, 200, "{v}");
    let buckets = v["buckets"].as_array().unwrap();
    assert_eq!(buckets.len(), 24);
    assert!(near(&buckets[8]["figures"]["availability"], 1.0));
    assert!(buckets[3]["figures"]["availability"].is_null(), "nothing planned at 03:00");
    let run: i64 = buckets.iter().map(|b| b["sums"]["run_ms"].as_i64().unwrap()).sum();
    assert_eq!(run, 3 * 3_600_000);

    let (status, v) = v1(&t, &format!("machine={m}&from=2024-01-09T00:00:00Z&to=2024-01-11T00:00:00Z&by=day")).await;
    assert_eq!(status, 200);
    assert_eq!(v["buckets"].as_array().unwrap().len(), 2);
    assert!(v["buckets"][0]["figures"]["oee"].is_null() && near(&v["buckets"][1]["figures"]["oee"], 0.1875));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_v1_api_refuses_unclear_requests() {
    let t = spawn_app().await;
    let m = t.add_machine("M1").await;
    let cases = [
        (String::new(), 400, "machine"),
        (format!("machine={m}&group=1"), 400, "either"),
        ("machine=77".to_string(), 404, "machine 77"),
        ("group=77".to_string(), 404, "group 77"),
        (format!("machine={m}&from=yesterday"), 400, "from"),
        (format!("machine={m}&from=2024-01-02T00:00:00Z&to=2024-01-01T00:00:00Z"), 400, "after"),
        (format!("machine={m}&by=fortnight"), 400, "fortnight"),
        (format!("machine={m}&from=2020-01-01T00:00:00Z&to=2026-01-01T00:00:00Z&by=hour"), 400, "buckets"),
    ];
    for (query, status, want) in cases {
        let (got, v) = v1(&t, &query).await;
        assert_eq!(got, status, "{query}: {v}");
        assert!(v["error"].as_str().unwrap().contains(want), "{query}: {v}");
    }
}
