//! The open filter: opens no loaded rule can match end here, before the record's header, its
//! captures of user memory and the ring buffer (see `agent_common::open_filter`).
//!
//! The verdict for the open's class (syscall, success, access mode, a few flags) comes from one
//! array lookup on its argument registers. A class some rule needs whatever the path passes;
//! one no rule can match is dropped; one whose rules all name paths is judged on the names of
//! three components of the path the kernel resolved (the first, the directory's own, the
//! file's), looked up in `OPEN_KEYS`. That path is the file behind the returned descriptor, the
//! one `fd.name` shows: a symlink, `..`, `/proc/self/root` or a directory descriptor cannot
//! make an open of /etc/shadow look like one of /tmp/x. A walk that does not end at the task's
//! root (cut short, broken, outside the root, an internal mount) passes: userspace then names
//! the file from the path string, which the keys do not judge.
//!
//! The judgement walks the file's dentries up to the root as path.rs does, but copies no
//! path: it reads the names of the file and its directory with their dentries (a short name is
//! stored inside the dentry, so one read gives the parent link and the name), follows only the
//! parent links above them, and reads one more name, the first component's, at the top. An
//! open that passes is walked again, in full, for its record.
//!
//! The same verdict array holds the calls judged on one argument and their result alone
//! (the protection bits of `mprotect`, `mmap` and `pkey_mprotect`, `fcntl`'s command): pass
//! or drop, never keyed.

use agent_common::{
    SyscallSpec, counter,
    open_filter::{
        ATOM_BITS, ATOM_LEAF, ATOM_PARENT, ATOM_TOP, CLASSES, Key, MAX_SETS, NAME_LEN, PASS, SET,
        SLOTS, SYSCALLS, SetSig, slot_class,
    },
};
use aya_ebpf::{
    helpers::generated::bpf_probe_read_kernel_str,
    macros::map,
    maps::{Array, HashMap, PerCpuArray},
};

use crate::{
    maps::{config, count},
    path::{MAX_DEPTH, mount_in, stored_in_dentry},
    task::{Access, Obj},
};

/// Verdict per (slot, class): `slot * CLASSES + class`, the opens' slots then the calls'
/// (`agent_common::open_filter::CALLS`, whose classes are the first `CALL_CLASSES`). Zero
/// (never written) passes.
#[map]
static OPEN_FILTER: Array<u32> = Array::with_max_entries(SLOTS * CLASSES, 0);

/// The names the keyed verdicts admit.
#[map]
static OPEN_KEYS: HashMap<Key, u8> = HashMap::with_max_entries(8192, 0);

/// The Bloom filter of each key set's names (`SetSig`), by set.
#[map]
static OPEN_SETS: Array<SetSig> = Array::with_max_entries(MAX_SETS, 0);

/// Per CPU, an open being judged: the names it is judged on, each in the key it is looked up
/// with (the file's, its directory's, and the first component's when that is neither), and
/// the walk's state.
#[repr(C)]
struct Judged {
    names: [Key; 3],
    /// Components met so far, counted to 3.
    named: u32,
    _pad: u32,
    /// The last component met: the first component once the walk reaches the root.
    last: u64,
}

#[map]
static JUDGED: PerCpuArray<Judged> = PerCpuArray::with_max_entries(1, 0);

/// The verdict for an open or call with `spec` that returned `ret`, from its argument
/// registers.
#[inline(always)]
pub fn verdict(spec: &SyscallSpec, ret: i64, args: &[u64; 6]) -> u32 {
    if spec.filter_slot == 0 {
        return PASS;
    }
    let slot = spec.filter_slot as u32 - 1;
    if slot >= SLOTS {
        return PASS;
    }
    let arg = match (spec.flags_arg.wrapping_sub(1) & 7) as usize {
        i @ 0..6 => args[i],
        _ => 0,
    };
    match OPEN_FILTER.get(slot * CLASSES + slot_class(slot, ret, arg)) {
        Some(v) => *v,
        None => PASS,
    }
}

/// Whether a keyed verdict (`KEYS` set) admits the open of `obj`, the file behind its
/// returned descriptor, for the task whose root directory is `root`.
#[inline(always)]
pub fn admits<A: Access>(verdict: u32, obj: Obj, root: Obj) -> bool {
    let cfg = config();
    let (Some(j), Some(sigs)) = (JUDGED.get_ptr_mut(0), OPEN_SETS.get(verdict & SET)) else {
        return true;
    };
    // SAFETY: this CPU's slot, owned by this invocation (only syscall exits judge opens).
    let j = unsafe { &mut *j };
    // No file (a descriptor closed under us): userspace names it from the path string.
    if obj.dentry == 0 || obj.mnt == 0 {
        return true;
    }
    let mut dentry = obj.dentry;
    let mut mnt = obj.mnt;
    let (mut mnt_parent, mut mountpoint, mut mnt_root) = mount_in::<A>(mnt, root.mnt, cfg);
    // The walk's count and last component live in map memory, as path.rs's cursor does: a
    // register would be tracked exactly, a state per value, and the loop's states multiplied
    // past the verifier's budget (they did).
    // SAFETY: fields of this CPU's slot; volatile so that they stay in memory.
    unsafe {
        core::ptr::write_volatile(&mut j.named, 0);
        core::ptr::write_volatile(&mut j.last, 0);
    }
    let mut done = false;
    for _ in 0..MAX_DEPTH {
        if dentry == root.dentry && mnt == root.mnt {
            done = true;
            break;
        }
        if dentry == mnt_root {
            // The top of this mount: continue from its mountpoint in the parent mount; a mount
            // attached nowhere is outside the root.
            let m = mnt.wrapping_sub(cfg.mount_mnt as u64);
            if mnt_parent == m || mnt_parent == 0 {
                return true;
            }
            dentry = mountpoint;
            mnt = mnt_parent.wrapping_add(cfg.mount_mnt as u64);
            (mnt_parent, mountpoint, mnt_root) = mount_in::<A>(mnt, root.mnt, cfg);
            continue;
        }
        // SAFETY: as above.
        let named = unsafe { core::ptr::read_volatile(&j.named) };
        let parent = if named < 2 {
            name_into::<A>(&mut j.names[(named & 1) as usize], dentry)
        } else {
            A::dentry_parent(dentry, cfg)
        };
        // A file system's root that is not the root of its mount (an internal mount's lone
        // dentry: pipe, socket, memfd), or a failed read.
        if parent == dentry || parent == 0 {
            return true;
        }
        // SAFETY: as above.
        unsafe {
            core::ptr::write_volatile(&mut j.last, dentry);
            core::ptr::write_volatile(&mut j.named, if named < 3 { named + 1 } else { 3 });
        }
        dentry = parent;
    }
    if !done {
        return true;
    }
    // The names by component, as indices into `names`; "" where the path has none (the root
    // has no names; a file right under it no directory name).
    // SAFETY: as above.
    let (named, last) = unsafe {
        (
            core::ptr::read_volatile(&j.named),
            core::ptr::read_volatile(&j.last),
        )
    };
    let (top, parent) = match named {
        0 => {
            clear(&mut j.names[0]);
            (0, 0)
        }
        1 => {
            clear(&mut j.names[1]);
            (0, 1)
        }
        2 => (1, 1),
        _ => {
            name_into::<A>(&mut j.names[2], last);
            (2, 1)
        }
    };
    let set = verdict & SET;
    let names = &mut j.names;
    found(names, set, verdict, sigs, ATOM_TOP, top)
        || found(names, set, verdict, sigs, ATOM_PARENT, parent)
        || found(names, set, verdict, sigs, ATOM_LEAF, 0)
}

/// Writes the name of `dentry` into `key` (NUL-padded, cut to `NAME_LEN - 1` bytes) and returns
/// its parent: one read when the name is stored inside the dentry, else a second for the name.
#[inline(always)]
fn name_into<A: Access>(key: &mut Key, dentry: u64) -> u64 {
    let cfg = config();
    let [parent, len, name, w0, w1, w2, w3] = A::dentry_named(dentry, cfg);
    let len = len as u32;
    let words = key.name.as_mut_ptr().cast::<u64>();
    if stored_in_dentry(dentry, name, cfg) {
        let n = if len > NAME_LEN as u32 - 1 {
            NAME_LEN as u32 - 1
        } else {
            len
        };
        for (i, w) in [w0, w1, w2, w3].into_iter().enumerate() {
            // SAFETY: inside the 8-aligned name.
            unsafe { core::ptr::write_volatile(words.add(i), keep(w, n, i as u32)) };
        }
    } else {
        clear(key);
        // SAFETY: at most NAME_LEN - 1 bytes and a NUL into the key's name.
        unsafe {
            bpf_probe_read_kernel_str(
                key.name.as_mut_ptr().cast(),
                NAME_LEN as u32,
                name as *const _,
            )
        };
    }
    parent
}

/// The bytes of word `i` of a name that are the name's first `n` bytes; zero past them (a
/// short name's storage holds a NUL and whatever an earlier, longer name left there).
#[inline(always)]
fn keep(w: u64, n: u32, i: u32) -> u64 {
    let lo = 8 * i;
    if n >= lo + 8 {
        w
    } else if n <= lo {
        0
    } else {
        w & ((1u64 << (8 * (n - lo))) - 1)
    }
}

/// Zeroes a key's name: four word stores (a plain `= [0; 32]` becomes a byte-by-byte memset
/// on this target).
#[inline(always)]
fn clear(key: &mut Key) {
    let words = key.name.as_mut_ptr().cast::<u64>();
    for i in 0..NAME_LEN / 8 {
        // SAFETY: inside the 8-aligned name.
        unsafe { core::ptr::write_volatile(words.add(i), 0) };
    }
}

/// Whether `names[at]` is a key of `set` for `atom`, if the set lists names for it: its Bloom
/// bits first, then the name itself.
#[inline(always)]
fn found(names: &mut [Key; 3], set: u32, verdict: u32, sigs: &SetSig, atom: u8, at: usize) -> bool {
    if verdict & (1 << (ATOM_BITS + atom as u32)) == 0 {
        return false;
    }
    let key = &mut names[at % 3];
    let p = key.name.as_ptr().cast::<u64>();
    // SAFETY: the key's 8-aligned name, four words.
    let words: [u64; NAME_LEN / 8] =
        core::array::from_fn(|i| unsafe { core::ptr::read_volatile(p.add(i)) });
    if !sigs.may_hold(atom, words) {
        return false;
    }
    key.set = set as u16;
    key.atom = atom;
    key._pad = 0;
    key._pad2 = 0;
    // SAFETY: a lookup; the value is not read.
    unsafe { OPEN_KEYS.get(key) }.is_some()
}

/// Counts an open or a call the filter passed over.
#[inline(always)]
pub fn filtered(spec: &SyscallSpec) {
    count(if spec.filter_slot as usize > SYSCALLS.len() {
        counter::CALLS_FILTERED
    } else {
        counter::OPEN_FILTERED
    });
}
