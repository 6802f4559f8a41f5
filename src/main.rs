//! `oee-server`: the command line. `serve` runs the server; `machine`, `shift`, `user`, `tablet` and `device`
//! administer it.

use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};
use oee_core::Config;
use oee_core::shift::{DAY_NAMES, describe_day, parse_day_hours, parse_days};
use oee_core::store::{device, machine, schedule, tablet, user};
use oee_server::{App, Services, open_database, read_password_line};

#[derive(Parser)]
#[command(name = "oee-server", version, about = "OEE platform server")]
struct Cli {
    /// TOML config file (see config/oee-server.toml); OEE_… environment variables override it.
    #[arg(long, global = true, env = "OEE_CONFIG")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the server: embedded broker, ingest, device bridge and web (or the subset given by --only).
    Serve {
        /// Comma-separated services to run: broker, ingest, bridge, web.
        #[arg(long, default_value = "all")]
        only: Services,
    },
    /// Machines.
    #[command(subcommand)]
    Machine(MachineCmd),
    /// Shift patterns: when machines are in shift (planned to work). A running server applies changes at once.
    #[command(subcommand)]
    Shift(ShiftCmd),
    /// Users (operators log in on tablets with their user id and password).
    #[command(subcommand)]
    User(UserCmd),
    /// Operator tablets: a tablet registers itself the first time it asks the server; here they are paired.
    #[command(subcommand)]
    Tablet(TabletCmd),
    /// Devices (PLCs, sensors, HTTP devices): each gets an MQTT password and an HTTP token for its machines.
    #[command(subcommand)]
    Device(DeviceCmd),
}

#[derive(Subcommand)]
enum DeviceCmd {
    /// Add a device for some machines (names or ids); prints its MQTT user name and password and its HTTP
    /// token, which are shown only this once.
    Add {
        /// The device's name: its MQTT user name (letters, digits, `-`, `_`, `.`).
        name: String,
        /// The machines it reports for (names or ids).
        #[arg(long = "machine", required = true)]
        machines: Vec<String>,
    },
    /// List devices and their machines.
    List,
    /// Revoke a device (name or id): its password and token stop working, and its open MQTT connections close.
    Revoke { device: String },
    /// Print an ACL file for an external Mosquitto (`acl_file`) that gives each device the same rights the
    /// embedded broker enforces.
    MosquittoAcl,
}

#[derive(Subcommand)]
enum TabletCmd {
    /// List tablets: their machine and who is logged in.
    List,
    /// Pair a tablet (name, id or UUID) with a machine (name or id); the machine must have no other tablet.
    Pair { tablet: String, machine: String },
    /// Unpair a tablet from its machine.
    Unpair { tablet: String },
    /// Let new tablets register (and, with tablets.auto_pair, pair themselves) for some minutes, up to
    /// tablets.window_max_new of them.
    OpenWindow {
        #[arg(long, default_value_t = 10)]
        minutes: u32,
    },
    /// Stop new tablets from registering.
    CloseWindow,
}

#[derive(Subcommand)]
enum ShiftCmd {
    /// List shift patterns: their hours on each day and the machines that follow them.
    List,
    /// Add a shift pattern, with no shifts on any day until they are set.
    Add { name: String },
    /// Set the hours of some days of a pattern, e.g. `shift set 9-5 weekdays 0800-1630`, `shift set 9-5 sun off`.
    Set {
        /// The pattern's name.
        shift: String,
        /// mon, tue, wed, thu, fri, sat, sun, weekdays, weekend or all; several separated by commas.
        days: String,
        /// HHMM-HHMM (the end may be 2400; a night shift is 2200-2400 on one day and 0000-0600 on the next),
        /// or `off` for no shifts that day (the day keeps the state the previous day ended in).
        hours: String,
    },
}

#[derive(Subcommand)]
enum MachineCmd {
    /// Add a machine (first group, first shift pattern); prints its id and MQTT topic name.
    Add { name: String },
    /// List machines.
    List,
    /// Make a machine (name or id) follow a shift pattern from now on.
    Shift { machine: String, shift: String },
}

#[derive(Subcommand)]
enum UserCmd {
    /// Add a user. The password comes from --password or one line of standard input.
    Add {
        name: String,
        #[arg(long)]
        admin: bool,
        #[arg(long)]
        password: Option<String>,
    },
    /// Change a user's password (from --password or one line of standard input).
    Passwd {
        name: String,
        #[arg(long)]
        password: Option<String>,
    },
    /// List users.
    List,
}

#[tokio::main]
async fn main() {
    let cli = Cli::parse();
    // The server logs what it does; the administration commands print their answer and only warnings.
    let default_filter = match cli.command {
        Command::Serve { .. } => "info,rumqttd=warn,rumqttd::server=off,sqlx=warn,tokio_cron_scheduler=warn",
        _ => "warn,rumqttd=off",
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_filter)),
        )
        .init();
    let code = match run(cli).await {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("error: {e:#}");
            1
        }
    };
    // Exit here rather than by dropping the runtime, which would wait for any blocking task still running
    // (a stop must end in bounded time whatever state the services are in).
    std::process::exit(code)
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let config = Config::load(cli.config.as_deref())?;
    match cli.command {
        Command::Serve { only } => serve(&config, only).await,
        Command::Machine(cmd) => {
            let db = open_database(&config).await?;
            let result = machine_cmd(&config, &db.pool, cmd).await;
            db.close().await;
            result
        }
        Command::Shift(cmd) => {
            let db = open_database(&config).await?;
            let result = shift_cmd(&db.pool, cmd).await;
            db.close().await;
            result
        }
        Command::User(cmd) => {
            let db = open_database(&config).await?;
            let result = user_cmd(&db.pool, cmd).await;
            db.close().await;
            result
        }
        Command::Tablet(cmd) => {
            let db = open_database(&config).await?;
            let result = tablet_cmd(&db.pool, cmd).await;
            db.close().await;
            result
        }
        Command::Device(cmd) => {
            let db = open_database(&config).await?;
            let result = device_cmd(&config, &db.pool, cmd).await;
            db.close().await;
            result
        }
    }
}

async fn serve(config: &Config, only: Services) -> anyhow::Result<()> {
    let app = App::start(config, only).await?;
    tracing::info!("oee-server {} running; Ctrl-C stops it", env!("CARGO_PKG_VERSION"));
    shutdown_signal().await?;
    tracing::info!("stopping");
    // Requests in flight get 10 s to finish; whatever still hangs after this is left behind.
    const STOP_LIMIT: std::time::Duration = std::time::Duration::from_secs(20);
    if tokio::time::timeout(STOP_LIMIT, app.stop()).await.is_err() {
        tracing::warn!("the services did not stop within {STOP_LIMIT:?}: exiting anyway");
    }
    Ok(())
}

async fn shutdown_signal() -> anyhow::Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).context("cannot watch SIGTERM")?;
    let mut int = signal(SignalKind::interrupt()).context("cannot watch SIGINT")?;
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
    Ok(())
}

async fn machine_cmd(config: &Config, pool: &sqlx::PgPool, cmd: MachineCmd) -> anyhow::Result<()> {
    match cmd {
        MachineCmd::Add { name } => {
            let m = machine::add_machine(pool, &name, config.plant_timezone()?, chrono::Utc::now()).await?;
            println!(
                "added machine {} `{}`: MQTT topic oee/v1/machines/{}/state (or oee/v1/machines/{}/state)",
                m.id,
                m.name,
                m.id,
                m.topic_name.as_deref().unwrap_or("-")
            );
        }
        MachineCmd::List => {
            println!("{:>4}  {:<24} {:<24} {:<12} {:<10} current", "id", "name", "topic name", "group", "shift");
            for m in machine::list_machines(pool).await? {
                println!(
                    "{:>4}  {:<24} {:<24} {:<12} {:<10} {}",
                    m.id,
                    m.name,
                    m.topic_name.unwrap_or_default(),
                    m.group_name.unwrap_or_default(),
                    m.shift_name.unwrap_or_default(),
                    m.activity_code
                );
            }
        }
        MachineCmd::Shift { machine, shift } => {
            let id = schedule::set_machine_shift(pool, &machine, &shift).await?;
            println!("machine {id} follows shift pattern `{}` from now on", shift.trim());
        }
    }
    Ok(())
}

async fn device_cmd(config: &Config, pool: &sqlx::PgPool, cmd: DeviceCmd) -> anyhow::Result<()> {
    match cmd {
        DeviceCmd::Add { name, machines } => {
            let mut ids = Vec::with_capacity(machines.len());
            for m in &machines {
                ids.push(machine::machine_id_by_name(pool, m).await?);
            }
            let d = device::add(pool, &name, &ids).await?;
            println!("device {} `{}` for machines {:?}", d.id, d.name, ids);
            println!("MQTT user name: {}", d.name);
            println!("MQTT password:  {}", d.mqtt_password);
            println!("HTTP token:     {}   (send as `Authorization: Bearer <token>`)", d.token);
            println!("Keep these now: they are stored only as digests and cannot be shown again.");
        }
        DeviceCmd::List => {
            println!("{:>4}  {:<24} {:<8} machines", "id", "name", "active");
            for d in device::list(pool).await? {
                println!(
                    "{:>4}  {:<24} {:<8} {}",
                    d.id,
                    d.name,
                    if d.active { "yes" } else { "revoked" },
                    d.machines.join(", ")
                );
            }
        }
        DeviceCmd::Revoke { device: which } => {
            let name = device::revoke(pool, &which).await?;
            println!("device `{name}` revoked");
        }
        DeviceCmd::MosquittoAcl => {
            let server_user = if config.mqtt.username.is_empty() {
                oee_core::access::SERVER_USER
            } else {
                config.mqtt.username.as_str()
            };
            print!("{}", device::mosquitto_acl(pool, server_user).await?)
        }
    }
    Ok(())
}

async fn tablet_cmd(pool: &sqlx::PgPool, cmd: TabletCmd) -> anyhow::Result<()> {
    match cmd {
        TabletCmd::List => {
            match tablet::pairing_window(pool).await? {
                Some((until, n)) => println!(
                    "pairing window open until {} (UTC), {n} new tablet(s) registered in it",
                    until.format("%Y-%m-%d %H:%M:%S")
                ),
                None => println!("pairing window closed"),
            }
            println!("{:>4}  {:<12} {:<24} {:<16} uuid", "id", "name", "machine", "logged in");
            for t in tablet::list_tablets(pool).await? {
                println!(
                    "{:>4}  {:<12} {:<24} {:<16} {}",
                    t.id,
                    t.name,
                    t.machine_name.unwrap_or_else(|| "-".into()),
                    t.user_name.unwrap_or_else(|| "-".into()),
                    t.uuid
                );
            }
        }
        TabletCmd::Pair { tablet: name, machine } => {
            let (id, machine_id) = tablet::find_for_pairing(pool, &name, Some(&machine)).await?;
            tablet::pair_tablet(pool, id, machine_id).await?;
            println!("tablet {id} is paired with machine {}", machine_id.unwrap_or_default());
        }
        TabletCmd::Unpair { tablet: name } => {
            let (id, _) = tablet::find_for_pairing(pool, &name, None).await?;
            tablet::pair_tablet(pool, id, None).await?;
            println!("tablet {id} is paired with no machine");
        }
        TabletCmd::OpenWindow { minutes } => {
            let until = tablet::open_pairing_window(pool, chrono::Utc::now(), minutes).await?;
            println!("new tablets may register until {} (UTC)", until.format("%Y-%m-%d %H:%M:%S"));
        }
        TabletCmd::CloseWindow => {
            tablet::close_pairing_window(pool).await?;
            println!("new tablets may not register");
        }
    }
    Ok(())
}

async fn shift_cmd(pool: &sqlx::PgPool, cmd: ShiftCmd) -> anyhow::Result<()> {
    match cmd {
        ShiftCmd::List => {
            for s in schedule::list_shifts(pool).await? {
                println!("{:>4}  {}", s.id, s.name);
                let days: Vec<String> =
                    (0..7u8).map(|d| format!("{} {}", DAY_NAMES[d as usize], describe_day(&s.periods, d))).collect();
                println!("      {}", days.join("  "));
                if !s.machines.is_empty() {
                    println!("      machines: {}", s.machines.join(", "));
                }
            }
        }
        ShiftCmd::Add { name } => {
            let id = schedule::add_shift(pool, &name).await?;
            println!("added shift pattern {id} `{}`: set its days with `oee-server shift set`", name.trim());
        }
        ShiftCmd::Set { shift, days, hours } => {
            let days = parse_days(&days)?;
            let mut periods = Vec::new();
            for &d in &days {
                periods.extend(parse_day_hours(d, &hours)?);
            }
            schedule::set_shift_days(pool, &shift, &days, &periods).await?;
            let names: Vec<&str> = days.iter().map(|&d| DAY_NAMES[d as usize]).collect();
            println!("shift pattern `{}`: {} {}", shift.trim(), names.join(","), hours.trim());
        }
    }
    Ok(())
}

async fn user_cmd(pool: &sqlx::PgPool, cmd: UserCmd) -> anyhow::Result<()> {
    match cmd {
        UserCmd::Add { name, admin, password } => {
            let pw = match password {
                Some(p) => p,
                None => read_password_line()?,
            };
            let u = user::add_user(pool, &name, &pw, admin).await?;
            println!("added user {} `{}`{}", u.id, u.username, if u.admin { " (admin)" } else { "" });
        }
        UserCmd::Passwd { name, password } => {
            let pw = match password {
                Some(p) => p,
                None => read_password_line()?,
            };
            user::set_password(pool, &name, &pw).await?;
            println!("password of `{name}` changed");
        }
        UserCmd::List => {
            for u in user::list_users(pool).await? {
                println!("{:>4}  {}{}", u.id, u.username, if u.admin { "  (admin)" } else { "" });
            }
        }
    }
    Ok(())
}
