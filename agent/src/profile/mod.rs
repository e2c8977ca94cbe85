//! Seccomp-like syscall profiles: what they say ([`Profile`], loaded from rule files by the
//! rules loader), which cgroups they judge ([`Scope`]), their kernel form ([`compile`]), and
//! how live changes reach the kernel without a gap ([`ProfileSet::apply_profiles`]).
//!
//! The kernel decides (`agent-ebpf/src/profile.rs`); this module only fills its maps through a
//! [`Backend`], so the logic here is tested without a kernel.

pub mod alert;
pub mod import;
pub mod live;
pub mod oci;
pub mod record;

use std::{
    collections::{HashMap, VecDeque},
    sync::Arc,
};

use agent_common::{MAX_PROFILE_SLOTS, ProfileScope};
pub use osprey_engine::profile::{
    ArgCondition, ArgOp, CompileError, Compiled, ContainerSelector, Profile, Scope, SyscallRule,
    compile, compile_with, constant, parse_value,
};
use osprey_model::ContainerInfo;

/// A `--scope` value that names no scope.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ScopeError(String);

/// Parses `--scope` values.
pub fn parse_scope(items: &[String]) -> Result<Scope, ScopeError> {
    let mut sel = ContainerSelector::default();
    for it in items {
        match it.split_once('=') {
            None if it == "host" && items.len() == 1 => return Ok(Scope::Host),
            None if it == "containers" => {}
            Some(("image", v)) => sel.image = Some(v.into()),
            Some(("namespace", v)) => sel.k8s_namespace = Some(v.into()),
            Some(("container", v)) => sel.container = Some(v.into()),
            Some(("label", kv)) => {
                let (k, v) = kv.split_once('=').ok_or_else(|| {
                    ScopeError(format!("--scope label={kv}: expected label=KEY=VALUE"))
                })?;
                sel.pod_labels.insert(k.into(), v.into());
            }
            _ => {
                return Err(ScopeError(format!(
                    "--scope {it}: expected containers, host (alone), image=GLOB, namespace=NS, container=NAME|ID or label=KEY=VALUE"
                )));
            }
        }
    }
    Ok(Scope::Containers(sel))
}

/// Writes profile tables and scope entries into the kernel's maps.
pub trait Backend {
    type Error: std::error::Error + Send + Sync + 'static;
    /// Writes a whole verdict table (and its argument rules) into a slot nobody points at.
    fn write_slot(&mut self, slot: u32, c: &Compiled) -> Result<(), Self::Error>;
    /// Removes a slot's argument rules after no cgroup points at it any more.
    fn free_slot(&mut self, slot: u32, c: &Compiled) -> Result<(), Self::Error>;
    fn set_scope(&mut self, cgroup: u64, scope: ProfileScope) -> Result<(), Self::Error>;
    fn remove_scope(&mut self, cgroup: u64) -> Result<(), Self::Error>;
    /// How many low bits of argument `index` of syscall `nr` the kernel reads: conditions on
    /// a narrower argument compare those bits alone (`osprey_engine::profile::compile_with`).
    fn arg_bits(&self, _nr: u32, _index: u8) -> u8 {
        64
    }
}

/// The kernel's maps, as a sensor loaded them.
impl Backend for crate::sensor::profile::ProfileMaps {
    type Error = aya::maps::MapError;

    fn write_slot(&mut self, slot: u32, c: &Compiled) -> Result<(), Self::Error> {
        crate::sensor::profile::ProfileMaps::write_slot(self, slot, c)
    }
    fn free_slot(&mut self, slot: u32, c: &Compiled) -> Result<(), Self::Error> {
        crate::sensor::profile::ProfileMaps::free_slot(self, slot, c)
    }
    fn set_scope(&mut self, cgroup: u64, scope: ProfileScope) -> Result<(), Self::Error> {
        crate::sensor::profile::ProfileMaps::set_scope(self, cgroup, scope)
    }
    fn remove_scope(&mut self, cgroup: u64) -> Result<(), Self::Error> {
        crate::sensor::profile::ProfileMaps::remove_scope(self, cgroup)
    }
    fn arg_bits(&self, nr: u32, index: u8) -> u8 {
        crate::sensor::profile::ProfileMaps::arg_bits(self, nr, index)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    #[error("profile '{name}': {source}")]
    Compile {
        name: String,
        #[source]
        source: CompileError,
    },
    #[error(
        "{0} profiles enabled; at most {max} can be loaded (each needs two kernel slots during a live change)",
        max = MAX_PROFILE_SLOTS / 2
    )]
    TooMany(usize),
    #[error("writing the profile maps: {0}")]
    Backend(#[source] Box<dyn std::error::Error + Send + Sync>),
}

#[derive(Debug)]
struct Loaded {
    profile: Arc<Profile>,
    slot: u32,
    compiled: Compiled,
}

#[derive(Debug)]
struct CgroupState {
    info: Arc<ContainerInfo>,
    /// Slot written for it in `PROFILE_SCOPE`, if any.
    slot: Option<u32>,
}

/// The profiles in force and which cgroup each judges.
pub struct ProfileSet<B: Backend> {
    backend: B,
    loaded: Vec<Loaded>,
    /// Profile of each slot, kept after the slot is freed until it is reused, so that events
    /// still in the ring buffer name the profile that decided them.
    slot_names: Vec<Option<Arc<Profile>>>,
    /// Free slots, least recently freed first.
    free: VecDeque<u32>,
    cgroups: HashMap<u64, CgroupState>,
}

impl<B: Backend> ProfileSet<B> {
    pub fn new(backend: B) -> Self {
        Self {
            backend,
            loaded: Vec::new(),
            slot_names: vec![None; MAX_PROFILE_SLOTS as usize],
            free: (0..MAX_PROFILE_SLOTS).collect(),
            cgroups: HashMap::new(),
        }
    }

    pub fn backend(&self) -> &B {
        &self.backend
    }

    /// The enabled profiles in force, in load order.
    pub fn profiles(&self) -> impl Iterator<Item = &Profile> {
        self.loaded.iter().map(|l| l.profile.as_ref())
    }

    /// The profile that owns (or last owned) a kernel slot.
    pub fn profile_of_slot(&self, slot: u32) -> Option<&Arc<Profile>> {
        self.slot_names.get(slot as usize)?.as_ref()
    }

    /// The first enabled profile whose scope holds the container.
    fn decide(&self, info: &ContainerInfo) -> Option<u32> {
        self.loaded
            .iter()
            .find(|l| l.profile.scope.matches(info))
            .map(|l| l.slot)
    }

    fn err(e: B::Error) -> ApplyError {
        ApplyError::Backend(Box::new(e))
    }

    /// Replaces the profiles in force with `profiles` (disabled ones are skipped), live.
    ///
    /// No cgroup is ever without the old or the new profile: new and changed profiles are
    /// written into free slots first; then each cgroup's scope entry is flipped from its old
    /// slot to its new one (a single map update the kernel sees atomically); only then are
    /// the old slots freed. An unchanged profile keeps its slot. On error nothing in force
    /// changes: what was written so far is in slots no cgroup points at.
    pub fn apply_profiles(&mut self, profiles: &[Profile]) -> Result<(), ApplyError> {
        let enabled: Vec<&Profile> = profiles.iter().filter(|p| p.enabled).collect();
        if enabled.len() > (MAX_PROFILE_SLOTS / 2) as usize {
            return Err(ApplyError::TooMany(enabled.len()));
        }
        let mut compiled = Vec::with_capacity(enabled.len());
        for p in &enabled {
            let bits = |nr, index| self.backend.arg_bits(nr, index);
            let c = compile_with(p, &bits).map_err(|source| ApplyError::Compile {
                name: p.name.clone(),
                source,
            })?;
            compiled.push(c);
        }
        // 1. New tables into free slots; identical ones keep theirs.
        let mut next: Vec<Loaded> = Vec::with_capacity(enabled.len());
        let mut kept: Vec<u32> = Vec::new();
        let mut taken: Vec<u32> = Vec::new();
        for (p, c) in enabled.into_iter().zip(compiled) {
            let same = self
                .loaded
                .iter()
                .find(|l| l.profile.name == p.name && l.compiled == c && !kept.contains(&l.slot));
            let slot = match same {
                Some(l) => {
                    kept.push(l.slot);
                    l.slot
                }
                None => {
                    let Some(slot) = self.free.pop_front() else {
                        self.free.extend(taken.drain(..));
                        return Err(ApplyError::TooMany(profiles.len()));
                    };
                    if let Err(e) = self.backend.write_slot(slot, &c) {
                        self.free.push_front(slot);
                        self.free.extend(taken.drain(..));
                        return Err(Self::err(e));
                    }
                    taken.push(slot);
                    slot
                }
            };
            next.push(Loaded {
                profile: Arc::new(p.clone()),
                slot,
                compiled: c,
            });
        }
        let old = std::mem::replace(&mut self.loaded, next);
        for l in &self.loaded {
            self.slot_names[l.slot as usize] = Some(l.profile.clone());
        }
        // 2. Flip every known cgroup to its new slot (or out of scope).
        let ids: Vec<u64> = self.cgroups.keys().copied().collect();
        for cg in ids {
            self.refresh(cg).map_err(Self::err)?;
        }
        // 3. Free the slots nothing points at any more.
        for l in old {
            if !kept.contains(&l.slot) {
                self.backend
                    .free_slot(l.slot, &l.compiled)
                    .map_err(Self::err)?;
                self.free.push_back(l.slot);
            }
        }
        Ok(())
    }

    fn refresh(&mut self, cgroup: u64) -> Result<(), B::Error> {
        let Some(st) = self.cgroups.get(&cgroup) else {
            return Ok(());
        };
        let want = self.decide(&st.info);
        if want == st.slot {
            return Ok(());
        }
        match want {
            Some(slot) => self
                .backend
                .set_scope(cgroup, ProfileScope { slot, flags: 0 })?,
            None => self.backend.remove_scope(cgroup)?,
        }
        if let Some(st) = self.cgroups.get_mut(&cgroup) {
            st.slot = want;
        }
        Ok(())
    }

    /// Whether a cgroup was already decided (with complete container metadata).
    pub fn knows(&self, cgroup: u64) -> bool {
        self.cgroups.contains_key(&cgroup)
    }

    /// Decides (or re-decides) the profile of a cgroup from its container identity.
    pub fn observe(&mut self, cgroup: u64, info: Arc<ContainerInfo>) -> Result<(), ApplyError> {
        match self.cgroups.get_mut(&cgroup) {
            Some(st) if st.info == info => return Ok(()),
            Some(st) => st.info = info,
            None => {
                self.cgroups
                    .insert(cgroup, CgroupState { info, slot: None });
            }
        }
        self.refresh(cgroup).map_err(Self::err)
    }

    /// Forgets cgroups that are gone (cgroup ids are inode numbers and get reused).
    pub fn retain(&mut self, mut live: impl FnMut(u64) -> bool) -> Result<(), ApplyError> {
        let gone: Vec<u64> = self.cgroups.keys().copied().filter(|c| !live(*c)).collect();
        for cg in gone {
            if let Some(st) = self.cgroups.remove(&cg)
                && st.slot.is_some()
            {
                self.backend.remove_scope(cg).map_err(Self::err)?;
            }
        }
        Ok(())
    }

    /// Cgroups in scope of some profile, with the profile's name.
    pub fn scoped(&self) -> Vec<(u64, String)> {
        let mut v: Vec<(u64, String)> = self
            .cgroups
            .iter()
            .filter_map(|(cg, st)| {
                let slot = st.slot?;
                Some((*cg, self.profile_of_slot(slot)?.name.clone()))
            })
            .collect();
        v.sort();
        v
    }
}

#[cfg(test)]
mod tests;
