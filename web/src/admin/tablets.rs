//! Tablets: the list (machine, who is logged in, when each last asked for its state), a tablet's name and
//! machine (one tablet per machine, as the reference's `/input-device`), the pairing window through which
//! new tablets register, and logging a tablet's operator out from here; the same in the admin API under
//! `/api/v1/admin/tablets` (the tablets' own API has `/api/v1/tablets/…`).
//!
//! Forcing a logout is a supervisor's right, the rest an administrator's: supervisors see the list (with a
//! "Log out" button beside each operator) but neither the tablets' pages nor the pairing window. The logout
//! is a sealed session command to ingest, as the tablet's own logout is, so the machine's state and the
//! tablet's screen follow as they would.

use std::collections::HashMap;

use axum::Extension;
use axum::extract::{Form, Path, Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use chrono::{DateTime, Utc};
use oee_core::access::Role;
use oee_core::payload::SessionCommand;
use oee_core::store::tablet::{self, Tablet};
use serde::{Deserialize, Serialize};

use crate::WebState;
use crate::access::{Access, Caller, Route};
use crate::api::{ApiError, ApiJson};
use crate::page::{Field, FormPage, Page, SubForm, flash, found, place_error, refused};

pub(super) fn routes() -> Vec<Route> {
    let admin = Access::Role(Role::Admin);
    let supervisor = Access::Role(Role::Supervisor);
    vec![
        Route::get("/admin/tablets", supervisor, list_page),
        Route::post("/admin/tablets/{id}/logout", supervisor, log_out_page),
        Route::get("/admin/tablets/{id}", admin, edit_page),
        Route::post("/admin/tablets/{id}", admin, update),
        Route::post("/admin/tablets/pairing-window/open", admin, open_window),
        Route::post("/admin/tablets/pairing-window/close", admin, close_window),
        Route::get("/input-device", admin, reference_page),
        Route::get("/api/v1/admin/tablets", admin, api_list),
        Route::get("/api/v1/admin/tablets/{id}", admin, api_get),
        Route::put("/api/v1/admin/tablets/{id}", admin, api_rename),
        Route::put("/api/v1/admin/tablets/{id}/machine", admin, api_pair),
        Route::get("/api/v1/admin/tablets/pairing-window", admin, api_window),
        Route::put("/api/v1/admin/tablets/pairing-window", admin, api_open_window),
        Route::delete("/api/v1/admin/tablets/pairing-window", admin, api_close_window),
        Route::post("/api/v1/admin/tablets/{id}/logout", supervisor, api_log_out),
    ]
}

/// Minutes the pairing window opens for when the form does not say.
const DEFAULT_WINDOW_MINUTES: u32 = 15;

fn when(t: Option<DateTime<Utc>>, tz: chrono_tz::Tz) -> String {
    t.map_or_else(|| "never".into(), |t| t.with_timezone(&tz).format("%Y-%m-%d %H:%M").to_string())
}

fn logged_in(t: &Tablet) -> String {
    match (&t.user_name, t.user_id) {
        (Some(name), Some(id)) => format!("{name} (user {id})"),
        _ => "nobody".into(),
    }
}

/// The list page: the tablets and, for administrators, the pairing window.
#[derive(Debug, Serialize)]
struct TabletsPage {
    /// Why the last request was refused (a logout of nobody).
    error: Option<String>,
    /// Whether the caller is an administrator, who edits tablets and opens the pairing window.
    admin: bool,
    rows: Vec<TabletRow>,
    auto_pair: bool,
    open_registration: bool,
    window_max_new: u32,
    /// When the pairing window closes (plant time), if it is open, and how many registered in it.
    window_until: Option<String>,
    window_registered: i32,
    minutes: Field,
}

#[derive(Debug, Serialize)]
struct TabletRow {
    id: i32,
    name: String,
    uuid: String,
    machine: String,
    user: String,
    /// Whether someone is logged in on it (a "Log out" button is shown).
    logged_in: bool,
    last_seen: String,
}

async fn list_page(State(state): State<WebState>, Extension(c): Extension<Caller>) -> Result<Response, ApiError> {
    let minutes =
        Field::text("minutes", "Open for (minutes, 1 to 1440)", DEFAULT_WINDOW_MINUTES.to_string()).kind("number");
    Ok(tablets_page(&state, &c, minutes, None).await?)
}

/// The list page, with the pairing window's minutes field as given (and its refusal, if any), and the
/// refusal of a logout, if any.
async fn tablets_page(
    state: &WebState,
    c: &Caller,
    minutes: Field,
    error: Option<String>,
) -> Result<Response, oee_core::Error> {
    let tablets = tablet::list_tablets(&state.pool).await?;
    let window = tablet::pairing_window(&state.pool).await?;
    let cfg = &state.config.tablets;
    let body = TabletsPage {
        error,
        admin: c.role >= Role::Admin,
        rows: tablets
            .iter()
            .map(|t| TabletRow {
                id: t.id,
                name: t.name.clone(),
                uuid: t.uuid.clone(),
                machine: t.machine_name.clone().unwrap_or_else(|| "none".into()),
                user: logged_in(t),
                logged_in: t.user_id.is_some(),
                last_seen: when(t.last_seen_at, state.tz),
            })
            .collect(),
        auto_pair: cfg.auto_pair,
        open_registration: cfg.open_registration,
        window_max_new: cfg.window_max_new,
        window_until: window.map(|(until, _)| when(Some(until), state.tz)),
        window_registered: window.map_or(0, |(_, n)| n),
        minutes,
    };
    let page = Page::new(state, Some(c), "Tablets", "admin", body).await;
    Ok(state.pages.render("tablets", &page))
}

async fn found_tablet(state: &WebState, id: i32) -> Result<Tablet, oee_core::Error> {
    tablet::tablet_by_id(&state.pool, id)
        .await?
        .ok_or_else(|| oee_core::Error::NotFound(format!("there is no tablet {id}: the list is at /admin/tablets")))
}

#[derive(Debug, Deserialize, Default)]
struct TabletForm {
    #[serde(default)]
    name: String,
    /// A machine's id, `0` or empty for none (the reference's "Unassigned"); absent: unchanged.
    #[serde(default)]
    machine_id: Option<String>,
}

/// The machine choices: none, then every active machine, those with another tablet marked.
async fn machine_choices(state: &WebState, t: &Tablet) -> Result<Vec<(String, String)>, oee_core::Error> {
    let mut choices = vec![("0".to_string(), "Unassigned".to_string())];
    for m in tablet::pairing_choices(&state.pool).await? {
        let taken = m.paired && t.machine_id != Some(m.id);
        let label = if taken { format!("{} (has another tablet)", m.name) } else { m.name };
        choices.push((m.id.to_string(), label));
    }
    // A tablet paired with a machine made inactive since still shows it.
    if let (Some(id), Some(name)) = (t.machine_id, &t.machine_name)
        && !choices.iter().any(|(v, _)| *v == id.to_string())
    {
        choices.push((id.to_string(), format!("{name} (inactive)")));
    }
    Ok(choices)
}

async fn edit_form(
    state: &WebState,
    c: &Caller,
    t: &Tablet,
    form: Option<&TabletForm>,
    e: Option<&oee_core::Error>,
) -> Result<Response, oee_core::Error> {
    let (name, machine) = match form {
        Some(f) => (f.name.clone(), f.machine_id.as_deref().map(str::trim).map(str::to_string)),
        None => (t.name.clone(), None),
    };
    let machine = machine.unwrap_or_else(|| t.machine_id.unwrap_or(0).to_string());
    let mut fields = vec![
        Field::text("name", "Name", name).required(),
        Field::select("machine_id", "Machine", machine_choices(state, t).await?, &machine).hint(
            "One tablet per machine. While someone is logged in on the tablet it keeps its machine: they log out \
             first.",
        ),
    ];
    let mut error = None;
    match e {
        // A refused pairing belongs beside the machine it was about.
        Some(oee_core::Error::Conflict(m)) => fields[1].error = Some(m.clone()),
        Some(e) => place_error(&mut fields, &mut error, e),
        None => {}
    }
    let body = FormPage {
        heading: format!("Tablet {} `{}`", t.id, t.name),
        action: format!("/admin/tablets/{}", t.id),
        submit: "Save",
        fields,
        error,
        back: "/admin/tablets".into(),
        facts: vec![
            ("UUID".into(), t.uuid.clone()),
            ("Logged in".into(), logged_in(t)),
            ("Last asked for its state".into(), when(t.last_seen_at, state.tz)),
        ],
        more: match &t.user_name {
            Some(name) => vec![SubForm {
                heading: "Operator".into(),
                action: format!("/admin/tablets/{}/logout", t.id),
                submit: format!("Log {name} out of this tablet"),
                fields: vec![],
            }],
            None => vec![],
        },
    };
    let page = Page::new(state, Some(c), format!("Tablet {}", t.name), "admin", body).await;
    Ok(state.pages.render("form", &page))
}

async fn edit_page(
    State(state): State<WebState>,
    Extension(c): Extension<Caller>,
    Path(id): Path<i32>,
) -> Result<Response, ApiError> {
    let t = found_tablet(&state, id).await?;
    Ok(edit_form(&state, &c, &t, None, None).await?)
}

/// The machine a form or body names: `None` for `0`, empty or null.
fn machine_of(text: &str) -> Result<Option<i32>, oee_core::Error> {
    match text.trim() {
        "" | "0" => Ok(None),
        m => m.parse::<i32>().map(Some).map_err(|_| {
            oee_core::Error::field("machine_id", format!("`{m}` is not a machine: choose one from the list"))
        }),
    }
}

async fn update(
    State(state): State<WebState>,
    Extension(c): Extension<Caller>,
    Path(id): Path<i32>,
    Form(form): Form<TabletForm>,
) -> Result<Response, ApiError> {
    let t = found_tablet(&state, id).await?;
    let outcome = async {
        let machine = form.machine_id.as_deref().map(machine_of).transpose()?;
        if form.name.trim() != t.name {
            tablet::rename_tablet(&state.pool, id, &form.name).await?;
        }
        match machine {
            // A machine with another tablet is refused in the reference's words.
            Some(m) => tablet::pair_tablet(&state.pool, id, m).await,
            None => Ok(()),
        }
    }
    .await;
    Ok(match outcome {
        Ok(()) => {
            flash(&state, &c, &format!("Tablet `{}` saved", form.name.trim())).await;
            found("/admin/tablets")
        }
        Err(e) => {
            // Shown as it is now (a rename may have gone through before the pairing was refused).
            let now = found_tablet(&state, id).await?;
            refused(edit_form(&state, &c, &now, Some(&form), Some(&e)).await?, &e)
        }
    })
}

#[derive(Debug, Deserialize, Default)]
struct WindowForm {
    #[serde(default)]
    minutes: String,
}

fn window_minutes(text: &str) -> Result<u32, oee_core::Error> {
    let text = text.trim();
    if text.is_empty() {
        return Ok(DEFAULT_WINDOW_MINUTES);
    }
    text.parse::<u32>()
        .ok()
        .filter(|m| (1..=1440).contains(m))
        .ok_or_else(|| oee_core::Error::field("minutes", format!("`{text}` is not a number of minutes from 1 to 1440")))
}

async fn open_window(
    State(state): State<WebState>,
    Extension(c): Extension<Caller>,
    Form(form): Form<WindowForm>,
) -> Result<Response, ApiError> {
    let minutes = match window_minutes(&form.minutes) {
        Ok(m) => m,
        Err(e) => {
            let mut field =
                Field::text("minutes", "Open for (minutes, 1 to 1440)", form.minutes.clone()).kind("number");
            field.error = Some(match &e {
                oee_core::Error::Field { message, .. } => message.clone(),
                other => other.to_string(),
            });
            return Ok(refused(tablets_page(&state, &c, field, None).await?, &e));
        }
    };
    let until = tablet::open_pairing_window(&state.pool, Utc::now(), minutes).await?;
    let message = format!(
        "New tablets may register until {} (at most {}){}",
        when(Some(until), state.tz),
        state.config.tablets.window_max_new,
        if state.config.tablets.auto_pair {
            "; each is paired with the first machine without a tablet"
        } else {
            "; pair each here once it appears"
        }
    );
    flash(&state, &c, &message).await;
    Ok(found("/admin/tablets"))
}

async fn close_window(State(state): State<WebState>, Extension(c): Extension<Caller>) -> Result<Response, ApiError> {
    tablet::close_pairing_window(&state.pool).await?;
    flash(&state, &c, "The pairing window is closed: new tablets may not register").await;
    Ok(found("/admin/tablets"))
}

/// Logs the operator of tablet `id` out through ingest, as the tablet's own logout does (the tablet's screen
/// is told through its websocket). Returns the tablet as it was, with who was logged in. Refused with
/// `Conflict` when nobody is logged in on it.
async fn log_out_operator(state: &WebState, id: i32) -> Result<Tablet, oee_core::Error> {
    use oee_core::Error;
    let t = found_tablet(state, id).await?;
    let machine_id = match (t.user_id, t.machine_id) {
        (None, _) => {
            return Err(Error::Conflict(format!(
                "nobody is logged in on tablet {} `{}`: there is nobody to log out",
                t.id, t.name
            )));
        }
        (Some(_), None) => {
            return Err(Error::Conflict(format!(
                "tablet {} `{}` has no machine, and its operator is logged out through the machine: pair it with \
                 its machine first",
                t.id, t.name
            )));
        }
        (Some(_), Some(m)) => m,
    };
    let verdict = state
        .replies
        .send_session(machine_id, SessionCommand::logout(t.id), &state.seal, state.reply_timeout)
        .await
        .map_err(|e| {
            if e.is_retryable() {
                Error::Unavailable(format!(
                    "the logout was not confirmed ({e}): look at the tablet's list, and try again if the operator \
                     is still logged in"
                ))
            } else {
                Error::Invalid(e.to_string())
            }
        })?;
    if verdict.ok {
        return Ok(t);
    }
    let message = verdict.message.unwrap_or_else(|| format!("the logout of tablet {id} was refused"));
    Err(match verdict.status {
        404 => Error::NotFound(message),
        409 => Error::Conflict(message),
        400..=499 => Error::Invalid(message),
        _ => Error::Unavailable(message),
    })
}

/// `POST /admin/tablets/{id}/logout`: the "Log out" button of the list and of the tablet's page.
async fn log_out_page(
    State(state): State<WebState>,
    Extension(c): Extension<Caller>,
    Path(id): Path<i32>,
) -> Result<Response, ApiError> {
    match log_out_operator(&state, id).await {
        Ok(t) => {
            let who = t.user_name.as_deref().unwrap_or("The operator");
            let message = format!("{who} was logged out of tablet `{}`; it shows the login screen again", t.name);
            flash(&state, &c, &message).await;
            Ok(found("/admin/tablets"))
        }
        Err(e) => {
            let minutes = Field::text("minutes", "Open for (minutes, 1 to 1440)", DEFAULT_WINDOW_MINUTES.to_string())
                .kind("number");
            Ok(refused(tablets_page(&state, &c, minutes, Some(e.to_string())).await?, &e))
        }
    }
}

/// `GET /input-device?id=N`: the reference's page, sent to ours.
async fn reference_page(Query(q): Query<HashMap<String, String>>) -> Response {
    match q.get("id").and_then(|s| s.trim().parse::<i32>().ok()) {
        Some(id) => found(&format!("/admin/tablets/{id}")),
        None => found("/admin/tablets"),
    }
}

/// A tablet as the admin API gives it.
#[derive(Debug, Serialize, utoipa::ToSchema)]
struct TabletJson {
    id: i32,
    /// What the tablet calls itself when it registers (`GET /check-state`).
    uuid: String,
    name: String,
    /// The machine it is paired with.
    machine_id: Option<i32>,
    machine_name: Option<String>,
    /// The operator logged in on it, if anyone is.
    user_id: Option<i32>,
    user_name: Option<String>,
    /// When it last asked for its state (recorded about once a minute).
    last_seen_at: Option<DateTime<Utc>>,
}

impl From<Tablet> for TabletJson {
    fn from(t: Tablet) -> TabletJson {
        TabletJson {
            id: t.id,
            uuid: t.uuid,
            name: t.name,
            machine_id: t.machine_id,
            machine_name: t.machine_name,
            user_id: t.user_id,
            user_name: t.user_name,
            last_seen_at: t.last_seen_at,
        }
    }
}

#[utoipa::path(
    get,
    path = "/api/v1/admin/tablets",
    tag = "tablet admin",
    operation_id = "list_tablets",
    summary = "Every tablet",
    description = "Each tablet with its machine, who is logged in on it and when it last asked for its state.",
    responses(
        (status = 200, description = "The tablets, by id", body = Vec<TabletJson>),
        (status = 503, description = "The database is not available", body = crate::api::ErrorBody),
    )
)]
async fn api_list(State(state): State<WebState>) -> Result<axum::Json<Vec<TabletJson>>, ApiError> {
    Ok(axum::Json(tablet::list_tablets(&state.pool).await?.into_iter().map(TabletJson::from).collect()))
}

#[utoipa::path(
    get,
    path = "/api/v1/admin/tablets/{id}",
    tag = "tablet admin",
    operation_id = "get_tablet",
    summary = "One tablet",
    params(("id" = i32, Path, description = "The tablet's id")),
    responses(
        (status = 200, description = "The tablet", body = TabletJson),
        (status = 404, description = "No such tablet", body = crate::api::ErrorBody),
        (status = 503, description = "The database is not available", body = crate::api::ErrorBody),
    )
)]
async fn api_get(State(state): State<WebState>, Path(id): Path<i32>) -> Result<axum::Json<TabletJson>, ApiError> {
    Ok(axum::Json(found_tablet(&state, id).await?.into()))
}

/// The body of `PUT /api/v1/admin/tablets/{id}`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct TabletRename {
    name: String,
}

#[utoipa::path(
    put,
    path = "/api/v1/admin/tablets/{id}",
    tag = "tablet admin",
    operation_id = "rename_tablet",
    summary = "Rename a tablet",
    params(("id" = i32, Path, description = "The tablet's id")),
    request_body = TabletRename,
    responses(
        (status = 200, description = "Saved", body = TabletJson),
        (status = 400, description = "The name is refused: `field` says so", body = crate::api::ErrorBody),
        (status = 404, description = "No such tablet", body = crate::api::ErrorBody),
        (status = 409, description = "The name is taken", body = crate::api::ErrorBody),
        (status = 503, description = "The database is not available", body = crate::api::ErrorBody),
    )
)]
async fn api_rename(
    State(state): State<WebState>,
    Path(id): Path<i32>,
    ApiJson(body): ApiJson<TabletRename>,
) -> Result<axum::Json<TabletJson>, ApiError> {
    let t = found_tablet(&state, id).await?;
    if body.name.trim() != t.name {
        tablet::rename_tablet(&state.pool, id, &body.name).await?;
    }
    Ok(axum::Json(found_tablet(&state, id).await?.into()))
}

/// The body of `PUT /api/v1/admin/tablets/{id}/machine`: a machine's id, or `null` to unpair.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct TabletPairing {
    machine_id: Option<i32>,
}

#[utoipa::path(
    put,
    path = "/api/v1/admin/tablets/{id}/machine",
    tag = "tablet admin",
    operation_id = "set_tablet_machine",
    summary = "Pair a tablet with a machine, or unpair it",
    description = "One tablet per machine. While someone is logged in on the tablet it keeps its machine: log them \
                   out first.",
    params(("id" = i32, Path, description = "The tablet's id")),
    request_body = TabletPairing,
    responses(
        (status = 200, description = "Saved", body = TabletJson),
        (status = 400, description = "The body is not JSON of this shape", body = crate::api::ErrorBody),
        (status = 404, description = "No such tablet or machine", body = crate::api::ErrorBody),
        (status = 409, description = "The machine has another tablet, or someone is logged in on this one", body = crate::api::ErrorBody),
        (status = 503, description = "The database is not available", body = crate::api::ErrorBody),
    )
)]
async fn api_pair(
    State(state): State<WebState>,
    Path(id): Path<i32>,
    ApiJson(body): ApiJson<TabletPairing>,
) -> Result<axum::Json<TabletJson>, ApiError> {
    let t = found_tablet(&state, id).await?;
    tablet::pair_tablet(&state.pool, t.id, body.machine_id.filter(|m| *m != 0)).await?;
    Ok(axum::Json(found_tablet(&state, id).await?.into()))
}

#[utoipa::path(
    post,
    path = "/api/v1/admin/tablets/{id}/logout",
    tag = "tablet admin",
    operation_id = "log_out_tablet_operator",
    summary = "Log a tablet's operator out",
    description = "Ends the session of whoever is logged in on the tablet, as their own logout would: the machine's \
                   activity follows (Down in shift, Closed out of shift, when no job runs) and the tablet shows its \
                   login screen. Answers once ingest has applied it.",
    params(("id" = i32, Path, description = "The tablet's id")),
    responses(
        (status = 200, description = "Logged out: the tablet now", body = TabletJson),
        (status = 404, description = "No such tablet", body = crate::api::ErrorBody),
        (status = 409, description = "Nobody is logged in on the tablet", body = crate::api::ErrorBody),
        (status = 503, description = "The logout was not confirmed in time, or the database is not available: try again", body = crate::api::ErrorBody),
    )
)]
async fn api_log_out(State(state): State<WebState>, Path(id): Path<i32>) -> Result<axum::Json<TabletJson>, ApiError> {
    log_out_operator(&state, id).await?;
    Ok(axum::Json(found_tablet(&state, id).await?.into()))
}

/// The pairing window and the switches that decide how new tablets come in.
#[derive(Debug, Serialize, utoipa::ToSchema)]
struct WindowJson {
    open: bool,
    open_until: Option<DateTime<Utc>>,
    /// New tablets registered in the window so far.
    registered: i32,
    /// `tablets.window_max_new`.
    max_new: u32,
    /// `tablets.auto_pair`.
    auto_pair: bool,
    /// `tablets.open_registration`: any new tablet registers, window or not.
    open_registration: bool,
}

async fn window_json(state: &WebState) -> Result<WindowJson, oee_core::Error> {
    let window = tablet::pairing_window(&state.pool).await?;
    let cfg = &state.config.tablets;
    Ok(WindowJson {
        open: window.is_some(),
        open_until: window.map(|(until, _)| until),
        registered: window.map_or(0, |(_, n)| n),
        max_new: cfg.window_max_new,
        auto_pair: cfg.auto_pair,
        open_registration: cfg.open_registration,
    })
}

#[utoipa::path(
    get,
    path = "/api/v1/admin/tablets/pairing-window",
    tag = "tablet admin",
    operation_id = "get_pairing_window",
    summary = "The pairing window through which new tablets register",
    responses(
        (status = 200, description = "The window", body = WindowJson),
        (status = 503, description = "The database is not available", body = crate::api::ErrorBody),
    )
)]
async fn api_window(State(state): State<WebState>) -> Result<axum::Json<WindowJson>, ApiError> {
    Ok(axum::Json(window_json(&state).await?))
}

/// The body of `PUT /api/v1/admin/tablets/pairing-window`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct OpenWindow {
    /// How long it stays open: 1 to 1440 minutes.
    minutes: u32,
}

#[utoipa::path(
    put,
    path = "/api/v1/admin/tablets/pairing-window",
    tag = "tablet admin",
    operation_id = "open_pairing_window",
    summary = "Open the pairing window",
    description = "New tablets may register until it closes, at most `tablets.window_max_new` of them; opening it \
                   again counts them afresh.",
    request_body = OpenWindow,
    responses(
        (status = 200, description = "Open", body = WindowJson),
        (status = 400, description = "The minutes are refused: `field` says so", body = crate::api::ErrorBody),
        (status = 503, description = "The database is not available", body = crate::api::ErrorBody),
    )
)]
async fn api_open_window(
    State(state): State<WebState>,
    ApiJson(body): ApiJson<OpenWindow>,
) -> Result<axum::Json<WindowJson>, ApiError> {
    let minutes = window_minutes(&body.minutes.to_string())?; // the same limits as the page's
    tablet::open_pairing_window(&state.pool, Utc::now(), minutes).await?;
    Ok(axum::Json(window_json(&state).await?))
}

#[utoipa::path(
    delete,
    path = "/api/v1/admin/tablets/pairing-window",
    tag = "tablet admin",
    operation_id = "close_pairing_window",
    summary = "Close the pairing window",
    responses(
        (status = 204, description = "Closed: new tablets may not register"),
        (status = 503, description = "The database is not available", body = crate::api::ErrorBody),
    )
)]
async fn api_close_window(State(state): State<WebState>) -> Result<StatusCode, ApiError> {
    tablet::close_pairing_window(&state.pool).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_list_renders_in_strict_mode_with_the_window_open_or_closed() {
        for until in [None, Some("2026-01-05 10:15".to_string())] {
            let body = TabletsPage {
                error: None,
                admin: true,
                rows: vec![TabletRow {
                    id: 3,
                    name: "Line <1>".into(),
                    uuid: "u-1".into(),
                    machine: "none".into(),
                    user: "nobody".into(),
                    logged_in: false,
                    last_seen: "never".into(),
                }],
                auto_pair: false,
                open_registration: false,
                window_max_new: 20,
                window_until: until.clone(),
                window_registered: 2,
                minutes: Field::text("minutes", "Minutes", "15").kind("number"),
            };
            let html = crate::page::render_for_test("tablets", body).await;
            assert!(html.contains("Line &lt;1&gt;"));
            assert_eq!(html.contains("/admin/tablets/pairing-window/close"), until.is_some(), "{html}");
            assert!(html.contains("auto_pair = false"));
        }
    }

    #[test]
    fn window_minutes_are_1_to_1440_and_15_when_not_given() {
        assert_eq!(window_minutes("").unwrap(), DEFAULT_WINDOW_MINUTES);
        assert_eq!(window_minutes(" 30 ").unwrap(), 30);
        for bad in ["0", "1441", "-5", "soon"] {
            assert!(matches!(window_minutes(bad), Err(oee_core::Error::Field { field: "minutes", .. })), "{bad}");
        }
    }
}
