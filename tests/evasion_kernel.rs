//! Evasions that step around what a process *says* (a path string, a name, an exec path),
//! each done for real with the agent running the default rules: the kernel's own facts (the
//! file behind a descriptor, the executable it loaded, where that executable came from) still
//! raise the alert. (Threads blocked in captured syscalls are in `kernel_blinding.rs` and a
//! container flooding the sensor in `kernel_fairness.rs`, each alone in its binary.) Root, real
//! eBPF, podman with runc.

mod rules_support;
mod support;

use std::os::unix::fs::symlink;

use rules_support::*;

/// Closes the shell's descriptors above stderr, so that the next command it forks gets the
/// descriptor table embedded in its `files_struct` (a child's table is sized by its parent's
/// highest open descriptor; whatever ran the tests may have left one above 64 open). The
/// command must not be the script's last, which bash runs in place of itself, in its own table.
const FEW_FDS: &str = concat!(
    r#"for f in /proc/$$/fd/*; do n=${f##*/}; "#,
    r#"[ "$n" -gt 2 ] && eval "exec $n<&-"; done 2>/dev/null;"#
);

/// `head` reads /etc/shadow through a symlink named notes.txt, run by the bash script
/// `before; head ...; after`: the alert names the file the kernel opened.
fn shadow_read_through_a_symlink(dir: &str, before: &str, after: &str) {
    let mut agent = agent();
    let d = TempDir::new(dir);
    symlink("/etc/shadow", d.join("notes.txt")).unwrap();
    bash_ok(&format!("{before} head -c0 {}/notes.txt{after}", d.s()));
    let a = alert(&mut agent, "Read sensitive file", |v| {
        field(v, "fd.nameraw") == format!("{}/notes.txt", d.s())
    });
    check(&a, "Warning", &["T1003.008"], &[("fd.name", "/etc/shadow")]);
}

#[test]
fn evasion_shadow_read_through_a_symlink() {
    shadow_read_through_a_symlink("ev-link", FEW_FDS, "; exit $?");
}

#[test]
fn evasion_shadow_read_through_a_symlink_with_a_grown_descriptor_table() {
    // Past 64 descriptors a process's table is no longer the one embedded in its
    // `files_struct`: the file behind the returned descriptor is found through the other.
    shadow_read_through_a_symlink("ev-link-fds", "exec 200</dev/null;", "");
}

/// A path string padded to 4,095 bytes (PATH_MAX with its NUL) fills the sensor's capture of
/// it; /etc/shadow was still what the kernel opened, and the alert names it whole. (Before,
/// `fd.name` carried a truncation marker after /etc/shadow and no rule matched it.)
#[test]
fn evasion_shadow_read_through_a_path_padded_to_path_max() {
    let mut agent = agent();
    let padded = format!("/etc/{}shadow", "./".repeat(2042));
    assert_eq!(padded.len(), 4095);
    bash_ok(&format!("head -c0 {padded}"));
    let a = alert(&mut agent, "Read sensitive file", |v| {
        field(v, "fd.nameraw").starts_with("/etc/./././")
    });
    check(&a, "Warning", &["T1003.008"], &[("fd.name", "/etc/shadow")]);
}

#[test]
fn evasion_shadow_read_through_proc_self_root() {
    let mut agent = agent();
    bash_ok("head -c0 /proc/self/root/etc/shadow /proc/self/root/etc/../etc/gshadow");
    for f in ["/etc/shadow", "/etc/gshadow"] {
        let a = alert(&mut agent, "Read sensitive file", |v| {
            field(v, "fd.name") == f && field(v, "fd.nameraw").starts_with("/proc/self/root/")
        });
        check(&a, "Warning", &["T1003.008"], &[("proc.name", "head")]);
    }
}

#[test]
fn evasion_shadow_read_relative_to_a_directory_descriptor() {
    // openat(open("/etc"), "shadow"): no path string ever names /etc/shadow.
    let mut agent = agent();
    bash_ok(
        "python3 -c 'import os; d = os.open(\"/etc\", os.O_RDONLY); \
         os.close(os.open(\"shadow\", os.O_RDONLY, dir_fd=d))'",
    );
    let a = alert(&mut agent, "Read sensitive file", |v| {
        field(v, "fd.nameraw") == "shadow"
    });
    check(&a, "Warning", &["T1003.008"], &[("fd.name", "/etc/shadow")]);
}

#[test]
fn evasion_ssh_key_read_by_a_copy_of_cat_named_sshd() {
    // `sshd` may read keys; a copy of cat called sshd is not sshd.
    let mut agent = agent();
    let d = TempDir::new("ev-sshd");
    std::fs::create_dir_all(d.join("home/.ssh")).unwrap();
    std::fs::write(d.join("home/.ssh/id_ed25519"), "key").unwrap();
    bash_ok(&format!(
        "cp /bin/cat {0}/sshd && {0}/sshd {0}/home/.ssh/id_ed25519 >/dev/null",
        d.s()
    ));
    let exe = format!("{}/sshd", d.s());
    let a = alert(&mut agent, "Read SSH private key", |v| {
        field(v, "proc.exepath") == exe
    });
    check(&a, "Warning", &["T1552.004"], &[("proc.name", "sshd")]);
}

#[test]
fn evasion_a_parent_named_apt_is_not_a_package_manager() {
    // Any process with an ancestor named apt used to count as the package manager, which may
    // read /etc/shadow. Here `apt` is a copy of bash.
    let mut agent = agent();
    let d = TempDir::new("ev-apt");
    bash_ok(&format!(
        "cp /bin/bash {0}/apt && {0}/apt -c 'head -c0 /etc/shadow; true'",
        d.s()
    ));
    let a = alert(&mut agent, "Read sensitive file", |v| {
        field(v, "fd.name") == "/etc/shadow" && field(v, "proc.pname") == "apt"
    });
    check(&a, "Warning", &["T1003.008"], &[("proc.name", "head")]);
}

/// The kernel reads an `int` or `unsigned int` argument from the low 32 bits of its register
/// and ignores the rest. A raw syscall with the high bits set does what the plain one does; the
/// rules name the value the kernel used. Each call here is made through `syscall(2)` by the
/// node's python: fcntl(sock, F_DUPFD | 1 << 32, 0) onto a closed stdin, socket(AF_PACKET |
/// 1 << 32, SOCK_RAW, 0), prctl(PR_SET_NAME | 1 << 32, "kworker/0:9"), and ptrace(PTRACE_ATTACH,
/// pid | 1 << 32), which attaches to `pid` (its `long` is passed on as a pid_t): the alert must
/// name the process attached to, not a pid four billion above it.
#[test]
fn evasion_high_bits_above_a_32_bit_argument() {
    let mut agent = agent();
    let port = loopback_listener();
    let out = bash_ok(&format!(
        r#"timeout 10 /usr/bin/python3 -c '
import ctypes, os, socket
libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long
L = ctypes.c_long
HI = 1 << 32
s = socket.create_connection(("127.0.0.1", {port}))
os.close(0)
assert libc.syscall(L(72), L(s.fileno()), L(HI | 0), L(0)) == 0, "fcntl"
p = libc.syscall(L(41), L(HI | 17), L(3), L(0))
assert p >= 0, "socket %d" % ctypes.get_errno()
assert libc.syscall(L(157), L(HI | 15), ctypes.c_char_p(b"kworker/0:9"), L(0), L(0), L(0)) == 0, "prctl"
import subprocess
# The tracee holds none of our output open and dies with us: a tracer killed between the attach
# and the kill (by the timeout) would otherwise leave it stopped, holding the pipe of the test.
c = subprocess.Popen(["sleep", "30"], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
    stderr=subprocess.DEVNULL, preexec_fn=lambda: libc.prctl(1, 9))
try:
    assert libc.syscall(L(101), L(16), L(HI | c.pid), L(0), L(0)) == 0, "ptrace %d" % ctypes.get_errno()
    print(c.pid)
finally:
    c.kill()
' osprey-high-bits"#
    ));
    let traced = out.trim().lines().last().unwrap_or_default().to_string();
    let a = alert(&mut agent, "Reverse shell", |v| {
        field(v, "evt.type") == "fcntl" && field(v, "proc.cmdline").contains("osprey-high-bits")
    });
    check(&a, "Warning", &["T1059.004"], &[("fd.type", "ipv4")]);
    assert_eq!(field(&a, "fd.name"), format!("127.0.0.1:{port}"), "{a}");
    let a = alert(&mut agent, "Packet socket created", |v| {
        field(v, "proc.cmdline").contains("osprey-high-bits")
    });
    check(&a, "Notice", &["T1040"], &[("evt.arg.domain", "AF_PACKET")]);
    alert(&mut agent, "Process renamed to a system name", |v| {
        field(v, "proc.cmdline").contains("osprey-high-bits")
    });
    let a = alert(&mut agent, "PTRACE attached to process", |v| {
        field(v, "proc.cmdline").contains("osprey-high-bits")
    });
    assert_eq!(field(&a, "evt.arg.pid"), traced, "{a}");
}

/// A shell handed a connection without a dup2 for the Reverse shell rule to see: stdin,
/// stdout and stderr closed and three sockets connected straight onto 0, 1 and 2; and a
/// connection received from another process with SCM_RIGHTS onto 0 and 1, which no syscall the
/// fd table follows shows (the table still holds what 0 and 1 were before). Both raised no
/// alert at all before the kernel's descriptor table was read at exec.
#[test]
fn evasion_shell_started_on_a_connection_without_dup() {
    let mut agent = agent();
    let (direct, passed) = (loopback_listener(), loopback_listener());
    bash_ok(&format!(
        r#"timeout 10 /usr/bin/python3 -c '
import os, socket
for fd in (0, 1, 2):
    os.close(fd)
for fd in (0, 1, 2):
    s = socket.create_connection(("127.0.0.1", {direct}))
    assert s.fileno() == fd, s.fileno()
    os.set_inheritable(fd, True)
    s.detach()
os.execv("/bin/sh", ["sh", "-c", "sleep 1; echo osprey-nodup"])
' </dev/null >/dev/null 2>&1"#
    ));
    bash_ok(&format!(
        r#"timeout 10 /usr/bin/python3 -c '
import os, socket
parent, child = socket.socketpair()
if os.fork() == 0:
    for fd in (0, 1):
        os.close(fd)
    _, fds, _, _ = socket.recv_fds(child, 1, 2)
    assert fds == [0, 1], fds
    for fd in fds:
        os.set_inheritable(fd, True)
    os.execv("/bin/sh", ["sh", "-c", "sleep 1; echo osprey-scm-rights"])
c = socket.create_connection(("127.0.0.1", {passed}))
socket.send_fds(parent, [b"x"], [c.fileno(), c.fileno()])
os.wait()
' </dev/null >/dev/null 2>&1"#
    ));
    for (marker, port) in [("osprey-nodup", direct), ("osprey-scm-rights", passed)] {
        let a = alert(&mut agent, "Program started on a network connection", |v| {
            field(v, "proc.cmdline").contains(marker)
        });
        check(
            &a,
            "Warning",
            &["T1059.004"],
            &[("proc.stdin.type", "ipv4"), ("proc.stdout.type", "ipv4")],
        );
        assert!(
            field(&a, "proc.stdin.name").ends_with(&format!("->127.0.0.1:{port}")),
            "{a}"
        );
    }
}

#[test]
fn evasion_renamed_process_is_judged_by_its_executable() {
    // The node's own python renames its thread `sshd` (prctl PR_SET_NAME), then reads a key:
    // the name says sshd, the kernel's executable says python.
    let mut agent = agent();
    let d = TempDir::new("ev-prctl");
    std::fs::create_dir_all(d.join(".ssh")).unwrap();
    std::fs::write(d.join(".ssh/id_rsa"), "key").unwrap();
    bash_ok(&format!(
        "/usr/bin/python3 -c 'import ctypes; ctypes.CDLL(None).prctl(15, b\"sshd\", 0, 0, 0); \
         open(\"{}/.ssh/id_rsa\").read()'",
        d.s()
    ));
    let key = format!("{}/.ssh/id_rsa", d.s());
    let a = alert(&mut agent, "Read SSH private key", |v| {
        field(v, "fd.name") == key
    });
    assert!(
        field(&a, "proc.exepath").starts_with("/usr/bin/python3"),
        "{a}"
    );
}

#[test]
fn evasion_exec_from_dev_shm_through_a_descriptor() {
    // fexecve: the exec path is /proc/self/fd/N (or /dev/fd/N); the file the kernel loaded
    // is in /dev/shm, and proc.exepath says so.
    let mut agent = agent();
    let name = format!("osprey-ev-{}", std::process::id());
    let path = format!("/dev/shm/{name}");
    bash_ok(&format!(
        "cp /bin/true {path} && python3 -c 'import os; fd = os.open(\"{path}\", os.O_RDONLY); \
         os.execve(fd, [\"true\"], {{}})'; rm -f {path}"
    ));
    let a = alert(&mut agent, "Execution from /dev/shm", |v| {
        field(v, "proc.exepath") == path
    });
    assert!(
        field(&a, "proc.exepath_raw").starts_with("/proc/self/fd/")
            || field(&a, "proc.exepath_raw").starts_with("/dev/fd/"),
        "{a}"
    );
}

#[test]
fn evasion_mount_through_proc_self_exe_in_a_privileged_container() {
    // busybox's shell runs an applet it has no file for by exec'ing /proc/self/exe: the
    // process is named `exe`, which the runtime's own re-exec also is. The kernel's executable
    // is the container's busybox, not the node's runc.
    let mut agent = agent();
    let ran = run(
        &["--privileged", "--network", "none"],
        "PATH=/nonexistent; mount -t tmpfs osprey-ev /mnt; echo mounted",
    );
    assert!(ran.out.contains("mounted"), "{}", ran.out);
    let a = alert(&mut agent, "Mount in container", |v| {
        field(v, "container.id") == ran.id
    });
    // The process may have renamed itself after the applet (busybox does with prctl); what
    // the kernel loaded is the container's busybox either way.
    check(&a, "Error", &["T1611"], &[("proc.exepath", "/bin/busybox")]);
}

#[test]
fn evasion_binary_named_runc_in_a_container_is_not_the_runtime() {
    // A privileged container with the node's disk mounted copies the node's own mount(8) as
    // `runc` and runs it (chroot into the node's tree, still in the container): the name is the
    // runtime's, the file is even the node's, but it was executed from inside a container.
    let mut agent = agent();
    let dir = format!("/tmp/osprey-ev-runc-{}", std::process::id());
    let ran = run(
        &["--privileged", "--network", "none", "-v", "/:/host"],
        &format!(
            "mkdir -p /host{dir}/mnt && cp /host/usr/bin/mount /host{dir}/runc \
             && chroot /host {dir}/runc -t tmpfs osprey-ev {dir}/mnt && echo mounted"
        ),
    );
    let _ = std::fs::remove_dir_all(&dir);
    assert!(ran.out.contains("mounted"), "{}", ran.out);
    let a = alert(&mut agent, "Mount in container", |v| {
        field(v, "container.id") == ran.id && field(v, "proc.name") == "runc"
    });
    check(&a, "Error", &["T1611"], &[("evt.arg.type", "tmpfs")]);
}

/// agent/examples/uring: one file or network operation through an io_uring ring.
fn uring(args: &[&str]) -> String {
    support::run_example("uring", args)
}

/// A rule that shows every operation the test's ring tool submitted, with the fields rules use.
const URING_RULE: &str = r#"
- rule: Ring operation (test)
  desc: every operation agent/examples/uring submitted through a ring
  condition: >
    evt.type in (connect, accept4, sendto, recvfrom, splice) and evt.is_io_uring=true
    and proc.name=uring
  output: >
    ring op=%evt.io_uring_op type=%evt.type res=%evt.res fd=%fd.name sip=%fd.sip
    sport=%fd.sport l4=%fd.l4proto fd_in=%evt.arg.fd_in len=%evt.arg.len cmd=%proc.cmdline
  priority: NOTICE
"#;

#[test]
fn evasion_io_uring_operations_read_as_the_syscalls_they_stand_for() {
    // Opens, renames, unlinks, connects, accepts, sends, receives and splices submitted
    // through a ring never pass through the
    // syscall tracepoints; the default rules must still see them, with the kernel's own copy of
    // each path and the file the kernel opened. The tool makes none of these as syscalls, so
    // an alert naming it came from the ring. (The first rule an event matches alerts, as in
    // Falco: the test rule sees what no default rule took.)
    let d = TempDir::new("ev-uring");
    let rules = d.join("ring.yaml");
    std::fs::write(&rules, URING_RULE).unwrap();
    let mut agent = agent_with_extra(&rules);
    let from_ring = |v: &serde_json::Value| field(v, "proc.name") == "uring";

    uring(&["open", "/etc/shadow"]);
    let a = alert(&mut agent, "Read sensitive file", from_ring);
    check(&a, "Warning", &["T1003.008"], &[("fd.name", "/etc/shadow")]);
    // With a kernel submission thread the process makes no syscall for the request at all;
    // the thread belongs to the process, whose name the alert carries.
    uring(&["--sqpoll", "open", "/etc/gshadow"]);
    let a = alert(&mut agent, "Read sensitive file", |v| {
        from_ring(v) && field(v, "fd.name") == "/etc/gshadow"
    });
    check(&a, "Warning", &[], &[("fd.nameraw", "/etc/gshadow")]);

    // One batch: the open, then 17,000 accepts that never complete, all submitted before the
    // open's completion is posted, pushing its submission out of the 16,384 the agent holds.
    // The completion alone still says what was opened (before the fix: no alert at all).
    uring(&["flood-open", "/etc/shadow", "17000"]);
    let a = alert(&mut agent, "Read sensitive file", |v| {
        from_ring(v) && field(v, "proc.cmdline").contains("flood-open")
    });
    check(&a, "Warning", &[], &[("fd.name", "/etc/shadow")]);

    // Relative to a directory descriptor, and through a symlink: the file the kernel opened.
    uring(&["openat", "/etc", "gshadow"]);
    let a = alert(&mut agent, "Read sensitive file", |v| {
        from_ring(v) && field(v, "fd.nameraw") == "gshadow"
    });
    check(&a, "Warning", &[], &[("fd.name", "/etc/gshadow")]);
    let link = d.join("notes.txt");
    symlink("/etc/shadow", &link).unwrap();
    uring(&["open", link.to_str().unwrap()]);
    alert(&mut agent, "Read sensitive file", |v| {
        from_ring(v) && field(v, "fd.nameraw") == link.to_str().unwrap()
    });

    // History wiped through the ring: renamed away, then a new one deleted.
    let hist = d.join(".bash_history");
    std::fs::write(&hist, "id\n").unwrap();
    uring(&[
        "rename",
        hist.to_str().unwrap(),
        d.join("old").to_str().unwrap(),
    ]);
    let a = alert(&mut agent, "Delete or clear shell history", |v| {
        from_ring(v) && field(v, "evt.type") == "renameat2"
    });
    check(&a, "Warning", &["T1070.003"], &[]);
    std::fs::write(&hist, "id\n").unwrap();
    uring(&["unlink", hist.to_str().unwrap()]);
    alert(&mut agent, "Delete or clear shell history", |v| {
        from_ring(v) && field(v, "evt.type") == "unlinkat"
    });
    assert!(!hist.exists());

    // A connection: the address the ring was given and the socket it used.
    let port = loopback_listener();
    uring(&["connect", "127.0.0.1", &port.to_string()]);
    let a = alert(&mut agent, "Ring operation (test)", |v| {
        field(v, "evt.io_uring_op") == "CONNECT"
    });
    check(
        &a,
        "Notice",
        &[],
        &[
            ("evt.type", "connect"),
            ("evt.res", "SUCCESS"),
            ("fd.sip", "127.0.0.1"),
            ("fd.sport", &port.to_string()),
            ("fd.l4proto", "tcp"),
        ],
    );

    // Accept, send and receive on a loopback connection the tool makes, and a splice from a
    // file into a pipe: each reported as its syscall, with the descriptor it used.
    let out = uring(&["net"]);
    // (The accepts flood-open left pending were reported unfinished when it exited.)
    let of_net = |v: &serde_json::Value, op: &str| {
        field(v, "evt.io_uring_op") == op && field(v, "proc.cmdline").ends_with("uring net")
    };
    for op in ["ACCEPT", "SEND", "RECV"] {
        let a = alert(&mut agent, "Ring operation (test)", |v| of_net(v, op));
        let ty = match op {
            "ACCEPT" => "accept4",
            "SEND" => "sendto",
            _ => "recvfrom",
        };
        check(
            &a,
            "Notice",
            &[],
            &[
                ("evt.type", ty),
                ("evt.res", "SUCCESS"),
                ("fd.sip", "127.0.0.1"),
            ],
        );
    }
    let sent = alert(&mut agent, "Ring operation (test)", |v| of_net(v, "SEND"));
    assert_eq!(field(&sent, "evt.arg.len"), "11", "{sent} ({out})");
    uring(&["splice", "/etc/hostname"]);
    let a = alert(&mut agent, "Ring operation (test)", |v| {
        field(v, "evt.io_uring_op") == "SPLICE"
    });
    check(
        &a,
        "Notice",
        &[],
        &[("evt.type", "splice"), ("evt.res", "SUCCESS")],
    );
    assert!(field(&a, "fd.name").starts_with("/etc/hostname"), "{a}");
}

/// agent/examples/int80: one call, or two, through the 32-bit entry.
fn int80(args: &[&str]) -> String {
    support::run_example("int80", args)
}

/// The default rule on calls a 64-bit program makes through the 32-bit entry.
const BY_64: &str = "Syscall through the 32-bit entry by a 64-bit program";

#[test]
fn evasion_calls_through_the_32_bit_entry_are_the_calls_they_are() {
    // `int $0x80` from a 64-bit process runs the i386 call of eax's number with i386's
    // registers: open is 5 (x86_64's fstat), its path in ebx. The sensor read them as x86_64
    // calls and saw an fstat: /etc/shadow was read without an alert. Now the 32-bit entry's
    // calls are translated in the kernel, to the call, the arguments and, for socketcall, the
    // operation and the argument words in memory.
    let mut agent = agent();
    let from_tool = |v: &serde_json::Value| field(v, "proc.name") == "int80";
    // The agent found the entry on, and kept the one program that sees its calls (the
    // per-syscall events skip them: the next test).
    let log = agent.stderr();
    assert!(
        log.contains("sys_exit not attached per syscall: the kernel's 32-bit syscall entry is on"),
        "{log}"
    );

    // A rule on the call wins over the rule on the way it was made (the first match).
    int80(&["open", "/etc/shadow"]);
    let a = alert(&mut agent, "Read sensitive file", from_tool);
    check(&a, "Warning", &["T1003.008"], &[("fd.name", "/etc/shadow")]);
    // The kernel reads ebx, the low half of rbx: junk in the upper half is not the path.
    int80(&["open-high", "/etc/gshadow"]);
    let a = alert(&mut agent, "Read sensitive file", |v| {
        from_tool(v) && field(v, "fd.name") == "/etc/gshadow"
    });
    check(&a, "Warning", &[], &[("fd.nameraw", "/etc/gshadow")]);

    // Network calls no other rule wants: i386's own socket and connect, and the same through
    // socketcall, each read as the connect it is, and reported as made from 64-bit code.
    for how in ["connect", "socketcall"] {
        let port = loopback_listener();
        int80(&[how, "127.0.0.1", &port.to_string()]);
        let a = alert(&mut agent, BY_64, |v| {
            from_tool(v)
                && field(v, "evt.type") == "connect"
                && field(v, "proc.cmdline").contains(&format!("{how} "))
        });
        check(
            &a,
            "Warning",
            &["T1211"],
            &[("evt.res", "SUCCESS"), ("evt.is_ia32_from_64bit", "true")],
        );
        assert!(
            field(&a, "fd.name").ends_with(&format!("127.0.0.1:{port}")),
            "{a}"
        );
    }

    // The program switches its code to 32-bit mode first (a far return to segment 0x23), so
    // the call comes from 32-bit code: still a 64-bit program's.
    int80(&["compat-open", "/etc/hostname"]);
    let a = alert(&mut agent, BY_64, |v| {
        from_tool(v) && field(v, "proc.cmdline").contains("compat-open")
    });
    check(
        &a,
        "Warning",
        &[],
        &[
            ("evt.type", "open"),
            ("fd.name", "/etc/hostname"),
            ("evt.is_ia32_from_64bit", "false"),
        ],
    );
}

/// A 32-bit program with no libraries (an i386 ELF written here, 148 bytes): `socket` and
/// `connect` to 127.0.0.1:`port` through `int $0x80`, then `exit` with connect's result.
fn i386_connect_program(port: u16) -> Vec<u8> {
    const BASE: u32 = 0x0804_8000;
    const CODE: u32 = 52 + 32; // after the ELF header and the one program header
    let mut code: Vec<u8> = Vec::new();
    code.extend([0xb8, 0x67, 0x01, 0, 0]); // mov eax, 359 (socket)
    code.extend([0xbb, 2, 0, 0, 0]); // mov ebx, AF_INET
    code.extend([0xb9, 1, 0, 0, 0]); // mov ecx, SOCK_STREAM
    code.extend([0x31, 0xd2]); // xor edx, edx
    code.extend([0xcd, 0x80]); // int 0x80
    code.extend([0x89, 0xc3]); // mov ebx, eax (the socket)
    code.extend([0xb8, 0x6a, 0x01, 0, 0]); // mov eax, 362 (connect)
    let sockaddr_at = code.len() + 1; // mov ecx, &sockaddr: patched below
    code.extend([0xb9, 0, 0, 0, 0]);
    code.extend([0xba, 16, 0, 0, 0]); // mov edx, 16
    code.extend([0xcd, 0x80]); // int 0x80
    code.extend([0x89, 0xc3]); // mov ebx, eax (connect's result)
    code.extend([0xb8, 1, 0, 0, 0]); // mov eax, 1 (exit)
    code.extend([0xcd, 0x80]); // int 0x80
    while !code.len().is_multiple_of(4) {
        code.push(0x90);
    }
    let sockaddr = BASE + CODE + code.len() as u32;
    code[sockaddr_at..sockaddr_at + 4].copy_from_slice(&sockaddr.to_le_bytes());
    code.extend(2u16.to_le_bytes()); // sin_family AF_INET
    code.extend(port.to_be_bytes());
    code.extend([127, 0, 0, 1]);
    code.extend([0; 8]);
    let size = CODE + code.len() as u32;
    let mut elf: Vec<u8> = Vec::new();
    elf.extend([0x7f, b'E', b'L', b'F', 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0]); // 32-bit, LSB
    elf.extend(2u16.to_le_bytes()); // ET_EXEC
    elf.extend(3u16.to_le_bytes()); // EM_386
    elf.extend(1u32.to_le_bytes()); // version
    elf.extend((BASE + CODE).to_le_bytes()); // entry
    elf.extend(52u32.to_le_bytes()); // program headers
    elf.extend(0u32.to_le_bytes()); // no section headers
    elf.extend(0u32.to_le_bytes()); // flags
    for half in [52u16, 32, 1, 40, 0, 0] {
        // header size, program header size and count, section header size, count, names
        elf.extend(half.to_le_bytes());
    }
    for word in [1, 0, BASE, BASE, size, size, 5, 0x1000] {
        // PT_LOAD of the whole file at BASE, read and execute
        elf.extend(word.to_le_bytes());
    }
    assert_eq!(elf.len() as u32, CODE);
    elf.extend(code);
    elf
}

/// What a 32-bit program does through the entry is not an x86_64 program's `int $0x80`: the
/// rule on 64-bit programs stays quiet for it, and the call is still the call it is.
#[test]
fn evasion_a_32_bit_programs_calls_are_not_reported_as_a_64_bit_programs() {
    let d = TempDir::new("ev-i386");
    let rules = d.join("i386.yaml");
    std::fs::write(
        &rules,
        r#"
- rule: Connect by the 32-bit test program (test)
  desc: every connect of the i386 program the test writes
  condition: evt.type = connect and proc.name = conn32
  output: >
    connect fd=%fd.name res=%evt.res ia32=%evt.is_ia32 from64=%evt.is_ia32_from_64bit
    elf32=%proc.is_exe_32bit proc=%proc.name
  priority: NOTICE
"#,
    )
    .unwrap();
    let mut agent = agent_with_extra(&rules);
    let port = loopback_listener();
    let program = d.join("conn32");
    std::fs::write(&program, i386_connect_program(port)).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&program, std::fs::Permissions::from_mode(0o755)).unwrap();
    let out = support::output_within(
        &mut std::process::Command::new(&program),
        std::time::Duration::from_secs(10),
    );
    assert_eq!(
        out.status.code(),
        Some(0),
        "the i386 connect failed: {out:?}"
    );
    // The test's rule comes after the default ones: its alert says none of them matched.
    let a = alert(
        &mut agent,
        "Connect by the 32-bit test program (test)",
        |v| field(v, "proc.name") == "conn32",
    );
    check(
        &a,
        "Notice",
        &[],
        &[
            ("evt.is_ia32", "true"),
            ("evt.is_ia32_from_64bit", "false"),
            ("proc.is_exe_32bit", "true"),
            ("evt.res", "SUCCESS"),
        ],
    );
    assert!(
        field(&a, "fd.name").ends_with(&format!("127.0.0.1:{port}")),
        "{a}"
    );
}

/// Why `kernel_syscall_events: auto` attaches per syscall only where the 32-bit entry is off:
/// the kernel's `syscalls:sys_exit_NAME` events skip every call made through it. Forced on
/// here (`always`), an `int $0x80` open of /etc/shadow raises nothing, while a 64-bit open of
/// /etc/gshadow made after it alerts.
#[test]
fn evasion_calls_through_the_32_bit_entry_skip_per_syscall_events() {
    let mut agent = support::Agent::start(
        &["run", "--json", "--kernel-syscall-events", "always"],
        "osprey is running",
    );
    let from_tool = |v: &serde_json::Value| field(v, "proc.name") == "int80";
    assert!(agent.stderr().contains("go unseen"), "{}", agent.stderr());
    int80(&["open", "/etc/shadow"]);
    let out = support::output_within(
        std::process::Command::new("head").args(["-c0", "/etc/gshadow"]),
        std::time::Duration::from_secs(10),
    );
    assert!(out.status.success());
    alert(&mut agent, "Read sensitive file", |v| {
        field(v, "fd.name") == "/etc/gshadow" && field(v, "proc.name") == "head"
    });
    none_seen(&mut agent, "the 32-bit open of /etc/shadow", |v| {
        from_tool(v)
    });
}
