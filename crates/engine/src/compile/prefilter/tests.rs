//! The prefilter never skips a rule whose condition holds, and does skip the rules an
//! ordinary open cannot match.

use std::cell::Cell;

use super::*;
use crate::{
    Engine, EngineOptions, RuleMatching,
    fields::EventCache,
    rules::load_sources,
    testing::{ROOT, flags},
};
use osprey_model::event::Enriched;

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
    out
}

/// The candidates the prefilter leaves for `en`, and those whose condition holds.
fn possible_and_matching(e: &Engine, en: &Enriched) -> (Vec<usize>, Vec<usize>) {
    let cands = &e.by_type["openat"];
    let svc = e.services();
    let cache = EventCache::default();
    let memo = vec![Cell::new(0); e.memo_slots];
    let ctx = Ctx::new(en, 1, &svc, &cache).with_memo(&memo);
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
    ] {
        assert!(skipped.contains(&c), "{c} not skipped");
    }
    for c in [
        "not fd.name in (/dev/null, /etc/passwd)",
        "fd.name startswith /et",
        "fd.name glob '*shadow'",
        "fd.name = /dev/null or proc.name = cat",
        "tolower(fd.name) = /etc/shadow",
    ] {
        assert!(!skipped.contains(&c), "{c} skipped");
    }
    assert!(matching.iter().all(|i| possible.contains(i)));
}

#[test]
fn keys_are_first_path_components() {
    assert_eq!(key("/etc/shadow"), "etc");
    assert_eq!(key("//etc//shadow"), "etc");
    assert_eq!(key("etc/shadow"), "etc");
    assert_eq!(key("cat"), "cat");
    assert_eq!(key("/"), "");
    assert_eq!(prefix_key("/etc/"), Some("etc"));
    assert_eq!(prefix_key("/etc"), None, "/etcetera starts with /etc too");
    assert_eq!(prefix_key("/"), None);
    assert_eq!(glob_literal("/proc/[0-9]*/mem"), "/proc/");
    assert_eq!(glob_literal("\\/etc/*"), "");
}
