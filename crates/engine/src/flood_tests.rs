//! Flood control inside the engine: a match is keyed from its event and the output's target
//! fields before any alert is built, and what flood control holds back is never rendered.

use std::{net::IpAddr, sync::Arc};

use osprey_model::{ContainerInfo, Process};

use super::*;
use crate::{
    flood::{FloodConfig, Key, Limit, SUPPRESSED_FIELD},
    rules::load_sources,
    testing::{ROOT, flags},
};

const RULES: &str = r#"
- rule: Shadow read
  desc: d
  condition: evt.type = openat and fd.name = /etc/shadow
  output: "%proc.name read %fd.name (%proc.cmdline) flags=%evt.arg.flags fd=%fd.num at %evt.time"
  priority: WARNING
- rule: Any open
  desc: d
  condition: evt.type = openat
  output: "%proc.name opened %fd.name as %user.name in %container.id (%proc.exepath %evt.args %fd.sip)"
  priority: NOTICE
- rule: Outbound
  desc: d
  condition: evt.type = connect
  output: "%proc.name to %fd.sip:%fd.sport (%fd.name) %evt.rawarg.fd %proc.args %fd.lport"
  priority: NOTICE
"#;

fn engine(matching: RuleMatching) -> Engine {
    let res = load_sources(&[("t.yaml", RULES.to_string())]);
    let errs: Vec<_> = res.errors().map(|e| e.message.clone()).collect();
    assert!(res.is_ok(), "{errs:?}");
    Engine::new(
        res.ruleset,
        EngineOptions {
            rule_matching: matching,
            ..EngineOptions::default()
        },
    )
}

fn reader(pid: u32, file: &str) -> Arc<Process> {
    ROOT.process(pid, 1, "cat", "/usr/bin/cat", &["cat", file])
}

/// `pid` opens `file`, read-only, at `time`.
fn open(pid: u32, file: &str, time: u64) -> Enriched {
    let mut en = ROOT.openat(reader(pid, file), vec![], file, flags(0, &["O_RDONLY"]), 3);
    en.event.time = time;
    en
}

/// Every match of `en`: the key the engine computes from its parts, and the alert rendered.
fn keys_and_alerts(e: &Engine, en: &Enriched, flood: &FloodControl) -> Vec<(Key, Alert)> {
    let svc = e.services();
    let cache = EventCache::default();
    let ctx = Ctx::new(en, 1, &svc, &cache);
    let ty = match &en.event.kind {
        EventKind::Syscall(sc) => sc.name.to_string(),
        _ => unreachable!("syscall events only"),
    };
    let mut out = Vec::new();
    for a in &e.active {
        if !a.compiled.matcher.eval(&ctx) {
            continue;
        }
        let rule = &e.ruleset.rules[a.rule];
        let key = a.flood_key(rule, &ctx, flood);
        out.push((Key::from(&key), e.alert(a, rule.priority, &ctx, &ty)));
    }
    out
}

#[test]
fn the_key_from_the_match_is_the_key_of_the_rendered_alert() {
    let e = engine(RuleMatching::All);
    let flood = FloodControl::new(FloodConfig::default());
    let mut in_container = open(20, "/etc/shadow", 1);
    in_container.container = Some(Arc::new(ContainerInfo {
        id: "0123456789ab".into(),
        ..ContainerInfo::default()
    }));
    let connect = ROOT.connect(
        reader(21, "x"),
        vec![],
        4,
        "10.0.0.7".parse::<IpAddr>().unwrap(),
        443,
    );
    let mut targets = Vec::new();
    for en in [
        open(20, "/etc/shadow", 1),
        open(20, "/etc/gshadow", 1),
        in_container,
        connect,
    ] {
        let matches = keys_and_alerts(&e, &en, &flood);
        assert!(!matches.is_empty());
        for (from_parts, alert) in matches {
            assert_eq!(from_parts, flood.key(&alert), "{}", alert.output);
            targets.push((alert.rule, from_parts.as_ref().target));
        }
    }
    // Shadow read and Any open on /etc/shadow, Any open on /etc/gshadow, ...
    assert_eq!(&*targets[1].0, "Any open");
    assert_eq!(&*targets[2].0, "Any open");
    assert_ne!(targets[1].1, targets[2].1, "the hash sees the file");
    assert_eq!(&*targets[3].0, "Shadow read");
    assert_eq!(targets[0].1, targets[3].1, "the container is not a target");
}

/// `a` as the summary of a window that suppressed `n` alerts of `window_ms`.
fn summary_of(mut a: Alert, n: u64, window_ms: u64) -> Alert {
    a.output = format!(
        "{} ({n} similar alerts suppressed in the last {window_ms} ms)",
        a.output
    );
    a.output_fields.insert(SUPPRESSED_FIELD.into(), n.into());
    a
}

#[test]
fn gated_evaluation_gives_what_evaluate_then_admit_gives() {
    // Two rules match every read of /etc/shadow: one limited by its name, one by its
    // priority. Windows of 1 ms, ten reads each, the last one half full.
    let mut cfg = FloodConfig::default();
    let shadow = Limit {
        burst: 5,
        window_ms: 1,
    };
    let notice = Limit {
        burst: 2,
        window_ms: 1,
    };
    cfg.per_rule.insert("Shadow read".into(), shadow);
    cfg.per_priority.insert("Notice".into(), notice);
    let reads: Vec<Enriched> = (0..25u64)
        .map(|i| open(20, "/etc/shadow", 1_000_000_000 + i * 100_000))
        .collect();

    let old = engine(RuleMatching::All);
    let mut admit = FloodControl::new(cfg.clone());
    let mut before = Vec::new();
    // Every match rendered, by read: [Shadow read, Any open].
    let mut all = Vec::new();
    for en in &reads {
        let alerts = old.evaluate(en);
        assert_eq!(alerts.len(), 2);
        for a in &alerts {
            before.extend(admit.admit(a.clone()));
        }
        all.push(alerts);
    }
    before.extend(admit.flush(u64::MAX));

    let gated = engine(RuleMatching::All);
    let mut flood = FloodControl::new(cfg);
    let mut after = Vec::new();
    for en in &reads {
        after.extend(gated.evaluate_gated(en, &mut flood));
    }
    after.extend(flood.flush(u64::MAX));

    let counts: Vec<(&str, u64)> = after
        .iter()
        .filter_map(|a| Some((&*a.rule, a.output_fields.get(SUPPRESSED_FIELD)?.as_u64()?)))
        .collect();
    assert_eq!(
        counts,
        [
            ("Shadow read", 5),
            ("Any open", 8),
            ("Shadow read", 5),
            ("Any open", 8),
            ("Any open", 3),
        ]
    );
    assert_eq!(
        after, before,
        "what evaluate then admit gave, in the same order"
    );
    // Each summary is the first read its window held back, whole.
    let mut windows = [0usize; 2];
    for a in &after {
        let Some(n) = a.output_fields.get(SUPPRESSED_FIELD) else {
            continue;
        };
        let (ix, limit) = if &*a.rule == "Shadow read" {
            (0, shadow)
        } else {
            (1, notice)
        };
        let first = &all[windows[ix] * 10 + limit.burst as usize][ix];
        windows[ix] += 1;
        assert_eq!(
            *a,
            summary_of(first.clone(), n.as_u64().unwrap(), limit.window_ms)
        );
    }
    assert_eq!(flood.suppressed_total, admit.suppressed_total);
}

#[test]
fn decoys_do_not_hide_another_target_or_another_process() {
    let e = engine(RuleMatching::First);
    let mut flood = FloodControl::new(FloodConfig::default());
    // Six decoy reads by process 7: five alerts, the sixth held back.
    for i in 0..6u64 {
        let out = e.evaluate_gated(&open(7, "/tmp/decoy", 1_000 + i), &mut flood);
        assert_eq!(out.len(), usize::from(i < 5), "decoy {i}");
    }
    // The real read by the same process, same rule: another target.
    let real = e.evaluate_gated(&open(7, "/etc/passwd", 2_000), &mut flood);
    assert_eq!(real.len(), 1, "another target alerts on its own");
    assert_eq!(real[0].output_fields["fd.name"], "/etc/passwd");
    // The decoy's target from another process.
    let other = e.evaluate_gated(&open(8, "/tmp/decoy", 2_001), &mut flood);
    assert_eq!(other.len(), 1, "another process alerts on its own");
    assert_eq!(other[0].event.pid, 8);
    let s = flood.flush(u64::MAX);
    assert_eq!(s.len(), 1);
    assert_eq!(s[0].output_fields["fd.name"], "/tmp/decoy");
    assert_eq!(s[0].event.pid, 7);
    assert_eq!(s[0].output_fields[SUPPRESSED_FIELD], 1);
}

#[test]
fn suppressed_matches_are_not_rendered() {
    let reads: Vec<Enriched> = (0..1000u64)
        .map(|i| open(20, "/etc/shadow", 1_000_000_000 + i * 1_000_000))
        .collect();
    let e = engine(RuleMatching::First);
    let mut flood = FloodControl::new(FloodConfig::default());
    let mut out = Vec::new();
    for en in &reads {
        out.extend(e.evaluate_gated(en, &mut flood));
    }
    assert_eq!(out.len(), 5, "the burst");
    assert_eq!(
        e.rendered.load(Ordering::Relaxed),
        6,
        "the burst and one summary template"
    );
    let s = flood.flush(u64::MAX);
    assert_eq!(s.len(), 1);
    assert_eq!(s[0].output_fields[SUPPRESSED_FIELD], 995);
    assert_eq!(s[0].time, reads[5].event.time, "the first suppressed read");

    // Flood control off: every match is rendered and goes out.
    let e = engine(RuleMatching::First);
    let mut off = FloodControl::new(FloodConfig {
        enabled: false,
        ..FloodConfig::default()
    });
    let n: usize = reads
        .iter()
        .map(|en| e.evaluate_gated(en, &mut off).len())
        .sum();
    assert_eq!(n, 1000);
    assert_eq!(e.rendered.load(Ordering::Relaxed), 1000);
}
