//! Ingest: the one writer of machine state.
//!
//! It subscribes to the command topics with a persistent session and manual acknowledgements, drains
//! whatever commands have arrived into one batch, judges each with the state machine against its
//! machine's locked row, writes the batch in one transaction, and only then acknowledges the messages,
//! answers on each command's `reply_to` and publishes the machines' retained status.

mod batch;
mod status;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use oee_core::config::{IngestConfig, MqttConfig};
use oee_core::mqtt::{self, Incoming};
use oee_core::topic::{self, CommandKind};
use rumqttc::AsyncClient;
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

/// A running ingest service. Dropping it stops it.
pub struct Ingest {
    pub stats: Arc<Stats>,
    tasks: Vec<JoinHandle<()>>,
}

impl Drop for Ingest {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

/// Starts ingest against the configured broker: the main connection (state commands, and telemetry when
/// `telemetry_connections` is 0) and the telemetry connections, each with its own batch worker.
pub fn start(pool: PgPool, mqtt_cfg: &MqttConfig, cfg: &IngestConfig) -> Ingest {
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
    let mut main_filters = vec![shared(&cfg.shared_group, CommandKind::State)];
    if cfg.telemetry_connections == 0 {
        main_filters.push(shared(&cfg.shared_group, CommandKind::Telemetry));
    }
    tasks.extend(connection(&pool, mqtt_cfg, cfg, &client_id, main_filters, true, &stats));
    let telemetry_group =
        if cfg.shared_group.is_empty() { format!("{client_id}-telemetry") } else { cfg.shared_group.clone() };
    for i in 0..cfg.telemetry_connections {
        let filters = vec![shared(&telemetry_group, CommandKind::Telemetry)];
        let id = format!("{client_id}-telemetry-{i}");
        tasks.extend(connection(&pool, mqtt_cfg, cfg, &id, filters, false, &stats));
    }
    Ingest { stats, tasks }
}

/// One MQTT connection of ingest (persistent session, manual acknowledgements) and its batch worker.
fn connection(
    pool: &PgPool,
    mqtt_cfg: &MqttConfig,
    cfg: &IngestConfig,
    client_id: &str,
    filters: Vec<String>,
    publishes_status: bool,
    stats: &Arc<Stats>,
) -> [JoinHandle<()>; 2] {
    let mut options = mqtt::client_options(mqtt_cfg, client_id, false);
    options.set_manual_acks(true);
    let (client, eventloop) = AsyncClient::new(options, 20_000);
    // Unbounded is bounded in practice: the broker sends no more than its in-flight window of
    // unacknowledged messages, and nothing is acknowledged before it is committed.
    let (tx, rx) = mpsc::unbounded_channel();
    let driver = tokio::spawn(mqtt::drive(eventloop, client.clone(), filters, tx));
    let worker = batch::Worker::new(pool.clone(), client, cfg.clone(), stats.clone(), publishes_status);
    [driver, tokio::spawn(worker.run(rx))]
}

/// Receives from the driver: each publish stamped with when it arrived.
pub(crate) async fn next_batch(
    rx: &mut mpsc::UnboundedReceiver<Incoming>,
    max: usize,
    on_connect: &mut impl FnMut(bool),
) -> Option<Vec<Received>> {
    let mut batch = Vec::new();
    loop {
        let first = if batch.is_empty() {
            rx.recv().await?
        } else {
            match rx.try_recv() {
                Ok(m) => m,
                Err(_) => return Some(batch),
            }
        };
        match first {
            Incoming::Connected { session_present } => {
                // Return at once so the caller can act on the new connection.
                on_connect(session_present);
                return Some(batch);
            }
            Incoming::Publish(p) => {
                batch.push(Received { publish: p, received_at: chrono::Utc::now() });
                if batch.len() >= max {
                    return Some(batch);
                }
            }
        }
    }
}
