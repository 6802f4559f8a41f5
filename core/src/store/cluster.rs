//! The embedded PostgreSQL cluster: used when no `database.url` is configured. It runs the machine's
//! installed PostgreSQL server binaries on a private data directory, listening on a unix socket only,
//! and stops with this process (also when this process dies without cleaning up).
//!
//! The server supervises its cluster: a keeper thread starts `postgres`, waits for it, and starts it again
//! (with a growing pause while it keeps failing) whenever it exits without being asked to. A cluster this
//! process did not start is never taken over silently: the server refuses to start beside one (see
//! [`EmbeddedCluster::start`]); administration commands use the one a running server owns
//! ([`EmbeddedCluster::attach_or_start`]).

use std::fs;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, mpsc};
use std::time::{Duration, Instant};

use sqlx::postgres::PgConnectOptions;

use crate::error::Error;

/// The superuser of the embedded cluster.
pub const SUPERUSER: &str = "oee";
const PORT: u16 = 5432;
/// Longest path of a unix socket file on Linux (sun_path is 108 bytes with the terminating NUL).
const MAX_SOCKET_PATH: usize = 107;
/// Set on every `postgres` this process starts: `<pid>:<start time>` of this process, so that a later start
/// can tell a cluster left by a server that died from one a live server or a person runs.
const OWNER_ENV: &str = "OEE_EMBEDDED_CLUSTER_OWNER";
/// Longest wait for the server to accept connections after a start.
const READY_LIMIT: Duration = Duration::from_secs(120);
/// Longest wait for a cluster left by a server that died to finish stopping (its shutdown checkpoint).
const LEFTOVER_LIMIT: Duration = Duration::from_secs(60);
/// Pause before the first restart after an unexpected exit (lets the old server's processes go), doubled
/// on each failed attempt up to [`RESTART_PAUSE_MAX`].
const RESTART_PAUSE: Duration = Duration::from_millis(100);
const RESTART_PAUSE_MAX: Duration = Duration::from_secs(5);
/// A server that ran this long before exiting was healthy: the next restart starts from the short pause.
const HEALTHY_RUN: Duration = Duration::from_secs(60);

/// How to run the cluster.
#[derive(Debug, Clone)]
pub struct ClusterOptions {
    pub dir: PathBuf,
    /// Where `initdb` and `postgres` are; empty to search the usual places.
    pub bin_dir: PathBuf,
    /// The user the cluster runs as when this process is root.
    pub run_as: String,
    /// Extra server settings (`-c name=value`).
    pub settings: Vec<(String, String)>,
    /// Trade durability for speed (tests): no fsync, no synchronous commit.
    pub disposable: bool,
}

/// A private cluster in use by this process. Dropping it stops the server if this process started it.
#[derive(Debug)]
pub struct EmbeddedCluster {
    dir: PathBuf,
    socket_dir: PathBuf,
    /// The keeper of the server this process started; `None` when attached to the server of another
    /// `oee-server` process (an administration command beside a running server).
    keeper: Option<Keeper>,
}

/// Who may use a cluster that is already running on the directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    /// The server: it must own (and so supervise and stop) its cluster.
    Server,
    /// An administration command: it uses a running server's cluster and leaves it running.
    Command,
}

impl EmbeddedCluster {
    /// Creates the cluster on first use, then starts it, waits until it accepts connections and keeps it
    /// running until [`stop`](Self::stop): a server that exits meanwhile is started again. A cluster
    /// already running on the directory is refused with what to do, unless it was left by an `oee-server`
    /// that died: that one is waited for (it is stopping) and then started afresh.
    /// Blocking: call it from a plain thread or `spawn_blocking`.
    pub fn start(opts: &ClusterOptions) -> Result<EmbeddedCluster, Error> {
        Self::open(opts, Role::Server)
    }

    /// As [`start`](Self::start), but a cluster that a running `oee-server` (or a person) runs on the
    /// directory is used as it is and left running: for administration commands beside a running server.
    pub fn attach_or_start(opts: &ClusterOptions) -> Result<EmbeddedCluster, Error> {
        Self::open(opts, Role::Command)
    }

    fn open(opts: &ClusterOptions, role: Role) -> Result<EmbeddedCluster, Error> {
        let bin = find_bin_dir(&opts.bin_dir)?;
        let owner = owner_for(&opts.run_as)?;
        let dir = absolute(&opts.dir)?;
        prepare_dir(&dir, owner)?;
        if !dir.join("PG_VERSION").exists() {
            init_cluster(&bin, &dir, owner, opts.disposable)?;
        }
        let socket_dir = socket_dir_for(&dir, owner)?;
        if let Some(pid) = settle_running(&dir, &socket_dir, role)? {
            tracing::debug!(pid, dir = %dir.display(), "using the embedded PostgreSQL of a running server");
            let cluster = EmbeddedCluster { dir, socket_dir, keeper: None };
            wait_attached_ready(&cluster.dir, pid, READY_LIMIT)?;
            return Ok(cluster);
        }
        let launch = Launch {
            postgres: bin.join("postgres"),
            dir: dir.clone(),
            socket_dir: socket_dir.clone(),
            owner,
            settings: opts.settings.clone(),
            disposable: opts.disposable,
        };
        let keeper = Keeper::start(launch)?;
        Ok(EmbeddedCluster { dir, socket_dir, keeper: Some(keeper) })
    }

    /// Connection options for `database` on this cluster.
    pub fn connect_options(&self, database: &str) -> PgConnectOptions {
        PgConnectOptions::new().socket(&self.socket_dir).port(PORT).username(SUPERUSER).database(database)
    }

    /// The cluster's data directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Whether this process started the server (and stops it), rather than using a running server's.
    pub fn started_here(&self) -> bool {
        self.keeper.is_some()
    }

    /// Stops the server if this process started it (fast shutdown: open transactions are rolled back,
    /// committed data is kept), and its supervision with it.
    pub fn stop(&mut self) -> Result<(), Error> {
        match &mut self.keeper {
            Some(k) => k.stop(&self.dir),
            None => Ok(()),
        }
    }
}

impl Drop for EmbeddedCluster {
    fn drop(&mut self) {
        if let Err(e) = self.stop() {
            tracing::warn!("{e}");
        }
    }
}

/// Everything needed to start `postgres` again.
#[derive(Debug, Clone)]
struct Launch {
    postgres: PathBuf,
    dir: PathBuf,
    socket_dir: PathBuf,
    owner: Owner,
    settings: Vec<(String, String)>,
    disposable: bool,
}

impl Launch {
    fn spawn(&self) -> Result<Child, Error> {
        let dir = &self.dir;
        let mut cmd = Command::new(&self.postgres);
        cmd.arg("-D").arg(dir).args(["-c", "listen_addresses="]);
        cmd.arg("-c").arg(format!("unix_socket_directories={}", self.socket_dir.display()));
        cmd.arg("-c").arg(format!("port={PORT}"));
        cmd.args(["-c", "unix_socket_permissions=0700"]);
        if self.disposable {
            cmd.args(["-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off"]);
            cmd.args(["-c", "max_connections=300"]);
        }
        for (k, v) in &self.settings {
            cmd.arg("-c").arg(format!("{k}={v}"));
        }
        cmd.env(OWNER_ENV, process_token(std::process::id() as i32).unwrap_or_default());
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join("server.log"))
            .map_err(|e| cluster_err(dir, format!("cannot open server.log: {e}")))?;
        let log2 = log.try_clone().map_err(|e| cluster_err(dir, e.to_string()))?;
        cmd.stdin(Stdio::null()).stdout(log).stderr(log2);
        child_setup(&mut cmd, self.owner, true);
        cmd.spawn().map_err(|e| cluster_err(dir, format!("cannot run {}: {e}", self.postgres.display())))
    }
}

/// The supervision of the server this process started: a thread that starts `postgres`, reaps it, and
/// starts it again when it exits unasked. The thread lives exactly as long as the supervision, because the
/// kernel's parent-death signal is tied to the thread that spawned the child.
#[derive(Debug)]
struct Keeper {
    shared: Arc<Shared>,
    thread: Option<std::thread::JoinHandle<()>>,
}

#[derive(Debug, Default)]
struct Shared {
    state: Mutex<KeeperState>,
    changed: Condvar,
}

#[derive(Debug, Default)]
struct KeeperState {
    /// The running server's pid.
    pid: Option<i32>,
    /// A stop was asked for: an exit is expected and nothing is started any more.
    stop: bool,
    /// The keeper thread has finished.
    ended: bool,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, KeeperState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// How one run of the server went.
enum Run {
    /// It became ready and later exited.
    Exited { status: Option<ExitStatus>, ran: Duration },
    /// It did not become ready: the reason.
    Failed(String),
}

impl Keeper {
    /// Starts the server and returns once it accepts connections (or with the reason it does not).
    fn start(launch: Launch) -> Result<Keeper, Error> {
        let shared = Arc::new(Shared::default());
        let (first_tx, first_rx) = mpsc::channel();
        let dir = launch.dir.clone();
        let s = shared.clone();
        let thread = std::thread::Builder::new()
            .name("postgres-keeper".into())
            .spawn(move || keep(launch, s, first_tx))
            .map_err(|e| cluster_err(&dir, format!("cannot start a thread: {e}")))?;
        let mut keeper = Keeper { shared, thread: Some(thread) };
        match first_rx.recv() {
            Ok(Ok(())) => Ok(keeper),
            Ok(Err(e)) => {
                let _ = keeper.stop(&dir);
                Err(e)
            }
            Err(_) => {
                let _ = keeper.stop(&dir);
                Err(cluster_err(&dir, "the postgres keeper thread died".into()))
            }
        }
    }

    fn stop(&mut self, dir: &Path) -> Result<(), Error> {
        let mut st = self.shared.lock();
        if !st.stop {
            st.stop = true;
            if let Some(pid) = st.pid {
                signal(pid, libc::SIGINT);
            }
            self.shared.changed.notify_all();
        }
        let (st, waited) = self
            .shared
            .changed
            .wait_timeout_while(st, Duration::from_secs(60), |s| !s.ended)
            .unwrap_or_else(|p| p.into_inner());
        if waited.timed_out() {
            if let Some(pid) = st.pid {
                signal(pid, libc::SIGQUIT);
            }
            return Err(cluster_err(dir, "postgres did not stop within 60 s; sent SIGQUIT".into()));
        }
        drop(st);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        Ok(())
    }
}

/// The keeper thread: the first start is reported on `first`; later exits are restarts.
fn keep(launch: Launch, shared: Arc<Shared>, first: mpsc::Sender<Result<(), Error>>) {
    let dir = launch.dir.clone();
    let mut first = Some(first);
    let mut pause = RESTART_PAUSE;
    let mut attempt = 0u32;
    loop {
        if attempt > 0 {
            {
                let st = shared.lock();
                let (st, _) =
                    shared.changed.wait_timeout_while(st, pause, |s| !s.stop).unwrap_or_else(|p| p.into_inner());
                if st.stop {
                    break;
                }
            }
            pause = (pause * 2).min(RESTART_PAUSE_MAX);
            tracing::info!(attempt, dir = %dir.display(), "starting the embedded PostgreSQL again");
        }
        let run = match settle_running(&dir, &launch.socket_dir, Role::Server) {
            Ok(None) => run_once(&launch, &shared, &mut first),
            Ok(Some(pid)) => Run::Failed(format!("a PostgreSQL server (pid {pid}) is still running on it")),
            Err(e) => Run::Failed(e.to_string()),
        };
        if shared.lock().stop {
            break;
        }
        match run {
            Run::Exited { status, ran } => {
                if ran >= HEALTHY_RUN {
                    pause = RESTART_PAUSE;
                    attempt = 0;
                }
                tracing::warn!(
                    dir = %dir.display(),
                    "the embedded PostgreSQL exited while the server runs ({}); starting it again",
                    status.map_or_else(|| "status unknown".to_string(), describe_exit)
                );
            }
            Run::Failed(reason) => {
                if let Some(tx) = first.take() {
                    let _ = tx.send(Err(cluster_err(&dir, reason)));
                    break;
                }
                // The reason's first and last lines: what happened and PostgreSQL's last word on it.
                let mut lines = reason.lines();
                let (head, last) = (lines.next().unwrap_or_default(), lines.last());
                let reason = last.map_or_else(|| head.to_string(), |l| format!("{head} … {}", l.trim()));
                tracing::warn!(
                    attempt,
                    dir = %dir.display(),
                    "the embedded PostgreSQL did not start again: {reason}; trying again in {pause:?}"
                );
            }
        }
        attempt += 1;
    }
    let mut st = shared.lock();
    st.ended = true;
    st.pid = None;
    shared.changed.notify_all();
}

/// Starts the server once, reports on `first` (the first start's) when it is ready, and waits for its exit.
fn run_once(launch: &Launch, shared: &Shared, first: &mut Option<mpsc::Sender<Result<(), Error>>>) -> Run {
    let dir = &launch.dir;
    let mut child = {
        let mut st = shared.lock();
        if st.stop {
            return Run::Failed("stopping".into());
        }
        match launch.spawn() {
            Ok(c) => {
                st.pid = Some(c.id() as i32);
                c
            }
            Err(e) => return Run::Failed(e.to_string()),
        }
    };
    let pid = child.id() as i32;
    let deadline = Instant::now() + READY_LIMIT;
    let pid_file = dir.join("postmaster.pid");
    loop {
        match child.try_wait() {
            Ok(Some(status)) => {
                shared.lock().pid = None;
                return Run::Failed(format!(
                    "postgres exited during start-up ({}):\n{}",
                    describe_exit(status),
                    log_tail(&dir.join("server.log"))
                ));
            }
            Ok(None) => {}
            Err(e) => return Run::Failed(format!("cannot watch postgres: {e}")),
        }
        if let Ok(text) = fs::read_to_string(&pid_file)
            && text.lines().next().is_some_and(|l| l.trim() == pid.to_string())
            && text.lines().nth(7).is_some_and(|l| l.trim() == "ready")
        {
            break;
        }
        if Instant::now() > deadline {
            signal(pid, libc::SIGQUIT);
            let _ = child.wait();
            shared.lock().pid = None;
            return Run::Failed(format!("postgres did not become ready within {} s", READY_LIMIT.as_secs()));
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    match first.take() {
        Some(tx) => {
            let _ = tx.send(Ok(()));
        }
        None => tracing::info!(pid, dir = %dir.display(), "the embedded PostgreSQL runs again"),
    }
    let ready_at = Instant::now();
    let status = child.wait().ok();
    shared.lock().pid = None;
    Run::Exited { status, ran: ready_at.elapsed() }
}

fn describe_exit(status: ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exit status {code}"),
        (None, Some(sig)) => format!("killed by signal {sig}"),
        _ => status.to_string(),
    }
}

/// Makes the directory free for a server of this process to start, or names the running server to use.
/// A server left by an `oee-server` that died is stopping (the kernel signalled it): it is waited for, and
/// signalled again if it has not begun to stop. A server a live `oee-server` owns is used by a command and
/// refused to a server; one started by hand likewise. Stale lock files are removed.
fn settle_running(dir: &Path, socket_dir: &Path, role: Role) -> Result<Option<i32>, Error> {
    let deadline = Instant::now() + LEFTOVER_LIMIT;
    let mut noted = false;
    let mut nudged = false;
    let first_seen = Instant::now();
    loop {
        let Some(pid) = running_postmaster(dir) else {
            clear_stale_locks(dir, socket_dir)?;
            return Ok(None);
        };
        let stopping = pid_file_status(dir).as_deref() == Some("stopping");
        let owner = postmaster_owner(pid);
        let owner_alive = owner.as_deref().map(token_alive);
        match (stopping, owner_alive) {
            (false, Some(true)) | (false, None) if role == Role::Command => return Ok(Some(pid)),
            (false, Some(true)) => {
                let owner_pid = owner.as_deref().and_then(|o| o.split(':').next()).unwrap_or("?");
                return Err(cluster_err(
                    dir,
                    format!(
                        "another oee-server process (pid {owner_pid}) runs this embedded PostgreSQL (pid {pid}): \
                         stop that server first, or give this one another data_dir"
                    ),
                ));
            }
            (false, None) => {
                return Err(cluster_err(
                    dir,
                    format!(
                        "a PostgreSQL server that oee-server did not start (pid {pid}) is running on this \
                         directory: stop it (`pg_ctl stop -D {}` as its user, or `kill -INT {pid}`) and start \
                         oee-server again; to use a PostgreSQL server you run yourself, set database.url instead",
                        dir.display()
                    ),
                ));
            }
            (true, _) | (false, Some(false)) => {
                if !noted {
                    tracing::info!(
                        pid,
                        dir = %dir.display(),
                        "waiting for the embedded PostgreSQL left by a server that stopped to finish stopping"
                    );
                    noted = true;
                }
                // The kernel sent it SIGINT when its server died; should that not have arrived, send it.
                if !stopping && !nudged && first_seen.elapsed() > Duration::from_secs(1) {
                    signal(pid, libc::SIGINT);
                    nudged = true;
                }
            }
        }
        if Instant::now() > deadline {
            return Err(cluster_err(
                dir,
                format!(
                    "the embedded PostgreSQL (pid {pid}) left by a server that stopped did not stop within {} s: \
                     stop it (`kill -INT {pid}`), then start oee-server again",
                    LEFTOVER_LIMIT.as_secs()
                ),
            ));
        }
        std::thread::sleep(Duration::from_millis(25));
    }
}

/// Waits until the running server of another process accepts connections.
fn wait_attached_ready(dir: &Path, pid: i32, limit: Duration) -> Result<(), Error> {
    let deadline = Instant::now() + limit;
    loop {
        if !is_postmaster_of(pid, dir) {
            return Err(cluster_err(
                dir,
                format!("the running PostgreSQL (pid {pid}) exited:\n{}", log_tail(&dir.join("server.log"))),
            ));
        }
        if pid_file_status(dir).as_deref() == Some("ready") {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(cluster_err(dir, format!("the running PostgreSQL (pid {pid}) is not ready after {limit:?}")));
        }
        std::thread::sleep(Duration::from_millis(25));
    }
}

fn cluster_err(dir: &Path, reason: String) -> Error {
    Error::Cluster { dir: dir.to_path_buf(), reason }
}

fn absolute(dir: &Path) -> Result<PathBuf, Error> {
    std::path::absolute(dir).map_err(|e| cluster_err(dir, e.to_string()))
}

/// The directory of the PostgreSQL programs the embedded cluster runs (`database.embedded.bin_dir`, or the
/// newest installed version's); `psql` is usually there too.
pub fn server_bin_dir(configured: &Path) -> Result<PathBuf, Error> {
    find_bin_dir(configured)
}

/// Finds the directory holding `initdb` and `postgres`.
fn find_bin_dir(configured: &Path) -> Result<PathBuf, Error> {
    let has_bins = |d: &Path| d.join("initdb").is_file() && d.join("postgres").is_file();
    if !configured.as_os_str().is_empty() {
        return if has_bins(configured) {
            Ok(configured.to_path_buf())
        } else {
            Err(Error::PostgresMissing(format!(
                "database.embedded.bin_dir {} has no initdb and postgres",
                configured.display()
            )))
        };
    }
    let mut versions: Vec<(u32, PathBuf)> = fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let v = e.file_name().to_string_lossy().parse::<u32>().ok()?;
            let bin = e.path().join("bin");
            has_bins(&bin).then_some((v, bin))
        })
        .collect();
    versions.sort();
    if let Some((_, bin)) = versions.pop() {
        return Ok(bin);
    }
    for d in std::env::var("PATH").unwrap_or_default().split(':') {
        if !d.is_empty() && has_bins(Path::new(d)) {
            return Ok(PathBuf::from(d));
        }
    }
    Err(Error::PostgresMissing(
        "no PostgreSQL server binaries (initdb, postgres) in /usr/lib/postgresql/*/bin or on PATH".into(),
    ))
}

/// The uid/gid the cluster runs as: this process's own, or `run_as`'s when this process is root.
#[derive(Debug, Clone, Copy)]
struct Owner {
    uid: u32,
    gid: u32,
    switch: bool,
}

#[allow(unsafe_code)]
fn owner_for(run_as: &str) -> Result<Owner, Error> {
    // SAFETY: geteuid/getegid have no preconditions.
    let (euid, egid) = unsafe { (libc::geteuid(), libc::getegid()) };
    if euid != 0 {
        return Ok(Owner { uid: euid, gid: egid, switch: false });
    }
    let name = std::ffi::CString::new(run_as)
        .map_err(|_| Error::ConfigParse("database.embedded.run_as contains a NUL byte".into()))?;
    // SAFETY: getpwnam takes a valid C string; the result is read at once, before any other call that
    // could overwrite its static buffer.
    let pw = unsafe { libc::getpwnam(name.as_ptr()) };
    if pw.is_null() {
        return Err(Error::ConfigParse(format!(
            "PostgreSQL cannot run as root and the user `{run_as}` (database.embedded.run_as) does not exist: \
             create it (sudo adduser --system {run_as}) or set run_as to an existing unprivileged user"
        )));
    }
    // SAFETY: pw is non-null and points to a valid passwd record.
    let (uid, gid) = unsafe { ((*pw).pw_uid, (*pw).pw_gid) };
    Ok(Owner { uid, gid, switch: true })
}

/// Runs the child as `owner` and makes it receive `SIGINT` (PostgreSQL's fast shutdown) when the thread
/// that spawned it dies.
#[allow(unsafe_code)]
fn child_setup(cmd: &mut Command, owner: Owner, die_with_parent: bool) {
    use std::os::unix::process::CommandExt;
    // SAFETY: the closure runs in the forked child before exec and only makes async-signal-safe calls.
    // The identity change comes first because changing it clears the parent-death signal.
    unsafe {
        cmd.pre_exec(move || {
            if owner.switch
                && (libc::setgroups(0, std::ptr::null()) != 0
                    || libc::setgid(owner.gid) != 0
                    || libc::setuid(owner.uid) != 0)
            {
                return Err(std::io::Error::last_os_error());
            }
            if die_with_parent && libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGINT) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

fn prepare_dir(dir: &Path, owner: Owner) -> Result<(), Error> {
    fs::create_dir_all(dir).map_err(|e| cluster_err(dir, format!("cannot create the directory: {e}")))?;
    if owner.switch {
        std::os::unix::fs::chown(dir, Some(owner.uid), Some(owner.gid))
            .map_err(|e| cluster_err(dir, format!("cannot hand the directory to uid {}: {e}", owner.uid)))?;
        // Every directory above must be passable for the unprivileged user.
        for anc in dir.ancestors().skip(1) {
            if let Ok(meta) = fs::metadata(anc)
                && meta.permissions().mode() & 0o001 == 0
            {
                return Err(cluster_err(
                    dir,
                    format!(
                        "the cluster runs as an unprivileged user (database.embedded.run_as) who cannot pass \
                         through {}: put data_dir (or database.embedded.dir) somewhere like /var/lib/oee-server",
                        anc.display()
                    ),
                ));
            }
        }
    }
    fs::set_permissions(dir, fs::Permissions::from_mode(0o700))
        .map_err(|e| cluster_err(dir, format!("cannot restrict the directory's permissions: {e}")))
}

fn init_cluster(bin: &Path, dir: &Path, owner: Owner, disposable: bool) -> Result<(), Error> {
    if fs::read_dir(dir).map(|mut d| d.next().is_some()).unwrap_or(false) {
        return Err(cluster_err(
            dir,
            "the directory is not empty and holds no PostgreSQL cluster (no PG_VERSION): empty it or choose \
             another database.embedded.dir"
                .into(),
        ));
    }
    tracing::info!(dir = %dir.display(), "creating the embedded PostgreSQL cluster");
    let mut cmd = Command::new(bin.join("initdb"));
    cmd.arg("-D").arg(dir).args(["-U", SUPERUSER, "-A", "trust", "-E", "UTF8", "--locale=C"]);
    if disposable {
        cmd.arg("--no-sync");
    }
    cmd.stdin(Stdio::null());
    child_setup(&mut cmd, owner, false);
    let out = cmd.output().map_err(|e| cluster_err(dir, format!("cannot run initdb: {e}")))?;
    if !out.status.success() {
        return Err(cluster_err(
            dir,
            format!("initdb failed: {}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)),
        ));
    }
    // Only the unix socket is ever opened; trust applies to local connections alone.
    let mut hba = fs::File::create(dir.join("pg_hba.conf")).map_err(|e| cluster_err(dir, e.to_string()))?;
    writeln!(hba, "local all all trust").map_err(|e| cluster_err(dir, e.to_string()))?;
    Ok(())
}

/// The pid of a live server of the cluster in `dir`, from its `postmaster.pid`.
fn running_postmaster(dir: &Path) -> Option<i32> {
    let text = fs::read_to_string(dir.join("postmaster.pid")).ok()?;
    let pid: i32 = text.lines().next()?.trim().parse().ok()?;
    (pid > 0 && is_postmaster_of(pid, dir)).then_some(pid)
}

/// The server's status line of `postmaster.pid` (`starting`, `ready`, `stopping`, `standby`).
fn pid_file_status(dir: &Path) -> Option<String> {
    let text = fs::read_to_string(dir.join("postmaster.pid")).ok()?;
    Some(text.lines().nth(7)?.trim().to_string())
}

/// Removes a `postmaster.pid` and socket lock file that name no live server of this cluster (left by a
/// crash, perhaps naming a pid that another process has since been given), so that `postgres` starts.
fn clear_stale_locks(dir: &Path, socket_dir: &Path) -> Result<(), Error> {
    let socket = socket_dir.join(format!(".s.PGSQL.{PORT}"));
    let socket_lock = socket_dir.join(format!(".s.PGSQL.{PORT}.lock"));
    for lock in [dir.join("postmaster.pid"), socket_lock.clone()] {
        let Ok(text) = fs::read_to_string(&lock) else { continue };
        let pid: i32 = text.lines().next().and_then(|l| l.trim().parse().ok()).unwrap_or(0);
        if pid > 0 && is_postmaster_of(pid, dir) {
            continue;
        }
        tracing::warn!(file = %lock.display(), "removing a lock file left by a PostgreSQL server that is gone");
        fs::remove_file(&lock)
            .map_err(|e| cluster_err(dir, format!("cannot remove the stale {}: {e}", lock.display())))?;
        if lock == socket_lock {
            let _ = fs::remove_file(&socket);
        }
    }
    Ok(())
}

/// Whether `pid` is a live postgres server working in `dir` (a reused pid belongs to something else). A
/// server's working directory is its data directory, however it was named on its command line.
fn is_postmaster_of(pid: i32, dir: &Path) -> bool {
    let comm = fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
    if !comm.trim().starts_with("postgres") || process_state(pid) == Some('Z') {
        return false;
    }
    let cwd = fs::read_link(format!("/proc/{pid}/cwd")).ok();
    let want = fs::canonicalize(dir).unwrap_or_else(|_| dir.to_path_buf());
    match cwd {
        Some(cwd) => cwd == want,
        None => fs::read(format!("/proc/{pid}/cmdline"))
            .is_ok_and(|c| String::from_utf8_lossy(&c).contains(&*dir.to_string_lossy())),
    }
}

/// The fields of `/proc/<pid>/stat` after the command name.
fn stat_fields(pid: i32) -> Option<Vec<String>> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after = &stat[stat.rfind(')')? + 1..];
    Some(after.split_whitespace().map(str::to_string).collect())
}

fn process_state(pid: i32) -> Option<char> {
    stat_fields(pid)?.first()?.chars().next()
}

/// `<pid>:<start time>`: names one process for its whole life, even after its pid is reused.
fn process_token(pid: i32) -> Option<String> {
    // Field 22 of stat is the start time; the fields here begin with field 3.
    Some(format!("{pid}:{}", stat_fields(pid)?.get(19)?))
}

/// Whether the process a [`process_token`] names still runs.
fn token_alive(token: &str) -> bool {
    let Some(pid) = token.split(':').next().and_then(|p| p.parse::<i32>().ok()) else { return false };
    process_state(pid).is_some_and(|s| s != 'Z') && process_token(pid).as_deref() == Some(token)
}

/// The `oee-server` process that started the server `pid`, as a [`process_token`]; `None` for a server
/// started otherwise (by hand, by `pg_ctl`, by a service manager).
fn postmaster_owner(pid: i32) -> Option<String> {
    let env = fs::read(format!("/proc/{pid}/environ")).ok()?;
    env.split(|&b| b == 0).find_map(|kv| {
        let kv = String::from_utf8_lossy(kv);
        kv.strip_prefix(OWNER_ENV).and_then(|v| v.strip_prefix('=')).filter(|v| !v.is_empty()).map(str::to_string)
    })
}

#[allow(unsafe_code)]
fn signal(pid: i32, sig: i32) {
    // SAFETY: kill has no memory-safety preconditions.
    unsafe {
        libc::kill(pid, sig);
    }
}

/// The socket lives in the data directory unless that path is too long for a unix socket.
fn socket_dir_for(dir: &Path, owner: Owner) -> Result<PathBuf, Error> {
    let socket_name = format!(".s.PGSQL.{PORT}");
    if dir.join(&socket_name).as_os_str().len() <= MAX_SOCKET_PATH {
        return Ok(dir.to_path_buf());
    }
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    dir.hash(&mut h);
    let short = std::env::temp_dir().join(format!("oee-pg-{:016x}", h.finish()));
    fs::create_dir_all(&short).map_err(|e| cluster_err(dir, format!("cannot create {}: {e}", short.display())))?;
    if owner.switch {
        std::os::unix::fs::chown(&short, Some(owner.uid), Some(owner.gid))
            .map_err(|e| cluster_err(dir, e.to_string()))?;
    }
    fs::set_permissions(&short, fs::Permissions::from_mode(0o700)).map_err(|e| cluster_err(dir, e.to_string()))?;
    Ok(short)
}

fn log_tail(path: &Path) -> String {
    let Ok(f) = fs::File::open(path) else { return String::new() };
    let lines: Vec<String> = BufReader::new(f).lines().map_while(Result::ok).collect();
    lines[lines.len().saturating_sub(15)..].join("\n")
}

/// Whether TimescaleDB's library is installed for the PostgreSQL whose server binaries are in `bin_dir`
/// (empty: found as for the embedded cluster): `timescaledb.so` in its package library directory.
pub fn timescale_library_installed(bin_dir: &Path) -> bool {
    let Ok(bin) = find_bin_dir(bin_dir) else { return false };
    let beside = bin.parent().map(|p| p.join("lib").join("timescaledb.so"));
    if beside.as_ref().is_some_and(|p| p.is_file()) {
        return true;
    }
    std::process::Command::new(bin.join("pg_config"))
        .arg("--pkglibdir")
        .output()
        .ok()
        .filter(|o| o.status.success())
        .is_some_and(|o| Path::new(String::from_utf8_lossy(&o.stdout).trim()).join("timescaledb.so").is_file())
}

/// `settings` with TimescaleDB preloaded: `timescaledb` added to a `shared_preload_libraries` the user set
/// (once, keeping theirs), and its telemetry reporter turned off unless the user set
/// `timescaledb.telemetry_level` (it would try to reach Timescale's servers every day).
pub fn with_timescale_preload(mut settings: Vec<(String, String)>) -> Vec<(String, String)> {
    let is = |k: &str, name: &str| k.trim().eq_ignore_ascii_case(name);
    match settings.iter_mut().find(|(k, _)| is(k, "shared_preload_libraries")) {
        Some((_, v)) => {
            let mut libs: Vec<String> = v
                .split(',')
                .map(|l| l.trim().trim_matches(|c| c == '\'' || c == '"').trim().to_string())
                .filter(|l| !l.is_empty())
                .collect();
            if !libs.iter().any(|l| l.eq_ignore_ascii_case("timescaledb")) {
                libs.insert(0, "timescaledb".into());
            }
            *v = libs.join(",");
        }
        None => settings.push(("shared_preload_libraries".into(), "timescaledb".into())),
    }
    if !settings.iter().any(|(k, _)| is(k, "timescaledb.telemetry_level")) {
        settings.push(("timescaledb.telemetry_level".into(), "off".into()));
    }
    settings
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timescale_is_preloaded_once_beside_the_users_libraries() {
        let s = |pairs: &[(&str, &str)]| pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect::<Vec<_>>();
        let cases = [
            (s(&[]), s(&[("shared_preload_libraries", "timescaledb"), ("timescaledb.telemetry_level", "off")])),
            (
                s(&[("shared_buffers", "1GB"), ("shared_preload_libraries", "pg_stat_statements")]),
                s(&[
                    ("shared_buffers", "1GB"),
                    ("shared_preload_libraries", "timescaledb,pg_stat_statements"),
                    ("timescaledb.telemetry_level", "off"),
                ]),
            ),
            (
                s(&[("shared_preload_libraries", "'pg_stat_statements', timescaledb")]),
                s(&[
                    ("shared_preload_libraries", "pg_stat_statements,timescaledb"),
                    ("timescaledb.telemetry_level", "off"),
                ]),
            ),
            (
                s(&[("Shared_Preload_Libraries", "TimescaleDB"), ("timescaledb.telemetry_level", "basic")]),
                s(&[("Shared_Preload_Libraries", "TimescaleDB"), ("timescaledb.telemetry_level", "basic")]),
            ),
        ];
        for (given, want) in cases {
            assert_eq!(with_timescale_preload(given.clone()), want, "{given:?}");
        }
    }

    #[test]
    fn missing_server_binaries_name_the_package_to_install() {
        let empty = std::env::temp_dir().join(format!("oee-no-pg-{}", std::process::id()));
        fs::create_dir_all(&empty).unwrap();
        let err = find_bin_dir(&empty).unwrap_err().to_string();
        assert!(err.contains("apt-get install postgresql"), "{err}");
        assert!(err.contains(&*empty.to_string_lossy()), "{err}");
        fs::remove_dir_all(&empty).ok();
    }

    #[test]
    fn a_non_cluster_directory_is_not_overwritten() {
        let dir = std::env::temp_dir().join(format!("oee-not-pg-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        fs::write(dir.join("precious.txt"), "keep me").unwrap();
        let owner = Owner { uid: 0, gid: 0, switch: false };
        let err = init_cluster(Path::new("/nonexistent"), &dir, owner, true).unwrap_err().to_string();
        assert!(err.contains("not empty"), "{err}");
        assert_eq!(fs::read_to_string(dir.join("precious.txt")).unwrap(), "keep me");
        fs::remove_dir_all(&dir).ok();
    }

    #[test]
    fn a_process_token_names_one_process_for_its_life() {
        let me = std::process::id() as i32;
        let token = process_token(me).unwrap();
        assert!(token_alive(&token), "{token}");
        let (pid, start) = token.split_once(':').unwrap();
        let later: u64 = start.parse::<u64>().unwrap() + 1;
        assert!(!token_alive(&format!("{pid}:{later}")), "the same pid started at another time is another process");
        assert!(!token_alive("0:1") && !token_alive("") && !token_alive("x:y"));
        assert_eq!(postmaster_owner(me), None, "this process was not started as an embedded postgres");
    }

    #[test]
    fn locks_naming_a_process_that_is_not_the_clusters_postgres_are_stale() {
        let dir = std::env::temp_dir().join(format!("oee-stale-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        // This process is alive but no postgres server of the directory: a reused pid after a crash.
        let me = std::process::id();
        fs::write(dir.join("postmaster.pid"), format!("{me}\n{}\n", dir.display())).unwrap();
        fs::write(dir.join(".s.PGSQL.5432.lock"), format!("{me}\n")).unwrap();
        fs::write(dir.join(".s.PGSQL.5432"), "").unwrap();
        assert_eq!(running_postmaster(&dir), None);
        assert_eq!(settle_running(&dir, &dir, Role::Server).unwrap(), None);
        for f in ["postmaster.pid", ".s.PGSQL.5432.lock", ".s.PGSQL.5432"] {
            assert!(!dir.join(f).exists(), "{f} was removed");
        }
        fs::remove_dir_all(&dir).ok();
    }

    #[test]
    fn long_cluster_paths_get_a_short_socket_directory() {
        let owner = Owner { uid: 0, gid: 0, switch: false };
        let short = Path::new("/tmp/x/pg");
        assert_eq!(socket_dir_for(short, owner).unwrap(), short);
        let long = std::env::temp_dir().join("a".repeat(120));
        let sock = socket_dir_for(&long, owner).unwrap();
        assert!(sock.join(".s.PGSQL.5432").as_os_str().len() <= MAX_SOCKET_PATH);
        assert_eq!(sock, socket_dir_for(&long, owner).unwrap(), "the same cluster always gets the same socket");
    }
}
