//! The tablets' live updates (reference §5.2.11, contracts C43 and C44): two websockets that follow one
//! machine through the retained status ingest publishes after every committed change.
//!
//! - `GET /api/input-device-updates`: the tablet sends `{"device_uuid": "…"}`; it is told its machine's
//!   current code as bare text (`2`), then `{"action":"activity_change","activity_code_id":N}` whenever a new
//!   activity begins and `{"action":"logout"}` when its operator session ends.
//! - `GET /api/activity-updates`: the client sends `{"machine_id": N}`; it is told the current code, then
//!   the code of every new activity, as bare text.
//!
//! A request that names nothing known gets `{"action":"error","reason":"…"}` and a close frame.

use std::time::Duration;

use axum::extract::State;
use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade, close_code};
use axum::response::Response;
use chrono::{DateTime, Utc};
use oee_core::payload::{MachineStatus, lenient_i32};
use oee_core::store::machine::machine_statuses;
use oee_core::store::tablet::tablet_by_uuid;
use oee_core::verdict::Refusal;
use serde_json::{Map, Value, json};
use sqlx::PgPool;
use tokio::sync::broadcast::error::RecvError;

use crate::{BridgeState, Route};

/// How long a client may take to say what it follows. The app sends it as soon as the socket opens.
const FIRST_MESSAGE_WITHIN: Duration = Duration::from_secs(30);
/// How long a closing socket waits for the client's close frame.
const CLOSE_WITHIN: Duration = Duration::from_secs(2);
/// Clients only ever send one small JSON object: anything far larger is refused by the websocket layer.
const MAX_MESSAGE: usize = 64 * 1024;
/// The longest uuid a tablet can have (`input_device.uuid`).
const MAX_UUID: usize = 100;

/// The websocket routes of the tablet API.
pub(crate) fn routes() -> Vec<Route> {
    vec![
        Route::get("/api/input-device-updates", input_device_updates),
        Route::get("/api/activity-updates", activity_updates),
    ]
}

async fn input_device_updates(ws: WebSocketUpgrade, State(state): State<BridgeState>) -> Response {
    ws.max_message_size(MAX_MESSAGE).on_upgrade(move |socket| follow(socket, state, Client::Tablet))
}

async fn activity_updates(ws: WebSocketUpgrade, State(state): State<BridgeState>) -> Response {
    ws.max_message_size(MAX_MESSAGE).on_upgrade(move |socket| follow(socket, state, Client::Machine))
}

/// Who is at the other end, which decides what they name first and how they are told.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Client {
    /// A tablet naming itself by uuid: told its machine's changes as JSON events, and its logout.
    Tablet,
    /// Anyone naming a machine by id: told its new codes as bare ids.
    Machine,
}

/// One socket's life: the first message names what to follow, the current code answers it, then every
/// relevant status becomes frames until the client goes away or the bridge stops.
async fn follow(mut socket: WebSocket, state: BridgeState, client: Client) {
    let first = match first_message(&mut socket).await {
        Some(Ok(first)) => first,
        Some(Err(reason)) => return reject(socket, &reason).await,
        None => return,
    };
    // Listen before reading the current state, so that no change falls between the two.
    let mut statuses = state.replies.statuses();
    let (mut watch, code) = match start(&state.pool, client, &first).await {
        Ok(started) => started,
        Err(reason) => return reject(socket, &reason).await,
    };
    // The bare code first, whoever the client is: the app's pausable screens close on any other first frame.
    if socket.send(Message::text(code.to_string())).await.is_err() {
        return;
    }
    loop {
        let frames = tokio::select! {
            incoming = socket.recv() => match incoming {
                // Pings are answered by the websocket layer; nothing else the client says matters now.
                Some(Ok(Message::Close(_))) => return finish(socket).await,
                Some(Ok(_)) => continue,
                None | Some(Err(_)) => return,
            },
            status = statuses.recv() => match status {
                Ok(status) => watch.frames(&status),
                // Fallen behind: what matters is where the machine is now.
                Err(RecvError::Lagged(skipped)) => {
                    tracing::debug!(machine = watch.machine_id, "websocket skipped {skipped} statuses");
                    match machine_statuses(&state.pool, Some(&[watch.machine_id])).await {
                        Ok(now) => now.first().map(|s| watch.frames(s)).unwrap_or_default(),
                        Err(e) => {
                            tracing::warn!(machine = watch.machine_id, "cannot read machine status: {e}");
                            Vec::new()
                        }
                    }
                }
                Err(RecvError::Closed) => return close(socket, close_code::AWAY, "the server is stopping").await,
            },
        };
        for frame in frames {
            if socket.send(Message::text(frame)).await.is_err() {
                return;
            }
        }
    }
}

/// The client's first message as a JSON object; `Err` with the reason when it is not one, `None` when the
/// client left first.
async fn first_message(socket: &mut WebSocket) -> Option<Result<Map<String, Value>, String>> {
    let received = tokio::time::timeout(FIRST_MESSAGE_WITHIN, async {
        loop {
            match socket.recv().await {
                Some(Ok(Message::Text(t))) => return Some(Ok(t.as_str().to_owned())),
                Some(Ok(Message::Binary(b))) => {
                    return Some(
                        String::from_utf8(b.to_vec()).map_err(|_| "the first message is not text".to_string()),
                    );
                }
                Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
                Some(Ok(Message::Close(_))) | Some(Err(_)) | None => return None,
            }
        }
    })
    .await;
    let text = match received {
        Ok(Some(Ok(text))) => text,
        Ok(Some(Err(reason))) => return Some(Err(reason)),
        Ok(None) => return None,
        Err(_) => return Some(Err(format!("nothing was sent within {} s", FIRST_MESSAGE_WITHIN.as_secs()))),
    };
    Some(match serde_json::from_str::<Value>(&text) {
        Ok(Value::Object(obj)) => Ok(obj),
        Ok(other) => Err(format!("the first message must be a JSON object, not {other}")),
        Err(e) => Err(format!("the first message is not JSON: {e}")),
    })
}

/// Finds what the first message names: the watch to keep and the code to send first. `Err` is the reason
/// to give the client.
async fn start(pool: &PgPool, client: Client, first: &Map<String, Value>) -> Result<(Watch, i32), String> {
    let (machine_id, tablet) = match client {
        Client::Tablet => {
            let uuid = match first.get("device_uuid") {
                Some(Value::String(u)) if u.contains('\0') => {
                    return Err("`device_uuid` contains a NUL character (\\u0000): send the tablet's uuid".into());
                }
                Some(Value::String(u)) if u.len() <= MAX_UUID => u,
                Some(Value::String(_)) => return Err(format!("`device_uuid` is longer than {MAX_UUID} characters")),
                Some(other) => return Err(format!("`device_uuid` must be a string, not {other}")),
                None => {
                    return Err("send {\"device_uuid\": \"<the tablet's uuid>\"} as the first message".to_string());
                }
            };
            let Some(tablet) = tablet_by_uuid(pool, uuid).await.map_err(unavailable)? else {
                return Err(format!(
                    "no tablet has the uuid {uuid}: open the app's start screen so that the tablet registers \
                     (GET /check-state?device_uuid={uuid}), then connect again"
                ));
            };
            let Some(machine_id) = tablet.machine_id else {
                return Err(format!(
                    "tablet {} (uuid {uuid}) is not paired to a machine: pair it (oee-server tablet pair), \
                     then connect again",
                    tablet.id
                ));
            };
            (machine_id, Some(tablet.id))
        }
        Client::Machine => {
            let id = lenient_i32(first, "machine_id")
                .map_err(|r| r.to_string())?
                .ok_or_else(|| "send {\"machine_id\": <the machine's id>} as the first message".to_string())?;
            (id, None)
        }
    };
    let status = machine_statuses(pool, Some(&[machine_id]))
        .await
        .map_err(unavailable)?
        .into_iter()
        .next()
        .ok_or_else(|| Refusal::UnknownMachine(machine_id.to_string()).to_string())?;
    let watch = Watch { machine_id, tablet, since: status.since, session: status.session_id };
    Ok((watch, status.activity_code_id))
}

/// The reason given to a client when the database cannot be read; the detail goes to the log.
fn unavailable(e: impl std::fmt::Display) -> String {
    tracing::warn!("tablet websocket: cannot read the database: {e}");
    "the server cannot read its database right now: connect again later".to_string()
}

/// Tells the client why it is refused, then closes.
async fn reject(mut socket: WebSocket, reason: &str) {
    let frame = json!({ "action": "error", "reason": reason }).to_string();
    if socket.send(Message::text(frame)).await.is_ok() {
        close(socket, close_code::POLICY, "refused").await;
    }
}

/// Closes with `code` and waits (briefly) for the client's close frame.
async fn close(mut socket: WebSocket, code: u16, reason: &'static str) {
    if socket.send(Message::Close(Some(CloseFrame { code, reason: reason.into() }))).await.is_ok() {
        finish(socket).await;
    }
}

/// Reads until the close handshake is over, so the websocket layer can answer the client's close frame.
async fn finish(mut socket: WebSocket) {
    let _ = tokio::time::timeout(CLOSE_WITHIN, async { while let Some(Ok(_)) = socket.recv().await {} }).await;
}

/// What one socket follows and what its client was last told.
#[derive(Debug, Clone, PartialEq)]
struct Watch {
    machine_id: i32,
    /// The tablet at the other end (`/api/input-device-updates`); none for `/api/activity-updates`.
    tablet: Option<i32>,
    /// Start of the activity the client knows about.
    since: DateTime<Utc>,
    /// The tablet's operator session the client knows about.
    session: Option<i32>,
}

impl Watch {
    /// The frames `status` calls for, in order, and the watch moved on to it.
    ///
    /// A new activity is a later `since`, not just a different one: a status read before this socket read
    /// the database may still be on its way, and must not replay an old change. A code changed in place
    /// (same `since`) sends nothing, since the app's paused screen closes on any frame. A logout is the
    /// tablet's session giving way to another or to none; it follows the activity change that a logout
    /// makes, as in the reference.
    fn frames(&mut self, status: &MachineStatus) -> Vec<String> {
        let mut frames = Vec::new();
        if status.machine_id != self.machine_id || status.since < self.since {
            return frames;
        }
        if status.since > self.since {
            self.since = status.since;
            frames.push(match self.tablet {
                Some(_) => {
                    json!({ "action": "activity_change", "activity_code_id": status.activity_code_id }).to_string()
                }
                None => status.activity_code_id.to_string(),
            });
        }
        if let Some(tablet) = self.tablet
            && status.input_device_id == Some(tablet)
        {
            if self.session.is_some() && status.session_id != self.session {
                frames.push(json!({ "action": "logout" }).to_string());
            }
            self.session = status.session_id;
        }
        frames
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use oee_core::payload::Signal;

    fn t(min: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 1, 5, 9, min, 0).unwrap()
    }

    fn status(machine_id: i32, code: i32, since: u32, device: Option<i32>, session: Option<i32>) -> MachineStatus {
        MachineStatus {
            machine_id,
            machine_name: "Lathe".into(),
            topic_name: None,
            activity_code_id: code,
            activity_code: "code".into(),
            colour: "#ffffff".into(),
            machine_state: 2,
            schedule_state: 1,
            job_id: None,
            job_number: None,
            user_id: None,
            since: t(since),
            input_device_id: device,
            session_id: session,
            last_signal_at: t(since),
            signal: Signal::Ok,
        }
    }

    const CHANGE_TO_5: &str = r#"{"action":"activity_change","activity_code_id":5}"#;
    const LOGOUT: &str = r#"{"action":"logout"}"#;

    #[test]
    fn a_tablet_is_told_of_new_activities_and_of_its_logout_only() {
        // status(machine, code, since, device, session), frames
        let cases: Vec<(MachineStatus, &[&str])> = vec![
            // a new activity on its machine
            (status(1, 5, 10, Some(7), Some(3)), &[CHANGE_TO_5]),
            // the same status again (retained copy, republish)
            (status(1, 5, 10, Some(7), Some(3)), &[]),
            // the code changed in place: same start
            (status(1, 6, 10, Some(7), Some(3)), &[]),
            // another machine's change
            (status(2, 5, 20, Some(8), Some(3)), &[]),
            // a status older than what the tablet knows
            (status(1, 4, 5, Some(7), None), &[]),
            // logout with a new activity: the change first
            (status(1, 5, 20, Some(7), None), &[CHANGE_TO_5, LOGOUT]),
            // a new login is no logout
            (status(1, 5, 20, Some(7), Some(4)), &[]),
            // the session ends without a new activity
            (status(1, 5, 20, Some(7), None), &[LOGOUT]),
            (status(1, 5, 20, Some(7), Some(9)), &[]),
            // another tablet paired to the machine: its sessions are not this tablet's
            (status(1, 5, 20, Some(8), None), &[]),
        ];
        let mut watch = Watch { machine_id: 1, tablet: Some(7), since: t(0), session: Some(3) };
        for (i, (status, want)) in cases.into_iter().enumerate() {
            let got = watch.frames(&status);
            assert_eq!(got, want, "case {i}");
        }
    }

    #[test]
    fn a_session_replaced_by_another_is_a_logout() {
        let mut watch = Watch { machine_id: 1, tablet: Some(7), since: t(0), session: Some(3) };
        assert_eq!(watch.frames(&status(1, 2, 0, Some(7), Some(4))), [LOGOUT]);
        assert_eq!(watch.session, Some(4));
    }

    #[test]
    fn a_machine_follower_is_told_bare_codes_of_new_activities() {
        let mut watch = Watch { machine_id: 1, tablet: None, since: t(0), session: None };
        assert_eq!(watch.frames(&status(1, 5, 10, Some(7), Some(3))), ["5"]);
        assert_eq!(watch.frames(&status(1, 6, 10, Some(7), None)), Vec::<String>::new(), "in place, no logout");
        assert_eq!(watch.frames(&status(1, 2, 11, None, None)), ["2"]);
        assert_eq!(watch.since, t(11));
    }
}
