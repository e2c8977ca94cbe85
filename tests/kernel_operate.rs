//! Operating the agent: hot reload under attack, flood control, the alert file and the webhook.
//! Real agent, real processes doing real opens.

mod support;

use std::{
    io::{BufRead, BufReader, Read, Write},
    net::TcpListener,
    process::Command,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use serde_json::Value;
use support::*;

const WAIT: Duration = Duration::from_secs(15);

fn temp_dir(tag: &str) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("osprey-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn marker_rule(name: &str, marker: &std::path::Path) -> String {
    format!(
        "- rule: {name}\n  desc: test\n  condition: evt.type in (open, openat) and fd.name = {}\n  output: \"{name} hit (pid=%proc.pid file=%fd.name)\"\n  priority: WARNING\n",
        marker.display()
    )
}

#[test]
fn kernel_hot_reload_keeps_detecting_and_survives_a_broken_file() {
    let dir = temp_dir("reload");
    let rules = dir.join("rules.d");
    std::fs::create_dir_all(&rules).unwrap();
    let marker = dir.join("marker");
    let marker2 = dir.join("marker2");
    std::fs::write(&marker, "x").unwrap();
    std::fs::write(&marker2, "x").unwrap();
    std::fs::write(rules.join("a.yaml"), marker_rule("Rule A", &marker)).unwrap();
    let rules_s = rules.to_str().unwrap().to_string();
    let mut agent = Agent::start(
        &["run", "--json", "--no-flood-control", "--rules", &rules_s],
        "osprey is running",
    );

    // An attack loop: one open of the marker every 20 ms, each by its own process, while the
    // rules directory changes under the agent.
    let attacks = 150;
    let marker_c = marker.clone();
    let attacker = std::thread::spawn(move || {
        let mut pids = Vec::new();
        for _ in 0..attacks {
            let c = Command::new("cat").arg(&marker_c).output().unwrap();
            assert!(c.status.success());
            std::thread::sleep(Duration::from_millis(20));
            pids.push(());
        }
        pids.len()
    });
    std::thread::sleep(Duration::from_millis(500));
    // Add rule B (a new file): it fires after the reload.
    std::fs::write(rules.join("b.yaml"), marker_rule("Rule B", &marker2)).unwrap();
    // The watcher looks every 2 s.
    agent.collect_for(Duration::from_millis(2500));
    Command::new("cat").arg(&marker2).output().unwrap();
    agent.expect("Rule B after the reload", WAIT, |v| v["rule"] == "Rule B");
    // A broken file: the reload is refused, the running rules stay, the error is raised.
    std::fs::write(
        rules.join("c.yaml"),
        "- rule: broken\n  condition: evt.type=open and\n",
    )
    .unwrap();
    let err = agent.expect("reload failure alert", WAIT, |v| {
        v["rule"] == "Osprey rule reload failed"
    });
    assert_eq!(err["source"], "internal");
    assert!(err["output"].as_str().unwrap().contains("c.yaml"), "{err}");
    assert_eq!(attacker.join().unwrap(), attacks);
    Command::new("cat").arg(&marker2).output().unwrap();
    let b_count = |seen: &[Value]| seen.iter().filter(|v| v["rule"] == "Rule B").count();
    let deadline = Instant::now() + WAIT;
    while b_count(&agent.seen) < 2 {
        assert!(
            Instant::now() < deadline,
            "Rule B still in force after the failed reload"
        );
        agent.collect_for(Duration::from_millis(200));
    }
    let seen = agent.collect_for(Duration::from_millis(1500));
    let a_hits = seen.iter().filter(|v| v["rule"] == "Rule A").count();
    assert_eq!(
        a_hits, attacks,
        "every attack in the loop was caught, before, during and after the reloads"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn kernel_flood_of_one_attack_becomes_a_burst_and_an_exact_summary() {
    let dir = temp_dir("flood");
    let marker = dir.join("marker");
    std::fs::write(&marker, "x").unwrap();
    let rules = dir.join("rules.yaml");
    std::fs::write(&rules, marker_rule("Flood", &marker)).unwrap();
    let config = dir.join("config.yaml");
    std::fs::write(
        &config,
        "flood:\n  per_rule:\n    Flood: {burst: 5, window_ms: 2000}\n",
    )
    .unwrap();
    let mut agent = Agent::start(
        &[
            "run",
            "--json",
            "--config",
            config.to_str().unwrap(),
            "--rules",
            rules.to_str().unwrap(),
        ],
        "osprey is running",
    );
    // One process opens the marker a thousand times within a second.
    let script = format!(
        "i=0; while [ $i -lt 1000 ]; do : < {}; i=$((i+1)); done",
        marker.display()
    );
    let start = Instant::now();
    assert!(
        Command::new("sh")
            .args(["-c", &script])
            .status()
            .unwrap()
            .success()
    );
    assert!(
        start.elapsed() < Duration::from_secs(1),
        "a thousand in a second"
    );
    let summary = agent.expect("the summary", WAIT, |v| {
        v["rule"] == "Flood" && !v["output_fields"]["osprey.suppressed"].is_null()
    });
    assert_eq!(summary["output_fields"]["osprey.suppressed"], 995);
    assert!(
        summary["output"]
            .as_str()
            .unwrap()
            .contains("995 similar alerts suppressed")
    );
    let seen = agent.collect_for(Duration::from_millis(500));
    let plain = seen
        .iter()
        .filter(|v| v["rule"] == "Flood" && v["output_fields"]["osprey.suppressed"].is_null())
        .count();
    assert_eq!(plain, 5, "the burst, then nothing but the summary");
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A tiny HTTP server that records POST bodies and answers 200.
fn webhook_server(listener: TcpListener, bodies: Arc<Mutex<Vec<Value>>>) {
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut s) = stream else { continue };
            let mut r = BufReader::new(s.try_clone().unwrap());
            let mut len = 0;
            loop {
                let mut line = String::new();
                if r.read_line(&mut line).unwrap_or(0) == 0 {
                    break;
                }
                if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                    len = v.trim().parse().unwrap_or(0);
                }
                if line == "\r\n" {
                    break;
                }
            }
            let mut body = vec![0u8; len];
            if r.read_exact(&mut body).is_ok()
                && let Ok(v) = serde_json::from_slice(&body)
            {
                bodies.lock().unwrap().push(v);
            }
            let _ =
                s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
        }
    });
}

#[test]
fn kernel_webhook_posts_falco_json_even_after_the_receiver_was_down() {
    let dir = temp_dir("webhook");
    let marker = dir.join("marker");
    std::fs::write(&marker, "x").unwrap();
    let rules = dir.join("rules.yaml");
    std::fs::write(&rules, marker_rule("Hooked", &marker)).unwrap();
    let file = dir.join("alerts.jsonl");
    let port = free_port();
    let url = format!("http://127.0.0.1:{port}/");
    let _agent = Agent::start(
        &[
            "run",
            "--json",
            "--rules",
            rules.to_str().unwrap(),
            "--webhook",
            &url,
            "--output-file",
            file.to_str().unwrap(),
        ],
        "osprey is running",
    );
    // The receiver is down: the alert waits and is retried.
    Command::new("cat").arg(&marker).output().unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    let bodies = Arc::new(Mutex::new(Vec::new()));
    webhook_server(
        TcpListener::bind(("127.0.0.1", port)).unwrap(),
        bodies.clone(),
    );
    Command::new("cat").arg(&marker).output().unwrap();
    let deadline = Instant::now() + WAIT;
    while bodies.lock().unwrap().len() < 2 {
        assert!(
            Instant::now() < deadline,
            "webhook posts: {:?}",
            bodies.lock().unwrap()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let got = bodies.lock().unwrap().clone();
    for b in &got {
        assert_eq!(b["rule"], "Hooked");
        assert_eq!(b["priority"], "Warning");
        assert_eq!(b["source"], "syscall");
        for key in ["output", "output_fields", "hostname", "tags", "time"] {
            assert!(!b[key].is_null(), "Falco's key {key} in {b}");
        }
        assert_eq!(b["output_fields"]["fd.name"], marker.to_str().unwrap());
    }
    // The same alerts are in the JSON-lines file.
    let lines: Vec<Value> = std::fs::read_to_string(&file)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.iter().filter(|v| v["rule"] == "Hooked").count(), 2);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn kernel_stdout_closed_by_its_reader_keeps_the_agent_running_and_counts_what_it_missed() {
    require_root();
    let dir = temp_dir("stdout-closed");
    let marker = dir.join("marker");
    std::fs::write(&marker, "x").unwrap();
    let rules = dir.join("rules.yaml");
    std::fs::write(&rules, marker_rule("Stdout closed marker", &marker)).unwrap();
    let port = free_port();
    let mut child = Command::new(OSPREY)
        .args(["run", "--json", "--grpc", "off", "--metrics"])
        .arg(format!("127.0.0.1:{port}"))
        .arg("--rules")
        .arg(&rules)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // The reader goes away (`osprey run | head -1` after its line, a log shipper restarting).
    drop(child.stdout.take());
    let deadline = Instant::now() + Duration::from_secs(60);
    while http_get(port, "/readyz").is_none_or(|(code, _)| code != 200) {
        assert!(Instant::now() < deadline, "the agent never became ready");
        let _ = std::fs::read(&marker);
        std::thread::sleep(Duration::from_millis(200));
    }
    let series = "osprey_queue_dropped_total{queue=\"stdout\"}";
    let deadline = Instant::now() + WAIT;
    let dropped = loop {
        let _ = std::fs::read(&marker);
        let body = http_get(port, "/metrics")
            .map(|(_, b)| b)
            .unwrap_or_default();
        let n = metric(&body, series).unwrap_or(0.0);
        if n >= 3.0 || Instant::now() >= deadline {
            break n;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    let alive = child.try_wait().unwrap().is_none();
    let _ = child.kill();
    let _ = child.wait();
    assert!(alive, "the agent exited when its stdout closed");
    assert!(
        dropped >= 3.0,
        "alerts stdout missed are counted: {dropped}"
    );
}
