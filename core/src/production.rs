//! Parts made: turning a production message into the increments to record, with running-total counters
//! whose resets are detected (anchors §4.4 rule 12). Pure: the last totals in, increments and new totals out.

use crate::payload::Counts;

/// The last running totals a machine reported, per counter (`None`: never reported).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Totals {
    pub good: Option<i64>,
    pub rejects: Option<i64>,
}

/// What one production message records: the parts to add, and the machine's totals afterwards.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Counted {
    pub good: i64,
    pub rejects: i64,
    pub totals: Totals,
}

/// The parts a message adds. Increments are taken as they are and leave the totals alone. A running total
/// adds what it grew by since the last one; a total below the last one means the counter restarted from
/// zero, so the whole new total was made since. A counter never reported before is taken to have started
/// from zero, so its first total counts in full (nothing a device counted is dropped).
pub fn count(last: Totals, counts: Counts) -> Counted {
    match counts {
        Counts::Increments { good, rejects } => Counted { good, rejects, totals: last },
        Counts::Totals { good, rejects } => {
            let step = |last: Option<i64>, now: Option<i64>| match (last, now) {
                (_, None) => (0, last),
                (Some(l), Some(n)) if n >= l => (n - l, Some(n)),
                (_, Some(n)) => (n, Some(n)),
            };
            let (g, good) = step(last.good, good);
            let (r, rejects) = step(last.rejects, rejects);
            Counted { good: g, rejects: r, totals: Totals { good, rejects } }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn totals(good: Option<i64>, rejects: Option<i64>) -> Totals {
        Totals { good, rejects }
    }

    /// (last totals, message, parts added (good, rejects), totals afterwards)
    #[test]
    fn running_totals_add_their_growth_and_resets_count_from_zero() {
        let cases = [
            // increments pass through and keep the totals
            (totals(Some(10), None), Counts::Increments { good: 3, rejects: 1 }, (3, 1), totals(Some(10), None)),
            // first reading of a counter: counted from zero
            (
                totals(None, None),
                Counts::Totals { good: Some(120), rejects: Some(4) },
                (120, 4),
                totals(Some(120), Some(4)),
            ),
            // growth
            (
                totals(Some(120), Some(4)),
                Counts::Totals { good: Some(150), rejects: Some(4) },
                (30, 0),
                totals(Some(150), Some(4)),
            ),
            // a counter that was not read keeps its total and adds nothing
            (
                totals(Some(150), Some(4)),
                Counts::Totals { good: Some(151), rejects: None },
                (1, 0),
                totals(Some(151), Some(4)),
            ),
            // reset: below the last total, the new total was made since the restart
            (
                totals(Some(151), Some(4)),
                Counts::Totals { good: Some(7), rejects: Some(0) },
                (7, 0),
                totals(Some(7), Some(0)),
            ),
            // a reset to exactly zero adds nothing
            (
                totals(Some(7), Some(9)),
                Counts::Totals { good: Some(0), rejects: Some(2) },
                (0, 2),
                totals(Some(0), Some(2)),
            ),
        ];
        for (last, counts, (good, rejects), after) in cases {
            let c = count(last, counts);
            assert_eq!((c.good, c.rejects, c.totals), (good, rejects, after), "{last:?} + {counts:?}");
        }
    }

    #[test]
    fn a_sequence_of_totals_with_a_reset_adds_up_to_the_parts_made() {
        // a counter runs to 40, restarts, runs to 25: 65 parts in all
        let readings = [0, 10, 25, 40, 5, 25];
        let mut last = Totals::default();
        let mut made = 0;
        for r in readings {
            let c = count(last, Counts::Totals { good: Some(r), rejects: None });
            made += c.good;
            last = c.totals;
        }
        assert_eq!(made, 40 + 25);
    }
}
