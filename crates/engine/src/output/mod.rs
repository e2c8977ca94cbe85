//! Alerts and their rendering: Falco's text line and Falco's JSON (falco.md §3), so that
//! Falcosidekick and other tools built for Falco read Osprey's output unchanged.

mod fields;
mod format;

use std::sync::Arc;

pub use fields::OutputFields;
pub use format::{Format, FormatError};
use serde::Serialize;

use osprey_model::{Priority, time};

/// What triggered an alert, beyond the output fields.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct AlertEvent {
    pub evt_type: String,
    pub evt_num: u64,
    /// Boot-time nanoseconds.
    pub ts: u64,
    pub pid: u32,
    pub tid: u32,
    pub comm: String,
    /// The container of the process (`host` outside containers), whatever the output shows:
    /// the gRPC stream's `container` and `pod` and its filters read it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub container: Option<Arc<osprey_model::ContainerInfo>>,
}

/// One rule match. What every alert of a rule repeats (its name, source and tags, the
/// hostname) is shared, not copied per alert.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Alert {
    /// Wall-clock nanoseconds since the epoch.
    pub time: u64,
    pub rule: Arc<str>,
    pub priority: Priority,
    pub source: Arc<str>,
    pub tags: Arc<[String]>,
    /// The rule's output with fields interpolated (no time or priority prefix).
    pub output: String,
    /// Every field the output shows, typed (numbers stay numbers, unset is null), plus
    /// `evt.time`.
    pub output_fields: OutputFields,
    pub hostname: Arc<str>,
    pub event: AlertEvent,
}

/// Control characters and the like escaped, as Falco sanitizes text output.
fn sanitize(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out
}

/// Falco's text line: `HH:MM:SS.nnnnnnnnn: Priority output` (UTC).
pub fn format_text(a: &Alert) -> String {
    format!(
        "{}: {} {}",
        time::format_time(a.time),
        a.priority,
        sanitize(&a.output)
    )
}

/// Falco's JSON alert: `hostname, output, output_fields, priority, rule, source, tags, time`.
pub fn to_json(a: &Alert) -> serde_json::Value {
    serde_json::json!({
        "hostname": a.hostname,
        "output": format_text(a),
        "output_fields": a.output_fields,
        "priority": a.priority.as_str(),
        "rule": a.rule,
        "source": a.source,
        "tags": a.tags,
        "time": time::format_iso8601(a.time),
    })
}

/// [`to_json`] as one line.
pub fn format_json(a: &Alert) -> String {
    to_json(a).to_string()
}
