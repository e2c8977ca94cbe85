//! The webhook sink: POSTs each alert in Falco's JSON shape, so Falcosidekick (and every
//! output it has) receives Osprey's alerts unchanged. It runs on its sink thread behind the
//! sink's one bounded queue ([`super::SinkHandle`]); each alert is retried with backoff, and
//! one it gives up on is counted as that sink's drop.
//!
//! The client is hyper-util's pooled client, over plain TCP for `http://` and over rustls (the
//! ring provider, as for gRPC) for `https://`, trusting the system's root certificates and,
//! for a receiver behind a private CA, the CA file of the configuration.

use std::{
    future::Future,
    io,
    path::{Path, PathBuf},
    pin::Pin,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    task::{Context, Poll},
    time::Duration,
};

use http_body_util::{BodyExt, Full, Limited};
use hyper::{
    Request, Uri,
    body::Bytes,
    header::{CONTENT_TYPE, USER_AGENT},
    http::uri::Scheme,
};
use hyper_util::{
    client::legacy::{
        Client,
        connect::{Connected, Connection, HttpConnector},
    },
    rt::{TokioExecutor, TokioIo, TokioTimer},
};
use rustls::{
    ClientConfig, RootCertStore,
    pki_types::{CertificateDer, ServerName, pem::PemObject},
};
use tokio::net::TcpStream;
use tokio_rustls::{TlsConnector, client::TlsStream};

use osprey_engine::output::{Alert, to_json};

use super::{Sink, SinkError};
pub use crate::config::WebhookConfig;

/// A webhook configuration that cannot be used, with what to change.
#[derive(Debug, thiserror::Error)]
pub enum WebhookError {
    #[error("webhook url `{0}` is not http://host[:port][/path] or https://host[:port][/path]")]
    Url(String),
    #[error(
        "cannot read the webhook CA file {}: {reason}; webhook.ca_file must name a readable \
         PEM file of CA certificates",
        path.display()
    )]
    CaFile { path: PathBuf, reason: String },
    #[error(
        "the webhook CA file {} holds no PEM certificate (`-----BEGIN CERTIFICATE-----`)",
        path.display()
    )]
    NoCaCert { path: PathBuf },
    #[error("starting the webhook's runtime: {0}")]
    Runtime(#[source] io::Error),
    #[error(
        "no trusted root certificate for the https webhook: install the system's CA \
         certificates (e.g. the ca-certificates package) or set webhook.ca_file"
    )]
    NoRoots,
    #[error("setting up TLS for the webhook: {0}")]
    Tls(#[from] rustls::Error),
}

/// Counters of the webhook sink (its queue's drops are the sink's own counter).
#[derive(Debug, Default)]
pub struct WebhookStats {
    pub sent: AtomicU64,
    /// Dropped after `max_attempts` failed posts.
    pub dropped_failed: AtomicU64,
    pub retries: AtomicU64,
}

/// Posts alerts, one at a time, on the sink's thread: a runtime of its own drives the client.
pub struct WebhookSink {
    rt: tokio::runtime::Runtime,
    client: Client<Connector, Full<Bytes>>,
    target: Target,
    cfg: WebhookConfig,
    stats: Arc<WebhookStats>,
}

/// A parsed webhook url.
struct Target {
    uri: Uri,
    https: bool,
}

/// The url's host as a name or an address: `Uri` keeps an IPv6 literal's brackets.
fn bare_host(uri: &Uri) -> &str {
    uri.host()
        .unwrap_or("")
        .trim_start_matches('[')
        .trim_end_matches(']')
}

fn parse_url(url: &str) -> Result<Target, WebhookError> {
    let bad = || WebhookError::Url(url.into());
    let uri: Uri = url.parse().map_err(|_| bad())?;
    let https = match uri.scheme() {
        Some(s) if *s == Scheme::HTTP => false,
        Some(s) if *s == Scheme::HTTPS => true,
        _ => return Err(bad()),
    };
    if bare_host(&uri).is_empty() {
        return Err(bad());
    }
    Ok(Target { uri, https })
}

impl WebhookSink {
    /// Checks the url and the CA file; the sink starts posting once spawned.
    pub fn new(cfg: WebhookConfig) -> Result<Self, WebhookError> {
        let target = parse_url(&cfg.url)?;
        let tls = if target.https {
            Some(TlsConnector::from(Arc::new(tls_config(
                cfg.ca_file.as_deref(),
            )?)))
        } else {
            if let Some(ca) = &cfg.ca_file {
                tracing::warn!(ca_file = %ca.display(), url = %cfg.url, "webhook: ca_file is only used for an https url; ignoring it");
            }
            None
        };
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(WebhookError::Runtime)?;
        let client = Client::builder(TokioExecutor::new())
            .pool_timer(TokioTimer::new())
            .build(Connector::new(tls));
        Ok(Self {
            rt,
            client,
            target,
            cfg,
            stats: Arc::default(),
        })
    }

    pub fn stats(&self) -> Arc<WebhookStats> {
        self.stats.clone()
    }

    /// POSTs one alert, retrying with exponential backoff; false once every attempt failed.
    async fn deliver(&self, a: &Alert) -> bool {
        let timeout = Duration::from_millis(self.cfg.timeout_ms);
        let body = Bytes::from(to_json(a).to_string());
        let mut delay = Duration::from_millis(self.cfg.backoff_ms);
        let mut attempt = 1;
        loop {
            match post(&self.client, &self.target, &body, timeout).await {
                Ok(code) if (200..300).contains(&code) => {
                    self.stats.sent.fetch_add(1, Ordering::Relaxed);
                    return true;
                }
                r => {
                    if attempt >= self.cfg.max_attempts {
                        self.stats.dropped_failed.fetch_add(1, Ordering::Relaxed);
                        tracing::warn!(url = %self.cfg.url, result = ?r, "webhook: giving up on an alert after {attempt} attempts");
                        return false;
                    }
                    self.stats.retries.fetch_add(1, Ordering::Relaxed);
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_secs(30));
                    attempt += 1;
                }
            }
        }
    }
}

impl Sink for WebhookSink {
    fn name(&self) -> &'static str {
        "webhook"
    }

    fn write(&mut self, a: &Alert) -> Result<(), SinkError> {
        if self.rt.block_on(self.deliver(a)) {
            Ok(())
        } else {
            Err(SinkError::Failed(format!(
                "{} attempts to post an alert to {} failed",
                self.cfg.max_attempts, self.cfg.url
            )))
        }
    }
}

/// The TLS client configuration: the system's roots, plus the CA file's certificates.
fn tls_config(ca_file: Option<&Path>) -> Result<ClientConfig, WebhookError> {
    let mut roots = RootCertStore::empty();
    let system = rustls_native_certs::load_native_certs();
    for e in &system.errors {
        tracing::warn!(error = %e, "webhook: some of the system's root certificates could not be read");
    }
    // A system store can hold a certificate rustls cannot parse; the others still serve.
    roots.add_parsable_certificates(system.certs);
    if let Some(path) = ca_file {
        let ca_error = |reason: String| WebhookError::CaFile {
            path: path.into(),
            reason,
        };
        let certs = CertificateDer::pem_file_iter(path)
            .map_err(|e| ca_error(e.to_string()))?
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| ca_error(e.to_string()))?;
        if certs.is_empty() {
            return Err(WebhookError::NoCaCert { path: path.into() });
        }
        for c in certs {
            roots.add(c).map_err(|e| ca_error(e.to_string()))?;
        }
    }
    if roots.is_empty() {
        return Err(WebhookError::NoRoots);
    }
    Ok(
        ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()?
            .with_root_certificates(roots)
            .with_no_client_auth(),
    )
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Opens TCP connections for the client, and wraps them in TLS for `https://`.
#[derive(Clone)]
struct Connector {
    tcp: HttpConnector,
    tls: Option<TlsConnector>,
}

impl Connector {
    fn new(tls: Option<TlsConnector>) -> Self {
        let mut tcp = HttpConnector::new();
        // The scheme is this connector's business: it does TLS itself.
        tcp.enforce_http(false);
        tcp.set_nodelay(true);
        Self { tcp, tls }
    }
}

impl tower::Service<Uri> for Connector {
    type Response = Stream;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<Stream, BoxError>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.tcp.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        let tcp = self.tcp.call(uri.clone());
        let tls = self.tls.clone();
        Box::pin(async move {
            let tcp = tcp.await?;
            if uri.scheme() != Some(&Scheme::HTTPS) {
                return Ok(Stream::Plain(tcp));
            }
            let tls = tls.ok_or("an https url on a client set up without TLS")?;
            let name = ServerName::try_from(bare_host(&uri))?.to_owned();
            let stream = tls.connect(name, tcp.into_inner()).await?;
            Ok(Stream::Tls(Box::new(TokioIo::new(stream))))
        })
    }
}

/// A connection to the webhook, plain or TLS.
enum Stream {
    Plain(TokioIo<TcpStream>),
    Tls(Box<TokioIo<TlsStream<TcpStream>>>),
}

impl Connection for Stream {
    fn connected(&self) -> Connected {
        Connected::new()
    }
}

impl hyper::rt::Read for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: hyper::rt::ReadBufCursor<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl hyper::rt::Write for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_flush(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

/// The most of a response body read (to reuse the connection); a webhook answers little.
const MAX_RESPONSE_BODY: usize = 64 * 1024;

/// POSTs `body` once: the status code, or why there is none, within `timeout`.
async fn post(
    client: &Client<Connector, Full<Bytes>>,
    t: &Target,
    body: &Bytes,
    timeout: Duration,
) -> Result<u16, BoxError> {
    let req = Request::post(t.uri.clone())
        .header(CONTENT_TYPE, "application/json")
        .header(USER_AGENT, "osprey")
        .body(Full::new(body.clone()))?;
    let fut = async {
        let resp = client.request(req).await?;
        let code = resp.status().as_u16();
        // Read the answer so that the connection can serve the next alert; what it says
        // does not matter, and a receiver that sends too much only loses the connection.
        let _ = Limited::new(resp.into_body(), MAX_RESPONSE_BODY)
            .collect()
            .await;
        Ok::<_, BoxError>(code)
    };
    tokio::time::timeout(timeout, fut)
        .await
        .map_err(|_| io::Error::from(io::ErrorKind::TimedOut))?
}

#[cfg(test)]
mod tests {
    use std::{net::SocketAddr, sync::Mutex};

    use hyper::{Response, StatusCode, body::Incoming, service::service_fn};
    use serde_json::Value;
    use tokio::net::TcpListener;
    use tokio_rustls::TlsAcceptor;

    use super::*;
    use crate::sink::SinkHandle;

    /// The parts of the url the client uses: host, port (the scheme's by default), path.
    impl Target {
        fn host(&self) -> &str {
            bare_host(&self.uri)
        }

        fn port(&self) -> u16 {
            self.uri
                .port_u16()
                .unwrap_or(if self.https { 443 } else { 80 })
        }

        fn path(&self) -> &str {
            self.uri.path_and_query().map_or("/", |p| p.as_str())
        }
    }

    #[test]
    fn urls() {
        let t = parse_url("http://127.0.0.1:2801/").unwrap();
        assert_eq!((t.host(), t.port(), t.path()), ("127.0.0.1", 2801, "/"));
        let t = parse_url("http://sidekick.falco").unwrap();
        assert_eq!((t.port(), t.path()), (80, "/"));
        let t = parse_url("http://[::1]:9/x").unwrap();
        assert_eq!((t.host(), t.port(), t.path()), ("::1", 9, "/x"));
        assert!(!t.https);
        // https is supported now; other schemes and a missing host are still refused.
        let t = parse_url("https://x").unwrap();
        assert_eq!((t.host(), t.port(), t.https), ("x", 443, true));
        assert!(parse_url("ftp://x").is_err());
        assert!(parse_url("sidekick:2801").is_err());
        assert!(parse_url("http://:80/").is_err());
    }

    /// A local webhook receiver on 127.0.0.1: every POSTed body, answered with `status`.
    struct Receiver {
        addr: SocketAddr,
        bodies: Arc<Mutex<Vec<Value>>>,
    }

    impl Receiver {
        async fn start(status: StatusCode, tls: Option<TlsAcceptor>) -> Receiver {
            let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
            let addr = listener.local_addr().unwrap();
            let bodies = Arc::new(Mutex::new(Vec::new()));
            let seen = bodies.clone();
            tokio::spawn(async move {
                loop {
                    let Ok((tcp, _)) = listener.accept().await else {
                        continue;
                    };
                    let (seen, tls) = (seen.clone(), tls.clone());
                    tokio::spawn(async move {
                        let service = service_fn(move |req: hyper::Request<Incoming>| {
                            let seen = seen.clone();
                            async move {
                                assert_eq!(req.method(), hyper::Method::POST);
                                assert_eq!(req.uri().path(), "/falco");
                                assert_eq!(req.headers()[CONTENT_TYPE], "application/json");
                                let body = req.into_body().collect().await?.to_bytes();
                                let v: Value = serde_json::from_slice(&body).unwrap();
                                seen.lock().unwrap().push(v);
                                let mut resp = Response::new(Full::new(Bytes::new()));
                                *resp.status_mut() = status;
                                Ok::<_, hyper::Error>(resp)
                            }
                        });
                        let http = hyper::server::conn::http1::Builder::new();
                        let _ = match tls {
                            None => http.serve_connection(TokioIo::new(tcp), service).await,
                            Some(tls) => {
                                let Ok(s) = tls.accept(tcp).await else { return };
                                http.serve_connection(TokioIo::new(s), service).await
                            }
                        };
                    });
                }
            });
            Receiver { addr, bodies }
        }

        fn bodies(&self) -> Vec<Value> {
            self.bodies.lock().unwrap().clone()
        }
    }

    fn alert(rule: &str) -> Arc<Alert> {
        let mut output_fields = osprey_engine::output::OutputFields::default();
        output_fields.insert("proc.name".into(), "cat".into());
        Arc::new(Alert {
            time: 1_700_000_000_000_000_000,
            rule: rule.into(),
            priority: osprey_model::Priority::Warning,
            source: "syscall".into(),
            tags: vec!["test".into()].into(),
            output: format!("{rule} fired"),
            output_fields,
            hostname: "node".into(),
            event: osprey_engine::output::AlertEvent {
                evt_type: "openat".into(),
                evt_num: 1,
                ts: 1,
                pid: 42,
                tid: 42,
                comm: "cat".into(),
                container: None,
            },
        })
    }

    fn config(url: String) -> WebhookConfig {
        WebhookConfig {
            url,
            backoff_ms: 10,
            timeout_ms: 2_000,
            ..Default::default()
        }
    }

    /// The sink as the agent runs it: on its own thread behind a queue.
    struct Started {
        handle: SinkHandle,
        stats: Arc<WebhookStats>,
    }

    impl Started {
        fn send(&self, a: Arc<Alert>) {
            self.handle.send(a);
        }
        fn dropped(&self) -> u64 {
            self.handle.dropped()
        }
    }

    fn start(cfg: WebhookConfig) -> Result<Started, WebhookError> {
        let queue = cfg.queue;
        let sink = WebhookSink::new(cfg)?;
        let stats = sink.stats();
        let handle = SinkHandle::spawn(sink, queue, None).expect("sink thread");
        Ok(Started { handle, stats })
    }

    /// Waits until `done(stats)`, or fails after a while with the counters.
    async fn wait_for(w: &Started, done: impl Fn(&WebhookStats) -> bool) {
        for _ in 0..500 {
            if done(&w.stats) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("webhook counters never got there: {:?}", w.stats);
    }

    #[tokio::test]
    async fn posts_falco_json_over_http() {
        let r = Receiver::start(StatusCode::OK, None).await;
        let w = start(config(format!("http://{}/falco", r.addr))).unwrap();
        w.send(alert("First"));
        w.send(alert("Second"));
        wait_for(&w, |s| s.sent.load(Ordering::Relaxed) == 2).await;
        let rules: Vec<Value> = r.bodies().iter().map(|b| b["rule"].clone()).collect();
        assert_eq!(rules, ["First", "Second"]);
        assert_eq!(r.bodies()[0]["priority"], "Warning");
        assert_eq!(r.bodies()[0]["output_fields"]["proc.name"], "cat");
        assert_eq!(w.dropped(), 0);
    }

    /// A CA, and a certificate for 127.0.0.1 that it signed: (CA PEM, server TLS acceptor).
    fn private_ca() -> (String, TlsAcceptor) {
        use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
        let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca.distinguished_name
            .push(rcgen::DnType::CommonName, "osprey webhook test CA");
        let ca_key = KeyPair::generate().unwrap();
        let ca_pem = ca.self_signed(&ca_key).unwrap().pem();
        let issuer = Issuer::new(ca, ca_key);
        let key = KeyPair::generate().unwrap();
        let cert = CertificateParams::new(vec!["127.0.0.1".to_string()])
            .unwrap()
            .signed_by(&key, &issuer)
            .unwrap();
        let server = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(
            vec![cert.der().clone()],
            rustls::pki_types::PrivatePkcs8KeyDer::from(key.serialize_der()).into(),
        )
        .unwrap();
        (ca_pem, TlsAcceptor::from(Arc::new(server)))
    }

    /// A scratch file, removed when dropped.
    struct TempFile(PathBuf);

    impl TempFile {
        fn new(name: &str, contents: &str) -> TempFile {
            let p =
                std::env::temp_dir().join(format!("osprey-webhook-{}-{name}", std::process::id()));
            std::fs::write(&p, contents).unwrap();
            TempFile(p)
        }
    }

    impl Drop for TempFile {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(&self.0);
        }
    }

    #[tokio::test]
    async fn posts_over_https_to_a_receiver_whose_private_ca_is_configured() {
        let (ca_pem, acceptor) = private_ca();
        let ca = TempFile::new("ca.pem", &ca_pem);
        let r = Receiver::start(StatusCode::OK, Some(acceptor)).await;
        let w = start(WebhookConfig {
            ca_file: Some(ca.0.clone()),
            ..config(format!("https://{}/falco", r.addr))
        })
        .unwrap();
        w.send(alert("Over TLS"));
        wait_for(&w, |s| s.sent.load(Ordering::Relaxed) == 1).await;
        assert_eq!(r.bodies()[0]["rule"], "Over TLS");
        assert_eq!(w.stats.retries.load(Ordering::Relaxed), 0);
    }

    #[tokio::test]
    async fn without_its_ca_the_receiver_is_not_trusted() {
        let (_, acceptor) = private_ca();
        let r = Receiver::start(StatusCode::OK, Some(acceptor)).await;
        let w = match start(WebhookConfig {
            max_attempts: 2,
            ..config(format!("https://{}/falco", r.addr))
        }) {
            Ok(w) => w,
            // A machine without system roots refuses the configuration outright: also fine.
            Err(WebhookError::NoRoots) => return,
            Err(e) => panic!("{e}"),
        };
        w.send(alert("Untrusted"));
        wait_for(&w, |s| s.dropped_failed.load(Ordering::Relaxed) == 1).await;
        assert!(r.bodies().is_empty());
        assert_eq!(w.stats.sent.load(Ordering::Relaxed), 0);
    }

    #[tokio::test]
    async fn a_failing_receiver_gets_every_attempt_then_the_alert_is_counted_as_dropped() {
        let r = Receiver::start(StatusCode::INTERNAL_SERVER_ERROR, None).await;
        let w = start(WebhookConfig {
            max_attempts: 3,
            ..config(format!("http://{}/falco", r.addr))
        })
        .unwrap();
        w.send(alert("Refused"));
        wait_for(&w, |s| s.dropped_failed.load(Ordering::Relaxed) == 1).await;
        assert_eq!(r.bodies().len(), 3, "one post per attempt");
        assert_eq!(w.stats.retries.load(Ordering::Relaxed), 2);
        assert_eq!(w.stats.sent.load(Ordering::Relaxed), 0);
        assert_eq!(w.dropped(), 1);
    }

    #[tokio::test]
    async fn a_full_queue_drops_and_counts() {
        // Nothing listens there once the listener is gone: the first alert is retried for a
        // while, which keeps the single queue slot taken.
        let addr = TcpListener::bind("127.0.0.1:0")
            .await
            .unwrap()
            .local_addr()
            .unwrap();
        let w = start(WebhookConfig {
            queue: 1,
            backoff_ms: 60_000,
            ..config(format!("http://{addr}/falco"))
        })
        .unwrap();
        for i in 0..5 {
            w.send(alert(&format!("A{i}")));
        }
        // The sink took one (or none yet) and one waits in the queue: the rest are dropped.
        let full = w.dropped();
        assert!((3..=4).contains(&full), "{full}");
        // The sink is still retrying its first alert: let it go rather than wait it out.
        let mut w = w;
        w.handle.close_within(Duration::ZERO);
    }

    #[tokio::test]
    async fn an_unreadable_ca_file_is_named() {
        let missing = std::env::temp_dir().join("osprey-webhook-no-such-ca.pem");
        let e = start(WebhookConfig {
            ca_file: Some(missing.clone()),
            ..config("https://127.0.0.1:1/".into())
        })
        .err()
        .expect("a missing CA file is an error");
        let msg = e.to_string();
        assert!(
            msg.contains(&missing.display().to_string()) && msg.contains("webhook.ca_file"),
            "{msg}"
        );
        let not_pem = TempFile::new("not-pem", "hello\n");
        let e = start(WebhookConfig {
            ca_file: Some(not_pem.0.clone()),
            ..config("https://127.0.0.1:1/".into())
        })
        .err()
        .expect("a file without certificates is an error");
        assert!(
            e.to_string().contains(&not_pem.0.display().to_string()),
            "{e}"
        );
    }
}
