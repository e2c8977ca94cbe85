//! Event fixtures for the engine's tests and benchmark: processes, syscall events and their
//! arguments, shaped as the sensor and the process table shape them.
//!
//! Compiled for the crate's own tests and, with the `testing` feature, for targets outside it
//! (the benchmark turns the feature on through a dev-dependency on this crate), so the way an
//! event is put together is written once. A [`Scene`] holds what one suite's events share (who
//! runs, where, when); its methods build the processes and events.

use std::{borrow::Cow, net::IpAddr, path::PathBuf, sync::Arc};

use osprey_model::{
    ContainerInfo, Process,
    event::{Arg, ArgValue, Enriched, Event, EventKind, SockAddr, Syscall},
};

use crate::{
    EngineOptions,
    env::{StaticContainers, StaticUsers},
};

/// What the processes and events of one suite share: the user, directory and start time of its
/// processes, and the time, latency and `openat` mode of its events.
#[derive(Clone, Copy, Debug)]
pub struct Scene {
    /// The working directory of every process.
    pub cwd: &'static str,
    /// uid, gid and euid of every process.
    pub id: u32,
    /// `u32::MAX` for a process no one logged in to start (Falco's -1).
    pub loginuid: u32,
    /// When every process started, in ns since boot.
    pub start_ts: u64,
    /// The wall-clock time of every event, in ns since the epoch.
    pub time: u64,
    pub latency_ns: u64,
    /// The `mode` argument of `openat`.
    pub open_mode: u32,
}

/// Root in `/root`, never logged in, on 2023-05-25: the unit tests' scene, whose output and
/// JSON shapes they check to the nanosecond.
pub const ROOT: Scene = Scene {
    cwd: "/root",
    id: 0,
    loginuid: u32::MAX,
    start_ts: 1_000,
    time: 1_685_022_245_478_445_995,
    latency_ns: 100,
    open_mode: 0,
};

/// An application user (1000, logged in) in `/srv/app`: the benchmark's scene.
pub const APP: Scene = Scene {
    cwd: "/srv/app",
    id: 1000,
    loginuid: 1000,
    start_ts: 1,
    time: 1_700_000_000_000_000_000,
    latency_ns: 500,
    open_mode: 0o644,
};

impl Scene {
    /// A process of the host (cgroup 1) whose vpid is its pid.
    pub fn process(
        &self,
        pid: u32,
        ppid: u32,
        comm: &str,
        exe: &str,
        args: &[&str],
    ) -> Arc<Process> {
        Arc::new(Process {
            pid,
            ppid,
            comm: comm.into(),
            exe: exe.into(),
            args: args.iter().map(|s| s.to_string()).collect(),
            cwd: Some(self.cwd.into()),
            uid: self.id,
            gid: self.id,
            euid: self.id,
            start_ts: self.start_ts,
            cgroup_id: 1,
            vpid: pid,
            loginuid: self.loginuid,
            ..Default::default()
        })
    }

    /// A completed syscall `name` that returned `ret`.
    pub fn syscall(&self, name: &'static str, ret: i64, args: Vec<Arg>) -> EventKind {
        EventKind::Syscall(Syscall {
            name: Cow::Borrowed(name),
            nr: 0,
            ret,
            args,
            truncated: false,
            ia32: false,
            ia32_from_64bit: false,
            latency_ns: self.latency_ns,
            file: None,
            io_uring: None,
        })
    }

    /// An event of process `p` (its thread leader), with its ancestors, parent first.
    pub fn event(
        &self,
        kind: EventKind,
        p: Arc<Process>,
        ancestors: Vec<Arc<Process>>,
    ) -> Enriched {
        Enriched {
            event: Event {
                ts: 10_000_000_000,
                time: self.time,
                tgid: p.pid,
                tid: p.pid,
                uid: p.uid,
                gid: p.gid,
                euid: p.euid,
                egid: p.gid,
                cgroup_id: p.cgroup_id,
                pid_ns: 1,
                mnt_ns: 1,
                vpid: p.vpid,
                comm: p.comm.clone(),
                cap_effective: 0,
                cap_permitted: 0,
                kind,
            },
            process: Some(p),
            ancestors: ancestors.into(),
            container: None,
            fd: None,
        }
    }

    /// `openat(AT_FDCWD, file, flags, mode)` returning `ret` (an fd, or -errno).
    pub fn openat(
        &self,
        p: Arc<Process>,
        ancestors: Vec<Arc<Process>>,
        file: &str,
        flags: ArgValue,
        ret: i64,
    ) -> Enriched {
        let args = vec![
            arg("dfd", ArgValue::Fd(-100)),
            arg("filename", path(file)),
            arg("flags", flags),
            arg("mode", ArgValue::Mode(self.open_mode)),
        ];
        self.event(self.syscall("openat", ret, args), p, ancestors)
    }

    /// A successful `execve` of `p`'s executable with its arguments.
    pub fn execve(&self, p: Arc<Process>, ancestors: Vec<Arc<Process>>) -> Enriched {
        let args = vec![
            arg("filename", path(&p.exe)),
            arg("argv", ArgValue::Argv(p.args.clone())),
            arg("envp", ArgValue::Ptr(0)),
        ];
        self.event(self.syscall("execve", 0, args), p, ancestors)
    }

    /// A successful `connect` of socket `fd` to `ip:port`.
    pub fn connect(
        &self,
        p: Arc<Process>,
        ancestors: Vec<Arc<Process>>,
        fd: i64,
        ip: IpAddr,
        port: u16,
    ) -> Enriched {
        let args = vec![
            arg("fd", ArgValue::Fd(fd)),
            arg("uservaddr", ArgValue::SockAddr(SockAddr::Inet { ip, port })),
            arg("addrlen", ArgValue::Int(16)),
        ];
        self.event(self.syscall("connect", 0, args), p, ancestors)
    }
}

pub fn arg(name: &'static str, value: ArgValue) -> Arg {
    Arg {
        name: Cow::Borrowed(name),
        value,
    }
}

/// A path argument that resolved to itself.
pub fn path(p: &str) -> ArgValue {
    ArgValue::Path {
        raw: p.into(),
        resolved: Some(p.into()),
    }
}

/// An open's flags: `O_WRONLY|O_CREAT|O_TRUNC` for a write, `O_RDONLY` for a read.
pub fn open_flags(write: bool) -> ArgValue {
    if write {
        flags(0o1101, &["O_WRONLY", "O_CREAT", "O_TRUNC"])
    } else {
        flags(0, &["O_RDONLY"])
    }
}

pub fn flags(raw: u64, names: &[&'static str]) -> ArgValue {
    ArgValue::Flags {
        raw,
        names: names.iter().map(|n| Cow::Borrowed(*n)).collect(),
    }
}

/// Osprey's default rules, in the repository.
pub fn default_rules() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../rules/osprey_rules.yaml")
}

/// Falco's upstream stable rules, which sit beside the repository (`shared/compat`), not in it:
/// callers check that they are there.
pub fn upstream_rules() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/compat/falco_rules.yaml")
}

/// The benchmark's mix (`benches/engine.rs`, `examples/engine_mix.rs`): 100 events: 60 opens, 20 execs, 15 connects, 5 others. Falco's upstream rules raise 3
/// alerts on them (a shell under nginx, cat /etc/shadow, a ptrace attach); Osprey's default
/// rules, which watch more, about 22 (the containerized java also writes below /etc and /usr
/// and contacts the API server's address, bash connects out, `sh -c` runs in the container),
/// so alert building is about a third of that row's time.
pub fn mix() -> Vec<Enriched> {
    let init = APP.process(1, 0, "systemd", "/sbin/init", &["/sbin/init"]);
    let containerd = APP.process(
        50,
        1,
        "containerd-shim",
        "/usr/bin/containerd-shim",
        &["containerd-shim", "-namespace", "k8s.io"],
    );
    let java = APP.process(
        100,
        50,
        "java",
        "/usr/bin/java",
        &["java", "-jar", "/srv/app/app.jar"],
    );
    let bash = APP.process(200, 50, "bash", "/bin/bash", &["bash"]);
    let python = APP.process(
        300,
        200,
        "python3",
        "/usr/bin/python3",
        &["python3", "worker.py", "--queue", "default"],
    );
    let nginx = APP.process(
        400,
        1,
        "nginx",
        "/usr/sbin/nginx",
        &["nginx", "-g", "daemon off;"],
    );
    let chains: [(&Arc<Process>, Vec<Arc<Process>>); 4] = [
        (&java, vec![containerd.clone(), init.clone()]),
        (
            &python,
            vec![bash.clone(), containerd.clone(), init.clone()],
        ),
        (&nginx, vec![init.clone()]),
        (&bash, vec![containerd.clone(), init.clone()]),
    ];
    let files = [
        "/srv/app/config/application.yaml",
        "/usr/lib/x86_64-linux-gnu/libssl.so.3",
        "/proc/self/status",
        "/var/lib/app/data/segment-000123.log",
        "/etc/ld.so.cache",
        "/tmp/upload-4711.part",
        "/usr/share/zoneinfo/UTC",
        "/sys/fs/cgroup/cpu.max",
        "/etc/hosts",
        "/var/cache/app/index.bin",
    ];
    let mut out = Vec::with_capacity(100);
    for i in 0..60 {
        let (p, anc) = &chains[i % chains.len()];
        let f = files[i % files.len()];
        let write = i % 4 == 0;
        let fl = if write {
            flags(0o1101, &["O_WRONLY", "O_CREAT", "O_TRUNC"])
        } else {
            flags(0o2000000, &["O_RDONLY", "O_CLOEXEC"])
        };
        let ret = if i % 9 == 0 { -2 } else { 3 + (i as i64 % 20) };
        out.push(APP.openat(Arc::clone(p), anc.clone(), f, fl, ret));
    }
    let tools: [(&str, &str, &[&str]); 5] = [
        ("ls", "/bin/ls", &["ls", "-la", "/srv/app"]),
        ("grep", "/bin/grep", &["grep", "-r", "TODO", "src"]),
        (
            "curl",
            "/usr/bin/curl",
            &["curl", "-s", "http://localhost:8080/health"],
        ),
        ("sh", "/bin/sh", &["sh", "-c", "date +%s"]),
        ("git", "/usr/bin/git", &["git", "status", "--short"]),
    ];
    for i in 0..20 {
        let (comm, exe, args) = tools[i % tools.len()];
        let child = APP.process(1000 + i as u32, 200, comm, exe, args);
        let anc = vec![bash.clone(), containerd.clone(), init.clone()];
        out.push(APP.execve(child, anc));
    }
    for i in 0..15 {
        let (p, anc) = &chains[i % chains.len()];
        let ip = ["10.96.0.1", "172.17.0.3", "93.184.216.34"][i % 3];
        let ip = ip.parse::<IpAddr>().unwrap_or(IpAddr::from([0, 0, 0, 0]));
        out.push(APP.connect(Arc::clone(p), anc.clone(), 5, ip, [443, 5432, 80][i % 3]));
    }
    for (p, anc) in chains.iter().take(2) {
        let args = vec![arg("oldfd", ArgValue::Fd(5)), arg("newfd", ArgValue::Fd(1))];
        out.push(APP.event(APP.syscall("dup2", 1, args), Arc::clone(p), anc.clone()));
    }
    // Alerts: a shell under nginx, cat /etc/shadow, a ptrace attach.
    let sh = APP.process(500, 400, "sh", "/bin/sh", &["sh", "-c", "id"]);
    out.push(APP.execve(sh, vec![nginx.clone(), init.clone()]));
    let cat = APP.process(501, 200, "cat", "/bin/cat", &["cat", "/etc/shadow"]);
    out.push(APP.openat(
        cat,
        vec![bash.clone(), init.clone()],
        "/etc/shadow",
        flags(0, &["O_RDONLY"]),
        3,
    ));
    let gdb = APP.process(502, 200, "gdb", "/usr/bin/gdb", &["gdb", "-p", "100"]);
    let request = ArgValue::Enum {
        raw: 16,
        name: Some(Cow::Borrowed("PTRACE_ATTACH")),
    };
    let args = vec![
        arg("request", request),
        arg("pid", ArgValue::Int(100)),
        arg("addr", ArgValue::Ptr(0)),
        arg("data", ArgValue::Ptr(0)),
    ];
    out.push(APP.event(APP.syscall("ptrace", 0, args), gdb, vec![bash, init]));
    out
}

/// The engine options the mix is judged with: a host name, two users, every process in one
/// container.
pub fn mix_options() -> EngineOptions {
    EngineOptions {
        hostname: Arc::from("bench"),
        users: Arc::new(StaticUsers::new(
            &[(0, "root"), (1000, "app")],
            &[(1000, "app")],
        )),
        containers: Arc::new(StaticContainers {
            default: Some(Arc::new(ContainerInfo {
                id: "0123456789ab".into(),
                image_repository: Some("docker.io/acme/app".into()),
                ..Default::default()
            })),
            ..Default::default()
        }),
        ..EngineOptions::default()
    }
}
