//! Reading: YAML items of one file into list, macro and profile definitions (Falco's
//! `rule_loader_reader`), including the keys every item kind shares (`override`, `append`,
//! exceptions). Rules have their own reader in `read_rule`.

use super::*;

impl Loader {
    pub(super) fn add_source(&mut self, name: &str, text: Result<String, String>) {
        let idx = self.srcs.len();
        self.results.push(FileResult {
            name: name.to_string(),
            successful: true,
            errors: Vec::new(),
            warnings: Vec::new(),
        });
        let text = match text {
            Ok(t) => t,
            Err(e) => {
                self.srcs.push(Src {
                    name: name.into(),
                    text: String::new(),
                    lines: LineIndex::new(""),
                });
                self.report(Code::ErrFileRead, e, None, Some(gpos(idx, 0)), None);
                return;
            }
        };
        self.srcs.push(Src {
            name: name.into(),
            lines: LineIndex::new(&text),
            text,
        });
        let text = self.srcs[idx].text.clone();
        let doc = match yaml::parse(&text) {
            Ok(d) => d,
            Err(e) => {
                self.report(
                    Code::ErrYamlParse,
                    e.message,
                    None,
                    Some(gpos(idx, e.mark.offset)),
                    None,
                );
                return;
            }
        };
        let Some(doc) = doc else { return };
        if doc.is_null() {
            return;
        }
        let Some(items) = doc.as_seq() else {
            self.report(
                Code::ErrYamlValidate,
                "Rules content is not yaml array of objects",
                None,
                Some(gpos(idx, doc.mark.offset)),
                None,
            );
            return;
        };
        for item in items {
            self.item(idx, &text, item);
        }
    }

    pub(super) fn item(&mut self, file: usize, text: &str, n: &Node) {
        let pos = gpos(file, n.mark.offset);
        if n.as_map().is_none() {
            self.report(
                Code::ErrYamlValidate,
                "Unexpected element type. Each element should be a yaml associative array.",
                None,
                Some(pos),
                None,
            );
            return;
        }
        if let Some(v) = n.get("required_engine_version") {
            self.engine_version(file, n, v);
        } else if let Some(v) = n.get("required_plugin_versions") {
            self.plugin_versions(file, v);
        } else if n.get("list").is_some() {
            self.list(file, n);
        } else if n.get("macro").is_some() {
            self.macro_item(file, text, n);
        } else if n.get("rule").is_some() {
            self.rule(file, text, n);
        } else if n.get("profile").is_some() {
            self.profile(file, n);
        } else {
            let keys: Vec<&str> = n
                .as_map()
                .unwrap_or_default()
                .iter()
                .filter_map(|(k, _)| k.as_str())
                .collect();
            self.report(
                Code::UnknownItem,
                format!("Unknown top level item with keys {keys:?}"),
                None,
                Some(pos),
                None,
            );
        }
    }

    pub(super) fn unknown_keys(&mut self, file: usize, n: &Node, item: &Item, allowed: &[&str]) {
        for (k, _) in n.as_map().unwrap_or_default() {
            let key = k.as_str().unwrap_or_default();
            if !allowed.contains(&key) {
                self.report(
                    Code::UnknownKey,
                    format!("Unknown key '{key}'. The key will be ignored"),
                    Some(item),
                    Some(gpos(file, k.mark.offset)),
                    None,
                );
            }
        }
    }

    pub(super) fn engine_version(&mut self, file: usize, n: &Node, v: &Node) {
        let item = Item {
            kind: "required_engine_version",
            name: String::new(),
            pos: gpos(file, n.mark.offset),
        };
        let s = v.as_str().unwrap_or_default().trim().to_string();
        let parsed: Option<(u64, u64, u64)> = if let Ok(n) = s.parse::<u64>() {
            // Pre-semver versions were a single number, now the minor.
            Some((0, n, 0))
        } else {
            let mut it = s.split('.').map(|p| p.parse::<u64>());
            match (it.next(), it.next(), it.next(), it.next()) {
                (Some(Ok(a)), Some(Ok(b)), Some(Ok(c)), None) => Some((a, b, c)),
                _ => None,
            }
        };
        match parsed {
            None => self.report(
                Code::ErrValidate,
                format!("Unable to parse engine version '{s}' as a semver string. Expected \"x.y.z\" semver format."),
                Some(&item),
                Some(gpos(file, v.mark.offset)),
                None,
            ),
            Some(req) if req > ENGINE_VERSION => {
                let (a, b, c) = ENGINE_VERSION;
                self.report(
                    Code::ErrValidate,
                    format!("Rules require engine version {s}, but engine version is {a}.{b}.{c}"),
                    Some(&item),
                    Some(gpos(file, v.mark.offset)),
                    None,
                );
            }
            Some(_) => {
                if self.required_engine_version.as_deref().is_none_or(|cur| cur < s.as_str()) {
                    self.required_engine_version = Some(s);
                }
            }
        }
    }

    pub(super) fn plugin_versions(&mut self, file: usize, v: &Node) {
        let Some(seq) = v.as_seq() else {
            self.report(
                Code::ErrYamlValidate,
                "Value of required_plugin_versions must be a sequence",
                None,
                Some(gpos(file, v.mark.offset)),
                None,
            );
            return;
        };
        for p in seq {
            let item = Item {
                kind: "required_plugin_versions",
                name: p
                    .get("name")
                    .and_then(Node::as_str)
                    .unwrap_or_default()
                    .to_string(),
                pos: gpos(file, p.mark.offset),
            };
            if p.get("name").and_then(Node::as_str).is_none()
                || p.get("version").and_then(Node::as_str).is_none()
            {
                self.report(
                    Code::ErrYamlValidate,
                    "required_plugin_versions entries need a 'name' and a 'version'",
                    Some(&item),
                    None,
                    None,
                );
                continue;
            }
            let names = std::iter::once(item.name.clone()).chain(
                p.get("alternatives")
                    .and_then(Node::as_seq)
                    .unwrap_or_default()
                    .iter()
                    .filter_map(|a| a.get("name").and_then(Node::as_str).map(str::to_string)),
            );
            if !names
                .into_iter()
                .any(|n| BUILTIN_PLUGINS.contains(&n.as_str()))
            {
                self.report(
                    Code::WarningExtension,
                    format!(
                        "Plugin '{}' is required by this ruleset but Osprey has no such plugin; rules that need its event source or fields will not load",
                        item.name
                    ),
                    Some(&item),
                    None,
                    None,
                );
            }
        }
    }

    pub(super) fn str_key(
        &mut self,
        n: &Node,
        key: &str,
        item: &Item,
        file: usize,
    ) -> Option<String> {
        let v = n.get(key)?;
        match &v.kind {
            Kind::Scalar(s, _) => Some(s.clone()),
            _ => {
                self.report(
                    Code::ErrYamlValidate,
                    format!("Value of '{key}' must be a string"),
                    Some(item),
                    Some(gpos(file, v.mark.offset)),
                    None,
                );
                None
            }
        }
    }

    pub(super) fn bool_key(
        &mut self,
        n: &Node,
        key: &str,
        item: &Item,
        file: usize,
    ) -> Option<bool> {
        let v = n.get(key)?;
        let b = v.as_bool();
        if b.is_none() {
            self.report(
                Code::ErrYamlValidate,
                format!("Value of '{key}' must be a boolean (true or false)"),
                Some(item),
                Some(gpos(file, v.mark.offset)),
                None,
            );
        }
        b
    }

    pub(super) fn string_seq(
        &mut self,
        v: &Node,
        what: &str,
        item: &Item,
        file: usize,
    ) -> Option<Vec<String>> {
        match &v.kind {
            Kind::Seq(items) => {
                let mut out = Vec::with_capacity(items.len());
                for i in items {
                    match i.as_str() {
                        Some(s) => out.push(s.to_string()),
                        None => {
                            self.report(
                                Code::ErrYamlValidate,
                                format!("Items of '{what}' must be strings or numbers"),
                                Some(item),
                                Some(gpos(file, i.mark.offset)),
                                None,
                            );
                            return None;
                        }
                    }
                }
                Some(out)
            }
            _ if v.is_null() => Some(Vec::new()),
            _ => {
                self.report(
                    Code::ErrYamlValidate,
                    format!("Value of '{what}' must be a sequence"),
                    Some(item),
                    Some(gpos(file, v.mark.offset)),
                    None,
                );
                None
            }
        }
    }

    /// `override:` → key → "append" | "replace".
    pub(super) fn overrides(
        &mut self,
        n: &Node,
        item: &Item,
        file: usize,
        keys_allowed: (&[&str], &[&str]),
    ) -> Option<Vec<(String, bool)>> {
        let o = n.get("override")?;
        let Some(map) = o.as_map() else {
            self.report(
                Code::ErrYamlValidate,
                "Value of 'override' must be a map",
                Some(item),
                Some(gpos(file, o.mark.offset)),
                None,
            );
            return Some(Vec::new());
        };
        let mut out = Vec::new();
        for (k, v) in map {
            let key = k.as_str().unwrap_or_default().to_string();
            let at = Some(gpos(file, k.mark.offset));
            let append = match v.as_str() {
                Some("append") => true,
                Some("replace") => false,
                _ => {
                    self.report(
                        Code::ErrYamlValidate,
                        format!(
                            "Invalid override value for key '{key}': must be 'append' or 'replace'"
                        ),
                        Some(item),
                        at,
                        None,
                    );
                    continue;
                }
            };
            let allowed = if append {
                keys_allowed.0
            } else {
                keys_allowed.1
            };
            if !allowed.contains(&key.as_str()) {
                let msg = if append && keys_allowed.1.contains(&key.as_str()) {
                    format!("Key '{key}' cannot be appended to, use 'replace' instead")
                } else {
                    format!("Key '{key}' cannot be overridden")
                };
                self.report(Code::ErrYamlValidate, msg, Some(item), at, None);
                continue;
            }
            if n.get(&key).is_none() {
                self.report(
                    Code::ErrYamlValidate,
                    format!(
                        "An override is defined for '{key}' but the item does not define '{key}'"
                    ),
                    Some(item),
                    at,
                    None,
                );
                continue;
            }
            out.push((key, append));
        }
        if out.is_empty() && map.is_empty() {
            self.report(
                Code::ErrYamlValidate,
                "'override' must name at least one key",
                Some(item),
                Some(gpos(file, o.mark.offset)),
                None,
            );
        }
        Some(out)
    }

    pub(super) fn list(&mut self, file: usize, n: &Node) {
        let pos = gpos(file, n.mark.offset);
        let mut item = Item {
            kind: "list",
            name: String::new(),
            pos,
        };
        let Some(name) = self.str_key(n, "list", &item, file) else {
            return;
        };
        item.name = name.clone();
        self.unknown_keys(file, n, &item, &["list", "items", "append", "override"]);
        if !condition::is_identifier(&name) {
            self.report(Code::InvalidListName, "List has an invalid name. List names should match a regular expression: ^[a-zA-Z_][a-zA-Z0-9_]*$", Some(&item), None, None);
        }
        let Some(items_node) = n.get("items") else {
            self.report(
                Code::ErrYamlValidate,
                "Item has no mapping for key 'items'",
                Some(&item),
                None,
                None,
            );
            return;
        };
        let Some(items) = self.string_seq(items_node, "items", &item, file) else {
            return;
        };
        let legacy_append = self.bool_key(n, "append", &item, file).unwrap_or(false);
        let ov = self.overrides(n, &item, file, (&["items"], &["items"]));
        if legacy_append && ov.is_some() {
            self.report(Code::ErrYamlValidate, "Keys 'override' and 'append: true' cannot be used together. Add an 'append' entry (e.g. 'items: append') under 'override' instead.", Some(&item), None, None);
            return;
        }
        if legacy_append {
            self.report(
                Code::DeprecatedItem,
                "The 'append' key is deprecated. Use 'override: {items: append}' instead.",
                Some(&item),
                None,
                None,
            );
        }
        let append = legacy_append || ov.as_ref().is_some_and(|o| o.iter().any(|(_, a)| *a));
        let existing = self.lists.iter().position(|l| l.name == name);
        match (append, existing) {
            (true, Some(i)) => self.lists[i].items.extend(items),
            (true, None) => self.report(Code::ErrValidate, "List uses 'append' or 'override.items: append' but no list by that name already exists", Some(&item), None, None),
            (false, Some(i)) => self.lists[i].items = items,
            (false, None) => self.lists.push(ListDef { name, items, pos }),
        }
    }

    pub(super) fn macro_item(&mut self, file: usize, text: &str, n: &Node) {
        let pos = gpos(file, n.mark.offset);
        let mut item = Item {
            kind: "macro",
            name: String::new(),
            pos,
        };
        let Some(name) = self.str_key(n, "macro", &item, file) else {
            return;
        };
        item.name = name.clone();
        self.unknown_keys(
            file,
            n,
            &item,
            &["macro", "condition", "append", "override"],
        );
        if !condition::is_identifier(&name) {
            self.report(Code::InvalidMacroName, "Macro has an invalid name. Macro names should match a regular expression: ^[a-zA-Z_][a-zA-Z0-9_]*$", Some(&item), None, None);
        }
        let Some(cnode) = n.get("condition") else {
            self.report(
                Code::ErrYamlValidate,
                "Item has no mapping for key 'condition'",
                Some(&item),
                None,
                None,
            );
            return;
        };
        if cnode.as_str().is_none() {
            self.report(
                Code::ErrYamlValidate,
                "Value of 'condition' must be a string",
                Some(&item),
                Some(gpos(file, cnode.mark.offset)),
                None,
            );
            return;
        }
        let cond = Text::from_node(file, text, cnode);
        let legacy_append = self.bool_key(n, "append", &item, file).unwrap_or(false);
        let ov = self.overrides(n, &item, file, (&["condition"], &["condition"]));
        if legacy_append && ov.is_some() {
            self.report(Code::ErrYamlValidate, "Keys 'override' and 'append: true' cannot be used together. Add an 'append' entry (e.g. 'condition: append') under 'override' instead.", Some(&item), None, None);
            return;
        }
        if legacy_append {
            self.report(
                Code::DeprecatedItem,
                "The 'append' key is deprecated. Use 'override: {condition: append}' instead.",
                Some(&item),
                None,
                None,
            );
        }
        let append = legacy_append || ov.as_ref().is_some_and(|o| o.iter().any(|(_, a)| *a));
        let existing = self.macros.iter().position(|m| m.name == name);
        match (append, existing) {
            (true, Some(i)) => self.macros[i].cond.append(&cond),
            (true, None) => self.report(Code::ErrValidate, "Macro uses 'append' or 'override.condition: append' but no macro by that name already exists", Some(&item), None, None),
            (false, Some(i)) => self.macros[i].cond = cond,
            (false, None) => self.macros.push(MacroDef { name, cond, pos }),
        }
    }

    pub(super) fn exceptions(
        &mut self,
        file: usize,
        v: &Node,
        item: &Item,
    ) -> Option<Vec<ExceptionDef>> {
        let Some(seq) = v.as_seq() else {
            if v.is_null() {
                return Some(Vec::new());
            }
            self.report(
                Code::ErrYamlValidate,
                "Value of 'exceptions' must be a sequence",
                Some(item),
                Some(gpos(file, v.mark.offset)),
                None,
            );
            return None;
        };
        let mut out: Vec<ExceptionDef> = Vec::new();
        for e in seq {
            let at = Some(gpos(file, e.mark.offset));
            let Some(name) = e.get("name").and_then(Node::as_str) else {
                self.report(
                    Code::ErrYamlValidate,
                    "Item has no mapping for key 'name'",
                    Some(item),
                    at,
                    None,
                );
                return None;
            };
            let exc_item = Item {
                kind: "exception",
                name: name.to_string(),
                pos: gpos(file, e.mark.offset),
            };
            for (k, _) in e.as_map().unwrap_or_default() {
                let key = k.as_str().unwrap_or_default();
                if !["name", "fields", "comps", "values"].contains(&key) {
                    self.report(
                        Code::UnknownKey,
                        format!("Unknown key '{key}'. The key will be ignored"),
                        Some(&exc_item),
                        Some(gpos(file, k.mark.offset)),
                        None,
                    );
                }
            }
            if out.iter().any(|x| x.name == name) {
                self.report(
                    Code::ExceptionNameNotUnique,
                    format!("Multiple definitions of exception '{name}' in the same rule"),
                    Some(item),
                    at,
                    None,
                );
            }
            let (fields, single) = match e.get("fields") {
                None => (Vec::new(), false),
                Some(f) => match &f.kind {
                    Kind::Scalar(s, _) => (vec![s.clone()], true),
                    _ => (self.string_seq(f, "fields", item, file)?, false),
                },
            };
            let comps = match e.get("comps") {
                None => Vec::new(),
                Some(c) => match &c.kind {
                    Kind::Scalar(s, _) => vec![s.clone()],
                    _ => self.string_seq(c, "comps", item, file)?,
                },
            };
            if !single && !comps.is_empty() && comps.len() != fields.len() {
                self.report(
                    Code::ErrYamlValidate,
                    format!("Exception '{name}': fields and comps lists must have equal length"),
                    Some(item),
                    at,
                    None,
                );
                return None;
            }
            let mut values = Vec::new();
            if let Some(vals) = e.get("values").and_then(Node::as_seq) {
                for tuple in vals {
                    if single || (fields.is_empty() && tuple.as_str().is_some()) {
                        match &tuple.kind {
                            Kind::Scalar(s, _) => values.push(vec![ExcValue::One(s.clone())]),
                            Kind::Seq(_) => values.push(vec![ExcValue::Many(
                                self.string_seq(tuple, "values", item, file)?,
                            )]),
                            Kind::Map(_) => {
                                self.report(
                                    Code::ErrYamlValidate,
                                    "Exception values must be strings or lists",
                                    Some(item),
                                    Some(gpos(file, tuple.mark.offset)),
                                    None,
                                );
                                return None;
                            }
                        }
                        continue;
                    }
                    let Some(t) = tuple.as_seq() else {
                        self.report(Code::ErrYamlValidate, format!("Exception '{name}': each value must be a list with one entry per field"), Some(item), Some(gpos(file, tuple.mark.offset)), None);
                        return None;
                    };
                    if !fields.is_empty() && t.len() != fields.len() {
                        self.report(
                            Code::ErrYamlValidate,
                            format!(
                                "Exception '{name}': fields and values lists must have equal length"
                            ),
                            Some(item),
                            Some(gpos(file, tuple.mark.offset)),
                            None,
                        );
                        return None;
                    }
                    let mut row = Vec::new();
                    for v in t {
                        match &v.kind {
                            Kind::Scalar(s, _) => row.push(ExcValue::One(s.clone())),
                            _ => {
                                row.push(ExcValue::Many(self.string_seq(v, "values", item, file)?))
                            }
                        }
                    }
                    values.push(row);
                }
            }
            out.push(ExceptionDef {
                name: name.to_string(),
                fields,
                single,
                comps,
                values,
                pos: gpos(file, e.mark.offset),
            });
        }
        Some(out)
    }
}
