//! The identity of the current task, for every event's header.
//!
//! What helpers give directly (pid/tgid, real uid/gid, comm, cgroup id) comes from helpers.
//! Effective ids and namespace inode numbers need a walk of `task_struct`; its member offsets
//! come from the running kernel's BTF through `CONFIG` (Rust eBPF has no CO-RE), and every read
//! goes through `bpf_probe_read_kernel`, so a wrong offset yields a wrong value, never a fault.

use agent_common::{EventHeader, KernelConfig, PID_LEVELS_SPANNED, SPAN_MAX, Span, span};
use aya_ebpf::{
    helpers::{
        bpf_get_current_cgroup_id, bpf_get_current_pid_tgid, bpf_get_current_task,
        bpf_get_current_uid_gid, bpf_ktime_get_boot_ns, generated::bpf_get_current_comm,
        generated::bpf_probe_read_kernel,
    },
    macros::map,
    maps::PerCpuArray,
};

/// Where `read_words` copies a span to, per CPU: the BPF stack (512 bytes) is mostly taken.
#[map]
static BLOCK: PerCpuArray<[u64; SPAN_MAX as usize / 8]> = PerCpuArray::with_max_entries(1, 0);

/// The 64-bit words at offsets `offs` of the kernel object at `base`, each shifted down by
/// its offset's misalignment (so a 32-bit field at offset 4 is the low half): one probe read
/// of `span`, the bytes that hold them all (`KernelConfig::spans`, computed by userspace from
/// the same offsets), or one read each where the kernel has them further apart. A captured
/// `openat` made 39 probe reads before they were grouped, each paying a fault-safe copy's
/// set-up. Every field is zero when its read fails.
#[inline(always)]
pub fn read_words<const N: usize>(base: u64, span: Span, offs: [u32; N]) -> [u64; N] {
    const WORDS: usize = SPAN_MAX as usize / 8;
    match BLOCK.get_ptr_mut(0) {
        Some(block) if span.len != 0 && span.len <= SPAN_MAX => {
            // SAFETY: at most `SPAN_MAX` bytes into the per-CPU block; the helper validates
            // the source and zeroes the block on a fault.
            unsafe {
                bpf_probe_read_kernel(
                    block.cast(),
                    span.len,
                    base.wrapping_add(span.lo as u64) as *const _,
                )
            };
            core::array::from_fn(|i| {
                let o = offs[i];
                let at = (o.wrapping_sub(span.lo) / 8) as usize & (WORDS - 1);
                // SAFETY: a per-CPU value we own; the index is masked into it.
                unsafe { (*block)[at] >> ((o & 7) * 8) }
            })
        }
        _ => core::array::from_fn(|i| read_kernel(base, offs[i])),
    }
}

/// The six syscall arguments saved in `regs` (a `struct pt_regs`): on x86_64 one read of the
/// 64 bytes from r10 to di.
#[inline(always)]
pub fn read_args(regs: u64, cfg: &KernelConfig) -> [u64; 6] {
    read_words(regs, cfg.spans[span::REGS], cfg.regs_args)
}

/// Reads a `T` at `base + off` in kernel memory; zero when the read fails (the helper zeroes
/// the destination on a fault, a NULL `base` included). No branch on `base`: one verifier
/// state whatever the pointer, which keeps the path walk's loop cheap to verify.
#[inline(always)]
pub fn read_kernel<T: Copy>(base: u64, off: u32) -> T {
    // Not zeroed first: the helper writes every byte, the value or zeros (a zeroed array was a
    // call to a byte-by-byte `memset`).
    let mut v = core::mem::MaybeUninit::<T>::uninit();
    // SAFETY: bpf_probe_read_kernel validates the source address and fills all
    // `size_of::<T>()` bytes of `v` either way; `T` is plain data (integers and arrays of them).
    unsafe {
        bpf_probe_read_kernel(
            v.as_mut_ptr().cast(),
            size_of::<T>() as u32,
            base.wrapping_add(off as u64) as *const _,
        );
        v.assume_init()
    }
}

/// What the header read of the current task that a record's other parts need too.
#[derive(Clone, Copy)]
pub struct Current {
    pub task: u64,
    /// `task->fs`: root and working directory.
    pub fs: u64,
    /// `task->files`: the descriptor table.
    pub files: u64,
    pub cred: u64,
    pub nsproxy: u64,
}

/// The current task and the pointers a record reads through, in one read.
#[inline(always)]
pub fn current(cfg: &KernelConfig) -> Current {
    // SAFETY: helper without arguments.
    let task = unsafe { bpf_get_current_task() };
    // 112 bytes apart on 6.x: one read.
    let [cred, fs, files, nsproxy] = read_words(task, cfg.spans[span::TASK], cfg.task_words());
    Current {
        task,
        fs,
        files,
        cred,
        nsproxy,
    }
}

/// Fills `h` for the current task but for its pid-namespace view (zero: see
/// [`with_pid_view`]); `size` is left for the emitter.
#[inline(always)]
pub fn fill_header(h: &mut EventHeader, kind: u32, cfg: &KernelConfig) -> Current {
    let cur = current(cfg);
    fill_header_of(h, kind, cfg, &cur);
    cur
}

/// [`fill_header`] for a task already read with [`current`].
#[inline(always)]
pub fn fill_header_of(h: &mut EventHeader, kind: u32, cfg: &KernelConfig, cur: &Current) {
    let pid_tgid = bpf_get_current_pid_tgid();
    let uid_gid = bpf_get_current_uid_gid();
    h.kind = kind;
    h._pad = 0;
    // SAFETY: helpers without arguments.
    h.ktime_ns = unsafe { bpf_ktime_get_boot_ns() };
    h.tgid = (pid_tgid >> 32) as u32;
    h.tid = pid_tgid as u32;
    h.uid = uid_gid as u32;
    h.gid = (uid_gid >> 32) as u32;
    h.cgroup_id = unsafe { bpf_get_current_cgroup_id() };
    // Straight into the header: the helper pads with NULs (and zeroes the buffer on a
    // failure); a zeroed local first was a byte-by-byte memset, as the BPF target cannot store
    // wider than a `[u8; 16]`'s alignment.
    // SAFETY: 16 writable bytes.
    unsafe { bpf_get_current_comm(h.comm.as_mut_ptr().cast(), 16) };

    let [euid, egid, permitted, effective] =
        read_words(cur.cred, cfg.spans[span::CRED], cfg.cred_words());
    h.euid = euid as u32;
    h.egid = egid as u32;
    h.cap_permitted = permitted;
    h.cap_effective = effective;

    let mnt_ns: u64 = read_kernel(cur.nsproxy, cfg.nsproxy_mnt_ns);
    h.mnt_ns = read_kernel(mnt_ns, cfg.mnt_ns_inum);
    // Fixed for a process's life, so learned by userspace from its exec and fork records
    // (`with_pid_view`) rather than read for every syscall: four probe reads fewer per
    // captured syscall.
    h.vpid = 0;
    h.pid_ns = 0;
}

/// Fills the header's pid-namespace view (`vpid`, `pid_ns`) for records that create or end a
/// process's identity (exec, exit, a profile verdict): see [`pid_view`].
#[inline(always)]
pub fn with_pid_view(h: &mut EventHeader, cur: &Current, cfg: &KernelConfig) {
    // A thread whose id is its process's is the group leader itself (an exec from another
    // thread makes it so): one read fewer for every single-threaded process.
    let leader: u64 = if h.tid == h.tgid {
        cur.task
    } else {
        read_kernel(cur.task, cfg.task_group_leader)
    };
    let (vpid, pid_ns) = pid_view(leader, cfg);
    h.vpid = vpid;
    h.pid_ns = pid_ns;
}

/// The process id of the group leader `leader` as its own pid namespace sees it, and that
/// namespace's inode number: the leader's `struct pid`, entry `numbers[level]` (see
/// task_active_pid_ns() and pid_vnr() in kernel/pid.c). The level and the entries of levels
/// 0 to 2 (the host, a container, a container in a container) in one read; deeper, the entry
/// is read on its own. Neither changes in a process's life (`unshare(CLONE_NEWPID)` moves the
/// children only), which is why syscall records leave them to userspace.
#[inline(always)]
pub fn pid_view(leader: u64, cfg: &KernelConfig) -> (u32, u32) {
    let pid: u64 = read_kernel(leader, cfg.task_thread_pid);
    let w = read_words(pid, cfg.spans[span::PID], cfg.pid_words());
    let level = w[0] as u32;
    const _: () = assert!(PID_LEVELS_SPANNED == 3);
    let (vpid, pid_ns) = match level {
        0 => (w[1], w[2]),
        1 => (w[3], w[4]),
        2 => (w[5], w[6]),
        _ => {
            let upid = pid + cfg.upid_at(level & 0x3f, 0) as u64;
            (
                read_kernel::<u32>(upid, cfg.upid_nr) as u64,
                read_kernel(upid, cfg.upid_ns),
            )
        }
    };
    (vpid as u32, read_kernel(pid_ns, cfg.pid_ns_inum))
}
