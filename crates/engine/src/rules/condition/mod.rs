//! The condition language: an AST and the recursive-descent parser of libsinsp's grammar
//! (`libs:userspace/libsinsp/filter/parser.h`, quoted in falco.md §1.2).
//!
//! The parser works on characters rather than tokens because what a word means depends on where
//! it stands: after an operator `/etc/` is a bare string, at the start of a check `open_read` is
//! a macro and `proc.name` a field. Every node carries the byte offset where it starts in the
//! condition text; the loader maps offsets to file positions.

use std::fmt;

mod parser;
#[cfg(test)]
mod tests;

use parser::Parser;

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
