//! The embedded MQTT broker: rumqttd with one MQTT 3.1.1 listener, configured from our config file.
//!
//! rumqttd keeps sessions, queued messages and retained messages in memory only; PostgreSQL is the
//! system of record and ingest republishes every machine's retained status when it starts.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;

use oee_core::config::BrokerConfig;
mod nodelay;

use rumqttd::{ConnectionSettings, Router, RouterConfig, Server, ServerSettings};

/// Why the broker could not start.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(
        "MQTT port {addr} is already in use ({source}): stop the other broker (sudo systemctl stop mosquitto) \
         or set broker.listen (OEE_BROKER__LISTEN)"
    )]
    PortInUse { addr: SocketAddr, source: std::io::Error },
    #[error("the MQTT broker on {addr} stopped: {reason}")]
    Stopped { addr: SocketAddr, reason: String },
    #[error("broker configuration: {0}")]
    Config(String),
}

/// A running broker. The listener runs as a task on the caller's tokio runtime; the router has its own
/// thread, as rumqttd requires.
pub struct Broker {
    pub listen: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl Broker {
    /// Starts the router and the listener, and returns once the port is bound.
    pub async fn start(config: &BrokerConfig) -> Result<Broker, Error> {
        if config.max_segment_size < 1024 {
            return Err(Error::Config("broker.max_segment_size must be at least 1024 bytes".into()));
        }
        // rumqttd binds inside its own task and only logs a failure, so check the port first to give a
        // clear error.
        let probe = std::net::TcpListener::bind(config.listen)
            .map_err(|source| Error::PortInUse { addr: config.listen, source })?;
        drop(probe);

        let router_config = RouterConfig {
            max_connections: config.max_connections,
            max_outgoing_packet_count: 200,
            max_segment_size: config.max_segment_size,
            max_segment_count: config.max_segment_count,
            ..RouterConfig::default()
        };
        let router_tx = Router::new(0, router_config).spawn();
        let settings = ServerSettings {
            name: "mqtt-v4".into(),
            listen: config.listen,
            tls: None,
            next_connection_delay_ms: 0,
            connections: ConnectionSettings {
                connection_timeout_ms: config.connection_timeout_ms,
                max_payload_size: config.max_payload_size,
                max_inflight_count: 500,
                auth: None::<HashMap<String, String>>,
                external_auth: None,
                dynamic_filters: true,
            },
        };
        let listen = config.listen;
        let mut server = Server::new(settings, router_tx, rumqttd::protocol::v4::V4);
        let mut task = tokio::spawn(async move {
            if let Err(e) = server.start(rumqttd::LinkType::Remote).await {
                tracing::error!("MQTT listener on {listen} stopped: {e}");
            }
        });
        // Binding is the listener's first step; a failure (a race with another process) ends the task at
        // once. Connecting to check would be logged by rumqttd as a broken client.
        tokio::select! {
            _ = &mut task => {
                return Err(Error::Stopped { addr: listen, reason: "the listener could not start (see log)".into() });
            }
            _ = tokio::time::sleep(Duration::from_millis(50)) => {}
        }
        if let Err(e) = nodelay::set_on_listener(listen) {
            tracing::warn!("cannot turn off Nagle's algorithm on the MQTT listener ({e}): expect slower round trips");
        }
        tracing::info!("MQTT broker listening on {listen}");
        Ok(Broker { listen, task })
    }

    /// Stops accepting connections (the router thread ends with the process).
    pub fn stop(&self) {
        self.task.abort();
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        self.task.abort();
    }
}
