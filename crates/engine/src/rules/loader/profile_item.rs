//! The `profile` item of rule files: a seccomp-like syscall profile (see `crate::profile`).
//!
//! ```yaml
//! - profile: no-user-namespaces
//!   desc: containers must not create user namespaces
//!   scope: {containers: all}          # or: host | {image: "nginx*", k8s_namespace: web,
//!                                     #      pod_labels: {app: web}, container: NAME|ID}
//!   default: allow                    # allow | log | alert | kill
//!   syscalls:
//!     - names: [unshare, clone]
//!       action: kill
//!       args:                         # all must hold; checked in the kernel
//!         - {index: 0, op: masked_any, value: CLONE_NEWUSER}
//!     - names: [keyctl, add_key, request_key]
//!       action: alert
//! ```
//!
//! A later profile with the same name replaces an earlier one. Errors carry the position of
//! the offending key or value, like every other item's.

use std::collections::BTreeMap;

use super::{
    Code, Definition, Loader, Merge, Reporter, gpos,
    read::{bool_key, str_key, unknown_keys},
};
use osprey_model::{Action, syscalls};

use crate::{
    profile::{
        ArgCondition, ArgOp, ContainerSelector, Profile, Scope, SyscallRule, compile, parse_value,
    },
    rules::yaml::Node,
};

const PROFILE_KEYS: &[&str] = &["profile", "desc", "scope", "default", "syscalls", "enabled"];
const SCOPE_KEYS: &[&str] = &[
    "host",
    "containers",
    "image",
    "k8s_namespace",
    "pod_labels",
    "container",
];

impl Loader {
    pub(super) fn profile(&mut self, file: usize, n: &Node) {
        let pos = gpos(file, n.mark.offset);
        let r = self.diags.item(Profile::KIND, "", pos);
        let Some(name) = str_key(n, "profile", &r) else {
            return;
        };
        let r = r.named(&name);
        unknown_keys(n, &r, PROFILE_KEYS);
        if name.trim().is_empty() {
            r.error(Code::ErrValidate, "Profile name must not be empty");
            return;
        }
        let desc = str_key(n, "desc", &r).unwrap_or_default();
        let enabled = bool_key(n, "enabled", &r).unwrap_or(true);
        let Some(scope_node) = n.get("scope") else {
            r.error(
                Code::ErrYamlValidate,
                "Item has no mapping for key 'scope' (host, or containers: all, or image/k8s_namespace/pod_labels/container)",
            );
            return;
        };
        let Some(scope) = scope(scope_node, &r) else {
            return;
        };
        let default = match n.get("default") {
            None => Action::Allow,
            Some(v) => match action(v, &r) {
                Some(a) => a,
                None => return,
            },
        };
        let mut syscalls = Vec::new();
        if let Some(v) = n.get("syscalls") {
            let Some(seq) = v.as_seq() else {
                r.at(v).error(
                    Code::ErrYamlValidate,
                    "Value of 'syscalls' must be a sequence",
                );
                return;
            };
            // Every entry is read, so that each bad one is reported.
            let read: Vec<_> = seq.iter().map(|e| syscall_rule(e, &r)).collect();
            let Some(read) = read.into_iter().collect::<Option<Vec<_>>>() else {
                return;
            };
            syscalls = read;
        }
        let profile = Profile {
            name,
            desc: desc.trim_end().to_string(),
            scope,
            default,
            syscalls,
            enabled,
            file: self.diags.position(pos),
        };
        if let Err(e) = compile(&profile) {
            r.error(Code::ErrValidate, e.to_string());
            return;
        }
        let merge = Merge::read::<Profile>(n, &r);
        self.profiles.add(profile, merge, &r);
    }
}

/// A profile has no key to append or replace: a later profile of the same name replaces it
/// whole, in its place.
impl Definition for Profile {
    type Item = Self;
    const KIND: &'static str = "profile";
    const APPENDABLE: &'static [&'static str] = &[];
    const REPLACEABLE: &'static [&'static str] = &[];

    fn name(&self) -> &str {
        &self.name
    }

    fn item_name(item: &Self) -> &str {
        &item.name
    }

    fn define(item: Self, _: &Reporter) -> Option<Self> {
        Some(item)
    }

    fn merge(&mut self, _: &str, _: bool, _: &Self, _: &Reporter) {}
}

fn action(v: &Node, r: &Reporter) -> Option<Action> {
    let a = v.as_str().and_then(Action::parse);
    if a.is_none() {
        r.at(v).error(
            Code::ErrYamlValidate,
            format!(
                "Invalid action '{}': must be one of {}",
                v.as_str().unwrap_or("<not a string>"),
                Action::NAMES.join(", ")
            ),
        );
    }
    a
}

fn scope(v: &Node, r: &Reporter) -> Option<Scope> {
    match v.as_str() {
        Some("host") => return Some(Scope::Host),
        Some("containers") => return Some(Scope::Containers(ContainerSelector::default())),
        Some(other) => {
            r.at(v).error(
                Code::ErrYamlValidate,
                format!(
                    "Invalid scope '{other}': must be 'host', 'containers', or a map of {}",
                    SCOPE_KEYS.join(", ")
                ),
            );
            return None;
        }
        None => {}
    }
    let Some(map) = v.as_map() else {
        r.at(v).error(
            Code::ErrYamlValidate,
            "Value of 'scope' must be a string or a map",
        );
        return None;
    };
    let mut sel = ContainerSelector::default();
    let mut host = false;
    let mut containers = false;
    for (k, val) in map {
        let key = k.as_str().unwrap_or_default();
        let text = || val.as_str().map(str::to_string);
        match key {
            "host" => match val.as_bool() {
                Some(b) => host = b,
                None => {
                    r.at(val).error(
                        Code::ErrYamlValidate,
                        "Value of 'host' must be true or false",
                    );
                    return None;
                }
            },
            "containers" => match val.as_str() {
                Some("all") => containers = true,
                _ => {
                    r.at(val)
                        .error(Code::ErrYamlValidate, "Value of 'containers' must be 'all'");
                    return None;
                }
            },
            "image" | "k8s_namespace" | "container" => {
                let Some(s) = text().filter(|s| !s.is_empty()) else {
                    r.at(val).error(
                        Code::ErrYamlValidate,
                        format!("Value of '{key}' must be a non-empty string"),
                    );
                    return None;
                };
                match key {
                    "image" => sel.image = Some(s),
                    "k8s_namespace" => sel.k8s_namespace = Some(s),
                    _ => sel.container = Some(s),
                }
            }
            "pod_labels" => {
                let Some(labels) = val.as_map() else {
                    r.at(val)
                        .error(Code::ErrYamlValidate, "Value of 'pod_labels' must be a map");
                    return None;
                };
                let mut out = BTreeMap::new();
                for (lk, lv) in labels {
                    match (lk.as_str(), lv.as_str()) {
                        (Some(a), Some(b)) => {
                            out.insert(a.to_string(), b.to_string());
                        }
                        _ => {
                            r.at(lv)
                                .error(Code::ErrYamlValidate, "Pod labels must be strings");
                            return None;
                        }
                    }
                }
                sel.pod_labels = out;
            }
            other => {
                r.at(k).error(
                    Code::ErrYamlValidate,
                    format!(
                        "Unknown scope key '{other}': must be one of {}",
                        SCOPE_KEYS.join(", ")
                    ),
                );
                return None;
            }
        }
    }
    let has_sel = sel != ContainerSelector::default();
    if host && (containers || has_sel) {
        r.at(v).error(
            Code::ErrYamlValidate,
            "A scope is either 'host: true' or containers; not both",
        );
        return None;
    }
    if host {
        return Some(Scope::Host);
    }
    if !containers && !has_sel {
        r.at(v).error(
            Code::ErrYamlValidate,
            "Empty scope: say 'host: true', 'containers: all', or which containers",
        );
        return None;
    }
    Some(Scope::Containers(sel))
}

fn syscall_rule(e: &Node, r: &Reporter) -> Option<SyscallRule> {
    if e.as_map().is_none() {
        r.at(e).error(
            Code::ErrYamlValidate,
            "Entries of 'syscalls' must be maps with 'names' and 'action'",
        );
        return None;
    }
    unknown_keys(e, r, &["names", "action", "args"]);
    let Some(names_node) = e.get("names") else {
        r.at(e).error(
            Code::ErrYamlValidate,
            "Entry has no mapping for key 'names'",
        );
        return None;
    };
    let Some(seq) = names_node.as_seq() else {
        r.at(names_node).error(
            Code::ErrYamlValidate,
            "Value of 'names' must be a sequence of syscall names",
        );
        return None;
    };
    let mut names = Vec::new();
    for nn in seq {
        match nn.as_str() {
            Some(s) if syscalls::number(s).is_some() => names.push(s.to_string()),
            Some(s) => {
                r.at(nn).error(
                    Code::ErrYamlValidate,
                    format!("Unknown syscall '{s}' (not an x86_64 syscall name)"),
                );
                return None;
            }
            None => {
                r.at(nn)
                    .error(Code::ErrYamlValidate, "Syscall names must be strings");
                return None;
            }
        }
    }
    let Some(an) = e.get("action") else {
        r.at(e).error(
            Code::ErrYamlValidate,
            "Entry has no mapping for key 'action'",
        );
        return None;
    };
    let action = action(an, r)?;
    let mut args = Vec::new();
    if let Some(a) = e.get("args") {
        let Some(seq) = a.as_seq() else {
            r.at(a)
                .error(Code::ErrYamlValidate, "Value of 'args' must be a sequence");
            return None;
        };
        if seq.len() > agent_common::MAX_ARG_CONDS {
            r.at(a).error(Code::ErrYamlValidate, format!(
                        "At most {} argument conditions per entry (the kernel checks them in a bounded loop)",
                        agent_common::MAX_ARG_CONDS
                    ));
            return None;
        }
        for c in seq {
            args.push(arg_condition(c, r)?);
        }
    }
    Some(SyscallRule {
        names,
        action,
        args,
    })
}

fn arg_condition(c: &Node, r: &Reporter) -> Option<ArgCondition> {
    if c.as_map().is_none() {
        r.at(c).error(
            Code::ErrYamlValidate,
            "Argument conditions must be maps: {index: N, op: OP, value: V}",
        );
        return None;
    }
    unknown_keys(c, r, &["index", "op", "value", "mask"]);
    let index = match c
        .get("index")
        .map(|v| (v, v.as_str().map(str::parse::<u8>)))
    {
        Some((_, Some(Ok(i)))) if i < 6 => i,
        Some((v, _)) => {
            r.at(v).error(
                Code::ErrYamlValidate,
                "Value of 'index' must be an argument index 0..5",
            );
            return None;
        }
        None => {
            r.at(c)
                .error(Code::ErrYamlValidate, "Argument condition has no 'index'");
            return None;
        }
    };
    let op = match c.get("op") {
        Some(v) => match v.as_str().and_then(ArgOp::parse) {
            Some(op) => op,
            None => {
                r.at(v).error(
                    Code::ErrYamlValidate,
                    format!("Invalid op: must be one of {}", ArgOp::NAMES.join(", ")),
                );
                return None;
            }
        },
        None => {
            r.at(c)
                .error(Code::ErrYamlValidate, "Argument condition has no 'op'");
            return None;
        }
    };
    let num = |key: &str| -> Option<Option<u64>> {
        let Some(v) = c.get(key) else {
            return Some(None);
        };
        match v.as_str().map(parse_value) {
            Some(Ok(n)) => Some(Some(n)),
            Some(Err(msg)) => {
                r.at(v)
                    .error(Code::ErrYamlValidate, format!("Value of '{key}': {msg}"));
                None
            }
            None => {
                r.at(v).error(
                    Code::ErrYamlValidate,
                    format!("Value of '{key}' must be a number or constants"),
                );
                None
            }
        }
    };
    let Some(value) = num("value")? else {
        r.at(c)
            .error(Code::ErrYamlValidate, "Argument condition has no 'value'");
        return None;
    };
    let mask = num("mask")?;
    match (op, mask) {
        (ArgOp::MaskedEq, None) => {
            r.at(c)
                .error(Code::ErrYamlValidate, "op masked_eq needs a 'mask'");
            return None;
        }
        (ArgOp::MaskedEq, _) | (_, None) => {}
        (_, Some(_)) => {
            r.at(c).error(
                Code::ErrYamlValidate,
                "'mask' is only meaningful with op masked_eq",
            );
            return None;
        }
    }
    Some(ArgCondition {
        index,
        op,
        value,
        mask: mask.unwrap_or(0),
    })
}
