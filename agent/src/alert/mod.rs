//! The alert bus: the one place alerts are published, numbered and fanned out.
//!
//! Every alert gets a per-node sequence number that grows by one (the agent assigns it here, at
//! the single publish point; the collector keeps the numbers its agents assigned). The bus keeps
//! the last `retention` alerts so a subscriber that reconnects resumes where it stopped. Each
//! subscriber has its own bounded queue: publishing never waits for a subscriber, and a
//! subscriber that falls behind loses alerts, not the others; it then receives a [`Gap`] with
//! the exact number it missed, and the drop is counted against it.
//!
//! Retention is bounded by count and by (estimated) bytes. A subscriber that starts from what
//! is retained does not copy it: it keeps a cursor into the retained alerts and reads them one
//! at a time; what is evicted before it reads it reaches it as a gap.

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
    /// Estimated bytes this item holds in memory (for the retention's byte limit).
    fn size(&self) -> usize {
        0
    }
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
    /// The node's numbering restarted (a new spool epoch).
    NodeRestart,
    /// Spooled alerts that could not be read back, quarantined.
    SpoolCorrupt,
    /// Alerts that could not be written to the spool.
    SpoolWriteFailed,
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

/// One more alert of `node` missed: widens that node's open gap, or opens one.
fn miss(gaps: &mut Vec<Gap>, node: &str, seq: u64, reason: GapReason) {
    match gaps.iter_mut().find(|g| g.node == node) {
        Some(g) => {
            g.to_seq = seq;
            g.missed += 1;
        }
        None => gaps.push(Gap {
            node: node.to_string(),
            from_seq: seq,
            to_seq: seq,
            missed: 1,
            reason,
        }),
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
    /// What is left to read of the retained alerts (read lazily, before `queue`).
    replay: Option<Replay>,
}

/// A subscriber's cursor into the retained alerts: indexes `next..end` are still to read.
struct Replay {
    next: u64,
    end: u64,
    /// Per-node cursors (`Start::After`): alerts at or below them are skipped, and so is what
    /// came before the node's last restart.
    cursors: HashMap<String, u64>,
    skip_before: HashMap<String, u64>,
    /// Retained items evicted before this subscriber read them.
    gaps: Vec<Gap>,
}

impl Replay {
    fn wants<T: Sequenced>(&self, idx: u64, kept: &Kept<T>, filter: &Filter<T>) -> bool {
        let node = kept.node();
        if self.skip_before.get(node).is_some_and(|&b| idx <= b) {
            return false;
        }
        match kept {
            Kept::Alert(a) => self.cursors.get(node).is_none_or(|&c| a.seq() > c) && filter(a),
            Kept::Gap(g) if g.reason == GapReason::NodeRestart => true,
            Kept::Gap(g) => self.cursors.get(node).is_none_or(|&c| g.to_seq > c),
        }
    }
}

impl<T> Slot<T> {
    fn lock(&self) -> MutexGuard<'_, SlotState<T>> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// A retained item: an alert, or a gap from upstream (an agent's lost alerts, a node's
/// restarted numbering), kept in its place for subscribers that resume.
enum Kept<T> {
    Alert(Arc<T>),
    Gap(Gap),
}

impl<T: Sequenced> Kept<T> {
    fn node(&self) -> &str {
        match self {
            Kept::Alert(a) => a.node(),
            Kept::Gap(g) => &g.node,
        }
    }
    fn size(&self) -> usize {
        match self {
            Kept::Alert(a) => a.size(),
            Kept::Gap(g) => 64 + g.node.len(),
        }
    }
}

struct Inner<T> {
    /// Retained items; `retained[i]` has the index `base + i`.
    retained: VecDeque<Kept<T>>,
    base: u64,
    retained_bytes: usize,
    retained_alerts: usize,
    /// The index of each node's last restart notice.
    restarted_at: HashMap<String, u64>,
    last_seq: HashMap<String, u64>,
    slots: Vec<Arc<Slot<T>>>,
    next_id: u64,
    published: u64,
    duplicates: u64,
    /// Drops of subscribers that have gone, so the total stays right.
    departed_drops: u64,
}

impl<T> Inner<T> {
    fn end(&self) -> u64 {
        self.base + self.retained.len() as u64
    }
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
    retention_bytes: usize,
    inner: Mutex<Inner<T>>,
}

impl<T: Sequenced> Bus<T> {
    /// A bus keeping the last `retention` alerts.
    pub fn new(retention: usize) -> Arc<Self> {
        Self::with_limits(retention, usize::MAX)
    }

    /// A bus keeping the last `retention` alerts, and no more than `retention_bytes` of them
    /// (as [`Sequenced::size`] estimates them).
    pub fn with_limits(retention: usize, retention_bytes: usize) -> Arc<Self> {
        Arc::new(Bus {
            retention,
            retention_bytes,
            inner: Mutex::new(Inner {
                retained: VecDeque::with_capacity(retention.min(4096)),
                base: 0,
                retained_bytes: 0,
                retained_alerts: 0,
                restarted_at: HashMap::new(),
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
        if self.retention > 0 {
            self.retain(&mut inner, Kept::Gap(gap.clone()));
        }
        for slot in &inner.slots {
            let mut st = slot.lock();
            flush_gaps(&mut st);
            st.queue.push_back(Delivery::Gap(gap.clone()));
            drop(st);
            slot.notify.notify_one();
        }
        true
    }

    /// The node's numbering restarted (a new epoch): its next alert may have any number, and
    /// every subscriber is told with a [`GapReason::NodeRestart`] gap, also kept in retention
    /// so that a later `Retained` subscriber sees it in its place.
    pub fn restart_node(&self, node: &str) {
        let mut inner = self.lock();
        inner.last_seq.insert(node.to_string(), 0);
        let gap = Gap {
            node: node.to_string(),
            from_seq: 0,
            to_seq: 0,
            missed: 0,
            reason: GapReason::NodeRestart,
        };
        if self.retention > 0 {
            let idx = inner.end();
            inner.restarted_at.insert(node.to_string(), idx);
            self.retain(&mut inner, Kept::Gap(gap.clone()));
        }
        for slot in &inner.slots {
            let mut st = slot.lock();
            flush_gaps(&mut st);
            st.queue.push_back(Delivery::Gap(gap.clone()));
            drop(st);
            slot.notify.notify_one();
        }
    }

    /// Appends to the retention and evicts what exceeds its limits; a subscriber still to
    /// read an evicted item gets it counted in a gap.
    fn retain(&self, inner: &mut Inner<T>, kept: Kept<T>) {
        inner.retained_bytes += kept.size();
        if matches!(kept, Kept::Alert(_)) {
            inner.retained_alerts += 1;
        }
        inner.retained.push_back(kept);
        while inner.retained.len() > self.retention
            || (inner.retained_bytes > self.retention_bytes && inner.retained.len() > 1)
        {
            let Some(old) = inner.retained.pop_front() else {
                break;
            };
            let idx = inner.base;
            inner.base += 1;
            inner.retained_bytes = inner.retained_bytes.saturating_sub(old.size());
            if matches!(old, Kept::Alert(_)) {
                inner.retained_alerts -= 1;
            }
            for slot in &inner.slots {
                let mut st = slot.lock();
                let Some(r) = st.replay.as_mut() else {
                    continue;
                };
                if r.next != idx || idx >= r.end {
                    continue;
                }
                r.next = idx + 1;
                if !r.wants(idx, &old, &slot.filter) {
                    continue;
                }
                match &old {
                    Kept::Alert(a) => {
                        slot.dropped.fetch_add(1, Ordering::Relaxed);
                        miss(&mut r.gaps, a.node(), a.seq(), GapReason::NotRetained);
                    }
                    Kept::Gap(g) => r.gaps.push(g.clone()),
                }
            }
        }
    }

    fn fan_out(&self, inner: &mut Inner<T>, item: Arc<T>) {
        inner.published += 1;
        if self.retention > 0 {
            self.retain(inner, Kept::Alert(item.clone()));
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
                miss(
                    &mut st.open_gaps,
                    item.node(),
                    item.seq(),
                    GapReason::SlowSubscriber,
                );
            }
        }
    }

    /// The retained alerts of `node` numbered after `after`, oldest first.
    pub fn retained_after(&self, node: &str, after: u64) -> Vec<Arc<T>> {
        self.lock()
            .retained
            .iter()
            .filter_map(|k| match k {
                Kept::Alert(a) if a.node() == node && a.seq() > after => Some(a.clone()),
                _ => None,
            })
            .collect()
    }

    /// A start point that delivers the newest `n` retained alerts `filter` accepts, then live
    /// ones: for each node with retained alerts older than those, a cursor at the last of them
    /// (a page that shows the last hours without replaying all that is retained).
    pub fn start_for_newest(&self, n: usize, filter: &dyn Fn(&T) -> bool) -> Start {
        let inner = self.lock();
        let mut taken = 0;
        let mut first_kept = inner.retained.len();
        for (i, k) in inner.retained.iter().enumerate().rev() {
            if taken == n {
                break;
            }
            if matches!(k, Kept::Alert(a) if filter(a)) {
                taken += 1;
            }
            first_kept = i;
        }
        if first_kept == 0 {
            return Start::Retained;
        }
        let mut cursors = HashMap::new();
        for k in inner.retained.iter().take(first_kept) {
            let last = match k {
                Kept::Alert(a) => a.seq(),
                Kept::Gap(g) => g.to_seq,
            };
            cursors.insert(k.node().to_string(), last);
        }
        Start::After(cursors)
    }

    /// A new subscriber with a queue of `capacity` live alerts. The retained backlog it asks
    /// for is read lazily from the retention, not copied.
    pub fn subscribe(
        self: &Arc<Self>,
        peer: impl Into<String>,
        capacity: usize,
        start: &Start,
        filter: Filter<T>,
    ) -> Subscription<T> {
        let mut inner = self.lock();
        let mut queue: VecDeque<Delivery<T>> = VecDeque::new();
        let replay = match start {
            Start::Live => None,
            Start::Retained => Some(Replay {
                next: inner.base,
                end: inner.end(),
                cursors: HashMap::new(),
                skip_before: HashMap::new(),
                gaps: Vec::new(),
            }),
            Start::After(cursors) => {
                // A node's cursor counts in its current numbering: what came before its last
                // restart is not for it.
                let skip_before: HashMap<String, u64> = cursors
                    .keys()
                    .filter_map(|n| inner.restarted_at.get(n).map(|&i| (n.clone(), i)))
                    .collect();
                // For each listed node, say what is no longer retained between its cursor and
                // its oldest retained alert.
                let mut oldest: HashMap<&str, u64> = HashMap::new();
                for (i, k) in inner.retained.iter().enumerate() {
                    let idx = inner.base + i as u64;
                    if let Kept::Alert(a) = k
                        && skip_before.get(a.node()).is_none_or(|&b| idx > b)
                    {
                        oldest.entry(a.node()).or_insert(a.seq());
                    }
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
                Some(Replay {
                    next: inner.base,
                    end: inner.end(),
                    cursors: cursors.clone(),
                    skip_before,
                    gaps: Vec::new(),
                })
            }
        };
        // The gaps computed at subscription come first, then the replay, then live alerts.
        let (pre, queue) = (queue, VecDeque::new());
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
                replay: replay.map(|mut r| {
                    r.gaps = pre
                        .into_iter()
                        .filter_map(|d| match d {
                            Delivery::Gap(g) => Some(g),
                            Delivery::Alert(_) => None,
                        })
                        .collect();
                    r
                }),
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
                queued: {
                    let st = s.lock();
                    st.queue.len() as u64
                        + st.replay
                            .as_ref()
                            .map_or(0, |r| r.end.saturating_sub(r.next))
                },
                dropped: s.dropped.load(Ordering::Relaxed),
                delivered: s.delivered.load(Ordering::Relaxed),
            })
            .collect();
        BusStatus {
            published: inner.published,
            retained: inner.retained_alerts as u64,
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
        if let Some(d) = self.next_replayed() {
            if matches!(d, Delivery::Alert(_)) {
                self.slot.delivered.fetch_add(1, Ordering::Relaxed);
            }
            return Some(d);
        }
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

    /// The next retained item this subscriber asked for, read from the bus's retention.
    fn next_replayed(&self) -> Option<Delivery<T>> {
        // Not replaying (the usual case): no need for the bus's lock.
        self.slot.lock().replay.as_ref()?;
        // Bus first, then the slot: the order the publishers take them in.
        let inner = self.bus.lock();
        let mut st = self.slot.lock();
        let r = st.replay.as_mut()?;
        if !r.gaps.is_empty() {
            return Some(Delivery::Gap(r.gaps.remove(0)));
        }
        r.next = r.next.max(inner.base);
        while r.next < r.end {
            let idx = r.next;
            r.next += 1;
            let Some(k) = inner.retained.get((idx - inner.base) as usize) else {
                break;
            };
            if r.wants(idx, k, &self.slot.filter) {
                return Some(match k {
                    Kept::Alert(a) => Delivery::Alert(a.clone()),
                    Kept::Gap(g) => Delivery::Gap(g.clone()),
                });
            }
        }
        st.replay = None;
        None
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
