//! The process table: what the agent knows about every live process on the node.
//!
//! Bootstrapped from `/proc` at start (so processes older than the agent have their exe, args,
//! cwd, user, parent and start time), then kept current by the sensor's fork, exec and exit
//! events. It is bounded: when full, exited processes go first, then the least recently seen;
//! every eviction is counted. A process that exits stays for a short grace period, so events
//! still queued behind its exit find it.

mod fds;
mod proc_fs;

use std::{
    collections::{HashMap, VecDeque},
    path::Path,
    sync::Arc,
};

use serde::Serialize;

pub use osprey_model::Process;
use osprey_model::event::{ArgValue, Enriched, Event, EventKind};

pub use fds::{FdConfig, FdStats, FdTable, SYSCALLS as FD_TABLE_SYSCALLS};
pub use proc_fs::{boot_clock_ns, boot_time_ns, read_process};

/// Limits and counters of the table.
#[derive(Clone, Debug)]
pub struct TableConfig {
    /// Most processes kept. A node rarely runs more than a few tens of thousands.
    pub capacity: usize,
    /// Ancestors attached to each event (Falco's `proc.aname[N]` goes to 6 or so).
    pub max_ancestors: usize,
    /// How long an exited process stays, in nanoseconds, for events still queued behind its exit.
    pub exit_grace_ns: u64,
    /// Bounds of the file-descriptor table.
    pub fds: FdConfig,
}

impl Default for TableConfig {
    fn default() -> Self {
        Self {
            capacity: 65_536,
            max_ancestors: 8,
            exit_grace_ns: 2_000_000_000,
            fds: FdConfig::default(),
        }
    }
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct TableStats {
    pub size: usize,
    /// Processes dropped because the table was full.
    pub evictions: u64,
    /// Events whose process the table did not know (and so created from the event header).
    pub misses: u64,
    /// The file-descriptor table's counters.
    pub fds: FdStats,
}

/// The table itself. Not thread-safe: the pipeline owns it in one task.
pub struct ProcessTable {
    cfg: TableConfig,
    procs: HashMap<u32, Arc<Process>>,
    /// Exited processes in exit order, removed after the grace period.
    exited: VecDeque<(u64, u32)>,
    /// Order of insertion for eviction under pressure (pid, start_ts); stale entries skipped.
    order: VecDeque<(u32, u64)>,
    stats: TableStats,
    fds: FdTable,
}

impl ProcessTable {
    pub fn new(cfg: TableConfig) -> Self {
        Self {
            fds: FdTable::new(cfg.fds.clone()),
            cfg,
            procs: HashMap::new(),
            exited: VecDeque::new(),
            order: VecDeque::new(),
            stats: TableStats::default(),
        }
    }

    /// Fills the table from `/proc` (or another procfs root, for tests).
    pub fn bootstrap(&mut self, proc_root: &Path) -> std::io::Result<usize> {
        let boot_ns = boot_time_ns();
        let mut n = 0;
        for entry in std::fs::read_dir(proc_root)? {
            let Ok(entry) = entry else { continue };
            let Some(pid) = entry
                .file_name()
                .to_str()
                .and_then(|s| s.parse::<u32>().ok())
            else {
                continue;
            };
            // A process can exit between readdir and the reads: skip it.
            if let Some(p) = read_process(proc_root, pid, boot_ns) {
                self.insert(p);
                n += 1;
            }
        }
        self.fds.bootstrap(proc_root);
        Ok(n)
    }

    pub fn get(&self, pid: u32) -> Option<&Arc<Process>> {
        self.procs.get(&pid)
    }

    pub fn stats(&self) -> TableStats {
        TableStats {
            size: self.procs.len(),
            fds: self.fds.stats(),
            ..self.stats
        }
    }

    pub fn len(&self) -> usize {
        self.procs.len()
    }

    pub fn is_empty(&self) -> bool {
        self.procs.is_empty()
    }

    fn insert(&mut self, p: Process) {
        self.order.push_back((p.pid, p.start_ts));
        self.procs.insert(p.pid, Arc::new(p));
        while self.procs.len() > self.cfg.capacity {
            self.evict_one();
        }
    }

    fn evict_one(&mut self) {
        // Exited processes first, oldest exit first.
        while let Some((_, pid)) = self.exited.pop_front() {
            if self.procs.get(&pid).is_some_and(|p| p.exited_ts.is_some()) {
                self.procs.remove(&pid);
                self.stats.evictions += 1;
                return;
            }
        }
        // Then the oldest inserted that is still the same process.
        while let Some((pid, start)) = self.order.pop_front() {
            if self.procs.get(&pid).is_some_and(|p| p.start_ts == start) {
                self.procs.remove(&pid);
                self.stats.evictions += 1;
                return;
            }
        }
    }

    /// Drops processes whose exit is older than the grace period, as of boot time `now`.
    fn expire(&mut self, now: u64) {
        while let Some(&(ts, pid)) = self.exited.front() {
            if now.saturating_sub(ts) < self.cfg.exit_grace_ns {
                break;
            }
            self.exited.pop_front();
            if self
                .procs
                .get(&pid)
                .is_some_and(|p| p.exited_ts == Some(ts))
            {
                self.procs.remove(&pid);
            }
        }
        // Keep the eviction order from growing without bound through pid reuse.
        if self.order.len() > 2 * self.cfg.capacity + 1024 {
            let procs = &self.procs;
            self.order
                .retain(|(pid, st)| procs.get(pid).is_some_and(|p| p.start_ts == *st));
        }
    }

    /// The process for an event's tgid, created from the event header when unknown (a process
    /// that started before the agent and was missed, or one evicted).
    fn ensure(&mut self, ev: &Event) -> Arc<Process> {
        if let Some(p) = self.procs.get(&ev.tgid) {
            return p.clone();
        }
        self.stats.misses += 1;
        let p = Process {
            pid: ev.tgid,
            comm: ev.comm.clone(),
            uid: ev.uid,
            gid: ev.gid,
            euid: ev.euid,
            start_ts: ev.ts,
            cgroup_id: ev.cgroup_id,
            pid_ns: ev.pid_ns,
            mnt_ns: ev.mnt_ns,
            vpid: ev.vpid,
            loginuid: u32::MAX,
            ..Default::default()
        };
        self.insert(p);
        self.procs[&ev.tgid].clone()
    }

    fn ancestors(&self, mut ppid: u32) -> Vec<Arc<Process>> {
        let mut out = Vec::new();
        while ppid != 0 && out.len() < self.cfg.max_ancestors {
            let Some(p) = self.procs.get(&ppid) else {
                break;
            };
            out.push(p.clone());
            if p.ppid == ppid {
                break;
            }
            ppid = p.ppid;
        }
        out
    }

    /// Applies the event to the table and returns it with its process context.
    ///
    /// Exec replaces the image, fork creates the child (inheriting the parent's image, cwd and
    /// tty), exit marks the process gone (removed after the grace period), and a successful
    /// chdir updates the working directory. The process attached to the event is the state
    /// after the event: an exec event carries the new image.
    pub fn observe(&mut self, mut ev: Event) -> Enriched {
        self.expire(ev.ts);
        let mut process = self.ensure(&ev);
        resolve_paths(&mut ev, process.cwd.as_deref(), &self.fds);
        let fd = self.fds.observe(&ev);
        if process.vpid == 0 && ev.vpid != 0 {
            // A forked child learns its pid-namespace view from its first own event.
            Arc::make_mut(&mut process).vpid = ev.vpid;
            self.procs.insert(ev.tgid, process.clone());
        }
        match &ev.kind {
            EventKind::Exec(exec) => {
                let p = Arc::make_mut(&mut process);
                p.exe = exec.filename.clone();
                p.args = exec.args.clone();
                p.args_truncated = exec.args_truncated;
                p.exe_name = exec.exe_name.clone();
                p.exe_layer = exec.exe_layer;
                p.cgroup = exec.cgroup.clone();
                p.comm = ev.comm.clone();
                p.exec_ts = ev.ts;
                p.uid = ev.uid;
                p.gid = ev.gid;
                p.euid = ev.euid;
                p.cgroup_id = ev.cgroup_id;
                p.pid_ns = ev.pid_ns;
                p.mnt_ns = ev.mnt_ns;
                p.vpid = ev.vpid;
                p.from_procfs = false;
                self.procs.insert(ev.tgid, process.clone());
            }
            EventKind::Fork(fork) if !fork.is_thread => {
                let parent = &process;
                let child = Process {
                    pid: fork.child_tgid,
                    ppid: ev.tgid,
                    comm: parent.comm.clone(),
                    exe: parent.exe.clone(),
                    args: parent.args.clone(),
                    args_truncated: parent.args_truncated,
                    cwd: parent.cwd.clone(),
                    uid: ev.uid,
                    gid: ev.gid,
                    euid: ev.euid,
                    start_ts: ev.ts,
                    exec_ts: parent.exec_ts,
                    cgroup_id: ev.cgroup_id,
                    pid_ns: ev.pid_ns,
                    mnt_ns: ev.mnt_ns,
                    vpid: 0,
                    tty: parent.tty,
                    loginuid: parent.loginuid,
                    exe_name: parent.exe_name.clone(),
                    exe_layer: parent.exe_layer,
                    cgroup: parent.cgroup.clone(),
                    from_procfs: false,
                    exited_ts: None,
                };
                self.insert(child);
            }
            EventKind::Exit(_) => {
                let p = Arc::make_mut(&mut process);
                p.exited_ts = Some(ev.ts);
                self.exited.push_back((ev.ts, ev.tgid));
                self.procs.insert(ev.tgid, process.clone());
            }
            EventKind::Syscall(sc) if sc.ret == 0 && sc.name == "chdir" => {
                if let Some(ArgValue::Path {
                    resolved: Some(dir),
                    ..
                }) = sc.arg("filename")
                {
                    Arc::make_mut(&mut process).cwd = Some(dir.clone());
                    self.procs.insert(ev.tgid, process.clone());
                }
            }
            // PR_SET_NAME (15) by the main thread: the process renamed itself; proc.name
            // follows. (Another thread names only itself: Rust and Java name their threads.)
            EventKind::Syscall(sc)
                if sc.ret == 0
                    && ev.tid == ev.tgid
                    && sc.name == "prctl"
                    && sc.arg("option").and_then(ArgValue::as_i64) == Some(15)
                    && process.comm != ev.comm =>
            {
                Arc::make_mut(&mut process).comm = ev.comm.clone();
                self.procs.insert(ev.tgid, process.clone());
            }
            _ => {}
        }
        let ancestors = self.ancestors(process.ppid);
        Enriched {
            event: ev,
            process: Some(process),
            ancestors,
            container: None,
            fd,
        }
    }
}

/// Resolves relative paths against the working directory: an exec's filename, and syscall path
/// arguments whose directory fd is `AT_FDCWD` (or that have none); a path relative to another
/// directory fd against that directory, when the fd table knows it (`openat(open("/etc"),
/// "shadow")` is /etc/shadow).
fn resolve_paths(ev: &mut Event, cwd: Option<&str>, fds: &FdTable) {
    const AT_FDCWD: i64 = -100;
    let tgid = ev.tgid;
    if let EventKind::Syscall(sc) = &mut ev.kind {
        let mut dirfd = None;
        for a in &mut sc.args {
            match &mut a.value {
                ArgValue::Fd(fd) if a.name.ends_with("dfd") => dirfd = Some(*fd),
                ArgValue::Path { raw, resolved } => {
                    if resolved.is_none()
                        && let Some(fd) = dirfd.filter(|fd| *fd != AT_FDCWD)
                    {
                        *resolved = fds::join_dirfd(fds, tgid, fd, raw);
                    }
                    dirfd = None;
                }
                _ => {}
            }
        }
    }
    let Some(cwd) = cwd else { return };
    let join = |raw: &str| osprey_model::path::normalize(&format!("{cwd}/{raw}"));
    match &mut ev.kind {
        EventKind::Exec(exec) if !exec.filename.starts_with('/') => {
            exec.filename = join(&exec.filename);
        }
        EventKind::Syscall(sc) => {
            let mut dirfd = None;
            for a in &mut sc.args {
                match &mut a.value {
                    ArgValue::Fd(fd) if a.name.ends_with("dfd") => dirfd = Some(*fd),
                    ArgValue::Path { raw, resolved } => {
                        if resolved.is_none()
                            && !raw.is_empty()
                            && dirfd.is_none_or(|fd| fd == AT_FDCWD)
                        {
                            *resolved = Some(join(raw));
                        }
                        dirfd = None;
                    }
                    _ => {}
                }
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests;
