//! The machine a benchmark ran on, described in its report.

/// The machine the numbers were measured on, read at run time.
pub struct HostInfo {
    pub cpus: usize,
    pub cpu_model: String,
    pub memory: String,
    pub kernel: String,
    pub rustc: String,
    pub commit: String,
    /// Other work on the machine skews the numbers; the load average at the start shows whether there was any.
    pub loadavg: String,
}

impl HostInfo {
    /// The report lines every bench's section starts with: when, from which commit, on what machine, with
    /// which compiler.
    pub fn report_lines(&self) -> String {
        format!(
            "- Date: {}\n- Source: commit {}\n- Machine: {} CPUs ({}), {} memory, {}; load average before the run: \
             {}\n- Toolchain: {} (bench profile)\n",
            chrono::Utc::now().format("%Y-%m-%d %H:%M UTC"),
            self.commit,
            self.cpus,
            self.cpu_model,
            self.memory,
            self.kernel,
            self.loadavg,
            self.rustc
        )
    }

    pub fn gather() -> HostInfo {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let cpu_model = cpuinfo
            .lines()
            .find(|l| l.starts_with("model name"))
            .and_then(|l| l.split_once(':'))
            .map(|(_, v)| v.trim().to_string())
            .unwrap_or_else(|| "unknown".into());
        let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
        let memory = meminfo
            .lines()
            .find(|l| l.starts_with("MemTotal:"))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|kb| kb.parse::<f64>().ok())
            .map(|kb| format!("{:.1} GiB", kb / 1024.0 / 1024.0))
            .unwrap_or_else(|| "unknown".into());
        let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .map(|s| format!("Linux {}", s.trim()))
            .unwrap_or_else(|_| "unknown".into());
        let rustc = command_output("rustc", &["--version"]);
        let commit = command_output("git", &["-C", env!("CARGO_MANIFEST_DIR"), "rev-parse", "--short", "HEAD"]);
        let dirty = std::process::Command::new("git")
            .args(["-C", env!("CARGO_MANIFEST_DIR"), "status", "--porcelain", "--untracked-files=no"])
            .output()
            .map(|o| !o.stdout.is_empty())
            .unwrap_or(false);
        HostInfo {
            cpus: std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
            cpu_model,
            memory,
            kernel,
            rustc,
            commit: if dirty { format!("{commit} (with uncommitted changes)") } else { commit },
            loadavg: std::fs::read_to_string("/proc/loadavg")
                .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
                .unwrap_or_else(|_| "unknown".into()),
        }
    }
}

fn command_output(program: &str, args: &[&str]) -> String {
    std::process::Command::new(program)
        .args(args)
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_else(|| "unknown".into())
}
