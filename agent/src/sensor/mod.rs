//! The sensor: loads Osprey's kernel programs, tells them what to capture, and turns the ring
//! buffer into typed [`Event`]s.
//!
//! Start-up order: check the host (capabilities, BTF, kernel version, tracefs), resolve every
//! kernel-specific offset (struct members from BTF, record fields from tracefs formats), load
//! the object with those offsets as globals, fill the syscall interest map, attach.

pub mod btf;
mod casts;
pub mod decode;
pub mod events;
pub mod losses;
pub mod profile;
pub mod record;
pub mod ring;
pub mod syscalls;
pub mod tracefs;
mod wakeup;

use std::{collections::BTreeSet, path::Path};

use agent_common::{
    CgroupShare, KernelConfig, MAX_SYSCALL_NR, SHARE_KEY_HOST_PROCESS, SHARE_KEY_MNT_NS,
    SyscallSpec, counter, open_filter, spec_flags,
};
use aya::{
    Ebpf, EbpfLoader,
    maps::{Array, HashMap, MapData, PerCpuArray, RingBuf},
    programs::{RawTracePoint, TracePoint, raw_trace_point::RawTracePointLinkId},
};
use osprey_engine::compile::{KernelFilter, Verdict};
use tokio::io::unix::AsyncFd;

pub use decode::{DecodeStats, Decoder};

use osprey_model::event::Event;

/// The kernel programs, built by build.rs (empty when built with AYA_BUILD_SKIP=1).
static OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/agent-ebpf"));

/// Why the sensor could not start. Each message says what to do about it.
#[derive(Debug, thiserror::Error)]
pub enum SensorError {
    #[error(
        "missing capabilities {missing}: Osprey loads eBPF programs and reads other processes' \
         /proc entries. Run it as root, or grant {missing} (in Kubernetes: securityContext.capabilities.add)"
    )]
    Capabilities { missing: String },
    #[error("kernel {release} is too old: Osprey needs Linux 5.8 or newer (BPF ring buffer)")]
    KernelTooOld { release: String },
    #[error(transparent)]
    Btf(#[from] btf::BtfError),
    #[error("{0}")]
    Tracefs(String),
    #[error("this kernel lacks what Osprey cannot run without: {0}")]
    MissingFeature(String),
    #[error("sys_exit per syscall: {0}")]
    ExitEvents(#[from] events::AttachError),
    #[error(
        "this osprey binary was built without its kernel programs (AYA_BUILD_SKIP was set); \
         rebuild with `cargo xtask run`"
    )]
    NoObject,
    #[error("loading the kernel programs failed: {0}{hint}", hint = load_hint(.0))]
    Load(#[source] aya::EbpfError),
    #[error("loading or attaching program {program} failed: {source}")]
    Program {
        program: &'static str,
        #[source]
        source: aya::programs::ProgramError,
    },
    #[error("map {map}: {source}")]
    Map {
        map: &'static str,
        #[source]
        source: aya::maps::MapError,
    },
    #[error("ring buffer: {0}")]
    Io(#[from] std::io::Error),
}

fn load_hint(e: &aya::EbpfError) -> &'static str {
    let s = e.to_string();
    if s.contains("Operation not permitted") || s.contains("EPERM") {
        " (EPERM: the agent needs CAP_BPF and CAP_PERFMON, or root; kernel lockdown in \
         confidentiality mode also forbids it)"
    } else {
        ""
    }
}

/// Sensor settings.
#[derive(Clone, Debug)]
pub struct SensorConfig {
    /// Ring buffer size in bytes: a power of two, at least one page.
    pub ring_buffer_bytes: u32,
    /// Syscalls to capture, by name. Empty means every syscall the sensor knows.
    pub syscalls: BTreeSet<String>,
    /// Where kernel BTF is read from.
    pub btf_path: std::path::PathBuf,
    /// Programs attached, returning at their first check (`ready` stays 0, no syscall of
    /// interest): the floor `cargo xtask bench` measures the cost of merely being attached by.
    pub inert: bool,
    /// Attach `sys_enter`, where syscall profiles (and their recording) are decided. Without
    /// profiles nothing else runs there, and leaving it detached spares every syscall on the
    /// node one program run; [`Sensor::set_entry_hook`] changes it live.
    pub entry_hook: bool,
    /// Records one cgroup may write per millisecond once the ring buffer's last 4 MiB is in
    /// full (0: no limit); see agent-ebpf/src/output.rs.
    pub cgroup_share: u32,
    /// The node's mount namespace (0: unknown), whose processes in the cgroup v2 root each
    /// have a share rather than one for them all.
    pub host_mnt_ns: u32,
    /// Attach `sys_exit` as a BTF tracepoint where it loads (typed reads; see
    /// agent-ebpf/src/task.rs), else as a raw tracepoint.
    pub btf_tracepoint: bool,
    /// In that form, read the objects a path walk reaches through casts where the kernel has
    /// `bpf_rdonly_cast` (sensor/casts.rs).
    pub btf_casts: bool,
    /// Attach `sys_exit` to each wanted syscall's own event where the kernel has no 32-bit
    /// syscall entry (sensor/events.rs).
    pub exit_events: events::ExitEvents,
    /// How often the reader looks at the ring buffer while events flow (see [`EventReader`]):
    /// the longest a record waits to be read, and the window within which the kernel
    /// programs leave the reader asleep.
    pub poll: std::time::Duration,
}

/// [`SensorConfig::poll`] by default (`ring_buffer_poll_us`). Every look wakes the reader's
/// CPU; on this project's VMs a CPU woken every 1.75 ms cost a serial build on the other CPU
/// 4% (a process doing nothing but sleep 1.75 ms: 1.04x; 2.5 ms: 1.01x; 3.5 ms: 1.01x), and
/// the agent's looks were most of its build overhead. 3.5 ms is the alerts' latency budget
/// for it: p99 about 3.8 ms, under the 5 ms goal (docs/benchmarks.md).
pub const DEFAULT_POLL: std::time::Duration = std::time::Duration::from_micros(3_500);

/// The [`SensorConfig::poll`] values accepted: a look at most every half millisecond (each
/// costs the reader tens of microseconds on a VM), and at least every 50 ms.
pub const POLL_RANGE: std::ops::RangeInclusive<std::time::Duration> =
    std::time::Duration::from_micros(500)..=std::time::Duration::from_millis(50);

/// The default share of the ring buffer's reserved room per cgroup: 64 records per millisecond
/// (64,000/s, a quarter of what the agent reads with the default rules), far more than a
/// process that is not flooding writes, and a rate at which one noisy cgroup alone cannot
/// push the ring deep into that room.
pub const DEFAULT_CGROUP_SHARE: u32 = 64;

impl Default for SensorConfig {
    fn default() -> Self {
        Self {
            ring_buffer_bytes: 16 * 1024 * 1024,
            syscalls: BTreeSet::new(),
            btf_path: btf::KERNEL_BTF.into(),
            inert: false,
            entry_hook: true,
            cgroup_share: DEFAULT_CGROUP_SHARE,
            host_mnt_ns: crate::process::host_mnt_ns(),
            btf_tracepoint: true,
            btf_casts: true,
            exit_events: events::ExitEvents::Auto,
            poll: DEFAULT_POLL,
        }
    }
}

/// Kernel-side counters, summed over CPUs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct KernelCounters {
    /// Records lost because the ring buffer was full, per kind.
    pub dropped_exec: u64,
    pub dropped_fork: u64,
    pub dropped_exit: u64,
    pub dropped_syscall: u64,
    /// Syscall records emitted.
    pub syscalls_emitted: u64,
    /// Profile verdict records lost because the ring buffer was full.
    pub dropped_profile: u64,
    /// Profile verdicts other than `allow` (records emitted or dropped).
    pub profile_verdicts: u64,
    /// Processes killed by a profile (`bpf_send_signal` succeeded).
    pub profile_kills: u64,
    /// Records not written because their cgroup had used its share of a ring's reserved room
    /// full (per cgroup: [`Sensor::cgroup_losses`]).
    pub dropped_cgroup_share: u64,
    /// Opens the open filter passed over because no loaded rule could match them (not a
    /// loss: see [`Sensor::set_open_filter`]).
    pub open_filtered: u64,
    /// mprotect, mmap, pkey_mprotect and fcntl calls passed over on their argument and
    /// result, likewise.
    pub calls_filtered: u64,
    /// Runs of the agent's programs the kernel skipped because the same program was already
    /// running on that CPU (`recursion_misses`, Linux 5.12+; `None` where the kernel does not
    /// report it). Every program keeps its work in a per-CPU slot, so the kernel's guard is
    /// what keeps a second run from overwriting the first's; the event the skipped run would
    /// have seen is lost. A hook is entered again on a CPU only where a program can be
    /// preempted (a PREEMPT_RT kernel).
    pub dropped_busy: Option<u64>,
}

impl KernelCounters {
    pub fn dropped(&self) -> u64 {
        self.ring_full()
            + self.dropped_profile
            + self.dropped_cgroup_share
            + self.dropped_busy.unwrap_or(0)
    }

    /// Exec, fork, exit and syscall records a full ring buffer had no room for.
    pub fn ring_full(&self) -> u64 {
        self.dropped_exec + self.dropped_fork + self.dropped_exit + self.dropped_syscall
    }
}

/// Who a share of the ring buffer belongs to (agent-ebpf/src/output.rs).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Share {
    /// A cgroup v2 id.
    Cgroup(u64),
    /// A mount namespace, for tasks in the v2 root (hosts that run containers on cgroup v1).
    MntNs(u32),
    /// A process of the node's own mount namespace in the v2 root, by process id.
    HostProcess(u32),
}

impl Share {
    fn from_key(key: u64) -> Self {
        if key & SHARE_KEY_MNT_NS != 0 {
            Share::MntNs(key as u32)
        } else if key & SHARE_KEY_HOST_PROCESS != 0 {
            Share::HostProcess(key as u32)
        } else {
            Share::Cgroup(key)
        }
    }
}

/// What one share lost, from the kernel's `CGROUP_SHARE` map.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CgroupLoss {
    pub share: Share,
    /// Records over its share of a ring's reserved room full.
    pub over_share: u64,
    /// Records the full ring had no room for.
    pub ring_full: u64,
}

/// Loaded and attached kernel programs.
pub struct Sensor {
    // Owns the programs and their links: dropping the sensor detaches everything.
    ebpf: Ebpf,
    specs: Array<MapData, SyscallSpec>,
    counters: PerCpuArray<MapData, u64>,
    shares: HashMap<MapData, u64, CgroupShare>,
    /// The most skipped runs read so far: a program's fdinfo that could not be read once
    /// would lower the sum, and the next read would count the difference again.
    busy_seen: std::sync::atomic::AtomicU64,
    open_verdicts: Array<MapData, u32>,
    open_keys: HashMap<MapData, open_filter::Key, u8>,
    open_sets: Array<MapData, open_filter::SetSig>,
    ring: Option<RingBuf<MapData>>,
    next_look: Option<wakeup::NextLook>,
    current: Vec<SyscallSpec>,
    kernel: String,
    /// The io_uring submission tracepoint, when io_uring requests are reported.
    uring_submit: Option<&'static str>,
    /// `sys_enter`'s link while it is attached (see [`SensorConfig::entry_hook`]).
    entry_link: Option<RawTracePointLinkId>,
    /// Where tracefs is mounted (the syscalls' argument types, for profiles).
    tracefs: std::path::PathBuf,
    /// `sys_exit` on each wanted syscall's event, when attached that way.
    exit_events: Option<events::Attached>,
    /// The reader's steady interval ([`SensorConfig::poll`], within [`POLL_RANGE`]).
    poll: std::time::Duration,
}

impl Drop for Sensor {
    /// The per-syscall events detached together (events.rs, `Attached::retain`) before the
    /// object drops its other links one by one.
    fn drop(&mut self) {
        if let Some(attached) = &mut self.exit_events {
            let _ = attached.retain(&mut self.ebpf, &BTreeSet::new());
        }
    }
}

/// Checks the effective capabilities the sensor needs and names the missing ones.
fn check_capabilities() -> Result<(), SensorError> {
    const NEEDED: &[(u32, &str)] = &[(39, "CAP_BPF"), (38, "CAP_PERFMON")];
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let eff = status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
        .unwrap_or(0);
    // CAP_SYS_ADMIN implies both on kernels before 5.8 and still works for them after.
    if eff & (1 << 21) != 0 {
        return Ok(());
    }
    let missing: Vec<&str> = NEEDED
        .iter()
        .filter(|(bit, _)| eff & (1 << bit) == 0)
        .map(|(_, n)| *n)
        .collect();
    if missing.is_empty() {
        Ok(())
    } else {
        Err(SensorError::Capabilities {
            missing: missing.join(" and "),
        })
    }
}

fn kernel_release() -> String {
    std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

fn check_kernel(release: &str) -> Result<(), SensorError> {
    let mut it = release.split(|c: char| !c.is_ascii_digit());
    let major: u32 = it.next().and_then(|s| s.parse().ok()).unwrap_or(0);
    let minor: u32 = it.next().and_then(|s| s.parse().ok()).unwrap_or(0);
    if (major, minor) < (5, 8) {
        return Err(SensorError::KernelTooOld {
            release: release.to_string(),
        });
    }
    Ok(())
}

/// Kernels since 5.11 charge BPF memory to the cgroup and ignore RLIMIT_MEMLOCK; older ones need
/// it raised. Failing to raise it (no CAP_SYS_RESOURCE) is not fatal.
fn raise_memlock() {
    let lim = libc::rlimit {
        rlim_cur: libc::RLIM_INFINITY,
        rlim_max: libc::RLIM_INFINITY,
    };
    // SAFETY: a valid rlimit struct.
    if unsafe { libc::setrlimit(libc::RLIMIT_MEMLOCK, &lim) } != 0 {
        tracing::debug!(
            "could not raise RLIMIT_MEMLOCK ({}); fine on kernels >= 5.11",
            std::io::Error::last_os_error()
        );
    }
}

/// One value the kernel programs are given: a struct member's byte offset from BTF
/// (`task_struct.cred`), a type's size (`sizeof(upid)`), or a tracepoint record field's offset
/// from tracefs (`sched_process_exit.group_dead`).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Offset {
    pub name: String,
    pub value: u32,
}

/// Something the running kernel has or lacks, and what Osprey does without it.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Feature {
    pub name: &'static str,
    pub available: bool,
    /// What was found, or what is missing from the agent's view when it is absent.
    pub detail: String,
}

/// What the running kernel offers Osprey: its release, the features found, and every offset
/// handed to the kernel programs (`osprey kernel` prints it; `osprey run` logs the features).
#[derive(Clone, Debug)]
pub struct KernelReport {
    pub release: String,
    /// The io_uring submission tracepoint, when this kernel's requests can be reported.
    pub uring_submit: Option<&'static str>,
    pub config: KernelConfig,
    pub offsets: Vec<Offset>,
    pub features: Vec<Feature>,
    /// The kernel's type id of `btf_trace_sys_exit`, where BTF tracepoints can name it (the
    /// BTF read is the kernel's own, `/sys/kernel/btf/vmlinux`).
    pub sys_exit_typedef: Option<u32>,
    /// The BTF ids `sys_exit_cast` is patched with (sensor/casts.rs), or why there are none.
    pub cast_ids: Result<casts::CastIds, String>,
    /// What the kernel's 32-bit syscall entry does (sensor/events.rs).
    pub entry32: events::Entry32,
}

/// Features whose absence is a documented degradation rather than a reason not to start.
pub const OPTIONAL_FEATURES: &[&str] = &[
    "exit_group_dead",
    "overlayfs_btf",
    "io_uring_ops",
    "bpf_loop",
    "bpf_rdonly_cast",
    "no_ia32_entry",
];

/// The environment variable that makes the agent look up another member name instead of one
/// it needs: `OSPREY_BTF_RENAME=task_struct.cred=no_such_field[,...]`. For testing what a
/// kernel that moved a field does to start-up (the kernel matrix in `cargo xtask kernels
/// --break` uses it); never set it on a node.
pub const BTF_RENAME_ENV: &str = "OSPREY_BTF_RENAME";

/// Parses `struct.member=replacement` pairs, comma-separated.
fn btf_renames(spec: &str) -> Vec<(String, String)> {
    spec.split(',')
        .filter_map(|pair| pair.split_once('='))
        .map(|(from, to)| (from.trim().to_string(), to.trim().to_string()))
        .filter(|(from, to)| !from.is_empty() && !to.is_empty())
        .collect()
}

/// Reads every offset the kernel programs need from BTF and tracefs, and notes what the
/// kernel has. A member the agent cannot do without is an error naming the struct and member.
pub fn kernel_report(btf_path: &Path, tracefs: &Path) -> Result<KernelReport, SensorError> {
    let btf = btf::Btf::from_file(btf_path)?;
    let renames = std::env::var(BTF_RENAME_ENV)
        .map(|v| btf_renames(&v))
        .unwrap_or_default();
    let offsets = std::cell::RefCell::new(Vec::new());
    let m = |s: &str, p: &str| {
        let wanted = format!("{s}.{p}");
        let p = match renames.iter().find(|(from, _)| *from == wanted) {
            Some((_, to)) => {
                tracing::warn!("{BTF_RENAME_ENV}: looking up {s}.{to} instead of {wanted}");
                to.as_str()
            }
            None => p,
        };
        let value = btf.member_offset(s, p)?;
        offsets.borrow_mut().push(Offset {
            name: format!("{s}.{p}"),
            value,
        });
        Ok::<u32, btf::BtfError>(value)
    };
    let size = |t: &str| {
        let value = btf.type_size(t)?;
        offsets.borrow_mut().push(Offset {
            name: format!("sizeof({t})"),
            value,
        });
        Ok::<u32, btf::BtfError>(value)
    };
    let field = |tp: &str, format: &tracefs::Format, f: &str| {
        let value = format.offset(f);
        if let Some(value) = value {
            offsets.borrow_mut().push(Offset {
                name: format!("{tp}.{f} (tracefs)"),
                value,
            });
        }
        value
    };
    let exit = tracefs::Format::read(tracefs, "sched", "sched_process_exit")?;
    let exit_group_dead = field("sched_process_exit", &exit, "group_dead");
    #[cfg(target_arch = "x86_64")]
    let (regs, nr) = (["di", "si", "dx", "r10", "r8", "r9"], "orig_ax");
    // overlayfs may be a module without vmlinux BTF: then layers are simply not reported.
    let ovl = (|| -> Result<(u32, u32, u32, u32), btf::BtfError> {
        Ok((
            m("ovl_inode", "vfs_inode")?,
            m("ovl_inode", "__upperdentry")?,
            m("ovl_inode", "oe")?,
            m("ovl_entry", "__numlower")?,
        ))
    })();
    let mut regs_args = [0u32; 6];
    for (i, r) in regs.iter().enumerate() {
        regs_args[i] = m("pt_regs", r)?;
    }
    // The 32-bit entry's argument registers, and the task's bit saying a call came through it
    // (`TS_COMPAT` in `thread_info.status`, which `in_ia32_syscall()` tests).
    #[cfg(target_arch = "x86_64")]
    let (compat_regs, compat_status) = (["bx", "cx", "dx", "si", "di", "bp"], 0x0002);
    // `__USER_CS`: GDT entry 6, privilege level 3; 32-bit code runs in `__USER32_CS` (0x23).
    #[cfg(target_arch = "x86_64")]
    let user64_cs = 0x33;
    let mut regs_compat_args = [0u32; 6];
    for (i, r) in compat_regs.iter().enumerate() {
        regs_compat_args[i] = m("pt_regs", r)?;
    }
    // Renamed to __parent in Linux 6.15 (kernfs: RCU-protect the parent pointer).
    let kernfs_parent = if btf.member_offset("kernfs_node", "__parent").is_ok() {
        m("kernfs_node", "__parent")?
    } else {
        m("kernfs_node", "parent")?
    };
    let ovl_ok = ovl.as_ref().ok().copied();
    // Renamed to d_shortname in Linux 6.14. Read as words, so used only where 8-aligned (it
    // follows pointers: always, in practice); 0 makes the open filter read every name alone.
    let dentry_iname = m("dentry", "d_shortname")
        .or_else(|_| m("dentry", "d_iname"))
        .map_or(0, |o| if o % 8 == 0 { o } else { 0 });
    let uring = uring_offsets(&btf, tracefs, &m, &field);
    let config = KernelConfig {
        ready: 1,
        agent_tgid: std::process::id(),
        task_cred: m("task_struct", "cred")?,
        task_nsproxy: m("task_struct", "nsproxy")?,
        task_thread_pid: m("task_struct", "thread_pid")?,
        task_pid: m("task_struct", "pid")?,
        task_tgid: m("task_struct", "tgid")?,
        task_mm: m("task_struct", "mm")?,
        task_exit_code: m("task_struct", "exit_code")?,
        task_group_leader: m("task_struct", "group_leader")?,
        cred_euid: m("cred", "euid")?,
        cred_egid: m("cred", "egid")?,
        cred_uid: m("cred", "uid")?,
        cred_gid: m("cred", "gid")?,
        task_comm: m("task_struct", "comm")?,
        kernfs_id: m("kernfs_node", "id")?,
        cred_cap_effective: m("cred", "cap_effective")?,
        cred_cap_permitted: m("cred", "cap_permitted")?,
        nsproxy_mnt_ns: m("nsproxy", "mnt_ns")?,
        mnt_ns_inum: m("mnt_namespace", "ns.inum")?,
        pid_level: m("pid", "level")?,
        pid_numbers: m("pid", "numbers")?,
        upid_size: size("upid")?,
        upid_nr: m("upid", "nr")?,
        upid_ns: m("upid", "ns")?,
        pid_ns_inum: m("pid_namespace", "ns.inum")?,
        mm_arg_start: m("mm_struct", "arg_start")?,
        mm_arg_end: m("mm_struct", "arg_end")?,
        mm_env_start: m("mm_struct", "env_start")?,
        mm_env_end: m("mm_struct", "env_end")?,
        regs_args,
        regs_nr: m("pt_regs", nr)?,
        regs_compat_args,
        task_compat: m("task_struct", "thread_info.status")?,
        compat_status,
        regs_cs: m("pt_regs", "cs")?,
        user64_cs,
        bprm_filename: m("linux_binprm", "filename")?,
        bprm_interp: m("linux_binprm", "interp")?,
        bprm_buf: m("linux_binprm", "buf")?,
        exit_group_dead: exit_group_dead.unwrap_or(u32::MAX),
        task_cgroups: m("task_struct", "cgroups")?,
        css_set_dfl_cgrp: m("css_set", "dfl_cgrp")?,
        cgroup_kn: m("cgroup", "kn")?,
        kernfs_name: m("kernfs_node", "name")?,
        kernfs_parent,
        mm_exe_file: m("mm_struct", "exe_file")?,
        file_inode: m("file", "f_inode")?,
        file_dentry: m("file", "f_path.dentry")?,
        dentry_name: m("dentry", "d_name.name")?,
        inode_sb: m("inode", "i_sb")?,
        sb_magic: m("super_block", "s_magic")?,
        sb_flags: m("super_block", "s_flags")?,
        vfsmount_flags: m("vfsmount", "mnt_flags")?,
        inode_mode: m("inode", "i_mode")?,
        file_private_data: m("file", "private_data")?,
        socket_sk: m("socket", "sk")?,
        sock_family: m("sock", "__sk_common.skc_family")?,
        ovl_ok: ovl_ok.is_some() as u32,
        ovl_vfs_inode: ovl_ok.map_or(0, |o| o.0),
        ovl_upperdentry: ovl_ok.map_or(0, |o| o.1),
        ovl_oe: ovl_ok.map_or(0, |o| o.2),
        ovl_entry_numlower: ovl_ok.map_or(0, |o| o.3),
        task_fs: m("task_struct", "fs")?,
        fs_root: m("fs_struct", "root")?,
        fs_pwd: m("fs_struct", "pwd")?,
        task_files: m("task_struct", "files")?,
        files_fdt: m("files_struct", "fdt")?,
        files_fdtab: m("files_struct", "fdtab")?,
        fdt_max_fds: m("fdtable", "max_fds")?,
        fdt_fd: m("fdtable", "fd")?,
        path_mnt: m("path", "mnt")?,
        path_dentry: m("path", "dentry")?,
        file_path: m("file", "f_path")?,
        dentry_parent: m("dentry", "d_parent")?,
        dentry_inode: m("dentry", "d_inode")?,
        dentry_hash_pprev: m("dentry", "d_hash.pprev")?,
        dentry_name_len: m("dentry", "d_name.len")?,
        dentry_iname,
        inode_ino: m("inode", "i_ino")?,
        vfsmount_root: m("vfsmount", "mnt_root")?,
        mount_mnt: m("mount", "mnt")?,
        mount_parent: m("mount", "mnt_parent")?,
        mount_mountpoint: m("mount", "mnt_mountpoint")?,
        ..KernelConfig::ZERO
    };
    let mut config = config;
    config.fill_spans();
    let uring_submit = uring.as_ref().ok().map(|u| u.submit_tracepoint);
    let uring_detail = match uring {
        Ok(u) => {
            u.apply(&mut config);
            format!(
                "io_uring requests reported, and judged by syscall profiles, as the syscalls \
                 they stand for (tracepoint io_uring:{})",
                u.submit_tracepoint
            )
        }
        Err(why) => format!(
            "io_uring operations are not reported ({why}), nor judged by syscall profiles; \
             io_uring_setup and io_uring_enter still are (a profile can kill io_uring_setup)"
        ),
    };

    let release = kernel_release();
    let tracepoint = |category: &str, name: &str| {
        tracefs
            .join("events")
            .join(category)
            .join(name)
            .join("format")
            .is_file()
    };
    let mut features = vec![
        Feature {
            name: "btf",
            available: true,
            detail: btf_path.display().to_string(),
        },
        Feature {
            name: "ring_buffer",
            available: check_kernel(&release).is_ok(),
            detail: "BPF ring buffer (Linux 5.8)".into(),
        },
    ];
    for (category, name, without) in [
        ("sched", "sched_process_exec", "no exec events"),
        ("sched", "sched_process_exit", "no exit events"),
        ("sched", "sched_process_fork", "no fork events"),
        (
            "raw_syscalls",
            "sys_enter",
            "no syscall events, no profiles",
        ),
        ("raw_syscalls", "sys_exit", "no syscall events"),
    ] {
        let found = tracepoint(category, name);
        features.push(Feature {
            name,
            available: found,
            detail: if found {
                format!("tracepoint {category}:{name}")
            } else {
                format!("tracepoint {category}:{name} missing: {without}")
            },
        });
    }
    features.push(Feature {
        name: "exit_group_dead",
        available: exit_group_dead.is_some(),
        detail: if exit_group_dead.is_some() {
            "sched_process_exit records say when the last thread exits (Linux 6.13)".into()
        } else {
            "sched_process_exit has no group_dead field (before Linux 6.13): a process's exit \
             is reported when its thread-group leader exits"
                .into()
        },
    });
    features.push(Feature {
        name: "overlayfs_btf",
        available: ovl_ok.is_some(),
        detail: match &ovl {
            Ok(_) => {
                "overlayfs types in BTF: container executables are placed in image layers".into()
            }
            Err(btf::BtfError::NoType(t)) => format!(
                "no `{t}` in vmlinux BTF (overlayfs is a module on this kernel, and Osprey does \
                 not read module BTF): proc.is_exe_upper_layer and proc.is_exe_lower_layer \
                 stay false"
            ),
            Err(e) => format!(
                "overlayfs types unusable ({e}): proc.is_exe_upper_layer and \
                 proc.is_exe_lower_layer stay false"
            ),
        },
    });
    features.push(Feature {
        name: "io_uring_ops",
        available: config.uring_ok == 1,
        detail: uring_detail,
    });
    let has_loop = btf.has_function("bpf_loop");
    features.push(Feature {
        name: "bpf_loop",
        available: has_loop,
        detail: if has_loop {
            "bpf_loop (Linux 5.17): the environment is read whole at exec, 4 KiB at a time".into()
        } else {
            format!(
                "no bpf_loop (before Linux 5.17): the environment is read an entry at a time \
                 at exec, up to {} entries; past that proc.env comes from /proc/PID/environ",
                agent_common::ENV_READS
            )
        },
    });
    features.push(Feature {
        name: "kernfs_parent",
        available: true,
        detail: if btf.member_offset("kernfs_node", "__parent").is_ok() {
            "kernfs_node.__parent (Linux 6.15)".into()
        } else {
            "kernfs_node.parent (before Linux 6.15)".into()
        },
    });
    // Ids are the running kernel's only in its own BTF: another file's would name another type.
    let own_btf = btf_path == Path::new(btf::KERNEL_BTF);
    let sys_exit_typedef = own_btf
        .then(|| btf.tracepoint_typedef("sys_exit").ok())
        .flatten();
    let cast_ids = if own_btf {
        casts::CastIds::find(&btf)
    } else {
        Err(format!(
            "BTF read from {}, not the kernel's own: its type ids may not be the kernel's",
            btf_path.display()
        ))
    };
    features.push(Feature {
        name: "bpf_rdonly_cast",
        available: cast_ids.is_ok(),
        detail: match &cast_ids {
            Ok(_) => "bpf_rdonly_cast (Linux 6.2): a captured or judged open's file, dentries \
                      and mounts read with plain loads"
                .into(),
            Err(why) => format!(
                "{why}: a captured or judged open's file, dentries and mounts are read with \
                 a helper call each"
            ),
        },
    });
    let entry32 = events::entry32();
    features.push(Feature {
        name: "no_ia32_entry",
        available: entry32 == events::Entry32::Off,
        detail: match &entry32 {
            events::Entry32::Off => "the 32-bit syscall entry is off (int $0x80 faults): \
                                     sys_exit is attached to each wanted syscall's own event, \
                                     other syscalls run no program"
                .into(),
            entry => format!(
                "the 32-bit syscall entry is {entry}, and the per-syscall events skip its \
                 calls: sys_exit runs for every syscall (ia32_emulation=false at boot, Linux \
                 6.7, turns the entry off where no 32-bit program runs)"
            ),
        },
    });
    Ok(KernelReport {
        release,
        uring_submit,
        config,
        offsets: offsets.into_inner(),
        features,
        sys_exit_typedef,
        cast_ids,
        entry32,
    })
}

/// Where io_uring's requests are read from on this kernel.
struct UringOffsets {
    submit_tracepoint: &'static str,
    values: KernelConfig,
}

impl UringOffsets {
    fn apply(&self, c: &mut KernelConfig) {
        let v = &self.values;
        c.uring_ok = 1;
        c.uring_submit_req = v.uring_submit_req;
        c.uring_submit_opcode = v.uring_submit_opcode;
        c.uring_submit_flags = v.uring_submit_flags;
        c.uring_complete_req = v.uring_complete_req;
        c.uring_complete_res = v.uring_complete_res;
        c.req_cmd = v.req_cmd;
        c.req_opcode = v.req_opcode;
        c.req_fd = v.req_fd;
        c.filename_name = v.filename_name;
        c.open_dfd = v.open_dfd;
        c.open_file_slot = v.open_file_slot;
        c.open_filename = v.open_filename;
        c.open_flags = v.open_flags;
        c.open_mode = v.open_mode;
        c.unlink_dfd = v.unlink_dfd;
        c.unlink_flags = v.unlink_flags;
        c.unlink_filename = v.unlink_filename;
        c.rename_old_dfd = v.rename_old_dfd;
        c.rename_new_dfd = v.rename_new_dfd;
        c.rename_oldpath = v.rename_oldpath;
        c.rename_newpath = v.rename_newpath;
        c.rename_flags = v.rename_flags;
        c.connect_addr = v.connect_addr;
        c.connect_addr_len = v.connect_addr_len;
        c.accept_flags = v.accept_flags;
        c.accept_file_slot = v.accept_file_slot;
        c.socket_domain = v.socket_domain;
        c.socket_type = v.socket_type;
        c.socket_protocol = v.socket_protocol;
        c.socket_file_slot = v.socket_file_slot;
        c.sr_buf = v.sr_buf;
        c.sr_len = v.sr_len;
        c.sr_msg_flags = v.sr_msg_flags;
        c.splice_fd_in = v.splice_fd_in;
        c.splice_len = v.splice_len;
        c.splice_flags = v.splice_flags;
    }
}

/// The tracepoint fields and BTF members io_uring reporting needs, or why it cannot be done
/// here (Linux 5.10's tracepoints carry no request; io_uring compiled out).
fn uring_offsets(
    btf: &btf::Btf,
    tracefs: &Path,
    m: &dyn Fn(&str, &str) -> Result<u32, btf::BtfError>,
    field: &dyn Fn(&str, &tracefs::Format, &str) -> Option<u32>,
) -> Result<UringOffsets, String> {
    // Renamed from io_uring_submit_sqe in Linux 6.4; both carry the request since 5.19.
    let (submit_tp, submit) = ["io_uring_submit_req", "io_uring_submit_sqe"]
        .into_iter()
        .find_map(|tp| {
            tracefs::Format::read(tracefs, "io_uring", tp)
                .ok()
                .map(|f| (tp, f))
        })
        .ok_or("no io_uring submission tracepoint")?;
    let complete = tracefs::Format::read(tracefs, "io_uring", "io_uring_complete")
        .map_err(|_| "no io_uring_complete tracepoint".to_string())?;
    let tp_field = |tp: &str, f: &tracefs::Format, name: &str| {
        field(tp, f, name).ok_or(format!(
            "tracepoint io_uring:{tp} has no `{name}` field (before Linux 5.19)"
        ))
    };
    let mut v = KernelConfig::ZERO;
    v.uring_submit_req = tp_field(submit_tp, &submit, "req")?;
    v.uring_submit_opcode = tp_field(submit_tp, &submit, "opcode")?;
    v.uring_submit_flags = tp_field(submit_tp, &submit, "flags")?;
    v.uring_complete_req = tp_field("io_uring_complete", &complete, "req")?;
    v.uring_complete_res = tp_field("io_uring_complete", &complete, "res")?;
    let b = |s: &str, p: &str| m(s, p).map_err(|e| e.to_string());
    // The opcode structs live in io_uring/*.c; BTF has them when the kernel has io_uring.
    if btf.member_offset("io_kiocb", "cmd").is_err() {
        return Err("no io_kiocb.cmd in BTF (io_uring before Linux 6.0)".into());
    }
    v.req_cmd = b("io_kiocb", "cmd")?;
    v.req_opcode = b("io_kiocb", "opcode")?;
    v.req_fd = b("io_kiocb", "cqe.fd")?;
    v.filename_name = b("filename", "name")?;
    v.open_dfd = b("io_open", "dfd")?;
    v.open_file_slot = b("io_open", "file_slot")?;
    v.open_filename = b("io_open", "filename")?;
    v.open_flags = b("io_open", "how.flags")?;
    v.open_mode = b("io_open", "how.mode")?;
    v.unlink_dfd = b("io_unlink", "dfd")?;
    v.unlink_flags = b("io_unlink", "flags")?;
    v.unlink_filename = b("io_unlink", "filename")?;
    v.rename_old_dfd = b("io_rename", "old_dfd")?;
    v.rename_new_dfd = b("io_rename", "new_dfd")?;
    v.rename_oldpath = b("io_rename", "oldpath")?;
    v.rename_newpath = b("io_rename", "newpath")?;
    v.rename_flags = b("io_rename", "flags")?;
    v.connect_addr = b("io_connect", "addr")?;
    v.connect_addr_len = b("io_connect", "addr_len")?;
    v.accept_flags = b("io_accept", "flags")?;
    v.accept_file_slot = b("io_accept", "file_slot")?;
    v.socket_domain = b("io_socket", "domain")?;
    v.socket_type = b("io_socket", "type")?;
    v.socket_protocol = b("io_socket", "protocol")?;
    v.socket_file_slot = b("io_socket", "file_slot")?;
    v.sr_buf = b("io_sr_msg", "buf")?;
    v.sr_len = b("io_sr_msg", "len")?;
    v.sr_msg_flags = b("io_sr_msg", "msg_flags")?;
    v.splice_fd_in = b("io_splice", "splice_fd_in")?;
    v.splice_len = b("io_splice", "len")?;
    v.splice_flags = b("io_splice", "flags")?;
    Ok(UringOffsets {
        submit_tracepoint: if submit_tp == "io_uring_submit_req" {
            "io_uring_submit_req"
        } else {
            "io_uring_submit_sqe"
        },
        values: v,
    })
}

impl Sensor {
    /// Checks the host, loads and attaches the programs, and sets the syscall interest.
    pub fn start(cfg: &SensorConfig) -> Result<Self, SensorError> {
        if OBJECT.is_empty() {
            return Err(SensorError::NoObject);
        }
        check_capabilities()?;
        let kernel = kernel_release();
        check_kernel(&kernel)?;
        if !cfg.btf_path.exists() {
            return Err(SensorError::Btf(btf::BtfError::Io {
                path: cfg.btf_path.clone(),
                source: std::io::Error::from(std::io::ErrorKind::NotFound),
            }));
        }
        let tracefs = tracefs::ensure_mounted()?;
        let report = kernel_report(&cfg.btf_path, &tracefs)?;
        log_features(&report);
        warn_if_bpf_stats();
        let missing: Vec<&str> = report
            .features
            .iter()
            .filter(|f| !f.available && !OPTIONAL_FEATURES.contains(&f.name))
            .map(|f| f.detail.as_str())
            .collect();
        if !missing.is_empty() {
            return Err(SensorError::MissingFeature(missing.join("; ")));
        }
        let mut kcfg = report.config;
        if cfg.inert {
            kcfg.ready = 0;
        }
        kcfg.cgroup_share = cfg.cgroup_share;
        kcfg.host_mnt_ns = cfg.host_mnt_ns;
        let poll = cfg.poll.clamp(*POLL_RANGE.start(), *POLL_RANGE.end());
        kcfg.looks_soon_us = (poll + TIMER_SLACK).as_micros() as u32;
        kcfg.ring_bytes = cfg.ring_buffer_bytes;
        raise_memlock();

        // No kernel BTF for the loader: the programs carry no CO-RE relocations (their offsets
        // come through CONFIG), and aya's parse of the kernel's BTF holds about 16 MB while it
        // lives, which raised the agent's peak RSS from 56 to 72 MiB when it was kept for the
        // BTF tracepoint's attach. The loader parses a copy when made; it goes at once.
        let mut loader = EbpfLoader::new();
        loader.btf(None);
        trim_heap();
        // The object with its casts given this kernel's type ids, where it has them and the
        // BTF tracepoint is wanted: `sys_exit_cast` is then tried first.
        let casts = match (cfg.btf_tracepoint && cfg.btf_casts, &report.cast_ids) {
            (false, _) => Err("kernel_btf_casts or kernel_btf_tracepoint is off".to_string()),
            (true, Err(why)) => Err(why.clone()),
            (true, Ok(ids)) => Ok(casts::patch(OBJECT, ids)),
        };
        let object = match &casts {
            Ok((patched, _)) => patched.bytes(),
            Err(_) => OBJECT,
        };
        let mut ebpf = loader
            .override_global("CONFIG", &kcfg, true)
            .map_max_entries("EVENTS", cfg.ring_buffer_bytes)
            .load(object)
            .map_err(SensorError::Load)?;
        drop(loader);
        // aya keeps none of the object's bytes; the pages read of it (all of them for the
        // copy above, debug sections included) are dropped from the resident set.
        release_pages(OBJECT);
        let casts = casts.and_then(|(patched, n)| {
            // The copy (2.5 MiB, most of it the object's debug sections) goes back to the
            // kernel: kept by glibc, it stayed in the agent's resident set.
            drop(patched);
            trim_heap();
            if n == 0 {
                Err("the object has no cast placeholders".to_string())
            } else {
                Ok(())
            }
        });

        let specs: Array<MapData, SyscallSpec> = take_map(&mut ebpf, "SYSCALL_SPECS")?;
        let mut compat_nr: Array<MapData, u32> = take_map(&mut ebpf, "COMPAT_NR")?;
        for (n32, to) in compat_table() {
            compat_nr
                .set(n32, to, 0)
                .map_err(|source| SensorError::Map {
                    map: "COMPAT_NR",
                    source,
                })?;
        }
        let counters: PerCpuArray<MapData, u64> = take_map(&mut ebpf, "COUNTERS")?;
        let ring: RingBuf<MapData> = take_map(&mut ebpf, "EVENTS")?;
        let shares: HashMap<MapData, u64, CgroupShare> = take_map(&mut ebpf, "CGROUP_SHARE")?;
        let open_verdicts: Array<MapData, u32> = take_map(&mut ebpf, "OPEN_FILTER")?;
        let open_keys: HashMap<MapData, open_filter::Key, u8> = take_map(&mut ebpf, "OPEN_KEYS")?;
        let open_sets: Array<MapData, open_filter::SetSig> = take_map(&mut ebpf, "OPEN_SETS")?;
        let reader = match ebpf.take_map("READER") {
            Some(aya::maps::Map::Array(data)) => data,
            _ => return Err(SensorError::NoObject),
        };
        let next_look = wakeup::NextLook::new(reader)
            .inspect_err(|e| {
                tracing::warn!(
                    "cannot map the reader's wake-up time ({e}): the kernel programs will wake \
                     the agent up to once a millisecond while events flow"
                )
            })
            .ok();

        let mut sensor = Sensor {
            ebpf,
            specs,
            counters,
            shares,
            busy_seen: std::sync::atomic::AtomicU64::new(0),
            open_verdicts,
            open_keys,
            open_sets,
            ring: Some(ring),
            next_look,
            current: vec![SyscallSpec::default(); MAX_SYSCALL_NR as usize],
            kernel,
            uring_submit: report.uring_submit,
            entry_link: None,
            tracefs,
            exit_events: None,
            poll,
        };
        if !cfg.inert {
            sensor.set_interest(&cfg.syscalls)?;
        }
        let typedef = match (cfg.btf_tracepoint, report.sys_exit_typedef) {
            (false, _) => Err("kernel_btf_tracepoint is off".to_string()),
            (true, None) if cfg.btf_path != Path::new(btf::KERNEL_BTF) => Err(format!(
                "BTF read from {}, not the kernel's own {}: its type ids may not be the kernel's",
                cfg.btf_path.display(),
                btf::KERNEL_BTF
            )),
            (true, None) => Err("no btf_trace_sys_exit in the kernel's BTF".to_string()),
            (true, Some(id)) => Ok(id),
        };
        let per_syscall = match cfg.exit_events {
            events::ExitEvents::Off => Err("kernel_syscall_events is off".to_string()),
            events::ExitEvents::Always => {
                tracing::warn!(
                    "kernel_syscall_events: always: sys_exit is attached to each wanted \
                     syscall's event whatever the kernel's 32-bit entry does, and calls made \
                     through it (int $0x80) go unseen; this is for measurements, not nodes"
                );
                Ok(())
            }
            events::ExitEvents::Auto => match &report.entry32 {
                events::Entry32::Off => Ok(()),
                entry => Err(format!(
                    "the kernel's 32-bit syscall entry is {entry}, and calls through it skip \
                     those events; booting with ia32_emulation=false (Linux 6.7) turns it off"
                )),
            },
        };
        sensor.attach(typedef, casts, per_syscall)?;
        sensor.set_entry_hook(cfg.entry_hook)?;
        Ok(sensor)
    }

    /// Attaches the programs; `sys_exit` in its BTF form when `typedef` (the kernel's type id
    /// of `btf_trace_sys_exit`) is known and the program loads (else the reason it is not),
    /// its form with casts first when `casts` (the object was patched).
    fn attach(
        &mut self,
        typedef: Result<u32, String>,
        casts: Result<(), String>,
        per_syscall: Result<(), String>,
    ) -> Result<(), SensorError> {
        let wanted = wanted_in(&self.current);
        let ebpf = &mut self.ebpf;
        // (program, category, tracepoint). io_uring only where the kernel's tracepoints carry
        // the request (uring.rs), completions first, so that a request seen submitted always
        // finds its completion program.
        let mut tracepoints = vec![("sched_process_exit", "sched", "sched_process_exit")];
        if let Some(submit) = self.uring_submit {
            tracepoints.push(("io_uring_complete", "io_uring", "io_uring_complete"));
            tracepoints.push(("io_uring_submit", "io_uring", submit));
        }
        for (program, category, tp) in tracepoints {
            let prog: &mut TracePoint = ebpf
                .program_mut(program)
                .and_then(|p| p.try_into().ok())
                .ok_or(SensorError::NoObject)?;
            let wrap = |source| SensorError::Program { program, source };
            prog.load().map_err(wrap)?;
            prog.attach(category, tp).map_err(wrap)?;
        }
        // Per syscall where it may be (events.rs), its form with casts first; else, or where
        // neither loads, one of the `raw_syscalls:sys_exit` forms below.
        let events = per_syscall.and_then(|()| {
            let cast = casts.clone().and_then(|()| {
                attach_exit_events(
                    ebpf,
                    "sys_exit_event_cast",
                    &self.tracefs,
                    wanted.iter().copied(),
                )
            });
            match cast {
                Ok(done) => Ok((done, None)),
                Err(why) => attach_exit_events(
                    ebpf,
                    "sys_exit_event",
                    &self.tracefs,
                    wanted.iter().copied(),
                )
                .map(|done| (done, Some(why.clone())))
                .map_err(|e| format!("{e} (with casts: {why})")),
            }
        });
        let typed = match events {
            Ok(((attached, absent), no_casts)) => {
                tracing::info!(
                    "sys_exit attached as syscall events (syscalls:sys_exit_NAME) for the {} \
                     syscalls wanted{}: other syscalls run no program; {}",
                    attached.attached(),
                    if absent.is_empty() {
                        String::new()
                    } else {
                        format!(" ({} not built into this kernel)", absent.join(", "))
                    },
                    match no_casts {
                        None => "registers, credentials, namespaces, descriptor table, and path \
                                 walks read with plain loads, with casts"
                            .to_string(),
                        Some(why) => format!(
                            "registers, credentials, namespaces and descriptor table read with \
                             plain loads; path walks with a helper call per object (no casts: \
                             {why})"
                        ),
                    }
                );
                self.exit_events = Some(attached);
                Ok(())
            }
            Err(why) => {
                tracing::info!("sys_exit not attached per syscall: {why}");
                Self::attach_sys_exit(ebpf, typedef, casts)
            }
        };
        let chunked = attach_chunked_exec(ebpf);
        match &chunked {
            Ok(()) => tracing::info!(
                "sched_process_exec reads the environment in 4 KiB chunks (bpf_loop)"
            ),
            Err(e) => tracing::info!(
                "sched_process_exec reads the environment an entry at a time, up to {} \
                 entries ({e})",
                agent_common::ENV_READS
            ),
        }
        let mut raw = vec!["sched_process_fork", "sys_enter"];
        if chunked.is_err() {
            raw.push("sched_process_exec");
        }
        if typed.is_err() {
            raw.push("sys_exit");
        }
        for program in raw {
            let prog: &mut RawTracePoint = ebpf
                .program_mut(program)
                .and_then(|p| p.try_into().ok())
                .ok_or(SensorError::NoObject)?;
            let wrap = |source| SensorError::Program { program, source };
            prog.load().map_err(wrap)?;
            // sys_enter is attached by set_entry_hook, when profiles need it.
            if program != "sys_enter" {
                prog.attach(program).map_err(wrap)?;
            }
        }
        Ok(())
    }

    /// Attaches `raw_syscalls:sys_exit` as a BTF tracepoint, with casts first; Err (why) when
    /// neither loads, for the raw tracepoint to be attached.
    fn attach_sys_exit(
        ebpf: &mut Ebpf,
        typedef: Result<u32, String>,
        casts: Result<(), String>,
    ) -> Result<(), String> {
        let cast = match (&typedef, casts) {
            (Ok(id), Ok(())) => attach_typed_sys_exit(ebpf, "sys_exit_cast", *id),
            (Err(e), _) => Err(e.clone()),
            (_, Err(e)) => Err(e),
        };
        let typed = match (&cast, typedef) {
            (Ok(()), _) => Ok(()),
            (Err(_), typedef) => {
                typedef.and_then(|id| attach_typed_sys_exit(ebpf, "sys_exit_btf", id))
            }
        };
        match (&cast, &typed) {
            (Ok(()), _) => tracing::info!(
                "sys_exit attached as a BTF tracepoint with casts: registers, credentials, \
                 namespaces, descriptor table, and the files, dentries and mounts of path walks \
                 read with plain loads"
            ),
            (Err(why), Ok(())) => tracing::info!(
                "sys_exit attached as a BTF tracepoint: registers, credentials, namespaces and \
                 descriptor table read with plain loads; path walks with a helper call per \
                 object (no casts: {why})"
            ),
            (_, Err(e)) => tracing::info!(
                "sys_exit attached as a raw tracepoint, every read a helper call ({e})"
            ),
        }
        typed
    }

    /// Attaches or detaches `sys_enter`. Attach it before syscall profiles are put in force
    /// and detach it after the last one is gone, so that no profile is ever without it.
    pub fn set_entry_hook(&mut self, on: bool) -> Result<(), SensorError> {
        if on == self.entry_link.is_some() {
            return Ok(());
        }
        let program = "sys_enter";
        let prog: &mut RawTracePoint = self
            .ebpf
            .program_mut(program)
            .and_then(|p| p.try_into().ok())
            .ok_or(SensorError::NoObject)?;
        let wrap = |source| SensorError::Program { program, source };
        match self.entry_link.take() {
            None => self.entry_link = Some(prog.attach(program).map_err(wrap)?),
            Some(link) => prog.detach(link).map_err(wrap)?,
        }
        tracing::info!(
            attached = on,
            "syscall entry hook (sys_enter, for syscall profiles)"
        );
        Ok(())
    }

    /// How many syscalls' own `sys_exit` events the capture program is attached to (0 where
    /// it is attached to `raw_syscalls:sys_exit`).
    pub fn syscall_events(&self) -> usize {
        self.exit_events
            .as_ref()
            .map_or(0, events::Attached::attached)
    }

    /// Whether `sys_enter` is attached.
    pub fn entry_hook(&self) -> bool {
        self.entry_link.is_some()
    }

    /// The running kernel's release string.
    pub fn kernel(&self) -> &str {
        &self.kernel
    }

    /// Sets which syscalls the kernel captures: those named (all known ones when empty).
    /// Entries are changed in place, added ones first, so no syscall wanted before and after
    /// is ever missed. Returns the names that are not in the syscall table.
    pub fn set_interest(&mut self, names: &BTreeSet<String>) -> Result<Vec<String>, SensorError> {
        let mut want = vec![SyscallSpec::default(); MAX_SYSCALL_NR as usize];
        let mut unknown = Vec::new();
        if names.is_empty() {
            for def in syscalls::SYSCALLS {
                want[def.nr as usize] = def.spec();
            }
        } else {
            for n in names {
                match syscalls::by_name(n) {
                    Some(def) => want[def.nr as usize] = def.spec(),
                    None => unknown.push(n.clone()),
                }
            }
        }
        // The 32-bit number of each wanted call is checked for the 32-bit entry before its
        // arguments are read. (A wanted 64-bit number made through that entry is another call,
        // i386 `fork` for x86_64 `open`: the kernel drops it once the task is at hand.)
        for (n32, to) in compat_table() {
            let wanted = match to {
                agent_common::COMPAT_SOCKETCALL => (1..=20).any(|call| {
                    agent_common::socketcall(call).is_some_and(|(nr, _)| {
                        want[nr as usize].flags & spec_flags::INTERESTED != 0
                    })
                }),
                to if to & agent_common::COMPAT_PROFILE_ONLY != 0 => false,
                to => want[to as usize - 1].flags & spec_flags::INTERESTED != 0,
            };
            if wanted {
                want[n32 as usize].flags |= spec_flags::COMPAT_CHECK;
            }
        }
        // Per-syscall events: the new calls' events attached before their entries are set,
        // the old ones' detached after, so no call wanted before and after is missed.
        let keep = wanted_in(&want);
        if let Some(attached) = &mut self.exit_events {
            let absent = attached.add(&mut self.ebpf, keep.iter().copied())?;
            if !absent.is_empty() {
                tracing::info!(
                    "not built into this kernel, so no event to attach to: {}",
                    absent.join(", ")
                );
            }
        }
        let order = (0..want.len())
            .filter(|&i| want[i].flags != 0)
            .chain((0..want.len()).filter(|&i| want[i].flags == 0));
        for i in order {
            if want[i] != self.current[i] {
                self.specs
                    .set(i as u32, want[i], 0)
                    .map_err(|source| SensorError::Map {
                        map: "SYSCALL_SPECS",
                        source,
                    })?;
                self.current[i] = want[i];
            }
        }
        if let Some(attached) = &mut self.exit_events {
            attached.retain(&mut self.ebpf, &keep.iter().map(|(nr, _)| *nr).collect())?;
        }
        Ok(unknown)
    }

    /// Kernel drop and activity counters, summed over CPUs.
    pub fn counters(&self) -> KernelCounters {
        let get = |i: u32| -> u64 {
            self.counters
                .get(&i, 0)
                .map(|v| v.iter().sum())
                .unwrap_or(0)
        };
        KernelCounters {
            dropped_exec: get(counter::DROP_EXEC),
            dropped_fork: get(counter::DROP_FORK),
            dropped_exit: get(counter::DROP_EXIT),
            dropped_syscall: get(counter::DROP_SYSCALL),
            syscalls_emitted: get(counter::SYSCALLS_EMITTED),
            dropped_profile: get(counter::DROP_PROFILE),
            profile_verdicts: get(counter::PROFILE_VERDICTS),
            profile_kills: get(counter::PROFILE_KILLS),
            dropped_cgroup_share: get(counter::DROP_CGROUP_SHARE),
            open_filtered: get(counter::OPEN_FILTERED),
            calls_filtered: get(counter::CALLS_FILTERED),
            dropped_busy: self.runs_skipped().map(|n| {
                n.max(
                    self.busy_seen
                        .fetch_max(n, std::sync::atomic::Ordering::Relaxed),
                )
            }),
        }
    }

    /// The kernel's `recursion_misses` summed over the programs loaded (`/proc/self/fdinfo` of
    /// each program's descriptor); `None` when no program's reports it.
    fn runs_skipped(&self) -> Option<u64> {
        use std::os::fd::{AsFd as _, AsRawFd as _};
        self.ebpf
            .programs()
            .filter_map(|(_, p)| p.fd().ok())
            .filter_map(|fd| {
                let path = format!("/proc/self/fdinfo/{}", fd.as_fd().as_raw_fd());
                fdinfo_field(&std::fs::read_to_string(path).ok()?, "recursion_misses")
            })
            .reduce(|a, b| a + b)
    }

    /// Writes the open filter: which opens the kernel passes over because no loaded rule can
    /// match them (`osprey_engine::compile::KernelFilter`). The kernel passes every open until
    /// this is called, and while it runs: every class is set to pass first, then the keys are
    /// replaced, then the new verdicts written, so a change never drops an open that the rules
    /// before or after it wanted. Returns how many keys the filter holds.
    pub fn set_open_filter(&mut self, filter: &KernelFilter) -> Result<usize, SensorError> {
        let map_err = |map: &'static str| move |source| SensorError::Map { map, source };
        let classes = open_filter::CLASSES;
        for slot in 0..open_filter::SLOTS {
            for class in 0..classes {
                self.open_verdicts
                    .set(slot * classes + class, open_filter::PASS, 0)
                    .map_err(map_err("OPEN_FILTER"))?;
            }
        }
        let old: Vec<open_filter::Key> = self.open_keys.keys().filter_map(Result::ok).collect();
        for k in &old {
            self.open_keys.remove(k).map_err(map_err("OPEN_KEYS"))?;
        }
        let mut keys = 0;
        // A set past the kernel's bound is not written: its classes pass.
        let sets = &filter.sets[..filter.sets.len().min(open_filter::MAX_SETS as usize)];
        // Per set, the components it names (the verdict's atom bits).
        let mut set_atoms = vec![0u32; sets.len()];
        for (set, path_keys) in sets.iter().enumerate() {
            let mut sig = open_filter::SetSig::default();
            for (atom, names) in path_keys.atoms() {
                for name in names {
                    sig.insert(atom, name);
                    set_atoms[set] |= 1 << (open_filter::ATOM_BITS + u32::from(atom));
                }
            }
            self.open_sets
                .set(set as u32, sig, 0)
                .map_err(map_err("OPEN_SETS"))?;
            for (atom, names) in path_keys.atoms() {
                for name in names {
                    let mut key = open_filter::Key {
                        name: [0; open_filter::NAME_LEN],
                        set: set as u16,
                        atom,
                        _pad: 0,
                        _pad2: 0,
                    };
                    let n = name.len().min(open_filter::NAME_LEN - 1);
                    key.name[..n].copy_from_slice(&name[..n]);
                    self.open_keys
                        .insert(key, 1, 0)
                        .map_err(map_err("OPEN_KEYS"))?;
                    keys += 1;
                }
            }
        }
        for (slot, verdicts) in filter.verdicts.iter().enumerate() {
            for (class, v) in verdicts.iter().enumerate() {
                let value = match v {
                    Verdict::Pass => open_filter::PASS,
                    Verdict::Drop => open_filter::DROP,
                    Verdict::Keys(set) if *set >= sets.len() => open_filter::PASS,
                    Verdict::Keys(set) => {
                        open_filter::KEYS | set_atoms[*set] | (*set as u32 & open_filter::SET)
                    }
                };
                if value != open_filter::PASS {
                    self.open_verdicts
                        .set(slot as u32 * classes + class as u32, value, 0)
                        .map_err(map_err("OPEN_FILTER"))?;
                }
            }
        }
        // The calls' slots follow the opens'.
        for (call, captured) in filter.calls.iter().enumerate() {
            let slot = (open_filter::SYSCALLS.len() + call) as u32;
            for (class, capture) in captured.iter().enumerate() {
                if !capture {
                    self.open_verdicts
                        .set(slot * classes + class as u32, open_filter::DROP, 0)
                        .map_err(map_err("OPEN_FILTER"))?;
                }
            }
        }
        Ok(keys)
    }

    /// Every share (cgroup, or mount namespace or host process in the v2 root) that lost records, with its
    /// losses since its entry was made. Entries exist only for shares used under pressure; the
    /// map is an LRU of 4096, so a share's counts can restart from zero after a quiet spell.
    pub fn cgroup_losses(&self) -> Vec<CgroupLoss> {
        self.shares
            .iter()
            .filter_map(Result::ok)
            .filter(|(_, s)| s.over_share + s.ring_full > 0)
            .map(|(key, s)| CgroupLoss {
                share: Share::from_key(key),
                over_share: s.over_share,
                ring_full: s.ring_full,
            })
            .collect()
    }

    /// The syscall-profile maps; can be taken once.
    pub fn profile_maps(&mut self) -> Result<profile::ProfileMaps, SensorError> {
        profile::ProfileMaps::take(&mut self.ebpf, &self.tracefs)
    }

    /// The ring-buffer reader; can be taken once.
    pub fn reader(&mut self) -> Result<EventReader, SensorError> {
        let ring = self.ring.take().ok_or_else(|| {
            SensorError::Io(std::io::Error::other(
                "the ring buffer reader was already taken",
            ))
        })?;
        // SAFETY: the RingBuf owns its map fd, never replaces it, and closes it only on drop,
        // which happens when this AsyncFd is dropped.
        let ring = unsafe { AsyncFd::register_with_interest(ring, tokio::io::Interest::READABLE) }
            .map_err(|e| SensorError::Io(e.into()))?;
        Ok(EventReader {
            ring,
            decoder: Decoder::new(crate::process::boot_time_ns()),
            poll: self.poll,
            poll_min: self.poll,
            empty: 0,
            timer: wakeup::PollTimer::new().map_err(SensorError::Io)?,
            next_look: self.next_look.take(),
        })
    }
}

/// One start-up line naming what the kernel has, and a warning per degradation, so that no
/// missing piece is a silent gap. The offsets themselves are logged at debug level.
fn log_features(report: &KernelReport) {
    let found: Vec<&str> = report
        .features
        .iter()
        .filter(|f| f.available)
        .map(|f| f.name)
        .collect();
    let missing: Vec<&str> = report
        .features
        .iter()
        .filter(|f| !f.available)
        .map(|f| f.name)
        .collect();
    tracing::info!(
        kernel = %report.release,
        found = %found.join(","),
        missing = %missing.join(","),
        "kernel features"
    );
    for f in report.features.iter().filter(|f| !f.available) {
        // Most nodes' kernels have the 32-bit entry: nothing is lost with it, the syscall
        // hook only costs more; said, not warned.
        if f.name == "no_ia32_entry" {
            tracing::info!(feature = f.name, "{}", f.detail);
        } else {
            tracing::warn!(feature = f.name, "{}", f.detail);
        }
    }
    for o in &report.offsets {
        tracing::debug!(offset = %o.name, value = o.value, "kernel offset");
    }
}

/// `kernel.bpf_stats_enabled`: while it is on, the kernel reads the clock before and after
/// every run of every BPF program on the node, the agent's included: about 70 ns a syscall on
/// a 2-vCPU VM, as much as the hook itself costs. Left on by a measurement, it is a cost
/// nobody chose that would read as the agent's, so the agent says so when it starts. (A tool
/// holding a `BPF_ENABLE_STATS` descriptor turns them on without the sysctl showing it.)
fn warn_if_bpf_stats() {
    if bpf_stats_enabled() {
        tracing::warn!(
            "kernel.bpf_stats_enabled is on: every BPF program on this node, the agent's \
             included, reads the clock twice per run (about 70 ns a syscall on a 2-vCPU VM); \
             `sysctl -w kernel.bpf_stats_enabled=0` unless something is measuring"
        );
    }
}

/// Whether `kernel.bpf_stats_enabled` is on (read each time: anything with the privilege can
/// turn it on or off while the agent runs). The metrics show it as
/// `osprey_kernel_bpf_stats_enabled`.
pub fn bpf_stats_enabled() -> bool {
    std::fs::read_to_string("/proc/sys/kernel/bpf_stats_enabled").is_ok_and(|s| s.trim() == "1")
}

/// The number on the line `name:` of a `/proc/PID/fdinfo` file (`name:\tvalue`).
fn fdinfo_field(text: &str, name: &str) -> Option<u64> {
    text.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        (k == name).then(|| v.trim().parse().ok())?
    })
}

fn take_map<T>(ebpf: &mut Ebpf, name: &'static str) -> Result<T, SensorError>
where
    T: TryFrom<aya::maps::Map, Error = aya::maps::MapError>,
{
    let map = ebpf.take_map(name).ok_or(SensorError::NoObject)?;
    T::try_from(map).map_err(|source| SensorError::Map { map: name, source })
}

/// `COMPAT_NR`'s entries: each i386 number that is an x86_64 call
/// (`osprey_model::syscalls::IA32`) and that call's number plus one, with
/// `COMPAT_PROFILE_ONLY` where its arguments are laid out otherwise; and the markers of
/// `socketcall` and `ipc`.
fn compat_table() -> impl Iterator<Item = (u32, u32)> {
    use osprey_model::syscalls::{IA32, IA32_IPC, IA32_SOCKETCALL, number};
    IA32.iter()
        .filter_map(|&(n32, name, same)| {
            let to = number(name)? + 1;
            Some((
                n32,
                if same {
                    to
                } else {
                    to | agent_common::COMPAT_PROFILE_ONLY
                },
            ))
        })
        .chain([
            (IA32_SOCKETCALL, agent_common::COMPAT_SOCKETCALL),
            (IA32_IPC, agent_common::COMPAT_IPC),
        ])
}

/// Loads `program` (`sys_exit_event` or `sys_exit_event_cast`) and attaches it to the event of
/// each of `wanted`; the verifier's verdict or the failed attach as the error. It is attached
/// to none if not to all: the form that replaces it must not run beside it.
fn attach_exit_events<'a>(
    ebpf: &mut Ebpf,
    program: &'static str,
    tracefs: &Path,
    wanted: impl IntoIterator<Item = (u32, &'a str)>,
) -> Result<(events::Attached, Vec<&'a str>), String> {
    let prog: &mut TracePoint = ebpf
        .program_mut(program)
        .and_then(|p| p.try_into().ok())
        .ok_or_else(|| format!("no {program} in the object"))?;
    prog.load().map_err(|e| verifier_error(&e))?;
    let mut attached = events::Attached::new(program, tracefs);
    match attached.add(ebpf, wanted) {
        Ok(absent) => Ok((attached, absent)),
        Err(e) => {
            let _ = attached.retain(ebpf, &BTreeSet::new());
            Err(e.to_string())
        }
    }
}

/// The syscalls `specs` captures (64-bit numbers), by number and name.
fn wanted_in(specs: &[SyscallSpec]) -> Vec<(u32, &'static str)> {
    syscalls::SYSCALLS
        .iter()
        .filter(|d| {
            specs
                .get(d.nr as usize)
                .is_some_and(|s| s.flags & spec_flags::INTERESTED != 0)
        })
        .map(|d| (d.nr, d.name))
        .collect()
}

/// Loads and attaches `program`, a BTF tracepoint form of `sys_exit` (`sys_exit_btf`: its
/// registers and task typed, plain loads instead of helper calls; `sys_exit_cast`: the objects
/// of its path walks too); an error where the kernel has no BTF, no BTF tracepoints or no
/// `bpf_get_current_task_btf` (before 5.11), no `bpf_rdonly_cast` (before 6.2, for the casts),
/// or its structures fail the verifier's checks (the next form is then tried).
fn attach_typed_sys_exit(ebpf: &mut Ebpf, program: &str, typedef: u32) -> Result<(), String> {
    let btf = naming_btf(typedef, "btf_trace_sys_exit")?;
    let prog: &mut aya::programs::BtfTracePoint = ebpf
        .program_mut(program)
        .and_then(|p| p.try_into().ok())
        .ok_or_else(|| format!("no {program} in the object"))?;
    prog.load("sys_exit", &btf)
        .map_err(|e| verifier_error(&e))?;
    prog.attach().map_err(|e| e.to_string())?;
    Ok(())
}

/// Loads and attaches `sched_process_exec_loop`, the exec program whose environment scan
/// reads 4 KiB at a time under `bpf_loop`; an error where the kernel has no `bpf_loop`
/// (before 5.17) or refuses the program (`sched_process_exec`, a read per entry, is then
/// attached instead).
fn attach_chunked_exec(ebpf: &mut Ebpf) -> Result<(), String> {
    let prog: &mut RawTracePoint = ebpf
        .program_mut("sched_process_exec_loop")
        .and_then(|p| p.try_into().ok())
        .ok_or("no sched_process_exec_loop in the object")?;
    prog.load().map_err(|e| verifier_error(&e))?;
    prog.attach("sched_process_exec")
        .map_err(|e| e.to_string())?;
    Ok(())
}

/// A BTF whose type `id` is a typedef called `name`, the rest placeholders: all aya needs
/// to load a BTF tracepoint is the id it finds under that name (the kernel checks the program
/// against its own BTF), and a parse of the kernel's whole BTF for it held 16 MB.
fn naming_btf(id: u32, name: &str) -> Result<aya::Btf, String> {
    const KIND_INT: u32 = 1;
    const KIND_TYPEDEF: u32 = 8;
    if id == 0 {
        return Err("type id 0 is void, not a typedef".into());
    }
    let mut types = Vec::with_capacity(id as usize * 16);
    // Ids 1 .. id-1: a nameless 32-bit int each (header, then the int's encoding word).
    for _ in 1..id {
        for w in [0, KIND_INT << 24, 4, 32] {
            types.extend_from_slice(&u32::to_le_bytes(w));
        }
    }
    // Id `id`: the typedef, of type 1 (void when it is id 1 itself), named at string offset 1.
    for w in [1, KIND_TYPEDEF << 24, u32::from(id > 1)] {
        types.extend_from_slice(&u32::to_le_bytes(w));
    }
    let mut strings = vec![0u8];
    strings.extend_from_slice(name.as_bytes());
    strings.push(0);
    let mut blob = Vec::with_capacity(24 + types.len() + strings.len());
    blob.extend_from_slice(&0xeb9f_u16.to_le_bytes());
    blob.extend_from_slice(&[1, 0]); // version, flags
    for w in [
        24,
        0,
        types.len() as u32,
        types.len() as u32,
        strings.len() as u32,
    ] {
        blob.extend_from_slice(&u32::to_le_bytes(w));
    }
    blob.extend_from_slice(&types);
    blob.extend_from_slice(&strings);
    aya::Btf::parse(&blob, aya::Endianness::Little).map_err(|e| format!("BTF for the attach: {e}"))
}

/// Drops the pages wholly inside `bytes`, a part of the binary's read-only data, from the
/// resident set (`MADV_DONTNEED`): they are read again from the file if touched again.
fn release_pages(bytes: &'static [u8]) {
    // SAFETY: sysconf has no preconditions.
    let page = match unsafe { libc::sysconf(libc::_SC_PAGESIZE) } {
        p if p > 0 => p as usize,
        _ => return,
    };
    let start = (bytes.as_ptr() as usize).next_multiple_of(page);
    let end = (bytes.as_ptr() as usize + bytes.len()) / page * page;
    if end > start {
        // SAFETY: whole pages of a read-only, file-backed mapping that nothing holds a
        // reference into but `bytes`, whose contents come back unchanged from the file.
        unsafe { libc::madvise(start as *mut libc::c_void, end - start, libc::MADV_DONTNEED) };
    }
}

/// Hands the heap's free memory back to the kernel (glibc keeps it otherwise; musl returns
/// it by itself).
fn trim_heap() {
    #[cfg(target_env = "gnu")]
    // SAFETY: no preconditions; it only releases free memory.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// The line of a verifier log that says what it refused: the last before its statistics.
fn refused(log: &str) -> &str {
    let statistics = ["verification time", "stack depth", "processed "];
    log.lines()
        .rev()
        .map(str::trim)
        .find(|l| !l.is_empty() && !statistics.iter().any(|s| l.starts_with(s)))
        .unwrap_or("(no verifier output)")
}

/// A program error with what the verifier refused, where it said.
fn verifier_error(e: &aya::programs::ProgramError) -> String {
    match e {
        aya::programs::ProgramError::LoadError {
            io_error,
            verifier_log,
        } => {
            let log = verifier_log.to_string();
            if let Some(p) = std::env::var_os("OSPREY_DEBUG_VERIFIER_LOG") {
                let _ = std::fs::write(p, &log);
            }
            format!("{io_error}; the verifier: {}", refused(&log))
        }
        _ => e.to_string(),
    }
}

/// How late the reader may look after its timer fired (being scheduled), added to the time it
/// says it will look.
const TIMER_SLACK: std::time::Duration = std::time::Duration::from_micros(250);
/// The longest the reader sleeps. On a quiet node a record wakes it, so looks this far apart
/// cost nothing in latency but for one case: a record whose program read `READER` while the
/// reader was still awake, and wrote it after the reader's last look before sleeping (a
/// window of a few hundred nanoseconds, narrowed by that last look, `read_batch`). This
/// bounds how late such a record is read. At 8 ms, the looks of an idle agent were about 125
/// a second, 1.2-1.4% of a core on this VM, taken from whatever the node was running.
const POLL_MAX: std::time::Duration = std::time::Duration::from_millis(100);
/// Empty looks at the steady interval before the reader backs off: a flow with gaps shorter
/// than this (a build's processes starting one after another) is read without wake-ups.
const STEADY_LOOKS: u32 = 8;

/// The poll after an empty look, the `empty`-th in a row, for a reader whose steady interval
/// is `min`.
fn backed_off(
    poll: std::time::Duration,
    empty: u32,
    min: std::time::Duration,
) -> std::time::Duration {
    if poll == min && empty < STEADY_LOOKS {
        min
    } else {
        (poll * 2).min(POLL_MAX)
    }
}

/// Reads records from the ring buffer and decodes them.
pub struct EventReader {
    ring: AsyncFd<RingBuf<MapData>>,
    decoder: Decoder,
    poll: std::time::Duration,
    /// How often it looks while events flow and for `STEADY_LOOKS` empty looks after
    /// ([`SensorConfig::poll`]): as seldom as the kernel programs still count as looking soon
    /// (`KernelConfig::looks_soon_us`, this and the timer's slack: they never wake a reader
    /// that looks within it; `wakeup_flags` in agent-ebpf/src/output.rs). Then it backs off,
    /// doubling, to `POLL_MAX`, and a lone event after a quiet spell wakes it. A wake-up is a
    /// self-interrupt inside the traced task's syscall; a look costs the reader alone, about
    /// 40 µs of its CPU on a virtual machine (a timer, a sleep and a wake-up), and wakes its
    /// CPU (see [`DEFAULT_POLL`]).
    poll_min: std::time::Duration,
    /// Empty looks since the last record.
    empty: u32,
    timer: wakeup::PollTimer,
    next_look: Option<wakeup::NextLook>,
}

/// Most records decoded per [`EventReader::read_batch`]: what the pipeline holds decoded at
/// once, and so what the decoder's buffers grow to (each event's strings and argument list,
/// kept for the next batch). A batch this large comes only from a backlog (at 300k events/s
/// the reader's next look finds about 500); with 4096 the agent's heap grew by 6 MiB when it
/// fell behind.
pub const BATCH_MAX: usize = 1024;

impl EventReader {
    /// Waits until records are available, then decodes up to `max` of them into `out`.
    ///
    /// Before it sleeps the reader says when it will look again ([`wakeup::NextLook`]); the
    /// kernel programs wake it only when that is more than two milliseconds away (a quiet
    /// spell; at most once a millisecond), or for a backlog (see `wakeup_flags` in
    /// agent-ebpf); a flow is read by polling ([`SensorConfig::poll`]). Cancel-safe: events are only
    /// added right before it returns.
    pub async fn read_batch(&mut self, out: &mut Vec<Event>, max: usize) -> std::io::Result<()> {
        loop {
            if self.drain(out, max) > 0 {
                self.poll = self.poll_min;
                self.empty = 0;
                return Ok(());
            }
            if let Some(n) = &self.next_look {
                let now = crate::process::boot_clock_ns();
                n.set(now + (self.poll + TIMER_SLACK).as_nanos() as u64);
                // The store before the ring's positions are read (x86 may let a load pass an
                // earlier store).
                std::sync::atomic::fence(std::sync::atomic::Ordering::SeqCst);
                // A record written since the look above by a program that still saw the reader
                // awake raised no wake-up: look once more now that the programs see it asleep.
                if self.drain(out, max) > 0 {
                    self.awake();
                    return Ok(());
                }
            }
            tokio::select! {
                r = self.ring.readable_mut() => r?.clear_ready(),
                r = self.timer.sleep(self.poll) => {
                    r?;
                    // Nothing came: look less often once the node is quiet.
                    self.empty = self.empty.saturating_add(1);
                    self.poll = backed_off(self.poll, self.empty, self.poll_min);
                }
            }
            // Awake: records written until the next sleep need no wake-up.
            if let Some(n) = &self.next_look {
                n.set(crate::process::boot_clock_ns());
            }
        }
    }

    /// Records came in a look made after the reader said it would sleep: it says it is awake
    /// again, and polls as while events flow.
    fn awake(&mut self) {
        if let Some(n) = &self.next_look {
            n.set(crate::process::boot_clock_ns());
        }
        self.poll = self.poll_min;
        self.empty = 0;
    }

    fn drain(&mut self, out: &mut Vec<Event>, max: usize) -> usize {
        let ring = self.ring.get_mut();
        let mut n = 0;
        while n < max {
            let Some(item) = ring.next() else { break };
            self.decoder.decode_into(&item, out);
            n += 1;
        }
        n
    }

    /// Events the pipeline judged: the next records are decoded into their buffers.
    pub fn recycle(&mut self, spent: impl IntoIterator<Item = Event>) {
        self.decoder.recycle(spent);
    }

    pub fn decode_stats(&self) -> DecodeStats {
        self.decoder.stats
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_reader_polls_steadily_then_backs_off() {
        let mut poll = DEFAULT_POLL;
        let mut looks = vec![];
        for empty in 1..=STEADY_LOOKS + 8 {
            poll = backed_off(poll, empty, DEFAULT_POLL);
            looks.push(poll.as_micros());
        }
        let mut want = vec![3500; STEADY_LOOKS as usize - 1];
        want.extend([
            7000, 14000, 28000, 56000, 100_000, 100_000, 100_000, 100_000, 100_000,
        ]);
        assert_eq!(looks, want);
    }

    /// A program's fdinfo as Linux 6.x prints it; before 5.12 there is no `recursion_misses`.
    #[test]
    fn the_skipped_runs_come_from_the_programs_fdinfo() {
        let text = "pos:\t0\nflags:\t02000002\nmnt_id:\t16\nino:\t1055\nprog_type:\t26\n\
                    prog_jited:\t1\nprog_tag:\t5f5c0d1a1b9e8a8c\nmemlock:\t69632\n\
                    prog_id:\t212\nrun_time_ns:\t0\nrun_cnt:\t0\nrecursion_misses:\t37\n\
                    verified_insns:\t4812\n";
        assert_eq!(fdinfo_field(text, "recursion_misses"), Some(37));
        assert_eq!(fdinfo_field(text, "prog_id"), Some(212));
        let old = text.replace("recursion_misses:\t37\n", "");
        assert_eq!(fdinfo_field(&old, "recursion_misses"), None);
        assert_eq!(fdinfo_field("misses:\t1\n", "recursion_misses"), None);
    }

    #[test]
    fn a_naming_btf_parses_whatever_the_id() {
        for id in [1, 2, 11_328, 200_000] {
            naming_btf(id, "btf_trace_sys_exit").unwrap();
        }
        assert!(naming_btf(0, "btf_trace_sys_exit").is_err());
    }

    #[test]
    fn the_verifier_refusal_is_the_line_before_its_statistics() {
        let log = "0: R1=ctx() R10=fp0\n233: (85) call unknown#158\ninvalid func unknown#158\n\
                   verification time 13063 usec\nstack depth 128+0\n\
                   processed 165 insns (limit 1000000) max_states_per_insn 0\n";
        assert_eq!(refused(log), "invalid func unknown#158");
        assert_eq!(refused(""), "(no verifier output)");
    }

    #[test]
    fn btf_renames_parse_pairs_and_skip_junk() {
        assert_eq!(
            btf_renames("task_struct.cred=nope, cred.euid = x ,junk,=y,a.b="),
            [
                ("task_struct.cred".to_string(), "nope".to_string()),
                ("cred.euid".to_string(), "x".to_string())
            ]
        );
    }

    #[test]
    fn kernel_version_gate() {
        assert!(check_kernel("6.18.44-fc-v657").is_ok());
        assert!(check_kernel("5.8.0").is_ok());
        let err = check_kernel("5.4.0-100-generic").unwrap_err().to_string();
        assert!(
            err.contains("5.4.0-100-generic") && err.contains("5.8"),
            "{err}"
        );
    }
}
