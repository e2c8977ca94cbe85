//! Syscalls: the `raw_syscalls` pair as raw tracepoints.
//!
//! One program at `sys_enter` and one at `sys_exit` see every syscall of every task. Each costs
//! one array lookup in `SYSCALL_SPECS` for a syscall nobody asked for, and returns. For a
//! syscall of interest, `sys_enter` copies its arguments and the user memory they point to
//! (paths, socket addresses, argv, structs) into a `PENDING` entry for the thread; `sys_exit`
//! adds the return value and the task's identity at exit and emits one record per completed
//! syscall. Per-syscall `syscalls:sys_enter_*` tracepoints were measured against this pair; see
//! the README ("Why one raw_syscalls pair") for the numbers and the reasons.
//!
//! Time of check, time of use: user memory is read at entry, before the kernel reads it. A
//! second thread of the same process can rewrite a path or a sockaddr between our copy and the
//! kernel's, so what is reported can differ from what the kernel acted on. Only an LSM hook
//! (not available on these kernels) reads the kernel's own copy. The return value at exit is
//! the kernel's and cannot be forged this way.

use agent_common::{
    DATA_MAX, EventKind, MAX_SYSCALL_NR, SYSCALL_DATA_OFFSET, SyscallEvent, SyscallSpec, capture,
    counter, spec_flags, trunc,
};
use aya_ebpf::{
    bindings::BPF_ANY,
    helpers::{
        bpf_get_current_pid_tgid, bpf_ktime_get_boot_ns,
        generated::{bpf_probe_read_user, bpf_probe_read_user_str},
    },
    macros::raw_tracepoint,
    programs::RawTracePointContext,
};

use crate::{
    maps::{PENDING, SCRATCH, SYSCALL_SPECS, config, count},
    process::emit,
    profile,
    task::{fill_header, read_kernel},
};

/// The most argv strings captured for execve/execveat; more set `trunc::ARGS`.
const MAX_ARGV: usize = 24;
/// Socket addresses are at most `sizeof(struct sockaddr_storage)`.
const SOCKADDR_MAX: u32 = 128;
/// Fixed-size structs (open_how, clone_args, capabilities) are small.
const BYTES_MAX: u32 = 128;

#[inline(always)]
fn spec_for(nr: u64) -> Option<&'static SyscallSpec> {
    if nr >= MAX_SYSCALL_NR as u64 {
        return None;
    }
    let spec = SYSCALL_SPECS.get(nr as u32)?;
    if spec.flags & spec_flags::INTERESTED == 0 {
        return None;
    }
    Some(spec)
}

/// `raw_syscalls:sys_enter`: `TP_PROTO(struct pt_regs *regs, long id)`.
#[raw_tracepoint(tracepoint = "sys_enter")]
pub fn sys_enter(ctx: RawTracePointContext) -> u32 {
    match try_sys_enter(&ctx) {
        Ok(()) => 0,
        Err(()) => 1,
    }
}

fn try_sys_enter(ctx: &RawTracePointContext) -> Result<(), ()> {
    let nr: u64 = ctx.arg(1);
    // Profiles first: they judge every syscall of the tasks in their scope, captured or not.
    profile::check(ctx, nr);
    let Some(spec) = spec_for(nr) else {
        return Ok(());
    };
    let cfg = config();
    let pid_tgid = bpf_get_current_pid_tgid();
    if cfg.ready == 0 || (pid_tgid >> 32) as u32 == cfg.agent_tgid {
        return Ok(());
    }
    let ev = SCRATCH.get_ptr_mut(0).ok_or(())?;
    // SAFETY: a per-CPU slot owned by this invocation.
    let ev = unsafe { &mut *ev };
    let regs: u64 = ctx.arg(0);
    ev.nr = nr as u32;
    ev.flags = 0;
    ev.ret = 0;
    ev.enter_ns = unsafe { bpf_ktime_get_boot_ns() };
    ev.args[0] = read_kernel(regs, cfg.regs_args[0]);
    ev.args[1] = read_kernel(regs, cfg.regs_args[1]);
    ev.args[2] = read_kernel(regs, cfg.regs_args[2]);
    ev.args[3] = read_kernel(regs, cfg.regs_args[3]);
    ev.args[4] = read_kernel(regs, cfg.regs_args[4]);
    ev.args[5] = read_kernel(regs, cfg.regs_args[5]);
    ev.cap_len = [0; 4];

    let mut off = 0usize;
    off = capture_at_entry(ev, spec, 0, off);
    off = if spec.captures[1].kind == capture::ARGV {
        capture_argv(ev, spec.captures[1].arg, off)
    } else {
        capture_at_entry(ev, spec, 1, off)
    };
    capture_at_entry(ev, spec, 2, off);

    if PENDING.insert(&pid_tgid, &*ev, BPF_ANY as u64).is_err() {
        count(counter::PENDING_FULL);
    }
    Ok(())
}

#[inline(always)]
fn arg(ev: &SyscallEvent, i: u8) -> u64 {
    ev.args[(i & 7) as usize % 6]
}

/// Captures `spec.captures[i]` at `off` in `ev.data`; returns the offset after it.
#[inline(always)]
fn capture_at_entry(ev: &mut SyscallEvent, spec: &SyscallSpec, i: usize, off: usize) -> usize {
    let c = spec.captures[i];
    if off >= DATA_MAX {
        if c.kind != capture::NONE {
            ev.flags |= trunc::CAPTURE0 << i;
        }
        return off;
    }
    let off = off & (DATA_MAX - 1);
    // SAFETY: off < DATA_MAX; every copy below is at most DATA_MAX bytes, inside 2*DATA_MAX.
    let dst = unsafe { ev.data.as_mut_ptr().add(off) };
    let ptr = arg(ev, c.arg);
    let len: i64 = match c.kind {
        capture::STR => {
            let n =
                unsafe { bpf_probe_read_user_str(dst.cast(), DATA_MAX as u32, ptr as *const _) };
            if n as usize >= DATA_MAX {
                ev.flags |= trunc::CAPTURE0 << i;
            }
            n - 1 // without the NUL
        }
        capture::BYTES => {
            let size = if c.size > BYTES_MAX {
                BYTES_MAX
            } else {
                c.size
            };
            let r = unsafe { bpf_probe_read_user(dst.cast(), size, ptr as *const _) };
            if r < 0 { r } else { size as i64 }
        }
        capture::SOCKADDR => {
            let n = arg(ev, c.len_arg) as u32;
            let size = if n > SOCKADDR_MAX { SOCKADDR_MAX } else { n };
            let r = unsafe { bpf_probe_read_user(dst.cast(), size, ptr as *const _) };
            if r < 0 { r } else { size as i64 }
        }
        _ => 0,
    };
    let len = if len < 0 {
        if ptr != 0 {
            ev.flags |= trunc::FAULT;
        }
        0
    } else {
        len as usize & (DATA_MAX - 1)
    };
    ev.cap_len[i] = len as u16;
    off + len
}

/// Copies an argv array (pointer in argument `argi`) as NUL-separated strings, like
/// `/proc/PID/cmdline`, at most `MAX_ARGV` strings and `DATA_MAX` bytes in all.
#[inline(always)]
fn capture_argv(ev: &mut SyscallEvent, argi: u8, start: usize) -> usize {
    let argv = arg(ev, argi);
    let mut off = start;
    let mut i = 0;
    while i < MAX_ARGV {
        if off >= DATA_MAX {
            ev.flags |= trunc::ARGS;
            break;
        }
        let mut p: u64 = 0;
        let r = unsafe {
            bpf_probe_read_user((&raw mut p).cast(), 8, (argv + 8 * i as u64) as *const _)
        };
        if r < 0 {
            ev.flags |= trunc::FAULT;
            break;
        }
        if p == 0 {
            break;
        }
        let o = off & (DATA_MAX - 1);
        // SAFETY: o < DATA_MAX, copy bounded by DATA_MAX: inside the buffer.
        let n = unsafe {
            bpf_probe_read_user_str(
                ev.data.as_mut_ptr().add(o).cast(),
                DATA_MAX as u32,
                p as *const _,
            )
        };
        if n <= 0 {
            ev.flags |= trunc::FAULT;
            break;
        }
        off = o + (n as usize & (DATA_MAX - 1)); // keeps the NUL as separator
        i += 1;
    }
    if i == MAX_ARGV {
        ev.flags |= trunc::ARGS;
    }
    let len = if off > start { off - start } else { 0 };
    ev.cap_len[1] = (len & 0xffff) as u16;
    off
}

/// `raw_syscalls:sys_exit`: `TP_PROTO(struct pt_regs *regs, long ret)`.
#[raw_tracepoint(tracepoint = "sys_exit")]
pub fn sys_exit(ctx: RawTracePointContext) -> u32 {
    match try_sys_exit(&ctx) {
        Ok(()) => 0,
        Err(()) => 1,
    }
}

fn try_sys_exit(ctx: &RawTracePointContext) -> Result<(), ()> {
    let cfg = config();
    let regs: u64 = ctx.arg(0);
    let nr: u64 = read_kernel(regs, cfg.regs_nr);
    let Some(spec) = spec_for(nr) else {
        return Ok(());
    };
    let pid_tgid = bpf_get_current_pid_tgid();
    // Absent when the syscall started before we attached, belongs to the agent, or found
    // PENDING full (counted at entry).
    let ev = PENDING.get_ptr_mut(&pid_tgid).ok_or(())?;
    // SAFETY: this thread's own entry; no other thread touches it until removed below.
    let ev = unsafe { &mut *ev };
    ev.ret = ctx.arg::<u64>(1) as i64;
    fill_header(&mut ev.header, EventKind::Syscall as u32, cfg);

    let mut total = (ev.cap_len[0] as usize & (DATA_MAX - 1))
        + (ev.cap_len[1] as usize & (DATA_MAX - 1))
        + (ev.cap_len[2] as usize & (DATA_MAX - 1));
    // A socket address the kernel wrote (accept's peer), readable only now. It is always the
    // last capture of its syscall.
    let c = spec.captures[2];
    if c.kind == capture::SOCKADDR_OUT && ev.ret >= 0 && total < DATA_MAX {
        let ptr = arg(ev, c.arg);
        let mut n: u32 = 0;
        let lenp = arg(ev, c.len_arg);
        if ptr != 0 && lenp != 0 {
            unsafe { bpf_probe_read_user((&raw mut n).cast(), 4, lenp as *const _) };
            let size = if n > SOCKADDR_MAX { SOCKADDR_MAX } else { n };
            let o = total & (DATA_MAX - 1);
            let r = unsafe {
                bpf_probe_read_user(ev.data.as_mut_ptr().add(o).cast(), size, ptr as *const _)
            };
            if r == 0 {
                ev.cap_len[2] = size as u16;
                total = o + size as usize;
            }
        }
    }

    let size = SYSCALL_DATA_OFFSET + (total & (2 * DATA_MAX - 1));
    ev.header.size = size as u32;
    emit(ev, size, counter::DROP_SYSCALL);
    count(counter::SYSCALLS_EMITTED);
    let _ = PENDING.remove(&pid_tgid);
    Ok(())
}
