//! A prefilter over the rules one event type offers: most candidates of an `openat` require
//! `fd.name` (or `evt.is_open_write`, `proc.name`...) to have one of a few literal values, and
//! a hash probe per such field and key kind rules them all out at once, before any condition
//! is walked.
//!
//! From each condition it derives a *necessary* condition: for some fields, a set of keys one
//! of which the field's value must have. A key is a [`Part`] of the text read as a path: its
//! first component (`etc` of `/etc/pam.d/sshd`, the whole text when it has no `/`), its
//! directory's own name (`pam.d`), its last component (`sshd`), or its leading components
//! (`etc/pam.d`), which a walk down a tree of such prefixes matches. `=` and `in` give the last
//! component when a literal has a `/` (`shadow` of `/etc/shadow`, narrower than `etc`), else
//! the whole text; `startswith`, `pmatch` and `glob` with a literal first component give the
//! literal's whole leading components (`pmatch (/etc/cron.d)` keys on `etc/cron.d`, so that an
//! open of `/etc/hosts` is not judged by the cron rules); `endswith` a literal with a `/`
//! (`/.ssh`) and `glob` with a literal file name give the last. A check on `fd.filename`
//! constrains the last component of `fd.name`, one on `fd.directory` its directory's name or
//! first component, so that an `or` across the three (Falco's `sensitive_files`) is one
//! constraint. Whatever the derivation cannot bound
//! (negations, transformers, `contains`, `endswith` a text without a `/`, an `or` whose
//! branches test other fields) constrains nothing, so a candidate is only ever skipped when
//! its condition is false: the prefilter changes how much is evaluated, never what matches.

use std::collections::{BTreeSet, HashMap};

use osprey_model::process::base;

use super::{FastBuild, Lhs, Node, StrOp, Test, sets::next_component};
use crate::fields::{Ctx, FieldRef, directory};

/// Most fields one event type indexes: each may cost an extraction and a probe per part
/// per event.
const MAX_FIELDS: usize = 8;

/// A part of a text read as a path, what a key is of.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
enum Part {
    /// The first component, leading `/`s skipped; the whole text when it has no `/`.
    First,
    /// The last component of the directory `fd.directory` gives: `pam.d` of
    /// `/etc/pam.d/sshd`, "" for `/x`, `.` for a text without `/`.
    Dir,
    /// The last component, what `fd.filename` gives: "" after a trailing `/`.
    Last,
    /// Two or more leading components, joined by one `/` (`var/lib/sss`): the text has them
    /// when its own components, empty ones skipped as `pmatch` skips them, begin with them.
    /// Matched by a walk of the text down a tree of the keys ([`PrefixNode`]), not a hash.
    Prefix,
}

impl Part {
    /// This part of `text`; for `Prefix`, the whole text, whose components a prefix key is
    /// matched against.
    #[inline]
    fn of(self, text: &str) -> &str {
        match self {
            Part::First => key(text),
            Part::Dir => base(directory(text)),
            Part::Last => base(text),
            Part::Prefix => text,
        }
    }

    /// How much a key of this part admits, roughly: all below a first component, one
    /// directory's files, files of one name. An `and` keeps its narrower side.
    fn breadth(self) -> usize {
        match self {
            Part::First => 1000,
            Part::Prefix => 100,
            Part::Dir => 30,
            Part::Last => 1,
        }
    }
}

/// The first path component of a text, leading `/`s skipped. Byte loops: the texts are short,
/// and `trim_start_matches` and `find` set up searchers that cost more than the scan.
#[inline]
fn key(text: &str) -> &str {
    let b = text.as_bytes();
    let start = b.iter().position(|&c| c != b'/').unwrap_or(b.len());
    let len = b[start..].iter().position(|&c| c == b'/');
    &text[start..len.map_or(b.len(), |n| start + n)]
}

/// The key every text starting with `prefix` has, if the prefix holds a whole first component.
/// (The kernel filter derives its names with these helpers too.)
pub(super) fn prefix_key(prefix: &str) -> Option<&str> {
    let rest = prefix.trim_start_matches('/');
    rest.find('/').map(|i| &rest[..i])
}

/// The key every text starting with `prefix` has: the components the prefix holds whole
/// (each followed by a `/`), the first alone as [`Part::First`], two or more as
/// [`Part::Prefix`]. None when it holds none.
fn leading(prefix: &str) -> Option<(Part, Box<str>)> {
    let whole = &prefix[..prefix.rfind('/')?];
    let components: Vec<&str> = whole.split('/').filter(|c| !c.is_empty()).collect();
    match components[..] {
        [] => None,
        [first] => Some((Part::First, first.into())),
        _ => Some((Part::Prefix, components.join("/").into())),
    }
}

/// The last component of every text ending with `suffix`, if the suffix holds all of it.
pub(super) fn suffix_key(suffix: &str) -> Option<&str> {
    suffix.rfind('/').map(|i| &suffix[i + 1..])
}

/// The text every match of a glob starts with: up to its first `*`, `?`, `[` or `\`.
pub(super) fn glob_literal(pattern: &str) -> &str {
    pattern
        .find(['*', '?', '[', '\\'])
        .map_or(pattern, |i| &pattern[..i])
}

/// The last component of every text a glob matches, when the pattern ends in a `/` and a
/// literal name. A `/` in a class (`[a/]b`) is followed by its `]`, which the name may not
/// hold.
pub(super) fn glob_name(pattern: &str) -> Option<&str> {
    let (_, name) = pattern.rsplit_once('/')?;
    (!name.contains(['*', '?', '[', ']', '\\'])).then_some(name)
}

type Keys = BTreeSet<(Part, Box<str>)>;

fn one(part: Part, k: &str) -> Option<Keys> {
    Some(Keys::from([(part, k.into())]))
}

/// The keys of a value equal to one of `texts`: their last components when one has a `/`,
/// else the texts whole.
fn exact(texts: &[&str]) -> Keys {
    let part = if texts.iter().any(|t| t.contains('/')) {
        Part::Last
    } else {
        Part::First
    };
    texts.iter().map(|t| (part, part.of(t).into())).collect()
}

/// Both sets of keys are necessary: their common keys when they are of one part, else the
/// narrower set. Prefix keys are not intersected: `etc` and `etc/cron.d` have no key in
/// common, yet `/etc/cron.d/x` has both.
fn both(a: Keys, b: Keys) -> Keys {
    let part = |k: &Keys| {
        let first = k.first()?.0;
        k.iter().all(|(p, _)| *p == first).then_some(first)
    };
    let breadth = |k: &Keys| k.iter().map(|(p, _)| p.breadth()).sum::<usize>();
    match (part(&a), part(&b)) {
        (Some(x), Some(y)) if x == y && x != Part::Prefix => a.intersection(&b).cloned().collect(),
        _ if breadth(&b) < breadth(&a) => b,
        _ => a,
    }
}

/// A necessary condition: for each listed field, the value has one of its keys.
#[derive(Debug, Default, Clone, PartialEq)]
struct Need(Vec<(FieldRef, Keys)>);

impl Need {
    fn get(&self, f: &FieldRef) -> Option<&Keys> {
        self.0.iter().find(|(g, _)| g == f).map(|(_, k)| k)
    }

    /// Both conditions hold: every constraint of each, both kept where they share a field.
    fn and(mut self, other: Need) -> Need {
        for (f, keys) in other.0 {
            match self.0.iter_mut().find(|(g, _)| *g == f) {
                Some((_, mine)) => *mine = both(std::mem::take(mine), keys),
                None => self.0.push((f, keys)),
            }
        }
        self
    }

    /// One of the conditions holds: only fields every branch constrains, their keys united.
    fn or(self, other: &Need) -> Need {
        Need(
            self.0
                .into_iter()
                .filter_map(|(f, mut keys)| {
                    keys.extend(other.get(&f)?.iter().cloned());
                    Some((f, keys))
                })
                .collect(),
        )
    }
}

impl Test {
    /// The keys a value passing this test can have, None when any can. Every test that
    /// gives keys decides on the value's text alone, as [`Part::of`] reads it.
    fn keys(&self) -> Option<Keys> {
        match self {
            Test::Str(StrOp::Eq, s) => Some(exact(&[s])),
            Test::StrIn(set) => Some(exact(&set.iter().collect::<Vec<_>>())),
            Test::Str(StrOp::StartsWith, p) => Some(Keys::from([leading(p)?])),
            Test::Str(StrOp::EndsWith, s) => one(Part::Last, suffix_key(s)?),
            Test::Glob(p) => match glob_name(p) {
                Some(name) => one(Part::Last, name),
                None => Some(Keys::from([leading(glob_literal(p))?])),
            },
            Test::PMatch(trie) => Some(
                trie.prefixes()?
                    .into_iter()
                    .map(|k| match k.contains('/') {
                        true => (Part::Prefix, k.into()),
                        false => (Part::First, k.into()),
                    })
                    .collect(),
            ),
            Test::Bool(b, false) => one(Part::First, if *b { "true" } else { "false" }),
            // anyof, oneof: some item passes; allof: every item does.
            Test::Any(ts) | Test::One(ts) => ts.iter().try_fold(Keys::new(), |mut acc, t| {
                acc.extend(t.keys()?);
                Some(acc)
            }),
            Test::All(ts) => ts.iter().filter_map(Test::keys).reduce(both),
            _ => None,
        }
    }
}

impl Node {
    /// What must hold of the event for this condition to be true (see the module doc).
    fn need(&self) -> Need {
        match self {
            Node::Check(c) => {
                let Lhs::Field(f) = &c.lhs else {
                    return Need::default();
                };
                match c.test.keys() {
                    Some(keys) if !c.any_ancestor => Need(vec![on_name(f, keys)]),
                    _ => Need::default(),
                }
            }
            Node::And(v) => v.iter().fold(Need::default(), |acc, n| acc.and(n.need())),
            Node::Or(v) => {
                let mut it = v.iter().map(Node::need);
                let first = it.next().unwrap_or_default();
                it.fold(first, |acc, n| acc.or(&n))
            }
            Node::Not(_) | Node::Const(_) => Need::default(),
        }
    }
}

/// Keys of `fd.filename` and `fd.directory` as keys of `fd.name`, which they split, so that a
/// macro testing all three is one constraint. Both fields are unset unless the fd is a file
/// or directory, and then they are made from `fd.name`. A constraint with a key that is no
/// part of the name stays on its own field.
fn on_name(f: &FieldRef, keys: Keys) -> (FieldRef, Keys) {
    let field = f.name();
    let mapped: Option<Keys> = keys
        .iter()
        .map(|(p, k)| Some((name_part(field, *p, k)?, k.clone())))
        .collect();
    match (mapped, crate::fields::resolve("fd.name", None)) {
        (Some(mapped), Ok(name)) => (name, mapped),
        _ => (f.clone(), keys),
    }
}

/// The part of `fd.name` that `part` of `field` is, when `field` is made from `fd.name` and
/// its key `k` is one.
fn name_part(field: &str, part: Part, k: &str) -> Option<Part> {
    match (field, part) {
        // A file name has no `/`: it is its own first and last component.
        ("fd.filename", Part::First | Part::Last) => Some(Part::Last),
        ("fd.directory", Part::Last) => Some(Part::Dir),
        // The directory is the name up to its last `/`, and a prefix key has two components.
        ("fd.directory", Part::Prefix) => Some(Part::Prefix),
        // Except for the directories `/` (key "") and `.` (of a name without `/`).
        ("fd.directory", Part::First) if !k.is_empty() && k != "." => Some(Part::First),
        _ => None,
    }
}

/// One indexed field of a [`Prefilter`].
#[derive(Debug)]
struct FieldIndex {
    field: FieldRef,
    /// The candidates the field does not constrain, one bit each.
    free: Box<[u64]>,
    /// For each part some candidate has keys of, the candidates by key; prefix keys apart.
    parts: Box<[(Part, ByKey)]>,
    /// The prefix keys, when some candidate has them.
    prefixes: Option<PrefixNode>,
}

/// A tree of prefix keys by component: a node a key ends at holds the candidates a value with
/// that prefix leaves possible (the free ones too). Children in name order, searched by halves.
#[derive(Debug, Default)]
struct PrefixNode {
    candidates: Option<Box<[u64]>>,
    children: Vec<(Box<str>, PrefixNode)>,
}

impl PrefixNode {
    fn insert(&mut self, key: &str, candidates: Box<[u64]>) {
        let mut node = self;
        for c in key.split('/') {
            let i = match node.children.binary_search_by(|(k, _)| (**k).cmp(c)) {
                Ok(i) => i,
                Err(i) => {
                    node.children.insert(i, (c.into(), PrefixNode::default()));
                    i
                }
            };
            node = &mut node.children[i].1;
        }
        node.candidates = Some(candidates);
    }

    /// Word `w` of the candidates the prefixes of `text` leave: those of every key it walks
    /// through, and the free ones.
    #[inline]
    fn possible(&self, text: &str, w: usize, free: &[u64]) -> u64 {
        let (mut any, mut node, mut rest) = (free[w], self, text);
        while let Some((c, after)) = next_component(rest)
            && let Ok(i) = node.children.binary_search_by(|(k, _)| (**k).cmp(c))
        {
            node = &node.children[i].1;
            if let Some(m) = &node.candidates {
                any |= m[w];
            }
            rest = after;
        }
        any
    }
}

/// A key → the candidates a value with that key leaves possible (the free ones too).
type ByKey = HashMap<Box<str>, Box<[u64]>, FastBuild>;

/// The candidates of one event type, narrowed per event before their conditions run.
#[derive(Debug, Default)]
pub struct Prefilter {
    /// How many candidates.
    len: usize,
    fields: Box<[FieldIndex]>,
    /// The candidates that need a call through the 32-bit entry (`evt.is_ia32 = true` or
    /// `evt.is_ia32_from_64bit = true`, which implies it): ruled out for every other event by
    /// one test of the event, not by a field probe each.
    ia32_only: Box<[u64]>,
}

/// The boolean fields true only of a call through the 32-bit entry.
const IA32_FIELDS: [&str; 2] = ["evt.is_ia32", "evt.is_ia32_from_64bit"];

/// Whether `need` requires one of [`IA32_FIELDS`] to be true.
fn needs_ia32(need: &Need) -> bool {
    need.0.iter().any(|(f, keys)| {
        IA32_FIELDS.contains(&f.name())
            && keys.len() == 1
            && keys.contains(&(Part::First, Box::from("true")))
    })
}

impl Prefilter {
    /// For `conditions`, the candidates in order. Every field that constrains one is
    /// indexed, up to [`MAX_FIELDS`]: an event probes a field only while a candidate it
    /// constrains is left, so a field of one rule costs a probe only where that rule would be
    /// evaluated, and the probe is cheaper than the checks the rule makes before it gets to
    /// the field.
    pub fn new<'n>(conditions: impl IntoIterator<Item = &'n Node>) -> Self {
        let needs: Vec<Need> = conditions.into_iter().map(Node::need).collect();
        let words = needs.len().div_ceil(64);
        let mut ia32_only = vec![0u64; words];
        for (i, need) in needs.iter().enumerate() {
            if needs_ia32(need) {
                ia32_only[i / 64] |= 1 << (i % 64);
            }
        }
        let mut fields: Vec<(FieldRef, usize)> = Vec::new();
        for (f, _) in needs
            .iter()
            .flat_map(|n| &n.0)
            .filter(|(f, _)| !IA32_FIELDS.contains(&f.name()))
        {
            match fields.iter_mut().find(|(g, _)| g == f) {
                Some((_, count)) => *count += 1,
                None => fields.push((f.clone(), 1)),
            }
        }
        // The most constraining first: a miss there ends the probing soonest.
        fields.sort_by_key(|(_, count)| std::cmp::Reverse(*count));
        fields.truncate(MAX_FIELDS);
        let fields = fields
            .into_iter()
            .map(|(field, _)| {
                let mut free = vec![0u64; words];
                let mut keyed: HashMap<Part, HashMap<&str, Vec<usize>>> = HashMap::new();
                for (i, need) in needs.iter().enumerate() {
                    match need.get(&field) {
                        Some(keys) => keys.iter().for_each(|(p, k)| {
                            keyed.entry(*p).or_default().entry(k).or_default().push(i);
                        }),
                        None => free[i / 64] |= 1 << (i % 64),
                    }
                }
                let mask = |cands: &[usize]| {
                    let mut mask = free.clone();
                    cands.iter().for_each(|i| mask[i / 64] |= 1 << (i % 64));
                    mask.into_boxed_slice()
                };
                let prefixes = keyed.remove(&Part::Prefix).map(|by_key| {
                    let mut tree = PrefixNode::default();
                    by_key
                        .into_iter()
                        .for_each(|(k, cands)| tree.insert(k, mask(&cands)));
                    tree
                });
                let mut parts: Vec<_> = keyed
                    .into_iter()
                    .map(|(part, by_key)| {
                        let by_key = by_key
                            .into_iter()
                            .map(|(k, cands)| (k.into(), mask(&cands)))
                            .collect();
                        (part, by_key)
                    })
                    .collect();
                parts.sort_by_key(|(part, _)| *part);
                FieldIndex {
                    field,
                    free: free.into_boxed_slice(),
                    parts: parts.into_boxed_slice(),
                    prefixes,
                }
            })
            .collect();
        Self {
            len: needs.len(),
            fields,
            ia32_only: ia32_only.into_boxed_slice(),
        }
    }

    /// Calls `each` with the index of every candidate this event leaves possible, in order,
    /// until it returns false. An event type with more than 64 candidates probes once per 64.
    #[inline]
    pub fn for_each_possible(&self, ctx: &Ctx<'_>, mut each: impl FnMut(usize) -> bool) {
        let n = self.len;
        let ia32 = ctx.sc.is_some_and(|sc| sc.ia32 || sc.ia32_from_64bit);
        for w in 0..n.div_ceil(64) {
            let mut word = if w == n / 64 {
                (1u64 << (n % 64)) - 1
            } else {
                u64::MAX
            };
            if !ia32 {
                word &= !self.ia32_only[w];
            }
            for ix in &*self.fields {
                // A field none of the candidates left constrains is not worth its probe.
                if word & !ix.free[w] != 0 {
                    word &= ix.possible(ctx, w);
                }
            }
            while word != 0 {
                let bit = word.trailing_zeros() as usize;
                word &= word - 1;
                if !each(w * 64 + bit) {
                    return;
                }
            }
        }
    }
}

impl FieldIndex {
    /// Word `w` of the candidates the event's value of the field leaves possible: those one
    /// of its parts' keys leaves.
    #[inline]
    fn possible(&self, ctx: &Ctx<'_>, w: usize) -> u64 {
        let Some(v) = ctx.extract(&self.field) else {
            // A check of an unset field is false.
            return self.free[w];
        };
        let text = v.text();
        let any = self.parts.iter().fold(0, |any, (part, by_key)| {
            any | by_key.get(part.of(&text)).unwrap_or(&self.free)[w]
        });
        match &self.prefixes {
            Some(tree) => any | tree.possible(&text, w, &self.free),
            None => any,
        }
    }
}

#[cfg(test)]
mod tests;
