//! MQTT floods against a running server and what they left in the database: publishers that own disjoint
//! sets of machines (so each machine's messages stay in order), the wait for the rows, and publish → commit
//! latencies read from commit timestamps (the server's cluster needs `track_commit_timestamp = on`).
//!
//! Shared by the bench binaries; each uses a part of it.
#![allow(dead_code)]

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use chrono::{DateTime, SecondsFormat, SubsecRound, Utc};
use oee_server::App;
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use sqlx::PgPool;
use tokio::time::Instant;

/// Waiting for published messages to show up as rows gives up after this long...
pub const DRAIN_MAX: Duration = Duration::from_secs(45);
/// ...or after this long without a single new row (e.g. a topic ingest does not handle yet).
pub const DRAIN_STALL: Duration = Duration::from_secs(5);

/// Activity codes a state flood alternates between: neither needs a job, so every command is accepted.
pub const CODE_DOWN: i32 = 2;
pub const CODE_CLOSED: i32 = 3;

/// How many publisher connections a flood uses, and how long they may publish.
#[derive(Clone, Copy)]
pub struct Publishers {
    /// MQTT connections; each owns a disjoint set of machines so per-machine order is kept.
    pub connections: usize,
    /// Publishing stops after this long even if the message count is not reached.
    pub window: Duration,
}

/// Wall-clock time at microsecond precision, as PostgreSQL stores it, so that comparisons with stored
/// times are exact.
pub fn now_micros() -> DateTime<Utc> {
    Utc::now().trunc_subsecs(6)
}

#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Flood {
    State,
    Telemetry,
}

impl Flood {
    pub fn suffix(self) -> &'static str {
        match self {
            Flood::State => "state",
            Flood::Telemetry => "telemetry",
        }
    }
}

/// What the publishers did.
#[derive(Default)]
pub struct FloodReport {
    pub sent: u64,
    pub acked: u64,
    pub connection_errors: u64,
    pub first_publish: Option<DateTime<Utc>>,
    pub publish_secs: f64,
}

/// A snapshot of ingest's counters, to report what one scenario added.
#[derive(Default, Clone, Copy)]
pub struct IngestCounts {
    pub received: u64,
    pub applied: u64,
    pub refused: u64,
    pub batches: u64,
    pub database_retries: u64,
}

impl IngestCounts {
    /// What ingest did between `self` and `after`, as one line of notes.
    pub fn delta_note(self, after: IngestCounts) -> String {
        let received = after.received - self.received;
        let batches = after.batches - self.batches;
        format!(
            "ingest counters: received {received}, applied {}, refused {}, {batches} batches (avg {:.0} messages), \
             {} database retries",
            after.applied - self.applied,
            after.refused - self.refused,
            if batches > 0 { received as f64 / batches as f64 } else { 0.0 },
            after.database_retries - self.database_retries
        )
    }
}

pub fn ingest_counts(app: &App) -> IngestCounts {
    app.ingest_stats
        .as_ref()
        .map(|s| IngestCounts {
            received: s.received.load(Ordering::Relaxed),
            applied: s.applied.load(Ordering::Relaxed),
            refused: s.refused.load(Ordering::Relaxed),
            batches: s.batches.load(Ordering::Relaxed),
            database_retries: s.database_retries.load(Ordering::Relaxed),
        })
        .unwrap_or_default()
}

/// Publishes up to `total` messages of `kind` from `publishers.connections` connections, for at most
/// `publishers.window`, then waits (bounded) for the broker's acknowledgements. With `rate` (messages per
/// second, all connections together) the publishers follow a fixed schedule instead of flooding.
pub async fn flood(
    port: u16,
    machines: &[i32],
    kind: Flood,
    total: u64,
    rate: Option<u32>,
    publishers: Publishers,
) -> FloodReport {
    let started = Instant::now();
    let deadline = started + publishers.window;
    let n = publishers.connections.max(1);
    let mut tasks = tokio::task::JoinSet::new();
    for k in 0..n {
        let mine: Vec<i32> = machines.iter().copied().skip(k).step_by(n).collect();
        if mine.is_empty() {
            continue;
        }
        let quota = total / n as u64 + u64::from((k as u64) < total % n as u64);
        let pace = rate.map(|r| f64::from(r) / n as f64);
        tasks.spawn(publisher(port, k, mine, kind, quota, deadline, pace));
    }
    let mut report = FloodReport::default();
    while let Some(r) = tasks.join_next().await {
        let r = r.expect("a publisher task panicked");
        report.sent += r.sent;
        report.acked += r.acked;
        report.connection_errors += r.connection_errors;
        report.first_publish = match (report.first_publish, r.first_publish) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        report.publish_secs = report.publish_secs.max(r.publish_secs);
    }
    report
}

/// One MQTT connection publishing to its own machines in turn. Each machine's timestamps strictly
/// increase, and each machine's commands alternate Down/Closed.
/// With `pace` (messages per second) the publisher follows a fixed schedule instead of flooding.
async fn publisher(
    port: u16,
    k: usize,
    mine: Vec<i32>,
    kind: Flood,
    quota: u64,
    deadline: Instant,
    pace: Option<f64>,
) -> FloodReport {
    let mut opts = MqttOptions::new(format!("bench-{}-{k}", kind.suffix()), "127.0.0.1", port);
    opts.set_keep_alive(Duration::from_secs(30));
    opts.set_clean_session(true);
    opts.set_inflight(1000);
    let (client, mut eventloop) = AsyncClient::new(opts, 10_000);
    let acked = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(AtomicU64::new(0));
    // Set before our own DISCONNECT, after which a closed connection is expected, not an error.
    let closing = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
    let driver = {
        let (acked, errors, closing) = (acked.clone(), errors.clone(), closing.clone());
        tokio::spawn(async move {
            let mut ready = Some(ready_tx);
            loop {
                match eventloop.poll().await {
                    Ok(Event::Incoming(Packet::ConnAck(_))) => {
                        if let Some(r) = ready.take() {
                            let _ = r.send(());
                        }
                    }
                    Ok(Event::Incoming(Packet::PubAck(_))) => {
                        acked.fetch_add(1, Ordering::Relaxed);
                    }
                    Ok(_) => {}
                    Err(_) if closing.load(Ordering::Relaxed) => return,
                    Err(e) => {
                        if errors.fetch_add(1, Ordering::Relaxed) < 3 {
                            eprintln!("  publisher {k}: MQTT connection: {e}");
                        }
                        // rumqttc reconnects on the next poll; do not spin meanwhile.
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                }
            }
        })
    };
    tokio::time::timeout(Duration::from_secs(10), ready_rx)
        .await
        .expect("the broker did not accept a publisher connection within 10 s")
        .expect("the publisher's event loop ended before connecting");

    let started = Instant::now();
    let mut last = vec![DateTime::<Utc>::MIN_UTC; mine.len()];
    let mut first_publish = None;
    let mut sent = 0u64;
    let len = mine.len() as u64;
    for n in 0..quota {
        if Instant::now() >= deadline {
            break;
        }
        if let Some(per_second) = pace {
            let due = started + Duration::from_secs_f64(n as f64 / per_second);
            // tokio's timer has millisecond resolution: sleep only when at least that far ahead.
            if due > Instant::now() + Duration::from_millis(1) {
                tokio::time::sleep_until(due).await;
            }
        }
        let slot = (n % len) as usize;
        let round = n / len;
        let mut ts = now_micros();
        if ts <= last[slot] {
            ts = last[slot] + chrono::Duration::microseconds(1);
        }
        last[slot] = ts;
        let stamp = ts.to_rfc3339_opts(SecondsFormat::Micros, true);
        let payload = match kind {
            Flood::State => {
                let code = if round.is_multiple_of(2) { CODE_DOWN } else { CODE_CLOSED };
                format!(r#"{{"activity_code_id":{code},"timestamp":"{stamp}"}}"#)
            }
            Flood::Telemetry => {
                let temperature = 60.0 + (n % 200) as f64 / 10.0;
                format!(r#"{{"temperature":{temperature:.1},"rpm":1200,"timestamp":"{stamp}"}}"#)
            }
        };
        let topic = format!("oee/v1/machines/{}/{}", mine[slot], kind.suffix());
        if client.publish(topic, QoS::AtLeastOnce, false, payload).await.is_err() {
            eprintln!("  publisher {k}: the client's request channel closed; stopping");
            break;
        }
        first_publish.get_or_insert(ts);
        sent += 1;
    }
    let publish_secs = started.elapsed().as_secs_f64();

    let ack_deadline = Instant::now() + Duration::from_secs(30);
    while acked.load(Ordering::Relaxed) < sent && Instant::now() < ack_deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    closing.store(true, Ordering::Relaxed);
    let _ = client.disconnect().await;
    let abort = driver.abort_handle();
    let _ = tokio::time::timeout(Duration::from_secs(2), driver).await;
    abort.abort();
    FloodReport {
        sent,
        acked: acked.load(Ordering::Relaxed).min(sent),
        connection_errors: errors.load(Ordering::Relaxed),
        first_publish,
        publish_secs,
    }
}

/// Polls `count_sql` (bound to `since`) until it reaches `expected`, stops growing for
/// [`DRAIN_STALL`], or [`DRAIN_MAX`] passes. Returns the count and whether it reached `expected`.
pub async fn wait_for_rows(pool: &PgPool, count_sql: &'static str, since: DateTime<Utc>, expected: u64) -> (u64, bool) {
    let started = Instant::now();
    let mut seen = 0u64;
    let mut last_progress = Instant::now();
    loop {
        let n: i64 = sqlx::query_scalar(count_sql)
            .bind(since)
            .fetch_one(pool)
            .await
            .unwrap_or_else(|e| panic!("count rows ({count_sql}): {e}"));
        let n = n.max(0) as u64;
        if n >= expected {
            return (n, true);
        }
        if n > seen {
            seen = n;
            last_progress = Instant::now();
        }
        if last_progress.elapsed() >= DRAIN_STALL || started.elapsed() >= DRAIN_MAX {
            return (n, false);
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

#[derive(Default)]
pub struct CommitMetrics {
    pub p50_ms: Option<f64>,
    pub p99_ms: Option<f64>,
    pub max_ms: Option<f64>,
    pub last_commit: Option<DateTime<Utc>>,
}

/// Publish → commit latencies from commit timestamps.
///
/// Telemetry rows are only inserted, so `xmin` is the inserting transaction and `ts` the publish time.
/// Activity rows are different: a command closes the machine's open activity (setting `end_time` to the
/// command's time) and inserts the next one in the same transaction, and the row a command inserted is
/// rewritten — given a new `xmin` — by the next command. So each *closed* row gives exactly one command's
/// latency: `end_time` is that command's publish time and `xmin` is that command's transaction. Every
/// command closes exactly one row, so this is one sample per command.
pub async fn commit_metrics(pool: &PgPool, kind: Flood, since: DateTime<Utc>) -> Result<CommitMetrics, sqlx::Error> {
    let sql = match kind {
        Flood::State => {
            "SELECT percentile_disc(0.5) WITHIN GROUP (ORDER BY ms), percentile_disc(0.99) WITHIN GROUP (ORDER BY ms), \
                    max(ms), max(committed) \
             FROM (SELECT pg_xact_commit_timestamp(xmin) AS committed, \
                          extract(epoch FROM pg_xact_commit_timestamp(xmin) - end_time)::float8 * 1000 AS ms \
                   FROM activity WHERE end_time >= $1) c"
        }
        Flood::Telemetry => {
            "SELECT percentile_disc(0.5) WITHIN GROUP (ORDER BY ms), percentile_disc(0.99) WITHIN GROUP (ORDER BY ms), \
                    max(ms), max(committed) \
             FROM (SELECT pg_xact_commit_timestamp(xmin) AS committed, \
                          extract(epoch FROM pg_xact_commit_timestamp(xmin) - ts)::float8 * 1000 AS ms \
                   FROM telemetry WHERE ts >= $1 AND key = 'temperature') c"
        }
    };
    let (p50_ms, p99_ms, max_ms, last_commit): (Option<f64>, Option<f64>, Option<f64>, Option<DateTime<Utc>>) =
        sqlx::query_as(sql).bind(since).fetch_one(pool).await?;
    Ok(CommitMetrics { p50_ms, p99_ms, max_ms, last_commit })
}
