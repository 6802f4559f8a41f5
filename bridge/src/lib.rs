//! The HTTP device bridge: the reference system's device API, unchanged for its clients. Every write is
//! published as a command to ingest over MQTT, and the HTTP answer waits for ingest's verdict, so an
//! HTTP 200 means the change is committed.

mod access;
mod body;
mod command;
mod device;
pub mod discovery;
mod error;
mod pin_guard;
mod replies;
mod tablet;
mod ws;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::routing::{get, post};
use oee_core::config::{BridgeConfig, MqttConfig, TabletsConfig};
use sqlx::PgPool;
use tokio::task::JoinHandle;

pub use body::BodyFault;
pub use error::ApiError;
use replies::Replies;

/// Shared by the bridge's handlers.
#[derive(Clone)]
pub(crate) struct BridgeState {
    pool: PgPool,
    replies: Arc<Replies>,
    timeout: Duration,
    tablets: Arc<TabletsConfig>,
    /// The plant's time zone (tablets give times of day).
    tz: chrono_tz::Tz,
    /// Where `tablets.job_validation_query` runs, when job numbers are checked (`Err`: its URL is unusable).
    job_numbers: Option<Result<PgPool, String>>,
    /// Wrong tablet passwords per user.
    pins: Arc<pin_guard::PinGuard>,
    /// Devices may send commands over HTTP without a token (`bridge.open_device_api`).
    open_device_api: bool,
    /// Seals the commands only the server may send (tablet sessions).
    seal: Arc<oee_core::access::ServerSeal>,
    /// When each tablet's `/check-state` was last recorded as "last seen".
    last_seen: Arc<tablet::LastSeen>,
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
pub fn start(
    pool: PgPool,
    mqtt: &MqttConfig,
    cfg: &BridgeConfig,
    tablets: &TabletsConfig,
    tz: chrono_tz::Tz,
    seal: Arc<oee_core::access::ServerSeal>,
) -> Bridge {
    let (replies, tasks) = Replies::start(mqtt);
    let job_numbers = tablet::job_number_source(&pool, tablets);
    let state = BridgeState {
        pool,
        replies,
        timeout: Duration::from_millis(cfg.reply_timeout_ms.max(1)),
        tablets: Arc::new(tablets.clone()),
        tz,
        job_numbers,
        pins: Arc::default(),
        open_device_api: cfg.open_device_api,
        seal,
        last_seen: Arc::default(),
    };
    let router = Router::new()
        .route("/api/machine-state-change", post(device::machine_state_change))
        .route("/api/activity-codes", get(device::activity_codes))
        .route("/api/v1/machines/{machine}/{*command}", post(command::machine_command))
        .route("/check-state", get(tablet::check_state))
        .route("/android-login", post(tablet::login))
        .route("/android-logout", post(tablet::logout))
        .route("/android-start-job", post(tablet::start_job))
        .route("/android-update", post(tablet::update))
        .route("/android-end-job", post(tablet::end_job))
        .route("/pausable-pause-job", post(tablet::pause_job))
        .route("/pausable-resume-job", post(tablet::resume_job))
        .route("/pausable-android-update", post(tablet::pausable_update))
        .route("/android-update-quantity", post(tablet::update_quantity))
        .route("/end_all_sessions", post(tablet::end_all_sessions))
        .route("/api/force-logout/{input_device_id}", post(tablet::force_logout))
        .route("/api/v1/tablets/machines", get(tablet::machines))
        .route("/api/v1/tablets/pair", post(tablet::pair))
        .merge(ws::routes())
        .with_state(state);
    Bridge { router, tasks }
}
