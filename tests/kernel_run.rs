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

    // A password-database reader the rules allow raises nothing.
    let allowed = std::env::temp_dir().join("unix_chkpwd");
    std::fs::copy("/bin/cat", &allowed).unwrap();
    Command::new(&allowed).arg("/etc/shadow").output().unwrap();
    let seen = agent.collect_for(Duration::from_millis(800));
    assert!(
        !seen
            .iter()
            .any(|v| v["output_fields"]["proc.name"] == "unix_chkpwd"),
        "allowed reader alerted: {seen:?}"
    );
    let _ = std::fs::remove_file(allowed);
}

#[test]
fn kernel_run_rejects_invalid_rules_with_position() {
    let dir = std::env::temp_dir().join(format!("osprey-badrules-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let bad = dir.join("bad.yaml");
    std::fs::write(
        &bad,
        "- rule: broken\n  desc: d\n  condition: evt.type=open and\n  output: o\n  priority: WARNING\n",
    )
    .unwrap();
    let out = Command::new(OSPREY)
        .args(["run", "--rules"])
        .arg(&bad)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("bad.yaml:3:"), "file and line: {stderr}");
    assert!(stderr.contains("LOAD_ERR_COMPILE_CONDITION"), "{stderr}");
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
