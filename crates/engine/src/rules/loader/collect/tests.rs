//! The collector's semantics for each item kind, through the loader: what a definition, an
//! append and a replace do, and the exact diagnostic (code, file:line:column, message) when
//! one is refused.

use osprey_model::Priority;

use crate::rules::{LoadResult, Rule, load_sources};

/// Every diagnostic as (code, "file:line:column", message): errors file by file, then
/// warnings file by file.
fn diags(res: &LoadResult) -> Vec<(&'static str, String, String)> {
    res.errors()
        .chain(res.warnings())
        .map(|d| (d.code.as_str(), d.at(), d.message.clone()))
        .collect()
}

fn diag(code: &'static str, at: &str, message: &str) -> (&'static str, String, String) {
    (code, at.to_string(), message.to_string())
}

fn list<'a>(res: &'a LoadResult, name: &str) -> &'a [String] {
    let l = res.ruleset.lists.iter().find(|(n, _)| n == name);
    &l.unwrap_or_else(|| panic!("no list {name}")).1
}

fn macro_condition<'a>(res: &'a LoadResult, name: &str) -> &'a str {
    let m = res.ruleset.macros.iter().find(|(n, _)| n == name);
    &m.unwrap_or_else(|| panic!("no macro {name}")).1
}

fn rule<'a>(res: &'a LoadResult, name: &str) -> &'a Rule {
    let r = res.ruleset.rules.iter().find(|r| r.name == name);
    r.unwrap_or_else(|| panic!("no rule {name}"))
}

/// A rule that uses lists `l` and `m`, so that neither is reported unused.
const USES: &str = "- rule: uses\n  desc: d\n  condition: evt.type = openat and proc.name in (l, m)\n  output: o\n  priority: INFO\n";

#[test]
fn override_replace_of_a_list_redefines_it_in_place() {
    let a = "- list: l\n  items: [a, b]\n- list: m\n  items: [x]\n";
    let b = "- list: l\n  items: [c]\n  override:\n    items: replace\n";
    let res = load_sources(&[("a.yaml", a), ("b.yaml", b)]);
    assert_eq!(list(&res, "l"), ["c"]);
    let names: Vec<_> = res.ruleset.lists.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["l", "m"], "l keeps its place");
    // ... and the position of its first definition, where an unused-list warning points.
    assert_eq!(
        diags(&res),
        [
            diag(
                "LOAD_UNUSED_LIST",
                "a.yaml:1:3",
                "List 'l' not referred to by any other rule/macro"
            ),
            diag(
                "LOAD_UNUSED_LIST",
                "a.yaml:3:3",
                "List 'm' not referred to by any other rule/macro"
            ),
        ]
    );
    // A replace of a list not defined yet is its definition, as in Falco's reader.
    let res = load_sources(&[("b.yaml", b)]);
    assert!(res.is_ok());
    assert_eq!(list(&res, "l"), ["c"]);
    // Items appended after a replace go after the new items.
    let c = "- list: l\n  items: [d]\n  override:\n    items: append\n";
    let res = load_sources(&[("a.yaml", a), ("b.yaml", b), ("c.yaml", c), ("u", USES)]);
    assert!(res.is_ok());
    assert_eq!(list(&res, "l"), ["c", "d"]);
}

#[test]
fn append_to_a_macro_joins_its_condition() {
    let a = "- macro: mc\n  condition: proc.name = a\n";
    let legacy = "- macro: mc\n  condition: or proc.name = b\n  append: true\n";
    let res = load_sources(&[("a.yaml", a), ("b.yaml", legacy)]);
    assert_eq!(
        macro_condition(&res, "mc"),
        "proc.name = a or proc.name = b"
    );
    assert_eq!(
        diags(&res),
        [
            diag(
                "LOAD_UNUSED_MACRO",
                "a.yaml:1:3",
                "Macro 'mc' not referred to by any other rule/macro"
            ),
            diag(
                "LOAD_DEPRECATED_ITEM",
                "b.yaml:1:3",
                "The 'append' key is deprecated. Use 'override: {condition: append}' instead."
            ),
        ]
    );
    let ov = "- macro: mc\n  condition: or proc.name = b\n  override:\n    condition: append\n";
    let res = load_sources(&[("a.yaml", a), ("b.yaml", ov)]);
    assert_eq!(
        macro_condition(&res, "mc"),
        "proc.name = a or proc.name = b"
    );
    assert_eq!(diags(&res).len(), 1, "only the unused macro: {res:?}");
    let ov = "- macro: mc\n  condition: proc.name = c\n  override:\n    condition: replace\n";
    let res = load_sources(&[("a.yaml", a), ("b.yaml", ov)]);
    assert_eq!(macro_condition(&res, "mc"), "proc.name = c");
}

#[test]
fn updating_an_item_that_does_not_exist_is_an_error() {
    let list_msg =
        "List uses 'append' or 'override.items: append' but no list by that name already exists";
    let macro_msg = "Macro uses 'append' or 'override.condition: append' but no macro by that name already exists";
    let rule_msg =
        "Rule uses 'append' or 'override.<key>: append' but no rule by that name already exists";
    for (src, msg) in [
        (
            "- list: l\n  items: [a]\n  override:\n    items: append\n",
            list_msg,
        ),
        (
            "- macro: mc\n  condition: x\n  override:\n    condition: append\n",
            macro_msg,
        ),
        (
            "- rule: r\n  condition: and x\n  override:\n    condition: append\n",
            rule_msg,
        ),
        // A rule's replace changes the rule it names: it must exist too.
        (
            "- rule: r\n  priority: INFO\n  override:\n    priority: replace\n",
            rule_msg,
        ),
    ] {
        let res = load_sources(&[("b.yaml", src)]);
        assert_eq!(
            diags(&res),
            [diag("LOAD_ERR_VALIDATE", "b.yaml:1:3", msg)],
            "{src}"
        );
        assert!(res.ruleset.lists.is_empty() && res.ruleset.macros.is_empty());
    }
    // Legacy append: the same error, after the deprecation warning.
    let res = load_sources(&[("b.yaml", "- list: l\n  items: [a]\n  append: true\n")]);
    assert_eq!(
        diags(&res),
        [
            diag("LOAD_ERR_VALIDATE", "b.yaml:1:3", list_msg),
            diag(
                "LOAD_DEPRECATED_ITEM",
                "b.yaml:1:3",
                "The 'append' key is deprecated. Use 'override: {items: append}' instead."
            ),
        ]
    );
}

#[test]
fn append_and_override_together_is_an_error() {
    let a = "- macro: mc\n  condition: proc.name = a\n";
    let b = "- macro: mc\n  condition: or x\n  append: true\n  override:\n    condition: append\n";
    let res = load_sources(&[("a.yaml", a), ("b.yaml", b)]);
    let (code, at, msg) = &diags(&res)[0];
    assert_eq!(
        (*code, at.as_str()),
        ("LOAD_ERR_YAML_VALIDATE", "b.yaml:1:3")
    );
    assert_eq!(
        msg,
        "Keys 'override' and 'append: true' cannot be used together. Add an 'append' entry (e.g. 'condition: append') under 'override' instead."
    );
    assert_eq!(
        macro_condition(&res, "mc"),
        "proc.name = a",
        "nothing is merged"
    );
}

const RULE: &str = "- rule: r\n  desc: d\n  condition: evt.type = openat\n  output: o\n  priority: INFO\n  tags: [t1]\n- rule: s\n  desc: d\n  condition: evt.type = openat\n  output: s\n  priority: INFO\n";

#[test]
fn override_appends_and_replaces_a_rules_keys() {
    let ov = "- rule: r\n  desc: more\n  tags: [t1, t2]\n  output: o2\n  priority: WARNING\n  override:\n    desc: append\n    tags: append\n    output: replace\n    priority: replace\n";
    let res = load_sources(&[("a.yaml", RULE), ("b.yaml", ov)]);
    assert_eq!(diags(&res), []);
    let r = rule(&res, "r");
    assert_eq!(r.desc, "d more");
    assert_eq!(r.tags, ["t1", "t2"], "tags already there are not repeated");
    assert_eq!(r.output_text, "o2");
    assert_eq!(r.priority, Priority::Warning);
    assert_eq!(r.condition, "evt.type = openat", "not overridden");
    assert_eq!(
        r.file.as_ref().map(|p| (&*p.name, p.line)),
        Some(("a.yaml", 1)),
        "an update keeps where the rule is defined"
    );
    // Legacy append appends every appendable key the item sets.
    let legacy =
        "- rule: r\n  condition: and proc.name = cat\n  output: (%proc.name)\n  append: true\n";
    let res = load_sources(&[("a.yaml", RULE), ("b.yaml", legacy)]);
    let r = rule(&res, "r");
    assert_eq!(r.condition, "evt.type = openat and proc.name = cat");
    assert_eq!(r.output_text, "o (%proc.name)");
    assert_eq!(
        diags(&res),
        [diag(
            "LOAD_DEPRECATED_ITEM",
            "b.yaml:1:3",
            "The 'append' key is deprecated. Use 'override' with 'append' entries instead."
        )]
    );
}

#[test]
fn a_rule_with_an_error_is_dropped_before_it_is_merged() {
    // The update names a rule that does not exist: had it been merged, that would be an error
    // too.
    let bad = "- rule: nope\n  condition: and proc.name = cat\n  priority: LOUD\n  override:\n    condition: append\n";
    let res = load_sources(&[("a.yaml", RULE), ("b.yaml", bad)]);
    assert_eq!(
        diags(&res),
        [diag(
            "LOAD_ERR_YAML_VALIDATE",
            "b.yaml:3:13",
            "Invalid priority 'LOUD'"
        )]
    );
}

#[test]
fn a_later_definition_replaces_the_earlier_in_place() {
    let again =
        "- rule: r\n  desc: new\n  condition: evt.type = execve\n  output: o\n  priority: INFO\n";
    let res = load_sources(&[("a.yaml", RULE), ("b.yaml", again)]);
    let names: Vec<_> = res.ruleset.rules.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(names, ["r", "s"]);
    let r = rule(&res, "r");
    assert_eq!(
        (r.desc.as_str(), r.condition.as_str()),
        ("new", "evt.type = execve")
    );
    assert!(r.tags.is_empty(), "replaced whole");
    assert_eq!(
        r.file.as_ref().map(|p| (&*p.name, p.line)),
        Some(("b.yaml", 1))
    );
    // `enabled` alone toggles the rule; enabling that way is deprecated.
    let off = "- rule: r\n  enabled: false\n";
    let on = "- rule: r\n  enabled: true\n";
    let res = load_sources(&[("a.yaml", RULE), ("b.yaml", off)]);
    assert_eq!(diags(&res), []);
    assert!(!rule(&res, "r").enabled);
    let res = load_sources(&[("a.yaml", RULE), ("b.yaml", off), ("c.yaml", on)]);
    assert!(rule(&res, "r").enabled);
    assert_eq!(
        diags(&res),
        [diag(
            "LOAD_DEPRECATED_ITEM",
            "c.yaml:1:3",
            "Enabling a rule with 'enabled: true' alone is deprecated. Use 'override: {enabled: replace}' instead."
        )]
    );
    // Profiles, which have no key to override, are replaced the same way.
    let p = "- profile: p\n  scope: host\n- profile: q\n  scope: host\n";
    let p2 = "- profile: p\n  desc: again\n  scope: {containers: all}\n";
    let res = load_sources(&[("a.yaml", p), ("b.yaml", p2)]);
    assert_eq!(diags(&res), []);
    let got: Vec<_> = res
        .ruleset
        .profiles
        .iter()
        .map(|p| (p.name.as_str(), p.desc.as_str()))
        .collect();
    assert_eq!(got, [("p", "again"), ("q", "")]);
}
