//! Telling the kernel programs when the reader will next look at the ring buffer, so that
//! they wake it only when it would otherwise sleep past a lone event (`wakeup_flags` in
//! agent-ebpf/src/output.rs). A wake-up is a self-interrupt in the traced task's syscall
//! (a VM exit on a virtual machine); a reader that looks every millisecond anyway needs none.
//!
//! The time is one `u64` in the `READER` map, written through a shared mapping of it: a store
//! per sleep, no syscall.

use std::{
    os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd},
    ptr::NonNull,
    sync::atomic::{AtomicU64, Ordering},
    time::Duration,
};

use aya::maps::MapData;
use tokio::io::unix::AsyncFd;

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

/// The reader's own look at the ring: a timerfd, exact to microseconds. The runtime's timer
/// counts whole milliseconds and its sleep of one millisecond took up to three here, which,
/// with no wake-up from the kernel while the reader polls, was the alerts' latency
/// (p99 5-6 ms).
pub struct PollTimer {
    fd: AsyncFd<OwnedFd>,
}

impl PollTimer {
    pub fn new() -> std::io::Result<Self> {
        // SAFETY: plain syscall; the result is checked.
        let raw = unsafe {
            libc::timerfd_create(
                libc::CLOCK_MONOTONIC,
                libc::TFD_NONBLOCK | libc::TFD_CLOEXEC,
            )
        };
        if raw < 0 {
            return Err(std::io::Error::last_os_error());
        }
        // SAFETY: a new descriptor we own.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        // SAFETY: the AsyncFd owns the descriptor and closes it only when dropped.
        let fd = unsafe { AsyncFd::register_with_interest(fd, tokio::io::Interest::READABLE) }?;
        Ok(Self { fd })
    }

    /// Waits `d`. Cancel-safe: a later call re-arms the timer, which clears what an abandoned
    /// one left.
    pub async fn sleep(&self, d: Duration) -> std::io::Result<()> {
        let spec = libc::itimerspec {
            it_interval: libc::timespec {
                tv_sec: 0,
                tv_nsec: 0,
            },
            it_value: libc::timespec {
                tv_sec: d.as_secs() as libc::time_t,
                // At least a nanosecond: a zero value would disarm the timer.
                tv_nsec: (d.subsec_nanos().max(1)) as libc::c_long,
            },
        };
        // SAFETY: a valid timerfd and itimerspec; the old value is not asked for.
        let r =
            unsafe { libc::timerfd_settime(self.fd.as_raw_fd(), 0, &spec, std::ptr::null_mut()) };
        if r < 0 {
            return Err(std::io::Error::last_os_error());
        }
        loop {
            let mut guard = self.fd.readable().await?;
            let mut ticks = 0u64;
            let got = guard.try_io(|fd| {
                // SAFETY: reads the 8-byte expiration count into `ticks`.
                let n = unsafe {
                    libc::read(fd.as_raw_fd(), (&raw mut ticks).cast(), size_of::<u64>())
                };
                if n < 0 {
                    Err(std::io::Error::last_os_error())
                } else {
                    Ok(())
                }
            });
            match got {
                Ok(r) => return r,
                // Readiness left from an earlier arming: not this one's expiry.
                Err(_would_block) => continue,
            }
        }
    }
}
