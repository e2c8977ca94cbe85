//! What the benchmark drives and reads: the agent as a child process, the workload examples,
//! /proc counters of a process, the agent's Prometheus metrics, and the machine itself.

use std::{
    io::{BufRead as _, BufReader, Read as _, Write as _},
    net::TcpStream,
    path::{Path, PathBuf},
    process::{Child, ChildStdout, Command, Stdio},
    sync::mpsc,
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, bail};

use crate::proc;

/// The built binaries the benchmark runs.
pub struct Bins {
    pub osprey: PathBuf,
    pub workload: PathBuf,
    pub process_table: PathBuf,
    pub syscall_loop: PathBuf,
    /// A two-instruction program on `raw_syscalls:sys_exit`: the hook's own cost.
    pub empty_hook: PathBuf,
    /// Falco's upstream stable rules, when `../shared` sits beside the clone.
    pub falco_rules: Option<PathBuf>,
}

/// How the agent runs in a measurement.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// No agent at all.
    None,
    /// No agent, a program of two instructions on `sys_exit` (the `empty_hook` example): what
    /// any program on the syscall hook costs before it does anything.
    EmptyHook,
    /// No agent, the same program on `syscalls:sys_exit_openat` alone (`empty_hook
    /// per-syscall`): what the per-syscall events cost a syscall that runs no program.
    EmptyEvent,
    /// No agent, the capture floor on `sys_exit` (`empty_hook capture`): per `openat`, the
    /// clock, the thread's ids, the path string and a ring-buffer record, nothing else: what
    /// any agent's capture of an open costs on this host before its own design.
    CaptureFloor,
    /// The capture floor with one of its parts left out (`empty_hook capture without PART`):
    /// what that part costs on this host is the floor's time less this.
    CaptureFloorWithout(FloorPart),
    /// Programs attached and inert (`osprey trace --floor`): the cost of the hooks alone.
    Floor,
    /// `osprey run` with its embedded default rules.
    Default,
    /// The same with `sys_exit` attached to each wanted syscall's own event
    /// (`--kernel-syscall-events always`): what a node whose kernel has no 32-bit syscall
    /// entry gets (there `auto` chooses it; here the entry is on, and its calls would go unseen).
    PerSyscall,
    /// The same with the kernel open filter off (`--no-kernel-open-filter`): every open the
    /// rules' event types name is captured, as before the filter.
    DefaultUnfiltered,
    /// `osprey run` with Falco's upstream stable rules.
    Falco,
}

/// A part of the capture floor: a helper call every capture of an open makes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FloorPart {
    /// `bpf_ktime_get_boot_ns`.
    Clock,
    /// `bpf_get_current_pid_tgid`.
    Ids,
    /// `bpf_probe_read_user_str` of the path.
    Path,
    /// `bpf_ringbuf_output` of the record.
    Record,
}

impl FloorPart {
    pub const ALL: [FloorPart; 4] = [
        FloorPart::Clock,
        FloorPart::Ids,
        FloorPart::Path,
        FloorPart::Record,
    ];

    /// The word `empty_hook capture without` takes.
    pub fn arg(self) -> &'static str {
        match self {
            FloorPart::Clock => "clock",
            FloorPart::Ids => "ids",
            FloorPart::Path => "path",
            FloorPart::Record => "record",
        }
    }

    /// What the part is, for the report.
    pub fn what(self) -> &'static str {
        match self {
            FloorPart::Clock => "the clock (`bpf_ktime_get_boot_ns`)",
            FloorPart::Ids => "the thread's ids (`bpf_get_current_pid_tgid`)",
            FloorPart::Path => "the path string (`bpf_probe_read_user_str`)",
            FloorPart::Record => "the record (`bpf_ringbuf_output`)",
        }
    }
}

impl Mode {
    pub fn label(self) -> &'static str {
        match self {
            Mode::None => "no agent",
            Mode::EmptyHook => "empty program on sys_exit (the hook alone)",
            Mode::EmptyEvent => "empty program on sys_exit_openat (a per-syscall event)",
            Mode::CaptureFloor => "capture floor on sys_exit (clock, ids, path, record)",
            Mode::CaptureFloorWithout(part) => match part {
                FloorPart::Clock => "capture floor without its clock",
                FloorPart::Ids => "capture floor without the thread's ids",
                FloorPart::Path => "capture floor without the path string",
                FloorPart::Record => "capture floor without the record",
            },
            Mode::Floor => "floor (programs attached, inert)",
            Mode::Default => "osprey, default rules",
            Mode::PerSyscall => "osprey, default rules, sys_exit per syscall",
            Mode::DefaultUnfiltered => "osprey, default rules, open filter off",
            Mode::Falco => "osprey, Falco upstream stable rules",
        }
    }

    /// The program the mode runs: the agent, or the empty hook.
    pub fn program(self, bins: &Bins) -> &Path {
        match self {
            Mode::EmptyHook
            | Mode::EmptyEvent
            | Mode::CaptureFloor
            | Mode::CaptureFloorWithout(_) => &bins.empty_hook,
            _ => &bins.osprey,
        }
    }

    /// The program's arguments, or None when nothing runs.
    pub fn args(self, bins: &Bins) -> Option<Vec<String>> {
        match self {
            Mode::None => None,
            Mode::EmptyHook => Some(vec![]),
            Mode::EmptyEvent => Some(vec!["per-syscall".into()]),
            Mode::CaptureFloor => Some(vec!["capture".into()]),
            Mode::CaptureFloorWithout(part) => {
                Some(vec!["capture".into(), "without".into(), part.arg().into()])
            }
            Mode::Floor => Some(vec!["trace".into(), "-q".into(), "--floor".into()]),
            Mode::Default => Some(vec!["run".into(), "--no-watch-rules".into()]),
            Mode::PerSyscall => Some(vec![
                "run".into(),
                "--no-watch-rules".into(),
                "--kernel-syscall-events=always".into(),
            ]),
            Mode::DefaultUnfiltered => Some(vec![
                "run".into(),
                "--no-watch-rules".into(),
                "--no-kernel-open-filter".into(),
            ]),
            Mode::Falco => Some(vec![
                "run".into(),
                "--no-watch-rules".into(),
                "--rules".into(),
                bins.falco_rules.as_ref()?.display().to_string(),
            ]),
        }
    }
}

/// A running agent. Stopped with SIGINT on drop if not stopped before.
pub struct Agent {
    child: Child,
    pub pid: u32,
    /// Alert lines on stdout when started with `stdout: true`.
    pub stdout: Option<ChildStdout>,
}

impl Agent {
    /// Starts `program ARGS` (the agent, or the empty hook) and waits until it says it is
    /// running (programs attached, rules loaded). Its stdout (alerts) is discarded unless
    /// `stdout` asks for it.
    pub fn start(program: &Path, args: &[String], stdout: bool) -> Result<Agent> {
        let mut cmd = Command::new(program);
        cmd.args(args)
            .stdin(Stdio::null())
            .stdout(if stdout {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stderr(Stdio::piped());
        let mut child = cmd
            .spawn()
            .with_context(|| format!("starting `{}`", proc::display(&cmd)))?;
        let stderr = child.stderr.take().expect("piped stderr");
        let (tx, rx) = mpsc::channel();
        // Reads stderr to its end, so that the agent never blocks on a full pipe.
        std::thread::spawn(move || {
            let mut tail = Vec::new();
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if line.contains("osprey is running") || line.contains("tracing; Ctrl-C") {
                    let _ = tx.send(Ok(()));
                }
                if tail.len() < 20 {
                    tail.push(line);
                }
            }
            let _ = tx.send(Err(tail.join("\n")));
        });
        let pid = child.id();
        let mut agent = Agent {
            stdout: child.stdout.take(),
            child,
            pid,
        };
        match rx.recv_timeout(Duration::from_secs(120)) {
            Ok(Ok(())) => Ok(agent),
            Ok(Err(log)) => {
                let _ = agent.child.wait();
                bail!(
                    "`{}` exited before it was ready:\n{log}",
                    proc::display(&cmd)
                )
            }
            Err(_) => bail!("`{}` not ready after 120 s", proc::display(&cmd)),
        }
    }

    /// SIGINT, then waits (at most 20 s, then SIGKILL).
    pub fn stop(mut self) -> Result<()> {
        self.stop_inner()
    }

    fn stop_inner(&mut self) -> Result<()> {
        if self.child.try_wait()?.is_some() {
            return Ok(());
        }
        let _ = Command::new("kill")
            .args(["-INT", &self.pid.to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if self.child.try_wait()?.is_some() {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        self.child.kill()?;
        self.child.wait()?;
        Ok(())
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.stop_inner();
    }
}

/// Runs a workload example and returns its output line.
pub fn workload(bin: &Path, args: &[String]) -> Result<String> {
    // Without the library path `cargo xtask` inherits from cargo (the toolchain's and the
    // target's directories): with it, the dynamic loader of every program a workload starts
    // looked for libc there first, about 22 failed opens per exec of /bin/true that no node
    // makes (the exec row's kernel time 30.9 µs with it, at 22685ce).
    let out = proc::output(
        Command::new(bin).args(args).env_remove("LD_LIBRARY_PATH"),
        "benchmark workload",
    )?;
    Ok(out.trim().to_string())
}

/// The number before `unit` in `line` (`"open x5: 812.3 ns/iteration"` → 812.3).
pub fn number_before(line: &str, unit: &str) -> Option<f64> {
    let head = &line[..line.find(unit)?];
    head.split_whitespace().last()?.parse().ok()
}

/// The node's irq_work interrupts so far, every CPU (`IWI` in /proc/interrupts).
pub fn irq_work_interrupts() -> Result<u64> {
    let text = std::fs::read_to_string("/proc/interrupts")?;
    let line = text
        .lines()
        .find(|l| l.trim_start().starts_with("IWI:"))
        .context("no IWI line in /proc/interrupts")?;
    Ok(line
        .split_whitespace()
        .skip(1)
        .map_while(|w| w.parse::<u64>().ok())
        .sum())
}

/// CPU seconds (user + system) a process has used.
pub fn cpu_seconds(pid: u32) -> Result<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // Fields after the `(comm)`, which may contain spaces: state is field 3, utime 14, stime 15.
    let rest = &stat[stat.rfind(')').context("malformed /proc/PID/stat")? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = f[11].parse::<f64>()? + f[12].parse::<f64>()?;
    Ok(ticks / clock_ticks())
}

fn clock_ticks() -> f64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(100.0)
}

/// A `/proc/PID/status` size in KiB (`VmRSS`, `VmHWM`).
pub fn status_kib(pid: u32, key: &str) -> Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix(':'))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .with_context(|| format!("no {key} in /proc/{pid}/status"))
}

/// Where an agent's memory is, beyond its RSS: the BPF ring buffer's data pages are mapped
/// twice into the consumer (so that a record wrapping the end reads as one), and counted twice
/// in its RSS, though they are kernel memory, charged once; the other maps and the programs
/// hold kernel memory that no RSS shows.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Footprint {
    /// RSS of the process's mappings of BPF maps (`anon_inode:bpf-map`): the ring buffer's.
    pub maps_mapped_kib: u64,
    /// Kernel memory of the BPF maps and programs it holds (`memlock` of their fdinfo).
    pub kernel_kib: u64,
}

impl Footprint {
    pub fn of(pid: u32) -> Result<Self> {
        let smaps = std::fs::read_to_string(format!("/proc/{pid}/smaps"))
            .with_context(|| format!("reading /proc/{pid}/smaps"))?;
        let mut kernel = 0;
        for fd in std::fs::read_dir(format!("/proc/{pid}/fdinfo"))? {
            // A descriptor closed meanwhile has no fdinfo left: nothing to count.
            if let Ok(info) = std::fs::read_to_string(fd?.path()) {
                kernel += bpf_memlock(&info);
            }
        }
        Ok(Self {
            maps_mapped_kib: mapped_maps_kib(&smaps),
            kernel_kib: kernel / 1024,
        })
    }
}

/// The `Rss:` of every mapping of a BPF map in `/proc/PID/smaps` text, in KiB.
pub fn mapped_maps_kib(smaps: &str) -> u64 {
    let mut in_map = false;
    let mut kib = 0;
    for line in smaps.lines() {
        let mut words = line.split_whitespace();
        let first = words.next().unwrap_or("");
        // A mapping's header: `start-end perms offset dev inode [path]`.
        if first.contains('-') && !first.ends_with(':') {
            in_map = words.nth(4) == Some("anon_inode:bpf-map");
        } else if in_map && first == "Rss:" {
            kib += words
                .next()
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(0);
        }
    }
    kib
}

/// The `memlock` bytes of a BPF map's or program's fdinfo text; 0 for any other descriptor.
pub fn bpf_memlock(fdinfo: &str) -> u64 {
    let bpf = fdinfo
        .lines()
        .any(|l| l.starts_with("map_type:") || l.starts_with("prog_type:"));
    if !bpf {
        return 0;
    }
    fdinfo
        .lines()
        .find_map(|l| l.strip_prefix("memlock:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

/// A free loopback port for the agent's metrics.
pub fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// The sums of the agent's event and kernel-drop counters, from its `/metrics`.
#[derive(Clone, Copy, Debug, Default)]
pub struct Counters {
    pub events: f64,
    pub dropped: f64,
}

pub fn scrape(port: u16) -> Result<Counters> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).context("connecting to /metrics")?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(
        s,
        "GET /metrics HTTP/1.0\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    )?;
    let mut body = String::new();
    s.read_to_string(&mut body)?;
    let sum = |name: &str| -> f64 {
        body.lines()
            .filter(|l| l.starts_with(name) && l[name.len()..].starts_with(['{', ' ']))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    };
    Ok(Counters {
        events: sum("osprey_events_total"),
        dropped: sum("osprey_kernel_dropped_total"),
    })
}

/// The machine the numbers were taken on.
pub struct Machine {
    pub kernel: String,
    pub cores: usize,
    pub memory_mib: u64,
    pub cpu_model: String,
    pub load: String,
    pub commit: String,
    /// Other `osprey` processes running at the start (other people's agents and tests): their
    /// programs sit on the same hooks and are in every figure, "no agent" included.
    pub other_agents: usize,
    /// `kernel.bpf_stats_enabled` as the bench found it (it turns it off for every row but
    /// the kernel-cost rows, and puts it back at the end).
    pub bpf_stats_found: bool,
}

pub fn machine(root: &Path) -> Machine {
    let read = |p: &str| std::fs::read_to_string(p).unwrap_or_default();
    let meminfo = read("/proc/meminfo");
    let cpuinfo = read("/proc/cpuinfo");
    let commit = Command::new("git")
        .args(["describe", "--always", "--dirty"])
        .current_dir(root)
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .map(|s| s.trim().to_string())
        .unwrap_or_default();
    Machine {
        kernel: read("/proc/sys/kernel/osrelease").trim().to_string(),
        cores: std::thread::available_parallelism().map_or(0, |n| n.get()),
        memory_mib: meminfo
            .lines()
            .find_map(|l| l.strip_prefix("MemTotal:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .map_or(0, |k| k / 1024),
        cpu_model: cpuinfo
            .lines()
            .find_map(|l| l.strip_prefix("model name"))
            .map(|v| v.trim_start_matches([' ', '\t', ':']).to_string())
            .unwrap_or_else(|| "unknown".into()),
        load: load_average(),
        commit,
        other_agents: other_agents(),
        bpf_stats_found: BpfStats::enabled(),
    }
}

/// `kernel.bpf_stats_enabled`: while it is on, the kernel reads the clock before and after
/// every run of every BPF program, which costs more than an empty program's whole dispatch on
/// these VMs (getppid under the empty hook: 181 ns with it off, 248 with it on). A benchmark
/// that found it on, left by a by-hand measurement or another tool, would charge that to the
/// agent in every wall-time row.
pub struct BpfStats {
    found: bool,
}

impl BpfStats {
    const PATH: &str = "/proc/sys/kernel/bpf_stats_enabled";

    pub fn enabled() -> bool {
        std::fs::read_to_string(Self::PATH).is_ok_and(|s| s.trim() == "1")
    }

    pub fn set(on: bool) -> Result<()> {
        std::fs::write(Self::PATH, if on { "1" } else { "0" }).with_context(|| {
            format!(
                "{} kernel.bpf_stats_enabled",
                if on { "enabling" } else { "disabling" }
            )
        })
    }

    /// Turns the statistics off until the guard is dropped, which puts back what it found.
    pub fn off() -> Result<Self> {
        let found = Self::enabled();
        Self::set(false)?;
        Ok(Self { found })
    }
}

impl Drop for BpfStats {
    fn drop(&mut self) {
        let _ = Self::set(self.found);
    }
}

/// How many processes named `osprey` are running.
pub fn other_agents() -> usize {
    std::fs::read_dir("/proc")
        .map(|rd| {
            rd.filter_map(Result::ok)
                .filter(|e| {
                    std::fs::read_to_string(e.path().join("comm"))
                        .is_ok_and(|c| c.trim() == "osprey")
                })
                .count()
        })
        .unwrap_or(0)
}

/// The 1, 5 and 15 minute load averages.
pub fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ")
}

/// Median of a sample (0 when empty).
pub fn median(xs: &[f64]) -> f64 {
    percentile(xs, 50.0)
}

/// Nearest-rank percentile.
pub fn percentile(xs: &[f64], p: f64) -> f64 {
    if xs.is_empty() {
        return 0.0;
    }
    let mut v = xs.to_vec();
    v.sort_by(f64::total_cmp);
    let rank = ((p / 100.0) * v.len() as f64).ceil() as usize;
    v[rank.clamp(1, v.len()) - 1]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_the_maps_mappings_and_their_kernel_memory() {
        let smaps = "\
55d0a0000000-55d0a1000000 r-xp 00000000 fd:01 123 /usr/bin/osprey
Size:              16384 kB
Rss:                9000 kB
7f0000000000-7f0002001000 rw-s 00000000 00:0f 4321 anon_inode:bpf-map
Size:              32772 kB
Rss:               32772 kB
7f1000000000-7f1000100000 rw-p 00000000 00:00 0 
Rss:                 512 kB
7f2000000000-7f2000001000 rw-s 00000000 00:0f 4322 anon_inode:bpf-map
Rss:                   4 kB
";
        assert_eq!(mapped_maps_kib(smaps), 32776);
        let ring = "pos:\t0\nflags:\t02000002\nmnt_id:\t15\nino:\t4321\nmap_type:\t27\n\
                    key_size:\t0\nvalue_size:\t0\nmax_entries:\t16777216\n\
                    map_flags:\t0x0\nmap_extra:\t0x0\nmemlock:\t16855368\n";
        assert_eq!(bpf_memlock(ring), 16_855_368);
        let prog = "pos:\t0\nprog_type:\t26\nprog_jited:\t1\nmemlock:\t8192\n";
        assert_eq!(bpf_memlock(prog), 8192);
        assert_eq!(bpf_memlock("pos:\t0\nflags:\t02\nmnt_id:\t15\n"), 0);
    }

    #[test]
    fn parses_workload_lines() {
        assert_eq!(
            number_before("open x200000: 812.3 ns/iteration", "ns/iteration"),
            Some(812.3)
        );
        assert_eq!(
            number_before(
                "rate target 1000/s: 2999 opens in 3.00 s = 999 opens/s",
                "opens/s"
            ),
            Some(999.0)
        );
        assert_eq!(number_before("nothing here", "ns/iteration"), None);
    }

    #[test]
    fn percentiles_are_nearest_rank() {
        let xs: Vec<f64> = (1..=200).map(f64::from).collect();
        assert_eq!(median(&xs), 100.0);
        assert_eq!(percentile(&xs, 99.0), 198.0);
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[]), 0.0);
    }
}
