//! Helpers for integration tests that run the real `osprey` binary as root.

#![allow(dead_code, reason = "each test binary uses a different subset")]

use std::{
    ffi::OsStr,
    io::{BufRead, BufReader},
    process::{Child, Command, ExitStatus, Output, Stdio},
    sync::{Arc, Mutex, mpsc},
    time::{Duration, Instant},
};

use serde_json::Value;

pub const OSPREY: &str = env!("CARGO_BIN_EXE_osprey");

/// Fails the test with a clear message unless it runs as root (loading eBPF needs it).
pub fn require_root() {
    // SAFETY: geteuid has no preconditions.
    let euid = unsafe { libc::geteuid() };
    assert_eq!(
        euid, 0,
        "this test loads eBPF programs and must run as root (cargo xtask test does, in CI)"
    );
}

/// A running `osprey` (any subcommand) whose stdout lines are collected as JSON values, and
/// whose stderr is kept for failure messages.
pub struct Agent {
    child: Child,
    lines: mpsc::Receiver<Value>,
    pub seen: Vec<Value>,
    stderr: Arc<Mutex<String>>,
    /// Which process this is, in failure messages (tests run several).
    name: String,
}

impl Agent {
    /// Starts `osprey ARGS` and waits until its log says `ready_marker` (on stderr).
    pub fn start(args: &[&str], ready_marker: &str) -> Agent {
        Self::spawn("osprey", args, Some(ready_marker))
    }

    /// Starts `osprey ARGS`, called `name` in messages; with a `ready_marker`, waits until its
    /// log says it (on stderr), otherwise returns at once (`osprey tail` logs no marker).
    pub fn spawn<A: AsRef<OsStr>>(name: &str, args: &[A], ready_marker: Option<&str>) -> Agent {
        require_root();
        let mut child = Command::new(OSPREY)
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawning osprey");
        let (tx, rx) = mpsc::channel();
        let stdout = child.stdout.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                match serde_json::from_str::<Value>(&line) {
                    Ok(v) => {
                        if tx.send(v).is_err() {
                            break;
                        }
                    }
                    Err(e) => panic!("osprey printed a line that is not JSON ({e}): {line}"),
                }
            }
        });
        let stderr = child.stderr.take().unwrap();
        let log = Arc::new(Mutex::new(String::new()));
        let (ready_tx, ready_rx) = mpsc::channel();
        let marker = ready_marker.map(str::to_string);
        let log2 = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if marker.as_ref().is_some_and(|m| line.contains(m)) {
                    let _ = ready_tx.send(());
                }
                let mut l = log2.lock().unwrap();
                l.push_str(&line);
                l.push('\n');
            }
        });
        let mut agent = Agent {
            child,
            lines: rx,
            seen: Vec::new(),
            stderr: log,
            name: name.into(),
        };
        if ready_marker.is_some() && ready_rx.recv_timeout(Duration::from_secs(60)).is_err() {
            let status = agent.child.try_wait();
            panic!(
                "{name} did not become ready ({status:?}); stderr:\n{}",
                agent.stderr()
            );
        }
        agent
    }

    /// The agent's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    /// Waits up to `timeout` for a line matching `pred`; panics with what was seen otherwise.
    pub fn expect(
        &mut self,
        what: &str,
        timeout: Duration,
        pred: impl Fn(&Value) -> bool,
    ) -> Value {
        if let Some(v) = self.seen.iter().find(|v| pred(v)) {
            return v.clone();
        }
        let deadline = Instant::now() + timeout;
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            match self.lines.recv_timeout(left) {
                Ok(v) => {
                    let hit = pred(&v);
                    self.seen.push(v.clone());
                    if hit {
                        return v;
                    }
                }
                Err(_) => break,
            }
        }
        let tail: Vec<String> = self
            .seen
            .iter()
            .rev()
            .take(15)
            .map(|v| v.to_string())
            .collect();
        panic!(
            "{}: no {what} within {timeout:?}; last lines seen:\n{}\nstderr:\n{}",
            self.name,
            tail.join("\n"),
            self.stderr()
        );
    }

    /// Collects lines until `pred(all seen)` holds, or panics after `timeout`.
    pub fn wait_until(&mut self, what: &str, timeout: Duration, pred: impl Fn(&[Value]) -> bool) {
        let deadline = Instant::now() + timeout;
        while !pred(&self.seen) {
            let Some(left) = deadline.checked_duration_since(Instant::now()) else {
                panic!(
                    "{}: no {what} within {timeout:?}; {} lines, last: {:?}\nstderr:\n{}",
                    self.name,
                    self.seen.len(),
                    self.seen.iter().rev().take(5).collect::<Vec<_>>(),
                    self.stderr()
                );
            };
            if let Ok(v) = self
                .lines
                .recv_timeout(left.min(Duration::from_millis(200)))
            {
                self.seen.push(v);
            }
        }
    }

    /// Collects lines for `d` and returns all seen so far.
    pub fn collect_for(&mut self, d: Duration) -> &[Value] {
        let deadline = Instant::now() + d;
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            match self.lines.recv_timeout(left) {
                Ok(v) => self.seen.push(v),
                Err(_) => break,
            }
        }
        &self.seen
    }

    /// Kills the process with SIGKILL, as a crash would end it, and reaps it. A process that
    /// SIGKILL does not end within a minute (stuck in the kernel) is reported with where it is
    /// stuck and left behind, rather than hanging the test run.
    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        if self.wait_exit(Duration::from_secs(60)).is_none() {
            eprintln!(
                "{} (pid {}) survived SIGKILL for a minute; left behind:\n{}",
                self.name,
                self.child.id(),
                process_report(self.child.id())
            );
        }
    }

    /// Waits up to `timeout` for the process to exit.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Ok(Some(s)) = self.child.try_wait() {
                return Some(s);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        None
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        // SAFETY: sending SIGINT to our own child.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGINT) };
        if self.wait_exit(Duration::from_secs(5)).is_none() {
            self.kill9();
        }
    }
}

/// Runs `cmd` to completion like [`Command::output`], but within `limit`: a command that is not
/// done by then (or whose descendants still hold its output open) is killed with its process
/// group, and the test fails with what it printed and where its processes were stuck. A
/// hung helper otherwise hangs the whole test run until CI's own timeout, with no word on why.
pub fn output_within(cmd: &mut Command, limit: Duration) -> Output {
    use std::{io::Read, os::unix::process::CommandExt};
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {cmd:?}: {e}"));
    let pid = child.id();
    let (tx, rx) = mpsc::channel();
    let readers = [
        Box::new(child.stdout.take().unwrap()) as Box<dyn Read + Send>,
        Box::new(child.stderr.take().unwrap()),
    ]
    .map(|mut pipe| {
        let tx = tx.clone();
        let buf = Arc::new(Mutex::new(Vec::new()));
        let b = buf.clone();
        std::thread::spawn(move || {
            let mut chunk = [0u8; 4096];
            while let Ok(n @ 1..) = pipe.read(&mut chunk) {
                b.lock().unwrap().extend_from_slice(&chunk[..n]);
            }
            let _ = tx.send(());
        });
        buf
    });
    drop(tx);
    let deadline = Instant::now() + limit;
    let mut closed = 0;
    while closed < 2 {
        let Some(left) = deadline.checked_duration_since(Instant::now()) else {
            break;
        };
        if rx.recv_timeout(left).is_ok() {
            closed += 1;
        }
    }
    let text = |i: usize| String::from_utf8_lossy(&readers[i].lock().unwrap()).into_owned();
    if closed < 2 {
        let report = process_report(pid);
        // SAFETY: kill(2) on the process group this function made for the command.
        unsafe { libc::kill(-(pid as i32), libc::SIGKILL) };
        let _ = child.kill();
        let _ = child.wait();
        panic!(
            "{cmd:?} was not done within {limit:?} (its output still open); killed.\n\
             stdout:\n{}\nstderr:\n{}\n{report}",
            text(0),
            text(1)
        );
    }
    let status = child
        .wait()
        .expect("waiting for a command whose output closed");
    Output {
        status,
        stdout: text(0).into_bytes(),
        stderr: text(1).into_bytes(),
    }
}

/// Where the processes of the machine are and what they wait in (`ps` as a forest, with the
/// kernel stack of each stopped or uninterruptible one), for a failure message about `pid`.
pub fn process_report(pid: u32) -> String {
    let ps = Command::new("ps")
        .args([
            "-e",
            "--forest",
            "-o",
            "pid,ppid,pgid,stat,wchan:24,etime,args",
        ])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_else(|e| format!("(ps: {e})"));
    let mut report = format!("processes (looking for {pid}):\n{ps}");
    for line in ps.lines().skip(1) {
        let f: Vec<&str> = line.split_whitespace().collect();
        if let [p, _, _, stat, ..] = f[..]
            && (stat.starts_with('D') || stat.starts_with('T') || stat.starts_with('t'))
        {
            let stack = std::fs::read_to_string(format!("/proc/{p}/stack")).unwrap_or_default();
            report.push_str(&format!("kernel stack of {p} ({stat}):\n{stack}"));
        }
    }
    report
}

/// `agent/examples/NAME`, built by `cargo test` beside the test binaries.
pub fn example(name: &str) -> std::path::PathBuf {
    let exe = std::env::current_exe().unwrap();
    let tool = exe
        .parent()
        .unwrap()
        .parent()
        .unwrap()
        .join("examples")
        .join(name);
    assert!(tool.is_file(), "{} is not built", tool.display());
    tool
}

/// Runs [`example`] `name` with `args`; asserts it exits 0 and returns its stdout.
pub fn run_example(name: &str, args: &[&str]) -> String {
    let out = Command::new(example(name)).args(args).output().unwrap();
    assert!(
        out.status.success(),
        "{name} {args:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `ev["event"][field]` shortcuts for trace output.
pub fn kind(v: &Value) -> &str {
    v["event"]["kind"].as_str().unwrap_or("")
}

pub fn syscall_name(v: &Value) -> &str {
    v["event"]["name"].as_str().unwrap_or("")
}

pub fn tgid(v: &Value) -> u64 {
    v["event"]["tgid"].as_u64().unwrap_or(0)
}

/// The value of syscall argument `name` in trace output.
pub fn arg<'a>(v: &'a Value, name: &str) -> &'a Value {
    v["event"]["args"]
        .as_array()
        .and_then(|a| a.iter().find(|x| x["name"] == name))
        .map(|x| &x["value"])
        .unwrap_or(&Value::Null)
}

/// A free TCP port on loopback (bound and released; good enough for a test's own server).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// `GET path` on 127.0.0.1:port: (status code, body), or None when nothing listens yet.
pub fn http_get(port: u16, path: &str) -> Option<(u16, String)> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut resp = String::new();
    s.read_to_string(&mut resp).ok()?;
    let code = resp.split_whitespace().nth(1)?.parse().ok()?;
    let body = resp.split_once("\r\n\r\n").map(|(_, b)| b.to_string())?;
    Some((code, body))
}

/// The value of a Prometheus sample line `name{labels} value` in a /metrics body.
pub fn metric(body: &str, series: &str) -> Option<f64> {
    body.lines().find_map(|l| {
        l.strip_prefix(series)?
            .strip_prefix(' ')?
            .trim()
            .parse()
            .ok()
    })
}

/// The id of the BPF map called `name` that process `pid` holds (its map descriptors name
/// their ids in /proc fdinfo; bpftool names the maps), or None.
pub fn bpf_map_id(pid: u32, name: &str) -> Option<String> {
    for fd in std::fs::read_dir(format!("/proc/{pid}/fdinfo"))
        .ok()?
        .flatten()
    {
        let info = std::fs::read_to_string(fd.path()).unwrap_or_default();
        let Some(map_id) = info
            .lines()
            .find_map(|l| l.strip_prefix("map_id:"))
            .map(|v| v.trim().to_string())
        else {
            continue;
        };
        let out = Command::new("bpftool")
            .args(["-j", "map", "show", "id", &map_id])
            .output()
            .expect("bpftool");
        let m: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
        if m["name"] == name {
            return Some(map_id);
        }
    }
    None
}
