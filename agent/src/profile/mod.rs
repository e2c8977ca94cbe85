//! Seccomp-like syscall profiles: what they say ([`Profile`], loaded from rule files by the
//! rules loader), which cgroups they judge ([`Scope`]), their kernel form ([`compile`]), and
//! how live changes reach the kernel without a gap ([`ProfileSet::apply_profiles`]).
//!
//! The kernel decides (`agent-ebpf/src/profile.rs`); this module only fills its maps through a
//! [`Backend`], so the logic here is tested without a kernel.

pub mod alert;
pub mod live;
pub mod oci;

use std::{
    collections::{BTreeMap, HashMap, VecDeque},
    fmt,
    sync::Arc,
};

use agent_common::{
    ArgCond, ArgRule, ArgRules, MAX_ARG_CONDS, MAX_ARG_RULES, MAX_PROFILE_SLOTS, MAX_SYSCALL_NR,
    ProfileScope, action, arg_op, verdict,
};
use serde::{Deserialize, Serialize};

use crate::{engine::env::ContainerInfo, rules::diag::Position, sensor::syscall_numbers};

/// What a profile does with a syscall.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// Nothing happens and nothing is reported.
    Allow,
    /// Reported as a `Notice` alert.
    Log,
    /// Reported as a `Warning` alert.
    Alert,
    /// SIGKILL from the kernel at syscall entry, reported as a `Critical` alert.
    Kill,
}

impl Action {
    pub const NAMES: &[&str] = &["allow", "log", "alert", "kill"];

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "allow" => Some(Action::Allow),
            "log" => Some(Action::Log),
            "alert" => Some(Action::Alert),
            "kill" => Some(Action::Kill),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Action::Allow => "allow",
            Action::Log => "log",
            Action::Alert => "alert",
            Action::Kill => "kill",
        }
    }

    pub fn kernel(self) -> u32 {
        match self {
            Action::Allow => action::ALLOW,
            Action::Log => action::LOG,
            Action::Alert => action::ALERT,
            Action::Kill => action::KILL,
        }
    }

    pub fn from_kernel(v: u32) -> Option<Self> {
        match v {
            action::ALLOW => Some(Action::Allow),
            action::LOG => Some(Action::Log),
            action::ALERT => Some(Action::Alert),
            action::KILL => Some(Action::Kill),
            _ => None,
        }
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A comparison of one argument register, as seccomp's `SCMP_CMP_*` (unsigned, 64-bit).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ArgOp {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
    /// `arg & mask == value`.
    MaskedEq,
    /// `arg & value != 0`: any of the bits is set.
    MaskedAny,
}

impl ArgOp {
    pub const NAMES: &[&str] = &[
        "eq",
        "ne",
        "lt",
        "le",
        "gt",
        "ge",
        "masked_eq",
        "masked_any",
    ];

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "eq" => ArgOp::Eq,
            "ne" => ArgOp::Ne,
            "lt" => ArgOp::Lt,
            "le" => ArgOp::Le,
            "gt" => ArgOp::Gt,
            "ge" => ArgOp::Ge,
            "masked_eq" => ArgOp::MaskedEq,
            "masked_any" => ArgOp::MaskedAny,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        Self::NAMES[self as usize]
    }

    fn kernel(self) -> u32 {
        match self {
            ArgOp::Eq => arg_op::EQ,
            ArgOp::Ne => arg_op::NE,
            ArgOp::Lt => arg_op::LT,
            ArgOp::Le => arg_op::LE,
            ArgOp::Gt => arg_op::GT,
            ArgOp::Ge => arg_op::GE,
            ArgOp::MaskedEq => arg_op::MASKED_EQ,
            ArgOp::MaskedAny => arg_op::MASKED_ANY,
        }
    }

    /// The comparison as userspace evaluates it (tests and `osprey profile` tooling).
    pub fn holds(self, arg: u64, value: u64, mask: u64) -> bool {
        match self {
            ArgOp::Eq => arg == value,
            ArgOp::Ne => arg != value,
            ArgOp::Lt => arg < value,
            ArgOp::Le => arg <= value,
            ArgOp::Gt => arg > value,
            ArgOp::Ge => arg >= value,
            ArgOp::MaskedEq => arg & mask == value,
            ArgOp::MaskedAny => arg & value != 0,
        }
    }
}

/// One condition on a syscall argument.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ArgCondition {
    /// Argument index, 0..6.
    pub index: u8,
    pub op: ArgOp,
    pub value: u64,
    /// For `masked_eq`.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub mask: u64,
}

fn is_zero(v: &u64) -> bool {
    *v == 0
}

/// Syscalls that get one action, optionally only when all argument conditions hold.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SyscallRule {
    pub names: Vec<String>,
    pub action: Action,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub args: Vec<ArgCondition>,
}

/// Which tasks a profile judges.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Scope {
    /// Processes outside any container.
    Host,
    /// Containers matching every condition given (none given: all containers).
    Containers(ContainerSelector),
}

/// Conditions on a container; all that are set must hold.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContainerSelector {
    /// A glob (`*`, `?`) on the image reference as the runtime reports it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    /// The pod's Kubernetes namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub k8s_namespace: Option<String>,
    /// Labels the pod must carry, with these values.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub pod_labels: BTreeMap<String, String>,
    /// One container, by name or id (full or a prefix of at least 12 characters).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container: Option<String>,
}

impl Scope {
    /// Whether the container (or `host`) is in scope.
    pub fn matches(&self, c: &ContainerInfo) -> bool {
        match self {
            Scope::Host => c.is_host(),
            Scope::Containers(sel) => !c.is_host() && sel.matches(c),
        }
    }
}

impl ContainerSelector {
    pub fn matches(&self, c: &ContainerInfo) -> bool {
        if let Some(g) = &self.image
            && !c.image.as_deref().is_some_and(|i| glob(g, i))
        {
            return false;
        }
        if let Some(ns) = &self.k8s_namespace
            && c.k8s_ns_name.as_deref() != Some(ns.as_str())
        {
            return false;
        }
        if !self
            .pod_labels
            .iter()
            .all(|(k, v)| c.k8s_pod_labels.get(k) == Some(v))
        {
            return false;
        }
        if let Some(want) = &self.container {
            let by_name = c.name.as_deref() == Some(want.as_str());
            let by_id = want.len() >= 12 && c.full_id.starts_with(want.as_str());
            if !by_name && !by_id {
                return false;
            }
        }
        true
    }

    /// The selector needs runtime metadata (image, pod) that a brand-new container may not
    /// have published yet.
    pub fn needs_metadata(&self) -> bool {
        self.image.is_some()
            || self.k8s_namespace.is_some()
            || !self.pod_labels.is_empty()
            || self.container.is_some()
    }
}

/// `*` matches any run of characters, `?` one character; everything else itself.
pub fn glob(pattern: &str, text: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let t: Vec<char> = text.chars().collect();
    let (mut pi, mut ti) = (0, 0);
    let (mut star, mut mark) = (None, 0);
    while ti < t.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == t[ti]) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some(pi);
            mark = ti;
            pi += 1;
        } else if let Some(s) = star {
            pi = s + 1;
            mark += 1;
            ti = mark;
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|c| *c == '*')
}

/// A loaded profile.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Profile {
    pub name: String,
    pub desc: String,
    pub scope: Scope,
    /// The action for syscalls no entry names.
    pub default: Action,
    /// Entries in file order.
    pub syscalls: Vec<SyscallRule>,
    pub enabled: bool,
    /// Where the profile was (last) defined.
    #[serde(skip)]
    pub file: Option<Position>,
}

/// Why a profile cannot be put in the kernel's form. The loader reports these with the
/// position of the offending entry.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CompileError {
    #[error("unknown syscall '{0}' (not an x86_64 syscall name)")]
    UnknownSyscall(String),
    #[error(
        "syscall '{0}' has more than {MAX_ARG_RULES} entries with argument conditions; the kernel checks at most {MAX_ARG_RULES}"
    )]
    TooManyArgRules(String),
    #[error("an entry has more than {MAX_ARG_CONDS} argument conditions")]
    TooManyConds,
}

/// A profile in the kernel's form: a verdict per syscall number, argument rules for some.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Compiled {
    /// `PROFILE_VERDICTS` row: index = syscall number; the last entry is used for numbers
    /// beyond the table and holds the default.
    pub verdicts: Vec<u32>,
    /// `PROFILE_ARGS` entries by syscall number.
    pub args: BTreeMap<u32, ArgRules>,
}

/// Compiles a profile. Per syscall: the entries with argument conditions in file order (first
/// match wins), then the first entry without conditions, then the profile's default.
pub fn compile(p: &Profile) -> Result<Compiled, CompileError> {
    let default = p.default.kernel();
    let mut verdicts = vec![default; MAX_SYSCALL_NR as usize];
    let mut plain: HashMap<u32, u32> = HashMap::new();
    let mut args: BTreeMap<u32, ArgRules> = BTreeMap::new();
    for rule in &p.syscalls {
        if rule.args.len() > MAX_ARG_CONDS {
            return Err(CompileError::TooManyConds);
        }
        for name in &rule.names {
            let nr = syscall_numbers::number(name)
                .ok_or_else(|| CompileError::UnknownSyscall(name.clone()))?;
            if rule.args.is_empty() {
                plain.entry(nr).or_insert(rule.action.kernel());
                continue;
            }
            let entry = args.entry(nr).or_default();
            let i = entry.nrules as usize;
            if i >= MAX_ARG_RULES {
                return Err(CompileError::TooManyArgRules(name.clone()));
            }
            let mut r = ArgRule {
                action: rule.action.kernel(),
                nconds: rule.args.len() as u32,
                ..Default::default()
            };
            for (j, c) in rule.args.iter().enumerate() {
                r.conds[j] = ArgCond {
                    op: c.op.kernel(),
                    index: u32::from(c.index),
                    value: c.value,
                    mask: c.mask,
                };
            }
            entry.rules[i] = r;
            entry.nrules += 1;
        }
    }
    for (nr, a) in plain {
        verdicts[nr as usize] = a;
    }
    for nr in args.keys() {
        verdicts[*nr as usize] |= verdict::HAS_ARGS;
    }
    Ok(Compiled { verdicts, args })
}

/// Symbolic values allowed in argument conditions, joined with `|`: clone/unshare flags,
/// socket families and types, ptrace requests.
pub fn constant(name: &str) -> Option<u64> {
    use crate::sensor::syscalls::{CLONE_FLAGS, PTRACE_REQUESTS, SOCKET_FAMILIES, SOCKET_TYPES};
    CLONE_FLAGS
        .iter()
        .chain(crate::sensor::syscalls::SOCK_FLAGS)
        .find(|(_, n)| *n == name)
        .map(|(v, _)| *v)
        .or_else(|| {
            SOCKET_FAMILIES
                .iter()
                .chain(SOCKET_TYPES)
                .chain(PTRACE_REQUESTS)
                .find(|(_, n)| *n == name)
                .map(|(v, _)| *v as u64)
        })
}

/// Parses `0x10000000`, `0o755`, `42`, `CLONE_NEWUSER|CLONE_NEWNS`.
pub fn parse_value(s: &str) -> Result<u64, String> {
    let mut total = 0u64;
    for part in s.split('|') {
        let p = part.trim();
        let v = if let Some(h) = p.strip_prefix("0x").or_else(|| p.strip_prefix("0X")) {
            u64::from_str_radix(h, 16).ok()
        } else if let Some(o) = p.strip_prefix("0o") {
            u64::from_str_radix(o, 8).ok()
        } else if let Some(neg) = p.strip_prefix('-') {
            neg.parse::<u64>()
                .ok()
                .map(|n| (n as i64).wrapping_neg() as u64)
        } else if p.starts_with(|c: char| c.is_ascii_digit()) {
            p.parse::<u64>().ok()
        } else {
            constant(p)
        };
        match v {
            Some(v) => total |= v,
            None if p.starts_with(|c: char| c.is_ascii_digit() || c == '-') => {
                return Err(format!("'{p}' is not a number"));
            }
            None => {
                return Err(format!(
                    "unknown constant '{p}' (known: CLONE_*, AF_*, SOCK_*, PTRACE_* names, or a number)"
                ));
            }
        }
    }
    Ok(total)
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
            let c = compile(p).map_err(|source| ApplyError::Compile {
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
