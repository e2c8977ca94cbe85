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
    /// The kernel open filter the rules make: which opens the kernel passes over because no
    /// rule can match them. With PATH: whether an open of that path (as the kernel resolved
    /// it) is captured.
    KernelFilter {
        #[arg(long = "rules", short = 'r')]
        rules: Vec<PathBuf>,
        /// An absolute path, as the kernel resolved it (symlinks followed).
        path: Option<String>,
        /// The open's flags by name, `|`-separated (O_WRONLY|O_CREAT|O_TRUNC).
        #[arg(long, default_value = "O_RDONLY")]
        flags: String,
        /// open, openat or creat.
        #[arg(long, default_value = "openat")]
        syscall: String,
        /// The open failed.
        #[arg(long)]
        failed: bool,
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
        RulesCommand::KernelFilter {
            rules,
            path,
            flags,
            syscall,
            failed,
        } => {
            let engine = Engine::new(load_for_run(&rules)?, Default::default());
            let mut filter = engine.kernel_filter();
            crate::process::keep_followed_calls(&mut filter);
            match path {
                Some(path) => {
                    let raw = open_flags(&flags)?;
                    anyhow::ensure!(
                        agent_common::open_filter::SYSCALLS.contains(&syscall.as_str()),
                        "--syscall: the open filter judges open, openat and creat, not {syscall}"
                    );
                    let captured = filter.captures(&syscall, !failed, raw, &path);
                    println!(
                        "{syscall}({path}, {flags}) {}: {}",
                        if failed { "failing" } else { "succeeding" },
                        if captured {
                            "captured (some rule may match it)"
                        } else {
                            "passed over in the kernel (no loaded rule can match it)"
                        }
                    );
                }
                None => print!("{}", describe(&filter)),
            }
            Ok(true)
        }
    }
}

/// Open flags by name (`O_WRONLY|O_CREAT`) as their value.
fn open_flags(names: &str) -> anyhow::Result<u64> {
    use osprey_model::syscalls::flags::OPEN_BITS;
    names
        .split('|')
        .map(str::trim)
        .filter(|n| !n.is_empty())
        .try_fold(0u64, |acc, n| {
            let bits = match n {
                "O_RDONLY" => 0,
                "O_WRONLY" => 1,
                "O_RDWR" => 2,
                _ => OPEN_BITS
                    .iter()
                    .find(|(_, name)| *name == n)
                    .map(|(bit, _)| *bit)
                    .with_context(|| format!("--flags: {n} is not an open flag"))?,
            };
            Ok(acc | bits)
        })
}

/// The filter in words: per syscall how its classes go, then each set of path names.
fn describe(filter: &osprey_engine::compile::KernelFilter) -> String {
    use std::fmt::Write;

    use osprey_engine::compile::Verdict;
    let mut out = String::new();
    let access = [
        "read-only (O_RDONLY)",
        "write-only (O_WRONLY)",
        "read-write (O_RDWR)",
    ];
    for (slot, name) in agent_common::open_filter::SYSCALLS.iter().enumerate() {
        let _ = writeln!(out, "{name}:");
        for ok in [true, false] {
            for (acc, label) in access.iter().enumerate() {
                // creat's flags are fixed: O_WRONLY|O_CREAT|O_TRUNC.
                let (flags, label) = if *name == "creat" {
                    if acc > 0 {
                        continue;
                    }
                    (
                        agent_common::open_filter::CREAT_FLAGS,
                        &"O_WRONLY|O_CREAT|O_TRUNC",
                    )
                } else {
                    (acc as u64, label)
                };
                let v =
                    &filter.verdicts[slot][agent_common::open_filter::class(ok, flags) as usize];
                let what = match v {
                    Verdict::Pass => "captured".to_string(),
                    Verdict::Drop => "passed over".to_string(),
                    Verdict::Keys(i) => format!("captured when its path has a name of set {i}"),
                };
                let _ = writeln!(
                    out,
                    "  {label}, {}: {what}",
                    if ok { "succeeded" } else { "failed" }
                );
            }
        }
    }
    for (i, name) in agent_common::open_filter::CALLS.iter().enumerate() {
        let _ = writeln!(out, "{name}:");
        for ok in [true, false] {
            for class in (0..agent_common::open_filter::CALL_CLASSES).filter(|c| (c & 1 != 0) == ok)
            {
                // fcntl's "stdio" bit is only set for successes.
                if *name == "fcntl" && !ok && class & agent_common::open_filter::FCNTL_STDIO != 0 {
                    continue;
                }
                let what = if filter.calls[i][class as usize] {
                    "captured"
                } else {
                    "passed over"
                };
                let _ = writeln!(
                    out,
                    "  {}, {}: {what}",
                    call_class_label(name, class),
                    if ok { "succeeded" } else { "failed" }
                );
            }
        }
    }
    let (drop, keys, pass) = filter.counts();
    let _ = writeln!(
        out,
        "all classes (success, access mode, O_CREAT, O_EXCL, O_TRUNC, O_APPEND, O_DIRECTORY, \
         O_TMPFILE, O_PATH): {drop} passed over, {keys} judged on path names, {pass} captured"
    );
    for (i, set) in filter.sets.iter().enumerate() {
        let show = |n: &osprey_engine::compile::Names| {
            n.iter()
                .map(|b| String::from_utf8_lossy(b).into_owned())
                .collect::<Vec<_>>()
                .join(", ")
        };
        let _ = writeln!(
            out,
            "set {i}: first component [{}]; directory name [{}]; file name [{}]",
            show(&set.top),
            show(&set.parent),
            show(&set.leaf)
        );
    }
    out
}

/// What a class of a filtered call stands for: mprotect's protection bits, fcntl's command
/// (and whether it returned 0-2).
fn call_class_label(call: &str, class: u32) -> String {
    use agent_common::open_filter::{FCNTL_CMDS, FCNTL_STDIO};
    if call != "fcntl" {
        let bits: Vec<&str> = ["PROT_READ", "PROT_WRITE", "PROT_EXEC"]
            .iter()
            .enumerate()
            .filter(|(b, _)| class & (2 << b) != 0)
            .map(|(_, n)| *n)
            .collect();
        return if bits.is_empty() {
            "no PROT_READ, PROT_WRITE or PROT_EXEC".to_string()
        } else {
            bits.join("|")
        };
    }
    let cmd = match (class >> 1) & 3 {
        0 => "another command",
        k => FCNTL_CMDS[k as usize - 1].1,
    };
    if class & FCNTL_STDIO != 0 {
        format!("{cmd}, result 0-2")
    } else {
        cmd.to_string()
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
