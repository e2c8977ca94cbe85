//! `cargo xtask test`: lints, every test, manifest checks, the kernel matrix, in that order; the
//! first failure stops.

use std::{ffi::OsString, path::Path, process::Command, time::Duration};

use anyhow::{Result, bail};

use crate::{
    kernels, proc,
    setup::{self, Scope},
    system,
};

#[derive(clap::Args)]
pub struct Args {
    /// Skip `cargo fmt --check` and `cargo clippy`.
    #[arg(long)]
    pub(crate) no_lint: bool,
    /// Skip the kernel matrix (`cargo xtask kernels`), e.g. without access to Debian's mirror.
    /// Says so loudly: CI never passes it.
    #[arg(long)]
    pub(crate) no_kernels: bool,
    /// Arguments for `cargo test`, e.g. a test name filter: `cargo xtask test -- kernel_sensor`.
    #[arg(last = true, value_name = "CARGO_TEST_ARGS")]
    pub(crate) cargo_test_args: Vec<OsString>,
}

/// How long `cargo test` (build included) may run before it is stopped as hung.
const TEST_LIMIT: Duration = Duration::from_secs(50 * 60);

pub fn run(root: &Path, args: Args) -> Result<()> {
    let root_user = system::is_root();
    if !root_user && !system::has_sudo() {
        bail!(
            "the integration tests load eBPF programs and need root, and sudo is not installed: run `cargo xtask test` as root"
        );
    }
    let env = setup::setup(root, Scope::Full)?;

    if !args.no_lint {
        step(env.cargo().args(["fmt", "--all", "--", "--check"]))?;
        step(
            env.cargo()
                .args(["clippy", "--all-targets", "--", "-D", "warnings"]),
        )?;
    }

    // tests/deploy_pods.rs runs the manifest's pods from the image, as a cluster would.
    crate::image::build(&env, None)?;

    let mut test = env.cargo();
    test.args(["test", "--release"]).args(&args.cargo_test_args);
    if !root_user {
        // Build as the user (target/ stays theirs), run the test binaries as root.
        let triple = env.host.to_uppercase().replace('-', "_");
        test.env(format!("CARGO_TARGET_{triple}_RUNNER"), "sudo -E");
    }
    // The suite takes about 15 minutes on a fresh clone; a hang is stopped well inside CI's 90
    // with a report of where it hung.
    let line = proc::display(&test);
    proc::step(&line);
    proc::run_within(&mut test, &format!("step `{line}`"), TEST_LIMIT)?;

    let manifest = "daemonset.yaml";
    if env.root().join(manifest).is_file() {
        step(
            Command::new("kubernetes-validate")
                .args(["--strict", manifest])
                .current_dir(env.root()),
        )?;
    }
    if args.no_kernels {
        proc::step(
            "NOTICE: the kernel matrix was SKIPPED (--no-kernels): the agent was not run on \
             5.10, 6.1 and 6.12",
        );
    } else if !args.cargo_test_args.is_empty() {
        // A filtered run is a developer's loop; the whole run (CI's) always has the matrix.
        proc::step(
            "NOTICE: the kernel matrix was SKIPPED (cargo test arguments were given): run \
             `cargo xtask kernels` for it",
        );
    } else {
        kernels::run_with(&env, &kernels::Args::default())?;
    }
    proc::step("all checks passed");
    Ok(())
}

/// One step: its command line is its name, in the progress line and in the error.
fn step(cmd: &mut Command) -> Result<()> {
    let line = proc::display(cmd);
    proc::step(&line);
    proc::run(cmd, &format!("step `{line}`"))
}
