//! The v1 commands over HTTP: `POST /api/v1/machines/{machine}/{command}` reaches ingest like the MQTT topic
//! of the same name and answers with its verdict once committed.

mod common;

use common::*;
use serde_json::{Value, json};

async fn post(t: &TestApp, path: &str, body: Value) -> (u16, Value) {
    let r = t.client.post(format!("{}/api/v1/machines/{path}", t.http)).json(&body).send().await.unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap())
}

async fn jobs_of(t: &TestApp, machine: i32) -> Vec<(String, Option<f64>, bool)> {
    sqlx::query_as("SELECT job_number, ideal_cycle_time_s, active FROM job WHERE machine_id = $1 ORDER BY id")
        .bind(machine)
        .fetch_all(&t.pool)
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jobs_and_state_changes_can_be_posted_by_id_or_topic_name() {
    let t = spawn_app().await;
    let m = t.add_machine("Lathe 2").await;
    t.set_schedule(m, true).await;
    // the first activity depends on the hour the machine was added (Closed outside 9-5)
    let first = t.activities(m).await.0[0];

    let (status, v) = post(&t, &format!("{m}/job/start"), json!({"job_number": "A-7", "ideal_cycle_time_s": 4})).await;
    assert_eq!((status, v["ok"].as_bool(), v["activity_code_id"].as_i64()), (200, Some(true), Some(1)), "{v}");
    assert_eq!(jobs_of(&t, m).await, vec![("A-7".to_string(), Some(4.0), true)]);

    // a second job is refused with the verdict's status and message
    let (status, v) = post(&t, "lathe-2/job/start", json!({"job_number": "A-8"})).await;
    assert_eq!((status, v["reason"].as_str()), (409, Some("job_already_active")), "{v}");
    assert!(v["message"].as_str().unwrap().contains("end it before starting another"), "{v}");

    let (status, v) = post(&t, "lathe-2/state", json!({"machine_state": 0})).await;
    assert_eq!((status, v["activity_code_id"].as_i64()), (200, Some(2)), "{v}");
    let (status, v) = post(&t, "lathe-2/production", json!({"good": 30, "rejects": 1})).await;
    assert_eq!((status, v["ok"].as_bool()), (200, Some(true)), "{v}");
    let (status, v) = post(&t, &format!("{m}/job/end"), json!({"good": 10, "rejects": 1})).await;
    assert_eq!((status, v["ok"].as_bool()), (200, Some(true)), "{v}");
    assert_eq!(jobs_of(&t, m).await, vec![("A-7".to_string(), Some(4.0), false)]);
    let (codes, open) = t.activities(m).await;
    assert_eq!((codes, open), (vec![first, 1, 2, 2], 1));
    let counts: (i64, i64) = sqlx::query_as(
        "SELECT sum(quantity_good)::int8, sum(quantity_rejects)::int8 FROM production_quantity WHERE machine_id = $1",
    )
    .bind(m)
    .fetch_one(&t.pool)
    .await
    .unwrap();
    assert_eq!(counts, (40, 2));

    // history edits go the same way; a past job overlapping the one just ended is refused (C50)
    let start = chrono::Utc::now() - chrono::Duration::hours(2);
    let (status, v) = post(
        &t,
        &format!("{m}/history/job"),
        json!({"job_number": "OLD", "start_time": start.to_rfc3339(), "end_time": chrono::Utc::now().to_rfc3339()}),
    )
    .await;
    assert_eq!(status, 400, "{v}");
    assert!(v["message"].as_str().unwrap().starts_with("Cannot have two jobs on a machine at once"), "{v}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retried_request_id_is_applied_once() {
    let t = spawn_app().await;
    let m = t.add_machine("Mill").await;
    let body = json!({"job_number": "R1", "request_id": "tablet-42-start"});
    let (first, v1) = post(&t, &format!("{m}/job/start"), body.clone()).await;
    let (again, v2) = post(&t, &format!("{m}/job/start"), body).await;
    assert_eq!((first, again), (200, 200), "{v1} {v2}");
    assert_eq!(v1["request_id"], "tablet-42-start");
    assert_eq!(v1, v2, "the retry gets the first answer");
    assert_eq!(jobs_of(&t, m).await.len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_command_requests_get_clear_errors() {
    let t = spawn_app().await;
    let m = t.add_machine("Saw").await;

    let (status, v) = post(&t, &format!("{m}/launch"), json!({})).await;
    assert_eq!((status, v["reason"].as_str()), (404, Some("unknown_command")), "{v}");
    assert!(v["error"].as_str().unwrap().contains("`launch`"), "{v}");

    let (status, v) = post(&t, "9999/state", json!({"machine_state": 1})).await;
    assert_eq!((status, v["reason"].as_str()), (404, Some("unknown_machine")), "{v}");

    let (status, v) = post(&t, &format!("{m}/job/start"), json!({"ideal_cycle_time_s": 3})).await;
    assert_eq!((status, v["reason"].as_str()), (422, Some("missing_field")), "{v}");
    assert!(v["message"].as_str().unwrap().contains("job_number"), "{v}");

    let (status, v) = post(&t, &format!("{m}/state"), json!([1, 2])).await;
    assert_eq!(status, 400, "{v}");
    let (status, v) = post(&t, &format!("{m}/state"), json!({"machine_state": 1, "request_id": 5})).await;
    assert_eq!(status, 400, "{v}");
    assert!(v["error"].as_str().unwrap().contains("request_id"), "{v}");

    let r = t
        .client
        .post(format!("{}/api/v1/machines/{m}/state", t.http))
        .body(r#"{"machine_state":1}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 415);
    assert_eq!(t.activities(m).await.0.len(), 1, "nothing was applied");
}
