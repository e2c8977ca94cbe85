//! The open filter: opens no loaded rule can match end here, before the record's header, its
//! captures of user memory and the ring buffer (see `agent_common::open_filter`).
//!
//! The verdict for the open's class (syscall, success, access mode, a few flags) comes from one
//! array lookup on its argument registers. A class some rule needs whatever the path passes;
//! one no rule can match is dropped; one whose rules all name paths is judged after the path
//! walk, on the names of three components of the path the kernel resolved (the first, the
//! directory's own, the file's), looked up in `OPEN_KEYS`. That path is the file behind the
//! returned descriptor, the one `fd.name` shows: a symlink, `..`, `/proc/self/root` or a
//! directory descriptor cannot make an open of /etc/shadow look like one of /tmp/x. A walk that
//! did not end at the task's root (cut short, broken, outside the root, an internal mount)
//! passes: userspace then names the file from the path string, which the keys do not judge.

use agent_common::{
    DATA_MAX, SyscallEvent, SyscallSpec, counter, kpath,
    open_filter::{
        ATOM_BITS, ATOM_LEAF, ATOM_PARENT, ATOM_TOP, CLASSES, CREAT_FLAGS, Key, MAX_SETS, NAME_LEN,
        PASS, SET, SetSig, class, sig,
    },
};
use aya_ebpf::{
    helpers::generated::bpf_probe_read_kernel_str,
    macros::map,
    maps::{Array, HashMap, PerCpuArray},
};

use crate::maps::count;

/// Verdict per (slot, class): `slot * CLASSES + class`. Zero (never written) passes.
#[map]
static OPEN_FILTER: Array<u32> = Array::with_max_entries(3 * CLASSES, 0);

/// The names the keyed verdicts admit.
#[map]
static OPEN_KEYS: HashMap<Key, u8> = HashMap::with_max_entries(8192, 0);

/// The signatures of each key set's names (`SetSig`), by set.
#[map]
static OPEN_SETS: Array<SetSig> = Array::with_max_entries(MAX_SETS, 0);

/// Where the last path walk's names are (path.rs writes it), and the key being looked up.
#[repr(C)]
pub struct Marks {
    /// Names written.
    pub names: u32,
    /// Offset of the last name written (the path's first component).
    pub top_at: u32,
    /// Offset of the second name written (the directory's own name).
    pub parent_at: u32,
    /// Offset of the third name written.
    pub third_at: u32,
    pub key: Key,
}

/// Slot 0: a task's syscalls (and the exec record's walk); slot 1: io_uring records, whose
/// programs can run while a syscall's is between its walk and its judgement.
#[map]
pub static MARKS: PerCpuArray<Marks> = PerCpuArray::with_max_entries(2, 0);

/// The verdict for an open with `spec` that returned `ret`, from its argument registers.
#[inline(always)]
pub fn verdict(spec: &SyscallSpec, ret: i64, args: &[u64; 6]) -> u32 {
    if spec.filter_slot == 0 {
        return PASS;
    }
    let flags = if spec.flags_arg == 0 {
        CREAT_FLAGS
    } else {
        match (spec.flags_arg.wrapping_sub(1) & 7) as usize {
            i @ 0..6 => args[i],
            _ => 0,
        }
    };
    let slot = (spec.filter_slot as u32 - 1) & 3;
    let index = slot * CLASSES + class(ret >= 0, flags);
    match OPEN_FILTER.get(index) {
        Some(v) => *v,
        None => PASS,
    }
}

/// Whether a keyed verdict (`KEYS` set) admits the open whose path `ev` holds at `start`.
#[inline(always)]
pub fn admits(verdict: u32, ev: &SyscallEvent, start: usize) -> bool {
    let unclean = kpath::TRUNCATED | kpath::BROKEN | kpath::OUTSIDE_ROOT | kpath::PSEUDO;
    // No file found (an fd closed under us): userspace names it from the path string.
    let walked = ev.cap_len[3] != 0 || ev.kpath_magic != 0 || ev.kpath_ino != 0;
    if ev.kpath_flags & unclean != 0 || ev.kpath_flags & kpath::OF_RET == 0 || !walked {
        return true;
    }
    let (Some(m), Some(sigs)) = (MARKS.get_ptr_mut(0), OPEN_SETS.get(verdict & SET)) else {
        return true;
    };
    // SAFETY: this CPU's slot, owned by this invocation.
    let m = unsafe { &mut *m };
    let len = ev.cap_len[3] as u32;
    // Names are written leaf first, each with its NUL: the leaf at 0, the directory's own
    // name second, the first component last. No names: the root itself, all three "" (an
    // offset of NONE).
    let names = m.names;
    let (leaf_at, leaf_end) = match names {
        0 => (NONE, 0),
        1 => (0, len),
        _ => (0, m.parent_at),
    };
    let (parent_at, parent_end) = match names {
        0 | 1 => (NONE, 0),
        2 => (m.parent_at, len),
        _ => (m.parent_at, m.third_at),
    };
    let (top_at, top_end) = if names == 0 {
        (NONE, 0)
    } else {
        (m.top_at, len)
    };
    let set = verdict & SET;
    found(m, ev, start, set, verdict, sigs, ATOM_TOP, top_at, top_end)
        || found(
            m,
            ev,
            start,
            set,
            verdict,
            sigs,
            ATOM_PARENT,
            parent_at,
            parent_end,
        )
        || found(
            m, ev, start, set, verdict, sigs, ATOM_LEAF, leaf_at, leaf_end,
        )
}

/// The offset of a name that is not there ("").
const NONE: u32 = u32::MAX;

/// Whether the name at `at` (NUL at `end - 1`; `NONE`: "") is a key of `set` for `atom`, if
/// the set has any: its signature first, then the name itself.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn found(
    m: &mut Marks,
    ev: &SyscallEvent,
    start: usize,
    set: u32,
    verdict: u32,
    sigs: &SetSig,
    atom: u8,
    at: u32,
    end: u32,
) -> bool {
    if verdict & (1 << (ATOM_BITS + atom as u32)) == 0 {
        return false;
    }
    const MASK: usize = 2 * DATA_MAX - 1;
    let base = start & (DATA_MAX - 1);
    let n = end.wrapping_sub(at).wrapping_sub(1);
    let bit = if at == NONE || n == 0 {
        sig(0, 0, 0)
    } else {
        let first_at = base + (at as usize & (DATA_MAX - 1));
        let cut = if n as usize > NAME_LEN - 1 {
            NAME_LEN - 1
        } else {
            n as usize
        };
        let first = ev.data[first_at & MASK];
        let last = ev.data[(first_at + cut - 1) & MASK];
        sig(n as usize, first, last)
    };
    if sigs.atoms[atom as usize % 3] & (1 << bit) == 0 {
        return false;
    }
    m.key.set = set as u16;
    m.key.atom = atom;
    m.key._pad = 0;
    m.key._pad2 = 0;
    // Four word stores (a plain `= [0; 32]` becomes a byte-by-byte memset on this target).
    let words = m.key.name.as_mut_ptr().cast::<u64>();
    for i in 0..NAME_LEN / 8 {
        // SAFETY: inside the 8-aligned name.
        unsafe { core::ptr::write_volatile(words.add(i), 0) };
    }
    if at != NONE {
        let off = base + (at as usize & (DATA_MAX - 1));
        // SAFETY: `off` < 2 * DATA_MAX, inside `data`; the helper reads at most NAME_LEN - 1
        // bytes and a NUL, stopping at the name's own NUL.
        unsafe {
            bpf_probe_read_kernel_str(
                m.key.name.as_mut_ptr().cast(),
                NAME_LEN as u32,
                ev.data.as_ptr().add(off).cast(),
            )
        };
    }
    // SAFETY: a lookup; the value is not read.
    unsafe { OPEN_KEYS.get(&m.key) }.is_some()
}

/// Counts an open the filter passed over.
#[inline(always)]
pub fn filtered() {
    count(counter::OPEN_FILTERED);
}
