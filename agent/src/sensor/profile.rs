//! The kernel maps of syscall profiles: scope per cgroup, verdict tables per slot, argument
//! rules, and the per-cgroup record of syscalls seen (`osprey profile record`).

use agent_common::{
    ArgRules, MAX_SYSCALL_NR, NO_SLOT, ProfileScope, RecordSeen, args_key, scope_flags,
    verdict_index,
};
use aya::maps::{Array, HashMap, MapData, MapError};

use super::{SensorError, take_map};
use osprey_engine::profile::Compiled;

/// The profile maps of a loaded sensor.
pub struct ProfileMaps {
    scope: HashMap<MapData, u64, ProfileScope>,
    verdicts: Array<MapData, u32>,
    args: HashMap<MapData, u32, ArgRules>,
    record: HashMap<MapData, u64, RecordSeen>,
    /// How many low bits of each argument the kernel reads, by syscall number (those whose
    /// `sys_enter_*` format declares a narrower type than a register).
    arg_bits: std::collections::HashMap<u32, Vec<u8>>,
}

impl ProfileMaps {
    pub(super) fn take(
        ebpf: &mut aya::Ebpf,
        tracefs: &std::path::Path,
    ) -> Result<Self, SensorError> {
        let arg_bits = osprey_model::syscalls::SYSCALL_NUMBERS
            .iter()
            .filter_map(|(nr, name)| {
                let types = super::tracefs::syscall_arg_types(tracefs, name)?;
                let bits: Vec<u8> = types
                    .iter()
                    .map(|t| osprey_engine::profile::arg_bits(t))
                    .collect();
                bits.iter().any(|b| *b < 64).then_some((*nr, bits))
            })
            .collect::<std::collections::HashMap<_, _>>();
        if arg_bits.is_empty() {
            tracing::warn!(
                tracefs = %tracefs.display(),
                "no syscalls:sys_enter_* formats in tracefs (a kernel without \
                 CONFIG_FTRACE_SYSCALLS?): syscall profile conditions compare all 64 bits of \
                 an argument register, also for int arguments, whose upper half the kernel ignores"
            );
        }
        Ok(Self {
            scope: take_map(ebpf, "PROFILE_SCOPE")?,
            verdicts: take_map(ebpf, "PROFILE_VERDICTS")?,
            args: take_map(ebpf, "PROFILE_ARGS")?,
            record: take_map(ebpf, "PROFILE_RECORD")?,
            arg_bits,
        })
    }

    /// How many low bits of argument `index` of syscall `nr` the kernel reads (64 when its
    /// format does not say otherwise).
    pub fn arg_bits(&self, nr: u32, index: u8) -> u8 {
        self.arg_bits
            .get(&nr)
            .and_then(|b| b.get(usize::from(index)))
            .copied()
            .unwrap_or(64)
    }

    /// Starts recording the syscalls of a cgroup (keeps its profile, if any).
    pub fn record_start(&mut self, cgroup: u64) -> Result<(), MapError> {
        let empty = RecordSeen {
            seen: [0; MAX_SYSCALL_NR as usize],
        };
        if self.record.get(&cgroup, 0).is_err() {
            self.record.insert(cgroup, empty, 0)?;
        }
        let mut s = self.scope.get(&cgroup, 0).unwrap_or(ProfileScope {
            slot: NO_SLOT,
            flags: 0,
        });
        s.flags |= scope_flags::RECORD;
        self.scope.insert(cgroup, s, 0)
    }

    /// Syscall numbers a recorded cgroup made so far.
    pub fn recorded(&self, cgroup: u64) -> Vec<u32> {
        match self.record.get(&cgroup, 0) {
            Ok(r) => (0..MAX_SYSCALL_NR)
                .filter(|i| r.seen[*i as usize] != 0)
                .collect(),
            Err(_) => Vec::new(),
        }
    }

    /// Stops recording a cgroup and drops its record.
    pub fn record_stop(&mut self, cgroup: u64) -> Result<(), MapError> {
        if let Ok(mut s) = self.scope.get(&cgroup, 0) {
            s.flags &= !scope_flags::RECORD;
            if s.slot == NO_SLOT {
                self.scope.remove(&cgroup)?;
            } else {
                self.scope.insert(cgroup, s, 0)?;
            }
        }
        let _ = self.record.remove(&cgroup);
        Ok(())
    }

    /// Cgroups with a scope entry, for tests and `--stats`.
    pub fn scope_entries(&self) -> Vec<(u64, ProfileScope)> {
        self.scope.iter().filter_map(Result::ok).collect()
    }
}

/// What live profiles write (`crate::profile::Backend` is implemented with these).
impl ProfileMaps {
    /// A whole verdict table and its argument rules, into a slot nobody points at.
    pub fn write_slot(&mut self, slot: u32, c: &Compiled) -> Result<(), MapError> {
        // Argument rules first: a verdict with HAS_ARGS must find them.
        for (nr, rules) in &c.args {
            self.args.insert(args_key(slot, *nr), *rules, 0)?;
        }
        for (nr, v) in c.verdicts.iter().enumerate() {
            self.verdicts.set(verdict_index(slot, nr as u64), *v, 0)?;
        }
        Ok(())
    }

    /// Removes a slot's argument rules after no cgroup points at it any more.
    pub fn free_slot(&mut self, slot: u32, c: &Compiled) -> Result<(), MapError> {
        for nr in c.args.keys() {
            let _ = self.args.remove(&args_key(slot, *nr));
        }
        Ok(())
    }

    /// Points a cgroup at a slot (or marks it host/unscoped), keeping a record running.
    pub fn set_scope(&mut self, cgroup: u64, scope: ProfileScope) -> Result<(), MapError> {
        // Recording survives a profile change.
        let flags = self
            .scope
            .get(&cgroup, 0)
            .map_or(0, |s| s.flags & scope_flags::RECORD);
        self.scope.insert(
            cgroup,
            ProfileScope {
                slot: scope.slot,
                flags: scope.flags | flags,
            },
            0,
        )
    }

    /// Forgets a cgroup's scope, keeping a record running.
    pub fn remove_scope(&mut self, cgroup: u64) -> Result<(), MapError> {
        match self.scope.get(&cgroup, 0) {
            Ok(s) if s.flags & scope_flags::RECORD != 0 => self.scope.insert(
                cgroup,
                ProfileScope {
                    slot: NO_SLOT,
                    flags: s.flags,
                },
                0,
            ),
            Ok(_) => self.scope.remove(&cgroup),
            Err(_) => Ok(()),
        }
    }
}
