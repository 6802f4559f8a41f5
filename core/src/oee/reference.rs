//! The reference system's own OEE rules (reference §6), kept for its endpoints (`GET /api/oee`,
//! `GET /api/activity-durations`) so its clients see its numbers: availability 1 when nothing was
//! scheduled, performance per job over its uptime, quality from the whole-life totals of the jobs in the
//! window, and 0 for empty denominators. Our own figures use [`super::sums`].

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};

use crate::activity::MachineState;

/// An activity as the reference crops it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RefActivity {
    pub code_id: i32,
    pub state: MachineState,
    pub start: DateTime<Utc>,
    pub end: Option<DateTime<Utc>>,
}

/// A production record of a job.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RefProduction {
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
    pub good: i64,
    pub rejects: i64,
}

/// A job in the window, with all its production records (its whole life).
#[derive(Debug, Clone, PartialEq)]
pub struct RefJob {
    pub start: DateTime<Utc>,
    pub end: Option<DateTime<Utc>>,
    pub ideal_cycle_time_s: Option<f64>,
    pub production: Vec<RefProduction>,
}

/// The reference's window: [start, end], with open objects and the end clamped to now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RefWindow {
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
    pub now: DateTime<Utc>,
}

impl RefWindow {
    /// Cropped length in seconds (reference §6.1): from max(start, window start) to the object's end if it
    /// ended inside the window, otherwise to min(window end, now).
    fn cropped_s(&self, start: DateTime<Utc>, end: Option<DateTime<Utc>>) -> f64 {
        let from = start.max(self.start);
        let to = match end {
            Some(e) if e <= self.end => e,
            _ => self.end.min(self.now),
        };
        ((to - from).num_microseconds().unwrap_or(0) as f64 / 1e6).max(0.0)
    }

    /// Cropped length ÷ full length (an open object's full length runs to now); 1 for zero length.
    fn ratio(&self, start: DateTime<Utc>, end: Option<DateTime<Utc>>) -> f64 {
        let full = (end.unwrap_or(self.now) - start).num_microseconds().unwrap_or(0) as f64 / 1e6;
        if full <= 0.0 { 1.0 } else { self.cropped_s(start, end) / full }
    }

    fn overlaps(&self, start: DateTime<Utc>, end: Option<DateTime<Utc>>) -> bool {
        start <= self.end && end.is_none_or(|e| e >= self.start)
    }

    fn within(&self, start: DateTime<Utc>, end: Option<DateTime<Utc>>) -> RefWindow {
        let s = start.max(self.start);
        let e = match end {
            Some(e) if e <= self.end => e,
            _ => self.end.min(self.now),
        };
        RefWindow { start: s, end: e, now: self.now }
    }
}

/// Seconds per code in the window, for every code in `codes` (0 for codes with no time).
pub fn durations_by_code(w: RefWindow, activities: &[RefActivity], codes: &[i32]) -> BTreeMap<i32, f64> {
    let mut out: BTreeMap<i32, f64> = codes.iter().map(|c| (*c, 0.0)).collect();
    for a in activities.iter().filter(|a| w.overlaps(a.start, a.end)) {
        *out.entry(a.code_id).or_default() += w.cropped_s(a.start, a.end);
    }
    out
}

fn seconds_in(w: RefWindow, activities: &[RefActivity], states: &[MachineState]) -> f64 {
    activities
        .iter()
        .filter(|a| states.contains(&a.state) && w.overlaps(a.start, a.end))
        .map(|a| w.cropped_s(a.start, a.end))
        .sum()
}

const UP: [MachineState; 2] = [MachineState::Uptime, MachineState::Overtime];

/// Uptime ÷ (uptime + unplanned downtime); 1 when both are 0.
pub fn availability(w: RefWindow, activities: &[RefActivity]) -> f64 {
    let run = seconds_in(w, activities, &UP);
    let scheduled = run + seconds_in(w, activities, &[MachineState::UnplannedDowntime]);
    if scheduled == 0.0 { 1.0 } else { run / scheduled }
}

/// Σ ideal cycle time × parts (pro-rated into each job's part of the window) ÷ uptime inside those jobs;
/// 0 without uptime. Jobs without an ideal cycle time are skipped. Not capped.
pub fn performance(w: RefWindow, activities: &[RefActivity], jobs: &[RefJob]) -> f64 {
    let (mut ideal, mut uptime) = (0.0, 0.0);
    for job in jobs {
        let Some(ict) = job.ideal_cycle_time_s.filter(|v| *v != 0.0) else { continue };
        let jw = w.within(job.start, job.end);
        let parts: f64 = job
            .production
            .iter()
            .filter(|p| jw.overlaps(p.start, Some(p.end)))
            .map(|p| (p.good + p.rejects) as f64 * jw.ratio(p.start, Some(p.end)))
            .sum();
        ideal += ict * parts;
        uptime += seconds_in(jw, activities, &UP);
    }
    if uptime == 0.0 { 0.0 } else { ideal / uptime }
}

/// Good ÷ total over the whole-life totals of the jobs in the window; 0 when nothing was made.
pub fn quality(jobs: &[RefJob]) -> f64 {
    let (good, rejects) =
        jobs.iter().flat_map(|j| &j.production).fold((0i64, 0i64), |(g, r), p| (g + p.good, r + p.rejects));
    let total = good + rejects;
    if total == 0 { 0.0 } else { good as f64 / total as f64 }
}

/// Seconds in each machine state (uptime, unplanned downtime, planned downtime, overtime), the columns of
/// the reference's OEE report.
pub fn seconds_by_state(w: RefWindow, activities: &[RefActivity]) -> [f64; 4] {
    [MachineState::Uptime, MachineState::UnplannedDowntime, MachineState::PlannedDowntime, MachineState::Overtime]
        .map(|st| seconds_in(w, activities, &[st]))
}

/// The reference's target quantity (its OEE report's "Expected Qty", reference §6.7): over the jobs with an
/// ideal cycle time, the uptime (state 1 only, overtime not counted) inside the job's part of the window
/// divided by the job's ideal cycle time.
pub fn expected_quantity(w: RefWindow, activities: &[RefActivity], jobs: &[RefJob]) -> f64 {
    jobs.iter()
        .filter_map(|job| {
            let ict = job.ideal_cycle_time_s.filter(|v| *v != 0.0)?;
            Some(seconds_in(w.within(job.start, job.end), activities, &[MachineState::Uptime]) / ict)
        })
        .sum()
}

/// Good and rejects made in the window, each record pro-rated by its overlap (reference §6.1).
pub fn production_in_window(w: RefWindow, records: &[RefProduction]) -> (f64, f64) {
    records.iter().filter(|p| w.overlaps(p.start, Some(p.end))).fold((0.0, 0.0), |(g, r), p| {
        let k = w.ratio(p.start, Some(p.end));
        (g + p.good as f64 * k, r + p.rejects as f64 * k)
    })
}

/// Availability × performance × quality.
pub fn oee(w: RefWindow, activities: &[RefActivity], jobs: &[RefJob]) -> f64 {
    availability(w, activities) * performance(w, activities, jobs) * quality(jobs)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{Duration, TimeZone};

    fn at(h: i64) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2024, 1, 10, 0, 0, 0).unwrap() + Duration::hours(h)
    }

    fn act(code_id: i32, state: MachineState, from: i64, to: i64) -> RefActivity {
        RefActivity { code_id, state, start: at(from), end: Some(at(to)) }
    }

    #[test]
    fn the_worked_example_of_reference_section_6_9() {
        let w = RefWindow { start: at(0), end: at(24), now: at(100) };
        let acts = [
            act(1, MachineState::Uptime, 8, 10),
            act(2, MachineState::UnplannedDowntime, 10, 11),
            act(1, MachineState::Uptime, 11, 12),
            act(3, MachineState::PlannedDowntime, 12, 13),
        ];
        let jobs = [RefJob {
            start: at(8),
            end: Some(at(12)),
            ideal_cycle_time_s: Some(30.0),
            production: vec![RefProduction { start: at(8), end: at(12), good: 90, rejects: 10 }],
        }];
        assert_eq!(availability(w, &acts), 0.75);
        assert!((performance(w, &acts, &jobs) - 3000.0 / 10800.0).abs() < 1e-12);
        assert_eq!(quality(&jobs), 0.9);
        assert!((oee(w, &acts, &jobs) - 0.1875).abs() < 1e-12);
        let d = durations_by_code(w, &acts, &[1, 2, 3, 4]);
        assert_eq!(d, BTreeMap::from([(1, 10800.0), (2, 3600.0), (3, 3600.0), (4, 0.0)]));
        // The OEE report's row: 300, 60, 60, 180 minutes; expected 360, actual 100, rejects 10.
        assert_eq!(seconds_by_state(w, &acts), [10800.0, 3600.0, 3600.0, 0.0]);
        assert_eq!(expected_quantity(w, &acts, &jobs), 360.0);
        assert_eq!(production_in_window(w, &jobs[0].production), (90.0, 10.0));
        let morning = RefWindow { start: at(8), end: at(10), now: at(100) };
        assert_eq!(production_in_window(morning, &jobs[0].production), (45.0, 5.0));
    }

    #[test]
    fn empty_denominators_follow_the_reference() {
        let w = RefWindow { start: at(0), end: at(24), now: at(100) };
        assert_eq!(availability(w, &[]), 1.0, "nothing scheduled reads as available");
        assert_eq!(performance(w, &[], &[]), 0.0);
        assert_eq!(quality(&[]), 0.0);
        assert_eq!(oee(w, &[], &[]), 0.0);
    }

    #[test]
    fn today_runs_to_now_and_open_activities_are_clamped() {
        let w = RefWindow { start: at(0), end: at(24), now: at(10) };
        let open = RefActivity { code_id: 1, state: MachineState::Uptime, start: at(8), end: None };
        let d = durations_by_code(w, &[act(2, MachineState::UnplannedDowntime, 6, 8), open], &[1, 2]);
        assert_eq!(d, BTreeMap::from([(1, 7200.0), (2, 7200.0)]));
    }
}
