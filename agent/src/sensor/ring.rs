//! Joins an io_uring request's submission record with its completion record (see
//! agent-ebpf/src/uring.rs): the submission has the arguments, captures and the kernel path of
//! a descriptor argument or directory; the completion has the result and the file of a
//! descriptor it returned. The joined record reads like one syscall record.
//!
//! Requests waiting for their completion are kept in userspace, bounded in number and in bytes:
//! a ring can keep many requests in flight for as long as it likes (an accept, an open of a
//! FIFO), so past the bound the oldest is reported as it is (result `EINPROGRESS`) and counted,
//! never dropped. An open pushed out that way is reported again by its completion, which has
//! what the rules on opens need (flags, result, the file opened), so flooding the bound does
//! not hide an open's result.

use std::collections::{HashMap, VecDeque};
use std::mem::offset_of;

use agent_common::{EventHeader, SYSCALL_DATA_OFFSET, SyscallEvent, ring};

/// Requests in flight kept for their completion.
pub const MAX_PENDING: usize = 16_384;
/// Bytes of submission records kept: a request can block for ever (an accept, an open of a
/// FIFO) and its record carries paths of up to 4 KiB each, so a process submitting thousands
/// of them must not grow the agent's memory past this (8 MiB, an eighth of its 64 MiB goal).
pub const MAX_PENDING_BYTES: usize = 8 << 20;

/// What the join did, for metrics.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct RingStats {
    /// Submissions reported with their completion.
    pub joined: u64,
    /// Submissions reported without one: past the bound, or their request address was reused
    /// before a completion came (counted in `unfinished`).
    pub unfinished: u64,
    /// Completions of requests whose submission was not held (submitted before the agent
    /// started, pushed out past the bound, or a multishot request's later completions). An
    /// open's is reported on its own (its flags and the file it opened are in it); the
    /// others are not.
    pub unmatched: u64,
}

#[derive(Debug, Default)]
pub struct RingJoin {
    pending: HashMap<u64, (u64, Vec<u8>)>,
    order: VecDeque<(u64, u64)>,
    seq: u64,
    /// Bytes of the records in `pending`.
    bytes: usize,
    pub stats: RingStats,
}

fn field_u32(rec: &[u8], off: usize) -> u32 {
    rec.get(off..off + 4)
        .map(|b| u32::from_ne_bytes(b.try_into().unwrap_or_default()))
        .unwrap_or(0)
}

fn field_u64(rec: &[u8], off: usize) -> u64 {
    rec.get(off..off + 8)
        .map(|b| u64::from_ne_bytes(b.try_into().unwrap_or_default()))
        .unwrap_or(0)
}

fn put(rec: &mut [u8], off: usize, bytes: &[u8]) {
    if let Some(dst) = rec.get_mut(off..off + bytes.len()) {
        dst.copy_from_slice(bytes);
    }
}

fn cap_len(rec: &[u8], i: usize) -> usize {
    let off = offset_of!(SyscallEvent, cap_len) + 2 * i;
    rec.get(off..off + 2)
        .map(|b| u16::from_ne_bytes([b[0], b[1]]) as usize)
        .unwrap_or(0)
}

/// `SyscallEvent::ring` of a syscall record, 0 for anything else (or a record too short).
pub fn ring_bits(rec: &[u8]) -> u32 {
    if rec.len() < SYSCALL_DATA_OFFSET
        || field_u32(rec, offset_of!(EventHeader, kind)) != agent_common::EventKind::Syscall as u32
    {
        return 0;
    }
    field_u32(rec, offset_of!(SyscallEvent, ring))
}

impl RingJoin {
    /// Takes one io_uring record (`ring_bits(rec) != 0`); returns the records to decode now:
    /// a joined request, or submissions reported without their completion.
    pub fn push(&mut self, rec: &[u8], out: &mut Vec<Vec<u8>>) {
        let bits = ring_bits(rec);
        let req = field_u64(rec, offset_of!(SyscallEvent, ring_req));
        if bits & ring::SUBMIT != 0 {
            self.seq += 1;
            self.bytes += rec.len();
            if let Some((_, old)) = self.pending.insert(req, (self.seq, rec.to_vec())) {
                self.bytes -= old.len();
                self.stats.unfinished += 1;
                out.push(old);
            }
            self.order.push_back((req, self.seq));
            while self.pending.len() > MAX_PENDING || self.bytes > MAX_PENDING_BYTES {
                let Some((r, s)) = self.order.pop_front() else {
                    break;
                };
                if self.pending.get(&r).is_some_and(|(seq, _)| *seq == s)
                    && let Some((_, old)) = self.pending.remove(&r)
                {
                    self.bytes -= old.len();
                    self.stats.unfinished += 1;
                    out.push(old);
                }
            }
            // Entries already joined leave stale positions behind; drop them from the front.
            while let Some(&(r, s)) = self.order.front() {
                if self.pending.get(&r).is_some_and(|(seq, _)| *seq == s) {
                    break;
                }
                self.order.pop_front();
            }
            if self.order.len() > 4 * MAX_PENDING {
                let pending = &self.pending;
                self.order
                    .retain(|(r, s)| pending.get(r).is_some_and(|(seq, _)| seq == s));
            }
        } else if bits & ring::COMPLETE != 0 {
            match self.pending.remove(&req) {
                Some((_, submit)) => {
                    self.bytes -= submit.len();
                    self.stats.joined += 1;
                    out.push(merge(&submit, rec));
                }
                None => {
                    self.stats.unmatched += 1;
                    // An attacker can push an open's submission out of the bound (one batch:
                    // the open, then thousands of requests that never complete, all traced
                    // before the open's completion is posted); its completion still says what
                    // was opened, and how.
                    let op = (bits & ring::OPCODE) as u8;
                    if matches!(op, ring::OP_OPENAT | ring::OP_OPENAT2) {
                        let mut alone = rec.to_vec();
                        let b = bits | ring::SUBMIT;
                        put(&mut alone, offset_of!(SyscallEvent, ring), &b.to_ne_bytes());
                        out.push(alone);
                    }
                }
            }
        }
    }

    /// Requests waiting for their completion.
    pub fn pending(&self) -> usize {
        self.pending.len()
    }
}

/// The submission with the completion's time, result and (when it has one) kernel path.
pub fn merge(submit: &[u8], complete: &[u8]) -> Vec<u8> {
    let captures: usize = (0..3).map(|i| cap_len(submit, i)).sum();
    let complete_kpath = cap_len(complete, 3);
    let mut out = if complete_kpath > 0 {
        let end = (SYSCALL_DATA_OFFSET + captures).min(submit.len());
        let mut out = submit[..end].to_vec();
        let from = SYSCALL_DATA_OFFSET.min(complete.len());
        let to = (SYSCALL_DATA_OFFSET + complete_kpath).min(complete.len());
        out.extend_from_slice(&complete[from..to]);
        let len = (to - from) as u16;
        put(
            &mut out,
            offset_of!(SyscallEvent, cap_len) + 6,
            &len.to_ne_bytes(),
        );
        for off in [
            offset_of!(SyscallEvent, kpath_flags),
            offset_of!(SyscallEvent, kpath_magic),
        ] {
            put(&mut out, off, &field_u32(complete, off).to_ne_bytes());
        }
        let ino = offset_of!(SyscallEvent, kpath_ino);
        put(&mut out, ino, &field_u64(complete, ino).to_ne_bytes());
        out
    } else {
        submit.to_vec()
    };
    let ret = offset_of!(SyscallEvent, ret);
    put(&mut out, ret, &field_u64(complete, ret).to_ne_bytes());
    let ktime = offset_of!(EventHeader, ktime_ns);
    put(&mut out, ktime, &field_u64(complete, ktime).to_ne_bytes());
    let bits = field_u32(submit, offset_of!(SyscallEvent, ring))
        | (field_u32(complete, offset_of!(SyscallEvent, ring)) & ring::DIRECT)
        | ring::COMPLETE;
    put(
        &mut out,
        offset_of!(SyscallEvent, ring),
        &bits.to_ne_bytes(),
    );
    let size = out.len() as u32;
    put(&mut out, offset_of!(EventHeader, size), &size.to_ne_bytes());
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use agent_common::EventKind;

    /// A syscall record as the kernel writes it: `caps` bytes of captures (in capture 0), then
    /// `kpath` bytes of kernel path.
    fn record(bits: u32, req: u64, ret: i64, ktime: u64, caps: &[u8], kpath: &[u8]) -> Vec<u8> {
        let mut r = vec![0u8; SYSCALL_DATA_OFFSET];
        put(
            &mut r,
            offset_of!(EventHeader, kind),
            &(EventKind::Syscall as u32).to_ne_bytes(),
        );
        put(
            &mut r,
            offset_of!(EventHeader, ktime_ns),
            &ktime.to_ne_bytes(),
        );
        put(&mut r, offset_of!(SyscallEvent, nr), &257u32.to_ne_bytes());
        put(&mut r, offset_of!(SyscallEvent, ret), &ret.to_ne_bytes());
        put(&mut r, offset_of!(SyscallEvent, ring), &bits.to_ne_bytes());
        put(
            &mut r,
            offset_of!(SyscallEvent, ring_req),
            &req.to_ne_bytes(),
        );
        let cap = offset_of!(SyscallEvent, cap_len);
        put(&mut r, cap, &(caps.len() as u16).to_ne_bytes());
        put(&mut r, cap + 6, &(kpath.len() as u16).to_ne_bytes());
        if !kpath.is_empty() {
            put(
                &mut r,
                offset_of!(SyscallEvent, kpath_flags),
                &agent_common::kpath::OF_RET.to_ne_bytes(),
            );
        }
        r.extend_from_slice(caps);
        r.extend_from_slice(kpath);
        let size = r.len() as u32;
        put(&mut r, offset_of!(EventHeader, size), &size.to_ne_bytes());
        r
    }

    const OPEN: u32 = ring::OP_OPENAT as u32;

    #[test]
    fn a_completion_gives_the_submission_its_result_time_and_returned_file() {
        let mut j = RingJoin::default();
        let mut out = Vec::new();
        // The submission walked the directory of a relative path; the completion the file.
        let submit = record(
            ring::SUBMIT | OPEN,
            0xa0,
            ring::IN_PROGRESS,
            10,
            b"shadow",
            b"etc\0",
        );
        j.push(&submit, &mut out);
        assert!(out.is_empty(), "a submission waits for its completion");
        let complete = record(ring::COMPLETE | OPEN, 0xa0, 4, 25, b"", b"shadow\0etc\0");
        j.push(&complete, &mut out);
        assert_eq!(out.len(), 1);
        let m = &out[0];
        assert_eq!(field_u64(m, offset_of!(SyscallEvent, ret)) as i64, 4);
        assert_eq!(field_u64(m, offset_of!(EventHeader, ktime_ns)), 25);
        assert_eq!(cap_len(m, 0), 6);
        assert_eq!(cap_len(m, 3), 11);
        assert_eq!(&m[SYSCALL_DATA_OFFSET..], b"shadowshadow\0etc\0");
        assert_eq!(
            field_u32(m, offset_of!(EventHeader, size)) as usize,
            m.len()
        );
        let bits = ring_bits(m);
        assert_eq!(bits & ring::OPCODE, OPEN);
        assert_ne!(bits & ring::COMPLETE, 0);
        assert_eq!(j.stats.joined, 1);
        assert_eq!(j.pending(), 0);

        // A completion without a file keeps the submission's kernel path.
        j.push(&submit, &mut out);
        j.push(
            &record(ring::COMPLETE | OPEN, 0xa0, -2, 30, b"", b""),
            &mut out,
        );
        let m = &out[1];
        assert_eq!(field_u64(m, offset_of!(SyscallEvent, ret)) as i64, -2);
        assert_eq!(&m[SYSCALL_DATA_OFFSET..], b"shadowetc\0");
    }

    #[test]
    fn unfinished_requests_past_the_bound_are_reported_and_strays_counted() {
        let mut j = RingJoin::default();
        let mut out = Vec::new();
        let accept = ring::OP_ACCEPT as u32;
        j.push(
            &record(ring::COMPLETE | accept, 7, 0, 1, b"", b""),
            &mut out,
        );
        assert!(out.is_empty());
        assert_eq!(j.stats.unmatched, 1);
        for req in 0..(MAX_PENDING as u64 + 10) {
            j.push(
                &record(
                    ring::SUBMIT | OPEN,
                    1000 + req,
                    ring::IN_PROGRESS,
                    req,
                    b"x",
                    b"",
                ),
                &mut out,
            );
        }
        assert_eq!(out.len(), 10, "the oldest ten reported as they are");
        assert_eq!(field_u64(&out[0], offset_of!(SyscallEvent, ring_req)), 1000);
        assert_eq!(
            field_u64(&out[0], offset_of!(SyscallEvent, ret)) as i64,
            ring::IN_PROGRESS
        );
        assert_eq!(j.stats.unfinished, 10);
        assert_eq!(j.pending(), MAX_PENDING);
        // A request address reused before its completion came: the first is reported.
        let last = 1000 + MAX_PENDING as u64 + 9;
        j.push(
            &record(ring::SUBMIT | OPEN, last, ring::IN_PROGRESS, 1, b"y", b""),
            &mut out,
        );
        assert_eq!(out.len(), 11);
        assert_eq!(j.stats.unfinished, 11);
        // Joined requests leave no stale positions growing without bound.
        for req in 0..(MAX_PENDING as u64 * 5) {
            j.push(&record(ring::SUBMIT | OPEN, req, 0, 0, b"", b""), &mut out);
            j.push(
                &record(ring::COMPLETE | OPEN, req, 0, 0, b"", b""),
                &mut out,
            );
        }
        assert!(j.order.len() <= 4 * MAX_PENDING + 1, "{}", j.order.len());
    }

    #[test]
    fn an_open_pushed_out_of_the_bound_is_reported_by_its_completion() {
        let mut j = RingJoin::default();
        let mut out = Vec::new();
        j.push(
            &record(
                ring::SUBMIT | OPEN,
                1,
                ring::IN_PROGRESS,
                1,
                b"/etc/shadow",
                b"",
            ),
            &mut out,
        );
        // The same batch: requests that never complete push the open out.
        let accept = ring::OP_ACCEPT as u32;
        for req in 10..(10 + MAX_PENDING as u64) {
            j.push(
                &record(ring::SUBMIT | accept, req, ring::IN_PROGRESS, 2, b"", b""),
                &mut out,
            );
        }
        assert_eq!(out.len(), 1, "the open went out unfinished");
        j.push(
            &record(ring::COMPLETE | OPEN, 1, 3, 5, b"", b"shadow\0etc\0"),
            &mut out,
        );
        assert_eq!(out.len(), 2, "and its completion is reported on its own");
        let alone = &out[1];
        assert_eq!(field_u64(alone, offset_of!(SyscallEvent, ret)) as i64, 3);
        assert_eq!(cap_len(alone, 3), 11);
        assert_ne!(
            ring_bits(alone) & ring::SUBMIT,
            0,
            "decoded as a whole request"
        );
        // Another opcode's stray completion is only counted.
        j.push(
            &record(ring::COMPLETE | accept, 99_999_999, 4, 6, b"", b""),
            &mut out,
        );
        assert_eq!(out.len(), 2);
        assert_eq!(j.stats.unmatched, 2);
    }

    #[test]
    fn pending_records_are_bounded_in_bytes() {
        // Requests that never complete, each with a 4 KiB path: the oldest go out unfinished
        // once the records held pass MAX_PENDING_BYTES, long before MAX_PENDING of them.
        let mut j = RingJoin::default();
        let mut out = Vec::new();
        let path = vec![b'a'; 4095];
        for req in 0..4_000u64 {
            j.push(
                &record(ring::SUBMIT | OPEN, req, ring::IN_PROGRESS, req, &path, b""),
                &mut out,
            );
        }
        assert!(j.bytes <= MAX_PENDING_BYTES, "{}", j.bytes);
        assert!(!out.is_empty() && j.pending() < 4_000);
        assert_eq!(j.stats.unfinished as usize, out.len());
        assert_eq!(j.pending() + out.len(), 4_000);
        // Completing what is held leaves nothing counted.
        let held: Vec<u64> = j.pending.keys().copied().collect();
        for req in held {
            j.push(
                &record(ring::COMPLETE | OPEN, req, 3, 0, b"", b""),
                &mut out,
            );
        }
        assert_eq!((j.pending(), j.bytes), (0, 0));
    }

    #[test]
    fn only_syscall_records_have_ring_bits() {
        let mut r = record(ring::SUBMIT | OPEN, 1, 0, 0, b"", b"");
        assert_ne!(ring_bits(&r), 0);
        put(
            &mut r,
            offset_of!(EventHeader, kind),
            &(EventKind::Exec as u32).to_ne_bytes(),
        );
        assert_eq!(ring_bits(&r), 0);
        assert_eq!(ring_bits(&r[..8]), 0);
    }
}
