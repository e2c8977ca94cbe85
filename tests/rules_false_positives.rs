//! The default rules stay quiet on a node's ordinary work: while the agent runs, build a crate
//! with cargo (offline) and a C program with make in a git checkout (a CI job); install,
//! upgrade, reinstall and remove a package with apt and dpkg whose maintainer scripts rewrite
//! /etc, add a system user, reload systemd and restart their daemon; enable and disable a
//! systemd unit; rotate logs with logrotate; run a cron job the way cron does (run-parts); run
//! a container that serves a file over HTTP; and drive a long-running container the way a
//! kubelet does (exec probes, logs, inspect, stop). Nothing at WARNING or above may fire about
//! these processes. Root, real eBPF, podman; no network beyond loopback.
//!
//! These machines have no systemd running (pid 1 is not systemd): `systemctl daemon-reload`
//! fails as it would in a container image, and `systemctl --root=/ enable` does the offline
//! part (the unit symlinks) for real; the daemon is restarted with start-stop-daemon, the way
//! Debian's init scripts do it.

mod rules_support;
mod support;

use std::process::Command;

use rules_support::*;

const LOUD: &[&str] = &["Emergency", "Alert", "Critical", "Error", "Warning"];

#[test]
fn rules_ordinary_activity_raises_no_warning() {
    image();
    let d = TempDir::new("fp");
    // A package of our own, so that apt has something to install without a network.
    bash("dpkg --purge osprey-fp-test >/dev/null 2>&1"); // left over from an interrupted run
    bash_ok(&format!(
        "cd {0} && mkdir -p pkg/DEBIAN pkg/usr/share/osprey-fp-test pkg/usr/bin \
         && printf 'Package: osprey-fp-test\\nVersion: 1.0\\nArchitecture: all\\nMaintainer: Osprey <osprey@example.invalid>\\nDescription: Osprey false-positive test\\n' > pkg/DEBIAN/control \
         && printf '#!/bin/sh\\nexit 0\\n' > pkg/DEBIAN/postinst && chmod 755 pkg/DEBIAN/postinst \
         && echo hello > pkg/usr/share/osprey-fp-test/README \
         && printf '#!/bin/sh\\necho fp\\n' > pkg/usr/bin/osprey-fp-test && chmod 755 pkg/usr/bin/osprey-fp-test \
         && dpkg-deb --root-owner-group --build pkg osprey-fp-test.deb >/dev/null",
        d.s()
    ));
    // Its versions 2.0 and 2.1 carry what a service package carries: a conffile in /etc, a
    // cron job, a logrotate file, a profile.d script, a systemd unit, a system user and a
    // daemon that postinst restarts (2.1 changes the conffile, so the upgrade rewrites /etc).
    for v in ["2.0", "2.1"] {
        bash_ok(&format!(
            "cd {0} && rm -rf svc && mkdir -p svc/DEBIAN svc/etc/cron.d svc/etc/logrotate.d svc/etc/profile.d \
             svc/lib/systemd/system svc/usr/bin \
             && printf 'Package: osprey-fp-test\\nVersion: {v}\\nArchitecture: all\\nMaintainer: Osprey <osprey@example.invalid>\\nDescription: Osprey false-positive test\\n' > svc/DEBIAN/control \
             && echo /etc/osprey-fp-test.conf > svc/DEBIAN/conffiles \
             && echo 'version={v}' > svc/etc/osprey-fp-test.conf \
             && echo '17 3 * * * root /usr/bin/osprey-fp-test' > svc/etc/cron.d/osprey-fp-test \
             && printf '/var/log/osprey-fp-test.log {{\\n  weekly\\n  missingok\\n}}\\n' > svc/etc/logrotate.d/osprey-fp-test \
             && echo 'export OSPREY_FP=1' > svc/etc/profile.d/osprey-fp-test.sh \
             && printf '[Service]\\nExecStart=/usr/bin/osprey-fp-testd\\n[Install]\\nWantedBy=multi-user.target\\n' > svc/lib/systemd/system/osprey-fp-test.service \
             && printf '#!/bin/sh\\necho fp\\n' > svc/usr/bin/osprey-fp-test \
             && printf '#!/bin/sh\\nwhile sleep 1; do :; done\\n' > svc/usr/bin/osprey-fp-testd && chmod 755 svc/usr/bin/* \
             && printf '#!/bin/sh\\nset -e\\nadduser --system --no-create-home --quiet osprey-fp >/dev/null 2>&1 || useradd --system -M osprey-fp\\nsystemctl daemon-reload >/dev/null 2>&1 || true\\nstart-stop-daemon --stop --quiet --oknodo --retry 5 --pidfile /run/osprey-fp-test.pid\\nstart-stop-daemon --start --quiet --background --make-pidfile --pidfile /run/osprey-fp-test.pid --exec /usr/bin/osprey-fp-testd\\n' > svc/DEBIAN/postinst \
             && printf '#!/bin/sh\\nstart-stop-daemon --stop --quiet --oknodo --retry 5 --pidfile /run/osprey-fp-test.pid\\nrm -f /run/osprey-fp-test.pid\\nexit 0\\n' > svc/DEBIAN/prerm \
             && printf '#!/bin/sh\\nif [ \"$1\" = purge ]; then userdel osprey-fp >/dev/null 2>&1 || true; fi\\nexit 0\\n' > svc/DEBIAN/postrm \
             && chmod 755 svc/DEBIAN/postinst svc/DEBIAN/prerm svc/DEBIAN/postrm \
             && dpkg-deb --root-owner-group --build svc osprey-fp-test_{v}.deb >/dev/null",
            d.s()
        ));
    }

    // Other work on a shared machine (a benchmark, another test suite) may trip the rules while
    // this runs; only alerts about our own processes count. The default rules are loaded
    // unchanged, each with its output extended by the process's ancestry and container, so an
    // alert can be traced to this test: its process descends from us, or runs in our container.
    let defaults = concat!(env!("CARGO_MANIFEST_DIR"), "/../rules/osprey_rules.yaml");
    let ancestry: Vec<String> = (1..=12).map(|i| format!("%proc.apid[{i}]")).collect();
    let mut extra = String::new();
    for line in std::fs::read_to_string(defaults).unwrap().lines() {
        if let Some(name) = line.strip_prefix("- rule: ") {
            extra.push_str(&format!(
                "- rule: {name}\n  output: \"fp_pid=%proc.pid fp_ancestry={} fp_container=%container.id\"\n  override:\n    output: append\n",
                ancestry.join(",")
            ));
        }
    }
    let extra_file = d.join("attribution.yaml");
    std::fs::write(&extra_file, extra).unwrap();
    // Logs for logrotate, written before the agent starts (creating them is the test's set-up,
    // not the node's work).
    let log = format!("/var/log/osprey-fp-{}.log", std::process::id());
    let log2 = format!("/var/log/osprey-fp-{}-copy.log", std::process::id());
    let _logs = Cleanup(vec![log.clone(), log2.clone()]);
    std::fs::write(&log, "line\n".repeat(100)).unwrap();
    std::fs::write(&log2, "line\n".repeat(100)).unwrap();

    let mut agent = support::Agent::start(
        &[
            "run",
            "--json",
            "--rules",
            defaults,
            "--rules",
            extra_file.to_str().unwrap(),
        ],
        "osprey is running",
    );

    // Build a crate: cargo, rustc, cc and the linker at work.
    let build = Command::new("cargo")
        .args(["new", "--quiet", "--vcs", "none", "fpcrate"])
        .current_dir(d.path())
        .env_remove("CARGO_TARGET_DIR")
        .output()
        .unwrap();
    assert!(build.status.success(), "cargo new: {build:?}");
    let build = Command::new("cargo")
        .args(["build", "--offline", "--quiet"])
        .current_dir(d.join("fpcrate"))
        .env_remove("CARGO_TARGET_DIR")
        .env_remove("RUSTFLAGS")
        .output()
        .unwrap();
    assert!(build.status.success(), "cargo build: {build:?}");
    assert!(d.join("fpcrate/target/debug/fpcrate").exists());
    bash_ok(&format!("{}/fpcrate/target/debug/fpcrate", d.s()));

    // Packages: query, install, run, remove.
    bash_ok("dpkg -s coreutils >/dev/null && dpkg -L coreutils >/dev/null");
    bash_ok(&format!(
        "cd {0} && DEBIAN_FRONTEND=noninteractive apt-get install -y -q {0}/osprey-fp-test.deb >/dev/null 2>&1 \
         && osprey-fp-test && DEBIAN_FRONTEND=noninteractive apt-get remove -y -q --purge osprey-fp-test >/dev/null 2>&1",
        d.s()
    ));

    // A package upgrade that rewrites /etc and restarts its daemon, a reinstall, a unit enabled
    // and disabled, and the removal (the daemon stopped, the system user deleted).
    let apt = |args: &str| {
        bash_ok(&format!(
            "cd {0} && DEBIAN_FRONTEND=noninteractive apt-get {args} -y -q -o Dpkg::Options::=--force-confnew >/dev/null 2>&1",
            d.s()
        ))
    };
    apt(&format!("install {}/osprey-fp-test_2.0.deb", d.s()));
    apt(&format!("install {}/osprey-fp-test_2.1.deb", d.s()));
    apt(&format!(
        "install --reinstall {}/osprey-fp-test_2.1.deb",
        d.s()
    ));
    bash_ok("grep -q version=2.1 /etc/osprey-fp-test.conf");
    bash_ok(
        "systemctl --root=/ enable osprey-fp-test.service >/dev/null 2>&1 \
         && test -L /etc/systemd/system/multi-user.target.wants/osprey-fp-test.service \
         && systemctl --root=/ disable osprey-fp-test.service >/dev/null 2>&1",
    );
    bash("systemctl daemon-reload >/dev/null 2>&1");

    // Log rotation, as the daily cron job runs it: rotate, compress, recreate, and a
    // copytruncate log (truncated in place).
    std::fs::write(
        d.join("logrotate.conf"),
        format!(
            "{log} {{\n  rotate 2\n  compress\n  create 0640 root root\n  postrotate\n    true\n  endscript\n}}\n\
             {log2} {{\n  rotate 1\n  copytruncate\n}}\n"
        ),
    )
    .unwrap();
    for _ in 0..2 {
        bash_ok(&format!(
            "logrotate -f -s {0}/logrotate.state {0}/logrotate.conf",
            d.s()
        ));
    }

    // A cron job run the way cron runs /etc/cron.daily: run-parts over a directory of jobs
    // that append to a log, clean old temporary files and touch a stamp.
    std::fs::create_dir_all(d.join("cron.daily")).unwrap();
    std::fs::write(
        d.join("cron.daily/osprey-fp-job"),
        format!(
            "#!/bin/sh\ndate >> {log}\nfind /tmp -maxdepth 1 -name 'osprey-fp-none-*' -mtime +7 -delete\ntouch {0}/stamp\n",
            d.s()
        ),
    )
    .unwrap();
    bash_ok(&format!(
        "chmod 755 {0}/cron.daily/osprey-fp-job && run-parts --report {0}/cron.daily && test -f {0}/stamp",
        d.s()
    ));

    // A CI job: a git checkout, a C program built with make, and its test run.
    bash_ok(&format!(
        "cd {0} && mkdir ci && cd ci && git init -q && printf 'int main(void) {{ return 0; }}\\n' > main.c \
         && printf 'all: main\\ntest: main\\n\\t./main\\n' > Makefile \
         && git add . && git -c user.email=ci@example.invalid -c user.name=ci commit -q -m ci \
         && make -s test",
        d.s()
    ));

    // A container serving a file over HTTP on its own loopback, fetched from inside.
    let c = run(
        &["--network", "none"],
        "/bin/mkdir -p /www && echo served > /www/index.html && /bin/httpd -p 127.0.0.1:8080 -h /www \
         && /bin/wget -q -O - http://127.0.0.1:8080/index.html",
    );
    assert!(c.out.contains("served"), "{}", c.out);

    // What a kubelet does with a running pod through its runtime: start it, exec a readiness
    // probe into it, read its logs, inspect it, stop and remove it.
    let name = format!("osprey-fp-{}", std::process::id());
    bash(&format!("podman rm -f {name} >/dev/null 2>&1"));
    let full_id = bash_ok(&format!(
        "podman run -d --name {name} --runtime runc --network none {IMAGE} /bin/sh -c 'echo started; while sleep 1; do :; done'"
    ));
    let pod_id: String = full_id.trim().chars().take(12).collect();
    bash_ok(&format!(
        "podman exec {name} /bin/cat /etc/passwd >/dev/null && podman exec {name} /bin/sh -c 'test -d /tmp' \
         && podman logs {name} | grep -q started && podman inspect {name} >/dev/null && podman ps >/dev/null \
         && podman stop -t 1 {name} >/dev/null && podman rm {name} >/dev/null"
    ));

    // And the package goes.
    apt("remove --purge osprey-fp-test");
    bash_ok("! test -e /etc/osprey-fp-test.conf && ! id osprey-fp >/dev/null 2>&1");

    bash_ok("cat /etc/shadow >/dev/null");
    let seen = agent.collect_for(std::time::Duration::from_secs(2));
    let me = std::process::id().to_string();
    let ours = |v: &serde_json::Value| {
        field(v, "proc.pid") == me
            || (1..=12).any(|i| field(v, &format!("proc.apid[{i}]")) == me)
            || field(v, "container.id") == c.id
            || field(v, "container.id") == pod_id
    };
    // The attribution itself must work: a read of /etc/shadow by our own child is ours.
    let control = |v: &serde_json::Value| {
        v["rule"] == "Read sensitive file" && field(v, "proc.cmdline") == "cat /etc/shadow"
    };
    assert!(
        seen.iter().any(|v| control(v) && ours(v)),
        "the control alert was not traced to this test: {seen:?}"
    );
    let loud: Vec<String> = seen
        .iter()
        .filter(|v| {
            v["source"] == "syscall"
                && LOUD.contains(&v["priority"].as_str().unwrap_or(""))
                && ours(v)
                && !control(v)
        })
        .map(|v| v["output"].to_string())
        .collect();
    assert!(
        loud.is_empty(),
        "ordinary activity raised alerts:\n{}",
        loud.join("\n")
    );
}

/// Files the test creates outside its own directory, removed whatever happens (with what
/// logrotate made of them).
struct Cleanup(Vec<String>);

impl Drop for Cleanup {
    fn drop(&mut self) {
        for f in &self.0 {
            bash(&format!("rm -f {f} {f}.* {f}-*"));
        }
    }
}
