//! A steady flow of captured syscalls is read without waking the reader: a wake-up is a
//! self-interrupt (irq_work) raised inside the traced task's syscall, a VM exit on a virtual
//! machine, so the kernel programs leave a reader that polls at its interval
//! (`ring_buffer_poll_us`) alone and wake only one that sleeps longer
//! (agent-ebpf/src/output.rs, `wakeup_flags`). Alone in its
//! binary: it counts the node's irq_work interrupts, which another agent's wake-ups would add
//! to. Root, real eBPF.

mod support;

use std::time::{Duration, Instant};

use support::*;

/// The node's irq_work interrupts so far, every CPU (`IWI` in /proc/interrupts).
fn irq_work_interrupts() -> u64 {
    let text = std::fs::read_to_string("/proc/interrupts").unwrap();
    let line = text
        .lines()
        .find(|l| l.trim_start().starts_with("IWI:"))
        .expect("an IWI line in /proc/interrupts");
    line.split_whitespace()
        .skip(1)
        .map_while(|w| w.parse::<u64>().ok())
        .sum()
}

/// Opens, every one captured.
const OPENS: usize = 2_000;

#[test]
fn kernel_a_steady_flow_is_read_without_waking_the_reader() {
    // The default interval, then a reader told to look only every 9 ms: the programs must
    // leave it alone for that long too, or every open after the first 3.75 ms of each
    // interval would wake it (about five a look, hundreds in all).
    for extra in [&[][..], &["--ring-buffer-poll-us", "9000"][..]] {
        steady_flow(extra);
    }
}

/// Captures `OPENS` opens made about 200 µs apart under `osprey trace --event openat EXTRA`
/// and holds the irq_work interrupts meanwhile to a handful.
fn steady_flow(extra: &[&str]) {
    let mut args = vec!["trace", "--event", "openat"];
    args.extend(extra);
    let mut agent = Agent::start(&args, "tracing; Ctrl-C to stop");
    let path = std::env::temp_dir().join(format!("osprey-steady-{}", std::process::id()));
    std::fs::write(&path, "x").unwrap();
    let p = path.to_str().unwrap().to_string();
    let before = irq_work_interrupts();
    // An open every 200 µs or so for about half a second: a light flow (a few records a
    // millisecond, like a build's), under which the rule before woke the reader every
    // millisecond.
    let start = Instant::now();
    for _ in 0..OPENS {
        drop(std::fs::File::open(&path).unwrap());
        std::thread::sleep(Duration::from_micros(200));
    }
    let took = start.elapsed();
    let wakeups = irq_work_interrupts() - before;
    let me = std::process::id() as u64;
    agent.wait_until("every open", Duration::from_secs(30), |seen| {
        seen.iter()
            .filter(|v| {
                syscall_name(v) == "openat"
                    && tgid(v) == me
                    && arg(v, "filename")["value"]["raw"] == p
            })
            .count()
            >= OPENS
    });
    std::fs::remove_file(&path).unwrap();
    // One wake-up as the flow starts (the reader had backed off); the old rule made about one
    // a millisecond: several hundred.
    let millis = took.as_millis() as u64;
    assert!(
        wakeups * 10 < millis,
        "{wakeups} irq_work interrupts while {OPENS} opens were captured over {millis} ms \
         (trace {extra:?})"
    );
}
