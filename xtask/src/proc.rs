//! Running child processes: one line saying what runs, and errors that name the step.

use std::process::{Command, Output};

use anyhow::{Context as _, Result, bail};

/// Prints one short line for a step.
pub fn step(what: impl std::fmt::Display) {
    println!("[xtask] {what}");
}

/// Runs `cmd` with inherited stdio; a non-zero exit is an error naming `what`.
pub fn run(cmd: &mut Command, what: &str) -> Result<()> {
    let status = cmd
        .status()
        .with_context(|| format!("{what}: cannot start `{}`", display(cmd)))?;
    if !status.success() {
        bail!("{what} failed ({status}): `{}`", display(cmd));
    }
    Ok(())
}

/// Runs `cmd` capturing its output; a non-zero exit is an error with its stderr.
pub fn output(cmd: &mut Command, what: &str) -> Result<String> {
    let Output {
        status,
        stdout,
        stderr,
    } = cmd
        .output()
        .with_context(|| format!("{what}: cannot start `{}`", display(cmd)))?;
    if !status.success() {
        bail!(
            "{what} failed ({status}): `{}`\n{}",
            display(cmd),
            String::from_utf8_lossy(&stderr).trim_end()
        );
    }
    String::from_utf8(stdout).with_context(|| format!("{what}: output is not UTF-8"))
}

/// The command line as a user would type it, for messages.
pub fn display(cmd: &Command) -> String {
    std::iter::once(cmd.get_program())
        .chain(cmd.get_args())
        .map(|s| s.to_string_lossy().into_owned())
        .collect::<Vec<_>>()
        .join(" ")
}
