//! Ingest against hostile or unlucky input: answers too large for the connection, reply topics that are not
//! plain topics, text PostgreSQL cannot store, reused request ids, device clocks ahead of the server's,
//! history edits into the future, and two workers sharing one subscription group. Through the real server,
//! its embedded broker and a real PostgreSQL.

mod common;

use std::sync::atomic::Ordering;
use std::time::Duration;

use chrono::{DateTime, Utc};
use common::*;
use oee_core::topic::{self, CommandKind};
use oee_core::verdict::{Refusal, Verdict};
use oee_server::Services;
use rumqttc::QoS;
use serde_json::{Value, json};

/// The broker and ingest only: no bridge or web clients on the broker.
const BROKER_AND_INGEST: Services = Services { broker: true, ingest: true, bridge: false, web: false };

async fn send(client: &rumqttc::AsyncClient, topic: &str, body: &Value) {
    client.publish(topic, QoS::AtLeastOnce, false, serde_json::to_vec(body).unwrap()).await.unwrap();
}

async fn count(t: &TestApp, sql: &'static str, machine: i32) -> i64 {
    sqlx::query_scalar(sql).bind(machine).fetch_one(&t.pool).await.unwrap()
}

async fn activity_count(t: &TestApp, machine: i32) -> i64 {
    count(t, "SELECT count(*) FROM activity WHERE machine_id = $1", machine).await
}

async fn raw_events(t: &TestApp) -> Vec<(String, i16, String)> {
    sqlx::query_as("SELECT topic, status, error FROM raw_event ORDER BY received_at").fetch_all(&t.pool).await.unwrap()
}

/// Waits until the client whose publishes arrive on `rx` is subscribed to `#`: publishes probes with
/// `client` until one arrives.
async fn subscribed(client: &rumqttc::AsyncClient, rx: &mut tokio::sync::mpsc::UnboundedReceiver<rumqttc::Publish>) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        client.publish("test/probe", QoS::AtLeastOnce, false, b"probe".to_vec()).await.unwrap();
        let wait = tokio::time::Instant::now() + Duration::from_millis(200);
        while let Ok(Some(p)) = tokio::time::timeout_at(wait, rx.recv()).await {
            if p.topic == "test/probe" {
                return;
            }
        }
        assert!(tokio::time::Instant::now() < deadline, "the watcher never subscribed");
    }
}

fn stats(t: &TestApp) -> &oee_ingest::Stats {
    t.app.ingest_stats.as_ref().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversized_verdict_is_dropped_and_nothing_is_applied_twice() {
    let db = seeded_db().await;
    let mut config = test_config(&db);
    // A reply topic long enough that an applied verdict fits the packet limit chosen below and a refusal's
    // does not, while every command (and ingest's subscription) fits it.
    let reply = format!("oee/v1/replies/test/{}", "r".repeat(200));
    let state_topic = |m: i32| topic::state(&m.to_string());
    let command_size = |m: i32, body: &Value| {
        oee_core::mqtt::publish_packet_size(&state_topic(m), serde_json::to_vec(body).unwrap().len())
    };
    let refused_body = |m: i32| {
        let refusal = Refusal::UptimeWithoutJob { machine_id: m, code_id: 1 };
        serde_json::to_vec(&Verdict::refused(None, &refusal)).unwrap().len()
    };
    // Machine ids of this fresh database have as many digits as 100's at most.
    let probe = 100;
    let too_big_verdict = oee_core::mqtt::publish_packet_size(&reply, refused_body(probe));
    let largest_command =
        [json!({"machine_state": 1, "reply_to": reply}), json!({"activity_code_id": 3, "reply_to": reply})]
            .iter()
            .map(|body| command_size(probe, body))
            .max()
            .unwrap();
    let applied = serde_json::to_vec(&Verdict::applied(None, Some(3))).unwrap().len();
    let subscribe: usize = 5 + CommandKind::ALL
        .into_iter()
        .filter(|k| k.changes_state())
        .map(|k| 3 + topic::command_filter(k).len())
        .sum::<usize>();
    let limit = (largest_command.max(subscribe) + too_big_verdict) / 2;
    assert!(largest_command.max(subscribe) < limit && limit < too_big_verdict, "{largest_command} {limit}");
    assert!(oee_core::mqtt::publish_packet_size(&reply, applied) < limit);
    config.mqtt.max_packet_size = limit;
    let t = spawn_app_with(config, db, BROKER_AND_INGEST).await;
    let m = t.add_machine("M").await;
    assert!(m < probe);
    let (client, mut rx) = t.mqtt_client("device-oversize").await;
    client.subscribe(&reply, QoS::AtLeastOnce).await.unwrap();
    let production = topic::production(&m.to_string());

    // None carries a request id: a redelivered one would be applied again.
    let (changes, counts, refusals) = (30, 30, 5);
    for i in 0..changes {
        send(&client, &state_topic(m), &json!({"activity_code_id": 2 + i % 2, "reply_to": reply})).await;
        send(&client, &production, &json!({"good": 1})).await;
        if i % (changes / refusals) == 0 {
            // Up without a job: refused, and its verdict does not fit.
            send(&client, &state_topic(m), &json!({"machine_state": 1, "reply_to": reply})).await;
        }
    }
    for _ in 0..changes {
        assert_eq!(next_on(&mut rx, &reply).await["status"], 200);
    }
    // The connection still works: a later command is applied and answered.
    send(&client, &state_topic(m), &json!({"activity_code_id": 3, "reply_to": reply})).await;
    assert_eq!(next_on(&mut rx, &reply).await["status"], 200);

    assert_eq!(activity_count(&t, m).await, 1 + changes + 1, "each change applied exactly once");
    let parts =
        count(&t, "SELECT COALESCE(sum(quantity_good), 0)::int8 FROM production_quantity WHERE machine_id = $1", m);
    assert_eq!(parts.await, counts);
    let kept = raw_events(&t).await;
    assert_eq!(kept.len() as i64, refusals, "{kept:?}");
    assert!(kept.iter().all(|(_, _, error)| error.contains("no active job")), "{kept:?}");
    assert_eq!(t.current_code(m).await, 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_ids_are_scoped_by_machine_and_command() {
    let t = spawn_app().await;
    let a = t.add_machine("A").await;
    let b = t.add_machine("B").await;
    let (client, mut rx) = t.mqtt_client("device-scope").await;
    client.subscribe(REPLY, QoS::AtLeastOnce).await.unwrap();
    let state = |m: i32| topic::state(&m.to_string());

    let v = command(&client, &mut rx, state(a), json!({"activity_code_id": 3, "request_id": "r1"})).await;
    assert_eq!((v["status"].as_u64(), v["activity_code_id"].as_i64()), (Some(200), Some(3)));
    // Machine B reusing machine A's id is its own request.
    let v = command(&client, &mut rx, state(b), json!({"activity_code_id": 3, "request_id": "r1"})).await;
    assert_eq!(v["status"], 200, "{v}");
    assert_eq!(t.current_code(b).await, 3);
    assert_eq!(activity_count(&t, b).await, 2);
    // So is another kind of command on machine A with the same id.
    let start = topic::command(&a.to_string(), CommandKind::JobStart);
    let v = command(&client, &mut rx, start, json!({"job_number": "J1", "request_id": "r1"})).await;
    assert_eq!(v["status"], 200, "{v}");
    assert_eq!(count(&t, "SELECT count(*) FROM job WHERE machine_id = $1", a).await, 1);
    // A redelivery on machine A's state topic is still answered, not applied.
    let before = activity_count(&t, a).await;
    let v = command(&client, &mut rx, state(a), json!({"activity_code_id": 2, "request_id": "r1"})).await;
    assert_eq!((v["status"].as_u64(), v["activity_code_id"].as_i64()), (Some(200), Some(3)), "the first answer");
    assert_eq!(activity_count(&t, a).await, before);
    // Unknown machines' refusals are judged again, not remembered.
    let v = command(&client, &mut rx, state(99_999), json!({"machine_state": 0, "request_id": "r1"})).await;
    assert_eq!(v["status"], 404);
    let remembered: i64 = sqlx::query_scalar("SELECT count(*) FROM command_log WHERE request_id = 'r1'")
        .fetch_one(&t.pool)
        .await
        .unwrap();
    assert_eq!(remembered, 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_nul_in_a_string_is_refused_and_the_rest_of_the_batch_commits() {
    let t = spawn_app().await;
    let ok1 = t.add_machine("One").await;
    let bad = t.add_machine("Two").await;
    let ok2 = t.add_machine("Three").await;
    t.start_job(bad).await;
    let (client, mut rx) = t.mqtt_client("device-nul").await;
    client.subscribe(REPLY, QoS::AtLeastOnce).await.unwrap();
    let on = |m: i32, kind| topic::command(&m.to_string(), kind);

    // Published back to back, so that they usually share a batch; each is answered on its own either way.
    let sent = [
        (on(ok1, CommandKind::State), json!({"activity_code_id": 3, "request_id": "ok1"})),
        (on(bad, CommandKind::State), json!({"activity_code_id": 3, "job_note": "jam\u{0}med", "request_id": "note"})),
        (on(bad, CommandKind::JobEnd), json!({"good": 1, "request_id": "\u{0}"})),
        (on(bad, CommandKind::Telemetry), json!({"t\u{0}": 1.0, "request_id": "key"})),
        (
            on(bad, CommandKind::HistoryJob),
            json!({"job_number": "\u{0}", "start_time": "2026-01-05T09:00:00Z",
            "end_time": "2026-01-05T10:00:00Z", "request_id": "hist"}),
        ),
        (on(ok2, CommandKind::State), json!({"activity_code_id": 3, "request_id": "ok2"})),
    ];
    for (topic, mut body) in sent.clone() {
        body["reply_to"] = json!(REPLY);
        send(&client, &topic, &body).await;
    }
    let mut verdicts = std::collections::HashMap::new();
    for _ in 0..sent.len() {
        let v = next_on(&mut rx, REPLY).await;
        verdicts.insert(v["request_id"].as_str().unwrap().to_string(), v);
    }
    assert_eq!((verdicts["ok1"]["status"].as_u64(), verdicts["ok2"]["status"].as_u64()), (Some(200), Some(200)));
    for (id, field) in [("note", "job_note"), ("\u{0}", "request_id"), ("key", "t\\0"), ("hist", "job_number")] {
        let v = &verdicts[id];
        assert_eq!(v["status"], 400, "{v}");
        assert!(v["message"].as_str().unwrap().contains(&format!("`{field}`")), "{v} should name {field}");
    }
    assert_eq!((t.current_code(ok1).await, t.current_code(ok2).await), (3, 3));
    assert_eq!(activity_count(&t, bad).await, 1, "nothing of the refused commands was applied");
    assert_eq!(count(&t, "SELECT count(*) FROM job WHERE machine_id = $1 AND end_time IS NULL", bad).await, 1);
    assert_eq!(raw_events(&t).await.len(), 4);

    // Over HTTP, the same refusal is a 400 (not a 503 "try again").
    let r = t
        .client
        .post(format!("{}/api/v1/machines/{ok1}/job/start", t.http))
        .json(&json!({"job_number": "J\u{0}1"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 400);
    assert!(r.text().await.unwrap().contains("job_number"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_command_the_database_refuses_is_refused_alone_and_its_batch_commits() {
    let t = spawn_app().await;
    // A write PostgreSQL refuses for one command only, whatever ingest checked before.
    sqlx::raw_sql(
        "CREATE FUNCTION refuse_poison() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN \
           IF NEW.job_number = 'POISON' THEN RAISE EXCEPTION 'poisoned job' USING ERRCODE = '22023'; END IF; \
           RETURN NEW; END $$; \
         CREATE TRIGGER refuse_poison BEFORE INSERT ON job FOR EACH ROW EXECUTE FUNCTION refuse_poison();",
    )
    .execute(&t.pool)
    .await
    .unwrap();
    let machines = [t.add_machine("A").await, t.add_machine("B").await, t.add_machine("C").await];
    let poisoned = t.add_machine("P").await;
    let (client, mut rx) = t.mqtt_client("device-poison").await;
    client.subscribe(REPLY, QoS::AtLeastOnce).await.unwrap();
    let start = |m: i32| topic::command(&m.to_string(), CommandKind::JobStart);
    send(&client, &start(machines[0]), &json!({"job_number": "J", "request_id": "a", "reply_to": REPLY})).await;
    send(&client, &start(poisoned), &json!({"job_number": "POISON", "request_id": "p", "reply_to": REPLY})).await;
    for (m, id) in machines[1..].iter().zip(["b", "c"]) {
        send(&client, &start(*m), &json!({"job_number": "J", "request_id": id, "reply_to": REPLY})).await;
    }
    let mut verdicts = std::collections::HashMap::new();
    for _ in 0..4 {
        let v = next_on(&mut rx, REPLY).await;
        verdicts.insert(v["request_id"].as_str().unwrap().to_string(), v);
    }
    for id in ["a", "b", "c"] {
        assert_eq!(verdicts[id]["status"], 200, "{}", verdicts[id]);
    }
    let v = &verdicts["p"];
    assert_eq!((v["status"].as_u64(), v["reason"].as_str()), (Some(400), Some("unstorable")), "{v}");
    for m in machines {
        assert_eq!(count(&t, "SELECT count(*) FROM job WHERE machine_id = $1", m).await, 1);
    }
    assert_eq!(activity_count(&t, poisoned).await, 1, "nothing of the refused command was applied");
    let kept = raw_events(&t).await;
    assert_eq!(kept.len(), 1, "{kept:?}");
    assert!(kept[0].2.contains("poisoned job"), "{kept:?}");
    // Ingest goes on.
    let v = command(&client, &mut rx, start(poisoned), json!({"job_number": "J2"})).await;
    assert_eq!(v["status"], 200, "{v}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_timestamp_ahead_is_clamped_and_the_machine_stays_usable() {
    let t = spawn_app().await;
    let m = t.add_machine("M").await;
    let (client, mut rx) = t.mqtt_client("device-clock").await;
    client.subscribe(REPLY, QoS::AtLeastOnce).await.unwrap();
    let on = |kind| topic::command(&m.to_string(), kind);
    let since = |t: &TestApp| {
        let pool = t.pool.clone();
        async move {
            sqlx::query_scalar::<_, DateTime<Utc>>("SELECT current_since FROM machine WHERE id = $1")
                .bind(m)
                .fetch_one(&pool)
                .await
                .unwrap()
        }
    };

    // Four minutes fast (allowed skew: five): stamped with the time it was received.
    let ahead = Utc::now() + chrono::Duration::minutes(4);
    let v = command(&client, &mut rx, on(CommandKind::State), json!({"activity_code_id": 3, "timestamp": ahead})).await;
    assert_eq!(v["status"], 200, "{v}");
    let answered = Utc::now();
    assert!(since(&t).await <= answered, "the current activity does not start in the future");
    // The machine takes the next changes at once, stamped or not.
    let v = command(&client, &mut rx, on(CommandKind::State), json!({"activity_code_id": 2})).await;
    assert_eq!(v["status"], 200, "{v}");
    let ahead = Utc::now() + chrono::Duration::minutes(4);
    let v = command(&client, &mut rx, on(CommandKind::JobStart), json!({"job_number": "J", "timestamp": ahead})).await;
    assert_eq!(v["status"], 200, "{v}");
    let job_start: DateTime<Utc> = sqlx::query_scalar("SELECT start_time FROM job WHERE machine_id = $1")
        .bind(m)
        .fetch_one(&t.pool)
        .await
        .unwrap();
    assert!(job_start <= Utc::now());
    let v = command(&client, &mut rx, on(CommandKind::JobEnd), json!({"good": 3})).await;
    assert_eq!(v["status"], 200, "{v}");
    // Beyond the allowed skew: refused.
    let far = Utc::now() + chrono::Duration::minutes(10);
    let v = command(&client, &mut rx, on(CommandKind::State), json!({"activity_code_id": 3, "timestamp": far})).await;
    assert_eq!((v["status"].as_u64(), v["reason"].as_str()), (Some(400), Some("in_future")), "{v}");

    // Without a timestamp, a change happens when ingest received it, not when it was applied: hold the
    // machine's row so the command waits between the two.
    let mut hold = t.pool.begin().await.unwrap();
    sqlx::query("SELECT id FROM machine WHERE id = $1 FOR UPDATE").bind(m).execute(&mut *hold).await.unwrap();
    let received_before = stats(&t).received.load(Ordering::Relaxed);
    let sent_at = Utc::now();
    let mut body = json!({"activity_code_id": 3, "reply_to": REPLY});
    send(&client, &on(CommandKind::State), &body).await;
    eventually("ingest received the command", || async {
        stats(&t).received.load(Ordering::Relaxed) > received_before
    })
    .await;
    let received_by = Utc::now();
    hold.commit().await.unwrap();
    assert_eq!(next_on(&mut rx, REPLY).await["status"], 200);
    let at = since(&t).await;
    assert!(sent_at <= at && at <= received_by, "{sent_at} <= {at} <= {received_by}");
    body["activity_code_id"] = json!(2);
    assert_eq!(command(&client, &mut rx, on(CommandKind::State), body).await["status"], 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_history_edit_into_the_future_is_refused() {
    let t = spawn_app().await;
    let m = t.add_machine("M").await;
    let now = Utc::now();
    let ago = |min: i64| now - chrono::Duration::minutes(min);
    let ahead = now + chrono::Duration::minutes(2);
    t.backdate_current_activity(m, ago(120)).await;
    let (client, mut rx) = t.mqtt_client("device-history").await;
    client.subscribe(REPLY, QoS::AtLeastOnce).await.unwrap();
    let on = |kind| topic::command(&m.to_string(), kind);
    // Something to change: a past job, and a production record of no job.
    let v = command(
        &client,
        &mut rx,
        on(CommandKind::HistoryJob),
        json!({"job_number": "P", "start_time": ago(100), "end_time": ago(90), "good": 5}),
    )
    .await;
    assert_eq!(v["status"], 200, "{v}");
    let job = v["id"].as_i64().unwrap();
    let v = command(
        &client,
        &mut rx,
        on(CommandKind::HistoryProduction),
        json!({"start_time": ago(20), "end_time": ago(10), "good": 2}),
    )
    .await;
    assert_eq!(v["status"], 200, "{v}");
    let record = v["id"].as_i64().unwrap();
    let current: i64 = sqlx::query_scalar("SELECT id FROM activity WHERE machine_id = $1 AND end_time IS NULL")
        .bind(m)
        .fetch_one(&t.pool)
        .await
        .unwrap();
    let before = t.activities(m).await;

    let edits = [
        // an activity ending in the future would move the current activity there
        (CommandKind::HistoryActivity, json!({"activity_code_id": 3, "start_time": ago(10), "end_time": ahead})),
        (CommandKind::HistoryActivity, json!({"activity_id": current, "start_time": ahead})),
        (CommandKind::HistoryJob, json!({"job_number": "F", "start_time": ago(5), "end_time": ahead})),
        (CommandKind::HistoryJob, json!({"job_id": job, "end_time": ahead})),
        (CommandKind::HistoryProduction, json!({"start_time": ago(5), "end_time": ahead, "good": 1})),
        (CommandKind::HistoryProduction, json!({"record_id": record, "end_time": ahead})),
    ];
    for (kind, body) in edits {
        let v = command(&client, &mut rx, on(kind), body.clone()).await;
        assert_eq!((v["status"].as_u64(), v["reason"].as_str()), (Some(400), Some("in_future")), "{body}: {v}");
    }
    assert_eq!(t.activities(m).await, before);
    assert_eq!(count(&t, "SELECT count(*) FROM job WHERE machine_id = $1", m).await, 1);
    // The machine is not locked in the future: a live change is applied at once.
    let v = command(&client, &mut rx, on(CommandKind::State), json!({"activity_code_id": 3})).await;
    assert_eq!(v["status"], 200, "{v}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reply_to_that_is_not_a_plain_topic_is_refused() {
    let t = spawn_app().await;
    let m = t.add_machine("M").await;
    let (client, mut rx) = t.mqtt_client("device-reply").await;
    client.subscribe(REPLY, QoS::AtLeastOnce).await.unwrap();
    let state = topic::state(&m.to_string());
    // Longer than an MQTT topic can be (written modulo 65,536 it would be another packet); sent with a
    // client whose packets may be that large, before the watcher below (whose may not) subscribes.
    let huge = json!({"activity_code_id": 3, "reply_to": "y".repeat(70_000)}).to_string();
    let port = t.mqtt_port.to_string();
    let out = mosquitto_tool("mosquitto_pub")
        .args(["-h", "127.0.0.1", "-p", &port, "-q", "1", "-t", &state, "-m", &huge])
        .output()
        .await
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    eventually("the command with a huge reply_to is refused and kept", || async { raw_events(&t).await.len() == 1 })
        .await;
    // Everything the broker passes on, to see that none of the bad topics gets an answer.
    let (watcher, mut everything) = t.mqtt_client("watcher-reply").await;
    watcher.subscribe("#", QoS::AtLeastOnce).await.unwrap();
    subscribed(&client, &mut everything).await;
    let bad = [
        "é/first-character-not-ascii".to_string(),
        "a/+/b".to_string(),
        "a/#".to_string(),
        String::new(),
        "a\u{0}b".to_string(),
        "x".repeat(300),
    ];
    for reply_to in &bad {
        send(&client, &state, &json!({"activity_code_id": 3, "reply_to": reply_to})).await;
    }
    let bad_count = bad.len() + 1;
    // The broker and ingest are still working.
    let v = command(&client, &mut rx, state.clone(), json!({"activity_code_id": 2})).await;
    assert_eq!(v["status"], 200, "{v}");
    assert_eq!(t.activities(m).await.0.len(), 2, "none of the refused commands was applied");
    let kept = raw_events(&t).await;
    assert_eq!(kept.len(), bad_count, "{kept:?}");
    for (topic, status, error) in &kept {
        assert_eq!((topic.as_str(), *status), (state.as_str(), 400));
        assert!(error.contains("reply_to") || error.contains("NUL"), "{error}");
        assert!(error.chars().count() < 600, "the reason quotes only the start of the value");
    }
    // No verdict went anywhere but the good reply topic: ingest publishes in order, so any answer to the
    // refused commands would reach the watcher before the last verdict does.
    loop {
        let p = tokio::time::timeout(Duration::from_secs(10), everything.recv()).await.unwrap().unwrap();
        let is_verdict = serde_json::from_slice::<Value>(&p.payload).is_ok_and(|v| v.get("ok").is_some());
        assert!(!is_verdict || p.topic == REPLY, "a verdict went to {:?}", p.topic);
        if is_verdict {
            break;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_workers_in_one_shared_group_lose_nothing() {
    let db = seeded_db().await;
    let mut config = test_config(&db);
    config.ingest.shared_group = "workers".into();
    config.ingest.client_id = "worker-1".into();
    let t = spawn_app_with(config.clone(), db, BROKER_AND_INGEST).await;
    let second_cfg = oee_core::config::IngestConfig { client_id: "worker-2".into(), ..config.ingest.clone() };
    // The second worker logs in as the server, as `serve --only ingest` on another host does.
    let secret = oee_core::store::device::server_secret(&t.pool).await.unwrap();
    let mut mqtt = config.mqtt.clone();
    mqtt.username = oee_core::access::SERVER_USER.into();
    mqtt.password = secret.clone();
    let seal = std::sync::Arc::new(oee_core::access::ServerSeal::new(&secret));
    let maintenance = oee_ingest::maintenance::Settings::of(&config);
    let second = oee_ingest::start(
        t.pool.clone(),
        &mqtt,
        &second_cfg,
        &config.scheduler,
        &maintenance,
        chrono_tz::Tz::UTC,
        seal,
    );
    assert!(second.ready(Duration::from_secs(10)).await, "the second worker subscribed");

    let n = 40;
    let mut machines = Vec::new();
    for i in 0..n {
        machines.push(t.add_machine(&format!("M{i}")).await);
    }
    let (client, mut rx) = t.mqtt_client("device-workers").await;
    client.subscribe(REPLY, QoS::AtLeastOnce).await.unwrap();
    // A new machine starts Down in shift and Closed out of it (the seeded 9-5 pattern): each gets the other.
    let mut changes = Vec::new();
    for &m in &machines {
        let first = t.activities(m).await.0[0];
        let to = if first == 3 { 2 } else { 3 };
        changes.push((m, first, to));
        send(&client, &topic::state(&m.to_string()), &json!({"activity_code_id": to, "reply_to": REPLY})).await;
        send(&client, &topic::telemetry(&m.to_string()), &json!({"temperature": 20.5, "reply_to": REPLY})).await;
    }
    for _ in 0..2 * n {
        assert_eq!(next_on(&mut rx, REPLY).await["status"], 200);
    }
    for &(m, first, to) in &changes {
        assert_eq!(t.activities(m).await.0, [first, to], "machine {m}: one change, stored once");
        assert_eq!(count(&t, "SELECT count(*) FROM telemetry WHERE machine_id = $1", m).await, 1, "machine {m}");
    }
    let first = stats(&t).applied.load(Ordering::Relaxed);
    let other = second.stats.applied.load(Ordering::Relaxed);
    assert_eq!(first + other, 2 * n as u64, "every command applied by one worker");
    assert!(first > 0 && other > 0, "both workers took a share ({first} and {other})");
    second.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn statuses_arriving_while_commands_commit_keep_every_command_delivered_once() {
    // Ingest hears its own retained statuses while later batches still wait for their commit. The broker takes
    // acknowledgements only in the order it delivered: one out of order ends ingest's connection, and the
    // broker delivers the unacknowledged commands again, so that those without a request id are applied twice.
    let db = seeded_db().await;
    let t = spawn_app_with(test_config(&db), db, BROKER_AND_INGEST).await;
    let machines = [t.add_machine("A").await, t.add_machine("B").await, t.add_machine("C").await];
    let (client, mut rx) = t.mqtt_client("device-statuses").await;
    client.subscribe(REPLY, QoS::AtLeastOnce).await.unwrap();
    let rounds = 150;
    for i in 0..rounds {
        for &m in &machines {
            // Each change commits and publishes the machine's status; none carries a request id.
            send(&client, &topic::state(&m.to_string()), &json!({"activity_code_id": 2 + i % 2, "reply_to": REPLY}))
                .await;
            send(&client, &topic::production(&m.to_string()), &json!({"good": 1})).await;
        }
    }
    for _ in 0..rounds * machines.len() {
        assert_eq!(next_on(&mut rx, REPLY).await["status"], 200);
    }
    let last = machines[0];
    send(&client, &topic::state(&last.to_string()), &json!({"activity_code_id": 3, "reply_to": REPLY})).await;
    assert_eq!(next_on(&mut rx, REPLY).await["status"], 200);

    let sent = (2 * rounds * machines.len() + 1) as u64;
    assert_eq!(stats(&t).received.load(Ordering::Relaxed), sent, "every command delivered to ingest once");
    let parts = "SELECT COALESCE(sum(quantity_good), 0)::int8 FROM production_quantity WHERE machine_id = $1";
    for &m in &machines {
        assert_eq!(count(&t, parts, m).await, rounds as i64, "machine {m}: each count applied once");
        let changes = rounds as i64 + i64::from(m == last);
        assert_eq!(activity_count(&t, m).await, 1 + changes, "machine {m}: each change applied once");
    }
}
