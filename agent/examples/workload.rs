//! Workloads for `cargo xtask bench`, each bounded in count and printing one result line.
//!
//! ```text
//! workload open N               open+close of /dev/null, N times         -> ns/iteration
//! workload getppid N            getppid, N times (a syscall no rule wants) -> ns/iteration
//! workload exec N               fork+exec of /bin/true, N times          -> ns/iteration
//! workload exec-pod N           the same with the environment Kubernetes gives a pod in a
//!                               namespace of 50 services (300 entries, about 10 KB), which
//!                               the exec program scans for LD_PRELOAD -> ns/iteration
//! workload connect N            loopback TCP connect to our own listener -> ns/iteration
//! workload build N              N rounds of a small build: sh, file churn, cc -> ns/iteration
//! workload rate R SECS THREADS  open+close paced at R per second in total -> achieved opens/s
//! workload trigger N GAP_US     open /etc/shadow for reading N times, GAP_US apart (an alert
//!                               under the default rules; for the latency benchmark)
//! workload redis N               redis-benchmark (SET and GET, 50 clients, N requests each)
//!                               against a redis-server of our own on loopback: Falco's
//!                               published overhead workload -> ns/request
//! workload blind N M            N threads blocked in open() of a FIFO (the attack that filled
//!                               the old in-flight table), then M opens of /etc/shadow and M
//!                               of /dev/null while they block -> "blind: ..." line
//! ```
//!
//! `cargo run --release --example workload -- exec 500`

use std::{
    ffi::CString,
    io::{Read as _, Write as _},
    net::{TcpListener, TcpStream},
    os::fd::AsRawFd as _,
    path::Path,
    process::{Command, Stdio},
    time::{Duration, Instant},
};

/// A small C file for the build workload's compiler step.
const C_SOURCE: &str = "#include <stdio.h>\nstatic int sq(int x) { return x * x; }\n\
int main(void) { int s = 0; for (int i = 0; i < 10; i++) s += sq(i); printf(\"%d\\n\", s); return 0; }\n";

/// One round of the build workload: directories and files created, copied, listed, read and
/// removed, a few short-lived tools, and one compile (when a C compiler is installed).
const BUILD_SCRIPT: &str = r#"set -e
mkdir -p src obj
for i in 1 2 3 4 5 6 7 8; do echo "int f$i(void) { return $i; }" > src/f$i.c; done
cp src/f1.c src/copy.c && mv src/copy.c obj/
ls -la src obj > /dev/null
cat src/*.c | wc -l > /dev/null
grep -l return src/*.c > /dev/null
if command -v cc > /dev/null; then cc -c main.c -o obj/main.o; fi
rm -rf src obj
"#;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let num = |i: usize, default: u64| -> u64 {
        args.get(i).and_then(|s| s.parse().ok()).unwrap_or(default)
    };
    match args.first().map(String::as_str) {
        Some("open") => timed("open", num(1, 200_000), open_close_loop),
        Some("getppid") => timed("getppid", num(1, 2_000_000), getppid_loop),
        Some("exec") => timed("exec", num(1, 300), exec_loop),
        Some("exec-pod") => timed("exec-pod", num(1, 300), exec_pod_loop),
        Some("connect") => timed("connect", num(1, 2_000), connect_loop),
        Some("build") => timed("build", num(1, 10), build_loop),
        Some("rate") => rate(num(1, 100_000), num(2, 3), num(3, 2)),
        Some("trigger") => trigger(num(1, 300), num(2, 5_000)),
        Some("blind") => blind(num(1, 9_000), num(2, 3)),
        Some("redis") => redis(num(1, 100_000)),
        _ => {
            eprintln!(
                "usage: workload open|getppid|exec|exec-pod|connect|build|redis N \
                 | rate R SECS THREADS \
                 | trigger N GAP_US | blind N M"
            );
            std::process::exit(2);
        }
    }
}

/// Runs `f(n)` and prints nanoseconds per iteration in the line the bench harness parses.
fn timed(what: &str, n: u64, f: fn(u64)) {
    let start = Instant::now();
    f(n);
    let ns = start.elapsed().as_nanos() as f64 / n.max(1) as f64;
    println!("{what} x{n}: {ns:.1} ns/iteration");
}

fn open_close_loop(n: u64) {
    let path = CString::new("/dev/null").unwrap();
    for _ in 0..n {
        // SAFETY: a valid NUL-terminated path; the fd is closed at once.
        unsafe {
            let fd = libc::open(path.as_ptr(), libc::O_RDONLY);
            libc::close(fd);
        }
    }
}

fn getppid_loop(n: u64) {
    for _ in 0..n {
        // SAFETY: a syscall without arguments.
        unsafe { libc::getppid() };
    }
}

fn exec_loop(n: u64) {
    for _ in 0..n {
        let status = Command::new("/bin/true").status().expect("exec /bin/true");
        assert!(status.success());
    }
}

/// The service variables Kubernetes puts in every container of a namespace with 50 services
/// (six per service), as `env -i` would pass them: nothing else.
fn pod_environment() -> Vec<(String, String)> {
    let mut env = Vec::new();
    for i in 0..50 {
        let svc = format!("SVC{i}");
        let addr = format!("10.96.{i}.17");
        env.extend([
            (format!("{svc}_SERVICE_HOST"), addr.clone()),
            (format!("{svc}_SERVICE_PORT"), "8080".to_string()),
            (format!("{svc}_PORT"), format!("tcp://{addr}:8080")),
            (format!("{svc}_PORT_8080_TCP"), format!("tcp://{addr}:8080")),
            (format!("{svc}_PORT_8080_TCP_PROTO"), "tcp".to_string()),
            (format!("{svc}_PORT_8080_TCP_ADDR"), addr),
        ]);
    }
    env
}

fn exec_pod_loop(n: u64) {
    let env = pod_environment();
    for _ in 0..n {
        let status = Command::new("/bin/true")
            .env_clear()
            .envs(env.iter().map(|(k, v)| (k, v)))
            .status()
            .expect("exec /bin/true");
        assert!(status.success());
    }
}

fn connect_loop(n: u64) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind a loopback listener");
    // The longest accept queue the kernel allows (`net.core.somaxconn`): with the acceptor
    // starved of CPU for a moment, the client filled a short one and its next SYN was dropped,
    // costing a one-second retransmit (runs 40 to 90 times their usual length).
    // SAFETY: a listening socket; listen again only changes its backlog.
    unsafe { libc::listen(listener.as_raw_fd(), i32::MAX) };
    let addr = listener.local_addr().unwrap();
    let acceptor = std::thread::spawn(move || {
        for _ in 0..n {
            // Closed only after the client's reset: a server that closes first leaves a
            // TIME_WAIT socket per connection, and the kernel's ephemeral-port search slows
            // to milliseconds per connect as they pile up.
            if let Ok((mut s, _)) = listener.accept() {
                let _ = s.read(&mut [0u8; 1]);
            }
        }
    });
    for _ in 0..n {
        let s = TcpStream::connect(addr).expect("loopback connect");
        // Reset instead of FIN: no TIME_WAIT sockets pile up across rounds and exhaust the
        // ephemeral ports. (`TcpStream::set_linger` is not stable yet.)
        let linger = libc::linger {
            l_onoff: 1,
            l_linger: 0,
        };
        // SAFETY: a valid socket and a `linger` struct of the size passed.
        unsafe {
            libc::setsockopt(
                s.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_LINGER,
                (&raw const linger).cast(),
                std::mem::size_of::<libc::linger>() as libc::socklen_t,
            );
        }
    }
    acceptor.join().unwrap();
}

fn build_loop(n: u64) {
    let dir = std::env::temp_dir().join(format!("osprey-bench-build-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("create the build directory");
    std::fs::write(dir.join("main.c"), C_SOURCE).unwrap();
    for _ in 0..n {
        let status = Command::new("/bin/sh")
            .args(["-c", BUILD_SCRIPT])
            .current_dir(&dir)
            .stdout(Stdio::null())
            .status()
            .expect("run /bin/sh");
        assert!(
            status.success(),
            "the build round failed in {}",
            dir.display()
        );
    }
    std::fs::remove_dir_all(&dir).ok();
}

/// `total` open+close pairs per second spread over `threads` threads for `secs` seconds, paced
/// per millisecond; a thread that falls behind catches up at most 10 ms worth at a time.
fn rate(total: u64, secs: u64, threads: u64) {
    let threads = threads.max(1);
    let per_thread = total as f64 / threads as f64;
    let deadline = Duration::from_secs(secs);
    let start = Instant::now();
    let handles: Vec<_> = (0..threads)
        .map(|_| {
            std::thread::spawn(move || {
                let path = CString::new("/dev/null").unwrap();
                let mut done = 0u64;
                loop {
                    let elapsed = start.elapsed();
                    if elapsed >= deadline {
                        break done;
                    }
                    let due = (elapsed.as_secs_f64() * per_thread) as u64;
                    let burst = due
                        .saturating_sub(done)
                        .min((per_thread / 100.0) as u64 + 1);
                    if burst == 0 {
                        std::thread::sleep(Duration::from_micros(200));
                        continue;
                    }
                    for _ in 0..burst {
                        // SAFETY: a valid NUL-terminated path; the fd is closed at once.
                        unsafe {
                            let fd = libc::open(path.as_ptr(), libc::O_RDONLY);
                            libc::close(fd);
                        }
                    }
                    done += burst;
                }
            })
        })
        .collect();
    let opens: u64 = handles.into_iter().map(|h| h.join().unwrap()).sum();
    let secs = start.elapsed().as_secs_f64();
    println!(
        "rate target {total}/s: {opens} opens in {secs:.2} s = {:.0} opens/s",
        opens as f64 / secs
    );
}

/// Opens /etc/shadow for reading `n` times, `gap_us` apart, so that each open is judged alone.
/// The blinding attack: `n` threads blocked opening a FIFO nobody writes, then `m` reads of
/// /etc/shadow (each an alert under the default rules) and 10,000 opens of /dev/null, all
/// while they block; then one writer open releases them.
fn blind(n: u64, m: u64) {
    let dir = std::env::temp_dir().join(format!("osprey-blind-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let fifo = dir.join("fifo");
    let c = CString::new(fifo.to_str().expect("utf-8 path")).expect("no NUL");
    // SAFETY: a valid NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0, "mkfifo");
    let mut threads = Vec::new();
    for _ in 0..n {
        let fifo = fifo.clone();
        let t = std::thread::Builder::new()
            .stack_size(64 * 1024)
            .spawn(move || drop(std::fs::File::open(fifo)));
        match t {
            Ok(t) => threads.push(t),
            Err(e) => {
                eprintln!("blind: thread {} not started: {e}", threads.len());
                break;
            }
        }
    }
    // Give every thread time to enter open().
    std::thread::sleep(Duration::from_secs(2));
    let start = Instant::now();
    for _ in 0..m {
        drop(std::fs::File::open("/etc/shadow"));
    }
    for _ in 0..10_000 {
        drop(std::fs::File::open("/dev/null"));
    }
    let elapsed = start.elapsed();
    let writer = std::fs::OpenOptions::new().write(true).open(&fifo);
    let blocked = threads.len();
    for t in threads {
        let _ = t.join();
    }
    drop(writer);
    let _ = std::fs::remove_dir_all(&dir);
    let mut out = std::io::stdout();
    writeln!(
        out,
        "blind: {blocked} threads blocked, {m} opens of /etc/shadow and 10000 of /dev/null in \
         {:.1} ms",
        elapsed.as_secs_f64() * 1e3
    )
    .ok();
}

fn trigger(n: u64, gap_us: u64) {
    let shadow = Path::new("/etc/shadow");
    for _ in 0..n {
        drop(std::fs::File::open(shadow));
        std::thread::sleep(Duration::from_micros(gap_us));
    }
    let mut out = std::io::stdout();
    writeln!(out, "trigger: {n} opens of /etc/shadow").ok();
}

/// redis-server on a free loopback port (no persistence), then redis-benchmark's SET and GET
/// tests with 50 clients; prints the mean time per request over both.
fn redis(n: u64) {
    let port = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free loopback port")
        .port();
    let mut server = Command::new("redis-server")
        .args([
            "--port",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
        ])
        .args(["--appendonly", "no", "--daemonize", "no"])
        .stdout(Stdio::null())
        .spawn()
        .expect("redis-server (apt-get install redis-server redis-tools)");
    let deadline = Instant::now() + Duration::from_secs(10);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "redis-server did not listen");
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = Command::new("redis-benchmark")
        .args(["-h", "127.0.0.1", "-p", &port.to_string(), "-c", "50"])
        .args(["-n", &n.to_string(), "-t", "set,get", "--csv"])
        .output()
        .expect("redis-benchmark");
    let _ = server.kill();
    let _ = server.wait();
    assert!(out.status.success(), "redis-benchmark: {out:?}");
    // "test","rps",...: one line per test after the header.
    let text = String::from_utf8_lossy(&out.stdout);
    let rps: Vec<f64> = text
        .lines()
        .skip(1)
        .filter_map(|l| l.split(',').nth(1)?.trim_matches('"').parse().ok())
        .collect();
    assert_eq!(rps.len(), 2, "redis-benchmark output: {text}");
    let ns = rps.iter().map(|r| 1e9 / r).sum::<f64>() / rps.len() as f64;
    println!("redis x{n}: {ns:.1} ns/iteration");
}
