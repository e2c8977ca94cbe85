use std::path::Path;

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

use super::*;

fn alert(node: &str, rule: &str, proc_name: &str) -> pb::Alert {
    pb::Alert {
        node: node.into(),
        rule: rule.into(),
        priority: pb::Priority::Warning as i32,
        output: format!("opened by {proc_name}"),
        process: Some(pb::Process {
            name: proc_name.into(),
            pid: 42,
            ..Default::default()
        }),
        pod: Some(pb::Pod {
            namespace: "prod".into(),
            name: "web-0".into(),
            uid: "7d0c".into(),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn source(bus: &Arc<AlertBus>) -> WebSource {
    WebSource {
        bus: bus.clone(),
        node: "n1".into(),
        role: "agent",
        subscriber_queue: 16,
        metrics: None,
    }
}

#[test]
fn query_builds_the_same_filter_as_grpc_and_names_what_is_wrong() {
    let q = EventsQuery::parse(
        "priority=error&rule=Read%20*&rule=Write*&node=n1&namespace=&pod=web-0&image=*%2Fnginx&exclude_namespace=kube-system&q=free+text",
    )
    .unwrap();
    assert_eq!(q.include.min_priority, pb::Priority::Error as i32);
    assert_eq!(q.include.rule, ["Read *", "Write*"]);
    assert_eq!(q.include.node, ["n1"]);
    assert!(q.include.namespace.is_empty(), "empty values are no filter");
    assert_eq!(q.include.image, ["*/nginx"]);
    assert_eq!(q.exclude.namespace, ["kube-system"]);
    assert_eq!(q.backlog, DEFAULT_BACKLOG);
    assert_eq!(EventsQuery::parse("from=live").unwrap().backlog, 0);
    assert_eq!(EventsQuery::parse("backlog=10").unwrap().backlog, 10);
    assert_eq!(
        EventsQuery::parse("").unwrap(),
        EventsQuery {
            backlog: DEFAULT_BACKLOG,
            ..Default::default()
        }
    );
    let err = |s: &str| EventsQuery::parse(s).unwrap_err().to_string();
    assert!(err("prio=error").contains("unknown parameter \"prio\""));
    assert!(err("priority=loud").contains("use emergency, alert"));
    assert!(err("backlog=99999999").contains("at most 10000"));
    assert!(err("from=yesterday").contains("from=live or from=retained"));
    assert!(err(&format!("rule={}", "x".repeat(300))).contains("at most 256"));
}

#[test]
fn only_loopback_hosts_are_answered_in_plaintext() {
    for h in [
        "localhost",
        "localhost:8080",
        "127.0.0.1:8080",
        "[::1]:8080",
        "[::1]",
    ] {
        assert!(loopback_host(h), "{h}");
    }
    for h in [
        "",
        "evil.example",
        "evil.example:8080",
        "10.0.0.1:8080",
        "127.0.0.1.nip.io",
    ] {
        assert!(!loopback_host(h), "{h}");
    }
}

#[test]
fn the_page_builds_no_markup_from_strings() {
    for bad in [
        "innerHTML",
        "outerHTML",
        "insertAdjacentHTML",
        "document.write",
        "eval(",
    ] {
        assert!(!APP_JS.contains(bad), "app.js uses {bad}");
    }
    assert!(
        !INDEX_HTML.contains("<script>"),
        "no inline script: the CSP forbids it"
    );
}

/// One HTTP/1.1 request on a fresh connection: the whole response, as text.
async fn request(addr: SocketAddr, head: &str) -> String {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(head.as_bytes()).await.unwrap();
    let mut buf = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut buf))
        .await
        .expect("the server answers and closes")
        .unwrap();
    String::from_utf8_lossy(&buf).into_owned()
}

fn get(path: &str) -> String {
    format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
}

#[tokio::test]
async fn serves_the_page_read_only_with_its_guards() {
    let bus = AlertBus::new(100);
    let addr = start("127.0.0.1:0", &ServerTlsArgs::default(), source(&bus))
        .await
        .unwrap();
    let page = request(addr, &get("/")).await;
    assert!(page.starts_with("HTTP/1.1 200"), "{page}");
    assert!(page.contains("content-security-policy: default-src 'none'; script-src 'self'"));
    assert!(page.contains("x-content-type-options: nosniff"));
    assert!(page.contains("<title>Osprey alerts</title>"));
    assert!(
        request(addr, &get("/app.js"))
            .await
            .contains("text/javascript")
    );
    assert!(request(addr, &get("/app.css")).await.contains("text/css"));
    let post = request(
        addr,
        "POST /events HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 0\r\n\r\n",
    )
    .await;
    assert!(post.starts_with("HTTP/1.1 405"), "{post}");
    let rebound = request(
        addr,
        "GET / HTTP/1.1\r\nHost: attacker.example\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(rebound.starts_with("HTTP/1.1 421"), "{rebound}");
    assert!(rebound.contains("localhost only"));
    let bad = request(addr, &get("/events?priority=loud")).await;
    assert!(
        bad.starts_with("HTTP/1.1 400") && bad.contains("use emergency"),
        "{bad}"
    );
    assert!(
        request(addr, &get("/api/status"))
            .await
            .contains("\"role\":\"agent\"")
    );
}

#[tokio::test]
async fn events_stream_the_filtered_backlog_then_live_alerts_and_gaps() {
    let bus = AlertBus::new(100);
    bus.publish_next(alert("n1", "Old one", "cat"));
    bus.publish_next(alert("n1", "Other", "cat"));
    let addr = start("127.0.0.1:0", &ServerTlsArgs::default(), source(&bus))
        .await
        .unwrap();
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(get("/events?rule=Old*&rule=New*").as_bytes())
        .await
        .unwrap();
    let mut seen = String::new();
    let mut read_until = async |s: &mut tokio::net::TcpStream, what: &str| {
        let mut buf = [0u8; 4096];
        while !seen.contains(what) {
            let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf))
                .await
                .unwrap_or_else(|_| panic!("no {what:?} in:\n{seen}"))
                .unwrap();
            assert!(n > 0, "stream closed before {what:?}:\n{seen}");
            seen.push_str(&String::from_utf8_lossy(&buf[..n]));
        }
        seen.clone()
    };
    let got = read_until(&mut s, "Old one").await;
    assert!(got.contains("text/event-stream"), "{got}");
    assert!(got.contains("event: hello"), "{got}");
    assert!(got.contains("id: n1/1"), "{got}");
    bus.publish_next(alert("n1", "Other", "cat"));
    bus.publish_next(alert("n1", "New <b>", "<script>x"));
    let got = read_until(&mut s, "New <b>").await;
    assert!(!got.contains("\"Other\""), "filtered out: {got}");
    // The JSON carries the markup as text; the page renders it with textContent.
    assert!(got.contains("\"name\":\"<script>x\""), "{got}");
    assert!(
        got.contains("\"uid\":\"7d0c\""),
        "the pod's whole identity: {got}"
    );
    bus.publish_gap(crate::alert::Gap {
        node: "n1".into(),
        from_seq: 5,
        to_seq: 9,
        missed: 5,
        reason: crate::alert::GapReason::SpoolOverflow,
    });
    let got = read_until(&mut s, "spool_overflow").await;
    assert!(got.contains("event: gap"), "{got}");
}

#[tokio::test]
async fn a_page_resumes_after_its_last_event_id() {
    let bus = AlertBus::new(100);
    for _ in 0..3 {
        bus.publish_next(alert("n1", "r", "cat"));
    }
    let addr = start("127.0.0.1:0", &ServerTlsArgs::default(), source(&bus))
        .await
        .unwrap();
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(b"GET /events HTTP/1.1\r\nHost: localhost\r\nLast-Event-ID: n1/2\r\n\r\n")
        .await
        .unwrap();
    let mut got = String::new();
    let mut buf = [0u8; 4096];
    while !got.contains("id: n1/3") {
        let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf))
            .await
            .expect("n1/3 is sent")
            .unwrap();
        assert!(n > 0);
        got.push_str(&String::from_utf8_lossy(&buf[..n]));
    }
    assert!(
        !got.contains("id: n1/1") && !got.contains("id: n1/2"),
        "{got}"
    );
}

#[tokio::test]
async fn off_loopback_it_refuses_to_start_without_tls_and_a_client_ca() {
    let bus = AlertBus::new(1);
    let e = start("0.0.0.0:0", &ServerTlsArgs::default(), source(&bus))
        .await
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("--tls-client-ca") && e.contains("port-forward"),
        "{e}"
    );
    let only_cert = ServerTlsArgs {
        tls_cert: Some("c.pem".into()),
        tls_key: Some("k.pem".into()),
        tls_client_ca: None,
    };
    let e = start("0.0.0.0:0", &only_cert, source(&bus))
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("--tls-client-ca"), "{e}");
}

/// A CA, a server certificate for 127.0.0.1 and a client certificate, written in `dir`.
fn pki(dir: &Path) {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
    std::fs::create_dir_all(dir).unwrap();
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let key = KeyPair::generate().unwrap();
    std::fs::write(dir.join("ca.crt"), ca.self_signed(&key).unwrap().pem()).unwrap();
    let issuer = Issuer::new(ca, key);
    for leaf in ["server", "client"] {
        let params = CertificateParams::new(vec!["127.0.0.1".to_string()]).unwrap();
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &issuer).unwrap();
        std::fs::write(dir.join(format!("{leaf}.crt")), cert.pem()).unwrap();
        std::fs::write(dir.join(format!("{leaf}.key")), key.serialize_pem()).unwrap();
    }
}

#[tokio::test]
async fn with_a_client_ca_only_browsers_with_a_certificate_get_in() {
    use rustls::{
        ClientConfig, RootCertStore,
        pki_types::{CertificateDer, PrivateKeyDer, ServerName, pem::PemObject as _},
    };
    let dir = std::env::temp_dir().join(format!("osprey-web-pki-{}", std::process::id()));
    pki(&dir);
    let tls = ServerTlsArgs {
        tls_cert: Some(dir.join("server.crt")),
        tls_key: Some(dir.join("server.key")),
        tls_client_ca: Some(dir.join("ca.crt")),
    };
    let bus = AlertBus::new(1);
    let addr = start("127.0.0.1:0", &tls, source(&bus)).await.unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_file(dir.join("ca.crt")).unwrap())
        .unwrap();
    let builder = || {
        ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots.clone())
    };
    let fetch = async |cfg: ClientConfig| -> std::io::Result<String> {
        let tcp = tokio::net::TcpStream::connect(addr).await?;
        let conn = tokio_rustls::TlsConnector::from(Arc::new(cfg));
        let name = ServerName::try_from("127.0.0.1").unwrap();
        let mut s = conn.connect(name, tcp).await?;
        // Any Host: with client certificates, DNS rebinding gets nowhere.
        s.write_all(
            b"GET /api/status HTTP/1.1\r\nHost: osprey.example\r\nConnection: close\r\n\r\n",
        )
        .await?;
        let mut buf = Vec::new();
        s.read_to_end(&mut buf).await?;
        Ok(String::from_utf8_lossy(&buf).into_owned())
    };
    let anonymous = fetch(builder().with_no_client_auth()).await;
    assert!(
        anonymous.as_ref().is_err() || anonymous.as_ref().is_ok_and(|r| r.is_empty()),
        "a browser without a certificate is refused: {anonymous:?}"
    );
    let chain = vec![CertificateDer::from_pem_file(dir.join("client.crt")).unwrap()];
    let key = PrivateKeyDer::from_pem_file(dir.join("client.key")).unwrap();
    let with_cert = fetch(builder().with_client_auth_cert(chain, key).unwrap())
        .await
        .unwrap();
    assert!(with_cert.starts_with("HTTP/1.1 200"), "{with_cert}");
    let _ = std::fs::remove_dir_all(&dir);
}
