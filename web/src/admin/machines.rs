//! Machines: list, create, edit every setting of the reference's `/edit-machine` (§5.3), deactivate (the
//! "Active" box: machines are never deleted); the reference's `/edit-machine` URLs as redirects (C57); and
//! the same in the admin API, whose keys are the form's field names, so a refusal's `field` names the key.

use axum::Extension;
use axum::extract::{Form, Path, Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use chrono::Utc;
use oee_core::access::Role;
use oee_core::store::code::{self, ActivityCode, is_default_code};
use oee_core::store::group::{self, GroupSummary};
use oee_core::store::machine::{self, MachineSettings, MachineSummary};
use oee_core::store::schedule::{self, ShiftSummary};
use oee_core::tablet::{CycleInput, JobNumberInput, Workflow};
use serde::{Deserialize, Deserializer, Serialize};

use crate::WebState;
use crate::access::{Access, Caller, Route};
use crate::api::{ApiError, ApiJson};
use crate::page::{Field, FormPage, ListPage, ListRow, Page, flash, place_error, refused};

pub(super) fn routes() -> Vec<Route> {
    let admin = Access::Role(Role::Admin);
    let viewer = Access::Role(Role::Viewer);
    vec![
        Route::get("/admin/machines", admin, list_page),
        Route::get("/admin/machines/new", admin, new_page),
        Route::post("/admin/machines/new", admin, create),
        Route::get("/admin/machines/{id}", admin, edit_page),
        Route::post("/admin/machines/{id}", admin, update),
        Route::get("/edit-machine", admin, reference_page),
        Route::get("/api/v1/machines", viewer, api_list),
        Route::post("/api/v1/machines", admin, api_create),
        // The bridge serves device commands as POST /api/v1/machines/{machine}/{command}: one segment more.
        Route::get("/api/v1/machines/{id}", viewer, api_get),
        Route::put("/api/v1/machines/{id}", admin, api_update),
    ]
}

async fn list_page(State(state): State<WebState>, Extension(c): Extension<Caller>) -> Result<Response, ApiError> {
    let machines = machine::list_machines(&state.pool).await?;
    let body = ListPage {
        heading: "Machines".into(),
        new_link: Some(("/admin/machines/new".into(), "New machine".into())),
        columns: vec!["Id", "Name", "Group", "Shift pattern", "MQTT topic name", "Current activity", "Active"],
        rows: machines
            .iter()
            .map(|m| ListRow {
                cells: vec![
                    m.id.to_string(),
                    m.name.clone(),
                    m.group_name.clone().unwrap_or_else(|| "none".into()),
                    m.shift_name.clone().unwrap_or_else(|| "none".into()),
                    m.topic_name.clone().unwrap_or_default(),
                    m.activity_code.clone(),
                    if m.active { "yes".into() } else { "no".into() },
                ],
                link: Some(format!("/admin/machines/{}", m.id)),
                muted: !m.active,
            })
            .collect(),
        empty: "No machines yet: add one, then point its device or tablet at it.",
    };
    let page = Page::new(&state, Some(&c), "Machines", "admin", body).await;
    Ok(state.pages.render("list", &page))
}

/// What the form's selects and code boxes are made of.
struct Choices {
    groups: Vec<GroupSummary>,
    shifts: Vec<ShiftSummary>,
    codes: Vec<ActivityCode>,
}

impl Choices {
    async fn load(state: &WebState) -> Result<Choices, oee_core::Error> {
        Ok(Choices {
            groups: group::list_groups(&state.pool).await?,
            shifts: schedule::list_shifts(&state.pool).await?,
            codes: code::list_codes(&state.pool).await?,
        })
    }
}

/// The machine form as posted (or as the stored settings fill it): strings, so a refused form shows what
/// was typed.
#[derive(Debug, Default)]
struct MachineForm {
    name: String,
    active: bool,
    /// A group's id, or `0` (or empty) for none, as the reference's form sends it.
    group: String,
    shift_pattern: String,
    workflow_type: String,
    job_start_input_type: String,
    autofill_input_bool: bool,
    autofill_input_amount: String,
    job_start_activity: String,
    job_number_input_type: String,
    end_job_on_shift_end: bool,
    /// Ids of the codes (beyond 1–4) ticked as offered on the tablet: every other one is excluded.
    offered: Vec<String>,
}

impl MachineForm {
    /// Reads a posted form (a box that is not ticked is not sent at all).
    fn posted(pairs: &[(String, String)]) -> MachineForm {
        let one = |k: &str| pairs.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone()).unwrap_or_default();
        let ticked = |k: &str| pairs.iter().any(|(n, _)| n == k);
        MachineForm {
            name: one("name"),
            active: ticked("active"),
            group: one("group"),
            shift_pattern: one("shift_pattern"),
            workflow_type: one("workflow_type"),
            job_start_input_type: one("job_start_input_type"),
            autofill_input_bool: ticked("autofill_input_bool"),
            autofill_input_amount: one("autofill_input_amount"),
            job_start_activity: one("job_start_activity"),
            job_number_input_type: one("job_number_input_type"),
            end_job_on_shift_end: ticked("end_job_on_shift_end"),
            offered: pairs.iter().filter(|(n, _)| n == "offered").map(|(_, v)| v.clone()).collect(),
        }
    }

    /// The form filled with stored settings; every code not excluded is ticked.
    fn of(s: &MachineSettings, codes: &[ActivityCode]) -> MachineForm {
        MachineForm {
            name: s.name.clone(),
            active: s.active,
            group: s.group_id.map_or_else(|| "0".into(), |g| g.to_string()),
            shift_pattern: s.shift_id.map(|id| id.to_string()).unwrap_or_default(),
            workflow_type: s.workflow.as_str().into(),
            job_start_input_type: s.job_start_input.as_str().into(),
            autofill_input_bool: s.autofill,
            autofill_input_amount: s.autofill_amount.to_string(),
            job_start_activity: s.job_start_code_id.to_string(),
            job_number_input_type: s.job_number_input.as_str().into(),
            end_job_on_shift_end: s.end_job_on_shift_end,
            offered: codes
                .iter()
                .filter(|c| !is_default_code(c.id) && !s.excluded_code_ids.contains(&c.id))
                .map(|c| c.id.to_string())
                .collect(),
        }
    }

    /// The settings the form asks for; a value that is not even of the right kind is refused beside its
    /// field here, everything else by the store. `topic_name` is kept as it is (it is never edited).
    fn settings(&self, codes: &[ActivityCode], topic_name: Option<String>) -> Result<MachineSettings, oee_core::Error> {
        use oee_core::Error;
        let group_id = match self.group.trim() {
            "" | "0" => None,
            g => Some(g.parse().map_err(|_| Error::field("group", format!("`{g}` is not a group: choose one")))?),
        };
        let shift_id = match self.shift_pattern.trim() {
            "" => None,
            s => Some(
                s.parse()
                    .map_err(|_| Error::field("shift_pattern", format!("`{s}` is not a shift pattern: choose one")))?,
            ),
        };
        let autofill_amount = match (self.autofill_input_bool, self.autofill_input_amount.trim()) {
            // Off: the amount is not used (and stored as 0), whatever the field holds.
            (false, _) => 0.0,
            (true, "") => {
                return Err(Error::field(
                    "autofill_input_amount",
                    "Not a valid float value: give the amount the tablet fills in, e.g. 30, or untick autofill",
                ));
            }
            (true, a) => a.parse().map_err(|_| {
                Error::field("autofill_input_amount", format!("`{a}` is not a number: give one such as 30 or 12.5"))
            })?,
        };
        let start = self.job_start_activity.trim();
        let job_start_code_id = start.parse().map_err(|_| {
            Error::field("job_start_activity", format!("`{start}` is not an activity code: choose an uptime code"))
        })?;
        Ok(MachineSettings {
            name: self.name.clone(),
            active: self.active,
            group_id,
            shift_id,
            workflow: self.workflow_type.parse().map_err(|m: String| Error::field("workflow_type", m))?,
            job_start_input: self
                .job_start_input_type
                .parse()
                .map_err(|m: String| Error::field("job_start_input_type", m))?,
            autofill: self.autofill_input_bool,
            autofill_amount,
            job_start_code_id,
            job_number_input: self
                .job_number_input_type
                .parse()
                .map_err(|m: String| Error::field("job_number_input_type", m))?,
            end_job_on_shift_end: self.end_job_on_shift_end,
            excluded_code_ids: codes
                .iter()
                .filter(|c| !is_default_code(c.id) && !self.offered.contains(&c.id.to_string()))
                .map(|c| c.id)
                .collect(),
            topic_name,
        })
    }
}

fn workflow_label(w: Workflow) -> &'static str {
    match w {
        Workflow::Default => "Default: start a job, change the activity, end the job",
        Workflow::Pausable => "Pausable: the operator pauses the job with a reason and resumes it",
        Workflow::RunningTotal => "Running total: the operator enters the count of parts so far at intervals",
    }
}

fn cycle_input_label(c: CycleInput) -> &'static str {
    match c {
        CycleInput::CycleTimeSeconds => "Ideal cycle time in seconds",
        CycleInput::CycleTimeMinutes => "Ideal cycle time in minutes",
        CycleInput::CycleTimeHours => "Ideal cycle time in hours",
        CycleInput::PartsPerSecond => "Parts per second",
        CycleInput::PartsPerMinute => "Parts per minute",
        CycleInput::PartsPerHour => "Parts per hour",
        CycleInput::PlannedQuantityMinutes => "A planned quantity in a planned time (minutes)",
        CycleInput::NoCycleTime => "No cycle time (the tablet asks for the job number only)",
    }
}

fn fields(f: &MachineForm, c: &Choices) -> Vec<Field> {
    let mut groups = vec![("0".to_string(), "No group".to_string())];
    groups.extend(c.groups.iter().map(|g| (g.id.to_string(), g.name.clone())));
    let mut shifts: Vec<(String, String)> = c.shifts.iter().map(|s| (s.id.to_string(), s.name.clone())).collect();
    if f.shift_pattern.is_empty() || shifts.is_empty() {
        shifts.insert(0, (String::new(), "None (choose one: until then the machine stays out of shift)".into()));
    }
    let mut start_codes: Vec<(String, String)> = c
        .codes
        .iter()
        .filter(|code| code.machine_state == 1 && code.active)
        .map(|code| (code.id.to_string(), format!("{} {}", code.id, code.short_description)))
        .collect();
    // A refused choice stays visible beside its refusal.
    if !start_codes.iter().any(|(id, _)| *id == f.job_start_activity)
        && let Some(code) = c.codes.iter().find(|code| code.id.to_string() == f.job_start_activity)
    {
        start_codes
            .push((code.id.to_string(), format!("{} {} (not an active uptime code)", code.id, code.short_description)));
    }
    let mut out = vec![
        Field::text("name", "Name", f.name.clone()).required(),
        Field::checkbox(
            "active",
            "Active (an inactive machine keeps its history; its shift pattern no longer moves it)",
            f.active,
        ),
        Field::select("group", "Group", groups, &f.group),
        Field::select("shift_pattern", "Shift pattern", shifts, &f.shift_pattern),
        Field::select(
            "workflow_type",
            "Workflow on the tablet",
            Workflow::ALL.iter().map(|w| (w.as_str().to_string(), workflow_label(*w).to_string())).collect(),
            &f.workflow_type,
        ),
        Field::select(
            "job_start_input_type",
            "What the tablet asks for the job's speed",
            CycleInput::ALL.iter().map(|i| (i.as_str().to_string(), cycle_input_label(*i).to_string())).collect(),
            &f.job_start_input_type,
        ),
        Field::checkbox("autofill_input_bool", "Fill in the speed on the tablet", f.autofill_input_bool),
        Field::text("autofill_input_amount", "Speed filled in", f.autofill_input_amount.clone())
            .kind("number")
            .hint("Used only while the box above is ticked."),
        Field::select(
            "job_start_activity",
            "Activity code a started job moves the machine to",
            start_codes,
            &f.job_start_activity,
        )
        .hint("Active uptime codes only."),
        Field::select(
            "job_number_input_type",
            "Job number typed on the tablet",
            [JobNumberInput::Number, JobNumberInput::Text]
                .iter()
                .map(|j| {
                    let label = match j {
                        JobNumberInput::Number => "Digits only",
                        JobNumberInput::Text => "Letters and digits",
                    };
                    (j.as_str().to_string(), label.to_string())
                })
                .collect(),
            &f.job_number_input_type,
        ),
        Field::checkbox(
            "end_job_on_shift_end",
            "End the running job when the shift ends (else the machine goes on in overtime)",
            f.end_job_on_shift_end,
        ),
        Field::readonly(
            "excluded_codes",
            "Activity codes offered on this machine's tablet",
            "Codes 1 to 4 always are; untick a code to leave it off this machine's tablet.",
        ),
    ];
    for code in c.codes.iter().filter(|code| !is_default_code(code.id)) {
        let mut label =
            format!("{} {} ({})", code.id, code.short_description, super::codes::state_label(code.machine_state));
        if !code.active {
            label.push_str(", inactive: offered nowhere until it is active again");
        }
        out.push(
            Field::checkbox("offered", label, f.offered.contains(&code.id.to_string())).sending(code.id.to_string()),
        );
    }
    out
}

/// The form page for a new machine (`id` `None`) or machine `id`, whose MQTT topic name is `topic_name`.
async fn form_page(
    state: &WebState,
    c: &Caller,
    id: Option<i32>,
    topic_name: Option<&str>,
    fields: Vec<Field>,
    error: Option<String>,
) -> Response {
    let (heading, action, submit) = match id {
        None => ("New machine".to_string(), "/admin/machines/new".to_string(), "Create machine"),
        Some(id) => (format!("Machine {id}"), format!("/admin/machines/{id}"), "Save"),
    };
    let facts = match id {
        None => vec![(
            "MQTT topic name".into(),
            "made from the name when the machine is created; devices may use it instead of the id".into(),
        )],
        Some(id) => vec![
            ("Machine id".into(), id.to_string()),
            (
                "MQTT topic name (never changes: devices use it)".into(),
                topic_name.map_or_else(|| "none".into(), |t| t.to_string()),
            ),
            (
                "Topics".into(),
                format!("{root}/{id}/… or {root}/{}/…", topic_name.unwrap_or("-"), root = oee_core::topic::MACHINES),
            ),
        ],
    };
    let body = FormPage {
        heading: heading.clone(),
        action,
        submit,
        fields,
        error,
        back: "/admin/machines".into(),
        facts,
        more: vec![],
    };
    let page = Page::new(state, Some(c), heading, "admin", body).await;
    state.pages.render("form", &page)
}

async fn new_page(State(state): State<WebState>, Extension(c): Extension<Caller>) -> Result<Response, ApiError> {
    let choices = Choices::load(&state).await?;
    let defaults = machine::new_machine_settings(&state.pool, "").await?;
    let form = MachineForm::of(&defaults, &choices.codes);
    Ok(form_page(&state, &c, None, None, fields(&form, &choices), None).await)
}

/// Adds a machine with settings `s`: checked first, so a refusal adds nothing; then added and its settings
/// saved, as `oee-server machine add` and `machine set` do.
async fn add_with(state: &WebState, s: &MachineSettings) -> Result<(i32, MachineSettings), oee_core::Error> {
    machine::check_new_machine_settings(&state.pool, s).await?;
    let added = machine::add_machine(&state.pool, &s.name, state.tz, Utc::now()).await?;
    let stored = machine::update_machine_settings(&state.pool, added.id, s).await?;
    Ok((added.id, stored))
}

async fn create(
    State(state): State<WebState>,
    Extension(c): Extension<Caller>,
    Form(pairs): Form<Vec<(String, String)>>,
) -> Result<Response, ApiError> {
    let choices = Choices::load(&state).await?;
    let form = MachineForm::posted(&pairs);
    let outcome = async {
        let s = form.settings(&choices.codes, None)?;
        add_with(&state, &s).await
    }
    .await;
    Ok(match outcome {
        Ok((id, s)) => {
            flash(&state, &c, &format!("Machine {id} `{}` created", s.name)).await;
            crate::page::found("/admin/machines")
        }
        Err(e) => {
            let (mut f, mut error) = (fields(&form, &choices), None);
            place_error(&mut f, &mut error, &e);
            refused(form_page(&state, &c, None, None, f, error).await, &e)
        }
    })
}

async fn edit_page(
    State(state): State<WebState>,
    Extension(c): Extension<Caller>,
    Path(id): Path<i32>,
) -> Result<Response, ApiError> {
    let s = machine::machine_settings(&state.pool, id).await?;
    let choices = Choices::load(&state).await?;
    let form = MachineForm::of(&s, &choices.codes);
    Ok(form_page(&state, &c, Some(id), s.topic_name.as_deref(), fields(&form, &choices), None).await)
}

async fn update(
    State(state): State<WebState>,
    Extension(c): Extension<Caller>,
    Path(id): Path<i32>,
    Form(pairs): Form<Vec<(String, String)>>,
) -> Result<Response, ApiError> {
    let current = machine::machine_settings(&state.pool, id).await?;
    let choices = Choices::load(&state).await?;
    let form = MachineForm::posted(&pairs);
    let outcome = async {
        let s = form.settings(&choices.codes, current.topic_name.clone())?;
        machine::update_machine_settings(&state.pool, id, &s).await
    }
    .await;
    Ok(match outcome {
        Ok(saved) => {
            let note = if saved.active { "" } else { " (inactive)" };
            flash(&state, &c, &format!("Machine `{}` saved{note}", saved.name)).await;
            crate::page::found("/admin/machines")
        }
        Err(e) => {
            let (mut f, mut error) = (fields(&form, &choices), None);
            place_error(&mut f, &mut error, &e);
            refused(form_page(&state, &c, Some(id), current.topic_name.as_deref(), f, error).await, &e)
        }
    })
}

/// The reference's `/edit-machine` query.
#[derive(Debug, Deserialize)]
struct ReferenceQuery {
    machine_id: Option<String>,
    new: Option<String>,
}

/// `GET /edit-machine?machine_id=N` or `?new=true`: the reference's address of these pages (C57).
async fn reference_page(
    State(state): State<WebState>,
    Extension(c): Extension<Caller>,
    Query(q): Query<ReferenceQuery>,
) -> Response {
    super::reference_redirect(
        &state,
        &c,
        super::ReferenceLink {
            list: "/admin/machines",
            param: "machine_id",
            id: q.machine_id.as_deref(),
            new: q.new.as_deref(),
            missing: Some("No machine_id specified"),
            parse_suffix: "",
        },
    )
    .await
}

/// A machine as the admin API lists it.
#[derive(Debug, Serialize, utoipa::ToSchema)]
struct MachineListItem {
    id: i32,
    name: String,
    active: bool,
    topic_name: Option<String>,
    group_name: Option<String>,
    shift_pattern_name: Option<String>,
    /// The short description of the code it is in now.
    current_activity: String,
}

impl From<MachineSummary> for MachineListItem {
    fn from(m: MachineSummary) -> MachineListItem {
        MachineListItem {
            id: m.id,
            name: m.name,
            active: m.active,
            topic_name: m.topic_name,
            group_name: m.group_name,
            shift_pattern_name: m.shift_name,
            current_activity: m.activity_code,
        }
    }
}

/// A machine's settings as the admin API shows them: the form's field names, ids for the group, the shift
/// pattern and codes.
#[derive(Debug, Serialize, utoipa::ToSchema)]
struct MachineView {
    id: i32,
    name: String,
    active: bool,
    /// The group's id; `null`: in no group.
    group: Option<i32>,
    /// The shift pattern's id.
    shift_pattern: Option<i32>,
    /// How the tablet runs jobs: `default`, `pausable` or `running_total`.
    workflow_type: &'static str,
    /// What the tablet asks for a job's speed: `cycle_time_seconds`, `cycle_time_minutes`, `cycle_time_hours`,
    /// `parts_per_second`, `parts_per_minute`, `parts_per_hour`, `planned_qty_minutes` or `no_cycle_time`.
    job_start_input_type: &'static str,
    /// Whether the tablet fills in the speed with `autofill_input_amount`.
    autofill_input_bool: bool,
    autofill_input_amount: f64,
    /// The code a started job moves the machine to.
    job_start_activity: i32,
    /// What a job number is typed as on the tablet: `number` or `text`.
    job_number_input_type: &'static str,
    end_job_on_shift_end: bool,
    /// Codes its tablet does not offer.
    excluded_codes: Vec<i32>,
    /// How MQTT topics may name it besides its id (never changes).
    topic_name: Option<String>,
}

impl MachineView {
    fn of(id: i32, s: MachineSettings) -> MachineView {
        MachineView {
            id,
            name: s.name,
            active: s.active,
            group: s.group_id,
            shift_pattern: s.shift_id,
            workflow_type: s.workflow.as_str(),
            job_start_input_type: s.job_start_input.as_str(),
            autofill_input_bool: s.autofill,
            autofill_input_amount: s.autofill_amount,
            job_start_activity: s.job_start_code_id,
            job_number_input_type: s.job_number_input.as_str(),
            end_job_on_shift_end: s.end_job_on_shift_end,
            excluded_codes: s.excluded_code_ids,
            topic_name: s.topic_name,
        }
    }
}

/// The body of `POST /api/v1/machines` and `PUT /api/v1/machines/{id}`: the keys of [`MachineView`] but
/// `id` and `topic_name`. A key left out keeps its value (for a new machine: what `oee-server machine add`
/// gives it); a new machine needs a `name`.
#[derive(Debug, Deserialize, Default, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct MachineChanges {
    name: Option<String>,
    active: Option<bool>,
    /// A group's id; `null`: no group.
    #[serde(default, deserialize_with = "given")]
    #[schema(value_type = Option<i32>)]
    group: Option<Option<i32>>,
    shift_pattern: Option<i32>,
    workflow_type: Option<String>,
    job_start_input_type: Option<String>,
    autofill_input_bool: Option<bool>,
    autofill_input_amount: Option<f64>,
    job_start_activity: Option<i32>,
    job_number_input_type: Option<String>,
    end_job_on_shift_end: Option<bool>,
    excluded_codes: Option<Vec<i32>>,
}

/// A key that is present, even as `null` (which a plain `Option` could not tell from a missing key).
fn given<'de, D: Deserializer<'de>, T: Deserialize<'de>>(d: D) -> Result<Option<T>, D::Error> {
    T::deserialize(d).map(Some)
}

impl MachineChanges {
    fn apply(self, s: &mut MachineSettings) -> Result<(), oee_core::Error> {
        use oee_core::Error;
        if let Some(v) = self.name {
            s.name = v;
        }
        if let Some(v) = self.active {
            s.active = v;
        }
        if let Some(v) = self.group {
            s.group_id = v;
        }
        if let Some(v) = self.shift_pattern {
            s.shift_id = Some(v);
        }
        if let Some(v) = self.workflow_type {
            s.workflow = v.parse().map_err(|m: String| Error::field("workflow_type", m))?;
        }
        if let Some(v) = self.job_start_input_type {
            s.job_start_input = v.parse().map_err(|m: String| Error::field("job_start_input_type", m))?;
        }
        if let Some(v) = self.autofill_input_bool {
            s.autofill = v;
        }
        if let Some(v) = self.autofill_input_amount {
            s.autofill_amount = v;
        }
        if let Some(v) = self.job_start_activity {
            s.job_start_code_id = v;
        }
        if let Some(v) = self.job_number_input_type {
            s.job_number_input = v.parse().map_err(|m: String| Error::field("job_number_input_type", m))?;
        }
        if let Some(v) = self.end_job_on_shift_end {
            s.end_job_on_shift_end = v;
        }
        if let Some(v) = self.excluded_codes {
            s.excluded_code_ids = v;
        }
        Ok(())
    }
}

#[utoipa::path(
    get,
    path = "/api/v1/machines",
    tag = "machines",
    operation_id = "list_machines",
    summary = "Every machine",
    description = "Active and inactive machines by id, with their group, shift pattern and current activity.",
    responses(
        (status = 200, description = "The machines, by id", body = Vec<MachineListItem>),
        (status = 503, description = "The database is not available", body = crate::api::ErrorBody),
    )
)]
async fn api_list(State(state): State<WebState>) -> Result<axum::Json<Vec<MachineListItem>>, ApiError> {
    let machines = machine::list_machines(&state.pool).await?;
    Ok(axum::Json(machines.into_iter().map(MachineListItem::from).collect()))
}

#[utoipa::path(
    get,
    path = "/api/v1/machines/{id}",
    tag = "machines",
    operation_id = "get_machine",
    summary = "One machine's settings",
    params(("id" = i32, Path, description = "The machine's id")),
    responses(
        (status = 200, description = "The machine", body = MachineView),
        (status = 404, description = "No such machine", body = crate::api::ErrorBody),
        (status = 503, description = "The database is not available", body = crate::api::ErrorBody),
    )
)]
async fn api_get(State(state): State<WebState>, Path(id): Path<i32>) -> Result<axum::Json<MachineView>, ApiError> {
    Ok(axum::Json(MachineView::of(id, machine::machine_settings(&state.pool, id).await?)))
}

#[utoipa::path(
    post,
    path = "/api/v1/machines",
    tag = "machines",
    operation_id = "create_machine",
    summary = "Add a machine",
    description = "A `name` is needed; every key left out takes what `oee-server machine add` gives a new machine \
                   (the first group and shift pattern, the default workflow). Its MQTT topic name is made from the \
                   name and never changes.",
    request_body = MachineChanges,
    responses(
        (status = 201, description = "Added", body = MachineView),
        (status = 400, description = "An input is refused: `field` names it", body = crate::api::ErrorBody),
        (status = 409, description = "The name is taken", body = crate::api::ErrorBody),
        (status = 503, description = "The database is not available", body = crate::api::ErrorBody),
    )
)]
async fn api_create(
    State(state): State<WebState>,
    ApiJson(body): ApiJson<MachineChanges>,
) -> Result<(StatusCode, axum::Json<MachineView>), ApiError> {
    let Some(name) = body.name.clone() else {
        return Err(oee_core::Error::field("name", "give the new machine a name").into());
    };
    let mut s = machine::new_machine_settings(&state.pool, &name).await?;
    body.apply(&mut s)?;
    let (id, stored) = add_with(&state, &s).await?;
    Ok((StatusCode::CREATED, axum::Json(MachineView::of(id, stored))))
}

#[utoipa::path(
    put,
    path = "/api/v1/machines/{id}",
    tag = "machines",
    operation_id = "update_machine",
    summary = "Change a machine's settings",
    description = "Only the keys given change. A machine is never deleted: `\"active\": false` takes it out of use \
                   and keeps its history.",
    params(("id" = i32, Path, description = "The machine's id")),
    request_body = MachineChanges,
    responses(
        (status = 200, description = "Saved", body = MachineView),
        (status = 400, description = "An input is refused: `field` names it", body = crate::api::ErrorBody),
        (status = 404, description = "No such machine", body = crate::api::ErrorBody),
        (status = 409, description = "The name is taken", body = crate::api::ErrorBody),
        (status = 503, description = "The database is not available", body = crate::api::ErrorBody),
    )
)]
async fn api_update(
    State(state): State<WebState>,
    Path(id): Path<i32>,
    ApiJson(body): ApiJson<MachineChanges>,
) -> Result<axum::Json<MachineView>, ApiError> {
    let mut s = machine::machine_settings(&state.pool, id).await?;
    body.apply(&mut s)?;
    Ok(axum::Json(MachineView::of(id, machine::update_machine_settings(&state.pool, id, &s).await?)))
}
