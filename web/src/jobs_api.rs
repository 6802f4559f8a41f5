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

/// `GET /api/v1/jobs`.
#[utoipa::path(
    get,
    path = "/api/v1/jobs",
    tag = "jobs",
    operation_id = "list_jobs",
    summary = "Jobs that ran in a time range",
    description = "A machine's jobs, or every machine's, that ran at some time in the range, oldest first, each with \
                   its good and rejected parts and the operators' notes. A job that still runs has no `end_time`.",
    params(
        ("machine" = Option<i32>, Query, description = "The machine's id; default: every machine"),
        ("from" = Option<String>, Query, description = "Start: an RFC 3339 time like 2026-01-05T06:00:00Z, or a date like 2026-01-05 meaning the start of that plant day; default: 7 days before `to`"),
        ("to" = Option<String>, Query, description = "End: an RFC 3339 time or a date, as `from`; default: now"),
        ("limit" = Option<i64>, Query, description = "The most jobs to list, 1 to 5000; default: 5000"),
    ),
    responses(
        (status = 200, description = "The jobs, oldest first", body = Vec<JobSummary>),
        (status = 400, description = "A parameter is wrong, or `from` is not before `to`", body = crate::openapi::ReportError),
        (status = 404, description = "No such machine", body = crate::openapi::ReportError),
        (status = 503, description = "The database is not available", body = crate::openapi::ReportError),
    )
)]
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

/// `GET /api/v1/jobs/{id}`.
#[utoipa::path(
    get,
    path = "/api/v1/jobs/{id}",
    tag = "jobs",
    operation_id = "get_job",
    summary = "One job with its production records",
    params(("id" = i64, Path, description = "The job's id")),
    responses(
        (status = 200, description = "The job", body = JobDetail),
        (status = 400, description = "The id is not a number", body = crate::openapi::ReportError),
        (status = 404, description = "No such job", body = crate::openapi::ReportError),
        (status = 503, description = "The database is not available", body = crate::openapi::ReportError),
    )
)]
pub(crate) async fn one(State(state): State<WebState>, Path(id): Path<String>) -> Result<Json<JobDetail>, ApiError> {
    let id: i64 = id.trim().parse().map_err(|_| bad(format!("a job id is a number, not `{id}`")))?;
    job::job_detail(&state.pool, id).await?.map(Json).ok_or_else(|| ApiError::NotFound(format!("there is no job {id}")))
}
