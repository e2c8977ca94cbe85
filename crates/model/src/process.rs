//! What a process is, as the process table knows it and the engine reads it.

use serde::{Deserialize, Serialize};

/// Appended to a value the kernel captured only the beginning of (an argv, a path longer than
/// the capture space): `proc.cmdline`, `proc.args`, `fd.name` and `evt.arg.*` end with it, so a
/// reader (and an equality in a rule) never takes a cut value for the whole one.
pub const TRUNCATED_MARKER: &str = "...[truncated]";

/// One of a process's standard descriptors: what the kernel said it is, and its name (a path,
/// a socket's ends) where the fd table or /proc knew it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stdio {
    pub kind: crate::fd::FdKind,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
}

fn no_stdio(s: &[Option<Stdio>; 3]) -> bool {
    s.iter().all(Option::is_none)
}

/// What is known about one process (thread group).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Process {
    pub pid: u32,
    pub ppid: u32,
    /// `task->comm`: the name the kernel shows, at most 15 bytes.
    pub comm: String,
    /// The executable's path: the file the kernel loaded, walked from its dentries (so never
    /// `/proc/self/exe` or `/dev/fd/N`), or the path given to exec where the kernel's walk is
    /// missing; from `/proc/PID/exe` for processes found at start-up.
    pub exe: String,
    /// The path the process gave to exec, as it gave it (made absolute against its working
    /// directory); empty for processes found at start-up.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub exe_requested: String,
    /// argv; `args[0]` is what the process was called as.
    pub args: Vec<String>,
    /// argv was longer than what the kernel captured: `args` is its beginning only.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub args_truncated: bool,
    /// Working directory, when known (from /proc at start, inherited at fork, updated by chdir).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cwd: Option<String>,
    pub uid: u32,
    pub gid: u32,
    pub euid: u32,
    /// Boot-time nanoseconds of the process's start (fork), or of the agent's start-up scan
    /// when it was already running and /proc did not tell.
    pub start_ts: u64,
    /// Boot-time nanoseconds of the last exec.
    #[serde(default)]
    pub exec_ts: u64,
    pub cgroup_id: u64,
    pub pid_ns: u32,
    pub mnt_ns: u32,
    /// Pid inside its own pid namespace.
    pub vpid: u32,
    /// The controlling terminal's device number, 0 for none (Falco's `proc.tty`).
    #[serde(default)]
    pub tty: u32,
    /// The audit login uid, `u32::MAX` when unset (Falco's `user.loginuid`, -1).
    #[serde(default = "unset_id")]
    pub loginuid: u32,
    /// The executable file's own name (`memfd:NAME` for fileless execution).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub exe_name: String,
    /// Its last exec loaded an interpreter for the file it was given (a `#!` script): `exe` is
    /// the interpreter, `exe_requested` the script.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub interpreted: bool,
    /// The executable is a 32-bit ELF: a 32-bit program, whose calls through the 32-bit
    /// entry are its own.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub exe_elf32: bool,
    /// Overlay layers of the executable, when it is on overlayfs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exe_layer: Option<ExeLayer>,
    /// The mount the executable was loaded from, when it is another than the process's root
    /// (in a container: a volume, not the image).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exe_mount: Option<ExeMount>,
    /// The cgroup v2 directory as `parent/name`, from the last exec (empty when unknown).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub cgroup: String,
    /// The executable is one of the node's own files: the exec happened in the node's mount
    /// namespace, so no container image (and nothing a container can write) supplied it.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub exe_from_host: bool,
    /// The environment its last exec gave it, as the kernel read it before it ran (none for
    /// processes found at start-up).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exec_env: Option<ExecEnv>,
    /// Learned from /proc at start-up rather than from an exec event.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub from_procfs: bool,
    /// Boot-time nanoseconds of the exit, once it happened.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exited_ts: Option<u64>,
    /// Descriptors 0, 1 and 2 (stdin, stdout, stderr) as the process started with them, read
    /// by the kernel at its exec (a fork's child has its parent's until it execs); `None`
    /// where the descriptor was closed, or for a process found in /proc at start-up.
    #[serde(default, skip_serializing_if = "no_stdio")]
    pub stdio: [Option<Stdio>; 3],
}

fn unset_id() -> u32 {
    u32::MAX
}

/// A multi-call binary's own name: it runs the applet argv[0] names, or argv[1] when argv[0]
/// is this name (`busybox sh`). Both pick their applet by a prefix of their name
/// (`busybox.static`, `busybox-x86_64` run as busybox).
fn is_multi_call(name: &str) -> bool {
    name.starts_with("busybox") || name.starts_with("toybox")
}

/// The last component of a path (the whole of one without a slash).
///
/// A byte loop: paths are short, and `rsplit` set up a searcher that cost four times as much
/// for the rule engine's prefilter, which takes the last component of every file opened.
#[inline]
pub fn base(path: &str) -> &str {
    match path.bytes().rposition(|b| b == b'/') {
        Some(i) => &path[i + 1..],
        None => path,
    }
}

impl Process {
    /// `comm` followed by the arguments after argv[0], as Falco's `proc.cmdline` shows it;
    /// ending with [`TRUNCATED_MARKER`] when argv was longer
    /// than what the kernel captured.
    pub fn cmdline(&self) -> String {
        let args = self.args.iter().skip(1);
        let marker = if self.args_truncated {
            TRUNCATED_MARKER
        } else {
            ""
        };
        // Sized first: grown argument by argument, it was copied again at every doubling.
        let len = args.clone().map(|a| 1 + a.len()).sum::<usize>();
        let mut s = String::with_capacity(self.comm.len() + len + marker.len());
        s.push_str(&self.comm);
        for a in args {
            s.push(' ');
            s.push_str(a);
        }
        s.push_str(marker);
        s
    }

    /// The executable is a memfd: fileless execution.
    pub fn exe_from_memfd(&self) -> bool {
        self.exe_name.starts_with("memfd:") || self.exe.starts_with("/memfd:")
    }

    /// The executable's file name (Falco's `proc.exe` is argv[0]; this is the path's base).
    pub fn exe_name(&self) -> &str {
        base(&self.exe)
    }

    /// The program the process runs, by a name it cannot choose by how it was started: the
    /// executable's file name (a symlink to bash, `exec -a`, or a rename with
    /// `prctl(PR_SET_NAME)` leave it `bash`); for a multi-call binary (busybox, toybox) the
    /// applet it runs, which it takes from argv[0], or from argv[1] when argv[0] is its own
    /// name (`busybox sh`); for a script, the script's own name, as `comm` has it (its
    /// executable is its interpreter). A copy or hard link of a program under another name
    /// is that name.
    pub fn program(&self) -> &str {
        if self.interpreted {
            return match base(&self.exe_requested) {
                "" => &self.comm,
                script => script,
            };
        }
        let exe = self.exe_name();
        if !is_multi_call(exe) {
            return exe;
        }
        match self.args.first().map(|a| base(a)) {
            Some(a0) if !a0.is_empty() && !is_multi_call(a0) => a0,
            _ => match self.args.get(1).map(|a| base(a)) {
                Some(applet) if !applet.is_empty() => applet,
                _ => exe,
            },
        }
    }
}

/// The overlayfs layers an executable has copies in.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExeLayer {
    /// Written or copied up after the container started (Falco's `proc.is_exe_upper_layer`).
    pub upper: bool,
    /// Came with the image.
    pub lower: bool,
}

/// An executable's mount when it is not the process's root mount: for a container, one of its
/// volumes (emptyDir, hostPath, tmpfs, configMap...) rather than its image, whatever the
/// storage driver; on the node, any other mount (/usr on its own partition, a tmpfs).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExeMount {
    /// The mount or its file system is read-only (a configMap, a `readOnly` volume).
    pub read_only: bool,
}

/// The environment exec gave a program, as the kernel read it before the program ran: what a
/// process does to its own environment afterwards (a preloaded library erasing its entry)
/// does not change it, nor does the process being gone when the event is judged.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExecEnv {
    /// Every entry was read, so `ld_preload` is the whole truth; false when there were more
    /// (or longer) entries than the kernel reads, or a page could not be read.
    pub complete: bool,
    /// The value of the last `LD_PRELOAD` entry, the one the dynamic loader uses; ends with
    /// [`TRUNCATED_MARKER`] when longer than the kernel keeps (255 bytes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ld_preload: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::Process;

    fn process(exe: &str, args: &[&str], interpreted: bool, requested: &str) -> Process {
        Process {
            comm: "comm".into(),
            exe: exe.into(),
            exe_requested: requested.into(),
            args: args.iter().map(|a| a.to_string()).collect(),
            interpreted,
            ..Default::default()
        }
    }

    #[test]
    fn the_program_is_the_executable_whatever_it_was_called() {
        // A symlink named otherwise, `exec -a`: argv[0] and comm say what the caller chose.
        let p = process("/usr/bin/bash", &["/tmp/x"], false, "/tmp/x");
        assert_eq!(p.program(), "bash");
        assert_eq!(
            process("/usr/bin/bash", &["-bash"], false, "").program(),
            "bash"
        );
    }

    #[test]
    fn a_multi_call_binary_runs_the_applet_its_arguments_name() {
        assert_eq!(
            process("/bin/busybox", &["busybox", "sh"], false, "").program(),
            "sh"
        );
        assert_eq!(
            process("/bin/busybox", &["/bin/sh", "-c", "x"], false, "").program(),
            "sh"
        );
        assert_eq!(
            process(
                "/bin/busybox.static",
                &["/bin/busybox.static", "ash"],
                false,
                ""
            )
            .program(),
            "ash"
        );
        assert_eq!(
            process("/usr/bin/toybox", &["toybox", "sh"], false, "").program(),
            "sh"
        );
        // Its own name alone: busybox itself (it prints its applets).
        assert_eq!(
            process("/bin/busybox", &["busybox"], false, "").program(),
            "busybox"
        );
        assert_eq!(process("/bin/busybox", &[], false, "").program(), "busybox");
    }

    #[test]
    fn a_script_is_its_own_program_not_its_interpreter() {
        let p = process(
            "/usr/bin/bash",
            &["/bin/bash", "/opt/run.sh"],
            true,
            "/opt/run.sh",
        );
        assert_eq!(p.program(), "run.sh");
        // argv made to look like a script's does not make one: the kernel says what ran.
        let p = process(
            "/usr/bin/bash",
            &["/bin/bash", "-s", "/tmp/x"],
            false,
            "/tmp/x",
        );
        assert_eq!(p.program(), "bash");
        // No path given to exec known: comm.
        assert_eq!(process("/usr/bin/bash", &[], true, "").program(), "comm");
    }
}
