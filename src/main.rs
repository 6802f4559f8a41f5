//! `oee-server`: the command line. `serve` runs the server; `init` creates its database; `machine`, `group`,
//! `code`, `shift`, `user`, `tablet`, `device` and `db` administer it.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use clap::{Parser, Subcommand};
use oee_core::Config;
use oee_core::shift::{DAY_NAMES, describe_day, parse_day_hours, parse_days};
use oee_core::store::code::{CodeInput, state_name};
use oee_core::store::machine::MachineSettings;
use oee_core::store::{code, device, group, machine, schedule, tablet, user};
use oee_server::{App, Services, init_database, open_database, read_password_line};

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
    /// Create the database and seed it, as the first start of `serve` does.
    ///
    /// The database is the embedded PostgreSQL cluster under data_dir, or the one at database.url; it is seeded
    /// with codes 1-4, "Group 1", the 9-5 shift pattern and the administrator. The other administration
    /// commands refuse to run until it exists. On an initialised database this changes nothing.
    Init,
    #[command(flatten)]
    Admin(AdminCmd),
    /// The database itself: a psql shell on it.
    #[command(subcommand)]
    Db(DbCmd),
}

/// The commands that administer an existing database.
#[derive(Subcommand)]
enum AdminCmd {
    /// Machines and their settings.
    #[command(subcommand)]
    Machine(MachineCmd),
    /// Machine groups (dashboards and reports gather machines by group).
    #[command(subcommand)]
    Group(GroupCmd),
    /// Activity (reason) codes: what a machine is doing, its colour, and how its time counts in OEE.
    #[command(subcommand)]
    Code(CodeCmd),
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
enum DbCmd {
    /// Open psql on the server's database (the embedded cluster, started for the session if no server runs,
    /// or database.url).
    Shell {
        /// Print the psql command line instead of running it.
        #[arg(long)]
        print: bool,
    },
}

#[derive(Subcommand)]
enum GroupCmd {
    /// List groups and how many machines each has.
    List,
    /// Add a group.
    Add { name: String },
    /// Rename a group (name or id).
    Rename { group: String, new_name: String },
}

#[derive(Subcommand)]
enum CodeCmd {
    /// List every code, active or not.
    List,
    /// Add a code; it gets the next free id.
    Add {
        /// Short description, unique: what tablets, reports and graphs show.
        short: String,
        /// Machine state: 1 or uptime, 2 or unplanned_downtime, 3 or planned_downtime, 4 or overtime.
        #[arg(long, default_value = "unplanned_downtime", value_parser = parse_state)]
        state: i16,
        /// Loss category: how its time counts in OEE (running, breakdown, setup, planned_stop, minor_stop,
        /// reduced_speed, not_scheduled); by default the usual one for the state.
        #[arg(long)]
        category: Option<String>,
        /// Colour in graphs and on tablets, #RRGGBB.
        #[arg(long)]
        colour: String,
        /// Long description.
        #[arg(long, default_value = "")]
        description: String,
    },
    /// Change a code (short description or id); what is not given stays as it is.
    Edit {
        code: String,
        /// New short description.
        #[arg(long)]
        short: Option<String>,
        #[arg(long)]
        description: Option<String>,
        /// Machine state (codes 1-4 keep theirs). A category that does not suit the new state becomes the
        /// usual one for it unless --category is given.
        #[arg(long, value_parser = parse_state)]
        state: Option<i16>,
        #[arg(long)]
        category: Option<String>,
        #[arg(long)]
        colour: Option<String>,
        #[arg(long)]
        active: Option<bool>,
    },
    /// Stop offering a code (short description or id); its history stays. Codes 1-4 stay active.
    Deactivate { code: String },
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
    /// List shift patterns (or one, by name or id): their hours on each day and the machines that follow them.
    List { shift: Option<String> },
    /// Add a shift pattern, with no shifts on any day until they are set.
    Add { name: String },
    /// Set the hours of some days of a pattern from now on, e.g. `shift set 9-5 weekdays 0800-1630`,
    /// `shift set 9-5 sun off`; reports of earlier days keep the hours they had.
    Set {
        /// The pattern's name or id.
        shift: String,
        /// mon, tue, wed, thu, fri, sat, sun, weekdays, weekend or all; several separated by commas.
        days: String,
        /// HHMM-HHMM (the end may be 2400; a night shift is 2200-2400 on one day and 0000-0600 on the next),
        /// or `off` for no shifts that day (the day keeps the state the previous day ended in).
        hours: String,
    },
    /// Rename a pattern (name or id).
    Rename { shift: String, name: String },
}

#[derive(Subcommand)]
enum MachineCmd {
    /// Add a machine (first group, first shift pattern); prints its id and MQTT topic name.
    Add { name: String },
    /// List machines.
    List,
    /// Make a machine (name or id) follow a shift pattern (name or id) from now on.
    Shift { machine: String, shift: String },
    /// Print all settings of a machine (name or id).
    Show { machine: String },
    /// Change settings of a machine (name or id); what is not given stays as it is.
    Set(Box<MachineSet>),
}

#[derive(clap::Args)]
struct MachineSet {
    machine: String,
    /// New name.
    #[arg(long)]
    name: Option<String>,
    /// The group (name or id).
    #[arg(long, conflicts_with = "no_group")]
    group: Option<String>,
    /// Take the machine out of its group.
    #[arg(long)]
    no_group: bool,
    /// How its tablet runs a job: default, pausable or running_total.
    #[arg(long)]
    workflow: Option<String>,
    /// How its tablet asks for the job's speed: cycle_time_seconds, cycle_time_minutes, cycle_time_hours,
    /// parts_per_second, parts_per_minute, parts_per_hour, planned_qty_minutes or no_cycle_time.
    #[arg(long)]
    job_start_input: Option<String>,
    /// What its tablet lets an operator type as a job number: text or number.
    #[arg(long)]
    job_number_input: Option<String>,
    /// Pre-fill the tablet's speed field with this amount.
    #[arg(long, value_name = "AMOUNT", conflicts_with = "no_autofill", allow_negative_numbers = true)]
    autofill: Option<f64>,
    /// Leave the tablet's speed field empty.
    #[arg(long)]
    no_autofill: bool,
    /// End a running job when the shift ends (false: the machine goes on in overtime).
    #[arg(long, value_name = "true|false")]
    end_job_on_shift_end: Option<bool>,
    /// The code a started job moves the machine to (short description or id): an active uptime code.
    #[arg(long)]
    job_start_code: Option<String>,
    /// Codes its tablet does not offer, e.g. 5,6 (ids or short descriptions; '' for none). Replaces the list.
    #[arg(long, value_name = "CODES")]
    exclude_codes: Option<String>,
    /// false takes the machine out of use (it keeps its history; machines are never deleted).
    #[arg(long, value_name = "true|false")]
    active: Option<bool>,
}

#[derive(Subcommand)]
enum UserCmd {
    /// Add a user. The password comes from --password or one line of standard input: an operator's is a PIN
    /// of 4 to 12 digits (the tablet's keypad), a browser user's at least 8 characters.
    Add {
        name: String,
        /// operator (tablets only), viewer, supervisor or admin.
        #[arg(long, default_value = "operator")]
        role: oee_core::access::Role,
        /// The same as --role admin.
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
    // The server logs what it does; the administration commands print their answer on standard output and
    // log only warnings. Logs go to standard error, coloured only when that is a terminal.
    let default_filter = match cli.command {
        Command::Serve { .. } => "info,rumqttd=warn,rumqttd::server=off,sqlx=warn,tokio_cron_scheduler=warn",
        _ => "warn,rumqttd=off",
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_filter)),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    let code = match run(cli).await {
        Ok(()) => 0,
        Err(e) => {
            match e.downcast_ref::<oee_core::Error>() {
                // A refused input says what was wrong with it; the form's field name adds nothing here.
                Some(oee_core::Error::Field { message, .. }) => eprintln!("error: {message}"),
                _ => eprintln!("error: {e:#}"),
            }
            1
        }
    };
    // Exit here rather than by dropping the runtime, which would wait for any blocking task still running
    // (a stop must end in bounded time whatever state the services are in).
    std::process::exit(code)
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let config = Config::load(cli.config.as_deref())?;
    let file = cli.config.as_deref();
    match cli.command {
        Command::Serve { only } => serve(&config, only).await,
        Command::Init => init(&config).await,
        Command::Db(DbCmd::Shell { print }) => db_shell(&config, file, print).await,
        Command::Admin(cmd) => {
            let db = open_database(&config, file).await?;
            let result = admin_cmd(&config, &db.pool, cmd).await;
            db.close().await;
            result
        }
    }
}

async fn admin_cmd(config: &Config, pool: &sqlx::PgPool, cmd: AdminCmd) -> anyhow::Result<()> {
    match cmd {
        AdminCmd::Machine(cmd) => machine_cmd(config, pool, cmd).await,
        AdminCmd::Group(cmd) => group_cmd(pool, cmd).await,
        AdminCmd::Code(cmd) => code_cmd(pool, cmd).await,
        AdminCmd::Shift(cmd) => shift_cmd(pool, cmd).await,
        AdminCmd::User(cmd) => user_cmd(pool, cmd).await,
        AdminCmd::Tablet(cmd) => tablet_cmd(pool, cmd).await,
        AdminCmd::Device(cmd) => device_cmd(config, pool, cmd).await,
    }
}

async fn init(config: &Config) -> anyhow::Result<()> {
    let report = init_database(config).await?;
    if !report.seed.first_run {
        println!("{} was already initialised: nothing changed", report.place);
    } else {
        println!("initialised {}: activity codes 1-4, machine group `Group 1` and shift pattern `9-5`", report.place);
    }
    if report.seed.created_admin {
        println!(
            "created the administrator `{}` with the password `{}`: change it now with `oee-server user passwd {}`",
            oee_core::store::seed::DEFAULT_ADMIN,
            oee_core::store::seed::DEFAULT_ADMIN_PASSWORD,
            oee_core::store::seed::DEFAULT_ADMIN
        );
    }
    Ok(())
}

/// Runs psql on the server's database (or prints how to). psql runs as a child so that this process can
/// stop the embedded cluster afterwards when it started it; meanwhile Ctrl-C and Ctrl-\ reach psql (which
/// cancels the query) and are ignored here.
async fn db_shell(config: &Config, file: Option<&Path>, print: bool) -> anyhow::Result<()> {
    let db = open_database(config, file).await?;
    let args = if config.database.url.trim().is_empty() {
        let options = db.pool.connect_options();
        let socket = options.get_socket().map(|p| p.display().to_string()).unwrap_or_default();
        vec![
            "-h".to_string(),
            socket,
            "-p".into(),
            options.get_port().to_string(),
            "-U".into(),
            options.get_username().to_string(),
            "-d".into(),
            options.get_database().unwrap_or(oee_core::store::EMBEDDED_DATABASE).to_string(),
        ]
    } else {
        vec![config.database.url.trim().to_string()]
    };
    let psql = find_psql(config);
    if print {
        let program = psql.as_ref().map_or_else(|| "psql".to_string(), |p| p.display().to_string());
        let line: Vec<String> = std::iter::once(program).chain(args).map(|a| shell_quote(&a)).collect();
        println!("{}", line.join(" "));
        if db.started_cluster() {
            eprintln!(
                "note: no server is running, so the embedded database is stopped again now: run this line while \
                 `oee-server serve` runs, or use `oee-server db shell`"
            );
        }
        db.close().await;
        return Ok(());
    }
    let Some(psql) = psql else {
        db.close().await;
        bail!(
            "psql is not installed (looked beside the PostgreSQL server programs and on PATH): install it \
             (Debian/Ubuntu: sudo apt-get install postgresql-client), or see the connection with `oee-server db \
             shell --print`"
        );
    };
    use tokio::signal::unix::{SignalKind, signal};
    let _interrupt = signal(SignalKind::interrupt()).context("cannot watch SIGINT")?;
    let _quit = signal(SignalKind::quit()).context("cannot watch SIGQUIT")?;
    let status = tokio::process::Command::new(&psql).args(&args).status().await;
    db.close().await;
    let status = status.with_context(|| format!("cannot run {}", psql.display()))?;
    if !status.success() {
        bail!("psql ended with {status}");
    }
    Ok(())
}

/// psql beside the embedded cluster's server programs, else on PATH.
fn find_psql(config: &Config) -> Option<PathBuf> {
    let beside =
        oee_core::store::cluster::server_bin_dir(&config.database.embedded.bin_dir).ok().map(|d| d.join("psql"));
    let on_path = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).map(|d| d.join("psql")).collect::<Vec<_>>())
        .unwrap_or_default();
    beside.into_iter().chain(on_path).find(|p| p.is_file())
}

/// `arg` as a POSIX shell word.
fn shell_quote(arg: &str) -> String {
    if !arg.is_empty() && arg.chars().all(|c| c.is_ascii_alphanumeric() || "-_./=:@%+,".contains(c)) {
        arg.to_string()
    } else {
        format!("'{}'", arg.replace('\'', r"'\''"))
    }
}

/// A machine state as `--state` takes it: its number or its name.
fn parse_state(s: &str) -> Result<i16, String> {
    match s.trim() {
        "uptime" | "up" => Ok(1),
        "unplanned_downtime" | "down" => Ok(2),
        "planned_downtime" | "planned" => Ok(3),
        "overtime" => Ok(4),
        n => n.parse().map_err(|_| {
            format!("`{n}` is not a machine state: 1 or uptime, 2 or unplanned_downtime, 3 or planned_downtime, 4 or overtime")
        }),
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
        MachineCmd::Show { machine } => {
            let id = machine::machine_id_by_name(pool, &machine).await?;
            show_machine(pool, id, &machine::machine_settings(pool, id).await?).await?;
        }
        MachineCmd::Set(set) => {
            let id = machine::machine_id_by_name(pool, &set.machine).await?;
            let mut s = machine::machine_settings(pool, id).await?;
            apply_machine_set(pool, &mut s, *set).await?;
            let stored = machine::update_machine_settings(pool, id, &s).await?;
            show_machine(pool, id, &stored).await?;
        }
    }
    Ok(())
}

/// Applies the given switches of `machine set` to the machine's settings.
async fn apply_machine_set(pool: &sqlx::PgPool, s: &mut MachineSettings, set: MachineSet) -> anyhow::Result<()> {
    if let Some(name) = set.name {
        s.name = name;
    }
    if let Some(g) = set.group {
        s.group_id = Some(group::group_id_by_name(pool, &g).await?);
    }
    if set.no_group {
        s.group_id = None;
    }
    if let Some(w) = set.workflow {
        s.workflow = w.parse().map_err(anyhow::Error::msg)?;
    }
    if let Some(t) = set.job_start_input {
        s.job_start_input = t.parse().map_err(anyhow::Error::msg)?;
    }
    if let Some(t) = set.job_number_input {
        s.job_number_input = t.parse().map_err(anyhow::Error::msg)?;
    }
    if let Some(amount) = set.autofill {
        (s.autofill, s.autofill_amount) = (true, amount);
    }
    if set.no_autofill {
        (s.autofill, s.autofill_amount) = (false, 0.0);
    }
    if let Some(b) = set.end_job_on_shift_end {
        s.end_job_on_shift_end = b;
    }
    if let Some(c) = set.job_start_code {
        s.job_start_code_id = code::code_id_by_name(pool, &c).await?;
    }
    if let Some(list) = set.exclude_codes {
        let mut ids = Vec::new();
        for c in list.split(',').map(str::trim).filter(|c| !c.is_empty()) {
            ids.push(code::code_id_by_name(pool, c).await?);
        }
        s.excluded_code_ids = ids;
    }
    if let Some(a) = set.active {
        s.active = a;
    }
    Ok(())
}

/// Prints every setting of machine `id`, with the names of what they refer to.
async fn show_machine(pool: &sqlx::PgPool, id: i32, s: &MachineSettings) -> anyhow::Result<()> {
    let codes = code::list_codes(pool).await?;
    let code_name = |id: i32| {
        codes.iter().find(|c| c.id == id).map_or_else(|| id.to_string(), |c| format!("{id} `{}`", c.short_description))
    };
    let group = match s.group_id {
        Some(g) => format!("{} `{}`", g, group::group(pool, g).await?.name),
        None => "none".into(),
    };
    let shift = match s.shift_id {
        Some(sh) => schedule::list_shifts(pool)
            .await?
            .into_iter()
            .find(|p| p.id == sh)
            .map_or_else(|| sh.to_string(), |p| format!("{sh} `{}`", p.name)),
        None => "none".into(),
    };
    let yes = |b: bool| if b { "yes" } else { "no" };
    let excluded: Vec<String> = s.excluded_code_ids.iter().map(|&c| code_name(c)).collect();
    println!("machine {id} `{}`", s.name);
    println!("  active:               {}", yes(s.active));
    println!("  MQTT topic name:      {}", s.topic_name.as_deref().unwrap_or("none (use its id)"));
    println!("  group:                {group}");
    println!("  shift pattern:        {shift}");
    println!("  workflow:             {}", s.workflow.as_str());
    println!("  job start input:      {}", s.job_start_input.as_str());
    if s.autofill {
        println!("  autofill:             {}", s.autofill_amount);
    } else {
        println!("  autofill:             off");
    }
    println!("  job number input:     {}", s.job_number_input.as_str());
    println!("  job start code:       {}", code_name(s.job_start_code_id));
    println!("  end job on shift end: {}", yes(s.end_job_on_shift_end));
    println!("  excluded codes:       {}", if excluded.is_empty() { "none".into() } else { excluded.join(", ") });
    Ok(())
}

async fn group_cmd(pool: &sqlx::PgPool, cmd: GroupCmd) -> anyhow::Result<()> {
    match cmd {
        GroupCmd::List => {
            println!("{:>4}  {:<24} machines", "id", "name");
            for g in group::list_groups(pool).await? {
                println!("{:>4}  {:<24} {}", g.id, g.name, g.machine_count);
            }
        }
        GroupCmd::Add { name } => {
            let id = group::create_group(pool, &name).await?;
            println!("added machine group {id} `{}`", name.trim());
        }
        GroupCmd::Rename { group: which, new_name } => {
            let id = group::group_id_by_name(pool, &which).await?;
            group::rename_group(pool, id, &new_name).await?;
            println!("machine group {id} is now called `{}`", new_name.trim());
        }
    }
    Ok(())
}

async fn code_cmd(pool: &sqlx::PgPool, cmd: CodeCmd) -> anyhow::Result<()> {
    match cmd {
        CodeCmd::List => {
            println!(
                "{:>4}  {:<24} {:<20} {:<14} {:<8} {:<7} description",
                "id", "code", "state", "category", "colour", "active"
            );
            for c in code::list_codes(pool).await? {
                print_code(&c);
            }
        }
        CodeCmd::Add { short, state, category, colour, description } => {
            let input = CodeInput {
                short_description: short,
                long_description: description,
                machine_state: state,
                loss_category: category.unwrap_or_default(),
                graph_colour: colour,
                active: true,
            };
            let c = code::create_code(pool, &input).await?;
            println!("added activity code {}:", c.id);
            print_code(&c);
        }
        CodeCmd::Edit { code: which, short, description, state, category, colour, active } => {
            let id = code::code_id_by_name(pool, &which).await?;
            let old = code::code(pool, id).await?;
            let mut input = CodeInput::from(&old);
            if let Some(v) = short {
                input.short_description = v;
            }
            if let Some(v) = description {
                input.long_description = v;
            }
            if let Some(v) = state {
                input.machine_state = v;
                let suits = oee_core::activity::MachineState::try_from(v).is_ok_and(|st| old.loss_category.suits(st));
                if !suits {
                    input.loss_category = String::new();
                }
            }
            if let Some(v) = category {
                input.loss_category = v;
            }
            if let Some(v) = colour {
                input.graph_colour = v;
            }
            if let Some(v) = active {
                input.active = v;
            }
            let c = code::update_code(pool, id, &input).await?;
            println!("changed activity code {}:", c.id);
            print_code(&c);
        }
        CodeCmd::Deactivate { code: which } => {
            let id = code::code_id_by_name(pool, &which).await?;
            let mut input = CodeInput::from(&code::code(pool, id).await?);
            input.active = false;
            let c = code::update_code(pool, id, &input).await?;
            println!("activity code {} `{}` is no longer offered; its history stays", c.id, c.short_description);
        }
    }
    Ok(())
}

fn print_code(c: &code::ActivityCode) {
    let state = oee_core::activity::MachineState::try_from(c.machine_state).map_or("?", state_name);
    println!(
        "{:>4}  {:<24} {:<20} {:<14} {:<8} {:<7} {}",
        c.id,
        c.short_description,
        format!("{} {state}", c.machine_state),
        c.loss_category.as_str(),
        c.graph_colour,
        if c.active { "yes" } else { "no" },
        c.long_description
    );
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
        ShiftCmd::List { shift } => {
            let only = match shift {
                Some(s) => Some(schedule::shift_id_by_name_or_id(pool, &s).await?),
                None => None,
            };
            for s in schedule::list_shifts(pool).await?.into_iter().filter(|s| only.is_none_or(|id| id == s.id)) {
                match s.since {
                    Some(t) => println!("{:>4}  {}  (as set on {} UTC)", s.id, s.name, t.format("%Y-%m-%d %H:%M")),
                    None => println!("{:>4}  {}", s.id, s.name),
                }
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
            let id = schedule::set_shift_days(pool, &shift, &days, &periods, chrono::Utc::now()).await?;
            let names: Vec<&str> = days.iter().map(|&d| DAY_NAMES[d as usize]).collect();
            println!("shift pattern {id}: {} {} from now on", names.join(","), hours.trim());
        }
        ShiftCmd::Rename { shift, name } => {
            let id = schedule::shift_id_by_name_or_id(pool, &shift).await?;
            schedule::rename_shift(pool, id, &name).await?;
            println!("shift pattern {id} is now `{}`", name.trim());
        }
    }
    Ok(())
}

async fn user_cmd(pool: &sqlx::PgPool, cmd: UserCmd) -> anyhow::Result<()> {
    match cmd {
        UserCmd::Add { name, role, admin, password } => {
            let pw = match password {
                Some(p) => p,
                None => read_password_line()?,
            };
            let role = if admin { oee_core::access::Role::Admin } else { role };
            let u = user::add_user(pool, &name, &pw, role, false).await?;
            println!("added user {} `{}` ({})", u.id, u.username, u.role);
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
                let inactive = if u.active { "" } else { ", inactive" };
                println!("{:>4}  {}  ({}{inactive})", u.id, u.username, u.role);
            }
        }
    }
    Ok(())
}
