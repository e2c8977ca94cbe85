//! The agent's on-disk spool: alerts not yet acknowledged by the collector, one file each, so a
//! collector restart, a network cut or an agent restart loses nothing within `max_bytes`.
//!
//! Nothing is lost without a [`Gap`] carrying the exact count:
//! - what does not fit evicts the oldest alerts into a gap (`SpoolOverflow`);
//! - an alert that cannot be written (disk full, read-only, I/O error) becomes a gap
//!   (`SpoolWriteFailed`), kept in memory if even the gap cannot be written;
//! - an entry that cannot be read back (empty, truncated, undecodable, another node's) is moved
//!   into `quarantine/` and replaced by a gap (`SpoolCorrupt`).
//!
//! Only an index is kept in memory (sequence number and length per alert); alerts are read
//! from disk when they are sent. Writes are fsynced in batches (every `sync_every` alerts, and
//! by [`Spool::sync`], which the push calls every 200 ms): a power cut loses at most the last
//! batch. The numbering (the next free sequence number, reserved ahead) and the spool's epoch
//! live in the file `numbering`; a spool created anew, or whose numbering cannot be read, gets
//! a new random epoch, which tells the collector that this node's numbering restarted.

use std::{
    collections::BTreeMap,
    fs,
    io::{Read as _, Write as _},
    path::{Path, PathBuf},
    time::Instant,
};

use super::{Gap, GapReason};

/// A spooled item, keyed by its first sequence number.
#[derive(Clone, Debug, PartialEq)]
pub enum Entry {
    /// An alert on disk, of this many bytes (with its header).
    Alert(u64),
    Gap(Gap),
}

impl Entry {
    /// The last sequence number the entry covers, given its key.
    pub fn end(&self, key: u64) -> u64 {
        match self {
            Entry::Alert(_) => key,
            Entry::Gap(g) => g.to_seq,
        }
    }
}

/// How far ahead the numbering is reserved on disk: a crash never reuses a number.
const RESERVE: u64 = 1024;
/// Alert files start with this, their payload's length and checksum.
const MAGIC: &[u8; 4] = b"OSP1";
const HEADER: usize = 12;
/// Quarantined files kept at most; beyond, bad entries are deleted (and still counted).
const QUARANTINE_MAX: usize = 1000;

/// FNV-1a, 32 bits: enough to tell a torn or truncated write from a whole one.
fn checksum(data: &[u8]) -> u32 {
    data.iter().fold(0x811c_9dc5u32, |h, &b| {
        (h ^ u32::from(b)).wrapping_mul(0x0100_0193)
    })
}

fn random_epoch() -> u64 {
    let mut b = [0u8; 8];
    let random = fs::File::open("/dev/urandom").and_then(|mut f| f.read_exact(&mut b));
    let mut e = u64::from_le_bytes(b);
    if random.is_err() || e == 0 {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or_default();
        e ^= now ^ (u64::from(std::process::id()) << 32);
    }
    e.max(1)
}

fn reason_word(r: GapReason) -> &'static str {
    match r {
        GapReason::SpoolWriteFailed => "write_failed",
        GapReason::SpoolCorrupt => "corrupt",
        _ => "overflow",
    }
}

fn reason_of(w: Option<&str>) -> GapReason {
    match w {
        Some("write_failed") => GapReason::SpoolWriteFailed,
        Some("corrupt") => GapReason::SpoolCorrupt,
        _ => GapReason::SpoolOverflow,
    }
}

/// Logs the first occurrence and then every power of two, not every one.
fn every_so_often(n: u64) -> bool {
    n == 1 || n.is_power_of_two()
}

pub struct Spool {
    dir: PathBuf,
    node: String,
    max_bytes: u64,
    sync_every: usize,
    entries: BTreeMap<u64, Entry>,
    /// Alert entries among `entries` (the backlog), kept so that reading it costs nothing.
    alerts: u64,
    bytes: u64,
    epoch: u64,
    reserved: u64,
    /// Written since the last fsync.
    unsynced: Vec<fs::File>,
    last_sync: Instant,
    /// Alerts lost since this process started, each inside a gap: evicted, not written,
    /// quarantined.
    evicted: u64,
    write_failed: u64,
    quarantined: u64,
    quarantine_files: usize,
    /// What opening found (a corrupt or foreign spool, a new epoch), for the log.
    notes: Vec<String>,
}

impl Spool {
    /// Opens (creating) `dir` and indexes what an earlier run left in it. Never fails: a
    /// directory that cannot be used makes every alert a counted gap, and the agent runs on.
    pub fn open(dir: &Path, node: &str, max_bytes: u64, sync_every: usize) -> Spool {
        let mut s = Spool {
            dir: dir.to_path_buf(),
            node: node.to_string(),
            max_bytes,
            sync_every: sync_every.max(1),
            entries: BTreeMap::new(),
            alerts: 0,
            bytes: 0,
            epoch: 0,
            reserved: 1,
            unsynced: Vec::new(),
            last_sync: Instant::now(),
            evicted: 0,
            write_failed: 0,
            quarantined: 0,
            quarantine_files: 0,
            notes: Vec::new(),
        };
        if let Err(e) = fs::create_dir_all(dir) {
            s.notes.push(format!(
                "cannot create the spool directory {}: {e}; alerts the collector has not acknowledged are lost, each counted in a gap",
                dir.display()
            ));
            s.epoch = random_epoch();
            return s;
        }
        s.quarantine_files = fs::read_dir(s.quarantine_dir()).map_or(0, |d| d.count());
        let numbering = fs::read_to_string(dir.join("numbering")).ok();
        let parsed = numbering.as_deref().and_then(|t| {
            let mut it = t.split_whitespace();
            let epoch = u64::from_str_radix(it.next()?, 16).ok()?;
            let next = it.next()?.parse::<u64>().ok()?;
            let owner = it.next()?.to_string();
            Some((epoch, next, owner))
        });
        match parsed {
            Some((epoch, next, owner)) if owner == node && epoch != 0 => {
                s.epoch = epoch;
                s.reserved = next;
            }
            Some((_, _, owner)) if owner != node => {
                s.set_aside_foreign(&owner);
                s.epoch = random_epoch();
            }
            _ => {
                if numbering.is_some() {
                    s.notes.push(
                        "the spool's numbering file is unreadable: starting a new epoch, so the collector does not take new alerts for duplicates".into(),
                    );
                }
                // A spool from before epochs: continue its numbering, in a new epoch.
                if let Some(n) = fs::read_to_string(dir.join("next-seq"))
                    .ok()
                    .and_then(|t| t.trim().parse().ok())
                {
                    s.reserved = n;
                }
                s.epoch = random_epoch();
            }
        }
        s.load_entries();
        s.reserved = s.reserved.max(s.next_seq());
        s.write_numbering();
        s
    }

    /// Moves every entry of another node's spool into the quarantine.
    fn set_aside_foreign(&mut self, owner: &str) {
        let to = self.quarantine_dir().join(format!(
            "foreign-{}-{}",
            owner.replace(['/', '\0'], "_"),
            random_epoch()
        ));
        let mut moved = 0;
        if fs::create_dir_all(&to).is_ok()
            && let Ok(rd) = fs::read_dir(&self.dir)
        {
            for e in rd.flatten() {
                let p = e.path();
                if p.extension().is_some_and(|x| x == "alert" || x == "gap")
                    && fs::rename(&p, to.join(e.file_name())).is_ok()
                {
                    moved += 1;
                }
            }
        }
        self.notes.push(format!(
            "the spool belonged to node {owner:?}, not {:?}: its {moved} entries were moved to {} and this node starts a new epoch",
            self.node,
            to.display()
        ));
    }

    fn load_entries(&mut self) {
        let rd = match fs::read_dir(&self.dir) {
            Ok(rd) => rd,
            Err(e) => {
                self.notes
                    .push(format!("cannot read the spool directory: {e}"));
                return;
            }
        };
        let mut bad = Vec::new();
        for e in rd {
            let e = match e {
                Ok(e) => e,
                Err(e) => {
                    self.notes
                        .push(format!("skipped an unreadable spool entry: {e}"));
                    continue;
                }
            };
            let path = e.path();
            let (Some(stem), Some(ext)) = (
                path.file_stem().and_then(|s| s.to_str()),
                path.extension().and_then(|s| s.to_str()),
            ) else {
                continue;
            };
            let Ok(key) = stem.parse::<u64>() else {
                continue;
            };
            match ext {
                "alert" => match e.metadata() {
                    // A gap under the same key wins: the alert was given up on.
                    Ok(m) if m.len() > 0 && !self.entries.contains_key(&key) => {
                        self.bytes += m.len();
                        self.alerts += 1;
                        self.entries.insert(key, Entry::Alert(m.len()));
                    }
                    Ok(m) if m.len() > 0 => {}
                    _ => bad.push((key, path)),
                },
                "gap" => {
                    let text = fs::read_to_string(&path).unwrap_or_default();
                    let mut it = text.split_whitespace();
                    let to = it.next().and_then(|w| w.parse::<u64>().ok());
                    let missed = it.next().and_then(|w| w.parse::<u64>().ok());
                    match (to, missed) {
                        (Some(to_seq), Some(missed)) if to_seq >= key => {
                            self.put_gap(
                                key,
                                Entry::Gap(Gap {
                                    node: self.node.clone(),
                                    from_seq: key,
                                    to_seq,
                                    missed,
                                    reason: reason_of(it.next()),
                                }),
                            );
                        }
                        _ => bad.push((key, path)),
                    }
                }
                _ => {}
            }
        }
        if !bad.is_empty() {
            self.notes.push(format!(
                "{} empty or unreadable spool entries moved to {}; each is sent as a gap",
                bad.len(),
                self.quarantine_dir().display()
            ));
        }
        for (key, path) in bad {
            self.move_to_quarantine(&path);
            self.quarantined += 1;
            self.insert_gap(key, key, 1, GapReason::SpoolCorrupt);
        }
    }

    /// What opening the spool found, for the log (empty when all was well).
    pub fn notes(&self) -> &[String] {
        &self.notes
    }

    /// Random, created with the spool: this node's numbering is comparable only within it.
    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    /// Starts a new epoch (the numbering goes on): the collector forgets what it knew of this
    /// node's numbering. For a collector whose high-water mark is past anything this node
    /// numbered.
    pub fn new_epoch(&mut self) -> u64 {
        self.epoch = random_epoch();
        self.write_numbering();
        self.epoch
    }

    fn quarantine_dir(&self) -> PathBuf {
        self.dir.join("quarantine")
    }

    fn path_of(&self, key: u64, entry: &Entry) -> PathBuf {
        self.dir.join(match entry {
            Entry::Alert(_) => format!("{key:020}.alert"),
            Entry::Gap(_) => format!("{key:020}.gap"),
        })
    }

    /// Where this node's numbering continues.
    pub fn next_seq(&self) -> u64 {
        let after_entries = self
            .entries
            .iter()
            .next_back()
            .map_or(1, |(k, e)| e.end(*k) + 1);
        self.reserved.max(after_entries)
    }

    fn write_numbering(&mut self) {
        let text = format!("{:016x} {} {}\n", self.epoch, self.reserved, self.node);
        let tmp = self.dir.join(".numbering.tmp");
        let r = (|| {
            let mut f = fs::File::create(&tmp)?;
            f.write_all(text.as_bytes())?;
            f.sync_data()?;
            fs::rename(&tmp, self.dir.join("numbering"))?;
            fs::File::open(&self.dir)?.sync_all()
        })();
        if let Err(e) = r {
            let _ = fs::remove_file(&tmp);
            tracing::warn!(spool = %self.dir.display(), "cannot save the spool's numbering: {e}");
        }
    }

    /// Records that numbers up to `seq` are in use, reserving a block ahead on disk.
    fn reserve(&mut self, seq: u64) {
        if seq + RESERVE / 2 < self.reserved {
            return;
        }
        self.reserved = seq + RESERVE;
        self.write_numbering();
    }

    fn write_alert_file(&mut self, seq: u64, data: &[u8]) -> std::io::Result<u64> {
        let path = self.dir.join(format!("{seq:020}.alert"));
        let mut buf = Vec::with_capacity(HEADER + data.len());
        buf.extend_from_slice(MAGIC);
        buf.extend_from_slice(&(data.len() as u32).to_le_bytes());
        buf.extend_from_slice(&checksum(data).to_le_bytes());
        buf.extend_from_slice(data);
        let r = fs::File::create(&path).and_then(|mut f| {
            f.write_all(&buf)?;
            Ok(f)
        });
        match r {
            Ok(f) => {
                self.unsynced.push(f);
                if self.unsynced.len() >= self.sync_every {
                    self.sync();
                }
                Ok(buf.len() as u64)
            }
            Err(e) => {
                let _ = fs::remove_file(&path);
                Err(e)
            }
        }
    }

    /// Fsyncs what was written since the last call (and the directory).
    pub fn sync(&mut self) {
        if self.unsynced.is_empty() {
            return;
        }
        for f in self.unsynced.drain(..) {
            if let Err(e) = f.sync_data() {
                tracing::warn!(spool = %self.dir.display(), "fsync: {e}");
            }
        }
        if let Ok(d) = fs::File::open(&self.dir) {
            let _ = d.sync_all();
        }
        self.last_sync = Instant::now();
    }

    /// Whether there is something written and not yet fsynced.
    pub fn needs_sync(&self) -> bool {
        !self.unsynced.is_empty()
    }

    /// Spools an encoded alert, evicting the oldest alerts (into a gap) when full. An alert
    /// that cannot be written becomes a counted gap.
    pub fn push_alert(&mut self, seq: u64, data: &[u8]) {
        self.reserve(seq);
        let len = (HEADER + data.len()) as u64;
        if len > self.max_bytes {
            self.evicted += 1;
            self.insert_gap(seq, seq, 1, GapReason::SpoolOverflow);
            return;
        }
        while self.bytes + len > self.max_bytes {
            let Some((&oldest, _)) = self
                .entries
                .iter()
                .find(|(_, e)| matches!(e, Entry::Alert(_)))
            else {
                break;
            };
            self.remove(oldest);
            self.evicted += 1;
            self.insert_gap(oldest, oldest, 1, GapReason::SpoolOverflow);
        }
        match self.write_alert_file(seq, data) {
            Ok(n) => {
                self.bytes += n;
                if let Some(Entry::Alert(old)) = self.entries.insert(seq, Entry::Alert(n)) {
                    self.bytes = self.bytes.saturating_sub(old);
                } else {
                    self.alerts += 1;
                }
            }
            Err(e) => {
                self.write_failed += 1;
                if every_so_often(self.write_failed) {
                    tracing::error!(
                        spool = %self.dir.display(), seq, failures = self.write_failed,
                        "cannot write to the spool, the alert becomes a gap: {e} (free space on the spool's disk, or make it writable)"
                    );
                }
                self.insert_gap(seq, seq, 1, GapReason::SpoolWriteFailed);
            }
        }
    }

    /// Spools a gap (alerts this node could not spool), merged with an adjacent one.
    pub fn push_gap(&mut self, gap: &Gap) {
        self.reserve(gap.to_seq);
        self.insert_gap(gap.from_seq, gap.to_seq, gap.missed, gap.reason);
    }

    /// Inserts a gap, merged with an adjacent one of the same reason. Kept in memory even
    /// when its file cannot be written.
    fn insert_gap(&mut self, from: u64, to: u64, missed: u64, reason: GapReason) {
        let (mut from, mut to, mut missed) = (from, to, missed);
        if let Some((&k, Entry::Gap(g))) = self.entries.range(..from).next_back()
            && g.to_seq + 1 >= from
            && g.reason == reason
        {
            from = k;
            missed += g.missed;
            self.remove(k);
        }
        if let Some((&k, Entry::Gap(g))) = self.entries.range(to + 1..).next()
            && k <= to + 1
            && g.reason == reason
        {
            to = g.to_seq;
            missed += g.missed;
            self.remove(k);
        }
        let path = self.dir.join(format!("{from:020}.gap"));
        let r = fs::File::create(&path).and_then(|mut f| {
            f.write_all(format!("{to} {missed} {}\n", reason_word(reason)).as_bytes())?;
            Ok(f)
        });
        match r {
            Ok(f) => self.unsynced.push(f),
            Err(e) => {
                let _ = fs::remove_file(&path);
                tracing::debug!("gap {from}..{to} kept in memory only: {e}");
            }
        }
        self.put_gap(
            from,
            Entry::Gap(Gap {
                node: self.node.clone(),
                from_seq: from,
                to_seq: to,
                missed,
                reason,
            }),
        );
    }

    /// Indexes a gap; an alert indexed under the same key (a crash between writing one and
    /// removing the other) gives way to it.
    fn put_gap(&mut self, key: u64, gap: Entry) {
        if let Some(Entry::Alert(n)) = self.entries.insert(key, gap) {
            self.bytes = self.bytes.saturating_sub(n);
            self.alerts -= 1;
        }
    }

    fn remove(&mut self, key: u64) {
        let Some(entry) = self.entries.remove(&key) else {
            return;
        };
        if let Entry::Alert(n) = entry {
            self.bytes = self.bytes.saturating_sub(n);
            self.alerts -= 1;
        }
        let path = self.path_of(key, &entry);
        if let Err(e) = fs::remove_file(&path)
            && e.kind() != std::io::ErrorKind::NotFound
        {
            tracing::warn!(path = %path.display(), "cannot remove a spool entry: {e}");
        }
    }

    /// The collector has everything up to `seq`: forget it.
    pub fn ack(&mut self, seq: u64) {
        let done: Vec<u64> = self
            .entries
            .iter()
            .take_while(|(k, e)| e.end(**k) <= seq)
            .map(|(k, _)| *k)
            .collect();
        for k in done {
            self.remove(k);
        }
    }

    /// The first entry that covers numbers after `seq`: what to send next.
    pub fn next_after(&self, seq: u64) -> Option<(u64, Entry)> {
        use std::ops::Bound::{Excluded, Unbounded};
        // Entries do not overlap: the one starting at or before `seq` may reach past it,
        // otherwise the next one starts after it.
        if let Some((k, e)) = self.entries.range(..=seq).next_back()
            && e.end(*k) > seq
        {
            return Some((*k, e.clone()));
        }
        self.entries
            .range((Excluded(seq), Unbounded))
            .next()
            .map(|(k, e)| (*k, e.clone()))
    }

    /// The encoded alert spooled under `key`, read from disk and checked.
    pub fn read_alert(&self, key: u64) -> Result<Vec<u8>, String> {
        let path = self.dir.join(format!("{key:020}.alert"));
        let data = fs::read(&path).map_err(|e| e.to_string())?;
        if data.is_empty() {
            return Err("empty".into());
        }
        if !data.starts_with(MAGIC) {
            // Written before entries had a header: the payload as it is.
            return Ok(data);
        }
        if data.len() < HEADER {
            return Err("truncated header".into());
        }
        let len = u32::from_le_bytes(data[4..8].try_into().expect("4 bytes")) as usize;
        let sum = u32::from_le_bytes(data[8..12].try_into().expect("4 bytes"));
        let payload = &data[HEADER..];
        if payload.len() != len {
            return Err(format!("{} bytes of {len}", payload.len()));
        }
        if checksum(payload) != sum {
            return Err("checksum mismatch".into());
        }
        Ok(payload.to_vec())
    }

    fn move_to_quarantine(&mut self, path: &Path) {
        let qdir = self.quarantine_dir();
        let moved = self.quarantine_files < QUARANTINE_MAX
            && fs::create_dir_all(&qdir).is_ok()
            && path.file_name().is_some_and(|name| {
                let mut to = qdir.join(name);
                to.set_extension(format!(
                    "{}.{:x}",
                    path.extension().and_then(|x| x.to_str()).unwrap_or("entry"),
                    self.epoch
                ));
                fs::rename(path, to).is_ok()
            });
        if moved {
            self.quarantine_files += 1;
        } else {
            let _ = fs::remove_file(path);
        }
    }

    /// Moves the entry `key` aside (it cannot be sent: `why`) and puts a gap in its place;
    /// returns the gap that now covers it.
    pub fn quarantine(&mut self, key: u64, why: &str) -> Gap {
        if let Some(entry) = self.entries.remove(&key) {
            if let Entry::Alert(n) = entry {
                self.bytes = self.bytes.saturating_sub(n);
                self.alerts -= 1;
            }
            let path = self.path_of(key, &entry);
            tracing::warn!(seq = key, path = %path.display(), "spooled alert unusable ({why}): moved to quarantine, sent as a gap");
            self.move_to_quarantine(&path);
        }
        self.quarantined += 1;
        self.insert_gap(key, key, 1, GapReason::SpoolCorrupt);
        match self.entries.range(..=key).next_back() {
            Some((_, Entry::Gap(g))) if g.to_seq >= key => g.clone(),
            _ => Gap {
                node: self.node.clone(),
                from_seq: key,
                to_seq: key,
                missed: 1,
                reason: GapReason::SpoolCorrupt,
            },
        }
    }

    /// The first sequence number still spooled.
    pub fn first(&self) -> Option<u64> {
        self.entries.keys().next().copied()
    }

    /// Alerts waiting for an acknowledgement.
    pub fn backlog(&self) -> u64 {
        self.alerts
    }

    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// Alerts evicted because the spool was full, since this process started.
    pub fn evicted(&self) -> u64 {
        self.evicted
    }

    /// Alerts that could not be written, since this process started.
    pub fn write_failed(&self) -> u64 {
        self.write_failed
    }

    /// Entries moved aside, since this process started.
    pub fn quarantined(&self) -> u64 {
        self.quarantined
    }

    /// Every alert the spool lost since this process started (each inside a gap).
    pub fn lost(&self) -> u64 {
        self.evicted + self.write_failed + self.quarantined
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tmp(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("osprey-spool-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        d
    }

    fn data(n: usize) -> Vec<u8> {
        vec![7u8; n]
    }

    #[test]
    fn survives_reopening_and_forgets_what_is_acknowledged() {
        let d = tmp("reopen");
        let mut s = Spool::open(&d, "n", 1000, 4);
        let epoch = s.epoch();
        assert_ne!(epoch, 0);
        assert_eq!(s.next_seq(), 1);
        for seq in 1..=5 {
            s.push_alert(seq, &data(10));
        }
        s.ack(2);
        drop(s);
        let s = Spool::open(&d, "n", 1000, 4);
        assert!(s.notes().is_empty(), "{:?}", s.notes());
        assert_eq!(s.epoch(), epoch);
        assert_eq!(s.backlog(), 3);
        assert_eq!(s.first(), Some(3));
        assert_eq!(s.bytes(), 3 * (10 + HEADER as u64));
        // Numbering continues past what was reserved, never reusing a number.
        assert!(s.next_seq() > 5);
        assert_eq!(s.next_after(3).map(|(k, _)| k), Some(4));
        assert_eq!(s.read_alert(4).unwrap(), data(10));
        fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn overflow_evicts_the_oldest_into_one_gap_with_the_exact_count() {
        let d = tmp("overflow");
        let per = (10 + HEADER) as u64;
        let mut s = Spool::open(&d, "n", 5 * per, 64);
        for seq in 1..=12 {
            s.push_alert(seq, &data(10));
        }
        // 5 fit; 1..=7 evicted into one gap.
        assert_eq!(s.backlog(), 5);
        assert_eq!(s.evicted(), 7);
        match s.next_after(0) {
            Some((1, Entry::Gap(g))) => {
                assert_eq!((g.from_seq, g.to_seq, g.missed), (1, 7, 7));
                assert_eq!(g.reason, GapReason::SpoolOverflow);
            }
            other => panic!("expected the overflow gap first, got {other:?}"),
        }
        assert_eq!(s.next_after(7).map(|(k, _)| k), Some(8));
        // The gap survives a restart too, and goes once acknowledged.
        drop(s);
        let mut s = Spool::open(&d, "n", 5 * per, 64);
        assert!(matches!(s.next_after(0), Some((1, Entry::Gap(_)))));
        s.ack(7);
        assert_eq!(s.first(), Some(8));
        fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn bad_entries_are_quarantined_into_gaps_and_a_wiped_numbering_gets_a_new_epoch() {
        let d = tmp("corrupt");
        let mut s = Spool::open(&d, "n", 1 << 20, 1);
        let epoch = s.epoch();
        for seq in 1..=4 {
            s.push_alert(seq, &data(20));
        }
        drop(s);
        // An empty entry (found at open) and a truncated one (found when read).
        fs::write(d.join(format!("{:020}.alert", 2)), b"").unwrap();
        let p3 = d.join(format!("{:020}.alert", 3));
        let whole = fs::read(&p3).unwrap();
        fs::write(&p3, &whole[..whole.len() / 2]).unwrap();
        let mut s = Spool::open(&d, "n", 1 << 20, 1);
        assert_eq!(s.epoch(), epoch);
        assert_eq!(s.notes().len(), 1, "{:?}", s.notes());
        assert!(
            matches!(s.next_after(1), Some((2, Entry::Gap(ref g))) if g.reason == GapReason::SpoolCorrupt)
        );
        assert!(s.read_alert(3).is_err());
        let g = s.quarantine(3, "truncated");
        assert_eq!((g.from_seq, g.to_seq, g.missed), (2, 3, 2));
        assert_eq!(s.quarantined(), 2);
        assert_eq!(s.backlog(), 2);
        assert_eq!(fs::read_dir(d.join("quarantine")).unwrap().count(), 2);
        drop(s);
        // A numbering file emptied: a new epoch, so numbering from the entries on is new.
        fs::write(d.join("numbering"), b"").unwrap();
        let s = Spool::open(&d, "n", 1 << 20, 1);
        assert_ne!(s.epoch(), epoch);
        assert!(s.next_seq() > 4);
        drop(s);
        // Another node's spool: set aside whole.
        let s = Spool::open(&d, "other", 1 << 20, 1);
        assert_eq!(s.backlog(), 0);
        assert_eq!(s.next_seq(), 1);
        assert!(s.notes()[0].contains("belonged to node"), "{:?}", s.notes());
        fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn an_unusable_directory_turns_every_alert_into_a_counted_gap() {
        let d = tmp("unusable");
        fs::write(&d, b"a file, not a directory").unwrap();
        let mut s = Spool::open(&d.join("spool"), "n", 1 << 20, 1);
        assert!(!s.notes().is_empty());
        for seq in 1..=3 {
            s.push_alert(seq, &data(10));
        }
        assert_eq!(s.write_failed(), 3);
        assert_eq!(s.lost(), 3);
        match s.next_after(0) {
            Some((1, Entry::Gap(g))) => {
                assert_eq!((g.to_seq, g.missed), (3, 3));
                assert_eq!(g.reason, GapReason::SpoolWriteFailed);
            }
            other => panic!("{other:?}"),
        }
        fs::remove_file(&d).unwrap();
    }
}
