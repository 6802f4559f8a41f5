//! The v1 command API over HTTP: `POST /api/v1/machines/{machine}/{command}` carries the same JSON body as
//! the MQTT topic `oee/v1/machines/{machine}/{command}` and answers with ingest's verdict once it is
//! committed. Every command ingest knows (state, job start and end, production, telemetry, history edits)
//! is reachable this way without a route of its own.
//!
//! Before anything is published the request is checked at the edge: the machine segment must be able to
//! name a machine (an id or a topic name, so never an MQTT wildcard), the body must be a JSON object sent as
//! JSON with no NUL in it, and a command that takes a `timestamp` gets the time it was received when the
//! client sent none.

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use chrono::{SecondsFormat, Utc};
use oee_core::topic::{self, CommandKind};
use oee_core::verdict::Refusal;
use serde_json::Value;

use crate::access;
use crate::body::json_object;
use crate::error::ErrorBody;
use crate::{ApiError, BridgeState};

/// Longest topic name a machine can have (`machine.topic_name`).
const MAX_TOPIC_NAME: usize = 100;

/// Forwards the body to the command's topic; the answer is the verdict with its status (200 when applied).
/// A `request_id` in the body is kept, so a client that retries after a lost answer is applied once.
#[utoipa::path(
    post,
    path = "/api/v1/machines/{machine}/{command}",
    tag = "commands",
    description = "Publishes the body on the command's MQTT topic `oee/v1/machines/{machine}/…` and answers with \
                   ingest's verdict once the change is committed: 200 means it is stored. Integers may be sent as \
                   numbers or numeric strings; a command that takes a `timestamp` and has none happened when the \
                   server received it. `reply_to` is ignored: the answer is this response.",
    params(("machine" = String, Path, description = "The machine's id, or its topic name (lowercase letters, digits, `-` and `_`)")),
    security(("device_token" = [])),
    responses(
        (status = 200, description = "Applied and committed", body = oee_core::verdict::Verdict),
        (status = 400, description = "Malformed: the verdict or the bridge's refusal says which field", body = crate::openapi::Refused),
        (status = 401, description = "No device token, or an unknown or revoked one", body = ErrorBody),
        (status = 403, description = "The device may not command this machine", body = ErrorBody),
        (status = 404, description = "No such machine, command, activity code, user or record", body = crate::openapi::Refused),
        (status = 409, description = "Refused in the machine's present state (e.g. an up state with no job)", body = oee_core::verdict::Verdict),
        (status = 413, description = "Too large to publish", body = ErrorBody),
        (status = 415, description = "The body is not declared as JSON (`Content-Type: application/json`)", body = ErrorBody),
        (status = 422, description = "A required field is missing", body = oee_core::verdict::Verdict),
        (status = 503, description = "Not confirmed in time or not stored: send it again (with the same `request_id`)", body = crate::openapi::Refused),
    )
)]
pub(crate) async fn machine_command(
    State(state): State<BridgeState>,
    path: Result<Path<(String, String)>, PathRejection>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let received = Utc::now();
    // A segment that is not UTF-8 once percent-decoded names no machine and no command.
    let Ok(Path((machine, command))) = path else {
        let message = "the path cannot be read as text: name the machine by its id or topic name and the command \
                       by its name, e.g. /api/v1/machines/3/state";
        return Ok((StatusCode::NOT_FOUND, ErrorBody::new(message, "bad_path")).into_response());
    };
    if !can_name_a_machine(&machine) {
        return Ok(not_found(&machine, &command));
    }
    let topic = format!("{}/{machine}/{command}", topic::MACHINES);
    let Some((machine_ref, kind)) = topic::parse_command(&topic) else {
        return Ok(not_found(&machine, &command));
    };
    let caller = access::caller(&state, &headers).await?;
    access::may_command(&caller, &machine_ref, kind)?;
    let mut obj = json_object(&headers, &body)?;
    if takes_timestamp(kind) && obj.get("timestamp").is_none_or(Value::is_null) {
        obj.insert("received_at".into(), Value::String(received.to_rfc3339_opts(SecondsFormat::Micros, true)));
    }
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

/// Whether `segment` could name a machine: its id, or a topic name as the database allows them (a lowercase
/// letter or digit, then lowercase letters, digits, `-` and `_`; not all digits). Anything else, an MQTT
/// wildcard above all, names no machine and is never published.
fn can_name_a_machine(segment: &str) -> bool {
    match topic::machine_ref(segment) {
        Some(topic::MachineRef::Id(id)) => id > 0,
        Some(topic::MachineRef::Slug(s)) => {
            s.len() <= MAX_TOPIC_NAME
                && s.bytes().next().is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
                && s.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
        }
        None => false,
    }
}

/// The commands whose body may carry the `timestamp` of when they happened.
fn takes_timestamp(kind: CommandKind) -> bool {
    matches!(
        kind,
        CommandKind::State
            | CommandKind::Telemetry
            | CommandKind::JobStart
            | CommandKind::JobEnd
            | CommandKind::Production
    )
}

fn not_found(machine: &str, command: &str) -> Response {
    let known: Vec<&str> = CommandKind::ALL.iter().map(|k| k.suffix()).collect();
    let (message, reason) = if !can_name_a_machine(machine) {
        (
            format!(
                "no machine is named {machine:?}: name the machine by its id or its topic name (lowercase letters, \
                 digits, `-` and `_`)"
            ),
            "unknown_machine",
        )
    } else {
        (format!("`{command}` is not a command; the commands are {}", known.join(", ")), "unknown_command")
    };
    (StatusCode::NOT_FOUND, ErrorBody::new(message, reason)).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_ids_and_topic_names_can_name_a_machine() {
        for ok in ["1", "42", "press-1", "m-7", "line_2", "0a"] {
            assert!(can_name_a_machine(ok), "{ok}");
        }
        for not in ["", "0", "+", "#", "a+b", "a/b", "\0", "a\0", "Press", "café", "-a", "_a", "99999999999"] {
            assert!(!can_name_a_machine(not), "{not:?}");
        }
        assert!(!can_name_a_machine(&"a".repeat(101)));
    }
}
