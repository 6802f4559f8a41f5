//! Shift calendar: which schedule state a shift pattern gives at an instant, in the plant's time zone.

use chrono::{DateTime, Datelike, Duration, NaiveTime, Timelike, Utc};
use chrono_tz::Tz;

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
}
