//! The OEE report at scale: `cargo bench --bench oee_report`.
//!
//! Starts the web service on an embedded PostgreSQL cluster in a fresh temporary directory, writes a
//! history for 100 machines (a state change every 5 minutes, Up / Down / Closed in turn, one job a day
//! with an ideal cycle time, production every hour) over `OEE_BENCH_DAYS` days (default 365), then times
//! `GET /api/v1/oee?group=…&by=day` over the last 30 days: cold (empty daily cache), warm (cache filled),
//! and after a backdated change to one machine's history. Prints the figures with the data size
//! (`OEE_BENCH_EXPLAIN=1`: also how PostgreSQL runs the warm path's reads).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use chrono::Utc;
use oee_core::Config;
use oee_server::{App, Services};

const MACHINES: usize = 100;

fn bench_dir() -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let root = std::env::temp_dir();
    if let Ok(entries) = std::fs::read_dir(&root) {
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().to_string();
            if let Some(pid) = name.strip_prefix("oee-report-bench-").and_then(|p| p.parse::<u32>().ok())
                && !Path::new(&format!("/proc/{pid}")).exists()
            {
                let _ = std::fs::remove_dir_all(e.path());
            }
        }
    }
    let dir = root.join(format!("oee-report-bench-{}", std::process::id()));
    let data = dir.join("data");
    std::fs::create_dir_all(&data).unwrap_or_else(|e| panic!("cannot create {}: {e}", data.display()));
    for d in [&dir, &data] {
        std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o755))
            .unwrap_or_else(|e| panic!("cannot chmod {}: {e}", d.display()));
    }
    dir
}

async fn timed_report(client: &reqwest::Client, url: &str) -> (Duration, serde_json::Value) {
    let started = Instant::now();
    let r = client.get(url).send().await.expect("request the report");
    assert_eq!(r.status().as_u16(), 200, "the report failed");
    let body: serde_json::Value = r.json().await.expect("a JSON report");
    (started.elapsed(), body)
}

#[tokio::main]
async fn main() {
    let days: i64 = std::env::var("OEE_BENCH_DAYS").ok().and_then(|v| v.parse().ok()).unwrap_or(365);
    let dir = bench_dir();
    let mut config = Config { data_dir: dir.join("data"), ..Config::default() };
    config.plant.timezone = "UTC".into();
    config.http.listen = SocketAddr::from(([127, 0, 0, 1], 0));
    config.database.embedded.settings.insert("shared_buffers".into(), "512MB".into());
    let services = Services { broker: false, ingest: false, bridge: false, web: true };
    let app = App::start(&config, services).await.expect("start the server");
    let pool = app.db.pool.clone();
    let http = format!("http://{}", app.http_addr.expect("the web service serves HTTP"));

    let mut machines = Vec::new();
    for i in 1..=MACHINES {
        let m = oee_core::store::machine::add_machine(&pool, &format!("m-{i:03}"), chrono_tz::Tz::UTC, Utc::now())
            .await
            .expect("add a machine");
        machines.push(m.id);
    }
    let group: i32 = sqlx::query_scalar("SELECT group_id FROM machine WHERE id = $1")
        .bind(machines[0])
        .fetch_one(&pool)
        .await
        .expect("the machines' group");

    eprintln!("oee_report bench: writing {days} days of history for {MACHINES} machines");
    let started = Instant::now();
    let steps = [
        "DELETE FROM activity",
        // one state change every 5 minutes up to now, the last one open
        "INSERT INTO activity (machine_id, activity_code_id, start_time, end_time) \
         SELECT m.id, (ARRAY[1, 1, 1, 2, 1, 3])[1 + (i % 6)], t0 + i * interval '5 minutes', \
                CASE WHEN i = n - 1 THEN NULL ELSE t0 + (i + 1) * interval '5 minutes' END \
         FROM machine m, \
              (SELECT date_trunc('hour', now()) - $1 * interval '1 day' AS t0, $1 * 288 + \
                      (extract(epoch FROM now() - date_trunc('hour', now())) / 300)::int AS n) p, \
              generate_series(0, p.n - 1) i",
        "UPDATE machine m SET current_code_id = a.activity_code_id, current_since = a.start_time \
         FROM activity a WHERE a.machine_id = m.id AND a.end_time IS NULL",
        // one job a day with an ideal cycle time of 20 s
        "INSERT INTO job (machine_id, job_number, ideal_cycle_time_s, start_time, end_time, active) \
         SELECT m.id, 'J' || d, 20, date_trunc('day', now()) - d * interval '1 day', \
                date_trunc('day', now()) - (d - 1) * interval '1 day', false \
         FROM machine m, generate_series(1, $1) d",
        // production every hour, within the day's job
        "INSERT INTO production_quantity (machine_id, job_id, start_time, end_time, quantity_good, quantity_rejects) \
         SELECT j.machine_id, j.id, j.start_time + h * interval '1 hour', j.start_time + (h + 1) * interval '1 hour', \
                100 + (h * 7) % 50, h % 4 \
         FROM job j, generate_series(0, 23) h",
        "ANALYZE",
    ];
    for s in steps {
        let q = sqlx::query(sqlx::AssertSqlSafe(s.to_string()));
        let q = if s.contains("$1") { q.bind(days as i32) } else { q };
        q.execute(&pool).await.unwrap_or_else(|e| panic!("{s}: {e}"));
    }
    let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM activity").fetch_one(&pool).await.unwrap();
    let in_window: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM activity WHERE start_time >= date_trunc('day', now()) - interval '29 days'",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    eprintln!("  {rows} activities ({in_window} in the report's window), written in {:.1?}", started.elapsed());

    let today = Utc::now().date_naive();
    let from = today - chrono::Duration::days(29);
    let to = today + chrono::Duration::days(1);
    let url = format!("{http}/api/v1/oee?group={group}&from={from}&to={to}&by=day");
    let client = reqwest::Client::new();
    let (cold, body) = timed_report(&client, &url).await;
    eprintln!("  cold (empty cache): {cold:.2?}, cache {}", body["cache"]);
    let mut warm = Vec::new();
    for _ in 0..5 {
        let (t, body) = timed_report(&client, &url).await;
        assert_eq!(body["cache"]["days_computed"], 0);
        warm.push(t);
    }
    warm.sort();
    if std::env::var("OEE_BENCH_EXPLAIN").is_ok() {
        // How PostgreSQL runs the warm path's reads (today's stretch of every machine).
        let today_start = today.and_hms_opt(0, 0, 0).unwrap_or_default().and_utc();
        for q in [
            "SELECT a.machine_id, a.activity_code_id, a.start_time, a.end_time \
             FROM unnest($1::int[], $2::timestamptz[], $3::timestamptz[]) AS r (id, lo, hi) CROSS JOIN LATERAL ( \
                 SELECT machine_id, activity_code_id, start_time, end_time FROM activity \
                 WHERE machine_id = r.id AND start_time >= r.lo AND start_time < r.hi OFFSET 0) AS a \
             UNION ALL \
             SELECT a.machine_id, a.activity_code_id, a.start_time, a.end_time \
             FROM unnest($1::int[], $2::timestamptz[], $3::timestamptz[]) AS r (id, lo, hi) CROSS JOIN LATERAL ( \
                 SELECT machine_id, activity_code_id, start_time, end_time FROM activity \
                 WHERE machine_id = r.id AND start_time < r.lo ORDER BY start_time DESC LIMIT 1) AS a \
             WHERE a.end_time IS NULL OR a.end_time > r.lo",
            "SELECT p.machine_id, p.start_time, p.end_time, p.quantity_good, p.quantity_rejects, \
         (SELECT j.ideal_cycle_time_s FROM job j WHERE j.id = p.job_id) \
             FROM unnest($1::int[], $2::timestamptz[], $3::timestamptz[]) AS r (id, lo, hi) CROSS JOIN LATERAL ( \
                 SELECT * FROM production_quantity WHERE machine_id = r.id AND end_time >= r.lo AND start_time <= r.hi \
                 OFFSET 0) AS p",
        ] {
            let plan: Vec<String> = sqlx::query_scalar(sqlx::AssertSqlSafe(format!("EXPLAIN ANALYZE {q}")))
                .bind(&machines)
                .bind(vec![today_start; machines.len()])
                .bind(vec![Utc::now(); machines.len()])
                .fetch_all(&pool)
                .await
                .expect("explain");
            eprintln!("{}", plan.join("\n"));
        }
    }
    eprintln!("  warm (cache filled), median of 5: {:.2?}", warm[2]);
    let m = machines[MACHINES / 2];
    sqlx::query(
        "UPDATE activity SET activity_code_id = 2 WHERE machine_id = $1 \
         AND start_time = date_trunc('day', now()) - interval '10 days' + interval '8 hours'",
    )
    .bind(m)
    .execute(&pool)
    .await
    .expect("backdated change");
    let (after, body) = timed_report(&client, &url).await;
    eprintln!("  after a backdated change to one machine's day: {after:.2?}, cache {}", body["cache"]);
    println!(
        "oee_report: {MACHINES} machines, {days} days of history ({rows} activities, {in_window} in the 30-day window), \
         by=day over 30 days: cold {cold:.2?}, warm {:.2?}, after one backdated change {after:.2?} ({} cores)",
        warm[2],
        std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1)
    );
    app.stop().await;
    let _ = std::fs::remove_dir_all(&dir);
}
