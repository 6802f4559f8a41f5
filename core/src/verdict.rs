//! Why a command was refused, and the verdict ingest sends back. One place decides each refusal's
//! status, so MQTT devices and HTTP clients get the same answer for the same mistake.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// The exact body the reference answers for an up-state code other than "Up" with no job (contract C37).
pub const UPTIME_WITHOUT_JOB_409_BODY: &str = "Cannot set a machine to up when there is no active job";

/// The reference's own text of each history-edit refusal it has one for (contracts C50–C52, and a job's
/// counts spread over several records), by [`Refusal::reason`]. Each of these refusals' messages begins
/// with it; the reference's web forms answer it alone.
pub fn reference_text(reason: &str) -> Option<&'static str> {
    Some(match reason {
        "overlapping_jobs" => "Cannot have two jobs on a machine at once",
        "uptime_outside_job" => "Cannot set to uptime when no job is active",
        "end_before_start" => "End time before start time",
        "job_has_many_records" => {
            "Cannot edit job quantity because there are multiple production records for this job. Edit in the \
             production table"
        }
        _ => return None,
    })
}

/// A command that cannot be applied, with what to do about it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("{0}")]
    Malformed(String),
    #[error("missing field `{0}`")]
    MissingField(&'static str),
    #[error("machine {0} does not exist: check the machine id (oee-server machine list)")]
    UnknownMachine(String),
    #[error("activity code {0} does not exist: GET /api/activity-codes lists the codes")]
    UnknownCode(i32),
    #[error("user {0} does not exist: GET /api/users lists the users")]
    UnknownUser(i32),
    #[error("give `machine_state` or `activity_code_id` to say what the machine is doing")]
    NoCodeGiven,
    #[error("machine {machine_id} has no active job: start a job before setting it to an up state (code {code_id})")]
    UptimeWithoutJob { machine_id: i32, code_id: i32 },
    #[error(
        "machine {machine_id}'s current activity began at {since}, after this change's timestamp {at}: \
         changes must arrive in time order (edit history to change the past)"
    )]
    BeforeCurrentActivity { machine_id: i32, since: DateTime<Utc>, at: DateTime<Utc> },
    #[error("timestamp {at} is more than {skew_s} s in the future: check the device's clock")]
    InFuture { at: DateTime<Utc>, skew_s: u64 },
    #[error(
        "history time {at} is after {received_at}, when the edit was received: history records what has \
         happened; send times up to now (change the current state with state and job commands)"
    )]
    HistoryInFuture { at: DateTime<Utc>, received_at: DateTime<Utc> },
    #[error("machine {machine_id} already runs job {job_id}: end it before starting another")]
    JobAlreadyActive { machine_id: i32, job_id: i64 },
    #[error("machine {0} has no active job to end")]
    NoActiveJob(i32),
    #[error("the change could not be stored ({0}): try again later")]
    Storage(String),
    /// The database refused this one command (its batch without it was stored): sending it again would fail
    /// the same way.
    #[error("the command could not be stored ({0}): check its text and numbers, then send a corrected one")]
    Unstorable(String),
    /// Contract C52: the reference's text first, then what to do.
    #[error("End time before start time: {end} is before {start}; send an end at or after the start")]
    EndBeforeStart { start: DateTime<Utc>, end: DateTime<Utc> },
    /// Contract C51.
    #[error(
        "Cannot set to uptime when no job is active: code {code_id} is an up state, so {start} to {end} must lie \
         within exactly one job of machine {machine_id} ({jobs} overlap it); add or edit the job first"
    )]
    UptimeOutsideJob { machine_id: i32, code_id: i32, start: DateTime<Utc>, end: DateTime<Utc>, jobs: usize },
    /// Contract C50.
    #[error(
        "Cannot have two jobs on a machine at once: job {job_id} of machine {machine_id} overlaps {start} to \
         {end}; change the times or edit that job first"
    )]
    OverlappingJobs { machine_id: i32, job_id: i64, start: DateTime<Utc>, end: DateTime<Utc> },
    #[error("machine {machine_id} has no activity {activity_id}: check the activity id")]
    UnknownActivity { machine_id: i32, activity_id: i64 },
    #[error("machine {machine_id} has no job {job_id}: check the job id")]
    UnknownJob { machine_id: i32, job_id: i64 },
    #[error("machine {machine_id} has no production record {record_id}: check the record id")]
    UnknownRecord { machine_id: i32, record_id: i64 },
    #[error(
        "activity {activity_id} is machine {machine_id}'s current activity: it ends when the machine's state \
         changes, so leave `end_time` out"
    )]
    CurrentActivityEnd { machine_id: i32, activity_id: i64 },
    #[error("job {job_id} is still running on machine {machine_id}: end it with job/end instead of giving `end_time`")]
    RunningJobEnd { machine_id: i32, job_id: i64 },
    #[error(
        "Cannot edit job quantity because there are multiple production records for this job. Edit in the \
         production table: job {job_id} has {records} records, change them with history/production"
    )]
    JobHasManyRecords { job_id: i64, records: usize },
    #[error("tablet {device_id} is not paired with machine {machine_id}: pair it again (oee-server tablet pair)")]
    TabletNotPaired { device_id: i32, machine_id: i32 },
    #[error("nobody is logged in on tablet {0}")]
    NotLoggedIn(i32),
    #[error(
        "machine {machine_id}'s job {job_id} started at {job_start}, after these counts' timestamp {at}: \
         record earlier counts with history/production"
    )]
    CountsBeforeJob { machine_id: i32, job_id: i64, job_start: DateTime<Utc>, at: DateTime<Utc> },
    #[error(
        "only the server sends {0} commands, sealed with its secret: this one's seal is missing, wrong or \
         more than 5 minutes old (log in through the tablet API)"
    )]
    NotFromServer(&'static str),
}

impl Refusal {
    /// A stable, machine-readable name of the refusal, carried in verdicts.
    pub fn reason(&self) -> &'static str {
        match self {
            Refusal::Malformed(_) => "malformed",
            Refusal::MissingField(_) => "missing_field",
            Refusal::UnknownMachine(_) => "unknown_machine",
            Refusal::UnknownCode(_) => "unknown_code",
            Refusal::UnknownUser(_) => "unknown_user",
            Refusal::NoCodeGiven => "no_code_given",
            Refusal::UptimeWithoutJob { .. } => "uptime_without_job",
            Refusal::BeforeCurrentActivity { .. } => "out_of_order",
            Refusal::InFuture { .. } | Refusal::HistoryInFuture { .. } => "in_future",
            Refusal::JobAlreadyActive { .. } => "job_already_active",
            Refusal::NoActiveJob(_) => "no_active_job",
            Refusal::Storage(_) => "storage",
            Refusal::Unstorable(_) => "unstorable",
            Refusal::EndBeforeStart { .. } => "end_before_start",
            Refusal::UptimeOutsideJob { .. } => "uptime_outside_job",
            Refusal::OverlappingJobs { .. } => "overlapping_jobs",
            Refusal::UnknownActivity { .. } => "unknown_activity",
            Refusal::UnknownJob { .. } => "unknown_job",
            Refusal::UnknownRecord { .. } => "unknown_record",
            Refusal::CurrentActivityEnd { .. } => "current_activity_end",
            Refusal::RunningJobEnd { .. } => "running_job_end",
            Refusal::JobHasManyRecords { .. } => "job_has_many_records",
            Refusal::CountsBeforeJob { .. } => "counts_before_job",
            Refusal::TabletNotPaired { .. } => "tablet_not_paired",
            Refusal::NotLoggedIn(_) => "not_logged_in",
            Refusal::NotFromServer(_) => "not_from_server",
        }
    }

    /// The HTTP status for this refusal, also carried in MQTT verdicts.
    pub fn status(&self) -> u16 {
        match self {
            Refusal::Malformed(_)
            | Refusal::InFuture { .. }
            | Refusal::HistoryInFuture { .. }
            | Refusal::Unstorable(_) => 400,
            Refusal::MissingField(_) => 422,
            Refusal::UnknownMachine(_) | Refusal::UnknownCode(_) | Refusal::UnknownUser(_) | Refusal::NoCodeGiven => {
                404
            }
            // The reference answers 400 when the resolved code is "Up" itself and 409 for other up codes.
            Refusal::UptimeWithoutJob { code_id, .. } => {
                if *code_id == crate::activity::UP_CODE_ID {
                    400
                } else {
                    409
                }
            }
            Refusal::BeforeCurrentActivity { .. } | Refusal::JobAlreadyActive { .. } | Refusal::NoActiveJob(_) => 409,
            Refusal::Storage(_) => 503,
            // The reference answers 400 for each of its history-edit refusals (contracts C50-C52).
            Refusal::EndBeforeStart { .. }
            | Refusal::UptimeOutsideJob { .. }
            | Refusal::OverlappingJobs { .. }
            | Refusal::JobHasManyRecords { .. } => 400,
            Refusal::UnknownActivity { .. } | Refusal::UnknownJob { .. } | Refusal::UnknownRecord { .. } => 404,
            Refusal::CurrentActivityEnd { .. } | Refusal::RunningJobEnd { .. } | Refusal::CountsBeforeJob { .. } => 409,
            Refusal::TabletNotPaired { .. } | Refusal::NotLoggedIn(_) => 409,
            Refusal::NotFromServer(_) => 403,
        }
    }
}

/// Most characters of a client's value quoted back in a refusal ([`echo`]).
pub const MAX_ECHO_CHARS: usize = 200;

/// Most characters of a verdict's message. Messages quote at most a value or two ([`echo`]); this bound is
/// the last guard that keeps every verdict a small packet.
pub const MAX_MESSAGE_CHARS: usize = 1000;

/// `text` cut to at most `max` characters (whole characters, never inside one), marked with `…` when cut.
pub fn bounded(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        None => text.to_string(),
        Some(_) => {
            let keep = max.saturating_sub(1);
            let end = text.char_indices().nth(keep).map_or(text.len(), |(i, _)| i);
            format!("{}…", &text[..end])
        }
    }
}

/// A client's value as quoted back in a refusal: at most [`MAX_ECHO_CHARS`] characters, so that an answer
/// never grows with what was sent.
pub fn echo(value: impl std::fmt::Display) -> String {
    bounded(&value.to_string(), MAX_ECHO_CHARS)
}

/// Ingest's answer to one command, published on the command's `reply_to` topic.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Verdict {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
    /// 200 when applied; otherwise the refusal's status.
    pub status: u16,
    pub ok: bool,
    /// Why it was refused, as a stable name (see [`Refusal::reason`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// The code stored (after schedule coercion), when applied.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub activity_code_id: Option<i32>,
    /// The id of the row a history command added or changed (activity, job or production record).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<i64>,
}

impl Verdict {
    pub fn applied(request_id: Option<String>, activity_code_id: Option<i32>) -> Verdict {
        Verdict { request_id, status: 200, ok: true, reason: None, message: None, activity_code_id, id: None }
    }

    /// Applied, having added or changed the row `id`.
    pub fn created(request_id: Option<String>, id: i64) -> Verdict {
        Verdict { id: Some(id), ..Verdict::applied(request_id, None) }
    }

    pub fn refused(request_id: Option<String>, refusal: &Refusal) -> Verdict {
        Verdict {
            request_id,
            status: refusal.status(),
            ok: false,
            reason: Some(refusal.reason().to_string()),
            message: Some(bounded(&refusal.to_string(), MAX_MESSAGE_CHARS)),
            activity_code_id: None,
            id: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoted_values_are_cut_to_whole_characters() {
        assert_eq!(bounded("abc", 3), "abc");
        assert_eq!(bounded("abcd", 3), "ab…");
        assert_eq!(bounded("ééé", 2), "é…");
        assert_eq!(bounded("", 0), "");
        let long = "ü".repeat(10_000);
        let e = echo(&long);
        assert_eq!(e.chars().count(), MAX_ECHO_CHARS);
        assert!(e.ends_with('…'));
        assert_eq!(echo(serde_json::json!("x")), "\"x\"");
    }

    #[test]
    fn history_refusals_begin_with_the_reference_text() {
        let t = chrono::DateTime::<Utc>::UNIX_EPOCH;
        let refusals = [
            Refusal::OverlappingJobs { machine_id: 1, job_id: 2, start: t, end: t },
            Refusal::UptimeOutsideJob { machine_id: 1, code_id: 1, start: t, end: t, jobs: 0 },
            Refusal::EndBeforeStart { start: t, end: t },
            Refusal::JobHasManyRecords { job_id: 2, records: 3 },
        ];
        for r in refusals {
            let text = reference_text(r.reason()).unwrap_or_else(|| panic!("{} has no text", r.reason()));
            assert!(r.to_string().starts_with(&format!("{text}: ")), "{r}");
        }
        assert_eq!(reference_text(Refusal::NoActiveJob(1).reason()), None);
    }

    #[test]
    fn a_refusal_that_quotes_a_long_value_gives_a_small_verdict() {
        let r = Refusal::Malformed(format!("`job_number` must be text, not {}", "x".repeat(100_000)));
        let v = Verdict::refused(Some("id".into()), &r);
        assert_eq!(v.message.as_deref().map(|m| m.chars().count()), Some(MAX_MESSAGE_CHARS));
        assert!(serde_json::to_vec(&v).unwrap().len() < 4 * MAX_MESSAGE_CHARS);
        let r = Refusal::Unstorable("invalid byte sequence".into());
        assert_eq!((r.status(), r.reason()), (400, "unstorable"));
    }
}
