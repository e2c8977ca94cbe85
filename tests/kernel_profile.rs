//! Syscall profiles with real containers (podman + runc) and the real agent, as root:
//! `kill` kills from the kernel and what it prevents, `alert` with rate limiting, `allow`
//! without any record, the Debian seccomp profile imported in audit mode, record → enforce.
//!
//! The tests take turns (one agent at a time): each agent's programs judge every task, and
//! the containers are told apart by name, so nothing leaks between tests, but two agents on
//! two shared cores would make the timing assertions noisy.

mod support;

use std::{
    io::Read,
    net::TcpListener,
    path::{Path, PathBuf},
    process::{Command, Output},
    sync::{
        Arc, Mutex,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use serde_json::Value;
use support::*;

const WAIT: Duration = Duration::from_secs(15);
static TURN: Mutex<()> = Mutex::new(());

fn turn() -> std::sync::MutexGuard<'static, ()> {
    TURN.lock().unwrap_or_else(|e| e.into_inner())
}

/// `localhost/busybox:test`, imported from the host's static busybox when missing.
fn image() -> &'static str {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let have = Command::new("podman")
            .args(["image", "exists", "localhost/busybox:test"])
            .status()
            .expect("podman is installed (cargo xtask test installs it)");
        if have.success() {
            return;
        }
        let dir = std::env::temp_dir().join(format!("osprey-prof-rootfs-{}", std::process::id()));
        let script = format!(
            "set -e; rm -rf {d}; mkdir -p {d}/r/bin {d}/r/etc {d}/r/tmp; cp /bin/busybox {d}/r/bin/; \
             ln -s busybox {d}/r/bin/sh; tar -C {d}/r -cf {d}/r.tar .; \
             podman import {d}/r.tar localhost/busybox:test; rm -rf {d}",
            d = dir.display()
        );
        let out = Command::new("bash").arg("-c").arg(&script).output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    });
    "localhost/busybox:test"
}

fn name(test: &str) -> String {
    format!("osprey-prof-{test}-{}", std::process::id())
}

/// `podman run --rm --runtime runc --name NAME [extra] busybox sh -c SCRIPT`.
fn podman(name: &str, extra: &[&str], script: &str) -> Output {
    let mut c = Command::new("podman");
    c.args(["run", "--rm", "--runtime", "runc", "--name", name]);
    if !extra.iter().any(|a| a.starts_with("--network")) {
        c.args(["--network", "none"]);
    }
    c.args(extra).args([image(), "/bin/sh", "-c", script]);
    c.output().expect("podman run")
}

struct Dir(PathBuf);

impl Dir {
    fn new(test: &str) -> Dir {
        let p = std::env::temp_dir().join(name(test));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap();
        Dir(p)
    }
    fn join(&self, f: &str) -> PathBuf {
        self.0.join(f)
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// [`podman`] on the host's network, without seccomp, with agent/examples/`tool` (built beside
/// this test binary) at /ex/`tool` and the host's libraries it links.
fn podman_with_example(name: &str, tool: &str, script: &str) -> Output {
    let ex = example(tool);
    let mount = format!("{}:/ex/{tool}:ro", ex.display());
    podman(
        name,
        &[
            "--network",
            "host",
            "--security-opt",
            "seccomp=unconfined",
            "-v",
            &mount,
            "-v",
            "/lib:/lib:ro",
            "-v",
            "/lib64:/lib64:ro",
        ],
        script,
    )
}

fn agent_with(rules: &Path) -> Agent {
    Agent::start(
        &["run", "--json", "--rules", rules.to_str().unwrap()],
        "osprey is running",
    )
}

fn profile_alerts<'a>(seen: &'a [Value], profile: &str) -> Vec<&'a Value> {
    seen.iter()
        .filter(|v| v["rule"] == format!("Syscall profile {profile}").as_str())
        .collect()
}

/// Sum over CPUs of the agent's kernel counter `index`, read with bpftool from the COUNTERS
/// map that the agent process `pid` holds (its map fds name their ids in /proc fdinfo).
fn kernel_counter(pid: u32, index: u32) -> u64 {
    let id = bpf_map_id(pid, "COUNTERS").expect("the agent's COUNTERS map");
    let out = Command::new("bpftool")
        .args(["-j", "map", "lookup", "id", &id, "key"])
        .args(index.to_le_bytes().iter().map(|b| b.to_string()))
        .output()
        .unwrap();
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    v["values"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            let bytes: Vec<u8> = c["value"]
                .as_array()
                .unwrap()
                .iter()
                .map(|b| {
                    let s = b.as_str().unwrap();
                    u8::from_str_radix(s.trim_start_matches("0x"), 16).unwrap()
                })
                .collect();
            u64::from_le_bytes(bytes[..8].try_into().unwrap())
        })
        .sum()
}

/// A loopback listener on the host that counts the connections it accepts.
fn listener() -> (u16, Arc<AtomicUsize>) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let n = Arc::new(AtomicUsize::new(0));
    let n2 = n.clone();
    std::thread::spawn(move || {
        for mut s in l.incoming().flatten() {
            n2.fetch_add(1, Ordering::SeqCst);
            let mut b = Vec::new();
            let _ = s.read_to_end(&mut b);
        }
    });
    (port, n)
}

#[test]
fn kernel_profile_kill_on_socket_stops_the_connection_before_it_is_made() {
    let _t = turn();
    let dir = Dir::new("socket");
    let (port, accepted) = listener();
    let cname = name("socket");
    // The same workload under `alert` first: it connects, so the listener works and the
    // later absence of a connection is the kill's doing.
    let rules = dir.join("p.yaml");
    let write = |action: &str| {
        std::fs::write(
            &rules,
            format!(
                "- profile: no-sockets\n  scope:\n    container: {cname}\n  default: allow\n  syscalls:\n    - names: [socket]\n      action: {action}\n"
            ),
        )
        .unwrap()
    };
    write("alert");
    // nc is the shell's child: its status shows how it ended (128 + 9 for SIGKILL).
    let script = format!("sleep 1; echo hello | nc 127.0.0.1 {port}; echo nc=$?");
    {
        let mut agent = agent_with(&rules);
        let out = podman(&cname, &["--network", "host"], &script);
        assert_eq!(out.status.code(), Some(0), "{out:?}");
        assert!(
            String::from_utf8_lossy(&out.stdout).contains("nc=0"),
            "{out:?}"
        );
        let a = agent.expect("an alert verdict on socket", WAIT, |v| {
            v["rule"] == "Syscall profile no-sockets"
        });
        assert_eq!(a["priority"], "Warning");
        assert_eq!(a["output_fields"]["profile.verdict"], "alert");
        assert_eq!(a["output_fields"]["evt.type"], "socket");
    }
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(accepted.load(Ordering::SeqCst), 1, "control run connected");

    write("kill");
    let mut agent = agent_with(&rules);
    let out = podman(&cname, &["--network", "host"], &script);
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("nc=137"),
        "nc died by SIGKILL: {out:?}"
    );
    let a = agent.expect("a kill verdict on socket", WAIT, |v| {
        v["rule"] == "Syscall profile no-sockets"
    });
    assert_eq!(a["priority"], "Critical");
    let f = &a["output_fields"];
    assert_eq!(f["profile.name"], "no-sockets");
    assert_eq!(f["profile.verdict"], "kill");
    assert_eq!(f["profile.action_taken"], "killed");
    assert_eq!(f["evt.type"], "socket");
    // busybox runs its applets through /proc/self/exe: comm is `exe`, argv says nc.
    assert!(
        f["proc.cmdline"]
            .as_str()
            .is_some_and(|c| c.contains(&format!("127.0.0.1 {port}"))),
        "{a}"
    );
    assert_eq!(f["container.name"], cname.as_str());
    assert!(
        f["container.image"]
            .as_str()
            .is_some_and(|i| i.contains("busybox:test")),
        "{a}"
    );
    assert!(
        a["output"].as_str().unwrap().contains("verdict=kill"),
        "{a}"
    );
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(
        accepted.load(Ordering::SeqCst),
        1,
        "the killed process never connected"
    );
}

/// A ring's request is judged as the syscall it stands for. `IORING_OP_CONNECT` makes a
/// connection with no connect(2) for `sys_enter` to see: before requests were judged at
/// submission, agent/examples/uring connected from a container whose profile kills `connect`
/// and exited 0, with no verdict at all. Both ways of submitting: `io_uring_enter` from the
/// process, and the ring's own kernel-side thread (SQPOLL), which belongs to the process. And
/// an opcode the sensor does not report, `IORING_OP_MKDIRAT`, which made its directory past a
/// profile that kills mkdirat: judged as that syscall, without its arguments. The container runs without a seccomp filter, as a Kubernetes pod does by default, so the
/// ring can be set up at all.
#[test]
fn kernel_profile_judges_io_uring_requests_as_the_syscalls_they_stand_for() {
    let _t = turn();
    let dir = Dir::new("uring");
    let (port, _) = listener();
    let cname = name("uring");
    let rules = dir.join("p.yaml");
    std::fs::write(
        &rules,
        format!(
            "- profile: no-connect\n  scope:\n    container: {cname}\n  default: allow\n  syscalls:\n    - names: [connect]\n      action: kill\n    - names: [mkdir, mkdirat]\n      action: kill\n"
        ),
    )
    .unwrap();
    let mut agent = agent_with(&rules);
    let out = podman_with_example(
        &cname,
        "uring",
        &format!(
            "sleep 1; /ex/uring connect 127.0.0.1 {port}; echo ring=$?; \
             /ex/uring --sqpoll connect 127.0.0.1 {port}; echo sqpoll=$?; \
             /ex/uring mkdir /tmp/ring-dir; echo mkdir=$?"
        ),
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("ring=137")
            && stdout.contains("sqpoll=137")
            && stdout.contains("mkdir=137"),
        "all three died by SIGKILL: {out:?}"
    );
    // An opcode the sensor does not report (IORING_OP_MKDIRAT) is judged as its syscall too.
    let a = agent.expect("a kill verdict on a ring's mkdirat", WAIT, |v| {
        v["rule"] == "Syscall profile no-connect" && v["output_fields"]["evt.type"] == "mkdirat"
    });
    assert_eq!(a["output_fields"]["evt.is_io_uring"], true, "{a}");
    assert_eq!(a["output_fields"]["profile.action_taken"], "killed", "{a}");
    for sqpoll in [false, true] {
        let a = agent.expect("a kill verdict on a ring's connect", WAIT, |v| {
            v["rule"] == "Syscall profile no-connect"
                && v["output_fields"]["evt.type"] == "connect"
                && v["output_fields"]["proc.cmdline"]
                    .as_str()
                    .is_some_and(|c| c.contains("--sqpoll") == sqpoll)
        });
        assert_eq!(a["priority"], "Critical");
        let f = &a["output_fields"];
        assert_eq!(f["evt.type"], "connect", "{a}");
        assert_eq!(f["evt.is_io_uring"], true, "{a}");
        assert_eq!(f["profile.action_taken"], "killed", "{a}");
        assert_eq!(f["container.name"], cname.as_str());
        assert!(
            a["output"]
                .as_str()
                .unwrap()
                .contains("judged connect (an io_uring request)"),
            "{a}"
        );
    }
}

/// Calls through the 32-bit entry (`int $0x80`, agent/examples/int80) are judged as the 64-bit
/// calls they are: ia32's own connect (362) and socketcall's SYS_CONNECT meet the profile's
/// `connect`, ipc's SHMGET its `shmget`. Judged by their own numbers they were calls no
/// profile named (362 is past x86_64's table; socketcall's 102 is x86_64's getuid, ipc's 117
/// x86_64's setresuid): a way around every profile.
#[test]
fn kernel_profile_judges_calls_through_the_32_bit_entry_as_the_calls_they_are() {
    let _t = turn();
    let dir = Dir::new("int80");
    let (port, _) = listener();
    let cname = name("int80");
    let rules = dir.join("p.yaml");
    std::fs::write(
        &rules,
        format!(
            "- profile: no-connect-no-shm\n  scope:\n    container: {cname}\n  default: allow\n  syscalls:\n    - names: [connect, shmget]\n      action: kill\n"
        ),
    )
    .unwrap();
    let mut agent = agent_with(&rules);
    let out = podman_with_example(
        &cname,
        "int80",
        &format!(
            "sleep 1; /ex/int80 connect 127.0.0.1 {port}; echo direct=$?; \
             /ex/int80 socketcall 127.0.0.1 {port}; echo socketcall=$?; \
             /ex/int80 shmget; echo ipc=$?"
        ),
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("direct=137")
            && stdout.contains("socketcall=137")
            && stdout.contains("ipc=137"),
        "all three died by SIGKILL: {out:?}"
    );
    for (how, call) in [
        ("connect 127", "connect"),
        ("socketcall", "connect"),
        ("shmget", "shmget"),
    ] {
        let a = agent.expect("a kill verdict on a 32-bit call", WAIT, |v| {
            v["rule"] == "Syscall profile no-connect-no-shm"
                && v["output_fields"]["proc.cmdline"]
                    .as_str()
                    .is_some_and(|c| c.contains(how))
        });
        let f = &a["output_fields"];
        assert_eq!(f["evt.type"], call, "{a}");
        assert_eq!(f["profile.action_taken"], "killed", "{a}");
    }
}

/// The syscall number is the low 32 bits of rax, as the kernel runs it: socket with junk in
/// rax's upper half is judged as socket (it was a number no profile names, so a profile's
/// `socket` verdict was a rule any process could step around).
#[test]
fn kernel_profile_judges_a_syscall_number_by_its_low_half() {
    let _t = turn();
    let dir = Dir::new("nrwidth");
    let rules = dir.join("p.yaml");
    std::fs::write(
        &rules,
        // AF_INET only: without HOME, glibc's lookup of the user tries nscd over AF_UNIX
        // sockets from the same process (CI runs so).
        "- profile: no-sockets\n  scope: host\n  default: allow\n  syscalls:\n    - names: [socket]\n      action: alert\n      args:\n        - {index: 0, op: eq, value: AF_INET}\n",
    )
    .unwrap();
    let mut agent = agent_with(&rules);
    let out = Command::new("python3")
        .args([
            "-c",
            "import ctypes, sys\n\
             libc = ctypes.CDLL(None, use_errno=True)\n\
             libc.syscall.restype = ctypes.c_long\n\
             L = ctypes.c_long\n\
             assert libc.syscall(L(int(sys.argv[1])), L(2), L(1), L(0)) >= 0\n",
            &((1u64 << 32) | 41).to_string(),
            "osprey-nrwidth",
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let seen = agent.collect_for(Duration::from_secs(4));
    let ours: Vec<&Value> = profile_alerts(seen, "no-sockets")
        .into_iter()
        .filter(|v| {
            v["output_fields"]["proc.cmdline"]
                .as_str()
                .is_some_and(|c| c.contains("osprey-nrwidth"))
        })
        .collect();
    assert_eq!(ours.len(), 1, "the socket judged as socket: {ours:?}");
    assert_eq!(
        ours[0]["output_fields"]["evt.type"], "socket",
        "{}",
        ours[0]
    );
}

/// A condition on an `int` argument holds whatever the register's upper half says: the kernel
/// reads the low 32 bits of socket's family, so socket(AF_PACKET | 1 << 32, ...) makes the
/// same packet socket as socket(AF_PACKET, ...), and the profile judges both. On the host, with
/// `alert` (nothing is killed): the node's python makes both calls.
#[test]
fn kernel_profile_int_argument_conditions_ignore_the_upper_half() {
    let _t = turn();
    let dir = Dir::new("argwidth");
    let rules = dir.join("p.yaml");
    std::fs::write(
        &rules,
        "- profile: packet-sockets\n  scope: host\n  default: allow\n  syscalls:\n    - names: [socket]\n      action: alert\n      args:\n        - {index: 0, op: eq, value: AF_PACKET}\n",
    )
    .unwrap();
    let mut agent = agent_with(&rules);
    let out = Command::new("python3")
        .args([
            "-c",
            "import ctypes, sys\n\
             libc = ctypes.CDLL(None, use_errno=True)\n\
             libc.syscall.restype = ctypes.c_long\n\
             L = ctypes.c_long\n\
             fam = int(sys.argv[1])\n\
             assert libc.syscall(L(41), L(17), L(3), L(0)) >= 0\n\
             assert libc.syscall(L(41), L(fam), L(3), L(0)) >= 0\n",
            &((1u64 << 32) | 17).to_string(),
            "osprey-argwidth",
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let seen = agent.collect_for(Duration::from_secs(4));
    let ours: Vec<&Value> = profile_alerts(seen, "packet-sockets")
        .into_iter()
        .filter(|v| {
            v["output_fields"]["proc.cmdline"]
                .as_str()
                .is_some_and(|c| c.contains("osprey-argwidth"))
        })
        .collect();
    assert_eq!(ours.len(), 2, "both sockets judged: {ours:?}");
}

#[test]
fn kernel_profile_kill_on_open_is_too_late_for_the_file_and_in_time_for_the_data() {
    let _t = turn();
    let dir = Dir::new("creat");
    let out_dir = dir.join("out");
    std::fs::create_dir_all(&out_dir).unwrap();
    let cname = name("creat");
    let rules = dir.join("p.yaml");
    // openat with O_CREAT (0x40) only: the shell's own startup opens nothing with it.
    std::fs::write(
        &rules,
        format!(
            "- profile: no-new-files\n  scope: {{container: {cname}}}\n  default: allow\n  syscalls:\n    - names: [openat, open, creat]\n      action: kill\n      args:\n        - {{index: 2, op: masked_any, value: 0x40}}\n    - names: [open]\n      action: allow\n"
        ),
    )
    .unwrap();
    let mut agent = agent_with(&rules);
    let vol = format!("{}:/out", out_dir.display());
    // The index of O_CREAT in openat is 2 (dfd, path, flags); `open` has flags at 1 and is
    // not used by busybox on x86_64.
    let out = podman(
        &cname,
        &["-v", &vol],
        "sleep 1; echo secret-data > /out/f; echo written",
    );
    assert_eq!(out.status.code(), Some(137), "{out:?}");
    let a = agent.expect("a kill verdict on openat", WAIT, |v| {
        v["rule"] == "Syscall profile no-new-files"
    });
    assert_eq!(a["output_fields"]["evt.type"], "openat");
    assert_eq!(a["output_fields"]["profile.action_taken"], "killed");
    // The syscall ran to completion (a tracepoint cannot fail it): the file exists. The
    // process died before it returned to user space, so the data never reached the file.
    let f = out_dir.join("f");
    assert!(
        f.exists(),
        "openat completed before the signal was delivered"
    );
    assert_eq!(std::fs::metadata(&f).unwrap().len(), 0, "no data written");
}

#[test]
fn kernel_profile_alert_once_per_call_rate_limited_and_allow_costs_nothing() {
    let _t = turn();
    let dir = Dir::new("alert");
    let cname = name("alert");
    let rules = dir.join("p.yaml");
    std::fs::write(
        &rules,
        format!(
            "- profile: watch-creat\n  scope: {{container: {cname}}}\n  default: allow\n  syscalls:\n    - names: [openat]\n      action: alert\n      args: [{{index: 2, op: masked_any, value: O_CREAT_PLACEHOLDER}}]\n"
        )
        .replace("O_CREAT_PLACEHOLDER", "0x40"),
    )
    .unwrap();
    let mut agent = agent_with(&rules);
    // Three redirections in one shell: three openat(O_CREAT) calls by one process.
    let out = podman(
        &cname,
        &[],
        "sleep 1; for i in 1 2 3; do echo x > /dev/null; done",
    );
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let seen = agent.collect_for(Duration::from_millis(2500)).to_vec();
    let alerts = profile_alerts(&seen, "watch-creat");
    assert_eq!(alerts.len(), 3, "one alert per call: {alerts:?}");
    let pid = &alerts[0]["output_fields"]["proc.pid"];
    for a in &alerts {
        assert_eq!(a["priority"], "Warning");
        assert_eq!(&a["output_fields"]["proc.pid"], pid);
        assert_eq!(a["output_fields"]["evt.type"], "openat");
        assert_eq!(a["output_fields"]["profile.action_taken"], "reported");
        // The file the kernel loaded: the image's busybox, which /bin/sh links to.
        assert_eq!(a["output_fields"]["proc.exepath"], "/bin/busybox");
        assert!(a["output_fields"]["osprey.suppressed"].is_null());
    }
    assert_eq!(
        kernel_counter(agent.pid(), 8),
        3,
        "three verdicts in the kernel"
    );

    // Twenty calls in one process: five alerts, then one summary counting the other fifteen.
    let out = podman(
        &cname,
        &[],
        "sleep 1; i=0; while [ $i -lt 20 ]; do echo x > /dev/null; i=$((i+1)); done",
    );
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    agent.seen.clear();
    let seen = agent.collect_for(Duration::from_millis(3000)).to_vec();
    let alerts = profile_alerts(&seen, "watch-creat");
    let (summary, single): (Vec<&Value>, Vec<&Value>) = alerts
        .iter()
        .partition(|a| !a["output_fields"]["osprey.suppressed"].is_null());
    assert_eq!(single.len(), 5, "{alerts:?}");
    assert_eq!(summary.len(), 1, "{alerts:?}");
    assert_eq!(summary[0]["output_fields"]["osprey.suppressed"], 15);
    assert_eq!(
        kernel_counter(agent.pid(), 8),
        23,
        "the kernel saw every call"
    );
    drop(agent);

    // `allow` for the same calls: no verdict record at all, not even a dropped one.
    std::fs::write(
        &rules,
        format!(
            "- profile: watch-creat\n  scope: {{container: {cname}}}\n  default: allow\n  syscalls:\n    - names: [openat]\n      action: allow\n"
        ),
    )
    .unwrap();
    let mut agent = agent_with(&rules);
    let out = podman(
        &cname,
        &[],
        "sleep 1; for i in 1 2 3; do echo x > /dev/null; done",
    );
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let seen = agent.collect_for(Duration::from_millis(1500)).to_vec();
    assert!(profile_alerts(&seen, "watch-creat").is_empty());
    assert_eq!(kernel_counter(agent.pid(), 8), 0, "allow emits nothing");
    assert_eq!(kernel_counter(agent.pid(), 7), 0, "and drops nothing");
}

#[test]
fn kernel_profile_debian_seccomp_profile_imported_in_audit_mode_alerts_on_a_denied_call() {
    let _t = turn();
    let dir = Dir::new("import");
    let cname = name("import");
    let out = Command::new(OSPREY)
        .args(["profile", "import", "/usr/share/containers/seccomp.json"])
        .args(["--mode", "audit", "--name", "containers-default"])
        .arg("--scope")
        .arg(format!("container={cname}"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let yaml = String::from_utf8(out.stdout).unwrap();
    assert!(yaml.contains("default: alert"), "{yaml}");
    let rules = dir.join("imported.yaml");
    std::fs::write(&rules, &yaml).unwrap();
    let v = Command::new(OSPREY)
        .args(["rules", "validate"])
        .arg(&rules)
        .output()
        .unwrap();
    assert!(v.status.success(), "{v:?}");

    let mut agent = agent_with(&rules);
    // Setting the clock needs CAP_SYS_TIME, which the profile only allows with that
    // capability: denied for a default container. Audit mode: it fails (EPERM, the kernel's
    // own capability check) and raises an alert; the container goes on. The container runs
    // without podman's own seccomp filter, which is the point of auditing first: a syscall a
    // real seccomp filter refuses never reaches the syscall tracepoints at all.
    let out = podman(
        &cname,
        &["--security-opt", "seccomp=unconfined"],
        "sleep 1; date -s 2001-01-01 >/dev/null 2>&1; echo done",
    );
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stdout).contains("done"));
    let a = agent.expect("an audit alert for setting the clock", WAIT, |v| {
        v["rule"] == "Syscall profile containers-default"
    });
    let sc = a["output_fields"]["evt.type"].as_str().unwrap().to_string();
    assert!(
        ["clock_settime", "settimeofday"].contains(&sc.as_str()),
        "{a}"
    );
    assert_eq!(a["output_fields"]["profile.verdict"], "alert");
    assert_eq!(a["priority"], "Warning");
    // Everything the shell and date did besides is allowed by the profile: one alert only.
    let seen = agent.collect_for(Duration::from_millis(1500)).to_vec();
    let alerts = profile_alerts(&seen, "containers-default");
    assert!(
        alerts
            .iter()
            .all(|a| a["output_fields"]["evt.type"] == sc.as_str()),
        "only the clock call: {alerts:?}"
    );
}

/// A detached container, removed (killed if need be) when dropped.
struct Running(String);

impl Running {
    /// `podman run -d --runtime runc --network none [extra] busybox sh -c SCRIPT`, kept after
    /// it exits so that its status and output can be read.
    fn start(name: &str, extra: &[&str], script: &str) -> Running {
        let _ = Command::new("podman")
            .args(["rm", "-f", "-t", "0", name])
            .output();
        let out = Command::new("podman")
            .args(["run", "-d", "--runtime", "runc", "--network", "none"])
            .args(["--name", name])
            .args(extra)
            .args([image(), "/bin/sh", "-c", script])
            .output()
            .expect("podman run");
        // Created before it fails to start: removed either way.
        let c = Running(name.to_string());
        assert!(out.status.success(), "{out:?}");
        c
    }

    fn running(&self) -> bool {
        let out = Command::new("podman")
            .args(["inspect", "-f", "{{.State.Running}}", &self.0])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).trim() == "true"
    }

    /// Waits (bounded) for the container to exit: its status and its output.
    fn wait(&self) -> (Option<i32>, String) {
        let out = Command::new("timeout")
            .args(["20", "podman", "wait", &self.0])
            .output()
            .unwrap();
        let status = String::from_utf8_lossy(&out.stdout).trim().parse().ok();
        let logs = Command::new("podman")
            .args(["logs", &self.0])
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&logs.stdout).into_owned()
            + &String::from_utf8_lossy(&logs.stderr);
        (status, text)
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = Command::new("podman")
            .args(["rm", "-f", "-t", "0", &self.0])
            .output();
    }
}

#[test]
fn kernel_profile_record_then_enforce_lets_the_workload_run_and_kills_what_is_new() {
    let _t = turn();
    let dir = Dir::new("record");
    let ctl = dir.join("ctl");
    std::fs::create_dir_all(&ctl).unwrap();
    let cname = name("record");
    let vol = format!("{}:/ctl", ctl.display());
    let extra = ["--tmpfs", "/tmp", "-v", &vol];
    // Writes to /tmp, reads a file, sleeps; once the host creates /ctl/new it does something
    // it never did while recorded (mkdir, which podman's own seccomp profile allows: a call
    // that profile denies never reaches the tracepoint) and exits with that command's status.
    let workload = "while true; do echo tick >> /tmp/log; cat /tmp/log > /tmp/copy; \
                    sleep 0.2; if [ -e /ctl/new ]; then mkdir /tmp/d; st=$?; echo new=$st; \
                    exit $st; fi; done";

    let c = Running::start(&cname, &extra, workload);
    std::thread::sleep(Duration::from_millis(500));
    let (yaml_path, json_path) = (dir.join("p.yaml"), dir.join("p.json"));
    let out = Command::new(OSPREY)
        .args([
            "profile",
            "record",
            "--container",
            &cname,
            "--duration",
            "5s",
        ])
        .arg("--output")
        .arg(&yaml_path)
        .arg("--seccomp")
        .arg(&json_path)
        .args(["--name", "recorded-test", "--scope"])
        .arg(format!("container={cname}"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    eprintln!("{stderr}");
    assert!(out.status.success(), "{out:?}");
    assert!(stderr.contains("syscalls recorded"), "{stderr}");
    assert!(c.running(), "recording left the workload alone");
    drop(c);

    let yaml = std::fs::read_to_string(&yaml_path).unwrap();
    eprintln!("{yaml}");
    let names = yaml
        .lines()
        .find_map(|l| l.trim().strip_prefix("- names: ["))
        .and_then(|l| l.strip_suffix(']'))
        .expect("one allow entry");
    let names: Vec<&str> = names.split(", ").collect();
    // cat copies with sendfile; the shell forks, waits and redirects.
    for want in ["openat", "write", "sendfile", "clone", "wait4", "dup2"] {
        assert!(names.contains(&want), "{want} in {names:?}");
    }
    assert!(
        names.contains(&"nanosleep") || names.contains(&"clock_nanosleep"),
        "{names:?}"
    );
    assert!(!names.contains(&"mkdir"), "never made: {names:?}");
    assert!(yaml.contains("default: kill"), "{yaml}");
    assert!(yaml.contains(&format!("container: \"{cname}\"")), "{yaml}");
    let v = Command::new(OSPREY)
        .args(["rules", "validate"])
        .arg(&yaml_path)
        .output()
        .unwrap();
    assert!(v.status.success(), "{v:?}");

    let json: Value = serde_json::from_str(&std::fs::read_to_string(&json_path).unwrap()).unwrap();
    assert_eq!(json["defaultAction"], "SCMP_ACT_ERRNO");
    let allowed: Vec<&str> = json["syscalls"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["action"] == "SCMP_ACT_ALLOW")
        .flat_map(|e| e["names"].as_array().unwrap())
        .map(|n| n.as_str().unwrap())
        .collect();
    for n in &names {
        assert!(allowed.contains(n), "{n} allowed by the seccomp profile");
    }
    assert!(!allowed.contains(&"mkdir"));

    // The seccomp profile, as runc loads it: the workload starts and runs; the new call
    // fails with EPERM (and the workload says so and goes on to exit with mkdir's status).
    let seccomp = format!("seccomp={}", json_path.display());
    let _ = std::fs::remove_file(ctl.join("new"));
    let c = Running::start(
        &cname,
        &["--tmpfs", "/tmp", "-v", &vol, "--security-opt", &seccomp],
        workload,
    );
    std::thread::sleep(Duration::from_millis(1500));
    assert!(c.running(), "the workload runs under its seccomp profile");
    std::fs::write(ctl.join("new"), "").unwrap();
    let (status, logs) = c.wait();
    assert_eq!(status, Some(1), "{logs}");
    assert!(logs.contains("new=1"), "mkdir denied: {logs}");
    drop(c);

    // The Osprey profile in enforce mode: the same workload runs cleanly, then is killed.
    let _ = std::fs::remove_file(ctl.join("new"));
    let mut agent = Agent::start(
        &[
            "run",
            "--json",
            "--rules",
            "default",
            "--rules",
            yaml_path.to_str().unwrap(),
        ],
        "osprey is running",
    );
    let c = Running::start(&cname, &extra, workload);
    let seen = agent.collect_for(Duration::from_secs(3)).to_vec();
    assert!(
        profile_alerts(&seen, "recorded-test").is_empty(),
        "no verdict on what was recorded: {:?}",
        profile_alerts(&seen, "recorded-test")
    );
    assert!(c.running(), "the workload runs under its recorded profile");
    std::fs::write(ctl.join("new"), "").unwrap();
    let (status, logs) = c.wait();
    assert_eq!(status, Some(137), "{logs}");
    assert!(logs.contains("new=137"), "mkdir died by SIGKILL: {logs}");
    // The shell says `Killed` for each child that died so: mkdir only.
    assert_eq!(
        logs.matches("Killed").count(),
        1,
        "nothing else was: {logs}"
    );
    let a = agent.expect("a kill verdict on mkdir", WAIT, |v| {
        v["rule"] == "Syscall profile recorded-test"
    });
    let f = &a["output_fields"];
    assert_eq!(f["evt.type"], "mkdir", "{a}");
    assert_eq!(f["profile.verdict"], "kill");
    assert_eq!(f["profile.action_taken"], "killed");
    assert_eq!(f["container.name"], cname.as_str());
}

/// A profile added, tightened and removed while the agent runs and the container keeps
/// running: each change takes effect on the live container without a restart of either.
#[test]
fn kernel_profile_changes_live_alert_then_kill_then_removed() {
    let _t = turn();
    let dir = Dir::new("live");
    let cname = name("live");
    let _ = Command::new("podman")
        .args(["rm", "-f", "-t", "0", &cname])
        .output();
    let rules = dir.join("p.yaml");
    let profile = |action: &str| {
        format!(
            "- profile: live\n  scope: {{container: {cname}}}\n  default: allow\n  syscalls:\n    - names: [mkdir, mkdirat]\n      action: {action}\n"
        )
    };
    std::fs::write(&rules, profile("alert")).unwrap();
    let mut agent = agent_with(&rules);
    // A workload that makes a new directory every 300 ms, for at most a minute.
    let started = Command::new("podman")
        .args([
            "run",
            "-d",
            "--runtime",
            "runc",
            "--network",
            "none",
            "--name",
            &cname,
        ])
        .args([
            image(),
            "/bin/sh",
            "-c",
            "i=0; while [ $i -lt 200 ]; do mkdir /tmp/d$i; i=$((i+1)); sleep 0.3; done",
        ])
        .output()
        .unwrap();
    assert!(started.status.success(), "{started:?}");
    let a = agent.expect("an alert verdict on mkdir", WAIT, |v| {
        v["rule"] == "Syscall profile live"
    });
    assert_eq!(
        a["output_fields"]["profile.action_taken"], "reported",
        "{a}"
    );

    // Tightened in place: the next mkdir of the same, still running container is killed
    // (busybox's shell runs `mkdir` in a child: the child dies, the loop goes on).
    std::fs::write(&rules, profile("kill")).unwrap();
    let k = agent.expect("a kill verdict on mkdir", Duration::from_secs(30), |v| {
        v["rule"] == "Syscall profile live"
            && v["output_fields"]["profile.action_taken"] == "killed"
    });
    assert_eq!(k["priority"], "Critical", "{k}");
    assert_eq!(
        k["output_fields"]["container.id"], a["output_fields"]["container.id"],
        "the same container, never restarted: {k}"
    );
    let _ = Command::new("podman")
        .args(["rm", "-f", "-t", "0", &cname])
        .output();

    // Removed: the same workload runs to the end, and raises nothing.
    std::fs::write(
        &rules,
        "- macro: osprey_test_no_profile\n  condition: proc.name = nothing\n",
    )
    .unwrap();
    std::thread::sleep(Duration::from_secs(4));
    let before = profile_alerts(agent.collect_for(Duration::from_millis(100)), "live").len();
    let out = podman(
        &cname,
        &[],
        "for i in 1 2 3 4 5; do mkdir /tmp/e$i; sleep 0.2; done; echo finished",
    );
    assert!(out.status.success(), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stdout).contains("finished"));
    let seen = agent.collect_for(Duration::from_secs(2)).to_vec();
    assert_eq!(
        profile_alerts(&seen, "live").len(),
        before,
        "no verdict once the profile is gone"
    );
}

/// Whether the agent `pid` holds a link of `sys_enter` (its bpf-link fds name the tracepoint
/// in /proc fdinfo).
fn entry_hook_attached(pid: u32) -> bool {
    std::fs::read_dir(format!("/proc/{pid}/fdinfo"))
        .unwrap()
        .flatten()
        .any(|fd| {
            std::fs::read_to_string(fd.path()).is_ok_and(|info| {
                info.lines().any(|l| {
                    l.strip_prefix("tp_name:")
                        .is_some_and(|v| v.trim() == "sys_enter")
                })
            })
        })
}

fn wait_for_hook(agent: &Agent, attached: bool) {
    let deadline = std::time::Instant::now() + WAIT;
    while entry_hook_attached(agent.pid()) != attached {
        assert!(
            std::time::Instant::now() < deadline,
            "sys_enter attached={} after {WAIT:?}; wanted {attached}",
            !attached
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn kernel_profile_entry_hook_follows_the_profiles_live() {
    // Without a syscall profile nothing runs at syscall entry (every syscall on the node is
    // spared that program); a profile added to the watched rule files attaches it before the
    // profile is in force, and the profile kills; removing it detaches it again.
    let _t = turn();
    let dir = Dir::new("hook");
    let rules = dir.join("p.yaml");
    std::fs::write(&rules, "[]\n").unwrap();
    let mut agent = agent_with(&rules);
    assert!(
        !entry_hook_attached(agent.pid()),
        "sys_enter attached with no profile"
    );
    let cname = name("hook");
    std::fs::write(
        &rules,
        format!(
            "- profile: no-sockets\n  scope:\n    container: {cname}\n  default: allow\n  syscalls:\n    - names: [socket]\n      action: kill\n"
        ),
    )
    .unwrap();
    wait_for_hook(&agent, true);
    let deadline = std::time::Instant::now() + WAIT;
    while !agent.stderr().contains("rules reloaded") {
        assert!(
            std::time::Instant::now() < deadline,
            "no reload: {}",
            agent.stderr()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    // After the start-up window (the scope is written when the agent reads the entrypoint's
    // exec; README), as the other kill tests do: this one is about the hook, not the window.
    let out = podman(
        &cname,
        &[],
        "sleep 1; nc 127.0.0.1 9 </dev/null; echo nc=$?",
    );
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("nc=137"),
        "nc died by SIGKILL: {out:?}"
    );
    agent.expect("a kill verdict on socket", WAIT, |v| {
        v["rule"] == "Syscall profile no-sockets"
    });
    std::fs::write(&rules, "[]\n").unwrap();
    wait_for_hook(&agent, false);
}
