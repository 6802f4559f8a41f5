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

/// Why a new filter is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FilterRefusal {
    /// It would get a log as large as the server's command buffers.
    ServerSized,
    /// `broker.max_filters` distinct filters exist already.
    Full,
}

/// The distinct filters that clients other than the server created in the running core.
pub(crate) struct FilterBook {
    max: usize,
    known: Mutex<Book>,
}

struct Book {
    /// The core these filters live in (the supervisor's restart count); a new core starts empty.
    core: u64,
    filters: HashSet<String>,
    full_warned: bool,
}

impl FilterBook {
    pub(crate) fn new(max: usize) -> FilterBook {
        FilterBook { max, known: Mutex::new(Book { core: 0, filters: HashSet::new(), full_warned: false }) }
    }

    /// Whether a client other than the server may subscribe to `filter` in the core numbered `core`;
    /// a new filter is written in the book.
    pub(crate) fn admit(&self, filter: &str, core: u64) -> Result<(), FilterRefusal> {
        if narrows_a_server_log(filter) {
            return Err(FilterRefusal::ServerSized);
        }
        let mut book = self.known.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if book.core != core {
            *book = Book { core, filters: HashSet::new(), full_warned: false };
        }
        if book.filters.contains(filter) {
            return Ok(());
        }
        if book.filters.len() >= self.max {
            if !book.full_warned {
                book.full_warned = true;
                tracing::warn!(
                    "the broker core holds broker.max_filters ({}) distinct filters of clients: new filters are \
                     refused until the server restarts (raise broker.max_filters if memory allows; see the \
                     README's broker section)",
                    self.max
                );
            }
            return Err(FilterRefusal::Full);
        }
        book.filters.insert(filter.to_string());
        Ok(())
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
    fn the_book_admits_up_to_its_size_and_starts_again_with_a_new_core() {
        let book = FilterBook::new(2);
        assert_eq!(book.admit("plant/a/#", 0), Ok(()));
        assert_eq!(book.admit("plant/b/#", 0), Ok(()));
        // Known filters cost nothing more.
        assert_eq!(book.admit("plant/a/#", 0), Ok(()));
        assert_eq!(book.admit("plant/c/#", 0), Err(FilterRefusal::Full));
        assert_eq!(book.admit("oee/v1/machines/4/state", 0), Err(FilterRefusal::ServerSized));
        assert_eq!(book.admit("plant/c/#", 1), Ok(()));
    }

    #[test]
    fn a_filter_log_is_split_in_four_segments_of_at_least_a_kib() {
        assert_eq!(filter_log(256 * 1024), (64 * 1024, 4));
        assert_eq!(filter_log(4096), (1024, 4));
        assert_eq!(filter_log(100), (1024, 4));
    }
}
