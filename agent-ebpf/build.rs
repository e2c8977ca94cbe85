//! Building this crate has an undeclared dependency on the `bpf-linker` binary: rebuild when it
//! changes. `cargo xtask` puts the one it installed first on PATH.
fn main() {
    if let Ok(path) = which::which("bpf-linker") {
        println!("cargo:rerun-if-changed={}", path.display());
    }
}
