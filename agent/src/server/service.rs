//! The `Alerts` service: `Subscribe` and `Status` on agents and the collector, `Push` on the
//! collector.

use std::{
    collections::BTreeMap,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
};

use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

use super::{
    AlertBus, ServerError,
    convert::{gap_from_pb, gap_to_pb},
    filter::AlertFilter,
    nats::NatsSink,
    pb::{self, alerts_server::Alerts},
    tls::{ServerTlsArgs, is_loopback},
};
use crate::{
    alert::{Delivery, Start},
    metrics::Metrics,
};

/// The agent's push counters, shown by Status and metrics.
#[derive(Debug, Default)]
pub struct PushStats {
    pub backlog: AtomicU64,
    pub spool_dropped: AtomicU64,
    pub connected: AtomicBool,
}

#[derive(Debug, Default)]
struct NodeState {
    connected: u32,
    received: u64,
}

/// What only the collector has: who pushes, duplicates, NATS.
#[derive(Default)]
pub struct CollectorState {
    nodes: Mutex<BTreeMap<String, NodeState>>,
    duplicates: AtomicU64,
    nats_errors: AtomicU64,
    pub nats: Option<NatsSink>,
}

impl CollectorState {
    pub fn new(nats: Option<NatsSink>) -> Self {
        CollectorState {
            nats,
            ..Default::default()
        }
    }

    fn node<R>(&self, node: &str, f: impl FnOnce(&mut NodeState) -> R) -> R {
        let mut nodes = self.nodes.lock().unwrap_or_else(|e| e.into_inner());
        f(nodes.entry(node.to_string()).or_default())
    }
}

/// Everything the service reads.
pub struct Shared {
    /// "agent" or "collector".
    pub role: &'static str,
    pub node: String,
    pub bus: Arc<AlertBus>,
    pub rules_loaded: Arc<AtomicU64>,
    /// Live alerts a subscriber may have queued before it gets a gap.
    pub subscriber_queue: usize,
    pub push: Option<Arc<PushStats>>,
    pub collector: Option<Arc<CollectorState>>,
    pub metrics: Option<Arc<Metrics>>,
}

#[derive(Clone)]
pub struct AlertsService {
    shared: Arc<Shared>,
}

impl AlertsService {
    pub fn new(shared: Shared) -> Self {
        AlertsService {
            shared: Arc::new(shared),
        }
    }

    pub fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }
}

fn start_of(s: Option<pb::StartPoint>) -> Start {
    use pb::start_point::From;
    match s.and_then(|s| s.from) {
        None | Some(From::Live(_)) => Start::Live,
        Some(From::Retained(_)) => Start::Retained,
        Some(From::After(a)) => Start::After(a.seq.into_iter().collect()),
    }
}

fn item(d: Delivery<pb::Alert>) -> pb::StreamItem {
    pb::StreamItem {
        item: Some(match d {
            Delivery::Alert(a) => pb::stream_item::Item::Alert((*a).clone()),
            Delivery::Gap(g) => pb::stream_item::Item::Gap(gap_to_pb(&g)),
        }),
    }
}

#[tonic::async_trait]
impl Alerts for AlertsService {
    type SubscribeStream = ReceiverStream<Result<pb::StreamItem, Status>>;
    type PushStream = ReceiverStream<Result<pb::PushResponse, Status>>;

    async fn subscribe(
        &self,
        req: Request<pb::SubscribeRequest>,
    ) -> Result<Response<Self::SubscribeStream>, Status> {
        let peer = req
            .remote_addr()
            .map_or_else(|| "unknown".to_string(), |a| a.to_string());
        let r = req.into_inner();
        let filter = AlertFilter::compile(r.include.as_ref(), r.exclude.as_ref())
            .map_err(|e| Status::invalid_argument(e.to_string()))?;
        let sub = self.shared.bus.subscribe(
            peer.clone(),
            self.shared.subscriber_queue,
            &start_of(r.start),
            Box::new(move |a| filter.matches(a)),
        );
        tracing::info!(%peer, id = sub.id(), "subscriber connected");
        let metrics = self.shared.metrics.clone();
        if let Some(m) = &metrics {
            m.subscribers.inc();
        }
        // The bus queue is where a slow reader loses alerts (and gets its gap); this channel
        // only hands items to the HTTP/2 stream.
        let (tx, rx) = mpsc::channel(64);
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    d = sub.recv() => {
                        if tx.send(Ok(item(d))).await.is_err() {
                            break;
                        }
                    }
                    () = tx.closed() => break,
                }
            }
            if let Some(m) = &metrics {
                m.subscribers.dec();
                m.queue_drop("subscriber", sub.dropped());
            }
            tracing::info!(%peer, id = sub.id(), dropped = sub.dropped(), "subscriber gone");
        });
        Ok(Response::new(ReceiverStream::new(rx)))
    }

    async fn push(
        &self,
        req: Request<Streaming<pb::PushRequest>>,
    ) -> Result<Response<Self::PushStream>, Status> {
        let Some(col) = self.shared.collector.clone() else {
            return Err(Status::unimplemented(
                "this is an agent; agents push to `osprey collector`",
            ));
        };
        let peer = req
            .remote_addr()
            .map_or_else(|| "unknown".to_string(), |a| a.to_string());
        let mut inbound = req.into_inner();
        let bus = self.shared.bus.clone();
        let (tx, rx) = mpsc::channel(1024);
        tokio::spawn(async move {
            use pb::{push_request::Item as In, push_response::Item as Out};
            let node = match inbound.message().await {
                Ok(Some(pb::PushRequest {
                    item: Some(In::Hello(h)),
                })) => h.node,
                other => {
                    tracing::warn!(%peer, "push stream without a hello: {other:?}");
                    return;
                }
            };
            col.node(&node, |n| n.connected += 1);
            tracing::info!(%peer, %node, "agent connected");
            let reply = |item| pb::PushResponse { item: Some(item) };
            let have_seq = bus.last_seq(&node);
            let mut ok = tx
                .send(Ok(reply(Out::Welcome(pb::push_response::Welcome {
                    have_seq,
                }))))
                .await
                .is_ok();
            while ok {
                let msg = match inbound.message().await {
                    Ok(Some(m)) => m,
                    Ok(None) => break,
                    Err(e) => {
                        tracing::info!(%node, "push stream ended: {e}");
                        break;
                    }
                };
                let ack = match msg.item {
                    Some(In::Alert(a)) if a.node == node => {
                        let seq = a.seq;
                        if seq <= bus.last_seq(&node) {
                            col.duplicates.fetch_add(1, Ordering::Relaxed);
                        } else {
                            // Stored by JetStream before it is acknowledged to the agent:
                            // a NATS failure leaves it in the agent's spool.
                            if let Some(nats) = &col.nats
                                && let Err(e) = nats.publish(&a).await
                            {
                                col.nats_errors.fetch_add(1, Ordering::Relaxed);
                                tracing::warn!(%node, seq, "NATS publish failed; agent will re-send: {e}");
                                break;
                            }
                            if !bus.publish_numbered(a) {
                                col.duplicates.fetch_add(1, Ordering::Relaxed);
                            }
                            col.node(&node, |n| n.received += 1);
                        }
                        seq
                    }
                    Some(In::Gap(g)) if g.node == node => {
                        tracing::warn!(%node, from = g.from_seq, to = g.to_seq, missed = g.missed, "agent reports a gap");
                        bus.publish_gap(gap_from_pb(&g));
                        g.to_seq
                    }
                    Some(In::Alert(_) | In::Gap(_)) => {
                        tracing::warn!(%node, "push item for another node; closing the stream");
                        break;
                    }
                    Some(In::Hello(_)) | None => continue,
                };
                ok = tx
                    .send(Ok(reply(Out::Ack(pb::push_response::Ack { seq: ack }))))
                    .await
                    .is_ok();
            }
            col.node(&node, |n| n.connected = n.connected.saturating_sub(1));
            tracing::info!(%peer, %node, "agent disconnected");
        });
        Ok(Response::new(ReceiverStream::new(rx)))
    }

    async fn status(
        &self,
        _req: Request<pb::StatusRequest>,
    ) -> Result<Response<pb::StatusResponse>, Status> {
        let s = &self.shared;
        let b = s.bus.status();
        let mut r = pb::StatusResponse {
            version: env!("CARGO_PKG_VERSION").into(),
            role: s.role.into(),
            node: s.node.clone(),
            rules_loaded: s.rules_loaded.load(Ordering::Relaxed),
            published: b.published,
            retained: b.retained,
            subscribers: b
                .subscribers
                .iter()
                .map(|x| pb::SubscriberStatus {
                    id: x.id,
                    peer: x.peer.clone(),
                    queued: x.queued,
                    dropped: x.dropped,
                    delivered: x.delivered,
                })
                .collect(),
            subscriber_drops: b.dropped,
            duplicates: b.duplicates,
            ..Default::default()
        };
        if let Some(p) = &s.push {
            r.push_backlog = p.backlog.load(Ordering::Relaxed);
            r.spool_dropped = p.spool_dropped.load(Ordering::Relaxed);
            r.collector_connected = p.connected.load(Ordering::Relaxed);
        }
        if let Some(c) = &s.collector {
            r.duplicates += c.duplicates.load(Ordering::Relaxed);
            r.nats_errors = c.nats_errors.load(Ordering::Relaxed);
            let nodes = c.nodes.lock().unwrap_or_else(|e| e.into_inner());
            r.nodes = nodes
                .iter()
                .map(|(n, st)| pb::NodeStatus {
                    node: n.clone(),
                    last_seq: s.bus.last_seq(n),
                    connected: st.connected > 0,
                    received: st.received,
                    ..Default::default()
                })
                .collect();
        }
        Ok(Response::new(r))
    }
}

/// Binds the gRPC address; plaintext only on loopback unless `allow_plaintext_remote`.
pub async fn bind(
    addr: &str,
    tls: &ServerTlsArgs,
    allow_plaintext_remote: bool,
    flag: &'static str,
) -> Result<tokio::net::TcpListener, ServerError> {
    if tls.tls_cert.is_none() && !is_loopback(addr) && !allow_plaintext_remote {
        return Err(ServerError::PlaintextRemote {
            addr: addr.into(),
            flag,
        });
    }
    let sa = super::resolve(addr)?;
    tokio::net::TcpListener::bind(sa)
        .await
        .map_err(|source| ServerError::Bind {
            addr: addr.into(),
            source,
        })
}

/// Serves the service on `listener` until `shutdown` completes.
pub async fn serve(
    listener: tokio::net::TcpListener,
    tls: &ServerTlsArgs,
    service: AlertsService,
    shutdown: impl std::future::Future<Output = ()> + Send,
) -> Result<(), ServerError> {
    let mut builder = tonic::transport::Server::builder()
        .tcp_nodelay(true)
        .http2_keepalive_interval(Some(std::time::Duration::from_secs(10)))
        .http2_keepalive_timeout(Some(std::time::Duration::from_secs(10)));
    if let Some(c) = tls.config()? {
        builder = builder.tls_config(c)?;
    }
    builder
        .add_service(pb::alerts_server::AlertsServer::new(service))
        .serve_with_incoming_shutdown(
            tokio_stream::wrappers::TcpListenerStream::new(listener),
            shutdown,
        )
        .await?;
    Ok(())
}
