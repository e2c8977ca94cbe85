//! The `osprey` subcommands. Each takes its parsed arguments and runs to completion; `main.rs`
//! only parses the command line and picks one.

pub mod certs;
pub mod collector;
pub mod kernel;
pub mod profile;
pub mod rules;
pub mod run;
pub mod tail;
pub mod trace;

use std::io::IsTerminal;

/// Logs go to stderr: human-readable on a terminal, JSON lines otherwise (collectors parse
/// them). `RUST_LOG` overrides the level.
pub fn init_logging(verbose: bool) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| {
        tracing_subscriber::EnvFilter::new(if verbose { "debug" } else { "info" })
    });
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if std::io::stderr().is_terminal() {
        builder.init();
    } else {
        builder.json().init();
    }
}
