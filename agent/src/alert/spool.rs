//! The agent's on-disk spool: alerts not yet acknowledged by the collector, one file each, so a
//! collector restart, a network cut or an agent restart loses nothing within `max_bytes`.
//! What does not fit evicts the oldest alerts, and the spool keeps a [`Gap`] in their place
//! with the exact count, which is sent like an alert. The spool also remembers the node's
//! sequence numbering, so it continues across agent restarts.

use std::{
    collections::BTreeMap,
    fs,
    io::Write as _,
    path::{Path, PathBuf},
    sync::Arc,
};

use super::{Gap, GapReason};

#[derive(Debug, thiserror::Error)]
pub enum SpoolError {
    #[error("spool directory {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> SpoolError + '_ {
    move |source| SpoolError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// A spooled item, keyed by its first sequence number.
#[derive(Clone, Debug, PartialEq)]
pub enum Entry {
    /// An encoded alert.
    Alert(Arc<[u8]>),
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

pub struct Spool {
    dir: PathBuf,
    node: String,
    max_bytes: u64,
    entries: BTreeMap<u64, Entry>,
    bytes: u64,
    evicted: u64,
    reserved: u64,
}

impl Spool {
    /// Opens (creating) `dir` and loads what an earlier run left in it.
    pub fn open(dir: &Path, node: &str, max_bytes: u64) -> Result<Spool, SpoolError> {
        fs::create_dir_all(dir).map_err(io(dir))?;
        let mut s = Spool {
            dir: dir.to_path_buf(),
            node: node.to_string(),
            max_bytes,
            entries: BTreeMap::new(),
            bytes: 0,
            evicted: 0,
            reserved: 0,
        };
        for e in fs::read_dir(dir).map_err(io(dir))? {
            let path = e.map_err(io(dir))?.path();
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
                "alert" => {
                    let data: Arc<[u8]> = fs::read(&path).map_err(io(&path))?.into();
                    s.bytes += data.len() as u64;
                    s.entries.insert(key, Entry::Alert(data));
                }
                "gap" => {
                    let text = fs::read_to_string(&path).map_err(io(&path))?;
                    let mut it = text.split_whitespace().map(|w| w.parse::<u64>().ok());
                    if let (Some(Some(to_seq)), Some(Some(missed))) = (it.next(), it.next()) {
                        s.entries.insert(
                            key,
                            Entry::Gap(Gap {
                                node: node.to_string(),
                                from_seq: key,
                                to_seq,
                                missed,
                                reason: GapReason::SpoolOverflow,
                            }),
                        );
                    }
                }
                _ => {}
            }
        }
        s.reserved = fs::read_to_string(dir.join("next-seq"))
            .ok()
            .and_then(|t| t.trim().parse().ok())
            .unwrap_or(1);
        Ok(s)
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

    /// Records that numbers up to `seq` are in use, reserving a block ahead on disk.
    pub fn reserve(&mut self, seq: u64) -> Result<(), SpoolError> {
        if seq + RESERVE / 2 < self.reserved {
            return Ok(());
        }
        self.reserved = seq + RESERVE;
        self.write_file("next-seq", self.reserved.to_string().as_bytes())
    }

    fn write_file(&self, name: &str, data: &[u8]) -> Result<(), SpoolError> {
        let tmp = self.dir.join(format!(".{name}.tmp"));
        let path = self.dir.join(name);
        let mut f = fs::File::create(&tmp).map_err(io(&tmp))?;
        f.write_all(data).map_err(io(&tmp))?;
        drop(f);
        fs::rename(&tmp, &path).map_err(io(&path))
    }

    /// Spools an encoded alert, evicting the oldest alerts (into a gap) when full.
    pub fn push_alert(&mut self, seq: u64, data: Arc<[u8]>) -> Result<(), SpoolError> {
        self.reserve(seq)?;
        let len = data.len() as u64;
        if len > self.max_bytes {
            self.evicted += 1;
            return self.insert_gap(seq, seq, 1);
        }
        while self.bytes + len > self.max_bytes {
            let Some((&oldest, _)) = self
                .entries
                .iter()
                .find(|(_, e)| matches!(e, Entry::Alert(_)))
            else {
                break;
            };
            self.remove(oldest)?;
            self.evicted += 1;
            self.insert_gap(oldest, oldest, 1)?;
        }
        self.write_file(&format!("{seq:020}.alert"), &data)?;
        self.bytes += len;
        self.entries.insert(seq, Entry::Alert(data));
        Ok(())
    }

    /// Spools a gap (alerts this node could not spool), merged with an adjacent one.
    pub fn push_gap(&mut self, gap: &Gap) -> Result<(), SpoolError> {
        self.reserve(gap.to_seq)?;
        self.insert_gap(gap.from_seq, gap.to_seq, gap.missed)
    }

    fn insert_gap(&mut self, from: u64, to: u64, missed: u64) -> Result<(), SpoolError> {
        let (mut from, mut to, mut missed) = (from, to, missed);
        // Merge with the gap just before and the one just after, when nothing lies between.
        if let Some((&k, Entry::Gap(g))) = self.entries.range(..from).next_back()
            && g.to_seq + 1 >= from
        {
            from = k;
            missed += g.missed;
            self.remove(k)?;
        }
        if let Some((&k, Entry::Gap(g))) = self.entries.range(to + 1..).next()
            && k <= to + 1
        {
            to = g.to_seq;
            missed += g.missed;
            self.remove(k)?;
        }
        self.write_file(
            &format!("{from:020}.gap"),
            format!("{to} {missed}\n").as_bytes(),
        )?;
        self.entries.insert(
            from,
            Entry::Gap(Gap {
                node: self.node.clone(),
                from_seq: from,
                to_seq: to,
                missed,
                reason: GapReason::SpoolOverflow,
            }),
        );
        Ok(())
    }

    fn remove(&mut self, key: u64) -> Result<(), SpoolError> {
        let name = match self.entries.remove(&key) {
            Some(Entry::Alert(d)) => {
                self.bytes -= d.len() as u64;
                format!("{key:020}.alert")
            }
            Some(Entry::Gap(_)) => format!("{key:020}.gap"),
            None => return Ok(()),
        };
        let path = self.dir.join(name);
        match fs::remove_file(&path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(io(&path)(e)),
            _ => Ok(()),
        }
    }

    /// The collector has everything up to `seq`: forget it.
    pub fn ack(&mut self, seq: u64) -> Result<(), SpoolError> {
        let done: Vec<u64> = self
            .entries
            .iter()
            .take_while(|(k, e)| e.end(**k) <= seq)
            .map(|(k, _)| *k)
            .collect();
        for k in done {
            self.remove(k)?;
        }
        Ok(())
    }

    /// The first entry that covers numbers after `seq`: what to send next.
    pub fn next_after(&self, seq: u64) -> Option<(u64, &Entry)> {
        self.entries
            .iter()
            .find(|(k, e)| e.end(**k) > seq)
            .map(|(k, e)| (*k, e))
    }

    /// The first sequence number still spooled.
    pub fn first(&self) -> Option<u64> {
        self.entries.keys().next().copied()
    }

    /// Alerts waiting for an acknowledgement.
    pub fn backlog(&self) -> u64 {
        self.entries
            .values()
            .filter(|e| matches!(e, Entry::Alert(_)))
            .count() as u64
    }

    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// Alerts evicted because the spool was full, since this process started.
    pub fn evicted(&self) -> u64 {
        self.evicted
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

    fn data(n: usize) -> Arc<[u8]> {
        vec![7u8; n].into()
    }

    #[test]
    fn survives_reopening_and_forgets_what_is_acknowledged() {
        let d = tmp("reopen");
        let mut s = Spool::open(&d, "n", 1000).unwrap();
        assert_eq!(s.next_seq(), 1);
        for seq in 1..=5 {
            s.push_alert(seq, data(10)).unwrap();
        }
        s.ack(2).unwrap();
        drop(s);
        let s = Spool::open(&d, "n", 1000).unwrap();
        assert_eq!(s.backlog(), 3);
        assert_eq!(s.first(), Some(3));
        assert_eq!(s.bytes(), 30);
        // Numbering continues past what was reserved, never reusing a number.
        assert!(s.next_seq() > 5);
        assert_eq!(s.next_after(3).map(|(k, _)| k), Some(4));
        fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn overflow_evicts_the_oldest_into_one_gap_with_the_exact_count() {
        let d = tmp("overflow");
        let mut s = Spool::open(&d, "n", 50).unwrap();
        for seq in 1..=12 {
            s.push_alert(seq, data(10)).unwrap();
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
        let mut s = Spool::open(&d, "n", 50).unwrap();
        assert!(matches!(s.next_after(0), Some((1, Entry::Gap(_)))));
        s.ack(7).unwrap();
        assert_eq!(s.first(), Some(8));
        fs::remove_dir_all(&d).unwrap();
    }
}
