//! The web service: a health page that says whether the server can reach its database, the reference
//! system's read-only OEE endpoints, our own v1 read APIs (OEE reports, telemetry), and the operator
//! tablet page.

mod oee_api;
mod operator;
mod reference_api;
mod telemetry_api;

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use sqlx::PgPool;
use std::sync::Arc;

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
}

/// The web routes. `mqtt` is how the server's own clients reach the broker (for `/health`).
pub fn router(
    pool: PgPool,
    tz: chrono_tz::Tz,
    oee: oee_core::config::OeeConfig,
    mqtt: oee_core::config::MqttConfig,
) -> Router {
    Router::new()
        .route("/health", get(health))
        .route("/", get(home))
        .route("/api/oee", get(reference_api::oee))
        .route("/api/activity-durations", get(reference_api::activity_durations))
        .route("/api/v1/oee", get(oee_api::oee))
        .route("/api/v1/telemetry", get(telemetry_api::telemetry))
        .merge(operator::routes())
        .with_state(WebState { pool, tz, oee, mqtt: Arc::new(mqtt), last_probe: Arc::default() })
}

/// `GET /health`: each part of the server, `"ok"` or what is wrong with it: `database` (this process's
/// connection), `broker` (a connection as the server) and `ingest` (a ping answered through the broker
/// after a query of ingest's own database connection). 200 when every part is ok, 503 otherwise.
async fn health(State(state): State<WebState>) -> Response {
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
    });
    let status = if ok { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    (status, axum::Json(body)).into_response()
}

async fn home() -> Html<&'static str> {
    Html(concat!(
        "<!doctype html><html lang=en><head><meta charset=utf-8><title>OEE server</title></head><body>",
        "<h1>OEE server</h1><p>Version ",
        env!("CARGO_PKG_VERSION"),
        ". Devices post to <code>/api/machine-state-change</code> or publish to ",
        "<code>oee/v1/machines/{id}/state</code>. <a href=\"/health\">Health</a>.</p></body></html>"
    ))
}
