//! Tables (`/tables`, reference §7.4) and their exports: the OEE report of a day with the reference's
//! columns, daily OEE and daily production by machine, jobs in a range, and activity durations by machine
//! or by user. Each table is a header ([`Spec`]) and rows built by one function per table (`job_cells`,
//! `activity_cells`, `daily_cells`), so the page, the CSV and XLSX exports and the v1 API
//! (`GET /api/v1/tables/{table}`) show the same rows.
//!
//! The exports produce every row one at a time into a bounded channel and write each as it arrives (see
//! [`crate::export`]), in the table's own order, so memory stays bounded whatever the range.
//!
//! Pages sort and page on the server (query parameters `sort`: a column's number from 0; `dir`: asc or
//! desc; `page`: from 1), so they work without JavaScript, and show how many rows the table has. The long
//! tables are sorted and paged by the database and read one page at a time ([`read_page`] says how each
//! table is read). A `sort`, `dir` or `page` that does not fit the table is refused with 400 and says why.

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
use oee_core::store::job::{JobSort, JobSummary};
use oee_core::store::report::{self, DurationsBy, DurationsSort};
use oee_core::store::{code, job, machine};
use oee_core::verdict::echo;
use serde::Serialize;
use serde_json::{Value, json};
use tokio::sync::mpsc;

use crate::WebState;
use crate::access::Caller;
use crate::export::Format;
use crate::oee_api::{ApiError, Calculator, bad, plain_date};
use crate::page::Page;

/// Most days a table's range may cover: a year and a bit.
const MAX_DAYS: i64 = 400;
/// Rows on one page of a table.
const PAGE_ROWS: usize = 50;
/// Rows the tables read whole (the OEE report's page, the JSON answer) read before they ask for a narrower
/// range.
const PAGE_READ_LIMIT: usize = 100_000;
/// Jobs an export reads from the database at a time.
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
    /// The activity table's codes, one per column after the first (the ids the columns stand for).
    pub codes: Vec<i32>,
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
    let mut codes = Vec::new();
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
            JOB_COLUMNS.iter().map(|(n, k, _)| Column::new(*n, *k)).collect(),
        ),
        Which::Activity => {
            let (first, who) = match ask.by {
                DurationsBy::Machine => ("Machine Activity Durations (minutes)", "machine"),
                DurationsBy::User => ("User Activity Durations (minutes)", "user"),
            };
            let mut columns = vec![Column::new(first, Kind::Text)];
            for c in code::list_codes(&state.pool).await? {
                codes.push(c.id);
                columns.push(Column::new(c.short_description, Kind::Integer));
            }
            (
                format!("Activity Durations {} to {}", ask.from.format("%d-%b-%y"), ask.to.format("%d-%b-%y")),
                format!("activity_durations_by_{who}_{range}"),
                columns,
            )
        }
    };
    Ok(Spec { which: ask.which, heading, file_stem, columns, chart: ask.which == Which::DailyOee, codes })
}

/// The jobs table's columns, each with the column of the database it is sorted by.
const JOB_COLUMNS: [(&str, Kind, JobSort); 8] = [
    ("Job ID", Kind::Integer, JobSort::Id),
    ("Job Number", Kind::Text, JobSort::Number),
    ("Machine", Kind::Text, JobSort::Machine),
    ("Start", Kind::Time, JobSort::Start),
    ("End", Kind::Time, JobSort::End),
    ("Ideal Cycle Time (s)", Kind::Decimal, JobSort::IdealCycleTime),
    ("Good Qty", Kind::Integer, JobSort::Good),
    ("Rejects Qty", Kind::Integer, JobSort::Rejects),
];

/// A job as a row of the jobs table, times in the plant's zone.
fn job_cells(j: JobSummary, tz: chrono_tz::Tz) -> Vec<Cell> {
    let local = |t: DateTime<Utc>| t.with_timezone(&tz).naive_local();
    vec![
        Cell::Int(j.id),
        Cell::Text(j.job_number),
        Cell::Text(j.machine_name),
        Cell::Time(local(j.start_time)),
        j.end_time.map_or(Cell::Empty, |t| Cell::Time(local(t))),
        j.ideal_cycle_time_s.map_or(Cell::Empty, Cell::Num),
        Cell::Int(j.quantity_good),
        Cell::Int(j.quantity_rejects),
    ]
}

/// A machine's or user's row of the activity table: its name, then whole minutes per code of `codes`.
fn activity_cells(holder: String, secs: &HashMap<i32, f64>, codes: &[i32]) -> Vec<Cell> {
    let mut row = vec![Cell::Text(if holder.is_empty() { "(nobody)".into() } else { holder })];
    row.extend(codes.iter().map(|c| Cell::Int(round_even(secs.get(c).copied().unwrap_or(0.0) / 60.0) as i64)));
    row
}

/// A machine's row of a table by day: its name, then each day's OEE or parts made.
fn daily_cells(calc: &Calculator, which: Which, machine: i32, name: String, days: &[DayBounds]) -> Vec<Cell> {
    let mut row = vec![Cell::Text(name)];
    row.extend(days.iter().map(|(s, e)| day_cell(calc, which, machine, *s, *e)));
    row
}

/// One machine's OEE or parts made over one day.
fn day_cell(calc: &Calculator, which: Which, machine: i32, start: DateTime<Utc>, end: DateTime<Utc>) -> Cell {
    let sums = calc.sums(machine, start, end);
    match which {
        Which::DailyOee => sums.figures().oee.map_or(Cell::Empty, Cell::Pct),
        _ => Cell::Num(sums.good),
    }
}

/// A plant day as its bounds.
type DayBounds = (DateTime<Utc>, DateTime<Utc>);

/// What `ask`'s range covers for the activity table: from the first day's start to the last day's end or
/// now, whichever is first (`None`: nothing yet).
fn activity_window(tz: chrono_tz::Tz, ask: &Ask, now: DateTime<Utc>) -> Option<DayBounds> {
    let from = local_date_bounds(tz, ask.from).0;
    let to = local_date_bounds(tz, ask.to).1.min(now);
    (to > from).then_some((from, to))
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
            let days: Vec<DayBounds> = ask.days().map(|d| local_date_bounds(tz, d)).collect();
            for m in machine::list_machines(&state.pool).await? {
                let intervals: Vec<(i32, DateTime<Utc>, DateTime<Utc>)> =
                    days.iter().map(|(s, e)| (m.id, *s, *e)).collect();
                let calc = Calculator::ready(&state, &intervals, now).await?;
                let row = daily_cells(&calc, spec.which, m.id, m.name, &days);
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
                    if tx.send(Ok(job_cells(j, tz))).await.is_err() {
                        return Ok(());
                    }
                }
                if !full {
                    break;
                }
            }
        }
        Which::Activity => {
            let mut by_holder: BTreeMap<String, HashMap<i32, f64>> = BTreeMap::new();
            if let Some((from, to)) = activity_window(tz, &ask, now) {
                for (holder, code_id, secs) in report::durations_by(&state.pool, ask.by, from, to, now).await? {
                    *by_holder.entry(holder).or_default().entry(code_id).or_default() += secs;
                }
            }
            for (holder, secs) in by_holder {
                if tx.send(Ok(activity_cells(holder, &secs, &spec.codes))).await.is_err() {
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

/// How a page is sorted: by one of the table's columns, one way.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Order {
    column: usize,
    desc: bool,
}

/// The sort and the page asked for (`sort`, `dir`, `page`). A column the table lacks, a direction other
/// than asc or desc, or a page that is not a whole number from 1 is refused rather than ignored, so a
/// stale or hand-made link says what is wrong instead of showing something else; a page past the last
/// shows the last.
fn sort_and_page(q: &HashMap<String, String>, columns: usize) -> Result<(Option<Order>, usize), ApiError> {
    let given = |k: &str| q.get(k).map(|v| v.trim()).filter(|v| !v.is_empty());
    let desc = match given("dir") {
        None | Some("asc") => false,
        Some("desc") => true,
        Some(other) => return Err(bad(format!("`dir` must be asc or desc, not `{}`", echo(other)))),
    };
    let order = match given("sort") {
        None => None,
        Some(s) => match s.parse::<usize>().ok().filter(|c| *c < columns) {
            Some(column) => Some(Order { column, desc }),
            None => {
                return Err(bad(format!(
                    "`sort` must be the number of one of this table's columns, 0 to {}, not `{}`: click a \
                     column's heading to sort by it",
                    columns.saturating_sub(1),
                    echo(s)
                )));
            }
        },
    };
    let page = match given("page") {
        None => 1,
        Some(p) => p
            .parse::<usize>()
            .ok()
            .filter(|p| *p >= 1)
            .ok_or_else(|| bad(format!("`page` must be a page number from 1, not `{}`", echo(p))))?,
    };
    Ok((order, page))
}

/// One page of a table.
struct PageOf {
    /// The rows of the whole table.
    total: usize,
    /// The page shown (a page past the last is the last).
    page: usize,
    /// The rows before it.
    skipped: usize,
    rows: Vec<Vec<Cell>>,
    /// Each row's machine, where a row is one (the daily OEE table links its figures to their breakdown).
    machines: Vec<Option<i32>>,
}

impl PageOf {
    fn new(total: usize, page: usize, skipped: usize, rows: Vec<Vec<Cell>>) -> PageOf {
        PageOf { total, page, skipped, machines: vec![None; rows.len()], rows }
    }
}

/// Where page `page` (from 1) of a table of `total` rows lies: the page, clamped to the pages there are,
/// and the rows before it.
fn place(page: usize, total: usize) -> (usize, usize) {
    let page = page.clamp(1, total.div_ceil(PAGE_ROWS).max(1));
    (page, (page - 1) * PAGE_ROWS)
}

/// A count from the database as a number of rows.
fn rows_of(count: i64) -> usize {
    usize::try_from(count).unwrap_or(0)
}

/// Reads page `page` of a table sorted by `order` (the table's own order without one).
///
/// The long tables are counted, sorted and paged by the database, and only the page's rows are read: jobs
/// (by any column), activity durations (by name or by any code's time), and the tables by day (machines
/// by id or by name). Sorting a table by day by one day's figure needs that figure for every machine,
/// and it comes from the OEE engine, not from SQL: that day is computed for every machine (one number
/// each, from the daily cache when it has it), the machines are ordered by it, and the page's machines
/// are computed for the whole range. The OEE report has one row per machine and is computed whole and
/// sorted in memory; `whole` (the reference's form) shows it on one page.
async fn read_page(
    state: &WebState,
    spec: &Spec,
    ask: &Ask,
    order: Option<Order>,
    page: usize,
    whole: bool,
) -> Result<PageOf, ApiError> {
    let (now, tz, pool) = (Utc::now(), state.tz, &state.pool);
    let desc = order.is_some_and(|o| o.desc);
    let limit = PAGE_ROWS as i64;
    match ask.which {
        Which::Oee => {
            let mut rows = collect(start(state, spec, ask), PAGE_READ_LIMIT).await?;
            if let Some(o) = order {
                rows.sort_by(|a, b| {
                    let c = a[o.column].order(&b[o.column]);
                    if o.desc { c.reverse() } else { c }
                });
            }
            let total = rows.len();
            if whole {
                return Ok(PageOf::new(total, 1, 0, rows));
            }
            let (page, skipped) = place(page, total);
            Ok(PageOf::new(total, page, skipped, rows.into_iter().skip(skipped).take(PAGE_ROWS).collect()))
        }
        Which::Jobs => {
            let (from, to) = (local_date_bounds(tz, ask.from).0, local_date_bounds(tz, ask.to).1);
            let total = rows_of(job::jobs_in_range_count(pool, from, to).await?);
            let (page, skipped) = place(page, total);
            let sort = order.and_then(|o| JOB_COLUMNS.get(o.column)).map_or(JobSort::Start, |c| c.2);
            let jobs = job::jobs_page(pool, from, to, sort, desc, limit, skipped as i64).await?;
            Ok(PageOf::new(total, page, skipped, jobs.into_iter().map(|j| job_cells(j, tz)).collect()))
        }
        Which::Activity => {
            let Some((from, to)) = activity_window(tz, ask, now) else {
                return Ok(PageOf::new(0, 1, 0, Vec::new()));
            };
            let total = rows_of(report::durations_count(pool, ask.by, from, to, now).await?);
            let (page, skipped) = place(page, total);
            let sort = order
                .and_then(|o| o.column.checked_sub(1))
                .and_then(|c| spec.codes.get(c))
                .map_or(DurationsSort::Holder, |c| DurationsSort::Code(*c));
            let read = report::durations_page(pool, ask.by, from, to, now, sort, desc, limit, skipped as i64).await?;
            // The rows come by holder, in the page's order.
            let mut holders: Vec<(String, HashMap<i32, f64>)> = Vec::new();
            for (holder, code_id, secs) in read {
                if holders.last().is_none_or(|(h, _)| *h != holder) {
                    holders.push((holder, HashMap::new()));
                }
                if let Some((_, by_code)) = holders.last_mut() {
                    *by_code.entry(code_id).or_default() += secs;
                }
            }
            let rows = holders.into_iter().map(|(h, secs)| activity_cells(h, &secs, &spec.codes)).collect();
            Ok(PageOf::new(total, page, skipped, rows))
        }
        Which::DailyOee | Which::Production => {
            let days: Vec<DayBounds> = ask.days().map(|d| local_date_bounds(tz, d)).collect();
            let total = rows_of(report::machine_count(pool).await?);
            let (page, skipped) = place(page, total);
            let by_day = order.and_then(|o| o.column.checked_sub(1)).and_then(|d| days.get(d)).copied();
            let machines: Vec<(i32, String)> = match by_day {
                Some((start, end)) => {
                    let all = machine::list_machines(pool).await?;
                    let intervals: Vec<(i32, DateTime<Utc>, DateTime<Utc>)> =
                        all.iter().map(|m| (m.id, start, end)).collect();
                    let calc = Calculator::ready(state, &intervals, now).await?;
                    let mut keyed: Vec<(Cell, i32, String)> =
                        all.into_iter().map(|m| (day_cell(&calc, ask.which, m.id, start, end), m.id, m.name)).collect();
                    // Stable: machines with the same figure stay in the order of their ids.
                    keyed.sort_by(|a, b| {
                        let c = a.0.order(&b.0);
                        if desc { c.reverse() } else { c }
                    });
                    keyed.into_iter().skip(skipped).take(PAGE_ROWS).map(|(_, id, name)| (id, name)).collect()
                }
                None => report::machines_page(pool, order.is_some(), desc, limit, skipped as i64).await?,
            };
            if machines.is_empty() {
                return Ok(PageOf::new(total, page, skipped, Vec::new()));
            }
            let intervals: Vec<(i32, DateTime<Utc>, DateTime<Utc>)> =
                machines.iter().flat_map(|(m, _)| days.iter().map(move |(s, e)| (*m, *s, *e))).collect();
            let calc = Calculator::ready(state, &intervals, now).await?;
            let ids = machines.iter().map(|(id, _)| Some(*id)).collect();
            let rows = machines.into_iter().map(|(id, name)| daily_cells(&calc, ask.which, id, name, &days)).collect();
            Ok(PageOf { total, page, skipped, rows, machines: ids })
        }
    }
}

/// A link to another page of a table; a gap (no address) stands for the pages left out.
#[derive(Debug, Serialize)]
struct PageLink {
    label: String,
    href: String,
    here: bool,
}

/// The pages a page links to: the first, the last, and three either side of the current one; `None`
/// stands for the pages left out between them.
fn page_numbers(page: usize, last: usize) -> Vec<Option<usize>> {
    let mut out = Vec::new();
    for p in 1..=last {
        if p == 1 || p == last || p.abs_diff(page) <= 3 {
            out.push(Some(p));
        } else if out.last() != Some(&None) {
            out.push(None);
        }
    }
    out
}

/// What the page says about its rows: "60 rows", or "Rows 51–60 of 60" when there are several pages.
fn row_count(total: usize, skipped: usize, shown: usize) -> String {
    match total {
        0 => String::new(),
        1 => "1 row".into(),
        t if shown >= t => format!("{t} rows"),
        t => format!("Rows {}–{} of {t}", skipped + 1, skipped + shown),
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
    /// How many rows the table has, and which of them the page shows.
    row_count: String,
    pages: Vec<PageLink>,
    previous: Option<String>,
    next: Option<String>,
    csv: String,
    xlsx: String,
    /// The reference's table class, kept so its scrapers find the table.
    reference_class: bool,
}

fn link(query: &[(&str, String)]) -> String {
    format!("/tables?{}", serde_urlencoded::to_string(query).unwrap_or_default())
}

async fn render_page(state: &WebState, caller: &Caller, q: &HashMap<String, String>, whole: bool) -> Response {
    let which = q.get("table").map_or(Ok(Which::Oee), |t| Which::parse(t));
    let t = today(state);
    let chosen = which.as_ref().copied().unwrap_or(Which::Oee);
    let result = async {
        let ask = Ask::parse(which?, q, t)?;
        let spec = spec(state, &ask).await?;
        let (order, page) = sort_and_page(q, spec.columns.len())?;
        let read = read_page(state, &spec, &ask, order, page, whole).await?;
        Ok::<_, ApiError>((ask, spec, order, read))
    }
    .await;
    let tables = Which::ALL
        .iter()
        .map(|w| (link(&[("table", w.name().to_string())]), w.label().to_string(), *w == chosen))
        .collect();
    let (status, body) = match result {
        Ok((ask, spec, order, read)) => {
            let base = ask.query();
            let days: Vec<NaiveDate> = ask.days().collect();
            // Each day's OEE of the daily table links to its breakdown.
            let explains = ask.which == Which::DailyOee;
            let shown: Vec<Vec<(String, String)>> = read
                .rows
                .iter()
                .zip(&read.machines)
                .map(|(r, machine)| {
                    r.iter()
                        .enumerate()
                        .map(|(i, c)| {
                            let day = i.checked_sub(1).and_then(|d| days.get(d));
                            let href = match (explains, machine, day, c) {
                                (true, Some(m), Some(d), Cell::Pct(_)) => crate::explain::day_link(*m, *d),
                                _ => String::new(),
                            };
                            (c.text(), href)
                        })
                        .collect()
                })
                .collect();
            let mut sorted = base.clone();
            if let Some(o) = order {
                sorted.push(("sort", o.column.to_string()));
                sorted.push(("dir", if o.desc { "desc" } else { "asc" }.to_string()));
            }
            let columns = spec
                .columns
                .iter()
                .enumerate()
                .map(|(i, c)| {
                    let here = order.filter(|o| o.column == i);
                    let mut l = base.clone();
                    l.push(("sort", i.to_string()));
                    l.push(("dir", if here.is_some_and(|o| !o.desc) { "desc" } else { "asc" }.to_string()));
                    let mark = match here {
                        Some(Order { desc: false, .. }) => "▲",
                        Some(Order { desc: true, .. }) => "▼",
                        None => "",
                    };
                    (c.name.clone(), link(&l), mark)
                })
                .collect();
            let page_link = |p: usize| {
                let mut l = sorted.clone();
                l.push(("page", p.to_string()));
                link(&l)
            };
            let last = read.total.div_ceil(PAGE_ROWS).max(1);
            let several = !whole && last > 1;
            let pages = if several {
                page_numbers(read.page, last)
                    .into_iter()
                    .map(|p| match p {
                        Some(p) => PageLink { label: p.to_string(), href: page_link(p), here: p == read.page },
                        None => PageLink { label: "…".into(), href: String::new(), here: false },
                    })
                    .collect()
            } else {
                Vec::new()
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
                    row_count: row_count(read.total, read.skipped, shown.len()),
                    rows: shown,
                    pages,
                    previous: (several && read.page > 1).then(|| page_link(read.page - 1)),
                    next: (several && read.page < last).then(|| page_link(read.page + 1)),
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
                row_count: String::new(),
                pages: Vec::new(),
                previous: None,
                next: None,
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
    fn page_links_keep_the_ends_and_the_neighbours() {
        let some = |v: &[usize]| v.iter().map(|p| Some(*p)).collect::<Vec<_>>();
        assert_eq!(page_numbers(1, 3), some(&[1, 2, 3]));
        assert_eq!(
            page_numbers(10, 40),
            [some(&[1]), vec![None], some(&[7, 8, 9, 10, 11, 12, 13]), vec![None], some(&[40])].concat()
        );
        assert_eq!(page_numbers(2, 9), [some(&[1, 2, 3, 4, 5]), vec![None], some(&[9])].concat());
        assert_eq!(place(9, 64), (2, 50), "a page past the last is the last");
        assert_eq!(place(3, 0), (1, 0));
        assert_eq!(row_count(64, 50, 14), "Rows 51–64 of 64");
        assert_eq!(row_count(12, 0, 12), "12 rows");
    }

    #[test]
    fn sorts_and_pages_are_read_or_refused() {
        let q = |pairs: &[(&str, &str)]| -> HashMap<String, String> {
            pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
        };
        assert_eq!(sort_and_page(&q(&[]), 8).unwrap(), (None, 1));
        assert_eq!(
            sort_and_page(&q(&[("sort", "7"), ("dir", "desc"), ("page", "3")]), 8).unwrap(),
            (Some(Order { column: 7, desc: true }), 3)
        );
        for bad in [&[("sort", "8")][..], &[("sort", "x")], &[("dir", "down")], &[("page", "0")], &[("page", "-2")]] {
            assert!(sort_and_page(&q(bad), 8).is_err(), "{bad:?}");
        }
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
