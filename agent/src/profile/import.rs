//! `osprey profile import`: an OCI/Docker seccomp profile as an Osprey profile, the YAML of a
//! rule-file item, with a header saying what was left out.

use std::{collections::BTreeSet, path::Path};

use super::{
    CompileError, ScopeError,
    oci::{self, ImportOptions, Mode},
    parse_scope,
};

#[derive(Debug, thiserror::Error)]
pub enum ImportFileError {
    #[error("reading {path}: {source}")]
    Read {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("importing {path}: {source}")]
    Import {
        path: std::path::PathBuf,
        #[source]
        source: oci::ImportError,
    },
    #[error(transparent)]
    Scope(#[from] ScopeError),
    #[error("the imported profile: {0}")]
    Compile(#[from] CompileError),
}

/// The profile `file` (OCI seccomp JSON) stands for, as rule-file YAML with its header.
/// `caps` are the containers' capabilities for the profile's includes/excludes by capability
/// (empty: podman's and CRI-O's default set).
pub fn import_file(
    file: &Path,
    mode: Mode,
    name: Option<String>,
    scope: &[String],
    caps: &[String],
) -> Result<String, ImportFileError> {
    let json = std::fs::read_to_string(file).map_err(|source| ImportFileError::Read {
        path: file.to_path_buf(),
        source,
    })?;
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
        scope: parse_scope(scope)?,
        caps,
        kernel: kernel_version(),
    };
    let (profile, report) =
        oci::import(&json, &opts).map_err(|source| ImportFileError::Import {
            path: file.to_path_buf(),
            source,
        })?;
    super::compile(&profile)?;
    let mut out = format!(
        "# Imported by `osprey profile import` from {} ({:?} mode: what it denies {}).\n",
        file.display(),
        mode,
        if mode == Mode::Audit {
            "alerts"
        } else {
            "kills"
        }
    );
    if !report.foreign_names.is_empty() || report.skipped_entries > 0 {
        out.push_str(&format!(
            "# Left out: {} entries for other architectures, capabilities or kernels; {} names that are not x86_64 syscalls.\n",
            report.skipped_entries,
            report.foreign_names.len()
        ));
    }
    out.push_str(&oci::to_yaml(&profile));
    Ok(out)
}

/// The running kernel's major and minor version, for entries that name kernel versions.
fn kernel_version() -> (u32, u32) {
    let r = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let mut it = r.trim().split(|c: char| !c.is_ascii_digit());
    (
        it.next().and_then(|s| s.parse().ok()).unwrap_or(0),
        it.next().and_then(|s| s.parse().ok()).unwrap_or(0),
    )
}
