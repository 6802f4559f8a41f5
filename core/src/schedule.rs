//! What the shift pattern does to a machine over time: the effect of one shift transition on its schedule
//! state, activity and running job (reference §4.4), and catching a machine up with every transition of
//! its pattern since the last one applied. Pure: a machine, its pattern and the clock in, changes out.

use chrono::{DateTime, TimeDelta, Utc};
use chrono_tz::Tz;

use crate::activity::{
    CLOSED_CODE_ID, Change, Code, DOWN_CODE_ID, MachineSnapshot, MachineState, ScheduleState, judge, judge_job_end,
};
use crate::shift::{Transition, Version, schedule_over, transitions_over};

/// What one shift transition does to a machine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// When it takes effect: the transition's instant, or the start of the machine's open activity when
    /// that is later (history before it is not rewritten).
    pub at: DateTime<Utc>,
    /// The schedule state from `at` on.
    pub schedule: ScheduleState,
    /// The new activity, when the code changes. A transition that would repeat the current code changes
    /// only the schedule state (the reference made a redundant segment).
    pub change: Option<Change>,
    /// The running job, ended at `at`.
    pub ended_job: Option<i64>,
}

/// Applies a shift transition to `machine`, whose open activity has code `current`:
///
/// * shift start: in shift; Closed becomes Down, any other code is re-coerced (Overtime becomes Up);
/// * shift end: out of shift; a running job is ended (the machine becomes Closed) when
///   `end_job_on_shift_end`, otherwise its code is re-coerced (Up becomes Overtime); with no job, an
///   unplanned-downtime code becomes Closed and planned codes stay.
///
/// `not_before` is the earliest instant the outcome may be stamped (the start of the running job, if
/// any); the start of the open activity is always respected as well.
pub fn on_transition(
    machine: &MachineSnapshot,
    current: Code,
    end_job_on_shift_end: bool,
    to: ScheduleState,
    at: DateTime<Utc>,
    not_before: Option<DateTime<Utc>>,
) -> Outcome {
    let at = at.max(machine.since).max(not_before.unwrap_or(at));
    let moved = MachineSnapshot { schedule: to, ..machine.clone() };
    let same_code = |c: Change| (c.code_id != machine.code_id).then_some(c);
    let (change, ended_job) = match (to, machine.active_job_id) {
        (ScheduleState::InShift, _) => {
            let target = if current.id == CLOSED_CODE_ID {
                Code { id: DOWN_CODE_ID, state: MachineState::UnplannedDowntime }
            } else {
                current
            };
            // A refusal (an up code without a job, which the state machine never leaves behind) means
            // there is nothing to re-coerce.
            (judge(&moved, target, at, machine.user_id).ok().and_then(same_code), None)
        }
        (ScheduleState::OutOfShift, Some(job)) if end_job_on_shift_end => {
            (judge_job_end(&moved, at, machine.user_id).ok().and_then(same_code), Some(job))
        }
        (ScheduleState::OutOfShift, Some(_)) => {
            (judge(&moved, current, at, machine.user_id).ok().and_then(same_code), None)
        }
        (ScheduleState::OutOfShift, None) => {
            let closed = Change { machine_id: machine.id, at, code_id: CLOSED_CODE_ID, user_id: machine.user_id };
            let change = (current.state == MachineState::UnplannedDowntime).then_some(closed);
            (change.and_then(same_code), None)
        }
    };
    Outcome { at, schedule: to, change, ended_job }
}

/// A machine that follows a shift pattern, as the scheduler reads it under its row lock.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScheduledMachine {
    pub snapshot: MachineSnapshot,
    pub end_job_on_shift_end: bool,
    /// Start of the running job.
    pub job_start: Option<DateTime<Utc>>,
    /// Every transition at or before this instant has been applied; `None`: none yet.
    pub applied_until: Option<DateTime<Utc>>,
}

/// What catching a machine up with its pattern does, in time order.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Plan {
    /// Activity changes in the order they happen.
    pub changes: Vec<Change>,
    /// The running job and when it ended.
    pub ended_job: Option<(i64, DateTime<Utc>)>,
    /// The schedule state afterwards, when any transition was applied.
    pub schedule: Option<ScheduleState>,
    /// What the machine's applied-until instant becomes.
    pub applied_until: Option<DateTime<Utc>>,
}

impl Plan {
    /// Whether the machine's visible state (schedule, activity or job) changes.
    pub fn changes_machine(&self, before: ScheduleState) -> bool {
        !self.changes.is_empty() || self.ended_job.is_some() || self.schedule.is_some_and(|s| s != before)
    }
}

/// Catches `machine` up with its pattern's `versions` (in the plant's zone `tz`) until `now`.
///
/// Every transition after the machine's applied-until instant and at or before `now` is applied in order,
/// each by the version in force then (see [`transitions_over`]) and stamped when it should have happened (or
/// when the open activity began, if later). When nothing was
/// applied yet, or the last application is more than `max_catch_up` ago, history is not replayed: the
/// machine is moved to the state its pattern gives now, stamped now, if it is not in it already (the
/// reference's start-up behaviour, without its crash on a day with no shifts). `state_of` gives an
/// activity code's machine state.
pub fn catch_up(
    machine: &ScheduledMachine,
    versions: &[Version],
    tz: Tz,
    now: DateTime<Utc>,
    max_catch_up: TimeDelta,
    state_of: impl Fn(i32) -> Option<MachineState>,
) -> Plan {
    let events = match machine.applied_until {
        Some(until) if until >= now - max_catch_up => transitions_over(versions, tz, until, now),
        _ => {
            let state = schedule_over(versions, tz, now);
            if state == machine.snapshot.schedule { Vec::new() } else { vec![Transition { at: now, state }] }
        }
    };
    let mut snap = machine.snapshot.clone();
    let mut job_start = machine.job_start;
    let mut plan = Plan { applied_until: Some(machine.applied_until.map_or(now, |u| u.max(now))), ..Plan::default() };
    for t in events {
        plan.schedule = Some(t.state);
        let Some(state) = state_of(snap.code_id) else {
            // An unknown code cannot be judged; only the schedule moves.
            snap.schedule = t.state;
            continue;
        };
        let current = Code { id: snap.code_id, state };
        let out = on_transition(&snap, current, machine.end_job_on_shift_end, t.state, t.at, job_start);
        snap.schedule = out.schedule;
        if let Some(c) = out.change {
            snap.apply(&c);
            plan.changes.push(c);
        }
        if let Some(job) = out.ended_job {
            snap.active_job_id = None;
            job_start = None;
            plan.ended_job = Some((job, out.at));
        }
    }
    plan
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::activity::test_codes::*;
    use crate::activity::{OVERTIME_CODE_ID, UP_CODE_ID};
    use crate::shift::standard_day;
    use ScheduleState::*;
    use chrono::TimeZone;

    fn t(d: u32, h: u32, m: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 1, d, h, m, 0).unwrap()
    }

    fn machine(schedule: ScheduleState, code: Code, job: bool) -> MachineSnapshot {
        MachineSnapshot {
            id: 9,
            schedule,
            active_job_id: job.then_some(40),
            code_id: code.id,
            since: t(5, 8, 0),
            user_id: Some(2),
        }
    }

    fn state_of(id: i32) -> Option<MachineState> {
        [UP, DOWN, CLOSED, OVERTIME, SETUP, FAST_RUN, JAM].into_iter().find(|c| c.id == id).map(|c| c.state)
    }

    /// (transition to, current code, has job, end job on shift end, new code, job ended)
    type Case = (ScheduleState, Code, bool, bool, Option<i32>, bool);

    #[test]
    fn a_transition_follows_the_reference_rules() {
        let cases: &[Case] = &[
            // shift start: Closed becomes Down, the rest is re-coerced
            (InShift, CLOSED, false, true, Some(2), false),
            (InShift, CLOSED, true, true, Some(2), false),
            (InShift, OVERTIME, true, true, Some(1), false),
            (InShift, OVERTIME, true, false, Some(1), false),
            // unchanged codes make no new segment
            (InShift, DOWN, false, true, None, false),
            (InShift, UP, true, true, None, false),
            (InShift, SETUP, false, true, None, false),
            (InShift, FAST_RUN, true, true, None, false),
            (InShift, JAM, false, true, None, false),
            // shift end with a job that ends there: Closed, whatever the code
            (OutOfShift, UP, true, true, Some(3), true),
            (OutOfShift, OVERTIME, true, true, Some(3), true),
            (OutOfShift, DOWN, true, true, Some(3), true),
            (OutOfShift, SETUP, true, true, Some(3), true),
            // already Closed: the job ends, the activity goes on
            (OutOfShift, CLOSED, true, true, None, true),
            // shift end with a job that runs on: up codes become Overtime, downtime is not coerced
            (OutOfShift, UP, true, false, Some(4), false),
            (OutOfShift, FAST_RUN, true, false, Some(4), false),
            (OutOfShift, OVERTIME, true, false, None, false),
            (OutOfShift, DOWN, true, false, None, false),
            (OutOfShift, SETUP, true, false, None, false),
            // shift end without a job: unplanned downtime closes, planned downtime stays
            (OutOfShift, DOWN, false, true, Some(3), false),
            (OutOfShift, JAM, false, false, Some(3), false),
            (OutOfShift, CLOSED, false, true, None, false),
            (OutOfShift, SETUP, false, true, None, false),
        ];
        for &(to, code, job, end_job, want_code, want_ended) in cases {
            // the machine comes from the other schedule state, except for the midnight case below
            let from = if to == InShift { OutOfShift } else { InShift };
            let m = machine(from, code, job);
            let out = on_transition(&m, code, end_job, to, t(5, 9, 0), None);
            let what = format!("to {to:?} from code {} job={job} end_job={end_job}", code.id);
            assert_eq!(out.schedule, to, "{what}");
            assert_eq!(out.change.as_ref().map(|c| c.code_id), want_code, "{what}");
            assert_eq!(out.ended_job, want_ended.then_some(40), "{what}");
            if let Some(c) = out.change {
                assert_eq!((c.machine_id, c.at, c.user_id), (9, t(5, 9, 0), Some(2)), "{what}");
            }
        }
    }

    #[test]
    fn midnight_ends_an_overtime_job_even_though_the_schedule_stays_out_of_shift() {
        let m = machine(OutOfShift, OVERTIME, true);
        let out = on_transition(&m, OVERTIME, true, OutOfShift, t(6, 0, 0), None);
        assert_eq!((out.change.map(|c| c.code_id), out.ended_job), (Some(CLOSED_CODE_ID), Some(40)));
        let out = on_transition(&m, OVERTIME, false, OutOfShift, t(6, 0, 0), None);
        assert_eq!((out.change, out.ended_job), (None, None), "a job allowed to run on keeps running");
    }

    #[test]
    fn a_transition_is_never_stamped_before_the_open_activity_or_the_job() {
        let m = machine(InShift, UP, true);
        let out = on_transition(&m, UP, true, OutOfShift, t(5, 7, 0), None);
        assert_eq!(out.at, m.since);
        assert_eq!(out.change.unwrap().at, m.since);
        let out = on_transition(&m, UP, true, OutOfShift, t(5, 7, 0), Some(t(5, 8, 30)));
        assert_eq!(out.at, t(5, 8, 30));
    }

    fn nine_to_five() -> Vec<Version> {
        Version::always((0..7).flat_map(|d| standard_day(d, 9 * 60, 17 * 60)).collect())
    }

    fn scheduled(code: Code, job: bool, applied_until: Option<DateTime<Utc>>) -> ScheduledMachine {
        ScheduledMachine {
            snapshot: MachineSnapshot { schedule: OutOfShift, ..machine(OutOfShift, code, job) },
            end_job_on_shift_end: true,
            job_start: job.then(|| t(5, 8, 0)),
            applied_until,
        }
    }

    #[test]
    fn catching_up_applies_each_missed_transition_at_its_own_instant() {
        // Closed since Monday 08:00, applied until 08:30; it is now Tuesday 10:00 (UTC plant).
        let m = scheduled(CLOSED, false, Some(t(5, 8, 30)));
        let plan = catch_up(&m, &nine_to_five(), Tz::UTC, t(6, 10, 0), TimeDelta::days(7), state_of);
        // 09:00 Down; 17:00 Closed; 00:00 nothing (already Closed); Tuesday 09:00 Down
        let got: Vec<(i32, DateTime<Utc>)> = plan.changes.iter().map(|c| (c.code_id, c.at)).collect();
        assert_eq!(got, vec![(2, t(5, 9, 0)), (3, t(5, 17, 0)), (2, t(6, 9, 0))]);
        assert_eq!(plan.schedule, Some(InShift));
        assert_eq!(plan.applied_until, Some(t(6, 10, 0)));
        assert_eq!(plan.ended_job, None);
        assert!(plan.changes_machine(OutOfShift));
    }

    #[test]
    fn a_job_running_into_shift_end_is_ended_there_once() {
        // Overtime with a job since 08:00, in shift at 09:00 (Up), ended at 17:00 (Closed).
        let m = scheduled(OVERTIME, true, Some(t(5, 8, 30)));
        let plan = catch_up(&m, &nine_to_five(), Tz::UTC, t(5, 23, 0), TimeDelta::days(7), state_of);
        let got: Vec<(i32, DateTime<Utc>)> = plan.changes.iter().map(|c| (c.code_id, c.at)).collect();
        assert_eq!(got, vec![(UP_CODE_ID, t(5, 9, 0)), (CLOSED_CODE_ID, t(5, 17, 0))]);
        assert_eq!(plan.ended_job, Some((40, t(5, 17, 0))));
        assert_eq!(plan.schedule, Some(OutOfShift));
    }

    #[test]
    fn a_job_allowed_past_shift_end_becomes_overtime() {
        let mut m = scheduled(OVERTIME, true, Some(t(5, 8, 30)));
        m.end_job_on_shift_end = false;
        let plan = catch_up(&m, &nine_to_five(), Tz::UTC, t(6, 1, 0), TimeDelta::days(7), state_of);
        let got: Vec<(i32, DateTime<Utc>)> = plan.changes.iter().map(|c| (c.code_id, c.at)).collect();
        assert_eq!(got, vec![(UP_CODE_ID, t(5, 9, 0)), (OVERTIME_CODE_ID, t(5, 17, 0))]);
        assert_eq!(plan.ended_job, None);
    }

    #[test]
    fn catching_up_twice_to_the_same_instant_changes_nothing_more() {
        let m = scheduled(CLOSED, false, Some(t(5, 8, 30)));
        let now = t(5, 12, 0);
        let first = catch_up(&m, &nine_to_five(), Tz::UTC, now, TimeDelta::days(7), state_of);
        let after = ScheduledMachine {
            snapshot: MachineSnapshot { schedule: InShift, code_id: 2, since: t(5, 9, 0), ..m.snapshot.clone() },
            applied_until: first.applied_until,
            ..m
        };
        let again = catch_up(&after, &nine_to_five(), Tz::UTC, now, TimeDelta::days(7), state_of);
        assert_eq!((again.changes.len(), again.schedule), (0, None));
        assert!(!again.changes_machine(InShift));
    }

    #[test]
    fn without_an_applied_instant_the_machine_jumps_to_the_current_state_now() {
        let now = t(5, 12, 0);
        let m = scheduled(CLOSED, false, None);
        let plan = catch_up(&m, &nine_to_five(), Tz::UTC, now, TimeDelta::days(7), state_of);
        assert_eq!(plan.changes.iter().map(|c| (c.code_id, c.at)).collect::<Vec<_>>(), vec![(2, now)]);
        assert_eq!((plan.schedule, plan.applied_until), (Some(InShift), Some(now)));
        // already in the state the pattern gives: nothing but the applied instant
        let plan = catch_up(&m, &nine_to_five(), Tz::UTC, t(5, 20, 0), TimeDelta::days(7), state_of);
        assert_eq!((plan.changes.len(), plan.schedule), (0, None));
        assert_eq!(plan.applied_until, Some(t(5, 20, 0)));
        // a pattern with no periods at all (no shifts any day) is out of shift, without failing
        let plan = catch_up(&scheduled(DOWN, false, None), &[], Tz::UTC, now, TimeDelta::days(7), state_of);
        assert_eq!(plan.changes.len(), 0, "DOWN with the machine already out of shift");
    }

    #[test]
    fn catch_up_is_bounded_and_never_goes_back() {
        // applied 10 days ago, at most 7 replayed: jump, stamped now
        let now = t(15, 12, 0);
        let m = scheduled(CLOSED, false, Some(t(5, 12, 0)));
        let plan = catch_up(&m, &nine_to_five(), Tz::UTC, now, TimeDelta::days(7), state_of);
        assert_eq!(plan.changes.iter().map(|c| (c.code_id, c.at)).collect::<Vec<_>>(), vec![(2, now)]);
        // an applied instant ahead of this clock stays where it is
        let m = scheduled(CLOSED, false, Some(t(5, 12, 0)));
        let plan = catch_up(&m, &nine_to_five(), Tz::UTC, t(5, 11, 0), TimeDelta::days(7), state_of);
        assert_eq!((plan.changes.len(), plan.applied_until), (0, Some(t(5, 12, 0))));
    }

    #[test]
    fn catching_up_applies_each_version_while_it_was_in_force() {
        // 9-5 until Monday 12:00, when the pattern was edited to no shifts at all; it is now Tuesday 10:00.
        let mut versions = nine_to_five();
        versions.push(Version { from: Some(t(5, 12, 0)), periods: Vec::new() });
        let m = scheduled(CLOSED, false, Some(t(5, 8, 30)));
        let plan = catch_up(&m, &versions, Tz::UTC, t(6, 10, 0), TimeDelta::days(7), state_of);
        let got: Vec<(i32, DateTime<Utc>)> = plan.changes.iter().map(|c| (c.code_id, c.at)).collect();
        assert_eq!(got, vec![(DOWN_CODE_ID, t(5, 9, 0)), (CLOSED_CODE_ID, t(5, 12, 0))]);
        assert_eq!(plan.schedule, Some(OutOfShift));
        // An edit that keeps the shift running (8-18 from noon) ends it at the new end, not at the edit.
        let mut versions = nine_to_five();
        versions.push(Version {
            from: Some(t(5, 12, 0)),
            periods: (0..7).flat_map(|d| standard_day(d, 480, 1080)).collect(),
        });
        let plan = catch_up(&m, &versions, Tz::UTC, t(5, 20, 0), TimeDelta::days(7), state_of);
        let got: Vec<(i32, DateTime<Utc>)> = plan.changes.iter().map(|c| (c.code_id, c.at)).collect();
        assert_eq!(got, vec![(DOWN_CODE_ID, t(5, 9, 0)), (CLOSED_CODE_ID, t(5, 18, 0))]);
        // Without an applied instant, the version in force now decides.
        let plan =
            catch_up(&scheduled(CLOSED, false, None), &versions, Tz::UTC, t(5, 17, 30), TimeDelta::days(7), state_of);
        assert_eq!(plan.schedule, Some(InShift));
    }
}
