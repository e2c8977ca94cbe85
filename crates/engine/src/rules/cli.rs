//! What `osprey rules validate`, `osprey rules list` and `osprey fields` print, so that the
//! binary only parses arguments.

use std::{fmt::Write as _, path::Path};

use super::{LoadResult, Ruleset, diag, load_files};
use crate::fields::CATALOG;

/// `osprey rules validate FILE... [--json]`: (all files valid, what to print). Warnings do not
/// make a file invalid.
pub fn validate<P: AsRef<Path>>(paths: &[P], json: bool) -> (bool, String) {
    let res = load_files(paths);
    (res.is_ok(), render_results(&res, json))
}

/// The per-file results as Falco's `-V` text or `falco_load_results` JSON.
pub fn render_results(res: &LoadResult, json: bool) -> String {
    if json {
        let mut s = diag::render_json(&res.files);
        s.push('\n');
        s
    } else {
        res.files
            .iter()
            .map(diag::FileResult::render_text)
            .collect()
    }
}

/// `osprey rules list [--json]`.
pub fn list(ruleset: &Ruleset, json: bool) -> String {
    if json {
        let v = serde_json::json!({
            "required_engine_version": ruleset.required_engine_version,
            "rules": ruleset.rules,
            "macros": ruleset.macros.iter().map(|(n, c)| serde_json::json!({"name": n, "condition": c})).collect::<Vec<_>>(),
            "lists": ruleset.lists.iter().map(|(n, i)| serde_json::json!({"name": n, "items": i})).collect::<Vec<_>>(),
        });
        return format!("{v}\n");
    }
    let width = ruleset
        .rules
        .iter()
        .map(|r| r.name.len())
        .max()
        .unwrap_or(4)
        .max(4);
    let attack: Vec<String> = ruleset
        .rules
        .iter()
        .map(|r| {
            let ids = attack_ids(&r.tags);
            if ids.is_empty() {
                "-".into()
            } else {
                ids.join(",")
            }
        })
        .collect();
    let attack_width = attack.iter().map(String::len).max().unwrap_or(0).max(6);
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<width$}  {:<13}  {:<8}  {:<attack_width$}  EVENT TYPES",
        "RULE", "PRIORITY", "ENABLED", "ATT&CK"
    );
    for (r, attack) in ruleset.rules.iter().zip(&attack) {
        let types = match &r.evttypes {
            Some(t) => t.iter().cloned().collect::<Vec<_>>().join(","),
            None => "(all)".into(),
        };
        let _ = writeln!(
            out,
            "{:<width$}  {:<13}  {:<8}  {attack:<attack_width$}  {types}",
            r.name,
            r.priority.as_str(),
            if r.enabled { "yes" } else { "no" }
        );
    }
    out
}

/// The MITRE ATT&CK technique ids among a rule's tags (`T1059`, `T1053.003`), as Falco's
/// rules tag them; the tactic tags (`mitre_persistence`) are left out.
pub fn attack_ids(tags: &[String]) -> Vec<&str> {
    tags.iter()
        .map(String::as_str)
        .filter(|t| {
            let Some(id) = t.strip_prefix('T') else {
                return false;
            };
            let (main, sub) = id.split_once('.').unwrap_or((id, "000"));
            main.len() == 4
                && sub.len() == 3
                && main.bytes().chain(sub.bytes()).all(|b| b.is_ascii_digit())
        })
        .collect()
}

/// `osprey fields [--json]`: every supported field with its type and meaning.
pub fn fields_listing(json: bool) -> String {
    if json {
        return format!("{}\n", serde_json::to_string(CATALOG).unwrap_or_default());
    }
    let width = CATALOG.iter().map(|f| f.name.len()).max().unwrap_or(0) + 6;
    let mut out = String::new();
    for f in CATALOG {
        let name = match f.arg {
            crate::fields::ArgSpec::Index => format!("{}[N]", f.name),
            crate::fields::ArgSpec::Name => format!("{}.NAME", f.name),
            crate::fields::ArgSpec::Key => format!("{}[KEY]", f.name),
            crate::fields::ArgSpec::None => f.name.to_string(),
        };
        let mut desc = f.desc.to_string();
        if let Some(why) = f.unavailable {
            let _ = write!(desc, " [always unset: {why}]");
        }
        let _ = writeln!(out, "{name:<width$} {:<8} {desc}", f.ty.as_str());
    }
    out
}
