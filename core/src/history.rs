//! Editing a machine's history (reference §4.7, contracts C50–C52): where a past or changed activity goes,
//! what happens to the activities around it, and when past jobs and up-state activities are allowed. Pure:
//! stored rows in, the fixes to make or a refusal out; ingest applies them under the machine's row lock.

use chrono::{DateTime, Utc};

use crate::activity::Code;
use crate::verdict::Refusal;

/// A stretch of time; an end of `None` is open (the current activity, a running job).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Span {
    pub start: DateTime<Utc>,
    pub end: Option<DateTime<Utc>>,
}

impl Span {
    pub fn closed(start: DateTime<Utc>, end: DateTime<Utc>) -> Span {
        Span { start, end: Some(end) }
    }

    /// The end, an open one being later than any time.
    fn until(&self) -> DateTime<Utc> {
        self.end.unwrap_or(DateTime::<Utc>::MAX_UTC)
    }

    /// Whether the two share more than a boundary instant.
    fn overlaps(&self, other: &Span) -> bool {
        self.start < other.until() && other.start < self.until()
    }

    /// Whether `inner` lies within this span.
    fn contains(&self, inner: &Span) -> bool {
        self.start <= inner.start && inner.until() <= self.until()
    }
}

/// An activity as stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoredActivity {
    pub id: i64,
    pub code_id: i32,
    pub span: Span,
    pub user_id: Option<i32>,
}

/// A new activity to insert: the tail of one that was split.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NewActivity {
    pub code_id: i32,
    pub span: Span,
    pub user_id: Option<i32>,
}

/// What must change in the other activities of a machine so that an edited activity fits.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Fixes {
    /// Activities wholly covered by the edited one.
    pub delete: Vec<i64>,
    /// Activities whose end moves (cut back to the edited start, or extended over a vacated start).
    pub end_at: Vec<(i64, DateTime<Utc>)>,
    /// Activities whose start moves (to the edited end, or back over a vacated end).
    pub start_at: Vec<(i64, DateTime<Utc>)>,
    /// Tails of activities that contained the edited one.
    pub insert: Vec<NewActivity>,
}

/// The fixes that make room for an activity over `new`, which was at `old` (`None` when it is being added),
/// among the machine's `others` (every activity but the edited one that overlaps `new` or touches `old`).
///
/// Overlaps: an activity wholly inside `new` is deleted; one that ends inside it is cut back to its start;
/// one that starts inside it is moved to its end; one that contains it is split, its tail becoming a new
/// activity with the same code and user (the open activity's tail stays open). When a changed activity
/// shrinks, the time it leaves goes to the activity that ended at its old start (or began at its old end),
/// if there is one; if there is none, the time is left as a gap (the reference failed with a 500 here).
pub fn make_room(old: Option<Span>, new: Span, others: &[StoredActivity]) -> Fixes {
    let mut fixes = Fixes::default();
    for o in others.iter().filter(|o| o.span.overlaps(&new)) {
        let starts_inside = o.span.start >= new.start;
        let ends_inside = o.span.until() <= new.until();
        match (starts_inside, ends_inside) {
            (true, true) => fixes.delete.push(o.id),
            (false, true) => fixes.end_at.push((o.id, new.start)),
            (true, false) => fixes.start_at.push((o.id, new.until())),
            (false, false) => {
                // Only a closed `new` can lie inside another activity.
                let Some(end) = new.end else { continue };
                fixes.end_at.push((o.id, new.start));
                fixes.insert.push(NewActivity {
                    code_id: o.code_id,
                    span: Span { start: end, end: o.span.end },
                    user_id: o.user_id,
                });
            }
        }
    }
    let Some(old) = old else { return fixes };
    let untouched = |o: &&StoredActivity| !o.span.overlaps(&new);
    if new.start > old.start {
        // the vacated front, up to where the old activity ended
        let to = new.start.min(old.until());
        if let Some(before) =
            others.iter().filter(untouched).filter(|o| o.span.end == Some(old.start)).max_by_key(|o| o.span.start)
        {
            fixes.end_at.push((before.id, to));
        }
    }
    if let (Some(old_end), Some(new_end)) = (old.end, new.end)
        && new_end < old_end
    {
        let from = new_end.max(old.start);
        if let Some(after) =
            others.iter().filter(untouched).filter(|o| o.span.start == old_end).min_by_key(|o| o.span.until())
        {
            fixes.start_at.push((after.id, from));
        }
    }
    fixes
}

/// A job as stored (an open span while it runs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoredJob {
    pub id: i64,
    pub span: Span,
}

/// The uptime rule (contract C51): an activity with an up-state code must lie within exactly one job, and no
/// other job may overlap it. `jobs` are the machine's jobs; `now` ends open spans in the message.
pub fn check_uptime(
    machine_id: i32,
    code: Code,
    span: Span,
    jobs: &[StoredJob],
    now: DateTime<Utc>,
) -> Result<(), Refusal> {
    if !code.state.is_up() {
        return Ok(());
    }
    let overlapping: Vec<&StoredJob> = jobs.iter().filter(|j| j.span.overlaps(&span)).collect();
    match overlapping.as_slice() {
        [job] if job.span.contains(&span) => Ok(()),
        _ => Err(Refusal::UptimeOutsideJob {
            machine_id,
            code_id: code.id,
            start: span.start,
            end: span.end.unwrap_or(now),
            jobs: overlapping.len(),
        }),
    }
}

/// One job at a time (contract C50): a job over `span` may not overlap any of `others` (the machine's other
/// jobs; a running one reaches to any later time, so it counts when it started before `span` ends). Jobs may
/// meet at an instant.
pub fn check_jobs_apart(machine_id: i32, span: Span, others: &[StoredJob], now: DateTime<Utc>) -> Result<(), Refusal> {
    match others.iter().filter(|j| j.span.overlaps(&span)).min_by_key(|j| j.span.start) {
        None => Ok(()),
        Some(j) => {
            Err(Refusal::OverlappingJobs { machine_id, job_id: j.id, start: span.start, end: span.end.unwrap_or(now) })
        }
    }
}

/// A production record as stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoredRecord {
    pub id: i64,
    pub span: Span,
    pub good: i64,
    pub rejects: i64,
}

/// What a job edit does to the job's production records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecordChange {
    /// Nothing to change.
    Keep,
    /// The job's one record takes the job's span and these counts.
    Overwrite { id: i64, start: DateTime<Utc>, end: DateTime<Utc>, good: i64, rejects: i64 },
    /// The job had no record and now has counts.
    Create { start: DateTime<Utc>, end: DateTime<Utc>, good: i64, rejects: i64 },
}

/// The records of a job edited to `span` (`None` end: still running, so its record ends `now`), given the
/// counts asked for (`None`: keep) and whether its times changed. With one record, it follows the job; with
/// none, one is made when parts are given; with several, counts that differ from their sums are refused
/// (each record says when its parts were made, so only history/production can change them) and time changes
/// leave them alone.
pub fn job_records(
    job_id: i64,
    span: Span,
    records: &[StoredRecord],
    good: Option<i64>,
    rejects: Option<i64>,
    times_changed: bool,
    now: DateTime<Utc>,
) -> Result<RecordChange, Refusal> {
    let end = span.end.unwrap_or(now);
    match records {
        [] => {
            let (good, rejects) = (good.unwrap_or(0), rejects.unwrap_or(0));
            Ok(if good > 0 || rejects > 0 {
                RecordChange::Create { start: span.start, end, good, rejects }
            } else {
                RecordChange::Keep
            })
        }
        [one] => Ok(if times_changed || good.is_some() || rejects.is_some() {
            RecordChange::Overwrite {
                id: one.id,
                start: span.start,
                end,
                good: good.unwrap_or(one.good),
                rejects: rejects.unwrap_or(one.rejects),
            }
        } else {
            RecordChange::Keep
        }),
        many => {
            let sum_good: i64 = many.iter().map(|r| r.good).sum();
            let sum_rejects: i64 = many.iter().map(|r| r.rejects).sum();
            if good.is_some_and(|g| g != sum_good) || rejects.is_some_and(|r| r != sum_rejects) {
                return Err(Refusal::JobHasManyRecords { job_id, records: many.len() });
            }
            Ok(RecordChange::Keep)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::activity::MachineState;
    use chrono::TimeZone;

    /// 2026-01-05 at `h` hours and `m` minutes.
    fn t(h: u32, m: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 1, 5, h, m, 0).unwrap()
    }

    fn span(from: (u32, u32), to: Option<(u32, u32)>) -> Span {
        Span { start: t(from.0, from.1), end: to.map(|(h, m)| t(h, m)) }
    }

    fn act(id: i64, from: (u32, u32), to: Option<(u32, u32)>) -> StoredActivity {
        StoredActivity { id, code_id: id as i32 * 10, span: span(from, to), user_id: Some(id as i32) }
    }

    /// A machine's day: 1 [8:00, 9:00], 2 [9:00, 10:00], 3 [10:00, 12:00], 4 open from 12:00.
    fn day() -> Vec<StoredActivity> {
        vec![
            act(1, (8, 0), Some((9, 0))),
            act(2, (9, 0), Some((10, 0))),
            act(3, (10, 0), Some((12, 0))),
            act(4, (12, 0), None),
        ]
    }

    #[test]
    fn an_added_activity_deletes_cuts_moves_and_splits_what_it_overlaps() {
        struct Case {
            what: &'static str,
            new: Span,
            want: Fixes,
        }
        let cases = [
            Case { what: "in a gap before everything", new: span((6, 0), Some((7, 0))), want: Fixes::default() },
            Case {
                what: "exactly over one activity: deleted, neighbours meet it at instants",
                new: span((9, 0), Some((10, 0))),
                want: Fixes { delete: vec![2], ..Fixes::default() },
            },
            Case {
                what: "across a boundary: the first cut back, the second moved",
                new: span((8, 30), Some((9, 30))),
                want: Fixes { end_at: vec![(1, t(8, 30))], start_at: vec![(2, t(9, 30))], ..Fixes::default() },
            },
            Case {
                what: "covering one and reaching into both neighbours",
                new: span((8, 45), Some((10, 15))),
                want: Fixes {
                    delete: vec![2],
                    end_at: vec![(1, t(8, 45))],
                    start_at: vec![(3, t(10, 15))],
                    ..Fixes::default()
                },
            },
            Case {
                what: "inside one: split, its tail a new activity with its code and user",
                new: span((10, 30), Some((11, 0))),
                want: Fixes {
                    end_at: vec![(3, t(10, 30))],
                    insert: vec![NewActivity { code_id: 30, span: span((11, 0), Some((12, 0))), user_id: Some(3) }],
                    ..Fixes::default()
                },
            },
            Case {
                what: "inside the open activity: its tail stays open",
                new: span((13, 0), Some((14, 0))),
                want: Fixes {
                    end_at: vec![(4, t(13, 0))],
                    insert: vec![NewActivity { code_id: 40, span: span((14, 0), None), user_id: Some(4) }],
                    ..Fixes::default()
                },
            },
            Case {
                what: "over the open activity's start: it moves to the new end",
                new: span((11, 0), Some((12, 30))),
                want: Fixes { end_at: vec![(3, t(11, 0))], start_at: vec![(4, t(12, 30))], ..Fixes::default() },
            },
            Case {
                what: "starting where one starts and ending inside it: it is moved, not split",
                new: span((10, 0), Some((11, 0))),
                want: Fixes { start_at: vec![(3, t(11, 0))], ..Fixes::default() },
            },
        ];
        for c in cases {
            let others: Vec<StoredActivity> = day().into_iter().filter(|o| o.span.overlaps(&c.new)).collect();
            assert_eq!(make_room(None, c.new, &others), c.want, "{}", c.what);
        }
    }

    #[test]
    fn a_changed_activity_gives_the_time_it_leaves_to_its_neighbours_when_they_exist() {
        struct Case {
            what: &'static str,
            old: Span,
            new: Span,
            others: Vec<StoredActivity>,
            want: Fixes,
        }
        let day_without = |id: i64| day().into_iter().filter(|a| a.id != id).collect::<Vec<_>>();
        let cases = [
            Case {
                what: "later start: the one before is extended",
                old: span((9, 0), Some((10, 0))),
                new: span((9, 20), Some((10, 0))),
                others: day_without(2),
                want: Fixes { end_at: vec![(1, t(9, 20))], ..Fixes::default() },
            },
            Case {
                what: "earlier end: the one after starts earlier",
                old: span((9, 0), Some((10, 0))),
                new: span((9, 0), Some((9, 40))),
                others: day_without(2),
                want: Fixes { start_at: vec![(3, t(9, 40))], ..Fixes::default() },
            },
            Case {
                what: "shrunk from both sides",
                old: span((9, 0), Some((10, 0))),
                new: span((9, 15), Some((9, 45))),
                others: day_without(2),
                want: Fixes { end_at: vec![(1, t(9, 15))], start_at: vec![(3, t(9, 45))], ..Fixes::default() },
            },
            Case {
                what: "no neighbour before (a gap): the vacated time stays a gap, no failure",
                old: span((8, 0), Some((9, 0))),
                new: span((8, 30), Some((9, 0))),
                others: day_without(1),
                want: Fixes::default(),
            },
            Case {
                what: "grown earlier: the one before is cut back, nothing is extended",
                old: span((9, 0), Some((10, 0))),
                new: span((8, 40), Some((10, 0))),
                others: day_without(2),
                want: Fixes { end_at: vec![(1, t(8, 40))], ..Fixes::default() },
            },
            Case {
                what: "moved wholly later: the one before takes the old time, the one it lands in is split",
                old: span((9, 0), Some((10, 0))),
                new: span((10, 30), Some((11, 0))),
                others: day_without(2),
                want: Fixes {
                    end_at: vec![(3, t(10, 30)), (1, t(10, 0))],
                    insert: vec![NewActivity { code_id: 30, span: span((11, 0), Some((12, 0))), user_id: Some(3) }],
                    ..Fixes::default()
                },
            },
            Case {
                what: "the open activity starting later: the one before is extended, it stays open",
                old: span((12, 0), None),
                new: span((12, 30), None),
                others: day_without(4),
                want: Fixes { end_at: vec![(3, t(12, 30))], ..Fixes::default() },
            },
            Case {
                what: "the open activity starting earlier: it covers and cuts what it now overlaps",
                old: span((12, 0), None),
                new: span((9, 30), None),
                others: day_without(4),
                want: Fixes { delete: vec![3], end_at: vec![(2, t(9, 30))], ..Fixes::default() },
            },
        ];
        for c in cases {
            assert_eq!(make_room(Some(c.old), c.new, &c.others), c.want, "{}", c.what);
        }
    }

    const UP: Code = Code { id: 1, state: MachineState::Uptime };
    const DOWN: Code = Code { id: 2, state: MachineState::UnplannedDowntime };

    #[test]
    fn up_state_activities_need_exactly_one_job_around_them() {
        let now = t(17, 0);
        let jobs = [
            StoredJob { id: 1, span: span((8, 0), Some((10, 0))) },
            StoredJob { id: 2, span: span((10, 0), Some((12, 0))) },
            StoredJob { id: 3, span: span((14, 0), None) },
        ];
        // (activity span, code, allowed?)
        let cases = [
            (span((8, 30), Some((9, 30))), UP, true),
            (span((8, 0), Some((10, 0))), UP, true),
            (span((10, 0), Some((11, 0))), UP, true),
            (span((9, 30), Some((10, 30))), UP, false),
            (span((12, 30), Some((13, 0))), UP, false),
            (span((11, 30), Some((12, 30))), UP, false),
            (span((15, 0), Some((16, 0))), UP, true),
            (span((15, 0), None), UP, true),
            (span((12, 30), Some((13, 0))), DOWN, true),
        ];
        for (s, code, ok) in cases {
            let got = check_uptime(3, code, s, &jobs, now);
            assert_eq!(got.is_ok(), ok, "{s:?} code {}: {got:?}", code.id);
            if let Err(e) = got {
                assert_eq!(e.status(), 400);
                assert!(e.to_string().starts_with("Cannot set to uptime when no job is active"), "{e}");
            }
        }
        let e = check_uptime(3, UP, span((9, 30), Some((10, 30))), &jobs, now).unwrap_err();
        assert!(e.to_string().contains("(2 overlap it)"), "{e}");
    }

    #[test]
    fn jobs_may_meet_but_not_overlap_and_a_running_job_reaches_forward() {
        let now = t(17, 0);
        let others =
            [StoredJob { id: 1, span: span((8, 0), Some((10, 0))) }, StoredJob { id: 2, span: span((14, 0), None) }];
        // (job span, the job it collides with)
        let cases = [
            (span((10, 0), Some((12, 0))), None),
            (span((6, 0), Some((8, 0))), None),
            (span((9, 0), Some((11, 0))), Some(1)),
            (span((7, 0), Some((15, 0))), Some(1)),
            (span((12, 0), Some((14, 0))), None),
            (span((12, 0), Some((14, 1))), Some(2)),
            (span((16, 0), Some((16, 30))), Some(2)),
        ];
        for (s, collides) in cases {
            let got = check_jobs_apart(3, s, &others, now);
            match collides {
                None => assert!(got.is_ok(), "{s:?}: {got:?}"),
                Some(id) => {
                    let e = got.unwrap_err();
                    assert_eq!(e.status(), 400);
                    assert!(e.to_string().starts_with("Cannot have two jobs on a machine at once"), "{e}");
                    assert!(e.to_string().contains(&format!("job {id} ")), "{e}");
                }
            }
        }
    }

    #[test]
    fn a_job_edit_moves_its_one_record_creates_a_first_one_and_guards_several() {
        let now = t(17, 0);
        let job = span((9, 0), Some((11, 0)));
        let rec = |id, from, to, good, rejects| StoredRecord { id, span: span(from, Some(to)), good, rejects };
        let one = [rec(5, (8, 0), (10, 0), 40, 2)];
        let two = [rec(5, (8, 0), (9, 0), 40, 2), rec(6, (9, 0), (10, 0), 10, 1)];
        assert_eq!(job_records(1, job, &one, None, None, false, now), Ok(RecordChange::Keep));
        assert_eq!(
            job_records(1, job, &one, None, None, true, now),
            Ok(RecordChange::Overwrite { id: 5, start: t(9, 0), end: t(11, 0), good: 40, rejects: 2 })
        );
        assert_eq!(
            job_records(1, span((9, 0), None), &one, Some(41), None, false, now),
            Ok(RecordChange::Overwrite { id: 5, start: t(9, 0), end: now, good: 41, rejects: 2 })
        );
        assert_eq!(job_records(1, job, &[], None, Some(0), true, now), Ok(RecordChange::Keep));
        assert_eq!(
            job_records(1, job, &[], Some(7), None, false, now),
            Ok(RecordChange::Create { start: t(9, 0), end: t(11, 0), good: 7, rejects: 0 })
        );
        assert_eq!(job_records(1, job, &two, Some(50), Some(3), true, now), Ok(RecordChange::Keep));
        let e = job_records(1, job, &two, Some(51), None, false, now).unwrap_err();
        assert_eq!((e.status(), e.reason()), (400, "job_has_many_records"));
    }
}
