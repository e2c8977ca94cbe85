//! Maps shared by all programs, and the kernel configuration userspace writes before load.

use agent_common::{
    ArgRules, KernelConfig, MAX_PROFILE_SLOTS, MAX_SYSCALL_NR, ProfileScope, RecordSeen,
    SyscallEvent, SyscallSpec, counter,
};
use aya_ebpf::{
    helpers::bpf_ktime_get_ns,
    macros::map,
    maps::{Array, HashMap, PerCpuArray, RingBuf},
};

/// Every record for userspace. Userspace may resize it before load (`--ring-buffer-size`).
#[map]
pub static EVENTS: RingBuf = RingBuf::with_byte_size(16 * 1024 * 1024, 0);

/// How many bytes may wait in `EVENTS` before a record wakes the reader (a quarter of the
/// ring when that is less, for the small rings `--ring-buffer-size` allows).
const WAKEUP_BYTES: u64 = 256 * 1024;

/// At most one time-driven wake-up per this many nanoseconds.
const WAKEUP_EVERY_NS: u64 = 1_000_000;

/// When a record last woke the reader (boot-time ns). One slot shared by every CPU: a race
/// between two CPUs costs at most one extra wake-up.
#[map]
static LAST_WAKEUP: Array<u64> = Array::with_max_entries(1, 0);

/// The flags for one record written to `EVENTS`.
///
/// With the default flags every record the reader has caught up with wakes it (irq_work,
/// then an epoll wake-up), and a reader that keeps up is always caught up: one wake-up per
/// event, paid inside the traced task's syscall. Instead a record wakes the reader only when
/// the last wake-up is more than a millisecond old (so a lone event is read at once) or a
/// backlog of `WAKEUP_BYTES` waits (so a burst is read before the ring fills); otherwise it
/// is written silently and the reader's own poll (agent/src/sensor/mod.rs, 1 ms while events
/// flow) picks it up. Under load that is at most about a thousand wake-ups a second.
#[inline(always)]
pub fn wakeup_flags() -> u64 {
    const BPF_RB_AVAIL_DATA: u64 = 0;
    const BPF_RB_RING_SIZE: u64 = 1;
    const BPF_RB_NO_WAKEUP: u64 = 1;
    const BPF_RB_FORCE_WAKEUP: u64 = 2;
    // SAFETY: no preconditions.
    let now = unsafe { bpf_ktime_get_ns() };
    let Some(last) = LAST_WAKEUP.get_ptr_mut(0) else {
        return 0;
    };
    // SAFETY: a valid map value pointer; a torn or racing update only moves a wake-up.
    let due = now.wrapping_sub(unsafe { *last }) >= WAKEUP_EVERY_NS;
    let quarter = EVENTS.query(BPF_RB_RING_SIZE) / 4;
    let threshold = if quarter < WAKEUP_BYTES {
        quarter
    } else {
        WAKEUP_BYTES
    };
    if due || EVENTS.query(BPF_RB_AVAIL_DATA) >= threshold {
        // SAFETY: as above.
        unsafe { *last = now };
        BPF_RB_FORCE_WAKEUP
    } else {
        BPF_RB_NO_WAKEUP
    }
}

/// The interest filter and capture plan, indexed by syscall number; written by userspace.
#[map]
pub static SYSCALL_SPECS: Array<SyscallSpec> = Array::with_max_entries(MAX_SYSCALL_NR, 0);

/// Where a syscall event is built at exit before it is copied into the ring buffer (the BPF
/// stack is 512 bytes).
#[map]
pub static SCRATCH: PerCpuArray<SyscallEvent> = PerCpuArray::with_max_entries(1, 0);

/// The same for io_uring records (uring.rs), so that a completion posted while a syscall
/// record is being built on the same CPU does not write over it.
#[map]
pub static URING_SCRATCH: PerCpuArray<SyscallEvent> = PerCpuArray::with_max_entries(1, 0);

/// Which profile judges a cgroup's tasks, by cgroup v2 id; written by userspace as containers
/// start. A task whose cgroup is absent pays this one lookup per syscall and nothing else.
#[map]
pub static PROFILE_SCOPE: HashMap<u64, ProfileScope> = HashMap::with_max_entries(16384, 0);

/// Verdict per (profile slot, syscall number): an `agent_common::action` in the low byte,
/// `verdict::HAS_ARGS` when `PROFILE_ARGS` holds argument rules. Index `verdict_index`.
#[map]
pub static PROFILE_VERDICTS: Array<u32> =
    Array::with_max_entries(MAX_PROFILE_SLOTS * MAX_SYSCALL_NR, 0);

/// Argument rules per (slot, syscall), key `args_key`. Preallocated (4096 x 648 bytes, about 2.7
/// MiB): on kernels before 6.1 the verifier warns "trace type BPF program uses run-time
/// allocation" (a kernel WARNING that taints the kernel, and panics a node booted with
/// panic_on_warn) for a `BPF_F_NO_PREALLOC` map in a tracing program.
#[map]
pub static PROFILE_ARGS: HashMap<u32, ArgRules> = HashMap::with_max_entries(4096, 0);

/// Syscalls seen per recorded cgroup (`osprey profile record`); userspace creates the entry.
/// Preallocated, as `PROFILE_ARGS` is (1024 x 512 bytes).
#[map]
pub static PROFILE_RECORD: HashMap<u64, RecordSeen> = HashMap::with_max_entries(1024, 0);

/// Drop and activity counters, indexed by `agent_common::counter`.
#[map]
pub static COUNTERS: PerCpuArray<u64> = PerCpuArray::with_max_entries(counter::COUNT, 0);

/// Kernel offsets and settings; see `KernelConfig`. Read with `config()`.
#[unsafe(no_mangle)]
static CONFIG: KernelConfig = KernelConfig::ZERO;

/// The configuration userspace wrote. A volatile read keeps the compiler from folding the
/// all-zero initializer into the code: the loader rewrites `.rodata` before load.
#[inline(always)]
pub fn config() -> &'static KernelConfig {
    // SAFETY: CONFIG is a static that lives for the program's lifetime.
    unsafe { &*core::ptr::read_volatile(&&raw const CONFIG) }
}

#[inline(always)]
pub fn count(index: u32) {
    if let Some(slot) = COUNTERS.get_ptr_mut(index) {
        // SAFETY: per-CPU slot, no concurrent writer on this CPU while the program runs.
        unsafe { *slot += 1 };
    }
}
