use std::borrow::Cow;

use super::*;
use osprey_model::event::{Arg, Exec, Exit, Fork, Syscall};

fn ev(tgid: u32, ts: u64, kind: EventKind) -> Event {
    Event {
        ts,
        time: ts,
        tgid,
        tid: tgid,
        uid: 1000,
        gid: 1000,
        euid: 1000,
        egid: 1000,
        cgroup_id: 1,
        pid_ns: 1,
        mnt_ns: 1,
        vpid: tgid,
        comm: "sh".into(),
        cap_effective: 0,
        cap_permitted: 0,
        kind,
    }
}

fn fork(child: u32) -> EventKind {
    EventKind::Fork(Fork {
        child_tid: child,
        child_tgid: child,
        is_thread: false,
        child_vpid: 0,
        child_pid_ns: 0,
    })
}

fn thread(tid: u32, tgid: u32) -> EventKind {
    EventKind::Fork(Fork {
        child_tid: tid,
        child_tgid: tgid,
        is_thread: true,
        child_vpid: 0,
        child_pid_ns: 0,
    })
}

fn getpid() -> EventKind {
    EventKind::Syscall(Syscall {
        name: Cow::Borrowed("getpid"),
        nr: 39,
        ret: 1,
        args: vec![],
        truncated: false,
        ia32: false,
        ia32_from_64bit: false,
        latency_ns: 0,
        file: None,
        io_uring: None,
    })
}

fn exec(path: &str, args: &[&str]) -> EventKind {
    EventKind::Exec(Exec {
        filename: path.into(),
        args: args.iter().map(|s| s.to_string()).collect(),
        args_truncated: false,
        ..Default::default()
    })
}

fn table() -> ProcessTable {
    ProcessTable::new(TableConfig {
        capacity: 4,
        max_ancestors: 8,
        exit_grace_ns: 100,
        host_mnt_ns: 1,
        fds: FdConfig {
            proc_root: "/nonexistent".into(),
            ..FdConfig::default()
        },
    })
}

fn exec_in(path: &str, cgroup: &str, mnt_ns: u32) -> Event {
    let mut e = ev(
        20,
        1,
        EventKind::Exec(Exec {
            filename: path.into(),
            cgroup: cgroup.into(),
            ..Default::default()
        }),
    );
    e.mnt_ns = mnt_ns;
    e
}

#[test]
fn an_executable_is_the_nodes_own_by_where_it_was_exec_d() {
    let from_host = |e| {
        let mut t = table();
        t.observe(e);
        t.get(20).unwrap().exe_from_host
    };
    // In the node's mount namespace.
    assert!(from_host(exec_in("/usr/bin/runc", "", 1)));
    // A service sandboxed in a mount namespace of its own, in a host cgroup.
    assert!(from_host(exec_in(
        "/usr/lib/systemd/systemd-logind",
        "system.slice/systemd-logind.service",
        7
    )));
    // A container's process: its own namespace, a container cgroup.
    let id = "a".repeat(64);
    assert!(!from_host(exec_in(
        "/usr/bin/runc",
        &format!("machine.slice/libpod-{id}.scope"),
        7
    )));
}

#[test]
fn fork_exec_exit_lifecycle() {
    let mut t = table();
    let preloaded = osprey_model::event::ExecEnv {
        complete: true,
        ld_preload: Some("/k.so".into()),
    };
    let mut sh = exec("/bin/sh", &["sh"]);
    if let EventKind::Exec(e) = &mut sh {
        e.env = Some(preloaded.clone());
    }
    t.observe(ev(10, 1, sh));
    t.observe(ev(10, 2, fork(11)));
    let child = t.get(11).unwrap();
    assert_eq!(child.ppid, 10);
    assert_eq!(
        child.exe, "/bin/sh",
        "a forked child runs its parent's image"
    );
    assert_eq!(
        child.exec_env.as_ref(),
        Some(&preloaded),
        "and its environment"
    );

    let mut e = ev(11, 3, exec("/usr/bin/cat", &["cat", "/etc/shadow"]));
    e.comm = "cat".into();
    let en = t.observe(e);
    let p = en.process.unwrap();
    assert_eq!(p.exec_env, None, "an exec replaces the environment");
    assert_eq!(p.exe, "/usr/bin/cat");
    assert_eq!(p.cmdline(), "cat /etc/shadow");
    assert_eq!(en.ancestors[0].pid, 10);

    // An event queued behind the exit still finds the process during the grace period.
    t.observe(ev(11, 4, EventKind::Exit(Exit { status: 0 })));
    assert!(t.get(11).unwrap().exited_ts.is_some());
    t.observe(ev(10, 50, fork(12)));
    assert!(t.get(11).is_some());
    t.observe(ev(10, 200, fork(13)));
    assert!(t.get(11).is_none(), "gone after the grace period");
}

/// A 32-bit program stays one in its forked children, and stops being one at the next exec of
/// a 64-bit program.
#[test]
fn the_executables_class_follows_exec_and_fork() {
    let mut t = table();
    let mut old = exec("/opt/old/app32", &["app32"]);
    if let EventKind::Exec(e) = &mut old {
        e.elf32 = true;
    }
    t.observe(ev(10, 1, old));
    assert!(t.get(10).unwrap().exe_elf32);
    t.observe(ev(10, 2, fork(11)));
    assert!(
        t.get(11).unwrap().exe_elf32,
        "a forked child runs its parent's image"
    );
    t.observe(ev(11, 3, exec("/bin/sh", &["sh"])));
    assert!(!t.get(11).unwrap().exe_elf32);
    assert!(t.get(10).unwrap().exe_elf32);
}

#[test]
fn ancestors_are_reused_until_the_table_changes() {
    let mut t = table();
    t.observe(ev(20, 1, exec("/bin/sh", &["sh"])));
    t.observe(ev(20, 2, fork(21)));
    t.observe(ev(21, 3, exec("/usr/bin/cat", &["cat"])));
    let a = t.observe(ev(21, 4, thread(22, 21)));
    let b = t.observe(ev(21, 5, thread(23, 21)));
    assert!(
        Arc::ptr_eq(&a.ancestors, &b.ancestors),
        "nothing changed: the same chain"
    );
    assert_eq!(b.ancestors[0].exe, "/bin/sh");
    // The parent execs: the child's next event sees the parent's new image.
    t.observe(ev(20, 6, exec("/usr/bin/python3", &["python3"])));
    let c = t.observe(ev(21, 7, thread(24, 21)));
    assert_eq!(c.ancestors[0].exe, "/usr/bin/python3");
    // The parent is gone from the table: no ancestor left.
    t.observe(ev(20, 8, EventKind::Exit(Exit { status: 0 })));
    t.observe(ev(30, 500, exec("/bin/true", &["true"])));
    let d = t.observe(ev(21, 501, thread(25, 21)));
    assert!(d.ancestors.is_empty(), "{:?}", d.ancestors);
}

#[test]
fn short_lived_process_keeps_exe_and_args() {
    let mut t = table();
    t.observe(ev(20, 1, fork(21)));
    t.observe(ev(21, 2, exec("/bin/true", &["true", "--x"])));
    let en = t.observe(ev(21, 3, EventKind::Exit(Exit { status: 0 })));
    let p = en.process.unwrap();
    assert_eq!(p.exe, "/bin/true");
    assert_eq!(p.args, vec!["true", "--x"]);
}

#[test]
fn bounded_with_eviction_count() {
    let mut t = table();
    for pid in 100..110 {
        t.observe(ev(pid, pid as u64, exec("/bin/x", &["x"])));
    }
    let s = t.stats();
    assert_eq!(s.size, 4);
    assert_eq!(s.evictions, 6);
    assert_eq!(s.misses, 10);
}

#[test]
fn threads_are_not_processes() {
    let mut t = table();
    t.observe(ev(30, 1, thread(31, 30)));
    assert!(t.get(31).is_none());
}

#[test]
fn relative_paths_resolve_against_cwd() {
    let mut t = table();
    t.observe(ev(40, 1, exec("/bin/sh", &["sh"])));
    let chdir = EventKind::Syscall(Syscall {
        name: Cow::Borrowed("chdir"),
        nr: 80,
        ret: 0,
        args: vec![Arg {
            name: "filename".into(),
            value: ArgValue::Path {
                raw: "/tmp".into(),
                resolved: Some("/tmp".into()),
            },
        }],
        truncated: false,
        ia32: false,
        ia32_from_64bit: false,
        latency_ns: 0,
        file: None,
        io_uring: None,
    });
    // chdir's path is named "filename" in the kernel; the table looks at the first path.
    t.observe(ev(40, 2, chdir));
    assert_eq!(t.get(40).unwrap().cwd.as_deref(), Some("/tmp"));
    let open = EventKind::Syscall(Syscall {
        name: Cow::Borrowed("openat"),
        nr: 257,
        ret: 3,
        args: vec![
            Arg {
                name: "dfd".into(),
                value: ArgValue::Fd(-100),
            },
            Arg {
                name: "filename".into(),
                value: ArgValue::Path {
                    raw: "../etc/shadow".into(),
                    resolved: None,
                },
            },
        ],
        truncated: false,
        ia32: false,
        ia32_from_64bit: false,
        latency_ns: 0,
        file: None,
        io_uring: None,
    });
    let en = t.observe(ev(40, 3, open));
    let EventKind::Syscall(sc) = &en.event.kind else {
        panic!()
    };
    assert_eq!(
        sc.arg("filename"),
        Some(&ArgValue::Path {
            raw: "../etc/shadow".into(),
            resolved: Some("/etc/shadow".into())
        })
    );
}

#[test]
fn bootstraps_from_proc() {
    let mut t = ProcessTable::new(TableConfig::default());
    let n = t.bootstrap(Path::new("/proc")).unwrap();
    assert!(n > 0);
    let me = t.get(std::process::id()).expect("the test process itself");
    assert!(me.from_procfs);
    assert!(!me.exe.is_empty());
    assert!(!me.args.is_empty());
    assert!(me.cwd.is_some());
    assert!(me.pid_ns != 0 && me.mnt_ns != 0);
    assert!(t.get(me.ppid).is_some(), "the parent is known too");
}

#[test]
fn paths_relative_to_a_directory_fd_resolve_through_the_fd_table() {
    let mut t = table();
    t.observe(ev(41, 1, exec("/bin/sh", &["sh"])));
    let openat = |ret: i64, dfd: i64, raw: &str, flags: u64| {
        EventKind::Syscall(Syscall {
            name: Cow::Borrowed("openat"),
            nr: 257,
            ret,
            args: vec![
                Arg {
                    name: "dfd".into(),
                    value: ArgValue::Fd(dfd),
                },
                Arg {
                    name: "filename".into(),
                    value: ArgValue::Path {
                        raw: raw.into(),
                        resolved: raw.starts_with('/').then(|| raw.to_string()),
                    },
                },
                Arg {
                    name: "flags".into(),
                    value: ArgValue::Flags {
                        raw: flags,
                        names: vec![],
                    },
                },
            ],
            truncated: false,
            ia32: false,
            ia32_from_64bit: false,
            latency_ns: 0,
            file: None,
            io_uring: None,
        })
    };
    // open("/etc", O_DIRECTORY) = 3, then openat(3, "shadow").
    t.observe(ev(41, 2, openat(3, -100, "/etc", 0o200_000)));
    let en = t.observe(ev(41, 3, openat(4, 3, "shadow", 0)));
    let EventKind::Syscall(sc) = &en.event.kind else {
        panic!()
    };
    assert_eq!(
        sc.arg("filename"),
        Some(&ArgValue::Path {
            raw: "shadow".into(),
            resolved: Some("/etc/shadow".into())
        })
    );
    assert_eq!(en.fd.as_ref().unwrap().path.as_ref(), "/etc/shadow");
}

#[test]
fn syscall_records_take_the_pid_view_from_the_table() {
    let mut t = table();
    t.observe(ev(20, 1, exec("/usr/bin/runc", &["runc"])));
    // The runtime's child in a new pid namespace: vpid 1 there, whatever the parent's view.
    t.observe(ev(
        20,
        2,
        EventKind::Fork(Fork {
            child_tid: 21,
            child_tgid: 21,
            is_thread: false,
            child_vpid: 1,
            child_pid_ns: 77,
        }),
    ));
    let en = t.observe(syscall_record(21, 3));
    assert_eq!((en.event.vpid, en.event.pid_ns), (1, 77));
}

/// A syscall record of `tgid` at `ts`: no pid-namespace view (the kernel leaves it to the
/// table).
fn syscall_record(tgid: u32, ts: u64) -> Event {
    let mut e = ev(tgid, ts, getpid());
    e.vpid = 0;
    e.pid_ns = 0;
    e
}

/// A fake `/proc` holding one process, removed when dropped.
struct FakeProc(std::path::PathBuf);

impl FakeProc {
    /// `/proc/PID` for `pid`: its `NSpid` ending in `vpid`, pid namespace `pid_ns`, and a start
    /// time of `start_s` seconds after boot.
    fn new(name: &str, pid: u32, vpid: u32, pid_ns: u32, start_s: u64) -> Self {
        let dir = std::env::temp_dir().join(format!("osprey-{name}-{}", std::process::id()));
        let pid_dir = dir.join(pid.to_string());
        std::fs::create_dir_all(pid_dir.join("ns")).unwrap();
        std::fs::write(
            pid_dir.join("status"),
            format!("Name:\tsh\nNSpid:\t{pid}\t{vpid}\n"),
        )
        .unwrap();
        // Fields 3 to 21, then the start time in clock ticks (field 22); the name has a space
        // and a ')'.
        let start_ticks = start_s * proc_fs::clock_ticks_per_sec();
        std::fs::write(
            pid_dir.join("stat"),
            format!(
                "{pid} (a) b) S 1 {pid} {pid} 0 -1 4194560 0 0 0 0 0 0 0 0 20 0 1 0 {start_ticks} 0 0\n"
            ),
        )
        .unwrap();
        let _ = std::fs::remove_file(pid_dir.join("ns/pid"));
        std::os::unix::fs::symlink(format!("pid:[{pid_ns}]"), pid_dir.join("ns/pid")).unwrap();
        FakeProc(dir)
    }

    /// A table reading this `/proc`.
    fn table(&self) -> ProcessTable {
        let mut t = table();
        t.cfg.fds.proc_root = self.0.clone();
        t
    }
}

impl Drop for FakeProc {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[test]
fn a_process_first_seen_in_a_syscall_record_has_its_view_from_proc() {
    // Started 1 s after boot, the record 2 s after boot.
    let proc = FakeProc::new("pidview", 4242, 9, 4_026_532_999, 1);
    let en = proc.table().observe(syscall_record(4242, 2_000_000_000));
    assert_eq!((en.event.vpid, en.event.pid_ns), (9, 4_026_532_999u32));
    assert_eq!(en.process.map(|p| p.vpid), Some(9));
}

#[test]
fn a_pid_reused_before_the_lookup_lends_no_view() {
    // The record's process exited and another took its pid before the table looked: the one
    // in /proc started after the record, and its view is not the record's.
    let proc = FakeProc::new("pidreuse", 4243, 9, 4_026_532_999, 3);
    let en = proc.table().observe(syscall_record(4243, 2_000_000_000));
    assert_eq!((en.event.vpid, en.event.pid_ns), (0, 0));
}

#[test]
fn a_fork_whose_view_read_failed_takes_the_child_s_from_proc() {
    let proc = FakeProc::new("forkview", 4244, 1, 4_026_533_000, 1);
    let mut t = proc.table();
    t.observe(ev(30, 1_000_000_000, exec("/usr/bin/runc", &["runc"])));
    t.observe(ev(
        30,
        2_000_000_000,
        EventKind::Fork(Fork {
            child_tid: 4244,
            child_tgid: 4244,
            is_thread: false,
            child_vpid: 0,
            child_pid_ns: 0,
        }),
    ));
    // Gone from /proc by the child's first syscall record: the view came from the fork.
    drop(proc);
    let en = t.observe(syscall_record(4244, 2_500_000_000));
    assert_eq!((en.event.vpid, en.event.pid_ns), (1, 4_026_533_000u32));
}
