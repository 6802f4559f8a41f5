//! Devices need credentials: an HTTP bearer token and an MQTT password each, made by `oee-server device add`,
//! covering only their own machines, revocable; the reference's open device API is a switch. On an external
//! Mosquitto the ACL the server writes gives devices the same rights. A device revoked or given other
//! machines while connected to the embedded broker gets its new rights on the connections it has open.

mod common;

use std::path::Path;
use std::time::Duration;

use common::*;
use oee_server::Services;
use serde_json::json;

/// A server with the closed defaults (no anonymous MQTT, no open device API).
async fn closed_app() -> TestApp {
    let db = seeded_db().await;
    let mut config = test_config(&db);
    config.broker.allow_anonymous = false;
    config.bridge.open_device_api = false;
    spawn_app_with(config, db, Services::ALL).await
}

async fn post(t: &TestApp, path: &str, token: Option<&str>, body: serde_json::Value) -> (u16, serde_json::Value) {
    let mut req = t.client.post(format!("{}{path}", t.http)).json(&body);
    if let Some(tok) = token {
        req = req.bearer_auth(tok);
    }
    let r = req.send().await.unwrap();
    let status = r.status().as_u16();
    let text = r.text().await.unwrap();
    (status, serde_json::from_str(&text).unwrap_or(serde_json::Value::String(text)))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_commands_need_a_device_token_for_the_devices_own_machines() {
    let t = closed_app().await;
    let own = t.add_machine("Own").await;
    let other = t.add_machine("Other").await;
    let dev = oee_core::store::device::add(&t.pool, "plc-1", &[own]).await.unwrap();
    // A new machine starts Down in shift and Closed out of it (the seeded 9-5 pattern): it gets the other.
    let code = if t.current_code(own).await == 3 { 2 } else { 3 };
    let change = |m: i32| json!({"machine_id": m, "activity_code_id": code});

    // No token, a malformed header, an unknown token: 401 with a message, nothing applied.
    let (s, v) = post(&t, "/api/machine-state-change", None, change(own)).await;
    assert_eq!(s, 401, "{v}");
    assert!(v["error"].as_str().unwrap().contains("Authorization: Bearer"), "{v}");
    let (s, _) = post(&t, "/api/v1/machines/own/state", None, json!({"activity_code_id": 3})).await;
    assert_eq!(s, 401);
    let (s, _) = post(&t, "/api/machine-state-change", Some("not-a-token"), change(own)).await;
    assert_eq!(s, 401);
    assert_ne!(t.current_code(own).await, code);

    // Its own machine, by id and by topic name: applied. Another machine: 403.
    let (s, v) = post(&t, "/api/machine-state-change", Some(&dev.token), change(own)).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(t.current_code(own).await, code);
    let (s, v) = post(&t, "/api/v1/machines/own/state", Some(&dev.token), json!({"activity_code_id": 2})).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(t.current_code(own).await, 2);
    let before = t.current_code(other).await;
    let (s, v) = post(&t, "/api/machine-state-change", Some(&dev.token), change(other)).await;
    assert_eq!((s, v["reason"].as_str()), (403, Some("forbidden")), "{v}");
    let (s, _) =
        post(&t, &format!("/api/v1/machines/{other}/state"), Some(&dev.token), json!({"activity_code_id": 3})).await;
    assert_eq!(s, 403);
    assert_eq!(t.current_code(other).await, before);
    // A session command is never taken over HTTP: a device cannot log an operator in.
    let login = json!({"action": "login", "input_device_id": 1, "user_id": 1});
    let (s, _) = post(&t, &format!("/api/v1/machines/{own}/session"), Some(&dev.token), login).await;
    assert_eq!(s, 403);

    // Revoked: the token stops working at once.
    oee_core::store::device::revoke(&t.pool, "plc-1").await.unwrap();
    let (s, _) = post(&t, "/api/machine-state-change", Some(&dev.token), change(own)).await;
    assert_eq!(s, 401);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_open_device_api_switch_lets_tokenless_devices_in_but_never_a_session() {
    let db = seeded_db().await;
    let mut config = test_config(&db);
    config.bridge.open_device_api = true;
    let t = spawn_app_with(config, db, Services::ALL).await;
    let m = t.add_machine("Press").await;
    let (s, v) = post(&t, "/api/machine-state-change", None, json!({"machine_id": m, "activity_code_id": 3})).await;
    assert_eq!(s, 200, "{v}");
    let login = json!({"action": "login", "input_device_id": 1, "user_id": 1});
    let (s, _) = post(&t, &format!("/api/v1/machines/{m}/session"), None, login).await;
    assert_eq!(s, 403);
}

/// Runs `mosquitto_pub` with `args` and says whether it succeeded.
async fn mosquitto_pub(port: u16, args: &[&str]) -> (bool, String) {
    let out = mosquitto_tool("mosquitto_pub")
        .args(["-h", "127.0.0.1", "-p", &port.to_string(), "-q", "1"])
        .args(args)
        .output()
        .await
        .unwrap();
    (out.status.success(), String::from_utf8_lossy(&out.stderr).into_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_makes_credentials_that_the_embedded_broker_and_the_device_api_accept() {
    let t = closed_app().await;
    let m = t.add_machine("Line 1").await;
    let other = t.add_machine("Line 2").await;
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_oee-server"))
        .args(["device", "add", "plc-line-1", "--machine", "Line 1"])
        .env("OEE_DATABASE__URL", t.db.url())
        .env("OEE_DATA_DIR", scratch_dir("device-cli"))
        .output()
        .await
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let field = |label: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(label))
            .map(|rest| rest.split_whitespace().next().unwrap().to_string())
            .unwrap_or_else(|| panic!("no `{label}` in:\n{text}"))
    };
    let password = field("MQTT password:");
    let token = field("HTTP token:");

    let (ok, err) =
        mosquitto_pub(t.mqtt_port, &["-t", &format!("oee/v1/machines/{m}/state"), "-m", "{\"activity_code_id\":3}"])
            .await;
    assert!(!ok, "an anonymous publisher is refused");
    assert!(err.to_lowercase().contains("not authori"), "{err}");
    // A code the machine is not in yet (it starts Down in shift, Closed out of it).
    let code = if t.current_code(m).await == 3 { 2 } else { 3 };
    let (ok, err) = mosquitto_pub(
        t.mqtt_port,
        &[
            "-u",
            "plc-line-1",
            "-P",
            &password,
            "-t",
            &format!("oee/v1/machines/{m}/state"),
            "-m",
            &format!("{{\"activity_code_id\":{code}}}"),
        ],
    )
    .await;
    assert!(ok, "{err}");
    eventually("the device's MQTT change is applied", || async { t.current_code(m).await == code }).await;
    let (s, v) =
        post(&t, "/api/machine-state-change", Some(&token), json!({"machine_id": m, "activity_code_id": 2})).await;
    assert_eq!(s, 200, "{v}");
    let (s, _) =
        post(&t, "/api/machine-state-change", Some(&token), json!({"machine_id": other, "activity_code_id": 2})).await;
    assert_eq!(s, 403);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_an_external_mosquitto_the_written_acl_keeps_devices_to_their_machines() {
    let db = seeded_db().await;
    let pool = db.pool().await;
    let now = chrono::Utc::now();
    let own = oee_core::store::machine::add_machine(&pool, "Own", chrono_tz::Tz::UTC, now).await.unwrap().id;
    let other = oee_core::store::machine::add_machine(&pool, "Other", chrono_tz::Tz::UTC, now).await.unwrap().id;
    let device = oee_core::store::device::add(&pool, "plc-9", &[own]).await.unwrap();
    let acl = oee_core::store::device::mosquitto_acl(&pool, "oee-server").await.unwrap();
    let server_password = "server-secret-for-this-test";
    let passwd = |dir: &Path, user: &str, pass: &str| {
        let ok = std::process::Command::new("mosquitto_passwd")
            .args(["-b"])
            .arg(dir.join("passwords"))
            .args([user, pass])
            .status()
            .expect("mosquitto_passwd (Debian package mosquitto)")
            .success();
        assert!(ok, "mosquitto_passwd failed");
    };
    let broker =
        Mosquitto::start_with("allow_anonymous false\npassword_file {dir}/passwords\nacl_file {dir}/acl\n", |dir| {
            std::fs::write(dir.join("passwords"), "").unwrap();
            passwd(dir, "oee-server", server_password);
            passwd(dir, "plc-9", &device.mqtt_password);
            std::fs::write(dir.join("acl"), &acl).unwrap();
            use std::os::unix::fs::PermissionsExt;
            for f in ["passwords", "acl"] {
                std::fs::set_permissions(dir.join(f), std::fs::Permissions::from_mode(0o644)).unwrap();
            }
        });
    let mut config = test_config(&db);
    config.mqtt.port = broker.port;
    config.mqtt.username = "oee-server".into();
    config.mqtt.password = server_password.into();
    let services = Services { broker: false, ingest: true, bridge: true, web: true };
    let t = spawn_app_with(config, db, services).await;

    let password = device.mqtt_password.clone();
    let port = broker.port;
    let publish = |m: i32, code: i32| {
        let topic = format!("oee/v1/machines/{m}/state");
        let body = format!("{{\"activity_code_id\":{code}}}");
        let password = password.clone();
        async move { mosquitto_pub(port, &["-u", "plc-9", "-P", &password, "-t", &topic, "-m", &body]).await }
    };
    let before_other = t.current_code(other).await;
    assert!(publish(own, 3).await.0);
    eventually("the device's own machine changed through Mosquitto", || async { t.current_code(own).await == 3 }).await;
    let denied = if before_other == 3 { 2 } else { 3 };
    assert!(publish(other, denied).await.0, "Mosquitto acknowledges and drops a denied publish");
    // A marker on its own machine after the denied one: once it is applied, the denied one had its turn.
    assert!(publish(own, 2).await.0);
    eventually("the marker is applied", || async { t.current_code(own).await == 2 }).await;
    assert_eq!(t.current_code(other).await, before_other, "another machine's command never reached ingest");
    // Its status is readable, the server's own topics are not writable.
    let (ok, _) = mosquitto_pub(
        broker.port,
        &["-u", "plc-9", "-P", &device.mqtt_password, "-t", &format!("oee/v1/machines/{own}/session"), "-m", "{}"],
    )
    .await;
    assert!(ok);
    let sessions: i64 = sqlx::query_scalar("SELECT count(*) FROM raw_event WHERE topic LIKE '%/session'")
        .fetch_one(&t.pool)
        .await
        .unwrap();
    assert_eq!(sessions, 0, "the session command never reached ingest");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_status_written_by_another_client_is_put_right_at_once() {
    // An external broker that lets anyone write anywhere: the server cannot stop a forged status there,
    // but it writes the true one back at once.
    let broker = Mosquitto::start();
    let db = seeded_db().await;
    let mut config = test_config(&db);
    config.mqtt.port = broker.port;
    let t = spawn_app_with(config, db, Services { broker: false, ingest: true, bridge: true, web: true }).await;
    let m = t.add_machine("Press").await;
    let (s, _) = post(&t, "/api/machine-state-change", None, json!({"machine_id": m, "activity_code_id": 3})).await;
    assert_eq!(s, 200);
    let forged = json!({"machine_id": m, "activity_code_id": 1, "activity_code": "Up"}).to_string();
    for topic in [format!("oee/v1/machines/{m}/status"), "oee/v1/machines/press/status".to_string()] {
        let (ok, err) = mosquitto_pub(broker.port, &["-r", "-t", &topic, "-m", &forged]).await;
        assert!(ok, "{err}");
        eventually("the true status is back", || async {
            let v = late_subscriber(broker.port, &topic, 5).await.unwrap_or_default();
            v["activity_code_id"] == 3 && v["machine_name"] == "Press"
        })
        .await;
    }
    // A status for a machine that does not exist is cleared.
    let (ok, _) = mosquitto_pub(broker.port, &["-r", "-t", "oee/v1/machines/9999/status", "-m", &forged]).await;
    assert!(ok);
    eventually("the forged status of no machine is gone", || async {
        late_subscriber(broker.port, "oee/v1/machines/9999/status", 1).await.is_none()
    })
    .await;
}

/// A device's own MQTT connection, driven by the test so that every packet and the connection's end are
/// seen (the harness's clients reconnect by themselves).
struct DeviceConnection {
    client: rumqttc::AsyncClient,
    events: rumqttc::EventLoop,
}

impl DeviceConnection {
    /// Connects as `user` with `password` under `client_id` and waits for the CONNACK.
    async fn open(port: u16, client_id: &str, user: &str, password: &str) -> DeviceConnection {
        let mut o = rumqttc::MqttOptions::new(client_id, "127.0.0.1", port);
        o.set_keep_alive(Duration::from_secs(10));
        o.set_credentials(user, password);
        let (client, events) = rumqttc::AsyncClient::new(o, 16);
        let mut c = DeviceConnection { client, events };
        match c.next().await {
            Ok(rumqttc::Packet::ConnAck(a)) => assert_eq!(a.code, rumqttc::ConnectReturnCode::Success),
            other => panic!("expected CONNACK, got {other:?}"),
        }
        c
    }

    /// The next packet from the broker, or the error that ended the connection (or refused a reconnect).
    async fn next(&mut self) -> Result<rumqttc::Packet, rumqttc::ConnectionError> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            match tokio::time::timeout_at(deadline, self.events.poll()).await.expect("nothing from the broker in 10 s")
            {
                Ok(rumqttc::Event::Incoming(p)) => return Ok(p),
                Ok(rumqttc::Event::Outgoing(_)) => {}
                Err(e) => return Err(e),
            }
        }
    }

    /// Publishes a state change for `machine` at QoS 1 and waits for its PUBACK.
    async fn change_state(&mut self, machine: i32, code: i32) {
        let body = format!("{{\"activity_code_id\":{code}}}");
        self.client
            .publish(format!("oee/v1/machines/{machine}/state"), rumqttc::QoS::AtLeastOnce, false, body)
            .await
            .unwrap();
        loop {
            match self.next().await {
                Ok(rumqttc::Packet::PubAck(_)) => return,
                Ok(_) => {}
                Err(e) => panic!("the connection ended before the PUBACK: {e}"),
            }
        }
    }

    /// Subscribes to `filter` and returns whether it was granted.
    async fn subscribe(&mut self, filter: &str) -> bool {
        self.client.subscribe(filter, rumqttc::QoS::AtLeastOnce).await.unwrap();
        loop {
            match self.next().await {
                Ok(rumqttc::Packet::SubAck(a)) => return a.return_codes[0] != rumqttc::SubscribeReasonCode::Failure,
                Ok(_) => {}
                Err(e) => panic!("the connection ended before the SUBACK: {e}"),
            }
        }
    }

    /// Waits (10 s at most) until the broker ends the connection, reading whatever comes before.
    async fn ended(&mut self) -> rumqttc::ConnectionError {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            if let Err(e) = self.next().await {
                return e;
            }
            assert!(tokio::time::Instant::now() < deadline, "the connection is still open after 10 s");
        }
    }
}

/// A closed server whose periodic re-check of connected devices is `recheck_s` seconds apart.
async fn closed_app_rechecking_every(recheck_s: u64) -> TestApp {
    let db = seeded_db().await;
    let mut config = test_config(&db);
    config.broker.allow_anonymous = false;
    config.bridge.open_device_api = false;
    config.broker.device_recheck_s = recheck_s;
    spawn_app_with(config, db, Services::ALL).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoking_a_device_with_the_cli_closes_its_open_connections_and_refuses_it_again() {
    // The periodic re-check is out of reach of this test: only the revocation's own notice can act in time.
    let t = closed_app_rechecking_every(3600).await;
    let m = t.add_machine("Press").await;
    let dev = oee_core::store::device::add(&t.pool, "plc-r", &[m]).await.unwrap();
    let mut first = DeviceConnection::open(t.mqtt_port, "plc-r-a", "plc-r", &dev.mqtt_password).await;
    let mut second = DeviceConnection::open(t.mqtt_port, "plc-r-b", "plc-r", &dev.mqtt_password).await;
    first.change_state(m, 3).await;
    eventually("the connected device's change is applied", || async { t.current_code(m).await == 3 }).await;

    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_oee-server"))
        .args(["device", "revoke", "plc-r"])
        .env("OEE_DATABASE__URL", t.db.url())
        .env("OEE_DATA_DIR", scratch_dir("device-revoke"))
        .output()
        .await
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let revoked = tokio::time::Instant::now();

    // Both connections end, within seconds of the revocation.
    first.ended().await;
    second.ended().await;
    assert!(revoked.elapsed() < Duration::from_secs(5), "closed only after {:?}", revoked.elapsed());
    let closed = t.app.broker().unwrap().stats.connections_revoked.load(std::sync::atomic::Ordering::Relaxed);
    assert_eq!(closed, 2);
    // Its client reconnects by itself and is refused.
    match first.next().await {
        Err(rumqttc::ConnectionError::ConnectionRefused(code)) => {
            assert_eq!(code, rumqttc::ConnectReturnCode::BadUserNamePassword)
        }
        other => panic!("expected the reconnect to be refused, got {other:?}"),
    }
    assert_eq!(t.current_code(m).await, 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_device_given_other_machines_gets_the_new_rights_on_its_open_connection() {
    let t = closed_app_rechecking_every(3600).await;
    let old = t.add_machine("Old").await;
    let new = t.add_machine("New").await;
    let dev = oee_core::store::device::add(&t.pool, "plc-m", &[old]).await.unwrap();
    let mut c = DeviceConnection::open(t.mqtt_port, "plc-m", "plc-m", &dev.mqtt_password).await;
    assert!(c.subscribe(&format!("oee/v1/machines/{old}/status")).await);
    assert!(!c.subscribe(&format!("oee/v1/machines/{new}/status")).await);

    let before = t.current_code(old).await;
    oee_core::store::device::set_machines(&t.pool, "plc-m", &[new]).await.unwrap();
    let stats = t.app.broker().unwrap().stats.clone();
    eventually("the old machine's status filter is given up on the device's behalf", || async {
        stats.subscriptions_withdrawn.load(std::sync::atomic::Ordering::Relaxed) == 1
    })
    .await;

    // The old machine's command is dropped, the new one's is applied: once the second is, the first
    // had its turn.
    c.change_state(old, 3).await;
    c.change_state(new, 3).await;
    eventually("the new machine's change is applied", || async { t.current_code(new).await == 3 }).await;
    assert_eq!(t.current_code(old).await, before, "the old machine's change was not applied");
    assert!(c.subscribe(&format!("oee/v1/machines/{new}/status")).await);
    assert!(!c.subscribe(&format!("oee/v1/machines/{old}/status")).await);

    // Machines that do not exist are refused by name.
    let err = oee_core::store::device::set_machines(&t.pool, "plc-m", &[new, 9999]).await.unwrap_err();
    assert!(err.to_string().contains("9999"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revocation_made_without_a_notice_is_found_by_the_periodic_recheck() {
    let t = closed_app_rechecking_every(1).await;
    let m = t.add_machine("Press").await;
    let dev = oee_core::store::device::add(&t.pool, "plc-q", &[m]).await.unwrap();
    let mut c = DeviceConnection::open(t.mqtt_port, "plc-q", "plc-q", &dev.mqtt_password).await;
    c.change_state(m, 3).await;
    // Straight in SQL, as an administrator might: no notification is sent.
    sqlx::query("UPDATE device SET active = false WHERE name = 'plc-q'").execute(&t.pool).await.unwrap();
    let revoked = tokio::time::Instant::now();
    c.ended().await;
    assert!(revoked.elapsed() < Duration::from_secs(5), "closed only after {:?}", revoked.elapsed());
}
