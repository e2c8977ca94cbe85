//! Osprey's kernel programs. One file per hook family:
//! - `process.rs`: process lifecycle (`sched_process_exec`, `sched_process_fork`,
//!   `sched_process_exit`);
//! - `syscall.rs`: the `raw_syscalls` pair: profiles at entry, capture of a syscall's
//!   arguments, result and kernel-resolved file at exit;
//! - `open_filter.rs`: opens no loaded rule can match, passed over at exit;
//! - `path.rs`: the dentry and mount walk that turns a kernel `struct path` into a path;
//! - `uring.rs`: io_uring requests (`io_uring_submit_req`, `io_uring_complete`), reported as
//!   the syscalls they stand for;
//! - `profile.rs`: seccomp-like syscall profiles, decided in `sys_enter` for tasks whose cgroup
//!   has one (allow, log, alert, kill), and syscall recording per cgroup.
//!
//! Shared maps live in `maps.rs`, the ring buffer and each cgroup's share of it in `output.rs`,
//! the event header (identity of the current task) in `task.rs`.
#![no_std]
#![no_main]
// `atomic_xadd` for the per-cgroup loss counts (output.rs).
#![feature(core_intrinsics)]
// The placeholder kfunc calls of `bpf_rdonly_cast` (task.rs, `agent_common::cast`).
#![feature(asm_experimental_arch)]
#![allow(internal_features)]

mod maps;
mod open_filter;
mod output;
mod path;
mod process;
mod profile;
mod syscall;
mod task;
mod uring;

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

/// GPL-compatible: `bpf_probe_read_kernel`, `bpf_probe_read_user` and `bpf_send_signal` are
/// GPL-only helpers.
#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";
