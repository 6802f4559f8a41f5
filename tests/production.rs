//! Parts made over MQTT: increments and running totals become production records of the running job (or of
//! no job), counter resets are detected, bad counts are refused and kept.

mod common;

use chrono::{DateTime, Duration, SubsecRound, Utc};
use common::*;
use rumqttc::QoS;
use serde_json::json;

/// A machine's production records in time order: (job, start, end, good, rejects).
type Record = (Option<i64>, DateTime<Utc>, DateTime<Utc>, i64, i64);

async fn records(t: &TestApp, machine: i32) -> Vec<Record> {
    sqlx::query_as(
        "SELECT job_id, start_time, end_time, quantity_good, quantity_rejects FROM production_quantity \
         WHERE machine_id = $1 ORDER BY end_time, id",
    )
    .bind(machine)
    .fetch_all(&t.pool)
    .await
    .unwrap()
}

fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn counts_become_records_of_the_running_job_each_from_where_the_last_ended() {
    let t = spawn_app().await;
    let m = t.add_machine("Press").await;
    t.set_schedule(m, true).await;
    let (client, mut rx) = t.mqtt_client("plc-p1").await;
    client.subscribe(REPLY, QoS::AtLeastOnce).await.unwrap();
    let topic = |suffix: &str| format!("oee/v1/machines/{m}/{suffix}");
    // stamped in the past (a timestamp ahead of its receipt is taken as the receipt), after the machine's
    // backdated current activity began
    let t0 = Utc::now().trunc_subsecs(0) - Duration::seconds(60);
    t.backdate_current_activity(m, t0 - Duration::seconds(1)).await;
    let at = |s: i64| t0 + Duration::seconds(s);

    let v =
        command(&client, &mut rx, topic("job/start"), json!({"job_number": "J1", "timestamp": rfc3339(at(0))})).await;
    assert_eq!(v["status"], 200, "{v}");
    let job: i64 =
        sqlx::query_scalar("SELECT active_job_id FROM machine WHERE id = $1").bind(m).fetch_one(&t.pool).await.unwrap();

    let v = command(
        &client,
        &mut rx,
        topic("production"),
        json!({"good": 5, "rejects": "1", "timestamp": rfc3339(at(20)), "request_id": "count-1"}),
    )
    .await;
    assert_eq!(v, json!({"request_id": "count-1", "status": 200, "ok": true}));
    // the same message again (a redelivery) is answered but recorded once
    let v = command(
        &client,
        &mut rx,
        topic("production"),
        json!({"good": 5, "rejects": "1", "timestamp": rfc3339(at(20)), "request_id": "count-1"}),
    )
    .await;
    assert_eq!(v["status"], 200);
    // the machine's topic name reaches the same machine
    let v = command(
        &client,
        &mut rx,
        "oee/v1/machines/press/production".into(),
        json!({"good": 3, "timestamp": rfc3339(at(30))}),
    )
    .await;
    assert_eq!(v["status"], 200);
    let v = command(&client, &mut rx, topic("job/end"), json!({"good": 2, "rejects": 0, "timestamp": rfc3339(at(45))}))
        .await;
    assert_eq!(v["status"], 200);

    assert_eq!(
        records(&t, m).await,
        vec![(Some(job), at(0), at(20), 5, 1), (Some(job), at(20), at(30), 3, 0), (Some(job), at(30), at(45), 2, 0),]
    );

    // after the job, counts go on record against no job, from where the machine's last record ended
    let v = command(&client, &mut rx, topic("production"), json!({"good": 4, "timestamp": rfc3339(at(50))})).await;
    assert_eq!(v["status"], 200);
    assert_eq!(records(&t, m).await.last(), Some(&(None, at(45), at(50), 4, 0)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn running_totals_record_their_growth_and_a_drop_is_a_counter_reset() {
    let t = spawn_app().await;
    let m = t.add_machine("Counter").await;
    let (client, mut rx) = t.mqtt_client("plc-p2").await;
    client.subscribe(REPLY, QoS::AtLeastOnce).await.unwrap();
    let topic = format!("oee/v1/machines/{m}/production");

    // (totals sent, parts recorded (good, rejects), totals kept afterwards)
    let steps = [
        (json!({"good_total": 100, "rejects_total": 2}), (100, 2), (Some(100), Some(2))),
        (json!({"good_total": 130, "rejects_total": 2}), (30, 0), (Some(130), Some(2))),
        (json!({"good_total": 131}), (1, 0), (Some(131), Some(2))),
        (json!({"good_total": 10, "rejects_total": 3}), (10, 1), (Some(10), Some(3))),
        (json!({"good_total": "25", "rejects_total": 0}), (15, 0), (Some(25), Some(0))),
        // increments between totals leave the totals alone
        (json!({"good": 7}), (7, 0), (Some(25), Some(0))),
        (json!({"good_total": 26}), (1, 0), (Some(26), Some(0))),
    ];
    let mut want_rows = Vec::new();
    for (body, parts, totals) in steps {
        let v = command(&client, &mut rx, topic.clone(), body.clone()).await;
        assert_eq!(v["status"], 200, "{body}: {v}");
        want_rows.push(parts);
        let kept: (Option<i64>, Option<i64>) =
            sqlx::query_as("SELECT good_total, rejects_total FROM production_counter WHERE machine_id = $1")
                .bind(m)
                .fetch_one(&t.pool)
                .await
                .unwrap();
        assert_eq!(kept, totals, "after {body}");
    }
    let rows = records(&t, m).await;
    let got: Vec<(i64, i64)> = rows.iter().map(|r| (r.3, r.4)).collect();
    assert_eq!(got, want_rows);
    assert!(rows.iter().all(|r| r.0.is_none()), "no job ran: {rows:?}");
    // every part the counters saw, across the reset: 131 before it, 26 after, plus 7 sent as increments
    assert_eq!(rows.iter().map(|r| r.3).sum::<i64>(), 131 + 26 + 7);
    // each record starts where the one before ended
    assert!(rows.windows(2).all(|w| w[1].1 == w[0].2), "{rows:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_counts_are_refused_with_a_clear_message_and_kept() {
    let t = spawn_app().await;
    let m = t.add_machine("Mill").await;
    let (client, mut rx) = t.mqtt_client("plc-p3").await;
    client.subscribe(REPLY, QoS::AtLeastOnce).await.unwrap();
    let topic = format!("oee/v1/machines/{m}/production");

    let cases = [
        (json!({"good": -3}), 400, "`good` cannot be negative"),
        (json!({"rejects": 1.5}), 400, "`rejects` must be an integer"),
        (json!({"good_total": "lots"}), 400, "`good_total` must be an integer"),
        (json!({"good": 1, "good_total": 9}), 400, "not both"),
        (json!({"timestamp": "2026-01-05T09:00:00Z"}), 400, "no counts"),
    ];
    for (body, status, want) in &cases {
        let v = command(&client, &mut rx, topic.clone(), body.clone()).await;
        assert_eq!(v["status"], *status, "{body}: {v}");
        assert!(v["message"].as_str().unwrap().contains(want), "{body}: {v}");
    }
    let v = command(&client, &mut rx, "oee/v1/machines/9999/production".into(), json!({"good": 1})).await;
    assert_eq!((v["status"].as_u64(), v["reason"].as_str()), (Some(404), Some("unknown_machine")));

    // counts stamped before the running job began belong to no job this command can name
    t.start_job(m).await;
    let before = (Utc::now() - Duration::hours(1)).to_rfc3339();
    let v = command(&client, &mut rx, topic.clone(), json!({"good": 1, "timestamp": before})).await;
    assert_eq!((v["status"].as_u64(), v["reason"].as_str()), (Some(409), Some("counts_before_job")), "{v}");
    assert!(v["message"].as_str().unwrap().contains("history/production"), "{v}");

    assert!(records(&t, m).await.is_empty());
    let kept: i64 = sqlx::query_scalar("SELECT count(*) FROM raw_event WHERE topic LIKE '%/production'")
        .fetch_one(&t.pool)
        .await
        .unwrap();
    assert_eq!(kept, cases.len() as i64 + 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn counts_sent_back_to_back_tile_the_job_without_gaps_or_overlaps() {
    let t = spawn_app().await;
    let m = t.add_machine("Line").await;
    let (client, mut rx) = t.mqtt_client("plc-p4").await;
    client.subscribe(REPLY, QoS::AtLeastOnce).await.unwrap();
    let topic = |suffix: &str| format!("oee/v1/machines/{m}/{suffix}");
    let t0 = Utc::now().trunc_subsecs(0) - Duration::seconds(60);
    t.backdate_current_activity(m, t0 - Duration::seconds(1)).await;
    let at = |s: i64| t0 + Duration::seconds(s);
    let v =
        command(&client, &mut rx, topic("job/start"), json!({"job_number": "J7", "timestamp": rfc3339(at(0))})).await;
    assert_eq!(v["status"], 200);

    // published without waiting, so several may share a batch
    let n = 20;
    for i in 1..=n {
        let body = json!({"good": i, "rejects": i % 3, "timestamp": rfc3339(at(i)), "reply_to": REPLY});
        client.publish(topic("production"), QoS::AtLeastOnce, false, serde_json::to_vec(&body).unwrap()).await.unwrap();
    }
    for _ in 1..=n {
        assert_eq!(next_on(&mut rx, REPLY).await["status"], 200);
    }
    let v = command(&client, &mut rx, topic("job/end"), json!({"good": 5, "timestamp": rfc3339(at(n + 1))})).await;
    assert_eq!(v["status"], 200);

    let rows = records(&t, m).await;
    assert_eq!(rows.len() as i64, n + 1);
    assert_eq!(rows[0].1, at(0));
    assert!(rows.windows(2).all(|w| w[1].1 == w[0].2), "records must meet end to start: {rows:?}");
    assert_eq!(rows.last().unwrap().2, at(n + 1));
    assert_eq!(rows.iter().map(|r| r.3).sum::<i64>(), n * (n + 1) / 2 + 5);
    assert_eq!(rows.iter().map(|r| r.4).sum::<i64>(), (1..=n).map(|i| i % 3).sum::<i64>());
}
