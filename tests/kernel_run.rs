//! `osprey run` with the embedded rules, and `osprey trace --record` + `osprey replay`:
//! real processes do the real thing; the alert comes out.

mod support;

use std::{process::Command, time::Duration};

use support::*;

const WAIT: Duration = Duration::from_secs(10);

#[test]
fn kernel_run_alerts_on_a_sensitive_file_read() {
    let mut agent = Agent::start(&["run", "--json"], "osprey is running");
    let out = Command::new("cat").arg("/etc/shadow").output().unwrap();
    assert!(out.status.success());
    let alert = agent.expect("Read sensitive file alert", WAIT, |v| {
        v["rule"] == "Read sensitive file" && v["output_fields"]["proc.name"] == "cat"
    });
    assert_eq!(alert["priority"], "Warning");
    assert_eq!(alert["source"], "syscall");
    assert_eq!(alert["output_fields"]["fd.name"], "/etc/shadow");
    assert_eq!(alert["output_fields"]["proc.cmdline"], "cat /etc/shadow");
    assert!(
        alert["output"]
            .as_str()
            .unwrap()
            .contains("Warning Sensitive file opened")
    );
    assert!(
        alert["tags"]
            .as_array()
            .unwrap()
            .iter()
            .any(|t| t == "T1003.008")
    );
    assert!(alert["hostname"].as_str().is_some_and(|h| !h.is_empty()));

    // A password-database reader the rules allow, installed where programs are, raises
    // nothing; the same program copied to /tmp under that name is not trusted by its name.
    let dir = std::path::Path::new("/usr/local/sbin");
    std::fs::create_dir_all(dir).unwrap();
    let allowed = dir.join("unix_chkpwd");
    let existed = allowed.exists();
    if !existed {
        std::fs::copy("/bin/cat", &allowed).unwrap();
    }
    let impostor = std::env::temp_dir().join("unix_chkpwd");
    std::fs::copy("/bin/cat", &impostor).unwrap();
    if !existed {
        Command::new(&allowed).arg("/etc/shadow").output().unwrap();
    }
    Command::new(&impostor).arg("/etc/shadow").output().unwrap();
    let seen = agent.collect_for(Duration::from_millis(1500)).to_vec();
    if !existed {
        let _ = std::fs::remove_file(&allowed);
    }
    let _ = std::fs::remove_file(&impostor);
    let by = |exe: &std::path::Path| {
        seen.iter()
            .any(|v| v["output_fields"]["proc.exepath"] == exe.to_str().unwrap())
    };
    assert!(existed || !by(&allowed), "allowed reader alerted: {seen:?}");
    assert!(
        by(&impostor),
        "a copy in /tmp named unix_chkpwd went unseen: {seen:?}"
    );
}

#[test]
fn kernel_run_reports_invalid_rules_with_position_and_keeps_the_defaults() {
    let dir = std::env::temp_dir().join(format!("osprey-badrules-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let bad = dir.join("bad.yaml");
    std::fs::write(
        &bad,
        "- rule: broken\n  desc: d\n  condition: evt.type=open and\n  output: o\n  priority: WARNING\n",
    )
    .unwrap();
    // The agent does not exit on a rules mistake (a bad ConfigMap would take the whole
    // fleet's detection down); it says where the mistake is and runs the embedded rules.
    let bad_s = bad.to_str().unwrap().to_string();
    let mut agent = Agent::start(&["run", "--json", "--rules", &bad_s], "osprey is running");
    let alert = agent.expect("the invalid-files alert", Duration::from_secs(15), |v| {
        v["rule"] == "Osprey rule files invalid"
    });
    let output = alert["output"].as_str().unwrap();
    assert!(output.contains("bad.yaml:3:"), "file and line: {output}");
    assert!(output.contains("LOAD_ERR_COMPILE_CONDITION"), "{output}");
    let stderr = agent.stderr();
    assert!(stderr.contains("bad.yaml:3:"), "logged too: {stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");

    let v = Command::new(OSPREY)
        .args(["rules", "validate"])
        .arg(&bad)
        .output()
        .unwrap();
    assert_eq!(v.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&v.stdout).contains("Invalid"));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn kernel_recorded_activity_replays_into_alerts() {
    let dir = std::env::temp_dir().join(format!("osprey-replay-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let rec = dir.join("rec.jsonl");
    let rec_s = rec.to_str().unwrap().to_string();
    let mut agent = Agent::start(
        &["trace", "-e", "openat,execve", "--record", &rec_s],
        "tracing; Ctrl-C to stop",
    );
    Command::new("cat").arg("/etc/shadow").output().unwrap();
    agent.expect("the open of /etc/shadow", WAIT, |v| {
        syscall_name(v) == "openat" && arg(v, "filename")["value"]["raw"] == "/etc/shadow"
    });
    drop(agent);

    let out = Command::new(OSPREY)
        .args(["replay", "--json"])
        .arg(&rec)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let alerts: Vec<serde_json::Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(
        alerts.iter().any(|a| a["rule"] == "Read sensitive file"
            && a["output_fields"]["fd.name"] == "/etc/shadow"),
        "{alerts:?}"
    );
    // Falco's upstream rules judge the same recording.
    let upstream = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../shared/compat/falco_rules.yaml"
    );
    let out = Command::new(OSPREY)
        .args(["replay", "--json", "--rules", upstream])
        .arg(&rec)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.lines()
            .any(|l| l.contains("\"rule\":\"Read sensitive file untrusted\"")),
        "upstream rule fired on the replay: {text}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn kernel_run_serves_health_readiness_and_moving_metrics() {
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    let mut agent = Agent::start(&["run", "--json", "--metrics", &addr], "serving /healthz");
    // Ready only once the programs are attached (logged before "osprey is running") and the
    // ring buffer delivered: every poll that says ready comes after that line.
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        let (code, _) = http_get(port, "/readyz").expect("metrics server up");
        if code == 200 {
            assert!(
                agent.stderr().contains("osprey is running"),
                "ready before the sensor was attached"
            );
            break;
        }
        assert_eq!(code, 503);
        assert!(std::time::Instant::now() < deadline, "never became ready");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(http_get(port, "/healthz").unwrap().0, 200);

    let (_, before) = http_get(port, "/metrics").unwrap();
    Command::new("cat").arg("/etc/shadow").output().unwrap();
    agent.expect("the alert", WAIT, |v| v["rule"] == "Read sensitive file");
    std::thread::sleep(Duration::from_millis(1200)); // one sync period
    let (code, after) = http_get(port, "/metrics").unwrap();
    assert_eq!(code, 200);
    let rule = "osprey_rule_matches_total{rule=\"Read sensitive file\"}";
    assert!(metric(&after, rule).unwrap_or(0.0) >= 1.0, "{after}");
    assert!(metric(&after, "osprey_alerts_total{priority=\"Warning\"}").unwrap_or(0.0) >= 1.0);
    let opens = "osprey_events_total{kind=\"openat\"}";
    assert!(
        metric(&after, opens).unwrap_or(0.0) > metric(&before, opens).unwrap_or(0.0),
        "event counters move"
    );
    assert!(metric(&after, "osprey_process_table_size").unwrap_or(0.0) > 10.0);
    assert_eq!(
        metric(&after, "osprey_kernel_dropped_total{kind=\"syscall\"}"),
        Some(0.0),
        "drops are exported, and none happened"
    );
    // Runs the kernel skipped, read from each program's fdinfo: this kernel (5.12+) reports
    // them, and its programs cannot be preempted, so there are none.
    assert_eq!(
        metric(&after, "osprey_kernel_dropped_total{kind=\"busy\"}"),
        Some(0.0),
        "skipped runs are exported: {after}"
    );
}
