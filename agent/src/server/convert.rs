//! Proto ⇄ domain conversions, at the gRPC edge only.

use serde_json::{Map, Value, json};

use super::pb::{self, field_value::Kind};
use osprey_engine::output::{Alert, AlertEvent, OutputFields};
use osprey_model::{ContainerInfo, Priority};

use crate::alert::{Gap, GapReason};

pub fn priority_to_pb(p: Priority) -> pb::Priority {
    match p {
        Priority::Emergency => pb::Priority::Emergency,
        Priority::Alert => pb::Priority::Alert,
        Priority::Critical => pb::Priority::Critical,
        Priority::Error => pb::Priority::Error,
        Priority::Warning => pb::Priority::Warning,
        Priority::Notice => pb::Priority::Notice,
        Priority::Informational => pb::Priority::Informational,
        Priority::Debug => pb::Priority::Debug,
    }
}

pub fn priority_from_pb(p: pb::Priority) -> Priority {
    match p {
        pb::Priority::Emergency => Priority::Emergency,
        pb::Priority::Alert => Priority::Alert,
        pb::Priority::Critical => Priority::Critical,
        pb::Priority::Error => Priority::Error,
        pb::Priority::Warning => Priority::Warning,
        pb::Priority::Notice => Priority::Notice,
        pb::Priority::Informational => Priority::Informational,
        pb::Priority::Debug | pb::Priority::Unspecified => Priority::Debug,
    }
}

pub fn field_to_pb(v: &Value) -> pb::FieldValue {
    let kind = match v {
        Value::Null => Kind::NullValue(true),
        Value::Bool(b) => Kind::BoolValue(*b),
        Value::String(s) => Kind::StringValue(s.clone()),
        Value::Number(n) => {
            if let Some(u) = n.as_u64() {
                Kind::UintValue(u)
            } else if let Some(i) = n.as_i64() {
                Kind::IntValue(i)
            } else {
                Kind::DoubleValue(n.as_f64().unwrap_or_default())
            }
        }
        Value::Array(_) | Value::Object(_) => Kind::JsonValue(v.to_string()),
    };
    pb::FieldValue { kind: Some(kind) }
}

pub fn field_from_pb(v: &pb::FieldValue) -> Value {
    match &v.kind {
        None | Some(Kind::NullValue(_)) => Value::Null,
        Some(Kind::BoolValue(b)) => Value::Bool(*b),
        Some(Kind::StringValue(s)) => Value::String(s.clone()),
        Some(Kind::UintValue(u)) => json!(u),
        Some(Kind::IntValue(i)) => json!(i),
        Some(Kind::DoubleValue(d)) => json!(d),
        Some(Kind::JsonValue(s)) => serde_json::from_str(s).unwrap_or(Value::String(s.clone())),
    }
}

fn text(fields: &OutputFields, key: &str) -> String {
    match fields.get(key) {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Null) | None => String::new(),
        Some(v) => v.to_string(),
    }
}

fn number(fields: &OutputFields, key: &str) -> Option<u32> {
    match fields.get(key)? {
        Value::Number(n) => n.as_u64().and_then(|n| u32::try_from(n).ok()),
        Value::String(s) => s.parse().ok(),
        _ => None,
    }
}

/// The container table's identity as the API's `Container` and `Pod`.
fn identity_to_pb(c: &ContainerInfo) -> (pb::Container, pb::Pod) {
    let s = |v: &Option<String>| v.clone().unwrap_or_default();
    (
        pb::Container {
            id: c.id.clone(),
            name: s(&c.name),
            image: s(&c.image),
            full_id: c.full_id.clone(),
            image_repository: s(&c.image_repository),
            image_tag: s(&c.image_tag),
            image_digest: s(&c.image_digest),
            runtime: s(&c.runtime),
            privileged: c.privileged.unwrap_or(false),
        },
        pb::Pod {
            namespace: s(&c.k8s_ns_name),
            name: s(&c.k8s_pod_name),
            uid: s(&c.k8s_pod_uid),
            labels: c
                .k8s_pod_labels
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
        },
    )
}

/// The API's `Container` and `Pod` back as the container table's identity.
fn identity_from_pb(c: &pb::Container, p: Option<&pb::Pod>) -> ContainerInfo {
    let o = |v: &str| Some(v.to_string()).filter(|v| !v.is_empty());
    let p = p.cloned().unwrap_or_default();
    ContainerInfo {
        id: c.id.clone(),
        full_id: c.full_id.clone(),
        name: o(&c.name),
        image: o(&c.image),
        image_repository: o(&c.image_repository),
        image_tag: o(&c.image_tag),
        image_digest: o(&c.image_digest),
        runtime: o(&c.runtime),
        privileged: (!c.runtime.is_empty() && c.runtime != "host").then_some(c.privileged),
        start_ts: None,
        k8s_ns_name: o(&p.namespace),
        k8s_pod_name: o(&p.name),
        k8s_pod_uid: o(&p.uid),
        k8s_pod_labels: p.labels.into_iter().collect(),
    }
}

/// An engine alert as the API's `Alert`, numbered later by the bus. Process, container and pod
/// come from the output fields the rule shows (Falco's names), the event where they are absent.
pub fn alert_to_pb(a: &Alert, node: &str) -> pb::Alert {
    let f = &a.output_fields;
    let mut ancestors = Vec::new();
    if f.contains_key("proc.pname") || f.contains_key("proc.ppid") {
        ancestors.push(pb::Ancestor {
            pid: number(f, "proc.ppid").unwrap_or_default(),
            name: text(f, "proc.pname"),
            exe_path: text(f, "proc.pexepath"),
            cmdline: text(f, "proc.pcmdline"),
        });
    }
    for level in 2..=8 {
        let name = format!("proc.aname[{level}]");
        if !f.contains_key(&name) {
            break;
        }
        ancestors.push(pb::Ancestor {
            pid: number(f, &format!("proc.apid[{level}]")).unwrap_or_default(),
            name: text(f, &name),
            ..Default::default()
        });
    }
    let process = pb::Process {
        pid: number(f, "proc.pid").unwrap_or(a.event.pid),
        tid: number(f, "thread.tid").unwrap_or(a.event.tid),
        name: Some(text(f, "proc.name"))
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| a.event.comm.clone()),
        exe_path: text(f, "proc.exepath"),
        cmdline: text(f, "proc.cmdline"),
        user: text(f, "user.name"),
        ancestors,
    };
    let (container, pod) = match &a.event.container {
        Some(c) => identity_to_pb(c),
        None => (
            pb::Container {
                id: text(f, "container.id"),
                name: text(f, "container.name"),
                image: text(f, "container.image"),
                full_id: text(f, "container.full_id"),
                image_repository: text(f, "container.image.repository"),
                image_tag: text(f, "container.image.tag"),
                ..Default::default()
            },
            pb::Pod {
                namespace: text(f, "k8s.ns.name"),
                name: text(f, "k8s.pod.name"),
                uid: text(f, "k8s.pod.uid"),
                ..Default::default()
            },
        ),
    };
    pb::Alert {
        id: String::new(),
        node: node.to_string(),
        seq: 0,
        time_unix_nano: a.time,
        rule: a.rule.to_string(),
        priority: priority_to_pb(a.priority) as i32,
        source: a.source.to_string(),
        tags: a.tags.to_vec(),
        output: a.output.clone(),
        output_fields: f.iter().map(|(k, v)| (k.into(), field_to_pb(v))).collect(),
        process: Some(process),
        container: (!container.id.is_empty()).then_some(container),
        pod: (!pod.name.is_empty()).then_some(pod),
        action: pb::Action::Alert as i32,
        hostname: a.hostname.to_string(),
        evt_type: a.event.evt_type.clone(),
        evt_num: a.event.evt_num,
    }
}

/// Back to the engine's alert, for Falco's JSON shape (`output::to_json`).
pub fn alert_from_pb(a: &pb::Alert) -> Alert {
    let p = a.process.clone().unwrap_or_default();
    Alert {
        time: a.time_unix_nano,
        rule: a.rule.as_str().into(),
        priority: priority_from_pb(a.priority()),
        source: a.source.as_str().into(),
        tags: a.tags.as_slice().into(),
        output: a.output.clone(),
        output_fields: a
            .output_fields
            .iter()
            .map(|(k, v)| (k.clone(), field_from_pb(v)))
            .collect(),
        hostname: a.hostname.as_str().into(),
        event: AlertEvent {
            evt_type: a.evt_type.clone(),
            evt_num: a.evt_num,
            ts: 0,
            pid: p.pid,
            tid: p.tid,
            comm: p.name,
            container: a
                .container
                .as_ref()
                .map(|c| std::sync::Arc::new(identity_from_pb(c, a.pod.as_ref()))),
        },
    }
}

pub fn gap_to_pb(g: &Gap) -> pb::Gap {
    pb::Gap {
        node: g.node.clone(),
        from_seq: g.from_seq,
        to_seq: g.to_seq,
        missed: g.missed,
        reason: match g.reason {
            GapReason::SlowSubscriber => pb::gap::Reason::SlowSubscriber,
            GapReason::NotRetained => pb::gap::Reason::NotRetained,
            GapReason::SpoolOverflow => pb::gap::Reason::SpoolOverflow,
            GapReason::NodeRestart => pb::gap::Reason::NodeRestart,
            GapReason::SpoolCorrupt => pb::gap::Reason::SpoolCorrupt,
            GapReason::SpoolWriteFailed => pb::gap::Reason::SpoolWriteFailed,
        } as i32,
    }
}

pub fn gap_from_pb(g: &pb::Gap) -> Gap {
    Gap {
        node: g.node.clone(),
        from_seq: g.from_seq,
        to_seq: g.to_seq,
        missed: g.missed,
        reason: match g.reason() {
            pb::gap::Reason::SlowSubscriber => GapReason::SlowSubscriber,
            pb::gap::Reason::NotRetained => GapReason::NotRetained,
            pb::gap::Reason::NodeRestart => GapReason::NodeRestart,
            pb::gap::Reason::SpoolCorrupt => GapReason::SpoolCorrupt,
            pb::gap::Reason::SpoolWriteFailed => GapReason::SpoolWriteFailed,
            pb::gap::Reason::SpoolOverflow | pb::gap::Reason::Unspecified => {
                GapReason::SpoolOverflow
            }
        },
    }
}

pub fn gap_reason_str(g: &pb::Gap) -> &'static str {
    match g.reason() {
        pb::gap::Reason::SlowSubscriber => "slow_subscriber",
        pb::gap::Reason::NotRetained => "not_retained",
        pb::gap::Reason::SpoolOverflow => "spool_overflow",
        pb::gap::Reason::NodeRestart => "node_restart",
        pb::gap::Reason::SpoolCorrupt => "spool_corrupt",
        pb::gap::Reason::SpoolWriteFailed => "spool_write_failed",
        pb::gap::Reason::Unspecified => "unspecified",
    }
}

/// The API's alert as one JSON object (`osprey tail -o json`).
pub fn alert_json(a: &pb::Alert) -> Value {
    let p = a.process.clone().unwrap_or_default();
    let fields: Map<String, Value> = a
        .output_fields
        .iter()
        .map(|(k, v)| (k.clone(), field_from_pb(v)))
        .collect();
    let mut v = json!({
        "id": a.id,
        "node": a.node,
        "seq": a.seq,
        "time": osprey_model::time::format_iso8601(a.time_unix_nano),
        "rule": a.rule,
        "priority": priority_from_pb(a.priority()).as_str(),
        "source": a.source,
        "tags": a.tags,
        "output": a.output,
        "output_fields": fields,
        "hostname": a.hostname,
        "action": match a.action() {
            pb::Action::Kill => "kill",
            pb::Action::Deny => "deny",
            _ => "alert",
        },
        "process": {
            "pid": p.pid, "tid": p.tid, "name": p.name, "exe_path": p.exe_path,
            "cmdline": p.cmdline, "user": p.user,
            "ancestors": p.ancestors.iter().map(|x| json!({
                "pid": x.pid, "name": x.name, "exe_path": x.exe_path, "cmdline": x.cmdline,
            })).collect::<Vec<_>>(),
        },
    });
    if let Some(c) = &a.container {
        v["container"] = json!({"id": c.id, "name": c.name, "image": c.image});
    }
    if let Some(p) = &a.pod {
        v["pod"] = json!({"namespace": p.namespace, "name": p.name});
    }
    v
}

pub fn gap_json(g: &pb::Gap) -> Value {
    json!({"gap": {
        "node": g.node, "from_seq": g.from_seq, "to_seq": g.to_seq,
        "missed": g.missed, "reason": gap_reason_str(g),
    }})
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn falco_shape_survives_the_round_trip_through_the_api() {
        let mut fields = OutputFields::default();
        fields.insert("evt.time".into(), json!(1_685_022_245_478_445_995u64));
        fields.insert("proc.name".into(), json!("cat"));
        fields.insert("proc.pname".into(), json!("bash"));
        fields.insert("proc.ppid".into(), json!(41));
        fields.insert("user.loginuid".into(), json!(-1));
        fields.insert("container.id".into(), json!("ee97d9c4186f"));
        fields.insert("k8s.pod.name".into(), json!("web"));
        fields.insert("k8s.ns.name".into(), json!("prod"));
        fields.insert("fd.name".into(), Value::Null);
        let a = Alert {
            time: 1_685_022_245_478_445_995,
            rule: "Read sensitive file".into(),
            priority: Priority::Warning,
            source: "syscall".into(),
            tags: vec!["T1003".into()].into(),
            output: "Sensitive file opened".into(),
            output_fields: fields,
            hostname: "h".into(),
            event: AlertEvent {
                evt_type: "openat".into(),
                evt_num: 9,
                ts: 1,
                pid: 42,
                tid: 42,
                comm: "cat".into(),
                container: None,
            },
        };
        let p = alert_to_pb(&a, "node-a");
        assert_eq!(p.priority(), pb::Priority::Warning);
        assert_eq!(p.pod.as_ref().unwrap().namespace, "prod");
        assert_eq!(p.container.as_ref().unwrap().id, "ee97d9c4186f");
        let proc = p.process.as_ref().unwrap();
        assert_eq!((proc.pid, proc.name.as_str()), (42, "cat"));
        assert_eq!(proc.ancestors[0].name, "bash");
        assert_eq!(proc.ancestors[0].pid, 41);
        // Falco's JSON is the same before and after: numbers stay exact numbers, null stays null.
        let back = alert_from_pb(&p);
        assert_eq!(
            osprey_engine::output::to_json(&back),
            osprey_engine::output::to_json(&a)
        );
    }

    #[test]
    fn every_alert_carries_its_container_and_pod_whatever_the_output_shows() {
        let info = ContainerInfo {
            id: "0123456789ab".into(),
            full_id: format!("0123456789ab{}", "f".repeat(52)),
            name: Some("nginx".into()),
            image: Some("registry.example/web:1.2".into()),
            image_repository: Some("registry.example/web".into()),
            image_tag: Some("1.2".into()),
            runtime: Some("containerd".into()),
            privileged: Some(true),
            k8s_ns_name: Some("shop".into()),
            k8s_pod_name: Some("web-0".into()),
            k8s_pod_uid: Some("7d0c".into()),
            k8s_pod_labels: [("app".to_string(), "web".to_string())].into(),
            ..ContainerInfo::default()
        };
        let a = Alert {
            time: 1,
            rule: "r".into(),
            priority: Priority::Notice,
            source: "syscall".into(),
            tags: std::sync::Arc::new([]),
            output: "o".into(),
            // The rule's output shows no container field at all.
            output_fields: OutputFields::default(),
            hostname: "h".into(),
            event: AlertEvent {
                evt_type: "openat".into(),
                evt_num: 1,
                ts: 1,
                pid: 7,
                tid: 7,
                comm: "nginx".into(),
                container: Some(std::sync::Arc::new(info.clone())),
            },
        };
        let p = alert_to_pb(&a, "node-a");
        let c = p.container.as_ref().unwrap();
        assert_eq!(
            (c.id.as_str(), c.name.as_str(), c.image.as_str()),
            ("0123456789ab", "nginx", "registry.example/web:1.2")
        );
        assert_eq!(c.image_repository, "registry.example/web");
        assert_eq!(c.runtime, "containerd");
        assert!(c.privileged);
        let pod = p.pod.as_ref().unwrap();
        assert_eq!(
            (pod.namespace.as_str(), pod.name.as_str()),
            ("shop", "web-0")
        );
        assert_eq!(pod.labels.get("app").map(String::as_str), Some("web"));
        let back = alert_from_pb(&p);
        assert_eq!(back.event.container.as_deref(), Some(&info));
    }
}
