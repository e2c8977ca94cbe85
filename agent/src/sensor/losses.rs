//! Kernel records lost, by container. The kernel counts each cgroup's losses (records over its
//! share of a ring buffer's reserved room (its last 4 MiB), and records a full ring had no room for; see
//! agent-ebpf/src/output.rs); this turns those running counts into increments per container
//! (the caller names each share's container), for the metrics, and remembers who lost most for
//! the internal alert that reports losses.

use std::collections::HashMap;

use super::{CgroupLoss, Share};

/// Who a cgroup is, as the metrics and alerts name it.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Who {
    /// Short container id, `host`, or `cgroup:ID` / `mntns:INUM` for a share nothing places.
    pub container_id: String,
    pub container_name: String,
}

/// New losses of one container since the last look.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ContainerLoss {
    pub who: Who,
    pub over_share: u64,
    pub ring_full: u64,
}

#[derive(Default)]
pub struct Losses {
    /// The kernel's counts at the last look, per share (only those still in its map).
    seen: HashMap<Share, (u64, u64)>,
    /// Losses since the last [`Losses::take_worst`], per container.
    window: HashMap<Who, u64>,
}

impl Losses {
    /// Folds in the kernel's counts `now`; returns what each container lost since the last
    /// call. `who` names a share's container.
    pub fn update(&mut self, now: &[CgroupLoss], who: impl Fn(Share) -> Who) -> Vec<ContainerLoss> {
        let mut out: Vec<ContainerLoss> = Vec::new();
        let mut seen = HashMap::with_capacity(now.len());
        for l in now {
            let (over0, full0) = self.seen.get(&l.share).copied().unwrap_or((0, 0));
            seen.insert(l.share, (l.over_share, l.ring_full));
            // A count below the last one is an entry the kernel's LRU evicted and made again:
            // all of it is new.
            let since = |n: u64, n0: u64| if n >= n0 { n - n0 } else { n };
            let (over, full) = (since(l.over_share, over0), since(l.ring_full, full0));
            if over + full == 0 {
                continue;
            }
            let who = who(l.share);
            *self.window.entry(who.clone()).or_default() += over + full;
            match out.iter_mut().find(|c| c.who == who) {
                Some(c) => {
                    c.over_share += over;
                    c.ring_full += full;
                }
                None => out.push(ContainerLoss {
                    who,
                    over_share: over,
                    ring_full: full,
                }),
            }
        }
        self.seen = seen;
        out
    }

    /// The `n` containers that lost most since the last call, most first; starts a new window.
    pub fn take_worst(&mut self, n: usize) -> Vec<(Who, u64)> {
        let mut all: Vec<(Who, u64)> = self.window.drain().collect();
        all.sort_by(|a, b| {
            b.1.cmp(&a.1)
                .then_with(|| a.0.container_id.cmp(&b.0.container_id))
        });
        all.truncate(n);
        all
    }
}

/// "ab12cd34ef56 (web) 900, host 3": for an alert's message.
pub fn describe(worst: &[(Who, u64)]) -> String {
    worst
        .iter()
        .map(|(w, n)| {
            if w.container_name.is_empty() || w.container_name == w.container_id {
                format!("{} {n}", w.container_id)
            } else {
                format!("{} ({}) {n}", w.container_id, w.container_name)
            }
        })
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn loss(cgroup_id: u64, over_share: u64, ring_full: u64) -> CgroupLoss {
        CgroupLoss {
            share: Share::Cgroup(cgroup_id),
            over_share,
            ring_full,
        }
    }

    /// Cgroups 10 and 11 are one container (its own cgroup and a child), 20 another.
    fn who(share: Share) -> Who {
        let (id, name) = match share {
            Share::Cgroup(10 | 11) => ("aaaaaaaaaaaa", "noisy"),
            Share::Cgroup(20) => ("bbbbbbbbbbbb", ""),
            _ => ("host", "host"),
        };
        Who {
            container_id: id.into(),
            container_name: name.into(),
        }
    }

    #[test]
    fn increments_per_container_from_running_counts() {
        let mut l = Losses::default();
        let first = l.update(&[loss(10, 100, 5), loss(11, 50, 0), loss(20, 0, 2)], who);
        assert_eq!(first.len(), 2);
        assert_eq!((first[0].over_share, first[0].ring_full), (150, 5));
        assert_eq!(first[0].who.container_name, "noisy");
        assert_eq!((first[1].over_share, first[1].ring_full), (0, 2));
        // Only what changed since.
        let next = l.update(&[loss(10, 130, 5), loss(11, 50, 0), loss(20, 0, 2)], who);
        assert_eq!(next.len(), 1);
        assert_eq!((next[0].over_share, next[0].ring_full), (30, 0));
        assert!(l.update(&[loss(10, 130, 5)], who).is_empty());
    }

    #[test]
    fn an_entry_made_again_counts_from_zero() {
        let mut l = Losses::default();
        l.update(&[loss(10, 100, 0)], who);
        // Evicted from the kernel's LRU and made again: 7 new losses, not -93.
        let again = l.update(&[loss(10, 7, 0)], who);
        assert_eq!(again[0].over_share, 7);
        // Gone from the map, then back: also from zero.
        l.update(&[], who);
        assert_eq!(l.update(&[loss(10, 3, 0)], who)[0].over_share, 3);
    }

    #[test]
    fn the_worst_first_and_a_new_window_after() {
        let mut l = Losses::default();
        l.update(&[loss(10, 900, 0), loss(1, 0, 3), loss(20, 40, 0)], who);
        let worst = l.take_worst(3);
        assert_eq!(
            describe(&worst),
            "aaaaaaaaaaaa (noisy) 900, bbbbbbbbbbbb 40, host 3",
            "{worst:?}"
        );
        assert!(l.take_worst(2).is_empty());
    }

    #[test]
    fn the_node_s_processes_are_one_host_in_the_counts() {
        // On a cgroup-v1 node each host process has a share of its own in the kernel; the
        // metrics and the alert count them as the one host.
        let mut l = Losses::default();
        let host = |pid, over| CgroupLoss {
            share: Share::from_key(agent_common::SHARE_KEY_HOST_PROCESS | pid),
            over_share: over,
            ring_full: 0,
        };
        assert_eq!(host(7, 0).share, Share::HostProcess(7));
        let out = l.update(&[host(7, 5), loss(10, 1, 0), host(8, 2)], who);
        assert_eq!(out.len(), 2, "{out:?}");
        let h = out.iter().find(|c| c.who.container_id == "host").unwrap();
        assert_eq!(h.over_share, 7);
        assert_eq!(
            Share::from_key(agent_common::SHARE_KEY_MNT_NS | 4026531840),
            Share::MntNs(4026531840)
        );
        assert_eq!(Share::from_key(42), Share::Cgroup(42));
    }
}
