//! `osprey rules validate|list`, `osprey fields`, `osprey replay`: the offline side of rules,
//! what a rule author runs before shipping a rule.

use std::{io::BufReader, path::PathBuf};

use anyhow::Context as _;

use osprey_engine::{
    Engine, output,
    rules::{self, LoadResult, Ruleset, cli},
};

/// The default rules shipped with the agent (`rules/` in the repository).
pub const DEFAULT_RULES: &[(&str, &str)] = &[(
    "osprey_rules.yaml",
    include_str!("../../../rules/osprey_rules.yaml"),
)];

/// Rule files to load: the given paths (directories expand to their `.yaml`/`.yml` files in
/// name order, as Falco's rules.d), or the embedded defaults when none are given. The path
/// `default` stands for the embedded defaults, so `--rules default --rules local.yaml` loads
/// them first and the local file's overrides after.
pub fn load(paths: &[PathBuf]) -> anyhow::Result<LoadResult> {
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

/// The `--rules` value that means the rules embedded in the binary.
pub const DEFAULT_PATH: &str = "default";

fn expand(paths: &[PathBuf]) -> anyhow::Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    for p in paths {
        if p.as_os_str() == DEFAULT_PATH {
            files.push(p.clone());
        } else if p.is_dir() {
            let mut entries: Vec<PathBuf> = std::fs::read_dir(p)
                .with_context(|| format!("reading rules directory {}", p.display()))?
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
pub fn load_for_run(paths: &[PathBuf]) -> anyhow::Result<Ruleset> {
    let res = load(paths)?;
    if !res.is_ok() {
        anyhow::bail!("invalid rules:\n{}", cli::render_results(&res, false));
    }
    for w in res.warnings() {
        tracing::warn!(code = w.code.as_str(), at = %w.at(), "{}", w.message);
    }
    Ok(res.ruleset)
}

#[derive(Debug, clap::Subcommand)]
pub enum RulesCommand {
    /// Check rule files; exit 1 when any is invalid. Falco's `-V` report, or its
    /// `falco_load_results` JSON with --json.
    Validate {
        #[arg(required = true)]
        files: Vec<PathBuf>,
        #[arg(long)]
        json: bool,
    },
    /// List the rules of the given files (default: the embedded rules).
    List {
        #[arg(long = "rules", short = 'r')]
        rules: Vec<PathBuf>,
        #[arg(long)]
        json: bool,
    },
}

/// Runs a `rules` subcommand; returns whether it succeeded (for the exit code).
pub fn run(cmd: RulesCommand) -> anyhow::Result<bool> {
    match cmd {
        RulesCommand::Validate { files, json } => {
            let res = load(&files)?;
            print!("{}", cli::render_results(&res, json));
            Ok(res.is_ok())
        }
        RulesCommand::List { rules, json } => {
            let ruleset = load_for_run(&rules)?;
            print!("{}", cli::list(&ruleset, json));
            Ok(true)
        }
    }
}

/// `osprey fields`.
pub fn fields(json: bool) {
    print!("{}", cli::fields_listing(json));
}

#[derive(Debug, clap::Args)]
pub struct ReplayArgs {
    /// A recording made with `osprey trace --record FILE`.
    pub file: PathBuf,
    /// Rule files or directories (default: the embedded rules).
    #[arg(long = "rules", short = 'r')]
    pub rules: Vec<PathBuf>,
    /// Falco's JSON alert shape instead of its text line.
    #[arg(long)]
    pub json: bool,
}

/// `osprey replay`: runs a recording through the engine offline and prints the alerts.
pub fn replay(args: ReplayArgs) -> anyhow::Result<()> {
    let engine = Engine::new(
        load_for_run(&args.rules)?,
        crate::host::engine_options_for_host("/".as_ref()),
    );
    let f = std::fs::File::open(&args.file)
        .with_context(|| format!("opening {}", args.file.display()))?;
    let alerts = engine
        .replay(BufReader::new(f))
        .with_context(|| format!("replaying {}", args.file.display()))?;
    for a in &alerts {
        if args.json {
            println!("{}", output::format_json(a));
        } else {
            println!("{}", output::format_text(a));
        }
    }
    Ok(())
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
