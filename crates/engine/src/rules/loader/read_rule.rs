//! Reading a `rule` item: its keys, and how it overrides or extends an earlier rule of the
//! same name (Falco's `rule_loader_reader` and `rule_loader_collector` for rules).

use super::*;

impl Loader {
    pub(super) fn rule(&mut self, file: usize, text: &str, n: &Node) {
        let pos = gpos(file, n.mark.offset);
        let mut item = Item {
            kind: "rule",
            name: String::new(),
            pos,
        };
        let Some(name) = self.str_key(n, "rule", &item, file) else {
            return;
        };
        if name.is_empty() {
            self.report(
                Code::ErrYamlValidate,
                "Mapping for key 'rule' is empty",
                Some(&item),
                None,
                None,
            );
            return;
        }
        item.name = name.clone();
        self.unknown_keys(file, n, &item, RULE_KEYS);
        let errors_before = self.results[file].errors.len();

        let desc = self.str_key(n, "desc", &item, file);
        let cond = n
            .get("condition")
            .and_then(|c| c.as_str().map(|_| Text::from_node(file, text, c)));
        if let Some(c) = n.get("condition")
            && c.as_str().is_none()
        {
            self.report(
                Code::ErrYamlValidate,
                "Value of 'condition' must be a string",
                Some(&item),
                Some(gpos(file, c.mark.offset)),
                None,
            );
        }
        let output = n
            .get("output")
            .and_then(|c| c.as_str().map(|_| Text::from_node(file, text, c)));
        let priority = match n.get("priority") {
            None => None,
            Some(p) => match p.as_str().and_then(Priority::parse) {
                Some(p) => Some(p),
                None => {
                    self.report(
                        Code::ErrYamlValidate,
                        format!("Invalid priority '{}'", p.as_str().unwrap_or_default()),
                        Some(&item),
                        Some(gpos(file, p.mark.offset)),
                        None,
                    );
                    None
                }
            },
        };
        let enabled = self.bool_key(n, "enabled", &item, file);
        let warn_evttypes = self.bool_key(n, "warn_evttypes", &item, file);
        let skip_unknown = self.bool_key(n, "skip-if-unknown-filter", &item, file);
        let capture = self.bool_key(n, "capture", &item, file);
        let capture_duration = n
            .get("capture_duration")
            .map(|v| v.as_str().and_then(|s| s.parse::<u64>().ok()));
        if let Some(None) = capture_duration {
            self.report(
                Code::ErrYamlValidate,
                "Value of 'capture_duration' must be an integer",
                Some(&item),
                None,
                None,
            );
        }
        let tags = match n.get("tags") {
            Some(t) => self.string_seq(t, "tags", &item, file),
            None => None,
        };
        let source = self.str_key(n, "source", &item, file);
        let exceptions = match n.get("exceptions") {
            Some(e) => self.exceptions(file, e, &item),
            None => None,
        };
        let legacy_append = self.bool_key(n, "append", &item, file).unwrap_or(false);
        let ov = self.overrides(n, &item, file, (APPENDABLE, REPLACEABLE));
        if self.results[file].errors.len() > errors_before {
            return;
        }
        if legacy_append && ov.is_some() {
            self.report(Code::ErrYamlValidate, "Keys 'override' and 'append: true' cannot be used together. Add an 'append' entry (e.g. 'condition: append') under 'override' instead.", Some(&item), None, None);
            return;
        }
        let existing = self.rules.iter().position(|r| r.name == name);

        if legacy_append || ov.is_some() {
            if legacy_append {
                self.report(
                    Code::DeprecatedItem,
                    "The 'append' key is deprecated. Use 'override' with 'append' entries instead.",
                    Some(&item),
                    None,
                    None,
                );
            }
            let Some(i) = existing else {
                self.report(Code::ErrValidate, "Rule uses 'append' or 'override.<key>: append' but no rule by that name already exists", Some(&item), None, None);
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
            let mut warn_no_values = Vec::new();
            let r = &mut self.rules[i];
            for (key, append) in keys {
                match (key.as_str(), append) {
                    ("condition", true) => {
                        if let Some(c) = &cond {
                            r.cond.append(c)
                        }
                    }
                    ("condition", false) => {
                        if let Some(c) = &cond {
                            r.cond = c.clone()
                        }
                    }
                    ("output", true) => {
                        if let Some(o) = &output {
                            r.output.append(o)
                        }
                    }
                    ("output", false) => {
                        if let Some(o) = &output {
                            r.output = o.clone()
                        }
                    }
                    ("desc", true) => {
                        if let Some(d) = &desc {
                            r.desc = format!("{} {d}", r.desc.trim_end())
                        }
                    }
                    ("desc", false) => {
                        if let Some(d) = &desc {
                            r.desc = d.clone()
                        }
                    }
                    ("tags", true) => {
                        for t in tags.iter().flatten() {
                            if !r.tags.contains(t) {
                                r.tags.push(t.clone())
                            }
                        }
                    }
                    ("tags", false) => {
                        if let Some(t) = &tags {
                            r.tags = t.clone()
                        }
                    }
                    ("exceptions", true) => {
                        for e in exceptions.iter().flatten() {
                            match r.exceptions.iter_mut().find(|x| x.name == e.name) {
                                Some(x) => {
                                    if e.values.is_empty() {
                                        warn_no_values.push(e.pos)
                                    }
                                    x.values.extend(e.values.iter().cloned());
                                }
                                None => r.exceptions.push(e.clone()),
                            }
                        }
                    }
                    ("exceptions", false) => {
                        if let Some(e) = &exceptions {
                            r.exceptions = e.clone()
                        }
                    }
                    ("priority", _) => {
                        if let Some(p) = priority {
                            r.priority = p
                        }
                    }
                    ("enabled", _) => {
                        if let Some(e) = enabled {
                            r.enabled = e
                        }
                    }
                    ("warn_evttypes", _) => {
                        if let Some(w) = warn_evttypes {
                            r.warn_evttypes = w
                        }
                    }
                    ("skip-if-unknown-filter", _) => {
                        if let Some(s) = skip_unknown {
                            r.skip_unknown = s
                        }
                    }
                    ("capture", _) => {
                        if let Some(c) = capture {
                            r.capture = c
                        }
                    }
                    ("capture_duration", _) => {
                        if let Some(Some(c)) = capture_duration {
                            r.capture_duration = c
                        }
                    }
                    _ => {}
                }
            }
            for at in warn_no_values {
                self.report(
                    Code::AppendNoValues,
                    "Overriding/appending exception with no values",
                    Some(&item),
                    Some(at),
                    None,
                );
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
                self.report(Code::DeprecatedItem, "Enabling a rule with 'enabled: true' alone is deprecated. Use 'override: {enabled: replace}' instead.", Some(&item), None, None);
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
            self.report(
                Code::ErrYamlValidate,
                format!("Item has no mapping for key '{key}'"),
                Some(&item),
                None,
                None,
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
            capture_duration: capture_duration.flatten().unwrap_or(0),
            pos,
        };
        match existing {
            Some(i) => self.rules[i] = def,
            None => self.rules.push(def),
        }
    }
}
