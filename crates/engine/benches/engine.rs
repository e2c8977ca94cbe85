//! Engine throughput with Osprey's default rules and with Falco's upstream stable rules on a
//! realistic mix of events: mostly ordinary opens, some execs (a shell and tools spawned by a
//! shell), connects, and a few events that raise alerts. `cargo bench -p osprey-engine
//! --bench engine`; events/s is reported as "thrpt" (elements per second) on one core.

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use osprey_engine::{
    Engine,
    rules::load_files,
    testing::{default_rules, mix, mix_options, upstream_rules},
};

/// One criterion benchmark: the whole mix through an engine built from `path`.
fn bench_rules(c: &mut Criterion, name: &str, path: &std::path::Path, alerts: Option<usize>) {
    let res = load_files(&[path]);
    assert!(res.is_ok(), "rules at {} must load", path.display());
    let engine = Engine::new(res.ruleset, mix_options());
    let events = mix();
    let raised: usize = events.iter().map(|e| engine.evaluate(e).len()).sum();
    eprintln!("engine/{name}: {raised} alerts per {} events", events.len());
    if let Some(n) = alerts {
        assert_eq!(raised, n, "the mix raises exactly {n} alerts with {name}");
    }
    let mut g = c.benchmark_group("engine");
    g.throughput(Throughput::Elements(events.len() as u64));
    g.bench_function(name, |b| {
        b.iter(|| {
            let mut n = 0;
            for e in &events {
                n += engine.evaluate(black_box(e)).len();
            }
            black_box(n)
        })
    });
    g.finish();
}

fn bench_engine(c: &mut Criterion) {
    // Osprey's default rules: what `osprey run` embeds. They change often, so the number of
    // alerts the mix raises is not pinned here (the engine tests pin behaviour).
    bench_rules(c, "default_rules_mix", &default_rules(), None);
    // Falco's upstream stable rules sit beside the clone (../shared), not in it.
    let upstream = upstream_rules();
    if upstream.exists() {
        bench_rules(c, "upstream_stable_mix", &upstream, Some(3));
    } else {
        eprintln!(
            "engine/upstream_stable_mix skipped: {} is missing",
            upstream.display()
        );
    }
}

criterion_group!(benches, bench_engine);
criterion_main!(benches);
