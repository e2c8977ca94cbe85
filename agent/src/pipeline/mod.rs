//! The agent's pipeline as a library type: decoded events → process table → container →
//! syscall-profile verdicts → rule engine → flood control → sinks.
//!
//! [`Pipeline`] holds every stage after the sensor and is driven by whoever has events: the
//! live loop ([`live::run`], what `osprey run` is) feeds it ring-buffer batches, and a test or
//! a replay feeds it recorded events. Nothing in it blocks: sinks take alerts through bounded
//! queues ([`crate::sink`]).

pub mod enrich;
pub mod live;
pub mod trace;

use std::{sync::Arc, time::SystemTime};

use osprey_engine::{
    Engine, EngineOptions,
    flood::{FloodControl, SUPPRESSED_FIELD},
    output::{Alert, AlertEvent},
    rules::Ruleset,
};
use osprey_model::{
    Priority,
    event::{Enriched, Event},
};

pub use self::enrich::Enrich;
use crate::{
    config::Config,
    container::{ContainerConfig, ContainerTable},
    metrics::Metrics,
    process::{TableConfig, TableStats, boot_clock_ns},
    profile::live::Live,
    sensor::profile::ProfileMaps,
    sink::Fanout,
};

/// Every stage after the sensor.
pub struct Pipeline {
    enrich: Enrich,
    containers: Arc<ContainerTable>,
    profiles: Option<Live<ProfileMaps>>,
    engine: Engine,
    options: EngineOptions,
    flood: FloodControl,
    sinks: Fanout,
    metrics: Arc<Metrics>,
    ready: Vec<Enriched>,
    /// Events judged, for the decoder to fill again ([`Self::spent`]).
    spent: Vec<Event>,
}

/// Most judged events kept for the decoder: a ring-buffer batch's worth.
const SPENT_MAX: usize = 4096;

/// The engine's host lookups and the container table a pipeline shares with the rest of the
/// agent.
pub struct Parts {
    pub options: EngineOptions,
    pub containers: Arc<ContainerTable>,
    pub metrics: Arc<Metrics>,
    pub sinks: Fanout,
}

impl Parts {
    /// For tests and replays: no host lookups, an empty container table, fresh metrics.
    pub fn detached(sinks: Fanout) -> Self {
        let containers = Arc::new(ContainerTable::new(ContainerConfig::default()));
        Self {
            options: EngineOptions {
                containers: containers.clone(),
                ..EngineOptions::default()
            },
            containers,
            metrics: Arc::new(Metrics::new()),
            sinks,
        }
    }
}

impl Pipeline {
    /// The stages for `rules`, configured by `cfg` (process table size, flood control).
    pub fn new(cfg: &Config, rules: Ruleset, parts: Parts) -> Self {
        Self {
            enrich: Enrich::new(
                TableConfig {
                    capacity: cfg.process_table_capacity,
                    fds: crate::process::FdConfig {
                        per_process: cfg.fd_table_per_process.max(1),
                        total: cfg.fd_table_total.max(1),
                        ..Default::default()
                    },
                    ..TableConfig::default()
                },
                parts.containers.clone(),
            ),
            containers: parts.containers,
            profiles: None,
            engine: Engine::new(rules, parts.options.clone()),
            options: parts.options,
            flood: FloodControl::new(cfg.flood.clone()),
            sinks: parts.sinks,
            metrics: parts.metrics,
            ready: Vec::with_capacity(4096),
            spent: Vec::with_capacity(SPENT_MAX),
        }
    }

    /// Syscall profiles decided in the kernel; their verdict events become alerts here.
    pub fn set_profiles(&mut self, profiles: Live<ProfileMaps>) {
        self.profiles = Some(profiles);
    }

    pub fn profiles_mut(&mut self) -> Option<&mut Live<ProfileMaps>> {
        self.profiles.as_mut()
    }

    pub fn enrich_mut(&mut self) -> &mut Enrich {
        &mut self.enrich
    }

    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    pub fn containers(&self) -> &Arc<ContainerTable> {
        &self.containers
    }

    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    pub fn table_stats(&self) -> TableStats {
        self.enrich.table_stats()
    }

    /// Alerts flood control folded into summaries so far.
    pub fn suppressed_total(&self) -> u64 {
        self.flood.suppressed_total
    }

    /// Decoded events, in order: each is enriched and, once its container is known, judged.
    pub fn observe(&mut self, events: impl IntoIterator<Item = Event>) {
        let mut ready = std::mem::take(&mut self.ready);
        let now = std::time::Instant::now();
        for ev in events {
            self.metrics.event(event_kind(&ev));
            self.enrich.push(ev, now, &mut ready);
        }
        self.enrich.poll(&mut ready);
        for e in ready.drain(..) {
            self.judge(e);
        }
        self.ready = ready;
    }

    /// Events judged since the last call, whose strings and vectors the decoder reuses
    /// ([`crate::sensor::Decoder::recycle`]).
    pub fn spent(&mut self) -> std::vec::Drain<'_, Event> {
        self.spent.drain(..)
    }

    /// Judges events held for their container's metadata whose time has come.
    pub fn poll(&mut self) {
        self.observe(std::iter::empty());
    }

    /// One enriched event (live, or read back from a recording): its profile verdict, then
    /// the rules through flood control (a match it holds back is never rendered), then the
    /// sinks.
    pub fn judge(&mut self, mut e: Enriched) {
        if let Some(p) = self.profiles.as_mut() {
            match p.observe(&mut e) {
                Ok(Some(a)) => self.emit(a),
                Ok(None) => {}
                Err(err) => tracing::warn!("syscall profiles: {err}"),
            }
        }
        let evictions = self.flood.evictions;
        for a in self.engine.evaluate_gated(&e, &mut self.flood) {
            self.emit(a);
        }
        if self.flood.evictions > evictions {
            self.metrics
                .flood_evictions
                .inc_by(self.flood.evictions - evictions);
        }
        if self.spent.len() < SPENT_MAX {
            self.spent.push(e.event);
        }
    }

    /// Once a second or so: flood-control and profile summaries whose window closed.
    pub fn tick(&mut self, now_wall_ns: u64) {
        for a in self.flood.flush(now_wall_ns) {
            self.emit(a);
        }
        let profile_alerts = self
            .profiles
            .as_mut()
            .map(|p| p.flush(now_wall_ns))
            .unwrap_or_default();
        for a in profile_alerts {
            self.emit(a);
        }
    }

    /// New rules between two batches: no event is judged by neither set.
    pub fn replace_rules(&mut self, rules: Ruleset) {
        self.engine = Engine::new(rules, self.options.clone());
    }

    /// An alert about Osprey itself (source `internal`), through the same sinks.
    pub fn internal_alert(&mut self, rule: &str, priority: Priority, output: String) {
        let a = internal_alert(&self.options.hostname, rule, priority, output);
        self.emit(a);
    }

    /// The one publish point: counted, then handed to every sink (never waits).
    pub fn emit(&mut self, a: Alert) {
        self.metrics.alert(&a.rule, a.priority.as_str());
        if let Some(n) = a
            .output_fields
            .get(SUPPRESSED_FIELD)
            .and_then(|v| v.as_u64())
        {
            self.metrics
                .suppressed
                .get_or_create(&vec![("rule", a.rule.to_string())])
                .inc_by(n);
        }
        self.sinks.deliver(a);
    }

    /// Judges what is still held, writes out every sink's queue and stops the sinks.
    pub fn finish(&mut self) {
        let mut ready = std::mem::take(&mut self.ready);
        self.enrich.flush(&mut ready);
        for e in ready.drain(..) {
            self.judge(e);
        }
        self.sinks.close();
    }
}

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
        tags: vec!["osprey".into(), "internal".into()].into(),
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

/// The metrics label of an event: its syscall name, or its lifecycle kind.
fn event_kind(ev: &Event) -> &str {
    use osprey_model::event::EventKind;
    match &ev.kind {
        EventKind::Exec(_) => "exec",
        EventKind::Fork(_) => "fork",
        EventKind::Exit(_) => "exit",
        EventKind::Syscall(sc) => &sc.name,
        EventKind::Profile(_) => "profile",
    }
}

#[cfg(test)]
mod tests;
