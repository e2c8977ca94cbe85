//! OCI / Docker seccomp profiles (the `linux.seccomp` JSON of the runtime spec, as Docker,
//! podman and the kubelet's `Localhost` profiles use it) to and from Osprey profiles.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

use osprey_model::Action;

use super::{ArgCondition, ArgOp, ContainerSelector, Profile, Scope, SyscallRule};

#[derive(Debug, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Seccomp {
    pub default_action: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_errno_ret: Option<u32>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub architectures: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub syscalls: Vec<SeccompSyscall>,
}

#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SeccompSyscall {
    #[serde(default)]
    pub names: Vec<String>,
    /// The old single-name form.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    pub action: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub args: Option<Vec<SeccompArg>>,
    #[serde(default, skip_serializing)]
    pub includes: Option<Filter>,
    #[serde(default, skip_serializing)]
    pub excludes: Option<Filter>,
}

#[derive(Debug, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SeccompArg {
    pub index: u32,
    pub value: u64,
    #[serde(default)]
    pub value_two: u64,
    pub op: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Filter {
    #[serde(default)]
    pub caps: Option<Vec<String>>,
    #[serde(default)]
    pub arches: Option<Vec<String>>,
    #[serde(default)]
    pub min_kernel: Option<String>,
}

/// The capabilities a container gets by default from podman and CRI-O (containers.conf),
/// which decide the profile's `includes`/`excludes` by capability when none are given.
pub const DEFAULT_CAPS: &[&str] = &[
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FOWNER",
    "CAP_FSETID",
    "CAP_KILL",
    "CAP_NET_BIND_SERVICE",
    "CAP_SETFCAP",
    "CAP_SETGID",
    "CAP_SETPCAP",
    "CAP_SETUID",
    "CAP_SYS_CHROOT",
];

/// How denials of the imported profile become Osprey actions.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Mode {
    /// Alert on what the profile would deny; nothing is stopped.
    Audit,
    /// Kill the process on what the profile would deny.
    Enforce,
}

/// Import settings.
#[derive(Clone, Debug)]
pub struct ImportOptions {
    pub name: String,
    pub mode: Mode,
    pub scope: Scope,
    /// Capabilities of the containers the profile is for (`includes.caps`/`excludes.caps`).
    pub caps: BTreeSet<String>,
    /// The running kernel's (major, minor), for `includes.minKernel`.
    pub kernel: (u32, u32),
}

/// What the import left out, for the comment at the top of the YAML.
#[derive(Debug, Default)]
pub struct ImportReport {
    /// Names not on x86_64 (`_llseek`, `arm_fadvise64_64`...).
    pub foreign_names: BTreeSet<String>,
    /// Entries skipped for their architecture, capabilities or kernel version.
    pub skipped_entries: usize,
}

#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error("not an OCI seccomp profile: {0}")]
    Json(#[from] serde_json::Error),
    #[error("unknown seccomp action '{0}'")]
    Action(String),
    #[error("unknown seccomp argument operator '{0}'")]
    Op(String),
    #[error("argument index {0} is out of range (0..6)")]
    Index(u32),
}

fn action(s: &str, mode: Mode) -> Result<Action, ImportError> {
    let deny = match mode {
        Mode::Audit => Action::Alert,
        Mode::Enforce => Action::Kill,
    };
    Ok(match s {
        "SCMP_ACT_ALLOW" => Action::Allow,
        "SCMP_ACT_LOG" => Action::Log,
        "SCMP_ACT_ERRNO"
        | "SCMP_ACT_KILL"
        | "SCMP_ACT_KILL_PROCESS"
        | "SCMP_ACT_KILL_THREAD"
        | "SCMP_ACT_TRAP"
        | "SCMP_ACT_TRACE"
        | "SCMP_ACT_NOTIFY" => deny,
        other => return Err(ImportError::Action(other.into())),
    })
}

fn is_x86_64(arch: &str) -> bool {
    matches!(arch, "amd64" | "x86_64" | "SCMP_ARCH_X86_64")
}

fn applies(s: &SeccompSyscall, o: &ImportOptions) -> bool {
    if let Some(inc) = &s.includes {
        if let Some(a) = &inc.arches
            && !a.is_empty()
            && !a.iter().any(|x| is_x86_64(x))
        {
            return false;
        }
        if let Some(c) = &inc.caps
            && !c.iter().all(|c| o.caps.contains(c))
        {
            return false;
        }
        if let Some(k) = &inc.min_kernel {
            let mut it = k.split('.').map(|p| p.parse::<u32>().unwrap_or(0));
            let want = (it.next().unwrap_or(0), it.next().unwrap_or(0));
            if o.kernel < want {
                return false;
            }
        }
    }
    if let Some(exc) = &s.excludes {
        if exc
            .arches
            .as_ref()
            .is_some_and(|a| a.iter().any(|x| is_x86_64(x)))
        {
            return false;
        }
        if exc
            .caps
            .as_ref()
            .is_some_and(|c| c.iter().any(|c| o.caps.contains(c)))
        {
            return false;
        }
    }
    true
}

fn arg(a: &SeccompArg) -> Result<ArgCondition, ImportError> {
    if a.index >= 6 {
        return Err(ImportError::Index(a.index));
    }
    let (op, value, mask) = match a.op.as_str() {
        "SCMP_CMP_EQ" => (ArgOp::Eq, a.value, 0),
        "SCMP_CMP_NE" => (ArgOp::Ne, a.value, 0),
        "SCMP_CMP_LT" => (ArgOp::Lt, a.value, 0),
        "SCMP_CMP_LE" => (ArgOp::Le, a.value, 0),
        "SCMP_CMP_GT" => (ArgOp::Gt, a.value, 0),
        "SCMP_CMP_GE" => (ArgOp::Ge, a.value, 0),
        // The runtime spec: `value` is the mask, `valueTwo` what the masked argument must be.
        "SCMP_CMP_MASKED_EQ" => (ArgOp::MaskedEq, a.value_two, a.value),
        other => return Err(ImportError::Op(other.into())),
    };
    Ok(ArgCondition {
        index: a.index as u8,
        op,
        value,
        mask,
    })
}

/// Converts an OCI seccomp profile (JSON text) to an Osprey profile.
pub fn import(json: &str, o: &ImportOptions) -> Result<(Profile, ImportReport), ImportError> {
    let s: Seccomp = serde_json::from_str(json)?;
    let mut report = ImportReport::default();
    let default = action(&s.default_action, o.mode)?;
    let mut syscalls: Vec<SyscallRule> = Vec::new();
    for entry in &s.syscalls {
        if !applies(entry, o) {
            report.skipped_entries += 1;
            continue;
        }
        let act = action(&entry.action, o.mode)?;
        let args = entry
            .args
            .as_deref()
            .unwrap_or_default()
            .iter()
            .map(arg)
            .collect::<Result<Vec<_>, _>>()?;
        let mut names = Vec::new();
        for n in entry.names.iter().chain(entry.name.iter()) {
            if osprey_model::syscalls::number(n).is_some() {
                names.push(n.clone());
            } else {
                report.foreign_names.insert(n.clone());
            }
        }
        if names.is_empty() {
            continue;
        }
        // Entries with the default's action and no conditions change nothing.
        if act == default && args.is_empty() {
            continue;
        }
        // Consecutive unconditional entries with one action merge into one.
        if args.is_empty()
            && let Some(last) = syscalls.last_mut()
            && last.action == act
            && last.args.is_empty()
        {
            last.names.extend(names);
            continue;
        }
        syscalls.push(SyscallRule {
            names,
            action: act,
            args,
        });
    }
    Ok((
        Profile {
            name: o.name.clone(),
            desc: String::new(),
            scope: o.scope.clone(),
            default,
            syscalls,
            enabled: true,
            file: None,
        },
        report,
    ))
}

fn yaml_str(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_else(|_| "\"\"".into())
}

/// A profile as a rule-file item (YAML), loadable with `--rules`.
pub fn to_yaml(p: &Profile) -> String {
    let mut out = String::new();
    out.push_str(&format!("- profile: {}\n", yaml_str(&p.name)));
    if !p.desc.is_empty() {
        out.push_str(&format!("  desc: {}\n", yaml_str(&p.desc)));
    }
    out.push_str("  scope:\n");
    match &p.scope {
        Scope::Host => out.push_str("    host: true\n"),
        Scope::Containers(sel) => {
            if *sel == ContainerSelector::default() {
                out.push_str("    containers: all\n");
            }
            if let Some(i) = &sel.image {
                out.push_str(&format!("    image: {}\n", yaml_str(i)));
            }
            if let Some(n) = &sel.k8s_namespace {
                out.push_str(&format!("    k8s_namespace: {}\n", yaml_str(n)));
            }
            if let Some(c) = &sel.container {
                out.push_str(&format!("    container: {}\n", yaml_str(c)));
            }
            if !sel.pod_labels.is_empty() {
                out.push_str("    pod_labels:\n");
                for (k, v) in &sel.pod_labels {
                    out.push_str(&format!("      {}: {}\n", yaml_str(k), yaml_str(v)));
                }
            }
        }
    }
    out.push_str(&format!("  default: {}\n", p.default));
    if !p.syscalls.is_empty() {
        out.push_str("  syscalls:\n");
    }
    for r in &p.syscalls {
        out.push_str(&format!("    - names: [{}]\n", r.names.join(", ")));
        out.push_str(&format!("      action: {}\n", r.action));
        if !r.args.is_empty() {
            out.push_str("      args:\n");
            for a in &r.args {
                out.push_str(&format!(
                    "        - {{index: {}, op: {}, value: {:#x}",
                    a.index,
                    a.op.as_str(),
                    a.value
                ));
                if a.op == ArgOp::MaskedEq {
                    out.push_str(&format!(", mask: {:#x}", a.mask));
                }
                out.push_str("}\n");
            }
        }
    }
    out
}

/// Syscalls every recorded profile allows besides what was recorded: what a process makes
/// while it starts (exec, the dynamic loader, libc's and a shell's set-up: glibc, musl and
/// busybox `sh` under strace) and ends. A container recorded while running made them before
/// the recording began, and its next start needs them all.
pub const STARTUP_SYSCALLS: &[&str] = &[
    "execve",
    "brk",
    "arch_prctl",
    "mmap",
    "mprotect",
    "munmap",
    "access",
    "openat",
    "newfstatat",
    "fstat",
    "read",
    "pread64",
    "close",
    "readlink",
    "set_tid_address",
    "set_robust_list",
    "rseq",
    "prlimit64",
    "getrandom",
    "getpid",
    "getppid",
    "gettid",
    "getuid",
    "geteuid",
    "getgid",
    "getegid",
    "uname",
    "getcwd",
    "rt_sigaction",
    "rt_sigprocmask",
    "rt_sigreturn",
    "futex",
    "exit",
    "exit_group",
];

/// Syscalls an OCI seccomp profile must allow for the runtime itself. Without
/// `no_new_privileges`, runc loads the filter in its own init process before it drops
/// privileges (see `standard_init_linux.go`), then still closes its file descriptors (`fstatfs`
/// on /proc, `getdents64`, `fcntl`), sets the user and capabilities, checks the working
/// directory, looks the entrypoint up (`faccessat2`, Go's `exec.LookPath`), and syncs in Go's
/// runtime before it execs the entrypoint; an Osprey profile
/// judges the workload only from that exec on. Found with runc 1.1: each missing one fails
/// `runc create` with EPERM.
pub const OCI_RUNTIME_SYSCALLS: &[&str] = &[
    "fstatfs",
    "fcntl",
    "getdents64",
    "close_range",
    "capget",
    "capset",
    "prctl",
    "setgroups",
    "setuid",
    "setgid",
    "setresuid",
    "setresgid",
    "chdir",
    "getcwd",
    "faccessat",
    "faccessat2",
    "getppid",
    "getpid",
    "gettid",
    "tgkill",
    "epoll_ctl",
    "epoll_pwait",
    "futex",
    "nanosleep",
    "sched_yield",
    "sigaltstack",
    "rt_sigaction",
    "rt_sigprocmask",
    "madvise",
    "write",
];

/// An allow-list profile as OCI seccomp JSON: the listed syscalls are allowed, everything else
/// fails with EPERM. For a pod's `securityContext.seccompProfile` (type `Localhost`).
pub fn allow_list_json(allowed: &BTreeSet<String>) -> String {
    let s = Seccomp {
        default_action: "SCMP_ACT_ERRNO".into(),
        default_errno_ret: Some(1),
        architectures: vec!["SCMP_ARCH_X86_64".into()],
        syscalls: vec![SeccompSyscall {
            names: allowed.iter().cloned().collect(),
            action: "SCMP_ACT_ALLOW".into(),
            ..Default::default()
        }],
    };
    serde_json::to_string_pretty(&s).unwrap_or_default()
}

/// An allow-list profile: `allowed` pass, anything else gets `other`.
pub fn allow_list_profile(
    name: &str,
    scope: Scope,
    allowed: &BTreeSet<String>,
    other: Action,
) -> Profile {
    Profile {
        name: name.into(),
        desc: format!(
            "Recorded by osprey profile record: {} syscalls",
            allowed.len()
        ),
        scope,
        default: other,
        syscalls: vec![SyscallRule {
            names: allowed.iter().cloned().collect(),
            action: Action::Allow,
            args: Vec::new(),
        }],
        enabled: true,
        file: None,
    }
}
