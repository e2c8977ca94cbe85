//! `cargo xtask`: one command to set up what the eBPF build needs, then build, run, test or
//! bench Osprey. Every subcommand runs the same idempotent set-up first, so a fresh machine and
//! a warm one are driven the same way.

mod bench;
mod image;
mod kernels;
mod proc;
mod run;
mod rustc;
mod setup;
mod system;
mod test;

use std::{path::PathBuf, process::ExitCode};

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "cargo xtask",
    bin_name = "cargo xtask",
    about = "Set up, build, run, test and bench Osprey"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Set up, build the agent (release) and run it as root.
    Run(run::Args),
    /// Set up, then fmt, clippy, every test (unit and integration, as root), manifest checks and
    /// the kernel matrix.
    Test(test::Args),
    /// Set up, then run the agent on the kernel matrix (5.10, 6.1, 6.12) in qemu.
    Kernels(kernels::Args),
    /// Set up, then run the benchmarks.
    Bench(bench::Args),
    /// Build the agent's container image with podman (`localhost/osprey:VERSION`).
    Image(image::Args),
    /// Only the set-up: rust-src for nightly, bpf-linker, and the packages the tests use.
    Setup,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    proc::stop_descendants_on_signal();
    match dispatch(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            // The cause chain, without the backtrace anyhow adds under RUST_BACKTRACE=1: the
            // failing step is what a reader of a CI log needs.
            eprintln!("[xtask] error: {err}");
            for cause in err.chain().skip(1) {
                eprintln!("[xtask]   caused by: {cause}");
            }
            ExitCode::FAILURE
        }
    }
}

fn dispatch(cli: Cli) -> anyhow::Result<()> {
    let root = workspace_root();
    match cli.command {
        Command::Run(args) => run::run(&root, args),
        Command::Test(args) => test::run(&root, args),
        Command::Kernels(args) => kernels::run(&root, args),
        Command::Bench(args) => bench::run(&root, args),
        Command::Image(args) => image::run(&root, args),
        Command::Setup => setup::setup(&root, setup::Scope::Full).map(drop),
    }
}

/// The workspace root: this crate's parent, so that `cargo xtask` works from any directory.
fn workspace_root() -> PathBuf {
    let manifest_dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    manifest_dir
        .parent()
        .map_or_else(|| manifest_dir.clone(), PathBuf::from)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Command {
        Cli::try_parse_from(std::iter::once("xtask").chain(args.iter().copied()))
            .unwrap()
            .command
    }

    #[test]
    fn test_passes_everything_after_the_first_double_dash_to_cargo_test() {
        let Command::Test(args) =
            parse(&["test", "--no-lint", "--", "kernel", "--", "--nocapture"])
        else {
            panic!("not test");
        };
        assert!(args.no_lint);
        assert_eq!(args.cargo_test_args, ["kernel", "--", "--nocapture"]);
    }

    #[test]
    fn run_passes_agent_flags_verbatim() {
        let Command::Run(args) = parse(&["run", "--", "trace", "-e", "openat", "--stats", "5"])
        else {
            panic!("not run");
        };
        assert_eq!(args.args, ["trace", "-e", "openat", "--stats", "5"]);
    }
}
