//! Who may send a device command over HTTP, decided in one place for the device API and the v1 command API.
//!
//! A device sends `Authorization: Bearer <token>` (made by `oee-server device add`) and may command only its
//! own machines. Without a token a request is refused, unless an administrator turned on
//! `bridge.open_device_api` for devices made for the reference system, which never sent one. Nobody may
//! send a `session` command over HTTP: only the tablet API does, after checking the tablet's pairing.

use axum::http::{HeaderMap, header};
use oee_core::access::{self, Principal};
use oee_core::store::device;
use oee_core::topic::{self, CommandKind, MachineRef};

use crate::{ApiError, BridgeState};

/// Who is calling.
#[derive(Debug)]
pub(crate) enum Caller {
    /// No token, and the open device API is on.
    Open,
    /// A device: its name and its machines' topic segments (ids and topic names).
    Device { name: String, machines: Vec<String> },
}

/// The caller of a device request, or 401.
pub(crate) async fn caller(state: &BridgeState, headers: &HeaderMap) -> Result<Caller, ApiError> {
    let Some(value) = headers.get(header::AUTHORIZATION) else {
        return if state.open_device_api {
            Ok(Caller::Open)
        } else {
            Err(ApiError::Unauthorized(
                "this server needs a device token: send `Authorization: Bearer <token>` with the token \
                 `oee-server device add` printed (or an administrator turns on bridge.open_device_api)"
                    .into(),
            ))
        };
    };
    let token = value.to_str().ok().and_then(|v| v.strip_prefix("Bearer ")).map(str::trim).unwrap_or_default();
    if token.is_empty() || token.len() > 200 {
        return Err(ApiError::Unauthorized("the Authorization header must be `Bearer <token>`".into()));
    }
    match device::by_token(&state.pool, token).await? {
        Some((name, machines)) => Ok(Caller::Device { name, machines }),
        None => Err(ApiError::Unauthorized("unknown or revoked device token".into())),
    }
}

/// Whether `caller` may send `kind` to `machine`, or 403.
pub(crate) fn may_command(caller: &Caller, machine: &MachineRef, kind: CommandKind) -> Result<(), ApiError> {
    if kind == CommandKind::Session {
        return Err(ApiError::Forbidden(
            "session commands come only from the server's tablet API: log in on the tablet".into(),
        ));
    }
    let (who, name) = match caller {
        Caller::Open => (Principal::Anonymous, None),
        Caller::Device { name, machines } => {
            (Principal::Device { name: name.clone(), machines: machines.clone() }, Some(name.as_str()))
        }
    };
    // The same rule as the command's MQTT topic: one decision for both ways in.
    let segment = match machine {
        MachineRef::Id(id) => id.to_string(),
        MachineRef::Slug(s) => s.clone(),
    };
    if access::may_publish(&who, &topic::command(&segment, kind)) {
        Ok(())
    } else {
        Err(ApiError::Forbidden(format!(
            "device `{}` may not send commands for machine {machine}",
            name.unwrap_or("without a token")
        )))
    }
}
