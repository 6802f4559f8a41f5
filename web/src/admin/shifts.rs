//! Shift patterns: the list, a new pattern (its name), and the week editor with a drawing of the week; the
//! same in the admin API (`/api/v1/shifts`). The store checks a week ([`Week::periods`], whose refusals
//! name the input: `mon.0.end`, `sat`) and saves it as a new version from now on, which the scheduler takes
//! up at once; reports of past days keep the version that was in force then.
//!
//! The editor is a grid of rows, one row a shift: start and end (`HH:MM`) and an "overnight" box, at least
//! three rows a day (early, late and night shift) and one empty row more when a day has that many, up to
//! [`MAX_SHIFTS_PER_DAY`], plus a "No shifts" box per day. Rows rather than one text box a day, because a
//! refusal then sits beside the very time that is wrong, nothing has to be typed in a syntax, and the
//! overnight box makes a night shift a decision: a typo such as 14:00–06:00 is refused instead of being
//! taken silently for a sixteen-hour night shift. It works without JavaScript (the page policy allows none).

use std::collections::HashMap;

use axum::Extension;
use axum::extract::{Form, Path, Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use chrono::{DateTime, Utc};
use oee_core::access::Role;
use oee_core::shift::{DAY_NAMES, MAX_SHIFTS_PER_DAY, Week, WeekShift, preview};
use oee_core::store::schedule::{self, ShiftSummary};
use serde::{Deserialize, Serialize};

use crate::WebState;
use crate::access::{Access, Caller, Route};
use crate::api::{ApiError, ApiJson};
use crate::page::{Field, FormPage, ListPage, ListRow, Page, flash, found, place_error, refused};

pub(super) fn routes() -> Vec<Route> {
    let admin = Access::Role(Role::Admin);
    vec![
        Route::get("/admin/shifts", admin, list_page),
        Route::get("/admin/shifts/new", admin, new_page),
        Route::post("/admin/shifts/new", admin, create),
        Route::get("/admin/shifts/{id}", admin, edit_page),
        Route::post("/admin/shifts/{id}", admin, save),
        Route::get("/edit-shift", admin, reference_page),
        Route::get("/api/v1/shifts", admin, api_list),
        Route::post("/api/v1/shifts", admin, api_create),
        Route::get("/api/v1/shifts/{id}", admin, api_get),
        Route::put("/api/v1/shifts/{id}", admin, api_update),
        Route::get("/api/v1/shifts/{id}/preview", admin, api_preview),
    ]
}

/// Rows the editor shows for a day at least.
const MIN_ROWS: usize = 3;

const DAY_LABELS: [&str; 7] = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"];
const DAY_SHORT: [&str; 7] = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"];

/// One shift of a day as people read it: `06:00–14:00`, `22:00–06:00 overnight`.
fn shift_text(s: &WeekShift) -> String {
    let (start, end) = (s.start.trim(), s.end.trim());
    if s.overnight { format!("{start}–{end} overnight") } else { format!("{start}–{end}") }
}

/// A day's shifts as people read them, `no shifts` for none.
fn day_text(shifts: &[WeekShift]) -> String {
    if shifts.is_empty() {
        return "no shifts".into();
    }
    shifts.iter().map(shift_text).collect::<Vec<_>>().join(", ")
}

/// The week in one line, days with the same shifts side by side gathered: `Mon–Fri 06:00–14:00,
/// 14:00–22:00; Sat, Sun no shifts`.
fn week_summary(week: &Week) -> String {
    let texts: Vec<String> = week.days.iter().map(|d| day_text(d)).collect();
    let mut parts = Vec::new();
    let mut d = 0;
    while d < 7 {
        let mut end = d;
        while end + 1 < 7 && texts[end + 1] == texts[d] {
            end += 1;
        }
        let days = match end - d {
            0 => DAY_SHORT[d].to_string(),
            1 => format!("{}, {}", DAY_SHORT[d], DAY_SHORT[end]),
            _ => format!("{}–{}", DAY_SHORT[d], DAY_SHORT[end]),
        };
        parts.push(if end - d == 6 { format!("every day {}", texts[d]) } else { format!("{days} {}", texts[d]) });
        d = end + 1;
    }
    parts.join("; ")
}

/// In-shift minutes of a week, from its drawing.
fn minutes_a_week(days: &[oee_core::shift::DayPreview]) -> u32 {
    days.iter().flat_map(|d| &d.intervals).map(|i| u32::from(i.end_minute - i.start_minute)).sum()
}

fn hours_text(minutes: u32) -> String {
    match minutes % 60 {
        0 => format!("{} h a week", minutes / 60),
        m => format!("{} h {m} min a week", minutes / 60),
    }
}

fn when(t: Option<DateTime<Utc>>, tz: chrono_tz::Tz) -> String {
    t.map_or_else(|| "since it was made".into(), |t| format!("since {}", t.with_timezone(&tz).format("%Y-%m-%d %H:%M")))
}

async fn found_shift(state: &WebState, id: i32) -> Result<ShiftSummary, oee_core::Error> {
    schedule::list_shifts(&state.pool).await?.into_iter().find(|s| s.id == id).ok_or_else(|| {
        oee_core::Error::NotFound(format!("there is no shift pattern {id}: the list is at /admin/shifts"))
    })
}

async fn list_page(State(state): State<WebState>, Extension(c): Extension<Caller>) -> Result<Response, ApiError> {
    let shifts = schedule::list_shifts(&state.pool).await?;
    let body = ListPage {
        heading: "Shift patterns".into(),
        new_link: Some(("/admin/shifts/new".into(), "New shift pattern".into())),
        columns: vec!["Id", "Name", "Machines that follow it", "Hours", "In shift"],
        rows: shifts
            .iter()
            .map(|s| ListRow {
                cells: vec![
                    s.id.to_string(),
                    s.name.clone(),
                    if s.machines.is_empty() { "none".into() } else { s.machines.join(", ") },
                    week_summary(&Week::of(&s.periods)),
                    hours_text(minutes_a_week(&preview(&s.periods))),
                ],
                link: Some(format!("/admin/shifts/{}", s.id)),
                muted: s.machines.is_empty(),
            })
            .collect(),
        empty: "No shift patterns yet: create one, then choose it on each machine's page.",
    };
    let page = Page::new(&state, Some(&c), "Shift patterns", "admin", body).await;
    Ok(state.pages.render("list", &page))
}

#[derive(Debug, Deserialize, Default)]
struct NameForm {
    #[serde(default)]
    name: String,
}

async fn new_form(state: &WebState, c: &Caller, name: &str, e: Option<&oee_core::Error>) -> Response {
    let mut fields = vec![
        Field::text("name", "Name", name)
            .required()
            .hint("What people call it, e.g. `Two shifts, weekdays`. You give it its hours on the next page."),
    ];
    let mut error = None;
    if let Some(e) = e {
        place_error(&mut fields, &mut error, e);
    }
    let body = FormPage {
        heading: "New shift pattern".into(),
        action: "/admin/shifts/new".into(),
        submit: "Create and set its hours",
        fields,
        error,
        back: "/admin/shifts".into(),
        ..FormPage::default()
    };
    let page = Page::new(state, Some(c), "New shift pattern", "admin", body).await;
    state.pages.render("form", &page)
}

async fn new_page(State(state): State<WebState>, Extension(c): Extension<Caller>) -> Response {
    new_form(&state, &c, "", None).await
}

async fn create(
    State(state): State<WebState>,
    Extension(c): Extension<Caller>,
    Form(form): Form<NameForm>,
) -> Response {
    match schedule::add_shift(&state.pool, &form.name).await {
        Ok(id) => {
            flash(
                &state,
                &c,
                &format!(
                    "Shift pattern `{}` created. Give it its shifts below: until then it has none, and machines that \
                     follow it are out of shift.",
                    form.name.trim()
                ),
            )
            .await;
            found(&format!("/admin/shifts/{id}"))
        }
        Err(e) => refused(new_form(&state, &c, &form.name, Some(&e)).await, &e),
    }
}

/// `GET /edit-shift?shift_id=N` or `?new=True`: the reference's page, sent to ours.
async fn reference_page(Query(q): Query<HashMap<String, String>>) -> Response {
    if let Some(id) = q.get("shift_id").and_then(|s| s.trim().parse::<i32>().ok()) {
        return found(&format!("/admin/shifts/{id}"));
    }
    if q.contains_key("new") {
        return found("/admin/shifts/new");
    }
    found("/admin/shifts")
}

/// One shift row as the form posts it (and shows it again).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct RowInput {
    start: String,
    end: String,
    overnight: bool,
}

impl RowInput {
    fn blank(&self) -> bool {
        self.start.trim().is_empty() && self.end.trim().is_empty()
    }
}

/// The editor's form as posted: the name, each day's rows by position and its "No shifts" box.
#[derive(Debug, Default)]
struct WeekForm {
    name: String,
    days: [Vec<RowInput>; 7],
    off: [bool; 7],
}

impl WeekForm {
    /// Reads the posted fields `name`, `<day>.off` and `<day>.<n>.start|end|overnight`; others are ignored.
    fn parse(fields: &[(String, String)]) -> WeekForm {
        let mut form = WeekForm::default();
        for d in &mut form.days {
            d.resize(MAX_SHIFTS_PER_DAY, RowInput::default());
        }
        for (key, value) in fields {
            if key == "name" {
                form.name = value.clone();
                continue;
            }
            let mut parts = key.split('.');
            let Some(d) = parts.next().and_then(|day| DAY_NAMES.iter().position(|n| *n == day)) else { continue };
            match (parts.next(), parts.next(), parts.next()) {
                (Some("off"), None, None) => form.off[d] = true,
                (Some(n), Some(what), None) => {
                    let Some(row) = n.parse::<usize>().ok().and_then(|n| form.days[d].get_mut(n)) else { continue };
                    match what {
                        "start" => row.start = value.clone(),
                        "end" => row.end = value.clone(),
                        "overnight" => row.overnight = true,
                        _ => {}
                    }
                }
                _ => {}
            }
        }
        form
    }

    /// The week the form gives (blank rows and the rows of "No shifts" days left out), and for each day the
    /// form row of each of its shifts, to put a refusal beside the row it came from.
    fn week(&self) -> (Week, [Vec<usize>; 7]) {
        let mut week = Week::default();
        let mut rows: [Vec<usize>; 7] = Default::default();
        let days = week.days.iter_mut().zip(&mut rows).zip(self.days.iter().zip(self.off));
        for ((shifts, from), (inputs, off)) in days {
            if off {
                continue;
            }
            for (i, r) in inputs.iter().enumerate().filter(|(_, r)| !r.blank()) {
                shifts.push(WeekShift {
                    start: r.start.trim().into(),
                    end: r.end.trim().into(),
                    overnight: r.overnight,
                });
                from.push(i);
            }
        }
        (week, rows)
    }
}

/// The editor's page.
#[derive(Debug, Serialize)]
struct Editor {
    heading: String,
    action: String,
    name: Field,
    error: Option<String>,
    facts: Vec<(String, String)>,
    days: Vec<DayEditor>,
    preview: Vec<PreviewRow>,
    hours: String,
    timezone: String,
}

#[derive(Debug, Serialize)]
struct DayEditor {
    label: &'static str,
    off_name: String,
    off: bool,
    error: Option<String>,
    rows: Vec<RowEditor>,
}

#[derive(Debug, Serialize)]
struct RowEditor {
    number: usize,
    start_name: String,
    end_name: String,
    overnight_name: String,
    start: String,
    end: String,
    overnight: bool,
    start_error: Option<String>,
    end_error: Option<String>,
}

/// One day of the drawing: bars in minutes of the day (an SVG 1440 wide) and the same as text.
#[derive(Debug, Serialize)]
struct PreviewRow {
    label: &'static str,
    text: String,
    bars: Vec<Bar>,
}

#[derive(Debug, Serialize)]
struct Bar {
    x: u16,
    width: u16,
    title: String,
}

/// The rows a day shows: its entries (trailing blanks dropped), then blank rows up to [`MIN_ROWS`] or one
/// more than it has, at most [`MAX_SHIFTS_PER_DAY`].
fn day_editor(d: usize, mut entries: Vec<RowInput>, off: bool) -> DayEditor {
    while entries.last().is_some_and(RowInput::blank) {
        entries.pop();
    }
    let shown = (entries.len() + 1).clamp(MIN_ROWS, MAX_SHIFTS_PER_DAY).max(entries.len());
    entries.resize(shown, RowInput::default());
    let day = DAY_NAMES[d];
    DayEditor {
        label: DAY_LABELS[d],
        off_name: format!("{day}.off"),
        off,
        error: None,
        rows: entries
            .into_iter()
            .enumerate()
            .map(|(i, r)| RowEditor {
                number: i + 1,
                start_name: format!("{day}.{i}.start"),
                end_name: format!("{day}.{i}.end"),
                overnight_name: format!("{day}.{i}.overnight"),
                start: r.start,
                end: r.end,
                overnight: r.overnight,
                start_error: None,
                end_error: None,
            })
            .collect(),
    }
}

fn preview_rows(periods: &[oee_core::shift::Period]) -> (Vec<PreviewRow>, String) {
    let days = preview(periods);
    let rows = days
        .iter()
        .map(|d| {
            let label = DAY_LABELS[d.day as usize];
            let next = DAY_LABELS[(d.day as usize + 1) % 7];
            let before = DAY_LABELS[(d.day as usize + 6) % 7];
            let texts: Vec<String> = d
                .intervals
                .iter()
                .map(|i| match (i.from_previous_day, i.into_next_day) {
                    (true, _) => format!("{}–{} (from {before})", i.start, i.end),
                    (false, true) => format!("{}–{} (on into {next})", i.start, i.end),
                    (false, false) => format!("{}–{}", i.start, i.end),
                })
                .collect();
            PreviewRow {
                label,
                text: if texts.is_empty() { "out of shift all day".into() } else { texts.join(", ") },
                bars: d
                    .intervals
                    .iter()
                    .zip(&texts)
                    .map(|(i, t)| Bar { x: i.start_minute, width: i.end_minute - i.start_minute, title: t.clone() })
                    .collect(),
            }
        })
        .collect();
    (rows, hours_text(minutes_a_week(&days)))
}

/// Puts a refusal of the week beside its input (`mon.0.end`: the end of the form row that Monday's first
/// shift came from; `sat`: Saturday as a whole), of the name beside the name, and anything else on top.
fn place_week_error(editor: &mut Editor, rows: &[Vec<usize>; 7], e: &oee_core::Error) {
    let oee_core::Error::Field { field, message } = e else {
        editor.error = Some(e.to_string());
        return;
    };
    if *field == "name" {
        editor.name.error = Some(message.clone());
        return;
    }
    let mut parts = field.split('.');
    let day = parts.next().and_then(|day| DAY_NAMES.iter().position(|n| *n == day));
    let (Some(d), Some(day)) = (day, day.and_then(|d| editor.days.get_mut(d))) else {
        editor.error = Some(message.clone());
        return;
    };
    match (parts.next().and_then(|n| n.parse::<usize>().ok()), parts.next()) {
        (Some(n), Some(what)) => {
            let row = rows[d].get(n).copied().unwrap_or(n);
            match day.rows.get_mut(row) {
                Some(r) if what == "start" => r.start_error = Some(message.clone()),
                Some(r) => r.end_error = Some(message.clone()),
                None => day.error = Some(message.clone()),
            }
        }
        _ => day.error = Some(message.clone()),
    }
}

fn editor(state: &WebState, s: &ShiftSummary, name: &str, days: Vec<DayEditor>) -> Editor {
    let (preview, hours) = preview_rows(&s.periods);
    Editor {
        heading: format!("Shift pattern {} `{}`", s.id, s.name),
        action: format!("/admin/shifts/{}", s.id),
        name: Field::text("name", "Name", name).required(),
        error: None,
        facts: vec![
            (
                "Machines that follow it".into(),
                if s.machines.is_empty() {
                    "none (a machine's page chooses its pattern)".into()
                } else {
                    s.machines.join(", ")
                },
            ),
            ("These hours".into(), when(s.since, state.tz)),
        ],
        days,
        preview,
        hours,
        timezone: state.tz.name().to_string(),
    }
}

async fn render_editor(state: &WebState, c: &Caller, s: &ShiftSummary, body: Editor) -> Response {
    let page = Page::new(state, Some(c), format!("Shift pattern {}", s.name), "admin", body).await;
    state.pages.render("shift_week", &page)
}

async fn edit_page(
    State(state): State<WebState>,
    Extension(c): Extension<Caller>,
    Path(id): Path<i32>,
) -> Result<Response, ApiError> {
    let s = found_shift(&state, id).await?;
    let week = Week::of(&s.periods);
    let days = (0..7)
        .map(|d| {
            let rows = week.days[d]
                .iter()
                .map(|w| RowInput { start: w.start.clone(), end: w.end.clone(), overnight: w.overnight })
                .collect();
            day_editor(d, rows, false)
        })
        .collect();
    let body = editor(&state, &s, &s.name, days);
    Ok(render_editor(&state, &c, &s, body).await)
}

/// Checks the week, renames the pattern when its name changed, and saves the week from now on.
async fn save_pattern(
    state: &WebState,
    id: i32,
    name: Option<&str>,
    week: Option<&Week>,
) -> Result<(), oee_core::Error> {
    if let Some(w) = week {
        w.periods()?;
    }
    if let Some(name) = name {
        schedule::rename_shift(&state.pool, id, name).await?;
    }
    if let Some(w) = week {
        schedule::set_shift_week(&state.pool, id, w, Utc::now()).await?;
    }
    Ok(())
}

async fn save(
    State(state): State<WebState>,
    Extension(c): Extension<Caller>,
    Path(id): Path<i32>,
    Form(fields): Form<Vec<(String, String)>>,
) -> Result<Response, ApiError> {
    let s = found_shift(&state, id).await?;
    let form = WeekForm::parse(&fields);
    let (week, rows) = form.week();
    let rename = (form.name.trim() != s.name).then_some(form.name.as_str());
    match save_pattern(&state, id, rename, Some(&week)).await {
        Ok(()) => {
            flash(
                &state,
                &c,
                &format!(
                    "Shift pattern `{}` saved: {}. It applies from now on; reports of past days keep the hours \
                     in force then.",
                    form.name.trim(),
                    week_summary(&week)
                ),
            )
            .await;
            Ok(found(&format!("/admin/shifts/{id}")))
        }
        Err(e) => {
            let days = (0..7).map(|d| day_editor(d, form.days[d].clone(), form.off[d])).collect();
            let mut body = editor(&state, &s, &form.name, days);
            place_week_error(&mut body, &rows, &e);
            Ok(refused(render_editor(&state, &c, &s, body).await, &e))
        }
    }
}

/// A pattern as the API gives it.
#[derive(Debug, Serialize, utoipa::ToSchema)]
struct ShiftJson {
    id: i32,
    name: String,
    /// Names of the machines that follow it.
    machines: Vec<String>,
    /// When its current hours took effect (`null`: since it was made).
    since: Option<DateTime<Utc>>,
    week: Week,
    /// The week in words, as the list page shows it.
    summary: String,
    /// Minutes in shift in a week.
    minutes_a_week: u32,
}

impl From<ShiftSummary> for ShiftJson {
    fn from(s: ShiftSummary) -> ShiftJson {
        let week = Week::of(&s.periods);
        ShiftJson {
            id: s.id,
            name: s.name,
            machines: s.machines,
            since: s.since,
            summary: week_summary(&week),
            minutes_a_week: minutes_a_week(&preview(&s.periods)),
            week,
        }
    }
}

#[utoipa::path(
    get,
    path = "/api/v1/shifts",
    tag = "shifts",
    operation_id = "list_shifts",
    summary = "Every shift pattern",
    description = "Each pattern with the week now in force and the machines that follow it.",
    responses(
        (status = 200, description = "The patterns, by id", body = Vec<ShiftJson>),
        (status = 503, description = "The database is not available", body = crate::api::ErrorBody),
    )
)]
async fn api_list(State(state): State<WebState>) -> Result<axum::Json<Vec<ShiftJson>>, ApiError> {
    Ok(axum::Json(schedule::list_shifts(&state.pool).await?.into_iter().map(ShiftJson::from).collect()))
}

#[utoipa::path(
    get,
    path = "/api/v1/shifts/{id}",
    tag = "shifts",
    operation_id = "get_shift",
    summary = "One shift pattern",
    params(("id" = i32, Path, description = "The pattern's id")),
    responses(
        (status = 200, description = "The pattern", body = ShiftJson),
        (status = 404, description = "No such pattern", body = crate::api::ErrorBody),
        (status = 503, description = "The database is not available", body = crate::api::ErrorBody),
    )
)]
async fn api_get(State(state): State<WebState>, Path(id): Path<i32>) -> Result<axum::Json<ShiftJson>, ApiError> {
    Ok(axum::Json(found_shift(&state, id).await?.into()))
}

/// The body of `POST /api/v1/shifts` and `PUT /api/v1/shifts/{id}`: a name and/or a week.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct ShiftBody {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    week: Option<Week>,
}

#[utoipa::path(
    post,
    path = "/api/v1/shifts",
    tag = "shifts",
    operation_id = "create_shift",
    summary = "Add a shift pattern",
    description = "A `name`, and its `week` (without one the pattern has no shifts: a machine that follows it stays \
                   out of shift). A refused week names the input: `mon.0.end` is the end of Monday's first shift, \
                   `sat` Saturday as a whole.",
    request_body = ShiftBody,
    responses(
        (status = 201, description = "Added", body = ShiftJson),
        (status = 400, description = "The name or the week is refused: `field` names the input", body = crate::api::ErrorBody),
        (status = 409, description = "The name is taken", body = crate::api::ErrorBody),
        (status = 503, description = "The database is not available", body = crate::api::ErrorBody),
    )
)]
async fn api_create(
    State(state): State<WebState>,
    ApiJson(body): ApiJson<ShiftBody>,
) -> Result<(StatusCode, axum::Json<ShiftJson>), ApiError> {
    let name = body.name.unwrap_or_default();
    // Checked before anything is made, so a refused week leaves no empty pattern behind.
    if let Some(w) = &body.week {
        w.periods()?;
    }
    let id = schedule::add_shift(&state.pool, &name).await?;
    save_pattern(&state, id, None, body.week.as_ref()).await?;
    Ok((StatusCode::CREATED, axum::Json(found_shift(&state, id).await?.into())))
}

#[utoipa::path(
    put,
    path = "/api/v1/shifts/{id}",
    tag = "shifts",
    operation_id = "update_shift",
    summary = "Rename a shift pattern or change its week",
    description = "A new week applies from now on (the scheduler takes it up at once); reports of past days keep \
                   the week that was in force then.",
    params(("id" = i32, Path, description = "The pattern's id")),
    request_body = ShiftBody,
    responses(
        (status = 200, description = "Saved", body = ShiftJson),
        (status = 400, description = "Neither `name` nor `week`, or either is refused: `field` names the input", body = crate::api::ErrorBody),
        (status = 404, description = "No such pattern", body = crate::api::ErrorBody),
        (status = 409, description = "The name is taken", body = crate::api::ErrorBody),
        (status = 503, description = "The database is not available", body = crate::api::ErrorBody),
    )
)]
async fn api_update(
    State(state): State<WebState>,
    Path(id): Path<i32>,
    ApiJson(body): ApiJson<ShiftBody>,
) -> Result<axum::Json<ShiftJson>, ApiError> {
    let s = found_shift(&state, id).await?;
    if body.name.is_none() && body.week.is_none() {
        return Err(oee_core::Error::Invalid(
            "give the pattern's new `name`, its `week` ({\"days\": [[{\"start\": \"06:00\", \"end\": \"14:00\"}], …]}), \
             or both"
                .into(),
        )
        .into());
    }
    let rename = body.name.as_deref().filter(|n| n.trim() != s.name);
    save_pattern(&state, id, rename, body.week.as_ref()).await?;
    Ok(axum::Json(found_shift(&state, id).await?.into()))
}

/// The body of `GET /api/v1/shifts/{id}/preview`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
struct PreviewJson {
    id: i32,
    name: String,
    /// Monday first.
    days: Vec<oee_core::shift::DayPreview>,
    /// Minutes in shift in a week.
    minutes_a_week: u32,
}

#[utoipa::path(
    get,
    path = "/api/v1/shifts/{id}/preview",
    tag = "shifts",
    operation_id = "preview_shift",
    summary = "A shift pattern's week as intervals in shift",
    description = "For each day, the local intervals the pattern is in shift; an overnight shift is split at midnight.",
    params(("id" = i32, Path, description = "The pattern's id")),
    responses(
        (status = 200, description = "The week", body = PreviewJson),
        (status = 404, description = "No such pattern", body = crate::api::ErrorBody),
        (status = 503, description = "The database is not available", body = crate::api::ErrorBody),
    )
)]
async fn api_preview(State(state): State<WebState>, Path(id): Path<i32>) -> Result<axum::Json<PreviewJson>, ApiError> {
    let s = found_shift(&state, id).await?;
    let days = preview(&s.periods);
    Ok(axum::Json(PreviewJson { id: s.id, name: s.name, minutes_a_week: minutes_a_week(&days), days }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(items: &[(&str, &str)]) -> Vec<(String, String)> {
        items.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn the_form_gives_the_week_without_blank_rows_and_knows_each_shifts_row() {
        let form = WeekForm::parse(&pairs(&[
            ("name", "Two shifts"),
            ("mon.0.start", ""),
            ("mon.0.end", ""),
            ("mon.1.start", "06:00"),
            ("mon.1.end", "14:00"),
            ("mon.2.start", "22:00"),
            ("mon.2.end", "06:00"),
            ("mon.2.overnight", "on"),
            ("tue.0.start", "06:00"),
            ("tue.0.end", "14:00"),
            ("tue.off", "on"),
            ("wed.9.start", "01:00"),
            ("csrf_token", "x"),
        ]));
        let (week, rows) = form.week();
        assert_eq!(form.name, "Two shifts");
        assert_eq!(week.days[0], vec![WeekShift::new("06:00", "14:00", false), WeekShift::new("22:00", "06:00", true)]);
        assert_eq!(rows[0], vec![1, 2]);
        assert!(week.days[1].is_empty(), "No shifts wins over the rows of that day");
        assert!(week.days[2].is_empty(), "a row beyond the last is ignored");
        assert_eq!(week_summary(&week), "Mon 06:00–14:00, 22:00–06:00 overnight; Tue–Sun no shifts");
    }

    #[test]
    fn a_refusal_goes_beside_the_row_it_came_from() {
        let form = WeekForm::parse(&pairs(&[("mon.1.start", "14:00"), ("mon.1.end", "06:00")]));
        let (week, rows) = form.week();
        let e = week.periods().unwrap_err();
        let days = (0..7).map(|d| day_editor(d, form.days[d].clone(), form.off[d])).collect();
        let s = ShiftSummary { id: 1, name: "x".into(), periods: vec![], since: None, machines: vec![] };
        let state_tz = chrono_tz::Tz::UTC;
        let mut body = Editor {
            heading: s.name.clone(),
            action: String::new(),
            name: Field::text("name", "Name", "x"),
            error: None,
            facts: vec![],
            days,
            preview: vec![],
            hours: String::new(),
            timezone: state_tz.name().into(),
        };
        place_week_error(&mut body, &rows, &e);
        assert!(body.days[0].rows[1].end_error.as_deref().is_some_and(|m| m.contains("overnight")), "{e}");
        assert!(body.days[0].rows[0].end_error.is_none());
        assert_eq!(body.days[0].rows.len(), 3, "three rows at least, the blank first one kept");
    }

    #[test]
    fn a_day_shows_one_empty_row_more_than_it_has_up_to_the_most() {
        let row = RowInput { start: "01:00".into(), end: "02:00".into(), overnight: false };
        assert_eq!(day_editor(0, vec![], false).rows.len(), 3);
        assert_eq!(day_editor(0, vec![row.clone(); 3], false).rows.len(), 4);
        assert_eq!(day_editor(0, vec![row; 6], false).rows.len(), 6);
    }

    #[test]
    fn the_summary_gathers_days_alike() {
        let mut week = Week::default();
        for d in 0..5 {
            week.days[d] = vec![WeekShift::new("06:00", "14:00", false)];
        }
        assert_eq!(week_summary(&week), "Mon–Fri 06:00–14:00; Sat, Sun no shifts");
        assert_eq!(week_summary(&Week::default()), "every day no shifts");
        let periods = week.periods().unwrap();
        assert_eq!(hours_text(minutes_a_week(&preview(&periods))), "40 h a week");
    }

    #[tokio::test]
    async fn the_editor_renders_in_strict_mode_with_its_refusals_and_drawing() {
        let mut week = Week::default();
        week.days[0] = vec![WeekShift::new("06:00", "14:00", false), WeekShift::new("22:00", "06:00", true)];
        let s = ShiftSummary {
            id: 4,
            name: "Two <shifts>".into(),
            periods: week.periods().unwrap(),
            since: None,
            machines: vec!["Press 1".into()],
        };
        let form = WeekForm::parse(&pairs(&[("tue.0.start", "14:00"), ("tue.0.end", "06:00")]));
        let (bad, rows) = form.week();
        let days = (0..7).map(|d| day_editor(d, form.days[d].clone(), form.off[d])).collect();
        let (preview, hours) = preview_rows(&s.periods);
        let mut body = Editor {
            heading: format!("Shift pattern {} `{}`", s.id, s.name),
            action: "/admin/shifts/4".into(),
            name: Field::text("name", "Name", s.name.clone()).required(),
            error: None,
            facts: vec![("Machines that follow it".into(), "Press 1".into())],
            days,
            preview,
            hours,
            timezone: "UTC".into(),
        };
        place_week_error(&mut body, &rows, &bad.periods().unwrap_err());
        let html = crate::page::render_for_test("shift_week", body).await;
        assert!(html.contains("Two &lt;shifts&gt;"), "escaped");
        assert!(html.contains(r#"name="tue.0.end" value="06:00""#), "the posted value is shown again");
        assert!(html.contains("mark the shift overnight"), "the refusal is on the page");
        assert!(html.contains(r#"<rect x="1320" y="0" width="120""#), "Monday's night shift is drawn to midnight");
        assert!(html.contains("00:00–06:00 (from Monday)"), "and on into Tuesday");
        assert!(html.contains("In shift 16 h a week"), "{html}");
        assert!(!html.contains("<script"), "no script");
    }
}
