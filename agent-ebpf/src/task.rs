//! The identity of the current task, for every event's header, and how kernel memory is read.
//!
//! What helpers give directly (pid/tgid, real uid/gid, comm, cgroup id) comes from helpers,
//! but in a BTF tracepoint, where plain loads give the last three for less. Effective ids and
//! namespace inode numbers need a walk of `task_struct`; its member offsets
//! come from the running kernel's BTF through `CONFIG` (Rust eBPF has no CO-RE). A wrong offset
//! yields a wrong value, never a fault, whichever of the two ways a read takes ([`Access`]):
//! `bpf_probe_read_kernel` into the program's memory ([`Probed`]), or, in a BTF tracepoint
//! whose pointers the verifier knows the types of, a plain load that the verifier checks
//! against the member at that offset and the kernel makes fault-safe ([`Typed`]).

use agent_common::{EventHeader, KernelConfig, PID_LEVELS_SPANNED, SPAN_MAX, Span, cast, span};
use aya_ebpf::{
    helpers::{
        bpf_get_current_cgroup_id, bpf_get_current_pid_tgid, bpf_get_current_task,
        bpf_get_current_uid_gid, bpf_ktime_get_boot_ns,
        generated::{
            bpf_get_current_comm, bpf_get_current_task_btf, bpf_probe_read_kernel,
            bpf_probe_read_user,
        },
    },
    macros::map,
    maps::PerCpuArray,
};

/// Where `read_words` copies a span to, per CPU: the BPF stack (512 bytes) is mostly taken.
#[map]
static BLOCK: PerCpuArray<[u64; SPAN_MAX as usize / 8]> = PerCpuArray::with_max_entries(1, 0);

/// Where [`Typed::fs_path`] stores the task's root or working directory, loaded as typed
/// pointers, and reads them back as plain numbers.
#[map]
static LAUNDER: PerCpuArray<[u64; 2]> = PerCpuArray::with_max_entries(1, 0);

/// The 64-bit words at offsets `offs` of the kernel object at `base`, each shifted down by
/// its offset's misalignment (so a 32-bit field at offset 4 is the low half): one probe read
/// of `span`, the bytes that hold them all (`KernelConfig::spans`, computed by userspace from
/// the same offsets), or one read each where the kernel has them further apart. A captured
/// `openat` made 39 probe reads before they were grouped, each paying a fault-safe copy's
/// set-up. Every field is zero when its read fails.
#[inline(always)]
pub fn read_words<const N: usize>(base: u64, span: Span, offs: [u32; N]) -> [u64; N] {
    const WORDS: usize = SPAN_MAX as usize / 8;
    match BLOCK.get_ptr_mut(0) {
        Some(block) if span.len != 0 && span.len <= SPAN_MAX => {
            // SAFETY: at most `SPAN_MAX` bytes into the per-CPU block; the helper validates
            // the source and zeroes the block on a fault.
            unsafe {
                bpf_probe_read_kernel(
                    block.cast(),
                    span.len,
                    base.wrapping_add(span.lo as u64) as *const _,
                )
            };
            core::array::from_fn(|i| {
                let o = offs[i];
                let at = (o.wrapping_sub(span.lo) / 8) as usize & (WORDS - 1);
                // SAFETY: a per-CPU value we own; the index is masked into it.
                unsafe { (*block)[at] >> ((o & 7) * 8) }
            })
        }
        _ => core::array::from_fn(|i| read_kernel(base, offs[i])),
    }
}

/// The six syscall arguments saved in `regs` (a `struct pt_regs`): on x86_64 one read of the
/// 64 bytes from r10 to di.
#[inline(always)]
pub fn read_args(regs: u64, cfg: &KernelConfig) -> [u64; 6] {
    read_words(regs, cfg.spans[span::REGS], cfg.regs_args)
}

/// Reads a `T` at `base + off` in kernel memory; zero when the read fails (the helper zeroes
/// the destination on a fault, a NULL `base` included). No branch on `base`: one verifier
/// state whatever the pointer, which keeps the path walk's loop cheap to verify.
#[inline(always)]
pub fn read_kernel<T: Copy>(base: u64, off: u32) -> T {
    // Not zeroed first: the helper writes every byte, the value or zeros (a zeroed array was a
    // call to a byte-by-byte `memset`).
    let mut v = core::mem::MaybeUninit::<T>::uninit();
    // SAFETY: bpf_probe_read_kernel validates the source address and fills all
    // `size_of::<T>()` bytes of `v` either way; `T` is plain data (integers and arrays of them).
    unsafe {
        bpf_probe_read_kernel(
            v.as_mut_ptr().cast(),
            size_of::<T>() as u32,
            base.wrapping_add(off as u64) as *const _,
        );
        v.assume_init()
    }
}

/// The argument words (`words` of them, at most six) of a 32-bit `socketcall`, which its
/// second argument points at in user memory, zero-extended; `None` when they cannot be read.
/// Exactly as many as the kernel copies for the operation: a longer read could fault where the
/// kernel's did not, and lose the call.
#[inline(always)]
pub fn socketcall_args(at: u64, words: u32) -> Option<[u64; 6]> {
    let mut w = [0u32; 6];
    let size = words * 4;
    let size = if size > 24 { 24 } else { size };
    // SAFETY: at most 24 bytes into `w`; the helper checks the user address.
    if unsafe { bpf_probe_read_user(w.as_mut_ptr().cast(), size, at as *const _) } < 0 {
        return None;
    }
    Some(w.map(|v| v as u64))
}

/// A file system object the kernel holds: the (vfsmount, dentry) pair of a `struct path`.
#[derive(Clone, Copy)]
pub struct Obj {
    pub mnt: u64,
    pub dentry: u64,
}

/// The `struct path` at `base + off`.
#[inline(always)]
pub fn path_at(base: u64, off: u32, cfg: &KernelConfig) -> Obj {
    let [mnt, dentry] = read_words(
        base.wrapping_add(off as u64),
        cfg.spans[span::PATH],
        cfg.path_words(),
    );
    Obj { mnt, dentry }
}

/// How a program reads the saved registers and the current task's own structures (its
/// credentials, namespaces, root and descriptor table), and the objects reached from
/// elsewhere (a descriptor's file, a dentry's parent, a mount). The latter are read with the
/// helper (the provided methods) but in [`Cast`]: the verifier does not follow
/// `files->fdt->fd[i]` (a `struct file **`) nor `container_of`, so only a cast gives their
/// pointers a type.
pub trait Access: Copy {
    /// Whether the current syscall came through the 32-bit entry (`in_ia32_syscall()`:
    /// `int $0x80` from any process, or a 32-bit program's call), where its number and
    /// registers mean another call than the 64-bit entry's.
    fn compat(cfg: &KernelConfig) -> bool;
    /// [`Access::compat`] of the task `cur` already holds: one read, no helper call.
    fn compat_of(cur: &Current, cfg: &KernelConfig) -> bool;
    /// The 32-bit entry's six arguments in `regs`, each its low 32 bits: what the kernel's
    /// ia32 wrappers pass on, whatever a 64-bit process left in the upper halves.
    fn compat_args(regs: u64, cfg: &KernelConfig) -> [u64; 6];
    /// The syscall number in `regs`: the low 32 bits of `orig_ax` on x86_64, which is what the
    /// kernel runs (since Linux 5.13 it takes the number as an `int`, so `rax = 1 << 32 | 2`
    /// opens a file); read whole, that number was past every table and the open went unseen.
    /// (Before 5.13 such a number fails with ENOSYS, and the record says so.)
    fn nr(regs: u64, cfg: &KernelConfig) -> u64;
    /// The six argument registers in `regs`.
    fn args(regs: u64, cfg: &KernelConfig) -> [u64; 6];
    /// The current task and the pointers a record reads through.
    fn current(cfg: &KernelConfig) -> Current;
    /// `euid`, `egid`, and the permitted and effective capability sets of `cred`.
    fn creds(cred: u64, cfg: &KernelConfig) -> [u64; 4];
    /// The header's real uid and gid, cgroup id and comm, of the current task `cur`.
    fn identity(h: &mut EventHeader, cur: &Current, cfg: &KernelConfig);
    /// The inode number of the mount namespace of `nsproxy`.
    fn mnt_ns(nsproxy: u64, cfg: &KernelConfig) -> u32;
    /// The `struct path` at `fs + off` (`task->fs`: `root` or `pwd`).
    fn fs_path(fs: u64, off: u32, cfg: &KernelConfig) -> Obj;
    /// The descriptor table in use by `files`: its size and its array.
    fn fd_table(files: u64, cfg: &KernelConfig) -> (u64, u64);

    /// The `struct file` in slot `fd` of the descriptor array `array`, or 0.
    #[inline(always)]
    fn fd_file(array: u64, fd: u64, _cfg: &KernelConfig) -> u64 {
        read_kernel(array.wrapping_add(8 * fd), 0)
    }
    /// The (vfsmount, dentry) of `file`.
    #[inline(always)]
    fn file_path(file: u64, cfg: &KernelConfig) -> Obj {
        path_at(file, cfg.file_path, cfg)
    }
    /// The parent mount, mountpoint and root of the `struct mount` whose vfsmount is `mnt`
    /// (`KernelConfig::mount_words`).
    #[inline(always)]
    fn mount(mnt: u64, cfg: &KernelConfig) -> [u64; 3] {
        let m = mnt.wrapping_sub(cfg.mount_mnt as u64);
        read_words(m, cfg.spans[span::MOUNT], cfg.mount_words())
    }
    /// A walk's first dentry: `KernelConfig::dentry_words` (the length in the low half of its
    /// word).
    #[inline(always)]
    fn dentry_leaf(dentry: u64, cfg: &KernelConfig) -> [u64; 9] {
        read_words(dentry, cfg.spans[span::DENTRY], cfg.dentry_words())
    }
    /// A dentry above it: `KernelConfig::dentry_named_words` (the length as above).
    #[inline(always)]
    fn dentry_named(dentry: u64, cfg: &KernelConfig) -> [u64; 7] {
        read_words(dentry, cfg.spans[span::NAMED], cfg.dentry_named_words())
    }
    /// `dentry->d_parent`.
    #[inline(always)]
    fn dentry_parent(dentry: u64, cfg: &KernelConfig) -> u64 {
        read_kernel(dentry, cfg.dentry_parent)
    }
    /// An inode's number, super block and mode (the word at `i_mode`: the mode in its low
    /// 16 bits).
    #[inline(always)]
    fn inode(inode: u64, cfg: &KernelConfig) -> [u64; 3] {
        read_words(inode, cfg.spans[span::INODE], cfg.inode_words())
    }
    /// A super block's magic number.
    #[inline(always)]
    fn sb_magic(sb: u64, cfg: &KernelConfig) -> u32 {
        read_kernel::<u64>(sb, cfg.sb_magic) as u32
    }
}

/// Every read through `bpf_probe_read_kernel`; fields read together are one read of the span
/// that holds them ([`read_words`]). For raw tracepoints, whose arguments are plain numbers.
#[derive(Clone, Copy)]
pub struct Probed;

impl Access for Probed {
    #[inline(always)]
    fn compat(cfg: &KernelConfig) -> bool {
        if cfg.task_compat == 0 {
            return false;
        }
        // SAFETY: helper without arguments.
        let task = unsafe { bpf_get_current_task() };
        read_kernel::<u32>(task, cfg.task_compat) & cfg.compat_status != 0
    }
    #[inline(always)]
    fn compat_of(cur: &Current, cfg: &KernelConfig) -> bool {
        cfg.task_compat != 0
            && read_kernel::<u32>(cur.task, cfg.task_compat) & cfg.compat_status != 0
    }
    #[inline(always)]
    fn compat_args(regs: u64, cfg: &KernelConfig) -> [u64; 6] {
        core::array::from_fn(|i| read_kernel::<u32>(regs, cfg.regs_compat_args[i]) as u64)
    }
    #[inline(always)]
    fn nr(regs: u64, cfg: &KernelConfig) -> u64 {
        read_kernel::<u32>(regs, cfg.regs_nr) as u64
    }
    #[inline(always)]
    fn args(regs: u64, cfg: &KernelConfig) -> [u64; 6] {
        read_args(regs, cfg)
    }
    #[inline(always)]
    fn current(cfg: &KernelConfig) -> Current {
        current(cfg, bpf_get_current_pid_tgid())
    }
    #[inline(always)]
    fn creds(cred: u64, cfg: &KernelConfig) -> [u64; 4] {
        read_words(cred, cfg.spans[span::CRED], cfg.cred_words())
    }
    #[inline(always)]
    fn identity(h: &mut EventHeader, _cur: &Current, _cfg: &KernelConfig) {
        let uid_gid = bpf_get_current_uid_gid();
        h.uid = uid_gid as u32;
        h.gid = (uid_gid >> 32) as u32;
        // SAFETY: helper without arguments.
        h.cgroup_id = unsafe { bpf_get_current_cgroup_id() };
        // Straight into the header: the helper pads with NULs (and zeroes the buffer on a
        // failure); a zeroed local first was a byte-by-byte memset, as the BPF target cannot
        // store wider than a `[u8; 16]`'s alignment.
        // SAFETY: 16 writable bytes.
        unsafe { bpf_get_current_comm(h.comm.as_mut_ptr().cast(), 16) };
    }
    #[inline(always)]
    fn mnt_ns(nsproxy: u64, cfg: &KernelConfig) -> u32 {
        let mnt_ns: u64 = read_kernel(nsproxy, cfg.nsproxy_mnt_ns);
        read_kernel(mnt_ns, cfg.mnt_ns_inum)
    }
    #[inline(always)]
    fn fs_path(fs: u64, off: u32, cfg: &KernelConfig) -> Obj {
        path_at(fs, off, cfg)
    }
    #[inline(always)]
    fn fd_table(files: u64, cfg: &KernelConfig) -> (u64, u64) {
        // `files->fdt` and the table embedded in `files` in one read: a process with at most
        // 64 descriptors (most of them) uses the embedded one; the others' table is read on
        // its own.
        let [fdt, max, array] = read_words(files, cfg.spans[span::FILES], cfg.files_words());
        if fdt == files.wrapping_add(cfg.files_fdtab as u64) {
            (max, array)
        } else {
            let [max, array] = read_words(fdt, cfg.spans[span::FDT], cfg.fdt_words());
            (max, array)
        }
    }
}

/// Plain loads, for a BTF tracepoint on a kernel with `bpf_get_current_task_btf` (5.11+):
/// the registers and the task are typed pointers, and so is every pointer loaded from them,
/// so the verifier checks each load against the member of the struct at that offset (the
/// offsets are `CONFIG` constants, a frozen read-only map it sees the values of) and the
/// kernel's exception table turns a fault into a zero, without the helper's call, checks and
/// copy. A kernel whose structures do not fit (a member of another size) fails the program's
/// verification, and the agent loads the raw tracepoint instead.
#[derive(Clone, Copy)]
pub struct Typed;

/// A load of a `T` at `base + off`, `base` a pointer the verifier knows the type of.
#[inline(always)]
fn load<T: Copy>(base: u64, off: u32) -> T {
    // SAFETY: the verifier admits this only as a load of a member of `base`'s type, which
    // the kernel makes fault-safe (`BPF_PROBE_MEM`): a NULL or stale pointer reads zero.
    unsafe { core::ptr::read_volatile(base.wrapping_add(off as u64) as *const T) }
}

impl Access for Typed {
    #[inline(always)]
    fn compat(cfg: &KernelConfig) -> bool {
        if cfg.task_compat == 0 {
            return false;
        }
        // SAFETY: helper without arguments.
        let task = unsafe { bpf_get_current_task_btf() } as u64;
        load::<u32>(task, cfg.task_compat) & cfg.compat_status != 0
    }
    #[inline(always)]
    fn compat_of(cur: &Current, cfg: &KernelConfig) -> bool {
        cfg.task_compat != 0 && load::<u32>(cur.task, cfg.task_compat) & cfg.compat_status != 0
    }
    #[inline(always)]
    fn compat_args(regs: u64, cfg: &KernelConfig) -> [u64; 6] {
        // The low half of each register (little-endian): a 32-bit load inside the member.
        core::array::from_fn(|i| load::<u32>(regs, cfg.regs_compat_args[i]) as u64)
    }
    #[inline(always)]
    fn nr(regs: u64, cfg: &KernelConfig) -> u64 {
        // The low half of the member (little-endian): a 32-bit load inside it.
        load::<u32>(regs, cfg.regs_nr) as u64
    }
    #[inline(always)]
    fn args(regs: u64, cfg: &KernelConfig) -> [u64; 6] {
        core::array::from_fn(|i| load(regs, cfg.regs_args[i]))
    }
    #[inline(always)]
    fn current(cfg: &KernelConfig) -> Current {
        // SAFETY: helper without arguments.
        let task = unsafe { bpf_get_current_task_btf() } as u64;
        Current {
            task,
            fs: load(task, cfg.task_fs),
            files: load(task, cfg.task_files),
            cred: load(task, cfg.task_cred),
            nsproxy: load(task, cfg.task_nsproxy),
            // The helper's value by two loads: a helper call is a call and a return, each
            // with the host's return-stack mitigation (`spec_rstack_overflow`'s safe RET on
            // AMD hosts), about as dear as the loads of the whole header.
            pid_tgid: (load::<u32>(task, cfg.task_tgid) as u64) << 32
                | load::<u32>(task, cfg.task_pid) as u64,
        }
    }
    #[inline(always)]
    fn creds(cred: u64, cfg: &KernelConfig) -> [u64; 4] {
        // A capability set in two 32-bit halves: `kernel_cap_t` is one u64 since 6.3 and two
        // u32 before, and a load must fall inside one member.
        let caps =
            |off: u32| load::<u32>(cred, off) as u64 | (load::<u32>(cred, off + 4) as u64) << 32;
        [
            load::<u32>(cred, cfg.cred_euid) as u64,
            load::<u32>(cred, cfg.cred_egid) as u64,
            caps(cfg.cred_cap_permitted),
            caps(cfg.cred_cap_effective),
        ]
    }
    /// The helpers' values by loads: `bpf_get_current_uid_gid` maps the ids through the
    /// initial user namespace (the identity) at a call's and a lookup's price,
    /// `bpf_get_current_cgroup_id` is the same four loads behind a call, and
    /// `bpf_get_current_comm` a checked string copy (`perf`: the three were about a tenth of a
    /// captured `openat`'s time in the program).
    #[inline(always)]
    fn identity(h: &mut EventHeader, cur: &Current, cfg: &KernelConfig) {
        h.uid = load(cur.cred, cfg.cred_uid);
        h.gid = load(cur.cred, cfg.cred_gid);
        let css_set: u64 = load(cur.task, cfg.task_cgroups);
        let cgroup: u64 = load(css_set, cfg.css_set_dfl_cgrp);
        let kn: u64 = load(cgroup, cfg.cgroup_kn);
        h.cgroup_id = load(kn, cfg.kernfs_id);
        // Two words inside the `char[16]`, which the verifier allows (an access within an
        // array member of scalars); the header's comm is 8-aligned.
        const _: () = assert!(core::mem::offset_of!(EventHeader, comm) % 8 == 0);
        let comm = h.comm.as_mut_ptr().cast::<u64>();
        // SAFETY: 16 bytes of the header at an 8-aligned offset of an 8-aligned struct.
        unsafe {
            core::ptr::write_volatile(comm, load(cur.task, cfg.task_comm));
            core::ptr::write_volatile(comm.add(1), load(cur.task, cfg.task_comm + 8));
        }
    }
    #[inline(always)]
    fn mnt_ns(nsproxy: u64, cfg: &KernelConfig) -> u32 {
        let mnt_ns: u64 = load(nsproxy, cfg.nsproxy_mnt_ns);
        load(mnt_ns, cfg.mnt_ns_inum)
    }
    /// Two loads, laundered: the walk compares these with the dentries and mounts it reads
    /// with the helper, and as typed pointers there they multiplied the loop's verifier
    /// states past its budget. Stored in map memory and read back they are plain numbers (a
    /// pointer may be stored in a map by a program loaded with `CAP_PERFMON`, as the agent's
    /// are), one probe read fewer per judged or captured open.
    #[inline(always)]
    fn fs_path(fs: u64, off: u32, cfg: &KernelConfig) -> Obj {
        let Some(slot) = LAUNDER.get_ptr_mut(0) else {
            return path_at(fs, off, cfg);
        };
        let mnt: u64 = load(fs, off + cfg.path_mnt);
        let dentry: u64 = load(fs, off + cfg.path_dentry);
        // SAFETY: this CPU's slot, owned by this invocation; volatile so that the compiler
        // hands on what memory returns, not the registers it stored.
        unsafe {
            core::ptr::write_volatile(&raw mut (*slot)[0], mnt);
            core::ptr::write_volatile(&raw mut (*slot)[1], dentry);
            Obj {
                mnt: core::ptr::read_volatile(&raw const (*slot)[0]),
                dentry: core::ptr::read_volatile(&raw const (*slot)[1]),
            }
        }
    }
    #[inline(always)]
    fn fd_table(files: u64, cfg: &KernelConfig) -> (u64, u64) {
        // `files->fdt` points at the table embedded in `files` or at one of its own: either
        // way a typed pointer.
        let fdt: u64 = load(files, cfg.files_fdt);
        (
            load::<u32>(fdt, cfg.fdt_max_fds) as u64,
            load(fdt, cfg.fdt_fd),
        )
    }
}

/// The u64 at `addr` in kernel memory, by a plain load through a cast (`agent_common::cast`):
/// zero when the address is bad, as with the helper. The placeholder cast, its rewrite into a
/// move, and the load are one piece of assembly, which the compiler cannot merge with a load
/// from elsewhere (where the walk takes a level's words from its per-CPU slot on one path and
/// from a dentry on another, LLVM made the two one load of a chosen address, and the verifier
/// refuses an instruction that reads through pointers of two kinds).
#[inline(always)]
fn word(addr: u64) -> u64 {
    let r: u64;
    // SAFETY: reads kernel memory the kernel makes fault-safe (`BPF_PROBE_MEM`: a bad address
    // reads zero); writes no memory. The call clobbers r1-r5 as any call does.
    unsafe {
        core::arch::asm!(
            ".8byte {mov}",
            ".8byte {call}",
            "r0 = *(u64 *)(r0 + 0)",
            mov = const cast::mov_r2(cast::TYPE_MAGIC),
            call = const cast::kfunc_call(cast::CALL_MAGIC),
            inlateout("r1") addr => _,
            lateout("r0") r,
            out("r2") _,
            out("r3") _,
            out("r4") _,
            out("r5") _,
            options(pure, readonly, nostack),
        )
    };
    r
}

/// [`word`] at `base + off`.
#[inline(always)]
fn at(base: u64, off: u32) -> u64 {
    word(base.wrapping_add(off as u64))
}

/// [`Typed`], and every object a walk reaches read with plain loads through casts
/// (`bpf_rdonly_cast`, Linux 6.2; [`word`]): a captured or judged open's descriptor, file,
/// dentries, mounts, inode and super block, which otherwise take a helper call each. On the
/// AMD host of the benchmarks a helper call pays a mitigated call and return
/// (`spec_rstack_overflow`'s safe RET) inside and out.
#[derive(Clone, Copy)]
pub struct Cast;

impl Access for Cast {
    #[inline(always)]
    fn compat(cfg: &KernelConfig) -> bool {
        Typed::compat(cfg)
    }
    #[inline(always)]
    fn compat_of(cur: &Current, cfg: &KernelConfig) -> bool {
        Typed::compat_of(cur, cfg)
    }
    #[inline(always)]
    fn compat_args(regs: u64, cfg: &KernelConfig) -> [u64; 6] {
        Typed::compat_args(regs, cfg)
    }
    #[inline(always)]
    fn nr(regs: u64, cfg: &KernelConfig) -> u64 {
        Typed::nr(regs, cfg)
    }
    #[inline(always)]
    fn args(regs: u64, cfg: &KernelConfig) -> [u64; 6] {
        Typed::args(regs, cfg)
    }
    #[inline(always)]
    fn current(cfg: &KernelConfig) -> Current {
        Typed::current(cfg)
    }
    #[inline(always)]
    fn creds(cred: u64, cfg: &KernelConfig) -> [u64; 4] {
        Typed::creds(cred, cfg)
    }
    #[inline(always)]
    fn identity(h: &mut EventHeader, cur: &Current, cfg: &KernelConfig) {
        Typed::identity(h, cur, cfg)
    }
    #[inline(always)]
    fn mnt_ns(nsproxy: u64, cfg: &KernelConfig) -> u32 {
        Typed::mnt_ns(nsproxy, cfg)
    }
    #[inline(always)]
    fn fs_path(fs: u64, off: u32, cfg: &KernelConfig) -> Obj {
        Typed::fs_path(fs, off, cfg)
    }
    #[inline(always)]
    fn fd_table(files: u64, cfg: &KernelConfig) -> (u64, u64) {
        Typed::fd_table(files, cfg)
    }
    #[inline(always)]
    fn fd_file(array: u64, fd: u64, _cfg: &KernelConfig) -> u64 {
        word(array.wrapping_add(8 * fd))
    }
    #[inline(always)]
    fn file_path(file: u64, cfg: &KernelConfig) -> Obj {
        let p = file.wrapping_add(cfg.file_path as u64);
        Obj {
            mnt: at(p, cfg.path_mnt),
            dentry: at(p, cfg.path_dentry),
        }
    }
    #[inline(always)]
    fn mount(mnt: u64, cfg: &KernelConfig) -> [u64; 3] {
        let m = mnt.wrapping_sub(cfg.mount_mnt as u64);
        cfg.mount_words().map(|off| at(m, off))
    }
    #[inline(always)]
    fn dentry_leaf(dentry: u64, cfg: &KernelConfig) -> [u64; 9] {
        // The length's word as it is at its offset: the length in its low half, as the
        // provided method gives it, the rest dropped where it is used.
        cfg.dentry_words().map(|off| at(dentry, off))
    }
    #[inline(always)]
    fn dentry_named(dentry: u64, cfg: &KernelConfig) -> [u64; 7] {
        cfg.dentry_named_words().map(|off| at(dentry, off))
    }
    #[inline(always)]
    fn dentry_parent(dentry: u64, cfg: &KernelConfig) -> u64 {
        at(dentry, cfg.dentry_parent)
    }
    #[inline(always)]
    fn inode(inode: u64, cfg: &KernelConfig) -> [u64; 3] {
        cfg.inode_words().map(|off| at(inode, off))
    }
    #[inline(always)]
    fn sb_magic(sb: u64, cfg: &KernelConfig) -> u32 {
        at(sb, cfg.sb_magic) as u32
    }
}

/// What the header read of the current task that a record's other parts need too.
#[derive(Clone, Copy)]
pub struct Current {
    pub task: u64,
    /// `task->fs`: root and working directory.
    pub fs: u64,
    /// `task->files`: the descriptor table.
    pub files: u64,
    pub cred: u64,
    pub nsproxy: u64,
    /// The thread group id in the high half, the thread id in the low one, as
    /// `bpf_get_current_pid_tgid` returns them.
    pub pid_tgid: u64,
}

impl Current {
    /// The process id (the thread group's).
    #[inline(always)]
    pub fn tgid(&self) -> u32 {
        (self.pid_tgid >> 32) as u32
    }
}

/// The current task and the pointers a record reads through, in one read.
#[inline(always)]
pub fn current(cfg: &KernelConfig, pid_tgid: u64) -> Current {
    // SAFETY: helper without arguments.
    let task = unsafe { bpf_get_current_task() };
    // 112 bytes apart on 6.x: one read.
    let [cred, fs, files, nsproxy] = read_words(task, cfg.spans[span::TASK], cfg.task_words());
    Current {
        task,
        fs,
        files,
        cred,
        nsproxy,
        pid_tgid,
    }
}

/// Fills `h` for the current task, whose `bpf_get_current_pid_tgid` the caller read, but for
/// its pid-namespace view (zero: see [`with_pid_view`]); `size` is left for the emitter.
#[inline(always)]
pub fn fill_header(h: &mut EventHeader, kind: u32, cfg: &KernelConfig, pid_tgid: u64) -> Current {
    let cur = current(cfg, pid_tgid);
    fill_header_of::<Probed>(h, kind, cfg, &cur);
    cur
}

/// [`fill_header`] for a task already read with `A::current`.
#[inline(always)]
pub fn fill_header_of<A: Access>(
    h: &mut EventHeader,
    kind: u32,
    cfg: &KernelConfig,
    cur: &Current,
) {
    let pid_tgid = cur.pid_tgid;
    h.kind = kind;
    h._pad = 0;
    // SAFETY: helper without arguments.
    h.ktime_ns = unsafe { bpf_ktime_get_boot_ns() };
    h.tgid = (pid_tgid >> 32) as u32;
    h.tid = pid_tgid as u32;
    A::identity(h, cur, cfg);

    let [euid, egid, permitted, effective] = A::creds(cur.cred, cfg);
    h.euid = euid as u32;
    h.egid = egid as u32;
    h.cap_permitted = permitted;
    h.cap_effective = effective;
    h.mnt_ns = A::mnt_ns(cur.nsproxy, cfg);
    // Fixed for a process's life, so learned by userspace from its exec and fork records
    // (`with_pid_view`) rather than read for every syscall: four probe reads fewer per
    // captured syscall.
    h.vpid = 0;
    h.pid_ns = 0;
}

/// Fills the header's pid-namespace view (`vpid`, `pid_ns`) for records that create or end a
/// process's identity (exec, exit, a profile verdict): see [`pid_view`].
#[inline(always)]
pub fn with_pid_view(h: &mut EventHeader, cur: &Current, cfg: &KernelConfig) {
    // A thread whose id is its process's is the group leader itself (an exec from another
    // thread makes it so): one read fewer for every single-threaded process.
    let leader: u64 = if h.tid == h.tgid {
        cur.task
    } else {
        read_kernel(cur.task, cfg.task_group_leader)
    };
    let (vpid, pid_ns) = pid_view(leader, cfg);
    h.vpid = vpid;
    h.pid_ns = pid_ns;
}

/// The process id of the group leader `leader` as its own pid namespace sees it, and that
/// namespace's inode number: the leader's `struct pid`, entry `numbers[level]` (see
/// task_active_pid_ns() and pid_vnr() in kernel/pid.c). The level and the entries of levels
/// 0 to 2 (the host, a container, a container in a container) in one read; deeper, the entry
/// is read on its own. Neither changes in a process's life (`unshare(CLONE_NEWPID)` moves the
/// children only), which is why syscall records leave them to userspace.
#[inline(always)]
pub fn pid_view(leader: u64, cfg: &KernelConfig) -> (u32, u32) {
    let pid: u64 = read_kernel(leader, cfg.task_thread_pid);
    let w = read_words(pid, cfg.spans[span::PID], cfg.pid_words());
    let level = w[0] as u32;
    const _: () = assert!(PID_LEVELS_SPANNED == 3);
    let (vpid, pid_ns) = match level {
        0 => (w[1], w[2]),
        1 => (w[3], w[4]),
        2 => (w[5], w[6]),
        _ => {
            let upid = pid + cfg.upid_at(level & 0x3f, 0) as u64;
            (
                read_kernel::<u32>(upid, cfg.upid_nr) as u64,
                read_kernel(upid, cfg.upid_ns),
            )
        }
    };
    (vpid as u32, read_kernel(pid_ns, cfg.pid_ns_inum))
}
