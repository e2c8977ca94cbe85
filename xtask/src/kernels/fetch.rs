//! The matrix's kernels and qemu, from Debian's mirrors through apt.
//!
//! Each kernel is Debian's cloud kernel of one release's security suite: apt with a private
//! configuration (its own sources list, package lists and an empty dpkg status) resolves the
//! `linux-image-cloud-amd64` meta-package to the concrete image package (its name changes with
//! every ABI bump), downloads it, and only the `vmlinuz` is kept (Debian's cloud kernels have
//! their BTF built in and the guest needs no modules). A kernel is re-resolved after a week so
//! that security updates reach the matrix; a failed refresh falls back to the cached kernel.

use std::{
    fs,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::{Duration, SystemTime},
};

use anyhow::{Context as _, Result, bail};

use crate::{proc, system};

/// Where Debian's packages come from (its CDN, which picks a nearby mirror).
const MIRROR: &str = "http://deb.debian.org";
/// A cached kernel older than this is re-resolved (a security update may have replaced it).
const REFRESH_AFTER: Duration = Duration::from_secs(7 * 24 * 3600);
/// The meta-package whose dependency names the current image package.
const META: &str = "linux-image-cloud-amd64";

/// One kernel of the matrix.
#[derive(Clone, Copy, Debug)]
pub struct KernelSpec {
    /// What users call it, and the prefix its package version must have: `5.10`.
    pub label: &'static str,
    /// The Debian suite it comes from.
    pub suite: &'static str,
    /// The distribution release it ships with, for messages.
    pub distro: &'static str,
    /// Added to the guest's kernel command line.
    pub cmdline: &'static str,
}

/// The matrix: the oldest LTS kernel nodes still run, and Debian's two newer stable kernels,
/// the newest booted without the 32-bit syscall entry.
pub const KERNELS: &[KernelSpec] = &[
    KernelSpec {
        label: "5.10",
        suite: "bullseye-security",
        distro: "Debian 11",
        cmdline: "",
    },
    KernelSpec {
        label: "6.1",
        suite: "bookworm-security",
        distro: "Debian 12",
        cmdline: "",
    },
    KernelSpec {
        label: "6.12",
        suite: "trixie-security",
        distro: "Debian 13",
        // Booted without the 32-bit syscall entry (Linux 6.7), the hardening setting: the
        // agent then attaches sys_exit per syscall, and the matrix runs that form too.
        cmdline: "ia32_emulation=false",
    },
];

/// A kernel image ready to boot.
pub struct Kernel {
    pub spec: KernelSpec,
    pub vmlinuz: PathBuf,
    /// `linux-image-5.10.0-46-cloud-amd64 5.10.262-1`.
    pub package: String,
}

impl KernelSpec {
    fn sources_line(&self) -> String {
        format!(
            "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] {MIRROR}/debian-security {} main\n",
            self.suite
        )
    }

    fn origin(&self) -> String {
        format!("{MIRROR}/debian-security {} main", self.suite)
    }
}

/// The cached kernel, refreshed when stale; downloads only what is missing or out of date.
pub fn kernel(cache: &Path, spec: KernelSpec) -> Result<Kernel> {
    let dir = cache.join(spec.suite);
    let vmlinuz = dir.join("vmlinuz");
    let package_file = dir.join("package");
    let cached = fs::read_to_string(&package_file)
        .ok()
        .filter(|_| vmlinuz.is_file())
        .map(|p| p.trim().to_string());
    let fresh = fs::metadata(&package_file)
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| SystemTime::now().duration_since(t).ok())
        .is_some_and(|age| age < REFRESH_AFTER);
    if let Some(package) = &cached
        && fresh
    {
        proc::step(format!("kernel {} ({package}): cached", spec.label));
        return Ok(Kernel {
            spec,
            vmlinuz,
            package: package.clone(),
        });
    }
    match download(&dir, spec, cached.as_deref()) {
        Ok((package, downloaded)) => {
            let what = if downloaded {
                "fetched"
            } else {
                "still current, cached"
            };
            proc::step(format!("kernel {} ({package}): {what}", spec.label));
            Ok(Kernel {
                spec,
                vmlinuz,
                package,
            })
        }
        Err(e) => match cached {
            Some(package) => {
                proc::step(format!(
                    "kernel {}: NOTICE: refreshing from {} failed ({e:#}); using the cached {package}",
                    spec.label,
                    spec.origin()
                ));
                Ok(Kernel {
                    spec,
                    vmlinuz,
                    package,
                })
            }
            None => Err(e).with_context(|| {
                format!(
                    "cannot fetch the {} kernel ({META} from {}, {}); the kernel matrix needs \
                     Debian's package mirror (through apt, honouring apt's proxy settings). \
                     Without network, run `cargo xtask test --no-kernels` and say so in the \
                     review",
                    spec.label,
                    spec.origin(),
                    spec.distro
                )
            }),
        },
    }
}

/// Resolves, downloads and unpacks the kernel; returns `package version` and whether it was
/// downloaded. When the suite still has the `cached` package, only its date is renewed.
fn download(dir: &Path, spec: KernelSpec, cached: Option<&str>) -> Result<(String, bool)> {
    let apt = dir.join("apt");
    for sub in ["lists/partial", "cache/archives/partial", "sources.list.d"] {
        fs::create_dir_all(apt.join(sub))
            .with_context(|| format!("creating {}", apt.join(sub).display()))?;
    }
    fs::write(apt.join("sources.list"), spec.sources_line())?;
    fs::write(apt.join("status"), "")?;
    let conf = apt.join("apt.conf");
    fs::write(
        &conf,
        format!(
            "Dir::Etc::SourceList \"{a}/sources.list\";\n\
             Dir::Etc::SourceParts \"{a}/sources.list.d\";\n\
             Dir::State::Lists \"{a}/lists\";\n\
             Dir::State::status \"{a}/status\";\n\
             Dir::Cache \"{a}/cache\";\n\
             APT::Architecture \"amd64\";\n\
             APT::Architectures {{ \"amd64\"; }};\n\
             APT::Sandbox::User \"root\";\n\
             APT::Update::Error-Mode \"any\";\n\
             Acquire::Languages \"none\";\n",
            a = apt.display()
        ),
    )?;
    let apt_cmd = |program: &str| {
        let mut cmd = Command::new(program);
        cmd.env("APT_CONFIG", &conf).stdin(Stdio::null());
        cmd
    };
    proc::step(format!(
        "kernel {}: resolving {META} in {}",
        spec.label,
        spec.origin()
    ));
    proc::output(
        apt_cmd("apt-get").args(["update", "-q"]),
        &format!("apt-get update for {}", spec.suite),
    )?;
    let depends = proc::output(
        apt_cmd("apt-cache").args(["depends", META]),
        &format!("apt-cache depends {META}"),
    )?;
    let image = image_package(&depends).with_context(|| {
        format!(
            "{META} in {} names no linux-image package:\n{depends}",
            spec.suite
        )
    })?;
    let current = proc::output(
        apt_cmd("apt-cache").args(["show", "--no-all-versions", &image]),
        &format!("apt-cache show {image}"),
    )?;
    if let Some(version) = current
        .lines()
        .find_map(|l| l.strip_prefix("Version:").map(str::trim))
    {
        let package = format!("{image} {version}");
        if cached == Some(package.as_str()) {
            fs::write(dir.join("package"), format!("{package}\n"))?;
            return Ok((package, false));
        }
    }
    let work = dir.join("download");
    let _ = fs::remove_dir_all(&work);
    fs::create_dir_all(&work)?;
    proc::step(format!("kernel {}: downloading {image}", spec.label));
    proc::output(
        apt_cmd("apt-get")
            .args(["download", "-q", &image])
            .current_dir(&work),
        &format!("apt-get download {image}"),
    )?;
    let deb = fs::read_dir(&work)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| p.extension().is_some_and(|x| x == "deb"))
        .with_context(|| format!("apt-get download {image} left no .deb"))?;
    let version = proc::output(
        Command::new("dpkg-deb")
            .args(["-f"])
            .arg(&deb)
            .arg("Version"),
        "dpkg-deb -f Version",
    )?
    .trim()
    .to_string();
    if !version.starts_with(&format!("{}.", spec.label)) {
        bail!(
            "{image} {version} from {} is not a {} kernel; the suite moved on, update \
             KERNELS in xtask/src/kernels/fetch.rs",
            spec.suite,
            spec.label
        );
    }
    // Only the kernel image: the package's modules are 100 MB the guest does not need.
    let script = format!(
        "dpkg-deb --fsys-tarfile '{}' | tar -x -C '{}' --wildcards './boot/vmlinuz-*'",
        deb.display(),
        work.display()
    );
    proc::output(
        Command::new("sh").args(["-c", &script]),
        "extracting vmlinuz",
    )?;
    let vmlinuz = fs::read_dir(work.join("boot"))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("vmlinuz-"))
        })
        .with_context(|| format!("{image} holds no /boot/vmlinuz-*"))?;
    fs::rename(&vmlinuz, dir.join("vmlinuz"))?;
    let package = format!("{image} {version}");
    fs::write(dir.join("package"), format!("{package}\n"))?;
    let _ = fs::remove_dir_all(&work);
    // The lists and the .deb are not needed again before the next refresh.
    let _ = fs::remove_dir_all(apt.join("cache"));
    Ok((package, true))
}

/// The concrete image package in `apt-cache depends` output.
fn image_package(depends: &str) -> Option<String> {
    depends
        .lines()
        .filter_map(|l| l.trim().trim_start_matches('|').strip_prefix("Depends:"))
        .map(|p| p.trim().to_string())
        .find(|p| p.starts_with("linux-image-") && !p.starts_with('<'))
}

/// qemu-system-x86_64, installed from bookworm-backports when missing. Backports, because the
/// machines' image has backports' newer qemu-utils, which bookworm's own qemu-system-x86 would
/// remove; `--no-remove` makes apt refuse rather than remove anything.
pub fn ensure_qemu(cache: &Path) -> Result<PathBuf> {
    if let Some(qemu) = which("qemu-system-x86_64") {
        proc::step(format!("qemu: {}", qemu.display()));
        return Ok(qemu);
    }
    let apt = cache.join("apt-host");
    fs::create_dir_all(apt.join("lists/partial"))?;
    fs::write(
        apt.join("sources.list"),
        format!(
            "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] {MIRROR}/debian bookworm-backports main\n"
        ),
    )?;
    let conf = apt.join("apt.conf");
    // The system's own sources (sources.list.d) stay: the dependencies come from bookworm.
    fs::write(
        &conf,
        format!(
            "Dir::Etc::SourceList \"{a}/sources.list\";\nDir::State::Lists \"{a}/lists\";\n\
             Acquire::Languages \"none\";\n",
            a = apt.display()
        ),
    )?;
    proc::step("qemu: installing qemu-system-x86 from bookworm-backports");
    let fetch_err = |e: anyhow::Error| {
        e.context(format!(
            "cannot install qemu-system-x86 from {MIRROR}/debian bookworm-backports (the \
             kernel matrix boots its kernels in qemu); install it yourself with \
             `apt-get install -t bookworm-backports qemu-system-x86`, or run \
             `cargo xtask test --no-kernels`"
        ))
    };
    system::apt_with_config(&conf, &["update", "-q"]).map_err(fetch_err)?;
    system::apt_with_config(
        &conf,
        &[
            "install",
            "-y",
            "-q",
            "--no-remove",
            "--no-install-recommends",
            "-t",
            "bookworm-backports",
            "qemu-system-x86",
        ],
    )
    .map_err(fetch_err)?;
    which("qemu-system-x86_64")
        .context("qemu-system-x86 was installed but qemu-system-x86_64 is not on PATH")
}

fn which(program: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|path| {
        std::env::split_paths(&path)
            .map(|d| d.join(program))
            .find(|p| p.is_file())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_meta_package_names_its_image() {
        let out = "linux-image-cloud-amd64\n  Depends: linux-image-5.10.0-46-cloud-amd64\n";
        assert_eq!(
            image_package(out).as_deref(),
            Some("linux-image-5.10.0-46-cloud-amd64")
        );
        let alt = "linux-image-cloud-amd64\n |Depends: linux-image-6.12.57+deb13-cloud-amd64\n    Depends: <linux-image-6.12-virtual>\n";
        assert_eq!(
            image_package(alt).as_deref(),
            Some("linux-image-6.12.57+deb13-cloud-amd64")
        );
        assert_eq!(image_package("foo\n  Depends: <virtual>\n"), None);
    }
}
