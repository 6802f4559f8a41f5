//! The reference system's IoT device API: `POST /api/machine-state-change` and `GET /api/activity-codes`.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::Utc;
use oee_core::payload::{StateCommand, lenient_i32};
use oee_core::store::code::list_codes;
use oee_core::topic;
use oee_core::verdict::Refusal;
use serde_json::Value;

use crate::access;
use crate::body::json_object;
use crate::{ApiError, BridgeState};

/// `POST /api/machine-state-change` with `{"machine_id", "machine_state" | "activity_code_id", "user_id"?,
/// "timestamp"?}`: 200 with an empty body once ingest has committed the change; the reference's statuses
/// otherwise. A change without a `timestamp` is stamped with the time it was received, so that it is
/// recorded when it happened even if ingest applies it later.
pub(crate) async fn machine_state_change(
    State(state): State<BridgeState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let received = Utc::now();
    let obj = json_object(&headers, &body)?;
    let machine_id = lenient_i32(&obj, "machine_id")
        .map_err(ApiError::Refused)?
        .ok_or(ApiError::Refused(Refusal::MissingField("machine_id")))?;
    let mut command = StateCommand::from_object(&obj).map_err(ApiError::Refused)?;
    if command.timestamp.is_none() {
        command.reply.received_at = Some(received);
    }
    if machine_id < 1 {
        return Err(ApiError::Refused(Refusal::UnknownMachine(machine_id.to_string())));
    }
    let caller = access::caller(&state, &headers).await?;
    access::may_command(&caller, &topic::MachineRef::Id(machine_id), topic::CommandKind::State)?;
    let verdict = state.replies.send(topic::state(&machine_id.to_string()), command, state.timeout).await?;
    if !verdict.ok {
        return Err(ApiError::Verdict(verdict));
    }
    Ok((StatusCode::OK, [(header::CONTENT_TYPE, "text/html; charset=utf-8")], "").into_response())
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
