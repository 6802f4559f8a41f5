//! `GET /machine?machine_id=&date=`: the machine report (reference §7.2). For one machine and one day of
//! the plant's calendar: the day's state timeline (drawn as the graphs draw it, [`crate::graphs::timeline`]:
//! each activity in its code's colour, titled with its code, times, job and operator), the day's OEE, and
//! its jobs, activities and production records. Supervisors add and change them with plain form posts that
//! run the reference's form handlers ([`crate::reference_forms`]): each becomes a history command that
//! ingest judges (overlaps are resolved as reference §4.7 says), and each applied change is kept in the
//! audit trail shown at the foot of the page. A refused form is shown again, with its values and ingest's
//! reason beside it.

use std::collections::{BTreeMap, HashMap};

use axum::Extension;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use chrono::{DateTime, NaiveDate, Utc};
use chrono_tz::Tz;
use oee_core::shift::local_date_bounds;
use oee_core::store::audit::{AuditEntry, machine_changes};
use oee_core::store::code::{ActivityCode, list_codes};
use oee_core::store::job::jobs_in_range;
use oee_core::store::machine::machine_statuses;
use oee_core::store::report::{activities_in_window, graph_activities, production_in_window};
use oee_core::verdict::echo;
use serde::Serialize;
use serde_json::Value;

use crate::WebState;
use crate::access::{Access, Caller, Route};
use crate::form::{FormFault, FormFields};
use crate::oee_api::{Calculator, plain_date};
use crate::page::{Choice, Message, Page, found};
use crate::reference_forms::{self as forms, FormError};

/// How many of a machine's latest audited changes the page shows.
const AUDIT_ROWS: i64 = 50;

/// The machine report's routes: the page and its forms.
pub(crate) fn routes() -> Vec<Route> {
    use oee_core::access::Role::{Supervisor, Viewer};
    vec![
        Route::get("/machine", Access::Role(Viewer), page),
        Route::post("/machine/{id}/activities", Access::Role(Supervisor), add_activity),
        Route::post("/machine/{id}/activities/{record}", Access::Role(Supervisor), edit_activity),
        Route::post("/machine/{id}/jobs", Access::Role(Supervisor), add_job),
        Route::post("/machine/{id}/jobs/{record}", Access::Role(Supervisor), edit_job),
        Route::post("/machine/{id}/production", Access::Role(Supervisor), add_production),
        Route::post("/machine/{id}/production/{record}", Access::Role(Supervisor), edit_production),
    ]
}

/// The page's context.
#[derive(Debug, Serialize)]
struct Report {
    machine_id: i32,
    machine: String,
    /// The day shown, `YYYY-MM-DD`, and as people read it ("Tue 14 May 2024").
    date: String,
    day: String,
    timezone: String,
    /// The breakdown of the day's figures.
    explain: String,
    oee: String,
    availability: String,
    performance: String,
    quality: String,
    /// The day's state timeline, SVG markup.
    timeline: String,
    jobs: Vec<JobRow>,
    activities: Vec<ActivityRow>,
    production: Vec<ProductionRow>,
    add_job: Option<HistoryForm>,
    add_activity: Option<HistoryForm>,
    add_production: Option<HistoryForm>,
    audit: Vec<AuditRow>,
    /// A refusal of a form that is no longer on the page (its record is gone).
    error: Option<String>,
}

#[derive(Debug, Serialize)]
struct JobRow {
    number: String,
    start: String,
    end: String,
    ideal_cycle_time: String,
    good: i64,
    rejects: i64,
    form: Option<HistoryForm>,
}

#[derive(Debug, Serialize)]
struct ActivityRow {
    code_id: i32,
    code: String,
    start: String,
    end: String,
    user: String,
    /// Only closed activities are edited here (as in the reference): the open one follows the machine.
    form: Option<HistoryForm>,
}

#[derive(Debug, Serialize)]
struct ProductionRow {
    job: String,
    start: String,
    end: String,
    good: i64,
    rejects: i64,
    form: Option<HistoryForm>,
}

/// One audited change, as the page shows it.
#[derive(Debug, Serialize)]
struct AuditRow {
    when: String,
    who: String,
    what: String,
    changes: Vec<String>,
    before: String,
    after: String,
}

/// An add or edit form: where it posts, the values in its inputs, and the refusal to show beside it.
#[derive(Debug, Serialize)]
struct HistoryForm {
    action: String,
    values: Values,
    error: Option<String>,
}

/// The inputs of the history forms, named as the reference's forms name them.
#[derive(Debug, Serialize, Default)]
struct Values {
    start_date: String,
    start_time: String,
    end_date: String,
    end_time: String,
    job_number: String,
    ideal_cycle_time: String,
    quantity_good: String,
    quantity_rejects: String,
    /// Placeholders of the job form's quantities: the job's totals (blank keeps them).
    good_now: String,
    rejects_now: String,
    codes: Vec<Choice>,
    jobs: Vec<Choice>,
}

impl Values {
    fn span(tz: Tz, start: Option<DateTime<Utc>>, end: Option<DateTime<Utc>>) -> Values {
        let date = |t: Option<DateTime<Utc>>| t.map(|t| t.with_timezone(&tz).format("%Y-%m-%d").to_string());
        let time = |t: Option<DateTime<Utc>>| t.map(|t| t.with_timezone(&tz).format("%H:%M").to_string());
        Values {
            start_date: date(start).unwrap_or_default(),
            start_time: time(start).unwrap_or_default(),
            end_date: date(end).unwrap_or_default(),
            end_time: time(end).unwrap_or_default(),
            ..Values::default()
        }
    }

    /// The values a refused form was sent with, so that the person can correct them.
    fn resent(mut self, sent: &HashMap<String, String>) -> Values {
        let take = |field: &mut String, name: &str| {
            if let Some(v) = sent.get(name) {
                *field = v.clone();
            }
        };
        take(&mut self.start_date, "start_date");
        take(&mut self.start_time, "start_time");
        take(&mut self.end_date, "end_date");
        take(&mut self.end_time, "end_time");
        take(&mut self.job_number, "job_number");
        take(&mut self.ideal_cycle_time, "ideal_cycle_time");
        take(&mut self.quantity_good, "quantity_good");
        take(&mut self.quantity_rejects, "quantity_rejects");
        if let Some(code) = sent.get("activity_code") {
            self.codes.iter_mut().for_each(|c| c.selected = c.value == *code);
        }
        if let Some(job) = sent.get("job") {
            self.jobs.iter_mut().for_each(|c| c.selected = c.value == *job);
        }
        self
    }
}

/// A form that was refused: where it posted, what it sent, and why it was refused.
#[derive(Debug)]
struct Refused {
    action: String,
    sent: HashMap<String, String>,
    text: String,
}

/// Which forms the page carries: none for people who may only read it.
struct Forms<'a> {
    editable: bool,
    refused: Option<&'a Refused>,
    /// Whether the refused form was found on the page.
    placed: bool,
}

impl Forms<'_> {
    fn form(&mut self, action: String, values: Values) -> Option<HistoryForm> {
        if !self.editable {
            return None;
        }
        match self.refused {
            Some(r) if r.action == action => {
                self.placed = true;
                Some(HistoryForm { action, values: values.resent(&r.sent), error: Some(r.text.clone()) })
            }
            _ => Some(HistoryForm { action, values, error: None }),
        }
    }
}

/// A time as the reference's report shows it: "HH:MM", with "(dd/mm/YYYY)" when not on the day shown.
fn clock(tz: Tz, day: NaiveDate, t: Option<DateTime<Utc>>) -> String {
    let Some(t) = t else { return String::new() };
    let local = t.with_timezone(&tz);
    if local.date_naive() == day {
        local.format("%H:%M").to_string()
    } else {
        local.format("%H:%M (%d/%m/%Y)").to_string()
    }
}

fn percent(x: Option<f64>) -> String {
    x.map_or_else(|| "–".to_string(), |x| format!("{:.0}%", x * 100.0))
}

/// A JSON value of the audit trail as people read it: times in the plant's zone, text without quotes.
fn shown(tz: Tz, v: &Value) -> String {
    match v {
        Value::Null => "none".into(),
        Value::String(s) => match DateTime::parse_from_rfc3339(s) {
            Ok(t) => t.with_timezone(&tz).format("%Y-%m-%d %H:%M:%S").to_string(),
            Err(_) => s.clone(),
        },
        other => other.to_string(),
    }
}

/// What a change did, field by field: "end_time: 09:30 → 09:45"; everything for an added record.
fn changes(tz: Tz, before: Option<&Value>, after: Option<&Value>) -> Vec<String> {
    let empty = serde_json::Map::new();
    let old = before.and_then(Value::as_object).unwrap_or(&empty);
    let new = after.and_then(Value::as_object).unwrap_or(&empty);
    let mut keys: Vec<&String> = old.keys().chain(new.keys()).filter(|k| *k != "id").collect();
    keys.sort();
    keys.dedup();
    keys.into_iter()
        .filter_map(|k| match (old.get(k), new.get(k)) {
            (Some(a), Some(b)) if a == b => None,
            (None, Some(b)) => Some(format!("{k}: {}", shown(tz, b))),
            (Some(a), None) => Some(format!("{k}: {} → gone", shown(tz, a))),
            (Some(a), Some(b)) => Some(format!("{k}: {} → {}", shown(tz, a), shown(tz, b))),
            (None, None) => None,
        })
        .collect()
}

fn audit_row(tz: Tz, e: &AuditEntry) -> AuditRow {
    let what = match (&e.before, &e.after) {
        (None, _) => format!("added {} {}", e.kind, e.record_id),
        (Some(_), None) => format!("changed {} {} (now gone)", e.kind, e.record_id),
        _ => format!("changed {} {}", e.kind, e.record_id),
    };
    let json = |v: &Option<Value>| v.as_ref().map(Value::to_string).unwrap_or_default();
    AuditRow {
        when: e.changed_at.with_timezone(&tz).format("%Y-%m-%d %H:%M:%S").to_string(),
        who: e.user_name.clone(),
        what,
        changes: changes(tz, e.before.as_ref(), e.after.as_ref()),
        before: json(&e.before),
        after: json(&e.after),
    }
}

/// The report's address for a machine and day.
fn report_path(machine: i32, date: NaiveDate) -> String {
    format!("/machine?machine_id={machine}&date={}", date.format("%Y-%m-%d"))
}

/// A page that only says what went wrong, with its status.
async fn message_page(state: &WebState, caller: &Caller, status: StatusCode, text: String) -> Response {
    let body = Message { heading: "Machine report".into(), text };
    let page = Page::new(state, Some(caller), "Machine report", "status", body).await;
    let mut r = state.pages.render("message", &page);
    *r.status_mut() = status;
    r
}

/// The machine's name, if it exists.
async fn machine_name(state: &WebState, machine: i32) -> Result<Option<String>, oee_core::Error> {
    Ok(machine_statuses(&state.pool, Some(&[machine])).await?.into_iter().next().map(|s| s.machine_name))
}

/// `GET /machine?machine_id=N[&date=YYYY-MM-DD]` (today when no date). A missing or unknown machine: 404.
async fn page(
    State(state): State<WebState>,
    Extension(caller): Extension<Caller>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let raw = q.get("machine_id").map(|m| m.trim()).unwrap_or_default();
    let Some(machine) = raw.parse::<i32>().ok().filter(|m| *m > 0) else {
        let text = if raw.is_empty() {
            "no machine was named: open a machine's report from the status page".to_string()
        } else {
            format!("there is no machine `{}`: open a machine's report from the status page", echo(raw))
        };
        return message_page(&state, &caller, StatusCode::NOT_FOUND, text).await;
    };
    let today = Utc::now().with_timezone(&state.tz).date_naive();
    let date = match q.get("date").map(|d| d.trim()).filter(|d| !d.is_empty()) {
        None => today,
        Some(d) => match plain_date(d) {
            Some(d) => d,
            None => {
                let text = format!("the date must be YYYY-MM-DD, like 2026-01-05, not `{}`", echo(d));
                return message_page(&state, &caller, StatusCode::BAD_REQUEST, text).await;
            }
        },
    };
    show(&state, &caller, machine, date, None, StatusCode::OK).await
}

/// Renders the report, with a refused form's reason beside it, answering `status`.
async fn show(
    state: &WebState,
    caller: &Caller,
    machine: i32,
    date: NaiveDate,
    refused: Option<Refused>,
    status: StatusCode,
) -> Response {
    match build(state, caller, machine, date, refused.as_ref()).await {
        Ok(Some(body)) => {
            let title = format!("{} report - {}", body.machine, body.date);
            let page = Page::new(state, Some(caller), title, "status", body).await;
            let mut r = state.pages.render("machine", &page);
            *r.status_mut() = status;
            r
        }
        Ok(None) => {
            let text = format!("machine {machine} does not exist: open a machine's report from the status page");
            message_page(state, caller, StatusCode::NOT_FOUND, text).await
        }
        Err(e) => {
            tracing::warn!("machine report: {e}");
            let text = format!("{e}: try again in a moment");
            message_page(state, caller, StatusCode::SERVICE_UNAVAILABLE, text).await
        }
    }
}

async fn build(
    state: &WebState,
    caller: &Caller,
    machine: i32,
    date: NaiveDate,
    refused: Option<&Refused>,
) -> Result<Option<Report>, crate::oee_api::ApiError> {
    let Some(name) = machine_name(state, machine).await? else { return Ok(None) };
    let tz = state.tz;
    let now = Utc::now();
    let (start, end) = local_date_bounds(tz, date);
    let activities = activities_in_window(&state.pool, machine, start, end).await?;
    let jobs = jobs_in_range(&state.pool, Some(machine), start, end, 500).await?;
    let production = production_in_window(&state.pool, machine, start, end).await?;
    let codes = list_codes(&state.pool).await?;
    let calc = Calculator::ready(state, &[(machine, start, end)], now).await?;
    let figures = calc.sums(machine, start, end).figures();
    let audit = machine_changes(&state.pool, machine, AUDIT_ROWS).await?;
    let mut forms = Forms { editable: caller.role >= oee_core::access::Role::Supervisor, refused, placed: false };
    let code_choices = |selected: i32| -> Vec<Choice> {
        codes
            .iter()
            .filter(|c| c.active || c.id == selected)
            .map(|c| Choice { value: c.id.to_string(), label: c.short_description.clone(), selected: c.id == selected })
            .collect()
    };
    let code_of: HashMap<i32, &ActivityCode> = codes.iter().map(|c| (c.id, c)).collect();
    let drawn = graph_activities(&state.pool, &[machine], start, end).await?;
    let names = BTreeMap::from([(machine, name.clone())]);
    let timeline = crate::graphs::timeline(state, &[machine], &names, &code_of, &drawn, start, end, now);

    let base = format!("/machine/{machine}");
    let job_rows = jobs
        .iter()
        .map(|j| {
            let mut values = Values::span(tz, Some(j.start_time), j.end_time);
            values.job_number = j.job_number.clone();
            values.ideal_cycle_time = j.ideal_cycle_time_s.map(|x| x.to_string()).unwrap_or_default();
            values.good_now = j.quantity_good.to_string();
            values.rejects_now = j.quantity_rejects.to_string();
            JobRow {
                number: j.job_number.clone(),
                start: clock(tz, date, Some(j.start_time)),
                end: if j.active { "running".into() } else { clock(tz, date, j.end_time) },
                ideal_cycle_time: j.ideal_cycle_time_s.map(|x| x.to_string()).unwrap_or_default(),
                good: j.quantity_good,
                rejects: j.quantity_rejects,
                form: forms.form(format!("{base}/jobs/{}", j.id), values),
            }
        })
        .collect();
    let activity_rows = activities
        .iter()
        .rev()
        .map(|a| ActivityRow {
            code_id: a.code_id,
            code: a.code.clone(),
            start: clock(tz, date, Some(a.start_time)),
            end: a.end_time.map_or_else(|| "now".to_string(), |e| clock(tz, date, Some(e))),
            user: a.user_name.clone().unwrap_or_default(),
            form: match a.end_time {
                Some(_) => {
                    let values =
                        Values { codes: code_choices(a.code_id), ..Values::span(tz, Some(a.start_time), a.end_time) };
                    forms.form(format!("{base}/activities/{}", a.id), values)
                }
                None => None,
            },
        })
        .collect();
    let production_rows = production
        .iter()
        .map(|p| {
            let mut values = Values::span(tz, Some(p.start_time), Some(p.end_time));
            values.quantity_good = p.quantity_good.to_string();
            values.quantity_rejects = p.quantity_rejects.to_string();
            ProductionRow {
                job: p.job_number.clone().unwrap_or_default(),
                start: clock(tz, date, Some(p.start_time)),
                end: clock(tz, date, Some(p.end_time)),
                good: p.quantity_good,
                rejects: p.quantity_rejects,
                form: forms.form(format!("{base}/production/{}", p.id), values),
            }
        })
        .collect();

    let day = date.format("%Y-%m-%d").to_string();
    let blank_span = || Values {
        start_date: day.clone(),
        end_date: day.clone(),
        quantity_good: "0".into(),
        quantity_rejects: "0".into(),
        ..Values::default()
    };
    let add_job = forms.form(format!("{base}/jobs"), blank_span());
    let add_activity = forms.form(format!("{base}/activities"), Values { codes: code_choices(0), ..blank_span() });
    let job_choices =
        jobs.iter().map(|j| Choice { value: j.id.to_string(), label: j.job_number.clone(), selected: false }).collect();
    let add_production = forms.form(format!("{base}/production"), Values { jobs: job_choices, ..blank_span() });
    let error = refused.filter(|_| !forms.placed).map(|r| r.text.clone());

    Ok(Some(Report {
        machine_id: machine,
        machine: name,
        date: day,
        day: date.format("%a %d %b %Y").to_string(),
        timezone: tz.to_string(),
        explain: crate::explain::day_link(machine, date),
        oee: percent(figures.oee),
        availability: percent(figures.availability),
        performance: percent(figures.performance),
        quality: percent(figures.quality),
        timeline,
        jobs: job_rows,
        activities: activity_rows,
        production: production_rows,
        add_job,
        add_activity,
        add_production,
        audit: audit.iter().map(|e| audit_row(tz, e)).collect(),
        error,
    }))
}

/// The reference's handler a form of the page runs.
type Handler = fn(
    WebState,
    Caller,
    Option<String>,
    Result<FormFields, FormFault>,
) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<Response, FormError>> + Send>>;

/// Runs a form of the page through the reference's `handler` (the machine from the path), then leads back
/// to the report with what was done, or shows the report again with the refusal beside the form.
#[allow(clippy::too_many_arguments)]
async fn submit(
    state: WebState,
    caller: Caller,
    raw_machine: String,
    record: Option<String>,
    action: String,
    fields: Result<FormFields, FormFault>,
    done: &str,
    handler: Handler,
) -> Response {
    let machine = match raw_machine.parse::<i32>().ok().filter(|id| *id > 0) {
        Some(m) => m,
        None => {
            let text = format!("there is no machine `{}`: reload the report", echo(&raw_machine));
            return message_page(&state, &caller, StatusCode::NOT_FOUND, text).await;
        }
    };
    match machine_name(&state, machine).await {
        Ok(Some(_)) => {}
        Ok(None) => {
            let text = format!("machine {machine} does not exist: open a machine's report from the status page");
            return message_page(&state, &caller, StatusCode::NOT_FOUND, text).await;
        }
        Err(e) => {
            tracing::warn!("machine report form: {e}");
            let text = format!("the database is not available ({e}): try again later");
            return message_page(&state, &caller, StatusCode::SERVICE_UNAVAILABLE, text).await;
        }
    }
    let sent = fields.as_ref().map(|f| f.0.clone()).unwrap_or_default();
    let today = Utc::now().with_timezone(&state.tz).date_naive();
    let date = sent.get("date").and_then(|d| plain_date(d.trim())).unwrap_or(today);
    let fields = fields.map(|FormFields(mut f)| {
        f.insert("machine_id".into(), machine.to_string());
        FormFields(f)
    });
    match handler(state.clone(), caller.clone(), record, fields).await {
        Ok(_) => {
            crate::page::flash(&state, &caller, done).await;
            found(&report_path(machine, date))
        }
        Err(e) => {
            let (status, text) = e.answer();
            let refused = Refused { action, sent, text: format!("Not saved: {text}") };
            show(&state, &caller, machine, date, Some(refused), status).await
        }
    }
}

/// `POST /machine/{id}/activities` (`activity_code`, `start_date`, `start_time`, `end_date`, `end_time`).
async fn add_activity(
    State(state): State<WebState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    fields: Result<FormFields, FormFault>,
) -> Response {
    let action = format!("/machine/{id}/activities");
    submit(state, caller, id, None, action, fields, "Activity added", |s, c, _, f| {
        Box::pin(forms::new_activity(State(s), Extension(c), f))
    })
    .await
}

/// `POST /machine/{id}/activities/{record}` (`activity_code`, dates and times).
async fn edit_activity(
    State(state): State<WebState>,
    Extension(caller): Extension<Caller>,
    Path((id, record)): Path<(String, String)>,
    fields: Result<FormFields, FormFault>,
) -> Response {
    let action = format!("/machine/{id}/activities/{record}");
    submit(state, caller, id, Some(record), action, fields, "Activity changed", |s, c, r, f| {
        Box::pin(forms::edit_activity(State(s), Extension(c), Path(r.unwrap_or_default()), f))
    })
    .await
}

/// `POST /machine/{id}/jobs` (`job_number`, `ideal_cycle_time`, quantities, dates and times).
async fn add_job(
    State(state): State<WebState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    fields: Result<FormFields, FormFault>,
) -> Response {
    let action = format!("/machine/{id}/jobs");
    submit(state, caller, id, None, action, fields, "Job added", |s, c, _, f| {
        Box::pin(forms::new_past_job(State(s), Extension(c), f))
    })
    .await
}

/// `POST /machine/{id}/jobs/{record}` (as adding; blank keeps).
async fn edit_job(
    State(state): State<WebState>,
    Extension(caller): Extension<Caller>,
    Path((id, record)): Path<(String, String)>,
    fields: Result<FormFields, FormFault>,
) -> Response {
    let action = format!("/machine/{id}/jobs/{record}");
    submit(state, caller, id, Some(record), action, fields, "Job changed", |s, c, r, f| {
        let f = f.map(|FormFields(mut f)| {
            f.insert("job_id".into(), r.unwrap_or_default());
            FormFields(f)
        });
        Box::pin(forms::edit_past_job(State(s), Extension(c), f))
    })
    .await
}

/// `POST /machine/{id}/production` (`job`, quantities, dates and times).
async fn add_production(
    State(state): State<WebState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    fields: Result<FormFields, FormFault>,
) -> Response {
    let action = format!("/machine/{id}/production");
    submit(state, caller, id, None, action, fields, "Production added", |s, c, _, f| {
        Box::pin(forms::past_production(State(s), Extension(c), f))
    })
    .await
}

/// `POST /machine/{id}/production/{record}` (quantities, dates and times; blank keeps).
async fn edit_production(
    State(state): State<WebState>,
    Extension(caller): Extension<Caller>,
    Path((id, record)): Path<(String, String)>,
    fields: Result<FormFields, FormFault>,
) -> Response {
    let action = format!("/machine/{id}/production/{record}");
    submit(state, caller, id, Some(record), action, fields, "Production changed", |s, c, r, f| {
        Box::pin(forms::edit_production(State(s), Extension(c), Path(r.unwrap_or_default()), f))
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn utc(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn times_off_the_day_shown_carry_their_date() {
        let day = NaiveDate::from_ymd_opt(2024, 5, 14).unwrap();
        let tz = chrono_tz::Europe::London;
        assert_eq!(clock(tz, day, Some(utc("2024-05-14T12:00:00Z"))), "13:00");
        assert_eq!(clock(tz, day, Some(utc("2024-05-15T09:30:00Z"))), "10:30 (15/05/2024)");
        assert_eq!(clock(tz, day, None), "");
    }

    #[test]
    fn a_change_shows_the_fields_it_changed() {
        let tz = chrono_tz::UTC;
        let before = serde_json::json!({"id": 4, "end_time": "2024-05-14T09:30:00+00:00", "activity_code_id": 1});
        let after = serde_json::json!({"id": 4, "end_time": "2024-05-14T09:45:00+00:00", "activity_code_id": 1});
        assert_eq!(changes(tz, Some(&before), Some(&after)), ["end_time: 2024-05-14 09:30:00 → 2024-05-14 09:45:00"]);
        let added = changes(tz, None, Some(&serde_json::json!({"id": 5, "quantity_good": 7, "job_id": null})));
        assert_eq!(added, ["job_id: none", "quantity_good: 7"]);
    }
}
