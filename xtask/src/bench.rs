//! `cargo xtask bench`: the criterion benches, then the system-level benchmark.

use std::{ffi::OsString, path::Path};

use anyhow::Result;

use crate::{
    proc,
    setup::{self, Env, Scope},
};

#[derive(clap::Args)]
pub struct Args {
    /// Arguments for `cargo bench`, e.g. a benchmark name filter.
    #[arg(last = true, value_name = "CARGO_BENCH_ARGS")]
    cargo_bench_args: Vec<OsString>,
}

pub fn run(root: &Path, args: Args) -> Result<()> {
    let env = setup::setup(root, Scope::Build)?;
    proc::step("cargo bench -p osprey");
    proc::run(
        env.cargo()
            .args(["bench", "-p", "osprey"])
            .args(&args.cargo_bench_args),
        "cargo bench -p osprey",
    )?;
    system_benchmark(&env)
}

/// The node-level benchmark: the agent under a real workload, its overhead on that workload,
/// its CPU and memory, written to docs/benchmarks.md with the machine it ran on.
///
/// Not written yet: until it is, this measures nothing and leaves docs/benchmarks.md alone.
fn system_benchmark(_env: &Env) -> Result<()> {
    proc::step("system-level benchmark: not implemented yet, nothing measured");
    Ok(())
}
