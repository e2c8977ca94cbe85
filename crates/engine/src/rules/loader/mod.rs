//! Rules files → a compiled [`Ruleset`], with Falco's item kinds, override semantics and
//! diagnostics.
//!
//! Files are read in order into definitions (later items override or extend earlier ones, as
//! in Falco's `overriding.md`), then every enabled rule is expanded (macros, lists, exceptions)
//! and compiled. Positions are kept as "global offsets" (file index and byte offset packed in
//! one number) so that an error found deep inside an expanded macro still points at the exact
//! line and column of the file it came from.
//!
//! The stages follow Falco's `rule_loader_reader` → `collector` → `compiler`: [`read`],
//! [`read_rule`] and [`profile_item`] turn YAML items into definitions, [`collect`] merges
//! each into those read before (one routine for every kind), [`expand`] resolves macros, lists
//! and exceptions, [`compiler`] builds the matchers once every file is read. [`report`] turns
//! what goes wrong into Falco's diagnostics, by item. This file holds the definitions the
//! stages share.

use std::sync::Arc;

use super::{
    Rule, Ruleset,
    condition::{self, Check, Expr, FieldExpr, Op, Rhs, Value},
    diag::{Code, Context, Diagnostic, FileResult, Location, Position, snippet},
    yaml::{self, Kind, LineIndex, Mark, Node},
};
use osprey_model::Priority;

use crate::{compile, output::Format};

use self::{
    collect::{Collector, Definition, Merge},
    report::{Diags, Reporter},
};

mod collect;
mod compiler;
mod expand;
mod profile_item;
mod read;
mod read_rule;
mod report;

pub use expand::evttypes;

/// Falco's engine version whose rules language Osprey implements.
pub const ENGINE_VERSION: (u64, u64, u64) = (0, 63, 0);

/// Plugins whose fields Osprey provides itself.
const BUILTIN_PLUGINS: &[&str] = &["container"];

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

/// A `list` item: a name for a set of values.
#[derive(Clone, Debug)]
struct ListDef {
    name: String,
    items: Vec<String>,
    pos: GPos,
}

/// A `macro` item: a name for a condition.
#[derive(Clone, Debug)]
struct MacroDef {
    name: String,
    cond: Text,
    pos: GPos,
}

/// One value of an exception's row: a scalar, or a list (for `in`-like comparisons).
#[derive(Clone, Debug)]
enum ExcValue {
    One(String),
    Many(Vec<String>),
}

/// One entry of a rule's `exceptions`: fields, how to compare them, and rows of values.
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

/// A `rule` as defined, after the overrides and appends read so far.
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

/// The loader's state between files: diagnostics so far and the definitions collected.
#[derive(Default)]
struct Loader {
    diags: Diags,
    lists: Collector<ListDef>,
    macros: Collector<MacroDef>,
    rules: Collector<RuleDef>,
    /// Syscall profiles (`profile` items).
    profiles: Collector<crate::profile::Profile>,
    required_engine_version: Option<String>,
}

/// Loads rules from in-memory sources `(name, text)`, in order.
pub fn load_sources<N: AsRef<str>, T: AsRef<str>>(sources: &[(N, T)]) -> LoadResult {
    let mut l = Loader::default();
    for (name, text) in sources {
        l.add_source(name.as_ref(), Ok(text.as_ref().to_string()));
    }
    l.finish()
}

/// Loads rules files in order.
pub fn load_files<P: AsRef<std::path::Path>>(paths: &[P]) -> LoadResult {
    let mut l = Loader::default();
    for p in paths {
        let p = p.as_ref();
        let text = std::fs::read_to_string(p)
            .map_err(|e| format!("Could not read file {}: {e}", p.display()));
        l.add_source(&p.display().to_string(), text);
    }
    l.finish()
}
