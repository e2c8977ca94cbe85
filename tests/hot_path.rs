//! The agent's per-event hot path allocates nothing: a record read from the ring buffer is
//! decoded, enriched and judged against the default rules without a heap allocation once the
//! pipeline is warm (beyond the state an event creates: a new descriptor's path).
//!
//! Counted by a global allocator that tallies the allocations of the calling thread, around
//! exactly the calls `osprey run` makes per batch (`Decoder::decode_into`, `Pipeline::observe`,
//! `Decoder::recycle`).

use std::{
    alloc::{GlobalAlloc, Layout, System},
    backtrace::Backtrace,
    cell::{Cell, RefCell},
    collections::BTreeMap,
};

use osprey::{
    config::Config,
    pipeline::{Parts, Pipeline},
    sensor::{Decoder, record},
    sink::Fanout,
};
use osprey_model::event::Event;

struct Counting;

thread_local! {
    static ALLOCATIONS: Cell<u64> = const { Cell::new(0) };
    /// While set, each allocation's backtrace is kept (to name the sites when the test fails).
    static TRACING: Cell<bool> = const { Cell::new(false) };
    static SITES: RefCell<Vec<Backtrace>> = const { RefCell::new(Vec::new()) };
}

fn counted() {
    let _ = ALLOCATIONS.try_with(|n| n.set(n.get() + 1));
    // Capturing allocates: tracing is off while it runs.
    if TRACING.try_with(|t| t.replace(false)).unwrap_or(false) {
        let bt = Backtrace::force_capture();
        SITES.with_borrow_mut(|s| s.push(bt));
        TRACING.with(|t| t.set(true));
    }
}

// SAFETY: forwards every call to the system allocator unchanged; the counter is a plain
// thread-local cell, which allocates nothing.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        counted();
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        counted();
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        counted();
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn allocations() -> u64 {
    ALLOCATIONS.with(|n| n.get())
}

/// A process above the default pid_max, so nothing of the host's /proc leaks in.
const PID: u32 = 4_194_300;
const DEVTMPFS_MAGIC: u32 = 0x1373;
const EXT4_MAGIC: u32 = 0xef53;

/// `open("/dev/null")` returning fd 3, then `close(3)`: the benchmark's load, and most of what
/// a busy node sends.
fn open_close() -> Vec<Vec<u8>> {
    record::open_and_close("/dev/null", &["null", "dev"], DEVTMPFS_MAGIC).into()
}

/// An open of a file that is not there (ENOENT): a path lookup, which changes no state.
fn failed_open() -> Vec<Vec<u8>> {
    let open = record::syscall(
        257,
        -2,
        [(-100i64) as u64, 0x7000, 0o2, 0, 0, 0],
        &[b"/usr/lib/x86_64-linux-gnu/nope.so"],
    );
    vec![open]
}

/// `open("/etc/shadow")` returning fd 3, then `close(3)`: "Read sensitive file" each time, a
/// flood once the burst is out.
fn shadow_reads() -> Vec<Vec<u8>> {
    record::open_and_close("/etc/shadow", &["shadow", "etc"], EXT4_MAGIC).into()
}

fn pipeline() -> Pipeline {
    let rules = osprey::rulefiles::load_for_run(&[]).expect("the embedded rules load");
    let mut p = Pipeline::new(
        &Config::default(),
        rules,
        Parts::detached(Fanout::new(vec![])),
    );
    p.observe([record::host_exec(PID)]);
    p
}

/// Decodes and judges `rounds` rounds of `recs` as the live loop does, a batch per round;
/// returns the allocations made per round.
fn run(
    p: &mut Pipeline,
    decoder: &mut Decoder,
    batch: &mut Vec<Event>,
    recs: &[Vec<u8>],
    rounds: usize,
) -> f64 {
    let before = allocations();
    for _ in 0..rounds {
        for r in recs {
            decoder.decode_into(r, batch);
        }
        p.observe(batch.drain(..));
        decoder.recycle(p.spent());
    }
    (allocations() - before) as f64 / rounds as f64
}

/// Runs `recs` (one round of a workload) on a warm pipeline and fails, naming the places that
/// allocate, unless a round makes exactly `want` allocations.
fn allocations_per_round(recs: Vec<Vec<u8>>, want: u64, what: &str) {
    let recs: Vec<Vec<u8>> = recs
        .into_iter()
        .map(|r| record::with_process(r, PID, PID))
        .collect();
    let mut p = pipeline();
    let mut decoder = Decoder::new(0);
    let mut batch = Vec::with_capacity(4096);
    // Warm: the fd table, the decoder's spare buffers and the batch vectors reach their
    // working size.
    run(&mut p, &mut decoder, &mut batch, &recs, 1_000);
    let rounds = 10_000;
    let per_round = run(&mut p, &mut decoder, &mut batch, &recs, rounds);
    assert_eq!(
        decoder.stats.decoded,
        ((1_000 + rounds) * recs.len()) as u64,
        "every record decoded"
    );
    if per_round != want as f64 {
        panic!(
            "{what}: {per_round} allocations per round on the warm hot path, {want} expected; \
             where:\n{}",
            sites(|| run(&mut p, &mut decoder, &mut batch, &recs, 1))
        );
    }
}

#[test]
fn an_open_and_close_allocate_only_the_descriptors_path() {
    // The fd table keeps the path of an open descriptor (fd.name of every later event on it)
    // for as long as it is open: that string is state, not a cost of the event.
    allocations_per_round(open_close(), 1, "open(/dev/null) + close");
}

#[test]
fn a_failed_open_allocates_nothing() {
    allocations_per_round(failed_open(), 0, "open of a missing file");
}

#[test]
fn an_alert_flood_control_suppresses_is_never_built() {
    // Past the burst every read still matches the rule, but the alert is only counted for the
    // window's summary: rendering it (output, fields, the Alert) would allocate dozens of
    // times. Two remain: the descriptor's path, and the command line the rule's output shows
    // (`proc.cmdline`, joined once per event), which is part of flood control's key: a read by
    // another command line is another window.
    allocations_per_round(shadow_reads(), 2, "a flood of /etc/shadow reads");
}

/// The places `f` allocates, with how often: the first frames of Osprey's own code in each
/// allocation's backtrace.
fn sites(f: impl FnOnce() -> f64) -> String {
    TRACING.with(|t| t.set(true));
    f();
    TRACING.with(|t| t.set(false));
    let traces = SITES.with_borrow_mut(std::mem::take);
    let mut count: BTreeMap<String, usize> = BTreeMap::new();
    for bt in traces {
        let text = bt.to_string();
        let ours: Vec<&str> = text
            .lines()
            .map(str::trim)
            .filter(|l| l.contains("osprey") && !l.starts_with("at ") && !l.contains("hot_path::"))
            .take(3)
            .collect();
        *count.entry(ours.join(" <- ")).or_default() += 1;
    }
    count
        .iter()
        .map(|(site, n)| format!("  {n} x {site}\n"))
        .collect()
}
