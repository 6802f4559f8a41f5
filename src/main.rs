//! `oee-server`: the command line. `serve` runs the server; `machine` and `user` administer it.

use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};
use oee_core::Config;
use oee_core::store::{machine, user};
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
    /// Users (operators log in on tablets with their user id and password).
    #[command(subcommand)]
    User(UserCmd),
}

#[derive(Subcommand)]
enum MachineCmd {
    /// Add a machine (first group, first shift pattern); prints its id and MQTT topic name.
    Add { name: String },
    /// List machines.
    List,
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
async fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    // The server logs what it does; the administration commands print their answer and only warnings.
    let default_filter = match cli.command {
        Command::Serve { .. } => "info,rumqttd=warn,rumqttd::server=off,sqlx=warn",
        _ => "warn,rumqttd=off",
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_filter)),
        )
        .init();
    match run(cli).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
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
        Command::User(cmd) => {
            let db = open_database(&config).await?;
            let result = user_cmd(&db.pool, cmd).await;
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
    app.stop().await;
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
