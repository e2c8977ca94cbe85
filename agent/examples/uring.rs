//! File and network operations done through an io_uring ring instead of syscalls, for the
//! tests of what Osprey sees of a ring (tests/evasion_kernel.rs). No liburing: the ring is set
//! up with `io_uring_setup`, its queues mapped, one request submitted and its completion read.
//!
//! ```text
//! uring open PATH          IORING_OP_OPENAT of PATH for reading (relative to the cwd)
//! uring openat DIR NAME    open(2) DIR, then IORING_OP_OPENAT of NAME relative to it
//! uring connect IP PORT    socket(2), then IORING_OP_CONNECT to IP:PORT (IPv4)
//! uring unlink PATH        IORING_OP_UNLINKAT
//! uring mkdir PATH         IORING_OP_MKDIRAT (an opcode the sensor does not report)
//! uring rename OLD NEW     IORING_OP_RENAMEAT
//! uring net               IORING_OP_ACCEPT of a loopback connection of our own, then
//!                          IORING_OP_SEND on one end and IORING_OP_RECV on the other
//! uring splice PATH        IORING_OP_SPLICE of PATH into a pipe
//! uring flood-open PATH N  IORING_OP_OPENAT of PATH, then N accepts that never complete, in
//!                          one batch (pushing the open out of what the agent holds)
//! ```
//!
//! `uring --sqpoll ...` sets the ring up with a kernel submission thread (`IORING_SETUP_SQPOLL`):
//! the request is picked up by that thread, not by a syscall of the process.
//!
//! Prints `result N` (the completion's result) and exits 0 when N >= 0.

use std::{ffi::CString, net::Ipv4Addr, ptr};

const SYS_IO_URING_SETUP: libc::c_long = 425;
const SYS_IO_URING_ENTER: libc::c_long = 426;
const IORING_ENTER_GETEVENTS: u32 = 1;
const IORING_ENTER_SQ_WAKEUP: u32 = 2;
const IORING_SETUP_SQPOLL: u32 = 2;
const IORING_OFF_SQ_RING: i64 = 0;
const IORING_OFF_CQ_RING: i64 = 0x800_0000;
const IORING_OFF_SQES: i64 = 0x1000_0000;

const OP_ACCEPT: u8 = 13;
const OP_CONNECT: u8 = 16;
const OP_OPENAT: u8 = 18;
const OP_SEND: u8 = 26;
const OP_RECV: u8 = 27;
const OP_SPLICE: u8 = 30;
const OP_RENAMEAT: u8 = 35;
const OP_UNLINKAT: u8 = 36;
const OP_MKDIRAT: u8 = 37;

#[repr(C)]
#[derive(Default)]
struct SqOffsets {
    head: u32,
    tail: u32,
    ring_mask: u32,
    ring_entries: u32,
    flags: u32,
    dropped: u32,
    array: u32,
    resv1: u32,
    user_addr: u64,
}

#[repr(C)]
#[derive(Default)]
struct CqOffsets {
    head: u32,
    tail: u32,
    ring_mask: u32,
    ring_entries: u32,
    overflow: u32,
    cqes: u32,
    flags: u32,
    resv1: u32,
    user_addr: u64,
}

#[repr(C)]
#[derive(Default)]
struct Params {
    sq_entries: u32,
    cq_entries: u32,
    flags: u32,
    sq_thread_cpu: u32,
    sq_thread_idle: u32,
    features: u32,
    wq_fd: u32,
    resv: [u32; 3],
    sq_off: SqOffsets,
    cq_off: CqOffsets,
}

/// `struct io_uring_sqe` (64 bytes), the members these operations use.
#[repr(C)]
#[derive(Default, Clone, Copy)]
struct Sqe {
    opcode: u8,
    flags: u8,
    ioprio: u16,
    fd: i32,
    off: u64,
    addr: u64,
    len: u32,
    op_flags: u32,
    user_data: u64,
    buf_index: u16,
    personality: u16,
    file_index: i32,
    addr3: u64,
    pad: u64,
}

const _: () = assert!(size_of::<Sqe>() == 64 && size_of::<Params>() == 120);

fn fail(what: &str) -> ! {
    eprintln!("uring: {what}: {}", std::io::Error::last_os_error());
    std::process::exit(2);
}

fn map(fd: i32, len: usize, off: i64) -> *mut u8 {
    // SAFETY: a shared mapping of the ring's memory at the offset the kernel defines.
    let p = unsafe {
        libc::mmap(
            ptr::null_mut(),
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_SHARED | libc::MAP_POPULATE,
            fd,
            off,
        )
    };
    if p == libc::MAP_FAILED {
        fail("mmap");
    }
    p.cast()
}

/// Submits one request on a fresh ring and waits for its completion; returns the result.
fn submit(sqe: Sqe, sqpoll: bool) -> i32 {
    submit_batch(&[sqe], sqpoll)
}

/// Submits `sqes` in one `io_uring_enter` on a fresh ring and waits for the first one's
/// completion (the others may never complete); returns its result.
fn submit_batch(sqes_in: &[Sqe], sqpoll: bool) -> i32 {
    let entries = (sqes_in.len() as u32).next_power_of_two().max(4);
    let mut p = Params {
        flags: if sqpoll { IORING_SETUP_SQPOLL } else { 0 },
        sq_thread_idle: 1000,
        ..Params::default()
    };
    // SAFETY: io_uring_setup writes the params struct we own.
    let fd = unsafe { libc::syscall(SYS_IO_URING_SETUP, entries, &mut p as *mut Params) } as i32;
    if fd < 0 {
        fail("io_uring_setup");
    }
    let sq_len = p.sq_off.array as usize + p.sq_entries as usize * 4;
    let cq_len = p.cq_off.cqes as usize + p.cq_entries as usize * 16;
    let sq = map(fd, sq_len, IORING_OFF_SQ_RING);
    let cq = map(fd, cq_len, IORING_OFF_CQ_RING);
    let sqes = map(fd, p.sq_entries as usize * 64, IORING_OFF_SQES).cast::<Sqe>();
    // SAFETY: offsets and sizes from the kernel's params; at most `entries` requests.
    unsafe {
        let at = |base: *mut u8, off: u32| base.add(off as usize).cast::<u32>();
        let mut tail = ptr::read_volatile(at(sq, p.sq_off.tail));
        let mask = ptr::read_volatile(at(sq, p.sq_off.ring_mask));
        for (i, sqe) in sqes_in.iter().enumerate() {
            let idx = tail & mask;
            ptr::write(
                sqes.add(idx as usize),
                Sqe {
                    user_data: i as u64,
                    ..*sqe
                },
            );
            ptr::write_volatile(at(sq, p.sq_off.array).add(idx as usize), idx);
            tail = tail.wrapping_add(1);
        }
        std::sync::atomic::fence(std::sync::atomic::Ordering::Release);
        ptr::write_volatile(at(sq, p.sq_off.tail), tail);
        // With a submission thread, the request is the thread's to pick up: this call only
        // wakes it if it sleeps and waits for the completion.
        let n = libc::syscall(
            SYS_IO_URING_ENTER,
            fd,
            if sqpoll { 0u32 } else { sqes_in.len() as u32 },
            1u32,
            IORING_ENTER_GETEVENTS | if sqpoll { IORING_ENTER_SQ_WAKEUP } else { 0 },
            ptr::null::<u8>(),
            0usize,
        );
        if n < 0 {
            fail("io_uring_enter");
        }
        // The first request's completion (user_data 0); wait for more if others came first.
        for _ in 0..64 {
            std::sync::atomic::fence(std::sync::atomic::Ordering::Acquire);
            let mut head = ptr::read_volatile(at(cq, p.cq_off.head));
            let ctail = ptr::read_volatile(at(cq, p.cq_off.tail));
            let cmask = ptr::read_volatile(at(cq, p.cq_off.ring_mask));
            let mut first = None;
            while head != ctail {
                let cqe = cq.add(p.cq_off.cqes as usize + (head & cmask) as usize * 16);
                if ptr::read_volatile(cqe.cast::<u64>()) == 0 {
                    first = Some(ptr::read_volatile(cqe.add(8).cast::<i32>()));
                }
                head = head.wrapping_add(1);
            }
            ptr::write_volatile(at(cq, p.cq_off.head), head);
            if let Some(res) = first {
                return res;
            }
            libc::syscall(
                SYS_IO_URING_ENTER,
                fd,
                0u32,
                1u32,
                IORING_ENTER_GETEVENTS,
                ptr::null::<u8>(),
                0usize,
            );
        }
        eprintln!("uring: no completion");
        std::process::exit(2);
    }
}

/// `s` parsed as a `what`, or exit 2 naming it.
fn parse<T: std::str::FromStr>(s: &str, what: &str) -> T {
    s.parse().unwrap_or_else(|_| {
        eprintln!("uring: not {what}: {s}");
        std::process::exit(2)
    })
}

fn cstr(s: &str) -> CString {
    CString::new(s).unwrap_or_else(|_| {
        eprintln!("uring: a NUL in {s:?}");
        std::process::exit(2)
    })
}

fn main() {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    let sqpoll = args.first().is_some_and(|a| a == "--sqpoll");
    if sqpoll {
        args.remove(0);
    }
    let a = |i: usize| -> &str {
        args.get(i).map(String::as_str).unwrap_or_else(|| {
            eprintln!(
                "usage: uring [--sqpoll] open PATH | openat DIR NAME | connect IP PORT | unlink PATH \
                 | mkdir PATH | rename OLD NEW | net | splice PATH | flood-open PATH N"
            );
            std::process::exit(2)
        })
    };
    let res = match a(0) {
        "open" => {
            let path = cstr(a(1));
            submit(
                Sqe {
                    opcode: OP_OPENAT,
                    fd: libc::AT_FDCWD,
                    addr: path.as_ptr() as u64,
                    op_flags: libc::O_RDONLY as u32,
                    ..Sqe::default()
                },
                sqpoll,
            )
        }
        "openat" => {
            let dir = cstr(a(1));
            // SAFETY: a valid NUL-terminated path.
            let dfd = unsafe { libc::open(dir.as_ptr(), libc::O_RDONLY | libc::O_DIRECTORY) };
            if dfd < 0 {
                fail("open the directory");
            }
            let name = cstr(a(2));
            submit(
                Sqe {
                    opcode: OP_OPENAT,
                    fd: dfd,
                    addr: name.as_ptr() as u64,
                    op_flags: libc::O_RDONLY as u32,
                    ..Sqe::default()
                },
                sqpoll,
            )
        }
        "connect" => {
            let ip: Ipv4Addr = parse(a(1), "an IPv4 address");
            let port: u16 = parse(a(2), "a port");
            // SAFETY: plain socket(2).
            let s = unsafe { libc::socket(libc::AF_INET, libc::SOCK_STREAM, 0) };
            if s < 0 {
                fail("socket");
            }
            let sa = libc::sockaddr_in {
                sin_family: libc::AF_INET as u16,
                sin_port: port.to_be(),
                sin_addr: libc::in_addr {
                    s_addr: u32::from(ip).to_be(),
                },
                sin_zero: [0; 8],
            };
            submit(
                Sqe {
                    opcode: OP_CONNECT,
                    fd: s,
                    addr: &sa as *const libc::sockaddr_in as u64,
                    off: size_of::<libc::sockaddr_in>() as u64,
                    ..Sqe::default()
                },
                sqpoll,
            )
        }
        "net" => {
            // A loopback connection of our own: the ring accepts it, sends on the client's
            // end and receives on the server's. Prints each result; the last one is returned.
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap_or_else(|_| fail("bind"));
            let addr = l.local_addr().unwrap_or_else(|_| fail("local address"));
            let client = std::thread::spawn(move || std::net::TcpStream::connect(addr));
            let server = submit(
                Sqe {
                    opcode: OP_ACCEPT,
                    fd: std::os::fd::AsRawFd::as_raw_fd(&l),
                    ..Sqe::default()
                },
                sqpoll,
            );
            println!("accept {server}");
            let client = client
                .join()
                .ok()
                .and_then(Result::ok)
                .unwrap_or_else(|| fail("connect"));
            let msg = b"osprey-ring";
            let sent = submit(
                Sqe {
                    opcode: OP_SEND,
                    fd: std::os::fd::AsRawFd::as_raw_fd(&client),
                    addr: msg.as_ptr() as u64,
                    len: msg.len() as u32,
                    ..Sqe::default()
                },
                sqpoll,
            );
            println!("send {sent}");
            let mut buf = [0u8; 64];
            submit(
                Sqe {
                    opcode: OP_RECV,
                    fd: server,
                    addr: buf.as_mut_ptr() as u64,
                    len: buf.len() as u32,
                    ..Sqe::default()
                },
                sqpoll,
            )
        }
        "splice" => {
            // IORING_OP_SPLICE of PATH into a pipe of our own.
            let path = cstr(a(1));
            // SAFETY: a valid NUL-terminated path.
            let fd_in = unsafe { libc::open(path.as_ptr(), libc::O_RDONLY) };
            if fd_in < 0 {
                fail("open the input");
            }
            let mut pipe = [0i32; 2];
            // SAFETY: two ints for the pipe's ends.
            if unsafe { libc::pipe(pipe.as_mut_ptr()) } < 0 {
                fail("pipe");
            }
            submit(
                Sqe {
                    opcode: OP_SPLICE,
                    fd: pipe[1],
                    // off_out and splice_off_in: -1, the files' own positions.
                    off: u64::MAX,
                    addr: u64::MAX,
                    len: 4096,
                    file_index: fd_in,
                    ..Sqe::default()
                },
                sqpoll,
            )
        }
        "flood-open" => {
            // IORING_OP_OPENAT of PATH, then N accepts on a listening socket that nobody
            // connects to, in one batch: the accepts never complete.
            let path = cstr(a(1));
            let n: usize = parse(a(2), "a count");
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap_or_else(|_| fail("bind"));
            let mut batch = vec![Sqe {
                opcode: OP_OPENAT,
                fd: libc::AT_FDCWD,
                addr: path.as_ptr() as u64,
                op_flags: libc::O_RDONLY as u32,
                ..Sqe::default()
            }];
            batch.extend(std::iter::repeat_n(
                Sqe {
                    opcode: OP_ACCEPT,
                    fd: std::os::fd::AsRawFd::as_raw_fd(&l),
                    ..Sqe::default()
                },
                n,
            ));
            submit_batch(&batch, sqpoll)
        }
        "unlink" => {
            let path = cstr(a(1));
            submit(
                Sqe {
                    opcode: OP_UNLINKAT,
                    fd: libc::AT_FDCWD,
                    addr: path.as_ptr() as u64,
                    ..Sqe::default()
                },
                sqpoll,
            )
        }
        "mkdir" => {
            let path = cstr(a(1));
            submit(
                Sqe {
                    opcode: OP_MKDIRAT,
                    fd: libc::AT_FDCWD,
                    addr: path.as_ptr() as u64,
                    len: 0o755,
                    ..Sqe::default()
                },
                sqpoll,
            )
        }
        "rename" => {
            let (old, new) = (cstr(a(1)), cstr(a(2)));
            submit(
                Sqe {
                    opcode: OP_RENAMEAT,
                    fd: libc::AT_FDCWD,
                    addr: old.as_ptr() as u64,
                    len: libc::AT_FDCWD as u32,
                    off: new.as_ptr() as u64,
                    ..Sqe::default()
                },
                sqpoll,
            )
        }
        other => {
            eprintln!("uring: unknown operation {other}");
            std::process::exit(2)
        }
    };
    println!("result {res}");
    std::process::exit(if res >= 0 { 0 } else { 1 });
}
