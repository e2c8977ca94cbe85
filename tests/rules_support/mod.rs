//! Shared by the tests of the default rules (tests/rules_*.rs): run a real action while the
//! agent runs with the embedded rules, and check the alert it raised.

#![allow(dead_code, reason = "each test binary uses a different subset")]

use std::{
    path::{Path, PathBuf},
    process::{Command, Output},
    sync::Once,
    time::Duration,
};

use serde_json::Value;

use crate::support::Agent;

pub const WAIT: Duration = Duration::from_secs(10);

/// The agent with the default (embedded) rules, alerts as JSON.
pub fn agent() -> Agent {
    Agent::start(&["run", "--json"], "osprey is running")
}

/// The agent with the default rules and then the rule file `extra` (overrides, test rules).
pub fn agent_with_extra(extra: &Path) -> Agent {
    Agent::start(
        &[
            "run",
            "--json",
            "--rules",
            "default",
            "--rules",
            extra.to_str().expect("a UTF-8 path"),
        ],
        "osprey is running",
    )
}

/// Waits for an alert of `rule` that also satisfies `pred`.
pub fn alert(agent: &mut Agent, rule: &str, pred: impl Fn(&Value) -> bool) -> Value {
    agent.expect(&format!("a '{rule}' alert"), WAIT, |v| {
        v["rule"] == rule && pred(v)
    })
}

/// Asserts that no line the agent printed, up to now and over the next 300 ms, satisfies
/// `pred`; `what` names the line that must not be there. Call it after the alerts the same
/// run does raise have arrived: the ones it must not raise came before them.
pub fn none_seen(agent: &mut Agent, what: &str, pred: impl Fn(&Value) -> bool) {
    let seen = agent.collect_for(std::time::Duration::from_millis(300));
    assert!(!seen.iter().any(pred), "{what}: {seen:?}");
}

/// `output_fields[name]` as text (numbers and booleans as their JSON text, unset as "").
pub fn field(v: &Value, name: &str) -> String {
    match &v["output_fields"][name] {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

/// Asserts the alert's priority, that its tags include every one of `tags`, and the exact
/// value of each `(field, value)`.
pub fn check(v: &Value, priority: &str, tags: &[&str], fields: &[(&str, &str)]) {
    assert_eq!(v["priority"], priority, "priority of {v}");
    assert_eq!(v["source"], "syscall");
    let have: Vec<&str> = v["tags"]
        .as_array()
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    for t in tags {
        assert!(have.contains(t), "tag {t} missing in {v}");
    }
    for (name, want) in fields {
        assert_eq!(field(v, name), *want, "{name} in {v}");
    }
}

/// Runs `bash -c script`; returns its output whatever the exit status.
/// Bounded (two minutes): a script that hangs fails its test with where it hung.
pub fn bash(script: &str) -> Output {
    crate::support::output_within(
        Command::new("bash").arg("-c").arg(script),
        Duration::from_secs(120),
    )
}

/// Like [`bash`], but the script must succeed.
pub fn bash_ok(script: &str) -> String {
    let out = bash(script);
    assert!(
        out.status.success(),
        "`{script}` failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A directory of its own for one test, removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(name: &str) -> TempDir {
        Self::under(Path::new("/tmp"), name)
    }

    pub fn under(parent: &Path, name: &str) -> TempDir {
        let p = parent.join(format!("osprey-rules-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }

    pub fn join(&self, p: &str) -> PathBuf {
        self.0.join(p)
    }

    pub fn s(&self) -> &str {
        self.0.to_str().unwrap()
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Creates `path` with `content` for the length of a test, and its missing parent
/// directories; removes what it created on drop (the topmost directory it had to create, or
/// just the file).
pub struct Planted {
    remove: PathBuf,
    is_dir: bool,
}

impl Planted {
    pub fn new(path: &str, content: &str) -> Planted {
        let path = Path::new(path);
        let mut top = None;
        let mut cur = path.parent();
        while let Some(d) = cur {
            if d.exists() {
                break;
            }
            top = Some(d.to_path_buf());
            cur = d.parent();
        }
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, content).unwrap();
        match top {
            Some(d) => Planted {
                remove: d,
                is_dir: true,
            },
            None => Planted {
                remove: path.to_path_buf(),
                is_dir: false,
            },
        }
    }
}

impl Drop for Planted {
    fn drop(&mut self) {
        let _ = if self.is_dir {
            std::fs::remove_dir_all(&self.remove)
        } else {
            std::fs::remove_file(&self.remove)
        };
    }
}

/// A TCP listener on loopback that accepts and reads in the background; its port.
pub fn loopback_listener() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for s in l.incoming().take(4) {
            let Ok(mut s) = s else { break };
            std::thread::spawn(move || {
                use std::io::{Read, Write};
                let _ = s.set_read_timeout(Some(Duration::from_secs(3)));
                let _ = s.write_all(b"exit\n");
                let mut buf = [0u8; 512];
                let _ = s.read(&mut buf);
            });
        }
    });
    port
}

// Containers: podman with runc, an image built here from the host's busybox.

pub const IMAGE: &str = "localhost/osprey-rules:busybox";
pub const REPO: &str = "localhost/osprey-rules";

/// Builds the image once: busybox with every applet linked under /bin, so that processes have
/// their own names (busybox's shell would otherwise run applets as /proc/self/exe, "exe").
pub fn image() {
    static BUILD: Once = Once::new();
    BUILD.call_once(|| {
        if Command::new("podman")
            .args(["image", "exists", IMAGE])
            .status()
            .unwrap()
            .success()
        {
            return;
        }
        let d = TempDir::new("image");
        bash_ok(&format!(
            "cd {0} && mkdir -p r/bin r/etc r/tmp r/mnt r/var/tmp && chmod 1777 r/tmp r/var/tmp \
             && cp /bin/busybox r/bin/ && for a in $(/bin/busybox --list); do \
             [ -e r/bin/$a ] || ln -s busybox r/bin/$a; done \
             && echo 'root:x:0:0:root:/:/bin/sh' > r/etc/passwd && echo 'root:x:0:' > r/etc/group \
             && tar -C r -cf r.tar . && podman import r.tar {IMAGE} >/dev/null",
            d.s()
        ));
    });
}

/// A container run to completion: its short id (what `container.id` shows), its whole id,
/// and its output.
pub struct Ran {
    pub id: String,
    pub full_id: String,
    pub out: String,
}

/// `podman run --rm` with `args` before the image, then `/bin/sh -c script`.
pub fn run(args: &[&str], script: &str) -> Ran {
    image();
    let cidfile = std::env::temp_dir().join(format!(
        "osprey-rules-cid-{}-{:?}",
        std::process::id(),
        std::thread::current().id()
    ));
    let _ = std::fs::remove_file(&cidfile);
    let out = Command::new("podman")
        .args(["run", "--rm", "--runtime", "runc", "--cidfile"])
        .arg(&cidfile)
        .args(args)
        .args([IMAGE, "/bin/sh", "-c", script])
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    let id = std::fs::read_to_string(&cidfile).unwrap_or_default();
    let _ = std::fs::remove_file(&cidfile);
    assert!(
        id.len() >= 12,
        "podman run failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ran {
        id: id.trim()[..12].to_string(),
        full_id: id.trim().to_string(),
        out: String::from_utf8_lossy(&out.stdout).into_owned()
            + &String::from_utf8_lossy(&out.stderr),
    }
}

/// The alert of `rule` from container `c` that satisfies `pred`; checks its container fields.
pub fn container_alert(
    agent: &mut Agent,
    rule: &str,
    c: &Ran,
    pred: impl Fn(&Value) -> bool,
) -> Value {
    let a = alert(agent, rule, |v| field(v, "container.id") == c.id && pred(v));
    assert_eq!(field(&a, "container.image.repository"), REPO, "{a}");
    a
}
