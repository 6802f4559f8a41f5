//! `GET /api/v1/oee` (figures, losses, durations, targets; by hour, shift, day, job; groups from sums),
//! the daily cache and its invalidation by any writer, and `GET /api/v1/telemetry`.

mod common;

use chrono::{DateTime, Duration, Utc};
use common::*;
use rumqttc::QoS;
use serde_json::{Value, json};

const H: f64 = 3_600_000.0;

fn close(v: &Value, want: f64) -> bool {
    v.as_f64().is_some_and(|x| (x - want).abs() < 1e-6 * want.abs().max(1.0))
}

async fn sql(t: &TestApp, q: &str) {
    sqlx::query(sqlx::AssertSqlSafe(q.to_string())).execute(&t.pool).await.unwrap();
}

async fn get(t: &TestApp, path: &str) -> (u16, Value) {
    let r = t.api.get(format!("{}{path}", t.http)).send().await.unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

async fn report(t: &TestApp, query: &str) -> Value {
    let (status, body) = get(t, &format!("/api/v1/oee?{query}")).await;
    assert_eq!(status, 200, "{query}: {body}");
    body
}

async fn cached_days(t: &TestApp, m: i32) -> i64 {
    oee_core::store::cache::cached_day_count(&t.pool, m).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_machine_report_gives_figures_losses_durations_and_targets() {
    let t = spawn_app().await;
    let m = t.worked_example("M1").await;
    let body = report(&t, &format!("machine={m}&from=2024-01-10T00:00:00Z&to=2024-01-11T00:00:00Z")).await;
    let total = &body["total"];
    // planned 4 h (08–12), run 3 h, 100 parts × 30 s = 50 min of ideal time, 90 good
    let f = &total["figures"];
    assert!(close(&f["availability"], 3.0 / 4.0), "{f}");
    assert!(close(&f["performance"], 50.0 / 180.0), "{f}");
    assert!(close(&f["quality"], 0.9), "{f}");
    assert!(close(&f["oee"], 0.1875), "{f}");
    assert!(close(&f["teep"], 45.0 / (24.0 * 60.0)), "{f}");
    let l = &total["losses"];
    assert!(close(&l["fully_productive_ms"], 0.75 * H), "{l}");
    assert!(close(&l["breakdown_ms"], H) && close(&l["quality_ms"], 5.0 * 60_000.0), "{l}");
    assert!(close(&l["reduced_speed_ms"], (180.0 - 50.0) * 60_000.0), "{l}");
    let d = &total["durations"];
    assert_eq!(d["by_code_ms"], json!({"1": 3 * 3_600_000, "2": 3_600_000, "3": 3_600_000}));
    assert_eq!(d["by_state_ms"]["uptime"], 3 * 3_600_000);
    assert_eq!(d["by_state_ms"]["planned_downtime"], 3_600_000);
    // the ideal cycle time allows 4 h / 30 s = 480 parts in the planned time, 360 in the run time
    assert!(close(&total["target_quantity"], 480.0) && close(&total["target_quantity_run"], 360.0), "{total}");
    assert!(close(&total["good"], 90.0) && close(&total["rejects"], 10.0));

    // hours: the 10:00 bucket is all breakdown, the 08:00 bucket half the parts of 08–10 … pro-rated
    let body = report(&t, &format!("machine={m}&from=2024-01-10T08:00:00Z&to=2024-01-10T13:00:00Z&by=hour")).await;
    let b = body["buckets"].as_array().unwrap();
    assert_eq!(b.len(), 5);
    assert_eq!(b[2]["from"], "2024-01-10T10:00:00Z");
    assert!(close(&b[2]["figures"]["availability"], 0.0));
    assert!(close(&b[0]["good"], 90.0 / 4.0), "{}", b[0]);
    assert!(b[4]["figures"]["availability"].is_null(), "nothing planned 12–13: {}", b[4]);
    let planned: i64 = b.iter().map(|x| x["sums"]["planned_ms"].as_i64().unwrap()).sum();
    assert_eq!(planned, 4 * 3_600_000, "hour buckets add up to the window");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn group_reports_add_sums_instead_of_averaging_percentages() {
    let t = spawn_app().await;
    let a = t.worked_example("M1").await;
    let b = t.add_machine("M2").await;
    sql(
        &t,
        &format!(
            "INSERT INTO activity (machine_id, activity_code_id, start_time, end_time) \
             VALUES ({b}, 2, '2024-01-10 08:00Z', '2024-01-10 11:00Z')"
        ),
    )
    .await;
    let group: i32 =
        sqlx::query_scalar("SELECT group_id FROM machine WHERE id = $1").bind(a).fetch_one(&t.pool).await.unwrap();
    let body = report(&t, &format!("group={group}&from=2024-01-10&to=2024-01-11&by=day")).await;
    assert_eq!(body["machines"], json!([a, b]));
    // 3 h run of 4 + 3 h planned; 45 min of good ideal time in 7 h
    let f = &body["total"]["figures"];
    assert!(close(&f["availability"], 3.0 / 7.0), "{f}");
    assert!(close(&f["oee"], 0.75 / 7.0), "{f}");
    assert_eq!(body["buckets"].as_array().unwrap().len(), 1);
    assert_eq!(body["buckets"][0]["sums"]["planned_ms"], 7 * 3_600_000);
    let per: Vec<(i64, Option<f64>)> = body["by_machine"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (r["machine"].as_i64().unwrap(), r["figures"]["availability"].as_f64()))
        .collect();
    assert_eq!(per, vec![(a as i64, Some(0.75)), (b as i64, Some(0.0))]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shift_and_job_buckets_follow_the_pattern_and_the_jobs() {
    let t = spawn_app().await;
    let m = t.worked_example("M1").await;
    // the seeded pattern is 09:00–17:00 every day
    let body = report(&t, &format!("machine={m}&from=2024-01-10&to=2024-01-11T00:00:00Z&by=shift")).await;
    let b = body["buckets"].as_array().unwrap();
    assert_eq!(b.len(), 1, "{body}");
    assert_eq!(
        (b[0]["from"].as_str(), b[0]["to"].as_str()),
        (Some("2024-01-10T09:00:00Z"), Some("2024-01-10T17:00:00Z"))
    );
    assert_eq!(b[0]["machine"], m);
    // 09–12 planned (Up 1 h, Down 1 h, Up 1 h), three quarters of the job's parts
    assert!(close(&b[0]["figures"]["availability"], 2.0 / 3.0), "{}", b[0]);
    assert!(close(&b[0]["good"], 67.5), "{}", b[0]);
    // the shift pattern changes: 06:00–08:30 and 08:30–18:00 back to back on every day
    sql(&t, "DELETE FROM shift_period").await;
    sql(
        &t,
        "INSERT INTO shift_period (shift_id, day, start_minute, shift_state) \
         SELECT s.id, d, m, st FROM (SELECT min(id) AS id FROM shift) s, generate_series(0, 6) d, \
         (VALUES (0, 3), (360, 1), (510, 1), (1080, 3)) AS p (m, st)",
    )
    .await;
    let body = report(&t, &format!("machine={m}&from=2024-01-10&to=2024-01-11&by=shift")).await;
    let spans: Vec<(String, String)> = body["buckets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| (x["from"].as_str().unwrap().to_string(), x["to"].as_str().unwrap().to_string()))
        .collect();
    assert_eq!(
        spans,
        vec![
            ("2024-01-10T06:00:00Z".to_string(), "2024-01-10T08:30:00Z".to_string()),
            ("2024-01-10T08:30:00Z".to_string(), "2024-01-10T18:00:00Z".to_string()),
        ]
    );

    let body = report(&t, &format!("machine={m}&from=2024-01-10T09:00:00Z&to=2024-01-11&by=job")).await;
    let b = body["buckets"].as_array().unwrap();
    assert_eq!(b.len(), 1, "{body}");
    assert_eq!(b[0]["job"]["job_number"], "J1");
    // clipped to the window: 09–12, run 2 h of 3
    assert_eq!(
        (b[0]["from"].as_str(), b[0]["to"].as_str()),
        (Some("2024-01-10T09:00:00Z"), Some("2024-01-10T12:00:00Z"))
    );
    assert!(close(&b[0]["figures"]["availability"], 2.0 / 3.0), "{}", b[0]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_parameters_are_refused_with_a_message() {
    let t = spawn_app().await;
    let m = t.add_machine("M1").await;
    let cases = [
        ("".to_string(), 400, "machine"),
        ("machine=abc".to_string(), 400, "abc"),
        (format!("machine={m}&group=1"), 400, "not both"),
        ("machine=9999".to_string(), 404, "9999"),
        ("group=9999".to_string(), 404, "9999"),
        (format!("machine={m}&from=2024-01-11&to=2024-01-10"), 400, "after"),
        (format!("machine={m}&from=2024-01-10&to=2024-01-10"), 400, "after"),
        (format!("machine={m}&from=10/01/2024"), 400, "10/01/2024"),
        (format!("machine={m}&from=2024-01-10&to=2024-01-11&by=week"), 400, "week"),
        (format!("machine={m}&from=2020-01-01&to=2024-01-01&by=hour"), 400, "buckets"),
        (format!("machine={m}&from=0001-01-01&to=2024-01-01"), 400, "longer"),
    ];
    for (query, status, needle) in cases {
        let (got, body) = get(&t, &format!("/api/v1/oee?{query}")).await;
        assert_eq!(got, status, "{query}: {body}");
        let msg = body["error"].as_str().unwrap_or_default();
        assert!(msg.contains(needle), "{query}: {msg}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_date_at_the_end_of_the_calendar_is_refused_with_a_message() {
    let t = spawn_app().await;
    let m = t.add_machine("M1").await;
    // `+262142-12-31` is the last day chrono knows: its day's bounds cannot be computed.
    for date in ["%2B262142-12-31", "-262143-01-01", "10000-01-01"] {
        for path in [format!("/api/v1/oee?machine={m}&to={date}"), format!("/api/v1/telemetry?machine={m}&from={date}")]
        {
            let (status, body) = get(&t, &path).await;
            assert_eq!(status, 400, "{path}: {body}");
            assert!(body["error"].as_str().unwrap_or_default().contains("a date like 2026-01-05"), "{path}: {body}");
        }
        for path in [
            format!("/api/oee?machine_id={m}&date={date}"),
            format!("/api/activity-durations?machine_id={m}&date={date}"),
        ] {
            let r = t.api.get(format!("{}{path}", t.http)).send().await.unwrap();
            assert_eq!(r.status(), 400, "{path}");
            assert_eq!(r.text().await.unwrap(), "Date must be in format YYYY-MM-DD", "{path}");
        }
    }
    report(&t, &format!("machine={m}")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_daily_cache_fills_is_used_and_is_recomputed_after_backdated_sql_changes() {
    let t = spawn_app().await;
    let m = t.worked_example("M1").await;
    let q = format!("machine={m}&from=2024-01-09&to=2024-01-12&by=day");
    let first = report(&t, &q).await;
    assert_eq!(first["cache"], json!({"days_read": 0, "days_computed": 3}));
    assert_eq!(cached_days(&t, m).await, 3);
    let again = report(&t, &q).await;
    assert_eq!(again["cache"], json!({"days_read": 3, "days_computed": 0}));
    assert_eq!(again["total"], first["total"]);

    // the figures come from the cache: a row changed behind its back shows
    sql(&t, &format!("UPDATE oee_day_cache SET sums = jsonb_set(sums, '{{good}}', '1000') WHERE machine_id = {m} AND day = '2024-01-10'")).await;
    assert!(close(&report(&t, &q).await["buckets"][1]["good"], 1000.0));

    // the live path (closing the open activity now, opening the next) deletes no cached day
    sql(&t, &format!("UPDATE activity SET end_time = now() WHERE machine_id = {m} AND end_time IS NULL")).await;
    sql(&t, &format!("INSERT INTO activity (machine_id, activity_code_id, start_time) VALUES ({m}, 2, now())")).await;
    assert_eq!(cached_days(&t, m).await, 3);

    // a past activity changed by SQL: Up 11–12 becomes Down; only 2024-01-10 is forgotten
    sql(
        &t,
        &format!(
            "UPDATE activity SET activity_code_id = 2 WHERE machine_id = {m} AND start_time = '2024-01-10 11:00Z'"
        ),
    )
    .await;
    assert_eq!(cached_days(&t, m).await, 2);
    let body = report(&t, &q).await;
    assert_eq!(body["cache"], json!({"days_read": 2, "days_computed": 1}));
    let day = &body["buckets"][1];
    assert!(close(&day["figures"]["availability"], 2.0 / 4.0), "{day}");
    assert!(close(&day["good"], 90.0), "recomputed from the history, not the edited row: {day}");

    // a past activity inserted on 2024-01-11 (an empty day until now)
    sql(&t, &format!("INSERT INTO activity (machine_id, activity_code_id, start_time, end_time) VALUES ({m}, 2, '2024-01-11 08:00Z', '2024-01-11 09:00Z')")).await;
    let body = report(&t, &q).await;
    assert_eq!(body["cache"]["days_computed"], 1);
    assert_eq!(body["buckets"][2]["sums"]["breakdown_ms"], 3_600_000);

    // late rejects reported for the job; then its ideal cycle time corrected
    sql(
        &t,
        &format!("UPDATE production_quantity SET quantity_rejects = 30, quantity_good = 70 WHERE machine_id = {m}"),
    )
    .await;
    assert!(close(&report(&t, &q).await["buckets"][1]["figures"]["quality"], 0.7));
    sql(&t, &format!("UPDATE job SET ideal_cycle_time_s = 60 WHERE machine_id = {m}")).await;
    let day = report(&t, &q).await["buckets"][1].clone();
    assert!(close(&day["figures"]["performance"], 100.0 * 60.0 / (2.0 * 3600.0)), "{day}");

    // a code's loss category changes: everything is forgotten; Closed now counts as a planned stop
    sql(&t, "UPDATE activity_code SET loss_category = 'planned_stop' WHERE id = 3").await;
    assert_eq!(cached_days(&t, m).await, 0);
    let day = report(&t, &q).await["buckets"][1].clone();
    assert_eq!(day["sums"]["planned_ms"], 5 * 3_600_000);

    // rows computed with another minor-stop threshold are not used
    sql(&t, &format!("UPDATE oee_day_cache SET minor_stop_threshold_ms = 120000 WHERE machine_id = {m}")).await;
    assert_eq!(report(&t, &q).await["cache"], json!({"days_read": 0, "days_computed": 3}));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backdated_mqtt_state_command_forgets_the_cached_days_it_changes() {
    let t = spawn_app().await;
    let m = t.add_machine("Press").await;
    // the machine has been Closed since 06:00 three days ago
    let today = Utc::now().date_naive();
    let day = today - Duration::days(3);
    let at = |d: chrono::NaiveDate, h: u32| -> DateTime<Utc> { d.and_hms_opt(h, 0, 0).unwrap().and_utc() };
    sqlx::query("UPDATE activity SET start_time = $2, activity_code_id = 3 WHERE machine_id = $1 AND end_time IS NULL")
        .bind(m)
        .bind(at(day, 6))
        .execute(&t.pool)
        .await
        .unwrap();
    sqlx::query("UPDATE machine SET current_since = $2, current_code_id = 3 WHERE id = $1")
        .bind(m)
        .bind(at(day, 6))
        .execute(&t.pool)
        .await
        .unwrap();
    let q = format!("machine={m}&from={day}&to={}&by=day", day + Duration::days(2));
    let before = report(&t, &q).await;
    assert_eq!(before["cache"]["days_computed"], 2);
    assert_eq!(before["buckets"][0]["durations"]["by_code_ms"], json!({"3": 18 * 3_600_000}));
    assert_eq!(cached_days(&t, m).await, 2);

    // a device reports, late, that the machine went down at 12:00 that day
    let (client, mut rx) = t.mqtt_client("late-device").await;
    client.subscribe("oee/v1/replies/test/late", QoS::AtLeastOnce).await.unwrap();
    let body = json!({"machine_state": 0, "timestamp": at(day, 12), "request_id": "late-1", "reply_to": "oee/v1/replies/test/late"});
    client
        .publish(format!("oee/v1/machines/{m}/state"), QoS::AtLeastOnce, false, serde_json::to_vec(&body).unwrap())
        .await
        .unwrap();
    let verdict = next_on(&mut rx, "oee/v1/replies/test/late").await;
    assert_eq!(verdict["status"], 200, "{verdict}");

    let after = report(&t, &q).await;
    assert_eq!(after["cache"]["days_computed"], 2, "both days after 12:00 changed: {}", after["cache"]);
    assert_eq!(after["buckets"][0]["durations"]["by_code_ms"], json!({"2": 12 * 3_600_000, "3": 6 * 3_600_000}));
    assert_eq!(after["buckets"][1]["durations"]["by_code_ms"], json!({"2": 24 * 3_600_000}));
    assert_eq!(after["buckets"][1]["sums"]["breakdown_ms"], 24 * 3_600_000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn telemetry_readings_come_in_time_order_and_bounded() {
    let t = spawn_app().await;
    let m = t.add_machine("M1").await;
    let other = t.add_machine("M2").await;
    sql(
        &t,
        &format!(
            "INSERT INTO telemetry (machine_id, key, ts, value) \
             SELECT {m}, 'temp', '2024-01-10 08:00Z'::timestamptz + i * interval '1 minute', i FROM generate_series(9, 0, -1) i"
        ),
    )
    .await;
    sql(
        &t,
        &format!(
            "INSERT INTO telemetry (machine_id, key, ts, value) VALUES ({other}, 'temp', '2024-01-10 08:05Z', 99)"
        ),
    )
    .await;
    let (status, body) =
        get(&t, &format!("/api/v1/telemetry?machine={m}&from=2024-01-10T08:02:00Z&to=2024-01-10T08:07:00Z")).await;
    assert_eq!(status, 200, "{body}");
    let temps: Vec<i64> =
        body["readings"].as_array().unwrap().iter().map(|r| r["data"]["temp"].as_i64().unwrap()).collect();
    assert_eq!(temps, vec![2, 3, 4, 5, 6]);
    assert_eq!(body["readings"][0]["ts"], "2024-01-10T08:02:00Z");
    assert_eq!(body["truncated"], false);
    let (_, body) = get(&t, &format!("/api/v1/telemetry?machine={m}&from=2024-01-10&to=2024-01-11&limit=3")).await;
    assert_eq!(body["readings"].as_array().unwrap().len(), 3);
    assert_eq!(body["truncated"], true);
    assert_eq!(body["readings"][2]["data"]["temp"], 2);
    for (query, status, needle) in [
        ("from=2024-01-10".to_string(), 400, "machine"),
        ("machine=9999&from=2024-01-10&to=2024-01-11".to_string(), 404, "9999"),
        (format!("machine={m}&from=2024-01-11&to=2024-01-10"), 400, "after"),
        (format!("machine={m}&from=yesterday"), 400, "yesterday"),
        (format!("machine={m}&from=2024-01-10&to=2024-01-11&limit=0"), 400, "limit"),
        (format!("machine={m}&from=2024-01-10&to=2024-01-11&limit=99999999"), 400, "limit"),
    ] {
        let (got, body) = get(&t, &format!("/api/v1/telemetry?{query}")).await;
        assert_eq!(got, status, "{query}: {body}");
        assert!(body["error"].as_str().unwrap_or_default().contains(needle), "{query}: {body}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_day_changed_while_it_is_computed_is_not_stored() {
    use oee_core::store::cache::{self, DayClaim, DaySums, HistorySnapshot};
    let t = spawn_app().await;
    let m = t.worked_example("M1").await;
    let cfg = oee_core::oee::EngineConfig::default();
    let day = |d: &str| DayClaim {
        machine_id: m,
        day: d.parse().unwrap(),
        day_start: format!("{d}T00:00:00Z").parse().unwrap(),
        day_end: format!("{d}T00:00:00Z").parse::<DateTime<Utc>>().unwrap() + Duration::days(1),
    };
    let (d10, d11) = (day("2024-01-10"), day("2024-01-11"));
    cache::claim_days(&t.pool, &[d10, d11], cfg).await.unwrap();

    // a writer in flight (its transaction open) keeps a reader from taking its snapshot
    let mut writer = t.pool.begin().await.unwrap();
    sqlx::query("UPDATE activity SET activity_code_id = 2 WHERE machine_id = $1 AND start_time = '2024-01-10 11:00Z'")
        .bind(m)
        .execute(&mut *writer)
        .await
        .unwrap();
    assert!(HistorySnapshot::take(&t.pool).await.unwrap().is_none(), "the snapshot must wait for the writer");
    writer.commit().await.unwrap();
    let snapshot = HistorySnapshot::take(&t.pool).await.unwrap().expect("no writer in flight");
    snapshot.finish().await.unwrap();

    // the writer deleted the claim of the day it changed: filling it stores nothing; the other day is stored
    let sums = |c: DayClaim| DaySums {
        machine_id: c.machine_id,
        day: c.day,
        day_start: c.day_start,
        day_end: c.day_end,
        sums: oee_core::oee::Sums { all_ms: 1, ..Default::default() },
    };
    cache::fill_claimed_days(&t.pool, &[sums(d10), sums(d11)], cfg).await.unwrap();
    let stored: Vec<chrono::NaiveDate> =
        sqlx::query_scalar("SELECT day FROM oee_day_cache WHERE machine_id = $1 AND sums IS NOT NULL")
            .bind(m)
            .fetch_all(&t.pool)
            .await
            .unwrap();
    assert_eq!(stored, vec![d11.day]);
}

/// (from, to) of each bucket of a report.
fn bucket_spans(body: &Value) -> Vec<(DateTime<Utc>, DateTime<Utc>)> {
    let time = |v: &Value| DateTime::parse_from_rfc3339(v.as_str().unwrap()).unwrap().with_timezone(&Utc);
    body["buckets"].as_array().unwrap().iter().map(|b| (time(&b["from"]), time(&b["to"]))).collect()
}

/// Every day of the week: 06:00–14:00 and 14:00–22:00.
fn two_shifts_every_day() -> oee_core::shift::Week {
    let day = vec![
        oee_core::shift::WeekShift::new("06:00", "14:00", false),
        oee_core::shift::WeekShift::new("14:00", "22:00", false),
    ];
    oee_core::shift::Week { days: std::array::from_fn(|_| day.clone()) }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_edited_pattern_keeps_the_shifts_of_the_days_before_and_gives_its_new_ones_after() {
    use oee_core::store::schedule::{set_shift_week, shift_id_by_name_or_id};
    let t = spawn_app().await;
    let m = t.add_machine("M1").await;
    // Whole plant days (UTC plant) before today, so every window is past whatever the hour: the seeded 9-5
    // pattern is edited at noon three days ago.
    let today = Utc::now().date_naive();
    let day = |n: i64| today - Duration::days(n);
    let at = |n: i64, h: u32| day(n).and_hms_opt(h, 0, 0).unwrap().and_utc();
    let day_report = |n: i64| format!("machine={m}&from={}&to={}&by=shift", day(n), day(n - 1));

    let before = report(&t, &day_report(4)).await;
    assert_eq!(bucket_spans(&before), vec![(at(4, 9), at(4, 17))]);
    let shift = shift_id_by_name_or_id(&t.pool, "9-5").await.unwrap();
    set_shift_week(&t.pool, shift, &two_shifts_every_day(), at(3, 12)).await.unwrap();

    // The day before the edit is as it was.
    let after = report(&t, &day_report(4)).await;
    assert_eq!(after["buckets"], before["buckets"]);
    // The day of the edit: the shift that began at 09:00 by the old version runs on (the new one is in
    // shift at noon too) to its new end, then the new late shift.
    assert_eq!(bucket_spans(&report(&t, &day_report(3)).await), vec![(at(3, 9), at(3, 14)), (at(3, 14), at(3, 22))]);
    // The days after follow the new version.
    assert_eq!(bucket_spans(&report(&t, &day_report(2)).await), vec![(at(2, 6), at(2, 14)), (at(2, 14), at(2, 22))]);
    // A window across the edit cuts the same buckets.
    let across = report(&t, &format!("machine={m}&from={}&to={}&by=shift", day(4), day(2))).await;
    assert_eq!(bucket_spans(&across), vec![(at(4, 9), at(4, 17)), (at(3, 9), at(3, 14)), (at(3, 14), at(3, 22))]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_machine_moved_to_another_pattern_keeps_its_old_pattern_in_the_days_before() {
    use oee_core::store::schedule::{add_shift, set_machine_shift, set_shift_week};
    let t = spawn_app().await;
    let m = t.add_machine("M1").await;
    let yesterday = Utc::now().date_naive() - Duration::days(1);
    let query = format!("machine={m}&from={yesterday}&to={}&by=shift", yesterday + Duration::days(1));
    let before = report(&t, &query).await;
    assert_eq!(bucket_spans(&before).len(), 1, "{before}");

    let late = add_shift(&t.pool, "Late").await.unwrap();
    set_shift_week(&t.pool, late, &two_shifts_every_day(), Utc::now()).await.unwrap();
    set_machine_shift(&t.pool, &m.to_string(), &late.to_string()).await.unwrap();
    let after = report(&t, &query).await;
    assert_eq!(after["buckets"], before["buckets"]);
    // From the move on, the machine follows the new pattern.
    let now = Utc::now();
    let followed = oee_core::store::report::shift_histories(&t.pool, &[m], now, now + Duration::days(2)).await.unwrap();
    let last = followed[&m].last().unwrap();
    assert!(last.from.is_some_and(|f| f <= now), "{last:?}");
    assert_eq!(last.periods, two_shifts_every_day().periods().unwrap());
}
