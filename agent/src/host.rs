//! What the engine asks of the node it runs on: user names from `/etc/passwd`, the hostname,
//! process groups from `/proc`. The engine only sees these through its `env` traits, so that it
//! stays free of I/O and a replay judges the recording rather than the machine replaying it.

use std::{
    collections::HashMap,
    path::{Path, PathBuf},
    sync::{Arc, OnceLock},
};

use osprey_engine::{
    EngineOptions,
    env::{ProcessGroups, UserResolver, parse_colon_db},
};

/// Engine options for a node: the hostname from `FALCO_HOSTNAME`/`OSPREY_HOSTNAME` or the
/// kernel, and user names from `<root>/etc/passwd`.
pub fn engine_options_for_host(root: &Path) -> EngineOptions {
    let hostname = std::env::var("OSPREY_HOSTNAME")
        .or_else(|_| std::env::var("FALCO_HOSTNAME"))
        .ok()
        .or_else(|| {
            std::fs::read_to_string("/proc/sys/kernel/hostname")
                .ok()
                .map(|s| s.trim().to_string())
        })
        .unwrap_or_default();
    EngineOptions {
        hostname: hostname.into(),
        users: Arc::new(EtcPasswd::new(root)),
        ..EngineOptions::default()
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

/// Process groups of live processes, from `/proc/<pid>/status`, read when a rule or output asks
/// for `proc.vpgid`. Only for live events: the process may be gone (the field is then unset).
#[derive(Debug, Default)]
pub struct ProcStatus;

impl ProcessGroups for ProcStatus {
    fn vpgid(&self, tgid: u32) -> Option<i64> {
        let status = std::fs::read_to_string(format!("/proc/{tgid}/status")).ok()?;
        parse_ns_pgid(&status)
    }

    /// The environment from `/proc/<pid>/environ` (what the process started with, unless it
    /// rewrote that memory), at most [`MAX_ENVIRON`] bytes of it.
    fn environ(&self, tgid: u32) -> Option<Vec<String>> {
        use std::io::Read;
        let f = std::fs::File::open(format!("/proc/{tgid}/environ")).ok()?;
        let mut buf = Vec::new();
        f.take(MAX_ENVIRON).read_to_end(&mut buf).ok()?;
        Some(parse_environ(&buf))
    }
}

/// Most of a process's environment read for `proc.env`: enough for every variable a rule asks
/// about, bounded whatever a process puts there.
const MAX_ENVIRON: u64 = 64 << 10;

fn parse_environ(buf: &[u8]) -> Vec<String> {
    buf.split(|b| *b == 0)
        .filter(|e| !e.is_empty())
        .map(|e| String::from_utf8_lossy(e).into_owned())
        .collect()
}

/// The process group id in the innermost pid namespace (the last `NSpgid` column).
fn parse_ns_pgid(status: &str) -> Option<i64> {
    let line = status.lines().find_map(|l| l.strip_prefix("NSpgid:"))?;
    line.split_whitespace().last()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn environ_entries() {
        assert_eq!(
            parse_environ(b"A=1\0LD_PRELOAD=/tmp/x.so\0\0"),
            ["A=1", "LD_PRELOAD=/tmp/x.so"]
        );
        let me = ProcStatus.environ(std::process::id()).unwrap();
        assert!(me.iter().any(|e| e.starts_with("PATH=")), "{me:?}");
    }

    #[test]
    fn ns_pgid_is_the_innermost() {
        assert_eq!(parse_ns_pgid("Name:\tsh\nNSpgid:\t4711\t1\n"), Some(1));
        assert_eq!(parse_ns_pgid("NSpgid:\t300\n"), Some(300));
        assert_eq!(parse_ns_pgid("Name:\tsh\n"), None);
    }
}
