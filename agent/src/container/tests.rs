//! The container table and the hold queue against a host root made of files: runtime state,
//! `/proc/PID/cgroup`. (Real containers: tests/kernel_container.rs.)

use std::path::Path;

use super::*;
use osprey_model::event::{Exec, Exit};

const PODMAN_ID: &str = "06f1bc2493b9c4639f28edfb8d77c141cdb7dcfee49049bc36314768dcb31028";
const CTR_ID: &str = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";

struct Root(PathBuf);

impl Root {
    fn new(name: &str) -> Self {
        let d = std::env::temp_dir().join(format!("osprey-ctr-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(d.join("proc/1/ns")).unwrap();
        std::fs::write(d.join("proc/1/ns/mnt"), "").unwrap();
        Root(d)
    }

    fn write(&self, rel: &str, text: &str) {
        let p = self.0.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    }

    fn podman(&self, id: &str, name: &str) {
        self.write(
            "var/lib/containers/storage/overlay-containers/containers.json",
            &format!(
                r#"[{{"id":"{id}","names":["{name}"],"image":"e81a","metadata":"{{\"image-name\":\"localhost/busybox:test\"}}"}}]"#
            ),
        );
    }

    fn table(&self, wait: Duration) -> Arc<ContainerTable> {
        Arc::new(ContainerTable::new(ContainerConfig {
            host_root: self.0.clone(),
            metadata_wait: wait,
            retry_every: Duration::from_millis(1),
            ..ContainerConfig::default()
        }))
    }

    fn host_mnt_ns(&self) -> u32 {
        ns_inode(&self.0.join("proc/1/ns/mnt"))
    }
}

impl Drop for Root {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn event(tgid: u32, cgroup_id: u64, mnt_ns: u32, kind: EventKind) -> Event {
    Event {
        ts: 1,
        time: 1,
        tgid,
        tid: tgid,
        uid: 0,
        gid: 0,
        euid: 0,
        egid: 0,
        cgroup_id,
        pid_ns: 1,
        mnt_ns,
        vpid: 1,
        comm: "sh".into(),
        cap_effective: 0,
        cap_permitted: 0,
        kind,
    }
}

fn exec_in(cgroup: &str) -> EventKind {
    EventKind::Exec(Exec {
        filename: "/bin/sh".into(),
        cgroup: cgroup.into(),
        ..Exec::default()
    })
}

fn exit() -> EventKind {
    EventKind::Exit(Exit { status: 0 })
}

fn process(ev: &Event) -> Process {
    Process {
        pid: ev.tgid,
        cgroup_id: ev.cgroup_id,
        mnt_ns: ev.mnt_ns,
        cgroup: match &ev.kind {
            EventKind::Exec(e) => e.cgroup.clone(),
            _ => String::new(),
        },
        ..Process::default()
    }
}

fn enriched(ev: Event) -> Enriched {
    let p = process(&ev);
    Enriched {
        event: ev,
        process: Some(Arc::new(p)),
        ancestors: Default::default(),
        container: None,
        fd: None,
    }
}

#[test]
fn podman_container_from_kernel_cgroup_names() {
    let root = Root::new("podman");
    root.podman(PODMAN_ID, "web");
    let t = root.table(Duration::from_millis(100));
    let ev = event(
        4242,
        77,
        9,
        exec_in(&format!("libpod_parent/libpod-{PODMAN_ID}")),
    );
    let r = t.resolve(&ev, Some(&process(&ev)));
    assert!(!r.pending);
    assert_eq!(r.info.id, &PODMAN_ID[..12]);
    assert_eq!(r.info.full_id, PODMAN_ID);
    assert_eq!(r.info.name.as_deref(), Some("web"));
    assert_eq!(r.info.image.as_deref(), Some("localhost/busybox:test"));
    assert_eq!(
        r.info.image_repository.as_deref(),
        Some("localhost/busybox")
    );
    assert_eq!(r.info.image_tag.as_deref(), Some("test"));
    assert_eq!(r.info.runtime.as_deref(), Some("podman"));

    // Later events of the process (no exec of their own) hit the cache.
    let later = event(4242, 77, 9, exit());
    assert_eq!(t.resolve(&later, None).info.full_id, PODMAN_ID);
    assert_eq!(t.stats().containers, 1);
}

#[test]
fn host_processes_say_host() {
    let root = Root::new("host");
    root.write(
        "proc/100/cgroup",
        "4:memory:/user.slice\n0::/user.slice/session-1.scope\n",
    );
    let t = root.table(Duration::from_millis(100));
    let ev = event(100, 5, root.host_mnt_ns(), exit());
    let r = t.resolve(&ev, None);
    assert!(!r.pending);
    assert_eq!(r.info.id, "host");
    assert_eq!(r.info.name.as_deref(), Some("host"));
    // Nothing to read at all (process gone, no cgroup mount): host, not a guess.
    let gone = event(101, 6, root.host_mnt_ns(), exit());
    assert_eq!(t.resolve(&gone, None).info.id, "host");
    // The runtimes' monitors are host processes.
    let conmon = event(
        102,
        7,
        root.host_mnt_ns(),
        exec_in(&format!("libpod_parent/libpod-conmon-{PODMAN_ID}")),
    );
    assert_eq!(t.resolve(&conmon, Some(&process(&conmon))).info.id, "host");
}

#[test]
fn proc_cgroup_when_the_process_left_no_names() {
    let root = Root::new("procfs");
    root.write(
        &format!("run/containerd/io.containerd.runtime.v2.task/k8s.io/{CTR_ID}/config.json"),
        r#"{"annotations":{"io.kubernetes.pod.name":"web-1","io.kubernetes.pod.namespace":"shop","app":"web"}}"#,
    );
    root.write(
        "proc/300/cgroup",
        &format!("1:cpu:/k8s.io/{CTR_ID}\n0::/k8s.io/{CTR_ID}\n"),
    );
    let t = root.table(Duration::from_millis(100));
    // A process known from the start-up /proc scan: no kernel names.
    let ev = event(300, 88, 12, exit());
    let r = t.resolve(&ev, Some(&process(&ev)));
    assert_eq!(r.info.full_id, CTR_ID);
    assert_eq!(r.info.runtime.as_deref(), Some("containerd"));
    assert_eq!(r.info.k8s_pod_name.as_deref(), Some("web-1"));
    assert_eq!(r.info.k8s_ns_name.as_deref(), Some("shop"));
    assert_eq!(r.info.pod_labels_text().as_deref(), Some("app:web"));
}

#[test]
fn first_events_wait_for_metadata_then_carry_it() {
    let root = Root::new("pending");
    let t = root.table(Duration::from_secs(30));
    let mut attach = Attach::new(t.clone());
    let mut out = Vec::new();
    let cg = format!("libpod_parent/libpod-{PODMAN_ID}");
    attach.push(enriched(event(500, 90, 14, exec_in(&cg))), &mut out);
    attach.push(enriched(event(500, 90, 14, exit())), &mut out);
    // A host event is not held behind the container's.
    attach.push(enriched(event(1, 1, root.host_mnt_ns(), exit())), &mut out);
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].container.as_ref().unwrap().id, "host");
    assert!(attach.is_holding());
    out.clear();

    attach.poll(&mut out);
    assert!(out.is_empty(), "still nothing to read");
    root.podman(PODMAN_ID, "late");
    std::thread::sleep(attach.poll_in());
    attach.poll(&mut out);
    assert_eq!(out.len(), 2, "both held events, in order");
    assert!(matches!(out[0].event.kind, EventKind::Exec(_)));
    for e in &out {
        let c = e.container.as_ref().unwrap();
        assert_eq!(c.name.as_deref(), Some("late"));
        assert_eq!(c.id, &PODMAN_ID[..12]);
    }
    assert!(!attach.is_holding());
    assert_eq!(t.stats().held, 2);
}

#[test]
fn the_wait_is_bounded() {
    let root = Root::new("bounded");
    let t = root.table(Duration::from_millis(20));
    let mut attach = Attach::new(t.clone());
    let mut out = Vec::new();
    let cg = format!("k8s.io/{CTR_ID}");
    let started = Instant::now();
    attach.push(enriched(event(600, 91, 15, exec_in(&cg))), &mut out);
    while attach.is_holding() {
        assert!(started.elapsed() < Duration::from_secs(5), "never released");
        std::thread::sleep(attach.poll_in());
        attach.poll(&mut out);
    }
    assert!(started.elapsed() >= Duration::from_millis(20));
    let c = out[0].container.as_ref().unwrap();
    assert_eq!(
        c.full_id, CTR_ID,
        "the id from the cgroup, whatever the runtime said"
    );
    assert_eq!(c.name, None);
    assert_eq!(t.stats().metadata_timeouts, 1);
    // Later events of that container do not wait again.
    attach.push(enriched(event(600, 91, 15, exit())), &mut out);
    assert_eq!(out.len(), 2);
}

#[test]
fn nsenter_is_attributed_through_the_mount_namespace() {
    let root = Root::new("nsenter");
    root.podman(PODMAN_ID, "web");
    let t = root.table(Duration::from_millis(100));
    let cg = format!("libpod_parent/libpod-{PODMAN_ID}");
    // runc's setup: already in the container's new mount namespace, still in the host cgroup.
    root.write("proc/699/cgroup", "0::/\n");
    let setup = event(699, 1, 16, exit());
    assert_eq!(t.resolve(&setup, None).info.id, "host");
    // The container's entrypoint execs in its cgroup and namespaces.
    let ev = event(700, 92, 16, exec_in(&cg));
    assert_eq!(t.resolve(&ev, Some(&process(&ev))).info.full_id, PODMAN_ID);
    // nsenter -t <pid> -m: host cgroup, the container's mount namespace.
    root.write("proc/701/cgroup", "0::/\n");
    let entered = event(701, 1, 16, exit());
    assert_eq!(t.resolve(&entered, None).info.full_id, PODMAN_ID);
    // The host's own mount namespace never maps to a container.
    let host = event(702, 1, root.host_mnt_ns(), exec_in("/"));
    assert_eq!(t.resolve(&host, Some(&process(&host))).info.id, "host");
}

#[test]
fn a_process_that_moved_cgroup_is_judged_by_where_it_is() {
    let root = Root::new("moved");
    root.podman(PODMAN_ID, "web");
    let t = root.table(Duration::from_millis(100));
    // Its last exec was on the host, but the event says another cgroup (runc init joining).
    let mut p = process(&event(800, 1, 17, exec_in("/")));
    p.cgroup = "user.slice/session-1.scope".into();
    root.write(
        "proc/800/cgroup",
        &format!("0::/libpod_parent/libpod-{PODMAN_ID}\n"),
    );
    let ev = event(800, 93, 17, exit());
    assert_eq!(t.resolve(&ev, Some(&p)).info.full_id, PODMAN_ID);
}

#[test]
fn odd_inputs_do_not_panic() {
    let root = Root::new("odd");
    root.write("proc/900/cgroup", "\u{0}\n:::\n0::\n");
    let t = root.table(Duration::from_millis(1));
    let ev = event(900, 0, 0, exec_in("//\u{ff}/"));
    assert_eq!(t.resolve(&ev, Some(&process(&ev))).info.id, "host");
    let missing_root = ContainerTable::new(ContainerConfig {
        host_root: Path::new("/nonexistent/osprey").into(),
        ..ContainerConfig::default()
    });
    assert_eq!(missing_root.resolve(&ev, None).info.id, "host");
}

#[test]
fn a_pair_no_source_could_place_is_asked_again() {
    let root = Root::new("unknown");
    root.podman(PODMAN_ID, "web");
    let t = root.table(Duration::from_millis(100));
    // runc's first event in the new cgroup, read after the process was gone: no /proc entry,
    // no v2 directory under this root. It is host for now, but not remembered as host.
    let early = event(5001, 88, 12, exit());
    assert!(t.resolve(&early, None).info.is_host());
    let ev = event(
        5002,
        88,
        12,
        exec_in(&format!("libpod_parent/libpod-{PODMAN_ID}")),
    );
    assert_eq!(t.resolve(&ev, Some(&process(&ev))).info.full_id, PODMAN_ID);
}

#[test]
fn an_exec_in_a_container_cgroup_overrules_a_cached_host() {
    let root = Root::new("overrule");
    root.podman(PODMAN_ID, "web");
    let t = root.table(Duration::from_millis(100));
    // A process whose /proc says host (runc before it moved itself into the container's
    // cgroup) sets the pair to host...
    root.write("proc/6001/cgroup", "0::/user.slice\n");
    let before = event(6001, 99, 13, exit());
    assert!(t.resolve(&before, None).info.is_host());
    // ...and the workload's exec, which the kernel names in the container's cgroup, wins.
    let ev = event(
        6002,
        99,
        13,
        exec_in(&format!("libpod_parent/libpod-{PODMAN_ID}")),
    );
    assert_eq!(t.resolve(&ev, Some(&process(&ev))).info.full_id, PODMAN_ID);
    assert_eq!(
        t.resolve(&event(6002, 99, 13, exit()), None).info.full_id,
        PODMAN_ID
    );
}
