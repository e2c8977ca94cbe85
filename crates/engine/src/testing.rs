//! Event fixtures for the engine's tests and benchmark: processes, syscall events and their
//! arguments, shaped as the sensor and the process table shape them.
//!
//! Compiled for the crate's own tests and, with the `testing` feature, for targets outside it
//! (the benchmark turns the feature on through a dev-dependency on this crate), so the way an
//! event is put together is written once. A [`Scene`] holds what one suite's events share (who
//! runs, where, when); its methods build the processes and events.

use std::{borrow::Cow, net::IpAddr, path::PathBuf, sync::Arc};

use osprey_model::{
    Process,
    event::{Arg, ArgValue, Enriched, Event, EventKind, SockAddr, Syscall},
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
