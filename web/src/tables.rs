//! Tables (`/tables`, reference §7.4) and their exports: the OEE report of a day with the reference's
//! columns, daily OEE and daily production by machine, jobs in a range, and activity durations by machine
//! or by user. Each table is a header ([`Spec`]) and rows produced one at a time into a bounded channel,
//! so the page, the CSV and the XLSX export and the v1 API (`GET /api/v1/tables/{table}`) all read the same
//! rows; the exports write each row as it arrives (see [`crate::export`]).
//!
//! Pages sort and page on the server (query parameters `sort`, `dir`, `page`), so they work without
//! JavaScript.

use std::cmp::Ordering;
use std::collections::{BTreeMap, HashMap};

use axum::Extension;
use axum::Json;
use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Duration, NaiveDate, NaiveDateTime, Utc};
use oee_core::oee::reference::{self, RefWindow};
use oee_core::shift::local_date_bounds;
use oee_core::store::report::{self, DurationsBy};
use oee_core::store::{code, job, machine};
use serde::Serialize;
use serde_json::{Value, json};
use tokio::sync::mpsc;

use crate::WebState;
use crate::access::Caller;
use crate::export::Format;
use crate::oee_api::{ApiError, bad, plain_date};
use crate::page::Page;

/// Most days a table's range may cover: a year and a bit.
const MAX_DAYS: i64 = 400;
/// Rows on one page of a table.
const PAGE_ROWS: usize = 50;
/// Rows a page (not an export) reads before it asks for a narrower range.
const PAGE_READ_LIMIT: usize = 100_000;
/// Jobs read from the database at a time.
const JOB_BATCH: i64 = 1000;

/// The tables there are.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Which {
    /// The reference's OEE report of one day.
    Oee,
    /// OEE by machine and day.
    DailyOee,
    /// Parts made by machine and day, records pro-rated over the days they cover.
    Production,
    /// Jobs in a range.
    Jobs,
    /// Minutes per activity code, by machine or by user.
    Activity,
}

impl Which {
    const ALL: [Which; 5] = [Which::Oee, Which::DailyOee, Which::Production, Which::Jobs, Which::Activity];

    fn parse(s: &str) -> Result<Which, ApiError> {
        Which::ALL.into_iter().find(|w| w.name() == s.trim()).ok_or_else(|| {
            bad(format!("there is no table `{s}`: ask for oee, daily_oee, production, jobs or activity"))
        })
    }

    fn name(self) -> &'static str {
        match self {
            Which::Oee => "oee",
            Which::DailyOee => "daily_oee",
            Which::Production => "production",
            Which::Jobs => "jobs",
            Which::Activity => "activity",
        }
    }

    fn label(self) -> &'static str {
        match self {
            Which::Oee => "OEE report",
            Which::DailyOee => "Daily OEE",
            Which::Production => "Daily production",
            Which::Jobs => "Jobs",
            Which::Activity => "Activity durations",
        }
    }
}

/// How a column's values are typed in a workbook.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Text,
    Integer,
    Decimal,
    /// A fraction shown as a percentage.
    Percent,
    /// A plant-local date and time.
    Time,
}

/// A column: its heading, its type, and the day it stands for in the tables by day.
#[derive(Debug, Clone)]
pub(crate) struct Column {
    pub name: String,
    pub kind: Kind,
    pub day: Option<NaiveDate>,
}

impl Column {
    fn new(name: impl Into<String>, kind: Kind) -> Column {
        Column { name: name.into(), kind, day: None }
    }
}

/// One value of a row.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Cell {
    Text(String),
    Int(i64),
    Num(f64),
    /// A fraction (0.75 is 75 %).
    Pct(f64),
    /// Plant-local.
    Time(NaiveDateTime),
    Empty,
}

impl Cell {
    /// As a page and a CSV file show it: percentages with one decimal as the reference shows them,
    /// decimals whole when whole.
    pub(crate) fn text(&self) -> String {
        match self {
            Cell::Text(s) => s.clone(),
            Cell::Int(n) => n.to_string(),
            Cell::Num(x) if x.fract() == 0.0 && x.abs() < 1e15 => format!("{x:.0}"),
            Cell::Num(x) => format!("{x:.1}"),
            Cell::Pct(x) => format!("{:.1}", x * 100.0),
            Cell::Time(t) => t.format("%Y-%m-%d %H:%M").to_string(),
            Cell::Empty => String::new(),
        }
    }

    fn json(&self) -> Value {
        match self {
            Cell::Text(s) => json!(s),
            Cell::Int(n) => json!(n),
            Cell::Num(x) | Cell::Pct(x) => json!(x),
            Cell::Time(t) => json!(t.format("%Y-%m-%dT%H:%M:%S").to_string()),
            Cell::Empty => Value::Null,
        }
    }

    fn order(&self, other: &Cell) -> Ordering {
        let num = |c: &Cell| match c {
            Cell::Int(n) => Some(*n as f64),
            Cell::Num(x) | Cell::Pct(x) => Some(*x),
            _ => None,
        };
        match (self, other) {
            (Cell::Empty, Cell::Empty) => Ordering::Equal,
            (Cell::Empty, _) => Ordering::Less,
            (_, Cell::Empty) => Ordering::Greater,
            (Cell::Time(a), Cell::Time(b)) => a.cmp(b),
            _ => match (num(self), num(other)) {
                (Some(a), Some(b)) => a.total_cmp(&b),
                _ => self.text().cmp(&other.text()),
            },
        }
    }
}

/// A table's header: what it is, its columns, and the file name of its exports.
#[derive(Debug, Clone)]
pub(crate) struct Spec {
    pub which: Which,
    pub heading: String,
    pub file_stem: String,
    pub columns: Vec<Column>,
    /// Rows are machines and columns after the first are days of OEE: the workbook draws them as a line chart.
    pub chart: bool,
}

/// What a table is asked for.
#[derive(Debug, Clone)]
struct Ask {
    which: Which,
    date: NaiveDate,
    from: NaiveDate,
    to: NaiveDate,
    by: DurationsBy,
}

fn date_param(q: &HashMap<String, String>, name: &str) -> Result<Option<NaiveDate>, ApiError> {
    match q.get(name).map(|v| v.trim()).filter(|v| !v.is_empty()) {
        None => Ok(None),
        Some(v) => {
            plain_date(v).map(Some).ok_or_else(|| bad(format!("`{name}` must be a date like 2026-01-05, not `{v}`")))
        }
    }
}

impl Ask {
    /// Reads the query; ranges default to the last week (the days before today for the tables by day, as
    /// the reference clamps them).
    fn parse(which: Which, q: &HashMap<String, String>, today: NaiveDate) -> Result<Ask, ApiError> {
        let yesterday = today - Duration::days(1);
        let date = date_param(q, "date")?.unwrap_or(today);
        let by_day = matches!(which, Which::DailyOee | Which::Production);
        let mut from = date_param(q, "from")?.unwrap_or(today - Duration::days(7));
        let mut to = date_param(q, "to")?.unwrap_or(if by_day { yesterday } else { today });
        if by_day && to > yesterday {
            to = yesterday;
        }
        if which == Which::Oee {
            from = date;
            to = date;
            if date > today {
                return Err(bad(format!("{date} is in the future: ask for today or an earlier day")));
            }
        }
        if to < from {
            return Err(bad(if by_day {
                format!("no whole day from {from} to {to}: the tables by day end yesterday; pick earlier days")
            } else {
                format!("`to` ({to}) is before `from` ({from}): swap them")
            }));
        }
        if (to - from).num_days() >= MAX_DAYS {
            return Err(bad(format!("the range is longer than {MAX_DAYS} days: shorten it")));
        }
        let by = match q.get("by").map(|s| s.trim()) {
            None | Some("") | Some("machine") | Some("machines") => DurationsBy::Machine,
            Some("user") | Some("users") => DurationsBy::User,
            Some(other) => return Err(bad(format!("`by` must be machine or user, not `{other}`"))),
        };
        Ok(Ask { which, date, from, to, by })
    }

    fn days(&self) -> impl Iterator<Item = NaiveDate> + use<> {
        let to = self.to;
        self.from.iter_days().take_while(move |d| *d <= to)
    }

    /// The query that asks for this table again (without paging, sorting or format).
    fn query(&self) -> Vec<(&'static str, String)> {
        let mut q = vec![("table", self.which.name().to_string())];
        match self.which {
            Which::Oee => q.push(("date", self.date.to_string())),
            _ => {
                q.push(("from", self.from.to_string()));
                q.push(("to", self.to.to_string()));
            }
        }
        if self.which == Which::Activity && self.by == DurationsBy::User {
            q.push(("by", "user".into()));
        }
        q
    }
}

/// The header of the table asked for.
async fn spec(state: &WebState, ask: &Ask) -> Result<Spec, ApiError> {
    let day_columns = |first: &str| {
        let mut c = vec![Column::new(first, Kind::Text)];
        for d in ask.days() {
            let kind = if ask.which == Which::DailyOee { Kind::Percent } else { Kind::Decimal };
            c.push(Column { name: d.format("%Y-%m-%d").to_string(), kind, day: Some(d) });
        }
        c
    };
    let range = format!("{}_{}", ask.from, ask.to);
    let (heading, file_stem, columns) = match ask.which {
        Which::Oee => (
            "OEE Report".to_string(),
            format!("oee_report_{}", ask.date),
            [
                ("Machine", Kind::Text),
                ("Total Duration (min)", Kind::Integer),
                ("Scheduled Downtime (min)", Kind::Integer),
                ("Unscheduled Downtime (min)", Kind::Integer),
                ("Uptime Duration (min)", Kind::Integer),
                ("Expected Qty", Kind::Integer),
                ("Actual Qty", Kind::Integer),
                ("Rejects Qty", Kind::Integer),
                ("Availability (%)", Kind::Percent),
                ("Performance (%)", Kind::Percent),
                ("Quality (%)", Kind::Percent),
                ("OEE (%)", Kind::Percent),
            ]
            .into_iter()
            .map(|(n, k)| Column::new(n, k))
            .collect(),
        ),
        Which::DailyOee => ("OEE".to_string(), format!("daily_oee_{range}"), day_columns("Machine")),
        Which::Production => {
            ("Quantity Produced".to_string(), format!("daily_production_{range}"), day_columns("Machine"))
        }
        Which::Jobs => (
            format!("Jobs {} to {}", ask.from.format("%d-%b-%y"), ask.to.format("%d-%b-%y")),
            format!("jobs_{range}"),
            [
                ("Job ID", Kind::Integer),
                ("Job Number", Kind::Text),
                ("Machine", Kind::Text),
                ("Start", Kind::Time),
                ("End", Kind::Time),
                ("Ideal Cycle Time (s)", Kind::Decimal),
                ("Good Qty", Kind::Integer),
                ("Rejects Qty", Kind::Integer),
            ]
            .into_iter()
            .map(|(n, k)| Column::new(n, k))
            .collect(),
        ),
        Which::Activity => {
            let (first, who) = match ask.by {
                DurationsBy::Machine => ("Machine Activity Durations (minutes)", "machine"),
                DurationsBy::User => ("User Activity Durations (minutes)", "user"),
            };
            let mut columns = vec![Column::new(first, Kind::Text)];
            for c in code::list_codes(&state.pool).await? {
                columns.push(Column::new(c.short_description, Kind::Integer));
            }
            (
                format!("Activity Durations {} to {}", ask.from.format("%d-%b-%y"), ask.to.format("%d-%b-%y")),
                format!("activity_durations_by_{who}_{range}"),
                columns,
            )
        }
    };
    Ok(Spec { which: ask.which, heading, file_stem, columns, chart: ask.which == Which::DailyOee })
}

/// Rows go to the reader through this; `Err` ends the rows with a refusal.
pub(crate) type RowSender = mpsc::Sender<Result<Vec<Cell>, String>>;
pub(crate) type RowReceiver = mpsc::Receiver<Result<Vec<Cell>, String>>;

/// Python's `round` (half to even), as the reference rounds its report's numbers.
fn round_even(x: f64) -> f64 {
    let r = x.round();
    if (x - x.trunc()).abs() == 0.5 { 2.0 * (x / 2.0).round() } else { r }
}

/// Produces the rows of `ask` into `tx`, stopping early when the reader goes away. Memory holds one
/// machine's history (or one batch of jobs) at a time, whatever the range.
async fn produce(state: WebState, spec: Spec, ask: Ask, tx: RowSender) -> Result<(), ApiError> {
    let now = Utc::now();
    let tz = state.tz;
    let local = |t: DateTime<Utc>| t.with_timezone(&tz).naive_local();
    match ask.which {
        Which::Oee => {
            let (start, next) = local_date_bounds(tz, ask.date);
            // The reference's day ends at 23:59:59.999999; today's ends now.
            let w = RefWindow { start, end: next - Duration::microseconds(1), now };
            for m in machine::list_machines(&state.pool).await? {
                let acts = report::activities_touching(&state.pool, m.id, w.start, w.end).await?;
                let jobs = report::jobs_in_window(&state.pool, m.id, w.start, w.end).await?;
                let records = report::production_records_touching(&state.pool, m.id, w.start, w.end).await?;
                let [up, down, closed, over] = reference::seconds_by_state(w, &acts);
                let (good, rejects) = reference::production_in_window(w, &records);
                let (a, p, q) = (
                    reference::availability(w, &acts),
                    reference::performance(w, &acts, &jobs),
                    reference::quality(&jobs),
                );
                let minutes = |s: f64| Cell::Int(round_even(s / 60.0) as i64);
                let row = vec![
                    Cell::Text(m.name),
                    minutes(up + down + closed + over),
                    minutes(closed),
                    minutes(down),
                    minutes(up + over),
                    Cell::Int(round_even(reference::expected_quantity(w, &acts, &jobs)) as i64),
                    Cell::Int(round_even(good + rejects) as i64),
                    Cell::Int(round_even(rejects) as i64),
                    Cell::Pct(a),
                    Cell::Pct(p),
                    Cell::Pct(q),
                    Cell::Pct(a * p * q),
                ];
                if tx.send(Ok(row)).await.is_err() {
                    return Ok(());
                }
            }
        }
        Which::DailyOee | Which::Production => {
            let days: Vec<(DateTime<Utc>, DateTime<Utc>)> = ask.days().map(|d| local_date_bounds(tz, d)).collect();
            for m in machine::list_machines(&state.pool).await? {
                let intervals: Vec<(i32, DateTime<Utc>, DateTime<Utc>)> =
                    days.iter().map(|(s, e)| (m.id, *s, *e)).collect();
                let calc = crate::oee_api::Calculator::ready(&state, &intervals, now).await?;
                let mut row = vec![Cell::Text(m.name)];
                for (s, e) in &days {
                    let sums = calc.sums(m.id, *s, *e);
                    row.push(match spec.which {
                        Which::DailyOee => sums.figures().oee.map_or(Cell::Empty, Cell::Pct),
                        _ => Cell::Num(sums.good),
                    });
                }
                if tx.send(Ok(row)).await.is_err() {
                    return Ok(());
                }
            }
        }
        Which::Jobs => {
            let from = local_date_bounds(tz, ask.from).0;
            let to = local_date_bounds(tz, ask.to).1;
            let mut after = None;
            loop {
                let batch = job::jobs_in_range_after(&state.pool, None, from, to, after, JOB_BATCH).await?;
                let Some(last) = batch.last() else { break };
                after = Some((last.start_time, last.id));
                let full = batch.len() as i64 == JOB_BATCH;
                for j in batch {
                    let row = vec![
                        Cell::Int(j.id),
                        Cell::Text(j.job_number),
                        Cell::Text(j.machine_name),
                        Cell::Time(local(j.start_time)),
                        j.end_time.map_or(Cell::Empty, |t| Cell::Time(local(t))),
                        j.ideal_cycle_time_s.map_or(Cell::Empty, Cell::Num),
                        Cell::Int(j.quantity_good),
                        Cell::Int(j.quantity_rejects),
                    ];
                    if tx.send(Ok(row)).await.is_err() {
                        return Ok(());
                    }
                }
                if !full {
                    break;
                }
            }
        }
        Which::Activity => {
            let from = local_date_bounds(tz, ask.from).0;
            let to = local_date_bounds(tz, ask.to).1.min(now);
            let codes: Vec<i32> = code::list_codes(&state.pool).await?.into_iter().map(|c| c.id).collect();
            let mut by_holder: BTreeMap<String, HashMap<i32, f64>> = BTreeMap::new();
            if to > from {
                for (holder, code_id, secs) in report::durations_by(&state.pool, ask.by, from, to, now).await? {
                    *by_holder.entry(holder).or_default().entry(code_id).or_default() += secs;
                }
            }
            for (holder, secs) in by_holder {
                let mut row = vec![Cell::Text(if holder.is_empty() { "(nobody)".into() } else { holder })];
                row.extend(
                    codes.iter().map(|c| Cell::Int(round_even(secs.get(c).copied().unwrap_or(0.0) / 60.0) as i64)),
                );
                if tx.send(Ok(row)).await.is_err() {
                    return Ok(());
                }
            }
        }
    }
    Ok(())
}

/// Starts producing the rows of `ask`; a failure part-way arrives as the last item.
fn start(state: &WebState, spec: &Spec, ask: &Ask) -> RowReceiver {
    // A few rows in flight: the producer waits for the writer, so memory does not grow with the table.
    let (tx, rx) = mpsc::channel(64);
    let (state, spec, ask) = (state.clone(), spec.clone(), ask.clone());
    tokio::spawn(async move {
        let err_tx = tx.clone();
        if let Err(e) = produce(state, spec, ask, tx).await {
            tracing::warn!(error = %e, "a table stopped part-way");
            let _ = err_tx.send(Err(e.to_string())).await;
        }
    });
    rx
}

/// Reads every row (pages and JSON); more than `limit` rows is a refusal.
async fn collect(mut rx: RowReceiver, limit: usize) -> Result<Vec<Vec<Cell>>, ApiError> {
    let mut rows = Vec::new();
    while let Some(row) = rx.recv().await {
        rows.push(row.map_err(bad)?);
        if rows.len() > limit {
            return Err(bad(format!("more than {limit} rows: narrow the range, or export the table")));
        }
    }
    Ok(rows)
}

fn today(state: &WebState) -> NaiveDate {
    Utc::now().with_timezone(&state.tz).date_naive()
}

/// An export of the table as `format`.
async fn exported(
    state: &WebState,
    q: &HashMap<String, String>,
    which: Which,
    format: Format,
) -> Result<Response, ApiError> {
    let ask = Ask::parse(which, q, today(state))?;
    let spec = spec(state, &ask).await?;
    let rows = start(state, &spec, &ask);
    match format {
        Format::Json => {
            let rows = collect(rows, PAGE_READ_LIMIT).await?;
            let columns: Vec<&str> = spec.columns.iter().map(|c| c.name.as_str()).collect();
            let rows: Vec<Vec<Value>> = rows.iter().map(|r| r.iter().map(Cell::json).collect()).collect();
            Ok(Json(json!({ "table": which.name(), "heading": spec.heading, "columns": columns, "rows": rows }))
                .into_response())
        }
        Format::Csv | Format::Xlsx => Ok(crate::export::respond(spec, rows, format)),
    }
}

/// The page's view of a table: its controls, its sorted page of rows, and its export links.
#[derive(Debug, Serialize)]
struct TablePage {
    tables: Vec<(String, String, bool)>,
    which: &'static str,
    heading: String,
    one_day: bool,
    by_user: bool,
    is_activity: bool,
    date: String,
    from: String,
    to: String,
    error: Option<String>,
    columns: Vec<(String, String, &'static str)>,
    /// Each cell's text and, for a figure that has one, the address of its breakdown.
    rows: Vec<Vec<(String, String)>>,
    empty: bool,
    pages: Vec<(usize, String, bool)>,
    csv: String,
    xlsx: String,
    /// The reference's table class, kept so its scrapers find the table.
    reference_class: bool,
}

fn link(query: &[(&str, String)]) -> String {
    format!("/tables?{}", serde_urlencoded::to_string(query).unwrap_or_default())
}

async fn render_page(state: &WebState, caller: &Caller, q: &HashMap<String, String>, whole: bool) -> Response {
    let which = q.get("table").map(|t| Which::parse(t));
    let which = match which {
        None => Ok(Which::Oee),
        Some(w) => w,
    };
    let t = today(state);
    let chosen = which.as_ref().copied().unwrap_or(Which::Oee);
    let result = match which {
        Ok(w) => match Ask::parse(w, q, t) {
            Ok(ask) => match spec(state, &ask).await {
                Ok(spec) => {
                    let rx = start(state, &spec, &ask);
                    collect(rx, PAGE_READ_LIMIT).await.map(|rows| (ask, spec, rows))
                }
                Err(e) => Err(e),
            },
            Err(e) => Err(e),
        },
        Err(e) => Err(e),
    };
    let tables = Which::ALL
        .iter()
        .map(|w| (link(&[("table", w.name().to_string())]), w.label().to_string(), *w == chosen))
        .collect();
    let (status, body) = match result {
        Ok((ask, spec, mut rows)) => {
            let sort = q.get("sort").and_then(|s| s.parse::<usize>().ok()).filter(|s| *s < spec.columns.len());
            let desc = q.get("dir").is_some_and(|d| d == "desc");
            if let Some(col) = sort {
                rows.sort_by(|a, b| {
                    let o = a[col].order(&b[col]);
                    if desc { o.reverse() } else { o }
                });
            }
            let base = ask.query();
            let page_count = rows.len().div_ceil(PAGE_ROWS).max(1);
            let page = q.get("page").and_then(|p| p.parse::<usize>().ok()).unwrap_or(1).clamp(1, page_count);
            // Each day's OEE of the daily table links to its breakdown.
            let explain: HashMap<String, i32> = if ask.which == Which::DailyOee {
                machine::list_machines(&state.pool)
                    .await
                    .unwrap_or_default()
                    .into_iter()
                    .map(|m| (m.name, m.id))
                    .collect()
            } else {
                HashMap::new()
            };
            let days: Vec<NaiveDate> = ask.days().collect();
            let cells = |r: &Vec<Cell>| -> Vec<(String, String)> {
                let id = match r.first() {
                    Some(Cell::Text(name)) => explain.get(name).copied(),
                    _ => None,
                };
                r.iter()
                    .enumerate()
                    .map(|(i, c)| {
                        let href = match (id, i.checked_sub(1).and_then(|d| days.get(d)), c) {
                            (Some(m), Some(d), Cell::Pct(_)) => crate::explain::day_link(m, *d),
                            _ => String::new(),
                        };
                        (c.text(), href)
                    })
                    .collect()
            };
            let shown: Vec<Vec<(String, String)>> = if whole {
                rows.iter().map(cells).collect()
            } else {
                rows.iter().skip((page - 1) * PAGE_ROWS).take(PAGE_ROWS).map(cells).collect()
            };
            let mut sorted = base.clone();
            if let Some(col) = sort {
                sorted.push(("sort", col.to_string()));
                sorted.push(("dir", if desc { "desc" } else { "asc" }.to_string()));
            }
            let columns = spec
                .columns
                .iter()
                .enumerate()
                .map(|(i, c)| {
                    let now_asc = sort == Some(i) && !desc;
                    let mut l = base.clone();
                    l.push(("sort", i.to_string()));
                    l.push(("dir", if now_asc { "desc" } else { "asc" }.to_string()));
                    let mark = match (sort == Some(i), desc) {
                        (true, false) => "▲",
                        (true, true) => "▼",
                        _ => "",
                    };
                    (c.name.clone(), link(&l), mark)
                })
                .collect();
            let pages = if whole || page_count == 1 {
                Vec::new()
            } else {
                (1..=page_count)
                    .map(|p| {
                        let mut l = sorted.clone();
                        l.push(("page", p.to_string()));
                        (p, link(&l), p == page)
                    })
                    .collect()
            };
            let export = |f: &str| {
                let mut l = base.clone();
                l.push(("format", f.to_string()));
                link(&l)
            };
            (
                StatusCode::OK,
                TablePage {
                    tables,
                    which: ask.which.name(),
                    heading: spec.heading.clone(),
                    one_day: ask.which == Which::Oee,
                    by_user: ask.by == DurationsBy::User,
                    is_activity: ask.which == Which::Activity,
                    date: ask.date.to_string(),
                    from: ask.from.to_string(),
                    to: ask.to.to_string(),
                    error: None,
                    columns,
                    empty: shown.is_empty(),
                    rows: shown,
                    pages,
                    csv: export("csv"),
                    xlsx: export("xlsx"),
                    reference_class: whole,
                },
            )
        }
        Err(e) => (
            match e {
                ApiError::Database(_) => StatusCode::SERVICE_UNAVAILABLE,
                _ => StatusCode::BAD_REQUEST,
            },
            TablePage {
                tables,
                which: chosen.name(),
                heading: chosen.label().to_string(),
                one_day: chosen == Which::Oee,
                by_user: false,
                is_activity: chosen == Which::Activity,
                date: q.get("date").cloned().unwrap_or_else(|| t.to_string()),
                from: q.get("from").cloned().unwrap_or_default(),
                to: q.get("to").cloned().unwrap_or_default(),
                error: Some(e.to_string()),
                columns: Vec::new(),
                rows: Vec::new(),
                empty: true,
                pages: Vec::new(),
                csv: String::new(),
                xlsx: String::new(),
                reference_class: whole,
            },
        ),
    };
    let page = Page::new(state, Some(caller), "Tables", "tables", body).await;
    let mut r = state.pages.render("tables", &page);
    if r.status() == StatusCode::OK {
        *r.status_mut() = status;
    }
    r
}

/// `GET /tables?table=oee|daily_oee|production|jobs|activity&date=|from=&to=[&by=user][&sort=&dir=&page=]`;
/// with `format=csv|xlsx` the table as a download.
pub(crate) async fn page(
    State(state): State<WebState>,
    Extension(caller): Extension<Caller>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    if let Some(f) = q.get("format") {
        let which = q.get("table").map_or(Ok(Which::Oee), |t| Which::parse(t));
        let answer = match (Format::parse(f), which) {
            (Ok(Format::Json), _) => Err(bad("`format` must be csv or xlsx here; the v1 API answers JSON")),
            (Ok(format), Ok(which)) => exported(&state, &q, which, format).await,
            (Err(e), _) | (_, Err(e)) => Err(e),
        };
        return answer.unwrap_or_else(|e| e.into_response());
    }
    render_page(&state, &caller, &q, false).await
}

/// `POST /tables`, the reference's table form: `formType=OeeTableForm&date=YYYY-MM-DD` answers the OEE
/// report of that day (contract C49), the whole table on one page.
pub(crate) async fn reference_form(
    State(state): State<WebState>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let fields = match crate::form::read(&headers, body).await {
        Ok((_, f)) => f,
        Err(e) => return e.into_response(),
    };
    let get = |n: &str| fields.iter().find(|(k, _)| k == n).map(|(_, v)| v.clone());
    let mut q = HashMap::new();
    match get("formType").as_deref() {
        Some("OeeTableForm") | None => {
            q.insert("table".to_string(), "oee".to_string());
            if let Some(d) = get("date") {
                q.insert("date".to_string(), d);
            }
        }
        Some(other) => {
            return (
                StatusCode::BAD_REQUEST,
                format!("formType `{other}` is not answered here: open /tables and pick the table"),
            )
                .into_response();
        }
    }
    render_page(&state, &caller, &q, true).await
}

/// `GET /api/v1/tables/{table}`.
#[utoipa::path(
    get,
    path = "/api/v1/tables/{table}",
    tag = "reports",
    operation_id = "table",
    summary = "A table of the Tables page as JSON, CSV or XLSX",
    description = "The tables of the Tables page: `oee` (the OEE report of one day with the reference's columns), \
                   `daily_oee` and `production` (by machine and day, days before today), `jobs` (jobs in a range) \
                   and `activity` (minutes per activity code by machine or user). The format is `format`, or \
                   else the `Accept` header (application/json, text/csv, or the XLSX media type); JSON by \
                   default. CSV and XLSX are streamed as attachments.",
    params(
        ("table" = Which, Path, description = "Which table"),
        ("date" = Option<String>, Query, description = "The day of the `oee` table, like 2026-01-05; default today"),
        ("from" = Option<String>, Query, description = "The first day of a range, like 2026-01-05; default a week ago"),
        ("to" = Option<String>, Query, description = "The last day of a range (included); default today, or yesterday for the tables by day"),
        ("by" = Option<String>, Query, description = "`activity` only: machine (default) or user"),
        ("format" = Option<String>, Query, description = "json, csv or xlsx; wins over `Accept`"),
    ),
    responses(
        (status = 200, description = "The table: JSON `{table, heading, columns, rows}`, or a CSV or XLSX file"),
        (status = 400, description = "A parameter is wrong", body = crate::openapi::ReportError),
        (status = 503, description = "The database is not available", body = crate::openapi::ReportError),
    )
)]
pub(crate) async fn api(
    State(state): State<WebState>,
    Path(table): Path<String>,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Response, ApiError> {
    let which = Which::parse(&table)?;
    let format = match q.get("format") {
        Some(f) => Format::parse(f)?,
        None => Format::from_accept(headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()).unwrap_or("")),
    };
    exported(&state, &q, which, format).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rounding_is_half_to_even_as_the_reference_rounds() {
        assert_eq!(round_even(2.5), 2.0);
        assert_eq!(round_even(3.5), 4.0);
        assert_eq!(round_even(359.6), 360.0);
        assert_eq!(Cell::Pct(0.2777777).text(), "27.8");
        assert_eq!(Cell::Pct(0.1875).text(), "18.8");
        assert_eq!(Cell::Num(90.0).text(), "90");
    }

    #[test]
    fn tables_by_day_end_yesterday_and_ranges_are_bounded() {
        let today = NaiveDate::from_ymd_opt(2026, 3, 10).unwrap();
        let q = |pairs: &[(&str, &str)]| pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        let a = Ask::parse(Which::DailyOee, &q(&[("from", "2026-03-01"), ("to", "2026-03-20")]), today).unwrap();
        assert_eq!(a.to, NaiveDate::from_ymd_opt(2026, 3, 9).unwrap());
        assert!(Ask::parse(Which::Jobs, &q(&[("from", "2024-01-01"), ("to", "2026-01-01")]), today).is_err());
        assert!(Ask::parse(Which::Jobs, &q(&[("from", "2026-01-02"), ("to", "2026-01-01")]), today).is_err());
        assert!(Ask::parse(Which::Oee, &q(&[("date", "2026-03-11")]), today).is_err());
        assert!(Ask::parse(Which::Oee, &q(&[("date", "10-03-2026")]), today).is_err());
    }
}
