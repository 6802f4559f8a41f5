//! The andon board: a full-screen, read-only board for a wall screen, one large tile per machine (its
//! activity in the code's colour, how long it has been in it, the job, the operator and today's OEE), for
//! one machine group or every machine.
//!
//! Signed-in people open it at `/dashboard?group=N` (or `group=all`), where each tile's OEE links to its
//! breakdown (`/explain`). A screen nobody signs in on opens `/board/{secret}`, a link an administrator made
//! for it (`/admin/boards`); the secret decides what it shows, and a revoked or unknown one is answered 404
//! (an open stream of a link that is revoked ends). Its OEE figures are plain text: the breakdown needs
//! sign-in, and the board leads nobody to a page they may not open. The board is drawn from the status
//! page's cards ([`crate::status::build`]) and follows the same stream of statuses
//! ([`crate::status::stream`]) with `/static/board.js`; without the script it shows the state as loaded, and
//! the script also reloads it every few minutes so that today's OEE moves on.
//!
//! The reference's group timeline stays too: `/create-dashboard` builds the address of
//! `/dashboard?machine_group=…&start=HH:MM&end=HH:MM`, which draws today's activities of the group's
//! machines between the two times as the graphs draw a timeline ([`crate::graphs::timeline`]).

use std::collections::{BTreeMap, HashMap};
use std::convert::Infallible;

use axum::Extension;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Duration, NaiveTime, TimeZone, Utc};
use futures_util::{Stream, StreamExt};
use oee_core::store::board::{BoardLink, board_link};
use oee_core::store::code::{ActivityCode, list_codes};
use oee_core::store::group::list_groups;
use oee_core::store::machine::{board_machines, machine_statuses};
use oee_core::store::report::graph_activities;
use serde::Serialize;

use crate::WebState;
use crate::access::{Access, Caller, Route};
use crate::operator::Asset;
use crate::page::{Choice, Message, Page};
use crate::status::Card;

const SCRIPT: Asset = Asset::new(include_str!("../assets/board.js"), "text/javascript; charset=utf-8");

/// The board's routes: the signed-in board and timeline, the secret links' board, stream and colours.
pub(crate) fn routes() -> Vec<Route> {
    use oee_core::access::Role::Viewer;
    vec![
        Route::get("/dashboard", Access::Role(Viewer), dashboard),
        Route::get("/create-dashboard", Access::Role(Viewer), create_dashboard),
        Route::get("/board/{secret}", Access::Public, link_board),
        Route::get("/board/{secret}/events", Access::Public, link_events),
        Route::get("/board/{secret}/codes.css", Access::Public, link_codes_css),
        Route::get("/static/board.js", Access::Public, |h: HeaderMap| async move { SCRIPT.respond(&h) }),
    ]
}

/// The board's context.
#[derive(Debug, Serialize)]
struct Board {
    heading: String,
    /// "Tue 14 May 2024".
    day: String,
    /// Where the page reloads itself from, its stream of statuses and its colours.
    reload: String,
    events: String,
    codes_css: String,
    highlight_after_minutes: u32,
    /// Whether each tile's OEE links to its breakdown (`/explain`): only on the signed-in board, since the
    /// breakdown needs sign-in and a screen shown through a link has nobody signed in.
    explain_links: bool,
    tiles: Vec<Card>,
}

/// What a board shows: every machine, or one group's.
async fn board(
    state: &WebState,
    group: Option<i32>,
    base: Paths,
) -> Result<Result<Board, (StatusCode, String)>, oee_core::Error> {
    let groups = list_groups(&state.pool).await?;
    let heading = match group {
        None => "All machines".to_string(),
        Some(g) => match groups.iter().find(|x| x.id == g) {
            Some(x) => x.name.clone(),
            None => {
                let text = format!("machine group {g} does not exist: choose a group from the list");
                return Ok(Err((StatusCode::NOT_FOUND, text)));
            }
        },
    };
    let mut q = HashMap::new();
    if let Some(g) = group {
        q.insert("group".to_string(), g.to_string());
    }
    let status = match crate::status::build(state, false, &q).await {
        Ok(Ok(s)) => s,
        Ok(Err(refused)) => return Ok(Err(refused)),
        Err(e) => return Err(oee_core::Error::Unavailable(e.to_string())),
    };
    let day = Utc::now().with_timezone(&state.tz).format("%a %d %b %Y").to_string();
    Ok(Ok(Board {
        explain_links: base.signed_in,
        heading,
        day,
        reload: base.reload,
        events: base.events,
        codes_css: base.codes_css,
        highlight_after_minutes: state.web.status_highlight_after_minutes,
        tiles: status.cards,
    }))
}

/// The addresses a board page uses, and whether its viewer is signed in (and so may follow links to the
/// pages behind sign-in).
struct Paths {
    reload: String,
    events: String,
    codes_css: String,
    signed_in: bool,
}

/// A page that only says what went wrong, with its status.
async fn message(
    state: &WebState,
    caller: Option<&Caller>,
    status: StatusCode,
    heading: &str,
    text: String,
) -> Response {
    let body = Message { heading: heading.into(), text };
    let page = Page::new(state, caller, heading, "dashboard", body).await;
    let mut r = state.pages.render("message", &page);
    *r.status_mut() = status;
    r
}

async fn render_board(state: &WebState, caller: Option<&Caller>, group: Option<i32>, paths: Paths) -> Response {
    match board(state, group, paths).await {
        Ok(Ok(body)) => {
            let title = body.heading.clone();
            let page = Page::new(state, caller, title, "dashboard", body).await;
            state.pages.render("board", &page)
        }
        Ok(Err((status, text))) => message(state, caller, status, "Andon board", text).await,
        Err(e) => {
            tracing::warn!("andon board: {e}");
            let text = format!("{e}: the board tries again when reloaded");
            message(state, caller, StatusCode::SERVICE_UNAVAILABLE, "Andon board", text).await
        }
    }
}

/// `GET /dashboard?group=N|all`: the andon board; `?machine_group=…&start=HH:MM&end=HH:MM`: the reference's
/// group timeline. Neither: 400 as the reference answered (contract C55).
async fn dashboard(
    State(state): State<WebState>,
    Extension(caller): Extension<Caller>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    if let Some(g) = q.get("group").map(|g| g.trim()) {
        let group = match g {
            "" | "all" => None,
            g => match g.parse::<i32>().ok().filter(|g| *g > 0) {
                Some(g) => Some(g),
                None => {
                    let text = format!(
                        "`group` must be a machine group's number or `all`, not `{}`",
                        oee_core::verdict::echo(g)
                    );
                    return message(&state, Some(&caller), StatusCode::BAD_REQUEST, "Andon board", text).await;
                }
            },
        };
        let query = group.map_or_else(|| "all".to_string(), |g| g.to_string());
        let paths = Paths {
            reload: format!("/dashboard?group={query}"),
            events: "/status/events".into(),
            codes_css: "/status/codes.css".into(),
            signed_in: true,
        };
        return render_board(&state, Some(&caller), group, paths).await;
    }
    timeline(&state, &caller, &q).await
}

/// The live board link whose secret is in the path, or the 404 page that says it is not (any more).
async fn live_link(state: &WebState, secret: &str) -> Result<BoardLink, Response> {
    match board_link(&state.pool, secret).await {
        Ok(Some(link)) => Ok(link),
        Ok(None) => Err(message(
            state,
            None,
            StatusCode::NOT_FOUND,
            "No such board",
            "This board link is unknown or was revoked: ask an administrator for a new one (Admin, Andon boards)."
                .into(),
        )
        .await),
        Err(e) => {
            tracing::warn!("board link: {e}");
            let text = format!("{e}: the board tries again when reloaded");
            Err(message(state, None, StatusCode::SERVICE_UNAVAILABLE, "Andon board", text).await)
        }
    }
}

/// `GET /board/{secret}`: the board a link shows, to anyone who has the link.
async fn link_board(State(state): State<WebState>, Path(secret): Path<String>) -> Response {
    let link = match live_link(&state, &secret).await {
        Ok(l) => l,
        Err(r) => return r,
    };
    let paths = Paths {
        reload: format!("/board/{secret}"),
        events: format!("/board/{secret}/events"),
        codes_css: format!("/board/{secret}/codes.css"),
        signed_in: false,
    };
    render_board(&state, None, link.group_id, paths).await
}

/// `GET /board/{secret}/events`: the statuses of the link's machines, as `/status/events` sends them.
async fn link_events(
    State(state): State<WebState>,
    Path(secret): Path<String>,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, Response> {
    let link = live_link(&state, &secret).await?;
    let ids = match board_machines(&state.pool, link.group_id).await {
        Ok(machines) => machines.into_iter().map(|m| m.machine_id).collect(),
        Err(e) => {
            tracing::warn!("board stream: {e}");
            return Err((StatusCode::SERVICE_UNAVAILABLE, format!("{e}: try again in a moment")).into_response());
        }
    };
    let statuses = crate::status::stream(state.clone(), Some(ids)).await;
    // A revoked link's open stream ends too, with a last `reload`: the screen reads its page again, which
    // now says the link was revoked.
    let revoked = async move {
        loop {
            tokio::time::sleep(REVOCATION_CHECK).await;
            match board_link(&state.pool, &secret).await {
                Ok(Some(_)) => {}
                Ok(None) => break,
                Err(e) => tracing::warn!("board stream: {e}"),
            }
        }
    };
    let last = futures_util::stream::once(async { Ok(crate::status::reload_event()) });
    Ok(Sse::new(statuses.take_until(revoked).chain(last)).keep_alive(KeepAlive::default()))
}

/// How often an open board stream checks that its link is still live.
const REVOCATION_CHECK: std::time::Duration = std::time::Duration::from_secs(5);

/// `GET /board/{secret}/codes.css`: the codes' colours, for a board shown through a link.
async fn link_codes_css(State(state): State<WebState>, Path(secret): Path<String>) -> Response {
    match live_link(&state, &secret).await {
        Ok(_) => crate::status::codes_css(State(state)).await,
        Err(r) => r,
    }
}

/// The context of `/create-dashboard`: the boards to open and the timeline's form.
#[derive(Debug, Serialize)]
struct CreateDashboard {
    groups: Vec<Choice>,
    start: &'static str,
    end: &'static str,
}

/// `GET /create-dashboard`: links to each group's board, and the form that builds a timeline's address.
async fn create_dashboard(State(state): State<WebState>, Extension(caller): Extension<Caller>) -> Response {
    let groups = match list_groups(&state.pool).await {
        Ok(g) => g,
        Err(e) => {
            tracing::warn!("dashboard form: {e}");
            let text = format!("{e}: try again in a moment");
            return message(&state, Some(&caller), StatusCode::SERVICE_UNAVAILABLE, "Dashboard", text).await;
        }
    };
    let groups =
        groups.into_iter().map(|g| Choice { value: g.id.to_string(), label: g.name, selected: false }).collect();
    let body = CreateDashboard { groups, start: "09:00", end: "17:00" };
    let page = Page::new(&state, Some(&caller), "Dashboard", "dashboard", body).await;
    state.pages.render("create_dashboard", &page)
}

/// The timeline's context: the group's machines between the two times, and what each is doing now.
#[derive(Debug, Serialize)]
struct Timeline {
    group: String,
    start: String,
    end: String,
    reload: String,
    /// The state timeline, one row per machine, SVG markup (as the graphs draw it).
    svg: String,
    rows: Vec<TimelineRow>,
}

/// One machine: who and what it is doing now.
#[derive(Debug, Serialize)]
struct TimelineRow {
    name: String,
    user: String,
    job: String,
    code: String,
}

/// `HH:MM` of today, or `None`.
fn clock_time(s: &str) -> Option<NaiveTime> {
    NaiveTime::parse_from_str(s.trim(), "%H:%M").ok()
}

/// The reference's `/dashboard?machine_group=<id or name>&start=HH:MM&end=HH:MM`: today's activities of
/// the group's machines from `start` to `end` (an end at or before the start is tomorrow's).
async fn timeline(state: &WebState, caller: &Caller, q: &HashMap<String, String>) -> Response {
    let bad = |text: String| message(state, Some(caller), StatusCode::BAD_REQUEST, "Dashboard", text);
    let Some(wanted) = q.get("machine_group").map(|g| g.trim()).filter(|g| !g.is_empty()) else {
        return bad("No machine_group provided in url".into()).await;
    };
    let groups = match list_groups(&state.pool).await {
        Ok(g) => g,
        Err(e) => {
            tracing::warn!("dashboard timeline: {e}");
            let text = format!("{e}: try again in a moment");
            return message(state, Some(caller), StatusCode::SERVICE_UNAVAILABLE, "Dashboard", text).await;
        }
    };
    let found = match wanted.parse::<i32>() {
        Ok(id) => groups.iter().find(|g| g.id == id),
        Err(_) => groups.iter().find(|g| g.name == wanted),
    };
    let Some(group) = found else {
        return bad("Could not find that machine group".into()).await;
    };
    let mut times = Vec::new();
    for (key, default) in [("start", "00:00"), ("end", "00:00")] {
        let raw = q.get(key).map(|v| v.trim()).filter(|v| !v.is_empty()).unwrap_or(default);
        match clock_time(raw) {
            Some(t) => times.push(t),
            None => {
                let text = format!(
                    "`{key}` must be a time of day as HH:MM, like 09:00, not `{}`",
                    oee_core::verdict::echo(raw)
                );
                return bad(text).await;
            }
        }
    }
    let (start_t, end_t) = (times[0], times[1]);
    let tz = state.tz;
    let now = Utc::now();
    let today = now.with_timezone(&tz).date_naive();
    let local = |d: chrono::NaiveDate, t: NaiveTime| -> DateTime<Utc> {
        tz.from_local_datetime(&d.and_time(t))
            .earliest()
            .map_or_else(|| d.and_time(t).and_utc(), |l| l.with_timezone(&Utc))
    };
    let start = local(today, start_t);
    let end = if end_t <= start_t { local(today + Duration::days(1), end_t) } else { local(today, end_t) };
    match timeline_rows(state, group.id, start, end, now).await {
        Ok((rows, svg)) => {
            let body = Timeline {
                group: group.name.clone(),
                start: start_t.format("%H:%M").to_string(),
                end: end_t.format("%H:%M").to_string(),
                reload: format!(
                    "/dashboard?machine_group={}&start={}&end={}",
                    group.id,
                    start_t.format("%H:%M"),
                    end_t.format("%H:%M")
                ),
                svg,
                rows,
            };
            let page = Page::new(state, Some(caller), format!("Dashboard {}", group.name), "dashboard", body).await;
            state.pages.render("timeline", &page)
        }
        Err(e) => {
            tracing::warn!("dashboard timeline: {e}");
            let text = format!("{e}: try again in a moment");
            message(state, Some(caller), StatusCode::SERVICE_UNAVAILABLE, "Dashboard", text).await
        }
    }
}

/// The group's machines now, and the timeline of their activities in [start, end).
async fn timeline_rows(
    state: &WebState,
    group: i32,
    start: DateTime<Utc>,
    end: DateTime<Utc>,
    now: DateTime<Utc>,
) -> Result<(Vec<TimelineRow>, String), oee_core::Error> {
    let machines = board_machines(&state.pool, Some(group)).await?;
    let ids: Vec<i32> = machines.iter().map(|m| m.machine_id).collect();
    let statuses = machine_statuses(&state.pool, Some(&ids)).await?;
    let mut rows = Vec::new();
    let mut shown = Vec::new();
    let mut names = BTreeMap::new();
    for m in &machines {
        let Some(s) = statuses.iter().find(|s| s.machine_id == m.machine_id) else { continue };
        shown.push(m.machine_id);
        names.insert(m.machine_id, s.machine_name.clone());
        rows.push(TimelineRow {
            name: s.machine_name.clone(),
            user: m.user_name.clone().unwrap_or_else(|| "No user".into()),
            job: s.job_number.clone().unwrap_or_else(|| "No job".into()),
            code: s.activity_code.clone(),
        });
    }
    let codes = list_codes(&state.pool).await?;
    let code_of: HashMap<i32, &ActivityCode> = codes.iter().map(|c| (c.id, c)).collect();
    let acts = graph_activities(&state.pool, &shown, start, end).await?;
    let svg = crate::graphs::timeline(state, &shown, &names, &code_of, &acts, start, end, now);
    Ok((rows, svg))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timeline_times_are_hours_and_minutes() {
        assert_eq!(clock_time("09:00"), NaiveTime::from_hms_opt(9, 0, 0));
        assert_eq!(clock_time(" 17:30 "), NaiveTime::from_hms_opt(17, 30, 0));
        for bad in ["9", "25:00", "09:00:00x", ""] {
            assert_eq!(clock_time(bad), None, "{bad}");
        }
    }
}
