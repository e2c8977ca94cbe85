//! The live agent: the sensor's ring buffer feeding a [`Pipeline`], with what a long-running
//! node agent needs around it: metrics and probes, the gRPC stream, profile maps, rule reloads
//! (SIGHUP and file changes), internal alerts about lost events, and a clean stop.

use std::{
    collections::BTreeSet,
    path::PathBuf,
    sync::Arc,
    time::{Duration, SystemTime},
};

use osprey_engine::{Engine, EngineOptions, SyscallInterest};
use osprey_model::Priority;

use super::{Parts, Pipeline};
use crate::{
    config::Config,
    container::{ContainerConfig, ContainerTable, cgroup},
    metrics::Metrics,
    process::{TableStats, boot_clock_ns, boot_time_ns},
    profile::live::Live,
    rulefiles::{self, RuleFilesError},
    sensor::{
        KernelCounters, Sensor, SensorConfig, SensorError, Share,
        losses::{self, Losses, Who},
        syscalls,
    },
    server::{ServerError, agent::AgentStream},
    sink::{self, BuildError, SinkHandle, stream::StreamSink},
};

/// What stops the agent from starting or running.
#[derive(Debug, thiserror::Error)]
pub enum LiveError {
    #[error("binding the metrics address {addr}: {source}")]
    Metrics {
        addr: std::net::SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Rules(#[from] RuleFilesError),
    /// Not a `#[source]`: the message already holds the sensor's, which says what to do, and
    /// printing the chain would repeat it.
    #[error("starting the sensor: {0}")]
    Sensor(SensorError),
    #[error("loading syscall profiles: {0}")]
    Profiles(#[from] crate::profile::ApplyError),
    #[error(transparent)]
    Sinks(#[from] BuildError),
    #[error("the gRPC alert stream: {0}")]
    Stream(#[from] ServerError),
    #[error("{what}: {source}")]
    Io {
        what: &'static str,
        #[source]
        source: std::io::Error,
    },
}

impl From<SensorError> for LiveError {
    fn from(e: SensorError) -> Self {
        LiveError::Sensor(e)
    }
}

fn io(what: &'static str) -> impl FnOnce(std::io::Error) -> LiveError {
    move |source| LiveError::Io { what, source }
}

/// The kernel interest set for what the rules need; `chdir` too, which keeps working
/// directories (and so relative paths) right, and the fd table's syscalls. Event types that are not syscalls the sensor
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
            // The fd table follows descriptors whatever the rules name, so that `fd.*` is
            // known for any descriptor a captured syscall uses.
            set.extend(
                crate::process::FD_TABLE_SYSCALLS
                    .iter()
                    .map(|s| s.to_string()),
            );
            set
        }
    }
}

/// Writes the kernel's open filter for `engine`'s rules (see `Sensor::set_open_filter`).
fn set_open_filter(sensor: &mut Sensor, engine: &Engine) -> Result<(), SensorError> {
    let mut filter = engine.kernel_filter();
    crate::process::keep_followed_calls(&mut filter);
    let keys = sensor.set_open_filter(&filter)?;
    let (drop, keyed, pass) = filter.counts();
    tracing::info!(
        classes_dropped = drop,
        classes_keyed = keyed,
        classes_passed = pass,
        path_names = keys,
        "kernel open filter set"
    );
    Ok(())
}

/// Runs the agent until SIGINT or SIGTERM. `ready_message` is logged once the programs are
/// attached and the rules loaded (tests wait for it).
pub async fn run(cfg: Config, ready_message: &str) -> Result<(), LiveError> {
    let metrics = Arc::new(Metrics::new());
    if let Some(addr) = cfg.metrics {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|source| LiveError::Metrics { addr, source })?;
        tokio::spawn(crate::metrics::http::serve(listener, metrics.clone()));
        tracing::info!(%addr, "serving /healthz, /readyz and /metrics");
    }
    // Before the files are read: a change made while the agent starts (loading the programs
    // and reading /proc take seconds) is a change to reload, not the state to compare with.
    let mut rules_seen = fingerprint(&cfg.rules);
    let (mut ruleset, rules_error) = load_rules(&cfg.rules, &metrics)?;
    let profile_defs = std::mem::take(&mut ruleset.profiles);
    let containers = Arc::new(ContainerTable::new(ContainerConfig::default()));
    // Filled once the engine says which names its rules mention (below).
    let dns = crate::dns::ResolvedNames::spawn(Default::default())
        .map_err(io("starting the DNS resolver's thread"))?;
    let options = EngineOptions {
        containers: containers.clone(),
        process_groups: Arc::new(crate::host::ProcStatus),
        dns: dns.clone(),
        ..crate::host::engine_options_for_host("/".as_ref())
    };
    let hostname = options.hostname.to_string();

    let mut sinks = sink::build(&cfg, Some(metrics.clone()))?;
    let stream = crate::server::agent::start(&cfg.grpc, &hostname, metrics.clone()).await?;
    sinks.push(
        SinkHandle::spawn(
            StreamSink::new(stream.clone()),
            cfg.grpc.queue,
            Some(metrics.clone()),
        )
        .map_err(io("starting the gRPC sink's thread"))?,
    );
    let mut pipeline = Pipeline::new(
        &cfg,
        ruleset,
        Parts {
            options,
            containers: containers.clone(),
            metrics: metrics.clone(),
            sinks,
        },
    );
    dns.set_names(pipeline.engine().dns_names());
    let interest = interest_for(pipeline.engine());
    tracing::info!(
        rules = pipeline.engine().rules().len(),
        syscalls = interest.len(),
        "rules loaded"
    );
    tracing::debug!(syscalls = ?interest, "syscalls the rules want");
    stream.set_rules_loaded(pipeline.engine().rules().len());
    if let Some(e) = rules_error {
        pipeline.internal_alert(
            "Osprey rule files invalid",
            Priority::Error,
            format!(
                "The configured rule files do not load; Osprey runs the embedded default rules \
                 until they are fixed (they are watched): {e}"
            ),
        );
    }

    let mut sensor = Sensor::start(&SensorConfig {
        ring_buffer_bytes: cfg.ring_buffer_bytes,
        cgroup_share: cfg.ring_buffer_cgroup_share,
        syscalls: interest,
        entry_hook: needs_entry_hook(&profile_defs),
        btf_tracepoint: cfg.kernel_btf_tracepoint,
        btf_casts: cfg.kernel_btf_casts,
        exit_events: cfg.kernel_syscall_events,
        poll: cfg.ring_buffer_poll(),
        ..Default::default()
    })?;
    let mut reader = sensor.reader()?;
    // Until it is written (or if writing it fails) the kernel passes every open.
    if cfg.kernel_open_filter
        && let Err(e) = set_open_filter(&mut sensor, pipeline.engine())
    {
        tracing::error!("the kernel's open filter was not set; every open is captured: {e}");
    }
    pipeline
        .enrich_mut()
        .bootstrap("/proc".as_ref())
        .map_err(io("reading /proc"))?;
    let cgroup_mount = start_profiles(&mut sensor, &mut pipeline, &profile_defs, &hostname)?;
    // Handlers in place before the agent says it runs: a signal sent on that line (what a
    // script or a test waits for) was otherwise met by the default action, or lost where the
    // agent was started with SIGINT ignored (a background job of a shell script).
    use tokio::signal::unix::{SignalKind, signal};
    let mut sigint = signal(SignalKind::interrupt()).map_err(io("SIGINT handler"))?;
    let mut sigterm = signal(SignalKind::terminate()).map_err(io("SIGTERM handler"))?;
    let mut sighup = signal(SignalKind::hangup()).map_err(io("SIGHUP handler"))?;
    tracing::info!(kernel = sensor.kernel(), "{ready_message}");

    let mut batch = Vec::with_capacity(crate::sensor::BATCH_MAX);
    let mut last_counters = sensor.counters();
    let mut last_table = pipeline.table_stats();
    let mut losses = Losses::default();
    let mut check = tokio::time::interval(Duration::from_secs(10));
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    let mut watch = tokio::time::interval(Duration::from_secs(2));
    loop {
        metrics.heartbeat();
        let mut reload = false;
        tokio::select! {
            _ = sigint.recv() => break,
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
                let worst = losses.take_worst(3);
                if lost >= cfg.internal_alerts.drop_threshold && lost > 0 {
                    let by = if worst.is_empty() {
                        String::new()
                    } else {
                        format!("; most by container: {}", losses::describe(&worst))
                    };
                    pipeline.internal_alert("Osprey dropped kernel events", Priority::Critical, format!(
                        "Osprey lost {lost} kernel events in the last 10 s (ring buffer full, containers over their share of it, or program runs the kernel skipped){by}; detection had gaps (ring_buffer_bytes={}, ring_buffer_cgroup_share={})",
                        cfg.ring_buffer_bytes, cfg.ring_buffer_cgroup_share
                    ));
                }
                let t = pipeline.table_stats();
                if t.evictions > last_table.evictions {
                    pipeline.internal_alert("Osprey process table under pressure", Priority::Warning, format!(
                        "The process table evicted {} live processes in the last 10 s (capacity {}); their events lose their process context",
                        t.evictions - last_table.evictions, cfg.process_table_capacity
                    ));
                }
                last_table = t;
                if let (Some(m), Some(p)) = (&cgroup_mount, pipeline.profiles_mut()) {
                    let live = cgroup::scan_v2(m);
                    if let Err(e) = p.retain(|c| live.contains_key(&c)) {
                        tracing::warn!("syscall profiles: {e}");
                    }
                }
                continue;
            }
            // Events of a new container wait here for its runtime metadata, a bounded time.
            _ = tokio::time::sleep(pipeline.enrich_mut().poll_in()), if pipeline.enrich_mut().is_holding() => {}
            _ = tick.tick() => {
                metrics.sync(sensor.counters(), reader.decode_stats(), pipeline.table_stats());
                let lost = losses.update(&sensor.cgroup_losses(), |s| who(&containers, s));
                metrics.container_losses(&lost);
                metrics.sync_containers(containers.stats());
                metrics.bpf_stats(crate::sensor::bpf_stats_enabled());
                metrics.syscall_events(sensor.syscall_events());
                pipeline.tick(boot_time_ns() + boot_clock_ns());
                continue;
            }
            r = reader.read_batch(&mut batch, crate::sensor::BATCH_MAX) => r.map_err(io("reading the ring buffer"))?,
        }
        if reload {
            reload_rules(&cfg, &mut pipeline, &mut sensor, &stream, &dns);
            continue;
        }
        // Programs attached, rules loaded, and the ring buffer delivers: ready.
        metrics.set_ready(true);
        pipeline.observe(batch.drain(..));
        reader.recycle(pipeline.spent());
        // This loop runs as a task on a runtime worker (main.rs), and on a busy node the ring
        // buffer never runs dry, so nothing in it ever waits: once its cooperative budget is
        // spent it lets the tasks queued behind it on this worker (the metrics server, the
        // gRPC stream) have their turn. Without it a flood kept /metrics from answering for
        // seconds; a yield after every batch cost a wake-up of the other worker each time.
        tokio::task::coop::consume_budget().await;
    }
    // Events still waiting for container metadata go on with what is known; every sink writes
    // out what it holds.
    pipeline.finish();
    report_drops(&sensor, last_counters);
    let TableStats {
        size, evictions, ..
    } = pipeline.table_stats();
    tracing::info!(
        decode = ?reader.decode_stats(),
        process_table_size = size,
        process_table_evictions = evictions,
        suppressed = pipeline.suppressed_total(),
        "stopped"
    );
    Ok(())
}

/// The configured rule files; when they do not load (a bad ConfigMap rolled out to every
/// node), the embedded default rules instead, so that detection never stops on a rules
/// mistake. Returns the error that made it fall back.
fn load_rules(
    paths: &[PathBuf],
    metrics: &Metrics,
) -> Result<(osprey_engine::rules::Ruleset, Option<String>), LiveError> {
    match rulefiles::load_for_run(paths) {
        Ok(rules) => Ok((rules, None)),
        Err(e) if !rulefiles::is_default(paths) => {
            metrics.rule_load_errors.inc();
            let error = e.to_string();
            tracing::error!(
                "the configured rule files do not load; running the embedded default rules \
                 until they are fixed: {error}"
            );
            metrics.set_rule_files_error(Some(error.clone()));
            Ok((rulefiles::load_for_run(&[])?, Some(error)))
        }
        Err(e) => {
            metrics.rule_load_errors.inc();
            Err(e.into())
        }
    }
}

/// Validates the rule files first; the running rules stay until the new ones are whole.
fn reload_rules(
    cfg: &Config,
    pipeline: &mut Pipeline,
    sensor: &mut Sensor,
    stream: &AgentStream,
    dns: &crate::dns::ResolvedNames,
) {
    let metrics = pipeline.metrics().clone();
    match rulefiles::load_for_run(&cfg.rules) {
        Ok(mut ruleset) => {
            let defs = std::mem::take(&mut ruleset.profiles);
            // The entry hook goes on before new profiles are in force, and off only once none
            // is left, so that a profile in force is never without it.
            let hook = needs_entry_hook(&defs);
            let hooked = match hook.then(|| sensor.set_entry_hook(true)) {
                Some(Err(e)) => {
                    tracing::error!("syscall profiles not changed: {e}");
                    false
                }
                _ => true,
            };
            if hooked && let Some(p) = pipeline.profiles_mut() {
                match p.apply_profiles(&defs) {
                    Err(e) => tracing::error!("syscall profiles not changed: {e}"),
                    Ok(()) if !hook => {
                        if let Err(e) = sensor.set_entry_hook(false) {
                            tracing::warn!("syscall entry hook left attached: {e}");
                        }
                    }
                    Ok(()) => {}
                }
            }
            pipeline.replace_rules(ruleset);
            dns.set_names(pipeline.engine().dns_names());
            let rules = pipeline.engine().rules().len();
            stream.set_rules_loaded(rules);
            let interest = interest_for(pipeline.engine());
            if let Err(e) = sensor.set_interest(&interest) {
                tracing::error!("the kernel's syscall filter was not updated: {e}");
            }
            if cfg.kernel_open_filter
                && let Err(e) = set_open_filter(sensor, pipeline.engine())
            {
                tracing::error!("the kernel's open filter was not updated: {e}");
            }
            metrics.set_rule_files_error(None);
            metrics
                .reloads
                .get_or_create(&vec![("result", "ok".to_string())])
                .inc();
            tracing::info!(rules, syscalls = interest.len(), "rules reloaded");
        }
        Err(e) => {
            metrics.rule_load_errors.inc();
            metrics.set_rule_files_error(Some(e.to_string()));
            metrics
                .reloads
                .get_or_create(&vec![("result", "error".to_string())])
                .inc();
            tracing::error!("rule reload failed; the running rules stay: {e}");
            pipeline.internal_alert(
                "Osprey rule reload failed",
                Priority::Error,
                format!("Rule reload failed; the running rules stay in force: {e}"),
            );
        }
    }
}

/// Whether syscall profiles need `sys_enter` attached: some profile is enabled.
fn needs_entry_hook(defs: &[crate::profile::Profile]) -> bool {
    defs.iter().any(|p| p.enabled)
}

/// Loads the syscall profiles into the kernel and decides the cgroups that exist already;
/// returns the cgroup v2 mount, which is rescanned to forget removed cgroups.
fn start_profiles(
    sensor: &mut Sensor,
    pipeline: &mut Pipeline,
    defs: &[crate::profile::Profile],
    hostname: &str,
) -> Result<Option<PathBuf>, LiveError> {
    let mut live = Live::new(
        sensor.profile_maps()?,
        pipeline.containers().clone(),
        hostname,
    );
    live.apply_profiles(defs)?;
    let mount = cgroup::v2_mount("/".as_ref());
    if let Some(m) = &mount {
        live.bootstrap(cgroup::scan_v2(m).into_keys())?;
    }
    tracing::info!(
        profiles = defs.iter().filter(|p| p.enabled).count(),
        "syscall profiles loaded"
    );
    pipeline.set_profiles(live);
    Ok(mount)
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

/// Logs what the kernel dropped since the last report: nothing is lost without a word.
/// How losses name a share: its container, `host`, or `cgroup:ID` / `mntns:INUM` when nothing
/// places it.
fn who(containers: &ContainerTable, share: Share) -> Who {
    let (found, unplaced) = match share {
        Share::Cgroup(id) => (containers.of_cgroup(id), format!("cgroup:{id}")),
        Share::MntNs(ns) => (containers.of_mnt_ns(ns), format!("mntns:{ns}")),
        Share::HostProcess(_) => (Some(containers.host()), String::new()),
    };
    match found {
        Some(c) => Who {
            container_id: c.id.clone(),
            container_name: c.name.clone().unwrap_or_default(),
        },
        None => Who {
            container_id: unplaced,
            container_name: String::new(),
        },
    }
}

fn report_drops(sensor: &Sensor, last: KernelCounters) -> (KernelCounters, u64) {
    let now = sensor.counters();
    // Saturating: a counter that could not be read this time reads lower than last time.
    let lost = now.dropped().saturating_sub(last.dropped());
    if lost > 0 {
        tracing::warn!(
            lost,
            ring_buffer_full = now.ring_full().saturating_sub(last.ring_full()),
            program_busy = now
                .dropped_busy
                .unwrap_or(0)
                .saturating_sub(last.dropped_busy.unwrap_or(0)),
            "kernel events lost; a larger --ring-buffer-size or fewer rules reduce a full ring \
             buffer's losses; program_busy counts runs the kernel skipped on a CPU where the \
             program was already running (a preemptible kernel)"
        );
    }
    (now, lost)
}
