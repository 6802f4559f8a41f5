//! The reference's IoT device API over real HTTP: contracts C4 and C34–C42.

mod common;

use common::*;
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn activity_codes_list_the_four_seeded_codes_exactly() {
    let t = spawn_app().await;
    let r = t.client.get(format!("{}/api/activity-codes", t.http)).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "application/json");
    let body = r.text().await.unwrap();
    assert_eq!(
        body,
        concat!(
            r##"[{"graph_colour":"#00ff80","id":1,"long_description":"The machine is in use","short_description":"Up"},"##,
            r##"{"graph_colour":"#b22222","id":2,"long_description":"Downtime that doesn't have an explanation from the user","short_description":"Down"},"##,
            r##"{"graph_colour":"#C6C6C6","id":3,"long_description":"Planned downtime outside of shift hours","short_description":"Closed"},"##,
            r##"{"graph_colour":"#00ff80","id":4,"long_description":"Uptime outside of shift hours","short_description":"Overtime"}]"##,
            "\n"
        )
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_form_encoded_body_is_refused_with_415() {
    let t = spawn_app().await;
    let m = t.add_machine("M").await;
    let r = t
        .client
        .post(format!("{}/api/machine-state-change", t.http))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("machine_id={m}&machine_state=0"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 415);
    let body: serde_json::Value = r.json().await.unwrap();
    assert!(body["error"].as_str().unwrap().contains("Content-Type: application/json"));
    assert_eq!(t.activities(m).await.0.len(), 1, "nothing was stored");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_machine_is_404() {
    let t = spawn_app().await;
    let (status, _, body) = t.post_state(json!({"machine_id": 99, "machine_state": 0})).await;
    assert_eq!(status, 404);
    assert!(body.contains("machine 99 does not exist"), "{body}");
    let (status, _, _) = t.post_state(json!({"machine_id": -3, "machine_state": 0})).await;
    assert_eq!(status, 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn up_without_a_job_is_400_for_code_1_and_409_with_the_reference_body_for_other_up_codes() {
    let t = spawn_app().await;
    let m = t.add_machine("M").await;
    let (status, _, body) = t.post_state(json!({"machine_id": m, "machine_state": 1})).await;
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("no active job"), "{body}");
    let (status, _, _) = t.post_state(json!({"machine_id": m, "activity_code_id": 1})).await;
    assert_eq!(status, 400);
    let (status, ctype, body) = t.post_state(json!({"machine_id": m, "activity_code_id": 4})).await;
    assert_eq!(status, 409);
    assert!(ctype.starts_with("text/html"), "{ctype}");
    assert_eq!(body, "Cannot set a machine to up when there is no active job");
    assert_eq!(t.activities(m).await.0.len(), 1, "refused changes store nothing");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn machine_state_0_is_down_with_an_empty_200() {
    let t = spawn_app().await;
    let m = t.add_machine("M").await;
    t.set_schedule(m, true).await;
    let (status, ctype, body) = t.post_state(json!({"machine_id": m, "machine_state": 0})).await;
    assert_eq!((status, body.as_str()), (200, ""));
    assert!(ctype.starts_with("text/html"));
    assert_eq!(t.current_code(m).await, 2);
    let (codes, open) = t.activities(m).await;
    assert_eq!(codes.len(), 2, "the first activity was closed and a new one opened");
    assert_eq!(open, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn any_state_other_than_1_is_down_and_activity_code_id_wins() {
    let t = spawn_app().await;
    let m = t.add_machine("M").await;
    let (status, _, _) = t.post_state(json!({"machine_id": m, "machine_state": 5})).await;
    assert_eq!(status, 200);
    assert_eq!(t.current_code(m).await, 2);
    let (status, _, _) = t.post_state(json!({"machine_id": m, "machine_state": 0, "activity_code_id": 3})).await;
    assert_eq!(status, 200);
    assert_eq!(t.current_code(m).await, 3);
    // numeric strings are accepted, as the reference's validation does
    let (status, _, _) = t.post_state(json!({"machine_id": m.to_string(), "machine_state": "0"})).await;
    assert_eq!(status, 200);
    assert_eq!(t.current_code(m).await, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn up_with_a_job_is_coerced_by_the_schedule() {
    let t = spawn_app().await;
    let m = t.add_machine("M").await;
    t.start_job(m).await;
    t.set_schedule(m, false).await;
    assert_eq!(t.post_state(json!({"machine_id": m, "machine_state": 1})).await.0, 200);
    assert_eq!(t.current_code(m).await, 4, "up out of shift is overtime");
    t.set_schedule(m, true).await;
    assert_eq!(t.post_state(json!({"machine_id": m, "machine_state": 1})).await.0, 200);
    assert_eq!(t.current_code(m).await, 1);
    assert_eq!(t.post_state(json!({"machine_id": m, "activity_code_id": 4})).await.0, 200);
    assert_eq!(t.current_code(m).await, 1, "overtime in shift is up");
    let (codes, open) = t.activities(m).await;
    assert_eq!(&codes[1..], &[4, 1, 1]);
    assert_eq!(open, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_machine_id_is_422_naming_the_field() {
    let t = spawn_app().await;
    let (status, ctype, body) = t.post_state(json!({"machine_state": 0})).await;
    assert_eq!(status, 422);
    assert!(ctype.starts_with("application/json"));
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert!(v["error"].as_str().unwrap().contains("machine_id"), "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_bodies_get_clear_4xx_errors() {
    let t = spawn_app().await;
    let m = t.add_machine("M").await;
    let cases = [
        (json!({"machine_id": m}), 404, "machine_state"),
        (json!({"machine_id": m, "activity_code_id": 77}), 404, "activity code 77"),
        (json!({"machine_id": m, "machine_state": "up"}), 400, "must be an integer"),
        (json!({"machine_id": "seven", "machine_state": 0}), 400, "machine_id"),
        (json!({"machine_id": m, "machine_state": 0, "user_id": 999}), 404, "user 999"),
        (json!([1, 2]), 400, "JSON object"),
    ];
    for (body, want_status, want_text) in cases {
        let (status, _, text) = t.post_state(body.clone()).await;
        assert_eq!(status, want_status, "{body}: {text}");
        assert!(text.contains(want_text), "{body}: {text}");
    }
    let r = t
        .client
        .post(format!("{}/api/machine-state-change", t.http))
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert_eq!(t.activities(m).await.0.len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_state_change_with_a_known_user_records_the_user() {
    let t = spawn_app().await;
    let m = t.add_machine("M").await;
    assert_eq!(t.post_state(json!({"machine_id": m, "machine_state": 0, "user_id": 1})).await.0, 200);
    let user: Option<i32> =
        sqlx::query_scalar("SELECT user_id FROM activity WHERE machine_id = $1 AND end_time IS NULL")
            .bind(m)
            .fetch_one(&t.pool)
            .await
            .unwrap();
    assert_eq!(user, Some(1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_on_the_state_change_endpoint_is_405() {
    let t = spawn_app().await;
    let r = t.client.get(format!("{}/api/machine-state-change", t.http)).send().await.unwrap();
    assert_eq!(r.status(), 405);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_health_page_reports_each_part() {
    let t = spawn_app().await;
    let r = t.client.get(format!("{}/health", t.http)).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let mut v: serde_json::Value = r.json().await.unwrap();
    // The maintenance jobs' last runs (see tests/retention.rs) come beside the parts.
    assert!(v.as_object_mut().unwrap().remove("maintenance").is_some_and(|m| m.is_object()), "{v}");
    assert_eq!(v, json!({"status": "ok", "database": "ok", "broker": "ok", "ingest": "ok"}));

    // Without ingest, the ping goes unanswered: 503, saying which part is down.
    let db = seeded_db().await;
    let config = test_config(&db);
    let services = oee_server::Services { broker: true, ingest: false, bridge: true, web: true };
    let t = spawn_app_with(config, db, services).await;
    let r = t.client.get(format!("{}/health", t.http)).send().await.unwrap();
    assert_eq!(r.status(), 503);
    let v: serde_json::Value = r.json().await.unwrap();
    assert_eq!(
        (v["status"].as_str(), v["database"].as_str(), v["broker"].as_str()),
        (Some("degraded"), Some("ok"), Some("ok"))
    );
    assert!(v["ingest"].as_str().unwrap().contains("is ingest running"), "{v}");
}
