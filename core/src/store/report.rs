//! Reading a machine's history for reports: activities, jobs and their production in a window.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use sqlx::{PgConnection, PgPool};

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

/// The machine's production records touching [start, end], whatever their job (the reference's
/// machine-level production, §6.1).
pub async fn production_records_touching(
    pool: &PgPool,
    machine: i32,
    start: DateTime<Utc>,
    end: DateTime<Utc>,
) -> Result<Vec<RefProduction>, Error> {
    let rows: Vec<(DateTime<Utc>, DateTime<Utc>, i64, i64)> = sqlx::query_as(
        "SELECT start_time, end_time, quantity_good, quantity_rejects FROM production_quantity \
         WHERE machine_id = $1 AND start_time <= $3 AND end_time >= $2",
    )
    .bind(machine)
    .bind(start)
    .bind(end)
    .fetch_all(pool)
    .await?;
    Ok(rows.into_iter().map(|(start, end, good, rejects)| RefProduction { start, end, good, rejects }).collect())
}

/// Who an activity's time is counted for in a table of durations.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DurationsBy {
    Machine,
    /// The person who set the activity (`activity.user_id`); time nobody set is under an empty name.
    User,
}

/// Seconds per (machine or user name, activity code id) in [start, end), open activities running to `now`,
/// sorted by name: one query, summed by the database.
pub async fn durations_by(
    pool: &PgPool,
    by: DurationsBy,
    start: DateTime<Utc>,
    end: DateTime<Utc>,
    now: DateTime<Utc>,
) -> Result<Vec<(String, i32, f64)>, Error> {
    let sql = format!(
        "SELECT {} AS holder, a.activity_code_id, \
                sum(extract(epoch FROM least(coalesce(a.end_time, $3), $2) - greatest(a.start_time, $1)))::float8 \
         FROM activity a \
         WHERE a.start_time < $2 AND coalesce(a.end_time, $3) > $1 \
         GROUP BY 1, 2 ORDER BY 1, 2",
        holder(by)
    );
    let rows: Vec<(Option<String>, i32, Option<f64>)> =
        sqlx::query_as(sqlx::AssertSqlSafe(sql)).bind(start).bind(end).bind(now).fetch_all(pool).await?;
    Ok(rows.into_iter().map(|(h, c, s)| (h.unwrap_or_default(), c, s.unwrap_or(0.0).max(0.0))).collect())
}

/// The expression naming who an activity's time is counted for: a machine's name, or the user's (empty
/// for time nobody set).
fn holder(by: DurationsBy) -> &'static str {
    match by {
        DurationsBy::Machine => "coalesce((SELECT m.name FROM machine m WHERE m.id = a.machine_id), '')",
        DurationsBy::User => "coalesce((SELECT u.username FROM app_user u WHERE u.id = a.user_id), '')",
    }
}

/// How many machines or users (by `by`) have time in [start, end): the rows of [`durations_page`].
pub async fn durations_count(
    pool: &PgPool,
    by: DurationsBy,
    start: DateTime<Utc>,
    end: DateTime<Utc>,
    now: DateTime<Utc>,
) -> Result<i64, Error> {
    let sql = format!(
        "SELECT count(DISTINCT {}) FROM activity a WHERE a.start_time < $2 AND coalesce(a.end_time, $3) > $1",
        holder(by)
    );
    Ok(sqlx::query_scalar(sqlx::AssertSqlSafe(sql)).bind(start).bind(end).bind(now).fetch_one(pool).await?)
}

/// What a page of durations is sorted by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DurationsSort {
    /// The machine's or user's name (by code point).
    Holder,
    /// The seconds in this activity code (none: 0), then the name.
    Code(i32),
}

/// One page of [`durations_by`]: the machines or users ranked `offset` to `offset + limit` by `sort`,
/// each with its seconds per activity code, in that order (and by code within one). The database sums,
/// sorts and pages, so the page reads only its own rows.
#[allow(clippy::too_many_arguments)]
pub async fn durations_page(
    pool: &PgPool,
    by: DurationsBy,
    start: DateTime<Utc>,
    end: DateTime<Utc>,
    now: DateTime<Utc>,
    sort: DurationsSort,
    descending: bool,
    limit: i64,
    offset: i64,
) -> Result<Vec<(String, i32, f64)>, Error> {
    let direction = if descending { "DESC" } else { "ASC" };
    let (code, order) = match sort {
        DurationsSort::Holder => (None, format!("holder COLLATE \"C\" {direction}")),
        DurationsSort::Code(c) => (Some(c), format!("sort_key {direction}, holder COLLATE \"C\"")),
    };
    // Only fixed strings of this module are written into the query; the code and the bounds are bound.
    let sql = format!(
        "WITH d AS ( \
             SELECT {holder} AS holder, a.activity_code_id AS code_id, \
                    sum(extract(epoch FROM least(coalesce(a.end_time, $3), $2) - greatest(a.start_time, $1)))::float8 \
                        AS secs \
             FROM activity a WHERE a.start_time < $2 AND coalesce(a.end_time, $3) > $1 GROUP BY 1, 2), \
         h AS (SELECT holder, coalesce(sum(secs) FILTER (WHERE code_id = $4), 0) AS sort_key FROM d GROUP BY holder), \
         p AS (SELECT holder, sort_key, row_number() OVER (ORDER BY {order}) AS rank FROM h \
               ORDER BY {order} LIMIT $5 OFFSET $6) \
         SELECT p.holder, d.code_id, d.secs FROM p JOIN d ON d.holder = p.holder ORDER BY p.rank, d.code_id",
        holder = holder(by),
    );
    let rows: Vec<(String, i32, Option<f64>)> = sqlx::query_as(sqlx::AssertSqlSafe(sql))
        .bind(start)
        .bind(end)
        .bind(now)
        .bind(code)
        .bind(limit)
        .bind(offset)
        .fetch_all(pool)
        .await?;
    Ok(rows.into_iter().map(|(h, c, s)| (h, c, s.unwrap_or(0.0).max(0.0))).collect())
}

/// How many machines there are, active or not: the rows of the tables by machine and day.
pub async fn machine_count(pool: &PgPool) -> Result<i64, Error> {
    Ok(sqlx::query_scalar("SELECT count(*) FROM machine").fetch_one(pool).await?)
}

/// One page of machines (id and name), by id, or by name (by code point) when `by_name`.
pub async fn machines_page(
    pool: &PgPool,
    by_name: bool,
    descending: bool,
    limit: i64,
    offset: i64,
) -> Result<Vec<(i32, String)>, Error> {
    let order = match (by_name, descending) {
        (false, false) => "id ASC",
        (false, true) => "id DESC",
        (true, false) => "name COLLATE \"C\" ASC, id",
        (true, true) => "name COLLATE \"C\" DESC, id",
    };
    let sql = format!("SELECT id, name FROM machine ORDER BY {order} LIMIT $1 OFFSET $2");
    Ok(sqlx::query_as(sqlx::AssertSqlSafe(sql)).bind(limit).bind(offset).fetch_all(pool).await?)
}

/// What the OEE engine needs about one machine for a window, each list in time order.
#[derive(Debug, Clone, Default)]
pub struct EngineInputs {
    pub activities: Vec<crate::oee::Activity>,
    pub jobs: Vec<crate::oee::Job>,
    pub production: Vec<crate::oee::Production>,
}

type CodeRow = (i32, i16, String);
type EngineActivityRow = (i32, i32, DateTime<Utc>, Option<DateTime<Utc>>);
type EngineJobRow = (i32, i64, String, DateTime<Utc>, Option<DateTime<Utc>>, Option<f64>);
type EngineProductionRow = (i32, DateTime<Utc>, DateTime<Utc>, i64, i64, Option<f64>);

/// Every activity code's machine state and loss category, by code id.
pub async fn code_categories(
    conn: &mut PgConnection,
) -> Result<HashMap<i32, (MachineState, crate::oee::LossCategory)>, Error> {
    let rows: Vec<CodeRow> =
        sqlx::query_as("SELECT id, machine_state, loss_category FROM activity_code").fetch_all(&mut *conn).await?;
    rows.into_iter()
        .map(|(id, state, category)| {
            Ok((
                id,
                (
                    MachineState::try_from(state).map_err(Error::Invalid)?,
                    crate::oee::LossCategory::try_from(category).map_err(Error::Invalid)?,
                ),
            ))
        })
        .collect()
}

/// One machine's stretch of history to read: [start, end).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stretch {
    pub machine: i32,
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
}

/// The stretches as three parallel arrays, for `unnest($1::int[], $2::timestamptz[], $3::timestamptz[])`.
fn stretch_arrays(stretches: &[Stretch]) -> (Vec<i32>, Vec<DateTime<Utc>>, Vec<DateTime<Utc>>) {
    (
        stretches.iter().map(|s| s.machine).collect(),
        stretches.iter().map(|s| s.start).collect(),
        stretches.iter().map(|s| s.end).collect(),
    )
}

/// Each stretch's activities that overlap it (one query for all machines): those starting inside it (an
/// index range scan per machine: `OFFSET 0` keeps the planner from flattening the lateral subquery into
/// a join that scans the whole table) and the latest one starting before it when it is still running at its start (a
/// machine's activities do not overlap, so no earlier one can reach into it). Machine, code, start, end.
pub async fn activities_overlapping(
    conn: &mut PgConnection,
    stretches: &[Stretch],
) -> Result<Vec<EngineActivityRow>, Error> {
    let (ids, starts, ends) = stretch_arrays(stretches);
    Ok(sqlx::query_as(
        "SELECT a.machine_id, a.activity_code_id, a.start_time, a.end_time \
         FROM unnest($1::int[], $2::timestamptz[], $3::timestamptz[]) AS r (id, lo, hi) CROSS JOIN LATERAL ( \
             SELECT machine_id, activity_code_id, start_time, end_time FROM activity \
             WHERE machine_id = r.id AND start_time >= r.lo AND start_time < r.hi OFFSET 0) AS a \
         UNION ALL \
         SELECT a.machine_id, a.activity_code_id, a.start_time, a.end_time \
         FROM unnest($1::int[], $2::timestamptz[], $3::timestamptz[]) AS r (id, lo, hi) CROSS JOIN LATERAL ( \
             SELECT machine_id, activity_code_id, start_time, end_time FROM activity \
             WHERE machine_id = r.id AND start_time < r.lo ORDER BY start_time DESC LIMIT 1) AS a \
         WHERE a.end_time IS NULL OR a.end_time > r.lo",
    )
    .bind(ids)
    .bind(starts)
    .bind(ends)
    .fetch_all(&mut *conn)
    .await?)
}

/// Each stretch's jobs, found like [`activities_overlapping`]: machine, id, job number, start, end, ideal
/// cycle time.
pub async fn jobs_overlapping(conn: &mut PgConnection, stretches: &[Stretch]) -> Result<Vec<EngineJobRow>, Error> {
    let (ids, starts, ends) = stretch_arrays(stretches);
    Ok(sqlx::query_as(
        "SELECT j.machine_id, j.id, j.job_number, j.start_time, j.end_time, j.ideal_cycle_time_s \
         FROM unnest($1::int[], $2::timestamptz[], $3::timestamptz[]) AS r (id, lo, hi) CROSS JOIN LATERAL ( \
             SELECT * FROM job WHERE machine_id = r.id AND start_time >= r.lo AND start_time < r.hi OFFSET 0) AS j \
         UNION ALL \
         SELECT j.machine_id, j.id, j.job_number, j.start_time, j.end_time, j.ideal_cycle_time_s \
         FROM unnest($1::int[], $2::timestamptz[], $3::timestamptz[]) AS r (id, lo, hi) CROSS JOIN LATERAL ( \
             SELECT * FROM job WHERE machine_id = r.id AND start_time < r.lo ORDER BY start_time DESC LIMIT 1) AS j \
         WHERE j.end_time IS NULL OR j.end_time > r.lo",
    )
    .bind(ids)
    .bind(starts)
    .bind(ends)
    .fetch_all(&mut *conn)
    .await?)
}

/// Each stretch's production records touching [start, end] (an instant record at the end included), with
/// their jobs' ideal cycle times: machine, start, end, good, rejects, ideal cycle time.
pub async fn production_touching(
    conn: &mut PgConnection,
    stretches: &[Stretch],
) -> Result<Vec<EngineProductionRow>, Error> {
    let (ids, starts, ends) = stretch_arrays(stretches);
    Ok(sqlx::query_as(
        "SELECT p.machine_id, p.start_time, p.end_time, p.quantity_good, p.quantity_rejects, \
         (SELECT j.ideal_cycle_time_s FROM job j WHERE j.id = p.job_id) \
         FROM unnest($1::int[], $2::timestamptz[], $3::timestamptz[]) AS r (id, lo, hi) CROSS JOIN LATERAL ( \
             SELECT * FROM production_quantity WHERE machine_id = r.id AND end_time >= r.lo AND start_time <= r.hi \
             OFFSET 0) AS p",
    )
    .bind(ids)
    .bind(starts)
    .bind(ends)
    .fetch_all(&mut *conn)
    .await?)
}

/// Everything the OEE engine needs for each stretch (one machine each): one query per table for all of
/// them, grouped per machine (in no particular order: [`crate::oee::History`] sorts them).
pub async fn engine_inputs(
    conn: &mut PgConnection,
    stretches: &[Stretch],
) -> Result<HashMap<i32, EngineInputs>, Error> {
    use crate::oee::{Activity, Job, Production, Span};
    let codes = code_categories(&mut *conn).await?;
    let mut out: HashMap<i32, EngineInputs> = stretches.iter().map(|s| (s.machine, EngineInputs::default())).collect();
    for (machine, code_id, a_start, a_end) in activities_overlapping(&mut *conn, stretches).await? {
        let (state, category) =
            *codes.get(&code_id).ok_or_else(|| Error::Invalid(format!("activity code {code_id} does not exist")))?;
        if let Some(i) = out.get_mut(&machine) {
            i.activities.push(Activity { span: Span { start: a_start, end: a_end }, code_id, state, category });
        }
    }
    for (machine, _, _, j_start, j_end, ict) in jobs_overlapping(&mut *conn, stretches).await? {
        if let Some(i) = out.get_mut(&machine) {
            i.jobs.push(Job { span: Span { start: j_start, end: j_end }, ideal_cycle_time_s: ict });
        }
    }
    for (machine, p_start, p_end, good, rejects, ict) in production_touching(&mut *conn, stretches).await? {
        if let Some(i) = out.get_mut(&machine) {
            i.production.push(Production { start: p_start, end: p_end, good, rejects, ideal_cycle_time_s: ict });
        }
    }
    Ok(out)
}

/// The shift pattern each of `machines` followed during [`from`, `to`), as versions over time (see
/// [`crate::shift::followed`]): the pattern a machine followed then, as it was then.
pub async fn shift_histories(
    pool: &PgPool,
    machines: &[i32],
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> Result<HashMap<i32, Vec<crate::shift::Version>>, Error> {
    let rows: Vec<(i32, Option<DateTime<Utc>>, Option<i32>)> = sqlx::query_as(
        "SELECT machine_id, NULLIF(effective_from, '-infinity'), shift_id \
         FROM (SELECT machine_id, effective_from, shift_id, \
                      lead(effective_from) OVER (PARTITION BY machine_id ORDER BY effective_from) AS next_from \
               FROM machine_shift_history WHERE machine_id = ANY($1)) h \
         WHERE (next_from IS NULL OR next_from > $2) AND effective_from < $3 \
         ORDER BY machine_id, effective_from",
    )
    .bind(machines)
    .bind(from)
    .bind(to)
    .fetch_all(pool)
    .await?;
    let mut shifts: Vec<i32> = rows.iter().filter_map(|r| r.2).collect();
    shifts.sort_unstable();
    shifts.dedup();
    let versions = super::schedule::pattern_versions(pool, Some(&shifts), Some(from), Some(to)).await?;
    let mut assignments: HashMap<i32, Vec<crate::shift::Assignment>> = HashMap::new();
    for (machine, effective_from, shift) in rows {
        assignments.entry(machine).or_default().push((effective_from, shift));
    }
    Ok(assignments.into_iter().map(|(m, a)| (m, crate::shift::followed(&a, &versions))).collect())
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

/// One of a machine's activities as the machine report lists it.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct ReportActivity {
    pub id: i64,
    pub code_id: i32,
    pub code: String,
    pub start_time: DateTime<Utc>,
    /// `None` while it runs.
    pub end_time: Option<DateTime<Utc>>,
    /// Who was recorded as working the machine, by name.
    pub user_name: Option<String>,
}

/// The machine's activities that overlap [start, end), the open one included, oldest first.
pub async fn activities_in_window(
    pool: &PgPool,
    machine: i32,
    start: DateTime<Utc>,
    end: DateTime<Utc>,
) -> Result<Vec<ReportActivity>, Error> {
    Ok(sqlx::query_as(
        "SELECT a.id, a.activity_code_id AS code_id, c.short_description AS code, a.start_time, a.end_time, \
                u.username AS user_name \
         FROM activity a JOIN activity_code c ON c.id = a.activity_code_id \
              LEFT JOIN app_user u ON u.id = a.user_id \
         WHERE a.machine_id = $1 AND a.start_time < $3 AND (a.end_time IS NULL OR a.end_time > $2) \
         ORDER BY a.start_time, a.id",
    )
    .bind(machine)
    .bind(start)
    .bind(end)
    .fetch_all(pool)
    .await?)
}

/// One activity as the graphs draw it: its machine and code, its span, who worked the machine and the job
/// running when it began.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct GraphActivity {
    pub machine_id: i32,
    pub code_id: i32,
    pub start_time: DateTime<Utc>,
    /// `None` while it runs.
    pub end_time: Option<DateTime<Utc>>,
    pub user_name: Option<String>,
    pub job_number: Option<String>,
}

/// The activities of `machines` that overlap [start, end), the open ones included, by machine and then
/// oldest first, each with its operator's name and the number of the job it began in.
pub async fn graph_activities(
    pool: &PgPool,
    machines: &[i32],
    start: DateTime<Utc>,
    end: DateTime<Utc>,
) -> Result<Vec<GraphActivity>, Error> {
    Ok(sqlx::query_as(
        "SELECT a.machine_id, a.activity_code_id AS code_id, a.start_time, a.end_time, u.username AS user_name, \
                j.job_number \
         FROM activity a LEFT JOIN app_user u ON u.id = a.user_id \
              LEFT JOIN LATERAL (SELECT job_number FROM job \
                                 WHERE job.machine_id = a.machine_id AND job.start_time <= a.start_time \
                                   AND (job.end_time IS NULL OR job.end_time > a.start_time) \
                                 ORDER BY job.start_time DESC LIMIT 1) j ON true \
         WHERE a.machine_id = ANY($1) AND a.start_time < $3 AND (a.end_time IS NULL OR a.end_time > $2) \
         ORDER BY a.machine_id, a.start_time, a.id",
    )
    .bind(machines)
    .bind(start)
    .bind(end)
    .fetch_all(pool)
    .await?)
}

/// How many activities of each code of `machines` overlap [start, end): the downtime Pareto's counts,
/// counted by the database rather than read row by row.
pub async fn activity_counts(
    pool: &PgPool,
    machines: &[i32],
    start: DateTime<Utc>,
    end: DateTime<Utc>,
) -> Result<std::collections::HashMap<i32, i64>, Error> {
    let rows: Vec<(i32, i64)> = sqlx::query_as(
        "SELECT activity_code_id, count(*) FROM activity \
         WHERE machine_id = ANY($1) AND start_time < $3 AND (end_time IS NULL OR end_time > $2) GROUP BY 1",
    )
    .bind(machines)
    .bind(start)
    .bind(end)
    .fetch_all(pool)
    .await?;
    Ok(rows.into_iter().collect())
}

/// One production record as the machine report lists it.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct ReportProduction {
    pub id: i64,
    pub job_id: Option<i64>,
    pub job_number: Option<String>,
    pub start_time: DateTime<Utc>,
    pub end_time: DateTime<Utc>,
    pub quantity_good: i64,
    pub quantity_rejects: i64,
}

/// The machine's production records that touch [start, end], oldest first.
pub async fn production_in_window(
    pool: &PgPool,
    machine: i32,
    start: DateTime<Utc>,
    end: DateTime<Utc>,
) -> Result<Vec<ReportProduction>, Error> {
    Ok(sqlx::query_as(
        "SELECT p.id, p.job_id, j.job_number, p.start_time, p.end_time, p.quantity_good, p.quantity_rejects \
         FROM production_quantity p LEFT JOIN job j ON j.id = p.job_id \
         WHERE p.machine_id = $1 AND p.start_time <= $3 AND p.end_time >= $2 \
         ORDER BY p.start_time, p.id",
    )
    .bind(machine)
    .bind(start)
    .bind(end)
    .fetch_all(pool)
    .await?)
}
