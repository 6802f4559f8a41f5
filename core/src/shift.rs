//! Shift calendar: which schedule state a shift pattern gives at an instant, in the plant's time zone.

use chrono::{DateTime, Datelike, Duration, NaiveTime, Timelike, Utc};
use chrono_tz::Tz;
use serde::{Deserialize, Serialize};

use crate::activity::ScheduleState;
use crate::error::Error;

/// One period of a shift pattern: from `start_minute` on `day` the schedule is `state`, until the next
/// period begins (possibly on a later day).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Period {
    /// 0 = Monday … 6 = Sunday.
    pub day: u8,
    /// Minutes after local midnight, 0..1440.
    pub start_minute: u16,
    pub state: ScheduleState,
}

/// The periods of a standard day: closed from midnight, open from `start` to `end` (reference §2).
pub fn standard_day(day: u8, start_minute: u16, end_minute: u16) -> [Period; 3] {
    [
        Period { day, start_minute: 0, state: ScheduleState::OutOfShift },
        Period { day, start_minute, state: ScheduleState::InShift },
        Period { day, start_minute: end_minute, state: ScheduleState::OutOfShift },
    ]
}

/// The schedule state in force at `at`: the latest period starting at or before the local time, looking
/// back across earlier days (a day with no periods inherits the previous day's last state). A pattern
/// with no periods at all is out of shift.
pub fn schedule_at(periods: &[Period], tz: Tz, at: DateTime<Utc>) -> ScheduleState {
    let local = at.with_timezone(&tz);
    let today = local.weekday().num_days_from_monday() as u8;
    let minute = (local.hour() * 60 + local.minute()) as u16;
    for back in 0..8u8 {
        let day = (today + 7 - back % 7) % 7;
        let latest = periods
            .iter()
            .filter(|p| p.day == day && (back > 0 || p.start_minute <= minute))
            .max_by_key(|p| p.start_minute);
        if let Some(p) = latest {
            return p.state;
        }
    }
    ScheduleState::OutOfShift
}

/// A moment at which a shift pattern's period begins: from `at` the schedule is `state`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Transition {
    pub at: DateTime<Utc>,
    pub state: ScheduleState,
}

/// Every period start of `periods` in (`after`, `until`], in time order, as instants in the plant's time
/// zone `tz`. A local start time that does not exist (the hour skipped when clocks go forward) begins at
/// the first local minute after it that does; one that occurs twice (clocks go back) begins the first
/// time. Every period start is a transition, including one that repeats the state in force (a `0000`
/// period after an evening one is still a shift end, as in the reference).
pub fn transitions(periods: &[Period], tz: Tz, after: DateTime<Utc>, until: DateTime<Utc>) -> Vec<Transition> {
    let mut out = Vec::new();
    if until <= after || periods.is_empty() {
        return out;
    }
    // Local dates from the day before `after` to the day after `until` cover every offset.
    let first = after.with_timezone(&tz).date_naive() - Duration::days(1);
    let last = until.with_timezone(&tz).date_naive() + Duration::days(1);
    let mut sorted: Vec<Period> = periods.to_vec();
    sorted.sort_by_key(|p| (p.day, p.start_minute));
    let mut date = first;
    while date <= last {
        let weekday = date.weekday().num_days_from_monday() as u8;
        for p in sorted.iter().filter(|p| p.day == weekday) {
            let Some(at) = local_instant(tz, date, p.start_minute) else { continue };
            if at > after && at <= until {
                out.push(Transition { at, state: p.state });
            }
        }
        date += Duration::days(1);
    }
    // Sorting by instant keeps the pattern's order for starts that fall on the same instant.
    out.sort_by_key(|t| t.at);
    out
}

/// One version of a shift pattern: its periods, in force from `from` until the next version's `from`. An
/// edit of a pattern makes a new version, so the past keeps the periods it had.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Version {
    /// When it took effect; `None` for a first version, which holds for all time before the next one.
    pub from: Option<DateTime<Utc>>,
    pub periods: Vec<Period>,
}

impl Version {
    /// A pattern that never changed: `periods` for all time.
    pub fn always(periods: Vec<Period>) -> Vec<Version> {
        vec![Version { from: None, periods }]
    }
}

/// The version in force at `at` among `versions` (in the order they took effect); none before the first.
pub fn version_at(versions: &[Version], at: DateTime<Utc>) -> Option<&Version> {
    versions.iter().rev().find(|v| v.from.is_none_or(|f| f <= at))
}

/// The schedule state at `at` by the version in force then (out of shift before the first version).
pub fn schedule_over(versions: &[Version], tz: Tz, at: DateTime<Utc>) -> ScheduleState {
    version_at(versions, at).map_or(ScheduleState::OutOfShift, |v| schedule_at(&v.periods, tz, at))
}

/// Every transition in (`after`, `until`] of a pattern over time: the period starts of each version while it
/// is in force (see [`transitions`]), and, where a version takes over and gives another state than the one
/// before it, a transition to that state at the instant it took effect. A version that begins in the
/// state already in force changes nothing there, so a running shift or job is not disturbed by an edit.
pub fn transitions_over(versions: &[Version], tz: Tz, after: DateTime<Utc>, until: DateTime<Utc>) -> Vec<Transition> {
    let mut out = Vec::new();
    if until <= after {
        return out;
    }
    let just_before = |t: DateTime<Utc>| t - Duration::nanoseconds(1);
    for (i, v) in versions.iter().enumerate() {
        let end = versions.get(i + 1).and_then(|n| n.from);
        if end.is_some_and(|e| e <= after) {
            continue;
        }
        if v.from.is_some_and(|f| f > until) {
            break;
        }
        // transitions() takes (lo, hi]: starts at or after `from`, and before the next version's
        let lo = v.from.map_or(after, |f| after.max(just_before(f)));
        let hi = end.map_or(until, |e| until.min(just_before(e)));
        let own = transitions(&v.periods, tz, lo, hi);
        if let Some(f) = v.from.filter(|f| *f > after)
            && own.first().is_none_or(|t| t.at != f)
        {
            let before = match i {
                0 => ScheduleState::OutOfShift,
                _ => schedule_at(&versions[i - 1].periods, tz, just_before(f)),
            };
            let state = schedule_at(&v.periods, tz, f);
            if state != before {
                out.push(Transition { at: f, state });
            }
        }
        out.extend(own.into_iter().filter(|t| v.from.is_none_or(|f| t.at >= f) && end.is_none_or(|e| t.at < e)));
    }
    out
}

/// From when (`None`: since always) a machine followed which pattern (`None`: none, out of shift).
pub type Assignment = (Option<DateTime<Utc>>, Option<i32>);

/// The versions of the pattern a machine followed: `assignments` in the order they took effect, `patterns`
/// the versions of each pattern. Each stretch takes the version in force when the machine took the pattern
/// up, then the pattern's later versions until the machine left it.
pub fn followed(assignments: &[Assignment], patterns: &std::collections::HashMap<i32, Vec<Version>>) -> Vec<Version> {
    let mut out = Vec::new();
    for (i, &(from, shift)) in assignments.iter().enumerate() {
        let until = assignments.get(i + 1).and_then(|a| a.0);
        let versions = shift.and_then(|s| patterns.get(&s)).map_or(&[][..], Vec::as_slice);
        let first = match from {
            Some(f) => version_at(versions, f),
            None => versions.first().filter(|v| v.from.is_none()),
        };
        out.push(Version { from, periods: first.map(|v| v.periods.clone()).unwrap_or_default() });
        out.extend(
            versions
                .iter()
                .filter(|v| v.from.is_some_and(|f| from.is_none_or(|s| f > s) && until.is_none_or(|u| f < u)))
                .cloned(),
        );
    }
    out
}

/// The instant of local `minute` on `date`, moved past a DST gap when it falls inside one.
fn local_instant(tz: Tz, date: chrono::NaiveDate, minute: u16) -> Option<DateTime<Utc>> {
    let start = date.and_hms_opt(0, 0, 0)? + Duration::minutes(minute as i64);
    (0..180).find_map(|m| {
        let naive = start + Duration::minutes(m);
        naive.and_local_timezone(tz).earliest().map(|t| t.with_timezone(&Utc))
    })
}

/// Resolves the plant's time zone: an IANA name, or empty for the machine's own zone (`TZ`,
/// `/etc/timezone`, the `/etc/localtime` link), falling back to UTC.
pub fn resolve_timezone(name: &str) -> Result<Tz, Error> {
    let name = name.trim();
    if !name.is_empty() {
        return name.parse::<Tz>().map_err(|_| {
            Error::ConfigParse(format!("plant.timezone `{name}` is not an IANA time zone name (like Europe/London)"))
        });
    }
    Ok(system_timezone().unwrap_or(Tz::UTC))
}

fn system_timezone() -> Option<Tz> {
    if let Ok(tz) = std::env::var("TZ")
        && let Ok(z) = tz.trim_start_matches(':').parse::<Tz>()
    {
        return Some(z);
    }
    if let Ok(text) = std::fs::read_to_string("/etc/timezone")
        && let Ok(z) = text.trim().parse::<Tz>()
    {
        return Some(z);
    }
    let link = std::fs::read_link("/etc/localtime").ok()?;
    let link = link.to_string_lossy();
    let name = link.split("zoneinfo/").nth(1)?;
    name.parse::<Tz>().ok()
}

/// Parses a reference-style `HHMM` period start.
pub fn parse_hhmm(s: &str) -> Option<u16> {
    let t = NaiveTime::parse_from_str(s, "%H%M").ok()?;
    Some((t.hour() * 60 + t.minute()) as u16)
}

/// Day names as `shift set` and `shift list` write them, Monday first.
pub const DAY_NAMES: [&str; 7] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];

/// Parses the days of a `shift set`: a day name (`mon` … `sun`), `weekdays`, `weekend`, `all`, or a
/// comma-separated list of these. Days as 0 = Monday … 6, sorted, without repeats.
pub fn parse_days(text: &str) -> Result<Vec<u8>, Error> {
    let mut days = Vec::new();
    for part in text.split(',').map(|p| p.trim().to_ascii_lowercase()) {
        match part.as_str() {
            "all" => days.extend(0..7),
            "weekdays" => days.extend(0..5),
            "weekend" => days.extend(5..7),
            name => match DAY_NAMES.iter().position(|d| *d == name) {
                Some(d) => days.push(d as u8),
                None => {
                    return Err(Error::Invalid(format!(
                        "`{part}` is not a day: use mon, tue, wed, thu, fri, sat, sun, weekdays, weekend or all \
                         (several separated by commas)"
                    )));
                }
            },
        }
    }
    days.sort_unstable();
    days.dedup();
    Ok(days)
}

/// Parses the hours of one day of a `shift set`: `HHMM-HHMM` (in shift from the start until the end, out
/// of shift from midnight until the start and after the end; the end may be `2400`), or `off` for a day
/// with no periods (it keeps the state the previous day ended in, as the reference's "No Shifts" day
/// does). A shift across midnight is two days: `2200-2400` on one, `0000-0600` on the next.
pub fn parse_day_hours(day: u8, text: &str) -> Result<Vec<Period>, Error> {
    let text = text.trim();
    if text.eq_ignore_ascii_case("off") {
        return Ok(Vec::new());
    }
    let bad = |why: &str| {
        Error::Invalid(format!(
            "`{text}` {why}: write the shift's hours as HHMM-HHMM (like 0900-1700, or 2200-2400 and 0000-0600 on \
             the next day for a night shift), or `off` for a day without shifts"
        ))
    };
    let (start, end) = text.split_once('-').ok_or_else(|| bad("has no `-` between start and end"))?;
    let start = parse_hhmm(start.trim()).ok_or_else(|| bad("does not start with a time HHMM"))?;
    let end = match end.trim() {
        "2400" => 1440,
        e => parse_hhmm(e).ok_or_else(|| bad("does not end with a time HHMM (or 2400)"))?,
    };
    if end <= start {
        return Err(bad("ends before it starts"));
    }
    let mut periods = Vec::new();
    if start > 0 {
        periods.push(Period { day, start_minute: 0, state: ScheduleState::OutOfShift });
    }
    periods.push(Period { day, start_minute: start, state: ScheduleState::InShift });
    if end < 1440 {
        periods.push(Period { day, start_minute: end, state: ScheduleState::OutOfShift });
    }
    Ok(periods)
}

/// One day of a pattern for people: its in-shift hours (`0900-1700`, several separated by commas, `2400`
/// when the shift runs into the next day), `closed` when it has periods but none in shift, `off` when it
/// has none.
pub fn describe_day(periods: &[Period], day: u8) -> String {
    let mut own: Vec<&Period> = periods.iter().filter(|p| p.day == day).collect();
    if own.is_empty() {
        return "off".into();
    }
    own.sort_by_key(|p| p.start_minute);
    let hhmm = |m: u16| format!("{:02}{:02}", m / 60, m % 60);
    let mut ranges = Vec::new();
    let mut open: Option<u16> = None;
    for p in own {
        match (p.state, open) {
            (ScheduleState::InShift, None) => open = Some(p.start_minute),
            (ScheduleState::OutOfShift, Some(s)) => {
                ranges.push(format!("{}-{}", hhmm(s), hhmm(p.start_minute)));
                open = None;
            }
            _ => {}
        }
    }
    if let Some(s) = open {
        ranges.push(format!("{}-2400", hhmm(s)));
    }
    if ranges.is_empty() { "closed".into() } else { ranges.join(",") }
}

/// Most shifts one day of a [`Week`] may have.
pub const MAX_SHIFTS_PER_DAY: usize = 6;

const DAY_MINUTES: u32 = 24 * 60;
const WEEK_MINUTES: u32 = 7 * DAY_MINUTES;

/// A shift pattern as a week editor shows it: the shifts of each day, Monday first. A day without shifts is
/// out of shift (once an overnight shift from the day before has ended), and keeps no periods of its own, as
/// the reference's "No Shifts" day.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Week {
    /// Seven days, Monday first: each day's shifts (at most six), an empty list for a day without shifts.
    #[schema(min_items = 7, max_items = 7)]
    pub days: [Vec<WeekShift>; 7],
}

/// One shift of a [`Week`] day, as typed: local times `HH:MM`, the end `24:00` for midnight. An overnight
/// shift ends on the next day, at or before the time it started.
///
/// A refusal names the input as `<day>.<n>.start` or `<day>.<n>.end` (`mon.0.end`: the end of Monday's
/// first shift), or `<day>` for the day as a whole.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct WeekShift {
    pub start: String,
    pub end: String,
    #[serde(default)]
    pub overnight: bool,
}

impl WeekShift {
    /// A shift from `start` to `end` (`HH:MM`), overnight or not.
    pub fn new(start: &str, end: &str, overnight: bool) -> WeekShift {
        WeekShift { start: start.into(), end: end.into(), overnight }
    }
}

macro_rules! shift_fields {
    ($day:literal) => {
        [
            [concat!($day, ".0.start"), concat!($day, ".0.end")],
            [concat!($day, ".1.start"), concat!($day, ".1.end")],
            [concat!($day, ".2.start"), concat!($day, ".2.end")],
            [concat!($day, ".3.start"), concat!($day, ".3.end")],
            [concat!($day, ".4.start"), concat!($day, ".4.end")],
            [concat!($day, ".5.start"), concat!($day, ".5.end")],
        ]
    };
}

/// The names of each shift's inputs (start, end), by day and shift.
const SHIFT_FIELDS: [[[&str; 2]; MAX_SHIFTS_PER_DAY]; 7] = [
    shift_fields!("mon"),
    shift_fields!("tue"),
    shift_fields!("wed"),
    shift_fields!("thu"),
    shift_fields!("fri"),
    shift_fields!("sat"),
    shift_fields!("sun"),
];

/// A shift of a week in minutes from Monday 00:00 (the end may run past Sunday midnight into Monday).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Span {
    start: u32,
    end: u32,
}

/// `HH:MM` (or `H:MM`) as minutes after midnight; `24:00` only when `midnight` allows it.
fn parse_clock(text: &str, midnight: bool) -> Option<u16> {
    let (h, m) = text.trim().split_once(':')?;
    if h.is_empty() || h.len() > 2 || m.len() != 2 || !(h.chars().chain(m.chars()).all(|c| c.is_ascii_digit())) {
        return None;
    }
    let (h, m): (u16, u16) = (h.parse().ok()?, m.parse().ok()?);
    match (h, m) {
        (24, 0) if midnight => Some(1440),
        (0..=23, 0..=59) => Some(h * 60 + m),
        _ => None,
    }
}

/// Minutes after midnight as `HH:MM` (`24:00` for 1440).
pub fn clock(minute: u16) -> String {
    format!("{:02}:{:02}", minute / 60, minute % 60)
}

/// A minute of the week as `mon 06:00`; an `end` at midnight is `24:00` of the day before.
fn day_clock(week_minute: u32, end: bool) -> String {
    let (day, minute) = match (week_minute / DAY_MINUTES, week_minute % DAY_MINUTES) {
        (d, 0) if end && d > 0 => (d - 1, DAY_MINUTES),
        (d, m) => (d, m),
    };
    format!("{} {}", DAY_NAMES[(day % 7) as usize], clock(minute as u16))
}

impl Week {
    /// The shifts checked and placed in the week, in the order they start.
    fn spans(&self) -> Result<Vec<(Span, &'static str)>, crate::error::Error> {
        use crate::error::Error;
        let mut spans = Vec::new();
        for (d, shifts) in self.days.iter().enumerate() {
            if shifts.len() > MAX_SHIFTS_PER_DAY {
                return Err(Error::field(
                    DAY_NAMES[d],
                    format!("{} shifts on one day: at most {MAX_SHIFTS_PER_DAY} are allowed", shifts.len()),
                ));
            }
            for (i, s) in shifts.iter().enumerate() {
                let [start_field, end_field] = SHIFT_FIELDS[d][i];
                let start = parse_clock(&s.start, false).ok_or_else(|| {
                    Error::field(
                        start_field,
                        format!("`{}` is not a time: write it as HH:MM, like 06:00", s.start.trim()),
                    )
                })?;
                let end = parse_clock(&s.end, !s.overnight).ok_or_else(|| {
                    Error::field(
                        end_field,
                        format!("`{}` is not a time: write it as HH:MM, like 14:00 (24:00 for midnight)", s.end.trim()),
                    )
                })?;
                let length = match s.overnight {
                    false if end <= start => {
                        return Err(Error::field(
                            end_field,
                            format!(
                                "the shift ends ({}) before it starts ({}): make the end later, or mark the shift \
                                 overnight if it runs into the next day",
                                clock(end),
                                clock(start)
                            ),
                        ));
                    }
                    false => end - start,
                    true if end > start => {
                        return Err(Error::field(
                            end_field,
                            format!(
                                "an overnight shift ends on the next day no later than it started ({}), not at {}: \
                                 make the end earlier, or untick overnight for a shift within one day",
                                clock(start),
                                clock(end)
                            ),
                        ));
                    }
                    true => 1440 - start + end,
                };
                let at = d as u32 * DAY_MINUTES + u32::from(start);
                spans.push((Span { start: at, end: at + u32::from(length) }, start_field));
            }
        }
        spans.sort_by_key(|(s, _)| s.start);
        // Sorted by start, a shift overlaps an earlier one when it starts before the latest end so far. A
        // shift running past Sunday midnight goes on into Monday, so the check begins with it.
        let week = i64::from(WEEK_MINUTES);
        let mut latest: Option<(i64, Span)> = spans
            .iter()
            .filter(|(s, _)| s.end > WEEK_MINUTES)
            .map(|(s, _)| (i64::from(s.end) - week, *s))
            .max_by_key(|(end, _)| *end);
        for (span, field) in &spans {
            if let Some((end, other)) = latest
                && i64::from(span.start) < end
            {
                return Err(Error::field(
                    field,
                    format!(
                        "this shift starts ({}) before the shift from {} to {} has ended: shifts may not overlap; \
                         start it later or end the other one earlier",
                        day_clock(span.start, false),
                        day_clock(other.start, false),
                        day_clock(other.end, true)
                    ),
                ));
            }
            if latest.is_none_or(|(end, _)| i64::from(span.end) > end) {
                latest = Some((i64::from(span.end), *span));
            }
        }
        Ok(spans)
    }

    /// The periods this week gives, after checking it (times, ends after starts, no overlaps, at most
    /// [`MAX_SHIFTS_PER_DAY`] shifts a day): the state turns in shift at each shift's start and out of shift at
    /// its end (unless another shift starts there), and a day with shifts of its own is out of shift from
    /// midnight unless a shift runs over it, as a standard day of the reference is.
    pub fn periods(&self) -> Result<Vec<Period>, crate::error::Error> {
        let spans = self.spans()?;
        let mut at: std::collections::BTreeMap<(u8, u16), ScheduleState> = std::collections::BTreeMap::new();
        let place = |minute: u32| (((minute / DAY_MINUTES) % 7) as u8, (minute % DAY_MINUTES) as u16);
        for (s, _) in &spans {
            at.insert(place(s.start), ScheduleState::InShift);
        }
        for (s, _) in &spans {
            at.entry(place(s.end)).or_insert(ScheduleState::OutOfShift);
        }
        let covered = |minute: u32| {
            spans.iter().any(|(s, _)| {
                (s.start <= minute && minute < s.end) || (s.end > WEEK_MINUTES && minute + WEEK_MINUTES < s.end)
            })
        };
        for (d, shifts) in self.days.iter().enumerate() {
            if !shifts.is_empty() && !covered(d as u32 * DAY_MINUTES) {
                at.entry((d as u8, 0)).or_insert(ScheduleState::OutOfShift);
            }
        }
        Ok(at.into_iter().map(|((day, start_minute), state)| Period { day, start_minute, state }).collect())
    }

    /// The week an editor shows for `periods`. Each in-shift stretch (from a period that turns the state in
    /// shift to the next period) becomes a shift of the day it starts on: overnight when it ends on the next
    /// day no later than it started, ending `24:00` when it ends at midnight. A stretch longer than that is
    /// shown cut at each midnight, and saving the week keeps the cuts.
    pub fn of(periods: &[Period]) -> Week {
        let mut week = Week::default();
        for (start, length) in in_shift_stretches(periods) {
            let (day, minute) = ((start / DAY_MINUTES) as usize, start % DAY_MINUTES);
            if minute + length <= DAY_MINUTES {
                week.days[day].push(WeekShift::new(&clock(minute as u16), &clock((minute + length) as u16), false));
                continue;
            }
            if length <= DAY_MINUTES {
                let end = minute + length - DAY_MINUTES;
                week.days[day].push(WeekShift::new(&clock(minute as u16), &clock(end as u16), true));
                continue;
            }
            for (d, from, to) in cut_at_midnights(start, length) {
                week.days[d].push(WeekShift { start: clock(from), end: clock(to), overnight: false });
            }
        }
        for day in &mut week.days {
            day.sort_by_key(|s| parse_clock(&s.start, false));
        }
        week
    }

    /// The week as a page draws it (see [`preview`]), after checking it as [`Week::periods`] does.
    pub fn preview(&self) -> Result<Vec<DayPreview>, crate::error::Error> {
        Ok(preview(&self.periods()?))
    }
}

/// Each in-shift stretch of a pattern as (start, length) in minutes from Monday 00:00: from a period that
/// turns the state in shift to the next period of the week, whatever its state (two shifts back to back are
/// two stretches). The week wraps around, as [`schedule_at`] looks back across days.
fn in_shift_stretches(periods: &[Period]) -> Vec<(u32, u32)> {
    let mut sorted: Vec<(u32, ScheduleState)> =
        periods.iter().map(|p| (u32::from(p.day) * DAY_MINUTES + u32::from(p.start_minute), p.state)).collect();
    sorted.sort_by_key(|p| p.0);
    sorted.dedup_by_key(|p| p.0);
    let n = sorted.len();
    (0..n)
        .filter(|&i| sorted[i].1 == ScheduleState::InShift)
        .map(|i| {
            let (start, next) = (sorted[i].0, sorted[(i + 1) % n].0);
            let length = (next + WEEK_MINUTES - start) % WEEK_MINUTES;
            (start, if length == 0 { WEEK_MINUTES } else { length })
        })
        .collect()
}

/// A stretch cut at each midnight, as (day, start, end) local minutes (end up to 1440).
fn cut_at_midnights(start: u32, length: u32) -> Vec<(usize, u16, u16)> {
    let mut out = Vec::new();
    let (mut at, end) = (start, start + length);
    while at < end {
        let midnight = (at / DAY_MINUTES + 1) * DAY_MINUTES;
        let to = end.min(midnight);
        let day = ((at / DAY_MINUTES) % 7) as usize;
        out.push((day, (at % DAY_MINUTES) as u16, (to - (at / DAY_MINUTES) * DAY_MINUTES) as u16));
        at = to;
    }
    out
}

/// One day of a week's preview.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct DayPreview {
    /// 0 = Monday … 6 = Sunday.
    pub day: u8,
    /// `mon` … `sun`.
    pub name: &'static str,
    /// The day's in-shift intervals in the order they start.
    pub intervals: Vec<PreviewInterval>,
}

/// An in-shift interval of one day, in local time: an overnight shift appears as two, the first ending at
/// `24:00` and the second starting at `00:00` on the next day.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct PreviewInterval {
    /// Minutes after local midnight, 0..1440.
    pub start_minute: u16,
    /// Minutes after local midnight, up to 1440.
    pub end_minute: u16,
    /// `HH:MM`.
    pub start: String,
    /// `HH:MM`, `24:00` for midnight.
    pub end: String,
    /// The shift began on the day before.
    pub from_previous_day: bool,
    /// The shift goes on into the next day.
    pub into_next_day: bool,
}

/// What a pattern's week looks like: for each day, Monday first, the intervals it is in shift, overnight
/// shifts split at midnight. Pure, for a page to draw; it follows the periods as the scheduler does, so a
/// day without periods carries on the state the day before ended in.
pub fn preview(periods: &[Period]) -> Vec<DayPreview> {
    let mut days: Vec<DayPreview> =
        (0..7u8).map(|day| DayPreview { day, name: DAY_NAMES[day as usize], intervals: Vec::new() }).collect();
    for (start, length) in in_shift_stretches(periods) {
        let pieces = cut_at_midnights(start, length);
        let last = pieces.len() - 1;
        for (i, (d, from, to)) in pieces.into_iter().enumerate() {
            days[d].intervals.push(PreviewInterval {
                start_minute: from,
                end_minute: to,
                start: clock(from),
                end: clock(to),
                from_previous_day: i > 0,
                into_next_day: i < last,
            });
        }
    }
    for d in &mut days {
        d.intervals.sort_by_key(|i| i.start_minute);
    }
    days
}

/// The plant day `date` as [local midnight, next local midnight) in UTC (23 or 25 hours across DST).
pub fn local_date_bounds(tz: Tz, date: chrono::NaiveDate) -> (DateTime<Utc>, DateTime<Utc>) {
    let start_of = |d: chrono::NaiveDate| {
        let noon = d.and_hms_opt(12, 0, 0).and_then(|n| n.and_local_timezone(tz).earliest());
        noon.map(|n| local_day_start(tz, n.with_timezone(&Utc)))
    };
    let next = date.succ_opt().unwrap_or(date);
    let start = start_of(date).unwrap_or_else(|| date.and_hms_opt(0, 0, 0).unwrap_or_default().and_utc());
    let end = start_of(next).unwrap_or(start + Duration::days(1));
    (start, end)
}

/// Local midnight at the start of the plant day containing `at`, in UTC.
pub fn local_day_start(tz: Tz, at: DateTime<Utc>) -> DateTime<Utc> {
    let local = at.with_timezone(&tz).date_naive();
    // A day whose midnight does not exist (DST gap) starts at the first instant that does.
    (0..180)
        .find_map(|m| {
            let naive = local.and_hms_opt(0, 0, 0)? + Duration::minutes(m);
            naive.and_local_timezone(tz).earliest()
        })
        .map(|t| t.with_timezone(&Utc))
        .unwrap_or(at)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::Error;
    use ScheduleState::*;
    use chrono::TimeZone;

    fn nine_to_five_weekdays() -> Vec<Period> {
        (0..5).flat_map(|d| standard_day(d, 9 * 60, 17 * 60)).collect()
    }

    #[test]
    fn a_standard_day_is_open_from_start_to_end() {
        let p = nine_to_five_weekdays();
        let tz = Tz::UTC;
        // 2026-01-05 is a Monday
        let cases = [
            ((5, 0, 0), OutOfShift),
            ((5, 8, 59), OutOfShift),
            ((5, 9, 0), InShift),
            ((5, 16, 59), InShift),
            ((5, 17, 0), OutOfShift),
            ((9, 12, 0), InShift),
            // Saturday and Sunday have no periods: the state carries over from Friday 17:00
            ((10, 12, 0), OutOfShift),
            ((11, 23, 0), OutOfShift),
        ];
        for ((d, h, m), want) in cases {
            let at = Utc.with_ymd_and_hms(2026, 1, d, h, m, 0).unwrap();
            assert_eq!(schedule_at(&p, tz, at), want, "{at}");
        }
    }

    #[test]
    fn a_night_shift_crosses_midnight_through_the_previous_day() {
        // Monday 22:00 on, Tuesday 06:00 off; nothing else.
        let p = vec![
            Period { day: 0, start_minute: 22 * 60, state: InShift },
            Period { day: 1, start_minute: 6 * 60, state: OutOfShift },
        ];
        let at = |d, h| Utc.with_ymd_and_hms(2026, 1, d, h, 0, 0).unwrap();
        assert_eq!(schedule_at(&p, Tz::UTC, at(5, 23)), InShift);
        assert_eq!(schedule_at(&p, Tz::UTC, at(6, 3)), InShift);
        assert_eq!(schedule_at(&p, Tz::UTC, at(6, 7)), OutOfShift);
        assert_eq!(
            schedule_at(&p, Tz::UTC, at(5, 21)),
            OutOfShift,
            "before Monday's period: last week's Tuesday 06:00"
        );
    }

    #[test]
    fn an_empty_pattern_is_out_of_shift() {
        assert_eq!(schedule_at(&[], Tz::UTC, Utc::now()), OutOfShift);
    }

    #[test]
    fn shift_times_are_plant_local() {
        let p = nine_to_five_weekdays();
        let tz: Tz = "America/New_York".parse().unwrap();
        // 13:30 UTC on Monday is 08:30 in New York (EST, UTC-5)
        let at = Utc.with_ymd_and_hms(2026, 1, 5, 13, 30, 0).unwrap();
        assert_eq!(schedule_at(&p, tz, at), OutOfShift);
        assert_eq!(schedule_at(&p, tz, at + Duration::hours(1)), InShift);
    }

    #[test]
    fn timezone_names_are_checked() {
        assert_eq!(resolve_timezone("Europe/London").unwrap(), chrono_tz::Europe::London);
        assert!(resolve_timezone("Mars/Olympus").unwrap_err().to_string().contains("Mars/Olympus"));
        assert!(resolve_timezone("").is_ok());
    }

    #[test]
    fn a_dst_day_has_23_hours() {
        let tz: Tz = "Europe/London".parse().unwrap();
        let (s, e) = local_date_bounds(tz, chrono::NaiveDate::from_ymd_opt(2026, 3, 29).unwrap());
        assert_eq!((e - s).num_hours(), 23);
        assert_eq!(s, Utc.with_ymd_and_hms(2026, 3, 29, 0, 0, 0).unwrap());
        let (s, e) = local_date_bounds(tz, chrono::NaiveDate::from_ymd_opt(2026, 10, 25).unwrap());
        assert_eq!((e - s).num_hours(), 25);
    }

    #[test]
    fn transitions_are_the_period_starts_in_order() {
        let p = nine_to_five_weekdays();
        let from = Utc.with_ymd_and_hms(2026, 1, 5, 0, 0, 0).unwrap();
        let t = transitions(&p, Tz::UTC, from, from + Duration::days(7));
        // Monday's 0000 is not after `from`, next Monday's is; 9:00 and 17:00 on five days, 0000 on Tuesday to
        // Friday.
        assert_eq!(t.len(), 15);
        assert_eq!(t[0], Transition { at: Utc.with_ymd_and_hms(2026, 1, 5, 9, 0, 0).unwrap(), state: InShift });
        assert_eq!(t[1].at, Utc.with_ymd_and_hms(2026, 1, 5, 17, 0, 0).unwrap());
        assert_eq!(t[2], Transition { at: Utc.with_ymd_and_hms(2026, 1, 6, 0, 0, 0).unwrap(), state: OutOfShift });
        assert!(t.windows(2).all(|w| w[0].at < w[1].at));
        // Every transition agrees with the state in force just after it.
        for tr in &t {
            assert_eq!(schedule_at(&p, Tz::UTC, tr.at), tr.state, "{}", tr.at);
        }
        assert!(transitions(&p, Tz::UTC, from, from).is_empty());
        assert!(transitions(&[], Tz::UTC, from, from + Duration::days(7)).is_empty());
    }

    #[test]
    fn transitions_across_dst_keep_the_wall_clock() {
        let tz: Tz = "Europe/London".parse().unwrap();
        // 01:30 on 2026-03-29 does not exist in London: the period begins at 02:00 BST (01:00 UTC).
        let p = vec![
            Period { day: 6, start_minute: 60 + 30, state: InShift },
            Period { day: 6, start_minute: 9 * 60, state: OutOfShift },
        ];
        let from = Utc.with_ymd_and_hms(2026, 3, 28, 0, 0, 0).unwrap();
        let t = transitions(&p, tz, from, from + Duration::days(2));
        assert_eq!(
            t.iter().map(|t| t.at).collect::<Vec<_>>(),
            vec![
                Utc.with_ymd_and_hms(2026, 3, 29, 1, 0, 0).unwrap(),
                Utc.with_ymd_and_hms(2026, 3, 29, 8, 0, 0).unwrap(),
            ]
        );
        // Clocks go back on 2026-10-25: 01:30 happens twice; the period begins the first time (BST).
        let p = vec![Period { day: 6, start_minute: 90, state: InShift }];
        let from = Utc.with_ymd_and_hms(2026, 10, 24, 0, 0, 0).unwrap();
        let t = transitions(&p, tz, from, from + Duration::days(2));
        assert_eq!(t.len(), 1);
        assert_eq!(t[0].at, Utc.with_ymd_and_hms(2026, 10, 25, 0, 30, 0).unwrap());
    }

    #[test]
    fn hhmm_and_local_midnight() {
        assert_eq!(parse_hhmm("0900"), Some(540));
        assert_eq!(parse_hhmm("2460"), None);
        let tz: Tz = "Europe/Berlin".parse().unwrap();
        let at = Utc.with_ymd_and_hms(2026, 1, 5, 12, 0, 0).unwrap();
        assert_eq!(local_day_start(tz, at), Utc.with_ymd_and_hms(2026, 1, 4, 23, 0, 0).unwrap());
    }

    #[test]
    fn shift_set_arguments_become_periods() {
        assert_eq!(parse_days("mon").unwrap(), vec![0]);
        assert_eq!(parse_days("weekdays").unwrap(), vec![0, 1, 2, 3, 4]);
        assert_eq!(parse_days("Sat,sun,SAT").unwrap(), vec![5, 6]);
        assert_eq!(parse_days("all").unwrap(), (0..7).collect::<Vec<u8>>());
        assert!(parse_days("monday").unwrap_err().to_string().contains("`monday` is not a day"));

        assert_eq!(parse_day_hours(2, "0900-1700").unwrap(), standard_day(2, 540, 1020).to_vec());
        assert_eq!(parse_day_hours(2, "off").unwrap(), vec![]);
        assert_eq!(
            parse_day_hours(0, "2200-2400").unwrap(),
            vec![
                Period { day: 0, start_minute: 0, state: OutOfShift },
                Period { day: 0, start_minute: 1320, state: InShift },
            ]
        );
        assert_eq!(
            parse_day_hours(1, "0000-0600").unwrap(),
            vec![
                Period { day: 1, start_minute: 0, state: InShift },
                Period { day: 1, start_minute: 360, state: OutOfShift }
            ]
        );
        for bad in ["2200-0600", "0900", "09:00-17:00", "0900-2500", "0900-0900"] {
            let e = parse_day_hours(0, bad).unwrap_err().to_string();
            assert!(e.contains(bad) && e.contains("HHMM-HHMM"), "{e}");
        }
    }

    #[test]
    fn days_are_described_by_their_hours() {
        let mut p = parse_day_hours(0, "0900-1700").unwrap();
        p.extend(parse_day_hours(1, "2200-2400").unwrap());
        p.extend(parse_day_hours(2, "0000-0600").unwrap());
        p.push(Period { day: 3, start_minute: 0, state: OutOfShift });
        let described: Vec<String> = (0..5).map(|d| describe_day(&p, d)).collect();
        assert_eq!(described, ["0900-1700", "2200-2400", "0000-0600", "closed", "off"]);
    }

    /// A shift as (start, end, overnight).
    type Times<'a> = (&'a str, &'a str, bool);

    fn week(days: &[(usize, &[Times<'_>])]) -> Week {
        let mut w = Week::default();
        for (d, shifts) in days {
            w.days[*d] = shifts.iter().map(|(s, e, o)| WeekShift::new(s, e, *o)).collect();
        }
        w
    }

    /// Two shifts back to back on weekdays, a night shift from Friday into Saturday, nothing on Sunday.
    fn two_shifts_and_a_night() -> Week {
        let two: &[Times<'_>] = &[("06:00", "14:00", false), ("14:00", "22:00", false)];
        week(&[(0, two), (1, two), (2, two), (3, two), (4, &[("06:00", "14:00", false), ("22:00", "06:00", true)])])
    }

    #[test]
    fn a_week_round_trips_through_its_periods_and_previews_overnight_shifts_split_at_midnight() {
        let w = two_shifts_and_a_night();
        let periods = w.periods().unwrap();
        assert_eq!(Week::of(&periods), w);
        let friday: Vec<(u16, ScheduleState)> =
            periods.iter().filter(|p| p.day == 4).map(|p| (p.start_minute, p.state)).collect();
        assert_eq!(friday, vec![(0, OutOfShift), (360, InShift), (840, OutOfShift), (1320, InShift)]);
        let saturday: Vec<&Period> = periods.iter().filter(|p| p.day == 5).collect();
        assert_eq!(saturday, vec![&Period { day: 5, start_minute: 360, state: OutOfShift }]);
        assert!(periods.iter().all(|p| p.day != 6), "a day without shifts has no periods");

        let preview = w.preview().unwrap();
        let drawn: Vec<Vec<(String, String, bool, bool)>> = preview
            .iter()
            .map(|d| {
                d.intervals
                    .iter()
                    .map(|i| (i.start.clone(), i.end.clone(), i.from_previous_day, i.into_next_day))
                    .collect()
            })
            .collect();
        let s = |a: &str, b: &str, from: bool, into: bool| (a.to_string(), b.to_string(), from, into);
        let weekday = vec![s("06:00", "14:00", false, false), s("14:00", "22:00", false, false)];
        assert_eq!(drawn[0], weekday);
        assert_eq!(drawn[3], weekday);
        assert_eq!(drawn[4], vec![s("06:00", "14:00", false, false), s("22:00", "24:00", false, true)]);
        assert_eq!(drawn[5], vec![s("00:00", "06:00", true, false)]);
        assert_eq!(drawn[6], vec![]);
        assert_eq!((preview[4].name, preview[4].intervals[1].end_minute), ("fri", 1440));
        // The preview agrees with the scheduler's reading of the periods, minute by minute (2026-01-05 is a
        // Monday).
        let monday = Utc.with_ymd_and_hms(2026, 1, 5, 0, 0, 0).unwrap();
        for minute in (0..7 * 1440).step_by(30) {
            let at = monday + Duration::minutes(minute);
            let day = &preview[(minute / 1440) as usize];
            let m = (minute % 1440) as u16;
            let drawn_in = day.intervals.iter().any(|i| i.start_minute <= m && m < i.end_minute);
            assert_eq!(schedule_at(&periods, Tz::UTC, at) == InShift, drawn_in, "{at}");
        }
    }

    #[test]
    fn a_week_gives_the_periods_shift_set_gives_for_the_same_hours() {
        let w = week(&[
            (0, &[("09:00", "17:00", false)]),
            (1, &[("22:00", "24:00", false)]),
            (2, &[("0:00", "06:00", false)]),
        ]);
        let mut cli = parse_day_hours(0, "0900-1700").unwrap();
        cli.extend(parse_day_hours(1, "2200-2400").unwrap());
        cli.extend(parse_day_hours(2, "0000-0600").unwrap());
        assert_eq!(w.periods().unwrap(), cli);
        // Hours that run to midnight and on the next day are shown as the two shifts they are.
        assert_eq!(Week::of(&cli).days[2], vec![WeekShift::new("00:00", "06:00", false)]);
        // A pattern in shift all week: each day from midnight to midnight.
        let always: Vec<Period> = (0..7).flat_map(|d| parse_day_hours(d, "0000-2400").unwrap()).collect();
        assert!(Week::of(&always).days.iter().all(|d| *d == vec![WeekShift::new("00:00", "24:00", false)]));
        assert_eq!(Week::of(&always).periods().unwrap(), always);
        // A shift that runs on through a day without periods is cut at each midnight.
        let mut long = parse_day_hours(0, "2200-2400").unwrap();
        long.extend(parse_day_hours(2, "0900-1700").unwrap());
        let w = Week::of(&long);
        assert_eq!(w.days[0], vec![WeekShift::new("22:00", "24:00", false)]);
        assert_eq!(w.days[1], vec![WeekShift::new("00:00", "24:00", false)]);
        assert_eq!(w.days[2], vec![WeekShift::new("09:00", "17:00", false)]);
        assert_eq!(Week::of(&[]), Week::default());
        assert_eq!(Week::default().periods().unwrap(), vec![]);
    }

    #[test]
    fn a_week_is_refused_naming_the_input_that_is_wrong() {
        let cases: &[(Week, &str, &str)] = &[
            (week(&[(0, &[("17:00", "09:00", false)])]), "mon.0.end", "ends (09:00) before it starts (17:00)"),
            (week(&[(0, &[("09:00", "09:00", false)])]), "mon.0.end", "before it starts"),
            (week(&[(2, &[("9", "17:00", false)])]), "wed.0.start", "`9` is not a time"),
            (week(&[(2, &[("09:00", "24:30", false)])]), "wed.0.end", "`24:30` is not a time"),
            (week(&[(4, &[("22:00", "23:00", true)])]), "fri.0.end", "overnight shift ends on the next day"),
            (week(&[(4, &[("22:00", "24:00", true)])]), "fri.0.end", "is not a time"),
            (
                week(&[(1, &[("06:00", "14:00", false), ("13:00", "22:00", false)])]),
                "tue.1.start",
                "starts (tue 13:00) before the shift from tue 06:00 to tue 14:00 has ended",
            ),
            (week(&[(1, &[("13:00", "22:00", false), ("06:00", "14:00", false)])]), "tue.0.start", "overlap"),
            (
                week(&[(0, &[("22:00", "06:00", true)]), (1, &[("05:00", "13:00", false)])]),
                "tue.0.start",
                "from mon 22:00 to tue 06:00",
            ),
            (
                week(&[(6, &[("20:00", "04:00", true)]), (0, &[("03:00", "08:00", false)])]),
                "mon.0.start",
                "from sun 20:00 to mon 04:00",
            ),
            (week(&[(5, &[("01:00", "02:00", false); 7])]), "sat", "at most 6"),
        ];
        for (w, field, needle) in cases {
            match w.periods() {
                Err(Error::Field { field: f, message }) => {
                    assert_eq!(f, *field, "{message}");
                    assert!(message.contains(needle), "{field}: {message}");
                }
                other => panic!("{field}: {other:?}"),
            }
        }
        // Back to back and overnight into a later start are fine.
        let ok = week(&[
            (0, &[("22:00", "06:00", true)]),
            (1, &[("06:00", "14:00", false)]),
            (6, &[("20:00", "06:00", true)]),
        ]);
        assert!(ok.periods().is_ok());
        assert_eq!(Week::of(&ok.periods().unwrap()), ok);
    }

    #[test]
    fn a_new_version_applies_from_when_it_took_effect() {
        let at = |d, h| Utc.with_ymd_and_hms(2026, 1, d, h, 0, 0).unwrap();
        let nine_to_five: Vec<Period> = (0..7).flat_map(|d| standard_day(d, 9 * 60, 17 * 60)).collect();
        let eight_to_six: Vec<Period> = (0..7).flat_map(|d| standard_day(d, 8 * 60, 18 * 60)).collect();
        // 9-5 until Tuesday 12:00, then 8-18 (in shift then too); off from Wednesday 12:00.
        let versions = vec![
            Version { from: None, periods: nine_to_five.clone() },
            Version { from: Some(at(6, 12)), periods: eight_to_six },
            Version { from: Some(at(7, 12)), periods: vec![] },
        ];
        assert_eq!(version_at(&versions, at(6, 11)).unwrap().from, None);
        assert_eq!(version_at(&versions, at(6, 12)).unwrap().from, Some(at(6, 12)));
        assert_eq!(schedule_over(&versions, Tz::UTC, at(6, 17)), InShift, "8-18 from Tuesday noon");
        assert_eq!(schedule_over(&versions, Tz::UTC, at(8, 10)), OutOfShift);
        let got: Vec<(DateTime<Utc>, ScheduleState)> =
            transitions_over(&versions, Tz::UTC, at(6, 0), at(9, 0)).iter().map(|t| (t.at, t.state)).collect();
        assert_eq!(
            got,
            vec![
                (at(6, 9), InShift),
                // Tuesday noon: in shift before and after, so no transition
                (at(6, 18), OutOfShift),
                (at(7, 0), OutOfShift),
                (at(7, 8), InShift),
                // Wednesday noon: the empty version is out of shift
                (at(7, 12), OutOfShift),
            ]
        );
        // Within one version, the same as the version alone.
        assert_eq!(
            transitions_over(&versions, Tz::UTC, at(5, 0), at(6, 0)),
            transitions(&nine_to_five, Tz::UTC, at(5, 0), at(6, 0))
        );
        // A version beginning with a period start of its own has that transition only.
        let versions = vec![
            Version { from: None, periods: vec![] },
            Version { from: Some(at(6, 9)), periods: nine_to_five.clone() },
        ];
        let got = transitions_over(&versions, Tz::UTC, at(6, 0), at(6, 10));
        assert_eq!(got, vec![Transition { at: at(6, 9), state: InShift }]);
    }

    #[test]
    fn a_machine_follows_each_pattern_as_it_was_while_it_followed_it() {
        let at = |d, h| Utc.with_ymd_and_hms(2026, 1, d, h, 0, 0).unwrap();
        let a1 = parse_day_hours(0, "0900-1700").unwrap();
        let a2 = parse_day_hours(0, "0600-1400").unwrap();
        let b1 = parse_day_hours(0, "2200-2400").unwrap();
        let patterns = std::collections::HashMap::from([
            (
                1,
                vec![
                    Version { from: None, periods: a1.clone() },
                    Version { from: Some(at(10, 0)), periods: a2.clone() },
                ],
            ),
            (2, vec![Version { from: None, periods: b1.clone() }]),
        ]);
        // Pattern 1 from always, pattern 2 from the 7th, none from the 12th, pattern 1 again from the 14th.
        let assignments =
            [(None, Some(1)), (Some(at(7, 0)), Some(2)), (Some(at(12, 0)), None), (Some(at(14, 0)), Some(1))];
        assert_eq!(
            followed(&assignments, &patterns),
            vec![
                Version { from: None, periods: a1 },
                Version { from: Some(at(7, 0)), periods: b1 },
                Version { from: Some(at(12, 0)), periods: vec![] },
                Version { from: Some(at(14, 0)), periods: a2 },
            ]
        );
        assert_eq!(followed(&[], &patterns), vec![]);
    }
}
