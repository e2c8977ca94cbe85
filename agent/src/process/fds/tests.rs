use std::{borrow::Cow, net::Ipv4Addr};

use super::*;
use osprey_model::event::{Arg, Exec, Fork};

const PID: u32 = 123;

fn sc(name: &'static str, ret: i64, args: Vec<(&'static str, ArgValue)>) -> Event {
    Event {
        ts: 1,
        time: 1,
        tgid: PID,
        tid: PID,
        uid: 0,
        gid: 0,
        euid: 0,
        egid: 0,
        cgroup_id: 1,
        pid_ns: 1,
        mnt_ns: 1,
        vpid: PID,
        comm: "t".into(),
        cap_effective: 0,
        cap_permitted: 0,
        kind: EventKind::Syscall(Syscall {
            name: Cow::Borrowed(name),
            nr: 0,
            ret,
            args: args
                .into_iter()
                .map(|(n, value)| Arg {
                    name: Cow::Borrowed(n),
                    value,
                })
                .collect(),
            truncated: false,
            ia32: false,
            ia32_from_64bit: false,
            latency_ns: 0,
            file: None,
            io_uring: None,
        }),
    }
}

fn with_kind(kind: EventKind) -> Event {
    Event {
        kind,
        ..sc("close", 0, vec![])
    }
}

fn flags(raw: u64) -> ArgValue {
    ArgValue::Flags { raw, names: vec![] }
}

fn open(path: &str, fd: i64, oflags: u64) -> Event {
    sc(
        "openat",
        fd,
        vec![
            ("dfd", ArgValue::Fd(-100)),
            (
                "filename",
                ArgValue::Path {
                    raw: path.into(),
                    resolved: Some(path.into()),
                },
            ),
            ("flags", flags(oflags)),
            ("mode", ArgValue::Mode(0)),
        ],
    )
}

fn tcp_socket(fd: i64) -> Event {
    sc(
        "socket",
        fd,
        vec![
            (
                "family",
                ArgValue::Enum {
                    raw: 2,
                    name: Some("AF_INET".into()),
                },
            ),
            ("type", flags(1)),
            ("protocol", ArgValue::Int(0)),
        ],
    )
}

fn connect(fd: i64, port: u16) -> Event {
    sc(
        "connect",
        0,
        vec![
            ("fd", ArgValue::Fd(fd)),
            (
                "uservaddr",
                ArgValue::SockAddr(SockAddr::Inet {
                    ip: Ipv4Addr::new(10, 0, 0, 5).into(),
                    port,
                }),
            ),
            ("addrlen", ArgValue::Int(16)),
        ],
    )
}

fn dup2(old: i64, new: i64) -> Event {
    sc(
        "dup2",
        new,
        vec![("oldfd", ArgValue::Fd(old)), ("newfd", ArgValue::Fd(new))],
    )
}

/// `e` with the file the kernel found at its exit: behind the descriptor it returned
/// (`Returned`) or behind its argument (`FdArg`).
fn with_file(mut e: Event, of: KernelFileOf, path: &str, fs_magic: u32, file_type: u8) -> Event {
    if let EventKind::Syscall(sc) = &mut e.kind {
        sc.file = Some(KernelFile {
            of,
            path: path.into(),
            fs_magic,
            ino: 77,
            deleted: false,
            truncated: false,
            outside_root: false,
            file_type,
        });
    }
    e
}

/// `dup2(old, new)` whose record carries the file the kernel found behind `new` at its exit.
fn dup2_with_file(old: i64, new: i64, path: &str, fs_magic: u32, file_type: u8) -> Event {
    with_file(
        dup2(old, new),
        KernelFileOf::Returned,
        path,
        fs_magic,
        file_type,
    )
}

const EXT4: u32 = 0xef53;

fn close(fd: i64) -> Event {
    sc("close", 0, vec![("fd", ArgValue::Fd(fd))])
}

/// A table whose /proc is a directory of this test's own (empty unless the test fills it).
fn table(root: &Path) -> FdTable {
    FdTable::new(FdConfig {
        proc_root: root.to_path_buf(),
        ..FdConfig::default()
    })
}

struct FakeProc(PathBuf);

impl FakeProc {
    fn new(name: &str) -> Self {
        let p = std::env::temp_dir().join(format!("osprey-fds-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(p.join(format!("{PID}/fd"))).unwrap();
        std::fs::create_dir_all(p.join(format!("{PID}/net"))).unwrap();
        std::fs::create_dir_all(p.join(format!("{PID}/ns"))).unwrap();
        std::os::unix::fs::symlink("net:[4026531840]", p.join(format!("{PID}/ns/net"))).unwrap();
        FakeProc(p)
    }

    fn fd(&self, fd: i64, target: &str) {
        let link = self.0.join(format!("{PID}/fd/{fd}"));
        let _ = std::fs::remove_file(&link);
        std::os::unix::fs::symlink(target, link).unwrap();
    }

    fn net(&self, file: &str, text: &str) {
        std::fs::write(self.0.join(format!("{PID}/net/{file}")), text).unwrap();
    }
}

impl Drop for FakeProc {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// `/proc/PID/net/tcp` with one connection, socket inode 999: 127.0.0.1:8080 to
/// 10.0.0.5:4444.
const TCP_999: &str = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n   \
     0: 0100007F:1F90 0500000A:115C 01 00000000:00000000 00:00000000 00000000     0        0 999 1 0\n";

#[test]
fn a_socket_duplicated_onto_stdin_is_a_socket() {
    let root = FakeProc::new("sock");
    let mut t = table(&root.0);
    t.observe(&tcp_socket(3));
    let e = t.observe(&connect(3, 4444)).unwrap();
    assert_eq!(e.kind, FdKind::Ipv4);
    assert_eq!(
        e.l4proto,
        Some(L4Proto::Tcp),
        "connect knows socket()'s protocol"
    );
    let e = t.observe(&dup2(3, 0)).expect("dup2 carries the old fd");
    assert_eq!(e.num, 3);
    assert_eq!(e.kind, FdKind::Ipv4);
    assert_eq!(e.remote, Some((Ipv4Addr::new(10, 0, 0, 5).into(), 4444)));
    assert_eq!(e.name(), "10.0.0.5:4444");
    let zero = t.get(PID, 0).unwrap();
    assert_eq!(zero.kind, FdKind::Ipv4, "fd 0 is the socket now");
    assert!(!zero.cloexec);
}

#[test]
fn a_socket_whose_family_proc_cannot_tell_stays_what_the_table_knows() {
    // The process exits between the agent reading /proc/PID/fd/1 (a socket) and reading its
    // net tables (gone, or without the inode): /proc says "a socket", the table knows it is the
    // TCP connection made on fd 3. Taking /proc's answer made a reverse shell that exits right
    // after its dup2 read as fd.type=socket (CI, evasion_pipe_onto_stdout_is_not_a_reverse_shell).
    let root = FakeProc::new("sockrace");
    let mut t = table(&root.0);
    t.observe(&tcp_socket(3));
    t.observe(&connect(3, 4444));
    root.fd(1, "socket:[4242]");
    let e = t.observe(&dup2(3, 1)).unwrap();
    assert_eq!(e.kind, FdKind::Ipv4);
    let one = t.get(PID, 1).unwrap();
    assert_eq!(one.kind, FdKind::Ipv4, "{one:?}");
    assert_eq!(one.remote, Some((Ipv4Addr::new(10, 0, 0, 5).into(), 4444)));
    // A pipe is still a pipe whatever the table thought fd 3 was.
    root.fd(2, "pipe:[9]");
    t.observe(&dup2(3, 2));
    assert_eq!(t.get(PID, 2).unwrap().kind, FdKind::Pipe);
}

#[test]
fn a_pipe_the_sensor_never_saw_is_read_from_proc() {
    let root = FakeProc::new("pipe");
    let mut t = table(&root.0);
    // A socket once had fd 5 and was closed with a syscall the table missed; a pipe (whose
    // numbers pipe(2) writes to user memory) took fd 5, and 5 goes onto stdout.
    t.observe(&tcp_socket(5));
    root.fd(1, "pipe:[77]");
    let e = t.observe(&dup2(5, 1)).unwrap();
    assert_eq!(e.kind, FdKind::Pipe, "/proc wins over a stale table entry");
    assert_eq!(t.get(PID, 1).unwrap().kind, FdKind::Pipe);
    // An fd the table never saw at all.
    root.fd(2, "pipe:[78]");
    let e = t.observe(&dup2(9, 2)).unwrap();
    assert_eq!(e.kind, FdKind::Pipe);
    assert_eq!(&*e.path, "pipe:[78]");
    assert_eq!(t.stats().procfs_lookups, 2);
}

#[test]
fn a_file_duplicated_onto_stdin_is_the_table_s_after_one_look() {
    // `cmd </etc/passwd` in a container: the table holds the path the task opened, /proc
    // the agent's view of it (through the container's root). One link read says it is a file;
    // the table's entry is taken, without the stat and fdinfo reads of a full look-up.
    let root = FakeProc::new("file");
    let mut t = table(&root.0);
    t.observe(&open("/etc/passwd", 3, 0));
    root.fd(
        0,
        "/var/lib/containers/storage/overlay/abc/merged/etc/passwd",
    );
    let e = t.observe(&dup2(3, 0)).unwrap();
    assert_eq!(&*e.path, "/etc/passwd");
    let zero = t.get(PID, 0).unwrap();
    assert_eq!((zero.kind, &*zero.path), (FdKind::File, "/etc/passwd"));
    assert_eq!(t.stats().procfs_lookups, 1);
}

#[test]
fn a_socket_where_the_table_holds_a_file_is_the_socket() {
    // The table's fd 3 is a file, but the process closed it and received a socket on 3 by
    // ways the sensor does not see (close_range, SCM_RIGHTS): what goes onto stdin is what
    // /proc says, a socket, not the file the table remembers.
    let root = FakeProc::new("filesock");
    root.net("tcp", TCP_999);
    let mut t = table(&root.0);
    t.observe(&open("/tmp/harmless", 3, 0));
    root.fd(0, "socket:[999]");
    t.observe(&dup2(3, 0));
    let zero = t.get(PID, 0).unwrap();
    assert_eq!(zero.kind, FdKind::Ipv4, "{zero:?}");
    assert_eq!(zero.remote, Some((Ipv4Addr::new(10, 0, 0, 5).into(), 4444)));
}

#[test]
fn a_socket_from_proc_has_its_family_protocol_and_ends() {
    let root = FakeProc::new("net");
    root.net("tcp", TCP_999);
    root.fd(0, "socket:[999]");
    let mut t = table(&root.0);
    // fd 7 came by SCM_RIGHTS; the table learns what it is when it goes onto stdin.
    let e = t.observe(&dup2(7, 0)).unwrap();
    assert_eq!(e.kind, FdKind::Ipv4);
    assert_eq!(e.l4proto, Some(L4Proto::Tcp));
    assert_eq!(e.local, Some((Ipv4Addr::LOCALHOST.into(), 8080)));
    assert_eq!(e.remote, Some((Ipv4Addr::new(10, 0, 0, 5).into(), 4444)));
    assert!(e.from_procfs);
    assert_eq!(e.name(), "127.0.0.1:8080->10.0.0.5:4444");
}

#[test]
fn close_exec_and_fork() {
    let root = FakeProc::new("life");
    let mut t = table(&root.0);
    t.observe(&open("/etc/passwd", 3, 0));
    t.observe(&open("/etc/group", 4, O_CLOEXEC));
    let e = t.observe(&close(3)).unwrap();
    assert_eq!(&*e.path, "/etc/passwd", "close carries what it closed");
    assert!(t.get(PID, 3).is_none());
    // A failed close of an fd that was not open changes nothing.
    t.observe(&open("/etc/hosts", 5, 0));
    t.observe(&sc("close", -9, vec![("fd", ArgValue::Fd(6))]));
    assert!(t.get(PID, 5).is_some());

    t.observe(&with_kind(EventKind::Fork(Fork {
        child_tid: 200,
        child_tgid: 200,
        is_thread: false,
        child_vpid: 0,
        child_pid_ns: 0,
    })));
    assert_eq!(t.get(200, 4).unwrap().path.as_ref(), "/etc/group");
    // The child's exec closes its close-on-exec fd; the parent keeps its own.
    t.observe(&Event {
        tgid: 200,
        ..with_kind(EventKind::Exec(Exec::default()))
    });
    assert!(t.get(200, 4).is_none());
    assert!(t.get(200, 5).is_some());
    assert!(t.get(PID, 4).is_some());
    t.observe(&with_kind(EventKind::Exit(osprey_model::event::Exit {
        status: 0,
    })));
    assert!(t.get(PID, 5).is_none(), "an exited process has no fds");
}

#[test]
fn bounded_per_process_and_in_total_with_evictions_counted() {
    let root = FakeProc::new("bounds");
    let mut t = FdTable::new(FdConfig {
        per_process: 4,
        total: 6,
        proc_root: root.0.clone(),
        ..FdConfig::default()
    });
    for fd in 3..13 {
        t.observe(&open(&format!("/f{fd}"), fd, 0));
    }
    assert_eq!(t.stats().entries, 4);
    assert_eq!(t.stats().evictions, 6);
    assert!(t.get(PID, 12).is_some(), "the newest stays");
    // Another process takes the total over 6: the biggest table loses its oldest.
    for fd in 3..6 {
        t.observe(&Event {
            tgid: 300,
            ..open(&format!("/g{fd}"), fd, 0)
        });
    }
    assert_eq!(t.stats().entries, 6);
    assert_eq!(t.stats().evictions, 7);
}

#[test]
fn fcntl_dupfd_and_close_range() {
    let root = FakeProc::new("fcntl");
    let mut t = table(&root.0);
    t.observe(&tcp_socket(3));
    let fcntl = |cmd: i64, ret: i64| {
        sc(
            "fcntl",
            ret,
            vec![
                ("fd", ArgValue::Fd(3)),
                (
                    "cmd",
                    ArgValue::Enum {
                        raw: cmd,
                        name: None,
                    },
                ),
                ("arg", ArgValue::Int(10)),
            ],
        )
    };
    t.observe(&fcntl(F_DUPFD_CLOEXEC, 10));
    let ten = t.get(PID, 10).unwrap();
    assert_eq!(ten.kind, FdKind::Ipv4);
    assert!(ten.cloexec);
    t.observe(&sc(
        "close_range",
        0,
        vec![
            ("fd", ArgValue::Int(4)),
            ("max_fd", ArgValue::Int(u32::MAX as i64)),
            ("flags", flags(0)),
        ],
    ));
    assert!(t.get(PID, 10).is_none());
    assert!(t.get(PID, 3).is_some());
}

#[test]
fn bootstrap_reads_running_processes_sockets() {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let mut t = FdTable::new(FdConfig::default());
    assert!(t.bootstrap(Path::new("/proc")) > 0);
    use std::os::fd::AsRawFd;
    let e = t
        .get(std::process::id(), i64::from(l.as_raw_fd()))
        .expect("the listener is known");
    assert_eq!(e.kind, FdKind::Ipv4);
    assert_eq!(e.l4proto, Some(L4Proto::Tcp));
    assert_eq!(e.local, Some((Ipv4Addr::LOCALHOST.into(), port)));
    assert!(e.local_is_server);
    assert!(e.cloexec, "Rust opens sockets with SOCK_CLOEXEC");
}

#[test]
fn pidfd_getfd_copies_the_targets_descriptor() {
    let root = FakeProc::new("pidfd");
    let mut t = table(&root.0);
    // Process 500 holds a secret open as fd 7; process PID opens a pidfd to it and takes fd 7.
    t.observe(&Event {
        tgid: 500,
        ..open("/etc/shadow", 7, 0)
    });
    let p = t
        .observe(&sc(
            "pidfd_open",
            4,
            vec![("pid", ArgValue::Int(500)), ("flags", ArgValue::Int(0))],
        ))
        .unwrap();
    assert_eq!(p.target_pid, Some(500));
    let e = t
        .observe(&sc(
            "pidfd_getfd",
            9,
            vec![
                ("pidfd", ArgValue::Fd(4)),
                ("fd", ArgValue::Int(7)),
                ("flags", ArgValue::Int(0)),
            ],
        ))
        .unwrap();
    assert_eq!((e.num, e.kind, &*e.path), (9, FdKind::File, "/etc/shadow"));
    assert!(e.cloexec);
}

#[test]
fn an_accepted_connection_from_proc_is_the_servers_side() {
    let root = FakeProc::new("accepted");
    root.net(
        "tcp",
        "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n   \
         0: 00000000:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 998 1 0\n   \
         1: 0100007F:1F90 0100007F:C8D4 01 00000000:00000000 00:00000000 00000000     0        0 999 1 0\n",
    );
    root.fd(0, "socket:[999]");
    let mut t = table(&root.0);
    let e = t.observe(&dup2(7, 0)).unwrap();
    assert!(e.local_is_server, "port 8080 listens: {e:?}");
}

/// The fcntl commands the table follows are the kernel filter's own: it keeps them whatever
/// the rules say (a rule set with no fcntl rule at all), and passes over the others.
#[test]
fn the_kernel_filter_keeps_the_fcntl_calls_the_table_follows() {
    let mut filter = osprey_engine::compile::KernelFilter::derive(|_| std::iter::empty());
    assert!(!filter.captures_call("fcntl", 5, F_DUPFD as u64));
    keep_followed_calls(&mut filter);
    for cmd in [F_DUPFD, F_DUPFD_CLOEXEC, F_SETFD] {
        assert!(filter.captures_call("fcntl", 5, cmd as u64), "{cmd}");
        assert!(filter.captures_call("fcntl", 0, cmd as u64), "{cmd}");
        // A failure changes nothing in the table.
        assert!(!filter.captures_call("fcntl", -9, cmd as u64), "{cmd}");
    }
    // F_GETFL, F_SETFL: the table has no use for them.
    assert!(!filter.captures_call("fcntl", 0, 3) && !filter.captures_call("fcntl", 0, 4));
    let followed: Vec<i64> = agent_common::open_filter::FCNTL_CMDS
        .iter()
        .map(|(v, _)| i64::from(*v))
        .collect();
    assert_eq!(followed, [F_DUPFD, F_DUPFD_CLOEXEC, F_SETFD]);
}

#[test]
fn stdio_at_exec_is_the_kernels_and_replaces_stale_entries() {
    // fd 0 was /dev/null, closed (not followed), and a TCP connection received there with
    // SCM_RIGHTS (not followed either): the table still says /dev/null, the kernel says an
    // IPv4 socket, /proc names it. fd 1 is the pipe the table knows; fd 2 was closed.
    let root = FakeProc::new("stdio");
    let mut t = table(&root.0);
    t.observe(&open("/dev/null", 0, 0));
    t.observe(&open("/tmp/err", 2, 1));
    t.put(PID, FdEntry::new(1, FdKind::Pipe));
    root.fd(0, "socket:[999]");
    root.net("tcp", TCP_999);
    let s = t.stdio(PID, &[Some(FdKind::Ipv4), Some(FdKind::Pipe), None]);
    let zero = s[0].as_ref().unwrap();
    assert_eq!(zero.kind, FdKind::Ipv4);
    assert_eq!(zero.name, "127.0.0.1:8080->10.0.0.5:4444");
    assert_eq!(s[1].as_ref().unwrap().kind, FdKind::Pipe);
    assert!(s[2].is_none());
    // The table follows the kernel: fd 0 is the socket, fd 2 is gone.
    assert_eq!(t.get(PID, 0).unwrap().kind, FdKind::Ipv4);
    assert!(t.get(PID, 2).is_none());
    // A socket /proc cannot show (the process is gone) is still a socket, without a name.
    let s = t.stdio(PID + 1, &[Some(FdKind::Ipv6), None, None]);
    assert_eq!(
        s[0],
        Some(Stdio {
            kind: FdKind::Ipv6,
            name: String::new()
        })
    );
}

#[test]
fn a_dup_onto_stdio_takes_the_kernel_s_file_without_proc() {
    // A shell's `> out.c`, `> /dev/null`, `| wc`: the opens were passed over by the kernel's
    // filter, so the table never saw fd 3; the dup's own record says what it is. /proc is
    // left alone (the fake one says something else, and nothing is read from it).
    let root = FakeProc::new("kfile");
    root.fd(1, "socket:[1]");
    root.fd(2, "socket:[1]");
    let mut t = table(&root.0);
    t.observe(&dup2_with_file(3, 1, "/work/src/f1.c", EXT4, 8));
    let one = t.get(PID, 1).unwrap();
    assert_eq!((one.kind, &*one.path), (FdKind::File, "/work/src/f1.c"));
    t.observe(&dup2_with_file(4, 2, "/dev/null", 0x1021994, 2));
    assert_eq!(
        t.get(PID, 2).unwrap().kind,
        FdKind::File,
        "a character device"
    );
    t.observe(&dup2_with_file(
        5,
        1,
        "pipe:[77]",
        KernelFile::PIPEFS_MAGIC,
        1,
    ));
    let one = t.get(PID, 1).unwrap();
    assert_eq!((one.kind, &*one.path), (FdKind::Pipe, "pipe:[77]"));
    t.observe(&dup2_with_file(
        6,
        0,
        "/tmp/fifo",
        KernelFile::TMPFS_MAGIC,
        1,
    ));
    let zero = t.get(PID, 0).unwrap();
    assert_eq!(
        (zero.kind, &*zero.path),
        (FdKind::Pipe, "/tmp/fifo"),
        "a named FIFO"
    );
    t.observe(&dup2_with_file(7, 0, "/srv", EXT4, 4));
    assert_eq!(t.get(PID, 0).unwrap().kind, FdKind::Directory);
    assert_eq!(t.directory(PID, 0), Some("/srv"));
    t.observe(&dup2_with_file(
        8,
        2,
        "/memfd:stage (deleted)",
        KernelFile::TMPFS_MAGIC,
        8,
    ));
    let two = t.get(PID, 2).unwrap();
    assert_eq!((two.kind, &*two.path), (FdKind::Memfd, "memfd:stage"));
    assert_eq!(t.stats().procfs_lookups, 0);
}

#[test]
fn a_socket_dup_onto_stdio_still_reads_proc_for_its_ends() {
    // The reverse shell's case: the kernel says "a socket", but its ends are in /proc/net.
    let root = FakeProc::new("ksock");
    root.net("tcp", TCP_999);
    root.fd(0, "socket:[999]");
    let mut t = table(&root.0);
    t.observe(&dup2_with_file(
        3,
        0,
        "socket:[999]",
        KernelFile::SOCKFS_MAGIC,
        12,
    ));
    let zero = t.get(PID, 0).unwrap();
    assert_eq!(zero.kind, FdKind::Ipv4, "{zero:?}");
    assert_eq!(zero.remote, Some((Ipv4Addr::new(10, 0, 0, 5).into(), 4444)));
    assert_eq!(t.stats().procfs_lookups, 1);
}

#[test]
fn a_kernel_record_that_does_not_say_leaves_it_to_proc() {
    // No file type (a record from a sensor without it), or a path cut short: /proc decides.
    let root = FakeProc::new("kpartial");
    root.fd(1, "pipe:[5]");
    let mut t = table(&root.0);
    t.observe(&dup2_with_file(3, 1, "/tmp/x", EXT4, 0));
    assert_eq!(t.get(PID, 1).unwrap().kind, FdKind::Pipe);
    let mut cut = dup2_with_file(3, 1, "/.../deep/x", EXT4, 8);
    if let EventKind::Syscall(sc) = &mut cut.kind {
        sc.file.as_mut().unwrap().truncated = true;
    }
    t.observe(&cut);
    assert_eq!(t.get(PID, 1).unwrap().kind, FdKind::Pipe);
    assert_eq!(t.stats().procfs_lookups, 2);
}

#[test]
fn a_dup_above_stdio_of_an_unknown_fd_takes_the_kernel_s_file() {
    // `fcntl(fd, F_DUPFD, 10)` and `dup(fd)` of a descriptor the table never saw: the kernel's
    // record first, the budgeted /proc read not spent.
    let root = FakeProc::new("kdupfd");
    let mut t = table(&root.0);
    let dup = sc("dup", 10, vec![("fildes", ArgValue::Fd(4))]);
    let e = with_file(dup, KernelFileOf::Returned, "/var/log/app.log", EXT4, 8);
    let old = t.observe(&e).unwrap();
    assert_eq!((old.num, &*old.path), (4, "/var/log/app.log"));
    assert_eq!(&*t.get(PID, 10).unwrap().path, "/var/log/app.log");
    assert_eq!(t.stats().procfs_lookups, 0);
}

#[test]
fn an_old_descriptor_s_file_does_not_decide_what_stdio_is() {
    // fcntl(F_DUPFD) onto a free 0 carries the file behind its argument, which another thread
    // may have replaced between the call and the kernel's walk: /proc decides.
    let root = FakeProc::new("kfdarg");
    root.net("tcp", TCP_999);
    root.fd(0, "socket:[999]");
    let mut t = table(&root.0);
    let fcntl = sc(
        "fcntl",
        0,
        vec![
            ("fd", ArgValue::Fd(3)),
            (
                "cmd",
                ArgValue::Enum {
                    raw: F_DUPFD,
                    name: None,
                },
            ),
            ("arg", ArgValue::Int(0)),
        ],
    );
    t.observe(&with_file(
        fcntl,
        KernelFileOf::FdArg,
        "pipe:[5]",
        KernelFile::PIPEFS_MAGIC,
        1,
    ));
    assert_eq!(t.get(PID, 0).unwrap().kind, FdKind::Ipv4);
    assert_eq!(t.stats().procfs_lookups, 1);
}
