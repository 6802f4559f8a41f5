//! The embedded broker's limits and manners: a connection beyond `broker.max_connections` is told the
//! server is unavailable; a clean disconnect logs no error; a will is published when a connection breaks
//! and only then; a second connection with a client id in use ends the first.

mod common;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use common::*;
use oee_server::Services;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::{Layer, Registry};

/// What the broker logged in this test process: errors of the broker and of rumqttd's router (where the
/// server's own log filter shows them), and how many connections rumqttd's router has let go.
#[derive(Default)]
struct BrokerLog {
    errors: Mutex<Vec<String>>,
    disconnections: AtomicU64,
}

struct Recorder(Arc<BrokerLog>);

impl<S: tracing::Subscriber> Layer<S> for Recorder {
    fn on_event(&self, event: &tracing::Event<'_>, _: tracing_subscriber::layer::Context<'_, S>) {
        let meta = event.metadata();
        let target = meta.target();
        let mut text = String::new();
        event.record(&mut |field: &tracing::field::Field, value: &dyn std::fmt::Debug| {
            use std::fmt::Write as _;
            let _ = write!(text, "{}={value:?} ", field.name());
        });
        if target.starts_with("rumqttd::router") && text.contains("Disconnecting connection") {
            self.0.disconnections.fetch_add(1, Ordering::Relaxed);
        }
        // `rumqttd::server` is turned off by the server's log filter (src/main.rs): not counted.
        let shown = target.starts_with("oee_broker") || target.starts_with("rumqttd::router");
        if shown && *meta.level() == tracing::Level::ERROR {
            self.0.errors.lock().unwrap().push(format!("{target}: {text}"));
        }
    }
}

/// The log of this process, recorded from the first call on.
fn broker_log() -> Arc<BrokerLog> {
    static LOG: OnceLock<Arc<BrokerLog>> = OnceLock::new();
    LOG.get_or_init(|| {
        let log = Arc::new(BrokerLog::default());
        let layer = Recorder(log.clone()).with_filter(tracing_subscriber::filter::LevelFilter::INFO);
        tracing::subscriber::set_global_default(Registry::default().with(layer)).expect("one log recorder");
        log
    })
    .clone()
}

/// An anonymous client that keeps its event loop in the test's hands.
fn client(port: u16, id: &str, will: Option<&str>) -> (rumqttc::AsyncClient, rumqttc::EventLoop) {
    let mut o = rumqttc::MqttOptions::new(id, "127.0.0.1", port);
    o.set_keep_alive(Duration::from_secs(10));
    if let Some(topic) = will {
        o.set_last_will(rumqttc::LastWill::new(topic, format!("{id} is gone"), rumqttc::QoS::AtLeastOnce, false));
    }
    rumqttc::AsyncClient::new(o, 16)
}

/// Polls `events` (10 s at most) until `done` says so of an event; panics on an error.
async fn poll_until(events: &mut rumqttc::EventLoop, mut done: impl FnMut(&rumqttc::Event) -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let e = tokio::time::timeout_at(deadline, events.poll()).await.expect("nothing happened in 10 s");
        match e {
            Ok(e) if done(&e) => return,
            Ok(_) => {}
            Err(e) => panic!("the connection failed: {e}"),
        }
    }
}

/// Connects, publishes at QoS 1 and disconnects with DISCONNECT, as a well-behaved device does.
async fn clean_session(port: u16, id: &str, will: Option<&str>) {
    let (c, mut events) = client(port, id, will);
    poll_until(&mut events, |e| matches!(e, rumqttc::Event::Incoming(rumqttc::Packet::ConnAck(_)))).await;
    c.publish("plant/line-1/temp", rumqttc::QoS::AtLeastOnce, false, "21.5").await.unwrap();
    poll_until(&mut events, |e| matches!(e, rumqttc::Event::Incoming(rumqttc::Packet::PubAck(_)))).await;
    c.disconnect().await.unwrap();
    poll_until(&mut events, |e| matches!(e, rumqttc::Event::Outgoing(rumqttc::Outgoing::Disconnect))).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clean_disconnects_log_no_error_and_a_will_is_published_only_when_a_connection_breaks() {
    let log = broker_log();
    let t = spawn_app().await;
    let (watcher, mut wills) = t.mqtt_client("will-watcher").await;
    watcher.subscribe("plant/wills/#", rumqttc::QoS::AtLeastOnce).await.unwrap();
    // The subscription is in place once a message on it comes back.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        watcher.publish("plant/wills/ready", rumqttc::QoS::AtLeastOnce, false, "x").await.unwrap();
        match tokio::time::timeout(Duration::from_millis(200), wills.recv()).await {
            Ok(Some(p)) if p.topic == "plant/wills/ready" => break,
            _ => assert!(tokio::time::Instant::now() < deadline, "the watcher's subscription never took effect"),
        }
    }

    let before = log.disconnections.load(Ordering::Relaxed);
    const CLEAN: u64 = 20;
    for i in 0..CLEAN {
        let will = (i == 0).then_some("plant/wills/clean");
        clean_session(t.mqtt_port, &format!("tidy-{i}"), will).await;
    }
    // A connection that breaks without DISCONNECT: its will is published.
    let (_c, mut events) = client(t.mqtt_port, "breaks", Some("plant/wills/broken"));
    poll_until(&mut events, |e| matches!(e, rumqttc::Event::Incoming(rumqttc::Packet::ConnAck(_)))).await;
    drop(events);
    // Wills land in one log in the order they were published: the clean client's, had it been published,
    // would come first.
    let first = next_on_any(&mut wills).await;
    assert_eq!(first.topic, "plant/wills/broken", "a will published after a clean disconnect: {first:?}");

    within(Duration::from_secs(10), "rumqttd let every connection go", || async {
        // Every clean client, and the one that broke.
        log.disconnections.load(Ordering::Relaxed) > before + CLEAN
    })
    .await;
    let errors = log.errors.lock().unwrap().clone();
    assert!(errors.is_empty(), "clean disconnects logged errors:\n{}", errors.join("\n"));
}

/// The next publish on `rx` (10 s at most).
async fn next_on_any(rx: &mut tokio::sync::mpsc::UnboundedReceiver<rumqttc::Publish>) -> rumqttc::Publish {
    tokio::time::timeout(Duration::from_secs(10), rx.recv()).await.expect("no will within 10 s").unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_beyond_the_limit_is_told_the_server_is_unavailable() {
    let _ = broker_log();
    let db = seeded_db().await;
    let mut config = test_config(&db);
    // The broker alone: no connection of the server's own takes a place.
    config.broker.max_connections = 2;
    let t = spawn_app_with(config, db, Services { broker: true, ingest: false, bridge: false, web: false }).await;
    let mut open = Vec::new();
    for i in 0..2 {
        let (c, mut events) = client(t.mqtt_port, &format!("fits-{i}"), None);
        poll_until(&mut events, |e| matches!(e, rumqttc::Event::Incoming(rumqttc::Packet::ConnAck(_)))).await;
        open.push((c, events));
    }
    let (_c, mut events) = client(t.mqtt_port, "one-too-many", None);
    let refused = tokio::time::timeout(Duration::from_secs(10), events.poll()).await.expect("no answer in 10 s");
    match refused {
        Err(rumqttc::ConnectionError::ConnectionRefused(code)) => {
            assert_eq!(code, rumqttc::ConnectReturnCode::ServiceUnavailable)
        }
        other => panic!("expected CONNACK \"server unavailable\", got {other:?}"),
    }
    // A place freed is a place taken: the client gets in once another leaves.
    drop(open.pop());
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        match tokio::time::timeout_at(deadline, events.poll()).await.expect("not let in within 10 s") {
            Ok(rumqttc::Event::Incoming(rumqttc::Packet::ConnAck(a))) => {
                assert_eq!(a.code, rumqttc::ConnectReturnCode::Success);
                break;
            }
            Ok(_) => {}
            // Refused while the freed place is not free yet: rumqttc tries again at its next poll.
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
    let refused = t.app.broker().unwrap().stats.connections_refused.load(Ordering::Relaxed);
    assert!(refused >= 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_connection_with_the_same_client_id_ends_the_first() {
    let _ = broker_log();
    let t = spawn_app().await;
    let (_first, mut first_events) = client(t.mqtt_port, "twin", Some("plant/wills/twin"));
    poll_until(&mut first_events, |e| matches!(e, rumqttc::Event::Incoming(rumqttc::Packet::ConnAck(_)))).await;
    let (second, mut second_events) = client(t.mqtt_port, "twin", None);
    poll_until(&mut second_events, |e| matches!(e, rumqttc::Event::Incoming(rumqttc::Packet::ConnAck(_)))).await;
    // The first one's connection ends (MQTT 3.1.1 §3.1.4-2); the second one works on.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let polled = tokio::time::timeout_at(deadline, first_events.poll()).await;
        if polled.expect("the first connection stayed open").is_err() {
            break;
        }
    }
    second.publish("plant/line-1/temp", rumqttc::QoS::AtLeastOnce, false, "20").await.unwrap();
    poll_until(&mut second_events, |e| matches!(e, rumqttc::Event::Incoming(rumqttc::Packet::PubAck(_)))).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn filters_topics_and_retained_topics_beyond_the_budget_are_refused() {
    let _ = broker_log();
    let db = seeded_db().await;
    let mut config = test_config(&db);
    config.broker.max_filters = 2;
    config.broker.max_topics = 2;
    config.broker.max_retained = 1;
    let t = spawn_app_with(config, db, Services { broker: true, ingest: false, bridge: false, web: false }).await;
    let (c, mut events) = client(t.mqtt_port, "budget", None);
    poll_until(&mut events, |e| matches!(e, rumqttc::Event::Incoming(rumqttc::Packet::ConnAck(_)))).await;

    // Two distinct filters fit; a third is refused, to this client and to any other; known ones are free.
    let filters = ["plant/a/#", "plant/b/#", "plant/c/#"]
        .map(|f| rumqttc::SubscribeFilter::new(f.into(), rumqttc::QoS::AtLeastOnce));
    c.subscribe_many(filters).await.unwrap();
    let mut codes = Vec::new();
    poll_until(&mut events, |e| match e {
        rumqttc::Event::Incoming(rumqttc::Packet::SubAck(a)) => {
            codes = a.return_codes.clone();
            true
        }
        _ => false,
    })
    .await;
    let ok = rumqttc::SubscribeReasonCode::Success(rumqttc::QoS::AtLeastOnce);
    assert_eq!(codes, vec![ok, ok, rumqttc::SubscribeReasonCode::Failure]);
    // Narrower than a command filter of the server's: refused whatever the count.
    let (other, mut other_events) = client(t.mqtt_port, "budget-2", None);
    poll_until(&mut other_events, |e| matches!(e, rumqttc::Event::Incoming(rumqttc::Packet::ConnAck(_)))).await;
    let filters = ["plant/a/#", "oee/v1/machines/4/state"]
        .map(|f| rumqttc::SubscribeFilter::new(f.into(), rumqttc::QoS::AtLeastOnce));
    other.subscribe_many(filters).await.unwrap();
    poll_until(&mut other_events, |e| match e {
        rumqttc::Event::Incoming(rumqttc::Packet::SubAck(a)) => {
            codes = a.return_codes.clone();
            true
        }
        _ => false,
    })
    .await;
    assert_eq!(codes, vec![ok, rumqttc::SubscribeReasonCode::Failure]);

    // One retained topic is kept; a second retained topic is delivered but not retained; a third topic is
    // dropped. The subscriber of plant/a/# and plant/b/# sees what was delivered, in order.
    c.publish("plant/a/x", rumqttc::QoS::AtLeastOnce, true, "kept").await.unwrap();
    c.publish("plant/b/x", rumqttc::QoS::AtLeastOnce, true, "not kept").await.unwrap();
    c.publish("plant/c/x", rumqttc::QoS::AtLeastOnce, false, "dropped").await.unwrap();
    c.publish("plant/a/x", rumqttc::QoS::AtLeastOnce, true, "kept again").await.unwrap();
    let mut seen = Vec::new();
    poll_until(&mut events, |e| {
        if let rumqttc::Event::Incoming(rumqttc::Packet::Publish(p)) = e {
            seen.push(String::from_utf8_lossy(&p.payload).to_string());
        }
        seen.len() == 3
    })
    .await;
    assert_eq!(seen, ["kept", "not kept", "kept again"]);
    // Late subscribers on the known filters (a new filter would be refused) see only what was retained.
    let retained = |filter: &'static str| {
        let port = t.mqtt_port;
        async move {
            let out = mosquitto_tool("mosquitto_sub")
                .args([
                    "-h",
                    "127.0.0.1",
                    "-p",
                    &port.to_string(),
                    "-C",
                    "1",
                    "-W",
                    "2",
                    "--retained-only",
                    "-t",
                    filter,
                ])
                .output()
                .await
                .unwrap();
            String::from_utf8_lossy(&out.stdout).trim().to_string()
        }
    };
    assert_eq!(retained("plant/a/#").await, "kept again");
    assert_eq!(retained("plant/b/#").await, "");
}
