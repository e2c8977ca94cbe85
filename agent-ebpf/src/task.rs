//! The identity of the current task, for every event's header.
//!
//! What helpers give directly (pid/tgid, real uid/gid, comm, cgroup id) comes from helpers.
//! Effective ids and namespace inode numbers need a walk of `task_struct`; its member offsets
//! come from the running kernel's BTF through `CONFIG` (Rust eBPF has no CO-RE), and every read
//! goes through `bpf_probe_read_kernel`, so a wrong offset yields a wrong value, never a fault.

use agent_common::{EventHeader, KernelConfig};
use aya_ebpf::{
    helpers::{
        bpf_get_current_cgroup_id, bpf_get_current_comm, bpf_get_current_pid_tgid,
        bpf_get_current_task, bpf_get_current_uid_gid, bpf_ktime_get_boot_ns,
        generated::bpf_probe_read_kernel,
    },
    macros::map,
    maps::PerCpuArray,
};

/// Where the argument registers are read to in one go (`read_args`).
#[map]
static REGS_BLOCK: PerCpuArray<[u64; 16]> = PerCpuArray::with_max_entries(1, 0);

/// The six syscall arguments saved in `regs` (a `struct pt_regs`). One probe read of the block
/// that holds them all where `CONFIG` says one exists (each read costs a fault-safe copy's
/// set-up, the bulk of its price), else one read each.
#[inline(always)]
pub fn read_args(regs: u64, cfg: &KernelConfig) -> [u64; 6] {
    let span = cfg.regs_args_span;
    let block = REGS_BLOCK.get_ptr_mut(0);
    let (Some(block), true) = (block, span != 0) else {
        return [
            read_kernel(regs, cfg.regs_args[0]),
            read_kernel(regs, cfg.regs_args[1]),
            read_kernel(regs, cfg.regs_args[2]),
            read_kernel(regs, cfg.regs_args[3]),
            read_kernel(regs, cfg.regs_args[4]),
            read_kernel(regs, cfg.regs_args[5]),
        ];
    };
    let base = cfg.regs_args_base;
    // SAFETY: at most 127 bytes into the 128 of the per-CPU block; the helper validates the
    // source.
    unsafe {
        bpf_probe_read_kernel(
            block.cast(),
            span & 127,
            regs.wrapping_add(base as u64) as *const _,
        )
    };
    // SAFETY: a per-CPU value we own; indices masked into it.
    let at = |off: u32| unsafe { (*block)[(off.wrapping_sub(base) / 8) as usize & 15] };
    [
        at(cfg.regs_args[0]),
        at(cfg.regs_args[1]),
        at(cfg.regs_args[2]),
        at(cfg.regs_args[3]),
        at(cfg.regs_args[4]),
        at(cfg.regs_args[5]),
    ]
}

/// Reads a `T` at `base + off` in kernel memory; zero when the read fails (the helper zeroes
/// the destination on a fault, a NULL `base` included). No branch on `base`: one verifier
/// state whatever the pointer, which keeps the path walk's loop cheap to verify.
#[inline(always)]
pub fn read_kernel<T: Copy + Default>(base: u64, off: u32) -> T {
    let mut v = T::default();
    // SAFETY: bpf_probe_read_kernel validates the source address.
    unsafe {
        bpf_probe_read_kernel(
            (&raw mut v).cast(),
            size_of::<T>() as u32,
            base.wrapping_add(off as u64) as *const _,
        )
    };
    v
}

/// Fills `h` for the current task; `size` is left for the emitter.
#[inline(always)]
pub fn fill_header(h: &mut EventHeader, kind: u32, cfg: &KernelConfig) {
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
    h.comm = bpf_get_current_comm().unwrap_or([0; 16]);

    let task = unsafe { bpf_get_current_task() };
    let cred: u64 = read_kernel(task, cfg.task_cred);
    // Neighbours in `struct cred` on every kernel we know: one read for each pair.
    if cfg.cred_egid == cfg.cred_euid + 4 {
        let ids: u64 = read_kernel(cred, cfg.cred_euid);
        h.euid = ids as u32;
        h.egid = (ids >> 32) as u32;
    } else {
        h.euid = read_kernel(cred, cfg.cred_euid);
        h.egid = read_kernel(cred, cfg.cred_egid);
    }
    if cfg.cred_cap_effective == cfg.cred_cap_permitted + 8 {
        let caps: [u64; 2] = read_kernel(cred, cfg.cred_cap_permitted);
        h.cap_permitted = caps[0];
        h.cap_effective = caps[1];
    } else {
        h.cap_effective = read_kernel(cred, cfg.cred_cap_effective);
        h.cap_permitted = read_kernel(cred, cfg.cred_cap_permitted);
    }

    let nsproxy: u64 = read_kernel(task, cfg.task_nsproxy);
    let mnt_ns: u64 = read_kernel(nsproxy, cfg.nsproxy_mnt_ns);
    h.mnt_ns = read_kernel(mnt_ns, cfg.mnt_ns_inum);

    // The process's pid as its own pid namespace sees it: the group leader's `struct pid`,
    // entry `numbers[level]` (see task_active_pid_ns() and pid_vnr() in kernel/pid.c).
    let leader: u64 = read_kernel(task, cfg.task_group_leader);
    let pid: u64 = read_kernel(leader, cfg.task_thread_pid);
    let level: u32 = read_kernel(pid, cfg.pid_level);
    let upid = pid + cfg.pid_numbers as u64 + (level & 0x3f) as u64 * cfg.upid_size as u64;
    h.vpid = read_kernel(upid, cfg.upid_nr);
    let pid_ns: u64 = read_kernel(upid, cfg.upid_ns);
    h.pid_ns = read_kernel(pid_ns, cfg.pid_ns_inum);
}
