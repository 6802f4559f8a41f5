//! Devices speaking MQTT: verdicts on `reply_to`, the retained status topic, telemetry, bad payloads,
//! idempotent redelivery and per-machine order, with rumqttc and Debian's mosquitto clients.

mod common;

use std::time::Duration;

use common::*;
use rumqttc::QoS;
use serde_json::json;

async fn send(client: &rumqttc::AsyncClient, topic: &str, body: serde_json::Value) {
    client.publish(topic, QoS::AtLeastOnce, false, serde_json::to_vec(&body).unwrap()).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mqtt_devices_get_the_same_verdicts_as_http() {
    let t = spawn_app().await;
    let m = t.add_machine("Lathe").await;
    let (client, mut rx) = t.mqtt_client("device-1").await;
    client.subscribe("oee/v1/replies/test/device-1", QoS::AtLeastOnce).await.unwrap();
    let reply = "oee/v1/replies/test/device-1";
    let topic = format!("oee/v1/machines/{m}/state");

    send(&client, &topic, json!({"machine_state": 0, "request_id": "a", "reply_to": reply})).await;
    let v = next_on(&mut rx, reply).await;
    assert_eq!(v, json!({"request_id": "a", "status": 200, "ok": true, "activity_code_id": 2}));

    send(&client, &topic, json!({"activity_code_id": 4, "request_id": "b", "reply_to": reply})).await;
    let v = next_on(&mut rx, reply).await;
    assert_eq!((v["status"].as_u64(), v["reason"].as_str()), (Some(409), Some("uptime_without_job")));
    assert!(v["message"].as_str().unwrap().contains("no active job"));

    send(&client, &topic, json!({"machine_state": 1, "request_id": "c", "reply_to": reply})).await;
    assert_eq!(next_on(&mut rx, reply).await["status"], 400);

    send(&client, "oee/v1/machines/9999/state", json!({"machine_state": 0, "request_id": "d", "reply_to": reply}))
        .await;
    assert_eq!(next_on(&mut rx, reply).await["status"], 404);

    // the machine's topic name reaches the same machine
    send(&client, "oee/v1/machines/lathe/state", json!({"activity_code_id": 3, "request_id": "e", "reply_to": reply}))
        .await;
    assert_eq!(next_on(&mut rx, reply).await["status"], 200);
    assert_eq!(t.current_code(m).await, 3);
    assert_eq!(&t.activities(m).await.0[1..], &[2, 3]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_payloads_are_answered_kept_and_do_not_stop_ingest() {
    let t = spawn_app().await;
    let m = t.add_machine("M").await;
    let (client, mut rx) = t.mqtt_client("device-2").await;
    let reply = "oee/v1/replies/test/device-2";
    client.subscribe(reply, QoS::AtLeastOnce).await.unwrap();
    let topic = format!("oee/v1/machines/{m}/state");

    client.publish(&topic, QoS::AtLeastOnce, false, b"\xff not json".to_vec()).await.unwrap();
    send(&client, &topic, json!({"machine_state": "sideways", "reply_to": reply})).await;
    let v = next_on(&mut rx, reply).await;
    assert_eq!(v["status"], 400);
    assert!(v["message"].as_str().unwrap().contains("machine_state"), "{v}");
    send(&client, &topic, json!({"timestamp": "2999-01-01T00:00:00Z", "machine_state": 0, "reply_to": reply})).await;
    let v = next_on(&mut rx, reply).await;
    assert_eq!(v["status"], 400);
    assert!(v["message"].as_str().unwrap().contains("future"), "{v}");

    // ingest is still working
    send(&client, &topic, json!({"machine_state": 0, "reply_to": reply})).await;
    assert_eq!(next_on(&mut rx, reply).await["status"], 200);

    let kept: Vec<(String, i16)> =
        sqlx::query_as("SELECT topic, status FROM raw_event ORDER BY received_at").fetch_all(&t.pool).await.unwrap();
    assert_eq!(kept.len(), 3, "{kept:?}");
    assert!(kept.iter().all(|(tp, st)| tp == &topic && *st == 400));
    let stats = t.app.ingest_stats.as_ref().unwrap();
    assert_eq!(stats.malformed.load(std::sync::atomic::Ordering::Relaxed), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redelivered_request_id_is_applied_once() {
    let t = spawn_app().await;
    let m = t.add_machine("M").await;
    let (client, mut rx) = t.mqtt_client("device-3").await;
    let reply = "oee/v1/replies/test/device-3";
    client.subscribe(reply, QoS::AtLeastOnce).await.unwrap();
    let body = json!({"activity_code_id": 3, "request_id": "same-id", "reply_to": reply});
    let topic = format!("oee/v1/machines/{m}/state");
    send(&client, &topic, body.clone()).await;
    let first = next_on(&mut rx, reply).await;
    send(&client, &topic, body.clone()).await;
    let second = next_on(&mut rx, reply).await;
    assert_eq!(first, second);
    assert_eq!(first["status"], 200);
    // and within one batch
    send(&client, &topic, json!({"machine_state": 0, "request_id": "twice", "reply_to": reply})).await;
    send(&client, &topic, json!({"machine_state": 0, "request_id": "twice", "reply_to": reply})).await;
    next_on(&mut rx, reply).await;
    next_on(&mut rx, reply).await;
    assert_eq!(&t.activities(m).await.0[1..], &[3, 2], "each request id made one activity");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_quick_changes_keep_each_machines_order_and_leave_no_gaps() {
    let t = spawn_app().await;
    let a = t.add_machine("A").await;
    let b = t.add_machine("B").await;
    let (client, mut rx) = t.mqtt_client("device-4").await;
    let reply = "oee/v1/replies/test/device-4";
    client.subscribe(reply, QoS::AtLeastOnce).await.unwrap();
    let n = 200;
    for i in 0..n {
        for m in [a, b] {
            let code = if (i + m) % 2 == 0 { 2 } else { 3 };
            send(&client, &format!("oee/v1/machines/{m}/state"), json!({"activity_code_id": code, "reply_to": reply}))
                .await;
        }
    }
    for _ in 0..2 * n {
        assert_eq!(next_on(&mut rx, reply).await["status"], 200);
    }
    for m in [a, b] {
        let (codes, open) = t.activities(m).await;
        let expected: Vec<i32> = (0..n).map(|i| if (i + m) % 2 == 0 { 2 } else { 3 }).collect();
        assert_eq!(&codes[1..], &expected[..], "machine {m}");
        assert_eq!(open, 1);
        let gaps: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM (SELECT end_time, lead(start_time) OVER (ORDER BY start_time, id) AS next_start \
             FROM activity WHERE machine_id = $1) s WHERE next_start IS NOT NULL AND end_time IS DISTINCT FROM next_start",
        )
        .bind(m)
        .fetch_one(&t.pool)
        .await
        .unwrap();
        assert_eq!(gaps, 0, "each activity ends where the next begins");
    }
    let batches = t.app.ingest_stats.as_ref().unwrap().batches.load(std::sync::atomic::Ordering::Relaxed);
    assert!(batches >= 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mosquitto_clients_change_state_and_read_the_retained_status() {
    let t = spawn_app().await;
    let m = t.add_machine("Press 7").await;
    let port = t.mqtt_port.to_string();
    let (watcher, mut statuses) = t.mqtt_client("watcher").await;
    let status_topic = format!("oee/v1/machines/{m}/status");
    watcher.subscribe(&status_topic, QoS::AtLeastOnce).await.unwrap();
    let out = mosquitto_tool("mosquitto_pub")
        .args(["-h", "127.0.0.1", "-p", &port, "-q", "1", "-t"])
        .arg(format!("oee/v1/machines/{m}/state"))
        .args(["-m", r#"{"activity_code_id":3,"user_id":1}"#])
        .output()
        .await
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    eventually("the change is committed", || async { t.current_code(m).await == 3 }).await;
    while next_on(&mut statuses, &status_topic).await["activity_code_id"] != 3 {}

    // a late subscriber gets the retained status, on the id topic and the topic-name topic
    for topic in [format!("oee/v1/machines/{m}/status"), "oee/v1/machines/press-7/status".to_string()] {
        let v =
            late_subscriber(t.mqtt_port, &topic, 10).await.unwrap_or_else(|| panic!("no retained status on {topic}"));
        assert_eq!(v["machine_id"], m);
        assert_eq!(v["activity_code_id"], 3);
        assert_eq!(v["activity_code"], "Closed");
        assert_eq!(v["user_id"], 1);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_status_topic_follows_http_changes() {
    let t = spawn_app().await;
    let m = t.add_machine("M").await;
    let (client, mut rx) = t.mqtt_client("watcher").await;
    let topic = format!("oee/v1/machines/{m}/status");
    client.subscribe(&topic, QoS::AtLeastOnce).await.unwrap();
    assert_eq!(t.post_state(json!({"machine_id": m, "activity_code_id": 3})).await.0, 200);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let v = next_on(&mut rx, &topic).await;
        if v["activity_code_id"] == 3 {
            assert_eq!(v["machine_state"], 3);
            break;
        }
        assert!(tokio::time::Instant::now() < deadline);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn telemetry_is_stored_per_machine_and_bad_readings_are_refused() {
    let t = spawn_app().await;
    let m = t.add_machine("Oven").await;
    let (client, mut rx) = t.mqtt_client("sensor").await;
    let reply = "oee/v1/replies/test/sensor";
    client.subscribe(reply, QoS::AtLeastOnce).await.unwrap();
    let topic = format!("oee/v1/machines/{m}/telemetry");
    send(
        &client,
        &topic,
        json!({"temperature": 180.5, "fan_rpm": 900, "timestamp": "2026-01-05T09:00:00Z", "reply_to": reply}),
    )
    .await;
    assert_eq!(next_on(&mut rx, reply).await["status"], 200);
    send(&client, &topic, json!({"temperature": "hot", "reply_to": reply})).await;
    assert_eq!(next_on(&mut rx, reply).await["status"], 400);
    send(&client, "oee/v1/machines/oven/telemetry", json!({"temperature": 181})).await;
    send(&client, "oee/v1/machines/404/telemetry", json!({"temperature": 1, "reply_to": reply})).await;
    assert_eq!(next_on(&mut rx, reply).await["status"], 404);
    eventually("both readings are stored", || async {
        let n: i64 = sqlx::query_scalar("SELECT count(*) FROM telemetry WHERE machine_id = $1 AND key = 'temperature'")
            .bind(m)
            .fetch_one(&t.pool)
            .await
            .unwrap();
        n == 2
    })
    .await;
    let (ts, temp): (chrono::DateTime<chrono::Utc>, f64) = sqlx::query_as(
        "SELECT ts, value FROM telemetry WHERE machine_id = $1 AND key = 'temperature' ORDER BY ts LIMIT 1",
    )
    .bind(m)
    .fetch_one(&t.pool)
    .await
    .unwrap();
    assert_eq!(ts.to_rfc3339(), "2026-01-05T09:00:00+00:00");
    assert_eq!(temp, 180.5);
    let fan: Vec<f64> = sqlx::query_scalar("SELECT value FROM telemetry WHERE machine_id = $1 AND key = 'fan_rpm'")
        .bind(m)
        .fetch_all(&t.pool)
        .await
        .unwrap();
    assert_eq!(fan, [900.0], "each reading of a message is a row of its own");
    assert_eq!(t.activities(m).await.0.len(), 1, "telemetry never changes the activity");
}
