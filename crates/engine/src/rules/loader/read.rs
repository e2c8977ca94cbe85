//! Reading: YAML items of one file into definitions (Falco's `rule_loader_reader`): the
//! top-level dispatch, lists, macros, version requirements, and the readers of keys every
//! item kind shares (strings, booleans, sequences, exceptions). Rules and profiles have their
//! own readers in `read_rule` and `profile_item`; every definition then goes to its
//! collector.

use super::*;

impl Loader {
    pub(super) fn add_source(&mut self, name: &str, text: Result<String, String>) {
        let (text, unreadable) = match text {
            Ok(t) => (t, None),
            Err(e) => (String::new(), Some(e)),
        };
        let idx = self.diags.add(name, text);
        let r = self.diags.content(idx);
        if let Some(e) = unreadable {
            r.at_pos(r.pos(0)).error(Code::ErrFileRead, e);
            return;
        }
        let text = self.diags.text(idx).to_string();
        let doc = match yaml::parse(&text) {
            Ok(d) => d,
            Err(e) => {
                r.at_pos(r.pos(e.mark.offset))
                    .error(Code::ErrYamlParse, e.message);
                return;
            }
        };
        let Some(doc) = doc else { return };
        if doc.is_null() {
            return;
        }
        let Some(items) = doc.as_seq() else {
            r.at(&doc).error(
                Code::ErrYamlValidate,
                "Rules content is not yaml array of objects",
            );
            return;
        };
        for item in items {
            self.item(idx, &text, item);
        }
    }

    fn item(&mut self, file: usize, text: &str, n: &Node) {
        if n.as_map().is_none() {
            self.diags.content(file).at(n).error(
                Code::ErrYamlValidate,
                "Unexpected element type. Each element should be a yaml associative array.",
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
            self.diags.content(file).at(n).warning(
                Code::UnknownItem,
                format!("Unknown top level item with keys {keys:?}"),
            );
        }
    }

    fn engine_version(&mut self, file: usize, n: &Node, v: &Node) {
        let r = self
            .diags
            .item("required_engine_version", "", gpos(file, n.mark.offset));
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
            None => r.at(v).error(
                Code::ErrValidate,
                format!("Unable to parse engine version '{s}' as a semver string. Expected \"x.y.z\" semver format."),
            ),
            Some(req) if req > ENGINE_VERSION => {
                let (a, b, c) = ENGINE_VERSION;
                r.at(v).error(
                    Code::ErrValidate,
                    format!("Rules require engine version {s}, but engine version is {a}.{b}.{c}"),
                );
            }
            Some(_) => {
                if self.required_engine_version.as_deref().is_none_or(|cur| cur < s.as_str()) {
                    self.required_engine_version = Some(s);
                }
            }
        }
    }

    fn plugin_versions(&mut self, file: usize, v: &Node) {
        let Some(seq) = v.as_seq() else {
            self.diags.content(file).at(v).error(
                Code::ErrYamlValidate,
                "Value of required_plugin_versions must be a sequence",
            );
            return;
        };
        for p in seq {
            let name = p.get("name").and_then(Node::as_str);
            let r = self.diags.item(
                "required_plugin_versions",
                name.unwrap_or_default(),
                gpos(file, p.mark.offset),
            );
            let Some(name) = name.filter(|_| p.get("version").and_then(Node::as_str).is_some())
            else {
                r.error(
                    Code::ErrYamlValidate,
                    "required_plugin_versions entries need a 'name' and a 'version'",
                );
                continue;
            };
            let mut names = std::iter::once(name).chain(
                p.get("alternatives")
                    .and_then(Node::as_seq)
                    .unwrap_or_default()
                    .iter()
                    .filter_map(|a| a.get("name").and_then(Node::as_str)),
            );
            if !names.any(|n| BUILTIN_PLUGINS.contains(&n)) {
                r.warning(
                    Code::WarningExtension,
                    format!(
                        "Plugin '{name}' is required by this ruleset but Osprey has no such plugin; rules that need its event source or fields will not load"
                    ),
                );
            }
        }
    }

    fn list(&mut self, file: usize, n: &Node) {
        let pos = gpos(file, n.mark.offset);
        let r = self.diags.item(ListDef::KIND, "", pos);
        let Some(name) = str_key(n, "list", &r) else {
            return;
        };
        let r = r.named(&name);
        unknown_keys(n, &r, &["list", "items", "append", "override"]);
        if !condition::is_identifier(&name) {
            r.warning(Code::InvalidListName, "List has an invalid name. List names should match a regular expression: ^[a-zA-Z_][a-zA-Z0-9_]*$");
        }
        let Some(items_node) = n.get("items") else {
            r.error(Code::ErrYamlValidate, "Item has no mapping for key 'items'");
            return;
        };
        let Some(items) = string_seq(items_node, "items", &r) else {
            return;
        };
        let merge = Merge::read::<ListDef>(n, &r);
        self.lists.add(ListDef { name, items, pos }, merge, &r);
    }

    fn macro_item(&mut self, file: usize, text: &str, n: &Node) {
        let pos = gpos(file, n.mark.offset);
        let r = self.diags.item(MacroDef::KIND, "", pos);
        let Some(name) = str_key(n, "macro", &r) else {
            return;
        };
        let r = r.named(&name);
        unknown_keys(n, &r, &["macro", "condition", "append", "override"]);
        if !condition::is_identifier(&name) {
            r.warning(Code::InvalidMacroName, "Macro has an invalid name. Macro names should match a regular expression: ^[a-zA-Z_][a-zA-Z0-9_]*$");
        }
        let Some(cnode) = n.get("condition") else {
            r.error(
                Code::ErrYamlValidate,
                "Item has no mapping for key 'condition'",
            );
            return;
        };
        if cnode.as_str().is_none() {
            r.at(cnode).error(
                Code::ErrYamlValidate,
                "Value of 'condition' must be a string",
            );
            return;
        }
        let cond = Text::from_node(file, text, cnode);
        let merge = Merge::read::<MacroDef>(n, &r);
        self.macros.add(MacroDef { name, cond, pos }, merge, &r);
    }
}

/// A list is its items: appending adds to them, and a later definition (or an override that
/// replaces) replaces them. The list keeps its place and the position of its first definition.
impl Definition for ListDef {
    type Item = Self;
    const KIND: &'static str = "list";
    const APPENDABLE: &'static [&'static str] = &["items"];
    const REPLACEABLE: &'static [&'static str] = &["items"];
    const REPLACE_DEFINES: bool = true;

    fn name(&self) -> &str {
        &self.name
    }

    fn item_name(item: &Self) -> &str {
        &item.name
    }

    fn define(item: Self, _: &Reporter) -> Option<Self> {
        Some(item)
    }

    fn redefine(&mut self, later: Self) {
        self.items = later.items;
    }

    fn merge(&mut self, key: &str, append: bool, item: &Self, _: &Reporter) {
        match (key, append) {
            ("items", true) => self.items.extend(item.items.iter().cloned()),
            ("items", false) => self.items.clone_from(&item.items),
            _ => {}
        }
    }
}

/// A macro is its condition: appending joins the conditions with a space, and a later
/// definition (or an override that replaces) replaces it. The macro keeps its place and the
/// position of its first definition.
impl Definition for MacroDef {
    type Item = Self;
    const KIND: &'static str = "macro";
    const APPENDABLE: &'static [&'static str] = &["condition"];
    const REPLACEABLE: &'static [&'static str] = &["condition"];
    const REPLACE_DEFINES: bool = true;

    fn name(&self) -> &str {
        &self.name
    }

    fn item_name(item: &Self) -> &str {
        &item.name
    }

    fn define(item: Self, _: &Reporter) -> Option<Self> {
        Some(item)
    }

    fn redefine(&mut self, later: Self) {
        self.cond = later.cond;
    }

    fn merge(&mut self, key: &str, append: bool, item: &Self, _: &Reporter) {
        match (key, append) {
            ("condition", true) => self.cond.append(&item.cond),
            ("condition", false) => self.cond.clone_from(&item.cond),
            _ => {}
        }
    }
}

/// Warns about each key of item `n` not in `allowed`.
pub(super) fn unknown_keys(n: &Node, r: &Reporter, allowed: &[&str]) {
    for (k, _) in n.as_map().unwrap_or_default() {
        let key = k.as_str().unwrap_or_default();
        if !allowed.contains(&key) {
            r.at(k).warning(
                Code::UnknownKey,
                format!("Unknown key '{key}'. The key will be ignored"),
            );
        }
    }
}

/// The string value of `key`, if set; an error if it is not a scalar.
pub(super) fn str_key(n: &Node, key: &str, r: &Reporter) -> Option<String> {
    let v = n.get(key)?;
    match &v.kind {
        Kind::Scalar(s, _) => Some(s.clone()),
        _ => {
            r.at(v).error(
                Code::ErrYamlValidate,
                format!("Value of '{key}' must be a string"),
            );
            None
        }
    }
}

/// The boolean value of `key`, if set and valid; an error if it is not a boolean.
pub(super) fn bool_key(n: &Node, key: &str, r: &Reporter) -> Option<bool> {
    let v = n.get(key)?;
    let b = v.as_bool();
    if b.is_none() {
        r.at(v).error(
            Code::ErrYamlValidate,
            format!("Value of '{key}' must be a boolean (true or false)"),
        );
    }
    b
}

/// A sequence of scalars (null is empty); an error naming `what` otherwise.
pub(super) fn string_seq(v: &Node, what: &str, r: &Reporter) -> Option<Vec<String>> {
    match &v.kind {
        Kind::Seq(items) => {
            let mut out = Vec::with_capacity(items.len());
            for i in items {
                match i.as_str() {
                    Some(s) => out.push(s.to_string()),
                    None => {
                        r.at(i).error(
                            Code::ErrYamlValidate,
                            format!("Items of '{what}' must be strings or numbers"),
                        );
                        return None;
                    }
                }
            }
            Some(out)
        }
        _ if v.is_null() => Some(Vec::new()),
        _ => {
            r.at(v).error(
                Code::ErrYamlValidate,
                format!("Value of '{what}' must be a sequence"),
            );
            None
        }
    }
}

/// A rule's `exceptions`: None when one is not valid (reported).
pub(super) fn exceptions(v: &Node, r: &Reporter) -> Option<Vec<ExceptionDef>> {
    let Some(seq) = v.as_seq() else {
        if v.is_null() {
            return Some(Vec::new());
        }
        r.at(v).error(
            Code::ErrYamlValidate,
            "Value of 'exceptions' must be a sequence",
        );
        return None;
    };
    let mut out: Vec<ExceptionDef> = Vec::new();
    for e in seq {
        let Some(name) = e.get("name").and_then(Node::as_str) else {
            r.at(e)
                .error(Code::ErrYamlValidate, "Item has no mapping for key 'name'");
            return None;
        };
        let pos = r.pos(e.mark.offset);
        unknown_keys(
            e,
            &r.item("exception", name, pos),
            &["name", "fields", "comps", "values"],
        );
        if out.iter().any(|x| x.name == name) {
            r.at(e).warning(
                Code::ExceptionNameNotUnique,
                format!("Multiple definitions of exception '{name}' in the same rule"),
            );
        }
        let (fields, single) = match e.get("fields") {
            None => (Vec::new(), false),
            Some(f) => match &f.kind {
                Kind::Scalar(s, _) => (vec![s.clone()], true),
                _ => (string_seq(f, "fields", r)?, false),
            },
        };
        let comps = match e.get("comps") {
            None => Vec::new(),
            Some(c) => match &c.kind {
                Kind::Scalar(s, _) => vec![s.clone()],
                _ => string_seq(c, "comps", r)?,
            },
        };
        if !single && !comps.is_empty() && comps.len() != fields.len() {
            r.at(e).error(
                Code::ErrYamlValidate,
                format!("Exception '{name}': fields and comps lists must have equal length"),
            );
            return None;
        }
        let mut values = Vec::new();
        for tuple in e.get("values").and_then(Node::as_seq).unwrap_or_default() {
            if single || (fields.is_empty() && tuple.as_str().is_some()) {
                match &tuple.kind {
                    Kind::Scalar(s, _) => values.push(vec![ExcValue::One(s.clone())]),
                    Kind::Seq(_) => {
                        values.push(vec![ExcValue::Many(string_seq(tuple, "values", r)?)])
                    }
                    Kind::Map(_) => {
                        r.at(tuple).error(
                            Code::ErrYamlValidate,
                            "Exception values must be strings or lists",
                        );
                        return None;
                    }
                }
                continue;
            }
            let Some(t) = tuple.as_seq() else {
                r.at(tuple).error(
                    Code::ErrYamlValidate,
                    format!(
                        "Exception '{name}': each value must be a list with one entry per field"
                    ),
                );
                return None;
            };
            if !fields.is_empty() && t.len() != fields.len() {
                r.at(tuple).error(
                    Code::ErrYamlValidate,
                    format!("Exception '{name}': fields and values lists must have equal length"),
                );
                return None;
            }
            let mut row = Vec::new();
            for v in t {
                match &v.kind {
                    Kind::Scalar(s, _) => row.push(ExcValue::One(s.clone())),
                    _ => row.push(ExcValue::Many(string_seq(v, "values", r)?)),
                }
            }
            values.push(row);
        }
        out.push(ExceptionDef {
            name: name.to_string(),
            fields,
            single,
            comps,
            values,
            pos,
        });
    }
    Some(out)
}
