//! What the engine needs from outside the event: user and group names, container identity.
//!
//! These are traits so that the engine stays pure: tests pass fixed tables, `osprey run`
//! passes the host's `/etc/passwd` and the container table (`crate::container`).

use std::{
    collections::{BTreeMap, HashMap},
    path::{Path, PathBuf},
    sync::{Arc, OnceLock},
};

use serde::{Deserialize, Serialize};

use crate::{event::Event, process::Process};

/// Resolves user and group ids to names (`user.name`, `group.name`, `user.loginname`).
pub trait UserResolver: Send + Sync {
    fn user_name(&self, uid: u32) -> Option<Arc<str>>;
    fn group_name(&self, gid: u32) -> Option<Arc<str>>;
}

/// Knows no names: every `user.name` is unset.
#[derive(Debug, Default)]
pub struct NoUsers;

impl UserResolver for NoUsers {
    fn user_name(&self, _uid: u32) -> Option<Arc<str>> {
        None
    }
    fn group_name(&self, _gid: u32) -> Option<Arc<str>> {
        None
    }
}

/// A fixed table, for tests and replays.
#[derive(Debug, Default, Clone)]
pub struct StaticUsers {
    pub users: HashMap<u32, Arc<str>>,
    pub groups: HashMap<u32, Arc<str>>,
}

impl StaticUsers {
    pub fn new(users: &[(u32, &str)], groups: &[(u32, &str)]) -> Self {
        Self {
            users: users.iter().map(|(i, n)| (*i, Arc::from(*n))).collect(),
            groups: groups.iter().map(|(i, n)| (*i, Arc::from(*n))).collect(),
        }
    }
}

impl UserResolver for StaticUsers {
    fn user_name(&self, uid: u32) -> Option<Arc<str>> {
        self.users.get(&uid).cloned()
    }
    fn group_name(&self, gid: u32) -> Option<Arc<str>> {
        self.groups.get(&gid).cloned()
    }
}

/// The host's `/etc/passwd` and `/etc/group`, read once on first use.
///
/// Processes in containers have their own user databases; until container identity lands, their
/// uids resolve against the host's, as Falco did before its container plugin.
#[derive(Debug)]
pub struct EtcPasswd {
    root: PathBuf,
    users: OnceLock<HashMap<u32, Arc<str>>>,
    groups: OnceLock<HashMap<u32, Arc<str>>>,
}

impl EtcPasswd {
    /// `root` is the filesystem root holding `etc/passwd` (`/` on a host, `/host` in a pod).
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self {
            root: root.into(),
            users: OnceLock::new(),
            groups: OnceLock::new(),
        }
    }

    fn read(path: &Path) -> HashMap<u32, Arc<str>> {
        let Ok(text) = std::fs::read_to_string(path) else {
            return HashMap::new();
        };
        parse_colon_db(&text)
    }
}

/// `name:x:id:...` lines, as in passwd(5) and group(5).
pub fn parse_colon_db(text: &str) -> HashMap<u32, Arc<str>> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let mut it = l.split(':');
            let name = it.next()?;
            let id = it.nth(1)?.parse().ok()?;
            Some((id, Arc::from(name)))
        })
        .collect()
}

impl UserResolver for EtcPasswd {
    fn user_name(&self, uid: u32) -> Option<Arc<str>> {
        self.users
            .get_or_init(|| Self::read(&self.root.join("etc/passwd")))
            .get(&uid)
            .cloned()
    }
    fn group_name(&self, gid: u32) -> Option<Arc<str>> {
        self.groups
            .get_or_init(|| Self::read(&self.root.join("etc/group")))
            .get(&gid)
            .cloned()
    }
}

/// What is known about the container a process runs in (Falco's container plugin fields).
///
/// Serialized into recordings (`Enriched.container`), so a replay judges with the identity the
/// live agent saw.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ContainerInfo {
    /// 12-character id, or `host` for processes outside containers.
    pub id: String,
    /// The whole id (64 hex characters for every runtime here), or `host`.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub full_id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub image_repository: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub image_tag: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub image_digest: Option<String>,
    /// `docker`, `containerd`, `cri-o`, `podman`, or `host` (`container.type`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub runtime: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub privileged: Option<bool>,
    /// Wall-clock nanoseconds of the container's start.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub start_ts: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub k8s_ns_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub k8s_pod_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub k8s_pod_uid: Option<String>,
    /// The pod's labels (without the `io.kubernetes.*` bookkeeping the kubelet adds).
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub k8s_pod_labels: BTreeMap<String, String>,
}

impl ContainerInfo {
    /// What processes outside any container get: `container.id = host`, like Falco.
    pub fn host() -> Self {
        Self {
            id: "host".into(),
            full_id: "host".into(),
            name: Some("host".into()),
            runtime: Some("host".into()),
            ..Self::default()
        }
    }

    pub fn is_host(&self) -> bool {
        self.id == "host"
    }

    /// `k8s.pod.labels`: `key:value` pairs joined by commas, in key order (Falco's format).
    pub fn pod_labels_text(&self) -> Option<String> {
        if self.k8s_pod_labels.is_empty() {
            return None;
        }
        let parts: Vec<String> = self
            .k8s_pod_labels
            .iter()
            .map(|(k, v)| format!("{k}:{v}"))
            .collect();
        Some(parts.join(","))
    }
}

/// Finds the container of an event's process. Called at most once per evaluated event, and
/// only when a rule or output needs a `container.*` or `k8s.*` field and the event does not
/// already carry its container (`Enriched.container`, set by the live pipeline and recordings).
pub trait ContainerLookup: Send + Sync {
    fn lookup(&self, event: &Event, process: Option<&Process>) -> Option<Arc<ContainerInfo>>;
}

/// No container identity: every `container.*` and `k8s.*` field is unset.
#[derive(Debug, Default)]
pub struct NoContainers;

impl ContainerLookup for NoContainers {
    fn lookup(&self, _event: &Event, _process: Option<&Process>) -> Option<Arc<ContainerInfo>> {
        None
    }
}

/// A fixed map from cgroup id to container, for tests and replays.
#[derive(Debug, Default, Clone)]
pub struct StaticContainers {
    pub by_cgroup: HashMap<u64, Arc<ContainerInfo>>,
    /// What processes in no listed cgroup get (for example a `host` entry).
    pub default: Option<Arc<ContainerInfo>>,
}

impl ContainerLookup for StaticContainers {
    fn lookup(&self, event: &Event, process: Option<&Process>) -> Option<Arc<ContainerInfo>> {
        let cg = process.map_or(event.cgroup_id, |p| p.cgroup_id);
        self.by_cgroup
            .get(&cg)
            .cloned()
            .or_else(|| self.default.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_passwd_lines() {
        let db = parse_colon_db(
            "root:x:0:0:root:/root:/bin/bash\n# c\nwww-data:x:33:33::/:/bin/false\nbad\n",
        );
        assert_eq!(db.get(&0).map(|s| &**s), Some("root"));
        assert_eq!(db.get(&33).map(|s| &**s), Some("www-data"));
        assert_eq!(db.len(), 2);
    }
}
