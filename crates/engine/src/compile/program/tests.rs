//! A program judges what its tree judges: the same result, and the same checks on the way
//! (which checks ran shows in the shared-check table, where every check gets a slot here).

use std::{cell::Cell, sync::Arc};

use super::*;
use crate::{
    Engine,
    fields::{Ctx, EventCache},
    rules::{load_files, load_sources},
    testing::{ROOT, default_rules, mix, open_flags},
    tests::{engine_on_scene, path_corpus, upstream_path},
};
use osprey_model::event::Enriched;

/// Conditions of every shape: constants (from `evt.type` once specialized), negations of
/// `and` and `or`, nesting, operands that are constants of either value.
const CONDITIONS: &[&str] = &[
    "fd.name = /etc/shadow",
    "not fd.name = /etc/shadow",
    "evt.type = openat",
    "evt.type = connect",
    "not evt.type = openat",
    "evt.type = openat and fd.name startswith /etc",
    "evt.type = connect or fd.name startswith /etc",
    "evt.type = connect and fd.name startswith /etc",
    "evt.type = openat or fd.name startswith /etc",
    "not (fd.name startswith /etc and proc.name = cat)",
    "not (fd.name startswith /etc or proc.name = cat)",
    "(fd.name startswith /etc or proc.name = cat) and not (evt.is_open_write = true or proc.name = nginx)",
    "fd.name startswith /etc and (proc.name = cat or (proc.name = nginx and not evt.is_open_write = true)) and fd.num >= 0",
    "not (not (fd.filename = shadow and not proc.name = cat) or evt.is_open_read = false)",
    "proc.name = cat or proc.name = nginx or fd.name = /dev/null or not fd.name exists",
    "(evt.type = openat and proc.name = cat) or (evt.type = connect and proc.name = nginx)",
    "proc.aname in (bash) and fd.directory = /etc",
];

fn events() -> Vec<Enriched> {
    let bash = ROOT.process(10, 1, "bash", "/bin/bash", &["bash"]);
    let mut out = mix();
    for path in [
        "/etc/shadow",
        "/etc/passwd",
        "/dev/null",
        "/tmp/x",
        "",
        "/etc",
    ] {
        for comm in ["cat", "nginx", "python3"] {
            let p = ROOT.process(20, 10, comm, &format!("/usr/bin/{comm}"), &[comm]);
            for (write, ret) in [(false, 3), (true, 3), (false, -2)] {
                out.push(ROOT.openat(p.clone(), vec![bash.clone()], path, open_flags(write), ret));
            }
        }
    }
    out
}

/// The result of `judge` on `en`, and which checks it made with what results (slot by slot).
fn judged(
    e: &Engine,
    en: &Enriched,
    slots: usize,
    judge: impl Fn(&Ctx<'_>) -> bool,
) -> (bool, Vec<u8>) {
    let svc = e.services();
    let cache = EventCache::default();
    let memo = vec![Cell::new(0); slots];
    let ctx = Ctx::new(en, 1, &svc, &cache).with_memo(&memo);
    let r = judge(&ctx);
    (r, memo.iter().map(Cell::get).collect())
}

#[test]
fn judges_what_the_tree_judges_in_the_same_order() {
    let mut src = String::new();
    for (i, c) in CONDITIONS.iter().enumerate() {
        src.push_str(&format!(
            "- rule: r{i}\n  desc: d\n  condition: {c}\n  output: o\n  priority: INFO\n"
        ));
    }
    let res = load_sources(&[("t.yaml", src)]);
    let errs: Vec<_> = res.errors().map(|e| e.message.clone()).collect();
    assert!(res.is_ok(), "{errs:?}");
    let e = engine_on_scene(res.ruleset);
    let events = events();
    let (mut trues, mut falses, mut consts) = (0, 0, 0);
    for rule in &e.ruleset().rules {
        let own = &rule.compiled.as_ref().expect("compiled").matcher;
        for ty in ["openat", "connect"] {
            // Two copies: every check occurs twice, so each gets a slot of its own.
            let node = own.specialize(ty).unwrap_or_else(|| own.clone());
            let mut pair = [node.clone(), node];
            let slots = Node::share_checks(pair.iter_mut());
            let [node, _] = pair;
            let program = Program::new(&node);
            if matches!(node, Node::Const(_)) {
                assert!(program.is_empty(), "{}: {node:?}", rule.name);
                consts += 1;
            }
            for en in &events {
                let tree = judged(&e, en, slots, |ctx| node.eval(ctx));
                let prog = judged(&e, en, slots, |ctx| program.eval(ctx));
                assert_eq!(tree, prog, "{} ({ty}) on {:?}", rule.name, en.event);
                if tree.0 {
                    trues += 1;
                } else {
                    falses += 1;
                }
            }
        }
    }
    assert!(
        trues > 100 && falses > 100 && consts >= 4,
        "the events exercise both exits: {trues} true, {falses} false, {consts} constant"
    );
}

#[test]
fn the_rulesets_judge_as_their_trees() {
    for source in [default_rules(), upstream_path()] {
        let e = engine_on_scene(load_files(&[&source]).ruleset);
        let bash = ROOT.process(10, 1, "bash", "/bin/bash", &["bash"]);
        let nginx = Arc::new(osprey_model::Process {
            cgroup_id: 7,
            ..(*ROOT.process(11, 1, "nginx", "/usr/sbin/nginx", &["nginx"])).clone()
        });
        let mut events = events();
        for p in path_corpus(std::slice::from_ref(&source)) {
            for proc in [&bash, &nginx] {
                for (write, ret) in [(false, 3), (true, 3)] {
                    events.push(ROOT.openat(
                        proc.clone(),
                        vec![bash.clone()],
                        &p,
                        open_flags(write),
                        ret,
                    ));
                }
            }
        }
        let mut matched = 0;
        for en in &events {
            let (svc, cache) = (e.services(), EventCache::default());
            let ctx = Ctx::new(en, 1, &svc, &cache);
            let cands = e.by_type.get(ctx.evt_type()).unwrap_or(&e.any_type);
            for (c, program) in cands.list.iter().zip(&cands.programs) {
                let tree = judged(&e, en, e.memo_slots, |ctx| c.matcher.eval(ctx));
                let prog = judged(&e, en, e.memo_slots, |ctx| program.eval(ctx));
                assert_eq!(tree, prog, "{}: {:?}", source.display(), en.event);
                matched += usize::from(tree.0);
            }
        }
        assert!(matched > 20, "{}: {matched} matches", source.display());
    }
}
