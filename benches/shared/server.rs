//! The server a benchmark runs: on loopback only, with its own embedded PostgreSQL under `dir`.

use std::net::SocketAddr;
use std::path::Path;

use oee_core::Config;

/// Defaults with the data directory under `dir`, the plant on UTC, HTTP and MQTT on free loopback ports,
/// and PostgreSQL's `shared_buffers` at 512 MB. Each benchmark adds its own database settings.
pub fn loopback_config(dir: &Path) -> Config {
    let mut c = Config { data_dir: dir.join("data"), ..Config::default() };
    c.plant.timezone = "UTC".into();
    c.http.listen = SocketAddr::from(([127, 0, 0, 1], 0));
    let mqtt_port = free_port();
    c.broker.listen = SocketAddr::from(([127, 0, 0, 1], mqtt_port));
    c.mqtt.host = "127.0.0.1".into();
    c.mqtt.port = mqtt_port;
    c.tablets.discovery_listen = "127.0.0.1:0".into();
    c.database.embedded.settings.insert("shared_buffers".into(), "512MB".into());
    c
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("find a free loopback port").port()
}
