//! The reference's form endpoints (reference §5.4), as its status and machine pages call them: start and
//! end a job, add parts, and add or change past activities, jobs and production records. Each form becomes
//! one ingest command (`core::payload`) on its machine's command topic, and the answer waits for ingest's
//! verdict: a 200 means the change is committed, under the same rules every other command meets. Who may
//! post them (a supervisor) and the session's CSRF token are checked before a handler runs
//! (`access::table`). Each applied history edit (past activities, jobs and production records) is kept in
//! the audit trail (`core::store::audit`) with who made it and the record before and after.
//!
//! Fields are named as the reference's forms name them, sent URL-encoded or as multipart/form-data; dates
//! (`YYYY-MM-DD`) and times (`HH:MM`) are the plant's local time. Success bodies are the reference's (`""`
//! or `{"message":"Success"}`), and so are its refusal texts: `Form error` (`Error in form` for a past job),
//! each followed by what was wrong, and its history-edit refusals (contracts C50–C52) alone. Unlike the
//! reference, a form that is not valid is refused with 400 instead of answering 200 and doing nothing, and
//! nothing answers 500.

use std::collections::HashMap;

use axum::Extension;
use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, DurationRound, NaiveTime, TimeDelta, TimeZone, Utc};
use chrono_tz::Tz;
use oee_core::payload::{
    HistoryActivityCommand, HistoryJobCommand, HistoryProductionCommand, JobEndCommand, JobStartCommand, ReplyTo,
    StateCommand,
};
use oee_core::request::SendError;
use oee_core::store::audit::{self, AuditKind};
use oee_core::store::history as history_store;
use oee_core::topic::{self, CommandKind};
use oee_core::verdict::{Verdict, echo, reference_text};
use serde::Serialize;

use crate::WebState;
use crate::access::Caller;
use crate::form::{FormFault, FormFields};

/// The reference's answer to a form that is not valid (and, alone, to a missing CSRF token: contract C54).
pub(crate) const FORM_ERROR: &str = "Form error";
/// The reference's answer to a past job's form that is not valid.
const ERROR_IN_FORM: &str = "Error in form";

/// Why a form was not applied. Its `IntoResponse` decides every status and body of these endpoints; bodies
/// are plain text.
#[derive(Debug)]
pub(crate) enum FormError {
    /// Something in the form is wrong (a field missing or unreadable, or naming a record that does not
    /// exist): 400, the endpoint's generic text, then what is wrong.
    Invalid {
        generic: &'static str,
        message: String,
    },
    /// The record the path names does not exist: 404.
    NotFound(String),
    /// The form does not fit the machine as it is now (a job that is not running): 409.
    Conflict(String),
    /// Ingest refused the change: its verdict's status, and the reference's own text where it had one.
    Refused(Verdict),
    /// The change was not confirmed in time, or could not be sent.
    Unsent(SendError),
    Database(oee_core::Error),
}

impl From<oee_core::Error> for FormError {
    fn from(e: oee_core::Error) -> FormError {
        FormError::Database(e)
    }
}

impl FormError {
    /// The status and plain text this refusal is answered with.
    pub(crate) fn answer(self) -> (StatusCode, String) {
        match self {
            FormError::Invalid { generic, message } => (StatusCode::BAD_REQUEST, format!("{generic}: {message}")),
            FormError::NotFound(message) => (StatusCode::NOT_FOUND, message),
            FormError::Conflict(message) => (StatusCode::CONFLICT, message),
            FormError::Refused(v) => match v.reason.as_deref().and_then(reference_text) {
                Some(text) => (StatusCode::BAD_REQUEST, text.to_string()),
                None => (status_code(v.status), v.message.unwrap_or_else(|| "the change was refused".into())),
            },
            FormError::Unsent(e) if e.is_retryable() => {
                (status_code(e.status()), format!("the change was not confirmed ({e}): try again"))
            }
            FormError::Unsent(e) => (status_code(e.status()), e.to_string()),
            FormError::Database(e) => {
                tracing::warn!("reference form: {e}");
                (StatusCode::SERVICE_UNAVAILABLE, format!("the database is not available ({e}): try again later"))
            }
        }
    }
}

impl IntoResponse for FormError {
    fn into_response(self) -> Response {
        let (status, body) = self.answer();
        (status, [(header::CONTENT_TYPE, "text/plain; charset=utf-8")], body).into_response()
    }
}

fn status_code(code: u16) -> StatusCode {
    StatusCode::from_u16(code).unwrap_or(StatusCode::SERVICE_UNAVAILABLE)
}

/// The reference's success answer of its job and production forms: 200 with an empty body.
fn done() -> Response {
    (StatusCode::OK, [(header::CONTENT_TYPE, "text/html; charset=utf-8")], "").into_response()
}

/// The reference's success answer of its activity and job-edit forms (contract C53).
fn success() -> Response {
    (StatusCode::OK, [(header::CONTENT_TYPE, "application/json")], "{\"message\":\"Success\"}\n").into_response()
}

/// One submitted form: its fields, how its endpoint names a refusal, and the plant's time zone.
struct Form {
    fields: HashMap<String, String>,
    generic: &'static str,
    tz: Tz,
}

impl Form {
    fn read(fields: Result<FormFields, FormFault>, generic: &'static str, tz: Tz) -> Result<Form, FormError> {
        match fields {
            Ok(FormFields(fields)) => Ok(Form { fields, generic, tz }),
            Err(fault) => Err(FormError::Invalid { generic, message: fault.to_string() }),
        }
    }

    fn invalid(&self, message: impl Into<String>) -> FormError {
        FormError::Invalid { generic: self.generic, message: message.into() }
    }

    /// A field's value, trimmed; an empty one is absent.
    fn value(&self, name: &str) -> Option<&str> {
        self.fields.get(name).map(|v| v.trim()).filter(|v| !v.is_empty())
    }

    fn required(&self, name: &str) -> Result<&str, FormError> {
        self.value(name).ok_or_else(|| self.invalid(format!("`{name}` is missing: fill it in")))
    }

    /// The id of a record, required.
    fn id(&self, name: &str) -> Result<i64, FormError> {
        let v = self.required(name)?;
        v.parse::<i64>()
            .ok()
            .filter(|id| *id > 0)
            .ok_or_else(|| self.invalid(format!("`{name}` must be a record's number, not `{}`", echo(v))))
    }

    fn machine(&self) -> Result<i32, FormError> {
        let v = self.required("machine_id")?;
        v.parse::<i32>()
            .ok()
            .filter(|id| *id > 0)
            .ok_or_else(|| self.invalid(format!("`machine_id` must be a machine's number, not `{}`", echo(v))))
    }

    fn code(&self, name: &str) -> Result<Option<i32>, FormError> {
        self.value(name)
            .map(|v| {
                v.parse::<i32>().ok().filter(|id| *id > 0).ok_or_else(|| {
                    self.invalid(format!("`{name}` must be an activity code's number, not `{}`", echo(v)))
                })
            })
            .transpose()
    }

    /// A count of parts; blank is absent.
    fn count(&self, name: &str) -> Result<Option<i64>, FormError> {
        self.value(name)
            .map(|v| {
                v.parse::<i64>().ok().filter(|n| *n >= 0).ok_or_else(|| {
                    self.invalid(format!("`{name}` must be a whole number of parts, 0 or more, not `{}`", echo(v)))
                })
            })
            .transpose()
    }

    /// Seconds per part; blank is absent.
    fn cycle_time(&self, name: &str) -> Result<Option<f64>, FormError> {
        self.value(name)
            .map(|v| {
                v.parse::<f64>().ok().filter(|x| x.is_finite() && *x >= 0.0).ok_or_else(|| {
                    self.invalid(format!("`{name}` must be a number of seconds, 0 or more, not `{}`", echo(v)))
                })
            })
            .transpose()
    }

    /// The instant a date field and a time field give together; both blank is absent.
    fn time(&self, date: &str, time: &str) -> Result<Option<DateTime<Utc>>, FormError> {
        match (self.value(date), self.value(time)) {
            (None, None) => Ok(None),
            (Some(d), Some(t)) => local_time(self.tz, d, t).map(Some).map_err(|m| self.invalid(m)),
            (None, Some(_)) => Err(self.invalid(format!("`{date}` is missing: give the date with the time"))),
            (Some(_), None) => Err(self.invalid(format!("`{time}` is missing: give the time with the date"))),
        }
    }

    fn required_time(&self, date: &str, time: &str) -> Result<DateTime<Utc>, FormError> {
        self.time(date, time)?.ok_or_else(|| self.invalid(format!("`{date}` and `{time}` are missing: fill them in")))
    }

    /// Sends `command` to `machine`'s `kind` topic and waits for ingest's verdict. A record the form named
    /// that ingest does not know (machine, code, job) makes the form wrong (400), as the reference answered.
    async fn apply<C: Serialize>(
        &self,
        state: &WebState,
        machine: i32,
        kind: CommandKind,
        command: C,
    ) -> Result<Verdict, FormError> {
        let topic = topic::command(&machine.to_string(), kind);
        let verdict = state.replies.send(topic, command, state.reply_timeout).await.map_err(FormError::Unsent)?;
        if verdict.ok {
            Ok(verdict)
        } else if verdict.status == 404 {
            Err(self.invalid(verdict.message.unwrap_or_default()))
        } else {
            Err(FormError::Refused(verdict))
        }
    }

    /// Applies a history edit of `edit.kind` (as [`Form::apply`]) and keeps it in the audit trail: the
    /// record as read just before (for a change of `edit.record`) and just after, and who made it. A
    /// refused edit leaves no trace.
    async fn apply_history<C: Serialize>(
        &self,
        state: &WebState,
        caller: &Caller,
        machine: i32,
        edit: Edit,
        command: C,
    ) -> Result<(), FormError> {
        let before = match edit.record {
            Some(id) => audit::snapshot(&state.pool, edit.kind, id).await?,
            None => None,
        };
        let verdict = self.apply(state, machine, edit.command, command).await?;
        let Some(record_id) = verdict.id.or(edit.record) else {
            tracing::warn!("history edit on machine {machine} applied without naming its record: not audited");
            return Ok(());
        };
        // The edit is committed: a trail that cannot be written is logged, and the edit still stands.
        let after = match audit::snapshot(&state.pool, edit.kind, record_id).await {
            Ok(after) => after,
            Err(e) => {
                tracing::warn!("reading {} {record_id} for the audit trail: {e}", edit.kind.name());
                None
            }
        };
        let entry = audit::NewAuditEntry {
            machine_id: machine,
            user_id: caller.user_id,
            user_name: &caller.name,
            kind: edit.kind,
            record_id,
            before,
            after,
        };
        if let Err(e) = audit::record_change(&state.pool, &entry).await {
            tracing::warn!("keeping a history edit of machine {machine} in the audit trail: {e}");
        }
        Ok(())
    }
}

/// A history edit: the command it is sent as, the kind of record it changes and, for a change, which one.
struct Edit {
    command: CommandKind,
    kind: AuditKind,
    record: Option<i64>,
}

impl Edit {
    fn activity(record: Option<i64>) -> Edit {
        Edit { command: CommandKind::HistoryActivity, kind: AuditKind::Activity, record }
    }

    fn job(record: Option<i64>) -> Edit {
        Edit { command: CommandKind::HistoryJob, kind: AuditKind::Job, record }
    }

    fn production(record: Option<i64>) -> Edit {
        Edit { command: CommandKind::HistoryProduction, kind: AuditKind::Production, record }
    }
}

/// `date` (`YYYY-MM-DD`) at `time` (`HH:MM`, or `HH:MM:SS`) in the plant's time zone. A time the clocks skip
/// is refused; one they pass twice is the first.
fn local_time(tz: Tz, date: &str, time: &str) -> Result<DateTime<Utc>, String> {
    let day = crate::oee_api::plain_date(date)
        .ok_or_else(|| format!("the date must be YYYY-MM-DD, like 2026-01-05, not `{}`", echo(date)))?;
    let at = NaiveTime::parse_from_str(time, "%H:%M")
        .or_else(|_| NaiveTime::parse_from_str(time, "%H:%M:%S"))
        .map_err(|_| format!("the time must be HH:MM, like 09:30, not `{}`", echo(time)))?;
    let local = day.and_time(at);
    tz.from_local_datetime(&local).earliest().map(|t| t.with_timezone(&Utc)).ok_or_else(|| {
        format!("{date} {time} does not exist in {tz}: the clocks skip it; give a time before or after the change")
    })
}

/// The reference's seconds rule (§4.7): a time the form gives to the minute, which is the stored time's
/// minute, keeps the stored time with its seconds. `None` tells ingest to keep it.
fn unless_unchanged(new: Option<DateTime<Utc>>, stored: Option<DateTime<Utc>>) -> Option<DateTime<Utc>> {
    let minute = |t: DateTime<Utc>| t.duration_trunc(TimeDelta::minutes(1)).ok();
    match (new, stored) {
        (Some(n), Some(s)) if minute(s) == Some(n) => None,
        _ => new,
    }
}

/// A command received now: it happened now, and history it edits must lie before now.
fn received_now() -> ReplyTo {
    ReplyTo { received_at: Some(Utc::now()), ..ReplyTo::default() }
}

/// The job a form names: its machine and whether it runs. An unknown job makes the form wrong.
async fn named_job(state: &WebState, form: &Form, field: &str) -> Result<(i64, history_store::JobRow), FormError> {
    let id = form.id(field)?;
    match history_store::job(&state.pool, id).await? {
        Some(job) => Ok((id, job)),
        None => Err(form.invalid(format!("job {id} does not exist: reload the page to see the machine's jobs"))),
    }
}

/// The running job a form names, for counting its parts or ending it.
async fn running_job(state: &WebState, form: &Form) -> Result<(i64, i32), FormError> {
    let (id, job) = named_job(state, form, "job_id").await?;
    if !job.active {
        return Err(FormError::Conflict(format!(
            "job {id} is not running on machine {}: reload the page; add parts of a past job with \"Add Past \
             Production Qty\"",
            job.machine_id
        )));
    }
    Ok((id, job.machine_id))
}

/// A record id from the path; one that is not a number names no record.
fn path_id(raw: &str, what: &str) -> Result<i64, FormError> {
    raw.parse::<i64>()
        .ok()
        .filter(|id| *id > 0)
        .ok_or_else(|| FormError::NotFound(format!("there is no {what} `{}`: reload the page", echo(raw))))
}

/// `POST /api/start-job` (`machine_id`, `job_number`, `ideal_cycle_time`?): starts a job on the machine
/// as the signed-in person; 200 with an empty body.
pub(crate) async fn start_job(
    State(state): State<WebState>,
    Extension(caller): Extension<Caller>,
    fields: Result<FormFields, FormFault>,
) -> Result<Response, FormError> {
    let form = Form::read(fields, FORM_ERROR, state.tz)?;
    let machine = form.machine()?;
    let command = JobStartCommand {
        job_number: form.required("job_number")?.to_string(),
        ideal_cycle_time_s: form.cycle_time("ideal_cycle_time")?,
        user_id: caller.user_id,
        timestamp: None,
        reply: received_now(),
    };
    form.apply(&state, machine, CommandKind::JobStart, command).await?;
    Ok(done())
}

/// The status page's state form (`machine_id`, `activity_code`): moves the machine to the code now, as the
/// signed-in person, by the rules of a device's state change (the reference posted it to
/// `/api/machine-state-change`); 200 with an empty body.
pub(crate) async fn change_state(
    State(state): State<WebState>,
    Extension(caller): Extension<Caller>,
    fields: Result<FormFields, FormFault>,
) -> Result<Response, FormError> {
    let form = Form::read(fields, FORM_ERROR, state.tz)?;
    let machine = form.machine()?;
    let code = form.code("activity_code")?.ok_or_else(|| form.invalid("`activity_code` is missing: choose one"))?;
    let command = StateCommand {
        machine_state: None,
        activity_code_id: Some(code),
        user_id: caller.user_id,
        timestamp: None,
        job_note: None,
        reply: received_now(),
    };
    form.apply(&state, machine, CommandKind::State, command).await?;
    Ok(done())
}

/// `POST /api/end-job` (`job_id`, `quantity_good`, `quantity_rejects`): records the parts (blank: 0) up to
/// now and ends the running job; 200 with an empty body.
pub(crate) async fn end_job(
    State(state): State<WebState>,
    Extension(caller): Extension<Caller>,
    fields: Result<FormFields, FormFault>,
) -> Result<Response, FormError> {
    let form = Form::read(fields, FORM_ERROR, state.tz)?;
    let (good, rejects) = (form.count("quantity_good")?, form.count("quantity_rejects")?);
    let (_, machine) = running_job(&state, &form).await?;
    let command = JobEndCommand {
        good: good.unwrap_or(0),
        rejects: rejects.unwrap_or(0),
        user_id: caller.user_id,
        timestamp: None,
        reply: received_now(),
    };
    form.apply(&state, machine, CommandKind::JobEnd, command).await?;
    Ok(done())
}

/// `POST /api/production` (`job_id`, `quantity_good`, `quantity_rejects`): parts of the running job made
/// since its last count (blank: 0); 200 with an empty body.
pub(crate) async fn production(
    State(state): State<WebState>,
    fields: Result<FormFields, FormFault>,
) -> Result<Response, FormError> {
    let form = Form::read(fields, FORM_ERROR, state.tz)?;
    let (good, rejects) = (form.count("quantity_good")?, form.count("quantity_rejects")?);
    let (_, machine) = running_job(&state, &form).await?;
    // On the wire a production command carries its counts as fields of its own (`ProductionCommand::parse`).
    let command = serde_json::json!({
        "good": good.unwrap_or(0),
        "rejects": rejects.unwrap_or(0),
        "received_at": received_now().received_at,
    });
    form.apply(&state, machine, CommandKind::Production, command).await?;
    Ok(done())
}

/// `POST /api/past-production` (`job`, `start_date`, `start_time`, `end_date`, `end_time`,
/// `quantity_good`, `quantity_rejects`): adds a production record to the job; 200 with an empty body.
pub(crate) async fn past_production(
    State(state): State<WebState>,
    Extension(caller): Extension<Caller>,
    fields: Result<FormFields, FormFault>,
) -> Result<Response, FormError> {
    let form = Form::read(fields, FORM_ERROR, state.tz)?;
    let start = form.required_time("start_date", "start_time")?;
    let end = form.required_time("end_date", "end_time")?;
    let (good, rejects) = (form.count("quantity_good")?, form.count("quantity_rejects")?);
    let (job_id, job) = named_job(&state, &form, "job").await?;
    let command = HistoryProductionCommand {
        record_id: None,
        job_id: Some(job_id),
        start_time: Some(start),
        end_time: Some(end),
        good,
        rejects,
        reply: received_now(),
    };
    form.apply_history(&state, &caller, job.machine_id, Edit::production(None), command).await?;
    Ok(done())
}

/// `PUT /api/production/{id}` (dates, times and quantities; blank keeps): changes a production record;
/// 200 with an empty body, 404 for an unknown record.
pub(crate) async fn edit_production(
    State(state): State<WebState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    fields: Result<FormFields, FormFault>,
) -> Result<Response, FormError> {
    let id = path_id(&id, "production record")?;
    let form = Form::read(fields, FORM_ERROR, state.tz)?;
    let (start, end) = (form.time("start_date", "start_time")?, form.time("end_date", "end_time")?);
    let (good, rejects) = (form.count("quantity_good")?, form.count("quantity_rejects")?);
    let Some((machine, _, stored)) = history_store::record(&state.pool, id).await? else {
        return Err(FormError::NotFound(format!("production record {id} does not exist: reload the page")));
    };
    let command = HistoryProductionCommand {
        record_id: Some(id),
        job_id: None,
        start_time: unless_unchanged(start, Some(stored.span.start)),
        end_time: unless_unchanged(end, stored.span.end),
        good,
        rejects,
        reply: received_now(),
    };
    form.apply_history(&state, &caller, machine, Edit::production(Some(id)), command).await?;
    Ok(done())
}

/// `POST /api/new-activity` (`machine_id`, `activity_code`, `start_date`, `start_time`, `end_date`,
/// `end_time`): adds a past activity, making room among the machine's others (reference §4.7), recorded as
/// the signed-in person's; 200 `{"message":"Success"}`.
pub(crate) async fn new_activity(
    State(state): State<WebState>,
    Extension(caller): Extension<Caller>,
    fields: Result<FormFields, FormFault>,
) -> Result<Response, FormError> {
    let form = Form::read(fields, FORM_ERROR, state.tz)?;
    let machine = form.machine()?;
    let code = form.code("activity_code")?.ok_or_else(|| form.invalid("`activity_code` is missing: choose one"))?;
    let command = HistoryActivityCommand {
        activity_id: None,
        activity_code_id: Some(code),
        start_time: Some(form.required_time("start_date", "start_time")?),
        end_time: Some(form.required_time("end_date", "end_time")?),
        user_id: caller.user_id,
        reply: received_now(),
    };
    form.apply_history(&state, &caller, machine, Edit::activity(None), command).await?;
    Ok(success())
}

/// `PUT /api/activity/{id}` (`activity_code`, dates and times; blank keeps): changes an activity's code
/// and times; 200 `{"message":"Success"}`, 404 for an unknown activity.
pub(crate) async fn edit_activity(
    State(state): State<WebState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    fields: Result<FormFields, FormFault>,
) -> Result<Response, FormError> {
    let id = path_id(&id, "activity")?;
    let form = Form::read(fields, FORM_ERROR, state.tz)?;
    let code = form.code("activity_code")?;
    let (start, end) = (form.time("start_date", "start_time")?, form.time("end_date", "end_time")?);
    let Some((machine, stored)) = history_store::activity(&state.pool, id).await? else {
        return Err(FormError::NotFound(format!("activity {id} does not exist: reload the page")));
    };
    let command = HistoryActivityCommand {
        activity_id: Some(id),
        activity_code_id: code,
        start_time: unless_unchanged(start, Some(stored.span.start)),
        end_time: unless_unchanged(end, stored.span.end),
        user_id: caller.user_id,
        reply: received_now(),
    };
    form.apply_history(&state, &caller, machine, Edit::activity(Some(id)), command).await?;
    Ok(success())
}

/// `POST /api/new-past-job` (`machine_id`, `job_number`, `ideal_cycle_time`?, `quantity_good`,
/// `quantity_rejects`, `start_date`, `start_time`, `end_date`, `end_time`): adds a finished job with one
/// production record over it; 200 with an empty body.
pub(crate) async fn new_past_job(
    State(state): State<WebState>,
    Extension(caller): Extension<Caller>,
    fields: Result<FormFields, FormFault>,
) -> Result<Response, FormError> {
    let form = Form::read(fields, ERROR_IN_FORM, state.tz)?;
    let machine = form.machine()?;
    let command = HistoryJobCommand {
        job_id: None,
        job_number: Some(form.required("job_number")?.to_string()),
        ideal_cycle_time_s: form.cycle_time("ideal_cycle_time")?,
        start_time: Some(form.required_time("start_date", "start_time")?),
        end_time: Some(form.required_time("end_date", "end_time")?),
        good: form.count("quantity_good")?,
        rejects: form.count("quantity_rejects")?,
        reply: received_now(),
    };
    form.apply_history(&state, &caller, machine, Edit::job(None), command).await?;
    Ok(done())
}

/// `POST /api/edit-past-job` (`job_id`, `job_number`, `ideal_cycle_time`, `quantity_good`,
/// `quantity_rejects`, dates and times; blank keeps, and a running job takes no end): changes a job, its
/// end too (the reference never saved it, K3); 200 `{"message":"Success"}`.
pub(crate) async fn edit_past_job(
    State(state): State<WebState>,
    Extension(caller): Extension<Caller>,
    fields: Result<FormFields, FormFault>,
) -> Result<Response, FormError> {
    let form = Form::read(fields, FORM_ERROR, state.tz)?;
    let job_number = form.value("job_number").map(str::to_string);
    let ideal_cycle_time_s = form.cycle_time("ideal_cycle_time")?;
    let (good, rejects) = (form.count("quantity_good")?, form.count("quantity_rejects")?);
    let (start, end) = (form.time("start_date", "start_time")?, form.time("end_date", "end_time")?);
    let (job_id, job) = named_job(&state, &form, "job_id").await?;
    let command = HistoryJobCommand {
        job_id: Some(job_id),
        job_number,
        ideal_cycle_time_s,
        start_time: unless_unchanged(start, Some(job.job.span.start)),
        end_time: unless_unchanged(end, job.job.span.end),
        good,
        rejects,
        reply: received_now(),
    };
    form.apply_history(&state, &caller, job.machine_id, Edit::job(Some(job_id)), command).await?;
    Ok(success())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn utc(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn dates_and_times_are_the_plants_local_time() {
        let london = chrono_tz::Europe::London;
        assert_eq!(local_time(london, "2026-01-05", "09:30"), Ok(utc("2026-01-05T09:30:00Z")));
        assert_eq!(local_time(london, "2026-07-05", "09:30"), Ok(utc("2026-07-05T08:30:00Z")));
        assert_eq!(local_time(chrono_tz::UTC, "2026-07-05", "09:30:15"), Ok(utc("2026-07-05T09:30:15Z")));
        // the clocks go back: the first 01:30
        assert_eq!(local_time(london, "2026-10-25", "01:30"), Ok(utc("2026-10-25T00:30:00Z")));
        // the clocks go forward: 01:30 never happens
        assert!(local_time(london, "2026-03-29", "01:30").unwrap_err().contains("does not exist"));
        assert!(local_time(london, "05/01/2026", "09:30").unwrap_err().contains("YYYY-MM-DD"));
        assert!(local_time(london, "2026-01-05", "9.30").unwrap_err().contains("HH:MM"));
        assert!(local_time(london, "2026-01-05", "24:00").unwrap_err().contains("HH:MM"));
    }

    #[test]
    fn a_time_given_to_the_stored_minute_keeps_its_seconds() {
        let stored = Some(utc("2026-01-05T09:30:42Z"));
        assert_eq!(unless_unchanged(Some(utc("2026-01-05T09:30:00Z")), stored), None);
        let moved = Some(utc("2026-01-05T09:31:00Z"));
        assert_eq!(unless_unchanged(moved, stored), moved);
        assert_eq!(unless_unchanged(moved, None), moved, "an open end takes the time given");
        assert_eq!(unless_unchanged(None, stored), None, "blank keeps");
    }
}
