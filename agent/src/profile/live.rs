//! Profiles in a running agent: decide the scope of each cgroup as its events arrive, name the
//! profile of each verdict, and turn verdicts into alerts.
//!
//! A host cgroup is decided on the first event from it the agent reads. A new container's
//! cgroup is decided on its entrypoint's exec, not before: the runtime's own set-up (`runc
//! init`, which runs in the container's cgroup and opens, mounts and writes freely) is not the
//! workload, and a real seccomp filter is loaded at the same point, just before that exec.
//! Between the exec and the agent writing the scope entry the kernel judges nothing in the
//! container: that is the start-up window the README describes.

use std::{collections::HashMap, sync::Arc};

use super::{
    ApplyError, Backend, Profile, ProfileSet,
    alert::{ProfileAlerts, RateLimit},
};
use osprey_engine::{env::ContainerLookup, output::Alert};
use osprey_model::{
    ContainerInfo,
    event::{Enriched, Event, EventKind},
};

/// An exec of the workload, not of the container runtime's own init.
fn is_workload_exec(e: &Enriched) -> bool {
    crate::container::is_workload_exec(&e.event)
}

pub struct Live<B: Backend> {
    set: ProfileSet<B>,
    alerts: ProfileAlerts,
    lookup: Arc<dyn ContainerLookup>,
    /// Cgroups decided with complete container metadata, and whether as host: no more
    /// look-ups for them, except that a host cgroup whose workload exec later carries a
    /// container's identity (it was judged from a runtime helper's event) is decided again.
    settled: HashMap<u64, bool>,
    host: Arc<ContainerInfo>,
}

impl<B: Backend> Live<B> {
    pub fn new(backend: B, lookup: Arc<dyn ContainerLookup>, hostname: &str) -> Self {
        Self {
            set: ProfileSet::new(backend),
            alerts: ProfileAlerts::new(RateLimit::default(), hostname),
            lookup,
            settled: HashMap::new(),
            host: Arc::new(ContainerInfo::host()),
        }
    }

    pub fn set(&self) -> &ProfileSet<B> {
        &self.set
    }

    /// Replaces the profiles in force, live (see [`ProfileSet::apply_profiles`]).
    pub fn apply_profiles(&mut self, profiles: &[Profile]) -> Result<(), ApplyError> {
        self.set.apply_profiles(profiles)
    }

    /// Decides the cgroup of `e` if it is new, names the profile of a verdict, and returns the
    /// alert a verdict raises (rate limited).
    pub fn observe(&mut self, e: &mut Enriched) -> Result<Option<Alert>, ApplyError> {
        let cg = e.event.cgroup_id;
        let mut info = e.container.clone();
        let decide = match self.settled.get(&cg) {
            None => true,
            Some(&host) => {
                host && is_workload_exec(e) && info.as_ref().is_some_and(|c| !c.is_host())
            }
        };
        if decide {
            let found = info
                .clone()
                .or_else(|| self.lookup.lookup(&e.event, e.process.as_deref()))
                .unwrap_or_else(|| self.host.clone());
            if found.is_host() || is_workload_exec(e) {
                // A container whose runtime has not published its image yet is decided again
                // on its next event.
                if found.is_host() || found.image.is_some() {
                    self.settled.insert(cg, found.is_host());
                }
                self.set.observe(cg, found.clone())?;
            }
            info = Some(found);
        }
        let EventKind::Profile(v) = &mut e.event.kind else {
            return Ok(None);
        };
        if let Some(p) = self.set.profile_of_slot(v.slot) {
            v.profile = p.name.clone();
        }
        if info.is_none() {
            info = self.lookup.lookup(&e.event, e.process.as_deref());
        }
        Ok(self.alerts.admit(e, info.as_deref()))
    }

    /// Decides cgroups that exist already (at start-up: containers started before the agent),
    /// by their cgroup id alone.
    pub fn bootstrap(&mut self, cgroups: impl IntoIterator<Item = u64>) -> Result<(), ApplyError> {
        for cg in cgroups {
            if self.settled.contains_key(&cg) {
                continue;
            }
            let probe = Event {
                ts: 0,
                time: 0,
                tgid: 0,
                tid: 0,
                uid: 0,
                gid: 0,
                euid: 0,
                egid: 0,
                cgroup_id: cg,
                pid_ns: 0,
                mnt_ns: 0,
                vpid: 0,
                comm: String::new(),
                cap_effective: 0,
                cap_permitted: 0,
                kind: EventKind::Exit(osprey_model::event::Exit { status: 0 }),
            };
            let info = self
                .lookup
                .lookup(&probe, None)
                .unwrap_or_else(|| self.host.clone());
            if info.is_host() || info.image.is_some() {
                self.settled.insert(cg, info.is_host());
            }
            self.set.observe(cg, info)?;
        }
        Ok(())
    }

    /// Summaries of rate-limited verdicts whose window closed.
    pub fn flush(&mut self, now_wall_ns: u64) -> Vec<Alert> {
        self.alerts.flush(now_wall_ns)
    }

    /// Forgets cgroups that are gone.
    pub fn retain(&mut self, live: impl Fn(u64) -> bool) -> Result<(), ApplyError> {
        self.settled.retain(|c, _| live(*c));
        self.set.retain(live)
    }

    pub fn suppressed_total(&self) -> u64 {
        self.alerts.suppressed_total
    }
}
