//! Process lifecycle: exec, fork, exit.

use agent_common::{
    DATA_MAX, ENV_READS, EXEC_DATA_OFFSET, EventKind, ExecEvent, ExitEvent, ForkEvent, PRELOAD_LEN,
    counter, exe_flags, exec_env, fork_flags, stdio, trunc,
};
use aya_ebpf::{
    EbpfContext,
    helpers::{
        bpf_get_current_pid_tgid,
        generated::{
            bpf_probe_read_kernel, bpf_probe_read_kernel_str, bpf_probe_read_user,
            bpf_probe_read_user_str,
        },
    },
    macros::{map, raw_tracepoint, tracepoint},
    maps::PerCpuArray,
    programs::{RawTracePointContext, TracePointContext},
};

use crate::{
    maps::config,
    output::{Lane, emit_in},
    path::{file_of_fd, walk},
    task::{Obj, Probed, fill_header, path_at, pid_view, read_kernel, read_words, with_pid_view},
};

#[map]
static EXEC_SCRATCH: PerCpuArray<ExecEvent> = PerCpuArray::with_max_entries(1, 0);

/// The entry the dynamic loader reads libraries to preload from.
const PRELOAD_KEY: &[u8; 11] = b"LD_PRELOAD=";

/// Bytes of an environment entry read at once; a longer entry takes a read per this many.
const ENV_READ: usize = 4096;

/// Where `scan_env` reads each entry to, per CPU; and the scan's cursor, in map memory so
/// that the verifier sees one state per iteration (a register would be tracked exactly).
#[repr(C)]
struct EnvScan {
    at: u64,
    /// The entry being read continues one that filled the last read.
    more: u32,
    _pad: u32,
    buf: [u8; ENV_READ],
}

#[map]
static ENV_SCAN: PerCpuArray<EnvScan> = PerCpuArray::with_max_entries(1, 0);

/// Reads the environment exec gave the program (`mm->env_start..env_end`, written by exec and
/// not yet seen by the program, which has not run) for its last `LD_PRELOAD=` entry, the one
/// the dynamic loader uses. Userspace read it from /proc/PID/environ before: after the
/// program ran, so a library preloaded as root could overwrite its own entry first, a
/// short-lived process was gone, and an empty first entry hid a second (the loader takes the
/// last, a lookup the first); and the read took the new process's mmap lock while it started.
#[inline(always)]
fn scan_env(ev: &mut ExecEvent, start: u64, end: u64) {
    ev.env_flags = 0;
    ev.preload_len = 0;
    let Some(s) = ENV_SCAN.get_ptr_mut(0) else {
        return;
    };
    // SAFETY: this CPU's slot, owned by this invocation; volatile keeps the cursor in memory.
    let s = unsafe { &mut *s };
    unsafe {
        core::ptr::write_volatile(&mut s.at, start);
        core::ptr::write_volatile(&mut s.more, 0);
    }
    const KEY: &[u8; 11] = PRELOAD_KEY;
    let head = u64::from_le_bytes([
        KEY[0], KEY[1], KEY[2], KEY[3], KEY[4], KEY[5], KEY[6], KEY[7],
    ]);
    for _ in 0..ENV_READS {
        // SAFETY: as above.
        let at = unsafe { core::ptr::read_volatile(&s.at) };
        if at >= end {
            ev.env_flags |= exec_env::COMPLETE;
            return;
        }
        // SAFETY: at most ENV_READ bytes into the buffer; the helper stops at the NUL.
        let n = unsafe {
            bpf_probe_read_user_str(s.buf.as_mut_ptr().cast(), ENV_READ as u32, at as *const _)
        };
        if n <= 0 {
            return;
        }
        let n = n as u64 & (ENV_READ as u64 * 2 - 1);
        // SAFETY: as above.
        let more = unsafe { core::ptr::read_volatile(&s.more) };
        // An entry's start (not the rest of a long one) that begins with the key.
        if more == 0
            && n > KEY.len() as u64
            && u64::from_le_bytes([
                s.buf[0], s.buf[1], s.buf[2], s.buf[3], s.buf[4], s.buf[5], s.buf[6], s.buf[7],
            ]) == head
            && s.buf[8] == KEY[8]
            && s.buf[9] == KEY[9]
            && s.buf[10] == KEY[10]
        {
            // The value: what follows the key, without the NUL (or the read's last byte). Its
            // PRELOAD_LEN bytes are inside the ENV_READ-byte buffer (11 + 256 < 4096).
            // SAFETY: as above.
            let value = unsafe { s.buf.as_ptr().add(KEY.len()) };
            keep_preload(ev, value, n - 1 - KEY.len() as u64);
        }
        // A read that filled the buffer ended inside the entry: the next one continues it
        // from the buffer's last byte (the helper's NUL stands there).
        let (next, more) = if n == ENV_READ as u64 {
            (at + n - 1, 1)
        } else {
            (at + n, 0)
        };
        // SAFETY: as above.
        unsafe {
            core::ptr::write_volatile(&mut s.at, next);
            core::ptr::write_volatile(&mut s.more, more);
        }
    }
}

/// The environment's bytes read at once by `scan_env_loop`, and how many more are read past
/// them so that a key starting in a chunk's last bytes is whole in its buffer.
const CHUNK: usize = 4096;
const CHUNK_TAIL: usize = 16;
/// Bytes judged per call of `env_block`: sixteen words. The verifier walks the callback's
/// loop word by word: 64 words a call took it 2.4 s here against 0.3 s for sixteen, for no
/// measurable gain at run time.
const BLOCK: usize = 128;
/// Chunks per exec: 6 MiB, the most exec lets argv and the environment take together (three
/// quarters of the 8 MiB `_STK_LIM`, reached with an unlimited stack), so that the scan is
/// complete for every environment the kernel accepts.
const CHUNKS: u32 = 1536;

/// `scan_env_loop`'s state and chunk of the environment, per CPU. In map memory, not on the
/// stack: the verifier then sees the same state at every call of the callback and after the
/// loop, where values on the stack would be tracked apart and the rest of the program walked
/// again for each.
#[repr(C)]
struct LoopScan {
    /// The user address of the chunk in `buf`.
    at: u64,
    end: u64,
    /// Bytes of the chunk read (the chunk and its tail, less at the environment's end).
    len: u64,
    /// 1 when the byte before the chunk is a NUL (or the chunk is the environment's first):
    /// the chunk's first byte starts an entry.
    before: u64,
    /// The address of the last entry that starts with `LD_PRELOAD=`, 0 for none yet.
    found: u64,
    /// The scan reached the environment's end.
    complete: u64,
    /// The chunk and its tail, and room for the 16 NULs written after a short last chunk,
    /// so that nothing an earlier exec left in the buffer is taken for this one's.
    /// In words, so that a word is one load (a `u8` array's are byte loads put together).
    buf: [u64; (CHUNK + CHUNK_TAIL + 16) / 8],
}

impl LoopScan {
    fn bytes(&self) -> *const u8 {
        self.buf.as_ptr().cast()
    }
}

#[map]
static ENV_LOOP: PerCpuArray<LoopScan> = PerCpuArray::with_max_entries(1, 0);

const ONES: u64 = 0x0101_0101_0101_0101;
const LOW7: u64 = 0x7f7f_7f7f_7f7f_7f7f;

/// The top bit of each byte of `w` that is 0, and no other bit (no carries between bytes).
#[inline(always)]
fn zero_bytes(w: u64) -> u64 {
    !(((w & LOW7) + LOW7) | w | LOW7)
}

/// Reads the environment as `scan_env` does, in 4 KiB chunks instead of a read per entry,
/// finding entries by their first byte: an `L` right after a NUL (or at the start) is looked
/// at, eight bytes at a time, and compared with the key. `bpf_loop` (Linux 5.17) calls
/// `env_block` once per 128 bytes; the verifier checks that callback once, where a bounded
/// loop of the same work is walked step by step and fails its complexity limits. On the AMD
/// host about 20 ns per entry of a pod's environment against 130 with a read each
/// (docs/benchmarks.md); a pod has about seven entries per service in its namespace.
#[inline(always)]
fn scan_env_loop(ev: &mut ExecEvent, start: u64, end: u64) {
    ev.env_flags = 0;
    ev.preload_len = 0;
    let Some(st) = ENV_LOOP.get_ptr_mut(0) else {
        return;
    };
    // SAFETY: this CPU's slot, owned by this program invocation.
    let st = unsafe { &mut *st };
    st.at = start;
    st.end = end;
    st.len = 0;
    st.before = 1;
    st.found = 0;
    st.complete = 0;
    if start < end {
        // SAFETY: `env_block` has the signature bpf_loop calls; it finds its state itself.
        unsafe {
            aya_ebpf::helpers::generated::bpf_loop(
                CHUNKS * (CHUNK / BLOCK) as u32,
                env_block as *const () as *mut _,
                core::ptr::null_mut(),
                0,
            )
        };
    } else {
        st.complete = 1;
    }
    if st.complete != 0 {
        ev.env_flags |= exec_env::COMPLETE;
    }
    let found = st.found;
    if found == 0 {
        return;
    }
    // The value, read again from the entry: up to twice what the event keeps, so that a
    // longer one is known to be cut.
    const READ: usize = PRELOAD_LEN * 2;
    // SAFETY: READ bytes into this CPU's buffer of CHUNK bytes and more.
    let n = unsafe {
        bpf_probe_read_user_str(
            st.buf.as_mut_ptr().cast(),
            READ as u32,
            (found + PRELOAD_KEY.len() as u64) as *const _,
        )
    };
    if n <= 0 {
        return;
    }
    keep_preload(ev, st.bytes(), (n - 1) as u64);
}

/// Keeps an `LD_PRELOAD` value of `len` bytes (without its NUL) read to `value`, a buffer of at
/// least PRELOAD_LEN bytes in map memory: cut to PRELOAD_LEN - 1 bytes, and said so.
#[inline(always)]
fn keep_preload(ev: &mut ExecEvent, value: *const u8, len: u64) {
    let keep = if len > (PRELOAD_LEN - 1) as u64 {
        ev.env_flags |= exec_env::PRELOAD_CUT;
        (PRELOAD_LEN - 1) as u64
    } else {
        ev.env_flags &= !exec_env::PRELOAD_CUT;
        len
    };
    // SAFETY: PRELOAD_LEN bytes from the caller's buffer into the PRELOAD_LEN-byte field.
    unsafe {
        bpf_probe_read_kernel(
            ev.preload.as_mut_ptr().cast(),
            PRELOAD_LEN as u32,
            value.cast(),
        )
    };
    ev.preload_len = keep as u32;
    ev.env_flags |= exec_env::PRELOAD;
}

/// `bpf_loop`'s callback for `scan_env_loop`: block `i` of 128 bytes, the first of each chunk
/// reading the chunk. Returns 1 to stop (the end, or a fault), 0 to go on. Most words hold no
/// `L`; they cost a test each, and the others are looked at by `env_word`.
#[inline(never)]
extern "C" fn env_block(i: u64, _ctx: *mut core::ffi::c_void) -> i64 {
    let Some(st) = ENV_LOOP.get_ptr_mut(0) else {
        return 1;
    };
    // SAFETY: this CPU's slot, owned by the program invocation that called bpf_loop.
    let st = unsafe { &mut *st };
    let j = (i as usize) % (CHUNK / BLOCK);
    if j == 0 {
        if i != 0 {
            // SAFETY: inside the buffer.
            st.before = u64::from(unsafe { *st.bytes().add(CHUNK - 1) } == 0);
            st.at += CHUNK as u64;
        }
        if st.at >= st.end {
            st.complete = 1;
            return 1;
        }
        let want = core::cmp::min(st.end - st.at, (CHUNK + CHUNK_TAIL) as u64);
        // SAFETY: at most CHUNK + CHUNK_TAIL bytes into a buffer of that size.
        let r = unsafe {
            bpf_probe_read_user(st.buf.as_mut_ptr().cast(), want as u32, st.at as *const _)
        };
        if r < 0 {
            return 1;
        }
        st.len = want;
        let end = want as usize;
        if end < CHUNK + CHUNK_TAIL {
            // SAFETY: end + 16 <= the buffer's size.
            unsafe {
                core::ptr::write_unaligned(
                    st.buf.as_mut_ptr().cast::<u8>().add(end).cast::<[u64; 2]>(),
                    [0; 2],
                )
            };
        }
    }
    let off = j * BLOCK;
    let len = st.len;
    if off as u64 >= len {
        st.complete = 1;
        return 1;
    }
    for k in 0..BLOCK / 8 {
        let at = off + k * 8;
        // Words from the chunk's end on hold what an earlier chunk left. The one the end falls
        // in, and the NULs written after it, are judged: no entry starts at a NUL, and a key
        // read at an entry before the end stops at them.
        if at as u64 >= len {
            break;
        }
        // SAFETY: at + 8 <= CHUNK, inside the buffer.
        let w = unsafe { *st.buf.as_ptr().add(at / 8) };
        // A byte of `w ^ LS` is 0 where `w` has an `L`; the test has no false negative, and
        // no false positive in a word without one.
        let x = w ^ LS;
        if x.wrapping_sub(ONES) & !x & HIGH != 0 {
            env_word(st, at);
        }
    }
    0
}

const LS: u64 = ONES * b'L' as u64;
const HIGH: u64 = ONES << 7;

/// Compares each entry that starts in the word at `at` of the chunk with `LD_PRELOAD=`,
/// keeping the address of the last that matches: an `L` whose byte before is a NUL.
#[inline(never)]
fn env_word(st: &mut LoopScan, at: usize) {
    let at = at & (CHUNK - 8);
    // SAFETY: at + 8 <= CHUNK, inside the buffer.
    let w = unsafe { *st.buf.as_ptr().add(at / 8) };
    let before = if at == 0 {
        st.before
    } else {
        // SAFETY: inside the buffer.
        u64::from(unsafe { *st.bytes().add(at - 1) } == 0)
    };
    let starts = ((zero_bytes(w) << 8) | (before << 7)) & zero_bytes(w ^ LS);
    let k = PRELOAD_KEY;
    let head = u64::from_le_bytes([k[0], k[1], k[2], k[3], k[4], k[5], k[6], k[7]]);
    let tail = u32::from_le_bytes([k[7], k[8], k[9], k[10]]);
    for b in 0..8 {
        if starts & (0x80 << (8 * b)) == 0 {
            continue;
        }
        let p = at + b;
        // SAFETY: p < CHUNK and 11 bytes past it are inside the CHUNK_TAIL.
        let (h, t) = unsafe {
            (
                core::ptr::read_unaligned(st.bytes().add(p).cast::<u64>()),
                core::ptr::read_unaligned(st.bytes().add(p + 7).cast::<u32>()),
            )
        };
        if h == head && t == tail {
            st.found = st.at + p as u64;
        }
    }
}

/// `sched:sched_process_exec` as a raw tracepoint, `TP_PROTO(struct task_struct *p, pid_t
/// old_pid, struct linux_binprm *bprm)`: runs in the new image after a successful exec. Reads
/// the path given to exec and whether an interpreter was loaded for it from `bprm` (the
/// tracepoint's record has the path only), and the new argv from `mm->arg_start..arg_end` in
/// user memory, which exec has just written, so it is resident. Emitting argv here, in the
/// exec'ing task itself, means a process that exits a microsecond later still has its args on
/// record.
#[raw_tracepoint(tracepoint = "sched_process_exec")]
pub fn sched_process_exec(ctx: RawTracePointContext) -> u32 {
    match try_sched_process_exec::<false>(&ctx) {
        Ok(()) => 0,
        Err(()) => 1,
    }
}

/// `sched_process_exec` with the environment read by `scan_env_loop`, for kernels with
/// `bpf_loop` (5.17); userspace loads it where the kernel takes it, and `sched_process_exec`
/// otherwise.
#[raw_tracepoint(tracepoint = "sched_process_exec")]
pub fn sched_process_exec_loop(ctx: RawTracePointContext) -> u32 {
    match try_sched_process_exec::<true>(&ctx) {
        Ok(()) => 0,
        Err(()) => 1,
    }
}

#[inline(always)]
fn try_sched_process_exec<const LOOP: bool>(ctx: &RawTracePointContext) -> Result<(), ()> {
    let cfg = config();
    if cfg.ready == 0 {
        return Err(());
    }
    let ev = EXEC_SCRATCH.get_ptr_mut(0).ok_or(())?;
    // SAFETY: a per-CPU slot owned by this program invocation.
    let ev = unsafe { &mut *ev };
    let cur = fill_header(
        &mut ev.header,
        EventKind::Exec as u32,
        cfg,
        bpf_get_current_pid_tgid(),
    );
    with_pid_view(&mut ev.header, &cur, cfg);
    ev.flags = 0;

    let bprm: u64 = ctx.arg(2);
    let filename: u64 = read_kernel(bprm, cfg.bprm_filename);
    let interp: u64 = read_kernel(bprm, cfg.bprm_interp);
    // binfmt_script and binfmt_misc point `interp` at the interpreter's path; every other
    // exec leaves it at `filename`.
    ev.exe_flags = if interp != filename {
        exe_flags::INTERPRETED
    } else {
        0
    };
    // `buf` holds the header of the file exec loaded last (a script's interpreter, not the
    // script; a dynamic program's own, not its loader's): `EI_CLASS` 1 is a 32-bit ELF.
    if read_kernel::<u32>(bprm, cfg.bprm_buf) == u32::from_le_bytes(*b"\x7fELF")
        && read_kernel::<u8>(bprm, cfg.bprm_buf + 4) == 1
    {
        ev.exe_flags |= exe_flags::ELF32;
    }
    // SAFETY: the destination is inside `data`; the helper bounds the copy by its size.
    let n = unsafe {
        bpf_probe_read_kernel_str(
            ev.data.as_mut_ptr().cast(),
            DATA_MAX as u32,
            filename as *const _,
        )
    };
    let name_len = if n > 0 { (n - 1) as usize } else { 0 };
    if name_len >= DATA_MAX - 1 {
        ev.flags |= trunc::CAPTURE0;
    }
    ev.filename_len = name_len as u32;

    let task = cur.task;
    let mm: u64 = read_kernel(task, cfg.task_mm);
    let [start, end, env_start, env_end] = read_words(
        mm,
        cfg.spans[agent_common::span::MM_ARGS],
        cfg.mm_args_words(),
    );
    if LOOP {
        scan_env_loop(ev, env_start, env_end);
    } else {
        scan_env(ev, env_start, env_end);
    }
    let mut args_len = end.saturating_sub(start) as usize;
    // Room for argv leaves at least one byte of DATA_MAX, so the executable's path starts
    // below it.
    let room = DATA_MAX - 1 - (name_len & (DATA_MAX - 1));
    if args_len > room {
        args_len = room;
        ev.flags |= trunc::ARGS;
    }
    // Through memory and masked after: LLVM, which knows args_len <= room < DATA_MAX, would
    // otherwise drop the mask the verifier needs to bound the copy's size.
    ev.args_len = args_len as u32;
    // SAFETY: a field of the per-CPU event we own.
    let args_len = unsafe { core::ptr::read_volatile(&ev.args_len) } as usize & (DATA_MAX - 1);
    let off = name_len & (DATA_MAX - 1);
    if args_len > 0 {
        // SAFETY: off < DATA_MAX and args_len < DATA_MAX, inside the 2*DATA_MAX buffer.
        let r = unsafe {
            bpf_probe_read_user(
                ev.data.as_mut_ptr().add(off).cast(),
                args_len as u32,
                start as *const _,
            )
        };
        if r < 0 {
            ev.flags |= trunc::FAULT;
            ev.args_len = 0;
        } else {
            ev.args_len = args_len as u32;
        }
    } else {
        ev.args_len = 0;
    }

    exe_and_cgroup(ev, cfg, mm, task);
    ev.stdio = stdio_of(cur.files, cfg);
    ev._stdio_pad = 0;

    // The file the kernel loaded, walked from `mm->exe_file`: never `/proc/self/exe` or
    // `/dev/fd/3`, whatever path the process gave.
    ev.exe_path_len = (off + (ev.args_len as usize & (DATA_MAX - 1))) as u32;
    // Through memory: one unknown offset for the verifier, whatever path led here.
    // SAFETY: a field of the per-CPU event we own.
    let exe_off = unsafe { core::ptr::read_volatile(&ev.exe_path_len) } as usize & (DATA_MAX - 1);
    let file: u64 = read_kernel(mm, cfg.mm_exe_file);
    let exe = path_at(file, cfg.file_path, cfg);
    let root = path_at(cur.fs, cfg.fs_root, cfg);
    ev.exe_flags |= mount_flags(exe.mnt, root, file, cfg);
    let w = walk::<Probed>(&mut ev.data, exe_off, &mut ev.exe_path_len, exe, root);
    ev.exe_path_len = (w.len & (DATA_MAX - 1)) as u32;
    ev.exe_path_flags = w.flags;

    let size = EXEC_DATA_OFFSET + exe_off + (ev.exe_path_len as usize & (DATA_MAX - 1));
    ev.header.size = size as u32;
    emit_in(Lane::Lifecycle, ev, &ev.header, size, counter::DROP_EXEC);
    Ok(())
}

/// Descriptors 0, 1 and 2 of the descriptor table `files` (`agent_common::stdio` encoding):
/// what the program really reads and writes, whichever syscall put it there (a socket received
/// with SCM_RIGHTS, or made on a number close() freed, is seen by no fd table in userspace).
#[inline(always)]
fn stdio_of(files: u64, cfg: &agent_common::KernelConfig) -> [u32; 3] {
    let mut out = [0u32; 3];
    for (fd, o) in out.iter_mut().enumerate() {
        let file = file_of_fd::<Probed>(files, fd as u64, cfg);
        if file == 0 {
            continue;
        }
        let inode: u64 = read_kernel(file, cfg.file_inode);
        let mode: u16 = read_kernel(inode, cfg.inode_mode);
        let ty = (mode as u32 >> 12) & stdio::TYPE_MASK;
        let family = if ty == stdio::S_IFSOCK {
            let socket: u64 = read_kernel(file, cfg.file_private_data);
            let sk: u64 = read_kernel(socket, cfg.socket_sk);
            read_kernel::<u16>(sk, cfg.sock_family) as u32
        } else {
            0
        };
        *o = stdio::OPEN | ty | family << stdio::FAMILY_SHIFT;
    }
    out
}

/// Whether the executable's mount `mnt` is another than the task's root mount (a volume, a
/// tmpfs, a bind mount: in a container, not the image's root file system), and whether it is
/// read-only. A container's image is its root mount, whatever the storage driver (overlayfs,
/// devmapper, a plain directory); a file on any other mount came from outside the image.
#[inline(always)]
fn mount_flags(mnt: u64, root: Obj, file: u64, cfg: &agent_common::KernelConfig) -> u32 {
    /// `MNT_READONLY` (include/linux/mount.h) and `SB_RDONLY` (include/linux/fs.h).
    const MNT_READONLY: u32 = 0x40;
    const SB_RDONLY: u64 = 1;
    if mnt == 0 || root.mnt == 0 || mnt == root.mnt {
        return 0;
    }
    let mut flags = exe_flags::OTHER_MOUNT;
    let inode: u64 = read_kernel(file, cfg.file_inode);
    let sb: u64 = read_kernel(inode, cfg.inode_sb);
    if read_kernel::<u32>(mnt, cfg.vfsmount_flags) & MNT_READONLY != 0
        || read_kernel::<u64>(sb, cfg.sb_flags) & SB_RDONLY != 0
    {
        flags |= exe_flags::READ_ONLY_MOUNT;
    }
    flags
}

/// `statfs` magic of overlayfs (include/uapi/linux/magic.h).
const OVERLAYFS_SUPER_MAGIC: u64 = 0x794c_7630;

/// Reads a kernel C string into `dst`; empty when the pointer is unreadable.
#[inline(always)]
fn read_str(dst: &mut [u8], src: u64) {
    dst[0] = 0;
    if src != 0 {
        // SAFETY: the helper bounds the copy by dst's length and validates the source.
        unsafe {
            bpf_probe_read_kernel_str(dst.as_mut_ptr().cast(), dst.len() as u32, src as *const _)
        };
    }
}

/// The executable's own name and overlay layer, and the task's cgroup directory names.
///
/// Overlay: the exec'd file is an overlay inode embedded in `struct ovl_inode`; it has an
/// upper dentry when it was written (or copied up) in the container, and lower layers when it
/// came with the image (fs/overlayfs/ovl_entry.h).
#[inline(always)]
fn exe_and_cgroup(ev: &mut ExecEvent, cfg: &agent_common::KernelConfig, mm: u64, task: u64) {
    let file: u64 = read_kernel(mm, cfg.mm_exe_file);
    let dentry: u64 = read_kernel(file, cfg.file_dentry);
    read_str(&mut ev.exe_name, read_kernel(dentry, cfg.dentry_name));
    let inode: u64 = read_kernel(file, cfg.file_inode);
    let sb: u64 = read_kernel(inode, cfg.inode_sb);
    let magic: u64 = read_kernel(sb, cfg.sb_magic);
    // `exe_flags` holds INTERPRETED already (set from `bprm`).
    if magic & 0xffff_ffff == OVERLAYFS_SUPER_MAGIC {
        ev.exe_flags |= exe_flags::OVERLAY;
        if cfg.ovl_ok != 0 {
            let ovl = inode.wrapping_sub(cfg.ovl_vfs_inode as u64);
            if read_kernel::<u64>(ovl, cfg.ovl_upperdentry) != 0 {
                ev.exe_flags |= exe_flags::UPPER;
            }
            let oe: u64 = read_kernel(ovl, cfg.ovl_oe);
            if read_kernel::<u32>(oe, cfg.ovl_entry_numlower) != 0 {
                ev.exe_flags |= exe_flags::LOWER;
            }
        }
    }
    let css: u64 = read_kernel(task, cfg.task_cgroups);
    let cgrp: u64 = read_kernel(css, cfg.css_set_dfl_cgrp);
    let kn: u64 = read_kernel(cgrp, cfg.cgroup_kn);
    read_str(&mut ev.cgroup_name, read_kernel(kn, cfg.kernfs_name));
    let parent: u64 = read_kernel(kn, cfg.kernfs_parent);
    read_str(&mut ev.cgroup_parent, read_kernel(parent, cfg.kernfs_name));
}

/// `sched_process_fork` as a raw tracepoint: `TP_PROTO(struct task_struct *parent,
/// struct task_struct *child)` (stable since 2.6.32). The raw form gives the child task, whose
/// tgid tells a new thread from a new process, which the tracefs record does not carry.
#[raw_tracepoint(tracepoint = "sched_process_fork")]
pub fn sched_process_fork(ctx: RawTracePointContext) -> u32 {
    match try_sched_process_fork(&ctx) {
        Ok(()) => 0,
        Err(()) => 1,
    }
}

fn try_sched_process_fork(ctx: &RawTracePointContext) -> Result<(), ()> {
    let cfg = config();
    if cfg.ready == 0 {
        return Err(());
    }
    let child: u64 = ctx.arg(1);
    let mut ev = ForkEvent::default();
    fill_header(
        &mut ev.header,
        EventKind::Fork as u32,
        cfg,
        bpf_get_current_pid_tgid(),
    );
    ev.header.size = size_of::<ForkEvent>() as u32;
    ev.child_tid = read_kernel(child, cfg.task_pid);
    ev.child_tgid = read_kernel(child, cfg.task_tgid);
    ev.flags = if ev.child_tgid == ev.header.tgid {
        fork_flags::THREAD
    } else {
        // A new process leads its thread group: its own pid view, which differs from the
        // parent's when the parent made a new pid namespace for its children.
        (ev.child_vpid, ev.child_pid_ns) = pid_view(child, cfg);
        0
    };
    emit_in(
        Lane::Lifecycle,
        &ev,
        &ev.header,
        size_of::<ForkEvent>(),
        counter::DROP_FORK,
    );
    Ok(())
}

/// `sched:sched_process_exit`: a thread is exiting. Emits only when the whole process is gone
/// (`group_dead`, a record field since Linux 6.13; on older kernels the leader's exit stands
/// for it).
/// `task->exit_code` is set by do_exit() before this tracepoint fires.
#[tracepoint]
pub fn sched_process_exit(ctx: TracePointContext) -> u32 {
    match try_sched_process_exit(&ctx) {
        Ok(()) => 0,
        Err(()) => 1,
    }
}

fn try_sched_process_exit(ctx: &TracePointContext) -> Result<(), ()> {
    let cfg = config();
    if cfg.ready == 0 {
        return Err(());
    }
    let pid_tgid = bpf_get_current_pid_tgid();
    let group_dead = if cfg.exit_group_dead != u32::MAX {
        read_kernel::<u8>(ctx.as_ptr() as u64, cfg.exit_group_dead) != 0
    } else {
        pid_tgid >> 32 == pid_tgid & 0xffff_ffff
    };
    if !group_dead {
        return Ok(());
    }
    let mut ev = ExitEvent::default();
    let cur = fill_header(&mut ev.header, EventKind::Exit as u32, cfg, pid_tgid);
    with_pid_view(&mut ev.header, &cur, cfg);
    ev.header.size = size_of::<ExitEvent>() as u32;
    ev.exit_code = read_kernel(cur.task, cfg.task_exit_code);
    ev.group_dead = 1;
    emit_in(
        Lane::Lifecycle,
        &ev,
        &ev.header,
        size_of::<ExitEvent>(),
        counter::DROP_EXIT,
    );
    Ok(())
}
