//! `osprey rules validate|list`, `osprey fields`, `osprey replay`: the offline side of rules,
//! what a rule author runs before shipping a rule.

use std::{io::BufReader, path::PathBuf};

use anyhow::Context as _;

use osprey_engine::{Engine, output, rules::cli};

use crate::rulefiles::{load, load_for_run};

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
