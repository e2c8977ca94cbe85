//! `osprey collector`: flags → [`CollectorOptions`] → [`collector::run`] (server/collector.rs).

use crate::server::{
    DEFAULT_ADDR,
    collector::{self, CollectorOptions, DEFAULT_METRICS},
    service::DEFAULT_MAX_SEQ_ADVANCE,
    tls::ServerTlsArgs,
};

#[derive(Debug, clap::Args)]
pub struct CollectorArgs {
    /// Address to serve gRPC on (agents' Push, clients' Subscribe and Status). Anything but
    /// loopback needs --tls-cert, --tls-key and --tls-client-ca (mTLS; `osprey certs`).
    #[arg(long, env = "OSPREY_LISTEN", default_value = DEFAULT_ADDR)]
    pub listen: String,
    #[command(flatten)]
    pub tls: ServerTlsArgs,
    /// Alerts kept in memory for subscribers that resume (all nodes together).
    #[arg(long, env = "OSPREY_RETENTION", default_value_t = 100_000)]
    pub retention: usize,
    /// ...and at most this many bytes of them (estimated in memory, about twice their
    /// encoded size).
    #[arg(long, env = "OSPREY_RETENTION_BYTES", default_value_t = 64 << 20)]
    pub retention_bytes: usize,
    /// Live alerts a subscriber may have queued before it is sent a gap instead.
    #[arg(long, default_value_t = 4096)]
    pub subscriber_queue: usize,
    /// Concurrent subscribers; more are refused (RESOURCE_EXHAUSTED).
    #[arg(long, env = "OSPREY_MAX_SUBSCRIBERS", default_value_t = 16)]
    pub max_subscribers: usize,
    /// A pushed alert or gap reaching further than this past its node's high-water mark is
    /// refused and counted (a forged gap cannot silence a node).
    #[arg(long, default_value_t = DEFAULT_MAX_SEQ_ADVANCE)]
    pub max_seq_advance: u64,
    /// Also publish every alert to NATS JetStream (subject osprey.alerts.<node>, stream
    /// OSPREY_ALERTS, created when missing), e.g. nats://127.0.0.1:4222.
    #[arg(long, env = "OSPREY_NATS")]
    pub nats: Option<String>,
    /// Serve the web UI, a live view of every node's alerts, here (e.g. 127.0.0.1:8080). Off
    /// loopback it needs --tls-cert, --tls-key and --tls-client-ca (browser certificates).
    #[arg(long, env = "OSPREY_WEB")]
    pub web: Option<String>,
    /// Serve /healthz, /readyz and Prometheus /metrics on this address, `off` for none.
    /// Default 0.0.0.0:9090 (if taken, the collector runs without it and says so).
    #[arg(long, env = "OSPREY_METRICS")]
    pub metrics: Option<String>,
    /// No longer accepted: off loopback the collector needs mTLS.
    #[arg(long, hide = true)]
    pub insecure_allow_remote: bool,
    /// Print a line on stderr when this marker is reached (tests wait for it).
    #[arg(long, hide = true, default_value = "osprey collector is serving")]
    pub ready_message: String,
}

pub async fn run(args: CollectorArgs) -> anyhow::Result<()> {
    if args.insecure_allow_remote {
        anyhow::bail!(
            "--insecure-allow-remote is no longer accepted by the collector: off loopback it needs --tls-cert, --tls-key and --tls-client-ca (mTLS; `osprey certs` issues them), or listen on 127.0.0.1"
        );
    }
    let (metrics, metrics_explicit) = match args.metrics.as_deref() {
        Some("off") => (None, true),
        Some(a) => (
            Some(
                a.parse()
                    .map_err(|e| anyhow::anyhow!("--metrics {a}: {e} (give ADDR:PORT or off)"))?,
            ),
            true,
        ),
        None => (DEFAULT_METRICS.parse().ok(), false),
    };
    collector::run(CollectorOptions {
        listen: args.listen,
        tls: args.tls,
        retention: args.retention,
        retention_bytes: args.retention_bytes,
        subscriber_queue: args.subscriber_queue,
        max_subscribers: args.max_subscribers,
        max_seq_advance: args.max_seq_advance,
        nats: args.nats,
        web: args.web,
        metrics,
        metrics_explicit,
        ready_message: args.ready_message,
    })
    .await?;
    Ok(())
}
