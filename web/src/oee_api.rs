//! Our own OEE API: `GET /api/v1/oee?machine=N|group=N[&from=…&to=…][&by=hour|shift|day|job]`, by the
//! rules of DESIGN.md (availability `null` when nothing was planned, performance raw with its coverage,
//! quality from the counts in the window, roll-ups from sums), with the six big losses, durations per
//! code and per machine state, and the target quantity, per bucket and overall.
//!
//! Whole plant days entirely in the past come from the daily cache (`oee_day_cache`) when it has them and
//! are computed and stored when it does not; everything else (today, parts of days, hours) is computed
//! live. Every table is read once per request for all the machines of the request.

use std::collections::{BTreeMap, HashMap, HashSet};

use axum::Json;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Datelike, Duration, NaiveDate, TimeZone, Timelike, Utc};
use chrono_tz::Tz;
use oee_core::activity::ScheduleState;
use oee_core::oee::{EngineConfig, History, Sums, Window};
use oee_core::shift::{Version, local_date_bounds, local_day_start, schedule_over, transitions_over};
use oee_core::store::{cache, report};
use serde_json::{Value, json};

use crate::WebState;

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

pub(crate) fn bad(msg: impl Into<String>) -> ApiError {
    ApiError::BadRequest(msg.into())
}

/// A date as a query gives it, `YYYY-MM-DD`, within the years RFC 3339 times have (0000 to 9999): the
/// calendar's own ends (year ±262143) are no day a report can cover, and computing their bounds overflows.
pub(crate) fn plain_date(text: &str) -> Option<NaiveDate> {
    NaiveDate::parse_from_str(text, "%Y-%m-%d").ok().filter(|d| (0..=9999).contains(&d.year()))
}

/// A time parameter: RFC 3339, or a plain date meaning the start of that plant day.
pub(crate) fn time_param(q: &HashMap<String, String>, name: &str, tz: Tz) -> Result<Option<DateTime<Utc>>, ApiError> {
    q.get(name)
        .map(|v| {
            let v = v.trim();
            DateTime::parse_from_rfc3339(v)
                .map(|t| t.with_timezone(&Utc))
                .ok()
                .or_else(|| plain_date(v).map(|d| local_date_bounds(tz, d).0))
                .ok_or_else(|| {
                    bad(format!(
                        "`{name}` must be an RFC 3339 time like 2026-01-05T06:00:00Z or a date like 2026-01-05, \
                         not `{v}`"
                    ))
                })
        })
        .transpose()
}

/// An id parameter.
pub(crate) fn id_param(q: &HashMap<String, String>, name: &str) -> Result<Option<i32>, ApiError> {
    q.get(name)
        .map(|v| v.trim().parse::<i32>().map_err(|_| bad(format!("`{name}` must be a number like 3, not `{v}`"))))
        .transpose()
}

/// How a report is cut.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum By {
    None,
    Hour,
    Shift,
    Day,
    Job,
}

impl By {
    fn parse(v: Option<&String>) -> Result<By, ApiError> {
        match v.map(|s| s.trim()) {
            None | Some("") | Some("none") => Ok(By::None),
            Some("hour") => Ok(By::Hour),
            Some("shift") => Ok(By::Shift),
            Some("day") => Ok(By::Day),
            Some("job") => Ok(By::Job),
            Some(other) => Err(bad(format!("`by` must be hour, shift, day or job, not `{other}`"))),
        }
    }

    fn name(self) -> &'static str {
        match self {
            By::None => "none",
            By::Hour => "hour",
            By::Shift => "shift",
            By::Day => "day",
            By::Job => "job",
        }
    }
}

/// One bucket of a report: for one machine, or for all the machines of the request when `machine` is
/// `None`; `label` says what else identifies it (its job).
pub(crate) struct Bucket {
    pub(crate) machine: Option<i32>,
    pub(crate) start: DateTime<Utc>,
    pub(crate) end: DateTime<Utc>,
    label: Option<Value>,
}

/// `GET /api/v1/oee`.
#[utoipa::path(
    get,
    path = "/api/v1/oee",
    tag = "reports",
    operation_id = "oee_report",
    summary = "OEE of a machine or a group over a window",
    description = "Availability, performance, quality, OEE and TEEP with the six big losses, durations per code and \
                   per machine state and the target quantity, for the whole window and per bucket. Availability is \
                   null when nothing was planned; performance is not clamped (`performance_over_100` flags it).",
    params(
        ("machine" = Option<i32>, Query, description = "The machine's id (give `machine` or `group`)"),
        ("group" = Option<i32>, Query, description = "A machine group's id (give `machine` or `group`)"),
        ("from" = Option<String>, Query, description = "Start: an RFC 3339 time like 2026-01-05T06:00:00Z, or a date like 2026-01-05 meaning the start of that plant day; default: the start of today"),
        ("to" = Option<String>, Query, description = "End: an RFC 3339 time like 2026-01-05T06:00:00Z, or a date like 2026-01-05 meaning the start of that plant day; default: the end of today"),
        ("by" = Option<crate::openapi::ReportCut>, Query, description = "How to cut the window into buckets; default: none"),
    ),
    responses(
        (status = 200, description = "The report", body = crate::openapi::OeeReport),
        (status = 400, description = "A parameter is wrong, or the window or the buckets are too many", body = crate::openapi::ReportError),
        (status = 404, description = "No such machine or group", body = crate::openapi::ReportError),
        (status = 503, description = "The database is not available", body = crate::openapi::ReportError),
    )
)]
pub(crate) async fn oee(
    State(state): State<WebState>,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Json<Value>, ApiError> {
    let tz = state.tz;
    let (machines, group) = match (id_param(&q, "machine")?, id_param(&q, "group")?) {
        (Some(m), None) => {
            if !report::machine_exists(&state.pool, m).await? {
                return Err(ApiError::NotFound(format!("machine {m} does not exist: check the id")));
            }
            (vec![m], None)
        }
        (None, Some(g)) => (
            report::group_machines(&state.pool, g)
                .await?
                .ok_or_else(|| ApiError::NotFound(format!("machine group {g} does not exist: check the id")))?,
            Some(g),
        ),
        (Some(_), Some(_)) => return Err(bad("give either `machine` or `group`, not both")),
        (None, None) => return Err(bad("give `machine=N` or `group=N`")),
    };
    let now = Utc::now();
    let (today_start, today_end) = local_date_bounds(tz, now.with_timezone(&tz).date_naive());
    let from = time_param(&q, "from", tz)?.unwrap_or(today_start);
    let to = time_param(&q, "to", tz)?.unwrap_or(today_end);
    if to <= from {
        return Err(bad(format!("`to` ({to}) must be after `from` ({from})")));
    }
    let by = By::parse(q.get("by"))?;
    let window = Window::new(from, to, now);
    let max = state.oee.max_buckets;
    let too_many =
        || bad(format!("more than {max} buckets: shorten the window or use a coarser `by` (hour, shift, day)"));
    if window.end - window.start > Duration::days(max as i64) {
        return Err(bad(format!("the window is longer than {max} days: shorten it")));
    }

    let buckets: Vec<Bucket> = match by {
        By::None => Vec::new(),
        By::Hour => shared_buckets(window, max, |t| next_local_hour(tz, t)).ok_or_else(too_many)?,
        By::Day => shared_buckets(window, max, |t| local_date_bounds(tz, t.with_timezone(&tz).date_naive()).1)
            .ok_or_else(too_many)?,
        By::Shift => {
            let patterns = report::shift_histories(&state.pool, &machines, window.start, window.end).await?;
            let mut out = Vec::new();
            for m in &machines {
                if let Some(versions) = patterns.get(m) {
                    out.extend(shift_buckets(*m, versions, tz, window));
                }
                if out.len() > max {
                    return Err(too_many());
                }
            }
            out.sort_by_key(|b| (b.start, b.machine));
            out
        }
        By::Job => {
            let stretches: Vec<report::Stretch> = machines
                .iter()
                .map(|m| report::Stretch { machine: *m, start: window.start, end: window.end })
                .collect();
            let mut conn = state.pool.acquire().await.map_err(oee_core::Error::from)?;
            let jobs = report::jobs_overlapping(&mut conn, &stretches).await?;
            if jobs.len() > max {
                return Err(too_many());
            }
            let mut out: Vec<Bucket> = jobs
                .into_iter()
                .filter_map(|(machine, id, number, start, end, ict)| {
                    let (s, e) = (start.max(window.start), end.unwrap_or(window.end).min(window.end));
                    (e > s).then(|| Bucket {
                        machine: Some(machine),
                        start: s,
                        end: e,
                        label: Some(json!({ "id": id, "job_number": number, "ideal_cycle_time_s": ict,
                                            "start": start, "end": end })),
                    })
                })
                .collect();
            out.sort_by_key(|b| (b.start, b.machine));
            out
        }
    };

    // Every interval asked for: the buckets and each machine's whole window.
    let mut intervals: Vec<(i32, DateTime<Utc>, DateTime<Utc>)> =
        machines.iter().map(|m| (*m, window.start, window.end)).collect();
    for b in &buckets {
        match b.machine {
            Some(m) => intervals.push((m, b.start, b.end)),
            None => intervals.extend(machines.iter().map(|m| (*m, b.start, b.end))),
        }
    }
    let started = std::time::Instant::now();
    let calc = Calculator::ready(&state, &intervals, now).await?;
    let cfg = calc.cfg;
    let loaded = started.elapsed();

    let mut total = Sums::default();
    let mut by_machine = Vec::new();
    for m in &machines {
        let s = calc.sums(*m, window.start, window.end);
        total.add(&s);
        if group.is_some() {
            let mut row = report_json(&s);
            row["machine"] = json!(m);
            by_machine.push(row);
        }
    }
    let rows: Vec<Value> = buckets
        .iter()
        .map(|b| {
            let mut s = Sums::default();
            match b.machine {
                Some(m) => s = calc.sums(m, b.start, b.end),
                None => machines.iter().for_each(|m| s.add(&calc.sums(*m, b.start, b.end))),
            }
            let mut row = report_json(&s);
            row["from"] = json!(b.start);
            row["to"] = json!(b.end);
            if let Some(m) = b.machine {
                row["machine"] = json!(m);
            }
            if let Some(label) = &b.label {
                row["job"] = label.clone();
            }
            row
        })
        .collect();
    tracing::debug!(?loaded, total = ?started.elapsed(), machines = machines.len(), "OEE report");
    Ok(Json(json!({
        "machines": machines,
        "group": group,
        "timezone": tz.name(),
        "by": by.name(),
        "from": window.start,
        "to": window.end,
        "minor_stop_threshold_s": cfg.minor_stop_threshold_ms as f64 / 1000.0,
        "total": report_json(&total),
        "by_machine": by_machine,
        "buckets": rows,
        "cache": { "days_read": calc.days_read, "days_computed": calc.days_computed },
    })))
}

/// Figures, losses, durations and target quantity of some sums, with the sums themselves.
fn report_json(s: &Sums) -> Value {
    let states = s.by_state();
    json!({
        "figures": s.figures(),
        "losses": s.losses(),
        "durations": {
            "by_code_ms": s.by_code_ms,
            "by_state_ms": {
                "uptime": states.get(&1),
                "unplanned_downtime": states.get(&2),
                "planned_downtime": states.get(&3),
                "overtime": states.get(&4),
            },
        },
        "target_quantity": s.target_quantity,
        "target_quantity_run": s.target_quantity_run,
        "good": s.good,
        "rejects": s.total - s.good,
        "sums": s,
    })
}

/// Buckets shared by all machines, cutting the window at the instants `next` gives (each strictly after
/// its argument); `None` when there would be more than `max`.
pub(crate) fn shared_buckets(
    window: Window,
    max: usize,
    next: impl Fn(DateTime<Utc>) -> DateTime<Utc>,
) -> Option<Vec<Bucket>> {
    let mut out = Vec::new();
    let mut at = window.start;
    while at < window.end {
        let cut = next(at).max(at + Duration::seconds(1)).min(window.end);
        out.push(Bucket { machine: None, start: at, end: cut, label: None });
        at = cut;
        if out.len() > max {
            return None;
        }
    }
    Some(out)
}

/// One bucket per in-shift interval of a machine's pattern inside the window, each instant by the version of
/// the pattern the machine followed then: every period start begins a new interval (two shifts back to back
/// are two buckets), an edit that keeps a shift running does not; intervals are clipped to the window.
pub(crate) fn shift_buckets(machine: i32, versions: &[Version], tz: Tz, window: Window) -> Vec<Bucket> {
    let mut out = Vec::new();
    let mut open = (schedule_over(versions, tz, window.start) == ScheduleState::InShift).then_some(window.start);
    let mut close = |start: DateTime<Utc>, end: DateTime<Utc>| {
        if end > start {
            out.push(Bucket { machine: Some(machine), start, end, label: None });
        }
    };
    for t in transitions_over(versions, tz, window.start, window.end) {
        if let Some(start) = open.take() {
            close(start, t.at);
        }
        if t.state == ScheduleState::InShift {
            open = Some(t.at);
        }
    }
    if let Some(start) = open {
        close(start, window.end);
    }
    out
}

/// The start of the next plant-local hour after `t`.
pub(crate) fn next_local_hour(tz: Tz, t: DateTime<Utc>) -> DateTime<Utc> {
    let local = t.with_timezone(&tz);
    let floored =
        local.date_naive().and_hms_opt(local.hour(), 0, 0).and_then(|n| tz.from_local_datetime(&n).earliest());
    floored.map(|f| f.with_timezone(&Utc) + Duration::hours(1)).unwrap_or(t + Duration::hours(1))
}

/// A piece of an interval: a whole plant day, or a stretch computed live.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Piece {
    Day { date: NaiveDate, start: DateTime<Utc>, end: DateTime<Utc> },
    Live { start: DateTime<Utc>, end: DateTime<Utc> },
}

/// Works out sums per machine and interval from cached days and live history.
pub(crate) struct Calculator {
    tz: Tz,
    cfg: EngineConfig,
    /// Days ending at or before this are entirely past and may be cached.
    today_start: DateTime<Utc>,
    now: DateTime<Utc>,
    use_cache: bool,
    days: HashMap<(i32, DateTime<Utc>), Sums>,
    histories: HashMap<i32, History>,
    days_read: usize,
    days_computed: usize,
}

impl Calculator {
    fn new(tz: Tz, cfg: EngineConfig, today_start: DateTime<Utc>, now: DateTime<Utc>, use_cache: bool) -> Self {
        Calculator {
            tz,
            cfg,
            today_start,
            now,
            use_cache,
            days: HashMap::new(),
            histories: HashMap::new(),
            days_read: 0,
            days_computed: 0,
        }
    }

    /// A calculator with everything loaded that `intervals` (machine, start, end) need, by the engine
    /// settings in force (the threshold an administrator set on the settings page wins over the config
    /// file's).
    pub(crate) async fn ready(
        state: &WebState,
        intervals: &[(i32, DateTime<Utc>, DateTime<Utc>)],
        now: DateTime<Utc>,
    ) -> Result<Calculator, ApiError> {
        let cfg = oee_core::store::setting::oee_engine(&state.pool, &state.oee).await?;
        let mut calc = Calculator::new(state.tz, cfg, local_day_start(state.tz, now), now, state.oee.daily_cache);
        calc.load(&state.pool, intervals).await?;
        Ok(calc)
    }

    /// [start, end) cut into whole past plant days (when the cache is on) and live stretches.
    fn pieces(&self, start: DateTime<Utc>, end: DateTime<Utc>) -> Vec<Piece> {
        let end = end.min(self.now);
        let mut out = Vec::new();
        if !self.use_cache {
            if end > start {
                out.push(Piece::Live { start, end });
            }
            return out;
        }
        let mut at = start;
        while at < end {
            let date = at.with_timezone(&self.tz).date_naive();
            let (ds, de) = local_date_bounds(self.tz, date);
            if ds == at && de <= end && de <= self.today_start {
                out.push(Piece::Day { date, start: ds, end: de });
                at = de;
            } else {
                let cut = if de > at { de.min(end) } else { end };
                match out.last_mut() {
                    Some(Piece::Live { end: e, .. }) if *e == at => *e = cut,
                    _ => out.push(Piece::Live { start: at, end: cut }),
                }
                at = cut;
            }
        }
        out
    }

    /// Reads the cached days the intervals need and the live history for everything else (one query per
    /// table for all machines), then computes and stores the missing past days.
    async fn load(
        &mut self,
        pool: &sqlx::PgPool,
        intervals: &[(i32, DateTime<Utc>, DateTime<Utc>)],
    ) -> Result<(), ApiError> {
        let t0 = std::time::Instant::now();
        let mut wanted: BTreeMap<(i32, DateTime<Utc>), (NaiveDate, DateTime<Utc>)> = BTreeMap::new();
        let mut live: Vec<(i32, DateTime<Utc>, DateTime<Utc>)> = Vec::new();
        for (m, s, e) in intervals {
            for p in self.pieces(*s, *e) {
                match p {
                    Piece::Day { date, start, end } => {
                        wanted.insert((*m, start), (date, end));
                    }
                    Piece::Live { start, end } => live.push((*m, start, end)),
                }
            }
        }
        if let (Some(lo), Some(hi)) = (wanted.keys().map(|k| k.1).min(), wanted.values().map(|v| v.1).max()) {
            let with_days: Vec<i32> = wanted.keys().map(|k| k.0).collect::<HashSet<_>>().into_iter().collect();
            for d in cache::cached_days(pool, &with_days, lo, hi, self.cfg).await? {
                if let Some((_, end)) = wanted.get(&(d.machine_id, d.day_start))
                    && *end == d.day_end
                {
                    self.days.insert((d.machine_id, d.day_start), d.sums);
                    self.days_read += 1;
                }
            }
        }
        let cache_read = t0.elapsed();
        let missing: Vec<(i32, DateTime<Utc>, NaiveDate, DateTime<Utc>)> = wanted
            .iter()
            .filter(|(k, _)| !self.days.contains_key(k))
            .map(|((m, s), (date, e))| (*m, *s, *date, *e))
            .collect();
        live.extend(missing.iter().map(|(m, s, _, e)| (*m, *s, *e)));
        // One stretch per machine, from its earliest to its latest live piece.
        let mut stretches: BTreeMap<i32, report::Stretch> = BTreeMap::new();
        for (m, start, end) in live {
            let s = stretches.entry(m).or_insert(report::Stretch { machine: m, start, end });
            s.start = s.start.min(start);
            s.end = s.end.max(end);
        }
        let stretches: Vec<report::Stretch> = stretches.into_values().collect();
        // Missing past days are claimed and read from a snapshot that follows every history write in
        // flight, so a day is only stored when no write under it committed after it was read.
        let claims: Vec<cache::DayClaim> = missing
            .iter()
            .map(|(m, start, day, end)| cache::DayClaim { machine_id: *m, day: *day, day_start: *start, day_end: *end })
            .collect();
        let mut snapshot = None;
        if !claims.is_empty() {
            cache::claim_days(pool, &claims, self.cfg).await?;
            snapshot = cache::HistorySnapshot::take(pool).await?;
            if snapshot.is_none() {
                tracing::info!("history writers were busy: the days of this report are computed but not cached");
            }
        }
        if !stretches.is_empty() {
            let inputs = match snapshot.as_mut() {
                Some(s) => report::engine_inputs(s.conn(), &stretches).await?,
                None => {
                    let mut conn = pool.acquire().await.map_err(oee_core::Error::from)?;
                    report::engine_inputs(&mut conn, &stretches).await?
                }
            };
            for (m, i) in inputs {
                self.histories.insert(m, History::new(i.activities, i.jobs, i.production));
            }
        }
        let history_read = t0.elapsed();
        let stored = match snapshot {
            Some(s) => {
                s.finish().await?;
                true
            }
            None => false,
        };
        let mut computed = Vec::new();
        for (m, start, date, end) in missing {
            let sums = self.live_sums(m, start, end);
            self.days.insert((m, start), sums.clone());
            computed.push(cache::DaySums { machine_id: m, day: date, day_start: start, day_end: end, sums });
        }
        self.days_computed = computed.len();
        tracing::debug!(?cache_read, ?history_read, computed = ?t0.elapsed(), "OEE report inputs");
        if stored && let Err(e) = cache::fill_claimed_days(pool, &computed, self.cfg).await {
            // The figures are right without the cache; the next request tries again.
            tracing::warn!(error = %e, "could not store the daily OEE cache");
        }
        Ok(())
    }

    fn live_sums(&self, machine: i32, start: DateTime<Utc>, end: DateTime<Utc>) -> Sums {
        let w = Window::new(start, end, self.now);
        match self.histories.get(&machine) {
            Some(h) => h.sums(w, self.cfg),
            None => oee_core::oee::sums(w, &[], &[], &[], self.cfg),
        }
    }

    /// One machine's sums over [start, end) (after [`Calculator::load`] saw the interval).
    pub(crate) fn sums(&self, machine: i32, start: DateTime<Utc>, end: DateTime<Utc>) -> Sums {
        let mut total = Sums::default();
        for p in self.pieces(start, end) {
            match p {
                Piece::Day { start, end, .. } => match self.days.get(&(machine, start)) {
                    Some(s) => total.add(s),
                    None => total.add(&self.live_sums(machine, start, end)),
                },
                Piece::Live { start, end } => total.add(&self.live_sums(machine, start, end)),
            }
        }
        total
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn utc(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn dates_are_taken_only_within_the_years_of_rfc_3339() {
        assert_eq!(plain_date("2026-01-05"), NaiveDate::from_ymd_opt(2026, 1, 5));
        assert_eq!(plain_date("0000-01-01"), NaiveDate::from_ymd_opt(0, 1, 1));
        assert_eq!(plain_date("9999-12-31"), NaiveDate::from_ymd_opt(9999, 12, 31));
        for far in ["+262142-12-31", "-262143-01-01", "10000-01-01", "-0001-12-31", "2026-02-30"] {
            assert_eq!(plain_date(far), None, "{far}");
            let q = HashMap::from([("to".to_string(), far.to_string())]);
            assert!(matches!(time_param(&q, "to", Tz::UTC), Err(ApiError::BadRequest(_))), "{far}");
        }
    }

    #[test]
    fn intervals_split_into_whole_past_days_and_live_stretches() {
        let tz: Tz = "Europe/London".parse().unwrap();
        let now = utc("2026-03-31T10:00:00Z");
        let c = Calculator::new(tz, EngineConfig::default(), local_day_start(tz, now), now, true);
        // 2026-03-29 is the 23-hour day when the clocks go forward.
        let pieces = c.pieces(utc("2026-03-28T12:00:00Z"), utc("2026-04-02T00:00:00Z"));
        let day = |d: &str, s: &str, e: &str| Piece::Day { date: d.parse().unwrap(), start: utc(s), end: utc(e) };
        assert_eq!(
            pieces,
            vec![
                Piece::Live { start: utc("2026-03-28T12:00:00Z"), end: utc("2026-03-29T00:00:00Z") },
                day("2026-03-29", "2026-03-29T00:00:00Z", "2026-03-29T23:00:00Z"),
                day("2026-03-30", "2026-03-29T23:00:00Z", "2026-03-30T23:00:00Z"),
                Piece::Live { start: utc("2026-03-30T23:00:00Z"), end: now },
            ]
        );
        let off = Calculator::new(tz, EngineConfig::default(), local_day_start(tz, now), now, false);
        assert_eq!(off.pieces(utc("2026-03-28T12:00:00Z"), utc("2026-03-30T00:00:00Z")).len(), 1);
    }

    #[test]
    fn shift_buckets_follow_the_pattern_and_are_clipped() {
        use oee_core::shift::standard_day;
        let tz = Tz::UTC;
        // Monday 2026-01-05: in shift 09:00-17:00; Tuesday: 06:00-14:00 then 14:00-22:00 back to back.
        let mut periods = standard_day(0, 9 * 60, 17 * 60).to_vec();
        periods.extend(standard_day(1, 6 * 60, 22 * 60));
        periods.push(oee_core::shift::Period { day: 1, start_minute: 14 * 60, state: ScheduleState::InShift });
        let w = Window::new(utc("2026-01-05T10:00:00Z"), utc("2026-01-06T20:00:00Z"), utc("2027-01-01T00:00:00Z"));
        let got: Vec<(DateTime<Utc>, DateTime<Utc>)> =
            shift_buckets(7, &Version::always(periods), tz, w).iter().map(|b| (b.start, b.end)).collect();
        assert_eq!(
            got,
            vec![
                (utc("2026-01-05T10:00:00Z"), utc("2026-01-05T17:00:00Z")),
                (utc("2026-01-06T06:00:00Z"), utc("2026-01-06T14:00:00Z")),
                (utc("2026-01-06T14:00:00Z"), utc("2026-01-06T20:00:00Z")),
            ]
        );
    }
}
