//! io_uring: the operations a ring submits never pass through `raw_syscalls`. A process can
//! open, connect, accept, send, receive, splice, unlink and rename through a ring with one
//! `io_uring_enter` (or none at all, with a kernel-side submission-queue thread), so a
//! syscall-only sensor is blind to them.
//!
//! Two tracepoints see every request: `io_uring_submit_req` (`io_uring_submit_sqe` before
//! Linux 6.4) after the request was prepared, and `io_uring_complete` when its result is
//! posted. Both carry the kernel's `struct io_kiocb`; each opcode keeps its own struct at
//! `io_kiocb.cmd` (`io_open`, `io_connect`...), whose member offsets come from BTF like every
//! other offset. Linux 5.10's tracepoints carry no request pointer: there io_uring operations
//! are not reported, and the agent says so at start-up.
//!
//! A request is reported as the syscall it stands for (`IORING_OP_OPENAT` as `openat`,
//! `IORING_OP_CONNECT` as `connect`...) with that syscall's arguments, so every rule on
//! `openat` sees a ring's opens too; the record says it came from a ring (agent_common::ring).
//! The submission record carries the arguments and captures: a path is the kernel's own copy
//! (`struct filename`, made when the request was prepared, so rewriting the user's buffer later
//! changes nothing), a socket address the user memory connect(2) would read, and the kernel
//! path of the descriptor argument or of the directory a relative path starts from. The
//! completion record carries the result and, for a descriptor it returned (open, accept,
//! socket), that file's kernel path. Userspace joins the two on the request's address; nothing
//! is kept in the kernel between them.
//!
//! Only opcodes whose syscall some rule (or the fd table) wants are reported: the same interest
//! filter as syscalls (`SYSCALL_SPECS`).

use agent_common::{DATA_MAX, SyscallEvent, kpath, ring};
use aya_ebpf::{
    EbpfContext,
    helpers::{
        bpf_get_current_pid_tgid,
        generated::{bpf_probe_read_kernel_str, bpf_probe_read_user},
    },
    macros::tracepoint,
    programs::TracePointContext,
};

use crate::{
    maps::{URING_SCRATCH, config},
    profile,
    syscall::{file_obj, resolve_and_emit, spec_for, walk_into},
    task::{Probed, fill_header, path_at, read_kernel},
};

/// `IOSQE_FIXED_FILE`, mirrored in the low bits of `io_kiocb.flags` (`REQ_F_FIXED_FILE`).
const FIXED_FILE: u64 = 1;
/// Socket addresses are at most `sizeof(struct sockaddr_storage)`.
const SOCKADDR_MAX: u32 = 128;

#[tracepoint]
pub fn io_uring_submit(ctx: TracePointContext) -> u32 {
    match try_submit(&ctx) {
        Ok(()) => 0,
        Err(()) => 1,
    }
}

#[tracepoint]
pub fn io_uring_complete(ctx: TracePointContext) -> u32 {
    match try_complete(&ctx) {
        Ok(()) => 0,
        Err(()) => 1,
    }
}

/// Sign-extends a kernel `int` (a descriptor) into an argument register's value.
#[inline(always)]
fn int(v: i32) -> u64 {
    v as i64 as u64
}

/// Copies the kernel string at `ptr` into `ev.data[off..]` as capture `i`; returns the offset
/// after it.
#[inline(always)]
fn kernel_str(ev: &mut SyscallEvent, i: usize, off: usize, ptr: u64) -> usize {
    if off >= DATA_MAX {
        return off;
    }
    let off = off & (DATA_MAX - 1);
    // SAFETY: off < DATA_MAX and the copy is at most DATA_MAX bytes: inside 2 * DATA_MAX.
    let n = unsafe {
        bpf_probe_read_kernel_str(
            ev.data.as_mut_ptr().add(off).cast(),
            DATA_MAX as u32,
            ptr as *const _,
        )
    };
    if n <= 1 {
        return off;
    }
    let len = (n - 1) as usize & (DATA_MAX - 1);
    ev.cap_len[i & 3] = len as u16;
    off + len
}

/// The `struct filename`'s string: the path as the kernel copied it from the process.
#[inline(always)]
fn filename(cmd: u64, off: u32) -> u64 {
    let cfg = config();
    let f: u64 = read_kernel(cmd, off);
    read_kernel(f, cfg.filename_name)
}

/// The arguments of the syscall that request `req` (opcode `op`, its own struct at `cmd`,
/// its descriptor `fd`) stands for, in that syscall's order; zero where the request has none.
#[inline(always)]
fn request_args(op: u8, cmd: u64, fd: i32) -> [u64; 6] {
    let cfg = config();
    let mut a = [0u64; 6];
    match op {
        ring::OP_OPENAT | ring::OP_OPENAT2 => {
            // openat(dfd, filename, flags, mode); openat2's open_how reads as its flags and mode.
            let dfd: i32 = read_kernel(cmd, cfg.open_dfd);
            a[0] = int(dfd);
            a[2] = read_kernel(cmd, cfg.open_flags);
            a[3] = read_kernel(cmd, cfg.open_mode);
        }
        ring::OP_UNLINKAT => {
            // unlinkat(dfd, pathname, flag)
            let dfd: i32 = read_kernel(cmd, cfg.unlink_dfd);
            let fl: i32 = read_kernel(cmd, cfg.unlink_flags);
            a[0] = int(dfd);
            a[2] = fl as u32 as u64;
        }
        ring::OP_RENAMEAT => {
            // renameat2(olddfd, oldname, newdfd, newname, flags)
            let old: i32 = read_kernel(cmd, cfg.rename_old_dfd);
            let new: i32 = read_kernel(cmd, cfg.rename_new_dfd);
            let fl: i32 = read_kernel(cmd, cfg.rename_flags);
            a[0] = int(old);
            a[2] = int(new);
            a[4] = fl as u32 as u64;
        }
        ring::OP_CONNECT => {
            // connect(fd, uservaddr, addrlen)
            let len: i32 = read_kernel(cmd, cfg.connect_addr_len);
            a[0] = int(fd);
            a[1] = read_kernel(cmd, cfg.connect_addr);
            a[2] = len as u32 as u64;
        }
        ring::OP_ACCEPT => {
            // accept4(fd, upeer_sockaddr, upeer_addrlen, flags); the peer comes from the
            // returned descriptor.
            let fl: i32 = read_kernel(cmd, cfg.accept_flags);
            a[0] = int(fd);
            a[3] = fl as u32 as u64;
        }
        ring::OP_SOCKET => {
            let domain: i32 = read_kernel(cmd, cfg.socket_domain);
            let ty: i32 = read_kernel(cmd, cfg.socket_type);
            let proto: i32 = read_kernel(cmd, cfg.socket_protocol);
            a[0] = domain as u32 as u64;
            a[1] = ty as u32 as u64;
            a[2] = proto as u32 as u64;
        }
        ring::OP_SEND | ring::OP_RECV | ring::OP_SENDMSG | ring::OP_RECVMSG => {
            // sendto/recvfrom(fd, buf, len, flags, NULL, 0); sendmsg/recvmsg(fd, msg, flags)
            let len: u32 = read_kernel(cmd, cfg.sr_len);
            let fl: u32 = read_kernel(cmd, cfg.sr_msg_flags);
            a[0] = int(fd);
            a[1] = read_kernel(cmd, cfg.sr_buf);
            if op == ring::OP_SEND || op == ring::OP_RECV {
                a[2] = len as u64;
                a[3] = fl as u64;
            } else {
                a[2] = fl as u64;
            }
        }
        ring::OP_SPLICE | ring::OP_TEE => {
            // splice(fd_in, off_in, fd_out, off_out, len, flags); tee(fd_in, fd_out, len,
            // flags). The request's own file is the output.
            let fd_in: i32 = read_kernel(cmd, cfg.splice_fd_in);
            let len: u32 = read_kernel(cmd, cfg.splice_len);
            let fl: u32 = read_kernel(cmd, cfg.splice_flags);
            a[0] = int(fd_in);
            if op == ring::OP_SPLICE {
                a[2] = int(fd);
                a[4] = len as u64;
                a[5] = fl as u64;
            } else {
                a[1] = int(fd);
                a[2] = len as u64;
                a[3] = fl as u64;
            }
        }
        _ => {}
    }
    a
}

fn try_submit(ctx: &TracePointContext) -> Result<(), ()> {
    let cfg = config();
    if cfg.ready == 0 || cfg.uring_ok == 0 {
        return Ok(());
    }
    let tp = ctx.as_ptr() as u64;
    let op: u8 = read_kernel(tp, cfg.uring_submit_opcode);
    // Profiles judge the request as the syscall whose work it does, whatever the rules
    // capture: with its arguments for an opcode the sensor reports, on the syscall alone for
    // the others (a mkdirat, a write).
    let Some(judged) = ring::judged_as(op) else {
        return Ok(());
    };
    let nr = ring::syscall_of(op);
    let req: u64 = read_kernel(tp, cfg.uring_submit_req);
    let cmd = req.wrapping_add(cfg.req_cmd as u64);
    let fd: i32 = read_kernel(req, cfg.req_fd);
    let ev = URING_SCRATCH.get_ptr_mut(0).ok_or(())?;
    // SAFETY: a per-CPU slot owned by this invocation.
    let ev = unsafe { &mut *ev };
    // Through map memory: the verifier then follows the profile's judgement once, for an
    // unknown syscall and unknown arguments, not once per opcode's syscall number and pattern
    // of constant arguments (6.1's verifier took minutes over the forty-odd).
    ev.args = request_args(op, cmd, fd);
    ev.nr = judged;
    // SAFETY: a field of the per-CPU event we own.
    let judged = unsafe { core::ptr::read_volatile(&ev.nr) };
    profile::check_ring_request(judged as u64, &ev.args, nr != 0);
    if nr == 0 {
        return Ok(());
    }
    let Some(spec) = spec_for(nr as u64) else {
        return Ok(());
    };
    let pid_tgid = bpf_get_current_pid_tgid();
    if (pid_tgid >> 32) as u32 == cfg.agent_tgid {
        return Ok(());
    }
    let flags: u64 = read_kernel(tp, cfg.uring_submit_flags);
    ev.nr = nr;
    ev.flags = 0;
    ev.ret = ring::IN_PROGRESS;
    ev.ring = ring::SUBMIT | op as u32;
    if flags & FIXED_FILE != 0 {
        ev.ring |= ring::FIXED_FILE;
    }
    ev.ring_req = req;
    crate::syscall::clear_cap_len(ev);
    ev.kpath_flags = 0;
    ev.kpath_magic = 0;
    ev.kpath_ino = 0;
    let cur = fill_header(
        &mut ev.header,
        agent_common::EventKind::Syscall as u32,
        cfg,
        pid_tgid,
    );

    // The captures: a path is the kernel's own copy, a socket address the user memory
    // connect(2) would read.
    let mut total = 0usize;
    match op {
        ring::OP_OPENAT | ring::OP_OPENAT2 => {
            let slot: u32 = read_kernel(cmd, cfg.open_file_slot);
            if slot != 0 {
                ev.ring |= ring::DIRECT;
            }
            total = kernel_str(ev, 0, 0, filename(cmd, cfg.open_filename));
        }
        ring::OP_UNLINKAT => {
            total = kernel_str(ev, 0, 0, filename(cmd, cfg.unlink_filename));
        }
        ring::OP_RENAMEAT => {
            total = kernel_str(ev, 0, 0, filename(cmd, cfg.rename_oldpath));
            // SAFETY: a field of the per-CPU event we own; volatile so that the verifier
            // bounds one unknown length rather than following the first copy's states.
            ev.header.size = total as u32;
            let off = unsafe { core::ptr::read_volatile(&ev.header.size) } as usize;
            total = kernel_str(ev, 1, off, filename(cmd, cfg.rename_newpath));
        }
        ring::OP_CONNECT => {
            let len = ev.args[2] as u32;
            let size = if len > SOCKADDR_MAX {
                SOCKADDR_MAX
            } else {
                len
            };
            // SAFETY: at most SOCKADDR_MAX bytes at the start of `data`.
            let r = unsafe {
                bpf_probe_read_user(ev.data.as_mut_ptr().cast(), size, ev.args[1] as *const _)
            };
            if r == 0 {
                ev.cap_len[0] = size as u16;
                total = size as usize;
            }
        }
        ring::OP_ACCEPT
        | ring::OP_SOCKET
        | ring::OP_SEND
        | ring::OP_RECV
        | ring::OP_SENDMSG
        | ring::OP_RECVMSG
        | ring::OP_SPLICE
        | ring::OP_TEE => {}
        _ => return Ok(()),
    }
    resolve_and_emit::<Probed>(ev, spec, total, cur);
    Ok(())
}

fn try_complete(ctx: &TracePointContext) -> Result<(), ()> {
    let cfg = config();
    if cfg.ready == 0 || cfg.uring_ok == 0 {
        return Ok(());
    }
    let tp = ctx.as_ptr() as u64;
    let req: u64 = read_kernel(tp, cfg.uring_complete_req);
    let op: u8 = read_kernel(req, cfg.req_opcode);
    let nr = ring::syscall_of(op);
    if nr == 0 || spec_for(nr as u64).is_none() {
        return Ok(());
    }
    let pid_tgid = bpf_get_current_pid_tgid();
    if (pid_tgid >> 32) as u32 == cfg.agent_tgid {
        return Ok(());
    }
    let res: i32 = read_kernel(tp, cfg.uring_complete_res);
    let ev = URING_SCRATCH.get_ptr_mut(0).ok_or(())?;
    // SAFETY: a per-CPU slot owned by this invocation.
    let ev = unsafe { &mut *ev };
    ev.nr = nr;
    ev.flags = 0;
    ev.ret = res as i64;
    ev.ring = ring::COMPLETE | op as u32;
    ev.ring_req = req;
    ev.args = [0; 6];
    crate::syscall::clear_cap_len(ev);
    ev.kpath_flags = 0;
    ev.kpath_magic = 0;
    ev.kpath_ino = 0;
    let cur = fill_header(
        &mut ev.header,
        agent_common::EventKind::Syscall as u32,
        cfg,
        pid_tgid,
    );

    // An open's dfd, flags and mode are still in its `io_open` (only the path's copy was
    // freed): with the returned file, the completion alone is a whole `openat`, which
    // userspace reports when the submission is no longer held (see agent/src/sensor/ring.rs).
    if op == ring::OP_OPENAT || op == ring::OP_OPENAT2 {
        let cmd = req.wrapping_add(cfg.req_cmd as u64);
        let dfd: i32 = read_kernel(cmd, cfg.open_dfd);
        ev.args[0] = int(dfd);
        ev.args[2] = read_kernel(cmd, cfg.open_flags);
        ev.args[3] = read_kernel(cmd, cfg.open_mode);
    }
    // A descriptor the request returned: its file, unless it went into a registered slot.
    let slot_off = match op {
        ring::OP_OPENAT | ring::OP_OPENAT2 => cfg.open_file_slot,
        ring::OP_ACCEPT => cfg.accept_file_slot,
        ring::OP_SOCKET => cfg.socket_file_slot,
        _ => u32::MAX,
    };
    let mut total = 0usize;
    if slot_off != u32::MAX && res >= 0 {
        let slot: u32 = read_kernel(req.wrapping_add(cfg.req_cmd as u64), slot_off);
        if slot != 0 {
            ev.ring |= ring::DIRECT;
        } else {
            // The completing task shares the submitter's descriptor table (the submitter
            // itself, or one of its io-wq workers).
            total = walk_into::<Probed>(
                ev,
                0,
                file_obj::<Probed>(cur.files, res as u64),
                kpath::OF_RET,
                path_at(cur.fs, cfg.fs_root, cfg),
            );
        }
    }
    let size = agent_common::SYSCALL_DATA_OFFSET + (total & (2 * DATA_MAX - 1));
    ev.header.size = size as u32;
    crate::output::emit(ev, &ev.header, size, agent_common::counter::DROP_SYSCALL);
    Ok(())
}
