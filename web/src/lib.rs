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

/// Shared by the web handlers.
#[derive(Clone)]
pub(crate) struct WebState {
    pool: PgPool,
    /// The plant's time zone: days and shifts are local.
    tz: chrono_tz::Tz,
    /// How reports are computed and bounded.
    oee: oee_core::config::OeeConfig,
}

/// The web routes.
pub fn router(pool: PgPool, tz: chrono_tz::Tz, oee: oee_core::config::OeeConfig) -> Router {
    Router::new()
        .route("/health", get(health))
        .route("/", get(home))
        .route("/api/oee", get(reference_api::oee))
        .route("/api/activity-durations", get(reference_api::activity_durations))
        .route("/api/v1/oee", get(oee_api::oee))
        .route("/api/v1/telemetry", get(telemetry_api::telemetry))
        .merge(operator::routes())
        .with_state(WebState { pool, tz, oee })
}

/// `GET /health`: 200 `{"status":"ok","database":"ok"}` when the database answers, 503 otherwise.
async fn health(State(state): State<WebState>) -> Response {
    match oee_core::store::ping(&state.pool).await {
        Ok(()) => axum::Json(serde_json::json!({ "status": "ok", "database": "ok" })).into_response(),
        Err(e) => (
            StatusCode::SERVICE_UNAVAILABLE,
            axum::Json(serde_json::json!({ "status": "degraded", "database": e.to_string() })),
        )
            .into_response(),
    }
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
