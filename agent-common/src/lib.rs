//! The event ABI between Osprey's kernel programs (`agent-ebpf`) and the agent (`agent`).
//!
//! Every record in the ring buffer starts with an [`EventHeader`]; `header.kind` says which
//! struct follows and `header.size` how many bytes of it were written (records carry a
//! variable-length `data` tail, so a record is usually shorter than its struct). All integers
//! are native-endian with explicit widths; the layout is fixed by `#[repr(C)]` and checked by
//! the size assertions at the bottom of this file. Change a struct here and both sides change
//! together: this crate is the contract.
#![no_std]

/// Length of `task->comm`, as the kernel defines `TASK_COMM_LEN`.
pub const COMM_LEN: usize = 16;

/// Syscall numbers below this bound can be described in [`SyscallSpec`]s; x86_64 numbers stop
/// below 470 today.
pub const MAX_SYSCALL_NR: u32 = 512;

/// Bytes of user memory a syscall event may carry (paths, socket addresses, argv).
pub const DATA_MAX: usize = 4096;

/// Size of the `data` tail. Twice [`DATA_MAX`] so that a read of up to `DATA_MAX` bytes at any
/// offset below `DATA_MAX` stays inside the buffer: the verifier can prove that from a masked
/// offset, and could not from a computed remaining length.
pub const DATA_BUF: usize = DATA_MAX * 2;

/// How many pieces of user memory one syscall may capture (mount: source, target, fstype).
pub const MAX_CAPTURES: usize = 3;

/// The kinds of record in the ring buffer. The value is `EventHeader::kind`.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventKind {
    /// `sched:sched_process_exec`: a successful exec, with the new image's path and argv.
    Exec = 1,
    /// `sched_process_fork` (raw tracepoint): a new process or thread.
    Fork = 2,
    /// `sched:sched_process_exit`: a thread exits; `group_dead` when it was the last one.
    Exit = 3,
    /// A completed syscall from the `raw_syscalls` pair, arguments joined with the result.
    Syscall = 4,
    /// A syscall profile's verdict other than `allow`, decided at syscall entry.
    Profile = 5,
}

impl EventKind {
    pub fn from_u32(v: u32) -> Option<Self> {
        match v {
            1 => Some(Self::Exec),
            2 => Some(Self::Fork),
            3 => Some(Self::Exit),
            4 => Some(Self::Syscall),
            5 => Some(Self::Profile),
            _ => None,
        }
    }
}

/// Indices into the per-CPU `COUNTERS` map. The first entries count records lost because the
/// ring buffer was full, one per [`EventKind`] (index = kind value).
pub mod counter {
    pub const DROP_EXEC: u32 = 1;
    pub const DROP_FORK: u32 = 2;
    pub const DROP_EXIT: u32 = 3;
    pub const DROP_SYSCALL: u32 = 4;
    // 5 counted syscalls lost to a full table of in-flight syscalls; there is no such table
    // since syscalls are captured at exit alone.
    /// Syscall events emitted (after the interest filter), for rate reporting.
    pub const SYSCALLS_EMITTED: u32 = 6;
    /// Profile records lost because the ring buffer was full.
    pub const DROP_PROFILE: u32 = 7;
    /// Profile verdicts other than `allow` (one record each, emitted or dropped).
    pub const PROFILE_VERDICTS: u32 = 8;
    /// `kill` verdicts whose `bpf_send_signal(SIGKILL)` succeeded.
    pub const PROFILE_KILLS: u32 = 9;
    /// Records not written because their cgroup had used its share of the ring buffer's reserved
    /// room (see `CgroupShare`); each is also counted in the cgroup's own entry.
    pub const DROP_CGROUP_SHARE: u32 = 10;
    /// Opens the open filter passed over: no loaded rule could match them (not a loss).
    pub const OPEN_FILTERED: u32 = 11;
    /// mprotect, mmap, pkey_mprotect and fcntl calls the filter passed over on their argument
    /// and result.
    pub const CALLS_FILTERED: u32 = 12;
    pub const COUNT: u32 = 16;
}

/// First bytes of every record.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct EventHeader {
    /// An [`EventKind`] value.
    pub kind: u32,
    /// Bytes of this record that are meaningful, header included.
    pub size: u32,
    /// `bpf_ktime_get_boot_ns()` when the record was written: nanoseconds since boot,
    /// suspend included, so userspace converts it to wall time with one boot-time offset.
    pub ktime_ns: u64,
    /// Process id (thread group id) as seen from the initial pid namespace.
    pub tgid: u32,
    /// Thread id as seen from the initial pid namespace.
    pub tid: u32,
    /// Real user and group id (`task->cred`, as `bpf_get_current_uid_gid` gives them).
    pub uid: u32,
    pub gid: u32,
    /// Effective user and group id, from `task->cred`.
    pub euid: u32,
    pub egid: u32,
    /// Id of the task's cgroup on the v2 hierarchy: the inode number of its directory.
    pub cgroup_id: u64,
    /// Inode numbers of the task's pid and mount namespaces (what `/proc/PID/ns/*` show).
    pub pid_ns: u32,
    pub mnt_ns: u32,
    /// The process id inside the task's own pid namespace (the container's view).
    ///
    /// `vpid` and `pid_ns` are fixed for a process's life, so only the records that start or
    /// end one (exec, exit; a fork record has the child's in `ForkEvent`) and profile verdicts
    /// carry them; they are zero in syscall records, and userspace takes them from its
    /// process table. The mount namespace can change (`setns`, `unshare`): every record has it.
    pub vpid: u32,
    pub _pad: u32,
    /// `task->comm`, up to its NUL (the bytes after it are zero but for a BTF tracepoint's
    /// plain read of all 16, which has what the kernel left there).
    pub comm: [u8; COMM_LEN],
    /// Effective and permitted capability sets, from `task->cred` (bit N = capability N).
    pub cap_effective: u64,
    pub cap_permitted: u64,
}

/// `EventKind::Exec`.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct ExecEvent {
    pub header: EventHeader,
    /// Length of the path given to exec, `data[..filename_len]` (no NUL). argv follows it,
    /// then the executable's kernel path.
    pub filename_len: u32,
    /// Length of argv that follows the path: NUL-separated, as in `/proc/PID/cmdline`.
    pub args_len: u32,
    /// [`trunc`] bits.
    pub flags: u32,
    /// [`exe_flags`] bits: what the kernel knows about the executable's file.
    pub exe_flags: u32,
    /// Length of the executable's kernel path ([`kpath`] encoding) after argv in `data`.
    pub exe_path_len: u32,
    /// [`kpath`] bits of that walk.
    pub exe_path_flags: u32,
    /// The executable file's own name (its dentry): `memfd:NAME` for a memfd, which the
    /// path given to exec (`/dev/fd/3`) does not show.
    pub exe_name: [u8; NAME_LEN],
    /// Names of the task's cgroup v2 directory and of its parent, as kernfs holds them:
    /// container runtimes put the container id there (`libpod-<id>`, `cri-containerd-<id>.scope`,
    /// `docker-<id>.scope`, `<id>` under `kubepods...`). Read in the exec'ing task itself, so
    /// the first exec of a container carries its id even if the container is gone a moment later.
    pub cgroup_name: [u8; CGROUP_NAME_LEN],
    pub cgroup_parent: [u8; CGROUP_NAME_LEN],
    /// [`exec_env`] bits: what the kernel found in the environment exec gave the program,
    /// read before the program ran (so before a preloaded library could rewrite it).
    pub env_flags: u32,
    /// Length of `preload` (no NUL).
    pub preload_len: u32,
    /// The value of the last `LD_PRELOAD=` entry (the one the dynamic loader uses), cut to
    /// `PRELOAD_LEN - 1` bytes.
    pub preload: [u8; PRELOAD_LEN],
    /// Descriptors 0, 1 and 2 as the new program starts with them (close-on-exec ones
    /// already closed), read from the kernel's own descriptor table: [`stdio`] encoding.
    pub stdio: [u32; 3],
    pub _stdio_pad: u32,
    pub data: [u8; DATA_BUF],
}

/// `ExecEvent::stdio` encoding: the file type bits of the descriptor's inode (`i_mode >> 12`,
/// `S_IFREG` = 8, `S_IFSOCK` = 12...) in the low byte, [`stdio::OPEN`] when there is a
/// descriptor at all, and a socket's address family (`AF_INET`...) in bits 16-31.
pub mod stdio {
    /// The descriptor is open (its file type may still be 0: an anonymous inode).
    pub const OPEN: u32 = 1 << 8;
    pub const TYPE_MASK: u32 = 0xf;
    pub const FAMILY_SHIFT: u32 = 16;
    /// `S_IFMT >> 12` values.
    pub const S_IFIFO: u32 = 0o01;
    pub const S_IFCHR: u32 = 0o02;
    pub const S_IFDIR: u32 = 0o04;
    pub const S_IFBLK: u32 = 0o06;
    pub const S_IFREG: u32 = 0o10;
    pub const S_IFLNK: u32 = 0o12;
    pub const S_IFSOCK: u32 = 0o14;
}

/// Length of `ExecEvent::preload`.
pub const PRELOAD_LEN: usize = 256;

/// Reads of the environment per exec where the kernel has no `bpf_loop` (before 5.17) and the
/// exec program reads it an entry at a time: its entries, plus one per 4 KiB of a long one.
/// A Kubernetes pod's environment has about seven entries per service in its namespace.
pub const ENV_READS: u32 = 1024;

/// `ExecEvent::env_flags` bits.
pub mod exec_env {
    /// Every entry of the environment was read: `preload` is the whole truth about
    /// `LD_PRELOAD`. Unset when there were more entries (or longer ones) than the kernel reads,
    /// or a page of it could not be read.
    pub const COMPLETE: u32 = 1;
    /// An `LD_PRELOAD=` entry was found.
    pub const PRELOAD: u32 = 2;
    /// Its value was longer than `PRELOAD_LEN - 1` bytes.
    pub const PRELOAD_CUT: u32 = 4;
}

/// Length of `ExecEvent::exe_name` (a dentry name; NAME_MAX is 255, memfd names are short).
pub const NAME_LEN: usize = 64;
/// Length of each cgroup directory name in an exec event.
pub const CGROUP_NAME_LEN: usize = 128;

/// `ExecEvent::exe_flags` bits.
pub mod exe_flags {
    /// The executable lives on overlayfs (a container's root file system).
    pub const OVERLAY: u32 = 1;
    /// It has an upper-layer copy: written or copied up after the container started.
    pub const UPPER: u32 = 2;
    /// It has lower-layer copies: it came with the image.
    pub const LOWER: u32 = 4;
    /// It lives on another mount than the process's root (a volume, a tmpfs, a bind mount):
    /// in a container, not the image's root file system.
    pub const OTHER_MOUNT: u32 = 8;
    /// That mount, or its file system, is read-only.
    pub const READ_ONLY_MOUNT: u32 = 16;
    /// Exec loaded an interpreter for the file it was given (a `#!` script, or a binfmt_misc
    /// handler): the executable is the interpreter, and the path given to exec its script.
    /// From the kernel's own record of the exec (`bprm->interp`), which argv cannot forge.
    pub const INTERPRETED: u32 = 32;
    /// The file exec loaded is a 32-bit ELF (`EI_CLASS` of the header the kernel read into
    /// `bprm->buf`): a 32-bit program, whose calls through the 32-bit entry are its own.
    pub const ELF32: u32 = 64;
}

/// `EventKind::Fork`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct ForkEvent {
    /// The parent's identity: the fork tracepoint runs in the parent's context.
    pub header: EventHeader,
    /// The new task's thread id and thread group id.
    pub child_tid: u32,
    pub child_tgid: u32,
    /// [`fork_flags`] bits.
    pub flags: u32,
    /// A new process's id in its own pid namespace and that namespace's inode number (zero
    /// for a new thread): syscall records do not carry them (see [`EventHeader::vpid`]).
    pub child_vpid: u32,
    pub child_pid_ns: u32,
    pub _pad: u32,
}

pub mod fork_flags {
    /// The child shares its parent's thread group: a new thread, not a new process.
    pub const THREAD: u32 = 1;
}

/// `EventKind::Exit`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct ExitEvent {
    pub header: EventHeader,
    /// `task->exit_code`: the wait status, exit status in bits 8..16, signal in bits 0..7.
    pub exit_code: u32,
    /// 1 when this was the last thread of the process (the process is gone).
    pub group_dead: u32,
}

/// Truncation bits in `ExecEvent::flags` and `SyscallEvent::flags`.
pub mod trunc {
    /// The path (or capture 0) filled its space.
    pub const CAPTURE0: u32 = 1 << 0;
    pub const CAPTURE1: u32 = 1 << 1;
    pub const CAPTURE2: u32 = 1 << 2;
    /// argv was longer than what was captured.
    pub const ARGS: u32 = 1 << 3;
    /// A user pointer could not be read (unmapped or paged out); its capture is empty.
    pub const FAULT: u32 = 1 << 4;
    /// Not a truncation: the call came through the 32-bit entry (`int $0x80`, or a 32-bit
    /// program); `nr` and `args` are the 64-bit call it is (see [`COMPAT_SOCKETCALL`]).
    pub const COMPAT: u32 = 1 << 5;
    /// With [`COMPAT`]: the call was made by code running in 64-bit mode (its code segment was
    /// the 64-bit one), i.e. `int $0x80` in an x86_64 program, not a 32-bit program's call.
    pub const COMPAT_FROM_64: u32 = 1 << 6;
}

/// The 32-bit (ia32) `socketcall` number: one syscall for every socket operation, its first
/// argument saying which (`SYS_CONNECT`...) and its second pointing at the operation's
/// arguments, 32-bit words in user memory. `COMPAT_NR` maps it to this marker.
pub const COMPAT_SOCKETCALL: u32 = u32::MAX;

/// Set in a `COMPAT_NR` entry whose i386 call takes its arguments otherwise than the x86_64
/// call it is (the old `mmap`, `select`...): profiles judge it by name, the sensor does not
/// decode it.
pub const COMPAT_PROFILE_ONLY: u32 = 1 << 31;

/// The 32-bit (ia32) `ipc` number's marker in `COMPAT_NR`: one syscall for every System V IPC
/// call, its first argument saying which (`SHMGET`...), the call's arguments in the others.
/// Profiles judge it as the call it stands for ([`ipc`]); the sensor does not decode it
/// (the marker has [`COMPAT_PROFILE_ONLY`] set).
pub const COMPAT_IPC: u32 = u32::MAX - 1;

/// The x86_64 syscall an i386 `ipc` call stands for, from ipc's six arguments (`call`,
/// `first`, `second`, `third`, `ptr`, `fifth`), with that syscall's arguments as the kernel
/// passes them on (`compat_ksys_ipc` in ipc/syscall.c), and whether they are all known: not
/// where the kernel reads one from user memory (`semctl`'s fourth, an old-style `msgrcv`'s
/// buffer and type). `None` for a call the kernel refuses. `call`'s upper half is a version;
/// `msgctl`, `semctl` and `shmctl` take their command as the i386 call does, `IPC_64` (0x100)
/// and all.
#[inline(always)]
pub const fn ipc(a: [u64; 6]) -> Option<(u32, [u64; 6], bool)> {
    let [call, first, second, third, ptr, fifth] = a;
    let old_style = call >> 16 == 0;
    // x86_64 numbers.
    Some(match call & 0xffff {
        1 => (65, [first, ptr, second, 0, 0, 0], true), // semop
        2 => (64, [first, second, third, 0, 0, 0], true), // semget
        3 => (66, [first, second, third, 0, 0, 0], false), // semctl
        4 => (220, [first, ptr, second, fifth, 0, 0], true), // semtimedop
        11 => (69, [first, ptr, second, third, 0, 0], true), // msgsnd
        12 => (70, [first, ptr, second, fifth, third, 0], !old_style), // msgrcv
        13 => (68, [first, second, 0, 0, 0, 0], true),  // msgget
        14 => (71, [first, second, ptr, 0, 0, 0], true), // msgctl
        21 => (30, [first, ptr, second, 0, 0, 0], true), // shmat
        22 => (67, [ptr, 0, 0, 0, 0, 0], true),         // shmdt
        23 => (29, [first, second, third, 0, 0, 0], true), // shmget
        24 => (31, [first, second, ptr, 0, 0, 0], true), // shmctl
        _ => return None,
    })
}

/// The 64-bit syscall a `socketcall` operation (`call`, from 1) stands for, and how many
/// argument words the kernel reads for it (`nargs` in net/socket.c); `None` for an unknown
/// call, which the kernel refuses.
#[inline(always)]
pub const fn socketcall(call: u64) -> Option<(u32, u32)> {
    // x86_64 numbers.
    Some(match call {
        1 => (41, 3),   // socket
        2 => (49, 3),   // bind
        3 => (42, 3),   // connect
        4 => (50, 2),   // listen
        5 => (43, 3),   // accept
        6 => (51, 3),   // getsockname
        7 => (52, 3),   // getpeername
        8 => (53, 4),   // socketpair
        9 => (44, 4),   // send: sendto with no address
        10 => (45, 4),  // recv: recvfrom with no address
        11 => (44, 6),  // sendto
        12 => (45, 6),  // recvfrom
        13 => (48, 2),  // shutdown
        14 => (54, 5),  // setsockopt
        15 => (55, 5),  // getsockopt
        16 => (46, 3),  // sendmsg
        17 => (47, 3),  // recvmsg
        18 => (288, 4), // accept4
        19 => (299, 5), // recvmmsg
        20 => (307, 4), // sendmmsg
        _ => return None,
    })
}

/// `EventKind::Syscall`: one completed syscall.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct SyscallEvent {
    /// Identity at syscall exit (after a setuid the new ids, after an execve the new comm).
    pub header: EventHeader,
    /// The syscall number on the running architecture.
    pub nr: u32,
    /// [`trunc`] bits.
    pub flags: u32,
    /// The return value: a result, or `-errno`.
    pub ret: i64,
    /// [`kpath`] bits: which object `data`'s kernel path describes, and what the walk found.
    pub kpath_flags: u32,
    /// `s_magic` of the file system that object lives on (sockfs, pipefs, overlayfs...).
    pub kpath_magic: u32,
    /// The six argument registers, read at exit (see agent-ebpf/src/syscall.rs).
    pub args: [u64; 6],
    /// Bytes of `data` used by each capture of the syscall's [`SyscallSpec`], in order, then
    /// (index 3) by the kernel path.
    pub cap_len: [u16; 4],
    /// Inode number of the object the kernel path describes.
    pub kpath_ino: u64,
    /// The kernel path walk's running length while it writes (see agent-ebpf/src/path.rs);
    /// `cap_len[3]` holds the result.
    pub kpath_cursor: u32,
    /// 0 for a syscall; for an io_uring request, [`ring`] bits and its opcode.
    pub ring: u32,
    /// For an io_uring request: the kernel's `struct io_kiocb` address, which joins a
    /// submission with its completion (and is reused once the request is done).
    pub ring_req: u64,
    pub data: [u8; DATA_BUF],
}

/// io_uring requests (agent-ebpf/src/uring.rs) travel as the syscall they stand for
/// (`IORING_OP_OPENAT` as `openat`...), in two records: the submission, with the arguments
/// and the captures (paths from the kernel's own copy), and the completion, with the result and
/// the file of a descriptor it returned. Userspace joins them on `ring_req`.
pub mod ring {
    /// The low byte of `SyscallEvent::ring`: the `IORING_OP_*` opcode.
    pub const OPCODE: u32 = 0xff;
    /// A submission: arguments and captures; `ret` is `-EINPROGRESS` until the completion.
    pub const SUBMIT: u32 = 1 << 8;
    /// A completion: `ret` is the result and the kernel path, if any, the returned file.
    pub const COMPLETE: u32 = 1 << 9;
    /// The descriptor argument is an index into the ring's registered files, not a descriptor
    /// of the process: its file is not walked.
    pub const FIXED_FILE: u32 = 1 << 10;
    /// The result went into a registered-file slot of the ring ("direct descriptor"), not into
    /// the process's descriptor table.
    pub const DIRECT: u32 = 1 << 11;

    /// `-EINPROGRESS`: a submission's result until its completion says otherwise.
    pub const IN_PROGRESS: i64 = -115;

    pub const OP_SENDMSG: u8 = 9;
    pub const OP_RECVMSG: u8 = 10;
    pub const OP_ACCEPT: u8 = 13;
    pub const OP_CONNECT: u8 = 16;
    pub const OP_OPENAT: u8 = 18;
    pub const OP_SEND: u8 = 26;
    pub const OP_RECV: u8 = 27;
    pub const OP_OPENAT2: u8 = 28;
    pub const OP_SPLICE: u8 = 30;
    pub const OP_TEE: u8 = 33;
    pub const OP_RENAMEAT: u8 = 35;
    pub const OP_UNLINKAT: u8 = 36;
    pub const OP_SOCKET: u8 = 45;

    /// The syscall (x86_64 number) an opcode is reported as; 0 for an opcode not reported.
    pub const fn syscall_of(op: u8) -> u32 {
        match op {
            OP_OPENAT | OP_OPENAT2 => 257,
            OP_CONNECT => 42,
            OP_ACCEPT => 288,
            OP_SOCKET => 41,
            OP_SEND => 44,
            OP_RECV => 45,
            OP_SENDMSG => 46,
            OP_RECVMSG => 47,
            OP_SPLICE => 275,
            OP_TEE => 276,
            OP_UNLINKAT => 263,
            OP_RENAMEAT => 316,
            _ => 0,
        }
    }

    /// The syscall (x86_64 number) a syscall profile judges an opcode as: every opcode that
    /// does what a syscall does, reported or not (`IORING_OP_MKDIRAT` is a mkdirat, `READ` a
    /// read); `None` for one that does nothing a syscall does on its own (a timeout, a cancel,
    /// a message to another ring, a buffer registration). Values from `enum io_uring_op`, which
    /// only ever grows.
    pub const fn judged_as(op: u8) -> Option<u32> {
        Some(match op {
            1 => 19,        // READV: readv
            2 => 20,        // WRITEV: writev
            3 => 74,        // FSYNC: fsync
            4 => 17,        // READ_FIXED: pread64
            5 => 18,        // WRITE_FIXED: pwrite64
            8 => 277,       // SYNC_FILE_RANGE: sync_file_range
            17 => 285,      // FALLOCATE: fallocate
            19 => 3,        // CLOSE: close
            21 => 332,      // STATX: statx
            22 | 49 => 0,   // READ, READ_MULTISHOT: read
            23 => 1,        // WRITE: write
            24 => 221,      // FADVISE: fadvise64
            25 => 28,       // MADVISE: madvise
            29 => 233,      // EPOLL_CTL: epoll_ctl
            34 => 48,       // SHUTDOWN: shutdown
            37 => 258,      // MKDIRAT: mkdirat
            38 => 266,      // SYMLINKAT: symlinkat
            39 => 265,      // LINKAT: linkat
            41 => 190,      // FSETXATTR: fsetxattr
            42 => 188,      // SETXATTR: setxattr
            43 => 193,      // FGETXATTR: fgetxattr
            44 => 191,      // GETXATTR: getxattr
            47 => 44,       // SEND_ZC: sendto
            48 => 46,       // SENDMSG_ZC: sendmsg
            50 => 247,      // WAITID: waitid
            51 | 52 => 202, // FUTEX_WAIT, FUTEX_WAKE: futex
            53 => 449,      // FUTEX_WAITV: futex_waitv
            55 => 77,       // FTRUNCATE: ftruncate
            56 => 49,       // BIND: bind
            57 => 50,       // LISTEN: listen
            58 => 45,       // RECV_ZC: recvfrom
            59 => 232,      // EPOLL_WAIT: epoll_wait
            60 => 295,      // READV_FIXED: preadv
            61 => 296,      // WRITEV_FIXED: pwritev
            62 => 293,      // PIPE: pipe2
            _ => match syscall_of(op) {
                0 => return None,
                nr => nr,
            },
        })
    }

    /// The opcode's name, as liburing and the kernel's tracepoints spell it without `IORING_OP_`.
    pub const fn name_of(op: u8) -> &'static str {
        match op {
            OP_OPENAT => "OPENAT",
            OP_OPENAT2 => "OPENAT2",
            OP_CONNECT => "CONNECT",
            OP_ACCEPT => "ACCEPT",
            OP_SOCKET => "SOCKET",
            OP_SEND => "SEND",
            OP_RECV => "RECV",
            OP_SENDMSG => "SENDMSG",
            OP_RECVMSG => "RECVMSG",
            OP_SPLICE => "SPLICE",
            OP_TEE => "TEE",
            OP_UNLINKAT => "UNLINKAT",
            OP_RENAMEAT => "RENAMEAT",
            _ => "OTHER",
        }
    }
}

/// A path the kernel resolved, in `SyscallEvent::data` after the captures (length
/// `cap_len[3]`) and in `ExecEvent::data` after argv (`exe_path_len`): the names of the
/// dentries from the object up to the task's root, leaf first, each followed by a NUL. Written
/// leaf first because the verifier can prove an appending walk safe; userspace reverses it.
pub mod kpath {
    /// The path is the file the syscall returned as a descriptor (open, openat, creat...).
    pub const OF_RET: u32 = 1 << 0;
    /// The path is the file of the syscall's descriptor argument (`SyscallSpec::fd_arg`).
    pub const OF_FD_ARG: u32 = 1 << 1;
    /// The path is the directory a relative path argument starts from: the descriptor
    /// argument `SyscallSpec::dirfd`, or the working directory.
    pub const OF_DIR: u32 = 1 << 2;
    /// The walk stopped at its depth or length limit: the root side of the path is missing.
    pub const TRUNCATED: u32 = 1 << 8;
    /// The object is unlinked (`d_unlinked`): deleted, or never linked (memfd, O_TMPFILE).
    pub const DELETED: u32 = 1 << 9;
    /// The object lives on an internal mount (pipe, socket, memfd, anon inode): the path is
    /// its one name.
    pub const PSEUDO: u32 = 1 << 10;
    /// The walk reached a mount attached nowhere without meeting the task's root: the object
    /// is outside the task's root (a detached bind mount, an escaped chroot, another mount
    /// namespace's file), and the names above that mount are its path within its own file
    /// system.
    pub const OUTSIDE_ROOT: u32 = 1 << 11;
    /// A kernel pointer on the way read as zero: the path is partial.
    pub const BROKEN: u32 = 1 << 12;
    /// The object's file type, `i_mode >> 12` (`stdio::S_IFREG`, `S_IFDIR`...), in these bits:
    /// what `/proc/PID/fd` would need a `stat` for. 0 for an anonymous inode, which has none.
    pub const TYPE_SHIFT: u32 = 16;
    pub const TYPE_MASK: u32 = 0xf << TYPE_SHIFT;
}

/// Byte offset of `data` in a [`SyscallEvent`]; a record is `SYSCALL_DATA_OFFSET + sum(cap_len)`.
pub const SYSCALL_DATA_OFFSET: usize = core::mem::offset_of!(SyscallEvent, data);
/// Byte offset of `data` in an [`ExecEvent`].
pub const EXEC_DATA_OFFSET: usize = core::mem::offset_of!(ExecEvent, data);

/// What the kernel copies from user memory for one argument of a syscall.
pub mod capture {
    pub const NONE: u8 = 0;
    /// A NUL-terminated string (a path) at the pointer in `arg`.
    pub const STR: u8 = 1;
    /// `size` bytes of a struct at the pointer in `arg` (open_how, clone_args, cap data).
    pub const BYTES: u8 = 2;
    /// A socket address at the pointer in `arg`, whose length is the value of `len_arg`.
    pub const SOCKADDR: u8 = 3;
    /// A socket address the kernel writes (accept's peer): read at exit from the pointer in
    /// `arg`, with its length in the user `int` that `len_arg` points to.
    pub const SOCKADDR_OUT: u8 = 4;
    /// An argv array at the pointer in `arg`: strings copied NUL-separated.
    pub const ARGV: u8 = 5;
}

/// How the kernel captures one argument.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Capture {
    /// A [`capture`] kind.
    pub kind: u8,
    /// Which of the six arguments holds the pointer.
    pub arg: u8,
    /// For `SOCKADDR`/`SOCKADDR_OUT`: the argument that holds the length (or points to it).
    pub len_arg: u8,
    pub _pad: u8,
    /// For `BYTES`: the struct size. Otherwise an upper bound (0 = up to `DATA_MAX`).
    pub size: u32,
}

/// Per-syscall entry in the `SYSCALL_SPECS` map, written by userspace. A syscall whose entry has
/// no `INTERESTED` bit costs one array lookup and emits nothing: this is the interest filter.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SyscallSpec {
    /// [`spec_flags`] bits.
    pub flags: u32,
    /// When capture 0 is a path: 1 + the index of the directory descriptor argument it is
    /// relative to, or [`DIRFD_CWD`]; 0 when capture 0 is not a path.
    pub dirfd: u8,
    /// 1 + the index of a descriptor argument whose file the kernel resolves; 0 for none.
    pub fd_arg: u8,
    /// 1 + the [`open_filter`] slot of an open or a call the loaded rules' filter judges
    /// ([`open_filter::SYSCALLS`] then [`open_filter::CALLS`]); 0 for none.
    pub filter_slot: u8,
    /// 1 + the index of the argument the class is read from (an open's flags, mprotect's
    /// `prot`, fcntl's `cmd`); 0 for `creat` ([`open_filter::CREAT_FLAGS`]).
    pub flags_arg: u8,
    pub captures: [Capture; MAX_CAPTURES],
}

/// The kernel's open filter: opens no loaded rule can match are passed over at exit, before
/// the header, the path walk's record and the ring buffer. What the kernel knows of an open
/// before its path is its *class* (success, access mode, a few flag bits); for each class of
/// each filtered syscall userspace writes a verdict, derived from the rules' conditions
/// (`osprey_engine::compile::KernelFilter`): pass, drop, or pass only when a component of the
/// path the kernel resolved is one of a set of names ([`Key`]).
pub mod open_filter {
    /// The opens filtered, by slot (`SyscallSpec::filter_slot` - 1).
    pub const SYSCALLS: [&str; 3] = ["open", "openat", "creat"];
    /// Calls filtered on one argument and their result alone (no path), by slot after the
    /// opens': `mprotect`, `mmap` and `pkey_mprotect` on their protection bits (the W^X rule
    /// wants PROT_WRITE with PROT_EXEC; a freshly exec'd program makes eight mmaps and three
    /// or four mprotects of other kinds), `fcntl` on its command (the reverse-shell rule and
    /// the fd table want F_DUPFD, F_DUPFD_CLOEXEC and F_SETFD; servers make F_GETFL/F_SETFL
    /// calls by the thousand).
    pub const CALLS: [&str; 4] = ["mprotect", "fcntl", "mmap", "pkey_mprotect"];
    /// The argument each call's class is read from.
    pub const CALL_ARGS: [&str; 4] = ["prot", "cmd", "prot", "prot"];
    /// fcntl's index in [`CALLS`]; every other call is classed by protection bits.
    pub const FCNTL_CALL: u32 = 1;
    /// Slots in all: the opens', then the calls'.
    pub const SLOTS: u32 = (SYSCALLS.len() + CALLS.len()) as u32;
    /// Classes of a call: bit 0 success, then three bits of the argument (see [`call_class`]).
    pub const CALL_CLASSES: u32 = 16;
    /// The fcntl commands a class tells apart (bits 1-2 of an fcntl class: 0 is any other).
    pub const FCNTL_CMDS: [(u32, &str); 3] =
        [(0, "F_DUPFD"), (1030, "F_DUPFD_CLOEXEC"), (2, "F_SETFD")];
    /// Bit 3 of an fcntl class: it succeeded with a result of 0, 1 or 2 (a descriptor
    /// duplicated onto stdin, stdout or stderr).
    pub const FCNTL_STDIO: u32 = 8;

    /// Whether a result is a success as the decoder calls it: anything but -4095..-1 (fcntl's
    /// F_GETOWN returns a process group as a negative number).
    #[inline(always)]
    pub fn succeeded(ret: i64) -> bool {
        !(-4095..0).contains(&ret)
    }

    /// The class of call `call` (index into [`CALLS`]) that returned `ret`, with `arg`.
    /// mprotect, mmap, pkey_mprotect: bit 0 success, bits 1-3 PROT_READ, PROT_WRITE,
    /// PROT_EXEC. fcntl: bit 0 success, bits 1-2 the command's index in [`FCNTL_CMDS`] plus
    /// one (0: another command), bit 3 [`FCNTL_STDIO`]. fcntl's command is an `unsigned int`:
    /// the kernel reads the low 32 bits of the register, and so does the class.
    #[inline(always)]
    pub fn call_class(call: u32, ret: i64, arg: u64) -> u32 {
        let ok = succeeded(ret);
        if call != FCNTL_CALL {
            return ok as u32 | ((arg & 7) as u32) << 1;
        }
        let cmd = arg as u32;
        let mut kind = 0;
        let mut i = 0;
        while i < FCNTL_CMDS.len() {
            if FCNTL_CMDS[i].0 == cmd {
                kind = i as u32 + 1;
            }
            i += 1;
        }
        let stdio = if ok && (0..=2).contains(&ret) {
            FCNTL_STDIO
        } else {
            0
        };
        ok as u32 | kind << 1 | stdio
    }

    /// The class of an open or call in filter slot `slot` (`SyscallSpec::filter_slot` - 1)
    /// that returned `ret`, whose class argument is `arg` (ignored for creat).
    #[inline(always)]
    pub fn slot_class(slot: u32, ret: i64, arg: u64) -> u32 {
        match slot {
            0 | 1 => class(ret >= 0, arg),
            2 => class(ret >= 0, CREAT_FLAGS),
            _ => call_class(slot - SYSCALLS.len() as u32, ret, arg),
        }
    }
    /// Class bits: bit 0 success, bits 1-2 the access mode, then one bit per [`FLAGS`] entry.
    pub const CLASS_BITS: u32 = 10;
    pub const CLASSES: u32 = 1 << CLASS_BITS;
    /// The flag bits a class records: O_CREAT, O_EXCL, O_TRUNC, O_APPEND, O_DIRECTORY,
    /// __O_TMPFILE, O_PATH. Whether the decoder names any of these flags (or an access mode)
    /// depends on these bits alone.
    pub const FLAGS: [u64; 7] = [
        0o100, 0o200, 0o1000, 0o2000, 0o200000, 0o20000000, 0o10000000,
    ];
    /// `creat(path, mode)` is `open(path, O_CREAT | O_WRONLY | O_TRUNC, mode)`.
    pub const CREAT_FLAGS: u64 = 0o1101;

    /// The class of an open that succeeded (`ok`) or not, with these flags.
    #[inline(always)]
    pub fn class(ok: bool, flags: u64) -> u32 {
        let mut c = ok as u32 | ((flags & 3) as u32) << 1;
        let mut i = 0;
        while i < FLAGS.len() {
            if flags & FLAGS[i] != 0 {
                c |= 1 << (3 + i);
            }
            i += 1;
        }
        c
    }

    /// The flags of a class: its bits, every other flag clear.
    pub fn class_flags(class: u32) -> u64 {
        let mut f = u64::from(class >> 1) & 3;
        for (i, bit) in FLAGS.iter().enumerate() {
            if class & (1 << (3 + i)) != 0 {
                f |= bit;
            }
        }
        f
    }

    /// A class's verdict (the `OPEN_FILTER` array, index `slot * CLASSES + class`). Zero,
    /// what a map entry nobody wrote holds, passes everything.
    pub const PASS: u32 = 0;
    pub const DROP: u32 = 1;
    /// Pass when a path component named in key set `v & SET` is there; the [`ATOM_BITS`]
    /// say which components the set lists.
    pub const KEYS: u32 = 1 << 31;
    pub const SET: u32 = 0xffff;
    pub const ATOM_BITS: u32 = 16;

    /// Which component of the path a key names: the first (`/etc` of `/etc/pam.d/sshd`),
    /// the directory's own name (`pam.d`) or the file's (`sshd`). The root's are all "", and
    /// a file right under the root has parent "".
    pub const ATOM_TOP: u8 = 0;
    pub const ATOM_PARENT: u8 = 1;
    pub const ATOM_LEAF: u8 = 2;

    /// Bytes of a name in a [`Key`], its NUL included: longer names compare by their first
    /// `NAME_LEN - 1` bytes (a longer one can only match more, never less).
    pub const NAME_LEN: usize = 32;

    /// The two bits of a name in a [`SetSig`] filter, from the name as its key holds it
    /// (`NAME_LEN` bytes, NUL-padded, cut to `NAME_LEN - 1`) read as four native-endian words:
    /// most names of a path miss every key of a set on this alone, without a hash lookup. The
    /// first version (one bit of 64 from the length and the first and last bytes) let
    /// `null` through to a lookup with the default rules' 32 file names.
    #[inline(always)]
    pub fn bloom(words: [u64; NAME_LEN / 8]) -> [u32; 2] {
        const K: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut h = words[0].wrapping_mul(K);
        h = (h ^ words[1]).wrapping_mul(K);
        h = (h ^ words[2]).wrapping_mul(K);
        h = (h ^ words[3]).wrapping_mul(K);
        h ^= h >> 29;
        [(h >> 55) as u32, ((h >> 46) as u32) & (BLOOM_BITS - 1)]
    }

    /// The words [`bloom`] takes for a name: its first `NAME_LEN - 1` bytes, NUL-padded.
    pub fn name_words(name: &[u8]) -> [u64; NAME_LEN / 8] {
        let mut b = [0u8; NAME_LEN];
        let n = name.len().min(NAME_LEN - 1);
        b[..n].copy_from_slice(&name[..n]);
        core::array::from_fn(|i| {
            let mut w = [0u8; 8];
            w.copy_from_slice(&b[8 * i..8 * i + 8]);
            u64::from_ne_bytes(w)
        })
    }

    /// Bits of a [`SetSig`] filter per component.
    pub const BLOOM_BITS: u32 = 512;

    /// A Bloom filter of a key set's names per component (the `OPEN_SETS` array, by set):
    /// both [`bloom`] bits of every name the set lists for that component.
    #[repr(C)]
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    pub struct SetSig {
        pub atoms: [[u64; BLOOM_BITS as usize / 64]; 3],
    }

    impl Default for SetSig {
        fn default() -> Self {
            SetSig {
                atoms: [[0; BLOOM_BITS as usize / 64]; 3],
            }
        }
    }

    impl SetSig {
        pub fn insert(&mut self, atom: u8, name: &[u8]) {
            for bit in bloom(name_words(name)) {
                self.atoms[atom as usize % 3][(bit / 64) as usize] |= 1 << (bit % 64);
            }
        }

        /// Whether a name with these words may be in the set for `atom` (no false negatives).
        #[inline(always)]
        pub fn may_hold(&self, atom: u8, words: [u64; NAME_LEN / 8]) -> bool {
            let a = &self.atoms[atom as usize % 3];
            let [b0, b1] = bloom(words);
            let w = BLOOM_BITS as usize / 64;
            a[(b0 / 64) as usize % w] & (1 << (b0 % 64)) != 0
                && a[(b1 / 64) as usize % w] & (1 << (b1 % 64)) != 0
        }
    }

    /// Key sets the kernel holds.
    pub const MAX_SETS: u32 = 256;

    /// An entry of the `OPEN_KEYS` hash map (the value is unused). 8-aligned, every byte
    /// written: the kernel hashes all of it.
    #[repr(C, align(8))]
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    pub struct Key {
        /// The name, NUL-padded.
        pub name: [u8; NAME_LEN],
        pub set: u16,
        pub atom: u8,
        pub _pad: u8,
        pub _pad2: u32,
    }

    const _: () = assert!(core::mem::size_of::<Key>() == NAME_LEN + 8);
}

pub mod spec_flags {
    /// Some consumer wants this syscall: capture it and emit an event at exit.
    pub const INTERESTED: u32 = 1;
    /// This number, made through the 32-bit entry (`int $0x80` from any process, or a 32-bit
    /// program), is a syscall some consumer wants (`COMPAT_NR`): the task's entry is checked.
    pub const COMPAT_CHECK: u32 = 16;
    /// A return value of 0 is the child of a fork-like call returning: not reported (the
    /// parent's return reports the call).
    pub const PARENT_ONLY: u32 = 2;
    /// A successful call replaced the image (execve): its argument registers are the new
    /// program's, so nothing is captured; the exec record carries path and argv.
    pub const EXEC: u32 = 4;
    /// A non-negative return value is a new descriptor whose file's path the kernel walks.
    pub const RET_FD: u32 = 8;
}

/// `SyscallSpec::dirfd` when the path in capture 0 is relative to the working directory (the
/// syscall has no directory descriptor argument).
pub const DIRFD_CWD: u8 = 7;

/// Profile slots: a profile's verdict table lives in one slot; a live change writes the new
/// table into a free slot, points the cgroups at it, then frees the old one. Twice the number
/// of profiles that can be loaded at once.
pub const MAX_PROFILE_SLOTS: u32 = 64;

/// A slot number that names no profile (a cgroup that is only recorded).
pub const NO_SLOT: u32 = u32::MAX;

/// What a profile does with a syscall. The values are ordered by severity.
pub mod action {
    /// Nothing: no record, no cost beyond the lookups.
    pub const ALLOW: u32 = 0;
    /// A record for the log (a `Notice` alert).
    pub const LOG: u32 = 1;
    /// A record that becomes an alert.
    pub const ALERT: u32 = 2;
    /// `bpf_send_signal(SIGKILL)` at syscall entry, then a record.
    pub const KILL: u32 = 3;
}

/// `PROFILE_VERDICTS` entry bits besides the action in the low byte.
pub mod verdict {
    pub const ACTION_MASK: u32 = 0xff;
    /// The syscall has argument rules in `PROFILE_ARGS`; the low byte is the action when none
    /// of them matches.
    pub const HAS_ARGS: u32 = 0x100;
}

/// Index into `PROFILE_VERDICTS`: one row of `MAX_SYSCALL_NR` entries per slot. Syscall
/// numbers at or above `MAX_SYSCALL_NR` (x32 numbers, `-1`) use the last entry of the row.
#[inline(always)]
pub const fn verdict_index(slot: u32, nr: u64) -> u32 {
    let nr = if nr >= MAX_SYSCALL_NR as u64 {
        MAX_SYSCALL_NR - 1
    } else {
        nr as u32
    };
    slot * MAX_SYSCALL_NR + nr
}

/// Key of a syscall's argument rules in `PROFILE_ARGS`.
#[inline(always)]
pub const fn args_key(slot: u32, nr: u32) -> u32 {
    (slot << 16) | nr
}

/// `PROFILE_SCOPE` value: which profile a cgroup's tasks are judged by.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ProfileScope {
    /// The slot of the profile, or [`NO_SLOT`].
    pub slot: u32,
    /// [`scope_flags`] bits.
    pub flags: u32,
}

pub mod scope_flags {
    /// Mark every syscall the cgroup's tasks make in `PROFILE_RECORD`.
    pub const RECORD: u32 = 1;
}

/// Comparison of one syscall argument register, as seccomp's `SCMP_CMP_*`.
pub mod arg_op {
    pub const EQ: u32 = 1;
    pub const NE: u32 = 2;
    pub const LT: u32 = 3;
    pub const LE: u32 = 4;
    pub const GT: u32 = 5;
    pub const GE: u32 = 6;
    /// `arg & mask == value`.
    pub const MASKED_EQ: u32 = 7;
    /// `arg & value != 0`: any of the bits is set.
    pub const MASKED_ANY: u32 = 8;
    /// The operation, without the width bits.
    pub const OP: u32 = 0xff;
    /// Or'd into the operation: the argument is an `int` (or another 32-bit type) in the
    /// kernel, which reads the low 32 bits of the register; compare those alone. The value
    /// and mask are cut to 32 bits too.
    pub const LOW32: u32 = 0x100;
    /// Likewise for a 16-bit argument (`umode_t`).
    pub const LOW16: u32 = 0x200;
}

/// One condition on an argument register (unsigned 64-bit comparison).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ArgCond {
    /// An [`arg_op`] value.
    pub op: u32,
    /// Argument index, 0..6.
    pub index: u32,
    pub value: u64,
    /// For `MASKED_EQ`: the mask.
    pub mask: u64,
}

pub const MAX_ARG_RULES: usize = 8;
pub const MAX_ARG_CONDS: usize = 3;

/// A rule whose action applies when all its conditions hold.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ArgRule {
    pub action: u32,
    pub nconds: u32,
    pub conds: [ArgCond; MAX_ARG_CONDS],
}

/// `PROFILE_ARGS` value: a syscall's argument rules, tried in order; the first that matches
/// decides.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ArgRules {
    pub nrules: u32,
    pub _pad: u32,
    pub rules: [ArgRule; MAX_ARG_RULES],
}

/// `PROFILE_RECORD` value: one byte per syscall number, set to 1 when a task of the cgroup made
/// it. Bytes, not bits, so that two CPUs marking different syscalls never lose an update.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RecordSeen {
    pub seen: [u8; MAX_SYSCALL_NR as usize],
}

/// `CGROUP_SHARE` keys: the cgroup v2 id, or for a task in the v2 root (every task of a host
/// that runs containers on cgroup v1 alone) this bit with its mount namespace's inode number...
pub const SHARE_KEY_MNT_NS: u64 = 1 << 63;

/// ...except for a task of the node's own mount namespace (`KernelConfig::host_mnt_ns`) in the
/// v2 root: this bit with its process id. On cgroup v2 the node's daemons and sessions each
/// have a cgroup (a systemd unit) of their own; this is the nearest the v2 root offers.
pub const SHARE_KEY_HOST_PROCESS: u64 = 1 << 62;

/// `CGROUP_SHARE` value, by share key (`SHARE_KEY_MNT_NS`): a token bucket for the share's
/// use of the ring buffer while records wait in the ring's reserved room (its last 4 MiB), and the records it lost. An
/// entry exists only for a share used under that pressure or that lost a record; the map is an
/// LRU of 4096.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CgroupShare {
    /// When the bucket was last refilled (boot-time ns; 0: never, a full bucket).
    pub refilled_ns: u64,
    /// Records the share may still write under pressure.
    pub tokens: u64,
    /// The bucket of process lifecycle records (exec, fork, exit), an eighth of the share,
    /// drawn from once `tokens` is spent: a share that floods the ring with syscalls still
    /// reports the programs it runs. Refilled when `lifecycle_refilled_ns` says.
    pub lifecycle_tokens: u64,
    pub lifecycle_refilled_ns: u64,
    /// Records not written: the bucket was empty.
    pub over_share: u64,
    /// Records lost because the ring buffer was full.
    pub ring_full: u64,
}

/// `EventKind::Profile`: a verdict other than `allow`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct ProfileEvent {
    /// Identity at syscall entry.
    pub header: EventHeader,
    /// The syscall number as the task gave it.
    pub nr: u32,
    /// The profile's slot at the time (userspace maps it back to the profile's name).
    pub slot: u32,
    /// The [`action`] decided.
    pub action: u32,
    /// [`taken`] bits: what the kernel did.
    pub taken: u32,
    /// The six argument registers at entry.
    pub args: [u64; 6],
}

pub mod taken {
    /// `bpf_send_signal(SIGKILL)` succeeded: the task dies before it returns to user space.
    pub const KILLED: u32 = 1;
    /// `bpf_send_signal` failed (a kernel thread, or the task is exiting).
    pub const KILL_FAILED: u32 = 2;
    /// The verdict is on an io_uring request that stands for the syscall (`IORING_OP_CONNECT`
    /// for connect...), judged as it was submitted; `args` are the request's.
    pub const IO_URING: u32 = 4;
}

/// Plain loads of kernel memory the verifier has no type for (a descriptor's file, a dentry's
/// parent, a mount): `bpf_rdonly_cast(addr, btf_id)` (Linux 6.2), a kfunc the verifier turns
/// into a register move, makes `addr` a read-only, untrusted pointer to a kernel struct, and a
/// load through it is a plain load the kernel makes fault-safe, where
/// `bpf_probe_read_kernel` is a helper call. The struct is `pt_regs`, whose first member is an
/// `unsigned long` on every architecture: a load at its offset 0 is a number to the verifier
/// whatever the memory holds, as a probe read's is (typed pointers in the path walk's loop
/// multiplied its verifier states past the million-instruction budget).
///
/// The toolchain cannot emit a kfunc call (aya 0.14 resolves none), so the programs carry
/// placeholder instructions: `r2 = TYPE_MAGIC` and a kfunc call to `CALL_MAGIC`, which the
/// agent replaces, before load, with the kernel's BTF ids of `pt_regs` and of
/// `bpf_rdonly_cast`. A program left with a placeholder fails verification (no kfunc has that
/// id), and the agent loads the form without casts.
pub mod cast {
    /// The `imm` of the placeholder kfunc call.
    pub const CALL_MAGIC: u32 = 0x0ca5_7ca1;
    /// The `imm` of the placeholder type id.
    pub const TYPE_MAGIC: u32 = 0x0ca5_7e00;
    /// The struct the casts name.
    pub const TYPE: &str = "pt_regs";

    /// `r2 = imm` (`BPF_ALU64 | BPF_MOV | BPF_K`, dst r2), as the 8 bytes of the instruction
    /// read as a little-endian word.
    pub const fn mov_r2(imm: u32) -> u64 {
        0xb7 | 0x02 << 8 | (imm as u64) << 32
    }

    /// A call of the kfunc with BTF id `imm` in vmlinux (`BPF_JMP | BPF_CALL`, src
    /// `BPF_PSEUDO_KFUNC_CALL`, offset 0).
    pub const fn kfunc_call(imm: u32) -> u64 {
        0x85 | 0x20 << 8 | (imm as u64) << 32
    }
}

/// Kernel facts the programs need that differ between kernels: struct member offsets from the
/// running kernel's BTF and record offsets from tracefs `format` files. Userspace fills this in
/// before load (`EbpfLoader::override_global("CONFIG", ..)`); nothing here is known at build
/// time, because Rust eBPF has no CO-RE relocations.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct KernelConfig {
    /// Set to 1 by userspace; a program seeing 0 was loaded without offsets and does nothing.
    pub ready: u32,
    /// The agent's own process id: its syscalls are not reported, so reading /proc to enrich an
    /// event does not produce more events.
    pub agent_tgid: u32,

    pub task_cred: u32,
    pub task_nsproxy: u32,
    pub task_thread_pid: u32,
    pub task_pid: u32,
    pub task_tgid: u32,
    pub task_mm: u32,
    pub task_exit_code: u32,
    pub cred_euid: u32,
    pub cred_egid: u32,
    /// `cred.uid`, `cred.gid` (the real ids) and `task_struct.comm`: read as plain loads in
    /// the BTF tracepoint, where the helpers giving them cost more than the loads.
    pub cred_uid: u32,
    pub cred_gid: u32,
    pub task_comm: u32,
    /// `kernfs_node.id`: a cgroup's id (its directory's inode number, the cgroup id the
    /// helper gives), at the end of `task->cgroups->dfl_cgrp->kn`.
    pub kernfs_id: u32,
    /// `cred.cap_effective` and `cred.cap_permitted` (`kernel_cap_t`: a u64 since 6.3, two
    /// u32 words before, the same bytes either way on little-endian).
    pub cred_cap_effective: u32,
    pub cred_cap_permitted: u32,
    pub nsproxy_mnt_ns: u32,
    /// Offset of `ns.inum` inside `struct mnt_namespace`.
    pub mnt_ns_inum: u32,
    pub pid_level: u32,
    pub pid_numbers: u32,
    pub upid_size: u32,
    pub upid_nr: u32,
    pub upid_ns: u32,
    /// Offset of `ns.inum` inside `struct pid_namespace`.
    pub pid_ns_inum: u32,
    pub mm_arg_start: u32,
    pub mm_arg_end: u32,
    pub mm_env_start: u32,
    pub mm_env_end: u32,
    /// Offsets in `struct pt_regs` of the six syscall argument registers, in ABI order.
    pub regs_args: [u32; 6],
    /// Offset in `struct pt_regs` of the syscall number (`orig_ax` on x86_64).
    pub regs_nr: u32,
    /// Offsets in `struct pt_regs` of the 32-bit entry's six argument registers (bx, cx, dx,
    /// si, di, bp), whose low 32 bits are what the kernel reads.
    pub regs_compat_args: [u32; 6],
    /// Offset in `task_struct` of `thread_info.status`, whose `compat_status` bit says the
    /// current syscall came through the 32-bit entry (`in_ia32_syscall()`); 0 where the kernel
    /// has no such entry.
    pub task_compat: u32,
    pub compat_status: u32,
    /// Offset in `struct pt_regs` of the user code segment (`cs`), and the selector of 64-bit
    /// user code (`__USER_CS`, 0x33 on x86_64): a call through the 32-bit entry made from
    /// code running in 64-bit mode (`int $0x80` in an x86_64 program) is flagged
    /// [`trunc::COMPAT_FROM_64`]; a 32-bit program's code runs in `__USER32_CS`.
    pub regs_cs: u32,
    pub user64_cs: u32,
    /// `struct linux_binprm`: the path given to exec (`filename`) and the one whose file was
    /// loaded last (`interp`: the same pointer unless an interpreter was loaded for it).
    pub bprm_filename: u32,
    pub bprm_interp: u32,
    /// `struct linux_binprm`: the first bytes of the file exec loaded last (`buf`).
    pub bprm_buf: u32,
    /// `sched_process_exit` record: offset of `bool group_dead`, or `u32::MAX` on kernels
    /// whose record lacks it (before 6.x the field did not exist).
    pub exit_group_dead: u32,
    pub task_group_leader: u32,
    /// `task_struct.cgroups` → `css_set.dfl_cgrp` → `cgroup.kn` → `kernfs_node.name` and
    /// `kernfs_node.__parent` (`parent` before 6.15).
    pub task_cgroups: u32,
    pub css_set_dfl_cgrp: u32,
    pub cgroup_kn: u32,
    pub kernfs_name: u32,
    pub kernfs_parent: u32,
    /// `mm_struct.exe_file` → `file.f_inode`, and `file.f_path.dentry` → `dentry.d_name.name`.
    pub mm_exe_file: u32,
    pub file_inode: u32,
    pub file_dentry: u32,
    pub dentry_name: u32,
    /// `inode.i_sb` → `super_block.s_magic` and `.s_flags` (`SB_RDONLY`); `vfsmount.mnt_flags`
    /// (`MNT_READONLY`).
    pub inode_sb: u32,
    pub sb_magic: u32,
    pub sb_flags: u32,
    pub vfsmount_flags: u32,
    /// `inode.i_mode`; and for a socket's file, `file.private_data` (its `struct socket`) →
    /// `socket.sk` → `sock.__sk_common.skc_family`.
    pub inode_mode: u32,
    pub file_private_data: u32,
    pub socket_sk: u32,
    pub sock_family: u32,
    /// 1 when overlayfs is built in and its `ovl_inode` offsets below are valid.
    pub ovl_ok: u32,
    /// Offset of `vfs_inode` in `struct ovl_inode` (the overlay inode embeds the VFS one).
    pub ovl_vfs_inode: u32,
    pub ovl_upperdentry: u32,
    pub ovl_oe: u32,
    pub ovl_entry_numlower: u32,
    /// Kernel paths: `task_struct.fs` → `fs_struct.root`/`.pwd` (each a `struct path`), and
    /// `task_struct.files` → `files_struct.fdt` → `fdtable.max_fds`/`.fd` (the descriptor
    /// array).
    pub task_fs: u32,
    pub fs_root: u32,
    pub fs_pwd: u32,
    pub task_files: u32,
    pub files_fdt: u32,
    /// `files_struct.fdtab`: the descriptor table every process starts with, embedded in the
    /// `files_struct`; `fdt` points at it until the process needs more than 64 descriptors.
    pub files_fdtab: u32,
    pub fdt_max_fds: u32,
    pub fdt_fd: u32,
    /// Offsets inside `struct path`.
    pub path_mnt: u32,
    pub path_dentry: u32,
    /// `file.f_path`.
    pub file_path: u32,
    /// `dentry.d_parent`, `dentry.d_inode`, `dentry.d_hash.pprev` (NULL when unhashed).
    pub dentry_parent: u32,
    pub dentry_inode: u32,
    pub dentry_hash_pprev: u32,
    /// `dentry.d_name.len`, and the name stored in the dentry itself when it is short
    /// (`d_shortname`, `d_iname` before Linux 6.14; 0 when not 8-aligned: then never read
    /// there).
    pub dentry_name_len: u32,
    pub dentry_iname: u32,
    pub inode_ino: u32,
    /// `vfsmount.mnt_root`; `struct mount` embeds the vfsmount at `mount.mnt`, and links to
    /// its parent mount and the dentry it is mounted on.
    pub vfsmount_root: u32,
    pub mount_mnt: u32,
    pub mount_parent: u32,
    pub mount_mountpoint: u32,

    /// io_uring (agent-ebpf/src/uring.rs). `uring_ok` is 1 when the kernel's tracepoints carry
    /// the request (`io_uring_submit_req`, or `io_uring_submit_sqe` with a `req` field; Linux
    /// 5.19) and every offset below was found; the programs are attached only then.
    pub uring_ok: u32,
    /// Offsets in the submission and completion tracepoints' records (tracefs formats).
    pub uring_submit_req: u32,
    pub uring_submit_opcode: u32,
    pub uring_submit_flags: u32,
    pub uring_complete_req: u32,
    pub uring_complete_res: u32,
    /// `io_kiocb.cmd` (where each opcode's own struct lives), `io_kiocb.opcode`, and
    /// `io_kiocb.cqe.fd` (the descriptor of an opcode that needs a file).
    pub req_cmd: u32,
    pub req_opcode: u32,
    pub req_fd: u32,
    /// `filename.name`: the kernel's copy of a path, made when the request was prepared.
    pub filename_name: u32,
    /// `io_open`: dfd, file_slot, filename, how.flags, how.mode.
    pub open_dfd: u32,
    pub open_file_slot: u32,
    pub open_filename: u32,
    pub open_flags: u32,
    pub open_mode: u32,
    /// `io_unlink`: dfd, flags, filename.
    pub unlink_dfd: u32,
    pub unlink_flags: u32,
    pub unlink_filename: u32,
    /// `io_rename`: old_dfd, new_dfd, oldpath, newpath, flags.
    pub rename_old_dfd: u32,
    pub rename_new_dfd: u32,
    pub rename_oldpath: u32,
    pub rename_newpath: u32,
    pub rename_flags: u32,
    /// `io_connect`: addr (a user pointer, read as connect(2)'s), addr_len.
    pub connect_addr: u32,
    pub connect_addr_len: u32,
    /// `io_accept`: flags, file_slot.
    pub accept_flags: u32,
    pub accept_file_slot: u32,
    /// `io_socket`: domain, type, protocol, file_slot.
    pub socket_domain: u32,
    pub socket_type: u32,
    pub socket_protocol: u32,
    pub socket_file_slot: u32,
    /// `io_sr_msg`: the buffer (or msghdr) pointer, len, msg_flags.
    pub sr_buf: u32,
    pub sr_len: u32,
    pub sr_msg_flags: u32,
    /// `io_splice` (also tee's): splice_fd_in, len, flags.
    pub splice_fd_in: u32,
    pub splice_len: u32,
    pub splice_flags: u32,

    /// Records a cgroup may write per millisecond once the ring buffer's last 4 MiB is in use
    /// (falling to an eighth as it fills, none when full; bursts of four milliseconds' worth),
    /// 0: no limit. Its share of that room, so that one noisy container cannot fill the ring
    /// for every other. See agent-ebpf/src/output.rs.
    pub cgroup_share: u32,
    /// The ring buffer's size in bytes, as created (a power of two): one helper call fewer per
    /// record than asking the ring.
    pub ring_bytes: u32,
    /// The node's mount namespace (pid 1's; 0: unknown). Its processes in the v2 root each have
    /// a share (`SHARE_KEY_HOST_PROCESS`) rather than one for all of them.
    pub host_mnt_ns: u32,
    /// A ring-buffer reader that said (the `READER` map) it looks within this many
    /// microseconds is not woken by the kernel programs (agent-ebpf/src/output.rs); userspace
    /// polls at least this often while events flow (agent/src/sensor/mod.rs).
    pub looks_soon_us: u32,

    /// For each group of fields the programs read together (`span::*`), the bytes that hold
    /// them all, read with one probe read; see `Span`. Filled by `KernelConfig::fill_spans`.
    pub spans: [Span; span::COUNT],
}

/// A run of a kernel struct's bytes that holds a group of fields: from `lo` (8-aligned), `len`
/// bytes, at most [`SPAN_MAX`]; `len` 0 when the fields lie further apart, and then each is
/// read alone. Each probe read costs a fault-safe copy's set-up, the bulk of its price, so a
/// group read at once costs about one field's read.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Span {
    pub lo: u32,
    pub len: u32,
}

/// The longest [`Span`]: the kernel programs' per-CPU block.
pub const SPAN_MAX: u32 = 256;

impl Span {
    /// The span of the 64-bit words at `offs` (each rounded down to 8 bytes).
    pub const fn of<const N: usize>(offs: [u32; N]) -> Span {
        let mut lo = u32::MAX;
        let mut hi = 0;
        let mut i = 0;
        while i < N {
            let w = offs[i] & !7;
            if w < lo {
                lo = w;
            }
            if w + 8 > hi {
                hi = w + 8;
            }
            i += 1;
        }
        if N == 0 || hi - lo > SPAN_MAX {
            Span { lo: 0, len: 0 }
        } else {
            Span { lo, len: hi - lo }
        }
    }
}

/// The groups of fields with a [`Span`] each, indices into `KernelConfig::spans`; each has a
/// `KernelConfig` method listing its fields, which both sides use, so the span userspace
/// computes and the fields the programs take out of it cannot disagree.
pub mod span {
    /// `pt_regs`: the six argument registers.
    pub const REGS: usize = 0;
    /// `task_struct`: cred, fs, files, nsproxy.
    pub const TASK: usize = 1;
    /// `cred`: euid, egid, the permitted and effective capabilities.
    pub const CRED: usize = 2;
    /// `pid`: level, and `numbers[0..3]`'s nr and ns.
    pub const PID: usize = 3;
    /// `path`: mnt, dentry.
    pub const PATH: usize = 4;
    /// `fdtable`: max_fds, fd.
    pub const FDT: usize = 5;
    /// `mount`: mnt_parent, mnt_mountpoint, mnt.mnt_root.
    pub const MOUNT: usize = 6;
    /// `dentry`, the walk's first: d_parent, d_name.name, d_inode, d_hash.pprev, d_name.len
    /// and the first `INLINE_NAME` bytes of the short name stored inside it.
    pub const DENTRY: usize = 7;
    /// `inode`: i_ino, i_sb, i_mode.
    pub const INODE: usize = 8;
    /// `mm_struct`: arg_start, arg_end.
    pub const MM_ARGS: usize = 9;
    /// `files_struct`: fdt, and the embedded table's max_fds and fd.
    pub const FILES: usize = 10;
    /// `dentry`, every level of a walk above the first (and every level of the open filter's):
    /// d_parent, d_name.len, d_name.name and the first `INLINE_NAME` bytes of the short name
    /// stored inside it.
    pub const NAMED: usize = 11;
    pub const COUNT: usize = 12;
}

/// The bytes of a dentry's short name (`d_shortname`, `d_iname` before 6.14: 32 or 40 bytes
/// inside the dentry, where a name shorter than that is kept) that a walk reads with the
/// dentry itself: a name of fewer bytes costs no read of its own.
pub const INLINE_NAME: usize = 32;
const _: () = assert!(INLINE_NAME == open_filter::NAME_LEN);

/// The pid levels whose entry the `span::PID` group holds: the host, a container, a container
/// in a container.
pub const PID_LEVELS_SPANNED: u32 = 3;

impl KernelConfig {
    /// All zeroes: what the kernel programs see until userspace overrides it (`ready == 0`).
    pub const ZERO: Self = {
        // SAFETY: a struct of integers; all-zero is a valid value.
        unsafe { core::mem::zeroed() }
    };

    pub const fn task_words(&self) -> [u32; 4] {
        [
            self.task_cred,
            self.task_fs,
            self.task_files,
            self.task_nsproxy,
        ]
    }

    pub const fn cred_words(&self) -> [u32; 4] {
        [
            self.cred_euid,
            self.cred_egid,
            self.cred_cap_permitted,
            self.cred_cap_effective,
        ]
    }

    /// Offset in `struct pid` of `numbers[level]`'s `field`.
    pub const fn upid_at(&self, level: u32, field: u32) -> u32 {
        self.pid_numbers + level * self.upid_size + field
    }

    /// The level, then nr and ns of each of the `PID_LEVELS_SPANNED` levels.
    pub const fn pid_words(&self) -> [u32; 1 + 2 * PID_LEVELS_SPANNED as usize] {
        [
            self.pid_level,
            self.upid_at(0, self.upid_nr),
            self.upid_at(0, self.upid_ns),
            self.upid_at(1, self.upid_nr),
            self.upid_at(1, self.upid_ns),
            self.upid_at(2, self.upid_nr),
            self.upid_at(2, self.upid_ns),
        ]
    }

    pub const fn path_words(&self) -> [u32; 2] {
        [self.path_mnt, self.path_dentry]
    }

    pub const fn fdt_words(&self) -> [u32; 2] {
        [self.fdt_max_fds, self.fdt_fd]
    }

    /// `files->fdt`, then the embedded table's `max_fds` and `fd`.
    pub const fn files_words(&self) -> [u32; 3] {
        [
            self.files_fdt,
            self.files_fdtab + self.fdt_max_fds,
            self.files_fdtab + self.fdt_fd,
        ]
    }

    /// Relative to the `struct mount`.
    pub const fn mount_words(&self) -> [u32; 3] {
        [
            self.mount_parent,
            self.mount_mountpoint,
            self.mount_mnt + self.vfsmount_root,
        ]
    }

    pub const fn dentry_words(&self) -> [u32; 9] {
        let i = self.dentry_iname;
        [
            self.dentry_parent,
            self.dentry_name,
            self.dentry_inode,
            self.dentry_hash_pprev,
            self.dentry_name_len,
            i,
            i + 8,
            i + 16,
            i + 24,
        ]
    }

    pub const fn dentry_named_words(&self) -> [u32; 7] {
        let i = self.dentry_iname;
        [
            self.dentry_parent,
            self.dentry_name_len,
            self.dentry_name,
            i,
            i + 8,
            i + 16,
            i + 24,
        ]
    }

    pub const fn inode_words(&self) -> [u32; 3] {
        [self.inode_ino, self.inode_sb, self.inode_mode]
    }

    pub const fn mm_args_words(&self) -> [u32; 4] {
        [
            self.mm_arg_start,
            self.mm_arg_end,
            self.mm_env_start,
            self.mm_env_end,
        ]
    }

    /// Computes `spans` from the offsets.
    pub fn fill_spans(&mut self) {
        let mut s = [Span::default(); span::COUNT];
        s[span::REGS] = Span::of(self.regs_args);
        s[span::TASK] = Span::of(self.task_words());
        s[span::CRED] = Span::of(self.cred_words());
        s[span::PID] = Span::of(self.pid_words());
        s[span::PATH] = Span::of(self.path_words());
        s[span::FDT] = Span::of(self.fdt_words());
        s[span::FILES] = Span::of(self.files_words());
        s[span::MOUNT] = Span::of(self.mount_words());
        s[span::DENTRY] = Span::of(self.dentry_words());
        s[span::NAMED] = Span::of(self.dentry_named_words());
        s[span::INODE] = Span::of(self.inode_words());
        s[span::MM_ARGS] = Span::of(self.mm_args_words());
        self.spans = s;
    }
}

#[cfg(feature = "user")]
mod pod {
    // SAFETY: all of these are `#[repr(C)]`, made only of integers and integer arrays, with
    // explicit padding fields, so every bit pattern is valid.
    unsafe impl aya::Pod for super::KernelConfig {}
    unsafe impl aya::Pod for super::SyscallSpec {}
    unsafe impl aya::Pod for super::open_filter::Key {}
    unsafe impl aya::Pod for super::open_filter::SetSig {}
    unsafe impl aya::Pod for super::ProfileScope {}
    unsafe impl aya::Pod for super::ArgRules {}
    unsafe impl aya::Pod for super::RecordSeen {}
    unsafe impl aya::Pod for super::CgroupShare {}
}

// The layout is a contract: these sizes change only together with both sides.
const _: () = assert!(core::mem::size_of::<EventHeader>() == 96);
const _: () = assert!(core::mem::size_of::<ForkEvent>() == 120);
const _: () = assert!(core::mem::size_of::<ExitEvent>() == 104);
const _: () =
    assert!(EXEC_DATA_OFFSET == 120 + NAME_LEN + 2 * CGROUP_NAME_LEN + 8 + PRELOAD_LEN + 16);
const _: () = assert!(SYSCALL_DATA_OFFSET == 96 + 8 + 8 + 8 + 48 + 8 + 8 + 8 + 8);
// The kernel side clears the four lengths with one u64 store (agent-ebpf/src/syscall.rs).
const _: () = assert!(core::mem::offset_of!(SyscallEvent, cap_len) % 8 == 0);
const _: () = assert!(core::mem::size_of::<SyscallSpec>() == 8 + 8 * MAX_CAPTURES);
const _: () = assert!(core::mem::size_of::<ProfileEvent>() == 96 + 16 + 48);
const _: () = assert!(core::mem::size_of::<ProfileScope>() == 8);
const _: () = assert!(core::mem::size_of::<ArgCond>() == 24);
const _: () = assert!(core::mem::size_of::<ArgRule>() == 8 + 24 * MAX_ARG_CONDS);
const _: () =
    assert!(core::mem::size_of::<ArgRules>() == 8 + (8 + 24 * MAX_ARG_CONDS) * MAX_ARG_RULES);
const _: () = assert!(MAX_SYSCALL_NR <= 1 << 16 && MAX_PROFILE_SLOTS < 1 << 15);
const _: () = assert!(DATA_BUF.is_power_of_two() && DATA_MAX.is_power_of_two());

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_span_covers_every_word_from_the_lowest() {
        // struct cred on 6.x: euid 20, egid 24, cap_permitted 48, cap_effective 56.
        assert_eq!(Span::of([20, 24, 48, 56]), Span { lo: 16, len: 48 });
        // A 32-bit field at offset 4 is in the word at 0.
        assert_eq!(Span::of([4, 144]), Span { lo: 0, len: 152 });
        assert_eq!(Span::of([8]), Span { lo: 8, len: 8 });
    }

    #[test]
    fn fields_further_apart_than_the_block_are_read_alone() {
        assert_eq!(
            Span::of([0, SPAN_MAX - 8]),
            Span {
                lo: 0,
                len: SPAN_MAX
            }
        );
        assert_eq!(Span::of([0, SPAN_MAX]), Span { lo: 0, len: 0 });
        assert_eq!(Span::of::<0>([]), Span { lo: 0, len: 0 });
    }

    #[test]
    fn fill_spans_uses_the_groups_the_programs_read() {
        let mut c = KernelConfig::ZERO;
        c.task_cred = 1736;
        c.task_fs = 1816;
        c.task_files = 1824;
        c.task_nsproxy = 1840;
        c.regs_args = [112, 104, 96, 56, 72, 64];
        c.pid_level = 4;
        c.pid_numbers = 144;
        c.upid_size = 16;
        c.upid_ns = 8;
        c.files_fdt = 32;
        c.files_fdtab = 40;
        c.fdt_fd = 8;
        c.fill_spans();
        assert_eq!(c.spans[span::TASK], Span { lo: 1736, len: 112 });
        assert_eq!(c.spans[span::REGS], Span { lo: 56, len: 64 });
        // The level and numbers[0..3]: up to numbers[2].ns at 144 + 32 + 8.
        assert_eq!(c.spans[span::PID], Span { lo: 0, len: 192 });
        // fdt, then the embedded fdtab's max_fds (at 40) and fd (at 48).
        assert_eq!(c.spans[span::FILES], Span { lo: 32, len: 24 });
    }
}
