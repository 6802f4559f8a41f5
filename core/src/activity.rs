//! The activity state machine: whether a requested change of a machine's activity is allowed, and what
//! activity it becomes (reference §4.1). Pure: snapshots and codes in, a change or a refusal out.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::verdict::Refusal;

/// Seeded code "Up".
pub const UP_CODE_ID: i32 = 1;
/// Seeded code "Down" (unexplained downtime).
pub const DOWN_CODE_ID: i32 = 2;
/// Seeded code "Closed" (planned downtime outside shift hours).
pub const CLOSED_CODE_ID: i32 = 3;
/// Seeded code "Overtime" (uptime outside shift hours).
pub const OVERTIME_CODE_ID: i32 = 4;

/// What a machine is doing, in the four states every activity code maps to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(into = "i16", try_from = "i16")]
pub enum MachineState {
    Uptime = 1,
    UnplannedDowntime = 2,
    PlannedDowntime = 3,
    Overtime = 4,
}

impl MachineState {
    /// States in which the machine is producing, which need an active job.
    pub fn is_up(self) -> bool {
        matches!(self, MachineState::Uptime | MachineState::Overtime)
    }
}

impl From<MachineState> for i16 {
    fn from(s: MachineState) -> i16 {
        s as i16
    }
}

impl TryFrom<i16> for MachineState {
    type Error = String;
    fn try_from(v: i16) -> Result<Self, String> {
        match v {
            1 => Ok(MachineState::Uptime),
            2 => Ok(MachineState::UnplannedDowntime),
            3 => Ok(MachineState::PlannedDowntime),
            4 => Ok(MachineState::Overtime),
            other => Err(format!("machine state must be 1 to 4, not {other}")),
        }
    }
}

/// Whether the machine's shift pattern says it should be working now.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(into = "i16", try_from = "i16")]
pub enum ScheduleState {
    /// Planned uptime (stored as 1, as the reference does).
    InShift = 1,
    /// Planned downtime (stored as 3).
    OutOfShift = 3,
}

impl From<ScheduleState> for i16 {
    fn from(s: ScheduleState) -> i16 {
        s as i16
    }
}

impl TryFrom<i16> for ScheduleState {
    type Error = String;
    fn try_from(v: i16) -> Result<Self, String> {
        match v {
            1 => Ok(ScheduleState::InShift),
            3 => Ok(ScheduleState::OutOfShift),
            other => Err(format!("schedule state must be 1 or 3, not {other}")),
        }
    }
}

/// An activity (reason) code as the state machine needs it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Code {
    pub id: i32,
    pub state: MachineState,
}

/// A machine's current situation, read under its row lock.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MachineSnapshot {
    pub id: i32,
    pub schedule: ScheduleState,
    pub active_job_id: Option<i64>,
    pub code_id: i32,
    /// Start of the open activity.
    pub since: DateTime<Utc>,
    pub user_id: Option<i32>,
}

/// An accepted change: close the open activity at `at`, open one with `code_id`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    pub machine_id: i32,
    pub at: DateTime<Utc>,
    /// The code actually stored, after schedule coercion.
    pub code_id: i32,
    pub user_id: Option<i32>,
}

/// Which code a device asked for: `activity_code_id` wins; otherwise `machine_state` 1 means Up and any
/// other value means Down (reference §5.1). `None` when neither was given.
pub fn requested_code(machine_state: Option<i64>, activity_code_id: Option<i32>) -> Option<i32> {
    match (activity_code_id, machine_state) {
        (Some(code), _) => Some(code),
        (None, Some(1)) => Some(UP_CODE_ID),
        (None, Some(_)) => Some(DOWN_CODE_ID),
        (None, None) => None,
    }
}

/// Judges a request to move `machine` to `code` at `at`.
///
/// Rules, in the reference's order: an up-state code needs an active job; then schedule coercion (an up
/// code outside shift is stored as Overtime, Overtime inside shift is stored as Up). The same code as the
/// current one still makes a new segment. A change stamped before the open activity began is refused,
/// because it would give that activity a negative length.
pub fn judge(
    machine: &MachineSnapshot,
    code: Code,
    at: DateTime<Utc>,
    user_id: Option<i32>,
) -> Result<Change, Refusal> {
    if code.state.is_up() && machine.active_job_id.is_none() {
        return Err(Refusal::UptimeWithoutJob { machine_id: machine.id, code_id: code.id });
    }
    if at < machine.since {
        return Err(Refusal::BeforeCurrentActivity { machine_id: machine.id, since: machine.since, at });
    }
    let code_id = match (machine.schedule, code.state) {
        (ScheduleState::OutOfShift, s) if s.is_up() => OVERTIME_CODE_ID,
        (ScheduleState::InShift, MachineState::Overtime) => UP_CODE_ID,
        _ => code.id,
    };
    Ok(Change { machine_id: machine.id, at, code_id, user_id })
}

/// Judges starting a job: refused while another job runs; otherwise the machine moves to its job-start
/// code, coerced by the schedule like any change (reference §4.2).
pub fn judge_job_start(
    machine: &MachineSnapshot,
    start_code: Code,
    at: DateTime<Utc>,
    user_id: Option<i32>,
) -> Result<Change, Refusal> {
    if let Some(job_id) = machine.active_job_id {
        return Err(Refusal::JobAlreadyActive { machine_id: machine.id, job_id });
    }
    // The job exists from `at` on, so an up-state start code is allowed.
    let with_job = MachineSnapshot { active_job_id: Some(0), ..machine.clone() };
    judge(&with_job, start_code, at, user_id)
}

/// Judges ending the running job: the machine goes idle (Down in shift, Closed out of shift).
pub fn judge_job_end(machine: &MachineSnapshot, at: DateTime<Utc>, user_id: Option<i32>) -> Result<Change, Refusal> {
    if machine.active_job_id.is_none() {
        return Err(Refusal::NoActiveJob(machine.id));
    }
    if at < machine.since {
        return Err(Refusal::BeforeCurrentActivity { machine_id: machine.id, since: machine.since, at });
    }
    Ok(Change { machine_id: machine.id, at, code_id: idle_code(machine.schedule), user_id })
}

/// Judges an operator logging in (`user_id`) or out (`None`) on the machine's tablet: a new segment that
/// records who is at the machine. A running job keeps its code (a login must not stop it); with no job the
/// machine goes idle.
pub fn judge_operator_change(
    machine: &MachineSnapshot,
    at: DateTime<Utc>,
    user_id: Option<i32>,
) -> Result<Change, Refusal> {
    if at < machine.since {
        return Err(Refusal::BeforeCurrentActivity { machine_id: machine.id, since: machine.since, at });
    }
    let code_id = if machine.active_job_id.is_some() { machine.code_id } else { idle_code(machine.schedule) };
    Ok(Change { machine_id: machine.id, at, code_id, user_id })
}

/// The code of a machine with no job: Down in shift, Closed out of shift.
fn idle_code(schedule: ScheduleState) -> i32 {
    match schedule {
        ScheduleState::InShift => DOWN_CODE_ID,
        ScheduleState::OutOfShift => CLOSED_CODE_ID,
    }
}

impl MachineSnapshot {
    /// The snapshot after `change` was applied, so the next command in a batch is judged against it.
    pub fn apply(&mut self, change: &Change) {
        self.code_id = change.code_id;
        self.since = change.at;
        self.user_id = change.user_id;
    }
}

/// Codes for the state machine's tests: the four seeded ones and a few a plant might add.
#[cfg(test)]
pub(crate) mod test_codes {
    use super::{Code, MachineState};

    pub const UP: Code = Code { id: 1, state: MachineState::Uptime };
    pub const DOWN: Code = Code { id: 2, state: MachineState::UnplannedDowntime };
    pub const CLOSED: Code = Code { id: 3, state: MachineState::PlannedDowntime };
    pub const OVERTIME: Code = Code { id: 4, state: MachineState::Overtime };
    pub const SETUP: Code = Code { id: 5, state: MachineState::PlannedDowntime };
    pub const FAST_RUN: Code = Code { id: 6, state: MachineState::Uptime };
    pub const JAM: Code = Code { id: 7, state: MachineState::UnplannedDowntime };
}

#[cfg(test)]
mod tests {
    use super::test_codes::*;
    use super::*;
    use chrono::TimeZone;

    fn t(h: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 1, 5, h, 0, 0).unwrap()
    }

    fn machine(schedule: ScheduleState, job: bool) -> MachineSnapshot {
        MachineSnapshot {
            id: 7,
            schedule,
            active_job_id: job.then_some(11),
            code_id: DOWN_CODE_ID,
            since: t(8),
            user_id: None,
        }
    }

    #[test]
    fn an_operator_change_keeps_a_running_job_and_otherwise_idles_the_machine() {
        let running = MachineSnapshot { code_id: 6, ..machine(ScheduleState::OutOfShift, true) };
        let c = judge_operator_change(&running, t(9), Some(3)).unwrap();
        assert_eq!((c.code_id, c.user_id, c.at), (6, Some(3), t(9)));
        let idle_in = judge_operator_change(&machine(ScheduleState::InShift, false), t(9), Some(3)).unwrap();
        assert_eq!(idle_in.code_id, DOWN_CODE_ID);
        let idle_out = judge_operator_change(&machine(ScheduleState::OutOfShift, false), t(9), None).unwrap();
        assert_eq!((idle_out.code_id, idle_out.user_id), (CLOSED_CODE_ID, None));
        let early = judge_operator_change(&machine(ScheduleState::InShift, false), t(7), None).unwrap_err();
        assert_eq!(early.status(), 409);
    }

    #[test]
    fn requested_code_follows_the_reference_selection() {
        let cases = [
            (Some(1), None, Some(1)),
            (Some(0), None, Some(2)),
            (Some(5), None, Some(2)),
            (Some(-1), None, Some(2)),
            (Some(0), Some(3), Some(3)),
            (Some(1), Some(2), Some(2)),
            (None, Some(9), Some(9)),
            (None, None, None),
        ];
        for (state, code, want) in cases {
            assert_eq!(requested_code(state, code), want, "machine_state {state:?} code {code:?}");
        }
    }

    /// (schedule, has job, requested code, expected stored code or refusal status)
    #[test]
    fn judge_covers_every_rule() {
        use ScheduleState::*;
        let cases: &[(ScheduleState, bool, Code, Result<i32, u16>)] = &[
            // up-state codes need a job: code 1 answers 400, other up codes 409
            (InShift, false, UP, Err(400)),
            (OutOfShift, false, UP, Err(400)),
            (InShift, false, OVERTIME, Err(409)),
            (OutOfShift, false, OVERTIME, Err(409)),
            (InShift, false, FAST_RUN, Err(409)),
            // downtime codes never need a job and are never coerced
            (InShift, false, DOWN, Ok(2)),
            (OutOfShift, false, DOWN, Ok(2)),
            (InShift, false, CLOSED, Ok(3)),
            (OutOfShift, true, SETUP, Ok(5)),
            // coercion by schedule
            (InShift, true, UP, Ok(1)),
            (OutOfShift, true, UP, Ok(4)),
            (InShift, true, OVERTIME, Ok(1)),
            (OutOfShift, true, OVERTIME, Ok(4)),
            (OutOfShift, true, FAST_RUN, Ok(4)),
            (InShift, true, FAST_RUN, Ok(6)),
        ];
        for (schedule, job, code, want) in cases {
            let m = machine(*schedule, *job);
            let got = judge(&m, *code, t(9), Some(3)).map(|c| c.code_id).map_err(|r| r.status());
            assert_eq!(got, *want, "{schedule:?} job={job} code={}", code.id);
        }
    }

    #[test]
    fn the_same_code_again_still_makes_a_new_segment() {
        let m = machine(ScheduleState::InShift, false);
        let c = judge(&m, DOWN, t(9), None).unwrap();
        assert_eq!((c.code_id, c.at), (DOWN_CODE_ID, t(9)));
    }

    #[test]
    fn a_change_stamped_before_the_open_activity_is_refused() {
        let m = machine(ScheduleState::InShift, false);
        let r = judge(&m, DOWN, t(7), None).unwrap_err();
        assert_eq!(r.status(), 409);
        assert!(r.to_string().contains("machine 7"), "{r}");
        // exactly at the start is fine: a zero-length segment
        assert!(judge(&m, DOWN, t(8), None).is_ok());
    }

    #[test]
    fn applying_a_change_moves_the_snapshot() {
        let mut m = machine(ScheduleState::OutOfShift, true);
        let c = judge(&m, UP, t(10), Some(4)).unwrap();
        m.apply(&c);
        assert_eq!((m.code_id, m.since, m.user_id), (OVERTIME_CODE_ID, t(10), Some(4)));
    }

    #[test]
    fn jobs_start_once_and_end_down_or_closed() {
        use ScheduleState::*;
        let m = machine(InShift, false);
        assert_eq!(judge_job_start(&m, UP, t(9), None).unwrap().code_id, 1);
        assert_eq!(judge_job_start(&machine(OutOfShift, false), UP, t(9), None).unwrap().code_id, 4);
        assert_eq!(judge_job_start(&machine(InShift, true), UP, t(9), None).unwrap_err().status(), 409);
        assert_eq!(judge_job_end(&machine(InShift, true), t(9), None).unwrap().code_id, 2);
        assert_eq!(judge_job_end(&machine(OutOfShift, true), t(9), None).unwrap().code_id, 3);
        assert_eq!(judge_job_end(&m, t(9), None).unwrap_err().reason(), "no_active_job");
    }

    #[test]
    fn states_round_trip_through_their_stored_numbers() {
        for n in 1..=4i16 {
            assert_eq!(i16::from(MachineState::try_from(n).unwrap()), n);
        }
        assert!(MachineState::try_from(5).is_err());
        assert!(ScheduleState::try_from(2).is_err());
    }
}
