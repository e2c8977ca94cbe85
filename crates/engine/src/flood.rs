//! Flood control: the same rule firing for the same process on the same target over and over
//! is collapsed. The first `burst` alerts of a window go out; the rest are counted, and when the
//! window closes one summary alert carries the exact number suppressed. Nothing is dropped
//! without a count.
//!
//! "The same" is keyed so that an attacker cannot hide one alert behind others: the rule, the
//! container, the process (pid), and the target the rule's output shows (`fd.*` but the fd
//! number and the client and local ports, `evt.arg*`, `evt.rawarg*`, `proc.name`,
//! `proc.cmdline`, `proc.exepath`, `proc.args`). Five decoy reads of one file from
//! one process fill only that process's and that file's window; a read of another file, or by
//! another process, alerts on its own. The key space is bounded (`max_keys`): past it the
//! oldest window is closed early, its summary goes out, and the eviction is counted.
//!
//! A suppressed alert is never built. The engine keys a match from its rule, its event and the
//! output's target fields alone ([`KeyRef`], [`TargetHasher`]) and hands over a way to render
//! it ([`FloodControl::admit_with`]): an alert is rendered when it goes out, and once per window
//! when it is the first one suppressed. That first suppressed alert is the summary's template,
//! whole: its time, its output and its fields are those of one real event, the start of what
//! was held back (not the last, which would take a render per suppressed match to know). Later
//! suppressed matches are only counted. [`FloodControl::admit`] does the same for an alert
//! already built, keyed identically.

use std::{
    collections::{BTreeMap, HashMap, hash_map::DefaultHasher},
    hash::{BuildHasher, Hash, Hasher, RandomState},
    io,
};

use hashbrown::Equivalent;
use serde::Deserialize;

use super::Alert;
use crate::fields::Val;
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

/// What makes two alerts "the same" for flood control: a window's own copy of a [`KeyRef`].
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) struct Key {
    rule: String,
    container: String,
    pid: u32,
    target: u64,
}

impl Key {
    pub(crate) fn as_ref(&self) -> KeyRef<'_> {
        KeyRef {
            rule: &self.rule,
            container: &self.container,
            pid: self.pid,
            target: self.target,
        }
    }
}

/// The key of one match, borrowed from the rule and the event, so that finding its window
/// copies nothing. It hashes as [`Key`] does (the same fields in the same order).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct KeyRef<'a> {
    pub rule: &'a str,
    /// The container's id; empty on the host.
    pub container: &'a str,
    /// The thread group id (`proc.pid`).
    pub pid: u32,
    /// The target fields the output shows, through [`FloodControl::target_hasher`]: a keyed
    /// hash, random per agent, so nobody can make two targets collide on purpose.
    pub target: u64,
}

impl Equivalent<Key> for KeyRef<'_> {
    fn equivalent(&self, key: &Key) -> bool {
        *self == key.as_ref()
    }
}

impl From<&KeyRef<'_>> for Key {
    fn from(k: &KeyRef<'_>) -> Self {
        Key {
            rule: k.rule.to_string(),
            container: k.container.to_string(),
            pid: k.pid,
            target: k.target,
        }
    }
}

/// The output fields that name what an alert is about, beyond who did it: a different value
/// is a different target and never shares a window.
pub(crate) fn target_field(name: &str) -> bool {
    (name.starts_with("fd.") && !matches!(name, "fd.num" | "fd.cport" | "fd.lport"))
        || name.starts_with("evt.arg")
        || name.starts_with("evt.rawarg")
        || matches!(
            name,
            "proc.cmdline" | "proc.exepath" | "proc.args" | "proc.name"
        )
}

/// The target part of a key: feed it every target field of the output (see [`target_field`])
/// in name order, as `output_fields` would hold them.
pub struct TargetHasher(DefaultHasher);

impl TargetHasher {
    /// One field of a rendered alert: its name, then its value as JSON text.
    pub fn field(&mut self, name: &str, value: &serde_json::Value) {
        name.hash(&mut self.0);
        self.json(value);
    }

    /// One field of a match that was not rendered: hashes as [`Self::field`] of the value
    /// `output_fields` would show ([`Val::to_json`], null when unset), without building it.
    pub(crate) fn field_val(&mut self, name: &str, value: Option<&Val<'_>>) {
        name.hash(&mut self.0);
        match value {
            // What `Val::to_json` makes of text, borrowed instead of copied.
            Some(Val::Str(s)) => self.json(&**s),
            Some(v) => self.json(&v.to_json()),
            None => self.json(&serde_json::Value::Null),
        }
    }

    /// The JSON text, then an end mark so that two fields never read as one. A string and
    /// a JSON string value serialize through the same call, so they hash alike.
    fn json(&mut self, value: &(impl serde::Serialize + ?Sized)) {
        // Neither serializing a string or a JSON value nor writing to a hasher can fail.
        let _ = serde_json::to_writer(HashWriter(&mut self.0), value);
        self.0.write_u8(0xff);
    }

    pub fn finish(&self) -> u64 {
        self.0.finish()
    }
}

/// Writes into a hasher: JSON text is hashed as it is produced, never held.
struct HashWriter<'h>(&'h mut DefaultHasher);

impl io::Write for HashWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.write(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[derive(Debug)]
struct Window {
    start_ns: u64,
    /// Tells windows that started in the same nanosecond apart in [`FloodControl::order`].
    seq: u64,
    passed: u32,
    suppressed: u64,
    /// The first suppressed alert of the window, the template of the summary.
    template: Option<Alert>,
    limit: Limit,
}

impl Window {
    fn open(start_ns: u64, seq: u64, limit: Limit) -> Self {
        Self {
            start_ns,
            seq,
            passed: 0,
            suppressed: 0,
            template: None,
            limit,
        }
    }

    /// One match at `now_ns`: first closes the window if its time is up (its summary goes to
    /// `out` and a new one opens with `limit`), then lets the alert out or counts it.
    /// Returns whether it was suppressed.
    fn admit(
        &mut self,
        now_ns: u64,
        limit: Limit,
        render: impl FnOnce() -> Alert,
        out: &mut Vec<Alert>,
    ) -> bool {
        if now_ns.saturating_sub(self.start_ns) >= self.limit.window_ms * 1_000_000 {
            out.extend(summary(self));
            *self = Window::open(now_ns, self.seq, limit);
        }
        if self.passed < self.limit.burst {
            self.passed += 1;
            out.push(render());
            return false;
        }
        self.suppressed += 1;
        if self.template.is_none() {
            self.template = Some(render());
        }
        true
    }
}

/// Collapses repeated alerts. Time is the alerts' own (wall-clock nanoseconds), so a replay
/// behaves like the live run.
#[derive(Debug, Default)]
pub struct FloodControl {
    cfg: FloodConfig,
    windows: hashbrown::HashMap<Key, Window, RandomState>,
    /// The open windows by when they started (and `seq`), oldest first: eviction takes the
    /// first instead of scanning every window, which an attacker making a new target per
    /// alert would otherwise make each alert pay for (`max_keys` windows).
    order: BTreeMap<(u64, u64), Key>,
    next_seq: u64,
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

    /// Off, every alert goes out and keys need not be computed.
    pub fn enabled(&self) -> bool {
        self.cfg.enabled
    }

    /// The limits of a rule's alerts: its own, else its priority's, else the default.
    pub fn limit(&self, rule: &str, priority: Priority) -> Limit {
        self.cfg
            .per_rule
            .get(rule)
            .or_else(|| {
                self.cfg
                    .per_priority
                    .iter()
                    .find(|(p, _)| Priority::parse(p) == Some(priority))
                    .map(|(_, l)| l)
            })
            .copied()
            .unwrap_or(self.cfg.default)
    }

    /// A hasher for the target part of one key.
    pub fn target_hasher(&self) -> TargetHasher {
        TargetHasher(self.hasher.build_hasher())
    }

    /// The key of a rendered alert: the rule, the container, the process and the target
    /// fields of the output.
    pub(crate) fn key(&self, a: &Alert) -> Key {
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
        // In name order, as the engine hashes them: the order `output_fields` keeps.
        let targets = a
            .output_fields
            .iter()
            .filter(|(name, _)| target_field(name));
        let mut h = self.target_hasher();
        for (name, value) in targets {
            h.field(name, value);
        }
        Key {
            rule: a.rule.to_string(),
            container,
            pid: a.event.pid,
            target: h.finish(),
        }
    }

    /// Closes the oldest window to make room for a new key; its summary goes to `out`.
    fn evict_oldest(&mut self, out: &mut Vec<Alert>) {
        let Some((_, key)) = self.order.pop_first() else {
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
        let mut out = Vec::new();
        if !self.cfg.enabled {
            out.push(a);
            return out;
        }
        let key = self.key(&a);
        let (now, limit) = (a.time, self.limit(&a.rule, a.priority));
        self.admit_with(key.as_ref(), now, limit, || a, &mut out);
        out
    }

    /// [`Self::admit`] for a match not rendered yet, known by its key, its time (wall-clock
    /// nanoseconds) and its rule's [`Self::limit`]: pushes to `out` the summary of a window
    /// that just closed, then the alert if it goes out. `render` runs only when the alert goes
    /// out or becomes its window's summary template.
    pub fn admit_with(
        &mut self,
        key: KeyRef<'_>,
        now_ns: u64,
        limit: Limit,
        render: impl FnOnce() -> Alert,
        out: &mut Vec<Alert>,
    ) {
        if !self.cfg.enabled {
            out.push(render());
            return;
        }
        let suppressed = match self.windows.get_mut(&key) {
            Some(w) => {
                let started = (w.start_ns, w.seq);
                let suppressed = w.admit(now_ns, limit, render, out);
                // A window whose time was up opened again now: it is the newest.
                if w.start_ns != started.0
                    && let Some(k) = self.order.remove(&started)
                {
                    self.order.insert((w.start_ns, w.seq), k);
                }
                suppressed
            }
            None => {
                if self.windows.len() >= self.cfg.max_keys.max(1) {
                    self.evict_oldest(out);
                }
                let seq = self.next_seq;
                self.next_seq += 1;
                self.order.insert((now_ns, seq), Key::from(&key));
                let w = self
                    .windows
                    .entry(Key::from(&key))
                    .or_insert(Window::open(now_ns, seq, limit));
                w.admit(now_ns, limit, render, out)
            }
        };
        if suppressed {
            self.suppressed_total += 1;
        }
    }

    /// Summaries of every window that closed by wall-clock time `now_ns`; call periodically
    /// so a flood that stopped is still reported.
    pub fn flush(&mut self, now_ns: u64) -> Vec<Alert> {
        let mut out = Vec::new();
        let order = &mut self.order;
        self.windows.retain(|_, w| {
            if now_ns.saturating_sub(w.start_ns) < w.limit.window_ms * 1_000_000 {
                return true;
            }
            out.extend(summary(w));
            order.remove(&(w.start_ns, w.seq));
            false
        });
        out
    }
}

fn summary(w: &mut Window) -> Option<Alert> {
    if w.suppressed == 0 {
        return None;
    }
    let mut s = w.template.take()?;
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
    use std::sync::Arc;

    use crate::output::AlertEvent;

    fn alert(rule: &str, pid: u32, time: u64) -> Alert {
        Alert {
            time,
            rule: rule.into(),
            priority: Priority::Warning,
            source: "syscall".into(),
            tags: Arc::new([]),
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
        assert_eq!(
            later[0].time,
            1_000_000_000 + 5 * 1_000_000,
            "the summary is the first suppressed alert"
        );
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

    #[test]
    fn only_what_goes_out_and_one_template_per_window_are_rendered() {
        let mut f = FloodControl::new(FloodConfig::default());
        let mut h = f.target_hasher();
        h.field("fd.name", &"/etc/shadow".into());
        let key = KeyRef {
            rule: "R",
            container: "",
            pid: 7,
            target: h.finish(),
        };
        let limit = f.limit("R", Priority::Warning);
        let (mut out, mut rendered) = (Vec::new(), 0);
        for i in 0..1000u64 {
            let render = || {
                rendered += 1;
                alert("R", 7, 1_000 + i)
            };
            f.admit_with(key, 1_000 + i, limit, render, &mut out);
        }
        assert_eq!(out.len(), 5, "the burst");
        assert_eq!(rendered, 6, "the burst and the summary's template");
        let s = f.flush(u64::MAX);
        assert_eq!(s.len(), 1);
        assert_eq!(s[0].output_fields[SUPPRESSED_FIELD], 995);
        assert_eq!(s[0].time, 1_005, "the first suppressed match");
        // The alert rendered, as `admit` sees it, has the key the parts made.
        let mut a = alert("R", 7, 20_000_000_000);
        a.output_fields
            .insert("fd.name".into(), "/etc/shadow".into());
        assert_eq!(f.key(&a).as_ref(), key);
    }

    #[test]
    fn a_borrowed_key_hashes_as_the_window_it_finds() {
        // Were they to differ, every match would miss its window and take the path of a new
        // key, evicting a window whenever the table is full.
        let key = Key {
            rule: "R".into(),
            container: "0123456789ab".into(),
            pid: 7,
            target: 42,
        };
        let s = RandomState::new();
        assert_eq!(s.hash_one(&key), s.hash_one(key.as_ref()));
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

    impl FloodControl {
        /// The eviction order holds every open window once, at its start.
        fn check_order(&self) {
            assert_eq!(self.order.len(), self.windows.len());
            for ((start, seq), key) in &self.order {
                let w = &self.windows[key];
                assert_eq!((w.start_ns, w.seq), (*start, *seq), "{key:?}");
            }
        }
    }

    /// Windows that reopen, close by time and are evicted keep the eviction order whole, and
    /// eviction always takes the window that started first.
    #[test]
    fn eviction_takes_the_oldest_window_through_reopens_and_flushes() {
        let cfg = FloodConfig {
            max_keys: 3,
            default: Limit {
                burst: 1,
                window_ms: 10,
            },
            ..FloodConfig::default()
        };
        let mut f = FloodControl::new(cfg);
        let ms = 1_000_000;
        // Three windows: /a at 0, /b at 1 ms, /c at 2 ms.
        for (t, file) in [(0, "/a"), (ms, "/b"), (2 * ms, "/c")] {
            f.admit(with_target("R", 1, t, file));
        }
        f.check_order();
        // /a's window is up at 11 ms and opens again: now the newest.
        f.admit(with_target("R", 1, 11 * ms, "/a"));
        f.check_order();
        // A new target evicts the oldest, /b (1 ms), not /a.
        f.admit(with_target("R", 1, 12 * ms, "/d"));
        f.check_order();
        let open: Vec<_> = f.order.values().map(|k| k.target).collect();
        let target = |file: &str| f.key(&with_target("R", 1, 0, file)).target;
        assert_eq!(open, [target("/c"), target("/a"), target("/d")]);
        // At 20 ms /c's window (2 ms) is over; the others are not.
        f.flush(20 * ms);
        f.check_order();
        assert_eq!(f.windows.len(), 2);
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
        f.check_order();
        let summary: Vec<_> = out
            .iter()
            .filter(|a| a.output_fields.contains_key(SUPPRESSED_FIELD))
            .collect();
        assert_eq!(summary.len(), 1, "the evicted window's summary went out");
        assert_eq!(summary[0].output_fields[SUPPRESSED_FIELD], 3);
        assert_eq!(out.len(), 5 + 1 + 10);
    }
}
