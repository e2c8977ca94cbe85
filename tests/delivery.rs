//! Delivery from agents to the collector, as root, with real `osprey run` agents (real eBPF),
//! a real `osprey collector` and `osprey tail`, on loopback: certificates decide who pushes as
//! which node, a restarted numbering is not taken for duplicates, bad spool entries and a full
//! spool disk end up in exact gaps.

mod support;

use std::{
    collections::BTreeSet,
    path::{Path, PathBuf},
    process::Command,
    time::{Duration, Instant},
};

use osprey::server::{pb, tls::ClientTlsArgs};
use prost::Message as _;
use serde_json::Value;
use support::{Agent, OSPREY, free_port, http_get, metric};

const WAIT: Duration = Duration::from_secs(30);
const RULE: &str = "osprey-delivery-test open";

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
        let dir =
            std::env::temp_dir().join(format!("osprey-delivery-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let marker = dir.join("hits");
        std::fs::create_dir_all(&marker).unwrap();
        std::fs::write(
            dir.join("rules.yaml"),
            format!(
                "- rule: {RULE}\n  desc: test\n  condition: evt.type in (open, openat) and fd.name startswith {}/\n  output: \"delivery test open (file=%fd.name proc=%proc.name)\"\n  priority: WARNING\n  tags: [osprey_delivery_test]\n",
                marker.display()
            ),
        )
        .unwrap();
        Scratch { dir, marker }
    }

    fn path(&self, name: &str) -> String {
        s(self.dir.join(name).to_str().unwrap())
    }

    /// Opens marker file `name`: one alert on every agent.
    fn hit(&self, name: &str) {
        std::fs::write(self.marker.join(name), b"x").unwrap();
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
        sc.path("rules.yaml"),
        s("--node-name"),
        s(node),
    ];
    args.extend_from_slice(extra);
    Agent::spawn(node, &args, Some("osprey is running"))
}

fn collector(port: u16, extra: &[String]) -> Agent {
    let mut args = vec![
        s("collector"),
        s("--listen"),
        format!("127.0.0.1:{port}"),
        s("--metrics"),
        s("off"),
    ];
    args.extend_from_slice(extra);
    Agent::spawn("collector", &args, Some("osprey collector is serving"))
}

fn tail(name: &str, args: &[String]) -> Agent {
    let mut a = vec![s("tail"), s("-o"), s("json"), s("--rule"), s(RULE)];
    a.extend_from_slice(args);
    Agent::spawn(name, &a, None)
}

fn alerts_of<'a>(seen: &'a [Value], node: &'a str) -> impl Iterator<Item = &'a Value> {
    seen.iter()
        .filter(move |v| v["rule"] == RULE && v["node"] == node)
}

fn gaps_of<'a>(seen: &'a [Value], node: &'a str) -> impl Iterator<Item = &'a Value> {
    seen.iter()
        .filter_map(|v| v.get("gap"))
        .filter(move |g| g["node"] == node)
}

fn file_of(v: &Value) -> String {
    let f = v["output_fields"]["fd.name"].as_str().unwrap_or("");
    s(f.rsplit('/').next().unwrap())
}

/// Distinct marker files of `node`'s alerts seen; panics on a duplicate.
fn files_of(seen: &[Value], node: &str) -> BTreeSet<String> {
    let mut files = BTreeSet::new();
    for v in alerts_of(seen, node) {
        assert!(files.insert(file_of(v)), "{node}: duplicated alert {v}");
    }
    files
}

fn missed_of(seen: &[Value], node: &str) -> u64 {
    gaps_of(seen, node)
        .map(|g| g["missed"].as_u64().unwrap())
        .sum()
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

async fn client(
    addr: &str,
    tls: &ClientTlsArgs,
) -> pb::alerts_client::AlertsClient<tonic::transport::Channel> {
    let ch = tls.endpoint(addr, false).unwrap().connect().await.unwrap();
    pb::alerts_client::AlertsClient::new(ch)
}

async fn status(addr: &str, tls: &ClientTlsArgs) -> pb::StatusResponse {
    client(addr, tls)
        .await
        .status(pb::StatusRequest {})
        .await
        .unwrap()
        .into_inner()
}

/// Pushes `items` after a Hello as `node`; the collector's answers (Welcome, acks), or its
/// refusal.
async fn push(
    addr: &str,
    tls: &ClientTlsArgs,
    node: &str,
    items: Vec<pb::push_request::Item>,
) -> Result<Vec<pb::push_response::Item>, tonic::Status> {
    use pb::push_request::{Hello, Item};
    let (tx, rx) = tokio::sync::mpsc::channel(16);
    let n = items.len();
    tx.send(pb::PushRequest {
        item: Some(Item::Hello(Hello {
            node: s(node),
            version: s("test"),
            epoch: 0,
        })),
    })
    .await
    .unwrap();
    for i in items {
        tx.send(pb::PushRequest { item: Some(i) }).await.unwrap();
    }
    let mut inbound = client(addr, tls)
        .await
        .push(tokio_stream::wrappers::ReceiverStream::new(rx))
        .await?
        .into_inner();
    let mut got = Vec::new();
    while got.len() < n + 1 {
        match tokio::time::timeout(WAIT, inbound.message()).await {
            Ok(Ok(Some(pb::PushResponse { item: Some(i) }))) => got.push(i),
            Ok(Err(e)) => return Err(e),
            other => panic!("push as {node}: {other:?} after {got:?}"),
        }
    }
    drop(tx);
    Ok(got)
}

/// Waits until `f` holds, polling.
fn eventually(what: &str, timeout: Duration, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !f() {
        assert!(Instant::now() < deadline, "not within {timeout:?}: {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// `osprey certs` into `dir`: the collector's, agents' for `nodes`, and a reader's.
fn certs(dir: &Path, nodes: &[&str]) -> String {
    let mut cmd = Command::new(OSPREY);
    cmd.args(["certs", "--out"])
        .arg(dir)
        .args(["--reader", "reader"]);
    for n in nodes {
        cmd.args(["--node", n]);
    }
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "osprey certs: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn tls(dir: &Path, identity: &str) -> ClientTlsArgs {
    ClientTlsArgs {
        tls_ca: Some(dir.join("ca.crt")),
        tls_cert: Some(dir.join(format!("{identity}.crt"))),
        tls_key: Some(dir.join(format!("{identity}.key"))),
        tls_server_name: None,
    }
}

fn tls_flags(dir: &Path, identity: &str) -> Vec<String> {
    let p = |f: &str| s(dir.join(f).to_str().unwrap());
    vec![
        s("--tls-ca"),
        p("ca.crt"),
        s("--tls-cert"),
        p(&format!("{identity}.crt")),
        s("--tls-key"),
        p(&format!("{identity}.key")),
    ]
}

#[test]
fn delivery_certificates_decide_who_pushes_as_which_node_and_a_forged_gap_hides_nothing() {
    let sc = Scratch::new("roles");
    let pki = sc.dir.join("pki");
    let printed = certs(&pki, &["dl-a", "dl-b"]);
    assert!(
        printed.contains("kubectl -n osprey create secret generic osprey-collector-tls"),
        "{printed}"
    );
    let p = |f: &str| s(pki.join(f).to_str().unwrap());

    // Off loopback, a collector without client certificates refuses to start, and says which
    // flags are missing.
    let out = Command::new(OSPREY)
        .args(["collector", "--metrics", "off", "--listen"])
        .arg(format!("0.0.0.0:{}", free_port()))
        .args([
            "--tls-cert",
            &p("collector.crt"),
            "--tls-key",
            &p("collector.key"),
        ])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "collector started without mTLS");
    assert!(err.contains("--tls-client-ca"), "{err}");

    let cport = free_port();
    let caddr = format!("127.0.0.1:{cport}");
    let _col = collector(
        cport,
        &[
            s("--tls-cert"),
            p("collector.crt"),
            s("--tls-key"),
            p("collector.key"),
            s("--tls-client-ca"),
            p("ca.crt"),
            s("--max-subscribers"),
            s("3"),
        ],
    );
    let mut agent_args = vec![
        s("--grpc"),
        s("off"),
        s("--collector"),
        caddr.clone(),
        s("--spool-dir"),
        sc.path("spool-a"),
    ];
    agent_args.extend(tls_flags(&pki, "agent-dl-a"));
    let _a = agent(&sc, "dl-a", &agent_args);
    let mut tail_args = vec![caddr.clone(), s("--from"), s("retained")];
    tail_args.extend(tls_flags(&pki, "reader"));
    let mut t = tail("tail", &tail_args);
    sc.hit("r0");
    t.wait_until("dl-a's first alert", WAIT, |seen| {
        files_of(seen, "dl-a").contains("r0")
    });

    let rt = rt();
    let have = rt.block_on(status(&caddr, &tls(&pki, "reader")));
    let hwm = have
        .nodes
        .iter()
        .find(|n| n.node == "dl-a")
        .map(|n| n.last_seq)
        .unwrap();
    let forged_gap = |from, to| {
        pb::push_request::Item::Gap(pb::Gap {
            node: s("dl-a"),
            from_seq: from,
            to_seq: to,
            missed: to - from + 1,
            reason: pb::gap::Reason::SpoolOverflow as i32,
        })
    };
    // A reader may not push at all.
    let e = rt
        .block_on(push(&caddr, &tls(&pki, "reader"), "dl-a", vec![]))
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::PermissionDenied, "{e}");
    assert!(e.message().contains("reader"), "{e}");
    // dl-b's certificate may not push as dl-a, whatever its Hello says.
    let e = rt
        .block_on(push(
            &caddr,
            &tls(&pki, "agent-dl-b"),
            "dl-a",
            vec![forged_gap(hwm + 1, hwm + 1_000_000)],
        ))
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::PermissionDenied, "{e}");
    assert!(e.message().contains("dl-a"), "{e}");
    // It may push as dl-b.
    let ok = rt
        .block_on(push(&caddr, &tls(&pki, "agent-dl-b"), "dl-b", vec![]))
        .unwrap();
    assert!(matches!(ok[0], pb::push_response::Item::Welcome(_)));
    // Even with dl-a's own key, a gap far past dl-a's high-water mark is refused and counted.
    let acked = rt
        .block_on(push(
            &caddr,
            &tls(&pki, "agent-dl-a"),
            "dl-a",
            vec![forged_gap(hwm + 1, hwm + (1 << 40))],
        ))
        .unwrap();
    assert_eq!(acked.len(), 2, "{acked:?}");
    let st = rt.block_on(status(&caddr, &tls(&pki, "reader")));
    assert_eq!(st.refused, 1, "{st:?}");

    // dl-a's later alerts arrive, none hidden as duplicates.
    for i in 1..=5 {
        sc.hit(&format!("r{i}"));
    }
    t.wait_until("dl-a's later alerts", WAIT, |seen| {
        files_of(seen, "dl-a").len() >= 6
    });
    assert_eq!(gaps_of(&t.seen, "dl-a").count(), 0, "{:?}", t.seen);

    // With dl-a's own key (stolen, or a fleet-wide certificate), a gap within the window is
    // taken: dl-a's next alerts look like duplicates. Its agent sees the collector's mark past
    // anything it numbered, starts a new epoch and re-sends them: nothing stays hidden.
    let hwm = rt
        .block_on(status(&caddr, &tls(&pki, "reader")))
        .nodes
        .iter()
        .find(|n| n.node == "dl-a")
        .map(|n| n.last_seq)
        .unwrap();
    rt.block_on(push(
        &caddr,
        &tls(&pki, "agent-dl-a"),
        "dl-a",
        vec![forged_gap(hwm + 1, hwm + 1000)],
    ))
    .unwrap();
    for i in 6..=10 {
        sc.hit(&format!("r{i}"));
    }
    t.wait_until("dl-a's alerts after a forged gap", WAIT, |seen| {
        files_of(seen, "dl-a").len() >= 11
    });
    assert!(
        gaps_of(&t.seen, "dl-a").any(|g| g["reason"] == "node_restart"),
        "{:?}",
        t.seen
    );

    // An agent's certificate may not read; readers may, up to the subscriber limit (3, the
    // tail is one).
    let subscribe = |identity: &str| {
        rt.block_on(async {
            client(&caddr, &tls(&pki, identity))
                .await
                .subscribe(pb::SubscribeRequest::default())
                .await
        })
    };
    let e = subscribe("agent-dl-a").unwrap_err();
    assert_eq!(e.code(), tonic::Code::PermissionDenied, "{e}");
    let _s2 = subscribe("reader").unwrap();
    let _s3 = subscribe("reader").unwrap();
    let e = subscribe("reader").unwrap_err();
    assert_eq!(e.code(), tonic::Code::ResourceExhausted, "{e}");
    assert!(e.message().contains("--max-subscribers"), "{e}");
}

#[test]
fn delivery_a_wiped_spool_after_sigkill_restarts_the_numbering_and_later_alerts_arrive() {
    let sc = Scratch::new("wipe");
    let cport = free_port();
    let caddr = format!("127.0.0.1:{cport}");
    let _col = collector(cport, &[]);
    let spool = sc.dir.join("spool");
    let args = [
        s("--grpc"),
        s("off"),
        s("--collector"),
        caddr.clone(),
        s("--spool-dir"),
        s(spool.to_str().unwrap()),
    ];
    let mut a = agent(&sc, "dl-wipe", &args);
    let mut t = tail("tail", &[caddr.clone(), s("--from"), s("retained")]);
    for i in 0..20 {
        sc.hit(&format!("w{i}"));
    }
    t.wait_until("the first alerts", WAIT, |seen| {
        files_of(seen, "dl-wipe").len() >= 20
    });

    // SIGKILL in the middle of a burst, the spool wiped, the agent started again.
    let burst = {
        let marker = sc.marker.clone();
        std::thread::spawn(move || {
            for i in 0..40 {
                std::fs::write(marker.join(format!("x{i}")), b"x").unwrap();
                std::thread::sleep(Duration::from_millis(20));
            }
        })
    };
    std::thread::sleep(Duration::from_millis(300));
    a.kill9();
    burst.join().unwrap();
    std::fs::remove_dir_all(&spool).unwrap();
    let _a = agent(&sc, "dl-wipe", &args);
    for i in 0..10 {
        sc.hit(&format!("after{i}"));
    }
    t.wait_until("every alert after the restart", WAIT, |seen| {
        let f = files_of(seen, "dl-wipe");
        (0..10).all(|i| f.contains(&format!("after{i}")))
    });
    assert!(
        gaps_of(&t.seen, "dl-wipe").any(|g| g["reason"] == "node_restart"),
        "no restart notice: {:?}",
        t.seen
    );
    let st = rt().block_on(status(&caddr, &ClientTlsArgs::default()));
    let node = st.nodes.iter().find(|n| n.node == "dl-wipe").unwrap();
    assert_eq!(node.restarts, 1, "{node:?}");
}

/// The alert files of a spool, oldest first.
fn spooled(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|d| {
            d.flatten()
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|x| x == "alert"))
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

#[test]
fn delivery_a_truncated_and_a_foreign_spool_entry_become_a_gap_and_the_rest_arrives() {
    let sc = Scratch::new("bad");
    let cport = free_port();
    let caddr = format!("127.0.0.1:{cport}");
    let aaddr = format!("127.0.0.1:{}", free_port());
    let spool = sc.dir.join("spool");
    let args = [
        s("--grpc"),
        aaddr.clone(),
        s("--collector"),
        caddr.clone(),
        s("--spool-dir"),
        s(spool.to_str().unwrap()),
    ];
    // No collector yet: the alerts stay in the spool.
    let a = agent(&sc, "dl-bad", &args);
    for i in 0..10 {
        sc.hit(&format!("b{i}"));
    }
    eventually("10 spooled alerts", WAIT, || spooled(&spool).len() >= 10);
    drop(a);
    let files = spooled(&spool);
    assert_eq!(files.len(), 10);
    // One entry cut in half, one rewritten as another node's alert.
    let whole = std::fs::read(&files[2]).unwrap();
    std::fs::write(&files[2], &whole[..whole.len() / 2]).unwrap();
    let raw = std::fs::read(&files[4]).unwrap();
    let mut foreign = pb::Alert::decode(&raw[12..]).unwrap();
    foreign.node = s("intruder");
    std::fs::write(&files[4], foreign.encode_to_vec()).unwrap();

    let _col = collector(cport, &[]);
    let a = agent(&sc, "dl-bad", &args);
    let mut t = tail("tail", &[caddr.clone(), s("--from"), s("retained")]);
    t.wait_until("8 alerts and a gap of 2", WAIT, |seen| {
        files_of(seen, "dl-bad").len() + missed_of(seen, "dl-bad") as usize >= 10
    });
    t.collect_for(Duration::from_millis(500));
    assert_eq!(files_of(&t.seen, "dl-bad").len(), 8);
    assert_eq!(missed_of(&t.seen, "dl-bad"), 2);
    assert!(
        gaps_of(&t.seen, "dl-bad").all(|g| g["reason"] == "spool_corrupt"),
        "{:?}",
        t.seen
    );
    let rt = rt();
    eventually("the backlog drains to 0", WAIT, || {
        rt.block_on(status(&aaddr, &ClientTlsArgs::default()))
            .push_backlog
            == 0
    });
    assert_eq!(
        std::fs::read_dir(spool.join("quarantine")).unwrap().count(),
        2
    );
    assert!(a.stderr().contains("quarantine"), "{}", a.stderr());
}

/// A tmpfs mounted for the test, unmounted when dropped.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(dir: &Path, size: &str) -> Tmpfs {
        std::fs::create_dir_all(dir).unwrap();
        let st = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir)
            .status()
            .unwrap();
        assert!(st.success(), "mounting a tmpfs on {}", dir.display());
        Tmpfs(dir.to_path_buf())
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

#[test]
fn delivery_a_full_spool_disk_loses_nothing_outside_an_exact_gap_and_the_metric_matches() {
    let sc = Scratch::new("full");
    let mnt = Tmpfs::mount(&sc.dir.join("mnt"), "1m");
    let cport = free_port();
    let caddr = format!("127.0.0.1:{cport}");
    let aaddr = format!("127.0.0.1:{}", free_port());
    let mport = free_port();
    let a = agent(
        &sc,
        "dl-full",
        &[
            s("--grpc"),
            aaddr.clone(),
            s("--metrics"),
            format!("127.0.0.1:{mport}"),
            s("--collector"),
            caddr.clone(),
            s("--spool-dir"),
            s(mnt.0.join("spool").to_str().unwrap()),
        ],
    );
    // Far more than 1 MiB of one-page files holds, while the collector is down.
    let total = 600u64;
    for i in 0..total {
        sc.hit(&format!("f{i}"));
        if i % 20 == 19 {
            std::thread::sleep(Duration::from_millis(10));
        }
    }
    let rt = rt();
    eventually("every alert published", WAIT, || {
        rt.block_on(status(&aaddr, &ClientTlsArgs::default()))
            .published
            >= total
    });
    assert!(
        a.stderr().contains("cannot write to the spool"),
        "{}",
        a.stderr()
    );

    let _col = collector(cport, &[]);
    let mut t = tail("tail", &[caddr.clone(), s("--from"), s("retained")]);
    t.wait_until("every alert, or a gap for it", WAIT, |seen| {
        files_of(seen, "dl-full").len() as u64 + missed_of(seen, "dl-full") >= total
    });
    t.collect_for(Duration::from_millis(500));
    let arrived = files_of(&t.seen, "dl-full").len() as u64;
    let missed = missed_of(&t.seen, "dl-full");
    assert_eq!(arrived + missed, total);
    assert!(missed > 0, "the disk never filled");
    assert!(
        gaps_of(&t.seen, "dl-full")
            .all(|g| g["reason"] == "spool_write_failed" || g["reason"] == "spool_overflow"),
        "{:?}",
        t.seen
    );
    eventually("the backlog drains to 0", WAIT, || {
        rt.block_on(status(&aaddr, &ClientTlsArgs::default()))
            .push_backlog
            == 0
    });
    let body = http_get(mport, "/metrics").unwrap().1;
    let dropped = metric(&body, "osprey_queue_dropped_total{queue=\"spool\"}").unwrap_or(0.0);
    assert_eq!(dropped as u64, missed, "{body}");
    let st = rt.block_on(status(&aaddr, &ClientTlsArgs::default()));
    assert_eq!(st.spool_dropped, missed);
    drop(a);
}
