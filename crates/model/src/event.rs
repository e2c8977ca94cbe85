//! Typed events: what the sensor decodes from ring-buffer records, and what the process table,
//! the rule engine, `osprey trace` and recordings work with.
//!
//! These types are plain data with serde derives; nothing here knows about aya. A recording is
//! a JSON-lines file of [`Enriched`] values, and replaying one reproduces what the engine saw.

use std::{borrow::Cow, net::IpAddr, sync::Arc};

use serde::{Deserialize, Serialize};

use crate::process::Process;
pub use crate::process::{ExeLayer, ExeMount, ExecEnv};

/// One thing that happened in the kernel, with the identity of the task that did it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// Nanoseconds since boot (CLOCK_BOOTTIME) when the event was recorded; for a syscall,
    /// when it returned.
    pub ts: u64,
    /// Wall-clock time of `ts`, nanoseconds since the Unix epoch.
    pub time: u64,
    pub tgid: u32,
    pub tid: u32,
    pub uid: u32,
    pub gid: u32,
    pub euid: u32,
    pub egid: u32,
    /// The task's cgroup v2 id (inode number of its cgroup directory).
    pub cgroup_id: u64,
    /// Inode numbers of the pid and mount namespaces.
    pub pid_ns: u32,
    pub mnt_ns: u32,
    /// The process id inside its own pid namespace (equals `tgid` on the host).
    pub vpid: u32,
    /// `task->comm` at the time of the event.
    pub comm: String,
    /// Effective and permitted capability sets (bit N = capability N).
    #[serde(default)]
    pub cap_effective: u64,
    #[serde(default)]
    pub cap_permitted: u64,
    #[serde(flatten)]
    pub kind: EventKind,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum EventKind {
    /// A successful exec: the process now runs `filename` with `args`.
    Exec(Exec),
    /// The task forked a new process or created a thread.
    Fork(Fork),
    /// The process exited (its last thread).
    Exit(Exit),
    /// A completed syscall.
    Syscall(Syscall),
    /// A syscall profile's verdict other than `allow`, decided in the kernel at syscall entry.
    Profile(ProfileVerdict),
}

/// What the kernel did about a profile's verdict.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ActionTaken {
    /// Reported (`log`, `alert`).
    Reported,
    /// SIGKILL was queued at syscall entry: the process dies before it returns to user space.
    Killed,
    /// `kill`, but the signal could not be sent (the task was already exiting).
    KillFailed,
}

impl ActionTaken {
    pub fn as_str(self) -> &'static str {
        match self {
            ActionTaken::Reported => "reported",
            ActionTaken::Killed => "killed",
            ActionTaken::KillFailed => "kill_failed",
        }
    }
}

/// A syscall a profile judged (anything but `allow`), at its entry.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ProfileVerdict {
    /// The profile's name; the agent fills it in from the kernel slot.
    #[serde(default)]
    pub profile: String,
    /// The kernel slot of the profile's verdict table.
    pub slot: u32,
    /// The syscall's name (x86_64), or `syscall_<nr>` for a number with no name.
    pub name: Cow<'static, str>,
    pub nr: u32,
    /// The six argument registers at entry.
    pub args: [u64; 6],
    pub verdict: crate::action::Action,
    pub action_taken: ActionTaken,
    /// The verdict is on an io_uring request that stands for the syscall, judged as it was
    /// submitted (`args` are the request's).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub io_uring: bool,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Exec {
    /// The path given to exec, as the kernel resolved it (`bprm->filename`).
    pub filename: String,
    /// argv, as in `/proc/PID/cmdline`.
    pub args: Vec<String>,
    /// argv was longer than what the kernel captured (4 KiB with the path).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub args_truncated: bool,
    /// The executable file's own name: `memfd:NAME` when it is a memfd, whatever path
    /// (`/dev/fd/3`) exec was given.
    #[serde(default)]
    pub exe_name: String,
    /// Exec loaded an interpreter for `filename` (a `#!` script, a binfmt_misc handler): the
    /// executable is the interpreter. The kernel's own record (`bprm->interp`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub interpreted: bool,
    /// The file exec loaded (the interpreter, for a script) is a 32-bit ELF.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub elf32: bool,
    /// Where the executable sits when it is on overlayfs (a container's root file system).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exe_layer: Option<ExeLayer>,
    /// The executable's mount, when it is another than the task's root mount.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exe_mount: Option<ExeMount>,
    /// The task's cgroup v2 directory as `parent/name` (kernfs names), where container
    /// runtimes put the container id.
    #[serde(default)]
    pub cgroup: String,
    /// The file the kernel loaded (`mm->exe_file`), walked in the kernel: the real binary
    /// behind `/proc/self/exe`, `/dev/fd/3` or a symlink.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exe_file: Option<KernelFile>,
    /// What the kernel read of the environment exec gave the program, before it ran.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub env: Option<ExecEnv>,
    /// What descriptors 0, 1 and 2 were as the program started, from the kernel's own
    /// descriptor table (`None`: closed). A socket is told by its family; a file, a device
    /// (a terminal, /dev/null) and a memfd are all `File`.
    #[serde(default)]
    pub stdio: [Option<crate::fd::FdKind>; 3],
}

/// A file as the kernel holds it: its location walked from its dentries and mounts up to the
/// task's root, not a name a process chose.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct KernelFile {
    /// Which object of the syscall this is.
    pub of: KernelFileOf,
    /// Absolute path as the task's root sees it (a container's file as the container sees
    /// it); `/memfd:NAME` for a memfd, `socket:[INODE]`, `pipe:[INODE]`, `anon_inode:NAME`
    /// for objects on internal mounts, with ` (deleted)` for an unlinked file, as
    /// `/proc/PID/fd` shows them. A path longer than the walk's bound starts with `/...`.
    pub path: String,
    /// `s_magic` of the file system (overlayfs, tmpfs, sockfs...).
    pub fs_magic: u32,
    pub ino: u64,
    /// The file is unlinked (deleted, or never linked).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub deleted: bool,
    /// The walk hit its bound; the root side of the path is missing.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub truncated: bool,
    /// The file is outside the task's root (a detached bind mount such as runc's clone of its
    /// own binary, an escaped chroot, another mount namespace's file reached through a
    /// descriptor); `path` is then its path within its own file system.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub outside_root: bool,
    /// The inode's file type, `S_IFMT >> 12` (8 a regular file, 4 a directory, 1 a FIFO,
    /// 2 a character device, 12 a socket...); 0 when the record does not say, and for an
    /// anonymous inode, which has none.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub file_type: u8,
}

fn is_zero(v: &u8) -> bool {
    *v == 0
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KernelFileOf {
    /// The descriptor the syscall returned (open, openat, creat...).
    Returned,
    /// The syscall's descriptor argument (fchmod's fd, dup2's oldfd, connect's socket...).
    FdArg,
    /// The directory the syscall's relative path argument starts from.
    Dir,
    /// The executable of an exec.
    Exe,
}

impl KernelFile {
    /// `statfs` magic numbers (include/uapi/linux/magic.h).
    pub const SOCKFS_MAGIC: u32 = 0x534f_434b;
    pub const PIPEFS_MAGIC: u32 = 0x5049_5045;
    pub const ANON_INODE_FS_MAGIC: u32 = 0x0904_1934;
    pub const NSFS_MAGIC: u32 = 0x6e73_6673;
    pub const OVERLAYFS_MAGIC: u32 = 0x794c_7630;
    pub const TMPFS_MAGIC: u32 = 0x0102_1994;

    pub fn is_socket(&self) -> bool {
        self.fs_magic == Self::SOCKFS_MAGIC
    }

    pub fn is_pipe(&self) -> bool {
        self.fs_magic == Self::PIPEFS_MAGIC
    }

    pub fn is_memfd(&self) -> bool {
        self.path.starts_with("/memfd:")
    }

    /// The path for matching as a file path: None for objects that are not files in a
    /// directory tree (sockets, pipes, anonymous inodes, namespaces).
    pub fn file_path(&self) -> Option<&str> {
        (self.path.starts_with('/') && !self.outside_root).then_some(self.path.as_str())
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Fork {
    pub child_tid: u32,
    pub child_tgid: u32,
    /// A new thread in the same process rather than a new process.
    pub is_thread: bool,
    /// A new process's id in its own pid namespace, and that namespace's inode number (0 for
    /// a thread, or when unknown).
    #[serde(default)]
    pub child_vpid: u32,
    #[serde(default)]
    pub child_pid_ns: u32,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Exit {
    /// The wait status: exit status in bits 8..16, terminating signal in bits 0..7.
    pub status: u32,
}

impl Exit {
    /// The exit code a shell would show (`$?`): the status, or 128 + the signal.
    pub fn code(&self) -> i32 {
        let sig = self.status & 0x7f;
        if sig == 0 {
            ((self.status >> 8) & 0xff) as i32
        } else {
            128 + sig as i32
        }
    }

    pub fn signal(&self) -> Option<u32> {
        let sig = self.status & 0x7f;
        (sig != 0).then_some(sig)
    }
}

/// Defined beside `Process`, which marks a cut argv with it (process.rs imports nothing from
/// here).
pub use crate::process::TRUNCATED_MARKER;

/// One completed syscall: its decoded arguments and its result.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Syscall {
    /// The syscall's name, as in `syscalls:sys_enter_<name>` and Falco's `evt.type`.
    pub name: Cow<'static, str>,
    /// The syscall number on the architecture the event was recorded on.
    pub nr: u32,
    /// The return value: a result (a new fd, a byte count, 0) or `-errno`.
    pub ret: i64,
    /// Arguments in the syscall's declaration order, decoded by type.
    pub args: Vec<Arg>,
    /// Some captured user memory (a path, argv) was cut short.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub truncated: bool,
    /// The call came through the 32-bit entry (`int $0x80` from any process, or a 32-bit
    /// program); `name`, `nr` and `args` are the x86_64 call it is.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub ia32: bool,
    /// With `ia32`: the calling code ran in 64-bit mode (`int $0x80` in an x86_64 program),
    /// not in a 32-bit program.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub ia32_from_64bit: bool,
    /// Nanoseconds the syscall took, entry to exit; 0 when not measured (the sensor keeps no
    /// state between a syscall's entry and exit).
    pub latency_ns: u64,
    /// The file the kernel used: the descriptor returned, the descriptor argument, or the
    /// directory a relative path starts from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<KernelFile>,
    /// Set for an operation an io_uring ring submitted rather than a syscall; the event reads
    /// as the syscall it stands for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub io_uring: Option<IoUring>,
}

/// What an io_uring operation reported as a syscall adds.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct IoUring {
    /// The opcode without `IORING_OP_` (`OPENAT`, `CONNECT`...).
    pub op: Cow<'static, str>,
    /// The descriptor argument is an index into the ring's registered files, not one of the
    /// process's descriptors.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub fixed_file: bool,
    /// The result went into a registered-file slot of the ring ("direct descriptor"): a
    /// result of 0 is success, not descriptor 0.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub direct: bool,
}

impl Syscall {
    /// The argument called `name`, as Falco's `evt.arg.<name>` finds it.
    pub fn arg(&self, name: &str) -> Option<&ArgValue> {
        self.args.iter().find(|a| a.name == name).map(|a| &a.value)
    }

    /// Whether `value` (one of this syscall's arguments) is the capture that was cut short:
    /// when the kernel said a capture filled its space, the longest captured text is it.
    pub fn is_truncated_arg(&self, value: &ArgValue) -> bool {
        if !self.truncated {
            return false;
        }
        let Some(len) = value.captured_len() else {
            return false;
        };
        let longest = self
            .args
            .iter()
            .filter_map(|a| a.value.captured_len())
            .max()
            .unwrap_or(0);
        len > 0 && len == longest
    }

    /// The error number when the syscall failed.
    pub fn errno(&self) -> Option<i32> {
        (-4095..0).contains(&self.ret).then_some(-self.ret as i32)
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Arg {
    pub name: Cow<'static, str>,
    pub value: ArgValue,
}

/// A decoded syscall argument.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", content = "value", rename_all = "snake_case")]
pub enum ArgValue {
    /// A signed number (counts, pids, signals, modes given as numbers).
    Int(i64),
    /// A file descriptor; `AT_FDCWD` is -100.
    Fd(i64),
    /// A uid or gid; `u32::MAX` means "unchanged" for the set*id family.
    Id(u32),
    /// A permission mode, shown in octal.
    Mode(u32),
    /// A bit set with the symbolic names of its set bits (for example `O_RDWR|O_CREAT`).
    Flags {
        raw: u64,
        names: Vec<Cow<'static, str>>,
    },
    /// A value from an enumeration (a ptrace request, a socket domain) and its name.
    Enum {
        raw: i64,
        name: Option<Cow<'static, str>>,
    },
    /// A path as the process gave it; `resolved` is the absolute path of what the kernel
    /// used: the opened file's own path for a successful open (symlinks, `..` and
    /// `/proc/self/root` followed by the kernel), else the raw path joined to the directory
    /// the kernel resolved for it (the directory descriptor or working directory).
    Path {
        raw: String,
        resolved: Option<String>,
    },
    /// Other text read from user memory.
    Str(String),
    /// A socket address.
    SockAddr(SockAddr),
    /// An argv array.
    Argv(Vec<String>),
    /// A pointer whose contents were not captured.
    Ptr(u64),
}

impl ArgValue {
    /// Bytes of user memory the kernel copied for this value, for text it captured.
    pub fn captured_len(&self) -> Option<usize> {
        match self {
            ArgValue::Path { raw, .. } => Some(raw.len()),
            ArgValue::Str(s) => Some(s.len()),
            ArgValue::Argv(a) => Some(a.iter().map(|s| s.len() + 1).sum()),
            _ => None,
        }
    }

    /// The number behind the value, for numeric comparisons (`evt.rawarg.*`).
    pub fn as_i64(&self) -> Option<i64> {
        match self {
            ArgValue::Int(v) | ArgValue::Fd(v) => Some(*v),
            ArgValue::Id(v) | ArgValue::Mode(v) => Some(i64::from(*v)),
            ArgValue::Flags { raw, .. } => Some(*raw as i64),
            ArgValue::Enum { raw, .. } => Some(*raw),
            ArgValue::Ptr(p) => Some(*p as i64),
            _ => None,
        }
    }
}

/// A decoded `struct sockaddr`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "family", rename_all = "snake_case")]
pub enum SockAddr {
    Inet {
        ip: IpAddr,
        port: u16,
    },
    Unix {
        path: String,
    },
    /// AF_NETLINK, AF_PACKET and others: the family number only.
    Other {
        number: u16,
    },
}

impl std::fmt::Display for SockAddr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SockAddr::Inet {
                ip: IpAddr::V4(ip),
                port,
            } => write!(f, "{ip}:{port}"),
            SockAddr::Inet {
                ip: IpAddr::V6(ip),
                port,
            } => write!(f, "[{ip}]:{port}"),
            SockAddr::Unix { path } => write!(f, "{path}"),
            SockAddr::Other { number } => write!(f, "family {number}"),
        }
    }
}

fn no_ancestors(a: &Arc<[Arc<Process>]>) -> bool {
    a.is_empty()
}

/// An event with the context the process table knows: the process that did it and its
/// ancestors. This is the unit the rule engine judges and a recording stores.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Enriched {
    pub event: Event,
    /// The process, when the table knows it (always, except for a pid it never saw).
    pub process: Option<Arc<Process>>,
    /// Parent first, then its parent, up to init or the table's ancestor limit.
    #[serde(default, skip_serializing_if = "no_ancestors")]
    pub ancestors: Arc<[Arc<Process>]>,
    /// The container the process runs in (`host` outside containers), attached by the live
    /// pipeline so that `osprey trace` shows it and recordings replay with it. Absent in
    /// recordings made before container identity existed; the engine then asks its lookup.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container: Option<Arc<crate::container::ContainerInfo>>,
    /// The file-descriptor table's entry for the descriptor the event uses (`dup2`'s old fd,
    /// `connect`'s socket, `fchmod`'s file...), as it was when the syscall ran; for a syscall
    /// that creates one (open, socket, accept), the new descriptor. None when the event uses
    /// no descriptor or the table does not know it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fd: Option<crate::fd::FdEntry>,
}

impl Enriched {
    /// The parent process, if known.
    pub fn parent(&self) -> Option<&Process> {
        self.ancestors.first().map(|p| p.as_ref())
    }

    /// The Nth ancestor, 1 being the parent (Falco's `proc.aname[N]`).
    pub fn ancestor(&self, n: usize) -> Option<&Process> {
        n.checked_sub(1)
            .and_then(|i| self.ancestors.get(i))
            .map(|p| p.as_ref())
    }
}

/// Capability names by number (include/uapi/linux/capability.h).
pub const CAPS: &[&str] = &[
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_DAC_READ_SEARCH",
    "CAP_FOWNER",
    "CAP_FSETID",
    "CAP_KILL",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETPCAP",
    "CAP_LINUX_IMMUTABLE",
    "CAP_NET_BIND_SERVICE",
    "CAP_NET_BROADCAST",
    "CAP_NET_ADMIN",
    "CAP_NET_RAW",
    "CAP_IPC_LOCK",
    "CAP_IPC_OWNER",
    "CAP_SYS_MODULE",
    "CAP_SYS_RAWIO",
    "CAP_SYS_CHROOT",
    "CAP_SYS_PTRACE",
    "CAP_SYS_PACCT",
    "CAP_SYS_ADMIN",
    "CAP_SYS_BOOT",
    "CAP_SYS_NICE",
    "CAP_SYS_RESOURCE",
    "CAP_SYS_TIME",
    "CAP_SYS_TTY_CONFIG",
    "CAP_MKNOD",
    "CAP_LEASE",
    "CAP_AUDIT_WRITE",
    "CAP_AUDIT_CONTROL",
    "CAP_SETFCAP",
    "CAP_MAC_OVERRIDE",
    "CAP_MAC_ADMIN",
    "CAP_SYSLOG",
    "CAP_WAKE_ALARM",
    "CAP_BLOCK_SUSPEND",
    "CAP_AUDIT_READ",
    "CAP_PERFMON",
    "CAP_BPF",
    "CAP_CHECKPOINT_RESTORE",
];

/// Names of the capabilities set in a 64-bit mask, in capability order.
pub fn cap_names(mask: u64) -> Vec<&'static str> {
    CAPS.iter()
        .enumerate()
        .filter(|(i, _)| mask & (1 << i) != 0)
        .map(|(_, n)| *n)
        .collect()
}
