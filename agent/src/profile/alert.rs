//! Profile verdicts → alerts, through the same outputs as rule alerts.
//!
//! Rule name `Syscall profile <name>`; priority from the action: `kill` → Critical (the agent
//! killed a process), `alert` → Warning, `log` → Notice. Rate limited per (profile, process,
//! syscall): the first [`RateLimit::burst`] verdicts of each window become alerts, the rest are
//! counted and reported in one summary alert when the window closes. The kernel still kills
//! every time; only the reporting is limited.

use std::collections::HashMap;

use serde_json::{Value, json};

use osprey_engine::{
    flood::SUPPRESSED_FIELD,
    output::{Alert, AlertEvent, OutputFields},
};
use osprey_model::{
    Action, ContainerInfo, Priority,
    event::{Enriched, EventKind, ProfileVerdict},
};

/// How many alerts per (profile, process, syscall) and window.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RateLimit {
    pub burst: u32,
    pub window_ns: u64,
}

impl Default for RateLimit {
    fn default() -> Self {
        Self {
            burst: 5,
            window_ns: 1_000_000_000,
        }
    }
}

pub fn priority(a: Action) -> Priority {
    match a {
        Action::Kill => Priority::Critical,
        Action::Alert => Priority::Warning,
        Action::Log | Action::Allow => Priority::Notice,
    }
}

#[derive(Debug)]
struct Window {
    start: u64,
    passed: u32,
    suppressed: u64,
    last: Option<Alert>,
}

/// Turns profile verdict events into alerts, rate limited.
#[derive(Debug)]
pub struct ProfileAlerts {
    limit: RateLimit,
    hostname: String,
    windows: HashMap<(String, u32, u32), Window>,
    /// Verdicts not turned into their own alert (each counted in a summary).
    pub suppressed_total: u64,
}

impl ProfileAlerts {
    pub fn new(limit: RateLimit, hostname: &str) -> Self {
        Self {
            limit,
            hostname: hostname.into(),
            windows: HashMap::new(),
            suppressed_total: 0,
        }
    }

    /// The alert for a profile verdict, unless the rate limit holds it back. Other events
    /// give nothing.
    pub fn admit(&mut self, e: &Enriched, container: Option<&ContainerInfo>) -> Option<Alert> {
        let EventKind::Profile(v) = &e.event.kind else {
            return None;
        };
        let alert = to_alert(e, v, container, &self.hostname);
        let now = e.event.time;
        let w = self
            .windows
            .entry((v.profile.clone(), e.event.tgid, v.nr))
            .or_insert(Window {
                start: now,
                passed: 0,
                suppressed: 0,
                last: None,
            });
        if now.saturating_sub(w.start) >= self.limit.window_ns && w.suppressed == 0 {
            w.start = now;
            w.passed = 0;
        }
        if w.passed < self.limit.burst {
            w.passed += 1;
            Some(alert)
        } else {
            w.suppressed += 1;
            w.last = Some(alert);
            self.suppressed_total += 1;
            None
        }
    }

    /// Summaries of the windows that closed by `now` (wall-clock ns) with verdicts held back;
    /// forgets idle windows.
    pub fn flush(&mut self, now: u64) -> Vec<Alert> {
        let mut out = Vec::new();
        let window = self.limit.window_ns;
        self.windows.retain(|_, w| {
            if now.saturating_sub(w.start) < window {
                return true;
            }
            if let Some(mut a) = w.last.take() {
                a.output = format!(
                    "{} ({} more like it in {} ms were not reported one by one)",
                    a.output,
                    w.suppressed,
                    window / 1_000_000
                );
                a.output_fields
                    .insert(SUPPRESSED_FIELD.into(), Value::from(w.suppressed));
                a.time = now;
                out.push(a);
            }
            false
        });
        out
    }
}

fn opt(v: Option<&str>) -> Value {
    v.map_or(Value::Null, |s| Value::String(s.into()))
}

/// The alert for one verdict.
pub fn to_alert(
    e: &Enriched,
    v: &ProfileVerdict,
    container: Option<&ContainerInfo>,
    hostname: &str,
) -> Alert {
    let ev = &e.event;
    let p = e.process.as_deref();
    let name = p.map_or(ev.comm.as_str(), |p| p.comm.as_str());
    let exe = p.map(|p| p.exe.as_str());
    let cmdline = p.map(|p| p.cmdline());
    let container = container.or(e.container.as_deref());
    let cid = container.map(|c| c.id.as_str());
    let image = container.and_then(|c| c.image.as_deref());
    let args = v
        .args
        .iter()
        .map(|a| format!("{a:#x}"))
        .collect::<Vec<_>>()
        .join(",");
    let taken = match v.action_taken {
        osprey_model::event::ActionTaken::Killed => "killed (SIGKILL)",
        osprey_model::event::ActionTaken::KillFailed => "kill failed",
        osprey_model::event::ActionTaken::Reported => "reported",
    };
    let output = format!(
        "Syscall profile {profile} judged {sc}{via}: verdict={verdict} action={taken} (proc.name={name} proc.exepath={exe} proc.cmdline={cmd} proc.pid={pid} container.id={cid} container.image={image} args=[{args}])",
        profile = v.profile,
        sc = v.name,
        via = if v.io_uring {
            " (an io_uring request)"
        } else {
            ""
        },
        verdict = v.verdict,
        exe = exe.unwrap_or("<NA>"),
        cmd = cmdline.as_deref().unwrap_or("<NA>"),
        pid = ev.tgid,
        cid = cid.unwrap_or("<NA>"),
        image = image.unwrap_or("<NA>"),
    );
    let mut f = OutputFields::default();
    f.insert("profile.name".into(), json!(v.profile));
    f.insert("profile.verdict".into(), json!(v.verdict.as_str()));
    f.insert(
        "profile.action_taken".into(),
        json!(v.action_taken.as_str()),
    );
    f.insert("evt.type".into(), json!(v.name));
    f.insert("evt.is_io_uring".into(), json!(v.io_uring));
    f.insert("syscall.nr".into(), json!(v.nr));
    f.insert("syscall.args".into(), json!(v.args));
    f.insert("proc.name".into(), json!(name));
    f.insert("proc.exepath".into(), opt(exe));
    f.insert("proc.cmdline".into(), opt(cmdline.as_deref()));
    f.insert("proc.pid".into(), json!(ev.tgid));
    f.insert("thread.tid".into(), json!(ev.tid));
    f.insert("user.uid".into(), json!(ev.euid));
    f.insert("container.id".into(), opt(cid));
    f.insert(
        "container.name".into(),
        opt(container.and_then(|c| c.name.as_deref())),
    );
    f.insert("container.image".into(), opt(image));
    f.insert(
        "k8s.ns.name".into(),
        opt(container.and_then(|c| c.k8s_ns_name.as_deref())),
    );
    f.insert(
        "k8s.pod.name".into(),
        opt(container.and_then(|c| c.k8s_pod_name.as_deref())),
    );
    f.insert("evt.time".into(), json!(ev.time));
    Alert {
        time: ev.time,
        rule: format!("Syscall profile {}", v.profile).into(),
        priority: priority(v.verdict),
        source: "syscall".into(),
        tags: vec![
            "osprey".into(),
            "profile".into(),
            format!("profile.{}", v.verdict),
        ]
        .into(),
        output,
        output_fields: f,
        hostname: hostname.into(),
        event: AlertEvent {
            evt_type: v.name.to_string(),
            evt_num: 0,
            ts: ev.ts,
            pid: ev.tgid,
            tid: ev.tid,
            comm: ev.comm.clone(),
            container: container.map(|c| std::sync::Arc::new(c.clone())),
        },
    }
}
