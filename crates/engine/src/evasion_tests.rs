//! The fd table's entry, truncation and the evasion rules (issue #15) as the engine sees them:
//! fields on handcrafted events, and the default rules judging them.

use std::{collections::HashMap, net::Ipv4Addr, sync::Arc};

use osprey_model::{
    ContainerInfo, Process,
    event::{ArgValue, Enriched, EventKind, TRUNCATED_MARKER},
    fd::{FdEntry, FdKind, L4Proto},
};

use crate::{
    Engine, EngineOptions, RuleMatching,
    env::StaticContainers,
    fields::{Ctx, EventCache, Services, resolve},
    rules::load_files,
    testing::{ROOT, arg, default_rules, flags, path},
};

fn default_engine() -> Engine {
    let res = load_files(&[default_rules()]);
    let errs: Vec<_> = res.errors().map(|e| e.message.clone()).collect();
    assert!(res.is_ok(), "{errs:?}");
    let host = Arc::new(ContainerInfo {
        id: "host".into(),
        ..Default::default()
    });
    let ctr = Arc::new(ContainerInfo {
        id: "0123456789ab".into(),
        ..Default::default()
    });
    Engine::new(
        res.ruleset,
        EngineOptions {
            containers: Arc::new(StaticContainers {
                by_cgroup: HashMap::from([(7, ctr)]),
                default: Some(host),
            }),
            rule_matching: RuleMatching::All,
            ..EngineOptions::default()
        },
    )
}

fn hits(e: &Enriched) -> Vec<String> {
    default_engine()
        .evaluate(e)
        .into_iter()
        .map(|a| a.rule.to_string())
        .collect()
}

/// A field's text for an event ("" when unset); `name[arg]` for a field with an argument.
fn field(e: &Enriched, name: &str) -> String {
    let f = match name.split_once('[') {
        Some((name, arg)) => resolve(name, Some(arg.trim_end_matches(']'))),
        None => resolve(name, None),
    }
    .unwrap();
    let users = crate::env::NoUsers;
    let containers = StaticContainers::default();
    let groups = crate::env::NoProcessGroups;
    let svc = Services {
        users: &users,
        containers: &containers,
        process_groups: &groups,
        dns: &crate::env::NoDnsNames,
        hostname: "h",
    };
    let cache = EventCache::default();
    let ctx = Ctx::new(e, 1, &svc, &cache);
    ctx.extract(&f)
        .map(|v| v.text().into_owned())
        .unwrap_or_default()
}

fn proc_named(comm: &str, args: &[&str]) -> Arc<Process> {
    ROOT.process(30, 10, comm, &format!("/usr/bin/{comm}"), args)
}

fn dup2(p: Arc<Process>, old: i64, new: i64, entry: Option<FdEntry>) -> Enriched {
    let mut e = ROOT.event(
        ROOT.syscall(
            "dup2",
            new,
            vec![
                arg("oldfd", ArgValue::Fd(old)),
                arg("newfd", ArgValue::Fd(new)),
            ],
        ),
        p,
        vec![],
    );
    e.fd = entry;
    e
}

fn tcp_socket(num: i64) -> FdEntry {
    FdEntry {
        l4proto: Some(L4Proto::Tcp),
        local: Some((Ipv4Addr::new(10, 0, 0, 2).into(), 40000)),
        remote: Some((Ipv4Addr::new(10, 0, 0, 5).into(), 4444)),
        ..FdEntry::new(num, FdKind::Ipv4)
    }
}

#[test]
fn fd_fields_come_from_the_table_for_an_fd_the_event_only_names() {
    let e = dup2(proc_named("x", &["x"]), 3, 0, Some(tcp_socket(3)));
    assert_eq!(field(&e, "fd.type"), "ipv4");
    assert_eq!(field(&e, "fd.typechar"), "4");
    assert_eq!(field(&e, "fd.l4proto"), "tcp");
    assert_eq!(field(&e, "fd.name"), "10.0.0.2:40000->10.0.0.5:4444");
    assert_eq!(field(&e, "fd.sip"), "10.0.0.5");
    assert_eq!(field(&e, "fd.sport"), "4444");
    assert_eq!(field(&e, "fd.cport"), "40000");
    assert_eq!(field(&e, "fd.connected"), "true");
    assert_eq!(field(&e, "fd.is_server"), "false");
    let pipe = dup2(
        proc_named("x", &["x"]),
        3,
        1,
        Some(FdEntry {
            path: "pipe:[77]".into(),
            ..FdEntry::new(3, FdKind::Pipe)
        }),
    );
    assert_eq!(field(&pipe, "fd.type"), "pipe");
    assert_eq!(field(&pipe, "fd.name"), "pipe:[77]");
    assert_eq!(field(&pipe, "fd.l4proto"), "");
    // A connect: the event's own address names it, the table adds the protocol.
    let mut c = ROOT.connect(
        proc_named("x", &["x"]),
        vec![],
        3,
        Ipv4Addr::new(10, 0, 0, 5).into(),
        4444,
    );
    c.fd = Some(tcp_socket(3));
    assert_eq!(field(&c, "fd.name"), "10.0.0.5:4444");
    assert_eq!(field(&c, "fd.l4proto"), "tcp");
    assert_eq!(field(&c, "fd.lport"), "40000");
}

#[test]
fn reverse_shell_is_a_socket_on_stdio_and_a_pipe_is_not() {
    // Any program, whatever its name, putting a TCP socket onto stdin.
    let e = dup2(
        proc_named("innocent", &["innocent"]),
        3,
        0,
        Some(tcp_socket(3)),
    );
    assert!(hits(&e).contains(&"Reverse shell".to_string()));
    // pip running `python -c ...` with its output on a pipe: no alert.
    let python = proc_named("python3", &["python3", "-c", "import setuptools"]);
    let pipe = FdEntry {
        path: "pipe:[9]".into(),
        ..FdEntry::new(5, FdKind::Pipe)
    };
    assert!(!hits(&dup2(python.clone(), 5, 1, Some(pipe))).contains(&"Reverse shell".into()));
    // A unix socket onto stdout (a supervisor's log socket) neither.
    let unix = FdEntry::new(5, FdKind::Unix);
    assert!(!hits(&dup2(python.clone(), 5, 1, Some(unix))).contains(&"Reverse shell".into()));
    // Not known (a child that was gone before /proc could be read): no guess either way.
    assert!(!hits(&dup2(python, 5, 1, None)).contains(&"Reverse shell".into()));
    // A server (inetd, busybox httpd) handing an accepted connection to its CGI child.
    let accepted = FdEntry {
        local_is_server: true,
        ..tcp_socket(3)
    };
    let httpd = proc_named("httpd", &["httpd"]);
    assert!(!hits(&dup2(httpd, 3, 0, Some(accepted))).contains(&"Reverse shell".into()));
}

#[test]
fn a_program_started_on_a_connection_is_judged_by_its_stdio() {
    use osprey_model::process::Stdio;
    let started = |name: &str, stdio: [Option<FdKind>; 3]| {
        let mut p = (*proc_named(name, &[name, "-i"])).clone();
        p.stdio = stdio.map(|k| {
            k.map(|kind| Stdio {
                kind,
                name: String::new(),
            })
        });
        ROOT.execve(Arc::new(p), vec![])
    };
    let rule = "Program started on a network connection".to_string();
    let tcp = Some(FdKind::Ipv4);
    // Whatever the program is called; stdin or stdout is enough.
    let e = started("kworker", [tcp, tcp, tcp]);
    assert!(hits(&e).contains(&rule));
    assert_eq!(field(&e, "proc.stdin.type"), "ipv4");
    assert_eq!(field(&e, "proc.stderr.type"), "ipv4");
    assert!(hits(&started("sh", [None, Some(FdKind::Ipv6), None])).contains(&rule));
    // A terminal, pipes, a unix socket (sshd's, a supervisor's), closed descriptors: no alert.
    let file = Some(FdKind::File);
    assert!(!hits(&started("sh", [file, file, file])).contains(&rule));
    let pipe = Some(FdKind::Pipe);
    assert!(!hits(&started("sh", [pipe, pipe, pipe])).contains(&rule));
    let unix = Some(FdKind::Unix);
    assert!(!hits(&started("sh", [unix, unix, unix])).contains(&rule));
    let e = started("sh", [None, None, None]);
    assert!(!hits(&e).contains(&rule));
    assert_eq!(field(&e, "proc.stdin.type"), "");
    // Only an exec is a start: the same process's other events are not.
    let mut p = (*proc_named("sh", &["sh"])).clone();
    p.stdio[0] = Some(Stdio {
        kind: FdKind::Ipv4,
        name: "10.0.0.2:40000->10.0.0.5:4444".into(),
    });
    let open = ROOT.openat(Arc::new(p), vec![], "/tmp/x", flags(0, &["O_RDONLY"]), 3);
    assert!(!hits(&open).contains(&rule));
    assert_eq!(
        field(&open, "proc.stdin.name"),
        "10.0.0.2:40000->10.0.0.5:4444"
    );
}

#[test]
fn truncation_is_visible_in_fields() {
    let mut p = (*proc_named("python3", &["python3", "-c", "aaaa"])).clone();
    p.args_truncated = true;
    let p = Arc::new(p);
    let long = format!("/tmp/{}", "d/".repeat(100));
    let mut e = ROOT.openat(p, vec![], &long, flags(0, &["O_RDONLY"]), 3);
    if let EventKind::Syscall(sc) = &mut e.event.kind {
        sc.truncated = true;
    }
    assert_eq!(field(&e, "evt.is_truncated"), "true");
    assert!(field(&e, "proc.cmdline").ends_with(&format!("aaaa{TRUNCATED_MARKER}")));
    assert!(field(&e, "proc.args").ends_with(TRUNCATED_MARKER));
    assert!(field(&e, "fd.name").ends_with(TRUNCATED_MARKER));
    assert!(field(&e, "evt.arg.filename").ends_with(TRUNCATED_MARKER));
    assert!(field(&e, "evt.args").contains(TRUNCATED_MARKER));
    // The untruncated one says so too, and carries no marker.
    let ok = crate::tests::cat_shadow();
    assert_eq!(field(&ok, "evt.is_truncated"), "false");
    assert_eq!(field(&ok, "fd.name"), "/etc/shadow");
}

/// A path string of 4,095 bytes (PATH_MAX with its NUL) fills the sensor's capture and reads
/// as cut; the kernel walked the file it opened, /etc/shadow, and that name is whole: the rules
/// compare it as it is, not with a truncation marker after it.
#[test]
fn a_padded_path_to_a_walked_file_is_not_marked_cut() {
    let padded = format!("/etc/{}shadow", "./".repeat(2042));
    let cat = proc_named("cat", &["cat"]);
    let mut e = ROOT.openat(cat, vec![], &padded, flags(0, &["O_RDONLY"]), 3);
    if let EventKind::Syscall(sc) = &mut e.event.kind {
        sc.truncated = true;
        if let Some(ArgValue::Path { resolved, .. }) = sc
            .args
            .iter_mut()
            .find(|a| a.name == "filename")
            .map(|a| &mut a.value)
        {
            *resolved = Some("/etc/shadow".into());
        }
        sc.file = Some(osprey_model::event::KernelFile {
            of: osprey_model::event::KernelFileOf::Returned,
            path: "/etc/shadow".into(),
            fs_magic: 0xef53,
            ino: 7,
            deleted: false,
            truncated: false,
            outside_root: false,
            file_type: 8,
        });
    }
    assert_eq!(field(&e, "fd.name"), "/etc/shadow");
    assert!(field(&e, "fd.nameraw").starts_with("/etc/././"));
    assert!(hits(&e).contains(&"Read sensitive file".to_string()));
}

fn in_container(p: Arc<Process>) -> Arc<Process> {
    Arc::new(Process {
        cgroup_id: 7,
        ..(*p).clone()
    })
}

/// A shell is known by the program it runs, not only by its name: a symlink named otherwise,
/// a prctl rename, `busybox sh`; a script is its own program, not its interpreter.
#[test]
fn a_shell_under_another_name_is_a_shell_and_a_script_is_not() {
    let rule = "Shell spawned in container".to_string();
    // comm, executable, argv, path given to exec, an interpreter loaded (the kernel's word);
    // the program, and whether it is a shell.
    type Case<'a> = (
        &'a str,
        &'a str,
        &'a [&'a str],
        &'a str,
        bool,
        &'a str,
        bool,
    );
    #[rustfmt::skip]
    let cases: [Case; 6] = [
        // `ln -s /bin/bash /tmp/x; /tmp/x`: comm and argv[0] say x, the file is bash.
        ("x", "/usr/bin/bash", &["/tmp/x"], "/tmp/x", false, "bash", true),
        // `busybox sh -c ...`.
        ("busybox", "/bin/busybox", &["busybox", "sh", "-c", "id"], "/bin/busybox", false, "sh", true),
        // busybox's own applets are not shells: `busybox cat`, and an applet busybox's shell
        // re-runs through /proc/self/exe (named `exe`).
        ("busybox", "/bin/busybox", &["busybox", "cat", "/x"], "/bin/busybox", false, "cat", false),
        ("exe", "/bin/busybox", &["cat", "/x"], "/proc/self/exe", false, "cat", false),
        // A script run by its path: its interpreter is bash, the program is the script.
        ("deploy.sh", "/usr/bin/bash", &["/bin/bash", "/app/deploy.sh"], "/app/deploy.sh", true, "deploy.sh", false),
        // The same argv from an exec the kernel did not give an interpreter (bash reached
        // through a symlink, argv made to look like a script's): a shell.
        ("x", "/usr/bin/bash", &["/bin/bash", "-s", "/tmp/x"], "/tmp/x", false, "bash", true),
    ];
    for (comm, exe, args, requested, interpreted, program, shell) in cases {
        let mut p = (*in_container(ROOT.process(30, 10, comm, exe, args))).clone();
        p.exe_requested = requested.into();
        p.interpreted = interpreted;
        let parent = in_container(ROOT.process(10, 1, "app", "/app/server", &["server"]));
        let e = ROOT.execve(Arc::new(p), vec![parent]);
        assert_eq!(field(&e, "proc.program"), program, "{comm} {args:?}");
        assert_eq!(hits(&e).contains(&rule), shell, "{comm} {args:?}");
    }
    // What that shell runs knows its parent by program too.
    let shell = in_container(ROOT.process(30, 10, "x", "/usr/bin/bash", &["/tmp/x"]));
    let child = in_container(ROOT.process(40, 30, "id", "/usr/bin/id", &["id"]));
    let e = ROOT.execve(child, vec![shell]);
    assert_eq!(field(&e, "proc.aname[1]"), "x");
    assert_eq!(field(&e, "proc.aprogram[1]"), "bash");
}

/// A binary on a container's volume (an emptyDir, a hostPath, a tmpfs) came from no image: it
/// is drift when the volume is writable, and never a trusted image path (an exemption such as
/// `installed_binary` matches /opt, where volumes are often mounted).
#[test]
fn a_binary_on_a_volume_is_not_the_image() {
    use osprey_model::process::ExeMount;
    let started = |exe: &str, mount: Option<ExeMount>, from_host: bool| {
        let mut p = (*in_container(ROOT.process(30, 10, "apt-get", exe, &["apt-get"]))).clone();
        p.exe_mount = mount;
        p.exe_from_host = from_host;
        ROOT.execve(Arc::new(p), vec![])
    };
    let drift = "Drop and execute new binary in container".to_string();
    let writable = Some(ExeMount { read_only: false });
    let e = started("/opt/data/apt-get", writable, false);
    assert!(hits(&e).contains(&drift));
    assert_eq!(field(&e, "proc.is_exe_from_volume"), "true");
    assert_eq!(field(&e, "proc.is_exe_from_writable_volume"), "true");
    assert_eq!(field(&e, "proc.image_exepath"), "");
    // Read-only (a configMap): not written from inside, but still not the image's.
    let e = started("/config/apt-get", Some(ExeMount { read_only: true }), false);
    assert!(!hits(&e).contains(&drift));
    assert_eq!(field(&e, "proc.is_exe_from_writable_volume"), "false");
    assert_eq!(field(&e, "proc.image_exepath"), "");
    // The image's own file, and CI tools' known copies, and /dev/shm (a rule of its own).
    let e = started("/usr/bin/apt-get", None, false);
    assert!(!hits(&e).contains(&drift));
    assert_eq!(field(&e, "proc.image_exepath"), "/usr/bin/apt-get");
    assert!(!hits(&started("/var/run/argo/argoexec", writable, false)).contains(&drift));
    let shm = hits(&started("/dev/shm/x", writable, false));
    assert!(!shm.contains(&drift));
    assert!(shm.contains(&"Execution from /dev/shm".to_string()));
    // Exec'd in the node's mount namespace (runc before it enters the container, /usr on a
    // partition of its own): the node's file.
    let e = started("/usr/bin/runc", writable, true);
    assert!(!hits(&e).contains(&drift));
    assert_eq!(field(&e, "proc.image_exepath"), "/usr/bin/runc");
}

/// The loader run as a program runs whatever file it is given, under its own executable.
#[test]
fn a_program_run_through_the_dynamic_loader_is_reported_and_ldd_is_not() {
    let rule = "Program run through the dynamic loader".to_string();
    let loader = |exe: &str, requested: &str, parent_requested: &str| {
        let mut p =
            (*ROOT.process(30, 10, "ld-linux-x86-64", exe, &[requested, "/data/x"])).clone();
        p.exe_requested = requested.into();
        let mut parent = (*ROOT.process(10, 1, "ldd", "/usr/bin/bash", &["bash"])).clone();
        parent.exe_requested = parent_requested.into();
        ROOT.execve(Arc::new(p), vec![Arc::new(parent)])
    };
    let glibc = "/usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2";
    let e = loader(glibc, "/lib64/ld-linux-x86-64.so.2", "/usr/bin/bash");
    assert!(hits(&e).contains(&rule));
    assert_eq!(field(&e, "proc.args"), "/data/x");
    // Older glibc's file name, and musl's.
    assert!(hits(&loader("/lib/x86_64-linux-gnu/ld-2.31.so", "/lib64/x", "")).contains(&rule));
    assert!(hits(&loader("/lib/ld-musl-x86_64.so.1", "/lib/x", "")).contains(&rule));
    // glibc's ldd script runs the loader; musl's ldd is the loader by another path.
    assert!(
        !hits(&loader(
            glibc,
            "/lib64/ld-linux-x86-64.so.2",
            "/usr/bin/ldd"
        ))
        .contains(&rule)
    );
    assert!(!hits(&loader("/lib/ld-musl-x86_64.so.1", "/usr/bin/ldd", "")).contains(&rule));
    // A parent started through a symlink named ldd elsewhere is no ldd.
    assert!(hits(&loader(glibc, "/lib64/ld-linux-x86-64.so.2", "/tmp/ldd")).contains(&rule));
    // An ordinary dynamically linked program (the kernel maps the loader, but the executable
    // is the program).
    assert!(!hits(&ROOT.execve(proc_named("id", &["id"]), vec![])).contains(&rule));
}

#[test]
fn evasion_rules_fire_on_their_events() {
    let sh = proc_named("sh", &["sh"]);
    let cases: Vec<(&str, Enriched)> = vec![
        (
            "Memory made writable and executable in container",
            ROOT.event(
                ROOT.syscall(
                    "mprotect",
                    0,
                    vec![
                        arg("start", ArgValue::Ptr(0x7000)),
                        arg("len", ArgValue::Int(4096)),
                        arg("prot", flags(7, &["PROT_READ", "PROT_WRITE", "PROT_EXEC"])),
                    ],
                ),
                in_container(sh.clone()),
                vec![],
            ),
        ),
        (
            "Process renamed to look like a kernel thread or daemon",
            ROOT.event(
                ROOT.syscall(
                    "prctl",
                    0,
                    vec![
                        arg(
                            "option",
                            ArgValue::Enum {
                                raw: 15,
                                name: Some("PR_SET_NAME".into()),
                            },
                        ),
                        arg("arg2", ArgValue::Str("kworker/0:2".into())),
                    ],
                ),
                sh.clone(),
                vec![],
            ),
        ),
        (
            "Setuid to root denied",
            ROOT.event(
                ROOT.syscall("setuid", -1, vec![arg("uid", ArgValue::Id(0))]),
                sh.clone(),
                vec![],
            ),
        ),
        (
            "Kernel module load denied",
            ROOT.event(
                ROOT.syscall(
                    "finit_module",
                    -1,
                    vec![
                        arg("fd", ArgValue::Fd(3)),
                        arg("uargs", ArgValue::Str(String::new())),
                    ],
                ),
                sh.clone(),
                vec![],
            ),
        ),
        (
            "Mount denied",
            ROOT.event(
                ROOT.syscall(
                    "mount",
                    -1,
                    vec![
                        arg("dev_name", ArgValue::Str("proc".into())),
                        arg("dir_name", path("/mnt")),
                        arg("type", ArgValue::Str("proc".into())),
                    ],
                ),
                in_container(sh.clone()),
                vec![],
            ),
        ),
        (
            "Namespace change denied in container",
            ROOT.event(
                ROOT.syscall(
                    "unshare",
                    -1,
                    vec![arg("unshare_flags", flags(0x2000_0000, &["CLONE_NEWNS"]))],
                ),
                in_container(sh.clone()),
                vec![],
            ),
        ),
        (
            "io_uring ring created by unexpected process",
            ROOT.event(
                ROOT.syscall(
                    "io_uring_setup",
                    4,
                    vec![
                        arg("entries", ArgValue::Int(8)),
                        arg("params", ArgValue::Ptr(1)),
                    ],
                ),
                sh.clone(),
                vec![],
            ),
        ),
        (
            "Other process memory written",
            ROOT.event(
                ROOT.syscall("process_vm_writev", 16, vec![arg("pid", ArgValue::Int(1))]),
                sh.clone(),
                vec![],
            ),
        ),
    ];
    for (rule, e) in cases {
        let h = hits(&e);
        assert!(h.iter().any(|r| r == rule), "{rule}: got {h:?}");
    }
    // A denied module load is not reported as a loaded module.
    let denied = ROOT.event(
        ROOT.syscall("init_module", -1, vec![arg("len", ArgValue::Int(1))]),
        sh.clone(),
        vec![],
    );
    assert!(!hits(&denied).contains(&"Kernel module load".to_string()));
    // A daemon's own name from its own binary is not a rename to hide.
    let sshd = ROOT.process(31, 1, "sshd", "/usr/sbin/sshd", &["sshd"]);
    let rename = ROOT.event(
        ROOT.syscall(
            "prctl",
            0,
            vec![
                arg(
                    "option",
                    ArgValue::Enum {
                        raw: 15,
                        name: Some("PR_SET_NAME".into()),
                    },
                ),
                arg("arg2", ArgValue::Str("sshd".into())),
            ],
        ),
        sshd,
        vec![],
    );
    assert!(hits(&rename).is_empty(), "{:?}", hits(&rename));
}
