//! The web UI (`osprey collector --web ADDR`, `osprey run --web ADDR`): one page that shows the
//! alert stream live, served read-only over HTTP(S) by an axum router.
//!
//! - `/` the page, `/app.js` and `/app.css` its script and style: plain files embedded in the
//!   binary, no build step. The page builds every node with `textContent`, and a strict
//!   Content-Security-Policy (scripts from this origin only, no inline script) is a second
//!   guard: alert text is attacker-controlled.
//! - `/events` server-sent events: a bus subscription like gRPC `Subscribe`, with the filter
//!   built from the query string the same way (`priority`, `rule`, `tag`, `node`, `namespace`,
//!   `pod`, `container`, `image`; `exclude_*` for each), so the same gaps reach the page. It
//!   starts with the newest `backlog` retained alerts (`from=live` for none), and resumes
//!   after `Last-Event-ID` when the browser reconnects.
//! - `/api/status` the node, role and counters the page shows in its header.
//!
//! Only GET (and HEAD). Off loopback the endpoint needs TLS and a client CA: browsers present
//! a certificate that CA signed (a reader's is enough, nothing here writes). On loopback,
//! plaintext is allowed, and requests must name a loopback host, so that a web site the
//! operator visits cannot reach it through DNS rebinding.

use std::{collections::HashMap, convert::Infallible, net::SocketAddr, sync::Arc, time::Duration};

use axum::{
    Router,
    extract::{RawQuery, Request, State},
    http::{HeaderMap, HeaderValue, StatusCode, header},
    middleware::{self, Next},
    response::{
        IntoResponse, Response,
        sse::{Event, KeepAlive, Sse},
    },
    routing::get,
};
use hyper_util::{
    rt::{TokioIo, TokioTimer},
    service::TowerToHyperService,
};
use serde_json::{Value, json};
use tokio::{
    net::TcpListener,
    sync::{Semaphore, mpsc},
};
use tokio_rustls::TlsAcceptor;
use tokio_stream::wrappers::ReceiverStream;

use super::{
    AlertBus, ServerError,
    convert::{alert_json, gap_json, gap_to_pb, priority_to_pb},
    filter::AlertFilter,
    pb,
    tls::{ServerTlsArgs, is_loopback},
};
use crate::{
    alert::{Delivery, Start},
    metrics::Metrics,
};
use osprey_model::Priority;

const INDEX_HTML: &str = include_str!("web/index.html");
const APP_JS: &str = include_str!("web/app.js");
const APP_CSS: &str = include_str!("web/app.css");

/// Browsers watching at once; one more is told to close a tab.
pub const MAX_CLIENTS: usize = 32;
/// Retained alerts a page asks for when it opens, unless it says otherwise.
pub const DEFAULT_BACKLOG: usize = 2000;
/// The most a page may ask for (the rest stays on the collector, for `osprey tail`).
pub const MAX_BACKLOG: usize = 10_000;
/// A client gets this long for its TLS handshake and then its request head.
const HEAD_TIMEOUT: Duration = Duration::from_secs(5);

const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
                   connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// Where the page's alerts come from.
#[derive(Clone)]
pub struct WebSource {
    pub bus: Arc<AlertBus>,
    /// This process's node (the agent) or host name (the collector).
    pub node: String,
    /// "agent" or "collector".
    pub role: &'static str,
    /// Live alerts one page may have queued before it is sent a gap instead.
    pub subscriber_queue: usize,
    pub metrics: Option<Arc<Metrics>>,
}

impl WebSource {
    /// What the gRPC service streams from, for the page.
    pub fn of(s: &super::service::Shared) -> Self {
        WebSource {
            bus: s.bus.clone(),
            node: s.node.clone(),
            role: s.role,
            subscriber_queue: s.subscriber_queue,
            metrics: s.metrics.clone(),
        }
    }
}

struct WebState {
    source: WebSource,
    clients: Arc<Semaphore>,
    /// Plain HTTP: requests must name a loopback host.
    check_host: bool,
}

/// A request the endpoint refuses, with what to do instead.
#[derive(Debug, thiserror::Error)]
pub enum QueryError {
    #[error(
        "unknown parameter {0:?}; filters are priority, rule, tag, node, namespace, pod, container, image (and exclude_ of each), from=live|retained, backlog=N"
    )]
    Unknown(String),
    #[error(
        "unknown priority {0:?}; use emergency, alert, critical, error, warning, notice, informational or debug"
    )]
    Priority(String),
    #[error("backlog={0:?} is not a number of alerts (at most {MAX_BACKLOG})")]
    Backlog(String),
    #[error("from={0:?}: use from=live or from=retained")]
    From(String),
    #[error(transparent)]
    Filter(#[from] super::filter::FilterError),
}

/// What `/events?…` asks for.
#[derive(Debug, Default, PartialEq)]
pub struct EventsQuery {
    pub include: pb::Filter,
    pub exclude: pb::Filter,
    /// Retained alerts to send first (0: live only).
    pub backlog: usize,
}

impl EventsQuery {
    /// Parses a query string: every filter key may repeat (values ORed, as in gRPC), empty
    /// values are ignored, `q` (the page's free-text search, applied in the browser) too.
    pub fn parse(query: &str) -> Result<Self, QueryError> {
        let mut q = EventsQuery {
            backlog: DEFAULT_BACKLOG,
            ..Default::default()
        };
        for (k, v) in form_urlencoded::parse(query.as_bytes()) {
            let v = v.trim();
            if v.is_empty() || k == "q" {
                continue;
            }
            match k.as_ref() {
                "priority" => {
                    let p = Priority::parse(v).ok_or_else(|| QueryError::Priority(v.into()))?;
                    q.include.min_priority = priority_to_pb(p) as i32;
                    continue;
                }
                "from" => {
                    match v {
                        "live" => q.backlog = 0,
                        "retained" => {}
                        _ => return Err(QueryError::From(v.into())),
                    }
                    continue;
                }
                "backlog" => {
                    q.backlog = v
                        .parse()
                        .ok()
                        .filter(|&n| n <= MAX_BACKLOG)
                        .ok_or_else(|| QueryError::Backlog(v.into()))?;
                    continue;
                }
                _ => {}
            }
            let (f, key) = match k.strip_prefix("exclude_") {
                Some(key) => (&mut q.exclude, key),
                None => (&mut q.include, k.as_ref()),
            };
            let list = match key {
                "rule" => &mut f.rule,
                "tag" => &mut f.tag,
                "node" => &mut f.node,
                "namespace" => &mut f.namespace,
                "pod" => &mut f.pod,
                "container" => &mut f.container,
                "image" => &mut f.image,
                _ => return Err(QueryError::Unknown(k.into_owned())),
            };
            list.push(v.to_string());
        }
        // Compiled once here so that an oversized filter is refused before streaming.
        AlertFilter::compile(Some(&q.include), Some(&q.exclude))?;
        Ok(q)
    }
}

/// The page's JSON for an alert: `osprey tail -o json`'s object, with the container's and
/// pod's whole identity for the detail view.
pub fn web_alert_json(a: &pb::Alert) -> Value {
    let mut v = alert_json(a);
    if let Some(c) = &a.container {
        v["container"] = json!({
            "id": c.id, "full_id": c.full_id, "name": c.name, "image": c.image,
            "image_repository": c.image_repository, "image_tag": c.image_tag,
            "image_digest": c.image_digest, "runtime": c.runtime, "privileged": c.privileged,
        });
    }
    if let Some(p) = &a.pod {
        v["pod"] = json!({
            "namespace": p.namespace, "name": p.name, "uid": p.uid, "labels": p.labels,
        });
    }
    v["evt_type"] = json!(a.evt_type);
    v
}

/// `Last-Event-ID` (an alert's id, `node/seq`) as a start point: that node resumes after it,
/// the others replay what is retained (the page drops ids it already has).
fn resume_from(headers: &HeaderMap) -> Option<Start> {
    let id = headers.get("last-event-id")?.to_str().ok()?;
    let (node, seq) = id.rsplit_once('/')?;
    let seq = seq.parse().ok()?;
    Some(Start::After(HashMap::from([(node.to_string(), seq)])))
}

async fn events(
    State(st): State<Arc<WebState>>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Response {
    let q = match EventsQuery::parse(query.as_deref().unwrap_or("")) {
        Ok(q) => q,
        Err(e) => return text(StatusCode::BAD_REQUEST, format!("{e}\n")),
    };
    let Ok(permit) = st.clients.clone().try_acquire_owned() else {
        return text(
            StatusCode::SERVICE_UNAVAILABLE,
            format!(
                "{MAX_CLIENTS} browsers are already watching; close one, or use `osprey tail`\n"
            ),
        );
    };
    let filter = match AlertFilter::compile(Some(&q.include), Some(&q.exclude)) {
        Ok(f) => f,
        Err(e) => return text(StatusCode::BAD_REQUEST, format!("{e}\n")),
    };
    let src = &st.source;
    let start = resume_from(&headers)
        .unwrap_or_else(|| src.bus.start_for_newest(q.backlog, &|a| filter.matches(a)));
    let sub = src.bus.subscribe(
        "web",
        src.subscriber_queue,
        &start,
        Box::new(move |a| filter.matches(a)),
    );
    tracing::info!(id = sub.id(), "web page connected");
    let metrics = src.metrics.clone();
    if let Some(m) = &metrics {
        m.subscribers.inc();
    }
    let hello = json!({"node": src.node, "role": src.role});
    let (tx, rx) = mpsc::channel::<Result<Event, Infallible>>(64);
    tokio::spawn(async move {
        let _permit = permit;
        let mut ok = tx
            .send(Ok(Event::default().event("hello").data(hello.to_string())))
            .await
            .is_ok();
        while ok {
            let ev = tokio::select! {
                d = sub.recv() => match d {
                    Delivery::Alert(a) => Event::default()
                        .event("alert")
                        .id(a.id.clone())
                        .data(web_alert_json(&a).to_string()),
                    Delivery::Gap(g) => Event::default()
                        .event("gap")
                        .data(gap_json(&gap_to_pb(&g))["gap"].to_string()),
                },
                () = tx.closed() => break,
            };
            ok = tx.send(Ok(ev)).await.is_ok();
        }
        if let Some(m) = &metrics {
            m.subscribers.dec();
            m.queue_drop("subscriber", sub.dropped());
        }
        tracing::info!(id = sub.id(), dropped = sub.dropped(), "web page gone");
    });
    Sse::new(ReceiverStream::new(rx))
        .keep_alive(KeepAlive::default())
        .into_response()
}

async fn status(State(st): State<Arc<WebState>>) -> Response {
    let b = st.source.bus.status();
    let body = json!({
        "node": st.source.node,
        "role": st.source.role,
        "version": env!("CARGO_PKG_VERSION"),
        "published": b.published,
        "retained": b.retained,
        "subscribers": b.subscribers.len(),
        "subscriber_drops": b.dropped,
    });
    (
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}

fn text(code: StatusCode, body: String) -> Response {
    (
        code,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        body,
    )
        .into_response()
}

fn file(ctype: &'static str, body: &'static str) -> Response {
    ([(header::CONTENT_TYPE, ctype)], body).into_response()
}

/// Whether a `Host` header names this machine's loopback (`localhost`, 127.x, `[::1]`).
fn loopback_host(h: &str) -> bool {
    let has_port = if h.starts_with('[') {
        h.contains("]:")
    } else {
        h.matches(':').count() == 1
    };
    let with_port = if has_port {
        h.to_string()
    } else {
        format!("{h}:0")
    };
    is_loopback(&with_port)
}

/// Security headers on every answer, and the loopback `Host` check for plain HTTP.
async fn guard(State(st): State<Arc<WebState>>, req: Request, next: Next) -> Response {
    if st.check_host {
        let host = req
            .headers()
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
            .unwrap_or("");
        if !loopback_host(host) {
            return text(
                StatusCode::MISDIRECTED_REQUEST,
                format!(
                    "this plain-HTTP endpoint answers requests for localhost only (Host: {host:?}); \
                     open it as http://127.0.0.1:PORT/, or serve it with --tls-cert/--tls-key/--tls-client-ca\n"
                ),
            );
        }
    }
    let mut r = next.run(req).await;
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

/// The routes: GET (and HEAD) only; other methods get 405, other paths 404.
fn router(state: Arc<WebState>) -> Router {
    Router::new()
        .route(
            "/",
            get(|| async { file("text/html; charset=utf-8", INDEX_HTML) }),
        )
        .route(
            "/app.js",
            get(|| async { file("text/javascript; charset=utf-8", APP_JS) }),
        )
        .route(
            "/app.css",
            get(|| async { file("text/css; charset=utf-8", APP_CSS) }),
        )
        .route("/events", get(events))
        .route("/api/status", get(status))
        .fallback(|| async { text(StatusCode::NOT_FOUND, "not found\n".into()) })
        .layer(middleware::from_fn_with_state(state.clone(), guard))
        .with_state(state)
}

fn tls_err(what: &str, e: impl std::fmt::Display) -> ServerError {
    ServerError::Tls(format!("web UI: {what}: {e}"))
}

/// The rustls acceptor for `tls`, requiring client certificates when it has a client CA.
fn acceptor(tls: &ServerTlsArgs) -> Result<Option<TlsAcceptor>, ServerError> {
    use rustls::{
        RootCertStore, ServerConfig,
        pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject as _},
        server::WebPkiClientVerifier,
    };
    let (Some(cert), Some(key)) = (&tls.tls_cert, &tls.tls_key) else {
        return Ok(None);
    };
    let certs = CertificateDer::pem_file_iter(cert)
        .and_then(|i| i.collect::<Result<Vec<_>, _>>())
        .map_err(|e| tls_err(&format!("reading {}", cert.display()), e))?;
    let key = PrivateKeyDer::from_pem_file(key)
        .map_err(|e| tls_err(&format!("reading {}", key.display()), e))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| tls_err("protocol versions", e))?;
    let builder = match &tls.tls_client_ca {
        Some(ca) => {
            let mut roots = RootCertStore::empty();
            for c in CertificateDer::pem_file_iter(ca)
                .map_err(|e| tls_err(&format!("reading {}", ca.display()), e))?
            {
                let c = c.map_err(|e| tls_err(&format!("reading {}", ca.display()), e))?;
                roots
                    .add(c)
                    .map_err(|e| tls_err(&format!("client CA {}", ca.display()), e))?;
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .map_err(|e| tls_err("client CA", e))?;
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    let mut cfg = builder
        .with_single_cert(certs, key)
        .map_err(|e| tls_err("certificate and key", e))?;
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Some(TlsAcceptor::from(Arc::new(cfg))))
}

/// Binds `addr` and serves the page there in the background; returns the bound address.
/// Off loopback it refuses to start without a certificate, its key and a client CA.
pub async fn start(
    addr: &str,
    tls: &ServerTlsArgs,
    source: WebSource,
) -> Result<SocketAddr, ServerError> {
    if !is_loopback(addr) && (tls.tls_cert.is_none() || tls.tls_client_ca.is_none()) {
        return Err(ServerError::WebNeedsTls { addr: addr.into() });
    }
    let acceptor = acceptor(tls)?;
    let sa = super::resolve(addr)?;
    let listener = TcpListener::bind(sa)
        .await
        .map_err(|source| ServerError::Bind {
            addr: addr.into(),
            source,
        })?;
    let bound = listener.local_addr().map_err(|source| ServerError::Bind {
        addr: addr.into(),
        source,
    })?;
    let state = Arc::new(WebState {
        source,
        clients: Arc::new(Semaphore::new(MAX_CLIENTS)),
        check_host: acceptor.is_none(),
    });
    tracing::info!(
        addr = %bound,
        tls = acceptor.is_some(),
        mtls = tls.tls_client_ca.is_some(),
        "serving the web UI on {}://{bound}/",
        if acceptor.is_some() { "https" } else { "http" }
    );
    tokio::spawn(serve(listener, acceptor, router(state)));
    Ok(bound)
}

async fn serve(listener: TcpListener, acceptor: Option<TlsAcceptor>, app: Router) {
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(e) => {
                tracing::debug!(error = %e, "web UI: accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let service = TowerToHyperService::new(app.clone());
        let acceptor = acceptor.clone();
        tokio::spawn(async move {
            let http = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HEAD_TIMEOUT)
                .keep_alive(false)
                .clone();
            match acceptor {
                None => {
                    let _ = http.serve_connection(TokioIo::new(stream), service).await;
                }
                Some(acc) => match tokio::time::timeout(HEAD_TIMEOUT, acc.accept(stream)).await {
                    Ok(Ok(tls)) => {
                        let _ = http.serve_connection(TokioIo::new(tls), service).await;
                    }
                    Ok(Err(e)) => tracing::debug!("web UI: TLS handshake failed: {e}"),
                    Err(_) => tracing::debug!("web UI: TLS handshake timed out"),
                },
            }
        });
    }
}

#[cfg(test)]
mod tests;
