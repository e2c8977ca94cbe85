//! Telling the kernel programs when the reader will next look at the ring buffer, so that
//! they wake it only when it would otherwise sleep past a lone event (`wakeup_flags` in
//! agent-ebpf/src/output.rs). A wake-up is a self-interrupt in the traced task's syscall
//! (a VM exit on a virtual machine); a reader that looks every millisecond anyway needs none.
//!
//! The time is one `u64` in the `READER` map, written through a shared mapping of it: a store
//! per sleep, no syscall.

use std::{
    os::fd::{AsFd, AsRawFd},
    ptr::NonNull,
    sync::atomic::{AtomicU64, Ordering},
};

use aya::maps::MapData;

/// The mapped `READER` value. Without it (a kernel that refuses the mapping) the programs see
/// 0 and wake the reader as if it were asleep, at most once a millisecond.
pub struct NextLook {
    value: NonNull<AtomicU64>,
    len: usize,
    // Keeps the map alive as long as the mapping.
    _map: MapData,
}

// SAFETY: the mapping is shared memory written with atomic stores only.
unsafe impl Send for NextLook {}
// SAFETY: as above.
unsafe impl Sync for NextLook {}

impl NextLook {
    /// Maps `map`, the `READER` array of one `u64`.
    pub fn new(map: MapData) -> std::io::Result<Self> {
        // SAFETY: sysconf has no preconditions.
        let len = unsafe { libc::sysconf(libc::_SC_PAGESIZE) } as usize;
        let fd = map.fd().as_fd().as_raw_fd();
        // SAFETY: a new shared mapping of the map's first page (an mmapable array of one u64
        // is one page), checked below.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                fd,
                0,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(std::io::Error::last_os_error());
        }
        let value =
            NonNull::new(p.cast::<AtomicU64>()).ok_or_else(std::io::Error::last_os_error)?;
        Ok(Self {
            value,
            len,
            _map: map,
        })
    }

    /// The reader looks next at boot-time `ns` (its clock: CLOCK_BOOTTIME); `now` says it is
    /// looking.
    pub fn set(&self, ns: u64) {
        // SAFETY: a live, aligned mapping of the map's value.
        unsafe { self.value.as_ref() }.store(ns, Ordering::Relaxed);
    }
}

impl Drop for NextLook {
    fn drop(&mut self) {
        // SAFETY: the mapping made in `new`, unmapped once.
        unsafe { libc::munmap(self.value.as_ptr().cast(), self.len) };
    }
}
