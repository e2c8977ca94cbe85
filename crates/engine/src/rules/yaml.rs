//! A YAML document as a tree of nodes that remember where they start in the file.
//!
//! yaml-rust2's own `Yaml` type drops positions, so the tree is built from its marked event
//! stream. Positions are 1-based lines and columns.
//!
//! The tree is bounded whatever the input: an alias is expanded by copying its anchor, so a
//! small file whose lists alias each other level after level ("billion laughs") would grow
//! without end; building stops at [`MAX_NODES`] and the file is refused with the position of
//! the alias that crossed the limit. Rule files come from ConfigMaps that every node loads,
//! so one hostile or broken file must never take the agents down.

use std::collections::HashMap;

use yaml_rust2::{
    parser::{Event, MarkedEventReceiver, Parser},
    scanner::{Marker, ScanError, TScalarStyle},
};

/// Most nodes (scalars, sequences, mappings, counting every alias copy) one document may have.
/// Falco's whole upstream ruleset is about 10,000; the limit keeps a refused file under some
/// 30 MB while it is read.
pub const MAX_NODES: usize = 250_000;
/// Largest rule file accepted, in bytes.
pub const MAX_FILE_BYTES: usize = 16 << 20;

/// A position in a file: byte offset, 1-based line and column.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Mark {
    pub offset: usize,
    pub line: usize,
    pub column: usize,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Kind {
    Scalar(String, TScalarStyle),
    Seq(Vec<Node>),
    Map(Vec<(Node, Node)>),
}

#[derive(Clone, Debug, PartialEq)]
pub struct Node {
    pub kind: Kind,
    pub mark: Mark,
}

impl Node {
    pub fn as_str(&self) -> Option<&str> {
        match &self.kind {
            Kind::Scalar(s, _) => Some(s),
            _ => None,
        }
    }

    /// A plain `~`/`null`/empty scalar.
    pub fn is_null(&self) -> bool {
        matches!(&self.kind, Kind::Scalar(s, TScalarStyle::Plain) if s.is_empty() || s == "~" || s == "null")
    }

    pub fn as_bool(&self) -> Option<bool> {
        match &self.kind {
            Kind::Scalar(s, TScalarStyle::Plain) => match s.as_str() {
                "true" | "True" | "TRUE" => Some(true),
                "false" | "False" | "FALSE" => Some(false),
                _ => None,
            },
            _ => None,
        }
    }

    pub fn as_seq(&self) -> Option<&[Node]> {
        match &self.kind {
            Kind::Seq(v) => Some(v),
            _ => None,
        }
    }

    pub fn as_map(&self) -> Option<&[(Node, Node)]> {
        match &self.kind {
            Kind::Map(v) => Some(v),
            _ => None,
        }
    }

    pub fn get(&self, key: &str) -> Option<&Node> {
        self.as_map()?
            .iter()
            .find(|(k, _)| k.as_str() == Some(key))
            .map(|(_, v)| v)
    }

    pub fn style(&self) -> Option<TScalarStyle> {
        match &self.kind {
            Kind::Scalar(_, st) => Some(*st),
            _ => None,
        }
    }
}

/// Character index → byte offset, for files that are not pure ASCII.
struct CharOffsets(Option<Vec<usize>>);

impl CharOffsets {
    fn new(text: &str) -> Self {
        Self((!text.is_ascii()).then(|| text.char_indices().map(|(i, _)| i).collect()))
    }

    fn get(&self, text: &str, idx: usize) -> usize {
        match &self.0 {
            None => idx.min(text.len()),
            Some(v) => v.get(idx).copied().unwrap_or(text.len()),
        }
    }
}

fn mark(m: Marker, text: &str, chars: &CharOffsets) -> Mark {
    // yaml-rust2 counts lines from 1 and columns from 0; its index counts characters.
    let offset = chars.get(text, m.index());
    Mark {
        offset,
        line: m.line(),
        column: m.col() + 1,
    }
}

struct Builder<'t> {
    text: &'t str,
    chars: CharOffsets,
    stack: Vec<(Node, Option<Node>)>,
    anchors: HashMap<usize, (Node, usize)>,
    anchor_ids: Vec<usize>,
    docs: Vec<Node>,
    /// Nodes built so far, alias copies included.
    nodes: usize,
    /// Where the node limit was crossed; nothing more is built after it.
    over: Option<Mark>,
}

/// Nodes in a tree, the root included.
fn size(n: &Node) -> usize {
    1 + match &n.kind {
        Kind::Scalar(..) => 0,
        Kind::Seq(v) => v.iter().map(size).sum(),
        Kind::Map(v) => v.iter().map(|(k, v)| size(k) + size(v)).sum(),
    }
}

impl Builder<'_> {
    fn push_value(&mut self, node: Node) {
        match self.stack.last_mut() {
            None => self.docs.push(node),
            Some((parent, pending_key)) => match &mut parent.kind {
                Kind::Seq(v) => v.push(node),
                Kind::Map(v) => match pending_key.take() {
                    Some(k) => v.push((k, node)),
                    None => {
                        // A block mapping's own mark is past its first key: use the key's.
                        if v.is_empty() {
                            parent.mark = node.mark;
                        }
                        *pending_key = Some(node);
                    }
                },
                Kind::Scalar(..) => {}
            },
        }
    }
}

impl MarkedEventReceiver for Builder<'_> {
    fn on_event(&mut self, ev: Event, m: Marker) {
        if self.over.is_some() {
            return;
        }
        let mk = mark(m, self.text, &self.chars);
        let adds = match &ev {
            Event::Scalar(..) | Event::SequenceStart(..) | Event::MappingStart(..) => 1,
            Event::Alias(id) => self.anchors.get(id).map_or(1, |(_, n)| *n),
            _ => 0,
        };
        self.nodes = self.nodes.saturating_add(adds);
        if self.nodes > MAX_NODES {
            self.over = Some(mk);
            return;
        }
        match ev {
            Event::Scalar(v, style, anchor, _) => {
                let n = Node {
                    kind: Kind::Scalar(v, style),
                    mark: mk,
                };
                if anchor > 0 {
                    self.anchors.insert(anchor, (n.clone(), 1));
                }
                self.push_value(n);
            }
            Event::SequenceStart(anchor, _) => {
                self.anchor_ids.push(anchor);
                self.stack.push((
                    Node {
                        kind: Kind::Seq(Vec::new()),
                        mark: mk,
                    },
                    None,
                ));
            }
            Event::MappingStart(anchor, _) => {
                self.anchor_ids.push(anchor);
                self.stack.push((
                    Node {
                        kind: Kind::Map(Vec::new()),
                        mark: mk,
                    },
                    None,
                ));
            }
            Event::SequenceEnd | Event::MappingEnd => {
                let anchor = self.anchor_ids.pop().unwrap_or(0);
                if let Some((n, _)) = self.stack.pop() {
                    if anchor > 0 {
                        let nodes = size(&n);
                        self.anchors.insert(anchor, (n.clone(), nodes));
                    }
                    self.push_value(n);
                }
            }
            Event::Alias(id) => {
                let n = self
                    .anchors
                    .get(&id)
                    .map(|(n, _)| n.clone())
                    .unwrap_or(Node {
                        kind: Kind::Scalar(String::new(), TScalarStyle::Plain),
                        mark: mk,
                    });
                self.push_value(n);
            }
            Event::Nothing
            | Event::StreamStart
            | Event::StreamEnd
            | Event::DocumentStart
            | Event::DocumentEnd => {}
        }
    }
}

/// A YAML syntax error with its position.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct YamlError {
    pub mark: Mark,
    pub message: String,
}

/// Parses the first document of `text` (None for an empty file).
pub fn parse(text: &str) -> Result<Option<Node>, YamlError> {
    if text.len() > MAX_FILE_BYTES {
        return Err(YamlError {
            mark: Mark {
                offset: 0,
                line: 1,
                column: 1,
            },
            message: format!(
                "the file is {} bytes; rule files of more than {MAX_FILE_BYTES} bytes are refused",
                text.len()
            ),
        });
    }
    let mut b = Builder {
        text,
        chars: CharOffsets::new(text),
        stack: Vec::new(),
        anchors: HashMap::new(),
        anchor_ids: Vec::new(),
        docs: Vec::new(),
        nodes: 0,
        over: None,
    };
    let mut parser = Parser::new_from_str(text);
    parser
        .load(&mut b, false)
        .map_err(|e: ScanError| YamlError {
            mark: mark(*e.marker(), text, &CharOffsets::new(text)),
            message: e.info().to_string(),
        })?;
    if let Some(mark) = b.over {
        return Err(YamlError {
            mark,
            message: format!(
                "the document grows past {MAX_NODES} nodes here (YAML aliases expanded by copying); \
                 refused"
            ),
        });
    }
    Ok(b.docs.into_iter().next())
}

/// Where each byte of a scalar's value sits in the file: aligns the value with its source text,
/// skipping quotes, block indicators, indentation and escapes. Returns one offset per value
/// byte plus one for the end.
pub fn value_offsets(file: &str, node: &Node) -> Vec<usize> {
    let Kind::Scalar(value, style) = &node.kind else {
        return vec![node.mark.offset];
    };
    let mut src = node.mark.offset;
    // Block scalars are marked at their content, quoted ones at the opening quote.
    if matches!(
        style,
        TScalarStyle::SingleQuoted | TScalarStyle::DoubleQuoted
    ) {
        src += 1;
    }
    let sb = file.as_bytes();
    let mut out = Vec::with_capacity(value.len() + 1);
    for (i, c) in value.char_indices() {
        let mut look = src;
        let mut found = None;
        while look < sb.len() && look < src + 256 {
            let sc = file[look..].chars().next().unwrap_or('\0');
            if sc == c || (c == ' ' && sc == '\n') || (c == '\n' && sc == '\n') {
                found = Some(look);
                break;
            }
            look += sc.len_utf8();
        }
        let at = found.unwrap_or(src);
        for _ in 0..c.len_utf8() {
            out.push(at);
        }
        if found.is_some() {
            src = at + file[at..].chars().next().map_or(1, char::len_utf8);
        }
        debug_assert_eq!(out.len(), i + c.len_utf8());
    }
    out.push(src);
    out
}

/// Line starts of a file, to turn offsets into line and column.
#[derive(Debug, Clone)]
pub struct LineIndex {
    starts: Vec<usize>,
}

impl LineIndex {
    pub fn new(text: &str) -> Self {
        let mut starts = vec![0];
        starts.extend(text.match_indices('\n').map(|(i, _)| i + 1));
        Self { starts }
    }

    pub fn mark(&self, text: &str, offset: usize) -> Mark {
        let line = self.starts.partition_point(|s| *s <= offset).max(1);
        let start = self.starts[line - 1];
        let column = text
            .get(start..offset.min(text.len()))
            .map_or(1, |s| s.chars().count() + 1);
        Mark {
            offset,
            line,
            column,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn marks_are_one_based() {
        let text = "- rule: a\n  condition: evt.type=open\n";
        let doc = parse(text).unwrap().unwrap();
        let item = &doc.as_seq().unwrap()[0];
        assert_eq!((item.mark.line, item.mark.column), (1, 3));
        let cond = item.get("condition").unwrap();
        assert_eq!((cond.mark.line, cond.mark.column), (2, 14));
        assert_eq!(&text[cond.mark.offset..cond.mark.offset + 8], "evt.type");
    }

    #[test]
    fn offsets_follow_folded_and_quoted_scalars() {
        let text = "- c: >\n    a and\n    bb\n- d: \"x \\\" y\"\n";
        let doc = parse(text).unwrap().unwrap();
        let seq = doc.as_seq().unwrap();
        let c = seq[0].get("c").unwrap();
        assert_eq!(c.as_str(), Some("a and bb\n"));
        let offs = value_offsets(text, c);
        let li = LineIndex::new(text);
        let m = li.mark(text, offs[6]);
        assert_eq!((m.line, m.column), (3, 5), "'bb' starts on line 3");
        let d = seq[1].get("d").unwrap();
        assert_eq!(d.as_str(), Some("x \" y"));
        let offs = value_offsets(text, d);
        assert_eq!(&text[offs[4]..offs[4] + 1], "y");
    }

    #[test]
    fn syntax_errors_have_positions() {
        let err = parse("- a: [1, 2\n- b").unwrap_err();
        assert!(err.mark.line >= 1);
        assert!(parse("").unwrap().is_none());
    }

    #[test]
    fn anchors_and_aliases() {
        let doc = parse("- &x {a: 1}\n- *x\n").unwrap().unwrap();
        let seq = doc.as_seq().unwrap();
        assert_eq!(seq[1].get("a").and_then(Node::as_str), Some("1"));
    }

    /// Nine levels of ten aliases each: 10^9 nodes if expanded. Refused, in bounded memory,
    /// at the alias that crosses the limit.
    #[test]
    fn an_alias_bomb_is_refused_where_it_explodes() {
        let mut text = String::from("- &l0 [x, x, x, x, x, x, x, x, x, x]\n");
        for i in 1..=9 {
            let prev = format!("*l{}", i - 1);
            text.push_str(&format!("- &l{i} [{}]\n", vec![prev; 10].join(", ")));
        }
        let e = parse(&text).unwrap_err();
        assert!(e.message.contains("250000 nodes"), "{e:?}");
        assert!(e.mark.line >= 6, "{e:?}");
        // A file that uses aliases modestly still loads.
        let ok = "- &l0 [x, x]\n- &l1 [*l0, *l0]\n- [*l1, *l1]\n";
        assert!(parse(ok).unwrap().is_some());
    }

    #[test]
    fn oversized_files_are_refused() {
        let e = parse(&"#".repeat(MAX_FILE_BYTES + 1)).unwrap_err();
        assert!(e.message.contains("refused"), "{e:?}");
    }
}
