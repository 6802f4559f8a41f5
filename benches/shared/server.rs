//! The server a benchmark runs: on loopback only, with its own embedded PostgreSQL under `dir`; and what
//! every bench binary does first (logging, a watchdog, its directory).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

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
    // The benches' load clients connect without credentials, as the reference system's devices did.
    c.broker.allow_anonymous = true;
    c.bridge.open_device_api = true;
    c.database.embedded.settings.insert("shared_buffers".into(), "512MB".into());
    c
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("find a free loopback port").port()
}

/// Logs to stderr with `default_filter` unless `RUST_LOG` says otherwise.
pub fn start_logging(default_filter: &str) {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_filter)),
        )
        .with_writer(std::io::stderr)
        .init();
}

/// Ends the process if the bench `name` still runs after `after`, so that no run goes on forever.
pub fn start_watchdog(name: &'static str, after: Duration) {
    std::thread::spawn(move || {
        std::thread::sleep(after);
        eprintln!("{name} bench: still running after {after:?}; giving up");
        // Exiting kills the embedded PostgreSQL too (it is tied to this process by a parent-death signal).
        std::process::exit(2);
    });
}

/// A fresh directory `<temp>/<prefix>-<pid>` for this run, made ready by [`prepare_dir`]; directories of
/// earlier runs whose process is gone are removed.
pub fn fresh_dir(prefix: &str) -> PathBuf {
    let root = std::env::temp_dir();
    if let Ok(entries) = std::fs::read_dir(&root) {
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().to_string();
            if let Some(pid) = name.strip_prefix(&format!("{prefix}-")).and_then(|p| p.parse::<u32>().ok())
                && !Path::new(&format!("/proc/{pid}")).exists()
            {
                let _ = std::fs::remove_dir_all(e.path());
            }
        }
    }
    let dir = root.join(format!("{prefix}-{}", std::process::id()));
    prepare_dir(&dir);
    dir
}

/// Creates `dir` and its `data` directory, which the embedded cluster may pass through.
pub fn prepare_dir(dir: &Path) {
    use std::os::unix::fs::PermissionsExt;
    let data = dir.join("data");
    std::fs::create_dir_all(&data).unwrap_or_else(|e| panic!("cannot create {}: {e}", data.display()));
    // When this runs as root the cluster runs as `postgres`, which must be able to pass through.
    for d in [dir, data.as_path()] {
        std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o755))
            .unwrap_or_else(|e| panic!("cannot chmod {}: {e}", d.display()));
    }
}
