//! A container that floods the sensor loses its own records, not the node's: the ring buffer's
//! share per cgroup (agent-ebpf/src/output.rs), done for real with podman and the default
//! rules. Alone in its binary: every other test's processes are the host's too, and a flood
//! beside them would be theirs to share. Root, real eBPF, podman with runc.

mod rules_support;
mod support;

use std::time::Duration;

use rules_support::*;

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

#[test]
fn a_noisy_container_does_not_blind_the_node() {
    noisy_container_and_host_reads(None);
}

/// The flood and the reads, the agent on a ring of `ring` bytes (default: the default).
fn noisy_container_and_host_reads(ring: Option<&str>) {
    // A container that opens /dev/null as fast as two shells can (every open a captured
    // syscall, far more than the agent reads on this box) would fill the ring buffer, and a
    // read of /etc/shadow on the host at that time would be lost with the container's records
    // (2 of 5 alerted when checked without the per-cgroup share). With it, the container
    // loses its own records past its share, counted against it, and the host's still arrive.
    // Nor does the flood hide what the container itself runs meanwhile (the point of blinding
    // the sensor): it starts five shells while it floods, and each is reported, from the
    // share's bucket for execs, forks and exits.
    image();
    let port = support::free_port();
    let metrics = format!("127.0.0.1:{port}");
    let mut args = vec!["run", "--json", "--no-flood-control", "--metrics", &metrics];
    if let Some(bytes) = ring {
        args.extend(["--ring-buffer-size", bytes]);
    }
    let mut agent = support::Agent::start(&args, "osprey is running");
    let name = format!(
        "osprey-noisy-{}-{}",
        std::process::id(),
        ring.unwrap_or("default")
    );
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
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    let body = loop {
        let (_, body) = support::http_get(port, "/metrics").unwrap();
        // Losing records: the ring is under pressure.
        if dropped_by_container(&body, &[&over]) > 0.0 {
            break body;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the container never lost a record: {body}"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    let host_before = dropped_by_container(&body, &["container_id=\"host\""]);

    // While it floods, the host reads /etc/shadow five times.
    for i in 0..5 {
        let _ = bash(&format!("head -c0 /etc/shadow {marker}-{i} 2>/dev/null"));
        std::thread::sleep(Duration::from_millis(200));
    }
    let read = |v: &serde_json::Value, i: usize| {
        v["rule"] == "Read sensitive file"
            && field(v, "proc.cmdline").ends_with(&format!("{marker}-{i}"))
    };
    let shell = |v: &serde_json::Value, i: usize| {
        v["rule"] == "Shell spawned in container"
            && field(v, "proc.cmdline").ends_with(&format!("{marker}-shell-{i}"))
            && field(v, "container.name") == name
    };
    let deadline = std::time::Instant::now() + WAIT;
    let (mut seen, mut shells) = (0, 0);
    while std::time::Instant::now() < deadline {
        let lines = agent.collect_for(Duration::from_millis(200));
        seen = (0..5).filter(|&i| lines.iter().any(|v| read(v, i))).count();
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
            .find(|v| read(v, i))
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

/// Removes a podman container when dropped.
struct Removed(String);

impl Drop for Removed {
    fn drop(&mut self) {
        let _ = bash(&format!("podman rm -f -t 0 {} >/dev/null 2>&1", self.0));
    }
}
