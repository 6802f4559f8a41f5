//! Jobs over MQTT: starting (once), running, ending with counts, and the activities they make.

mod common;

use common::*;
use rumqttc::QoS;
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_starts_once_runs_and_ends_with_its_counts() {
    let t = spawn_app().await;
    let m = t.add_machine("Press").await;
    t.set_schedule(m, true).await;
    let (client, mut rx) = t.mqtt_client("plc").await;
    client.subscribe(REPLY, QoS::AtLeastOnce).await.unwrap();
    let topic = |suffix: &str| format!("oee/v1/machines/{m}/{suffix}");

    let v = command(&client, &mut rx, topic("job/end"), json!({"good": 1})).await;
    assert_eq!((v["status"].as_u64(), v["reason"].as_str()), (Some(409), Some("no_active_job")));

    let v =
        command(&client, &mut rx, topic("job/start"), json!({"job_number": "J100", "ideal_cycle_time_s": 12.5})).await;
    assert_eq!((v["status"].as_u64(), v["activity_code_id"].as_i64()), (Some(200), Some(1)), "{v}");
    let v = command(&client, &mut rx, topic("job/start"), json!({"job_number": "J101"})).await;
    assert_eq!((v["status"].as_u64(), v["reason"].as_str()), (Some(409), Some("job_already_active")), "{v}");
    assert!(v["message"].as_str().unwrap().contains("end it before starting another"));

    // with a job, "up" is accepted; out of shift it is overtime
    assert_eq!(command(&client, &mut rx, topic("state"), json!({"machine_state": 0})).await["status"], 200);
    t.set_schedule(m, false).await;
    assert_eq!(command(&client, &mut rx, topic("state"), json!({"machine_state": 1})).await["activity_code_id"], 4);

    let v = command(&client, &mut rx, topic("job/end"), json!({"good": "100", "rejects": 3})).await;
    assert_eq!((v["status"].as_u64(), v["activity_code_id"].as_i64()), (Some(200), Some(3)), "out of shift: Closed");

    let (number, ict, active, ended): (String, Option<f64>, bool, bool) = sqlx::query_as(
        "SELECT job_number, ideal_cycle_time_s, active, end_time IS NOT NULL FROM job WHERE machine_id = $1",
    )
    .bind(m)
    .fetch_one(&t.pool)
    .await
    .unwrap();
    assert_eq!((number.as_str(), ict, active, ended), ("J100", Some(12.5), false, true));
    let (good, rejects, from_job_start): (i64, i64, bool) = sqlx::query_as(
        "SELECT p.quantity_good, p.quantity_rejects, p.start_time = j.start_time AND p.end_time = j.end_time \
         FROM production_quantity p JOIN job j ON j.id = p.job_id WHERE p.machine_id = $1",
    )
    .bind(m)
    .fetch_one(&t.pool)
    .await
    .unwrap();
    assert_eq!((good, rejects, from_job_start), (100, 3, true));
    let active_job: Option<i64> =
        sqlx::query_scalar("SELECT active_job_id FROM machine WHERE id = $1").bind(m).fetch_one(&t.pool).await.unwrap();
    assert_eq!(active_job, None);
    assert_eq!(&t.activities(m).await.0[1..], &[1, 2, 4, 3]);

    // a new job may start now, and "up" without one is refused again
    assert_eq!(command(&client, &mut rx, topic("state"), json!({"activity_code_id": 4})).await["status"], 409);
    assert_eq!(command(&client, &mut rx, topic("job/start"), json!({"job_number": "J101"})).await["status"], 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_jobs_api_lists_a_machines_jobs_with_totals_notes_and_production_records() {
    let t = spawn_app().await;
    let m = t.add_machine("Lathe").await;
    let other = t.add_machine("Mill").await;
    t.set_schedule(m, true).await;
    let (client, mut rx) = t.mqtt_client("plc").await;
    client.subscribe(REPLY, QoS::AtLeastOnce).await.unwrap();
    let topic = |machine: i32, suffix: &str| format!("oee/v1/machines/{machine}/{suffix}");
    let v =
        command(&client, &mut rx, topic(m, "job/start"), json!({"job_number": "J7", "ideal_cycle_time_s": 4})).await;
    assert_eq!(v["status"], 200, "{v}");
    let v = command(&client, &mut rx, topic(m, "production"), json!({"good": 10, "rejects": 1})).await;
    assert_eq!(v["status"], 200, "{v}");
    let v = command(&client, &mut rx, topic(m, "job/end"), json!({"good": 5, "rejects": 2})).await;
    assert_eq!(v["status"], 200, "{v}");
    sqlx::query("UPDATE job SET notes = '10:05 - tool change - \n' WHERE machine_id = $1")
        .bind(m)
        .execute(&t.pool)
        .await
        .unwrap();
    let v = command(&client, &mut rx, topic(other, "job/start"), json!({"job_number": "K1"})).await;
    assert_eq!(v["status"], 200, "{v}");

    let get = |path: String| {
        let api = t.api.clone();
        let base = t.http.clone();
        async move {
            let r = api.get(format!("{base}{path}")).send().await.unwrap();
            (r.status().as_u16(), r.json::<serde_json::Value>().await.unwrap())
        }
    };
    let (status, jobs) = get(format!("/api/v1/jobs?machine={m}")).await;
    assert_eq!(status, 200, "{jobs}");
    let jobs = jobs.as_array().unwrap();
    assert_eq!(jobs.len(), 1, "only this machine's jobs: {jobs:?}");
    let j = &jobs[0];
    assert_eq!(
        (j["job_number"].as_str(), j["quantity_good"].as_i64(), j["quantity_rejects"].as_i64()),
        (Some("J7"), Some(15), Some(3))
    );
    assert_eq!((j["active"].as_bool(), j["machine_name"].as_str()), (Some(false), Some("Lathe")));
    assert!(j["notes"].as_str().unwrap().contains("tool change"));
    let (_, all) = get("/api/v1/jobs".into()).await;
    assert_eq!(all.as_array().unwrap().len(), 2, "every machine's jobs by default: {all}");
    let running = all.as_array().unwrap().iter().find(|j| j["job_number"] == "K1").unwrap();
    assert!(running["end_time"].is_null() && running["active"] == true);

    let (status, detail) = get(format!("/api/v1/jobs/{}", j["id"])).await;
    assert_eq!(status, 200);
    let records = detail["production"].as_array().unwrap();
    assert_eq!(records.len(), 2, "the mid-job count and the count at the end: {detail}");
    assert_eq!(records.iter().map(|r| r["quantity_good"].as_i64().unwrap()).sum::<i64>(), 15);

    for (path, status) in [
        ("/api/v1/jobs/999999".to_string(), 404),
        ("/api/v1/jobs/abc".to_string(), 400),
        (format!("/api/v1/jobs?machine={m}&from=2026-01-02&to=2026-01-01"), 400),
        ("/api/v1/jobs?machine=999999".to_string(), 404),
        ("/api/v1/jobs?limit=0".to_string(), 400),
    ] {
        assert_eq!(get(path.clone()).await.0, status, "{path}");
    }
    let anonymous = reqwest::get(format!("{}/api/v1/jobs", t.http)).await.unwrap();
    assert_eq!(anonymous.status(), 401);
}
