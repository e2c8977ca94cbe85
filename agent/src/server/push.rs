//! The agent's push to the collector. Every alert of this node goes through the on-disk spool;
//! the collector's acknowledgements empty it. After a (re)connect the collector says what it
//! already has (`Welcome`), and the agent sends what follows: from its retained alerts when the
//! collector starts empty (it restarted, and subscribers resuming from it need them), then
//! from the spool. The collector drops duplicates by (node, sequence).

use std::{
    collections::VecDeque,
    sync::{Arc, atomic::Ordering},
    time::Duration,
};

use prost::Message as _;
use tokio::{sync::mpsc, time::Instant};
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Streaming, transport::Endpoint};

use super::{
    AlertBus,
    convert::gap_to_pb,
    pb::{self, push_request::Item as In, push_response::Item as Out},
    service::PushStats,
};
use crate::{
    alert::{
        Delivery, Subscription,
        spool::{Entry, Spool},
    },
    metrics::Metrics,
};

/// How often written spool entries are fsynced at the latest.
const SYNC_INTERVAL: Duration = Duration::from_millis(200);

pub struct Pusher {
    pub endpoint: Endpoint,
    pub addr: String,
    pub node: String,
    pub bus: Arc<AlertBus>,
    /// Subscribed to the bus before the first alert, so the spool sees every one.
    pub subscription: Subscription<pb::Alert>,
    pub spool: Spool,
    pub stats: Arc<PushStats>,
    pub metrics: Arc<Metrics>,
    /// Retained alerts up to here are not replayed to a collector that starts empty: it
    /// acknowledged them before this node changed its epoch.
    pub replay_floor: u64,
    /// The highest sequence number the collector acknowledged.
    pub acked: u64,
}

struct Conn {
    tx: mpsc::Sender<pb::PushRequest>,
    rx: Streaming<pb::PushResponse>,
    /// The highest sequence number sent (or known to the collector) on this connection.
    sent_upto: u64,
    /// Retained alerts to send first to a collector that starts empty.
    replay: VecDeque<Arc<pb::Alert>>,
}

async fn connect(p: &Pusher) -> Result<Conn, String> {
    let channel = p.endpoint.connect().await.map_err(|e| {
        format!(
            "{e}: {}",
            std::error::Error::source(&e).map_or(String::new(), |s| s.to_string())
        )
    })?;
    let mut client = pb::alerts_client::AlertsClient::new(channel);
    let (tx, rx) = mpsc::channel(256);
    tx.send(pb::PushRequest {
        item: Some(In::Hello(pb::push_request::Hello {
            node: p.node.clone(),
            version: env!("CARGO_PKG_VERSION").into(),
            epoch: p.spool.epoch(),
        })),
    })
    .await
    .map_err(|e| e.to_string())?;
    let mut inbound = client
        .push(ReceiverStream::new(rx))
        .await
        .map_err(|e| match e.code() {
            tonic::Code::PermissionDenied => format!("refused by the collector: {}", e.message()),
            _ => e.to_string(),
        })?
        .into_inner();
    let have_seq = match tokio::time::timeout(Duration::from_secs(10), inbound.message()).await {
        Ok(Ok(Some(pb::PushResponse {
            item: Some(Out::Welcome(w)),
        }))) => w.have_seq,
        other => return Err(format!("no welcome from the collector: {other:?}")),
    };
    // The collector claims more of this node than it ever numbered: its high-water mark was
    // raised by something else (a forged gap). A new epoch makes it forget that mark.
    let numbered = p.bus.last_seq(&p.node);
    if have_seq > numbered {
        return Err(format!(
            "the collector's high-water mark for {} ({have_seq}) is past anything this node numbered ({numbered}); starting a new epoch",
            p.node
        ));
    }
    let first_spooled = p.spool.first().unwrap_or(u64::MAX);
    let replay = p
        .bus
        .retained_after(&p.node, have_seq.max(p.replay_floor))
        .into_iter()
        .filter(|a| a.seq < first_spooled)
        .collect();
    Ok(Conn {
        tx,
        rx: inbound,
        sent_upto: have_seq,
        replay,
    })
}

/// The next request to send on `c`, if any, advancing its cursor. A spooled alert that cannot
/// be read back, or is not this node's, is quarantined and sent as a gap instead.
fn next_request(c: &mut Conn, spool: &mut Spool, node: &str) -> Option<pb::PushRequest> {
    while let Some(a) = c.replay.pop_front() {
        if a.seq > c.sent_upto {
            c.sent_upto = a.seq;
            return Some(pb::PushRequest {
                item: Some(In::Alert((*a).clone())),
            });
        }
    }
    let (key, entry) = spool.next_after(c.sent_upto)?;
    let item = match entry {
        Entry::Alert(_) => {
            let checked = spool.read_alert(key).and_then(|data| {
                let a = pb::Alert::decode(&data[..]).map_err(|e| format!("undecodable: {e}"))?;
                if a.node != node {
                    return Err(format!("an alert of node {:?}", a.node));
                }
                if a.seq != key {
                    return Err(format!("numbered {} in a file for {key}", a.seq));
                }
                Ok(a)
            });
            match checked {
                Ok(a) => In::Alert(a),
                Err(why) => {
                    let g = unsent_part(spool.quarantine(key, &why), c.sent_upto);
                    c.sent_upto = g.to_seq;
                    return Some(pb::PushRequest {
                        item: Some(In::Gap(gap_to_pb(&g))),
                    });
                }
            }
        }
        Entry::Gap(ref g) => In::Gap(gap_to_pb(&unsent_part(g.clone(), c.sent_upto))),
    };
    c.sent_upto = entry.end(key);
    Some(pb::PushRequest { item: Some(item) })
}

/// A spooled gap may have grown (merged) after its first part was sent: only what follows
/// `sent_upto` is sent again, so no alert is counted twice. Spooled gaps miss every number in
/// their range.
fn unsent_part(mut g: crate::alert::Gap, sent_upto: u64) -> crate::alert::Gap {
    if g.from_seq <= sent_upto {
        let sent = sent_upto + 1 - g.from_seq;
        g.from_seq = sent_upto + 1;
        g.missed = g.missed.saturating_sub(sent);
    }
    g
}

fn has_next(c: &Conn, spool: &Spool) -> bool {
    c.replay.iter().any(|a| a.seq > c.sent_upto) || spool.next_after(c.sent_upto).is_some()
}

impl Pusher {
    fn record(&mut self, d: Delivery<pb::Alert>) {
        match d {
            Delivery::Alert(a) => self.spool.push_alert(a.seq, &a.encode_to_vec()),
            Delivery::Gap(g) => {
                tracing::warn!(
                    missed = g.missed,
                    "the push queue fell behind; the collector gets a gap"
                );
                self.spool.push_gap(&g);
            }
        }
        self.update_stats();
    }

    fn update_stats(&self) {
        let backlog = self.spool.backlog();
        self.stats.backlog.store(backlog, Ordering::Relaxed);
        // Every alert lost on the way to the collector, each inside a gap: the push queue
        // fell behind, the spool overflowed, could not write, or quarantined an entry.
        let dropped = self.spool.lost() + self.subscription.dropped();
        let before = self.stats.spool_dropped.swap(dropped, Ordering::Relaxed);
        if dropped > before {
            self.metrics.queue_drop("spool", dropped - before);
        }
        self.metrics
            .push_backlog
            .set(i64::try_from(backlog).unwrap_or(i64::MAX));
    }

    /// Runs until the process ends: spools, sends, reconnects with backoff.
    pub async fn run(mut self) {
        let mut conn: Option<Conn> = None;
        let mut backoff = Duration::from_millis(200);
        let mut retry_at = Instant::now();
        let mut failures = 0u32;
        let mut sync_tick = tokio::time::interval(SYNC_INTERVAL);
        sync_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            if conn.is_none() && Instant::now() >= retry_at {
                match connect(&self).await {
                    Ok(c) => {
                        tracing::info!(collector = %self.addr, have_seq = c.sent_upto, backlog = self.spool.backlog(), "connected to the collector");
                        self.stats.connected.store(true, Ordering::Relaxed);
                        conn = Some(c);
                        backoff = Duration::from_millis(200);
                        failures = 0;
                    }
                    Err(e) if e.contains("starting a new epoch") => {
                        tracing::warn!(collector = %self.addr, "{e}");
                        self.replay_floor = self.replay_floor.max(self.acked);
                        let epoch = self.spool.new_epoch();
                        tracing::info!(epoch, "new spool epoch");
                        retry_at = Instant::now();
                    }
                    Err(e) => {
                        failures += 1;
                        // Say it the first time and then every so often, not on every retry.
                        if failures == 1 || failures.is_power_of_two() {
                            tracing::warn!(collector = %self.addr, backlog = self.spool.backlog(), "collector unreachable, spooling: {e}");
                        }
                        retry_at = Instant::now() + backoff;
                        backoff = (backoff * 2).min(Duration::from_secs(5));
                    }
                }
            }
            let sending = conn.as_ref().is_some_and(|c| has_next(c, &self.spool));
            let tx = conn.as_ref().map(|c| c.tx.clone());
            let mut lost = false;
            tokio::select! {
                d = self.subscription.recv() => self.record(d),
                _ = sync_tick.tick(), if self.spool.needs_sync() => self.spool.sync(),
                r = async { conn.as_mut().expect("guarded").rx.message().await }, if conn.is_some() => {
                    match r {
                        Ok(Some(pb::PushResponse { item: Some(Out::Ack(a)) })) => {
                            let numbered = self.bus.last_seq(&self.node);
                            if a.have_seq > numbered {
                                // Not applied: the collector may have dropped it as a
                                // duplicate of what a forged gap claimed.
                                tracing::warn!(collector = %self.addr, have_seq = a.have_seq, numbered, "the collector's high-water mark for this node is past anything it numbered (a forged gap?): starting a new epoch and re-sending what is not acknowledged");
                                self.replay_floor = self.replay_floor.max(self.acked);
                                let epoch = self.spool.new_epoch();
                                tracing::info!(epoch, "new spool epoch");
                                lost = true;
                            } else {
                                self.acked = self.acked.max(a.seq);
                                self.spool.ack(a.seq);
                                self.update_stats();
                            }
                        }
                        Ok(Some(_)) => {}
                        Ok(None) => lost = true,
                        Err(e) => {
                            tracing::warn!(collector = %self.addr, "push stream broken: {e}");
                            lost = true;
                        }
                    }
                }
                permit = async { tx.as_ref().expect("guarded").reserve().await }, if sending => {
                    match (permit, conn.as_mut()) {
                        (Ok(permit), Some(c)) => {
                            if let Some(req) = next_request(c, &mut self.spool, &self.node) {
                                permit.send(req);
                            }
                            self.update_stats();
                        }
                        _ => lost = true,
                    }
                }
                () = tokio::time::sleep_until(retry_at), if conn.is_none() => {}
            }
            if lost {
                conn = None;
                self.stats.connected.store(false, Ordering::Relaxed);
                retry_at = Instant::now() + backoff;
            }
        }
    }
}
