//! Per-event costs of the pipeline around the engine, as `osprey run` pays them:
//! - `metrics_event`: counting an event in the metrics;
//! - `hot_path_open_close`: a ring-buffer record decoded, enriched (process, descriptor,
//!   container) and judged by the default rules, its buffers handed back to the decoder: the
//!   agent's CPU per event without the ring buffer's reads;
//! - `hot_path_flood`: the same for `open("/etc/shadow")` + `close` by one process, a "Read
//!   sensitive file" alert each time, which flood control suppresses past its burst.
//!
//! `cargo bench -p osprey --bench pipeline`.

use std::hint::black_box;

use agent_common::kpath;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use osprey::{
    config::Config,
    metrics::Metrics,
    pipeline::{Parts, Pipeline},
    sensor::{Decoder, record},
    sink::Fanout,
};
use osprey_model::event::{Event, EventKind, Exec};

fn bench_metrics(c: &mut Criterion) {
    let m = Metrics::new();
    // The kinds of a busy node: mostly opens, some lifecycle.
    let kinds = [
        "openat", "openat", "openat", "connect", "execve", "exec", "fork", "exit",
    ];
    let mut g = c.benchmark_group("pipeline");
    g.throughput(Throughput::Elements(kinds.len() as u64));
    g.bench_function("metrics_event", |b| {
        b.iter(|| {
            for k in kinds {
                m.event(black_box(k));
            }
        })
    });
    g.finish();
}

/// A host process above the default pid_max, known from its exec.
const PID: u32 = 4_194_300;

fn exec_event() -> Event {
    Event {
        ts: 1_000,
        time: 1_700_000_000_000_000_000,
        tgid: PID,
        tid: PID,
        uid: 1000,
        gid: 1000,
        euid: 1000,
        egid: 1000,
        cgroup_id: 0,
        pid_ns: 0,
        mnt_ns: 0,
        vpid: PID,
        comm: "loop".into(),
        cap_effective: 0,
        cap_permitted: 0,
        kind: EventKind::Exec(Exec {
            filename: "/usr/bin/loop".into(),
            args: vec!["loop".into()],
            exe_name: "loop".into(),
            cgroup: "user.slice/session-1.scope".into(),
            ..Default::default()
        }),
    }
}

/// An open of `path` (the kernel's walk: `names`, leaf first) returning fd 3, and its close.
fn open_close(path: &[u8], names: &[&str], magic: u32) -> [Vec<u8>; 2] {
    let open = record::syscall(257, 3, [(-100i64) as u64, 0x7000, 0, 0, 0, 0], &[path]);
    let open = record::with_kpath(open, names, kpath::OF_RET, magic, 5);
    let close = record::syscall(3, 0, [3, 0, 0, 0, 0, 0], &[]);
    [open, close].map(|r| record::with_process(r, PID, PID))
}

fn bench_hot_path(c: &mut Criterion) {
    // The system benchmark's load, and a flooded rule.
    let dev_null = open_close(b"/dev/null", &["null", "dev"], 0x1373);
    hot_path(c, "hot_path_open_close", dev_null);
    let shadow = open_close(b"/etc/shadow", &["shadow", "etc"], 0xef53);
    hot_path(c, "hot_path_flood", shadow);
}

fn hot_path(c: &mut Criterion, name: &str, recs: [Vec<u8>; 2]) {
    let rules = osprey::rulefiles::load_for_run(&[]).expect("the embedded rules load");
    let mut p = Pipeline::new(
        &Config::default(),
        rules,
        Parts::detached(Fanout::new(vec![])),
    );
    p.observe([exec_event()]);
    let mut decoder = Decoder::new(0);
    let mut batch = Vec::with_capacity(4096);
    let mut g = c.benchmark_group("pipeline");
    g.throughput(Throughput::Elements(recs.len() as u64));
    g.bench_function(name, |b| {
        b.iter(|| {
            for r in &recs {
                decoder.decode_into(black_box(r), &mut batch);
            }
            p.observe(batch.drain(..));
            decoder.recycle(p.spent());
        })
    });
    g.finish();
}

criterion_group!(benches, bench_metrics, bench_hot_path);
criterion_main!(benches);
