//! One machine's history held in memory for many windows: each window's sums look only at the records
//! that can reach into it, so a long history cut into many buckets costs about one pass.

use chrono::{DateTime, Utc};

use super::{Activity, EngineConfig, Job, Production, Sums, Window, sums};

/// A machine's activities, jobs and production, sorted by start, with for each position the latest end
/// among the records up to it (open records reach forever).
#[derive(Debug, Clone, Default)]
pub struct History {
    activities: Vec<Activity>,
    jobs: Vec<Job>,
    production: Vec<Production>,
    activity_reach: Vec<DateTime<Utc>>,
    job_reach: Vec<DateTime<Utc>>,
    production_reach: Vec<DateTime<Utc>>,
}

fn reach<T>(items: &[T], end: impl Fn(&T) -> DateTime<Utc>) -> Vec<DateTime<Utc>> {
    let mut latest = DateTime::<Utc>::MIN_UTC;
    items
        .iter()
        .map(|i| {
            latest = latest.max(end(i));
            latest
        })
        .collect()
}

impl History {
    /// Sorts the records by start and indexes them.
    pub fn new(mut activities: Vec<Activity>, mut jobs: Vec<Job>, mut production: Vec<Production>) -> History {
        activities.sort_by_key(|a| a.span.start);
        jobs.sort_by_key(|j| j.span.start);
        production.sort_by_key(|p| p.start);
        History {
            activity_reach: reach(&activities, |a| a.span.end.unwrap_or(DateTime::<Utc>::MAX_UTC)),
            job_reach: reach(&jobs, |j| j.span.end.unwrap_or(DateTime::<Utc>::MAX_UTC)),
            production_reach: reach(&production, |p| p.end),
            activities,
            jobs,
            production,
        }
    }

    /// The same as [`sums`] over all the records, looking only at those that can touch the window.
    pub fn sums(&self, window: Window, cfg: EngineConfig) -> Sums {
        let (s, e) = (window.start, window.end);
        let acts = {
            let lo = self.activity_reach.partition_point(|r| *r <= s);
            let hi = self.activities.partition_point(|a| a.span.start < e);
            &self.activities[lo..hi.max(lo)]
        };
        let jobs = {
            let lo = self.job_reach.partition_point(|r| *r <= s);
            let hi = self.jobs.partition_point(|j| j.span.start < e);
            &self.jobs[lo..hi.max(lo)]
        };
        let production = {
            let lo = self.production_reach.partition_point(|r| *r < s);
            let hi = self.production.partition_point(|p| p.start <= e);
            &self.production[lo..hi.max(lo)]
        };
        sums(window, acts, jobs, production, cfg)
    }
}

#[cfg(test)]
mod tests {
    use super::super::{LossCategory, Span};
    use super::*;
    use crate::activity::MachineState;
    use chrono::{Duration, TimeZone};
    use proptest::prelude::*;

    fn t0() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 3, 2, 0, 0, 0).unwrap()
    }

    proptest! {
        /// Indexing never changes a window's sums, whatever the records (overlapping or open ones too).
        #[test]
        fn indexed_sums_equal_plain_sums(
            acts in prop::collection::vec((0i64..600, 0i64..200, any::<bool>(), 0usize..3), 0..40),
            jobs in prop::collection::vec((0i64..600, 0i64..300, any::<bool>(), 0.5f64..5.0), 0..6),
            prod in prop::collection::vec((0i64..600, 0i64..100, 0i64..50, 0i64..5), 0..20),
            windows in prop::collection::vec((0i64..700, 1i64..200), 1..8),
        ) {
            let m = |x: i64| t0() + Duration::minutes(x);
            let cats = [LossCategory::Running, LossCategory::Breakdown, LossCategory::NotScheduled];
            let acts: Vec<Activity> = acts.iter().map(|&(s, d, open, c)| Activity {
                span: Span { start: m(s), end: (!open).then(|| m(s + d)) },
                code_id: c as i32,
                state: MachineState::Uptime,
                category: cats[c],
            }).collect();
            let jobs: Vec<Job> = jobs.iter().map(|&(s, d, open, ict)| Job {
                span: Span { start: m(s), end: (!open).then(|| m(s + d)) },
                ideal_cycle_time_s: Some(ict),
            }).collect();
            let prod: Vec<Production> = prod.iter().map(|&(s, d, g, r)| Production {
                start: m(s), end: m(s + d), good: g, rejects: r, ideal_cycle_time_s: Some(1.0),
            }).collect();
            // The same order for both, so floating-point sums add in the same order.
            let (mut acts, mut jobs, mut prod) = (acts, jobs, prod);
            acts.sort_by_key(|a| a.span.start);
            jobs.sort_by_key(|j| j.span.start);
            prod.sort_by_key(|p| p.start);
            let cfg = EngineConfig { minor_stop_threshold_ms: 300_000 };
            let h = History::new(acts.clone(), jobs.clone(), prod.clone());
            for (s, d) in windows {
                let w = Window::new(m(s), m(s + d), m(10_000));
                prop_assert_eq!(h.sums(w, cfg), sums(w, &acts, &jobs, &prod, cfg));
            }
        }
    }
}
