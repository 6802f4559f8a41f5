//! Telemetry readings: queries over time buckets, the keys a machine sends, and the hourly rollups.
//!
//! **Buckets** have a fixed length and are counted from [`BUCKET_ORIGIN`] (2000-01-01T00:00:00Z), with
//! TimescaleDB's `time_bucket` where the extension is active and PostgreSQL's `date_bin` otherwise: both
//! give the same buckets for the same origin. A `1d` bucket is therefore a UTC day, whatever the plant's
//! time zone (a plant day that is not a UTC day is read with `1h` buckets).
//!
//! **Rollups** (`telemetry_hourly`) hold per machine, key and hour the count, sum, lowest, highest and last
//! value and the first and last reading's time. Buckets of whole hours are answered from them; `avg` is
//! the sum of the sums over the sum of the counts, never an average of averages.
//! - On TimescaleDB with the Timescale licence they are a continuous aggregate with real-time aggregation
//!   (the hours not yet materialised are read from the readings), refreshed by [`refresh_rollups`] through
//!   `refresh_continuous_aggregate`: over all time the first time, then from [`LATE_HOURS`] before the last
//!   refresh, where TimescaleDB's invalidation log recomputes just the hours that changed. Never over all
//!   time again, because a refresh over chunks that retention dropped would empty those hours.
//! - Otherwise they are a table that [`refresh_rollups`] rewrites for the hours from [`LATE_HOURS`] before
//!   its last watermark up to the current hour, and moves the watermark (`telemetry_rollup`) to the current
//!   hour. Queries read the table before the watermark and the readings from it on, so they are real-time
//!   too. A reading that arrives more than [`LATE_HOURS`] after the hour it belongs to was rolled up is
//!   not counted in that hour's rollup.

use chrono::{DateTime, Duration, TimeZone, Utc};
use sqlx::PgPool;

use crate::error::Error;
use crate::store::timescale::Timescale;

/// Where buckets are counted from.
pub const BUCKET_ORIGIN: &str = "2000-01-01T00:00:00Z";

/// Hours before the last watermark that each refresh of the plain rollup table recomputes, so readings that
/// arrive late are counted.
pub const LATE_HOURS: i64 = 48;

/// Serialises refreshes and the switch between the plain table and the continuous aggregate.
const ROLLUP_LOCK: i64 = 0x7e1e_0001;

/// How the readings of one bucket become one value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Agg {
    Avg,
    Min,
    Max,
    Last,
    Count,
    Sum,
}

impl Agg {
    /// Every aggregate, in the order the API lists them.
    pub const ALL: [Agg; 6] = [Agg::Avg, Agg::Min, Agg::Max, Agg::Last, Agg::Count, Agg::Sum];

    /// The aggregate named `name` (`avg`, `min`, `max`, `last`, `count`, `sum`).
    pub fn parse(name: &str) -> Option<Agg> {
        Agg::ALL.into_iter().find(|a| a.name() == name)
    }

    pub fn name(self) -> &'static str {
        match self {
            Agg::Avg => "avg",
            Agg::Min => "min",
            Agg::Max => "max",
            Agg::Last => "last",
            Agg::Count => "count",
            Agg::Sum => "sum",
        }
    }

    /// Over readings (`value`, `ts`).
    fn over_readings(self) -> &'static str {
        match self {
            Agg::Avg => "avg(value)",
            Agg::Min => "min(value)",
            Agg::Max => "max(value)",
            Agg::Last => "(array_agg(value ORDER BY ts DESC))[1]",
            Agg::Count => "count(*)::float8",
            Agg::Sum => "sum(value)",
        }
    }

    /// Over hourly rollup rows.
    fn over_hours(self) -> &'static str {
        match self {
            Agg::Avg => "sum(total) / sum(readings)",
            Agg::Min => "min(lowest)",
            Agg::Max => "max(highest)",
            Agg::Last => "(array_agg(last_value ORDER BY last_at DESC))[1]",
            Agg::Count => "sum(readings)::float8",
            Agg::Sum => "sum(total)",
        }
    }
}

/// What a bucketed query was answered from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// Every reading.
    Raw,
    /// The hourly rollups.
    Rollup,
}

impl Source {
    /// Buckets of whole hours come from the rollups; shorter or uneven ones from the readings.
    pub fn for_bucket(width: Duration) -> Source {
        let s = width.num_seconds();
        if s >= 3600 && s % 3600 == 0 && width.subsec_nanos() == 0 { Source::Rollup } else { Source::Raw }
    }

    pub fn name(self) -> &'static str {
        match self {
            Source::Raw => "raw",
            Source::Rollup => "rollup",
        }
    }
}

/// [`BUCKET_ORIGIN`] as a time.
pub fn bucket_origin() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2000, 1, 1, 0, 0, 0).single().unwrap_or_default()
}

/// The start of the bucket of `width` that holds `t`. `width` must be positive.
pub fn bucket_floor(t: DateTime<Utc>, width: Duration) -> DateTime<Utc> {
    let w = width.num_microseconds().unwrap_or(i64::MAX).max(1);
    let since = (t - bucket_origin()).num_microseconds().unwrap_or(0);
    bucket_origin() + Duration::microseconds(since.div_euclid(w) * w)
}

/// The first bucket start at or after `t`.
pub fn bucket_ceil(t: DateTime<Utc>, width: Duration) -> DateTime<Utc> {
    let floor = bucket_floor(t, width);
    if floor == t { t } else { floor + width }
}

/// One bucket's value.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct Point {
    /// The bucket's start.
    pub t: DateTime<Utc>,
    pub v: f64,
}

/// One key a machine sends, with its first and last reading and how many there are.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct KeyStats {
    pub key: String,
    pub first: DateTime<Utc>,
    pub last: DateTime<Utc>,
    pub count: i64,
}

/// One reading.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct Reading {
    pub ts: DateTime<Utc>,
    pub key: String,
    pub value: f64,
}

/// The bucket function of this database: TimescaleDB's where it is active, PostgreSQL's otherwise.
fn bucket_fn(timescale: &Timescale) -> &'static str {
    if timescale.active { "time_bucket" } else { "date_bin" }
}

/// How the rollups are kept in this database.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Rollups {
    /// A continuous aggregate (real-time).
    Continuous,
    /// The plain table and its watermark.
    Table,
}

async fn wanted_rollups(pool: &PgPool, timescale: &Timescale) -> Result<Rollups, Error> {
    if !timescale.compression() {
        return Ok(Rollups::Table);
    }
    let hypertable: bool = sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM timescaledb_information.hypertables \
         WHERE hypertable_schema = current_schema() AND hypertable_name = 'telemetry')",
    )
    .fetch_one(pool)
    .await?;
    Ok(if hypertable { Rollups::Continuous } else { Rollups::Table })
}

/// What `telemetry_hourly` is now: `v` (the continuous aggregate's view), `r` (the plain table) or nothing.
async fn rollup_relkind(conn: &mut sqlx::PgConnection) -> Result<Option<String>, Error> {
    Ok(sqlx::query_scalar("SELECT relkind::text FROM pg_class WHERE oid = to_regclass('telemetry_hourly')")
        .fetch_optional(&mut *conn)
        .await?)
}

/// The plain rollup table (as migration 0016 makes it), for a database that goes back from the continuous
/// aggregate.
const PLAIN_TABLE: &str = "CREATE TABLE telemetry_hourly (\
    machine_id integer NOT NULL, key varchar(100) NOT NULL, hour timestamptz NOT NULL, readings bigint NOT NULL, \
    total double precision NOT NULL, lowest double precision NOT NULL, highest double precision NOT NULL, \
    last_value double precision NOT NULL, first_at timestamptz NOT NULL, last_at timestamptz NOT NULL, \
    PRIMARY KEY (machine_id, key, hour))";

/// The continuous aggregate, empty until the first refresh (real-time aggregation answers meanwhile).
const CONTINUOUS: &str = "CREATE MATERIALIZED VIEW telemetry_hourly \
    WITH (timescaledb.continuous, timescaledb.materialized_only = false) AS \
    SELECT machine_id, key, time_bucket(interval '1 hour', ts) AS hour, count(*) AS readings, \
           sum(value) AS total, min(value) AS lowest, max(value) AS highest, last(value, ts) AS last_value, \
           min(ts) AS first_at, max(ts) AS last_at \
    FROM telemetry GROUP BY machine_id, key, time_bucket(interval '1 hour', ts) WITH NO DATA";

/// Makes `telemetry_hourly` what this database calls for: the continuous aggregate on TimescaleDB with the
/// Timescale licence (replacing the plain table of a database that ran without it), the plain table
/// otherwise. Does nothing when it already is; safe to call at every start and from several connections.
pub async fn prepare_rollups(pool: &PgPool, timescale: &Timescale) -> Result<(), Error> {
    let wanted = wanted_rollups(pool, timescale).await?;
    let mut tx = pool.begin().await?;
    sqlx::query("SELECT pg_advisory_xact_lock($1)").bind(ROLLUP_LOCK).execute(&mut *tx).await?;
    let kind = rollup_relkind(&mut tx).await?;
    match (wanted, kind.as_deref()) {
        (Rollups::Continuous, Some("v")) | (Rollups::Table, Some("r")) => return Ok(()),
        (Rollups::Continuous, _) => {
            sqlx::query("DROP TABLE IF EXISTS telemetry_hourly").execute(&mut *tx).await?;
            sqlx::query(CONTINUOUS).execute(&mut *tx).await?;
            tracing::info!("telemetry rollups: telemetry_hourly is a continuous aggregate");
        }
        (Rollups::Table, _) => {
            sqlx::query("DROP MATERIALIZED VIEW IF EXISTS telemetry_hourly").execute(&mut *tx).await?;
            sqlx::query(PLAIN_TABLE).execute(&mut *tx).await?;
            tracing::info!("telemetry rollups: telemetry_hourly is a table refreshed by the server");
        }
    }
    // The watermark belonged to the other form.
    sqlx::query("DELETE FROM telemetry_rollup").execute(&mut *tx).await?;
    tx.commit().await?;
    Ok(())
}

/// The rollups' form, made what it should be first when it is not.
async fn ready_rollups(pool: &PgPool, timescale: &Timescale) -> Result<Rollups, Error> {
    let wanted = wanted_rollups(pool, timescale).await?;
    let kind = rollup_relkind(&mut *pool.acquire().await?).await?;
    let ready = matches!((wanted, kind.as_deref()), (Rollups::Continuous, Some("v")) | (Rollups::Table, Some("r")));
    if !ready {
        prepare_rollups(pool, timescale).await?;
    }
    Ok(wanted)
}

/// Where a refresh up to `until` starts: [`LATE_HOURS`] before the last one (`watermark`), or the beginning
/// of time the first time (`Some(None)`), but never before retention's last cut, since the readings before
/// it are gone and a refresh over them would empty their hours. `None`: nothing to refresh.
async fn refresh_start<'c>(
    conn: impl sqlx::PgExecutor<'c>,
    watermark: Option<DateTime<Utc>>,
    until: DateTime<Utc>,
) -> Result<Option<Option<DateTime<Utc>>>, Error> {
    let kept: Option<DateTime<Utc>> =
        sqlx::query_scalar("SELECT kept_from FROM telemetry_kept").fetch_optional(conn).await?;
    let late = watermark.map(|w| w.min(until) - Duration::hours(LATE_HOURS));
    let from = match (late, kept) {
        (Some(l), Some(k)) => Some(l.max(k)),
        (l, k) => l.or(k),
    };
    Ok(match from {
        Some(f) if f >= until => None,
        f => Some(f),
    })
}

/// Notes that retention removed the readings before `cut`, so that no rollup refresh reaches back past it.
pub async fn note_removed_before(pool: &PgPool, cut: DateTime<Utc>) -> Result<(), Error> {
    sqlx::query(
        "INSERT INTO telemetry_kept (kept_from) VALUES ($1) \
         ON CONFLICT (only_row) DO UPDATE SET kept_from = greatest(telemetry_kept.kept_from, EXCLUDED.kept_from)",
    )
    .bind(cut)
    .execute(pool)
    .await?;
    Ok(())
}

/// Brings the hourly rollups up to the start of `now`'s hour; returns the rollup rows written (0 for the
/// continuous aggregate, whose refresh does not say).
pub async fn refresh_rollups(pool: &PgPool, timescale: &Timescale, now: DateTime<Utc>) -> Result<u64, Error> {
    let until = bucket_floor(now, Duration::hours(1));
    match ready_rollups(pool, timescale).await? {
        Rollups::Continuous => {
            // The first refresh starts at the beginning of time; later ones [`LATE_HOURS`] before the last.
            // Never from the beginning again: retention drops old chunks, and a refresh over a dropped
            // region would remove its hours from the rollup too. TimescaleDB recomputes only the hours it
            // recorded as changed, and the new ones. It cannot run inside a transaction.
            let watermark: Option<DateTime<Utc>> =
                sqlx::query_scalar("SELECT complete_until FROM telemetry_rollup").fetch_optional(pool).await?;
            let Some(from) = refresh_start(pool, watermark, until).await? else { return Ok(0) };
            sqlx::query("CALL refresh_continuous_aggregate('telemetry_hourly', $1, $2)")
                .bind(from)
                .bind(until)
                .execute(pool)
                .await?;
            sqlx::query(
                "INSERT INTO telemetry_rollup (complete_until) VALUES ($1) \
                 ON CONFLICT (only_row) DO UPDATE SET complete_until = EXCLUDED.complete_until",
            )
            .bind(until)
            .execute(pool)
            .await?;
            Ok(0)
        }
        Rollups::Table => {
            let mut tx = pool.begin().await?;
            sqlx::query("SELECT pg_advisory_xact_lock($1)").bind(ROLLUP_LOCK).execute(&mut *tx).await?;
            let watermark: Option<DateTime<Utc>> =
                sqlx::query_scalar("SELECT complete_until FROM telemetry_rollup").fetch_optional(&mut *tx).await?;
            // None: from the first reading.
            let Some(from) = refresh_start(&mut *tx, watermark, until).await? else { return Ok(0) };
            sqlx::query("DELETE FROM telemetry_hourly WHERE ($1::timestamptz IS NULL OR hour >= $1) AND hour < $2")
                .bind(from)
                .bind(until)
                .execute(&mut *tx)
                .await?;
            let written = sqlx::query(
                "INSERT INTO telemetry_hourly \
                     (machine_id, key, hour, readings, total, lowest, highest, last_value, first_at, last_at) \
                 SELECT machine_id, key, date_bin(interval '1 hour', ts, $3::timestamptz), count(*), sum(value), \
                        min(value), max(value), (array_agg(value ORDER BY ts DESC))[1], min(ts), max(ts) \
                 FROM telemetry WHERE ($1::timestamptz IS NULL OR ts >= $1) AND ts < $2 \
                 GROUP BY 1, 2, 3",
            )
            .bind(from)
            .bind(until)
            .bind(bucket_origin())
            .execute(&mut *tx)
            .await?
            .rows_affected();
            sqlx::query(
                "INSERT INTO telemetry_rollup (complete_until) VALUES ($1) \
                 ON CONFLICT (only_row) DO UPDATE SET complete_until = EXCLUDED.complete_until",
            )
            .bind(until)
            .execute(&mut *tx)
            .await?;
            tx.commit().await?;
            Ok(written)
        }
    }
}

/// The hourly rows (`hour, readings, total, lowest, highest, last_value, first_at, last_at` and
/// `machine_id, key`) of machine `$1` as a subquery: the continuous aggregate, or the plain table before
/// its watermark `$2` (a timestamptz, null before the first refresh) and the readings from it on.
/// `extra_hours` and `extra_readings` narrow the two parts alike (parameters from `$3` on).
fn hourly_rows(rollups: Rollups, extra_hours: &str, extra_readings: &str) -> String {
    match rollups {
        Rollups::Continuous => format!(
            "SELECT machine_id, key, hour, readings, total, lowest, highest, last_value, first_at, last_at \
             FROM telemetry_hourly WHERE machine_id = $1 {extra_hours}"
        ),
        Rollups::Table => format!(
            "SELECT machine_id, key, hour, readings, total, lowest, highest, last_value, first_at, last_at \
             FROM telemetry_hourly WHERE machine_id = $1 AND hour < coalesce($2, '-infinity') {extra_hours} \
             UNION ALL \
             SELECT machine_id, key, date_bin(interval '1 hour', ts, timestamptz '{BUCKET_ORIGIN}'), count(*), \
                    sum(value), min(value), max(value), (array_agg(value ORDER BY ts DESC))[1], min(ts), max(ts) \
             FROM telemetry WHERE machine_id = $1 AND ts >= coalesce($2, '-infinity') {extra_readings} \
             GROUP BY 1, 2, 3"
        ),
    }
}

/// Where the plain rollup table stops being complete (none before the first refresh, and none for the
/// continuous aggregate, which knows its own).
async fn watermark(pool: &PgPool, rollups: Rollups) -> Result<Option<DateTime<Utc>>, Error> {
    if rollups == Rollups::Continuous {
        return Ok(None);
    }
    Ok(sqlx::query_scalar("SELECT complete_until FROM telemetry_rollup").fetch_optional(pool).await?)
}

/// Machine `machine`'s readings of `key` in [from, to) cut into buckets of `width` counted from
/// [`BUCKET_ORIGIN`], one value per bucket that has readings, oldest first, read from `source`. `from`
/// and `to` should be bucket starts (see [`bucket_floor`], [`bucket_ceil`]): a rollup bucket holds whole hours.
#[allow(clippy::too_many_arguments)]
pub async fn series(
    pool: &PgPool,
    timescale: &Timescale,
    source: Source,
    machine: i32,
    key: &str,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    width: Duration,
    agg: Agg,
) -> Result<Vec<Point>, Error> {
    let bucket = bucket_fn(timescale);
    let seconds = width.num_seconds();
    let points = match source {
        Source::Raw => {
            let sql = format!(
                "SELECT {bucket}($5::bigint * interval '1 second', ts, $6::timestamptz) AS t, {} AS v \
                 FROM telemetry WHERE machine_id = $1 AND key = $2 AND ts >= $3 AND ts < $4 \
                 GROUP BY 1 ORDER BY 1",
                agg.over_readings()
            );
            sqlx::query_as(sqlx::AssertSqlSafe(sql))
                .bind(machine)
                .bind(key)
                .bind(from)
                .bind(to)
                .bind(seconds)
                .bind(bucket_origin())
                .fetch_all(pool)
                .await?
        }
        Source::Rollup => {
            let rollups = ready_rollups(pool, timescale).await?;
            let hourly = hourly_rows(
                rollups,
                "AND key = $3 AND hour >= $4 AND hour < $5",
                "AND key = $3 AND ts >= $4 AND ts < $5",
            );
            let sql = format!(
                "SELECT {bucket}($6::bigint * interval '1 second', hour, $7::timestamptz) AS t, {} AS v \
                 FROM ({hourly}) h GROUP BY 1 ORDER BY 1",
                agg.over_hours()
            );
            let mark = watermark(pool, rollups).await?;
            sqlx::query_as(sqlx::AssertSqlSafe(sql))
                .bind(machine)
                .bind(mark)
                .bind(key)
                .bind(from)
                .bind(to)
                .bind(seconds)
                .bind(bucket_origin())
                .fetch_all(pool)
                .await?
        }
    };
    Ok(points)
}

/// The keys machine `machine` has sent, by name, each with its first and last reading's time and how many
/// readings it has; read from the hourly rollups.
pub async fn keys(pool: &PgPool, timescale: &Timescale, machine: i32) -> Result<Vec<KeyStats>, Error> {
    let rollups = ready_rollups(pool, timescale).await?;
    let hourly = hourly_rows(rollups, "", "");
    let sql = format!(
        "SELECT key::text AS key, min(first_at) AS first, max(last_at) AS last, sum(readings)::int8 AS count \
         FROM ({hourly}) h GROUP BY key ORDER BY key"
    );
    let mark = watermark(pool, rollups).await?;
    Ok(sqlx::query_as(sqlx::AssertSqlSafe(sql)).bind(machine).bind(mark).fetch_all(pool).await?)
}

/// Up to `limit` of machine `machine`'s readings in [from, to), of `key` only when given, oldest first (by
/// time, then key).
pub async fn readings(
    pool: &PgPool,
    machine: i32,
    key: Option<&str>,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    limit: i64,
) -> Result<Vec<Reading>, Error> {
    Ok(sqlx::query_as(
        "SELECT ts, key::text AS key, value FROM telemetry \
         WHERE machine_id = $1 AND ($2::text IS NULL OR key = $2) AND ts >= $3 AND ts < $4 \
         ORDER BY ts, key LIMIT $5",
    )
    .bind(machine)
    .bind(key)
    .bind(from)
    .bind(to)
    .bind(limit)
    .fetch_all(pool)
    .await?)
}

/// Up to `limit` of machine `machine`'s messages in [from, to) as (time, {key: value}), the readings of one
/// time together, of `key` only when given, oldest first.
pub async fn messages(
    pool: &PgPool,
    machine: i32,
    key: Option<&str>,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    limit: i64,
) -> Result<Vec<(DateTime<Utc>, serde_json::Value)>, Error> {
    Ok(sqlx::query_as(
        "SELECT ts, jsonb_object_agg(key, value) FROM telemetry \
         WHERE machine_id = $1 AND ($2::text IS NULL OR key = $2) AND ts >= $3 AND ts < $4 AND ts IN (\
             SELECT DISTINCT ts FROM telemetry \
             WHERE machine_id = $1 AND ($2::text IS NULL OR key = $2) AND ts >= $3 AND ts < $4 ORDER BY ts LIMIT $5) \
         GROUP BY ts ORDER BY ts",
    )
    .bind(machine)
    .bind(key)
    .bind(from)
    .bind(to)
    .bind(limit)
    .fetch_all(pool)
    .await?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        s.parse().unwrap()
    }

    #[test]
    fn buckets_are_counted_from_the_origin() {
        let quarter = Duration::minutes(15);
        assert_eq!(bucket_floor(at("2024-01-10T08:14:59Z"), quarter), at("2024-01-10T08:00:00Z"));
        assert_eq!(bucket_floor(at("2024-01-10T08:15:00Z"), quarter), at("2024-01-10T08:15:00Z"));
        assert_eq!(bucket_ceil(at("2024-01-10T08:15:00Z"), quarter), at("2024-01-10T08:15:00Z"));
        assert_eq!(bucket_ceil(at("2024-01-10T08:15:01Z"), quarter), at("2024-01-10T08:30:00Z"));
        // Days are UTC days; 7 days start on the origin's weekday (a Saturday), before the origin too.
        assert_eq!(bucket_floor(at("2024-01-10T23:59:00Z"), Duration::days(1)), at("2024-01-10T00:00:00Z"));
        assert_eq!(bucket_floor(at("2024-01-10T12:00:00Z"), Duration::days(7)), at("2024-01-06T00:00:00Z"));
        assert_eq!(bucket_floor(at("1999-12-31T23:00:00Z"), Duration::hours(5)), at("1999-12-31T19:00:00Z"));
    }

    #[test]
    fn whole_hours_come_from_the_rollups() {
        for (width, source) in [
            (Duration::minutes(15), Source::Raw),
            (Duration::minutes(90), Source::Raw),
            (Duration::hours(1), Source::Rollup),
            (Duration::hours(6), Source::Rollup),
            (Duration::days(1), Source::Rollup),
        ] {
            assert_eq!(Source::for_bucket(width), source, "{width}");
        }
    }

    #[test]
    fn aggregates_are_named() {
        for a in Agg::ALL {
            assert_eq!(Agg::parse(a.name()), Some(a));
        }
        assert_eq!(Agg::parse("median"), None);
    }
}
