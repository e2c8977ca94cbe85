use std::sync::Arc;

use super::*;

#[derive(Debug, PartialEq)]
struct A {
    node: String,
    seq: u64,
    rule: &'static str,
}

impl Sequenced for A {
    fn node(&self) -> &str {
        &self.node
    }
    fn seq(&self) -> u64 {
        self.seq
    }
    fn assign_seq(&mut self, seq: u64) {
        self.seq = seq;
    }
}

fn a(node: &str, rule: &'static str) -> A {
    A {
        node: node.into(),
        seq: 0,
        rule,
    }
}

fn all() -> Filter<A> {
    Box::new(|_| true)
}

fn drain(s: &Subscription<A>) -> Vec<Delivery<A>> {
    std::iter::from_fn(|| s.try_recv()).collect()
}

fn seqs(d: &[Delivery<A>]) -> Vec<String> {
    d.iter()
        .map(|d| match d {
            Delivery::Alert(a) => format!("{}#{}", a.node, a.seq),
            Delivery::Gap(g) => format!("gap {} {}..{} {}", g.node, g.from_seq, g.to_seq, g.missed),
        })
        .collect()
}

#[test]
fn publish_numbers_each_node_from_one_and_resumes_a_persisted_count() {
    let bus = Bus::new(10);
    assert_eq!(bus.publish_next(a("n1", "r")).seq, 1);
    assert_eq!(bus.publish_next(a("n1", "r")).seq, 2);
    assert_eq!(bus.publish_next(a("n2", "r")).seq, 1);
    bus.start_numbering_at("n3", 500);
    assert_eq!(bus.publish_next(a("n3", "r")).seq, 500);
    assert_eq!(bus.last_seq("n1"), 2);
}

#[test]
fn slow_subscriber_gets_an_exact_gap_and_never_holds_back_the_others() {
    let bus = Bus::new(100);
    let slow = bus.subscribe("slow", 3, &Start::Live, all());
    let fast = bus.subscribe("fast", 1000, &Start::Live, all());
    for _ in 0..10 {
        bus.publish_next(a("n", "r"));
    }
    // The fast one got everything; the slow one its 3, then a gap of exactly 7.
    assert_eq!(drain(&fast).len(), 10);
    let got = drain(&slow);
    assert_eq!(seqs(&got), ["n#1", "n#2", "n#3", "gap n 4..10 7"]);
    assert_eq!(slow.dropped(), 7);
    // Reading again: what follows is delivered, after the gap.
    bus.publish_next(a("n", "r"));
    assert_eq!(seqs(&drain(&slow)), ["n#11"]);
    let st = bus.status();
    assert_eq!(st.dropped, 7);
    assert_eq!(
        st.subscribers.iter().map(|s| s.dropped).collect::<Vec<_>>(),
        [7, 0]
    );
}

#[test]
fn gap_comes_before_the_next_alert_when_the_subscriber_catches_up() {
    let bus = Bus::new(0);
    let s = bus.subscribe("s", 2, &Start::Live, all());
    for _ in 0..5 {
        bus.publish_next(a("n", "r"));
    }
    assert_eq!(seqs(&[s.try_recv().unwrap()]), ["n#1"]);
    // Room again: the next alert is queued behind the gap, in order.
    bus.publish_next(a("n", "r"));
    assert_eq!(seqs(&drain(&s)), ["n#2", "gap n 3..5 3", "n#6"]);
}

#[test]
fn a_gap_counts_only_alerts_the_filter_lets_through() {
    let bus = Bus::new(0);
    let s = bus.subscribe("s", 1, &Start::Live, Box::new(|x: &A| x.rule == "keep"));
    for i in 0..9 {
        bus.publish_next(a("n", if i % 3 == 0 { "keep" } else { "other" }));
    }
    // Kept: seqs 1, 4, 7. The queue holds 1; 4 and 7 are missed.
    assert_eq!(seqs(&drain(&s)), ["n#1", "gap n 4..7 2"]);
}

#[test]
fn resume_after_a_cursor_per_node_and_report_what_retention_lost() {
    let bus = Bus::new(5);
    for _ in 0..8 {
        bus.publish_next(a("n1", "r"));
    }
    for _ in 0..2 {
        bus.publish_next(a("n2", "r"));
    }
    // Retained: n1#6..8, n2#1..2.
    let cursors = [("n1".to_string(), 2), ("n2".to_string(), 1)].into();
    let s = bus.subscribe("s", 10, &Start::After(cursors), all());
    assert_eq!(
        seqs(&drain(&s)),
        ["gap n1 3..5 3", "n1#6", "n1#7", "n1#8", "n2#2"]
    );
    // Caught up: nothing more, no gap.
    let cursors = [("n1".to_string(), 8)].into();
    let s = bus.subscribe("s", 10, &Start::After(cursors), all());
    assert_eq!(seqs(&drain(&s)), ["n2#1", "n2#2"]);
    let all_retained = bus.subscribe("s", 10, &Start::Retained, all());
    assert_eq!(drain(&all_retained).len(), 5);
    let live = bus.subscribe("s", 10, &Start::Live, all());
    assert!(drain(&live).is_empty());
}

#[test]
fn collector_drops_duplicates_by_node_and_sequence() {
    let bus = Bus::new(10);
    let s = bus.subscribe("s", 10, &Start::Live, all());
    let n = |seq| A {
        node: "n".into(),
        seq,
        rule: "r",
    };
    assert!(bus.publish_numbered(n(1)));
    assert!(bus.publish_numbered(n(2)));
    assert!(!bus.publish_numbered(n(2)));
    assert!(!bus.publish_numbered(n(1)));
    assert!(bus.publish_numbered(n(3)));
    assert!(bus.publish_gap(Gap {
        node: "n".into(),
        from_seq: 4,
        to_seq: 9,
        missed: 6,
        reason: GapReason::SpoolOverflow,
    }));
    assert!(!bus.publish_numbered(n(9)));
    assert!(bus.publish_numbered(n(10)));
    assert_eq!(
        seqs(&drain(&s)),
        ["n#1", "n#2", "n#3", "gap n 4..9 6", "n#10"]
    );
    assert_eq!(bus.status().duplicates, 3);
}

#[test]
fn dropping_a_subscription_unsubscribes_and_keeps_its_drops_counted() {
    let bus = Bus::new(0);
    let s = bus.subscribe("s", 1, &Start::Live, all());
    bus.publish_next(a("n", "r"));
    bus.publish_next(a("n", "r"));
    drop(s);
    let st = bus.status();
    assert!(st.subscribers.is_empty());
    assert_eq!(st.dropped, 1);
}

#[tokio::test]
async fn recv_wakes_on_publish_from_another_task() {
    let bus = Bus::new(0);
    let s = bus.subscribe("s", 10, &Start::Live, all());
    let b2 = Arc::clone(&bus);
    let t = tokio::spawn(async move {
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        b2.publish_next(a("n", "r"));
    });
    match tokio::time::timeout(std::time::Duration::from_secs(5), s.recv()).await {
        Ok(Delivery::Alert(x)) => assert_eq!(x.seq, 1),
        other => panic!("expected an alert, got {other:?}"),
    }
    t.await.unwrap();
}

#[test]
fn a_retained_subscriber_reads_lazily_and_gets_a_gap_for_what_was_evicted_meanwhile() {
    let bus = Bus::new(4);
    for _ in 0..4 {
        bus.publish_next(a("n", "r"));
    }
    let s = bus.subscribe("p", 100, &Start::Retained, all());
    // Nothing copied: the subscriber reads from the retention.
    assert_eq!(s.try_recv().map(|d| seqs(&[d])), Some(vec!["n#1".into()]));
    // Two more published: 1 (read) and 2 (not yet read) are evicted.
    bus.publish_next(a("n", "r"));
    bus.publish_next(a("n", "r"));
    assert_eq!(
        seqs(&drain(&s)),
        ["gap n 2..2 1", "n#3", "n#4", "n#5", "n#6"]
    );
    assert_eq!(s.dropped(), 1);
}

#[test]
fn a_node_restart_resets_its_numbering_and_reaches_every_subscriber_in_its_place() {
    let bus: Arc<Bus<A>> = Bus::new(10);
    let numbered = |seq| A {
        node: "n".into(),
        seq,
        rule: "r",
    };
    let live = bus.subscribe("live", 100, &Start::Live, all());
    assert!(bus.publish_numbered(numbered(7)));
    assert!(!bus.publish_numbered(numbered(1)));
    bus.restart_node("n");
    assert!(bus.publish_numbered(numbered(1)));
    assert_eq!(seqs(&drain(&live)), ["n#7", "gap n 0..0 0", "n#1"]);
    // From retention: the notice in its place; a cursor of the new numbering skips the old.
    let all_of_it = bus.subscribe("r", 100, &Start::Retained, all());
    assert_eq!(seqs(&drain(&all_of_it)), ["n#7", "gap n 0..0 0", "n#1"]);
    let after = bus.subscribe(
        "a",
        100,
        &Start::After(HashMap::from([("n".to_string(), 0)])),
        all(),
    );
    assert_eq!(seqs(&drain(&after)), ["n#1"]);
}

#[test]
fn retention_is_bounded_by_bytes_too() {
    #[derive(Debug)]
    struct Big(u64);
    impl Sequenced for Big {
        fn node(&self) -> &str {
            "n"
        }
        fn seq(&self) -> u64 {
            self.0
        }
        fn assign_seq(&mut self, seq: u64) {
            self.0 = seq;
        }
        fn size(&self) -> usize {
            1000
        }
    }
    let bus = Bus::with_limits(1000, 10_000);
    for _ in 0..50 {
        bus.publish_next(Big(0));
    }
    assert_eq!(bus.status().retained, 10);
}

#[test]
fn start_for_newest_replays_only_the_last_matching_alerts_without_a_gap() {
    let bus = Bus::new(100);
    for i in 0..6 {
        bus.publish_next(a("n1", if i % 2 == 0 { "keep" } else { "other" }));
        bus.publish_next(a("n2", "keep"));
    }
    bus.publish_next(a("n3", "keep"));
    // Retained in order: n1#1 n2#1 n1#2 n2#2 ... n1#6 n2#6 n3#1; kept ones of n1 are 1, 3, 5.
    let keep = |x: &A| x.rule == "keep";
    let start = bus.start_for_newest(4, &keep);
    let s = bus.subscribe("s", 10, &start, Box::new(keep));
    assert_eq!(seqs(&drain(&s)), ["n1#5", "n2#5", "n2#6", "n3#1"]);
    // Fewer retained than asked: all of them, as Start::Retained.
    assert_eq!(bus.start_for_newest(1000, &keep), Start::Retained);
    // None asked: live only.
    let s = bus.subscribe("s", 10, &bus.start_for_newest(0, &keep), Box::new(keep));
    assert!(drain(&s).is_empty());
    bus.publish_next(a("n1", "keep"));
    assert_eq!(seqs(&drain(&s)), ["n1#7"]);
}
