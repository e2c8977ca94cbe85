//! Conditions compiled into matchers: fields resolved to ids, literals parsed to the field's
//! type, regexes compiled, `in` lists turned into hash sets and `pmatch` lists into a path trie.
//! Each condition is compiled once, at load time; evaluation allocates only for derived strings.

use std::{
    collections::{HashMap, HashSet},
    net::IpAddr,
};

use base64::Engine as _;
use regex::Regex;

mod hash;
mod kernel_filter;
mod prefilter;
mod program;
mod sets;
#[cfg(test)]
mod tests;

pub use hash::{FastBuild, FastHash};
pub use kernel_filter::{KernelFilter, Names, OPEN_ARGS, PathKeys, Verdict, key_name};
pub use osprey_model::glob::glob_match;
pub use prefilter::Prefilter;
pub use program::Program;
pub use sets::{PathTrie, StrSet, TextSet};

use super::fields::{self, Ctx, FieldRef, FieldType, Val};
use crate::rules::condition::{Check, Expr, FieldExpr, Modifier, Op, Rhs, Transformer, Value};

/// A compiled condition.
#[derive(Debug, Clone)]
pub enum Node {
    And(Box<[Node]>),
    Or(Box<[Node]>),
    Not(Box<Node>),
    Const(bool),
    Check(Box<CheckM>),
}

#[derive(Debug, Clone)]
pub struct CheckM {
    lhs: Lhs,
    /// `proc.aname` without an index: true when any ancestor passes.
    any_ancestor: bool,
    test: Test,
    /// The check's slot in the per-event results ([`Ctx::memo`]) when other rules of the
    /// engine make the same check; [`NO_MEMO`] otherwise.
    memo: u32,
}

/// A check whose result is not kept.
pub const NO_MEMO: u32 = u32::MAX;

impl Node {
    /// The text values compared with `field` by `=`, `!=` or `in` anywhere in the condition.
    pub fn literals_of(&self, field: &str, out: &mut std::collections::BTreeSet<String>) {
        match self {
            Node::And(v) | Node::Or(v) => v.iter().for_each(|n| n.literals_of(field, out)),
            Node::Not(n) => n.literals_of(field, out),
            Node::Const(_) => {}
            Node::Check(c) if c.lhs.field().def.name == field => c.test.literals(out),
            Node::Check(_) => {}
        }
    }
}

impl Test {
    fn literals(&self, out: &mut std::collections::BTreeSet<String>) {
        match self {
            Test::Str(StrOp::Eq | StrOp::Ne, s) => {
                out.insert(s.to_string());
            }
            Test::StrIn(set) => out.extend(set.iter().map(str::to_string)),
            Test::Any(v) | Test::All(v) | Test::One(v) => v.iter().for_each(|t| t.literals(out)),
            _ => {}
        }
    }
}

impl CheckM {
    /// What makes two checks the same: field, transformers and test.
    fn key(&self) -> String {
        format!("{:?}|{:?}|{}", self.lhs, self.test, self.any_ancestor)
    }

    fn eval(&self, ctx: &Ctx<'_>) -> bool {
        if self.any_ancestor {
            return self
                .lhs
                .extract_many(ctx)
                .iter()
                .any(|v| self.test.eval(v, ctx));
        }
        match self.lhs.extract(ctx) {
            Some(v) => self.test.eval(&v, ctx),
            // Falco: a check on an unset field is false, except `exists`' negation.
            None => false,
        }
    }
}

/// A field with its transformers.
#[derive(Debug, Clone, PartialEq)]
pub enum Lhs {
    Field(FieldRef),
    Tr(Transformer, Box<Lhs>),
}

impl Lhs {
    pub fn field(&self) -> &FieldRef {
        match self {
            Lhs::Field(f) => f,
            Lhs::Tr(_, inner) => inner.field(),
        }
    }

    fn ty(&self) -> FieldType {
        match self {
            Lhs::Field(f) => f.ty(),
            Lhs::Tr(Transformer::Len, _) => FieldType::Uint64,
            Lhs::Tr(..) => FieldType::Charbuf,
        }
    }

    /// The value for this event, or None when unset.
    #[inline]
    pub fn extract<'a>(&self, ctx: &Ctx<'a>) -> Option<Val<'a>> {
        match self {
            Lhs::Field(f) => ctx.extract(f),
            Lhs::Tr(t, inner) => inner.extract(ctx).map(|v| transform(*t, v)),
        }
    }

    fn extract_many<'a>(&self, ctx: &Ctx<'a>) -> Vec<Val<'a>> {
        match self {
            Lhs::Field(f) => ctx.extract_ancestors(f),
            Lhs::Tr(t, inner) => inner
                .extract_many(ctx)
                .into_iter()
                .map(|v| transform(*t, v))
                .collect(),
        }
    }
}

pub fn transform(t: Transformer, v: Val<'_>) -> Val<'_> {
    use std::borrow::Cow;
    match t {
        Transformer::ToLower => Val::Str(Cow::Owned(v.text().to_lowercase())),
        Transformer::ToUpper => Val::Str(Cow::Owned(v.text().to_uppercase())),
        Transformer::Basename => {
            let s = v.text();
            Val::Str(Cow::Owned(osprey_model::process::base(&s).to_string()))
        }
        Transformer::Len => Val::Num(v.text().len() as i64),
        Transformer::B64 => {
            let s = v.text();
            let decoded = base64::engine::general_purpose::STANDARD
                .decode(s.trim())
                .map(|b| String::from_utf8_lossy(&b).into_owned())
                .unwrap_or_default();
            Val::Str(Cow::Owned(decoded))
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum StrOp {
    Eq,
    Ne,
    Contains,
    StartsWith,
    EndsWith,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum NumOp {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

impl NumOp {
    fn from_op(op: Op) -> Option<Self> {
        Some(match op {
            Op::Eq => NumOp::Eq,
            Op::Ne => NumOp::Ne,
            Op::Lt => NumOp::Lt,
            Op::Le => NumOp::Le,
            Op::Gt => NumOp::Gt,
            Op::Ge => NumOp::Ge,
            _ => return None,
        })
    }

    fn apply<T: PartialOrd>(self, a: T, b: T) -> bool {
        match self {
            NumOp::Eq => a == b,
            NumOp::Ne => a != b,
            NumOp::Lt => a < b,
            NumOp::Le => a <= b,
            NumOp::Gt => a > b,
            NumOp::Ge => a >= b,
        }
    }
}

/// An IP network (`10.0.0.0/8`), or one address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IpNet {
    addr: IpAddr,
    prefix: u8,
}

impl IpNet {
    pub fn parse(s: &str) -> Option<Self> {
        let (a, p) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s, None),
        };
        let addr: IpAddr = a.parse().ok()?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match p {
            Some(p) => p.parse().ok().filter(|p| *p <= max)?,
            None => max,
        };
        Some(Self { addr, prefix })
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, ip) {
            (IpAddr::V4(n), IpAddr::V4(i)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(n) & mask == u32::from(i) & mask
            }
            (IpAddr::V6(n), IpAddr::V6(i)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(n) & mask == u128::from(i) & mask
            }
            _ => false,
        }
    }
}

/// What a check does with the extracted value.
#[derive(Debug, Clone)]
enum Test {
    Exists,
    Str(StrOp, Box<str>),
    /// For flag arguments, `contains` tests a flag by name.
    FlagOrStr(StrOp, Box<str>),
    IContains(Box<str>),
    Glob(Box<str>),
    IGlob(Box<str>),
    Regex(Regex),
    BContains(Vec<u8>),
    BStartsWith(Vec<u8>),
    Num(NumOp, i64),
    Bool(bool, bool),
    Net(bool, IpNet),
    StrIn(StrSet),
    NumIn(HashSet<i64, FastBuild>),
    NetIn(Vec<IpNet>),
    PMatch(PathTrie),
    /// Or'd `contains` checks of one field, made one by [`fuse_contains`].
    ContainsAny(Box<TextSet>),
    Any(Box<[Test]>),
    All(Box<[Test]>),
    One(Box<[Test]>),
    /// `val(field)`: compare with another field of the same event.
    Field(Op, Lhs),
}

/// A compile error at a byte offset of a condition text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompileError {
    pub at: usize,
    pub message: String,
    /// The field was unknown (a rule with `skip-if-unknown-filter` is skipped instead).
    pub unknown_field: bool,
}

impl CompileError {
    fn new(at: usize, message: impl Into<String>) -> Self {
        Self {
            at,
            message: message.into(),
            unknown_field: false,
        }
    }
}

/// Compiles a condition whose macros and lists the loader already expanded.
pub fn compile(e: &Expr) -> Result<Node, CompileError> {
    Ok(match e {
        Expr::And(v) => Node::And(v.iter().map(compile).collect::<Result<_, _>>()?),
        Expr::Or(v) => fuse_contains(v.iter().map(compile).collect::<Result<_, _>>()?),
        Expr::Not(inner) => Node::Not(Box::new(compile(inner)?)),
        Expr::Ident { name, at } => {
            return Err(CompileError::new(
                *at,
                format!("undefined macro '{name}' used in filter"),
            ));
        }
        Expr::Check(c) => compile_check(c)?,
    })
}

/// The branches of an `or`, with its `contains` checks of one field (`proc.cmdline contains
/// "stratum+tcp://" or proc.cmdline contains "stratum+ssl://" ...`) made one check at the
/// first one's place, which searches the value once for all their texts. The `or` holds when
/// one of the texts is in the value, as the one check does (of some ancestor's value, for
/// `proc.aname`: the field says which); checks have no effects, so their order does not
/// matter.
fn fuse_contains(branches: Vec<Node>) -> Node {
    fn contains(n: &Node) -> Option<(&CheckM, &str)> {
        match n {
            Node::Check(c) => match &c.test {
                Test::Str(StrOp::Contains, s) => Some((c, s)),
                _ => None,
            },
            _ => None,
        }
    }
    let mut out: Vec<Node> = Vec::with_capacity(branches.len());
    // Where each field's first `contains` is in `out`, and the texts of all of them.
    let mut groups: Vec<(usize, Vec<Box<str>>)> = Vec::new();
    for n in branches {
        if let Some((c, text)) = contains(&n) {
            let same = |o: &Node| contains(o).is_some_and(|(d, _)| d.lhs == c.lhs);
            match groups.iter_mut().find(|(i, _)| same(&out[*i])) {
                Some((_, texts)) => {
                    texts.push(text.into());
                    continue;
                }
                None => groups.push((out.len(), vec![text.into()])),
            }
        }
        out.push(n);
    }
    for (i, texts) in groups.into_iter().filter(|(_, t)| t.len() > 1) {
        if let Node::Check(c) = &mut out[i] {
            c.test = match TextSet::new(&texts) {
                Some(set) => Test::ContainsAny(Box::new(set)),
                None => Test::Any(
                    texts
                        .into_iter()
                        .map(|t| Test::Str(StrOp::Contains, t))
                        .collect(),
                ),
            };
        }
    }
    match out.len() {
        1 => out.swap_remove(0),
        _ => Node::Or(out.into_boxed_slice()),
    }
}

pub fn compile_lhs(f: &FieldExpr) -> Result<Lhs, CompileError> {
    match f {
        FieldExpr::Field { name, arg, at } => fields::resolve(name, arg.as_deref())
            .map(Lhs::Field)
            .map_err(|m| CompileError {
                at: *at,
                message: m,
                unknown_field: true,
            }),
        FieldExpr::Transform { tr, inner, .. } => Ok(Lhs::Tr(*tr, Box::new(compile_lhs(inner)?))),
    }
}

fn compile_check(c: &Check) -> Result<Node, CompileError> {
    let lhs = compile_lhs(&c.lhs)?;
    let ty = lhs.ty();
    let any_ancestor = lhs.field().is_any_ancestor();
    let test = match (&c.rhs, c.modifier) {
        (Rhs::None, _) => Test::Exists,
        (Rhs::Field(f), _) => Test::Field(c.op, compile_lhs(f)?),
        (Rhs::Value(v), None) => scalar_test(c.op, ty, v, c.at)?,
        (Rhs::List { items, at }, Some(m)) => {
            let tests = items
                .iter()
                .map(|v| scalar_test(c.op, ty, v, c.at))
                .collect::<Result<Box<[Test]>, _>>()?;
            if tests.is_empty() {
                return Err(CompileError::new(
                    *at,
                    format!("'{}' needs at least one value", m.as_str()),
                ));
            }
            match m {
                Modifier::AnyOf => Test::Any(tests),
                Modifier::AllOf => Test::All(tests),
                Modifier::OneOf => Test::One(tests),
            }
        }
        (Rhs::List { items, at }, None) => list_test(c.op, ty, items, *at)?,
        (Rhs::Value(v), Some(_)) => {
            return Err(CompileError::new(
                v.at,
                "a string modifier needs a list of values",
            ));
        }
        (Rhs::ListRef { name, at }, _) => {
            return Err(CompileError::new(
                *at,
                format!("undefined list '{name}' used in filter"),
            ));
        }
    };
    Ok(Node::Check(Box::new(CheckM {
        lhs,
        any_ancestor,
        test,
        memo: NO_MEMO,
    })))
}

fn parse_num(v: &Value) -> Result<i64, CompileError> {
    let t = v.text.trim();
    let parsed = if let Some(h) = t.strip_prefix("0x").or_else(|| t.strip_prefix("0X")) {
        i64::from_str_radix(h, 16).ok()
    } else {
        t.parse::<i64>()
            .ok()
            .or_else(|| t.parse::<u64>().ok().map(|u| u as i64))
            .or_else(|| {
                t.parse::<f64>()
                    .ok()
                    .filter(|f| f.fract() == 0.0)
                    .map(|f| f as i64)
            })
    };
    parsed.ok_or_else(|| CompileError::new(v.at, format!("'{}' is not a valid number", v.text)))
}

fn parse_bool(v: &Value) -> Result<bool, CompileError> {
    match v.text.as_str() {
        "true" => Ok(true),
        "false" => Ok(false),
        other => Err(CompileError::new(
            v.at,
            format!("'{other}' is not a valid boolean (true or false)"),
        )),
    }
}

fn parse_net(v: &Value) -> Result<IpNet, CompileError> {
    IpNet::parse(v.text.trim()).ok_or_else(|| {
        CompileError::new(
            v.at,
            format!("'{}' is not a valid IP address or network", v.text),
        )
    })
}

fn parse_hex(v: &Value) -> Result<Vec<u8>, CompileError> {
    let t = v.text.trim();
    let bad = || CompileError::new(v.at, format!("'{}' is not a valid hex byte string", v.text));
    if !t.len().is_multiple_of(2) {
        return Err(bad());
    }
    (0..t.len())
        .step_by(2)
        .map(|i| {
            t.get(i..i + 2)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or_else(bad)
        })
        .collect()
}

fn unsupported(op: Op, ty: FieldType, at: usize) -> CompileError {
    CompileError::new(
        at,
        format!(
            "operator '{}' is not supported for fields of type {}",
            op.as_str(),
            ty.as_str()
        ),
    )
}

fn scalar_test(op: Op, ty: FieldType, v: &Value, op_at: usize) -> Result<Test, CompileError> {
    if ty.is_numeric() {
        let Some(nop) = NumOp::from_op(op) else {
            return Err(unsupported(op, ty, op_at));
        };
        return Ok(Test::Num(nop, parse_num(v)?));
    }
    match ty {
        FieldType::Bool => match op {
            Op::Eq => Ok(Test::Bool(parse_bool(v)?, false)),
            Op::Ne => Ok(Test::Bool(parse_bool(v)?, true)),
            _ => Err(unsupported(op, ty, op_at)),
        },
        FieldType::Ipaddr | FieldType::Ipnet => match op {
            Op::Eq => Ok(Test::Net(false, parse_net(v)?)),
            Op::Ne => Ok(Test::Net(true, parse_net(v)?)),
            _ => Err(unsupported(op, ty, op_at)),
        },
        _ => {
            let s: Box<str> = v.text.as_str().into();
            Ok(match op {
                Op::Eq if ty == FieldType::Dynamic => Test::FlagOrStr(StrOp::Eq, s),
                Op::Eq => Test::Str(StrOp::Eq, s),
                Op::Ne => Test::Str(StrOp::Ne, s),
                Op::Contains if ty == FieldType::Dynamic => Test::FlagOrStr(StrOp::Contains, s),
                Op::Contains => Test::Str(StrOp::Contains, s),
                Op::StartsWith => Test::Str(StrOp::StartsWith, s),
                Op::EndsWith => Test::Str(StrOp::EndsWith, s),
                Op::IContains => Test::IContains(v.text.to_lowercase().into()),
                Op::Glob => Test::Glob(s),
                Op::IGlob => Test::IGlob(v.text.to_lowercase().into()),
                Op::Regex => {
                    let re = Regex::new(&format!("^(?:{})$", v.text)).map_err(|e| {
                        CompileError::new(v.at, format!("invalid regex '{}': {e}", v.text))
                    })?;
                    Test::Regex(re)
                }
                Op::BContains => Test::BContains(parse_hex(v)?),
                Op::BStartsWith => Test::BStartsWith(parse_hex(v)?),
                Op::Lt | Op::Le | Op::Gt | Op::Ge if ty == FieldType::Dynamic => {
                    Test::Num(NumOp::from_op(op).unwrap_or(NumOp::Eq), parse_num(v)?)
                }
                _ => return Err(unsupported(op, ty, op_at)),
            })
        }
    }
}

fn list_test(op: Op, ty: FieldType, items: &[Value], at: usize) -> Result<Test, CompileError> {
    match op {
        Op::In | Op::Intersects => {
            if ty.is_numeric() {
                Ok(Test::NumIn(
                    items.iter().map(parse_num).collect::<Result<_, _>>()?,
                ))
            } else if matches!(ty, FieldType::Ipaddr | FieldType::Ipnet) {
                Ok(Test::NetIn(
                    items.iter().map(parse_net).collect::<Result<_, _>>()?,
                ))
            } else if ty == FieldType::Bool {
                Err(unsupported(op, ty, at))
            } else {
                Ok(Test::StrIn(StrSet::new(items.iter().map(|v| &*v.text))))
            }
        }
        Op::PMatch => {
            if ty != FieldType::Charbuf && ty != FieldType::Dynamic {
                return Err(unsupported(op, ty, at));
            }
            let mut trie = PathTrie::default();
            for v in items {
                trie.insert(&v.text);
            }
            Ok(Test::PMatch(trie))
        }
        _ => Err(CompileError::new(
            at,
            format!(
                "operator '{}' does not take a list (use a modifier: oneof, anyof, allof)",
                op.as_str()
            ),
        )),
    }
}

fn icontains(hay: &str, needle: &str) -> bool {
    let (h, n) = (hay.as_bytes(), needle.as_bytes());
    if n.is_empty() {
        return true;
    }
    if h.iter().all(u8::is_ascii) && n.iter().all(u8::is_ascii) {
        return h.windows(n.len()).any(|w| w.eq_ignore_ascii_case(n));
    }
    hay.to_lowercase().contains(needle)
}

fn str_op(op: StrOp, s: &str, v: &str) -> bool {
    match op {
        StrOp::Eq => s == v,
        StrOp::Ne => s != v,
        StrOp::Contains => s.contains(v),
        StrOp::StartsWith => s.starts_with(v),
        StrOp::EndsWith => s.ends_with(v),
    }
}

impl Test {
    fn eval(&self, v: &Val<'_>, ctx: &Ctx<'_>) -> bool {
        match self {
            Test::Any(ts) => ts.iter().any(|t| t.eval(v, ctx)),
            Test::All(ts) => ts.iter().all(|t| t.eval(v, ctx)),
            Test::One(ts) => ts.iter().filter(|t| t.eval(v, ctx)).count() == 1,
            Test::Field(op, rhs) => {
                let Some(r) = rhs.extract(ctx) else {
                    return false;
                };
                compare_vals(*op, v, &r)
            }
            other => other.eval_inner(v),
        }
    }

    /// Every test but the ones that need the event (`val(...)`, modifiers over them).
    fn eval_inner(&self, v: &Val<'_>) -> bool {
        match self {
            Test::Exists => true,
            Test::Str(op, s) => str_op(*op, &v.text(), s),
            Test::FlagOrStr(op, s) => match v {
                Val::Flags { names, .. } if *op == StrOp::Contains => {
                    names.iter().any(|n| n == &**s)
                }
                Val::Flags { names, raw } if *op == StrOp::Eq => {
                    names.join("|") == **s || s.parse::<u64>().is_ok_and(|n| n == *raw)
                }
                other => str_op(*op, &other.text(), s),
            },
            Test::IContains(s) => icontains(&v.text(), s),
            Test::Glob(p) => glob_match(p, &v.text()),
            Test::IGlob(p) => glob_match(p, &v.text().to_lowercase()),
            Test::Regex(re) => re.is_match(&v.text()),
            Test::BContains(b) => {
                let t = v.text();
                let h = t.as_bytes();
                b.is_empty() || h.windows(b.len()).any(|w| w == b.as_slice())
            }
            Test::BStartsWith(b) => v.text().as_bytes().starts_with(b),
            Test::Num(op, n) => v.num().is_some_and(|x| op.apply(x, *n)),
            Test::Bool(b, ne) => matches!(v, Val::Bool(x) if (x == b) != *ne),
            Test::Net(ne, net) => match v {
                Val::Ip(ip) => net.contains(*ip) != *ne,
                other => other
                    .text()
                    .parse::<IpAddr>()
                    .is_ok_and(|ip| net.contains(ip) != *ne),
            },
            Test::StrIn(set) => set.contains(&v.text()),
            Test::NumIn(set) => v.num().is_some_and(|n| set.contains(&n)),
            Test::NetIn(nets) => {
                let ip = match v {
                    Val::Ip(ip) => Some(*ip),
                    other => other.text().parse().ok(),
                };
                ip.is_some_and(|ip| nets.iter().any(|n| n.contains(ip)))
            }
            Test::PMatch(trie) => trie.matches(&v.text()),
            Test::ContainsAny(set) => set.in_text(&v.text()),
            Test::Any(ts) => ts.iter().any(|t| t.eval_inner(v)),
            Test::All(ts) => ts.iter().all(|t| t.eval_inner(v)),
            Test::One(ts) => ts.iter().filter(|t| t.eval_inner(v)).count() == 1,
            Test::Field(..) => false,
        }
    }
}

fn compare_vals(op: Op, a: &Val<'_>, b: &Val<'_>) -> bool {
    if let (Some(x), Some(y)) = (num_of(a), num_of(b))
        && let Some(nop) = NumOp::from_op(op)
    {
        return nop.apply(x, y);
    }
    let (x, y) = (a.text(), b.text());
    match op {
        Op::Eq => x == y,
        Op::Ne => x != y,
        Op::Lt => x < y,
        Op::Le => x <= y,
        Op::Gt => x > y,
        Op::Ge => x >= y,
        Op::Contains => x.contains(&*y),
        Op::IContains => icontains(&x, &y.to_lowercase()),
        Op::StartsWith | Op::BStartsWith => x.starts_with(&*y),
        Op::EndsWith => x.ends_with(&*y),
        Op::BContains => x.contains(&*y),
        Op::Glob => glob_match(&y, &x),
        Op::IGlob => glob_match(&y.to_lowercase(), &x.to_lowercase()),
        Op::Regex => Regex::new(&format!("^(?:{y})$")).is_ok_and(|r| r.is_match(&x)),
        Op::In | Op::Intersects => x == y,
        Op::PMatch => x == y || x.starts_with(&format!("{}/", y.trim_end_matches('/'))),
        Op::Exists => true,
    }
}

fn num_of(v: &Val<'_>) -> Option<i64> {
    match v {
        Val::Num(n) => Some(*n),
        Val::Time(t) => i64::try_from(*t).ok(),
        _ => None,
    }
}

impl Test {
    /// The result for a value known before any event, when it needs nothing else.
    fn eval_const(&self, v: &Val<'_>) -> Option<bool> {
        match self {
            Test::Field(..) => None,
            Test::Any(ts) | Test::All(ts) | Test::One(ts) => {
                let r: Option<Vec<bool>> = ts.iter().map(|t| t.eval_const(v)).collect();
                let r = r?;
                Some(match self {
                    Test::Any(_) => r.iter().any(|b| *b),
                    Test::All(_) => r.iter().all(|b| *b),
                    _ => r.iter().filter(|b| **b).count() == 1,
                })
            }
            other => Some(other.eval_inner(v)),
        }
    }
}

impl Node {
    /// This condition for events of type `ty` only, if that changes it: `evt.type` checks
    /// (the rule index already chose the type) become constants, checks of an argument the
    /// type does not have (`evt.arg.newpath` of an open, whose arguments
    /// [`OPEN_ARGS`] lists) become false, as checks of an unset field are, and constants fold
    /// away. None when nothing changed.
    pub fn specialize(&self, ty: &str) -> Option<Node> {
        match self {
            Node::Check(c) => {
                let f = c.lhs.field();
                if matches!(f.name(), "evt.arg" | "evt.rawarg")
                    && !kernel_filter::has_arg(ty, &f.arg)
                {
                    return Some(Node::Const(false));
                }
                let Lhs::Field(f) = &c.lhs else { return None };
                if f.name() != "evt.type" || c.any_ancestor {
                    return None;
                }
                let v = Val::Str(std::borrow::Cow::Borrowed(ty));
                c.test.eval_const(&v).map(Node::Const)
            }
            Node::Not(inner) => {
                let n = inner.specialize(ty)?;
                Some(match n {
                    Node::Const(b) => Node::Const(!b),
                    n => Node::Not(Box::new(n)),
                })
            }
            Node::And(v) | Node::Or(v) => {
                let and = matches!(self, Node::And(_));
                let specs: Vec<Option<Node>> = v.iter().map(|n| n.specialize(ty)).collect();
                if specs.iter().all(Option::is_none) {
                    return None;
                }
                let mut kept = Vec::with_capacity(v.len());
                for (orig, spec) in v.iter().zip(specs) {
                    match spec.unwrap_or_else(|| orig.clone()) {
                        // `false` decides an `and`, `true` an `or`.
                        Node::Const(b) if b != and => return Some(Node::Const(b)),
                        // `true` in an `and` (`false` in an `or`) changes nothing.
                        Node::Const(_) => {}
                        n => kept.push(n),
                    }
                }
                Some(match kept.len() {
                    0 => Node::Const(and),
                    1 => kept.pop().unwrap_or(Node::Const(and)),
                    _ if and => Node::And(kept.into_boxed_slice()),
                    _ => Node::Or(kept.into_boxed_slice()),
                })
            }
            Node::Const(_) => None,
        }
    }

    /// Every check under this node, for [`Node::share_checks`].
    fn checks_mut<'n>(&'n mut self, out: &mut Vec<&'n mut CheckM>) {
        match self {
            Node::And(v) | Node::Or(v) => v.iter_mut().for_each(|n| n.checks_mut(out)),
            Node::Not(n) => n.checks_mut(out),
            Node::Const(_) => {}
            Node::Check(c) => out.push(c),
        }
    }

    /// Gives each check that occurs more than once over `nodes` (the same field, transformers
    /// and test, as macros shared by many rules produce) a slot in the per-event results,
    /// so it is evaluated once per event. Returns the number of slots.
    pub fn share_checks<'n>(nodes: impl IntoIterator<Item = &'n mut Node>) -> usize {
        let mut checks = Vec::new();
        for n in nodes {
            n.checks_mut(&mut checks);
        }
        let keys: Vec<String> = checks.iter().map(|c| c.key()).collect();
        let mut count: HashMap<&str, u32> = HashMap::new();
        for k in &keys {
            *count.entry(k).or_default() += 1;
        }
        let mut slots: HashMap<&str, u32> = HashMap::new();
        for (c, k) in checks.into_iter().zip(&keys) {
            c.memo = if count[k.as_str()] > 1 {
                let next = slots.len() as u32;
                *slots.entry(k).or_insert(next)
            } else {
                NO_MEMO
            };
        }
        slots.len()
    }

    pub fn eval(&self, ctx: &Ctx<'_>) -> bool {
        match self {
            Node::And(v) => v.iter().all(|n| n.eval(ctx)),
            Node::Or(v) => v.iter().any(|n| n.eval(ctx)),
            Node::Not(n) => !n.eval(ctx),
            Node::Const(b) => *b,
            Node::Check(c) => c.eval_shared(ctx),
        }
    }
}

impl CheckM {
    /// [`CheckM::eval`], through the event's result table when other rules make this check.
    #[inline]
    fn eval_shared(&self, ctx: &Ctx<'_>) -> bool {
        match ctx.memo.get(self.memo as usize) {
            // 0: not evaluated yet for this event, 1: false, 2: true.
            Some(slot) => match slot.get() {
                0 => {
                    let r = self.eval(ctx);
                    slot.set(1 + u8::from(r));
                    r
                }
                m => m == 2,
            },
            None => self.eval(ctx),
        }
    }
}
