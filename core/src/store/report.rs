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
