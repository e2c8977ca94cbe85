//! `osprey run`: the agent. Sensor → process table → rule engine → flood control → outputs
//! (stdout, file, webhook), with metrics, internal alerts and hot reload of the rules.

use std::{
    collections::BTreeSet,
    io::{BufWriter, Write},
    path::PathBuf,
    sync::Arc,
    time::{Duration, SystemTime},
};

use anyhow::Context as _;

use osprey_engine::{
    Engine, EngineOptions, SyscallInterest,
    flood::FloodControl,
    output::{self, Alert, AlertEvent},
};
use osprey_model::Priority;

use crate::{
    config::{Config, Format},
    container::{Attach, ContainerConfig, ContainerTable},
    metrics::Metrics,
    output::{file::RotatingFile, webhook::Webhook},
    process::{ProcessTable, TableConfig, TableStats, boot_clock_ns, boot_time_ns},
    sensor::{KernelCounters, Sensor, SensorConfig, syscalls},
};

#[derive(Debug, clap::Args)]
pub struct RunArgs {
    /// Configuration file (YAML); `osprey config default` prints every setting documented.
    #[arg(long, env = "OSPREY_CONFIG")]
    pub config: Option<PathBuf>,
    /// Rule files or directories, loaded in order (default: the rules embedded in the binary;
    /// `default` names them, e.g. `--rules default --rules local.yaml`).
    #[arg(long = "rules", short = 'r')]
    pub rules: Vec<PathBuf>,
    /// Alerts as Falco's JSON (one object per line) instead of Falco's text line.
    #[arg(long)]
    pub json: bool,
    /// Ring buffer size in bytes (a power of two, at least 4096).
    #[arg(long, env = "OSPREY_RING_BUFFER_SIZE")]
    pub ring_buffer_size: Option<u32>,
    /// Serve /healthz, /readyz and Prometheus /metrics on this address (e.g. 0.0.0.0:9090).
    #[arg(long, env = "OSPREY_METRICS")]
    pub metrics: Option<std::net::SocketAddr>,
    /// Also write alerts as JSON lines to this file (rotated by size).
    #[arg(long, env = "OSPREY_OUTPUT_FILE")]
    pub output_file: Option<PathBuf>,
    /// Also POST every alert in Falco's JSON shape to this http:// or https:// URL
    /// (e.g. Falcosidekick; a private CA goes in the config file's `webhook.ca_file`).
    #[arg(long, env = "OSPREY_WEBHOOK")]
    pub webhook: Option<String>,
    /// Let every alert through, however often the same rule fires.
    #[arg(long)]
    pub no_flood_control: bool,
    /// Do not reload the rules when their files change (SIGHUP still reloads).
    #[arg(long)]
    pub no_watch_rules: bool,
    /// Print a line on stderr when this marker is reached (tests wait for it).
    #[arg(long, hide = true, default_value = "osprey is running")]
    pub ready_message: String,
    #[command(flatten)]
    pub stream: crate::server::agent::GrpcArgs,
}

impl RunArgs {
    /// The configuration file (or defaults) with flags and environment applied on top.
    pub fn resolve(&self) -> anyhow::Result<Config> {
        let mut c = match &self.config {
            Some(p) => Config::load(p)?,
            None => Config::default(),
        };
        if !self.rules.is_empty() {
            c.rules = self.rules.clone();
        }
        if self.json {
            c.stdout.format = Format::Json;
        }
        if let Some(n) = self.ring_buffer_size {
            c.ring_buffer_bytes = n;
        }
        if self.metrics.is_some() {
            c.metrics = self.metrics;
        }
        if self.output_file.is_some() {
            c.file.path = self.output_file.clone();
        }
        if let Some(url) = &self.webhook {
            c.webhook.url = url.clone();
        }
        if self.no_flood_control {
            c.flood.enabled = false;
        }
        if self.no_watch_rules {
            c.watch_rules = false;
        }
        Ok(c)
    }
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

/// Where alerts go: every output, with metrics.
struct Outputs {
    stdout: Option<(BufWriter<std::io::Stdout>, Format)>,
    file: Option<RotatingFile>,
    webhook: Option<Webhook>,
    metrics: Arc<Metrics>,
    webhook_reported: u64,
    /// Stdout was configured but its reader went away.
    stdout_closed: bool,
    /// The alert bus: gRPC subscribers and the push to the collector.
    stream: crate::server::agent::AgentStream,
}

impl Outputs {
    fn deliver(&mut self, a: Alert) -> anyhow::Result<()> {
        self.metrics.alert(&a.rule, a.priority.as_str());
        if let Some(n) = a
            .output_fields
            .get(osprey_engine::flood::SUPPRESSED_FIELD)
            .and_then(|v| v.as_u64())
        {
            self.metrics
                .suppressed
                .get_or_create(&vec![("rule", a.rule.clone())])
                .inc_by(n);
        }
        self.stream.publish(&a);
        if let Some((out, format)) = self.stdout.as_mut() {
            let written = match format {
                Format::Json => writeln!(out, "{}", output::format_json(&a)),
                Format::Text => writeln!(out, "{}", output::format_text(&a)),
            };
            if let Err(e) = written {
                self.stdout_failed(&e);
            }
        } else if self.stdout_closed {
            self.metrics.queue_drop("stdout", 1);
        }
        if let Some(f) = self.file.as_mut()
            && let Err(e) = f.write_line(&output::format_json(&a))
        {
            self.metrics.queue_drop("file", 1);
            tracing::warn!("alert file: {e}");
        }
        if let Some(w) = &self.webhook {
            w.send(Arc::new(a));
        }
        Ok(())
    }

    /// Stdout went away (its reader closed the pipe): the other outputs go on, and every
    /// alert stdout can no longer take is counted as dropped.
    fn stdout_failed(&mut self, e: &std::io::Error) {
        tracing::error!(
            "stdout is closed ({e}); alerts keep going to the other outputs, and those meant \
             for stdout are counted in osprey_queue_dropped_total{{queue=\"stdout\"}}"
        );
        self.stdout = None;
        self.stdout_closed = true;
        self.metrics.queue_drop("stdout", 1);
    }

    fn flush(&mut self) -> anyhow::Result<()> {
        if let Some((out, _)) = self.stdout.as_mut()
            && let Err(e) = out.flush()
        {
            self.stdout_failed(&e);
        }
        if let Some(f) = self.file.as_mut() {
            f.flush()?;
        }
        if let Some(w) = &self.webhook {
            let dropped = w.dropped();
            if dropped > self.webhook_reported {
                self.metrics
                    .queue_drop("webhook", dropped - self.webhook_reported);
                self.webhook_reported = dropped;
            }
        }
        Ok(())
    }
}

/// An alert about Osprey itself (source `internal`), through the same outputs as rule alerts.
fn internal_alert(hostname: &str, rule: &str, priority: Priority, output: String) -> Alert {
    let time = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or_default();
    Alert {
        time,
        rule: rule.into(),
        priority,
        source: "internal".into(),
        tags: vec!["osprey".into(), "internal".into()],
        output,
        output_fields: Default::default(),
        hostname: hostname.into(),
        event: AlertEvent {
            evt_type: "internal".into(),
            evt_num: 0,
            ts: boot_clock_ns(),
            pid: std::process::id(),
            tid: std::process::id(),
            comm: "osprey".into(),
            container: None,
        },
    }
}

/// Rule files' paths, sizes and modification times: what the watcher compares.
fn fingerprint(paths: &[PathBuf]) -> Vec<(PathBuf, u64, Option<SystemTime>)> {
    let mut out = Vec::new();
    for p in paths {
        let mut files = vec![p.clone()];
        if p.is_dir()
            && let Ok(rd) = std::fs::read_dir(p)
        {
            files.extend(rd.filter_map(|e| e.ok().map(|e| e.path())));
        }
        for f in files {
            if let Ok(md) = std::fs::metadata(&f) {
                out.push((f, md.len(), md.modified().ok()));
            }
        }
    }
    out.sort();
    out
}

pub async fn run(args: RunArgs) -> anyhow::Result<()> {
    let cfg = args.resolve()?;
    let metrics = Arc::new(Metrics::new());
    if let Some(addr) = cfg.metrics {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("binding the metrics address {addr}"))?;
        tokio::spawn(crate::metrics::http::serve(listener, metrics.clone()));
        tracing::info!(%addr, "serving /healthz, /readyz and /metrics");
    }
    let mut ruleset = super::rules::load_for_run(&cfg.rules).inspect_err(|_| {
        metrics.rule_load_errors.inc();
    })?;
    let profile_defs = std::mem::take(&mut ruleset.profiles);
    let containers = Arc::new(ContainerTable::new(ContainerConfig::default()));
    let opts = EngineOptions {
        containers: containers.clone(),
        ..EngineOptions::for_host("/".as_ref())
    };
    let hostname = opts.hostname.to_string();
    let mut engine = Engine::new(ruleset, opts.clone());
    let interest = interest_for(&engine);
    tracing::info!(
        rules = engine.rules().len(),
        syscalls = interest.len(),
        "rules loaded"
    );

    let mut sensor = Sensor::start(&SensorConfig {
        ring_buffer_bytes: cfg.ring_buffer_bytes,
        syscalls: interest,
        ..Default::default()
    })
    .context("starting the sensor")?;
    let mut reader = sensor.reader()?;
    let mut table = ProcessTable::new(TableConfig {
        capacity: cfg.process_table_capacity,
        ..Default::default()
    });
    table.bootstrap("/proc".as_ref())?;
    let (mut profiles, cgroup_mount) =
        start_profiles(&mut sensor, containers.clone(), &profile_defs, &hostname)?;
    let mut attach = Attach::new(containers.clone());
    let mut ready = Vec::with_capacity(4096);

    let mut outputs = Outputs {
        stdout: cfg
            .stdout
            .enabled
            .then(|| (BufWriter::new(std::io::stdout()), cfg.stdout.format)),
        file: match &cfg.file.path {
            Some(p) => Some(
                RotatingFile::open(p, cfg.file.max_bytes, cfg.file.keep)
                    .with_context(|| format!("opening the alert file {}", p.display()))?,
            ),
            None => None,
        },
        webhook: if cfg.webhook.url.is_empty() {
            None
        } else {
            Some(Webhook::start(cfg.webhook.clone())?)
        },
        metrics: metrics.clone(),
        webhook_reported: 0,
        stdout_closed: false,
        stream: crate::server::agent::start(&args.stream, &hostname, metrics.clone()).await?,
    };
    outputs.stream.set_rules_loaded(engine.rules().len());
    let mut flood = FloodControl::new(cfg.flood.clone());
    tracing::info!(kernel = sensor.kernel(), "{}", args.ready_message);

    let mut batch = Vec::with_capacity(4096);
    let mut last_counters = sensor.counters();
    let mut last_table = table.stats();
    let mut check = tokio::time::interval(Duration::from_secs(10));
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    let mut watch = tokio::time::interval(Duration::from_secs(2));
    let mut rules_seen = fingerprint(&cfg.rules);
    let ctrl_c = tokio::signal::ctrl_c();
    tokio::pin!(ctrl_c);
    use tokio::signal::unix::{SignalKind, signal};
    let mut sigterm = signal(SignalKind::terminate())?;
    let mut sighup = signal(SignalKind::hangup())?;
    loop {
        let mut reload = false;
        tokio::select! {
            _ = &mut ctrl_c => break,
            _ = sigterm.recv() => break,
            _ = sighup.recv() => reload = true,
            _ = watch.tick(), if cfg.watch_rules => {
                let now = fingerprint(&cfg.rules);
                if now != rules_seen {
                    rules_seen = now;
                    reload = true;
                }
            }
            _ = check.tick() => {
                let (counters, lost) = report_drops(&sensor, last_counters);
                last_counters = counters;
                if lost >= cfg.internal_alerts.drop_threshold && lost > 0 {
                    outputs.deliver(internal_alert(&hostname, "Osprey dropped kernel events", Priority::Critical, format!(
                        "Osprey lost {lost} kernel events in the last 10 s (ring buffer or in-flight table full); detection had gaps (ring_buffer_bytes={})",
                        cfg.ring_buffer_bytes
                    )))?;
                }
                let t = table.stats();
                if t.evictions > last_table.evictions {
                    outputs.deliver(internal_alert(&hostname, "Osprey process table under pressure", Priority::Warning, format!(
                        "The process table evicted {} live processes in the last 10 s (capacity {}); their events lose their process context",
                        t.evictions - last_table.evictions, cfg.process_table_capacity
                    )))?;
                }
                last_table = t;
                if let Some(m) = &cgroup_mount {
                    let live = crate::container::cgroup::scan_v2(m);
                    if let Err(e) = profiles.retain(|c| live.contains_key(&c)) {
                        tracing::warn!("syscall profiles: {e}");
                    }
                }
                outputs.flush()?;
                continue;
            }
            // Events of a new container wait here for its runtime metadata, a bounded time.
            _ = tokio::time::sleep(attach.poll_in()), if attach.is_holding() => {}
            _ = tick.tick() => {
                metrics.sync(sensor.counters(), reader.decode_stats(), table.stats());
                metrics.sync_containers(containers.stats());
                let now = boot_time_ns() + boot_clock_ns();
                for a in flood.flush(now) {
                    outputs.deliver(a)?;
                }
                for a in profiles.flush(now) {
                    outputs.deliver(a)?;
                }
                outputs.flush()?;
                continue;
            }
            r = reader.read_batch(&mut batch, 4096) => r?,
        }
        if reload {
            // Validate first; the running rules stay until the new ones are whole. The swap
            // happens between two batches: no event is judged by neither.
            match super::rules::load_for_run(&cfg.rules) {
                Ok(mut ruleset) => {
                    let defs = std::mem::take(&mut ruleset.profiles);
                    if let Err(e) = profiles.apply_profiles(&defs) {
                        tracing::error!("syscall profiles not changed: {e}");
                    }
                    engine = Engine::new(ruleset, opts.clone());
                    outputs.stream.set_rules_loaded(engine.rules().len());
                    let interest = interest_for(&engine);
                    sensor.set_interest(&interest)?;
                    metrics
                        .reloads
                        .get_or_create(&vec![("result", "ok".to_string())])
                        .inc();
                    tracing::info!(
                        rules = engine.rules().len(),
                        syscalls = interest.len(),
                        "rules reloaded"
                    );
                }
                Err(e) => {
                    metrics.rule_load_errors.inc();
                    metrics
                        .reloads
                        .get_or_create(&vec![("result", "error".to_string())])
                        .inc();
                    tracing::error!("rule reload failed; the running rules stay: {e:#}");
                    outputs.deliver(internal_alert(
                        &hostname,
                        "Osprey rule reload failed",
                        Priority::Error,
                        format!("Rule reload failed; the running rules stay in force: {e:#}"),
                    ))?;
                }
            }
            outputs.flush()?;
            continue;
        }
        // Programs attached, rules loaded, and the ring buffer delivers: ready.
        metrics.set_ready(true);
        for ev in batch.drain(..) {
            metrics.event(event_kind(&ev));
            attach.push(table.observe(ev), &mut ready);
        }
        attach.poll(&mut ready);
        for e in ready.drain(..) {
            judge(e, &mut profiles, &engine, &mut flood, &mut outputs)?;
        }
        outputs.flush()?;
    }
    // Events still waiting for container metadata go on with what is known.
    attach.flush(&mut ready);
    for e in ready.drain(..) {
        judge(e, &mut profiles, &engine, &mut flood, &mut outputs)?;
    }
    report_drops(&sensor, last_counters);
    outputs.flush()?;
    let TableStats {
        size, evictions, ..
    } = table.stats();
    tracing::info!(
        decode = ?reader.decode_stats(),
        process_table_size = size,
        process_table_evictions = evictions,
        suppressed = flood.suppressed_total,
        "stopped"
    );
    Ok(())
}

/// One event with its process and container: the profile verdict it carries, then the rules.
fn judge(
    mut e: osprey_model::event::Enriched,
    profiles: &mut crate::profile::live::Live<crate::sensor::profile::ProfileMaps>,
    engine: &Engine,
    flood: &mut FloodControl,
    outputs: &mut Outputs,
) -> anyhow::Result<()> {
    match profiles.observe(&mut e) {
        Ok(Some(a)) => outputs.deliver(a)?,
        Ok(None) => {}
        Err(err) => tracing::warn!("syscall profiles: {err}"),
    }
    for alert in engine.evaluate(&e) {
        for a in flood.admit(alert) {
            outputs.deliver(a)?;
        }
    }
    Ok(())
}

/// Loads the syscall profiles into the kernel and decides the cgroups that exist already.
fn start_profiles(
    sensor: &mut Sensor,
    containers: Arc<ContainerTable>,
    defs: &[crate::profile::Profile],
    hostname: &str,
) -> anyhow::Result<(
    crate::profile::live::Live<crate::sensor::profile::ProfileMaps>,
    Option<PathBuf>,
)> {
    let mut live = crate::profile::live::Live::new(sensor.profile_maps()?, containers, hostname);
    live.apply_profiles(defs)
        .context("loading syscall profiles")?;
    let mount = crate::container::cgroup::v2_mount("/".as_ref());
    if let Some(m) = &mount {
        live.bootstrap(crate::container::cgroup::scan_v2(m).into_keys())?;
    }
    tracing::info!(
        profiles = defs.iter().filter(|p| p.enabled).count(),
        "syscall profiles loaded"
    );
    Ok((live, mount))
}

fn event_kind(ev: &osprey_model::event::Event) -> &str {
    match &ev.kind {
        osprey_model::event::EventKind::Exec(_) => "exec",
        osprey_model::event::EventKind::Fork(_) => "fork",
        osprey_model::event::EventKind::Exit(_) => "exit",
        osprey_model::event::EventKind::Syscall(sc) => &sc.name,
        osprey_model::event::EventKind::Profile(_) => "profile",
    }
}

/// Logs what the kernel dropped since the last report: nothing is lost without a word.
fn report_drops(sensor: &Sensor, last: KernelCounters) -> (KernelCounters, u64) {
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
    (now, lost)
}
