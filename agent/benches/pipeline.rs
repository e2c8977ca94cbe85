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

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use osprey::{
    config::Config,
    metrics::Metrics,
    pipeline::{Parts, Pipeline},
    sensor::{Decoder, record},
    sink::Fanout,
};

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

fn bench_hot_path(c: &mut Criterion) {
    // The system benchmark's load, and a flooded rule.
    let dev_null = record::open_and_close("/dev/null", &["null", "dev"], 0x1373);
    hot_path(c, "hot_path_open_close", dev_null);
    let shadow = record::open_and_close("/etc/shadow", &["shadow", "etc"], 0xef53);
    hot_path(c, "hot_path_flood", shadow);
}

fn hot_path(c: &mut Criterion, name: &str, recs: [Vec<u8>; 2]) {
    let rules = osprey::rulefiles::load_for_run(&[]).expect("the embedded rules load");
    let mut p = Pipeline::new(
        &Config::default(),
        rules,
        Parts::detached(Fanout::new(vec![])),
    );
    p.observe([record::host_exec(PID)]);
    let recs = recs.map(|r| record::with_process(r, PID, PID));
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
