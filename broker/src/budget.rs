//! What the broker core may hold in memory, and the guard's share in keeping it so.
//!
//! rumqttd keeps an in-memory log per distinct filter, from the first subscription to it until the core
//! stops, whether or not anybody still subscribes; each log keeps the newest messages that match its
//! filter up to its size, read or not. So the core's memory is bounded by the number of distinct filters
//! times their logs' sizes, and this module fixes both:
//!
//! - The command filters the server itself subscribes to (`oee/v1/machines/+/{kind}`) and the bridge's
//!   reply topics (`oee/v1/replies/+`) get `broker.max_segment_size` × `broker.max_segment_count`: ingest's
//!   buffer when it falls behind (a database outage, a burst). Clients other than the server may
//!   subscribe to these exact filters (sharing their logs) but not to narrower ones, which would get logs
//!   of the same size.
//! - Every other filter gets `broker.filter_log_bytes`, and clients other than the server may create at
//!   most `broker.max_filters` distinct ones while the core runs (each client holds at most 32 at once).
//!
//! rumqttd also keeps, until it stops, an entry for every distinct topic published to that matched a
//! filter, and the last retained message of every topic: clients other than the server may publish to at
//! most `broker.max_topics` distinct topics and keep retained messages on at most `broker.max_retained`.
//!
//! rumqttd counts a message as 4 bytes plus its topic and payload, but holds about 230 bytes more for
//! each (its record of the message), so a log of small messages takes several times its nominal size;
//! the README's broker section gives the whole budget.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;

use oee_core::topic::{self, CommandKind};
use rumqttd::SegmentConfig;

/// Segments of every log that is not a command filter's: a reader that falls behind loses a quarter of
/// the log at a time, not all of it.
const FILTER_LOG_SEGMENTS: usize = 4;
/// rumqttd's smallest segment.
const MIN_SEGMENT: usize = 1024;

/// The filters whose logs are the server's buffers: every command kind for all machines, and the bridge's
/// reply topics (one level below `oee/v1/replies`, where devices' reply filters never are).
pub(crate) fn server_filters() -> Vec<String> {
    let mut out: Vec<String> = CommandKind::ALL.into_iter().map(topic::command_filter).collect();
    out.push(format!("{}/+", topic::REPLIES));
    out
}

/// The segment size and count of the log of every filter but the server's: `bytes` in four segments.
pub(crate) fn filter_log(bytes: usize) -> (usize, usize) {
    ((bytes / FILTER_LOG_SEGMENTS).max(MIN_SEGMENT), FILTER_LOG_SEGMENTS)
}

/// rumqttd's per-filter overrides: the server's filters get `size` × `count`.
pub(crate) fn server_logs(size: usize, count: usize) -> HashMap<String, SegmentConfig> {
    server_filters()
        .into_iter()
        .map(|f| (f, SegmentConfig { max_segment_size: size, max_segment_count: count }))
        .collect()
}

/// Whether rumqttd would give `filter` one of the server's large logs (it matches the filter, read as a
/// topic, against each of [`server_filters`]) without it being one of them: a narrower filter of commands,
/// which only the server may create.
pub(crate) fn narrows_a_server_log(filter: &str) -> bool {
    let server = server_filters();
    !server.iter().any(|f| f == filter) && server.iter().any(|f| rumqttd::protocol::matches(filter, f))
}

/// A bounded record of distinct names (filters, topics) that clients other than the server brought into
/// the running core: rumqttd keeps something for each until it stops, so each kind is capped.
pub(crate) struct Book {
    max: usize,
    /// The setting that sets `max`, and what is counted, for the warning when the book is full.
    key: &'static str,
    what: &'static str,
    known: Mutex<Entries>,
}

struct Entries {
    /// The core these names live in (the supervisor's restart count); a new core starts empty.
    core: u64,
    names: HashSet<String>,
    full_warned: bool,
}

impl Book {
    pub(crate) fn new(max: usize, key: &'static str, what: &'static str) -> Book {
        Book { max, key, what, known: Mutex::new(Entries { core: 0, names: HashSet::new(), full_warned: false }) }
    }

    fn entries(&self, core: u64) -> std::sync::MutexGuard<'_, Entries> {
        let mut e = self.known.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if e.core != core {
            *e = Entries { core, names: HashSet::new(), full_warned: false };
        }
        e
    }

    /// Whether `name` may be used in the core numbered `core`: known already, or written in now if the
    /// book has room. The first refusal is logged as a warning.
    pub(crate) fn admit(&self, name: &str, core: u64) -> bool {
        let mut e = self.entries(core);
        if e.names.contains(name) {
            return true;
        }
        if e.names.len() >= self.max {
            if !e.full_warned {
                e.full_warned = true;
                tracing::warn!(
                    "the broker core holds {} ({}) distinct {} of clients: new ones are refused until the server \
                     restarts (raise {} if memory allows; see the README's broker section)",
                    self.key,
                    self.max,
                    self.what,
                    self.key
                );
            }
            return false;
        }
        e.names.insert(name.to_string());
        true
    }

    /// Takes `name` out of the book (a retained message that was cleared).
    pub(crate) fn forget(&self, name: &str, core: u64) {
        self.entries(core).names.remove(name);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_server_makes_logs_of_the_server_size() {
        // (filter, narrower than a server filter)
        let table = [
            ("oee/v1/machines/+/state", false),
            ("oee/v1/machines/+/telemetry", false),
            ("oee/v1/machines/4/state", true),
            ("oee/v1/machines/press/telemetry", true),
            ("oee/v1/replies/+", false),
            ("oee/v1/replies/x", true),
            ("oee/v1/replies/plc-1/#", false),
            ("oee/v1/machines/4/status", false),
            ("oee/v1/machines/+/status", false),
            ("oee/v1/machines/+/+", false),
            ("oee/#", false),
            ("#", false),
            ("plant/line-1/#", false),
        ];
        for (filter, narrower) in table {
            assert_eq!(narrows_a_server_log(filter), narrower, "{filter}");
        }
    }

    #[test]
    fn a_book_admits_up_to_its_size_and_starts_again_with_a_new_core() {
        let book = Book::new(2, "broker.max_filters", "filters");
        assert!(book.admit("plant/a/#", 0));
        assert!(book.admit("plant/b/#", 0));
        // Known names cost nothing more.
        assert!(book.admit("plant/a/#", 0));
        assert!(!book.admit("plant/c/#", 0));
        book.forget("plant/a/#", 0);
        assert!(book.admit("plant/c/#", 0));
        assert!(book.admit("plant/d/#", 1));
    }

    #[test]
    fn a_filter_log_is_split_in_four_segments_of_at_least_a_kib() {
        assert_eq!(filter_log(256 * 1024), (64 * 1024, 4));
        assert_eq!(filter_log(4096), (1024, 4));
        assert_eq!(filter_log(100), (1024, 4));
    }
}
