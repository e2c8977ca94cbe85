use std::{collections::HashMap, sync::Arc};

use agent_common::{ProfileScope, action, verdict};

use super::*;
use osprey_engine::profile::glob;
use osprey_model::Action;

fn profile(name: &str, scope: Scope, default: Action, rules: Vec<SyscallRule>) -> Profile {
    Profile {
        name: name.into(),
        desc: String::new(),
        scope,
        default,
        syscalls: rules,
        enabled: true,
        file: None,
    }
}

fn rule(names: &[&str], action: Action, args: Vec<ArgCondition>) -> SyscallRule {
    SyscallRule {
        names: names.iter().map(|s| s.to_string()).collect(),
        action,
        args,
    }
}

fn container(name: &str, image: &str) -> Arc<ContainerInfo> {
    Arc::new(ContainerInfo {
        id: "0123456789ab".into(),
        full_id: "0123456789abcdef".into(),
        name: Some(name.into()),
        image: Some(image.into()),
        ..Default::default()
    })
}

#[test]
fn compiles_verdicts_argument_rules_and_default() {
    let p = profile(
        "p",
        Scope::Host,
        Action::Alert,
        vec![
            rule(&["read", "write"], Action::Allow, vec![]),
            rule(
                &["unshare"],
                Action::Kill,
                vec![ArgCondition {
                    index: 0,
                    op: ArgOp::MaskedAny,
                    value: parse_value("CLONE_NEWUSER|CLONE_NEWNS").unwrap(),
                    mask: 0,
                }],
            ),
            rule(&["unshare"], Action::Log, vec![]),
            rule(&["read"], Action::Kill, vec![]),
        ],
    );
    let c = compile(&p).unwrap();
    assert_eq!(
        c.verdicts[0],
        action::ALLOW,
        "first plain entry wins for read"
    );
    assert_eq!(c.verdicts[1], action::ALLOW);
    assert_eq!(c.verdicts[272], action::LOG | verdict::HAS_ARGS);
    assert_eq!(c.verdicts[41], action::ALERT, "socket gets the default");
    assert_eq!(
        c.verdicts[511],
        action::ALERT,
        "numbers beyond the table too"
    );
    let r = c.args[&272];
    assert_eq!(r.nrules, 1);
    assert_eq!(r.rules[0].action, action::KILL);
    assert_eq!(r.rules[0].conds[0].value, 0x1000_0000 | 0x0002_0000);

    let bad = profile(
        "b",
        Scope::Host,
        Action::Allow,
        vec![rule(&["nope"], Action::Kill, vec![])],
    );
    assert_eq!(
        compile(&bad),
        Err(CompileError::UnknownSyscall("nope".into()))
    );
}

/// A condition on a 32-bit argument compares its low 32 bits (value cut to match); one on a
/// 64-bit argument all of them. The widths are the kernel's, from the syscalls' formats.
#[test]
fn conditions_on_narrow_arguments_compare_the_bits_the_kernel_reads() {
    let cond = |index, op, value| ArgCondition {
        index,
        op,
        value,
        mask: 0,
    };
    let p = profile(
        "w",
        Scope::Host,
        Action::Allow,
        vec![
            rule(&["socket"], Action::Kill, vec![cond(0, ArgOp::Eq, 17)]),
            rule(
                &["fchmodat"],
                Action::Kill,
                vec![cond(2, ArgOp::MaskedAny, 0x1_0800)],
            ),
            rule(
                &["unshare"],
                Action::Kill,
                vec![cond(0, ArgOp::MaskedAny, 1 << 40)],
            ),
        ],
    );
    // socket(int, int, int); fchmodat(int, const char *, umode_t); unshare(unsigned long).
    let bits = |nr: u32, index: u8| match (nr, index) {
        (41, _) => osprey_engine::profile::arg_bits("int"),
        (268, 2) => osprey_engine::profile::arg_bits("umode_t"),
        _ => osprey_engine::profile::arg_bits("unsigned long"),
    };
    let c = osprey_engine::profile::compile_with(&p, &bits).unwrap();
    let socket = c.args[&41].rules[0].conds[0];
    assert_eq!(
        socket.op,
        agent_common::arg_op::EQ | agent_common::arg_op::LOW32
    );
    assert_eq!(socket.value, 17);
    let chmod = c.args[&268].rules[0].conds[0];
    assert_eq!(
        chmod.op & agent_common::arg_op::LOW16,
        agent_common::arg_op::LOW16
    );
    assert_eq!(chmod.value, 0x0800, "cut to the 16 bits of a umode_t");
    let unshare = c.args[&272].rules[0].conds[0];
    assert_eq!(unshare.op, agent_common::arg_op::MASKED_ANY);
    assert_eq!(unshare.value, 1 << 40);
    // Unknown or pointer types are compared in full.
    assert_eq!(osprey_engine::profile::arg_bits("const char *"), 64);
    assert_eq!(osprey_engine::profile::arg_bits("size_t"), 64);
    assert_eq!(osprey_engine::profile::arg_bits("pid_t"), 32);
}

#[test]
fn values_and_globs() {
    assert_eq!(parse_value("0x10"), Ok(16));
    assert_eq!(parse_value("AF_INET | 0o10"), Ok(2 | 8));
    assert_eq!(parse_value("PTRACE_ATTACH"), Ok(16));
    assert!(
        parse_value("CLONE_BOGUS")
            .unwrap_err()
            .contains("unknown constant")
    );
    assert!(parse_value("12x").unwrap_err().contains("not a number"));
    assert!(glob("localhost/busybox:*", "localhost/busybox:test"));
    assert!(glob("*nginx*", "docker.io/library/nginx:1.27"));
    assert!(!glob("nginx*", "docker.io/library/nginx:1.27"));
    assert!(glob("a?c", "abc") && !glob("a?c", "ac"));
}

#[test]
fn scopes_match_host_and_containers() {
    let host = Arc::new(ContainerInfo::host());
    let web = container("web", "docker.io/library/nginx:1");
    assert!(Scope::Host.matches(&host) && !Scope::Host.matches(&web));
    let all = Scope::Containers(ContainerSelector::default());
    assert!(all.matches(&web) && !all.matches(&host));
    let img = Scope::Containers(ContainerSelector {
        image: Some("*nginx*".into()),
        ..Default::default()
    });
    assert!(img.matches(&web));
    assert!(!img.matches(&container("db", "postgres:16")));
    let by_name = Scope::Containers(ContainerSelector {
        container: Some("web".into()),
        ..Default::default()
    });
    let by_id = Scope::Containers(ContainerSelector {
        container: Some("0123456789ab".into()),
        ..Default::default()
    });
    assert!(by_name.matches(&web) && by_id.matches(&web));
    let ns = Scope::Containers(ContainerSelector {
        k8s_namespace: Some("prod".into()),
        ..Default::default()
    });
    assert!(!ns.matches(&web));
}

/// A backend that checks, at every step, that each scoped cgroup points at a slot whose
/// table was written and not freed: the "no window" property of live changes.
#[derive(Default)]
struct Checked {
    written: HashMap<u32, Compiled>,
    scope: HashMap<u64, u32>,
    log: Vec<String>,
}

impl Checked {
    fn check(&self) {
        for (cg, slot) in &self.scope {
            assert!(
                self.written.contains_key(slot),
                "cgroup {cg} points at unwritten slot {slot}: {:?}",
                self.log
            );
        }
    }
}

#[derive(Debug, thiserror::Error)]
#[error("never")]
struct Never;

impl Backend for Checked {
    type Error = Never;
    fn write_slot(&mut self, slot: u32, c: &Compiled) -> Result<(), Never> {
        assert!(
            !self.scope.values().any(|s| *s == slot),
            "wrote a slot in use"
        );
        self.written.insert(slot, c.clone());
        self.log.push(format!("write {slot}"));
        self.check();
        Ok(())
    }
    fn free_slot(&mut self, slot: u32, _: &Compiled) -> Result<(), Never> {
        self.written.remove(&slot);
        self.log.push(format!("free {slot}"));
        self.check();
        Ok(())
    }
    fn set_scope(&mut self, cgroup: u64, s: ProfileScope) -> Result<(), Never> {
        self.scope.insert(cgroup, s.slot);
        self.log.push(format!("scope {cgroup}={}", s.slot));
        self.check();
        Ok(())
    }
    fn remove_scope(&mut self, cgroup: u64) -> Result<(), Never> {
        self.scope.remove(&cgroup);
        self.log.push(format!("unscope {cgroup}"));
        Ok(())
    }
}

#[test]
fn apply_profiles_changes_live_without_a_window() {
    let mut set = ProfileSet::new(Checked::default());
    let kill_sock = |action| {
        profile(
            "web",
            Scope::Containers(ContainerSelector {
                image: Some("*nginx*".into()),
                ..Default::default()
            }),
            Action::Allow,
            vec![rule(&["socket"], action, vec![])],
        )
    };
    let host = profile(
        "host",
        Scope::Host,
        Action::Allow,
        vec![rule(&["kexec_load"], Action::Alert, vec![])],
    );
    set.apply_profiles(&[kill_sock(Action::Alert), host.clone()])
        .unwrap();
    set.observe(10, container("web", "nginx:1")).unwrap();
    set.observe(11, container("db", "postgres")).unwrap();
    set.observe(1, Arc::new(ContainerInfo::host())).unwrap();
    let b = set.backend();
    let web_slot = b.scope[&10];
    let host_slot = b.scope[&1];
    assert!(!b.scope.contains_key(&11), "db is in no scope");
    assert_eq!(b.written[&web_slot].verdicts[41], action::ALERT);
    assert_eq!(set.profile_of_slot(web_slot).unwrap().name, "web");

    // Change web's action: a new slot is written, cgroup 10 flips to it, the old slot is freed;
    // the unchanged host profile keeps its slot.
    set.apply_profiles(&[kill_sock(Action::Kill), host.clone()])
        .unwrap();
    let b = set.backend();
    let new_slot = b.scope[&10];
    assert_ne!(new_slot, web_slot);
    assert_eq!(b.written[&new_slot].verdicts[41], action::KILL);
    assert!(!b.written.contains_key(&web_slot), "old slot freed");
    assert_eq!(b.scope[&1], host_slot);
    let log = b.log.join(", ");
    let w = log.find(&format!("write {new_slot}")).unwrap();
    let s = log.find(&format!("scope 10={new_slot}")).unwrap();
    let f = log.find(&format!("free {web_slot}")).unwrap();
    assert!(w < s && s < f, "write, flip, free: {log}");
    // Events still in flight from the old slot keep their profile's name.
    assert_eq!(set.profile_of_slot(web_slot).unwrap().name, "web");

    // Removing the web profile takes cgroup 10 out of scope; disabled profiles load nothing.
    let mut off = kill_sock(Action::Kill);
    off.enabled = false;
    set.apply_profiles(&[off, host]).unwrap();
    assert!(!set.backend().scope.contains_key(&10));
    assert!(set.backend().scope.contains_key(&1));

    // Gone cgroups are forgotten.
    set.retain(|c| c != 1).unwrap();
    assert!(!set.backend().scope.contains_key(&1));
}

#[test]
fn a_bad_profile_changes_nothing() {
    let mut set = ProfileSet::new(Checked::default());
    let good = profile("a", Scope::Host, Action::Alert, vec![]);
    set.apply_profiles(std::slice::from_ref(&good)).unwrap();
    set.observe(1, Arc::new(ContainerInfo::host())).unwrap();
    let before = set.backend().scope.clone();
    let bad = profile(
        "a",
        Scope::Host,
        Action::Kill,
        vec![rule(&["bogus"], Action::Kill, vec![])],
    );
    assert!(set.apply_profiles(&[bad]).is_err());
    assert_eq!(set.backend().scope, before);
    assert_eq!(set.profiles().count(), 1);
}

#[test]
fn imports_the_containers_seccomp_profile() {
    let json = r#"{"defaultAction":"SCMP_ACT_ERRNO","syscalls":[
        {"names":["read","write","_llseek"],"action":"SCMP_ACT_ALLOW"},
        {"names":["personality"],"action":"SCMP_ACT_ALLOW","args":[{"index":0,"value":8,"op":"SCMP_CMP_EQ"}]},
        {"names":["clone"],"action":"SCMP_ACT_ALLOW","args":[{"index":0,"value":2114060288,"valueTwo":0,"op":"SCMP_CMP_MASKED_EQ"}]},
        {"names":["bpf"],"action":"SCMP_ACT_ALLOW","includes":{"caps":["CAP_SYS_ADMIN"]}},
        {"names":["arch_prctl"],"action":"SCMP_ACT_ALLOW","includes":{"arches":["amd64"]}},
        {"names":["sync_file_range2"],"action":"SCMP_ACT_ALLOW","includes":{"arches":["ppc64le"]}}]}"#;
    let o = oci::ImportOptions {
        name: "imported".into(),
        mode: oci::Mode::Audit,
        scope: Scope::Containers(ContainerSelector::default()),
        caps: oci::DEFAULT_CAPS.iter().map(|s| s.to_string()).collect(),
        kernel: (6, 18),
    };
    let (p, report) = oci::import(json, &o).unwrap();
    assert_eq!(p.default, Action::Alert);
    assert!(report.foreign_names.contains("_llseek"));
    assert_eq!(
        report.skipped_entries, 2,
        "bpf without CAP_SYS_ADMIN, ppc64le"
    );
    let c = compile(&p).unwrap();
    assert_eq!(c.verdicts[0], action::ALLOW);
    assert_eq!(c.verdicts[158], action::ALLOW, "arch_prctl on amd64");
    assert_eq!(c.verdicts[321], action::ALERT, "bpf is denied: alert");
    assert_eq!(c.verdicts[56] & verdict::HAS_ARGS, verdict::HAS_ARGS);
    let clone = c.args[&56].rules[0].conds[0];
    assert_eq!((clone.mask, clone.value), (2114060288, 0));
    // The YAML loads back as the same profile.
    let yaml = oci::to_yaml(&p);
    let res = osprey_engine::rules::load_sources(&[("imported.yaml", yaml.as_str())]);
    assert!(
        res.is_ok(),
        "{yaml}\n{:?}",
        res.errors().collect::<Vec<_>>()
    );
    let back = &res.ruleset.profiles[0];
    assert_eq!(back.syscalls, p.syscalls);
    assert_eq!(back.default, p.default);
    let enforce = oci::ImportOptions {
        mode: oci::Mode::Enforce,
        ..o
    };
    assert_eq!(oci::import(json, &enforce).unwrap().0.default, Action::Kill);
}

#[test]
fn the_debian_containers_profile_imports_and_compiles() {
    let Ok(json) = std::fs::read_to_string("/usr/share/containers/seccomp.json") else {
        // containers-common is a test dependency that `cargo xtask test` installs; without
        // it there is nothing to import.
        panic!("/usr/share/containers/seccomp.json is missing: run `cargo xtask setup`");
    };
    let o = oci::ImportOptions {
        name: "containers-default".into(),
        mode: oci::Mode::Audit,
        scope: Scope::Containers(ContainerSelector::default()),
        caps: oci::DEFAULT_CAPS.iter().map(|s| s.to_string()).collect(),
        kernel: (6, 18),
    };
    let (p, _) = oci::import(&json, &o).unwrap();
    let c = compile(&p).unwrap();
    let nr = |n| osprey_model::syscalls::number(n).unwrap() as usize;
    assert_eq!(c.verdicts[nr("read")], action::ALLOW);
    assert_eq!(c.verdicts[nr("keyctl")] & 0xff, action::ALLOW);
    assert_eq!(c.verdicts[nr("kexec_load")], action::ALERT);
    assert_eq!(
        c.verdicts[nr("unshare")],
        action::ALLOW,
        "podman's profile allows it"
    );
    assert_eq!(
        c.verdicts[nr("add_key")],
        action::ALERT,
        "listed nowhere: the default"
    );
    assert_eq!(
        c.verdicts[nr("clock_settime")],
        action::ALERT,
        "needs CAP_SYS_TIME"
    );
    assert_ne!(c.verdicts[nr("socket")] & verdict::HAS_ARGS, 0);
}

#[test]
fn profile_items_load_with_rules_and_errors_have_positions() {
    let ok = "- profile: p\n  scope: {image: \"nginx*\", pod_labels: {app: web}}\n  default: log\n  syscalls:\n    - names: [unshare]\n      action: kill\n      args:\n        - {index: 0, op: masked_any, value: CLONE_NEWUSER}\n";
    let res = osprey_engine::rules::load_sources(&[("p.yaml", ok)]);
    assert!(res.is_ok(), "{:?}", res.errors().collect::<Vec<_>>());
    let p = &res.ruleset.profiles[0];
    assert_eq!(p.default, Action::Log);
    assert_eq!(p.syscalls[0].args[0].value, 0x1000_0000);
    assert_eq!(p.file.as_ref().map(|f| f.line), Some(1));

    let cases: &[(&str, &str, &str)] = &[
        (
            "- profile: p\n  scope: host\n  syscalls:\n    - names: [unshare, nosuchcall]\n      action: kill\n",
            "nosuchcall",
            "Unknown syscall 'nosuchcall'",
        ),
        (
            "- profile: p\n  scope: host\n  default: explode\n",
            "explode",
            "Invalid action 'explode'",
        ),
        (
            "- profile: p\n  scope: {containers: all}\n  syscalls:\n    - names: [clone]\n      action: kill\n      args: [{index: 0, op: masked_any, value: CLONE_NOPE}]\n",
            "CLONE_NOPE",
            "unknown constant 'CLONE_NOPE'",
        ),
        (
            "- profile: p\n  scope: {host: true, image: x}\n",
            "host: true",
            "either 'host: true' or containers",
        ),
        (
            "- profile: p\n  scope: {colour: red}\n",
            "colour",
            "Unknown scope key 'colour'",
        ),
        (
            "- profile: p\n  default: kill\n",
            "profile: p",
            "no mapping for key 'scope'",
        ),
        (
            "- profile: p\n  scope: host\n  syscalls:\n    - names: [clone]\n      action: kill\n      args: [{index: 7, op: eq, value: 1}]\n",
            "7, op",
            "argument index 0..5",
        ),
    ];
    // Each error points at the token named in the case: its line and column in the file.
    for (text, token, msg) in cases {
        let off = text.find(token).unwrap();
        let line = text[..off].matches('\n').count() + 1;
        let col = off - text[..off].rfind('\n').map_or(0, |i| i + 1) + 1;
        let at = format!("p.yaml:{line}:{col}");
        let res = osprey_engine::rules::load_sources(&[("p.yaml", *text)]);
        let errs: Vec<_> = res.errors().collect();
        assert_eq!(errs.len(), 1, "{text}: {errs:?}");
        assert_eq!(errs[0].at(), at, "{text}: {}", errs[0].message);
        assert!(errs[0].message.contains(msg), "{}", errs[0].message);
        assert!(res.ruleset.profiles.is_empty());
    }
}
