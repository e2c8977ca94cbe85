//! A process that floods the sensor loses its own records, not the node's: the ring buffer's
//! shares (agent-ebpf/src/output.rs), done for real with podman and the default rules: a
//! container's flood against the host's reads, and, on this cgroup-v1 machine where every host
//! process sits in the v2 root, one host process's flood against another's. Alone in its
//! binary (and the two tests one at a time): every other test's processes are the host's too,
//! and a flood beside them would be theirs to share. The agent runs under a CPU quota, as a
//! DaemonSet's limits may hold it, so that the floods outpace it on any machine. Root, real
//! eBPF, podman with runc.

mod rules_support;
mod support;

use std::{
    path::{Path, PathBuf},
    sync::Mutex,
    time::{Duration, Instant},
};

use rules_support::*;

/// One flood at a time: two agents and two floods on two CPUs would test the machine.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

/// The sum of `osprey_kernel_dropped_by_container_total` samples whose labels contain every
/// one of `labels` (e.g. `container_name="x"`).
fn dropped_by_container(body: &str, labels: &[&str]) -> f64 {
    body.lines()
        .filter_map(|l| l.strip_prefix("osprey_kernel_dropped_by_container_total{"))
        .filter_map(|l| l.split_once("} "))
        .filter(|(set, _)| labels.iter().all(|want| set.contains(want)))
        .map(|(_, v)| v.trim().parse::<f64>().unwrap())
        .sum()
}

/// The agent's metrics once the share named by `labels` has lost a record (the ring is under
/// pressure), within five seconds.
fn once_losing(port: u16, labels: &[&str]) -> String {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let (_, body) = support::http_get(port, "/metrics").unwrap();
        if dropped_by_container(&body, labels) > 0.0 {
            return body;
        }
        assert!(
            Instant::now() < deadline,
            "{labels:?} never lost a record: {body}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Five reads of /etc/shadow by host processes, 200 ms apart, each marked with `marker-i`.
fn read_shadow_five_times(marker: &str) {
    for i in 0..5 {
        let _ = bash(&format!("head -c0 /etc/shadow {marker}-{i} 2>/dev/null"));
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Whether `v` is the alert for read `i` of [`read_shadow_five_times`].
fn is_read(v: &serde_json::Value, marker: &str, i: usize) -> bool {
    v["rule"] == "Read sensitive file"
        && field(v, "proc.cmdline").ends_with(&format!("{marker}-{i}"))
}

/// Starts an agent with its metrics on a free port, held to a tenth of a CPU once running.
fn agent() -> (support::Agent, u16, Throttled) {
    let port = support::free_port();
    let metrics = format!("127.0.0.1:{port}");
    let args = ["run", "--json", "--no-flood-control", "--metrics", &metrics];
    let agent = support::Agent::start(&args, "osprey is running");
    let throttled = Throttled::new(agent.pid());
    (agent, port, throttled)
}

/// A CPU cgroup holding a process to 10 ms of CPU every 100 ms (cgroup v1's `cpu`
/// controller, as on this machine, or v2's `cpu.max`). The floods here are shells opening
/// /dev/null onto their stdin: a dup2 and an fcntl record each, which the agent once read at
/// about 18k a second (a /proc read for every dup onto stdin) and now reads as fast as two
/// shells make them; a real node's agent meets a faster flood, or runs under a CPU limit.
/// Moved back and removed when dropped.
struct Throttled {
    dir: PathBuf,
    parent: PathBuf,
    pid: u32,
}

impl Throttled {
    fn new(pid: u32) -> Throttled {
        let v2 = Path::new("/sys/fs/cgroup/cgroup.controllers").exists();
        let parent = PathBuf::from(if v2 {
            "/sys/fs/cgroup"
        } else {
            "/sys/fs/cgroup/cpu"
        });
        let dir = parent.join(format!("osprey-test-throttle-{pid}"));
        let write = |file: &Path, text: &str| {
            std::fs::write(file, text)
                .unwrap_or_else(|e| panic!("writing {text:?} to {}: {e}", file.display()))
        };
        if v2 {
            // The controller enabled for the root's children (already so where systemd runs).
            let _ = std::fs::write(parent.join("cgroup.subtree_control"), "+cpu");
        }
        std::fs::create_dir_all(&dir)
            .unwrap_or_else(|e| panic!("creating the cgroup {}: {e}", dir.display()));
        if v2 {
            write(&dir.join("cpu.max"), "10000 100000");
        } else {
            write(&dir.join("cpu.cfs_period_us"), "100000");
            write(&dir.join("cpu.cfs_quota_us"), "10000");
        }
        write(&dir.join("cgroup.procs"), &pid.to_string());
        Throttled { dir, parent, pid }
    }
}

impl Drop for Throttled {
    fn drop(&mut self) {
        let _ = std::fs::write(self.parent.join("cgroup.procs"), self.pid.to_string());
        let _ = std::fs::remove_dir(&self.dir);
    }
}

#[test]
fn a_noisy_container_does_not_blind_the_node() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    // A container that opens /dev/null as fast as two shells can (every open a captured
    // syscall, far more than the agent reads on this box) would fill the ring buffer, and a
    // read of /etc/shadow on the host at that time would be lost with the container's records
    // (2 of 5 alerted when checked without the per-cgroup share). With it, the container
    // loses its own records past its share, counted against it, and the host's still arrive.
    // Nor does the flood hide what the container itself runs meanwhile (the point of blinding
    // the sensor): it starts five shells while it floods, and each is reported, from the
    // share's bucket for execs, forks and exits.
    image();
    let (mut agent, port, _throttled) = agent();
    let name = format!("osprey-noisy-{}", std::process::id());
    let _ = bash(&format!("podman rm -f -t 0 {name} >/dev/null 2>&1"));
    let marker = format!("/nonexistent/{name}");
    bash_ok(&format!(
        "podman run -d --rm --network none --name {name} {IMAGE} sh -c \
         'for j in 1 2; do timeout 6 sh -c \"while :; do : </dev/null; done\" & done; \
          sleep 2; for i in 0 1 2 3 4; do /bin/sh -c \": {marker}-shell-$i\"; sleep 0.2; done; \
          wait' >/dev/null"
    ));
    let _gone = Removed(name.clone());
    let over = format!("container_name=\"{name}\"");
    let body = once_losing(port, &[&over]);
    let host_before = dropped_by_container(&body, &["container_id=\"host\""]);

    // While it floods, the host reads /etc/shadow five times.
    read_shadow_five_times(&marker);
    let shell = |v: &serde_json::Value, i: usize| {
        v["rule"] == "Shell spawned in container"
            && field(v, "proc.cmdline").ends_with(&format!("{marker}-shell-{i}"))
            && field(v, "container.name") == name
    };
    let deadline = Instant::now() + WAIT;
    let (mut seen, mut shells) = (0, 0);
    while Instant::now() < deadline {
        let lines = agent.collect_for(Duration::from_millis(200));
        seen = (0..5)
            .filter(|&i| lines.iter().any(|v| is_read(v, &marker, i)))
            .count();
        shells = (0..5)
            .filter(|&i| lines.iter().any(|v| shell(v, i)))
            .count();
        if seen == 5 && shells == 5 {
            break;
        }
    }
    let (_, body) = support::http_get(port, "/metrics").unwrap();
    assert_eq!(seen, 5, "{seen} of 5 reads alerted; metrics:\n{body}");
    assert_eq!(
        shells, 5,
        "{shells} of the 5 shells the flooding container started alerted; metrics:\n{body}"
    );
    for i in 0..5 {
        let a = agent
            .collect_for(Duration::ZERO)
            .iter()
            .find(|v| is_read(v, &marker, i))
            .unwrap()
            .clone();
        check(&a, "Warning", &["T1003.008"], &[("fd.name", "/etc/shadow")]);
    }
    let noisy = dropped_by_container(&body, &[&over]);
    let host = dropped_by_container(&body, &["container_id=\"host\""]) - host_before;
    let delivered = support::metric(&body, "osprey_events_total{kind=\"openat\"}").unwrap();
    // The container's losses are named, as over its share; the host lost (almost) nothing.
    assert!(noisy > 1000.0, "{body}");
    assert!(
        dropped_by_container(&body, &[&over, "reason=\"over_share\""]) > 0.0,
        "{body}"
    );
    assert!(
        host < delivered / 100.0,
        "the host lost {host} records while the container flooded: {body}"
    );
}

#[test]
fn a_busy_host_process_does_not_blind_the_others() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    // On a node whose containers run on cgroup v1 every host process sits in the v2 root.
    // Sharing one host share, a busy daemon (a runtime tearing a container down, a container
    // crash-looping) spent it, and an admin's read of /etc/shadow meanwhile was lost with the
    // daemon's records. Each host process has a share of its own instead. Two host shells
    // flood here, and the reads by other host processes still alert.
    let (mut agent, port, _throttled) = agent();
    let marker = format!("/nonexistent/osprey-busy-host-{}", std::process::id());
    let mut flood = std::process::Command::new("bash")
        .arg("-c")
        .arg("for j in 1 2; do timeout 6 sh -c 'while :; do : </dev/null; done' & done; wait")
        .spawn()
        .unwrap();
    once_losing(port, &["container_id=\"host\"", "reason=\"over_share\""]);
    read_shadow_five_times(&marker);
    let deadline = Instant::now() + WAIT;
    let mut seen = 0;
    while Instant::now() < deadline && seen < 5 {
        let lines = agent.collect_for(Duration::from_millis(200));
        seen = (0..5)
            .filter(|&i| lines.iter().any(|v| is_read(v, &marker, i)))
            .count();
    }
    let (_, body) = support::http_get(port, "/metrics").unwrap();
    // Bounded by its `timeout`s; waited for so that the other test starts on a quiet host.
    let _ = flood.wait();
    assert_eq!(
        seen, 5,
        "{seen} of 5 host reads alerted while another host process flooded; metrics:\n{body}"
    );
}

/// Removes a podman container when dropped.
struct Removed(String);

impl Drop for Removed {
    fn drop(&mut self) {
        let _ = bash(&format!("podman rm -f -t 0 {} >/dev/null 2>&1", self.0));
    }
}
