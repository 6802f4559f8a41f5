//! The operator tablet API of the reference system ("Machine Monitor" Android app), unchanged for the app:
//! the same paths, bodies, key order, separators and statuses (reference §5.2, contracts C9–C33, C60).
//! Registration and pairing are configuration and are written here; every change of machine state (login,
//! logout, jobs, activity codes, counts) is a command to ingest, and the answer waits for its verdict.
//!
//! Departures from the reference, each a fix of one of its defects: an unknown tablet gets a 4xx instead
//! of a 500; logging in or out keeps a running job's activity (recording who is at the machine) instead of
//! forcing Down, and with no job gives Closed out of shift; `/end_all_sessions` really logs tablets out;
//! `planned_qty_minutes` takes the strings the app sends; a second job cannot orphan the first.

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, NaiveTime, TimeDelta, TimeZone, Utc};
use oee_core::activity::{DOWN_CODE_ID, UP_CODE_ID};
use oee_core::config::TabletsConfig;
use oee_core::payload::{SessionAction, SessionCommand, lenient_i32};
use oee_core::store::tablet::{self as store, Tablet, TabletMachine};
use oee_core::tablet::{
    Autofill, CycleInput, Field, JobStartSettings, RequestedData, VALIDATION_WARNING, Validation, reference_json,
    requested_data,
};
use oee_core::topic::{self, CommandKind};
use oee_core::verdict::Verdict;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use sqlx::PgPool;

use crate::BridgeState;
use crate::body::{check_text, json_object};

/// What the reference answers an unknown tablet.
const NOT_REGISTERED: &str = "Device not registered to server, try restarting";
/// What the reference answers when nobody is logged in on the tablet.
const LOGGED_OUT: &str = "User is logged out";
/// What the reference answers for a missing field on ending a job or counting.
const PARSE_ERROR: &str = "Server error parsing data";
/// Shown as the machine of an unpaired tablet (contract C10).
const NO_MACHINE: &str = "No assigned machine. Pair via the admin interface then press back to refresh.";

/// When each tablet's asking for its state was last recorded, so that a tablet polling every few seconds
/// writes its "last seen" about once a minute; the database keeps the same limit for several bridges.
#[derive(Debug, Default)]
pub(crate) struct LastSeen(std::sync::Mutex<std::collections::HashMap<i32, std::time::Instant>>);

impl LastSeen {
    /// Whether tablet `id` seen at `now` should be recorded (and, if so, remembers it as recorded).
    fn due(&self, id: i32, now: std::time::Instant) -> bool {
        let Ok(mut last) = self.0.lock() else { return true };
        match last.get(&id) {
            Some(at) if now.saturating_duration_since(*at) < std::time::Duration::from_secs(60) => false,
            _ => {
                last.insert(id, now);
                true
            }
        }
    }
}

/// A finished answer: every way out of a handler.
type Answer = Result<Response, Fail>;

/// An answer other than success (boxed: a response is large and travels through many `?`).
#[derive(Debug)]
pub(crate) struct Fail(Box<Response>);

impl From<Response> for Fail {
    fn from(r: Response) -> Fail {
        Fail(Box::new(r))
    }
}

impl IntoResponse for Fail {
    fn into_response(self) -> Response {
        *self.0
    }
}

/// A JSON body written as the reference's Python wrote it.
fn reference(status: StatusCode, value: &impl Serialize) -> Response {
    match reference_json(value) {
        Ok(body) => (status, [(header::CONTENT_TYPE, "application/json")], body).into_response(),
        Err(e) => unavailable(format!("cannot write the answer: {e}")).into_response(),
    }
}

fn html(status: StatusCode, text: &str) -> Response {
    (status, [(header::CONTENT_TYPE, "text/html; charset=utf-8")], text.to_string()).into_response()
}

/// The reference's answer: `{"success": true}`, or `false` with nothing more.
#[derive(Serialize, utoipa::ToSchema)]
pub(crate) struct Success {
    success: bool,
}

/// The reference's refusal: `{"success": false, "reason": …}`.
#[derive(Serialize, utoipa::ToSchema)]
pub(crate) struct Failure<'a> {
    success: bool,
    reason: &'a str,
}

fn ok() -> Answer {
    Ok(reference(StatusCode::OK, &Success { success: true }))
}

/// `{"success": false}` with no reason, as the reference gives for a missing activity code (C24, C30).
fn bare_failure() -> Fail {
    reference(StatusCode::OK, &Success { success: false }).into()
}

fn failure(status: StatusCode, reason: &str) -> Fail {
    reference(status, &Failure { success: false, reason }).into()
}

fn unavailable(reason: String) -> Fail {
    failure(StatusCode::SERVICE_UNAVAILABLE, &reason)
}

fn db(e: oee_core::Error) -> Fail {
    tracing::error!("tablet API database error: {e}");
    unavailable("the database is not reachable: try again".into())
}

/// The JSON object of a request body. A body not declared as JSON is refused with 400, the reference's
/// status for it (C20), rather than the device API's 415: the app always declares its JSON, and a web page
/// cannot declare it cross-site without the browser asking first, so tablet commands cannot be forged from
/// a page an operator visits.
fn body_object(headers: &HeaderMap, body: &Bytes) -> Result<Map<String, Value>, Fail> {
    json_object(headers, body).map_err(|f| failure(StatusCode::BAD_REQUEST, &f.to_string()))
}

/// A text field, as the app sends every value (numbers are taken too).
fn text(obj: &Map<String, Value>, key: &str) -> Option<String> {
    match obj.get(key)? {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// The registered tablet the body's `device_uuid` names; `not_registered` answers an unknown one.
async fn tablet_of(
    state: &BridgeState,
    obj: &Map<String, Value>,
    not_registered: fn() -> Fail,
) -> Result<Tablet, Fail> {
    let Some(uuid) = obj.get("device_uuid").and_then(Value::as_str) else {
        return Err(failure(StatusCode::BAD_REQUEST, "No device_uuid supplied"));
    };
    store::tablet_by_uuid(&state.pool, uuid).await.map_err(db)?.ok_or_else(not_registered)
}

fn not_registered_json() -> Fail {
    failure(StatusCode::BAD_REQUEST, NOT_REGISTERED)
}

/// The tablet's machine and logged-in user, or the answer when either is missing.
fn session_of(t: &Tablet, no_session: impl FnOnce() -> Fail) -> Result<(i32, i32), Fail> {
    match (t.machine_id, t.user_id) {
        (Some(m), Some(u)) => Ok((m, u)),
        (None, Some(_)) => Err(failure(StatusCode::CONFLICT, "No assigned machine")),
        _ => Err(no_session()),
    }
}

fn logged_out() -> Fail {
    failure(StatusCode::OK, LOGGED_OUT)
}

fn logged_out_401() -> Fail {
    failure(StatusCode::UNAUTHORIZED, LOGGED_OUT)
}

/// Sends a command for the machine to ingest and waits for its verdict.
async fn command(state: &BridgeState, machine_id: i32, kind: CommandKind, body: Value) -> Result<Verdict, Fail> {
    let sent = if kind == CommandKind::Session {
        let session = SessionCommand::parse(body.to_string().as_bytes()).map_err(|r| {
            failure(StatusCode::from_u16(r.status()).unwrap_or(StatusCode::BAD_REQUEST), &r.to_string())
        })?;
        state.replies.send_session(machine_id, session, &state.seal, state.timeout).await
    } else {
        state.replies.send(topic::command(&machine_id.to_string(), kind), body, state.timeout).await
    };
    sent.map_err(|e| {
        if e.is_retryable() {
            unavailable(format!("the change was not confirmed ({e}): try again"))
        } else {
            failure(StatusCode::from_u16(e.status()).unwrap_or(StatusCode::BAD_REQUEST), &e.to_string())
        }
    })
}

/// A refused verdict as a tablet answer: its status and message.
fn refused(v: &Verdict) -> Fail {
    let status = StatusCode::from_u16(v.status).unwrap_or(StatusCode::SERVICE_UNAVAILABLE);
    failure(status, v.message.as_deref().unwrap_or("refused"))
}

/// A verdict as a tablet answer: `{"success": true}` when applied, the reference's own answer for the
/// refusal `reason` it has one for, else [`refused`].
fn answer(v: &Verdict, reason: &str, reference_answer: fn() -> Fail) -> Answer {
    match v.reason.as_deref() {
        _ if v.ok => ok(),
        Some(r) if r == reason => Err(reference_answer()),
        _ => Err(refused(v)),
    }
}

/// A command whose success is `{"success": true}`.
async fn apply(state: &BridgeState, machine_id: i32, kind: CommandKind, body: Value) -> Answer {
    let v = command(state, machine_id, kind, body).await?;
    if v.ok { ok() } else { Err(refused(&v)) }
}

async fn machine(state: &BridgeState, machine_id: i32) -> Result<TabletMachine, Fail> {
    store::tablet_machine(&state.pool, machine_id)
        .await
        .map_err(db)?
        .ok_or_else(|| failure(StatusCode::CONFLICT, "No assigned machine"))
}

fn settings(m: &TabletMachine, delayed_start: bool) -> JobStartSettings {
    JobStartSettings {
        // The database allows only the known names.
        input: CycleInput::from_name(&m.job_start_input_type).unwrap_or(CycleInput::CycleTimeSeconds),
        job_number_type: if m.job_number_input_type == "text" { "text" } else { "number" },
        autofill_amount: m.autofill_job_start_amount,
        delayed_start,
    }
}

#[derive(Deserialize)]
pub(crate) struct CheckStateQuery {
    device_uuid: Option<String>,
}

#[derive(Serialize)]
struct NoUser<'a> {
    workflow_type: &'static str,
    state: &'static str,
    machine: &'a str,
    device_name: &'a str,
}

#[derive(Serialize)]
struct NoJob<'a> {
    workflow_type: &'a str,
    state: &'static str,
    machine_name: &'a str,
    user_name: &'a str,
    requested_data: RequestedData,
}

#[derive(Serialize)]
struct CodeChoice {
    activity_code_id: i32,
    colour: String,
    description: String,
}

#[derive(Serialize)]
struct OnEnd {
    quantity_good: Field,
    rejects: Field,
}

#[derive(Serialize)]
struct RunningTotal {
    last_update: f64,
    current_quantity: i64,
    update_frequency: u32,
}

#[derive(Serialize)]
struct ActiveJob<'a> {
    machine_id: i32,
    workflow_type: &'a str,
    state: &'static str,
    job_number: &'a str,
    current_activity_code_id: i32,
    current_machine_state: i16,
    activity_codes: Vec<CodeChoice>,
    colour: &'a str,
    requested_data_on_end: OnEnd,
    #[serde(flatten)]
    running_total: Option<RunningTotal>,
}

fn unix_seconds(t: DateTime<Utc>) -> f64 {
    t.timestamp_micros() as f64 / 1e6
}

/// `GET /check-state?device_uuid=U`: registers a new tablet, then says what its screen shows.
pub(crate) async fn check_state(
    State(state): State<BridgeState>,
    query: Result<Query<CheckStateQuery>, QueryRejection>,
) -> Answer {
    let Query(q) = query.map_err(|e| {
        failure(
            StatusCode::BAD_REQUEST,
            &format!("{}: give the tablet's id once, /check-state?device_uuid=<uuid>", e.body_text()),
        )
    })?;
    let uuid = q.device_uuid.filter(|u| !u.trim().is_empty() && u.len() <= 100).ok_or_else(|| {
        failure(
            StatusCode::BAD_REQUEST,
            "give the tablet's id: /check-state?device_uuid=<uuid> (at most 100 characters)",
        )
    })?;
    check_text("device_uuid", &uuid).map_err(|f| failure(StatusCode::BAD_REQUEST, &f.to_string()))?;
    let admission = if state.tablets.open_registration {
        store::Admission::Open
    } else {
        store::Admission::Window { max_new: state.tablets.window_max_new }
    };
    let t = store::register_tablet(&state.pool, &uuid, state.tablets.auto_pair, admission)
        .await
        .map_err(db)?
        .ok_or_else(|| {
            failure(
                StatusCode::FORBIDDEN,
                "This tablet is not registered: an administrator opens a pairing window for new tablets \
                 (oee-server tablet open-window)",
            )
        })?;
    if state.last_seen.due(t.id, std::time::Instant::now())
        && let Err(e) = store::note_tablet_seen(&state.pool, t.id, Utc::now()).await
    {
        // Only the admin pages read it: the tablet's answer does not depend on it.
        tracing::warn!("recording that tablet {} was seen: {e}", t.id);
    }
    let (Some(machine_id), Some(user_name)) = (t.machine_id, t.user_name.as_deref()) else {
        let machine = t.machine_name.as_deref().unwrap_or(NO_MACHINE);
        return Ok(reference(
            StatusCode::OK,
            &NoUser { workflow_type: "default", state: "no_user", machine, device_name: &t.name },
        ));
    };
    let m = machine(&state, machine_id).await?;
    let (Some(job_id), Some(job_number), Some(job_start)) = (m.job_id, m.job_number.as_deref(), m.job_start) else {
        let mut requested_data = requested_data(&settings(&m, state.tablets.delayed_start));
        match job_numbers(&state).await {
            None => {}
            Some(Ok(v)) => requested_data.job_number.validation = Some(v),
            Some(Err(())) => requested_data.job_number.warning = Some(VALIDATION_WARNING),
        }
        return Ok(reference(
            StatusCode::OK,
            &NoJob {
                workflow_type: &m.workflow_type,
                state: "no_job",
                machine_name: &m.name,
                user_name,
                requested_data,
            },
        ));
    };
    let activity_codes = store::tablet_codes(&state.pool, m.id)
        .await
        .map_err(db)?
        .into_iter()
        .map(|c| CodeChoice { activity_code_id: c.id, colour: c.colour, description: c.description })
        .collect();
    let paused = m.workflow_type == "pausable" && matches!(m.current_machine_state, 2 | 3);
    let running_total = if m.workflow_type == "running_total" {
        let totals = store::job_totals(&state.pool, job_id).await.map_err(db)?;
        Some(RunningTotal {
            last_update: unix_seconds(totals.last_count.unwrap_or(job_start).max(job_start)),
            current_quantity: totals.good,
            update_frequency: state.tablets.running_total_update_s,
        })
    } else {
        None
    };
    let field = |title| Field { title, kind: "number", autofill: Autofill::Empty };
    Ok(reference(
        StatusCode::OK,
        &ActiveJob {
            machine_id: m.id,
            workflow_type: &m.workflow_type,
            state: if paused { "paused" } else { "active_job" },
            job_number,
            current_activity_code_id: m.current_code_id,
            current_machine_state: m.current_machine_state,
            activity_codes,
            colour: &m.colour,
            requested_data_on_end: OnEnd { quantity_good: field("Good Qty"), rejects: field("Rejects Qty") },
            running_total,
        },
    ))
}

/// Where job numbers are checked, when `tablets.job_validation_query` is set: the server's database, or the
/// one `job_validation_url` names (connected when first used).
pub(crate) fn job_number_source(pool: &PgPool, cfg: &TabletsConfig) -> Option<Result<PgPool, String>> {
    if cfg.job_validation_query.trim().is_empty() {
        return None;
    }
    let url = cfg.job_validation_url.trim();
    if url.is_empty() {
        return Some(Ok(pool.clone()));
    }
    let source = sqlx::postgres::PgPoolOptions::new()
        .max_connections(2)
        .acquire_timeout(std::time::Duration::from_secs(3))
        .connect_lazy(url)
        .map_err(|e| e.to_string());
    if let Err(e) = &source {
        tracing::error!(
            "tablets.job_validation_url is unusable ({e}): tablets will be told job numbers cannot be checked"
        );
    }
    Some(source)
}

/// The job numbers tablets check against, when they are checked: `Err` when they could not be read (logged).
async fn job_numbers(state: &BridgeState) -> Option<Result<Validation, ()>> {
    let source = match state.job_numbers.as_ref()? {
        Ok(pool) => pool,
        Err(_) => return Some(Err(())),
    };
    let query = state.tablets.job_validation_query.clone();
    let read = async {
        let rows: Vec<(Option<String>, Option<String>)> =
            sqlx::query_as(sqlx::AssertSqlSafe(query)).fetch_all(source).await?;
        Ok::<_, sqlx::Error>(rows)
    };
    Some(match tokio::time::timeout(std::time::Duration::from_secs(5), read).await {
        Ok(Ok(rows)) => Ok(Validation(
            rows.into_iter().filter_map(|(job, description)| Some((job?, description.unwrap_or_default()))).collect(),
        )),
        Ok(Err(e)) => {
            tracing::warn!("cannot read the job numbers tablets check against (tablets.job_validation_query): {e}");
            Err(())
        }
        Err(_) => {
            tracing::warn!("the job numbers tablets check against took more than 5 s to read");
            Err(())
        }
    })
}

/// `POST /android-login` `{"device_uuid","user_id","password"}`.
pub(crate) async fn login(State(state): State<BridgeState>, headers: HeaderMap, body: Bytes) -> Answer {
    let obj = body_object(&headers, &body)?;
    let t = tablet_of(&state, &obj, || html(StatusCode::BAD_REQUEST, NOT_REGISTERED).into()).await?;
    let Some(user) = text(&obj, "user_id").filter(|u| !u.is_empty()) else {
        return Err(failure(StatusCode::BAD_REQUEST, "No user_id supplied"));
    };
    let Some(password) = text(&obj, "password") else {
        return Err(failure(StatusCode::BAD_REQUEST, "No password supplied"));
    };
    let no_user = || failure(StatusCode::UNAUTHORIZED, &format!("User {user} does not exist"));
    let user_id: i32 = user.trim().parse().map_err(|_| no_user())?;
    if let Some(wait) = state.pins.wait(user_id, std::time::Instant::now()) {
        return Err(failure(
            StatusCode::TOO_MANY_REQUESTS,
            &format!("Too many wrong passwords for user {user_id}: try again in {} s", wait.as_secs().max(1)),
        ));
    }
    match oee_core::store::user::check_password_by_id(&state.pool, user_id, &password).await.map_err(db)? {
        None => return Err(no_user()),
        Some(false) => {
            state.pins.failed(user_id, std::time::Instant::now());
            return Err(failure(StatusCode::BAD_REQUEST, "Wrong password"));
        }
        Some(true) => state.pins.succeeded(user_id),
    }
    let Some(machine_id) = t.machine_id else {
        return Err(failure(StatusCode::BAD_REQUEST, "No assigned machine"));
    };
    let body = json!({ "action": SessionAction::Login, "input_device_id": t.id, "user_id": user_id });
    apply(&state, machine_id, CommandKind::Session, body).await
}

/// Logs the tablet's operator out through ingest.
async fn log_out(state: &BridgeState, tablet_id: i32, machine_id: i32) -> Result<Verdict, Fail> {
    command(
        state,
        machine_id,
        CommandKind::Session,
        json!({ "action": SessionAction::Logout, "input_device_id": tablet_id }),
    )
    .await
}

/// `POST /android-logout` `{"device_uuid"}`.
pub(crate) async fn logout(State(state): State<BridgeState>, headers: HeaderMap, body: Bytes) -> Answer {
    let obj = body_object(&headers, &body)?;
    let t = tablet_of(&state, &obj, not_registered_json).await?;
    let (machine_id, _) = session_of(&t, logged_out)?;
    let v = log_out(&state, t.id, machine_id).await?;
    answer(&v, "not_logged_in", logged_out)
}

/// `POST /android-start-job` `{"device_uuid","job_number", <speed fields>, "start_time"?}`.
pub(crate) async fn start_job(State(state): State<BridgeState>, headers: HeaderMap, body: Bytes) -> Answer {
    let obj = body_object(&headers, &body)?;
    let t = tablet_of(&state, &obj, not_registered_json).await?;
    let (machine_id, user_id) = session_of(&t, logged_out_401)?;
    let m = machine(&state, machine_id).await?;
    let Some(job_number) = text(&obj, "job_number").map(|j| j.trim().to_string()).filter(|j| !j.is_empty()) else {
        return Err(failure(StatusCode::BAD_REQUEST, "Enter a job number"));
    };
    let input = settings(&m, state.tablets.delayed_start).input;
    let ideal = oee_core::tablet::ideal_cycle_time_s(input, &obj)
        .map_err(|r| failure(StatusCode::from_u16(r.status()).unwrap_or(StatusCode::BAD_REQUEST), &r.to_string()))?;
    let mut command = json!({ "job_number": job_number, "ideal_cycle_time_s": ideal, "user_id": user_id });
    // Without delayed start the tablet offers no start time: a job starts when it is started.
    let start_time = text(&obj, "start_time").filter(|s| state.tablets.delayed_start && !s.trim().is_empty());
    if let Some(start) = start_time {
        let at = delayed_start(&start, state.tz, Utc::now(), m.current_since)
            .map_err(|(status, message)| failure(status, &message))?;
        if let Some(at) = at {
            command["timestamp"] = json!(at);
        }
    }
    apply(&state, machine_id, CommandKind::JobStart, command).await
}

/// When a job given the start time `hh_mm` began: `None` for now. The current minute, which the app fills
/// in, means now, also when the machine's current activity (the login) began earlier in this minute; an
/// earlier time must not be before that activity began, which it would cut.
fn delayed_start(
    hh_mm: &str,
    tz: chrono_tz::Tz,
    now: DateTime<Utc>,
    current_since: DateTime<Utc>,
) -> Result<Option<DateTime<Utc>>, (StatusCode, String)> {
    let at = earlier_today(hh_mm, tz, now).map_err(|e| (StatusCode::BAD_REQUEST, e))?;
    if now - at < TimeDelta::minutes(1) {
        return Ok(None);
    }
    if at < current_since {
        let since = current_since.with_timezone(&tz).format("%H:%M");
        return Err((
            StatusCode::CONFLICT,
            format!(
                "the start time {hh_mm} is before the machine's current activity began ({since}): enter {since} or \
                 later, and add the earlier time as a past job in the history"
            ),
        ));
    }
    Ok(Some(at))
}

/// Today's `HH:MM` in the plant's zone, which must not be later than `now`.
fn earlier_today(hh_mm: &str, tz: chrono_tz::Tz, now: DateTime<Utc>) -> Result<DateTime<Utc>, String> {
    let time = NaiveTime::parse_from_str(hh_mm.trim(), "%H:%M")
        .map_err(|_| format!("the start time must be HH:MM, not `{hh_mm}`"))?;
    let today = now.with_timezone(&tz).date_naive();
    let at = tz
        .from_local_datetime(&today.and_time(time))
        .earliest()
        .ok_or_else(|| format!("{hh_mm} does not exist today (the clocks changed)"))?
        .with_timezone(&Utc);
    if at > now {
        return Err(format!("the start time {hh_mm} is later than now"));
    }
    Ok(at)
}

/// The `activity_code_id` of a body, when it is a code id.
fn code_of(obj: &Map<String, Value>) -> Option<i32> {
    lenient_i32(obj, "activity_code_id").ok().flatten()
}

/// `POST /android-update` `{"device_uuid","activity_code_id"}`: a new activity.
pub(crate) async fn update(State(state): State<BridgeState>, headers: HeaderMap, body: Bytes) -> Answer {
    let obj = body_object(&headers, &body)?;
    let t = tablet_of(&state, &obj, not_registered_json).await?;
    let (Ok((machine_id, user_id)), Some(code)) = (session_of(&t, bare_failure), code_of(&obj)) else {
        return Err(bare_failure());
    };
    apply(&state, machine_id, CommandKind::State, json!({ "activity_code_id": code, "user_id": user_id })).await
}

/// A count the app sent as a string: a whole number of parts, at least 0 (`"12"` and `"12.0"` are 12).
fn parts(obj: &Map<String, Value>, key: &str) -> Result<Option<i64>, Fail> {
    let Some(v) = obj.get(key) else { return Ok(None) };
    let x = match v {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.trim().parse::<f64>().ok(),
        _ => None,
    };
    match x {
        Some(x) if x.is_finite() && x >= 0.0 && x.fract() == 0.0 && x < 1e15 => Ok(Some(x as i64)),
        _ => Err(failure(StatusCode::BAD_REQUEST, &format!("`{key}` must be a whole number of parts, not {v}"))),
    }
}

/// Both counts of an end-of-job or running-total body, or the reference's answer for a missing one.
fn counts(obj: &Map<String, Value>) -> Result<(i64, i64), Fail> {
    match (parts(obj, "quantity_good")?, parts(obj, "rejects")?) {
        (Some(good), Some(rejects)) => Ok((good, rejects)),
        _ => Err(failure(StatusCode::OK, PARSE_ERROR)),
    }
}

fn no_active_job() -> Fail {
    html(StatusCode::BAD_REQUEST, "No active job").into()
}

/// `POST /android-end-job` `{"device_uuid","quantity_good","rejects"}`.
pub(crate) async fn end_job(State(state): State<BridgeState>, headers: HeaderMap, body: Bytes) -> Answer {
    let obj = body_object(&headers, &body)?;
    let t = tablet_of(&state, &obj, not_registered_json).await?;
    let (machine_id, user_id) = session_of(&t, logged_out_401)?;
    let (good, rejects) = counts(&obj)?;
    let v = command(
        &state,
        machine_id,
        CommandKind::JobEnd,
        json!({ "good": good, "rejects": rejects, "user_id": user_id }),
    )
    .await?;
    answer(&v, "no_active_job", no_active_job)
}

/// `POST /pausable-pause-job` `{"device_uuid"}`: the machine goes Down.
pub(crate) async fn pause_job(State(state): State<BridgeState>, headers: HeaderMap, body: Bytes) -> Answer {
    let obj = body_object(&headers, &body)?;
    let t = tablet_of(&state, &obj, not_registered_json).await?;
    let (machine_id, user_id) = session_of(&t, logged_out)?;
    apply(&state, machine_id, CommandKind::State, json!({ "activity_code_id": DOWN_CODE_ID, "user_id": user_id })).await
}

/// `POST /pausable-resume-job` `{"device_uuid","downtime_reason","notes"?}`: the job runs again, and the
/// pause's reason and notes are added to the job's notes.
pub(crate) async fn resume_job(State(state): State<BridgeState>, headers: HeaderMap, body: Bytes) -> Answer {
    let obj = body_object(&headers, &body)?;
    let t = tablet_of(&state, &obj, not_registered_json).await?;
    let Some(reason) = text(&obj, "downtime_reason") else {
        return Err(bare_failure());
    };
    let (machine_id, user_id) = session_of(&t, logged_out)?;
    let mut command = json!({ "activity_code_id": UP_CODE_ID, "user_id": user_id });
    if let Some(notes) = text(&obj, "notes").filter(|n| !n.is_empty()) {
        let now = Utc::now().with_timezone(&state.tz);
        command["job_note"] = json!(format!("{} - {reason} - {notes} \n", now.format("%H:%M")));
    }
    apply(&state, machine_id, CommandKind::State, command).await
}

/// `POST /pausable-android-update` `{"device_uuid","activity_code_id"}`: the reason for the current pause,
/// changed in place (no new activity, so the paused screen stays).
pub(crate) async fn pausable_update(State(state): State<BridgeState>, headers: HeaderMap, body: Bytes) -> Answer {
    let obj = body_object(&headers, &body)?;
    let t = tablet_of(&state, &obj, not_registered_json).await?;
    let Some(code) = code_of(&obj) else {
        return Err(bare_failure());
    };
    let (machine_id, user_id) = session_of(&t, logged_out)?;
    let Some(activity) = store::current_activity_id(&state.pool, machine_id).await.map_err(db)? else {
        return Err(failure(StatusCode::CONFLICT, "the machine has no current activity"));
    };
    let body = json!({ "activity_id": activity, "activity_code_id": code, "user_id": user_id });
    apply(&state, machine_id, CommandKind::HistoryActivity, body).await
}

#[derive(Serialize)]
struct Counted {
    success: bool,
    quantity_produced: i64,
    quantity_rejects: i64,
    last_update: f64,
}

/// `POST /android-update-quantity` `{"device_uuid","quantity_good","rejects"}`: parts made since the last
/// update, for the running job; answers the job's totals.
pub(crate) async fn update_quantity(State(state): State<BridgeState>, headers: HeaderMap, body: Bytes) -> Answer {
    let obj = body_object(&headers, &body)?;
    let t = tablet_of(&state, &obj, not_registered_json).await?;
    let (good, rejects) = counts(&obj)?;
    let (machine_id, _) = session_of(&t, logged_out)?;
    let Some(job_id) = machine(&state, machine_id).await?.job_id else {
        return Err(failure(StatusCode::CONFLICT, "no job is running: start a job before counting its parts"));
    };
    let v = command(&state, machine_id, CommandKind::Production, json!({ "good": good, "rejects": rejects })).await?;
    if !v.ok {
        return Err(refused(&v));
    }
    let totals = store::job_totals(&state.pool, job_id).await.map_err(db)?;
    Ok(reference(
        StatusCode::OK,
        &Counted {
            success: true,
            quantity_produced: totals.good,
            quantity_rejects: totals.rejects,
            last_update: unix_seconds(totals.last_count.unwrap_or_else(Utc::now)),
        },
    ))
}

/// `POST /end_all_sessions` with a JSON object (`{}`): logs every tablet out.
pub(crate) async fn end_all_sessions(State(state): State<BridgeState>, headers: HeaderMap, body: Bytes) -> Answer {
    body_object(&headers, &body)?;
    for (tablet, machine_id) in store::logged_in_tablets(&state.pool).await.map_err(db)? {
        let Some(machine_id) = machine_id else { continue };
        let v = log_out(&state, tablet, machine_id).await?;
        if !v.ok && v.reason.as_deref() != Some("not_logged_in") {
            return Err(refused(&v));
        }
    }
    store::close_orphan_sessions(&state.pool, Utc::now()).await.map_err(db)?;
    ok()
}

/// `POST /api/force-logout/{input_device_id}` with a JSON object (`{}`): logs a tablet out from elsewhere
/// (the status page); the tablet's websocket is told. 200 with an empty body, as in the reference.
pub(crate) async fn force_logout(
    State(state): State<BridgeState>,
    path: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
    body: Bytes,
) -> Answer {
    body_object(&headers, &body)?;
    // Not UTF-8 once percent-decoded: no tablet's number.
    let Ok(Path(id)) = path else {
        return Err(failure(
            StatusCode::NOT_FOUND,
            "there is no such tablet: give its number, e.g. /api/force-logout/3",
        ));
    };
    let unknown = || failure(StatusCode::NOT_FOUND, &format!("there is no tablet {id}"));
    let id: i32 = id.parse().map_err(|_| unknown())?;
    let t = store::tablet_by_id(&state.pool, id).await.map_err(db)?.ok_or_else(unknown)?;
    let (machine_id, _) =
        session_of(&t, || failure(StatusCode::CONFLICT, &format!("nobody is logged in on tablet {id}")))?;
    let v = log_out(&state, t.id, machine_id).await?;
    if !v.ok {
        return Err(refused(&v));
    }
    Ok(html(StatusCode::OK, ""))
}

/// `GET /api/v1/tablets/machines`: the machines a tablet may be paired with.
#[utoipa::path(
    get,
    path = "/api/v1/tablets/machines",
    tag = "tablets",
    operation_id = "tablet_machines",
    summary = "The machines a tablet may be paired with",
    description = "Active machines by id, each saying whether a tablet is already paired with it. Tablets call it \
                   without credentials, as the reference's app does.",
    responses(
        (status = 200, description = "The machines", body = Vec<oee_core::store::tablet::PairingChoice>),
        (status = 503, description = "The database is not reachable: try again", body = Failure<'static>),
    )
)]
pub(crate) async fn machines(State(state): State<BridgeState>) -> Answer {
    Ok(Json(store::pairing_choices(&state.pool).await.map_err(db)?).into_response())
}

/// `POST /api/v1/tablets/pair` `{"device_uuid","machine_id"}`: a tablet picks its machine, when
/// `tablets.auto_pair` lets tablets pair themselves.
#[utoipa::path(
    post,
    path = "/api/v1/tablets/pair",
    tag = "tablets",
    operation_id = "pair_tablet",
    summary = "Pair a tablet with a machine",
    description = "A registered tablet picks its machine, where `tablets.auto_pair` lets tablets pair themselves \
                   (otherwise an administrator pairs them with `oee-server tablet pair`).",
    request_body = crate::openapi::PairRequest,
    responses(
        (status = 200, description = "Paired", body = Success),
        (status = 400, description = "No `device_uuid` or `machine_id`, an unregistered tablet, or a body that is not JSON", body = Failure<'static>),
        (status = 403, description = "Tablets do not pair themselves here", body = Failure<'static>),
        (status = 404, description = "No such machine", body = Failure<'static>),
        (status = 409, description = "The machine cannot take this tablet", body = Failure<'static>),
        (status = 503, description = "The database is not reachable: try again", body = Failure<'static>),
    )
)]
pub(crate) async fn pair(State(state): State<BridgeState>, headers: HeaderMap, body: Bytes) -> Answer {
    let obj = body_object(&headers, &body)?;
    if !state.tablets.auto_pair {
        return Err(failure(
            StatusCode::FORBIDDEN,
            "tablets are paired by an administrator here: ask them to pair this tablet (oee-server tablet pair)",
        ));
    }
    let t = tablet_of(&state, &obj, not_registered_json).await?;
    let Ok(Some(machine_id)) = lenient_i32(&obj, "machine_id") else {
        return Err(failure(StatusCode::BAD_REQUEST, "give the machine's id as `machine_id`"));
    };
    match store::pair_tablet(&state.pool, t.id, Some(machine_id)).await {
        Ok(()) => ok(),
        Err(oee_core::Error::NotFound(m)) => Err(failure(StatusCode::NOT_FOUND, &m)),
        Err(oee_core::Error::Conflict(m)) => Err(failure(StatusCode::CONFLICT, &m)),
        Err(e) => Err(db(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_start_time_is_today_and_not_later_than_now() {
        let tz: chrono_tz::Tz = "Europe/London".parse().unwrap();
        // 26 Oct 2026 09:30 UTC is 09:30 in London (winter time)
        let now = Utc.with_ymd_and_hms(2026, 10, 26, 9, 30, 0).unwrap();
        assert_eq!(earlier_today("08:15", tz, now).unwrap(), Utc.with_ymd_and_hms(2026, 10, 26, 8, 15, 0).unwrap());
        assert!(earlier_today("10:00", tz, now).unwrap_err().contains("later than now"));
        assert!(earlier_today("8.15", tz, now).unwrap_err().contains("HH:MM"));
        // summer time: 14 Jul 09:30 UTC is 10:30 in London
        let summer = Utc.with_ymd_and_hms(2026, 7, 14, 9, 30, 0).unwrap();
        assert_eq!(earlier_today("10:00", tz, summer).unwrap(), Utc.with_ymd_and_hms(2026, 7, 14, 9, 0, 0).unwrap());
    }

    #[test]
    fn the_current_minute_starts_a_job_now_and_an_earlier_one_not_before_the_current_activity() {
        let tz: chrono_tz::Tz = "Europe/London".parse().unwrap();
        let at = |h, m, s| Utc.with_ymd_and_hms(2026, 10, 26, h, m, s).unwrap();
        // logged in at 09:30:20, the form sent at 09:30:50 with the minute it showed
        assert_eq!(delayed_start("09:30", tz, at(9, 30, 50), at(9, 30, 20)), Ok(None));
        assert_eq!(delayed_start("09:30", tz, at(9, 30, 0), at(9, 30, 0)), Ok(None));
        assert_eq!(delayed_start("09:10", tz, at(9, 30, 50), at(9, 0, 0)), Ok(Some(at(9, 10, 0))));
        // the minute before the login's is before it: refused with what to enter
        let (status, message) = delayed_start("09:29", tz, at(9, 30, 50), at(9, 29, 30)).unwrap_err();
        assert_eq!(status, StatusCode::CONFLICT);
        assert!(message.contains("enter 09:29 or later"), "{message}");
        assert_eq!(delayed_start("09:31", tz, at(9, 30, 50), at(9, 0, 0)).unwrap_err().0, StatusCode::BAD_REQUEST);
    }

    #[test]
    fn counts_are_whole_numbers_of_parts() {
        let obj = |v: Value| v.as_object().unwrap().clone();
        assert_eq!(counts(&obj(json!({"quantity_good": "100", "rejects": "3.0"}))).unwrap(), (100, 3));
        assert_eq!(counts(&obj(json!({"quantity_good": 7, "rejects": 0}))).unwrap(), (7, 0));
        assert_eq!(counts(&obj(json!({"quantity_good": "5"}))).unwrap_err().into_response().status(), StatusCode::OK);
        for bad in [json!("-1"), json!("2.5"), json!("many"), json!(true)] {
            let e = counts(&obj(json!({"quantity_good": bad, "rejects": "0"}))).unwrap_err();
            assert_eq!(e.into_response().status(), StatusCode::BAD_REQUEST, "{bad}");
        }
    }
}
