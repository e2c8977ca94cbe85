//! Loader tests: every diagnostic code with the exact position it reports, and Falco's
//! list/macro/rule override and exception semantics.

use super::{diag::Code, *};
use crate::{Engine, EngineOptions, testing::ROOT, tests::cat_shadow};

fn load(src: &str) -> LoadResult {
    load_sources(&[("r.yaml", src)])
}

/// The single diagnostic with `code`, as (line, column, message).
fn one(res: &LoadResult, code: Code) -> (usize, usize, String) {
    let all: Vec<_> = res
        .errors()
        .chain(res.warnings())
        .filter(|d| d.code == code)
        .collect();
    assert_eq!(
        all.len(),
        1,
        "expected one {}: {:#?}",
        code.as_str(),
        res.files
    );
    let p = all[0].position().expect("position");
    (p.line, p.column, all[0].message.clone())
}

const RULE: &str = "  desc: d\n  output: o\n  priority: INFO\n";

#[test]
fn yaml_parse_error_position() {
    let res = load("- rule: a\n  tags: [x, y\n");
    assert!(!res.is_ok());
    let (line, col, _) = one(&res, Code::ErrYamlParse);
    assert_eq!((line, col), (3, 1));
}

#[test]
fn yaml_validate_errors() {
    let res = load("- rule: a\n  condition: evt.type=open\n  output: o\n  priority: INFO\n");
    assert_eq!(
        one(&res, Code::ErrYamlValidate),
        (1, 3, "Item has no mapping for key 'desc'".into())
    );
    let res = load("rule: a\n");
    assert_eq!(one(&res, Code::ErrYamlValidate).0, 1);
    let res = load(&format!(
        "- rule: a\n  condition: evt.type=open\n{RULE}  enabled: maybe\n"
    ));
    assert_eq!(
        one(&res, Code::ErrYamlValidate),
        (
            6,
            12,
            "Value of 'enabled' must be a boolean (true or false)".into()
        )
    );
    let res =
        load("- rule: a\n  condition: evt.type=open\n  desc: d\n  output: o\n  priority: LOUD\n");
    assert_eq!(
        one(&res, Code::ErrYamlValidate),
        (5, 13, "Invalid priority 'LOUD'".into())
    );
}

#[test]
fn condition_errors_point_into_the_condition() {
    // Unknown field: line 2, column of `proc.nobody`.
    let res = load(&format!(
        "- rule: a\n  condition: evt.type=open and proc.nobody=x\n{RULE}"
    ));
    let (l, c, m) = one(&res, Code::ErrCompileCondition);
    assert_eq!((l, c), (2, 32));
    assert_eq!(m, "filter_check called with nonexistent field proc.nobody");
    // Syntax error in a folded block scalar, on its second line.
    let res = load(&format!(
        "- rule: a\n  condition: >\n    evt.type=open\n    and proc.name=x y\n{RULE}"
    ));
    let (l, c, m) = one(&res, Code::ErrCompileCondition);
    assert_eq!((l, c), (4, 21), "{m}");
    assert!(m.contains("expecting 'or', 'and'"), "{m}");
    // Inside a macro used by the rule: the macro's own line.
    let res = load(&format!(
        "- macro: m\n  condition: proc.bogus = 1\n- rule: a\n  condition: evt.type=open and m\n{RULE}"
    ));
    let (l, c, _) = one(&res, Code::ErrCompileCondition);
    assert_eq!((l, c), (2, 14));
    // A bad regex and a bad number.
    let res = load(&format!(
        "- rule: a\n  condition: evt.type=open and proc.name regex '('\n{RULE}"
    ));
    assert_eq!(one(&res, Code::ErrCompileCondition).0, 2);
    let res = load(&format!(
        "- rule: a\n  condition: evt.type=open and proc.pid = abc\n{RULE}"
    ));
    let (l, c, m) = one(&res, Code::ErrCompileCondition);
    assert_eq!((l, c, m.as_str()), (2, 43, "'abc' is not a valid number"));
}

#[test]
fn falco_text_and_json_shapes() {
    let res = load(&format!(
        "- rule: a\n  condition: evt.type=open and proc.nobody=x\n{RULE}"
    ));
    let text = cli::render_results(&res, false);
    assert!(text.starts_with("r.yaml: Invalid\n1 Errors:\nIn rules content: (r.yaml:0:0)\n    rule 'a': (r.yaml:1:3)\n    condition expression \"evt.type=open and pr..\": (r.yaml:2:32)\n------\n  condition: evt.type=open and proc.nobody=x\n                               ^\n------\nLOAD_ERR_COMPILE_CONDITION (Error compiling condition): filter_check called with nonexistent field proc.nobody\n"), "{text}");
    let json: serde_json::Value = serde_json::from_str(&cli::render_results(&res, true)).unwrap();
    let r = &json["falco_load_results"][0];
    assert_eq!(r["name"], "r.yaml");
    assert_eq!(r["successful"], false);
    let e = &r["errors"][0];
    assert_eq!(e["code"], "LOAD_ERR_COMPILE_CONDITION");
    assert_eq!(e["codedesc"], "Error compiling condition");
    let locs = e["context"]["locations"].as_array().unwrap();
    assert_eq!(locs[1]["item_type"], "rule");
    assert_eq!(locs[1]["item_name"], "a");
    assert_eq!(locs[2]["position"]["line"], 2);
    assert_eq!(locs[2]["position"]["column"], 32);
    assert!(e["context"]["snippet"].as_str().unwrap().contains('^'));
}

#[test]
fn output_errors() {
    let res = load(
        "- rule: a\n  condition: evt.type=open\n  desc: d\n  output: file=%fd.name bad=%fd.nope\n  priority: INFO\n",
    );
    let (l, c, m) = one(&res, Code::ErrCompileOutput);
    assert_eq!((l, c), (4, 29));
    assert!(m.contains("fd.nope"));
}

#[test]
fn validate_errors() {
    let res = load(&format!(
        "- rule: a\n  condition: evt.type=open and nope\n{RULE}"
    ));
    assert_eq!(
        one(&res, Code::ErrValidate),
        (2, 32, "Undefined macro 'nope' used in filter.".into())
    );
    let res = load(&format!(
        "- rule: a\n  condition: evt.type=open and proc.name in nolist\n{RULE}"
    ));
    assert_eq!(
        one(&res, Code::ErrValidate).2,
        "Undefined list 'nolist' used in filter."
    );
    let res = load("- rule: a\n  condition: and x\n  override:\n    condition: append\n");
    let (l, c, m) = one(&res, Code::ErrValidate);
    assert_eq!((l, c), (1, 3));
    assert!(m.contains("no rule by that name already exists"));
    let res = load("- required_engine_version: 99.0.0\n");
    assert_eq!(one(&res, Code::ErrValidate).0, 1);
    let res = load(
        "- macro: a\n  condition: b\n- macro: b\n  condition: a\n- rule: r\n  condition: evt.type=open and a\n  desc: d\n  output: o\n  priority: INFO\n",
    );
    assert!(
        one(&res, Code::ErrValidate)
            .2
            .contains("defined in terms of itself")
    );
    let res = load("- list: l\n  items: [a]\n  append: true\n  override:\n    items: append\n");
    assert!(
        one(&res, Code::ErrYamlValidate)
            .2
            .contains("cannot be used together")
    );
}

#[test]
fn file_read_error() {
    let res = load_files(&["/nonexistent/rules.yaml"]);
    assert!(!res.is_ok());
    assert_eq!(res.errors().next().unwrap().code, Code::ErrFileRead);
    let (ok, text) = cli::validate(&["/nonexistent/rules.yaml"], false);
    assert!(!ok);
    assert!(text.contains("LOAD_ERR_FILE_READ"), "{text}");
}

#[test]
fn warnings() {
    let res = load(&format!(
        "- rule: a\n  condition: proc.name=x\n{RULE}  colour: red\n"
    ));
    assert!(res.is_ok());
    assert_eq!(one(&res, Code::NoEvttype).0, 1);
    assert_eq!(
        one(&res, Code::UnknownKey),
        (6, 3, "Unknown key 'colour'. The key will be ignored".into())
    );
    let res = load(&format!(
        "- rule: a\n  condition: proc.name=x\n  warn_evttypes: false\n{RULE}"
    ));
    assert_eq!(res.warnings().count(), 0);
    let res = load("- something: 1\n");
    assert_eq!(one(&res, Code::UnknownItem).0, 1);
    let res = load("- macro: unused_m\n  condition: proc.name=x\n- list: unused_l\n  items: [a]\n");
    assert_eq!(one(&res, Code::UnusedMacro).0, 1);
    assert_eq!(one(&res, Code::UnusedList).0, 3);
    let res = load(&format!(
        "- rule: a\n  condition: evt.type=open and proc.name = \"<NA>\"\n{RULE}"
    ));
    assert_eq!(
        one(&res, Code::UnsafeNaCheck),
        (
            2,
            44,
            "Comparing a field with <NA> is unsafe and may be removed; use 'exists' instead".into()
        )
    );
    let res = load(&format!(
        "- rule: a\n  condition: evt.type=open and evt.dir = <\n{RULE}"
    ));
    assert_eq!(one(&res, Code::DeprecatedItem).1, 32);
    let res = load(&format!(
        "- rule: a\n  condition: evt.type=open and proc.nobody=x\n  skip-if-unknown-filter: true\n{RULE}"
    ));
    assert!(res.is_ok());
    assert_eq!(one(&res, Code::UnknownFilter).0, 2);
    assert!(res.ruleset.rules.is_empty(), "the rule is skipped");
    let res = load(&format!(
        "- rule: a\n  condition: ka.verb=get\n  source: k8s_audit\n{RULE}"
    ));
    assert!(res.is_ok());
    one(&res, Code::UnknownSource);
    let res = load(
        "- required_plugin_versions:\n    - name: container\n      version: 0.4.0\n    - name: k8saudit\n      version: 0.1.0\n",
    );
    assert_eq!(one(&res, Code::WarningExtension).0, 4);
    let res =
        load("- macro: Bad-Name\n  condition: proc.name=x\n- list: 'bad list'\n  items: []\n");
    one(&res, Code::InvalidMacroName);
    one(&res, Code::InvalidListName);
    let res = load(&format!(
        "- rule: a\n  condition: evt.type=open\n{RULE}  exceptions:\n    - name: e\n      fields: [proc.name]\n    - name: e\n      fields: [proc.name]\n"
    ));
    assert_eq!(one(&res, Code::ExceptionNameNotUnique).0, 9);
    let res = load(&format!(
        "- rule: a\n  condition: evt.type=open\n{RULE}  exceptions:\n    - name: e\n      fields: [proc.name]\n      values: [[x]]\n- rule: a\n  exceptions:\n    - name: e\n  override:\n    exceptions: append\n"
    ));
    assert_eq!(one(&res, Code::AppendNoValues).0, 12);
    let res = load(
        "- list: l\n  items: [a]\n- list: l\n  items: [b]\n  append: true\n- rule: r\n  condition: evt.type=open and proc.name in (l)\n  desc: d\n  output: o\n  priority: INFO\n",
    );
    assert_eq!(one(&res, Code::DeprecatedItem).0, 3);
}

fn hits(srcs: &[(&str, &str)], e: &osprey_model::event::Enriched) -> Vec<String> {
    let res = load_sources(srcs);
    let errs: Vec<_> = res.errors().map(|d| d.message.clone()).collect();
    assert!(res.is_ok(), "{errs:?}");
    let opts = EngineOptions {
        rule_matching: crate::RuleMatching::All,
        ..EngineOptions::default()
    };
    Engine::new(res.ruleset, opts)
        .evaluate(e)
        .into_iter()
        .map(|a| format!("{}: {}", a.rule, a.output))
        .collect()
}

const BASE: &str = "
- list: readers
  items: [less]
- list: all_readers
  items: [readers, more]
- macro: reading
  condition: evt.type = openat and proc.name in (all_readers)
- rule: r
  desc: d
  condition: reading
  output: read by %proc.name
  priority: WARNING
";

#[test]
fn lists_macros_and_overrides() {
    let e = cat_shadow();
    assert!(hits(&[("a", BASE)], &e).is_empty());
    // List append (new style) reaches through the nested list.
    let ov = "- list: readers\n  items: [cat]\n  override:\n    items: append\n";
    assert_eq!(hits(&[("a", BASE), ("b", ov)], &e), ["r: read by cat"]);
    // List replace.
    let ov = "- list: all_readers\n  items: [cat]\n";
    assert_eq!(hits(&[("a", BASE), ("b", ov)], &e), ["r: read by cat"]);
    // Macro append and replace.
    let ov =
        "- macro: reading\n  condition: or proc.name = cat\n  override:\n    condition: append\n";
    assert_eq!(hits(&[("a", BASE), ("b", ov)], &e), ["r: read by cat"]);
    let ov = "- macro: reading\n  condition: fd.name = /etc/shadow\n";
    assert_eq!(hits(&[("a", BASE), ("b", ov)], &e), ["r: read by cat"]);
    // Rule condition replace + output append.
    let ov = "- rule: r\n  condition: evt.type = openat\n  output: (%fd.name)\n  override:\n    condition: replace\n    output: append\n";
    assert_eq!(
        hits(&[("a", BASE), ("b", ov)], &e),
        ["r: read by cat (/etc/shadow)"]
    );
    // Legacy append.
    let ov = "- rule: r\n  condition: or proc.name = cat\n  append: true\n";
    assert_eq!(hits(&[("a", BASE), ("b", ov)], &e), ["r: read by cat"]);
    // Redefinition replaces the whole rule.
    let ov = "- rule: r\n  desc: d2\n  condition: evt.type = openat\n  output: again\n  priority: INFO\n";
    assert_eq!(hits(&[("a", BASE), ("b", ov)], &e), ["r: again"]);
    // Disable, then re-enable with override.
    let on = "- rule: r\n  condition: evt.type = openat\n  override:\n    condition: replace\n";
    let off = "- rule: r\n  enabled: false\n";
    assert!(hits(&[("a", BASE), ("b", on), ("c", off)], &e).is_empty());
    let re = "- rule: r\n  enabled: true\n  override:\n    enabled: replace\n";
    assert_eq!(
        hits(&[("a", BASE), ("b", on), ("c", off), ("d", re)], &e),
        ["r: read by cat"]
    );
    // Priority replace changes the alert.
    let pr = "- rule: r\n  priority: CRITICAL\n  override:\n    priority: replace\n";
    let res = load_sources(&[("a", BASE), ("b", on), ("c", pr)]);
    assert_eq!(res.ruleset.rules[0].priority, Priority::Critical);
    // Appending to priority is refused.
    let bad = "- rule: r\n  priority: CRITICAL\n  override:\n    priority: append\n";
    let res = load_sources(&[("a", BASE), ("b", bad)]);
    assert!(
        res.errors()
            .any(|d| d.message.contains("cannot be appended to"))
    );
    // A rule may use a macro defined after it.
    let later = "- rule: x\n  desc: d\n  condition: evt.type = openat and later_m\n  output: o\n  priority: INFO\n- macro: later_m\n  condition: proc.name = cat\n";
    assert_eq!(hits(&[("a", later)], &e), ["x: o"]);
}

const EXC: &str = "
- rule: r
  desc: d
  condition: evt.type = openat
  output: o
  priority: INFO
  exceptions:
    - name: by_proc_and_dir
      fields: [proc.name, fd.directory]
      comps: [=, =]
      values:
        - [less, /etc]
    - name: by_file
      fields: fd.filename
      comps: in
      values: [passwd]
";

#[test]
fn exceptions() {
    let e = cat_shadow();
    assert_eq!(hits(&[("a", EXC)], &e), ["r: o"]);
    let app = "- rule: r\n  exceptions:\n    - name: by_proc_and_dir\n      values:\n        - [cat, /etc]\n  override:\n    exceptions: append\n";
    assert!(hits(&[("a", EXC), ("b", app)], &e).is_empty());
    let app = "- rule: r\n  exceptions:\n    - name: by_file\n      values: [shadow]\n  override:\n    exceptions: append\n";
    assert!(hits(&[("a", EXC), ("b", app)], &e).is_empty());
    // A new exception with modifiers and a list value.
    let app = "- rule: r\n  exceptions:\n    - name: prefix\n      fields: [fd.name, proc.name]\n      comps: [startswith oneof, in]\n      values:\n        - [[/var, /etc], [cat, dog]]\n  override:\n    exceptions: append\n";
    assert!(hits(&[("a", EXC), ("b", app)], &e).is_empty());
    // Mismatched lengths are errors.
    let bad = "- rule: r\n  desc: d\n  condition: evt.type=openat\n  output: o\n  priority: INFO\n  exceptions:\n    - name: x\n      fields: [proc.name, fd.name]\n      comps: [=]\n";
    let res = load_sources(&[("a", bad)]);
    assert!(res.errors().any(|d| {
        d.message
            .contains("fields and comps lists must have equal length")
    }));
    let bad = "- rule: r\n  desc: d\n  condition: evt.type=openat\n  output: o\n  priority: INFO\n  exceptions:\n    - name: x\n      fields: [proc.name, fd.name]\n      values: [[a]]\n";
    let res = load_sources(&[("a", bad)]);
    assert!(res.errors().any(|d| {
        d.message
            .contains("fields and values lists must have equal length")
    }));
}

#[test]
fn list_items_are_unquoted_and_lists_expand_in_conditions() {
    let src = "- list: odd\n  items: ['\"(systemd)\"', '\"puma reactor\"']\n- rule: r\n  desc: d\n  condition: evt.type = execve and proc.name in (odd)\n  output: o\n  priority: INFO\n";
    let res = load(src);
    assert!(res.is_ok());
    assert_eq!(res.ruleset.lists[0].1, ["(systemd)", "puma reactor"]);
    let p = ROOT.process(1, 0, "(systemd)", "/lib/systemd/systemd", &["(systemd)"]);
    let e = ROOT.execve(p, vec![]);
    assert_eq!(hits(&[("a", src)], &e), ["r: o"]);
}

#[test]
fn cli_listings() {
    let res = load(BASE);
    let text = cli::list(&res.ruleset, false);
    assert!(
        text.contains("r ") && text.contains("Warning") && text.contains("openat"),
        "{text}"
    );
    let json: serde_json::Value = serde_json::from_str(&cli::list(&res.ruleset, true)).unwrap();
    assert_eq!(json["rules"][0]["name"], "r");
    assert_eq!(json["rules"][0]["evttypes"][0], "openat");
    assert_eq!(
        json["lists"][1]["items"],
        serde_json::json!(["less", "more"])
    );
    let fields = cli::fields_listing(false);
    assert!(
        fields
            .lines()
            .any(|l| l.starts_with("proc.name ") && l.contains("CHARBUF"))
    );
    assert!(fields.contains("thread.cap_effective") && fields.contains("always unset"));
    let fj: serde_json::Value = serde_json::from_str(&cli::fields_listing(true)).unwrap();
    assert!(fj.as_array().unwrap().len() > 100);
    let (ok, text) = cli::validate(&[crate::tests::upstream_path()], false);
    assert!(ok);
    assert!(text.ends_with(": Ok\n"), "{text}");
}

/// Hostile rule files are refused in bounded memory and time, each with a position: lists
/// that name each other ten times over nine levels (10^9 items), macros that use each other
/// twice over thirty levels (2^30 nodes), and YAML aliases nested the same way.
#[test]
fn expansion_bombs_are_refused_with_their_position() {
    let mut lists = String::from("- list: l0\n  items: [a, b, c, d, e, f, g, h, i, j]\n");
    for i in 1..=9 {
        let names = vec![format!("l{}", i - 1); 10].join(", ");
        lists.push_str(&format!("- list: l{i}\n  items: [{names}]\n"));
    }
    lists.push_str(&format!(
        "- rule: r\n  condition: evt.type=open and proc.name in (l9)\n{RULE}"
    ));
    let res = load(&lists);
    assert!(!res.is_ok());
    let msg = res
        .errors()
        .map(|d| d.message.clone())
        .find(|m| m.contains("more than 100000 items"))
        .unwrap_or_else(|| panic!("{:#?}", res.files));
    assert!(
        msg.starts_with("List 'l5'"),
        "the first list too big: {msg}"
    );

    let mut macros = String::from("- macro: m0\n  condition: proc.name = x\n");
    for i in 1..=30 {
        let p = i - 1;
        macros.push_str(&format!("- macro: m{i}\n  condition: m{p} or m{p}\n"));
    }
    macros.push_str(&format!(
        "- rule: r\n  condition: evt.type=open and m30\n{RULE}"
    ));
    let res = load(&macros);
    let (line, _, msg) = one(&res, Code::ErrValidate);
    assert!(msg.contains("more than 200000 nodes"), "{msg}");
    assert!(
        line > 0,
        "with a position (inside the macro where it overflowed)"
    );

    let mut yaml = String::from("- list: y0\n  items: &y0 [x, x, x, x, x, x, x, x, x, x]\n");
    for i in 1..=9 {
        let refs = vec![format!("*y{}", i - 1); 10].join(", ");
        yaml.push_str(&format!("- list: y{i}\n  items: &y{i} [{refs}]\n"));
    }
    let res = load(&yaml);
    let (_, _, msg) = one(&res, Code::ErrYamlParse);
    assert!(msg.contains("250000 nodes"), "{msg}");
}

/// `osprey rules list` names each default rule's ATT&CK techniques, every technique family of
/// issue #17 has a rule, and discovery-only rules are informational and off.
#[test]
fn default_rules_list_their_attack_techniques() {
    let res = super::load_files(&[crate::testing::default_rules()]);
    assert!(res.is_ok(), "{}", cli::render_results(&res, false));
    let text = cli::list(&res.ruleset, false);
    let header = text.lines().next().unwrap();
    assert!(header.contains("ATT&CK"), "{header}");
    for r in &res.ruleset.rules {
        let ids = cli::attack_ids(&r.tags);
        assert!(
            !ids.is_empty(),
            "rule '{}' has no ATT&CK technique tag",
            r.name
        );
        let line = text
            .lines()
            .find(|l| l.starts_with(&format!("{}  ", r.name)))
            .unwrap();
        assert!(line.contains(&ids.join(",")), "{line}");
        if r.tags.iter().any(|t| t == "mitre_discovery")
            && r.tags
                .iter()
                .all(|t| !t.starts_with("mitre_") || t == "mitre_discovery")
            && r.evttypes.as_ref().is_some_and(|t| !t.contains("connect"))
        {
            assert!(
                !r.enabled && r.priority.as_str() == "Informational",
                "discovery-only rule '{}' must be informational and disabled",
                r.name
            );
        }
    }
    let all: Vec<&str> = res
        .ruleset
        .rules
        .iter()
        .flat_map(|r| cli::attack_ids(&r.tags))
        .collect();
    for want in [
        "T1003.007",
        "T1003.008",
        "T1053.003",
        "T1053.006",
        "T1136.001",
        "T1543.002",
        "T1546.004",
        "T1547.006",
        "T1548.001",
        "T1574.006",
        "T1036.004",
        "T1036.005",
        "T1055.008",
        "T1055.009",
        "T1070.002",
        "T1070.003",
        "T1070.006",
        "T1562.001",
        "T1562.006",
        "T1562.012",
        "T1014",
        "T1027",
        "T1140",
        "T1105",
        "T1611",
        "T1609",
        "T1610",
        "T1613",
    ] {
        assert!(all.contains(&want), "no default rule is tagged {want}");
    }
    assert_eq!(
        cli::attack_ids(&[
            "mitre_execution".into(),
            "T1059.004".into(),
            "T1611".into(),
            "Tx".into()
        ]),
        ["T1059.004", "T1611"]
    );
}

/// falco-sandbox_rules.yaml's sensitive_mount: container.mount.dest[GLOB] compiles, and with no
/// mount known it answers Falco's "N/A", so the rule stays quiet instead of matching everything.
#[test]
fn container_mount_fields_answer_falcos_no_mount() {
    let src = "- macro: sensitive_mount\n  condition: (not container.mount.dest[/proc*] in (\"<NA>\",\"N/A\") or not container.mount.dest[/] in (\"<NA>\",\"N/A\"))\n- rule: r\n  desc: d\n  condition: evt.type = execve and sensitive_mount\n  output: o\n  priority: INFO\n";
    let res = load(src);
    assert!(res.is_ok(), "{}", cli::render_results(&res, false));
    let p = ROOT.process(1, 0, "sh", "/bin/sh", &["sh"]);
    let e = ROOT.execve(p, vec![]);
    assert!(hits(&[("a", src)], &e).is_empty());
}

/// The rule on calls through the 32-bit entry from 64-bit code names exactly the calls the
/// other default rules want: one more would be captured for it alone, one fewer unwatched.
#[test]
fn the_rule_on_32_bit_calls_from_64_bit_code_watches_what_the_others_want() {
    let res = super::load_files(&[crate::testing::default_rules()]);
    assert!(res.is_ok(), "{}", cli::render_results(&res, false));
    let name = "Syscall through the 32-bit entry by a 64-bit program";
    let mut others = std::collections::BTreeSet::new();
    let mut its = None;
    for r in res.ruleset.rules.iter().filter(|r| r.enabled) {
        let types = r
            .evttypes
            .clone()
            .expect("every default rule names its calls");
        if r.name == name {
            its = Some(types);
        } else {
            others.extend(types);
        }
    }
    assert_eq!(its.expect("the rule is a default rule"), others);
}
