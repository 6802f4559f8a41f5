//! Where the time series are stored: TimescaleDB hypertables when the suite runs on TimescaleDB (its library
//! is installed), plain tables with `OEE_TEST_TIMESCALEDB=off`. Telemetry sent over MQTT lands in the chunk
//! of its time (or in the plain table), a plain database from an earlier version is converted on its first
//! start with TimescaleDB, a TimescaleDB database opens again, and one that can no longer load its
//! extension is refused with the remedy. The last two start embedded clusters of their own, as the server
//! does, so they run only when TimescaleDB is in use.

mod common;

use std::path::Path;

use chrono::{DateTime, Utc};
use common::*;
use oee_core::Config;
use oee_core::config::TimescaleMode;
use oee_core::store::Database;
use oee_core::store::timescale::{PlainReason, StorageMode};
use oee_server::Services;
use rumqttc::QoS;
use serde_json::json;
use sqlx::PgPool;

fn on_timescale() -> bool {
    timescale_mode() == TimescaleMode::Auto
}

/// Says on standard error (past the output capture) that a test checks nothing in this mode.
fn skipped(test: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr(), "{test}: needs TimescaleDB, and these tests run on plain tables: skipped");
}

/// A server config with its own embedded cluster in `dir`, as `oee-server serve` runs it.
fn embedded_config(dir: &Path, mode: TimescaleMode) -> Config {
    let mut c = Config { data_dir: dir.to_path_buf(), ..Config::default() };
    c.database.timescaledb = mode;
    c.database.max_connections = 4;
    c
}

async fn send(client: &rumqttc::AsyncClient, topic: &str, body: serde_json::Value) {
    client.publish(topic, QoS::AtLeastOnce, false, serde_json::to_vec(&body).unwrap()).await.unwrap();
}

fn at(text: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(text).unwrap().to_utc()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn telemetry_sent_over_mqtt_lands_in_the_chunk_of_its_time() {
    // An empty database at database.url: the server creates the extension and the hypertables itself.
    let db = empty_db().await;
    let t = spawn_app_with(test_config(&db), db, Services::ALL).await;
    let m = t.add_machine("Kiln").await;
    let (client, mut rx) = t.mqtt_client("kiln-sensor").await;
    let reply = "oee/v1/replies/test/kiln-sensor";
    client.subscribe(reply, QoS::AtLeastOnce).await.unwrap();
    let topic = format!("oee/v1/machines/{m}/telemetry");
    let times = ["2026-01-05T09:00:00Z", "2026-01-05T23:30:00Z", "2026-01-06T00:30:00Z", "2026-01-12T10:00:00Z"];
    for (i, ts) in times.iter().enumerate() {
        send(&client, &topic, json!({"temperature": 900 + i, "timestamp": ts, "reply_to": reply})).await;
        assert_eq!(next_on(&mut rx, reply).await["status"], 200, "reading at {ts}");
    }
    // A message ingest cannot read is kept as a raw event.
    client.publish(format!("oee/v1/machines/{m}/state"), QoS::AtLeastOnce, false, b"\xff".to_vec()).await.unwrap();
    eventually("the raw event is kept", || async {
        sqlx::query_scalar::<_, i64>("SELECT count(*) FROM raw_event").fetch_one(&t.pool).await.unwrap() == 1
    })
    .await;

    let stored: Vec<(DateTime<Utc>, f64)> =
        sqlx::query_as("SELECT ts, value FROM telemetry WHERE machine_id = $1 AND key = 'temperature' ORDER BY ts")
            .bind(m)
            .fetch_all(&t.pool)
            .await
            .unwrap();
    let want: Vec<(DateTime<Utc>, f64)> = times.iter().enumerate().map(|(i, ts)| (at(ts), 900.0 + i as f64)).collect();
    assert_eq!(stored, want, "the readings read back the same in either mode");

    let in_parent = |table: &str| {
        let sql = format!("SELECT count(*) FROM ONLY {table}");
        let pool = t.pool.clone();
        async move { sqlx::query_scalar::<_, i64>(sqlx::AssertSqlSafe(sql)).fetch_one(&pool).await.unwrap() }
    };
    if !on_timescale() {
        assert_eq!(t.app.db.storage(), Some(&StorageMode::Plain(PlainReason::Off)));
        let extension: i64 = sqlx::query_scalar("SELECT count(*) FROM pg_extension WHERE extname = 'timescaledb'")
            .fetch_one(&t.pool)
            .await
            .unwrap();
        assert_eq!(extension, 0, "plain mode creates no extension");
        let children: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM pg_inherits WHERE inhparent IN ('telemetry'::regclass, 'raw_event'::regclass)",
        )
        .fetch_one(&t.pool)
        .await
        .unwrap();
        assert_eq!(children, 0, "plain tables have no chunks");
        assert_eq!(
            (in_parent("telemetry").await, in_parent("raw_event").await),
            (4, 1),
            "every row in the table itself"
        );
        return;
    }

    let Some(StorageMode::Hypertables { timescale, telemetry_chunk_hours: 24, raw_event_chunk_hours: 168 }) =
        t.app.db.storage()
    else {
        panic!("the server runs on hypertables with the default chunks: {:?}", t.app.db.storage());
    };
    let dimensions: Vec<(String, String, i64)> = sqlx::query_as(
        "SELECT hypertable_name::text, column_name::text, extract(epoch FROM time_interval)::bigint \
         FROM timescaledb_information.dimensions WHERE hypertable_name IN ('telemetry', 'raw_event') ORDER BY 1",
    )
    .fetch_all(&t.pool)
    .await
    .unwrap();
    assert_eq!(
        dimensions,
        [("raw_event".to_string(), "received_at".to_string(), 7 * 86_400), ("telemetry".into(), "ts".into(), 86_400)]
    );
    assert_eq!((in_parent("telemetry").await, in_parent("raw_event").await), (0, 0), "every row is in a chunk");
    // Each reading is in the chunk whose range holds its time: chunks are whole UTC days.
    let placed: Vec<(DateTime<Utc>, DateTime<Utc>, DateTime<Utc>)> = sqlx::query_as(
        "SELECT t.ts, c.range_start, c.range_end FROM telemetry t \
         JOIN timescaledb_information.chunks c ON format('%I.%I', c.chunk_schema, c.chunk_name)::regclass = t.tableoid \
         WHERE t.machine_id = $1 ORDER BY t.ts",
    )
    .bind(m)
    .fetch_all(&t.pool)
    .await
    .unwrap();
    let day = |d: &str| at(&format!("2026-01-{d}T00:00:00Z"));
    let want = [
        (at(times[0]), day("05"), day("06")),
        (at(times[1]), day("05"), day("06")),
        (at(times[2]), day("06"), day("07")),
        (at(times[3]), day("12"), day("13")),
    ];
    assert_eq!(placed, want);
    let chunks: i64 =
        sqlx::query_scalar("SELECT count(*) FROM timescaledb_information.chunks WHERE hypertable_name = 'telemetry'")
            .fetch_one(&t.pool)
            .await
            .unwrap();
    assert_eq!(chunks, 3, "one chunk per day that has readings");
    if timescale.compression() {
        let settings: Vec<(String, Option<String>, Option<String>)> = sqlx::query_as(
            "SELECT hypertable::text, segmentby, orderby FROM timescaledb_information.hypertable_compression_settings \
             WHERE hypertable::text IN ('telemetry', 'raw_event') ORDER BY 1",
        )
        .fetch_all(&t.pool)
        .await
        .unwrap();
        assert_eq!(
            settings,
            [
                ("raw_event".to_string(), Some(String::new()), Some("received_at".to_string())),
                ("telemetry".to_string(), Some("machine_id,key".to_string()), Some("ts".to_string())),
            ]
        );
    }
    let jobs: i64 =
        sqlx::query_scalar("SELECT count(*) FROM timescaledb_information.jobs WHERE hypertable_name IS NOT NULL")
            .fetch_one(&t.pool)
            .await
            .unwrap();
    assert_eq!(jobs, 0, "no TimescaleDB policies: the server's own scheduler compresses and drops chunks");
}

/// What the stored time series answer: telemetry per machine, key and day, and the raw events.
type Answers = (Vec<(i32, String, DateTime<Utc>, i64, f64, f64, f64)>, (i64, DateTime<Utc>, DateTime<Utc>, i64));

async fn answers(pool: &PgPool) -> Answers {
    let telemetry = sqlx::query_as(
        "SELECT machine_id, key::text, date_trunc('day', ts), count(*), sum(value), min(value), max(value) \
         FROM telemetry GROUP BY 1, 2, 3 ORDER BY 1, 2, 3",
    )
    .fetch_all(pool)
    .await
    .unwrap();
    let raw = sqlx::query_as(
        "SELECT count(*), min(received_at), max(received_at), sum(length(payload))::bigint FROM raw_event",
    )
    .fetch_one(pool)
    .await
    .unwrap();
    (telemetry, raw)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plain_database_from_an_earlier_version_is_converted_on_its_first_start_with_timescaledb() {
    if !on_timescale() {
        return skipped("a_plain_database_from_an_earlier_version_is_converted_on_its_first_start_with_timescaledb");
    }
    let dir = scratch_dir("converted");
    let config = embedded_config(&dir, TimescaleMode::Off);
    let db = Database::open(&config).await.expect("open with plain tables");
    assert_eq!(db.storage(), Some(&StorageMode::Plain(PlainReason::Off)));
    // Ten days of readings every ten minutes for 3 machines and 2 keys; raw events over 20 days.
    sqlx::query(
        "INSERT INTO telemetry (machine_id, key, ts, value) \
         SELECT m, k, ts, m * 100 + extract(epoch FROM ts - '2026-01-01Z') / 600 \
         FROM generate_series(1, 3) m, unnest(ARRAY['temperature', 'pressure']) k, \
              generate_series('2026-01-01 00:00Z'::timestamptz, '2026-01-10 23:50Z', '10 minutes') ts",
    )
    .execute(&db.pool)
    .await
    .unwrap();
    sqlx::query(
        "INSERT INTO raw_event (received_at, topic, payload, status, error) \
         SELECT ts, 'oee/v1/machines/1/state', convert_to(ts::text, 'UTF8'), 400, 'bad' \
         FROM generate_series('2026-01-01 00:00Z'::timestamptz, '2026-01-20 23:00Z', '1 hour') ts",
    )
    .execute(&db.pool)
    .await
    .unwrap();
    let before = answers(&db.pool).await;
    assert_eq!(before.0.iter().map(|r| r.3).sum::<i64>(), 3 * 2 * 10 * 144);
    assert_eq!(before.1.0, 20 * 24);
    db.close().await;

    let config = embedded_config(&dir, TimescaleMode::Auto);
    let db = Database::open(&config).await.expect("the first start with TimescaleDB");
    assert!(matches!(db.storage(), Some(StorageMode::Hypertables { .. })), "{:?}", db.storage());
    assert_eq!(answers(&db.pool).await, before, "the same rows give the same answers");
    let in_parent: (i64, i64) =
        sqlx::query_as("SELECT (SELECT count(*) FROM ONLY telemetry), (SELECT count(*) FROM ONLY raw_event)")
            .fetch_one(&db.pool)
            .await
            .unwrap();
    assert_eq!(in_parent, (0, 0), "the rows moved into chunks");
    let chunks: Vec<(String, i64)> = sqlx::query_as(
        "SELECT hypertable_name::text, count(*) FROM timescaledb_information.chunks GROUP BY 1 ORDER BY 1",
    )
    .fetch_all(&db.pool)
    .await
    .unwrap();
    // Weekly raw-event chunks are aligned to TimescaleDB's origin: count the weeks 20 days touch.
    let weeks: i64 =
        sqlx::query_scalar("SELECT count(DISTINCT floor(extract(epoch FROM received_at) / 604800)) FROM raw_event")
            .fetch_one(&db.pool)
            .await
            .unwrap();
    assert_eq!(chunks, [("raw_event".to_string(), weeks), ("telemetry".to_string(), 10)]);
    // New readings go on working.
    sqlx::query("INSERT INTO telemetry (machine_id, key, ts, value) VALUES (1, 'temperature', '2026-02-01Z', 1)")
        .execute(&db.pool)
        .await
        .unwrap();
    db.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_timescale_database_opens_again_and_is_refused_with_the_remedy_without_its_preload() {
    if !on_timescale() {
        return skipped("a_timescale_database_opens_again_and_is_refused_with_the_remedy_without_its_preload");
    }
    let dir = scratch_dir("restarted");
    let mut config = embedded_config(&dir, TimescaleMode::Auto);
    // A library the user preloads stays, beside TimescaleDB.
    config.database.embedded.settings.insert("shared_preload_libraries".into(), "pg_stat_statements".into());
    let db = Database::open(&config).await.expect("first start");
    assert!(matches!(db.storage(), Some(StorageMode::Hypertables { .. })), "{:?}", db.storage());
    let (preload, telemetry_level): (String, String) = sqlx::query_as(
        "SELECT current_setting('shared_preload_libraries'), current_setting('timescaledb.telemetry_level')",
    )
    .fetch_one(&db.pool)
    .await
    .unwrap();
    assert_eq!((preload.as_str(), telemetry_level.as_str()), ("timescaledb,pg_stat_statements", "off"));
    oee_core::store::seed::seed_first_run(&db.pool, Utc::now()).await.expect("seed");
    sqlx::query(
        "INSERT INTO telemetry (machine_id, key, ts, value) VALUES (1, 'temperature', '2026-01-05 10:00Z', 70)",
    )
    .execute(&db.pool)
    .await
    .unwrap();
    db.close().await;

    // Started again, with another chunk interval: no hypertable made twice, new chunks are 6 h.
    config.database.telemetry_chunk_hours = 6;
    let db = Database::open(&config).await.expect("second start");
    let Some(StorageMode::Hypertables { telemetry_chunk_hours: 6, .. }) = db.storage() else {
        panic!("{:?}", db.storage());
    };
    let interval: i64 = sqlx::query_scalar(
        "SELECT extract(epoch FROM time_interval)::bigint FROM timescaledb_information.dimensions \
         WHERE hypertable_name = 'telemetry'",
    )
    .fetch_one(&db.pool)
    .await
    .unwrap();
    assert_eq!(interval, 6 * 3600);
    sqlx::query(
        "INSERT INTO telemetry (machine_id, key, ts, value) VALUES (1, 'temperature', '2026-01-07 10:00Z', 71)",
    )
    .execute(&db.pool)
    .await
    .unwrap();
    let ranges: Vec<(DateTime<Utc>, DateTime<Utc>)> = sqlx::query_as(
        "SELECT range_start, range_end FROM timescaledb_information.chunks WHERE hypertable_name = 'telemetry' \
         ORDER BY range_start",
    )
    .fetch_all(&db.pool)
    .await
    .unwrap();
    assert_eq!(
        ranges,
        [
            (at("2026-01-05T00:00:00Z"), at("2026-01-06T00:00:00Z")),
            (at("2026-01-07T06:00:00Z"), at("2026-01-07T12:00:00Z"))
        ],
        "the old chunk keeps its day, the new one is 6 hours"
    );
    db.close().await;

    // Turned off, the embedded cluster starts without the preload: the server and the commands refuse
    // with the remedy instead of failing a migration.
    config.database.timescaledb = TimescaleMode::Off;
    for (what, result) in [
        ("serve", Database::open(&config).await.map(|_| ())),
        ("a command", Database::open_for_command(&config).await.map(|_| ())),
    ] {
        let err = result.expect_err("the extension cannot be loaded");
        assert!(matches!(err, oee_core::Error::TimescaleUnavailable(_)), "{what}: {err:?}");
        let text = err.to_string();
        assert!(text.contains("holds the TimescaleDB extension"), "{what}: {text}");
        assert!(text.contains("set database.timescaledb = \"auto\""), "{what}: {text}");
    }
    let (http, mqtt) = (free_port(), free_port());
    let out = server_binary(&["machine", "list"], &dir, http, mqtt)
        .env("OEE_DATABASE__TIMESCALEDB", "off")
        .env("OEE_DATABASE__EMBEDDED__SETTINGS__SHARED_PRELOAD_LIBRARIES", "pg_stat_statements")
        .output()
        .await
        .expect("run oee-server");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("set database.timescaledb = \"auto\""), "{stderr}");
    assert!(!stderr.contains("migration failed"), "{stderr}");
}
