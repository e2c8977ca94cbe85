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

use super::{Code, Item, Loader, gpos};
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
    fn bad(&mut self, item: &Item, at: &Node, file: usize, msg: impl Into<String>) {
        self.report(
            Code::ErrYamlValidate,
            msg,
            Some(item),
            Some(gpos(file, at.mark.offset)),
            None,
        );
    }

    pub(super) fn profile(&mut self, file: usize, n: &Node) {
        let pos = gpos(file, n.mark.offset);
        let mut item = Item {
            kind: "profile",
            name: String::new(),
            pos,
        };
        let Some(name) = self.str_key(n, "profile", &item, file) else {
            return;
        };
        item.name = name.clone();
        self.unknown_keys(file, n, &item, PROFILE_KEYS);
        if name.trim().is_empty() {
            self.report(
                Code::ErrValidate,
                "Profile name must not be empty",
                Some(&item),
                None,
                None,
            );
            return;
        }
        let desc = self.str_key(n, "desc", &item, file).unwrap_or_default();
        let enabled = self.bool_key(n, "enabled", &item, file).unwrap_or(true);
        let Some(scope_node) = n.get("scope") else {
            self.report(
                Code::ErrYamlValidate,
                "Item has no mapping for key 'scope' (host, or containers: all, or image/k8s_namespace/pod_labels/container)",
                Some(&item),
                None,
                None,
            );
            return;
        };
        let Some(scope) = self.scope(scope_node, &item, file) else {
            return;
        };
        let default = match n.get("default") {
            None => Action::Allow,
            Some(v) => match self.action(v, &item, file) {
                Some(a) => a,
                None => return,
            },
        };
        let mut syscalls = Vec::new();
        if let Some(v) = n.get("syscalls") {
            let Some(seq) = v.as_seq() else {
                self.bad(&item, v, file, "Value of 'syscalls' must be a sequence");
                return;
            };
            let mut ok = true;
            for e in seq {
                match self.syscall_rule(e, &item, file) {
                    Some(r) => syscalls.push(r),
                    None => ok = false,
                }
            }
            if !ok {
                return;
            }
        }
        let profile = Profile {
            name: name.clone(),
            desc: desc.trim_end().to_string(),
            scope,
            default,
            syscalls,
            enabled,
            file: self.position(pos).map(|(_, p, _)| p),
        };
        if let Err(e) = compile(&profile) {
            self.report(Code::ErrValidate, e.to_string(), Some(&item), None, None);
            return;
        }
        match self.profiles.iter().position(|(p, _)| p.name == name) {
            Some(i) => self.profiles[i] = (profile, pos),
            None => self.profiles.push((profile, pos)),
        }
    }

    fn action(&mut self, v: &Node, item: &Item, file: usize) -> Option<Action> {
        let a = v.as_str().and_then(Action::parse);
        if a.is_none() {
            self.bad(
                item,
                v,
                file,
                format!(
                    "Invalid action '{}': must be one of {}",
                    v.as_str().unwrap_or("<not a string>"),
                    Action::NAMES.join(", ")
                ),
            );
        }
        a
    }

    fn scope(&mut self, v: &Node, item: &Item, file: usize) -> Option<Scope> {
        match v.as_str() {
            Some("host") => return Some(Scope::Host),
            Some("containers") => return Some(Scope::Containers(ContainerSelector::default())),
            Some(other) => {
                self.bad(
                    item,
                    v,
                    file,
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
            self.bad(item, v, file, "Value of 'scope' must be a string or a map");
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
                        self.bad(item, val, file, "Value of 'host' must be true or false");
                        return None;
                    }
                },
                "containers" => match val.as_str() {
                    Some("all") => containers = true,
                    _ => {
                        self.bad(item, val, file, "Value of 'containers' must be 'all'");
                        return None;
                    }
                },
                "image" | "k8s_namespace" | "container" => {
                    let Some(s) = text().filter(|s| !s.is_empty()) else {
                        self.bad(
                            item,
                            val,
                            file,
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
                        self.bad(item, val, file, "Value of 'pod_labels' must be a map");
                        return None;
                    };
                    let mut out = BTreeMap::new();
                    for (lk, lv) in labels {
                        match (lk.as_str(), lv.as_str()) {
                            (Some(a), Some(b)) => {
                                out.insert(a.to_string(), b.to_string());
                            }
                            _ => {
                                self.bad(item, lv, file, "Pod labels must be strings");
                                return None;
                            }
                        }
                    }
                    sel.pod_labels = out;
                }
                other => {
                    self.bad(
                        item,
                        k,
                        file,
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
            self.bad(
                item,
                v,
                file,
                "A scope is either 'host: true' or containers; not both",
            );
            return None;
        }
        if host {
            return Some(Scope::Host);
        }
        if !containers && !has_sel {
            self.bad(
                item,
                v,
                file,
                "Empty scope: say 'host: true', 'containers: all', or which containers",
            );
            return None;
        }
        Some(Scope::Containers(sel))
    }

    fn syscall_rule(&mut self, e: &Node, item: &Item, file: usize) -> Option<SyscallRule> {
        if e.as_map().is_none() {
            self.bad(
                item,
                e,
                file,
                "Entries of 'syscalls' must be maps with 'names' and 'action'",
            );
            return None;
        }
        self.unknown_keys(file, e, item, &["names", "action", "args"]);
        let Some(names_node) = e.get("names") else {
            self.bad(item, e, file, "Entry has no mapping for key 'names'");
            return None;
        };
        let Some(seq) = names_node.as_seq() else {
            self.bad(
                item,
                names_node,
                file,
                "Value of 'names' must be a sequence of syscall names",
            );
            return None;
        };
        let mut names = Vec::new();
        for nn in seq {
            match nn.as_str() {
                Some(s) if syscalls::number(s).is_some() => names.push(s.to_string()),
                Some(s) => {
                    self.bad(
                        item,
                        nn,
                        file,
                        format!("Unknown syscall '{s}' (not an x86_64 syscall name)"),
                    );
                    return None;
                }
                None => {
                    self.bad(item, nn, file, "Syscall names must be strings");
                    return None;
                }
            }
        }
        let Some(an) = e.get("action") else {
            self.bad(item, e, file, "Entry has no mapping for key 'action'");
            return None;
        };
        let action = self.action(an, item, file)?;
        let mut args = Vec::new();
        if let Some(a) = e.get("args") {
            let Some(seq) = a.as_seq() else {
                self.bad(item, a, file, "Value of 'args' must be a sequence");
                return None;
            };
            if seq.len() > agent_common::MAX_ARG_CONDS {
                self.bad(
                    item,
                    a,
                    file,
                    format!(
                        "At most {} argument conditions per entry (the kernel checks them in a bounded loop)",
                        agent_common::MAX_ARG_CONDS
                    ),
                );
                return None;
            }
            for c in seq {
                args.push(self.arg_condition(c, item, file)?);
            }
        }
        Some(SyscallRule {
            names,
            action,
            args,
        })
    }

    fn arg_condition(&mut self, c: &Node, item: &Item, file: usize) -> Option<ArgCondition> {
        if c.as_map().is_none() {
            self.bad(
                item,
                c,
                file,
                "Argument conditions must be maps: {index: N, op: OP, value: V}",
            );
            return None;
        }
        self.unknown_keys(file, c, item, &["index", "op", "value", "mask"]);
        let index = match c
            .get("index")
            .map(|v| (v, v.as_str().map(str::parse::<u8>)))
        {
            Some((_, Some(Ok(i)))) if i < 6 => i,
            Some((v, _)) => {
                self.bad(
                    item,
                    v,
                    file,
                    "Value of 'index' must be an argument index 0..5",
                );
                return None;
            }
            None => {
                self.bad(item, c, file, "Argument condition has no 'index'");
                return None;
            }
        };
        let op = match c.get("op") {
            Some(v) => match v.as_str().and_then(ArgOp::parse) {
                Some(op) => op,
                None => {
                    self.bad(
                        item,
                        v,
                        file,
                        format!("Invalid op: must be one of {}", ArgOp::NAMES.join(", ")),
                    );
                    return None;
                }
            },
            None => {
                self.bad(item, c, file, "Argument condition has no 'op'");
                return None;
            }
        };
        let num = |key: &str, this: &mut Self| -> Option<Option<u64>> {
            let Some(v) = c.get(key) else {
                return Some(None);
            };
            match v.as_str().map(parse_value) {
                Some(Ok(n)) => Some(Some(n)),
                Some(Err(msg)) => {
                    this.bad(item, v, file, format!("Value of '{key}': {msg}"));
                    None
                }
                None => {
                    this.bad(
                        item,
                        v,
                        file,
                        format!("Value of '{key}' must be a number or constants"),
                    );
                    None
                }
            }
        };
        let Some(value) = num("value", self)? else {
            self.bad(item, c, file, "Argument condition has no 'value'");
            return None;
        };
        let mask = num("mask", self)?;
        match (op, mask) {
            (ArgOp::MaskedEq, None) => {
                self.bad(item, c, file, "op masked_eq needs a 'mask'");
                return None;
            }
            (ArgOp::MaskedEq, _) | (_, None) => {}
            (_, Some(_)) => {
                self.bad(item, c, file, "'mask' is only meaningful with op masked_eq");
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

    /// The profiles, last definitions winning; their names are unique.
    pub(super) fn finish_profiles(&mut self) -> Vec<Profile> {
        std::mem::take(&mut self.profiles)
            .into_iter()
            .map(|(p, _)| p)
            .collect()
    }
}
