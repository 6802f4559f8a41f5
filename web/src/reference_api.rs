//! The reference system's read-only OEE endpoints, with its own rules and exact shapes (contracts
//! C45–C48): `GET /api/oee` and `GET /api/activity-durations`, `?machine_id=N[&date=YYYY-MM-DD]`.

use std::collections::HashMap;

use axum::extract::{Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::{NaiveDate, Utc};
use oee_core::oee::reference::{self, RefWindow};
use oee_core::shift::local_date_bounds;
use oee_core::store::{code, report};

use crate::WebState;

/// A refusal of these endpoints: 400 with a plain message, as the reference answers.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ReportError {
    #[error("Date must be in format YYYY-MM-DD")]
    BadDate,
    #[error("Date {0} is in the future: ask for today or an earlier day")]
    FutureDate(NaiveDate),
    #[error("No machine_id given: add ?machine_id=N")]
    NoMachine,
    #[error("machine_id must be a machine's number, not `{0}`")]
    BadMachine(String),
    #[error("Machine {0} does not exist")]
    UnknownMachine(i32),
    #[error("the database is not available: {0}")]
    Database(#[from] oee_core::Error),
}

impl IntoResponse for ReportError {
    fn into_response(self) -> Response {
        let status = match self {
            ReportError::Database(_) => StatusCode::SERVICE_UNAVAILABLE,
            _ => StatusCode::BAD_REQUEST,
        };
        (status, [(header::CONTENT_TYPE, "text/html; charset=utf-8")], self.to_string()).into_response()
    }
}

/// The machine and the reference's day window for the query.
async fn request(state: &WebState, q: &HashMap<String, String>) -> Result<(i32, RefWindow), ReportError> {
    let now = Utc::now();
    let date = match q.get("date") {
        Some(d) => crate::oee_api::plain_date(d).ok_or(ReportError::BadDate)?,
        None => now.with_timezone(&state.tz).date_naive(),
    };
    let raw = q.get("machine_id").ok_or(ReportError::NoMachine)?;
    let machine: i32 = raw.trim().parse().map_err(|_| ReportError::BadMachine(raw.clone()))?;
    if !report::machine_exists(&state.pool, machine).await? {
        return Err(ReportError::UnknownMachine(machine));
    }
    let (start, next) = local_date_bounds(state.tz, date);
    if start > now {
        return Err(ReportError::FutureDate(date));
    }
    // The reference's day ends at 23:59:59.999999; today's window ends now.
    Ok((machine, RefWindow { start, end: next - chrono::Duration::microseconds(1), now }))
}

fn json_body(mut body: String) -> Response {
    body.push('\n');
    ([(header::CONTENT_TYPE, "application/json")], body).into_response()
}

/// `GET /api/oee`: the machine's OEE for the day as a bare JSON number, e.g. `0.1875`.
pub(crate) async fn oee(
    State(state): State<WebState>,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Response, ReportError> {
    let (machine, w) = request(&state, &q).await?;
    let acts = report::activities_touching(&state.pool, machine, w.start, w.end).await?;
    let jobs = report::jobs_in_window(&state.pool, machine, w.start, w.end).await?;
    let value = reference::oee(w, &acts, &jobs);
    Ok(json_body(serde_json::to_string(&value).unwrap_or_else(|_| "0".into())))
}

/// `GET /api/activity-durations`: seconds per activity code id for the day, every code listed
/// (`{"1":10800.0,"2":3600.0,"3":3600.0,"4":0}`).
pub(crate) async fn activity_durations(
    State(state): State<WebState>,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Response, ReportError> {
    let (machine, w) = request(&state, &q).await?;
    let acts = report::activities_touching(&state.pool, machine, w.start, w.end).await?;
    let codes: Vec<i32> = code::list_codes(&state.pool).await?.into_iter().map(|c| c.id).collect();
    // Keys sorted as strings and codes with no time as the integer 0, as the reference's JSON has them.
    let map: serde_json::Map<String, serde_json::Value> = reference::durations_by_code(w, &acts, &codes)
        .into_iter()
        .map(|(code, secs)| (code.to_string(), if secs == 0.0 { 0.into() } else { secs.into() }))
        .collect();
    Ok(json_body(serde_json::Value::Object(map).to_string()))
}
