//! The default rules about containers, each proven inside a real podman container (runc, a
//! busybox image built here from the host's busybox): the alert's rule, priority, tags, the
//! process and file or address, and the container's id and image.
//! Root, real eBPF, podman and runc (cargo xtask test installs them).

mod rules_support;
mod support;

use rules_support::*;

/// The node's loader and libraries, mounted read-only, for the node's dynamically linked
/// programs (the image is busybox alone).
const NODE_LIBRARIES: [&str; 6] = [
    "-v",
    "/lib:/lib:ro",
    "-v",
    "/lib64:/lib64:ro",
    "-v",
    "/usr/lib:/usr/lib:ro",
];

#[test]
fn rules_container_shells() {
    image();
    let name = format!("osprey-rules-shell-{}", std::process::id());
    let _ = bash(&format!("podman rm -f -t 0 {name} >/dev/null 2>&1"));
    let mut agent = agent();
    // A running container, and kubectl exec -it into it (podman exec -t).
    let id = bash_ok(&format!(
        "podman run -d --rm --runtime runc --network none --name {name} {IMAGE} /bin/sleep 30"
    ));
    let id = id.trim()[..12].to_string();
    let exec = bash(&format!(
        "podman exec -t {name} /bin/sh -c '/bin/true; /bin/true' </dev/null"
    ));
    // A shell started by a program in the container, no terminal; the entrypoint (the outer
    // sh, pid 1 in its container) is not reported.
    let c = run(
        &["--network", "none"],
        "/bin/sh -c '/bin/true; /bin/true'; /bin/echo entrypoint",
    );
    let _ = bash(&format!("podman rm -f -t 0 {name} >/dev/null 2>&1"));
    assert!(exec.status.success(), "podman exec: {exec:?}");

    let a = alert(&mut agent, "Shell spawned in container", |v| {
        field(v, "container.id") == id
    });
    assert_eq!(field(&a, "container.image.repository"), REPO, "{a}");
    check(
        &a,
        "Notice",
        &["mitre_execution", "T1059.004"],
        &[
            ("proc.name", "sh"),
            ("proc.cmdline", "sh -c /bin/true; /bin/true"),
        ],
    );

    let a = container_alert(&mut agent, "Shell spawned in container", &c, |_| true);
    check(
        &a,
        "Notice",
        &["T1059.004"],
        &[
            ("proc.cmdline", "sh -c /bin/true; /bin/true"),
            ("proc.pname", "sh"),
        ],
    );
    none_seen(&mut agent, "the entrypoint was reported", |v| {
        v["rule"] == "Shell spawned in container"
            && field(v, "container.id") == c.id
            && field(v, "proc.cmdline").contains("echo entrypoint")
    });
}

#[test]
fn rules_container_drift() {
    let mut agent = agent();
    let c = run(
        &["--network", "none"],
        "echo 'echo pwned' > /bin/evil; /bin/chmod +x /bin/evil; \
         /bin/mkdir /opt; /bin/cp /bin/busybox /opt/true; /opt/true",
    );
    // Volumes: no image supplies what is on them. /tmp as a Kubernetes emptyDir with
    // `medium: Memory` is (a tmpfs), a directory of the node as a hostPath or a disk-backed
    // emptyDir is (a bind mount). Neither is the overlay's upper layer, where drift used to be
    // looked for alone: both ran with no alert but the /tmp rule's Notice. A read-only volume
    // (a configMap) cannot have been written from inside: not drift.
    let vol = TempDir::new("drift-volume");
    let ro = TempDir::new("drift-readonly");
    std::fs::copy("/bin/busybox", ro.join("echo")).unwrap();
    std::fs::copy("/usr/bin/id", vol.join("id")).unwrap();
    let t = run(
        &[
            "--network",
            "none",
            "--tmpfs",
            "/tmp:rw,exec",
            "-v",
            &format!("{}:/data", vol.s()),
            "-v",
            &format!("{}:/config:ro", ro.s()),
        ]
        .iter()
        .chain(&NODE_LIBRARIES)
        .copied()
        .collect::<Vec<_>>(),
        "/bin/cp /bin/busybox /tmp/true; /tmp/true; /bin/cp /bin/busybox /data/true; /data/true; \
         /config/echo osprey-read-only-volume; /lib64/ld-linux-x86-64.so.2 /data/id -u",
    );
    assert!(t.out.contains("osprey-read-only-volume"), "{}", t.out);
    let a = container_alert(
        &mut agent,
        "Write below system directory in container",
        &c,
        |v| field(v, "fd.name") == "/bin/evil",
    );
    check(&a, "Error", &["mitre_persistence"], &[("proc.name", "sh")]);

    let a = container_alert(&mut agent, "Chmod executable in container", &c, |v| {
        field(v, "evt.arg.filename") == "/bin/evil"
    });
    check(&a, "Error", &["T1222.002"], &[("proc.name", "chmod")]);

    let a = container_alert(
        &mut agent,
        "Drop and execute new binary in container",
        &c,
        |v| field(v, "proc.exepath") == "/opt/true",
    );
    check(&a, "Critical", &["T1525"], &[("proc.name", "true")]);

    for exe in ["/tmp/true", "/data/true"] {
        let a = container_alert(
            &mut agent,
            "Drop and execute new binary in container",
            &t,
            |v| field(v, "proc.exepath") == exe,
        );
        check(
            &a,
            "Critical",
            &["T1525"],
            &[
                ("proc.is_exe_upper_layer", "false"),
                ("proc.is_exe_from_writable_volume", "true"),
            ],
        );
    }

    // The same kind of file run through the loader: the executable is the loader (on a
    // read-only volume here, as an image's would be on its root), not drift, but reported.
    let a = container_alert(
        &mut agent,
        "Program run through the dynamic loader",
        &t,
        |v| field(v, "proc.args").contains("/data/id"),
    );
    check(&a, "Warning", &["T1218"], &[]);
    assert!(
        field(&a, "proc.exepath").ends_with("ld-linux-x86-64.so.2"),
        "{a}"
    );

    // Programs of the image itself are not drift, nor one on a read-only volume.
    none_seen(
        &mut agent,
        "an image's or a read-only volume's binary was drift",
        |v| {
            v["rule"] == "Drop and execute new binary in container"
                && (field(v, "proc.exepath").starts_with("/bin/")
                    || field(v, "proc.exepath") == "/config/echo")
        },
    );
}

#[test]
fn rules_container_escapes() {
    let mut agent = agent();
    // A privileged container that shares the host's pid namespace joins the namespaces of a
    // host process (this test's own) with nsenter, mounts, and goes for the classic escape
    // files. The writes open the files without writing a byte: nothing on the host changes.
    let host_pid = std::process::id().to_string();
    let c = run(
        &["--network", "none", "--privileged", "--pid", "host"],
        &format!(
            "/bin/nsenter -t {host_pid} -m -u -i /bin/true; \
             /bin/mkdir -p /cg && /bin/mount -t cgroup -o none,name=osprey{host_pid} cgroup /cg \
             && : > /cg/release_agent; /bin/umount /cg; \
             : > /proc/sys/kernel/core_pattern; echo done"
        ),
    );
    assert!(c.out.contains("done"), "{}", c.out);

    let a = container_alert(&mut agent, "Namespace change in container", &c, |v| {
        field(v, "proc.name") == "nsenter"
    });
    check(
        &a,
        "Critical",
        &["mitre_privilege_escalation", "T1611"],
        &[("evt.type", "setns"), ("container.privileged", "true")],
    );

    let a = container_alert(&mut agent, "Mount in container", &c, |v| {
        field(v, "evt.arg.dir_name") == "/cg"
    });
    check(
        &a,
        "Error",
        &["T1611"],
        &[("proc.name", "mount"), ("evt.arg.type", "cgroup")],
    );

    let a = container_alert(&mut agent, "Write to cgroup release_agent", &c, |_| true);
    check(
        &a,
        "Critical",
        &["T1611"],
        &[("fd.name", "/cg/release_agent"), ("proc.name", "sh")],
    );

    // (sysrq-trigger is in the same rule; this test kernel has no CONFIG_MAGIC_SYSRQ.)
    let a = container_alert(&mut agent, "Write to kernel escape file", &c, |v| {
        field(v, "fd.name") == "/proc/sys/kernel/core_pattern"
    });
    check(&a, "Critical", &["T1611"], &[("proc.name", "sh")]);
}

/// A shell under another name: the node's bash through a symlink named `x`, and `busybox sh`,
/// each matched only by `shell_procs`' program (both ran with no alert when only the name
/// was). A script run by its path is not a shell, though its interpreter is (busybox's sh,
/// whose argv[0] the kernel sets to `/bin/sh`): the kernel says an interpreter was loaded.
/// (Each runs with a command after it: the container's shell runs its last command in its
/// own process, the container's pid 1, which the rule leaves to the terminal test.)
#[test]
fn rules_container_shells_by_program() {
    let mut agent = agent();
    let c = run(
        &["--network", "none", "-v", "/usr/bin/bash:/usr/bin/bash:ro"]
            .iter()
            .chain(&NODE_LIBRARIES)
            .copied()
            .collect::<Vec<_>>(),
        "printf '#!/bin/sh\\n/bin/true\\n' >/tmp/job.sh && /bin/chmod +x /tmp/job.sh && /tmp/job.sh \
         && /bin/ln -s /usr/bin/bash /tmp/x && /tmp/x -c '/bin/echo symlinked' \
         && /bin/busybox sh -c '/bin/echo applet' && /bin/true",
    );
    assert!(
        c.out.contains("symlinked") && c.out.contains("applet"),
        "{}",
        c.out
    );
    for (name, cmdline) in [
        ("x", "x -c /bin/echo symlinked"),
        ("busybox", "busybox sh -c /bin/echo applet"),
    ] {
        let a = container_alert(&mut agent, "Shell spawned in container", &c, |v| {
            field(v, "proc.name") == name
        });
        check(
            &a,
            "Notice",
            &["T1059.004"],
            &[("proc.cmdline", cmdline), ("proc.pname", "sh")],
        );
    }
    none_seen(&mut agent, "the script was reported as a shell", |v| {
        v["rule"] == "Shell spawned in container"
            && field(v, "container.id") == c.id
            && field(v, "proc.name") == "job.sh"
    });
}

#[test]
fn rules_container_service_account_token() {
    let d = TempDir::new("token");
    std::fs::write(d.join("token"), "eyJhbGciOiJSUzI1NiJ9.test").unwrap();
    let mount = format!(
        "{}/token:/var/run/secrets/kubernetes.io/serviceaccount/token:ro",
        d.s()
    );
    let mut agent = agent();
    // The application reading its own token (the node's md5sum, mounted read-only with its
    // libraries, stands in for it) is not reported; a shell's cat is, and so are a cat renamed
    // by a symlink (the node's coreutils cat, as a Debian-based image has it: it ran with no
    // alert when only the process's name was matched) and busybox called by its own name.
    let c = run(
        &[
            "--network",
            "none",
            "-v",
            &mount,
            "-v",
            "/usr/bin/md5sum:/app/md5sum:ro",
            "-v",
            "/usr/bin/cat:/usr/bin/cat:ro",
        ]
        .iter()
        .chain(&NODE_LIBRARIES)
        .copied()
        .collect::<Vec<_>>(),
        "T=/var/run/secrets/kubernetes.io/serviceaccount/token; /app/md5sum $T; /bin/cat $T; \
         /bin/ln -s /usr/bin/cat /tmp/r && /tmp/r $T; /bin/busybox cat $T",
    );
    assert_eq!(
        c.out.matches("eyJhbGciOiJSUzI1NiJ9.test").count(),
        3,
        "{}",
        c.out
    );
    let a = container_alert(
        &mut agent,
        "Read Kubernetes service account token",
        &c,
        |_| true,
    );
    check(
        &a,
        "Warning",
        &["mitre_credential_access", "T1528"],
        &[
            ("proc.name", "cat"),
            (
                "fd.name",
                "/var/run/secrets/kubernetes.io/serviceaccount/token",
            ),
        ],
    );
    for name in ["r", "busybox"] {
        container_alert(
            &mut agent,
            "Read Kubernetes service account token",
            &c,
            |v| field(v, "proc.name") == name,
        );
    }
    none_seen(&mut agent, "the application's own read was reported", |v| {
        field(v, "proc.name") == "md5sum"
    });
}

/// A network namespace with a veth pair to a second one that plays the cluster: the API
/// server's service address 10.96.0.1:443, a kubelet 10.200.0.1:10250 and the cloud metadata
/// service 169.254.169.254:80, each a busybox httpd. Removed on drop.
struct TestNet {
    client: String,
    server: String,
}

impl TestNet {
    fn new() -> TestNet {
        let n = std::process::id();
        let net = TestNet {
            client: format!("osprey-test-{n}"),
            server: format!("osprey-test-{n}-srv"),
        };
        let (c, s) = (&net.client, &net.server);
        let www = format!("/tmp/osprey-rules-www-{n}");
        bash_ok(&format!(
            "set -e; ip netns del {c} 2>/dev/null || true; ip netns del {s} 2>/dev/null || true
             ip netns add {c}; ip netns add {s}
             ip link add ot{n}c netns {c} type veth peer name ot{n}s netns {s}
             ip -n {c} link set lo up; ip -n {s} link set lo up
             ip -n {c} addr add 10.200.0.2/24 dev ot{n}c; ip -n {c} link set ot{n}c up
             ip -n {s} addr add 10.200.0.1/24 dev ot{n}s
             ip -n {s} addr add 10.96.0.1/32 dev ot{n}s
             ip -n {s} addr add 169.254.169.254/32 dev ot{n}s
             ip -n {s} link set ot{n}s up
             ip -n {c} route add 10.96.0.1/32 dev ot{n}c
             ip -n {c} route add 169.254.169.254/32 dev ot{n}c
             mkdir -p {www} && echo ok > {www}/index.html
             for p in 10.96.0.1:443 10.200.0.1:10250 169.254.169.254:80; do
               ip netns exec {s} busybox httpd -p $p -h {www}
             done"
        ));
        net
    }
}

impl Drop for TestNet {
    fn drop(&mut self) {
        let n = std::process::id();
        // The httpd daemons live in the server namespace: end them by their namespace.
        bash(&format!(
            "for p in $(ip netns pids {0}); do kill $p; done; ip netns del {0}; ip netns del {1}; \
             rm -rf /tmp/osprey-rules-www-{n}",
            self.server, self.client
        ));
    }
}

#[test]
fn rules_container_network() {
    let net = TestNet::new();
    let mut agent = agent();
    let netns = format!("ns:/run/netns/{}", net.client);
    let c = run(
        &["--network", &netns],
        // (busybox 1.35's wget -T crashes; timeout bounds it instead)
        "for u in 10.96.0.1:443 10.200.0.1:10250 169.254.169.254; do \
         /bin/timeout 5 /bin/wget -q -O - http://$u/; done",
    );
    assert_eq!(c.out.matches("ok").count(), 3, "{}", c.out);
    for (rule, addr, tag) in [
        (
            "Contact Kubernetes API server from container",
            "10.96.0.1:443",
            "T1613",
        ),
        (
            "Contact kubelet API from container",
            "10.200.0.1:10250",
            "T1613",
        ),
        (
            "Contact cloud metadata service from container",
            "169.254.169.254:80",
            "T1552.005",
        ),
    ] {
        let a = container_alert(&mut agent, rule, &c, |v| field(v, "fd.name") == addr);
        check(&a, "Notice", &[tag], &[("proc.name", "wget")]);
    }
    drop(net);
}

#[test]
fn rules_container_reverse_shell_and_packet_socket() {
    let mut agent = agent();
    // nc -e inside the container, to a listener of its own on the container's loopback.
    let c = run(
        &["--network", "none", "--cap-add", "NET_RAW"],
        "/bin/nc -l -p 9001 </dev/null & /bin/sleep 0.3; /bin/nc 127.0.0.1 9001 -e /bin/true; \
         /bin/arping -c 1 -w 1 -I lo 127.0.0.1; wait",
    );
    let a = container_alert(&mut agent, "Netcat remote code execution", &c, |_| true);
    check(
        &a,
        "Warning",
        &["T1059"],
        &[("proc.cmdline", "nc 127.0.0.1 9001 -e /bin/true")],
    );
    let a = container_alert(&mut agent, "Reverse shell", &c, |v| {
        field(v, "proc.name") == "nc"
    });
    check(&a, "Warning", &["T1059.004"], &[("evt.arg.newfd", "0")]);
    let a = container_alert(&mut agent, "Packet socket created", &c, |_| true);
    check(
        &a,
        "Notice",
        &["T1040"],
        &[("proc.name", "arping"), ("evt.arg.domain", "AF_PACKET")],
    );
}
