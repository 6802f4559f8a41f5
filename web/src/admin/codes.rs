//! Activity (reason) codes: list, create, edit, deactivate (the "Active" box: codes are never deleted)
//! (reference §5.3 `/edit-activity-code`); the reference's URL as a redirect; the same in the admin API.
//! Codes 1–4 are the ones the shift schedule and jobs move machines into: their machine state is shown but
//! not offered for change, and the store refuses a change of it or their deactivation.

use axum::Extension;
use axum::extract::{Form, Path, Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use oee_core::access::Role;
use oee_core::activity::MachineState;
use oee_core::oee::LossCategory;
use oee_core::store::code::{self, ActivityCode, CodeInput, is_default_code, state_name};
use serde::{Deserialize, Serialize};

use crate::WebState;
use crate::access::{Access, Caller, Route};
use crate::api::{ApiError, ApiJson};
use crate::page::{Field, FormPage, ListPage, ListRow, Page, flash, place_error, refused};

pub(super) fn routes() -> Vec<Route> {
    let admin = Access::Role(Role::Admin);
    let viewer = Access::Role(Role::Viewer);
    vec![
        Route::get("/admin/codes", admin, list_page),
        Route::get("/admin/codes/new", admin, new_page),
        Route::post("/admin/codes/new", admin, create),
        Route::get("/admin/codes/{id}", admin, edit_page),
        Route::post("/admin/codes/{id}", admin, update),
        Route::get("/edit-activity-code", admin, reference_page),
        Route::get("/api/v1/codes", viewer, api_list),
        Route::post("/api/v1/codes", admin, api_create),
        Route::get("/api/v1/codes/{id}", viewer, api_get),
        Route::put("/api/v1/codes/{id}", admin, api_update),
    ]
}

/// The machine state a new code gets unless another is chosen (the reference's default).
const NEW_CODE_STATE: MachineState = MachineState::UnplannedDowntime;

/// A machine state as people read it: "Uptime", "Unplanned downtime", …
pub(super) fn state_label(state: i16) -> String {
    match MachineState::try_from(state) {
        Ok(s) => {
            let name = state_name(s);
            let mut chars = name.chars();
            chars.next().map(|first| first.to_uppercase().chain(chars).collect()).unwrap_or_default()
        }
        Err(_) => format!("state {state}"),
    }
}

fn category_label(c: LossCategory) -> &'static str {
    match c {
        LossCategory::Running => "Running (run time)",
        LossCategory::Breakdown => "Breakdown (availability loss)",
        LossCategory::Setup => "Setup or changeover (availability loss)",
        LossCategory::PlannedStop => "Planned stop inside planned time (availability loss)",
        LossCategory::MinorStop => "Minor stop or idling (performance loss)",
        LossCategory::ReducedSpeed => "Reduced speed (performance loss)",
        LossCategory::NotScheduled => "Not scheduled (outside planned time: left out of OEE, counted in TEEP)",
    }
}

const STATES: [MachineState; 4] =
    [MachineState::Uptime, MachineState::UnplannedDowntime, MachineState::PlannedDowntime, MachineState::Overtime];

/// Which categories suit which state, for the form's hint.
fn category_hint() -> String {
    let per_state: Vec<String> = STATES
        .iter()
        .map(|&s| {
            let fits: Vec<&str> = LossCategory::ALL.iter().filter(|c| c.suits(s)).map(|c| c.as_str()).collect();
            format!("{}: {}", state_label(i16::from(s)), fits.join(", "))
        })
        .collect();
    format!("How the code's time counts in OEE; it must suit the machine state. {}.", per_state.join("; "))
}

async fn list_page(State(state): State<WebState>, Extension(c): Extension<Caller>) -> Result<Response, ApiError> {
    let codes = code::list_codes(&state.pool).await?;
    let body = ListPage {
        heading: "Activity codes".into(),
        new_link: Some(("/admin/codes/new".into(), "New code".into())),
        columns: vec![
            "Id",
            "Short description",
            "Long description",
            "Machine state",
            "Loss category",
            "Colour",
            "Active",
        ],
        rows: codes
            .iter()
            .map(|code| ListRow {
                cells: vec![
                    code.id.to_string(),
                    code.short_description.clone(),
                    code.long_description.clone(),
                    state_label(code.machine_state),
                    code.loss_category.as_str().into(),
                    code.graph_colour.clone(),
                    if code.active { "yes".into() } else { "no".into() },
                ],
                link: Some(format!("/admin/codes/{}", code.id)),
                muted: !code.active,
            })
            .collect(),
        empty: "No activity codes: the database seeds codes 1 to 4 when it is created.",
    };
    let page = Page::new(&state, Some(&c), "Activity codes", "admin", body).await;
    Ok(state.pages.render("list", &page))
}

/// The code form as posted. The machine state is not posted for codes 1–4 (it is shown, not offered).
#[derive(Debug, Deserialize, Default)]
struct CodeForm {
    #[serde(default)]
    short_description: String,
    #[serde(default)]
    long_description: String,
    #[serde(default)]
    machine_state: Option<String>,
    #[serde(default)]
    loss_category: String,
    #[serde(default)]
    graph_colour: String,
    #[serde(default)]
    active: Option<String>,
}

impl CodeForm {
    fn of(c: &ActivityCode) -> CodeForm {
        CodeForm {
            short_description: c.short_description.clone(),
            long_description: c.long_description.clone(),
            machine_state: Some(c.machine_state.to_string()),
            loss_category: c.loss_category.as_str().into(),
            graph_colour: c.graph_colour.clone(),
            active: c.active.then(|| "on".into()),
        }
    }

    /// What the form asks for; `old` is the code edited (`None`: a new one), whose state is kept when the
    /// form sends none.
    fn input(&self, old: Option<&ActivityCode>) -> Result<CodeInput, oee_core::Error> {
        let machine_state = match (self.machine_state.as_deref().map(str::trim), old) {
            (Some(s), _) if !s.is_empty() => s.parse().map_err(|_| {
                oee_core::Error::field("machine_state", format!("`{s}` is not a machine state: choose one of 1 to 4"))
            })?,
            (_, Some(old)) => old.machine_state,
            (_, None) => return Err(oee_core::Error::field("machine_state", "choose the code's machine state")),
        };
        Ok(CodeInput {
            short_description: self.short_description.clone(),
            long_description: self.long_description.clone(),
            machine_state,
            loss_category: self.loss_category.clone(),
            graph_colour: self.graph_colour.clone(),
            active: self.active.is_some(),
        })
    }
}

/// The form's fields; `id` is the code edited (`None`: a new one).
fn fields(form: &CodeForm, id: Option<i32>) -> Vec<Field> {
    let state = form.machine_state.clone().unwrap_or_default();
    let state_field = if id.is_some_and(is_default_code) {
        let shown = state.parse().map(state_label).unwrap_or_else(|_| state.clone());
        Field::readonly("machine_state", "Machine state", format!("{state} {shown}")).hint(
            "Codes 1 to 4 are the ones the shift schedule and jobs move machines into: their machine state \
             stays as it is, and they stay active.",
        )
    } else {
        Field::select(
            "machine_state",
            "Machine state",
            STATES
                .iter()
                .map(|&s| (i16::from(s).to_string(), format!("{} {}", i16::from(s), state_label(i16::from(s)))))
                .collect(),
            &state,
        )
    };
    let mut categories = vec![(String::new(), "The usual one for the machine state".to_string())];
    categories.extend(LossCategory::ALL.iter().map(|c| (c.as_str().to_string(), category_label(*c).to_string())));
    vec![
        Field::text(
            "short_description",
            "Short description (shown on tablets and graphs)",
            form.short_description.clone(),
        )
        .required(),
        Field::text("long_description", "Long description", form.long_description.clone()).kind("textarea"),
        state_field,
        Field::select("loss_category", "Loss category", categories, &form.loss_category).hint(category_hint()),
        Field::text("graph_colour", "Colour on graphs and tablets", form.graph_colour.clone()).kind("color"),
        Field::checkbox(
            "active",
            "Active (an inactive code is offered nowhere; its history stays)",
            form.active.is_some(),
        ),
    ]
}

async fn form_page(
    state: &WebState,
    c: &Caller,
    id: Option<i32>,
    fields: Vec<Field>,
    error: Option<String>,
) -> Response {
    let (heading, action, submit) = match id {
        None => ("New activity code".to_string(), "/admin/codes/new".to_string(), "Create code"),
        Some(id) => (format!("Activity code {id}"), format!("/admin/codes/{id}"), "Save"),
    };
    let facts = match id {
        Some(id) if is_default_code(id) => vec![(
            "Note".into(),
            "This is one of the four codes machines are moved into (Up, Down, Closed, Overtime): its descriptions, \
             category and colour may change, its machine state may not."
                .into(),
        )],
        Some(id) => vec![("Code id".into(), id.to_string())],
        None => vec![("Code id".into(), "the highest so far plus one".into())],
    };
    let body = FormPage {
        heading: heading.clone(),
        action,
        submit,
        fields,
        error,
        back: "/admin/codes".into(),
        facts,
        more: vec![],
    };
    let page = Page::new(state, Some(c), heading, "admin", body).await;
    state.pages.render("form", &page)
}

async fn new_page(State(state): State<WebState>, Extension(c): Extension<Caller>) -> Response {
    let form = CodeForm {
        machine_state: Some(i16::from(NEW_CODE_STATE).to_string()),
        graph_colour: "#c0c0c0".into(),
        active: Some("on".into()),
        ..CodeForm::default()
    };
    form_page(&state, &c, None, fields(&form, None), None).await
}

async fn create(
    State(state): State<WebState>,
    Extension(c): Extension<Caller>,
    Form(form): Form<CodeForm>,
) -> Response {
    let outcome = async { code::create_code(&state.pool, &form.input(None)?).await }.await;
    match outcome {
        Ok(created) => {
            flash(&state, &c, &format!("Activity code {} `{}` created", created.id, created.short_description)).await;
            crate::page::found("/admin/codes")
        }
        Err(e) => {
            let (mut f, mut error) = (fields(&form, None), None);
            place_error(&mut f, &mut error, &e);
            refused(form_page(&state, &c, None, f, error).await, &e)
        }
    }
}

async fn edit_page(
    State(state): State<WebState>,
    Extension(c): Extension<Caller>,
    Path(id): Path<i32>,
) -> Result<Response, ApiError> {
    let old = code::code(&state.pool, id).await?;
    Ok(form_page(&state, &c, Some(id), fields(&CodeForm::of(&old), Some(id)), None).await)
}

async fn update(
    State(state): State<WebState>,
    Extension(c): Extension<Caller>,
    Path(id): Path<i32>,
    Form(form): Form<CodeForm>,
) -> Result<Response, ApiError> {
    let old = code::code(&state.pool, id).await?;
    let outcome = async { code::update_code(&state.pool, id, &form.input(Some(&old))?).await }.await;
    Ok(match outcome {
        Ok(saved) => {
            let note = if saved.active { "" } else { " (inactive)" };
            flash(&state, &c, &format!("Activity code {id} `{}` saved{note}", saved.short_description)).await;
            crate::page::found("/admin/codes")
        }
        Err(e) => {
            // Codes 1–4 show their stored state, whatever was sent for it.
            let mut shown = form;
            if is_default_code(id) {
                shown.machine_state = Some(old.machine_state.to_string());
            }
            let (mut f, mut error) = (fields(&shown, Some(id)), None);
            place_error(&mut f, &mut error, &e);
            refused(form_page(&state, &c, Some(id), f, error).await, &e)
        }
    })
}

/// The reference's `/edit-activity-code` query.
#[derive(Debug, Deserialize)]
struct ReferenceQuery {
    ac_id: Option<String>,
    new: Option<String>,
}

/// `GET /edit-activity-code?ac_id=N` (no `ac_id`: a new code): the reference's address of these pages.
async fn reference_page(
    State(state): State<WebState>,
    Extension(c): Extension<Caller>,
    Query(q): Query<ReferenceQuery>,
) -> Response {
    super::reference_redirect(
        &state,
        &c,
        super::ReferenceLink {
            list: "/admin/codes",
            param: "ac_id",
            id: q.ac_id.as_deref(),
            new: q.new.as_deref(),
            missing: None,
            parse_suffix: " from URL",
        },
    )
    .await
}

/// An activity code as the admin API shows it.
#[derive(Debug, Serialize, utoipa::ToSchema)]
struct CodeView {
    id: i32,
    short_description: String,
    long_description: String,
    /// 1 uptime, 2 unplanned downtime, 3 planned downtime, 4 overtime.
    machine_state: i16,
    /// How its time counts in OEE: running, breakdown, setup, planned_stop, minor_stop, reduced_speed,
    /// not_scheduled.
    loss_category: &'static str,
    /// `#RRGGBB`.
    graph_colour: String,
    active: bool,
}

impl From<ActivityCode> for CodeView {
    fn from(c: ActivityCode) -> CodeView {
        CodeView {
            id: c.id,
            short_description: c.short_description,
            long_description: c.long_description,
            machine_state: c.machine_state,
            loss_category: c.loss_category.as_str(),
            graph_colour: c.graph_colour,
            active: c.active,
        }
    }
}

/// The body of `POST /api/v1/codes` and `PUT /api/v1/codes/{id}`: the keys of [`CodeView`] but `id`. A key
/// left out keeps its value; a new code needs `short_description` and `graph_colour`, and is in state 2
/// and active unless told otherwise. A `loss_category` left out (or empty) is the usual one for the state.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct CodeChanges {
    short_description: Option<String>,
    long_description: Option<String>,
    machine_state: Option<i16>,
    loss_category: Option<String>,
    graph_colour: Option<String>,
    active: Option<bool>,
}

#[utoipa::path(
    get,
    path = "/api/v1/codes",
    tag = "codes",
    operation_id = "list_codes",
    summary = "Every activity code",
    description = "Codes 1 to 4 (Up, Down, Closed, Overtime) always exist; the rest are the plant's own.",
    responses(
        (status = 200, description = "The codes, by id", body = Vec<CodeView>),
        (status = 503, description = "The database is not available", body = crate::api::ErrorBody),
    )
)]
async fn api_list(State(state): State<WebState>) -> Result<axum::Json<Vec<CodeView>>, ApiError> {
    Ok(axum::Json(code::list_codes(&state.pool).await?.into_iter().map(CodeView::from).collect()))
}

#[utoipa::path(
    get,
    path = "/api/v1/codes/{id}",
    tag = "codes",
    operation_id = "get_code",
    summary = "One activity code",
    params(("id" = i32, Path, description = "The code's id")),
    responses(
        (status = 200, description = "The code", body = CodeView),
        (status = 404, description = "No such code", body = crate::api::ErrorBody),
        (status = 503, description = "The database is not available", body = crate::api::ErrorBody),
    )
)]
async fn api_get(State(state): State<WebState>, Path(id): Path<i32>) -> Result<axum::Json<CodeView>, ApiError> {
    Ok(axum::Json(code::code(&state.pool, id).await?.into()))
}

#[utoipa::path(
    post,
    path = "/api/v1/codes",
    tag = "codes",
    operation_id = "create_code",
    summary = "Add an activity code",
    description = "`short_description` and `graph_colour` are needed; the code is in machine state 2 (unplanned \
                   downtime) and active unless told otherwise, and its loss category is the state's usual one when \
                   none is given.",
    request_body = CodeChanges,
    responses(
        (status = 201, description = "Added", body = CodeView),
        (status = 400, description = "An input is refused: `field` names it", body = crate::api::ErrorBody),
        (status = 409, description = "The short description is taken", body = crate::api::ErrorBody),
        (status = 503, description = "The database is not available", body = crate::api::ErrorBody),
    )
)]
async fn api_create(
    State(state): State<WebState>,
    ApiJson(body): ApiJson<CodeChanges>,
) -> Result<(StatusCode, axum::Json<CodeView>), ApiError> {
    let Some(graph_colour) = body.graph_colour else {
        return Err(oee_core::Error::field("graph_colour", "give the code's colour as #RRGGBB, e.g. #FF8000").into());
    };
    let input = CodeInput {
        short_description: body.short_description.unwrap_or_default(),
        long_description: body.long_description.unwrap_or_default(),
        machine_state: body.machine_state.unwrap_or(i16::from(NEW_CODE_STATE)),
        loss_category: body.loss_category.unwrap_or_default(),
        graph_colour,
        active: body.active.unwrap_or(true),
    };
    Ok((StatusCode::CREATED, axum::Json(code::create_code(&state.pool, &input).await?.into())))
}

#[utoipa::path(
    put,
    path = "/api/v1/codes/{id}",
    tag = "codes",
    operation_id = "update_code",
    summary = "Change an activity code",
    description = "Only the keys given change; a new `machine_state` without a `loss_category` takes the state's \
                   usual category.",
    params(("id" = i32, Path, description = "The code's id")),
    request_body = CodeChanges,
    responses(
        (status = 200, description = "Saved", body = CodeView),
        (status = 400, description = "An input is refused (codes 1 to 4 keep their state): `field` names it", body = crate::api::ErrorBody),
        (status = 404, description = "No such code", body = crate::api::ErrorBody),
        (status = 409, description = "The short description is taken", body = crate::api::ErrorBody),
        (status = 503, description = "The database is not available", body = crate::api::ErrorBody),
    )
)]
async fn api_update(
    State(state): State<WebState>,
    Path(id): Path<i32>,
    ApiJson(body): ApiJson<CodeChanges>,
) -> Result<axum::Json<CodeView>, ApiError> {
    let mut input = CodeInput::from(&code::code(&state.pool, id).await?);
    if let Some(state) = body.machine_state
        && state != input.machine_state
    {
        // A new state with no category given takes the state's usual one: the old one may not suit it.
        input.machine_state = state;
        input.loss_category = String::new();
    }
    if let Some(v) = body.short_description {
        input.short_description = v;
    }
    if let Some(v) = body.long_description {
        input.long_description = v;
    }
    if let Some(v) = body.loss_category {
        input.loss_category = v;
    }
    if let Some(v) = body.graph_colour {
        input.graph_colour = v;
    }
    if let Some(v) = body.active {
        input.active = v;
    }
    Ok(axum::Json(code::update_code(&state.pool, id, &input).await?.into()))
}
