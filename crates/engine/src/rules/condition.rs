//! The condition language: an AST and the recursive-descent parser of libsinsp's grammar
//! (`libs:userspace/libsinsp/filter/parser.h`, quoted in falco.md §1.2).
//!
//! The parser works on characters rather than tokens because what a word means depends on where
//! it stands: after an operator `/etc/` is a bare string, at the start of a check `open_read` is
//! a macro and `proc.name` a field. Every node carries the byte offset where it starts in the
//! condition text; the loader maps offsets to file positions.

use std::fmt;

/// Byte offset into the condition text (after appends were joined).
pub type Offset = usize;

#[derive(Clone, Debug, PartialEq)]
pub enum Expr {
    And(Vec<Expr>),
    Or(Vec<Expr>),
    Not(Box<Expr>),
    Check(Box<Check>),
    /// A macro reference.
    Ident {
        name: String,
        at: Offset,
    },
}

#[derive(Clone, Debug, PartialEq)]
pub struct Check {
    pub lhs: FieldExpr,
    pub op: Op,
    pub modifier: Option<Modifier>,
    pub rhs: Rhs,
    /// Where the operator starts.
    pub at: Offset,
}

/// A field, possibly wrapped in transformers: `tolower(proc.name)`, `proc.aname[2]`.
#[derive(Clone, Debug, PartialEq)]
pub enum FieldExpr {
    Field {
        name: String,
        arg: Option<String>,
        at: Offset,
    },
    Transform {
        tr: Transformer,
        inner: Box<FieldExpr>,
        at: Offset,
    },
}

impl FieldExpr {
    pub fn at(&self) -> Offset {
        match self {
            FieldExpr::Field { at, .. } | FieldExpr::Transform { at, .. } => *at,
        }
    }

    /// The innermost field name.
    pub fn base_name(&self) -> &str {
        match self {
            FieldExpr::Field { name, .. } => name,
            FieldExpr::Transform { inner, .. } => inner.base_name(),
        }
    }
}

impl fmt::Display for FieldExpr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FieldExpr::Field {
                name, arg: Some(a), ..
            } => write!(f, "{name}[{a}]"),
            FieldExpr::Field { name, .. } => f.write_str(name),
            FieldExpr::Transform { tr, inner, .. } => write!(f, "{}({inner})", tr.name()),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Transformer {
    ToLower,
    ToUpper,
    Basename,
    Len,
    B64,
}

impl Transformer {
    pub const ALL: [Transformer; 5] = [
        Transformer::ToLower,
        Transformer::ToUpper,
        Transformer::Basename,
        Transformer::Len,
        Transformer::B64,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Transformer::ToLower => "tolower",
            Transformer::ToUpper => "toupper",
            Transformer::Basename => "basename",
            Transformer::Len => "len",
            Transformer::B64 => "b64",
        }
    }

    pub fn from_name(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|t| t.name() == s)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Op {
    Exists,
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
    Contains,
    IContains,
    BContains,
    StartsWith,
    BStartsWith,
    EndsWith,
    Glob,
    IGlob,
    Regex,
    In,
    Intersects,
    PMatch,
}

impl Op {
    pub fn as_str(self) -> &'static str {
        match self {
            Op::Exists => "exists",
            Op::Eq => "=",
            Op::Ne => "!=",
            Op::Lt => "<",
            Op::Le => "<=",
            Op::Gt => ">",
            Op::Ge => ">=",
            Op::Contains => "contains",
            Op::IContains => "icontains",
            Op::BContains => "bcontains",
            Op::StartsWith => "startswith",
            Op::BStartsWith => "bstartswith",
            Op::EndsWith => "endswith",
            Op::Glob => "glob",
            Op::IGlob => "iglob",
            Op::Regex => "regex",
            Op::In => "in",
            Op::Intersects => "intersects",
            Op::PMatch => "pmatch",
        }
    }

    pub fn is_list(self) -> bool {
        matches!(self, Op::In | Op::Intersects | Op::PMatch)
    }

    pub fn is_numeric(self) -> bool {
        matches!(self, Op::Lt | Op::Le | Op::Gt | Op::Ge)
    }

    /// Operators that take a string modifier (`startswith oneof (...)`).
    pub fn takes_modifier(self) -> bool {
        !(self.is_list() || self.is_numeric() || self == Op::Exists)
    }
}

/// String operator modifiers (Falco 0.44): apply the operator to each value of a list.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Modifier {
    /// Exactly one value matches.
    OneOf,
    /// At least one value matches.
    AnyOf,
    /// Every value matches.
    AllOf,
}

impl Modifier {
    pub fn as_str(self) -> &'static str {
        match self {
            Modifier::OneOf => "oneof",
            Modifier::AnyOf => "anyof",
            Modifier::AllOf => "allof",
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct Value {
    pub text: String,
    /// Quoted values are never taken for list names.
    pub quoted: bool,
    pub at: Offset,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Rhs {
    /// `exists` takes no value.
    None,
    Value(Value),
    /// `(a, b, "c")`; unquoted items naming a list are expanded by the loader.
    List {
        items: Vec<Value>,
        at: Offset,
    },
    /// `in list_name`.
    ListRef {
        name: String,
        at: Offset,
    },
    /// `val(field)` or a transformer: compares with another field of the same event.
    Field(FieldExpr),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParseError {
    pub at: Offset,
    pub message: String,
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

/// libsinsp's default recursion limit.
const MAX_DEPTH: usize = 100;

/// Parses a whole condition.
pub fn parse(text: &str) -> Result<Expr, ParseError> {
    let mut p = Parser {
        s: text,
        pos: 0,
        depth: 0,
    };
    p.skip_ws();
    if p.pos >= p.s.len() {
        return Err(p.err("empty condition"));
    }
    let e = p.or_expr()?;
    p.skip_ws();
    if p.pos < p.s.len() {
        return Err(p.unexpected_after());
    }
    Ok(e)
}

/// Parses a field expression alone (exception `fields` entries, output `%toupper(user.name)`).
pub fn parse_field_expr(text: &str) -> Result<FieldExpr, ParseError> {
    let mut p = Parser {
        s: text,
        pos: 0,
        depth: 0,
    };
    p.skip_ws();
    let f = p.field_expr()?;
    p.skip_ws();
    if p.pos < p.s.len() {
        return Err(p.err(format!("unexpected text after field '{f}'")));
    }
    Ok(f)
}

/// Parses an operator with its optional modifier (exception `comps` entries).
pub fn parse_op(text: &str) -> Result<(Op, Option<Modifier>), ParseError> {
    let mut p = Parser {
        s: text,
        pos: 0,
        depth: 0,
    };
    p.skip_ws();
    let op = p
        .operator()
        .ok_or_else(|| p.err(format!("invalid comparison operator '{text}'")))?;
    p.skip_ws();
    let modifier = if op.takes_modifier() {
        p.modifier(true)
    } else {
        None
    };
    p.skip_ws();
    if p.pos < p.s.len() {
        return Err(p.err(format!("invalid comparison operator '{text}'")));
    }
    Ok((op, modifier))
}

/// Parses a `%field` reference at the start of `text` (outputs): the field expression and how
/// many bytes it took, or None when no field starts there.
pub fn parse_output_field(text: &str) -> Option<(FieldExpr, usize)> {
    let mut p = Parser {
        s: text,
        pos: 0,
        depth: 0,
    };
    let f = p.field_expr().ok()?;
    Some((f, p.pos))
}

pub fn is_identifier(s: &str) -> bool {
    let mut chars = s.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

struct Parser<'a> {
    s: &'a str,
    pos: usize,
    depth: usize,
}

fn is_ident_char(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'_'
}

fn is_bare_char(c: char) -> bool {
    !matches!(
        c,
        ' ' | '\u{8}' | '\t' | '\n' | '\r' | '(' | ')' | ',' | '=' | '"' | '\''
    )
}

const WORD_OPS: [(&str, Op); 13] = [
    ("bcontains", Op::BContains),
    ("bstartswith", Op::BStartsWith),
    ("contains", Op::Contains),
    ("endswith", Op::EndsWith),
    ("exists", Op::Exists),
    ("glob", Op::Glob),
    ("icontains", Op::IContains),
    ("iglob", Op::IGlob),
    ("intersects", Op::Intersects),
    ("in", Op::In),
    ("pmatch", Op::PMatch),
    ("regex", Op::Regex),
    ("startswith", Op::StartsWith),
];

const SYM_OPS: [(&str, Op); 7] = [
    ("==", Op::Eq),
    ("!=", Op::Ne),
    ("<=", Op::Le),
    (">=", Op::Ge),
    ("=", Op::Eq),
    ("<", Op::Lt),
    (">", Op::Gt),
];

impl<'a> Parser<'a> {
    fn rest(&self) -> &'a str {
        &self.s[self.pos..]
    }

    fn peek(&self) -> Option<u8> {
        self.s.as_bytes().get(self.pos).copied()
    }

    fn err(&self, message: impl Into<String>) -> ParseError {
        ParseError {
            at: self.pos,
            message: message.into(),
        }
    }

    fn skip_ws(&mut self) {
        while let Some(c) = self.peek() {
            if matches!(c, b' ' | b'\t' | b'\n' | b'\r' | 0x08) {
                self.pos += 1;
            } else {
                break;
            }
        }
    }

    /// Consumes `word` when it stands alone (not the start of a longer identifier).
    fn keyword(&mut self, word: &str) -> bool {
        let rest = self.rest();
        if rest.starts_with(word)
            && !rest
                .as_bytes()
                .get(word.len())
                .is_some_and(|c| is_ident_char(*c))
        {
            self.pos += word.len();
            true
        } else {
            false
        }
    }

    fn word_preview(&self) -> &'a str {
        let rest = self.rest();
        let end = rest
            .char_indices()
            .find(|(_, c)| c.is_whitespace() || matches!(c, '(' | ')' | ','))
            .map_or(rest.len(), |(i, _)| i);
        let end = if end == 0 {
            rest.chars().next().map_or(0, char::len_utf8)
        } else {
            end
        };
        &rest[..end]
    }

    fn unexpected_after(&self) -> ParseError {
        let prev = self.s[..self.pos].trim_end();
        let last = prev
            .rsplit(|c: char| c.is_whitespace())
            .next()
            .unwrap_or_default();
        self.err(format!(
            "unexpected token '{}' after '{}', expecting 'or', 'and'",
            self.word_preview(),
            last
        ))
    }

    fn enter(&mut self) -> Result<(), ParseError> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(self.err(format!("exceeded max depth limit of {MAX_DEPTH}")));
        }
        Ok(())
    }

    fn or_expr(&mut self) -> Result<Expr, ParseError> {
        self.enter()?;
        let mut items = vec![self.and_expr()?];
        loop {
            let save = self.pos;
            self.skip_ws();
            if self.keyword("or") {
                items.push(self.and_expr()?);
            } else {
                self.pos = save;
                break;
            }
        }
        self.depth -= 1;
        Ok(if items.len() == 1 {
            items.pop().unwrap_or(Expr::Or(Vec::new()))
        } else {
            Expr::Or(items)
        })
    }

    fn and_expr(&mut self) -> Result<Expr, ParseError> {
        let mut items = vec![self.not_expr()?];
        loop {
            let save = self.pos;
            self.skip_ws();
            if self.keyword("and") {
                items.push(self.not_expr()?);
            } else {
                self.pos = save;
                break;
            }
        }
        Ok(if items.len() == 1 {
            items.pop().unwrap_or(Expr::And(Vec::new()))
        } else {
            Expr::And(items)
        })
    }

    fn not_expr(&mut self) -> Result<Expr, ParseError> {
        self.skip_ws();
        if self.rest().starts_with("not")
            && matches!(
                self.s.as_bytes().get(self.pos + 3),
                Some(b' ' | b'\t' | b'\n' | b'\r' | b'(')
            )
        {
            self.pos += 3;
            self.enter()?;
            let inner = self.not_expr()?;
            self.depth -= 1;
            return Ok(Expr::Not(Box::new(inner)));
        }
        self.check()
    }

    fn check(&mut self) -> Result<Expr, ParseError> {
        self.skip_ws();
        let start = self.pos;
        match self.peek() {
            None => {
                return Err(
                    self.err("unexpected end of condition, expecting a field, macro or '('")
                );
            }
            Some(b'(') => {
                self.pos += 1;
                let e = self.or_expr()?;
                self.skip_ws();
                if self.peek() != Some(b')') {
                    if self.pos >= self.s.len() {
                        return Err(self.err("expecting ')' to close the '(' opened here"))
                            .map_err(|mut e| {
                                e.at = start;
                                e
                            });
                    }
                    return Err(self.err(format!(
                        "unexpected token '{}', expecting ')', 'or', 'and'",
                        self.word_preview()
                    )));
                }
                self.pos += 1;
                return Ok(e);
            }
            Some(c) if c.is_ascii_alphabetic() => {}
            Some(_) => {
                return Err(self.err(format!(
                    "unexpected token '{}', expecting a field, a macro, 'not' or '('",
                    self.word_preview()
                )));
            }
        }
        // Transformer call, field, or macro name.
        if self.transformer_ahead().is_some() {
            let lhs = self.field_expr()?;
            return self.condition(lhs);
        }
        let name = self.dotted_name();
        if name.contains('.') {
            self.pos = start;
            let lhs = self.field_expr()?;
            self.condition(lhs)
        } else {
            Ok(Expr::Ident { name, at: start })
        }
    }

    /// `[a-zA-Z]+[a-zA-Z0-9_]*(\.[a-zA-Z]+[a-zA-Z0-9_]*)*`
    fn dotted_name(&mut self) -> String {
        let start = self.pos;
        let b = self.s.as_bytes();
        loop {
            if !b.get(self.pos).is_some_and(u8::is_ascii_alphabetic) {
                break;
            }
            while b.get(self.pos).is_some_and(|c| is_ident_char(*c)) {
                self.pos += 1;
            }
            if b.get(self.pos) == Some(&b'.')
                && b.get(self.pos + 1).is_some_and(u8::is_ascii_alphabetic)
            {
                self.pos += 1;
            } else {
                break;
            }
        }
        self.s[start..self.pos].to_string()
    }

    fn transformer_ahead(&self) -> Option<Transformer> {
        let rest = self.rest();
        Transformer::ALL.into_iter().find(|t| {
            rest.starts_with(t.name()) && rest.as_bytes().get(t.name().len()) == Some(&b'(')
        })
    }

    fn field_expr(&mut self) -> Result<FieldExpr, ParseError> {
        let start = self.pos;
        if let Some(tr) = self.transformer_ahead() {
            self.pos += tr.name().len() + 1;
            self.skip_ws();
            let inner = self.field_expr()?;
            self.skip_ws();
            if self.peek() != Some(b')') {
                return Err(self.err(format!("expecting ')' to close {}(", tr.name())));
            }
            self.pos += 1;
            return Ok(FieldExpr::Transform {
                tr,
                inner: Box::new(inner),
                at: start,
            });
        }
        let name = self.dotted_name();
        if name.is_empty() || !name.contains('.') {
            self.pos = start;
            return Err(self.err(format!(
                "expecting a field name, found '{}'",
                self.word_preview()
            )));
        }
        let mut arg = None;
        if self.peek() == Some(b'[') {
            self.pos += 1;
            let a = if matches!(self.peek(), Some(b'"' | b'\'')) {
                self.quoted()?
            } else {
                let rest = self.rest();
                let end = rest
                    .find(|c: char| {
                        matches!(
                            c,
                            ' ' | '\u{8}' | '\t' | '\n' | '\r' | '[' | ']' | '"' | '\''
                        )
                    })
                    .unwrap_or(rest.len());
                self.pos += end;
                rest[..end].to_string()
            };
            if self.peek() != Some(b']') {
                return Err(self.err(format!(
                    "expecting ']' after the argument of field '{name}'"
                )));
            }
            self.pos += 1;
            arg = Some(a);
        }
        Ok(FieldExpr::Field {
            name,
            arg,
            at: start,
        })
    }

    fn operator(&mut self) -> Option<Op> {
        for (s, op) in SYM_OPS {
            if self.rest().starts_with(s) {
                self.pos += s.len();
                return Some(op);
            }
        }
        for (s, op) in WORD_OPS {
            if self.keyword(s) {
                return Some(op);
            }
        }
        None
    }

    fn modifier(&mut self, alone: bool) -> Option<Modifier> {
        for m in [Modifier::OneOf, Modifier::AnyOf, Modifier::AllOf] {
            let save = self.pos;
            if self.keyword(m.as_str()) {
                let mut look = self.pos;
                while self
                    .s
                    .as_bytes()
                    .get(look)
                    .is_some_and(|c| c.is_ascii_whitespace())
                {
                    look += 1;
                }
                // `startswith oneof` alone compares with the string "oneof".
                if alone
                    || self.s.as_bytes().get(look) == Some(&b'(')
                    || self
                        .s
                        .as_bytes()
                        .get(look)
                        .is_some_and(u8::is_ascii_alphabetic)
                {
                    return Some(m);
                }
                self.pos = save;
            }
        }
        None
    }

    fn condition(&mut self, lhs: FieldExpr) -> Result<Expr, ParseError> {
        self.skip_ws();
        let at = self.pos;
        let Some(op) = self.operator() else {
            return Err(self.err(format!(
                "expected a comparison operator after field '{lhs}', found '{}'",
                self.word_preview()
            )));
        };
        if op == Op::Exists {
            return Ok(Expr::Check(Box::new(Check {
                lhs,
                op,
                modifier: None,
                rhs: Rhs::None,
                at,
            })));
        }
        self.skip_ws();
        let modifier = if op.takes_modifier() {
            self.modifier(false)
        } else {
            None
        };
        if modifier.is_some() {
            self.skip_ws();
        }
        let rhs = if self.rest().starts_with("val(") {
            self.pos += 4;
            self.skip_ws();
            let f = self.field_expr()?;
            self.skip_ws();
            if self.peek() != Some(b')') {
                return Err(self.err("expecting ')' to close val("));
            }
            self.pos += 1;
            Rhs::Field(f)
        } else if self.transformer_ahead().is_some() {
            Rhs::Field(self.field_expr()?)
        } else if op.is_list() || modifier.is_some() {
            self.list_value(op)?
        } else {
            Rhs::Value(self.scalar_value(op)?)
        };
        Ok(Expr::Check(Box::new(Check {
            lhs,
            op,
            modifier,
            rhs,
            at,
        })))
    }

    fn list_value(&mut self, op: Op) -> Result<Rhs, ParseError> {
        let at = self.pos;
        match self.peek() {
            Some(b'(') => {
                self.pos += 1;
                let mut items = Vec::new();
                loop {
                    self.skip_ws();
                    match self.peek() {
                        Some(b')') => {
                            self.pos += 1;
                            break;
                        }
                        None => {
                            return Err(ParseError {
                                at,
                                message: "unterminated list: expecting ')'".into(),
                            });
                        }
                        _ => {}
                    }
                    if !items.is_empty() {
                        if self.peek() != Some(b',') {
                            return Err(self.err(format!(
                                "expecting ',' or ')' in list, found '{}'",
                                self.word_preview()
                            )));
                        }
                        self.pos += 1;
                        self.skip_ws();
                    }
                    items.push(self.scalar_value(op)?);
                }
                Ok(Rhs::List { items, at })
            }
            Some(c) if c.is_ascii_alphabetic() => {
                let name = self.dotted_name();
                if name.contains('.') {
                    return Err(ParseError {
                        at,
                        message: format!(
                            "expected a list after '{}', found '{name}' (use val({name}) to compare with a field)",
                            op.as_str()
                        ),
                    });
                }
                Ok(Rhs::ListRef { name, at })
            }
            _ => Err(self.err(format!(
                "expected a list after '{}', found '{}'",
                op.as_str(),
                self.word_preview()
            ))),
        }
    }

    fn scalar_value(&mut self, op: Op) -> Result<Value, ParseError> {
        let at = self.pos;
        if matches!(self.peek(), Some(b'"' | b'\'')) {
            let text = self.quoted()?;
            return Ok(Value {
                text,
                quoted: true,
                at,
            });
        }
        let rest = self.rest();
        let end = rest.find(|c: char| !is_bare_char(c)).unwrap_or(rest.len());
        if end == 0 {
            return Err(self.err(format!(
                "expected a value after '{}', found '{}'",
                op.as_str(),
                self.word_preview()
            )));
        }
        self.pos += end;
        Ok(Value {
            text: rest[..end].to_string(),
            quoted: false,
            at,
        })
    }

    /// A quoted string with libsinsp's escapes.
    fn quoted(&mut self) -> Result<String, ParseError> {
        let start = self.pos;
        let bytes = self.s.as_bytes();
        let q = bytes[self.pos];
        self.pos += 1;
        let mut out = String::new();
        let mut chars = self.s[self.pos..].char_indices();
        while let Some((i, c)) = chars.next() {
            if c == q as char {
                self.pos += i + 1;
                return Ok(out);
            }
            if c == '\\' {
                match chars.next() {
                    Some((_, 'b')) => out.push('\u{8}'),
                    Some((_, 'f')) => out.push('\u{c}'),
                    Some((_, 'n')) => out.push('\n'),
                    Some((_, 'r')) => out.push('\r'),
                    Some((_, 't')) => out.push('\t'),
                    Some((_, e)) => out.push(e),
                    None => break,
                }
            } else {
                out.push(c);
            }
        }
        Err(ParseError {
            at: start,
            message: "unterminated quoted string".into(),
        })
    }
}

/// Unquotes a list item written with its own quotes (`'"75-system-updat"'`).
pub fn unquote_item(s: &str) -> (String, bool) {
    let b = s.as_bytes();
    if b.len() >= 2 && (b[0] == b'"' || b[0] == b'\'') && b[b.len() - 1] == b[0] {
        let mut p = Parser {
            s,
            pos: 0,
            depth: 0,
        };
        if let Ok(v) = p.quoted()
            && p.pos == s.len()
        {
            return (v, true);
        }
    }
    (s.to_string(), false)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(e: &Expr) -> &Check {
        match e {
            Expr::Check(c) => c,
            other => panic!("not a check: {other:?}"),
        }
    }

    #[test]
    fn precedence_and_binds_tighter_than_or() {
        let e = parse("a or b and c").unwrap();
        let Expr::Or(items) = e else { panic!() };
        assert!(matches!(items[0], Expr::Ident { .. }));
        assert!(matches!(&items[1], Expr::And(v) if v.len() == 2));
    }

    #[test]
    fn not_forms() {
        assert!(matches!(parse("not a").unwrap(), Expr::Not(_)));
        assert!(matches!(parse("not(a)").unwrap(), Expr::Not(_)));
        assert!(matches!(parse("not not a").unwrap(), Expr::Not(b) if matches!(*b, Expr::Not(_))));
        // A macro whose name starts with "not" is a macro.
        assert!(matches!(parse("nothing").unwrap(), Expr::Ident { name, .. } if name == "nothing"));
    }

    #[test]
    fn operators_and_values() {
        let e = parse("proc.name!=\"sshd\"").unwrap();
        let c = check(&e);
        assert_eq!(c.op, Op::Ne);
        assert!(matches!(&c.rhs, Rhs::Value(v) if v.text == "sshd" && v.quoted));

        let e = parse("fd.name startswith /etc/").unwrap();
        assert!(matches!(&check(&e).rhs, Rhs::Value(v) if v.text == "/etc/" && !v.quoted));

        let e = parse("fd.num>=0").unwrap();
        assert_eq!(check(&e).op, Op::Ge);

        let e = parse("proc.pname exists").unwrap();
        assert_eq!(check(&e).op, Op::Exists);

        for (src, op) in [
            ("a.b contains x", Op::Contains),
            ("a.b icontains x", Op::IContains),
            ("a.b bcontains 414243", Op::BContains),
            ("a.b bstartswith 41", Op::BStartsWith),
            ("a.b endswith x", Op::EndsWith),
            ("a.b glob '*x'", Op::Glob),
            ("a.b iglob '*x'", Op::IGlob),
            ("a.b regex '.*'", Op::Regex),
            ("a.b in (x)", Op::In),
            ("a.b intersects (x)", Op::Intersects),
            ("a.b pmatch (/x)", Op::PMatch),
            ("a.b < 1", Op::Lt),
            ("a.b <= 1", Op::Le),
            ("a.b > 1", Op::Gt),
            ("a.b == 1", Op::Eq),
        ] {
            assert_eq!(check(&parse(src).unwrap()).op, op, "{src}");
        }
    }

    #[test]
    fn lists_with_bare_and_quoted_items() {
        let e = parse("proc.pname in (runc:[0:PARENT], \"puma reactor\", exe)").unwrap();
        let Rhs::List { items, .. } = &check(&e).rhs else {
            panic!()
        };
        let texts: Vec<_> = items.iter().map(|v| v.text.as_str()).collect();
        assert_eq!(texts, ["runc:[0:PARENT]", "puma reactor", "exe"]);
        let e = parse("proc.name in ()").unwrap();
        assert!(matches!(&check(&e).rhs, Rhs::List { items, .. } if items.is_empty()));
        let e = parse("proc.name in shell_binaries").unwrap();
        assert!(matches!(&check(&e).rhs, Rhs::ListRef { name, .. } if name == "shell_binaries"));
    }

    #[test]
    fn field_args_transformers_val_and_modifiers() {
        let e = parse("proc.aname[2]=chef").unwrap();
        assert!(matches!(&check(&e).lhs, FieldExpr::Field { arg: Some(a), .. } if a == "2"));
        let e = parse("tolower(basename(proc.exe)) = val(proc.name)").unwrap();
        let c = check(&e);
        assert_eq!(c.lhs.to_string(), "tolower(basename(proc.exe))");
        assert!(matches!(&c.rhs, Rhs::Field(f) if f.to_string() == "proc.name"));
        let e = parse("proc.name startswith oneof (a, b)").unwrap();
        assert_eq!(check(&e).modifier, Some(Modifier::OneOf));
        let e = parse("proc.name = toupper(proc.pname)").unwrap();
        assert!(matches!(&check(&e).rhs, Rhs::Field(_)));
    }

    #[test]
    fn quoted_escapes() {
        let e = parse(r#"proc.cmdline = "sh -c \"x\" 'y'""#).unwrap();
        assert!(matches!(&check(&e).rhs, Rhs::Value(v) if v.text == r#"sh -c "x" 'y'"#));
        assert_eq!(unquote_item("\"(systemd)\"").0, "(systemd)");
        assert_eq!(unquote_item("plain").0, "plain");
    }

    #[test]
    fn errors_carry_offsets() {
        let err = parse("evt.type=open and").unwrap_err();
        assert_eq!(err.at, 17);
        let err = parse("evt.type=open foo").unwrap_err();
        assert_eq!(err.at, 14);
        assert!(
            err.message.contains("after 'evt.type=open'"),
            "{}",
            err.message
        );
        let err = parse("(a and b").unwrap_err();
        assert_eq!(err.at, 0);
        let err = parse("proc.name").unwrap_err();
        assert_eq!(err.at, 9);
        let err = parse("proc.name in (a, b").unwrap_err();
        assert_eq!(err.at, 13);
        let err = parse("proc.name = 'abc").unwrap_err();
        assert_eq!(err.at, 12);
        let deep = format!("{}a{}", "(".repeat(200), ")".repeat(200));
        assert!(parse(&deep).unwrap_err().message.contains("max depth"));
    }

    #[test]
    fn op_and_field_helpers() {
        assert_eq!(
            parse_op("startswith oneof").unwrap(),
            (Op::StartsWith, Some(Modifier::OneOf))
        );
        assert_eq!(parse_op("in").unwrap(), (Op::In, None));
        assert!(parse_op("like").is_err());
        assert_eq!(
            parse_field_expr("tolower(proc.name)").unwrap().to_string(),
            "tolower(proc.name)"
        );
        let (f, n) = parse_output_field("proc.aname[2] rest").unwrap();
        assert_eq!((f.to_string().as_str(), n), ("proc.aname[2]", 13));
        let (f, n) = parse_output_field("fd.name.").unwrap();
        assert_eq!((f.to_string().as_str(), n), ("fd.name", 7));
    }
}
