//! The gRPC alert stream end to end, as root, with real `osprey run` agents (real eBPF), a real
//! `osprey collector`, `osprey tail`, a real `nats-server`, all on loopback: alerts come from
//! this test opening marker files, and every agent sees every open.

mod support;

use std::{
    collections::{BTreeMap, HashMap},
    io::{Read, Write},
    net::{TcpListener, TcpStream},
    path::{Path, PathBuf},
    process::{Command, Stdio},
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use osprey::server::{pb, tls::ClientTlsArgs};
use serde_json::Value;
use support::{Agent, OSPREY, free_port};

const WAIT: Duration = Duration::from_secs(30);
const RULE: &str = "osprey-grpc-test open";

fn s(x: impl AsRef<str>) -> String {
    x.as_ref().to_string()
}

/// A scratch directory; the marker directory inside it is what the test rule matches.
struct Scratch {
    dir: PathBuf,
    marker: PathBuf,
}

impl Scratch {
    fn new(name: &str) -> Scratch {
        let dir = std::env::temp_dir().join(format!("osprey-grpc-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let marker = dir.join("hits");
        std::fs::create_dir_all(&marker).unwrap();
        std::fs::write(
            dir.join("rules.yaml"),
            format!(
                "- rule: {RULE}\n  desc: test\n  condition: evt.type in (open, openat) and fd.name startswith {}/\n  output: \"grpc test open (file=%fd.name proc=%proc.name)\"\n  priority: WARNING\n  tags: [osprey_grpc_test]\n",
                marker.display()
            ),
        )
        .unwrap();
        Scratch { dir, marker }
    }

    fn rules(&self) -> String {
        s(self.dir.join("rules.yaml").to_str().unwrap())
    }

    fn path(&self, name: &str) -> String {
        s(self.dir.join(name).to_str().unwrap())
    }

    /// Opens marker file `name`: one alert on every agent.
    fn hit(&self, name: &str) {
        let p = self.marker.join(name);
        std::fs::write(&p, b"x").unwrap();
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn agent(sc: &Scratch, node: &str, extra: &[String]) -> Agent {
    let mut args = vec![
        s("run"),
        s("--json"),
        s("--no-flood-control"),
        s("--no-watch-rules"),
        s("--rules"),
        sc.rules(),
        s("--node-name"),
        s(node),
    ];
    args.extend_from_slice(extra);
    Agent::spawn(node, &args, Some("osprey is running"))
}

fn collector(port: u16, extra: &[String]) -> Agent {
    let mut args = vec![s("collector"), s("--listen"), format!("127.0.0.1:{port}")];
    args.extend_from_slice(extra);
    Agent::spawn("collector", &args, Some("osprey collector is serving"))
}

fn tail(name: &str, args: &[String]) -> Agent {
    let mut a = vec![s("tail"), s("-o"), s("json"), s("--rule"), s(RULE)];
    a.extend_from_slice(args);
    Agent::spawn(name, &a, None)
}

fn alerts(seen: &[Value]) -> impl Iterator<Item = &Value> {
    seen.iter().filter(|v| v["rule"] == RULE)
}

fn file_of(v: &Value) -> String {
    let f = v["output_fields"]["fd.name"].as_str().unwrap_or("");
    s(f.rsplit('/').next().unwrap())
}

/// A TCP relay to the collector whose "network" the test can cut and restore.
struct Relay {
    port: u16,
    up: Arc<AtomicBool>,
    conns: Arc<Mutex<Vec<TcpStream>>>,
}

impl Relay {
    fn start(port: u16, to: u16) -> Relay {
        let r = Relay {
            port,
            up: Arc::new(AtomicBool::new(false)),
            conns: Arc::new(Mutex::new(Vec::new())),
        };
        r.resume(to);
        r
    }

    fn resume(&self, to: u16) {
        let listener = TcpListener::bind(("127.0.0.1", self.port)).expect("relay port");
        listener.set_nonblocking(true).unwrap();
        self.up.store(true, Ordering::SeqCst);
        let (up, conns) = (self.up.clone(), self.conns.clone());
        std::thread::spawn(move || {
            while up.load(Ordering::SeqCst) {
                match listener.accept() {
                    Ok((down, _)) => {
                        down.set_nonblocking(false).unwrap();
                        let Ok(upstream) = TcpStream::connect(("127.0.0.1", to)) else {
                            continue;
                        };
                        let mut c = conns.lock().unwrap();
                        c.push(down.try_clone().unwrap());
                        c.push(upstream.try_clone().unwrap());
                        for (mut a, mut b) in [
                            (down.try_clone().unwrap(), upstream.try_clone().unwrap()),
                            (upstream, down),
                        ] {
                            std::thread::spawn(move || {
                                let mut buf = [0u8; 16384];
                                while let Ok(n) = a.read(&mut buf) {
                                    if n == 0 || b.write_all(&buf[..n]).is_err() {
                                        break;
                                    }
                                }
                                let _ = b.shutdown(std::net::Shutdown::Both);
                            });
                        }
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(20)),
                }
            }
        });
    }

    /// Stops listening and breaks every connection through it.
    fn cut(&self) {
        self.up.store(false, Ordering::SeqCst);
        for c in self.conns.lock().unwrap().drain(..) {
            let _ = c.shutdown(std::net::Shutdown::Both);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Checks that `seen` has, for each node, each expected file exactly once, in rising sequence
/// order, and no gap.
fn assert_exactly_once(seen: &[Value], nodes: &[&str], files: &[String]) {
    assert!(
        !seen.iter().any(|v| v.get("gap").is_some()),
        "unexpected gap: {:?}",
        seen.iter()
            .filter(|v| v.get("gap").is_some())
            .collect::<Vec<_>>()
    );
    for node in nodes {
        let mine: Vec<&Value> = alerts(seen).filter(|v| v["node"] == *node).collect();
        let seqs: Vec<u64> = mine.iter().map(|v| v["seq"].as_u64().unwrap()).collect();
        assert!(
            seqs.windows(2).all(|w| w[0] < w[1]),
            "{node}: sequence numbers out of order: {seqs:?}"
        );
        let mut count: BTreeMap<String, u32> = BTreeMap::new();
        for v in &mine {
            *count.entry(file_of(v)).or_default() += 1;
        }
        let dup: Vec<_> = count.iter().filter(|(_, n)| **n > 1).collect();
        assert!(dup.is_empty(), "{node}: duplicated alerts: {dup:?}");
        let missing: Vec<_> = files.iter().filter(|f| !count.contains_key(*f)).collect();
        assert!(missing.is_empty(), "{node}: missing alerts for {missing:?}");
        assert_eq!(mine.len(), files.len(), "{node}: extra alerts");
    }
}

#[test]
fn grpc_three_agents_through_a_collector_exactly_once_across_kill_and_network_cut() {
    let sc = Scratch::new("cluster");
    let (cport, rport) = (free_port(), free_port());
    let mut col = collector(cport, &[]);
    let relay = Relay::start(rport, cport);
    let nodes = ["grpc-node-a", "grpc-node-b", "grpc-node-c"];
    let _agents: Vec<Agent> = nodes
        .iter()
        .map(|n| {
            agent(
                &sc,
                n,
                &[
                    s("--grpc"),
                    format!("127.0.0.1:{}", free_port()),
                    s("--collector"),
                    format!("127.0.0.1:{rport}"),
                    s("--spool-dir"),
                    sc.path(&format!("spool-{n}")),
                ],
            )
        })
        .collect();
    let mut t = tail(
        "tail",
        &[format!("127.0.0.1:{cport}"), s("--from"), s("retained")],
    );
    let mut files = Vec::new();
    let expect = |t: &mut Agent, files: &[String]| {
        let want = files.len() * nodes.len();
        t.wait_until(&format!("{want} alerts"), WAIT, |seen| {
            alerts(seen).count() >= want
        });
    };

    // Steady state.
    for i in 0..10 {
        files.push(format!("a{i}"));
        sc.hit(&files[files.len() - 1]);
    }
    expect(&mut t, &files);

    // kill -9 the collector while alerts flow, restart it on the same port.
    let opener = {
        let marker = sc.marker.clone();
        std::thread::spawn(move || {
            let mut names = Vec::new();
            for i in 0..30 {
                let n = format!("b{i}");
                std::fs::write(marker.join(&n), b"x").unwrap();
                names.push(n);
                std::thread::sleep(Duration::from_millis(50));
            }
            names
        })
    };
    std::thread::sleep(Duration::from_millis(300));
    col.kill9();
    std::thread::sleep(Duration::from_millis(700));
    col = collector(cport, &[]);
    files.extend(opener.join().unwrap());
    expect(&mut t, &files);

    // A network cut between agents and collector: alerts raised meanwhile arrive afterwards.
    relay.cut();
    for i in 0..10 {
        files.push(format!("c{i}"));
        sc.hit(&files[files.len() - 1]);
    }
    std::thread::sleep(Duration::from_secs(1));
    relay.resume(cport);
    expect(&mut t, &files);

    t.collect_for(Duration::from_secs(2));
    assert_exactly_once(&t.seen, &nodes, &files);
    drop(col);
}

/// The test's own gRPC client (the API as a program would use it).
fn client_rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

async fn subscribe(
    addr: &str,
    tls: &ClientTlsArgs,
) -> Result<tonic::Streaming<pb::StreamItem>, String> {
    // Small HTTP/2 windows, so that a subscriber that stops reading stops the server's
    // sending soon instead of buffering megabytes in the transport.
    let ep = tls
        .endpoint(addr, false)
        .map_err(|e| e.to_string())?
        .initial_stream_window_size(Some(65_535))
        .initial_connection_window_size(Some(65_535));
    let ch = ep.connect().await.map_err(|e| format!("connect: {e:?}"))?;
    let mut c = pb::alerts_client::AlertsClient::new(ch);
    let req = pb::SubscribeRequest {
        include: Some(pb::Filter {
            rule: vec![s(RULE)],
            ..Default::default()
        }),
        exclude: None,
        start: Some(pb::StartPoint {
            from: Some(pb::start_point::From::Live(pb::start_point::Live {})),
        }),
    };
    let mut stream = c
        .subscribe(req)
        .await
        .map_err(|e| format!("subscribe: {e}"))?
        .into_inner();
    // With TLS 1.3 a refused client certificate shows on the first read, not the handshake;
    // a Status call makes the answer certain.
    let _ = &mut stream;
    c.status(pb::StatusRequest {})
        .await
        .map_err(|e| format!("status: {e}"))?;
    Ok(stream)
}

#[test]
fn grpc_slow_subscriber_gets_an_exact_gap_while_another_gets_everything() {
    let sc = Scratch::new("slow");
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    let _agent = agent(
        &sc,
        "grpc-slow",
        &[
            s("--grpc"),
            addr.clone(),
            s("--grpc-subscriber-queue"),
            s("64"),
        ],
    );
    let mut reader = tail("reader", std::slice::from_ref(&addr));
    let rt = client_rt();
    let mut stalled = rt
        .block_on(subscribe(&addr, &ClientTlsArgs::default()))
        .unwrap();
    std::thread::sleep(Duration::from_millis(500));

    // The stalled subscriber reads nothing while 2000 alerts are raised (more than its queue
    // and the transport's buffers hold), paced so the kernel ring buffer keeps up.
    let total = 2000;
    for i in 0..total {
        sc.hit(&format!("s{i}"));
        if i % 20 == 19 {
            std::thread::sleep(Duration::from_millis(15));
        }
    }
    reader.wait_until("every alert", WAIT, |seen| alerts(seen).count() >= total);
    assert!(!reader.seen.iter().any(|v| v.get("gap").is_some()));

    // Now it reads: some alerts, then a gap, whose count makes up exactly the rest.
    let (got, gaps) = rt.block_on(async {
        let (mut got, mut gaps) = (0u64, Vec::new());
        while got + gaps.iter().map(|g: &pb::Gap| g.missed).sum::<u64>() < total as u64 {
            match tokio::time::timeout(WAIT, stalled.message()).await {
                Ok(Ok(Some(pb::StreamItem {
                    item: Some(pb::stream_item::Item::Alert(_)),
                }))) => got += 1,
                Ok(Ok(Some(pb::StreamItem {
                    item: Some(pb::stream_item::Item::Gap(g)),
                }))) => gaps.push(g),
                other => panic!("stalled subscriber: {other:?} after {got} alerts, gaps {gaps:?}"),
            }
        }
        (got, gaps)
    });
    assert!(!gaps.is_empty(), "no gap although the subscriber stalled");
    let missed: u64 = gaps.iter().map(|g| g.missed).sum();
    assert_eq!(got + missed, total as u64);
    assert!(
        gaps.iter()
            .all(|g| g.reason() == pb::gap::Reason::SlowSubscriber)
    );

    // The agent counts the drop against that subscriber.
    let status = rt.block_on(async {
        let ch = ClientTlsArgs::default()
            .endpoint(&addr, false)
            .unwrap()
            .connect()
            .await
            .unwrap();
        pb::alerts_client::AlertsClient::new(ch)
            .status(pb::StatusRequest {})
            .await
            .unwrap()
            .into_inner()
    });
    assert_eq!(status.role, "agent");
    assert_eq!(status.node, "grpc-slow");
    assert_eq!(status.rules_loaded, 1);
    assert!(
        status.subscribers.iter().any(|s| s.dropped == missed),
        "drops per subscriber {:?}, missed {missed}",
        status.subscribers
    );
    assert!(status.subscriber_drops >= missed);
}

/// A CA and leaf certificates signed by it, as PEM files in `dir`.
struct Pki {
    dir: PathBuf,
}

impl Pki {
    fn new(dir: &Path) -> Pki {
        use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
        std::fs::create_dir_all(dir).unwrap();
        let write = |name: &str, data: String| std::fs::write(dir.join(name), data).unwrap();
        for ca_name in ["ca", "other-ca"] {
            let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
            params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
            params
                .distinguished_name
                .push(rcgen::DnType::CommonName, format!("osprey test {ca_name}"));
            let key = KeyPair::generate().unwrap();
            write(
                &format!("{ca_name}.crt"),
                params.self_signed(&key).unwrap().pem(),
            );
            let issuer = Issuer::new(params, key);
            for leaf in ["server", "client"] {
                let mut leaf_params =
                    CertificateParams::new(vec![s("localhost"), s("127.0.0.1")]).unwrap();
                // The agent pushes with the server certificate: the collector lets only an
                // agent's certificate push (`osprey certs` issues these roles).
                if leaf == "server" {
                    leaf_params.subject_alt_names.push(rcgen::SanType::URI(
                        osprey::server::certs::URI_FLEET.try_into().unwrap(),
                    ));
                }
                let key = KeyPair::generate().unwrap();
                let cert = leaf_params.signed_by(&key, &issuer).unwrap();
                write(&format!("{ca_name}-{leaf}.crt"), cert.pem());
                write(&format!("{ca_name}-{leaf}.key"), key.serialize_pem());
            }
        }
        Pki {
            dir: dir.to_path_buf(),
        }
    }

    fn p(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    fn ps(&self, name: &str) -> String {
        s(self.p(name).to_str().unwrap())
    }

    fn client(&self, ca: &str, identity: Option<&str>) -> ClientTlsArgs {
        ClientTlsArgs {
            tls_ca: Some(self.p(&format!("{ca}.crt"))),
            tls_cert: identity.map(|i| self.p(&format!("{i}.crt"))),
            tls_key: identity.map(|i| self.p(&format!("{i}.key"))),
            tls_server_name: None,
        }
    }
}

#[test]
fn grpc_mtls_refuses_clients_without_a_certificate_from_the_ca_and_serves_the_right_one() {
    let sc = Scratch::new("mtls");
    let pki = Pki::new(&sc.dir.join("pki"));
    let cport = free_port();
    let caddr = format!("127.0.0.1:{cport}");
    let server_tls = [
        s("--tls-cert"),
        pki.ps("ca-server.crt"),
        s("--tls-key"),
        pki.ps("ca-server.key"),
        s("--tls-client-ca"),
        pki.ps("ca.crt"),
    ];
    let _col = collector(cport, &server_tls);
    // The agent pushes with its client certificate and serves its own stream with mTLS too.
    let mut agent_args = vec![
        s("--grpc"),
        format!("127.0.0.1:{}", free_port()),
        s("--collector"),
        caddr.clone(),
        s("--tls-ca"),
        pki.ps("ca.crt"),
        s("--spool-dir"),
        sc.path("spool"),
    ];
    agent_args.extend_from_slice(&server_tls);
    let _agent = agent(&sc, "grpc-mtls", &agent_args);

    let rt = client_rt();
    let refused = |what: &str, tls: ClientTlsArgs| {
        let r = rt.block_on(subscribe(&caddr, &tls));
        assert!(r.is_err(), "{what} was served");
    };
    refused("a plaintext client", ClientTlsArgs::default());
    refused("a client without a certificate", pki.client("ca", None));
    refused(
        "a client whose certificate another CA signed",
        pki.client("ca", Some("other-ca-client")),
    );
    refused(
        "a client that trusts another CA",
        pki.client("other-ca", Some("ca-client")),
    );
    rt.block_on(subscribe(&caddr, &pki.client("ca", Some("ca-client"))))
        .expect("the right client is served");

    // osprey tail with the right certificate follows the collector.
    let mut t = tail(
        "tail-mtls",
        &[
            caddr.clone(),
            s("--from"),
            s("retained"),
            s("--tls-ca"),
            pki.ps("ca.crt"),
            s("--tls-cert"),
            pki.ps("ca-client.crt"),
            s("--tls-key"),
            pki.ps("ca-client.key"),
        ],
    );
    sc.hit("m1");
    t.wait_until("the alert over mTLS", WAIT, |seen| {
        alerts(seen).any(|v| file_of(v) == "m1" && v["node"] == "grpc-mtls")
    });

    // And without one, osprey tail gives up with an error.
    let out = Command::new(OSPREY)
        .args(["tail", &caddr, "--give-up-after", "2", "--tls-ca"])
        .arg(pki.p("ca.crt"))
        .output()
        .unwrap();
    assert!(
        !out.status.success(),
        "tail without a certificate succeeded"
    );
}

#[test]
fn grpc_nats_round_trip_through_jetstream() {
    let Ok(nats_bin) = which("nats-server") else {
        panic!(
            "nats-server is not installed; `cargo xtask test` installs it (Debian package nats-server)"
        );
    };
    let sc = Scratch::new("nats");
    let nport = free_port();
    let store = sc.dir.join("jetstream");
    let mut nats = Command::new(nats_bin)
        .args(["-js", "-a", "127.0.0.1", "-p", &nport.to_string(), "-sd"])
        .arg(&store)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while TcpStream::connect(("127.0.0.1", nport)).is_err() {
        assert!(Instant::now() < deadline, "nats-server did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    let url = format!("nats://127.0.0.1:{nport}");
    let cport = free_port();
    let col = collector(cport, &[s("--nats"), url.clone()]);
    let _agent = agent(
        &sc,
        "grpc-nats",
        &[
            s("--grpc"),
            s("off"),
            s("--collector"),
            format!("127.0.0.1:{cport}"),
            s("--spool-dir"),
            sc.path("spool"),
        ],
    );
    let files: Vec<String> = (0..5).map(|i| format!("n{i}")).collect();
    for f in &files {
        sc.hit(f);
    }
    let mut t = tail(
        "tail-nats",
        &[s("--nats"), url.clone(), s("--from"), s("retained")],
    );
    t.wait_until("the alerts from JetStream", WAIT, |seen| {
        alerts(seen).filter(|v| v["node"] == "grpc-nats").count() >= files.len()
    });
    t.collect_for(Duration::from_millis(500));
    assert_exactly_once(&t.seen, &["grpc-nats"], &files);
    let by_file: HashMap<String, &Value> = alerts(&t.seen).map(|v| (file_of(v), v)).collect();
    assert_eq!(by_file["n0"]["priority"], "Warning");
    drop(col);
    let _ = nats.kill();
    let _ = nats.wait();
}

fn which(bin: &str) -> Result<PathBuf, ()> {
    std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default())
        .chain([PathBuf::from("/usr/sbin"), PathBuf::from("/usr/bin")])
        .map(|d| d.join(bin))
        .find(|p| p.is_file())
        .ok_or(())
}
