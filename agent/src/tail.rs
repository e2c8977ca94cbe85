//! The alert stream's client (`osprey tail`): follows an agent or the collector (or NATS
//! JetStream), filtered by the server, reconnecting by itself and resuming after the last alert
//! it saw of each node, so nothing is shown twice or skipped without a gap line. Its flags are
//! declared here, next to what they steer, as the TLS flags are in `server::tls`.

use std::{
    collections::HashMap,
    io::{IsTerminal as _, Write as _},
    time::Duration,
};

use prost::Message as _;
use tokio_stream::StreamExt as _;

use osprey_model::Priority;

use crate::server::{
    ServerError,
    convert::{self, alert_from_pb, alert_json, gap_json},
    filter::{AlertFilter, FilterError},
    nats::{self, NatsError},
    pb,
    tls::ClientTlsArgs,
};

/// Why following the stream stopped.
#[derive(Debug, thiserror::Error)]
pub enum TailError {
    #[error("nothing to follow: give an address (host:port) or --nats URL")]
    NoAddress,
    #[error(transparent)]
    Endpoint(#[from] ServerError),
    #[error("no connection to {addr}: {reason}")]
    Unreachable { addr: String, reason: String },
    #[error("{addr} refused the subscription: {}", .status.message())]
    Refused { addr: String, status: tonic::Status },
    #[error(transparent)]
    Filter(#[from] FilterError),
    #[error(transparent)]
    Nats(#[from] NatsError),
    #[error("JetStream stream {stream} (does the collector run with --nats?): {reason}")]
    NatsStream {
        stream: &'static str,
        reason: String,
    },
    #[error("writing to stdout: {0}")]
    Stdout(#[from] std::io::Error),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum OutputFormat {
    /// One colored line per alert (the default on a terminal).
    Compact,
    /// One JSON object per line: the API's alert, or `{"gap": ...}` (the default otherwise).
    Json,
    /// Falco's JSON alert shape, one per line; gaps as a Falco-shaped internal alert.
    Falco,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum From {
    /// Only alerts raised from now on.
    Live,
    /// Everything the server still retains, then live.
    Retained,
}

#[derive(Debug, clap::Args)]
pub struct FilterArgs {
    /// Only alerts of at least this priority (emergency ... debug).
    #[arg(long, value_parser = parse_priority)]
    pub min_priority: Option<Priority>,
    /// Only rules whose name matches one of these globs (repeatable).
    #[arg(long)]
    pub rule: Vec<String>,
    /// Only alerts carrying one of these tags.
    #[arg(long)]
    pub tag: Vec<String>,
    /// Only these nodes.
    #[arg(long)]
    pub node: Vec<String>,
    /// Only these Kubernetes namespaces.
    #[arg(long)]
    pub namespace: Vec<String>,
    /// Only these pods.
    #[arg(long)]
    pub pod: Vec<String>,
    /// Only these containers (id prefix or name).
    #[arg(long)]
    pub container: Vec<String>,
    /// Only these images (globs over the repository).
    #[arg(long)]
    pub image: Vec<String>,
    /// Leave out rules matching these globs.
    #[arg(long)]
    pub exclude_rule: Vec<String>,
    /// Leave out alerts carrying these tags.
    #[arg(long)]
    pub exclude_tag: Vec<String>,
    /// Leave out these nodes.
    #[arg(long)]
    pub exclude_node: Vec<String>,
    /// Leave out these namespaces.
    #[arg(long)]
    pub exclude_namespace: Vec<String>,
    /// Leave out these pods.
    #[arg(long)]
    pub exclude_pod: Vec<String>,
    /// Leave out these containers.
    #[arg(long)]
    pub exclude_container: Vec<String>,
    /// Leave out these images (globs).
    #[arg(long)]
    pub exclude_image: Vec<String>,
}

fn parse_priority(s: &str) -> Result<Priority, String> {
    Priority::parse(s).ok_or_else(|| format!("unknown priority {s:?}"))
}

impl FilterArgs {
    fn filters(&self) -> (pb::Filter, pb::Filter) {
        let include = pb::Filter {
            min_priority: self
                .min_priority
                .map_or(0, |p| convert::priority_to_pb(p) as i32),
            rule: self.rule.clone(),
            tag: self.tag.clone(),
            node: self.node.clone(),
            namespace: self.namespace.clone(),
            pod: self.pod.clone(),
            container: self.container.clone(),
            image: self.image.clone(),
        };
        let exclude = pb::Filter {
            min_priority: 0,
            rule: self.exclude_rule.clone(),
            tag: self.exclude_tag.clone(),
            node: self.exclude_node.clone(),
            namespace: self.exclude_namespace.clone(),
            pod: self.exclude_pod.clone(),
            container: self.exclude_container.clone(),
            image: self.exclude_image.clone(),
        };
        (include, exclude)
    }
}

#[derive(Debug, clap::Args)]
pub struct TailArgs {
    /// The agent or collector to follow, `host:port` (an agent serves 127.0.0.1:7443 by default).
    #[arg(required_unless_present = "nats", conflicts_with = "nats")]
    pub addr: Option<String>,
    /// Read from NATS JetStream instead (the collector's `--nats`), e.g. nats://127.0.0.1:4222.
    #[arg(long)]
    pub nats: Option<String>,
    /// Output format (default: compact on a terminal, json otherwise).
    #[arg(long, short = 'o', value_enum)]
    pub output: Option<OutputFormat>,
    /// Where to start.
    #[arg(long, value_enum, default_value = "live", conflicts_with = "after")]
    pub from: From,
    /// Resume after these per-node sequence numbers, `NODE=SEQ` (repeatable).
    #[arg(long, value_parser = parse_cursor)]
    pub after: Vec<(String, u64)>,
    /// Stop after this many alerts (default: follow until interrupted).
    #[arg(long)]
    pub count: Option<u64>,
    /// Stop retrying after this long without a connection (default: forever).
    #[arg(long, value_parser = parse_secs)]
    pub give_up_after: Option<Duration>,
    #[command(flatten)]
    pub filter: FilterArgs,
    #[command(flatten)]
    pub tls: ClientTlsArgs,
    /// Allow plaintext to a non-loopback address.
    #[arg(long)]
    pub insecure_allow_remote: bool,
}

fn parse_cursor(s: &str) -> Result<(String, u64), String> {
    let (n, q) = s.rsplit_once('=').ok_or("expected NODE=SEQ")?;
    Ok((n.to_string(), q.parse().map_err(|e| format!("{q}: {e}"))?))
}

fn parse_secs(s: &str) -> Result<Duration, String> {
    s.trim_end_matches('s')
        .parse::<f64>()
        .map(Duration::from_secs_f64)
        .map_err(|e| format!("{s}: {e}"))
}

/// Prints alerts and gaps, and remembers where each node is.
struct Printer {
    format: OutputFormat,
    color: bool,
    out: std::io::BufWriter<std::io::Stdout>,
    cursors: HashMap<String, u64>,
    shown: u64,
}

fn color_of(p: pb::Priority) -> &'static str {
    match p {
        pb::Priority::Emergency | pb::Priority::Alert | pb::Priority::Critical => "\x1b[1;31m",
        pb::Priority::Error => "\x1b[31m",
        pb::Priority::Warning => "\x1b[33m",
        pb::Priority::Notice => "\x1b[36m",
        _ => "\x1b[2m",
    }
}

impl Printer {
    /// Shows `a` unless this node's cursor is already past it (a re-sent copy).
    fn alert(&mut self, a: &pb::Alert) -> std::io::Result<bool> {
        let cursor = self.cursors.entry(a.node.clone()).or_insert(0);
        if a.seq <= *cursor {
            return Ok(false);
        }
        *cursor = a.seq;
        match self.format {
            OutputFormat::Json => writeln!(self.out, "{}", alert_json(a))?,
            OutputFormat::Falco => writeln!(
                self.out,
                "{}",
                osprey_engine::output::to_json(&alert_from_pb(a))
            )?,
            OutputFormat::Compact => {
                let time = osprey_model::time::format_time(a.time_unix_nano);
                let prio = convert::priority_from_pb(a.priority());
                let p = a.process.clone().unwrap_or_default();
                let (c, r) = if self.color {
                    (color_of(a.priority()), "\x1b[0m")
                } else {
                    ("", "")
                };
                let mut whereabouts = a.node.clone();
                if let Some(pod) = &a.pod {
                    whereabouts = format!("{whereabouts} {}/{}", pod.namespace, pod.name);
                }
                writeln!(
                    self.out,
                    "{time} {whereabouts}#{} {c}{:<8}{r} {c}{}{r} [{} {}] {}",
                    a.seq,
                    prio.as_str(),
                    a.rule,
                    p.name,
                    p.pid,
                    a.output.replace('\n', " ")
                )?
            }
        }
        self.shown += 1;
        Ok(true)
    }

    fn gap(&mut self, g: &pb::Gap) -> std::io::Result<()> {
        let cursor = self.cursors.entry(g.node.clone()).or_insert(0);
        if g.reason() == pb::gap::Reason::NodeRestart {
            // The node numbers from 1 again: what follows is new, whatever its number.
            *cursor = 0;
        } else {
            *cursor = (*cursor).max(g.to_seq);
        }
        tracing::warn!(
            node = %g.node, from = g.from_seq, to = g.to_seq, missed = g.missed,
            reason = convert::gap_reason_str(g), "alerts missed"
        );
        match self.format {
            OutputFormat::Json => writeln!(self.out, "{}", gap_json(g)),
            OutputFormat::Falco => {
                let now = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_nanos() as u64)
                    .unwrap_or_default();
                let a = osprey_engine::output::Alert {
                    time: now,
                    rule: "Osprey alerts missed".into(),
                    priority: Priority::Warning,
                    source: "internal".into(),
                    tags: vec!["osprey".into(), "internal".into()].into(),
                    output: format!(
                        "{} alerts of node {} (seq {}..{}) were not delivered ({})",
                        g.missed,
                        g.node,
                        g.from_seq,
                        g.to_seq,
                        convert::gap_reason_str(g)
                    ),
                    output_fields: Default::default(),
                    hostname: g.node.as_str().into(),
                    event: osprey_engine::output::AlertEvent {
                        evt_type: "internal".into(),
                        evt_num: 0,
                        ts: 0,
                        pid: 0,
                        tid: 0,
                        comm: "osprey".into(),
                        container: None,
                    },
                };
                writeln!(self.out, "{}", osprey_engine::output::to_json(&a))
            }
            OutputFormat::Compact => {
                let (c, r) = if self.color {
                    ("\x1b[1;35m", "\x1b[0m")
                } else {
                    ("", "")
                };
                writeln!(
                    self.out,
                    "{c}-- {} alerts of {} missed (seq {}..{}, {}) --{r}",
                    g.missed,
                    g.node,
                    g.from_seq,
                    g.to_seq,
                    convert::gap_reason_str(g)
                )
            }
        }
    }

    fn done(&self, count: Option<u64>) -> bool {
        count.is_some_and(|c| self.shown >= c)
    }
}

/// Follows the stream until `--count` alerts were shown or Ctrl-C.
pub async fn run(args: TailArgs) -> Result<(), TailError> {
    let tty = std::io::stdout().is_terminal();
    let mut printer = Printer {
        format: args.output.unwrap_or(if tty {
            OutputFormat::Compact
        } else {
            OutputFormat::Json
        }),
        color: tty,
        out: std::io::BufWriter::new(std::io::stdout()),
        cursors: args.after.iter().cloned().collect(),
        shown: 0,
    };
    let ctrl_c = tokio::signal::ctrl_c();
    tokio::pin!(ctrl_c);
    let work = async {
        match &args.nats {
            Some(url) => tail_nats(&args, url, &mut printer).await,
            None => tail_grpc(&args, &mut printer).await,
        }
    };
    tokio::select! {
        r = work => r,
        _ = &mut ctrl_c => Ok(()),
    }
}

/// Why one subscription attempt failed: refused for good, or worth retrying.
enum Attempt {
    Refused(tonic::Status),
    Retry(String),
}

async fn tail_grpc(args: &TailArgs, printer: &mut Printer) -> Result<(), TailError> {
    let addr = args.addr.as_deref().ok_or(TailError::NoAddress)?;
    let endpoint = args.tls.endpoint(addr, args.insecure_allow_remote)?;
    let (include, exclude) = args.filter.filters();
    let mut first = true;
    let mut backoff = Duration::from_millis(200);
    let mut unreachable_since: Option<std::time::Instant> = None;
    loop {
        use pb::start_point::{After, From as F, Live, Retained};
        // The first time, the start point asked for; after a reconnect, resume per node.
        let from = if first && args.after.is_empty() {
            match args.from {
                From::Live => F::Live(Live {}),
                From::Retained => F::Retained(Retained {}),
            }
        } else {
            F::After(After {
                seq: printer.cursors.clone(),
            })
        };
        let req = pb::SubscribeRequest {
            include: Some(include.clone()),
            exclude: Some(exclude.clone()),
            start: Some(pb::StartPoint { from: Some(from) }),
        };
        let stream = async {
            let channel = endpoint.connect().await.map_err(|e| {
                let cause =
                    std::error::Error::source(&e).map_or(String::new(), |s| format!(": {s}"));
                Attempt::Retry(format!("{e}{cause}"))
            })?;
            let mut client = pb::alerts_client::AlertsClient::new(channel);
            match client.subscribe(req).await {
                Ok(s) => Ok(s.into_inner()),
                // A request the server will never take: saying it again does not help.
                Err(status)
                    if matches!(
                        status.code(),
                        tonic::Code::InvalidArgument
                            | tonic::Code::PermissionDenied
                            | tonic::Code::Unauthenticated
                    ) =>
                {
                    Err(Attempt::Refused(status))
                }
                Err(status) => Err(Attempt::Retry(status.to_string())),
            }
        }
        .await;
        let mut stream = match stream {
            Ok(s) => s,
            Err(Attempt::Refused(status)) => {
                return Err(TailError::Refused {
                    addr: addr.into(),
                    status,
                });
            }
            Err(Attempt::Retry(e)) => {
                let since = *unreachable_since.get_or_insert_with(std::time::Instant::now);
                if args.give_up_after.is_some_and(|d| since.elapsed() >= d) {
                    return Err(TailError::Unreachable {
                        addr: addr.into(),
                        reason: e,
                    });
                }
                tracing::warn!(%addr, "cannot subscribe, retrying in {backoff:?}: {e}");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(5));
                continue;
            }
        };
        if !first {
            tracing::info!(%addr, "reconnected; resuming after the last alert seen of each node");
        }
        first = false;
        unreachable_since = None;
        backoff = Duration::from_millis(200);
        loop {
            match stream.message().await {
                Ok(Some(pb::StreamItem { item: Some(item) })) => {
                    match item {
                        pb::stream_item::Item::Alert(a) => {
                            printer.alert(&a)?;
                        }
                        pb::stream_item::Item::Gap(g) => printer.gap(&g)?,
                    }
                    printer.out.flush()?;
                    if printer.done(args.count) {
                        return Ok(());
                    }
                }
                Ok(Some(_)) => {}
                Ok(None) => {
                    tracing::warn!(%addr, "stream ended; reconnecting");
                    break;
                }
                Err(e) => {
                    tracing::warn!(%addr, "stream broken ({e}); reconnecting");
                    break;
                }
            }
        }
    }
}

async fn tail_nats(args: &TailArgs, url: &str, printer: &mut Printer) -> Result<(), TailError> {
    use async_nats::jetstream::consumer::{DeliverPolicy, pull::OrderedConfig};
    let js = nats::connect(url).await?;
    let stream = js
        .get_stream(nats::STREAM)
        .await
        .map_err(|e| TailError::NatsStream {
            stream: nats::STREAM,
            reason: e.to_string(),
        })?;
    // One node: let JetStream filter by subject; several: the client-side filter does it.
    let filter_subject = match args.filter.node.as_slice() {
        [one] => nats::subject(one),
        _ => String::new(),
    };
    let consumer = stream
        .create_consumer(OrderedConfig {
            deliver_policy: if args.from == From::Retained || !args.after.is_empty() {
                DeliverPolicy::All
            } else {
                DeliverPolicy::New
            },
            filter_subject,
            ..Default::default()
        })
        .await
        .map_err(|e| NatsError::Consume(format!("creating a consumer: {e}")))?;
    let (include, exclude) = args.filter.filters();
    let filter = AlertFilter::compile(Some(&include), Some(&exclude))?;
    let mut messages = consumer
        .messages()
        .await
        .map_err(|e| NatsError::Consume(e.to_string()))?;
    // The ordered consumer re-creates itself after a disconnect, resuming where it was.
    while let Some(m) = messages.next().await {
        let m = match m {
            Ok(m) => m,
            Err(e) => {
                tracing::warn!(%url, "JetStream: {e}");
                continue;
            }
        };
        let a = match pb::Alert::decode(m.payload.as_ref()) {
            Ok(a) => a,
            Err(e) => {
                tracing::warn!(subject = %m.subject, "not an Osprey alert: {e}");
                continue;
            }
        };
        if filter.matches(&a) {
            printer.alert(&a)?;
            printer.out.flush()?;
            if printer.done(args.count) {
                return Ok(());
            }
        }
    }
    Ok(())
}
