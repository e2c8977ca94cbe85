//! `osprey trace`: its flags; the tracing itself is [`crate::pipeline::trace`].

use std::path::PathBuf;

use crate::pipeline::trace::{self, TraceOptions};

/// Arguments of `osprey trace`.
#[derive(Debug, clap::Args)]
pub struct TraceArgs {
    /// Only these events: syscall names (openat, connect, ...) or exec, fork, exit.
    /// Syscalls not named are not captured at all (the kernel filter). Repeatable or comma-separated.
    #[arg(long = "event", short = 'e', value_delimiter = ',')]
    pub events: Vec<String>,
    /// Only events of processes with this name (comm) or executable base name. Repeatable.
    #[arg(long = "comm", short = 'c', value_delimiter = ',')]
    pub comms: Vec<String>,
    /// Only events of this process id (thread group id). Repeatable.
    #[arg(long = "pid", short = 'p', value_delimiter = ',')]
    pub pids: Vec<u32>,
    /// Also write every printed event to FILE (JSON lines), for `osprey replay`.
    #[arg(long)]
    pub record: Option<PathBuf>,
    /// Do not print events on stdout (with --record).
    #[arg(long, short = 'q')]
    pub quiet: bool,
    /// Stop after this many printed events.
    #[arg(long)]
    pub count: Option<u64>,
    /// Stop after this many seconds.
    #[arg(long)]
    pub duration: Option<f64>,
    /// Ring buffer size in bytes (a power of two, at least 4096).
    #[arg(long, default_value_t = 16 * 1024 * 1024)]
    pub ring_buffer_size: u32,
    /// How often, in microseconds, the ring buffer is read while events flow, as `run
    /// --ring-buffer-poll-us` (500 to 50000).
    #[arg(long, default_value_t = crate::sensor::DEFAULT_POLL.as_micros() as u32,
          value_parser = clap::value_parser!(u32).range(
              crate::sensor::POLL_RANGE.start().as_micros() as i64
                  ..=crate::sensor::POLL_RANGE.end().as_micros() as i64))]
    pub ring_buffer_poll_us: u32,
    /// Print counters (events, drops, process table) on stderr every N seconds and at the end.
    #[arg(long)]
    pub stats: Option<f64>,
    /// Read events from the ring buffer only every N milliseconds (to show drop counting
    /// with a small ring buffer; 0 = as soon as they arrive).
    #[arg(long, default_value_t = 0, hide = true)]
    pub read_delay_ms: u64,
    /// Attach the programs but leave them inert, returning at their first check: the floor
    /// that `cargo xtask bench` compares the agent with. Prints no events.
    #[arg(long, hide = true)]
    pub floor: bool,
    /// Attach the syscall-exit program as a raw tracepoint (helper reads) even where its BTF
    /// form would load, as `run --no-kernel-btf-tracepoint` does.
    #[arg(long)]
    pub no_kernel_btf_tracepoint: bool,
    /// Read the files, dentries and mounts of path walks with a helper call each even where
    /// casts would load, as `run --no-kernel-btf-casts` does.
    #[arg(long)]
    pub no_kernel_btf_casts: bool,
    /// Attach the syscall-exit program per wanted syscall, as `run --kernel-syscall-events`.
    #[arg(long, value_name = "auto|off|always", default_value = "auto")]
    pub kernel_syscall_events: crate::sensor::events::ExitEvents,
}

pub async fn run(a: TraceArgs) -> anyhow::Result<()> {
    Ok(trace::run(TraceOptions {
        events: a.events,
        comms: a.comms,
        pids: a.pids,
        record: a.record,
        quiet: a.quiet,
        count: a.count,
        duration: a.duration,
        ring_buffer_size: a.ring_buffer_size,
        poll: std::time::Duration::from_micros(a.ring_buffer_poll_us.into()),
        stats: a.stats,
        read_delay_ms: a.read_delay_ms,
        floor: a.floor,
        btf_tracepoint: !a.no_kernel_btf_tracepoint,
        btf_casts: !a.no_kernel_btf_casts,
        exit_events: a.kernel_syscall_events,
    })
    .await?)
}
