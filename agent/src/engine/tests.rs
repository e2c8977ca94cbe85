use super::*;
use crate::rules::{cli, load_files};

fn upstream_path() -> std::path::PathBuf {
    let p = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../shared/compat/falco_rules.yaml");
    assert!(
        p.exists(),
        "Falco's upstream stable ruleset is missing: expected it at {} (shared/compat/falco_rules.yaml beside the repository)",
        p.display()
    );
    p
}

#[test]
fn smoke_upstream() {
    let res = load_files(&[upstream_path()]);
    println!("{}", cli::render_results(&res, false));
    let n = res
        .ruleset
        .rules
        .iter()
        .filter(|r| r.compiled.is_some())
        .count();
    println!("compiled {n}");
}
