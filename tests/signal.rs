//! "No signal": a machine whose device falls silent longer than `ingest.no_signal_after_s` says so in its
//! retained status, and says "ok" again once it is heard from.

mod common;

use common::*;
use rumqttc::QoS;
use serde_json::json;

/// The next status on `topic` whose `signal` is `want`.
async fn status_with_signal(
    rx: &mut tokio::sync::mpsc::UnboundedReceiver<rumqttc::Publish>,
    topic: &str,
    want: &str,
) -> serde_json::Value {
    loop {
        let s = next_on(rx, topic).await;
        if s["signal"] == want {
            return s;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_machine_shows_no_signal_until_it_is_heard_again() {
    let db = seeded_db().await;
    let mut config = test_config(&db);
    config.ingest.no_signal_after_s = 2;
    let t = spawn_app_with(config, db, oee_server::Services::ALL).await;
    let m = t.add_machine("Quiet press").await;
    let (client, mut rx) = t.mqtt_client("watcher").await;
    let status_topic = format!("oee/v1/machines/{m}/status");
    client.subscribe(&status_topic, QoS::AtLeastOnce).await.unwrap();

    let lost = status_with_signal(&mut rx, &status_topic, "no_signal").await;
    let since: chrono::DateTime<chrono::Utc> = lost["since"].as_str().unwrap().parse().unwrap();
    let last: chrono::DateTime<chrono::Utc> = lost["last_signal_at"].as_str().unwrap().parse().unwrap();
    assert_eq!(last, since, "only its first activity was ever heard");
    assert!(chrono::Utc::now() - last > chrono::Duration::seconds(2));

    // a reading is a sign of life, though it changes no state
    let reading = json!({"temperature": 61.5});
    client
        .publish(format!("oee/v1/machines/{m}/telemetry"), QoS::AtLeastOnce, false, reading.to_string())
        .await
        .unwrap();
    let back = status_with_signal(&mut rx, &status_topic, "ok").await;
    let heard: chrono::DateTime<chrono::Utc> = back["last_signal_at"].as_str().unwrap().parse().unwrap();
    assert!(heard > last, "{back}");
    assert_eq!(back["activity_code_id"], lost["activity_code_id"], "the state itself did not change");
}
