//! `osprey run`: its flags, laid over the configuration file; the agent itself is
//! [`crate::pipeline::live::run`].

use std::path::PathBuf;

use crate::{
    config::{Config, Format, GrpcConfig},
    server::tls::ServerTlsArgs,
};

#[derive(Debug, clap::Args)]
pub struct RunArgs {
    /// Configuration file (YAML); `osprey config default` prints every setting documented.
    #[arg(long, env = "OSPREY_CONFIG")]
    pub config: Option<PathBuf>,
    /// Rule files or directories, loaded in order (default: the rules embedded in the binary;
    /// `default` names them, e.g. `--rules default --rules local.yaml`).
    #[arg(long = "rules", short = 'r')]
    pub rules: Vec<PathBuf>,
    /// Alerts as Falco's JSON (one object per line) instead of Falco's text line.
    #[arg(long)]
    pub json: bool,
    /// Ring buffer size in bytes (a power of two, at least 4096).
    #[arg(long, env = "OSPREY_RING_BUFFER_SIZE")]
    pub ring_buffer_size: Option<u32>,
    /// How often, in microseconds, the ring buffer is read while events flow: the longest an
    /// event waits (`ring_buffer_poll_us`, 500 to 50000).
    #[arg(long, env = "OSPREY_RING_BUFFER_POLL_US")]
    pub ring_buffer_poll_us: Option<u32>,
    /// Serve /healthz, /readyz and Prometheus /metrics on this address (e.g. 0.0.0.0:9090).
    #[arg(long, env = "OSPREY_METRICS")]
    pub metrics: Option<std::net::SocketAddr>,
    /// Also write alerts as JSON lines to this file (rotated by size).
    #[arg(long, env = "OSPREY_OUTPUT_FILE")]
    pub output_file: Option<PathBuf>,
    /// Also POST every alert in Falco's JSON shape to this http:// or https:// URL
    /// (e.g. Falcosidekick; a private CA goes in the config file's `webhook.ca_file`).
    #[arg(long, env = "OSPREY_WEBHOOK")]
    pub webhook: Option<String>,
    /// Let every alert through, however often the same rule fires.
    #[arg(long)]
    pub no_flood_control: bool,
    /// Do not reload the rules when their files change (SIGHUP still reloads).
    #[arg(long)]
    pub no_watch_rules: bool,
    /// Capture every open (and mprotect and fcntl) the rules' event types name, rather than
    /// passing over, in the kernel, those no loaded rule can match (`kernel_open_filter`).
    #[arg(long)]
    pub no_kernel_open_filter: bool,
    /// Attach the syscall-exit program as a raw tracepoint (helper reads) even where its BTF
    /// form would load (`kernel_btf_tracepoint`).
    #[arg(long)]
    pub no_kernel_btf_tracepoint: bool,
    /// Read the files, dentries and mounts of path walks with a helper call each even where
    /// casts would load (`kernel_btf_casts`).
    #[arg(long)]
    pub no_kernel_btf_casts: bool,
    /// Attach the syscall-exit program per wanted syscall: auto (where the kernel has no
    /// 32-bit syscall entry), off, or always (`kernel_syscall_events`).
    #[arg(long, value_name = "auto|off|always")]
    pub kernel_syscall_events: Option<crate::sensor::events::ExitEvents>,
    /// Print a line on stderr when this marker is reached (tests wait for it).
    #[arg(long, hide = true, default_value = "osprey is running")]
    pub ready_message: String,
    #[command(flatten)]
    pub stream: GrpcArgs,
}

impl RunArgs {
    /// The configuration file (or defaults) with flags and environment applied on top.
    pub fn resolve(&self) -> anyhow::Result<Config> {
        let mut c = match &self.config {
            Some(p) => Config::load(p)?,
            None => Config::default(),
        };
        if !self.rules.is_empty() {
            c.rules = self.rules.clone();
        }
        if self.json {
            c.stdout.format = Format::Json;
        }
        if let Some(n) = self.ring_buffer_size {
            c.ring_buffer_bytes = n;
        }
        if let Some(us) = self.ring_buffer_poll_us {
            c.ring_buffer_poll_us = us;
        }
        if self.metrics.is_some() {
            c.metrics = self.metrics;
        }
        if self.output_file.is_some() {
            c.file.path = self.output_file.clone();
        }
        if let Some(url) = &self.webhook {
            c.webhook.url = url.clone();
        }
        if self.no_flood_control {
            c.flood.enabled = false;
        }
        if self.no_watch_rules {
            c.watch_rules = false;
        }
        if self.no_kernel_open_filter {
            c.kernel_open_filter = false;
        }
        if self.no_kernel_btf_tracepoint {
            c.kernel_btf_tracepoint = false;
        }
        if self.no_kernel_btf_casts {
            c.kernel_btf_casts = false;
        }
        if let Some(events) = self.kernel_syscall_events {
            c.kernel_syscall_events = events;
        }
        if self.stream.grpc_insecure_allow_remote {
            anyhow::bail!(
                "--grpc-insecure-allow-remote is no longer accepted: off loopback the alert stream needs --tls-cert, --tls-key and --tls-client-ca (mTLS; `osprey certs` issues them), or serve on 127.0.0.1"
            );
        }
        self.stream.apply(&mut c.grpc);
        c.check().map_err(anyhow::Error::msg)?;
        Ok(c)
    }
}

#[derive(Debug, clap::Args)]
pub struct GrpcArgs {
    /// Serve the gRPC alert stream (Subscribe, Status) here; `off` turns it off. Default
    /// (`grpc.listen`): 127.0.0.1:7443, and if that port is taken the agent runs on and says so.
    /// Anything but loopback needs --tls-cert, --tls-key and --tls-client-ca (mTLS).
    #[arg(long, env = "OSPREY_GRPC")]
    pub grpc: Option<String>,
    #[command(flatten)]
    pub tls: ServerTlsArgs,
    /// Concurrent subscribers of this agent's stream; more are refused.
    #[arg(long)]
    pub grpc_max_subscribers: Option<usize>,
    /// No longer accepted: off loopback the stream needs mTLS.
    #[arg(long, hide = true)]
    pub grpc_insecure_allow_remote: bool,
    /// Serve the web UI, a live view of this node's alerts, here (e.g. 127.0.0.1:8080). Off
    /// loopback it needs --tls-cert, --tls-key and --tls-client-ca (browser certificates).
    #[arg(long, env = "OSPREY_WEB")]
    pub web: Option<String>,
    /// This node's name in alerts, sequence numbers and the collector (default: the host name).
    #[arg(long, env = "OSPREY_NODE_NAME")]
    pub node_name: Option<String>,
    /// Alerts kept in memory for subscribers that reconnect.
    #[arg(long)]
    pub grpc_retention: Option<usize>,
    /// Live alerts a subscriber may have queued before it is sent a gap instead.
    #[arg(long)]
    pub grpc_subscriber_queue: Option<usize>,
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
    #[arg(long, env = "OSPREY_SPOOL_DIR")]
    pub spool_dir: Option<PathBuf>,
    /// The spool's size limit; beyond it the oldest alerts give way to a counted gap.
    #[arg(long)]
    pub spool_max_bytes: Option<u64>,
    /// Spooled alerts written between two fsyncs of the spool (a power cut loses at most
    /// these, and what arrived in the last 200 ms).
    #[arg(long)]
    pub spool_sync_every: Option<usize>,
}

impl GrpcArgs {
    /// The flags given, over the configuration file's `grpc:` section.
    fn apply(&self, g: &mut GrpcConfig) {
        let set = |dst: &mut Option<PathBuf>, v: &Option<PathBuf>| {
            if v.is_some() {
                dst.clone_from(v);
            }
        };
        if self.grpc.is_some() {
            g.listen.clone_from(&self.grpc);
        }
        set(&mut g.tls.cert, &self.tls.tls_cert);
        set(&mut g.tls.key, &self.tls.tls_key);
        set(&mut g.tls.client_ca, &self.tls.tls_client_ca);
        if let Some(n) = self.grpc_max_subscribers {
            g.max_subscribers = n;
        }
        if self.web.is_some() {
            g.web.clone_from(&self.web);
        }
        if self.node_name.is_some() {
            g.node_name.clone_from(&self.node_name);
        }
        if let Some(n) = self.grpc_retention {
            g.retention = n;
        }
        if let Some(n) = self.grpc_subscriber_queue {
            g.subscriber_queue = n;
        }
        if self.collector.is_some() {
            g.collector.clone_from(&self.collector);
        }
        set(&mut g.collector_ca, &self.tls_ca);
        g.collector_insecure_allow_remote |= self.collector_insecure_allow_remote;
        if let Some(d) = &self.spool_dir {
            g.spool_dir.clone_from(d);
        }
        if let Some(n) = self.spool_max_bytes {
            g.spool_max_bytes = n;
        }
        if let Some(n) = self.spool_sync_every {
            g.spool_sync_every = n;
        }
    }
}

/// `osprey run`: the configuration resolved, then the live pipeline until a signal.
pub async fn run(args: RunArgs) -> anyhow::Result<()> {
    let cfg = args.resolve()?;
    Ok(crate::pipeline::live::run(cfg, &args.ready_message).await?)
}
