//! The agent's Prometheus metrics and its readiness flag; [`http`] serves them with
//! `/healthz`, `/readyz` and `/metrics`.
//!
//! Every place that can lose something has a counter here: the kernel ring buffer (per event
//! kind), the in-flight syscall table, decoding, and every userspace queue by name.

pub mod http;

use std::sync::{
    Mutex, RwLock,
    atomic::{AtomicBool, Ordering},
};

use prometheus_client::{
    encoding::text::encode,
    metrics::{counter::Counter, family::Family, gauge::Gauge},
    registry::Registry,
};

use crate::{
    fast_hash::FastMap,
    process::TableStats,
    sensor::{DecodeStats, KernelCounters, losses::ContainerLoss},
};

type Labels = Vec<(&'static str, String)>;

/// The most containers `osprey_kernel_dropped_by_container_total` names; the rest are summed
/// as `other`, so that a node that churns through containers does not grow the metrics.
pub const MAX_LOSS_CONTAINERS: usize = 256;

/// All of the agent's metrics. Cheap to update from the pipeline (atomic increments).
pub struct Metrics {
    registry: Registry,
    /// Events decoded from the ring buffer, by kind (exec, fork, exit, syscall name).
    pub events: Family<Labels, Counter>,
    /// Kernel records lost to a full ring buffer, by kind (`cgroup_share`: over a cgroup's
    /// share of a ring's reserved room full).
    kernel_dropped: Family<Labels, Counter>,
    /// The same losses by container (`container_id`, `container_name`) and `reason`
    /// (`over_share`, `ring_full`). At most [`MAX_LOSS_CONTAINERS`] containers, the rest as
    /// `container_id="other"`.
    kernel_dropped_by_container: Family<Labels, Counter>,
    /// Opens the kernel passed over because no loaded rule could match them (not losses).
    kernel_open_filtered: Counter,
    kernel_calls_filtered: Counter,
    /// Ring-buffer records that could not be decoded (`short`, `unknown`).
    decode_errors: Family<Labels, Counter>,
    /// io_uring requests by how they were reported (`joined` with their completion,
    /// `unfinished`: reported without one, `unmatched`: a completion whose submission was not
    /// seen).
    io_uring_requests: Family<Labels, Counter>,
    /// Items dropped by a bounded userspace queue, by queue name.
    pub queue_dropped: Family<Labels, Counter>,
    /// Rule matches by rule name.
    pub rule_matches: Family<Labels, Counter>,
    /// Alerts emitted by priority.
    pub alerts: Family<Labels, Counter>,
    process_table_size: Gauge,
    process_table_evictions: Counter,
    bpf_stats_enabled: Gauge,
    syscall_events: Gauge,
    fd_table_size: Gauge,
    fd_table_evictions: Counter,
    /// `/proc/PID/fd` look-ups for descriptors the fd table had not seen made, by result
    /// (`done`, `over_budget`).
    fd_table_procfs_lookups: Family<Labels, Counter>,
    /// Flood-control windows evicted to keep the key space bounded (their summaries went out).
    pub flood_evictions: Counter,
    /// Rule files rejected at start-up or reload.
    pub rule_load_errors: Counter,
    /// Reloads by result (`ok`, `error`).
    pub reloads: Family<Labels, Counter>,
    /// Connected alert subscribers.
    pub subscribers: Gauge,
    /// Alerts waiting to be acknowledged by the collector.
    pub push_backlog: Gauge,
    /// Alerts suppressed by flood control.
    pub suppressed: Family<Labels, Counter>,
    containers: Gauge,
    /// Events held back while their container's runtime metadata was pending.
    container_events_held: Counter,
    /// Containers whose metadata did not arrive in time, by reason (`timeout`, `overflow`).
    container_metadata_missing: Family<Labels, Counter>,
    last_containers: Mutex<crate::container::ContainerStats>,
    /// Containers with a series in `kernel_dropped_by_container`.
    loss_containers: Mutex<std::collections::HashSet<String>>,
    ready: AtomicBool,
    /// When the agent's loop last went round (it does at least once a second), for
    /// `/healthz`: a loop stuck anywhere means the ring buffer is no longer read.
    heartbeat: Mutex<Option<std::time::Instant>>,
    /// Why the configured rule files are not in force, while they are not.
    rule_files_error: Mutex<Option<String>>,
    rule_files_invalid: Gauge,
    last: Mutex<(KernelCounters, DecodeStats, TableStats)>,
    /// The `events` counter of each kind seen, so that counting an event (once per event, the
    /// hottest metric) neither builds a label set nor allocates: `cargo bench --bench
    /// pipeline` measured 230 ns per event through `Family::get_or_create`.
    event_counters: RwLock<FastMap<String, Counter>>,
}

fn labels(k: &'static str, v: impl Into<String>) -> Labels {
    vec![(k, v.into())]
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut r = Registry::with_prefix("osprey");
        let m = Metrics {
            events: Family::default(),
            kernel_dropped: Family::default(),
            kernel_dropped_by_container: Family::default(),
            kernel_open_filtered: Counter::default(),
            kernel_calls_filtered: Counter::default(),
            decode_errors: Family::default(),
            io_uring_requests: Family::default(),
            queue_dropped: Family::default(),
            rule_matches: Family::default(),
            alerts: Family::default(),
            process_table_size: Gauge::default(),
            process_table_evictions: Counter::default(),
            bpf_stats_enabled: Gauge::default(),
            syscall_events: Gauge::default(),
            fd_table_size: Gauge::default(),
            fd_table_evictions: Counter::default(),
            fd_table_procfs_lookups: Family::default(),
            flood_evictions: Counter::default(),
            rule_load_errors: Counter::default(),
            reloads: Family::default(),
            subscribers: Gauge::default(),
            push_backlog: Gauge::default(),
            suppressed: Family::default(),
            containers: Gauge::default(),
            container_events_held: Counter::default(),
            container_metadata_missing: Family::default(),
            last_containers: Mutex::default(),
            loss_containers: Mutex::default(),
            ready: AtomicBool::new(false),
            heartbeat: Mutex::new(None),
            rule_files_error: Mutex::new(None),
            rule_files_invalid: Gauge::default(),
            last: Mutex::new(Default::default()),
            event_counters: RwLock::default(),
            registry: Registry::default(),
        };
        r.register(
            "events",
            "Events decoded from the kernel, by kind",
            m.events.clone(),
        );
        r.register(
            "kernel_dropped",
            "Kernel records lost to a full ring buffer (or a cgroup's spent share of it), or \
             runs of a program the kernel skipped because it was already running on that CPU \
             (busy), by kind",
            m.kernel_dropped.clone(),
        );
        r.register(
            "kernel_open_filtered",
            "Opens the kernel passed over because no loaded rule could match them \
             (kernel_open_filter): not judged, by design, and not losses",
            m.kernel_open_filtered.clone(),
        );
        r.register(
            "kernel_calls_filtered",
            "mprotect, mmap, pkey_mprotect and fcntl calls the kernel passed over on their \
             argument and result \
             because no loaded rule (nor the fd table) could match them (kernel_open_filter): \
             not judged, by design, and not losses",
            m.kernel_calls_filtered.clone(),
        );
        r.register(
            "kernel_dropped_by_container",
            "Kernel records lost, by container and reason: over_share (the container's share \
             of the ring buffer's reserved room was used) or ring_full",
            m.kernel_dropped_by_container.clone(),
        );
        r.register(
            "decode_errors",
            "Ring-buffer records that could not be decoded, by reason",
            m.decode_errors.clone(),
        );
        r.register(
            "io_uring_requests",
            "io_uring requests: joined with their completion, unfinished (reported without \
             one), unmatched (a completion whose submission was not seen)",
            m.io_uring_requests.clone(),
        );
        r.register(
            "queue_dropped",
            "Items dropped by a bounded userspace queue, by queue",
            m.queue_dropped.clone(),
        );
        r.register(
            "rule_matches",
            "Rule matches, by rule",
            m.rule_matches.clone(),
        );
        r.register("alerts", "Alerts emitted, by priority", m.alerts.clone());
        r.register(
            "process_table_size",
            "Processes in the process table",
            m.process_table_size.clone(),
        );
        r.register(
            "kernel_bpf_stats_enabled",
            "1 while kernel.bpf_stats_enabled is on: every BPF program on the node, the \
             agent's included, then reads the clock twice per run",
            m.bpf_stats_enabled.clone(),
        );
        r.register(
            "kernel_syscall_events",
            "Syscalls whose own sys_exit event the capture program is attached to; 0 where it \
             is attached to raw_syscalls:sys_exit and runs for every syscall",
            m.syscall_events.clone(),
        );
        r.register(
            "process_table_evictions",
            "Processes evicted from the full process table",
            m.process_table_evictions.clone(),
        );
        r.register(
            "fd_table_size",
            "Descriptors in the file-descriptor table, over all processes",
            m.fd_table_size.clone(),
        );
        r.register(
            "fd_table_evictions",
            "Descriptors evicted from the file-descriptor table to stay within its bounds",
            m.fd_table_evictions.clone(),
        );
        r.register(
            "fd_table_procfs_lookups",
            "Descriptors read from /proc because the fd table had not seen them made, by result",
            m.fd_table_procfs_lookups.clone(),
        );
        r.register(
            "flood_evictions",
            "Flood-control windows evicted early to keep the key space bounded (their summaries went out)",
            m.flood_evictions.clone(),
        );
        r.register(
            "rule_load_errors",
            "Rule files rejected at start-up or reload",
            m.rule_load_errors.clone(),
        );
        r.register("reloads", "Rule reloads, by result", m.reloads.clone());
        r.register(
            "subscribers",
            "Connected alert subscribers",
            m.subscribers.clone(),
        );
        r.register(
            "push_backlog",
            "Alerts not yet acknowledged by the collector",
            m.push_backlog.clone(),
        );
        r.register(
            "alerts_suppressed",
            "Alerts collapsed by flood control, by rule",
            m.suppressed.clone(),
        );
        r.register(
            "containers",
            "Containers in the container table",
            m.containers.clone(),
        );
        r.register(
            "container_events_held",
            "Events that waited for their container's runtime metadata",
            m.container_events_held.clone(),
        );
        r.register(
            "container_metadata_missing",
            "Events or containers that went on without runtime metadata, by reason \
             (timeout: the wait bound passed; overflow: too many events were waiting)",
            m.container_metadata_missing.clone(),
        );
        r.register(
            "rule_files_invalid",
            "1 while the configured rule files do not load (the agent runs the embedded default rules, or the last rules that loaded)",
            m.rule_files_invalid.clone(),
        );
        Metrics { registry: r, ..m }
    }

    /// The agent's loop went round once more.
    pub fn heartbeat(&self) {
        if let Ok(mut h) = self.heartbeat.lock() {
            *h = Some(std::time::Instant::now());
        }
    }

    /// `/healthz`: fails when the loop that reads the ring buffer has not gone round for
    /// `stale` (it goes round at least once a second). Healthy before it first runs, so
    /// start-up is left to the readiness probe.
    pub fn health(&self, stale: std::time::Duration) -> Result<(), String> {
        let last = self.heartbeat.lock().ok().and_then(|h| *h);
        match last {
            Some(t) if t.elapsed() > stale => Err(format!(
                "the event loop has not run for {:.0} s: the ring buffer is not being read",
                t.elapsed().as_secs_f64()
            )),
            _ => Ok(()),
        }
    }

    /// Records whether the configured rule files load; `Some(error)` while they do not.
    pub fn set_rule_files_error(&self, error: Option<String>) {
        self.rule_files_invalid.set(i64::from(error.is_some()));
        if let Ok(mut e) = self.rule_files_error.lock() {
            *e = error;
        }
    }

    /// Why the configured rule files are not in force, for `/readyz`'s body.
    pub fn rule_files_error(&self) -> Option<String> {
        self.rule_files_error.lock().ok().and_then(|e| e.clone())
    }

    pub fn set_ready(&self, ready: bool) {
        self.ready.store(ready, Ordering::Relaxed);
    }

    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Relaxed)
    }

    /// Brings the counters kept elsewhere (kernel maps, decoder, process table) up to date.
    pub fn sync(&self, kernel: KernelCounters, decode: DecodeStats, table: TableStats) {
        let Ok(mut last) = self.last.lock() else {
            return;
        };
        let (k0, d0, t0) = *last;
        let add = |f: &Family<Labels, Counter>, k: &'static str, v: &str, now: u64, then: u64| {
            if now > then {
                f.get_or_create(&labels(k, v)).inc_by(now - then);
            }
        };
        add(
            &self.kernel_dropped,
            "kind",
            "exec",
            kernel.dropped_exec,
            k0.dropped_exec,
        );
        add(
            &self.kernel_dropped,
            "kind",
            "fork",
            kernel.dropped_fork,
            k0.dropped_fork,
        );
        add(
            &self.kernel_dropped,
            "kind",
            "exit",
            kernel.dropped_exit,
            k0.dropped_exit,
        );
        add(
            &self.kernel_dropped,
            "kind",
            "syscall",
            kernel.dropped_syscall,
            k0.dropped_syscall,
        );
        add(
            &self.kernel_dropped,
            "kind",
            "cgroup_share",
            kernel.dropped_cgroup_share,
            k0.dropped_cgroup_share,
        );
        if kernel.open_filtered > k0.open_filtered {
            self.kernel_open_filtered
                .inc_by(kernel.open_filtered - k0.open_filtered);
        }
        if kernel.calls_filtered > k0.calls_filtered {
            self.kernel_calls_filtered
                .inc_by(kernel.calls_filtered - k0.calls_filtered);
        }
        add(
            &self.decode_errors,
            "reason",
            "short",
            decode.short,
            d0.short,
        );
        add(
            &self.decode_errors,
            "reason",
            "unknown",
            decode.unknown,
            d0.unknown,
        );
        for (outcome, now, then) in [
            ("joined", decode.io_uring.joined, d0.io_uring.joined),
            (
                "unfinished",
                decode.io_uring.unfinished,
                d0.io_uring.unfinished,
            ),
            (
                "unmatched",
                decode.io_uring.unmatched,
                d0.io_uring.unmatched,
            ),
        ] {
            add(&self.io_uring_requests, "outcome", outcome, now, then);
        }
        self.process_table_size.set(table.size as i64);
        if table.evictions > t0.evictions {
            self.process_table_evictions
                .inc_by(table.evictions - t0.evictions);
        }
        self.fd_table_size.set(table.fds.entries as i64);
        if table.fds.evictions > t0.fds.evictions {
            self.fd_table_evictions
                .inc_by(table.fds.evictions - t0.fds.evictions);
        }
        add(
            &self.fd_table_procfs_lookups,
            "result",
            "done",
            table.fds.procfs_lookups,
            t0.fds.procfs_lookups,
        );
        add(
            &self.fd_table_procfs_lookups,
            "result",
            "over_budget",
            table.fds.procfs_lookups_skipped,
            t0.fds.procfs_lookups_skipped,
        );
        // Skipped runs, where the kernel reports them (Linux 5.12+): the series exists only
        // there, so that a node that cannot count them does not show a zero.
        if let Some(busy) = kernel.dropped_busy {
            add(
                &self.kernel_dropped,
                "kind",
                "busy",
                busy,
                k0.dropped_busy.unwrap_or(0),
            );
            let _ = self.kernel_dropped.get_or_create(&labels("kind", "busy"));
        }
        // Make sure every drop series exists from the start, at zero, so dashboards see it.
        for kind in ["exec", "fork", "exit", "syscall", "cgroup_share"] {
            let _ = self.kernel_dropped.get_or_create(&labels("kind", kind));
        }
        *last = (kernel, decode, table);
    }

    /// Adds what each container lost since the last call.
    pub fn container_losses(&self, losses: &[ContainerLoss]) {
        let Ok(mut known) = self.loss_containers.lock() else {
            return;
        };
        for l in losses {
            let (id, name) =
                if known.contains(&l.who.container_id) || known.len() < MAX_LOSS_CONTAINERS {
                    known.insert(l.who.container_id.clone());
                    (l.who.container_id.clone(), l.who.container_name.clone())
                } else {
                    ("other".to_string(), String::new())
                };
            for (reason, n) in [("over_share", l.over_share), ("ring_full", l.ring_full)] {
                if n > 0 {
                    self.kernel_dropped_by_container
                        .get_or_create(&vec![
                            ("container_id", id.clone()),
                            ("container_name", name.clone()),
                            ("reason", reason.to_string()),
                        ])
                        .inc_by(n);
                }
            }
        }
    }

    /// Brings the container table's counters up to date.
    pub fn sync_containers(&self, now: crate::container::ContainerStats) {
        let Ok(mut last) = self.last_containers.lock() else {
            return;
        };
        self.containers.set(now.containers as i64);
        if now.held > last.held {
            self.container_events_held.inc_by(now.held - last.held);
        }
        for (reason, n, then) in [
            ("timeout", now.metadata_timeouts, last.metadata_timeouts),
            ("overflow", now.held_overflow, last.held_overflow),
        ] {
            let c = self
                .container_metadata_missing
                .get_or_create(&labels("reason", reason));
            if n > then {
                c.inc_by(n - then);
            }
        }
        *last = now;
    }

    pub fn event(&self, kind: &str) {
        if let Ok(known) = self.event_counters.read()
            && let Some(c) = known.get(kind)
        {
            c.inc();
            return;
        }
        // First event of this kind: the family's counter, shared with the cache.
        let c = self.events.get_or_create(&labels("kind", kind)).clone();
        c.inc();
        if let Ok(mut known) = self.event_counters.write() {
            known.insert(kind.to_string(), c);
        }
    }

    pub fn alert(&self, rule: &str, priority: &str) {
        self.rule_matches.get_or_create(&labels("rule", rule)).inc();
        self.alerts
            .get_or_create(&labels("priority", priority))
            .inc();
    }

    /// Whether `kernel.bpf_stats_enabled` is on, as last looked at.
    pub fn bpf_stats(&self, on: bool) {
        self.bpf_stats_enabled.set(i64::from(on));
    }

    /// How many syscalls' own `sys_exit` events the capture program is attached to.
    pub fn syscall_events(&self, n: usize) {
        self.syscall_events.set(n as i64);
    }

    pub fn queue_drop(&self, queue: &str, n: u64) {
        self.queue_dropped
            .get_or_create(&labels("queue", queue))
            .inc_by(n);
    }

    /// The Prometheus text exposition.
    pub fn encode(&self) -> String {
        let mut s = String::new();
        if encode(&mut s, &self.registry).is_err() {
            s.clear();
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_kernel_drops_as_deltas() {
        let m = Metrics::new();
        let mut k = KernelCounters {
            dropped_syscall: 5,
            ..Default::default()
        };
        m.sync(k, DecodeStats::default(), TableStats::default());
        k.dropped_syscall = 7;
        m.sync(
            k,
            DecodeStats {
                short: 2,
                ..Default::default()
            },
            TableStats {
                size: 10,
                evictions: 3,
                misses: 0,
                fds: crate::process::FdStats {
                    evictions: 4,
                    ..Default::default()
                },
            },
        );
        let text = m.encode();
        assert!(
            text.contains("osprey_kernel_dropped_total{kind=\"syscall\"} 7"),
            "{text}"
        );
        assert!(text.contains("osprey_kernel_dropped_total{kind=\"exec\"} 0"));
        assert!(text.contains("osprey_decode_errors_total{reason=\"short\"} 2"));
        assert!(text.contains("osprey_process_table_size 10"));
        assert!(text.contains("osprey_process_table_evictions_total 3"));
        assert!(text.contains("osprey_fd_table_evictions_total 4"), "{text}");
    }
}
