//! What `rustc +nightly -vV` says about the nightly toolchain.

use anyhow::{Context as _, Result, anyhow};

/// The parts of `rustc -vV` that the bpf-linker build depends on.
#[derive(Debug, PartialEq, Eq)]
pub struct RustcInfo {
    /// Names this exact build, e.g. `nightly-2026-05-19-e50aa6fba`, so that a new nightly
    /// (and so a new libLLVM) gets a bpf-linker of its own.
    pub id: String,
    /// LLVM major version; bpf-linker's feature is `llvm-<major>`.
    pub llvm_major: u32,
    /// Host target triple.
    pub host: String,
}

impl RustcInfo {
    pub fn parse(verbose_version: &str) -> Result<Self> {
        let field = |name: &str| {
            verbose_version
                .lines()
                .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))
                .map(str::trim)
                .filter(|v| !v.is_empty())
                .ok_or_else(|| anyhow!("no `{name}:` line in `rustc -vV` output"))
        };
        let release = field("release")?;
        // "1.97.0-nightly" -> "nightly", "1.95.0" -> "stable", "1.96.0-beta.3" -> "beta.3".
        let channel = release.split_once('-').map_or("stable", |(_, c)| c);
        let date = field("commit-date")?;
        let hash = field("commit-hash")?;
        let short_hash = hash.get(..9).unwrap_or(hash);
        let llvm = field("LLVM version")?;
        let llvm_major = llvm
            .split('.')
            .next()
            .and_then(|m| m.parse().ok())
            .with_context(|| format!("cannot read the LLVM major version from `{llvm}`"))?;
        Ok(Self {
            id: format!("{channel}-{date}-{short_hash}"),
            llvm_major,
            host: field("host")?.to_owned(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NIGHTLY: &str = "rustc 1.97.0-nightly (e50aa6fba 2026-05-19)
binary: rustc
commit-hash: e50aa6fba4e63ab34c72bf9acfd2c307c1155d1a
commit-date: 2026-05-19
host: x86_64-unknown-linux-gnu
release: 1.97.0-nightly
LLVM version: 22.1.4
";

    #[test]
    fn nightly_id_and_llvm_major() {
        let info = RustcInfo::parse(NIGHTLY).unwrap();
        assert_eq!(
            info,
            RustcInfo {
                id: "nightly-2026-05-19-e50aa6fba".into(),
                llvm_major: 22,
                host: "x86_64-unknown-linux-gnu".into(),
            }
        );
    }

    #[test]
    fn another_nightly_gets_another_id() {
        let next = NIGHTLY
            .replace(
                "e50aa6fba4e63ab34c72bf9acfd2c307c1155d1a",
                "0123456789abcdef",
            )
            .replace("2026-05-19", "2026-05-20")
            .replace("22.1.4", "23.0.0");
        let info = RustcInfo::parse(&next).unwrap();
        assert_eq!(info.id, "nightly-2026-05-20-012345678");
        assert_eq!(info.llvm_major, 23);
    }

    #[test]
    fn stable_release_has_stable_channel() {
        let stable = NIGHTLY.replace("release: 1.97.0-nightly", "release: 1.95.0");
        assert!(RustcInfo::parse(&stable).unwrap().id.starts_with("stable-"));
    }

    #[test]
    fn missing_llvm_line_is_an_error() {
        let err = RustcInfo::parse(&NIGHTLY.replace("LLVM version: 22.1.4\n", "")).unwrap_err();
        assert!(err.to_string().contains("LLVM version"), "{err}");
    }

    #[test]
    fn unparsable_llvm_version_is_an_error() {
        let bad = NIGHTLY.replace("LLVM version: 22.1.4", "LLVM version: unknown");
        assert!(RustcInfo::parse(&bad).is_err());
    }
}
