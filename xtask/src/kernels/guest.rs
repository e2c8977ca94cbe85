//! One guest: qemu boots a kernel with the matrix's initramfs, its serial console is read with a
//! timeout, and what guest.sh reported is judged.

use std::{
    io::{BufRead as _, BufReader},
    path::Path,
    process::{Command, Stdio},
    sync::mpsc,
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result};
use serde_json::Value;

/// How long one guest may take, boot to power-off. A run takes under 20 s under TCG on a
/// busy 2-core machine; a hung guest is killed after this.
pub const TIMEOUT: Duration = Duration::from_secs(600);

/// An action guest.sh runs, and what the agent must say about it.
pub struct Expect {
    pub action: &'static str,
    /// The rule whose alert the action must raise.
    pub rule: &'static str,
    /// A string the alert's output must hold (a decoded argument), if any.
    pub output_has: Option<&'static str>,
    /// The action's exit status, when it is not 0.
    pub status: i32,
    /// The oldest kernel (major, minor) on which the alert is expected; on older ones the
    /// action must run, and the agent must have said at start-up what it cannot see.
    pub since: Option<(u32, u32)>,
    /// The action calls through the 32-bit entry (`int $0x80`): on a guest booted without it
    /// (`ia32_emulation=false`) the kernel kills it (SIGSEGV, status 139) and no alert may
    /// come.
    pub ia32: bool,
}

/// The battery; guest.sh runs the actions in this order.
pub const EXPECTED: &[Expect] = &[
    Expect {
        action: "sensitive_read",
        rule: "Read sensitive file",
        output_has: Some("file=/etc/shadow"),
        status: 0,
        since: None,
        ia32: false,
    },
    Expect {
        action: "ptrace",
        rule: "PTRACE attached to process",
        output_has: Some("request=PTRACE_ATTACH"),
        status: 0,
        since: None,
        ia32: false,
    },
    Expect {
        action: "memfd_exec",
        rule: "Fileless execution via memfd",
        output_has: None,
        status: 0,
        since: None,
        ia32: false,
    },
    Expect {
        action: "user_namespace",
        rule: "Namespace change by unexpected process",
        output_has: Some("CLONE_NEWUSER"),
        status: 0,
        since: None,
        ia32: false,
    },
    Expect {
        action: "module_load",
        rule: "Kernel module load",
        output_has: Some("syscall=init_module"),
        status: 0,
        since: None,
        ia32: false,
    },
    Expect {
        action: "setuid_bit",
        rule: "Set setuid or setgid bit",
        output_has: Some("file=/tmp/suid"),
        status: 0,
        since: None,
        ia32: false,
    },
    Expect {
        action: "dev_shm_exec",
        rule: "Execution from /dev/shm",
        output_has: Some("exe=/dev/shm/true"),
        status: 0,
        since: None,
        ia32: false,
    },
    Expect {
        action: "profile_kill",
        rule: "Syscall profile matrix-kill",
        output_has: Some("killed"),
        // SIGKILL from the kernel: the shell reports 128 + 9.
        status: 137,
        since: None,
        ia32: false,
    },
    Expect {
        action: "network_stdio",
        rule: "Program started on a network connection",
        output_has: Some("stdin_type=ipv4"),
        status: 0,
        since: None,
        ia32: false,
    },
    Expect {
        action: "ld_preload",
        rule: "Privileged process started with LD_PRELOAD",
        output_has: Some("preload=/tmp/matrix.so"),
        status: 0,
        since: None,
        ia32: false,
    },
    Expect {
        action: "io_uring_read",
        rule: "Read sensitive file",
        output_has: Some("process=uring"),
        status: 0,
        // The io_uring tracepoints carry the request since 5.19; 5.10's agent reports the
        // io_uring_ops feature missing.
        since: Some((5, 19)),
        ia32: false,
    },
    // An x86_64 program's `int $0x80` open, which no other rule wants: reported as the call
    // it is, made from 64-bit code.
    Expect {
        action: "ia32_from_64",
        rule: "Syscall through the 32-bit entry by a 64-bit program",
        output_has: Some("syscall=open"),
        status: 0,
        since: None,
        ia32: true,
    },
];

/// `(major, minor)` of a release string (`6.1.0-40-cloud-amd64`).
fn version(release: &str) -> (u32, u32) {
    let mut parts = release
        .split(|c: char| !c.is_ascii_digit())
        .map(|p| p.parse().unwrap_or(0));
    (parts.next().unwrap_or(0), parts.next().unwrap_or(0))
}

/// Event kinds the agent must have counted (`osprey_events_total{kind=...}` > 0): the process
/// lifecycle and a captured syscall (syscalls are counted by name).
const EVENT_KINDS: &[&str] = &["exec", "fork", "exit", "openat"];

/// What dmesg must never hold.
const KERNEL_TROUBLE: &[&str] = &["WARNING:", "BUG:", "Call Trace", "Oops", "taint"];

/// What one guest run showed.
pub struct Outcome {
    pub uname: String,
    pub seconds: f64,
    pub ready_after: String,
    pub actions: Vec<String>,
    pub alerts_seen: Vec<String>,
    /// `osprey kernel`'s output: features and the offset table.
    pub kernel_report: String,
    /// The form each of `FORMS` took (its `newer` or `older`, or "-"), in that order.
    pub forms: Vec<(&'static str, &'static str)>,
    /// The kernel's crash report, where the console holds one (see [`crash`]).
    pub crash: Vec<String>,
    pub failures: Vec<String>,
}

/// A program the agent loads in one of two forms, whichever the kernel takes, and says which.
pub struct Form {
    pub program: &'static str,
    /// The start of the line the agent logs about it.
    line: &'static str,
    /// What that line holds for the newer form (any of them).
    says_newer: &'static [&'static str],
    pub newer: &'static str,
    pub older: &'static str,
    /// The first kernel that must take the newer form.
    since: (u32, u32),
    /// The newer form is due only where the guest booted without the 32-bit syscall entry.
    without_ia32: bool,
}

pub const FORMS: &[Form] = &[
    // Typed reads need `bpf_get_current_task_btf` (5.11); the per-syscall form reads so too.
    Form {
        program: "sys_exit",
        line: "sys_exit attached as",
        says_newer: &["as a BTF tracepoint", "as syscall events"],
        newer: "typed loads",
        older: "helper calls",
        since: (5, 11),
        without_ia32: false,
    },
    // Its path walks read by plain loads need `bpf_rdonly_cast` (6.2).
    Form {
        program: "sys_exit walks",
        line: "sys_exit attached as",
        says_newer: &["with casts"],
        newer: "plain loads through casts",
        older: "a helper call per object",
        since: (6, 2),
        without_ia32: false,
    },
    // Per-syscall events need `bpf_task_pt_regs` (5.15) and a kernel whose 32-bit entry is
    // off (their calls skip those events).
    Form {
        program: "sys_exit hook",
        line: "sys_exit attached as",
        says_newer: &["as syscall events"],
        newer: "per-syscall events",
        older: "raw_syscalls",
        since: (5, 15),
        without_ia32: true,
    },
    // The chunked environment scan needs `bpf_loop` (5.17).
    Form {
        program: "sched_process_exec",
        line: "sched_process_exec reads the environment",
        says_newer: &["in 4 KiB chunks"],
        newer: "environment read in 4 KiB chunks",
        older: "environment read an entry at a time",
        since: (5, 17),
        without_ia32: false,
    },
];

/// Boots `vmlinuz` with `initramfs` and judges the run. `log` receives the whole console.
pub fn run(
    qemu: &Path,
    vmlinuz: &Path,
    initramfs: &Path,
    cmdline: &str,
    log: &Path,
) -> Result<Outcome> {
    let start = Instant::now();
    let mut child = Command::new(qemu)
        .args(["-accel", "tcg", "-cpu", "max", "-smp", "2", "-m", "1G"])
        .args(["-nodefaults", "-display", "none", "-serial", "stdio"])
        .args(["-no-reboot", "-kernel"])
        .arg(vmlinuz)
        .arg("-initrd")
        .arg(initramfs)
        .arg("-append")
        .arg(format!("console=ttyS0 panic=-1 quiet {cmdline}").trim_end())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("starting {}", qemu.display()))?;
    let (tx, rx) = mpsc::channel();
    let stdout = child.stdout.take().expect("piped");
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).split(b'\n') {
            let Ok(line) = line else { break };
            let line = String::from_utf8_lossy(&line)
                .trim_end_matches('\r')
                .to_string();
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut console = Vec::new();
    let mut timed_out = false;
    loop {
        let left = TIMEOUT.saturating_sub(start.elapsed());
        match rx.recv_timeout(left) {
            Ok(line) => console.push(line),
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
            Err(mpsc::RecvTimeoutError::Timeout) => {
                timed_out = true;
                let _ = child.kill();
                break;
            }
        }
    }
    let status = child.wait().context("waiting for qemu")?;
    let mut stderr = String::new();
    if let Some(mut e) = child.stderr.take() {
        let _ = std::io::Read::read_to_string(&mut e, &mut stderr);
    }
    let seconds = start.elapsed().as_secs_f64();
    let _ = std::fs::write(log, console.join("\n") + "\n");
    let mut outcome = judge(&console, seconds);
    if timed_out {
        outcome.failures.push(format!(
            "the guest did not finish within {} s (console in {})",
            TIMEOUT.as_secs(),
            log.display()
        ));
    } else if !console.iter().any(|l| l == "@@done") {
        outcome.failures.push(format!(
            "the guest stopped before reporting (qemu {status}{}); console in {}",
            if stderr.trim().is_empty() {
                String::new()
            } else {
                format!(": {}", stderr.trim())
            },
            log.display()
        ));
    }
    Ok(outcome)
}

/// The lines between `@@begin NAME` and `@@end NAME`.
fn section<'a>(console: &'a [String], name: &str) -> Vec<&'a str> {
    let begin = format!("@@begin {name}");
    let end = format!("@@end {name}");
    console
        .iter()
        .skip_while(|l| **l != begin)
        .skip(1)
        .take_while(|l| **l != end)
        .map(String::as_str)
        .collect()
}

fn marker<'a>(console: &'a [String], name: &str) -> Option<&'a str> {
    let prefix = format!("@@{name}");
    console.iter().find_map(|l| {
        l.strip_prefix(&prefix)
            .map(str::trim)
            .filter(|_| l.len() == prefix.len() || l.as_bytes()[prefix.len()] == b' ')
    })
}

/// The lines that open a kernel crash report on the console.
const CRASH_STARTS: &[&str] = &[
    "Oops:",
    "BUG:",
    "kernel BUG at",
    "general protection fault",
    "Kernel panic",
];

/// The kernel's own crash report wherever it is on the console (a panic is printed straight to
/// the serial line, between or inside the guest's sections): from its first line to the end of
/// the panic, at most 60 lines, and the last `@@` marker before it, which says what the guest was
/// doing. A run that fails this way in CI leaves only this in the log.
fn crash(console: &[String]) -> Option<(Vec<String>, &str)> {
    // `traps: PROG[PID] general protection fault ... in PROG` is a user program's fault the
    // kernel logs (and kills it for), not the kernel's.
    let start = console
        .iter()
        .position(|l| !l.contains("traps:") && CRASH_STARTS.iter().any(|s| l.contains(s)))?;
    let lines: Vec<String> = console[start..]
        .iter()
        .take(60)
        .take_while(|l| !l.starts_with("@@"))
        .map(|l| l.trim_end().to_string())
        .collect();
    let end = lines
        .iter()
        .position(|l| l.contains("---[ end Kernel panic"))
        .map_or(lines.len(), |i| i + 1);
    let during = console[..start]
        .iter()
        .rev()
        .find(|l| l.starts_with("@@"))
        .map_or("the boot", String::as_str);
    Some((lines[..end].to_vec(), during))
}

/// The words of a crash report a reader needs first: what, where, in whom.
fn crash_summary(report: &[String]) -> String {
    let strip = |l: &str| -> String {
        // `[   16.61] Oops: int3: 0000 [#1] ...` without its timestamp.
        match l.trim_start().strip_prefix('[') {
            Some(rest) => rest
                .split_once("] ")
                .map_or(l, |(_, r)| r)
                .trim()
                .to_string(),
            None => l.trim().to_string(),
        }
    };
    let first = report.first().map(|l| strip(l)).unwrap_or_default();
    let pick = |key: &str| report.iter().map(|l| strip(l)).find(|l| l.starts_with(key));
    [Some(first), pick("RIP:"), pick("CPU:")]
        .into_iter()
        .flatten()
        .collect::<Vec<_>>()
        .join(" | ")
}

/// Judges a guest's console output.
pub fn judge(console: &[String], seconds: f64) -> Outcome {
    let mut failures = Vec::new();
    let crash = match crash(console) {
        Some((report, during)) => {
            failures.push(format!(
                "the guest kernel crashed after `{during}`: {}",
                crash_summary(&report)
            ));
            report
        }
        None => Vec::new(),
    };
    let uname = marker(console, "uname").unwrap_or("?").to_string();
    let kernel_report = section(console, "kernel").join("\n");
    let agent_log = section(console, "agent");

    if marker(console, "agent-failed").is_some() {
        // The agent's own error names what is wrong (a missing struct member, say).
        let errors: Vec<&str> = agent_log
            .iter()
            .copied()
            .filter(|l| l.contains("ERROR") || l.contains("error") || l.starts_with("osprey:"))
            .collect();
        failures.push(format!(
            "the agent did not start: {}",
            if errors.is_empty() {
                agent_log.join(" | ")
            } else {
                errors.join(" | ")
            }
        ));
    }
    if !agent_log.iter().any(|l| l.contains("kernel features")) && failures.is_empty() {
        failures.push("the agent did not log the kernel features it found".into());
    }

    // Booted without the 32-bit syscall entry: the agent's probe must have found it off
    // (`osprey kernel`'s feature line), and only then may it attach per syscall.
    let no_ia32 = marker(console, "cmdline")
        .is_some_and(|c| c.split_whitespace().any(|w| w == "ia32_emulation=false"));
    let probe = kernel_report
        .lines()
        .find(|l| l.contains(" no_ia32_entry "))
        .map(str::trim_start);
    match probe {
        Some(l) if l.starts_with("yes") == no_ia32 => {}
        Some(l) => failures.push(format!(
            "the 32-bit entry probe disagrees with the boot options ({}): {l}",
            marker(console, "cmdline").unwrap_or("?")
        )),
        None if kernel_report.is_empty() => {}
        None => failures.push("`osprey kernel` printed no no_ia32_entry line".into()),
    }

    // The form each program took, and why where it is the older one.
    let mut forms = Vec::new();
    for f in FORMS {
        let line = agent_log.iter().find(|l| l.contains(f.line));
        let took = match line {
            Some(l) if f.says_newer.iter().any(|s| l.contains(s)) => f.newer,
            Some(_) => f.older,
            None => "-",
        };
        if marker(console, "agent-failed").is_none() {
            let want = if version(&uname) >= f.since && (no_ia32 || !f.without_ia32) {
                f.newer
            } else {
                f.older
            };
            if took != want {
                failures.push(format!(
                    "{}: {took} on {uname}, expected {want}: {}",
                    f.program,
                    line.copied().unwrap_or("(no line in the agent's log)")
                ));
            }
        }
        forms.push((f.program, took));
    }

    // Actions and their statuses.
    let mut actions = Vec::new();
    for l in console.iter().filter_map(|l| l.strip_prefix("@@action ")) {
        let mut parts = l.splitn(3, ' ');
        let name = parts.next().unwrap_or("").to_string();
        let status: Option<i32> = parts
            .next()
            .and_then(|s| s.strip_prefix("status="))
            .and_then(|s| s.parse().ok());
        let note = parts.next().unwrap_or("").trim();
        if let Some(e) = EXPECTED.iter().find(|e| e.action == name) {
            // SIGSEGV: `int $0x80` where the kernel has no 32-bit entry.
            let want = if e.ia32 && no_ia32 { 139 } else { e.status };
            if status != Some(want) {
                failures.push(format!(
                    "action {name} exited with {status:?}, expected {want} ({note})"
                ));
            }
        }
        actions.push(name);
    }

    // Alerts.
    let alerts: Vec<Value> = section(console, "alerts")
        .iter()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    let mut alerts_seen: Vec<String> = alerts
        .iter()
        .filter_map(|a| a["rule"].as_str().map(str::to_string))
        .collect();
    alerts_seen.sort();
    alerts_seen.dedup();
    if marker(console, "agent-failed").is_none() {
        for e in EXPECTED {
            if !actions.iter().any(|a| a == e.action) {
                failures.push(format!("action {} did not run", e.action));
                continue;
            }
            if e.ia32 && no_ia32 {
                if alerts.iter().any(|a| a["rule"].as_str() == Some(e.rule)) {
                    failures.push(format!(
                        "action {}: a `{}` alert on a kernel booted without the 32-bit entry",
                        e.action, e.rule
                    ));
                }
                continue;
            }
            if let Some(since) = e.since
                && version(&uname) < since
            {
                if e.action == "io_uring_read"
                    && !agent_log
                        .iter()
                        .any(|l| l.contains("io_uring operations are not reported"))
                {
                    failures.push(format!(
                        "action {}: kernel {uname} is older than {}.{}, and the agent did not \
                         say that io_uring operations are not reported",
                        e.action, since.0, since.1
                    ));
                }
                continue;
            }
            let matching: Vec<&Value> = alerts
                .iter()
                .filter(|a| a["rule"].as_str() == Some(e.rule))
                .collect();
            if matching.is_empty() {
                failures.push(format!(
                    "action {}: no `{}` alert (alerts seen: {})",
                    e.action,
                    e.rule,
                    alerts_seen.join(", ")
                ));
            } else if let Some(want) = e.output_has
                && !matching
                    .iter()
                    .any(|a| a["output"].as_str().is_some_and(|o| o.contains(want)))
            {
                failures.push(format!(
                    "action {}: the `{}` alert lacks `{want}`: {}",
                    e.action, e.rule, matching[0]["output"]
                ));
            }
        }

        // Events by kind, and decode errors, from the agent's own metrics.
        let metrics = section(console, "metrics");
        for kind in EVENT_KINDS {
            let line = format!("osprey_events_total{{kind=\"{kind}\"}}");
            let count = metrics
                .iter()
                .find_map(|l| l.strip_prefix(&line))
                .and_then(|v| v.trim().parse::<f64>().ok())
                .unwrap_or(0.0);
            if count <= 0.0 {
                failures.push(format!("no {kind} events counted (metrics: {metrics:?})"));
            }
        }
        for l in metrics.iter().filter(|l| {
            l.starts_with("osprey_decode_errors_total") || l.starts_with("osprey_kernel_dropped")
        }) {
            let value = l
                .rsplit(' ')
                .next()
                .and_then(|v| v.parse::<f64>().ok())
                .unwrap_or(0.0);
            if value != 0.0 {
                failures.push(format!("the agent reports `{l}`"));
            }
        }
        match agent_log.iter().find(|l| l.contains("\"stopped\"")) {
            Some(stopped) if stopped.contains("short: 0, unknown: 0") => {}
            Some(stopped) => failures.push(format!("decode errors at stop: {stopped}")),
            None if failures.is_empty() => {
                failures.push("the agent did not log its summary at stop".into())
            }
            None => {}
        }
        if let Some(code) = marker(console, "agent-exit")
            && code != "0"
        {
            failures.push(format!("the agent exited with status {code}"));
        }
    }

    // The kernel log stays clean.
    for l in section(console, "dmesg") {
        if KERNEL_TROUBLE.iter().any(|t| l.contains(t)) {
            failures.push(format!("kernel log: {}", l.trim()));
        }
    }
    match marker(console, "tainted") {
        Some("0") => {}
        Some(t) => failures.push(format!("the kernel is tainted ({t})")),
        None => {}
    }

    Outcome {
        uname,
        seconds,
        ready_after: marker(console, "agent-ready").unwrap_or("-").to_string(),
        actions,
        alerts_seen,
        kernel_report,
        forms,
        crash,
        failures,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(text: &str) -> Vec<String> {
        text.lines().map(str::to_string).collect()
    }

    #[test]
    fn a_clean_run_passes_and_a_missing_alert_or_a_warning_fails() {
        let mut text = String::from(
            "@@uname 5.10.0-46-cloud-amd64\n@@cmdline console=ttyS0 quiet\n@@begin kernel\n\
             kernel 5.10.0-46-cloud-amd64\n  no  no_ia32_entry       the 32-bit syscall entry \
             is on\n@@end kernel\n@@agent-ready 3s\n",
        );
        for e in EXPECTED {
            text.push_str(&format!("@@action {} status={} ok\n", e.action, e.status));
        }
        text.push_str("@@begin metrics\n");
        for k in EVENT_KINDS {
            text.push_str(&format!("osprey_events_total{{kind=\"{k}\"}} 5\n"));
        }
        text.push_str("osprey_decode_errors_total{reason=\"short\"} 0\n@@end metrics\n");
        text.push_str("@@agent-exit 0\n@@begin alerts\n");
        for e in EXPECTED {
            let output = e.output_has.unwrap_or("x");
            text.push_str(&format!(
                "{}\n",
                serde_json::json!({"rule": e.rule, "output": format!("... {output} ...")})
            ));
        }
        text.push_str(
            "@@end alerts\n@@begin agent\n{\"fields\":{\"message\":\"kernel features\"}}\n",
        );
        text.push_str(
            "{\"fields\":{\"message\":\"sys_exit attached as a raw tracepoint, every read a helper call (no bpf_get_current_task_btf)\"}}\n",
        );
        text.push_str(
            "{\"fields\":{\"message\":\"sched_process_exec reads the environment an entry at a time, up to 1024 entries (unknown func bpf_loop#181)\"}}\n",
        );
        text.push_str(
            "{\"level\":\"WARN\",\"fields\":{\"message\":\"io_uring operations are not reported (no req)\"}}\n",
        );
        text.push_str("{\"fields\":{\"decode\":\"DecodeStats { decoded: 9, short: 0, unknown: 0 }\",\"message\":\"stopped\"}}\n");
        text.push_str(
            "@@end agent\n@@begin dmesg\n[0.1] hello\n@@end dmesg\n@@tainted 0\n@@done\n",
        );
        let ok = judge(&lines(&text), 1.0);
        assert!(ok.failures.is_empty(), "{:?}", ok.failures);
        assert_eq!(ok.uname, "5.10.0-46-cloud-amd64");
        let mut rules: Vec<&str> = EXPECTED.iter().map(|e| e.rule).collect();
        rules.sort();
        rules.dedup();
        assert_eq!(ok.alerts_seen.len(), rules.len());

        // A kernel older than an expectation's: the agent must have said what it cannot see.
        let silent = text.replace("io_uring operations are not reported", "something else");
        let bad = judge(&lines(&silent), 1.0);
        assert!(
            bad.failures.iter().any(|f| f.contains("io_uring_read")),
            "{:?}",
            bad.failures
        );
        // On a newer kernel the alert itself is expected.
        let newer = text
            .replace(
                "@@uname 5.10.0-46-cloud-amd64",
                "@@uname 6.1.0-40-cloud-amd64",
            )
            .replace("process=uring", "process=cat");
        let bad = judge(&lines(&newer), 1.0);
        assert!(
            bad.failures.iter().any(|f| f.contains("io_uring_read")),
            "{:?}",
            bad.failures
        );
        // From 5.11 sys_exit must be the BTF tracepoint, from 5.17 the environment read in
        // chunks; the older forms there are failures that carry the agent's reason.
        for (program, reason) in [
            (
                "sys_exit: helper calls on 6.1.0",
                "no bpf_get_current_task_btf",
            ),
            (
                "sched_process_exec: environment read an entry at a time on 6.1.0",
                "unknown func bpf_loop",
            ),
        ] {
            assert!(
                bad.failures
                    .iter()
                    .any(|f| f.contains(program) && f.contains(reason)),
                "{program}: {:?}",
                bad.failures
            );
        }
        let newer_forms = newer
            .replace(
                "attached as a raw tracepoint, every read a helper call",
                "attached as a BTF tracepoint",
            )
            .replace(
                "the environment an entry at a time, up to 1024 entries (unknown func bpf_loop#181)",
                "the environment in 4 KiB chunks (bpf_loop)",
            );
        let out = judge(&lines(&newer_forms), 1.0);
        assert_eq!(
            out.forms,
            [
                ("sys_exit", "typed loads"),
                ("sys_exit walks", "a helper call per object"),
                ("sys_exit hook", "raw_syscalls"),
                ("sched_process_exec", "environment read in 4 KiB chunks")
            ]
        );
        // From 6.2 the walks must read through casts.
        let cast_kernel = newer_forms.replace("@@uname 6.1.0-40", "@@uname 6.12.0-40");
        let bad = judge(&lines(&cast_kernel), 1.0);
        assert!(
            bad.failures
                .iter()
                .any(|f| f.contains("sys_exit walks: a helper call per object on 6.12.0")),
            "{:?}",
            bad.failures
        );
        let casts = cast_kernel.replace(
            "attached as a BTF tracepoint",
            "attached as a BTF tracepoint with casts",
        );
        let out = judge(&lines(&casts), 1.0);
        assert_eq!(
            out.forms[1],
            ("sys_exit walks", "plain loads through casts")
        );
        assert!(
            !out.failures.iter().any(|f| f.contains("sys_exit")),
            "{:?}",
            out.failures
        );
        assert!(
            !out.failures
                .iter()
                .any(|f| f.contains("sys_exit") || f.contains("sched_process_exec")),
            "{:?}",
            out.failures
        );
        assert_eq!(
            ok.forms,
            [
                ("sys_exit", "helper calls"),
                ("sys_exit walks", "a helper call per object"),
                ("sys_exit hook", "raw_syscalls"),
                ("sched_process_exec", "environment read an entry at a time")
            ]
        );

        // Booted without the 32-bit entry: the probe must say so, and sys_exit must be
        // attached per syscall.
        let no_ia32 = casts.replace(
            "@@cmdline console=ttyS0 quiet",
            "@@cmdline console=ttyS0 quiet ia32_emulation=false",
        );
        let bad = judge(&lines(&no_ia32), 1.0);
        assert!(
            bad.failures
                .iter()
                .any(|f| f.contains("probe disagrees") && f.contains("ia32_emulation=false")),
            "{:?}",
            bad.failures
        );
        assert!(
            bad.failures
                .iter()
                .any(|f| f.contains("sys_exit hook: raw_syscalls on 6.12.0")),
            "{:?}",
            bad.failures
        );
        let events = no_ia32
            .replace("  no  no_ia32_entry", "  yes no_ia32_entry")
            .replace(
                "attached as a BTF tracepoint with casts",
                "attached as syscall events (syscalls:sys_exit_NAME) for the 62 syscalls \
                 wanted: other syscalls run no program; registers ... read with plain loads, \
                 with casts",
            );
        let out = judge(&lines(&events), 1.0);
        assert_eq!(
            out.forms[..3],
            [
                ("sys_exit", "typed loads"),
                ("sys_exit walks", "plain loads through casts"),
                ("sys_exit hook", "per-syscall events"),
            ]
        );
        assert!(
            !out.failures
                .iter()
                .any(|f| f.contains("sys_exit") || f.contains("probe")),
            "{:?}",
            out.failures
        );
        // There the kernel kills the 32-bit entry's action, and its alert may not come.
        let ia32 = EXPECTED.iter().find(|e| e.ia32).unwrap();
        let about = |out: &Outcome| -> usize {
            out.failures
                .iter()
                .filter(|f| f.contains(ia32.action))
                .count()
        };
        assert_eq!(about(&out), 2, "{:?}", out.failures);
        let killed: Vec<String> = lines(&events.replace(
            &format!("@@action {} status=0", ia32.action),
            &format!("@@action {} status=139", ia32.action),
        ))
        .into_iter()
        .filter(|l| !l.contains(ia32.rule))
        .collect();
        let out = judge(&killed, 1.0);
        assert_eq!(about(&out), 0, "{:?}", out.failures);

        let warned = text.replace(
            "[0.1] hello",
            "[1.0] WARNING: CPU: 0 PID: 1 at kernel/bpf/verifier.c:10 check_map_prog_compatibility",
        );
        let bad = judge(&lines(&warned), 1.0);
        assert!(
            bad.failures.iter().any(|f| f.contains("verifier.c")),
            "{:?}",
            bad.failures
        );

        let no_ptrace = text.replace("\"PTRACE attached to process\"", "\"Other\"");
        let bad = judge(&lines(&no_ptrace), 1.0);
        assert!(
            bad.failures
                .iter()
                .any(|f| f.contains("no `PTRACE attached to process` alert")),
            "{:?}",
            bad.failures
        );
    }

    #[test]
    fn an_agent_that_does_not_start_fails_with_its_error() {
        let text = "@@uname 6.1.0\n@@agent-failed\n@@begin agent\n\
                    osprey: `task_struct` has no member `cred_x` in the kernel's BTF\n\
                    @@end agent\n@@begin dmesg\n@@end dmesg\n@@tainted 0\n@@done\n";
        let out = judge(&lines(text), 1.0);
        assert_eq!(out.failures.len(), 1, "{:?}", out.failures);
        assert!(out.failures[0].contains("`task_struct` has no member `cred_x`"));
    }

    #[test]
    fn a_kernel_crash_between_sections_is_reported_with_what_the_guest_was_doing() {
        let text = "@@uname 6.12.118+deb13-cloud-amd64\n@@begin metrics\n\
                    osprey_events_total{kind=\"exec\"} 9\n@@end metrics\n\
                    [   16.614889] Oops: int3: 0000 [#1] PREEMPT SMP NOPTI\n\
                    [   16.614990] CPU: 1 UID: 0 PID: 97 Comm: tokio-runtime-w Not tainted 6.12.118\n\
                    [   16.615001] RIP: 0010:syscall_exit_to_user_mode_prepare+0xd7/0x170\n\
                    [   16.615100] Call Trace:\n\
                    [   16.616000] Kernel panic - not syncing: Fatal exception in interrupt\n\
                    [   16.616100] ---[ end Kernel panic - not syncing: Fatal exception in interrupt ]---\n\
                    [   16.616200] reboot: trailing line\n";
        let out = judge(&lines(text), 1.0);
        assert_eq!(
            out.failures[0],
            "the guest kernel crashed after `@@end metrics`: Oops: int3: 0000 [#1] PREEMPT SMP \
             NOPTI | RIP: 0010:syscall_exit_to_user_mode_prepare+0xd7/0x170 | CPU: 1 UID: 0 \
             PID: 97 Comm: tokio-runtime-w Not tainted 6.12.118"
        );
        // The report runs from its first line to the end of the panic.
        assert_eq!(out.crash.len(), 6, "{:?}", out.crash);
        assert!(out.crash[5].contains("---[ end Kernel panic"));
        // A clean console has none, nor one where a user program faulted.
        assert!(crash(&lines("@@uname 6.1.0\n[0.1] hello\n@@done\n")).is_none());
        assert!(
            crash(&lines(
                "[ 9.8] traps: int80[250] general protection fault ip:55a80d1a1277 \
                 sp:7fff722c3380 error:402 in int80[15277,55a80d19f000+41000]\n@@done\n"
            ))
            .is_none()
        );
    }
}
