//! The agent's side of the alert stream: its flags, its bus (the publish point `osprey run`
//! calls), its gRPC server and its push to the collector.

use std::{
    path::PathBuf,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
};

use super::{
    AlertBus, DEFAULT_ADDR, ServerError, convert,
    push::Pusher,
    service::{self, AlertsService, PushStats, Shared},
    tls::{ClientTlsArgs, ServerTlsArgs},
};
use osprey_engine::output::Alert;

use crate::{alert::spool::Spool, metrics::Metrics};

#[derive(Debug, clap::Args)]
pub struct GrpcArgs {
    /// Serve the gRPC alert stream (Subscribe, Status) here; `off` turns it off. Without the
    /// flag: 127.0.0.1:7443, and if that port is taken the agent runs on and says so.
    /// Anything but loopback needs --tls-cert/--tls-key (or --grpc-insecure-allow-remote).
    #[arg(long, env = "OSPREY_GRPC")]
    pub grpc: Option<String>,
    #[command(flatten)]
    pub tls: ServerTlsArgs,
    /// Serve plaintext gRPC on a non-loopback address.
    #[arg(long)]
    pub grpc_insecure_allow_remote: bool,
    /// This node's name in alerts, sequence numbers and the collector (default: the host name).
    #[arg(long, env = "OSPREY_NODE_NAME")]
    pub node_name: Option<String>,
    /// Alerts kept in memory for subscribers that reconnect.
    #[arg(long, default_value_t = 10_000)]
    pub grpc_retention: usize,
    /// Live alerts a subscriber may have queued before it is sent a gap instead.
    #[arg(long, default_value_t = 4096)]
    pub grpc_subscriber_queue: usize,
    /// Push every alert to this collector (`osprey collector`), `host:port`.
    #[arg(long, env = "OSPREY_COLLECTOR")]
    pub collector: Option<String>,
    /// CA bundle (PEM) that signs the collector's certificate; turns TLS on for the push (the
    /// agent presents --tls-cert/--tls-key as its client certificate).
    #[arg(long, env = "OSPREY_TLS_CA")]
    pub tls_ca: Option<PathBuf>,
    /// Push to a collector in plaintext on a non-loopback address.
    #[arg(long)]
    pub collector_insecure_allow_remote: bool,
    /// Alerts the collector has not acknowledged are kept here (and survive restarts).
    #[arg(
        long,
        env = "OSPREY_SPOOL_DIR",
        default_value = "/var/lib/osprey/spool"
    )]
    pub spool_dir: PathBuf,
    /// The spool's size limit; beyond it the oldest alerts give way to a counted gap.
    #[arg(long, default_value_t = 256 << 20)]
    pub spool_max_bytes: u64,
}

/// The publish point `osprey run` hands every alert to.
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
    args: &GrpcArgs,
    hostname: &str,
    metrics: Arc<Metrics>,
) -> Result<AgentStream, ServerError> {
    let node = args
        .node_name
        .clone()
        .filter(|n| !n.is_empty())
        .unwrap_or_else(|| hostname.to_string());
    let bus = AlertBus::new(args.grpc_retention);
    let rules_loaded = Arc::new(AtomicU64::new(0));

    let push = match &args.collector {
        Some(addr) => {
            let spool = Spool::open(&args.spool_dir, &node, args.spool_max_bytes)?;
            // Numbering continues where the last run stopped, so the collector's
            // de-duplication and subscribers' cursors stay right across agent restarts.
            bus.start_numbering_at(&node, spool.next_seq());
            let client_tls = ClientTlsArgs {
                tls_ca: args.tls_ca.clone(),
                tls_cert: args.tls.tls_cert.clone(),
                tls_key: args.tls.tls_key.clone(),
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
            };
            tracing::info!(collector = %addr, spool = %args.spool_dir.display(), backlog = pusher.spool.backlog(), "pushing alerts");
            tokio::spawn(pusher.run());
            Some(stats)
        }
        None => None,
    };

    let explicit = args.grpc.is_some();
    let addr = args.grpc.clone().unwrap_or_else(|| DEFAULT_ADDR.into());
    if addr != "off" {
        let listener = match service::bind(
            &addr,
            &args.tls,
            args.grpc_insecure_allow_remote,
            "--grpc-insecure-allow-remote",
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
                subscriber_queue: args.grpc_subscriber_queue,
                push,
                collector: None,
                metrics: Some(metrics),
            });
            let tls = args.tls.clone();
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
