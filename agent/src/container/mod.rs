//! Container and Kubernetes identity for every event.
//!
//! The container id comes from the process's cgroup: the kernel hands the sensor the cgroup
//! directory's names at exec (so even the first exec of a brand-new container, or one that
//! is already gone, carries it), else `/proc/PID/cgroup`, else the v2 directory whose inode is
//! the event's cgroup id. Name, image, privilege and pod come from the runtime's files
//! ([`runtime`]), read once per container and cached until its cgroup disappears.
//!
//! A process that joins a container's namespaces without joining its cgroup (`nsenter`) is
//! attributed through its mount namespace, which the table learns from the container's own
//! execs.
//!
//! [`Attach`] puts the identity on each event and holds the events of a container whose
//! runtime metadata is not readable yet, for at most [`ContainerConfig::metadata_wait`], so that
//! no alert leaves with a container id but no name, image or pod.

pub mod cgroup;
pub mod containerd;
pub mod runtime;

use std::{
    collections::{HashMap, HashSet, VecDeque},
    path::{Path, PathBuf},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use self::cgroup::CgroupMatch;
use crate::fast_hash::{FastMap, FastSet};
use osprey_engine::env::ContainerLookup;
use osprey_model::{
    ContainerInfo, Process,
    event::{Enriched, Event, EventKind},
};

/// How the container table works.
#[derive(Clone, Debug)]
pub struct ContainerConfig {
    /// The host's root file system as the agent sees it: `/` on a node, `/host` in a pod that
    /// mounts the node's root there. Runtime state, `/proc` and the cgroup mount are read
    /// below it.
    pub host_root: PathBuf,
    /// How long the events of a new container wait for its runtime metadata (see the README:
    /// the runtimes write it before the container's first process runs, so this bound is only
    /// reached when a runtime is slow or unknown).
    pub metadata_wait: Duration,
    /// How often a pending container's files are read again while events wait.
    pub retry_every: Duration,
    /// How often containers whose cgroup is gone are dropped.
    pub sweep_every: Duration,
    /// Most events held while waiting; beyond it the oldest go on with what is known.
    pub max_held: usize,
}

impl Default for ContainerConfig {
    fn default() -> Self {
        Self {
            host_root: PathBuf::from("/"),
            metadata_wait: Duration::from_millis(250),
            retry_every: Duration::from_millis(10),
            sweep_every: Duration::from_secs(10),
            max_held: 65_536,
        }
    }
}

/// Counters of the container table.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct ContainerStats {
    /// Containers known now.
    pub containers: usize,
    /// Containers whose metadata no runtime file gave within the wait bound.
    pub metadata_timeouts: u64,
    /// Events that waited for metadata.
    pub held: u64,
    /// Events let go before their container's metadata because too many were waiting.
    pub held_overflow: u64,
}

/// What the table tells about an event's container.
#[derive(Clone, Debug)]
pub struct Resolution {
    pub info: Arc<ContainerInfo>,
    /// The container is new and its runtime metadata is not readable yet.
    pub pending: bool,
}

#[derive(Debug)]
enum Meta {
    Pending { since: Instant, next_try: Instant },
    Done,
}

#[derive(Debug)]
struct Entry {
    hint: CgroupMatch,
    info: Arc<ContainerInfo>,
    meta: Meta,
    /// cgroup ids seen for it (the container's own, and its children's).
    cgroups: FastSet<u64>,
    last_used: Instant,
}

/// The cgroup v2 root's id: every process of a host without a v2 hierarchy of its own.
const ROOT_CGROUP_ID: u64 = 1;

/// What the sources say about an event's cgroup.
enum Place {
    Container(CgroupMatch),
    Host,
    /// No source could tell (the process and its cgroup are already gone).
    Unknown,
}

/// Where a (cgroup, mount namespace) pair belongs.
#[derive(Clone, Debug)]
enum Slot {
    Host,
    Container(Arc<str>),
}

#[derive(Debug)]
struct Inner {
    slots: FastMap<(u64, u32), Slot>,
    containers: FastMap<Arc<str>, Entry>,
    /// Mount namespace → container, learned from execs inside containers (for `nsenter`).
    by_mnt_ns: FastMap<u32, Arc<str>>,
    /// v2 cgroup inode → path, for events whose process left no path.
    v2_paths: HashMap<u64, String>,
    v2_scanned: Option<Instant>,
    /// The highest cgroup id of the last scan.
    v2_max: u64,
    last_sweep: Instant,
    stats: ContainerStats,
}

/// The node's containers, by cgroup. Thread-safe; the pipeline calls it from one task.
pub struct ContainerTable {
    cfg: ContainerConfig,
    proc_root: PathBuf,
    v2_mount: Option<PathBuf>,
    /// The host's mount namespace and the agent's own: never attributed to a container.
    host_mnt_ns: [u32; 2],
    host: Arc<ContainerInfo>,
    inner: Mutex<Inner>,
    /// containerd's API client, started with the first containerd container.
    containerd: std::sync::OnceLock<Option<containerd::ContainerdApi>>,
}

/// An exec of the workload, not of the container runtime's own init: runc re-executes itself
/// (from a memfd or `/proc/self/exe`, as `runc init`) inside the new cgroup but still in the
/// mount namespace it was started from.
pub fn is_workload_exec(event: &Event) -> bool {
    let EventKind::Exec(x) = &event.kind else {
        return false;
    };
    let runtime = x.filename.starts_with("/dev/fd/")
        || x.filename.starts_with("/proc/self/")
        || x.exe_name.starts_with("memfd:")
        || event.comm.starts_with("runc");
    !runtime
}

fn ns_inode(path: &Path) -> u32 {
    use std::os::unix::fs::MetadataExt as _;
    std::fs::metadata(path).map_or(0, |m| m.ino() as u32)
}

impl ContainerTable {
    pub fn new(cfg: ContainerConfig) -> Self {
        let proc_root = cfg.host_root.join("proc");
        let v2_mount = cgroup::v2_mount(&cfg.host_root);
        let host_mnt_ns = [
            ns_inode(&proc_root.join("1/ns/mnt")),
            ns_inode("/proc/self/ns/mnt".as_ref()),
        ];
        Self {
            proc_root,
            v2_mount,
            host_mnt_ns,
            host: Arc::new(ContainerInfo::host()),
            inner: Mutex::new(Inner {
                slots: FastMap::default(),
                containers: FastMap::default(),
                by_mnt_ns: FastMap::default(),
                v2_paths: HashMap::new(),
                v2_scanned: None,
                v2_max: 0,
                last_sweep: Instant::now(),
                stats: ContainerStats::default(),
            }),
            containerd: std::sync::OnceLock::new(),
            cfg,
        }
    }

    pub fn config(&self) -> &ContainerConfig {
        &self.cfg
    }

    pub fn stats(&self) -> ContainerStats {
        let inner = self.lock();
        ContainerStats {
            containers: inner.containers.len(),
            ..inner.stats
        }
    }

    /// The container a cgroup belongs to, from what events have shown so far or else the v2
    /// cgroup's path (as of the last scan): for numbers the kernel keeps per cgroup, such as
    /// the records it lost. `None` when nothing places it.
    pub fn of_cgroup(&self, cgroup_id: u64) -> Option<Arc<ContainerInfo>> {
        if cgroup_id == ROOT_CGROUP_ID {
            return Some(self.host.clone());
        }
        let inner = self.lock();
        if let Some(e) = inner
            .containers
            .values()
            .find(|e| e.cgroups.contains(&cgroup_id))
        {
            return Some(e.info.clone());
        }
        if let Some(s) = inner
            .slots
            .iter()
            .find_map(|(&(c, _), s)| (c == cgroup_id).then_some(s))
        {
            return Some(match s {
                Slot::Host => self.host.clone(),
                Slot::Container(id) => inner.containers.get(id)?.info.clone(),
            });
        }
        let path = inner.v2_paths.get(&cgroup_id)?;
        Some(match cgroup::container_from_path(path) {
            Some(m) => Arc::new(info_from(&m, None)),
            None => self.host.clone(),
        })
    }

    /// The node itself, as a container.
    pub fn host(&self) -> Arc<ContainerInfo> {
        self.host.clone()
    }

    /// The container a mount namespace belongs to (as `of_cgroup`, for hosts whose containers
    /// all sit in the v2 root cgroup).
    pub fn of_mnt_ns(&self, mnt_ns: u32) -> Option<Arc<ContainerInfo>> {
        if self.host_mnt_ns.contains(&mnt_ns) {
            return Some(self.host.clone());
        }
        let inner = self.lock();
        if let Some(e) = inner
            .by_mnt_ns
            .get(&mnt_ns)
            .and_then(|id| inner.containers.get(id))
        {
            return Some(e.info.clone());
        }
        let slot = inner
            .slots
            .iter()
            .find_map(|(&(_, ns), s)| (ns == mnt_ns).then_some(s))?;
        Some(match slot {
            Slot::Host => self.host.clone(),
            Slot::Container(id) => inner.containers.get(id)?.info.clone(),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A panic while holding the lock left plain maps behind; they are still usable.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The container of an event's process, `host` outside containers.
    pub fn resolve(&self, event: &Event, process: Option<&Process>) -> Resolution {
        self.resolve_at(event, process, Instant::now())
    }

    /// [`ContainerTable::resolve`] at `now`: the pipeline reads the clock once per batch of
    /// records (the sweep, metadata retries and waits are counted in seconds and tens of
    /// milliseconds), where a read per event was 3% of the agent's CPU per event.
    pub fn resolve_at(&self, event: &Event, process: Option<&Process>, now: Instant) -> Resolution {
        let mut inner = self.lock();
        if now.duration_since(inner.last_sweep) >= self.cfg.sweep_every {
            self.sweep(&mut inner, now);
        }
        let key = (event.cgroup_id, event.mnt_ns);
        // The cgroup names the kernel gave at exec are the surest source: they overrule a
        // `host` decided from an earlier event of the pair (runc's own steps, before it moved
        // itself into the container's cgroup).
        let exec_in_container = matches!(event.kind, EventKind::Exec(_))
            && process.is_some_and(|p| {
                p.cgroup_id == event.cgroup_id && cgroup::container_from_path(&p.cgroup).is_some()
            });
        let cached = inner
            .slots
            .get(&key)
            .filter(|s| !(exec_in_container && matches!(s, Slot::Host)))
            .cloned();
        let slot = match cached {
            Some(s) => s,
            None => {
                let (s, known) = self.classify(&mut inner, event, process, now);
                // A pair no source could place (a process gone before its first event was
                // read, a cgroup newer than the last scan) is asked again next time.
                if known {
                    inner.slots.insert(key, s.clone());
                }
                s
            }
        };
        let id = match slot {
            Slot::Host => {
                return Resolution {
                    info: self.host.clone(),
                    pending: false,
                };
            }
            Slot::Container(id) => id,
        };
        // The container's entrypoint (and any `runc exec`) execs inside every namespace of
        // the container: its mount namespace from then on means this container.
        if is_workload_exec(event)
            && event.mnt_ns != 0
            && !self.host_mnt_ns.contains(&event.mnt_ns)
            && !inner.by_mnt_ns.contains_key(&event.mnt_ns)
        {
            inner.by_mnt_ns.insert(event.mnt_ns, id.clone());
            // Pairs of this namespace judged `host` before it was known (runc's own setup
            // steps) are judged again.
            let ns = event.mnt_ns;
            inner
                .slots
                .retain(|(_, m), s| *m != ns || matches!(s, Slot::Container(_)));
        }
        let wait = self.cfg.metadata_wait;
        let retry = self.cfg.retry_every;
        let Inner {
            containers, stats, ..
        } = &mut *inner;
        let Some(entry) = containers.get_mut(&id) else {
            return Resolution {
                info: self.host.clone(),
                pending: false,
            };
        };
        entry.last_used = now;
        entry.cgroups.insert(event.cgroup_id);
        if let Meta::Pending { since, next_try } = entry.meta
            && now >= next_try
        {
            let (meta, complete) = self.read_metadata(&entry.hint);
            if complete || now.duration_since(since) >= wait {
                if !complete {
                    stats.metadata_timeouts += 1;
                    tracing::debug!(id = %entry.hint.id, "no complete runtime metadata within {wait:?}");
                }
                if meta.is_some() {
                    entry.info = Arc::new(info_from(&entry.hint, meta));
                }
                entry.meta = Meta::Done;
            } else {
                entry.meta = Meta::Pending {
                    since,
                    next_try: now + retry,
                };
            }
        }
        Resolution {
            info: entry.info.clone(),
            pending: matches!(entry.meta, Meta::Pending { .. }),
        }
    }

    /// Decides where a new (cgroup, mount namespace) pair belongs, and whether that is known
    /// for sure.
    fn classify(
        &self,
        inner: &mut Inner,
        event: &Event,
        process: Option<&Process>,
        now: Instant,
    ) -> (Slot, bool) {
        let (found, known) = match self.container_of(inner, event, process, now) {
            Place::Container(m) => (Some(m), true),
            Place::Host => (None, true),
            Place::Unknown => (None, false),
        };
        let slot = match found {
            Some(m) => {
                let id: Arc<str> = Arc::from(m.id.as_str());
                if !inner.containers.contains_key(&id) {
                    let (meta, complete) = self.read_metadata(&m);
                    let pending = !complete;
                    let entry = Entry {
                        info: Arc::new(info_from(&m, meta)),
                        meta: if pending {
                            Meta::Pending {
                                since: now,
                                next_try: now + self.cfg.retry_every,
                            }
                        } else {
                            Meta::Done
                        },
                        hint: m,
                        cgroups: FastSet::from_iter([event.cgroup_id]),
                        last_used: now,
                    };
                    inner.containers.insert(id.clone(), entry);
                }
                Slot::Container(id)
            }
            None => match inner.by_mnt_ns.get(&event.mnt_ns) {
                // Same mount namespace as a container, cgroup of the host: entered with
                // nsenter or setns.
                Some(id) if inner.containers.contains_key(id) => {
                    return (Slot::Container(id.clone()), true);
                }
                _ => Slot::Host,
            },
        };
        (slot, known)
    }

    /// What the runtime's files (and containerd's API) say about a container, and whether
    /// that is all there will be. An answer still expected from containerd's API makes it
    /// incomplete; the question is asked here, once.
    fn read_metadata(&self, hint: &CgroupMatch) -> (Option<runtime::Metadata>, bool) {
        let root = &self.cfg.host_root;
        let Some(mut m) = runtime::lookup(root, hint.runtime, &hint.id) else {
            return (None, false);
        };
        if m.runtime != Some(cgroup::Runtime::Containerd) {
            return (Some(m), true);
        }
        let Some(api) = self.containerd_api() else {
            return (Some(m), true);
        };
        match api.answer(&hint.id) {
            Some(containerd::Answer::Found { image, labels }) => {
                runtime::merge_containerd_api(&mut m, &image, &labels);
                (Some(m), true)
            }
            Some(containerd::Answer::Missing) => (Some(m), true),
            None if api.was_asked(&hint.id) => (Some(m), false),
            None => match runtime::containerd_namespace(root, &hint.id) {
                Some(ns) => {
                    api.ask(&ns, &hint.id);
                    (Some(m), false)
                }
                None => (Some(m), true),
            },
        }
    }

    fn containerd_api(&self) -> Option<&containerd::ContainerdApi> {
        self.containerd
            .get_or_init(|| {
                let socket = self.cfg.host_root.join("run/containerd/containerd.sock");
                containerd::ContainerdApi::start(socket)
                    .inspect_err(|e| tracing::warn!("containerd API client not started: {e}"))
                    .ok()
            })
            .as_ref()
    }

    /// The container in the process's cgroup path, from the best source there is.
    fn container_of(
        &self,
        inner: &mut Inner,
        event: &Event,
        process: Option<&Process>,
        now: Instant,
    ) -> Place {
        let place = |m: Option<CgroupMatch>| m.map_or(Place::Host, Place::Container);
        // 1. The names the kernel gave at exec, while the process is still in that cgroup.
        if let Some(p) = process
            && p.cgroup_id == event.cgroup_id
            && !p.cgroup.is_empty()
        {
            return place(cgroup::container_from_path(&p.cgroup));
        }
        // 2. /proc, while the process lives (also the only source on pure v1 hosts).
        if let Ok(text) =
            std::fs::read_to_string(self.proc_root.join(format!("{}/cgroup", event.tgid)))
        {
            return place(cgroup::container_from_proc_cgroup(&text));
        }
        // 3. The v2 directory with the event's cgroup id as its inode (rescanned at most
        //    every 100 ms while ids are missing, at once for an id newer than the last scan).
        let Some(mount) = self.v2_mount.as_ref() else {
            return Place::Unknown;
        };
        // A cgroup created after the last scan has a higher id than any it found (kernfs
        // numbers new directories upwards): rescan for it at once, not after 100 ms, or a
        // new container's first events, read after the runtime's short-lived helpers exited,
        // would be judged before their cgroup is known.
        if !inner.v2_paths.contains_key(&event.cgroup_id) {
            let newer = event.cgroup_id > inner.v2_max;
            let due = |t: Instant| {
                let since = now.duration_since(t);
                since >= Duration::from_millis(100) || (newer && since >= Duration::from_millis(1))
            };
            if inner.v2_scanned.is_none_or(due) {
                inner.v2_paths = cgroup::scan_v2(mount);
                inner.v2_max = inner.v2_paths.keys().copied().max().unwrap_or(0);
                inner.v2_scanned = Some(now);
            }
        }
        match inner.v2_paths.get(&event.cgroup_id) {
            Some(path) => place(cgroup::container_from_path(path)),
            None => Place::Unknown,
        }
    }

    /// Drops containers whose cgroups are all gone (and that saw no event for a while).
    fn sweep(&self, inner: &mut Inner, now: Instant) {
        inner.last_sweep = now;
        let Some(mount) = &self.v2_mount else {
            // Pure v1: nothing names cgroups by id; forget containers idle for long.
            let idle = self.cfg.sweep_every * 30;
            inner
                .containers
                .retain(|_, e| now.duration_since(e.last_used) < idle);
            self.forget_stale(inner);
            return;
        };
        inner.v2_paths = cgroup::scan_v2(mount);
        inner.v2_max = inner.v2_paths.keys().copied().max().unwrap_or(0);
        inner.v2_scanned = Some(now);
        let live = &inner.v2_paths;
        let recent = self.cfg.sweep_every;
        let idle = self.cfg.sweep_every * 30;
        inner.containers.retain(|id, e| {
            let idle_for = now.duration_since(e.last_used);
            // On cgroup-hybrid hosts a container may have no v2 cgroup of its own (its events
            // carry the root's id, 1): the root says nothing, so such a container is kept
            // until it has been idle for long, as on pure v1 hosts.
            let own = e.cgroups.iter().filter(|c| **c != ROOT_CGROUP_ID);
            let keep = idle_for < recent
                || own.clone().any(|c| live.contains_key(c))
                || (own.count() == 0 && idle_for < idle);
            if !keep {
                tracing::debug!(%id, "container gone");
                if let Some(Some(api)) = self.containerd.get() {
                    api.forget(id);
                }
            }
            keep
        });
        // Host slots of cgroups that are gone too: cgroup ids are inode numbers and get reused.
        inner
            .slots
            .retain(|(cg, _), s| matches!(s, Slot::Container(_)) || live.contains_key(cg));
        self.forget_stale(inner);
    }

    fn forget_stale(&self, inner: &mut Inner) {
        let containers = &inner.containers;
        inner.slots.retain(|_, s| match s {
            Slot::Container(id) => containers.contains_key(id),
            Slot::Host => true,
        });
        inner.by_mnt_ns.retain(|_, id| containers.contains_key(id));
    }
}

impl ContainerLookup for ContainerTable {
    fn lookup(&self, event: &Event, process: Option<&Process>) -> Option<Arc<ContainerInfo>> {
        Some(self.resolve(event, process).info)
    }
}

/// The fields a rule sees, from the cgroup match and whatever the runtime files said.
fn info_from(m: &CgroupMatch, meta: Option<runtime::Metadata>) -> ContainerInfo {
    let meta = meta.unwrap_or_default();
    let (repository, tag, digest) = match meta.image.as_deref() {
        Some(image) => {
            let (r, t, d) = runtime::split_image(image);
            (Some(r).filter(|r| !r.is_empty()), t, d)
        }
        None => (None, None, None),
    };
    ContainerInfo {
        id: m.id.chars().take(12).collect(),
        full_id: m.id.clone(),
        name: meta.name,
        image: meta.image,
        image_repository: repository,
        image_tag: tag,
        image_digest: meta.image_digest.or(digest),
        runtime: Some(meta.runtime.unwrap_or(m.runtime).as_str().to_string()),
        privileged: meta.privileged,
        start_ts: None,
        k8s_ns_name: meta.pod_namespace,
        k8s_pod_name: meta.pod_name,
        k8s_pod_uid: meta.pod_uid.or_else(|| m.pod_uid.clone()),
        k8s_pod_labels: meta.pod_labels,
    }
}

/// Puts container identity on events, holding those of a container whose metadata is pending.
///
/// Held events wait in arrival order, per container; events of every other container and of
/// the host pass straight through, so a slow runtime delays only its own container's alerts,
/// and never the ring-buffer reader.
pub struct Attach {
    table: Arc<ContainerTable>,
    held: VecDeque<Enriched>,
    /// Full ids with events in `held`.
    waiting: HashSet<String>,
}

impl Attach {
    pub fn new(table: Arc<ContainerTable>) -> Self {
        Self {
            table,
            held: VecDeque::new(),
            waiting: HashSet::new(),
        }
    }

    /// Attaches the event's container; pushes it to `out` now, or holds it while the
    /// container's metadata is pending (then [`Attach::poll`] releases it).
    pub fn push(&mut self, e: Enriched, out: &mut Vec<Enriched>) {
        self.push_at(e, Instant::now(), out)
    }

    /// [`Attach::push`] at `now` (see [`ContainerTable::resolve_at`]).
    pub fn push_at(&mut self, mut e: Enriched, now: Instant, out: &mut Vec<Enriched>) {
        let r = self.table.resolve_at(&e.event, e.process.as_deref(), now);
        let wait = r.pending || self.waiting.contains(&r.info.full_id);
        if wait {
            self.waiting.insert(r.info.full_id.clone());
            e.container = Some(r.info);
            self.held.push_back(e);
            self.table.lock().stats.held += 1;
            if self.held.len() > self.table.cfg.max_held {
                self.table.lock().stats.held_overflow += 1;
                self.release_oldest(out);
            }
        } else {
            e.container = Some(r.info);
            out.push(e);
        }
    }

    /// Releases held events whose container's metadata arrived or whose wait is over.
    pub fn poll(&mut self, out: &mut Vec<Enriched>) {
        if self.held.is_empty() {
            return;
        }
        let mut done: HashMap<String, Arc<ContainerInfo>> = HashMap::new();
        for e in &self.held {
            let Some(c) = &e.container else { continue };
            if done.contains_key(&c.full_id) {
                continue;
            }
            let r = self.table.resolve(&e.event, e.process.as_deref());
            if !r.pending {
                done.insert(c.full_id.clone(), r.info);
            }
        }
        if done.is_empty() {
            return;
        }
        let mut keep = VecDeque::with_capacity(self.held.len());
        for mut e in self.held.drain(..) {
            match e.container.as_ref().and_then(|c| done.get(&c.full_id)) {
                Some(info) => {
                    e.container = Some(info.clone());
                    out.push(e);
                }
                None => keep.push_back(e),
            }
        }
        self.held = keep;
        for id in done.keys() {
            self.waiting.remove(id);
        }
    }

    fn release_oldest(&mut self, out: &mut Vec<Enriched>) {
        if let Some(e) = self.held.pop_front() {
            out.push(e);
        }
        let still: HashSet<String> = self
            .held
            .iter()
            .filter_map(|e| e.container.as_ref().map(|c| c.full_id.clone()))
            .collect();
        self.waiting.retain(|id| still.contains(id));
    }

    /// Whether events are waiting (then call [`Attach::poll`] after [`Attach::poll_in`]).
    pub fn is_holding(&self) -> bool {
        !self.held.is_empty()
    }

    /// When to poll again while holding.
    pub fn poll_in(&self) -> Duration {
        self.table.cfg.retry_every
    }

    /// Lets every held event go with what is known (at shutdown).
    pub fn flush(&mut self, out: &mut Vec<Enriched>) {
        out.extend(self.held.drain(..));
        self.waiting.clear();
    }
}

#[cfg(test)]
mod tests;
