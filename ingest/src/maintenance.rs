//! The server's maintenance jobs: retention (old time series dropped), compression (old chunks compressed)
//! and the telemetry rollup refresh.
//!
//! Retention and compression run on cron schedules in the plant's time zone, the rollup refresh every
//! `telemetry.rollup_every_s` seconds. They are the server's own jobs calling `drop_chunks` and
//! `compress_chunk` directly, not TimescaleDB policies: TimescaleDB's job runner fails on PostgreSQL 15.20
//! and is missing from an Apache-only build. Each run is recorded in `maintenance_run` (shown by `/health`)
//! and logged; a failed run is recorded and logged as a warning, and the next run simply tries again.
//!
//! Several ingest processes may run against one database; only one of them runs the jobs: the one holding
//! the session-level advisory lock [`LEADER_LOCK`] on a connection of its own. The others try to take it
//! at each of their own triggers, so when the holder stops (its connection closes and PostgreSQL releases
//! the lock) another takes over.
//!
//! tokio-cron-scheduler keeps the zone's UTC offset of the moment a job was made (its issue #107), so the
//! cron jobs are made again whenever the plant zone's offset has changed, checked every minute.

use std::time::Duration;

use chrono::{DateTime, Offset, TimeZone, Utc};
use chrono_tz::Tz;
use oee_core::config::{CompressionConfig, Config, RetentionConfig};
use oee_core::store::retention::{self, MaintenanceRun};
use oee_core::store::{telemetry, timescale};
use sqlx::postgres::PgConnectOptions;
use sqlx::{ConnectOptions, PgConnection, PgPool};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_cron_scheduler::JobScheduler;
use uuid::Uuid;

/// The advisory lock (one `bigint` key) held by the one process that runs the maintenance jobs.
pub const LEADER_LOCK: i64 = 0x6f65_655f_6d61_696e;

/// What the maintenance jobs do and when.
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    pub retention: RetentionConfig,
    pub compression: CompressionConfig,
    /// Time between refreshes of the telemetry rollups.
    pub rollup_every: Duration,
}

impl Settings {
    /// The settings of `config`.
    pub fn of(config: &Config) -> Settings {
        Settings {
            retention: config.retention.clone(),
            compression: config.compression.clone(),
            rollup_every: Duration::from_secs(config.telemetry.rollup_every_s.max(1)),
        }
    }
}

/// One of the maintenance jobs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Job {
    Retention,
    Compression,
    TelemetryRollup,
}

impl Job {
    /// The job's name in `maintenance_run` and in `/health`.
    pub fn name(self) -> &'static str {
        match self {
            Job::Retention => retention::RETENTION_JOB,
            Job::Compression => retention::COMPRESSION_JOB,
            Job::TelemetryRollup => retention::ROLLUP_JOB,
        }
    }
}

/// Runs `job` once, with `now` as the present its ages are counted from; records the run in
/// `maintenance_run` and logs it. A failure is recorded (`ok` false, the error as the message), not returned.
pub async fn run_job(pool: &PgPool, settings: &Settings, job: Job, now: DateTime<Utc>) -> MaintenanceRun {
    let started_at = Utc::now();
    let outcome: Result<(u64, u64, String), oee_core::Error> = async {
        let ts = timescale::status(pool).await?;
        Ok(match job {
            Job::Retention => {
                let r = retention::run(pool, &settings.retention, &ts, now).await?;
                (r.rows(), r.chunks(), r.message())
            }
            Job::Compression => {
                let r = retention::compress(pool, &settings.compression, &ts, now).await?;
                (0, r.chunks, r.message)
            }
            Job::TelemetryRollup => {
                let n = telemetry::refresh_rollups(pool, &ts, now).await?;
                (n, 0, format!("{n} rollup rows written"))
            }
        })
    }
    .await;
    let (ok, rows, chunks, message) = match outcome {
        Ok((rows, chunks, message)) => (true, rows, chunks, message),
        Err(e) => (false, 0, 0, e.to_string()),
    };
    let run = MaintenanceRun {
        job: job.name().to_string(),
        started_at,
        finished_at: Some(Utc::now()),
        ok,
        rows: i64::try_from(rows).unwrap_or(i64::MAX),
        chunks: i32::try_from(chunks).unwrap_or(i32::MAX),
        message,
    };
    let took = run.finished_at.unwrap_or(started_at) - started_at;
    if !ok {
        tracing::warn!(
            "maintenance job {} failed after {} ms: {}; it runs again at its next time",
            run.job,
            took.num_milliseconds(),
            run.message
        );
    } else if job == Job::TelemetryRollup {
        // Every minute by default: an INFO line each time would drown the log.
        tracing::debug!("maintenance job {} done in {} ms: {}", run.job, took.num_milliseconds(), run.message);
    } else {
        tracing::info!("maintenance job {} done in {} ms: {}", run.job, took.num_milliseconds(), run.message);
    }
    if let Err(e) = retention::record_run(pool, &run).await {
        tracing::warn!("cannot record the run of the maintenance job {}: {e}", run.job);
    }
    run
}

/// Starts the maintenance jobs of `settings`, cron schedules read in the plant's zone `tz`.
pub fn start(pool: PgPool, settings: Settings, tz: Tz) -> JoinHandle<()> {
    tokio::spawn(run(pool, settings, tz))
}

async fn run(pool: PgPool, settings: Settings, tz: Tz) {
    let (wake, mut woken) = mpsc::unbounded_channel();
    let mut schedules = Schedules::new(tz, &settings, wake.clone()).await;
    let mut leader = Leader::new(&pool);
    // The first refresh one period after start: until then queries read the newest hours live, and a
    // refresh at start would race whatever is written just after it.
    let mut rollup =
        tokio::time::interval_at(tokio::time::Instant::now() + settings.rollup_every, settings.rollup_every);
    rollup.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut zone = tokio::time::interval(Duration::from_secs(60));
    zone.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let first = tokio::select! {
            Some(job) = woken.recv() => job,
            _ = rollup.tick() => Job::TelemetryRollup,
            _ = zone.tick() => {
                if let Some(s) = &mut schedules {
                    s.update(Utc::now()).await;
                }
                continue;
            }
        };
        // Triggers that came while a long run went on are one run each, however many fired meanwhile.
        let mut due = vec![first];
        while let Ok(job) = woken.try_recv() {
            if !due.contains(&job) {
                due.push(job);
            }
        }
        for job in due {
            if leader.holds().await {
                run_job(&pool, &settings, job, Utc::now()).await;
            }
        }
    }
}

/// This process's claim to run the maintenance jobs: [`LEADER_LOCK`] on a connection of its own.
struct Leader {
    options: PgConnectOptions,
    conn: Option<PgConnection>,
    held: bool,
}

impl Leader {
    fn new(pool: &PgPool) -> Leader {
        let options = (*pool.connect_options()).clone().application_name("oee-server maintenance");
        Leader { options, conn: None, held: false }
    }

    /// Whether this process holds the lock now, taking it when it is free.
    async fn holds(&mut self) -> bool {
        if self.held {
            // A session's lock lasts as long as its connection: alive means still held.
            if let Some(c) = self.conn.as_mut()
                && sqlx::query("SELECT 1").execute(&mut *c).await.is_ok()
            {
                return true;
            }
            tracing::warn!("lost the connection that holds the maintenance jobs; taking them again when it is back");
            self.held = false;
            self.conn = None;
        }
        let conn = match &mut self.conn {
            Some(c) => c,
            None => match self.options.connect().await {
                Ok(c) => self.conn.insert(c),
                Err(e) => {
                    tracing::debug!("maintenance jobs wait for the database: {e}");
                    return false;
                }
            },
        };
        match sqlx::query_scalar::<_, bool>("SELECT pg_try_advisory_lock($1)").bind(LEADER_LOCK).fetch_one(conn).await {
            Ok(true) => {
                tracing::info!("this process runs the maintenance jobs (retention, compression, telemetry rollups)");
                self.held = true;
                true
            }
            Ok(false) => {
                tracing::debug!("another process runs the maintenance jobs");
                false
            }
            Err(e) => {
                tracing::debug!("maintenance jobs cannot ask for their lock: {e}");
                self.conn = None;
                false
            }
        }
    }
}

/// The cron jobs of retention and compression, which send their job to the loop when due.
struct Schedules {
    scheduler: JobScheduler,
    tz: Tz,
    wake: mpsc::UnboundedSender<Job>,
    wanted: [(Job, String); 2],
    jobs: Vec<Uuid>,
    /// The zone's offset when the jobs were made.
    offset: Option<i32>,
}

impl Schedules {
    async fn new(tz: Tz, settings: &Settings, wake: mpsc::UnboundedSender<Job>) -> Option<Schedules> {
        let scheduler = match JobScheduler::new().await {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!("retention and compression cannot be scheduled ({e}); the telemetry rollups still run");
                return None;
            }
        };
        if let Err(e) = scheduler.start().await {
            tracing::warn!("retention and compression cannot be scheduled ({e}); the telemetry rollups still run");
            return None;
        }
        let wanted = [
            (Job::Retention, settings.retention.schedule.clone()),
            (Job::Compression, settings.compression.schedule.clone()),
        ];
        let mut s = Schedules { scheduler, tz, wake, wanted, jobs: Vec::new(), offset: None };
        s.update(Utc::now()).await;
        Some(s)
    }

    /// Makes the cron jobs again when the zone's offset changed since they were made.
    async fn update(&mut self, now: DateTime<Utc>) {
        let offset = self.tz.offset_from_utc_datetime(&now.naive_utc()).fix().local_minus_utc();
        if self.offset == Some(offset) {
            return;
        }
        for id in self.jobs.drain(..) {
            let _ = self.scheduler.remove(&id).await;
        }
        for (job, expr) in &self.wanted {
            let (job, wake) = (*job, self.wake.clone());
            let made = tokio_cron_scheduler::Job::new_async_tz(expr.as_str(), self.tz, move |_, _| {
                let wake = wake.clone();
                Box::pin(async move {
                    let _ = wake.send(job);
                })
            });
            // The config's check (`oee_core::config::check_schedule`) refused bad expressions at start.
            match made {
                Ok(made) => match self.scheduler.add(made).await {
                    Ok(id) => self.jobs.push(id),
                    Err(e) => tracing::warn!("cannot schedule the maintenance job {} at `{expr}`: {e}", job.name()),
                },
                Err(e) => tracing::warn!("cannot schedule the maintenance job {} at `{expr}`: {e}", job.name()),
            }
        }
        self.offset = Some(offset);
    }
}

impl Drop for Schedules {
    /// Stops the cron scheduler's own tasks with the scheduler that made them.
    fn drop(&mut self) {
        let mut scheduler = self.scheduler.clone();
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            rt.spawn(async move {
                let _ = scheduler.shutdown().await;
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_schedules_make_cron_jobs_in_a_zone_with_summer_time() {
        let s = Settings::of(&Config::default());
        for expr in [&s.retention.schedule, &s.compression.schedule] {
            let job = tokio_cron_scheduler::Job::new_async_tz(expr.as_str(), chrono_tz::Europe::Berlin, |_, _| {
                Box::pin(async {})
            });
            assert!(job.is_ok(), "{expr}");
        }
        assert_eq!(s.rollup_every, Duration::from_secs(60));
    }
}
