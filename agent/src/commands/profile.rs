//! `osprey profile import`: an OCI/Docker seccomp profile as an Osprey profile (a rule-file
//! item, YAML on stdout). `osprey profile record`: the syscalls a container makes, recorded in
//! the kernel, as an allow-list Osprey profile and an OCI seccomp profile.

use std::{
    collections::{BTreeSet, HashMap},
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use anyhow::Context as _;

use osprey_model::{Action, syscalls as syscall_numbers};

use crate::{
    container::{cgroup, runtime},
    profile::{
        ContainerSelector, Scope,
        oci::{self, ImportOptions, Mode},
    },
    sensor::{Sensor, SensorConfig},
};

#[derive(Debug, clap::Subcommand)]
pub enum ProfileCommand {
    /// Convert an OCI/Docker seccomp profile (JSON) to an Osprey profile (YAML on stdout).
    Import {
        file: PathBuf,
        /// audit: alert on what the seccomp profile would deny; enforce: kill.
        #[arg(long, value_enum, default_value_t = Mode::Audit)]
        mode: Mode,
        /// The profile's name (default: the file's stem).
        #[arg(long)]
        name: Option<String>,
        /// `containers` (all), `host`, `image=GLOB`, `namespace=NS`, `container=NAME|ID`,
        /// `label=KEY=VALUE`; repeat to combine container conditions.
        #[arg(long, default_value = "containers")]
        scope: Vec<String>,
        /// Capabilities of the containers, for the profile's includes/excludes by
        /// capability (default: podman's and CRI-O's default set).
        #[arg(long, value_delimiter = ',')]
        caps: Vec<String>,
    },
    /// Record the syscalls a container makes, in the kernel, and write them as an allow-list
    /// profile (YAML, on stdout without --output) and optionally as OCI seccomp JSON.
    Record(RecordArgs),
}

/// Arguments of `osprey profile record`.
#[derive(Debug, clap::Args)]
pub struct RecordArgs {
    /// The container: its name, or its id (whole or a prefix of at least 12 characters). One
    /// that is not running yet is recorded from when it starts within the duration.
    #[arg(long)]
    pub container: String,
    /// How long to record: `90s`, `5m`, `1h`, `500ms` or seconds alone. Ctrl-C stops early
    /// and still writes the profile.
    #[arg(long, default_value = "60s", value_parser = parse_duration)]
    pub duration: Duration,
    /// Where to write the Osprey profile (YAML); stdout when not given.
    #[arg(long)]
    pub output: Option<PathBuf>,
    /// Also write the recorded syscalls as an OCI seccomp profile (JSON) to this file, for
    /// `podman run --security-opt seccomp=FILE` or a pod's `seccompProfile` of type `Localhost`.
    #[arg(long)]
    pub seccomp: Option<PathBuf>,
    /// The profile's name (default: `recorded-<container name>`).
    #[arg(long)]
    pub name: Option<String>,
    /// enforce: any other syscall kills; audit: it raises an alert.
    #[arg(long, value_enum, default_value_t = Mode::Enforce)]
    pub mode: Mode,
    /// The profile's scope, as for `import` (default: the container's image, or its name
    /// when the runtime names no image).
    #[arg(long)]
    pub scope: Vec<String>,
}

/// Parses `90s`, `5m`, `1h`, `500ms`, or a number of seconds.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: f64 = num
        .parse()
        .map_err(|_| format!("`{s}`: expected a duration such as 60s, 5m or 500ms"))?;
    let secs = match unit {
        "" | "s" => n,
        "ms" => n / 1000.0,
        "m" => n * 60.0,
        "h" => n * 3600.0,
        _ => return Err(format!("`{s}`: unknown unit `{unit}` (ms, s, m or h)")),
    };
    if !(secs > 0.0 && secs.is_finite()) {
        return Err(format!("`{s}`: the duration must be positive"));
    }
    Ok(Duration::from_secs_f64(secs))
}

/// Parses `--scope` values.
pub fn parse_scope(items: &[String]) -> anyhow::Result<Scope> {
    let mut sel = ContainerSelector::default();
    for it in items {
        match it.split_once('=') {
            None if it == "host" && items.len() == 1 => return Ok(Scope::Host),
            None if it == "containers" => {}
            Some(("image", v)) => sel.image = Some(v.into()),
            Some(("namespace", v)) => sel.k8s_namespace = Some(v.into()),
            Some(("container", v)) => sel.container = Some(v.into()),
            Some(("label", kv)) => {
                let (k, v) = kv
                    .split_once('=')
                    .with_context(|| format!("--scope label={kv}: expected label=KEY=VALUE"))?;
                sel.pod_labels.insert(k.into(), v.into());
            }
            _ => anyhow::bail!(
                "--scope {it}: expected containers, host (alone), image=GLOB, namespace=NS, container=NAME|ID or label=KEY=VALUE"
            ),
        }
    }
    Ok(Scope::Containers(sel))
}

fn kernel_version() -> (u32, u32) {
    let r = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let mut it = r.trim().split(|c: char| !c.is_ascii_digit());
    (
        it.next().and_then(|s| s.parse().ok()).unwrap_or(0),
        it.next().and_then(|s| s.parse().ok()).unwrap_or(0),
    )
}

pub fn run(cmd: ProfileCommand) -> anyhow::Result<bool> {
    match cmd {
        ProfileCommand::Record(args) => record(args),
        ProfileCommand::Import {
            file,
            mode,
            name,
            scope,
            caps,
        } => {
            let json = std::fs::read_to_string(&file)
                .with_context(|| format!("reading {}", file.display()))?;
            let caps: BTreeSet<String> = if caps.is_empty() {
                oci::DEFAULT_CAPS.iter().map(|s| s.to_string()).collect()
            } else {
                caps.iter()
                    .map(|c| {
                        let c = c.trim().to_ascii_uppercase();
                        if c.starts_with("CAP_") {
                            c
                        } else {
                            format!("CAP_{c}")
                        }
                    })
                    .collect()
            };
            let name = name.unwrap_or_else(|| {
                file.file_stem()
                    .map_or("imported".into(), |s| s.to_string_lossy().into_owned())
            });
            let opts = ImportOptions {
                name,
                mode,
                scope: parse_scope(&scope)?,
                caps,
                kernel: kernel_version(),
            };
            let (profile, report) = oci::import(&json, &opts)
                .with_context(|| format!("importing {}", file.display()))?;
            crate::profile::compile(&profile).context("the imported profile")?;
            println!(
                "# Imported by `osprey profile import` from {} ({:?} mode: what it denies {}).",
                file.display(),
                mode,
                if mode == Mode::Audit {
                    "alerts"
                } else {
                    "kills"
                }
            );
            if !report.foreign_names.is_empty() || report.skipped_entries > 0 {
                println!(
                    "# Left out: {} entries for other architectures, capabilities or kernels; {} names that are not x86_64 syscalls.",
                    report.skipped_entries,
                    report.foreign_names.len()
                );
            }
            print!("{}", oci::to_yaml(&profile));
            Ok(true)
        }
    }
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

/// `osprey profile record`.
fn record(args: RecordArgs) -> anyhow::Result<bool> {
    let mount = cgroup::v2_mount(Path::new("/")).context(
        "no cgroup v2 hierarchy (neither /sys/fs/cgroup nor /sys/fs/cgroup/unified): the kernel records syscalls per v2 cgroup",
    )?;
    // Inert: no event reaches the ring buffer and no syscall is captured. The profile check
    // runs first in sys_enter regardless, and marks the record before anything else, so the
    // recording costs one hash lookup per syscall on the host and a byte store in the container.
    let mut sensor = Sensor::start(&SensorConfig {
        inert: true,
        ring_buffer_bytes: 4096,
        ..Default::default()
    })
    .context("starting the sensor")?;
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
            let ctrl_c = tokio::signal::ctrl_c();
            tokio::pin!(ctrl_c);
            let mut term =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
            // New cgroups of the container (a container started late, a nested cgroup) are
            // picked up at this pace; what they do before is not recorded.
            let mut tick = tokio::time::interval(Duration::from_millis(100));
            loop {
                let (f, cgroups) = finder.scan();
                for cg in cgroups {
                    if recording.insert(cg) {
                        maps.record_start(cg).context("starting the record")?;
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
                    return Ok::<bool, anyhow::Error>(false);
                }
                tokio::select! {
                    _ = &mut ctrl_c => return Ok(true),
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
        anyhow::bail!(
            "no container named {} was found in the cgroup v2 hierarchy within {:?} (is it running, and does its runtime put it in a v2 cgroup of its own?)",
            args.container,
            args.duration
        );
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
    crate::profile::compile(&profile).context("the recorded profile")?;
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
        Some(p) => std::fs::write(p, &yaml).with_context(|| format!("writing {}", p.display()))?,
        None => print!("{yaml}"),
    }
    if let Some(p) = &args.seccomp {
        let mut with_runtime = allowed.clone();
        with_runtime.extend(oci::OCI_RUNTIME_SYSCALLS.iter().map(|s| s.to_string()));
        std::fs::write(p, oci::allow_list_json(&with_runtime) + "\n")
            .with_context(|| format!("writing {}", p.display()))?;
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
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("60s"), Ok(Duration::from_secs(60)));
        assert_eq!(parse_duration("5m"), Ok(Duration::from_secs(300)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("2.5"), Ok(Duration::from_millis(2500)));
        assert!(parse_duration("0s").is_err());
        assert!(parse_duration("5 days").is_err());
        assert!(parse_duration("s").is_err());
    }

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
