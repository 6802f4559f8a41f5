//! Administration: the admin home page and one module per kind of record, each with its pages and its
//! part of the admin JSON API (`/api/v1/…`). Pages and API call the same `core::store` functions, which
//! validate and write; refusals of one input come back as `Error::Field` and are shown beside that input.

mod boards;
mod codes;
mod groups;
mod machines;
mod settings;
mod shifts;
mod tablets;
mod tokens;
mod users;

use axum::Extension;
use axum::extract::State;
use axum::response::Response;
use oee_core::access::Role;
use serde::Serialize;

use crate::WebState;
use crate::access::{Access, Caller, Route};
use crate::page::Page;

/// The admin JSON API's part of the API document: every `/api/v1/…` handler of the modules above, each
/// annotated with `#[utoipa::path]`.
#[derive(utoipa::OpenApi)]
#[openapi(paths(
    users::api_list,
    users::api_create,
    users::api_get,
    users::api_update,
    users::api_password,
    tokens::api_list,
    tokens::api_create,
    tokens::api_revoke,
    boards::api_list,
    boards::api_create,
    boards::api_revoke,
    machines::api_list,
    machines::api_create,
    machines::api_get,
    machines::api_update,
    groups::api_list,
    groups::api_create,
    groups::api_get,
    groups::api_update,
    codes::api_list,
    codes::api_create,
    codes::api_get,
    codes::api_update,
    shifts::api_list,
    shifts::api_create,
    shifts::api_get,
    shifts::api_update,
    shifts::api_preview,
    tablets::api_list,
    tablets::api_get,
    tablets::api_rename,
    tablets::api_pair,
    tablets::api_window,
    tablets::api_open_window,
    tablets::api_close_window,
    tablets::api_log_out,
    settings::api_get,
    settings::api_put,
))]
pub(crate) struct AdminApi;

/// The admin routes (pages and JSON API).
pub(crate) fn routes() -> Vec<Route> {
    let mut r = vec![
        Route::get("/admin-home", Access::Role(Role::Admin), home),
        Route::get("/admin", Access::Role(Role::Admin), || async { crate::page::found("/admin-home") }),
    ];
    r.extend(users::routes());
    r.extend(tokens::routes());
    r.extend(boards::routes());
    r.extend(machines::routes());
    r.extend(groups::routes());
    r.extend(codes::routes());
    r.extend(shifts::routes());
    r.extend(tablets::routes());
    r.extend(settings::routes());
    r
}

/// The reference's address of one kind of record's page (`/edit-machine?machine_id=N`, `?new=true`) and
/// what was asked of it.
struct ReferenceLink<'q> {
    /// Our list of such records (`/admin/machines`): records are at `{list}/{id}`, a new one at `{list}/new`.
    list: &'static str,
    /// The query parameter that carries the id.
    param: &'static str,
    id: Option<&'q str>,
    new: Option<&'q str>,
    /// What the reference answered without an id; `None`: no id asks for a new record.
    missing: Option<&'static str>,
    /// What the reference added after a bad id in its refusal.
    parse_suffix: &'static str,
}

/// Sends an administrator from a reference address to our page (302), or answers 400 as the reference
/// did for no id or one that is not a number (C57).
async fn reference_redirect(state: &WebState, c: &Caller, link: ReferenceLink<'_>) -> Response {
    if link.new.is_some_and(|v| v.trim().eq_ignore_ascii_case("true")) {
        return crate::page::found(&format!("{}/new", link.list));
    }
    let heading = match link.id.filter(|id| !id.trim().is_empty()) {
        Some(id) => match id.trim().parse::<i32>() {
            Ok(n) => return crate::page::found(&format!("{}/{n}", link.list)),
            Err(_) => format!("Error parsing {} : {id}{}", link.param, link.parse_suffix),
        },
        None => match link.missing {
            Some(m) => m.to_string(),
            None => return crate::page::found(&format!("{}/new", link.list)),
        },
    };
    let body = crate::page::Message {
        heading,
        text: format!(
            "Give the number of the record as ?{}=N, or open it from the list at {}; ?new=true adds one.",
            link.param, link.list
        ),
    };
    let page = Page::new(state, Some(c), "Bad request", "admin", body).await;
    let mut r = state.pages.render("message", &page);
    *r.status_mut() = axum::http::StatusCode::BAD_REQUEST;
    r
}

#[derive(Serialize)]
struct Section {
    title: &'static str,
    link: &'static str,
    new_link: Option<&'static str>,
    count: usize,
    items: Vec<String>,
}

/// A card of the admin home without a count (the plant settings).
#[derive(Serialize)]
struct Card {
    title: &'static str,
    link: &'static str,
    items: Vec<String>,
}

#[derive(Serialize)]
struct HomeBody {
    sections: Vec<Section>,
    settings: Card,
}

/// The first few names of a list, for the admin home's cards.
fn first_names(names: impl Iterator<Item = String>) -> Vec<String> {
    names.take(5).collect()
}

/// `GET /admin-home`: every kind of record with its count and first entries.
async fn home(
    State(state): State<WebState>,
    Extension(c): Extension<Caller>,
) -> Result<Response, crate::api::ApiError> {
    use oee_core::store::{account, code, group, machine, schedule, tablet, user};
    let users = user::list_users(&state.pool).await?;
    let machines = machine::list_machines(&state.pool).await?;
    let groups = group::list_groups(&state.pool).await?;
    let codes = code::list_codes(&state.pool).await?;
    let shifts = schedule::list_shifts(&state.pool).await?;
    let tablets = tablet::list_tablets(&state.pool).await?;
    let tokens = account::list_tokens(&state.pool).await?;
    let live_tokens: Vec<_> = tokens.iter().filter(|t| t.revoked_at.is_none()).collect();
    let boards = oee_core::store::board::list_board_links(&state.pool).await?;
    let live_boards: Vec<_> = boards.iter().filter(|l| l.revoked_at.is_none()).collect();
    let sections = vec![
        Section {
            title: "Users",
            link: "/admin/users",
            new_link: Some("/admin/users/new"),
            count: users.len(),
            items: first_names(users.iter().map(|u| format!("{} ({})", u.username, u.role))),
        },
        Section {
            title: "Machines",
            link: "/admin/machines",
            new_link: Some("/admin/machines/new"),
            count: machines.len(),
            items: first_names(machines.iter().map(|m| m.name.clone())),
        },
        Section {
            title: "Groups",
            link: "/admin/groups",
            new_link: Some("/admin/groups/new"),
            count: groups.len(),
            items: first_names(groups.iter().map(|g| format!("{} ({} machines)", g.name, g.machine_count))),
        },
        Section {
            title: "Activity codes",
            link: "/admin/codes",
            new_link: Some("/admin/codes/new"),
            count: codes.len(),
            items: first_names(codes.iter().map(|c| c.short_description.clone())),
        },
        Section {
            title: "Shift patterns",
            link: "/admin/shifts",
            new_link: Some("/admin/shifts/new"),
            count: shifts.len(),
            items: first_names(shifts.iter().map(|s| s.name.clone())),
        },
        Section {
            title: "Tablets",
            link: "/admin/tablets",
            new_link: None,
            count: tablets.len(),
            items: first_names(tablets.iter().map(|t| t.name.clone())),
        },
        Section {
            title: "API tokens",
            link: "/admin/tokens",
            new_link: Some("/admin/tokens/new"),
            count: live_tokens.len(),
            items: first_names(live_tokens.iter().map(|t| format!("{} ({})", t.name, t.scope.as_str()))),
        },
        Section {
            title: "Andon board links",
            link: "/admin/boards",
            new_link: Some("/admin/boards/new"),
            count: live_boards.len(),
            items: first_names(live_boards.iter().map(|l| l.name.clone())),
        },
    ];
    let threshold = oee_core::store::setting::oee_engine(&state.pool, &state.oee).await?.minor_stop_threshold_ms / 1000;
    let settings = Card {
        title: "Plant settings",
        link: "/admin/settings",
        items: vec![format!("Time zone {}", state.tz.name()), format!("Minor stops under {threshold} s")],
    };
    let page = Page::new(&state, Some(&c), "Administration", "admin", HomeBody { sections, settings }).await;
    Ok(state.pages.render("admin_home", &page))
}
