//! What an operator tablet is asked to fill in to start a job, and how its answers become an ideal cycle
//! time (reference §5.2.2 and §5.2.5). Pure: the machine's settings and the tablet's strings in, values out.
//!
//! The Android app reads these objects by key, but the reference's exact bodies are kept, key order
//! included: each field is a struct whose fields serialise in declaration order.

use serde::Serialize;

use crate::verdict::Refusal;

/// How a machine asks for the job's speed (`machine.job_start_input_type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CycleInput {
    CycleTimeSeconds,
    CycleTimeMinutes,
    CycleTimeHours,
    PartsPerSecond,
    PartsPerMinute,
    PartsPerHour,
    /// A planned quantity in a planned time (minutes).
    PlannedQuantityMinutes,
    NoCycleTime,
}

impl CycleInput {
    /// Every kind, in the order forms list them.
    pub const ALL: [CycleInput; 8] = [
        CycleInput::CycleTimeSeconds,
        CycleInput::CycleTimeMinutes,
        CycleInput::CycleTimeHours,
        CycleInput::PartsPerSecond,
        CycleInput::PartsPerMinute,
        CycleInput::PartsPerHour,
        CycleInput::PlannedQuantityMinutes,
        CycleInput::NoCycleTime,
    ];

    /// Reads the stored name (the database allows only these).
    pub fn from_name(name: &str) -> Option<CycleInput> {
        CycleInput::ALL.into_iter().find(|c| c.as_str() == name)
    }

    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            CycleInput::CycleTimeSeconds => "cycle_time_seconds",
            CycleInput::CycleTimeMinutes => "cycle_time_minutes",
            CycleInput::CycleTimeHours => "cycle_time_hours",
            CycleInput::PartsPerSecond => "parts_per_second",
            CycleInput::PartsPerMinute => "parts_per_minute",
            CycleInput::PartsPerHour => "parts_per_hour",
            CycleInput::PlannedQuantityMinutes => "planned_qty_minutes",
            CycleInput::NoCycleTime => "no_cycle_time",
        }
    }

    /// The title of the single speed field; `None` for the two kinds that have no single field.
    fn title(self) -> Option<&'static str> {
        Some(match self {
            CycleInput::CycleTimeSeconds => "Ideal cycle time (sec)",
            CycleInput::CycleTimeMinutes => "Ideal cycle time (min)",
            CycleInput::CycleTimeHours => "Ideal cycle time (hrs)",
            CycleInput::PartsPerSecond => "Parts per second",
            CycleInput::PartsPerMinute => "Parts per minute",
            CycleInput::PartsPerHour => "Parts per hour",
            CycleInput::PlannedQuantityMinutes | CycleInput::NoCycleTime => return None,
        })
    }
}

impl std::str::FromStr for CycleInput {
    type Err = String;
    fn from_str(name: &str) -> Result<Self, String> {
        CycleInput::from_name(name.trim()).ok_or_else(|| {
            let names: Vec<&str> = CycleInput::ALL.iter().map(|c| c.as_str()).collect();
            format!("`{}` is not a job start input type: choose one of {}", name.trim(), names.join(", "))
        })
    }
}

/// How a machine's tablet runs a job (`machine.workflow_type`, reference §5.2.8 and §5.2.9).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Workflow {
    /// Start a job, change the activity, end the job.
    Default,
    /// The operator pauses the job with a reason and resumes it.
    Pausable,
    /// The operator enters the running count of parts at intervals.
    RunningTotal,
}

impl Workflow {
    /// Every workflow, in the order forms list them.
    pub const ALL: [Workflow; 3] = [Workflow::Default, Workflow::Pausable, Workflow::RunningTotal];

    /// The stored name (what the tablet API sends as `workflow_type`).
    pub fn as_str(self) -> &'static str {
        match self {
            Workflow::Default => "default",
            Workflow::Pausable => "pausable",
            Workflow::RunningTotal => "running_total",
        }
    }
}

impl std::str::FromStr for Workflow {
    type Err = String;
    fn from_str(name: &str) -> Result<Self, String> {
        let name = name.trim();
        Workflow::ALL
            .into_iter()
            .find(|w| w.as_str() == name)
            .ok_or_else(|| format!("`{name}` is not a workflow: choose default, pausable or running_total"))
    }
}

/// What a machine's tablet lets an operator type as a job number (`machine.job_number_input_type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobNumberInput {
    /// Letters and digits.
    Text,
    /// Digits only.
    Number,
}

impl JobNumberInput {
    /// The stored name (the `type` of the tablet's job number field).
    pub fn as_str(self) -> &'static str {
        match self {
            JobNumberInput::Text => "text",
            JobNumberInput::Number => "number",
        }
    }
}

impl std::str::FromStr for JobNumberInput {
    type Err = String;
    fn from_str(name: &str) -> Result<Self, String> {
        match name.trim() {
            "text" => Ok(JobNumberInput::Text),
            "number" => Ok(JobNumberInput::Number),
            other => Err(format!("`{other}` is not a job number input type: choose text or number")),
        }
    }
}

/// A field's pre-filled value: a number, or `""` for none.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(untagged)]
pub enum Autofill {
    Amount(f64),
    #[serde(serialize_with = "empty_string")]
    Empty,
}

fn empty_string<S: serde::Serializer>(s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str("")
}

/// A field in the reference's usual key order: title, type, autofill.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Field {
    pub title: &'static str,
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub autofill: Autofill,
}

/// The speed field, whose keys the reference orders type, autofill, title.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SpeedField {
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub autofill: Autofill,
    pub title: &'static str,
}

/// The delayed start field (`"autofill": "current"`: the tablet fills in the time now).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StartTimeField {
    pub title: &'static str,
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub autofill: &'static str,
}

/// Job numbers the tablet checks a typed number against, with their descriptions, in the order read.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Validation(pub Vec<(String, String)>);

impl Serialize for Validation {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut map = s.serialize_map(Some(self.0.len()))?;
        for (k, v) in &self.0 {
            map.serialize_entry(k, v)?;
        }
        map.end()
    }
}

/// What the tablet is told when the job numbers to check against could not be read.
pub const VALIDATION_WARNING: &str = "Could not get job validation data from database.";

/// The job number field: a [`Field`], with the job numbers to check against or a warning that they could
/// not be read, when job numbers are validated.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct JobNumberField {
    pub title: &'static str,
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub autofill: Autofill,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub validation: Option<Validation>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub warning: Option<&'static str>,
}

/// `requested_data` of `/check-state` when a user is logged in and no job runs.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RequestedData {
    pub job_number: JobNumberField,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ideal_cycle_time: Option<SpeedField>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub planned_quantity: Option<SpeedField>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub planned_time: Option<SpeedField>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub start_time: Option<StartTimeField>,
}

/// A machine's job-start settings, as the tablet API needs them.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct JobStartSettings {
    pub input: CycleInput,
    /// `machine.job_number_input_type`: `"text"` or `"number"`.
    pub job_number_type: &'static str,
    /// `machine.autofill_job_start_amount`; 0 means none.
    pub autofill_amount: f64,
    /// Whether the tablet may give a start time earlier today.
    pub delayed_start: bool,
}

/// What the tablet asks for to start a job on a machine with `settings`.
pub fn requested_data(settings: &JobStartSettings) -> RequestedData {
    let autofill = if settings.autofill_amount == 0.0 || !settings.autofill_amount.is_finite() {
        Autofill::Empty
    } else {
        Autofill::Amount(settings.autofill_amount)
    };
    let speed = |title| SpeedField { kind: "number", autofill, title };
    let planned = settings.input == CycleInput::PlannedQuantityMinutes;
    RequestedData {
        job_number: JobNumberField {
            title: "Job Number",
            kind: settings.job_number_type,
            autofill: Autofill::Empty,
            validation: None,
            warning: None,
        },
        ideal_cycle_time: settings.input.title().map(speed),
        planned_quantity: planned.then(|| speed("Planned quantity")),
        planned_time: planned.then(|| speed("Planned time (min)")),
        start_time: settings.delayed_start.then_some(StartTimeField {
            title: "Start Time",
            kind: "time",
            autofill: "current",
        }),
    }
}

/// The ideal cycle time in seconds from what the tablet sent (strings or numbers, as the app sends every
/// value as a string): `None` for a machine without cycle times. A missing, unreadable, zero or negative
/// value is refused with a message naming the field (the reference answered some of these with a 500).
pub fn ideal_cycle_time_s(
    input: CycleInput,
    body: &serde_json::Map<String, serde_json::Value>,
) -> Result<Option<f64>, Refusal> {
    let positive = |key: &'static str| -> Result<f64, Refusal> {
        let v = body.get(key).ok_or(Refusal::MissingField(key))?;
        let x = match v {
            serde_json::Value::Number(n) => n.as_f64(),
            serde_json::Value::String(s) => s.trim().parse::<f64>().ok(),
            _ => None,
        };
        match x {
            Some(x) if x.is_finite() && x > 0.0 => Ok(x),
            _ => Err(Refusal::Malformed(format!("`{key}` must be a number above 0, not {v}"))),
        }
    };
    let x = || positive("ideal_cycle_time");
    Ok(Some(match input {
        CycleInput::CycleTimeSeconds => x()?,
        CycleInput::CycleTimeMinutes => x()? * 60.0,
        CycleInput::CycleTimeHours => x()? * 3600.0,
        CycleInput::PartsPerSecond => 1.0 / x()?,
        CycleInput::PartsPerMinute => 60.0 / x()?,
        CycleInput::PartsPerHour => 3600.0 / x()?,
        CycleInput::PlannedQuantityMinutes => positive("planned_time")? * 60.0 / positive("planned_quantity")?,
        CycleInput::NoCycleTime => return Ok(None),
    }))
}

/// Serialises `value` as the reference's Python JSON did: `", "` between items and `": "` after keys.
pub fn reference_json<T: Serialize>(value: &T) -> Result<String, serde_json::Error> {
    let mut out = Vec::new();
    let mut ser = serde_json::Serializer::with_formatter(&mut out, PythonFormatter);
    value.serialize(&mut ser)?;
    // The serializer writes only valid UTF-8.
    Ok(String::from_utf8_lossy(&out).into_owned())
}

/// Compact JSON with Python's default separators.
struct PythonFormatter;

impl serde_json::ser::Formatter for PythonFormatter {
    fn begin_array_value<W: ?Sized + std::io::Write>(&mut self, w: &mut W, first: bool) -> std::io::Result<()> {
        if first { Ok(()) } else { w.write_all(b", ") }
    }

    fn begin_object_key<W: ?Sized + std::io::Write>(&mut self, w: &mut W, first: bool) -> std::io::Result<()> {
        if first { Ok(()) } else { w.write_all(b", ") }
    }

    fn begin_object_value<W: ?Sized + std::io::Write>(&mut self, w: &mut W) -> std::io::Result<()> {
        w.write_all(b": ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn settings(input: CycleInput, autofill_amount: f64) -> JobStartSettings {
        JobStartSettings { input, job_number_type: "text", autofill_amount, delayed_start: false }
    }

    #[test]
    fn requested_data_matches_the_reference_byte_for_byte() {
        // C17: seconds, text job numbers, no autofill
        let body = reference_json(&requested_data(&settings(CycleInput::CycleTimeSeconds, 0.0))).unwrap();
        assert_eq!(
            body,
            r#"{"job_number": {"title": "Job Number", "type": "text", "autofill": ""}, "ideal_cycle_time": {"type": "number", "autofill": "", "title": "Ideal cycle time (sec)"}}"#
        );
        // C18: parts per minute with autofill 30
        let v = reference_json(&requested_data(&settings(CycleInput::PartsPerMinute, 30.0))).unwrap();
        assert!(
            v.ends_with(r#""ideal_cycle_time": {"type": "number", "autofill": 30.0, "title": "Parts per minute"}}"#),
            "{v}"
        );
        assert_eq!(reference_json(&json!([1, {"a": [true, null]}])).unwrap(), r#"[1, {"a": [true, null]}]"#);
        // job numbers to check against keep their order; a failed read is a warning
        let mut r = requested_data(&settings(CycleInput::NoCycleTime, 0.0));
        r.job_number.validation =
            Some(Validation(vec![("J2".into(), "Brackets".into()), ("J1".into(), String::new())]));
        assert_eq!(
            reference_json(&r).unwrap(),
            r#"{"job_number": {"title": "Job Number", "type": "text", "autofill": "", "validation": {"J2": "Brackets", "J1": ""}}}"#
        );
        r.job_number.validation = None;
        r.job_number.warning = Some(VALIDATION_WARNING);
        assert!(
            reference_json(&r).unwrap().contains(r#""warning": "Could not get job validation data from database.""#)
        );
        // C19: no cycle time
        let v = serde_json::to_value(requested_data(&settings(CycleInput::NoCycleTime, 0.0))).unwrap();
        assert_eq!(v.as_object().unwrap().keys().collect::<Vec<_>>(), vec!["job_number"]);
    }

    #[test]
    fn every_input_type_has_its_fields() {
        let table = [
            (CycleInput::CycleTimeMinutes, vec!["job_number", "ideal_cycle_time"], Some("Ideal cycle time (min)")),
            (CycleInput::CycleTimeHours, vec!["job_number", "ideal_cycle_time"], Some("Ideal cycle time (hrs)")),
            (CycleInput::PartsPerSecond, vec!["job_number", "ideal_cycle_time"], Some("Parts per second")),
            (CycleInput::PartsPerHour, vec!["job_number", "ideal_cycle_time"], Some("Parts per hour")),
            (CycleInput::PlannedQuantityMinutes, vec!["job_number", "planned_quantity", "planned_time"], None),
        ];
        for (input, keys, title) in table {
            let r = requested_data(&JobStartSettings { delayed_start: true, ..settings(input, 0.0) });
            let v = serde_json::to_value(&r).unwrap();
            let mut want: Vec<&str> = keys.clone();
            want.push("start_time");
            want.sort_unstable();
            let mut got: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
            got.sort_unstable();
            assert_eq!(got, want, "{input:?}");
            assert_eq!(r.ideal_cycle_time.map(|f| f.title), title, "{input:?}");
            assert_eq!(v["start_time"], json!({"title": "Start Time", "type": "time", "autofill": "current"}));
        }
        assert_eq!(CycleInput::from_name("parts_per_minute"), Some(CycleInput::PartsPerMinute));
        assert_eq!(CycleInput::from_name("furlongs"), None);
    }

    #[test]
    fn setting_names_read_back() {
        for c in CycleInput::ALL {
            assert_eq!(c.as_str().parse::<CycleInput>(), Ok(c));
        }
        for w in Workflow::ALL {
            assert_eq!(w.as_str().parse::<Workflow>(), Ok(w));
        }
        for j in [JobNumberInput::Text, JobNumberInput::Number] {
            assert_eq!(j.as_str().parse::<JobNumberInput>(), Ok(j));
        }
        assert!("furlongs".parse::<CycleInput>().unwrap_err().contains("planned_qty_minutes"));
        assert!("fast".parse::<Workflow>().unwrap_err().contains("running_total"));
        assert!("alpha".parse::<JobNumberInput>().unwrap_err().contains("text or number"));
    }

    #[test]
    fn tablet_answers_become_seconds_per_part() {
        let body = |v: serde_json::Value| v.as_object().unwrap().clone();
        let cases = [
            (CycleInput::CycleTimeSeconds, json!({"ideal_cycle_time": "12.5"}), Some(12.5)),
            (CycleInput::CycleTimeMinutes, json!({"ideal_cycle_time": "2"}), Some(120.0)),
            (CycleInput::CycleTimeHours, json!({"ideal_cycle_time": 0.5}), Some(1800.0)),
            (CycleInput::PartsPerSecond, json!({"ideal_cycle_time": "4"}), Some(0.25)),
            (CycleInput::PartsPerMinute, json!({"ideal_cycle_time": "30"}), Some(2.0)),
            (CycleInput::PartsPerHour, json!({"ideal_cycle_time": "7200"}), Some(0.5)),
            // strings here too: the reference failed on what the app really sends
            (CycleInput::PlannedQuantityMinutes, json!({"planned_quantity": "600", "planned_time": "30"}), Some(3.0)),
            (CycleInput::NoCycleTime, json!({}), None),
        ];
        for (input, b, want) in cases {
            assert_eq!(ideal_cycle_time_s(input, &body(b.clone())).unwrap(), want, "{input:?} {b}");
        }
        let refused = [
            (CycleInput::CycleTimeSeconds, json!({})),
            (CycleInput::PartsPerMinute, json!({"ideal_cycle_time": "0"})),
            (CycleInput::CycleTimeSeconds, json!({"ideal_cycle_time": "fast"})),
            (CycleInput::PlannedQuantityMinutes, json!({"planned_time": "30"})),
        ];
        for (input, b) in refused {
            let e = ideal_cycle_time_s(input, &body(b.clone())).unwrap_err();
            assert!(e.status() >= 400 && e.status() < 500, "{input:?} {b}: {e:?}");
        }
    }
}
