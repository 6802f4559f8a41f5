//! Andon board links: an administrator makes one per wall screen (the full link is shown once), lists them
//! and revokes one when its screen goes. Whoever has a live link sees its board without signing in. The
//! same in the admin JSON API: `GET`/`POST /api/v1/board-links`, `DELETE /api/v1/board-links/{id}`.

use axum::Extension;
use axum::extract::{Form, Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::Response;
use chrono::Utc;
use oee_core::access::Role;
use oee_core::store::board::{self, BoardLink};
use oee_core::store::group::list_groups;
use serde::{Deserialize, Serialize};

use crate::WebState;
use crate::access::{Access, Caller, Route};
use crate::api::{ApiError, ApiJson};
use crate::page::{Field, FormPage, ListPage, ListRow, Page, SubForm, flash, place_error, refused};

pub(super) fn routes() -> Vec<Route> {
    let admin = Access::Role(Role::Admin);
    vec![
        Route::get("/admin/boards", admin, list_page),
        Route::get("/admin/boards/new", admin, new_page),
        Route::post("/admin/boards/new", admin, create),
        Route::post("/admin/boards/{id}/revoke", admin, revoke),
        Route::get("/api/v1/board-links", admin, api_list),
        Route::post("/api/v1/board-links", admin, api_create),
        Route::delete("/api/v1/board-links/{id}", admin, api_revoke),
    ]
}

fn when(t: chrono::DateTime<Utc>, tz: chrono_tz::Tz) -> String {
    t.with_timezone(&tz).format("%Y-%m-%d %H:%M").to_string()
}

fn shows(link: &BoardLink) -> String {
    link.group_name.clone().unwrap_or_else(|| "All machines".into())
}

async fn list_page(State(state): State<WebState>, Extension(c): Extension<Caller>) -> Result<Response, ApiError> {
    let links = board::list_board_links(&state.pool).await?;
    let body = ListPage {
        heading: "Andon board links".into(),
        new_link: Some(("/admin/boards/new".into(), "New board link".into())),
        columns: vec!["Name", "Shows", "Created", "By", "Revoked"],
        rows: links
            .iter()
            .map(|l| ListRow {
                cells: vec![
                    l.name.clone(),
                    shows(l),
                    when(l.created_at, state.tz),
                    l.created_by.clone().unwrap_or_default(),
                    l.revoked_at.map_or_else(String::new, |r| when(r, state.tz)),
                ],
                link: l.revoked_at.is_none().then(|| format!("/admin/boards/new?revoke={}", l.id)),
                muted: l.revoked_at.is_some(),
            })
            .collect(),
        empty: "No board links. A wall screen that nobody signs in on shows its board through one.",
    };
    let page = Page::new(&state, Some(&c), "Andon board links", "admin", body).await;
    Ok(state.pages.render("list", &page))
}

#[derive(Debug, Deserialize, Default)]
struct BoardForm {
    #[serde(default)]
    name: String,
    /// A group's id, or empty for every machine.
    #[serde(default)]
    group: String,
    #[serde(default)]
    revoke: Option<i32>,
}

async fn fields(state: &WebState, form: &BoardForm) -> Result<Vec<Field>, oee_core::Error> {
    let mut options = vec![(String::new(), "All machines".to_string())];
    options.extend(list_groups(&state.pool).await?.into_iter().map(|g| (g.id.to_string(), g.name)));
    Ok(vec![
        Field::text("name", "Name (which screen it is)", form.name.clone()).required(),
        Field::select("group", "Shows", options, &form.group),
    ])
}

async fn board_form(
    state: &WebState,
    c: &Caller,
    fields: Vec<Field>,
    error: Option<String>,
    revoke: Option<&BoardLink>,
) -> Response {
    let more = revoke
        .map(|l| {
            vec![SubForm {
                heading: format!("Revoke `{}`", l.name),
                action: format!("/admin/boards/{}/revoke", l.id),
                submit: "Revoke now (its screen stops showing the board)".into(),
                fields: vec![],
            }]
        })
        .unwrap_or_default();
    let body = FormPage {
        heading: "New board link".into(),
        action: "/admin/boards/new".into(),
        submit: "Create link",
        fields,
        error,
        back: "/admin/boards".into(),
        facts: vec![("Use".into(), "Open the link on the wall screen's browser; nobody needs to sign in".into())],
        more,
    };
    let page = Page::new(state, Some(c), "New board link", "admin", body).await;
    state.pages.render("form", &page)
}

async fn new_page(
    State(state): State<WebState>,
    Extension(c): Extension<Caller>,
    Query(q): Query<BoardForm>,
) -> Result<Response, ApiError> {
    let revoke = match q.revoke {
        Some(id) => board::list_board_links(&state.pool).await?.into_iter().find(|l| l.id == id),
        None => None,
    };
    let f = fields(&state, &q).await?;
    Ok(board_form(&state, &c, f, None, revoke.as_ref()).await)
}

#[derive(Serialize)]
struct Created {
    heading: String,
    text: String,
}

/// This server's address as the request reached it (`http://host:port`), for links people copy.
pub(crate) fn server_address(headers: &HeaderMap) -> String {
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .filter(|h| !h.is_empty() && h.chars().all(|c| c.is_ascii_alphanumeric() || ".-:[]".contains(c)))
        .unwrap_or("localhost:8080");
    let https = headers.get("x-forwarded-proto").and_then(|p| p.to_str().ok()).is_some_and(|p| p.trim() == "https");
    format!("{}://{host}", if https { "https" } else { "http" })
}

async fn create(
    State(state): State<WebState>,
    Extension(c): Extension<Caller>,
    headers: HeaderMap,
    Form(form): Form<BoardForm>,
) -> Result<Response, ApiError> {
    let outcome = async {
        let group = match form.group.trim() {
            "" => None,
            g => Some(g.parse::<i32>().map_err(|_| oee_core::Error::field("group", "choose a group from the list"))?),
        };
        board::create_board_link(&state.pool, &form.name, group, c.user_id, Utc::now()).await
    }
    .await;
    match outcome {
        Ok((link, secret)) => {
            // Shown once: the page is the only place the secret ever appears.
            let body = Created {
                heading: format!("Board link `{}` ({}) created", link.name, shows(&link)),
                text: format!(
                    "Copy it now; it is not shown again. Open it on the wall screen: {}/board/{secret}",
                    server_address(&headers)
                ),
            };
            let page = Page::new(&state, Some(&c), "Board link created", "admin", body).await;
            Ok(state.pages.render("message", &page))
        }
        Err(e) => {
            let (mut f, mut error) = (fields(&state, &form).await?, None);
            place_error(&mut f, &mut error, &e);
            Ok(refused(board_form(&state, &c, f, error, None).await, &e))
        }
    }
}

async fn revoke(
    State(state): State<WebState>,
    Extension(c): Extension<Caller>,
    Path(id): Path<i32>,
) -> Result<Response, ApiError> {
    board::revoke_board_link(&state.pool, id, Utc::now()).await?;
    flash(&state, &c, "Board link revoked").await;
    Ok(crate::page::found("/admin/boards"))
}

#[utoipa::path(
    get,
    path = "/api/v1/board-links",
    tag = "boards",
    operation_id = "list_board_links",
    summary = "Every andon board link, revoked ones too (never their secrets), newest first",
    responses(
        (status = 200, description = "The board links", body = Vec<BoardLink>),
        (status = 503, description = "The database is not available", body = crate::api::ErrorBody),
    )
)]
async fn api_list(State(state): State<WebState>) -> Result<axum::Json<Vec<BoardLink>>, ApiError> {
    Ok(axum::Json(board::list_board_links(&state.pool).await?))
}

/// The body of `POST /api/v1/board-links`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct NewBoardLink {
    /// What the screen is, 1 to 100 characters ("Hall 2 entrance").
    name: String,
    /// The id of the machine group the board shows; absent or `null`: every machine.
    #[serde(default)]
    group: Option<i32>,
}

/// A board link just made, with its secret and its address (given this once only).
#[derive(Serialize, utoipa::ToSchema)]
struct CreatedBoardLink {
    #[serde(flatten)]
    link: BoardLink,
    /// The link's secret.
    secret: String,
    /// The board's address on this server, as the request reached it: open it on the wall screen.
    url: String,
}

#[utoipa::path(
    post,
    path = "/api/v1/board-links",
    tag = "boards",
    operation_id = "create_board_link",
    summary = "Make a link to the andon board of a group or of every machine",
    description = "Whoever opens the link sees the board without signing in, until the link is revoked. The \
                   answer carries the link's secret and its address (`url`, `/board/{secret}` on this server \
                   as the request reached it), given only this once: only a digest of the secret is kept.",
    request_body = NewBoardLink,
    responses(
        (status = 201, description = "Made, with its secret and address", body = CreatedBoardLink),
        (status = 400, description = "An input is refused: `field` names it", body = crate::api::ErrorBody),
        (status = 503, description = "The database is not available", body = crate::api::ErrorBody),
    )
)]
async fn api_create(
    State(state): State<WebState>,
    Extension(c): Extension<Caller>,
    headers: HeaderMap,
    ApiJson(body): ApiJson<NewBoardLink>,
) -> Result<(StatusCode, axum::Json<CreatedBoardLink>), ApiError> {
    let (link, secret) = board::create_board_link(&state.pool, &body.name, body.group, c.user_id, Utc::now()).await?;
    let url = format!("{}/board/{secret}", server_address(&headers));
    Ok((StatusCode::CREATED, axum::Json(CreatedBoardLink { link, secret, url })))
}

#[utoipa::path(
    delete,
    path = "/api/v1/board-links/{id}",
    tag = "boards",
    operation_id = "revoke_board_link",
    summary = "Revoke an andon board link",
    description = "The screen showing it is refused from its next request on (an open stream of its board \
                   ends); the link stays listed as revoked. Revoking a revoked link changes nothing.",
    params(("id" = i32, Path, description = "The board link's id")),
    responses(
        (status = 204, description = "Revoked"),
        (status = 404, description = "No such board link", body = crate::api::ErrorBody),
        (status = 503, description = "The database is not available", body = crate::api::ErrorBody),
    )
)]
async fn api_revoke(State(state): State<WebState>, Path(id): Path<i32>) -> Result<StatusCode, ApiError> {
    board::revoke_board_link(&state.pool, id, Utc::now()).await?;
    Ok(StatusCode::NO_CONTENT)
}
