//! The embedded MQTT broker: a guard that every client talks to, in front of rumqttd, which routes.
//!
//! rumqttd is contained, not trusted: it listens on a private loopback port that only the guard (with
//! credentials made at start) may use, the guard checks every packet first (see [`guard`]), and a
//! supervisor restarts rumqttd within a second if its router thread dies anyway. rumqttd keeps sessions,
//! queued messages and retained messages in memory only, so a restart loses them; PostgreSQL is the system
//! of record and ingest publishes every machine's retained status again when it reconnects.

pub mod auth;
mod budget;
pub mod devices;
mod guard;
mod memory;
mod nodelay;
mod sessions;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use oee_core::config::BrokerConfig;
use rumqttd::{ConnectionSettings, Router, RouterConfig, Server, ServerSettings};
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinHandle;

pub use auth::{Access, DbAccess, Refusal};
pub use guard::GuardStats;

/// Why the broker could not start.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(
        "MQTT port {addr} is already in use ({source}): stop the other broker (sudo systemctl stop mosquitto) \
         or set broker.listen (OEE_BROKER__LISTEN)"
    )]
    PortInUse { addr: SocketAddr, source: std::io::Error },
    #[error("the MQTT broker core on {addr} stopped: {reason}")]
    Stopped { addr: SocketAddr, reason: String },
    #[error("broker configuration: {0}")]
    Config(String),
}

/// Whether rumqttd's router thread is alive: its channel is disconnected once the thread has died.
type RouterAlive = Box<dyn Fn() -> bool + Send + Sync>;

/// What the supervisor tells the rest of the server.
#[derive(Debug, Default)]
pub struct BrokerHealth {
    /// Times the broker core was restarted since the server started.
    pub restarts: AtomicU64,
    /// Whether the core's router is running now.
    pub core_running: std::sync::atomic::AtomicBool,
}

/// A running broker. Its tasks run on the caller's tokio runtime; rumqttd's router has its own thread.
pub struct Broker {
    /// Where clients connect (the guard).
    pub listen: SocketAddr,
    /// The broker core's private listener.
    pub core: SocketAddr,
    pub stats: Arc<GuardStats>,
    pub health: Arc<BrokerHealth>,
    core_login: (String, String),
    tasks: Vec<JoinHandle<()>>,
}

/// What the broker needs from the rest of the server.
pub struct Settings {
    /// Decides who may connect.
    pub access: Arc<dyn Access>,
    /// Client ids beginning with `{prefix}-` are the server's own.
    pub reserved_prefix: String,
}

impl Broker {
    /// Starts the broker core and the guard, and returns once both listen.
    pub async fn start(config: &BrokerConfig, settings: Settings) -> Result<Broker, Error> {
        if config.max_segment_size < 1024 {
            return Err(Error::Config("broker.max_segment_size must be at least 1024 bytes".into()));
        }
        let listener = TcpListener::bind(config.listen)
            .await
            .map_err(|source| Error::PortInUse { addr: config.listen, source })?;
        let listen = listener.local_addr().map_err(|source| Error::PortInUse { addr: config.listen, source })?;
        let core_addr = free_loopback_port().map_err(|e| Error::Config(format!("no free loopback port: {e}")))?;
        let core = Core {
            config: config.clone(),
            addr: core_addr,
            user: format!("guard-{}", uuid::Uuid::new_v4().simple()),
            password: oee_core::password::new_secret(),
        };
        let (router_alive, server_task) = core.start().await?;
        let health = Arc::new(BrokerHealth::default());
        health.core_running.store(true, Ordering::Relaxed);
        let (generation_tx, generation) = watch::channel(0u64);
        let stats = Arc::new(GuardStats::default());
        let devices = Arc::new(devices::Devices::default());
        let (changes_tx, changes) = tokio::sync::mpsc::channel(256);
        let follower = settings.access.follow_changes(changes_tx).map(tokio::spawn);
        let in_step = tokio::spawn(devices::keep_in_step(
            devices.clone(),
            settings.access.clone(),
            changes,
            Duration::from_secs(config.device_recheck_s.max(1)),
        ));
        let guard = Arc::new(guard::Guard {
            upstream: core_addr,
            upstream_user: core.user.clone(),
            upstream_password: core.password.clone(),
            access: settings.access,
            reserved_prefix: settings.reserved_prefix.clone(),
            max_packet: config.max_payload_size,
            connect_timeout: Duration::from_millis(u64::from(config.connection_timeout_ms.max(100))),
            max_connections: config.max_connections.max(1),
            generation,
            stats: stats.clone(),
            devices,
            filters: budget::Book::new(config.max_filters.max(1), "broker.max_filters", "filters"),
            topics: budget::Book::new(config.max_topics.max(1), "broker.max_topics", "topics"),
            retained: budget::Book::new(config.max_retained, "broker.max_retained", "retained topics"),
            sessions: Arc::new(sessions::Sessions::new(&settings.reserved_prefix)),
        });
        let accept = tokio::spawn(accept(listener, guard, Arc::new(Semaphore::new(config.max_connections.max(1)))));
        let core_login = (core.user.clone(), core.password.clone());
        let supervise = tokio::spawn(supervise(core, router_alive, server_task, generation_tx, health.clone()));
        tracing::info!("MQTT broker listening on {listen}");
        let give_back = tokio::spawn(memory::give_back_after_closes(stats.clone()));
        let mut tasks = vec![accept, supervise, in_step, give_back];
        tasks.extend(follower);
        Ok(Broker { listen, core: core_addr, stats, health, core_login, tasks })
    }

    /// The user name and password the core requires: only the guard, and a test that needs to reach the
    /// core behind the guard, use them.
    pub fn core_login(&self) -> (&str, &str) {
        (&self.core_login.0, &self.core_login.1)
    }

    /// Stops accepting connections and closes the core's listener (rumqttd's router thread ends with the
    /// process).
    pub fn stop(&self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Connections beyond `broker.max_connections` that are read at once to be told the broker is full; more
/// than this are closed without a word, so a flood costs a bounded amount.
const REFUSED_AT_ONCE: usize = 64;

/// Accepts client connections, at most `slots` at once. One beyond is answered CONNACK "server unavailable"
/// (MQTT 3.1.1 return code 3), which clients take as "try again later".
async fn accept(listener: TcpListener, guard: Arc<guard::Guard>, slots: Arc<Semaphore>) {
    let refusing = Arc::new(Semaphore::new(REFUSED_AT_ONCE));
    let mut full_warned = false;
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(x) => x,
            Err(e) => {
                // Out of file descriptors, most likely: wait rather than spin.
                tracing::warn!("MQTT listener cannot accept a connection: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let Ok(permit) = slots.clone().try_acquire_owned() else {
            if !full_warned {
                tracing::warn!(
                    "MQTT connection from {peer} refused: broker.max_connections ({}) connections are open \
                     (further refusals are not logged until a connection is accepted again)",
                    guard.max_connections
                );
                full_warned = true;
            }
            if let Ok(turn) = refusing.clone().try_acquire_owned() {
                let guard = guard.clone();
                tokio::spawn(async move {
                    guard.refuse_full(stream, peer).await;
                    drop(turn);
                });
            }
            continue;
        };
        full_warned = false;
        let guard = guard.clone();
        tokio::spawn(async move {
            guard.serve(stream, peer).await;
            drop(permit);
        });
    }
}

/// Watches the core's router; when its thread has died (or its listener stopped), starts a new core on
/// the same port and closes every guarded connection, so clients reconnect to the new core.
async fn supervise(
    core: Core,
    mut router_alive: RouterAlive,
    mut server_task: JoinHandle<()>,
    generation: watch::Sender<u64>,
    health: Arc<BrokerHealth>,
) {
    let mut tick = tokio::time::interval(Duration::from_millis(200));
    loop {
        tick.tick().await;
        if router_alive() && !server_task.is_finished() {
            continue;
        }
        health.core_running.store(false, Ordering::Relaxed);
        tracing::error!("the MQTT broker core stopped (its router thread died): restarting it");
        // Close every connection through the dead core now, before the new one accepts any: a client that
        // reconnects meanwhile is told the service is unavailable and tries again, and no connection to
        // the new core is ever closed by this restart.
        generation.send_modify(|g| *g += 1);
        server_task.abort();
        let _ = (&mut server_task).await;
        let mut wait = Duration::from_millis(50);
        loop {
            match core.start().await {
                Ok((alive, task)) => {
                    router_alive = alive;
                    server_task = task;
                    break;
                }
                Err(e) => {
                    tracing::error!("cannot restart the MQTT broker core: {e}; retrying in {wait:?}");
                    tokio::time::sleep(wait).await;
                    wait = (wait * 2).min(Duration::from_secs(2));
                }
            }
        }
        health.restarts.fetch_add(1, Ordering::Relaxed);
        health.core_running.store(true, Ordering::Relaxed);
        tracing::warn!(
            "the MQTT broker core was restarted: sessions, queued messages and retained statuses it held are gone; \
             clients reconnect and ingest publishes the statuses again"
        );
    }
}

/// rumqttd on a private loopback port, with credentials only the guard knows.
struct Core {
    config: BrokerConfig,
    addr: SocketAddr,
    user: String,
    password: String,
}

impl Core {
    /// Starts a router and its listener; returns once the listener is bound.
    async fn start(&self) -> Result<(RouterAlive, JoinHandle<()>), Error> {
        let (filter_segment, filter_segments) = budget::filter_log(self.config.filter_log_bytes);
        let router_config = RouterConfig {
            max_connections: self.config.max_connections.saturating_add(16),
            max_outgoing_packet_count: 200,
            max_segment_size: filter_segment,
            max_segment_count: filter_segments,
            custom_segment: Some(budget::server_logs(self.config.max_segment_size, self.config.max_segment_count)),
            ..RouterConfig::default()
        };
        let router_tx = Router::new(0, router_config).spawn();
        let settings = ServerSettings {
            name: "core".into(),
            listen: self.addr,
            tls: None,
            next_connection_delay_ms: 0,
            connections: ConnectionSettings {
                connection_timeout_ms: 5_000,
                // The guard has checked sizes; its packets carry at most the configured payload and a topic.
                max_payload_size: self.config.max_payload_size + 70 * 1024,
                max_inflight_count: 500,
                auth: Some(HashMap::from([(self.user.clone(), self.password.clone())])),
                external_auth: None,
                dynamic_filters: true,
            },
        };
        let addr = self.addr;
        let mut server = Server::new(settings, router_tx.clone(), rumqttd::protocol::v4::V4);
        let task = tokio::spawn(async move {
            if let Err(e) = server.start(rumqttd::LinkType::Remote).await {
                tracing::error!("MQTT broker core listener on {addr} stopped: {e}");
            }
        });
        // rumqttd binds inside its task and offers no signal: wait until this process has a listener there.
        for _ in 0..200 {
            if task.is_finished() {
                return Err(Error::Stopped { addr, reason: "its listener could not start (see log)".into() });
            }
            if nodelay::set_on_listener(addr).is_ok() {
                let alive: RouterAlive = Box::new(move || !router_tx.is_disconnected());
                return Ok((alive, task));
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        task.abort();
        Err(Error::Stopped { addr, reason: "its listener did not bind within 2 s".into() })
    }
}

/// A loopback port free now.
fn free_loopback_port() -> std::io::Result<SocketAddr> {
    std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()
}
