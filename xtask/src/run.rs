//! `cargo xtask run`: build the agent and become it.

use std::{ffi::OsString, os::unix::process::CommandExt as _, path::Path, process::Command};

use anyhow::{Context as _, Result, bail};

use crate::{
    proc,
    setup::{self, Scope},
    system,
};

/// What `cargo xtask run` runs when given no arguments.
const DEFAULT_COMMAND: &str = "run";

#[derive(clap::Args)]
pub struct Args {
    /// Arguments for `osprey` instead of the default `run`, e.g. `cargo xtask run -- trace -e openat`.
    #[arg(last = true, value_name = "OSPREY_ARGS")]
    pub(crate) args: Vec<OsString>,
}

pub fn run(root: &Path, args: Args) -> Result<()> {
    // Loading eBPF needs CAP_BPF and CAP_PERFMON: find out before spending a build.
    let root_user = system::is_root();
    if !root_user && !system::has_sudo() {
        bail!(
            "the agent must run as root (it loads eBPF programs) and sudo is not installed: run `cargo xtask run` as root"
        );
    }
    let env = setup::setup(root, Scope::Build)?;

    proc::step("building osprey (release)");
    proc::run(
        env.cargo().args(["build", "--release", "-p", "osprey"]),
        "cargo build --release -p osprey",
    )?;

    let bin = env.target_dir().join("release/osprey");
    // The build runs as the user, so target/ stays theirs; only the agent itself runs as root.
    let mut cmd = if root_user {
        Command::new(&bin)
    } else {
        let mut sudo = Command::new("sudo");
        sudo.arg("-E").arg(&bin);
        sudo
    };
    if args.args.is_empty() {
        cmd.arg(DEFAULT_COMMAND);
    } else {
        cmd.args(&args.args);
    }
    proc::step(format!("exec {}", proc::display(&cmd)));
    // exec, so that Ctrl-C and other signals reach the agent directly.
    let err = cmd.exec();
    Err(err).with_context(|| format!("cannot exec {}", bin.display()))
}
