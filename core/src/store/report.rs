//! Reading a machine's history for reports: activities, jobs and their production in a window.

use chrono::{DateTime, Utc};
use sqlx::PgPool;

use crate::activity::MachineState;
use crate::error::Error;
use crate::oee::reference::{RefActivity, RefJob, RefProduction};

type ActivityRow = (i32, i16, DateTime<Utc>, Option<DateTime<Utc>>);
type JobRow = (i64, DateTime<Utc>, Option<DateTime<Utc>>, Option<f64>);
type ProductionRow = (Option<i64>, DateTime<Utc>, DateTime<Utc>, i64, i64);

/// Whether a machine with this id exists.
pub async fn machine_exists(pool: &PgPool, id: i32) -> Result<bool, Error> {
    Ok(sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM machine WHERE id = $1)").bind(id).fetch_one(pool).await?)
}

/// The machine's activities that touch [start, end] (the open one included).
pub async fn activities_touching(
    pool: &PgPool,
    machine: i32,
    start: DateTime<Utc>,
    end: DateTime<Utc>,
) -> Result<Vec<RefActivity>, Error> {
    let rows: Vec<ActivityRow> = sqlx::query_as(
        "SELECT a.activity_code_id, c.machine_state, a.start_time, a.end_time \
         FROM activity a JOIN activity_code c ON c.id = a.activity_code_id \
         WHERE a.machine_id = $1 AND a.start_time <= $3 AND (a.end_time IS NULL OR a.end_time >= $2) \
         ORDER BY a.start_time",
    )
    .bind(machine)
    .bind(start)
    .bind(end)
    .fetch_all(pool)
    .await?;
    rows.into_iter()
        .map(|(code_id, state, start, end)| {
            Ok(RefActivity { code_id, state: MachineState::try_from(state).map_err(Error::Invalid)?, start, end })
        })
        .collect()
}

/// The machine's jobs in the window as the reference picks them (ended after `start` and started before
/// `end`, or running and started by `end`), each with all its production records.
pub async fn jobs_in_window(
    pool: &PgPool,
    machine: i32,
    start: DateTime<Utc>,
    end: DateTime<Utc>,
) -> Result<Vec<RefJob>, Error> {
    let jobs: Vec<JobRow> = sqlx::query_as(
        "SELECT id, start_time, end_time, ideal_cycle_time_s FROM job \
         WHERE machine_id = $1 AND ((end_time > $2 AND start_time < $3) OR (active AND start_time <= $3)) \
         ORDER BY start_time",
    )
    .bind(machine)
    .bind(start)
    .bind(end)
    .fetch_all(pool)
    .await?;
    let ids: Vec<i64> = jobs.iter().map(|j| j.0).collect();
    let records: Vec<ProductionRow> = sqlx::query_as(
        "SELECT job_id, start_time, end_time, quantity_good, quantity_rejects FROM production_quantity \
         WHERE job_id = ANY($1)",
    )
    .bind(&ids)
    .fetch_all(pool)
    .await?;
    Ok(jobs
        .into_iter()
        .map(|(id, start, end, ict)| RefJob {
            start,
            end,
            ideal_cycle_time_s: ict,
            production: records
                .iter()
                .filter(|r| r.0 == Some(id))
                .map(|r| RefProduction { start: r.1, end: r.2, good: r.3, rejects: r.4 })
                .collect(),
        })
        .collect())
}

/// What the OEE engine needs about one machine for a window.
#[derive(Debug, Clone, Default)]
pub struct EngineInputs {
    pub activities: Vec<crate::oee::Activity>,
    pub jobs: Vec<crate::oee::Job>,
    pub production: Vec<crate::oee::Production>,
}

type EngineActivityRow = (i32, String, DateTime<Utc>, Option<DateTime<Utc>>);
type EngineJobRow = (DateTime<Utc>, Option<DateTime<Utc>>, Option<f64>);
type EngineProductionRow = (DateTime<Utc>, DateTime<Utc>, i64, i64, Option<f64>);

/// One machine's activities (with their codes' loss categories), jobs and production touching [start, end).
pub async fn engine_inputs(
    pool: &PgPool,
    machine: i32,
    start: DateTime<Utc>,
    end: DateTime<Utc>,
) -> Result<EngineInputs, Error> {
    use crate::oee::{Activity, Job, LossCategory, Production, Span};
    let acts: Vec<EngineActivityRow> = sqlx::query_as(
        "SELECT a.activity_code_id, c.loss_category, a.start_time, a.end_time \
         FROM activity a JOIN activity_code c ON c.id = a.activity_code_id \
         WHERE a.machine_id = $1 AND a.start_time < $3 AND (a.end_time IS NULL OR a.end_time > $2)",
    )
    .bind(machine)
    .bind(start)
    .bind(end)
    .fetch_all(pool)
    .await?;
    let jobs: Vec<EngineJobRow> = sqlx::query_as(
        "SELECT start_time, end_time, ideal_cycle_time_s FROM job \
         WHERE machine_id = $1 AND start_time < $3 AND (end_time IS NULL OR end_time > $2)",
    )
    .bind(machine)
    .bind(start)
    .bind(end)
    .fetch_all(pool)
    .await?;
    let production: Vec<EngineProductionRow> = sqlx::query_as(
        "SELECT p.start_time, p.end_time, p.quantity_good, p.quantity_rejects, j.ideal_cycle_time_s \
         FROM production_quantity p LEFT JOIN job j ON j.id = p.job_id \
         WHERE p.machine_id = $1 AND p.start_time <= $3 AND p.end_time >= $2",
    )
    .bind(machine)
    .bind(start)
    .bind(end)
    .fetch_all(pool)
    .await?;
    Ok(EngineInputs {
        activities: acts
            .into_iter()
            .map(|(code_id, category, start, end)| {
                Ok(Activity {
                    span: Span { start, end },
                    code_id,
                    category: LossCategory::try_from(category).map_err(Error::Invalid)?,
                })
            })
            .collect::<Result<_, Error>>()?,
        jobs: jobs
            .into_iter()
            .map(|(start, end, ict)| Job { span: Span { start, end }, ideal_cycle_time_s: ict })
            .collect(),
        production: production
            .into_iter()
            .map(|(start, end, good, rejects, ict)| Production { start, end, good, rejects, ideal_cycle_time_s: ict })
            .collect(),
    })
}

/// The machines of a group, by id; `None` when the group does not exist.
pub async fn group_machines(pool: &PgPool, group: i32) -> Result<Option<Vec<i32>>, Error> {
    let exists: bool = sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM machine_group WHERE id = $1)")
        .bind(group)
        .fetch_one(pool)
        .await?;
    if !exists {
        return Ok(None);
    }
    Ok(Some(
        sqlx::query_scalar("SELECT id FROM machine WHERE group_id = $1 ORDER BY id")
            .bind(group)
            .fetch_all(pool)
            .await?,
    ))
}
