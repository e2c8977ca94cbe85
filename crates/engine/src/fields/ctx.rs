//! One event being judged ([`Ctx`]) and what its fields derive once per event ([`EventCache`]).

use std::{cell::OnceCell, sync::Arc};

use osprey_model::{
    ContainerInfo, Process,
    event::{ArgValue, Enriched, EventKind, Syscall},
};

use super::{FieldArg, FieldRef, Val, fd::FdInfo};
use crate::env::{ContainerLookup, DnsNames, ProcessGroups, UserResolver};

/// What the engine knows about an event beyond the event itself.
pub struct Services<'a> {
    pub users: &'a dyn UserResolver,
    pub containers: &'a dyn ContainerLookup,
    pub process_groups: &'a dyn ProcessGroups,
    pub dns: &'a dyn DnsNames,
    pub hostname: &'a str,
}

/// What one event's fields derive, computed at most once per event and kept beside the
/// event, so that every check and the output borrow it instead of deriving and allocating
/// it again (a rule set checks `proc.cmdline` or `fd.name` many times per event).
#[derive(Default)]
pub struct EventCache<'a> {
    pub(super) fd: OnceCell<FdInfo<'a>>,
    pub(super) container: OnceCell<Option<Arc<ContainerInfo>>>,
    pub(super) cmdline: OnceCell<Option<String>>,
    pub(super) args: OnceCell<Option<String>>,
    pub(super) cwd: OnceCell<Option<String>>,
    pub(super) user_name: OnceCell<Option<Arc<str>>>,
    pub(super) sock_name: OnceCell<String>,
}

/// One event being judged: the event, its process and lazily computed extras.
pub struct Ctx<'a> {
    pub en: &'a Enriched,
    pub sc: Option<&'a Syscall>,
    pub evt_num: u64,
    pub(super) svc: &'a Services<'a>,
    pub(super) cache: &'a EventCache<'a>,
    /// Results of the checks rules share, by slot: 0 not evaluated yet, 1 false, 2 true
    /// (see `compile::Node::share_checks`). Empty: nothing is kept.
    pub memo: &'a [std::cell::Cell<u8>],
}

impl<'a> Ctx<'a> {
    pub fn new(
        en: &'a Enriched,
        evt_num: u64,
        svc: &'a Services<'a>,
        cache: &'a EventCache<'a>,
    ) -> Self {
        let sc = match &en.event.kind {
            EventKind::Syscall(sc) => Some(sc),
            _ => None,
        };
        Self {
            en,
            sc,
            evt_num,
            svc,
            cache,
            memo: &[],
        }
    }

    /// With room for the results of `memo.len()` shared checks, all unset.
    pub fn with_memo(mut self, memo: &'a [std::cell::Cell<u8>]) -> Self {
        self.memo = memo;
        self
    }

    /// `evt.type`.
    pub fn evt_type(&self) -> &'a str {
        match &self.en.event.kind {
            EventKind::Syscall(sc) => &sc.name,
            EventKind::Exit(_) => "procexit",
            EventKind::Exec(_) => "execve",
            EventKind::Fork(_) => "clone",
            EventKind::Profile(_) => "profile",
        }
    }

    pub(super) fn process(&self) -> Option<&'a Process> {
        self.en.process.as_deref()
    }

    /// Ancestor `n`: 0 is the process itself, 1 the parent.
    pub(super) fn ancestor(&self, n: usize) -> Option<&'a Process> {
        if n == 0 {
            self.process()
        } else {
            self.en.ancestors.get(n - 1).map(|p| &**p)
        }
    }

    /// The event's container, shared (for the alert to carry): the event's own when the
    /// pipeline attached one (live and recorded events), else what the lookup finds.
    pub fn container_arc(&self) -> Option<Arc<ContainerInfo>> {
        if let Some(c) = &self.en.container {
            return Some(c.clone());
        }
        self.cache
            .container
            .get_or_init(|| self.svc.containers.lookup(&self.en.event, self.process()))
            .clone()
    }

    pub(crate) fn container(&self) -> Option<&'a ContainerInfo> {
        if let Some(c) = &self.en.container {
            return Some(c);
        }
        self.cache
            .container
            .get_or_init(|| self.svc.containers.lookup(&self.en.event, self.process()))
            .as_deref()
    }

    pub(super) fn arg_by_name(&self, name: &str, aliases: &[&str]) -> Option<&'a ArgValue> {
        let sc = self.sc?;
        sc.arg(name)
            .or_else(|| aliases.iter().find_map(|a| sc.arg(a)))
    }

    /// Extracts one field. Unset is None. For `proc.aname` without an index, use
    /// [`Ctx::extract_ancestors`].
    #[inline]
    pub fn extract(&self, f: &FieldRef) -> Option<Val<'a>> {
        (f.def.extract)(self, &f.arg)
    }

    /// The values of an ancestor field over every ancestor (`proc.aname` without an index).
    pub fn extract_ancestors(&self, f: &FieldRef) -> Vec<Val<'a>> {
        let mut out = Vec::with_capacity(self.en.ancestors.len());
        for n in 1..=self.en.ancestors.len() {
            if let Some(v) = (f.def.extract)(self, &FieldArg::Index(n)) {
                out.push(v);
            }
        }
        out
    }
}
