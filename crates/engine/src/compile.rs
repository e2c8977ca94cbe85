//! Conditions compiled into matchers: fields resolved to ids, literals parsed to the field's
//! type, regexes compiled, `in` lists turned into hash sets and `pmatch` lists into a path trie.
//! Each condition is compiled once, at load time; evaluation allocates only for derived strings.

use std::{
    collections::{HashMap, HashSet},
    net::IpAddr,
};

use base64::Engine as _;
use regex::Regex;

use super::fields::{self, Ctx, FieldRef, FieldType, Val};
use crate::rules::condition::{Check, Expr, FieldExpr, Modifier, Op, Rhs, Transformer, Value};

/// The hash of the sets and maps the engine probes per event. They hold short strings and
/// small numbers, where SipHash's setup dominates, and are built from rules, never from
/// event data, so flooding is not a concern. It takes eight bytes per multiply (FNV-1a took
/// one, and hashing long paths and command lines for `in` lists showed in profiles) and
/// mixes the high bits down at the end, since the table indexes by the low bits.
#[derive(Clone, Copy, Debug, Default)]
pub struct FastHash(u64);

const HASH_K: u64 = 0xf135_7aea_2e62_a9c5;

impl FastHash {
    #[inline]
    fn add(&mut self, word: u64) {
        self.0 = (self.0.rotate_left(26) ^ word).wrapping_mul(HASH_K);
    }
}

impl std::hash::Hasher for FastHash {
    #[inline]
    fn finish(&self) -> u64 {
        let h = self.0 ^ (self.0 >> 32);
        h.wrapping_mul(HASH_K) ^ (h >> 29)
    }

    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            self.add(u64::from_le_bytes(c.try_into().unwrap_or_default()));
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            let mut buf = [0u8; 8];
            buf[..rest.len()].copy_from_slice(rest);
            // The length keeps "a" and "a\0" apart.
            self.add(u64::from_le_bytes(buf) ^ ((rest.len() as u64) << 59));
        }
    }

    #[inline]
    fn write_u8(&mut self, i: u8) {
        self.add(u64::from(i));
    }

    #[inline]
    fn write_u32(&mut self, i: u32) {
        self.add(u64::from(i));
    }

    #[inline]
    fn write_u64(&mut self, i: u64) {
        self.add(i);
    }

    #[inline]
    fn write_i64(&mut self, i: i64) {
        self.add(i as u64);
    }

    #[inline]
    fn write_usize(&mut self, i: usize) {
        self.add(i as u64);
    }
}

pub type FastBuild = std::hash::BuildHasherDefault<FastHash>;

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
#[derive(Debug, Clone)]
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
            let base = s.rsplit('/').next().unwrap_or(&s);
            Val::Str(Cow::Owned(base.to_string()))
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
        Expr::Or(v) => Node::Or(v.iter().map(compile).collect::<Result<_, _>>()?),
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

/// The strings of an `in` list. Most probes miss, and a probe whose length no item has
/// misses without hashing (paths and command lines are rarely as long as a list's names).
#[derive(Debug, Clone)]
pub struct StrSet {
    /// Bit `n` is set when an item is `n` bytes long; bit 63 stands for 63 bytes or more.
    lens: u64,
    set: HashSet<Box<str>, FastBuild>,
}

impl StrSet {
    pub fn new<'s>(items: impl IntoIterator<Item = &'s str>) -> Self {
        let mut out = Self {
            lens: 0,
            set: HashSet::default(),
        };
        for i in items {
            out.lens |= Self::len_bit(i);
            out.set.insert(i.into());
        }
        out
    }

    #[inline]
    fn len_bit(s: &str) -> u64 {
        1 << s.len().min(63)
    }

    #[inline]
    pub fn contains(&self, s: &str) -> bool {
        self.lens & Self::len_bit(s) != 0 && self.set.contains(s)
    }
}

/// Path-prefix matching for `pmatch`: `/tmp/hello` matches `/tmp/hello/world`, not
/// `/tmp/hello_world`. Components may be globs.
#[derive(Debug, Default, Clone)]
pub struct PathTrie {
    terminal: bool,
    children: HashMap<Box<str>, PathTrie>,
    globs: Vec<(Box<str>, PathTrie)>,
}

impl PathTrie {
    pub fn insert(&mut self, prefix: &str) {
        let mut node = self;
        for comp in prefix.split('/').filter(|c| !c.is_empty()) {
            node = if comp.contains(['*', '?', '[']) {
                let i = match node.globs.iter().position(|(g, _)| &**g == comp) {
                    Some(i) => i,
                    None => {
                        node.globs.push((comp.into(), PathTrie::default()));
                        node.globs.len() - 1
                    }
                };
                &mut node.globs[i].1
            } else {
                node.children.entry(comp.into()).or_default()
            };
        }
        node.terminal = true;
    }

    pub fn matches(&self, path: &str) -> bool {
        self.walk(path.split('/').filter(|c| !c.is_empty()))
    }

    fn walk<'p>(&self, mut comps: impl Iterator<Item = &'p str> + Clone) -> bool {
        if self.terminal {
            return true;
        }
        let Some(first) = comps.next() else {
            return false;
        };
        if self
            .children
            .get(first)
            .is_some_and(|c| c.walk(comps.clone()))
        {
            return true;
        }
        self.globs
            .iter()
            .any(|(g, child)| glob_match(g, first) && child.walk(comps.clone()))
    }
}

/// fnmatch(3) without flags: `*` and `?` match any character including `/`, `[...]` classes
/// with `!`/`^` negation and ranges, `\` escapes.
pub fn glob_match(pattern: &str, text: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let t: Vec<char> = text.chars().collect();
    let (mut pi, mut ti) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        if pi < p.len() {
            match p[pi] {
                '*' => {
                    star = Some((pi, ti));
                    pi += 1;
                    continue;
                }
                '?' => {
                    pi += 1;
                    ti += 1;
                    continue;
                }
                '[' => {
                    if let Some((ok, next)) = class_match(&p, pi, t[ti])
                        && ok
                    {
                        pi = next;
                        ti += 1;
                        continue;
                    }
                }
                '\\' if pi + 1 < p.len() && p[pi + 1] == t[ti] => {
                    pi += 2;
                    ti += 1;
                    continue;
                }
                c if c == t[ti] => {
                    pi += 1;
                    ti += 1;
                    continue;
                }
                _ => {}
            }
        }
        match star {
            Some((sp, st)) => {
                pi = sp + 1;
                ti = st + 1;
                star = Some((sp, st + 1));
            }
            None => return false,
        }
    }
    while pi < p.len() && p[pi] == '*' {
        pi += 1;
    }
    pi == p.len()
}

/// Matches `c` against the class starting at `p[start] == '['`: (matched, index after `]`).
fn class_match(p: &[char], start: usize, c: char) -> Option<(bool, usize)> {
    let mut i = start + 1;
    let negate = matches!(p.get(i), Some('!' | '^'));
    if negate {
        i += 1;
    }
    let mut matched = false;
    let mut first = true;
    while i < p.len() {
        if p[i] == ']' && !first {
            return Some((matched != negate, i + 1));
        }
        first = false;
        if i + 2 < p.len() && p[i + 1] == '-' && p[i + 2] != ']' {
            if p[i] <= c && c <= p[i + 2] {
                matched = true;
            }
            i += 3;
        } else {
            if p[i] == c {
                matched = true;
            }
            i += 1;
        }
    }
    None
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
    /// (the rule index already chose the type) become constants, and constants fold away.
    /// None when nothing changed.
    pub fn specialize(&self, ty: &str) -> Option<Node> {
        match self {
            Node::Check(c) => {
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
            Node::Check(c) => match ctx.memo.get(c.memo as usize) {
                // 0: not evaluated yet for this event, 1: false, 2: true.
                Some(slot) => match slot.get() {
                    0 => {
                        let r = c.eval(ctx);
                        slot.set(1 + u8::from(r));
                        r
                    }
                    m => m == 2,
                },
                None => c.eval(ctx),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs() {
        assert!(glob_match("*../*../*", "/var/www/../../etc/shadow"));
        assert!(!glob_match("*../*../*", "/var/www/../etc/shadow"));
        assert!(glob_match("/home/*/.ssh/*", "/home/bob/.ssh/id_rsa"));
        assert!(glob_match("a?c", "abc"));
        assert!(glob_match("[a-c]x", "bx"));
        assert!(!glob_match("[!a-c]x", "bx"));
        assert!(glob_match("\\*", "*"));
        assert!(!glob_match("\\*", "a"));
        assert!(glob_match("*", ""));
    }

    #[test]
    fn path_trie() {
        let mut t = PathTrie::default();
        t.insert("/tmp/hello");
        t.insert("/var/*/log");
        assert!(t.matches("/tmp/hello"));
        assert!(t.matches("/tmp/hello/world"));
        assert!(!t.matches("/tmp/hello_world"));
        assert!(!t.matches("/tmp"));
        assert!(t.matches("/var/app/log/x"));
        assert!(!t.matches("/var/app/logs"));
        let mut root = PathTrie::default();
        root.insert("/");
        assert!(root.matches("/anything"));
    }

    #[test]
    fn nets() {
        let n = IpNet::parse("10.0.0.0/8").unwrap();
        assert!(n.contains("10.1.2.3".parse().unwrap()));
        assert!(!n.contains("11.0.0.1".parse().unwrap()));
        assert!(
            IpNet::parse("0.0.0.0/0")
                .unwrap()
                .contains("1.2.3.4".parse().unwrap())
        );
        assert!(
            IpNet::parse("::1")
                .unwrap()
                .contains("::1".parse().unwrap())
        );
        assert!(IpNet::parse("10.0.0.0/33").is_none());
    }

    #[test]
    fn transformers() {
        use std::borrow::Cow;
        let v = || Val::Str(Cow::Borrowed("/usr/Bin/Bash"));
        assert_eq!(transform(Transformer::ToLower, v()).text(), "/usr/bin/bash");
        assert_eq!(transform(Transformer::ToUpper, v()).text(), "/USR/BIN/BASH");
        assert_eq!(transform(Transformer::Basename, v()).text(), "Bash");
        assert_eq!(transform(Transformer::Len, v()), Val::Num(13));
        assert_eq!(
            transform(Transformer::B64, Val::Str(Cow::Borrowed("aGVsbG8="))).text(),
            "hello"
        );
    }
}
