//! `GET /api/v1/telemetry` with buckets (from the readings and from the hourly rollups, before and after
//! they are refreshed, with a late reading), `GET /api/v1/telemetry/keys`, the CSV export and the refusals.
//! The same hand-computed values hold on TimescaleDB and on plain tables (`OEE_TEST_TIMESCALEDB=off`).
//!
//! The readings, machine M1, key `temp`, on 2024-01-10 (UTC) unless said:
//!
//! | time  | 08:00 | 08:10 | 08:20 | 08:50 | 09:05 | 09:40 | 11:30 | 01-11 00:30 |
//! |-------|-------|-------|-------|-------|-------|-------|-------|-------------|
//! | value | 10    | 20    | 30    | 40    | 2     | 4     | 6     | 100         |
//!
//! and `pressure` 1.5 at 08:00 and 2.5 at 09:00; machine M2 has `temp` 1000 at 08:05, which must not show.

mod common;

use chrono::{DateTime, Utc};
use common::*;
use oee_core::store::{telemetry, timescale};
use serde_json::{Value, json};

async fn sql(t: &TestApp, q: &str) {
    sqlx::query(sqlx::AssertSqlSafe(q.to_string())).execute(&t.pool).await.unwrap();
}

async fn get(t: &TestApp, path: &str) -> (u16, Value) {
    let r = t.api.get(format!("{}{path}", t.http)).send().await.unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

/// The (start, value) pairs of a bucketed answer, and its source.
async fn points(t: &TestApp, query: &str) -> (String, Vec<(String, f64)>) {
    let (status, body) = get(t, &format!("/api/v1/telemetry?{query}")).await;
    assert_eq!(status, 200, "{query}: {body}");
    let points = body["points"]
        .as_array()
        .unwrap_or_else(|| panic!("{query}: no points: {body}"))
        .iter()
        .map(|p| (p["t"].as_str().unwrap().to_string(), p["v"].as_f64().unwrap()))
        .collect();
    (body["source"].as_str().unwrap_or_default().to_string(), points)
}

fn expect(pairs: &[(&str, f64)]) -> Vec<(String, f64)> {
    pairs.iter().map(|(t, v)| (t.to_string(), *v)).collect()
}

/// Two machines with the readings of the module's table; returns (M1, M2).
async fn readings(t: &TestApp) -> (i32, i32) {
    let m = t.add_machine("M1").await;
    let other = t.add_machine("M2").await;
    sql(
        t,
        &format!(
            "INSERT INTO telemetry (machine_id, key, ts, value) VALUES \
             ({m}, 'temp', '2024-01-10 08:00Z', 10), ({m}, 'temp', '2024-01-10 08:10Z', 20), \
             ({m}, 'temp', '2024-01-10 08:20Z', 30), ({m}, 'temp', '2024-01-10 08:50Z', 40), \
             ({m}, 'temp', '2024-01-10 09:05Z', 2), ({m}, 'temp', '2024-01-10 09:40Z', 4), \
             ({m}, 'temp', '2024-01-10 11:30Z', 6), ({m}, 'temp', '2024-01-11 00:30Z', 100), \
             ({m}, 'pressure', '2024-01-10 08:00Z', 1.5), ({m}, 'pressure', '2024-01-10 09:00Z', 2.5), \
             ({other}, 'temp', '2024-01-10 08:05Z', 1000)"
        ),
    )
    .await;
    (m, other)
}

/// Refreshes the rollups as the maintenance runner would at `now`.
async fn refresh(t: &TestApp, now: &str) {
    let ts = timescale::status(&t.pool).await.unwrap();
    let now: DateTime<Utc> = now.parse().unwrap();
    telemetry::refresh_rollups(&t.pool, &ts, now).await.expect("refresh the rollups");
}

const DAY: &str = "from=2024-01-10T00:00:00Z&to=2024-01-12T00:00:00Z";

/// The hourly and daily values of every aggregate, as computed by hand from the module's table.
async fn rollup_answers_are_the_hand_computed_ones(t: &TestApp, m: i32) {
    let hours = |agg: &str| format!("machine={m}&key=temp&{DAY}&bucket=1h&agg={agg}");
    let days = |agg: &str| format!("machine={m}&key=temp&{DAY}&bucket=1d&agg={agg}");
    let h = ["2024-01-10T08:00:00Z", "2024-01-10T09:00:00Z", "2024-01-10T11:00:00Z", "2024-01-11T00:00:00Z"];
    for (agg, values) in [
        ("avg", [25.0, 3.0, 6.0, 100.0]),
        ("min", [10.0, 2.0, 6.0, 100.0]),
        ("max", [40.0, 4.0, 6.0, 100.0]),
        ("last", [40.0, 4.0, 6.0, 100.0]),
        ("count", [4.0, 2.0, 1.0, 1.0]),
        ("sum", [100.0, 6.0, 6.0, 100.0]),
    ] {
        let (source, got) = points(t, &hours(agg)).await;
        assert_eq!(source, "rollup", "{agg}");
        // 10:00 had no readings: it is absent.
        let want: Vec<(&str, f64)> = h.iter().copied().zip(values).collect();
        assert_eq!(got, expect(&want), "1h {agg}");
    }
    // The day's average is over its readings (112 / 7), not over the hours' averages.
    for (agg, day10, day11) in [
        ("avg", 16.0, 100.0),
        ("min", 2.0, 100.0),
        ("max", 40.0, 100.0),
        ("last", 6.0, 100.0),
        ("count", 7.0, 1.0),
        ("sum", 112.0, 100.0),
    ] {
        let (source, got) = points(t, &days(agg)).await;
        assert_eq!(source, "rollup", "{agg}");
        assert_eq!(got, expect(&[("2024-01-10T00:00:00Z", day10), ("2024-01-11T00:00:00Z", day11)]), "1d {agg}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn buckets_have_the_hand_computed_values_from_readings_and_rollups() {
    let t = spawn_app().await;
    let (m, _) = readings(&t).await;
    let ts = timescale::status(&t.pool).await.unwrap();
    eprintln!("TimescaleDB: {ts:?} (test mode {:?})", timescale_mode());
    // Preparing twice changes nothing; on TimescaleDB the migration's table became a continuous aggregate.
    telemetry::prepare_rollups(&t.pool, &ts).await.unwrap();
    telemetry::prepare_rollups(&t.pool, &ts).await.unwrap();
    let kind: String =
        sqlx::query_scalar("SELECT relkind::text FROM pg_class WHERE oid = 'telemetry_hourly'::regclass")
            .fetch_one(&t.pool)
            .await
            .unwrap();
    assert_eq!(kind, if ts.compression() { "v" } else { "r" }, "{ts:?}");

    // 15 minutes, from the readings: 08:30 had none and is absent.
    let quarter = |agg: &str| {
        format!("machine={m}&key=temp&from=2024-01-10T08:00:00Z&to=2024-01-10T10:00:00Z&bucket=15m&agg={agg}")
    };
    let q = ["2024-01-10T08:00:00Z", "2024-01-10T08:15:00Z", "2024-01-10T08:45:00Z", "2024-01-10T09:00:00Z"];
    for (agg, values) in [
        ("avg", [15.0, 30.0, 40.0, 2.0, 4.0]),
        ("min", [10.0, 30.0, 40.0, 2.0, 4.0]),
        ("max", [20.0, 30.0, 40.0, 2.0, 4.0]),
        ("last", [20.0, 30.0, 40.0, 2.0, 4.0]),
        ("count", [2.0, 1.0, 1.0, 1.0, 1.0]),
        ("sum", [30.0, 30.0, 40.0, 2.0, 4.0]),
    ] {
        let (source, got) = points(&t, &quarter(agg)).await;
        assert_eq!(source, "raw", "{agg}");
        let mut want: Vec<(&str, f64)> = q.iter().copied().zip(values).collect();
        want.push(("2024-01-10T09:30:00Z", values[4]));
        assert_eq!(got, expect(&want), "15m {agg}");
    }
    // The window is widened to whole buckets, and the answer says so.
    let (status, body) =
        get(&t, &format!("/api/v1/telemetry?machine={m}&key=temp&from=2024-01-10T08:20:00Z&to=2024-01-10T09:10:00Z&bucket=1h&agg=count")).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["from"], "2024-01-10T08:00:00Z");
    assert_eq!(body["to"], "2024-01-10T10:00:00Z");
    assert_eq!(body["bucket"], "1h");
    assert_eq!(body["agg"], "count");
    assert_eq!(body["key"], "temp");
    assert_eq!(
        body["points"],
        json!([{ "t": "2024-01-10T08:00:00Z", "v": 4 }, { "t": "2024-01-10T09:00:00Z", "v": 2 }])
    );

    // Before any refresh the rollups answer in real time; after it, the same.
    rollup_answers_are_the_hand_computed_ones(&t, m).await;
    refresh(&t, "2024-01-12T00:00:00Z").await;
    rollup_answers_are_the_hand_computed_ones(&t, m).await;
    // A later reading (after the refreshed hours) is read live.
    sql(
        &t,
        &format!("INSERT INTO telemetry (machine_id, key, ts, value) VALUES ({m}, 'temp', '2024-01-12 05:00Z', 7)"),
    )
    .await;
    let (_, got) = points(&t, &format!("machine={m}&key=temp&from=2024-01-12&to=2024-01-13&bucket=1d&agg=sum")).await;
    assert_eq!(got, expect(&[("2024-01-12T00:00:00Z", 7.0)]));

    // A late reading in an hour already rolled up: the rollup has it after the next refresh.
    sql(
        &t,
        &format!("INSERT INTO telemetry (machine_id, key, ts, value) VALUES ({m}, 'temp', '2024-01-10 09:59:59Z', 12)"),
    )
    .await;
    let nine = |agg: &str| {
        format!("machine={m}&key=temp&from=2024-01-10T09:00:00Z&to=2024-01-10T10:00:00Z&bucket=1h&agg={agg}")
    };
    assert_eq!(points(&t, &nine("count")).await.1, expect(&[("2024-01-10T09:00:00Z", 2.0)]), "not refreshed yet");
    let (_, raw) = points(&t, &nine("count").replace("bucket=1h", "bucket=30m")).await;
    assert_eq!(raw, expect(&[("2024-01-10T09:00:00Z", 1.0), ("2024-01-10T09:30:00Z", 2.0)]), "the readings have it");
    refresh(&t, "2024-01-12T00:00:00Z").await;
    for (agg, v) in [("count", 3.0), ("sum", 18.0), ("avg", 6.0), ("max", 12.0), ("last", 12.0), ("min", 2.0)] {
        assert_eq!(points(&t, &nine(agg)).await.1, expect(&[("2024-01-10T09:00:00Z", v)]), "{agg} after the refresh");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_are_listed_per_machine_with_their_first_and_last_reading() {
    let t = spawn_app().await;
    let (m, other) = readings(&t).await;
    let want = json!({
        "machine": m,
        "keys": [
            { "key": "pressure", "first": "2024-01-10T08:00:00Z", "last": "2024-01-10T09:00:00Z", "count": 2 },
            { "key": "temp", "first": "2024-01-10T08:00:00Z", "last": "2024-01-11T00:30:00Z", "count": 8 },
        ]
    });
    let (status, before) = get(&t, &format!("/api/v1/telemetry/keys?machine={m}")).await;
    assert_eq!((status, &before), (200, &want), "before a refresh");
    refresh(&t, "2024-01-10T09:00:00Z").await;
    let (_, halfway) = get(&t, &format!("/api/v1/telemetry/keys?machine={m}")).await;
    assert_eq!(halfway, want, "rolled up to 09:00");
    refresh(&t, "2024-01-13T00:00:00Z").await;
    let (_, after) = get(&t, &format!("/api/v1/telemetry/keys?machine={m}")).await;
    assert_eq!(after, want, "all rolled up");
    let (_, theirs) = get(&t, &format!("/api/v1/telemetry/keys?machine={other}")).await;
    assert_eq!(
        theirs["keys"],
        json!([{ "key": "temp", "first": "2024-01-10T08:05:00Z", "last": "2024-01-10T08:05:00Z", "count": 1 }])
    );
    let lonely = t.add_machine("M3").await;
    let (_, none) = get(&t, &format!("/api/v1/telemetry/keys?machine={lonely}")).await;
    assert_eq!(none, json!({ "machine": lonely, "keys": [] }));
    for (query, status, needle) in
        [("", 400, "machine"), ("machine=x", 400, "machine"), ("machine=99999", 404, "99999")]
    {
        let (got, body) = get(&t, &format!("/api/v1/telemetry/keys?{query}")).await;
        assert_eq!(got, status, "{query}: {body}");
        assert!(body["error"].as_str().unwrap_or_default().contains(needle), "{query}: {body}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_queries_export_as_csv() {
    let t = spawn_app().await;
    let (m, _) = readings(&t).await;
    let csv = |query: String, accept: Option<&'static str>| {
        let t = &t;
        async move {
            let mut req = t.api.get(format!("{}/api/v1/telemetry?{query}", t.http));
            if let Some(a) = accept {
                req = req.header("accept", a);
            }
            let r = req.send().await.unwrap();
            assert_eq!(r.status().as_u16(), 200, "{query}");
            let ctype = r.headers().get("content-type").and_then(|v| v.to_str().ok()).unwrap_or_default().to_string();
            assert!(ctype.starts_with("text/csv"), "{query}: {ctype}");
            let truncated = r.headers().contains_key("x-truncated");
            (r.text().await.unwrap(), truncated)
        }
    };
    let (body, _) = csv(format!("machine={m}&key=temp&{DAY}&bucket=1d&agg=avg&format=csv"), None).await;
    assert_eq!(body, "bucket_start,value\n2024-01-10T00:00:00Z,16\n2024-01-11T00:00:00Z,100\n");
    let (body, _) = csv(format!("machine={m}&key=temp&{DAY}&bucket=1h&agg=count"), Some("text/csv")).await;
    assert_eq!(
        body,
        "bucket_start,value\n2024-01-10T08:00:00Z,4\n2024-01-10T09:00:00Z,2\n2024-01-10T11:00:00Z,1\n\
         2024-01-11T00:00:00Z,1\n"
    );
    // Without a bucket: one row per reading, by time and key, at most `limit`.
    let window = "from=2024-01-10T08:00:00Z&to=2024-01-10T09:01:00Z";
    let (body, truncated) = csv(format!("machine={m}&{window}"), Some("text/csv, application/json")).await;
    assert_eq!(
        body,
        "ts,key,value\n2024-01-10T08:00:00Z,pressure,1.5\n2024-01-10T08:00:00Z,temp,10\n2024-01-10T08:10:00Z,temp,20\n\
         2024-01-10T08:20:00Z,temp,30\n2024-01-10T08:50:00Z,temp,40\n2024-01-10T09:00:00Z,pressure,2.5\n"
    );
    assert!(!truncated);
    let (body, truncated) = csv(format!("machine={m}&{window}&key=temp&limit=2&format=csv"), None).await;
    assert_eq!(body, "ts,key,value\n2024-01-10T08:00:00Z,temp,10\n2024-01-10T08:10:00Z,temp,20\n");
    assert!(truncated);
    // JSON without a bucket keeps its shape, and `key` narrows it.
    let (status, body) = get(&t, &format!("/api/v1/telemetry?machine={m}&{window}&key=pressure")).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body["readings"],
        json!([{ "ts": "2024-01-10T08:00:00Z", "data": { "pressure": 1.5 } }, { "ts": "2024-01-10T09:00:00Z", "data": { "pressure": 2.5 } }])
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_bucketed_queries_are_refused_with_what_to_do() {
    let t = spawn_app().await;
    let (m, _) = readings(&t).await;
    for (query, status, needle) in [
        (
            format!("machine={m}&key=temp&{DAY}&bucket=1h&agg=median"),
            400,
            "`agg` must be one of avg, min, max, last, count, sum",
        ),
        (format!("machine={m}&key=temp&{DAY}&bucket=1s"), 400, "use bucket=1m or longer"),
        (format!("machine={m}&key=temp&from=2023-01-01&to=2024-01-01&bucket=1h"), 400, "use bucket=2h or longer"),
        (format!("machine={m}&{DAY}&bucket=1h"), 400, "needs `key`"),
        (format!("machine={m}&key=temp&{DAY}&bucket=1w"), 400, "`bucket` must be"),
        (format!("machine={m}&key=temp&{DAY}&bucket=0h"), 400, "`bucket` must be"),
        (format!("machine={m}&key=temp&{DAY}&agg=avg"), 400, "`agg` needs `bucket`"),
        (format!("machine={m}&key=temp&{DAY}&bucket=1h&limit=3"), 400, "`limit`"),
        (format!("machine={m}&key=temp&{DAY}&bucket=1h&format=xml"), 400, "`format`"),
        (format!("machine={m}&key=&{DAY}&bucket=1h"), 400, "`key`"),
        (format!("machine=99999&key=temp&{DAY}&bucket=1h"), 404, "99999"),
    ] {
        let (got, body) = get(&t, &format!("/api/v1/telemetry?{query}")).await;
        assert_eq!(got, status, "{query}: {body}");
        assert!(body["error"].as_str().unwrap_or_default().contains(needle), "{query}: {body}");
    }
    // A key the machine never sent has no points.
    let (_, got) = points(&t, &format!("machine={m}&key=speed&{DAY}&bucket=1h")).await;
    assert!(got.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_rollups_keep_the_hours_whose_readings_retention_removed() {
    let t = spawn_app().await;
    let (m, _) = readings(&t).await;
    let daily = format!("machine={m}&key=temp&{DAY}&bucket=1d&agg=sum");
    let before = expect(&[("2024-01-10T00:00:00Z", 112.0), ("2024-01-11T00:00:00Z", 100.0)]);
    refresh(&t, "2024-01-12T00:00:00Z").await;
    assert_eq!(points(&t, &daily).await, ("rollup".to_string(), before.clone()));

    // A reading a year later; then retention at a time when every 2024 reading is past its days.
    sql(
        &t,
        &format!("INSERT INTO telemetry (machine_id, key, ts, value) VALUES ({m}, 'temp', '2025-06-01 10:00Z', 7)"),
    )
    .await;
    let now: DateTime<Utc> = "2025-06-02T00:00:00Z".parse().unwrap();
    let ts = timescale::status(&t.pool).await.unwrap();
    let config = oee_core::config::RetentionConfig { telemetry_days: 100, ..Default::default() };
    oee_core::store::retention::run(&t.pool, &config, &ts, now).await.expect("retention");
    let left: i64 =
        sqlx::query_scalar("SELECT count(*) FROM telemetry WHERE ts < '2025-01-01'").fetch_one(&t.pool).await.unwrap();
    assert_eq!(left, 0, "retention removed the 2024 readings");

    // Refreshes after the removal, as the runner makes them, leave the old hours in the rollup.
    refresh(&t, "2025-06-02T00:00:00Z").await;
    refresh(&t, "2025-06-02T01:00:00Z").await;
    assert_eq!(points(&t, &daily).await, ("rollup".to_string(), before));
    let june = format!("machine={m}&key=temp&from=2025-06-01T00:00:00Z&to=2025-06-02T00:00:00Z&bucket=1d&agg=sum");
    assert_eq!(points(&t, &june).await.1, expect(&[("2025-06-01T00:00:00Z", 7.0)]));
}
