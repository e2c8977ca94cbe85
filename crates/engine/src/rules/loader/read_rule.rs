//! Reading a `rule` item: its keys, and how it overrides or extends an earlier rule of the
//! same name (Falco's `rule_loader_reader` and `rule_loader_collector` for rules).

use super::{
    read::{bool_key, exceptions, overrides, str_key, string_seq, unknown_keys},
    *,
};

const APPENDABLE: &[&str] = &["condition", "output", "desc", "tags", "exceptions"];
const REPLACEABLE: &[&str] = &[
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

impl Loader {
    pub(super) fn rule(&mut self, file: usize, text: &str, n: &Node) {
        let pos = gpos(file, n.mark.offset);
        let r = self.diags.item("rule", "", pos);
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
        let legacy_append = bool_key(n, "append", &r).unwrap_or(false);
        let ov = overrides(n, &r, (APPENDABLE, REPLACEABLE));
        // A rule with any error is dropped whole, before it can change an earlier one.
        if self.diags.errors(file) > errors_before {
            return;
        }
        if legacy_append && ov.is_some() {
            r.error(Code::ErrYamlValidate, "Keys 'override' and 'append: true' cannot be used together. Add an 'append' entry (e.g. 'condition: append') under 'override' instead.");
            return;
        }
        let existing = self.rules.iter().position(|r| r.name == name);

        if legacy_append || ov.is_some() {
            if legacy_append {
                r.warning(
                    Code::DeprecatedItem,
                    "The 'append' key is deprecated. Use 'override' with 'append' entries instead.",
                );
            }
            let Some(i) = existing else {
                r.error(Code::ErrValidate, "Rule uses 'append' or 'override.<key>: append' but no rule by that name already exists");
                return;
            };
            let keys: Vec<(String, bool)> = match ov {
                Some(o) => o,
                None => APPENDABLE
                    .iter()
                    .filter(|k| n.get(k).is_some())
                    .map(|k| (k.to_string(), true))
                    .collect(),
            };
            let rule = &mut self.rules[i];
            for (key, append) in keys {
                match (key.as_str(), append) {
                    ("condition", true) => {
                        if let Some(c) = &cond {
                            rule.cond.append(c)
                        }
                    }
                    ("condition", false) => {
                        if let Some(c) = &cond {
                            rule.cond = c.clone()
                        }
                    }
                    ("output", true) => {
                        if let Some(o) = &output {
                            rule.output.append(o)
                        }
                    }
                    ("output", false) => {
                        if let Some(o) = &output {
                            rule.output = o.clone()
                        }
                    }
                    ("desc", true) => {
                        if let Some(d) = &desc {
                            rule.desc = format!("{} {d}", rule.desc.trim_end())
                        }
                    }
                    ("desc", false) => {
                        if let Some(d) = &desc {
                            rule.desc = d.clone()
                        }
                    }
                    ("tags", true) => {
                        for t in tags.iter().flatten() {
                            if !rule.tags.contains(t) {
                                rule.tags.push(t.clone())
                            }
                        }
                    }
                    ("tags", false) => {
                        if let Some(t) = &tags {
                            rule.tags = t.clone()
                        }
                    }
                    ("exceptions", true) => {
                        for e in exceptions.iter().flatten() {
                            match rule.exceptions.iter_mut().find(|x| x.name == e.name) {
                                Some(x) => {
                                    if e.values.is_empty() {
                                        r.at_pos(e.pos).warning(
                                            Code::AppendNoValues,
                                            "Overriding/appending exception with no values",
                                        );
                                    }
                                    x.values.extend(e.values.iter().cloned());
                                }
                                None => rule.exceptions.push(e.clone()),
                            }
                        }
                    }
                    ("exceptions", false) => {
                        if let Some(e) = &exceptions {
                            rule.exceptions = e.clone()
                        }
                    }
                    ("priority", _) => {
                        if let Some(p) = priority {
                            rule.priority = p
                        }
                    }
                    ("enabled", _) => {
                        if let Some(e) = enabled {
                            rule.enabled = e
                        }
                    }
                    ("warn_evttypes", _) => {
                        if let Some(w) = warn_evttypes {
                            rule.warn_evttypes = w
                        }
                    }
                    ("skip-if-unknown-filter", _) => {
                        if let Some(s) = skip_unknown {
                            rule.skip_unknown = s
                        }
                    }
                    ("capture", _) => {
                        if let Some(c) = capture {
                            rule.capture = c
                        }
                    }
                    ("capture_duration", _) => {
                        if let Some(c) = capture_duration {
                            rule.capture_duration = c
                        }
                    }
                    _ => {}
                }
            }
            return;
        }

        // `- rule: X` + `enabled: ...` alone toggles an existing rule.
        let only_enabled = n
            .as_map()
            .unwrap_or_default()
            .iter()
            .all(|(k, _)| matches!(k.as_str(), Some("rule" | "enabled")));
        if only_enabled && let (Some(i), Some(e)) = (existing, enabled) {
            if e {
                r.warning(Code::DeprecatedItem, "Enabling a rule with 'enabled: true' alone is deprecated. Use 'override: {enabled: replace}' instead.");
            }
            self.rules[i].enabled = e;
            return;
        }
        let mut missing = None;
        for (key, present) in [
            ("condition", cond.is_some()),
            ("output", output.is_some()),
            ("desc", desc.is_some()),
            ("priority", priority.is_some()),
        ] {
            if !present {
                missing = Some(key);
                break;
            }
        }
        if let Some(key) = missing {
            r.error(
                Code::ErrYamlValidate,
                format!("Item has no mapping for key '{key}'"),
            );
            return;
        }
        let def = RuleDef {
            name,
            desc: desc.unwrap_or_default(),
            cond: cond.unwrap_or_default(),
            output: output.unwrap_or_default(),
            priority: priority.unwrap_or(Priority::Debug),
            enabled: enabled.unwrap_or(true),
            tags: tags.unwrap_or_default(),
            source: source.unwrap_or_else(|| "syscall".into()),
            exceptions: exceptions.unwrap_or_default(),
            warn_evttypes: warn_evttypes.unwrap_or(true),
            skip_unknown: skip_unknown.unwrap_or(false),
            capture: capture.unwrap_or(false),
            capture_duration: capture_duration.unwrap_or(0),
            pos,
        };
        match existing {
            Some(i) => self.rules[i] = def,
            None => self.rules.push(def),
        }
    }
}
