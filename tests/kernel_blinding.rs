//! Threads blocked in captured syscalls do not blind the sensor: nothing is held between a
//! syscall's entry and exit, so 9,000 threads of an unprivileged user blocked in `open()` of a
//! FIFO (more than the old in-flight table's 8,192) take no room another process's syscalls
//! need. Alone in its binary: the blockers would slow every test running beside them. Root,
//! real eBPF.

mod rules_support;
mod support;

use std::{ffi::CString, time::Duration};

use rules_support::*;

/// A child killed when the test ends, failed or not: 9,000 threads left blocked would weigh on
/// every test after this one.
struct Killed(std::process::Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Threads of an unprivileged user blocked in `open()` of a FIFO, as many as filled the
/// kernel's old table of in-flight syscalls (8,192) and more.
const BLOCKED_THREADS: usize = 9_000;

#[test]
fn evasion_threads_blocked_in_syscalls_do_not_blind_the_sensor() {
    let mut agent = agent();
    let d = TempDir::new("ev-fifo");
    let fifo = d.join("fifo");
    let c = CString::new(fifo.to_str().unwrap()).unwrap();
    // SAFETY: a valid NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o666) }, 0);
    // The blockers run as nobody in a child process (the agent ignores its own syscalls, not
    // ours, but a separate process is what an attacker's pod would be).
    let script = format!(
        "import os, threading\n\
         os.setgid(65534); os.setuid(65534)\n\
         threading.stack_size(65536)\n\
         n = {BLOCKED_THREADS}\n\
         def block():\n    os.close(os.open('{fifo}', os.O_RDONLY))\n\
         ts = [threading.Thread(target=block) for _ in range(n)]\n\
         [t.start() for t in ts]\n\
         print('started', flush=True)\n\
         [t.join() for t in ts]\n",
        fifo = fifo.display()
    );
    std::fs::set_permissions(
        d.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    let mut blockers = Killed(
        std::process::Command::new("python3")
            .args(["-c", &script])
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let blockers = &mut blockers.0;
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(blockers.stdout.take().unwrap()),
        &mut line,
    )
    .unwrap();
    assert_eq!(line.trim(), "started");
    // Every thread is started; give them time to enter open() (they have nothing else to do).
    let threads = std::fs::read_to_string(format!("/proc/{}/status", blockers.id()))
        .unwrap()
        .lines()
        .find_map(|l| {
            l.strip_prefix("Threads:")
                .map(|n| n.trim().parse::<usize>().unwrap())
        })
        .unwrap();
    assert!(threads > BLOCKED_THREADS, "only {threads} threads");
    std::thread::sleep(Duration::from_secs(2));
    // Nobody has opened the FIFO for writing, so no open() of it can have returned.
    assert!(
        blockers.try_wait().unwrap().is_none(),
        "the blockers exited"
    );

    // With all of them in flight, another process reads /etc/shadow.
    bash_ok("head -c0 /etc/shadow");
    let a = alert(&mut agent, "Read sensitive file", |v| {
        field(v, "fd.name") == "/etc/shadow" && field(v, "proc.name") == "head"
    });
    check(&a, "Warning", &["T1003.008"], &[]);

    // Release them: one writer open completes every pending reader open.
    let w = std::fs::OpenOptions::new().write(true).open(&fifo).unwrap();
    let status = blockers.wait().unwrap();
    drop(w);
    assert!(status.success(), "{status:?}");
    // The agent lost nothing in the kernel meanwhile.
    let stderr = agent.stderr();
    assert!(
        !stderr.contains("kernel events lost"),
        "the sensor dropped events: {stderr}"
    );
}
