//! Signing in and out, and changing one's own password.
//!
//! The sign-in form carries a CSRF token matched against a short-lived cookie (there is no session yet);
//! failures are counted per user name and per address, and past the configured number the form refuses
//! with 429 until the window has passed. A refused sign-in answers as the reference does (302 to `/login`
//! with "Invalid username or password"), whether the name or the password was wrong.

use std::net::SocketAddr;

use axum::Extension;
use axum::extract::{ConnectInfo, Form, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::Utc;
use oee_core::store::{account, seed, user};
use serde::{Deserialize, Serialize};

use crate::WebState;
use crate::access::{Caller, SESSION_COOKIE, cookie, local_path, session_limits};
use crate::page::{Field, Page, place_error};

/// The cookie that carries the sign-in form's CSRF token until a session exists.
const SIGN_IN_CSRF_COOKIE: &str = "oee_sign_in";
/// The cookie that tells the sign-in page why the last attempt failed (a code, never text).
const SIGN_IN_NOTICE_COOKIE: &str = "oee_sign_in_notice";

/// `GET /`: the status page when signed in, else the sign-in page (C1).
pub(crate) async fn home(caller: Option<Extension<Caller>>) -> Response {
    match caller {
        Some(_) => crate::page::found("/status"),
        None => crate::page::found("/login"),
    }
}

#[derive(Debug, Deserialize)]
pub(crate) struct NextQuery {
    #[serde(default)]
    next: String,
}

#[derive(Serialize)]
struct SignInBody {
    csrf_token: String,
    next: String,
    username: String,
    message: Option<&'static str>,
}

fn notice_text(code: &str) -> Option<&'static str> {
    Some(match code {
        "invalid" => "Invalid username or password",
        "expired" => "The sign-in form had expired: please sign in again",
        "inactive" => "This account is deactivated: ask an administrator",
        "tablet" => "Operators sign in on the tablets only: ask an administrator for a viewer account",
        "signed_out" => "You have signed out",
        "everywhere" => "You have signed out on every device",
        _ => return None,
    })
}

fn set_cookie(r: &mut Response, value: String) {
    if let Ok(v) = HeaderValue::from_str(&value) {
        r.headers_mut().append(header::SET_COOKIE, v);
    }
}

fn secure(state: &WebState) -> &'static str {
    if state.config.http.public_url.trim().to_ascii_lowercase().starts_with("https://") { "; Secure" } else { "" }
}

/// A page that answers and leaves `code` for the sign-in page to explain.
fn to_sign_in(state: &WebState, code: &str) -> Response {
    let mut r = crate::page::found("/login");
    set_cookie(
        &mut r,
        format!("{SIGN_IN_NOTICE_COOKIE}={code}; Path=/login; Max-Age=120; HttpOnly; SameSite=Lax{}", secure(state)),
    );
    r
}

/// `GET /login`: the sign-in form; a signed-in person goes to the status page.
pub(crate) async fn sign_in_page(
    State(state): State<WebState>,
    caller: Option<Extension<Caller>>,
    headers: HeaderMap,
    Query(q): Query<NextQuery>,
) -> Response {
    if caller.is_some() {
        return crate::page::found("/status");
    }
    sign_in_form(&state, &headers, &q.next, "", StatusCode::OK, None).await
}

async fn sign_in_form(
    state: &WebState,
    headers: &HeaderMap,
    next: &str,
    username: &str,
    status: StatusCode,
    message: Option<&'static str>,
) -> Response {
    let csrf_token = oee_core::password::new_secret();
    let message = message.or_else(|| cookie(headers, SIGN_IN_NOTICE_COOKIE).and_then(notice_text));
    let body = SignInBody {
        csrf_token: csrf_token.clone(),
        next: local_path(next).unwrap_or("").to_string(),
        username: username.to_string(),
        message,
    };
    let page = Page::new(state, None, "Sign in", "", body).await;
    let mut r = state.pages.render("sign_in", &page);
    *r.status_mut() = status;
    let secure = secure(state);
    set_cookie(&mut r, format!("{SIGN_IN_CSRF_COOKIE}={csrf_token}; Path=/login; HttpOnly; SameSite=Lax{secure}"));
    set_cookie(&mut r, format!("{SIGN_IN_NOTICE_COOKIE}=; Path=/login; Max-Age=0; HttpOnly; SameSite=Lax{secure}"));
    r
}

#[derive(Debug, Deserialize)]
pub(crate) struct SignInForm {
    #[serde(default)]
    username: String,
    #[serde(default)]
    password: String,
    #[serde(default)]
    csrf_token: String,
    #[serde(default)]
    next: String,
}

/// `POST /login`.
pub(crate) async fn sign_in(
    State(state): State<WebState>,
    peer: Option<Extension<ConnectInfo<SocketAddr>>>,
    headers: HeaderMap,
    Form(form): Form<SignInForm>,
) -> Response {
    match try_sign_in(
        &state,
        peer.map(|Extension(ConnectInfo(a))| a.ip().to_string()).unwrap_or_default(),
        &headers,
        form,
    )
    .await
    {
        Ok(r) => r,
        Err(e) => {
            tracing::warn!("sign-in: {e}");
            (StatusCode::SERVICE_UNAVAILABLE, format!("sign-in is not available: {e}")).into_response()
        }
    }
}

async fn try_sign_in(
    state: &WebState,
    address: String,
    headers: &HeaderMap,
    form: SignInForm,
) -> Result<Response, oee_core::Error> {
    let expected = cookie(headers, SIGN_IN_CSRF_COOKIE).unwrap_or("");
    if expected.is_empty() || !oee_core::password::same_in_constant_time(expected, &form.csrf_token) {
        return Ok(to_sign_in(state, "expired"));
    }
    let now = Utc::now();
    let window = chrono::Duration::minutes(i64::from(state.web.sign_in_window_minutes.max(1)));
    let failures = account::sign_in_failures(&state.pool, &form.username, &address, now - window).await?;
    if failures.for_user >= i64::from(state.web.sign_in_max_failures_per_user)
        || failures.from_address >= i64::from(state.web.sign_in_max_failures_per_address)
    {
        let r = sign_in_form(
            state,
            headers,
            &form.next,
            &form.username,
            StatusCode::TOO_MANY_REQUESTS,
            Some("Too many failed sign-ins: wait a few minutes and try again, or ask an administrator"),
        )
        .await;
        return Ok(r);
    }
    let Some(who) = user::authenticate(&state.pool, &form.username, &form.password).await? else {
        account::record_sign_in_failure(&state.pool, &form.username, &address, now, now - window).await?;
        return Ok(to_sign_in(state, "invalid"));
    };
    if !who.active {
        return Ok(to_sign_in(state, "inactive"));
    }
    if !who.role.signs_in_to_web() {
        return Ok(to_sign_in(state, "tablet"));
    }
    account::clear_sign_in_failures(&state.pool, &who.username).await?;
    // The well-known first-start password is never kept, whoever set it.
    let must_change = who.must_change_password || form.password == seed::DEFAULT_ADMIN_PASSWORD;
    if must_change && !who.must_change_password {
        user::require_password_change(&state.pool, who.id).await?;
    }
    let session = account::open_session(&state.pool, who.id, &address, now, session_limits(&state.web)).await?;
    let target = if must_change {
        "/account/password".to_string()
    } else {
        local_path(&form.next).filter(|n| !n.starts_with("/login")).unwrap_or("/status").to_string()
    };
    let mut r = crate::page::found(&target);
    let secure = secure(state);
    let max_age = i64::from(state.web.session_lifetime_hours.max(1)) * 3600;
    set_cookie(
        &mut r,
        format!("{SESSION_COOKIE}={}; Path=/; Max-Age={max_age}; HttpOnly; SameSite=Lax{secure}", session.secret),
    );
    set_cookie(&mut r, format!("{SIGN_IN_CSRF_COOKIE}=; Path=/login; Max-Age=0; HttpOnly; SameSite=Lax{secure}"));
    tracing::info!(user = %who.username, %address, "signed in");
    Ok(r)
}

/// `GET /logout`: signing out takes a POST (a link or an image must not sign anyone out), as in C7.
pub(crate) async fn logout_needs_post() -> Response {
    (StatusCode::METHOD_NOT_ALLOWED, [(header::ALLOW, "OPTIONS, POST")], "Sign out with the button (POST /logout)")
        .into_response()
}

fn signed_out(state: &WebState, code: &str) -> Response {
    let mut r = to_sign_in(state, code);
    set_cookie(&mut r, format!("{SESSION_COOKIE}=; Path=/; Max-Age=0; HttpOnly; SameSite=Lax{}", secure(state)));
    r
}

/// `POST /logout`: ends this session.
pub(crate) async fn sign_out(State(state): State<WebState>, Extension(c): Extension<Caller>) -> Response {
    if let Some(s) = &c.session
        && let Err(e) = account::end_session(&state.pool, &s.digest).await
    {
        return (StatusCode::SERVICE_UNAVAILABLE, format!("could not sign out: {e}")).into_response();
    }
    signed_out(&state, "signed_out")
}

/// `POST /logout-everywhere`: ends every session of the caller (a lost phone, a shared PC).
pub(crate) async fn sign_out_everywhere(State(state): State<WebState>, Extension(c): Extension<Caller>) -> Response {
    if let Some(id) = c.user_id
        && let Err(e) = account::end_sessions_of(&state.pool, id).await
    {
        return (StatusCode::SERVICE_UNAVAILABLE, format!("could not sign out: {e}")).into_response();
    }
    signed_out(&state, "everywhere")
}

#[derive(Serialize)]
struct PasswordBody {
    forced: bool,
    fields: Vec<Field>,
    error: Option<String>,
}

fn password_fields() -> Vec<Field> {
    vec![
        Field::password("current_password", "Current password").required(),
        Field::password("password", "New password")
            .required()
            .hint(format!("At least {} characters.", user::MIN_WEB_PASSWORD)),
        Field::password("confirm_password", "New password again").required(),
    ]
}

async fn password_form(state: &WebState, c: &Caller, fields: Vec<Field>, error: Option<String>) -> Response {
    let forced = c.session.as_ref().is_some_and(|s| s.must_change_password);
    let page = Page::new(state, Some(c), "Change your password", "", PasswordBody { forced, fields, error }).await;
    state.pages.render("password", &page)
}

/// `GET /account/password`.
pub(crate) async fn password_page(State(state): State<WebState>, Extension(c): Extension<Caller>) -> Response {
    password_form(&state, &c, password_fields(), None).await
}

#[derive(Debug, Deserialize)]
pub(crate) struct PasswordForm {
    #[serde(default)]
    current_password: String,
    #[serde(default)]
    password: String,
    #[serde(default)]
    confirm_password: String,
}

/// `POST /account/password`: the caller's own password, after the current one; other sessions end.
pub(crate) async fn change_password(
    State(state): State<WebState>,
    Extension(c): Extension<Caller>,
    Form(form): Form<PasswordForm>,
) -> Response {
    let (Some(id), Some(session)) = (c.user_id, c.session.as_ref()) else {
        return (StatusCode::FORBIDDEN, "API tokens have no password").into_response();
    };
    let mut fields = password_fields();
    let mut error = None;
    let outcome = async {
        if user::authenticate(&state.pool, &c.name, &form.current_password).await?.is_none_or(|u| u.id != id) {
            return Err(oee_core::Error::field("current_password", "this is not your current password"));
        }
        if form.password != form.confirm_password {
            return Err(oee_core::Error::field("confirm_password", "the two new passwords differ"));
        }
        if form.password == form.current_password || form.password == seed::DEFAULT_ADMIN_PASSWORD {
            return Err(oee_core::Error::field("password", "choose a password you have not used here"));
        }
        user::set_password_by_id(&state.pool, id, &form.password, true, Some(&session.digest)).await
    }
    .await;
    match outcome {
        Ok(()) => {
            crate::page::flash(&state, &c, "Your password was changed; your other sessions were signed out").await;
            crate::page::found("/status")
        }
        Err(e) => {
            place_error(&mut fields, &mut error, &e);
            crate::page::refused(password_form(&state, &c, fields, error).await, &e)
        }
    }
}
