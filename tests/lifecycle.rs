//! Starting, stopping and restarting: first-run seeding, the embedded PostgreSQL cluster, an external
//! broker (Mosquitto), ingest restarts with commands queued in the broker, and clear start-up errors.

mod common;

use std::path::Path;
use std::time::Duration;

use common::*;
use oee_server::{App, Services};
use rumqttc::QoS;
use serde_json::json;

async fn world(pool: &sqlx::PgPool) -> (i64, i64, i64, i64, i64, chrono::DateTime<chrono::Utc>) {
    sqlx::query_as(
        "SELECT (SELECT count(*) FROM app_user), (SELECT count(*) FROM activity_code), \
                (SELECT count(*) FROM machine_group), (SELECT count(*) FROM shift), \
                (SELECT count(*) FROM shift_period), (SELECT first_start FROM settings)",
    )
    .fetch_one(pool)
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn first_run_seeds_the_reference_world_once() {
    let db = empty_db().await;
    let config = test_config(&db);
    let t = spawn_app_with(config.clone(), db.clone(), Services::ALL).await;
    let first = world(&t.pool).await;
    assert_eq!((first.0, first.1, first.2, first.3, first.4), (1, 4, 1, 1, 21));
    let admin: (i32, String, bool) =
        sqlx::query_as("SELECT id, username, admin FROM app_user").fetch_one(&t.pool).await.unwrap();
    assert_eq!(admin, (1, "admin".to_string(), true));
    assert!(oee_core::store::user::check_password(&t.pool, "admin", "digitme2").await.unwrap());
    let periods: Vec<(i16, i16, i16)> =
        sqlx::query_as("SELECT day, start_minute, shift_state FROM shift_period WHERE day = 6 ORDER BY start_minute")
            .fetch_all(&t.pool)
            .await
            .unwrap();
    assert_eq!(periods, vec![(6, 0, 3), (6, 540, 1), (6, 1020, 3)], "Sunday too has the 9-5 shift");
    let categories: Vec<_> =
        oee_core::store::code::list_codes(&t.pool).await.unwrap().into_iter().map(|c| c.loss_category).collect();
    use oee_core::oee::LossCategory::*;
    assert_eq!(categories, vec![Running, Breakdown, NotScheduled, Running]);

    // an administrator renames the group; a restart must not bring "Group 1" back or touch anything
    sqlx::query("UPDATE machine_group SET name = 'Line A'").execute(&t.pool).await.unwrap();
    t.app.stop().await;
    let again = spawn_app_with(config, db, Services::ALL).await;
    assert_eq!(world(&again.pool).await, first);
    let groups: Vec<String> =
        sqlx::query_scalar("SELECT name FROM machine_group").fetch_all(&again.pool).await.unwrap();
    assert_eq!(groups, vec!["Line A".to_string()]);
    again.app.stop().await;
}

fn postmaster_pid(dir: &Path) -> Option<i32> {
    std::fs::read_to_string(dir.join("postmaster.pid")).ok()?.lines().next()?.trim().parse().ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_embedded_cluster_keeps_data_across_restarts_and_after_a_crash() {
    let db = seeded_db().await; // only for its name: this test uses its own embedded cluster
    let mut config = test_config(&db);
    config.database.url = String::new();
    config.data_dir = scratch_dir("embedded");
    let cluster_dir = config.embedded_db_dir();

    let app = App::start(&config, Services::ALL).await.expect("start with the embedded database");
    let pid = postmaster_pid(&cluster_dir).expect("the cluster is running");
    let m = oee_core::store::machine::add_machine(&app.db.pool, "Mill", chrono_tz::Tz::UTC, chrono::Utc::now())
        .await
        .unwrap();
    let http = format!("http://{}", app.http_addr.unwrap());
    let r = reqwest::Client::new()
        .post(format!("{http}/api/machine-state-change"))
        .json(&json!({"machine_id": m.id, "activity_code_id": 3}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    app.stop().await;
    assert!(!Path::new(&format!("/proc/{pid}")).exists(), "postgres stopped with the server");
    assert!(postmaster_pid(&cluster_dir).is_none());

    // A crash leaves a pid file naming a process that is not this cluster's server.
    std::fs::write(cluster_dir.join("postmaster.pid"), format!("{}\n{}\n", std::process::id(), cluster_dir.display()))
        .unwrap();
    let app = App::start(&config, Services::ALL).await.expect("start after a crash");
    let code: i32 = sqlx::query_scalar("SELECT current_code_id FROM machine WHERE name = 'Mill'")
        .fetch_one(&app.db.pool)
        .await
        .unwrap();
    assert_eq!(code, 3, "the committed change survived the restart");
    let users: i64 = sqlx::query_scalar("SELECT count(*) FROM app_user").fetch_one(&app.db.pool).await.unwrap();
    assert_eq!(users, 1, "no second seeding");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ingest_and_bridge_work_against_an_external_mosquitto_broker() {
    let broker = Mosquitto::start();
    let db = seeded_db().await;
    let mut config = test_config(&db);
    config.mqtt.port = broker.port;
    let services = Services { broker: false, ingest: true, bridge: true, web: true };
    let t = spawn_app_with(config, db, services).await;
    assert!(t.app.mqtt_addr.is_none(), "no embedded broker");
    let m = t.add_machine("Robot").await;
    let (client, mut rx) = mqtt_client(broker.port, "watcher").await;
    let status = format!("oee/v1/machines/{m}/status");
    client.subscribe(&status, QoS::AtLeastOnce).await.unwrap();

    let (code, _, body) = t.post_state(json!({"machine_id": m, "activity_code_id": 3})).await;
    assert_eq!((code, body.as_str()), (200, ""));
    assert_eq!(t.current_code(m).await, 3);
    while next_on(&mut rx, &status).await["activity_code_id"] != 3 {}

    let out = mosquitto_tool("mosquitto_pub")
        .args(["-h", "127.0.0.1", "-p", &broker.port.to_string(), "-q", "1", "-t", "oee/v1/machines/robot/state"])
        .args(["-m", r#"{"machine_state":0}"#])
        .output()
        .await
        .unwrap();
    assert!(out.status.success());
    eventually("the Mosquitto device's change is committed", || async { t.current_code(m).await == 2 }).await;
    let (codes, open) = t.activities(m).await;
    assert_eq!((&codes[1..], open), (&[3, 2][..], 1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commands_published_while_ingest_is_down_are_applied_when_it_returns() {
    let db = seeded_db().await;
    let config = test_config(&db);
    // The broker runs alone; ingest comes and goes.
    let broker_only = Services { broker: true, ingest: false, bridge: false, web: false };
    let b = spawn_app_with(config.clone(), db.clone(), broker_only).await;
    let m = b.add_machine("Saw").await;
    let ingest_only = Services { broker: false, ingest: true, bridge: false, web: false };

    let first = App::start(&config, ingest_only).await.unwrap();
    let stats = first.ingest_stats.clone().unwrap();
    let (client, mut rx) = b.mqtt_client("device").await;
    client.subscribe("oee/v1/replies/test/saw", QoS::AtLeastOnce).await.unwrap();
    let topic = format!("oee/v1/machines/{m}/state");
    let body = |code: i32| {
        serde_json::to_vec(&json!({"activity_code_id": code, "reply_to": "oee/v1/replies/test/saw"})).unwrap()
    };
    // prove ingest's persistent session exists before it goes away
    client.publish(&topic, QoS::AtLeastOnce, false, body(3)).await.unwrap();
    assert_eq!(next_on(&mut rx, "oee/v1/replies/test/saw").await["status"], 200);
    assert_eq!(stats.applied.load(std::sync::atomic::Ordering::Relaxed), 1);
    first.stop().await;
    tokio::time::sleep(Duration::from_millis(300)).await;

    for code in [2, 3, 2] {
        client.publish(&topic, QoS::AtLeastOnce, false, body(code)).await.unwrap();
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(b.current_code(m).await, 3, "nothing is applied while ingest is down");

    let second = App::start(&config, ingest_only).await.unwrap();
    for _ in 0..3 {
        assert_eq!(next_on(&mut rx, "oee/v1/replies/test/saw").await["status"], 200);
    }
    assert_eq!(&b.activities(m).await.0[1..], &[3, 2, 3, 2]);
    second.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn taken_ports_are_clear_errors() {
    let db = seeded_db().await;
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap();

    let mut config = test_config(&db);
    config.http.listen = addr;
    let err = App::start(&config, Services::ALL).await.err().expect("HTTP port is taken");
    let msg = format!("{err:#}");
    assert!(msg.contains(&addr.to_string()) && msg.contains("http.listen"), "{msg}");

    let mut config = test_config(&db);
    config.broker.listen = addr;
    let err = App::start(&config, Services::ALL).await.err().expect("MQTT port is taken");
    let msg = format!("{err:#}");
    assert!(msg.contains("already in use") && msg.contains("broker.listen"), "{msg}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commands_wait_out_a_database_outage_and_are_applied_after_it() {
    use oee_core::store::cluster::{ClusterOptions, EmbeddedCluster};
    // A database this test can stop and start, reached through database.url like an external server.
    let opts = ClusterOptions {
        dir: scratch_dir("outage").join("pg"),
        bin_dir: Default::default(),
        run_as: "postgres".into(),
        settings: vec![],
        disposable: true,
    };
    let start = |o: ClusterOptions| async move {
        tokio::task::spawn_blocking(move || EmbeddedCluster::start(&o).unwrap()).await.unwrap()
    };
    let cluster = start(opts.clone()).await;
    let db = seeded_db().await;
    let mut config = test_config(&db);
    config.database.url = format!("postgres://oee@localhost:5432/oee?host={}", cluster.dir().display());
    let app = App::start(&config, Services::ALL).await.unwrap();
    let pool = app.db.pool.clone();
    let m =
        oee_core::store::machine::add_machine(&pool, "Kiln", chrono_tz::Tz::UTC, chrono::Utc::now()).await.unwrap().id;
    let (client, mut rx) = mqtt_client(config.mqtt.port, "kiln-plc").await;
    let reply = "oee/v1/replies/test/kiln";
    client.subscribe(reply, QoS::AtLeastOnce).await.unwrap();
    let topic = format!("oee/v1/machines/{m}/state");

    tokio::task::spawn_blocking(move || drop(cluster)).await.unwrap();
    for code in [3, 2, 3] {
        let body = json!({"activity_code_id": code, "reply_to": reply});
        client.publish(&topic, QoS::AtLeastOnce, false, serde_json::to_vec(&body).unwrap()).await.unwrap();
    }
    let stats = app.ingest_stats.clone().unwrap();
    eventually("ingest notices the outage", || async {
        stats.database_retries.load(std::sync::atomic::Ordering::Relaxed) > 0
    })
    .await;
    assert!(
        tokio::time::timeout(Duration::from_millis(500), rx.recv()).await.is_err(),
        "no verdict while the database is down"
    );

    let _cluster = start(opts).await;
    for _ in 0..3 {
        assert_eq!(next_on(&mut rx, reply).await["status"], 200);
    }
    let codes: Vec<i32> =
        sqlx::query_scalar("SELECT activity_code_id FROM activity WHERE machine_id = $1 ORDER BY start_time, id")
            .bind(m)
            .fetch_all(&pool)
            .await
            .unwrap();
    assert_eq!(&codes[1..], &[3, 2, 3], "every command survived the outage, in order");
    app.stop().await;
}
