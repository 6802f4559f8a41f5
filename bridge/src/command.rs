//! The v1 command API over HTTP: `POST /api/v1/machines/{machine}/{command}` carries the same JSON body as
//! the MQTT topic `oee/v1/machines/{machine}/{command}` and answers with ingest's verdict once it is
//! committed. Every command ingest knows (state, job start and end, production, telemetry, history edits)
//! is reachable this way without a route of its own.

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use oee_core::topic;
use oee_core::verdict::Refusal;
use serde_json::Value;

use crate::device::is_json;
use crate::{ApiError, BridgeState};

/// Forwards the body to the command's topic; the answer is the verdict with its status (200 when applied).
/// A `request_id` in the body is kept, so a client that retries after a lost answer is applied once.
pub(crate) async fn machine_command(
    State(state): State<BridgeState>,
    Path((machine, command)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let topic = format!("{}/{machine}/{command}", topic::MACHINES);
    if topic::parse_command(&topic).is_none() {
        return Ok(not_found(&machine, &command));
    }
    if !is_json(&headers) {
        return Err(ApiError::NotJson);
    }
    let value: Value = serde_json::from_slice(&body)
        .map_err(|e| ApiError::Refused(Refusal::Malformed(format!("the body is not valid JSON: {e}"))))?;
    let Value::Object(mut obj) = value else {
        return Err(ApiError::Refused(Refusal::Malformed("the body must be a JSON object".into())));
    };
    // The reply topic is the bridge's own; whatever the client put there is not used.
    obj.remove("reply_to");
    let request_id = match obj.remove("request_id") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) if !s.is_empty() && s.len() <= 200 => Some(s),
        Some(_) => {
            return Err(ApiError::Refused(Refusal::Malformed(
                "`request_id` must be a non-empty string of at most 200 characters".into(),
            )));
        }
    };
    let verdict = state.replies.send_with_id(topic, Value::Object(obj), request_id, state.timeout).await?;
    let status = StatusCode::from_u16(verdict.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    Ok((status, Json(verdict)).into_response())
}

fn not_found(machine: &str, command: &str) -> Response {
    let known: Vec<&str> = topic::CommandKind::ALL.iter().map(|k| k.suffix()).collect();
    let message = if topic::machine_ref(machine).is_none() {
        "the machine must be given by its id or topic name".to_string()
    } else {
        format!("`{command}` is not a command; the commands are {}", known.join(", "))
    };
    (StatusCode::NOT_FOUND, Json(serde_json::json!({ "error": message, "reason": "unknown_command" }))).into_response()
}
