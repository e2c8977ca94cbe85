//! Per-event costs of the pipeline around the engine: counting an event in the metrics, as
//! `osprey run` does for every event it reads. `cargo bench -p osprey --bench pipeline`.

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use osprey::metrics::Metrics;

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

criterion_group!(benches, bench_metrics);
criterion_main!(benches);
