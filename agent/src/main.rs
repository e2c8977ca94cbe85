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
    /// Print live kernel events as JSON lines, with their process context.
    Trace(commands::trace::TraceArgs),
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
            Command::Trace(args) => commands::trace::run(args).await,
        }
    });
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("osprey: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
