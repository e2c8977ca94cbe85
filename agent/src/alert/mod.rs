//! The alert bus: the one place alerts are published, numbered and fanned out.
//!
//! Every alert gets a per-node sequence number that grows by one (the agent assigns it here, at
//! the single publish point; the collector keeps the numbers its agents assigned). The bus keeps
//! the last `retention` alerts so a subscriber that reconnects resumes where it stopped. Each
//! subscriber has its own bounded queue: publishing never waits for a subscriber, and a
//! subscriber that falls behind loses alerts, not the others; it then receives a [`Gap`] with
//! the exact number it missed, and the drop is counted against it.

pub mod spool;
#[cfg(test)]
mod tests;

use std::{
    collections::{HashMap, VecDeque},
    sync::{
        Arc, Mutex, MutexGuard,
        atomic::{AtomicU64, Ordering},
    },
};

use tokio::sync::Notify;

/// An item the bus can carry: it belongs to a node and has a per-node sequence number.
pub trait Sequenced: Send + Sync + 'static {
    fn node(&self) -> &str;
    fn seq(&self) -> u64;
    /// Called once by [`Bus::publish_next`] with the number the bus assigned.
    fn assign_seq(&mut self, seq: u64);
}

/// Why alerts were not delivered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GapReason {
    /// The subscriber's queue was full.
    SlowSubscriber,
    /// The start point is older than what is retained.
    NotRetained,
    /// The agent's spool overflowed while the collector was unreachable.
    SpoolOverflow,
}

/// Alerts of `node` in `from_seq..=to_seq` that were not delivered; `missed` of them matched.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Gap {
    pub node: String,
    pub from_seq: u64,
    pub to_seq: u64,
    pub missed: u64,
    pub reason: GapReason,
}

/// What a subscriber receives, in order.
#[derive(Debug)]
pub enum Delivery<T> {
    Alert(Arc<T>),
    Gap(Gap),
}

impl<T> Clone for Delivery<T> {
    fn clone(&self) -> Self {
        match self {
            Delivery::Alert(a) => Delivery::Alert(a.clone()),
            Delivery::Gap(g) => Delivery::Gap(g.clone()),
        }
    }
}

/// Where a subscription starts.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum Start {
    /// Only what is published from now on.
    #[default]
    Live,
    /// Everything retained, then live.
    Retained,
    /// For each listed node, what follows that sequence number; unlisted nodes start with
    /// everything retained.
    After(HashMap<String, u64>),
}

/// A subscriber's predicate, applied at publish time so a gap counts only matching alerts.
pub type Filter<T> = Box<dyn Fn(&T) -> bool + Send + Sync>;

struct Slot<T> {
    id: u64,
    peer: String,
    capacity: usize,
    filter: Filter<T>,
    state: Mutex<SlotState<T>>,
    notify: Notify,
    dropped: AtomicU64,
    delivered: AtomicU64,
}

struct SlotState<T> {
    queue: VecDeque<Delivery<T>>,
    /// Gaps still open (one per node at most), queued once the subscriber has room again or
    /// has read everything before them.
    open_gaps: Vec<Gap>,
}

impl<T> Slot<T> {
    fn lock(&self) -> MutexGuard<'_, SlotState<T>> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

struct Inner<T> {
    retained: VecDeque<Arc<T>>,
    last_seq: HashMap<String, u64>,
    slots: Vec<Arc<Slot<T>>>,
    next_id: u64,
    published: u64,
    duplicates: u64,
    /// Drops of subscribers that have gone, so the total stays right.
    departed_drops: u64,
}

/// A subscriber as [`Bus::status`] reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SubscriberStatus {
    pub id: u64,
    pub peer: String,
    pub queued: u64,
    pub dropped: u64,
    pub delivered: u64,
}

/// Counters for Status and metrics.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BusStatus {
    pub published: u64,
    pub retained: u64,
    pub duplicates: u64,
    /// Alerts any subscriber missed, over all subscribers ever.
    pub dropped: u64,
    pub subscribers: Vec<SubscriberStatus>,
}

pub struct Bus<T> {
    retention: usize,
    inner: Mutex<Inner<T>>,
}

impl<T: Sequenced> Bus<T> {
    /// A bus keeping the last `retention` alerts.
    pub fn new(retention: usize) -> Arc<Self> {
        Arc::new(Bus {
            retention,
            inner: Mutex::new(Inner {
                retained: VecDeque::with_capacity(retention.min(4096)),
                last_seq: HashMap::new(),
                slots: Vec::new(),
                next_id: 1,
                published: 0,
                duplicates: 0,
                departed_drops: 0,
            }),
        })
    }

    fn lock(&self) -> MutexGuard<'_, Inner<T>> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The next alert of `node` gets `first`; later ones count up from it. For an agent whose
    /// numbering survives restarts (its spool remembers where it was).
    pub fn start_numbering_at(&self, node: &str, first: u64) {
        self.lock()
            .last_seq
            .insert(node.to_string(), first.saturating_sub(1));
    }

    /// The last sequence number published for `node` (0 for none).
    pub fn last_seq(&self, node: &str) -> u64 {
        self.lock().last_seq.get(node).copied().unwrap_or(0)
    }

    /// Publishes `item` with the next sequence number of its node (the agent's publish point).
    pub fn publish_next(&self, mut item: T) -> Arc<T> {
        let mut inner = self.lock();
        let last = inner.last_seq.entry(item.node().to_string()).or_insert(0);
        *last += 1;
        item.assign_seq(*last);
        let item = Arc::new(item);
        self.fan_out(&mut inner, item.clone());
        item
    }

    /// Publishes `item` with the number it already has (the collector's publish point). An
    /// item not newer than the last one of its node is a duplicate: dropped, `false`.
    pub fn publish_numbered(&self, item: T) -> bool {
        let mut inner = self.lock();
        let last = inner.last_seq.entry(item.node().to_string()).or_insert(0);
        if item.seq() <= *last {
            inner.duplicates += 1;
            return false;
        }
        *last = item.seq();
        self.fan_out(&mut inner, Arc::new(item));
        true
    }

    /// Passes on a gap from upstream (an agent's spool overflow) to every subscriber, and
    /// moves the node's numbering past it. `false` when it was already passed on.
    pub fn publish_gap(&self, gap: Gap) -> bool {
        let mut inner = self.lock();
        let last = inner.last_seq.entry(gap.node.clone()).or_insert(0);
        if gap.to_seq <= *last {
            inner.duplicates += 1;
            return false;
        }
        *last = gap.to_seq;
        for slot in &inner.slots {
            let mut st = slot.lock();
            flush_gaps(&mut st);
            st.queue.push_back(Delivery::Gap(gap.clone()));
            drop(st);
            slot.notify.notify_one();
        }
        true
    }

    fn fan_out(&self, inner: &mut Inner<T>, item: Arc<T>) {
        inner.published += 1;
        if self.retention > 0 {
            if inner.retained.len() == self.retention {
                inner.retained.pop_front();
            }
            inner.retained.push_back(item.clone());
        }
        for slot in &inner.slots {
            if !(slot.filter)(&item) {
                continue;
            }
            let mut st = slot.lock();
            if st.queue.len() < slot.capacity {
                flush_gaps(&mut st);
                st.queue.push_back(Delivery::Alert(item.clone()));
                drop(st);
                slot.notify.notify_one();
            } else {
                slot.dropped.fetch_add(1, Ordering::Relaxed);
                let (node, seq) = (item.node(), item.seq());
                match st.open_gaps.iter_mut().find(|g| g.node == node) {
                    Some(g) => {
                        g.to_seq = seq;
                        g.missed += 1;
                    }
                    None => st.open_gaps.push(Gap {
                        node: node.to_string(),
                        from_seq: seq,
                        to_seq: seq,
                        missed: 1,
                        reason: GapReason::SlowSubscriber,
                    }),
                }
            }
        }
    }

    /// The retained alerts of `node` numbered after `after`, oldest first.
    pub fn retained_after(&self, node: &str, after: u64) -> Vec<Arc<T>> {
        self.lock()
            .retained
            .iter()
            .filter(|a| a.node() == node && a.seq() > after)
            .cloned()
            .collect()
    }

    /// A start point that delivers the newest `n` retained alerts `filter` accepts, then live
    /// ones: for each node with retained alerts older than those, a cursor at the last of them
    /// (a page that shows the last hours without replaying all that is retained).
    pub fn start_for_newest(&self, n: usize, filter: &dyn Fn(&T) -> bool) -> Start {
        let inner = self.lock();
        let mut taken = 0;
        let mut first_kept = inner.retained.len();
        for (i, a) in inner.retained.iter().enumerate().rev() {
            if taken == n {
                break;
            }
            if filter(a) {
                taken += 1;
            }
            first_kept = i;
        }
        if first_kept == 0 {
            return Start::Retained;
        }
        let mut cursors = HashMap::new();
        for a in inner.retained.iter().take(first_kept) {
            cursors.insert(a.node().to_string(), a.seq());
        }
        Start::After(cursors)
    }

    /// A new subscriber with a queue of `capacity` live alerts (the retained backlog it asks
    /// for is queued whole on top of that).
    pub fn subscribe(
        self: &Arc<Self>,
        peer: impl Into<String>,
        capacity: usize,
        start: &Start,
        filter: Filter<T>,
    ) -> Subscription<T> {
        let mut inner = self.lock();
        let mut queue = VecDeque::new();
        match start {
            Start::Live => {}
            Start::Retained => {
                queue.extend(
                    inner
                        .retained
                        .iter()
                        .filter(|a| filter(a))
                        .map(|a| Delivery::Alert(a.clone())),
                );
            }
            Start::After(cursors) => {
                // For each listed node, say what is no longer retained between its cursor and
                // its oldest retained alert.
                let mut oldest: HashMap<&str, u64> = HashMap::new();
                for a in &inner.retained {
                    oldest.entry(a.node()).or_insert(a.seq());
                }
                let mut nodes: Vec<_> = cursors.iter().collect();
                nodes.sort();
                for (node, &after) in nodes {
                    let last = inner.last_seq.get(node.as_str()).copied().unwrap_or(0);
                    let first_kept = oldest.get(node.as_str()).copied().unwrap_or(last + 1);
                    if after < last && first_kept > after + 1 {
                        queue.push_back(Delivery::Gap(Gap {
                            node: node.clone(),
                            from_seq: after + 1,
                            to_seq: first_kept - 1,
                            missed: first_kept - 1 - after,
                            reason: GapReason::NotRetained,
                        }));
                    }
                }
                queue.extend(
                    inner
                        .retained
                        .iter()
                        .filter(|a| cursors.get(a.node()).is_none_or(|&c| a.seq() > c))
                        .filter(|a| filter(a))
                        .map(|a| Delivery::Alert(a.clone())),
                );
            }
        }
        let id = inner.next_id;
        inner.next_id += 1;
        let slot = Arc::new(Slot {
            id,
            peer: peer.into(),
            capacity: capacity.max(1),
            filter,
            state: Mutex::new(SlotState {
                queue,
                open_gaps: Vec::new(),
            }),
            notify: Notify::new(),
            dropped: AtomicU64::new(0),
            delivered: AtomicU64::new(0),
        });
        inner.slots.push(slot.clone());
        Subscription {
            bus: self.clone(),
            slot,
        }
    }

    pub fn status(&self) -> BusStatus {
        let inner = self.lock();
        let subscribers: Vec<SubscriberStatus> = inner
            .slots
            .iter()
            .map(|s| SubscriberStatus {
                id: s.id,
                peer: s.peer.clone(),
                queued: s.lock().queue.len() as u64,
                dropped: s.dropped.load(Ordering::Relaxed),
                delivered: s.delivered.load(Ordering::Relaxed),
            })
            .collect();
        BusStatus {
            published: inner.published,
            retained: inner.retained.len() as u64,
            duplicates: inner.duplicates,
            dropped: inner.departed_drops + subscribers.iter().map(|s| s.dropped).sum::<u64>(),
            subscribers,
        }
    }
}

fn flush_gaps<T>(st: &mut SlotState<T>) {
    for g in st.open_gaps.drain(..) {
        st.queue.push_back(Delivery::Gap(g));
    }
}

/// One subscriber's end. Dropping it unsubscribes.
pub struct Subscription<T: Sequenced> {
    bus: Arc<Bus<T>>,
    slot: Arc<Slot<T>>,
}

impl<T: Sequenced> Subscription<T> {
    /// The next delivery, if one is queued.
    pub fn try_recv(&self) -> Option<Delivery<T>> {
        let mut st = self.slot.lock();
        let d = match st.queue.pop_front() {
            Some(d) => Some(d),
            // Everything before the gap has been read: the gap is next.
            None if !st.open_gaps.is_empty() => Some(Delivery::Gap(st.open_gaps.remove(0))),
            None => None,
        };
        if matches!(d, Some(Delivery::Alert(_))) {
            self.slot.delivered.fetch_add(1, Ordering::Relaxed);
        }
        d
    }

    /// Waits for the next delivery.
    pub async fn recv(&self) -> Delivery<T> {
        loop {
            let notified = self.slot.notify.notified();
            if let Some(d) = self.try_recv() {
                return d;
            }
            notified.await;
        }
    }

    pub fn id(&self) -> u64 {
        self.slot.id
    }

    /// Alerts this subscriber missed because its queue was full.
    pub fn dropped(&self) -> u64 {
        self.slot.dropped.load(Ordering::Relaxed)
    }
}

impl<T: Sequenced> Drop for Subscription<T> {
    fn drop(&mut self) {
        let mut inner = self.bus.lock();
        inner.slots.retain(|s| s.id != self.slot.id);
        inner.departed_drops += self.slot.dropped.load(Ordering::Relaxed);
    }
}
