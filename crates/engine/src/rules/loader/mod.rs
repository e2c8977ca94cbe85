//! Rules files → a compiled [`Ruleset`], with Falco's item kinds, override semantics and
//! diagnostics.
//!
//! Files are read in order into definitions (later items override or extend earlier ones, as
//! in Falco's `overriding.md`), then every enabled rule is expanded (macros, lists, exceptions)
//! and compiled. Positions are kept as "global offsets" (file index and byte offset packed in
//! one number) so that an error found deep inside an expanded macro still points at the exact
//! line and column of the file it came from.
//!
//! The stages follow Falco's `rule_loader_reader` → `collector` → `compiler`: [`read`] and
//! [`read_rule`] turn YAML items into definitions and merge overrides and appends as they go,
//! [`expand`] resolves macros, lists and exceptions, [`compiler`] builds the matchers once every
//! file is read. This file holds the definitions the stages share and the diagnostic reporter.

use std::sync::Arc;

use super::{
    Rule, Ruleset,
    condition::{self, Check, Expr, FieldExpr, Op, Rhs, Value},
    diag::{Code, Context, Diagnostic, FileResult, Location, Position, snippet},
    yaml::{self, Kind, LineIndex, Mark, Node},
};
use osprey_model::Priority;

use crate::{compile, output::Format};

mod compiler;
mod expand;
mod profile_item;
mod read;
mod read_rule;

pub use expand::evttypes;

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
