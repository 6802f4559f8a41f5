//! The HTTP device bridge: the reference system's device API, unchanged for its clients. Every write is
//! published as a command to ingest over MQTT, and the HTTP answer waits for ingest's verdict, so an
//! HTTP 200 means the change is committed.

mod command;
mod device;
pub mod discovery;
mod error;
mod replies;
mod ws;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::routing::{get, post};
use oee_core::config::{BridgeConfig, MqttConfig};
use sqlx::PgPool;
use tokio::task::JoinHandle;

pub use error::ApiError;
use replies::Replies;

/// Shared by the bridge's handlers.
#[derive(Clone)]
pub(crate) struct BridgeState {
    pool: PgPool,
    replies: Arc<Replies>,
    timeout: Duration,
}

/// A running bridge: its routes, and the MQTT tasks behind them (stopped on drop).
pub struct Bridge {
    pub router: Router,
    tasks: Vec<JoinHandle<()>>,
}

impl Drop for Bridge {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

/// Connects the bridge's MQTT client and builds its routes.
pub fn start(pool: PgPool, mqtt: &MqttConfig, cfg: &BridgeConfig) -> Bridge {
    let (replies, tasks) = Replies::start(mqtt);
    let state = BridgeState { pool, replies, timeout: Duration::from_millis(cfg.reply_timeout_ms.max(1)) };
    let router = Router::new()
        .route("/api/machine-state-change", post(device::machine_state_change))
        .route("/api/activity-codes", get(device::activity_codes))
        .route("/api/v1/machines/{machine}/{*command}", post(command::machine_command))
        .merge(ws::routes())
        .with_state(state);
    Bridge { router, tasks }
}
