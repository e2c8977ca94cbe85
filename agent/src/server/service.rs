//! The `Alerts` service: `Subscribe` and `Status` on agents and the collector, `Push` on the
//! collector.

use std::{
    collections::BTreeMap,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering},
    },
};

use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

use super::{
    AlertBus, ServerError,
    certs::Roles,
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
    /// The node's spool epoch (0: not known yet).
    epoch: u64,
    restarts: u64,
    refused: u64,
}

/// The default bound on how far past a node's high-water mark a pushed alert or gap may reach.
pub const DEFAULT_MAX_SEQ_ADVANCE: u64 = 1 << 32;

/// What only the collector has: who pushes, duplicates, NATS.
#[derive(Default)]
pub struct CollectorState {
    nodes: Mutex<BTreeMap<String, NodeState>>,
    duplicates: AtomicU64,
    nats_errors: AtomicU64,
    refused: AtomicU64,
    /// Items reaching further than this past the node's high-water mark are refused.
    pub max_seq_advance: u64,
    pub nats: Option<NatsSink>,
}

impl CollectorState {
    pub fn new(nats: Option<NatsSink>) -> Self {
        CollectorState {
            nats,
            max_seq_advance: DEFAULT_MAX_SEQ_ADVANCE,
            ..Default::default()
        }
    }

    /// A Hello with `epoch`: true when it starts a new numbering for a node already known.
    fn hello(&self, node: &str, epoch: u64) -> bool {
        self.node(node, |n| {
            n.connected += 1;
            if epoch == 0 {
                return false;
            }
            let restart = n.epoch != 0 && n.epoch != epoch;
            n.epoch = epoch;
            if restart {
                n.restarts += 1;
            }
            restart
        })
    }

    fn refuse(&self, node: &str, why: &str) {
        self.refused.fetch_add(1, Ordering::Relaxed);
        self.node(node, |n| n.refused += 1);
        tracing::warn!(%node, "pushed item refused: {why}");
    }

    /// Why a pushed item of `node` is not to be trusted, if it is not: it reaches too far past
    /// the node's high-water mark `have` (a forged gap would silence the node), or is
    /// malformed.
    fn out_of_window(&self, have: u64, from: u64, to: u64, missed: u64) -> Option<String> {
        if from == 0 || to < from {
            return Some(format!("malformed range {from}..{to}"));
        }
        if missed > to - from + 1 {
            return Some(format!("{missed} missed in a range of {}", to - from + 1));
        }
        // With no high-water mark (the collector restarted, or the node's numbering did), the
        // first item sets it; the range itself is still bounded.
        let base = if have == 0 { from - 1 } else { have };
        (to.saturating_sub(base) > self.max_seq_advance).then(|| {
            format!(
                "sequence {to} is more than {} past the node's high-water mark {have} (--max-seq-advance)",
                self.max_seq_advance
            )
        })
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
    /// Concurrent `Subscribe` streams allowed; more are refused (RESOURCE_EXHAUSTED).
    pub max_subscribers: usize,
    /// The flag or key that sets `max_subscribers`, for the refusal's message.
    pub max_subscribers_flag: &'static str,
    pub active_subscribers: Arc<AtomicUsize>,
}

/// The roles of the client's certificate, when it presented one (mTLS); `None` without TLS
/// client authentication (loopback, or a server without a client CA).
fn peer_roles<T>(req: &Request<T>) -> Result<Option<Roles>, Status> {
    match req.peer_certs() {
        Some(certs) if !certs.is_empty() => Roles::from_der(&certs[0])
            .map(Some)
            .map_err(Status::unauthenticated),
        _ => Ok(None),
    }
}

/// Counts a subscriber for as long as it lives.
struct SubscriberSlot(Arc<AtomicUsize>);

impl Drop for SubscriberSlot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
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
        if let Some(roles) = peer_roles(&req)?
            && !roles.may_read()
        {
            return Err(Status::permission_denied(format!(
                "this client's certificate is a {roles} certificate, which may not read alerts; readers use a reader certificate (`osprey certs --reader NAME`)"
            )));
        }
        let r = req.into_inner();
        let filter = AlertFilter::compile(r.include.as_ref(), r.exclude.as_ref())
            .map_err(|e| Status::invalid_argument(e.to_string()))?;
        let active = self.shared.active_subscribers.clone();
        let max = self.shared.max_subscribers;
        if active.fetch_add(1, Ordering::Relaxed) >= max {
            active.fetch_sub(1, Ordering::Relaxed);
            return Err(Status::resource_exhausted(format!(
                "{max} subscribers already, the limit; raise it with {} or close other subscribers",
                self.shared.max_subscribers_flag
            )));
        }
        let guard = SubscriberSlot(active);
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
            let _guard = guard;
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
        let roles = peer_roles(&req)?;
        if let Some(r) = &roles
            && !r.is_agent()
        {
            return Err(Status::permission_denied(format!(
                "this client's certificate is a {r} certificate, which may not push alerts; agents push with an agent certificate (`osprey certs --node NAME`, or `--fleet`)"
            )));
        }
        let mut inbound = req.into_inner();
        use pb::{push_request::Item as In, push_response::Item as Out};
        let hello = match inbound.message().await {
            Ok(Some(pb::PushRequest {
                item: Some(In::Hello(h)),
            })) => h,
            other => {
                tracing::warn!(%peer, "push stream without a hello: {other:?}");
                return Err(Status::invalid_argument(
                    "a push stream starts with a Hello",
                ));
            }
        };
        let node = hello.node;
        if node.is_empty() {
            return Err(Status::invalid_argument("Hello without a node name"));
        }
        // The certificate decides which node this client pushes as, never the Hello.
        if let Some(r) = &roles
            && !r.may_push_as(&node)
        {
            tracing::warn!(%peer, %node, roles = %r, "push refused: the certificate does not name this node");
            return Err(Status::permission_denied(format!(
                "this client's certificate is a {r} certificate, which may not push as node {node}; issue one for it with `osprey certs --node {node}`"
            )));
        }
        let bus = self.shared.bus.clone();
        if col.hello(&node, hello.epoch) {
            tracing::warn!(%peer, %node, epoch = hello.epoch, "node restarted its numbering (new spool epoch)");
            bus.restart_node(&node);
        }
        let (tx, rx) = mpsc::channel(1024);
        tokio::spawn(async move {
            tracing::info!(%peer, %node, epoch = hello.epoch, "agent connected");
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
                        let have = bus.last_seq(&node);
                        if seq <= have {
                            col.duplicates.fetch_add(1, Ordering::Relaxed);
                        } else if let Some(why) = col.out_of_window(have, seq, seq, 1) {
                            col.refuse(&node, &why);
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
                        let have = bus.last_seq(&node);
                        if g.to_seq <= have {
                            col.duplicates.fetch_add(1, Ordering::Relaxed);
                        } else if let Some(why) =
                            col.out_of_window(have, g.from_seq, g.to_seq, g.missed)
                        {
                            col.refuse(&node, &format!("gap: {why}"));
                        } else {
                            tracing::warn!(%node, from = g.from_seq, to = g.to_seq, missed = g.missed, reason = super::convert::gap_reason_str(&g), "agent reports a gap");
                            bus.publish_gap(gap_from_pb(&g));
                        }
                        g.to_seq
                    }
                    // Another node's item on this stream: refused and acknowledged, so one bad
                    // item cannot jam the stream.
                    Some(In::Alert(a)) => {
                        col.refuse(&node, &format!("an alert of node {:?}", a.node));
                        a.seq
                    }
                    Some(In::Gap(g)) => {
                        col.refuse(&node, &format!("a gap of node {:?}", g.node));
                        g.to_seq
                    }
                    Some(In::Hello(_)) | None => continue,
                };
                ok = tx
                    .send(Ok(reply(Out::Ack(pb::push_response::Ack {
                        seq: ack,
                        have_seq: bus.last_seq(&node),
                    }))))
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
            r.refused = c.refused.load(Ordering::Relaxed);
            let nodes = c.nodes.lock().unwrap_or_else(|e| e.into_inner());
            r.nodes = nodes
                .iter()
                .map(|(n, st)| pb::NodeStatus {
                    node: n.clone(),
                    last_seq: s.bus.last_seq(n),
                    connected: st.connected > 0,
                    received: st.received,
                    epoch: st.epoch,
                    restarts: st.restarts,
                    refused: st.refused,
                })
                .collect();
        }
        Ok(Response::new(r))
    }
}

/// Binds the gRPC address. Off loopback the listener must speak TLS and require client
/// certificates (`flags` names the flags that set the three files, for the message).
pub async fn bind(
    addr: &str,
    tls: &ServerTlsArgs,
    flags: [&'static str; 3],
) -> Result<tokio::net::TcpListener, ServerError> {
    if !is_loopback(addr) {
        let missing: Vec<&str> = [
            tls.tls_cert.is_none(),
            tls.tls_key.is_none(),
            tls.tls_client_ca.is_none(),
        ]
        .iter()
        .zip(flags)
        .filter_map(|(m, f)| m.then_some(f))
        .collect();
        if !missing.is_empty() {
            return Err(ServerError::RemoteWithoutMtls {
                addr: addr.into(),
                missing: missing.join(", "),
            });
        }
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
    // tonic applies its own `tcp_nodelay` only to listeners it binds, never to an incoming
    // stream: the accepted sockets get it here. Without it an alert written while the last
    // one's segment was unacknowledged waited for the reader's delayed ACK (40 ms on Linux):
    // the bench's gRPC tail once read p99 39.8 ms, alerts arriving in batches every 50 ms.
    let incoming = tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true));
    let mut builder = tonic::transport::Server::builder()
        .http2_keepalive_interval(Some(std::time::Duration::from_secs(10)))
        .http2_keepalive_timeout(Some(std::time::Duration::from_secs(10)));
    if let Some(c) = tls.config()? {
        builder = builder.tls_config(c)?;
    }
    builder
        .add_service(pb::alerts_server::AlertsServer::new(service))
        .serve_with_incoming_shutdown(incoming, shutdown)
        .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn off_loopback_a_listener_needs_mtls_and_says_which_flags_are_missing() {
        let flags = ["--tls-cert", "--tls-key", "--tls-client-ca"];
        let e = bind("0.0.0.0:0", &ServerTlsArgs::default(), flags)
            .await
            .unwrap_err()
            .to_string();
        assert!(e.contains("--tls-cert, --tls-key, --tls-client-ca"), "{e}");
        let server_only = ServerTlsArgs {
            tls_cert: Some("c".into()),
            tls_key: Some("k".into()),
            tls_client_ca: None,
        };
        let e = bind("0.0.0.0:0", &server_only, flags)
            .await
            .unwrap_err()
            .to_string();
        assert!(e.contains("missing --tls-client-ca"), "{e}");
        // Loopback: plaintext is fine (local testing).
        assert!(
            bind("127.0.0.1:0", &ServerTlsArgs::default(), flags)
                .await
                .is_ok()
        );
    }

    /// The TCP_NODELAY option of this process's socket whose peer is `peer`, if it has one.
    fn nodelay_of_socket_with_peer(peer: std::net::SocketAddr) -> Option<bool> {
        use std::os::fd::AsRawFd as _;
        for entry in std::fs::read_dir("/proc/self/fd").ok()? {
            let fd: i32 = entry.ok()?.file_name().to_str()?.parse().ok()?;
            // SAFETY: a descriptor of this process borrowed only while the loop looks at it;
            // `ManuallyDrop` keeps it open. A descriptor that is no socket fails peer_addr.
            let sock = std::mem::ManuallyDrop::new(unsafe {
                <std::net::TcpStream as std::os::fd::FromRawFd>::from_raw_fd(fd)
            });
            if sock.peer_addr().ok() != Some(peer) {
                continue;
            }
            let mut on: libc::c_int = 0;
            let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
            // SAFETY: a valid descriptor and an int-sized out value.
            let r = unsafe {
                libc::getsockopt(
                    sock.as_raw_fd(),
                    libc::IPPROTO_TCP,
                    libc::TCP_NODELAY,
                    (&raw mut on).cast(),
                    &mut len,
                )
            };
            return (r == 0).then_some(on != 0);
        }
        None
    }

    /// A subscriber's alerts are small writes, each after the last: with Nagle's algorithm on
    /// the server's socket one waits for the reader's delayed ACK (40 ms on Linux). tonic's
    /// own setting does not reach an incoming stream's sockets (the bug this catches).
    #[tokio::test]
    async fn the_served_connections_send_without_delay() {
        let listener = bind("127.0.0.1:0", &ServerTlsArgs::default(), ["a", "b", "c"])
            .await
            .unwrap();
        let addr = listener.local_addr().unwrap();
        let svc = AlertsService::new(Shared {
            role: "agent",
            node: "n".into(),
            bus: AlertBus::new(0),
            rules_loaded: Default::default(),
            subscriber_queue: 16,
            push: None,
            collector: None,
            metrics: None,
            max_subscribers: 1,
            max_subscribers_flag: "--x",
            active_subscribers: Default::default(),
        });
        let server = tokio::spawn(async move {
            serve(
                listener,
                &ServerTlsArgs::default(),
                svc,
                std::future::pending(),
            )
            .await
        });
        let client = tokio::net::TcpStream::connect(addr).await.unwrap();
        let me = client.local_addr().unwrap();
        let mut nodelay = None;
        for _ in 0..200 {
            nodelay = nodelay_of_socket_with_peer(me);
            if nodelay.is_some() {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        server.abort();
        assert_eq!(nodelay, Some(true), "the server's socket for {me}");
    }

    #[test]
    fn pushed_items_far_past_the_high_water_mark_or_malformed_are_out_of_window() {
        let c = CollectorState {
            max_seq_advance: 1000,
            ..Default::default()
        };
        assert!(c.out_of_window(50, 51, 51, 1).is_none());
        assert!(c.out_of_window(50, 51, 1050, 1000).is_none());
        assert!(c.out_of_window(50, 51, 1051, 1001).is_some());
        assert!(c.out_of_window(50, 60, 55, 1).is_some(), "to before from");
        assert!(
            c.out_of_window(50, 51, 52, 3).is_some(),
            "missed beyond the range"
        );
        assert!(c.out_of_window(50, 0, 0, 0).is_some());
        // No mark yet (a restarted collector): the first item sets it, its range is bounded.
        assert!(c.out_of_window(0, 5000, 5000, 1).is_none());
        assert!(c.out_of_window(0, 1, 1 << 40, 1 << 40).is_some());
    }
}
