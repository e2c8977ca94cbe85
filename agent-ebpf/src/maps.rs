//! Maps shared by all programs, and the kernel configuration userspace writes before load.
//! The ring buffer and its maps are in `output.rs`.

use agent_common::{
    ArgRules, KernelConfig, MAX_PROFILE_SLOTS, MAX_SYSCALL_NR, ProfileScope, RecordSeen,
    SyscallEvent, SyscallSpec, counter,
};
use aya_ebpf::{
    macros::map,
    maps::{Array, HashMap, PerCpuArray},
};

/// The interest filter and capture plan, indexed by syscall number; written by userspace.
#[map]
pub static SYSCALL_SPECS: Array<SyscallSpec> = Array::with_max_entries(MAX_SYSCALL_NR, 0);

/// The 64-bit syscall each 32-bit (ia32) syscall number stands for, plus one (0: none x86_64
/// has; `agent_common::COMPAT_SOCKETCALL`: decided by its first argument; with
/// `agent_common::COMPAT_PROFILE_ONLY`: judged by profiles, not decoded); written by userspace
/// at load. A `SYSCALL_SPECS` entry flagged `spec_flags::COMPAT_CHECK` sends the
/// 32-bit entry's calls of that number here.
#[map]
pub static COMPAT_NR: Array<u32> = Array::with_max_entries(MAX_SYSCALL_NR, 0);

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
