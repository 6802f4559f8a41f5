//! The embedded PostgreSQL cluster: used when no `database.url` is configured. It runs the machine's
//! installed PostgreSQL server binaries on a private data directory, listening on a unix socket only,
//! and stops with this process (also when this process dies without cleaning up).

use std::fs;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use sqlx::postgres::PgConnectOptions;

use crate::error::Error;

/// The superuser of the embedded cluster.
pub const SUPERUSER: &str = "oee";
const PORT: u16 = 5432;
/// Longest path of a unix socket file on Linux (sun_path is 108 bytes with the terminating NUL).
const MAX_SOCKET_PATH: usize = 107;

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

/// A running private cluster. Dropping it stops the server.
#[derive(Debug)]
pub struct EmbeddedCluster {
    dir: PathBuf,
    socket_dir: PathBuf,
    pid: i32,
    /// Signalled when the server this process started exits; `None` when attached to a server that
    /// another process (a running oee-server) started.
    exited: Option<mpsc::Receiver<()>>,
    stopped: bool,
}

impl EmbeddedCluster {
    /// Creates the cluster on first use, then starts it and waits until it accepts connections.
    /// Blocking: call it from a plain thread or `spawn_blocking`.
    pub fn start(opts: &ClusterOptions) -> Result<EmbeddedCluster, Error> {
        let bin = find_bin_dir(&opts.bin_dir)?;
        let owner = owner_for(&opts.run_as)?;
        let dir = absolute(&opts.dir)?;
        prepare_dir(&dir, owner)?;
        if !dir.join("PG_VERSION").exists() {
            init_cluster(&bin, &dir, owner, opts.disposable)?;
        }
        let socket_dir = socket_dir_for(&dir, owner)?;
        if let Some(pid) = clear_stale_pid(&dir)? {
            // Another oee-server process runs this cluster (e.g. `oee-server machine add` beside a running
            // server): use it, and leave it running.
            let mut cluster = EmbeddedCluster { dir, socket_dir, pid, exited: None, stopped: true };
            cluster.wait_ready(Duration::from_secs(120))?;
            return Ok(cluster);
        }

        let mut cmd = Command::new(bin.join("postgres"));
        cmd.arg("-D").arg(&dir).args(["-c", "listen_addresses="]);
        cmd.arg("-c").arg(format!("unix_socket_directories={}", socket_dir.display()));
        cmd.arg("-c").arg(format!("port={PORT}"));
        cmd.args(["-c", "unix_socket_permissions=0700"]);
        if opts.disposable {
            cmd.args(["-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off"]);
            cmd.args(["-c", "max_connections=300"]);
        }
        for (k, v) in &opts.settings {
            cmd.arg("-c").arg(format!("{k}={v}"));
        }
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join("server.log"))
            .map_err(|e| cluster_err(&dir, format!("cannot open server.log: {e}")))?;
        let log2 = log.try_clone().map_err(|e| cluster_err(&dir, e.to_string()))?;
        cmd.stdin(Stdio::null()).stdout(log).stderr(log2);
        child_setup(&mut cmd, owner, true);

        // The server is spawned from a thread that lives exactly as long as the server: the kernel's
        // parent-death signal is tied to the spawning thread, and this thread also reaps the child.
        let (pid_tx, pid_rx) = mpsc::channel();
        let (exit_tx, exit_rx) = mpsc::channel();
        std::thread::Builder::new()
            .name("postgres-keeper".into())
            .spawn(move || match cmd.spawn() {
                Ok(mut child) => {
                    let _ = pid_tx.send(Ok(child.id() as i32));
                    let _ = child.wait();
                    let _ = exit_tx.send(());
                }
                Err(e) => {
                    let _ = pid_tx.send(Err(e));
                }
            })
            .map_err(|e| cluster_err(&dir, format!("cannot start a thread: {e}")))?;
        let pid = pid_rx
            .recv()
            .map_err(|_| cluster_err(&dir, "the postgres keeper thread died".into()))?
            .map_err(|e| cluster_err(&dir, format!("cannot run {}: {e}", bin.join("postgres").display())))?;

        let mut cluster = EmbeddedCluster { dir, socket_dir, pid, exited: Some(exit_rx), stopped: false };
        cluster.wait_ready(Duration::from_secs(120))?;
        Ok(cluster)
    }

    /// Connection options for `database` on this cluster.
    pub fn connect_options(&self, database: &str) -> PgConnectOptions {
        PgConnectOptions::new().socket(&self.socket_dir).port(PORT).username(SUPERUSER).database(database)
    }

    /// The cluster's data directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Stops the server (fast shutdown: open transactions are rolled back, committed data is kept).
    pub fn stop(&mut self) -> Result<(), Error> {
        let Some(exited) = &self.exited else { return Ok(()) };
        if self.stopped {
            return Ok(());
        }
        self.stopped = true;
        signal(self.pid, libc::SIGINT);
        match exited.recv_timeout(Duration::from_secs(60)) {
            Ok(()) | Err(mpsc::RecvTimeoutError::Disconnected) => Ok(()),
            Err(mpsc::RecvTimeoutError::Timeout) => {
                signal(self.pid, libc::SIGQUIT);
                Err(cluster_err(&self.dir, "postgres did not stop within 60 s; sent SIGQUIT".into()))
            }
        }
    }

    fn wait_ready(&mut self, limit: Duration) -> Result<(), Error> {
        let deadline = Instant::now() + limit;
        let pid_file = self.dir.join("postmaster.pid");
        loop {
            let died = match &self.exited {
                Some(rx) => rx.try_recv().is_ok(),
                None => !is_our_postgres(self.pid, &self.dir),
            };
            if died {
                self.stopped = true;
                return Err(cluster_err(
                    &self.dir,
                    format!("postgres exited during start-up:\n{}", log_tail(&self.dir.join("server.log"))),
                ));
            }
            if let Ok(text) = fs::read_to_string(&pid_file)
                && text.lines().nth(7).is_some_and(|l| l.trim() == "ready")
            {
                return Ok(());
            }
            if Instant::now() > deadline {
                let _ = self.stop();
                return Err(cluster_err(&self.dir, "postgres did not become ready within 120 s".into()));
            }
            std::thread::sleep(Duration::from_millis(25));
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

fn cluster_err(dir: &Path, reason: String) -> Error {
    Error::Cluster { dir: dir.to_path_buf(), reason }
}

fn absolute(dir: &Path) -> Result<PathBuf, Error> {
    std::path::absolute(dir).map_err(|e| cluster_err(dir, e.to_string()))
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

/// `postmaster.pid` names either a live server of this directory (its pid is returned) or, after a
/// crash, a process that is gone: then the stale file is removed so the server can start.
fn clear_stale_pid(dir: &Path) -> Result<Option<i32>, Error> {
    let pid_file = dir.join("postmaster.pid");
    let Ok(text) = fs::read_to_string(&pid_file) else { return Ok(None) };
    let pid: i32 = text.lines().next().and_then(|l| l.trim().parse().ok()).unwrap_or(0);
    if pid > 0 && is_our_postgres(pid, dir) {
        return Ok(Some(pid));
    }
    tracing::warn!("removing a stale postmaster.pid left by a crash");
    fs::remove_file(&pid_file).map_err(|e| cluster_err(dir, format!("cannot remove stale postmaster.pid: {e}")))?;
    Ok(None)
}

/// Whether `pid` is a postgres server of the cluster in `dir` (a reused pid belongs to something else).
fn is_our_postgres(pid: i32, dir: &Path) -> bool {
    fs::read(format!("/proc/{pid}/cmdline"))
        .map(|cmd| {
            let cmd = String::from_utf8_lossy(&cmd);
            cmd.contains("postgres") && cmd.contains(&*dir.to_string_lossy())
        })
        .unwrap_or(false)
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

#[cfg(test)]
mod tests {
    use super::*;

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
