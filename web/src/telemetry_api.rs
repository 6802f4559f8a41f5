//! `GET /api/v1/telemetry?machine=N[&from=…&to=…][&limit=…]`: a machine's telemetry readings in a window,
//! oldest first, at most `limit` of them.

use std::collections::HashMap;

use axum::Json;
use axum::extract::{Query, State};
use chrono::{Duration, Utc};
use oee_core::store::report;
use serde_json::{Value, json};

use crate::WebState;
use crate::oee_api::{ApiError, bad, id_param, time_param};

/// `GET /api/v1/telemetry`.
#[utoipa::path(
    get,
    path = "/api/v1/telemetry",
    tag = "reports",
    operation_id = "telemetry_readings",
    summary = "A machine's telemetry readings in a window",
    description = "The readings stored for a machine, oldest first, at most `limit` of them (`truncated` says \
                   whether there were more).",
    params(
        ("machine" = i32, Query, description = "The machine's id"),
        ("from" = Option<String>, Query, description = "Start: an RFC 3339 time like 2026-01-05T06:00:00Z, or a date like 2026-01-05 meaning the start of that plant day; default: 24 hours before `to`"),
        ("to" = Option<String>, Query, description = "End: an RFC 3339 time like 2026-01-05T06:00:00Z, or a date like 2026-01-05 meaning the start of that plant day; default: now"),
        ("limit" = Option<i64>, Query, description = "The most readings to give, from 1 to the server's `oee.telemetry_max_rows` (its default)"),
    ),
    responses(
        (status = 200, description = "The readings", body = crate::openapi::TelemetryReport),
        (status = 400, description = "A parameter is wrong", body = crate::openapi::ReportError),
        (status = 404, description = "No such machine", body = crate::openapi::ReportError),
        (status = 503, description = "The database is not available", body = crate::openapi::ReportError),
    )
)]
pub(crate) async fn telemetry(
    State(state): State<WebState>,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Json<Value>, ApiError> {
    let machine = id_param(&q, "machine")?.ok_or_else(|| bad("give `machine=N`"))?;
    let to = time_param(&q, "to", state.tz)?.unwrap_or_else(Utc::now);
    let from = time_param(&q, "from", state.tz)?.unwrap_or(to - Duration::hours(24));
    if to <= from {
        return Err(bad(format!("`to` ({to}) must be after `from` ({from})")));
    }
    let max = state.oee.telemetry_max_rows;
    let limit = match q.get("limit") {
        None => max,
        Some(v) => match v.trim().parse::<i64>() {
            Ok(n) if (1..=max).contains(&n) => n,
            _ => return Err(bad(format!("`limit` must be a number from 1 to {max}, not `{v}`"))),
        },
    };
    if !report::machine_exists(&state.pool, machine).await? {
        return Err(ApiError::NotFound(format!("machine {machine} does not exist: check the id")));
    }
    let mut rows = report::telemetry_in_window(&state.pool, machine, from, to, limit + 1).await?;
    let truncated = rows.len() as i64 > limit;
    rows.truncate(limit as usize);
    let readings: Vec<Value> = rows.into_iter().map(|(ts, data)| json!({ "ts": ts, "data": data })).collect();
    Ok(Json(json!({
        "machine": machine,
        "from": from,
        "to": to,
        "limit": limit,
        "truncated": truncated,
        "readings": readings,
    })))
}
