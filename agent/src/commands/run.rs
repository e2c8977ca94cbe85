//! `osprey run`: the agent. Sensor → process table → rule engine → alerts on stdout.

use std::{
    collections::BTreeSet,
    io::{BufWriter, Write},
    path::PathBuf,
    sync::Arc,
    time::Duration,
};

use anyhow::Context as _;

use crate::{
    engine::{Engine, EngineOptions, SyscallInterest},
    metrics::Metrics,
    output::{self, Alert},
    process::{ProcessTable, TableConfig},
    sensor::{KernelCounters, Sensor, SensorConfig, syscalls},
};

#[derive(Debug, clap::Args)]
pub struct RunArgs {
    /// Rule files or directories, loaded in order (default: the rules embedded in the binary;
    /// `default` names them, e.g. `--rules default --rules local.yaml`).
    #[arg(long = "rules", short = 'r')]
    pub rules: Vec<PathBuf>,
    /// Alerts as Falco's JSON (one object per line) instead of Falco's text line.
    #[arg(long)]
    pub json: bool,
    /// Ring buffer size in bytes (a power of two, at least 4096).
    #[arg(long, default_value_t = 16 * 1024 * 1024)]
    pub ring_buffer_size: u32,
    /// Serve /healthz, /readyz and Prometheus /metrics on this address (e.g. 0.0.0.0:9090).
    #[arg(long, env = "OSPREY_METRICS")]
    pub metrics: Option<std::net::SocketAddr>,
    /// Print a line on stderr when this marker is reached (tests wait for it).
    #[arg(long, hide = true, default_value = "osprey is running")]
    pub ready_message: String,
}

/// The kernel interest set for what the rules need; `chdir` too, which keeps working
/// directories (and so relative paths) right. Event types that are not syscalls the sensor
/// knows (procexit, or a syscall not captured yet) need nothing from the syscall filter.
pub fn interest_for(engine: &Engine) -> BTreeSet<String> {
    match engine.syscall_interest() {
        SyscallInterest::All => BTreeSet::new(),
        SyscallInterest::Only(names) => {
            let mut set: BTreeSet<String> = names
                .into_iter()
                .filter(|n| syscalls::by_name(n).is_some())
                .collect();
            set.insert("chdir".into());
            set
        }
    }
}

pub async fn run(args: RunArgs) -> anyhow::Result<()> {
    let metrics = Arc::new(Metrics::new());
    if let Some(addr) = args.metrics {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("binding the metrics address {addr}"))?;
        tokio::spawn(crate::metrics::serve(listener, metrics.clone()));
        tracing::info!(%addr, "serving /healthz, /readyz and /metrics");
    }
    let ruleset = super::rules::load_for_run(&args.rules).inspect_err(|_| {
        metrics.rule_load_errors.inc();
    })?;
    let engine = Engine::new(ruleset, EngineOptions::for_host("/".as_ref()));
    let interest = interest_for(&engine);
    tracing::info!(
        rules = engine.rules().len(),
        syscalls = interest.len(),
        "rules loaded"
    );

    let mut sensor = Sensor::start(&SensorConfig {
        ring_buffer_bytes: args.ring_buffer_size,
        syscalls: interest,
        ..Default::default()
    })
    .context("starting the sensor")?;
    let mut reader = sensor.reader()?;
    let mut table = ProcessTable::new(TableConfig::default());
    table.bootstrap("/proc".as_ref())?;
    tracing::info!(kernel = sensor.kernel(), "{}", args.ready_message);

    let stdout = std::io::stdout();
    let mut out = BufWriter::new(stdout.lock());
    let mut batch = Vec::with_capacity(4096);
    let mut last = sensor.counters();
    let mut check = tokio::time::interval(Duration::from_secs(10));
    let mut sync = tokio::time::interval(Duration::from_secs(1));
    let ctrl_c = tokio::signal::ctrl_c();
    tokio::pin!(ctrl_c);
    let mut sigterm = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    loop {
        tokio::select! {
            _ = &mut ctrl_c => break,
            _ = sigterm.recv() => break,
            _ = check.tick() => {
                last = report_drops(&sensor, last);
                continue;
            }
            _ = sync.tick() => {
                metrics.sync(sensor.counters(), reader.decode_stats(), table.stats());
                continue;
            }
            r = reader.read_batch(&mut batch, 4096) => r?,
        }
        // Programs attached, rules loaded, and the ring buffer delivers: ready.
        metrics.set_ready(true);
        for ev in batch.drain(..) {
            metrics.event(event_kind(&ev));
            let e = table.observe(ev);
            for alert in engine.evaluate(&e) {
                metrics.alert(&alert.rule, alert.priority.as_str());
                write_alert(&mut out, &alert, args.json)?;
            }
        }
        out.flush()?;
    }
    report_drops(&sensor, last);
    tracing::info!(
        decode = ?reader.decode_stats(),
        process_table = ?table.stats(),
        "stopped"
    );
    Ok(())
}

fn event_kind(ev: &crate::event::Event) -> &str {
    match &ev.kind {
        crate::event::EventKind::Exec(_) => "exec",
        crate::event::EventKind::Fork(_) => "fork",
        crate::event::EventKind::Exit(_) => "exit",
        crate::event::EventKind::Syscall(sc) => &sc.name,
    }
}

fn write_alert(out: &mut impl Write, a: &Alert, json: bool) -> std::io::Result<()> {
    if json {
        writeln!(out, "{}", output::format_json(a))
    } else {
        writeln!(out, "{}", output::format_text(a))
    }
}

/// Logs what the kernel dropped since the last report: nothing is lost without a word.
fn report_drops(sensor: &Sensor, last: KernelCounters) -> KernelCounters {
    let now = sensor.counters();
    let lost = now.dropped() - last.dropped();
    if lost > 0 {
        tracing::warn!(
            lost,
            ring_buffer_full = now.dropped_syscall - last.dropped_syscall + now.dropped_exec
                - last.dropped_exec
                + now.dropped_fork
                - last.dropped_fork
                + now.dropped_exit
                - last.dropped_exit,
            in_flight_table_full = now.pending_full - last.pending_full,
            "kernel events lost; a larger --ring-buffer-size or fewer rules reduce it"
        );
    }
    now
}
