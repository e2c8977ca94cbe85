//! Real actions the default rules alert on, for the kernel matrix (`cargo xtask kernels`), which
//! runs them in a minimal guest where busybox has no strace, no memfd and no init_module.
//! Each prints one line saying what it did and exits 0 when the action was carried out (a
//! refused syscall counts: the attempt is what the rules see).
//!
//! ```text
//! actions ptrace         fork a child, PTRACE_ATTACH to it, detach, reap it
//! actions memfd EXE ARG  copy EXE into a memfd and fexecve it with argv [ARG]
//! actions userns         unshare(CLONE_NEWUSER)
//! actions init_module    init_module() of an invalid image (refused; the attempt is the event)
//! actions acct           acct(NULL): the syscall the matrix's kill profile kills
//! actions netstdio EXE   connect two sockets straight onto fds 0 and 1 (no dup2), exec EXE
//! ```

use std::{ffi::CString, io, ptr};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("ptrace") => ptrace_attach(),
        Some("memfd") if args.len() == 3 => memfd_exec(&args[1], &args[2]),
        Some("userns") => userns(),
        Some("init_module") => init_module(),
        Some("acct") => acct(),
        Some("netstdio") if args.len() == 2 => netstdio(&args[1]),
        _ => {
            eprintln!(
                "usage: actions ptrace | memfd EXE ARG | userns | init_module | acct | netstdio EXE"
            );
            std::process::exit(2);
        }
    };
    if let Err(e) = result {
        eprintln!("actions {}: {e}", args[0]);
        std::process::exit(1);
    }
}

fn check(r: libc::c_long, what: &str) -> io::Result<libc::c_long> {
    if r < 0 {
        let e = io::Error::last_os_error();
        return Err(io::Error::new(e.kind(), format!("{what}: {e}")));
    }
    Ok(r)
}

fn ptrace_attach() -> io::Result<()> {
    // SAFETY: the child only sleeps (async-signal-safe) until it is killed.
    let child = unsafe { libc::fork() };
    if child == 0 {
        loop {
            // SAFETY: no preconditions.
            unsafe { libc::pause() };
        }
    }
    check(child.into(), "fork")?;
    // SAFETY: plain syscalls on our own child.
    unsafe {
        let r = libc::ptrace(libc::PTRACE_ATTACH, child, ptr::null_mut::<u8>(), 0);
        check(r, "ptrace(PTRACE_ATTACH)")?;
        let mut status = 0;
        libc::waitpid(child, &mut status, 0);
        libc::ptrace(libc::PTRACE_DETACH, child, ptr::null_mut::<u8>(), 0);
        libc::kill(child, libc::SIGKILL);
        libc::waitpid(child, &mut status, 0);
    }
    println!("ptrace: attached to and detached from child {child}");
    Ok(())
}

fn memfd_exec(exe: &str, arg0: &str) -> io::Result<()> {
    let image = std::fs::read(exe)?;
    let name = c"osprey-matrix";
    // SAFETY: a valid C string.
    let fd = check(
        unsafe { libc::memfd_create(name.as_ptr(), 0) }.into(),
        "memfd_create",
    )? as libc::c_int;
    let mut written = 0;
    while written < image.len() {
        // SAFETY: a valid buffer of the given length.
        let n = unsafe { libc::write(fd, image[written..].as_ptr().cast(), image.len() - written) };
        written += check(n as libc::c_long, "write to the memfd")? as usize;
    }
    let arg0 = CString::new(arg0).map_err(io::Error::other)?;
    let argv = [arg0.as_ptr(), ptr::null()];
    let envp = [ptr::null()];
    println!("memfd: fexecve of a copy of {exe} as {arg0:?}");
    // SAFETY: NULL-terminated argv and envp of valid C strings.
    unsafe { libc::fexecve(fd, argv.as_ptr(), envp.as_ptr()) };
    Err(io::Error::other(format!(
        "fexecve: {}",
        io::Error::last_os_error()
    )))
}

fn userns() -> io::Result<()> {
    // SAFETY: no pointers.
    check(
        unsafe { libc::unshare(libc::CLONE_NEWUSER) }.into(),
        "unshare(CLONE_NEWUSER)",
    )?;
    println!("userns: in a new user namespace");
    Ok(())
}

fn init_module() -> io::Result<()> {
    let image = [0u8; 64];
    let params = c"";
    // SAFETY: a valid buffer and C string; the kernel refuses the image.
    let r = unsafe {
        libc::syscall(
            libc::SYS_init_module,
            image.as_ptr(),
            image.len(),
            params.as_ptr(),
        )
    };
    println!(
        "init_module: attempted, result {r} ({})",
        io::Error::last_os_error()
    );
    Ok(())
}

fn acct() -> io::Result<()> {
    // SAFETY: NULL turns process accounting off, which it already is.
    let r = unsafe { libc::acct(ptr::null()) };
    println!("acct: returned {r}; a kill profile should have stopped this process");
    Ok(())
}

fn netstdio(exe: &str) -> io::Result<()> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    let addr = listener.local_addr()?;
    let exe_c = CString::new(exe).map_err(io::Error::other)?;
    // SAFETY: the child only makes syscalls and execs (or exits).
    let child = unsafe { libc::fork() };
    if child == 0 {
        // SAFETY: our own descriptors; the sockets take the lowest free numbers, 0 and 1.
        unsafe {
            libc::close(0);
            libc::close(1);
        }
        for fd in 0..2 {
            let Ok(s) = std::net::TcpStream::connect(addr) else {
                std::process::exit(3)
            };
            let n = std::os::fd::IntoRawFd::into_raw_fd(s);
            // SAFETY: clears close-on-exec on the socket we own.
            if n != fd || unsafe { libc::fcntl(n, libc::F_SETFD, 0) } != 0 {
                std::process::exit(4);
            }
        }
        let argv = [c"true".as_ptr(), ptr::null()];
        // SAFETY: NULL-terminated argv of valid C strings.
        unsafe { libc::execv(exe_c.as_ptr(), argv.as_ptr()) };
        std::process::exit(5);
    }
    check(child.into(), "fork")?;
    let mut status = 0;
    // SAFETY: our own child.
    unsafe { libc::waitpid(child, &mut status, 0) };
    if !libc::WIFEXITED(status) || libc::WEXITSTATUS(status) != 0 {
        return Err(io::Error::other(format!("child status {status:#x}")));
    }
    println!("netstdio: {exe} started with two connections to {addr} as stdin and stdout");
    Ok(())
}
