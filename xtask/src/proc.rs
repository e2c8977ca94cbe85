//! Running child processes: one line saying what runs, and errors that name the step.

use std::{
    collections::HashMap,
    process::{Command, Output},
    sync::atomic::{AtomicI32, Ordering},
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, bail};

/// Prints one short line for a step.
pub fn step(what: impl std::fmt::Display) {
    println!("[xtask] {what}");
}

/// Runs `cmd` with inherited stdio; a non-zero exit is an error naming `what`.
pub fn run(cmd: &mut Command, what: &str) -> Result<()> {
    let status = cmd
        .status()
        .with_context(|| format!("{what}: cannot start `{}`", display(cmd)))?;
    if !status.success() {
        bail!("{what} failed ({status}): `{}`", display(cmd));
    }
    Ok(())
}

/// Like [`run`], but a command still running after `limit` is stopped: what every process of
/// the machine is waiting in is printed (a hang in CI otherwise ends in CI's own timeout with no
/// word on which test hung or why), then the command and its descendants are killed.
pub fn run_within(cmd: &mut Command, what: &str, limit: Duration) -> Result<()> {
    let mut child = cmd
        .spawn()
        .with_context(|| format!("{what}: cannot start `{}`", display(cmd)))?;
    let deadline = Instant::now() + limit;
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break status;
        }
        if Instant::now() >= deadline {
            step(format!(
                "{what} has run for {} minutes: stopping it; the processes and where they wait:",
                limit.as_secs() / 60
            ));
            report_processes();
            let mut doomed = descendants(child.id());
            doomed.push(child.id());
            signal(&doomed, libc::SIGKILL);
            let _ = child.wait();
            bail!(
                "{what} did not finish within {} minutes: `{}`",
                limit.as_secs() / 60,
                display(cmd)
            );
        }
        std::thread::sleep(Duration::from_millis(500));
    };
    if !status.success() {
        bail!("{what} failed ({status}): `{}`", display(cmd));
    }
    Ok(())
}

/// The signal that asked xtask to stop; 0 until one did.
static STOP: AtomicI32 = AtomicI32::new(0);

extern "C" fn on_stop(sig: libc::c_int) {
    STOP.store(sig, Ordering::Relaxed);
}

/// From now on SIGINT, SIGTERM or SIGHUP stop what xtask started before xtask exits. Killed
/// alone (a CI timeout, `kill PID`), xtask used to leave its children running: `cargo bench`
/// went on timing, and an agent the benchmark or a test had started stayed loaded, its
/// programs on every syscall of the node, in every later measurement. The handler only notes
/// the signal (exec resets it, so children keep the default actions); a thread sends the
/// descendants SIGTERM, then SIGKILL to what is left after [`STOP_GRACE`], and exits with
/// 128 + the signal.
pub fn stop_descendants_on_signal() {
    for sig in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP] {
        // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
        unsafe { libc::signal(sig, on_stop as *const () as libc::sighandler_t) };
    }
    std::thread::spawn(|| {
        loop {
            std::thread::sleep(Duration::from_millis(100));
            let sig = STOP.load(Ordering::Relaxed);
            if sig != 0 {
                step(format!(
                    "signal {sig}: stopping the processes xtask started, then exiting"
                ));
                stop_tree(std::process::id(), STOP_GRACE);
                std::process::exit(128 + sig);
            }
        }
    });
}

/// How long the processes below a stopped xtask have to exit after SIGTERM (an agent detaches
/// its programs and flushes its sinks) before SIGKILL.
const STOP_GRACE: Duration = Duration::from_secs(5);

/// Sends SIGTERM to every live process below `root`, waits up to `grace` for them to exit, then
/// sends SIGKILL to those left (and any they started meanwhile).
fn stop_tree(root: u32, grace: Duration) {
    signal(&descendants(root), libc::SIGTERM);
    wait_gone(root, grace);
    signal(&descendants(root), libc::SIGKILL);
    // A killed process is gone once the kernel has run its exit, not when kill(2) returns:
    // wait for that (bounded: one in uninterruptible sleep dies only when it wakes), so that
    // what this returns to finds nothing of the tree left running.
    wait_gone(root, Duration::from_secs(5));
}

/// Waits up to `limit` for every process below `root` to be gone.
fn wait_gone(root: u32, limit: Duration) {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline && !descendants(root).is_empty() {
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Sends `sig` to each of `pids`.
fn signal(pids: &[u32], sig: libc::c_int) {
    for &p in pids {
        // SAFETY: kill(2) with a pid just read from /proc; a pid reused meanwhile is the risk
        // every `kill` takes.
        unsafe { libc::kill(p as libc::pid_t, sig) };
    }
}

/// `ps` as a forest with each process's wait channel, then the kernel stack of every process
/// that is stopped, traced or in uninterruptible sleep.
fn report_processes() {
    let ps = Command::new("ps")
        .args(["-e", "--forest", "-o", "pid,ppid,stat,wchan:24,etime,args"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_else(|e| format!("(ps: {e})"));
    println!("{ps}");
    for line in ps.lines().skip(1) {
        let fields: Vec<&str> = line.split_whitespace().collect();
        if let [pid, _, stat, ..] = fields[..]
            && stat.starts_with(['D', 'T', 't'])
        {
            let stack = std::fs::read_to_string(format!("/proc/{pid}/stack")).unwrap_or_default();
            println!("kernel stack of {pid} ({stat}):\n{stack}");
        }
    }
}

/// Every live process below `pid`, from /proc's parent links; zombies (exited, not yet reaped)
/// are not live.
fn descendants(pid: u32) -> Vec<u32> {
    let mut children: HashMap<u32, Vec<u32>> = HashMap::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Some(p) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{p}/stat")) else {
            continue;
        };
        // The fields after the command name (which may hold spaces): state, then the parent.
        let mut fields = stat
            .rsplit_once(')')
            .map(|(_, rest)| rest.split_whitespace())
            .into_iter()
            .flatten();
        let (state, parent) = (fields.next(), fields.next());
        if let Some(parent) = parent.and_then(|pp| pp.parse::<u32>().ok())
            && state != Some("Z")
        {
            children.entry(parent).or_default().push(p);
        }
    }
    let mut found = Vec::new();
    let mut queue = vec![pid];
    while let Some(p) = queue.pop() {
        for &c in children.get(&p).into_iter().flatten() {
            found.push(c);
            queue.push(c);
        }
    }
    found
}

/// Runs `cmd` capturing its output; a non-zero exit is an error with its stderr.
pub fn output(cmd: &mut Command, what: &str) -> Result<String> {
    let Output {
        status,
        stdout,
        stderr,
    } = cmd
        .output()
        .with_context(|| format!("{what}: cannot start `{}`", display(cmd)))?;
    if !status.success() {
        bail!(
            "{what} failed ({status}): `{}`\n{}",
            display(cmd),
            String::from_utf8_lossy(&stderr).trim_end()
        );
    }
    String::from_utf8(stdout).with_context(|| format!("{what}: output is not UTF-8"))
}

/// The command line as a user would type it, for messages.
pub fn display(cmd: &Command) -> String {
    std::iter::once(cmd.get_program())
        .chain(cmd.get_args())
        .map(|s| s.to_string_lossy().into_owned())
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_command_past_its_limit_is_killed_with_its_descendants() {
        let started = Instant::now();
        let marker = std::env::temp_dir().join(format!("xtask-within-{}", std::process::id()));
        let mut cmd = Command::new("sh");
        cmd.args(["-c", "sleep 300 & echo $! > \"$0\"; wait"])
            .arg(&marker);
        let err = run_within(&mut cmd, "the sleeper", Duration::from_secs(1)).unwrap_err();
        assert!(err.to_string().contains("did not finish within"), "{err}");
        assert!(started.elapsed() < Duration::from_secs(60));
        let sleeper = std::fs::read_to_string(&marker).unwrap();
        let _ = std::fs::remove_file(&marker);
        // Killed and reaped by its new parent, or a zombie at most: not sleeping.
        let state =
            std::fs::read_to_string(format!("/proc/{}/stat", sleeper.trim())).unwrap_or_default();
        assert!(
            !state.contains(") S "),
            "the background sleep lives on: {state}"
        );
    }

    /// What a stopped xtask does to the processes below it: a background sleep goes at
    /// SIGTERM; a shell that ignores SIGTERM, and its sleep (which inherits that), at SIGKILL
    /// after the grace.
    #[test]
    fn stopping_a_tree_terminates_then_kills() {
        let marker = std::env::temp_dir().join(format!("xtask-stop-{}", std::process::id()));
        let script = "sh -c 'trap \"\" TERM; sleep 300' & sleep 300 & echo $! > \"$0\"; wait";
        let mut child = Command::new("sh")
            .args(["-c", script])
            .arg(&marker)
            .spawn()
            .unwrap();
        let started = Instant::now();
        let ready = || {
            descendants(child.id()).len() == 3
                && std::fs::read_to_string(&marker).is_ok_and(|s| s.ends_with('\n'))
        };
        while !ready() && started.elapsed() < Duration::from_secs(10) {
            std::thread::sleep(Duration::from_millis(20));
        }
        let sleeper = std::fs::read_to_string(&marker).unwrap();
        let _ = std::fs::remove_file(&marker);
        assert_eq!(
            descendants(child.id()).len(),
            3,
            "two shells' sleeps and a shell"
        );
        let started = Instant::now();
        stop_tree(child.id(), Duration::from_millis(500));
        let left = descendants(child.id());
        // The root is the caller's to stop (xtask exits; here, the test kills it).
        let _ = child.kill();
        let _ = child.wait();
        assert!(left.is_empty(), "left: {left:?}");
        assert!(
            started.elapsed() >= Duration::from_millis(500),
            "what ignores SIGTERM had its grace"
        );
        let state =
            std::fs::read_to_string(format!("/proc/{}/stat", sleeper.trim())).unwrap_or_default();
        assert!(
            !state.contains(") S "),
            "the background sleep lives on: {state}"
        );
    }

    #[test]
    fn a_command_within_its_limit_runs_as_run_does() {
        run_within(&mut Command::new("true"), "true", Duration::from_secs(60)).unwrap();
        let err =
            run_within(&mut Command::new("false"), "false", Duration::from_secs(60)).unwrap_err();
        assert!(err.to_string().contains("failed"), "{err}");
    }
}
