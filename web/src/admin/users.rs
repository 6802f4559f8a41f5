//! Users: list, create, edit (name, role, active), set a password or PIN, sign out everywhere; the same in
//! the admin API, and the reference's `GET /api/users` (C3) for anyone signed in.

use axum::Extension;
use axum::extract::{Form, Path, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use oee_core::access::Role;
use oee_core::store::{account, user};
use serde::Deserialize;

use crate::WebState;
use crate::access::{Access, Caller, Route};
use crate::api::{ApiError, ApiJson};
use crate::page::{Field, FormPage, ListPage, ListRow, Page, SubForm, flash, place_error, refused};

pub(super) fn routes() -> Vec<Route> {
    let admin = Access::Role(Role::Admin);
    vec![
        Route::get("/admin/users", admin, list_page),
        Route::get("/admin/users/new", admin, new_page),
        Route::post("/admin/users/new", admin, create),
        Route::get("/admin/users/{id}", admin, edit_page),
        Route::post("/admin/users/{id}", admin, update),
        Route::post("/admin/users/{id}/password", admin, set_password),
        Route::post("/admin/users/{id}/sign-out", admin, sign_out_everywhere),
        Route::get("/api/users", Access::Role(Role::Viewer), reference_list),
        Route::get("/api/v1/users", admin, api_list),
        Route::post("/api/v1/users", admin, api_create),
        Route::get("/api/v1/users/{id}", admin, api_get),
        Route::put("/api/v1/users/{id}", admin, api_update),
        Route::put("/api/v1/users/{id}/password", admin, api_password),
    ]
}

fn role_choices() -> Vec<(String, String)> {
    vec![
        ("operator".into(), "Operator (tablets only, numeric PIN)".into()),
        ("viewer".into(), "Viewer (status, reports, exports)".into()),
        ("supervisor".into(), "Supervisor (also jobs, production, history, tablet logouts)".into()),
        ("admin".into(), "Administrator (everything)".into()),
    ]
}

const PASSWORD_HINT: &str = "Operators: a PIN of 4 to 12 digits, typed on the tablet with their user id. Everyone \
                             else: at least 8 characters; they choose their own at their first sign-in.";

async fn list_page(State(state): State<WebState>, Extension(c): Extension<Caller>) -> Result<Response, ApiError> {
    let users = user::list_users(&state.pool).await?;
    let body = ListPage {
        heading: "Users".into(),
        new_link: Some(("/admin/users/new".into(), "New user".into())),
        columns: vec!["Id", "Name", "Role", "Active"],
        rows: users
            .iter()
            .map(|u| ListRow {
                cells: vec![
                    u.id.to_string(),
                    u.username.clone(),
                    u.role.to_string(),
                    if u.active { "yes".into() } else { "no".into() },
                ],
                link: Some(format!("/admin/users/{}", u.id)),
                muted: !u.active,
            })
            .collect(),
        empty: "No users yet.",
    };
    let page = Page::new(&state, Some(&c), "Users", "admin", body).await;
    Ok(state.pages.render("list", &page))
}

#[derive(Debug, Deserialize, Default)]
struct UserForm {
    #[serde(default)]
    username: String,
    #[serde(default)]
    role: String,
    #[serde(default)]
    active: Option<String>,
    #[serde(default)]
    password: String,
    #[serde(default)]
    confirm_password: String,
}

fn new_fields(form: &UserForm) -> Vec<Field> {
    vec![
        Field::text("username", "User name", form.username.clone()).required(),
        Field::select("role", "Role", role_choices(), if form.role.is_empty() { "operator" } else { &form.role }),
        Field::password("password", "Password or PIN").required().hint(PASSWORD_HINT),
        Field::password("confirm_password", "Password or PIN again").required(),
    ]
}

async fn new_form(state: &WebState, c: &Caller, fields: Vec<Field>, error: Option<String>) -> Response {
    let body = FormPage {
        heading: "New user".into(),
        action: "/admin/users/new".into(),
        submit: "Create user",
        fields,
        error,
        back: "/admin/users".into(),
        ..FormPage::default()
    };
    let page = Page::new(state, Some(c), "New user", "admin", body).await;
    state.pages.render("form", &page)
}

async fn new_page(State(state): State<WebState>, Extension(c): Extension<Caller>) -> Response {
    new_form(&state, &c, new_fields(&UserForm::default()), None).await
}

fn parse_role(s: &str) -> Result<Role, oee_core::Error> {
    s.parse().map_err(|m: String| oee_core::Error::field("role", m))
}

async fn create(
    State(state): State<WebState>,
    Extension(c): Extension<Caller>,
    Form(form): Form<UserForm>,
) -> Response {
    let outcome = async {
        let role = parse_role(&form.role)?;
        if form.password != form.confirm_password {
            return Err(oee_core::Error::field("confirm_password", "the two passwords differ"));
        }
        user::add_user(&state.pool, &form.username, &form.password, role, true).await
    }
    .await;
    match outcome {
        Ok(u) => {
            flash(&state, &c, &format!("User {} `{}` created ({})", u.id, u.username, u.role)).await;
            crate::page::found("/admin/users")
        }
        Err(e) => {
            let (mut fields, mut error) = (new_fields(&form), None);
            place_error(&mut fields, &mut error, &e);
            refused(new_form(&state, &c, fields, error).await, &e)
        }
    }
}

fn edit_fields(u: &user::User, form: Option<&UserForm>) -> Vec<Field> {
    let (name, role, active) = match form {
        Some(f) => (f.username.clone(), f.role.clone(), f.active.is_some()),
        None => (u.username.clone(), u.role.to_string(), u.active),
    };
    vec![
        Field::text("username", "User name", name).required(),
        Field::select("role", "Role", role_choices(), &role),
        Field::checkbox("active", "Active (an inactive user can sign in nowhere; their history stays)", active),
    ]
}

async fn edit_form(
    state: &WebState,
    c: &Caller,
    u: &user::User,
    fields: Vec<Field>,
    error: Option<String>,
) -> Response {
    let body = FormPage {
        heading: format!("User {} `{}`", u.id, u.username),
        action: format!("/admin/users/{}", u.id),
        submit: "Save",
        fields,
        error,
        back: "/admin/users".into(),
        facts: vec![
            ("User id (typed on tablets)".into(), u.id.to_string()),
            (
                "Password".into(),
                if u.must_change_password { "must be changed at the next sign-in".into() } else { "set".into() },
            ),
        ],
        more: vec![
            SubForm {
                heading: "Set a new password or PIN".into(),
                action: format!("/admin/users/{}/password", u.id),
                submit: "Set password".into(),
                fields: vec![
                    Field::password("password", "New password or PIN").required().hint(PASSWORD_HINT),
                    Field::password("confirm_password", "Again").required(),
                ],
            },
            SubForm {
                action: format!("/admin/users/{}/sign-out", u.id),
                submit: "Sign this user out everywhere".into(),
                ..SubForm::default()
            },
        ],
    };
    let page = Page::new(state, Some(c), format!("User {}", u.username), "admin", body).await;
    state.pages.render("form", &page)
}

async fn found(state: &WebState, id: i32) -> Result<user::User, oee_core::Error> {
    user::user(&state.pool, id).await?.ok_or_else(|| oee_core::Error::NotFound(format!("there is no user {id}")))
}

async fn edit_page(
    State(state): State<WebState>,
    Extension(c): Extension<Caller>,
    Path(id): Path<i32>,
) -> Result<Response, ApiError> {
    let u = found(&state, id).await?;
    Ok(edit_form(&state, &c, &u, edit_fields(&u, None), None).await)
}

async fn update(
    State(state): State<WebState>,
    Extension(c): Extension<Caller>,
    Path(id): Path<i32>,
    Form(form): Form<UserForm>,
) -> Result<Response, ApiError> {
    let u = found(&state, id).await?;
    let outcome = async {
        let role = parse_role(&form.role)?;
        user::update_user(&state.pool, id, &form.username, role, form.active.is_some()).await
    }
    .await;
    Ok(match outcome {
        Ok(saved) => {
            flash(&state, &c, &format!("User `{}` saved", saved.username)).await;
            crate::page::found("/admin/users")
        }
        Err(e) => {
            let (mut fields, mut error) = (edit_fields(&u, Some(&form)), None);
            place_error(&mut fields, &mut error, &e);
            refused(edit_form(&state, &c, &u, fields, error).await, &e)
        }
    })
}

async fn set_password(
    State(state): State<WebState>,
    Extension(c): Extension<Caller>,
    Path(id): Path<i32>,
    Form(form): Form<UserForm>,
) -> Result<Response, ApiError> {
    let u = found(&state, id).await?;
    let outcome = if form.password != form.confirm_password {
        Err(oee_core::Error::field("confirm_password", "the two passwords differ"))
    } else {
        // An administrator chose it: the user picks their own at the next sign-in.
        user::set_password_by_id(&state.pool, id, &form.password, false, None).await
    };
    Ok(match outcome {
        Ok(()) => {
            flash(&state, &c, &format!("New password of `{}` set; their sessions were signed out", u.username)).await;
            crate::page::found(&format!("/admin/users/{id}"))
        }
        Err(e) => {
            let message = match &e {
                oee_core::Error::Field { message, .. } => format!("New password not set: {message}"),
                other => format!("New password not set: {other}"),
            };
            refused(edit_form(&state, &c, &u, edit_fields(&u, None), Some(message)).await, &e)
        }
    })
}

async fn sign_out_everywhere(
    State(state): State<WebState>,
    Extension(c): Extension<Caller>,
    Path(id): Path<i32>,
) -> Result<Response, ApiError> {
    let u = found(&state, id).await?;
    let n = account::end_sessions_of(&state.pool, id).await?;
    flash(&state, &c, &format!("`{}` was signed out of {n} session(s)", u.username)).await;
    Ok(crate::page::found(&format!("/admin/users/{id}")))
}

/// `GET /api/users`: the reference's list, in its shape (C3), to anyone signed in or holding a token (the
/// reference showed it to anybody).
async fn reference_list(State(state): State<WebState>) -> Result<Response, ApiError> {
    let users = user::list_users(&state.pool).await?;
    let list: Vec<serde_json::Value> = users
        .iter()
        .map(|u| serde_json::json!({ "admin": u.admin, "user_id": u.id, "username": u.username }))
        .collect();
    let mut body = serde_json::to_string(&list).unwrap_or_else(|_| "[]".into());
    body.push('\n');
    Ok(([(header::CONTENT_TYPE, "application/json")], body).into_response())
}

#[utoipa::path(
    get,
    path = "/api/v1/users",
    tag = "users",
    operation_id = "list_users",
    summary = "Every user",
    responses(
        (status = 200, description = "The users, by id", body = Vec<user::User>),
        (status = 503, description = "The database is not available", body = crate::api::ErrorBody),
    )
)]
async fn api_list(State(state): State<WebState>) -> Result<axum::Json<Vec<user::User>>, ApiError> {
    Ok(axum::Json(user::list_users(&state.pool).await?))
}

#[utoipa::path(
    get,
    path = "/api/v1/users/{id}",
    tag = "users",
    operation_id = "get_user",
    summary = "One user",
    params(("id" = i32, Path, description = "The user's id")),
    responses(
        (status = 200, description = "The user", body = user::User),
        (status = 404, description = "No such user", body = crate::api::ErrorBody),
        (status = 503, description = "The database is not available", body = crate::api::ErrorBody),
    )
)]
async fn api_get(State(state): State<WebState>, Path(id): Path<i32>) -> Result<axum::Json<user::User>, ApiError> {
    Ok(axum::Json(found(&state, id).await?))
}

/// The body of `POST /api/v1/users`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct NewUser {
    username: String,
    role: Role,
    password: String,
}

#[utoipa::path(
    post,
    path = "/api/v1/users",
    tag = "users",
    operation_id = "create_user",
    summary = "Create a user",
    description = "Operators get a PIN of 4 to 12 digits (typed on the tablet with their user id); everyone else a \
                   password of at least 8 characters, which they change at their first sign-in.",
    request_body = NewUser,
    responses(
        (status = 201, description = "Created", body = user::User),
        (status = 400, description = "An input is refused: `field` names it", body = crate::api::ErrorBody),
        (status = 409, description = "The user name is taken", body = crate::api::ErrorBody),
        (status = 503, description = "The database is not available", body = crate::api::ErrorBody),
    )
)]
async fn api_create(
    State(state): State<WebState>,
    ApiJson(body): ApiJson<NewUser>,
) -> Result<(axum::http::StatusCode, axum::Json<user::User>), ApiError> {
    let u = user::add_user(&state.pool, &body.username, &body.password, body.role, true).await?;
    Ok((axum::http::StatusCode::CREATED, axum::Json(u)))
}

/// The body of `PUT /api/v1/users/{id}`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct UserUpdate {
    username: String,
    role: Role,
    active: bool,
}

#[utoipa::path(
    put,
    path = "/api/v1/users/{id}",
    tag = "users",
    operation_id = "update_user",
    summary = "Change a user's name, role or whether they are active",
    params(("id" = i32, Path, description = "The user's id")),
    request_body = UserUpdate,
    responses(
        (status = 200, description = "Saved", body = user::User),
        (status = 400, description = "An input is refused: `field` names it", body = crate::api::ErrorBody),
        (status = 404, description = "No such user", body = crate::api::ErrorBody),
        (status = 409, description = "The user name is taken", body = crate::api::ErrorBody),
        (status = 503, description = "The database is not available", body = crate::api::ErrorBody),
    )
)]
async fn api_update(
    State(state): State<WebState>,
    Path(id): Path<i32>,
    ApiJson(body): ApiJson<UserUpdate>,
) -> Result<axum::Json<user::User>, ApiError> {
    Ok(axum::Json(user::update_user(&state.pool, id, &body.username, body.role, body.active).await?))
}

/// The body of `PUT /api/v1/users/{id}/password`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct NewPassword {
    password: String,
}

#[utoipa::path(
    put,
    path = "/api/v1/users/{id}/password",
    tag = "users",
    operation_id = "set_user_password",
    summary = "Set a user's password or PIN",
    description = "The user's sessions end; a person who signs in to the browser chooses a new password at their \
                   next sign-in.",
    params(("id" = i32, Path, description = "The user's id")),
    request_body = NewPassword,
    responses(
        (status = 204, description = "Set"),
        (status = 400, description = "The password does not suit the user's role: `field` says so", body = crate::api::ErrorBody),
        (status = 404, description = "No such user", body = crate::api::ErrorBody),
        (status = 503, description = "The database is not available", body = crate::api::ErrorBody),
    )
)]
async fn api_password(
    State(state): State<WebState>,
    Path(id): Path<i32>,
    ApiJson(body): ApiJson<NewPassword>,
) -> Result<axum::http::StatusCode, ApiError> {
    user::set_password_by_id(&state.pool, id, &body.password, false, None).await?;
    Ok(axum::http::StatusCode::NO_CONTENT)
}
