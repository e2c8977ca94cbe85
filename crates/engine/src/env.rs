//! What the engine needs from outside the event: user and group names, container identity.
//!
//! These are traits so that the engine stays pure (no I/O): tests and replays pass fixed tables
//! or nothing, `osprey run` passes the host's `/etc/passwd`, `/proc` and the container table
//! (the agent's `host` and `container` modules).

use std::{collections::HashMap, sync::Arc};

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

/// Facts about a live process that events do not carry: its process group (`proc.vpgid`).
///
/// Asked of the host only while the process may still run; a replay passes [`NoProcessGroups`]
/// so that it judges the recording, not whichever process has that pid today.
pub trait ProcessGroups: Send + Sync {
    /// The process group id of `tgid` in its innermost pid namespace.
    fn vpgid(&self, tgid: u32) -> Option<i64>;

    /// `tgid`'s environment (`NAME=value` entries) as the process holds it now (`proc.env`).
    /// Nothing by default: events do not carry the environment.
    fn environ(&self, _tgid: u32) -> Option<Vec<String>> {
        None
    }
}

/// No live processes to ask: `proc.vpgid` is unset.
#[derive(Debug, Default)]
pub struct NoProcessGroups;

impl ProcessGroups for NoProcessGroups {
    fn vpgid(&self, _tgid: u32) -> Option<i64> {
        None
    }
}

/// Names of server addresses for `fd.sip.name`: the host resolves the DNS names that the loaded
/// rules compare `fd.sip.name` with ([`crate::Engine::dns_names`]) and answers which of them an
/// address belongs to, as Falco does. Replays pass [`NoDnsNames`].
pub trait DnsNames: Send + Sync {
    fn name_of(&self, ip: std::net::IpAddr) -> Option<Arc<str>>;
}

/// No resolution: `fd.sip.name` is unset.
#[derive(Debug, Default)]
pub struct NoDnsNames;

impl DnsNames for NoDnsNames {
    fn name_of(&self, _ip: std::net::IpAddr) -> Option<Arc<str>> {
        None
    }
}

/// A fixed table, for tests and replays.
#[derive(Debug, Default, Clone)]
pub struct StaticDnsNames(pub HashMap<std::net::IpAddr, Arc<str>>);

impl DnsNames for StaticDnsNames {
    fn name_of(&self, ip: std::net::IpAddr) -> Option<Arc<str>> {
        self.0.get(&ip).cloned()
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
