//! The sensor on the real kernel: runs `osprey trace` (root), does real things from real
//! processes, and asserts the exact events that come out.

mod support;

use std::{
    ffi::CString,
    net::{TcpListener, TcpStream},
    os::fd::AsRawFd,
    process::Command,
    time::Duration,
};

use serde_json::{Value, json};
use support::*;

const WAIT: Duration = Duration::from_secs(10);

fn trace(events: &str) -> Agent {
    Agent::start(&["trace", "--event", events], "tracing; Ctrl-C to stop")
}

fn me() -> u64 {
    std::process::id() as u64
}

#[test]
fn kernel_exec_of_short_process_carries_exe_args_and_parent() {
    let mut agent = trace("exec,exit,execve");
    let child = Command::new("/bin/true")
        .args(["--osprey-marker", "x y"])
        .spawn()
        .unwrap();
    let pid = child.id() as u64;
    let status = child.wait_with_output().unwrap().status;
    assert!(status.success());

    let exec = agent.expect("exec event of /bin/true", WAIT, |v| {
        kind(v) == "exec" && tgid(v) == pid
    });
    let true_path = std::fs::canonicalize("/bin/true").unwrap();
    let filename = exec["event"]["filename"].as_str().unwrap();
    assert!(
        filename == "/bin/true" || filename == true_path.to_str().unwrap(),
        "{filename}"
    );
    assert_eq!(
        exec["event"]["args"],
        json!(["/bin/true", "--osprey-marker", "x y"])
    );
    assert_eq!(exec["process"]["ppid"].as_u64(), Some(me()));
    assert_eq!(exec["ancestors"][0]["pid"].as_u64(), Some(me()));

    let execve = agent.expect("execve syscall", WAIT, |v| {
        syscall_name(v) == "execve" && tgid(v) == pid
    });
    assert_eq!(execve["event"]["ret"], 0);
    assert_eq!(
        arg(&execve, "argv")["value"],
        json!(["/bin/true", "--osprey-marker", "x y"])
    );

    // It exited microseconds later; its exit still names the program and its args.
    let exit = agent.expect("exit event", WAIT, |v| kind(v) == "exit" && tgid(v) == pid);
    assert_eq!(exit["event"]["status"], 0);
    assert_eq!(exit["process"]["args"][1], "--osprey-marker");
    assert!(exit["process"]["exe"].as_str().unwrap().ends_with("/true"));
}

#[test]
fn kernel_open_with_creat_trunc_and_failed_open() {
    let mut agent = trace("openat");
    let dir = std::env::temp_dir().join(format!("osprey-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("created.txt");
    let f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(&path)
        .unwrap();
    let fd = f.as_raw_fd() as i64;
    drop(f);
    let missing = dir.join("missing/nothing");
    assert!(std::fs::File::open(&missing).is_err());

    let path_s = path.to_str().unwrap().to_string();
    let open = agent.expect("openat of the created file", WAIT, |v| {
        syscall_name(v) == "openat"
            && tgid(v) == me()
            && arg(v, "filename")["value"]["raw"] == path_s
    });
    assert_eq!(open["event"]["ret"].as_i64(), Some(fd));
    assert_eq!(arg(&open, "filename")["value"]["resolved"], path_s);
    assert_eq!(arg(&open, "dfd")["value"], -100);
    let flags: Vec<&str> = arg(&open, "flags")["value"]["names"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f.as_str().unwrap())
        .collect();
    for f in ["O_WRONLY", "O_CREAT", "O_TRUNC"] {
        assert!(flags.contains(&f), "{f} in {flags:?}");
    }
    assert_eq!(arg(&open, "mode")["value"], 0o666);
    assert_eq!(open["process"]["pid"].as_u64(), Some(me()));

    let missing_s = missing.to_str().unwrap().to_string();
    let failed = agent.expect("failed openat", WAIT, |v| {
        syscall_name(v) == "openat" && arg(v, "filename")["value"]["raw"] == missing_s
    });
    assert_eq!(failed["event"]["ret"], -libc::ENOENT as i64);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn kernel_tcp_connect_and_accept_on_loopback() {
    let mut agent = trace("connect,accept,accept4,bind,listen,socket");
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let client = TcpStream::connect(("127.0.0.1", port)).unwrap();
    let client_fd = client.as_raw_fd() as i64;
    let client_port = client.local_addr().unwrap().port();
    let (_server, peer) = listener.accept().unwrap();
    assert_eq!(peer.port(), client_port);

    let connect = agent.expect("connect to the listener", WAIT, |v| {
        syscall_name(v) == "connect"
            && tgid(v) == me()
            && arg(v, "uservaddr")["value"]["port"] == port
    });
    assert_eq!(connect["event"]["ret"], 0);
    assert_eq!(arg(&connect, "fd")["value"].as_i64(), Some(client_fd));
    assert_eq!(
        arg(&connect, "uservaddr")["value"],
        json!({"family": "inet", "ip": "127.0.0.1", "port": port})
    );
    let accept = agent.expect("accept with the peer address", WAIT, |v| {
        (syscall_name(v) == "accept4" || syscall_name(v) == "accept") && tgid(v) == me()
    });
    assert_eq!(
        arg(&accept, "upeer_sockaddr")["value"],
        json!({"family": "inet", "ip": "127.0.0.1", "port": client_port})
    );
    let bind = agent.expect("bind", WAIT, |v| {
        syscall_name(v) == "bind" && tgid(v) == me()
    });
    assert_eq!(arg(&bind, "umyaddr")["value"]["ip"], "127.0.0.1");
    let socket = agent.expect("socket", WAIT, |v| {
        syscall_name(v) == "socket" && tgid(v) == me()
    });
    assert_eq!(arg(&socket, "family")["value"]["name"], "AF_INET");

    // IPv6 and unix addresses decode too.
    let l6 = TcpListener::bind("[::1]:0").unwrap();
    let p6 = l6.local_addr().unwrap().port();
    let _c6 = TcpStream::connect(("::1", p6)).unwrap();
    agent.expect("connect to [::1]", WAIT, |v| {
        syscall_name(v) == "connect"
            && arg(v, "uservaddr")["value"] == json!({"family": "inet", "ip": "::1", "port": p6})
    });
    let sock = std::env::temp_dir().join(format!("osprey-{}.sock", std::process::id()));
    let _ = std::fs::remove_file(&sock);
    let _ul = std::os::unix::net::UnixListener::bind(&sock).unwrap();
    let _uc = std::os::unix::net::UnixStream::connect(&sock).unwrap();
    let sock_s = sock.to_str().unwrap().to_string();
    agent.expect("connect to a unix socket", WAIT, |v| {
        syscall_name(v) == "connect" && arg(v, "uservaddr")["value"]["path"] == sock_s
    });
    let _ = std::fs::remove_file(&sock);
}

#[test]
fn kernel_unshare_mount_namespace() {
    let mut agent = trace("unshare,exec");
    let out = Command::new("unshare")
        .args(["--mount", "/bin/true"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let ev = agent.expect("unshare(CLONE_NEWNS)", WAIT, |v| {
        syscall_name(v) == "unshare"
    });
    assert_eq!(ev["event"]["ret"], 0);
    let names = &arg(&ev, "unshare_flags")["value"]["names"];
    assert!(
        names.as_array().unwrap().contains(&json!("CLONE_NEWNS")),
        "{names}"
    );
    assert!(ev["process"]["exe"].as_str().unwrap().ends_with("unshare"));
    // The header is taken at syscall exit, so it already shows the new namespace; the
    // program exec'd afterwards runs there too, and neither is ours.
    let ours = std::fs::read_link("/proc/self/ns/mnt").unwrap();
    let ours: u64 = ours.to_str().unwrap()[5..]
        .trim_end_matches(']')
        .parse()
        .unwrap();
    let after = ev["event"]["mnt_ns"].as_u64().unwrap();
    assert_ne!(after, ours);
    let exec = agent.expect("exec of /bin/true in the new namespace", WAIT, |v| {
        kind(v) == "exec" && v["event"]["filename"] == "/bin/true" && tgid(v) == ev["event"]["tgid"]
    });
    assert_eq!(exec["event"]["mnt_ns"].as_u64().unwrap(), after);
}

#[test]
fn kernel_ptrace_attach_to_child() {
    let mut agent = trace("ptrace");
    let mut child = Command::new("sleep").arg("30").spawn().unwrap();
    let pid = child.id() as i32;
    // SAFETY: attaching to and detaching from our own child.
    let r = unsafe { libc::ptrace(libc::PTRACE_ATTACH, pid, 0, 0) };
    assert_eq!(r, 0, "{}", std::io::Error::last_os_error());
    let mut status = 0;
    unsafe { libc::waitpid(pid, &mut status, 0) };
    unsafe { libc::ptrace(libc::PTRACE_DETACH, pid, 0, 0) };
    child.kill().unwrap();
    child.wait().unwrap();
    let ev = agent.expect("ptrace attach", WAIT, |v| {
        syscall_name(v) == "ptrace" && arg(v, "request")["value"]["name"] == "PTRACE_ATTACH"
    });
    assert_eq!(tgid(&ev), me());
    assert_eq!(arg(&ev, "pid")["value"], pid as i64);
    assert_eq!(ev["event"]["ret"], 0);
}

#[test]
fn kernel_setuid_in_child() {
    use std::os::unix::process::CommandExt;
    let mut agent = trace("setuid,exec");
    let child = Command::new("/bin/true")
        .uid(65534)
        .gid(65534)
        .spawn()
        .unwrap();
    let pid = child.id() as u64;
    child.wait_with_output().unwrap();
    let ev = agent.expect("setuid(65534)", WAIT, |v| {
        syscall_name(v) == "setuid" && tgid(v) == pid
    });
    assert_eq!(arg(&ev, "uid")["value"], 65534);
    assert_eq!(ev["event"]["ret"], 0);
    // The header is taken at syscall exit: the ids are the new ones.
    assert_eq!(ev["event"]["uid"], 65534);
    assert_eq!(ev["event"]["euid"], 65534);
    let exec = agent.expect("exec as nobody", WAIT, |v| {
        kind(v) == "exec" && tgid(v) == pid
    });
    assert_eq!(exec["process"]["uid"], 65534);
}

#[test]
fn kernel_memfd_create() {
    let mut agent = trace("memfd_create");
    let name = CString::new("osprey-fileless").unwrap();
    // SAFETY: a valid C string.
    let fd = unsafe { libc::memfd_create(name.as_ptr(), libc::MFD_CLOEXEC) };
    assert!(fd >= 0);
    let ev = agent.expect("memfd_create", WAIT, |v| {
        syscall_name(v) == "memfd_create" && tgid(v) == me()
    });
    assert_eq!(arg(&ev, "uname")["value"], "osprey-fileless");
    assert_eq!(arg(&ev, "flags")["value"]["names"], json!(["MFD_CLOEXEC"]));
    assert_eq!(ev["event"]["ret"].as_i64(), Some(fd as i64));
    // The test runs as root: its events carry CAP_SYS_ADMIN in the effective set.
    let sys_admin = 1u64 << 21;
    assert_ne!(
        ev["event"]["cap_effective"].as_u64().unwrap() & sys_admin,
        0
    );
    unsafe { libc::close(fd) };
}

#[test]
fn kernel_trace_filters_by_process_name() {
    let mut agent = Agent::start(
        &["trace", "--event", "exec", "--comm", "env"],
        "tracing; Ctrl-C to stop",
    );
    Command::new("/bin/true").status().unwrap();
    Command::new("/usr/bin/env").arg("true").status().unwrap();
    let ev = agent.expect("exec of env", WAIT, |v| kind(v) == "exec");
    assert!(ev["event"]["filename"].as_str().unwrap().ends_with("/env"));
    let seen = agent.collect_for(Duration::from_millis(500));
    assert!(
        seen.iter().all(|v: &Value| v["event"]["comm"] == "env"
            || v["process"]["exe"].as_str().unwrap_or("").ends_with("/env")),
        "only env's events: {seen:?}"
    );
}

#[test]
fn kernel_without_capabilities_names_the_missing_ones() {
    require_root();
    let out = Command::new("setpriv")
        .args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            OSPREY,
            "trace",
        ])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("missing capabilities CAP_BPF and CAP_PERFMON"),
        "{stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
}

#[test]
fn kernel_trace_rejects_unknown_event_names() {
    let out = Command::new(OSPREY)
        .args(["trace", "--event", "opneat"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr.contains("unknown event `opneat`") && stderr.contains("openat"),
        "{stderr}"
    );
}

/// The kernel's program types of the agent's loaded programs (`prog_type` in
/// `/proc/PID/fdinfo`: 17 raw tracepoint, 26 tracing).
fn program_types(pid: u32) -> Vec<u32> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .flatten()
    {
        let link = std::fs::read_link(e.path()).unwrap_or_default();
        if link.to_str() != Some("anon_inode:bpf-prog") {
            continue;
        }
        let info = std::fs::read_to_string(format!(
            "/proc/{pid}/fdinfo/{}",
            e.file_name().to_string_lossy()
        ))
        .unwrap_or_default();
        let ty = info
            .lines()
            .find_map(|l| l.strip_prefix("prog_type:"))
            .and_then(|t| t.trim().parse().ok())
            .unwrap_or(0);
        out.push(ty);
    }
    out
}

/// Whether this kernel is at least `since` and has kernel BTF.
fn kernel_since(since: (u32, u32)) -> bool {
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap();
    let mut v = release
        .split(|c: char| !c.is_ascii_digit())
        .map(|p| p.parse::<u32>().unwrap_or(0));
    let version = (v.next().unwrap_or(0), v.next().unwrap_or(0));
    version >= since && std::path::Path::new("/sys/kernel/btf/vmlinux").exists()
}

/// The ways `sys_exit` reads kernel memory (plain loads in its BTF tracepoint form, the path
/// walks' objects too through casts where the kernel has `bpf_rdonly_cast`, helper calls in
/// its raw form), and its per-syscall form in both of its own ways, give the same record: credentials and capabilities of a process that
/// dropped them, its comm, cgroup and mount namespace, a file opened through a descriptor
/// table too big to be the one embedded in `files_struct`, a file on another mount, and a
/// relative path that failed, resolved from the working directory the kernel holds. Each form
/// must be the one taken where the kernel allows it.
#[test]
fn kernel_typed_and_helper_reads_agree() {
    let dir = std::env::temp_dir().join(format!("osprey-typed-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("rel.txt"), "x\n").unwrap();
    let dir_s = dir.to_str().unwrap().to_string();
    let rel_ino = {
        use std::os::unix::fs::MetadataExt;
        std::fs::metadata(dir.join("rel.txt")).unwrap().ino()
    };
    let host_mnt_ns = std::fs::metadata("/proc/self/ns/mnt").map(|m| {
        use std::os::unix::fs::MetadataExt;
        m.ino()
    });
    // Our cgroup v2 directory's inode number: the cgroup id (where v2 is at /sys/fs/cgroup).
    let cgroup_id = std::fs::read_to_string("/proc/self/cgroup")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("0::"))
                .map(|p| format!("/sys/fs/cgroup{p}"))
        })
        .and_then(|p| std::fs::metadata(p).ok())
        .map(|m| {
            use std::os::unix::fs::MetadataExt;
            m.ino()
        });
    let mut records = Vec::new();
    const OFF: &str = "--kernel-syscall-events=off";
    const PER_SYSCALL: &str = "--kernel-syscall-events=always";
    for (form, says, since, args) in [
        (
            "BTF tracepoint with casts",
            "sys_exit attached as a BTF tracepoint with casts",
            (6, 2),
            vec!["trace", "--event", "openat", OFF],
        ),
        (
            "BTF tracepoint",
            "sys_exit attached as a BTF tracepoint:",
            (5, 11),
            vec!["trace", "--event", "openat", OFF, "--no-kernel-btf-casts"],
        ),
        (
            "raw tracepoint",
            "sys_exit attached as a raw tracepoint",
            (0, 0),
            vec![
                "trace",
                "--event",
                "openat",
                OFF,
                "--no-kernel-btf-tracepoint",
            ],
        ),
        // Forced per syscall (this host's 32-bit entry may be on; nothing here uses it).
        (
            "syscall events with casts",
            "syscalls wanted: other syscalls run no program; registers, credentials, namespaces, \
             descriptor table, and path walks read with plain loads, with casts",
            (6, 2),
            vec!["trace", "--event", "openat", PER_SYSCALL],
        ),
        (
            "syscall events",
            "syscalls wanted: other syscalls run no program; registers, credentials, namespaces \
             and descriptor table read with plain loads; path walks with a helper call per \
             object (no casts: kernel_btf_casts or kernel_btf_tracepoint is off)",
            (5, 15),
            vec![
                "trace",
                "--event",
                "openat",
                PER_SYSCALL,
                "--no-kernel-btf-casts",
            ],
        ),
    ] {
        let mut agent = Agent::start(&args, "tracing; Ctrl-C to stop");
        let log = agent.stderr();
        if since == (0, 0) || kernel_since(since) {
            assert!(log.contains(says), "{form}: {log}");
        }
        let tracing_programs = program_types(agent.pid())
            .iter()
            .filter(|&&ty| ty == 26)
            .count();
        if log.contains("sys_exit attached as a BTF tracepoint") {
            assert_eq!(tracing_programs, 1, "{form}: one BTF tracepoint loaded");
        } else {
            assert_eq!(tracing_programs, 0, "{form}: no BTF tracepoint loaded");
        }
        // Descriptors 3 to 72 inherited: cat's open returns 73, past the 64 of the table
        // embedded in files_struct.
        let out = output_within(
            Command::new("bash").current_dir(&dir).args([
                "-c",
                "for i in $(seq 3 72); do eval \"exec $i</dev/null\"; done; \
                 exec setpriv --reuid=65534 --regid=65534 --clear-groups \
                 cat rel.txt /dev/null missing/nothing",
            ]),
            Duration::from_secs(60),
        );
        assert_eq!(String::from_utf8_lossy(&out.stdout), "x\n");
        let opened = agent.expect("cat's open of rel.txt", WAIT, |v| {
            syscall_name(v) == "openat" && arg(v, "filename")["value"]["raw"] == "rel.txt"
        });
        let other_mount = agent.expect("cat's open of /dev/null", WAIT, |v| {
            syscall_name(v) == "openat"
                && v["event"]["comm"] == "cat"
                && arg(v, "filename")["value"]["raw"] == "/dev/null"
        });
        assert_eq!(other_mount["event"]["file"]["path"], "/dev/null", "{form}");
        let failed = agent.expect("cat's open of missing/nothing", WAIT, |v| {
            syscall_name(v) == "openat" && arg(v, "filename")["value"]["raw"] == "missing/nothing"
        });
        let e = &opened["event"];
        assert_eq!(e["ret"], 73, "{form}: {opened}");
        // The path, inode and file system the kernel's own walk of the file found (userspace
        // would name it from the path string alone).
        assert_eq!(e["file"]["path"], format!("{dir_s}/rel.txt"), "{form}");
        assert_eq!(e["file"]["ino"].as_u64(), Some(rel_ino), "{form}: {opened}");
        assert!(e["file"]["fs_magic"].as_u64().unwrap_or(0) != 0, "{form}");
        assert_eq!(e["file"]["of"], "returned", "{form}");
        for id in ["uid", "euid", "gid", "egid"] {
            assert_eq!(e[id], 65534, "{form}: {id}");
        }
        assert_eq!(e["comm"], "cat", "{form}");
        if let Some(id) = cgroup_id {
            assert_eq!(e["cgroup_id"].as_u64(), Some(id), "{form}: {opened}");
        }
        // Root's capabilities are gone once its ids are not 0.
        assert_eq!(e["cap_effective"], 0, "{form}");
        assert_eq!(e["cap_permitted"], 0, "{form}");
        assert_eq!(
            e["mnt_ns"].as_u64(),
            host_mnt_ns.as_ref().ok().copied(),
            "{form}"
        );
        let f = &failed["event"];
        assert_eq!(f["ret"], -libc::ENOENT as i64, "{form}");
        assert_eq!(
            arg(&failed, "filename")["value"]["resolved"],
            format!("{dir_s}/missing/nothing"),
            "{form}"
        );
        records.push((opened, failed, other_mount));
    }
    // Field by field, the forms agree (but for times and the process's ids).
    let pick = |v: &Value| {
        let e = &v["event"];
        json!([
            e["uid"],
            e["euid"],
            e["gid"],
            e["egid"],
            e["cap_effective"],
            e["cap_permitted"],
            e["mnt_ns"],
            e["cgroup_id"],
            e["comm"],
            e["ret"],
            e["file"],
            e["args"]
        ])
    };
    for r in &records[1..] {
        assert_eq!(pick(&records[0].0), pick(&r.0));
        assert_eq!(pick(&records[0].1), pick(&r.1));
        assert_eq!(pick(&records[0].2)[10], pick(&r.2)[10]);
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

/// The `READER` map's value (when the agent's reader will next look at the ring buffer,
/// boot-time ns) of the agent process `pid`, read with bpftool.
fn reader_next_look(pid: u32) -> u64 {
    let map_id = bpf_map_id(pid, "READER").expect("the agent's READER map");
    let out = Command::new("bpftool")
        .args([
            "-j", "map", "lookup", "id", &map_id, "key", "0", "0", "0", "0",
        ])
        .output()
        .unwrap();
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    if let Some(n) = v["formatted"]["value"].as_u64() {
        return n;
    }
    // Without BTF: the value's bytes, little-endian, as hex strings.
    let bytes: Vec<u8> = v["value"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| u8::from_str_radix(b.as_str().unwrap().trim_start_matches("0x"), 16).unwrap())
        .collect();
    u64::from_le_bytes(bytes.try_into().unwrap())
}

fn boot_clock_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: a valid clock id and out pointer.
    unsafe { libc::clock_gettime(libc::CLOCK_BOOTTIME, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// The reader tells the kernel programs, through its mapping of `READER`, when it will next
/// look at the ring buffer by itself (they wake it only when that is more than two
/// milliseconds away), and keeps it current: it looks at least every 8 ms (a quarter
/// millisecond more allowed for its scheduling), writing the time before each sleep. A lone event after a quiet spell still comes.
#[test]
fn kernel_reader_says_when_it_looks_next() {
    let mut agent = trace("openat");
    // A quiet spell: the reader backs off to its longest sleep.
    std::thread::sleep(Duration::from_millis(300));
    let before = boot_clock_ns();
    let next = reader_next_look(agent.pid());
    let after = boot_clock_ns();
    // Written within the last second (by the reader's latest sleep or wake-up), and no
    // further ahead than its longest sleep with its slack (8.25 ms) from now.
    assert!(
        next + 1_000_000_000 > before && next <= after + 8_250_000,
        "READER {next}, boot clock {before}..{after}"
    );
    let path = std::env::temp_dir().join(format!("osprey-lone-{}", std::process::id()));
    std::fs::write(&path, "x").unwrap();
    let p = path.to_str().unwrap().to_string();
    agent.expect("the lone open", WAIT, |v| {
        syscall_name(v) == "openat" && tgid(v) == me() && arg(v, "filename")["value"]["raw"] == p
    });
    std::fs::remove_file(&path).unwrap();
}

/// A chrooted process's file is named as the process sees it: the kernel's walk of the file
/// stops at the task's root (`task->fs->root`), not at the node's. A walk that took a wrong
/// root would name it from the node's `/`. A file outside the chroot, reached through a
/// directory opened before it, is named in its file system and flagged outside the root: the
/// walk does not read the root mount's own root, and finds the file outside at the top of the
/// file system instead.
#[test]
fn kernel_walk_stops_at_a_chroot() {
    let mut agent = trace("openat");
    let tmp = std::env::temp_dir();
    let dir = tmp.join(format!("osprey-chroot-{}", std::process::id()));
    std::fs::create_dir_all(dir.join("etc")).unwrap();
    std::fs::write(dir.join("etc/jailed.txt"), "x").unwrap();
    let escaped = format!("osprey-escaped-{}.txt", std::process::id());
    std::fs::write(tmp.join(&escaped), "x").unwrap();
    let root = CString::new(dir.to_str().unwrap()).unwrap();
    let outer = CString::new(tmp.to_str().unwrap()).unwrap();
    let inside = CString::new("/etc/jailed.txt").unwrap();
    let outside = CString::new(escaped.as_str()).unwrap();
    // SAFETY: the child makes only async-signal-safe calls (open, chroot, openat, _exit)
    // before it exits; the parent waits for it.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork: {}", std::io::Error::last_os_error());
    if pid == 0 {
        unsafe {
            let above = libc::open(outer.as_ptr(), libc::O_RDONLY | libc::O_DIRECTORY);
            if above < 0 || libc::chroot(root.as_ptr()) != 0 {
                libc::_exit(2);
            }
            let fd = libc::open(inside.as_ptr(), libc::O_RDONLY);
            let out = libc::openat(above, outside.as_ptr(), libc::O_RDONLY);
            libc::_exit(if fd >= 0 && out >= 0 { 0 } else { 3 });
        }
    }
    let mut status = 0;
    // SAFETY: our child, a valid out pointer.
    unsafe { libc::waitpid(pid, &mut status, 0) };
    assert!(
        libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
        "the chrooted child failed: {status:#x}"
    );
    let opened = agent.expect("the chrooted open", WAIT, |v| {
        syscall_name(v) == "openat"
            && tgid(v) == pid as u64
            && arg(v, "filename")["value"]["raw"] == "/etc/jailed.txt"
    });
    let file = &opened["event"]["file"];
    assert_eq!(file["path"], "/etc/jailed.txt", "{file}");
    assert_eq!(file.get("outside_root"), None, "{file}");
    let escaped_open = agent.expect("the open outside the chroot", WAIT, |v| {
        syscall_name(v) == "openat"
            && tgid(v) == pid as u64
            && arg(v, "filename")["value"]["raw"] == escaped.as_str()
    });
    let file = &escaped_open["event"]["file"];
    assert_eq!(
        file["path"],
        tmp.join(&escaped).to_str().unwrap(),
        "named in its file system: {file}"
    );
    assert_eq!(file["outside_root"], true, "{file}");
    std::fs::remove_dir_all(&dir).unwrap();
    std::fs::remove_file(tmp.join(&escaped)).unwrap();
}

#[test]
fn kernel_32_bit_entry_calls_are_translated_and_never_read_as_other_calls() {
    let mut agent = trace("open,close");
    let tool = example("int80");
    // i386 read (3) of 0 bytes from stdin, with 1000 in rdi: to a sensor reading it as an
    // x86_64 call, close(1000), which would make the descriptor table forget descriptor 1000.
    let forger = Command::new(&tool)
        .args(["read-as-close", "1000"])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let forger_pid = forger.id() as u64;
    assert!(forger.wait_with_output().unwrap().status.success());
    // i386 open (5, x86_64's fstat), after it: reported as the open it is.
    let child = Command::new(&tool)
        .args(["open", "/etc/hostname"])
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let pid = child.id() as u64;
    assert!(child.wait_with_output().unwrap().status.success());
    let open = agent.expect("the i386 open, as open", WAIT, |v| {
        syscall_name(v) == "open" && tgid(v) == pid
    });
    assert_eq!(open["event"]["ia32"], true, "{open}");
    assert_eq!(
        arg(&open, "filename")["value"]["raw"],
        "/etc/hostname",
        "{open}"
    );
    assert!(open["event"]["ret"].as_i64().unwrap() >= 0, "{open}");
    // The forger's records came before the open's (one ring, written in order).
    let forged: Vec<_> = agent
        .seen
        .iter()
        .filter(|v| syscall_name(v) == "close" && tgid(v) == forger_pid)
        .filter(|v| arg(v, "fd")["value"] == 1000)
        .collect();
    assert!(forged.is_empty(), "an i386 read read as close: {forged:?}");
}
