//! The history the report and pages benches read: 100 machines × a year (10 × 30 days in a quick run),
//! generated once into an embedded PostgreSQL cluster and, with `OEE_REPORT_BENCH_DIR`, kept for later runs.
//!
//! Each machine alternates about every 5 minutes between a working activity (Up in shift, Closed outside
//! it) and a stop (Down in shift, Overtime outside it); jobs run back to back, three a day; a production
//! record covers each 15 minutes. Everything is inserted with set-based SQL, then checked.
//!
//! Environment:
//! - `OEE_BENCH_QUICK=1`: 10 machines × 30 days, to check a bench itself.
//! - `OEE_REPORT_BENCH_DIR=/some/dir`: keep the dataset there and reuse it on later runs (it is generated
//!   when the directory holds none). Without it, the data lives in a temporary directory removed at the end.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use oee_core::Config;
use oee_core::store::{Database, report, seed};
use oee_server::{App, Services};
use serde_json::Value;
use sqlx::PgPool;
use tokio::time::Instant;

use crate::server;

/// Seconds between activity slots: each machine changes state about this often.
const ACTIVITY_SLOT_S: i64 = 300;
/// Seconds covered by one production record.
const PRODUCTION_SLOT_S: i64 = 900;
/// Jobs run back to back, this long each (three a day).
const JOB_S: i64 = 8 * 3600;
/// Production records per job (jobs and production slots are aligned).
const SLOTS_PER_JOB: i64 = JOB_S / PRODUCTION_SLOT_S;
/// The plant's shift, used to pick codes and quantities: Monday to Friday, 06:00–22:00 UTC.
const SHIFT_FIRST_HOUR: i32 = 6;
const SHIFT_LAST_HOUR: i32 = 21;
/// What marks a complete dataset in a kept directory.
const DATASET_FILE: &str = "report-bench-dataset.json";

/// The size of a run of a bench that reads the history.
#[derive(Clone, Copy)]
pub struct Shape {
    pub size: Size,
    /// Warm repeats of each request.
    pub repeats: usize,
    /// The process gives up after this long.
    pub watchdog: Duration,
    /// A quick run (`OEE_BENCH_QUICK`): a small dataset, `BENCHMARKS.md` left alone.
    pub quick: bool,
}

impl Shape {
    /// The run `OEE_BENCH_QUICK` asks for, given up after `quick_watchdog` or `full_watchdog`.
    pub fn from_env(quick_watchdog: Duration, full_watchdog: Duration) -> Shape {
        let quick = std::env::var("OEE_BENCH_QUICK").is_ok_and(|v| !v.is_empty() && v != "0");
        let size = Size::for_run(quick);
        if quick {
            Shape { size, repeats: 3, watchdog: quick_watchdog, quick }
        } else {
            Shape { size, repeats: 5, watchdog: full_watchdog, quick }
        }
    }
}

/// How much history: machines and days.
#[derive(Clone, Copy)]
pub struct Size {
    pub machines: i64,
    pub days: i64,
}

impl Size {
    /// 10 machines × 30 days for a quick run, else 100 × 365.
    fn for_run(quick: bool) -> Size {
        if quick { Size { machines: 10, days: 30 } } else { Size { machines: 100, days: 365 } }
    }

    /// Activities per machine; the last one is open. Two slots short of the whole span, so that even
    /// the last (shifted) start lies before the end of the history.
    fn activities_per_machine(&self) -> i64 {
        self.days * 86_400 / ACTIVITY_SLOT_S - 2
    }

    fn jobs_per_machine(&self) -> i64 {
        self.days * 86_400 / JOB_S
    }

    /// Production records per machine; the last slot is left out so that no record ends after the history.
    fn production_per_machine(&self) -> i64 {
        self.days * 86_400 / PRODUCTION_SLOT_S - 1
    }
}

/// A generated dataset: what it holds and what making it cost. Kept beside the cluster for reuse.
pub struct Dataset {
    pub machines: i64,
    pub days: i64,
    /// The machine group that holds every machine of the dataset.
    pub group: i32,
    /// The history runs from `end - days` to `end`; the open activity and the running job start before it.
    pub end: DateTime<Utc>,
    pub generated_at: DateTime<Utc>,
    /// Seconds spent inserting, in `VACUUM ANALYZE` and in `CHECKPOINT`.
    pub load_s: f64,
    pub vacuum_s: f64,
    pub checkpoint_s: f64,
    /// Whether this run made it (or reused one made earlier).
    pub reused: bool,
}

impl Dataset {
    fn to_json(&self) -> Value {
        serde_json::json!({
            "machines": self.machines,
            "days": self.days,
            "group": self.group,
            "end": self.end,
            "generated_at": self.generated_at,
            "load_s": self.load_s,
            "vacuum_s": self.vacuum_s,
            "checkpoint_s": self.checkpoint_s,
        })
    }

    fn from_json(v: &Value) -> Option<Dataset> {
        let time = |k: &str| v.get(k)?.as_str()?.parse::<DateTime<Utc>>().ok();
        Some(Dataset {
            machines: v.get("machines")?.as_i64()?,
            days: v.get("days")?.as_i64()?,
            group: i32::try_from(v.get("group")?.as_i64()?).ok()?,
            end: time("end")?,
            generated_at: time("generated_at")?,
            load_s: v.get("load_s")?.as_f64()?,
            vacuum_s: v.get("vacuum_s")?.as_f64()?,
            checkpoint_s: v.get("checkpoint_s")?.as_f64()?,
            reused: true,
        })
    }

    fn generation_s(&self) -> f64 {
        self.load_s + self.vacuum_s + self.checkpoint_s
    }

    /// What making the dataset cost, and when it was made if an earlier run made it.
    pub fn generation_line(&self) -> String {
        format!(
            "{:.0} s (inserts {:.0} s, `VACUUM ANALYZE` {:.0} s, `CHECKPOINT` {:.0} s){}",
            self.generation_s(),
            self.load_s,
            self.vacuum_s,
            self.checkpoint_s,
            if self.reused {
                format!(
                    "; generated by an earlier run on {} and reused",
                    self.generated_at.format("%Y-%m-%d %H:%M UTC")
                )
            } else {
                String::new()
            }
        )
    }
}

/// The cluster that holds a run's history: where it lives, how to start the server on it, and what it holds.
pub struct Cluster {
    pub dir: PathBuf,
    /// Whether the directory is kept after the run (`OEE_REPORT_BENCH_DIR`).
    pub keep: bool,
    pub config: Config,
    pub dataset: Dataset,
}

impl Cluster {
    /// The dataset of `size` for the bench `name`: the kept one when `OEE_REPORT_BENCH_DIR` holds it, else
    /// generated (into a fresh temporary directory when that variable is not set).
    pub async fn open(name: &str, size: Size) -> Cluster {
        let (dir, keep) = bench_dir(name);
        let config = bench_config(&dir);
        eprintln!(
            "{name} bench: {} machines × {} days under {}{}",
            size.machines,
            size.days,
            dir.display(),
            if keep { " (kept for reuse)" } else { "" }
        );
        let dataset = match read_dataset(&dir, size, &config) {
            Some(d) => {
                eprintln!("reusing the dataset generated {}", d.generated_at.format("%Y-%m-%d %H:%M UTC"));
                d
            }
            None => generate(&config, &dir, size).await,
        };
        Cluster { dir, keep, config, dataset }
    }

    /// Removes the data of a run whose directory is not kept.
    pub fn finish(&self) {
        if self.keep {
            eprintln!("kept the dataset in {}", self.dir.display());
        } else if let Err(e) = std::fs::remove_dir_all(&self.dir) {
            eprintln!("could not remove {}: {e}", self.dir.display());
        }
    }

    /// Starts the whole server on the dataset's cluster; its broker gets a port of its own, as one stopped
    /// earlier may still hold its port.
    pub async fn start_server(&self) -> App {
        let mut config = self.config.clone();
        let mqtt_port = server::free_port();
        config.broker.listen = SocketAddr::from(([127, 0, 0, 1], mqtt_port));
        config.mqtt.port = mqtt_port;
        tokio::time::timeout(Duration::from_secs(180), App::start(&config, Services::ALL))
            .await
            .expect("the server did not start within 180 s")
            .expect("start the server")
    }

    /// The machines of the dataset's group.
    pub async fn machine_ids(&self) -> Vec<i32> {
        let db = Database::open(&self.config).await.expect("open the database");
        let ids = report::group_machines(&db.pool, self.dataset.group)
            .await
            .expect("read the group's machines")
            .expect("the dataset's machine group exists");
        db.close().await;
        assert!(!ids.is_empty(), "the dataset's machine group has no machines");
        ids
    }
}

/// The directory for this run, and whether to keep it: `OEE_REPORT_BENCH_DIR` when set, else a fresh
/// temporary one (those of earlier runs whose process is gone are removed).
fn bench_dir(name: &str) -> (PathBuf, bool) {
    match std::env::var_os("OEE_REPORT_BENCH_DIR").filter(|v| !v.is_empty()) {
        Some(d) => {
            let dir = PathBuf::from(d);
            server::prepare_dir(&dir);
            (dir, true)
        }
        None => (server::fresh_dir(&format!("oee-{name}-bench")), false),
    }
}

fn bench_config(dir: &Path) -> Config {
    let mut c = server::loopback_config(dir);
    let settings = &mut c.database.embedded.settings;
    // Bulk loading: no checkpoint in the middle of it, and room for VACUUM. Neither changes how reads run.
    settings.insert("max_wal_size".into(), "8GB".into());
    settings.insert("maintenance_work_mem".into(), "256MB".into());
    c
}

/// The dataset a kept directory holds, when it matches this run's size.
fn read_dataset(dir: &Path, size: Size, config: &Config) -> Option<Dataset> {
    let file = dir.join(DATASET_FILE);
    let Ok(text) = std::fs::read_to_string(&file) else {
        // The description is written last: a cluster without one is what an interrupted generation left.
        if config.embedded_db_dir().join("PG_VERSION").exists() {
            panic!(
                "{} holds a database but no complete dataset (an earlier generation was interrupted): remove the \
                 directory to generate it again",
                dir.display()
            );
        }
        return None;
    };
    let d = serde_json::from_str::<Value>(&text).ok().as_ref().and_then(Dataset::from_json).unwrap_or_else(|| {
        panic!(
            "{} is not a dataset description: remove {} to generate the dataset again",
            file.display(),
            dir.display()
        )
    });
    if d.machines != size.machines || d.days != size.days {
        panic!(
            "{} holds {} machines × {} days, this run wants {} × {}: use another OEE_REPORT_BENCH_DIR or remove it",
            dir.display(),
            d.machines,
            d.days,
            size.machines,
            size.days
        );
    }
    Some(d)
}

// ---------------------------------------------------------------------------------------------------
// Generation

/// Fills the database with the history, all set-based: one statement per machine and table.
async fn generate(config: &Config, dir: &Path, size: Size) -> Dataset {
    let db = tokio::time::timeout(Duration::from_secs(180), Database::open(config))
        .await
        .expect("the database did not open within 180 s")
        .expect("open the database");
    let pool = &db.pool;
    seed::seed_first_run(pool, Utc::now()).await.expect("seed the database");

    let generated_at = Utc::now();
    // The history ends on a 15-minute boundary, so activity, job and production slots line up.
    let end_secs = generated_at.timestamp() - generated_at.timestamp().rem_euclid(PRODUCTION_SLOT_S);
    let end = DateTime::from_timestamp(end_secs, 0).expect("a representable time");
    let start = end - TimeDelta::days(size.days);
    let started = Instant::now();

    let group: i32 = sqlx::query_scalar("INSERT INTO machine_group (name) VALUES ('Report bench') RETURNING id")
        .fetch_one(pool)
        .await
        .expect("add the machine group");
    let machines: Vec<i32> = sqlx::query_scalar(
        "INSERT INTO machine (name, group_id, current_code_id, current_since, created_at) \
         SELECT format('report-bench-%s', lpad(n::text, 3, '0')), $1, 3, $2, $2 \
         FROM generate_series(1, $3::int) AS n ORDER BY n RETURNING id",
    )
    .bind(group)
    .bind(start)
    .bind(size.machines as i32)
    .fetch_all(pool)
    .await
    .expect("add the machines");

    for (i, &m) in machines.iter().enumerate() {
        let t = Instant::now();
        insert_activities(pool, m, start, size.activities_per_machine()).await;
        insert_jobs(pool, m, start, size.jobs_per_machine()).await;
        insert_production(pool, m, start, size.production_per_machine()).await;
        if i == 0 || (i + 1) % 10 == 0 {
            eprintln!(
                "  machine {}/{}: {:.1} s ({:.0} s so far)",
                i + 1,
                machines.len(),
                t.elapsed().as_secs_f64(),
                started.elapsed().as_secs_f64()
            );
        }
    }
    // The machine row mirrors its open activity and running job.
    sqlx::query(
        "UPDATE machine m SET current_code_id = a.activity_code_id, current_since = a.start_time, \
             active_job_id = j.id \
         FROM activity a, job j \
         WHERE m.group_id = $1 AND a.machine_id = m.id AND a.end_time IS NULL AND j.machine_id = m.id AND j.active",
    )
    .bind(group)
    .execute(pool)
    .await
    .expect("set the machines' current state");
    let load_s = started.elapsed().as_secs_f64();
    eprintln!("  inserted in {load_s:.1} s; VACUUM ANALYZE");

    let t = Instant::now();
    sqlx::raw_sql("VACUUM ANALYZE machine, activity, job, production_quantity").execute(pool).await.expect("vacuum");
    let vacuum_s = t.elapsed().as_secs_f64();
    let t = Instant::now();
    sqlx::raw_sql("CHECKPOINT").execute(pool).await.expect("checkpoint");
    let checkpoint_s = t.elapsed().as_secs_f64();
    eprintln!("  VACUUM ANALYZE {vacuum_s:.1} s, CHECKPOINT {checkpoint_s:.1} s; checking the history");

    check_history(pool, &machines, size).await;
    db.close().await;
    let dataset = Dataset {
        machines: size.machines,
        days: size.days,
        group,
        end,
        generated_at,
        load_s,
        vacuum_s,
        checkpoint_s,
        reused: false,
    };
    let file = dir.join(DATASET_FILE);
    std::fs::write(&file, dataset.to_json().to_string())
        .unwrap_or_else(|e| panic!("cannot write {}: {e}", file.display()));
    dataset
}

/// SQL for "slot time `t` is inside the plant's shift".
fn in_shift_sql(t: &str) -> String {
    format!(
        "(extract(isodow FROM {t} AT TIME ZONE 'UTC') <= 5 \
          AND extract(hour FROM {t} AT TIME ZONE 'UTC') BETWEEN {SHIFT_FIRST_HOUR} AND {SHIFT_LAST_HOUR})"
    )
}

/// One activity per 5-minute slot, alternating between a long "working" activity (even slots: Up in
/// shift, Closed outside it) and a short "stopped" one (odd slots: Down in shift, Overtime outside it),
/// so that every row is a change of code. Starts are shifted within their slot by a per-machine amount
/// (how long the machine works) and a pseudo-random jitter under 40 s, except the first, which starts
/// with the history; every activity ends where the next one starts, and the last one is open.
async fn insert_activities(pool: &PgPool, machine: i32, start: DateTime<Utc>, count: i64) {
    // Odd slots start this many seconds into their slot: 200–259 s, always under the slot length minus
    // the largest jitter, so starts increase strictly.
    let work_s = 200 + i64::from(machine) * 37 % 60;
    let sql = format!(
        "INSERT INTO activity (machine_id, activity_code_id, start_time, end_time) \
         SELECT $1, \
                CASE WHEN {in_shift} THEN (CASE WHEN k % 2 = 0 THEN 1 ELSE 2 END) \
                     ELSE (CASE WHEN k % 2 = 0 THEN 3 ELSE 4 END) END, \
                CASE WHEN k = 0 THEN $2 \
                     ELSE $2 + (k * {slot} + (k % 2) * $4 + ($1 * 7919 + k * 104729) % 40) * interval '1 second' END, \
                CASE WHEN k < $3 - 1 THEN \
                    $2 + ((k + 1) * {slot} + ((k + 1) % 2) * $4 + ($1 * 7919 + (k + 1) * 104729) % 40) \
                         * interval '1 second' END \
         FROM generate_series(0::bigint, $3 - 1) AS k",
        in_shift = in_shift_sql(&format!("($2 + k * interval '{ACTIVITY_SLOT_S} seconds')")),
        slot = ACTIVITY_SLOT_S,
    );
    sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(i64::from(machine))
        .bind(start)
        .bind(count)
        .bind(work_s)
        .execute(pool)
        .await
        .unwrap_or_else(|e| panic!("insert the activities of machine {machine}: {e}"));
}

/// Back-to-back 8-hour jobs with ideal cycle times of 20–36.5 s; the last one is still running.
async fn insert_jobs(pool: &PgPool, machine: i32, start: DateTime<Utc>, count: i64) {
    let sql = format!(
        "INSERT INTO job (machine_id, job_number, part_number, ideal_cycle_time_s, start_time, end_time, active) \
         SELECT $1, format('J%s-%s', $1, j), format('P%s', j % 7), \
                20 + ($1 * 13) % 10 + (j % 4) * 2.5, \
                $2 + j * interval '{JOB_S} seconds', \
                CASE WHEN j < $3 - 1 THEN $2 + (j + 1) * interval '{JOB_S} seconds' END, \
                j = $3 - 1 \
         FROM generate_series(0::bigint, $3 - 1) AS j"
    );
    sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(machine)
        .bind(start)
        .bind(count)
        .execute(pool)
        .await
        .unwrap_or_else(|e| panic!("insert the jobs of machine {machine}: {e}"));
}

/// One production record per 15 minutes, in the job running then: about 88 % of the ideal count in
/// shift and 10 % outside it, with 0–2 rejects.
async fn insert_production(pool: &PgPool, machine: i32, start: DateTime<Utc>, count: i64) {
    let sql = format!(
        "INSERT INTO production_quantity (machine_id, job_id, start_time, end_time, quantity_good, quantity_rejects) \
         SELECT $1, j.id, t.s, t.s + interval '{PRODUCTION_SLOT_S} seconds', \
                t.total - least(t.total, (p + $1) % 3), least(t.total, (p + $1) % 3) \
         FROM generate_series(0::bigint, $3 - 1) AS p \
         CROSS JOIN LATERAL (SELECT $2 + p * interval '{PRODUCTION_SLOT_S} seconds' AS s) AS b \
         JOIN job j ON j.machine_id = $1 AND j.start_time = $2 + (p / {SLOTS_PER_JOB}) * interval '{JOB_S} seconds' \
         CROSS JOIN LATERAL (SELECT b.s, \
                floor({PRODUCTION_SLOT_S} * (CASE WHEN {in_shift} THEN 0.88 ELSE 0.10 END) \
                      / j.ideal_cycle_time_s)::bigint AS total) AS t",
        in_shift = in_shift_sql("b.s"),
    );
    sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(machine)
        .bind(start)
        .bind(count)
        .execute(pool)
        .await
        .unwrap_or_else(|e| panic!("insert the production of machine {machine}: {e}"));
}

/// Fails the run when the generated history is not what the schema and the server expect.
async fn check_history(pool: &PgPool, machines: &[i32], size: Size) {
    let t = Instant::now();
    let counts: (i64, i64, i64) = sqlx::query_as(
        "SELECT (SELECT count(*) FROM activity WHERE machine_id = ANY($1)), \
                (SELECT count(*) FROM job WHERE machine_id = ANY($1)), \
                (SELECT count(*) FROM production_quantity WHERE machine_id = ANY($1))",
    )
    .bind(machines)
    .fetch_one(pool)
    .await
    .expect("count the rows");
    let n = machines.len() as i64;
    assert_eq!(
        counts,
        (n * size.activities_per_machine(), n * size.jobs_per_machine(), n * size.production_per_machine()),
        "rows generated (activities, jobs, production records)"
    );
    // Every activity ends where the next one starts; only the last one is open.
    let gaps: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM (SELECT start_time, end_time, activity_code_id, \
             lead(start_time) OVER w AS next_start, lag(activity_code_id) OVER w AS previous_code \
           FROM activity WHERE machine_id = ANY($1) \
           WINDOW w AS (PARTITION BY machine_id ORDER BY start_time)) a \
         WHERE end_time IS DISTINCT FROM next_start OR end_time <= start_time OR previous_code = activity_code_id",
    )
    .bind(machines)
    .fetch_one(pool)
    .await
    .expect("check activity continuity");
    assert_eq!(gaps, 0, "activities that do not end where the next one starts, are empty, or repeat the previous code");
    // The machine row matches its open activity and running job.
    let mismatched: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM machine m \
         LEFT JOIN activity a ON a.machine_id = m.id AND a.end_time IS NULL \
         LEFT JOIN job j ON j.machine_id = m.id AND j.active \
         WHERE m.id = ANY($1) AND (a.id IS NULL OR j.id IS NULL OR m.current_code_id <> a.activity_code_id \
             OR m.current_since <> a.start_time OR m.active_job_id IS DISTINCT FROM j.id)",
    )
    .bind(machines)
    .fetch_one(pool)
    .await
    .expect("check the machines' current state");
    assert_eq!(mismatched, 0, "machines whose current state does not match their open activity and job");
    eprintln!("  history checked in {:.1} s", t.elapsed().as_secs_f64());
}
