//! A syscall-heavy loop for measuring the sensor's cost: `getppid` (a syscall no rule wants)
//! or `open`+`close` of /dev/null (one the sensor captures), N times; prints nanoseconds per
//! iteration. Used by the README's measurements and `cargo xtask bench`. Two more split a
//! captured open's cost: `enoent` (an open that fails: captured, no file to walk) and `deep`
//! (open+close of a file eight directories below /tmp: a longer walk). `watched` opens
//! /etc/passwd, a file below a directory the default rules watch: the kernel's open filter
//! judges it on its names and captures it. `mmap` maps and unmaps an anonymous read-write
//! page: a call the W^X rule names, which the kernel passes over on its protection bits.
//!
//! `cargo run --release --example syscall_loop -- open 1000000`

use std::{ffi::CString, time::Instant};

fn main() {
    let mut args = std::env::args().skip(1);
    let what = args.next().unwrap_or_else(|| "getppid".into());
    let n: u64 = args
        .next()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1_000_000);
    let path = match what.as_str() {
        "enoent" => CString::new("/nonexistent-osprey-loop/file").unwrap(),
        "deep" => {
            let dir = format!("/tmp/osprey-loop-{}/a/b/c/d/e/f/g", std::process::id());
            std::fs::create_dir_all(&dir).expect("creating the deep directory");
            std::fs::write(format!("{dir}/file"), "").expect("creating the deep file");
            CString::new(format!("{dir}/file")).unwrap()
        }
        "watched" => CString::new("/etc/passwd").unwrap(),
        _ => CString::new("/dev/null").unwrap(),
    };
    let start = Instant::now();
    for _ in 0..n {
        match what.as_str() {
            // SAFETY: plain syscalls with valid arguments.
            "open" | "enoent" | "deep" | "watched" => unsafe {
                let fd = libc::open(path.as_ptr(), libc::O_RDONLY);
                libc::close(fd);
            },
            "mmap" => unsafe {
                let p = libc::mmap(
                    std::ptr::null_mut(),
                    4096,
                    libc::PROT_READ | libc::PROT_WRITE,
                    libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                    -1,
                    0,
                );
                libc::munmap(p, 4096);
            },
            _ => unsafe {
                libc::getppid();
            },
        }
    }
    let ns = start.elapsed().as_nanos() as f64 / n as f64;
    if what == "deep" {
        let top = format!("/tmp/osprey-loop-{}", std::process::id());
        let _ = std::fs::remove_dir_all(top);
    }
    println!("{what} x{n}: {ns:.1} ns/iteration");
}
