//! `cargo xtask kernels`: the real agent on the kernels nodes run (5.10, 6.1, 6.12), each
//! booted in qemu (TCG: these machines' KVM does not run stock kernels) with a busybox
//! initramfs. Per kernel: the offsets the agent reads (`osprey kernel`), a battery of real
//! actions and the alerts they must raise, a kill profile applied in the kernel, zero decode
//! errors, and a clean kernel log (no WARNING, no taint). `cargo xtask test` runs it after the
//! cargo tests.

mod fetch;
mod guest;
mod initramfs;

use std::{
    collections::BTreeMap,
    fmt::Write as _,
    fs,
    path::{Path, PathBuf},
    process::Command,
    time::Instant,
};

use anyhow::{Context as _, Result, bail};

use crate::{
    proc,
    setup::{self, Env, Scope},
};

#[derive(clap::Args, Default)]
pub struct Args {
    /// Only these kernels (repeatable): 5.10, 6.1, 6.12.
    #[arg(long = "kernel", value_name = "VERSION")]
    pub kernels: Vec<String>,
    /// Make the agent look up a wrong BTF member, to see the matrix fail and name it:
    /// `--break task_struct.cred=no_such_field` (sets OSPREY_BTF_RENAME in the guests).
    #[arg(long = "break", value_name = "STRUCT.MEMBER=NAME")]
    pub break_member: Option<String>,
}

/// The kill profile the guests load besides the default rules: `acct` (which nothing on a node
/// calls) is killed in the kernel for every host process.
const MATRIX_PROFILE: &str = "\
- profile: matrix-kill
  desc: the kernel matrix's kill test; acct is killed in the kernel
  scope: host
  default: allow
  syscalls:
    - names: [acct]
      action: kill
";

const GUEST_INIT: &str = include_str!("guest.sh");

pub fn run(root: &Path, args: Args) -> Result<()> {
    let env = setup::setup(root, Scope::Build)?;
    run_with(&env, &args)
}

/// The matrix, with the set-up done: builds the binaries, fetches what is missing, boots each
/// kernel in turn, prints per-kernel results and the offset table, fails if any kernel failed.
pub fn run_with(env: &Env, args: &Args) -> Result<()> {
    let started = Instant::now();
    let specs: Vec<fetch::KernelSpec> = if args.kernels.is_empty() {
        fetch::KERNELS.to_vec()
    } else {
        args.kernels
            .iter()
            .map(|k| {
                fetch::KERNELS
                    .iter()
                    .find(|s| s.label == k)
                    .copied()
                    .with_context(|| {
                        format!(
                            "no kernel {k} in the matrix; choose from {}",
                            fetch::KERNELS
                                .iter()
                                .map(|s| s.label)
                                .collect::<Vec<_>>()
                                .join(", ")
                        )
                    })
            })
            .collect::<Result<_>>()?
    };

    proc::step(
        "kernel matrix: building osprey and the actions, uring and int80 examples (release)",
    );
    proc::run(
        // The default members, as `cargo test --release` builds them: the same features, so
        // after the tests this is a no-op.
        env.cargo().args([
            "build",
            "--release",
            "--bin",
            "osprey",
            "--example",
            "actions",
            "--example",
            "uring",
            "--example",
            "int80",
        ]),
        "cargo build --release --bin osprey --example actions --example uring --example int80",
    )?;
    let release = env.target_dir().join("release");

    let cache = setup::cache_dir()?.join("kernels");
    fs::create_dir_all(&cache).with_context(|| format!("creating {}", cache.display()))?;
    let qemu = fetch::ensure_qemu(&cache)?;
    let kernels = specs
        .iter()
        .map(|s| fetch::kernel(&cache, *s))
        .collect::<Result<Vec<_>>>()?;

    let work = env.target_dir().join("kernels");
    fs::create_dir_all(&work).with_context(|| format!("creating {}", work.display()))?;
    let initrd = work.join("initramfs.cpio");
    build_initramfs(env.root(), &release, args.break_member.as_deref(), &initrd)?;
    let setup_secs = started.elapsed().as_secs_f64();

    // The host's own offsets, as the first column of the table.
    let host_report = proc::output(
        Command::new(release.join("osprey")).arg("kernel"),
        "osprey kernel (on the host)",
    )
    .unwrap_or_else(|e| format!("kernel host\n(osprey kernel failed: {e:#})\n"));

    let mut results = Vec::new();
    for k in &kernels {
        proc::step(format!(
            "kernel {}: booting {} ({}) in qemu{}",
            k.spec.label,
            k.package,
            k.spec.distro,
            if k.spec.cmdline.is_empty() {
                String::new()
            } else {
                format!(" with {}", k.spec.cmdline)
            }
        ));
        let log = work.join(format!("console-{}.log", k.spec.label));
        let outcome = guest::run(&qemu, &k.vmlinuz, &initrd, k.spec.cmdline, &log)?;
        print_outcome(k, &outcome, &log);
        results.push((k, outcome));
    }

    println!("\n{}", offset_table(&host_report, &results));
    println!("kernel matrix (the agent and default rules on each kernel, in qemu):");
    println!(
        "  {:<6} {:<28} {:>6} {:>7}  {:>7}  result",
        "kernel", "uname -r", "boot+run", "actions", "alerts"
    );
    for (k, o) in &results {
        println!(
            "  {:<6} {:<28} {:>7.0}s {:>7}  {:>7}  {}",
            k.spec.label,
            o.uname,
            o.seconds,
            o.actions.len(),
            o.alerts_seen.len(),
            if o.failures.is_empty() {
                "PASS"
            } else {
                "FAIL"
            }
        );
    }
    println!(
        "  set-up (build, fetch, initramfs) {setup_secs:.0}s, total {:.0}s",
        started.elapsed().as_secs_f64()
    );
    let failed: Vec<String> = results
        .iter()
        .filter(|(_, o)| !o.failures.is_empty())
        .map(|(k, o)| format!("{}: {}", k.spec.label, o.failures.join("; ")))
        .collect();
    if !failed.is_empty() {
        bail!("the kernel matrix failed on:\n  {}", failed.join("\n  "));
    }
    proc::step("kernel matrix: every kernel passed");
    Ok(())
}

fn print_outcome(k: &fetch::Kernel, o: &guest::Outcome, log: &Path) {
    println!("---- kernel {} ({}): {}", k.spec.label, k.package, o.uname);
    println!("{}", o.kernel_report);
    println!("agent ready after {}", o.ready_after);
    for (program, form) in &o.forms {
        println!("{program}: {form}");
    }
    println!("actions run: {}", o.actions.join(", "));
    println!("alerts seen: {}", o.alerts_seen.join(", "));
    if o.failures.is_empty() {
        println!("PASS kernel {} in {:.0}s", k.spec.label, o.seconds);
    } else {
        for f in &o.failures {
            println!("FAIL kernel {}: {f}", k.spec.label);
        }
        if !o.crash.is_empty() {
            println!("the guest kernel's crash report:");
            for l in &o.crash {
                println!("  {l}");
            }
        }
        // A rerun overwrites the console; the failing one is kept beside it.
        let kept = log.with_extension("failed.log");
        match std::fs::copy(log, &kept) {
            Ok(_) => println!(
                "(whole console: {}, kept as {})",
                log.display(),
                kept.display()
            ),
            Err(_) => println!("(whole console: {})", log.display()),
        }
    }
}

/// `osprey kernel`'s offsets of the host and every guest side by side: a kernel that moves a
/// field shows up as a changed number in one row.
fn offset_table(host: &str, results: &[(&fetch::Kernel, guest::Outcome)]) -> String {
    let mut columns = vec![("host".to_string(), parse_offsets(host))];
    for (k, o) in results {
        columns.push((k.spec.label.to_string(), parse_offsets(&o.kernel_report)));
    }
    let names: std::collections::BTreeSet<&String> =
        columns.iter().flat_map(|(_, c)| c.keys()).collect();
    let mut out = String::from("BTF and tracefs offsets the agent reads, per kernel:\n");
    let _ = write!(out, "  {:<48}", "");
    for (label, _) in &columns {
        let _ = write!(out, " {label:>7}");
    }
    out.push('\n');
    for n in &names {
        let _ = write!(out, "  {n:<48}");
        for (_, c) in &columns {
            match c.get(*n) {
                Some(v) => {
                    let _ = write!(out, " {v:>7}");
                }
                None => {
                    let _ = write!(out, " {:>7}", "-");
                }
            }
        }
        out.push('\n');
    }
    out
}

/// The `offsets:` block of `osprey kernel`'s table, in order of appearance.
fn parse_offsets(report: &str) -> BTreeMap<String, String> {
    report
        .lines()
        .skip_while(|l| l.trim() != "offsets:")
        .skip(1)
        .filter_map(|l| {
            let l = l.trim();
            let (name, value) = l.rsplit_once(' ')?;
            Some((name.trim().to_string(), value.to_string()))
        })
        .collect()
}

fn build_initramfs(
    root: &Path,
    release: &Path,
    break_member: Option<&str>,
    out: &Path,
) -> Result<()> {
    let busybox = PathBuf::from("/bin/busybox");
    if !busybox.is_file() {
        bail!(
            "the guest's shell and tools are /bin/busybox, which is missing: install it with \
             `apt-get install busybox-static` (`cargo xtask test` installs it)"
        );
    }
    let mut t = initramfs::Tree::default();
    // With its libraries, should it be a dynamically linked busybox.
    t.binary_with_libs("/bin/busybox", &busybox)?;
    // The rest of the applets are linked by /init (`busybox --install`).
    t.symlink("/bin/sh", "busybox");
    for dir in ["/proc", "/sys", "/dev", "/tmp", "/root", "/run"] {
        t.dir(dir);
    }
    t.file("/init", GUEST_INIT.as_bytes().to_vec(), 0o755);
    t.binary_with_libs("/osprey", &release.join("osprey"))?;
    t.binary_with_libs("/actions", &release.join("examples/actions"))?;
    t.binary_with_libs("/uring", &release.join("examples/uring"))?;
    t.binary_with_libs("/int80", &release.join("examples/int80"))?;
    t.copy(
        "/etc/osprey/osprey_rules.yaml",
        &root.join("rules/osprey_rules.yaml"),
        0o644,
    )?;
    t.file("/etc/osprey/matrix.yaml", MATRIX_PROFILE.into(), 0o644);
    t.file(
        "/etc/passwd",
        b"root:x:0:0:root:/root:/bin/sh\n".to_vec(),
        0o644,
    );
    t.file("/etc/group", b"root:x:0:\n".to_vec(), 0o644);
    if let Some(spec) = break_member {
        if spec.contains('\'') || !spec.contains('=') {
            bail!("--break takes STRUCT.MEMBER=NAME, e.g. task_struct.cred=no_such_field");
        }
        proc::step(format!(
            "kernel matrix: the agent will look up {spec} (OSPREY_BTF_RENAME): expect failures"
        ));
        t.file(
            "/etc/osprey/env",
            format!("export OSPREY_BTF_RENAME='{spec}'\n").into_bytes(),
            0o644,
        );
    }
    t.write(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_come_from_the_offsets_block() {
        let report = "kernel 6.1.0\nfeatures:\n  yes btf  /sys/kernel/btf/vmlinux\noffsets:\n  task_struct.cred   1920\n  sched_process_exec.filename (tracefs)      8\n";
        let o = parse_offsets(report);
        assert_eq!(o["task_struct.cred"], "1920");
        assert_eq!(o["sched_process_exec.filename (tracefs)"], "8");
        assert_eq!(o.len(), 2);
    }
}
