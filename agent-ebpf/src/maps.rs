//! Maps shared by all programs, and the kernel configuration userspace writes before load.

use agent_common::{
    ArgRules, KernelConfig, MAX_PROFILE_SLOTS, MAX_SYSCALL_NR, ProfileScope, RecordSeen,
    SyscallEvent, SyscallSpec, counter,
};
use aya_ebpf::{
    bindings::BPF_F_NO_PREALLOC,
    macros::map,
    maps::{Array, HashMap, PerCpuArray, RingBuf},
};

/// Every record for userspace. Userspace may resize it before load (`--ring-buffer-size`).
#[map]
pub static EVENTS: RingBuf = RingBuf::with_byte_size(16 * 1024 * 1024, 0);

/// How many bytes may wait in `EVENTS` before a record wakes the reader (a quarter of the
/// ring when that is less, for the small rings `--ring-buffer-size` allows).
///
/// By default every record the reader has not yet caught up with sends a wake-up (irq_work,
/// then an epoll wake-up of the agent), and a reader that keeps up is always caught up: one
/// wake-up per event, paid in the traced task's syscall. Records are written without one
/// instead, the reader polls the ring every millisecond (agent/src/sensor/mod.rs), and only
/// a backlog of this size wakes it at once, so a burst is read before the ring fills.
const WAKEUP_BYTES: u64 = 256 * 1024;

/// The flags for one record written to `EVENTS`: wake the reader only for a backlog.
#[inline(always)]
pub fn wakeup_flags() -> u64 {
    const BPF_RB_AVAIL_DATA: u64 = 0;
    const BPF_RB_RING_SIZE: u64 = 1;
    const BPF_RB_NO_WAKEUP: u64 = 1;
    const BPF_RB_FORCE_WAKEUP: u64 = 2;
    let quarter = EVENTS.query(BPF_RB_RING_SIZE) / 4;
    let threshold = if quarter < WAKEUP_BYTES {
        quarter
    } else {
        WAKEUP_BYTES
    };
    if EVENTS.query(BPF_RB_AVAIL_DATA) >= threshold {
        BPF_RB_FORCE_WAKEUP
    } else {
        BPF_RB_NO_WAKEUP
    }
}

/// The interest filter and capture plan, indexed by syscall number; written by userspace.
#[map]
pub static SYSCALL_SPECS: Array<SyscallSpec> = Array::with_max_entries(MAX_SYSCALL_NR, 0);

/// Syscalls of interest between entry and exit, keyed by pid_tgid. Not preallocated: a value
/// is 8 KiB and only the syscalls in flight need one.
#[map]
pub static PENDING: HashMap<u64, SyscallEvent> = HashMap::with_max_entries(8192, BPF_F_NO_PREALLOC);

/// Where a syscall event is built at entry before it is copied into `PENDING` (the BPF stack
/// is 512 bytes).
#[map]
pub static SCRATCH: PerCpuArray<SyscallEvent> = PerCpuArray::with_max_entries(1, 0);

/// Which profile judges a cgroup's tasks, by cgroup v2 id; written by userspace as containers
/// start. A task whose cgroup is absent pays this one lookup per syscall and nothing else.
#[map]
pub static PROFILE_SCOPE: HashMap<u64, ProfileScope> = HashMap::with_max_entries(16384, 0);

/// Verdict per (profile slot, syscall number): an `agent_common::action` in the low byte,
/// `verdict::HAS_ARGS` when `PROFILE_ARGS` holds argument rules. Index `verdict_index`.
#[map]
pub static PROFILE_VERDICTS: Array<u32> =
    Array::with_max_entries(MAX_PROFILE_SLOTS * MAX_SYSCALL_NR, 0);

/// Argument rules per (slot, syscall), key `args_key`.
#[map]
pub static PROFILE_ARGS: HashMap<u32, ArgRules> =
    HashMap::with_max_entries(4096, BPF_F_NO_PREALLOC);

/// Syscalls seen per recorded cgroup (`osprey profile record`); userspace creates the entry.
#[map]
pub static PROFILE_RECORD: HashMap<u64, RecordSeen> =
    HashMap::with_max_entries(1024, BPF_F_NO_PREALLOC);

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
