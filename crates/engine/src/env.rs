//! What the engine needs from outside the event: user and group names, container identity.
//!
//! These are traits so that the engine stays pure: tests pass fixed tables, `osprey run`
//! passes the host's `/etc/passwd` and the container table (`crate::container`).

use std::{
    collections::HashMap,
    path::{Path, PathBuf},
    sync::{Arc, OnceLock},
};

use osprey_model::{ContainerInfo, Process, event::Event};

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
