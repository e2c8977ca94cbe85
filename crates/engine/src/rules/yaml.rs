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
    scanner::{Marker, TScalarStyle},
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

fn mark(m: Marker, text: &str, chars: &CharOffsets, shift: &Shift) -> Mark {
    // yaml-rust2 counts lines from 1 and columns from 0; its index counts characters.
    let offset = chars.get(text, m.index());
    shift.back(Mark {
        offset,
        line: m.line(),
        column: m.col() + 1,
    })
}

/// Spaces [`relax_flow_indentation`] inserted at the start of lines, to map positions in the
/// relaxed text back to the file: `(offset in the relaxed text, line, spaces)`, in order.
#[derive(Default)]
struct Shift(Vec<(usize, usize, usize)>);

impl Shift {
    fn back(&self, m: Mark) -> Mark {
        let mut offset = m.offset;
        let mut column = m.column;
        for &(at, line, added) in &self.0 {
            if at > m.offset {
                break;
            }
            offset -= added.min(m.offset - at);
            if line == m.line {
                column = column.saturating_sub(added).max(1);
            }
        }
        Mark {
            offset,
            line: m.line,
            column,
        }
    }
}

/// yaml-cpp (Falco's reader) accepts a flow collection whose continuation lines, often its
/// closing bracket, sit at or left of the indentation of the key that opened it:
///
/// ```yaml
/// - list: miner_domains
///   items: [
///     "a", "b"
///   ]
/// ```
///
/// The YAML spec and yaml-rust2 do not (falcosecurity/rules' falco-sandbox_rules.yaml has such
/// lists). This returns the text with those lines indented one column past the key, and where
/// spaces went; `None` when no line needed it. Only used after a file failed to parse as it is,
/// so files that parse are read byte for byte.
fn relax_flow_indentation(text: &str) -> Option<(String, Shift)> {
    let mut out = String::with_capacity(text.len() + 64);
    let mut shift = Shift::default();
    // Inside a flow collection: its depth, the least indentation its lines need, and an open
    // quote (flow scalars may span lines).
    let mut depth = 0usize;
    let mut min_indent = 0usize;
    let mut quote: Option<char> = None;
    // Inside a block scalar (`>`, `|`): lines indented more than this belong to it.
    let mut block_scalar: Option<usize> = None;
    for (i, line) in text.split_inclusive('\n').enumerate() {
        let indent = line.len() - line.trim_start_matches(' ').len();
        let content = line.trim();
        if let Some(key_indent) = block_scalar {
            if content.is_empty() || indent > key_indent {
                out.push_str(line);
                continue;
            }
            block_scalar = None;
        }
        if depth > 0 {
            if !content.is_empty() && indent < min_indent && quote.is_none() {
                let added = min_indent - indent;
                shift.0.push((out.len(), i + 1, added));
                out.extend(std::iter::repeat_n(' ', added));
            }
            out.push_str(line);
            scan_flow(line, &mut depth, &mut quote);
            continue;
        }
        out.push_str(line);
        // A value position: after `- ` markers and an optional `key: `.
        let mut rest = &line[indent..];
        let mut col = indent;
        while let Some(r) = rest.strip_prefix("- ").or_else(|| rest.strip_prefix("-\t")) {
            let r2 = r.trim_start();
            col += rest.len() - r2.len();
            rest = r2;
        }
        let key_col = col;
        let value = match find_key_colon(rest) {
            Some(v) => v.trim_start(),
            None => rest,
        };
        if value.starts_with('[') || value.starts_with('{') {
            min_indent = key_col + 1;
            let at = line.len() - value.len();
            scan_flow(&line[at..], &mut depth, &mut quote);
        } else if (value.starts_with('>') || value.starts_with('|'))
            && value[1..]
                .trim_start_matches(['-', '+', '0', '1', '2', '3', '4', '5', '6', '7', '8', '9'])
                .trim_start()
                .chars()
                .next()
                .is_none_or(|c| c == '#')
        {
            block_scalar = Some(key_col);
        }
    }
    (!shift.0.is_empty()).then_some((out, shift))
}

/// The text after a plain mapping key's `: ` on a line, if the line has one.
fn find_key_colon(s: &str) -> Option<&str> {
    let b = s.as_bytes();
    let mut q: Option<u8> = None;
    for (i, &c) in b.iter().enumerate() {
        match (q, c) {
            (Some(open), c) if c == open => q = None,
            (Some(_), _) => {}
            (None, b'"' | b'\'') if i == 0 => q = Some(c),
            (None, b'#') if i == 0 || b[i - 1] == b' ' => return None,
            (None, b'[' | b'{') if i == 0 => return None,
            (None, b':')
                if b.get(i + 1)
                    .is_none_or(|n| matches!(n, b' ' | b'\t' | b'\n' | b'\r')) =>
            {
                return Some(&s[i + 1..]);
            }
            _ => {}
        }
    }
    None
}

/// Follows brackets and quotes of flow content through one line.
fn scan_flow(s: &str, depth: &mut usize, quote: &mut Option<char>) {
    let mut prev = ' ';
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        match (*quote, c) {
            (Some('"'), '\\') => {
                chars.next();
            }
            (Some('\''), '\'') if chars.peek() == Some(&'\'') => {
                chars.next();
            }
            (Some(q), c) if c == q => *quote = None,
            (Some(_), _) => {}
            (None, '"' | '\'') => *quote = Some(c),
            (None, '#') if prev == ' ' || prev == '\t' => return,
            (None, '[' | '{') => *depth += 1,
            (None, ']' | '}') => {
                *depth = depth.saturating_sub(1);
                if *depth == 0 {
                    return;
                }
            }
            _ => {}
        }
        prev = c;
    }
}

struct Builder<'t> {
    text: &'t str,
    chars: CharOffsets,
    shift: Shift,
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
        let mk = mark(m, self.text, &self.chars, &self.shift);
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
    match parse_shifted(text, Shift::default()) {
        Err(e) if e.limit => Err(e.error),
        Err(e) => match relax_flow_indentation(text) {
            // What is still wrong once read as yaml-cpp reads it: Falco's error too.
            Some((relaxed, shift)) => parse_shifted(&relaxed, shift).map_err(|r| r.error),
            None => Err(e.error),
        },
        Ok(doc) => Ok(doc),
    }
}

struct ParseFailure {
    error: YamlError,
    /// The node limit, not the syntax, refused the file.
    limit: bool,
}

fn parse_shifted(text: &str, shift: Shift) -> Result<Option<Node>, ParseFailure> {
    let mut b = Builder {
        text,
        chars: CharOffsets::new(text),
        shift,
        stack: Vec::new(),
        anchors: HashMap::new(),
        anchor_ids: Vec::new(),
        docs: Vec::new(),
        nodes: 0,
        over: None,
    };
    let mut parser = Parser::new_from_str(text);
    if let Err(e) = parser.load(&mut b, false) {
        return Err(ParseFailure {
            error: YamlError {
                mark: mark(*e.marker(), text, &CharOffsets::new(text), &b.shift),
                message: e.info().to_string(),
            },
            limit: false,
        });
    }
    if let Some(mark) = b.over {
        return Err(ParseFailure {
            error: YamlError {
                mark,
                message: format!(
                    "the document grows past {MAX_NODES} nodes here (YAML aliases expanded by \
                     copying); refused"
                ),
            },
            limit: true,
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

    fn items(doc: &Node, i: usize) -> Vec<&str> {
        doc.as_seq().unwrap()[i]
            .get("items")
            .unwrap()
            .as_seq()
            .unwrap()
            .iter()
            .filter_map(Node::as_str)
            .collect()
    }

    /// falcosecurity/rules' falco-sandbox_rules.yaml: the closing `]` at the key's indentation.
    #[test]
    fn flow_sequence_closed_at_the_keys_indentation() {
        let text = "- list: miner_domains\n  items: [\n    \"a.example\",\n    \"b.example\"\n  ]\n\n- list: x\n  items: [c]\n";
        let doc = parse(text).unwrap().unwrap();
        assert_eq!(items(&doc, 0), ["a.example", "b.example"]);
        assert_eq!(items(&doc, 1), ["c"]);
        // Positions stay those of the file, after the line that was moved too.
        let x = &doc.as_seq().unwrap()[1];
        assert_eq!((x.mark.line, x.mark.column), (7, 3));
        assert_eq!(&text[x.mark.offset..x.mark.offset + 7], "list: x");
    }

    /// Items, not only the bracket, at or left of the key's column.
    #[test]
    fn flow_sequence_items_left_of_the_key() {
        let text = "- list: l\n  items: [\n  a, b,\n c\n]\n- macro: m\n  condition: evt.num=0\n";
        let doc = parse(text).unwrap().unwrap();
        assert_eq!(items(&doc, 0), ["a", "b", "c"]);
        let m = doc.as_seq().unwrap()[1].get("condition").unwrap();
        assert_eq!((m.mark.line, m.mark.column), (7, 14));
        assert_eq!(&text[m.mark.offset..m.mark.offset + 7], "evt.num");
    }

    /// A flow mapping closed at the key's indentation, under a key on a `- ` line.
    #[test]
    fn flow_mapping_closed_at_the_keys_indentation() {
        let text = "- rule: r\n  override: {\n    condition: append\n  }\n";
        let doc = parse(text).unwrap().unwrap();
        let o = doc.as_seq().unwrap()[0].get("override").unwrap();
        assert_eq!(o.get("condition").and_then(Node::as_str), Some("append"));
        let text = "- items: [\n  a,\n  ]\n";
        let doc = parse(text).unwrap().unwrap();
        assert_eq!(items(&doc, 0), ["a"]);
    }

    /// Brackets in block scalars, quoted strings and comments are not flow collections, and a
    /// file that is broken for another reason still reports its own error.
    #[test]
    fn relaxing_leaves_scalars_and_real_errors_alone() {
        let text = "- rule: r\n  output: >\n    x=%proc.aname[2] [\n  items: [\n    \"]\", # ]\n    b\n  ]\n";
        let doc = parse(text).unwrap().unwrap();
        assert_eq!(
            doc.as_seq().unwrap()[0]
                .get("output")
                .and_then(Node::as_str),
            Some("x=%proc.aname[2] [\n")
        );
        assert_eq!(items(&doc, 0), ["]", "b"]);
        let e = parse("- list: l\n  items: [\n  a\n  ]\n- b: \"open\n").unwrap_err();
        assert!(e.mark.line >= 5, "{e:?}");
    }

    #[test]
    fn oversized_files_are_refused() {
        let e = parse(&"#".repeat(MAX_FILE_BYTES + 1)).unwrap_err();
        assert!(e.message.contains("refused"), "{e:?}");
    }
}
