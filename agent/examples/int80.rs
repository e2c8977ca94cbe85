//! Syscalls made through the 32-bit entry (`int $0x80`) from a 64-bit process, for the tests of
//! what Osprey sees of them (tests/evasion_kernel.rs). Any x86_64 process can do this where the
//! kernel has ia32 emulation (most distributions' kernels): the call numbers and registers are
//! i386's, so a sensor that reads them as x86_64's sees another call, or none.
//!
//! ```text
//! int80 open PATH             ia32 open (5) of PATH for reading
//! int80 open-high PATH        the same with junk in the upper half of rbx, which the kernel
//!                             drops (it reads the low 32 bits)
//! int80 connect IP PORT       ia32 socket (359) and connect (362) to IP:PORT (IPv4)
//! int80 socketcall IP PORT    the same through socketcall (102): SYS_SOCKET, then SYS_CONNECT
//!                             with its arguments in memory
//! int80 read-as-close FD      ia32 read (3) of 0 bytes from stdin with FD in rdi: 3 is
//!                             x86_64's close, whose descriptor argument is rdi
//! int80 shmget                a private 4 KiB System V segment made through ipc (117,
//!                             SHMGET), then removed the same way (SHMCTL, IPC_RMID)
//! int80 compat-open PATH      ia32 open (5) of PATH made from 32-bit code: the program
//!                             switches its code to 32-bit mode (a far return to the 32-bit
//!                             user code segment, 0x23), calls, and switches back
//! ```
//!
//! Pointers passed to the 32-bit entry must be below 4 GiB: everything it reads is in a page
//! mapped with `MAP_32BIT`. Prints `result N` (the last call's result) and exits 0 when N >= 0.

#[cfg(target_arch = "x86_64")]
fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let a = |i: usize| args.get(i).map(String::as_str).unwrap_or_default();
    let low = Low::new();
    let result = match a(0) {
        "open" => int80(5, [low.string(a(1)), 0, 0, 0, 0, 0]),
        "compat-open" => compat_open(a(1)),
        "open-high" => int80(5, [low.string(a(1)) | 0xdead_beef_0000_0000, 0, 0, 0, 0, 0]),
        "connect" => {
            let fd = int80(359, [2, 1, 0, 0, 0, 0]);
            check("socket", fd);
            let sa = low.sockaddr(a(1), a(2));
            int80(362, [fd as u64, sa, 16, 0, 0, 0])
        }
        "read-as-close" => {
            let fd: u64 = a(1).parse().expect("a descriptor number");
            int80(3, [0, low.words(&[0]), 0, 0, fd, 0])
        }
        "socketcall" => {
            const SYS_SOCKET: u64 = 1;
            const SYS_CONNECT: u64 = 3;
            let fd = int80(102, [SYS_SOCKET, low.words(&[2, 1, 0]), 0, 0, 0, 0]);
            check("socket", fd);
            let sa = low.sockaddr(a(1), a(2));
            let words = low.words(&[fd as u32, sa as u32, 16]);
            int80(102, [SYS_CONNECT, words, 0, 0, 0, 0])
        }
        "shmget" => {
            const SHMGET: u64 = 23;
            const SHMCTL: u64 = 24;
            const IPC_CREAT_0600: u64 = 0o1000 | 0o600;
            let id = int80(117, [SHMGET, 0, 4096, IPC_CREAT_0600, 0, 0]);
            check("shmget", id);
            const IPC_RMID: u64 = 0;
            check("shmctl", int80(117, [SHMCTL, id as u64, IPC_RMID, 0, 0, 0]));
            id
        }
        _ => {
            eprintln!(
                "usage: int80 open|open-high|compat-open PATH | connect|socketcall IP PORT \
                 | read-as-close FD | shmget"
            );
            std::process::exit(2);
        }
    };
    println!("result {result}");
    check("the call", result);
}

#[cfg(not(target_arch = "x86_64"))]
fn main() {
    eprintln!("int80: the 32-bit entry is an x86_64 thing");
    std::process::exit(2);
}

#[cfg(target_arch = "x86_64")]
fn check(what: &str, r: i64) {
    if r < 0 {
        eprintln!(
            "int80: {what} failed: {}",
            std::io::Error::from_raw_os_error(-r as i32)
        );
        std::process::exit(1);
    }
}

/// `int $0x80` with `nr` in eax and the six arguments in ebx, ecx, edx, esi, edi, ebp (rbx is
/// given whole: the kernel reads its low half).
#[cfg(target_arch = "x86_64")]
fn int80(nr: u64, args: [u64; 6]) -> i64 {
    let ret: u64;
    // SAFETY: a syscall through the 32-bit entry, whose pointer arguments point into the
    // `MAP_32BIT` page; rbx and rbp cannot be operands, so they are swapped in and out around
    // the instruction, through named registers (given `reg`, the compiler once chose rbx itself
    // for the second, and the swap put ebx's argument in ebp).
    unsafe {
        std::arch::asm!(
            "xchg rbx, r12",
            "xchg rbp, r13",
            "int 0x80",
            "xchg rbp, r13",
            "xchg rbx, r12",
            inout("r12") args[0] => _,
            inout("r13") args[5] => _,
            inlateout("rax") nr => ret,
            in("rcx") args[1],
            in("rdx") args[2],
            in("rsi") args[3],
            in("rdi") args[4],
            // The 64-bit kernel clears r8-r11 on this entry.
            out("r8") _,
            out("r9") _,
            out("r10") _,
            out("r11") _,
        );
    }
    // The 32-bit entry returns a 32-bit result.
    ret as u32 as i32 as i64
}

/// An ia32 open (5) of `path` made from 32-bit code. The 64-bit code saves its stack pointer
/// and return address in a page below 4 GiB, moves to a stack there and far-returns to that
/// page's 32-bit code (segment 0x23), which makes the call with `int $0x80`, keeps the result
/// and far-returns (segment 0x33) to that page's 64-bit code, which restores the stack and
/// jumps back. Everything 32-bit code touches is below 4 GiB, as it must be.
#[cfg(target_arch = "x86_64")]
fn compat_open(path: &str) -> i64 {
    // SAFETY: an anonymous private mapping, checked; the page is this function's alone.
    let page = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            4096,
            libc::PROT_READ | libc::PROT_WRITE | libc::PROT_EXEC,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_32BIT,
            -1,
            0,
        )
    };
    assert!(page != libc::MAP_FAILED, "mmap(MAP_32BIT) failed");
    let base = page as u32;
    let (code32, code64, save, back, result, name) = (0u32, 0x40, 0x80, 0x88, 0x90, 0xa0);
    let at = |off: u32| (base + off).to_le_bytes();
    let mut c = vec![0u8; 4096];
    let mut put = |off: u32, bytes: &[u8]| {
        c[off as usize..off as usize + bytes.len()].copy_from_slice(bytes);
    };
    // 32-bit code: open(name, O_RDONLY) through int $0x80, keep eax, far return to 64-bit.
    // 64-bit Linux leaves ds null, which 32-bit code cannot store through: __USER_DS first.
    let mut b32 = vec![0x6a, 0x2b, 0x1f]; // push 0x2b; pop ds
    b32.extend([0xb8, 5, 0, 0, 0]); // mov eax, 5
    b32.push(0xbb); // mov ebx, name
    b32.extend(at(name));
    b32.extend([0x31, 0xc9]); // xor ecx, ecx
    b32.extend([0xcd, 0x80]); // int 0x80
    b32.push(0xa3); // mov [result], eax
    b32.extend(at(result));
    b32.extend([0x6a, 0x33]); // push 0x33
    b32.push(0x68); // push code64
    b32.extend(at(code64));
    b32.push(0xcb); // retf
    put(code32, &b32);
    // 64-bit code: rsp from [save], then jmp [back].
    let mut b64 = vec![0x48, 0x8b, 0x24, 0x25]; // mov rsp, [save]
    b64.extend(at(save));
    b64.extend([0xff, 0x24, 0x25]); // jmp [back]
    b64.extend(at(back));
    put(code64, &b64);
    let mut p = path.as_bytes().to_vec();
    p.push(0);
    assert!(p.len() < 4096 - 0x200, "a path that fits the page");
    put(name, &p);
    // SAFETY: inside the mapping.
    unsafe { std::ptr::copy_nonoverlapping(c.as_ptr(), page.cast::<u8>(), 4096) };
    let (save_at, back_at, stack, entry) = (
        u64::from(base + save),
        u64::from(base + back),
        u64::from(base + 4096),
        u64::from(base + code32),
    );
    // SAFETY: the far returns go to code written above, which comes back to label 2 with the
    // stack pointer it left; rbx and rbp (the compiler's) are saved on that stack, and every
    // other register is given up (the 32-bit code and the compat entry may change them).
    unsafe {
        std::arch::asm!(
            "push rbx",
            "push rbp",
            "lea rax, [rip + 2f]",
            "mov [rdi], rax",
            "mov [rsi], rsp",
            "mov rsp, rdx",
            "push 0x23",
            "push rcx",
            // retfq: a far return that pops a 64-bit rip and cs.
            ".byte 0x48, 0xcb",
            "2:",
            "pop rbp",
            "pop rbx",
            inout("rdi") back_at => _,
            inout("rsi") save_at => _,
            inout("rdx") stack => _,
            inout("rcx") entry => _,
            out("rax") _,
            out("r8") _,
            out("r9") _,
            out("r10") _,
            out("r11") _,
            out("r12") _,
            out("r13") _,
            out("r14") _,
            out("r15") _,
        );
    }
    // SAFETY: the slot the 32-bit code wrote, inside the mapping.
    let ret =
        unsafe { std::ptr::read_volatile(page.cast::<u8>().add(result as usize).cast::<u32>()) };
    ret as i32 as i64
}

/// A page below 4 GiB, filled from its start.
#[cfg(target_arch = "x86_64")]
struct Low {
    base: *mut u8,
    used: std::cell::Cell<usize>,
}

#[cfg(target_arch = "x86_64")]
impl Low {
    fn new() -> Self {
        // SAFETY: an anonymous private mapping; the result is checked.
        let base = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                4096,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_32BIT,
                -1,
                0,
            )
        };
        assert!(base != libc::MAP_FAILED, "mmap(MAP_32BIT) failed");
        Low {
            base: base.cast(),
            used: std::cell::Cell::new(0),
        }
    }

    /// Copies `bytes` into the page (8-aligned); returns their address.
    fn put(&self, bytes: &[u8]) -> u64 {
        let at = self.used.get();
        assert!(at + bytes.len() <= 4096, "the page is full");
        // SAFETY: inside the mapped page, which nothing else writes.
        unsafe { std::ptr::copy_nonoverlapping(bytes.as_ptr(), self.base.add(at), bytes.len()) };
        self.used.set((at + bytes.len()).next_multiple_of(8));
        self.base as u64 + at as u64
    }

    fn string(&self, s: &str) -> u64 {
        let mut b = s.as_bytes().to_vec();
        b.push(0);
        self.put(&b)
    }

    fn words(&self, w: &[u32]) -> u64 {
        let b: Vec<u8> = w.iter().flat_map(|v| v.to_ne_bytes()).collect();
        self.put(&b)
    }

    /// A `sockaddr_in` for `ip:port`.
    fn sockaddr(&self, ip: &str, port: &str) -> u64 {
        let ip: std::net::Ipv4Addr = ip.parse().expect("an IPv4 address");
        let port: u16 = port.parse().expect("a port");
        let mut b = vec![0u8; 16];
        b[0..2].copy_from_slice(&(libc::AF_INET as u16).to_ne_bytes());
        b[2..4].copy_from_slice(&port.to_be_bytes());
        b[4..8].copy_from_slice(&ip.octets());
        self.put(&b)
    }
}
