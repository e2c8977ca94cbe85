//! The file-descriptor table: per process, what each descriptor is (a file and its path, an
//! IP socket and its protocol and ends, a unix socket, a pipe...), so that a syscall that only
//! names an fd (`dup2(3, 0)`, `fchmod(3, ...)`, `connect(3, ...)`) is judged with what fd 3 is.
//!
//! Kept current from the syscalls that make, change and drop descriptors (open family, socket,
//! accept, connect, bind, listen, dup family, `fcntl(F_DUPFD*/F_SETFD)`, close, close_range,
//! memfd_create, pidfd_open, pidfd_getfd, open_by_handle_at), exec (close-on-exec descriptors
//! go) and fork (the child starts with a copy, shared until either side changes it). Processes
//! that were running before the agent, and descriptors made by syscalls the sensor does not
//! see (pipe, socketpair, SCM_RIGHTS, io_uring), are read from `/proc/PID/fd` and the
//! process's `/proc/PID/net/*` tables: at start-up for every process, later on demand for an
//! fd an event uses that the table does not know, within a budget per second (always for a
//! descriptor duplicated onto stdin, stdout or stderr). A process already gone by then leaves
//! the fd unknown: a short-lived child's pipe is not taken for a socket, and a reverse shell,
//! which lives on with its socket, is read in time. A dup's own record carries the file the
//! kernel found behind the descriptor at the syscall's exit (`Syscall.file`): a file, pipe or
//! anonymous inode is taken from it, and /proc is read only for a socket, whose ends are in
//! /proc/net (a shell's redirections made a /proc read each, 15% of the agent's CPU during a
//! build).
//!
//! Bounded per process and in total; what is evicted to stay within the bounds is counted
//! (`osprey_fd_table_evictions_total`). An fd the table does not know reads as unset, never as
//! a guess.

use std::{
    collections::HashMap,
    net::IpAddr,
    path::{Path, PathBuf},
    sync::Arc,
};

use crate::fast_hash::FastMap;
use osprey_model::{
    event::{ArgValue, Event, EventKind, KernelFile, KernelFileOf, SockAddr, Syscall},
    fd::{FdEntry, FdKind, L4Proto},
    process::Stdio,
};

/// The syscalls the table follows, captured whatever the rules name: what makes and changes
/// descriptors. (pipe, pipe2 and socketpair write their descriptors' numbers to user memory,
/// which the capture plan does not read back; /proc tells what such an fd is.) `close` and
/// `close_range` are followed when a rule asks for them but not captured for the table alone:
/// they are as frequent as opens, and doubling the event rate made the agent drop events at
/// 100k opens/s (tests/kernel_operate.rs). A closed number's entry stays until the number is
/// reused by a syscall the table sees, the process exits, or the per-process bound evicts it;
/// for a syscall's own descriptor argument the kernel's file (`Syscall.file`) is used first.
pub const SYSCALLS: &[&str] = &[
    "open",
    "openat",
    "openat2",
    "creat",
    "memfd_create",
    "socket",
    "connect",
    "bind",
    "listen",
    "accept",
    "accept4",
    "dup",
    "dup2",
    "dup3",
    "fcntl",
    "pidfd_open",
    "pidfd_getfd",
    "open_by_handle_at",
];

/// Keeps the fcntl calls the table follows (a successful F_DUPFD, F_DUPFD_CLOEXEC or
/// F_SETFD: `agent_common::open_filter::FCNTL_CMDS`) in the kernel filter whatever the rules
/// say; the kernel passes over the other commands when no rule wants them.
pub fn keep_followed_calls(filter: &mut osprey_engine::compile::KernelFilter) {
    filter.capture_calls("fcntl", |class| class & 1 != 0 && (class >> 1) & 3 != 0);
}

/// Bounds of the table.
#[derive(Clone, Debug)]
pub struct FdConfig {
    /// Most descriptors kept per process; beyond it the least recently used one goes.
    pub per_process: usize,
    /// Most descriptors kept over all processes; beyond it the largest table loses its least
    /// recently used one (a process opening thousands of sockets evicts its own first).
    pub total: usize,
    /// `/proc/PID/fd` reads for descriptors the table did not see being made, per second.
    pub procfs_lookups_per_sec: u32,
    /// The procfs root (`/proc`; tests give their own).
    pub proc_root: PathBuf,
}

impl Default for FdConfig {
    fn default() -> Self {
        Self {
            per_process: 1024,
            total: 262_144,
            procfs_lookups_per_sec: 200,
            proc_root: PathBuf::from("/proc"),
        }
    }
}

/// Counters of the table, exported as metrics.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct FdStats {
    /// Descriptors known now, over all processes.
    pub entries: usize,
    /// Descriptors dropped to stay within the bounds.
    pub evictions: u64,
    /// `/proc/PID/fd` look-ups made for descriptors the table had not seen being made.
    pub procfs_lookups: u64,
    /// Look-ups skipped because the per-second budget was spent.
    pub procfs_lookups_skipped: u64,
}

#[derive(Clone, Debug)]
struct Slot {
    entry: FdEntry,
    /// The table's clock when the entry was last made or used, for least-recently-used eviction.
    used: u64,
}

type Fds = FastMap<i64, Slot>;

/// Every process's descriptors. Not thread-safe: the pipeline owns it in one task.
pub struct FdTable {
    cfg: FdConfig,
    /// By tgid. Shared between a parent and a forked child until one of them changes it.
    procs: FastMap<u32, Arc<Fds>>,
    /// Descriptors over all processes (a forked child's shared copy counts as its own).
    total: usize,
    clock: u64,
    stats: FdStats,
    /// The second of the look-up budget and what is left of it.
    budget: (u64, u32),
}

const AT_FDCWD: i64 = -100;
const O_CLOEXEC: u64 = 0o2_000_000;
const O_DIRECTORY: u64 = 0o200_000;
const SOCK_CLOEXEC: u64 = 0o2_000_000;
const F_DUPFD: i64 = 0;
const F_SETFD: i64 = 2;
const F_DUPFD_CLOEXEC: i64 = 1030;
const CLOSE_RANGE_CLOEXEC: u64 = 4;

impl FdTable {
    pub fn new(cfg: FdConfig) -> Self {
        Self {
            cfg,
            procs: FastMap::default(),
            total: 0,
            clock: 0,
            stats: FdStats::default(),
            budget: (0, 0),
        }
    }

    pub fn stats(&self) -> FdStats {
        FdStats {
            entries: self.total,
            ..self.stats
        }
    }

    /// The entry for `fd` of process `tgid`, if known.
    pub fn get(&self, tgid: u32, fd: i64) -> Option<&FdEntry> {
        self.procs.get(&tgid)?.get(&fd).map(|s| &s.entry)
    }

    /// Reads the descriptors of every process under procfs root `root` (start-up); later
    /// look-ups read the same root.
    pub fn bootstrap(&mut self, root: &Path) -> usize {
        self.cfg.proc_root = root.to_path_buf();
        let root = root.to_path_buf();
        let Ok(dir) = std::fs::read_dir(&root) else {
            return 0;
        };
        let mut nets = NetCache::default();
        let mut n = 0;
        for entry in dir.flatten() {
            let Some(pid) = entry.file_name().to_str().and_then(|s| s.parse().ok()) else {
                continue;
            };
            n += self.read_process(&root, pid, &mut nets);
        }
        n
    }

    fn read_process(&mut self, root: &Path, pid: u32, nets: &mut NetCache) -> usize {
        let Ok(dir) = std::fs::read_dir(root.join(format!("{pid}/fd"))) else {
            return 0;
        };
        let mut n = 0;
        for e in dir.flatten() {
            let Some(fd) = e.file_name().to_str().and_then(|s| s.parse::<i64>().ok()) else {
                continue;
            };
            if let Some(entry) = read_fd(root, pid, fd, nets) {
                self.put(pid, entry);
                n += 1;
            }
        }
        n
    }

    /// A process exited: its descriptors are gone.
    pub fn remove_process(&mut self, tgid: u32) {
        if let Some(t) = self.procs.remove(&tgid) {
            self.total -= t.len();
        }
    }

    /// A new process (not a thread): it starts with its parent's descriptors. A child made
    /// with CLONE_FILES but not CLONE_THREAD would share the table; the fork event does not
    /// say, so it gets a copy, which is what it sees until either side changes it.
    pub fn fork(&mut self, parent: u32, child: u32) {
        self.remove_process(child);
        if let Some(t) = self.procs.get(&parent) {
            let t = t.clone();
            self.total += t.len();
            self.procs.insert(child, t);
        }
        self.enforce_total();
    }

    /// A successful exec: close-on-exec descriptors are closed.
    pub fn exec(&mut self, tgid: u32) {
        if let Some(t) = self.procs.get_mut(&tgid)
            && t.values().any(|s| s.entry.cloexec)
        {
            let before = t.len();
            Arc::make_mut(t).retain(|_, s| !s.entry.cloexec);
            self.total -= before - t.len();
        }
    }

    /// The standard descriptors of `tgid` as the kernel found them at its exec (`kinds`),
    /// named from the table. The kernel's kind is the truth: a table entry of another kind is
    /// stale (its number was closed, which the table does not follow, and reused by a syscall
    /// it does not see: a socket received with SCM_RIGHTS, a pipe) and is replaced, from
    /// /proc for a socket (within the budget, for its ends), else by a nameless entry.
    pub fn stdio(&mut self, tgid: u32, kinds: &[Option<FdKind>; 3]) -> [Option<Stdio>; 3] {
        let same = |table: FdKind, kernel: FdKind| {
            table == kernel || (kernel == FdKind::File && table == FdKind::Memfd)
        };
        std::array::from_fn(|fd| {
            let num = fd as i64;
            let Some(kind) = kinds[fd] else {
                self.drop_fd(tgid, num);
                return None;
            };
            let entry = match self.get(tgid, num) {
                Some(e) if same(e.kind, kind) => e.clone(),
                _ => {
                    let fresh = kind
                        .is_socket()
                        .then(|| self.procfs_within_budget(tgid, num))
                        .flatten()
                        .filter(|e| e.kind == kind);
                    self.put(tgid, fresh.unwrap_or_else(|| FdEntry::new(num, kind)))
                }
            };
            Some(Stdio {
                kind: entry.kind,
                name: entry.name(),
            })
        })
    }

    /// Applies one event and returns the entry of the descriptor it uses: for a syscall that
    /// makes one, the new descriptor; for one that uses or drops one, the descriptor as it was
    /// (`dup2(3, 0)` carries fd 3's entry, `close(3)` the entry it closed).
    pub fn observe(&mut self, ev: &Event) -> Option<FdEntry> {
        let sc = match &ev.kind {
            EventKind::Syscall(sc) => sc,
            EventKind::Exec(_) => {
                self.exec(ev.tgid);
                return None;
            }
            EventKind::Fork(f) if !f.is_thread => {
                self.fork(ev.tgid, f.child_tgid);
                return None;
            }
            EventKind::Exit(_) => {
                self.remove_process(ev.tgid);
                return None;
            }
            _ => return None,
        };
        // A ring's registered files are not the process's descriptors: an index into them,
        // or a result put into one of their slots, says nothing of descriptor N.
        if sc
            .io_uring
            .as_ref()
            .is_some_and(|r| r.fixed_file || r.direct)
        {
            return None;
        }
        self.clock += 1;
        let tgid = ev.tgid;
        let ok = sc.ret >= 0;
        let ret = sc.ret;
        let fd_arg = |name: &str| match sc.arg(name) {
            Some(ArgValue::Fd(fd)) => Some(*fd),
            _ => None,
        };
        let flags = |name: &str| sc.arg(name).and_then(ArgValue::as_i64).unwrap_or(0) as u64;
        // The file the kernel found at the syscall's exit: for a dup, behind the descriptor it
        // returned; for fcntl, behind its argument.
        let kernel = sc
            .file
            .as_ref()
            .filter(|f| matches!(f.of, KernelFileOf::FdArg | KernelFileOf::Returned));
        match &*sc.name {
            "open" | "openat" | "openat2" | "creat" => {
                if !ok {
                    return None;
                }
                let open_flags = flags("flags") | flags("how");
                let kind = if open_flags & O_DIRECTORY != 0 {
                    FdKind::Directory
                } else {
                    FdKind::File
                };
                let mut e = FdEntry::new(ret, kind);
                e.path = path_of(sc, &["filename", "pathname"]).unwrap_or_default();
                e.cloexec = open_flags & O_CLOEXEC != 0;
                Some(self.put(tgid, e))
            }
            "memfd_create" => {
                if !ok {
                    return None;
                }
                let mut e = FdEntry::new(ret, FdKind::Memfd);
                if let Some(ArgValue::Str(n)) = sc.arg("uname") {
                    e.path = format!("memfd:{n}").into();
                }
                e.cloexec = flags("flags") & 1 != 0; // MFD_CLOEXEC
                Some(self.put(tgid, e))
            }
            "socket" => {
                if !ok {
                    return None;
                }
                Some(self.put(tgid, socket_entry(sc)))
            }
            "connect" | "bind" => {
                let fd = fd_arg("fd")?;
                let addr = match sc.arg(if sc.name == "connect" {
                    "uservaddr"
                } else {
                    "umyaddr"
                }) {
                    Some(ArgValue::SockAddr(sa)) => Some(sa.clone()),
                    _ => None,
                };
                let mut e = self
                    .lookup(tgid, fd)
                    .or_else(|| addr.as_ref().map(|sa| FdEntry::new(fd, sock_kind(sa))))?;
                // EINPROGRESS: a non-blocking connect under way still names its peer.
                let done = ok || sc.errno() == Some(115);
                if done && let Some(sa) = &addr {
                    match sa {
                        SockAddr::Inet { ip, port } => {
                            if sc.name == "connect" {
                                e.remote = Some((*ip, *port));
                            } else {
                                e.local = Some((*ip, *port));
                                e.local_is_server = true;
                            }
                        }
                        SockAddr::Unix { path } => e.path = path.as_str().into(),
                        SockAddr::Other { .. } => {}
                    }
                }
                Some(self.put(tgid, e))
            }
            "listen" => {
                let fd = fd_arg("fd")?;
                let mut e = self.lookup(tgid, fd)?;
                if ok {
                    e.local_is_server = true;
                    self.put(tgid, e.clone());
                }
                Some(e)
            }
            "accept" | "accept4" => {
                let listening = fd_arg("fd").and_then(|fd| self.lookup(tgid, fd));
                if !ok {
                    return listening;
                }
                let peer = match sc.arg("upeer_sockaddr") {
                    Some(ArgValue::SockAddr(sa)) => Some(sa),
                    _ => None,
                };
                let kind = listening
                    .as_ref()
                    .map(|l| l.kind)
                    .or_else(|| peer.map(sock_kind))
                    .unwrap_or(FdKind::Socket);
                let mut e = FdEntry::new(ret, kind);
                if let Some(l) = &listening {
                    e.l4proto = l.l4proto;
                    e.local = l.local;
                    e.path = l.path.clone();
                }
                if let Some(SockAddr::Inet { ip, port }) = peer {
                    e.remote = Some((*ip, *port));
                }
                e.local_is_server = true;
                e.cloexec = flags("flags") & SOCK_CLOEXEC != 0;
                Some(self.put(tgid, e))
            }
            "dup" | "dup2" | "dup3" => {
                let old = fd_arg("oldfd").or_else(|| fd_arg("fildes"))?;
                let cloexec = sc.name == "dup3" && flags("flags") & O_CLOEXEC != 0;
                self.dup(tgid, old, ok.then_some(ret), cloexec, kernel)
            }
            "fcntl" => {
                let fd = fd_arg("fd")?;
                let cmd = sc.arg("cmd").and_then(ArgValue::as_i64).unwrap_or(-1);
                match cmd {
                    F_DUPFD | F_DUPFD_CLOEXEC => {
                        self.dup(tgid, fd, ok.then_some(ret), cmd == F_DUPFD_CLOEXEC, kernel)
                    }
                    F_SETFD => {
                        let mut e = self.lookup(tgid, fd)?;
                        if ok {
                            e.cloexec = flags("arg") & 1 != 0;
                            self.put(tgid, e.clone());
                        }
                        Some(e)
                    }
                    _ => self.lookup(tgid, fd),
                }
            }
            "close" => {
                let fd = fd_arg("fd")?;
                let e = self.get(tgid, fd).cloned();
                // EBADF: it was not open. Any other result: Linux closed it anyway.
                if sc.errno() != Some(9) {
                    self.drop_fd(tgid, fd);
                }
                e
            }
            "close_range" => {
                let first = sc.arg("fd").and_then(ArgValue::as_i64).unwrap_or(0);
                let last = sc.arg("max_fd").and_then(ArgValue::as_i64).unwrap_or(0) as u32;
                if ok && let Some(t) = self.procs.get_mut(&tgid) {
                    let in_range = |fd: i64| (first..=i64::from(last)).contains(&fd);
                    let t = Arc::make_mut(t);
                    if flags("flags") & CLOSE_RANGE_CLOEXEC != 0 {
                        t.iter_mut()
                            .filter(|(fd, _)| in_range(**fd))
                            .for_each(|(_, s)| s.entry.cloexec = true);
                    } else {
                        let before = t.len();
                        t.retain(|fd, _| !in_range(*fd));
                        self.total -= before - t.len();
                    }
                }
                None
            }
            "pidfd_getfd" => {
                let pidfd = fd_arg("pidfd");
                let used = pidfd.and_then(|fd| self.lookup(tgid, fd));
                if !ok {
                    return used;
                }
                // The descriptor is a copy of the target's: what the table knows of it there,
                // else what /proc says of the copy.
                let target = used.as_ref().and_then(|p| p.target_pid);
                let their_fd = sc.arg("fd").and_then(ArgValue::as_i64).unwrap_or(-1);
                let theirs = target.and_then(|pid| self.get(pid, their_fd).cloned());
                let mut e = match theirs.or_else(|| self.procfs_within_budget(tgid, ret)) {
                    Some(e) => e,
                    None => return used,
                };
                e.num = ret;
                // pidfd_getfd always sets close-on-exec on the new descriptor.
                e.cloexec = true;
                Some(self.put(tgid, e))
            }
            "pidfd_open" | "fsopen" | "fsmount" | "open_by_handle_at" | "userfaultfd"
            | "io_uring_setup" => {
                // A new descriptor whose name only /proc can tell (the file a handle opened,
                // the descriptor taken from another process).
                let used = sc
                    .args
                    .iter()
                    .find(|a| matches!(a.value, ArgValue::Fd(_)) && !a.name.ends_with("dfd"))
                    .and_then(|a| a.value.as_i64());
                if !ok {
                    return used.and_then(|fd| self.lookup(tgid, fd));
                }
                let from_procfs = if sc.name == "pidfd_open" {
                    None
                } else {
                    self.procfs_within_budget(tgid, ret)
                };
                let e = match from_procfs {
                    Some(e) => e,
                    None => {
                        let mut e = FdEntry::new(ret, FdKind::AnonInode);
                        if sc.name == "pidfd_open" {
                            e.target_pid = sc
                                .arg("pid")
                                .and_then(ArgValue::as_i64)
                                .and_then(|p| u32::try_from(p).ok());
                        }
                        e.path = match &*sc.name {
                            "pidfd_open" => "anon_inode:[pidfd]".into(),
                            "fsopen" | "fsmount" => "anon_inode:[fscontext]".into(),
                            "io_uring_setup" => "anon_inode:[io_uring]".into(),
                            "userfaultfd" => "anon_inode:[userfaultfd]".into(),
                            _ => Arc::default(),
                        };
                        e
                    }
                };
                Some(self.put(tgid, e))
            }
            _ => {
                // Any other syscall: the first fd argument that is not a directory fd for a
                // path (fchmod, finit_module, setns, fchdir, fsconfig, kexec_file_load...).
                let fd = sc
                    .args
                    .iter()
                    .find(|a| matches!(a.value, ArgValue::Fd(_)) && !a.name.ends_with("dfd"))
                    .and_then(|a| a.value.as_i64())?;
                self.lookup(tgid, fd)
            }
        }
    }

    /// The directory an fd names, for resolving a path relative to it (`openat(dirfd, ...)`).
    pub fn directory(&self, tgid: u32, fd: i64) -> Option<&str> {
        let e = self.get(tgid, fd)?;
        (e.kind == FdKind::Directory && e.path.starts_with('/')).then_some(&*e.path)
    }

    /// dup family: `new` (the result) becomes a copy of `old`. Returns `old`'s entry.
    /// `kernel` is the file the kernel found at the syscall's exit: behind the descriptor a dup
    /// returned (`Returned`), or behind `old` (`FdArg`: an fcntl's, or a failed dup's).
    fn dup(
        &mut self,
        tgid: u32,
        old: i64,
        new: Option<i64>,
        cloexec: bool,
        kernel: Option<&KernelFile>,
    ) -> Option<FdEntry> {
        let Some(new) = new else {
            return self.lookup_or_kernel(tgid, old, kernel);
        };
        // What `new` is now is what `old` was. The kernel, at the dup's exit, and /proc, once
        // it is done, tell the truth about `new`; a descriptor put onto stdin, stdout or
        // stderr is what decides rules like the reverse shell's, so that one is taken from
        // them whatever the table says (a pipe made by pipe(2), which the sensor cannot see
        // the numbers of, may sit where a closed socket once was): from the kernel's record,
        // or from /proc for a socket (its ends) or a record that does not say.
        let entry = if new <= 2 {
            // Only the new descriptor's own file: the old number's may have been replaced by
            // another thread between the dup and the walk (an fcntl's record has only that).
            let returned = kernel.filter(|f| f.of == KernelFileOf::Returned);
            returned
                .and_then(|f| entry_from_kernel(new, f))
                .or_else(|| self.stdio_from_procfs(tgid, old, new))
        } else {
            self.lookup_or_kernel(tgid, old, kernel)
        };
        let Some(mut entry) = entry else {
            self.drop_fd(tgid, new);
            return None;
        };
        let old_entry = FdEntry {
            num: old,
            ..entry.clone()
        };
        entry.num = new;
        entry.cloexec = cloexec;
        entry.from_procfs = false;
        self.put(tgid, entry);
        Some(old_entry)
    }

    /// What descriptor `new` of `tgid`, just made a copy of `old` on stdin, stdout or stderr,
    /// is by /proc.
    fn stdio_from_procfs(&mut self, tgid: u32, old: i64, new: i64) -> Option<FdEntry> {
        let known = self.get(tgid, old).cloned();
        self.stats.procfs_lookups += 1;
        let root = self.cfg.proc_root.clone();
        match fd_link(&root, tgid, new) {
            // A file where the table holds a file or directory for `old`: what the table
            // holds (its path as the task sees it; /proc's is the agent's view), without
            // the stat and fdinfo reads a full look-up makes. A socket or pipe never
            // takes this road.
            Some(link)
                if is_path_link(&link)
                    && known
                        .as_ref()
                        .is_some_and(|k| matches!(k.kind, FdKind::File | FdKind::Directory)) =>
            {
                known
            }
            Some(link) => {
                // /proc names the object; keep what the table knows of its ends. A
                // socket whose family /proc could not tell (the process exited between
                // reading the link and reading its net tables) is whatever socket the
                // table knows.
                let read = entry_from_link(&root, tgid, new, &link, &mut NetCache::default());
                match (read, known) {
                    (Some(e), Some(k))
                        if k.kind == e.kind || e.kind == FdKind::Socket && k.kind.is_socket() =>
                    {
                        Some(k)
                    }
                    (Some(e), _) => Some(e),
                    (None, k) => k,
                }
            }
            None => known,
        }
    }

    /// The entry for `fd`, from the table or else from /proc (within the budget).
    fn lookup(&mut self, tgid: u32, fd: i64) -> Option<FdEntry> {
        if fd < 0 {
            return None;
        }
        if let Some(t) = self.procs.get_mut(&tgid)
            && t.contains_key(&fd)
        {
            let clock = self.clock;
            let t = Arc::make_mut(t);
            let s = t.get_mut(&fd)?;
            s.used = clock;
            return Some(s.entry.clone());
        }
        let e = self.procfs_within_budget(tgid, fd)?;
        Some(self.put(tgid, e))
    }

    /// [`Self::lookup`], the kernel's record of the file (`kernel`, for descriptor `fd`) taken
    /// before /proc for a descriptor the table does not know.
    fn lookup_or_kernel(
        &mut self,
        tgid: u32,
        fd: i64,
        kernel: Option<&KernelFile>,
    ) -> Option<FdEntry> {
        if fd >= 0
            && self.get(tgid, fd).is_none()
            && let Some(e) = kernel.and_then(|f| entry_from_kernel(fd, f))
        {
            return Some(self.put(tgid, e));
        }
        self.lookup(tgid, fd)
    }

    /// Reads one descriptor from /proc, if the budget allows.
    fn procfs_within_budget(&mut self, tgid: u32, fd: i64) -> Option<FdEntry> {
        let now = crate::process::boot_clock_ns() / 1_000_000_000;
        if self.budget.0 != now {
            self.budget = (now, self.cfg.procfs_lookups_per_sec);
        }
        if self.budget.1 == 0 {
            self.stats.procfs_lookups_skipped += 1;
            return None;
        }
        self.budget.1 -= 1;
        self.stats.procfs_lookups += 1;
        let root = self.cfg.proc_root.clone();
        read_fd(&root, tgid, fd, &mut NetCache::default())
    }

    fn drop_fd(&mut self, tgid: u32, fd: i64) {
        if let Some(t) = self.procs.get_mut(&tgid)
            && t.contains_key(&fd)
        {
            Arc::make_mut(t).remove(&fd);
            self.total -= 1;
        }
    }

    /// Stores `e` (replacing what had its number) and returns it.
    fn put(&mut self, tgid: u32, e: FdEntry) -> FdEntry {
        let clock = self.clock;
        let t = Arc::make_mut(self.procs.entry(tgid).or_default());
        let new = t
            .insert(
                e.num,
                Slot {
                    entry: e.clone(),
                    used: clock,
                },
            )
            .is_none();
        if new {
            self.total += 1;
        }
        if t.len() > self.cfg.per_process {
            evict_lru(t, e.num);
            self.stats.evictions += 1;
            self.total -= 1;
        }
        self.enforce_total();
        e
    }

    fn enforce_total(&mut self) {
        // Finding the largest table is O(processes): only paid past the bound.
        while self.total > self.cfg.total {
            let Some((_, t)) = self.procs.iter_mut().max_by_key(|(_, t)| t.len()) else {
                return;
            };
            evict_lru(Arc::make_mut(t), i64::MIN);
            self.stats.evictions += 1;
            self.total -= 1;
        }
    }
}

/// Drops the least recently used descriptor other than `keep`.
fn evict_lru(t: &mut Fds, keep: i64) {
    if let Some(fd) = t
        .iter()
        .filter(|(fd, _)| **fd != keep)
        .min_by_key(|(_, s)| s.used)
        .map(|(fd, _)| *fd)
    {
        t.remove(&fd);
    }
}

fn path_of(sc: &Syscall, names: &[&str]) -> Option<Arc<str>> {
    names.iter().find_map(|n| match sc.arg(n) {
        Some(ArgValue::Path { raw, resolved }) => Some(resolved.as_deref().unwrap_or(raw).into()),
        _ => None,
    })
}

fn sock_kind(sa: &SockAddr) -> FdKind {
    match sa {
        SockAddr::Inet {
            ip: IpAddr::V4(_), ..
        } => FdKind::Ipv4,
        SockAddr::Inet {
            ip: IpAddr::V6(_), ..
        } => FdKind::Ipv6,
        SockAddr::Unix { .. } => FdKind::Unix,
        SockAddr::Other { .. } => FdKind::Socket,
    }
}

fn socket_entry(sc: &Syscall) -> FdEntry {
    let family = match sc.arg("family") {
        Some(ArgValue::Enum { raw, .. }) => *raw,
        _ => -1,
    };
    let kind = FdKind::of_family(family);
    let ty = sc.arg("type").and_then(ArgValue::as_i64).unwrap_or(0) as u64;
    let mut e = FdEntry::new(sc.ret, kind);
    if kind.is_ip() {
        e.l4proto = match ty & 0xf {
            1 => Some(L4Proto::Tcp),
            2 => Some(L4Proto::Udp),
            3 => Some(L4Proto::Raw),
            _ => None,
        };
    }
    e.cloexec = ty & SOCK_CLOEXEC != 0;
    e
}

/// What a socket inode is, from a network namespace's `/proc/net` tables.
#[derive(Clone)]
struct NetSock {
    kind: FdKind,
    l4proto: Option<L4Proto>,
    local: Option<(IpAddr, u16)>,
    remote: Option<(IpAddr, u16)>,
    /// Listening, or a connection accepted on a listening port: the server's side.
    listening: bool,
    path: String,
}

/// Socket tables by network namespace, read at most once per bootstrap or look-up.
#[derive(Default)]
struct NetCache {
    by_ns: HashMap<String, HashMap<u64, NetSock>>,
}

impl NetCache {
    fn socket(&mut self, root: &Path, pid: u32, inode: u64) -> Option<NetSock> {
        let ns = std::fs::read_link(root.join(format!("{pid}/ns/net")))
            .map(|l| l.to_string_lossy().into_owned())
            .unwrap_or_default();
        let table = self
            .by_ns
            .entry(ns)
            .or_insert_with(|| read_net(&root.join(format!("{pid}/net"))));
        table.get(&inode).cloned()
    }
}

fn read_net(dir: &Path) -> HashMap<u64, NetSock> {
    let mut out = HashMap::new();
    for (file, kind, proto) in [
        ("tcp", FdKind::Ipv4, L4Proto::Tcp),
        ("udp", FdKind::Ipv4, L4Proto::Udp),
        ("raw", FdKind::Ipv4, L4Proto::Raw),
        ("tcp6", FdKind::Ipv6, L4Proto::Tcp),
        ("udp6", FdKind::Ipv6, L4Proto::Udp),
        ("raw6", FdKind::Ipv6, L4Proto::Raw),
    ] {
        let Ok(text) = std::fs::read_to_string(dir.join(file)) else {
            continue;
        };
        for line in text.lines().skip(1) {
            let f: Vec<&str> = line.split_whitespace().collect();
            let (Some(local), Some(remote), Some(state), Some(inode)) =
                (f.get(1), f.get(2), f.get(3), f.get(9))
            else {
                continue;
            };
            let Ok(inode) = inode.parse::<u64>() else {
                continue;
            };
            let remote =
                parse_hex_end(remote).filter(|(ip, port)| *port != 0 || !ip.is_unspecified());
            out.insert(
                inode,
                NetSock {
                    kind,
                    l4proto: Some(proto),
                    local: parse_hex_end(local),
                    remote,
                    // TCP_LISTEN is 0A.
                    listening: proto == L4Proto::Tcp && *state == "0A",
                    path: String::new(),
                },
            );
        }
    }
    // An accepted connection is ESTABLISHED like a client's: it is the server's side when its
    // local port is one a socket of the namespace listens on.
    let listening: std::collections::HashSet<u16> = out
        .values()
        .filter(|s| s.listening)
        .filter_map(|s| s.local.map(|(_, p)| p))
        .collect();
    for s in out.values_mut() {
        if !s.listening
            && s.l4proto == Some(L4Proto::Tcp)
            && s.local.is_some_and(|(_, p)| listening.contains(&p))
        {
            s.listening = true;
        }
    }
    if let Ok(text) = std::fs::read_to_string(dir.join("unix")) {
        for line in text.lines().skip(1) {
            let f: Vec<&str> = line.split_whitespace().collect();
            let Some(Ok(inode)) = f.get(6).map(|s| s.parse::<u64>()) else {
                continue;
            };
            out.insert(
                inode,
                NetSock {
                    kind: FdKind::Unix,
                    l4proto: None,
                    local: None,
                    remote: None,
                    listening: false,
                    path: f.get(7).map(|s| s.to_string()).unwrap_or_default(),
                },
            );
        }
    }
    out
}

/// `0100007F:1F90` (IPv4) or 32 hex digits (IPv6), in the kernel's byte order, and a port.
fn parse_hex_end(s: &str) -> Option<(IpAddr, u16)> {
    let (addr, port) = s.split_once(':')?;
    let port = u16::from_str_radix(port, 16).ok()?;
    let ip = match addr.len() {
        8 => IpAddr::V4(u32::from_str_radix(addr, 16).ok()?.swap_bytes().into()),
        32 => {
            let mut b = [0u8; 16];
            for (i, chunk) in b.chunks_mut(4).enumerate() {
                let w = u32::from_str_radix(&addr[i * 8..i * 8 + 8], 16).ok()?;
                chunk.copy_from_slice(&w.to_le_bytes());
            }
            IpAddr::V6(b.into())
        }
        _ => return None,
    };
    Some((ip, port))
}

/// One descriptor from `/proc/PID/fd/N`: what the link names.
fn read_fd(root: &Path, pid: u32, fd: i64, nets: &mut NetCache) -> Option<FdEntry> {
    let link = fd_link(root, pid, fd)?;
    let mut e = entry_from_link(root, pid, fd, &link, nets)?;
    e.cloexec = read_cloexec(root, pid, fd);
    Some(e)
}

/// Where `/proc/PID/fd/N` points: a path, or `socket:[INODE]`, `pipe:[INODE]`...
fn fd_link(root: &Path, pid: u32, fd: i64) -> Option<String> {
    let link = std::fs::read_link(root.join(format!("{pid}/fd/{fd}"))).ok()?;
    Some(link.to_string_lossy().into_owned())
}

/// The entry for descriptor `fd` from the file the kernel found behind it at a syscall's exit
/// (`Syscall.file`): what `/proc/PID/fd/N` would say, as the task sees it rather than the
/// agent, without reading /proc. None where the record is not the whole answer: a socket (its
/// ends are in /proc/net), a path cut short or outside the task's root, a file type the record
/// does not carry.
fn entry_from_kernel(fd: i64, f: &KernelFile) -> Option<FdEntry> {
    if f.truncated || f.outside_root || f.is_socket() {
        return None;
    }
    entry_from_name(fd, &f.path, || path_kind(f.file_type.into()))
}

/// The entry for descriptor `fd` named `link` as `/proc/PID/fd/N` names it (`pipe:[INODE]`,
/// `/memfd:NAME (deleted)`, `anon_inode:NAME`, a path), a path's kind from `path_kind`, asked
/// only for a path. None for a socket (its ends are elsewhere) and what it does not know.
fn entry_from_name(
    fd: i64,
    link: &str,
    path_kind: impl FnOnce() -> Option<FdKind>,
) -> Option<FdEntry> {
    let (kind, path) = if link.starts_with("pipe:[") {
        (FdKind::Pipe, link.into())
    } else if let Some(name) = link.strip_prefix("/memfd:") {
        let name = name.strip_suffix(" (deleted)").unwrap_or(name);
        (FdKind::Memfd, format!("memfd:{name}").into())
    } else if link.starts_with("anon_inode:") {
        (FdKind::AnonInode, link.into())
    } else if link.starts_with('/') {
        (path_kind()?, link.into())
    } else {
        return None;
    };
    let mut e = FdEntry::new(fd, kind);
    e.path = path;
    Some(e)
}

/// The kind of a descriptor whose link is a path, from its inode's file type (`S_IFMT >> 12`):
/// a named FIFO is a pipe, as Falco has it; None for no type or a socket's.
fn path_kind(file_type: u32) -> Option<FdKind> {
    match file_type {
        0 | agent_common::stdio::S_IFSOCK => None,
        agent_common::stdio::S_IFDIR => Some(FdKind::Directory),
        agent_common::stdio::S_IFIFO => Some(FdKind::Pipe),
        _ => Some(FdKind::File),
    }
}

/// Whether an fd link names a file or directory by its path (a memfd's starts with `/` too).
fn is_path_link(link: &str) -> bool {
    link.starts_with('/') && !link.starts_with("/memfd:")
}

/// The entry for descriptor `fd` whose `/proc` link is `link` (the close-on-exec flag, in
/// fdinfo, is left to the caller).
fn entry_from_link(
    root: &Path,
    pid: u32,
    fd: i64,
    link: &str,
    nets: &mut NetCache,
) -> Option<FdEntry> {
    let mut e = if let Some(ino) = link
        .strip_prefix("socket:[")
        .and_then(|s| s.strip_suffix(']'))
    {
        let ino: u64 = ino.parse().ok()?;
        match nets.socket(root, pid, ino) {
            Some(s) => {
                let mut e = FdEntry::new(fd, s.kind);
                e.l4proto = s.l4proto;
                e.local = s.local;
                e.remote = s.remote;
                e.local_is_server = s.listening;
                e.path = s.path.into();
                e
            }
            None => FdEntry::new(fd, FdKind::Socket),
        }
    } else {
        entry_from_name(fd, link, || {
            use std::os::unix::fs::MetadataExt as _;
            let file_type = std::fs::metadata(root.join(format!("{pid}/fd/{fd}")))
                .map_or(0, |m| m.mode() >> 12);
            Some(path_kind(file_type).unwrap_or(FdKind::File))
        })?
    };
    e.from_procfs = true;
    Some(e)
}

/// `flags:` in `/proc/PID/fdinfo/N` is octal; O_CLOEXEC is 02000000.
fn read_cloexec(root: &Path, pid: u32, fd: i64) -> bool {
    std::fs::read_to_string(root.join(format!("{pid}/fdinfo/{fd}")))
        .ok()
        .and_then(|t| {
            t.lines()
                .find_map(|l| l.strip_prefix("flags:"))
                .and_then(|v| u64::from_str_radix(v.trim(), 8).ok())
        })
        .is_some_and(|f| f & O_CLOEXEC != 0)
}

/// Resolves `path` against directory fd `dirfd` of `tgid` when the table knows the directory.
pub fn join_dirfd(table: &FdTable, tgid: u32, dirfd: i64, raw: &str) -> Option<String> {
    if dirfd == AT_FDCWD || raw.starts_with('/') {
        return None;
    }
    let dir = table.directory(tgid, dirfd)?;
    Some(osprey_model::path::normalize(&if raw.is_empty() {
        dir.to_string()
    } else {
        format!("{dir}/{raw}")
    }))
}

#[cfg(test)]
mod tests;
