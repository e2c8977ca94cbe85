//! Reading a process's state from procfs, for the start-up bootstrap.

use std::{fs, os::unix::fs::MetadataExt, path::Path};

use osprey_model::process::base;

use super::Process;

/// Wall-clock nanoseconds since the epoch at which CLOCK_BOOTTIME was zero. Adding it to a
/// kernel `bpf_ktime_get_boot_ns()` timestamp gives wall time.
pub fn boot_time_ns() -> u64 {
    fn now(clock: libc::clockid_t) -> u64 {
        let mut ts = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: a valid clock id and a valid out pointer.
        unsafe { libc::clock_gettime(clock, &mut ts) };
        ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
    }
    now(libc::CLOCK_REALTIME).saturating_sub(now(libc::CLOCK_BOOTTIME))
}

/// Nanoseconds since boot now (CLOCK_BOOTTIME), the clock of event timestamps.
pub fn boot_clock_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: a valid clock id and a valid out pointer.
    unsafe { libc::clock_gettime(libc::CLOCK_BOOTTIME, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

pub(super) fn ns_inode(proc_root: &Path, pid: u32, ns: &str) -> u32 {
    // The link reads "pid:[4026531836]".
    fs::read_link(proc_root.join(format!("{pid}/ns/{ns}")))
        .ok()
        .and_then(|l| {
            let s = l.to_string_lossy().into_owned();
            let start = s.find('[')? + 1;
            let end = s.find(']')?;
            s[start..end].parse().ok()
        })
        .unwrap_or(0)
}

/// The process's id in its own pid namespace and that namespace's inode number, for a
/// process the table learned of from a record that carries neither (a syscall record, or a
/// fork whose read of the child failed); zeros when it is gone or unreadable, or when the
/// process now at `pid` started after `seen_ns` (boot-clock ns, the record's time): the one
/// the record was about exited and its pid was reused before the lookup. (`/proc`'s start
/// time is in clock ticks, so a reuse within the same tick goes unseen.)
pub(super) fn pid_view(proc_root: &Path, pid: u32, seen_ns: u64) -> (u32, u32) {
    if start_ns(proc_root, pid).is_some_and(|start| start > seen_ns) {
        return (0, 0);
    }
    let vpid = fs::read_to_string(proc_root.join(format!("{pid}/status")))
        .ok()
        .and_then(|s| {
            let line = s.lines().find_map(|l| l.strip_prefix("NSpid:"))?;
            line.split_whitespace().last()?.parse().ok()
        })
        .unwrap_or(0);
    (vpid, ns_inode(proc_root, pid, "pid"))
}

/// When the process at `pid` started (boot-clock ns, rounded down to a clock tick), from
/// field 22 of `/proc/PID/stat`.
fn start_ns(proc_root: &Path, pid: u32) -> Option<u64> {
    let stat = fs::read_to_string(proc_root.join(format!("{pid}/stat"))).ok()?;
    stat_start_ns(&stat)
}

/// Field 22 (start time, in clock ticks since boot) of a `/proc/PID/stat` line, in ns. The
/// name (field 2) is in parentheses and may hold spaces and parentheses: fields are counted
/// from the last ')'.
fn stat_start_ns(stat: &str) -> Option<u64> {
    let rest = &stat[stat.rfind(')')? + 1..];
    // rest's first field is field 3 (state).
    let ticks: u64 = rest.split_whitespace().nth(19)?.parse().ok()?;
    Some(ticks * (1_000_000_000 / clock_ticks_per_sec()))
}

pub(super) fn clock_ticks_per_sec() -> u64 {
    // SAFETY: sysconf has no preconditions.
    unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64
}

/// The inode of the process's cgroup v2 directory, which is what `bpf_get_current_cgroup_id`
/// returns. Hybrid hosts mount v2 at /sys/fs/cgroup/unified, pure v2 hosts at /sys/fs/cgroup.
fn cgroup_id(proc_root: &Path, pid: u32) -> u64 {
    let Ok(text) = fs::read_to_string(proc_root.join(format!("{pid}/cgroup"))) else {
        return 0;
    };
    let Some(path) = text.lines().find_map(|l| l.strip_prefix("0::")) else {
        return 0;
    };
    for mount in ["/sys/fs/cgroup/unified", "/sys/fs/cgroup"] {
        let dir = format!("{mount}{path}");
        if let Ok(md) = fs::metadata(&dir) {
            // On a v1 host /sys/fs/cgroup is a tmpfs of controllers; only accept cgroup2.
            if is_cgroup2(mount) {
                return md.ino();
            }
        }
    }
    0
}

fn is_cgroup2(mount: &str) -> bool {
    let Ok(c) = std::ffi::CString::new(mount) else {
        return false;
    };
    // SAFETY: a valid C string and an out struct.
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    let r = unsafe { libc::statfs(c.as_ptr(), &mut st) };
    // CGROUP2_SUPER_MAGIC
    r == 0 && st.f_type as u64 == 0x6367_7270
}

/// Whether `exe` (`/proc/PID/exe`) is a 32-bit ELF, from its header; false when unreadable
/// (a process that exited, a kernel thread).
fn elf32(exe: &Path) -> bool {
    use std::io::Read;
    let mut head = [0u8; 5];
    fs::File::open(exe)
        .and_then(|mut f| f.read_exact(&mut head))
        .is_ok_and(|()| head[..4] == *b"\x7fELF" && head[4] == 1)
}

/// Reads one process; `None` when it vanished meanwhile or is a kernel thread we can't read.
pub fn read_process(proc_root: &Path, pid: u32, _boot_wall_ns: u64) -> Option<Process> {
    let dir = proc_root.join(pid.to_string());
    let stat = fs::read_to_string(dir.join("stat")).ok()?;
    // comm is in parentheses and may contain spaces or parentheses: split at the last ')'.
    let close = stat.rfind(')')?;
    let comm = stat[stat.find('(')? + 1..close].to_string();
    let rest: Vec<&str> = stat[close + 1..].split_whitespace().collect();
    // rest[0] is field 3 (state).
    let ppid: u32 = rest.get(1)?.parse().ok()?;
    let tty: u32 = rest.get(4)?.parse::<i64>().ok()? as u32;
    let start_ts = stat_start_ns(&stat)?;

    let args: Vec<String> = fs::read(dir.join("cmdline"))
        .map(|b| {
            b.split(|c| *c == 0)
                .filter(|s| !s.is_empty())
                .map(|s| String::from_utf8_lossy(s).into_owned())
                .collect()
        })
        .unwrap_or_default();
    let exe = fs::read_link(dir.join("exe"))
        .map(|p| {
            let s = p.to_string_lossy().into_owned();
            s.strip_suffix(" (deleted)")
                .map(str::to_string)
                .unwrap_or(s)
        })
        .unwrap_or_default();
    let cwd = fs::read_link(dir.join("cwd"))
        .ok()
        .map(|p| p.to_string_lossy().into_owned());

    let status = fs::read_to_string(dir.join("status")).unwrap_or_default();
    let ids = |key: &str| -> Vec<u32> {
        status
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .map(|v| {
                v.split_whitespace()
                    .filter_map(|x| x.parse().ok())
                    .collect()
            })
            .unwrap_or_default()
    };
    let uids = ids("Uid:");
    let gids = ids("Gid:");
    let nspid = ids("NSpid:");
    let loginuid = fs::read_to_string(dir.join("loginuid"))
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(u32::MAX);

    let exe_name = base(&exe).to_string();
    // No exec was seen, so the kernel's word on an interpreter is missing: a script's argv is
    // `interpreter script...` and its comm the script's name (cut to 15 bytes), not the
    // interpreter's.
    let interpreted = comm != exe_name
        && args
            .get(1)
            .is_some_and(|a| base(a).starts_with(comm.as_str()));
    Some(Process {
        exe_name,
        interpreted,
        exe_elf32: elf32(&dir.join("exe")),
        pid,
        ppid,
        comm,
        exe,
        exe_requested: String::new(),
        exe_from_host: false,
        args,
        args_truncated: false,
        cwd,
        uid: uids.first().copied().unwrap_or(0),
        gid: gids.first().copied().unwrap_or(0),
        euid: uids.get(1).copied().unwrap_or(0),
        start_ts,
        exec_ts: start_ts,
        cgroup_id: cgroup_id(proc_root, pid),
        pid_ns: ns_inode(proc_root, pid, "pid"),
        mnt_ns: ns_inode(proc_root, pid, "mnt"),
        vpid: nspid.last().copied().unwrap_or(pid),
        tty,
        loginuid,
        exe_layer: None,
        exe_mount: None,
        exec_env: None,
        cgroup: String::new(),
        from_procfs: true,
        exited_ts: None,
        stdio: Default::default(),
    })
}

#[cfg(test)]
mod tests {
    use std::{os::unix::fs::PermissionsExt, path::Path, process::Command, time::Duration};

    use super::elf32;

    /// Runs `cmd`, waits (bounded) until its comm is `comm` and its argv is in place (exec
    /// sets the name before the new image's argv), and reads it from /proc.
    fn found(cmd: &mut Command, comm: &str) -> super::Process {
        let mut child = cmd.spawn().expect("spawning");
        let pid = child.id();
        for _ in 0..200 {
            let now = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
            let argv = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            if now.trim_end() == comm && argv.split(|&b| b == 0).nth(1).is_some() {
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let p = super::read_process(Path::new("/proc"), pid, 0);
        let _ = child.kill();
        let _ = child.wait();
        p.expect("the process in /proc")
    }

    #[test]
    fn a_script_found_running_is_told_from_its_interpreter() {
        let dir = std::env::temp_dir().join(format!("osprey-procfs-script-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let script = dir.join("job.sh");
        std::fs::write(&script, "#!/bin/sh\nwhile :; do sleep 1; done\n").unwrap();
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
        let p = found(&mut Command::new(&script), "job.sh");
        assert!(p.interpreted, "{p:?}");
        assert_eq!(p.program(), "job.sh");
        // The same interpreter run by its own name, the script its argument: a shell.
        let p = found(Command::new("/bin/sh").arg(&script), "sh");
        assert!(!p.interpreted, "{p:?}");
        assert!(!p.exe_elf32, "/bin/sh is a 64-bit program: {p:?}");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_32_bit_elf_is_told_by_its_header() {
        let dir = std::env::temp_dir().join(format!("osprey-procfs-elf-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let (e32, e64, text) = (dir.join("e32"), dir.join("e64"), dir.join("text"));
        std::fs::write(&e32, b"\x7fELF\x01\x01\x01\0").unwrap();
        std::fs::write(&e64, b"\x7fELF\x02\x01\x01\0").unwrap();
        std::fs::write(&text, b"#!/bin/sh\n").unwrap();
        assert!(elf32(&e32));
        assert!(!elf32(&e64));
        assert!(!elf32(&text));
        assert!(!elf32(&dir.join("gone")));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
