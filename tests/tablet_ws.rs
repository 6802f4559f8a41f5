//! The tablets' websockets (reference §5.2.11, contracts C43 and C44): the bare current code first, then a
//! JSON event (or a bare code) for every new activity and a logout event when the tablet's session ends,
//! all driven by changes committed over MQTT.

mod common;

use std::time::Duration;

use chrono::{DateTime, Utc};
use common::*;
use futures_util::{SinkExt, StreamExt};
use rumqttc::QoS;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

type Socket = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Upper bound for anything the server should send: assertions are on content, never on waiting.
const WITHIN: Duration = Duration::from_secs(5);

/// Opens one of the server's websockets and sends `first` as the first message.
async fn open(app: &TestApp, path: &str, first: &str) -> Socket {
    let url = format!("{}{path}", app.http.replacen("http://", "ws://", 1));
    let (mut ws, _) = tokio_tungstenite::connect_async(url).await.expect("websocket upgrade");
    ws.send(Message::text(first)).await.unwrap();
    ws
}

/// The next text frame.
async fn next_text(ws: &mut Socket) -> String {
    loop {
        let msg = tokio::time::timeout(WITHIN, ws.next())
            .await
            .expect("no frame within 5 s")
            .expect("the socket closed")
            .expect("websocket error");
        match msg {
            Message::Text(t) => return t.as_str().to_owned(),
            Message::Ping(_) | Message::Pong(_) => continue,
            other => panic!("expected a text frame, got {other:?}"),
        }
    }
}

/// The next text frame, which must be JSON.
async fn next_json(ws: &mut Socket) -> Value {
    let text = next_text(ws).await;
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}

/// Asserts that the server closes the socket next, and returns the close code.
async fn closed(ws: &mut Socket) -> u16 {
    let msg = tokio::time::timeout(WITHIN, ws.next()).await.expect("no close within 5 s");
    let code = match msg {
        Some(Ok(Message::Close(Some(frame)))) => u16::from(frame.code),
        other => panic!("expected a close frame, got {other:?}"),
    };
    // The close handshake completes and the stream ends.
    let end = tokio::time::timeout(WITHIN, ws.next()).await.expect("the stream did not end");
    assert!(end.is_none(), "{end:?}");
    code
}

/// The error frame of a refused socket, followed by a close: its reason.
async fn refused(ws: &mut Socket) -> String {
    let v = next_json(ws).await;
    assert_eq!(v["action"], "error", "{v}");
    let reason = v["reason"].as_str().expect("a reason").to_owned();
    assert_eq!(closed(ws).await, 1008, "closed as a policy violation");
    reason
}

/// A tablet as `/check-state` registers it, paired to `machine` (or to none).
async fn add_tablet(app: &TestApp, uuid: &str, machine: Option<i32>) -> i32 {
    sqlx::query_scalar(
        "INSERT INTO input_device (uuid, name, machine_id) VALUES ($1, 'Tablet ' || $1, $2) RETURNING id",
    )
    .bind(uuid)
    .bind(machine)
    .fetch_one(&app.pool)
    .await
    .unwrap()
}

/// Opens a session for the seeded administrator on `device`, as a tablet login does; returns its id.
async fn log_in(app: &TestApp, device: i32) -> i32 {
    let session: i32 = sqlx::query_scalar(
        "INSERT INTO user_session (user_id, input_device_id, time_login) VALUES (1, $1, now()) RETURNING id",
    )
    .bind(device)
    .fetch_one(&app.pool)
    .await
    .unwrap();
    sqlx::query("UPDATE input_device SET active_user_session_id = $2, active_user_id = 1 WHERE id = $1")
        .bind(device)
        .bind(session)
        .execute(&app.pool)
        .await
        .unwrap();
    session
}

/// Ends `device`'s session, as a tablet logout does.
async fn log_out(app: &TestApp, device: i32) {
    sqlx::query(
        "UPDATE user_session SET active = false, time_logout = now() \
         WHERE id = (SELECT active_user_session_id FROM input_device WHERE id = $1)",
    )
    .bind(device)
    .execute(&app.pool)
    .await
    .unwrap();
    sqlx::query("UPDATE input_device SET active_user_session_id = NULL, active_user_id = NULL WHERE id = $1")
        .bind(device)
        .execute(&app.pool)
        .await
        .unwrap();
}

/// A device speaking MQTT, and a watcher of every machine's status.
struct Device {
    client: rumqttc::AsyncClient,
    verdicts: tokio::sync::mpsc::UnboundedReceiver<rumqttc::Publish>,
    /// Kept so that its connection lives.
    _watcher: rumqttc::AsyncClient,
    statuses: tokio::sync::mpsc::UnboundedReceiver<rumqttc::Publish>,
}

impl Device {
    async fn new(app: &TestApp, id: &str) -> Device {
        let (client, verdicts) = app.mqtt_client(id).await;
        client.subscribe(REPLY, QoS::AtLeastOnce).await.unwrap();
        let (watcher, statuses) = app.mqtt_client(&format!("{id}-status")).await;
        watcher.subscribe("oee/v1/machines/+/status", QoS::AtLeastOnce).await.unwrap();
        Device { client, verdicts, _watcher: watcher, statuses }
    }

    /// Sends a command and checks that ingest committed it.
    async fn send(&mut self, topic: String, body: Value) -> Value {
        let v = command(&self.client, &mut self.verdicts, topic, body).await;
        assert_eq!(v["status"], 200, "{v}");
        v
    }

    /// Sets `machine` to `code` (a new activity) and waits until its status is published. Ingest publishes
    /// what the database says when it publishes, and merges quick changes: waiting keeps each step's
    /// status apart from the next step's changes.
    async fn set_code(&mut self, app: &TestApp, machine: i32, code: i32) {
        let v = self.send(format!("oee/v1/machines/{machine}/state"), json!({"activity_code_id": code})).await;
        assert_eq!(v["activity_code_id"], code, "{v}");
        self.published(app, machine).await;
    }

    /// Waits until `machine`'s status shows its current activity as the database has it now.
    async fn published(&mut self, app: &TestApp, machine: i32) {
        let (code, since): (i32, DateTime<Utc>) =
            sqlx::query_as("SELECT current_code_id, current_since FROM machine WHERE id = $1")
                .bind(machine)
                .fetch_one(&app.pool)
                .await
                .unwrap();
        let topic = format!("oee/v1/machines/{machine}/status");
        loop {
            let s = next_on(&mut self.statuses, &topic).await;
            let s_since: DateTime<Utc> = s["since"].as_str().unwrap().parse().unwrap();
            if s_since == since && s["activity_code_id"] == code {
                return;
            }
        }
    }

    /// Changes the open activity's code in place (same start, no new activity) with a history edit, and
    /// waits until the status with the new code and the same `since` is published.
    async fn change_code_in_place(&mut self, app: &TestApp, machine: i32, code: i32) {
        let (activity, since) = open_activity(app, machine).await;
        let body = json!({"activity_id": activity, "activity_code_id": code});
        self.send(format!("oee/v1/machines/{machine}/history/activity"), body).await;
        assert_eq!(open_activity(app, machine).await, (activity, since), "the same activity, the same start");
        self.published(app, machine).await;
    }
}

fn activity_change(code: i32) -> Value {
    json!({"action": "activity_change", "activity_code_id": code})
}

/// The machine's open activity: (id, start).
async fn open_activity(app: &TestApp, machine: i32) -> (i64, DateTime<Utc>) {
    sqlx::query_as("SELECT id, start_time FROM activity WHERE machine_id = $1 AND end_time IS NULL")
        .bind(machine)
        .fetch_one(&app.pool)
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tablet_hears_its_code_then_each_new_activity_then_its_logout() {
    let app = spawn_app().await;
    let m = app.add_machine("Lathe").await;
    app.set_schedule(m, true).await;
    app.start_job(m).await;
    let tablet = add_tablet(&app, "tablet-lathe", Some(m)).await;
    log_in(&app, tablet).await;
    let mut dev = Device::new(&app, "lathe-device").await;
    // The status now names the tablet's session.
    dev.set_code(&app, m, 2).await;

    let mut ws = open(&app, "/api/input-device-updates", r#"{"device_uuid": "tablet-lathe"}"#).await;
    assert_eq!(next_text(&mut ws).await, "2", "the bare current code comes first");

    // a change from a device over MQTT (rumqttc)
    dev.set_code(&app, m, 1).await;
    assert_eq!(next_json(&mut ws).await, activity_change(1));

    // one from Debian's mosquitto_pub
    let out = mosquitto_tool("mosquitto_pub")
        .args(["-h", "127.0.0.1", "-p", &app.mqtt_port.to_string(), "-q", "1", "-t"])
        .arg(format!("oee/v1/machines/{m}/state"))
        .args(["-m", r#"{"activity_code_id":3}"#])
        .output()
        .await
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(next_json(&mut ws).await, activity_change(3));

    // A code changed in place is no new activity: no frame (the paused screen would close). The next
    // frame is the next real change.
    dev.change_code_in_place(&app, m, 2).await;
    dev.set_code(&app, m, 1).await;
    assert_eq!(next_json(&mut ws).await, activity_change(1));

    // the session ends; the change that republishes it comes first, as a logout's own change would
    log_out(&app, tablet).await;
    dev.set_code(&app, m, 2).await;
    assert_eq!(next_json(&mut ws).await, activity_change(2));
    assert_eq!(next_json(&mut ws).await, json!({"action": "logout"}));

    // a new login is not a logout; the next change is heard as usual
    log_in(&app, tablet).await;
    dev.set_code(&app, m, 3).await;
    assert_eq!(next_json(&mut ws).await, activity_change(3));

    // the client leaves: the server answers its close and the stream ends
    ws.close(None).await.unwrap();
    let end = tokio::time::timeout(WITHIN, async {
        while let Some(Ok(msg)) = ws.next().await {
            assert!(msg.is_close() || msg.is_ping() || msg.is_pong(), "{msg:?}");
        }
    })
    .await;
    assert!(end.is_ok(), "the server did not finish the close handshake");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_tablet_hears_only_its_own_machine_and_its_own_logout() {
    let app = spawn_app().await;
    let a = app.add_machine("A").await;
    let b = app.add_machine("B").await;
    for m in [a, b] {
        app.set_schedule(m, true).await;
    }
    let ta = add_tablet(&app, "tablet-a", Some(a)).await;
    let tb = add_tablet(&app, "tablet-b", Some(b)).await;
    log_in(&app, ta).await;
    log_in(&app, tb).await;
    let mut dev = Device::new(&app, "two-machines").await;
    dev.set_code(&app, a, 2).await;
    dev.set_code(&app, b, 3).await;

    let mut wa = open(&app, "/api/input-device-updates", r#"{"device_uuid":"tablet-a"}"#).await;
    let mut wb = open(&app, "/api/input-device-updates", r#"{"device_uuid":"tablet-b"}"#).await;
    assert_eq!(next_text(&mut wa).await, "2");
    assert_eq!(next_text(&mut wb).await, "3");

    // B's tablet logs out and B changes; then A changes
    log_out(&app, tb).await;
    dev.set_code(&app, b, 2).await;
    dev.set_code(&app, a, 3).await;
    assert_eq!(next_json(&mut wb).await, activity_change(2));
    assert_eq!(next_json(&mut wb).await, json!({"action": "logout"}));
    // A's first frame since connecting is its own change: nothing of B's, and no logout
    assert_eq!(next_json(&mut wa).await, activity_change(3));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_unpaired_and_unreadable_requests_get_an_error_frame_and_a_close() {
    let app = spawn_app().await;
    let m = app.add_machine("Lathe").await;
    add_tablet(&app, "loose-tablet", None).await;

    let mut ws = open(&app, "/api/input-device-updates", r#"{"device_uuid":"never-seen"}"#).await;
    let reason = refused(&mut ws).await;
    assert!(reason.contains("never-seen") && reason.contains("/check-state"), "{reason}");

    let mut ws = open(&app, "/api/input-device-updates", r#"{"device_uuid":"loose-tablet"}"#).await;
    let reason = refused(&mut ws).await;
    assert!(reason.contains("not paired"), "{reason}");

    for (first, says) in [
        ("hello", "not JSON"),
        ("[1, 2]", "JSON object"),
        (r#"{"uuid":"x"}"#, "device_uuid"),
        (r#"{"device_uuid": 7}"#, "must be a string"),
    ] {
        let mut ws = open(&app, "/api/input-device-updates", first).await;
        let reason = refused(&mut ws).await;
        assert!(reason.contains(says), "{first}: {reason}");
    }

    let mut ws = open(&app, "/api/activity-updates", r#"{"machine_id": 9999}"#).await;
    let reason = refused(&mut ws).await;
    assert!(reason.contains("machine 9999 does not exist"), "{reason}");
    let mut ws = open(&app, "/api/activity-updates", r#"{"machine_id": "lathe"}"#).await;
    assert!(refused(&mut ws).await.contains("machine_id"));

    // the server is unharmed
    let mut ws = open(&app, "/api/activity-updates", &json!({"machine_id": m}).to_string()).await;
    assert_eq!(next_text(&mut ws).await, app.current_code(m).await.to_string());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn activity_updates_send_the_bare_code_of_every_new_activity() {
    let app = spawn_app().await;
    let m = app.add_machine("Press").await;
    app.set_schedule(m, true).await;
    let mut dev = Device::new(&app, "press-device").await;
    dev.set_code(&app, m, 3).await;

    // the machine id as a number and as a numeric string
    let mut by_number = open(&app, "/api/activity-updates", &json!({"machine_id": m}).to_string()).await;
    let mut by_string = open(&app, "/api/activity-updates", &json!({"machine_id": m.to_string()}).to_string()).await;
    for ws in [&mut by_number, &mut by_string] {
        assert_eq!(next_text(ws).await, "3");
    }

    dev.set_code(&app, m, 2).await;
    dev.change_code_in_place(&app, m, 3).await;
    dev.set_code(&app, m, 2).await;
    // the same code again is still a new activity
    dev.set_code(&app, m, 2).await;
    for ws in [&mut by_number, &mut by_string] {
        for _ in 0..3 {
            assert_eq!(next_text(ws).await, "2", "the in-place change to 3 sent nothing");
        }
    }
}

/// `POST path` with a JSON body: (status, body).
async fn post(app: &TestApp, path: &str, body: Value) -> (u16, String) {
    let r = app.client.post(format!("{}{path}", app.http)).json(&body).send().await.unwrap();
    (r.status().as_u16(), r.text().await.unwrap())
}

/// Frames up to and including the logout event: every one before it must be an activity change.
async fn until_logout(ws: &mut Socket) {
    loop {
        let v = next_json(ws).await;
        if v == json!({"action": "logout"}) {
            return;
        }
        assert_eq!(v["action"], "activity_change", "{v}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_tablet_api_drives_the_socket_from_login_to_force_logout() {
    let app = spawn_app().await;
    let m = app.add_machine("Mill").await;
    app.set_schedule(m, true).await;
    let mut dev = Device::new(&app, "mill-watcher").await;
    let uuid = "mill-tablet";
    let r = app.client.get(format!("{}/check-state?device_uuid={uuid}", app.http)).send().await.unwrap();
    assert_eq!(r.status(), 200, "the tablet registers and pairs itself");
    let tablet: i32 = sqlx::query_scalar("SELECT id FROM input_device WHERE uuid = $1 AND machine_id = $2")
        .bind(uuid)
        .bind(m)
        .fetch_one(&app.pool)
        .await
        .unwrap();
    let login = json!({"device_uuid": uuid, "user_id": "1", "password": "digitme2"});
    assert_eq!(post(&app, "/android-login", login.clone()).await.0, 200);
    dev.published(&app, m).await;

    let mut ws = open(&app, "/api/input-device-updates", &json!({"device_uuid": uuid}).to_string()).await;
    assert_eq!(next_text(&mut ws).await, app.current_code(m).await.to_string());

    assert_eq!(post(&app, "/android-update", json!({"device_uuid": uuid, "activity_code_id": 3})).await.0, 200);
    assert_eq!(next_json(&mut ws).await, activity_change(3));
    dev.published(&app, m).await;

    // the pausable paused screen changes the code in place: no frame, or the screen would close
    let (status, body) =
        post(&app, "/pausable-android-update", json!({"device_uuid": uuid, "activity_code_id": 2})).await;
    assert_eq!(status, 200, "{body}");
    dev.published(&app, m).await;
    assert_eq!(post(&app, "/android-update", json!({"device_uuid": uuid, "activity_code_id": 3})).await.0, 200);
    assert_eq!(next_json(&mut ws).await, activity_change(3), "nothing came of the in-place change");
    dev.published(&app, m).await;

    // the status page's force logout
    let (status, body) = post(&app, &format!("/api/force-logout/{tablet}"), json!({})).await;
    assert_eq!((status, body.as_str()), (200, ""));
    until_logout(&mut ws).await;
    dev.published(&app, m).await;

    // and the tablet's own logout after a new login
    assert_eq!(post(&app, "/android-login", login).await.0, 200);
    dev.published(&app, m).await;
    assert_eq!(post(&app, "/android-logout", json!({"device_uuid": uuid})).await.0, 200);
    until_logout(&mut ws).await;
}
