//! Rules files → a compiled [`Ruleset`], with Falco's item kinds, override semantics and
//! diagnostics.
//!
//! Files are read in order into definitions (later items override or extend earlier ones, as
//! in Falco's `overriding.md`), then every enabled rule is expanded (macros, lists, exceptions)
//! and compiled. Positions are kept as "global offsets" (file index and byte offset packed in
//! one number) so that an error found deep inside an expanded macro still points at the exact
//! line and column of the file it came from.

use std::{
    collections::{BTreeSet, HashMap, HashSet},
    sync::Arc,
};

use super::{
    Rule, Ruleset,
    condition::{self, Check, Expr, FieldExpr, Op, Rhs, Value},
    diag::{Code, Context, Diagnostic, FileResult, Location, Position, snippet},
    yaml::{self, Kind, LineIndex, Mark, Node},
};
use osprey_model::Priority;

use crate::{compile, output::Format};

#[path = "profile_item.rs"]
mod profile_item;

/// Falco's engine version whose rules language Osprey implements.
pub const ENGINE_VERSION: (u64, u64, u64) = (0, 63, 0);

/// Plugins whose fields Osprey provides itself.
const BUILTIN_PLUGINS: &[&str] = &["container"];

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

/// Everything the loader produced: the ruleset and, per file, errors and warnings.
#[derive(Debug)]
pub struct LoadResult {
    pub ruleset: Ruleset,
    pub files: Vec<FileResult>,
}

impl LoadResult {
    /// No file has an error.
    pub fn is_ok(&self) -> bool {
        self.files.iter().all(|f| f.errors.is_empty())
    }

    pub fn errors(&self) -> impl Iterator<Item = &Diagnostic> {
        self.files.iter().flat_map(|f| &f.errors)
    }

    pub fn warnings(&self) -> impl Iterator<Item = &Diagnostic> {
        self.files.iter().flat_map(|f| &f.warnings)
    }
}

struct Src {
    name: Arc<str>,
    text: String,
    lines: LineIndex,
}

/// A global position: file index + 1 in the high bits, byte offset in the low 40 bits.
type GPos = usize;
const OFF_BITS: u32 = 40;

fn gpos(file: usize, off: usize) -> GPos {
    ((file + 1) << OFF_BITS) | off
}

/// Text assembled from YAML scalars (appends join with a space), with the global position of
/// each byte.
#[derive(Clone, Debug, Default)]
struct Text {
    s: String,
    pos: Vec<GPos>,
}

impl Text {
    fn from_node(file: usize, src: &str, n: &Node) -> Self {
        let s = n.as_str().unwrap_or_default().to_string();
        let pos = yaml::value_offsets(src, n)
            .into_iter()
            .map(|o| gpos(file, o))
            .collect();
        Self { s, pos }
    }

    fn append(&mut self, other: &Text) {
        let first = other.pos.first().copied().unwrap_or_default();
        if self.s.ends_with('\n') {
            self.s.pop();
        }
        self.pos.truncate(self.s.len());
        self.s.push(' ');
        self.pos.push(first);
        self.s.push_str(&other.s);
        self.pos.extend_from_slice(&other.pos);
    }

    fn at(&self, off: usize) -> GPos {
        self.pos
            .get(off)
            .or(self.pos.last())
            .copied()
            .unwrap_or_default()
    }
}

#[derive(Clone, Debug)]
struct ListDef {
    name: String,
    items: Vec<String>,
    pos: GPos,
}

#[derive(Clone, Debug)]
struct MacroDef {
    name: String,
    cond: Text,
    pos: GPos,
}

#[derive(Clone, Debug)]
enum ExcValue {
    One(String),
    Many(Vec<String>),
}

#[derive(Clone, Debug)]
struct ExceptionDef {
    name: String,
    /// None for the single-field form.
    fields: Vec<String>,
    single: bool,
    comps: Vec<String>,
    values: Vec<Vec<ExcValue>>,
    pos: GPos,
}

#[derive(Clone, Debug)]
struct RuleDef {
    name: String,
    desc: String,
    cond: Text,
    output: Text,
    priority: Priority,
    enabled: bool,
    tags: Vec<String>,
    source: String,
    exceptions: Vec<ExceptionDef>,
    warn_evttypes: bool,
    skip_unknown: bool,
    capture: bool,
    capture_duration: u64,
    pos: GPos,
}

struct Loader {
    srcs: Vec<Src>,
    results: Vec<FileResult>,
    lists: Vec<ListDef>,
    macros: Vec<MacroDef>,
    rules: Vec<RuleDef>,
    /// Syscall profiles (`profile` items), with where each was defined.
    profiles: Vec<(crate::profile::Profile, GPos)>,
    required_engine_version: Option<String>,
}

/// The kind and name of the item a diagnostic is about.
#[derive(Clone)]
struct Item {
    kind: &'static str,
    name: String,
    pos: GPos,
}

impl Loader {
    fn decode(&self, g: GPos) -> Option<(usize, usize)> {
        let file = (g >> OFF_BITS).checked_sub(1)?;
        (file < self.srcs.len()).then_some((file, g & ((1 << OFF_BITS) - 1)))
    }

    fn position(&self, g: GPos) -> Option<(usize, Position, Mark)> {
        let (file, off) = self.decode(g)?;
        let src = &self.srcs[file];
        let m = src.lines.mark(&src.text, off);
        Some((
            file,
            Position {
                name: src.name.clone(),
                line: m.line,
                column: m.column,
                offset: off,
            },
            m,
        ))
    }

    /// Records a diagnostic about `item`, at `at` (a position inside the item, or the item).
    fn report(
        &mut self,
        code: Code,
        message: impl Into<String>,
        item: Option<&Item>,
        at: Option<GPos>,
        cond: Option<&str>,
    ) {
        let at = at.or(item.map(|i| i.pos));
        let file = at.and_then(|g| self.decode(g)).map_or(0, |(f, _)| f);
        let Some(src) = self.srcs.get(file) else {
            return;
        };
        let mut locations = vec![Location {
            item_type: "rules content".into(),
            item_name: String::new(),
            position: Position {
                name: src.name.clone(),
                line: 0,
                column: 0,
                offset: 0,
            },
        }];
        if let Some(item) = item
            && let Some((_, p, _)) = self.position(item.pos)
        {
            locations.push(Location {
                item_type: item.kind.into(),
                item_name: item.name.clone(),
                position: p,
            });
        }
        let mut snip = String::new();
        if let Some((_, p, m)) = at.and_then(|g| self.position(g)) {
            snip = snippet(&self.srcs[file].text, m.line, m.column);
            if let Some(cond) = cond {
                locations.push(Location {
                    item_type: "condition expression".into(),
                    item_name: cond.to_string(),
                    position: p,
                });
            } else if Some(at) != item.map(|i| Some(i.pos)) {
                locations.push(Location {
                    item_type: "value".into(),
                    item_name: String::new(),
                    position: p,
                });
            }
        }
        let d = Diagnostic {
            code,
            codedesc: code.desc(),
            message: message.into(),
            context: Context {
                locations,
                snippet: snip,
            },
        };
        let r = &mut self.results[file];
        if code.is_error() {
            r.successful = false;
            r.errors.push(d);
        } else {
            r.warnings.push(d);
        }
    }

    fn add_source(&mut self, name: &str, text: Result<String, String>) {
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

    fn item(&mut self, file: usize, text: &str, n: &Node) {
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

    fn unknown_keys(&mut self, file: usize, n: &Node, item: &Item, allowed: &[&str]) {
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

    fn engine_version(&mut self, file: usize, n: &Node, v: &Node) {
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

    fn plugin_versions(&mut self, file: usize, v: &Node) {
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

    fn str_key(&mut self, n: &Node, key: &str, item: &Item, file: usize) -> Option<String> {
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

    fn bool_key(&mut self, n: &Node, key: &str, item: &Item, file: usize) -> Option<bool> {
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

    fn string_seq(
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
    fn overrides(
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

    fn list(&mut self, file: usize, n: &Node) {
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

    fn macro_item(&mut self, file: usize, text: &str, n: &Node) {
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

    fn exceptions(&mut self, file: usize, v: &Node, item: &Item) -> Option<Vec<ExceptionDef>> {
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

    fn rule(&mut self, file: usize, text: &str, n: &Node) {
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

/// Moves every offset of a parsed expression from text-relative to global.
fn globalize(e: &mut Expr, t: &Text) {
    fn field(f: &mut FieldExpr, t: &Text) {
        match f {
            FieldExpr::Field { at, .. } => *at = t.at(*at),
            FieldExpr::Transform { inner, at, .. } => {
                *at = t.at(*at);
                field(inner, t);
            }
        }
    }
    match e {
        Expr::And(v) | Expr::Or(v) => v.iter_mut().for_each(|x| globalize(x, t)),
        Expr::Not(x) => globalize(x, t),
        Expr::Ident { at, .. } => *at = t.at(*at),
        Expr::Check(c) => {
            c.at = t.at(c.at);
            field(&mut c.lhs, t);
            match &mut c.rhs {
                Rhs::None => {}
                Rhs::Value(v) => v.at = t.at(v.at),
                Rhs::List { items, at } => {
                    *at = t.at(*at);
                    for v in items {
                        v.at = t.at(v.at);
                    }
                }
                Rhs::ListRef { at, .. } => *at = t.at(*at),
                Rhs::Field(f) => field(f, t),
            }
        }
    }
}

/// A diagnostic found while compiling, reported once compilation is done.
type Report = (Code, String, Item, Option<GPos>, Option<String>);

/// Expansion state: lists already flattened, macros parsed, what was used.
struct Expander<'a> {
    lists: &'a HashMap<&'a str, Vec<String>>,
    macros: &'a HashMap<&'a str, Result<Expr, (GPos, String)>>,
    used_macros: HashSet<String>,
    used_lists: HashSet<String>,
}

impl Expander<'_> {
    fn expand(&mut self, e: &Expr, stack: &mut Vec<String>) -> Result<Expr, (GPos, String)> {
        Ok(match e {
            Expr::And(v) => Expr::And(
                v.iter()
                    .map(|x| self.expand(x, stack))
                    .collect::<Result<_, _>>()?,
            ),
            Expr::Or(v) => Expr::Or(
                v.iter()
                    .map(|x| self.expand(x, stack))
                    .collect::<Result<_, _>>()?,
            ),
            Expr::Not(x) => Expr::Not(Box::new(self.expand(x, stack)?)),
            Expr::Ident { name, at } => {
                let Some(m) = self.macros.get(name.as_str()) else {
                    return Err((*at, format!("Undefined macro '{name}' used in filter.")));
                };
                if stack.contains(name) {
                    return Err((
                        *at,
                        format!(
                            "Macro '{name}' is defined in terms of itself ({} -> {name})",
                            stack.join(" -> ")
                        ),
                    ));
                }
                self.used_macros.insert(name.clone());
                let m = match m {
                    Ok(m) => m,
                    Err((_, msg)) => {
                        return Err((*at, format!("Macro '{name}' does not compile: {msg}")));
                    }
                };
                stack.push(name.clone());
                let x = self.expand(m, stack)?;
                stack.pop();
                x
            }
            Expr::Check(c) => {
                let mut c: Check = (**c).clone();
                match &c.rhs {
                    Rhs::List { items, at } => {
                        let mut out = Vec::with_capacity(items.len());
                        for v in items {
                            match self.lists.get(v.text.as_str()).filter(|_| !v.quoted) {
                                Some(l) => {
                                    self.used_lists.insert(v.text.clone());
                                    out.extend(l.iter().map(|s| Value {
                                        text: s.clone(),
                                        quoted: true,
                                        at: v.at,
                                    }));
                                }
                                None => out.push(v.clone()),
                            }
                        }
                        c.rhs = Rhs::List {
                            items: out,
                            at: *at,
                        };
                    }
                    Rhs::ListRef { name, at } => match self.lists.get(name.as_str()) {
                        Some(l) => {
                            self.used_lists.insert(name.clone());
                            c.rhs = Rhs::List {
                                items: l
                                    .iter()
                                    .map(|s| Value {
                                        text: s.clone(),
                                        quoted: true,
                                        at: *at,
                                    })
                                    .collect(),
                                at: *at,
                            };
                        }
                        None => {
                            return Err((*at, format!("Undefined list '{name}' used in filter.")));
                        }
                    },
                    _ => {}
                }
                Expr::Check(Box::new(c))
            }
        })
    }
}

/// Event types a condition can match: None means any (Falco's analysis, conservative for `not`).
pub fn evttypes(e: &Expr) -> Option<BTreeSet<String>> {
    match e {
        Expr::And(v) => {
            let mut acc: Option<BTreeSet<String>> = None;
            for x in v {
                if let Some(s) = evttypes(x) {
                    acc = Some(match acc {
                        None => s,
                        Some(a) => a.intersection(&s).cloned().collect(),
                    });
                }
            }
            acc
        }
        Expr::Or(v) => {
            let mut acc = BTreeSet::new();
            for x in v {
                acc.extend(evttypes(x)?);
            }
            Some(acc)
        }
        Expr::Not(_) | Expr::Ident { .. } => None,
        Expr::Check(c) => {
            if !matches!(&c.lhs, FieldExpr::Field { name, arg: None, .. } if name == "evt.type") {
                return None;
            }
            match (&c.op, &c.rhs) {
                (Op::Eq, Rhs::Value(v)) => Some(BTreeSet::from([v.text.clone()])),
                (Op::In, Rhs::List { items, .. }) => {
                    Some(items.iter().map(|v| v.text.clone()).collect())
                }
                _ => None,
            }
        }
    }
}

/// Deprecated fields and unsafe `<NA>` comparisons, for warnings.
fn lint(e: &Expr, out: &mut Vec<(Code, GPos, String)>) {
    match e {
        Expr::And(v) | Expr::Or(v) => v.iter().for_each(|x| lint(x, out)),
        Expr::Not(x) => lint(x, out),
        Expr::Ident { .. } => {}
        Expr::Check(c) => {
            let name = c.lhs.base_name();
            if name == "evt.dir" || name.starts_with("evt.latency") {
                out.push((
                    Code::DeprecatedItem,
                    c.lhs.at(),
                    format!("Field '{name}' is deprecated: Osprey only sees completed syscalls"),
                ));
            }
            if matches!(c.op, Op::Eq | Op::Ne)
                && let Rhs::Value(v) = &c.rhs
                && v.text == "<NA>"
            {
                out.push((Code::UnsafeNaCheck, v.at, "Comparing a field with <NA> is unsafe and may be removed; use 'exists' instead".into()));
            }
        }
    }
}

fn exception_expr(e: &ExceptionDef) -> Result<Option<Expr>, (GPos, String)> {
    let at = e.pos;
    let parse_field = |f: &str| -> Result<FieldExpr, (GPos, String)> {
        let mut fe = condition::parse_field_expr(f).map_err(|er| {
            (
                at,
                format!(
                    "Exception '{}': invalid field '{f}': {}",
                    e.name, er.message
                ),
            )
        })?;
        fn set(f: &mut FieldExpr, at: usize) {
            match f {
                FieldExpr::Field { at: a, .. } => *a = at,
                FieldExpr::Transform { inner, at: a, .. } => {
                    *a = at;
                    set(inner, at);
                }
            }
        }
        set(&mut fe, at);
        Ok(fe)
    };
    let parse_comp = |c: &str| {
        condition::parse_op(c).map_err(|er| (at, format!("Exception '{}': {}", e.name, er.message)))
    };
    let rhs_for = |op: Op, v: &ExcValue| -> Rhs {
        match v {
            ExcValue::Many(items) => Rhs::List {
                items: items
                    .iter()
                    .map(|s| Value {
                        text: s.clone(),
                        quoted: false,
                        at,
                    })
                    .collect(),
                at,
            },
            ExcValue::One(s) if op.is_list() => {
                if condition::is_identifier(s) {
                    Rhs::List {
                        items: vec![Value {
                            text: s.clone(),
                            quoted: false,
                            at,
                        }],
                        at,
                    }
                } else {
                    Rhs::List {
                        items: vec![Value {
                            text: s.clone(),
                            quoted: true,
                            at,
                        }],
                        at,
                    }
                }
            }
            ExcValue::One(s) => Rhs::Value(Value {
                text: s.clone(),
                quoted: true,
                at,
            }),
        }
    };
    if e.values.is_empty() {
        return Ok(None);
    }
    let mut alts = Vec::new();
    if e.single {
        let field = parse_field(&e.fields[0])?;
        let (op, modifier) = parse_comp(e.comps.first().map_or("in", String::as_str))?;
        if !op.is_list() && modifier.is_none() {
            return Err((
                at,
                format!(
                    "Exception '{}': with a single field, comps must be in, pmatch or intersects",
                    e.name
                ),
            ));
        }
        let items: Vec<Value> = e
            .values
            .iter()
            .flat_map(|row| row.iter())
            .flat_map(|v| match v {
                ExcValue::One(s) => vec![s.clone()],
                ExcValue::Many(m) => m.clone(),
            })
            .map(|s| Value {
                quoted: !condition::is_identifier(&s),
                text: s,
                at,
            })
            .collect();
        alts.push(Expr::Check(Box::new(Check {
            lhs: field,
            op,
            modifier,
            rhs: Rhs::List { items, at },
            at,
        })));
    } else {
        if e.fields.is_empty() {
            return Err((
                at,
                format!("Exception '{}' has values but no fields", e.name),
            ));
        }
        let fields = e
            .fields
            .iter()
            .map(|f| parse_field(f))
            .collect::<Result<Vec<_>, _>>()?;
        let comps = if e.comps.is_empty() {
            vec![(Op::Eq, None); fields.len()]
        } else {
            e.comps
                .iter()
                .map(|c| parse_comp(c))
                .collect::<Result<Vec<_>, _>>()?
        };
        for row in &e.values {
            let checks: Vec<Expr> = fields
                .iter()
                .zip(&comps)
                .zip(row)
                .map(|((f, (op, m)), v)| {
                    let rhs = if m.is_some() {
                        match v {
                            ExcValue::Many(_) => rhs_for(Op::In, v),
                            ExcValue::One(s) => Rhs::List {
                                items: vec![Value {
                                    text: s.clone(),
                                    quoted: !condition::is_identifier(s),
                                    at,
                                }],
                                at,
                            },
                        }
                    } else {
                        rhs_for(*op, v)
                    };
                    Expr::Check(Box::new(Check {
                        lhs: f.clone(),
                        op: *op,
                        modifier: *m,
                        rhs,
                        at,
                    }))
                })
                .collect();
            alts.push(if checks.len() == 1 {
                checks.into_iter().next().unwrap_or(Expr::And(Vec::new()))
            } else {
                Expr::And(checks)
            });
        }
    }
    Ok(Some(if alts.len() == 1 {
        alts.pop().unwrap_or(Expr::Or(Vec::new()))
    } else {
        Expr::Or(alts)
    }))
}

impl Loader {
    fn finish(mut self) -> LoadResult {
        let profiles = self.finish_profiles();
        // Lists: flatten references to other lists, unquote items.
        let mut flat: HashMap<&str, Vec<String>> = HashMap::new();
        let lists = std::mem::take(&mut self.lists);
        let by_name: HashMap<&str, &ListDef> = lists.iter().map(|l| (l.name.as_str(), l)).collect();
        let mut used_lists: HashSet<String> = HashSet::new();
        fn flatten(
            name: &str,
            by_name: &HashMap<&str, &ListDef>,
            stack: &mut Vec<String>,
            used: &mut HashSet<String>,
        ) -> Vec<String> {
            let Some(l) = by_name.get(name) else {
                return Vec::new();
            };
            stack.push(name.to_string());
            let mut out = Vec::new();
            for it in &l.items {
                if by_name.contains_key(it.as_str()) && !stack.contains(it) {
                    used.insert(it.clone());
                    out.extend(flatten(it, by_name, stack, used));
                } else {
                    out.push(condition::unquote_item(it).0);
                }
            }
            stack.pop();
            out
        }
        for l in &lists {
            let items = flatten(&l.name, &by_name, &mut Vec::new(), &mut used_lists);
            flat.insert(l.name.as_str(), items);
        }

        // Macros: parse each.
        let macros = std::mem::take(&mut self.macros);
        let mut parsed: HashMap<&str, Result<Expr, (GPos, String)>> = HashMap::new();
        for m in &macros {
            let r = condition::parse(&m.cond.s).map(|mut e| {
                globalize(&mut e, &m.cond);
                e
            });
            if let Err(e) = &r {
                let item = Item {
                    kind: "macro",
                    name: m.name.clone(),
                    pos: m.pos,
                };
                let cond = m.cond.s.clone();
                self.report(
                    Code::ErrCompileCondition,
                    e.message.clone(),
                    Some(&item),
                    Some(m.cond.at(e.at)),
                    Some(&cond),
                );
            }
            parsed.insert(m.name.as_str(), r.map_err(|e| (m.cond.at(e.at), e.message)));
        }

        let mut ex = Expander {
            lists: &flat,
            macros: &parsed,
            used_macros: HashSet::new(),
            used_lists,
        };
        let mut rules_out = Vec::new();
        let mut reports: Vec<Report> = Vec::new();
        let rules = std::mem::take(&mut self.rules);
        for r in &rules {
            let item = Item {
                kind: "rule",
                name: r.name.clone(),
                pos: r.pos,
            };
            let cond_text = r.cond.s.trim_end().to_string();
            let mut expr = match condition::parse(&r.cond.s) {
                Ok(mut e) => {
                    globalize(&mut e, &r.cond);
                    e
                }
                Err(e) => {
                    if r.enabled {
                        reports.push((
                            Code::ErrCompileCondition,
                            e.message,
                            item,
                            Some(r.cond.at(e.at)),
                            Some(cond_text),
                        ));
                    }
                    continue;
                }
            };
            let mut exc_err = None;
            let mut clauses = Vec::new();
            for e in &r.exceptions {
                match exception_expr(e) {
                    Ok(Some(x)) => clauses.push(x),
                    Ok(None) => {}
                    Err(er) => exc_err = Some(er),
                }
            }
            if let Some((at, msg)) = exc_err {
                reports.push((Code::ErrValidate, msg, item, Some(at), None));
                continue;
            }
            if !clauses.is_empty() {
                let not = Expr::Not(Box::new(if clauses.len() == 1 {
                    clauses.pop().unwrap_or(Expr::Or(Vec::new()))
                } else {
                    Expr::Or(clauses)
                }));
                expr = Expr::And(vec![expr, not]);
            }
            let expanded = match ex.expand(&expr, &mut Vec::new()) {
                Ok(e) => e,
                Err((at, msg)) => {
                    if r.enabled {
                        reports.push((Code::ErrValidate, msg, item, Some(at), Some(cond_text)));
                    }
                    continue;
                }
            };
            if r.source != "syscall" {
                reports.push((
                    Code::UnknownSource,
                    format!("Unknown source {}, skipping", r.source),
                    item,
                    None,
                    None,
                ));
                continue;
            }
            let mut lints = Vec::new();
            lint(&expanded, &mut lints);
            let types = evttypes(&expanded);
            let mut rule = Rule {
                name: r.name.clone(),
                desc: r.desc.trim_end().to_string(),
                condition: cond_text.clone(),
                output_text: r.output.s.trim_end().to_string(),
                priority: r.priority,
                tags: r.tags.clone(),
                source: r.source.clone(),
                enabled: r.enabled,
                evttypes: types.clone(),
                capture: r.capture,
                capture_duration: r.capture_duration,
                file: self.position(r.pos).map(|(_, p, _)| p),
                compiled: None,
            };
            if !r.enabled {
                rules_out.push(rule);
                continue;
            }
            for (code, at, msg) in lints {
                reports.push((code, msg, item.clone(), Some(at), Some(cond_text.clone())));
            }
            let matcher = match compile::compile(&expanded) {
                Ok(m) => m,
                Err(e) if e.unknown_field && r.skip_unknown => {
                    reports.push((
                        Code::UnknownFilter,
                        format!(
                            "{}; the rule is skipped (skip-if-unknown-filter)",
                            e.message
                        ),
                        item,
                        Some(e.at),
                        Some(cond_text),
                    ));
                    continue;
                }
                Err(e) => {
                    reports.push((
                        Code::ErrCompileCondition,
                        e.message,
                        item,
                        Some(e.at),
                        Some(cond_text),
                    ));
                    continue;
                }
            };
            let output = match Format::compile(&r.output.s) {
                Ok(o) => o,
                Err(e) if r.skip_unknown => {
                    reports.push((
                        Code::UnknownFilter,
                        format!(
                            "{}; the rule is skipped (skip-if-unknown-filter)",
                            e.message
                        ),
                        item,
                        Some(r.output.at(e.at)),
                        None,
                    ));
                    continue;
                }
                Err(e) => {
                    reports.push((
                        Code::ErrCompileOutput,
                        e.message,
                        item,
                        Some(r.output.at(e.at)),
                        None,
                    ));
                    continue;
                }
            };
            if types.is_none() && r.warn_evttypes {
                reports.push((Code::NoEvttype, "Rule matches too many evt.type values. This has a significant performance penalty.".into(), item.clone(), None, None));
            }
            rule.compiled = Some(Arc::new(super::Compiled { matcher, output }));
            rules_out.push(rule);
        }
        for (code, msg, item, at, cond) in reports {
            self.report(code, msg, Some(&item), at, cond.as_deref());
        }
        let (used_macros, used_lists) = (ex.used_macros, ex.used_lists);
        for m in &macros {
            if !used_macros.contains(&m.name) {
                let item = Item {
                    kind: "macro",
                    name: m.name.clone(),
                    pos: m.pos,
                };
                self.report(
                    Code::UnusedMacro,
                    format!("Macro '{}' not referred to by any other rule/macro", m.name),
                    Some(&item),
                    None,
                    None,
                );
            }
        }
        for l in &lists {
            if !used_lists.contains(&l.name) {
                let item = Item {
                    kind: "list",
                    name: l.name.clone(),
                    pos: l.pos,
                };
                self.report(
                    Code::UnusedList,
                    format!("List '{}' not referred to by any other rule/macro", l.name),
                    Some(&item),
                    None,
                    None,
                );
            }
        }
        let ok = self.results.iter().all(|f| f.errors.is_empty());
        let ruleset = Ruleset {
            rules: if ok { rules_out } else { Vec::new() },
            macros: macros
                .iter()
                .map(|m| (m.name.clone(), m.cond.s.trim_end().to_string()))
                .collect(),
            lists: lists
                .iter()
                .map(|l| {
                    (
                        l.name.clone(),
                        flat.get(l.name.as_str()).cloned().unwrap_or_default(),
                    )
                })
                .collect(),
            required_engine_version: self.required_engine_version,
            profiles: if ok { profiles } else { Vec::new() },
        };
        LoadResult {
            ruleset,
            files: self.results,
        }
    }
}

/// Loads rules from in-memory sources `(name, text)`, in order.
pub fn load_sources<N: AsRef<str>, T: AsRef<str>>(sources: &[(N, T)]) -> LoadResult {
    let mut l = new_loader();
    for (name, text) in sources {
        l.add_source(name.as_ref(), Ok(text.as_ref().to_string()));
    }
    l.finish()
}

/// Loads rules files in order.
pub fn load_files<P: AsRef<std::path::Path>>(paths: &[P]) -> LoadResult {
    let mut l = new_loader();
    for p in paths {
        let p = p.as_ref();
        let text = std::fs::read_to_string(p)
            .map_err(|e| format!("Could not read file {}: {e}", p.display()));
        l.add_source(&p.display().to_string(), text);
    }
    l.finish()
}

fn new_loader() -> Loader {
    Loader {
        srcs: Vec::new(),
        results: Vec::new(),
        lists: Vec::new(),
        macros: Vec::new(),
        rules: Vec::new(),
        profiles: Vec::new(),
        required_engine_version: None,
    }
}
