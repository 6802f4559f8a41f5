//! The shift scheduler: moves machines in and out of shift as their shift patterns say, and catches up
//! with the transitions it missed while the server was stopped.
//!
//! The truth is the pattern and each machine's applied-until instant: [`reconcile`] applies, under the
//! machines' row locks, every transition of [`oee_core::shift::transitions`] after that instant and up to
//! `now`, stamped when it should have happened. Waking up is only a trigger. tokio-cron-scheduler wakes
//! the scheduler at each distinct period start in the plant's time zone, but it polls only every 500 ms
//! and keeps the zone's UTC offset of the moment a job was made (issue #107: an hour off after a DST
//! change). So a wake that comes late still stamps the right instants, one that comes early applies
//! nothing, and a backstop timer set to the next transition wakes the scheduler anyway; the cron jobs are
//! also rebuilt whenever the zone's offset changed. Changed patterns and machine shifts arrive at once by
//! PostgreSQL NOTIFY (triggers of migrations 0003 and 0011); a lost listener connection counts as a change.
//! A pattern keeps its history as versions (migration 0011): an edit is a new version effective from the
//! moment it was made, and catching up applies each version while it was in force, with a transition where
//! a new version takes over in another state, so an edit made while the server was stopped is applied at
//! its own instant too.
//! An added machine is notified too (migration 0008), whoever inserted it (the command line writes to the
//! database directly): its retained status is published at once, as no change of it may come for hours.
//! Machines added while the listener was away are covered by republishing every status when it is back.
//! Because every step is idempotent under the row locks, several ingest workers may run it side by side.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::Duration;

use chrono::{DateTime, Offset, TimeDelta, TimeZone, Utc};
use chrono_tz::Tz;
use oee_core::activity::MachineState;
use oee_core::schedule::{ScheduledMachine, catch_up};
use oee_core::shift::{DAY_NAMES, Period, Version, transitions_over, version_at};
use oee_core::store::command::{apply_changes, codes, end_job, lock_machines, set_active_jobs};
use oee_core::store::schedule::{
    AppliedSchedule, SCHEDULE_CHANNEL, pattern_versions, record_applied_schedules, schedule_rows,
    scheduled_machine_ids, versions_in_use,
};
use sqlx::PgPool;
use sqlx::postgres::PgListener;
use tokio::sync::mpsc;
use tokio_cron_scheduler::{Job, JobScheduler};
use uuid::Uuid;

use crate::Error;
use crate::status::Request;

/// Machines reconciled in one transaction.
const MACHINES_PER_TRANSACTION: usize = 500;

/// Applies every shift transition due by `now` to every active machine that follows a pattern (see
/// [`oee_core::schedule::catch_up`]), and records how far each machine got. Returns the machines whose
/// schedule state, activity or job changed, whose status should be republished.
pub async fn reconcile(pool: &PgPool, tz: Tz, now: DateTime<Utc>, max_catch_up: TimeDelta) -> Result<Vec<i32>, Error> {
    let ids = scheduled_machine_ids(pool).await?;
    let mut changed = Vec::new();
    for chunk in ids.chunks(MACHINES_PER_TRANSACTION) {
        changed.extend(reconcile_machines(pool, tz, now, max_catch_up, chunk).await?);
    }
    Ok(changed)
}

async fn reconcile_machines(
    pool: &PgPool,
    tz: Tz,
    now: DateTime<Utc>,
    max_catch_up: TimeDelta,
    ids: &[i32],
) -> Result<Vec<i32>, Error> {
    let mut tx = pool.begin().await.map_err(oee_core::Error::from)?;
    let locked = lock_machines(&mut tx, ids, &[]).await?;
    let rows: HashMap<i32, _> = schedule_rows(&mut tx, ids).await?.into_iter().map(|r| (r.machine_id, r)).collect();
    // Read inside the transaction, after the locks: an edit of a pattern locks its machines too, so it
    // either committed before (and is read here) or waits for this round and then judges its instants.
    // Catching up never goes back further than `max_catch_up`.
    let shifts: Vec<i32> = rows.values().map(|r| r.shift_id).collect();
    let patterns = pattern_versions(&mut *tx, Some(&shifts), now.checked_sub_signed(max_catch_up), None).await?;
    let mut code_ids: Vec<i32> = locked.iter().map(|m| m.snapshot.code_id).collect();
    code_ids.extend(1..=4);
    code_ids.sort_unstable();
    code_ids.dedup();
    let states: HashMap<i32, MachineState> =
        codes(&mut tx, &code_ids).await?.into_iter().map(|(id, c)| (id, c.state)).collect();

    let mut changes = Vec::new();
    let mut ended = Vec::new();
    let mut applied = Vec::new();
    let mut changed = Vec::new();
    for m in locked {
        let Some(row) = rows.get(&m.snapshot.id) else { continue };
        let before = m.snapshot.schedule;
        let machine = ScheduledMachine {
            snapshot: m.snapshot,
            end_job_on_shift_end: row.end_job_on_shift_end,
            job_start: row.job_start,
            applied_until: row.applied_until,
        };
        let versions = patterns.get(&row.shift_id).map_or(&[][..], Vec::as_slice);
        let plan = catch_up(&machine, versions, tz, now, max_catch_up, |id| states.get(&id).copied());
        if plan.changes_machine(before) {
            changed.push(row.machine_id);
        }
        changes.extend(plan.changes);
        ended.extend(plan.ended_job.map(|(job, at)| (row.machine_id, job, at)));
        if let Some(until) = plan.applied_until {
            applied.push(AppliedSchedule { machine_id: row.machine_id, schedule: plan.schedule, applied_until: until });
        }
    }
    for &(_, job, at) in &ended {
        // A job ended by the shift has no final counts of its own: what was reported stands.
        end_job(&mut tx, job, at, 0, 0, None).await?;
    }
    set_active_jobs(&mut tx, &ended.iter().map(|&(m, _, _)| (m, None)).collect::<Vec<_>>()).await?;
    apply_changes(&mut tx, &changes).await?;
    record_applied_schedules(&mut tx, &applied).await?;
    tx.commit().await.map_err(oee_core::Error::from)?;
    Ok(changed)
}

/// The first instant after `now` at which a pattern's state may change: its next transition, or the start
/// of its next version (whose periods the cron jobs do not know yet).
fn next_change(versions: &[Version], tz: Tz, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
    let transition = transitions_over(versions, tz, now, now + TimeDelta::days(8)).first().map(|t| t.at);
    let version = versions.iter().filter_map(|v| v.from).find(|f| *f > now);
    transition.into_iter().chain(version).min()
}

/// Why the scheduler loop woke up.
#[derive(Debug, PartialEq, Eq)]
enum Wake {
    /// A cron job fired.
    Cron,
    /// A pattern or a machine's shift changed.
    Changed,
    /// A machine was added: it has no retained status yet.
    Added(i32),
    /// The listener lost its connection and is back: changes and added machines may have gone unnoticed.
    Resumed,
}

impl Wake {
    /// The wake a notification payload of [`SCHEDULE_CHANNEL`] stands for.
    fn from_payload(payload: &str) -> Wake {
        match payload.strip_prefix("added ").and_then(|id| id.trim().parse().ok()) {
            Some(id) => Wake::Added(id),
            None => Wake::Changed,
        }
    }
}

/// Statuses the next successful round publishes besides those of the machines it changed.
#[derive(Debug, Default)]
struct Announce {
    machines: BTreeSet<i32>,
    all: bool,
}

impl Announce {
    fn note(&mut self, wake: &Wake) {
        match wake {
            Wake::Added(id) => {
                self.machines.insert(*id);
            }
            Wake::Resumed => self.all = true,
            Wake::Cron | Wake::Changed => {}
        }
    }

    /// The request for the status publisher, with the machines a round changed; none when nothing is due.
    fn take(&mut self, changed: &[i32]) -> Option<Request> {
        let all = std::mem::take(&mut self.all);
        let mut machines = std::mem::take(&mut self.machines);
        if all {
            return Some(Request::All);
        }
        machines.extend(changed);
        (!machines.is_empty()).then(|| Request::Machines(machines.into_iter().collect()))
    }
}

/// Starts the scheduler: reconciles at once, then at every period start and on every change.
pub(crate) fn start(
    pool: PgPool,
    tz: Tz,
    max_catch_up: TimeDelta,
    status: Option<mpsc::UnboundedSender<Request>>,
) -> Vec<tokio::task::JoinHandle<()>> {
    let (wake_tx, wake_rx) = mpsc::unbounded_channel();
    let listener = tokio::spawn(listen(pool.clone(), wake_tx.clone()));
    let main = tokio::spawn(run(pool, tz, max_catch_up, status, wake_tx, wake_rx));
    vec![listener, main]
}

async fn run(
    pool: PgPool,
    tz: Tz,
    max_catch_up: TimeDelta,
    status: Option<mpsc::UnboundedSender<Request>>,
    wake_tx: mpsc::UnboundedSender<Wake>,
    mut wake_rx: mpsc::UnboundedReceiver<Wake>,
) {
    let mut cron = CronWakes::new(tz, wake_tx).await;
    let mut failures = 0u32;
    let mut announce = Announce::default();
    loop {
        let now = Utc::now();
        match reconcile(&pool, tz, now, max_catch_up).await {
            Ok(changed) => {
                failures = 0;
                if !changed.is_empty() {
                    tracing::info!(machines = changed.len(), "shift transitions applied");
                }
                // Kept until a round succeeds: the status is read from the database too.
                if let (Some(s), Some(request)) = (&status, announce.take(&changed)) {
                    let _ = s.send(request);
                }
            }
            Err(e) => {
                failures += 1;
                tracing::warn!("shift scheduler: {e}; trying again shortly");
            }
        }
        let patterns = match versions_in_use(&pool, now).await {
            Ok(p) => p,
            Err(e) => {
                tracing::warn!("shift scheduler cannot read the shift patterns: {e}");
                Vec::new()
            }
        };
        if let Some(c) = cron.as_mut() {
            let periods: Vec<Period> =
                patterns.iter().filter_map(|v| version_at(v, now)).flat_map(|v| v.periods.iter().copied()).collect();
            c.update(&periods, now).await;
        }
        // The backstop: the next transition or version after now (a second late, so it is due), or a retry
        // after a failure, or an hourly look in any case.
        let next = patterns.iter().filter_map(|v| next_change(v, tz, now)).min();
        let mut wait = next.map_or(Duration::from_secs(3600), |at| {
            (at - Utc::now() + TimeDelta::seconds(1)).to_std().unwrap_or(Duration::ZERO)
        });
        wait = wait.min(Duration::from_secs(3600));
        if failures > 0 {
            wait = wait.min(Duration::from_secs(u64::from(failures.min(6)) * 5));
        }
        tokio::select! {
            w = wake_rx.recv() => {
                let Some(w) = w else { return };
                tracing::debug!(?w, "shift scheduler woke");
                announce.note(&w);
                // Several notifications of one edit make one round.
                tokio::time::sleep(Duration::from_millis(50)).await;
                while let Ok(w) = wake_rx.try_recv() {
                    announce.note(&w);
                }
            }
            _ = tokio::time::sleep(wait) => {}
        }
    }
}

/// Forwards the database's change notifications as wakes; a lost connection is a change too, as
/// notifications sent meanwhile are gone.
async fn listen(pool: PgPool, wake: mpsc::UnboundedSender<Wake>) {
    let mut backoff = Duration::from_millis(500);
    // The first connection follows the start-up round and ingest's own first publishing of every status.
    let mut back = Wake::Changed;
    loop {
        let mut listener = match PgListener::connect_with(&pool).await {
            Ok(l) => l,
            Err(sqlx::Error::PoolClosed) => return,
            Err(e) => {
                tracing::warn!("shift scheduler cannot listen for shift changes: {e}");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(30));
                continue;
            }
        };
        if let Err(e) = listener.listen(SCHEDULE_CHANNEL).await {
            tracing::warn!("shift scheduler cannot listen for shift changes: {e}");
            tokio::time::sleep(backoff).await;
            continue;
        }
        backoff = Duration::from_millis(500);
        // Changes made before listening began are picked up by this round too.
        if wake.send(std::mem::replace(&mut back, Wake::Resumed)).is_err() {
            return;
        }
        loop {
            match listener.try_recv().await {
                Ok(Some(n)) => {
                    tracing::debug!(payload = n.payload(), "shift change notified");
                    if wake.send(Wake::from_payload(n.payload())).is_err() {
                        return;
                    }
                }
                // The connection was lost; the next receive connects again.
                Ok(None) => {
                    if wake.send(Wake::Resumed).is_err() {
                        return;
                    }
                }
                Err(sqlx::Error::PoolClosed) => return,
                Err(e) => {
                    tracing::warn!("shift scheduler lost its change notifications ({e}); listening again");
                    break;
                }
            }
        }
    }
}

/// Cron jobs that wake the scheduler at each distinct local period start.
struct CronWakes {
    scheduler: JobScheduler,
    tz: Tz,
    wake: mpsc::UnboundedSender<Wake>,
    jobs: Vec<Uuid>,
    /// The expressions the jobs were made from, and the zone's offset then.
    built: Option<(BTreeSet<String>, i32)>,
}

impl CronWakes {
    async fn new(tz: Tz, wake: mpsc::UnboundedSender<Wake>) -> Option<CronWakes> {
        let scheduler = match JobScheduler::new().await {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!("shift scheduler runs on its own timer only (cron: {e})");
                return None;
            }
        };
        if let Err(e) = scheduler.start().await {
            tracing::warn!("shift scheduler runs on its own timer only (cron: {e})");
            return None;
        }
        Some(CronWakes { scheduler, tz, wake, jobs: Vec::new(), built: None })
    }

    /// Makes the jobs match `periods`, when they or the zone's offset changed.
    async fn update(&mut self, periods: &[Period], now: DateTime<Utc>) {
        let wanted = cron_expressions(periods);
        let offset = self.tz.offset_from_utc_datetime(&now.naive_utc()).fix().local_minus_utc();
        if self.built.as_ref().is_some_and(|(e, o)| *e == wanted && *o == offset) {
            return;
        }
        for id in self.jobs.drain(..) {
            let _ = self.scheduler.remove(&id).await;
        }
        for expr in &wanted {
            let wake = self.wake.clone();
            let job = Job::new_async_tz(expr.as_str(), self.tz, move |_, _| {
                let wake = wake.clone();
                Box::pin(async move {
                    let _ = wake.send(Wake::Cron);
                })
            });
            match job {
                Ok(job) => match self.scheduler.add(job).await {
                    Ok(id) => self.jobs.push(id),
                    Err(e) => tracing::warn!("shift scheduler cannot add the cron job `{expr}`: {e}"),
                },
                Err(e) => tracing::warn!("shift scheduler cannot make the cron job `{expr}`: {e}"),
            }
        }
        tracing::debug!(jobs = self.jobs.len(), "shift scheduler wakes rebuilt");
        self.built = Some((wanted, offset));
    }
}

impl Drop for CronWakes {
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

/// One 6-field cron expression (`sec min hour dom mon dow`) per distinct local start time, listing the
/// days it occurs on.
fn cron_expressions(periods: &[Period]) -> BTreeSet<String> {
    let mut by_minute: BTreeMap<u16, BTreeSet<u8>> = BTreeMap::new();
    for p in periods {
        by_minute.entry(p.start_minute).or_default().insert(p.day);
    }
    by_minute
        .into_iter()
        .map(|(minute, days)| {
            let days: Vec<String> = days.iter().map(|&d| DAY_NAMES[d as usize].to_ascii_uppercase()).collect();
            format!("0 {} {} * * {}", minute % 60, minute / 60, days.join(","))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use oee_core::activity::ScheduleState;
    use oee_core::shift::standard_day;

    #[test]
    fn an_added_machine_is_announced_and_anything_else_is_a_change() {
        assert_eq!(Wake::from_payload("added 12"), Wake::Added(12));
        for p in ["machine 12", "shift 3", "shift", "added", "added x"] {
            assert_eq!(Wake::from_payload(p), Wake::Changed, "{p}");
        }
    }

    #[test]
    fn added_machines_are_published_with_the_changed_ones_and_a_resumed_listener_publishes_all() {
        let mut a = Announce::default();
        assert!(a.take(&[]).is_none());
        assert!(matches!(a.take(&[3]), Some(Request::Machines(m)) if m == vec![3]));
        a.note(&Wake::Added(5));
        a.note(&Wake::Changed);
        a.note(&Wake::Added(2));
        assert!(matches!(a.take(&[3, 5]), Some(Request::Machines(m)) if m == vec![2, 3, 5]));
        assert!(a.take(&[]).is_none(), "announced once");
        a.note(&Wake::Added(5));
        a.note(&Wake::Resumed);
        assert!(matches!(a.take(&[1]), Some(Request::All)));
        assert!(a.take(&[]).is_none());
    }

    #[test]
    fn one_cron_expression_per_local_start_time() {
        let mut p: Vec<Period> = (0..5).flat_map(|d| standard_day(d, 9 * 60, 17 * 60 + 30)).collect();
        p.push(Period { day: 6, start_minute: 9 * 60, state: ScheduleState::InShift });
        let got: Vec<String> = cron_expressions(&p).into_iter().collect();
        assert_eq!(
            got,
            vec![
                "0 0 0 * * MON,TUE,WED,THU,FRI".to_string(),
                "0 0 9 * * MON,TUE,WED,THU,FRI,SUN".to_string(),
                "0 30 17 * * MON,TUE,WED,THU,FRI".to_string(),
            ]
        );
        for e in &got {
            assert!(Job::new_async_tz(e.as_str(), chrono_tz::Europe::London, |_, _| Box::pin(async {})).is_ok(), "{e}");
        }
    }
}
