//! Ring-buffer records → typed [`Event`]s.
//!
//! Every length the kernel wrote is checked against the record; a record that is too short or of
//! an unknown kind is counted and skipped, never a panic.

use std::{
    borrow::Cow,
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
};

use agent_common::{
    CGROUP_NAME_LEN, DATA_MAX, EXEC_DATA_OFFSET, EventHeader, EventKind as RawKind, ExecEvent,
    ExitEvent, ForkEvent, NAME_LEN, PRELOAD_LEN, ProfileEvent, SYSCALL_DATA_OFFSET, SyscallEvent,
    exe_flags, exec_env, fork_flags, kpath, ring, stdio, taken, trunc,
};
use osprey_model::fd::FdKind;
use std::mem::offset_of;

use osprey_model::syscalls::flags::{
    SOCK_FLAGS, SOCKET_TYPES, push_flag_names, push_open_flag_names,
};

use super::{
    ring::{RingJoin, RingStats, ring_bits},
    syscalls::{self, ArgType},
};
use osprey_model::event::{
    ActionTaken, Arg, ArgValue, Event, EventKind, ExeLayer, ExeMount, Exec, ExecEnv, Exit, Fork,
    IoUring, KernelFile, KernelFileOf, ProfileVerdict, SockAddr, Syscall, TRUNCATED_MARKER,
};

/// Why a record was not decoded.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("record of {len} bytes is shorter than its {what} ({need} bytes)")]
    Short {
        what: &'static str,
        len: usize,
        need: usize,
    },
    #[error("unknown record kind {0}")]
    UnknownKind(u32),
    #[error("syscall number {0} is not in the syscall table")]
    UnknownSyscall(u32),
    #[error("profile record with unknown action {0}")]
    UnknownAction(u32),
}

/// Decoding counters, visible in `osprey trace --stats` and metrics.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct DecodeStats {
    pub decoded: u64,
    pub short: u64,
    pub unknown: u64,
    /// io_uring submissions joined with their completions (super::ring).
    pub io_uring: RingStats,
}

/// Turns records into events; holds the boot-time offset for wall-clock times, and the
/// io_uring requests waiting for their completion.
#[derive(Debug)]
pub struct Decoder {
    boot_wall_ns: u64,
    pub stats: DecodeStats,
    ring: RingJoin,
    spare: Spare,
}

fn read<T: Copy>(buf: &[u8], what: &'static str) -> Result<T, DecodeError> {
    if buf.len() < size_of::<T>() {
        return Err(DecodeError::Short {
            what,
            len: buf.len(),
            need: size_of::<T>(),
        });
    }
    // SAFETY: length checked above; T is a plain-old-data ABI struct; the read is unaligned.
    Ok(unsafe { std::ptr::read_unaligned(buf.as_ptr().cast::<T>()) })
}

fn u32_at(buf: &[u8], off: usize) -> u32 {
    buf.get(off..off + 4)
        .map(|b| u32::from_ne_bytes(b.try_into().unwrap_or_default()))
        .unwrap_or(0)
}

fn u64_at(buf: &[u8], off: usize) -> u64 {
    buf.get(off..off + 8)
        .map(|b| u64::from_ne_bytes(b.try_into().unwrap_or_default()))
        .unwrap_or(0)
}

fn cstr(bytes: &[u8]) -> String {
    let end = bytes.iter().position(|b| *b == 0).unwrap_or(bytes.len());
    String::from_utf8_lossy(&bytes[..end]).into_owned()
}

/// `bytes` as text appended to `out`, each invalid sequence a U+FFFD (as
/// `String::from_utf8_lossy`), without a string of its own.
fn push_lossy(out: &mut String, bytes: &[u8]) {
    for chunk in bytes.utf8_chunks() {
        out.push_str(chunk.valid());
        if !chunk.invalid().is_empty() {
            out.push(char::REPLACEMENT_CHARACTER);
        }
    }
}

/// The heap parts of events already judged, which the next records are decoded into: the
/// strings and vectors of a judged event become the next one's, so that on a busy node the
/// decoder allocates nothing per event (tests/hot_path.rs counts).
#[derive(Debug, Default)]
pub struct Spare {
    strings: Vec<String>,
    names: Vec<Vec<Cow<'static, str>>>,
    args: Vec<Vec<Arg>>,
}

/// Most buffers kept of each sort: the events of a few ring-buffer batches. Past it they
/// are freed.
const SPARE_MAX: usize = 16 * 1024;
/// A string grown past this (a long path, an argv element) is freed rather than kept, so the
/// pool stays small (at most 4 MiB of strings).
const SPARE_STRING_MAX: usize = 256;

impl Spare {
    fn string(&mut self) -> String {
        self.strings.pop().unwrap_or_default()
    }

    fn lossy(&mut self, bytes: &[u8]) -> String {
        let mut s = self.string();
        push_lossy(&mut s, bytes);
        s
    }

    /// Up to the first NUL.
    fn cstr(&mut self, bytes: &[u8]) -> String {
        let end = bytes.iter().position(|b| *b == 0).unwrap_or(bytes.len());
        self.lossy(&bytes[..end])
    }

    fn names(&mut self) -> Vec<Cow<'static, str>> {
        self.names.pop().unwrap_or_default()
    }

    fn keep_string(&mut self, mut s: String) {
        if s.capacity() > 0 && s.capacity() <= SPARE_STRING_MAX && self.strings.len() < SPARE_MAX {
            s.clear();
            self.strings.push(s);
        }
    }

    fn keep_value(&mut self, v: ArgValue) {
        match v {
            ArgValue::Path { raw, resolved } => {
                self.keep_string(raw);
                if let Some(r) = resolved {
                    self.keep_string(r);
                }
            }
            ArgValue::Str(s) | ArgValue::SockAddr(SockAddr::Unix { path: s }) => {
                self.keep_string(s)
            }
            ArgValue::Flags { mut names, .. } if self.names.len() < SPARE_MAX => {
                names.clear();
                self.names.push(names);
            }
            _ => {}
        }
    }

    /// Takes a judged event apart. Only syscalls are: execs, forks and exits are a small
    /// part of a busy node's events.
    fn keep(&mut self, ev: Event) {
        self.keep_string(ev.comm);
        if let EventKind::Syscall(mut sc) = ev.kind {
            for a in sc.args.drain(..) {
                self.keep_value(a.value);
            }
            if sc.args.capacity() > 0 && self.args.len() < SPARE_MAX {
                self.args.push(sc.args);
            }
            if let Some(f) = sc.file {
                self.keep_string(f.path);
            }
        }
    }
}

/// The environment the kernel read at exec (`ExecEvent::env_flags`, `preload`).
fn exec_env(rec: &[u8]) -> ExecEnv {
    let flags = u32_at(rec, offset_of!(ExecEvent, env_flags));
    let len = (u32_at(rec, offset_of!(ExecEvent, preload_len)) as usize).min(PRELOAD_LEN - 1);
    let at = offset_of!(ExecEvent, preload);
    let ld_preload = (flags & exec_env::PRELOAD != 0).then(|| {
        let mut v = String::from_utf8_lossy(&rec[at..at + len]).into_owned();
        if flags & exec_env::PRELOAD_CUT != 0 {
            v.push_str(TRUNCATED_MARKER);
        }
        v
    });
    ExecEnv {
        complete: flags & exec_env::COMPLETE != 0,
        ld_preload,
    }
}

fn split_nul(bytes: &[u8]) -> Vec<String> {
    let bytes = bytes.strip_suffix(&[0]).unwrap_or(bytes);
    if bytes.is_empty() {
        return Vec::new();
    }
    bytes
        .split(|b| *b == 0)
        .map(|s| String::from_utf8_lossy(s).into_owned())
        .collect()
}

/// Decodes a `struct sockaddr` of the given bytes.
pub fn sockaddr(b: &[u8]) -> Option<SockAddr> {
    let family = u16::from_ne_bytes(b.get(0..2)?.try_into().ok()?);
    Some(match family {
        2 if b.len() >= 8 => SockAddr::Inet {
            port: u16::from_be_bytes([b[2], b[3]]),
            ip: IpAddr::V4(Ipv4Addr::new(b[4], b[5], b[6], b[7])),
        },
        10 if b.len() >= 24 => {
            let octets: [u8; 16] = b[8..24].try_into().ok()?;
            SockAddr::Inet {
                port: u16::from_be_bytes([b[2], b[3]]),
                ip: IpAddr::V6(Ipv6Addr::from(octets)),
            }
        }
        1 => {
            let path = &b[2..];
            // An abstract socket starts with a NUL; show it as '@name' like ss(8) does.
            let path = if path.first() == Some(&0) && path.len() > 1 {
                format!("@{}", cstr(&path[1..]))
            } else {
                cstr(path)
            };
            SockAddr::Unix { path }
        }
        family => SockAddr::Other { number: family },
    })
}

fn flag_names(raw: u64, table: &'static [(u64, &'static str)]) -> Vec<Cow<'static, str>> {
    let mut names = Vec::new();
    push_flag_names(&mut names, raw, table);
    names
}

fn open_flags(raw: u64, spare: &mut Spare) -> ArgValue {
    let mut names = spare.names();
    push_open_flag_names(&mut names, raw);
    ArgValue::Flags { raw, names }
}

fn enum_value(raw: i64, table: &'static [(i64, &'static str)]) -> ArgValue {
    ArgValue::Enum {
        raw,
        name: table
            .iter()
            .find(|(v, _)| *v == raw)
            .map(|(_, n)| Cow::Borrowed(*n)),
    }
}

impl Decoder {
    pub fn new(boot_wall_ns: u64) -> Self {
        Self {
            boot_wall_ns,
            stats: DecodeStats::default(),
            ring: RingJoin::default(),
            spare: Spare::default(),
        }
    }

    /// Events the pipeline is done with: the next records are decoded into their buffers.
    pub fn recycle(&mut self, spent: impl IntoIterator<Item = Event>) {
        for ev in spent {
            self.spare.keep(ev);
        }
    }

    /// Decodes one record into `out`: none, one, or (for an io_uring completion that ends
    /// requests held past the bound) several events. An io_uring submission waits for its
    /// completion.
    pub fn decode_into(&mut self, rec: &[u8], out: &mut Vec<Event>) {
        if ring_bits(rec) == 0 {
            out.extend(self.decode(rec));
            return;
        }
        let mut ready = Vec::new();
        self.ring.push(rec, &mut ready);
        self.stats.io_uring = self.ring.stats;
        for r in ready {
            out.extend(self.decode(&r));
        }
    }

    /// io_uring requests waiting for their completion.
    pub fn io_uring_pending(&self) -> usize {
        self.ring.pending()
    }

    /// Decodes one record, counting what fails.
    pub fn decode(&mut self, rec: &[u8]) -> Option<Event> {
        let mut spare = std::mem::take(&mut self.spare);
        let decoded = self.decode_with(rec, &mut spare);
        self.spare = spare;
        match decoded {
            Ok(ev) => {
                self.stats.decoded += 1;
                Some(ev)
            }
            Err(DecodeError::Short { .. }) => {
                self.stats.short += 1;
                None
            }
            Err(_) => {
                self.stats.unknown += 1;
                None
            }
        }
    }

    pub fn try_decode(&self, rec: &[u8]) -> Result<Event, DecodeError> {
        self.decode_with(rec, &mut Spare::default())
    }

    fn decode_with(&self, rec: &[u8], spare: &mut Spare) -> Result<Event, DecodeError> {
        let h: EventHeader = read(rec, "event header")?;
        // The kernel says how much it wrote; never trust it beyond the record.
        let rec = &rec[..(h.size as usize).clamp(size_of::<EventHeader>(), rec.len())];
        let kind = match RawKind::from_u32(h.kind) {
            Some(RawKind::Exec) => EventKind::Exec(self.exec(rec)?),
            Some(RawKind::Fork) => {
                let f: ForkEvent = read(rec, "fork event")?;
                EventKind::Fork(Fork {
                    child_tid: f.child_tid,
                    child_tgid: f.child_tgid,
                    is_thread: f.flags & fork_flags::THREAD != 0,
                    child_vpid: f.child_vpid,
                    child_pid_ns: f.child_pid_ns,
                })
            }
            Some(RawKind::Exit) => {
                let e: ExitEvent = read(rec, "exit event")?;
                EventKind::Exit(Exit {
                    status: e.exit_code,
                })
            }
            Some(RawKind::Syscall) => EventKind::Syscall(syscall(rec, spare)?),
            Some(RawKind::Profile) => EventKind::Profile(profile(rec)?),
            None => return Err(DecodeError::UnknownKind(h.kind)),
        };
        Ok(Event {
            ts: h.ktime_ns,
            time: self.boot_wall_ns + h.ktime_ns,
            tgid: h.tgid,
            tid: h.tid,
            uid: h.uid,
            gid: h.gid,
            euid: h.euid,
            egid: h.egid,
            cgroup_id: h.cgroup_id,
            pid_ns: h.pid_ns,
            mnt_ns: h.mnt_ns,
            vpid: h.vpid,
            comm: spare.cstr(&h.comm),
            cap_effective: h.cap_effective,
            cap_permitted: h.cap_permitted,
            kind,
        })
    }

    fn exec(&self, rec: &[u8]) -> Result<Exec, DecodeError> {
        if rec.len() < EXEC_DATA_OFFSET {
            return Err(DecodeError::Short {
                what: "exec event",
                len: rec.len(),
                need: EXEC_DATA_OFFSET,
            });
        }
        let at = |field: usize| u32_at(rec, field);
        let name_len = (at(offset_of!(ExecEvent, filename_len)) as usize).min(DATA_MAX);
        let args_len = (at(offset_of!(ExecEvent, args_len)) as usize).min(DATA_MAX);
        let flags = at(offset_of!(ExecEvent, flags));
        let exe_flags = at(offset_of!(ExecEvent, exe_flags));
        let exe_path_len = (at(offset_of!(ExecEvent, exe_path_len)) as usize).min(DATA_MAX);
        let exe_path_flags = at(offset_of!(ExecEvent, exe_path_flags));
        let names = offset_of!(ExecEvent, exe_name);
        let exe_name = cstr(&rec[names..names + NAME_LEN]);
        let cg = offset_of!(ExecEvent, cgroup_name);
        let cgroup_name = cstr(&rec[cg..cg + CGROUP_NAME_LEN]);
        let cgroup_parent = cstr(&rec[cg + CGROUP_NAME_LEN..cg + 2 * CGROUP_NAME_LEN]);
        let data = &rec[EXEC_DATA_OFFSET..];
        let need = name_len + args_len + exe_path_len;
        if data.len() < need {
            return Err(DecodeError::Short {
                what: "exec path, argv and executable",
                len: rec.len(),
                need: EXEC_DATA_OFFSET + need,
            });
        }
        let magic = if exe_flags & exe_flags::OVERLAY != 0 {
            KernelFile::OVERLAYFS_MAGIC
        } else {
            0
        };
        let exe_file = (exe_path_len > 0).then(|| {
            kernel_file(
                KernelFileOf::Exe,
                &data[name_len + args_len..need],
                exe_path_flags,
                magic,
                0,
            )
        });
        Ok(Exec {
            filename: String::from_utf8_lossy(&data[..name_len]).into_owned(),
            args: split_nul(&data[name_len..name_len + args_len]),
            args_truncated: flags & (trunc::ARGS | trunc::CAPTURE0) != 0,
            exe_name,
            interpreted: exe_flags & exe_flags::INTERPRETED != 0,
            elf32: exe_flags & exe_flags::ELF32 != 0,
            exe_layer: (exe_flags & exe_flags::OVERLAY != 0).then_some(ExeLayer {
                upper: exe_flags & exe_flags::UPPER != 0,
                lower: exe_flags & exe_flags::LOWER != 0,
            }),
            exe_mount: (exe_flags & exe_flags::OTHER_MOUNT != 0).then_some(ExeMount {
                read_only: exe_flags & exe_flags::READ_ONLY_MOUNT != 0,
            }),
            cgroup: if cgroup_parent.is_empty() {
                cgroup_name
            } else {
                format!("{cgroup_parent}/{cgroup_name}")
            },
            exe_file,
            env: Some(exec_env(rec)),
            stdio: std::array::from_fn(|i| {
                stdio_kind(u32_at(rec, offset_of!(ExecEvent, stdio) + 4 * i))
            }),
        })
    }
}

/// One of `ExecEvent::stdio` as an fd kind; `None` for a closed descriptor.
fn stdio_kind(code: u32) -> Option<FdKind> {
    if code & stdio::OPEN == 0 {
        return None;
    }
    Some(match code & stdio::TYPE_MASK {
        stdio::S_IFSOCK => FdKind::of_family(i64::from(code >> stdio::FAMILY_SHIFT)),
        stdio::S_IFIFO => FdKind::Pipe,
        stdio::S_IFDIR => FdKind::Directory,
        // No type bits: an anonymous inode (eventfd, epoll, pidfd...).
        0 => FdKind::AnonInode,
        _ => FdKind::File,
    })
}

/// A syscall record, its strings and vectors taken from `spare`.
fn syscall(rec: &[u8], spare: &mut Spare) -> Result<Syscall, DecodeError> {
    if rec.len() < SYSCALL_DATA_OFFSET {
        return Err(DecodeError::Short {
            what: "syscall event",
            len: rec.len(),
            need: SYSCALL_DATA_OFFSET,
        });
    }
    let nr = u32_at(rec, offset_of!(SyscallEvent, nr));
    let flags = u32_at(rec, offset_of!(SyscallEvent, flags));
    let ret = u64_at(rec, offset_of!(SyscallEvent, ret)) as i64;
    let kflags = u32_at(rec, offset_of!(SyscallEvent, kpath_flags));
    let kmagic = u32_at(rec, offset_of!(SyscallEvent, kpath_magic));
    let kino = u64_at(rec, offset_of!(SyscallEvent, kpath_ino));
    let ring_bits = u32_at(rec, offset_of!(SyscallEvent, ring));
    let args_off = offset_of!(SyscallEvent, args);
    let raw: [u64; 6] = std::array::from_fn(|i| u64_at(rec, args_off + 8 * i));
    let cap_off = offset_of!(SyscallEvent, cap_len);
    let cap_len: [usize; 4] = std::array::from_fn(|i| {
        let b = &rec[cap_off + 2 * i..cap_off + 2 * i + 2];
        u16::from_ne_bytes([b[0], b[1]]) as usize
    });
    let data = &rec[SYSCALL_DATA_OFFSET..];
    let total: usize = cap_len.iter().sum();
    if data.len() < total {
        return Err(DecodeError::Short {
            what: "syscall captures",
            len: rec.len(),
            need: SYSCALL_DATA_OFFSET + total,
        });
    }
    let mut chunks: [&[u8]; 4] = [&[]; 4];
    let mut off = 0;
    // The captures, then the kernel path.
    for i in 0..4 {
        chunks[i] = &data[off..off + cap_len[i]];
        off += cap_len[i];
    }

    let (def, slots) = syscalls::decoding(nr).ok_or(DecodeError::UnknownSyscall(nr))?;
    let of = if kflags & kpath::OF_RET != 0 {
        Some(KernelFileOf::Returned)
    } else if kflags & kpath::OF_FD_ARG != 0 {
        Some(KernelFileOf::FdArg)
    } else if kflags & kpath::OF_DIR != 0 {
        Some(KernelFileOf::Dir)
    } else {
        None
    };
    // A walk that found no file (a descriptor that was not open) read no name, no file
    // system and no inode: no file, rather than one named "/". The root itself has both.
    let walked = !chunks[3].is_empty() || kmagic != 0 || kino != 0;
    let file = of.filter(|_| walked).map(|of| {
        let path = spare.string();
        kernel_file_into(of, chunks[3], kflags, kmagic, kino, path)
    });
    let mut first_path = true;
    let mut args = spare.args.pop().unwrap_or_default();
    args.extend(def.args.iter().enumerate().map(|(i, a)| {
        let mut value = decode_arg(a.ty, raw[i], slots[i].map(|s| chunks[s]), spare);
        if let (ArgValue::Path { raw, resolved }, Some(f)) = (&mut value, &file)
            && std::mem::take(&mut first_path)
        {
            let mut into = spare.string();
            if resolve_with(raw, f, &mut into) {
                if let Some(old) = resolved.replace(into) {
                    spare.keep_string(old);
                }
            } else {
                spare.keep_string(into);
            }
        }
        Arg {
            name: Cow::Borrowed(a.name),
            value,
        }
    }));
    Ok(Syscall {
        name: Cow::Borrowed(def.name),
        nr,
        ret,
        args,
        truncated: flags & (trunc::CAPTURE0 | trunc::CAPTURE1 | trunc::CAPTURE2 | trunc::ARGS) != 0,
        ia32: flags & trunc::COMPAT != 0,
        ia32_from_64bit: flags & (trunc::COMPAT | trunc::COMPAT_FROM_64)
            == trunc::COMPAT | trunc::COMPAT_FROM_64,
        latency_ns: 0,
        file,
        io_uring: (ring_bits != 0).then(|| IoUring {
            op: Cow::Borrowed(ring::name_of((ring_bits & ring::OPCODE) as u8)),
            fixed_file: ring_bits & ring::FIXED_FILE != 0,
            direct: ring_bits & ring::DIRECT != 0,
        }),
    })
}

/// A kernel path record (`agent_common::kpath`: names leaf first, NUL after each) as the path
/// `/proc/PID/fd` would show.
pub fn kernel_file(of: KernelFileOf, bytes: &[u8], flags: u32, magic: u32, ino: u64) -> KernelFile {
    kernel_file_into(of, bytes, flags, magic, ino, String::new())
}

/// [`kernel_file`], its path written into `path` (a spare string).
fn kernel_file_into(
    of: KernelFileOf,
    bytes: &[u8],
    flags: u32,
    magic: u32,
    ino: u64,
    mut path: String,
) -> KernelFile {
    use std::fmt::Write;
    let bytes = bytes.strip_suffix(&[0]).unwrap_or(bytes);
    let names = || bytes.split(|b| *b == 0).filter(|n| !n.is_empty());
    let pseudo = flags & kpath::PSEUDO != 0;
    // The root side is missing: the walk hit its bound, or read a zero pointer on the way
    // (a dentry torn down under it). Shown as cut, never as a whole path it is not.
    let partial = kpath::TRUNCATED | kpath::BROKEN;
    path.clear();
    // Writing into a String cannot fail.
    let _ = match magic {
        KernelFile::SOCKFS_MAGIC if pseudo => write!(path, "socket:[{ino}]"),
        KernelFile::PIPEFS_MAGIC if pseudo => write!(path, "pipe:[{ino}]"),
        KernelFile::ANON_INODE_FS_MAGIC if pseudo => {
            path.push_str("anon_inode:");
            push_lossy(&mut path, names().next().unwrap_or_default());
            Ok(())
        }
        KernelFile::NSFS_MAGIC if pseudo => write!(path, "nsfs:[{ino}]"),
        _ => {
            if flags & partial != 0 {
                path.push_str("/...");
            }
            // Leaf first in the record: the root's child is the last name.
            for n in bytes.rsplit(|b| *b == 0).filter(|n| !n.is_empty()) {
                path.push('/');
                push_lossy(&mut path, n);
            }
            if path.is_empty() {
                path.push('/');
            }
            Ok(())
        }
    };
    let deleted = flags & kpath::DELETED != 0;
    if deleted {
        path.push_str(" (deleted)");
    }
    KernelFile {
        of,
        path,
        fs_magic: magic,
        ino,
        deleted,
        truncated: flags & partial != 0,
        outside_root: flags & kpath::OUTSIDE_ROOT != 0,
        file_type: ((flags & kpath::TYPE_MASK) >> kpath::TYPE_SHIFT) as u8,
    }
}

/// The absolute path of what a path argument named, from what the kernel resolved: the opened
/// file itself, or the directory a relative path starts from joined with it. Written into
/// `out`; false when the kernel's record does not say.
fn resolve_with(raw: &str, f: &KernelFile, out: &mut String) -> bool {
    if f.truncated || f.outside_root {
        return false;
    }
    match (f.of, f.file_path()) {
        (KernelFileOf::Returned, Some(p)) => {
            out.clear();
            // Only the suffix the decoder added: a file really named `id_rsa (deleted)` keeps
            // its name (the kernel's open filter compares the names the kernel walked).
            let p = if f.deleted {
                p.strip_suffix(" (deleted)").unwrap_or(p)
            } else {
                p
            };
            out.push_str(p);
            true
        }
        (KernelFileOf::Dir, Some(dir)) if !raw.starts_with('/') && !raw.is_empty() => {
            osprey_model::path::normalize_into(out, &[dir, raw]);
            true
        }
        _ => false,
    }
}

/// A profile verdict record; the profile's name is filled in by whoever knows the slots.
fn profile(rec: &[u8]) -> Result<ProfileVerdict, DecodeError> {
    let p: ProfileEvent = read(rec, "profile event")?;
    let verdict =
        osprey_model::Action::from_kernel(p.action).ok_or(DecodeError::UnknownAction(p.action))?;
    let action_taken = if p.taken & taken::KILLED != 0 {
        ActionTaken::Killed
    } else if p.taken & taken::KILL_FAILED != 0 {
        ActionTaken::KillFailed
    } else {
        ActionTaken::Reported
    };
    Ok(ProfileVerdict {
        profile: String::new(),
        slot: p.slot,
        name: match osprey_model::syscalls::name(p.nr) {
            Some(n) => Cow::Borrowed(n),
            None => Cow::Owned(format!("syscall_{}", p.nr)),
        },
        nr: p.nr,
        args: p.args,
        verdict,
        action_taken,
        io_uring: p.taken & taken::IO_URING != 0,
    })
}

fn decode_arg(ty: ArgType, raw: u64, data: Option<&[u8]>, spare: &mut Spare) -> ArgValue {
    let data = data.unwrap_or(&[]);
    match ty {
        // Each argument is what the kernel reads of its register: the low 32 bits of an `int`
        // (sign-extended) or `unsigned int`, the low 16 of a `umode_t`, whatever the rest holds.
        ArgType::Int => ArgValue::Int(raw as i64),
        ArgType::Int32 => ArgValue::Int(raw as u32 as i32 as i64),
        ArgType::UInt32 => ArgValue::Int(i64::from(raw as u32)),
        // Fds are C ints: sign-extend the low 32 bits so AT_FDCWD reads -100.
        ArgType::Fd => ArgValue::Fd(raw as u32 as i32 as i64),
        ArgType::Id => ArgValue::Id(raw as u32),
        ArgType::Mode => ArgValue::Mode(u32::from(raw as u16)),
        ArgType::Ptr => ArgValue::Ptr(raw),
        ArgType::Path => {
            let raw_path = spare.lossy(data);
            let resolved = raw_path.starts_with('/').then(|| {
                let mut r = spare.string();
                osprey_model::path::normalize_into(&mut r, &[&raw_path]);
                r
            });
            ArgValue::Path {
                raw: raw_path,
                resolved,
            }
        }
        ArgType::Str => ArgValue::Str(spare.lossy(data)),
        ArgType::StrOrInt if data.is_empty() => ArgValue::Int(raw as i64),
        ArgType::StrOrInt => ArgValue::Str(spare.lossy(data)),
        ArgType::SockAddr { .. } | ArgType::SockAddrOut { .. } => match sockaddr(data) {
            Some(sa) => ArgValue::SockAddr(sa),
            None => ArgValue::Ptr(raw),
        },
        ArgType::Argv => ArgValue::Argv(split_nul(data)),
        ArgType::Flags(table) => {
            let mut names = spare.names();
            push_flag_names(&mut names, raw, table);
            ArgValue::Flags { raw, names }
        }
        ArgType::Flags32(table) => {
            let raw = u64::from(raw as u32);
            let mut names = spare.names();
            push_flag_names(&mut names, raw, table);
            ArgValue::Flags { raw, names }
        }
        ArgType::OpenFlags => open_flags(u64::from(raw as u32), spare),
        ArgType::Enum(table) => enum_value(raw as u32 as i32 as i64, table),
        ArgType::LongEnum(table) => enum_value(raw as i64, table),
        ArgType::SockType => {
            let raw = u64::from(raw as u32);
            let ty = (raw & 0xf) as i64;
            let mut names: Vec<Cow<'static, str>> = SOCKET_TYPES
                .iter()
                .find(|(v, _)| *v == ty)
                .map(|(_, n)| Cow::Borrowed(*n))
                .into_iter()
                .collect();
            names.extend(flag_names(raw & !0xf, SOCK_FLAGS));
            ArgValue::Flags { raw, names }
        }
        // struct open_how { u64 flags; u64 mode; u64 resolve; }: shown as its flags.
        ArgType::OpenHow => match data.get(0..8) {
            Some(b) => open_flags(u64::from_ne_bytes(b.try_into().unwrap_or_default()), spare),
            None => ArgValue::Ptr(raw),
        },
        // struct clone_args starts with u64 flags.
        ArgType::CloneArgs => match data.get(0..8) {
            Some(b) => {
                let flags = u64::from_ne_bytes(b.try_into().unwrap_or_default());
                ArgValue::Flags {
                    raw: flags,
                    names: flag_names(flags, osprey_model::syscalls::flags::CLONE_FLAGS),
                }
            }
            None => ArgValue::Ptr(raw),
        },
        // Two struct __user_cap_data_struct { u32 effective, permitted, inheritable }: the low
        // and high 32 capability bits. Shown as the effective set, a 64-bit mask.
        ArgType::CapData => {
            if data.len() >= 24 {
                let w = |i: usize| u32_at(data, 4 * i) as u64;
                let effective = w(0) | (w(3) << 32);
                ArgValue::Flags {
                    raw: effective,
                    names: osprey_model::event::cap_names(effective)
                        .into_iter()
                        .map(Cow::Borrowed)
                        .collect(),
                }
            } else {
                ArgValue::Ptr(raw)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{
        super::record::{as_bytes, header, kpath_bytes, syscall as syscall_record, with_kpath},
        *,
    };

    #[test]
    fn decodes_openat_with_flags_and_path() {
        let rec = syscall_record(
            257,
            3,
            [(-100i64) as u64, 0x7fff, 0o1101, 0o644, 0, 0],
            &[b"/tmp/../tmp/x"],
        );
        let ev = Decoder::new(0).try_decode(&rec).unwrap();
        assert_eq!(ev.tgid, 42);
        assert_eq!(ev.comm, "test");
        let EventKind::Syscall(sc) = ev.kind else {
            panic!("not a syscall")
        };
        assert_eq!(sc.name, "openat");
        assert_eq!(sc.ret, 3);
        assert_eq!(sc.arg("dfd"), Some(&ArgValue::Fd(-100)));
        assert_eq!(
            sc.arg("filename"),
            Some(&ArgValue::Path {
                raw: "/tmp/../tmp/x".into(),
                resolved: Some("/tmp/x".into())
            })
        );
        let Some(ArgValue::Flags { names, .. }) = sc.arg("flags") else {
            panic!("flags")
        };
        assert_eq!(names, &["O_WRONLY", "O_CREAT", "O_TRUNC"]);
        assert_eq!(sc.arg("mode"), Some(&ArgValue::Mode(0o644)));
    }

    fn decode_syscall(rec: &[u8]) -> Syscall {
        match Decoder::new(0).try_decode(rec).unwrap().kind {
            EventKind::Syscall(sc) => sc,
            other => panic!("not a syscall: {other:?}"),
        }
    }

    /// The kernel flags a call through the 32-bit entry, and one made from 64-bit code; the
    /// second alone (a record no kernel writes) is not a 32-bit call.
    #[test]
    fn a_32_bit_call_says_whether_64_bit_code_made_it() {
        let with_flags = |flags: u32| {
            let mut rec = syscall_record(2, 3, [1, 0, 0, 0, 0, 0], &[b"/etc/shadow"]);
            let at = std::mem::offset_of!(SyscallEvent, flags);
            rec[at..at + 4].copy_from_slice(&flags.to_ne_bytes());
            let sc = decode_syscall(&rec);
            (sc.ia32, sc.ia32_from_64bit)
        };
        assert_eq!(with_flags(0), (false, false));
        assert_eq!(with_flags(trunc::COMPAT), (true, false));
        assert_eq!(
            with_flags(trunc::COMPAT | trunc::COMPAT_FROM_64),
            (true, true)
        );
        assert_eq!(with_flags(trunc::COMPAT_FROM_64), (false, false));
    }

    #[test]
    fn an_open_resolves_to_the_file_the_kernel_opened() {
        // open("/proc/self/root/etc/./passwd-link") that landed on /etc/shadow.
        let rec = syscall_record(2, 3, [1, 0, 0, 0, 0, 0], &[b"/proc/self/root/etc/link"]);
        let rec = with_kpath(rec, &["shadow", "etc"], kpath::OF_RET, 0xef53, 77);
        let sc = decode_syscall(&rec);
        let f = sc.file.as_ref().unwrap();
        assert_eq!(
            (f.of, f.path.as_str(), f.ino),
            (KernelFileOf::Returned, "/etc/shadow", 77)
        );
        assert_eq!(
            sc.arg("filename"),
            Some(&ArgValue::Path {
                raw: "/proc/self/root/etc/link".into(),
                resolved: Some("/etc/shadow".into())
            })
        );
    }

    /// A file named `id_rsa (deleted)` that is not deleted keeps its whole name; a deleted
    /// one loses the suffix the decoder gave it, not a part of its name.
    #[test]
    fn only_a_deleted_files_suffix_is_taken_off() {
        let resolved = |names: &[&str], flags| {
            let rec = syscall_record(2, 3, [1, 0, 0, 0, 0, 0], &[b"/k"]);
            let rec = with_kpath(rec, names, kpath::OF_RET | flags, 0xef53, 7);
            match decode_syscall(&rec).arg("filename") {
                Some(ArgValue::Path { resolved, .. }) => resolved.clone(),
                _ => None,
            }
        };
        assert_eq!(
            resolved(&["id_rsa (deleted)", ".ssh"], 0).as_deref(),
            Some("/.ssh/id_rsa (deleted)")
        );
        assert_eq!(
            resolved(&["id_rsa", ".ssh"], kpath::DELETED).as_deref(),
            Some("/.ssh/id_rsa")
        );
    }

    #[test]
    fn a_relative_path_joins_the_directory_the_kernel_resolved() {
        // openat(open("/etc"), "shadow") that failed: the directory still resolves it.
        let rec = syscall_record(257, -13, [5, 1, 0, 0, 0, 0], &[b"./shadow"]);
        let rec = with_kpath(rec, &["etc"], kpath::OF_DIR, 0xef53, 2);
        let sc = decode_syscall(&rec);
        let Some(ArgValue::Path { resolved, .. }) = sc.arg("filename") else {
            panic!()
        };
        assert_eq!(resolved.as_deref(), Some("/etc/shadow"));
    }

    #[test]
    fn kernel_paths_of_pseudo_deleted_and_deep_files() {
        let f = |names: &[&str], flags, magic, ino| {
            kernel_file(KernelFileOf::FdArg, &kpath_bytes(names), flags, magic, ino).path
        };
        assert_eq!(
            f(&["TCP"], kpath::PSEUDO, KernelFile::SOCKFS_MAGIC, 9),
            "socket:[9]"
        );
        assert_eq!(
            f(&[""], kpath::PSEUDO, KernelFile::PIPEFS_MAGIC, 8),
            "pipe:[8]"
        );
        assert_eq!(
            f(
                &["memfd:payload"],
                kpath::PSEUDO,
                KernelFile::TMPFS_MAGIC,
                1
            ),
            "/memfd:payload"
        );
        assert_eq!(f(&["x", "tmp"], kpath::DELETED, 0, 1), "/tmp/x (deleted)");
        assert_eq!(f(&["leaf", "b"], kpath::TRUNCATED, 0, 1), "/.../b/leaf");
        assert_eq!(f(&["leaf", "b"], kpath::BROKEN, 0, 1), "/.../b/leaf");
        assert_eq!(f(&[], 0, 0, 1), "/");
        // A truncated or outside-root walk never stands in for the raw path.
        let trunc = kernel_file(
            KernelFileOf::Returned,
            &kpath_bytes(&["x"]),
            kpath::TRUNCATED,
            0,
            1,
        );
        assert!(!resolve_with("/a/x", &trunc, &mut String::new()));
    }

    /// A descriptor that was not open (EBADF, or a close whose descriptor is gone at exit)
    /// gives the walk nothing: no file, where it used to show as `/`.
    #[test]
    fn a_walk_that_found_nothing_is_no_file() {
        let rec = syscall_record(91, -9, [1000, 0o644, 0, 0, 0, 0], &[]); // fchmod
        let nothing = with_kpath(rec.clone(), &[], kpath::OF_FD_ARG, 0, 0);
        assert_eq!(decode_syscall(&nothing).file, None);
        let root = with_kpath(rec, &[], kpath::OF_FD_ARG, 0xef53, 2);
        assert_eq!(decode_syscall(&root).file.unwrap().path, "/");
    }

    /// Decoding into a judged event's buffers gives the event a fresh decode gives: nothing
    /// of the earlier event (a longer path, a resolved path, flag names) shows through.
    #[test]
    fn recycled_buffers_decode_as_fresh_ones() {
        let mut unix = b"\x01\x00/run/a-longer-socket-name.sock\0".to_vec();
        unix.resize(110, 0);
        let recs = [
            with_kpath(
                syscall_record(
                    257,
                    3,
                    [1, 2, 0o101, 0, 0, 0],
                    &[b"/var/lib/x/../y/long-name"],
                ),
                &["long-name", "y", "lib", "var"],
                kpath::OF_RET,
                0xef53,
                9,
            ),
            syscall_record(257, -2, [1, 2, 0, 0, 0, 0], &[b"/a"]),
            with_kpath(
                syscall_record(257, -13, [5, 1, 0, 0, 0, 0], &[b"./shadow"]),
                &["etc"],
                kpath::OF_DIR,
                0xef53,
                2,
            ),
            syscall_record(42, 0, [3, 1, 110, 0, 0, 0], &[&unix]),
            syscall_record(3, 0, [3, 0, 0, 0, 0, 0], &[]),
            syscall_record(59, 0, [0; 6], &[b"/bin/true", b"true\0-x\0"]),
        ];
        let mut d = Decoder::new(0);
        for round in 0..3 {
            // Each record decoded into buffers left by every other kind of record.
            for (i, rec) in recs.iter().enumerate() {
                let fresh = Decoder::new(0).try_decode(rec).unwrap();
                let mut out = Vec::new();
                d.decode_into(rec, &mut out);
                assert_eq!(out, [fresh], "record {i}, round {round}");
                d.recycle(out);
            }
        }
    }

    #[test]
    fn decodes_connect_addresses() {
        let mut v4 = vec![2u8, 0, 0x1f, 0x90, 127, 0, 0, 1];
        v4.extend([0; 8]);
        let rec = syscall_record(42, 0, [3, 1, 16, 0, 0, 0], &[&v4]);
        let EventKind::Syscall(sc) = Decoder::new(0).try_decode(&rec).unwrap().kind else {
            panic!()
        };
        assert_eq!(
            sc.arg("uservaddr"),
            Some(&ArgValue::SockAddr(SockAddr::Inet {
                ip: "127.0.0.1".parse().unwrap(),
                port: 8080
            }))
        );
        let mut v6 = vec![10u8, 0, 0, 80, 0, 0, 0, 0];
        v6.extend(Ipv6Addr::LOCALHOST.octets());
        v6.extend([0; 4]);
        assert_eq!(
            sockaddr(&v6),
            Some(SockAddr::Inet {
                ip: "::1".parse().unwrap(),
                port: 80
            })
        );
        let unix = b"\x01\x00/run/x.sock\0\0\0";
        assert_eq!(
            sockaddr(unix),
            Some(SockAddr::Unix {
                path: "/run/x.sock".into()
            })
        );
        assert_eq!(
            sockaddr(b"\x01\x00\0abstract"),
            Some(SockAddr::Unix {
                path: "@abstract".into()
            })
        );
    }

    /// An `int` argument is the low 32 bits of its register, as the kernel reads it; ptrace's
    /// `long` request is all 64.
    #[test]
    fn int_enumerations_are_read_as_the_kernel_reads_them() {
        let arg = |nr: u32, args: [u64; 6], name: &str| {
            let rec = syscall_record(nr, 0, args, &[]);
            let EventKind::Syscall(sc) = Decoder::new(0).try_decode(&rec).unwrap().kind else {
                panic!()
            };
            sc.arg(name).cloned()
        };
        let hi = 1u64 << 32;
        let named = |raw: i64, name: &'static str| ArgValue::Enum {
            raw,
            name: Some(Cow::Borrowed(name)),
        };
        // fcntl(3, F_DUPFD | 1 << 32, 0), socket(AF_PACKET | 1 << 32, ...), prctl(PR_SET_NAME
        // | 1 << 32, ...), kill(1, SIGKILL | 1 << 32).
        assert_eq!(
            arg(72, [3, hi, 0, 0, 0, 0], "cmd"),
            Some(named(0, "F_DUPFD"))
        );
        assert_eq!(
            arg(41, [hi | 17, 3, 0, 0, 0, 0], "family"),
            Some(named(17, "AF_PACKET"))
        );
        assert_eq!(
            arg(157, [hi | 15, 0, 0, 0, 0, 0], "option"),
            Some(named(15, "PR_SET_NAME"))
        );
        assert_eq!(
            arg(62, [1, hi | 9, 0, 0, 0, 0], "sig"),
            Some(named(9, "SIGKILL"))
        );
        // PTRACE_TRACEME is 0; with a high bit set it is another request to the kernel.
        assert_eq!(
            arg(101, [hi, 0, 0, 0, 0, 0], "request"),
            Some(ArgValue::Enum {
                raw: hi as i64,
                name: None
            })
        );
        // Numbers and bit sets too: ptrace(PTRACE_ATTACH, pid | 1 << 32) attaches to `pid`,
        // kill(-1 | 1 << 32, 0) signals every process, close_range(3 | 1 << 32, ...) closes
        // from 3, chmod(path, 04755 | 1 << 16) sets 04755, openat(..., O_WRONLY | 1 << 32).
        assert_eq!(
            arg(101, [16, hi | 4321, 0, 0, 0, 0], "pid"),
            Some(ArgValue::Int(4321))
        );
        assert_eq!(
            arg(62, [hi | 0xffff_ffff, 0, 0, 0, 0, 0], "pid"),
            Some(ArgValue::Int(-1))
        );
        assert_eq!(
            arg(436, [hi | 3, hi | 9, 0, 0, 0, 0], "fd"),
            Some(ArgValue::Int(3))
        );
        assert_eq!(
            arg(436, [3, hi | 9, 0, 0, 0, 0], "max_fd"),
            Some(ArgValue::Int(9))
        );
        assert_eq!(
            arg(90, [0, 0o4755 | 1 << 16, 0, 0, 0, 0], "mode"),
            Some(ArgValue::Mode(0o4755))
        );
        let Some(ArgValue::Flags { raw, names }) = arg(257, [0, 0, hi | 1, 0, 0, 0], "flags")
        else {
            panic!()
        };
        assert_eq!((raw, names.iter().any(|n| n == "O_WRONLY")), (1, true));
        let Some(ArgValue::Flags { raw, .. }) = arg(436, [3, 9, hi | 4, 0, 0, 0], "flags") else {
            panic!()
        };
        assert_eq!(raw, 4);
        // A `long` is read whole: ftruncate's length.
        assert_eq!(
            arg(77, [3, hi, 0, 0, 0, 0], "length"),
            Some(ArgValue::Int(hi as i64))
        );
    }

    #[test]
    fn decodes_execve_argv_and_failure() {
        let rec = syscall_record(59, -2, [1, 2, 3, 0, 0, 0], &[b"/nope", b"nope\0-x\0"]);
        let EventKind::Syscall(sc) = Decoder::new(0).try_decode(&rec).unwrap().kind else {
            panic!()
        };
        assert_eq!(sc.errno(), Some(2));
        assert_eq!(
            sc.arg("argv"),
            Some(&ArgValue::Argv(vec!["nope".into(), "-x".into()]))
        );
    }

    #[test]
    fn short_and_unknown_records_are_counted_not_fatal() {
        let mut d = Decoder::new(0);
        assert!(d.decode(&[1, 2, 3]).is_none());
        let mut rec = syscall_record(257, 0, [0; 6], &[b"/x"]);
        assert!(d.decode(&rec[..rec.len() - 1]).is_none());
        rec[0] = 99;
        assert!(d.decode(&rec).is_none());
        let unknown_nr = syscall_record(499, 0, [0; 6], &[]);
        assert!(d.decode(&unknown_nr).is_none());
        assert_eq!(
            d.stats,
            DecodeStats {
                decoded: 0,
                short: 2,
                unknown: 2,
                io_uring: RingStats::default(),
            }
        );
        // Every prefix of a valid record decodes or is rejected, never panics.
        let rec = syscall_record(59, 0, [0; 6], &[b"/bin/true", b"true\0"]);
        for n in 0..rec.len() {
            let _ = d.decode(&rec[..n]);
        }
    }

    #[test]
    fn decodes_exec_and_exit() {
        let mut ev: agent_common::ExecEvent = unsafe { std::mem::zeroed() };
        let path = b"/usr/bin/env";
        let args = b"env\0-i\0true\0";
        ev.data[..path.len()].copy_from_slice(path);
        ev.data[path.len()..path.len() + args.len()].copy_from_slice(args);
        ev.filename_len = path.len() as u32;
        ev.args_len = args.len() as u32;
        ev.exe_flags =
            exe_flags::OVERLAY | exe_flags::UPPER | exe_flags::OTHER_MOUNT | exe_flags::ELF32;
        ev.exe_name[..4].copy_from_slice(b"env\0");
        ev.cgroup_name[..8].copy_from_slice(b"libpod-x");
        ev.cgroup_parent[..6].copy_from_slice(b"parent");
        ev.env_flags = exec_env::COMPLETE | exec_env::PRELOAD;
        ev.preload[..9].copy_from_slice(b"/x/h.so\0\0");
        ev.preload_len = 7;
        // stdin a TCP socket (S_IFSOCK, AF_INET), stdout a pipe, stderr closed.
        ev.stdio = [
            stdio::OPEN | stdio::S_IFSOCK | 2 << stdio::FAMILY_SHIFT,
            stdio::OPEN | stdio::S_IFIFO,
            0,
        ];
        let size = EXEC_DATA_OFFSET + path.len() + args.len();
        ev.header = header(RawKind::Exec, size);
        let mut rec = as_bytes(&ev);
        rec.truncate(size);
        let EventKind::Exec(exec) = Decoder::new(0).try_decode(&rec).unwrap().kind else {
            panic!()
        };
        assert_eq!(exec.filename, "/usr/bin/env");
        assert_eq!(exec.args, vec!["env", "-i", "true"]);
        assert_eq!(exec.exe_name, "env");
        assert!(!exec.interpreted);
        assert!(exec.elf32);
        assert_eq!(exec.cgroup, "parent/libpod-x");
        assert_eq!(exec.stdio, [Some(FdKind::Ipv4), Some(FdKind::Pipe), None]);
        // Every kind the kernel's codes map to: a terminal or /dev/null is a file, an eventfd
        // (no type bits) an anonymous inode, a socket of another family a socket.
        let kinds = [
            (stdio::S_IFCHR, 0, FdKind::File),
            (stdio::S_IFREG, 0, FdKind::File),
            (stdio::S_IFDIR, 0, FdKind::Directory),
            (0, 0, FdKind::AnonInode),
            (stdio::S_IFSOCK, 10, FdKind::Ipv6),
            (stdio::S_IFSOCK, 1, FdKind::Unix),
            (stdio::S_IFSOCK, 16, FdKind::Netlink),
            (stdio::S_IFSOCK, 17, FdKind::Socket),
        ];
        for (ty, family, kind) in kinds {
            let code = stdio::OPEN | ty | family << stdio::FAMILY_SHIFT;
            assert_eq!(super::stdio_kind(code), Some(kind), "{code:#x}");
        }
        let env = |flags, len| {
            let mut e = ev;
            e.env_flags = flags;
            e.preload_len = len;
            super::exec_env(&as_bytes(&e))
        };
        assert_eq!(
            exec.env,
            Some(ExecEnv {
                complete: true,
                ld_preload: Some("/x/h.so".into())
            })
        );
        // No entry; an entry cut at the kernel's bound; a scan that did not finish.
        assert_eq!(env(exec_env::COMPLETE, 0).ld_preload, None);
        let cut = env(exec_env::PRELOAD | exec_env::PRELOAD_CUT, 7);
        assert_eq!(
            cut.ld_preload.unwrap(),
            format!("/x/h.so{TRUNCATED_MARKER}")
        );
        assert!(!cut.complete);
        assert_eq!(
            env(exec_env::PRELOAD, 9999).ld_preload.unwrap().len(),
            PRELOAD_LEN - 1
        );
        assert_eq!(
            exec.exe_layer,
            Some(ExeLayer {
                upper: true,
                lower: false
            })
        );
        assert_eq!(exec.exe_mount, Some(ExeMount { read_only: false }));
        let mut script = ev;
        script.exe_flags = exe_flags::INTERPRETED;
        let EventKind::Exec(s) = Decoder::new(0)
            .try_decode(&as_bytes(&script)[..size])
            .unwrap()
            .kind
        else {
            panic!()
        };
        assert!(s.interpreted);
        assert_eq!((s.exe_layer, s.exe_mount), (None, None));

        let exit = ExitEvent {
            header: header(RawKind::Exit, size_of::<ExitEvent>()),
            exit_code: 3 << 8,
            group_dead: 1,
        };
        let EventKind::Exit(e) = Decoder::new(0).try_decode(&as_bytes(&exit)).unwrap().kind else {
            panic!()
        };
        assert_eq!(e.code(), 3);
    }

    #[test]
    fn decodes_profile_verdicts() {
        let mut p = agent_common::ProfileEvent {
            header: header(RawKind::Profile, size_of::<agent_common::ProfileEvent>()),
            nr: 272,
            slot: 3,
            action: agent_common::action::KILL,
            taken: taken::KILLED,
            args: [0x1000_0000, 0, 0, 0, 0, 0],
        };
        let EventKind::Profile(v) = Decoder::new(0).try_decode(&as_bytes(&p)).unwrap().kind else {
            panic!("not a profile verdict");
        };
        assert_eq!(v.name, "unshare");
        assert_eq!(v.slot, 3);
        assert_eq!(v.verdict, osprey_model::Action::Kill);
        assert_eq!(v.action_taken, ActionTaken::Killed);
        assert_eq!(v.args[0], 0x1000_0000);
        assert!(!v.io_uring);
        // The same verdict on a ring's request: killed, and said to come from the ring.
        p.taken = taken::KILLED | taken::IO_URING;
        let EventKind::Profile(v) = Decoder::new(0).try_decode(&as_bytes(&p)).unwrap().kind else {
            panic!("not a profile verdict");
        };
        assert_eq!((v.action_taken, v.io_uring), (ActionTaken::Killed, true));
        p.action = 77;
        assert!(Decoder::new(0).try_decode(&as_bytes(&p)).is_err());
        let short = &as_bytes(&p)[..100];
        assert!(matches!(
            Decoder::new(0).try_decode(short),
            Err(DecodeError::Short { .. })
        ));
    }

    #[test]
    fn normalizes_paths() {
        assert_eq!(osprey_model::path::normalize("/a/./b//c/../d"), "/a/b/d");
        assert_eq!(osprey_model::path::normalize("/.."), "/");
    }
}
