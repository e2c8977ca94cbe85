//! The web UI in a real headless browser (Debian's chromium, driven through chromedriver's W3C
//! WebDriver HTTP API), against a real `osprey run --web` (real eBPF) on loopback: alerts
//! raised by this test appear live without a reload, a filter narrows the table, the charts
//! draw, and a process whose name is HTML markup is shown as text.
//!
//! With OSPREY_SCREENSHOT=FILE, the page with its alerts is also saved there as a PNG (how
//! the README's docs/web-ui.png is made).

mod support;

use std::{
    io::{BufRead, BufReader, Read, Write},
    net::TcpStream,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use serde_json::{Value, json};
use support::{Agent, free_port};

const WAIT: Duration = Duration::from_secs(30);
/// A process name that is markup: rendered as HTML it would add an element with id `pwn`.
/// Short enough for the kernel's 15-character comm, and free of `/`, as it is a file name.
const EVIL: &str = "<i id=pwn>x";

/// The test's rules: opening `<marker>/<prefix>-…` raises an alert of that priority.
const RULES: &[(&str, &str, &str)] = &[
    (
        "crit",
        "CRITICAL",
        "Web UI test - shell dropped in marker dir",
    ),
    (
        "err",
        "ERROR",
        "Web UI test - credentials read from marker dir",
    ),
    ("warn", "WARNING", "Web UI test - marker file opened"),
    ("note", "NOTICE", "Web UI test - marker file listed"),
];

struct Scratch {
    dir: PathBuf,
    marker: PathBuf,
}

impl Scratch {
    fn new() -> Scratch {
        let dir = std::env::temp_dir().join(format!("osprey-web-ui-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let marker = dir.join("hits");
        std::fs::create_dir_all(&marker).unwrap();
        let mut rules = String::new();
        for (prefix, prio, name) in RULES {
            rules.push_str(&format!(
                "- rule: \"{name}\"\n  desc: test\n  condition: evt.type in (open, openat) and fd.name startswith {}/{prefix}-\n  output: \"{prefix} marker opened (file=%fd.name proc=%proc.name cmd=%proc.cmdline)\"\n  priority: {prio}\n  tags: [osprey_web_test]\n",
                marker.display()
            ));
        }
        std::fs::write(dir.join("rules.yaml"), rules).unwrap();
        Scratch { dir, marker }
    }

    /// Opens marker `name` from this process: one alert.
    fn hit(&self, name: &str) {
        std::fs::write(self.marker.join(name), b"x").unwrap();
    }

    /// Opens marker `name` from a copy of cat called `comm`.
    fn hit_as(&self, comm: &str, name: &str) {
        let exe = self.dir.join(comm);
        if !exe.exists() {
            std::fs::copy("/bin/cat", &exe).unwrap();
        }
        // Made outside the marker directory and moved in, so that only `comm` opens it there.
        let p = self.marker.join(name);
        let staged = self.dir.join(format!("staged-{name}"));
        std::fs::write(&staged, b"x").unwrap();
        std::fs::rename(&staged, &p).unwrap();
        let st = Command::new(&exe)
            .arg(&p)
            .stdout(Stdio::null())
            .status()
            .unwrap();
        assert!(st.success());
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// One HTTP/1.1 request to 127.0.0.1:port with a JSON body: the JSON answer.
fn http_json(port: u16, method: &str, path: &str, body: Option<&Value>) -> Value {
    let body = body.map(Value::to_string).unwrap_or_default();
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connecting to chromedriver");
    s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    // chromedriver may keep the connection open: read the head, then what it announces.
    let mut r = BufReader::new(s);
    let mut head = String::new();
    loop {
        let mut line = String::new();
        r.read_line(&mut line)
            .unwrap_or_else(|e| panic!("{method} {path}: no answer: {e}"));
        if line == "\r\n" || line.is_empty() {
            break;
        }
        head.push_str(&line);
    }
    let header = |name: &str| {
        head.lines().find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case(name).then(|| v.trim().to_string())
        })
    };
    let mut text = String::new();
    if let Some(n) = header("content-length") {
        let mut buf = vec![0; n.parse().unwrap()];
        r.read_exact(&mut buf).unwrap();
        text = String::from_utf8_lossy(&buf).into_owned();
    } else if header("transfer-encoding").is_some_and(|v| v.eq_ignore_ascii_case("chunked")) {
        loop {
            let mut size = String::new();
            r.read_line(&mut size).unwrap();
            let n = usize::from_str_radix(size.trim(), 16).unwrap();
            let mut buf = vec![0; n + 2];
            r.read_exact(&mut buf).unwrap();
            if n == 0 {
                break;
            }
            text.push_str(&String::from_utf8_lossy(&buf[..n]));
        }
    } else {
        r.read_to_string(&mut text).unwrap();
    }
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{method} {path}: {e}: {head}{text}"))
}

/// chromedriver and one headless Chromium session.
struct Browser {
    driver: Child,
    port: u16,
    session: String,
    profile: PathBuf,
}

impl Browser {
    fn start(scratch: &Path) -> Browser {
        for bin in ["chromium", "chromedriver"] {
            assert!(
                Command::new("sh")
                    .args(["-c", &format!("command -v {bin}")])
                    .stdout(Stdio::null())
                    .status()
                    .is_ok_and(|s| s.success()),
                "{bin} is not installed: `cargo xtask setup` installs Debian's chromium and chromium-driver"
            );
        }
        let port = free_port();
        let driver = Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting chromedriver");
        let deadline = Instant::now() + WAIT;
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "chromedriver did not listen");
            std::thread::sleep(Duration::from_millis(100));
        }
        let profile = scratch.join("chromium-profile");
        let caps = json!({"capabilities": {"alwaysMatch": {"goog:chromeOptions": {
            "binary": "/usr/bin/chromium",
            "args": [
                "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--no-first-run", "--disable-background-networking", "--disable-component-update",
                "--disable-sync", "--window-size=1600,1000", "--hide-scrollbars",
                format!("--user-data-dir={}", profile.display()),
            ],
        }}}});
        let r = http_json(port, "POST", "/session", Some(&caps));
        let session = r["value"]["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no WebDriver session: {r}"))
            .to_string();
        Browser {
            driver,
            port,
            session,
            profile,
        }
    }

    fn cmd(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let r = http_json(
            self.port,
            method,
            &format!("/session/{}{path}", self.session),
            body.as_ref(),
        );
        assert!(
            r["value"].get("error").is_none(),
            "WebDriver {method} {path}: {r}"
        );
        r["value"].clone()
    }

    fn goto(&self, url: &str) {
        self.cmd("POST", "/url", Some(json!({ "url": url })));
    }

    /// Runs `script` (a function body) in the page: its return value.
    fn js(&self, script: &str) -> Value {
        self.cmd(
            "POST",
            "/execute/sync",
            Some(json!({"script": script, "args": []})),
        )
    }

    /// Polls `script` until it returns true.
    fn wait(&self, what: &str, script: &str) {
        let deadline = Instant::now() + WAIT;
        while self.js(script) != json!(true) {
            if Instant::now() > deadline {
                panic!(
                    "the page shows no {what} within {WAIT:?}; rows:\n{}",
                    self.js("return [...document.querySelectorAll('#alerts tbody tr')].map(r => r.textContent).join('\\n')")
                );
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    fn rows(&self) -> Vec<String> {
        serde_json::from_value(self.js(
            "return [...document.querySelectorAll('#alerts tbody tr.alert')].map(r => r.textContent)",
        ))
        .unwrap()
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = http_json(
            self.port,
            "DELETE",
            &format!("/session/{}", self.session),
            None,
        );
        let _ = self.driver.kill();
        let _ = self.driver.wait();
        let _ = std::fs::remove_dir_all(&self.profile);
    }
}

#[test]
fn web_ui_shows_alerts_live_filters_charts_and_escapes_markup() {
    let sc = Scratch::new();
    let web = free_port();
    let rules = sc.dir.join("rules.yaml");
    let _agent = Agent::start(
        &[
            "run",
            "--json",
            "--no-flood-control",
            "--no-watch-rules",
            "--rules",
            rules.to_str().unwrap(),
            "--node-name",
            "web-node-1",
            "--grpc",
            "off",
            "--web",
            &format!("127.0.0.1:{web}"),
        ],
        "osprey is running",
    );
    let b = Browser::start(&sc.dir);
    b.goto(&format!("http://127.0.0.1:{web}/"));
    b.wait(
        "connection to the agent",
        "return document.getElementById('source').textContent === 'agent web-node-1'",
    );
    assert_eq!(b.js("return document.title"), json!("Osprey alerts"));
    // A mark in this document: still there at the end means the page was never reloaded.
    b.js("window.ospreyNoReload = 42; return true");

    // Alerts of every test rule, from ordinary and hostile process names.
    sc.hit_as(EVIL, "warn-evil");
    b.wait(
        "alert from the process named with markup",
        &format!(
            "return [...document.querySelectorAll('#alerts td.proc')].some(td => td.textContent.includes({}))",
            json!(EVIL)
        ),
    );
    for i in 0..3 {
        sc.hit_as("python3", &format!("crit-{i}"));
        sc.hit_as("curl", &format!("err-{i}"));
        sc.hit(&format!("warn-{i}"));
    }
    for i in 0..5 {
        sc.hit_as("ls", &format!("note-{i}"));
    }
    b.wait(
        "15 live alerts",
        "return document.querySelectorAll('#alerts tbody tr.alert').length === 15",
    );
    assert_eq!(
        b.js("return window.ospreyNoReload"),
        json!(42),
        "the page reloaded"
    );

    // The markup is text: in the process cell and the output, never an element.
    let escaped = b.js(&format!(
        "const row = [...document.querySelectorAll('#alerts tbody tr.alert')].find(r => r.querySelector('td.proc').textContent.includes({evil}));
         return {{ proc: row.querySelector('td.proc').textContent, output: row.querySelector('td.output').textContent,
                  injected: document.getElementById('pwn') !== null || document.querySelector('#alerts i') !== null,
                  title: document.title }}",
        evil = json!(EVIL)
    ));
    assert!(
        escaped["proc"].as_str().unwrap().starts_with(EVIL),
        "{escaped}"
    );
    assert!(
        escaped["output"]
            .as_str()
            .unwrap()
            .contains(&format!("proc={EVIL}")),
        "{escaped}"
    );
    assert_eq!(escaped["injected"], json!(false), "{escaped}");
    assert_eq!(escaped["title"], json!("Osprey alerts"));

    // The charts have drawn: a bar per priority and per rule, and the timeline.
    let charts = b.js(
        "const bars = (id, dim) => [...document.querySelectorAll(`#${id} rect.bar`)].filter(r => parseFloat(r.getAttribute(dim)) > 0).length;
         return { priority: bars('chart-priority', 'width'), rules: bars('chart-rules', 'width'),
                  timeline: bars('chart-timeline', 'height'), nodes: bars('chart-nodes', 'width') }",
    );
    assert_eq!(charts["priority"], json!(4), "{charts}");
    assert_eq!(charts["rules"], json!(4), "{charts}");
    assert!(charts["timeline"].as_u64().unwrap() >= 1, "{charts}");
    assert_eq!(charts["nodes"], json!(1), "{charts}");

    // The README's picture: the table and charts with these alerts.
    if let Some(path) = std::env::var_os("OSPREY_SCREENSHOT") {
        let png = b.cmd("GET", "/screenshot", None);
        let png = base64_decode(png.as_str().unwrap());
        std::fs::write(&path, png).unwrap();
    }

    // An alert's detail: its fields, lineage and identity.
    b.js(&format!(
        "[...document.querySelectorAll('#alerts tbody tr.alert')].find(r => r.textContent.includes({})).click(); return true",
        json!(EVIL)
    ));
    let detail = b.js("return document.getElementById('detail').hidden ? '' : document.getElementById('detail').textContent");
    let detail = detail.as_str().unwrap();
    for want in ["Lineage", "Output fields", "fd.name", "warn-evil", EVIL] {
        assert!(detail.contains(want), "detail lacks {want:?}: {detail}");
    }
    assert_eq!(
        b.js("return document.getElementById('pwn') === null"),
        json!(true)
    );

    b.js("document.getElementById('detail-close').click(); return true");

    // A filter narrows the table, lands in the URL, and holds for live alerts too.
    let before = b.rows().len();
    b.js(
        "const s = document.querySelector('select[name=priority]'); s.value = 'critical';
          s.dispatchEvent(new Event('input', {bubbles: true})); return true",
    );
    b.wait(
        "critical alerts only",
        "const rows = [...document.querySelectorAll('#alerts tbody tr.alert')];
         return rows.length === 3 && rows.every(r => r.querySelector('.badge').textContent === 'Critical')",
    );
    assert!(before > 3);
    assert_eq!(b.js("return location.search"), json!("?priority=critical"));
    sc.hit("warn-after-filter");
    sc.hit_as("python3", "crit-after-filter");
    b.wait(
        "the new critical alert",
        "return document.querySelectorAll('#alerts tbody tr.alert').length === 4",
    );
    assert!(
        b.rows().iter().all(|r| !r.contains("warn-after-filter")),
        "{:?}",
        b.rows()
    );
    // Free text narrows further, in the page.
    b.js(
        "const q = document.querySelector('input[name=q]'); q.value = 'crit-after';
          q.dispatchEvent(new Event('input', {bubbles: true})); return true",
    );
    b.wait(
        "the one alert matching the text",
        "return document.querySelectorAll('#alerts tbody tr.alert').length === 1",
    );
    assert_eq!(
        b.js("return location.search"),
        json!("?priority=critical&q=crit-after")
    );
    // A shared link opens the same view.
    b.goto(&format!("http://127.0.0.1:{web}/?rule=*dropped*"));
    b.wait(
        "the shared view's alerts from the retained backlog",
        "const rows = [...document.querySelectorAll('#alerts tbody tr.alert')];
         return rows.length === 4 && rows.every(r => r.textContent.includes('shell dropped'))",
    );
    assert_eq!(
        b.js("return document.querySelector('input[name=rule]').value"),
        json!("*dropped*")
    );
}

fn base64_decode(s: &str) -> Vec<u8> {
    let val = |c: u8| -> u32 {
        match c {
            b'A'..=b'Z' => u32::from(c - b'A'),
            b'a'..=b'z' => u32::from(c - b'a') + 26,
            b'0'..=b'9' => u32::from(c - b'0') + 52,
            b'+' => 62,
            b'/' => 63,
            _ => panic!("not base64: {c}"),
        }
    };
    let mut out = Vec::new();
    for chunk in s.as_bytes().chunks(4) {
        let data: Vec<u8> = chunk.iter().copied().filter(|&c| c != b'=').collect();
        let n = data
            .iter()
            .enumerate()
            .fold(0u32, |acc, (i, &c)| acc | (val(c) << (18 - 6 * i)));
        for i in 0..data.len().saturating_sub(1) {
            out.push((n >> (16 - 8 * i)) as u8);
        }
    }
    out
}
