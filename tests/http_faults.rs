//! The HTTP side against clients that misbehave, through the real server: bodies too large for one MQTT
//! packet, machine paths that are MQTT wildcards, NUL characters, concurrent duplicates of one request id,
//! tablet commands not declared as JSON, idle and slow sockets, more connections than allowed; and the times
//! the server records: a command's receive time, and a tablet's delayed start.

mod common;

use std::time::Duration;

use chrono::{DateTime, Utc};
use common::*;
use oee_server::{App, Services};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Starts every service with `config` changed by `change`.
async fn spawn_with(change: impl FnOnce(&mut oee_core::Config)) -> TestApp {
    let db = seeded_db().await;
    let mut config = test_config(&db);
    change(&mut config);
    spawn_app_with(config, db, Services::ALL).await
}

/// `POST /api/v1/machines/{path}` with a JSON body: the status and the answer.
async fn command_over_http(t: &TestApp, path: &str, body: &Value) -> (u16, Value) {
    let r = t.client.post(format!("{}/api/v1/machines/{path}", t.http)).json(body).send().await.unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

/// A POST with any body and content type: the status and the body.
async fn post_raw(t: &TestApp, path: &str, content_type: Option<&str>, body: Vec<u8>) -> (u16, String) {
    let mut r = t.client.post(format!("{}{path}", t.http)).body(body);
    if let Some(ct) = content_type {
        r = r.header("content-type", ct);
    }
    let r = r.send().await.unwrap();
    (r.status().as_u16(), r.text().await.unwrap())
}

/// Writes `request` on a new connection and reads the answer until the server closes it: the status and
/// the body. The request should say `Connection: close`.
async fn raw_http(t: &TestApp, request: &[u8]) -> (u16, String) {
    let mut s = TcpStream::connect(t.app.http_addr.unwrap()).await.unwrap();
    s.write_all(request).await.unwrap();
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(30), s.read_to_end(&mut answer))
        .await
        .expect("the server answers and closes")
        .unwrap();
    let answer = String::from_utf8_lossy(&answer).to_string();
    let status = answer.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or_else(|| panic!("{answer}"));
    let body = answer.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default();
    (status, body)
}

/// How many activities the machine has had.
async fn activity_count(t: &TestApp, machine: i32) -> usize {
    t.activities(machine).await.0.len()
}

/// Opens `n` connections to the HTTP port that send nothing.
async fn idle_sockets(t: &TestApp, n: usize) -> Vec<TcpStream> {
    let addr = t.app.http_addr.unwrap();
    let mut sockets = Vec::with_capacity(n);
    for _ in 0..n {
        sockets.push(TcpStream::connect(addr).await.expect("connect an idle socket"));
    }
    sockets
}

/// A client that opens a new connection for each request (none kept from one request to the next).
fn fresh_client() -> reqwest::Client {
    reqwest::Client::builder().pool_max_idle_per_host(0).build().unwrap()
}

// ---------------------------------------------------------------------------------------------------------
// Bodies

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversized_body_is_413_and_other_clients_are_unaffected() {
    let db = seeded_db().await;
    let config = test_config(&db);
    let limit = config.http_body_limit();
    let t = spawn_app_with(config, db, Services::ALL).await;
    let m = t.add_machine("Press").await;
    let stored = activity_count(&t, m).await;
    // `{"activity_code_id":2,"pad":"…"}` of exactly `size` bytes
    let padded = |size: usize| {
        let pad = size - r#"{"activity_code_id":2,"pad":""}"#.len();
        format!(r#"{{"activity_code_id":2,"pad":"{}"}}"#, "x".repeat(pad)).into_bytes()
    };

    for size in [256 * 1024, 512 * 1024, 1024 * 1024, 2 * 1024 * 1024, limit + 1] {
        let (status, body) =
            post_raw(&t, &format!("/api/v1/machines/{m}/state"), Some("application/json"), padded(size)).await;
        assert_eq!(status, 413, "{size} bytes: {body}");
        let v: Value = serde_json::from_str(&body).unwrap();
        assert!(v["error"].as_str().unwrap().contains(&format!("larger than {limit} bytes")), "{v}");
    }
    // every route: the device API and the tablet API too
    for path in ["/api/machine-state-change", "/android-login", "/api/v1/tablets/pair"] {
        let (status, body) = post_raw(&t, path, Some("application/json"), padded(limit + 1)).await;
        assert_eq!(status, 413, "{path}: {body}");
    }
    // declared too large to be worth reading: answered before the body is sent
    let (status, body) = raw_http(
        &t,
        format!(
            "POST /api/v1/machines/{m}/state HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n\
             Content-Length: 104857600\r\nConnection: close\r\n\r\n"
        )
        .as_bytes(),
    )
    .await;
    assert_eq!(status, 413, "{body}");
    // no length declared: counted as it arrives
    let chunk = padded(limit + 1);
    let mut chunked = format!(
        "POST /api/v1/machines/{m}/state HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n\
         Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n{:x}\r\n",
        chunk.len()
    )
    .into_bytes();
    chunked.extend_from_slice(&chunk);
    chunked.extend_from_slice(b"\r\n0\r\n\r\n");
    let (status, body) = raw_http(&t, &chunked).await;
    assert_eq!(status, 413, "{body}");
    assert_eq!(activity_count(&t, m).await, stored, "nothing was published");

    // a body of exactly the limit still fits one MQTT packet with what the bridge adds
    let (status, body) =
        post_raw(&t, &format!("/api/v1/machines/{m}/state"), Some("application/json"), padded(limit)).await;
    assert_eq!(status, 200, "{body}");

    // the bridge's connection to the broker is intact: 50 requests from 5 clients all succeed
    let mut clients = tokio::task::JoinSet::new();
    for _ in 0..5 {
        let (http, client) = (t.http.clone(), reqwest::Client::new());
        clients.spawn(async move {
            let mut statuses = Vec::new();
            for _ in 0..10 {
                let r = client
                    .post(format!("{http}/api/v1/machines/{m}/state"))
                    .json(&json!({"activity_code_id": 2}))
                    .send()
                    .await
                    .unwrap();
                statuses.push(r.status().as_u16());
            }
            statuses
        });
    }
    let statuses: Vec<u16> = clients.join_all().await.into_iter().flatten().collect();
    assert_eq!(statuses, vec![200; 50]);
    assert_eq!(activity_count(&t, m).await, stored + 51);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wildcard_in_the_machine_path_is_refused() {
    let t = spawn_app().await;
    let m = t.add_machine("Press 1").await;
    let stored = activity_count(&t, m).await;
    for segment in ["%2B", "%23", "press%2B1", "%00", "press%001", "caf%C3%A9", "Press-1", "press%2F1", "0", "-1"] {
        let (status, v) = command_over_http(&t, &format!("{segment}/state"), &json!({"activity_code_id": 2})).await;
        assert_eq!((status, v["reason"].as_str()), (404, Some("unknown_machine")), "{segment}: {v}");
        assert!(v["error"].as_str().unwrap().contains("by its id or its topic name"), "{segment}: {v}");
    }
    // a wildcard as the command is no command either
    let (status, v) = command_over_http(&t, &format!("{m}/%2B"), &json!({"activity_code_id": 2})).await;
    assert_eq!((status, v["reason"].as_str()), (404, Some("unknown_command")), "{v}");
    assert_eq!(activity_count(&t, m).await, stored, "nothing was published");
    // and the bridge goes on serving
    let (status, v) = command_over_http(&t, "press-1/state", &json!({"activity_code_id": 2})).await;
    assert_eq!(status, 200, "{v}");
    let (status, v) = command_over_http(&t, &format!("{m}/state"), &json!({"activity_code_id": 2})).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(activity_count(&t, m).await, stored + 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_path_or_query_that_cannot_be_read_is_answered_with_a_message() {
    let t = spawn_app().await;
    let m = t.add_machine("Press 1").await;
    // Percent-encoded bytes that are not UTF-8 name no machine, no command and no tablet.
    for path in ["%FF/state".to_string(), format!("{m}/%FF"), "caf%E9/job/start".to_string()] {
        let (status, v) = command_over_http(&t, &path, &json!({"activity_code_id": 2})).await;
        assert_eq!((status, v["reason"].as_str()), (404, Some("bad_path")), "{path}: {v}");
        assert!(v["error"].as_str().unwrap().contains("/api/v1/machines/3/state"), "{path}: {v}");
    }
    let (status, body) = post_raw(&t, "/api/force-logout/%FF", Some("application/json"), b"{}".to_vec()).await;
    let v: Value = serde_json::from_str(&body).unwrap_or_else(|_| panic!("{status} {body}"));
    assert_eq!((status, &v["success"]), (404, &json!(false)), "{body}");
    assert!(v["reason"].as_str().unwrap().contains("/api/force-logout/3"), "{body}");
    // The tablet's id given twice: which one is meant cannot be known.
    let r = t.client.get(format!("{}/check-state?device_uuid=a&device_uuid=b", t.http)).send().await.unwrap();
    assert_eq!(r.status(), 400);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["success"], false, "{v}");
    assert!(v["reason"].as_str().unwrap().contains("device_uuid"), "{v}");
    assert_eq!(activity_count(&t, m).await, 1, "nothing was published");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_nul_in_a_string_is_refused_at_the_edge() {
    let t = spawn_app().await;
    let m = t.add_machine("Press").await;
    t.set_schedule(m, true).await;
    let stored = activity_count(&t, m).await;

    let v1 = [
        ("state", json!({"activity_code_id": 2, "note": "a\u{0}b"}), "`note`"),
        ("job/start", json!({"job_number": "J\u{0}1"}), "`job_number`"),
        ("telemetry", json!({"temp": 20, "labels": ["ok", "\u{0}"]}), "`labels[1]`"),
        ("state", json!({"activity_code_id": 2, "request_id": "r\u{0}"}), "`request_id`"),
    ];
    for (command, body, field) in v1 {
        let (status, v) = command_over_http(&t, &format!("{m}/{command}"), &body).await;
        assert_eq!((status, v["reason"].as_str()), (400, Some("nul_character")), "{body}: {v}");
        assert!(v["error"].as_str().unwrap().contains(field), "{v}");
    }
    let (status, _, body) = t.post_state(json!({"machine_id": m, "machine_state": 0, "source": "\u{0}"})).await;
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("NUL"), "{body}");

    // the tablet API: in a body, and in the tablet's id on the query string
    let uuid = "tablet-nul";
    let r = t.client.get(format!("{}/check-state", t.http)).query(&[("device_uuid", uuid)]).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let login = json!({"device_uuid": uuid, "user_id": "1", "password": "digit\u{0}me2"});
    let (status, body) = post_raw(&t, "/android-login", Some("application/json"), login.to_string().into_bytes()).await;
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("`password` contains a NUL"), "{body}");
    let r = t.client.get(format!("{}/check-state?device_uuid=a%00b", t.http)).send().await.unwrap();
    assert_eq!(r.status(), 400);
    assert!(r.text().await.unwrap().contains("NUL"));

    assert_eq!(activity_count(&t, m).await, stored, "nothing was published");
    let (status, v) = command_over_http(&t, &format!("{m}/state"), &json!({"activity_code_id": 2})).await;
    assert_eq!(status, 200, "{v}");
}

// ---------------------------------------------------------------------------------------------------------
// Request ids

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_duplicates_of_one_request_id_share_the_answer() {
    let t = spawn_app().await;
    let m = t.add_machine("Press").await;
    let stored = activity_count(&t, m).await;
    let mut requests = tokio::task::JoinSet::new();
    for _ in 0..10 {
        let (http, client) = (t.http.clone(), t.client.clone());
        requests.spawn(async move {
            let r = client
                .post(format!("{http}/api/v1/machines/{m}/state"))
                .json(&json!({"activity_code_id": 2, "request_id": "door-open-17"}))
                .send()
                .await
                .unwrap();
            (r.status().as_u16(), r.json::<Value>().await.unwrap())
        });
    }
    for (status, v) in requests.join_all().await {
        assert_eq!(
            (status, v["ok"].as_bool(), v["request_id"].as_str()),
            (200, Some(true), Some("door-open-17")),
            "{v}"
        );
    }
    assert_eq!(activity_count(&t, m).await, stored + 1, "applied once");
    // a later retry gets the same answer, still applied once
    let (status, v) =
        command_over_http(&t, &format!("{m}/state"), &json!({"activity_code_id": 2, "request_id": "door-open-17"}))
            .await;
    assert_eq!((status, v["ok"].as_bool()), (200, Some(true)), "{v}");
    assert_eq!(activity_count(&t, m).await, stored + 1);
}

// ---------------------------------------------------------------------------------------------------------
// Tablets

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tablet_posts_need_json() {
    let t = spawn_app().await;
    let m = t.add_machine("Press").await;
    t.set_schedule(m, true).await;
    let uuid = "tablet-csrf";
    let r = t.client.get(format!("{}/check-state", t.http)).query(&[("device_uuid", uuid)]).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let login = json!({"device_uuid": uuid, "user_id": "1", "password": "digitme2"}).to_string();
    let (status, body) =
        post_raw(&t, "/android-login", Some("application/json; charset=utf-8"), login.clone().into_bytes()).await;
    assert_eq!((status, body.as_str()), (200, r#"{"success": true}"#));
    let tablet: i32 =
        sqlx::query_scalar("SELECT id FROM input_device WHERE uuid = $1").bind(uuid).fetch_one(&t.pool).await.unwrap();
    let logged_in = || async {
        sqlx::query_scalar::<_, Option<i32>>("SELECT active_user_session_id FROM input_device WHERE id = $1")
            .bind(tablet)
            .fetch_one(&t.pool)
            .await
            .unwrap()
            .is_some()
    };
    let stored = activity_count(&t, m).await;

    // what a web page can send cross-site without asking: the tablet's JSON as text, or a form
    let update = json!({"device_uuid": uuid, "activity_code_id": 2}).to_string();
    let paths = [
        "/android-login",
        "/android-logout",
        "/android-start-job",
        "/android-update",
        "/android-end-job",
        "/pausable-pause-job",
        "/pausable-resume-job",
        "/pausable-android-update",
        "/android-update-quantity",
        "/end_all_sessions",
        &format!("/api/force-logout/{tablet}"),
        "/api/v1/tablets/pair",
    ];
    for path in paths {
        for content_type in [Some("text/plain"), Some("application/x-www-form-urlencoded"), None] {
            let (status, body) = post_raw(&t, path, content_type, update.clone().into_bytes()).await;
            assert_eq!(status, 400, "{path} {content_type:?}: {body}");
            assert!(body.contains("Content-Type: application/json"), "{path}: {body}");
        }
    }
    // logging everyone out, or one tablet, takes a JSON body too
    for path in ["/end_all_sessions".to_string(), format!("/api/force-logout/{tablet}")] {
        let (status, body) = post_raw(&t, &path, None, Vec::new()).await;
        assert_eq!(status, 400, "{path}: {body}");
    }
    assert!(logged_in().await, "still logged in");
    assert_eq!(activity_count(&t, m).await, stored, "nothing was published");

    // as the app and the status page send them
    let (status, body) = post_raw(&t, "/android-update", Some("application/json"), update.into_bytes()).await;
    assert_eq!((status, body.as_str()), (200, r#"{"success": true}"#));
    let (status, body) =
        post_raw(&t, &format!("/api/force-logout/{tablet}"), Some("application/json"), b"{}".to_vec()).await;
    assert_eq!((status, body.as_str()), (200, ""));
    assert!(!logged_in().await);
    let (status, _) = post_raw(&t, "/android-login", Some("application/json"), login.into_bytes()).await;
    assert_eq!(status, 200);
    let (status, body) = post_raw(&t, "/end_all_sessions", Some("application/json"), b"{}".to_vec()).await;
    assert_eq!((status, body.as_str()), (200, r#"{"success": true}"#));
    assert!(!logged_in().await);
}

/// A tablet paired with a new machine "Press" (in shift, cycle time in seconds) and logged in.
async fn logged_in_tablet(t: &TestApp, uuid: &str) -> i32 {
    let m = t.add_machine("Press").await;
    t.set_schedule(m, true).await;
    sqlx::query("UPDATE machine SET job_start_input_type = 'cycle_time_seconds' WHERE id = $1")
        .bind(m)
        .execute(&t.pool)
        .await
        .unwrap();
    let r = t.client.get(format!("{}/check-state", t.http)).query(&[("device_uuid", uuid)]).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let login = json!({"device_uuid": uuid, "user_id": "1", "password": "digitme2"});
    let r = t.client.post(format!("{}/android-login", t.http)).json(&login).send().await.unwrap();
    assert_eq!(r.text().await.unwrap(), r#"{"success": true}"#);
    m
}

async fn job_start(t: &TestApp, machine: i32) -> Option<DateTime<Utc>> {
    sqlx::query_scalar("SELECT start_time FROM job WHERE machine_id = $1 AND active")
        .bind(machine)
        .fetch_optional(&t.pool)
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_delayed_start_a_tablet_start_time_is_ignored() {
    let t = spawn_app().await;
    let m = logged_in_tablet(&t, "tablet-now").await;
    let before = Utc::now();
    // midnight is earlier today whatever the hour, and before the login: it would be refused if it counted
    let start =
        json!({"device_uuid": "tablet-now", "job_number": "J1", "ideal_cycle_time": "5", "start_time": "00:00"});
    let r = t.client.post(format!("{}/android-start-job", t.http)).json(&start).send().await.unwrap();
    assert_eq!(r.text().await.unwrap(), r#"{"success": true}"#);
    let started = job_start(&t, m).await.expect("a running job");
    assert!(started >= before && started <= Utc::now(), "the job starts now, not at {started}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_delayed_start_the_current_minute_means_now() {
    let t = spawn_with(|c| c.tablets.delayed_start = true).await;
    // logged in just now: the minute the app fills in began before the login
    let m = logged_in_tablet(&t, "tablet-delayed").await;
    for attempt in 1.. {
        let before = Utc::now();
        let minute = before.format("%H:%M").to_string();
        let start =
            json!({"device_uuid": "tablet-delayed", "job_number": "J1", "ideal_cycle_time": "5", "start_time": minute});
        let r = t.client.post(format!("{}/android-start-job", t.http)).json(&start).send().await.unwrap();
        let (status, body) = (r.status().as_u16(), r.text().await.unwrap());
        let after = Utc::now();
        // The plant's minute turned while the server judged it: that minute is no longer the current one.
        let turned = after.format("%H:%M").to_string() != minute;
        if turned && status == 409 && attempt < 3 {
            continue;
        }
        assert_eq!((status, body.as_str()), (200, r#"{"success": true}"#), "start time {minute}");
        let started = job_start(&t, m).await.expect("a running job");
        let minute_start = before.date_naive().and_time(chrono::NaiveTime::parse_from_str(&minute, "%H:%M").unwrap());
        assert!(
            (started >= before && started <= after) || (turned && started.naive_utc() == minute_start),
            "the job starts now, not at {started}"
        );
        break;
    }
}

// ---------------------------------------------------------------------------------------------------------
// Connections

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_sockets_do_not_block_the_device_api() {
    let t = spawn_app().await;
    let m = t.add_machine("Press").await;
    let idle = idle_sockets(&t, 1_000).await;
    let client = fresh_client();
    let r = client.get(format!("{}/health", t.http)).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let r = client
        .post(format!("{}/api/machine-state-change", t.http))
        .json(&json!({"machine_id": m, "machine_state": 0}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let (status, v) = command_over_http(&t, &format!("{m}/state"), &json!({"activity_code_id": 2})).await;
    assert_eq!(status, 200, "{v}");
    drop(idle);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_sockets_are_closed_after_the_header_timeout() {
    let t = spawn_with(|c| c.http.header_read_timeout_s = 1).await;
    let mut idle = idle_sockets(&t, 200).await;
    // one that starts a request and never finishes its headers
    let mut slow = TcpStream::connect(t.app.http_addr.unwrap()).await.unwrap();
    slow.write_all(b"GET /health HTTP/1.1\r\nHost: t\r\n").await.unwrap();
    idle.push(slow);
    for mut s in idle {
        let mut rest = Vec::new();
        // closed by the server: the end of the stream (after a 408 for the started request), or a reset
        let read = tokio::time::timeout(Duration::from_secs(20), s.read_to_end(&mut rest)).await;
        assert!(read.is_ok(), "an idle socket is still open");
    }
    let r = fresh_client().get(format!("{}/health", t.http)).send().await.unwrap();
    assert_eq!(r.status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_that_does_not_arrive_in_time_is_408() {
    let t = spawn_with(|c| c.http.body_read_timeout_s = 1).await;
    let m = t.add_machine("Press").await;
    let stored = activity_count(&t, m).await;
    let (status, body) = raw_http(
        &t,
        b"POST /api/machine-state-change HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n\
          Content-Length: 100\r\nConnection: close\r\n\r\n{\"machine_id\"",
    )
    .await;
    assert_eq!(status, 408, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    assert!(v["error"].as_str().unwrap().contains("http.body_read_timeout_s"), "{v}");
    assert_eq!(activity_count(&t, m).await, stored);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_connection_cap_holds_new_connections_until_one_closes() {
    let t = spawn_with(|c| c.http.max_connections = 2).await;
    let mut idle = idle_sockets(&t, 2).await;
    let url = format!("{}/health", t.http);
    let mut waiting = tokio::spawn(async move { fresh_client().get(url).send().await.map(|r| r.status().as_u16()) });
    assert!(
        tokio::time::timeout(Duration::from_millis(300), &mut waiting).await.is_err(),
        "a third connection is not served while two are open"
    );
    idle.pop();
    let status = tokio::time::timeout(Duration::from_secs(10), waiting).await.expect("served").unwrap().unwrap();
    assert_eq!(status, 200);
}

// ---------------------------------------------------------------------------------------------------------
// Receive time

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_change_without_timestamp_is_stamped_when_received() {
    let db = seeded_db().await;
    let mut config = test_config(&db);
    config.bridge.reply_timeout_ms = 500;
    // The front (broker, bridge, web) stays up; ingest comes and goes.
    let front = Services { broker: true, ingest: false, bridge: true, web: true };
    let ingest_only = Services { broker: false, ingest: true, bridge: false, web: false };
    let t = spawn_app_with(config.clone(), db, front).await;
    let m = t.add_machine("Saw").await;
    let first = App::start(&config, ingest_only).await.unwrap();
    // ingest answers the bridge (so its persistent session exists and keeps what comes while it is away)
    eventually("the bridge's commands are applied", || async {
        let body = json!({"activity_code_id": 2, "request_id": "warm-up"});
        command_over_http(&t, &format!("{m}/state"), &body).await.0 == 200
    })
    .await;
    first.stop().await;
    let stored = activity_count(&t, m).await;

    let before = Utc::now();
    let (status, _, body) = t.post_state(json!({"machine_id": m, "activity_code_id": 3})).await;
    assert_eq!(status, 503, "{body}");
    let (status, v) = command_over_http(&t, &format!("{m}/state"), &json!({"activity_code_id": 2})).await;
    assert_eq!(status, 503, "{v}");
    let answered = Utc::now();

    let second = App::start(&config, ingest_only).await.unwrap();
    eventually("both changes are applied", || async { activity_count(&t, m).await == stored + 2 }).await;
    let applied: Vec<(i32, DateTime<Utc>)> = sqlx::query_as(
        "SELECT activity_code_id, start_time FROM activity WHERE machine_id = $1 ORDER BY start_time DESC, id DESC \
         LIMIT 2",
    )
    .bind(m)
    .fetch_all(&t.pool)
    .await
    .unwrap();
    assert_eq!(applied.iter().map(|a| a.0).collect::<Vec<_>>(), [2, 3]);
    for (code, start) in applied {
        assert!(
            start >= before && start <= answered,
            "code {code} recorded at {start}, received in [{before}, {answered}]"
        );
    }
    second.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_changes_for_one_machine_without_timestamps_are_all_applied() {
    // Each is stamped when the bridge received it; they may reach ingest in another order, and none is
    // refused as out of order for it.
    let t = spawn_app().await;
    let m = t.add_machine("Press").await;
    let before = activity_count(&t, m).await;
    let n = 30;
    let mut requests = tokio::task::JoinSet::new();
    for i in 0..n {
        let body = json!({"machine_id": m, "activity_code_id": 2 + i % 2});
        let client = t.client.clone();
        let url = format!("{}/api/machine-state-change", t.http);
        requests.spawn(async move { client.post(url).json(&body).send().await.unwrap().status().as_u16() });
    }
    let statuses = requests.join_all().await;
    assert!(statuses.iter().all(|s| *s == 200), "{statuses:?}");
    assert_eq!(activity_count(&t, m).await, before + n as usize);
}
