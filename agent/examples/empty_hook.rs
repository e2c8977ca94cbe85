//! The hook alone: a program of two instructions (`r0 = 0; exit`) attached to the
//! `raw_syscalls:sys_exit` raw tracepoint, held until SIGINT or SIGTERM. Every syscall on the
//! machine then runs it, so what it costs is what any program on that hook costs before it
//! does anything: the tracepoint's slow path for every syscall, the dispatch, the call and
//! return. `cargo xtask bench` measures it beside the agent, in wall time and in the kernel's
//! own statistics (`kernel.bpf_stats_enabled`), as the floor of the host the figures come
//! from. Needs root (or CAP_BPF and CAP_PERFMON).
//!
//! `empty_hook capture` attaches instead the capture floor: a BTF tracepoint program on the same
//! hook that, for an `openat`, does what any agent's capture of it must do and nothing more:
//! it reads the clock and the calling thread's ids, copies the path string the process passed,
//! and writes that record (64 bytes and the path) to a ring buffer, which a thread of this
//! process drains every millisecond without reading it. What the agent's own capture costs
//! over this is its design (identity, arguments, the path walk, the filter, fairness); what
//! this costs is the host's (its helper calls, clock and string copy).
//!
//! `empty_hook capture without PART...` leaves parts of it out, each helper call replaced by
//! one instruction that sets what it would return (`clock`, `ids`, `path`: a pretended length
//! of 8, `record`), so that what each part costs on this host is the difference to the whole;
//! `empty_hook capture fixed-read` copies the path's first 64 bytes with `bpf_probe_read_user`
//! rather than the string copy, which is what a reader that finds the NUL itself would pay.
//!
//! `empty_hook per-syscall` attaches the empty program to `syscalls:sys_exit_openat` alone:
//! every syscall still takes the tracepoint's slow path, but only an `openat` runs a program,
//! so the difference to the first mode is what the dispatch of a program costs a syscall no
//! rule wants (docs/benchmarks.md).
//!
//! `sudo target/release/examples/empty_hook [capture [without clock|ids|path|record...] |
//! capture fixed-read | per-syscall]` (Ctrl-C to detach)

use std::{
    ffi::CStr,
    io::Error,
    mem::size_of,
    sync::atomic::{AtomicU64, Ordering},
    time::Duration,
};

use osprey::sensor::btf::{Btf, KERNEL_BTF};

/// `bpf(2)` commands, program and map types (include/uapi/linux/bpf.h).
const BPF_MAP_CREATE: libc::c_long = 0;
const BPF_PROG_LOAD: libc::c_long = 5;
const BPF_RAW_TRACEPOINT_OPEN: libc::c_long = 17;
const BPF_PROG_TYPE_RAW_TRACEPOINT: u32 = 17;
const BPF_PROG_TYPE_TRACING: u32 = 26;
const BPF_TRACE_RAW_TP: u32 = 23;
const BPF_MAP_TYPE_PERCPU_ARRAY: u32 = 6;
const BPF_MAP_TYPE_RINGBUF: u32 = 27;

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
    prog_ifindex: u32,
    expected_attach_type: u32,
    prog_btf_fd: u32,
    func_info_rec_size: u32,
    func_info: u64,
    func_info_cnt: u32,
    line_info_rec_size: u32,
    line_info: u64,
    line_info_cnt: u32,
    attach_btf_id: u32,
}

/// The head of `union bpf_attr` for `BPF_MAP_CREATE`.
#[repr(C)]
struct MapCreate {
    map_type: u32,
    key_size: u32,
    value_size: u32,
    max_entries: u32,
    map_flags: u32,
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
    let signals = block_signals();
    let result = match std::env::args().nth(1).as_deref() {
        None => empty(),
        Some("capture") => Floor::from_args(std::env::args().skip(2)).and_then(capture),
        Some("per-syscall") => per_syscall(),
        Some(other) => Err(format!(
            "unknown mode `{other}`: none (the empty program), `capture` (the capture floor) \
             or `per-syscall` (the empty program on openat's own tracepoint)"
        )),
    };
    match result {
        Ok(()) => wait_for(&signals),
        Err(e) => {
            eprintln!("empty_hook: {e}");
            std::process::exit(1);
        }
    }
}

fn empty() -> Result<(), String> {
    // mov64 r0, 0; exit (an instruction: opcode, registers, offset, immediate).
    let insns: [u64; 2] = [0x0000_0000_0000_00b7, 0x0000_0000_0000_0095];
    let prog = load(ProgLoad {
        prog_type: BPF_PROG_TYPE_RAW_TRACEPOINT,
        ..program(&insns, b"empty_hook")
    })?;
    attach(prog, Some(c"sys_exit"))?;
    // The bench waits for this line, as it waits for the agent's.
    eprintln!("empty program attached to raw_syscalls:sys_exit; tracing; Ctrl-C to stop");
    Ok(())
}

/// The empty program on `syscalls:sys_exit_openat` alone (a perf tracepoint program): other
/// syscalls take the tracepoint's slow path but run no program, the kernel's per-syscall
/// bitmap turning them away first.
fn per_syscall() -> Result<(), String> {
    const BPF_PROG_TYPE_TRACEPOINT: u32 = 5;
    const PERF_TYPE_TRACEPOINT: u32 = 2;
    const PERF_FLAG_FD_CLOEXEC: libc::c_ulong = 8;
    const PERF_EVENT_IOC_ENABLE: libc::c_ulong = 0x2400;
    const PERF_EVENT_IOC_SET_BPF: libc::c_ulong = 0x4004_2408;
    const EVENT_ID: &str = "/sys/kernel/tracing/events/syscalls/sys_exit_openat/id";
    let insns: [u64; 2] = [0x0000_0000_0000_00b7, 0x0000_0000_0000_0095];
    let prog = load(ProgLoad {
        prog_type: BPF_PROG_TYPE_TRACEPOINT,
        ..program(&insns, b"empty_openat")
    })?;
    let id: u64 = std::fs::read_to_string(EVENT_ID)
        .map_err(|e| format!("{EVENT_ID}: {e}"))?
        .trim()
        .parse()
        .map_err(|e| format!("{EVENT_ID}: {e}"))?;
    // struct perf_event_attr: type, size, config (the event), sample_period 1; the rest zero.
    let mut attr = [0u8; 128];
    attr[0..4].copy_from_slice(&PERF_TYPE_TRACEPOINT.to_ne_bytes());
    attr[4..8].copy_from_slice(&128u32.to_ne_bytes());
    attr[8..16].copy_from_slice(&id.to_ne_bytes());
    attr[16..24].copy_from_slice(&1u64.to_ne_bytes());
    // One event, on CPU 0, any process: a tracepoint's programs are the tracepoint's and run
    // on every CPU (the same program on a second CPU's event is refused with EEXIST).
    // SAFETY: a perf_event_attr of the size it declares; the descriptor stays open for the
    // life of the process, which holds the program attached.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_perf_event_open,
            attr.as_ptr(),
            -1,
            0,
            -1,
            PERF_FLAG_FD_CLOEXEC,
        )
    } as i32;
    if fd < 0 {
        return Err(format!("perf_event_open: {}", Error::last_os_error()));
    }
    // SAFETY: ioctls on the event just opened, with the program's descriptor.
    let r = unsafe {
        libc::ioctl(fd, PERF_EVENT_IOC_SET_BPF, prog) | libc::ioctl(fd, PERF_EVENT_IOC_ENABLE, 0)
    };
    if r < 0 {
        return Err(format!(
            "attaching to syscalls:sys_exit_openat: {}",
            Error::last_os_error()
        ));
    }
    eprintln!("empty program attached to syscalls:sys_exit_openat; tracing; Ctrl-C to stop");
    Ok(())
}

/// x86_64 `openat`, and where `struct pt_regs` keeps the syscall number and the second
/// argument (arch/x86/include/asm/ptrace.h).
const NR_OPENAT: i32 = 257;
const REGS_ORIG_AX: i16 = 120;
const REGS_SI: i16 = 104;
/// The record: 64 bytes (the clock, the thread's ids, room for the rest of a header), then
/// the path string.
const HEAD: i32 = 64;
const PATH_MAX: i32 = 4096;
const RING_BYTES: u32 = 16 << 20;

/// What the capture floor does: all of it by default.
#[derive(Default)]
struct Floor {
    no_clock: bool,
    no_ids: bool,
    no_path: bool,
    no_record: bool,
    /// The path's first 64 bytes by `bpf_probe_read_user`, not the string copy.
    fixed_read: bool,
}

impl Floor {
    fn from_args(args: impl Iterator<Item = String>) -> Result<Floor, String> {
        let mut floor = Floor::default();
        let mut without = false;
        for arg in args {
            match (without, arg.as_str()) {
                (false, "without") => without = true,
                (false, "fixed-read") => floor.fixed_read = true,
                (true, "clock") => floor.no_clock = true,
                (true, "ids") => floor.no_ids = true,
                (true, "path") => floor.no_path = true,
                (true, "record") => floor.no_record = true,
                _ => {
                    return Err(format!(
                        "capture: unexpected `{arg}`: `without` followed by any of clock, ids, \
                         path, record; or `fixed-read`"
                    ));
                }
            }
        }
        Ok(floor)
    }

    /// `call(helper)`, or the instruction that stands for it when the part is left out: `r0`
    /// set to what the call would return (`r0 = imm`).
    fn call_or(left_out: bool, helper: i32, r0: i32) -> u64 {
        if left_out {
            insn(0xb7, 0, 0, 0, r0)
        } else {
            call(helper)
        }
    }
}

fn capture(floor: Floor) -> Result<(), String> {
    let typedef = Btf::from_file(std::path::Path::new(KERNEL_BTF))
        .and_then(|btf| btf.tracepoint_typedef("sys_exit"))
        .map_err(|e| format!("the capture floor needs the kernel's BTF: {e}"))?;
    let scratch = map(MapCreate {
        map_type: BPF_MAP_TYPE_PERCPU_ARRAY,
        key_size: 4,
        value_size: (HEAD + PATH_MAX) as u32,
        max_entries: 1,
        map_flags: 0,
    })?;
    let ring = map(MapCreate {
        map_type: BPF_MAP_TYPE_RINGBUF,
        key_size: 0,
        value_size: 0,
        max_entries: RING_BYTES,
        map_flags: 0,
    })?;
    // The instruction every early way out jumps to (`r0 = 0`), and the offset of a jump at
    // instruction `at` that lands there.
    const EXIT: i16 = 29;
    const fn to_exit(at: i16) -> i16 {
        EXIT - at - 1
    }
    // A fixed read returns 0, not a length: the record then carries the 64 bytes read.
    const FIXED_READ: i32 = 64;
    let (helper, read, length) = if floor.fixed_read {
        (112, FIXED_READ, insn(0xb7, 3, 0, 0, FIXED_READ))
    } else {
        (114, PATH_MAX, insn(0xbf, 3, 0, 0, 0))
    };
    let insns = [
        ldx(6, 1, 0),                             // 0: r6 = ctx[0], the registers (typed)
        ldx(7, 6, REGS_ORIG_AX),                  // 1: r7 = regs->orig_ax
        jmp_imm(0x55, 7, NR_OPENAT, to_exit(2)),  // 2: not openat: done
        ldx(8, 6, REGS_SI),                       // 3: r8 = the path's address
        insn(0x62, 10, 0, -4, 0),                 // 4: *(u32 *)(r10 - 4) = 0
        insn(0xbf, 2, 10, 0, 0),                  // 5: r2 = r10
        insn(0x07, 2, 0, 0, -4),                  // 6: r2 += -4
        ld_map(1, scratch)[0],                    // 7: r1 = the scratch map
        ld_map(1, scratch)[1],                    // 8
        call(1),                                  // 9: bpf_map_lookup_elem
        jmp_imm(0x15, 0, 0, to_exit(10)),         // 10: no slot: done
        insn(0xbf, 9, 0, 0, 0),                   // 11: r9 = the slot
        Floor::call_or(floor.no_clock, 125, 0),   // 12: bpf_ktime_get_boot_ns
        insn(0x7b, 9, 0, 0, 0),                   // 13: *(u64 *)(r9 + 0) = r0
        Floor::call_or(floor.no_ids, 14, 0),      // 14: bpf_get_current_pid_tgid
        insn(0x7b, 9, 0, 8, 0),                   // 15: *(u64 *)(r9 + 8) = r0
        insn(0xbf, 1, 9, 0, 0),                   // 16: r1 = r9
        insn(0x07, 1, 0, 0, HEAD),                // 17: r1 += HEAD
        insn(0xb7, 2, 0, 0, read),                // 18: r2 = PATH_MAX (or FIXED_READ)
        insn(0xbf, 3, 8, 0, 0),                   // 19: r3 = r8
        Floor::call_or(floor.no_path, helper, 8), // 20: bpf_probe_read_user_str (or _user)
        length,                                   // 21: r3 = the length with its NUL (or an error)
        insn(0x57, 3, 0, 0, PATH_MAX - 1),        // 22: r3 &= PATH_MAX - 1
        insn(0x07, 3, 0, 0, HEAD),                // 23: r3 += HEAD
        ld_map(1, ring)[0],                       // 24: r1 = the ring
        ld_map(1, ring)[1],                       // 25
        insn(0xbf, 2, 9, 0, 0),                   // 26: r2 = r9
        insn(0xb7, 4, 0, 0, 1),                   // 27: r4 = BPF_RB_NO_WAKEUP
        Floor::call_or(floor.no_record, 130, 0),  // 28: bpf_ringbuf_output
        insn(0xb7, 0, 0, 0, 0),                   // 29: r0 = 0
        insn(0x95, 0, 0, 0, 0),                   // 30: exit
    ];
    // The comments' numbering, which the jumps rely on.
    assert_eq!(
        insns.len(),
        EXIT as usize + 2,
        "the instructions numbered as commented"
    );
    let prog = load(ProgLoad {
        prog_type: BPF_PROG_TYPE_TRACING,
        expected_attach_type: BPF_TRACE_RAW_TP,
        attach_btf_id: typedef,
        ..program(&insns, b"capture_floor")
    })?;
    let drain = Drain::map(ring)?;
    attach(prog, None)?;
    std::thread::spawn(move || {
        loop {
            drain.skip_all();
            std::thread::sleep(Duration::from_millis(1));
        }
    });
    eprintln!(
        "capture floor attached to raw_syscalls:sys_exit (openat: clock, ids, path, record); \
         tracing; Ctrl-C to stop"
    );
    Ok(())
}

/// An instruction: opcode, destination and source registers, offset, immediate.
const fn insn(op: u8, dst: u8, src: u8, off: i16, imm: i32) -> u64 {
    op as u64
        | ((dst as u64 | (src as u64) << 4) << 8)
        | (off as u16 as u64) << 16
        | (imm as u32 as u64) << 32
}

/// `dst = *(u64 *)(src + off)`.
const fn ldx(dst: u8, src: u8, off: i16) -> u64 {
    insn(0x79, dst, src, off, 0)
}

/// A conditional jump on an immediate, `off` instructions forward.
const fn jmp_imm(op: u8, dst: u8, imm: i32, off: i16) -> u64 {
    insn(op, dst, 0, off, imm)
}

const fn call(helper: i32) -> u64 {
    insn(0x85, 0, 0, 0, helper)
}

/// `dst = map` (two instruction words, `BPF_PSEUDO_MAP_FD`).
const fn ld_map(dst: u8, fd: i32) -> [u64; 2] {
    [insn(0x18, dst, 1, 0, fd), 0]
}

fn program(insns: &[u64], name: &[u8]) -> ProgLoad {
    let mut prog_name = [0u8; 16];
    prog_name[..name.len()].copy_from_slice(name);
    let license: &'static CStr = c"GPL";
    ProgLoad {
        insn_cnt: insns.len() as u32,
        insns: insns.as_ptr() as u64,
        license: license.as_ptr() as u64,
        prog_name,
        ..ProgLoad::default()
    }
}

fn load(mut attr: ProgLoad) -> Result<i32, String> {
    bpf(BPF_PROG_LOAD, &mut attr).map_err(|e| {
        format!("loading the program: {e} (run as root, or with CAP_BPF and CAP_PERFMON)")
    })
}

fn map(mut attr: MapCreate) -> Result<i32, String> {
    bpf(BPF_MAP_CREATE, &mut attr).map_err(|e| format!("creating a map: {e}"))
}

/// Attaches `prog` to `raw_syscalls:sys_exit`: by name for a raw tracepoint program, by the
/// type it was loaded for (`None`) for a BTF one. The link lives as long as its descriptor,
/// which this process holds until it exits.
fn attach(prog: i32, name: Option<&'static CStr>) -> Result<(), String> {
    let mut open = RawTracepointOpen {
        name: name.map_or(0, |n| n.as_ptr() as u64),
        prog_fd: prog as u32,
        _pad: 0,
    };
    bpf(BPF_RAW_TRACEPOINT_OPEN, &mut open)
        .map(drop)
        .map_err(|e| format!("attaching to raw_syscalls:sys_exit: {e}"))
}

/// A ring buffer's positions, mapped: the consumer's (writable) and the producer's.
struct Drain {
    consumer: &'static AtomicU64,
    producer: &'static AtomicU64,
}

impl Drain {
    fn map(ring: i32) -> Result<Drain, String> {
        // SAFETY: sysconf has no preconditions.
        let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) } as usize;
        let map = |prot, offset| {
            // SAFETY: a fresh shared mapping of one page of the ring's descriptor, which the
            // kernel allows at these offsets (the consumer page writable, the next read-only).
            let p = unsafe {
                libc::mmap(
                    std::ptr::null_mut(),
                    page,
                    prot,
                    libc::MAP_SHARED,
                    ring,
                    offset,
                )
            };
            if p == libc::MAP_FAILED {
                Err(format!(
                    "mapping the ring buffer: {}",
                    Error::last_os_error()
                ))
            } else {
                // SAFETY: a page-aligned mapping that lives until the process exits; the
                // position at its start is a u64 the kernel updates atomically.
                Ok(unsafe { &*(p as *const AtomicU64) })
            }
        };
        Ok(Drain {
            consumer: map(libc::PROT_READ | libc::PROT_WRITE, 0)?,
            producer: map(libc::PROT_READ, page as libc::off_t)?,
        })
    }

    /// Marks every record written so far as read.
    fn skip_all(&self) {
        let p = self.producer.load(Ordering::Acquire);
        self.consumer.store(p, Ordering::Release);
    }
}

/// SIGINT and SIGTERM blocked in this thread and the threads it starts after, so that they
/// wait for [`wait_for`] instead of ending the process.
fn block_signals() -> libc::sigset_t {
    // SAFETY: a signal set built by this thread and installed as its own mask.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGINT);
        libc::sigaddset(&mut set, libc::SIGTERM);
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
        set
    }
}

/// Waits for one of the signals in `set`, which every thread blocks.
fn wait_for(set: &libc::sigset_t) {
    let mut sig = 0;
    // SAFETY: a valid set and a place for the signal's number.
    unsafe { libc::sigwait(set, &mut sig) };
}
