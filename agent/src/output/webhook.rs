//! An HTTP webhook that POSTs each alert in Falco's JSON shape, so Falcosidekick (and every
//! output it has) receives Osprey's alerts unchanged. Bounded queue, retries with backoff,
//! and every alert it gives up on is counted.

use std::{
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
    sync::mpsc,
};

use osprey_engine::output::{Alert, to_json};

/// Where and how to post.
#[derive(Clone, Debug, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct WebhookConfig {
    /// `http://host:port/path` (plain HTTP: run Falcosidekick or a proxy next to the node).
    pub url: String,
    /// Alerts waiting to be posted; when full, new alerts are dropped and counted.
    pub queue: usize,
    /// Attempts per alert before it is dropped and counted.
    pub max_attempts: u32,
    /// First retry delay in milliseconds; doubles per attempt, up to 30 s.
    pub backoff_ms: u64,
    /// Per-request timeout in milliseconds.
    pub timeout_ms: u64,
}

impl Default for WebhookConfig {
    fn default() -> Self {
        Self {
            url: String::new(),
            queue: 10_000,
            max_attempts: 8,
            backoff_ms: 200,
            timeout_ms: 5_000,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum WebhookError {
    #[error("webhook url `{0}` is not http://host[:port]/path (https is not supported yet)")]
    Url(String),
}

/// Counters of the webhook sink.
#[derive(Debug, Default)]
pub struct WebhookStats {
    pub sent: AtomicU64,
    /// Dropped because the queue was full.
    pub dropped_queue_full: AtomicU64,
    /// Dropped after `max_attempts` failed posts.
    pub dropped_failed: AtomicU64,
    pub retries: AtomicU64,
}

/// The sending side: cheap, never blocks.
#[derive(Clone)]
pub struct Webhook {
    tx: mpsc::Sender<Arc<Alert>>,
    pub stats: Arc<WebhookStats>,
}

struct Target {
    host: String,
    port: u16,
    path: String,
}

fn parse_url(url: &str) -> Result<Target, WebhookError> {
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| WebhookError::Url(url.into()))?;
    let (hostport, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let (host, port) = match hostport.rsplit_once(':') {
        Some((h, p)) if !h.ends_with(']') || hostport.starts_with('[') => (
            h.trim_start_matches('[').trim_end_matches(']'),
            p.parse().map_err(|_| WebhookError::Url(url.into()))?,
        ),
        _ => (hostport, 80),
    };
    if host.is_empty() {
        return Err(WebhookError::Url(url.into()));
    }
    Ok(Target {
        host: host.into(),
        port,
        path: path.into(),
    })
}

impl Webhook {
    /// Starts the posting task.
    pub fn start(cfg: WebhookConfig) -> Result<Self, WebhookError> {
        let target = parse_url(&cfg.url)?;
        let (tx, rx) = mpsc::channel(cfg.queue.max(1));
        let stats = Arc::new(WebhookStats::default());
        tokio::spawn(run(cfg, target, rx, stats.clone()));
        Ok(Self { tx, stats })
    }

    /// Queues an alert; when the queue is full it is dropped and counted.
    pub fn send(&self, a: Arc<Alert>) {
        if self.tx.try_send(a).is_err() {
            self.stats
                .dropped_queue_full
                .fetch_add(1, Ordering::Relaxed);
        }
    }

    pub fn dropped(&self) -> u64 {
        self.stats.dropped_queue_full.load(Ordering::Relaxed)
            + self.stats.dropped_failed.load(Ordering::Relaxed)
    }
}

async fn post(t: &Target, body: &str, timeout: Duration) -> std::io::Result<u16> {
    let fut = async {
        let mut s = TcpStream::connect((t.host.as_str(), t.port)).await?;
        let req = format!(
            "POST {} HTTP/1.1\r\nHost: {}:{}\r\nContent-Type: application/json\r\nUser-Agent: osprey\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            t.path,
            t.host,
            t.port,
            body.len()
        );
        s.write_all(req.as_bytes()).await?;
        let mut head = vec![0u8; 512];
        let mut n = 0;
        while n < head.len() {
            let k = s.read(&mut head[n..]).await?;
            if k == 0 || head[..n + k].contains(&b'\n') {
                n += k;
                break;
            }
            n += k;
        }
        let line = String::from_utf8_lossy(&head[..n]);
        line.split_whitespace()
            .nth(1)
            .and_then(|c| c.parse().ok())
            .ok_or_else(|| std::io::Error::other("no HTTP status line"))
    };
    tokio::time::timeout(timeout, fut)
        .await
        .map_err(|_| std::io::Error::from(std::io::ErrorKind::TimedOut))?
}

async fn run(
    cfg: WebhookConfig,
    t: Target,
    mut rx: mpsc::Receiver<Arc<Alert>>,
    stats: Arc<WebhookStats>,
) {
    let timeout = Duration::from_millis(cfg.timeout_ms);
    while let Some(a) = rx.recv().await {
        let body = to_json(&a).to_string();
        let mut delay = Duration::from_millis(cfg.backoff_ms);
        let mut attempt = 1;
        loop {
            match post(&t, &body, timeout).await {
                Ok(code) if (200..300).contains(&code) => {
                    stats.sent.fetch_add(1, Ordering::Relaxed);
                    break;
                }
                r => {
                    if attempt >= cfg.max_attempts {
                        stats.dropped_failed.fetch_add(1, Ordering::Relaxed);
                        tracing::warn!(url = %cfg.url, result = ?r, "webhook: giving up on an alert after {attempt} attempts");
                        break;
                    }
                    stats.retries.fetch_add(1, Ordering::Relaxed);
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_secs(30));
                    attempt += 1;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        let t = parse_url("http://127.0.0.1:2801/").unwrap();
        assert_eq!(
            (t.host.as_str(), t.port, t.path.as_str()),
            ("127.0.0.1", 2801, "/")
        );
        let t = parse_url("http://sidekick.falco").unwrap();
        assert_eq!((t.port, t.path.as_str()), (80, "/"));
        let t = parse_url("http://[::1]:9/x").unwrap();
        assert_eq!((t.host.as_str(), t.port, t.path.as_str()), ("::1", 9, "/x"));
        assert!(parse_url("https://x").is_err());
        assert!(parse_url("http://:80/").is_err());
    }
}
