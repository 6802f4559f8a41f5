//! Retention and compression of the time series, in whichever mode the tests' database runs (TimescaleDB
//! hypertables, or plain tables with `OEE_TEST_TIMESCALEDB=off`): what is past its days goes and the rest
//! stays, compressed chunks still read the same, and the maintenance jobs run on their schedules, are
//! recorded, shown by `/health`, and run by one process at a time.

mod common;

use std::time::Duration;

use chrono::{DateTime, SubsecRound, TimeDelta, Utc};
use common::*;
use oee_core::config::{CompressionConfig, RetentionConfig};
use oee_core::store::retention::{self, COMPRESSION_UNAVAILABLE};
use oee_core::store::timescale::{self, Timescale};
use oee_ingest::maintenance::LEADER_LOCK;
use serde_json::Value;
use sqlx::{Connection, PgPool};

/// A week, the span of a `raw_event` chunk; telemetry's chunks (a day) divide it.
const WEEK: i64 = 7 * 24 * 3600;

/// A present that lies on a week boundary counted from 1970-01-01, as TimescaleDB's chunk boundaries do
/// (the last one before the real present), so that cuts a whole number of weeks back fall on chunk
/// boundaries: a chunk is then either wholly before a cut (dropped) or wholly after it (kept), and both
/// modes must leave exactly the same rows.
fn week_aligned_now() -> DateTime<Utc> {
    let now = Utc::now().timestamp();
    DateTime::from_timestamp(now - now.rem_euclid(WEEK), 0).expect("a time in range")
}

fn days(n: i64) -> TimeDelta {
    TimeDelta::days(n)
}

async fn add_readings(pool: &PgPool, machine: i32, key: &str, readings: &[(DateTime<Utc>, f64)]) {
    for (ts, value) in readings {
        sqlx::query("INSERT INTO telemetry (machine_id, key, ts, value) VALUES ($1, $2, $3, $4)")
            .bind(machine)
            .bind(key)
            .bind(ts)
            .bind(value)
            .execute(pool)
            .await
            .unwrap();
    }
}

async fn add_raw_events(pool: &PgPool, times: &[DateTime<Utc>]) {
    for at in times {
        sqlx::query(
            "INSERT INTO raw_event (received_at, topic, payload, status, error) \
             VALUES ($1, 'oee/v1/machines/x/state', '\\x7b7d', 400, 'no such machine')",
        )
        .bind(at)
        .execute(pool)
        .await
        .unwrap();
    }
}

async fn add_request_ids(pool: &PgPool, times: &[DateTime<Utc>]) {
    for (i, at) in times.iter().enumerate() {
        sqlx::query(
            "INSERT INTO command_log (request_id, machine_id, status, handled_at, kind) VALUES ($1, 1, 200, $2, 'state')",
        )
        .bind(format!("req-{i}"))
        .bind(at)
        .execute(pool)
        .await
        .unwrap();
    }
}

async fn times(pool: &PgPool, sql: &'static str) -> Vec<DateTime<Utc>> {
    sqlx::query_scalar(sql).fetch_all(pool).await.unwrap()
}

async fn telemetry_times(pool: &PgPool) -> Vec<DateTime<Utc>> {
    times(pool, "SELECT ts FROM telemetry ORDER BY ts").await
}

async fn raw_event_times(pool: &PgPool) -> Vec<DateTime<Utc>> {
    times(pool, "SELECT received_at FROM raw_event ORDER BY received_at").await
}

async fn request_id_times(pool: &PgPool) -> Vec<DateTime<Utc>> {
    times(pool, "SELECT handled_at FROM command_log ORDER BY handled_at").await
}

/// Which mode the database runs in, checked against the harness's wish.
async fn mode(pool: &PgPool) -> Timescale {
    let ts = timescale::status(pool).await.unwrap();
    assert_eq!(ts.active, timescale_mode() == oee_core::config::TimescaleMode::Auto, "{ts:?}");
    ts
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_removes_only_what_is_past_its_days() {
    let db = seeded_db().await;
    let pool = db.pool().await;
    let ts = mode(&pool).await;
    let now = week_aligned_now();
    // Cuts whole weeks back: telemetry 52 weeks, raw events 13, request ids 4.
    let cfg = RetentionConfig {
        telemetry_days: 364,
        raw_event_days: 91,
        request_id_days: 28,
        batch_rows: 2,
        ..RetentionConfig::default()
    };
    add_readings(
        &pool,
        1,
        "temperature",
        &[(now - days(400), 1.0), (now - days(365), 2.0), (now - days(363), 3.0), (now - days(10), 4.0)],
    )
    .await;
    add_raw_events(&pool, &[now - days(100), now - days(92), now - days(90), now - days(1)]).await;
    let old_ids = [now - days(40), now - days(35), now - days(31), now - days(30), now - days(29)];
    add_request_ids(&pool, &[&old_ids[..], &[now - days(27), now - TimeDelta::hours(1)]].concat()).await;

    // 0 days keeps a table for ever.
    let keep = RetentionConfig { telemetry_days: 0, raw_event_days: 0, request_id_days: 10_000, ..cfg.clone() };
    let report = retention::run(&pool, &keep, &ts, now).await.unwrap();
    assert_eq!((report.rows(), report.chunks()), (0, 0), "{report:?}");
    assert!(report.message().contains("telemetry: kept for ever"), "{}", report.message());
    assert_eq!(telemetry_times(&pool).await.len(), 4);
    assert_eq!(raw_event_times(&pool).await.len(), 4);

    let report = retention::run(&pool, &cfg, &ts, now).await.unwrap();
    assert_eq!(telemetry_times(&pool).await, vec![now - days(363), now - days(10)]);
    assert_eq!(raw_event_times(&pool).await, vec![now - days(90), now - days(1)]);
    assert_eq!(request_id_times(&pool).await, vec![now - days(27), now - TimeDelta::hours(1)]);

    let telemetry = report.table("telemetry").unwrap();
    let raw_event = report.table("raw_event").unwrap();
    assert_eq!(telemetry.cut, Some(now - days(364)));
    if ts.active {
        // Whole chunks: each of the two old readings and the two old raw events lay in a chunk of its own.
        assert!(telemetry.hypertable && raw_event.hypertable);
        assert_eq!((telemetry.chunks, telemetry.rows), (2, 0), "{report:?}");
        assert_eq!((raw_event.chunks, raw_event.rows), (2, 0), "{report:?}");
        assert!(report.message().contains("telemetry: 2 chunks dropped before"), "{}", report.message());
    } else {
        assert_eq!((telemetry.chunks, telemetry.rows), (0, 2), "{report:?}");
        assert_eq!((raw_event.chunks, raw_event.rows), (0, 2), "{report:?}");
        assert!(report.message().contains("telemetry: 2 rows deleted before"), "{}", report.message());
    }
    // Request ids stay a plain table: deleted in batches of `batch_rows` (2, 2 and 1 here).
    let ids = report.table("command_log").unwrap();
    assert_eq!((ids.rows, ids.chunks, ids.hypertable), (5, 0, false), "{report:?}");

    // Nothing more is due.
    let again = retention::run(&pool, &cfg, &ts, now).await.unwrap();
    assert_eq!((again.rows(), again.chunks()), (0, 0), "{again:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hypertables_drop_only_whole_chunks_so_a_partly_old_chunk_stays() {
    let db = seeded_db().await;
    let pool = db.pool().await;
    let ts = mode(&pool).await;
    let now = week_aligned_now();
    // The cut falls half a day into a chunk (telemetry's chunks are a day or a week long).
    let cut = now - days(364) + TimeDelta::hours(12);
    add_readings(&pool, 2, "pressure", &[(cut - TimeDelta::hours(6), 1.0), (cut + TimeDelta::hours(6), 2.0)]).await;
    let cfg = RetentionConfig { telemetry_days: 364, ..RetentionConfig::default() };
    let report = retention::run(&pool, &cfg, &ts, cut + days(364)).await.unwrap();
    let left = telemetry_times(&pool).await;
    if ts.active {
        assert_eq!(left.len(), 2, "the chunk ends after the cut, so it stays whole: {report:?}");
    } else {
        assert_eq!(left, vec![cut + TimeDelta::hours(6)], "{report:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compressed_chunks_still_read_the_same_readings() {
    let db = seeded_db().await;
    let pool = db.pool().await;
    let ts = mode(&pool).await;
    // Whole seconds: PostgreSQL keeps microseconds.
    let now = Utc::now().trunc_subsecs(0);
    let old = now - days(30);
    let mut expected = Vec::new();
    for (machine, key) in [(1, "temperature"), (1, "pressure"), (2, "temperature")] {
        let readings: Vec<(DateTime<Utc>, f64)> =
            (0..50).map(|i| (old + TimeDelta::seconds(i * 60), f64::from(machine * 1000) + i as f64 / 4.0)).collect();
        add_readings(&pool, machine, key, &readings).await;
        expected.extend(readings.iter().map(|&(t, v)| (machine, key.to_string(), t, v)));
    }
    add_readings(&pool, 1, "temperature", &[(now - TimeDelta::hours(1), 99.5)]).await;
    expected.push((1, "temperature".into(), now - TimeDelta::hours(1), 99.5));
    expected.sort_by(|a, b| (a.0, &a.1, a.2).cmp(&(b.0, &b.1, b.2)));
    let read = || async {
        sqlx::query_as::<_, (i32, String, DateTime<Utc>, f64)>(
            "SELECT machine_id, key, ts, value FROM telemetry ORDER BY machine_id, key, ts",
        )
        .fetch_all(&pool)
        .await
        .unwrap()
    };

    let cfg = CompressionConfig { after_days: 7, ..CompressionConfig::default() };
    let report = retention::compress(&pool, &cfg, &ts, now).await.unwrap();
    if ts.compression() {
        assert!(report.chunks >= 1, "{report:?}");
        let compressed: Vec<(DateTime<Utc>, DateTime<Utc>, bool)> = sqlx::query_as(
            "SELECT range_start, range_end, is_compressed FROM timescaledb_information.chunks \
             WHERE hypertable_name = 'telemetry' ORDER BY range_start",
        )
        .fetch_all(&pool)
        .await
        .unwrap();
        for (start, end, is_compressed) in &compressed {
            let holds_old = *start <= old && old < *end;
            let holds_recent = *end > now - TimeDelta::hours(1);
            if holds_old {
                assert!(is_compressed, "the chunk of 30 days ago is compressed: {compressed:?}");
            }
            if holds_recent {
                assert!(!is_compressed, "the newest chunk is left alone: {compressed:?}");
            }
        }
        let settings: Vec<(String, Option<i16>, Option<i16>)> = sqlx::query_as(
            "SELECT attname::text, segmentby_column_index, orderby_column_index \
             FROM timescaledb_information.compression_settings WHERE hypertable_name = 'telemetry' ORDER BY attname",
        )
        .fetch_all(&pool)
        .await
        .unwrap();
        let segment: Vec<&str> = settings.iter().filter(|s| s.1.is_some()).map(|s| s.0.as_str()).collect();
        let order: Vec<&str> = settings.iter().filter(|s| s.2.is_some()).map(|s| s.0.as_str()).collect();
        assert_eq!((segment, order), (vec!["key", "machine_id"], vec!["ts"]), "{settings:?}");
        // A second run finds nothing left to compress.
        let again = retention::compress(&pool, &cfg, &ts, now).await.unwrap();
        assert_eq!(again.chunks, 0, "{again:?}");
    } else {
        assert_eq!(report.chunks, 0);
        assert!(report.message.starts_with(COMPRESSION_UNAVAILABLE), "{report:?}");
    }
    assert_eq!(read().await, expected, "every reading reads back with its value");

    let off = CompressionConfig { after_days: 0, ..cfg };
    let report = retention::compress(&pool, &off, &ts, now).await.unwrap();
    assert_eq!(report.chunks, 0);
    assert!(report.message.starts_with("off"), "{report:?}");
}

/// The maintenance runs as `/health` shows them.
async fn health(t: &TestApp) -> (u16, Value) {
    let r = t.client.get(format!("{}/health", t.http)).send().await.unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap())
}

async fn recorded(pool: &PgPool, job: &str) -> Option<retention::MaintenanceRun> {
    retention::maintenance_runs(pool).await.unwrap().into_iter().find(|r| r.job == job)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_jobs_run_on_their_schedules_are_recorded_and_shown_by_health() {
    let db = seeded_db().await;
    let setup = db.pool().await;
    let ts = mode(&setup).await;
    // Whole seconds: PostgreSQL keeps microseconds.
    let now = Utc::now().trunc_subsecs(0);
    add_readings(&setup, 1, "temperature", &[(now - days(400), 1.0), (now - TimeDelta::hours(1), 2.0)]).await;
    let mut config = test_config(&db);
    // Every second, so the test need not wait for the night.
    config.retention.schedule = "* * * * * *".into();
    config.compression.schedule = "* * * * * *".into();
    config.telemetry.rollup_every_s = 1;
    let t = spawn_app_with(config, db, oee_server::Services::ALL).await;

    within(Duration::from_secs(30), "retention and compression ran", || async {
        let r = recorded(&t.pool, "retention").await;
        let c = recorded(&t.pool, "compression").await;
        r.is_some_and(|r| r.finished_at.is_some()) && c.is_some_and(|c| c.finished_at.is_some())
    })
    .await;
    assert_eq!(telemetry_times(&t.pool).await, vec![now - TimeDelta::hours(1)], "the year-old reading is gone");
    let run = recorded(&t.pool, "retention").await.unwrap();
    assert!(run.ok, "{run:?}");
    assert!(run.message.contains("telemetry: ") && run.message.contains("command_log: "), "{run:?}");
    // The rollups are refreshed every telemetry.rollup_every_s.
    eventually("the telemetry rollups were refreshed", || async {
        recorded(&t.pool, "telemetry_rollup").await.is_some()
    })
    .await;

    let (status, body) = health(&t).await;
    assert_eq!((status, body["status"].as_str()), (200, Some("ok")), "{body}");
    let m = &body["maintenance"];
    for job in ["retention", "compression", "telemetry_rollup"] {
        assert_eq!(m[job]["ok"], true, "{body}");
        assert!(m[job]["last_run"].as_str().is_some_and(|s| s.parse::<DateTime<Utc>>().is_ok()), "{body}");
        assert!(m[job]["rows"].is_i64() && m[job]["chunks"].is_i64(), "{body}");
    }
    let compression = m["compression"]["message"].as_str().unwrap();
    if ts.compression() {
        assert!(compression.contains("telemetry: ") && compression.contains("chunks compressed"), "{body}");
    } else {
        assert!(compression.starts_with(COMPRESSION_UNAVAILABLE), "{body}");
    }

    // A failing run is recorded and shown, the server stays healthy, and the next run tries again.
    sqlx::query("ALTER TABLE command_log RENAME TO command_log_away").execute(&t.pool).await.unwrap();
    within(Duration::from_secs(30), "a failed retention run is recorded", || async {
        recorded(&t.pool, "retention").await.is_some_and(|r| !r.ok)
    })
    .await;
    let (status, body) = health(&t).await;
    assert_eq!((status, body["status"].as_str()), (200, Some("ok")), "{body}");
    assert_eq!(body["maintenance"]["retention"]["ok"], false, "{body}");
    assert!(body["maintenance"]["retention"]["message"].as_str().unwrap().contains("command_log"), "{body}");
    sqlx::query("ALTER TABLE command_log_away RENAME TO command_log").execute(&t.pool).await.unwrap();
    within(Duration::from_secs(30), "retention succeeds again", || async {
        recorded(&t.pool, "retention").await.is_some_and(|r| r.ok)
    })
    .await;

    // The server holds the jobs' lock, so a second ingest process could not run them too; once it stops,
    // another can take them over.
    let mut other = sqlx::PgConnection::connect_with(&t.db.options).await.unwrap();
    let taken: bool =
        sqlx::query_scalar("SELECT pg_try_advisory_lock($1)").bind(LEADER_LOCK).fetch_one(&mut other).await.unwrap();
    assert!(!taken, "the running server holds the maintenance lock");
    let TestApp { app, .. } = t;
    app.stop().await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let taken: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock($1)")
            .bind(LEADER_LOCK)
            .fetch_one(&mut other)
            .await
            .unwrap();
        if taken {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "the stopped server still holds the maintenance lock");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}
