//! The guest's whole root file system: an uncompressed cpio (newc) archive, written here, with
//! the static busybox, the release `osprey` and the `actions` example with the shared libraries
//! `ldd` lists for them, the rules, and `/init` (guest.sh). No modules: the kernels are booted
//! for their BTF, tracepoints and verifier, all built in.

use std::{
    collections::BTreeMap,
    fs,
    io::Write as _,
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context as _, Result, bail};

use crate::proc;

/// What goes into the archive, by path inside the guest.
#[derive(Default)]
pub struct Tree {
    entries: BTreeMap<String, Entry>,
}

enum Entry {
    Dir,
    File { data: Vec<u8>, mode: u32 },
    Symlink(String),
}

impl Tree {
    /// A file with its parent directories.
    pub fn file(&mut self, path: &str, data: Vec<u8>, mode: u32) {
        self.parents(path);
        self.entries
            .insert(path.to_string(), Entry::File { data, mode });
    }

    /// A file copied from the host, following symlinks.
    pub fn copy(&mut self, path: &str, from: &Path, mode: u32) -> Result<()> {
        let data = fs::read(from).with_context(|| format!("reading {}", from.display()))?;
        self.file(path, data, mode);
        Ok(())
    }

    pub fn symlink(&mut self, path: &str, target: &str) {
        self.parents(path);
        self.entries
            .insert(path.to_string(), Entry::Symlink(target.to_string()));
    }

    pub fn dir(&mut self, path: &str) {
        self.parents(path);
        self.entries.insert(path.to_string(), Entry::Dir);
    }

    fn parents(&mut self, path: &str) {
        let mut p = Path::new(path).parent();
        while let Some(dir) = p.filter(|d| !d.as_os_str().is_empty() && *d != Path::new("/")) {
            let key = dir.to_string_lossy().into_owned();
            self.entries.entry(key).or_insert(Entry::Dir);
            p = dir.parent();
        }
    }

    /// `binary` without its debug information (a release build carries 80 MB of it, which
    /// the guest would copy into memory at every boot) and the shared libraries it loads, at
    /// their host paths.
    pub fn binary_with_libs(&mut self, path: &str, binary: &Path) -> Result<()> {
        let stripped = binary.with_extension("stripped");
        proc::output(
            Command::new("strip")
                .args(["--strip-debug", "-o"])
                .arg(&stripped)
                .arg(binary),
            &format!("strip --strip-debug {}", binary.display()),
        )?;
        self.copy(path, &stripped, 0o755)?;
        let _ = fs::remove_file(&stripped);
        for lib in shared_libraries(binary)? {
            let key = lib.to_string_lossy().into_owned();
            if !self.entries.contains_key(&key) {
                self.copy(&key, &lib, 0o755)?;
            }
        }
        Ok(())
    }

    /// The archive: parents before children (sorted paths), then the trailer.
    pub fn write(&self, out: &Path) -> Result<()> {
        let mut buf = Vec::new();
        for (ino, (path, entry)) in self.entries.iter().enumerate() {
            let name = path.trim_start_matches('/');
            let (mode, data): (u32, &[u8]) = match entry {
                Entry::Dir => (0o040_755, &[]),
                Entry::File { data, mode } => (0o100_000 | mode, data),
                Entry::Symlink(target) => (0o120_777, target.as_bytes()),
            };
            cpio_entry(&mut buf, ino as u32 + 1, name, mode, data);
        }
        cpio_entry(&mut buf, 0, "TRAILER!!!", 0, &[]);
        let mut f = fs::File::create(out).with_context(|| format!("creating {}", out.display()))?;
        f.write_all(&buf)
            .with_context(|| format!("writing {}", out.display()))
    }
}

/// One newc record: "070701", 13 eight-digit hex fields, the name (NUL-terminated) and the data,
/// each padded to four bytes.
fn cpio_entry(buf: &mut Vec<u8>, ino: u32, name: &str, mode: u32, data: &[u8]) {
    let nlink = if mode & 0o170_000 == 0o040_000 { 2 } else { 1 };
    let fields = [
        ino,
        mode,
        0,
        0,
        nlink,
        0,
        data.len() as u32,
        0,
        0,
        0,
        0,
        name.len() as u32 + 1,
        0,
    ];
    buf.extend_from_slice(b"070701");
    for f in fields {
        buf.extend_from_slice(format!("{f:08x}").as_bytes());
    }
    buf.extend_from_slice(name.as_bytes());
    buf.push(0);
    pad4(buf);
    buf.extend_from_slice(data);
    pad4(buf);
}

fn pad4(buf: &mut Vec<u8>) {
    while !buf.len().is_multiple_of(4) {
        buf.push(0);
    }
}

/// The libraries `ldd` resolves for `binary`, including the dynamic loader.
fn shared_libraries(binary: &Path) -> Result<Vec<PathBuf>> {
    let out = proc::output(
        Command::new("ldd").arg(binary),
        &format!("ldd {}", binary.display()),
    );
    let out = match out {
        Ok(out) => out,
        // ldd fails on a static binary: it needs nothing.
        Err(_) => return Ok(Vec::new()),
    };
    let libs = parse_ldd(&out);
    if libs.iter().any(|l| !l.is_absolute()) {
        bail!(
            "ldd {} lists a library it cannot find:\n{out}",
            binary.display()
        );
    }
    Ok(libs)
}

fn parse_ldd(out: &str) -> Vec<PathBuf> {
    out.lines()
        .filter_map(|l| {
            let l = l.trim();
            if l.contains("not found") {
                return Some(PathBuf::from(l.split_whitespace().next()?));
            }
            let path = match l.split_once("=>") {
                Some((_, rest)) => rest.split_whitespace().next()?,
                None => l.split_whitespace().next()?,
            };
            path.starts_with('/').then(|| PathBuf::from(path))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ldd_output_gives_the_libraries_and_the_loader() {
        let out = "\tlinux-vdso.so.1 (0x00007ffd)\n\
                   \tlibgcc_s.so.1 => /lib/x86_64-linux-gnu/libgcc_s.so.1 (0x00007f)\n\
                   \tlibc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x00007f)\n\
                   \t/lib64/ld-linux-x86-64.so.2 (0x00007f)\n";
        assert_eq!(
            parse_ldd(out),
            [
                PathBuf::from("/lib/x86_64-linux-gnu/libgcc_s.so.1"),
                PathBuf::from("/lib/x86_64-linux-gnu/libc.so.6"),
                PathBuf::from("/lib64/ld-linux-x86-64.so.2"),
            ]
        );
        assert_eq!(
            parse_ldd("\tlibfoo.so => not found\n"),
            [PathBuf::from("libfoo.so")]
        );
    }

    #[test]
    fn cpio_records_are_aligned_and_end_with_the_trailer() {
        let mut t = Tree::default();
        t.file("/bin/x", b"abc".to_vec(), 0o755);
        t.symlink("/bin/sh", "busybox");
        let dir = std::env::temp_dir().join(format!("xtask-cpio-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let out = dir.join("a.cpio");
        t.write(&out).unwrap();
        let bytes = fs::read(&out).unwrap();
        assert!(bytes.starts_with(b"070701"));
        assert_eq!(bytes.len() % 4, 0);
        let text = String::from_utf8_lossy(&bytes);
        // The parent directory comes first, then its entries, then the trailer.
        let (bin, sh, x, end) = (
            text.find("bin\0").unwrap(),
            text.find("bin/sh\0").unwrap(),
            text.find("bin/x\0").unwrap(),
            text.find("TRAILER!!!").unwrap(),
        );
        assert!(bin < sh && sh < x && x < end, "{text:?}");
        assert!(text[sh..x].contains("busybox"), "{text:?}");
        fs::remove_dir_all(&dir).unwrap();
    }
}
