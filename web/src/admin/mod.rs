//! Administration: the admin home page and one module per kind of record, each with its pages and its
//! part of the admin JSON API (`/api/v1/…`). Pages and API call the same `core::store` functions, which
//! validate and write; refusals of one input come back as `Error::Field` and are shown beside that input.

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

/// The admin routes (pages and JSON API).
pub(crate) fn routes() -> Vec<Route> {
    let mut r = vec![
        Route::get("/admin-home", Access::Role(Role::Admin), home),
        Route::get("/admin", Access::Role(Role::Admin), || async { crate::page::found("/admin-home") }),
    ];
    r.extend(users::routes());
    r.extend(tokens::routes());
    r.extend(shifts::routes());
    r.extend(tablets::routes());
    r.extend(settings::routes());
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
    use oee_core::store::{account, code, machine, schedule, tablet, user};
    let users = user::list_users(&state.pool).await?;
    let machines = machine::list_machines(&state.pool).await?;
    let codes = code::list_codes(&state.pool).await?;
    let shifts = schedule::list_shifts(&state.pool).await?;
    let tablets = tablet::list_tablets(&state.pool).await?;
    let tokens = account::list_tokens(&state.pool).await?;
    let live_tokens: Vec<_> = tokens.iter().filter(|t| t.revoked_at.is_none()).collect();
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
