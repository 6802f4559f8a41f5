//! Command payloads carried on the MQTT topics (and built by the HTTP bridge from its requests).
//! Parsing is lenient the way the reference's devices need: integers may arrive as JSON numbers or as
//! numeric strings.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::topic;
use crate::verdict::{Refusal, echo};

/// Routing fields any command may carry so that ingest can answer it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ReplyTo {
    /// Makes the command idempotent: a redelivered command with a known id is answered, not re-applied.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
    /// Topic on which ingest publishes the verdict.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reply_to: Option<String>,
    /// When the server's HTTP bridge received the command, for a command without a `timestamp`: it then
    /// happened then, or as soon after as the machine's order of changes allows (never refused as out of
    /// order, since its time is the server's, not a device's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub received_at: Option<DateTime<Utc>>,
}

impl ReplyTo {
    /// The routing fields of a payload that was refused before it could be read as its command, so that the
    /// refusal can still be answered: `request_id` when it is a string, `reply_to` only when it is a topic
    /// ingest may publish to (anything else is never answered).
    pub fn salvage(bytes: &[u8]) -> ReplyTo {
        let Ok(Value::Object(obj)) = serde_json::from_slice::<Value>(bytes) else { return ReplyTo::default() };
        let text = |field: &str| match obj.get(field) {
            Some(Value::String(s)) if s.len() <= MAX_ID_LEN => Some(s.clone()),
            _ => None,
        };
        ReplyTo {
            request_id: text("request_id"),
            reply_to: text("reply_to").filter(|t| topic::valid_reply_topic(t)),
            received_at: None,
        }
    }
}

/// Longest `request_id` and `reply_to`, in bytes.
const MAX_ID_LEN: usize = 256;

/// A request to change a machine's activity (`oee/v1/machines/{m}/state`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct StateCommand {
    /// The reference's machine state, used when `activity_code_id` is absent: 1 is Up, any other value Down.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub machine_state: Option<i64>,
    /// The activity code the machine is now in (wins over `machine_state`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub activity_code_id: Option<i32>,
    /// Who made the change.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_id: Option<i32>,
    /// When the change happened; default: when ingest received it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timestamp: Option<DateTime<Utc>>,
    /// Text appended to the running job's notes with the change (a tablet's reason for a pause).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job_note: Option<String>,
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
            job_note: match obj.get("job_note") {
                None | Some(Value::Null) => None,
                Some(Value::String(s)) if s.len() <= 2000 => Some(s.clone()),
                Some(_) => return Err(Refusal::Malformed("`job_note` must be text of at most 2000 bytes".into())),
            },
            reply: reply(obj)?,
        })
    }
}

/// What a tablet session command does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SessionAction {
    Login,
    Logout,
}

/// An operator logs in or out on a machine's tablet (`oee/v1/machines/{m}/session`).
///
/// Logging in closes the tablet's earlier session, if any. With a job running the machine keeps its
/// activity (a new segment records who is now at the machine); with no job it goes Down in shift and
/// Closed out of shift. Logging out does the same without a user.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionCommand {
    pub action: SessionAction,
    /// The tablet (`input_device.id`); it must be paired with the machine.
    pub input_device_id: i32,
    /// Who logs in (required to log in).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_id: Option<i32>,
    /// When the server sealed it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub issued_at: Option<DateTime<Utc>>,
    /// The server's seal over [`SessionCommand::sealed_text`] ([`crate::access::ServerSeal`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seal: Option<String>,
    #[serde(flatten)]
    pub reply: ReplyTo,
}

impl SessionCommand {
    /// What the server's seal covers: the topic, every field that decides what the command does, its
    /// request id (so that a replay with another id is not a valid command) and when it was sealed.
    pub fn sealed_text(&self, topic: &str) -> String {
        let action = match self.action {
            SessionAction::Login => "login",
            SessionAction::Logout => "logout",
        };
        format!(
            "{topic}\n{action}\n{}\n{}\n{}\n{}",
            self.input_device_id,
            self.user_id.map(|u| u.to_string()).unwrap_or_default(),
            self.reply.request_id.as_deref().unwrap_or_default(),
            self.issued_at.map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Micros, true)).unwrap_or_default()
        )
    }

    /// The command that logs the operator of tablet `input_device_id` out; unsealed.
    pub fn logout(input_device_id: i32) -> SessionCommand {
        SessionCommand {
            action: SessionAction::Logout,
            input_device_id,
            user_id: None,
            issued_at: None,
            seal: None,
            reply: ReplyTo::default(),
        }
    }

    /// Seals the command as the server: stamps it now, with a request id when it has none.
    pub fn seal(&mut self, topic: &str, seal: &crate::access::ServerSeal, now: DateTime<Utc>) {
        self.issued_at = Some(now);
        self.reply.request_id.get_or_insert_with(|| uuid::Uuid::new_v4().to_string());
        self.seal = Some(seal.sign(&self.sealed_text(topic)));
    }

    /// Whether the command carries the server's seal, made at most five minutes before `received_at`.
    pub fn sealed_by_server(&self, topic: &str, seal: &crate::access::ServerSeal, received_at: DateTime<Utc>) -> bool {
        let fresh = self.issued_at.is_some_and(|t| (received_at - t).abs() <= chrono::Duration::minutes(5));
        fresh && self.seal.as_deref().is_some_and(|s| seal.verify(&self.sealed_text(topic), s))
    }
    pub fn parse(bytes: &[u8]) -> Result<SessionCommand, Refusal> {
        let obj = object(bytes)?;
        let action = match obj.get("action").and_then(Value::as_str) {
            Some("login") => SessionAction::Login,
            Some("logout") => SessionAction::Logout,
            None => return Err(Refusal::MissingField("action")),
            Some(other) => {
                return Err(Refusal::Malformed(format!(
                    "`action` must be \"login\" or \"logout\", not `{}`",
                    echo(other)
                )));
            }
        };
        let input_device_id = lenient_i32(&obj, "input_device_id")?.ok_or(Refusal::MissingField("input_device_id"))?;
        let user_id = lenient_i32(&obj, "user_id")?;
        if action == SessionAction::Login && user_id.is_none() {
            return Err(Refusal::MissingField("user_id"));
        }
        let seal = match obj.get("seal") {
            Some(Value::String(s)) if s.len() <= 128 => Some(s.clone()),
            _ => None,
        };
        Ok(SessionCommand {
            action,
            input_device_id,
            user_id,
            issued_at: timestamp(&obj, "issued_at")?,
            seal,
            reply: reply(&obj)?,
        })
    }
}

/// Starts a job (`oee/v1/machines/{m}/job/start`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct JobStartCommand {
    /// The job's number: text of 1 to 100 characters (a number is taken as its text).
    pub job_number: String,
    /// Seconds per part; absent or 0 when unknown.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ideal_cycle_time_s: Option<f64>,
    /// Who started it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_id: Option<i32>,
    /// When it started; default: when ingest received it.
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
                return Err(Refusal::Malformed(format!(
                    "`job_number` must be text of 1 to 100 characters, not {}",
                    echo(v)
                )));
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
                            "`ideal_cycle_time_s` must be a number of seconds ≥ 0, not {}",
                            echo(v)
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
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct JobEndCommand {
    /// Good parts of the whole job (absent: 0).
    #[schema(required = false, minimum = 0)]
    pub good: i64,
    /// Rejected parts of the whole job (absent: 0).
    #[schema(required = false, minimum = 0)]
    pub rejects: i64,
    /// Who ended it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_id: Option<i32>,
    /// When it ended; default: when ingest received it.
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

/// Parts a machine made (`oee/v1/machines/{m}/production`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProductionCommand {
    pub counts: Counts,
    /// When the parts were counted; default: when ingest received the message.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timestamp: Option<DateTime<Utc>>,
    #[serde(flatten)]
    pub reply: ReplyTo,
}

/// How a production message counts its parts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Counts {
    /// Parts made since the last message (`good`, `rejects`; an absent one is 0).
    Increments { good: i64, rejects: i64 },
    /// Readings of the machine's running counters (`good_total`, `rejects_total`); an absent one was not
    /// read and keeps its last value.
    Totals { good: Option<i64>, rejects: Option<i64> },
}

impl ProductionCommand {
    /// Parses a production message from raw bytes.
    pub fn parse(bytes: &[u8]) -> Result<ProductionCommand, Refusal> {
        let obj = object(bytes)?;
        let (good, rejects) = (count(&obj, "good")?, count(&obj, "rejects")?);
        let (good_total, rejects_total) = (count(&obj, "good_total")?, count(&obj, "rejects_total")?);
        let increments = good.is_some() || rejects.is_some();
        let totals = good_total.is_some() || rejects_total.is_some();
        let counts = match (increments, totals) {
            (true, false) => Counts::Increments { good: good.unwrap_or(0), rejects: rejects.unwrap_or(0) },
            (false, true) => Counts::Totals { good: good_total, rejects: rejects_total },
            (true, true) => {
                return Err(Refusal::Malformed(
                    "give either increments (`good`, `rejects`) or running totals (`good_total`, `rejects_total`), \
                     not both"
                        .into(),
                ));
            }
            (false, false) => {
                return Err(Refusal::Malformed(
                    "production carries no counts: send increments like {\"good\":5,\"rejects\":1} or running \
                     totals like {\"good_total\":1200,\"rejects_total\":14}"
                        .into(),
                ));
            }
        };
        Ok(ProductionCommand { counts, timestamp: timestamp(&obj, "timestamp")?, reply: reply(&obj)? })
    }
}

/// Adds a past activity, or changes one when `activity_id` is given (`oee/v1/machines/{m}/history/activity`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct HistoryActivityCommand {
    /// The activity to change; absent to add one.
    pub activity_id: Option<i64>,
    /// Required to add; absent to keep the code when changing.
    pub activity_code_id: Option<i32>,
    /// Required to add; absent to keep.
    pub start_time: Option<DateTime<Utc>>,
    /// Required to add; absent to keep (and must be absent for the machine's current activity).
    pub end_time: Option<DateTime<Utc>>,
    pub user_id: Option<i32>,
    #[serde(flatten)]
    pub reply: ReplyTo,
}

impl HistoryActivityCommand {
    pub fn parse(bytes: &[u8]) -> Result<HistoryActivityCommand, Refusal> {
        let obj = object(bytes)?;
        let c = HistoryActivityCommand {
            activity_id: row_id(&obj, "activity_id")?,
            activity_code_id: lenient_i32(&obj, "activity_code_id")?,
            start_time: timestamp(&obj, "start_time")?,
            end_time: timestamp(&obj, "end_time")?,
            user_id: lenient_i32(&obj, "user_id")?,
            reply: reply(&obj)?,
        };
        if c.activity_id.is_none() {
            required(c.activity_code_id, "activity_code_id")?;
            required(c.start_time, "start_time")?;
            required(c.end_time, "end_time")?;
        }
        ordered(c.start_time, c.end_time)?;
        Ok(c)
    }
}

/// Adds a past job with its counts, or changes one when `job_id` is given (`oee/v1/machines/{m}/history/job`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct HistoryJobCommand {
    /// The job to change; absent to add one.
    pub job_id: Option<i64>,
    /// Required to add; absent to keep.
    pub job_number: Option<String>,
    /// Seconds per part; 0 clears it, absent keeps it (none when adding).
    pub ideal_cycle_time_s: Option<f64>,
    /// Required to add; absent to keep.
    pub start_time: Option<DateTime<Utc>>,
    /// Required to add; absent to keep (and must be absent for a running job).
    pub end_time: Option<DateTime<Utc>>,
    /// Good parts of the whole job (0 when adding without it; absent keeps when changing).
    pub good: Option<i64>,
    pub rejects: Option<i64>,
    #[serde(flatten)]
    pub reply: ReplyTo,
}

impl HistoryJobCommand {
    pub fn parse(bytes: &[u8]) -> Result<HistoryJobCommand, Refusal> {
        let obj = object(bytes)?;
        let job_number = match obj.get("job_number") {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) if !s.trim().is_empty() && s.len() <= 100 => Some(s.trim().to_string()),
            Some(Value::Number(n)) => Some(n.to_string()),
            Some(v) => {
                return Err(Refusal::Malformed(format!(
                    "`job_number` must be text of 1 to 100 characters, not {}",
                    echo(v)
                )));
            }
        };
        let c = HistoryJobCommand {
            job_id: row_id(&obj, "job_id")?,
            job_number,
            ideal_cycle_time_s: cycle_time(&obj)?,
            start_time: timestamp(&obj, "start_time")?,
            end_time: timestamp(&obj, "end_time")?,
            good: count(&obj, "good")?,
            rejects: count(&obj, "rejects")?,
            reply: reply(&obj)?,
        };
        if c.job_id.is_none() {
            required(c.job_number.as_ref(), "job_number")?;
            required(c.start_time, "start_time")?;
            required(c.end_time, "end_time")?;
        }
        ordered(c.start_time, c.end_time)?;
        Ok(c)
    }
}

/// Adds a production record, or changes one when `record_id` is given
/// (`oee/v1/machines/{m}/history/production`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct HistoryProductionCommand {
    /// The record to change; absent to add one.
    pub record_id: Option<i64>,
    /// The job the parts belong to when adding (absent: no job).
    pub job_id: Option<i64>,
    /// Required to add; absent to keep.
    pub start_time: Option<DateTime<Utc>>,
    /// Required to add; absent to keep.
    pub end_time: Option<DateTime<Utc>>,
    /// 0 when adding without it; absent keeps when changing.
    pub good: Option<i64>,
    pub rejects: Option<i64>,
    #[serde(flatten)]
    pub reply: ReplyTo,
}

impl HistoryProductionCommand {
    pub fn parse(bytes: &[u8]) -> Result<HistoryProductionCommand, Refusal> {
        let obj = object(bytes)?;
        let c = HistoryProductionCommand {
            record_id: row_id(&obj, "record_id")?,
            job_id: row_id(&obj, "job_id")?,
            start_time: timestamp(&obj, "start_time")?,
            end_time: timestamp(&obj, "end_time")?,
            good: count(&obj, "good")?,
            rejects: count(&obj, "rejects")?,
            reply: reply(&obj)?,
        };
        if c.record_id.is_none() {
            required(c.start_time, "start_time")?;
            required(c.end_time, "end_time")?;
        }
        ordered(c.start_time, c.end_time)?;
        Ok(c)
    }
}

/// A count of parts: a non-negative integer (as a number or numeric string); `null` is absent.
fn count(obj: &Map<String, Value>, field: &'static str) -> Result<Option<i64>, Refusal> {
    match lenient_int(obj, field)? {
        Some(n) if n < 0 => {
            Err(Refusal::Malformed(format!("`{field}` cannot be negative ({n}): send a count of parts")))
        }
        n => Ok(n),
    }
}

/// The id of a stored row.
fn row_id(obj: &Map<String, Value>, field: &'static str) -> Result<Option<i64>, Refusal> {
    match lenient_int(obj, field)? {
        Some(n) if n <= 0 => Err(Refusal::Malformed(format!("`{field}` must be a positive id, not {n}"))),
        n => Ok(n),
    }
}

fn cycle_time(obj: &Map<String, Value>) -> Result<Option<f64>, Refusal> {
    match obj.get("ideal_cycle_time_s") {
        None | Some(Value::Null) => Ok(None),
        Some(v) => match v.as_f64().or_else(|| v.as_str().and_then(|s| s.trim().parse().ok())) {
            Some(x) if x.is_finite() && x >= 0.0 => Ok(Some(x)),
            _ => Err(Refusal::Malformed(format!(
                "`ideal_cycle_time_s` must be a number of seconds ≥ 0, not {}",
                echo(v)
            ))),
        },
    }
}

fn required<T>(value: Option<T>, field: &'static str) -> Result<T, Refusal> {
    value.ok_or(Refusal::MissingField(field))
}

/// Contract C52, when both times are given.
fn ordered(start: Option<DateTime<Utc>>, end: Option<DateTime<Utc>>) -> Result<(), Refusal> {
    match (start, end) {
        (Some(start), Some(end)) if end < start => Err(Refusal::EndBeforeStart { start, end }),
        _ => Ok(()),
    }
}

fn object(bytes: &[u8]) -> Result<Map<String, Value>, Refusal> {
    match serde_json::from_slice(bytes) {
        Ok(Value::Object(o)) => {
            storable(&o)?;
            Ok(o)
        }
        Ok(_) => Err(Refusal::Malformed("payload must be a JSON object".into())),
        Err(e) => Err(Refusal::Malformed(format!("payload is not valid JSON: {e}"))),
    }
}

/// PostgreSQL stores no NUL character in text or JSON, and a command whose text it refuses would fail the
/// write of every command in its batch: refuse it here, naming the field (nested values are named by the
/// top-level field that holds them). Other text JSON can carry (any Unicode scalar value) is storable, and
/// JSON cannot carry lone surrogates (the parser refuses them).
fn storable(obj: &Map<String, Value>) -> Result<(), Refusal> {
    fn has_nul(v: &Value) -> bool {
        match v {
            Value::String(s) => s.contains('\0'),
            Value::Array(a) => a.iter().any(has_nul),
            Value::Object(o) => o.iter().any(|(k, v)| k.contains('\0') || has_nul(v)),
            Value::Null | Value::Bool(_) | Value::Number(_) => false,
        }
    }
    match obj.iter().find(|(k, v)| k.contains('\0') || has_nul(v)) {
        None => Ok(()),
        Some((k, _)) => Err(Refusal::Malformed(format!(
            "`{}` contains a NUL character (\\u0000), which cannot be stored: remove it and send the command again",
            echo(k.escape_debug())
        ))),
    }
}

fn reply(obj: &Map<String, Value>) -> Result<ReplyTo, Refusal> {
    let reply_to = match obj.get("reply_to") {
        None | Some(Value::Null) => None,
        Some(Value::String(t)) if topic::valid_reply_topic(t) => Some(t.clone()),
        Some(v) => {
            return Err(Refusal::Malformed(format!(
                "`reply_to` must be a topic under {}/ (a device's own: {}/<device name>/…) of at most {} printable \
                 ASCII characters without `+` or `#`, not {}; fix it, or leave it out to get no answer",
                topic::REPLIES,
                topic::REPLIES,
                topic::MAX_TOPIC_LEN,
                echo(v)
            )));
        }
    };
    Ok(ReplyTo {
        request_id: optional_string(obj, "request_id")?,
        reply_to,
        received_at: timestamp(obj, "received_at")?,
    })
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
        storable(&obj)?;
        let timestamp = timestamp(&obj, "timestamp")?;
        let reply = reply(&obj)?;
        // Routing fields, read above, are not readings (`received_at` is added by the HTTP bridge).
        for key in ["timestamp", "request_id", "reply_to", "received_at"] {
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
                "telemetry reading `{}` must be a number under a name of 1 to 100 characters, not {}",
                echo(k),
                echo(v)
            )));
        }
        Ok(TelemetryCommand { values: obj, timestamp, reply })
    }
}

/// An integer field that may be a JSON integer, a whole float, or a numeric string; `null` is absent.
pub fn lenient_int(obj: &Map<String, Value>, field: &'static str) -> Result<Option<i64>, Refusal> {
    let bad = |v: &Value| Refusal::Malformed(format!("`{field}` must be an integer, not {}", echo(v)));
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
        Some(Value::String(s)) if s.len() <= MAX_ID_LEN => Ok(Some(s.clone())),
        Some(Value::String(_)) => {
            Err(Refusal::Malformed(format!("`{field}` is longer than {MAX_ID_LEN} bytes: send a shorter one")))
        }
        Some(v) => Err(Refusal::Malformed(format!("`{field}` must be a string, not {}", echo(v)))),
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
    /// Start of the current activity: a new value means a new activity segment.
    pub since: DateTime<Utc>,
    /// The tablet paired to the machine, if any.
    #[serde(default)]
    pub input_device_id: Option<i32>,
    /// That tablet's open operator session, if someone is logged in on it.
    #[serde(default)]
    pub session_id: Option<i32>,
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

/// The bodies of production and telemetry as devices send them, for the API document: both are read field by
/// field ([`ProductionCommand::parse`], [`TelemetryCommand::parse`]) rather than in the shape their types
/// have, so their schemas are written out here beside the parsers that decide them.
mod wire_schema {
    use utoipa::openapi::RefOr;
    use utoipa::openapi::schema::{KnownFormat, ObjectBuilder, Schema, SchemaFormat, Type};

    use super::{MAX_ID_LEN, MAX_TELEMETRY_VALUES, ProductionCommand, TelemetryCommand};

    fn count(description: &str) -> ObjectBuilder {
        ObjectBuilder::new()
            .schema_type(Type::Integer)
            .format(Some(SchemaFormat::KnownFormat(KnownFormat::Int64)))
            .minimum(Some(0))
            .description(Some(description))
    }

    fn timestamp() -> ObjectBuilder {
        ObjectBuilder::new()
            .schema_type(Type::String)
            .format(Some(SchemaFormat::KnownFormat(KnownFormat::DateTime)))
            .description(Some("When it happened (RFC 3339); default: when the server received it."))
    }

    fn request_id() -> ObjectBuilder {
        ObjectBuilder::new().schema_type(Type::String).max_length(Some(MAX_ID_LEN)).description(Some(
            "Makes the command idempotent: a command sent again with the same id is answered, not applied twice.",
        ))
    }

    impl utoipa::PartialSchema for ProductionCommand {
        fn schema() -> RefOr<Schema> {
            ObjectBuilder::new()
                .description(Some(
                    "Parts made: either increments since the last message (`good`, `rejects`) or readings of the \
                     machine's running counters (`good_total`, `rejects_total`), not both. Counts are whole numbers \
                     of at least 0, as JSON numbers or numeric strings.",
                ))
                .property("good", count("Good parts made since the last message (absent: 0)."))
                .property("rejects", count("Rejected parts made since the last message (absent: 0)."))
                .property("good_total", count("The machine's running counter of good parts (absent: not read)."))
                .property("rejects_total", count("The machine's running counter of rejects (absent: not read)."))
                .property("timestamp", timestamp())
                .property("request_id", request_id())
                .into()
        }
    }

    impl utoipa::ToSchema for ProductionCommand {}

    impl utoipa::PartialSchema for TelemetryCommand {
        fn schema() -> RefOr<Schema> {
            ObjectBuilder::new()
                .description(Some(format!(
                    "Readings to store: 1 to {MAX_TELEMETRY_VALUES} numbers, each under a name of 1 to 100 \
                     characters, e.g. {{\"temperature\": 71.5, \"rpm\": 1200}}; `timestamp` and `request_id` are \
                     not readings."
                )))
                .property("timestamp", timestamp())
                .property("request_id", request_id())
                .additional_properties(Some(ObjectBuilder::new().schema_type(Type::Number)))
                .into()
        }
    }

    impl utoipa::ToSchema for TelemetryCommand {}
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
        let over_http = TelemetryCommand::parse(br#"{"temp":71.5,"received_at":"2026-01-05T09:00:00Z"}"#).unwrap();
        assert_eq!(over_http.values.keys().collect::<Vec<_>>(), ["temp"]);
        assert!(over_http.reply.received_at.is_some());
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
    fn production_is_increments_or_totals_of_whole_non_negative_counts() {
        let p = ProductionCommand::parse(br#"{"good":"5","timestamp":"2026-01-05T09:00:00Z"}"#).unwrap();
        assert_eq!(p.counts, Counts::Increments { good: 5, rejects: 0 });
        let p = ProductionCommand::parse(br#"{"rejects_total":14,"request_id":"r"}"#).unwrap();
        assert_eq!(p.counts, Counts::Totals { good: None, rejects: Some(14) });
        assert_eq!(p.reply.request_id.as_deref(), Some("r"));
        for (bad, want) in [
            (&br#"{"good":-1}"#[..], "cannot be negative"),
            (br#"{"good":1.5}"#, "must be an integer"),
            (br#"{"good":"many"}"#, "must be an integer"),
            (br#"{"rejects_total":-3}"#, "cannot be negative"),
            (br#"{"good":1,"good_total":7}"#, "not both"),
            (br#"{"timestamp":"2026-01-05T09:00:00Z"}"#, "no counts"),
            (br#"{"good":null}"#, "no counts"),
        ] {
            let e = ProductionCommand::parse(bad).unwrap_err();
            assert_eq!(e.status(), 400, "{e}");
            assert!(e.to_string().contains(want), "{e} should mention {want}");
        }
    }

    #[test]
    fn history_commands_need_times_to_add_and_an_end_after_the_start() {
        let add = br#"{"activity_code_id":2,"start_time":"2026-01-05T09:00:00Z","end_time":"2026-01-05T10:00:00Z"}"#;
        let a = HistoryActivityCommand::parse(add).unwrap();
        assert_eq!((a.activity_id, a.activity_code_id), (None, Some(2)));
        let e = HistoryActivityCommand::parse(
            br#"{"start_time":"2026-01-05T09:00:00Z","end_time":"2026-01-05T10:00:00Z"}"#,
        )
        .unwrap_err();
        assert_eq!((e.status(), e.to_string().as_str()), (422, "missing field `activity_code_id`"));
        // changing needs only the id
        assert_eq!(HistoryActivityCommand::parse(br#"{"activity_id":"4"}"#).unwrap().activity_id, Some(4));
        let e = HistoryActivityCommand::parse(
            br#"{"activity_id":4,"start_time":"2026-01-05T10:00:00Z","end_time":"2026-01-05T09:00:00Z"}"#,
        )
        .unwrap_err();
        assert_eq!(e.status(), 400);
        assert!(e.to_string().starts_with("End time before start time"), "{e}");
        assert!(HistoryActivityCommand::parse(br#"{"activity_id":0}"#).unwrap_err().to_string().contains("positive"));

        let j = HistoryJobCommand::parse(
            br#"{"job_number":"J9","start_time":"2026-01-05T09:00:00Z","end_time":"2026-01-05T10:00:00Z","good":"40"}"#,
        )
        .unwrap();
        assert_eq!((j.job_number.as_deref(), j.good, j.rejects), (Some("J9"), Some(40), None));
        assert_eq!(
            HistoryJobCommand::parse(br#"{"job_id":3,"ideal_cycle_time_s":0}"#).unwrap().ideal_cycle_time_s,
            Some(0.0)
        );
        assert_eq!(HistoryJobCommand::parse(br#"{"start_time":"2026-01-05T09:00:00Z"}"#).unwrap_err().status(), 422);
        assert_eq!(HistoryJobCommand::parse(br#"{"job_id":3,"rejects":-2}"#).unwrap_err().status(), 400);

        let p = HistoryProductionCommand::parse(br#"{"record_id":8,"good":3}"#).unwrap();
        assert_eq!((p.record_id, p.good, p.rejects), (Some(8), Some(3), None));
        assert_eq!(HistoryProductionCommand::parse(br#"{"good":3}"#).unwrap_err().status(), 422);
    }

    #[test]
    fn a_command_round_trips_through_json() {
        let c = StateCommand::parse(
            br#"{"activity_code_id":2,"timestamp":"2026-01-05T09:00:00+01:00","request_id":"r1","reply_to":"oee/v1/replies/x/y","received_at":"2026-01-05T08:00:01Z"}"#,
        )
        .unwrap();
        assert_eq!(c.timestamp.unwrap().to_rfc3339(), "2026-01-05T08:00:00+00:00");
        let again = StateCommand::parse(&serde_json::to_vec(&c).unwrap()).unwrap();
        assert_eq!(again, c);
    }

    #[test]
    fn a_nul_anywhere_is_refused_naming_its_field() {
        let cases: &[(&[u8], &str)] = &[
            (br#"{"machine_state":0,"job_note":"a\u0000b"}"#, "`job_note`"),
            (br#"{"machine_state":0,"request_id":"\u0000"}"#, "`request_id`"),
            (br#"{"machine_state":0,"extra":{"deep":["ok","\u0000"]}}"#, "`extra`"),
            (br#"{"machine_state":0,"k\u0000":1}"#, "`k\\0`"),
        ];
        for (bytes, field) in cases {
            let e = StateCommand::parse(bytes).unwrap_err();
            assert_eq!(e.status(), 400);
            let m = e.to_string();
            assert!(m.contains(field) && m.contains("NUL"), "{m} should name {field}");
            assert!(!m.contains('\0'), "the message itself must be storable: {m:?}");
        }
        for (e, field) in [
            (JobStartCommand::parse(br#"{"job_number":"J\u00001"}"#).unwrap_err(), "`job_number`"),
            (HistoryJobCommand::parse(br#"{"job_id":1,"job_number":"\u0000"}"#).unwrap_err(), "`job_number`"),
            (TelemetryCommand::parse(br#"{"t\u0000":1}"#).unwrap_err(), "`t\\0`"),
            (SessionCommand::parse(br#"{"action":"log\u0000in","input_device_id":1}"#).unwrap_err(), "`action`"),
        ] {
            assert_eq!(e.status(), 400);
            assert!(e.to_string().contains(field), "{e} should name {field}");
        }
        // other characters are fine
        let c = StateCommand::parse(r#"{"machine_state":0,"job_note":"Störung ✓ 🔧"}"#.as_bytes()).unwrap();
        assert_eq!(c.job_note.as_deref(), Some("Störung ✓ 🔧"));
    }

    #[test]
    fn reply_to_must_be_a_plain_topic() {
        let ok = StateCommand::parse(br#"{"machine_state":0,"reply_to":"oee/v1/replies/a b"}"#).unwrap();
        assert_eq!(ok.reply.reply_to.as_deref(), Some("oee/v1/replies/a b"));
        let long = format!(r#"{{"reply_to":"{}"}}"#, "a".repeat(70_000));
        for bad in [
            r#"{"reply_to":""}"#,
            r#"{"reply_to":"a/+"}"#,
            r#"{"reply_to":"a/#"}"#,
            r#"{"reply_to":"ärger"}"#,
            r#"{"reply_to":"a\u0000"}"#,
            r#"{"reply_to":"tab\t"}"#,
            r#"{"reply_to":7}"#,
            long.as_str(),
        ] {
            let e = StateCommand::parse(bad.as_bytes()).unwrap_err();
            assert_eq!(e.status(), 400, "{bad}");
            assert!(e.to_string().contains("reply_to") || e.to_string().contains("NUL"), "{e}");
            assert!(e.to_string().chars().count() < 500, "the refusal quotes only the start of the value");
            assert_eq!(ReplyTo::salvage(bad.as_bytes()).reply_to, None, "{bad}: never answered");
        }
    }

    #[test]
    fn a_refused_payload_is_answered_only_on_a_plain_topic() {
        let r = ReplyTo::salvage(br#"{"machine_state":"x","request_id":"r","reply_to":"oee/v1/replies/a/b"}"#);
        assert_eq!((r.request_id.as_deref(), r.reply_to.as_deref()), (Some("r"), Some("oee/v1/replies/a/b")));
        // Verdicts go nowhere but the replies root: never onto a machine's command topic.
        let r = ReplyTo::salvage(br#"{"machine_state":"x","reply_to":"oee/v1/machines/5/state"}"#);
        assert_eq!(r.reply_to, None);
        assert_eq!(ReplyTo::salvage(b"not json"), ReplyTo::default());
        assert_eq!(ReplyTo::salvage(br#"{"reply_to":["a"]}"#), ReplyTo::default());
    }

    #[test]
    fn refusals_quote_only_the_start_of_a_long_value() {
        let body = format!(r#"{{"machine_state":"{}"}}"#, "9x".repeat(50_000));
        let e = StateCommand::parse(body.as_bytes()).unwrap_err();
        assert!(e.to_string().chars().count() < 300, "{}", e.to_string().len());
    }
}
