//! Alerts as JSON lines in a file with size-based rotation (`alerts.jsonl`, `alerts.jsonl.1`,
//! ...): Falco's JSON shape, one alert per line, for log shippers.

use std::{
    fs::{File, OpenOptions},
    io::Write,
    path::{Path, PathBuf},
};

use osprey_engine::output::{Alert, format_json};

use super::{Sink, SinkError};

/// The file sink: each alert as one line of Falco's JSON.
pub struct FileSink {
    file: RotatingFile,
}

impl FileSink {
    pub fn new(file: RotatingFile) -> Self {
        Self { file }
    }
}

impl Sink for FileSink {
    fn name(&self) -> &'static str {
        "file"
    }

    fn write(&mut self, a: &Alert) -> Result<(), SinkError> {
        Ok(self.file.write_line(&format_json(a))?)
    }

    fn flush(&mut self) -> Result<(), SinkError> {
        Ok(self.file.flush()?)
    }
}

/// Appends lines to a file and rotates it when it would exceed `max_bytes`, keeping `keep`
/// old files.
#[derive(Debug)]
pub struct RotatingFile {
    path: PathBuf,
    max_bytes: u64,
    keep: u32,
    file: File,
    size: u64,
}

impl RotatingFile {
    pub fn open(path: &Path, max_bytes: u64, keep: u32) -> std::io::Result<Self> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)?;
        }
        let file = OpenOptions::new().create(true).append(true).open(path)?;
        let size = file.metadata()?.len();
        Ok(Self {
            path: path.to_path_buf(),
            max_bytes: max_bytes.max(1),
            keep,
            file,
            size,
        })
    }

    fn rotated(&self, n: u32) -> PathBuf {
        let mut p = self.path.clone().into_os_string();
        p.push(format!(".{n}"));
        PathBuf::from(p)
    }

    fn rotate(&mut self) -> std::io::Result<()> {
        self.file.flush()?;
        if self.keep == 0 {
            std::fs::remove_file(&self.path).ok();
        } else {
            std::fs::remove_file(self.rotated(self.keep)).ok();
            for n in (1..self.keep).rev() {
                std::fs::rename(self.rotated(n), self.rotated(n + 1)).ok();
            }
            std::fs::rename(&self.path, self.rotated(1))?;
        }
        self.file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)?;
        self.size = 0;
        Ok(())
    }

    /// Writes one line (a newline is added).
    pub fn write_line(&mut self, line: &str) -> std::io::Result<()> {
        let len = line.len() as u64 + 1;
        if self.size > 0 && self.size + len > self.max_bytes {
            self.rotate()?;
        }
        self.file.write_all(line.as_bytes())?;
        self.file.write_all(b"\n")?;
        self.size += len;
        Ok(())
    }

    pub fn flush(&mut self) -> std::io::Result<()> {
        self.file.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rotates_by_size_and_keeps_n() {
        let dir = std::env::temp_dir().join(format!("osprey-rot-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let path = dir.join("alerts.jsonl");
        let mut f = RotatingFile::open(&path, 100, 2).unwrap();
        for i in 0..20 {
            f.write_line(&format!("{{\"n\":\"{i:04}\",\"pad\":\"xxxxxxxxxx\"}}"))
                .unwrap();
        }
        f.flush().unwrap();
        let main = std::fs::read_to_string(&path).unwrap();
        assert!(main.len() <= 100, "{}", main.len());
        assert!(main.ends_with("\"n\":\"0019\",\"pad\":\"xxxxxxxxxx\"}\n"));
        assert!(std::fs::metadata(f.rotated(1)).is_ok());
        assert!(std::fs::metadata(f.rotated(2)).is_ok());
        assert!(std::fs::metadata(f.rotated(3)).is_err(), "keeps two");
        // Every line is whole.
        for p in [path.clone(), f.rotated(1), f.rotated(2)] {
            for l in std::fs::read_to_string(p).unwrap().lines() {
                serde_json::from_str::<serde_json::Value>(l).unwrap();
            }
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
