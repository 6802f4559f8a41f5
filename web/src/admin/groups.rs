//! Machine groups: list, create, rename, with the group's machines shown (reference §5.3
//! `/edit-machine-group`); the reference's URL as a redirect; the same in the admin API. Groups are never
//! deleted and have no active state of their own: a machine leaves a group on its own page.

use axum::Extension;
use axum::extract::{Form, Path, Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use oee_core::access::Role;
use oee_core::store::group::{self, Group, GroupMachine, GroupSummary};
use serde::{Deserialize, Serialize};

use crate::WebState;
use crate::access::{Access, Caller, Route};
use crate::api::{ApiError, ApiJson};
use crate::page::{Field, FormPage, ListPage, ListRow, Page, flash, place_error, refused};

pub(super) fn routes() -> Vec<Route> {
    let admin = Access::Role(Role::Admin);
    let viewer = Access::Role(Role::Viewer);
    vec![
        Route::get("/admin/groups", admin, list_page),
        Route::get("/admin/groups/new", admin, new_page),
        Route::post("/admin/groups/new", admin, create),
        Route::get("/admin/groups/{id}", admin, edit_page),
        Route::post("/admin/groups/{id}", admin, update),
        Route::get("/edit-machine-group", admin, reference_page),
        Route::get("/api/v1/groups", viewer, api_list),
        Route::post("/api/v1/groups", admin, api_create),
        Route::get("/api/v1/groups/{id}", viewer, api_get),
        Route::put("/api/v1/groups/{id}", admin, api_update),
    ]
}

async fn list_page(State(state): State<WebState>, Extension(c): Extension<Caller>) -> Result<Response, ApiError> {
    let groups = group::list_groups(&state.pool).await?;
    let body = ListPage {
        heading: "Machine groups".into(),
        new_link: Some(("/admin/groups/new".into(), "New group".into())),
        columns: vec!["Id", "Name", "Machines"],
        rows: groups
            .iter()
            .map(|g| ListRow {
                cells: vec![g.id.to_string(), g.name.clone(), g.machine_count.to_string()],
                link: Some(format!("/admin/groups/{}", g.id)),
                muted: false,
            })
            .collect(),
        empty: "No groups yet. Groups gather machines for the status page, dashboards and reports.",
    };
    let page = Page::new(&state, Some(&c), "Machine groups", "admin", body).await;
    Ok(state.pages.render("list", &page))
}

#[derive(Debug, Deserialize, Default)]
struct GroupForm {
    #[serde(default)]
    name: String,
}

fn fields(form: &GroupForm) -> Vec<Field> {
    vec![Field::text("name", "Name", form.name.clone()).required()]
}

/// What a group's page says of its machines.
fn machine_facts(machines: &[GroupMachine]) -> Vec<(String, String)> {
    if machines.is_empty() {
        return vec![("Machines".into(), "none yet: choose this group on a machine's page".into())];
    }
    machines
        .iter()
        .map(|m| {
            let name = if m.active { m.name.clone() } else { format!("{} (inactive)", m.name) };
            (format!("Machine {}", m.id), name)
        })
        .collect()
}

/// The form page for a new group (`group` `None`) or an existing one.
async fn form_page(
    state: &WebState,
    c: &Caller,
    group: Option<&Group>,
    fields: Vec<Field>,
    error: Option<String>,
) -> Response {
    let (heading, action, submit, facts) = match group {
        None => ("New machine group".to_string(), "/admin/groups/new".to_string(), "Create group", vec![]),
        Some(g) => (
            format!("Group {} `{}`", g.id, g.name),
            format!("/admin/groups/{}", g.id),
            "Save",
            machine_facts(&g.machines),
        ),
    };
    let body = FormPage {
        heading: heading.clone(),
        action,
        submit,
        fields,
        error,
        back: "/admin/groups".into(),
        facts,
        more: vec![],
    };
    let page = Page::new(state, Some(c), heading, "admin", body).await;
    state.pages.render("form", &page)
}

async fn new_page(State(state): State<WebState>, Extension(c): Extension<Caller>) -> Response {
    form_page(&state, &c, None, fields(&GroupForm::default()), None).await
}

async fn create(
    State(state): State<WebState>,
    Extension(c): Extension<Caller>,
    Form(form): Form<GroupForm>,
) -> Response {
    match group::create_group(&state.pool, &form.name).await {
        Ok(id) => {
            flash(&state, &c, &format!("Group {id} `{}` created", form.name.trim())).await;
            crate::page::found("/admin/groups")
        }
        Err(e) => {
            let (mut f, mut error) = (fields(&form), None);
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
    let g = group::group(&state.pool, id).await?;
    let form = GroupForm { name: g.name.clone() };
    Ok(form_page(&state, &c, Some(&g), fields(&form), None).await)
}

async fn update(
    State(state): State<WebState>,
    Extension(c): Extension<Caller>,
    Path(id): Path<i32>,
    Form(form): Form<GroupForm>,
) -> Result<Response, ApiError> {
    let g = group::group(&state.pool, id).await?;
    Ok(match group::rename_group(&state.pool, id, &form.name).await {
        Ok(()) => {
            flash(&state, &c, &format!("Group `{}` saved", form.name.trim())).await;
            crate::page::found("/admin/groups")
        }
        Err(e) => {
            let (mut f, mut error) = (fields(&form), None);
            place_error(&mut f, &mut error, &e);
            refused(form_page(&state, &c, Some(&g), f, error).await, &e)
        }
    })
}

/// The reference's `/edit-machine-group` query.
#[derive(Debug, Deserialize)]
struct ReferenceQuery {
    machine_group_id: Option<String>,
    new: Option<String>,
}

/// `GET /edit-machine-group?machine_group_id=N` or `?new=True`: the reference's address of these pages.
async fn reference_page(
    State(state): State<WebState>,
    Extension(c): Extension<Caller>,
    Query(q): Query<ReferenceQuery>,
) -> Response {
    super::reference_redirect(
        &state,
        &c,
        super::ReferenceLink {
            list: "/admin/groups",
            param: "machine_group_id",
            id: q.machine_group_id.as_deref(),
            new: q.new.as_deref(),
            missing: Some("No machine_group_id specified"),
            parse_suffix: "",
        },
    )
    .await
}

/// A group as the admin API lists it.
#[derive(Debug, Serialize, utoipa::ToSchema)]
struct GroupListItem {
    id: i32,
    name: String,
    /// How many machines (active or not) are in it.
    machine_count: i64,
}

impl From<GroupSummary> for GroupListItem {
    fn from(g: GroupSummary) -> GroupListItem {
        GroupListItem { id: g.id, name: g.name, machine_count: g.machine_count }
    }
}

/// A group with its machines, as the admin API shows it.
#[derive(Debug, Serialize, utoipa::ToSchema)]
struct GroupView {
    id: i32,
    name: String,
    machines: Vec<GroupMachineView>,
}

/// A machine of a group.
#[derive(Debug, Serialize, utoipa::ToSchema)]
struct GroupMachineView {
    id: i32,
    name: String,
    active: bool,
}

impl From<Group> for GroupView {
    fn from(g: Group) -> GroupView {
        GroupView {
            id: g.id,
            name: g.name,
            machines: g
                .machines
                .into_iter()
                .map(|m| GroupMachineView { id: m.id, name: m.name, active: m.active })
                .collect(),
        }
    }
}

/// The body of `POST /api/v1/groups` and `PUT /api/v1/groups/{id}`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct GroupBody {
    name: String,
}

#[utoipa::path(
    get,
    path = "/api/v1/groups",
    tag = "groups",
    operation_id = "list_groups",
    summary = "Every machine group",
    responses(
        (status = 200, description = "The groups, by id", body = Vec<GroupListItem>),
        (status = 503, description = "The database is not available", body = crate::api::ErrorBody),
    )
)]
async fn api_list(State(state): State<WebState>) -> Result<axum::Json<Vec<GroupListItem>>, ApiError> {
    Ok(axum::Json(group::list_groups(&state.pool).await?.into_iter().map(GroupListItem::from).collect()))
}

#[utoipa::path(
    get,
    path = "/api/v1/groups/{id}",
    tag = "groups",
    operation_id = "get_group",
    summary = "One machine group with its machines",
    params(("id" = i32, Path, description = "The group's id")),
    responses(
        (status = 200, description = "The group", body = GroupView),
        (status = 404, description = "No such group", body = crate::api::ErrorBody),
        (status = 503, description = "The database is not available", body = crate::api::ErrorBody),
    )
)]
async fn api_get(State(state): State<WebState>, Path(id): Path<i32>) -> Result<axum::Json<GroupView>, ApiError> {
    Ok(axum::Json(group::group(&state.pool, id).await?.into()))
}

#[utoipa::path(
    post,
    path = "/api/v1/groups",
    tag = "groups",
    operation_id = "create_group",
    summary = "Add a machine group",
    description = "A new group has no machines: a machine joins it with `PUT /api/v1/machines/{id}` `{\"group\": …}`.",
    request_body = GroupBody,
    responses(
        (status = 201, description = "Added", body = GroupView),
        (status = 400, description = "The name is refused: `field` says so", body = crate::api::ErrorBody),
        (status = 409, description = "The name is taken", body = crate::api::ErrorBody),
        (status = 503, description = "The database is not available", body = crate::api::ErrorBody),
    )
)]
async fn api_create(
    State(state): State<WebState>,
    ApiJson(body): ApiJson<GroupBody>,
) -> Result<(StatusCode, axum::Json<GroupView>), ApiError> {
    let id = group::create_group(&state.pool, &body.name).await?;
    Ok((StatusCode::CREATED, axum::Json(group::group(&state.pool, id).await?.into())))
}

#[utoipa::path(
    put,
    path = "/api/v1/groups/{id}",
    tag = "groups",
    operation_id = "rename_group",
    summary = "Rename a machine group",
    params(("id" = i32, Path, description = "The group's id")),
    request_body = GroupBody,
    responses(
        (status = 200, description = "Saved", body = GroupView),
        (status = 400, description = "The name is refused: `field` says so", body = crate::api::ErrorBody),
        (status = 404, description = "No such group", body = crate::api::ErrorBody),
        (status = 409, description = "The name is taken", body = crate::api::ErrorBody),
        (status = 503, description = "The database is not available", body = crate::api::ErrorBody),
    )
)]
async fn api_update(
    State(state): State<WebState>,
    Path(id): Path<i32>,
    ApiJson(body): ApiJson<GroupBody>,
) -> Result<axum::Json<GroupView>, ApiError> {
    group::rename_group(&state.pool, id, &body.name).await?;
    Ok(axum::Json(group::group(&state.pool, id).await?.into()))
}
