//! The collector: agents push their alerts here; tail clients read the merged stream with the
//! same `Subscribe` an agent serves. It keeps nothing on disk: the agents' spools cover a
//! collector restart, and with NATS every alert also goes to JetStream for durable fan-out.
//!
//! Memory is bounded: the retention by count and by bytes, the subscribers by number (each
//! with a bounded queue, reading the retention lazily).

use std::sync::{Arc, atomic::AtomicU64};

use super::{
    AlertBus, ServerError,
    nats::NatsSink,
    service::{self, AlertsService, CollectorState, Shared},
    tls::ServerTlsArgs,
};
use crate::metrics::Metrics;

/// Where the collector's /healthz, /readyz and /metrics are served unless told otherwise.
pub const DEFAULT_METRICS: &str = "0.0.0.0:9090";

#[derive(Clone, Debug)]
pub struct CollectorOptions {
    pub listen: String,
    pub tls: ServerTlsArgs,
    /// Alerts kept for subscribers that resume, all nodes together...
    pub retention: usize,
    /// ...and no more than this many bytes of them (estimated in memory).
    pub retention_bytes: usize,
    pub subscriber_queue: usize,
    pub max_subscribers: usize,
    pub max_seq_advance: u64,
    pub nats: Option<String>,
    /// The web UI's address (`--web`), `None` for none.
    pub web: Option<String>,
    /// `None`: no health/metrics port. `explicit`: a bind failure is an error, not a warning.
    pub metrics: Option<std::net::SocketAddr>,
    pub metrics_explicit: bool,
    pub ready_message: String,
}

#[derive(Debug, thiserror::Error)]
pub enum CollectorError {
    #[error(transparent)]
    Server(#[from] ServerError),
    #[error(
        "binding the metrics address {addr}: {source} (--metrics ADDR picks another, --metrics off turns it off)"
    )]
    Metrics {
        addr: std::net::SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("installing the SIGINT/SIGTERM handlers: {0}")]
    Signal(#[source] std::io::Error),
}

/// Runs the collector until SIGINT or SIGTERM.
pub async fn run(opts: CollectorOptions) -> Result<(), CollectorError> {
    // Installed first, not when the server first polls its shutdown future: a signal during
    // start-up stops the collector the same way.
    use tokio::signal::unix::{SignalKind, signal};
    let mut int = signal(SignalKind::interrupt()).map_err(CollectorError::Signal)?;
    let mut term = signal(SignalKind::terminate()).map_err(CollectorError::Signal)?;
    let metrics = Arc::new(Metrics::new());
    // The gRPC listener first: a collector that may not serve (no mTLS off loopback) says so
    // before anything else.
    let listener = service::bind(
        &opts.listen,
        &opts.tls,
        ["--tls-cert", "--tls-key", "--tls-client-ca"],
    )
    .await?;
    if let Some(addr) = opts.metrics {
        match tokio::net::TcpListener::bind(addr).await {
            Ok(l) => {
                tokio::spawn(crate::metrics::http::serve(l, metrics.clone()));
            }
            Err(source) if opts.metrics_explicit => {
                return Err(CollectorError::Metrics { addr, source });
            }
            Err(e) => tracing::warn!(
                %addr,
                "health and metrics off: {e} (--metrics ADDR picks another address)"
            ),
        }
    }
    let nats = match &opts.nats {
        Some(url) => Some(NatsSink::start(url).await.map_err(ServerError::from)?),
        None => None,
    };
    let hostname = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .unwrap_or_default();
    let mut state = CollectorState::new(nats);
    state.max_seq_advance = opts.max_seq_advance;
    let svc = AlertsService::new(Shared {
        role: "collector",
        node: hostname,
        bus: AlertBus::with_limits(opts.retention, opts.retention_bytes),
        rules_loaded: Arc::new(AtomicU64::new(0)),
        subscriber_queue: opts.subscriber_queue,
        push: None,
        collector: Some(Arc::new(state)),
        metrics: Some(metrics.clone()),
        max_subscribers: opts.max_subscribers,
        max_subscribers_flag: "--max-subscribers",
        active_subscribers: Default::default(),
    });
    if let Some(addr) = &opts.web {
        super::web::start(addr, &opts.tls, super::web::WebSource::of(svc.shared())).await?;
    }
    metrics.set_ready(true);
    tracing::info!(
        listen = %opts.listen,
        tls = opts.tls.tls_cert.is_some(),
        mtls = opts.tls.tls_client_ca.is_some(),
        nats = opts.nats.as_deref().unwrap_or("off"),
        metrics = %opts.metrics.map_or_else(|| "off".to_string(), |a| a.to_string()),
        "{}",
        opts.ready_message
    );
    let shutdown = async move {
        tokio::select! {
            _ = int.recv() => {}
            _ = term.recv() => {}
        }
    };
    service::serve(listener, &opts.tls, svc, shutdown).await?;
    Ok(())
}
