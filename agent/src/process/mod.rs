//! The process table: what the agent knows about every live process on the node.
//!
//! Bootstrapped from `/proc` at start (so processes older than the agent have their exe, args,
//! cwd, user, parent and start time), then kept current by the sensor's fork, exec and exit
//! events. It is bounded: when full, exited processes go first, then the least recently seen;
//! every eviction is counted. A process that exits stays for a short grace period, so events
//! still queued behind its exit find it.

mod fds;
mod proc_fs;

use std::{collections::VecDeque, path::Path, sync::Arc};

use serde::Serialize;

pub use osprey_model::Process;
use osprey_model::event::{ArgValue, Enriched, Event, EventKind};

use crate::{container::cgroup, fast_hash::FastMap};

pub use fds::{FdConfig, FdStats, FdTable, SYSCALLS as FD_TABLE_SYSCALLS, keep_followed_calls};
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
    /// The node's mount namespace (`/proc/1/ns/mnt`; the DaemonSet shares the host's pids):
    /// an exec in it loads one of the node's own files. 0 when unknown: then no executable is
    /// taken for the node's own.
    pub host_mnt_ns: u32,
    /// Bounds of the file-descriptor table, and the `/proc` it reads (where a process first
    /// seen in a syscall record, which carries no pid-namespace view, has it looked up too).
    pub fds: FdConfig,
}

impl Default for TableConfig {
    fn default() -> Self {
        Self {
            capacity: 65_536,
            max_ancestors: 8,
            exit_grace_ns: 2_000_000_000,
            host_mnt_ns: host_mnt_ns(),
            fds: FdConfig::default(),
        }
    }
}

/// The node's mount namespace: pid 1's (the DaemonSet shares the node's pids and has
/// CAP_SYS_PTRACE to read it). Where pid 1's is unreadable (a sandbox whose pid 1 is not
/// traceable), the agent's own: right when the agent runs on the node itself, which is the
/// only place such a pid 1 leaves it.
pub fn host_mnt_ns() -> u32 {
    let proc = Path::new("/proc");
    match proc_fs::ns_inode(proc, 1, "mnt") {
        0 => {
            let own = proc_fs::ns_inode(proc, std::process::id(), "mnt");
            tracing::debug!(
                own,
                "cannot read /proc/1/ns/mnt: taking the agent's own mount namespace for the node's"
            );
            own
        }
        ns => ns,
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
/// A process's ancestors, parent first.
type Chain = Arc<[Arc<Process>]>;

pub struct ProcessTable {
    cfg: TableConfig,
    procs: FastMap<u32, Arc<Process>>,
    /// Exited processes in exit order, removed after the grace period.
    exited: VecDeque<(u64, u32)>,
    /// Order of insertion for eviction under pressure (pid, start_ts); stale entries skipped.
    order: VecDeque<(u32, u64)>,
    stats: TableStats,
    fds: FdTable,
    /// Ancestor chains already built, by the pid they start from, with the table generation
    /// they were built in: every event of a process carries its ancestors, and rebuilding the
    /// chain (a lookup and a reference count per level) for each was a tenth of the agent's
    /// work on a syscall-heavy node. Any change to the table starts a new generation.
    chains: FastMap<u32, (u64, Chain)>,
    generation: u64,
    /// The chain of a process whose parent is not known, shared (an empty `Arc<[_]>` is
    /// still an allocation).
    no_ancestors: Chain,
}

impl ProcessTable {
    pub fn new(cfg: TableConfig) -> Self {
        Self {
            fds: FdTable::new(cfg.fds.clone()),
            cfg,
            procs: FastMap::default(),
            exited: VecDeque::new(),
            order: VecDeque::new(),
            stats: TableStats::default(),
            chains: FastMap::default(),
            generation: 0,
            no_ancestors: Arc::new([]),
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
            if let Some(mut p) = read_process(proc_root, pid, boot_ns) {
                // Approximate for a process that entered a namespace after its exec: it is
                // judged by where it is now.
                let cgroups = std::fs::read_to_string(proc_root.join(format!("{pid}/cgroup")))
                    .unwrap_or_default();
                let in_container = cgroup::container_from_proc_cgroup(&cgroups).is_some();
                p.exe_from_host =
                    self.exe_is_the_nodes(p.mnt_ns, in_container, p.exe_layer.is_some());
                self.insert(p);
                n += 1;
            }
        }
        self.fds.bootstrap(proc_root);
        self.cfg.fds.proc_root = proc_root.to_path_buf();
        Ok(n)
    }

    /// Whether an exec loaded one of the node's own files: it happened in the node's mount
    /// namespace, or (a service the init system sandboxed in a mount namespace of its own) in
    /// a host cgroup from a file not on overlayfs. A container is neither.
    fn exe_is_the_nodes(&self, mnt_ns: u32, in_container: bool, on_overlay: bool) -> bool {
        (self.cfg.host_mnt_ns != 0 && mnt_ns == self.cfg.host_mnt_ns)
            || (!on_overlay && !in_container)
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
        self.put(p.pid, Arc::new(p));
        while self.procs.len() > self.cfg.capacity {
            self.evict_one();
        }
    }

    fn evict_one(&mut self) {
        // Exited processes first, oldest exit first.
        while let Some((_, pid)) = self.exited.pop_front() {
            if self.procs.get(&pid).is_some_and(|p| p.exited_ts.is_some()) {
                self.take(pid);
                self.stats.evictions += 1;
                return;
            }
        }
        // Then the oldest inserted that is still the same process.
        while let Some((pid, start)) = self.order.pop_front() {
            if self.procs.get(&pid).is_some_and(|p| p.start_ts == start) {
                self.take(pid);
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
                self.take(pid);
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
        // Syscall records leave the pid-namespace view to the table (it never changes in a
        // process's life): ask /proc for a process the table missed.
        let (vpid, pid_ns) = if ev.vpid == 0 {
            proc_fs::pid_view(&self.cfg.fds.proc_root, ev.tgid, ev.ts)
        } else {
            (ev.vpid, ev.pid_ns)
        };
        let p = Process {
            pid: ev.tgid,
            comm: ev.comm.clone(),
            uid: ev.uid,
            gid: ev.gid,
            euid: ev.euid,
            start_ts: ev.ts,
            cgroup_id: ev.cgroup_id,
            pid_ns,
            mnt_ns: ev.mnt_ns,
            vpid,
            loginuid: u32::MAX,
            ..Default::default()
        };
        self.insert(p);
        self.procs[&ev.tgid].clone()
    }

    /// Every change to the map goes through here or [`Self::take`]: a new generation.
    fn put(&mut self, pid: u32, p: Arc<Process>) {
        self.generation += 1;
        self.procs.insert(pid, p);
    }

    fn take(&mut self, pid: u32) {
        self.generation += 1;
        self.procs.remove(&pid);
        self.chains.remove(&pid);
    }

    /// The ancestors from `ppid` up, parent first: the chain built in this generation, or a
    /// new one.
    fn ancestors(&mut self, ppid: u32) -> Chain {
        if let Some((generation, chain)) = self.chains.get(&ppid)
            && *generation == self.generation
        {
            return chain.clone();
        }
        let mut out = Vec::new();
        let mut pid = ppid;
        while pid != 0 && out.len() < self.cfg.max_ancestors {
            let Some(p) = self.procs.get(&pid) else {
                break;
            };
            out.push(p.clone());
            if p.ppid == pid {
                break;
            }
            pid = p.ppid;
        }
        if out.is_empty() {
            return self.no_ancestors.clone();
        }
        let chain: Chain = out.into();
        // Only for a pid in the table, so that the cache goes with the process.
        if self.procs.contains_key(&ppid) {
            self.chains.insert(ppid, (self.generation, chain.clone()));
        }
        chain
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
        exec_arguments(&mut ev, &process);
        resolve_paths(&mut ev, process.cwd.as_deref(), &self.fds);
        let fd = self.fds.observe(&ev);
        if ev.vpid == 0 {
            // A syscall record: the view the table holds (from the exec, the fork, /proc).
            ev.vpid = process.vpid;
            ev.pid_ns = process.pid_ns;
        } else if process.vpid == 0 {
            // A process whose view the table lacked (its fork's read of the child failed, or
            // so did /proc) learns it from its first record that has it (exec, exit).
            let p = Arc::make_mut(&mut process);
            p.vpid = ev.vpid;
            p.pid_ns = ev.pid_ns;
            self.put(ev.tgid, process.clone());
        }
        match &ev.kind {
            EventKind::Exec(exec) => {
                let p = Arc::make_mut(&mut process);
                // A file outside the task's root (runc's detached clone of itself) is shown
                // by its path within its file system: still the file that ran.
                p.exe = match &exec.exe_file {
                    Some(f) if !f.truncated => f.path.clone(),
                    _ => exec.filename.clone(),
                };
                p.exe_requested = exec.filename.clone();
                p.exe_from_host = self.exe_is_the_nodes(
                    ev.mnt_ns,
                    // The root cgroup's name is empty: a host process.
                    cgroup::container_from_path(&exec.cgroup).is_some(),
                    exec.exe_layer.is_some(),
                );
                p.args = exec.args.clone();
                p.args_truncated = exec.args_truncated;
                p.exec_env = exec.env.clone();
                p.exe_name = exec.exe_name.clone();
                p.interpreted = exec.interpreted;
                p.exe_elf32 = exec.elf32;
                p.exe_layer = exec.exe_layer;
                p.exe_mount = exec.exe_mount;
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
                p.stdio = self.fds.stdio(ev.tgid, &exec.stdio);
                self.put(ev.tgid, process.clone());
            }
            EventKind::Fork(fork) if !fork.is_thread => {
                // The kernel's read of the child's view failed (rare): /proc's, while the
                // child is new, rather than a vpid of 0 on its records until it execs.
                let (vpid, pid_ns) = match fork.child_vpid {
                    0 => proc_fs::pid_view(&self.cfg.fds.proc_root, fork.child_tgid, ev.ts),
                    vpid => (vpid, fork.child_pid_ns),
                };
                let parent = &process;
                let child = Process {
                    pid: fork.child_tgid,
                    ppid: ev.tgid,
                    comm: parent.comm.clone(),
                    exe: parent.exe.clone(),
                    exe_requested: parent.exe_requested.clone(),
                    exe_from_host: parent.exe_from_host,
                    args: parent.args.clone(),
                    args_truncated: parent.args_truncated,
                    cwd: parent.cwd.clone(),
                    uid: ev.uid,
                    gid: ev.gid,
                    euid: ev.euid,
                    start_ts: ev.ts,
                    exec_ts: parent.exec_ts,
                    cgroup_id: ev.cgroup_id,
                    // The child's own: a parent that made a new pid namespace for its
                    // children (a container runtime) is in another one.
                    pid_ns,
                    mnt_ns: ev.mnt_ns,
                    vpid,
                    tty: parent.tty,
                    loginuid: parent.loginuid,
                    exe_name: parent.exe_name.clone(),
                    interpreted: parent.interpreted,
                    exe_elf32: parent.exe_elf32,
                    exe_layer: parent.exe_layer,
                    exe_mount: parent.exe_mount,
                    exec_env: parent.exec_env.clone(),
                    cgroup: parent.cgroup.clone(),
                    from_procfs: false,
                    exited_ts: None,
                    stdio: parent.stdio.clone(),
                };
                self.insert(child);
            }
            EventKind::Exit(_) => {
                let p = Arc::make_mut(&mut process);
                p.exited_ts = Some(ev.ts);
                self.exited.push_back((ev.ts, ev.tgid));
                self.put(ev.tgid, process.clone());
            }
            EventKind::Syscall(sc) if sc.ret == 0 && sc.name == "fchdir" => {
                if let Some(dir) = sc.file.as_ref().and_then(|f| f.file_path()) {
                    Arc::make_mut(&mut process).cwd = Some(dir.to_string());
                    self.put(ev.tgid, process.clone());
                }
            }
            EventKind::Syscall(sc) if sc.ret == 0 && sc.name == "chdir" => {
                if let Some(ArgValue::Path {
                    resolved: Some(dir),
                    ..
                }) = sc.arg("filename")
                {
                    Arc::make_mut(&mut process).cwd = Some(dir.clone());
                    self.put(ev.tgid, process.clone());
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
                self.put(ev.tgid, process.clone());
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

/// A successful execve's registers belong to the new program by the time it returns, so the
/// kernel captures nothing for it: its path and argv are the exec record's, which the table
/// has just applied (it comes first, from inside the exec).
fn exec_arguments(ev: &mut Event, p: &Process) {
    let EventKind::Syscall(sc) = &mut ev.kind else {
        return;
    };
    if sc.ret != 0 || !matches!(&*sc.name, "execve" | "execveat") || p.exec_ts == 0 {
        return;
    }
    for a in &mut sc.args {
        match &mut a.value {
            ArgValue::Path { raw, resolved } if raw.is_empty() => {
                raw.clone_from(&p.exe_requested);
                *resolved = Some(p.exe.clone());
            }
            ArgValue::Argv(argv) if argv.is_empty() => argv.clone_from(&p.args),
            _ => {}
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
    let join = |raw: &str| cwd.map(|cwd| osprey_model::path::normalize(&format!("{cwd}/{raw}")));
    match &mut ev.kind {
        EventKind::Exec(exec) if !exec.filename.starts_with('/') => {
            if let Some(p) = join(&exec.filename) {
                exec.filename = p;
            }
        }
        EventKind::Syscall(sc) => {
            let mut dirfd = None;
            for a in &mut sc.args {
                match &mut a.value {
                    ArgValue::Fd(fd) if a.name.ends_with("dfd") => dirfd = Some(*fd),
                    ArgValue::Path { raw, resolved } => {
                        if resolved.is_none() && !raw.is_empty() {
                            *resolved = match dirfd.filter(|fd| *fd != AT_FDCWD) {
                                Some(fd) => fds::join_dirfd(fds, tgid, fd, raw),
                                None => join(raw),
                            };
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
