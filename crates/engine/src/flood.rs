//! Flood control: the same rule firing for the same process (or container) over and over is
//! collapsed. The first `burst` alerts of a window go out; the rest are counted, and when the
//! window closes one summary alert carries the exact number suppressed. Nothing is dropped
//! without a count.

use std::collections::HashMap;

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
        }
    }
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
    windows: HashMap<(String, String), Window>,
    /// Alerts suppressed in total (each also reported in a summary).
    pub suppressed_total: u64,
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

    /// The key that makes two alerts "the same": the rule and the container, or the process
    /// outside containers.
    fn key(a: &Alert) -> (String, String) {
        let container = a
            .output_fields
            .get("container.id")
            .and_then(|v| v.as_str())
            .filter(|c| *c != "host");
        let who = match container {
            Some(c) => format!("container:{c}"),
            None => format!("pid:{}", a.event.pid),
        };
        (a.rule.clone(), who)
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
        let w = self.windows.entry(Self::key(&a)).or_insert(Window {
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
}
