//! The syscalls the sensor understands: numbers on this architecture, argument names (the
//! kernel's `syscalls:sys_enter_*` names, which are also Falco's `evt.arg.*` names), argument
//! types, and from those, what the kernel must copy from user memory ([`SyscallDef::spec`]).
//!
//! The kernel programs carry no syscall table: userspace writes a [`SyscallSpec`] per syscall of
//! interest into the `SYSCALL_SPECS` map, so adding a syscall here needs no kernel change.

use agent_common::{Capture, MAX_CAPTURES, SyscallSpec, capture, spec_flags};

/// How an argument is decoded (and, for pointers, captured).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ArgType {
    Int,
    Fd,
    /// A uid or gid.
    Id,
    Mode,
    /// A pointer not followed.
    Ptr,
    /// A NUL-terminated path, captured; resolved against the cwd when relative.
    Path,
    /// A NUL-terminated string, captured.
    Str,
    /// A socket address; the length is the value of argument `len_arg`.
    SockAddr {
        len_arg: u8,
    },
    /// A socket address the kernel writes; the length is in the `int` argument `len_arg`
    /// points to. Read at exit.
    SockAddrOut {
        len_arg: u8,
    },
    Argv,
    /// A bit set named by a table.
    Flags(&'static [(u64, &'static str)]),
    /// `open(2)` flags: an access mode plus bits.
    OpenFlags,
    /// An enumeration named by a table.
    Enum(&'static [(i64, &'static str)]),
    /// `socket(2)` type: an enumeration plus SOCK_NONBLOCK/SOCK_CLOEXEC bits.
    SockType,
    /// `struct open_how` (openat2): decoded into flags, mode and resolve.
    OpenHow,
    /// `struct clone_args` (clone3): its first field, the flags.
    CloneArgs,
    /// `struct __user_cap_data_struct[2]` (capset): effective, permitted, inheritable.
    CapData,
}

#[derive(Clone, Copy, Debug)]
pub struct ArgDef {
    pub name: &'static str,
    pub ty: ArgType,
}

#[derive(Debug)]
pub struct SyscallDef {
    pub name: &'static str,
    pub nr: u32,
    pub args: &'static [ArgDef],
}

impl ArgType {
    /// The capture kind and fixed size for an argument, if the kernel must copy memory.
    fn capture(self) -> Option<(u8, u32, u8)> {
        match self {
            ArgType::Path | ArgType::Str => Some((capture::STR, 0, 0)),
            ArgType::SockAddr { len_arg } => Some((capture::SOCKADDR, 0, len_arg)),
            ArgType::SockAddrOut { len_arg } => Some((capture::SOCKADDR_OUT, 0, len_arg)),
            ArgType::Argv => Some((capture::ARGV, 0, 0)),
            ArgType::OpenHow => Some((capture::BYTES, 24, 0)),
            ArgType::CloneArgs => Some((capture::BYTES, 8, 0)),
            ArgType::CapData => Some((capture::BYTES, 24, 0)),
            _ => None,
        }
    }
}

impl SyscallDef {
    /// Which capture slot each argument uses, by argument index. The kernel reads argv only in
    /// slot 1 and a kernel-written socket address only in slot 2 (where they are simplest for
    /// the verifier); other captures take the free slots in argument order.
    pub fn capture_slots(&self) -> [Option<usize>; 6] {
        let mut slots = [None; 6];
        let mut used = [false; MAX_CAPTURES];
        for (i, a) in self.args.iter().enumerate() {
            match a.ty.capture() {
                Some((capture::ARGV, ..)) => {
                    slots[i] = Some(1);
                    used[1] = true;
                }
                Some((capture::SOCKADDR_OUT, ..)) => {
                    slots[i] = Some(2);
                    used[2] = true;
                }
                _ => {}
            }
        }
        for (i, a) in self.args.iter().enumerate() {
            if slots[i].is_some() || a.ty.capture().is_none() {
                continue;
            }
            if let Some(free) = used.iter().position(|u| !u) {
                used[free] = true;
                slots[i] = Some(free);
            }
        }
        slots
    }

    /// The kernel's capture plan for this syscall.
    pub fn spec(&self) -> SyscallSpec {
        let mut spec = SyscallSpec {
            flags: spec_flags::INTERESTED,
            ..Default::default()
        };
        for (i, (slot, a)) in self.capture_slots().iter().zip(self.args).enumerate() {
            let (Some(slot), Some((kind, size, len_arg))) = (slot, a.ty.capture()) else {
                continue;
            };
            spec.captures[*slot] = Capture {
                kind,
                arg: i as u8,
                len_arg,
                _pad: 0,
                size,
            };
        }
        spec
    }
}

/// Looks a syscall up by name.
pub fn by_name(name: &str) -> Option<&'static SyscallDef> {
    SYSCALLS.iter().find(|s| s.name == name)
}

/// Looks a syscall up by number.
pub fn by_nr(nr: u32) -> Option<&'static SyscallDef> {
    SYSCALLS.iter().find(|s| s.nr == nr)
}

macro_rules! args {
    ($($name:literal : $ty:expr),* $(,)?) => {
        &[$(ArgDef { name: $name, ty: $ty }),*]
    };
}

use ArgType::*;

pub const OPEN_BITS: &[(u64, &str)] = &[
    (0o100, "O_CREAT"),
    (0o200, "O_EXCL"),
    (0o400, "O_NOCTTY"),
    (0o1000, "O_TRUNC"),
    (0o2000, "O_APPEND"),
    (0o4000, "O_NONBLOCK"),
    (0o4010000, "O_SYNC"),
    (0o10000, "O_DSYNC"),
    (0o20000, "O_ASYNC"),
    (0o40000, "O_DIRECT"),
    (0o100000, "O_LARGEFILE"),
    (0o20200000, "O_TMPFILE"),
    (0o200000, "O_DIRECTORY"),
    (0o400000, "O_NOFOLLOW"),
    (0o1000000, "O_NOATIME"),
    (0o2000000, "O_CLOEXEC"),
    (0o10000000, "O_PATH"),
];

pub const CLONE_FLAGS: &[(u64, &str)] = &[
    (0x80, "CLONE_NEWTIME"),
    (0x100, "CLONE_VM"),
    (0x200, "CLONE_FS"),
    (0x400, "CLONE_FILES"),
    (0x800, "CLONE_SIGHAND"),
    (0x1000, "CLONE_PIDFD"),
    (0x2000, "CLONE_PTRACE"),
    (0x4000, "CLONE_VFORK"),
    (0x8000, "CLONE_PARENT"),
    (0x10000, "CLONE_THREAD"),
    (0x20000, "CLONE_NEWNS"),
    (0x40000, "CLONE_SYSVSEM"),
    (0x80000, "CLONE_SETTLS"),
    (0x100000, "CLONE_PARENT_SETTID"),
    (0x200000, "CLONE_CHILD_CLEARTID"),
    (0x400000, "CLONE_DETACHED"),
    (0x800000, "CLONE_UNTRACED"),
    (0x1000000, "CLONE_CHILD_SETTID"),
    (0x2000000, "CLONE_NEWCGROUP"),
    (0x4000000, "CLONE_NEWUTS"),
    (0x8000000, "CLONE_NEWIPC"),
    (0x10000000, "CLONE_NEWUSER"),
    (0x20000000, "CLONE_NEWPID"),
    (0x40000000, "CLONE_NEWNET"),
    (0x80000000, "CLONE_IO"),
];

pub const MOUNT_FLAGS: &[(u64, &str)] = &[
    (1, "MS_RDONLY"),
    (2, "MS_NOSUID"),
    (4, "MS_NODEV"),
    (8, "MS_NOEXEC"),
    (16, "MS_SYNCHRONOUS"),
    (32, "MS_REMOUNT"),
    (64, "MS_MANDLOCK"),
    (128, "MS_DIRSYNC"),
    (256, "MS_NOSYMFOLLOW"),
    (1024, "MS_NOATIME"),
    (2048, "MS_NODIRATIME"),
    (4096, "MS_BIND"),
    (8192, "MS_MOVE"),
    (16384, "MS_REC"),
    (32768, "MS_SILENT"),
    (1 << 16, "MS_POSIXACL"),
    (1 << 17, "MS_UNBINDABLE"),
    (1 << 18, "MS_PRIVATE"),
    (1 << 19, "MS_SLAVE"),
    (1 << 20, "MS_SHARED"),
    (1 << 21, "MS_RELATIME"),
    (1 << 24, "MS_STRICTATIME"),
    (1 << 25, "MS_LAZYTIME"),
];

pub const UMOUNT_FLAGS: &[(u64, &str)] = &[
    (1, "MNT_FORCE"),
    (2, "MNT_DETACH"),
    (4, "MNT_EXPIRE"),
    (8, "UMOUNT_NOFOLLOW"),
];

pub const AT_FLAGS: &[(u64, &str)] = &[
    (0x100, "AT_SYMLINK_NOFOLLOW"),
    (0x200, "AT_REMOVEDIR"),
    (0x400, "AT_SYMLINK_FOLLOW"),
    (0x800, "AT_NO_AUTOMOUNT"),
    (0x1000, "AT_EMPTY_PATH"),
];

pub const RENAME_FLAGS: &[(u64, &str)] = &[
    (1, "RENAME_NOREPLACE"),
    (2, "RENAME_EXCHANGE"),
    (4, "RENAME_WHITEOUT"),
];

pub const MEMFD_FLAGS: &[(u64, &str)] = &[
    (1, "MFD_CLOEXEC"),
    (2, "MFD_ALLOW_SEALING"),
    (4, "MFD_HUGETLB"),
    (8, "MFD_NOEXEC_SEAL"),
    (0x10, "MFD_EXEC"),
];

pub const SOCK_FLAGS: &[(u64, &str)] = &[(0o4000, "SOCK_NONBLOCK"), (0o2000000, "SOCK_CLOEXEC")];

pub const MODULE_INIT_FLAGS: &[(u64, &str)] = &[
    (1, "MODULE_INIT_IGNORE_MODVERSIONS"),
    (2, "MODULE_INIT_IGNORE_VERMAGIC"),
    (4, "MODULE_INIT_COMPRESSED_FILE"),
];

pub const SOCKET_FAMILIES: &[(i64, &str)] = &[
    (0, "AF_UNSPEC"),
    (1, "AF_UNIX"),
    (2, "AF_INET"),
    (10, "AF_INET6"),
    (16, "AF_NETLINK"),
    (17, "AF_PACKET"),
    (31, "AF_BLUETOOTH"),
    (38, "AF_ALG"),
    (40, "AF_VSOCK"),
    (44, "AF_XDP"),
];

pub const SOCKET_TYPES: &[(i64, &str)] = &[
    (1, "SOCK_STREAM"),
    (2, "SOCK_DGRAM"),
    (3, "SOCK_RAW"),
    (4, "SOCK_RDM"),
    (5, "SOCK_SEQPACKET"),
    (6, "SOCK_DCCP"),
    (10, "SOCK_PACKET"),
];

pub const PTRACE_REQUESTS: &[(i64, &str)] = &[
    (0, "PTRACE_TRACEME"),
    (1, "PTRACE_PEEKTEXT"),
    (2, "PTRACE_PEEKDATA"),
    (3, "PTRACE_PEEKUSR"),
    (4, "PTRACE_POKETEXT"),
    (5, "PTRACE_POKEDATA"),
    (6, "PTRACE_POKEUSR"),
    (7, "PTRACE_CONT"),
    (8, "PTRACE_KILL"),
    (9, "PTRACE_SINGLESTEP"),
    (12, "PTRACE_GETREGS"),
    (13, "PTRACE_SETREGS"),
    (14, "PTRACE_GETFPREGS"),
    (15, "PTRACE_SETFPREGS"),
    (16, "PTRACE_ATTACH"),
    (17, "PTRACE_DETACH"),
    (24, "PTRACE_SYSCALL"),
    (0x4200, "PTRACE_SETOPTIONS"),
    (0x4201, "PTRACE_GETEVENTMSG"),
    (0x4202, "PTRACE_GETSIGINFO"),
    (0x4203, "PTRACE_SETSIGINFO"),
    (0x4204, "PTRACE_GETREGSET"),
    (0x4205, "PTRACE_SETREGSET"),
    (0x4206, "PTRACE_SEIZE"),
    (0x4207, "PTRACE_INTERRUPT"),
    (0x4208, "PTRACE_LISTEN"),
];

pub const BPF_COMMANDS: &[(i64, &str)] = &[
    (0, "BPF_MAP_CREATE"),
    (1, "BPF_MAP_LOOKUP_ELEM"),
    (2, "BPF_MAP_UPDATE_ELEM"),
    (3, "BPF_MAP_DELETE_ELEM"),
    (4, "BPF_MAP_GET_NEXT_KEY"),
    (5, "BPF_PROG_LOAD"),
    (6, "BPF_OBJ_PIN"),
    (7, "BPF_OBJ_GET"),
    (8, "BPF_PROG_ATTACH"),
    (9, "BPF_PROG_DETACH"),
    (10, "BPF_PROG_TEST_RUN"),
    (11, "BPF_PROG_GET_NEXT_ID"),
    (12, "BPF_MAP_GET_NEXT_ID"),
    (13, "BPF_PROG_GET_FD_BY_ID"),
    (14, "BPF_MAP_GET_FD_BY_ID"),
    (15, "BPF_OBJ_GET_INFO_BY_FD"),
    (16, "BPF_PROG_QUERY"),
    (17, "BPF_RAW_TRACEPOINT_OPEN"),
    (18, "BPF_BTF_LOAD"),
    (19, "BPF_BTF_GET_FD_BY_ID"),
    (20, "BPF_TASK_FD_QUERY"),
    (28, "BPF_LINK_CREATE"),
    (29, "BPF_LINK_UPDATE"),
];

pub const SIGNALS: &[(i64, &str)] = &[
    (0, "0"),
    (1, "SIGHUP"),
    (2, "SIGINT"),
    (3, "SIGQUIT"),
    (4, "SIGILL"),
    (5, "SIGTRAP"),
    (6, "SIGABRT"),
    (7, "SIGBUS"),
    (8, "SIGFPE"),
    (9, "SIGKILL"),
    (10, "SIGUSR1"),
    (11, "SIGSEGV"),
    (12, "SIGUSR2"),
    (13, "SIGPIPE"),
    (14, "SIGALRM"),
    (15, "SIGTERM"),
    (16, "SIGSTKFLT"),
    (17, "SIGCHLD"),
    (18, "SIGCONT"),
    (19, "SIGSTOP"),
    (20, "SIGTSTP"),
    (21, "SIGTTIN"),
    (22, "SIGTTOU"),
    (23, "SIGURG"),
    (24, "SIGXCPU"),
    (25, "SIGXFSZ"),
    (26, "SIGVTALRM"),
    (27, "SIGPROF"),
    (28, "SIGWINCH"),
    (29, "SIGIO"),
    (30, "SIGPWR"),
    (31, "SIGSYS"),
];

pub const PRCTL_OPTIONS: &[(i64, &str)] = &[
    (1, "PR_SET_PDEATHSIG"),
    (3, "PR_GET_DUMPABLE"),
    (4, "PR_SET_DUMPABLE"),
    (8, "PR_SET_KEEPCAPS"),
    (15, "PR_SET_NAME"),
    (16, "PR_GET_NAME"),
    (22, "PR_SET_SECCOMP"),
    (24, "PR_CAPBSET_DROP"),
    (28, "PR_SET_SECUREBITS"),
    (35, "PR_SET_MM"),
    (36, "PR_SET_CHILD_SUBREAPER"),
    (38, "PR_SET_NO_NEW_PRIVS"),
    (47, "PR_CAP_AMBIENT"),
    (0x59616d61, "PR_SET_PTRACER"),
];

/// x86_64 syscall numbers (arch/x86/entry/syscalls/syscall_64.tbl).
#[cfg(target_arch = "x86_64")]
#[rustfmt::skip]
pub static SYSCALLS: &[SyscallDef] = &[
    SyscallDef { name: "open", nr: 2, args: args!("filename": Path, "flags": OpenFlags, "mode": Mode) },
    SyscallDef { name: "creat", nr: 85, args: args!("pathname": Path, "mode": Mode) },
    SyscallDef { name: "openat", nr: 257, args: args!("dfd": Fd, "filename": Path, "flags": OpenFlags, "mode": Mode) },
    SyscallDef { name: "openat2", nr: 437, args: args!("dfd": Fd, "filename": Path, "how": OpenHow, "usize": Int) },
    SyscallDef { name: "execve", nr: 59, args: args!("filename": Path, "argv": Argv, "envp": Ptr) },
    SyscallDef { name: "execveat", nr: 322, args: args!("fd": Fd, "filename": Path, "argv": Argv, "envp": Ptr, "flags": Flags(AT_FLAGS)) },
    SyscallDef { name: "connect", nr: 42, args: args!("fd": Fd, "uservaddr": SockAddr { len_arg: 2 }, "addrlen": Int) },
    SyscallDef { name: "accept", nr: 43, args: args!("fd": Fd, "upeer_sockaddr": SockAddrOut { len_arg: 2 }, "upeer_addrlen": Ptr) },
    SyscallDef { name: "accept4", nr: 288, args: args!("fd": Fd, "upeer_sockaddr": SockAddrOut { len_arg: 2 }, "upeer_addrlen": Ptr, "flags": Flags(SOCK_FLAGS)) },
    SyscallDef { name: "bind", nr: 49, args: args!("fd": Fd, "umyaddr": SockAddr { len_arg: 2 }, "addrlen": Int) },
    SyscallDef { name: "listen", nr: 50, args: args!("fd": Fd, "backlog": Int) },
    SyscallDef { name: "socket", nr: 41, args: args!("family": Enum(SOCKET_FAMILIES), "type": SockType, "protocol": Int) },
    SyscallDef { name: "ptrace", nr: 101, args: args!("request": Enum(PTRACE_REQUESTS), "pid": Int, "addr": Ptr, "data": Ptr) },
    SyscallDef { name: "setns", nr: 308, args: args!("fd": Fd, "flags": Flags(CLONE_FLAGS)) },
    SyscallDef { name: "unshare", nr: 272, args: args!("unshare_flags": Flags(CLONE_FLAGS)) },
    SyscallDef { name: "clone", nr: 56, args: args!("clone_flags": Flags(CLONE_FLAGS), "newsp": Ptr, "parent_tidptr": Ptr, "child_tidptr": Ptr, "tls": Ptr) },
    SyscallDef { name: "clone3", nr: 435, args: args!("uargs": CloneArgs, "size": Int) },
    SyscallDef { name: "mount", nr: 165, args: args!("dev_name": Str, "dir_name": Path, "type": Str, "flags": Flags(MOUNT_FLAGS), "data": Ptr) },
    SyscallDef { name: "umount2", nr: 166, args: args!("name": Path, "flags": Flags(UMOUNT_FLAGS)) },
    SyscallDef { name: "pivot_root", nr: 155, args: args!("new_root": Path, "put_old": Path) },
    SyscallDef { name: "chroot", nr: 161, args: args!("filename": Path) },
    SyscallDef { name: "init_module", nr: 175, args: args!("umod": Ptr, "len": Int, "uargs": Str) },
    SyscallDef { name: "finit_module", nr: 313, args: args!("fd": Fd, "uargs": Str, "flags": Flags(MODULE_INIT_FLAGS)) },
    SyscallDef { name: "delete_module", nr: 176, args: args!("name_user": Str, "flags": Int) },
    SyscallDef { name: "kexec_load", nr: 246, args: args!("entry": Ptr, "nr_segments": Int, "segments": Ptr, "flags": Int) },
    SyscallDef { name: "kexec_file_load", nr: 320, args: args!("kernel_fd": Fd, "initrd_fd": Fd, "cmdline_len": Int, "cmdline_ptr": Str, "flags": Int) },
    SyscallDef { name: "bpf", nr: 321, args: args!("cmd": Enum(BPF_COMMANDS), "uattr": Ptr, "size": Int) },
    SyscallDef { name: "setuid", nr: 105, args: args!("uid": Id) },
    SyscallDef { name: "setgid", nr: 106, args: args!("gid": Id) },
    SyscallDef { name: "setreuid", nr: 113, args: args!("ruid": Id, "euid": Id) },
    SyscallDef { name: "setregid", nr: 114, args: args!("rgid": Id, "egid": Id) },
    SyscallDef { name: "setresuid", nr: 117, args: args!("ruid": Id, "euid": Id, "suid": Id) },
    SyscallDef { name: "setresgid", nr: 119, args: args!("rgid": Id, "egid": Id, "sgid": Id) },
    SyscallDef { name: "capset", nr: 126, args: args!("header": Ptr, "data": CapData) },
    SyscallDef { name: "chmod", nr: 90, args: args!("filename": Path, "mode": Mode) },
    SyscallDef { name: "fchmod", nr: 91, args: args!("fd": Fd, "mode": Mode) },
    SyscallDef { name: "fchmodat", nr: 268, args: args!("dfd": Fd, "filename": Path, "mode": Mode) },
    SyscallDef { name: "fchmodat2", nr: 452, args: args!("dfd": Fd, "filename": Path, "mode": Mode, "flags": Flags(AT_FLAGS)) },
    SyscallDef { name: "symlink", nr: 88, args: args!("oldname": Str, "newname": Path) },
    SyscallDef { name: "symlinkat", nr: 266, args: args!("oldname": Str, "newdfd": Fd, "newname": Path) },
    SyscallDef { name: "link", nr: 86, args: args!("oldname": Path, "newname": Path) },
    SyscallDef { name: "linkat", nr: 265, args: args!("olddfd": Fd, "oldname": Path, "newdfd": Fd, "newname": Path, "flags": Flags(AT_FLAGS)) },
    SyscallDef { name: "unlink", nr: 87, args: args!("pathname": Path) },
    SyscallDef { name: "unlinkat", nr: 263, args: args!("dfd": Fd, "pathname": Path, "flag": Flags(AT_FLAGS)) },
    SyscallDef { name: "rename", nr: 82, args: args!("oldname": Path, "newname": Path) },
    SyscallDef { name: "renameat", nr: 264, args: args!("olddfd": Fd, "oldname": Path, "newdfd": Fd, "newname": Path) },
    SyscallDef { name: "renameat2", nr: 316, args: args!("olddfd": Fd, "oldname": Path, "newdfd": Fd, "newname": Path, "flags": Flags(RENAME_FLAGS)) },
    SyscallDef { name: "memfd_create", nr: 319, args: args!("uname": Str, "flags": Flags(MEMFD_FLAGS)) },
    SyscallDef { name: "dup", nr: 32, args: args!("fildes": Fd) },
    SyscallDef { name: "dup2", nr: 33, args: args!("oldfd": Fd, "newfd": Fd) },
    SyscallDef { name: "dup3", nr: 292, args: args!("oldfd": Fd, "newfd": Fd, "flags": Flags(OPEN_BITS)) },
    SyscallDef { name: "kill", nr: 62, args: args!("pid": Int, "sig": Enum(SIGNALS)) },
    SyscallDef { name: "tkill", nr: 200, args: args!("pid": Int, "sig": Enum(SIGNALS)) },
    SyscallDef { name: "tgkill", nr: 234, args: args!("tgid": Int, "pid": Int, "sig": Enum(SIGNALS)) },
    SyscallDef { name: "prctl", nr: 157, args: args!("option": Enum(PRCTL_OPTIONS), "arg2": Int, "arg3": Int, "arg4": Int, "arg5": Int) },
    SyscallDef { name: "userfaultfd", nr: 323, args: args!("flags": Flags(OPEN_BITS)) },
    SyscallDef { name: "io_uring_setup", nr: 425, args: args!("entries": Int, "params": Ptr) },
    SyscallDef { name: "personality", nr: 135, args: args!("personality": Int) },
    SyscallDef { name: "mknod", nr: 133, args: args!("filename": Path, "mode": Mode, "dev": Int) },
    SyscallDef { name: "mknodat", nr: 259, args: args!("dfd": Fd, "filename": Path, "mode": Mode, "dev": Int) },
    SyscallDef { name: "chdir", nr: 80, args: args!("filename": Path) },
    SyscallDef { name: "fchdir", nr: 81, args: args!("fd": Fd) },
];

#[cfg(not(target_arch = "x86_64"))]
compile_error!("Osprey's syscall table covers x86_64 only so far; add this architecture's numbers");

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_numbers_are_unique() {
        let mut names: Vec<_> = SYSCALLS.iter().map(|s| s.name).collect();
        let mut nrs: Vec<_> = SYSCALLS.iter().map(|s| s.nr).collect();
        names.sort();
        nrs.sort();
        let n = SYSCALLS.len();
        names.dedup();
        nrs.dedup();
        assert_eq!(names.len(), n, "duplicate syscall name");
        assert_eq!(nrs.len(), n, "duplicate syscall number");
        assert!(SYSCALLS.iter().all(|s| s.nr < agent_common::MAX_SYSCALL_NR));
    }

    #[test]
    fn capture_plans_fit_the_kernel_rules() {
        for s in SYSCALLS {
            let spec = s.spec();
            for (slot, c) in spec.captures.iter().enumerate() {
                if c.kind == capture::ARGV {
                    assert_eq!(slot, 1, "{}: argv must be in slot 1", s.name);
                }
                if c.kind == capture::SOCKADDR_OUT {
                    assert_eq!(
                        slot, 2,
                        "{}: kernel-written sockaddr must be in slot 2",
                        s.name
                    );
                }
            }
            let wanted = s.args.iter().filter(|a| a.ty.capture().is_some()).count();
            let planned = spec.captures.iter().filter(|c| c.kind != 0).count();
            assert_eq!(
                wanted, planned,
                "{}: every pointer argument gets a slot",
                s.name
            );
        }
    }

    #[test]
    fn execve_and_mount_plans() {
        let execve = by_name("execve").unwrap().spec();
        assert_eq!(execve.captures[0].kind, capture::STR);
        assert_eq!(execve.captures[0].arg, 0);
        assert_eq!(execve.captures[1].kind, capture::ARGV);
        assert_eq!(execve.captures[1].arg, 1);
        let accept = by_name("accept").unwrap().spec();
        assert_eq!(accept.captures[2].kind, capture::SOCKADDR_OUT);
        assert_eq!(accept.captures[2].len_arg, 2);
        let mount = by_name("mount").unwrap().spec();
        let args: Vec<_> = mount.captures.iter().map(|c| c.arg).collect();
        assert_eq!(args, vec![0, 1, 2]);
    }
}
