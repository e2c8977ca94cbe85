//! The health and metrics endpoint (`osprey run --metrics`, `osprey collector --metrics`):
//! `/healthz` (the process is alive), `/readyz` (programs attached, the ring buffer read, rules
//! loaded) and `/metrics` (the Prometheus exposition of [`Metrics`]), as an axum router.
//!
//! It is kept apart from the counters so that `metrics.rs` is only what the pipeline updates.

use std::{sync::Arc, time::Duration};

use axum::{
    Router,
    extract::State,
    http::{StatusCode, header},
    response::IntoResponse,
    routing::any,
};
use hyper_util::{
    rt::{TokioIo, TokioTimer},
    service::TowerToHyperService,
};
use tokio::net::TcpListener;

use super::Metrics;

const TEXT: &str = "text/plain; charset=utf-8";
/// What prometheus-client's text encoder writes: OpenMetrics text, which Prometheus reads.
const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// A client gets this long to send its request head, so that an idle or slow connection to a
/// port that may be open to the node's network cannot hold a task forever.
const HEAD_TIMEOUT: Duration = Duration::from_secs(5);

/// The routes. Any method is answered, as probes and scrapers only GET and the endpoint has
/// no side effects; every other path is 404.
pub fn router(metrics: Arc<Metrics>) -> Router {
    Router::new()
        .route("/healthz", any(healthz))
        .route("/readyz", any(readyz))
        .route("/metrics", any(exposition))
        .fallback(not_found)
        .with_state(metrics)
}

/// Serves `/healthz`, `/readyz` and `/metrics` on `listener` until the process ends.
///
/// Not `axum::serve`: it sets no timer, so it could not bound the time a client takes to send
/// its request head. One request per connection, as a scraper needs no more.
pub async fn serve(listener: TcpListener, metrics: Arc<Metrics>) {
    let app = router(metrics);
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(e) => {
                // Out of file descriptors, most likely: wait instead of spinning on it.
                tracing::debug!(error = %e, "metrics endpoint: accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let service = TowerToHyperService::new(app.clone());
        tokio::spawn(async move {
            let _ = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HEAD_TIMEOUT)
                .keep_alive(false)
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

/// How long the agent's event loop may stand still before `/healthz` fails (and the kubelet
/// restarts the agent): it goes round at least once a second when healthy.
pub const STALE_LOOP: Duration = Duration::from_secs(30);

async fn healthz(State(m): State<Arc<Metrics>>) -> impl IntoResponse {
    match m.health(STALE_LOOP) {
        Ok(()) => (
            StatusCode::OK,
            [(header::CONTENT_TYPE, TEXT)],
            "ok\n".to_string(),
        ),
        Err(why) => (
            StatusCode::SERVICE_UNAVAILABLE,
            [(header::CONTENT_TYPE, TEXT)],
            format!("unhealthy: {why}\n"),
        ),
    }
}

/// Ready once programs are attached, rules loaded and the ring buffer read. Rule files that do
/// not load leave the agent ready (it runs the embedded defaults, and detection goes on) but
/// say so in the body, next to `osprey_rule_files_invalid`.
async fn readyz(State(m): State<Arc<Metrics>>) -> impl IntoResponse {
    let (code, mut body) = if m.is_ready() {
        (StatusCode::OK, "ready\n".to_string())
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "not ready\n".to_string())
    };
    if let Some(e) = m.rule_files_error() {
        body.push_str(&format!("rule files invalid: {e}\n"));
    }
    (code, [(header::CONTENT_TYPE, TEXT)], body)
}

async fn exposition(State(m): State<Arc<Metrics>>) -> impl IntoResponse {
    ([(header::CONTENT_TYPE, OPENMETRICS)], m.encode())
}

async fn not_found() -> impl IntoResponse {
    (
        StatusCode::NOT_FOUND,
        [(header::CONTENT_TYPE, TEXT)],
        "not found\n",
    )
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    /// The endpoint on a loopback port, and the metrics behind it.
    async fn start() -> (std::net::SocketAddr, Arc<Metrics>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let m = Arc::new(Metrics::new());
        tokio::spawn(serve(listener, m.clone()));
        (addr, m)
    }

    /// One raw HTTP/1.1 request, as a probe sends it: (status code, content type, body).
    async fn request(
        addr: std::net::SocketAddr,
        method: &str,
        path: &str,
    ) -> (u16, String, String) {
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        s.write_all(format!("{method} {path} HTTP/1.1\r\nHost: localhost\r\n\r\n").as_bytes())
            .await
            .unwrap();
        let mut resp = String::new();
        // The server closes the connection after one response.
        tokio::time::timeout(Duration::from_secs(5), s.read_to_string(&mut resp))
            .await
            .expect("the server closes after its response")
            .unwrap();
        let (head, body) = resp.split_once("\r\n\r\n").expect("a response head");
        let code = head.split_whitespace().nth(1).unwrap().parse().unwrap();
        let ctype = head
            .lines()
            .find_map(|l| {
                let (k, v) = l.split_once(':')?;
                k.eq_ignore_ascii_case("content-type")
                    .then(|| v.trim().to_string())
            })
            .unwrap_or_default();
        (code, ctype, body.to_string())
    }

    #[tokio::test]
    async fn routes() {
        let (addr, m) = start().await;
        assert_eq!(
            request(addr, "GET", "/healthz").await,
            (200, TEXT.into(), "ok\n".into())
        );
        assert_eq!(
            request(addr, "GET", "/readyz").await,
            (503, TEXT.into(), "not ready\n".into())
        );
        m.set_ready(true);
        assert_eq!(
            request(addr, "GET", "/readyz").await,
            (200, TEXT.into(), "ready\n".into())
        );
        m.alert("Read sensitive file", "Warning");
        let (code, ctype, body) = request(addr, "GET", "/metrics").await;
        assert_eq!((code, ctype.as_str()), (200, OPENMETRICS));
        assert!(
            body.contains("osprey_rule_matches_total{rule=\"Read sensitive file\"} 1"),
            "{body}"
        );
        assert_eq!(
            request(addr, "GET", "/nope").await,
            (404, TEXT.into(), "not found\n".into())
        );
        // As before, the method does not matter.
        assert_eq!(request(addr, "POST", "/healthz").await.0, 200);

        // Rule files that do not load: still ready, and the body says why.
        m.set_rule_files_error(Some("local.yaml:3:5: bad".into()));
        let (code, _, body) = request(addr, "GET", "/readyz").await;
        assert_eq!(code, 200);
        assert_eq!(body, "ready\nrule files invalid: local.yaml:3:5: bad\n");
        assert!(m.encode().contains("osprey_rule_files_invalid 1"));
    }

    #[test]
    fn health_fails_once_the_event_loop_stands_still() {
        let m = Metrics::new();
        assert!(
            m.health(Duration::from_millis(1)).is_ok(),
            "not started yet"
        );
        m.heartbeat();
        assert!(m.health(Duration::from_secs(60)).is_ok());
        std::thread::sleep(Duration::from_millis(20));
        let e = m.health(Duration::from_millis(1)).unwrap_err();
        assert!(e.contains("ring buffer is not being read"), "{e}");
    }

    #[tokio::test]
    async fn a_client_that_sends_nothing_is_let_go() {
        let (addr, _) = start().await;
        let mut idle = tokio::net::TcpStream::connect(addr).await.unwrap();
        let mut buf = Vec::new();
        // Closed by the server after HEAD_TIMEOUT (a 408 or nothing), not held open.
        tokio::time::timeout(HEAD_TIMEOUT * 3, idle.read_to_end(&mut buf))
            .await
            .expect("the server drops an idle client")
            .ok();
        // And the endpoint still answers others.
        assert_eq!(request(addr, "GET", "/healthz").await.0, 200);
    }
}
