//! Our own OEE API: `GET /api/v1/oee?machine=N|group=N[&from=…&to=…][&by=hour|day]`, by the rules of
//! DESIGN.md (availability `null` when nothing was planned, performance raw with its coverage, quality from
//! the counts in the window, roll-ups from sums).

use std::collections::HashMap;

use axum::Json;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Duration, NaiveDate, TimeZone, Timelike, Utc};
use chrono_tz::Tz;
use oee_core::oee::{EngineConfig, Sums, Window, sums};
use oee_core::shift::local_date_bounds;
use oee_core::store::report;
use serde_json::{Value, json};

use crate::WebState;

/// Most buckets one request may ask for.
const MAX_BUCKETS: usize = 2_000;

/// A refusal of the v1 API: a status and a JSON `{"error": …}`.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ApiError {
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    NotFound(String),
    #[error("the database is not available: {0}")]
    Database(#[from] oee_core::Error),
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = match self {
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::Database(_) => StatusCode::SERVICE_UNAVAILABLE,
        };
        (status, Json(json!({ "error": self.to_string() }))).into_response()
    }
}

fn bad(msg: impl Into<String>) -> ApiError {
    ApiError::BadRequest(msg.into())
}

fn time_param(q: &HashMap<String, String>, name: &str) -> Result<Option<DateTime<Utc>>, ApiError> {
    q.get(name)
        .map(|v| {
            DateTime::parse_from_rfc3339(v)
                .map(|t| t.with_timezone(&Utc))
                .or_else(|_| {
                    NaiveDate::parse_from_str(v, "%Y-%m-%d")
                        .map(|d| d.and_hms_opt(0, 0, 0).unwrap_or_default().and_utc())
                })
                .map_err(|_| bad(format!("`{name}` must be an RFC 3339 time like 2026-01-05T06:00:00Z, not `{v}`")))
        })
        .transpose()
}

/// `GET /api/v1/oee`.
pub(crate) async fn oee(
    State(state): State<WebState>,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Json<Value>, ApiError> {
    let id = |name: &str| -> Result<Option<i32>, ApiError> {
        q.get(name)
            .map(|v| v.trim().parse::<i32>().map_err(|_| bad(format!("`{name}` must be a number, not `{v}`"))))
            .transpose()
    };
    let machines = match (id("machine")?, id("group")?) {
        (Some(m), None) => {
            if !report::machine_exists(&state.pool, m).await? {
                return Err(ApiError::NotFound(format!("machine {m} does not exist")));
            }
            vec![m]
        }
        (None, Some(g)) => report::group_machines(&state.pool, g)
            .await?
            .ok_or_else(|| ApiError::NotFound(format!("machine group {g} does not exist")))?,
        _ => return Err(bad("give either `machine` or `group`")),
    };
    let now = Utc::now();
    let (today_start, today_end) = local_date_bounds(state.tz, now.with_timezone(&state.tz).date_naive());
    let from = time_param(&q, "from")?.unwrap_or(today_start);
    let to = time_param(&q, "to")?.unwrap_or(today_end);
    if to <= from {
        return Err(bad("`to` must be after `from`"));
    }
    let window = Window::new(from, to, now);
    let by = q.get("by").map(String::as_str).unwrap_or("none");
    let buckets = match by {
        "none" => vec![(window.start, window.end)],
        "hour" => boundaries(window, |t| next_local_hour(state.tz, t))?,
        "day" => boundaries(window, |t| local_date_bounds(state.tz, t.with_timezone(&state.tz).date_naive()).1)?,
        other => return Err(bad(format!("`by` must be hour or day, not `{other}`"))),
    };

    let cfg = EngineConfig::default();
    let mut inputs = Vec::new();
    for m in &machines {
        inputs.push(report::engine_inputs(&state.pool, *m, window.start, window.end).await?);
    }
    let mut total = Sums::default();
    let mut rows = Vec::new();
    for (start, end) in buckets {
        let w = Window::new(start, end, now);
        let mut s = Sums::default();
        for i in &inputs {
            s.add(&sums(w, &i.activities, &i.jobs, &i.production, cfg));
        }
        total.add(&s);
        rows.push(bucket(start, end, &s));
    }
    Ok(Json(json!({
        "machines": machines,
        "timezone": state.tz.name(),
        "by": by,
        "total": bucket(window.start, window.end, &total),
        "buckets": if by == "none" { Vec::new() } else { rows },
    })))
}

fn bucket(start: DateTime<Utc>, end: DateTime<Utc>, s: &Sums) -> Value {
    json!({ "from": start, "to": end, "figures": s.figures(), "sums": s })
}

/// [start, end) of one bucket.
type Bucket = (DateTime<Utc>, DateTime<Utc>);

/// Cuts the window at the instants `next` gives (each strictly after its argument).
fn boundaries(window: Window, next: impl Fn(DateTime<Utc>) -> DateTime<Utc>) -> Result<Vec<Bucket>, ApiError> {
    let mut out = Vec::new();
    let mut at = window.start;
    while at < window.end {
        let cut = next(at).max(at + Duration::seconds(1)).min(window.end);
        out.push((at, cut));
        at = cut;
        if out.len() > MAX_BUCKETS {
            return Err(bad(format!("more than {MAX_BUCKETS} buckets: shorten the window or use a coarser `by`")));
        }
    }
    Ok(out)
}

/// The start of the next plant-local hour after `t`.
fn next_local_hour(tz: Tz, t: DateTime<Utc>) -> DateTime<Utc> {
    let local = t.with_timezone(&tz);
    let floored =
        local.date_naive().and_hms_opt(local.hour(), 0, 0).and_then(|n| tz.from_local_datetime(&n).earliest());
    floored.map(|f| f.with_timezone(&Utc) + Duration::hours(1)).unwrap_or(t + Duration::hours(1))
}
