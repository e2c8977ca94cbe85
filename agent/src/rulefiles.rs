//! Where rules come from: the set embedded in the binary, rule files, and rules.d-style
//! directories, loaded in order so later files override earlier ones as in Falco.

use std::path::PathBuf;

use osprey_engine::rules::{self, LoadResult, Ruleset, cli};

/// Rule files that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum RuleFilesError {
    #[error("reading rules directory {path}: {source}")]
    Dir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("invalid rules:\n{0}")]
    Invalid(String),
}

/// The default rules shipped with the agent (`rules/` in the repository).
pub const DEFAULT_RULES: &[(&str, &str)] = &[(
    "osprey_rules.yaml",
    include_str!("../../rules/osprey_rules.yaml"),
)];

/// Rule files to load: the given paths (directories expand to their `.yaml`/`.yml` files in
/// name order, as Falco's rules.d), or the embedded defaults when none are given. The path
/// `default` stands for the embedded defaults, so `--rules default --rules local.yaml` loads
/// them first and the local file's overrides after.
pub fn load(paths: &[PathBuf]) -> Result<LoadResult, RuleFilesError> {
    if paths.is_empty() {
        return Ok(rules::load_sources(DEFAULT_RULES));
    }
    let mut sources: Vec<(String, String)> = Vec::new();
    for f in expand(paths)? {
        if f.as_os_str() == DEFAULT_PATH {
            sources.extend(
                DEFAULT_RULES
                    .iter()
                    .map(|(n, t)| (n.to_string(), t.to_string())),
            );
        } else {
            let text = match std::fs::read_to_string(&f) {
                Ok(t) => t,
                // The loader reports unreadable files in Falco's shape (LOAD_ERR_FILE_READ).
                Err(_) => return Ok(rules::load_files(&[f])),
            };
            sources.push((f.display().to_string(), text));
        }
    }
    Ok(rules::load_sources(&sources))
}

/// Whether `paths` names only the embedded rules (no paths, or `default` alone).
pub fn is_default(paths: &[PathBuf]) -> bool {
    paths.iter().all(|p| p.as_os_str() == DEFAULT_PATH)
}

/// The `--rules` value that means the rules embedded in the binary.
pub const DEFAULT_PATH: &str = "default";

fn expand(paths: &[PathBuf]) -> Result<Vec<PathBuf>, RuleFilesError> {
    let mut files = Vec::new();
    for p in paths {
        if p.as_os_str() == DEFAULT_PATH {
            files.push(p.clone());
        } else if p.is_dir() {
            let mut entries: Vec<PathBuf> = std::fs::read_dir(p)
                .map_err(|source| RuleFilesError::Dir {
                    path: p.clone(),
                    source,
                })?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|f| f.extension().is_some_and(|x| x == "yaml" || x == "yml"))
                .collect();
            entries.sort();
            files.extend(entries);
        } else {
            files.push(p.clone());
        }
    }
    Ok(files)
}

/// Loads rules for running: errors stop here with Falco's report; warnings are logged.
pub fn load_for_run(paths: &[PathBuf]) -> Result<Ruleset, RuleFilesError> {
    let res = load(paths)?;
    if !res.is_ok() {
        return Err(RuleFilesError::Invalid(cli::render_results(&res, false)));
    }
    for w in res.warnings() {
        tracing::warn!(code = w.code.as_str(), at = %w.at(), "{}", w.message);
    }
    Ok(res.ruleset)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_then_local_overrides() {
        let dir = std::env::temp_dir().join(format!("osprey-rules-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(
            dir.join("10-local.yaml"),
            "- macro: allowed_sensitive_file_readers\n  condition: (proc.name in (backup))\n  override:\n    condition: replace\n",
        )
        .unwrap();
        std::fs::write(dir.join("ignored.txt"), "not rules").unwrap();
        let res = load(&[PathBuf::from(DEFAULT_PATH), dir.clone()]).unwrap();
        assert!(res.is_ok(), "{}", cli::render_results(&res, false));
        assert!(
            res.ruleset
                .rules
                .iter()
                .any(|r| r.name == "Read sensitive file")
        );
        let m = res
            .ruleset
            .macros
            .iter()
            .find(|(n, _)| n == "allowed_sensitive_file_readers")
            .unwrap();
        assert!(m.1.contains("backup"), "{m:?}");
        // Without `default`, only the given files load.
        let only = load(std::slice::from_ref(&dir)).unwrap();
        assert!(only.ruleset.rules.is_empty());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
