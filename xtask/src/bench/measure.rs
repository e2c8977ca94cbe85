//! The measurements: each runs real processes, bounded in count and time, and returns plain
//! numbers with the command lines behind them.

use std::{
    collections::BTreeMap,
    io::{BufRead as _, BufReader},
    path::Path,
    time::{Duration, Instant, SystemTime},
};

use anyhow::{Context as _, Result};

use super::host::{
    Agent, Bins, BpfStats, Counters, FloorPart, Footprint, Mode, cpu_seconds, free_port,
    irq_work_interrupts, median, number_before, percentile, scrape, status_kib, workload,
};
use crate::proc;

/// The workloads of the overhead table: name and arguments of the `workload` example.
pub const WORKLOADS: &[(&str, &[&str])] = &[
    ("open+close /dev/null", &["open", "200000"]),
    ("exec /bin/true", &["exec", "300"]),
    (
        "exec /bin/true, a pod's environment (300 entries)",
        &["exec-pod", "300"],
    ),
    ("loopback TCP connect", &["connect", "5000"]),
    // Twenty rounds of the script (about half a second): with six, one run caught whatever
    // else the host did in 150 ms, and the rounds' ratios spread 0.74-1.32 for an empty program.
    ("build (sh, coreutils, cc)", &["build", "20"]),
    ("redis-benchmark SET+GET, 50 clients", &["redis", "100000"]),
    ("getppid, a syscall no rule wants", &["getppid", "2000000"]),
];

pub const ROUNDS: usize = 5;
/// Runs of a workload per agent start, of which the median is the round's sample: the
/// workloads take a fraction of a second each, an agent's start several, and one run alone
/// caught whatever else the host did in that fraction (the floor's ratio on open+close
/// ranged 0.89x to 1.38x over five rounds).
pub const REPEATS: usize = 3;

/// The build's goal (1.03x) is inside the spread of [`ROUNDS`] rounds on this host, so it is
/// measured again in this many, with only the modes it is judged in.
pub const BUILD_ROUNDS: usize = 15;

/// Nanoseconds per iteration, every round (in round order), per mode and workload.
pub struct Overhead {
    pub modes: Vec<Mode>,
    /// Name and `workload` arguments of each workload, by index.
    pub workloads: &'static [(&'static str, &'static [&'static str])],
    pub rounds: usize,
    pub samples: BTreeMap<(usize, usize), Vec<f64>>,
}

impl Overhead {
    pub fn median(&self, mode: usize, workload: usize) -> f64 {
        median(self.samples.get(&(mode, workload)).map_or(&[][..], |v| v))
    }

    /// `mode` over `base` on `workload`, round by round (the two ran seconds apart): the
    /// median, least and greatest of the rounds' ratios (NaN when nothing was measured).
    pub fn ratio(&self, mode: usize, base: usize, workload: usize) -> Ratio {
        let empty = Vec::new();
        let a = self.samples.get(&(mode, workload)).unwrap_or(&empty);
        let b = self.samples.get(&(base, workload)).unwrap_or(&empty);
        let mut r: Vec<f64> = a.iter().zip(b).map(|(x, y)| x / y).collect();
        r.sort_by(f64::total_cmp);
        Ratio {
            median: if r.is_empty() { f64::NAN } else { median(&r) },
            min: r.first().copied().unwrap_or(f64::NAN),
            max: r.last().copied().unwrap_or(f64::NAN),
        }
    }
}

/// Paired ratios of one mode to another over the rounds.
#[derive(Clone, Copy, Debug)]
pub struct Ratio {
    pub median: f64,
    pub min: f64,
    pub max: f64,
}

/// Every workload under every mode, `ROUNDS` times. In a round each workload runs under every
/// mode back to back (an agent started for it, `REPEATS` runs, stopped after), the order of
/// the modes rotating from workload to workload and round to round: a mode and the one it is
/// compared with ran seconds apart, where running every workload under one agent put the
/// whole table between them, and this machine's speed moves by half within a minute.
pub fn overhead(bins: &Bins) -> Result<Overhead> {
    let mut modes = vec![
        Mode::None,
        Mode::EmptyHook,
        Mode::EmptyEvent,
        Mode::Floor,
        Mode::Default,
        Mode::PerSyscall,
        Mode::DefaultUnfiltered,
    ];
    if bins.falco_rules.is_some() {
        modes.push(Mode::Falco);
    }
    paired(bins, modes, WORKLOADS, ROUNDS, "overhead")
}

/// The build alone, [`BUILD_ROUNDS`] rounds of no agent, the default rules and the
/// per-syscall form, paired as in [`overhead`].
pub fn build_closer(bins: &Bins) -> Result<Overhead> {
    let build = WORKLOADS
        .iter()
        .position(|(_, a)| a[0] == "build")
        .expect("a build workload");
    paired(
        bins,
        vec![Mode::None, Mode::Default, Mode::PerSyscall],
        &WORKLOADS[build..=build],
        BUILD_ROUNDS,
        "build, closer",
    )
}

fn paired(
    bins: &Bins,
    modes: Vec<Mode>,
    workloads: &'static [(&'static str, &'static [&'static str])],
    rounds: usize,
    what: &str,
) -> Result<Overhead> {
    let mut samples: BTreeMap<(usize, usize), Vec<f64>> = BTreeMap::new();
    for round in 0..rounds {
        for (w, (name, args)) in workloads.iter().enumerate() {
            let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
            for k in 0..modes.len() {
                let m = (round + w + k) % modes.len();
                let mode = modes[m];
                proc::step(format!(
                    "{what} round {}/{rounds}, {name}: {}",
                    round + 1,
                    mode.label()
                ));
                let agent = match mode.args(bins) {
                    Some(args) => Some(Agent::start(mode.program(bins), &args, false)?),
                    None => None,
                };
                // Let the agent's start-up work (the /proc scan) finish before timing.
                std::thread::sleep(Duration::from_millis(500));
                let mut runs = Vec::with_capacity(REPEATS);
                for _ in 0..REPEATS {
                    let line = workload(&bins.workload, &args)?;
                    runs.push(
                        number_before(&line, "ns/iteration")
                            .with_context(|| format!("unexpected workload output: {line}"))?,
                    );
                }
                samples.entry((m, w)).or_default().push(median(&runs));
                if let Some(a) = agent {
                    a.stop()?;
                }
            }
        }
    }
    Ok(Overhead {
        modes,
        workloads,
        rounds,
        samples,
    })
}

/// One step of a paced generator under the agent.
pub struct Step {
    pub target: u64,
    /// What the generator achieved (opens per second; each is one captured openat).
    pub generated: f64,
    /// Events the agent received per second (every kind).
    pub delivered: f64,
    pub dropped: f64,
    /// Agent CPU, in cores (1.0 = one core busy).
    pub cpu: f64,
}

/// Agent resources and throughput: RSS idle and under load, CPU at fixed rates, and the
/// highest rate delivered with zero drops.
pub struct Load {
    pub command: String,
    pub rss_idle_kib: u64,
    pub cpu_idle: f64,
    pub fixed: Vec<Step>,
    pub rss_load_kib: u64,
    pub ramp: Vec<Step>,
    /// The step at twice the best zero-drop rate.
    pub double: Option<Step>,
    /// `FILTERED_RATE` under the default agent, open filter on (`filtered_command`).
    pub filtered: Option<Step>,
    pub filtered_command: String,
    pub hwm_kib: u64,
    /// Idle: the RSS of the ring buffer's mapping, and the kernel memory of the maps and
    /// programs.
    pub footprint_idle: Footprint,
}

impl Load {
    /// The step without drops that generated the most.
    pub fn best_zero_drop(&self) -> Option<&Step> {
        self.ramp
            .iter()
            .chain(&self.fixed)
            .filter(|s| s.dropped == 0.0)
            .max_by(|a, b| a.generated.total_cmp(&b.generated))
    }
}

/// Rates the generator is asked for, and the agent's CPU measured at them.
pub const FIXED_RATES: &[u64] = &[10_000, 50_000, 100_000];
pub const RAMP_RATES: &[u64] = &[150_000, 200_000, 250_000, 300_000, 400_000, 500_000];
pub const STEP_SECS: u64 = 3;

pub fn load(bins: &Bins) -> Result<Load> {
    let port = free_port()?;
    // The open filter off: the generator's opens of /dev/null are what no rule watches, and
    // with the filter on they never leave the kernel (the `filtered` step below).
    let args: Vec<String> = vec![
        "run".into(),
        "--no-watch-rules".into(),
        "--no-kernel-open-filter".into(),
        "--metrics".into(),
        format!("127.0.0.1:{port}"),
    ];
    let command = format!("osprey {}", args.join(" "));
    proc::step(format!("agent load: {command}"));
    let agent = Agent::start(&bins.osprey, &args, false)?;
    std::thread::sleep(Duration::from_secs(2));
    let cpu0 = cpu_seconds(agent.pid)?;
    let t0 = Instant::now();
    std::thread::sleep(Duration::from_secs(3));
    let cpu_idle = (cpu_seconds(agent.pid)? - cpu0) / t0.elapsed().as_secs_f64();
    let rss_idle_kib = status_kib(agent.pid, "VmRSS")?;
    let footprint_idle = Footprint::of(agent.pid)?;

    let mut fixed = Vec::new();
    for &rate in FIXED_RATES {
        fixed.push(step(bins, &agent, port, rate, 2)?);
    }
    let rss_load_kib = status_kib(agent.pid, "VmRSS")?;
    let mut ramp = Vec::new();
    for &rate in RAMP_RATES {
        let s = step(bins, &agent, port, rate, 2)?;
        let stop = s.dropped > 0.0 || s.generated < 0.8 * rate as f64;
        ramp.push(s);
        if stop {
            break;
        }
    }
    let mut load = Load {
        command,
        rss_idle_kib,
        cpu_idle,
        fixed,
        rss_load_kib,
        ramp,
        double: None,
        filtered: None,
        filtered_command: String::new(),
        hwm_kib: 0,
        footprint_idle,
    };
    if let Some(best) = load.best_zero_drop() {
        let target = (2.0 * best.generated).round() as u64;
        load.double = Some(step(bins, &agent, port, target, 4)?);
    }
    load.hwm_kib = status_kib(agent.pid, "VmHWM")?;
    agent.stop()?;
    // The same generator under the default agent, open filter on.
    let port = free_port()?;
    let on: Vec<String> = vec![
        "run".into(),
        "--no-watch-rules".into(),
        "--metrics".into(),
        format!("127.0.0.1:{port}"),
    ];
    load.filtered_command = format!("osprey {}", on.join(" "));
    proc::step(format!(
        "agent load, open filter on: {}",
        load.filtered_command
    ));
    let agent = Agent::start(&bins.osprey, &on, false)?;
    std::thread::sleep(Duration::from_secs(2));
    load.filtered = Some(step(bins, &agent, port, FILTERED_RATE, 2)?);
    agent.stop()?;
    Ok(load)
}

/// The generator's rate under the default agent with its open filter on.
pub const FILTERED_RATE: u64 = 200_000;

fn step(bins: &Bins, agent: &Agent, port: u16, rate: u64, threads: u64) -> Result<Step> {
    proc::step(format!("  generator at {rate} opens/s ({threads} threads)"));
    let before: Counters = scrape(port)?;
    let cpu0 = cpu_seconds(agent.pid)?;
    let t0 = Instant::now();
    let line = workload(
        &bins.workload,
        &[
            "rate".into(),
            rate.to_string(),
            STEP_SECS.to_string(),
            threads.to_string(),
        ],
    )?;
    // Time to drain the ring buffer's tail, and for the drop counters (synced into the
    // metrics once a second) to catch up.
    std::thread::sleep(Duration::from_millis(1200));
    let secs = t0.elapsed().as_secs_f64();
    let after = scrape(port)?;
    let cpu = (cpu_seconds(agent.pid)? - cpu0) / secs;
    let generated = number_before(&line, "opens/s").unwrap_or(0.0);
    Ok(Step {
        target: rate,
        generated,
        delivered: (after.events - before.events) / STEP_SECS as f64,
        dropped: after.dropped - before.dropped,
        cpu,
    })
}

/// Syscall-to-alert latency on stdout and through the gRPC stream (`osprey tail`).
pub struct Latency {
    pub command: String,
    pub tail_command: String,
    pub trigger: String,
    pub micros: Vec<f64>,
    pub grpc_micros: Vec<f64>,
}

impl Latency {
    pub fn p(&self, p: f64) -> f64 {
        percentile(&self.micros, p)
    }

    pub fn grpc_p(&self, p: f64) -> f64 {
        percentile(&self.grpc_micros, p)
    }
}

pub const ALERTS: u64 = 300;

/// Opens /etc/shadow `ALERTS` times, 5 ms apart, under `osprey run --json --grpc`, and
/// compares each alert's `evt.time` (the kernel's timestamp at syscall exit, wall clock) with
/// the wall clock when the harness read the line: from the agent's stdout, and from an
/// `osprey tail` subscribed to the agent's gRPC stream on loopback.
pub fn latency(bins: &Bins) -> Result<Latency> {
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let grpc = format!("127.0.0.1:{port}");
    let args: Vec<String> = vec![
        "run".into(),
        "--no-watch-rules".into(),
        "--json".into(),
        "--no-flood-control".into(),
        "--grpc".into(),
        grpc.clone(),
    ];
    let command = format!("osprey {}", args.join(" "));
    proc::step(format!("latency: {command}"));
    let mut agent = Agent::start(&bins.osprey, &args, true)?;
    let stdout = agent.stdout.take().context("agent stdout")?;
    let reader = std::thread::spawn(move || time_alerts(stdout));
    let tail_args = ["tail", &grpc, "-o", "falco", "--from", "live"];
    let tail_command = format!("osprey {}", tail_args.join(" "));
    let mut tail = std::process::Command::new(&bins.osprey)
        .args(tail_args)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .with_context(|| format!("starting `{tail_command}`"))?;
    let tail_out = tail.stdout.take().context("tail stdout")?;
    let tail_reader = std::thread::spawn(move || time_alerts(tail_out));
    // Time for the tail to connect and subscribe.
    std::thread::sleep(Duration::from_millis(1500));
    let trigger_args = vec!["trigger".to_string(), ALERTS.to_string(), "5000".into()];
    workload(&bins.workload, &trigger_args)?;
    std::thread::sleep(Duration::from_secs(2));
    let _ = tail.kill();
    let _ = tail.wait();
    agent.stop()?;
    let micros = reader.join().expect("latency reader");
    let grpc_micros = tail_reader.join().expect("tail reader");
    Ok(Latency {
        command,
        tail_command,
        trigger: format!("workload {}", trigger_args.join(" ")),
        micros,
        grpc_micros,
    })
}

/// Microseconds from each trigger alert's `evt.time` to the moment its line was read.
fn time_alerts(out: impl std::io::Read) -> Vec<f64> {
    let mut micros = Vec::new();
    for line in BufReader::new(out).lines().map_while(Result::ok) {
        let now = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        // Only our trigger's alerts: anything else reading /etc/shadow meanwhile is not timed.
        if !line.contains("\"Read sensitive file\"") || !line.contains("\"proc.name\":\"workload\"")
        {
            continue;
        }
        let Some(t) = evt_time(&line) else { continue };
        micros.push(now.saturating_sub(t) as f64 / 1000.0);
    }
    micros
}

fn evt_time(line: &str) -> Option<u64> {
    let v: serde_json::Value = serde_json::from_str(line).ok()?;
    v.get("output_fields")?.get("evt.time")?.as_u64()
}

/// The process table with 100,000 processes (the `process_table` example's line).
pub fn process_table(bins: &Bins) -> Result<(String, String)> {
    let args = vec!["100000".to_string()];
    proc::step("process table with 100,000 processes");
    let line = workload(&bins.process_table, &args)?;
    Ok((format!("process_table {}", args.join(" ")), line))
}

/// The criterion result of one benchmark of `group`: events per second (median estimate).
pub fn criterion(target: &Path, group: &str, name: &str) -> Option<f64> {
    let dir = target.join("criterion").join(group).join(name).join("new");
    let read = |f: &str| -> Option<serde_json::Value> {
        serde_json::from_str(&std::fs::read_to_string(dir.join(f)).ok()?).ok()
    };
    let ns = read("estimates.json")?["median"]["point_estimate"].as_f64()?;
    let elements = read("benchmark.json")?["throughput"]["Elements"].as_f64()?;
    Some(elements / (ns * 1e-9))
}

/// Rounds of the mix `engine_instructions` counts (each 100 events).
pub const MIX_ROUNDS: u64 = 20;

/// The engine's instructions per event on the benchmark's mix with `rules` (a rules file, or
/// `default`), counted by callgrind in the judging alone (`engine_mix`'s `judge_rounds`,
/// [`MIX_ROUNDS`] rounds): the median of three runs, which differ by a percent or two (the
/// hash tables' random seeds). Unlike the criterion figure it does not move with the host's
/// speed, so two runs compare. With it, the alerts the rules raise per 100 events of the mix
/// (`engine_mix` prints them). The reason when valgrind is missing or the count fails.
pub fn engine_instructions(
    engine_mix: &Path,
    rules: &str,
) -> std::result::Result<MixCount, String> {
    proc::step(format!(
        "engine instructions per event (callgrind): {rules}"
    ));
    let count = || -> std::result::Result<(f64, f64), String> {
        let out = std::process::Command::new("valgrind")
            .args([
                "--tool=callgrind",
                "--callgrind-out-file=/dev/null",
                "--toggle-collect=engine_mix::judge_rounds",
            ])
            .arg(engine_mix)
            .args([rules, &MIX_ROUNDS.to_string()])
            .output()
            .map_err(|e| format!("valgrind: {e}"))?;
        let stderr = String::from_utf8_lossy(&out.stderr);
        // `N events, M alerts`.
        let alerts = String::from_utf8_lossy(&out.stdout)
            .split_once(" events, ")
            .and_then(|(_, rest)| rest.split_whitespace().next()?.parse::<f64>().ok())
            .ok_or_else(|| "engine_mix printed no alert count".to_string())?;
        if !out.status.success() {
            return Err(format!(
                "engine_mix under valgrind failed: {}",
                stderr.trim_end()
            ));
        }
        stderr
            .lines()
            .find_map(|l| {
                l.split_once("Collected :")
                    .map(|(_, n)| n.trim().parse::<u64>().ok())
            })
            .flatten()
            .filter(|&n| n > 0)
            .map(|n| {
                (
                    n as f64 / (MIX_ROUNDS * 100) as f64,
                    alerts / MIX_ROUNDS as f64,
                )
            })
            .ok_or_else(|| "callgrind counted nothing in engine_mix::judge_rounds".to_string())
    };
    let runs = [count()?, count()?, count()?];
    Ok(MixCount {
        instructions: median(&runs.map(|r| r.0)),
        alerts: runs[0].1,
    })
}

/// [`engine_instructions`]' figures.
#[derive(Clone, Copy, Debug)]
pub struct MixCount {
    /// Instructions per event judged.
    pub instructions: f64,
    /// Alerts raised per 100 events.
    pub alerts: f64,
}

/// Kernel time of the agent's programs, from the kernel's own BPF statistics
/// (`kernel.bpf_stats_enabled`, `run_time_ns`/`run_cnt` of each program in
/// `/proc/PID/fdinfo`), under the default rules: per syscall no rule captures (a `getppid`
/// loop), and per captured syscall (an `open`+`close` loop, the open captured with its kernel
/// path walk, the close's share taken off at the uncaptured rate). Entry and exit programs
/// together.
pub struct KernelCost {
    pub command: String,
    pub unfiltered_command: String,
    pub uncaptured_ns: Spread,
    /// An open of /dev/null with the open filter off: captured, path walked, record written.
    pub captured_ns: Spread,
    /// A failed open with the filter off (`enoent`): the capture without a path walk.
    pub captured_no_walk_ns: Spread,
    /// An open eight directories below /tmp (`deep`), filter on: a long walk, judged on its
    /// names (no default rule watches it).
    pub captured_deep_ns: Spread,
    /// An open of /etc/passwd, filter on (`watched`): a name the default rules watch, so
    /// walked and judged on its names, admitted, then walked again for its record: what a
    /// captured open costs as the agent is deployed.
    pub captured_watched_ns: Spread,
    /// An open of /dev/null, filter on: walked, judged on its names, passed over.
    pub filtered_walked_ns: Spread,
    /// A failed open, filter on: passed over on its class, before any walk.
    pub filtered_class_ns: Spread,
    /// A `getppid` under the empty hook alone (a program of two instructions): what any
    /// program on the hook is counted at on this host before it does anything.
    pub empty_hook_ns: Spread,
    /// An open of /dev/null under the capture floor alone (`empty_hook capture`): the clock,
    /// the ids, the path string and the record, which every capture of an open pays on this
    /// host whatever its design.
    pub capture_floor_ns: Spread,
    /// The captured open (filter off) over the capture floor, round by round.
    pub captured_over_floor: Spread,
    /// The capture floor with each of its parts left out in turn, and what the part costs:
    /// the floor's time less that, round by round.
    pub floor_parts_ns: Vec<(FloorPart, Spread, Spread)>,
    pub syscalls: u64,
    pub rounds: usize,
    /// The CPUs the agent and the loops were held to (`taskset`), when the machine has two.
    pub pinned: Option<(usize, usize)>,
    /// `sys_exit` was the BTF tracepoint (typed reads), not the raw one.
    pub typed: bool,
    /// Whole workloads: the programs' share of their time.
    pub shares: Vec<KernelShare>,
}

/// Rounds of each kernel-cost loop: single runs moved by 40% from one to the next here, and
/// the median of three still by 10% between two bench runs of the same build.
pub const KERNEL_ROUNDS: usize = 7;

/// The median, least and most of a few runs.
#[derive(Clone, Copy, Debug)]
pub struct Spread {
    pub median: f64,
    pub min: f64,
    pub max: f64,
}

impl Spread {
    pub fn of(mut v: Vec<f64>) -> Spread {
        v.sort_by(f64::total_cmp);
        Spread {
            median: v.get(v.len() / 2).copied().unwrap_or(f64::NAN),
            min: v.first().copied().unwrap_or(f64::NAN),
            max: v.last().copied().unwrap_or(f64::NAN),
        }
    }
}

/// One of the agent's programs as the kernel counts it (its descriptor's `/proc/PID/fdinfo`).
struct ProgramStat {
    ty: u64,
    run_ns: u64,
    runs: u64,
}

/// Every program the agent process `pid` holds.
fn program_stats(pid: u32) -> Result<Vec<ProgramStat>> {
    let mut out = vec![];
    for fd in std::fs::read_dir(format!("/proc/{pid}/fd"))? {
        let fd = fd?;
        let Ok(link) = std::fs::read_link(fd.path()) else {
            continue;
        };
        if link.to_string_lossy() != "anon_inode:bpf-prog" {
            continue;
        }
        let info = std::fs::read_to_string(format!(
            "/proc/{pid}/fdinfo/{}",
            fd.file_name().to_string_lossy()
        ))?;
        let field = |k: &str| -> u64 {
            info.lines()
                .find_map(|l| l.strip_prefix(k)?.trim().parse().ok())
                .unwrap_or(0)
        };
        out.push(ProgramStat {
            ty: field("prog_type:"),
            run_ns: field("run_time_ns:"),
            runs: field("run_cnt:"),
        });
    }
    Ok(out)
}

/// Over the syscall programs the agent holds: `sys_exit` (a BTF tracepoint, program type
/// tracing, where the kernel allows it; else a raw tracepoint), `sys_enter` while profiles are
/// loaded, and `sched_process_fork` (a raw tracepoint, rare, in the noise): run_time_ns
/// summed, and the largest run_cnt, which is the number of syscalls (`sys_exit` runs once for
/// each, and so does `sys_enter` when it is attached); and whether `sys_exit` is the BTF
/// tracepoint (the only tracing program).
fn syscall_program_stats(pid: u32) -> Result<(u64, u64, bool)> {
    const BPF_PROG_TYPE_RAW_TRACEPOINT: u64 = 17;
    const BPF_PROG_TYPE_TRACING: u64 = 26;
    let (mut ns, mut cnt, mut typed) = (0, 0, false);
    for p in program_stats(pid)? {
        if p.ty == BPF_PROG_TYPE_RAW_TRACEPOINT || p.ty == BPF_PROG_TYPE_TRACING {
            ns += p.run_ns;
            cnt = cnt.max(p.runs);
            typed |= p.ty == BPF_PROG_TYPE_TRACING;
        }
    }
    Ok((ns, cnt, typed))
}

/// The [`WORKLOADS`] timed whole under the default rules for [`KernelShare`]: those that
/// start processes, where the lifecycle programs and the reader's wake-ups count (and, with a
/// pod's environment, the exec program's scan of it).
const SHARE_WORKLOADS: [&str; 3] = ["exec", "exec-pod", "build"];

/// A workload as a whole: the kernel time of every program of the agent while it ran (the
/// exec, fork and exit tracepoints with the syscall ones), as a share of its wall time, and
/// the node's irq_work interrupts meanwhile: a ring-buffer record that wakes the reader raises
/// one inside the traced task (a VM exit on a virtual machine), so they count the wake-ups
/// (and any other irq_work on the node).
pub struct KernelShare {
    pub workload: String,
    /// Programs' kernel time per workload iteration, µs.
    pub per_iteration_us: Spread,
    /// Programs' kernel time over the workload's wall time, percent.
    pub percent: Spread,
    pub irq_work_per_s: Spread,
}

fn kernel_shares(bins: &Bins, args: &[String]) -> Result<Vec<KernelShare>> {
    proc::step(format!(
        "kernel share of workloads (bpf_stats): osprey {}",
        args.join(" ")
    ));
    let agent = Agent::start(&bins.osprey, args, false)?;
    std::thread::sleep(Duration::from_millis(500));
    let total = |pid| -> Result<u64> { Ok(program_stats(pid)?.iter().map(|p| p.run_ns).sum()) };
    let workloads: Vec<_> = WORKLOADS
        .iter()
        .filter(|(_, wargs)| SHARE_WORKLOADS.contains(&wargs[0]))
        .collect();
    let mut rows: Vec<[Vec<f64>; 3]> = workloads.iter().map(|_| Default::default()).collect();
    for _ in 0..KERNEL_ROUNDS {
        for (i, (_, wargs)) in workloads.iter().enumerate() {
            let wargs: Vec<String> = wargs.iter().map(|s| s.to_string()).collect();
            let iterations: f64 = wargs[1].parse()?;
            let (ns0, irq0) = (total(agent.pid)?, irq_work_interrupts()?);
            let start = std::time::Instant::now();
            workload(&bins.workload, &wargs)?;
            let wall = start.elapsed().as_secs_f64();
            let (ns1, irq1) = (total(agent.pid)?, irq_work_interrupts()?);
            let ns = (ns1 - ns0) as f64;
            rows[i][0].push(ns / iterations / 1000.0);
            rows[i][1].push(ns / (wall * 1e9) * 100.0);
            rows[i][2].push((irq1 - irq0) as f64 / wall);
        }
    }
    agent.stop()?;
    Ok(workloads
        .into_iter()
        .zip(rows)
        .map(|((name, wargs), [us, pct, irq])| KernelShare {
            workload: format!("{name} (`workload {}`)", wargs.join(" ")),
            per_iteration_us: Spread::of(us),
            percent: Spread::of(pct),
            irq_work_per_s: Spread::of(irq),
        })
        .collect())
}

pub fn kernel_cost(bins: &Bins) -> Result<KernelCost> {
    let args = Mode::Default.args(bins).expect("an agent mode");
    let unfiltered = Mode::DefaultUnfiltered.args(bins).expect("an agent mode");
    BpfStats::set(true)?;
    let result = (|| -> Result<KernelCost> {
        // Filter on: getppid, /dev/null (walked, passed over), enoent (passed over on its
        // class), deep (a long walk, passed over), watched (/etc/passwd: judged, admitted,
        // walked again, captured). Filter off: /dev/null and enoent captured.
        const ON: [&str; 5] = ["getppid", "open", "enoent", "deep", "watched"];
        const OFF: [&str; 3] = ["getppid", "open", "enoent"];
        const FLOOR: [&str; 2] = ["getppid", "open"];
        // Round by round, every program started afresh in each: this host's speed moves by
        // half within minutes, and a mode's rounds run back to back compared the agent in one
        // phase with the floor in another (the same build read 565 and 1,069 ns).
        let mut on: [Vec<f64>; 5] = Default::default();
        let mut off: [Vec<f64>; 3] = Default::default();
        let mut empty: [Vec<f64>; 1] = Default::default();
        let mut floor: [Vec<f64>; 2] = Default::default();
        let mut without: Vec<[Vec<f64>; 2]> =
            FloorPart::ALL.iter().map(|_| Default::default()).collect();
        let (mut pinned, mut typed) = (None, false);
        for round in 1..=KERNEL_ROUNDS {
            proc::step(format!(
                "kernel cost (bpf_stats): round {round} of {KERNEL_ROUNDS}"
            ));
            let l = loops(bins, Mode::Default, &ON)?;
            (pinned, typed) = (l.pinned, l.typed);
            append(&mut on, l.ns);
            append(&mut off, loops(bins, Mode::DefaultUnfiltered, &OFF)?.ns);
            append(&mut empty, loops(bins, Mode::EmptyHook, &["getppid"])?.ns);
            append(&mut floor, loops(bins, Mode::CaptureFloor, &FLOOR)?.ns);
            for (part, rows) in FloorPart::ALL.iter().zip(&mut without) {
                append(
                    rows,
                    loops(bins, Mode::CaptureFloorWithout(*part), &FLOOR)?.ns,
                );
            }
        }
        let paired = |a: &[f64], b: &[f64], f: fn(f64, f64) -> f64| {
            Spread::of(a.iter().zip(b).map(|(a, b)| f(*a, *b)).collect())
        };
        let captured_over_floor = paired(&off[1], &floor[1], |a, b| a / b);
        let floor_parts_ns = FloorPart::ALL
            .into_iter()
            .zip(&without)
            .map(|(part, w)| {
                (
                    part,
                    Spread::of(w[1].clone()),
                    paired(&floor[1], &w[1], |a, b| a - b),
                )
            })
            .collect();
        let [u, fw, fc, d, w] = on.map(Spread::of);
        let [_, c, nw] = off.map(Spread::of);
        let [e] = empty.map(Spread::of);
        let [_, cf] = floor.map(Spread::of);
        let shares = kernel_shares(bins, &args)?;
        Ok(KernelCost {
            command: format!("osprey {}", args.join(" ")),
            unfiltered_command: format!("osprey {}", unfiltered.join(" ")),
            uncaptured_ns: u,
            captured_ns: c,
            captured_no_walk_ns: nw,
            captured_deep_ns: d,
            captured_watched_ns: w,
            filtered_walked_ns: fw,
            filtered_class_ns: fc,
            empty_hook_ns: e,
            capture_floor_ns: cf,
            captured_over_floor,
            floor_parts_ns,
            syscalls: LOOP_SYSCALLS,
            rounds: KERNEL_ROUNDS,
            pinned,
            typed,
            shares,
        })
    })();
    // Off again for the rows after this one; the bench's guard puts back what it found.
    let off = BpfStats::set(false);
    let cost = result?;
    off?;
    Ok(cost)
}

/// Syscalls per kernel-cost loop.
const LOOP_SYSCALLS: u64 = 1_000_000;

struct Loops<const K: usize> {
    /// Kernel ns per syscall of each kind, in the order asked.
    ns: [f64; K],
    pinned: Option<(usize, usize)>,
    typed: bool,
}

/// Adds one round's figures to those of the rounds before.
fn append<const K: usize>(to: &mut [Vec<f64>; K], round: [f64; K]) {
    for (to, ns) in to.iter_mut().zip(round) {
        to.push(ns);
    }
}

/// Kernel ns per syscall of each `syscall_loop` kind under one start of an agent (or the
/// empty hook), one run of each; the first kind must be `getppid`, whose rate is taken off
/// the others' other syscalls.
fn loops<const K: usize>(bins: &Bins, mode: Mode, kinds: &[&str; K]) -> Result<Loops<K>> {
    const N: u64 = LOOP_SYSCALLS;
    let args = mode.args(bins).expect("a mode that runs a program");
    proc::step(format!("kernel cost (bpf_stats): {}", mode.label()));
    let agent = Agent::start(mode.program(bins), &args, false)?;
    // The agent (every thread) on the first CPU and the loops on the last: the agent's
    // reader then never runs between a loop's syscalls on the loop's CPU, where the cache
    // it leaves behind made single runs of the same build differ by half.
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let pinned = (cpus >= 2).then_some((0, cpus - 1));
    if let Some((agent_cpu, _)) = pinned {
        proc::output(
            std::process::Command::new("taskset").args([
                "-a",
                "-p",
                "-c",
                &agent_cpu.to_string(),
                &agent.pid.to_string(),
            ]),
            "taskset",
        )?;
    }
    std::thread::sleep(Duration::from_millis(500));
    let (_, _, typed) = syscall_program_stats(agent.pid)?;
    let run = |what: &str| -> Result<(f64, f64)> {
        let (ns0, cnt0, _) = syscall_program_stats(agent.pid)?;
        let mut cmd = match pinned {
            Some((_, loop_cpu)) => {
                let mut c = std::process::Command::new("taskset");
                c.args(["-c", &loop_cpu.to_string()])
                    .arg(&bins.syscall_loop);
                c
            }
            None => std::process::Command::new(&bins.syscall_loop),
        };
        proc::output(cmd.args([what, &N.to_string()]), "syscall_loop")?;
        let (ns1, cnt1, _) = syscall_program_stats(agent.pid)?;
        Ok(((ns1 - ns0) as f64, (cnt1 - cnt0) as f64))
    };
    // Every syscall on the machine runs the programs meanwhile; with N large the loop's own
    // syscalls are nearly all of them.
    let mut per_syscall = [0.0; K];
    let (ns, syscalls) = run(kinds[0])?;
    let uncaptured = ns / syscalls;
    per_syscall[0] = uncaptured;
    // N opens and the rest (N closes, which the default rules do not capture, and others'
    // syscalls) at this run's uncaptured rate.
    for (i, what) in kinds.iter().enumerate().skip(1) {
        let (ns, syscalls) = run(what)?;
        per_syscall[i] = (ns - (syscalls - N as f64) * uncaptured) / N as f64;
    }
    agent.stop()?;
    Ok(Loops {
        ns: per_syscall,
        pinned,
        typed,
    })
}

/// The blinding attack under the default rules: threads of one process blocked in `open()` of a
/// FIFO while it reads /etc/shadow and opens /dev/null; whether the reads alerted and what the
/// kernel dropped meanwhile.
pub struct Blinding {
    pub command: String,
    pub workload: String,
    pub line: String,
    pub alerts: usize,
    pub reads: usize,
    pub dropped: f64,
}

pub fn blinding(bins: &Bins) -> Result<Blinding> {
    const THREADS: &str = "9000";
    const READS: usize = 3;
    let port = free_port()?;
    let args: Vec<String> = vec![
        "run".into(),
        "--no-watch-rules".into(),
        "--json".into(),
        "--no-flood-control".into(),
        "--metrics".into(),
        format!("127.0.0.1:{port}"),
    ];
    let command = format!("osprey {}", args.join(" "));
    proc::step(format!("blinding: {command}"));
    let mut agent = Agent::start(&bins.osprey, &args, true)?;
    let stdout = agent.stdout.take().context("agent stdout")?;
    let counter = std::thread::spawn(move || {
        BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
            .filter(|l| {
                l.contains("\"Read sensitive file\"") && l.contains("\"proc.name\":\"workload\"")
            })
            .count()
    });
    let before = scrape(port)?;
    let wargs = vec!["blind".to_string(), THREADS.into(), READS.to_string()];
    let line = workload(&bins.workload, &wargs)?;
    std::thread::sleep(Duration::from_secs(2));
    let after = scrape(port)?;
    agent.stop()?;
    let alerts = counter.join().expect("alert counter");
    Ok(Blinding {
        command,
        workload: format!("workload {}", wargs.join(" ")),
        line,
        alerts,
        reads: READS,
        dropped: after.dropped - before.dropped,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ratios_are_taken_round_by_round() {
        // Round 3 ran in a slow phase for both modes: paired, it is 1.1x like rounds 1 and 4,
        // where the medians of each column alone would make the whole 1.3x.
        let samples = BTreeMap::from([
            ((0, 0), vec![100.0, 100.0, 200.0, 100.0]),
            ((1, 0), vec![110.0, 150.0, 220.0, 110.0]),
        ]);
        let ov = Overhead {
            modes: vec![Mode::None, Mode::Default],
            workloads: WORKLOADS,
            rounds: 4,
            samples,
        };
        let r = ov.ratio(1, 0, 0);
        assert!((r.median - 1.1).abs() < 1e-9, "{r:?}");
        assert!(
            (r.min - 1.1).abs() < 1e-9 && (r.max - 1.5).abs() < 1e-9,
            "{r:?}"
        );
        assert!(ov.ratio(1, 0, 3).median.is_nan());
    }
}
