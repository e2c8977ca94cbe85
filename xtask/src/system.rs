//! Machine-level set-up for the tests: Debian packages, Python tools, tracefs, and podman's
//! configuration. Each is checked first and changed only when it differs; steps that need root
//! go through sudo when we are not root.

use std::{
    collections::BTreeSet,
    env, fs,
    io::Write as _,
    os::unix::fs::MetadataExt as _,
    path::Path,
    process::{Command, Stdio},
};

use anyhow::{Context as _, Result, bail};

use crate::proc;

/// Debian packages the tests use. Later work appends here.
pub const APT_PACKAGES: &[&str] = &[
    // Real containers for the container-context tests (shared BUILD-CHAIN.md: podman + runc).
    "podman",
    "runc",
    "busybox-static",
    // containerd (with ctr and the runc v2 shim) for the Kubernetes-identity tests.
    "containerd",
    // Debian 12's name for containers-common (registries.conf, policy.json, seccomp.json).
    "golang-github-containers-common",
    // Network namespaces and veth pairs for the network tests.
    "iproute2",
    // Cross-checking what the sensor reports against what a process really did.
    "strace",
    // Reading the agent's kernel counters from outside it (the profile tests).
    "bpftool",
    // A real NATS JetStream server for the alert-stream round trip (nats-server -js).
    "nats-server",
    // A real headless browser for the web UI test (tests/web_ui.rs drives chromedriver over
    // the W3C WebDriver protocol).
    "chromium",
    "chromium-driver",
    // Daily node work for the false-positive test (tests/rules_false_positives.rs), and
    // setcap for the file-capability rule's test (tests/rules_attack.rs).
    "logrotate",
    "libcap2-bin",
];

/// Python modules the checks use, as (import name, PyPI package). Later work appends here.
pub const PIP_PACKAGES: &[(&str, &str)] = &[
    ("kubernetes_validate", "kubernetes-validate"),
    ("yamllint", "yamllint"),
];

const CONTAINERS_CONF_PATH: &str = "/etc/containers/containers.conf";
/// crun (podman's default) refuses these machines' hybrid cgroups and the default ulimits need
/// CAP_SYS_RESOURCE, which root does not have here (shared BUILD-CHAIN.md).
const CONTAINERS_CONF: &str =
    "[containers]\ndefault_ulimits = []\n[engine]\ncgroup_manager = \"cgroupfs\"\n";

const TRACEFS: &str = "/sys/kernel/tracing";

pub fn ensure_test_deps() -> Result<()> {
    ensure_apt_packages(APT_PACKAGES)?;
    ensure_containers_conf()?;
    ensure_pip_packages(PIP_PACKAGES)?;
    ensure_tracefs()
}

/// Whether this process runs as root (the owner of /proc/self is our effective uid).
pub fn is_root() -> bool {
    fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0)
}

pub fn has_sudo() -> bool {
    env::var_os("PATH")
        .is_some_and(|path| env::split_paths(&path).any(|d| d.join("sudo").is_file()))
}

/// `argv` as root: directly when we are root, else through sudo.
fn privileged(argv: &[&str], what: &str) -> Result<Command> {
    let (program, args) = argv.split_first().expect("a command line");
    if is_root() {
        let mut cmd = Command::new(program);
        cmd.args(args);
        Ok(cmd)
    } else if has_sudo() {
        let mut cmd = Command::new("sudo");
        cmd.args(argv);
        Ok(cmd)
    } else {
        bail!("{what} needs root, and sudo is not installed: run this as root")
    }
}

pub fn ensure_apt_packages(packages: &[&str]) -> Result<()> {
    let missing = missing_apt_packages(packages)?;
    if missing.is_empty() {
        proc::step("apt packages: present");
        return Ok(());
    }
    proc::step(format!("apt packages: installing {}", missing.join(" ")));
    proc::run(
        &mut privileged(&["apt-get", "update", "-q"], "apt-get update")?,
        "apt-get update",
    )?;
    if apt_install(&missing).is_ok() {
        return Ok(());
    }
    // Name the package that fails rather than the whole list.
    for package in &missing {
        apt_install(&[package]).with_context(|| {
            format!("installing the Debian package `{package}` (the tests use it) failed")
        })?;
    }
    Ok(())
}

/// How long apt waits for the dpkg lock (a fresh node may run unattended-upgrades) before it
/// gives up, in seconds.
const DPKG_LOCK_TIMEOUT: &str = "DPkg::Lock::Timeout=600";

fn apt_install(packages: &[&str]) -> Result<()> {
    let mut argv = vec![
        "env",
        "DEBIAN_FRONTEND=noninteractive",
        "apt-get",
        "-o",
        DPKG_LOCK_TIMEOUT,
        "install",
        "-y",
        "-q",
        // Keep a configuration file we (or an admin) changed, without asking.
        "-o",
        "Dpkg::Options::=--force-confdef",
        "-o",
        "Dpkg::Options::=--force-confold",
    ];
    argv.extend(packages);
    let mut cmd = privileged(&argv, "apt-get install")?;
    proc::run(cmd.stdin(Stdio::null()), "apt-get install")
}

/// `apt-get ARGS` as root with a private apt configuration (`APT_CONFIG`), waiting for the
/// dpkg lock rather than failing on it.
pub fn apt_with_config(conf: &Path, args: &[&str]) -> Result<()> {
    let conf_env = format!("APT_CONFIG={}", conf.display());
    let mut argv = vec![
        "env",
        &conf_env,
        "DEBIAN_FRONTEND=noninteractive",
        "apt-get",
        "-o",
        DPKG_LOCK_TIMEOUT,
    ];
    argv.extend(args);
    let what = format!("apt-get {}", args.join(" "));
    let mut cmd = privileged(&argv, &what)?;
    proc::run(cmd.stdin(Stdio::null()), &what)
}

/// The packages of `packages` that dpkg does not list as installed.
fn missing_apt_packages<'a>(packages: &[&'a str]) -> Result<Vec<&'a str>> {
    // Exits non-zero when a package is unknown; stdout still lists the known ones.
    let out = Command::new("dpkg-query")
        .args(["-W", "-f", "${Package}\t${db:Status-Abbrev}\n"])
        .args(packages)
        .stderr(Stdio::null())
        .output()
        .with_context(|| {
            format!(
                "cannot run dpkg-query; on a machine without apt, install these yourself: {}",
                packages.join(" ")
            )
        })?;
    Ok(not_installed(
        packages,
        &String::from_utf8_lossy(&out.stdout),
    ))
}

/// Reads `dpkg-query -W -f '${Package}\t${db:Status-Abbrev}\n'` output.
fn not_installed<'a>(packages: &[&'a str], dpkg_query: &str) -> Vec<&'a str> {
    let installed: BTreeSet<&str> = dpkg_query
        .lines()
        .filter_map(|l| l.split_once('\t'))
        .filter(|(_, status)| status.starts_with("ii"))
        .map(|(name, _)| name)
        .collect();
    packages
        .iter()
        .copied()
        .filter(|p| !installed.contains(p))
        .collect()
}

fn ensure_containers_conf() -> Result<()> {
    let path = Path::new(CONTAINERS_CONF_PATH);
    if fs::read_to_string(path).is_ok_and(|c| c == CONTAINERS_CONF) {
        proc::step(format!("{CONTAINERS_CONF_PATH}: up to date"));
        return Ok(());
    }
    proc::step(format!(
        "{CONTAINERS_CONF_PATH}: writing (runc-friendly settings)"
    ));
    if is_root() {
        let dir = path.parent().expect("an absolute path");
        fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        return fs::write(path, CONTAINERS_CONF)
            .with_context(|| format!("writing {CONTAINERS_CONF_PATH}"));
    }
    proc::run(
        &mut privileged(
            &["mkdir", "-p", "/etc/containers"],
            "creating /etc/containers",
        )?,
        "creating /etc/containers",
    )?;
    let mut tee = privileged(&["tee", CONTAINERS_CONF_PATH], "writing containers.conf")?
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .context("starting `sudo tee`")?;
    tee.stdin
        .take()
        .expect("piped stdin")
        .write_all(CONTAINERS_CONF.as_bytes())
        .context("writing to `sudo tee`")?;
    let status = tee.wait().context("waiting for `sudo tee`")?;
    if !status.success() {
        bail!("writing {CONTAINERS_CONF_PATH} failed ({status})");
    }
    Ok(())
}

fn ensure_pip_packages(packages: &[(&str, &str)]) -> Result<()> {
    let missing = missing_python_modules(packages)?;
    if missing.is_empty() {
        proc::step("python packages: present");
        return Ok(());
    }
    proc::step(format!("python packages: installing {}", missing.join(" ")));
    if pip_install(&missing).is_ok() {
        return Ok(());
    }
    for package in &missing {
        pip_install(&[package]).with_context(|| {
            format!("installing the Python package `{package}` with pip failed")
        })?;
    }
    Ok(())
}

fn pip_install(packages: &[&str]) -> Result<()> {
    proc::run(
        Command::new("python3")
            .args([
                "-m",
                "pip",
                "install",
                "--quiet",
                "--disable-pip-version-check",
            ])
            .args(packages)
            .stdin(Stdio::null()),
        "pip install",
    )
}

/// PyPI names of the packages whose module python3 cannot find.
fn missing_python_modules<'a>(packages: &[(&str, &'a str)]) -> Result<Vec<&'a str>> {
    // find_spec locates a module without importing it, which keeps this fast.
    let script = "import importlib.util, sys\n\
                  print(' '.join(m for m in sys.argv[1:] if importlib.util.find_spec(m) is None))";
    let out = proc::output(
        Command::new("python3")
            .args(["-c", script])
            .args(packages.iter().map(|(module, _)| module)),
        "python3 (looking for the Python tools the checks use)",
    )?;
    let missing: BTreeSet<&str> = out.split_whitespace().collect();
    Ok(packages
        .iter()
        .filter(|(module, _)| missing.contains(module))
        .map(|(_, package)| *package)
        .collect())
}

/// The agent mounts tracefs itself, but tests that read tracefs directly want it too.
fn ensure_tracefs() -> Result<()> {
    let mounts = fs::read_to_string("/proc/self/mounts").unwrap_or_default();
    if is_tracefs_mounted(&mounts) || Path::new(TRACEFS).join("events").is_dir() {
        proc::step(format!("tracefs: mounted at {TRACEFS}"));
        return Ok(());
    }
    proc::step(format!("tracefs: mounting at {TRACEFS}"));
    proc::run(
        &mut privileged(
            &["mount", "-t", "tracefs", "nodev", TRACEFS],
            "mounting tracefs",
        )?,
        "mounting tracefs",
    )
}

fn is_tracefs_mounted(mounts: &str) -> bool {
    mounts.lines().any(|l| {
        let mut fields = l.split_whitespace().skip(1);
        fields.next() == Some(TRACEFS) && fields.next() == Some("tracefs")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_fully_installed_packages_count() {
        let out = "podman\tii \nruninstalled\trc \nrunc\tun \n";
        assert_eq!(
            not_installed(&["podman", "runc", "strace", "runinstalled"], out),
            ["runc", "strace", "runinstalled"]
        );
    }

    #[test]
    fn finds_tracefs_only_at_its_mount_point() {
        let mounted = "sysfs /sys sysfs rw 0 0\nnodev /sys/kernel/tracing tracefs rw 0 0\n";
        let debug_only = "tracefs /sys/kernel/debug/tracing tracefs rw 0 0\n";
        assert!(is_tracefs_mounted(mounted));
        assert!(!is_tracefs_mounted(debug_only));
    }
}
