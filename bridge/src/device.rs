//! The reference system's IoT device API: `POST /api/machine-state-change` and `GET /api/activity-codes`.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use oee_core::payload::{StateCommand, lenient_i32};
use oee_core::store::code::list_codes;
use oee_core::topic;
use oee_core::verdict::Refusal;
use serde_json::Value;

use crate::{ApiError, BridgeState};

/// `POST /api/machine-state-change` with `{"machine_id", "machine_state" | "activity_code_id", "user_id"?}`:
/// 200 with an empty body once ingest has committed the change; the reference's statuses otherwise.
pub(crate) async fn machine_state_change(
    State(state): State<BridgeState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    if !is_json(&headers) {
        return Err(ApiError::NotJson);
    }
    let value: Value = serde_json::from_slice(&body)
        .map_err(|e| ApiError::Refused(Refusal::Malformed(format!("the body is not valid JSON: {e}"))))?;
    let obj = value
        .as_object()
        .ok_or_else(|| ApiError::Refused(Refusal::Malformed("the body must be a JSON object".into())))?;
    let machine_id = lenient_i32(obj, "machine_id")
        .map_err(ApiError::Refused)?
        .ok_or(ApiError::Refused(Refusal::MissingField("machine_id")))?;
    let command = StateCommand::from_object(obj).map_err(ApiError::Refused)?;
    if machine_id < 1 {
        return Err(ApiError::Refused(Refusal::UnknownMachine(machine_id.to_string())));
    }
    let verdict = state.replies.send(topic::state(&machine_id.to_string()), command, state.timeout).await?;
    if !verdict.ok {
        return Err(ApiError::Verdict(verdict));
    }
    Ok((StatusCode::OK, [(header::CONTENT_TYPE, "text/html; charset=utf-8")], "").into_response())
}

pub(crate) fn is_json(headers: &HeaderMap) -> bool {
    headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).and_then(|v| v.split(';').next()).is_some_and(
        |mime| {
            let mime = mime.trim().to_ascii_lowercase();
            mime == "application/json" || (mime.starts_with("application/") && mime.ends_with("+json"))
        },
    )
}

/// `GET /api/activity-codes`: every code, active or not, as the reference lists them (keys sorted,
/// compact, trailing newline).
pub(crate) async fn activity_codes(State(state): State<BridgeState>) -> Result<Response, ApiError> {
    let list: Vec<Value> = list_codes(&state.pool)
        .await?
        .into_iter()
        .map(|c| {
            // serde_json's default map is ordered by key, as Flask's jsonify sorts them.
            serde_json::json!({
                "graph_colour": c.graph_colour,
                "id": c.id,
                "long_description": c.long_description,
                "short_description": c.short_description,
            })
        })
        .collect();
    let mut body = serde_json::to_string(&list).unwrap_or_else(|_| "[]".into());
    body.push('\n');
    Ok(([(header::CONTENT_TYPE, "application/json")], body).into_response())
}
