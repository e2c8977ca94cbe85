//! The set-up every subcommand runs first: rust-src for nightly and a bpf-linker built against
//! nightly's own libLLVM (see shared BUILD-CHAIN.md), plus, for tests, the system packages and
//! mounts they use. Each piece is checked first and only done when missing.

use std::{
    env,
    ffi::OsString,
    fs,
    os::unix::fs::symlink,
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context as _, Result, bail};

use crate::{proc, rustc::RustcInfo, system};

const BPF_LINKER_VERSION: &str = "0.13.0";

/// How much to set up.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// What building the agent needs.
    Build,
    /// Also what the tests need: packages, tracefs, container configuration.
    Full,
}

/// What later steps need from the set-up.
pub struct Env {
    root: PathBuf,
    /// PATH with bpf-linker's directory first.
    path: OsString,
    /// An absolute CARGO_TARGET_DIR when the caller set one.
    target_dir: Option<PathBuf>,
    /// Host target triple.
    pub host: String,
}

impl Env {
    /// A `cargo` command in the workspace root that finds bpf-linker.
    pub fn cargo(&self) -> Command {
        let mut cmd = Command::new("cargo");
        cmd.current_dir(&self.root).env("PATH", &self.path);
        if let Some(dir) = &self.target_dir {
            cmd.env("CARGO_TARGET_DIR", dir);
        }
        cmd
    }

    /// Where cargo puts its output: `CARGO_TARGET_DIR` if set, else `<root>/target`.
    pub fn target_dir(&self) -> PathBuf {
        self.target_dir
            .clone()
            .unwrap_or_else(|| self.root.join("target"))
    }

    pub fn root(&self) -> &Path {
        &self.root
    }
}

pub fn setup(root: &Path, scope: Scope) -> Result<Env> {
    let nightly = nightly_info()?;
    let sysroot = PathBuf::from(
        proc::output(
            Command::new("rustc").args(["+nightly", "--print", "sysroot"]),
            "rustc +nightly --print sysroot",
        )?
        .trim(),
    );
    ensure_rust_src(&sysroot)?;
    let linker_bin = ensure_bpf_linker(&nightly, &sysroot)?;

    if scope == Scope::Full {
        system::ensure_test_deps()?;
    }

    let mut paths = vec![linker_bin];
    paths.extend(env::split_paths(&env::var_os("PATH").unwrap_or_default()));
    let path = env::join_paths(paths).context("PATH holds a directory with a `:`")?;
    // Cargo reads a relative CARGO_TARGET_DIR against its working directory: the caller's, not
    // the workspace root we start cargo in.
    let target_dir = env::var_os("CARGO_TARGET_DIR")
        .filter(|d| !d.is_empty())
        .map(|d| env::current_dir().unwrap_or_default().join(d));
    Ok(Env {
        root: root.to_owned(),
        path,
        target_dir,
        host: nightly.host,
    })
}

fn nightly_info() -> Result<RustcInfo> {
    let out = Command::new("rustc")
        .args(["+nightly", "-vV"])
        .env_remove("RUST_BACKTRACE")
        .output();
    match out {
        Ok(out) if out.status.success() => RustcInfo::parse(&String::from_utf8_lossy(&out.stdout)),
        Ok(out) => bail!(
            "the nightly Rust toolchain is needed to build the kernel programs, and \
             `rustc +nightly -vV` failed:\n{}\nInstall it with \
             `rustup toolchain install nightly --profile minimal --component rust-src` \
             (these machines come with it preinstalled)",
            // rustup's own message, without the backtrace it adds under RUST_BACKTRACE=1.
            String::from_utf8_lossy(&out.stderr)
                .lines()
                .take_while(|l| !l.trim().is_empty())
                .collect::<Vec<_>>()
                .join("\n")
        ),
        Err(e) => bail!(
            "cannot run `rustc` ({e}); install Rust with rustup and make sure ~/.cargo/bin is \
             on PATH"
        ),
    }
}

/// `-Z build-std=core` for bpfel-unknown-none (a tier-3 target) needs nightly's library source.
fn ensure_rust_src(sysroot: &Path) -> Result<()> {
    if sysroot.join("lib/rustlib/src/rust/library/core").is_dir() {
        proc::step("rust-src for nightly: present");
        return Ok(());
    }
    proc::step("rust-src for nightly: installing");
    proc::run(
        Command::new("rustup").args(["component", "add", "rust-src", "--toolchain", "nightly"]),
        "installing rust-src for nightly (needed for -Z build-std=core)",
    )
}

/// Returns the directory holding a working bpf-linker, building it first if needed.
fn ensure_bpf_linker(nightly: &RustcInfo, sysroot: &Path) -> Result<PathBuf> {
    let cache = cache_dir()?;
    let prefix = cache.join(format!("llvm-{}", nightly.id));
    let install_root = cache.join(format!("bpf-linker-{BPF_LINKER_VERSION}-{}", nightly.id));
    let bin_dir = install_root.join("bin");
    let bin = bin_dir.join("bpf-linker");

    // The binary finds libLLVM through an rpath into the prefix, so the links come first: they
    // repair a cached build whose links went stale.
    link_nightly_llvm(&sysroot.join("lib"), &prefix.join("lib"))?;

    let what = format!(
        "bpf-linker {BPF_LINKER_VERSION} (LLVM {} from {})",
        nightly.llvm_major, nightly.id
    );
    if works(&bin) {
        proc::step(format!("{what}: cached"));
        return Ok(bin_dir);
    }

    proc::step(format!("{what}: building, about a minute, once"));
    let features = format!("llvm-{}", nightly.llvm_major);
    let install = |locked: bool| {
        let mut cmd = Command::new("cargo");
        cmd.arg("install")
            .args(["bpf-linker", "--version", BPF_LINKER_VERSION, "--force"])
            .args(locked.then_some("--locked"))
            .args(["--no-default-features", "--features", &features, "--root"])
            .arg(&install_root)
            .env("LLVM_PREFIX", &prefix)
            // A temporary build directory of its own, not the workspace's (which may be locked
            // by a build that is waiting for this linker).
            .env_remove("CARGO_TARGET_DIR")
            // Outside the workspace, so that its .cargo/config.toml plays no part.
            .current_dir(&cache);
        cmd
    };
    if proc::run(&mut install(true), "cargo install bpf-linker --locked").is_err() {
        proc::step("bpf-linker: retrying without --locked");
        proc::run(&mut install(false), "cargo install bpf-linker")?;
    }
    if !works(&bin) {
        bail!(
            "{} was built but `--version` fails; check the libLLVM links in {}",
            bin.display(),
            prefix.join("lib").display()
        );
    }
    Ok(bin_dir)
}

fn works(bin: &Path) -> bool {
    Command::new(bin)
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
}

/// Links nightly's `libLLVM.so.<soname>` into `<prefix>/lib` under its own name (what the
/// built binary loads) and as `libLLVM.so` (what bpf-linker's build script looks for).
fn link_nightly_llvm(nightly_lib: &Path, prefix_lib: &Path) -> Result<()> {
    let mut libs: Vec<PathBuf> = fs::read_dir(nightly_lib)
        .with_context(|| format!("reading {}", nightly_lib.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.is_file()
                && p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with("libLLVM.so."))
        })
        .collect();
    libs.sort();
    let Some(first) = libs.first() else {
        bail!(
            "no libLLVM.so.* in {}; the nightly toolchain looks incomplete, reinstall it with \
             `rustup toolchain install nightly --force`",
            nightly_lib.display()
        );
    };
    fs::create_dir_all(prefix_lib).with_context(|| format!("creating {}", prefix_lib.display()))?;
    ensure_symlink(first, &prefix_lib.join("libLLVM.so"))?;
    for lib in &libs {
        let name = lib.file_name().expect("read_dir entries have names");
        ensure_symlink(lib, &prefix_lib.join(name))?;
    }
    Ok(())
}

fn ensure_symlink(target: &Path, link: &Path) -> Result<()> {
    if fs::read_link(link).is_ok_and(|t| t == target) {
        return Ok(());
    }
    match fs::remove_file(link) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e).with_context(|| format!("removing {}", link.display())),
    }
    symlink(target, link)
        .with_context(|| format!("linking {} -> {}", link.display(), target.display()))
}

/// `${XDG_CACHE_HOME:-$HOME/.cache}/osprey`.
pub fn cache_dir() -> Result<PathBuf> {
    let base = match env::var_os("XDG_CACHE_HOME").map(PathBuf::from) {
        Some(dir) if dir.is_absolute() => dir,
        _ => PathBuf::from(env::var_os("HOME").context("neither XDG_CACHE_HOME nor HOME is set")?)
            .join(".cache"),
    };
    let dir = base.join("osprey");
    fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    Ok(dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn links_llvm_by_soname_and_as_libllvm_so_idempotently() {
        let tmp = env::temp_dir().join(format!("xtask-llvm-{}", std::process::id()));
        let nightly = tmp.join("nightly/lib");
        let prefix = tmp.join("prefix/lib");
        fs::create_dir_all(&nightly).unwrap();
        let lib = nightly.join("libLLVM.so.22.1-rust-1.97.0-nightly");
        fs::write(&lib, b"elf").unwrap();
        fs::write(
            nightly.join("libLLVM-22-rust-1.97.0-nightly.so"),
            b"INPUT(..)",
        )
        .unwrap();

        link_nightly_llvm(&nightly, &prefix).unwrap();
        link_nightly_llvm(&nightly, &prefix).unwrap();

        assert_eq!(fs::read_link(prefix.join("libLLVM.so")).unwrap(), lib);
        assert_eq!(
            fs::read_link(prefix.join("libLLVM.so.22.1-rust-1.97.0-nightly")).unwrap(),
            lib
        );
        assert!(!prefix.join("libLLVM-22-rust-1.97.0-nightly.so").exists());
        fs::remove_dir_all(&tmp).unwrap();
    }

    #[test]
    fn no_libllvm_is_an_error_that_says_how_to_fix_it() {
        let tmp = env::temp_dir().join(format!("xtask-nollvm-{}", std::process::id()));
        fs::create_dir_all(tmp.join("lib")).unwrap();
        let err = link_nightly_llvm(&tmp.join("lib"), &tmp.join("prefix")).unwrap_err();
        assert!(
            err.to_string().contains("rustup toolchain install nightly"),
            "{err}"
        );
        fs::remove_dir_all(&tmp).unwrap();
    }
}
