//! `osprey collector`: agents push their alerts here; tail clients read the merged stream with
//! the same `Subscribe` an agent serves. It keeps nothing on disk: the agents' spools cover a
//! collector restart, and with `--nats` every alert also goes to NATS JetStream for durable
//! fan-out.

use std::sync::{Arc, atomic::AtomicU64};

use anyhow::Context as _;

use crate::{
    metrics::Metrics,
    server::{
        AlertBus,
        nats::NatsSink,
        service::{self, AlertsService, CollectorState, Shared},
        tls::ServerTlsArgs,
        web::{self, WebSource},
    },
};

#[derive(Debug, clap::Args)]
pub struct CollectorArgs {
    /// Address to serve gRPC on (agents' Push, clients' Subscribe and Status). Anything but
    /// loopback needs TLS (--tls-cert, --tls-key, and --tls-client-ca for mTLS).
    #[arg(long, env = "OSPREY_LISTEN", default_value = crate::server::DEFAULT_ADDR)]
    pub listen: String,
    #[command(flatten)]
    pub tls: ServerTlsArgs,
    /// Serve plaintext on a non-loopback address.
    #[arg(long)]
    pub insecure_allow_remote: bool,
    /// Alerts kept in memory for subscribers that resume (all nodes together).
    #[arg(long, default_value_t = 100_000)]
    pub retention: usize,
    /// Live alerts a subscriber may have queued before it is sent a gap instead.
    #[arg(long, default_value_t = 16_384)]
    pub subscriber_queue: usize,
    /// Also publish every alert to NATS JetStream (subject osprey.alerts.<node>, stream
    /// OSPREY_ALERTS, created when missing), e.g. nats://127.0.0.1:4222.
    #[arg(long, env = "OSPREY_NATS")]
    pub nats: Option<String>,
    /// Serve the web UI, a live view of every node's alerts, here (e.g. 127.0.0.1:8080). Off
    /// loopback it needs --tls-cert, --tls-key and --tls-client-ca (browser certificates).
    #[arg(long, env = "OSPREY_WEB")]
    pub web: Option<String>,
    /// Serve /healthz, /readyz and Prometheus /metrics on this address.
    #[arg(long, env = "OSPREY_METRICS")]
    pub metrics: Option<std::net::SocketAddr>,
    /// Print a line on stderr when this marker is reached (tests wait for it).
    #[arg(long, hide = true, default_value = "osprey collector is serving")]
    pub ready_message: String,
}

pub async fn run(args: CollectorArgs) -> anyhow::Result<()> {
    let metrics = Arc::new(Metrics::new());
    if let Some(addr) = args.metrics {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("binding the metrics address {addr}"))?;
        tokio::spawn(crate::metrics::http::serve(listener, metrics.clone()));
    }
    let nats = match &args.nats {
        Some(url) => Some(NatsSink::start(url).await?),
        None => None,
    };
    let listener = service::bind(
        &args.listen,
        &args.tls,
        args.insecure_allow_remote,
        "--insecure-allow-remote",
    )
    .await?;
    let hostname = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .unwrap_or_default();
    let svc = AlertsService::new(Shared {
        role: "collector",
        node: hostname,
        bus: AlertBus::new(args.retention),
        rules_loaded: Arc::new(AtomicU64::new(0)),
        subscriber_queue: args.subscriber_queue,
        push: None,
        collector: Some(Arc::new(CollectorState::new(nats))),
        metrics: Some(metrics.clone()),
    });
    if let Some(addr) = &args.web {
        web::start(addr, &args.tls, WebSource::of(svc.shared())).await?;
    }
    metrics.set_ready(true);
    tracing::info!(
        listen = %args.listen,
        tls = args.tls.tls_cert.is_some(),
        mtls = args.tls.tls_client_ca.is_some(),
        nats = args.nats.as_deref().unwrap_or("off"),
        "{}",
        args.ready_message
    );
    let shutdown = async {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    };
    service::serve(listener, &args.tls, svc, shutdown).await?;
    Ok(())
}
