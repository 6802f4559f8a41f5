//! `GET /graphs?graph=timeline|oee|pareto|losses&machine=N|group=N&from=&to=[&by=day|shift]`: the graphs of
//! reference §7.3, drawn on the server as SVG ([`crate::chart`]) so that a page is a few tens of kilobytes
//! and works without script: the state timeline of a machine or of every machine of a group or the plant,
//! the OEE trend by day or shift with availability, performance and quality, downtime by reason as a Pareto
//! (minutes and count), and the six big losses as a waterfall from planned to fully productive time.
//!
//! The figures come from the OEE engine through [`Calculator`], as `/api/v1/oee` has them; the timeline
//! from the activities themselves. The selector form asks as the reference's did (`key` = `all`, `g_<id>`
//! or `m_<id>`); links to narrow, widen or move the window carry `machine=` or `group=` and exact times.

use std::collections::{BTreeMap, HashMap};

use axum::Extension;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use chrono::{DateTime, Duration, SecondsFormat, Utc};
use oee_core::oee::{Sums, Window};
use oee_core::shift::local_date_bounds;
use oee_core::store::{code, group, machine, report};
use oee_core::verdict::echo;
use serde::Serialize;

use crate::WebState;
use crate::access::{Access, Caller, Route};
use crate::chart::{self, Reason, Row, Step, Stretch, TrendPoint};
use crate::oee_api::{ApiError, Calculator, id_param, shared_buckets, shift_buckets, time_param};
use crate::page::{Choice, Page};

/// The graphs' route.
/// Most machines × days one timeline draws (a month of 100 machines).
const TIMELINE_MAX_MACHINE_DAYS: usize = 3_100;

pub(crate) fn routes() -> Vec<Route> {
    vec![Route::get("/graphs", Access::Role(oee_core::access::Role::Viewer), page)]
}

/// Which graph.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Graph {
    Timeline,
    Oee,
    Pareto,
    Losses,
}

impl Graph {
    const ALL: [Graph; 4] = [Graph::Timeline, Graph::Oee, Graph::Pareto, Graph::Losses];

    fn parse(v: Option<&String>) -> Result<Graph, ApiError> {
        match v.map(|s| s.trim()).unwrap_or_default() {
            "" | "timeline" => Ok(Graph::Timeline),
            "oee" => Ok(Graph::Oee),
            "pareto" => Ok(Graph::Pareto),
            "losses" => Ok(Graph::Losses),
            other => Err(crate::oee_api::bad(format!(
                "`graph` must be timeline, oee, pareto or losses, not `{}`",
                echo(other)
            ))),
        }
    }

    fn name(self) -> &'static str {
        match self {
            Graph::Timeline => "timeline",
            Graph::Oee => "oee",
            Graph::Pareto => "pareto",
            Graph::Losses => "losses",
        }
    }

    fn label(self) -> &'static str {
        match self {
            Graph::Timeline => "Machine state timeline",
            Graph::Oee => "OEE trend",
            Graph::Pareto => "Downtime by reason",
            Graph::Losses => "Six big losses",
        }
    }
}

/// Whose graph: a machine, a group, or every machine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Subject {
    All,
    Group(i32),
    Machine(i32),
}

impl Subject {
    fn parse(q: &HashMap<String, String>) -> Result<Subject, ApiError> {
        let bad = crate::oee_api::bad;
        match (id_param(q, "machine")?, id_param(q, "group")?) {
            (Some(m), None) => return Ok(Subject::Machine(m)),
            (None, Some(g)) => return Ok(Subject::Group(g)),
            (Some(_), Some(_)) => return Err(bad("give either `machine` or `group`, not both")),
            (None, None) => {}
        }
        let key = q.get("key").map(|k| k.trim()).unwrap_or("all");
        let id = |rest: &str| rest.parse::<i32>().ok();
        match key {
            "" | "all" => Ok(Subject::All),
            k if k.starts_with("g_") && id(&k[2..]).is_some() => Ok(Subject::Group(id(&k[2..]).unwrap_or(0))),
            k if k.starts_with("m_") && id(&k[2..]).is_some() => Ok(Subject::Machine(id(&k[2..]).unwrap_or(0))),
            _ => Err(bad("Pick a machine or group")),
        }
    }

    fn key(self) -> String {
        match self {
            Subject::All => "all".into(),
            Subject::Group(g) => format!("g_{g}"),
            Subject::Machine(m) => format!("m_{m}"),
        }
    }

    fn query(self) -> String {
        match self {
            Subject::All => String::new(),
            Subject::Group(g) => format!("&group={g}"),
            Subject::Machine(m) => format!("&machine={m}"),
        }
    }
}

/// The page's context.
#[derive(Debug, Serialize, Default)]
struct GraphsBody {
    heading: String,
    graph: String,
    graphs: Vec<Choice>,
    groups: Vec<Choice>,
    machines: Vec<Choice>,
    all_selected: bool,
    from: String,
    to: String,
    by_shift: bool,
    /// What the window is, as people read it.
    span: String,
    timezone: String,
    svg: Option<String>,
    zoom: Vec<Choice>,
    note: Option<String>,
    error: Option<String>,
}

fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// `GET /graphs`.
async fn page(
    State(state): State<WebState>,
    Extension(caller): Extension<Caller>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let mut body = GraphsBody { timezone: state.tz.to_string(), ..GraphsBody::default() };
    let status = match build(&state, &q, &mut body).await {
        Ok(()) => StatusCode::OK,
        Err(e) => {
            let status = match &e {
                ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
                ApiError::NotFound(_) => StatusCode::NOT_FOUND,
                ApiError::Database(_) => StatusCode::SERVICE_UNAVAILABLE,
            };
            if let ApiError::Database(d) = &e {
                tracing::warn!("graphs: {d}");
            }
            body.svg = None;
            body.zoom.clear();
            body.error = Some(match e {
                ApiError::Database(_) => format!("{e}: try again in a moment"),
                other => other.to_string(),
            });
            status
        }
    };
    let title = if body.heading.is_empty() { "Graphs".to_string() } else { body.heading.clone() };
    let page = Page::new(&state, Some(&caller), title, "graphs", body).await;
    let mut r = state.pages.render("graphs", &page);
    if r.status() == StatusCode::OK {
        *r.status_mut() = status;
    }
    r
}

/// Fills the form from the query, then draws the graph asked for (or says why it cannot).
async fn build(state: &WebState, q: &HashMap<String, String>, body: &mut GraphsBody) -> Result<(), ApiError> {
    let tz = state.tz;
    let bad = crate::oee_api::bad;
    let statuses = machine::machine_statuses(&state.pool, None).await?;
    let groups = group::list_groups(&state.pool).await?;
    body.from = q.get("from").cloned().unwrap_or_default();
    body.to = q.get("to").cloned().unwrap_or_default();
    body.by_shift = q.get("by").is_some_and(|b| b.trim() == "shift");
    let graph = Graph::parse(q.get("graph"));
    let subject = Subject::parse(q);
    let chosen = subject.as_ref().map(|s| s.key()).unwrap_or_default();
    body.graphs = Graph::ALL
        .iter()
        .map(|g| Choice {
            value: g.name().into(),
            label: g.label().into(),
            selected: graph.as_ref().is_ok_and(|x| x == g),
        })
        .collect();
    body.all_selected = chosen == "all";
    body.groups = groups
        .iter()
        .map(|g| Choice {
            value: format!("g_{}", g.id),
            label: g.name.clone(),
            selected: chosen == format!("g_{}", g.id),
        })
        .collect();
    body.machines = statuses
        .iter()
        .map(|m| Choice {
            value: format!("m_{}", m.machine_id),
            label: m.machine_name.clone(),
            selected: chosen == format!("m_{}", m.machine_id),
        })
        .collect();
    let graph = graph?;
    let subject = subject?;
    body.graph = graph.name().into();
    let names: BTreeMap<i32, String> = statuses.iter().map(|m| (m.machine_id, m.machine_name.clone())).collect();
    let (machines, who) = match subject {
        Subject::All => (names.keys().copied().collect::<Vec<i32>>(), "all machines".to_string()),
        Subject::Machine(m) => match names.get(&m) {
            Some(n) => (vec![m], n.clone()),
            None => return Err(ApiError::NotFound(format!("machine {m} does not exist: pick one from the list"))),
        },
        Subject::Group(g) => {
            let ids = report::group_machines(&state.pool, g).await?.ok_or_else(|| {
                ApiError::NotFound(format!("machine group {g} does not exist: pick one from the list"))
            })?;
            let name = groups.iter().find(|x| x.id == g).map_or_else(|| format!("group {g}"), |x| x.name.clone());
            (ids, name)
        }
    };

    let now = Utc::now();
    let today = now.with_timezone(&tz).date_naive();
    let (today_start, today_end) = local_date_bounds(tz, today);
    let default_from = match graph {
        Graph::Timeline => today_start,
        _ => local_date_bounds(tz, today - Duration::days(6)).0,
    };
    let from = time_param(q, "from", tz)?.unwrap_or(default_from);
    let to = time_param(q, "to", tz)?.unwrap_or(today_end);
    if to <= from {
        return Err(bad(format!("`to` ({}) must be after `from` ({})", rfc3339(to), rfc3339(from))));
    }
    let max = state.oee.max_buckets;
    if to - from > Duration::days(max as i64) {
        return Err(bad(format!("the window is longer than {max} days: shorten it")));
    }
    body.heading = format!("{} – {who}", graph.label());
    let local = |t: DateTime<Utc>| t.with_timezone(&tz).format("%a %d %b %Y %H:%M").to_string();
    body.span = format!("{} to {}", local(from), local(to));

    // Links that move, narrow or widen the window, keeping everything else.
    let len = to - from;
    let link = |f: DateTime<Utc>, t: DateTime<Utc>| {
        format!(
            "/graphs?graph={}{}&from={}&to={}{}",
            graph.name(),
            subject.query(),
            rfc3339(f),
            rfc3339(t),
            if body.by_shift { "&by=shift" } else { "" }
        )
    };
    let quarter = len / 4;
    let zoom = [
        ("« Earlier", link(from - len, to - len)),
        ("Zoom in", link(from + quarter, to - quarter)),
        ("Zoom out", link(from - len / 2, to + len / 2)),
        ("Later »", link(from + len, to + len)),
    ];
    body.zoom = zoom.into_iter().map(|(l, v)| Choice { value: v, label: l.into(), selected: false }).collect();

    if machines.is_empty() {
        body.note = Some(format!("{who} has no machines: add some under Admin, or pick another group"));
        return Ok(());
    }
    let codes = code::list_codes(&state.pool).await?;
    let code_of: HashMap<i32, &code::ActivityCode> = codes.iter().map(|c| (c.id, c)).collect();
    let window = Window::new(from, to, now);
    if graph == Graph::Timeline {
        // Each activity of the window is read and drawn: a year of a whole plant would take minutes and
        // gigabytes to draw bars too thin to see.
        let days = ((to - from).num_seconds() as f64 / 86_400.0).ceil().max(1.0) as usize;
        if machines.len() * days > TIMELINE_MAX_MACHINE_DAYS {
            return Err(bad(format!(
                "a timeline shows at most {TIMELINE_MAX_MACHINE_DAYS} machine-days (machines × days), and this one \
                 would show {} machines × {days} days: pick one machine or a group, or shorten the window",
                machines.len()
            )));
        }
    }
    body.svg = Some(match graph {
        Graph::Timeline => {
            let acts = report::graph_activities(&state.pool, &machines, from, to).await?;
            timeline(state, &machines, &names, &code_of, &acts, from, to, now)
        }
        Graph::Oee => trend(state, &machines, window, body.by_shift, max, now).await?,
        Graph::Pareto => {
            let sums = whole(state, &machines, window, now).await?;
            let counts = report::activity_counts(&state.pool, &machines, from, window.end).await?;
            let mut reasons: Vec<Reason> = sums
                .by_code_ms
                .iter()
                .filter_map(|(id, ms)| {
                    let c = code_of.get(id)?;
                    (matches!(c.machine_state, 2 | 3) && *ms > 0).then(|| Reason {
                        name: c.short_description.clone(),
                        colour: chart::fill(&c.graph_colour),
                        minutes: *ms as f64 / 60_000.0,
                        count: counts.get(id).copied().unwrap_or(0) as usize,
                    })
                })
                .collect();
            reasons.sort_by(|a, b| b.minutes.total_cmp(&a.minutes).then_with(|| a.name.cmp(&b.name)));
            if reasons.is_empty() {
                body.note = Some("no downtime in this window".into());
            }
            chart::pareto(&reasons)
        }
        Graph::Losses => {
            let sums = whole(state, &machines, window, now).await?;
            chart::waterfall(&waterfall_steps(&sums))
        }
    });
    Ok(())
}

/// The sums of `machines` over the whole window.
async fn whole(state: &WebState, machines: &[i32], window: Window, now: DateTime<Utc>) -> Result<Sums, ApiError> {
    let intervals: Vec<_> = machines.iter().map(|m| (*m, window.start, window.end)).collect();
    let calc = Calculator::ready(state, &intervals, now).await?;
    let mut total = Sums::default();
    machines.iter().for_each(|m| total.add(&calc.sums(*m, window.start, window.end)));
    Ok(total)
}

/// The waterfall's steps, in hours, from the six big losses of `sums` (as `/api/v1/oee` reports them):
/// planned time, each loss, and fully productive time, with what the losses do not explain as "Other".
fn waterfall_steps(sums: &Sums) -> Vec<Step> {
    let l = sums.losses();
    let h = |ms: f64| ms / 3_600_000.0;
    let losses = [
        ("Breakdowns", l.breakdown_ms as f64),
        ("Setup", l.setup_ms as f64),
        ("Planned stops", l.planned_stop_ms as f64),
        ("Minor stops", l.minor_stop_ms as f64),
        ("Reduced speed", l.reduced_speed_ms),
        ("No ideal cycle time", l.no_ideal_cycle_time_ms as f64),
        ("Quality", l.quality_ms),
    ];
    let mut steps = vec![Step { name: "Planned time".into(), hours: h(sums.planned_ms as f64), total: true }];
    let explained: f64 = losses.iter().map(|(_, ms)| ms).sum::<f64>() + l.fully_productive_ms;
    steps.extend(losses.iter().map(|(n, ms)| Step { name: (*n).into(), hours: h(*ms), total: false }));
    let other = sums.planned_ms as f64 - explained;
    if other.abs() >= 1000.0 {
        steps.push(Step { name: "Other".into(), hours: h(other), total: false });
    }
    steps.push(Step { name: "Fully productive".into(), hours: h(l.fully_productive_ms), total: true });
    steps
}

/// The trend: one point per plant day, or per shift (the shifts of every machine that start and end
/// together are one point).
async fn trend(
    state: &WebState,
    machines: &[i32],
    window: Window,
    by_shift: bool,
    max: usize,
    now: DateTime<Utc>,
) -> Result<String, ApiError> {
    let tz = state.tz;
    let too_many = || {
        crate::oee_api::bad(format!("more than {max} points: shorten the window or show it by day instead of shift"))
    };
    // (start, end) → the machines that have it.
    let mut buckets: BTreeMap<(DateTime<Utc>, DateTime<Utc>), Vec<i32>> = BTreeMap::new();
    if by_shift {
        let patterns = report::shift_histories(&state.pool, machines, window.start, window.end).await?;
        for m in machines {
            for b in patterns.get(m).map(|v| shift_buckets(*m, v, tz, window)).unwrap_or_default() {
                buckets.entry((b.start, b.end)).or_default().push(*m);
            }
            if buckets.len() > max {
                return Err(too_many());
            }
        }
    } else {
        let days = shared_buckets(window, max, |t| local_date_bounds(tz, t.with_timezone(&tz).date_naive()).1)
            .ok_or_else(too_many)?;
        for b in days {
            buckets.insert((b.start, b.end), machines.to_vec());
        }
    }
    let intervals: Vec<_> = buckets.iter().flat_map(|((s, e), ms)| ms.iter().map(move |m| (*m, *s, *e))).collect();
    let calc = Calculator::ready(state, &intervals, now).await?;
    let points: Vec<TrendPoint> = buckets
        .iter()
        .map(|((s, e), ms)| {
            let mut sums = Sums::default();
            ms.iter().for_each(|m| sums.add(&calc.sums(*m, *s, *e)));
            let f = sums.figures();
            let (ls, le) = (s.with_timezone(&tz), e.with_timezone(&tz));
            let (label, title) = if by_shift {
                (
                    ls.format("%d/%m %H:%M").to_string(),
                    format!("{} to {}", ls.format("%a %d/%m %H:%M"), le.format("%H:%M")),
                )
            } else {
                (ls.format("%a %d/%m").to_string(), ls.format("%a %d %b %Y").to_string())
            };
            TrendPoint {
                label,
                title,
                availability: f.availability,
                performance: f.performance,
                quality: f.quality,
                oee: f.oee,
            }
        })
        .collect();
    Ok(chart::trend(&points))
}

/// Tick marks for [from, to): local hours or days, about a dozen of them.
fn ticks(tz: chrono_tz::Tz, from: DateTime<Utc>, to: DateTime<Utc>) -> Vec<(f64, String)> {
    let len = (to - from).num_seconds().max(1) as f64;
    let hours = len / 3600.0;
    let frac = |t: DateTime<Utc>| (t - from).num_seconds() as f64 / len;
    let mut out = Vec::new();
    if hours <= 96.0 {
        let every = [1, 2, 3, 6, 12, 24].into_iter().find(|e| hours / *e as f64 <= 12.0).unwrap_or(24);
        let mut t = crate::oee_api::next_local_hour(tz, from - Duration::seconds(1));
        while t < to {
            let local = t.with_timezone(&tz);
            if chrono::Timelike::hour(&local).is_multiple_of(every) {
                let label = if every >= 24 { local.format("%a %d/%m") } else { local.format("%H:%M") };
                out.push((frac(t), label.to_string()));
            }
            t = crate::oee_api::next_local_hour(tz, t);
        }
    } else {
        let every = ((hours / 24.0 / 12.0).ceil() as usize).max(1);
        let mut day = from.with_timezone(&tz).date_naive();
        let mut i = 0;
        loop {
            let start = local_date_bounds(tz, day).0;
            if start >= to {
                break;
            }
            if start >= from {
                if i % every == 0 {
                    out.push((frac(start), day.format("%d/%m").to_string()));
                }
                i += 1;
            }
            day += Duration::days(1);
        }
    }
    out
}

/// The timeline: a row per machine, each activity cropped to the window and titled with its code, times,
/// job and operator.
#[allow(clippy::too_many_arguments)]
pub(crate) fn timeline(
    state: &WebState,
    machines: &[i32],
    names: &BTreeMap<i32, String>,
    code_of: &HashMap<i32, &code::ActivityCode>,
    acts: &[report::GraphActivity],
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    now: DateTime<Utc>,
) -> String {
    let tz = state.tz;
    let len = (to - from).num_milliseconds().max(1) as f64;
    let frac = |t: DateTime<Utc>| (t.clamp(from, to) - from).num_milliseconds() as f64 / len;
    let multi_day = to - from > Duration::days(1);
    let when = |t: DateTime<Utc>| {
        let l = t.with_timezone(&tz);
        if multi_day { l.format("%a %d/%m %H:%M").to_string() } else { l.format("%H:%M").to_string() }
    };
    let mut by_machine: HashMap<i32, Vec<Stretch>> = HashMap::new();
    for a in acts {
        let end = a.end_time.unwrap_or(now).min(to);
        if end <= a.start_time.max(from) {
            continue;
        }
        let (name, colour) = code_of.get(&a.code_id).map_or_else(
            || (format!("code {}", a.code_id), "#999999".to_string()),
            |c| (c.short_description.clone(), chart::fill(&c.graph_colour)),
        );
        let title = format!(
            "{name}: {} to {}, job {}, {}",
            when(a.start_time),
            a.end_time.map_or_else(|| "now".to_string(), when),
            a.job_number.as_deref().unwrap_or("none"),
            a.user_name.as_deref().unwrap_or("no operator")
        );
        by_machine.entry(a.machine_id).or_default().push(Stretch {
            from: frac(a.start_time),
            to: frac(end),
            key: a.code_id,
            colour,
            name,
            title,
        });
    }
    let rows: Vec<Row> = machines
        .iter()
        .map(|m| Row {
            label: names.get(m).cloned().unwrap_or_else(|| format!("machine {m}")),
            stretches: by_machine.remove(m).unwrap_or_default(),
        })
        .collect();
    let at = |f: f64| when(from + Duration::milliseconds((f * len) as i64));
    chart::timeline(&rows, &ticks(tz, from, to), at)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_waterfall_runs_from_planned_to_fully_productive_time() {
        let sums = Sums {
            planned_ms: 4 * 3_600_000,
            run_ms: 3 * 3_600_000,
            covered_run_ms: 3 * 3_600_000,
            breakdown_ms: 3_600_000,
            ideal_ms: 2.0 * 3_600_000.0,
            ideal_good_ms: 1.5 * 3_600_000.0,
            ..Sums::default()
        };
        let steps = waterfall_steps(&sums);
        let names: Vec<&str> = steps.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names.first(), Some(&"Planned time"));
        assert_eq!(names.last(), Some(&"Fully productive"));
        assert!(!names.contains(&"Other"), "the losses explain everything: {names:?}");
        let lost: f64 = steps.iter().filter(|s| !s.total).map(|s| s.hours).sum();
        assert!((4.0 - lost - 1.5).abs() < 1e-9);
    }

    #[tokio::test]
    async fn the_page_renders_in_strict_mode_with_a_graph_or_a_refusal() {
        let body = GraphsBody {
            heading: "OEE trend – Hall".into(),
            svg: Some(chart::pareto(&[])),
            zoom: vec![Choice { value: "/graphs?from=a&to=b".into(), label: "Zoom in".into(), selected: false }],
            groups: vec![Choice { value: "g_1".into(), label: "Hall <1>".into(), selected: true }],
            ..GraphsBody::default()
        };
        let html = crate::page::render_for_test("graphs", body).await;
        assert!(html.contains("<svg class=\"chart pareto-chart\""), "the SVG is not escaped");
        assert!(html.contains("Hall &lt;1&gt;"), "names are");
        let refused = GraphsBody { error: Some("Pick a machine or group".into()), ..GraphsBody::default() };
        let html = crate::page::render_for_test("graphs", refused).await;
        assert!(html.contains("Pick a machine or group") && !html.contains("<svg"));
    }

    #[test]
    fn subjects_come_from_links_or_the_form() {
        let q = |pairs: &[(&str, &str)]| pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        assert_eq!(Subject::parse(&q(&[("machine", "3")])).unwrap(), Subject::Machine(3));
        assert_eq!(Subject::parse(&q(&[("key", "g_2")])).unwrap(), Subject::Group(2));
        assert_eq!(Subject::parse(&q(&[])).unwrap(), Subject::All);
        assert!(Subject::parse(&q(&[("key", "--Groups--")])).is_err());
    }
}
