//! API tokens for scripts: created by an administrator (the secret is shown once), listed, revoked.

use axum::Extension;
use axum::extract::{Form, Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use chrono::Utc;
use oee_core::access::Role;
use oee_core::store::account::{self, ApiToken, TokenScope};
use serde::{Deserialize, Serialize};

use crate::WebState;
use crate::access::{Access, Caller, Route};
use crate::api::{ApiError, ApiJson};
use crate::page::{Field, FormPage, ListPage, ListRow, Page, SubForm, flash, place_error, refused};

pub(super) fn routes() -> Vec<Route> {
    let admin = Access::Role(Role::Admin);
    vec![
        Route::get("/admin/tokens", admin, list_page),
        Route::get("/admin/tokens/new", admin, new_page),
        Route::post("/admin/tokens/new", admin, create),
        Route::post("/admin/tokens/{id}/revoke", admin, revoke),
        Route::get("/api/v1/tokens", admin, api_list),
        Route::post("/api/v1/tokens", admin, api_create),
        Route::delete("/api/v1/tokens/{id}", admin, api_revoke),
    ]
}

fn when(t: Option<chrono::DateTime<Utc>>, tz: chrono_tz::Tz) -> String {
    t.map_or_else(|| "never".into(), |t| t.with_timezone(&tz).format("%Y-%m-%d %H:%M").to_string())
}

async fn list_page(State(state): State<WebState>, Extension(c): Extension<Caller>) -> Result<Response, ApiError> {
    let tokens = account::list_tokens(&state.pool).await?;
    let body = ListPage {
        heading: "API tokens".into(),
        new_link: Some(("/admin/tokens/new".into(), "New token".into())),
        columns: vec!["Name", "Scope", "Created", "By", "Last used", "Revoked"],
        rows: tokens
            .iter()
            .map(|t| ListRow {
                cells: vec![
                    t.name.clone(),
                    t.scope.as_str().into(),
                    when(Some(t.created_at), state.tz),
                    t.created_by.clone().unwrap_or_default(),
                    when(t.last_used_at, state.tz),
                    t.revoked_at.map_or_else(String::new, |r| when(Some(r), state.tz)),
                ],
                link: t.revoked_at.is_none().then(|| format!("/admin/tokens/new?revoke={}", t.id)),
                muted: t.revoked_at.is_some(),
            })
            .collect(),
        empty: "No API tokens. Scripts read reports with a read token and administer with an admin token.",
    };
    let page = Page::new(&state, Some(&c), "API tokens", "admin", body).await;
    Ok(state.pages.render("list", &page))
}

#[derive(Debug, Deserialize, Default)]
struct TokenForm {
    #[serde(default)]
    name: String,
    #[serde(default)]
    scope: String,
    #[serde(default)]
    revoke: Option<i32>,
}

fn fields(form: &TokenForm) -> Vec<Field> {
    vec![
        Field::text("name", "Name (what the script is)", form.name.clone()).required(),
        Field::select(
            "scope",
            "Scope",
            vec![
                ("read".into(), "Read: reports, status, exports".into()),
                ("admin".into(), "Admin: everything an administrator may do".into()),
            ],
            if form.scope.is_empty() { "read" } else { &form.scope },
        ),
    ]
}

async fn token_form(
    state: &WebState,
    c: &Caller,
    form: &TokenForm,
    fields: Vec<Field>,
    error: Option<String>,
    revoke: Option<&ApiToken>,
) -> Response {
    let more = revoke
        .map(|t| {
            vec![SubForm {
                heading: format!("Revoke `{}`", t.name),
                action: format!("/admin/tokens/{}/revoke", t.id),
                submit: "Revoke now (scripts using it stop working)".into(),
                fields: vec![],
            }]
        })
        .unwrap_or_default();
    let _ = form;
    let body = FormPage {
        heading: "New API token".into(),
        action: "/admin/tokens/new".into(),
        submit: "Create token",
        fields,
        error,
        back: "/admin/tokens".into(),
        facts: vec![("Use".into(), "Authorization: Bearer <token> on /api/ routes".into())],
        more,
    };
    let page = Page::new(state, Some(c), "New API token", "admin", body).await;
    state.pages.render("form", &page)
}

async fn new_page(
    State(state): State<WebState>,
    Extension(c): Extension<Caller>,
    axum::extract::Query(q): axum::extract::Query<TokenForm>,
) -> Result<Response, ApiError> {
    let revoke = match q.revoke {
        Some(id) => account::list_tokens(&state.pool).await?.into_iter().find(|t| t.id == id),
        None => None,
    };
    Ok(token_form(&state, &c, &q, fields(&q), None, revoke.as_ref()).await)
}

#[derive(Serialize)]
struct Created {
    heading: String,
    text: String,
}

async fn create(
    State(state): State<WebState>,
    Extension(c): Extension<Caller>,
    Form(form): Form<TokenForm>,
) -> Response {
    let outcome = async {
        let scope: TokenScope = form.scope.parse().map_err(|m: String| oee_core::Error::field("scope", m))?;
        account::create_token(&state.pool, &form.name, scope, c.user_id, Utc::now()).await
    }
    .await;
    match outcome {
        Ok((token, secret)) => {
            // Shown once: the page is the only place the secret ever appears.
            let body = Created {
                heading: format!("Token `{}` ({}) created", token.name, token.scope.as_str()),
                text: format!(
                    "Copy it now; it is not shown again. Send it as the header  Authorization: Bearer {secret}"
                ),
            };
            let page = Page::new(&state, Some(&c), "Token created", "admin", body).await;
            state.pages.render("message", &page)
        }
        Err(e) => {
            let (mut f, mut error) = (fields(&form), None);
            place_error(&mut f, &mut error, &e);
            refused(token_form(&state, &c, &form, f, error, None).await, &e)
        }
    }
}

async fn revoke(
    State(state): State<WebState>,
    Extension(c): Extension<Caller>,
    Path(id): Path<i32>,
) -> Result<Response, ApiError> {
    account::revoke_token(&state.pool, id, Utc::now()).await?;
    flash(&state, &c, "Token revoked").await;
    Ok(crate::page::found("/admin/tokens"))
}

#[utoipa::path(
    get,
    path = "/api/v1/tokens",
    tag = "tokens",
    operation_id = "list_tokens",
    summary = "Every API token, revoked ones too (never their secrets)",
    responses(
        (status = 200, description = "The tokens", body = Vec<ApiToken>),
        (status = 503, description = "The database is not available", body = crate::api::ErrorBody),
    )
)]
async fn api_list(State(state): State<WebState>) -> Result<axum::Json<Vec<ApiToken>>, ApiError> {
    Ok(axum::Json(account::list_tokens(&state.pool).await?))
}

/// The body of `POST /api/v1/tokens`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct NewToken {
    name: String,
    scope: TokenScope,
}

/// A token just made, with its secret (shown this once).
#[derive(Serialize, utoipa::ToSchema)]
struct CreatedToken {
    #[serde(flatten)]
    token: ApiToken,
    secret: String,
}

#[utoipa::path(
    post,
    path = "/api/v1/tokens",
    tag = "tokens",
    operation_id = "create_token",
    summary = "Create an API token",
    description = "The answer carries the token's secret, given only this once: send it as \
                   `Authorization: Bearer <secret>`.",
    request_body = NewToken,
    responses(
        (status = 201, description = "Created, with its secret", body = CreatedToken),
        (status = 400, description = "An input is refused: `field` names it", body = crate::api::ErrorBody),
        (status = 409, description = "The name is taken", body = crate::api::ErrorBody),
        (status = 503, description = "The database is not available", body = crate::api::ErrorBody),
    )
)]
async fn api_create(
    State(state): State<WebState>,
    Extension(c): Extension<Caller>,
    ApiJson(body): ApiJson<NewToken>,
) -> Result<(StatusCode, axum::Json<CreatedToken>), ApiError> {
    let (token, secret) = account::create_token(&state.pool, &body.name, body.scope, c.user_id, Utc::now()).await?;
    Ok((StatusCode::CREATED, axum::Json(CreatedToken { token, secret })))
}

#[utoipa::path(
    delete,
    path = "/api/v1/tokens/{id}",
    tag = "tokens",
    operation_id = "revoke_token",
    summary = "Revoke an API token",
    description = "Scripts using it are refused from now on; the token stays listed as revoked.",
    params(("id" = i32, Path, description = "The token's id")),
    responses(
        (status = 204, description = "Revoked"),
        (status = 404, description = "No such token", body = crate::api::ErrorBody),
        (status = 503, description = "The database is not available", body = crate::api::ErrorBody),
    )
)]
async fn api_revoke(State(state): State<WebState>, Path(id): Path<i32>) -> Result<StatusCode, ApiError> {
    account::revoke_token(&state.pool, id, Utc::now()).await?;
    Ok(StatusCode::NO_CONTENT)
}
