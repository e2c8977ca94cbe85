//! Seccomp-like syscall profiles as rule files state them ([`Profile`]), which containers they
//! judge ([`Scope`]), and their kernel form ([`compile`]): a verdict per syscall number plus
//! argument rules, plain data that the agent writes into the kernel's maps.

use std::collections::{BTreeMap, HashMap};

use agent_common::{
    ArgCond, ArgRule, ArgRules, MAX_ARG_CONDS, MAX_ARG_RULES, MAX_SYSCALL_NR, arg_op, verdict,
};
use osprey_model::{
    Action, ContainerInfo,
    syscalls::{
        self,
        flags::{CLONE_FLAGS, PTRACE_REQUESTS, SOCK_FLAGS, SOCKET_FAMILIES, SOCKET_TYPES},
    },
};
use serde::{Deserialize, Serialize};

use crate::rules::diag::Position;

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

/// The image selector's glob: the same matcher as the rule language's `glob` operator.
pub use osprey_model::glob::glob_match as glob;

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

/// Compiles a profile with every argument compared in full (64 bits): for checking a profile's
/// form. What is put in the kernel is compiled with the kernel's argument widths
/// ([`compile_with`]).
pub fn compile(p: &Profile) -> Result<Compiled, CompileError> {
    compile_with(p, &|_, _| 64)
}

/// How many low bits of an argument register the kernel reads for an argument of C type `ty`
/// (as `syscalls:sys_enter_*` formats declare it): 32 for `int` and the 32-bit typedefs, 16
/// for `umode_t`, else 64 (longs, sizes, pointers, and any type not known here).
pub fn arg_bits(ty: &str) -> u8 {
    match ty.trim() {
        "int" | "unsigned int" | "unsigned" | "signed int" | "u32" | "__u32" | "s32" | "__s32"
        | "pid_t" | "uid_t" | "gid_t" | "qid_t" | "key_serial_t" | "key_perm_t" | "clockid_t"
        | "timer_t" | "mqd_t" | "rwf_t" | "__kernel_pid_t" | "__kernel_uid32_t" => 32,
        "umode_t" | "unsigned short" | "u16" => 16,
        _ => 64,
    }
}

/// Compiles a profile. Per syscall: the entries with argument conditions in file order (first
/// match wins), then the first entry without conditions, then the profile's default.
/// `bits(nr, index)` is how many low bits of argument `index` of syscall `nr` the kernel
/// reads ([`arg_bits`]): a condition on a 32- or 16-bit argument compares those bits alone,
/// as the kernel will use them whatever the rest of the register holds.
pub fn compile_with(p: &Profile, bits: &dyn Fn(u32, u8) -> u8) -> Result<Compiled, CompileError> {
    let default = p.default.kernel();
    let mut verdicts = vec![default; MAX_SYSCALL_NR as usize];
    let mut plain: HashMap<u32, u32> = HashMap::new();
    let mut args: BTreeMap<u32, ArgRules> = BTreeMap::new();
    for rule in &p.syscalls {
        if rule.args.len() > MAX_ARG_CONDS {
            return Err(CompileError::TooManyConds);
        }
        for name in &rule.names {
            let nr =
                syscalls::number(name).ok_or_else(|| CompileError::UnknownSyscall(name.clone()))?;
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
                let (width, keep) = match bits(nr, c.index) {
                    16 => (arg_op::LOW16, 0xffff),
                    32 => (arg_op::LOW32, 0xffff_ffff),
                    _ => (0, u64::MAX),
                };
                r.conds[j] = ArgCond {
                    op: c.op.kernel() | width,
                    index: u32::from(c.index),
                    value: c.value & keep,
                    mask: c.mask & keep,
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
    CLONE_FLAGS
        .iter()
        .chain(SOCK_FLAGS)
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
