//! A syscall-heavy loop for measuring the sensor's cost: `getppid` (a syscall no rule wants)
//! or `open`+`close` of /dev/null (one the sensor captures), N times; prints nanoseconds per
//! iteration. Used by the README's measurements and `cargo xtask bench`.
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
    let path = CString::new("/dev/null").unwrap();
    let start = Instant::now();
    for _ in 0..n {
        match what.as_str() {
            // SAFETY: plain syscalls with valid arguments.
            "open" => unsafe {
                let fd = libc::open(path.as_ptr(), libc::O_RDONLY);
                libc::close(fd);
            },
            _ => unsafe {
                libc::getppid();
            },
        }
    }
    let ns = start.elapsed().as_nanos() as f64 / n as f64;
    println!("{what} x{n}: {ns:.1} ns/iteration");
}
