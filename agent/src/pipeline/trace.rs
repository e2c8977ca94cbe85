//! `osprey trace`: the live events as JSON lines, each with its process and container. What
//! rule authors use to see what the sensor sees, and how recordings for `osprey replay` are
//! made. The same enrichment as the agent's pipeline ([`super::Enrich`]), without rules.

use std::{
    collections::BTreeSet,
    fs::File,
    io::{BufWriter, Write},
    path::PathBuf,
    sync::Arc,
    time::{Duration, Instant},
};

use osprey_model::event::{Enriched, EventKind};

use crate::{
    container::{ContainerConfig, ContainerTable},
    pipeline::Enrich,
    process::TableConfig,
    sensor::{Sensor, SensorConfig, SensorError, syscalls},
};

/// What to trace and where to write it (`osprey trace --help` documents each).
#[derive(Debug, Default)]
pub struct TraceOptions {
    pub events: Vec<String>,
    pub comms: Vec<String>,
    pub pids: Vec<u32>,
    pub record: Option<PathBuf>,
    pub quiet: bool,
    pub count: Option<u64>,
    pub duration: Option<f64>,
    pub ring_buffer_size: u32,
    /// The reader's interval while events flow (`SensorConfig::poll`).
    pub poll: std::time::Duration,
    pub stats: Option<f64>,
    pub read_delay_ms: u64,
    pub floor: bool,
    /// Attach `sys_exit` as a BTF tracepoint where it loads.
    pub btf_tracepoint: bool,
    /// In that form, read path walks' objects through casts where they load.
    pub btf_casts: bool,
    /// Attach `sys_exit` per wanted syscall (sensor/events.rs).
    pub exit_events: crate::sensor::events::ExitEvents,
}

#[derive(Debug, thiserror::Error)]
pub enum TraceError {
    #[error(
        "unknown event `{event}`: expected exec, fork, exit, profile or one of the syscalls {known}"
    )]
    UnknownEvent { event: String, known: String },
    #[error("starting the sensor: {0}")]
    Sensor(#[from] SensorError),
    #[error("creating {path}: {source}")]
    Record {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{what}: {source}")]
    Io {
        what: &'static str,
        #[source]
        source: std::io::Error,
    },
}

fn io(what: &'static str) -> impl FnOnce(std::io::Error) -> TraceError {
    move |source| TraceError::Io { what, source }
}

/// Events that are not captured syscalls: lifecycle, and verdicts of syscall profiles
/// (`osprey trace` loads no profile; the name filters what a future one would emit).
const LIFECYCLE: &[&str] = &["exec", "fork", "exit", "profile"];

struct Filter {
    events: BTreeSet<String>,
    comms: BTreeSet<String>,
    pids: BTreeSet<u32>,
}

impl Filter {
    fn matches(&self, e: &Enriched) -> bool {
        let name = match &e.event.kind {
            EventKind::Exec(_) => "exec",
            EventKind::Fork(_) => "fork",
            EventKind::Exit(_) => "exit",
            EventKind::Syscall(s) => &s.name,
            EventKind::Profile(_) => "profile",
        };
        if !self.events.is_empty() && !self.events.contains(name) {
            return false;
        }
        if !self.pids.is_empty() && !self.pids.contains(&e.event.tgid) {
            return false;
        }
        if !self.comms.is_empty() {
            let exe = e.process.as_ref().map(|p| p.exe_name()).unwrap_or("");
            if !self.comms.contains(&e.event.comm) && !self.comms.contains(exe) {
                return false;
            }
        }
        true
    }
}

/// The syscalls to capture for a set of `--event` names; empty = all. `chdir` is always
/// captured when anything is, since the process table tracks working directories with it.
fn kernel_interest(events: &BTreeSet<String>) -> Result<BTreeSet<String>, TraceError> {
    let mut wanted = BTreeSet::new();
    for e in events {
        if LIFECYCLE.contains(&e.as_str()) {
            continue;
        }
        if syscalls::by_name(e).is_none() {
            let known: Vec<&str> = syscalls::SYSCALLS.iter().map(|s| s.name).collect();
            return Err(TraceError::UnknownEvent {
                event: e.clone(),
                known: known.join(", "),
            });
        }
        wanted.insert(e.clone());
    }
    if events.is_empty() {
        return Ok(BTreeSet::new());
    }
    wanted.insert("chdir".to_string());
    Ok(wanted)
}

/// Traces until `count` events, `duration`, SIGINT or SIGTERM.
pub async fn run(args: TraceOptions) -> Result<(), TraceError> {
    let filter = Filter {
        events: args.events.iter().cloned().collect(),
        comms: args.comms.iter().cloned().collect(),
        pids: args.pids.iter().copied().collect(),
    };
    let mut interest = kernel_interest(&filter.events)?;
    if !filter.events.is_empty() && interest.len() == 1 {
        // Only lifecycle events asked for: capture no syscall at all.
        interest.clear();
        interest.insert("chdir".into());
    }
    let cfg = SensorConfig {
        ring_buffer_bytes: args.ring_buffer_size,
        syscalls: interest,
        inert: args.floor,
        // trace loads no syscall profiles (and the floor is then what `run` without profiles
        // attaches).
        entry_hook: false,
        btf_tracepoint: args.btf_tracepoint,
        btf_casts: args.btf_casts,
        exit_events: args.exit_events,
        poll: args.poll,
        ..Default::default()
    };
    let mut sensor = Sensor::start(&cfg)?;
    let mut reader = sensor.reader()?;
    // Attached first, then the /proc scan: a process started in between is in both, and the
    // events (applied after the scan) are the newer truth.
    // Every event says its container (`host` outside any); a new container's events wait a
    // bounded time for the runtime's metadata.
    let mut enrich = Enrich::new(
        TableConfig::default(),
        Arc::new(ContainerTable::new(ContainerConfig::default())),
    );
    let n = enrich
        .bootstrap(std::path::Path::new("/proc"))
        .map_err(io("reading /proc"))?;
    // Handlers in place before the line that says it traces (see pipeline/live.rs).
    use tokio::signal::unix::{SignalKind, signal};
    let mut sigint = signal(SignalKind::interrupt()).map_err(io("SIGINT handler"))?;
    let mut sigterm = signal(SignalKind::terminate()).map_err(io("SIGTERM handler"))?;
    tracing::info!(
        processes = n,
        kernel = sensor.kernel(),
        "tracing; Ctrl-C to stop"
    );

    let mut ready = Vec::with_capacity(1024);

    let stdout = std::io::stdout();
    let mut out = (!args.quiet).then(|| BufWriter::new(stdout.lock()));
    let mut record = match &args.record {
        Some(p) => Some(BufWriter::new(File::create(p).map_err(|source| {
            TraceError::Record {
                path: p.clone(),
                source,
            }
        })?)),
        None => None,
    };

    let deadline = args
        .duration
        .map(|s| Instant::now() + Duration::from_secs_f64(s));
    let stats_every = args.stats.map(Duration::from_secs_f64);
    let mut next_stats = stats_every.map(|d| Instant::now() + d);
    let mut printed = 0u64;
    let mut batch = Vec::with_capacity(1024);

    'outer: loop {
        let tick = tokio::time::sleep(Duration::from_millis(200));
        tokio::select! {
            _ = sigint.recv() => break,
            _ = sigterm.recv() => break,
            _ = tick => {}
            _ = tokio::time::sleep(enrich.poll_in()), if enrich.is_holding() => {}
            r = reader.read_batch(&mut batch, crate::sensor::BATCH_MAX) => r.map_err(io("reading the ring buffer"))?,
        }
        let now = std::time::Instant::now();
        for ev in batch.drain(..) {
            enrich.push(ev, now, &mut ready);
        }
        enrich.poll(&mut ready);
        for e in ready.drain(..) {
            if !filter.matches(&e) {
                continue;
            }
            emit(&e, out.as_mut(), record.as_mut())?;
            printed += 1;
            if args.count.is_some_and(|c| printed >= c) {
                break 'outer;
            }
        }
        if let Some(o) = out.as_mut() {
            o.flush().map_err(io("writing stdout"))?;
        }
        if let Some(r) = record.as_mut() {
            r.flush().map_err(io("writing the recording"))?;
        }
        if deadline.is_some_and(|d| Instant::now() >= d) {
            break;
        }
        if let (Some(every), Some(next)) = (stats_every, next_stats)
            && Instant::now() >= next
        {
            print_stats(&sensor, &reader, &enrich);
            next_stats = Some(next + every);
        }
        if args.read_delay_ms > 0 {
            tokio::time::sleep(Duration::from_millis(args.read_delay_ms)).await;
        }
    }
    // What still waited for its container's metadata goes out with what is known.
    enrich.flush(&mut ready);
    for e in ready.drain(..) {
        if args.count.is_some_and(|c| printed >= c) {
            break;
        }
        if filter.matches(&e) {
            emit(&e, out.as_mut(), record.as_mut())?;
            printed += 1;
        }
    }
    if let Some(o) = out.as_mut() {
        o.flush().map_err(io("writing stdout"))?;
    }
    if let Some(r) = record.as_mut() {
        r.flush().map_err(io("writing the recording"))?;
    }
    if args.stats.is_some() {
        print_stats(&sensor, &reader, &enrich);
    }
    Ok(())
}

/// One event as a JSON line, on stdout and into the recording.
fn emit(
    e: &Enriched,
    out: Option<&mut impl Write>,
    record: Option<&mut impl Write>,
) -> Result<(), TraceError> {
    if out.is_none() && record.is_none() {
        return Ok(());
    }
    let line = serde_json::to_string(e).map_err(|e| TraceError::Io {
        what: "encoding an event",
        source: e.into(),
    })?;
    if let Some(o) = out {
        writeln!(o, "{line}").map_err(io("writing stdout"))?;
    }
    if let Some(r) = record {
        writeln!(r, "{line}").map_err(io("writing the recording"))?;
    }
    Ok(())
}

fn print_stats(sensor: &Sensor, reader: &crate::sensor::EventReader, enrich: &Enrich) {
    let stats = serde_json::json!({
        "stats": {
            "kernel": sensor.counters(),
            "decode": reader.decode_stats(),
            "process_table": enrich.table_stats(),
        }
    });
    eprintln!("{stats}");
}
