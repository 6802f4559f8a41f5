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
