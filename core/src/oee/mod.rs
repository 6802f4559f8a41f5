//! The OEE engine: pure functions from a machine's activities, jobs and production records in a window
//! to time and count sums, and from sums to Availability, Performance, Quality, OEE and TEEP.
//!
//! Conventions (DESIGN.md, anchors §4.4): time in integer milliseconds; the window is [start, end) with
//! its end clamped to now by the caller ([`Window::new`]); open activities and jobs run to the window's
//! end; production records are pro-rated linearly by their overlap with the window; ratios are returned
//! raw (never clamped) and `None` where they are undefined; roll-ups (groups, periods) add [`Sums`], never
//! average ratios.
//!
//! Where the planned time went ([`Losses`], the six big losses in time) adds up exactly: the planned
//! time is the ideal time of the good parts plus breakdowns, setup, planned stops, minor stops, reduced
//! speed, the quality loss and the run time without an ideal cycle time. The target quantity is what the
//! ideal cycle time allows: the sum, over planned time inside jobs with an ideal cycle time, of that time
//! divided by the job's ideal cycle time, i.e. the parts a machine that never stopped and always ran at its
//! ideal rate would have made (`target_quantity`); `target_quantity_run` does the same over run time only
//! (the performance target).

mod history;
pub mod reference;

pub use history::History;

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::activity::MachineState;

/// How an activity code's time counts in OEE (its "loss category").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LossCategory {
    /// Producing: run time.
    Running,
    /// Unplanned stop (availability loss).
    Breakdown,
    /// Setup, changeover, adjustments (availability loss).
    Setup,
    /// Planned stop inside planned time, e.g. cleaning (availability loss).
    PlannedStop,
    /// Idling and short stops (performance loss: the time counts as run time).
    MinorStop,
    /// Running below the ideal rate (performance loss: the time counts as run time).
    ReducedSpeed,
    /// Outside planned production time (no shift, breaks by policy): excluded from OEE, counted in TEEP.
    NotScheduled,
}

impl TryFrom<String> for LossCategory {
    type Error = String;
    /// Reads the stored name (`running`, `breakdown`, …).
    fn try_from(name: String) -> Result<Self, String> {
        serde_json::from_value(serde_json::Value::String(name.clone()))
            .map_err(|_| format!("`{name}` is not a loss category"))
    }
}

impl std::str::FromStr for LossCategory {
    type Err = String;
    /// Reads a category's name (`running`, `breakdown`, …), as stored and as forms and the command line give it.
    fn from_str(name: &str) -> Result<Self, String> {
        let name = name.trim();
        LossCategory::ALL.into_iter().find(|c| c.as_str() == name).ok_or_else(|| {
            let names: Vec<&str> = LossCategory::ALL.iter().map(|c| c.as_str()).collect();
            format!("`{name}` is not a loss category: choose one of {}", names.join(", "))
        })
    }
}

impl LossCategory {
    /// Every category, in the order forms list them.
    pub const ALL: [LossCategory; 7] = [
        LossCategory::Running,
        LossCategory::Breakdown,
        LossCategory::Setup,
        LossCategory::PlannedStop,
        LossCategory::MinorStop,
        LossCategory::ReducedSpeed,
        LossCategory::NotScheduled,
    ];

    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            LossCategory::Running => "running",
            LossCategory::Breakdown => "breakdown",
            LossCategory::Setup => "setup",
            LossCategory::PlannedStop => "planned_stop",
            LossCategory::MinorStop => "minor_stop",
            LossCategory::ReducedSpeed => "reduced_speed",
            LossCategory::NotScheduled => "not_scheduled",
        }
    }

    /// Whether a code in machine state `state` may count its time this way. Uptime and overtime are run
    /// time (running, or a performance loss); unplanned downtime is a stop inside planned time (an
    /// availability loss, or a minor stop); planned downtime is either outside planned time or a planned
    /// availability loss (a planned stop, a changeover). Anything else would make a code's state and its
    /// OEE disagree, e.g. an "Up" code whose time counts as a breakdown.
    pub fn suits(self, state: MachineState) -> bool {
        use LossCategory::*;
        match state {
            MachineState::Uptime | MachineState::Overtime => matches!(self, Running | MinorStop | ReducedSpeed),
            MachineState::UnplannedDowntime => matches!(self, Breakdown | Setup | PlannedStop | MinorStop),
            MachineState::PlannedDowntime => matches!(self, NotScheduled | PlannedStop | Setup),
        }
    }

    /// The category a new code in `state` gets unless one is chosen (what migration 0002 gave existing codes).
    pub fn default_for(state: MachineState) -> LossCategory {
        match state {
            MachineState::Uptime | MachineState::Overtime => LossCategory::Running,
            MachineState::UnplannedDowntime => LossCategory::Breakdown,
            MachineState::PlannedDowntime => LossCategory::NotScheduled,
        }
    }

    /// Whether the time belongs to planned production time.
    pub fn is_planned(self) -> bool {
        !matches!(self, LossCategory::NotScheduled)
    }

    /// Whether the time is run time.
    pub fn is_run(self) -> bool {
        matches!(self, LossCategory::Running | LossCategory::MinorStop | LossCategory::ReducedSpeed)
    }
}

/// A time span; `end: None` is still open.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Span {
    pub start: DateTime<Utc>,
    pub end: Option<DateTime<Utc>>,
}

/// The window figures are computed for: [start, end), end already clamped to now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
}

impl Window {
    /// [start, min(end, now)); empty when that is not after `start`.
    pub fn new(start: DateTime<Utc>, end: DateTime<Utc>, now: DateTime<Utc>) -> Window {
        let end = end.min(now).max(start);
        Window { start, end }
    }

    fn ms(&self) -> i64 {
        (self.end - self.start).num_milliseconds()
    }

    /// Milliseconds of `span` inside the window (an open span runs to the window's end).
    fn overlap_ms(&self, span: Span) -> i64 {
        let start = span.start.max(self.start);
        let end = span.end.unwrap_or(self.end).min(self.end);
        (end - start).num_milliseconds().max(0)
    }
}

/// One activity (a time segment in one code).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Activity {
    pub span: Span,
    pub code_id: i32,
    /// The code's machine state (durations are reported per state as well as per code).
    pub state: MachineState,
    pub category: LossCategory,
}

/// One job: while it runs, its ideal cycle time applies.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Job {
    pub span: Span,
    /// Seconds per part; `None` (or not positive) when unknown.
    pub ideal_cycle_time_s: Option<f64>,
}

impl Job {
    /// The ideal cycle time in seconds, when it is known and positive.
    pub fn ict_s(&self) -> Option<f64> {
        self.ideal_cycle_time_s.filter(|v| v.is_finite() && *v > 0.0)
    }
}

/// Parts made in [start, end], with the ideal cycle time of the job they belong to.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Production {
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
    pub good: i64,
    pub rejects: i64,
    pub ideal_cycle_time_s: Option<f64>,
}

/// The version of [`Sums`] and of the rules that fill it: cached sums of another version are recomputed.
pub const SUMS_VERSION: i32 = 1;

/// Policy knobs of the engine.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct EngineConfig {
    /// Breakdown activities shorter than this count as minor stops (performance, not availability).
    /// 0: none do.
    pub minor_stop_threshold_ms: i64,
}

/// Additive totals of one machine over one window; sums of several machines or windows add up.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Sums {
    /// The window's length ("all time", TEEP's denominator).
    pub all_ms: i64,
    /// Planned production time: run time plus availability losses.
    pub planned_ms: i64,
    pub run_ms: i64,
    /// Run time inside jobs that have an ideal cycle time.
    pub covered_run_ms: i64,
    pub breakdown_ms: i64,
    pub setup_ms: i64,
    pub planned_stop_ms: i64,
    pub minor_stop_ms: i64,
    /// Minor stops inside jobs that have an ideal cycle time.
    pub covered_minor_stop_ms: i64,
    /// Time in codes whose loss category is reduced speed (run time; the speed loss itself is in [`Losses`]).
    pub reduced_speed_ms: i64,
    pub not_scheduled_ms: i64,
    /// Planned time inside jobs that have an ideal cycle time.
    pub covered_planned_ms: i64,
    /// Parts the ideal cycle time allows in the planned time inside jobs with one (Σ time ÷ ICT).
    pub target_quantity: f64,
    /// Parts the ideal cycle time allows in the run time inside jobs with one.
    pub target_quantity_run: f64,
    /// Σ ideal cycle time × total count, over counts whose job has an ideal cycle time.
    pub ideal_ms: f64,
    /// Σ ideal cycle time × good count, likewise.
    pub ideal_good_ms: f64,
    pub good: f64,
    pub total: f64,
    /// Milliseconds per activity code inside the window.
    pub by_code_ms: BTreeMap<i32, i64>,
    /// Milliseconds per machine state (uptime, unplanned downtime, planned downtime, overtime).
    pub by_state_ms: [i64; 4],
}

/// Adds up one machine's activities, jobs and production inside `window`.
pub fn sums(
    window: Window,
    activities: &[Activity],
    jobs: &[Job],
    production: &[Production],
    cfg: EngineConfig,
) -> Sums {
    let mut s = Sums { all_ms: window.ms(), ..Sums::default() };
    for a in activities {
        let ms = window.overlap_ms(a.span);
        if ms == 0 {
            continue;
        }
        *s.by_code_ms.entry(a.code_id).or_default() += ms;
        let full_ms = a.span.end.map(|e| (e - a.span.start).num_milliseconds());
        let category = match a.category {
            // The whole stop decides, not the part inside the window.
            LossCategory::Breakdown if full_ms.is_some_and(|f| f < cfg.minor_stop_threshold_ms) => {
                LossCategory::MinorStop
            }
            c => c,
        };
        match category {
            LossCategory::Running => {}
            LossCategory::Breakdown => s.breakdown_ms += ms,
            LossCategory::Setup => s.setup_ms += ms,
            LossCategory::PlannedStop => s.planned_stop_ms += ms,
            LossCategory::MinorStop => s.minor_stop_ms += ms,
            LossCategory::ReducedSpeed => s.reduced_speed_ms += ms,
            LossCategory::NotScheduled => s.not_scheduled_ms += ms,
        }
        s.by_state_ms[state_index(a.state)] += ms;
        let (planned, run) = (category.is_planned(), category.is_run());
        if planned {
            s.planned_ms += ms;
        }
        if run {
            s.run_ms += ms;
        }
        if planned {
            for j in jobs {
                let Some(ict) = j.ict_s() else { continue };
                let covered = overlap_ms(window, a.span, j.span);
                if covered == 0 {
                    continue;
                }
                let parts = covered as f64 / (ict * 1000.0);
                s.covered_planned_ms += covered;
                s.target_quantity += parts;
                if run {
                    s.covered_run_ms += covered;
                    s.target_quantity_run += parts;
                }
                if category == LossCategory::MinorStop {
                    s.covered_minor_stop_ms += covered;
                }
            }
        }
    }
    for p in production {
        let share = share_in(window, p.start, p.end);
        if share == 0.0 {
            continue;
        }
        let good = p.good as f64 * share;
        let total = (p.good + p.rejects) as f64 * share;
        s.good += good;
        s.total += total;
        if let Some(ict) = p.ideal_cycle_time_s.filter(|v| v.is_finite() && *v > 0.0) {
            s.ideal_ms += ict * 1000.0 * total;
            s.ideal_good_ms += ict * 1000.0 * good;
        }
    }
    s
}

/// The machine state a code of this category usually has (for tests).
#[cfg(test)]
fn state_of(category: LossCategory) -> MachineState {
    match category {
        LossCategory::Running | LossCategory::MinorStop | LossCategory::ReducedSpeed => MachineState::Uptime,
        LossCategory::NotScheduled => MachineState::PlannedDowntime,
        _ => MachineState::UnplannedDowntime,
    }
}

/// Where [`Sums::by_state_ms`] keeps a state.
fn state_index(state: MachineState) -> usize {
    match state {
        MachineState::Uptime => 0,
        MachineState::UnplannedDowntime => 1,
        MachineState::PlannedDowntime => 2,
        MachineState::Overtime => 3,
    }
}

/// Milliseconds where `a`, `b` and the window all overlap.
fn overlap_ms(window: Window, a: Span, b: Span) -> i64 {
    let start = a.start.max(b.start).max(window.start);
    let end = a.end.unwrap_or(window.end).min(b.end.unwrap_or(window.end)).min(window.end);
    (end - start).num_milliseconds().max(0)
}

/// The part of [start, end] inside the window; an instant record counts wholly where it falls.
fn share_in(window: Window, start: DateTime<Utc>, end: DateTime<Utc>) -> f64 {
    let full = (end - start).num_milliseconds();
    if full <= 0 {
        return if start >= window.start && start < window.end { 1.0 } else { 0.0 };
    }
    let inside = (end.min(window.end) - start.max(window.start)).num_milliseconds().max(0);
    inside as f64 / full as f64
}

impl Sums {
    /// Adds another machine's or window's sums (roll-ups come from sums, never from averaged ratios).
    pub fn add(&mut self, o: &Sums) {
        self.all_ms += o.all_ms;
        self.planned_ms += o.planned_ms;
        self.run_ms += o.run_ms;
        self.covered_run_ms += o.covered_run_ms;
        self.breakdown_ms += o.breakdown_ms;
        self.setup_ms += o.setup_ms;
        self.planned_stop_ms += o.planned_stop_ms;
        self.minor_stop_ms += o.minor_stop_ms;
        self.covered_minor_stop_ms += o.covered_minor_stop_ms;
        self.reduced_speed_ms += o.reduced_speed_ms;
        self.not_scheduled_ms += o.not_scheduled_ms;
        self.covered_planned_ms += o.covered_planned_ms;
        self.target_quantity += o.target_quantity;
        self.target_quantity_run += o.target_quantity_run;
        self.ideal_ms += o.ideal_ms;
        self.ideal_good_ms += o.ideal_good_ms;
        self.good += o.good;
        self.total += o.total;
        for (code, ms) in &o.by_code_ms {
            *self.by_code_ms.entry(*code).or_default() += ms;
        }
        for (mine, theirs) in self.by_state_ms.iter_mut().zip(o.by_state_ms) {
            *mine += theirs;
        }
    }

    /// Where the planned time went, in milliseconds (the six big losses); the parts add up to the
    /// planned time exactly (see the module documentation).
    pub fn losses(&self) -> Losses {
        let uncovered_minor = self.minor_stop_ms - self.covered_minor_stop_ms;
        Losses {
            fully_productive_ms: self.ideal_good_ms,
            breakdown_ms: self.breakdown_ms,
            setup_ms: self.setup_ms,
            planned_stop_ms: self.planned_stop_ms,
            minor_stop_ms: self.minor_stop_ms,
            reduced_speed_ms: (self.covered_run_ms - self.covered_minor_stop_ms) as f64 - self.ideal_ms,
            quality_ms: self.ideal_ms - self.ideal_good_ms,
            no_ideal_cycle_time_ms: self.run_ms - self.covered_run_ms - uncovered_minor,
        }
    }

    /// Milliseconds per machine state, by the state's number (1 uptime, 2 unplanned downtime, 3 planned
    /// downtime, 4 overtime).
    pub fn by_state(&self) -> BTreeMap<i16, i64> {
        [MachineState::Uptime, MachineState::UnplannedDowntime, MachineState::PlannedDowntime, MachineState::Overtime]
            .into_iter()
            .map(|st| (i16::from(st), self.by_state_ms[state_index(st)]))
            .collect()
    }

    /// The ratios, by the rules of anchors §4.4.
    pub fn figures(&self) -> Figures {
        let ratio = |n: f64, d: f64| (d > 0.0).then(|| n / d);
        let planned = self.planned_ms as f64;
        let run = self.run_ms as f64;
        let availability = ratio(run, planned);
        let performance = ratio(self.ideal_ms, self.covered_run_ms as f64);
        let quality = ratio(self.good, self.total);
        let oee = if self.planned_ms == 0 {
            None
        } else if self.run_ms == 0 || self.total == 0.0 {
            // Ran and made nothing, or never ran: a real, total loss.
            Some(0.0)
        } else {
            match (availability, performance, quality) {
                (Some(a), Some(p), Some(q)) => Some(a * p * q),
                _ => None,
            }
        };
        Figures {
            availability,
            performance,
            quality,
            oee,
            teep: oee.zip(ratio(planned, self.all_ms as f64)).map(|(o, u)| o * u),
            ict_coverage: ratio(self.covered_run_ms as f64, run),
            performance_over_100: performance.is_some_and(|p| p > 1.0),
            no_planned_time: self.planned_ms == 0,
            counts_while_down: self.total > 0.0 && self.run_ms == 0,
        }
    }
}

/// The six big losses as time, in milliseconds of planned time. `reduced_speed_ms` is negative when the
/// machine made parts faster than its ideal cycle time allows (performance over 100 %), never clamped.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Losses {
    /// Ideal cycle time × good parts: the time that made good parts at the ideal rate.
    pub fully_productive_ms: f64,
    /// Availability losses.
    pub breakdown_ms: i64,
    pub setup_ms: i64,
    pub planned_stop_ms: i64,
    /// Performance losses: stops shorter than the minor-stop threshold (and codes in that category) …
    pub minor_stop_ms: i64,
    /// … and running slower than ideal: run time (without minor stops) in jobs with an ideal cycle time
    /// minus the ideal time of all parts made.
    pub reduced_speed_ms: f64,
    /// Quality loss: the ideal time of the rejects.
    pub quality_ms: f64,
    /// Run time (without minor stops) in jobs with no ideal cycle time: its speed cannot be judged.
    pub no_ideal_cycle_time_ms: i64,
}

/// Ratios in 0..1 (performance may exceed 1 and is flagged, never clamped); `None` where undefined.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Figures {
    pub availability: Option<f64>,
    pub performance: Option<f64>,
    pub quality: Option<f64>,
    pub oee: Option<f64>,
    pub teep: Option<f64>,
    /// Run time with an ideal cycle time ÷ run time.
    pub ict_coverage: Option<f64>,
    pub performance_over_100: bool,
    pub no_planned_time: bool,
    pub counts_while_down: bool,
}

#[cfg(test)]
mod tests {
    use super::LossCategory::*;
    use super::*;
    use chrono::{Duration, TimeZone};

    fn at(h: i64, m: i64) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2024, 1, 10, 0, 0, 0).unwrap() + Duration::minutes(h * 60 + m)
    }

    #[test]
    fn categories_read_back_their_names_and_suit_their_states() {
        for c in LossCategory::ALL {
            assert_eq!(c.as_str().parse::<LossCategory>(), Ok(c));
            assert_eq!(LossCategory::try_from(c.as_str().to_string()), Ok(c));
        }
        assert!("downtime".parse::<LossCategory>().unwrap_err().contains("planned_stop"));
        use MachineState::*;
        let table = [
            (Uptime, vec![Running, MinorStop, ReducedSpeed]),
            (Overtime, vec![Running, MinorStop, ReducedSpeed]),
            (UnplannedDowntime, vec![Breakdown, Setup, PlannedStop, MinorStop]),
            (PlannedDowntime, vec![Setup, PlannedStop, NotScheduled]),
        ];
        for (state, suited) in table {
            for c in LossCategory::ALL {
                assert_eq!(c.suits(state), suited.contains(&c), "{state:?} {c:?}");
            }
            assert!(LossCategory::default_for(state).suits(state), "{state:?}");
        }
    }

    fn act(from: (i64, i64), to: (i64, i64), code_id: i32, category: LossCategory) -> Activity {
        Activity {
            span: Span { start: at(from.0, from.1), end: Some(at(to.0, to.1)) },
            code_id,
            state: state_of(category),
            category,
        }
    }

    fn day() -> Window {
        Window::new(at(0, 0), at(24, 0), at(48, 0))
    }

    fn close(a: Option<f64>, b: f64) -> bool {
        a.is_some_and(|a| (a - b).abs() < 1e-4)
    }

    #[test]
    fn the_oee_com_example_gives_74_79_percent_and_teep_21_8() {
        // 480 min shift 06:00-14:00 with 60 min of breaks, 47 min down, 373 min running.
        let acts = [
            act((0, 0), (6, 0), 3, NotScheduled),
            act((6, 0), (9, 0), 1, Running),
            act((9, 0), (9, 15), 5, NotScheduled),
            act((9, 15), (9, 62), 2, Breakdown),
            act((9, 62), (11, 30), 1, Running),
            act((11, 30), (12, 0), 5, NotScheduled),
            act((12, 0), (12, 15), 5, NotScheduled),
            act((12, 15), (14, 0), 1, Running),
            act((14, 0), (24, 0), 3, NotScheduled),
        ];
        let job = Job { span: Span { start: at(6, 0), end: Some(at(14, 0)) }, ideal_cycle_time_s: Some(1.0) };
        let prod =
            Production { start: at(6, 0), end: at(14, 0), good: 18_848, rejects: 423, ideal_cycle_time_s: Some(1.0) };
        let s = sums(day(), &acts, &[job], &[prod], EngineConfig::default());
        assert_eq!((s.planned_ms, s.run_ms), (420 * 60_000, 373 * 60_000));
        let f = s.figures();
        assert!(close(f.availability, 0.8881), "{f:?}");
        assert!(close(f.performance, 0.8611), "{f:?}");
        assert!(close(f.quality, 0.9780), "{f:?}");
        assert!(close(f.oee, 0.7479), "{f:?}");
        assert!((f.teep.unwrap() - 0.218).abs() < 5e-4, "{f:?}");
        assert!(close(f.oee, s.ideal_good_ms / s.planned_ms as f64), "the simple form agrees");
    }

    /// The reference's worked example (§6.9) over its day: up 8-10 and 11-12, down 10-11, closed 12-13; one
    /// job 8-12 at 30 s a part making 90 good and 10 rejects.
    fn reference_example() -> ([Activity; 4], Job, Production) {
        let acts = [
            act((8, 0), (10, 0), 1, Running),
            act((10, 0), (11, 0), 2, Breakdown),
            act((11, 0), (12, 0), 1, Running),
            act((12, 0), (13, 0), 3, NotScheduled),
        ];
        let job = Job { span: Span { start: at(8, 0), end: Some(at(12, 0)) }, ideal_cycle_time_s: Some(30.0) };
        let prod =
            Production { start: at(8, 0), end: at(12, 0), good: 90, rejects: 10, ideal_cycle_time_s: Some(30.0) };
        (acts, job, prod)
    }

    #[test]
    fn the_reference_worked_example_gives_0_1875() {
        let (acts, job, prod) = reference_example();
        let s = sums(day(), &acts, &[job], &[prod], EngineConfig::default());
        let f = s.figures();
        assert!(close(f.availability, 0.75) && close(f.performance, 0.27778) && close(f.quality, 0.9), "{f:?}");
        assert!(close(f.oee, 0.1875), "{f:?}");
        assert_eq!(s.by_code_ms, BTreeMap::from([(1, 10_800_000), (2, 3_600_000), (3, 3_600_000)]));
        // pro-rating: 08:00-10:00 holds half of the job's parts
        let morning =
            sums(Window::new(at(8, 0), at(10, 0), at(48, 0)), &acts, &[job], &[prod], EngineConfig::default());
        assert_eq!((morning.good, morning.total - morning.good), (45.0, 5.0));
    }

    #[test]
    fn edge_cases_follow_the_twelve_rules() {
        let job = |ict| Job { span: Span { start: at(8, 0), end: None }, ideal_cycle_time_s: ict };
        let prod =
            |good, rejects, ict| Production { start: at(8, 0), end: at(9, 0), good, rejects, ideal_cycle_time_s: ict };
        struct Case {
            name: &'static str,
            acts: Vec<Activity>,
            jobs: Vec<Job>,
            prod: Vec<Production>,
            want: (Option<f64>, Option<f64>, Option<f64>, Option<f64>),
        }
        let cases = [
            Case {
                name: "nothing planned",
                acts: vec![act((8, 0), (9, 0), 3, NotScheduled)],
                jobs: vec![],
                prod: vec![],
                want: (None, None, None, None),
            },
            Case {
                name: "planned but never ran",
                acts: vec![act((8, 0), (9, 0), 2, Breakdown)],
                jobs: vec![job(Some(1.0))],
                prod: vec![],
                want: (Some(0.0), None, None, Some(0.0)),
            },
            Case {
                name: "ran and made nothing",
                acts: vec![act((8, 0), (9, 0), 1, Running)],
                jobs: vec![job(Some(1.0))],
                prod: vec![],
                want: (Some(1.0), Some(0.0), None, Some(0.0)),
            },
            Case {
                name: "no ideal cycle time",
                acts: vec![act((8, 0), (9, 0), 1, Running)],
                jobs: vec![job(None)],
                prod: vec![prod(10, 0, None)],
                want: (Some(1.0), None, Some(1.0), None),
            },
            Case {
                name: "faster than ideal is flagged, not clamped",
                acts: vec![act((8, 0), (9, 0), 1, Running)],
                jobs: vec![job(Some(1.0))],
                prod: vec![prod(7200, 0, Some(1.0))],
                want: (Some(1.0), Some(2.0), Some(1.0), Some(2.0)),
            },
        ];
        for c in cases {
            let f = sums(day(), &c.acts, &c.jobs, &c.prod, EngineConfig::default()).figures();
            assert_eq!((f.availability, f.performance, f.quality, f.oee), c.want, "{}", c.name);
        }
        let f = sums(
            day(),
            &[act((8, 0), (9, 0), 1, Running)],
            &[job(Some(1.0))],
            &[prod(7200, 0, Some(1.0))],
            EngineConfig::default(),
        )
        .figures();
        assert!(f.performance_over_100);
        let f = sums(day(), &[act((8, 0), (9, 0), 2, Breakdown)], &[], &[prod(5, 0, None)], EngineConfig::default())
            .figures();
        assert!(f.counts_while_down);
    }

    #[test]
    fn open_activities_run_to_the_clamped_window_end() {
        let now = at(10, 30);
        let w = Window::new(at(8, 0), at(12, 0), now);
        assert_eq!(w.end, now);
        let open = Activity {
            span: Span { start: at(9, 0), end: None },
            code_id: 1,
            state: MachineState::Uptime,
            category: Running,
        };
        let s = sums(w, &[act((8, 0), (9, 0), 2, Breakdown), open], &[], &[], EngineConfig::default());
        assert_eq!((s.run_ms, s.planned_ms, s.all_ms), (90 * 60_000, 150 * 60_000, 150 * 60_000));
        assert!(Window::new(at(12, 0), at(13, 0), now).ms() == 0, "a window wholly in the future is empty");
    }

    #[test]
    fn partial_ideal_cycle_time_coverage_is_reported() {
        let acts = [act((8, 0), (10, 0), 1, Running)];
        let jobs = [
            Job { span: Span { start: at(8, 0), end: Some(at(9, 0)) }, ideal_cycle_time_s: Some(2.0) },
            Job { span: Span { start: at(9, 0), end: Some(at(10, 0)) }, ideal_cycle_time_s: None },
        ];
        let prod = [
            Production { start: at(8, 0), end: at(9, 0), good: 1800, rejects: 0, ideal_cycle_time_s: Some(2.0) },
            Production { start: at(9, 0), end: at(10, 0), good: 500, rejects: 0, ideal_cycle_time_s: None },
        ];
        let f = sums(day(), &acts, &jobs, &prod, EngineConfig::default()).figures();
        assert!(close(f.ict_coverage, 0.5) && close(f.performance, 1.0), "{f:?}");
    }

    #[test]
    fn short_breakdowns_become_minor_stops_under_the_threshold() {
        let acts =
            [act((8, 0), (8, 1), 2, Breakdown), act((8, 1), (9, 0), 1, Running), act((9, 0), (9, 10), 2, Breakdown)];
        let cfg = EngineConfig { minor_stop_threshold_ms: 120_000 };
        let s = sums(day(), &acts, &[], &[], cfg);
        assert_eq!((s.minor_stop_ms, s.breakdown_ms), (60_000, 600_000));
        assert_eq!(s.run_ms, 60 * 60_000, "the minor stop counts as run time");
        assert_eq!(s.planned_ms, 70 * 60_000);
    }

    #[test]
    fn losses_targets_and_states_of_the_reference_example() {
        let (acts, job, prod) = reference_example();
        let s = sums(day(), &acts, &[job], &[prod], EngineConfig::default());
        let l = s.losses();
        // 100 parts × 30 s = 50 min ideal, 45 min of it good; 3 h run, 1 h down.
        assert_eq!(l.fully_productive_ms, 45.0 * 60_000.0);
        assert_eq!(l.breakdown_ms, 3_600_000);
        assert_eq!(l.reduced_speed_ms, (180.0 - 50.0) * 60_000.0);
        assert_eq!(l.quality_ms, 5.0 * 60_000.0);
        assert_eq!((l.minor_stop_ms, l.setup_ms, l.planned_stop_ms, l.no_ideal_cycle_time_ms), (0, 0, 0, 0));
        // 4 h planned inside the job at 30 s a part: 480 parts; 3 h of run time: 360.
        assert!((s.target_quantity - 480.0).abs() < 1e-9 && (s.target_quantity_run - 360.0).abs() < 1e-9);
        assert_eq!(s.by_state(), BTreeMap::from([(1, 10_800_000), (2, 3_600_000), (3, 3_600_000), (4, 0)]));
    }

    #[test]
    fn minor_stops_and_uncovered_run_time_are_their_own_losses() {
        let acts = [act((8, 0), (8, 1), 2, Breakdown), act((8, 1), (9, 0), 1, Running)];
        let jobs = [
            Job { span: Span { start: at(8, 0), end: Some(at(8, 30)) }, ideal_cycle_time_s: Some(2.0) },
            Job { span: Span { start: at(8, 30), end: None }, ideal_cycle_time_s: None },
        ];
        let prod =
            [Production { start: at(8, 0), end: at(8, 30), good: 600, rejects: 0, ideal_cycle_time_s: Some(2.0) }];
        let s = sums(day(), &acts, &jobs, &prod, EngineConfig { minor_stop_threshold_ms: 120_000 });
        let l = s.losses();
        assert_eq!(l.minor_stop_ms, 60_000);
        assert_eq!(l.breakdown_ms, 0);
        // 30 covered minutes, one of them the minor stop, 20 min ideal (600 × 2 s): 9 min slow.
        assert_eq!(l.reduced_speed_ms, 9.0 * 60_000.0);
        assert_eq!(l.no_ideal_cycle_time_ms, 30 * 60_000);
        assert_eq!(l.fully_productive_ms, 20.0 * 60_000.0);
        assert!((s.target_quantity - 900.0).abs() < 1e-9, "30 planned minutes at 2 s: {}", s.target_quantity);
    }

    #[test]
    fn loss_categories_read_their_stored_names() {
        assert_eq!(LossCategory::try_from("not_scheduled".to_string()), Ok(NotScheduled));
        assert_eq!(LossCategory::try_from("minor_stop".to_string()), Ok(MinorStop));
        assert!(LossCategory::try_from("coffee".to_string()).unwrap_err().contains("coffee"));
    }

    #[test]
    fn group_figures_come_from_sums_weighted_by_time() {
        let a = sums(day(), &[act((8, 0), (9, 0), 1, Running)], &[], &[], EngineConfig::default());
        let b = sums(day(), &[act((8, 0), (11, 0), 2, Breakdown)], &[], &[], EngineConfig::default());
        let mut g = a.clone();
        g.add(&b);
        // averaging the two availabilities (1 and 0) would say 0.5; time-weighted it is 1 h of 4 h
        assert!(close(g.figures().availability, 0.25));
        assert_eq!(g.all_ms, 2 * 24 * 3_600_000);
    }
}

#[cfg(test)]
mod properties {
    use super::*;
    use chrono::{Duration, TimeZone};
    use proptest::prelude::*;

    const CATEGORIES: [LossCategory; 7] = LossCategory::ALL;

    fn t0() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 3, 2, 0, 0, 0).unwrap()
    }

    /// Activities tiling [0, len) minutes: cut points and a category per piece; production records
    /// anywhere in it; one ideal cycle time for the whole window.
    fn history() -> impl Strategy<Value = (Vec<Activity>, Vec<Production>, f64, i64)> {
        (
            10i64..2000,
            prop::collection::vec((1i64..120, 0usize..7), 1..30),
            prop::collection::vec((0i64..2000, 0i64..300, 0i64..500, 0i64..50), 0..10),
            0.1f64..60.0,
        )
            .prop_map(|(len, pieces, records, ict)| {
                let mut acts = Vec::new();
                let mut at = 0;
                for (i, (minutes, cat)) in pieces.into_iter().enumerate() {
                    if at >= len {
                        break;
                    }
                    let end = (at + minutes).min(len);
                    acts.push(Activity {
                        span: Span { start: t0() + Duration::minutes(at), end: Some(t0() + Duration::minutes(end)) },
                        code_id: i as i32 % 5,
                        state: state_of(CATEGORIES[cat]),
                        category: CATEGORIES[cat],
                    });
                    at = end;
                }
                if at < len {
                    acts.push(Activity {
                        span: Span { start: t0() + Duration::minutes(at), end: None },
                        code_id: 9,
                        state: MachineState::Uptime,
                        category: LossCategory::Running,
                    });
                }
                let prod = records
                    .into_iter()
                    .map(|(start, dur, good, rejects)| {
                        let start = start % len;
                        Production {
                            start: t0() + Duration::minutes(start),
                            end: t0() + Duration::minutes((start + dur).min(len)),
                            good,
                            rejects,
                            ideal_cycle_time_s: Some(ict),
                        }
                    })
                    .collect();
                (acts, prod, ict, len)
            })
    }

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() <= 1e-6 * a.abs().max(b.abs()).max(1.0)
    }

    proptest! {
        #[test]
        fn durations_tile_the_window((acts, prod, ict, len) in history()) {
            let w = Window::new(t0(), t0() + Duration::minutes(len), t0() + Duration::days(30));
            let job = Job { span: Span { start: t0(), end: None }, ideal_cycle_time_s: Some(ict) };
            let s = sums(w, &acts, &[job], &prod, EngineConfig::default());
            prop_assert_eq!(s.by_code_ms.values().sum::<i64>(), s.all_ms);
            prop_assert_eq!(s.planned_ms + s.not_scheduled_ms, s.all_ms);
            prop_assert_eq!(s.by_state_ms.iter().sum::<i64>(), s.all_ms);
            let l = s.losses();
            let accounted = l.fully_productive_ms + (l.breakdown_ms + l.setup_ms + l.planned_stop_ms + l.minor_stop_ms
                + l.no_ideal_cycle_time_ms) as f64 + l.reduced_speed_ms + l.quality_ms;
            prop_assert!(close(accounted, s.planned_ms as f64), "losses {:?} do not add up to {}", l, s.planned_ms);
            prop_assert!(s.target_quantity_run <= s.target_quantity + 1e-9);
            prop_assert!(s.run_ms <= s.planned_ms);
            let f = s.figures();
            prop_assert!(f.availability.is_none_or(|a| (0.0..=1.0).contains(&a)));
            prop_assert!(f.quality.is_none_or(|q| (0.0..=1.0).contains(&q)));
            if let (Some(a), Some(p), Some(q)) = (f.availability, f.performance, f.quality) {
                // one ideal cycle time, fully covered: A × P × Q is the simple form
                prop_assert!(close(a * p * q, s.ideal_good_ms / s.planned_ms as f64));
                prop_assert!(close(f.oee.unwrap(), a * p * q));
            }
        }

        #[test]
        fn splitting_a_window_and_adding_the_parts_gives_the_whole((acts, prod, ict, len) in history(), cut in 0.0f64..1.0) {
            let end = t0() + Duration::minutes(len);
            let mid = t0() + Duration::milliseconds((len as f64 * 60_000.0 * cut) as i64);
            let now = t0() + Duration::days(30);
            let job = Job { span: Span { start: t0(), end: None }, ideal_cycle_time_s: Some(ict) };
            let cfg = EngineConfig::default();
            let whole = sums(Window::new(t0(), end, now), &acts, &[job], &prod, cfg);
            let mut parts = sums(Window::new(t0(), mid, now), &acts, &[job], &prod, cfg);
            parts.add(&sums(Window::new(mid, end, now), &acts, &[job], &prod, cfg));
            prop_assert_eq!(parts.all_ms, whole.all_ms);
            prop_assert_eq!(parts.run_ms, whole.run_ms);
            prop_assert_eq!(parts.planned_ms, whole.planned_ms);
            prop_assert_eq!(parts.covered_run_ms, whole.covered_run_ms);
            prop_assert_eq!(parts.by_state_ms, whole.by_state_ms);
            prop_assert_eq!(&parts.by_code_ms, &whole.by_code_ms);
            prop_assert!(close(parts.target_quantity, whole.target_quantity));
            prop_assert!(close(parts.good, whole.good) && close(parts.total, whole.total));
            prop_assert!(close(parts.ideal_ms, whole.ideal_ms) && close(parts.ideal_good_ms, whole.ideal_good_ms));
            let (pf, wf) = (parts.figures(), whole.figures());
            prop_assert_eq!(pf.oee.is_some(), wf.oee.is_some());
            if let (Some(a), Some(b)) = (pf.oee, wf.oee) {
                prop_assert!(close(a, b));
            }
        }
    }
}
