//! The embedded broker survives whatever a client sends, lets any conforming MQTT 3.1.1 client in (Keep
//! Alive 0 included), repairs itself when its core dies, and lets in only who belongs.

mod common;

use std::time::Duration;

use bytes::BytesMut;
use common::*;
use oee_server::Services;
use rumqttc::mqttbytes::QoS;
use rumqttc::mqttbytes::v4::{Connect, ConnectReturnCode, Packet, Publish, Subscribe, SubscribeReasonCode};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// A raw MQTT connection, to send what well-behaved client libraries never would.
struct Raw {
    stream: TcpStream,
    buf: BytesMut,
}

impl Raw {
    async fn connect(port: u16) -> Raw {
        Raw { stream: TcpStream::connect(("127.0.0.1", port)).await.expect("TCP connect"), buf: BytesMut::new() }
    }

    async fn send(&mut self, p: Packet) {
        let mut b = BytesMut::new();
        p.write(&mut b, usize::MAX).unwrap();
        self.stream.write_all(&b).await.unwrap();
    }

    /// The next packet, or `None` when the server closed the connection (or sent nothing in 30 s).
    async fn recv(&mut self) -> Option<Packet> {
        loop {
            if !self.buf.is_empty() {
                match Packet::read(&mut self.buf, 1 << 20) {
                    Ok(p) => return Some(p),
                    Err(rumqttc::mqttbytes::Error::InsufficientBytes(_)) => {}
                    Err(e) => panic!("unreadable packet from the broker: {e}"),
                }
            }
            match tokio::time::timeout(Duration::from_secs(30), self.stream.read_buf(&mut self.buf)).await {
                Ok(Ok(0)) | Ok(Err(_)) | Err(_) => return None,
                Ok(Ok(_)) => {}
            }
        }
    }

    /// Connects with `connect` and returns the CONNACK's code.
    async fn handshake(&mut self, connect: Connect) -> ConnectReturnCode {
        self.send(Packet::Connect(connect)).await;
        match self.recv().await {
            Some(Packet::ConnAck(a)) => a.code,
            other => panic!("expected CONNACK, got {other:?}"),
        }
    }
}

fn connect_packet(id: &str, keep_alive: u16) -> Connect {
    let mut c = Connect::new(id);
    c.keep_alive = keep_alive;
    c
}

/// A state change through HTTP succeeds (the whole path: bridge, broker, ingest).
async fn state_change_works(t: &TestApp, m: i32, code: i32) {
    let (status, body, _) = t.post_state(serde_json::json!({"machine_id": m, "activity_code_id": code})).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(t.current_code(m).await, code);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn topics_and_filters_that_crashed_the_broker_are_refused_and_it_stays_up() {
    let t = spawn_app().await;
    let m = t.add_machine("Press 1").await;
    let port = t.mqtt_port.to_string();
    // The reproducer: one anonymous QoS 1 publish to a topic whose first character is not ASCII.
    for topic in ["é", "é/x", "ü"] {
        let out = mosquitto_tool("mosquitto_pub")
            .args(["-h", "127.0.0.1", "-p", &port, "-q", "1", "-t", topic, "-m", "x"])
            .output()
            .await
            .unwrap();
        assert!(
            out.status.success(),
            "the refused publish is still acknowledged: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    // The same as a subscription, and as a will's topic.
    let mut raw = Raw::connect(t.mqtt_port).await;
    assert_eq!(raw.handshake(connect_packet("sub-1", 30)).await, ConnectReturnCode::Success);
    raw.send(Packet::Subscribe(Subscribe::new_many([
        rumqttc::SubscribeFilter::new("é/#".into(), QoS::AtLeastOnce),
        rumqttc::SubscribeFilter::new("ok/+".into(), QoS::AtLeastOnce),
    ])))
    .await;
    match raw.recv().await {
        Some(Packet::SubAck(a)) => assert_eq!(
            a.return_codes,
            vec![SubscribeReasonCode::Failure, SubscribeReasonCode::Success(QoS::AtLeastOnce)]
        ),
        other => panic!("expected SUBACK, got {other:?}"),
    }
    let mut will = Raw::connect(t.mqtt_port).await;
    let mut c = connect_packet("will-1", 30);
    c.last_will = Some(rumqttc::LastWill::new("ä", "bye", QoS::AtMostOnce, false));
    assert_eq!(will.handshake(c).await, ConnectReturnCode::NotAuthorized);

    let broker = t.app.broker().unwrap();
    assert_eq!(broker.health.restarts.load(std::sync::atomic::Ordering::Relaxed), 0, "the core never died");
    assert!(broker.stats.publishes_refused.load(std::sync::atomic::Ordering::Relaxed) >= 3);
    state_change_works(&t, m, 3).await;
    let health = t.client.get(format!("{}/health", t.http)).send().await.unwrap();
    assert_eq!(health.status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keep_alive_zero_connects_and_a_second_connect_closes_the_connection() {
    let t = spawn_app().await;
    let mut raw = Raw::connect(t.mqtt_port).await;
    assert_eq!(raw.handshake(connect_packet("ka0", 0)).await, ConnectReturnCode::Success);
    raw.send(Packet::Subscribe(Subscribe::new("ka0/echo", QoS::AtLeastOnce))).await;
    assert!(matches!(raw.recv().await, Some(Packet::SubAck(_))));
    let mut p = Publish::new("ka0/echo", QoS::AtLeastOnce, "hello");
    p.pkid = 7;
    raw.send(Packet::Publish(p)).await;
    // Its own PUBACK and the message back, in either order.
    let mut got_ack = false;
    let mut got_message = false;
    while !(got_ack && got_message) {
        match raw.recv().await {
            Some(Packet::PubAck(a)) if a.pkid == 7 => got_ack = true,
            Some(Packet::Publish(m)) if m.payload.as_ref() == b"hello" => got_message = true,
            other => panic!("unexpected {other:?}"),
        }
    }
    raw.send(Packet::PingReq).await;
    assert_eq!(raw.recv().await, Some(Packet::PingResp));
    // A second CONNECT is a protocol violation (MQTT 3.1.1 §3.1.0-2): the connection closes.
    raw.send(Packet::Connect(connect_packet("ka0", 0))).await;
    assert_eq!(raw.recv().await, None, "the connection is closed");
    // Bytes that are not MQTT at all close it too, and the broker serves the next client.
    let mut junk = TcpStream::connect(("127.0.0.1", t.mqtt_port)).await.unwrap();
    junk.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").await.unwrap();
    let mut sink = Vec::new();
    let closed = tokio::time::timeout(Duration::from_secs(15), junk.read_to_end(&mut sink)).await;
    assert!(closed.is_ok(), "a connection that does not speak MQTT is closed");
    let mut next = Raw::connect(t.mqtt_port).await;
    assert_eq!(next.handshake(connect_packet("after-junk", 5)).await, ConnectReturnCode::Success);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_of_the_broker_core_is_repaired_and_the_statuses_come_back() {
    let t = spawn_app().await;
    let m = t.add_machine("Press 2").await;
    state_change_works(&t, m, 2).await;
    let broker = t.app.broker().unwrap();
    let (user, password) = broker.core_login();
    // Behind the guard, the core still has the defect: crash it the way the reproducer did.
    let mut raw = Raw::connect(broker.core.port()).await;
    let mut c = connect_packet("crasher", 30);
    c.set_login(user, password);
    assert_eq!(raw.handshake(c).await, ConnectReturnCode::Success);
    raw.send(Packet::Publish(Publish::new("é", QoS::AtMostOnce, "x"))).await;
    eventually("the supervisor restarted the core", || async {
        broker.health.restarts.load(std::sync::atomic::Ordering::Relaxed) == 1
    })
    .await;
    // Ingest and the bridge reconnect by themselves; a change goes through end to end again.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let (status, _, _) = t.post_state(serde_json::json!({"machine_id": m, "activity_code_id": 3})).await;
        if status == 200 {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "changes are applied again after the restart");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(t.current_code(m).await, 3);
    // The retained status, lost with the old core, is there again for a late subscriber (within a status
    // round, 100 ms, of the change).
    let topic = format!("oee/v1/machines/{m}/status");
    eventually("a late subscriber gets the retained status after the restart", || async {
        late_subscriber(t.mqtt_port, &topic, 5).await.is_some_and(|v| v["activity_code_id"] == 3)
    })
    .await;
    // And the health page says every part is back.
    eventually("/health is ok again", || async {
        t.client.get(format!("{}/health", t.http)).send().await.is_ok_and(|r| r.status() == 200)
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paho_interoperability_suite_passes_and_leaves_the_statuses_alone() {
    let t = spawn_app().await;
    let m = t.add_machine("Press 3").await;
    state_change_works(&t, m, 2).await;
    let runner = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/mqtt-interop/run_suite.py");
    assert!(runner.is_file(), "Paho's suite is expected beside the repository at {}", runner.display());
    // Every test as published, except the one that needs a broker configured to refuse `test/nosubscribe`.
    let tests = [
        "testBasic",
        "test_retained_messages",
        "test_zero_length_clientid",
        "test_offline_message_queueing",
        "test_overlapping_subscriptions",
        "test_keepalive",
        "test_redelivery_on_reconnect",
        "test_dollar_topics",
        "test_unsubscribe",
    ];
    let out = tokio::process::Command::new("python3")
        .arg(&runner)
        .arg("127.0.0.1")
        .arg(t.mqtt_port.to_string())
        .args(tests.iter().map(|n| format!("Test.{n}")))
        .kill_on_drop(true)
        .output()
        .await
        .expect("run python3");
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "Paho's suite failed:\n{text}");
    assert!(text.contains(&format!("Ran {} tests", tests.len())), "{text}");
    // Its clean-up deleted every retained message it could: the machine statuses are not among them.
    let v = late_subscriber(t.mqtt_port, &format!("oee/v1/machines/{m}/status"), 10).await;
    let v = v.expect("the retained status survived the suite");
    assert_eq!(v["machine_id"], m);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_who_belongs_gets_in_and_devices_act_only_for_their_machines() {
    let db = seeded_db().await;
    let mut config = test_config(&db);
    config.broker.allow_anonymous = false;
    let t = spawn_app_with(config, db, Services::ALL).await;
    let own = t.add_machine("Own").await;
    let other = t.add_machine("Other").await;
    let device = oee_core::store::device::add(&t.pool, "plc-7", &[own]).await.unwrap();

    // Anonymous, wrong password, revoked later: refused at CONNECT.
    let mut anon = Raw::connect(t.mqtt_port).await;
    assert_eq!(anon.handshake(connect_packet("anon", 30)).await, ConnectReturnCode::NotAuthorized);
    let mut wrong = Raw::connect(t.mqtt_port).await;
    let mut c = connect_packet("plc-7", 30);
    c.set_login("plc-7", "not-the-password");
    assert_eq!(wrong.handshake(c).await, ConnectReturnCode::BadUserNamePassword);
    // A device may not take the server's client ids, nor log in as the server.
    let mut thief = Raw::connect(t.mqtt_port).await;
    let mut c = connect_packet("oee-ingest", 30);
    c.set_login("plc-7", &device.mqtt_password);
    assert_eq!(thief.handshake(c).await, ConnectReturnCode::NotAuthorized);
    let mut fake = Raw::connect(t.mqtt_port).await;
    let mut c = connect_packet("x", 30);
    c.set_login(oee_core::access::SERVER_USER, "guess");
    assert_eq!(fake.handshake(c).await, ConnectReturnCode::BadUserNamePassword);

    // The device's own machine: its command is applied.
    let mut dev = Raw::connect(t.mqtt_port).await;
    let mut c = connect_packet("plc-7", 30);
    c.set_login("plc-7", &device.mqtt_password);
    assert_eq!(dev.handshake(c).await, ConnectReturnCode::Success);
    dev.send(Packet::Subscribe(Subscribe::new_many([
        rumqttc::SubscribeFilter::new(format!("oee/v1/machines/{own}/status"), QoS::AtLeastOnce),
        rumqttc::SubscribeFilter::new("#".into(), QoS::AtLeastOnce),
        rumqttc::SubscribeFilter::new(format!("oee/v1/machines/{other}/status"), QoS::AtLeastOnce),
        rumqttc::SubscribeFilter::new("oee/v1/replies/plc-7/#".into(), QoS::AtLeastOnce),
    ])))
    .await;
    let granted = loop {
        match dev.recv().await {
            Some(Packet::SubAck(a)) => break a.return_codes,
            Some(Packet::Publish(_)) => {}
            other => panic!("expected SUBACK, got {other:?}"),
        }
    };
    let ok = SubscribeReasonCode::Success(QoS::AtLeastOnce);
    assert_eq!(granted, vec![ok, SubscribeReasonCode::Failure, SubscribeReasonCode::Failure, ok]);
    let publish = |topic: String, payload: serde_json::Value, pkid: u16| {
        let mut p = Publish::new(topic, QoS::AtLeastOnce, payload.to_string());
        p.pkid = pkid;
        Packet::Publish(p)
    };
    dev.send(publish(format!("oee/v1/machines/{own}/state"), serde_json::json!({"activity_code_id": 3}), 1)).await;
    eventually("the device's own machine changed", || async { t.current_code(own).await == 3 }).await;
    // Another machine's command, a status, a session command and a reply: acknowledged and dropped.
    let before_other = t.current_code(other).await;
    dev.send(publish(format!("oee/v1/machines/{other}/state"), serde_json::json!({"activity_code_id": 3}), 2)).await;
    dev.send(publish(format!("oee/v1/machines/{own}/status"), serde_json::json!({"activity_code_id": 1}), 3)).await;
    dev.send(publish(
        format!("oee/v1/machines/{own}/session"),
        serde_json::json!({"action": "login", "input_device_id": 1, "user_id": 1}),
        4,
    ))
    .await;
    dev.send(publish("oee/v1/replies/bridge/x".into(), serde_json::json!({"status": 200}), 5)).await;
    // A marker after them, on the device's own machine: once it is applied, the refused ones had their turn.
    dev.send(publish(format!("oee/v1/machines/{own}/state"), serde_json::json!({"activity_code_id": 2}), 6)).await;
    eventually("the marker is applied", || async { t.current_code(own).await == 2 }).await;
    assert_eq!(t.current_code(other).await, before_other, "another machine's command was not applied");
    let sessions: i64 = sqlx::query_scalar("SELECT count(*) FROM user_session").fetch_one(&t.pool).await.unwrap();
    assert_eq!(sessions, 0, "no session was opened");
    let refused = t.app.broker().unwrap().stats.publishes_refused.load(std::sync::atomic::Ordering::Relaxed);
    assert_eq!(refused, 4);

    // Revoked: its next connection is refused.
    oee_core::store::device::revoke(&t.pool, "plc-7").await.unwrap();
    let mut again = Raw::connect(t.mqtt_port).await;
    let mut c = connect_packet("plc-7b", 30);
    c.set_login("plc-7", &device.mqtt_password);
    assert_eq!(again.handshake(c).await, ConnectReturnCode::BadUserNamePassword);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_idle_sockets_neither_block_mqtt_nor_stay_open() {
    let db = seeded_db().await;
    let mut config = test_config(&db);
    config.broker.connection_timeout_ms = 2_000;
    let t = spawn_app_with(config, db, Services::ALL).await;
    let m = t.add_machine("Press 4").await;
    let mut idle = Vec::new();
    for _ in 0..1000 {
        idle.push(TcpStream::connect(("127.0.0.1", t.mqtt_port)).await.expect("open an idle socket"));
    }
    // A device still connects and its command is applied.
    let mut dev = Raw::connect(t.mqtt_port).await;
    assert_eq!(dev.handshake(connect_packet("busy-day", 30)).await, ConnectReturnCode::Success);
    let mut p = Publish::new(format!("oee/v1/machines/{m}/state"), QoS::AtLeastOnce, r#"{"activity_code_id":3}"#);
    p.pkid = 1;
    dev.send(Packet::Publish(p)).await;
    eventually("the device's change is applied", || async { t.current_code(m).await == 3 }).await;
    // The sockets that never sent CONNECT are closed once broker.connection_timeout_ms has passed.
    let mut closed = 0;
    for mut s in idle {
        let mut byte = [0u8; 1];
        if let Ok(Ok(0)) = tokio::time::timeout(Duration::from_secs(20), s.read(&mut byte)).await {
            closed += 1;
        }
    }
    assert_eq!(closed, 1000, "every idle socket was closed by the broker");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_holds_at_most_32_filters() {
    let t = spawn_app().await;
    let mut raw = Raw::connect(t.mqtt_port).await;
    assert_eq!(raw.handshake(connect_packet("greedy", 30)).await, ConnectReturnCode::Success);
    let filters: Vec<rumqttc::SubscribeFilter> =
        (0..40).map(|i| rumqttc::SubscribeFilter::new(format!("plant/{i}/#"), QoS::AtMostOnce)).collect();
    raw.send(Packet::Subscribe(Subscribe::new_many(filters))).await;
    let codes = match raw.recv().await {
        Some(Packet::SubAck(a)) => a.return_codes,
        other => panic!("expected SUBACK, got {other:?}"),
    };
    let granted = codes.iter().filter(|c| **c != SubscribeReasonCode::Failure).count();
    assert_eq!((codes.len(), granted), (40, 32));
    // Giving one back makes room for another.
    raw.send(Packet::Unsubscribe(rumqttc::Unsubscribe::new("plant/0/#"))).await;
    assert!(matches!(raw.recv().await, Some(Packet::UnsubAck(_))));
    raw.send(Packet::Subscribe(Subscribe::new("plant/new/#", QoS::AtMostOnce))).await;
    match raw.recv().await {
        Some(Packet::SubAck(a)) => assert_eq!(a.return_codes, vec![SubscribeReasonCode::Success(QoS::AtMostOnce)]),
        other => panic!("expected SUBACK, got {other:?}"),
    }
}

/// rumqttd's router panicked, taking every client's routing with it, when a persistent session that was the
/// last member of a shared group ended with a delivery unacknowledged: it looked up the group it had just
/// removed. Members in clean sessions are let in and may end so; persistent ones are refused the group.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shared_group_member_ending_with_deliveries_unacknowledged_leaves_the_broker_routing() {
    let t = spawn_app().await;
    let m = t.add_machine("Press 5").await;
    let broker = t.app.broker().unwrap();
    let secret = oee_core::store::device::server_secret(&t.pool).await.unwrap();
    let server_connect = |id: &str, clean_session: bool| {
        let mut c = connect_packet(id, 30);
        c.clean_session = clean_session;
        c.set_login(oee_core::access::SERVER_USER, secret.clone());
        c
    };
    // Subscribed before: a restart of the core would lose this subscription, and with it what follows.
    let (observer, mut seen) = t.mqtt_client("shared-observer").await;
    observer.subscribe("test/routed", QoS::AtLeastOnce).await.unwrap();
    let (publisher, _) = t.mqtt_client("shared-publisher").await;
    routed(&publisher, &mut seen, "before").await;

    let mut granted = Vec::new();
    for clean_session in [false, true] {
        let id = format!("shared-member-{clean_session}");
        let mut member = Raw::connect(t.mqtt_port).await;
        assert_eq!(member.handshake(server_connect(&id, clean_session)).await, ConnectReturnCode::Success);
        member.send(Packet::Subscribe(Subscribe::new("$share/g/test/shared", QoS::AtLeastOnce))).await;
        let code = match member.recv().await {
            Some(Packet::SubAck(a)) => a.return_codes[0],
            other => panic!("expected SUBACK, got {other:?}"),
        };
        granted.push((clean_session, code != SubscribeReasonCode::Failure));
        publisher.publish("test/shared", QoS::AtLeastOnce, false, "left unacknowledged").await.unwrap();
        if code != SubscribeReasonCode::Failure {
            match member.recv().await {
                Some(Packet::Publish(p)) => assert_eq!((p.topic.as_str(), p.qos), ("test/shared", QoS::AtLeastOnce)),
                other => panic!("expected the shared message, got {other:?}"),
            }
        }
        // Gone without PUBACK and without DISCONNECT: the last member of its group.
        let ended = broker.stats.connections_ended.load(std::sync::atomic::Ordering::Relaxed);
        drop(member);
        eventually("the guard saw the member go", || async {
            broker.stats.connections_ended.load(std::sync::atomic::Ordering::Relaxed) > ended
        })
        .await;
        if !clean_session {
            // rumqttd answers a new connection of the same persistent session only once it has dealt with the
            // old one's end (it ends a connection whose id is taken first).
            let mut again = Raw::connect(t.mqtt_port).await;
            assert_eq!(again.handshake(server_connect(&id, false)).await, ConnectReturnCode::Success);
        }
        routed(&publisher, &mut seen, &format!("after the {id}")).await;
    }
    // Ingest still applies commands end to end, and the core never had to be restarted.
    state_change_works(&t, m, 2).await;
    assert_eq!(broker.health.restarts.load(std::sync::atomic::Ordering::Relaxed), 0, "the core restarted");
    let health = t.client.get(format!("{}/health", t.http)).send().await.unwrap();
    assert_eq!(health.status(), 200);
    assert_eq!(granted, [(false, false), (true, true)], "(clean session, shared subscription granted)");
}

/// Publishes `what` on `test/routed` and waits until the subscriber of `seen` gets it.
async fn routed(
    publisher: &rumqttc::AsyncClient,
    seen: &mut tokio::sync::mpsc::UnboundedReceiver<rumqttc::Publish>,
    what: &str,
) {
    publisher.publish("test/routed", QoS::AtLeastOnce, false, serde_json::to_vec(what).unwrap()).await.unwrap();
    assert_eq!(next_on(seen, "test/routed").await, serde_json::json!(what), "routed {what}");
}
