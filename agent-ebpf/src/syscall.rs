//! Syscalls: the `raw_syscalls` pair as raw tracepoints.
//!
//! `sys_enter` runs every syscall's profile check and nothing else. `sys_exit` does the
//! capture: one array lookup in `SYSCALL_SPECS` for a syscall nobody asked for, and for one of
//! interest it reads the argument registers from the saved `pt_regs` (the syscall entry code
//! saved them and a syscall returns its result in `ax` alone, so on x86_64 `di, si, dx, r10,
//! r8, r9` still hold the arguments at exit), copies the user memory they point to, resolves
//! the file the kernel used (path.rs) and emits one record, built in a per-CPU buffer.
//!
//! Nothing is kept between entry and exit, so there is no table of in-flight syscalls that
//! threads blocked in `connect()` or in opening a FIFO could fill to blind the sensor: a
//! blocked thread holds nothing anybody else needs.
//!
//! Time of check, time of use: user memory is read after the kernel read it. Another thread of
//! the same process can rewrite a path or sockaddr between the kernel's copy and ours (at entry
//! the window was the other way round; it exists either way for a tracepoint sensor). What
//! cannot be forged that way is what the kernel returns: the result, and for a descriptor the
//! file behind it, whose path is walked in the kernel's own dentries. Relative paths are joined
//! to the directory the kernel resolved (the directory descriptor or the working directory).
//! Only an LSM hook (not available on these kernels) sees the kernel's own copy of a path that
//! did not produce a descriptor (unlink, rename, chmod...).

use agent_common::{
    COMPAT_PROFILE_ONLY, COMPAT_SOCKETCALL, DATA_MAX, DIRFD_CWD, EventKind, KernelConfig,
    MAX_SYSCALL_NR, SYSCALL_DATA_OFFSET, SyscallEvent, SyscallSpec, capture, counter, kpath,
    open_filter as open_filter_abi, ring, socketcall, spec_flags, trunc,
};
use aya_ebpf::{
    EbpfContext,
    helpers::generated::{
        bpf_get_current_task_btf, bpf_probe_read_user, bpf_probe_read_user_str, bpf_task_pt_regs,
    },
    macros::{btf_tracepoint, raw_tracepoint, tracepoint},
    programs::{BtfTracePointContext, RawTracePointContext, TracePointContext},
};

use crate::{
    maps::{COMPAT_NR, SCRATCH, SYSCALL_SPECS, config, count},
    open_filter,
    output::{Lane, emit_in},
    path::{file_of_fd, walk},
    profile,
    task::{
        Access, Cast, Current, Obj, Probed, Typed, fill_header_of, read_kernel, socketcall_args,
    },
};

/// The most argv strings captured for execve/execveat; more set `trunc::ARGS`.
const MAX_ARGV: usize = 24;
/// Socket addresses are at most `sizeof(struct sockaddr_storage)`.
const SOCKADDR_MAX: u32 = 128;
/// Fixed-size structs (open_how, clone_args, capabilities) are small.
const BYTES_MAX: u32 = 128;

#[inline(always)]
pub fn spec_for(nr: u64) -> Option<&'static SyscallSpec> {
    let spec = entry_for(nr)?;
    if spec.flags & spec_flags::INTERESTED == 0 {
        return None;
    }
    Some(spec)
}

/// The `SYSCALL_SPECS` entry of `nr` when the call is wanted on the 64-bit entry, or its
/// number on the 32-bit one is (`spec_flags::COMPAT_CHECK`): one lookup and one test, as for
/// a call nobody wants either way.
#[inline(always)]
fn entry_for(nr: u64) -> Option<&'static SyscallSpec> {
    if nr >= MAX_SYSCALL_NR as u64 {
        return None;
    }
    let spec = SYSCALL_SPECS.get(nr as u32)?;
    if spec.flags & (spec_flags::INTERESTED | spec_flags::COMPAT_CHECK) == 0 {
        return None;
    }
    Some(spec)
}

/// A call made through the 32-bit entry (`int $0x80`, which any x86_64 process may execute,
/// or a 32-bit program), number `raw`, as the 64-bit call it is: its spec, with `ev.nr` and
/// `ev.args` set to the 64-bit call's number and arguments. Without this such a call was read
/// as the 64-bit call of the same number (ia32 `open` is 5, x86_64 `fstat`), and an open of
/// /etc/shadow went unseen. `socketcall` is the operation its first argument names, with the
/// argument words its second points at ([`socketcall_args`]). `None` for a call no 64-bit call
/// stands for, one whose arguments are laid out otherwise, or one nobody wants.
#[inline(always)]
fn compat_call<A: Access>(
    ev: &mut SyscallEvent,
    regs: u64,
    raw: u64,
    cfg: &KernelConfig,
) -> Option<&'static SyscallSpec> {
    let to = *COMPAT_NR.get(raw as u32)?;
    let args = A::compat_args(regs, cfg);
    if to == COMPAT_SOCKETCALL {
        let (nr, words) = socketcall(args[0])?;
        let spec = spec_for(nr as u64)?;
        ev.nr = nr;
        ev.args = socketcall_args(args[1], words).unwrap_or_else(|| {
            ev.flags |= trunc::FAULT;
            [0; 6]
        });
        return Some(spec);
    }
    if to == 0 || to & COMPAT_PROFILE_ONLY != 0 {
        return None;
    }
    let spec = spec_for(to as u64 - 1)?;
    ev.nr = to - 1;
    ev.args = args;
    Some(spec)
}

/// `raw_syscalls:sys_enter`: `TP_PROTO(struct pt_regs *regs, long id)`. Only profiles act at
/// entry (a kill must come before the syscall's effect); capture waits for the exit.
#[raw_tracepoint(tracepoint = "sys_enter")]
pub fn sys_enter(ctx: RawTracePointContext) -> u32 {
    // The low 32 bits, which the kernel runs (see `Access::nr`): a number with junk in rax's
    // upper half is the call of its low half, not one no profile names.
    let nr = ctx.arg::<u64>(1) as u32 as u64;
    profile::check(&ctx, nr);
    0
}

#[inline(always)]
fn arg(ev: &SyscallEvent, i: u8) -> u64 {
    ev.args[(i & 7) as usize % 6]
}

/// Captures `spec.captures[i]` at `off` in `ev.data`; returns the offset after it.
#[inline(always)]
fn capture(ev: &mut SyscallEvent, spec: &SyscallSpec, i: usize, off: usize) -> usize {
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
        // A socket address the kernel wrote (accept's peer), its length in the user `int`
        // that `len_arg` points to. Only a success wrote one.
        capture::SOCKADDR_OUT if ev.ret >= 0 && ptr != 0 => {
            let mut n: u32 = 0;
            let lenp = arg(ev, c.len_arg);
            let r = unsafe { bpf_probe_read_user((&raw mut n).cast(), 4, lenp as *const _) };
            if r < 0 {
                r
            } else {
                let size = if n > SOCKADDR_MAX { SOCKADDR_MAX } else { n };
                let r = unsafe { bpf_probe_read_user(dst.cast(), size, ptr as *const _) };
                if r < 0 { r } else { size as i64 }
            }
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
    // A 32-bit call's array holds 4-byte pointers. Taken from memory, so that the verifier
    // walks the loop once for some width rather than once for each.
    // SAFETY: a field of the per-CPU event we own.
    let compat = (unsafe { core::ptr::read_volatile(&ev.flags) } & trunc::COMPAT != 0) as u64;
    let width = 8 - 4 * compat;
    let mut off = start;
    let mut i = 0;
    while i < MAX_ARGV {
        if off >= DATA_MAX {
            ev.flags |= trunc::ARGS;
            break;
        }
        let mut p: u64 = 0;
        // SAFETY: at most 8 bytes into `p`; the helper checks the user address.
        let r = unsafe {
            bpf_probe_read_user(
                (&raw mut p).cast(),
                width as u32,
                (argv + width * i as u64) as *const _,
            )
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

/// Zeroes `ev.cap_len` with one store. A plain `= [0; 4]` was merged with the neighbouring
/// stores into a call to `memset`, which the BPF target links as a byte-by-byte loop;
/// a volatile store is never merged.
#[inline(always)]
pub fn clear_cap_len(ev: &mut SyscallEvent) {
    // SAFETY: the four u16 at an 8-aligned offset (asserted in agent_common) of an 8-aligned
    // struct: one u64.
    unsafe { core::ptr::write_volatile((&raw mut ev.cap_len).cast::<u64>(), 0) };
}

/// `raw_syscalls:sys_exit`: `TP_PROTO(struct pt_regs *regs, long ret)`, where the BTF form
/// below does not load (kernels before 5.11, or without BTF).
#[raw_tracepoint(tracepoint = "sys_exit")]
pub fn sys_exit(ctx: RawTracePointContext) -> u32 {
    match try_sys_exit::<Probed>(ctx.arg(0), ctx.arg::<u64>(1) as i64) {
        Ok(()) => 0,
        Err(()) => 1,
    }
}

/// The same as a BTF tracepoint: the registers and the task are typed pointers, so the
/// syscall number every syscall on the node needs, and the arguments, credentials,
/// namespaces, root and descriptor table a captured one needs, are plain loads rather than
/// helper calls ([`Typed`]).
#[btf_tracepoint(function = "sys_exit")]
pub fn sys_exit_btf(ctx: BtfTracePointContext) -> u32 {
    match try_sys_exit::<Typed>(ctx.arg(0), ctx.arg::<u64>(1) as i64) {
        Ok(()) => 0,
        Err(()) => 1,
    }
}

/// The BTF tracepoint once more, its walks' objects read through casts ([`Cast`]: Linux 6.2's
/// `bpf_rdonly_cast`), loaded first where the agent could give the casts their type ids.
#[btf_tracepoint(function = "sys_exit")]
pub fn sys_exit_cast(ctx: BtfTracePointContext) -> u32 {
    match try_sys_exit::<Cast>(ctx.arg(0), ctx.arg::<u64>(1) as i64) {
        Ok(()) => 0,
        Err(()) => 1,
    }
}

/// `syscalls:sys_exit_NAME`, attached once for each syscall a rule wants, where the kernel has
/// no 32-bit entry (the agent checks; see `agent/src/sensor/events.rs`). The kernel runs it
/// only for those calls: every other syscall on the node pays a bit test in the kernel's own
/// code rather than a BPF program's dispatch and table lookup. Those events skip every call
/// made through the 32-bit entry (`int $0x80`), which is why they are used only where there
/// is none. The record is `{ common fields, int __syscall_nr, long ret }`: the result is at
/// offset 16 on every kernel; the registers are the task's saved ones (`bpf_task_pt_regs`,
/// Linux 5.15), read as the BTF form reads them.
#[tracepoint]
pub fn sys_exit_event(ctx: TracePointContext) -> u32 {
    match try_sys_exit::<Typed>(event_regs(), event_ret(&ctx)) {
        Ok(()) => 0,
        Err(()) => 1,
    }
}

/// The same, its path walks read through casts ([`Cast`]), loaded first where the agent could
/// give the casts their type ids.
#[tracepoint]
pub fn sys_exit_event_cast(ctx: TracePointContext) -> u32 {
    match try_sys_exit::<Cast>(event_regs(), event_ret(&ctx)) {
        Ok(()) => 0,
        Err(()) => 1,
    }
}

/// The current task's saved user registers: a pointer the verifier knows as `struct pt_regs`.
#[inline(always)]
fn event_regs() -> u64 {
    // SAFETY: helpers without preconditions; the task pointer is the verifier-trusted current.
    unsafe { bpf_task_pt_regs(bpf_get_current_task_btf()) as u64 }
}

/// A `sys_exit_NAME` record's result: a direct load from the context (no helper call).
#[inline(always)]
fn event_ret(ctx: &TracePointContext) -> i64 {
    // SAFETY: offset 16, 8 bytes, inside every kernel's record; the verifier checks the load.
    unsafe { core::ptr::read_volatile((ctx.as_ptr() as *const i64).add(2)) }
}

/// -ERESTARTSYS .. -ERESTART_RESTARTBLOCK: the syscall is restarted after a signal, and its
/// second run reports it.
const ERESTART_FIRST: i64 = -516;
const ERESTART_LAST: i64 = -512;

#[inline(always)]
fn try_sys_exit<A: Access>(regs: u64, ret: i64) -> Result<(), ()> {
    let nr = A::nr(regs, config());
    let Some(entry) = entry_for(nr) else {
        return Ok(());
    };
    // Fetched again rather than kept from above: every syscall on the node takes the path to
    // here, and a configuration pointer live across the lookup costs it a spill and a reload.
    let cfg = config();
    if cfg.ready == 0 || (ERESTART_FIRST..=ERESTART_LAST).contains(&ret) {
        return Ok(());
    }
    let ev = SCRATCH.get_ptr_mut(0).ok_or(())?;
    // SAFETY: a per-CPU slot owned by this invocation.
    let ev = unsafe { &mut *ev };
    // The task's entry is asked here only for a number whose 32-bit call is wanted; for the
    // others, below, where the task is at hand.
    let spec = if entry.flags & spec_flags::COMPAT_CHECK != 0 && A::compat(cfg) {
        // Which mode the calling code ran in: `int $0x80` in an x86_64 program, or a 32-bit
        // program. A helper read, on this rare path only.
        ev.flags = if read_kernel::<u16>(regs, cfg.regs_cs) as u32 == cfg.user64_cs {
            trunc::COMPAT | trunc::COMPAT_FROM_64
        } else {
            trunc::COMPAT
        };
        compat_call::<A>(ev, regs, A::nr(regs, cfg), cfg).ok_or(())?
    } else if entry.flags & spec_flags::INTERESTED != 0 {
        ev.flags = 0;
        // Loaded again rather than kept from the top: a number live that long is spilled to
        // the stack, and the path every syscall takes paid a store and a reload before its
        // lookup.
        ev.nr = A::nr(regs, cfg) as u32;
        ev.args = A::args(regs, cfg);
        entry
    } else {
        return Ok(());
    };
    if ret == 0 && spec.flags & spec_flags::PARENT_ONLY != 0 {
        return Ok(());
    }
    // An open no loaded rule can match ends here, on its class, or once the names of the file
    // it returned are judged; so does an mprotect or fcntl no rule wants, on its class.
    // Except a call through the 32-bit entry, which the filter's derivation takes as one no
    // event it judges is (`evt.is_ia32` and `evt.is_ia32_from_64bit` are false there): a rule
    // may name such calls alone.
    let verdict = if ev.flags & trunc::COMPAT != 0 {
        open_filter_abi::PASS
    } else {
        open_filter::verdict(spec, ret, &ev.args)
    };
    if verdict == open_filter_abi::DROP {
        open_filter::filtered(spec);
        return Ok(());
    }
    // The agent's own syscalls are not reported (they would feed on themselves). Checked here,
    // after the filter, so that an open the filter passes over costs no helper call: the
    // agent's own are passed over with the others (and counted with them).
    let cur = A::current(cfg);
    if cur.tgid() == cfg.agent_tgid {
        return Ok(());
    }
    // A 32-bit call whose number is a wanted 64-bit call (i386 `fork` is 2, x86_64 `open`) is
    // not that call: nobody wants it. Checked after the filter, which may pass over it as the
    // call it is not (harmless: nobody wants it either way), so that an open the filter passes
    // over pays no helper call for the check; here it is one load from the task.
    if ev.flags & trunc::COMPAT == 0 && A::compat_of(&cur, cfg) {
        return Ok(());
    }
    if verdict & open_filter_abi::KEYS != 0
        && ret >= 0
        && spec.flags & spec_flags::RET_FD != 0
        && !open_filter::admits::<A>(
            verdict,
            file_obj::<A>(cur.files, ret as u64),
            A::fs_path(cur.fs, cfg.fs_root, cfg),
        )
    {
        open_filter::filtered(spec);
        return Ok(());
    }
    ev.ret = ret;
    ev.ring = 0;
    ev.ring_req = 0;
    clear_cap_len(ev);
    ev.kpath_flags = 0;
    ev.kpath_magic = 0;
    ev.kpath_ino = 0;

    let mut total = 0usize;
    // A successful exec replaced the registers with the new program's: the exec record
    // carries its path and argv.
    if !(ret == 0 && spec.flags & spec_flags::EXEC != 0) {
        total = capture(ev, spec, 0, total);
        total = if spec.captures[1].kind == capture::ARGV {
            capture_argv(ev, spec.captures[1].arg, total)
        } else {
            capture(ev, spec, 1, total)
        };
        total = capture(ev, spec, 2, total);
    }
    fill_header_of::<A>(&mut ev.header, EventKind::Syscall as u32, cfg, &cur);
    resolve_and_emit::<A>(ev, spec, total, cur);
    Ok(())
}

/// Appends the kernel path to a record whose header and captures (`total` bytes) are written,
/// and emits the record.
#[inline(always)]
pub fn resolve_and_emit<A: Access>(
    ev: &mut SyscallEvent,
    spec: &SyscallSpec,
    total: usize,
    cur: Current,
) {
    // Through memory, so the verifier sees one unknown length here rather than one state per
    // path through the captures: every path then shares one check of the walk that follows.
    ev.header.size = total as u32;
    // SAFETY: a field of the per-CPU event we own.
    let start = unsafe { core::ptr::read_volatile(&ev.header.size) } as usize;
    let total = resolve::<A>(ev, spec, start, cur);

    let size = SYSCALL_DATA_OFFSET + (total & (2 * DATA_MAX - 1));
    ev.header.size = size as u32;
    // An execve is judged from its syscall record (the exec record feeds the process table):
    // both are the programs a share runs, kept by its lifecycle bucket.
    let lane = if spec.flags & spec_flags::EXEC != 0 {
        Lane::Lifecycle
    } else {
        Lane::Any
    };
    emit_in(lane, ev, &ev.header, size, counter::DROP_SYSCALL);
    count(counter::SYSCALLS_EMITTED);
}

/// Appends the kernel path of the syscall's object after the captures: the file of a returned
/// descriptor, else of a descriptor argument, else the directory a relative path in capture 0
/// starts from. At most one walk per syscall.
#[inline(always)]
fn resolve<A: Access>(
    ev: &mut SyscallEvent,
    spec: &SyscallSpec,
    total: usize,
    cur: Current,
) -> usize {
    const AT_FDCWD: i64 = -100;
    let cfg = config();
    let (obj, of) = if spec.flags & spec_flags::RET_FD != 0 && ev.ret >= 0 {
        (file_obj::<A>(cur.files, ev.ret as u64), kpath::OF_RET)
    } else if spec.fd_arg != 0 {
        let fd = arg(ev, spec.fd_arg - 1) as u32 as i32;
        // A registered file's index is not a descriptor of the process.
        if fd < 0 || ev.ring & ring::FIXED_FILE != 0 {
            return total;
        }
        (file_obj::<A>(cur.files, fd as u64), kpath::OF_FD_ARG)
    } else if spec.dirfd != 0 && ev.cap_len[0] > 0 && ev.data[0] != b'/' {
        let dirfd = if spec.dirfd == DIRFD_CWD {
            AT_FDCWD
        } else {
            arg(ev, spec.dirfd - 1) as u32 as i32 as i64
        };
        if dirfd == AT_FDCWD {
            (A::fs_path(cur.fs, cfg.fs_pwd, cfg), kpath::OF_DIR)
        } else if dirfd >= 0 {
            (file_obj::<A>(cur.files, dirfd as u64), kpath::OF_DIR)
        } else {
            return total;
        }
    } else {
        return total;
    };
    walk_into::<A>(ev, total, obj, of, A::fs_path(cur.fs, cfg.fs_root, cfg))
}

/// Walks `obj` up to `root` into `ev.data` at `total` as the record's kernel path; returns
/// the new total.
#[inline(always)]
pub fn walk_into<A: Access>(
    ev: &mut SyscallEvent,
    total: usize,
    obj: Obj,
    of: u32,
    root: Obj,
) -> usize {
    if total >= DATA_MAX {
        return total;
    }
    ev.kpath_flags = of;
    let w = walk::<A>(&mut ev.data, total, &mut ev.kpath_cursor, obj, root);
    ev.kpath_flags |= w.flags;
    ev.kpath_magic = w.magic;
    ev.kpath_ino = w.ino;
    ev.cap_len[3] = (w.len & (DATA_MAX - 1)) as u16;
    total + (w.len & (DATA_MAX - 1))
}

/// The (mount, dentry) of the file behind descriptor `fd` in the table `files`.
#[inline(always)]
pub fn file_obj<A: Access>(files: u64, fd: u64) -> Obj {
    let cfg = config();
    let file = file_of_fd::<A>(files, fd, cfg);
    A::file_path(file, cfg)
}
