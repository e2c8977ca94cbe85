//! Records laid out as the kernel programs write them into the ring buffer, built in user space,
//! and events as the decoder makes them: what the decoder's and the pipeline's tests, the
//! hot-path benchmark and the allocation test feed them.

use std::mem::offset_of;

use agent_common::{EventHeader, EventKind as RawKind, SYSCALL_DATA_OFFSET, SyscallEvent, kpath};
use osprey_model::event::{Event, EventKind, Exec};

/// A header of `kind` for a record of `size` bytes: process 42 (thread 43) named `test`, uid
/// 1000, at 5 µs after boot.
pub fn header(kind: RawKind, size: usize) -> EventHeader {
    let mut comm = [0u8; 16];
    comm[..4].copy_from_slice(b"test");
    EventHeader {
        kind: kind as u32,
        size: size as u32,
        ktime_ns: 5_000,
        tgid: 42,
        tid: 43,
        uid: 1000,
        comm,
        ..Default::default()
    }
}

/// The bytes of a record struct.
pub fn as_bytes<T: Copy>(v: &T) -> Vec<u8> {
    // SAFETY: the ring's record structs are plain old data (`#[repr(C)]`, no pointers); every
    // byte of `v` is initialised because they are built from zeroed or default values.
    unsafe { std::slice::from_raw_parts((v as *const T).cast::<u8>(), size_of::<T>()) }.to_vec()
}

/// A syscall record: its number, return value, six raw arguments and up to four captures (the
/// strings or buffers the arguments point to, in capture-slot order).
pub fn syscall(nr: u32, ret: i64, args: [u64; 6], caps: &[&[u8]]) -> Vec<u8> {
    // SAFETY: SyscallEvent is plain old data; all zeroes is a valid value.
    let mut ev: SyscallEvent = unsafe { std::mem::zeroed() };
    ev.nr = nr;
    ev.ret = ret;
    ev.args = args;
    let mut off = 0;
    for (i, c) in caps.iter().enumerate() {
        ev.data[off..off + c.len()].copy_from_slice(c);
        ev.cap_len[i] = c.len() as u16;
        off += c.len();
    }
    ev.header = header(RawKind::Syscall, SYSCALL_DATA_OFFSET + off);
    let mut b = as_bytes(&ev);
    b.truncate(SYSCALL_DATA_OFFSET + off);
    b
}

/// Path names leaf first with a NUL after each, as the kernel's dentry walk writes them.
pub fn kpath_bytes(names: &[&str]) -> Vec<u8> {
    names
        .iter()
        .flat_map(|n| [n.as_bytes(), b"\0"].concat())
        .collect()
}

/// `rec` (from [`syscall`], with at most three captures) with the file the kernel resolved
/// appended as its fourth capture: `names` leaf first, `agent_common::kpath` flags, the
/// filesystem's magic and the inode.
pub fn with_kpath(mut rec: Vec<u8>, names: &[&str], flags: u32, magic: u32, ino: u64) -> Vec<u8> {
    let k = kpath_bytes(names);
    let set32 = |rec: &mut Vec<u8>, off: usize, v: u32| {
        rec[off..off + 4].copy_from_slice(&v.to_ne_bytes());
    };
    set32(&mut rec, offset_of!(SyscallEvent, kpath_flags), flags);
    set32(&mut rec, offset_of!(SyscallEvent, kpath_magic), magic);
    let ino_off = offset_of!(SyscallEvent, kpath_ino);
    rec[ino_off..ino_off + 8].copy_from_slice(&ino.to_ne_bytes());
    let len_off = offset_of!(SyscallEvent, cap_len) + 6;
    rec[len_off..len_off + 2].copy_from_slice(&(k.len() as u16).to_ne_bytes());
    rec.extend(&k);
    let size = rec.len() as u32;
    set32(&mut rec, offset_of!(EventHeader, size), size); // the header leads every record
    rec
}

/// Sets the record's process: `tgid` and thread `tid`.
pub fn with_process(mut rec: Vec<u8>, tgid: u32, tid: u32) -> Vec<u8> {
    let put = |rec: &mut Vec<u8>, off: usize, v: u32| {
        rec[off..off + 4].copy_from_slice(&v.to_ne_bytes());
    };
    put(&mut rec, offset_of!(EventHeader, tgid), tgid);
    put(&mut rec, offset_of!(EventHeader, tid), tid);
    rec
}

/// `open(path)` returning fd 3, the kernel's walk of it `names` (leaf first) on a file system
/// of `magic`, then `close(3)`.
pub fn open_and_close(path: &str, names: &[&str], magic: u32) -> [Vec<u8>; 2] {
    let open = syscall(
        257,
        3,
        [(-100i64) as u64, 0x7000, 0, 0, 0, 0],
        &[path.as_bytes()],
    );
    let open = with_kpath(open, names, kpath::OF_RET, magic, 5);
    [open, syscall(3, 0, [3, 0, 0, 0, 0, 0], &[])]
}

/// An event of process `tgid` (its main thread) named `comm`, `ts` ns after boot: uid and
/// gid 1000, no capabilities, on the host.
pub fn event(tgid: u32, comm: &str, ts: u64, kind: EventKind) -> Event {
    Event {
        ts,
        time: 1_700_000_000_000_000_000 + ts,
        tgid,
        tid: tgid,
        uid: 1000,
        gid: 1000,
        euid: 1000,
        egid: 1000,
        cgroup_id: 0,
        pid_ns: 0,
        mnt_ns: 0,
        vpid: tgid,
        comm: comm.into(),
        cap_effective: 0,
        cap_permitted: 0,
        kind,
    }
}

/// The exec of `/usr/bin/loop` by host process `tgid`, which makes it known to the process
/// table: the kernel named its cgroup at exec, so its later events are placed without a look
/// at /proc.
pub fn host_exec(tgid: u32) -> Event {
    event(
        tgid,
        "loop",
        1_000,
        EventKind::Exec(Exec {
            filename: "/usr/bin/loop".into(),
            args: vec!["loop".into()],
            exe_name: "loop".into(),
            cgroup: "user.slice/session-1.scope".into(),
            ..Default::default()
        }),
    )
}
