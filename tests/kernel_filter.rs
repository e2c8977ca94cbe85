//! The sensor's kernel-side guarantees, through the library API (root): the interest filter
//! keeps unwanted syscalls in the kernel, and a full ring buffer is counted, not silent.
//! The sensor runs inside the test process, whose own syscalls it ignores (as the agent
//! ignores its own), so every action here happens in a child process.

mod support;

use std::{collections::BTreeSet, process::Command, time::Duration};

use osprey::sensor::{Sensor, SensorConfig, Share, events::ExitEvents};
use osprey_model::event::{Event, EventKind};

/// The tests that start a sensor take turns: one counts the links this process holds.
static TURN: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn names(list: &[&str]) -> BTreeSet<String> {
    list.iter().map(|s| s.to_string()).collect()
}

/// Reads events until `stop` says so or `timeout` passes.
async fn read_until(
    reader: &mut osprey::sensor::EventReader,
    timeout: Duration,
    mut stop: impl FnMut(&Event) -> bool,
) -> Vec<Event> {
    let mut all = Vec::new();
    let mut batch = Vec::new();
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        match tokio::time::timeout_at(deadline, reader.read_batch(&mut batch, 1024)).await {
            Err(_) => return all,
            Ok(r) => r.unwrap(),
        }
        for ev in batch.drain(..) {
            let done = stop(&ev);
            all.push(ev);
            if done {
                return all;
            }
        }
    }
}

/// The interest set in both forms of `sys_exit`: the one program on `raw_syscalls` that
/// looks each syscall up, and one attachment per wanted syscall's own event (forced on here,
/// where the 32-bit entry is on: nothing in this test goes through it).
#[tokio::test]
async fn kernel_syscalls_outside_the_interest_set_produce_no_event() {
    support::require_root();
    let _turn = TURN.lock().await;
    outside_the_interest_set(ExitEvents::Off).await;
    outside_the_interest_set(ExitEvents::Always).await;
}

/// Whether `ev` is an `unlinkat` of `path`.
fn unlink_of(ev: &Event, path: &str) -> bool {
    matches!(&ev.kind, EventKind::Syscall(sc) if sc.name == "unlinkat" && sc.args.iter().any(|a| {
        matches!(&a.value, osprey_model::event::ArgValue::Path { raw, .. } if *raw == path)
    }))
}

/// How many BPF links this process holds: one per tracepoint attachment.
fn links() -> usize {
    std::fs::read_dir("/proc/self/fd")
        .unwrap()
        .filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
        .filter(|l| l.to_string_lossy() == "anon_inode:bpf_link")
        .count()
}

async fn outside_the_interest_set(form: ExitEvents) {
    let dir = std::env::temp_dir().join(format!("osprey-filter-{}-{form:?}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let victim = dir.join("victim");
    let marker = dir.join("marker");
    std::fs::write(&victim, b"x").unwrap();
    std::fs::write(&marker, b"x").unwrap();

    let before = links();
    let mut sensor = Sensor::start(&SensorConfig {
        syscalls: names(&["openat"]),
        exit_events: form,
        ..Default::default()
    })
    .unwrap();
    let attached = links() - before;
    let mut reader = sensor.reader().unwrap();
    // rm unlinks the victim (not of interest), then cat opens the marker (of interest).
    let script = format!("rm -f {} && cat {}", victim.display(), marker.display());
    let status = Command::new("sh")
        .args(["-c", &script])
        .stdout(std::process::Stdio::null())
        .status()
        .unwrap();
    assert!(status.success());
    let marker_s = marker.to_str().unwrap().to_string();
    let events = read_until(&mut reader, Duration::from_secs(10), |ev| {
        match &ev.kind {
        EventKind::Syscall(sc) => sc.name == "openat" && sc.args.iter().any(|a| {
            matches!(&a.value, osprey_model::event::ArgValue::Path { raw, .. } if *raw == marker_s)
        }),
        _ => false,
    }
    })
    .await;
    let last = events.last().expect("some events");
    assert!(
        matches!(&last.kind, EventKind::Syscall(sc) if sc.name == "openat"),
        "the marker open arrived"
    );
    let syscalls: BTreeSet<&str> = events
        .iter()
        .filter_map(|e| match &e.kind {
            EventKind::Syscall(sc) => Some(sc.name.as_ref()),
            _ => None,
        })
        .collect();
    assert_eq!(
        syscalls,
        BTreeSet::from(["openat"]),
        "only openat got through"
    );
    assert!(!victim.exists());

    // Widening the interest set live makes unlink visible without reloading anything.
    sensor
        .set_interest(&names(&["openat", "unlinkat"]))
        .unwrap();
    std::fs::write(&victim, b"x").unwrap();
    Command::new("rm").arg(&victim).status().unwrap();
    let victim_s = victim.to_str().unwrap().to_string();
    let seen = read_until(&mut reader, Duration::from_secs(10), |ev| {
        unlink_of(ev, &victim_s)
    })
    .await;
    assert!(
        matches!(&seen.last().unwrap().kind, EventKind::Syscall(sc) if sc.name == "unlinkat"),
        "unlinkat seen after widening the interest set"
    );
    // Per syscall, widening attached unlinkat's event; the raw form attaches nothing more.
    let per_syscall = usize::from(form == ExitEvents::Always);
    assert_eq!(links() - before, attached + per_syscall, "{form:?}");

    // Narrowing it: openat's event goes, and an open is no longer seen while an unlink is.
    sensor.set_interest(&names(&["unlinkat"])).unwrap();
    assert_eq!(links() - before, attached, "{form:?}");
    // What was captured before (the node's other processes open files too) is read first.
    read_until(&mut reader, Duration::from_millis(500), |_| false).await;
    std::fs::write(&victim, b"x").unwrap();
    let script = format!("cat {} && rm {}", marker.display(), victim.display());
    Command::new("sh")
        .args(["-c", &script])
        .stdout(std::process::Stdio::null())
        .status()
        .unwrap();
    let seen = read_until(&mut reader, Duration::from_secs(10), |ev| {
        unlink_of(ev, &victim_s)
    })
    .await;
    assert!(
        matches!(&seen.last().unwrap().kind, EventKind::Syscall(sc) if sc.name == "unlinkat"),
        "{form:?}: unlinkat seen after narrowing the interest set"
    );
    assert!(
        !seen
            .iter()
            .any(|ev| matches!(&ev.kind, EventKind::Syscall(sc) if sc.name == "openat")),
        "{form:?}: no openat after narrowing the interest set"
    );
    drop(sensor);
    assert_eq!(
        links(),
        before,
        "{form:?}: every attachment gone with the sensor"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test]
async fn kernel_full_ring_buffer_counts_drops() {
    support::require_root();
    let _turn = TURN.lock().await;
    // One page of ring buffer holds a few dozen open events; the child makes 3000.
    let mut sensor = Sensor::start(&SensorConfig {
        syscalls: names(&["openat"]),
        ring_buffer_bytes: 4096,
        ..Default::default()
    })
    .unwrap();
    let mut reader = sensor.reader().unwrap();
    let before = sensor.counters();
    let child = Command::new("sh")
        .args([
            "-c",
            "i=0; while [ $i -lt 3000 ]; do : < /dev/null; i=$((i+1)); done",
        ])
        .spawn()
        .unwrap();
    let pid = child.id();
    assert!(child.wait_with_output().unwrap().status.success());
    // Nothing was read while the child ran: the buffer filled and the rest was counted, as
    // ring-full losses or (past half full) as losses over the cgroup's share.
    let after = sensor.counters();
    let dropped = after.dropped_syscall - before.dropped_syscall + after.dropped_cgroup_share
        - before.dropped_cgroup_share;
    assert!(dropped > 0, "drops counted: {after:?}");
    // And counted against the child's share: every open of it not delivered is there.
    let own = share_of_child(pid);
    let ours = sensor
        .cgroup_losses()
        .into_iter()
        .find(|l| l.share == own)
        .unwrap_or_else(|| panic!("no losses for {own:?}: {:?}", sensor.cgroup_losses()));
    let events = read_until(&mut reader, Duration::from_secs(2), |_| false).await;
    let delivered = events
        .iter()
        .filter(|e| {
            e.tgid == pid && matches!(&e.kind, EventKind::Syscall(sc) if sc.name == "openat")
        })
        .count() as u64;
    assert!(
        delivered + dropped >= 3000,
        "every open was delivered or counted: delivered {delivered} + dropped {dropped}"
    );
    assert!(
        delivered + ours.over_share + ours.ring_full >= 3000,
        "every open was delivered or counted against its cgroup: delivered {delivered}, {ours:?}"
    );
}

/// The share of the ring buffer of `pid`, a child of this process in its cgroup and mount
/// namespace: the cgroup v2 id (the inode of its directory under the v2 mount), or where it
/// sits in the v2 root, the process itself when that is the node's mount namespace (pid 1's)
/// and the mount namespace otherwise.
fn share_of_child(pid: u32) -> Share {
    use std::os::unix::fs::MetadataExt;
    let text = std::fs::read_to_string("/proc/self/cgroup").unwrap();
    let path = text
        .lines()
        .find_map(|l| l.strip_prefix("0::"))
        .unwrap_or("/");
    let mount = ["/sys/fs/cgroup/unified", "/sys/fs/cgroup"]
        .into_iter()
        .find(|m| std::fs::metadata(format!("{m}/cgroup.procs")).is_ok());
    match mount {
        Some(m) if path != "/" => {
            Share::Cgroup(std::fs::metadata(format!("{m}{path}")).unwrap().ino())
        }
        _ => {
            let mnt = |pid: &str| {
                std::fs::metadata(format!("/proc/{pid}/ns/mnt")).map(|m| m.ino() as u32)
            };
            let own = mnt("self").unwrap();
            // The agent's rule: pid 1's, or where that is unreadable (a sandbox's pid 1), its own.
            if mnt("1").unwrap_or(own) == own {
                Share::HostProcess(pid)
            } else {
                Share::MntNs(own)
            }
        }
    }
}

#[test]
fn kernel_missing_btf_is_a_clear_error() {
    support::require_root();
    let err = match Sensor::start(&SensorConfig {
        btf_path: "/nonexistent/vmlinux".into(),
        ..Default::default()
    }) {
        Ok(_) => panic!("started without BTF"),
        Err(e) => e.to_string(),
    };
    assert!(err.contains("/nonexistent/vmlinux"), "{err}");
    assert!(err.contains("CONFIG_DEBUG_INFO_BTF"), "{err}");
}
