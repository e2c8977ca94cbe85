//! `osprey profile import`: an OCI/Docker seccomp profile as an Osprey profile (a rule-file
//! item, YAML on stdout).

use std::{collections::BTreeSet, path::PathBuf};

use anyhow::Context as _;

use crate::profile::{
    ContainerSelector, Scope,
    oci::{self, ImportOptions, Mode},
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
