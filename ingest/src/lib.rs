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
use oee_core::topic;
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

/// Starts ingest against the configured broker.
pub fn start(pool: PgPool, mqtt_cfg: &MqttConfig, cfg: &IngestConfig) -> Ingest {
    let client_id =
        if cfg.client_id.is_empty() { format!("{}-ingest", mqtt_cfg.client_id_prefix) } else { cfg.client_id.clone() };
    let mut options = mqtt::client_options(mqtt_cfg, &client_id, false);
    options.set_manual_acks(true);
    let (client, eventloop) = AsyncClient::new(options, 20_000);
    let filters = topic::command_filters()
        .into_iter()
        .map(|f| if cfg.shared_group.is_empty() { f } else { format!("$share/{}/{f}", cfg.shared_group) })
        .collect();
    // Unbounded is bounded in practice: the broker sends no more than its in-flight window of
    // unacknowledged messages, and nothing is acknowledged before it is committed.
    let (tx, rx) = mpsc::unbounded_channel();
    let stats = Arc::new(Stats::default());
    let driver = tokio::spawn(mqtt::drive(eventloop, client.clone(), filters, tx));
    let worker = batch::Worker::new(pool, client, cfg.clone(), stats.clone());
    let processor = tokio::spawn(worker.run(rx));
    Ingest { stats, tasks: vec![driver, processor] }
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
