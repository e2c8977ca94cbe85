//! The syscalls the sensor understands: numbers on this architecture, argument names (the
//! kernel's `syscalls:sys_enter_*` names, which are also Falco's `evt.arg.*` names), argument
//! types, and from those, what the kernel must copy from user memory ([`SyscallDef::spec`]).
//!
//! The kernel programs carry no syscall table: userspace writes a [`SyscallSpec`] per syscall of
//! interest into the `SYSCALL_SPECS` map, so adding a syscall here needs no kernel change.

use std::sync::LazyLock;

use agent_common::{
    Capture, DIRFD_CWD, MAX_CAPTURES, SyscallSpec, capture, open_filter, spec_flags,
};

/// How an argument is decoded (and, for pointers, captured).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ArgType {
    /// A number the kernel reads as a `long`, `unsigned long` or `size_t`: all 64 bits.
    Int,
    /// An `int` or `pid_t`: the kernel reads the low 32 bits of the register and ignores the
    /// rest (kill(pid | 1 << 32, sig) signals `pid`), so the value is those bits, signed.
    Int32,
    /// An `unsigned int` or `u32`: the low 32 bits, unsigned.
    UInt32,
    Fd,
    /// A uid or gid.
    Id,
    /// A `umode_t`: the low 16 bits.
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
    /// A bit set named by a table, an `unsigned long` in the kernel.
    Flags(&'static [(u64, &'static str)]),
    /// A bit set named by a table, an `int` or `unsigned int` in the kernel: the low 32 bits.
    Flags32(&'static [(u64, &'static str)]),
    /// `open(2)` flags (an `int`): an access mode plus bits.
    OpenFlags,
    /// An enumeration named by a table, an `int` or `unsigned int` in the kernel: the kernel
    /// reads the low 32 bits of the register and ignores the rest, so the value is those bits
    /// (fcntl(fd, F_DUPFD | 1 << 32, 0) is an F_DUPFD).
    Enum(&'static [(i64, &'static str)]),
    /// An enumeration the kernel reads as a `long` (ptrace's request): all 64 bits.
    LongEnum(&'static [(i64, &'static str)]),
    /// `socket(2)` type: an enumeration plus SOCK_NONBLOCK/SOCK_CLOEXEC bits.
    SockType,
    /// `struct open_how` (openat2): decoded into flags, mode and resolve.
    OpenHow,
    /// `struct clone_args` (clone3): its first field, the flags.
    CloneArgs,
    /// `struct __user_cap_data_struct[2]` (capset): effective, permitted, inheritable.
    CapData,
    /// A string pointer for some values of another argument and a number for the others
    /// (prctl's `arg2` is the new name for PR_SET_NAME): captured as a string, decoded as the
    /// number when nothing could be read there.
    StrOrInt,
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
            ArgType::Path | ArgType::Str | ArgType::StrOrInt => Some((capture::STR, 0, 0)),
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

    /// The kernel's capture plan for this syscall, and which file it resolves: the descriptor
    /// an open returns, the file of the first descriptor argument that is not a directory for
    /// a path, or the directory a relative path in capture 0 starts from.
    pub fn spec(&self) -> SyscallSpec {
        let mut flags = spec_flags::INTERESTED;
        match self.name {
            "open" | "openat" | "openat2" | "creat" | "open_by_handle_at" | "memfd_create" => {
                flags |= spec_flags::RET_FD;
            }
            // The new descriptor's file, not the old one's: another thread may put something
            // else on the old number before the exit's walk, never on the new one without a
            // syscall of its own (the fd table takes a dup onto stdio from this record).
            "dup" | "dup2" | "dup3" => flags |= spec_flags::RET_FD,
            "clone" | "clone3" | "fork" | "vfork" => flags |= spec_flags::PARENT_ONLY,
            "execve" | "execveat" => flags |= spec_flags::EXEC,
            _ => {}
        }
        let mut spec = SyscallSpec {
            flags,
            ..Default::default()
        };
        // The filter's opens and calls: which verdicts judge it, and where its class argument
        // is (an open's flags, mprotect's prot, fcntl's cmd).
        let mut filtered = open_filter::SYSCALLS.iter().chain(&open_filter::CALLS);
        if let Some(slot) = filtered.position(|n| *n == self.name) {
            let class_arg = slot
                .checked_sub(open_filter::SYSCALLS.len())
                .map_or("flags", |c| open_filter::CALL_ARGS[c]);
            spec.filter_slot = slot as u8 + 1;
            spec.flags_arg = self
                .args
                .iter()
                .position(|a| a.name == class_arg)
                .map_or(0, |i| i as u8 + 1);
        }
        let slots = self.capture_slots();
        for (i, a) in self.args.iter().enumerate() {
            let dir_of_path = self.args.get(i + 1).is_some_and(|n| n.ty == ArgType::Path);
            // A pidfd names a process, not the file the syscall is about (pidfd_getfd's file
            // is the target's, which the fd table knows).
            if a.ty == ArgType::Fd
                && !dir_of_path
                && spec.fd_arg == 0
                && !a.name.starts_with("pidfd")
            {
                spec.fd_arg = i as u8 + 1;
            }
            if a.ty == ArgType::Path && slots[i] == Some(0) {
                spec.dirfd = match i.checked_sub(1).map(|p| self.args[p].ty) {
                    Some(ArgType::Fd) => i as u8, // 1 + (i - 1)
                    _ => DIRFD_CWD,
                };
            }
        }
        // At close's exit its descriptor is gone: the file behind it cannot be walked (the
        // attempt cost every close ten probe reads for nothing); the fd table says what closed.
        if self.name == "close" {
            spec.fd_arg = 0;
        }
        for (i, (slot, a)) in slots.iter().zip(self.args).enumerate() {
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
    decoding(nr).map(|(def, _)| def)
}

/// A syscall's definition and capture slots ([`SyscallDef::capture_slots`]) by number: what
/// the decoder needs for every record, found by an index rather than by a search of
/// `SYSCALLS` and the slots worked out again each time (3% of the agent's CPU per event).
pub fn decoding(nr: u32) -> Option<(&'static SyscallDef, &'static [Option<usize>; 6])> {
    type Decoding = (&'static SyscallDef, [Option<usize>; 6]);
    static BY_NR: LazyLock<Vec<Option<Decoding>>> = LazyLock::new(|| {
        let top = SYSCALLS.iter().map(|s| s.nr as usize).max().unwrap_or(0);
        let mut t: Vec<Option<Decoding>> = vec![None; top + 1];
        for def in SYSCALLS {
            // The first definition of a number wins, as a search in order would find it.
            t[def.nr as usize].get_or_insert((def, def.capture_slots()));
        }
        t
    });
    let (def, slots) = BY_NR.get(nr as usize)?.as_ref()?;
    Some((def, slots))
}

macro_rules! args {
    ($($name:literal : $ty:expr),* $(,)?) => {
        &[$(ArgDef { name: $name, ty: $ty }),*]
    };
}

use ArgType::*;

use osprey_model::syscalls::flags::*;

/// x86_64 syscall numbers (arch/x86/entry/syscalls/syscall_64.tbl).
#[cfg(target_arch = "x86_64")]
#[rustfmt::skip]
pub static SYSCALLS: &[SyscallDef] = &[
    SyscallDef { name: "open", nr: 2, args: args!("filename": Path, "flags": OpenFlags, "mode": Mode) },
    SyscallDef { name: "creat", nr: 85, args: args!("pathname": Path, "mode": Mode) },
    SyscallDef { name: "openat", nr: 257, args: args!("dfd": Fd, "filename": Path, "flags": OpenFlags, "mode": Mode) },
    SyscallDef { name: "openat2", nr: 437, args: args!("dfd": Fd, "filename": Path, "how": OpenHow, "usize": Int) },
    SyscallDef { name: "execve", nr: 59, args: args!("filename": Path, "argv": Argv, "envp": Ptr) },
    SyscallDef { name: "execveat", nr: 322, args: args!("fd": Fd, "filename": Path, "argv": Argv, "envp": Ptr, "flags": Flags32(AT_FLAGS)) },
    SyscallDef { name: "connect", nr: 42, args: args!("fd": Fd, "uservaddr": SockAddr { len_arg: 2 }, "addrlen": Int32) },
    SyscallDef { name: "accept", nr: 43, args: args!("fd": Fd, "upeer_sockaddr": SockAddrOut { len_arg: 2 }, "upeer_addrlen": Ptr) },
    SyscallDef { name: "accept4", nr: 288, args: args!("fd": Fd, "upeer_sockaddr": SockAddrOut { len_arg: 2 }, "upeer_addrlen": Ptr, "flags": Flags32(SOCK_FLAGS)) },
    SyscallDef { name: "sendto", nr: 44, args: args!("fd": Fd, "buff": Ptr, "len": Int, "flags": UInt32, "addr": SockAddr { len_arg: 5 }, "addr_len": Int32) },
    SyscallDef { name: "recvfrom", nr: 45, args: args!("fd": Fd, "ubuf": Ptr, "size": Int, "flags": UInt32, "addr": Ptr, "addr_len": Ptr) },
    SyscallDef { name: "sendmsg", nr: 46, args: args!("fd": Fd, "msg": Ptr, "flags": UInt32) },
    SyscallDef { name: "recvmsg", nr: 47, args: args!("fd": Fd, "msg": Ptr, "flags": UInt32) },
    SyscallDef { name: "splice", nr: 275, args: args!("fd_in": Fd, "off_in": Ptr, "fd_out": Fd, "off_out": Ptr, "len": Int, "flags": UInt32) },
    SyscallDef { name: "tee", nr: 276, args: args!("fdin": Fd, "fdout": Fd, "len": Int, "flags": UInt32) },
    SyscallDef { name: "bind", nr: 49, args: args!("fd": Fd, "umyaddr": SockAddr { len_arg: 2 }, "addrlen": Int32) },
    SyscallDef { name: "listen", nr: 50, args: args!("fd": Fd, "backlog": Int32) },
    SyscallDef { name: "socket", nr: 41, args: args!("family": Enum(SOCKET_FAMILIES), "type": SockType, "protocol": Int32) },
    SyscallDef { name: "ptrace", nr: 101, args: args!("request": LongEnum(PTRACE_REQUESTS), "pid": Int32, "addr": Ptr, "data": Ptr) },
    SyscallDef { name: "setns", nr: 308, args: args!("fd": Fd, "flags": Flags32(CLONE_FLAGS)) },
    SyscallDef { name: "unshare", nr: 272, args: args!("unshare_flags": Flags(CLONE_FLAGS)) },
    SyscallDef { name: "clone", nr: 56, args: args!("clone_flags": Flags(CLONE_FLAGS), "newsp": Ptr, "parent_tidptr": Ptr, "child_tidptr": Ptr, "tls": Ptr) },
    SyscallDef { name: "clone3", nr: 435, args: args!("uargs": CloneArgs, "size": Int) },
    SyscallDef { name: "mount", nr: 165, args: args!("dev_name": Str, "dir_name": Path, "type": Str, "flags": Flags(MOUNT_FLAGS), "data": Ptr) },
    SyscallDef { name: "umount2", nr: 166, args: args!("name": Path, "flags": Flags32(UMOUNT_FLAGS)) },
    SyscallDef { name: "pivot_root", nr: 155, args: args!("new_root": Path, "put_old": Path) },
    SyscallDef { name: "chroot", nr: 161, args: args!("filename": Path) },
    SyscallDef { name: "init_module", nr: 175, args: args!("umod": Ptr, "len": Int, "uargs": Str) },
    SyscallDef { name: "finit_module", nr: 313, args: args!("fd": Fd, "uargs": Str, "flags": Flags32(MODULE_INIT_FLAGS)) },
    SyscallDef { name: "delete_module", nr: 176, args: args!("name_user": Str, "flags": UInt32) },
    SyscallDef { name: "kexec_load", nr: 246, args: args!("entry": Ptr, "nr_segments": Int, "segments": Ptr, "flags": Int) },
    SyscallDef { name: "kexec_file_load", nr: 320, args: args!("kernel_fd": Fd, "initrd_fd": Fd, "cmdline_len": Int, "cmdline_ptr": Str, "flags": Int) },
    SyscallDef { name: "bpf", nr: 321, args: args!("cmd": Enum(BPF_COMMANDS), "uattr": Ptr, "size": UInt32) },
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
    SyscallDef { name: "fchmodat2", nr: 452, args: args!("dfd": Fd, "filename": Path, "mode": Mode, "flags": Flags32(AT_FLAGS)) },
    SyscallDef { name: "symlink", nr: 88, args: args!("oldname": Str, "newname": Path) },
    SyscallDef { name: "symlinkat", nr: 266, args: args!("oldname": Str, "newdfd": Fd, "newname": Path) },
    SyscallDef { name: "link", nr: 86, args: args!("oldname": Path, "newname": Path) },
    SyscallDef { name: "linkat", nr: 265, args: args!("olddfd": Fd, "oldname": Path, "newdfd": Fd, "newname": Path, "flags": Flags32(AT_FLAGS)) },
    SyscallDef { name: "unlink", nr: 87, args: args!("pathname": Path) },
    SyscallDef { name: "unlinkat", nr: 263, args: args!("dfd": Fd, "pathname": Path, "flag": Flags32(AT_FLAGS)) },
    SyscallDef { name: "rename", nr: 82, args: args!("oldname": Path, "newname": Path) },
    SyscallDef { name: "renameat", nr: 264, args: args!("olddfd": Fd, "oldname": Path, "newdfd": Fd, "newname": Path) },
    SyscallDef { name: "renameat2", nr: 316, args: args!("olddfd": Fd, "oldname": Path, "newdfd": Fd, "newname": Path, "flags": Flags32(RENAME_FLAGS)) },
    SyscallDef { name: "memfd_create", nr: 319, args: args!("uname": Str, "flags": Flags32(MEMFD_FLAGS)) },
    SyscallDef { name: "dup", nr: 32, args: args!("fildes": Fd) },
    SyscallDef { name: "dup2", nr: 33, args: args!("oldfd": Fd, "newfd": Fd) },
    SyscallDef { name: "dup3", nr: 292, args: args!("oldfd": Fd, "newfd": Fd, "flags": Flags32(OPEN_BITS)) },
    SyscallDef { name: "kill", nr: 62, args: args!("pid": Int32, "sig": Enum(SIGNALS)) },
    SyscallDef { name: "tkill", nr: 200, args: args!("pid": Int32, "sig": Enum(SIGNALS)) },
    SyscallDef { name: "tgkill", nr: 234, args: args!("tgid": Int32, "pid": Int32, "sig": Enum(SIGNALS)) },
    SyscallDef { name: "prctl", nr: 157, args: args!("option": Enum(PRCTL_OPTIONS), "arg2": StrOrInt, "arg3": Int, "arg4": Int, "arg5": Int) },
    SyscallDef { name: "userfaultfd", nr: 323, args: args!("flags": Flags32(OPEN_BITS)) },
    SyscallDef { name: "io_uring_setup", nr: 425, args: args!("entries": UInt32, "params": Ptr) },
    SyscallDef { name: "personality", nr: 135, args: args!("personality": UInt32) },
    SyscallDef { name: "mknod", nr: 133, args: args!("filename": Path, "mode": Mode, "dev": UInt32) },
    SyscallDef { name: "mknodat", nr: 259, args: args!("dfd": Fd, "filename": Path, "mode": Mode, "dev": UInt32) },
    SyscallDef { name: "chdir", nr: 80, args: args!("filename": Path) },
    SyscallDef { name: "fchdir", nr: 81, args: args!("fd": Fd) },
    // Files changed in place: truncation (log and history wiping), extended attributes
    // (security.capability is a file capability: setcap), times (timestomping), owners.
    SyscallDef { name: "truncate", nr: 76, args: args!("path": Path, "length": Int) },
    SyscallDef { name: "ftruncate", nr: 77, args: args!("fd": Fd, "length": Int) },
    SyscallDef { name: "setxattr", nr: 188, args: args!("pathname": Path, "name": Str, "value": Ptr, "size": Int, "flags": Int32) },
    SyscallDef { name: "lsetxattr", nr: 189, args: args!("pathname": Path, "name": Str, "value": Ptr, "size": Int, "flags": Int32) },
    SyscallDef { name: "fsetxattr", nr: 190, args: args!("fd": Fd, "name": Str, "value": Ptr, "size": Int, "flags": Int32) },
    SyscallDef { name: "removexattr", nr: 197, args: args!("pathname": Path, "name": Str) },
    SyscallDef { name: "lremovexattr", nr: 198, args: args!("pathname": Path, "name": Str) },
    SyscallDef { name: "fremovexattr", nr: 199, args: args!("fd": Fd, "name": Str) },
    SyscallDef { name: "utimensat", nr: 280, args: args!("dfd": Fd, "filename": Path, "utimes": Ptr, "flags": Flags32(AT_FLAGS)) },
    SyscallDef { name: "utimes", nr: 235, args: args!("filename": Path, "utimes": Ptr) },
    SyscallDef { name: "futimesat", nr: 261, args: args!("dfd": Fd, "filename": Path, "utimes": Ptr) },
    SyscallDef { name: "utime", nr: 132, args: args!("filename": Path, "times": Ptr) },
    SyscallDef { name: "chown", nr: 92, args: args!("filename": Path, "user": Id, "group": Id) },
    SyscallDef { name: "lchown", nr: 94, args: args!("filename": Path, "user": Id, "group": Id) },
    SyscallDef { name: "fchown", nr: 93, args: args!("fd": Fd, "user": Id, "group": Id) },
    SyscallDef { name: "fchownat", nr: 260, args: args!("dfd": Fd, "filename": Path, "user": Id, "group": Id, "flag": Flags32(AT_FLAGS)) },
    // The file-descriptor table's: what closes or changes a descriptor (what makes one is above).
    SyscallDef { name: "close", nr: 3, args: args!("fd": Fd) },
    SyscallDef { name: "close_range", nr: 436, args: args!("fd": UInt32, "max_fd": UInt32, "flags": Flags32(CLOSE_RANGE_FLAGS)) },
    SyscallDef { name: "fcntl", nr: 72, args: args!("fd": Fd, "cmd": Enum(FCNTL_COMMANDS), "arg": Int) },
    // Memory and other processes' descriptors.
    SyscallDef { name: "mprotect", nr: 10, args: args!("start": Ptr, "len": Int, "prot": Flags(PROT_FLAGS)) },
    SyscallDef { name: "pkey_mprotect", nr: 329, args: args!("start": Ptr, "len": Int, "prot": Flags(PROT_FLAGS), "pkey": Int32) },
    SyscallDef { name: "mmap", nr: 9, args: args!("addr": Ptr, "len": Int, "prot": Flags(PROT_FLAGS), "flags": Int, "fd": Fd, "off": Int) },
    SyscallDef { name: "process_vm_readv", nr: 310, args: args!("pid": Int32, "lvec": Ptr, "liovcnt": Int, "rvec": Ptr, "riovcnt": Int, "flags": Int) },
    SyscallDef { name: "process_vm_writev", nr: 311, args: args!("pid": Int32, "lvec": Ptr, "liovcnt": Int, "rvec": Ptr, "riovcnt": Int, "flags": Int) },
    SyscallDef { name: "pidfd_open", nr: 434, args: args!("pid": Int32, "flags": UInt32) },
    SyscallDef { name: "pidfd_getfd", nr: 438, args: args!("pidfd": Fd, "fd": Int32, "flags": UInt32) },
    SyscallDef { name: "open_by_handle_at", nr: 304, args: args!("mountdirfd": Fd, "handle": Ptr, "flags": OpenFlags) },
    // The new mount API (5.2): a mount made without mount(2).
    SyscallDef { name: "fsopen", nr: 430, args: args!("_fs_name": Str, "flags": UInt32) },
    SyscallDef { name: "fsconfig", nr: 431, args: args!("fd": Fd, "cmd": Enum(FSCONFIG_COMMANDS), "_key": Str, "_value": Str, "aux": Int32) },
    SyscallDef { name: "fsmount", nr: 432, args: args!("fs_fd": Fd, "flags": UInt32, "attr_flags": UInt32) },
    SyscallDef { name: "move_mount", nr: 429, args: args!("from_dfd": Fd, "from_pathname": Path, "to_dfd": Fd, "to_pathname": Path, "flags": Flags32(MOVE_MOUNT_FLAGS)) },
];

#[cfg(not(target_arch = "x86_64"))]
compile_error!("Osprey's syscall table covers x86_64 only so far; add this architecture's numbers");

#[cfg(test)]
mod tests {
    use super::*;

    /// Every syscall that the sensor captures has the same number in the shared table.
    #[test]
    fn agrees_with_the_syscall_numbers() {
        for def in SYSCALLS {
            assert_eq!(
                osprey_model::syscalls::number(def.name),
                Some(def.nr),
                "{}",
                def.name
            );
        }
    }

    /// The index the decoder uses finds what a search of the table in order finds, with the
    /// same slots, and nothing for a number the table does not have.
    #[test]
    fn the_index_by_number_is_the_table() {
        for nr in 0..600 {
            let searched = SYSCALLS.iter().find(|s| s.nr == nr);
            let indexed = decoding(nr);
            assert_eq!(
                indexed.map(|(d, _)| d.name),
                searched.map(|d| d.name),
                "{nr}"
            );
            if let (Some((_, slots)), Some(def)) = (indexed, searched) {
                assert_eq!(*slots, def.capture_slots(), "{}", def.name);
            }
        }
        assert!(decoding(u32::MAX).is_none());
    }

    /// How many low bits of its register the decoder reads for an argument, and whether it
    /// sign-extends them (pointers and captured data count as 64-bit numbers).
    fn decoded_width(ty: ArgType) -> (u8, bool) {
        match ty {
            Int32 | Fd | Enum(_) => (32, true),
            UInt32 | Id | Flags32(_) | OpenFlags | SockType => (32, false),
            Mode => (16, false),
            Int
            | LongEnum(_)
            | Flags(_)
            | Ptr
            | Path
            | Str
            | SockAddr { .. }
            | SockAddrOut { .. }
            | Argv
            | OpenHow
            | CloneArgs
            | CapData
            | StrOrInt => (64, false),
        }
    }

    /// Every argument is decoded at the width the running kernel reads it, as its
    /// `syscalls:sys_enter_*` format declares the type: a 32-bit argument decoded from the
    /// whole register lets high bits change what a rule sees while the kernel does the same
    /// thing (kill(pid | 1 << 32, sig) signals `pid`).
    #[test]
    fn arguments_are_as_wide_as_the_kernel_declares_them() {
        let root = crate::sensor::tracefs::ensure_mounted()
            .expect("this test reads the syscall formats in tracefs (run as root)");
        // Declared wider than the kernel then uses them: ptrace's `long pid` and mmap's
        // `unsigned long fd` are passed on as a pid_t and an unsigned int.
        let narrowed = [("ptrace", "pid"), ("mmap", "fd")];
        let mut checked = 0;
        for def in SYSCALLS {
            // x86_64's umount2 is the kernel's `umount`.
            let event = if def.name == "umount2" {
                "umount"
            } else {
                def.name
            };
            // Kernels built without a subsystem (modules, kexec) have no event for its calls.
            let Some(types) = crate::sensor::tracefs::syscall_arg_types(&root, event) else {
                continue;
            };
            assert_eq!(types.len(), def.args.len(), "{}: {types:?}", def.name);
            for (a, ty) in def.args.iter().zip(&types) {
                let (bits, signed) = decoded_width(a.ty);
                if narrowed.contains(&(def.name, a.name)) {
                    assert_eq!(bits, 32, "{}.{}", def.name, a.name);
                    continue;
                }
                let declared = osprey_engine::profile::arg_bits(ty);
                assert_eq!(bits, declared, "{}.{}: `{ty}`", def.name, a.name);
                if bits == 32 && matches!(a.ty, Int32 | UInt32) {
                    let unsigned = ty.starts_with("unsigned") || ty.starts_with('u');
                    assert_eq!(signed, !unsigned, "{}.{}: `{ty}`", def.name, a.name);
                }
                checked += 1;
            }
        }
        assert!(
            checked > 150,
            "only {checked} arguments had a format to check"
        );
    }

    /// A ring's opcodes are judged by syscall profiles as the syscalls they do, by the
    /// numbers of those syscalls' names.
    #[test]
    fn ring_opcodes_are_judged_as_their_syscalls() {
        #[rustfmt::skip]
        let does = [
            (1, "readv"), (2, "writev"), (3, "fsync"), (4, "pread64"), (5, "pwrite64"),
            (8, "sync_file_range"), (9, "sendmsg"), (10, "recvmsg"), (13, "accept4"),
            (16, "connect"), (17, "fallocate"), (18, "openat"), (19, "close"), (21, "statx"),
            (22, "read"), (23, "write"), (24, "fadvise64"), (25, "madvise"), (26, "sendto"),
            (27, "recvfrom"), (28, "openat"), (29, "epoll_ctl"), (30, "splice"), (33, "tee"),
            (34, "shutdown"), (35, "renameat2"), (36, "unlinkat"), (37, "mkdirat"),
            (38, "symlinkat"), (39, "linkat"), (41, "fsetxattr"), (42, "setxattr"),
            (43, "fgetxattr"), (44, "getxattr"), (45, "socket"), (47, "sendto"), (48, "sendmsg"),
            (49, "read"), (50, "waitid"), (51, "futex"), (52, "futex"), (53, "futex_waitv"),
            (55, "ftruncate"), (56, "bind"), (57, "listen"), (58, "recvfrom"),
            (59, "epoll_wait"), (60, "preadv"), (61, "pwritev"), (62, "pipe2"),
        ];
        for op in 0..=u8::MAX {
            let want = does
                .iter()
                .find(|(o, _)| *o == op)
                .map(|(_, n)| osprey_model::syscalls::number(n).unwrap());
            assert_eq!(agent_common::ring::judged_as(op), want, "opcode {op}");
            // What is reported is judged as what it is reported as.
            match agent_common::ring::syscall_of(op) {
                0 => {}
                nr => assert_eq!(want, Some(nr), "opcode {op}"),
            }
        }
    }

    /// The open filter decides `evt.arg.*` of the opens it judges from the engine's idea of
    /// their arguments: this table must agree, and the kernel must find their flags.
    #[test]
    fn the_open_filter_knows_the_filtered_syscalls_arguments() {
        for (name, args) in osprey_engine::compile::OPEN_ARGS {
            let def = by_name(name).unwrap();
            let ours: Vec<&str> = def.args.iter().map(|a| a.name).collect();
            assert_eq!(ours, args, "{name}");
            let spec = def.spec();
            let slot = open_filter::SYSCALLS
                .iter()
                .position(|n| *n == name)
                .unwrap();
            assert_eq!(spec.filter_slot as usize, slot + 1, "{name}");
            match args.iter().position(|a| *a == "flags") {
                Some(i) => assert_eq!(spec.flags_arg as usize, i + 1, "{name}"),
                None => assert_eq!(spec.flags_arg, 0, "{name}"),
            }
        }
        assert_eq!(
            open_filter::SYSCALLS.len(),
            osprey_engine::compile::OPEN_ARGS.len()
        );
        assert_eq!(by_name("openat2").unwrap().spec().filter_slot, 0);
        // The calls follow, each with the argument its class is read from.
        for (i, (name, class_arg)) in open_filter::CALLS
            .iter()
            .zip(open_filter::CALL_ARGS)
            .enumerate()
        {
            let def = by_name(name).unwrap();
            let spec = def.spec();
            assert_eq!(
                spec.filter_slot as usize,
                open_filter::SYSCALLS.len() + i + 1
            );
            let at = def.args.iter().position(|a| a.name == class_arg).unwrap();
            assert_eq!(spec.flags_arg as usize, at + 1, "{name}");
        }
        assert_eq!(
            open_filter::SYSCALLS.len() + open_filter::CALLS.len(),
            open_filter::SLOTS as usize
        );
    }

    /// A class's flags are of that class, and flags outside the class's bits do not move it.
    #[test]
    fn open_classes_round_trip() {
        for c in 0..open_filter::CLASSES {
            let flags = open_filter::class_flags(c);
            let ok = c & 1 != 0;
            assert_eq!(open_filter::class(ok, flags), c);
            assert_eq!(open_filter::class(ok, flags | 0o2004000), c, "{flags:o}"); // CLOEXEC, NONBLOCK
        }
    }

    /// A set's Bloom filter holds every name inserted, a long one by the first
    /// `NAME_LEN - 1` bytes the kernel compares, and turns most other names away.
    #[test]
    fn set_filters_hold_their_names() {
        use open_filter::{SetSig, name_words};
        let mut sig = SetSig::default();
        let long = [b'a'; 40];
        let names: Vec<String> = (0..32).map(|i| format!("name{i}.conf")).collect();
        for n in &names {
            sig.insert(open_filter::ATOM_LEAF, n.as_bytes());
        }
        sig.insert(open_filter::ATOM_LEAF, &long);
        sig.insert(open_filter::ATOM_TOP, b"");
        for n in &names {
            assert!(sig.may_hold(open_filter::ATOM_LEAF, name_words(n.as_bytes())));
        }
        assert!(sig.may_hold(
            open_filter::ATOM_LEAF,
            name_words(&long[..open_filter::NAME_LEN - 1])
        ));
        assert!(sig.may_hold(open_filter::ATOM_TOP, name_words(b"")));
        assert!(!sig.may_hold(open_filter::ATOM_PARENT, name_words(b"")));
        // The words are the name NUL-padded: what the kernel builds from a dentry's name.
        let w = name_words(b"null");
        assert_eq!(w[0].to_ne_bytes()[..5], *b"null\0");
        assert_eq!(w[1..], [0, 0, 0]);
        let others = (0..1000)
            .filter(|i| {
                sig.may_hold(
                    open_filter::ATOM_LEAF,
                    name_words(format!("other{i}").as_bytes()),
                )
            })
            .count();
        // 33 names, two bits each, in 512 bits: about 1.5% of other names pass.
        assert!(others < 60, "{others} of 1000 other names passed");
    }

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

    #[test]
    fn socketcall_operations_stand_for_their_x86_64_calls() {
        // Every operation of net/socket.c's socketcall, and how many words it copies.
        let ops = [
            (1, "socket", 3),
            (2, "bind", 3),
            (3, "connect", 3),
            (4, "listen", 2),
            (5, "accept", 3),
            (6, "getsockname", 3),
            (7, "getpeername", 3),
            (8, "socketpair", 4),
            (9, "sendto", 4),
            (10, "recvfrom", 4),
            (11, "sendto", 6),
            (12, "recvfrom", 6),
            (13, "shutdown", 2),
            (14, "setsockopt", 5),
            (15, "getsockopt", 5),
            (16, "sendmsg", 3),
            (17, "recvmsg", 3),
            (18, "accept4", 4),
            (19, "recvmmsg", 5),
            (20, "sendmmsg", 4),
        ];
        for (call, name, n) in ops {
            let nr = osprey_model::syscalls::number(name).unwrap();
            assert_eq!(
                agent_common::socketcall(call),
                Some((nr, n)),
                "{call} is {name}"
            );
        }
        assert_eq!(agent_common::socketcall(0), None);
        assert_eq!(agent_common::socketcall(21), None);
    }

    #[test]
    fn ipc_calls_stand_for_their_x86_64_calls_with_their_arguments_moved() {
        // ipc(call, first, second, third, ptr, fifth) as compat_ksys_ipc passes them on.
        let (first, second, third, ptr, fifth) = (10, 20, 30, 40, 50);
        let ipc = |call| agent_common::ipc([call, first, second, third, ptr, fifth]);
        let calls = [
            (1, "semop", [first, ptr, second, 0, 0, 0], true),
            (2, "semget", [first, second, third, 0, 0, 0], true),
            (3, "semctl", [first, second, third, 0, 0, 0], false),
            (4, "semtimedop", [first, ptr, second, fifth, 0, 0], true),
            (11, "msgsnd", [first, ptr, second, third, 0, 0], true),
            (12, "msgrcv", [first, ptr, second, fifth, third, 0], false),
            (
                1 << 16 | 12,
                "msgrcv",
                [first, ptr, second, fifth, third, 0],
                true,
            ),
            (13, "msgget", [first, second, 0, 0, 0, 0], true),
            (14, "msgctl", [first, second, ptr, 0, 0, 0], true),
            (21, "shmat", [first, ptr, second, 0, 0, 0], true),
            (22, "shmdt", [ptr, 0, 0, 0, 0, 0], true),
            (23, "shmget", [first, second, third, 0, 0, 0], true),
            (24, "shmctl", [first, second, ptr, 0, 0, 0], true),
        ];
        for (call, name, args, known) in calls {
            let nr = osprey_model::syscalls::number(name).unwrap();
            assert_eq!(ipc(call), Some((nr, args, known)), "{call:#x} is {name}");
        }
        for refused in [0, 5, 10, 15, 20, 25] {
            assert_eq!(ipc(refused), None, "{refused}");
        }
    }

    #[test]
    fn kernel_resolution_plans() {
        let openat = by_name("openat").unwrap().spec();
        assert_ne!(openat.flags & spec_flags::RET_FD, 0);
        assert_eq!(
            (openat.dirfd, openat.fd_arg),
            (1, 0),
            "relative to dfd, arg 0"
        );
        let open = by_name("open").unwrap().spec();
        assert_eq!(open.dirfd, DIRFD_CWD);
        let unlinkat = by_name("unlinkat").unwrap().spec();
        assert_eq!(unlinkat.flags & spec_flags::RET_FD, 0);
        assert_eq!(unlinkat.dirfd, 1);
        let renameat = by_name("renameat2").unwrap().spec();
        assert_eq!(
            (renameat.dirfd, renameat.fd_arg),
            (1, 0),
            "olddfd, and no fd argument"
        );
        let fchmod = by_name("fchmod").unwrap().spec();
        assert_eq!((fchmod.dirfd, fchmod.fd_arg), (0, 1));
        let dup2 = by_name("dup2").unwrap().spec();
        assert_eq!(dup2.fd_arg, 1, "oldfd");
        let close = by_name("close").unwrap().spec();
        assert_eq!(
            close.fd_arg, 0,
            "a closed descriptor has no file to walk at exit"
        );
        let symlinkat = by_name("symlinkat").unwrap().spec();
        assert_eq!(
            symlinkat.dirfd, 0,
            "the target text is not a path to resolve"
        );
        let clone = by_name("clone").unwrap().spec();
        assert_ne!(clone.flags & spec_flags::PARENT_ONLY, 0);
        let execve = by_name("execve").unwrap().spec();
        assert_ne!(execve.flags & spec_flags::EXEC, 0);
    }
}
