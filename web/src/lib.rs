//! The web service: a health page that says whether the server can reach its database, the reference
//! system's read-only OEE endpoints and its pages' form endpoints (jobs, production and history edits,
//! sent to ingest as commands), our own v1 read APIs (OEE reports, telemetry), and the operator tablet page.

pub mod access;
mod account;
mod admin;
mod api;
mod board;
mod chart;
mod explain;
mod export;
mod form;
mod graphs;
mod help;
mod jobs_api;
mod machine;
mod oee_api;
mod openapi;
mod operator;
mod page;
mod reference_api;
mod reference_forms;
mod status;
mod tables;
mod telemetry_api;

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use oee_core::request::Replies;
use sqlx::PgPool;
use std::sync::Arc;
use std::time::Duration;
use tokio::task::JoinHandle;

/// Shared by the web handlers.
#[derive(Clone)]
pub(crate) struct WebState {
    pool: PgPool,
    /// The plant's time zone: days and shifts are local.
    tz: chrono_tz::Tz,
    /// How reports are computed and bounded.
    oee: oee_core::config::OeeConfig,
    /// The broker as the server reaches it (with the server's credentials), and the last probe of it and
    /// of ingest: probes run at most once a second, however often `/health` is asked.
    mqtt: Arc<oee_core::config::MqttConfig>,
    last_probe: Arc<tokio::sync::Mutex<Option<(std::time::Instant, oee_core::health::Probe)>>>,
    /// Sessions and sign-in.
    web: Arc<oee_core::config::WebConfig>,
    /// The compiled page templates.
    pages: Arc<page::Pages>,
    /// Sends the forms' changes to ingest and waits for its verdicts, at most `reply_timeout`.
    replies: Arc<Replies>,
    reply_timeout: Duration,
    /// Seals the commands only the server may send (a tablet's operator logged out from here).
    seal: Arc<oee_core::access::ServerSeal>,
    /// The API document as served (`GET /api/v1/openapi.json`).
    api_doc: axum::body::Bytes,
    /// The whole configuration, for the settings page (which shows what the file decides).
    config: Arc<oee_core::config::Config>,
}

/// A running web side: its routes, and the MQTT tasks behind its forms (stopped on drop).
pub struct Web {
    pub router: Router,
    tasks: Vec<JoinHandle<()>>,
}

impl Drop for Web {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

/// Connects the web side's MQTT client and builds its routes, each behind the access its entry in
/// [`access`]'s table names. `config` is the server's configuration; `mqtt` is how the server's own clients
/// reach the broker (logged in as the server); changes sent to ingest wait `reply_timeout` for its verdict.
/// `seal` is the server's seal, which ingest asks of tablet session commands (the bridge's too).
/// `bridge_api` is the bridge's part of the API document (`oee_bridge::openapi()`) when the bridge runs in
/// this server: `GET /api/v1/openapi.json` serves it merged with the web side's.
pub fn start(
    pool: PgPool,
    tz: chrono_tz::Tz,
    config: &oee_core::config::Config,
    mqtt: oee_core::config::MqttConfig,
    reply_timeout: Duration,
    seal: Arc<oee_core::access::ServerSeal>,
    bridge_api: Option<utoipa::openapi::OpenApi>,
) -> Web {
    let (replies, tasks) = Replies::start(&mqtt, "web", true);
    let state = WebState {
        pool,
        tz,
        oee: config.oee.clone(),
        mqtt: Arc::new(mqtt),
        last_probe: Arc::default(),
        web: Arc::new(config.web.clone()),
        pages: Arc::new(page::Pages::new()),
        replies,
        reply_timeout,
        seal,
        api_doc: openapi::document_bytes(bridge_api),
        config: Arc::new(config.clone()),
    };
    let mut router = Router::new();
    for route in access::table() {
        let guarded = access::Guarded { state: state.clone(), access: route.access, answers: route.answers };
        let handler = route.handler.route_layer(axum::middleware::from_fn_with_state(guarded, access::guard));
        router = router.route(route.path, handler);
    }
    let router =
        router.fallback(not_found).with_state(state).layer(axum::middleware::from_fn(access::security_headers));
    Web { router, tasks }
}

/// Any path no route serves: 404 with a message, JSON under `/api/`, a page elsewhere.
async fn not_found(State(state): State<WebState>, uri: axum::http::Uri) -> Response {
    let path = uri.path();
    if path.starts_with("/api/") {
        let message = format!("there is no API route {path}: /api/v1/openapi.json lists them");
        return (StatusCode::NOT_FOUND, axum::Json(serde_json::json!({ "message": message }))).into_response();
    }
    let body = page::Message {
        heading: "Page not found".into(),
        text: format!("There is no page at {path}. The navigation above leads to every page; /help explains them."),
    };
    let page = page::Page::new(&state, None, "Page not found", "", body).await;
    let mut r = state.pages.render("message", &page);
    *r.status_mut() = StatusCode::NOT_FOUND;
    r
}

/// Every web route's method, path and access, for tests that try each route as each kind of caller.
pub fn route_table() -> Vec<(axum::http::Method, &'static str, access::Access)> {
    access::table().into_iter().map(|r| (r.method, r.path, r.access)).collect()
}

/// `GET /health`: each part of the server, `"ok"` or what is wrong with it: `database` (this process's
/// connection), `broker` (a connection as the server) and `ingest` (a ping answered through the broker
/// after a query of ingest's own database connection). 200 when every part is ok, 503 otherwise.
/// `maintenance` shows the last run of each maintenance job (retention, compression, telemetry rollups);
/// a failed job shows `"ok": false` and its error but leaves the status alone: the server still serves, and
/// the job tries again at its next time.
pub(crate) async fn health(State(state): State<WebState>) -> Response {
    let database = oee_core::store::ping(&state.pool).await.map_err(|e| e.to_string());
    let probe = {
        let mut last = state.last_probe.lock().await;
        match &*last {
            Some((at, p)) if at.elapsed() < std::time::Duration::from_secs(1) => p.clone(),
            _ => {
                let p = oee_core::health::probe(&state.mqtt).await;
                *last = Some((std::time::Instant::now(), p.clone()));
                p
            }
        }
    };
    let word = |r: &Result<(), String>| match r {
        Ok(()) => "ok".to_string(),
        Err(e) => e.clone(),
    };
    let ok = database.is_ok() && probe.broker.is_ok() && probe.ingest.is_ok();
    let body = serde_json::json!({
        "status": if ok { "ok" } else { "degraded" },
        "database": word(&database),
        "broker": word(&probe.broker),
        "ingest": word(&probe.ingest),
        "maintenance": maintenance(&state.pool).await,
    });
    let status = if ok { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    (status, axum::Json(body)).into_response()
}

/// The last run of each maintenance job, by job name; what is wrong when they cannot be read.
async fn maintenance(pool: &PgPool) -> serde_json::Value {
    match oee_core::store::retention::maintenance_runs(pool).await {
        Ok(runs) => runs
            .into_iter()
            .map(|r| {
                let run = serde_json::json!({
                    "last_run": r.started_at,
                    "finished_at": r.finished_at,
                    "ok": r.ok,
                    "rows": r.rows,
                    "chunks": r.chunks,
                    "message": r.message,
                });
                (r.job, run)
            })
            .collect::<serde_json::Map<_, _>>()
            .into(),
        Err(e) => format!("cannot read the maintenance jobs' runs: {e}").into(),
    }
}
