//! Builds the kernel programs (`agent-ebpf`) for bpfel-unknown-none with the nightly toolchain
//! and bpf-linker, through aya-build, so that `include_bytes_aligned!` finds the object in
//! OUT_DIR. `cargo xtask run|test` installs both first; a plain `cargo build` without them
//! stops here with the command that fixes it.

use std::{env, fs, path::PathBuf};

use anyhow::{Context as _, anyhow};
use aya_build::Toolchain;

fn main() -> anyhow::Result<()> {
    // First, because the kernel-program part below returns early when it skips.
    compile_proto()?;
    let out_dir = PathBuf::from(env::var_os("OUT_DIR").context("OUT_DIR not set")?);
    let object = out_dir.join("agent-ebpf");

    // Metadata-only builds (an IDE's check, or AYA_BUILD_SKIP=1 for a quick `cargo check`) get
    // an empty object; the agent then refuses to start with a message saying so.
    println!("cargo:rerun-if-env-changed=AYA_BUILD_SKIP");
    if env::var("AYA_BUILD_SKIP").is_ok_and(|v| v == "1" || v.eq_ignore_ascii_case("true")) {
        if !object.exists() {
            fs::write(&object, []).with_context(|| format!("writing {}", object.display()))?;
        }
        return Ok(());
    }

    if which("bpf-linker").is_none() {
        return Err(anyhow!(
            "bpf-linker is not on PATH; it links the kernel programs. Run `cargo xtask run` or \
             `cargo xtask test`, which install it (and rust-src for nightly) and put it on PATH"
        ));
    }

    let metadata = cargo_metadata::MetadataCommand::new()
        .no_deps()
        .exec()
        .context("cargo metadata")?;
    let ebpf = metadata
        .packages
        .into_iter()
        .find(|p| p.name.as_str() == "agent-ebpf")
        .ok_or_else(|| anyhow!("agent-ebpf package not found in the workspace"))?;
    let root_dir = ebpf
        .manifest_path
        .parent()
        .ok_or_else(|| anyhow!("no parent for {}", ebpf.manifest_path))?;
    aya_build::build_ebpf(
        [aya_build::Package {
            name: ebpf.name.as_str(),
            root_dir: root_dir.as_str(),
            ..Default::default()
        }],
        Toolchain::default(),
    )
}

/// The gRPC API (proto/osprey/v1/*.proto) with protox, a pure-Rust protoc, so a fresh machine
/// needs no system protoc.
fn compile_proto() -> anyhow::Result<()> {
    println!("cargo:rerun-if-changed=../proto");
    let fds = protox::compile(["osprey/v1/alerts.proto"], ["../proto"])
        .map_err(|e| anyhow!("compiling proto/osprey/v1/alerts.proto: {e}"))?;
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .compile_fds(fds)
        .context("generating the gRPC code")?;
    // containerd's containers service, client side only (container metadata).
    let fds = protox::compile(
        ["containerd/services/containers/v1/containers.proto"],
        ["../proto"],
    )
    .map_err(|e| anyhow!("compiling proto/containerd/services/containers/v1: {e}"))?;
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(false)
        .compile_fds(fds)
        .context("generating the containerd client")?;
    Ok(())
}

fn which(bin: &str) -> Option<PathBuf> {
    env::split_paths(&env::var_os("PATH")?)
        .map(|d| d.join(bin))
        .find(|p| p.is_file())
}
