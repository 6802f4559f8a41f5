//! Reading jobs: `GET /api/v1/jobs?machine=N&from=…&to=…[&limit=…]` (a machine's or every machine's jobs that
//! ran in the range, with their totals and notes) and `GET /api/v1/jobs/{id}` (one job with its production
//! records). Times are RFC 3339 or plant dates; the range defaults to the last 7 days.

use std::collections::HashMap;

use axum::Json;
use axum::extract::{Path, Query, State};
use chrono::{Duration, Utc};
use oee_core::store::job::{self, JobDetail, JobSummary};

use crate::WebState;
use crate::oee_api::{ApiError, bad, id_param, time_param};

/// Most jobs one request lists, and the default.
const MAX_JOBS: i64 = 5000;

pub(crate) async fn list(
    State(state): State<WebState>,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Json<Vec<JobSummary>>, ApiError> {
    let machine = id_param(&q, "machine")?;
    let to = time_param(&q, "to", state.tz)?.unwrap_or_else(Utc::now);
    let from = time_param(&q, "from", state.tz)?.unwrap_or(to - Duration::days(7));
    if from >= to {
        return Err(bad("`from` must be before `to`"));
    }
    let limit = match q.get("limit") {
        Some(v) => v
            .trim()
            .parse::<i64>()
            .ok()
            .filter(|n| (1..=MAX_JOBS).contains(n))
            .ok_or_else(|| bad(format!("`limit` must be a number from 1 to {MAX_JOBS}, not `{v}`")))?,
        None => MAX_JOBS,
    };
    if let Some(m) = machine
        && !oee_core::store::report::machine_exists(&state.pool, m).await?
    {
        return Err(ApiError::NotFound(format!("there is no machine {m}")));
    }
    Ok(Json(job::jobs_in_range(&state.pool, machine, from, to, limit).await?))
}

pub(crate) async fn one(State(state): State<WebState>, Path(id): Path<String>) -> Result<Json<JobDetail>, ApiError> {
    let id: i64 = id.trim().parse().map_err(|_| bad(format!("a job id is a number, not `{id}`")))?;
    job::job_detail(&state.pool, id).await?.map(Json).ok_or_else(|| ApiError::NotFound(format!("there is no job {id}")))
}
