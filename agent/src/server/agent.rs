//! The agent's side of the alert stream: its flags, its bus (the publish point `osprey run`
//! calls), its gRPC server and its push to the collector.

use std::sync::{
    Arc,
    atomic::{AtomicU64, Ordering},
};

use super::{
    AlertBus, DEFAULT_ADDR, ServerError, convert,
    push::Pusher,
    service::{self, AlertsService, PushStats, Shared},
    tls::{ClientTlsArgs, ServerTlsArgs},
};
use osprey_engine::output::Alert;

use crate::{alert::spool::Spool, config::GrpcConfig, metrics::Metrics};

/// The publish point of the gRPC stream: the `grpc` sink hands it every alert.
#[derive(Clone)]
pub struct AgentStream {
    bus: Arc<AlertBus>,
    node: String,
    rules_loaded: Arc<AtomicU64>,
}

impl AgentStream {
    /// Numbers the alert and hands it to every subscriber (and the push). Never waits.
    pub fn publish(&self, a: &Alert) {
        self.bus.publish_next(convert::alert_to_pb(a, &self.node));
    }

    pub fn set_rules_loaded(&self, n: usize) {
        self.rules_loaded.store(n as u64, Ordering::Relaxed);
    }
}

/// Starts what the flags ask for: the bus always, the gRPC server, the push.
pub async fn start(
    args: &GrpcConfig,
    hostname: &str,
    metrics: Arc<Metrics>,
) -> Result<AgentStream, ServerError> {
    let server_tls = ServerTlsArgs {
        tls_cert: args.tls.cert.clone(),
        tls_key: args.tls.key.clone(),
        tls_client_ca: args.tls.client_ca.clone(),
    };
    let node = args
        .node_name
        .clone()
        .filter(|n| !n.is_empty())
        .unwrap_or_else(|| hostname.to_string());
    let bus = AlertBus::new(args.retention);
    let rules_loaded = Arc::new(AtomicU64::new(0));

    let push = match &args.collector {
        Some(addr) => {
            let spool = Spool::open(
                &args.spool_dir,
                &node,
                args.spool_max_bytes,
                args.spool_sync_every,
            );
            // A corrupt, foreign or unusable spool never stops the agent: it says so and
            // counts in gaps what it cannot keep.
            for note in spool.notes() {
                tracing::warn!(spool = %args.spool_dir.display(), "{note}");
            }
            // Numbering continues where the last run stopped, so the collector's
            // de-duplication and subscribers' cursors stay right across agent restarts.
            bus.start_numbering_at(&node, spool.next_seq());
            let client_tls = ClientTlsArgs {
                tls_ca: args.collector_ca.clone(),
                tls_cert: args.tls.cert.clone(),
                tls_key: args.tls.key.clone(),
                tls_server_name: None,
            };
            let endpoint = client_tls.endpoint(addr, args.collector_insecure_allow_remote)?;
            let stats = Arc::new(PushStats::default());
            let pusher = Pusher {
                endpoint,
                addr: addr.clone(),
                node: node.clone(),
                bus: bus.clone(),
                subscription: bus.subscribe(
                    format!("push to {addr}"),
                    65_536,
                    &crate::alert::Start::Live,
                    Box::new(|_| true),
                ),
                spool,
                stats: stats.clone(),
                metrics: metrics.clone(),
                replay_floor: 0,
                acked: 0,
            };
            tracing::info!(collector = %addr, spool = %args.spool_dir.display(), backlog = pusher.spool.backlog(), epoch = pusher.spool.epoch(), "pushing alerts");
            tokio::spawn(pusher.run());
            Some(stats)
        }
        None => None,
    };

    if let Some(web_addr) = &args.web {
        super::web::start(
            web_addr,
            &server_tls,
            super::web::WebSource {
                bus: bus.clone(),
                node: node.clone(),
                role: "agent",
                subscriber_queue: args.subscriber_queue,
                metrics: Some(metrics.clone()),
            },
        )
        .await?;
    }

    let explicit = args.listen.is_some();
    let addr = args.listen.clone().unwrap_or_else(|| DEFAULT_ADDR.into());
    if addr != "off" {
        let listener = match service::bind(
            &addr,
            &server_tls,
            ["--tls-cert", "--tls-key", "--tls-client-ca"],
        )
        .await
        {
            Ok(l) => Some(l),
            Err(e @ ServerError::Bind { .. }) if !explicit => {
                tracing::warn!("gRPC alert stream off: {e} (--grpc ADDR picks another address)");
                None
            }
            Err(e) => return Err(e),
        };
        if let Some(listener) = listener {
            let svc = AlertsService::new(Shared {
                role: "agent",
                node: node.clone(),
                bus: bus.clone(),
                rules_loaded: rules_loaded.clone(),
                subscriber_queue: args.subscriber_queue,
                push,
                collector: None,
                metrics: Some(metrics),
                max_subscribers: args.max_subscribers,
                max_subscribers_flag: "--grpc-max-subscribers (grpc.max_subscribers)",
                active_subscribers: Default::default(),
            });
            let tls = server_tls.clone();
            tracing::info!(%addr, %node, tls = tls.tls_cert.is_some(), mtls = tls.tls_client_ca.is_some(), "serving the gRPC alert stream");
            tokio::spawn(async move {
                if let Err(e) = service::serve(listener, &tls, svc, std::future::pending()).await {
                    tracing::error!("gRPC server stopped: {e}");
                }
            });
        }
    }
    Ok(AgentStream {
        bus,
        node,
        rules_loaded,
    })
}
