//! `GET /explain?machine=N|group=N&from=…&to=…`: where an OEE figure comes from. For the same window and by
//! the same computation as `/api/v1/oee` ([`Calculator`]), the page writes out every formula with its
//! numbers put in (availability, performance, quality, OEE), lists the six big losses in minutes, and says
//! which of the figures' data-quality flags hold: performance over 100 %, parts counted outside planned
//! time, a machine with no signal, and jobs without an ideal cycle time. Every OEE, A, P and Q figure on the
//! status cards, the machine report and the daily OEE table links here.

use std::collections::HashMap;

use axum::Extension;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use chrono::{DateTime, NaiveDate, Utc};
use oee_core::oee::{Sums, Window};
use oee_core::payload::Signal;
use oee_core::shift::local_date_bounds;
use oee_core::store::code::list_codes;
use oee_core::store::job::jobs_in_range;
use oee_core::store::machine::machine_statuses;
use oee_core::store::report::{self, activities_in_window, production_in_window};
use serde::Serialize;

use crate::WebState;
use crate::access::{Access, Caller, Route};
use crate::oee_api::{ApiError, Calculator, id_param, time_param};
use crate::page::{Message, Page};

/// How many jobs without an ideal cycle time the page names.
const JOBS_NAMED: i64 = 200;

pub(crate) fn routes() -> Vec<Route> {
    vec![Route::get("/explain", Access::Role(oee_core::access::Role::Viewer), page)]
}

/// The address of the breakdown of one machine's figures over one plant day.
pub(crate) fn day_link(machine: i32, date: NaiveDate) -> String {
    let d = date.format("%Y-%m-%d");
    format!("/explain?machine={machine}&from={d}&to={}", date.succ_opt().unwrap_or(date).format("%Y-%m-%d"))
}

/// The page's context.
#[derive(Debug, Serialize)]
struct Explained {
    /// What the figures are of: "machine M1" or "group Line 1 (M1, M2)".
    subject: String,
    from: String,
    to: String,
    timezone: String,
    /// The `/api/v1/oee` answer for the same window.
    api: String,
    planned_min: String,
    run_min: String,
    covered_run_min: String,
    ideal_min: String,
    good: String,
    rejects: String,
    total: String,
    availability: String,
    performance: String,
    quality: String,
    oee: String,
    availability_formula: String,
    performance_formula: String,
    quality_formula: String,
    oee_formula: String,
    losses: Vec<(String, String)>,
    flags: Vec<Flag>,
}

/// A data-quality flag that holds for the window, and what it means for the figures.
#[derive(Debug, Serialize)]
struct Flag {
    name: &'static str,
    text: String,
}

/// A share as a percentage with one decimal, or a dash when undefined.
fn percent(x: Option<f64>) -> String {
    x.map_or_else(|| "–".to_string(), |x| format!("{:.1} %", x * 100.0))
}

fn minutes(ms: f64) -> String {
    format!("{:.1} min", ms / 60_000.0)
}

fn count(x: f64) -> String {
    if x.fract() == 0.0 { format!("{x:.0}") } else { format!("{x:.2}") }
}

/// Why a breakdown cannot be shown, as a status and a sentence.
fn refusal(e: ApiError) -> (StatusCode, String) {
    match e {
        ApiError::BadRequest(t) => (StatusCode::BAD_REQUEST, t),
        ApiError::NotFound(t) => (StatusCode::NOT_FOUND, t),
        ApiError::Database(e) => {
            tracing::warn!("explain: {e}");
            (StatusCode::SERVICE_UNAVAILABLE, format!("the database is not available: {e}; try again in a moment"))
        }
    }
}

/// `GET /explain`.
async fn page(
    State(state): State<WebState>,
    Extension(caller): Extension<Caller>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    match build(&state, &q).await {
        Ok(body) => {
            let title = format!("Explain OEE - {}", body.subject);
            let page = Page::new(&state, Some(&caller), title, "status", body).await;
            state.pages.render("explain", &page)
        }
        Err(e) => {
            let (status, text) = refusal(e);
            let body = Message { heading: "Explain this number".into(), text };
            let page = Page::new(&state, Some(&caller), "Explain this number", "status", body).await;
            let mut r = state.pages.render("message", &page);
            *r.status_mut() = status;
            r
        }
    }
}

async fn build(state: &WebState, q: &HashMap<String, String>) -> Result<Explained, ApiError> {
    let tz = state.tz;
    let bad = |t: &str| ApiError::BadRequest(t.to_string());
    let (machines, subject) = match (id_param(q, "machine")?, id_param(q, "group")?) {
        (Some(m), None) => {
            if !report::machine_exists(&state.pool, m).await? {
                return Err(ApiError::NotFound(format!(
                    "machine {m} does not exist: open the breakdown from a figure on the status page"
                )));
            }
            (vec![m], String::new())
        }
        (None, Some(g)) => {
            let ms = report::group_machines(&state.pool, g).await?.ok_or_else(|| {
                ApiError::NotFound(format!("machine group {g} does not exist: check the group's number"))
            })?;
            (ms, format!("group {g}"))
        }
        (Some(_), Some(_)) => return Err(bad("give either `machine` or `group`, not both")),
        (None, None) => return Err(bad("give `machine=N` or `group=N`, as the links on the status page do")),
    };
    let now = Utc::now();
    let (today_start, today_end) = local_date_bounds(tz, now.with_timezone(&tz).date_naive());
    let from = time_param(q, "from", tz)?.unwrap_or(today_start);
    let to = time_param(q, "to", tz)?.unwrap_or(today_end);
    if to <= from {
        return Err(ApiError::BadRequest(format!("`to` ({to}) must be after `from` ({from})")));
    }
    let window = Window::new(from, to, now);
    let max = state.oee.max_buckets;
    if window.end - window.start > chrono::Duration::days(max as i64) {
        return Err(ApiError::BadRequest(format!("the window is longer than {max} days: shorten it")));
    }

    let intervals: Vec<_> = machines.iter().map(|m| (*m, window.start, window.end)).collect();
    let calc = Calculator::ready(state, &intervals, now).await?;
    let mut s = Sums::default();
    for m in &machines {
        s.add(&calc.sums(*m, window.start, window.end));
    }
    let statuses = machine_statuses(&state.pool, Some(&machines)).await?;
    let names: Vec<String> = statuses.iter().map(|s| s.machine_name.clone()).collect();
    let subject = if subject.is_empty() {
        format!("machine {}", names.join(", "))
    } else {
        format!("{subject} ({})", names.join(", "))
    };

    let f = s.figures();
    let l = s.losses();
    let (planned, run, covered, ideal) = (s.planned_ms as f64, s.run_ms as f64, s.covered_run_ms as f64, s.ideal_ms);
    let availability_formula = if s.planned_ms == 0 {
        "nothing was planned in this window, so availability is not defined".to_string()
    } else {
        format!("run time ÷ planned time = {} ÷ {} = {}", minutes(run), minutes(planned), percent(f.availability))
    };
    let performance_formula = if s.covered_run_ms == 0 {
        "there was no run time in a job with an ideal cycle time, so performance is not defined".to_string()
    } else {
        format!(
            "ideal time ÷ run time in jobs with an ideal cycle time = {} ÷ {} = {}",
            minutes(ideal),
            minutes(covered),
            percent(f.performance)
        )
    };
    let quality_formula = if s.total == 0.0 {
        "no parts were counted, so quality is not defined".to_string()
    } else {
        format!(
            "good ÷ (good + rejects) = {} ÷ ({} + {}) = {}",
            count(s.good),
            count(s.good),
            count(s.total - s.good),
            percent(f.quality)
        )
    };
    let oee_formula = if s.planned_ms == 0 {
        "nothing was planned, so OEE is not defined".to_string()
    } else if s.run_ms == 0 || s.total == 0.0 {
        "the machine never ran or made nothing in planned time: OEE = 0 % (a total loss)".to_string()
    } else {
        match f.oee {
            Some(_) => format!(
                "availability × performance × quality = {} × {} × {} = {}",
                percent(f.availability),
                percent(f.performance),
                percent(f.quality),
                percent(f.oee)
            ),
            None => "performance is not defined (no ideal cycle time), so OEE is not either".to_string(),
        }
    };
    let losses = vec![
        ("Fully productive time (ideal time of good parts)", l.fully_productive_ms),
        ("Breakdowns", l.breakdown_ms as f64),
        ("Setup and adjustments", l.setup_ms as f64),
        ("Planned stops", l.planned_stop_ms as f64),
        ("Minor stops", l.minor_stop_ms as f64),
        ("Reduced speed", l.reduced_speed_ms),
        ("Quality loss (ideal time of rejects)", l.quality_ms),
        ("Run time without an ideal cycle time", l.no_ideal_cycle_time_ms as f64),
    ]
    .into_iter()
    .map(|(n, ms)| (n.to_string(), minutes(ms)))
    .collect();

    let mut flags = Vec::new();
    if f.performance_over_100 {
        flags.push(Flag {
            name: "performance over 100 %",
            text: format!(
                "the parts counted would take {} at the ideal cycle time but the machine ran only {}: the ideal \
                 cycle time is too long, or parts were counted twice",
                minutes(ideal),
                minutes(covered)
            ),
        });
    }
    let outside = parts_outside_planned_time(state, &machines, window.start, window.end).await?;
    if outside > 0.0 || f.counts_while_down {
        flags.push(Flag {
            name: "production outside planned time",
            text: format!(
                "{} parts were counted while no planned time was recorded: check the activities and the shift \
                 pattern",
                count(outside.max(if f.counts_while_down { s.total } else { 0.0 }))
            ),
        });
    }
    let silence = state.config.ingest.no_signal_after_s;
    let silence = (silence > 0).then(|| std::time::Duration::from_secs(silence));
    for st in &statuses {
        if Signal::judge(st.last_signal_at, now, silence) == Signal::NoSignal {
            flags.push(Flag {
                name: "no signal",
                text: format!(
                    "nothing was heard from {} since {}: its current activity may be out of date",
                    st.machine_name,
                    st.last_signal_at.with_timezone(&tz).format("%Y-%m-%d %H:%M")
                ),
            });
        }
    }
    let mut without_ict = Vec::new();
    for m in &machines {
        for j in jobs_in_range(&state.pool, Some(*m), window.start, window.end, JOBS_NAMED).await? {
            if j.ideal_cycle_time_s.is_none_or(|x| !(x.is_finite() && x > 0.0)) {
                without_ict.push(format!("{} on {}", j.job_number, j.machine_name));
            }
        }
    }
    if !without_ict.is_empty() || l.no_ideal_cycle_time_ms > 0 {
        let jobs = if without_ict.is_empty() { "no job".to_string() } else { without_ict.join(", ") };
        flags.push(Flag {
            name: "missing ideal cycle time",
            text: format!(
                "jobs without an ideal cycle time: {jobs}; their {} of run time are left out of performance \
                 (coverage {}): give these jobs an ideal cycle time",
                minutes(l.no_ideal_cycle_time_ms as f64),
                percent(f.ict_coverage)
            ),
        });
    }

    let (key, id) = match q.get("machine") {
        Some(m) => ("machine", m.trim().to_string()),
        None => ("group", q.get("group").map(|g| g.trim().to_string()).unwrap_or_default()),
    };
    let api = format!(
        "/api/v1/oee?{}",
        serde_urlencoded::to_string([(key, id), ("from", window.start.to_rfc3339()), ("to", window.end.to_rfc3339())])
            .unwrap_or_default()
    );
    Ok(Explained {
        subject,
        from: window.start.with_timezone(&tz).format("%Y-%m-%d %H:%M").to_string(),
        to: window.end.with_timezone(&tz).format("%Y-%m-%d %H:%M").to_string(),
        timezone: tz.name().to_string(),
        api,
        planned_min: minutes(planned),
        run_min: minutes(run),
        covered_run_min: minutes(covered),
        ideal_min: minutes(ideal),
        good: count(s.good),
        rejects: count(s.total - s.good),
        total: count(s.total),
        availability: percent(f.availability),
        performance: percent(f.performance),
        quality: percent(f.quality),
        oee: percent(f.oee),
        availability_formula,
        performance_formula,
        quality_formula,
        oee_formula,
        losses,
        flags,
    })
}

/// Parts counted in [start, end) while the machine had no planned time (no activity, or a not-scheduled
/// one), each record's counts shared out evenly over its span as the engine shares them.
async fn parts_outside_planned_time(
    state: &WebState,
    machines: &[i32],
    start: DateTime<Utc>,
    end: DateTime<Utc>,
) -> Result<f64, ApiError> {
    let planned: HashMap<i32, bool> =
        list_codes(&state.pool).await?.into_iter().map(|c| (c.id, c.loss_category.is_planned())).collect();
    let now = Utc::now();
    let mut parts = 0.0;
    for m in machines {
        let spans: Vec<(DateTime<Utc>, DateTime<Utc>)> = activities_in_window(&state.pool, *m, start, end)
            .await?
            .into_iter()
            .filter(|a| planned.get(&a.code_id).copied().unwrap_or(true))
            .map(|a| (a.start_time, a.end_time.unwrap_or(now)))
            .collect();
        for p in production_in_window(&state.pool, *m, start, end).await? {
            let n = (p.quantity_good + p.quantity_rejects) as f64;
            parts += n * unplanned_share(start, end, p.start_time, p.end_time, &spans);
        }
    }
    Ok(parts)
}

/// The part of a record's span inside [start, end) that no planned span covers, as a share of the whole
/// record; an instant record counts wholly where it falls.
fn unplanned_share(
    start: DateTime<Utc>,
    end: DateTime<Utc>,
    p_start: DateTime<Utc>,
    p_end: DateTime<Utc>,
    planned: &[(DateTime<Utc>, DateTime<Utc>)],
) -> f64 {
    let full = (p_end - p_start).num_milliseconds();
    if full <= 0 {
        let inside = p_start >= start && p_start < end;
        let covered = planned.iter().any(|(s, e)| *s <= p_start && p_start < *e);
        return if inside && !covered { 1.0 } else { 0.0 };
    }
    let (s, e) = (p_start.max(start), p_end.min(end));
    let inside = (e - s).num_milliseconds().max(0);
    let covered: i64 = planned.iter().map(|(a, b)| ((*b).min(e) - (*a).max(s)).num_milliseconds().max(0)).sum();
    (inside - covered).max(0) as f64 / full as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(h: u32) -> DateTime<Utc> {
        use chrono::TimeZone;
        Utc.with_ymd_and_hms(2024, 1, 10, h, 0, 0).unwrap()
    }

    #[test]
    fn parts_outside_planned_spans_are_shared_by_time() {
        let planned = [(at(8), at(10))];
        assert_eq!(unplanned_share(at(0), at(23), at(8), at(12), &planned), 0.5);
        assert_eq!(unplanned_share(at(0), at(23), at(8), at(10), &planned), 0.0);
        assert_eq!(unplanned_share(at(0), at(23), at(11), at(11), &planned), 1.0);
        assert_eq!(unplanned_share(at(0), at(23), at(9), at(9), &planned), 0.0);
        // Only the part inside the window counts.
        assert_eq!(unplanned_share(at(0), at(11), at(10), at(12), &planned), 0.5);
    }

    #[test]
    fn a_day_link_covers_the_plant_day() {
        let d = NaiveDate::from_ymd_opt(2024, 1, 10).unwrap();
        assert_eq!(day_link(3, d), "/explain?machine=3&from=2024-01-10&to=2024-01-11");
    }
}
