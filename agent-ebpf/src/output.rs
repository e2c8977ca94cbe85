//! The ring buffer every record goes through: when a record wakes the reader, and who may use
//! the room at its top.
//!
//! One ring serves the whole node, so a container that makes captured syscalls faster than the
//! agent reads them would fill it and every other container's records (a host `cat
//! /etc/shadow` included) would be lost with its own. So the top of the ring is reserved: its
//! last 4 MiB (half of a ring under 8 MiB). While records wait there, every share (a cgroup;
//! see below) writes from a token bucket of its own. It refills at `KernelConfig::cgroup_share`
//! records per millisecond where the reserved room begins, slower as the ring fills down to an
//! eighth of that, not at all when it is full, and holds at most four milliseconds' worth (and
//! an eighth of the reserved room). A share that finds its bucket empty has the record dropped
//! and counted in its `CGROUP_SHARE` entry. A noisy share therefore writes, under pressure,
//! about what the reader drains (its refill falls until the two meet, somewhere below full),
//! while a quiet one arrives with a full bucket and its burst (a process starting: an exec, its
//! libraries, the file it reads) fits in the room left. Below the reserved room nothing is looked
//! up: the fast path is two ring queries. The rest of the ring stays a plain buffer, so one busy
//! share alone (a build, a benchmark) still has most of it to absorb a backlog the reader is slow
//! to drain.
//!
//! Process lifecycle records (exec, fork, exit, and the execve/execveat syscall records the rules
//! judge) have a second bucket in each share, an eighth of the first, used once the first is
//! spent: a container that floods the ring with captured
//! syscalls to blind the sensor loses those records, but the programs it starts meanwhile (the
//! point of blinding it) are still reported, and the process table stays whole. An exec flood
//! spends both buckets and is limited like any other.
//!
//! The share is per cgroup v2 id, the unit a container runtime creates per container (and
//! systemd per unit and session). Where a task sits in the v2 root (a host whose runtime uses
//! cgroup v1 alone puts every container there), it is per mount namespace instead, which every
//! container has of its own, except for the node's own processes: they share the node's mount
//! namespace, and have one share per process. With one share for them all, a busy daemon (a
//! runtime tearing containers down, which a crash-looping container makes it do) spent it, and
//! an admin's `cat /etc/shadow` meanwhile was lost with the daemon's records. A container
//! cannot start host processes, so this gives it nothing. A container allowed to create
//! cgroups (a delegated subtree) or namespaces (user namespaces) gets one share per cgroup or
//! namespace it makes; so do many noisy containers together. The ring can then still fill, and
//! those records are counted per share too (`ring_full`).

use core::intrinsics::{AtomicOrdering, atomic_xadd};

use agent_common::{CgroupShare, EventHeader, SHARE_KEY_HOST_PROCESS, SHARE_KEY_MNT_NS, counter};
use aya_ebpf::{
    bindings::{BPF_F_MMAPABLE, BPF_NOEXIST},
    macros::map,
    maps::{Array, LruHashMap, RingBuf},
};

use crate::maps::{config, count};

/// Every record for userspace. Userspace may resize it before load (`--ring-buffer-size`).
#[map]
pub static EVENTS: RingBuf = RingBuf::with_byte_size(16 * 1024 * 1024, 0);

/// Each share's use of the ring's reserved room and what it lost; read by userspace for the
/// per-container drop counts. Entries are made only under pressure or on a loss.
#[map]
pub static CGROUP_SHARE: LruHashMap<u64, CgroupShare> = LruHashMap::with_max_entries(4096, 0);

/// A bucket holds this many milliseconds of refill...
const BURST_MS: u64 = 4;
/// ...and at most an eighth of the reserved room, counted in records of this many bytes (an
/// `openat` record is about 250), so that on a small ring (`--ring-buffer-size`) one share's
/// burst cannot fill the room left for the others.
const BURST_RECORD_BYTES: u64 = 256;
/// The room at the top of the ring that shares are for: 4 MiB (a quarter of the default
/// ring, about 16,000 records), or half of a ring smaller than 8 MiB.
const RESERVED_MAX: u64 = 4 * 1024 * 1024;

#[inline(always)]
fn reserved(size: u64) -> u64 {
    if size / 2 < RESERVED_MAX {
        size / 2
    } else {
        RESERVED_MAX
    }
}

/// The most tokens a bucket holds on a ring of `size` bytes.
#[inline(always)]
fn burst(share: u64, size: u64) -> u64 {
    let room = reserved(size) / BURST_RECORD_BYTES / 8;
    let b = share * BURST_MS;
    let b = if b < room { b } else { room };
    if b == 0 { 1 } else { b }
}

/// How many bytes may wait in `EVENTS` before a record wakes the reader (a quarter of the
/// ring when that is less, for the small rings `--ring-buffer-size` allows).
const WAKEUP_BYTES: u64 = 256 * 1024;

/// At most one wake-up of a sleeping reader per this many nanoseconds: the reader marks
/// itself awake (`READER`) within microseconds of one, so a second is a wake-up that went
/// astray.
const WAKEUP_EVERY_NS: u64 = 1_000_000;

/// When a record last woke the reader (boot-time ns). One value shared by every CPU: a race
/// between two CPUs costs at most one extra wake-up.
#[map]
static LAST_WAKEUP: Array<u64> = Array::with_max_entries(1, 0);

/// When the reader will next look at the ring unasked (boot-time ns): written by userspace
/// (through a mapping of this map) each time it goes to sleep, and as it wakes; 0 until it
/// first does.
#[map]
pub static READER: Array<u64> = Array::with_max_entries(1, BPF_F_MMAPABLE as u32);

const BPF_RB_AVAIL_DATA: u64 = 0;
const BPF_RB_RING_SIZE: u64 = 1;

/// The ring's size: from the configuration (one helper call fewer per record), else asked.
#[inline(always)]
fn ring_size() -> u64 {
    match config().ring_bytes {
        0 => EVENTS.query(BPF_RB_RING_SIZE),
        n => n as u64,
    }
}

/// Permission to write one record: the flags to write it with.
#[derive(Clone, Copy)]
pub struct Slot {
    pub flags: u64,
}

/// Who a record's share is counted against (`agent_common::SHARE_KEY_MNT_NS` and
/// `SHARE_KEY_HOST_PROCESS`).
#[inline(always)]
pub fn share_key(h: &EventHeader) -> u64 {
    /// The v2 root's id.
    const ROOT_CGROUP: u64 = 1;
    if h.cgroup_id > ROOT_CGROUP {
        h.cgroup_id
    } else if h.mnt_ns != 0 && h.mnt_ns == config().host_mnt_ns {
        SHARE_KEY_HOST_PROCESS | h.tgid as u64
    } else {
        SHARE_KEY_MNT_NS | h.mnt_ns as u64
    }
}

/// Which of a share's buckets a record may draw from.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Lane {
    /// Syscalls, io_uring requests, profile verdicts: the share's bucket.
    Any,
    /// Exec, fork and exit: the share's bucket, then the lifecycle bucket.
    Lifecycle,
}

/// Lifecycle records' bucket is an eighth of the share's rate and burst, and a share's refill
/// never falls below an eighth of its rate while the ring has room.
const EIGHTH: u64 = 8;

/// Takes a token from a bucket refilled at `rate` records per millisecond up to `burst`, last
/// refilled at `*refilled_ns`; false when it is empty.
#[inline(always)]
fn take(tokens: &mut u64, refilled_ns: &mut u64, now: u64, rate: u64, burst: u64) -> bool {
    let elapsed = now.wrapping_sub(*refilled_ns);
    let elapsed = if elapsed > BURST_MS * 1_000_000 {
        BURST_MS * 1_000_000
    } else {
        elapsed
    };
    let refill = elapsed * rate / 1_000_000;
    // Less than a record's refill leaves the clock alone, so that it adds up.
    if refill > 0 {
        *tokens = if *tokens + refill > burst {
            burst
        } else {
            *tokens + refill
        };
        *refilled_ns = now;
    }
    if *tokens == 0 {
        return false;
    }
    *tokens -= 1;
    true
}

/// An eighth of `n`, at least one.
#[inline(always)]
fn eighth(n: u64) -> u64 {
    let l = n / EIGHTH;
    if l == 0 { 1 } else { l }
}

/// Whether a record of `bytes` bytes of share `key` may be written now (`now`: its header's
/// boot-time clock, so that the clock is read once per record). `None` when records already
/// wait in the ring's reserved room and the share's bucket (and, for `Lane::Lifecycle`, its
/// lifecycle bucket) is empty: the loss is counted (globally and in the share's entry).
#[inline(always)]
pub fn admit(key: u64, now: u64, lane: Lane, bytes: u64) -> Option<Slot> {
    let size = ring_size();
    let waiting = EVENTS.query(BPF_RB_AVAIL_DATA);
    let share = config().cgroup_share as u64;
    if share != 0
        && waiting >= size - reserved(size)
        && let Some(s) = share_of(key, burst(share, size))
    {
        // SAFETY: a map value; racing CPUs may lose a refill or a take, which moves the
        // limit by a record or two. The loss counts are atomic.
        let s = unsafe { &mut *s };
        let free = size.saturating_sub(waiting);
        // Records per millisecond: `share` where the reserved room begins, falling as the
        // ring fills, but never below an eighth of it while there is room: with the rate
        // falling to none, a reader starved of CPU held the ring near full and every share's
        // refill at zero, and a quiet share (the host's, which every host process spends on
        // a cgroup-v1 node) lost its records once its burst was spent, as the flooder did.
        // The floor adds at most an eighth of `share` per active share to what the reader
        // must drain. (`checked_div`: a plain division by a variable panics on zero, and the
        // verifier rejects the code a panic leaves.)
        let rate = (share * free).checked_div(reserved(size)).unwrap_or(0);
        let floor = eighth(share);
        let rate = if free == 0 || rate > floor {
            rate
        } else {
            floor
        };
        let burst = burst(share, size);
        let admitted = take(&mut s.tokens, &mut s.refilled_ns, now, rate, burst)
            || (lane == Lane::Lifecycle
                && take(
                    &mut s.lifecycle_tokens,
                    &mut s.lifecycle_refilled_ns,
                    now,
                    // Refills only while the ring has room, like the share's.
                    if rate == 0 { 0 } else { eighth(rate) },
                    eighth(burst),
                ));
        if !admitted {
            add(&mut s.over_share);
            count(counter::DROP_CGROUP_SHARE);
            return None;
        }
    }
    Some(Slot {
        flags: wakeup_flags(now, waiting, size, bytes),
    })
}

/// A record of share `key` the full ring had no room for.
#[inline(always)]
pub fn lost(key: u64, drop_counter: u32) {
    count(drop_counter);
    let tokens = burst(config().cgroup_share as u64, ring_size());
    if let Some(s) = share_of(key, tokens) {
        // SAFETY: a map value; see `admit`.
        add(unsafe { &mut (*s).ring_full });
    }
}

/// Copies the first `size` bytes of `ev`, whose header is `h`, into the ring buffer within
/// its share (`share_key`), counting a loss. The clamp to `size_of::<T>()` is what lets the
/// verifier accept a variable length.
#[inline(always)]
pub fn emit<T>(ev: &T, h: &EventHeader, size: usize, drop_counter: u32) {
    emit_in(Lane::Any, ev, h, size, drop_counter)
}

/// [`emit`] of a record that may draw from `lane`.
#[inline(always)]
pub fn emit_in<T>(lane: Lane, ev: &T, h: &EventHeader, size: usize, drop_counter: u32) {
    let size = if size > size_of::<T>() {
        size_of::<T>()
    } else {
        size
    };
    let key = share_key(h);
    let Some(slot) = admit(key, h.ktime_ns, lane, size as u64) else {
        return;
    };
    // SAFETY: size <= size_of::<T>(), inside `ev`.
    let bytes = unsafe { core::slice::from_raw_parts((ev as *const T).cast::<u8>(), size) };
    if EVENTS.output::<[u8]>(bytes, slot.flags).is_err() {
        lost(key, drop_counter);
    }
}

/// The share's entry, made with a full bucket of `tokens` if missing (an LRU map: the least
/// recently used goes).
#[inline(always)]
fn share_of(key: u64, tokens: u64) -> Option<*mut CgroupShare> {
    if let Some(s) = CGROUP_SHARE.get_ptr_mut(&key) {
        return Some(s);
    }
    let fresh = CgroupShare {
        tokens,
        lifecycle_tokens: eighth(tokens),
        ..CgroupShare::default()
    };
    let _ = CGROUP_SHARE.insert(&key, &fresh, BPF_NOEXIST as u64);
    CGROUP_SHARE.get_ptr_mut(&key)
}

/// An atomic increment (BPF `lock add`, which every kernel we support has): `core`'s atomics
/// are not offered on the BPF target, whose LLVM backend has no compare-and-swap before v3.
#[inline(always)]
fn add(n: &mut u64) {
    // SAFETY: an aligned u64 in map memory. The result is unused, so LLVM emits the plain
    // `lock add` rather than the fetching form (Linux 5.12+).
    unsafe { atomic_xadd::<u64, u64, { AtomicOrdering::Relaxed }>(n, 1) };
}

/// The flags for a record of `bytes` bytes written to `EVENTS`, `waiting` bytes already in
/// the ring of `size`.
///
/// With the default flags every record the reader has caught up with wakes it (irq_work,
/// then an epoll wake-up), and a reader that keeps up is always caught up: one wake-up per
/// event, paid inside the traced task's syscall as a self-interrupt (an APIC write: a VM exit
/// on a virtual machine, measured at tens of microseconds on ours). So a record wakes the
/// reader only when the reader will not look soon by itself: when it said (`READER`) that its
/// next look is more than `KernelConfig::looks_soon_us` away, the node having been quiet,
/// and then at most once a millisecond; or when it is the record that takes the backlog past
/// `WAKEUP_BYTES`, so that a burst is read before the ring fills. While events flow the reader
/// looks that often by itself and is never woken: a build's light but steady flow (a few
/// records a millisecond) woke it every millisecond under the rule before, about half of the
/// programs' time in that build.
#[inline(always)]
fn wakeup_flags(now: u64, waiting: u64, size: u64, bytes: u64) -> u64 {
    const BPF_RB_NO_WAKEUP: u64 = 1;
    const BPF_RB_FORCE_WAKEUP: u64 = 2;
    let quarter = size / 4;
    let mark = if quarter < WAKEUP_BYTES {
        quarter
    } else {
        WAKEUP_BYTES
    };
    if waiting < mark && waiting + bytes >= mark {
        return BPF_RB_FORCE_WAKEUP;
    }
    // A reader that has not said when it looks (0) is treated as asleep.
    let next_look = READER.get(0).copied().unwrap_or(0);
    if next_look != 0 && next_look <= now + config().looks_soon_us as u64 * 1000 {
        return BPF_RB_NO_WAKEUP;
    }
    let Some(last) = LAST_WAKEUP.get_ptr_mut(0) else {
        return 0;
    };
    // SAFETY: a valid map value pointer; a torn or racing update only moves a wake-up.
    unsafe {
        if now.wrapping_sub(*last) < WAKEUP_EVERY_NS {
            return BPF_RB_NO_WAKEUP;
        }
        *last = now;
    }
    BPF_RB_FORCE_WAKEUP
}
