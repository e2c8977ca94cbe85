//! Flood control: the same rule firing for the same process on the same target over and over
//! is collapsed. The first `burst` alerts of a window go out; the rest are counted, and when the
//! window closes one summary alert carries the exact number suppressed. Nothing is dropped
//! without a count.
//!
//! "The same" is keyed so that an attacker cannot hide one alert behind others: the rule, the
//! container, the process (pid), and the target the rule's output shows (`fd.*`, `evt.arg*`,
//! `evt.args`, `proc.cmdline`, `proc.exepath`, `proc.args`). Five decoy reads of one file from
//! one process fill only that process's and that file's window; a read of another file, or by
//! another process, alerts on its own. The key space is bounded (`max_keys`): past it the
//! oldest window is closed early, its summary goes out, and the eviction is counted.

use std::{
    collections::HashMap,
    hash::{BuildHasher, Hash, Hasher, RandomState},
};

use serde::Deserialize;

use super::Alert;
use osprey_model::Priority;

/// Limits for one class of alerts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct Limit {
    /// Alerts let through per window and key before suppression starts.
    pub burst: u32,
    /// Window length in milliseconds.
    pub window_ms: u64,
}

/// Flood-control settings: a default, overridable per priority and per rule (rule wins).
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct FloodConfig {
    /// Off: every alert goes out.
    pub enabled: bool,
    pub default: Limit,
    /// Keyed by priority name (`Critical`, `Warning`, ...).
    pub per_priority: HashMap<String, Limit>,
    /// Keyed by rule name.
    pub per_rule: HashMap<String, Limit>,
    /// Most windows (rule, container, process, target) open at once; past it the oldest is
    /// closed early (its summary goes out) and counted in `osprey_flood_evictions_total`.
    pub max_keys: usize,
}

impl Default for FloodConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            default: Limit {
                burst: 5,
                window_ms: 10_000,
            },
            per_priority: HashMap::new(),
            per_rule: HashMap::new(),
            max_keys: 4096,
        }
    }
}

/// What makes two alerts "the same" for flood control.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct Key {
    rule: String,
    container: String,
    pid: u32,
    /// A keyed hash of the target fields the output shows (see [`target_field`]); the hasher's
    /// keys are random per agent, so nobody can make two targets collide on purpose.
    target: u64,
}

/// The output fields that name what an alert is about, beyond who did it: a different value
/// is a different target and never shares a window.
fn target_field(name: &str) -> bool {
    (name.starts_with("fd.") && !matches!(name, "fd.num" | "fd.cport" | "fd.lport"))
        || name.starts_with("evt.arg")
        || name.starts_with("evt.rawarg")
        || matches!(
            name,
            "proc.cmdline" | "proc.exepath" | "proc.args" | "proc.name"
        )
}

#[derive(Debug)]
struct Window {
    start_ns: u64,
    passed: u32,
    suppressed: u64,
    /// The last suppressed alert, the template of the summary.
    last: Option<Alert>,
    limit: Limit,
}

/// Collapses repeated alerts. Time is the alerts' own (wall-clock nanoseconds), so a replay
/// behaves like the live run.
#[derive(Debug, Default)]
pub struct FloodControl {
    cfg: FloodConfig,
    windows: HashMap<Key, Window>,
    hasher: RandomState,
    /// Alerts suppressed in total (each also reported in a summary).
    pub suppressed_total: u64,
    /// Windows closed early to keep the key space within `max_keys`.
    pub evictions: u64,
}

/// What a summary alert's output says, and its `output_fields` key for the count.
pub const SUPPRESSED_FIELD: &str = "osprey.suppressed";

impl FloodControl {
    pub fn new(cfg: FloodConfig) -> Self {
        Self {
            cfg,
            ..Default::default()
        }
    }

    fn limit(&self, a: &Alert) -> Limit {
        self.cfg
            .per_rule
            .get(&a.rule)
            .or_else(|| {
                self.cfg
                    .per_priority
                    .iter()
                    .find(|(p, _)| Priority::parse(p) == Some(a.priority))
                    .map(|(_, l)| l)
            })
            .copied()
            .unwrap_or(self.cfg.default)
    }

    /// The key that makes two alerts "the same": the rule, the container, the process and
    /// the target fields of the output.
    fn key(&self, a: &Alert) -> Key {
        let container = a
            .event
            .container
            .as_ref()
            .map(|c| c.id.clone())
            .or_else(|| {
                a.output_fields
                    .get("container.id")
                    .and_then(|v| v.as_str())
                    .map(str::to_string)
            })
            .unwrap_or_default();
        let mut h = self.hasher.build_hasher();
        // serde_json's map is ordered by name, so the same fields hash the same way.
        for (name, value) in &a.output_fields {
            if target_field(name) {
                name.hash(&mut h);
                value.to_string().hash(&mut h);
            }
        }
        Key {
            rule: a.rule.clone(),
            container,
            pid: a.event.pid,
            target: h.finish(),
        }
    }

    /// Closes the oldest window to make room for a new key; its summary goes to `out`.
    fn evict_oldest(&mut self, out: &mut Vec<Alert>) {
        let Some(key) = self
            .windows
            .iter()
            .min_by_key(|(_, w)| w.start_ns)
            .map(|(k, _)| k.clone())
        else {
            return;
        };
        if let Some(mut w) = self.windows.remove(&key) {
            out.extend(summary(&mut w));
        }
        self.evictions += 1;
    }

    /// Passes `a` through: returns the alerts to emit now (the alert itself, or nothing when
    /// it is suppressed, preceded by the summary of a window that just closed).
    pub fn admit(&mut self, a: Alert) -> Vec<Alert> {
        if !self.cfg.enabled {
            return vec![a];
        }
        let mut out = Vec::new();
        let now = a.time;
        let limit = self.limit(&a);
        let key = self.key(&a);
        if !self.windows.contains_key(&key) && self.windows.len() >= self.cfg.max_keys.max(1) {
            self.evict_oldest(&mut out);
        }
        let w = self.windows.entry(key).or_insert(Window {
            start_ns: now,
            passed: 0,
            suppressed: 0,
            last: None,
            limit,
        });
        if now.saturating_sub(w.start_ns) >= w.limit.window_ms * 1_000_000 {
            if let Some(s) = summary(w) {
                out.push(s);
            }
            *w = Window {
                start_ns: now,
                passed: 0,
                suppressed: 0,
                last: None,
                limit,
            };
        }
        if w.passed < w.limit.burst {
            w.passed += 1;
            out.push(a);
        } else {
            w.suppressed += 1;
            self.suppressed_total += 1;
            w.last = Some(a);
        }
        out
    }

    /// Summaries of every window that closed by wall-clock time `now_ns`; call periodically
    /// so a flood that stopped is still reported.
    pub fn flush(&mut self, now_ns: u64) -> Vec<Alert> {
        let mut out = Vec::new();
        self.windows.retain(|_, w| {
            if now_ns.saturating_sub(w.start_ns) < w.limit.window_ms * 1_000_000 {
                return true;
            }
            out.extend(summary(w));
            false
        });
        out
    }
}

fn summary(w: &mut Window) -> Option<Alert> {
    if w.suppressed == 0 {
        return None;
    }
    let mut s = w.last.take()?;
    s.output = format!(
        "{} ({} similar alerts suppressed in the last {} ms)",
        s.output, w.suppressed, w.limit.window_ms
    );
    s.output_fields
        .insert(SUPPRESSED_FIELD.into(), w.suppressed.into());
    w.suppressed = 0;
    Some(s)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::output::AlertEvent;

    fn alert(rule: &str, pid: u32, time: u64) -> Alert {
        Alert {
            time,
            rule: rule.into(),
            priority: Priority::Warning,
            source: "syscall".into(),
            tags: vec![],
            output: "x".into(),
            output_fields: Default::default(),
            hostname: "h".into(),
            event: AlertEvent {
                evt_type: "openat".into(),
                evt_num: 1,
                ts: time,
                pid,
                tid: pid,
                comm: "c".into(),
                container: None,
            },
        }
    }

    #[test]
    fn a_thousand_become_a_burst_and_one_exact_summary() {
        let mut f = FloodControl::new(FloodConfig::default());
        let mut out = Vec::new();
        for i in 0..1000u64 {
            out.extend(f.admit(alert("R", 7, 1_000_000_000 + i * 1_000_000)));
        }
        assert_eq!(out.len(), 5, "the burst");
        let later = f.flush(1_000_000_000 + 10_000_000_000);
        assert_eq!(later.len(), 1);
        assert_eq!(later[0].output_fields[SUPPRESSED_FIELD], 995);
        assert!(later[0].output.contains("995 similar alerts suppressed"));
        assert_eq!(f.suppressed_total, 995);
        assert!(f.flush(u64::MAX).is_empty(), "reported once");
    }

    #[test]
    fn different_processes_and_rules_are_separate() {
        let mut f = FloodControl::new(FloodConfig::default());
        let mut n = 0;
        for i in 0..10u64 {
            n += f.admit(alert("R", 1, i)).len();
            n += f.admit(alert("R", 2, i)).len();
            n += f.admit(alert("S", 1, i)).len();
        }
        assert_eq!(n, 15);
    }

    #[test]
    fn per_rule_limits_and_off_switch() {
        let mut cfg = FloodConfig::default();
        cfg.per_rule.insert(
            "Loud".into(),
            Limit {
                burst: 1,
                window_ms: 1,
            },
        );
        let mut f = FloodControl::new(cfg.clone());
        assert_eq!(f.admit(alert("Loud", 1, 0)).len(), 1);
        assert_eq!(f.admit(alert("Loud", 1, 10)).len(), 0);
        // The next window opens with the summary of the previous one, then the alert.
        let next = f.admit(alert("Loud", 1, 2_000_000));
        assert_eq!(next.len(), 2);
        assert_eq!(next[0].output_fields[SUPPRESSED_FIELD], 1);
        cfg.enabled = false;
        let mut off = FloodControl::new(cfg);
        for i in 0..100 {
            assert_eq!(off.admit(alert("Loud", 1, i)).len(), 1);
        }
    }

    fn with_target(rule: &str, pid: u32, time: u64, file: &str) -> Alert {
        let mut a = alert(rule, pid, time);
        a.output_fields.insert("fd.name".into(), file.into());
        a.output_fields.insert("evt.time".into(), time.into());
        a.output_fields
            .insert("container.id".into(), "0123456789ab".into());
        a
    }

    #[test]
    fn decoys_do_not_hide_another_process_or_another_target() {
        let mut f = FloodControl::new(FloodConfig::default());
        // Five decoys fill the burst of (rule, process 7, /tmp/decoy), a sixth is suppressed.
        for i in 0..6u64 {
            let out = f.admit(with_target("R", 7, 1_000 + i, "/tmp/decoy"));
            assert_eq!(out.len(), usize::from(i < 5), "decoy {i}");
        }
        // The real read: same rule and container, another target.
        let real = f.admit(with_target("R", 7, 2_000, "/etc/shadow"));
        assert_eq!(real.len(), 1, "another target alerts on its own");
        assert_eq!(real[0].output_fields["fd.name"], "/etc/shadow");
        // The decoys' target from another process of the same container.
        let other = f.admit(with_target("R", 8, 2_001, "/tmp/decoy"));
        assert_eq!(other.len(), 1, "another process alerts on its own");
        // Only the decoy window has a summary, and it counts the decoy alone.
        let s = f.flush(u64::MAX);
        assert_eq!(s.len(), 1);
        assert_eq!(s[0].output_fields["fd.name"], "/tmp/decoy");
        assert_eq!(s[0].event.pid, 7);
        assert_eq!(s[0].output_fields[SUPPRESSED_FIELD], 1);
    }

    #[test]
    fn times_and_fd_numbers_do_not_make_a_new_target() {
        let mut f = FloodControl::new(FloodConfig::default());
        let mut n = 0;
        for i in 0..20u64 {
            let mut a = with_target("R", 7, 1_000 + i, "/etc/shadow");
            a.output_fields.insert("fd.num".into(), (i as i64).into());
            n += f.admit(a).len();
        }
        assert_eq!(n, 5);
        assert_eq!(f.suppressed_total, 15);
    }

    #[test]
    fn the_key_space_is_bounded_and_evictions_lose_no_count() {
        let cfg = FloodConfig {
            max_keys: 4,
            ..FloodConfig::default()
        };
        let mut f = FloodControl::new(cfg);
        let mut out = Vec::new();
        // Process 1 floods its own window, then 10 other targets push it out.
        for i in 0..8u64 {
            out.extend(f.admit(with_target("R", 1, i, "/a")));
        }
        assert_eq!(out.len(), 5);
        for t in 0..10u64 {
            out.extend(f.admit(with_target("R", 2, 100 + t, &format!("/t{t}"))));
        }
        assert!(f.windows.len() <= 4);
        assert_eq!(f.evictions, 7, "11 keys through 4 slots");
        let summary: Vec<_> = out
            .iter()
            .filter(|a| a.output_fields.contains_key(SUPPRESSED_FIELD))
            .collect();
        assert_eq!(summary.len(), 1, "the evicted window's summary went out");
        assert_eq!(summary[0].output_fields[SUPPRESSED_FIELD], 3);
        assert_eq!(out.len(), 5 + 1 + 10);
    }
}
