use std::{collections::HashMap, sync::Arc};

use agent_common::open_filter::{CLASSES, class, class_flags};
use osprey_model::{
    Process,
    event::{ArgValue, Enriched},
    syscalls::flags::push_open_flag_names,
};

use super::*;
use crate::{
    Engine,
    rules::{load_files, load_sources},
    testing::{ROOT, arg, default_rules, path},
};

const O_WRONLY: u64 = 1;
const O_RDWR: u64 = 2;
const O_CREAT: u64 = 0o100;
const O_TRUNC: u64 = 0o1000;
const O_DIRECTORY: u64 = 0o200000;
const O_CLOEXEC: u64 = 0o2000000;

use crate::tests::{engine_on_scene as engine_of, path_corpus};

fn engine(conditions: &[&str]) -> Engine {
    let mut src = String::new();
    for (i, c) in conditions.iter().enumerate() {
        src.push_str(&format!(
            "- rule: r{i}\n  desc: d\n  condition: {}\n  output: o\n  priority: INFO\n",
            serde_json::to_string(c).unwrap()
        ));
    }
    let res = load_sources(&[("t.yaml", src)]);
    assert!(
        res.is_ok(),
        "{:?}",
        res.errors().map(|e| &e.message).collect::<Vec<_>>()
    );
    engine_of(res.ruleset)
}

fn names(v: &[&str]) -> Names {
    v.iter().map(|s| key_name(s.as_bytes())).collect()
}

/// The name set of a succeeding `openat` with `flags`, which must be judged on names.
fn keys_of(f: &KernelFilter, flags: u64) -> &PathKeys {
    match verdict(f, "openat", true, flags) {
        Verdict::Keys(i) => &f.sets[i],
        v => panic!("{v:?}"),
    }
}

fn verdict(f: &KernelFilter, syscall: &str, ok: bool, flags: u64) -> Verdict {
    let slot = open_filter::SYSCALLS
        .iter()
        .position(|s| *s == syscall)
        .unwrap();
    f.verdicts[slot][class(ok, flags) as usize].clone()
}

const OPEN_READ: &str =
    "evt.type in (open, openat, openat2) and evt.is_open_read=true and fd.num>=0";
const OPEN_WRITE: &str =
    "evt.type in (open, openat, openat2, creat) and evt.is_open_write=true and fd.num>=0";

#[test]
fn a_read_rule_on_paths_keeps_reads_of_those_paths_only() {
    let f = engine(&[&format!(
        "{OPEN_READ} and (fd.name startswith /etc/ or fd.directory endswith /.ssh or fd.filename in (id_rsa, id_ed25519))"
    )])
    .kernel_filter();
    let Verdict::Keys(i) = verdict(&f, "openat", true, 0) else {
        panic!("{:?}", verdict(&f, "openat", true, 0));
    };
    assert_eq!(
        *keys_of(&f, 0),
        PathKeys {
            top: names(&["etc"]),
            parent: names(&[".ssh"]),
            leaf: names(&["id_ed25519", "id_rsa"]),
        }
    );
    // Untracked flags do not change the class.
    assert_eq!(verdict(&f, "openat", true, O_CLOEXEC), Verdict::Keys(i));
    assert_eq!(verdict(&f, "openat", true, O_RDWR), Verdict::Keys(i));
    // Not a read, or failed (fd.num is -1): no rule can match.
    assert_eq!(verdict(&f, "openat", true, O_WRONLY), Verdict::Drop);
    assert_eq!(verdict(&f, "openat", false, 0), Verdict::Drop);
    assert_eq!(verdict(&f, "creat", true, 0), Verdict::Drop);
    assert!(f.captures("openat", true, 0, "/etc/shadow"));
    assert!(f.captures("openat", true, 0, "/home/u/.ssh/config"));
    assert!(f.captures("openat", true, 0, "/srv/keys/id_rsa"));
    assert!(!f.captures("openat", true, 0, "/dev/null"));
    assert!(!f.captures("openat", true, 0, "/ssh/x"));
    assert!(!f.captures("openat", true, 0, "/"));
}

#[test]
fn flags_by_name_decide_the_class() {
    let f = engine(&[&format!(
        "{OPEN_WRITE} and evt.arg.flags contains O_TRUNC and fd.name pmatch (/var/log)"
    )])
    .kernel_filter();
    assert!(matches!(
        verdict(&f, "openat", true, O_WRONLY | O_TRUNC),
        Verdict::Keys(_)
    ));
    assert_eq!(verdict(&f, "openat", true, O_WRONLY), Verdict::Drop);
    assert_eq!(verdict(&f, "openat", true, O_TRUNC), Verdict::Drop); // read-only
    // creat has no flags argument: `evt.arg.flags` is unset for it, so the rule never
    // matches a creat (its truncation included).
    assert_eq!(verdict(&f, "creat", true, 0), Verdict::Drop);
    assert!(f.captures("openat", true, O_WRONLY | O_TRUNC, "/var/log/syslog"));
    assert!(!f.captures("openat", true, O_WRONLY | O_TRUNC, "/tmp/syslog"));
}

#[test]
fn what_the_derivation_cannot_bound_passes() {
    for cond in [
        "proc.name = cat",
        "evt.type = openat and not fd.name startswith /etc/",
        "evt.type = openat and fd.name endswith log",
        "evt.type = openat and fd.name contains id_rsa",
        "evt.type = openat and fd.directory = /",
        "evt.type = openat and fd.directory pmatch (/)",
        "evt.type = openat and evt.arg.flags contains O_CLOEXEC and fd.name startswith /etc/x",
        "evt.type = openat and (fd.name startswith /etc/ or proc.name = cat)",
        "evt.type = openat and toupper(fd.name) startswith /ETC/",
        "evt.type = openat and fd.name icontains /etc/",
    ] {
        let f = engine(&[cond]).kernel_filter();
        for flags in [0, O_WRONLY | O_CREAT, O_CLOEXEC] {
            match verdict(&f, "openat", true, flags) {
                // The last but one: /etc/x only, or any path when O_CLOEXEC (undecided)...
                Verdict::Keys(i) if cond.contains("O_CLOEXEC") => {
                    assert_eq!(f.sets[i].top, names(&["etc"]), "{cond}");
                }
                v => assert_eq!(v, Verdict::Pass, "{cond} {flags:o}"),
            }
        }
    }
}

#[test]
fn a_failed_open_is_judged_by_what_it_asked_for_so_paths_do_not_filter_it() {
    let f = engine(&["evt.type = openat and evt.res != SUCCESS and fd.name startswith /etc/"])
        .kernel_filter();
    assert_eq!(verdict(&f, "openat", false, 0), Verdict::Pass);
    assert_eq!(verdict(&f, "openat", true, 0), Verdict::Drop);
    let f = engine(&["evt.type = openat and evt.rawres < 0"]).kernel_filter();
    assert_eq!(verdict(&f, "openat", false, 0), Verdict::Pass);
    assert_eq!(verdict(&f, "openat", true, 0), Verdict::Drop);
    let f = engine(&["evt.type = openat and fd.num = 5"]).kernel_filter();
    assert_eq!(verdict(&f, "openat", false, 0), Verdict::Drop);
    assert_eq!(verdict(&f, "openat", true, 0), Verdict::Pass);
}

#[test]
fn an_and_keeps_its_narrowest_side_and_intersects_one_component() {
    let f = engine(&[
        // A prefix (all of /etc) and exact names: the file names.
        "evt.type = openat and fd.name startswith /etc/ and fd.name in (/etc/shadow, /root/x)",
        // Two first components that cannot both hold: nothing.
        "evt.type = openat and fd.name startswith /etc/ and fd.name startswith /tmp/",
        // Two prefixes sharing one: that one.
        "evt.type = openat and fd.name pmatch (/var/log, /srv) and fd.name startswith /var/",
    ])
    .kernel_filter();
    assert_eq!(
        *keys_of(&f, 0),
        PathKeys {
            top: names(&["var"]),
            parent: Names::new(),
            leaf: names(&["shadow", "x"]),
        }
    );
    assert!(f.captures("openat", true, 0, "/etc/shadow"));
    assert!(!f.captures("openat", true, 0, "/etc/passwd"));
    assert!(!f.captures("openat", true, 0, "/tmp/y"));
}

#[test]
fn exact_names_pin_the_file_name_and_directories_the_directory_name() {
    let f = engine(&[
        "evt.type = openat and (fd.name = /etc/shadow or fd.directory in (/etc/sudoers.d, /x/pam.d))",
        "evt.type = openat and fd.name glob /proc/*/mem",
        "evt.type = openat and fd.name glob /etc/*.keytab",
    ])
    .kernel_filter();
    assert_eq!(
        *keys_of(&f, 0),
        PathKeys {
            // `*` may match `/`: a glob's last component pins the name only when literal.
            top: names(&["etc"]),
            parent: names(&["pam.d", "sudoers.d"]),
            leaf: names(&["mem", "shadow"]),
        }
    );
    assert!(f.captures("openat", true, 0, "/proc/1/task/2/mem"));
    assert!(f.captures("openat", true, 0, "/etc/a/b.keytab"));
    assert!(!f.captures("openat", true, 0, "/proc/1/stat"));
}

#[test]
fn a_slash_inside_a_glob_class_pins_no_file_name() {
    // `[a/]b` matches `/b`, whose file name is `b`, not the `]b` after the pattern's last `/`.
    let f = engine(&["evt.type = openat and fd.name glob \"/x[a/]b\""]).kernel_filter();
    assert!(crate::compile::glob_match("/x[a/]b", "/x/b"));
    assert!(f.captures("openat", true, 0, "/x/b"));
    assert!(f.captures("openat", true, 0, "/xab"));
}

#[test]
fn long_and_odd_names_compare_as_the_kernel_compares_them() {
    let long = "a".repeat(40);
    let f = engine(&[&format!("evt.type = openat and fd.filename = {long}")]).kernel_filter();
    // Cut to 31 bytes: a name sharing those bytes passes too (more, never less).
    assert!(f.captures("openat", true, 0, &format!("/x/{long}")));
    assert!(f.captures("openat", true, 0, &format!("/x/{}b", "a".repeat(35))));
    assert!(!f.captures("openat", true, 0, "/x/aaaa"));
    // A key with U+FFFD could be a name that is not UTF-8: any path.
    let f = engine(&["evt.type = openat and fd.filename = a\u{fffd}b"]).kernel_filter();
    assert_eq!(verdict(&f, "openat", true, 0), Verdict::Pass);
}

#[test]
fn the_default_rules_pass_over_reads_of_dev_null_and_libraries() {
    let res = load_files(&[default_rules()]);
    assert!(res.is_ok());
    let f = engine_of(res.ruleset).kernel_filter();
    // (A read below /tmp is kept: the credential-store rule watches /tmp/krb5cc_*.)
    for p in [
        "/dev/null",
        "/usr/lib/x86_64-linux-gnu/libc.so.6",
        "/srv/build/a.c",
    ] {
        assert!(!f.captures("openat", true, O_CLOEXEC, p), "{p}");
    }
    for p in [
        "/etc/shadow",
        "/root/.ssh/id_rsa",
        "/home/u/.ssh/id_ed25519",
    ] {
        assert!(f.captures("openat", true, O_CLOEXEC, p), "{p}");
    }
    let (drop, keys, pass) = f.counts();
    assert!(drop > 0 && keys > 0, "{drop} {keys} {pass}");
}

fn open_event(
    syscall: &'static str,
    p: Arc<Process>,
    file: &str,
    flags: u64,
    ret: i64,
) -> Enriched {
    let mut names = Vec::new();
    push_open_flag_names(&mut names, flags);
    let flags = ArgValue::Flags { raw: flags, names };
    let mode = arg("mode", ArgValue::Mode(0o755));
    let args = match syscall {
        "openat" => vec![
            arg("dfd", ArgValue::Fd(-100)),
            arg("filename", path(file)),
            arg("flags", flags),
            mode,
        ],
        "open" => vec![arg("filename", path(file)), arg("flags", flags), mode],
        _ => vec![arg("pathname", path(file)), mode],
    };
    let parent = ROOT.process(10, 1, "bash", "/bin/bash", &["bash"]);
    ROOT.event(ROOT.syscall(syscall, ret, args), p, vec![parent])
}

/// Each program (comm, exe) as a host process and as one in a container (cgroup 7).
fn on_host_and_in_a_container(programs: &[(&str, &str)]) -> Vec<Arc<Process>> {
    programs
        .iter()
        .flat_map(|(c, e)| {
            let p = ROOT.process(30, 10, c, e, &[c]);
            let in_ctr = Arc::new(Process {
                cgroup_id: 7,
                ..(*p).clone()
            });
            [p, in_ctr]
        })
        .collect()
}

/// Replays opens of every path the rules name, in a spread of classes, by a shell, a web
/// server and a tool, on the host and in a container: every open some rule matches must be
/// one the filter captures, and one the filter of that rule alone captures (so that another
/// rule's names do not hide a wrong derivation).
fn replay_is_sound(sources: &[std::path::PathBuf]) {
    let res = load_files(sources);
    let ruleset = res.ruleset;
    let alone: HashMap<String, KernelFilter> = ruleset
        .rules
        .iter()
        .enumerate()
        .filter(|(_, r)| r.enabled)
        .map(|(i, r)| {
            let mut only = crate::rules::Ruleset {
                rules: ruleset.rules.clone(),
                ..Default::default()
            };
            for (j, o) in only.rules.iter_mut().enumerate() {
                o.enabled = i == j;
            }
            (r.name.clone(), engine_of(only).kernel_filter())
        })
        .collect();
    let engine = engine_of(ruleset);
    let f = engine.kernel_filter();
    let paths = path_corpus(sources);
    let procs = on_host_and_in_a_container(&[
        ("bash", "/bin/bash"),
        ("nginx", "/usr/sbin/nginx"),
        ("python3", "/usr/bin/python3"),
    ]);
    // A spread of classes (a fixed pseudo-random sample), with flags a class does not
    // record mixed in.
    let untracked = [0, O_CLOEXEC, 0o4000, 0o400000, 0o4010000, 0o1000000];
    let mut seed = 0x9e37_79b9_u64;
    let mut classes: Vec<u32> = vec![
        class(true, 0),
        class(true, O_WRONLY | O_CREAT | O_TRUNC),
        class(true, O_RDWR),
        class(true, O_DIRECTORY),
        class(false, 0),
        class(false, O_WRONLY | O_CREAT),
    ];
    for _ in 0..18 {
        seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        classes.push((seed >> 33) as u32 % CLASSES);
    }
    let (mut matched, mut dropped) = (0usize, 0usize);
    for syscall in ["openat", "open", "creat"] {
        for &c in &classes {
            let ok = c & 1 != 0;
            for (n, file) in paths.iter().enumerate() {
                let flags = class_flags(c) | untracked[n % untracked.len()];
                let flags = if syscall == "creat" { 0 } else { flags };
                let captured = f.captures(syscall, ok, flags, file);
                if !captured {
                    dropped += 1;
                }
                for p in &procs {
                    let ev = open_event(syscall, p.clone(), file, flags, if ok { 3 } else { -2 });
                    let hits = engine.evaluate(&ev);
                    if !hits.is_empty() {
                        matched += 1;
                        assert!(
                            captured,
                            "{syscall} of {file} (flags {flags:o}, ok {ok}) by {} matches {:?}, but the kernel filter passes over it",
                            p.comm,
                            hits.iter().map(|a| &a.rule).collect::<Vec<_>>()
                        );
                    }
                    for hit in &hits {
                        assert!(
                            alone[&*hit.rule].captures(syscall, ok, flags, file),
                            "{syscall} of {file} (flags {flags:o}, ok {ok}) by {} matches {:?}, but that rule's own filter passes over it",
                            p.comm,
                            hit.rule
                        );
                    }
                }
            }
        }
    }
    // The replay is worth something only if rules matched and the filter dropped things.
    assert!(matched > 100 && dropped > 1000, "{matched} {dropped}");
}

#[test]
fn the_default_rules_filter_passes_every_open_they_match() {
    replay_is_sound(&[default_rules()]);
}

#[test]
fn falco_upstream_rules_filter_passes_every_open_they_match() {
    replay_is_sound(&[crate::tests::upstream_path()]);
}

/// A filtered call's event as the decoder makes it: fcntl's command from the low 32 bits of
/// its register, the others' protection named by its bits.
fn call_event(call: &'static str, p: Arc<Process>, ret: i64, value: u64) -> Enriched {
    use osprey_model::syscalls::flags::{FCNTL_COMMANDS, PROT_FLAGS, push_flag_names};
    let args = if call != "fcntl" {
        let mut names = Vec::new();
        push_flag_names(&mut names, value, PROT_FLAGS);
        let prot = arg("prot", ArgValue::Flags { raw: value, names });
        let len = arg("len", ArgValue::Int(4096));
        match call {
            "mmap" => vec![
                arg("addr", ArgValue::Ptr(0)),
                len,
                prot,
                arg("flags", ArgValue::Int(0x22)),
                arg("fd", ArgValue::Fd(-1)),
                arg("off", ArgValue::Int(0)),
            ],
            _ => vec![arg("start", ArgValue::Ptr(0x7f00_0000_0000)), len, prot],
        }
    } else {
        let raw = value as u32 as i32 as i64;
        let name = FCNTL_COMMANDS
            .iter()
            .find(|(v, _)| *v == raw)
            .map(|(_, n)| std::borrow::Cow::Borrowed(*n));
        vec![
            arg("fd", ArgValue::Fd(3)),
            arg("cmd", ArgValue::Enum { raw, name }),
            arg("arg", ArgValue::Int(0)),
        ]
    };
    let parent = ROOT.process(10, 1, "bash", "/bin/bash", &["bash"]);
    ROOT.event(ROOT.syscall(call, ret, args), p, vec![parent])
}

/// (ret, value) pairs of every class of each call, with bits and results a class does not
/// record mixed in: high bits above fcntl's 32-bit command, PROT_GROWSDOWN, F_GETOWN's
/// negative process group.
fn call_samples(call: &str) -> Vec<(i64, u64)> {
    let mut out = Vec::new();
    if call != "fcntl" {
        for prot in 0..8u64 {
            for extra in [0, 0x0100_0000] {
                for ret in [0, -12, -1] {
                    out.push((ret, prot | extra));
                }
            }
        }
    } else {
        for cmd in [
            0u64,
            1,
            2,
            3,
            4,
            5,
            1030,
            1 << 32,
            (1 << 32) | 1030,
            0xffff_ffff,
        ] {
            for ret in [0, 1, 2, 3, 10, -9, -4095, -5000] {
                out.push((ret, cmd));
            }
        }
    }
    out
}

/// The calls a rule set matches, replayed over every class by a shell and a JIT on the host
/// and in a container: each match must be one the kernel captures.
fn calls_replay_is_sound(engine: &Engine, f: &KernelFilter) -> (usize, usize) {
    let procs =
        on_host_and_in_a_container(&[("bash", "/bin/bash"), ("python3", "/usr/bin/python3")]);
    let (mut matched, mut dropped) = (0, 0);
    for call in open_filter::CALLS {
        for (ret, value) in call_samples(call) {
            let captured = f.captures_call(call, ret, value);
            dropped += usize::from(!captured);
            for p in &procs {
                let hits = engine.evaluate(&call_event(call, p.clone(), ret, value));
                if !hits.is_empty() {
                    matched += 1;
                    assert!(
                        captured,
                        "{call} (ret {ret}, argument {value:#x}) by {} matches {:?}, but the kernel filter passes over it",
                        p.comm,
                        hits.iter().map(|a| &a.rule).collect::<Vec<_>>()
                    );
                }
            }
        }
    }
    (matched, dropped)
}

#[test]
fn calls_are_kept_by_their_argument_and_result() {
    let f = engine(&[
        "evt.type=mprotect and evt.res=SUCCESS and evt.arg.prot contains PROT_EXEC \
         and evt.arg.prot contains PROT_WRITE",
        "evt.type=fcntl and evt.arg.cmd in (F_DUPFD, F_DUPFD_CLOEXEC) and evt.res=SUCCESS \
         and evt.rawres in (0, 1, 2)",
    ])
    .kernel_filter();
    let m = |ret, prot| f.captures_call("mprotect", ret, prot);
    assert!(m(0, 7) && m(0, 6) && m(0, 0x0100_0006));
    assert!(!m(0, 5) && !m(0, 3) && !m(0, 0) && !m(-13, 6));
    let c = |ret, cmd| f.captures_call("fcntl", ret, cmd);
    assert!(c(1, 0) && c(0, 1030) && c(2, 1 << 32));
    // A result above stderr, another command, a failure.
    assert!(!c(5, 0) && !c(0, 4) && !c(0, 3) && !c(-9, 0) && !c(0, 2));
    // Other syscalls are not the filter's.
    assert!(f.captures_call("dup2", 5, 0));

    // What the class cannot tell apart is captured: another command by name or number, a
    // protection bit it does not record, anything about the process, a negative success.
    for (cond, ret, value) in [
        ("evt.type=fcntl and evt.arg.cmd=F_GETFL", 0, 3u64),
        ("evt.type=fcntl and evt.rawarg.cmd=4", 0, 4),
        ("evt.type=fcntl and evt.arg.cmd != F_DUPFD", 0, 4),
        (
            "evt.type=fcntl and evt.res=SUCCESS and evt.rawres < 0",
            -5000,
            9,
        ),
        (
            "evt.type=mprotect and evt.arg.prot contains PROT_GROWSDOWN",
            0,
            0x0100_0000,
        ),
        ("evt.type=mprotect and proc.name=java", -1, 0),
    ] {
        let f = engine(&[cond]).kernel_filter();
        assert!(f.captures_call(call_of(cond), ret, value), "{cond}");
    }
    // ...and what it can is not: F_DUPFD is not "another command", a success is not EBADF.
    let f = engine(&["evt.type=fcntl and evt.arg.cmd != F_DUPFD"]).kernel_filter();
    assert!(!f.captures_call("fcntl", 0, 0) && f.captures_call("fcntl", 0, 1030));
    let f = engine(&["evt.type=mprotect and evt.res=EACCES"]).kernel_filter();
    assert!(!f.captures_call("mprotect", 0, 7) && f.captures_call("mprotect", -13, 7));
}

fn call_of(cond: &str) -> &'static str {
    if cond.contains("mprotect") {
        "mprotect"
    } else {
        "fcntl"
    }
}

#[test]
fn the_rules_filters_capture_every_call_they_match() {
    let e = engine_of(load_files(&[default_rules()]).ruleset);
    let (matched, dropped) = calls_replay_is_sound(&e, &e.kernel_filter());
    // The W^X rule matches in a container; most classes of both calls go.
    assert!(matched > 0 && dropped > 100, "{matched} {dropped}");
    let e = engine_of(load_files(&[crate::tests::upstream_path()]).ruleset);
    calls_replay_is_sound(&e, &e.kernel_filter());
    let e = engine(&[
        "evt.type=fcntl and evt.arg.cmd in (F_DUPFD, F_DUPFD_CLOEXEC) and evt.res=SUCCESS \
         and evt.rawres in (0, 1, 2)",
        "evt.type=fcntl and evt.arg.cmd=F_SETFL and proc.name=bash",
        "evt.type=mprotect and evt.arg.prot contains PROT_EXEC and evt.rawres=0",
    ]);
    let (matched, _) = calls_replay_is_sound(&e, &e.kernel_filter());
    assert!(matched > 50, "{matched}");
}

/// The kernel passes every call made through the 32-bit entry without judging it, so a rule
/// that needs one constrains none of the calls it judges: the default rule on them names opens
/// and mprotects without capturing every 64-bit one.
#[test]
fn a_rule_on_32_bit_calls_from_64_bit_code_keeps_no_class() {
    for cond in [
        "evt.is_ia32_from_64bit = true and evt.type in (openat, mprotect)",
        "evt.is_ia32 = true and proc.is_exe_32bit = false and evt.type in (openat, mprotect)",
    ] {
        let f = engine(&[cond]).kernel_filter();
        for ok in [true, false] {
            for flags in [0, O_WRONLY | O_TRUNC] {
                assert_eq!(verdict(&f, "openat", ok, flags), Verdict::Drop, "{cond}");
            }
        }
    }
    // Without the check, the same rule keeps them all.
    let f = engine(&["evt.type in (openat, mprotect)"]).kernel_filter();
    assert_eq!(verdict(&f, "openat", true, 0), Verdict::Pass);
    // Negated, it is every 64-bit call.
    let f = engine(&["evt.is_ia32_from_64bit = false and evt.type = openat"]).kernel_filter();
    assert_eq!(verdict(&f, "openat", true, 0), Verdict::Pass);
}
