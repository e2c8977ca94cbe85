//! The pipeline driven as a library, without the CLI or a kernel: decoded events in, alerts
//! out of a sink.

use std::{
    borrow::Cow,
    sync::{Arc, Mutex},
};

use osprey_engine::output::Alert;
use osprey_model::event::{Arg, ArgValue, Event, EventKind, Exec, Fork, Syscall};

use super::*;
use crate::sink::{Sink, SinkError, SinkHandle};

/// A sink that keeps what it is given.
struct Collect(Arc<Mutex<Vec<Alert>>>);

impl Sink for Collect {
    fn name(&self) -> &'static str {
        "collect"
    }
    fn write(&mut self, a: &Alert) -> Result<(), SinkError> {
        self.0.lock().unwrap().push(a.clone());
        Ok(())
    }
}

fn pipeline(cfg: &Config) -> (Pipeline, Arc<Mutex<Vec<Alert>>>) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let sink = SinkHandle::spawn(Collect(seen.clone()), 1024, None).unwrap();
    let rules = crate::rulefiles::load_for_run(&[]).expect("the embedded rules load");
    let p = Pipeline::new(cfg, rules, Parts::detached(Fanout::new(vec![sink])));
    (p, seen)
}

// Pids no real process has here (above the default pid_max), so nothing of the host leaks in.
const SHELL: u32 = 4_194_400;
const CAT: u32 = 4_194_401;

use crate::sensor::record::event;

/// A shell forks, the child execs `cat /etc/shadow` and opens it: what the sensor decodes.
fn cat_shadow(ts: u64) -> Vec<Event> {
    cat_shadow_as(CAT, ts)
}

/// [`cat_shadow`] with the child's pid `cat`.
fn cat_shadow_as(cat: u32, ts: u64) -> Vec<Event> {
    let path = |p: &str| ArgValue::Path {
        raw: p.into(),
        resolved: Some(p.into()),
    };
    vec![
        event(
            SHELL,
            "bash",
            ts,
            EventKind::Fork(Fork {
                child_tid: cat,
                child_tgid: cat,
                is_thread: false,
                child_vpid: 0,
                child_pid_ns: 0,
            }),
        ),
        event(
            cat,
            "cat",
            ts + 1,
            EventKind::Exec(Exec {
                filename: "/usr/bin/cat".into(),
                args: vec!["cat".into(), "/etc/shadow".into()],
                ..Exec::default()
            }),
        ),
        event(
            cat,
            "cat",
            ts + 2,
            EventKind::Syscall(Syscall {
                name: Cow::Borrowed("openat"),
                nr: 257,
                ret: 3,
                args: vec![
                    Arg {
                        name: Cow::Borrowed("dfd"),
                        value: ArgValue::Fd(-100),
                    },
                    Arg {
                        name: Cow::Borrowed("filename"),
                        value: path("/etc/shadow"),
                    },
                    Arg {
                        name: Cow::Borrowed("flags"),
                        value: ArgValue::Flags {
                            raw: 0,
                            names: vec![Cow::Borrowed("O_RDONLY")],
                        },
                    },
                ],
                truncated: false,
                ia32: false,
                ia32_from_64bit: false,
                latency_ns: 1000,
                file: None,
                io_uring: None,
            }),
        ),
    ]
}

#[test]
fn decoded_events_become_alerts_in_a_sink() {
    let (mut p, seen) = pipeline(&Config::default());
    p.observe(cat_shadow(1_000));
    p.finish();
    let alerts = seen.lock().unwrap();
    assert_eq!(alerts.len(), 1, "{alerts:#?}");
    let a = &alerts[0];
    assert_eq!(&*a.rule, "Read sensitive file");
    // The process table gave the open its process and parent, the container stage its
    // container: the alert carries what no single event said.
    assert!(a.output.contains("process=cat"), "{}", a.output);
    assert!(a.output.contains("cmdline=cat /etc/shadow"), "{}", a.output);
    assert!(a.output.contains("container_id=host"), "{}", a.output);
    assert_eq!(a.event.pid, CAT);
    assert!(
        p.table_stats().size >= 2,
        "the shell and cat are in the table"
    );
}

#[test]
fn flood_control_folds_repeats_and_reports_them_at_the_window_end() {
    let mut cfg = Config::default();
    cfg.flood.default.burst = 2;
    let (mut p, seen) = pipeline(&cfg);
    for i in 0..5 {
        p.observe(cat_shadow(1_000 + i * 10));
    }
    // Past every window: the summary of what was held back goes out.
    p.tick(u64::MAX / 2);
    p.finish();
    let alerts = seen.lock().unwrap();
    let rules: Vec<&str> = alerts.iter().map(|a| &*a.rule).collect();
    assert_eq!(
        rules
            .iter()
            .filter(|r| **r == "Read sensitive file")
            .count(),
        3,
        "two alerts, then one summary: {rules:?}"
    );
    let summary = alerts.last().unwrap();
    assert_eq!(
        summary.output_fields[osprey_engine::flood::SUPPRESSED_FIELD],
        serde_json::json!(3),
        "{summary:#?}"
    );
}

#[test]
fn a_window_closed_early_for_room_is_counted() {
    let mut cfg = Config::default();
    cfg.flood.default.burst = 1;
    cfg.flood.max_keys = 1;
    let (mut p, seen) = pipeline(&cfg);
    p.observe(cat_shadow(1_000));
    p.observe(cat_shadow(1_010));
    // Another process, no room for its window: the first one closes with its summary.
    p.observe(cat_shadow_as(CAT + 1, 1_020));
    p.finish();
    assert_eq!(p.metrics().flood_evictions.get(), 1);
    let alerts = seen.lock().unwrap();
    let got: Vec<(u32, Option<u64>)> = alerts
        .iter()
        .map(|a| {
            let n = a.output_fields.get(osprey_engine::flood::SUPPRESSED_FIELD);
            (a.event.pid, n.and_then(|n| n.as_u64()))
        })
        .collect();
    assert_eq!(got, [(CAT, None), (CAT, Some(1)), (CAT + 1, None)]);
}

#[test]
fn a_recording_replays_through_the_same_stages() {
    // `osprey trace --record` writes enriched events as JSON lines; judged again, they raise
    // the alert the live pipeline raised.
    let (mut live, live_seen) = pipeline(&Config::default());
    let mut recording = Vec::new();
    {
        let mut enrich = Enrich::new(TableConfig::default(), live.containers().clone());
        let mut out = Vec::new();
        for ev in cat_shadow(1_000) {
            enrich.push(ev, std::time::Instant::now(), &mut out);
        }
        enrich.flush(&mut out);
        for e in &out {
            recording.push(serde_json::to_string(e).unwrap());
        }
    }
    live.observe(cat_shadow(1_000));
    live.finish();

    let (mut replay, replay_seen) = pipeline(&Config::default());
    for line in &recording {
        replay.judge(serde_json::from_str(line).unwrap());
    }
    replay.finish();
    let (a, b) = (live_seen.lock().unwrap(), replay_seen.lock().unwrap());
    assert_eq!(a.len(), 1);
    assert_eq!(b.len(), 1);
    assert_eq!(a[0].rule, b[0].rule);
    assert_eq!(a[0].output, b[0].output);
}
