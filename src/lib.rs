//! Wiring of the `oee-server` binary: config → database → services → shutdown. The services themselves
//! live in their crates; this only starts the chosen subset in one process.

pub mod http;

use std::net::SocketAddr;
use std::path::Path;
use std::str::FromStr;

use anyhow::{Context, bail};
use oee_core::Config;
use oee_core::store::{Database, seed};

/// The services one process can run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Services {
    pub broker: bool,
    pub ingest: bool,
    pub bridge: bool,
    pub web: bool,
}

impl Services {
    /// Every service: what `serve` runs by default.
    pub const ALL: Services = Services { broker: true, ingest: true, bridge: true, web: true };

    fn needs_http(&self) -> bool {
        self.bridge || self.web
    }
}

impl FromStr for Services {
    type Err = String;
    /// A comma-separated list such as `ingest,bridge`.
    fn from_str(s: &str) -> Result<Services, String> {
        let mut out = Services { broker: false, ingest: false, bridge: false, web: false };
        for name in s.split(',').map(str::trim).filter(|n| !n.is_empty()) {
            match name {
                "broker" => out.broker = true,
                "ingest" => out.ingest = true,
                "bridge" => out.bridge = true,
                "web" => out.web = true,
                "all" => out = Services::ALL,
                other => return Err(format!("unknown service `{other}`: choose from broker, ingest, bridge, web")),
            }
        }
        if out == (Services { broker: false, ingest: false, bridge: false, web: false }) {
            return Err("name at least one service: broker, ingest, bridge, web".into());
        }
        Ok(out)
    }
}

/// A running server.
pub struct App {
    /// Where HTTP is served, when the bridge or web runs.
    pub http_addr: Option<SocketAddr>,
    /// Where the embedded broker listens, when it runs.
    pub mqtt_addr: Option<SocketAddr>,
    /// Where tablet discovery is answered, when it runs (with the bridge).
    pub discovery_addr: Option<SocketAddr>,
    pub db: Database,
    pub ingest_stats: Option<std::sync::Arc<oee_ingest::Stats>>,
    broker: Option<oee_broker::Broker>,
    ingest: Option<oee_ingest::Ingest>,
    bridge: Option<oee_bridge::Bridge>,
    web: Option<oee_web::Web>,
    discovery: Option<oee_bridge::discovery::Discovery>,
    http: Option<(tokio::sync::oneshot::Sender<()>, tokio::task::JoinHandle<()>)>,
}

impl App {
    /// Opens the database (seeding it on first run) and starts the chosen services.
    pub async fn start(config: &Config, services: Services) -> anyhow::Result<App> {
        let tz = config.plant_timezone()?;
        // Every connection is an open file: the configured caps, not the default soft limit, should decide.
        let connections = if services.needs_http() { config.http.max_connections } else { 0 }
            + if services.broker { config.broker.max_connections } else { 0 };
        http::raise_open_files_limit(connections);
        // Bind HTTP first: a taken port is the commonest start-up failure and should not wait for the
        // database.
        let http_listener = if services.needs_http() {
            Some(tokio::net::TcpListener::bind(config.http.listen).await.with_context(|| {
                format!(
                    "cannot listen for HTTP on {}: is another server using the port? Set http.listen (OEE_HTTP__LISTEN)",
                    config.http.listen
                )
            })?)
        } else {
            None
        };
        let db = Database::open(config).await?;
        if let Some(storage) = db.storage() {
            tracing::info!("{storage}");
        }
        let report = seed::seed_first_run(&db.pool, chrono::Utc::now()).await?;
        if report.first_run {
            tracing::info!(timezone = %tz, "first start: seeded activity codes 1-4, Group 1 and the 9-5 shift");
        }
        if report.created_admin {
            tracing::warn!(
                "created the administrator `{}` with the default password `{}`: sign in at /login, which asks for a \
                 new one, or set one now with `oee-server user passwd {}`",
                seed::DEFAULT_ADMIN,
                seed::DEFAULT_ADMIN_PASSWORD,
                seed::DEFAULT_ADMIN
            );
        }

        // The server's own MQTT clients log in as the server, with the secret kept in the database, unless
        // credentials for an external broker are configured.
        let server_secret = oee_core::store::device::server_secret(&db.pool).await?;
        let mut mqtt = config.mqtt.clone();
        if mqtt.username.is_empty() {
            mqtt.username = oee_core::access::SERVER_USER.into();
            mqtt.password = server_secret.clone();
        }
        let broker = if services.broker {
            let access = oee_broker::DbAccess {
                pool: db.pool.clone(),
                server_secret: server_secret.clone(),
                allow_anonymous: config.broker.allow_anonymous,
            };
            let settings = oee_broker::Settings {
                access: std::sync::Arc::new(access),
                reserved_prefix: config.mqtt.client_id_prefix.clone(),
            };
            Some(oee_broker::Broker::start(&config.broker, settings).await?)
        } else {
            None
        };
        let seal = std::sync::Arc::new(oee_core::access::ServerSeal::new(&server_secret));
        let ingest = services.ingest.then(|| {
            let maintenance = oee_ingest::maintenance::Settings::of(config);
            oee_ingest::start(db.pool.clone(), &mqtt, &config.ingest, &config.scheduler, &maintenance, tz, seal.clone())
        });
        // Until ingest's subscriptions exist, a broker keeps nothing for it: wait for them (bounded).
        if let Some(i) = &ingest
            && !i.ready(std::time::Duration::from_secs(10)).await
        {
            tracing::warn!(
                "ingest is not subscribed at {}:{} yet; it keeps trying (commands sent meanwhile may be lost)",
                config.mqtt.host,
                config.mqtt.port
            );
        }
        let bridge = services
            .bridge
            .then(|| oee_bridge::start(db.pool.clone(), &mqtt, &config.bridge, &config.tablets, tz, seal.clone()));

        // The web side's forms send their changes to ingest as the bridge does, and wait as long.
        let web = services.web.then(|| {
            oee_web::start(
                db.pool.clone(),
                tz,
                config,
                mqtt.clone(),
                std::time::Duration::from_millis(config.bridge.reply_timeout_ms.max(1)),
                seal.clone(),
                bridge.as_ref().map(|_| oee_bridge::openapi()),
            )
        });

        let mut http = None;
        let mut http_addr = None;
        if let Some(listener) = http_listener {
            let mut router = axum::Router::new();
            if let Some(b) = &bridge {
                router = router.merge(b.router.clone());
            }
            if let Some(w) = &web {
                router = router.merge(w.router.clone());
            }
            http_addr = Some(listener.local_addr()?);
            let limits = http::Limits::of(config);
            let router = http::with_body_limits(router, limits);
            let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
            let task = tokio::spawn(http::serve(listener, router, limits, stop_rx));
            tracing::info!("HTTP listening on {}", http_addr.unwrap_or(config.http.listen));
            http = Some((stop_tx, task));
        }
        let discovery = match (&bridge, config.tablets.discovery_addr()?) {
            (Some(_), Some(addr)) => {
                let port = match config.tablets.external_http_port {
                    0 => http_addr.map_or(config.http.listen.port(), |a| a.port()),
                    p => p,
                };
                match oee_bridge::discovery::start(addr, port, config.tablets.discovery_answers_per_s).await {
                    Ok(d) => Some(d),
                    Err(e) => {
                        // Tablets can still be given the address by hand: the server runs on.
                        tracing::warn!(
                            "tablet discovery is off: cannot listen on UDP {addr}: {e} (set tablets.discovery_listen)"
                        );
                        None
                    }
                }
            }
            _ => None,
        };
        if !services.broker && (services.ingest || services.bridge || services.web) {
            tracing::info!("using the MQTT broker at {}:{}", config.mqtt.host, config.mqtt.port);
        }
        Ok(App {
            http_addr,
            mqtt_addr: broker.as_ref().map(|b| b.listen),
            discovery_addr: discovery.as_ref().map(|d| d.local_addr),
            ingest_stats: ingest.as_ref().map(|i| i.stats.clone()),
            db,
            broker,
            ingest,
            bridge,
            web,
            discovery,
            http,
        })
    }

    /// The embedded broker, when it runs.
    pub fn broker(&self) -> Option<&oee_broker::Broker> {
        self.broker.as_ref()
    }

    /// Stops HTTP (finishing requests in flight), then ingest, the broker and the database.
    pub async fn stop(mut self) {
        if let Some((stop, task)) = self.http.take() {
            let _ = stop.send(());
            let _ = tokio::time::timeout(std::time::Duration::from_secs(10), task).await;
        }
        drop(self.discovery.take());
        drop(self.bridge.take());
        drop(self.web.take());
        if let Some(ingest) = self.ingest.take() {
            ingest.shutdown().await;
        }
        if let Some(b) = self.broker.take() {
            b.stop();
        }
        self.db.close().await;
    }
}

/// Opens the configured database for a one-off command (machine/user administration); the embedded
/// cluster of a server running beside it is used and left running. When there is no database yet, nothing
/// is created: the error says where the command looked (the data directory and the config file, as given
/// by `config_file`) and what to do.
pub async fn open_database(config: &Config, config_file: Option<&Path>) -> anyhow::Result<Database> {
    match Database::open_for_command(config).await {
        Ok(db) => Ok(db),
        Err(e @ oee_core::Error::NoDatabase(_)) => {
            let data_dir = std::path::absolute(&config.data_dir).unwrap_or_else(|_| config.data_dir.clone());
            let file = match config_file {
                Some(f) => format!("the config file {}", f.display()),
                None => "no config file (neither --config nor OEE_CONFIG was given)".to_string(),
            };
            bail!(
                "{e}; nothing was created. Looked with data_dir {} and {file}. Run `oee-server init` to create \
                 the database (`oee-server serve` also creates it on its first start), or point data_dir \
                 (OEE_DATA_DIR) or database.url at the existing one",
                data_dir.display()
            )
        }
        Err(e) => Err(e.into()),
    }
}

/// What `oee-server init` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InitReport {
    /// Where the database is, for people.
    pub place: String,
    pub seed: seed::SeedReport,
}

/// Creates the database if it does not exist (the embedded cluster when no `database.url` is set), migrates
/// it and seeds it as the server's first start does; on an initialised database it changes nothing.
pub async fn init_database(config: &Config) -> anyhow::Result<InitReport> {
    let db = Database::open_for_init(config).await?;
    let result = seed::seed_first_run(&db.pool, chrono::Utc::now()).await;
    db.close().await;
    let place = if config.database.url.trim().is_empty() {
        let dir = config.embedded_db_dir();
        format!("the embedded PostgreSQL cluster in {}", std::path::absolute(&dir).unwrap_or(dir).display())
    } else {
        "database.url".to_string()
    };
    Ok(InitReport { place, seed: result? })
}

/// Reads a password from standard input (one line), for `user add` and `user passwd`.
pub fn read_password_line() -> anyhow::Result<String> {
    let mut line = String::new();
    std::io::stdin().read_line(&mut line).context("cannot read the password from standard input")?;
    let pw = line.trim_end_matches(['\r', '\n']).to_string();
    if pw.is_empty() {
        bail!("no password given: pass --password or type it on standard input");
    }
    Ok(pw)
}

#[cfg(test)]
mod tests {
    use super::Services;

    #[test]
    fn only_takes_a_comma_separated_subset() {
        let s: Services = "ingest, bridge".parse().unwrap();
        assert_eq!(s, Services { broker: false, ingest: true, bridge: true, web: false });
        assert_eq!("all".parse::<Services>().unwrap(), Services::ALL);
        assert!("ingest,frontend".parse::<Services>().unwrap_err().contains("frontend"));
        assert!("".parse::<Services>().is_err());
    }
}
