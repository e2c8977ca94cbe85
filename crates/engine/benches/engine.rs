//! Engine throughput with Osprey's default rules and with Falco's upstream stable rules on a
//! realistic mix of events: mostly ordinary opens, some execs (a shell and tools spawned by a
//! shell), connects, and a few events that raise alerts. `cargo bench -p osprey-engine
//! --bench engine`; events/s is reported as "thrpt" (elements per second) on one core.

use std::{borrow::Cow, hint::black_box, net::IpAddr, sync::Arc};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use osprey_engine::{
    Engine, EngineOptions,
    env::{StaticContainers, StaticUsers},
    rules::load_files,
    testing::{APP, arg, default_rules, flags, upstream_rules},
};
use osprey_model::{
    ContainerInfo, Process,
    event::{ArgValue, Enriched},
};

/// 100 events: 60 opens, 20 execs, 15 connects, 5 others. Falco's upstream rules raise 3
/// alerts on them (a shell under nginx, cat /etc/shadow, a ptrace attach); Osprey's default
/// rules, which watch more, about 22 (the containerized java also writes below /etc and /usr
/// and contacts the API server's address, bash connects out, `sh -c` runs in the container),
/// so alert building is about a third of that row's time.
fn mix() -> Vec<Enriched> {
    let init = APP.process(1, 0, "systemd", "/sbin/init", &["/sbin/init"]);
    let containerd = APP.process(
        50,
        1,
        "containerd-shim",
        "/usr/bin/containerd-shim",
        &["containerd-shim", "-namespace", "k8s.io"],
    );
    let java = APP.process(
        100,
        50,
        "java",
        "/usr/bin/java",
        &["java", "-jar", "/srv/app/app.jar"],
    );
    let bash = APP.process(200, 50, "bash", "/bin/bash", &["bash"]);
    let python = APP.process(
        300,
        200,
        "python3",
        "/usr/bin/python3",
        &["python3", "worker.py", "--queue", "default"],
    );
    let nginx = APP.process(
        400,
        1,
        "nginx",
        "/usr/sbin/nginx",
        &["nginx", "-g", "daemon off;"],
    );
    let chains: [(&Arc<Process>, Vec<Arc<Process>>); 4] = [
        (&java, vec![containerd.clone(), init.clone()]),
        (
            &python,
            vec![bash.clone(), containerd.clone(), init.clone()],
        ),
        (&nginx, vec![init.clone()]),
        (&bash, vec![containerd.clone(), init.clone()]),
    ];
    let files = [
        "/srv/app/config/application.yaml",
        "/usr/lib/x86_64-linux-gnu/libssl.so.3",
        "/proc/self/status",
        "/var/lib/app/data/segment-000123.log",
        "/etc/ld.so.cache",
        "/tmp/upload-4711.part",
        "/usr/share/zoneinfo/UTC",
        "/sys/fs/cgroup/cpu.max",
        "/etc/hosts",
        "/var/cache/app/index.bin",
    ];
    let mut out = Vec::with_capacity(100);
    for i in 0..60 {
        let (p, anc) = &chains[i % chains.len()];
        let f = files[i % files.len()];
        let write = i % 4 == 0;
        let fl = if write {
            flags(0o1101, &["O_WRONLY", "O_CREAT", "O_TRUNC"])
        } else {
            flags(0o2000000, &["O_RDONLY", "O_CLOEXEC"])
        };
        let ret = if i % 9 == 0 { -2 } else { 3 + (i as i64 % 20) };
        out.push(APP.openat(Arc::clone(p), anc.clone(), f, fl, ret));
    }
    let tools: [(&str, &str, &[&str]); 5] = [
        ("ls", "/bin/ls", &["ls", "-la", "/srv/app"]),
        ("grep", "/bin/grep", &["grep", "-r", "TODO", "src"]),
        (
            "curl",
            "/usr/bin/curl",
            &["curl", "-s", "http://localhost:8080/health"],
        ),
        ("sh", "/bin/sh", &["sh", "-c", "date +%s"]),
        ("git", "/usr/bin/git", &["git", "status", "--short"]),
    ];
    for i in 0..20 {
        let (comm, exe, args) = tools[i % tools.len()];
        let child = APP.process(1000 + i as u32, 200, comm, exe, args);
        let anc = vec![bash.clone(), containerd.clone(), init.clone()];
        out.push(APP.execve(child, anc));
    }
    for i in 0..15 {
        let (p, anc) = &chains[i % chains.len()];
        let ip = ["10.96.0.1", "172.17.0.3", "93.184.216.34"][i % 3];
        let ip = ip.parse::<IpAddr>().unwrap_or(IpAddr::from([0, 0, 0, 0]));
        out.push(APP.connect(Arc::clone(p), anc.clone(), 5, ip, [443, 5432, 80][i % 3]));
    }
    for (p, anc) in chains.iter().take(2) {
        let args = vec![arg("oldfd", ArgValue::Fd(5)), arg("newfd", ArgValue::Fd(1))];
        out.push(APP.event(APP.syscall("dup2", 1, args), Arc::clone(p), anc.clone()));
    }
    // Alerts: a shell under nginx, cat /etc/shadow, a ptrace attach.
    let sh = APP.process(500, 400, "sh", "/bin/sh", &["sh", "-c", "id"]);
    out.push(APP.execve(sh, vec![nginx.clone(), init.clone()]));
    let cat = APP.process(501, 200, "cat", "/bin/cat", &["cat", "/etc/shadow"]);
    out.push(APP.openat(
        cat,
        vec![bash.clone(), init.clone()],
        "/etc/shadow",
        flags(0, &["O_RDONLY"]),
        3,
    ));
    let gdb = APP.process(502, 200, "gdb", "/usr/bin/gdb", &["gdb", "-p", "100"]);
    let request = ArgValue::Enum {
        raw: 16,
        name: Some(Cow::Borrowed("PTRACE_ATTACH")),
    };
    let args = vec![
        arg("request", request),
        arg("pid", ArgValue::Int(100)),
        arg("addr", ArgValue::Ptr(0)),
        arg("data", ArgValue::Ptr(0)),
    ];
    out.push(APP.event(APP.syscall("ptrace", 0, args), gdb, vec![bash, init]));
    out
}

fn options() -> EngineOptions {
    EngineOptions {
        hostname: Arc::from("bench"),
        users: Arc::new(StaticUsers::new(
            &[(0, "root"), (1000, "app")],
            &[(1000, "app")],
        )),
        containers: Arc::new(StaticContainers {
            default: Some(Arc::new(ContainerInfo {
                id: "0123456789ab".into(),
                image_repository: Some("docker.io/acme/app".into()),
                ..Default::default()
            })),
            ..Default::default()
        }),
        ..EngineOptions::default()
    }
}

/// One criterion benchmark: the whole mix through an engine built from `path`.
fn bench_rules(c: &mut Criterion, name: &str, path: &std::path::Path, alerts: Option<usize>) {
    let res = load_files(&[path]);
    assert!(res.is_ok(), "rules at {} must load", path.display());
    let engine = Engine::new(res.ruleset, options());
    let events = mix();
    let raised: usize = events.iter().map(|e| engine.evaluate(e).len()).sum();
    eprintln!("engine/{name}: {raised} alerts per {} events", events.len());
    if let Some(n) = alerts {
        assert_eq!(raised, n, "the mix raises exactly {n} alerts with {name}");
    }
    let mut g = c.benchmark_group("engine");
    g.throughput(Throughput::Elements(events.len() as u64));
    g.bench_function(name, |b| {
        b.iter(|| {
            let mut n = 0;
            for e in &events {
                n += engine.evaluate(black_box(e)).len();
            }
            black_box(n)
        })
    });
    g.finish();
}

fn bench_engine(c: &mut Criterion) {
    // Osprey's default rules: what `osprey run` embeds. They change often, so the number of
    // alerts the mix raises is not pinned here (the engine tests pin behaviour).
    bench_rules(c, "default_rules_mix", &default_rules(), None);
    // Falco's upstream stable rules sit beside the clone (../shared), not in it.
    let upstream = upstream_rules();
    if upstream.exists() {
        bench_rules(c, "upstream_stable_mix", &upstream, Some(3));
    } else {
        eprintln!(
            "engine/upstream_stable_mix skipped: {} is missing",
            upstream.display()
        );
    }
}

criterion_group!(benches, bench_engine);
criterion_main!(benches);
