//! Tablet settings a plant chooses: pairing left to an administrator, job numbers checked against a
//! database, a delayed job start, and what pairing refuses.

mod common;

use common::*;
use oee_core::store::tablet;
use oee_server::Services;
use serde_json::{Value, json};

async fn spawn_with(change: impl FnOnce(&mut oee_core::Config)) -> TestApp {
    let db = seeded_db().await;
    let mut config = test_config(&db);
    change(&mut config);
    spawn_app_with(config, db, Services::ALL).await
}

async fn get(app: &TestApp, path: &str) -> (u16, String) {
    let r = app.client.get(format!("{}{path}", app.http)).send().await.unwrap();
    (r.status().as_u16(), r.text().await.unwrap())
}

async fn post(app: &TestApp, path: &str, body: Value) -> (u16, String) {
    let r = app.client.post(format!("{}{path}", app.http)).json(&body).send().await.unwrap();
    (r.status().as_u16(), r.text().await.unwrap())
}

async fn log_in(app: &TestApp, uuid: &str) {
    let body = json!({"device_uuid": uuid, "user_id": "1", "password": "digitme2"});
    assert_eq!(post(app, "/android-login", body).await, (200, r#"{"success": true}"#.to_string()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_auto_pairing_an_administrator_pairs_tablets() {
    let app = spawn_with(|c| c.tablets.auto_pair = false).await;
    let machine = app.add_machine("Press 1").await;
    let (status, body) = get(&app, "/check-state?device_uuid=t-1").await;
    assert_eq!(status, 200);
    assert!(
        body.contains(r#""machine": "No assigned machine. Pair via the admin interface then press back to refresh.""#)
    );
    // the tablet may not pick its machine itself
    let (status, body) = post(&app, "/api/v1/tablets/pair", json!({"device_uuid": "t-1", "machine_id": machine})).await;
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("administrator"), "{body}");

    let (id, m) = tablet::find_for_pairing(&app.pool, "Tablet 1", Some("Press 1")).await.unwrap();
    tablet::pair_tablet(&app.pool, id, m).await.unwrap();
    let (_, body) = get(&app, "/check-state?device_uuid=t-1").await;
    assert!(body.contains(r#""machine": "Press 1", "device_name": "Tablet 1""#), "{body}");

    // a machine has one tablet, and a tablet in use is not moved
    get(&app, "/check-state?device_uuid=t-2").await;
    let (second, _) = tablet::find_for_pairing(&app.pool, "t-2", None).await.unwrap();
    let e = tablet::pair_tablet(&app.pool, second, Some(machine)).await.unwrap_err();
    assert!(e.to_string().contains("already has a tablet"), "{e}");
    log_in(&app, "t-1").await;
    let e = tablet::pair_tablet(&app.pool, id, None).await.unwrap_err();
    assert!(e.to_string().contains("logged in"), "{e}");
    let machines: Value =
        app.client.get(format!("{}/api/v1/tablets/machines", app.http)).send().await.unwrap().json().await.unwrap();
    assert_eq!(machines, json!([{"id": machine, "name": "Press 1", "paired": true}]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tablet_picks_a_free_machine_when_auto_pairing_is_on() {
    let app = spawn_app().await;
    let first = app.add_machine("Press 1").await;
    let second = app.add_machine("Press 2").await;
    get(&app, "/check-state?device_uuid=t-1").await; // takes Press 1
    let (_, body) = get(&app, "/check-state?device_uuid=t-2").await;
    assert!(body.contains(r#""machine": "Press 2""#), "{body}");
    let (status, body) = post(&app, "/api/v1/tablets/pair", json!({"device_uuid": "t-1", "machine_id": second})).await;
    assert_eq!(status, 409, "{body}");
    let (status, body) = post(&app, "/api/v1/tablets/pair", json!({"device_uuid": "t-1", "machine_id": 99})).await;
    assert_eq!(status, 404, "{body}");
    let (status, _) = post(&app, "/api/v1/tablets/pair", json!({"device_uuid": "nobody", "machine_id": first})).await;
    assert_eq!(status, 400);
    let (status, body) = post(&app, "/api/v1/tablets/pair", json!({"device_uuid": "t-1", "machine_id": first})).await;
    assert_eq!((status, body.as_str()), (200, r#"{"success": true}"#));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn job_numbers_are_offered_for_checking_and_a_failed_read_is_a_warning() {
    let app = spawn_with(|c| {
        c.tablets.job_validation_query =
            "SELECT * FROM (VALUES ('J200', 'Brackets'), ('J100', NULL)) AS v(job, description)".into();
        c.tablets.delayed_start = true;
    })
    .await;
    let machine = app.add_machine("Press 1").await;
    app.set_schedule(machine, true).await;
    sqlx::query("UPDATE machine SET job_start_input_type = 'no_cycle_time', job_number_input_type = 'text'")
        .execute(&app.pool)
        .await
        .unwrap();
    get(&app, "/check-state?device_uuid=t-1").await;
    log_in(&app, "t-1").await;
    let (_, body) = get(&app, "/check-state?device_uuid=t-1").await;
    assert!(
        body.ends_with(
            r#""requested_data": {"job_number": {"title": "Job Number", "type": "text", "autofill": "", "validation": {"J200": "Brackets", "J100": ""}}, "start_time": {"title": "Start Time", "type": "time", "autofill": "current"}}}"#
        ),
        "{body}"
    );

    // a start time earlier today is the job's start; a later one is refused (times of day: this part needs
    // the last 11 minutes and the next 2 to be on today's date, in the plant zone UTC)
    let now = chrono::Utc::now();
    let today = |t: chrono::DateTime<chrono::Utc>| t.date_naive() == now.date_naive();
    let earlier = (now - chrono::Duration::minutes(1)).format("%H:%M").to_string();
    let later = (now + chrono::Duration::minutes(2)).format("%H:%M").to_string();
    let clear_of_midnight = today(now - chrono::Duration::minutes(11)) && today(now + chrono::Duration::minutes(2));
    if clear_of_midnight {
        let (status, body) =
            post(&app, "/android-start-job", json!({"device_uuid": "t-1", "job_number": "J200", "start_time": later}))
                .await;
        assert_eq!(status, 400, "{body}");
        assert!(body.contains("later than now"), "{body}");
        // before the current activity (the login) it would cut the timeline: refused with what to do
        let (status, body) = post(
            &app,
            "/android-start-job",
            json!({"device_uuid": "t-1", "job_number": "J200", "start_time": earlier}),
        )
        .await;
        assert_eq!(status, 409, "{body}");
        assert!(body.contains("before the machine's current activity began"), "{body}");
        // as if the operator had logged in ten minutes ago
        let ago = now - chrono::Duration::minutes(10);
        app.backdate_current_activity(machine, ago).await;
        let (status, body) = post(
            &app,
            "/android-start-job",
            json!({"device_uuid": "t-1", "job_number": "J200", "start_time": earlier}),
        )
        .await;
        assert_eq!((status, body.as_str()), (200, r#"{"success": true}"#));
        let (ict, start): (Option<f64>, chrono::DateTime<chrono::Utc>) =
            sqlx::query_as("SELECT ideal_cycle_time_s, start_time FROM job WHERE active")
                .fetch_one(&app.pool)
                .await
                .unwrap();
        assert_eq!(ict, None);
        assert_eq!(start.format("%H:%M").to_string(), earlier);
        assert_eq!(start.timestamp() % 60, 0);
    } else {
        let (status, body) =
            post(&app, "/android-start-job", json!({"device_uuid": "t-1", "job_number": "J200"})).await;
        assert_eq!((status, body.as_str()), (200, r#"{"success": true}"#));
    }

    // the query failing (here: a table that does not exist) tells the tablet, which may go on
    let app = spawn_with(|c| c.tablets.job_validation_query = "SELECT job, description FROM erp_orders".into()).await;
    app.add_machine("Press 1").await;
    get(&app, "/check-state?device_uuid=t-1").await;
    log_in(&app, "t-1").await;
    let (status, body) = get(&app, "/check-state?device_uuid=t-1").await;
    assert_eq!(status, 200);
    assert!(
        body.contains(
            r#""job_number": {"title": "Job Number", "type": "number", "autofill": "", "warning": "Could not get job validation data from database."}"#
        ),
        "{body}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_commands_over_mqtt_check_the_pairing_and_show_in_the_status() {
    let app = spawn_app().await;
    let machine = app.add_machine("Press 1").await;
    let other = app.add_machine("Press 2").await;
    app.set_schedule(machine, true).await;
    get(&app, "/check-state?device_uuid=t-1").await; // paired with Press 1
    let (id, _) = tablet::find_for_pairing(&app.pool, "t-1", None).await.unwrap();
    // Session commands are the server's own: only a client logged in as the server may send them.
    let (client, mut rx) = app.server_mqtt_client("session-test").await;
    client.subscribe(REPLY, rumqttc::QoS::AtLeastOnce).await.unwrap();
    client.subscribe(format!("oee/v1/machines/{machine}/status"), rumqttc::QoS::AtLeastOnce).await.unwrap();
    let session = |m: i32| format!("oee/v1/machines/{m}/session");
    // What the bridge does before it sends a session command: seal it with the server's secret.
    let secret = oee_core::store::device::server_secret(&app.pool).await.unwrap();
    let seal = oee_core::access::ServerSeal::new(&secret);
    let sealed = |m: i32, body: serde_json::Value| {
        let mut c = oee_core::payload::SessionCommand::parse(body.to_string().as_bytes()).unwrap();
        c.seal(&session(m), &seal, chrono::Utc::now());
        serde_json::to_value(&c).unwrap()
    };

    // Unsealed, sealed for another user, or sealed long ago: refused, whoever published it.
    let login = json!({"action": "login", "input_device_id": id, "user_id": 1});
    let v = command(&client, &mut rx, session(machine), login.clone()).await;
    assert_eq!((v["status"].as_u64(), v["reason"].as_str()), (Some(403), Some("not_from_server")), "{v}");
    let mut forged = sealed(machine, login.clone());
    forged["user_id"] = json!(2);
    let v = command(&client, &mut rx, session(machine), forged).await;
    assert_eq!(v["reason"].as_str(), Some("not_from_server"), "{v}");
    let mut stale = oee_core::payload::SessionCommand::parse(login.to_string().as_bytes()).unwrap();
    stale.seal(&session(machine), &seal, chrono::Utc::now() - chrono::Duration::minutes(6));
    let v = command(&client, &mut rx, session(machine), serde_json::to_value(&stale).unwrap()).await;
    assert_eq!(v["reason"].as_str(), Some("not_from_server"), "{v}");

    let v = command(
        &client,
        &mut rx,
        session(other),
        sealed(other, json!({"action": "login", "input_device_id": id, "user_id": 1})),
    )
    .await;
    assert_eq!((v["status"].as_u64(), v["reason"].as_str()), (Some(409), Some("tablet_not_paired")), "{v}");
    let v = command(
        &client,
        &mut rx,
        session(machine),
        sealed(machine, json!({"action": "logout", "input_device_id": id})),
    )
    .await;
    assert_eq!((v["status"].as_u64(), v["reason"].as_str()), (Some(409), Some("not_logged_in")), "{v}");
    let v = command(
        &client,
        &mut rx,
        session(machine),
        sealed(machine, json!({"action": "login", "input_device_id": id, "user_id": 99})),
    )
    .await;
    assert_eq!(v["status"].as_u64(), Some(404), "{v}");
    let v = command(&client, &mut rx, session(machine), json!({"action": "dance", "input_device_id": id})).await;
    assert_eq!(v["status"].as_u64(), Some(400), "{v}");
    let v = command(&client, &mut rx, session(machine), json!({"action": "login", "input_device_id": id})).await;
    assert_eq!(v["status"].as_u64(), Some(422), "{v}");

    let v = command(&client, &mut rx, session(machine), sealed(machine, login.clone())).await;
    assert_eq!((v["ok"].as_bool(), v["activity_code_id"].as_i64()), (Some(true), Some(2)), "{v}");
    let session_id: i32 =
        sqlx::query_scalar("SELECT id FROM user_session WHERE active").fetch_one(&app.pool).await.unwrap();
    let topic = format!("oee/v1/machines/{machine}/status");
    let mut status = next_on(&mut rx, &topic).await;
    while status["session_id"].as_i64() != Some(session_id as i64) {
        status = next_on(&mut rx, &topic).await;
    }
    assert_eq!((status["input_device_id"].as_i64(), status["user_id"].as_i64()), (Some(id as i64), Some(1)));

    // logging in again closes the first session
    command(&client, &mut rx, session(machine), sealed(machine, login)).await;
    let open: i64 =
        sqlx::query_scalar("SELECT count(*) FROM user_session WHERE active").fetch_one(&app.pool).await.unwrap();
    let closed: i64 =
        sqlx::query_scalar("SELECT count(*) FROM user_session WHERE NOT active AND time_logout IS NOT NULL")
            .fetch_one(&app.pool)
            .await
            .unwrap();
    assert_eq!((open, closed), (1, 1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_wrong_passwords_hold_off_that_user_on_every_tablet() {
    let app = spawn_app().await;
    app.add_machine("Press 1").await;
    app.add_machine("Press 2").await;
    oee_core::store::user::add_user(&app.pool, "op", "4321", oee_core::access::Role::Operator, false).await.unwrap();
    get(&app, "/check-state?device_uuid=t-1").await;
    get(&app, "/check-state?device_uuid=t-2").await;
    let login = |uuid: &str, user: &str, pin: &str| json!({"device_uuid": uuid, "user_id": user, "password": pin});
    for pin in ["0000", "1111", "2222", "3333", "4444"] {
        let (status, body) = post(&app, "/android-login", login("t-1", "1", pin)).await;
        assert_eq!((status, body.as_str()), (400, r#"{"success": false, "reason": "Wrong password"}"#));
    }
    // the right password is refused too for a while, from any tablet, and the reason says so
    let (status, body) = post(&app, "/android-login", login("t-2", "1", "digitme2")).await;
    assert_eq!(status, 429, "{body}");
    assert!(body.contains("Too many wrong passwords for user 1: try again in"), "{body}");
    let open: i64 = sqlx::query_scalar("SELECT count(*) FROM user_session").fetch_one(&app.pool).await.unwrap();
    assert_eq!(open, 0);
    // another user is not held off
    let (status, body) = post(&app, "/android-login", login("t-2", "2", "4321")).await;
    assert_eq!((status, body.as_str()), (200, r#"{"success": true}"#));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn new_tablets_register_only_inside_a_pairing_window_and_only_so_many() {
    let app = spawn_with(|c| {
        c.tablets.open_registration = false;
        c.tablets.window_max_new = 2;
    })
    .await;
    app.add_machine("Machine A").await;
    app.add_machine("Machine B").await;
    // Closed: an unknown tablet is refused and not registered.
    let (status, body) = get(&app, "/check-state?device_uuid=t-1").await;
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("pairing window"), "{body}");
    assert!(tablet::list_tablets(&app.pool).await.unwrap().is_empty());

    // Open: C9 holds inside the window, for as many tablets as it allows.
    tablet::open_pairing_window(&app.pool, chrono::Utc::now(), 10).await.unwrap();
    let (status, body) = get(&app, "/check-state?device_uuid=t-1").await;
    assert_eq!(
        (status, body.as_str()),
        (200, r#"{"workflow_type": "default", "state": "no_user", "machine": "Machine A", "device_name": "Tablet 1"}"#)
    );
    assert_eq!(get(&app, "/check-state?device_uuid=t-2").await.0, 200);
    let (status, _) = get(&app, "/check-state?device_uuid=t-3").await;
    assert_eq!(status, 403, "the window admits window_max_new tablets");
    // A registered tablet keeps working after the window closes; a new one is refused again.
    tablet::close_pairing_window(&app.pool).await.unwrap();
    assert_eq!(get(&app, "/check-state?device_uuid=t-1").await.0, 200);
    assert_eq!(get(&app, "/check-state?device_uuid=t-4").await.0, 403);
    assert_eq!(tablet::list_tablets(&app.pool).await.unwrap().len(), 2);

    // The command line opens it too (beside the running server).
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_oee-server"))
        .args(["tablet", "open-window", "--minutes", "5"])
        .env("OEE_DATABASE__URL", app.db.url())
        .env("OEE_DATA_DIR", scratch_dir("tablet-window-cli"))
        .output()
        .await
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("new tablets may register until"));
    assert_eq!(get(&app, "/check-state?device_uuid=t-4").await.0, 200);
}
