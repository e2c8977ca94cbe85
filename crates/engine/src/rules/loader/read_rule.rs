//! Reading a `rule` item (Falco's `rule_loader_reader` for rules), and how a rule's keys are
//! appended to or replaced when a later item overrides it (its part in the collector).

use super::{
    read::{bool_key, exceptions, str_key, string_seq, unknown_keys},
    *,
};

const RULE_KEYS: &[&str] = &[
    "rule",
    "desc",
    "condition",
    "output",
    "priority",
    "enabled",
    "tags",
    "source",
    "exceptions",
    "override",
    "append",
    "warn_evttypes",
    "skip-if-unknown-filter",
    "capture",
    "capture_duration",
];

/// What one `rule` item says: every key is optional, since an override names only what it
/// changes. A definition needs `condition`, `output`, `desc` and `priority`.
pub(super) struct RuleItem {
    name: String,
    desc: Option<String>,
    cond: Option<Text>,
    output: Option<Text>,
    priority: Option<Priority>,
    enabled: Option<bool>,
    tags: Option<Vec<String>>,
    source: Option<String>,
    exceptions: Option<Vec<ExceptionDef>>,
    warn_evttypes: Option<bool>,
    skip_unknown: Option<bool>,
    capture: Option<bool>,
    capture_duration: Option<u64>,
    pos: GPos,
}

impl Loader {
    pub(super) fn rule(&mut self, file: usize, text: &str, n: &Node) {
        let pos = gpos(file, n.mark.offset);
        let r = self.diags.item(RuleDef::KIND, "", pos);
        let Some(name) = str_key(n, "rule", &r) else {
            return;
        };
        if name.is_empty() {
            r.error(Code::ErrYamlValidate, "Mapping for key 'rule' is empty");
            return;
        }
        let r = r.named(&name);
        unknown_keys(n, &r, RULE_KEYS);
        let errors_before = self.diags.errors(file);

        let desc = str_key(n, "desc", &r);
        let text_of = |key| {
            n.get(key)
                .and_then(|c| c.as_str().map(|_| Text::from_node(file, text, c)))
        };
        let cond = text_of("condition");
        if let Some(c) = n.get("condition")
            && c.as_str().is_none()
        {
            r.at(c).error(
                Code::ErrYamlValidate,
                "Value of 'condition' must be a string",
            );
        }
        let output = text_of("output");
        let priority = n.get("priority").and_then(|p| {
            let parsed = p.as_str().and_then(Priority::parse);
            if parsed.is_none() {
                r.at(p).error(
                    Code::ErrYamlValidate,
                    format!("Invalid priority '{}'", p.as_str().unwrap_or_default()),
                );
            }
            parsed
        });
        let enabled = bool_key(n, "enabled", &r);
        let warn_evttypes = bool_key(n, "warn_evttypes", &r);
        let skip_unknown = bool_key(n, "skip-if-unknown-filter", &r);
        let capture = bool_key(n, "capture", &r);
        let capture_duration = n.get("capture_duration").and_then(|v| {
            let d = v.as_str().and_then(|s| s.parse::<u64>().ok());
            if d.is_none() {
                r.error(
                    Code::ErrYamlValidate,
                    "Value of 'capture_duration' must be an integer",
                );
            }
            d
        });
        let tags = n.get("tags").and_then(|t| string_seq(t, "tags", &r));
        let source = str_key(n, "source", &r);
        let exceptions = n.get("exceptions").and_then(|e| exceptions(e, &r));
        let merge = Merge::read::<RuleDef>(n, &r);
        // A rule with any error is dropped whole, before it can change an earlier one.
        if self.diags.errors(file) > errors_before {
            return;
        }
        // `- rule: X` + `enabled: ...` alone toggles an existing rule (Falco's `enable`).
        let only_enabled = n
            .as_map()
            .unwrap_or_default()
            .iter()
            .all(|(k, _)| matches!(k.as_str(), Some("rule" | "enabled")));
        if merge.is_definition()
            && only_enabled
            && let Some(e) = enabled
            && let Some(rule) = self.rules.get_mut(&name)
        {
            if e {
                r.warning(Code::DeprecatedItem, "Enabling a rule with 'enabled: true' alone is deprecated. Use 'override: {enabled: replace}' instead.");
            }
            rule.enabled = e;
            return;
        }
        let item = RuleItem {
            name,
            desc,
            cond,
            output,
            priority,
            enabled,
            tags,
            source,
            exceptions,
            warn_evttypes,
            skip_unknown,
            capture,
            capture_duration,
            pos,
        };
        self.rules.add(item, merge, &r);
    }
}

/// Appending joins a rule's condition, output or description with a space, adds new tags, and
/// adds exceptions (or values to an exception of the same name); replacing sets the key. A
/// later definition replaces the rule whole, with its position.
impl Definition for RuleDef {
    type Item = RuleItem;
    const KIND: &'static str = "rule";
    const APPENDABLE: &'static [&'static str] =
        &["condition", "output", "desc", "tags", "exceptions"];
    const REPLACEABLE: &'static [&'static str] = &[
        "condition",
        "output",
        "desc",
        "priority",
        "tags",
        "exceptions",
        "enabled",
        "warn_evttypes",
        "skip-if-unknown-filter",
        "capture",
        "capture_duration",
    ];

    fn name(&self) -> &str {
        &self.name
    }

    fn item_name(item: &RuleItem) -> &str {
        &item.name
    }

    fn define(item: RuleItem, r: &Reporter) -> Option<Self> {
        let RuleItem {
            name,
            desc: Some(desc),
            cond: Some(cond),
            output: Some(output),
            priority: Some(priority),
            ..
        } = item
        else {
            let missing = [
                ("condition", item.cond.is_none()),
                ("output", item.output.is_none()),
                ("desc", item.desc.is_none()),
                ("priority", item.priority.is_none()),
            ];
            let key = missing.iter().find(|(_, m)| *m).map_or("", |(k, _)| k);
            r.error(
                Code::ErrYamlValidate,
                format!("Item has no mapping for key '{key}'"),
            );
            return None;
        };
        Some(RuleDef {
            name,
            desc,
            cond,
            output,
            priority,
            enabled: item.enabled.unwrap_or(true),
            tags: item.tags.unwrap_or_default(),
            source: item.source.unwrap_or_else(|| "syscall".into()),
            exceptions: item.exceptions.unwrap_or_default(),
            warn_evttypes: item.warn_evttypes.unwrap_or(true),
            skip_unknown: item.skip_unknown.unwrap_or(false),
            capture: item.capture.unwrap_or(false),
            capture_duration: item.capture_duration.unwrap_or(0),
            pos: item.pos,
        })
    }

    fn merge(&mut self, key: &str, append: bool, item: &RuleItem, r: &Reporter) {
        fn set<T: Clone>(to: &mut T, from: &Option<T>) {
            if let Some(v) = from {
                to.clone_from(v);
            }
        }
        match (key, append) {
            ("condition", true) => item.cond.iter().for_each(|c| self.cond.append(c)),
            ("condition", false) => set(&mut self.cond, &item.cond),
            ("output", true) => item.output.iter().for_each(|o| self.output.append(o)),
            ("output", false) => set(&mut self.output, &item.output),
            ("desc", true) => {
                if let Some(d) = &item.desc {
                    self.desc = format!("{} {d}", self.desc.trim_end());
                }
            }
            ("desc", false) => set(&mut self.desc, &item.desc),
            ("tags", true) => {
                for t in item.tags.iter().flatten() {
                    if !self.tags.contains(t) {
                        self.tags.push(t.clone());
                    }
                }
            }
            ("tags", false) => set(&mut self.tags, &item.tags),
            ("exceptions", true) => {
                for e in item.exceptions.iter().flatten() {
                    match self.exceptions.iter_mut().find(|x| x.name == e.name) {
                        Some(x) => {
                            if e.values.is_empty() {
                                r.at_pos(e.pos).warning(
                                    Code::AppendNoValues,
                                    "Overriding/appending exception with no values",
                                );
                            }
                            x.values.extend(e.values.iter().cloned());
                        }
                        None => self.exceptions.push(e.clone()),
                    }
                }
            }
            ("exceptions", false) => set(&mut self.exceptions, &item.exceptions),
            ("priority", _) => set(&mut self.priority, &item.priority),
            ("enabled", _) => set(&mut self.enabled, &item.enabled),
            ("warn_evttypes", _) => set(&mut self.warn_evttypes, &item.warn_evttypes),
            ("skip-if-unknown-filter", _) => set(&mut self.skip_unknown, &item.skip_unknown),
            ("capture", _) => set(&mut self.capture, &item.capture),
            ("capture_duration", _) => set(&mut self.capture_duration, &item.capture_duration),
            _ => {}
        }
    }
}
