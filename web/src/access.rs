//! Who may use which web route, decided in one table ([`table`]) and enforced by one middleware ([`guard`]).
//!
//! A caller is a person with a browser session (cookie), a script with an API token (`Authorization:
//! Bearer`, on `/api/` routes only), or nobody. Each route names the least role it needs; a token acts with
//! its scope's role (read: viewer, admin: admin). Anonymous callers of a page are sent to `/login?next=…`,
//! of an API get 401; callers whose role is too low get 403. A write (any method but GET, HEAD, OPTIONS)
//! made with a session cookie must carry the session's CSRF token (header `X-CSRF-Token`, or the field
//! `csrf_token` of a URL-encoded or multipart form); tokens need none, since a browser never sends them by
//! itself. A person whose password an administrator set (or the seeded one) may only change it or sign out
//! until they have. A route may answer its refusals as the reference's form endpoints did ([`Answers`]).

use axum::body::Body;
use axum::extract::{Request, State};
use axum::handler::Handler;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::MethodRouter;
use chrono::Utc;
use oee_core::access::Role;
use oee_core::store::account::{self, Session, SessionLimits};

use crate::WebState;

/// The least a caller must be to use a route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Anyone, signed in or not (sign-in, help, health, the operator page, the reference's open endpoints).
    Public,
    /// A signed-in person or a token whose role is at least this.
    Role(Role),
}

/// How a route answers a request it turns away.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Answers {
    /// Our own way: a redirect to sign in (pages), or a status with a JSON `message`.
    Ours,
    /// As the reference's form endpoints (§5.4): a missing or wrong CSRF token is 400 `Form error`
    /// (contract C54); other refusals as [`Answers::Ours`].
    ReferenceForm,
}

/// One route: method, path (axum's syntax), who may use it, how it refuses, and its handler.
pub(crate) struct Route {
    pub method: Method,
    pub path: &'static str,
    pub access: Access,
    pub answers: Answers,
    pub handler: MethodRouter<WebState>,
}

impl Route {
    fn new(method: Method, path: &'static str, access: Access, handler: MethodRouter<WebState>) -> Route {
        Route { method, path, access, answers: Answers::Ours, handler }
    }

    pub(crate) fn get<H: Handler<T, WebState>, T: 'static>(path: &'static str, access: Access, h: H) -> Route {
        Route::new(Method::GET, path, access, axum::routing::get(h))
    }

    pub(crate) fn post<H: Handler<T, WebState>, T: 'static>(path: &'static str, access: Access, h: H) -> Route {
        Route::new(Method::POST, path, access, axum::routing::post(h))
    }

    pub(crate) fn put<H: Handler<T, WebState>, T: 'static>(path: &'static str, access: Access, h: H) -> Route {
        Route::new(Method::PUT, path, access, axum::routing::put(h))
    }

    pub(crate) fn delete<H: Handler<T, WebState>, T: 'static>(path: &'static str, access: Access, h: H) -> Route {
        Route::new(Method::DELETE, path, access, axum::routing::delete(h))
    }

    /// Refuses as the reference's form endpoints did ([`Answers::ReferenceForm`]).
    pub(crate) fn reference_form(self) -> Route {
        Route { answers: Answers::ReferenceForm, ..self }
    }
}

/// Every web route and who may use it: the one place where web access is decided.
pub(crate) fn table() -> Vec<Route> {
    use crate::reference_forms as forms;
    use Access::{Public, Role as R};
    use Role::{Admin, Supervisor, Viewer};
    let mut routes = vec![
        Route::get("/health", Public, crate::health),
        Route::get("/", Public, crate::account::home),
        Route::get("/login", Public, crate::account::sign_in_page),
        Route::post("/login", Public, crate::account::sign_in),
        Route::get("/logout", Public, crate::account::logout_needs_post),
        Route::post("/logout", R(Viewer), crate::account::sign_out),
        Route::post("/logout-everywhere", R(Viewer), crate::account::sign_out_everywhere),
        Route::get("/account/password", R(Viewer), crate::account::password_page),
        Route::post("/account/password", R(Viewer), crate::account::change_password),
        Route::get("/static/app.css", Public, crate::page::stylesheet),
        // The next issue's pages: the navigation leads somewhere already.
        Route::get("/tables", R(Viewer), crate::tables::page),
        Route::post("/tables", R(Viewer), crate::tables::reference_form).reference_form(),
        // The reference's read-only OEE endpoints and our read APIs.
        Route::get("/api/oee", R(Viewer), crate::reference_api::oee),
        Route::get("/api/activity-durations", R(Viewer), crate::reference_api::activity_durations),
        Route::get("/api/v1/oee", R(Viewer), crate::oee_api::oee),
        Route::get("/api/v1/telemetry", R(Viewer), crate::telemetry_api::telemetry),
        Route::get("/api/v1/telemetry/keys", R(Viewer), crate::telemetry_api::keys),
        Route::get("/api/v1/tables/{table}", R(Viewer), crate::tables::api),
        Route::get("/api/v1/jobs", R(Viewer), crate::jobs_api::list),
        Route::get("/api/v1/jobs/{id}", R(Viewer), crate::jobs_api::one),
        // The reference's form endpoints of its status and machine pages (§5.4): changes of machine state,
        // sent to ingest as commands.
        Route::post("/api/start-job", R(Supervisor), forms::start_job).reference_form(),
        Route::post("/api/end-job", R(Supervisor), forms::end_job).reference_form(),
        Route::post("/api/production", R(Supervisor), forms::production).reference_form(),
        Route::post("/api/past-production", R(Supervisor), forms::past_production).reference_form(),
        Route::put("/api/production/{id}", R(Supervisor), forms::edit_production).reference_form(),
        Route::post("/api/new-activity", R(Supervisor), forms::new_activity).reference_form(),
        Route::put("/api/activity/{id}", R(Supervisor), forms::edit_activity).reference_form(),
        Route::post("/api/new-past-job", R(Supervisor), forms::new_past_job).reference_form(),
        Route::post("/api/edit-past-job", R(Supervisor), forms::edit_past_job).reference_form(),
        Route::get("/api/v1/openapi.json", Public, crate::openapi::serve),
    ];
    routes.extend(crate::status::routes());
    routes.extend(crate::board::routes());
    routes.extend(crate::help::routes());
    routes.extend(crate::machine::routes());
    routes.extend(crate::graphs::routes());
    routes.extend(crate::explain::routes());
    routes.extend(crate::operator::routes());
    routes.extend(crate::admin::routes());
    let _ = Admin;
    routes
}

/// Paths a person who must change their password may still use.
const WHILE_PASSWORD_MUST_CHANGE: &[&str] = &["/account/password", "/logout", "/static/app.css"];

/// The session cookie's name.
pub(crate) const SESSION_COOKIE: &str = "oee_session";

/// Who is calling.
#[derive(Debug, Clone)]
pub(crate) struct Caller {
    pub user_id: Option<i32>,
    pub name: String,
    pub role: Role,
    /// Set when the caller came with a session cookie (not a token).
    pub session: Option<Session>,
}

impl Caller {
    /// The session's CSRF token, for forms (empty for token callers, who post no forms).
    pub(crate) fn csrf(&self) -> &str {
        self.session.as_ref().map_or("", |s| s.csrf_token.as_str())
    }
}

/// The value of cookie `name` in the request, if any.
pub(crate) fn cookie<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.trim())
}

fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

pub(crate) fn session_limits(cfg: &oee_core::config::WebConfig) -> SessionLimits {
    SessionLimits {
        idle: chrono::Duration::minutes(i64::from(cfg.session_idle_minutes.max(1))),
        lifetime: chrono::Duration::hours(i64::from(cfg.session_lifetime_hours.max(1))),
    }
}

/// Finds the caller of a request: a token on API paths, else a session cookie.
pub(crate) async fn caller(state: &WebState, headers: &HeaderMap, path: &str) -> Result<Option<Caller>, Refusal> {
    let now = Utc::now();
    if path.starts_with("/api/")
        && let Some(secret) = bearer(headers)
    {
        return match account::token(&state.pool, secret, now).await? {
            Some(t) => Ok(Some(Caller { user_id: None, name: t.name.clone(), role: t.scope.role(), session: None })),
            None => Err(Refusal::BadToken),
        };
    }
    let Some(secret) = cookie(headers, SESSION_COOKIE).filter(|s| !s.is_empty()) else { return Ok(None) };
    let found = account::session(&state.pool, secret, now, session_limits(&state.web)).await?;
    Ok(found.map(|s| Caller { user_id: Some(s.user_id), name: s.username.clone(), role: s.role, session: Some(s) }))
}

/// Why a request was turned away.
#[derive(Debug)]
pub(crate) enum Refusal {
    /// Nobody signed in, on a page: go and sign in.
    SignIn {
        next: String,
    },
    /// Nobody signed in (or an unknown token), on an API.
    Unauthenticated(&'static str),
    BadToken,
    Forbidden(Role),
    MustChangePassword,
    Csrf,
    Database(oee_core::Error),
}

impl From<oee_core::Error> for Refusal {
    fn from(e: oee_core::Error) -> Refusal {
        Refusal::Database(e)
    }
}

impl Refusal {
    /// The answer of a route that refuses as `answers` says.
    pub(crate) fn answer(self, answers: Answers) -> Response {
        match (answers, &self) {
            (Answers::ReferenceForm, Refusal::Csrf) => (
                StatusCode::BAD_REQUEST,
                [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
                crate::reference_forms::FORM_ERROR,
            )
                .into_response(),
            _ => self.into_response(),
        }
    }
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        let (status, message) = match self {
            Refusal::SignIn { next } => return crate::page::found(&format!("/login?next={}", percent_encode(&next))),
            Refusal::MustChangePassword => return crate::page::found("/account/password"),
            Refusal::Unauthenticated(m) => (StatusCode::UNAUTHORIZED, m.to_string()),
            Refusal::BadToken => (
                StatusCode::UNAUTHORIZED,
                "this API token is unknown or revoked: ask an administrator for a new one".to_string(),
            ),
            Refusal::Forbidden(role) => (
                StatusCode::FORBIDDEN,
                format!("this needs the {role} role or higher: ask an administrator if you need it"),
            ),
            Refusal::Csrf => (
                StatusCode::FORBIDDEN,
                "the form's security token is missing or out of date: reload the page and try again".to_string(),
            ),
            Refusal::Database(e) => {
                tracing::warn!("web access check: {e}");
                (StatusCode::SERVICE_UNAVAILABLE, format!("the database is not available: {e}"))
            }
        };
        let mut r = (status, axum::Json(serde_json::json!({ "message": message }))).into_response();
        if status == StatusCode::UNAUTHORIZED {
            r.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        r
    }
}

/// Percent-encodes everything but unreserved characters (for `next=`).
pub(crate) fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// A `next` target that stays on this server: a path starting with one `/`, without a host, backslashes or
/// control characters. Anything else: `None`.
pub(crate) fn local_path(next: &str) -> Option<&str> {
    let ok = next.starts_with('/')
        && !next.starts_with("//")
        && !next.contains('\\')
        && !next.chars().any(char::is_control)
        && next.len() <= 2000;
    ok.then_some(next)
}

/// The middleware state of one route: the web state, the route's access and how it refuses.
#[derive(Clone)]
pub(crate) struct Guarded {
    pub state: WebState,
    pub access: Access,
    pub answers: Answers,
}

/// Decides a request against its route's access, checks the CSRF token of session writes, and hands the
/// [`Caller`] (if any) to the handler as an extension.
pub(crate) async fn guard(State(g): State<Guarded>, req: Request, next: Next) -> Response {
    match admit(&g, req).await {
        Ok(req) => next.run(req).await,
        Err(refusal) => refusal.answer(g.answers),
    }
}

async fn admit(g: &Guarded, req: Request) -> Result<Request, Refusal> {
    let path = req.uri().path().to_string();
    let who = match caller(&g.state, req.headers(), &path).await {
        Ok(who) => who,
        // An unknown token on a public API route is still refused: a script should know its token is bad.
        Err(e) => return Err(e),
    };
    if let Access::Role(needed) = g.access {
        let Some(c) = &who else {
            if path.starts_with("/api/") {
                return Err(Refusal::Unauthenticated(
                    "sign in, or send an API token as `Authorization: Bearer <token>` (an administrator creates one)",
                ));
            }
            let next = req.uri().path_and_query().map_or(path.clone(), |p| p.as_str().to_string());
            return Err(Refusal::SignIn { next });
        };
        if c.session.as_ref().is_some_and(|s| s.must_change_password)
            && !WHILE_PASSWORD_MUST_CHANGE.contains(&path.as_str())
        {
            return Err(Refusal::MustChangePassword);
        }
        if c.role < needed {
            return Err(Refusal::Forbidden(needed));
        }
    }
    let mut req = req;
    let writes = !matches!(*req.method(), Method::GET | Method::HEAD | Method::OPTIONS);
    if writes && g.access != Access::Public && who.as_ref().is_some_and(|c| c.session.is_some()) {
        req = check_csrf(req, who.as_ref().map_or("", Caller::csrf)).await?;
    }
    if let Some(c) = who {
        req.extensions_mut().insert(c);
    }
    Ok(req)
}

/// Passes the request on when it carries `expected` in `X-CSRF-Token` or, for a URL-encoded or multipart
/// form, in its `csrf_token` field (the body is read and put back for the handler).
async fn check_csrf(req: Request, expected: &str) -> Result<Request, Refusal> {
    let same = |sent: &str| !expected.is_empty() && oee_core::password::same_in_constant_time(sent, expected);
    if let Some(sent) = req.headers().get("x-csrf-token").and_then(|v| v.to_str().ok()) {
        return if same(sent) { Ok(req) } else { Err(Refusal::Csrf) };
    }
    let (parts, body) = req.into_parts();
    // A body that is no readable form carries no token.
    let (bytes, fields) = crate::form::read(&parts.headers, body).await.map_err(|_| Refusal::Csrf)?;
    if !fields.iter().any(|(k, v)| k == "csrf_token" && same(v)) {
        return Err(Refusal::Csrf);
    }
    Ok(Request::from_parts(parts, Body::from(bytes)))
}

/// The page policy for everything the web side serves: files from this server only, no inline script, no
/// framing by other sites. Answers that set their own policy (the operator page) keep it.
const POLICY: &str = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
     connect-src 'self' ws: wss:; form-action 'self'; frame-ancestors 'none'; base-uri 'none'; object-src 'none'";

/// Adds the security headers to every web answer.
pub(crate) async fn security_headers(req: Request, next: Next) -> Response {
    let mut r = next.run(req).await;
    let h = r.headers_mut();
    if !h.contains_key(header::CONTENT_SECURITY_POLICY) {
        h.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(POLICY));
    }
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("same-origin"));
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn next_stays_on_this_server() {
        for ok in ["/status", "/machine?machine_id=1&date=2024-01-10", "/"] {
            assert_eq!(local_path(ok), Some(ok));
        }
        for bad in ["//evil.example/x", "https://evil.example", "/\\evil.example", "status", "", "/a\nb"] {
            assert_eq!(local_path(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn next_is_percent_encoded_as_the_reference_does() {
        assert_eq!(percent_encode("/status"), "%2Fstatus");
        assert_eq!(percent_encode("/machine?machine_id=1"), "%2Fmachine%3Fmachine_id%3D1");
    }

    #[test]
    fn cookies_are_found_among_others() {
        let mut h = HeaderMap::new();
        h.insert(header::COOKIE, HeaderValue::from_static("a=1; oee_session=abc ; b=2"));
        assert_eq!(cookie(&h, SESSION_COOKIE), Some("abc"));
        assert_eq!(cookie(&h, "c"), None);
    }

    #[test]
    fn every_route_is_listed_once_per_method() {
        let mut seen = std::collections::HashSet::new();
        for r in table() {
            assert!(seen.insert((r.method.clone(), r.path)), "{} {} twice", r.method, r.path);
        }
    }
}
