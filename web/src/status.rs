//! `GET /status`: the status page, one card per machine (reference §7.1) with its current activity in the
//! activity's colour, how long it has been in it, its job and its operator, and the day's OEE with
//! availability, performance and quality, the time per code, and parts produced against the target.
//! Supervisors change a machine's activity, start a job, add parts and end a job from the card with plain
//! form posts (the same commands the reference's form endpoints send, [`crate::reference_forms`]).
//!
//! The page is complete without script: a reload shows the current state. With `/static/status.js` it
//! follows `GET /status/events`, a stream of server-sent events carrying each machine's status as ingest
//! publishes it, and updates the cards in place. The codes' colours come from a stylesheet made from the
//! codes (`/status/codes.css`), since the page's policy allows no inline style.

use std::collections::{HashMap, VecDeque};
use std::convert::Infallible;
use std::sync::Arc;

use axum::Extension;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, NaiveDate, Utc};
use futures_util::Stream;
use oee_core::activity::MachineState;
use oee_core::payload::{MachineStatus, Signal};
use oee_core::shift::local_date_bounds;
use oee_core::store::code::{ActivityCode, list_codes};
use oee_core::store::group::list_groups;
use oee_core::store::machine::{board_machines, machine_statuses, user_name};
use serde::Serialize;
use tokio::sync::broadcast::error::RecvError;

use crate::WebState;
use crate::access::{Access, Caller, Route};
use crate::form::{FormFault, FormFields};
use crate::oee_api::{Calculator, plain_date};
use crate::operator::Asset;
use crate::page::{Choice, Message, Page, found};
use crate::reference_forms::{self as forms, FormError};

const SCRIPT: Asset = Asset::new(include_str!("../assets/status.js"), "text/javascript; charset=utf-8");

/// The status page's routes: the page, its live stream, its files and the cards' forms.
pub(crate) fn routes() -> Vec<Route> {
    use oee_core::access::Role::{Supervisor, Viewer};
    vec![
        Route::get("/status", Access::Role(Viewer), page),
        Route::get("/status/events", Access::Role(Viewer), events),
        Route::get("/status/codes.css", Access::Role(Viewer), codes_css),
        Route::get("/static/status.js", Access::Public, |h: HeaderMap| async move { SCRIPT.respond(&h) }),
        Route::post("/status/machines/{id}/state", Access::Role(Supervisor), change_state),
        Route::post("/status/machines/{id}/job/start", Access::Role(Supervisor), start_job),
        Route::post("/status/machines/{id}/production", Access::Role(Supervisor), production),
        Route::post("/status/machines/{id}/job/end", Access::Role(Supervisor), end_job),
    ]
}

/// The page's context: the filter, the heading and the cards.
#[derive(Debug, Serialize)]
pub(crate) struct StatusPage {
    /// The day shown, `YYYY-MM-DD`.
    date: String,
    /// "Tue 14 May 2024".
    day: String,
    today: bool,
    groups: Vec<Choice>,
    /// The group shown (its id), or empty for all.
    group: String,
    highlight_after_minutes: u32,
    pub(crate) cards: Vec<Card>,
}

/// One machine's card.
#[derive(Debug, Serialize)]
pub(crate) struct Card {
    id: i32,
    name: String,
    code_id: i32,
    code: String,
    /// When the current activity began: RFC 3339 for the script, plant-local `HH:MM` for people.
    since: DateTime<Utc>,
    since_local: String,
    /// How long the machine has been in its activity ("1 h 5 min").
    lasted: String,
    /// In the same activity for longer than `web.status_highlight_after_minutes`.
    long: bool,
    no_signal: bool,
    job_id: Option<i64>,
    job_number: Option<String>,
    user: Option<String>,
    /// The tablet whose operator a supervisor may log out (a tablet is paired and someone is logged in).
    logout_tablet: Option<i32>,
    /// The breakdown of the card's figures over the day shown.
    explain: String,
    oee: String,
    availability: String,
    performance: String,
    quality: String,
    durations: Vec<CodeTime>,
    produced: String,
    target: String,
    good: String,
    rejects: String,
    /// The codes a supervisor may move the machine to now: without a job, no uptime codes.
    state_choices: Vec<Choice>,
}

/// The time a machine spent in one code over the day shown.
#[derive(Debug, Serialize)]
struct CodeTime {
    code_id: i32,
    name: String,
    time: String,
}

/// `?date=YYYY-MM-DD&group=N` (both optional; blank is absent).
fn filter(q: &HashMap<String, String>, today: NaiveDate) -> Result<(NaiveDate, Option<i32>), String> {
    let date = match q.get("date").map(|d| d.trim()).filter(|d| !d.is_empty()) {
        None => today,
        Some(d) => plain_date(d).ok_or_else(|| {
            format!("the date must be YYYY-MM-DD, like 2026-01-05, not `{}`", oee_core::verdict::echo(d))
        })?,
    };
    let group = match q.get("group").map(|g| g.trim()).filter(|g| !g.is_empty()) {
        None => None,
        Some(g) => Some(g.parse::<i32>().ok().filter(|g| *g > 0).ok_or_else(|| {
            format!("`group` must be a machine group's number, not `{}`", oee_core::verdict::echo(g))
        })?),
    };
    Ok((date, group))
}

/// A share as a whole percentage, or a dash when there is nothing to share.
fn percent(x: Option<f64>) -> String {
    x.map_or_else(|| "–".to_string(), |x| format!("{:.0}%", x * 100.0))
}

/// A length of time as people read it on the card: "0 min", "45 min", "2 h 5 min".
pub(crate) fn lasted(ms: i64) -> String {
    let minutes = ms.max(0) / 60_000;
    if minutes < 60 { format!("{minutes} min") } else { format!("{} h {} min", minutes / 60, minutes % 60) }
}

fn count(x: f64) -> String {
    format!("{:.0}", x)
}

fn is_up(code: &ActivityCode) -> bool {
    MachineState::try_from(code.machine_state).is_ok_and(MachineState::is_up)
}

/// How long a machine may go unheard before its card says "no signal" (as ingest judges it).
fn no_signal_after(state: &WebState) -> Option<std::time::Duration> {
    let s = state.config.ingest.no_signal_after_s;
    (s > 0).then(|| std::time::Duration::from_secs(s))
}

/// A page that only says what went wrong, with its status.
async fn message_page(state: &WebState, caller: &Caller, status: StatusCode, heading: &str, text: String) -> Response {
    let body = Message { heading: heading.into(), text };
    let page = Page::new(state, Some(caller), "Status", "status", body).await;
    let mut r = state.pages.render("message", &page);
    *r.status_mut() = status;
    r
}

/// `GET /status[?date=YYYY-MM-DD][&group=N]`.
async fn page(
    State(state): State<WebState>,
    Extension(caller): Extension<Caller>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let supervisor = caller.role >= oee_core::access::Role::Supervisor;
    match build(&state, supervisor, &q).await {
        Ok(Ok(body)) => {
            let page = Page::new(&state, Some(&caller), "Status", "status", body).await;
            state.pages.render("status", &page)
        }
        Ok(Err((status, text))) => message_page(&state, &caller, status, "Status", text).await,
        Err(e) => {
            tracing::warn!("status page: {e}");
            let text = format!("{e}: try again in a moment");
            message_page(&state, &caller, StatusCode::SERVICE_UNAVAILABLE, "Status", text).await
        }
    }
}

pub(crate) type Refused = (StatusCode, String);

/// The cards of the machines `q` asks for (`date`, `group`), with the forms' choices for a `supervisor`.
pub(crate) async fn build(
    state: &WebState,
    supervisor: bool,
    q: &HashMap<String, String>,
) -> Result<Result<StatusPage, Refused>, crate::oee_api::ApiError> {
    let tz = state.tz;
    let now = Utc::now();
    let today = now.with_timezone(&tz).date_naive();
    let (date, group) = match filter(q, today) {
        Ok(f) => f,
        Err(text) => return Ok(Err((StatusCode::BAD_REQUEST, text))),
    };
    let groups = list_groups(&state.pool).await?;
    if let Some(g) = group
        && !groups.iter().any(|x| x.id == g)
    {
        let text = format!("machine group {g} does not exist: choose a group from the list");
        return Ok(Err((StatusCode::NOT_FOUND, text)));
    }
    let machines = board_machines(&state.pool, group).await?;
    let ids: Vec<i32> = machines.iter().map(|m| m.machine_id).collect();
    let statuses: HashMap<i32, MachineStatus> =
        machine_statuses(&state.pool, Some(&ids)).await?.into_iter().map(|s| (s.machine_id, s)).collect();
    let codes = list_codes(&state.pool).await?;
    let code_names: HashMap<i32, &str> = codes.iter().map(|c| (c.id, c.short_description.as_str())).collect();
    let (start, end) = local_date_bounds(tz, date);
    let intervals: Vec<_> = ids.iter().map(|m| (*m, start, end)).collect();
    let calc = Calculator::ready(state, &intervals, now).await?;
    let highlight = chrono::Duration::minutes(i64::from(state.web.status_highlight_after_minutes));
    let silence = no_signal_after(state);

    let mut cards = Vec::new();
    for m in &machines {
        let Some(s) = statuses.get(&m.machine_id) else { continue };
        let sums = calc.sums(m.machine_id, start, end);
        let figures = sums.figures();
        let durations = sums
            .by_code_ms
            .iter()
            .filter(|(_, ms)| **ms > 0)
            .map(|(code, ms)| CodeTime {
                code_id: *code,
                name: code_names.get(code).map_or_else(|| format!("code {code}"), |n| n.to_string()),
                time: lasted(*ms),
            })
            .collect();
        let state_choices = if supervisor {
            codes
                .iter()
                .filter(|c| c.active && (s.job_id.is_some() || !is_up(c)))
                .map(|c| Choice {
                    value: c.id.to_string(),
                    label: c.short_description.clone(),
                    selected: c.id == s.activity_code_id,
                })
                .collect()
        } else {
            Vec::new()
        };
        cards.push(Card {
            id: m.machine_id,
            name: s.machine_name.clone(),
            code_id: s.activity_code_id,
            code: s.activity_code.clone(),
            since: s.since,
            since_local: s.since.with_timezone(&tz).format("%H:%M").to_string(),
            lasted: lasted((now - s.since).num_milliseconds()),
            long: now - s.since > highlight,
            no_signal: Signal::judge(s.last_signal_at, now, silence) == Signal::NoSignal,
            job_id: s.job_id,
            job_number: s.job_number.clone(),
            user: m.user_name.clone(),
            logout_tablet: s.input_device_id.filter(|_| s.session_id.is_some()),
            explain: crate::explain::day_link(m.machine_id, date),
            oee: percent(figures.oee),
            availability: percent(figures.availability),
            performance: percent(figures.performance),
            quality: percent(figures.quality),
            durations,
            produced: count(sums.total),
            target: count(sums.target_quantity),
            good: count(sums.good),
            rejects: count(sums.total - sums.good),
            state_choices,
        });
    }
    let group_choices = groups
        .iter()
        .map(|g| Choice { value: g.id.to_string(), label: g.name.clone(), selected: Some(g.id) == group })
        .collect();
    Ok(Ok(StatusPage {
        date: date.format("%Y-%m-%d").to_string(),
        day: date.format("%a %d %b %Y").to_string(),
        today: date == today,
        groups: group_choices,
        group: group.map(|g| g.to_string()).unwrap_or_default(),
        highlight_after_minutes: state.web.status_highlight_after_minutes,
        cards,
    }))
}

/// A colour as CSS may take it from a code: `#` and 3, 4, 6 or 8 hex digits, or a plain colour name.
fn css_colour(c: &str) -> Option<&str> {
    let c = c.trim();
    let hex = c
        .strip_prefix('#')
        .is_some_and(|h| matches!(h.len(), 3 | 4 | 6 | 8) && h.chars().all(|ch| ch.is_ascii_hexdigit()));
    let name = !c.is_empty() && c.len() <= 30 && c.chars().all(|ch| ch.is_ascii_alphabetic());
    (hex || name).then_some(c)
}

/// `GET /status/codes.css`: one class per activity code, `code-{id}`, setting `--code` to its colour.
pub(crate) async fn codes_css(State(state): State<WebState>) -> Response {
    let codes = match list_codes(&state.pool).await {
        Ok(c) => c,
        Err(e) => {
            tracing::warn!("codes stylesheet: {e}");
            Vec::new()
        }
    };
    let mut css = String::from("/* The activity codes' colours, as administrators chose them. */\n");
    for c in &codes {
        if let Some(colour) = css_colour(&c.graph_colour) {
            css.push_str(&format!(".code-{} {{ --code: {colour}; }}\n", c.id));
        }
    }
    ([(header::CONTENT_TYPE, "text/css; charset=utf-8"), (header::CACHE_CONTROL, "no-cache")], css).into_response()
}

/// What the stream tells the page of one machine (event `status`).
#[derive(Debug, Serialize)]
struct Live {
    machine_id: i32,
    code_id: i32,
    code: String,
    since: DateTime<Utc>,
    since_local: String,
    job_id: Option<i64>,
    job_number: Option<String>,
    user: Option<String>,
    logout_tablet: Option<i32>,
    no_signal: bool,
}

async fn live_event(state: &WebState, s: &MachineStatus) -> Event {
    let user = match s.user_id {
        Some(id) => user_name(&state.pool, id).await.unwrap_or_else(|e| {
            tracing::warn!("status stream: {e}");
            None
        }),
        None => None,
    };
    let live = Live {
        machine_id: s.machine_id,
        code_id: s.activity_code_id,
        code: s.activity_code.clone(),
        since: s.since,
        since_local: s.since.with_timezone(&state.tz).format("%H:%M").to_string(),
        job_id: s.job_id,
        job_number: s.job_number.clone(),
        user,
        logout_tablet: s.input_device_id.filter(|_| s.session_id.is_some()),
        no_signal: s.signal == Signal::NoSignal,
    };
    Event::default().event("status").json_data(&live).unwrap_or_else(|_| reload_event())
}

/// `GET /status/events`: a `text/event-stream` of machine statuses: first every machine's current one, then
/// each as ingest publishes it (event `status`, JSON data). A listener that fell behind gets `reload` and
/// should read the page again.
async fn events(State(state): State<WebState>) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    Sse::new(stream(state, None).await).keep_alive(KeepAlive::default())
}

/// The statuses of the machines `only` names (every machine when `None`): each one's current status, then
/// each as ingest publishes it. The status page and the andon board follow it.
pub(crate) async fn stream(
    state: WebState,
    only: Option<Vec<i32>>,
) -> impl Stream<Item = Result<Event, Infallible>> + use<> {
    // Subscribed before the current statuses are read, so that no change falls between the two.
    let rx = state.replies.statuses();
    let now = Utc::now();
    let silence = no_signal_after(&state);
    let current: VecDeque<Arc<MachineStatus>> = match machine_statuses(&state.pool, only.as_deref()).await {
        Ok(list) => list
            .into_iter()
            .map(|mut s| {
                s.signal = Signal::judge(s.last_signal_at, now, silence);
                Arc::new(s)
            })
            .collect(),
        Err(e) => {
            tracing::warn!("status stream: {e}");
            VecDeque::new()
        }
    };
    let seed = (state, rx, current, only);
    futures_util::stream::unfold(seed, |(state, mut rx, mut current, only)| async move {
        let status = match current.pop_front() {
            Some(s) => s,
            None => loop {
                match rx.recv().await {
                    Ok(s) if only.as_ref().is_none_or(|ids| ids.contains(&s.machine_id)) => break s,
                    Ok(_) => continue,
                    Err(RecvError::Lagged(_)) => {
                        return Some((Ok(reload_event()), (state, rx, current, only)));
                    }
                    Err(RecvError::Closed) => return None,
                }
            },
        };
        let event = live_event(&state, &status).await;
        Some((Ok(event), (state, rx, current, only)))
    })
}

/// Where a card's form leads back to: the page as it was (its `group` and `date` fields), at the card.
fn back(fields: &HashMap<String, String>, machine: i32) -> String {
    let mut query = Vec::new();
    if let Some(g) = fields.get("group").and_then(|g| g.trim().parse::<i32>().ok()).filter(|g| *g > 0) {
        query.push(format!("group={g}"));
    }
    if let Some(d) = fields.get("date").and_then(|d| plain_date(d.trim())) {
        query.push(format!("date={}", d.format("%Y-%m-%d")));
    }
    let query = if query.is_empty() { String::new() } else { format!("?{}", query.join("&")) };
    format!("/status{query}#machine-{machine}")
}

/// Runs one of the reference's form handlers for a card's form (the machine from the path), leaves what
/// came of it as the next page's message and leads back to the page.
async fn card_form<F, Fut>(
    state: WebState,
    caller: Caller,
    raw_id: String,
    fields: Result<FormFields, FormFault>,
    done: &str,
    handler: F,
) -> Response
where
    F: FnOnce(State<WebState>, Extension<Caller>, Result<FormFields, FormFault>) -> Fut,
    Fut: std::future::Future<Output = Result<Response, FormError>>,
{
    let Some(machine) = raw_id.parse::<i32>().ok().filter(|id| *id > 0) else {
        let text = format!("there is no machine `{}`: reload the status page", oee_core::verdict::echo(&raw_id));
        return message_page(&state, &caller, StatusCode::NOT_FOUND, "Status", text).await;
    };
    let fields = fields.map(|FormFields(mut f)| {
        f.insert("machine_id".into(), machine.to_string());
        FormFields(f)
    });
    let back = back(fields.as_ref().map(|f| &f.0).unwrap_or(&HashMap::new()), machine);
    let name = match machine_statuses(&state.pool, Some(&[machine])).await {
        Ok(s) => s.into_iter().next().map(|s| s.machine_name),
        Err(_) => None,
    };
    let Some(name) = name else {
        let text = format!("machine {machine} does not exist: reload the status page");
        return message_page(&state, &caller, StatusCode::NOT_FOUND, "Status", text).await;
    };
    let message = match handler(State(state.clone()), Extension(caller.clone()), fields).await {
        Ok(_) => format!("{name}: {done}"),
        Err(e) => format!("{name}: not done. {}", e.answer().1),
    };
    crate::page::flash(&state, &caller, &message).await;
    found(&back)
}

/// `POST /status/machines/{id}/state` (`activity_code`): moves the machine to the code now.
async fn change_state(
    State(state): State<WebState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    fields: Result<FormFields, FormFault>,
) -> Response {
    card_form(state, caller, id, fields, "activity changed", forms::change_state).await
}

/// `POST /status/machines/{id}/job/start` (`job_number`, `ideal_cycle_time`?).
async fn start_job(
    State(state): State<WebState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    fields: Result<FormFields, FormFault>,
) -> Response {
    card_form(state, caller, id, fields, "job started", forms::start_job).await
}

/// `POST /status/machines/{id}/production` (`job_id`, `quantity_good`, `quantity_rejects`).
async fn production(
    State(state): State<WebState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    fields: Result<FormFields, FormFault>,
) -> Response {
    card_form(state, caller, id, fields, "parts added", |s, _, f| forms::production(s, f)).await
}

/// `POST /status/machines/{id}/job/end` (`job_id`, `quantity_good`, `quantity_rejects`).
async fn end_job(
    State(state): State<WebState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    fields: Result<FormFields, FormFault>,
) -> Response {
    card_form(state, caller, id, fields, "job ended", forms::end_job).await
}

/// Tells a live page to load itself again. The data must not be empty: a browser drops an event without a
/// `data:` line, and axum writes none for empty data.
pub(crate) fn reload_event() -> Event {
    Event::default().event("reload").data("reload")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lengths_of_time_read_as_hours_and_minutes() {
        for (ms, text) in [(0, "0 min"), (59_999, "0 min"), (60_000, "1 min"), (3_600_000, "1 h 0 min")] {
            assert_eq!(lasted(ms), text);
        }
        assert_eq!(lasted(2 * 3_600_000 + 5 * 60_000), "2 h 5 min");
        assert_eq!(lasted(-5), "0 min", "a clock step back is no negative time");
    }

    #[test]
    fn only_colours_reach_the_codes_stylesheet() {
        for ok in ["#ff0000", "#F00", "#00ff0080", "red", " green "] {
            assert!(css_colour(ok).is_some(), "{ok}");
        }
        for bad in ["#ff000", "red; } body { x", "url(x)", "", "#gggggg", "rgb(1,2,3)"] {
            assert_eq!(css_colour(bad), None, "{bad}");
        }
    }

    #[test]
    fn the_filter_takes_a_date_and_a_group_and_refuses_others() {
        let today = NaiveDate::from_ymd_opt(2026, 1, 5).unwrap();
        let q = |pairs: &[(&str, &str)]| pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        assert_eq!(filter(&q(&[]), today), Ok((today, None)));
        assert_eq!(filter(&q(&[("date", ""), ("group", " ")]), today), Ok((today, None)));
        let day = NaiveDate::from_ymd_opt(2025, 12, 31).unwrap();
        assert_eq!(filter(&q(&[("date", "2025-12-31"), ("group", "2")]), today), Ok((day, Some(2))));
        assert!(filter(&q(&[("date", "31/12/2025")]), today).unwrap_err().contains("YYYY-MM-DD"));
        assert!(filter(&q(&[("group", "x")]), today).unwrap_err().contains("group"));
    }

    #[test]
    fn the_way_back_keeps_the_filter_and_finds_the_card() {
        let f = |pairs: &[(&str, &str)]| pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        assert_eq!(back(&f(&[]), 3), "/status#machine-3");
        assert_eq!(back(&f(&[("group", "2"), ("date", "2026-01-05")]), 3), "/status?group=2&date=2026-01-05#machine-3");
        assert_eq!(back(&f(&[("group", "//evil"), ("date", "x")]), 3), "/status#machine-3");
    }
}
