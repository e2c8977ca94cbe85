//! The hook alone: a program of two instructions (`r0 = 0; exit`) attached to the
//! `raw_syscalls:sys_exit` raw tracepoint, held until SIGINT or SIGTERM. Every syscall on the
//! machine then runs it, so what it costs is what any program on that hook costs before it
//! does anything: the tracepoint's slow path for every syscall, the dispatch, the call and
//! return. `cargo xtask bench` measures it beside the agent, in wall time and in the kernel's
//! own statistics (`kernel.bpf_stats_enabled`), as the floor of the host the figures come
//! from. Needs root (or CAP_BPF and CAP_PERFMON).
//!
//! `sudo target/release/examples/empty_hook` (Ctrl-C to detach)

use std::{ffi::CStr, io::Error, mem::size_of};

/// `bpf(2)` commands and the program type (include/uapi/linux/bpf.h).
const BPF_PROG_LOAD: libc::c_long = 5;
const BPF_RAW_TRACEPOINT_OPEN: libc::c_long = 17;
const BPF_PROG_TYPE_RAW_TRACEPOINT: u32 = 17;

/// The head of `union bpf_attr` for `BPF_PROG_LOAD`; the kernel reads a shorter attribute
/// as if the rest were zero.
#[repr(C)]
#[derive(Default)]
struct ProgLoad {
    prog_type: u32,
    insn_cnt: u32,
    insns: u64,
    license: u64,
    log_level: u32,
    log_size: u32,
    log_buf: u64,
    kern_version: u32,
    prog_flags: u32,
    prog_name: [u8; 16],
}

/// `union bpf_attr` for `BPF_RAW_TRACEPOINT_OPEN`.
#[repr(C)]
struct RawTracepointOpen {
    name: u64,
    prog_fd: u32,
    _pad: u32,
}

fn bpf<T>(cmd: libc::c_long, attr: &mut T) -> Result<i32, Error> {
    // SAFETY: `attr` is a live, initialized `repr(C)` attribute of the size passed.
    let r = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            cmd,
            (attr as *mut T).cast::<libc::c_void>(),
            size_of::<T>() as libc::c_uint,
        )
    };
    if r < 0 {
        Err(Error::last_os_error())
    } else {
        Ok(r as i32)
    }
}

fn main() {
    if let Err(e) = run() {
        eprintln!("empty_hook: {e}");
        std::process::exit(1);
    }
}

fn run() -> Result<(), String> {
    // mov64 r0, 0; exit (an instruction: opcode, registers, offset, immediate).
    let insns: [u64; 2] = [0x0000_0000_0000_00b7, 0x0000_0000_0000_0095];
    let license: &CStr = c"GPL";
    let mut name = [0u8; 16];
    name[..10].copy_from_slice(b"empty_hook");
    let mut load = ProgLoad {
        prog_type: BPF_PROG_TYPE_RAW_TRACEPOINT,
        insn_cnt: insns.len() as u32,
        insns: insns.as_ptr() as u64,
        license: license.as_ptr() as u64,
        prog_name: name,
        ..ProgLoad::default()
    };
    let prog = bpf(BPF_PROG_LOAD, &mut load).map_err(|e| {
        format!("loading the program: {e} (run as root, or with CAP_BPF and CAP_PERFMON)")
    })?;
    let tracepoint: &CStr = c"sys_exit";
    let mut open = RawTracepointOpen {
        name: tracepoint.as_ptr() as u64,
        prog_fd: prog as u32,
        _pad: 0,
    };
    // The link lives as long as its descriptor, which this process holds until it exits.
    bpf(BPF_RAW_TRACEPOINT_OPEN, &mut open)
        .map_err(|e| format!("attaching to raw_syscalls:sys_exit: {e}"))?;
    // The bench waits for this line, as it waits for the agent's.
    eprintln!("empty program attached to raw_syscalls:sys_exit; tracing; Ctrl-C to stop");
    // SAFETY: a signal set built and waited on by this thread alone; SIGINT and SIGTERM are
    // blocked first so that they wait here instead of ending the process.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGINT);
        libc::sigaddset(&mut set, libc::SIGTERM);
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
        let mut sig = 0;
        libc::sigwait(&set, &mut sig);
    }
    Ok(())
}
