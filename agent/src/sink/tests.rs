use std::sync::{Arc, Mutex, mpsc};

use super::*;

/// Records what it is given; blocks each write until the test lets it go, when gated.
struct Probe {
    seen: Arc<Mutex<Vec<u32>>>,
    flushes: Arc<AtomicU64>,
    gate: Option<(mpsc::Sender<()>, mpsc::Receiver<()>)>,
    close_after: Option<usize>,
}

impl Sink<u32> for Probe {
    fn name(&self) -> &'static str {
        "probe"
    }
    fn write(&mut self, item: &u32) -> Result<(), SinkError> {
        if let Some((entered, go)) = &self.gate {
            entered.send(()).ok();
            go.recv().ok();
        }
        let mut seen = self.seen.lock().unwrap();
        if self.close_after.is_some_and(|n| seen.len() >= n) {
            return Err(SinkError::Closed("reader went away".into()));
        }
        seen.push(*item);
        Ok(())
    }
    fn flush(&mut self) -> Result<(), SinkError> {
        self.flushes.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }
}

fn probe(
    gate: Option<(mpsc::Sender<()>, mpsc::Receiver<()>)>,
    close_after: Option<usize>,
) -> (Probe, Arc<Mutex<Vec<u32>>>) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    (
        Probe {
            seen: seen.clone(),
            flushes: Arc::default(),
            gate,
            close_after,
        },
        seen,
    )
}

#[test]
fn delivers_in_order_and_flushes_on_close() {
    let (p, seen) = probe(None, None);
    let flushes = p.flushes.clone();
    let mut h = SinkHandle::spawn(p, 16, None).unwrap();
    for i in 0..10 {
        h.send(Arc::new(i));
    }
    h.close();
    assert_eq!(*seen.lock().unwrap(), (0..10).collect::<Vec<_>>());
    assert!(flushes.load(Ordering::Relaxed) >= 1);
    assert_eq!(h.dropped(), 0);
}

#[test]
fn a_stalled_sink_loses_what_its_queue_cannot_hold_and_counts_it() {
    let (entered_tx, entered) = mpsc::channel();
    let (go, go_rx) = mpsc::channel();
    let (p, seen) = probe(Some((entered_tx, go_rx)), None);
    let mut h = SinkHandle::spawn(p, 4, None).unwrap();
    h.send(Arc::new(0));
    // The worker holds item 0 and waits in write: the queue is empty and has room for 4.
    entered.recv().unwrap();
    for i in 1..=100 {
        h.send(Arc::new(i));
    }
    assert_eq!(h.dropped(), 96, "never waits: what does not fit is counted");
    for _ in 0..5 {
        go.send(()).unwrap();
    }
    h.close();
    assert_eq!(*seen.lock().unwrap(), vec![0, 1, 2, 3, 4]);
    assert_eq!(h.dropped(), 96);
}

#[test]
fn a_closed_destination_counts_everything_after_it() {
    let (p, seen) = probe(None, Some(3));
    let mut h = SinkHandle::spawn(p, 64, None).unwrap();
    for i in 0..10 {
        h.send(Arc::new(i));
    }
    h.close();
    assert_eq!(*seen.lock().unwrap(), vec![0, 1, 2]);
    assert_eq!(h.dropped(), 7);
}
