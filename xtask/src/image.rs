//! `cargo xtask image`: the agent's container image, built locally with podman from the release
//! binary and nothing else: the binary, the shared libraries it links (as `ldd` lists them),
//! the system's CA bundle (for `https://` webhooks), and a passwd file naming the users the
//! manifest runs it as. No base image is pulled, so it builds without a registry.

use std::{
    fs,
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context as _, Result, bail};

use crate::{
    proc,
    setup::{self, Env, Scope},
};

/// The image's name in local storage; `podman push` gives it the name a cluster pulls.
pub const IMAGE: &str = "localhost/osprey";

#[derive(clap::Args)]
pub struct Args {
    /// Tag of the image (default: the workspace version).
    #[arg(long)]
    pub tag: Option<String>,
}

pub fn run(root: &Path, args: Args) -> Result<()> {
    let env = setup::setup(root, Scope::Build)?;
    let name = build(&env, args.tag.as_deref())?;
    proc::step(format!(
        "image {name} built; to deploy it: podman push {name} REGISTRY/osprey:{tag}, then set \
         that name as `image:` in daemonset.yaml",
        tag = name.rsplit(':').next().unwrap_or_default()
    ));
    Ok(())
}

/// Builds the release binary and the image; returns the image's name with its tag.
pub fn build(env: &Env, tag: Option<&str>) -> Result<String> {
    if which("podman").is_none() {
        bail!("podman is not installed: `apt-get install podman runc` (or `cargo xtask setup`)");
    }
    proc::step("building osprey (release) for the image");
    proc::run(
        env.cargo()
            .args(["build", "--release", "-p", "osprey", "--bin", "osprey"]),
        "cargo build --release -p osprey --bin osprey",
    )?;
    let binary = env.target_dir().join("release/osprey");
    let context = env.target_dir().join("image");
    let rootfs = context.join("rootfs");
    if rootfs.exists() {
        fs::remove_dir_all(&rootfs).with_context(|| format!("clearing {}", rootfs.display()))?;
    }
    fs::create_dir_all(rootfs.join("usr/bin"))?;
    fs::copy(&binary, rootfs.join("usr/bin/osprey"))
        .with_context(|| format!("copying {}", binary.display()))?;
    // The release profile keeps line tables for profiling; the image needs only the symbols.
    proc::run(
        Command::new("strip")
            .arg("--strip-debug")
            .arg(rootfs.join("usr/bin/osprey")),
        "strip --strip-debug",
    )?;
    for lib in shared_libraries(&binary)? {
        let dst = rootfs.join(lib.strip_prefix("/").unwrap_or(&lib));
        fs::create_dir_all(dst.parent().unwrap_or(&rootfs))?;
        fs::copy(&lib, &dst).with_context(|| format!("copying {}", lib.display()))?;
    }
    let ca = Path::new("/etc/ssl/certs/ca-certificates.crt");
    if ca.is_file() {
        fs::create_dir_all(rootfs.join("etc/ssl/certs"))?;
        fs::copy(ca, rootfs.join("etc/ssl/certs/ca-certificates.crt"))?;
    }
    fs::create_dir_all(rootfs.join("etc"))?;
    fs::write(
        rootfs.join("etc/passwd"),
        "root:x:0:0:root:/:/usr/bin/osprey\nnobody:x:65534:65534:nobody:/:/usr/bin/osprey\n",
    )?;
    fs::write(rootfs.join("etc/group"), "root:x:0:\nnogroup:x:65534:\n")?;
    // Where the agent's spool and the rules ConfigMap are mounted.
    fs::create_dir_all(rootfs.join("var/lib/osprey"))?;
    fs::create_dir_all(rootfs.join("etc/osprey"))?;
    fs::write(
        context.join("Containerfile"),
        "FROM scratch\nCOPY rootfs/ /\nENTRYPOINT [\"/usr/bin/osprey\"]\nCMD [\"run\"]\n",
    )?;

    let tag = tag.map_or_else(|| env!("CARGO_PKG_VERSION").to_string(), str::to_string);
    let name = format!("{IMAGE}:{tag}");
    proc::step(format!("podman build {name}"));
    proc::run(
        Command::new("podman")
            .args(["build", "--quiet", "--tag", &name, "--file"])
            .arg(context.join("Containerfile"))
            .arg(&context),
        "podman build",
    )?;
    Ok(name)
}

/// The libraries `ldd` resolves for `binary`, and the dynamic loader.
fn shared_libraries(binary: &Path) -> Result<Vec<PathBuf>> {
    let out = proc::output(Command::new("ldd").arg(binary), "ldd")?;
    let mut libs = Vec::new();
    for line in out.lines() {
        // `libc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x...)` or `/lib64/ld-linux-x86-64.so.2 (0x...)`.
        let path = match line.split_once("=>") {
            Some((_, right)) => right.split_whitespace().next(),
            None => line
                .split_whitespace()
                .next()
                .filter(|p| p.starts_with('/')),
        };
        if let Some(p) = path.filter(|p| p.starts_with('/')) {
            libs.push(PathBuf::from(p));
        }
    }
    if libs.is_empty() {
        bail!("ldd found no libraries for {}", binary.display());
    }
    Ok(libs)
}

fn which(program: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join(program))
            .find(|p| p.is_file())
    })
}
