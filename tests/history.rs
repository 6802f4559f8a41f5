//! History edits over MQTT (reference §4.7, contracts C50–C53): past activities that make room among their
//! neighbours, changed activities, past and changed jobs, production records, and the machine's current
//! state kept consistent with its open activity.

mod common;

use chrono::{DateTime, TimeZone, Utc};
use common::*;
use rumqttc::QoS;
use serde_json::json;

/// 2026-01-05 at h:m UTC.
fn t(h: u32, m: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 1, 5, h, m, 0).unwrap()
}

fn at(h: u32, m: u32) -> String {
    t(h, m).to_rfc3339()
}

/// A machine's activities as ("HH:MM", "HH:MM" or "open", code), in time order.
async fn timeline(app: &TestApp, machine: i32) -> Vec<(String, String, i32)> {
    let rows: Vec<(DateTime<Utc>, Option<DateTime<Utc>>, i32)> = sqlx::query_as(
        "SELECT start_time, end_time, activity_code_id FROM activity WHERE machine_id = $1 ORDER BY start_time, id",
    )
    .bind(machine)
    .fetch_all(&app.pool)
    .await
    .unwrap();
    rows.into_iter()
        .map(|(s, e, c)| {
            (s.format("%H:%M").to_string(), e.map_or("open".to_string(), |e| e.format("%H:%M").to_string()), c)
        })
        .collect()
}

fn expect(rows: &[(&str, &str, i32)]) -> Vec<(String, String, i32)> {
    rows.iter().map(|(s, e, c)| (s.to_string(), e.to_string(), *c)).collect()
}

/// The machine row's copy of its current activity: (code, since).
async fn current(app: &TestApp, machine: i32) -> (i32, DateTime<Utc>) {
    sqlx::query_as("SELECT current_code_id, current_since FROM machine WHERE id = $1")
        .bind(machine)
        .fetch_one(&app.pool)
        .await
        .unwrap()
}

/// Gives the machine a known day on 2026-01-05: Down 8–9, Closed 9–10, Down 10–12, Closed open from 12.
async fn known_day(app: &TestApp, machine: i32) -> Vec<i64> {
    sqlx::query("DELETE FROM activity WHERE machine_id = $1").bind(machine).execute(&app.pool).await.unwrap();
    let ids: Vec<i64> = sqlx::query_scalar(
        "INSERT INTO activity (machine_id, activity_code_id, start_time, end_time) \
         SELECT $1, * FROM UNNEST($2::int4[], $3::timestamptz[], $4::timestamptz[]) RETURNING id",
    )
    .bind(machine)
    .bind(vec![2, 3, 2, 3])
    .bind(vec![t(8, 0), t(9, 0), t(10, 0), t(12, 0)])
    .bind(vec![Some(t(9, 0)), Some(t(10, 0)), Some(t(12, 0)), None])
    .fetch_all(&app.pool)
    .await
    .unwrap();
    sqlx::query("UPDATE machine SET current_code_id = 3, current_since = $2 WHERE id = $1")
        .bind(machine)
        .bind(t(12, 0))
        .execute(&app.pool)
        .await
        .unwrap();
    ids
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_past_activity_cuts_moves_and_splits_its_neighbours_and_the_open_one_stays_current() {
    let app = spawn_app().await;
    let m = app.add_machine("Lathe").await;
    known_day(&app, m).await;
    let (client, mut rx) = app.mqtt_client("hist-1").await;
    client.subscribe(REPLY, QoS::AtLeastOnce).await.unwrap();
    let topic = format!("oee/v1/machines/{m}/history/activity");

    // inside Down 10–12: split, the tail keeps its code (contract C53: 200)
    let body = json!({"activity_code_id": 3, "start_time": at(10, 30), "end_time": at(11, 0), "request_id": "h1"});
    let v = command(&client, &mut rx, topic.clone(), body.clone()).await;
    assert_eq!((v["status"].as_u64(), v["ok"].as_bool()), (Some(200), Some(true)), "{v}");
    let id = v["id"].as_i64().unwrap();
    let stored: (i32, DateTime<Utc>, Option<DateTime<Utc>>) =
        sqlx::query_as("SELECT activity_code_id, start_time, end_time FROM activity WHERE id = $1")
            .bind(id)
            .fetch_one(&app.pool)
            .await
            .unwrap();
    assert_eq!(stored, (3, t(10, 30), Some(t(11, 0))));
    assert_eq!(
        timeline(&app, m).await,
        expect(&[
            ("08:00", "09:00", 2),
            ("09:00", "10:00", 3),
            ("10:00", "10:30", 2),
            ("10:30", "11:00", 3),
            ("11:00", "12:00", 2),
            ("12:00", "open", 3)
        ])
    );
    // a redelivery is answered with the same row and applied once
    let again = command(&client, &mut rx, topic.clone(), body).await;
    assert_eq!(again["id"].as_i64(), Some(id));
    assert_eq!(timeline(&app, m).await.len(), 6);

    // across a boundary and over the open activity's start: one cut back, the open one moved
    let v = command(
        &client,
        &mut rx,
        topic.clone(),
        json!({"activity_code_id": 2, "start_time": at(11, 30), "end_time": at(12, 30)}),
    )
    .await;
    assert_eq!(v["status"], 200, "{v}");
    assert_eq!(
        timeline(&app, m).await[4..],
        expect(&[("11:00", "11:30", 2), ("11:30", "12:30", 2), ("12:30", "open", 3)])[..]
    );
    assert_eq!(current(&app, m).await, (3, t(12, 30)));

    // covering whole activities: they go
    let v = command(
        &client,
        &mut rx,
        topic.clone(),
        json!({"activity_code_id": 3, "start_time": at(8, 0), "end_time": at(10, 0)}),
    )
    .await;
    assert_eq!(v["status"], 200, "{v}");
    assert_eq!(timeline(&app, m).await[..2], expect(&[("08:00", "10:00", 3), ("10:00", "10:30", 2)])[..]);

    // inside the open activity: it is split and its tail is the machine's current activity
    let v = command(
        &client,
        &mut rx,
        topic.clone(),
        json!({"activity_code_id": 2, "start_time": at(13, 0), "end_time": at(14, 0)}),
    )
    .await;
    assert_eq!(v["status"], 200, "{v}");
    assert_eq!(
        timeline(&app, m).await[5..],
        expect(&[("12:30", "13:00", 3), ("13:00", "14:00", 2), ("14:00", "open", 3)])[..]
    );
    assert_eq!(current(&app, m).await, (3, t(14, 0)));
    assert_eq!(app.activities(m).await.1, 1, "exactly one open activity");

    // live changes go on from the open activity the edit left
    let v = command(
        &client,
        &mut rx,
        format!("oee/v1/machines/{m}/state"),
        json!({"activity_code_id": 2, "timestamp": at(15, 0)}),
    )
    .await;
    assert_eq!(v["status"], 200, "{v}");
    assert_eq!(timeline(&app, m).await[7..], expect(&[("14:00", "15:00", 3), ("15:00", "open", 2)])[..]);
    assert_eq!(current(&app, m).await, (2, t(15, 0)));

    // the reference's refusals, with its texts first
    let v = command(
        &client,
        &mut rx,
        topic.clone(),
        json!({"activity_code_id": 2, "start_time": at(9, 0), "end_time": at(8, 0)}),
    )
    .await;
    assert_eq!(v["status"], 400);
    assert!(v["message"].as_str().unwrap().starts_with("End time before start time"), "{v}");
    let v = command(
        &client,
        &mut rx,
        topic.clone(),
        json!({"activity_code_id": 1, "start_time": at(9, 0), "end_time": at(9, 30)}),
    )
    .await;
    assert_eq!(v["status"], 400);
    assert!(v["message"].as_str().unwrap().starts_with("Cannot set to uptime when no job is active"), "{v}");
    let v = command(
        &client,
        &mut rx,
        topic.clone(),
        json!({"activity_code_id": 99, "start_time": at(9, 0), "end_time": at(9, 30)}),
    )
    .await;
    assert_eq!((v["status"].as_u64(), v["reason"].as_str()), (Some(404), Some("unknown_code")));
    let v = command(&client, &mut rx, topic.clone(), json!({"activity_code_id": 2, "start_time": at(9, 0)})).await;
    assert_eq!(v["status"], 422);
    let future = (Utc::now() + chrono::Duration::days(1)).to_rfc3339();
    let v =
        command(&client, &mut rx, topic, json!({"activity_code_id": 2, "start_time": at(9, 0), "end_time": future}))
            .await;
    assert_eq!((v["status"].as_u64(), v["reason"].as_str()), (Some(400), Some("in_future")));
    assert_eq!(timeline(&app, m).await.len(), 9, "refused edits change nothing");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_changed_activity_gives_time_it_leaves_to_existing_neighbours_only() {
    let app = spawn_app().await;
    let m = app.add_machine("Drill").await;
    let other = app.add_machine("Other").await;
    let ids = known_day(&app, m).await;
    let (client, mut rx) = app.mqtt_client("hist-2").await;
    client.subscribe(REPLY, QoS::AtLeastOnce).await.unwrap();
    let topic = format!("oee/v1/machines/{m}/history/activity");

    // Closed 9–10 shrinks to 9:20–9:40: Down before it extends, Down after it starts earlier
    let v = command(
        &client,
        &mut rx,
        topic.clone(),
        json!({"activity_id": ids[1], "start_time": at(9, 20), "end_time": at(9, 40)}),
    )
    .await;
    assert_eq!((v["status"].as_u64(), v["id"].as_i64()), (Some(200), Some(ids[1])), "{v}");
    assert_eq!(
        timeline(&app, m).await,
        expect(&[("08:00", "09:20", 2), ("09:20", "09:40", 3), ("09:40", "12:00", 2), ("12:00", "open", 3)])
    );

    // the first activity has nothing before it: its start moves and the time it leaves stays a gap
    // (the reference failed with a 500 here)
    let v = command(
        &client,
        &mut rx,
        topic.clone(),
        json!({"activity_id": ids[0], "start_time": at(8, 30), "activity_code_id": 3}),
    )
    .await;
    assert_eq!(v["status"], 200, "{v}");
    assert_eq!(timeline(&app, m).await[0], ("08:30".to_string(), "09:20".to_string(), 3));

    // the open activity: a new code and an earlier start, copied to the machine row
    let v = command(
        &client,
        &mut rx,
        topic.clone(),
        json!({"activity_id": ids[3], "start_time": at(11, 0), "activity_code_id": 2}),
    )
    .await;
    assert_eq!(v["status"], 200, "{v}");
    assert_eq!(timeline(&app, m).await[2..], expect(&[("09:40", "11:00", 2), ("11:00", "open", 2)])[..]);
    assert_eq!(current(&app, m).await, (2, t(11, 0)));
    // ... which ends only by a change of state
    let v = command(&client, &mut rx, topic.clone(), json!({"activity_id": ids[3], "end_time": at(11, 30)})).await;
    assert_eq!((v["status"].as_u64(), v["reason"].as_str()), (Some(409), Some("current_activity_end")), "{v}");

    // C52 against the stored start; unknown ids and another machine's activities are 404
    let v = command(&client, &mut rx, topic.clone(), json!({"activity_id": ids[1], "end_time": at(9, 0)})).await;
    assert_eq!(v["status"], 400);
    assert!(v["message"].as_str().unwrap().starts_with("End time before start time"), "{v}");
    let v = command(&client, &mut rx, topic.clone(), json!({"activity_id": 987654, "activity_code_id": 2})).await;
    assert_eq!((v["status"].as_u64(), v["reason"].as_str()), (Some(404), Some("unknown_activity")));
    let others: i64 = sqlx::query_scalar("SELECT id FROM activity WHERE machine_id = $1")
        .bind(other)
        .fetch_one(&app.pool)
        .await
        .unwrap();
    let v = command(&client, &mut rx, topic, json!({"activity_id": others, "activity_code_id": 2})).await;
    assert_eq!(v["status"], 404);
    assert!(v["message"].as_str().unwrap().contains(&format!("machine {m} has no activity {others}")), "{v}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn past_jobs_carry_their_counts_never_overlap_and_allow_uptime_inside_them() {
    let app = spawn_app().await;
    let m = app.add_machine("Press").await;
    known_day(&app, m).await;
    let (client, mut rx) = app.mqtt_client("hist-3").await;
    client.subscribe(REPLY, QoS::AtLeastOnce).await.unwrap();
    let jobs = format!("oee/v1/machines/{m}/history/job");
    let acts = format!("oee/v1/machines/{m}/history/activity");

    let v = command(&client, &mut rx, jobs.clone(), json!({"job_number": "P1", "ideal_cycle_time_s": 30, "start_time": at(8, 0), "end_time": at(10, 0), "good": 200, "rejects": "4"})).await;
    assert_eq!(v["status"], 200, "{v}");
    let job = v["id"].as_i64().unwrap();
    let stored: (String, Option<f64>, bool, DateTime<Utc>, Option<DateTime<Utc>>) =
        sqlx::query_as("SELECT job_number, ideal_cycle_time_s, active, start_time, end_time FROM job WHERE id = $1")
            .bind(job)
            .fetch_one(&app.pool)
            .await
            .unwrap();
    assert_eq!(stored, ("P1".to_string(), Some(30.0), false, t(8, 0), Some(t(10, 0))));
    let records: Vec<(DateTime<Utc>, DateTime<Utc>, i64, i64)> = sqlx::query_as(
        "SELECT start_time, end_time, quantity_good, quantity_rejects FROM production_quantity WHERE job_id = $1",
    )
    .bind(job)
    .fetch_all(&app.pool)
    .await
    .unwrap();
    assert_eq!(records, vec![(t(8, 0), t(10, 0), 200, 4)]);
    // a past job makes no activities
    assert_eq!(timeline(&app, m).await.len(), 4);

    // uptime inside the job is allowed now, and not where it reaches past the job
    let v = command(
        &client,
        &mut rx,
        acts.clone(),
        json!({"activity_code_id": 1, "start_time": at(8, 30), "end_time": at(9, 30)}),
    )
    .await;
    assert_eq!(v["status"], 200, "{v}");
    let v = command(
        &client,
        &mut rx,
        acts,
        json!({"activity_code_id": 1, "start_time": at(9, 30), "end_time": at(10, 30)}),
    )
    .await;
    assert_eq!((v["status"].as_u64(), v["reason"].as_str()), (Some(400), Some("uptime_outside_job")), "{v}");

    // C50: overlapping jobs; meeting at an instant is fine
    let v = command(
        &client,
        &mut rx,
        jobs.clone(),
        json!({"job_number": "P2", "start_time": at(9, 0), "end_time": at(11, 0)}),
    )
    .await;
    assert_eq!(v["status"], 400);
    assert!(v["message"].as_str().unwrap().starts_with("Cannot have two jobs on a machine at once"), "{v}");
    assert!(v["message"].as_str().unwrap().contains(&format!("job {job} ")), "{v}");
    let v = command(
        &client,
        &mut rx,
        jobs.clone(),
        json!({"job_number": "P2", "start_time": at(10, 0), "end_time": at(11, 0)}),
    )
    .await;
    assert_eq!(v["status"], 200, "{v}");
    let p2 = v["id"].as_i64().unwrap();

    // a running job counts from its start on
    let v = command(
        &client,
        &mut rx,
        format!("oee/v1/machines/{m}/job/start"),
        json!({"job_number": "LIVE", "timestamp": at(13, 0)}),
    )
    .await;
    assert_eq!(v["status"], 200, "{v}");
    let v = command(
        &client,
        &mut rx,
        jobs.clone(),
        json!({"job_number": "P3", "start_time": at(12, 0), "end_time": at(13, 30)}),
    )
    .await;
    assert_eq!((v["status"].as_u64(), v["reason"].as_str()), (Some(400), Some("overlapping_jobs")), "{v}");
    let v = command(
        &client,
        &mut rx,
        jobs.clone(),
        json!({"job_number": "P3", "start_time": at(12, 0), "end_time": at(13, 0)}),
    )
    .await;
    assert_eq!(v["status"], 200, "{v}");

    // changing a job saves its end (the reference never did) and moves its one record with it
    let v = command(
        &client,
        &mut rx,
        jobs.clone(),
        json!({"job_id": job, "end_time": at(9, 30), "good": 150, "job_number": "P1b", "ideal_cycle_time_s": 0}),
    )
    .await;
    assert_eq!(v["status"], 200, "{v}");
    let stored: (String, Option<f64>, Option<DateTime<Utc>>) =
        sqlx::query_as("SELECT job_number, ideal_cycle_time_s, end_time FROM job WHERE id = $1")
            .bind(job)
            .fetch_one(&app.pool)
            .await
            .unwrap();
    assert_eq!(stored, ("P1b".to_string(), None, Some(t(9, 30))));
    let records: Vec<(DateTime<Utc>, DateTime<Utc>, i64, i64)> = sqlx::query_as(
        "SELECT start_time, end_time, quantity_good, quantity_rejects FROM production_quantity WHERE job_id = $1",
    )
    .bind(job)
    .fetch_all(&app.pool)
    .await
    .unwrap();
    assert_eq!(records, vec![(t(8, 0), t(9, 30), 150, 4)]);
    // changed into an overlap with the next job: refused
    let v = command(&client, &mut rx, jobs.clone(), json!({"job_id": job, "end_time": at(10, 15)})).await;
    assert_eq!((v["status"].as_u64(), v["reason"].as_str()), (Some(400), Some("overlapping_jobs")), "{v}");
    assert!(v["message"].as_str().unwrap().contains(&format!("job {p2} ")), "{v}");

    // the running job ends only by job/end; several records guard their counts
    let live: i64 = sqlx::query_scalar("SELECT active_job_id FROM machine WHERE id = $1")
        .bind(m)
        .fetch_one(&app.pool)
        .await
        .unwrap();
    let v = command(&client, &mut rx, jobs.clone(), json!({"job_id": live, "end_time": at(14, 0)})).await;
    assert_eq!((v["status"].as_u64(), v["reason"].as_str()), (Some(409), Some("running_job_end")), "{v}");
    for (good, ts) in [(5, at(13, 10)), (6, at(13, 20))] {
        let v = command(
            &client,
            &mut rx,
            format!("oee/v1/machines/{m}/production"),
            json!({"good": good, "timestamp": ts}),
        )
        .await;
        assert_eq!(v["status"], 200, "{v}");
    }
    let v = command(&client, &mut rx, jobs.clone(), json!({"job_id": live, "good": 12})).await;
    assert_eq!((v["status"].as_u64(), v["reason"].as_str()), (Some(400), Some("job_has_many_records")), "{v}");
    assert!(v["message"].as_str().unwrap().starts_with("Cannot edit job quantity because there are multiple"), "{v}");
    let v = command(&client, &mut rx, jobs, json!({"job_id": 987654, "job_number": "X"})).await;
    assert_eq!((v["status"].as_u64(), v["reason"].as_str()), (Some(404), Some("unknown_job")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn production_records_are_added_and_changed_and_live_counts_follow_them() {
    let app = spawn_app().await;
    let m = app.add_machine("Saw").await;
    let other = app.add_machine("Other saw").await;
    known_day(&app, m).await;
    let (client, mut rx) = app.mqtt_client("hist-4").await;
    client.subscribe(REPLY, QoS::AtLeastOnce).await.unwrap();
    let topic = format!("oee/v1/machines/{m}/history/production");
    let record = |id: i64| {
        let pool = app.pool.clone();
        async move {
            sqlx::query_as::<_, (Option<i64>, DateTime<Utc>, DateTime<Utc>, i64, i64)>(
                "SELECT job_id, start_time, end_time, quantity_good, quantity_rejects FROM production_quantity \
                 WHERE id = $1",
            )
            .bind(id)
            .fetch_one(&pool)
            .await
            .unwrap()
        }
    };

    let v = command(
        &client,
        &mut rx,
        format!("oee/v1/machines/{m}/job/start"),
        json!({"job_number": "S1", "timestamp": at(13, 0)}),
    )
    .await;
    assert_eq!(v["status"], 200, "{v}");
    let job: i64 = sqlx::query_scalar("SELECT active_job_id FROM machine WHERE id = $1")
        .bind(m)
        .fetch_one(&app.pool)
        .await
        .unwrap();

    let v = command(
        &client,
        &mut rx,
        topic.clone(),
        json!({"job_id": job, "start_time": at(13, 0), "end_time": at(13, 40), "good": 30, "rejects": 1}),
    )
    .await;
    assert_eq!(v["status"], 200, "{v}");
    let rec = v["id"].as_i64().unwrap();
    assert_eq!(record(rec).await, (Some(job), t(13, 0), t(13, 40), 30, 1));

    // a live count goes on from the end of the job's latest record
    let v = command(
        &client,
        &mut rx,
        format!("oee/v1/machines/{m}/production"),
        json!({"good": 4, "timestamp": at(14, 0)}),
    )
    .await;
    assert_eq!(v["status"], 200, "{v}");
    let live: (DateTime<Utc>, i64) = sqlx::query_as(
        "SELECT start_time, quantity_good FROM production_quantity WHERE job_id = $1 ORDER BY end_time DESC LIMIT 1",
    )
    .bind(job)
    .fetch_one(&app.pool)
    .await
    .unwrap();
    assert_eq!(live, (t(13, 40), 4));

    // changed: only what is given
    let v =
        command(&client, &mut rx, topic.clone(), json!({"record_id": rec, "end_time": at(13, 30), "rejects": 0})).await;
    assert_eq!((v["status"].as_u64(), v["id"].as_i64()), (Some(200), Some(rec)), "{v}");
    assert_eq!(record(rec).await, (Some(job), t(13, 0), t(13, 30), 30, 0));
    // without a job, the parts are the machine's
    let v = command(&client, &mut rx, topic.clone(), json!({"start_time": at(8, 0), "end_time": at(9, 0), "good": 12}))
        .await;
    assert_eq!(v["status"], 200, "{v}");
    assert_eq!(record(v["id"].as_i64().unwrap()).await, (None, t(8, 0), t(9, 0), 12, 0));

    let v = command(&client, &mut rx, topic.clone(), json!({"record_id": rec, "start_time": at(13, 45)})).await;
    assert_eq!(v["status"], 400);
    assert!(v["message"].as_str().unwrap().starts_with("End time before start time"), "{v}");
    let v = command(&client, &mut rx, topic.clone(), json!({"record_id": rec, "good": -1})).await;
    assert_eq!(v["status"], 400);
    let v = command(&client, &mut rx, topic.clone(), json!({"record_id": 987654, "good": 1})).await;
    assert_eq!((v["status"].as_u64(), v["reason"].as_str()), (Some(404), Some("unknown_record")));
    // another machine's job or record is not this machine's
    let other_job = app.start_job(other).await;
    let v = command(
        &client,
        &mut rx,
        topic.clone(),
        json!({"job_id": other_job, "start_time": at(8, 0), "end_time": at(9, 0)}),
    )
    .await;
    assert_eq!((v["status"].as_u64(), v["reason"].as_str()), (Some(404), Some("unknown_job")));
    let v = command(
        &client,
        &mut rx,
        format!("oee/v1/machines/{other}/history/production"),
        json!({"record_id": rec, "good": 1}),
    )
    .await;
    assert_eq!(v["status"], 404);
    assert_eq!(record(rec).await, (Some(job), t(13, 0), t(13, 30), 30, 0), "refusals change nothing");
}
