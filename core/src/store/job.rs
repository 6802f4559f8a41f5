//! Reading jobs: a machine's (or every machine's) jobs in a time range, and one job with its production
//! records and notes. Jobs are written by ingest only (start, end, history edits).

use chrono::{DateTime, Utc};
use sqlx::PgPool;

use crate::error::Error;

/// A job with its totals.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow, serde::Serialize, utoipa::ToSchema)]
pub struct JobSummary {
    pub id: i64,
    pub machine_id: i32,
    pub machine_name: String,
    pub job_number: String,
    pub part_number: Option<String>,
    /// Seconds per part the job was planned at; `None`: no cycle time given.
    pub ideal_cycle_time_s: Option<f64>,
    pub start_time: DateTime<Utc>,
    /// `None` while the job runs.
    pub end_time: Option<DateTime<Utc>>,
    pub active: bool,
    pub quantity_good: i64,
    pub quantity_rejects: i64,
    /// The operators' notes (the pausable workflow appends its pauses here).
    pub notes: String,
}

/// One production record of a job: parts made in [start, end].
#[derive(Debug, Clone, PartialEq, sqlx::FromRow, serde::Serialize, utoipa::ToSchema)]
pub struct ProductionRecord {
    pub id: i64,
    pub start_time: DateTime<Utc>,
    pub end_time: DateTime<Utc>,
    pub quantity_good: i64,
    pub quantity_rejects: i64,
}

/// A job with its production records.
#[derive(Debug, Clone, PartialEq, serde::Serialize, utoipa::ToSchema)]
pub struct JobDetail {
    #[serde(flatten)]
    pub job: JobSummary,
    pub production: Vec<ProductionRecord>,
}

macro_rules! job_select {
    () => {
        "SELECT j.id, j.machine_id, m.name AS machine_name, j.job_number, j.part_number, j.ideal_cycle_time_s, \
                j.start_time, CASE WHEN j.active THEN NULL ELSE j.end_time END AS end_time, j.active, \
                coalesce((SELECT sum(quantity_good) FROM production_quantity p WHERE p.job_id = j.id), 0)::int8 \
                    AS quantity_good, \
                coalesce((SELECT sum(quantity_rejects) FROM production_quantity p WHERE p.job_id = j.id), 0)::int8 \
                    AS quantity_rejects, \
                j.notes \
         FROM job j JOIN machine m ON m.id = j.machine_id "
    };
}

/// Jobs of `machine` (or of every machine) that ran at some time in [from, to), oldest first, at most
/// `limit`.
pub async fn jobs_in_range(
    pool: &PgPool,
    machine: Option<i32>,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    limit: i64,
) -> Result<Vec<JobSummary>, Error> {
    Ok(sqlx::query_as(concat!(
        job_select!(),
        "WHERE ($1::int4 IS NULL OR j.machine_id = $1) AND j.start_time < $3 \
           AND (j.active OR coalesce(j.end_time, 'infinity') > $2) \
         ORDER BY j.start_time, j.id LIMIT $4"
    ))
    .bind(machine)
    .bind(from)
    .bind(to)
    .bind(limit)
    .fetch_all(pool)
    .await?)
}

/// The next `limit` jobs of [`jobs_in_range`] after the job `after` (its start and id), in the same order:
/// exports read a long range a page at a time, so memory holds one page whatever the range.
pub async fn jobs_in_range_after(
    pool: &PgPool,
    machine: Option<i32>,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    after: Option<(DateTime<Utc>, i64)>,
    limit: i64,
) -> Result<Vec<JobSummary>, Error> {
    Ok(sqlx::query_as(concat!(
        job_select!(),
        "WHERE ($1::int4 IS NULL OR j.machine_id = $1) AND j.start_time < $3 \
           AND (j.active OR coalesce(j.end_time, 'infinity') > $2) \
           AND ($4::timestamptz IS NULL OR (j.start_time, j.id) > ($4, $5)) \
         ORDER BY j.start_time, j.id LIMIT $6"
    ))
    .bind(machine)
    .bind(from)
    .bind(to)
    .bind(after.map(|a| a.0))
    .bind(after.map_or(0, |a| a.1))
    .bind(limit)
    .fetch_all(pool)
    .await?)
}

/// A column a page of jobs may be sorted by. Each names a fixed SQL expression, so nothing a caller
/// sends is ever written into a query.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobSort {
    Id,
    Number,
    Machine,
    Start,
    /// A running job has no end: it sorts before every ended one.
    End,
    /// A job without an ideal cycle time sorts before every one with it.
    IdealCycleTime,
    Good,
    Rejects,
}

impl JobSort {
    /// The expression ordered by. Text compares by code point (`COLLATE "C"`), whatever the database's
    /// locale, so the order is the same everywhere.
    fn expression(self) -> &'static str {
        match self {
            JobSort::Id => "j.id",
            JobSort::Number => "j.job_number COLLATE \"C\"",
            JobSort::Machine => "m.name COLLATE \"C\"",
            JobSort::Start => "j.start_time",
            JobSort::End => "(CASE WHEN j.active THEN NULL ELSE j.end_time END)",
            JobSort::IdealCycleTime => "j.ideal_cycle_time_s",
            // The totals are output columns of the select list; ORDER BY may name them as they are.
            JobSort::Good => "quantity_good",
            JobSort::Rejects => "quantity_rejects",
        }
    }
}

/// How many jobs (of every machine) ran at some time in [from, to): the rows of [`jobs_page`].
pub async fn jobs_in_range_count(pool: &PgPool, from: DateTime<Utc>, to: DateTime<Utc>) -> Result<i64, Error> {
    Ok(sqlx::query_scalar(
        "SELECT count(*) FROM job j \
         WHERE j.start_time < $2 AND (j.active OR coalesce(j.end_time, 'infinity') > $1)",
    )
    .bind(from)
    .bind(to)
    .fetch_one(pool)
    .await?)
}

/// One page of the jobs (of every machine) that ran at some time in [from, to): sorted by `sort` (missing
/// values first when ascending, last when descending), then by start and id, skipping `offset` jobs and
/// taking at most `limit`.
pub async fn jobs_page(
    pool: &PgPool,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    sort: JobSort,
    descending: bool,
    limit: i64,
    offset: i64,
) -> Result<Vec<JobSummary>, Error> {
    let direction = if descending { "DESC NULLS LAST" } else { "ASC NULLS FIRST" };
    let sql = format!(
        concat!(
            job_select!(),
            "WHERE j.start_time < $2 AND (j.active OR coalesce(j.end_time, 'infinity') > $1) \
             ORDER BY {} {}, j.start_time, j.id LIMIT $3 OFFSET $4"
        ),
        sort.expression(),
        direction
    );
    // Both pieces written into the query are fixed strings of this module.
    Ok(sqlx::query_as(sqlx::AssertSqlSafe(sql)).bind(from).bind(to).bind(limit).bind(offset).fetch_all(pool).await?)
}

/// One job with its production records, if it exists.
pub async fn job_detail(pool: &PgPool, id: i64) -> Result<Option<JobDetail>, Error> {
    let job: Option<JobSummary> =
        sqlx::query_as(concat!(job_select!(), "WHERE j.id = $1")).bind(id).fetch_optional(pool).await?;
    let Some(job) = job else { return Ok(None) };
    let production = sqlx::query_as(
        "SELECT id, start_time, end_time, quantity_good, quantity_rejects FROM production_quantity \
         WHERE job_id = $1 ORDER BY start_time, id",
    )
    .bind(id)
    .fetch_all(pool)
    .await?;
    Ok(Some(JobDetail { job, production }))
}
