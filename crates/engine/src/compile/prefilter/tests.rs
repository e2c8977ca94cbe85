//! The prefilter never skips a rule whose condition holds, and does skip the rules an
//! ordinary open cannot match.

use std::{cell::Cell, net::IpAddr, sync::Arc};

use super::*;
use crate::{
    Engine, EngineOptions, RuleMatching,
    fields::EventCache,
    rules::{load_files, load_sources},
    testing::{ROOT, arg, default_rules, flags, mix, open_flags},
    tests::{engine_on_scene, path_corpus, upstream_path},
};
use osprey_model::{
    Process,
    event::{ArgValue, Enriched, EventKind, SockAddr},
};

/// Conditions that key on literals, that must not (negations, `or` across fields,
/// transformers, `contains`...), and macros and lists in between; each becomes one rule.
const CONDITIONS: &[&str] = &[
    "fd.name = /etc/shadow",
    "fd.name in (/etc/shadow, /etc/sudoers, relative.txt, /)",
    "fd.name in (sensitive_names)",
    "sensitive_file",
    "sensitive_file and evt.is_open_read=true",
    "fd.name startswith /etc/",
    "fd.name startswith /et",
    "fd.name startswith etc/",
    "fd.name startswith /",
    "fd.name startswith oneof (/var/, /etc/)",
    "fd.name startswith anyof (/var, /etc/)",
    "fd.name pmatch (/var/lib/kubelet, /etc)",
    "fd.name pmatch (/var/lib/kubelet/pki, /etc/cron.d, /etc/sudoers.d/x)",
    "fd.name pmatch (/etc) and fd.name pmatch (/etc/cron.d)",
    "fd.name pmatch (/etc/cron.d) and fd.name startswith /etc/",
    "fd.name pmatch (/etc/cron.d) and fd.name startswith /etc/cron.d/y/",
    "fd.name pmatch (/var/lib/kubelet/*/pki)",
    "fd.name startswith /etc/cron.d/",
    "fd.name startswith /var//lib/",
    "fd.name startswith /etc/cron.d",
    "fd.name glob '/etc/cron.d/*'",
    "fd.name pmatch (/etc/cron.d) or fd.name = /dev/null",
    "fd.directory pmatch (/etc/cron.d)",
    "fd.directory startswith /etc/cron.d/",
    "fd.name pmatch (/)",
    "fd.name pmatch (/*/shadow)",
    "fd.name glob '/proc/[0-9]*/mem'",
    "fd.name glob '/et*/shadow'",
    "fd.name glob '*shadow'",
    "fd.name glob '\\/etc/*'",
    "fd.name glob '/etc/sha?ow'",
    "not fd.name = /dev/null",
    "not fd.name in (/dev/null, /etc/passwd)",
    "not (fd.name startswith /etc/ and evt.is_open_write=true)",
    "fd.name = /dev/null or proc.name = cat",
    "fd.name = /etc/shadow or fd.name startswith /var/",
    "(fd.name = /etc/shadow or fd.name startswith /var/) and proc.name in (cat, bash)",
    "fd.name = /etc/shadow and fd.name = /etc/passwd",
    "fd.name contains shadow",
    "evt.is_ia32 = true",
    "evt.is_ia32_from_64bit = true",
    "evt.is_ia32_from_64bit = true and fd.name startswith /etc/",
    "evt.is_ia32 = false",
    "evt.is_ia32 != true",
    "evt.is_ia32 = true and (evt.is_ia32_from_64bit = true or proc.is_exe_32bit = false)",
    "fd.name endswith shadow",
    "fd.name icontains SHADOW",
    "fd.name contains allof (etc, shadow)",
    "tolower(fd.name) = /etc/shadow",
    "evt.is_open_read=true",
    "evt.is_open_read=true and fd.name startswith /etc/",
    "evt.is_open_write=true",
    "evt.is_open_write=false and proc.name=cat",
    "evt.is_open_write != true and fd.name = /etc/shadow",
    "fd.directory = /etc and fd.filename = shadow",
    "fd.directory in (/etc, /tmp) and fd.filename startswith sha",
    "fd.directory = /",
    "fd.directory = .",
    "fd.directory in (/etc, .)",
    "fd.directory startswith /var/",
    "fd.directory pmatch (/etc)",
    "fd.name = /dev/null or fd.directory = /etc",
    "fd.name exists",
    "proc.name in (cat, vi)",
    "proc.name = cat and fd.name pmatch (/etc)",
    "proc.aname in (bash)",
    "proc.aname[1] = bash and fd.name = /etc/shadow",
    "evt.arg.flags contains O_CREAT",
    "evt.arg.flags in (O_RDONLY|O_CLOEXEC)",
    "fd.sip.name = example.com",
    // Last components, directory names and extensions.
    "fd.filename = shadow",
    "fd.filename in (shadow, .bashrc, 'id rsa')",
    "fd.filename = SHADOW",
    "fd.filename = ''",
    "fd.filename = etc/shadow",
    "fd.filename startswith sha",
    "fd.filename endswith .pub",
    "not fd.filename endswith .pub",
    "fd.filename endswith ow",
    "fd.name = /etc/",
    "fd.name = ''",
    "fd.name in (/etc/shadow, shadow)",
    "fd.name endswith /shadow",
    "fd.name endswith /",
    "fd.name endswith .timer",
    "fd.name endswith .",
    "fd.name endswith .tar.gz",
    "fd.name endswith /docker.sock",
    "fd.name endswith .d/x",
    "fd.name endswith .timer and fd.name startswith /etc/",
    "fd.name endswith .timer or fd.name endswith /shadow",
    "fd.name endswith .timer or evt.arg.newpath endswith .timer",
    "fd.name glob '/etc/*/shadow'",
    "fd.name glob '/etc/[a/]b'",
    "fd.name glob '*.timer'",
    "fd.directory endswith /.ssh",
    "fd.directory endswith .ssh",
    "fd.directory endswith /.ssh and fd.filename startswith id_ and not fd.filename endswith .pub",
    "fd.directory = /etc/ssh and fd.filename endswith _key",
    "fd.directory = /etc/",
    "fd.directory in (/etc, /tmp) or fd.filename = shadow",
    "fd.name = /dev/null or fd.directory = /etc/sudoers.d or fd.filename in (.bashrc)",
    "fd.filename in (.bashrc, .profile) or fd.name startswith /etc/profile.d/",
    "proc.name = cat or fd.filename = shadow",
    "fd.name contains /.ssh/ or fd.filename = shadow",
    "evt.arg.newpath = /etc/shadow",
    "not evt.arg.newpath exists",
];

fn rules() -> String {
    let mut src = String::from(
        "- list: sensitive_names\n  items: [/etc/shadow, /etc/gshadow, \"/root/.ssh/id rsa\"]\n\
         - macro: sensitive_file\n  condition: (fd.name in (sensitive_names) or fd.directory = /etc/sudoers.d)\n",
    );
    for (i, c) in CONDITIONS.iter().enumerate() {
        src.push_str(&format!(
            "- rule: r{i}\n  desc: d\n  condition: evt.type = openat and ({c})\n  output: o\n  priority: INFO\n",
        ));
    }
    src
}

fn engine() -> Engine {
    let res = load_sources(&[("t.yaml", rules())]);
    let errs: Vec<_> = res.errors().map(|e| e.message.clone()).collect();
    assert!(res.is_ok(), "{errs:?}");
    let opts = EngineOptions {
        rule_matching: RuleMatching::All,
        ..EngineOptions::default()
    };
    Engine::new(res.ruleset, opts)
}

fn open(comm: &str, path: &str, write: bool, ret: i64) -> Enriched {
    let p = ROOT.process(20, 10, comm, &format!("/usr/bin/{comm}"), &[comm, path]);
    let bash = ROOT.process(10, 1, "bash", "/bin/bash", &["bash"]);
    let fl = if write {
        flags(0o1101, &["O_WRONLY", "O_CREAT", "O_TRUNC"])
    } else {
        flags(0o2000000, &["O_RDONLY", "O_CLOEXEC"])
    };
    ROOT.openat(p, vec![bash], path, fl, ret)
}

/// The events: paths every key form treats differently, reads and writes, failures.
fn events() -> Vec<Enriched> {
    let paths = [
        "/etc/shadow",
        "/ETC/SHADOW",
        "//etc//shadow",
        "/etc",
        "/etc/",
        "/etcetera/shadow",
        "/etc/sudoers.d/x",
        "/etc/passwd",
        "/dev/null",
        "/",
        "",
        "relative.txt",
        "etc/shadow",
        "/var/lib/kubelet/pki/x.key",
        "/var/lib/kubelet2",
        "/proc/123/mem",
        "/tmp/shadow",
        "/tmp/shadowy",
        "/root/.ssh/id rsa",
        "/home/u/.bashrc",
        "/home/u/.bashrc/",
        "/root/.ssh/id_rsa",
        "/root/.ssh/id_rsa.pub",
        "/root/.ssh",
        "/root/x.ssh/id_rsa",
        "/etc/ssh/ssh_host_rsa_key",
        "/etc/systemd/system/x.timer",
        "/x.timer",
        ".timer",
        "x.timer",
        "/etc/x.timer/y",
        "/a.",
        "/srv/x.tar.gz",
        "/var/run/docker.sock",
        "/var/run/docker.sock.d/x",
        "/etc//",
        "/etc//x",
        "/etc/profile.d/x.sh",
        "/etc/ab",
        "/etc/]b",
        "/etc/sudoers.d",
        "shadow",
        "/SHADOW",
        "/etc/x/shadow",
        "/etc/x/y/shadow",
        "/d/x",
        "/e.d/x",
        "/etc/cron.d",
        "/etc/cron.d/x",
        "/etc//cron.d//x",
        "etc/cron.d/x",
        "/etc/cron.daily/x",
        "/etc/cron.d/y/z",
        "/var/lib/kubelet/a/pki/k",
        "/var//lib/x",
        "/var/lib/x",
        "/etc/sudoers.d/x/y",
    ];
    let mut out = Vec::new();
    for p in paths {
        for comm in ["cat", "nginx"] {
            for write in [false, true] {
                out.push(open(comm, p, write, 3));
            }
        }
        out.push(open("cat", p, false, -2));
    }
    for p in ["/etc/shadow", "/dev/null"] {
        for from_64bit in [false, true] {
            out.push(ia32(open("cat", p, false, 3), from_64bit));
        }
    }
    out
}

/// `en` made through the 32-bit entry, by 64-bit code or not.
fn ia32(mut en: Enriched, from_64bit: bool) -> Enriched {
    if let EventKind::Syscall(sc) = &mut en.event.kind {
        sc.ia32 = true;
        sc.ia32_from_64bit = from_64bit;
    }
    en
}

/// The candidates the prefilter leaves for `en`, and those whose condition holds.
fn possible_and_matching(e: &Engine, en: &Enriched) -> (Vec<usize>, Vec<usize>) {
    let svc = e.services();
    let cache = EventCache::default();
    let ctx = Ctx::new(en, 1, &svc, &cache);
    let cands = e.by_type.get(ctx.evt_type()).unwrap_or(&e.any_type);
    let memo = vec![Cell::new(0); e.memo_slots];
    let ctx = ctx.with_memo(&memo);
    let mut possible = Vec::new();
    cands.prefilter.for_each_possible(&ctx, |i| {
        possible.push(i);
        true
    });
    let matching = (0..cands.list.len())
        .filter(|&i| cands.list[i].matcher.eval(&ctx))
        .collect();
    (possible, matching)
}

#[test]
fn never_skips_a_rule_that_matches() {
    let e = engine();
    let mut matched = 0;
    for en in events() {
        let (possible, matching) = possible_and_matching(&e, &en);
        for i in &matching {
            assert!(
                possible.contains(i),
                "{:?} skipped for {:?}",
                CONDITIONS[*i],
                en.event
            );
        }
        matched += matching.len();
        // What the engine reports is exactly what holds.
        let alerts: Vec<_> = e
            .evaluate(&en)
            .into_iter()
            .map(|a| a.rule.to_string())
            .collect();
        let want: Vec<_> = matching.iter().map(|i| format!("r{i}")).collect();
        assert_eq!(alerts, want);
    }
    assert!(matched > 100, "the events exercise the rules: {matched}");
}

#[test]
fn an_ordinary_open_skips_the_rules_about_other_files() {
    let e = engine();
    let (possible, matching) = possible_and_matching(&e, &open("nginx", "/dev/null", false, 3));
    let skipped: Vec<&str> = (0..CONDITIONS.len())
        .filter(|i| !possible.contains(i))
        .map(|i| CONDITIONS[i])
        .collect();
    for c in [
        "fd.name = /etc/shadow",
        "fd.name startswith /etc/",
        "fd.name pmatch (/var/lib/kubelet, /etc)",
        "fd.name glob '/proc/[0-9]*/mem'",
        "evt.is_open_write=true",
        "proc.name in (cat, vi)",
        "sensitive_file and evt.is_open_read=true",
        "fd.filename in (shadow, .bashrc, 'id rsa')",
        "fd.name endswith /docker.sock",
        "fd.directory endswith /.ssh",
        "fd.directory endswith /.ssh and fd.filename startswith id_ and not fd.filename endswith .pub",
        "fd.directory in (/etc, /tmp) or fd.filename = shadow",
        "fd.filename in (.bashrc, .profile) or fd.name startswith /etc/profile.d/",
    ] {
        assert!(skipped.contains(&c), "{c} not skipped");
    }
    for c in [
        "not fd.name in (/dev/null, /etc/passwd)",
        "fd.name startswith /et",
        "fd.name glob '*shadow'",
        "fd.name = /dev/null or proc.name = cat",
        "tolower(fd.name) = /etc/shadow",
        "not fd.filename endswith .pub",
        "fd.filename endswith ow",
        "fd.name glob '*.timer'",
        "proc.name = cat or fd.filename = shadow",
        "fd.name contains /.ssh/ or fd.filename = shadow",
        "not evt.arg.newpath exists",
    ] {
        assert!(!skipped.contains(&c), "{c} skipped");
    }
    assert!(matching.iter().all(|i| possible.contains(i)));
}

/// `pmatch`, `startswith` and `glob` literals of two or more components key on all of them, so
/// that the cron rules are not judged on every open below /etc; and never on what a path walk
/// would skip (`//`).
#[test]
fn prefixes_key_on_all_their_components() {
    let e = engine();
    let leaves = |path: &str| {
        let (possible, _) = possible_and_matching(&e, &open("nginx", path, true, 3));
        let c = |c: &str| CONDITIONS.iter().position(|x| *x == c).unwrap();
        move |cond: &str| possible.contains(&c(cond))
    };
    let hosts = leaves("/etc/hosts");
    for c in [
        "fd.name pmatch (/var/lib/kubelet/pki, /etc/cron.d, /etc/sudoers.d/x)",
        "fd.name pmatch (/etc) and fd.name pmatch (/etc/cron.d)",
        "fd.name pmatch (/etc/cron.d) and fd.name startswith /etc/",
        "fd.name startswith /etc/cron.d/",
        "fd.name glob '/etc/cron.d/*'",
        "fd.directory pmatch (/etc/cron.d)",
        "fd.directory startswith /etc/cron.d/",
    ] {
        assert!(!hosts(c), "/etc/hosts leaves {c}");
    }
    for c in [
        "fd.name pmatch (/var/lib/kubelet, /etc)",
        "fd.name startswith /etc/",
        // Not a whole component: /etc/cron.daily starts with it.
        "fd.name startswith /etc/cron.d",
    ] {
        assert!(hosts(c), "/etc/hosts skips {c}");
    }
    for path in ["/etc/cron.d/x", "/etc//cron.d//x", "/etc/cron.d"] {
        let cron = leaves(path);
        assert!(cron(
            "fd.name pmatch (/var/lib/kubelet/pki, /etc/cron.d, /etc/sudoers.d/x)"
        ));
        assert!(cron(
            "fd.name pmatch (/etc) and fd.name pmatch (/etc/cron.d)"
        ));
    }
    let daily = leaves("/etc/cron.daily/x");
    assert!(!daily(
        "fd.name pmatch (/etc/cron.d) or fd.name = /dev/null"
    ));
    assert!(daily("fd.name startswith /etc/cron.d"));
    let kubelet = leaves("/var/lib/kubelet/a/pki/k");
    assert!(kubelet("fd.name pmatch (/var/lib/kubelet/*/pki)"));
    assert!(!leaves("/var/lib/kubelet2/a/pki")(
        "fd.name pmatch (/var/lib/kubelet/*/pki)"
    ));
}

#[test]
fn a_field_of_one_rule_is_probed_too() {
    let res = load_sources(&[(
        "t.yaml",
        "- rule: r\n  desc: d\n  condition: evt.type = openat and fd.directory endswith /.ssh\n  output: o\n  priority: INFO\n"
            .to_string(),
    )]);
    let e = Engine::new(res.ruleset, EngineOptions::default());
    let (possible, _) = possible_and_matching(&e, &open("cat", "/dev/null", false, 3));
    assert!(possible.is_empty());
    let (possible, matching) =
        possible_and_matching(&e, &open("cat", "/root/.ssh/id_rsa", false, 3));
    assert_eq!((possible, matching), (vec![0], vec![0]));
}

#[test]
fn keys_are_parts_of_paths() {
    // text, first component, directory's name, last component
    for (text, first, dir, last) in [
        ("/etc/shadow", "etc", "etc", "shadow"),
        ("//etc//shadow", "etc", "", "shadow"),
        ("etc/shadow", "etc", "etc", "shadow"),
        ("cat", "cat", ".", "cat"),
        ("", "", ".", ""),
        ("/", "", "", ""),
        ("/x", "x", "", "x"),
        ("/etc/", "etc", "etc", ""),
        ("/root/.ssh/id_rsa.pub", "root", ".ssh", "id_rsa.pub"),
        ("/home/u/.bashrc", "home", "u", ".bashrc"),
        ("/srv/x.tar.gz", "srv", "srv", "x.tar.gz"),
        ("/a.d/x", "a.d", "a.d", "x"),
        ("/a.", "a.", "", "a."),
        ("/ETC/SHADOW", "ETC", "ETC", "SHADOW"),
    ] {
        let got = [Part::First, Part::Dir, Part::Last].map(|p| p.of(text));
        assert_eq!(got, [first, dir, last], "{text:?}");
    }
    assert_eq!(prefix_key("/etc/"), Some("etc"));
    assert_eq!(prefix_key("/etc"), None, "/etcetera starts with /etc too");
    assert_eq!(prefix_key("/"), None);
    for (prefix, want) in [
        ("/etc/", Some((Part::First, "etc"))),
        ("/etc/cron", Some((Part::First, "etc"))),
        ("/etc", None),
        ("/", None),
        ("etc/", Some((Part::First, "etc"))),
        ("/etc/cron.d/", Some((Part::Prefix, "etc/cron.d"))),
        ("//var//lib//x", Some((Part::Prefix, "var/lib"))),
        (
            "/var/lib/kubelet/pods/",
            Some((Part::Prefix, "var/lib/kubelet/pods")),
        ),
    ] {
        assert_eq!(
            leading(prefix),
            want.map(|(p, k)| (p, k.into())),
            "{prefix:?}"
        );
    }
    assert_eq!(glob_literal("/proc/[0-9]*/mem"), "/proc/");
    assert_eq!(glob_literal("\\/etc/*"), "");
    assert_eq!(glob_name("/proc/[0-9]*/mem"), Some("mem"));
    assert_eq!(glob_name("/etc/[a/]b"), None, "the / is in a class");
    assert_eq!(glob_name("*.timer"), None);
    assert_eq!(suffix_key("/.ssh"), Some(".ssh"));
    assert_eq!(suffix_key("/"), Some(""));
    assert_eq!(suffix_key(".d/x"), Some("x"));
    assert_eq!(suffix_key(".timer"), None);
}

/// The directory name and last component are what `fd.directory` and `fd.filename` give
/// (their own last component): the keys of checks on those fields are keys of `fd.name`.
#[test]
fn name_parts_are_what_the_fields_split() {
    let e = engine();
    let svc = e.services();
    let field = |n: &str| crate::fields::resolve(n, None).unwrap();
    let (name, dir, file) = (
        field("fd.name"),
        field("fd.directory"),
        field("fd.filename"),
    );
    for en in events() {
        let cache = EventCache::default();
        let ctx = Ctx::new(&en, 1, &svc, &cache);
        let text = |f: &FieldRef| ctx.extract(f).map(|v| v.text().into_owned());
        let (Some(n), Some(d), Some(f)) = (text(&name), text(&dir), text(&file)) else {
            panic!("an open names a file: {:?}", en.event);
        };
        assert_eq!(Part::Dir.of(&n), base(&d), "{n:?}");
        assert_eq!(Part::Last.of(&n), f, "{n:?}");
        assert_eq!(Part::Last.of(&f), f, "{n:?}");
        if !matches!(&*d, "/" | ".") {
            assert_eq!(Part::First.of(&n), Part::First.of(&d), "{n:?}");
        }
    }
}

/// Osprey's default rules and Falco's: opens of every path they name, by a shell and a tool
/// on the host and a web server in a container, reading, writing, failing and through `../`;
/// those paths as programs run and as unix sockets connected to; the programs their lists
/// name; the benchmark's mix. Every candidate whose condition holds is one the prefilter
/// leaves.
#[test]
fn the_rulesets_never_lose_a_match_to_the_prefilter() {
    for source in [default_rules(), upstream_path()] {
        let e = engine_on_scene(load_files(&[&source]).ruleset);
        let paths = path_corpus(std::slice::from_ref(&source));
        let names: Vec<String> = e
            .ruleset()
            .lists
            .iter()
            .flat_map(|(_, items)| items.iter().cloned())
            .collect();
        let bash = ROOT.process(10, 1, "bash", "/bin/bash", &["bash"]);
        let in_container = |p: Arc<Process>| {
            Arc::new(Process {
                cgroup_id: 7,
                ..(*p).clone()
            })
        };
        let nginx = in_container(ROOT.process(11, 1, "nginx", "/usr/sbin/nginx", &["nginx"]));
        let python = ROOT.process(12, 10, "python3", "/usr/bin/python3", &["python3"]);
        let mut events = mix();
        for p in &paths {
            for proc in [&bash, &nginx, &python] {
                for (write, ret) in [(false, 3), (true, 3), (false, -2)] {
                    events.push(ROOT.openat(
                        proc.clone(),
                        vec![bash.clone()],
                        p,
                        open_flags(write),
                        ret,
                    ));
                }
            }
            let mut up = ROOT.openat(
                nginx.clone(),
                vec![bash.clone()],
                p,
                flags(0, &["O_RDONLY"]),
                3,
            );
            if let EventKind::Syscall(sc) = &mut up.event.kind {
                sc.args[1].value = ArgValue::Path {
                    raw: format!("/srv/www/../../..{p}"),
                    resolved: Some(p.clone()),
                };
            }
            events.push(up);
            let sock = ArgValue::SockAddr(SockAddr::Unix { path: p.clone() });
            let args = vec![arg("fd", ArgValue::Fd(3)), arg("uservaddr", sock)];
            let connect = ROOT.syscall("connect", 0, args);
            events.push(ROOT.event(connect, nginx.clone(), vec![bash.clone()]));
        }
        for (i, n) in paths.iter().chain(&names).enumerate() {
            let exe = if n.starts_with('/') {
                n.clone()
            } else {
                format!("/usr/bin/{n}")
            };
            let comm: String = base(n).chars().take(15).collect();
            let arg1 = if i % 3 == 0 {
                "stratum+tcp://pool:3333"
            } else {
                "/tmp/x"
            };
            let p = ROOT.process(30, 10, &comm, &exe, &[n, "-c", arg1]);
            let p = if i % 2 == 0 { p } else { in_container(p) };
            let parent = if i % 2 == 0 { &bash } else { &nginx };
            events.push(ROOT.execve(p.clone(), vec![parent.clone(), bash.clone()]));
            let ip: IpAddr = [10, 96, 0, 1].into();
            events.push(ROOT.connect(p, vec![parent.clone()], 5, ip, 443));
        }
        let (mut checked, mut matched) = (0, 0);
        for en in &events {
            let (possible, matching) = possible_and_matching(&e, en);
            for i in &matching {
                assert!(
                    possible.contains(i),
                    "{}: candidate {i} matches but is skipped: {:?}",
                    source.display(),
                    en.event
                );
            }
            checked += possible.len();
            matched += matching.len();
        }
        assert!(
            matched > 50 && checked > 5 * matched,
            "{}: {matched} matches, {checked} evaluated",
            source.display()
        );
    }
}

/// The rules on calls through the 32-bit entry are ruled out for every other call by one test
/// of the event, and left for such a call.
#[test]
fn a_64_bit_call_skips_the_rules_on_32_bit_calls() {
    let e = engine();
    let c = |c: &str| CONDITIONS.iter().position(|x| *x == c).unwrap();
    let (any, from_64, from_64_etc, not_ia32, default_rule) = (
        c("evt.is_ia32 = true"),
        c("evt.is_ia32_from_64bit = true"),
        c("evt.is_ia32_from_64bit = true and fd.name startswith /etc/"),
        c("evt.is_ia32 = false"),
        // The default rule's shape.
        c("evt.is_ia32 = true and (evt.is_ia32_from_64bit = true or proc.is_exe_32bit = false)"),
    );
    let (possible, matching) = possible_and_matching(&e, &open("cat", "/etc/shadow", false, 3));
    for i in [any, from_64, from_64_etc, default_rule] {
        assert!(!possible.contains(&i), "{} left", CONDITIONS[i]);
    }
    assert!(matching.contains(&not_ia32));
    let shadow = |from_64bit| {
        possible_and_matching(&e, &ia32(open("cat", "/etc/shadow", false, 3), from_64bit))
    };
    let (possible, matching) = shadow(true);
    for i in [any, from_64, from_64_etc, default_rule] {
        assert!(
            possible.contains(&i) && matching.contains(&i),
            "{}",
            CONDITIONS[i]
        );
    }
    let (possible, matching) = shadow(false);
    assert!(matching.contains(&any) && !matching.contains(&from_64));
    assert!(possible.contains(&any));
}
