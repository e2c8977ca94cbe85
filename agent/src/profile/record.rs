//! `osprey profile record`: the syscalls a container makes, recorded in the kernel (per v2
//! cgroup, with an inert sensor), written as an allow-list Osprey profile and optionally as
//! OCI seccomp JSON.

use std::{
    collections::{BTreeSet, HashMap},
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use osprey_model::{Action, syscalls as syscall_numbers};

use super::{
    CompileError, ContainerSelector, Scope, ScopeError,
    oci::{self, Mode},
    parse_scope,
};
use crate::{
    container::{cgroup, runtime},
    sensor::{Sensor, SensorConfig, SensorError},
};

/// What to record and where to write it (`osprey profile record --help` documents each).
#[derive(Debug)]
pub struct RecordOptions {
    pub container: String,
    pub duration: Duration,
    pub output: Option<PathBuf>,
    pub seccomp: Option<PathBuf>,
    pub name: Option<String>,
    pub mode: Mode,
    pub scope: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    #[error(
        "no cgroup v2 hierarchy (neither /sys/fs/cgroup nor /sys/fs/cgroup/unified): the kernel records syscalls per v2 cgroup"
    )]
    NoCgroupV2,
    #[error("starting the sensor: {0}")]
    Sensor(#[from] SensorError),
    #[error("starting the record in the kernel's map: {0}")]
    Map(#[source] aya::maps::MapError),
    #[error("installing the signal handler: {0}")]
    Signal(#[source] std::io::Error),
    #[error(
        "no container named {container} was found in the cgroup v2 hierarchy within {waited:?} (is it running, and does its runtime put it in a v2 cgroup of its own?)"
    )]
    NotFound { container: String, waited: Duration },
    #[error(transparent)]
    Scope(#[from] ScopeError),
    #[error("the recorded profile: {0}")]
    Compile(#[from] CompileError),
    #[error("writing {path}: {source}")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// Whether `want` (from `--container`) names the container with this id and name: the name,
/// or the id (whole or a prefix of at least 12 characters), as a profile's `container:` scope.
fn names_container(want: &str, id: &str, name: Option<&str>) -> bool {
    name == Some(want) || (want.len() >= 12 && id.starts_with(&want.to_ascii_lowercase()))
}

/// The container being recorded, as the runtime's files describe it.
#[derive(Clone, Debug)]
struct Found {
    id: String,
    name: Option<String>,
    image: Option<String>,
}

/// Finds the cgroups of the container `want` in the v2 hierarchy, by the directory inodes
/// that `bpf_get_current_cgroup_id` returns: the key of the kernel's `PROFILE_SCOPE` and
/// `PROFILE_RECORD` maps, as for the profiles of a running agent. Runtime metadata (the name)
/// is read once per container id, again while the runtime has not written it.
struct Finder {
    want: String,
    mount: PathBuf,
    meta: HashMap<String, runtime::Metadata>,
}

impl Finder {
    fn scan(&mut self) -> (Option<Found>, Vec<u64>) {
        let mut found = None;
        let mut cgroups = Vec::new();
        for (ino, path) in cgroup::scan_v2(&self.mount) {
            let Some(m) = cgroup::container_from_path(&path) else {
                continue;
            };
            if !self.meta.contains_key(&m.id)
                && let Some(md) = runtime::lookup(Path::new("/"), m.runtime, &m.id)
            {
                self.meta.insert(m.id.clone(), md);
            }
            let md = self.meta.get(&m.id);
            let name = md.and_then(|md| md.name.as_deref());
            if names_container(&self.want, &m.id, name) {
                cgroups.push(ino);
                found = Some(Found {
                    id: m.id.clone(),
                    name: name.map(str::to_string),
                    image: md.and_then(|md| md.image.clone()),
                });
            }
        }
        (found, cgroups)
    }
}

/// The scope of a recorded profile without `--scope`: every container of the recorded one's
/// image (its replicas, its next version under the same tag), or that container by name when
/// the runtime names no image.
fn default_scope(image: Option<&str>, label: &str) -> Scope {
    Scope::Containers(ContainerSelector {
        image: image.map(str::to_string),
        container: image.is_none().then(|| label.to_string()),
        ..Default::default()
    })
}

/// Records the container's syscalls for `duration` (or until SIGINT/SIGTERM) and writes the
/// profile; progress goes to stderr.
pub fn record(args: RecordOptions) -> Result<(), RecordError> {
    let mount = cgroup::v2_mount(Path::new("/")).ok_or(RecordError::NoCgroupV2)?;
    // Inert: no event reaches the ring buffer and no syscall is captured. The profile check
    // runs first in sys_enter regardless, and marks the record before anything else, so the
    // recording costs one hash lookup per syscall on the host and a byte store in the container.
    let mut sensor = Sensor::start(&SensorConfig {
        inert: true,
        ring_buffer_bytes: 4096,
        ..Default::default()
    })?;
    let mut maps = sensor.profile_maps()?;
    let mut finder = Finder {
        want: args.container.clone(),
        mount,
        meta: HashMap::new(),
    };
    let started = Instant::now();
    let deadline = started + args.duration;
    let mut recording: BTreeSet<u64> = BTreeSet::new();
    let mut seen: BTreeSet<u32> = BTreeSet::new();
    let mut found: Option<Found> = None;
    let mut waiting_said = false;
    let stop = tokio::task::block_in_place(|| {
        tokio::runtime::Handle::current().block_on(async {
            // Both handlers are installed here, before the first scan: `ctrl_c()` would
            // install its own only when first polled, and a Ctrl-C before that would end the
            // process without writing what was recorded.
            use tokio::signal::unix::{SignalKind, signal};
            let mut int = signal(SignalKind::interrupt()).map_err(RecordError::Signal)?;
            let mut term = signal(SignalKind::terminate()).map_err(RecordError::Signal)?;
            // New cgroups of the container (a container started late, a nested cgroup) are
            // picked up at this pace; what they do before is not recorded.
            let mut tick = tokio::time::interval(Duration::from_millis(100));
            loop {
                let (f, cgroups) = finder.scan();
                for cg in cgroups {
                    if recording.insert(cg) {
                        maps.record_start(cg).map_err(RecordError::Map)?;
                        tracing::debug!(cgroup = cg, "recording");
                    }
                }
                if found.is_none() && f.is_some() && waiting_said {
                    eprintln!("osprey: container {} started, recording", args.container);
                }
                if f.is_some() {
                    found = f;
                } else if found.is_none() && !waiting_said {
                    eprintln!(
                        "osprey: no running container {} yet; waiting for it for {:?}",
                        args.container, args.duration
                    );
                    waiting_said = true;
                }
                // Read as we go: a cgroup removed (container gone) keeps its record, but its
                // id may be reused by a new cgroup.
                for cg in &recording {
                    seen.extend(maps.recorded(*cg));
                }
                let now = Instant::now();
                if now >= deadline {
                    return Ok::<bool, RecordError>(false);
                }
                tokio::select! {
                    _ = int.recv() => return Ok(true),
                    _ = term.recv() => return Ok(true),
                    _ = tick.tick() => {}
                    _ = tokio::time::sleep(deadline - now) => {}
                }
            }
        })
    });
    for cg in &recording {
        seen.extend(maps.recorded(*cg));
        let _ = maps.record_stop(*cg);
    }
    let elapsed = started.elapsed();
    drop(maps);
    drop(sensor);
    let stopped_early = stop?;
    let Some(found) = found else {
        return Err(RecordError::NotFound {
            container: args.container,
            waited: args.duration,
        });
    };
    let mut allowed: BTreeSet<String> = seen
        .iter()
        .filter_map(|nr| syscall_numbers::name(*nr))
        .map(str::to_string)
        .collect();
    let recorded = allowed.len();
    allowed.extend(oci::STARTUP_SYSCALLS.iter().map(|s| s.to_string()));

    let label = found
        .name
        .clone()
        .unwrap_or_else(|| found.id[..12].to_string());
    let scope = if args.scope.is_empty() {
        default_scope(found.image.as_deref(), &label)
    } else {
        parse_scope(&args.scope)?
    };
    let name = args.name.unwrap_or_else(|| format!("recorded-{label}"));
    let other = match args.mode {
        Mode::Enforce => Action::Kill,
        Mode::Audit => Action::Alert,
    };
    let profile = oci::allow_list_profile(&name, scope, &allowed, other);
    crate::profile::compile(&profile)?;
    let yaml = format!(
        "# Recorded by `osprey profile record` from container {label} ({}, image {}) for {:.1} s: {recorded} syscalls, plus {} that starting a process needs. {:?} mode: any other syscall {}.\n{}",
        &found.id[..12],
        found.image.as_deref().unwrap_or("unknown"),
        elapsed.as_secs_f64(),
        oci::STARTUP_SYSCALLS.len(),
        args.mode,
        if args.mode == Mode::Enforce {
            "kills"
        } else {
            "alerts"
        },
        oci::to_yaml(&profile)
    );
    match &args.output {
        Some(p) => std::fs::write(p, &yaml).map_err(|source| RecordError::Write {
            path: p.clone(),
            source,
        })?,
        None => print!("{yaml}"),
    }
    if let Some(p) = &args.seccomp {
        let mut with_runtime = allowed.clone();
        with_runtime.extend(oci::OCI_RUNTIME_SYSCALLS.iter().map(|s| s.to_string()));
        std::fs::write(p, oci::allow_list_json(&with_runtime) + "\n").map_err(|source| {
            RecordError::Write {
                path: p.clone(),
                source,
            }
        })?;
    }
    eprintln!(
        "osprey: {recorded} syscalls recorded from container {label} in {:.1} s{}{}{}",
        elapsed.as_secs_f64(),
        if stopped_early {
            " (stopped early)"
        } else {
            ""
        },
        args.output
            .as_ref()
            .map(|p| format!("; profile in {}", p.display()))
            .unwrap_or_default(),
        args.seccomp
            .as_ref()
            .map(|p| format!("; seccomp profile in {}", p.display()))
            .unwrap_or_default(),
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_scope_is_the_image_else_the_container() {
        let Scope::Containers(s) = default_scope(Some("localhost/busybox:test"), "web") else {
            panic!("a container scope");
        };
        assert_eq!(s.image.as_deref(), Some("localhost/busybox:test"));
        assert_eq!(s.container, None);
        let Scope::Containers(s) = default_scope(None, "web") else {
            panic!("a container scope");
        };
        assert_eq!((s.image, s.container.as_deref()), (None, Some("web")));
    }

    #[test]
    fn container_by_name_or_id_prefix() {
        let id = "330a5e8feb724bad99e96383e04add0a57f0e4537644c4fbab09fa7a71b3507f";
        assert!(names_container("web", id, Some("web")));
        assert!(!names_container("we", id, Some("web")));
        assert!(names_container(&id[..12], id, Some("web")));
        assert!(names_container(&id.to_ascii_uppercase(), id, None));
        assert!(names_container(id, id, None));
        // A short prefix is too likely to name another container as well.
        assert!(!names_container(&id[..6], id, Some("web")));
    }
}
