//! The HTTP device bridge: the reference system's device API, unchanged for its clients. Every write is
//! published as a command to ingest over MQTT, and the HTTP answer waits for ingest's verdict, so an
//! HTTP 200 means the change is committed.

mod access;
mod body;
mod command;
mod device;
pub mod discovery;
mod error;
mod openapi;
mod pin_guard;
mod tablet;
mod ws;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::handler::Handler;
use axum::http::Method;
use axum::routing::MethodRouter;
use oee_core::config::{BridgeConfig, MqttConfig, TabletsConfig};
use sqlx::PgPool;
use tokio::task::JoinHandle;

pub use body::BodyFault;
pub use error::ApiError;
use oee_core::request::Replies;
pub use openapi::openapi;

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
    let (replies, tasks) = Replies::start(mqtt, "bridge", true);
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
    let mut router = Router::new();
    for route in routes() {
        router = router.route(route.path, route.handler);
    }
    let router = router.with_state(state);
    Bridge { router, tasks }
}

/// One route of the bridge: method, path (axum's syntax) and handler.
pub(crate) struct Route {
    method: Method,
    path: &'static str,
    handler: MethodRouter<BridgeState>,
}

impl Route {
    pub(crate) fn get<H: Handler<T, BridgeState>, T: 'static>(path: &'static str, h: H) -> Route {
        Route { method: Method::GET, path, handler: axum::routing::get(h) }
    }

    pub(crate) fn post<H: Handler<T, BridgeState>, T: 'static>(path: &'static str, h: H) -> Route {
        Route { method: Method::POST, path, handler: axum::routing::post(h) }
    }
}

/// Every route of the bridge: the router is built from this list and [`route_table`] reads it, so the two
/// cannot differ.
fn routes() -> Vec<Route> {
    let mut routes = vec![
        Route::post("/api/machine-state-change", device::machine_state_change),
        Route::get("/api/activity-codes", device::activity_codes),
        Route::post("/api/v1/machines/{machine}/{*command}", command::machine_command),
        Route::get("/check-state", tablet::check_state),
        Route::post("/android-login", tablet::login),
        Route::post("/android-logout", tablet::logout),
        Route::post("/android-start-job", tablet::start_job),
        Route::post("/android-update", tablet::update),
        Route::post("/android-end-job", tablet::end_job),
        Route::post("/pausable-pause-job", tablet::pause_job),
        Route::post("/pausable-resume-job", tablet::resume_job),
        Route::post("/pausable-android-update", tablet::pausable_update),
        Route::post("/android-update-quantity", tablet::update_quantity),
        Route::post("/end_all_sessions", tablet::end_all_sessions),
        Route::post("/api/force-logout/{input_device_id}", tablet::force_logout),
        Route::get("/api/v1/tablets/machines", tablet::machines),
        Route::post("/api/v1/tablets/pair", tablet::pair),
    ];
    routes.extend(ws::routes());
    routes
}

/// Every bridge route's method and path (axum's syntax), for tests that compare them with the API document.
pub fn route_table() -> Vec<(Method, &'static str)> {
    routes().into_iter().map(|r| (r.method, r.path)).collect()
}
