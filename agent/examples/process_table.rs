//! The process table's memory with N processes in it: N synthetic fork+exec event pairs go
//! through `ProcessTable::observe` (the agent's own path), and the resident set size is read
//! before and after. A node cannot run 100,000 live processes for a benchmark; the table does
//! not know the difference. Used by `cargo xtask bench`.
//!
//! `cargo run --release --example process_table -- 100000`

use osprey::process::{ProcessTable, TableConfig};
use osprey_model::event::{Event, EventKind, Exec, Fork};

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches(" kB").trim().parse().ok())
        })
        .unwrap_or(0)
}

fn event(tgid: u32, ts: u64, comm: &str, kind: EventKind) -> Event {
    Event {
        ts,
        time: 1_700_000_000_000_000_000 + ts,
        tgid,
        tid: tgid,
        uid: 1000,
        gid: 1000,
        euid: 1000,
        egid: 1000,
        cgroup_id: 4242,
        pid_ns: 4026531836,
        mnt_ns: 4026531841,
        vpid: tgid,
        comm: comm.into(),
        cap_effective: 0,
        cap_permitted: 0,
        kind,
    }
}

fn main() {
    let n: u32 = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(100_000);
    let before = rss_kib();
    let mut table = ProcessTable::new(TableConfig {
        // Room for all of them: the default capacity (65,536) would evict the oldest.
        capacity: n as usize + 1024,
        ..Default::default()
    });
    let parent = 10;
    let start = std::time::Instant::now();
    for i in 0..n {
        let pid = 100_000 + i;
        let ts = 1_000_000 + u64::from(i) * 1_000;
        let fork = Fork {
            child_tid: pid,
            child_tgid: pid,
            is_thread: false,
            child_vpid: 0,
            child_pid_ns: 0,
        };
        table.observe(event(parent, ts, "containerd-shim", EventKind::Fork(fork)));
        // A typical container workload's command line: an interpreter, a script, a few flags.
        let exec = Exec {
            filename: "/usr/local/bin/python3.12".into(),
            args: vec![
                "python3".into(),
                "/srv/app/worker.py".into(),
                "--queue".into(),
                format!("jobs-{i}"),
                "--concurrency=4".into(),
            ],
            exe_name: "python3.12".into(),
            cgroup: format!("kubepods-burstable-pod{i:08x}.slice/cri-containerd-{i:064x}.scope"),
            ..Default::default()
        };
        table.observe(event(pid, ts + 500, "python3", EventKind::Exec(exec)));
    }
    let elapsed = start.elapsed();
    let after = rss_kib();
    let delta = after.saturating_sub(before);
    println!(
        "process table: {} processes, RSS {before} KiB -> {after} KiB, +{delta} KiB = {:.0} bytes/process, {:.0} ns per fork+exec",
        table.len(),
        delta as f64 * 1024.0 / f64::from(n.max(1)),
        elapsed.as_nanos() as f64 / f64::from(n.max(1)),
    );
}
