//! Diagnostics in Falco's shape, reported by item: a [`Reporter`] knows which item it speaks
//! about (its kind, name and position) and which file it was read from, so a call names only
//! what varies: `r.error(code, msg)` for the item, `r.at(node).warning(code, msg)` for a key or
//! value inside it, `r.at_pos(p).in_condition(cond)` for a spot in an expanded condition.
//!
//! Results sit behind a `RefCell` so that a reporter (a shared borrow of [`Diags`]) can be held
//! while the loader changes its definitions, which live beside it.

use std::{cell::RefCell, sync::Arc};

use super::{
    Code, Context, Diagnostic, FileResult, GPos, LineIndex, Location, Mark, OFF_BITS, Position,
    gpos, snippet, yaml::Node,
};

/// One rules source: its name, its text and where its lines start.
pub(super) struct Src {
    pub(super) name: Arc<str>,
    pub(super) text: String,
    pub(super) lines: LineIndex,
}

/// The sources read so far and, per source, the errors and warnings found in it.
#[derive(Default)]
pub(super) struct Diags {
    srcs: Vec<Src>,
    results: RefCell<Vec<FileResult>>,
}

/// The item a diagnostic is about: Falco's second location ("rule 'a': (file:1:3)").
#[derive(Clone)]
struct Subject {
    kind: &'static str,
    name: String,
    pos: GPos,
}

impl Diags {
    /// Adds a source (empty when it could not be read) and returns its file index.
    pub(super) fn add(&mut self, name: &str, text: String) -> usize {
        self.results.get_mut().push(FileResult {
            name: name.to_string(),
            successful: true,
            errors: Vec::new(),
            warnings: Vec::new(),
        });
        self.srcs.push(Src {
            name: name.into(),
            lines: LineIndex::new(&text),
            text,
        });
        self.srcs.len() - 1
    }

    pub(super) fn text(&self, file: usize) -> &str {
        &self.srcs[file].text
    }

    /// How many errors `file` has so far.
    pub(super) fn errors(&self, file: usize) -> usize {
        self.results
            .borrow()
            .get(file)
            .map_or(0, |r| r.errors.len())
    }

    /// No file has an error.
    pub(super) fn ok(&self) -> bool {
        self.results.borrow().iter().all(|f| f.errors.is_empty())
    }

    pub(super) fn into_results(self) -> Vec<FileResult> {
        self.results.into_inner()
    }

    fn decode(&self, g: GPos) -> Option<(usize, usize)> {
        let file = (g >> OFF_BITS).checked_sub(1)?;
        (file < self.srcs.len()).then_some((file, g & ((1 << OFF_BITS) - 1)))
    }

    /// File, line and column of a global position.
    pub(super) fn position(&self, g: GPos) -> Option<Position> {
        self.locate(g).map(|(_, p, _)| p)
    }

    fn locate(&self, g: GPos) -> Option<(usize, Position, Mark)> {
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

    /// A reporter about the item of `kind` named `name`, defined at `pos`.
    pub(super) fn item(&self, kind: &'static str, name: &str, pos: GPos) -> Reporter<'_> {
        Reporter {
            diags: self,
            subject: Some(Subject {
                kind,
                name: name.to_string(),
                pos,
            }),
            file: self.decode(pos).map_or(0, |(f, _)| f),
        }
    }

    /// A reporter about the content of `file` itself, outside any item (the YAML does not
    /// parse, an element is not a map): its diagnostics need a position, given with `at`.
    pub(super) fn content(&self, file: usize) -> Reporter<'_> {
        Reporter {
            diags: self,
            subject: None,
            file,
        }
    }

    /// Records a diagnostic about `subject`, at `at` (a position inside it) or at the subject,
    /// in the file `at` is in.
    fn record(
        &self,
        code: Code,
        message: String,
        subject: Option<&Subject>,
        at: Option<GPos>,
        cond: Option<&str>,
    ) {
        let at = at.or(subject.map(|s| s.pos));
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
        if let Some(s) = subject
            && let Some(p) = self.position(s.pos)
        {
            locations.push(Location {
                item_type: s.kind.into(),
                item_name: s.name.clone(),
                position: p,
            });
        }
        let mut snip = String::new();
        if let Some((_, p, m)) = at.and_then(|g| self.locate(g)) {
            snip = snippet(&src.text, m.line, m.column);
            if let Some(cond) = cond {
                locations.push(Location {
                    item_type: "condition expression".into(),
                    item_name: cond.to_string(),
                    position: p,
                });
            } else if at != subject.map(|s| s.pos) {
                // A spot inside the item (a key, a value) gets a location of its own.
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
            message,
            context: Context {
                locations,
                snippet: snip,
            },
        };
        let mut results = self.results.borrow_mut();
        let r = &mut results[file];
        if code.is_error() {
            r.successful = false;
            r.errors.push(d);
        } else {
            r.warnings.push(d);
        }
    }
}

/// Reports diagnostics about one item, or about a file's content outside any item.
pub(super) struct Reporter<'a> {
    diags: &'a Diags,
    subject: Option<Subject>,
    /// The file the item was read from: where the YAML nodes given to [`Reporter::at`] are.
    file: usize,
}

impl<'a> Reporter<'a> {
    /// The same item under its name, once the name is read (errors about the name itself are
    /// reported before it is known).
    pub(super) fn named(mut self, name: &str) -> Self {
        if let Some(s) = &mut self.subject {
            s.name = name.to_string();
        }
        self
    }

    /// A reporter about another item read from the same file (an exception inside a rule).
    pub(super) fn item(&self, kind: &'static str, name: &str, pos: GPos) -> Reporter<'a> {
        self.diags.item(kind, name, pos)
    }

    /// A global position in the item's file, from a byte offset in it.
    pub(super) fn pos(&self, offset: usize) -> GPos {
        gpos(self.file, offset)
    }

    /// At a YAML node of the item's file: a key or a value.
    pub(super) fn at(&self, node: &Node) -> At<'_> {
        self.at_pos(self.pos(node.mark.offset))
    }

    /// At a global position, possibly in another file (inside a macro the rule uses).
    pub(super) fn at_pos(&self, at: GPos) -> At<'_> {
        At {
            diags: self.diags,
            subject: self.subject.as_ref(),
            at: Some(at),
            cond: None,
        }
    }

    fn here(&self) -> At<'_> {
        At {
            diags: self.diags,
            subject: self.subject.as_ref(),
            at: None,
            cond: None,
        }
    }

    /// An error about the item as a whole.
    pub(super) fn error(&self, code: Code, message: impl Into<String>) {
        self.here().error(code, message);
    }

    /// A warning about the item as a whole.
    pub(super) fn warning(&self, code: Code, message: impl Into<String>) {
        self.here().warning(code, message);
    }
}

/// A spot a diagnostic points at: the item, a position inside it, or a position in the
/// condition it expands to.
pub(super) struct At<'r> {
    diags: &'r Diags,
    subject: Option<&'r Subject>,
    at: Option<GPos>,
    cond: Option<&'r str>,
}

impl<'r> At<'r> {
    /// The position is in `cond`, the item's condition: Falco then names the condition
    /// instead of a plain value.
    pub(super) fn in_condition(self, cond: &'r str) -> Self {
        Self {
            cond: Some(cond),
            ..self
        }
    }

    pub(super) fn error(self, code: Code, message: impl Into<String>) {
        debug_assert!(code.is_error(), "{} is a warning code", code.as_str());
        self.record(code, message.into());
    }

    pub(super) fn warning(self, code: Code, message: impl Into<String>) {
        debug_assert!(!code.is_error(), "{} is an error code", code.as_str());
        self.record(code, message.into());
    }

    fn record(self, code: Code, message: String) {
        self.diags
            .record(code, message, self.subject, self.at, self.cond);
    }
}
