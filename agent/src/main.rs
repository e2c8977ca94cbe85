//! `osprey`: parses the command line and runs the chosen subcommand.

use clap::{Parser, Subcommand};
use osprey::commands;

#[derive(Parser)]
#[command(
    name = "osprey",
    version,
    about = "Runtime security for Kubernetes nodes, on eBPF"
)]
struct Cli {
    /// More log output (debug level).
    #[arg(long, short = 'v', global = true)]
    verbose: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the agent: judge live events against rules, print alerts.
    Run(commands::run::RunArgs),
    /// Follow the alert stream of an agent or the collector (or NATS JetStream).
    Tail(commands::tail::TailArgs),
    /// Collect alerts pushed by agents and serve them to tail clients (and NATS).
    Collector(commands::collector::CollectorArgs),
    /// Issue a CA and the collector's, agents' and readers' certificates (with their roles).
    Certs(commands::certs::CertsArgs),
    /// Print live kernel events as JSON lines, with their process context.
    Trace(commands::trace::TraceArgs),
    /// Check and list rule files.
    #[command(subcommand)]
    Rules(commands::rules::RulesCommand),
    /// Syscall profiles: import an OCI/Docker seccomp profile.
    #[command(subcommand)]
    Profile(commands::profile::ProfileCommand),
    /// What the running kernel offers: features found and every offset the programs read.
    Kernel(commands::kernel::KernelArgs),
    /// List the fields rules and outputs can use.
    Fields {
        #[arg(long)]
        json: bool,
    },
    /// Run a recording (`osprey trace --record`) through the rules offline.
    Replay(commands::rules::ReplayArgs),
    /// Configuration: `osprey config default` prints every setting, documented.
    #[command(subcommand)]
    Config(ConfigCommand),
}

#[derive(Subcommand)]
enum ConfigCommand {
    /// Print the default configuration file, every setting documented.
    Default,
}

/// Runs the agent's event loop as a task on the runtime's workers rather than on the main
/// thread's `block_on`. The ring buffer's readiness and the poll timer are noticed by a worker
/// (the one parked in `epoll_wait`); a task there runs on that thread at once, where the main
/// thread had to be woken through a futex for every batch: two context switches per wake-up
/// instead of one. Measured under `workload exec` (an exec a millisecond, about seven events
/// each): the agent's CPU per exec went from 120-140 µs to 70-90 µs (docs/benchmarks.md).
async fn on_worker<F, T>(task: F) -> anyhow::Result<T>
where
    F: std::future::Future<Output = anyhow::Result<T>> + Send + 'static,
    T: Send + 'static,
{
    match tokio::spawn(task).await {
        Ok(r) => r,
        // A panic was printed by the hook already; the process still exits non-zero.
        Err(e) => Err(anyhow::anyhow!("the event loop stopped abnormally: {e}")),
    }
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    commands::init_logging(cli.verbose);
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("osprey: cannot start the runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let result = rt.block_on(async {
        match cli.command {
            Command::Run(args) => on_worker(commands::run::run(args)).await.map(|()| true),
            Command::Tail(args) => commands::tail::run(args).await.map(|()| true),
            Command::Collector(args) => commands::collector::run(args).await.map(|()| true),
            Command::Certs(args) => commands::certs::run(args).map(|()| true),
            Command::Trace(args) => commands::trace::run(args).await.map(|()| true),
            Command::Rules(cmd) => commands::rules::run(cmd),
            Command::Profile(cmd) => commands::profile::run(cmd),
            Command::Kernel(args) => commands::kernel::run(args).map_err(Into::into),
            Command::Fields { json } => {
                commands::rules::fields(json);
                Ok(true)
            }
            Command::Replay(args) => commands::rules::replay(args).map(|()| true),
            Command::Config(ConfigCommand::Default) => {
                print!("{}", osprey::config::DEFAULT_YAML);
                Ok(true)
            }
        }
    });
    match result {
        Ok(true) => std::process::ExitCode::SUCCESS,
        Ok(false) => std::process::ExitCode::FAILURE,
        Err(e) => {
            eprintln!("osprey: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
