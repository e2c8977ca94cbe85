//! Paths the kernel resolved: the dentry and mount chain of a `struct file` or `struct path`,
//! walked up to the task's root.
//!
//! A path string a process passes is what it asked for; a symlink, `/proc/self/root/...`, a
//! `..`, a directory descriptor or a bind mount lead the kernel elsewhere. The object the kernel
//! actually used is the file behind the returned descriptor (or a descriptor argument), and its
//! location is its dentry chain: `d_parent` up to the root of its mount, then the mount's
//! mountpoint in the parent mount, and so on, as `d_path()` does (fs/d_path.c), stopping at the
//! task's root (`task->fs->root`), so a container's file reads as the container sees it.
//!
//! The walk is bounded ([`MAX_DEPTH`] steps, [`MAX_BYTES`] bytes); names are written leaf first,
//! each followed by a NUL (agent_common::kpath), which is an appending loop the verifier can
//! follow; userspace reverses the components. Every read is `bpf_probe_read_kernel`, one per level
//! (a name shorter than `INLINE_NAME` bytes is stored in the dentry and comes with it): a dentry
//! renamed or freed under us yields a wrong or partial name, never a fault. No locks are taken
//! (a tracing program cannot take `rename_lock`), so a path renamed during the walk can mix its
//! old and new names, as an unlocked `d_path` would.

use agent_common::{DATA_MAX, INLINE_NAME, KernelConfig, kpath};
use aya_ebpf::{helpers::generated::bpf_probe_read_kernel_str, macros::map, maps::PerCpuArray};

use crate::task::{Access, Obj};

/// Directory levels walked, mount crossings included. Deeper paths are reported leaf side
/// first with `kpath::TRUNCATED`.
pub const MAX_DEPTH: u32 = 48;
/// Bytes of names per path; a component is read with room for `NAME_MAX` + NUL.
const MAX_BYTES: usize = 2048;
const NAME_READ: u32 = 256;
const _: () = assert!(MAX_BYTES + NAME_READ as usize <= DATA_MAX && MAX_BYTES.is_power_of_two());
const _: () = assert!(INLINE_NAME <= NAME_READ as usize);

/// What a walk wrote.
pub struct Walked {
    pub len: usize,
    pub flags: u32,
    pub magic: u32,
    pub ino: u64,
}

/// The `struct file` behind descriptor `fd` in the table `files` (`files->fdt->fd[fd]`), or 0.
#[inline(always)]
pub fn file_of_fd<A: Access>(files: u64, fd: u64, cfg: &KernelConfig) -> u64 {
    let (max, array) = A::fd_table(files, cfg);
    if fd >= max as u32 as u64 {
        return 0;
    }
    A::fd_file(array, fd, cfg)
}

/// Whether `name`, the `d_name.name` of `dentry`, points at the short name stored inside the
/// dentry itself (`d_shortname`, `d_iname` before 6.14), whose first `INLINE_NAME` bytes come
/// with the dentry's read; 0 for `dentry_iname` means it is never read there.
#[inline(always)]
pub fn stored_in_dentry(dentry: u64, name: u64, cfg: &KernelConfig) -> bool {
    cfg.dentry_iname != 0 && name == dentry.wrapping_add(cfg.dentry_iname as u64)
}

/// A mount's parent (the `struct mount`), mountpoint, and the root of the mount itself (`mnt`
/// is the `vfsmount` inside a `struct mount`).
#[inline(always)]
pub fn mount_of<A: Access>(mnt: u64, cfg: &KernelConfig) -> (u64, u64, u64) {
    let [parent, mountpoint, root] = A::mount(mnt, cfg);
    (parent, mountpoint, root)
}

/// `mount_of(mnt)`, but nothing for the task's root mount (the most common): a walk in it ends
/// at the root, or, for a file outside the root (a chroot below the mount's root), at the top
/// of its file system or past `MAX_DEPTH`. The open filter passes such a file either way, as
/// it would at the mount's root; the path walk flags it `kpath::OUTSIDE_ROOT` at the top.
#[inline(always)]
pub fn mount_in<A: Access>(mnt: u64, root_mnt: u64, cfg: &KernelConfig) -> (u64, u64, u64) {
    if mnt == root_mnt {
        (0, 0, 0)
    } else {
        mount_of::<A>(mnt, cfg)
    }
}

/// What [`walk`] keeps in memory rather than on the stack: the walked file's own dentry,
/// read before the loop and used in it and after it (on the stack it took the io_uring
/// program past the 512 bytes 6.1 allows a program and its calls), and the first mount's
/// fields, which read back are numbers the verifier knows nothing of whichever way they were
/// made, so that the loop is entered in one state rather than one for a mount read and one
/// for a mount not read.
#[repr(C)]
struct WalkScratch {
    mount: [u64; 3],
    /// d_parent, d_name.name, d_name.len and the short name's four words.
    leaf: [u64; 7],
    inode: u64,
    pprev: u64,
}

#[map]
static WALK: PerCpuArray<WalkScratch> = PerCpuArray::with_max_entries(1, 0);

/// Stores `v` at `p` and returns what memory holds there.
#[inline(always)]
fn through(p: *mut u64, v: u64) -> u64 {
    // SAFETY: `p` points into this CPU's `WALK` slot, owned by this invocation; volatile so
    // that the compiler hands on what memory returns.
    unsafe {
        core::ptr::write_volatile(p, v);
        core::ptr::read_volatile(p)
    }
}

/// Walks `obj` up to `root` (the task's root directory, `task->fs->root`), writing names at
/// `data[start..]`. `start` must be below `DATA_MAX`; writes stay below
/// `start + MAX_BYTES + NAME_READ`, inside `2 * DATA_MAX`.
///
/// `cursor` (a field of the caller's event, so map memory) holds the bytes written so far.
/// Not a local: the verifier tracks a register's or stack slot's range exactly, so each
/// iteration's length range would be a state of its own and the loop's states would multiply
/// past the verifier's budget (it did: a million instructions on 6.1). A load from map memory
/// is just "some u32" to the verifier, masked to its bound where it is used.
#[inline(always)]
pub fn walk<A: Access>(
    data: &mut [u8; 2 * DATA_MAX],
    start: usize,
    cursor: &mut u32,
    obj: Obj,
    root: Obj,
) -> Walked {
    // Masked after a volatile read: the caller's own bound checks let LLVM drop a plain mask,
    // and the verifier needs it here.
    // SAFETY: reads a parameter.
    let start = unsafe { core::ptr::read_volatile(&start) } & (DATA_MAX - 1);
    let cfg = crate::maps::config();
    let mut out = Walked {
        len: 0,
        flags: 0,
        magic: 0,
        ino: 0,
    };
    // SAFETY: `cursor` is a field of the caller's per-CPU event; volatile so that the compiler
    // neither keeps it in a register nor drops the masks below as redundant.
    unsafe { core::ptr::write_volatile(cursor, 0) };
    if obj.dentry == 0 || obj.mnt == 0 {
        out.flags |= kpath::BROKEN;
        return out;
    }

    let Some(w) = WALK.get_ptr_mut(0) else {
        out.flags |= kpath::BROKEN;
        return out;
    };
    // The file's own dentry in one read: its parent and name for the walk's first level, its
    // inode and hash link for what follows the walk. Kept in `w` (see `WalkScratch`).
    let [parent, name, inode, pprev, len, s0, s1, s2, s3] = A::dentry_leaf(obj.dentry, cfg);
    // SAFETY: fields of this CPU's slot, owned by this invocation.
    unsafe {
        for (i, v) in [parent, name, len, s0, s1, s2, s3].into_iter().enumerate() {
            core::ptr::write_volatile(&raw mut (*w).leaf[i], v);
        }
        core::ptr::write_volatile(&raw mut (*w).inode, inode);
        core::ptr::write_volatile(&raw mut (*w).pprev, pprev);
    }
    let mut dentry = obj.dentry;
    let mut mnt = obj.mnt;
    let mut done = false;
    // Past the root of a mount attached nowhere (a detached bind mount such as runc's clone of
    // itself, or the top of another mount namespace's tree): the rest of the path is the
    // dentry chain within that file system.
    let mut detached = false;
    // The mount being walked: its root, and where it is attached, read again when the walk
    // crosses a mount. Not read for the task's root mount (most files are in it): the walk
    // ends at the root, or at the top of the file system for a file outside it (below).
    let (mut mnt_parent, mut mountpoint, mut mnt_root) = {
        let (p, m, r) = mount_in::<A>(mnt, root.mnt, cfg);
        // SAFETY: fields of this CPU's slot.
        unsafe {
            (
                through(&raw mut (*w).mount[0], p),
                through(&raw mut (*w).mount[1], m),
                through(&raw mut (*w).mount[2], r),
            )
        }
    };
    for _ in 0..MAX_DEPTH {
        if dentry == root.dentry && mnt == root.mnt {
            done = true;
            break;
        }
        if !detached && dentry == mnt_root {
            // The top of this mount: continue from its mountpoint in the parent mount.
            let m = mnt.wrapping_sub(cfg.mount_mnt as u64);
            if mnt_parent == m || mnt_parent == 0 {
                out.flags |= kpath::OUTSIDE_ROOT;
                detached = true;
            } else {
                dentry = mountpoint;
                mnt = mnt_parent.wrapping_add(cfg.mount_mnt as u64);
                (mnt_parent, mountpoint, mnt_root) = mount_of::<A>(mnt, cfg);
                continue;
            }
        }
        // Read once for the file's own dentry (above); for each level above it, `d_parent`,
        // the name's length and address, and the short name stored in the dentry, in one read.
        let (parent, name, len, short) = if dentry == obj.dentry
            && let Some(w) = WALK.get_ptr(0)
        {
            // SAFETY: fields of this CPU's slot, written above. (The slot is looked up again
            // rather than kept: a map pointer live across the loop doubled the instructions
            // the verifier explored.)
            let l: [u64; 7] = core::array::from_fn(|i| unsafe {
                core::ptr::read_volatile(&raw const (*w).leaf[i])
            });
            (l[0], l[1], l[2], [l[3], l[4], l[5], l[6]])
        } else {
            let [p, len, n, w0, w1, w2, w3] = A::dentry_named(dentry, cfg);
            (p, n, len, [w0, w1, w2, w3])
        };
        let top = parent == dentry || parent == 0;
        if top && detached {
            // The root of the file system: its name is "/", not a component.
            done = true;
            break;
        }
        // SAFETY: as above.
        let off = unsafe { core::ptr::read_volatile(cursor) } as usize;
        if off >= MAX_BYTES {
            break;
        }
        // Both terms masked where they are added: below DATA_MAX + MAX_BYTES.
        let at = (start & (DATA_MAX - 1)) + (off & (MAX_BYTES - 1));
        let len = len as u32;
        // The short name stored in the dentry, read with it: four word stores, its NUL the
        // kernel's (`d_alloc` and a rename store one after the name; a rename racing the read
        // can garble the name, as it can a helper's copy). Made whether or not the name is
        // stored there (a longer name is copied over them below), so that the verifier
        // explores one path per level of the loop rather than two; a store of our own NUL,
        // at an offset that depends on the length, made it explore the exec program's walk
        // past its million instructions. What follows the NUL (an earlier, longer name's
        // bytes) is overwritten by the next name or lies past the record's end.
        let dst = data.as_mut_ptr();
        // SAFETY: at < DATA_MAX + MAX_BYTES and INLINE_NAME <= NAME_READ: inside the
        // 2 * DATA_MAX bytes of `data`, as the helper's copy below is.
        unsafe {
            for (i, w) in short.into_iter().enumerate() {
                core::ptr::write_unaligned(dst.add(at + 8 * i).cast::<u64>(), w);
            }
        }
        let next = (off & (MAX_BYTES - 1)) + (len as usize & (INLINE_NAME - 1)) + 1;
        // SAFETY: as above.
        unsafe { core::ptr::write_volatile(cursor, next as u32) };
        if !stored_in_dentry(dentry, name, cfg) || len >= INLINE_NAME as u32 {
            // SAFETY: at < DATA_MAX + MAX_BYTES, and MAX_BYTES + NAME_READ <= DATA_MAX: the
            // copy stays inside the 2 * DATA_MAX bytes of `data`; the helper bounds it by
            // NAME_READ.
            let n = unsafe {
                bpf_probe_read_kernel_str(dst.add(at).cast(), NAME_READ, name as *const _)
            };
            if n <= 0 {
                out.flags |= kpath::BROKEN;
                // SAFETY: as above.
                unsafe { core::ptr::write_volatile(cursor, off as u32) };
                done = true;
                break;
            }
            let next = (off & (MAX_BYTES - 1)) + (n as usize & (2 * NAME_READ as usize - 1));
            // SAFETY: as above.
            unsafe { core::ptr::write_volatile(cursor, next as u32) };
        }
        if top {
            // The root of a file system that is not the root of its mount: an internal
            // mount's lone dentry (pipe, socket, memfd, anon inode), named by that name.
            out.flags |= kpath::PSEUDO;
            done = true;
            break;
        }
        dentry = parent;
    }
    if !done {
        out.flags |= kpath::TRUNCATED;
    }
    if out.flags & kpath::PSEUDO != 0 && obj.mnt == root.mnt {
        // The top of the task's root mount, whose root was not read, and not the task's root:
        // the root is below it (a chroot) and the file outside. Its last name is the file
        // system root's ("/", as `d_make_root` names it), not a component. (Checked here
        // rather than in the loop, which the verifier explores once per branch in it.)
        out.flags = out.flags & !kpath::PSEUDO | kpath::OUTSIDE_ROOT;
        // SAFETY: as above.
        unsafe {
            let off = core::ptr::read_volatile(cursor);
            core::ptr::write_volatile(cursor, off.saturating_sub(2));
        }
    }
    // SAFETY: as above.
    out.len = unsafe { core::ptr::read_volatile(cursor) } as usize & (2 * MAX_BYTES - 1);
    let Some(w) = WALK.get_ptr(0) else {
        return out;
    };
    // SAFETY: fields of this CPU's slot, written before the loop.
    let (inode, pprev, leaf_parent) = unsafe {
        (
            core::ptr::read_volatile(&raw const (*w).inode),
            core::ptr::read_volatile(&raw const (*w).pprev),
            core::ptr::read_volatile(&raw const (*w).leaf[0]),
        )
    };
    // After the walk, so that the verifier enters the loop in one state.
    let [ino, sb, mode] = A::inode(inode, cfg);
    out.ino = ino;
    out.flags |= ((mode as u32 >> 12) & 0xf) << kpath::TYPE_SHIFT;
    out.magic = A::sb_magic(sb, cfg);
    // d_unlinked(): unhashed and not a root.
    if pprev == 0 && leaf_parent != obj.dentry {
        out.flags |= kpath::DELETED;
    }
    out
}
