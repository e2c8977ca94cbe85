//! The agent's configuration: one YAML file (`osprey run --config FILE`), every setting
//! documented in [`DEFAULT_YAML`] (what `osprey config default` prints), each overridable by a
//! flag or an `OSPREY_*` environment variable. With no file, `osprey run` uses the defaults
//! below: the embedded rules, alerts on stdout, no metrics port, flood control on.

use std::{net::SocketAddr, path::PathBuf};

use serde::{Deserialize, Serialize};

use osprey_engine::flood::FloodConfig;

/// The documented default configuration. A test checks that it parses to `Config::default()`.
pub const DEFAULT_YAML: &str = r#"# Osprey agent configuration. Every key is optional; these are the defaults.
# Flags and OSPREY_* environment variables override the file (see `osprey run --help`).

# Rule files or directories (their *.yaml/*.yml in name order), loaded in order; later items
# override earlier ones as in Falco. `default` is the rule set embedded in the binary.
rules: [default]

# Reload the rules when a rule file or directory changes (checked every 2 s) and on SIGHUP.
# New rules are validated first; on error the running rules stay and the error is reported.
watch_rules: true

# Every output is a sink with its own thread and bounded queue (`queue` alerts): a stalled
# output never holds up the sensor; what its queue cannot take is dropped and counted in
# osprey_queue_dropped_total{queue="stdout|file|webhook|grpc"}.

# Alerts on standard output: `text` (Falco's text line) or `json` (Falco's JSON shape).
stdout:
  enabled: true
  format: text
  queue: 10000

# Alerts as JSON lines in a file, rotated by size; `path: null` turns it off.
file:
  path: null
  max_bytes: 104857600
  keep: 5
  queue: 10000

# POST every alert in Falco's JSON shape (Falcosidekick reads it as is); `url: ""` is off.
# `http://` or `https://`; https trusts the system's root certificates, and also the PEM CA
# certificates in `ca_file` (for a receiver behind a private CA).
webhook:
  url: ""
  queue: 10000
  max_attempts: 8
  backoff_ms: 200
  timeout_ms: 5000
  ca_file: null

# Serve /healthz, /readyz and Prometheus /metrics on this address; null is off.
metrics: null

# The gRPC alert stream (osprey tail) and the push to a collector.
grpc:
  # Serve Subscribe/Status here; `off` turns it off. null: 127.0.0.1:7443, and if that port is
  # taken the agent runs on without it and says so. Off loopback it needs tls.cert, tls.key
  # and tls.client_ca (mTLS).
  listen: null
  # Server certificate and key (PEM): the endpoint speaks TLS only. With client_ca, clients
  # must present a certificate that CA signed (mTLS), and its role (`osprey certs`) decides
  # what it may do.
  tls: {cert: null, key: null, client_ca: null}
  # Concurrent subscribers; more are refused (RESOURCE_EXHAUSTED).
  max_subscribers: 32
  # Serve the web UI (a live alert view for a browser) here, e.g. 127.0.0.1:8080; null is
  # off. Off loopback it needs tls.cert, tls.key and tls.client_ca: browsers present a
  # client certificate that CA signed.
  web: null
  # This node's name in alerts, sequence numbers and the collector; null is the host name.
  node_name: null
  # Alerts kept in memory for subscribers that reconnect.
  retention: 10000
  # Live alerts a subscriber may have queued before it is sent a gap instead.
  subscriber_queue: 4096
  # Queue between the pipeline and the stream's numbering (the `grpc` sink).
  queue: 10000
  # Push every alert to a collector (`osprey collector`) at `host:port`; null is off.
  collector: null
  # CA bundle (PEM) that signs the collector's certificate: turns TLS on for the push; the
  # agent presents tls.cert/tls.key as its client certificate.
  collector_ca: null
  # Push to a collector in plaintext on a non-loopback address.
  collector_insecure_allow_remote: false
  # Alerts the collector has not acknowledged wait here, across restarts.
  spool_dir: /var/lib/osprey/spool
  # The spool's size limit; beyond it the oldest alerts give way to a counted gap.
  spool_max_bytes: 268435456
  # Spooled alerts written between two fsyncs (also every 200 ms): what a power cut can lose.
  spool_sync_every: 64

# Kernel ring buffer size in bytes: a power of two, at least 4096.
ring_buffer_bytes: 16777216
# Records one cgroup (one container) may write per millisecond while the ring buffer is more
# than its last 4 MiB (half of a smaller ring) from full; past that its records are dropped and counted against it
# (osprey_kernel_dropped_by_container_total), so one noisy container cannot fill the ring for
# every other. 0 turns the limit off.
ring_buffer_cgroup_share: 64
# How often, in microseconds, the agent reads the ring buffer while events flow: the longest
# an event waits to be judged (alerts' latency), and how often the agent's CPU wakes. The
# kernel wakes the agent sooner only after a quiet spell. 500 to 50000; shorter is quicker
# alerts for more wake-ups (each costs the agent tens of microseconds, and woke the CPU often
# enough on a VM to slow a build on the other CPU by 4% at 1750).
ring_buffer_poll_us: 3500

# Pass over, in the kernel, the opens no loaded rule can match (from each rule's condition:
# the flags, the result and the names of the path the kernel resolved it needs); they never
# reach the ring buffer and are counted in osprey_kernel_open_filtered_total. Likewise the
# mprotect, mmap, pkey_mprotect and fcntl calls none can match on their protection bits or
# command and result (osprey_kernel_calls_filtered_total; the fcntl commands the fd table
# follows are kept).
# false captures every open and call the rules' event types name (the fd table then also
# learns every file).
kernel_open_filter: true

# Attach the syscall-exit program as a BTF tracepoint where the kernel allows it (5.11 and
# later, with BTF): the saved registers and the task's credentials, namespaces and descriptor
# table are then read with plain loads the verifier checks, not helper calls (cheaper for
# every syscall on the node). false, or a kernel where it does not load, attaches the raw
# tracepoint; the agent logs which it attached.
kernel_btf_tracepoint: true

# In that form, read the file, dentries and mounts of a captured or judged open with plain
# loads through bpf_rdonly_cast casts (Linux 6.2), not a helper call each. false, or a kernel
# without it, keeps the helper calls; the agent logs which form it attached.
kernel_btf_casts: true

# Attach the syscall-exit program to each wanted syscall's own event (syscalls:sys_exit_NAME),
# so that the syscalls no rule wants run no program at all, where the kernel has no 32-bit
# syscall entry (those events skip calls made through it): `auto` probes the kernel at start
# (int $0x80 faults where CONFIG_IA32_EMULATION=n or the boot option ia32_emulation=false is
# set) and logs which form it attached. `off` always attaches the one program for every
# syscall. `always` attaches per syscall even where the 32-bit entry is on, leaving calls made
# through it unseen: for measurements, never for a node.
kernel_syscall_events: auto

# Most processes kept in the process table (oldest exited ones go first).
process_table_capacity: 65536

# The file-descriptor table (fd.* fields for any fd a syscall uses): most descriptors kept per
# process and over all processes; what is evicted to stay within them is counted in
# osprey_fd_table_evictions_total.
fd_table_per_process: 1024
fd_table_total: 262144

# The same rule firing for the same process on the same target (file, address, arguments the
# output shows): the first `burst` alerts of each window go out, then one summary per window
# with the exact number suppressed.
flood:
  enabled: true
  default: {burst: 5, window_ms: 10000}
  per_priority: {}
  per_rule: {}
  # Windows open at once, keyed by rule, container, process and the target the output shows
  # (fd.name, evt.arg.*...); past it the oldest closes early (summary sent, eviction counted).
  max_keys: 4096

# Internal alerts (source `internal`): kernel events lost in a 10 s period above this many.
internal_alerts:
  drop_threshold: 1
"#;

/// See [`DEFAULT_YAML`] for what each field means.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    pub rules: Vec<PathBuf>,
    pub watch_rules: bool,
    pub stdout: StdoutConfig,
    pub file: FileConfig,
    pub webhook: WebhookConfig,
    pub metrics: Option<SocketAddr>,
    pub grpc: GrpcConfig,
    pub ring_buffer_bytes: u32,
    pub ring_buffer_cgroup_share: u32,
    pub ring_buffer_poll_us: u32,
    pub kernel_open_filter: bool,
    pub kernel_btf_tracepoint: bool,
    pub kernel_btf_casts: bool,
    pub kernel_syscall_events: crate::sensor::events::ExitEvents,
    pub process_table_capacity: usize,
    pub fd_table_per_process: usize,
    pub fd_table_total: usize,
    pub flood: FloodConfig,
    pub internal_alerts: InternalAlerts,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StdoutConfig {
    pub enabled: bool,
    pub format: Format,
    /// Alerts waiting to be written; beyond it they are dropped and counted.
    pub queue: usize,
}

/// The gRPC alert stream and the push to the collector (the `grpc:` section).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GrpcConfig {
    /// `host:port`, or `off`; `None` is 127.0.0.1:7443, given up with a warning when taken.
    pub listen: Option<String>,
    pub tls: ServerTls,
    /// Concurrent subscribers allowed.
    pub max_subscribers: usize,
    /// The web UI's `host:port`; `None` is off.
    pub web: Option<String>,
    /// The node's name; `None` is the host name.
    pub node_name: Option<String>,
    /// Alerts kept for subscribers that reconnect.
    pub retention: usize,
    /// Live alerts one subscriber may have queued before it gets a gap.
    pub subscriber_queue: usize,
    /// The `grpc` sink's queue.
    pub queue: usize,
    /// The collector's `host:port`.
    pub collector: Option<String>,
    /// CA bundle that signs the collector's certificate (TLS for the push).
    pub collector_ca: Option<PathBuf>,
    /// Plaintext push to a non-loopback collector.
    pub collector_insecure_allow_remote: bool,
    /// Where unacknowledged alerts wait.
    pub spool_dir: PathBuf,
    /// The spool's size limit in bytes.
    pub spool_max_bytes: u64,
    /// Spooled alerts between two fsyncs.
    pub spool_sync_every: usize,
}

/// A server's certificate, key and (for mTLS) client CA, PEM files.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServerTls {
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
    pub client_ca: Option<PathBuf>,
}

impl Default for GrpcConfig {
    fn default() -> Self {
        Self {
            listen: None,
            tls: ServerTls::default(),
            max_subscribers: 32,
            web: None,
            node_name: None,
            retention: 10_000,
            subscriber_queue: 4096,
            queue: 10_000,
            collector: None,
            collector_ca: None,
            collector_insecure_allow_remote: false,
            spool_dir: PathBuf::from("/var/lib/osprey/spool"),
            spool_max_bytes: 256 << 20,
            spool_sync_every: 64,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    Text,
    Json,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FileConfig {
    pub path: Option<PathBuf>,
    pub max_bytes: u64,
    pub keep: u32,
    /// Alerts waiting to be written; beyond it they are dropped and counted.
    pub queue: usize,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct InternalAlerts {
    pub drop_threshold: u64,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            rules: vec![PathBuf::from("default")],
            watch_rules: true,
            stdout: StdoutConfig::default(),
            file: FileConfig::default(),
            webhook: WebhookConfig::default(),
            metrics: None,
            grpc: GrpcConfig::default(),
            ring_buffer_bytes: 16 * 1024 * 1024,
            ring_buffer_cgroup_share: crate::sensor::DEFAULT_CGROUP_SHARE,
            ring_buffer_poll_us: crate::sensor::DEFAULT_POLL.as_micros() as u32,
            kernel_open_filter: true,
            kernel_btf_tracepoint: true,
            kernel_btf_casts: true,
            kernel_syscall_events: crate::sensor::events::ExitEvents::Auto,
            process_table_capacity: 65_536,
            fd_table_per_process: 1024,
            fd_table_total: 262_144,
            flood: FloodConfig::default(),
            internal_alerts: InternalAlerts::default(),
        }
    }
}

impl Default for StdoutConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            format: Format::Text,
            queue: 10_000,
        }
    }
}

impl Default for FileConfig {
    fn default() -> Self {
        Self {
            path: None,
            max_bytes: 100 * 1024 * 1024,
            keep: 5,
            queue: 10_000,
        }
    }
}

impl Default for InternalAlerts {
    fn default() -> Self {
        Self { drop_threshold: 1 }
    }
}

/// A configuration file that can't be used, with where and why.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}:{line}:{column}: not YAML: {message}")]
    Yaml {
        path: PathBuf,
        line: usize,
        column: usize,
        message: String,
    },
    #[error("{path}: {message} (see `osprey config default` for every key)")]
    Invalid { path: PathBuf, message: String },
}

fn to_json(y: &yaml_rust2::Yaml) -> serde_json::Value {
    use yaml_rust2::Yaml;
    match y {
        Yaml::Real(r) => r
            .parse::<f64>()
            .ok()
            .and_then(serde_json::Number::from_f64)
            .map_or(serde_json::Value::Null, serde_json::Value::Number),
        Yaml::Integer(i) => (*i).into(),
        Yaml::String(s) => s.clone().into(),
        Yaml::Boolean(b) => (*b).into(),
        Yaml::Array(a) => a.iter().map(to_json).collect(),
        Yaml::Hash(h) => h
            .iter()
            .map(|(k, v)| {
                let key = match k {
                    Yaml::String(s) => s.clone(),
                    Yaml::Integer(i) => i.to_string(),
                    other => format!("{other:?}"),
                };
                (key, to_json(v))
            })
            .collect::<serde_json::Map<_, _>>()
            .into(),
        Yaml::Null | Yaml::BadValue | Yaml::Alias(_) => serde_json::Value::Null,
    }
}

impl Config {
    /// Parses a configuration file's text; `path` is for messages.
    pub fn parse(text: &str, path: &std::path::Path) -> Result<Self, ConfigError> {
        let docs = yaml_rust2::YamlLoader::load_from_str(text).map_err(|e| ConfigError::Yaml {
            path: path.into(),
            line: e.marker().line(),
            column: e.marker().col() + 1,
            message: e.info().to_string(),
        })?;
        let Some(doc) = docs.first() else {
            return Ok(Self::default());
        };
        let c: Self = serde_json::from_value(to_json(doc)).map_err(|e| ConfigError::Invalid {
            path: path.into(),
            message: e.to_string(),
        })?;
        c.check().map_err(|message| ConfigError::Invalid {
            path: path.into(),
            message,
        })?;
        Ok(c)
    }

    /// What the types alone do not say: values out of their range.
    pub fn check(&self) -> Result<(), String> {
        let range = crate::sensor::POLL_RANGE;
        if !range.contains(&self.ring_buffer_poll()) {
            return Err(format!(
                "ring_buffer_poll_us: {} is outside {}-{} (microseconds)",
                self.ring_buffer_poll_us,
                range.start().as_micros(),
                range.end().as_micros()
            ));
        }
        Ok(())
    }

    /// The reader's interval while events flow ([`crate::sensor::SensorConfig::poll`]).
    pub fn ring_buffer_poll(&self) -> std::time::Duration {
        std::time::Duration::from_micros(self.ring_buffer_poll_us.into())
    }

    pub fn load(path: &std::path::Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.into(),
            source,
        })?;
        Self::parse(&text, path)
    }
}

/// Where and how to post.
#[derive(Clone, Debug, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct WebhookConfig {
    /// `http://host:port/path` or `https://host:port/path`.
    pub url: String,
    /// Alerts waiting to be posted; when full, new alerts are dropped and counted.
    pub queue: usize,
    /// Attempts per alert before it is dropped and counted.
    pub max_attempts: u32,
    /// First retry delay in milliseconds; doubles per attempt, up to 30 s.
    pub backoff_ms: u64,
    /// Per-request timeout in milliseconds.
    pub timeout_ms: u64,
    /// A PEM file of CA certificates to trust for an `https://` url, besides the system's
    /// roots: for a receiver whose certificate a private CA signed. `null`: the system's only.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
}

impl Default for WebhookConfig {
    fn default() -> Self {
        Self {
            url: String::new(),
            queue: 10_000,
            max_attempts: 8,
            backoff_ms: 200,
            timeout_ms: 5_000,
            ca_file: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn documented_default_is_the_default() {
        let parsed = Config::parse(DEFAULT_YAML, "default.yaml".as_ref()).unwrap();
        assert_eq!(parsed, Config::default());
    }

    #[test]
    fn partial_files_and_errors() {
        let c = Config::parse(
            "metrics: 127.0.0.1:9999\nstdout: {format: json}\nflood: {per_rule: {X: {burst: 1, window_ms: 5}}}\n",
            "c.yaml".as_ref(),
        )
        .unwrap();
        assert_eq!(c.metrics, Some("127.0.0.1:9999".parse().unwrap()));
        assert_eq!(c.stdout.format, Format::Json);
        assert!(c.stdout.enabled);
        assert_eq!(c.flood.per_rule["X"].burst, 1);
        assert_eq!(c.rules, vec![PathBuf::from("default")]);

        let c = Config::parse(
            "webhook: {url: \"https://sidekick:2801/\", ca_file: /etc/osprey/ca.pem}\n",
            "c.yaml".as_ref(),
        )
        .unwrap();
        assert_eq!(c.webhook.ca_file, Some(PathBuf::from("/etc/osprey/ca.pem")));
        assert_eq!(c.webhook.queue, WebhookConfig::default().queue);

        let e = Config::parse("ring_buffer_poll_us: 100\n", "c.yaml".as_ref())
            .unwrap_err()
            .to_string();
        assert_eq!(
            e,
            "c.yaml: ring_buffer_poll_us: 100 is outside 500-50000 (microseconds) (see `osprey \
             config default` for every key)"
        );
        let c = Config::parse("ring_buffer_poll_us: 1000\n", "c.yaml".as_ref()).unwrap();
        assert_eq!(c.ring_buffer_poll(), std::time::Duration::from_millis(1));

        let e = Config::parse("metricz: 1\n", "c.yaml".as_ref())
            .unwrap_err()
            .to_string();
        assert!(e.contains("c.yaml") && e.contains("metricz"), "{e}");
        let e = Config::parse("a: [\n", "c.yaml".as_ref())
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("c.yaml:"), "{e}");
        assert_eq!(
            Config::parse("", "c.yaml".as_ref()).unwrap(),
            Config::default()
        );
    }
}
