//! Ingest: the one writer of machine state.
//!
//! It subscribes to the command topics with manual acknowledgements (and a persistent session, unless the
//! connection joins a shared group, which the embedded broker allows only to clean sessions), drains
//! whatever commands have arrived into one batch, judges each with the state machine against its
//! machine's locked row, writes the batch in one transaction, and only then acknowledges the messages,
//! answers on each command's `reply_to` and publishes the machines' retained status. Its shift scheduler
//! moves machines in and out of shift as their shift patterns say; its maintenance jobs drop and compress
//! old time series and refresh the telemetry rollups.

mod batch;
pub mod maintenance;
pub mod scheduler;
mod status;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use chrono_tz::Tz;
use oee_core::access::ServerSeal;
use oee_core::config::{IngestConfig, MqttConfig, SchedulerConfig};
use oee_core::mqtt::{self, Incoming};
use oee_core::topic::{self, CommandKind};
use rumqttc::{AsyncClient, QoS};
use sqlx::PgPool;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

pub use batch::Received;

/// Why ingest could not start.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("ingest: {0}")]
    Store(#[from] oee_core::Error),
}

/// Counters of what ingest has done since it started.
#[derive(Debug, Default)]
pub struct Stats {
    pub received: AtomicU64,
    pub applied: AtomicU64,
    pub refused: AtomicU64,
    pub malformed: AtomicU64,
    pub batches: AtomicU64,
    pub database_retries: AtomicU64,
}

impl Stats {
    fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }
}

/// A running ingest service. Dropping it stops it at once; [`Ingest::shutdown`] says goodbye to the broker
/// first.
pub struct Ingest {
    pub stats: Arc<Stats>,
    tasks: Vec<JoinHandle<()>>,
    clients: Vec<AsyncClient>,
    /// One per connection: true once the broker confirmed its subscriptions.
    subscribed: Vec<tokio::sync::watch::Receiver<bool>>,
}

impl Ingest {
    /// Waits (at most `limit`) until every connection's subscriptions are confirmed, so that commands
    /// published from then on reach ingest even on its very first start. False when the broker did not
    /// confirm in time (ingest keeps trying in the background).
    pub async fn ready(&self, limit: std::time::Duration) -> bool {
        let all = async {
            for rx in &self.subscribed {
                let mut rx = rx.clone();
                if rx.wait_for(|s| *s).await.is_err() {
                    return false;
                }
            }
            true
        };
        tokio::time::timeout(limit, all).await.unwrap_or(false)
    }

    /// Disconnects cleanly, so the broker keeps ingest's persistent sessions (and queues what arrives
    /// meanwhile) right away, then stops. Commands of a persistent session not yet committed stay
    /// unacknowledged and come back on the next start; those delivered on a shared-group connection (clean
    /// session) do not (see [`connection`]).
    pub async fn shutdown(self) {
        for c in &self.clients {
            let _ = c.try_disconnect();
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
}

impl Drop for Ingest {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

/// Starts ingest against the configured broker: the main connection (state commands, and telemetry when
/// `telemetry_connections` is 0) and the telemetry connections, each with its own batch worker, and the
/// shift scheduler and the maintenance jobs (`maintenance`) for the plant's time zone `tz`. `seal` checks the
/// commands only the server may send.
pub fn start(
    pool: PgPool,
    mqtt_cfg: &MqttConfig,
    cfg: &IngestConfig,
    sched: &SchedulerConfig,
    maintenance: &maintenance::Settings,
    tz: Tz,
    seal: Arc<ServerSeal>,
) -> Ingest {
    let client_id =
        if cfg.client_id.is_empty() { format!("{}-ingest", mqtt_cfg.client_id_prefix) } else { cfg.client_id.clone() };
    // Across processes, workers of one shared group split each topic; within a process the telemetry
    // connections split the telemetry topic among themselves the same way.
    let shared = |group: &str, kind: CommandKind| {
        let f = topic::command_filter(kind);
        if group.is_empty() { f } else { format!("$share/{group}/{f}") }
    };
    let stats = Arc::new(Stats::default());
    let mut tasks = Vec::new();
    let mut clients = Vec::new();
    let mut subscribed = Vec::new();
    // One group per kind of command: rumqttd keeps one read position per group name, so filters sharing a
    // group would have one filter's position applied to another's log (messages skipped or sent twice).
    let kind_group = |k: CommandKind| {
        if cfg.shared_group.is_empty() {
            String::new()
        } else {
            format!("{}-{}", cfg.shared_group, k.suffix().replace('/', "-"))
        }
    };
    let mut main_filters: Vec<(String, QoS)> = CommandKind::ALL
        .into_iter()
        .filter(|k| k.changes_state())
        .map(|k| (shared(&kind_group(k), k), QoS::AtLeastOnce))
        .collect();
    if cfg.telemetry_connections == 0 {
        main_filters.push((shared(&cfg.shared_group, CommandKind::Telemetry), QoS::AtLeastOnce));
    }
    // Statuses and pings arrive at QoS 0: they need no acknowledgement, which rumqttd accepts only in the
    // order of delivery and so could not be given while the commands around them wait for their commit.
    // Every worker watches the statuses (not shared): a status another client wrote is put right at once.
    main_filters.push((topic::status_filter(), QoS::AtMostOnce));
    // One worker of a group answers each health ping (a group of its own, as for telemetry below).
    main_filters.push((
        if cfg.shared_group.is_empty() {
            oee_core::health::PING.to_string()
        } else {
            format!("$share/{}-health/{}", cfg.shared_group, oee_core::health::PING)
        },
        QoS::AtMostOnce,
    ));
    let main = connection(&pool, mqtt_cfg, cfg, &client_id, main_filters, true, &stats, &seal);
    clients.push(main.client);
    tasks.extend(main.tasks);
    subscribed.push(main.subscribed);
    // Machines the scheduler moves get their retained status republished by the main connection.
    tasks.extend(scheduler::start(pool.clone(), tz, sched.max_catch_up(), main.status));
    // Each ingest process starts them; one at a time runs them (see `maintenance`).
    tasks.push(maintenance::start(pool.clone(), maintenance.clone(), tz));
    // A group of its own: rumqttd keys a shared group by its name alone, so telemetry connections in the
    // state commands' group would be handed state commands they never subscribed to, and those are lost.
    let telemetry_group = if cfg.shared_group.is_empty() {
        format!("{client_id}-telemetry")
    } else {
        format!("{}-telemetry", cfg.shared_group)
    };
    for i in 0..cfg.telemetry_connections {
        let filters = vec![(shared(&telemetry_group, CommandKind::Telemetry), QoS::AtLeastOnce)];
        let id = format!("{client_id}-telemetry-{i}");
        let c = connection(&pool, mqtt_cfg, cfg, &id, filters, false, &stats, &seal);
        clients.push(c.client);
        tasks.extend(c.tasks);
        subscribed.push(c.subscribed);
    }
    tasks.push(tokio::spawn(report(stats.clone())));
    Ingest { stats, tasks, clients, subscribed }
}

/// Logs what ingest did in each minute in which it did anything.
async fn report(stats: Arc<Stats>) {
    let counters = |s: &Stats| {
        [&s.received, &s.applied, &s.refused, &s.malformed, &s.batches, &s.database_retries]
            .map(|c| c.load(Ordering::Relaxed))
    };
    let mut last = counters(&stats);
    let mut tick = tokio::time::interval(std::time::Duration::from_secs(60));
    tick.tick().await;
    loop {
        tick.tick().await;
        let now = counters(&stats);
        let d: Vec<u64> = now.iter().zip(last.iter()).map(|(n, l)| n - l).collect();
        if d.iter().any(|&x| x > 0) {
            tracing::info!(
                "ingest, last minute: {} commands received, {} applied, {} refused ({} unreadable), {} batches, \
                 {} database retries",
                d[0],
                d[1],
                d[2],
                d[3],
                d[4],
                d[5]
            );
        }
        last = now;
    }
}

/// One MQTT connection of ingest (manual acknowledgements) and its batch worker; with `publishes_status`,
/// also its status publisher, whose sender is returned.
///
/// The session is persistent, so what arrives while ingest is away is kept for it, unless a filter joins a
/// shared group (`$share/…`): such a connection has a clean session. rumqttd's router panics when a
/// persistent session that was the last of its group ends with deliveries unacknowledged, so the embedded
/// broker refuses shared subscriptions to persistent sessions; and rumqttd would keep little for a shared
/// group anyway (a member resuming a group that had emptied is moved to its newest message once it
/// subscribes again). What a clean session loses when it drops is its in-flight window: messages delivered
/// but not yet committed (at most rumqttd's 100 unacknowledged per connection). A device that asked for a
/// verdict and got none sends its command again, and its `request_id` keeps it from being applied twice.
#[allow(clippy::too_many_arguments)]
fn connection(
    pool: &PgPool,
    mqtt_cfg: &MqttConfig,
    cfg: &IngestConfig,
    client_id: &str,
    filters: Vec<(String, QoS)>,
    publishes_status: bool,
    stats: &Arc<Stats>,
    seal: &Arc<ServerSeal>,
) -> Connection {
    let shared = filters.iter().any(|(f, _)| f.starts_with("$share/"));
    let mut options = mqtt::client_options(mqtt_cfg, client_id, shared);
    options.set_manual_acks(true);
    let (client, eventloop) = AsyncClient::new(options, 20_000);
    // Unbounded is bounded in practice: the broker sends no more than its in-flight window of
    // unacknowledged messages, and nothing is acknowledged before it is committed.
    let (tx, rx) = mpsc::unbounded_channel();
    let driver = tokio::spawn(mqtt::drive(eventloop, client.clone(), filters, tx));
    let mut tasks = vec![driver];
    let status = publishes_status.then(|| {
        let silence = (cfg.no_signal_after_s > 0).then(|| std::time::Duration::from_secs(cfg.no_signal_after_s));
        let (tx, task) = status::start(pool.clone(), client.clone(), silence, mqtt_cfg.max_packet_size);
        tasks.push(task);
        tx
    });
    let (subscribed_tx, subscribed) = tokio::sync::watch::channel(false);
    let worker = Arc::new(batch::Worker::new(
        pool.clone(),
        client.clone(),
        cfg.clone(),
        mqtt_cfg.max_packet_size,
        stats.clone(),
        status.clone(),
        seal.clone(),
    ));
    tasks.push(tokio::spawn(worker.run(rx, subscribed_tx)));
    Connection { client, tasks, subscribed, status }
}

/// A started connection: its client, tasks, subscription readiness and status publisher.
struct Connection {
    client: AsyncClient,
    tasks: Vec<JoinHandle<()>>,
    subscribed: tokio::sync::watch::Receiver<bool>,
    status: Option<mpsc::UnboundedSender<status::Request>>,
}

/// An event of the MQTT driver with the moment it arrived: a command without a timestamp happened then,
/// however long it waits for a batch (two batches in flight, a database outage).
pub(crate) struct Arrived {
    event: Incoming,
    at: chrono::DateTime<chrono::Utc>,
}

impl From<Incoming> for Arrived {
    fn from(event: Incoming) -> Arrived {
        Arrived { event, at: chrono::Utc::now() }
    }
}

/// What the driver handed over: a connection event, or a batch of publishes (each stamped with when it
/// arrived), drained without waiting from whatever has already arrived after `first`.
pub(crate) enum Delivery {
    Connected,
    /// The broker confirmed a subscription.
    Subscribed,
    /// Publishes, and whether a (re)connection was announced or a subscription confirmed among them (a
    /// resumed session delivers what the broker kept before it confirms the subscriptions).
    Batch {
        publishes: Vec<Received>,
        reconnected: bool,
        subscribed: bool,
    },
}

/// Builds a delivery from `first` (already received, so waiting for it could be cancelled safely).
pub(crate) fn fill(first: Arrived, rx: &mut mpsc::UnboundedReceiver<Arrived>, max: usize) -> Delivery {
    let mut batch = match first.event {
        Incoming::Connected { .. } => return Delivery::Connected,
        Incoming::Subscribed => return Delivery::Subscribed,
        Incoming::Publish(p) => vec![Received { publish: p, received_at: first.at }],
    };
    let (mut reconnected, mut subscribed) = (false, false);
    while batch.len() < max {
        match rx.try_recv() {
            Ok(Arrived { event: Incoming::Publish(p), at }) => batch.push(Received { publish: p, received_at: at }),
            Ok(Arrived { event: Incoming::Connected { .. }, .. }) => reconnected = true,
            Ok(Arrived { event: Incoming::Subscribed, .. }) => subscribed = true,
            Err(_) => break,
        }
    }
    Delivery::Batch { publishes: batch, reconnected, subscribed }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn publish(topic: &str) -> Arrived {
        Arrived::from(Incoming::Publish(rumqttc::Publish::new(topic, rumqttc::QoS::AtLeastOnce, "{}")))
    }

    #[test]
    fn a_subscription_confirmed_behind_a_resumed_sessions_messages_is_reported() {
        let (tx, mut rx) = mpsc::unbounded_channel();
        tx.send(publish("oee/v1/machines/1/state")).unwrap();
        tx.send(Arrived::from(Incoming::Subscribed)).unwrap();
        tx.send(publish("oee/v1/machines/2/state")).unwrap();
        let first = publish("oee/v1/machines/1/state");
        match fill(first, &mut rx, 100) {
            Delivery::Batch { publishes, reconnected, subscribed } => {
                assert_eq!((publishes.len(), reconnected, subscribed), (3, false, true));
            }
            _ => panic!("a batch of publishes"),
        }
    }
}
