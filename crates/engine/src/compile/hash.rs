//! The hasher of the sets and maps probed per event.

/// The hash of the sets and maps the engine probes per event. They hold short strings and
/// small numbers, where SipHash's setup dominates, and are built from rules, never from
/// event data, so flooding is not a concern. It takes eight bytes per multiply (FNV-1a took
/// one, and hashing long paths and command lines for `in` lists showed in profiles) and
/// mixes the high bits down at the end, since the table indexes by the low bits.
#[derive(Clone, Copy, Debug, Default)]
pub struct FastHash(u64);

const HASH_K: u64 = 0xf135_7aea_2e62_a9c5;

impl FastHash {
    #[inline]
    fn add(&mut self, word: u64) {
        self.0 = (self.0.rotate_left(26) ^ word).wrapping_mul(HASH_K);
    }
}

impl std::hash::Hasher for FastHash {
    #[inline]
    fn finish(&self) -> u64 {
        let h = self.0 ^ (self.0 >> 32);
        h.wrapping_mul(HASH_K) ^ (h >> 29)
    }

    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            self.add(u64::from_le_bytes(c.try_into().unwrap_or_default()));
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            let mut buf = [0u8; 8];
            buf[..rest.len()].copy_from_slice(rest);
            // The length keeps "a" and "a\0" apart.
            self.add(u64::from_le_bytes(buf) ^ ((rest.len() as u64) << 59));
        }
    }

    #[inline]
    fn write_u8(&mut self, i: u8) {
        self.add(u64::from(i));
    }

    #[inline]
    fn write_u32(&mut self, i: u32) {
        self.add(u64::from(i));
    }

    #[inline]
    fn write_u64(&mut self, i: u64) {
        self.add(i);
    }

    #[inline]
    fn write_i64(&mut self, i: i64) {
        self.add(i as u64);
    }

    #[inline]
    fn write_usize(&mut self, i: usize) {
        self.add(i as u64);
    }
}

pub type FastBuild = std::hash::BuildHasherDefault<FastHash>;
