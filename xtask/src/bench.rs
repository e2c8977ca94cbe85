//! `cargo xtask bench`: the criterion benches, then the system-level benchmark, written to
//! docs/benchmarks.md.

mod host;
mod measure;
mod report;

use std::{ffi::OsString, path::Path, time::Instant};

use anyhow::{Context as _, Result, bail};

use crate::{
    proc,
    setup::{self, Env, Scope},
    system,
};

#[derive(clap::Args)]
pub struct Args {
    /// Only the criterion benches; leave docs/benchmarks.md alone.
    #[arg(long)]
    criterion_only: bool,
    /// Arguments for `cargo bench`, e.g. a benchmark name filter.
    #[arg(last = true, value_name = "CARGO_BENCH_ARGS")]
    cargo_bench_args: Vec<OsString>,
}

pub fn run(root: &Path, args: Args) -> Result<()> {
    if !args.criterion_only && !system::is_root() {
        bail!(
            "the system benchmark loads eBPF programs: run `cargo xtask bench` as root \
             (or `cargo xtask bench --criterion-only`)"
        );
    }
    let started = Instant::now();
    let machine = host::machine(root);
    let env = setup::setup(root, Scope::Build)?;
    proc::step("cargo bench -p osprey-engine -p osprey");
    proc::run(
        env.cargo()
            .args(["bench", "-p", "osprey-engine", "-p", "osprey"])
            .args(&args.cargo_bench_args),
        "cargo bench -p osprey-engine -p osprey",
    )?;
    if args.criterion_only {
        return Ok(());
    }
    system_benchmark(&env, machine, started)
}

/// Debian packages the node-level benchmark needs beyond the tests'.
const BENCH_APT_PACKAGES: &[&str] = &["redis-server", "redis-tools", "valgrind"];

/// The node-level benchmark: the agent under real workloads, its overhead on them against no
/// agent and against the floor, its throughput, latency, CPU and memory, written to
/// docs/benchmarks.md with the machine it ran on.
fn system_benchmark(env: &Env, machine: host::Machine, started: Instant) -> Result<()> {
    // The redis-benchmark row (Falco's published workload), for the benchmark only.
    crate::system::ensure_apt_packages(BENCH_APT_PACKAGES)?;
    proc::step("building osprey and the workload examples (release)");
    proc::run(
        env.cargo()
            .args(["build", "--release", "-p", "osprey", "--bins", "--examples"]),
        "cargo build --release -p osprey --bins --examples",
    )?;
    proc::run(
        env.cargo()
            .args(["build", "--release", "-p", "osprey-engine", "--examples"]),
        "cargo build --release -p osprey-engine --examples",
    )?;
    let release = env.target_dir().join("release");
    let falco = env.root().join("../shared/compat/falco_rules.yaml");
    let bins = host::Bins {
        osprey: release.join("osprey"),
        workload: release.join("examples/workload"),
        process_table: release.join("examples/process_table"),
        syscall_loop: release.join("examples/syscall_loop"),
        empty_hook: release.join("examples/empty_hook"),
        falco_rules: falco
            .exists()
            .then(|| std::fs::canonicalize(&falco).unwrap_or(falco.clone())),
    };
    if bins.falco_rules.is_none() {
        proc::step("../shared/compat/falco_rules.yaml is missing: upstream-rules figures left out");
    }
    // Off for the wall-time rows (it costs every program run two clock reads); on only for
    // the kernel-cost rows, which read it.
    let _stats = host::BpfStats::off()?;
    let overhead = measure::overhead(&bins)?;
    let build = measure::build_closer(&bins)?;
    let load = measure::load(&bins)?;
    let latency = measure::latency(&bins)?;
    let table = measure::process_table(&bins)?;
    let kernel = measure::kernel_cost(&bins)?;
    let blinding = measure::blinding(&bins)?;
    let engine_mix = release.join("examples/engine_mix");
    let engine_instructions = (
        measure::engine_instructions(&engine_mix, "default"),
        bins.falco_rules
            .as_ref()
            .map(|f| measure::engine_instructions(&engine_mix, &f.display().to_string())),
    );
    let target = env.target_dir();
    let results = report::Results {
        machine,
        load_end: host::load_average(),
        minutes: started.elapsed().as_secs_f64() / 60.0,
        overhead,
        build,
        load,
        latency,
        table,
        kernel,
        blinding,
        engine_default: measure::criterion(&target, "engine", "default_rules_mix"),
        engine_upstream: measure::criterion(&target, "engine", "upstream_stable_mix"),
        pipeline_hot_path: measure::criterion(&target, "pipeline", "hot_path_open_close"),
        pipeline_flood: measure::criterion(&target, "pipeline", "hot_path_flood"),
        engine_instructions,
        falco_rules: bins
            .falco_rules
            .as_ref()
            .map(|_| "falco_rules.yaml".to_string()),
    };
    let path = env.root().join("docs/benchmarks.md");
    let old = std::fs::read_to_string(&path).unwrap_or_default();
    let notes = report::kept_notes(&old).to_string();
    std::fs::create_dir_all(path.parent().expect("docs/"))?;
    std::fs::write(&path, report::render(&results, &notes))
        .with_context(|| format!("writing {}", path.display()))?;
    proc::step(format!(
        "wrote {} ({:.1} minutes)",
        path.display(),
        started.elapsed().as_secs_f64() / 60.0
    ));
    Ok(())
}
