//! Command payloads carried on the MQTT topics (and built by the HTTP bridge from its requests).
//! Parsing is lenient the way the reference's devices need: integers may arrive as JSON numbers or as
//! numeric strings.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::verdict::Refusal;

/// Routing fields any command may carry so that ingest can answer it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplyTo {
    /// Makes the command idempotent: a redelivered command with a known id is answered, not re-applied.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
    /// Topic on which ingest publishes the verdict.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reply_to: Option<String>,
}

/// A request to change a machine's activity (`oee/v1/machines/{m}/state`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StateCommand {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub machine_state: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub activity_code_id: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_id: Option<i32>,
    /// When the change happened; default: when ingest received it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timestamp: Option<DateTime<Utc>>,
    #[serde(flatten)]
    pub reply: ReplyTo,
}

impl StateCommand {
    /// Parses a state command from raw bytes.
    pub fn parse(bytes: &[u8]) -> Result<StateCommand, Refusal> {
        Self::from_object(&object(bytes)?)
    }

    /// Reads the command's fields from a JSON object, ignoring fields it does not know.
    pub fn from_object(obj: &Map<String, Value>) -> Result<StateCommand, Refusal> {
        Ok(StateCommand {
            machine_state: lenient_int(obj, "machine_state")?,
            activity_code_id: lenient_i32(obj, "activity_code_id")?,
            user_id: lenient_i32(obj, "user_id")?,
            timestamp: timestamp(obj, "timestamp")?,
            reply: reply(obj)?,
        })
    }
}

/// Starts a job (`oee/v1/machines/{m}/job/start`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobStartCommand {
    pub job_number: String,
    /// Seconds per part; absent or 0 when unknown.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ideal_cycle_time_s: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_id: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timestamp: Option<DateTime<Utc>>,
    #[serde(flatten)]
    pub reply: ReplyTo,
}

impl JobStartCommand {
    pub fn parse(bytes: &[u8]) -> Result<JobStartCommand, Refusal> {
        let obj = object(bytes)?;
        let job_number = match obj.get("job_number") {
            Some(Value::String(s)) if !s.trim().is_empty() && s.len() <= 100 => s.trim().to_string(),
            Some(Value::Number(n)) => n.to_string(),
            None | Some(Value::Null) => return Err(Refusal::MissingField("job_number")),
            Some(v) => {
                return Err(Refusal::Malformed(format!("`job_number` must be text of 1 to 100 characters, not {v}")));
            }
        };
        let ideal_cycle_time_s = match obj.get("ideal_cycle_time_s") {
            None | Some(Value::Null) => None,
            Some(v) => {
                let n = v.as_f64().or_else(|| v.as_str().and_then(|s| s.trim().parse().ok()));
                match n {
                    Some(x) if x.is_finite() && x >= 0.0 => (x > 0.0).then_some(x),
                    _ => {
                        return Err(Refusal::Malformed(format!(
                            "`ideal_cycle_time_s` must be a number of seconds ≥ 0, not {v}"
                        )));
                    }
                }
            }
        };
        Ok(JobStartCommand {
            job_number,
            ideal_cycle_time_s,
            user_id: lenient_i32(&obj, "user_id")?,
            timestamp: timestamp(&obj, "timestamp")?,
            reply: reply(&obj)?,
        })
    }
}

/// Ends the running job with its counts (`oee/v1/machines/{m}/job/end`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobEndCommand {
    pub good: i64,
    pub rejects: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_id: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timestamp: Option<DateTime<Utc>>,
    #[serde(flatten)]
    pub reply: ReplyTo,
}

impl JobEndCommand {
    pub fn parse(bytes: &[u8]) -> Result<JobEndCommand, Refusal> {
        let obj = object(bytes)?;
        let count = |field: &'static str| -> Result<i64, Refusal> {
            match lenient_int(&obj, field)? {
                Some(n) if n >= 0 => Ok(n),
                Some(n) => Err(Refusal::Malformed(format!("`{field}` cannot be negative ({n})"))),
                None => Ok(0),
            }
        };
        Ok(JobEndCommand {
            good: count("good")?,
            rejects: count("rejects")?,
            user_id: lenient_i32(&obj, "user_id")?,
            timestamp: timestamp(&obj, "timestamp")?,
            reply: reply(&obj)?,
        })
    }
}

fn object(bytes: &[u8]) -> Result<Map<String, Value>, Refusal> {
    match serde_json::from_slice(bytes) {
        Ok(Value::Object(o)) => Ok(o),
        Ok(_) => Err(Refusal::Malformed("payload must be a JSON object".into())),
        Err(e) => Err(Refusal::Malformed(format!("payload is not valid JSON: {e}"))),
    }
}

fn reply(obj: &Map<String, Value>) -> Result<ReplyTo, Refusal> {
    Ok(ReplyTo { request_id: optional_string(obj, "request_id")?, reply_to: optional_string(obj, "reply_to")? })
}

/// Readings from a machine (`oee/v1/machines/{m}/telemetry`): a JSON object of numbers, plus the
/// optional `timestamp`, `request_id` and `reply_to`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TelemetryCommand {
    /// The readings, name → number.
    pub values: Map<String, Value>,
    pub timestamp: Option<DateTime<Utc>>,
    pub reply: ReplyTo,
}

/// Most readings one telemetry message may carry.
pub const MAX_TELEMETRY_VALUES: usize = 256;

impl TelemetryCommand {
    /// Parses a telemetry message from raw bytes.
    pub fn parse(bytes: &[u8]) -> Result<TelemetryCommand, Refusal> {
        let value: Value =
            serde_json::from_slice(bytes).map_err(|e| Refusal::Malformed(format!("payload is not valid JSON: {e}")))?;
        let Value::Object(mut obj) = value else {
            return Err(Refusal::Malformed("telemetry must be a JSON object of numbers".into()));
        };
        let timestamp = timestamp(&obj, "timestamp")?;
        let reply = reply(&obj)?;
        for key in ["timestamp", "request_id", "reply_to"] {
            obj.remove(key);
        }
        if obj.is_empty() {
            return Err(Refusal::Malformed("telemetry carries no readings: send e.g. {\"temperature\": 71.5}".into()));
        }
        if obj.len() > MAX_TELEMETRY_VALUES {
            return Err(Refusal::Malformed(format!("telemetry carries more than {MAX_TELEMETRY_VALUES} readings")));
        }
        if let Some((k, v)) = obj.iter().find(|(k, v)| !v.is_number() || k.is_empty() || k.len() > 100) {
            return Err(Refusal::Malformed(format!(
                "telemetry reading `{k}` must be a number under a name of 1 to 100 characters, not {v}"
            )));
        }
        Ok(TelemetryCommand { values: obj, timestamp, reply })
    }
}

/// An integer field that may be a JSON integer, a whole float, or a numeric string; `null` is absent.
pub fn lenient_int(obj: &Map<String, Value>, field: &'static str) -> Result<Option<i64>, Refusal> {
    let bad = |v: &Value| Refusal::Malformed(format!("`{field}` must be an integer, not {v}"));
    match obj.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(v @ Value::Number(n)) => {
            if let Some(i) = n.as_i64() {
                Ok(Some(i))
            } else {
                match n.as_f64() {
                    Some(f) if f.fract() == 0.0 && f.abs() < 9.0e15 => Ok(Some(f as i64)),
                    _ => Err(bad(v)),
                }
            }
        }
        Some(v @ Value::String(s)) => s.trim().parse::<i64>().map(Some).map_err(|_| bad(v)),
        Some(v) => Err(bad(v)),
    }
}

/// As [`lenient_int`], within the range of an id.
pub fn lenient_i32(obj: &Map<String, Value>, field: &'static str) -> Result<Option<i32>, Refusal> {
    match lenient_int(obj, field)? {
        None => Ok(None),
        Some(i) => {
            i32::try_from(i).map(Some).map_err(|_| Refusal::Malformed(format!("`{field}` is out of range: {i}")))
        }
    }
}

fn optional_string(obj: &Map<String, Value>, field: &'static str) -> Result<Option<String>, Refusal> {
    match obj.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.len() <= 256 => Ok(Some(s.clone())),
        Some(Value::String(_)) => Err(Refusal::Malformed(format!("`{field}` is longer than 256 characters"))),
        Some(v) => Err(Refusal::Malformed(format!("`{field}` must be a string, not {v}"))),
    }
}

fn timestamp(obj: &Map<String, Value>, field: &'static str) -> Result<Option<DateTime<Utc>>, Refusal> {
    match optional_string(obj, field)? {
        None => Ok(None),
        Some(s) => DateTime::parse_from_rfc3339(&s).map(|t| Some(t.with_timezone(&Utc))).map_err(|e| {
            Refusal::Malformed(format!("`{field}` must be an RFC 3339 time like 2026-01-05T09:00:00Z: {e}"))
        }),
    }
}

/// A machine's current status, published retained on `oee/v1/machines/{m}/status`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, sqlx::FromRow)]
pub struct MachineStatus {
    pub machine_id: i32,
    pub machine_name: String,
    pub topic_name: Option<String>,
    pub activity_code_id: i32,
    pub activity_code: String,
    pub colour: String,
    /// 1 uptime, 2 unplanned downtime, 3 planned downtime, 4 overtime.
    pub machine_state: i16,
    /// 1 in shift, 3 out of shift.
    pub schedule_state: i16,
    pub job_id: Option<i64>,
    pub job_number: Option<String>,
    pub user_id: Option<i32>,
    /// Start of the current activity.
    pub since: DateTime<Utc>,
    /// The latest thing heard from the machine: its current activity's start, its latest reading or its
    /// latest production record.
    pub last_signal_at: DateTime<Utc>,
    /// `"ok"`, or `"no_signal"` when nothing was heard for longer than `ingest.no_signal_after_s` (the
    /// activity shown is then only the last one known).
    #[sqlx(skip)]
    pub signal: Signal,
}

/// Whether a machine's device is still heard from.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Signal {
    #[default]
    Ok,
    NoSignal,
}

impl Signal {
    /// The signal of a machine last heard at `last`, with `after` (none: never lost) allowed between signals.
    pub fn judge(last: DateTime<Utc>, now: DateTime<Utc>, after: Option<std::time::Duration>) -> Signal {
        match after.and_then(|a| chrono::Duration::from_std(a).ok()) {
            Some(limit) if now - last > limit => Signal::NoSignal,
            _ => Signal::Ok,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_machine_is_lost_only_after_the_allowed_silence() {
        let last = DateTime::parse_from_rfc3339("2026-01-05T10:00:00Z").unwrap().with_timezone(&Utc);
        let after = Some(std::time::Duration::from_secs(600));
        let at = |s: i64| last + chrono::Duration::seconds(s);
        assert_eq!(Signal::judge(last, at(600), after), Signal::Ok);
        assert_eq!(Signal::judge(last, at(601), after), Signal::NoSignal);
        assert_eq!(Signal::judge(last, at(86_400), None), Signal::Ok, "off: never lost");
        assert_eq!(serde_json::to_value(Signal::NoSignal).unwrap(), "no_signal");
    }

    #[test]
    fn integers_may_be_numbers_or_numeric_strings() {
        let c = StateCommand::parse(br#"{"machine_state":"1","activity_code_id":3.0,"user_id":" 2 "}"#).unwrap();
        assert_eq!((c.machine_state, c.activity_code_id, c.user_id), (Some(1), Some(3), Some(2)));
    }

    #[test]
    fn null_fields_are_absent_and_unknown_fields_ignored() {
        let c = StateCommand::parse(br#"{"machine_state":null,"colour":"red"}"#).unwrap();
        assert_eq!(c.machine_state, None);
    }

    #[test]
    fn bad_payloads_say_what_is_wrong() {
        let cases: &[(&[u8], &str)] = &[
            (b"not json", "not valid JSON"),
            (b"[1]", "JSON object"),
            (br#"{"machine_state":"up"}"#, "`machine_state` must be an integer"),
            (br#"{"machine_state":1.5}"#, "`machine_state` must be an integer"),
            (br#"{"activity_code_id":99999999999}"#, "out of range"),
            (br#"{"timestamp":"yesterday"}"#, "RFC 3339"),
            (br#"{"request_id":7}"#, "must be a string"),
        ];
        for (bytes, want) in cases {
            let err = StateCommand::parse(bytes).unwrap_err();
            assert_eq!(err.status(), 400);
            assert!(err.to_string().contains(want), "{err} should mention {want}");
        }
    }

    #[test]
    fn telemetry_is_an_object_of_numbers() {
        let t =
            TelemetryCommand::parse(br#"{"temp":71.5,"rpm":1200,"timestamp":"2026-01-05T09:00:00Z","request_id":"a"}"#)
                .unwrap();
        assert_eq!(t.values.len(), 2);
        assert_eq!(t.reply.request_id.as_deref(), Some("a"));
        for (bad, want) in [
            (&br#"{"temp":"hot"}"#[..], "`temp` must be a number"),
            (br#"{}"#, "no readings"),
            (br#"{"timestamp":"2026-01-05T09:00:00Z"}"#, "no readings"),
            (br#"[1]"#, "JSON object"),
        ] {
            let e = TelemetryCommand::parse(bad).unwrap_err();
            assert!(e.to_string().contains(want), "{e}");
        }
    }

    #[test]
    fn job_commands_need_a_job_number_and_non_negative_counts() {
        let s = JobStartCommand::parse(br#"{"job_number":" J100 ","ideal_cycle_time_s":"12.5"}"#).unwrap();
        assert_eq!((s.job_number.as_str(), s.ideal_cycle_time_s), ("J100", Some(12.5)));
        assert_eq!(
            JobStartCommand::parse(br#"{"job_number":7,"ideal_cycle_time_s":0}"#).unwrap().ideal_cycle_time_s,
            None
        );
        assert_eq!(JobStartCommand::parse(br#"{}"#).unwrap_err().status(), 422);
        assert_eq!(JobStartCommand::parse(br#"{"job_number":"J","ideal_cycle_time_s":-1}"#).unwrap_err().status(), 400);
        let e = JobEndCommand::parse(br#"{"good":"100","rejects":3}"#).unwrap();
        assert_eq!((e.good, e.rejects), (100, 3));
        assert!(JobEndCommand::parse(br#"{"good":-1}"#).unwrap_err().to_string().contains("negative"));
    }

    #[test]
    fn a_command_round_trips_through_json() {
        let c = StateCommand::parse(
            br#"{"activity_code_id":2,"timestamp":"2026-01-05T09:00:00+01:00","request_id":"r1","reply_to":"x/y"}"#,
        )
        .unwrap();
        assert_eq!(c.timestamp.unwrap().to_rfc3339(), "2026-01-05T08:00:00+00:00");
        let again = StateCommand::parse(&serde_json::to_vec(&c).unwrap()).unwrap();
        assert_eq!(again, c);
    }
}
