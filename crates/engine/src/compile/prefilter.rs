//! A prefilter over the rules one event type offers: most candidates of an `openat` require
//! `fd.name` (or `evt.is_open_write`, `proc.name`...) to have one of a few literal values, and
//! one hash probe per such field rules them all out at once, before any condition is walked.
//!
//! From each condition it derives a *necessary* condition: for some fields, the set of keys
//! the field's value must have for the condition to hold. The key of a text is its first path
//! component (`etc` for `/etc/shadow`, the whole text when it has no `/`), so that `=`, `in`,
//! `startswith`, `pmatch` and `glob` with a literal first component all give keys. Whatever
//! the derivation cannot bound (negations, transformers, `contains`, `endswith`, an `or` whose
//! branches test other fields) constrains nothing, so a candidate is only ever skipped when its
//! condition is false: the prefilter changes how much is evaluated, never what matches.

use std::collections::{BTreeSet, HashMap};

use super::{FastBuild, Lhs, Node, StrOp, Test};
use crate::fields::{Ctx, FieldRef};

/// Most fields one event type indexes: each costs an extraction and a probe per event.
const MAX_FIELDS: usize = 8;

/// The key of a value: its first path component, leading `/`s skipped.
#[inline]
fn key(text: &str) -> &str {
    let rest = text.trim_start_matches('/');
    rest.find('/').map_or(rest, |i| &rest[..i])
}

/// The key every text starting with `prefix` has, if the prefix holds a whole first component.
fn prefix_key(prefix: &str) -> Option<&str> {
    let rest = prefix.trim_start_matches('/');
    rest.find('/').map(|i| &rest[..i])
}

/// The text every match of a glob starts with: up to its first `*`, `?`, `[` or `\`.
fn glob_literal(pattern: &str) -> &str {
    pattern
        .find(['*', '?', '[', '\\'])
        .map_or(pattern, |i| &pattern[..i])
}

type Keys = BTreeSet<Box<str>>;

/// A necessary condition: each listed field's key is one of its set.
#[derive(Debug, Default, Clone, PartialEq)]
struct Need(Vec<(FieldRef, Keys)>);

impl Need {
    fn get(&self, f: &FieldRef) -> Option<&Keys> {
        self.0.iter().find(|(g, _)| g == f).map(|(_, k)| k)
    }

    /// Both conditions hold: every constraint of each, intersected where they share a field.
    fn and(mut self, other: Need) -> Need {
        for (f, keys) in other.0 {
            match self.0.iter_mut().find(|(g, _)| *g == f) {
                Some((_, mine)) => mine.retain(|k| keys.contains(k)),
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
    /// gives keys decides on the value's text alone, as [`key`] does.
    fn keys(&self) -> Option<Keys> {
        let one = |k: &str| Some(Keys::from([k.into()]));
        match self {
            Test::Str(StrOp::Eq, s) => one(key(s)),
            Test::Str(StrOp::StartsWith, p) => one(prefix_key(p)?),
            Test::Glob(p) => one(prefix_key(glob_literal(p))?),
            Test::StrIn(set) => Some(set.iter().map(|s| key(s).into()).collect()),
            Test::PMatch(trie) => Some(trie.first_components()?.map(Into::into).collect()),
            Test::Bool(b, false) => one(if *b { "true" } else { "false" }),
            // anyof, oneof: some item passes; allof: every item does, so any item's keys.
            Test::Any(ts) | Test::One(ts) => ts.iter().try_fold(Keys::new(), |mut acc, t| {
                acc.extend(t.keys()?);
                Some(acc)
            }),
            Test::All(ts) => ts.iter().find_map(Test::keys),
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

/// A constraint on `fd.directory` as one on `fd.name`, so that a macro testing either (Falco's
/// `sensitive_files`) is one constraint: `fd.name` is `fd.directory`, `/` and the file name,
/// so their keys agree, except for the directories `/` (key "") and `.` (a name without `/`).
fn on_name(f: &FieldRef, keys: Keys) -> (FieldRef, Keys) {
    if f.name() == "fd.directory"
        && !keys.iter().any(|k| k.is_empty() || &**k == ".")
        && let Ok(name) = crate::fields::resolve("fd.name", None)
    {
        return (name, keys);
    }
    (f.clone(), keys)
}

/// One indexed field of a [`Prefilter`].
#[derive(Debug)]
struct FieldIndex {
    field: FieldRef,
    /// The candidates the field does not constrain, one bit each.
    free: Box<[u64]>,
    /// A key → the candidates a value with that key leaves possible (the free ones too).
    by_key: HashMap<Box<str>, Box<[u64]>, FastBuild>,
}

/// The candidates of one event type, narrowed per event before their conditions run.
#[derive(Debug, Default)]
pub struct Prefilter {
    /// How many candidates.
    len: usize,
    fields: Box<[FieldIndex]>,
}

impl Prefilter {
    /// For `conditions`, the candidates in order. Fields that constrain fewer than two
    /// candidates are not worth a probe: evaluating the condition costs the same.
    pub fn new<'n>(conditions: impl IntoIterator<Item = &'n Node>) -> Self {
        let needs: Vec<Need> = conditions.into_iter().map(Node::need).collect();
        let words = needs.len().div_ceil(64);
        let mut fields: Vec<(FieldRef, usize)> = Vec::new();
        for (f, _) in needs.iter().flat_map(|n| &n.0) {
            match fields.iter_mut().find(|(g, _)| g == f) {
                Some((_, count)) => *count += 1,
                None => fields.push((f.clone(), 1)),
            }
        }
        fields.retain(|(_, count)| *count >= 2);
        // The most constraining first: a miss there ends the probing soonest.
        fields.sort_by_key(|(_, count)| std::cmp::Reverse(*count));
        fields.truncate(MAX_FIELDS);
        let fields = fields
            .into_iter()
            .map(|(field, _)| {
                let mut free = vec![0u64; words];
                let mut keyed: HashMap<Box<str>, Vec<usize>, FastBuild> = HashMap::default();
                for (i, need) in needs.iter().enumerate() {
                    match need.get(&field) {
                        Some(keys) => keys
                            .iter()
                            .for_each(|k| keyed.entry(k.clone()).or_default().push(i)),
                        None => free[i / 64] |= 1 << (i % 64),
                    }
                }
                let by_key = keyed
                    .into_iter()
                    .map(|(k, cands)| {
                        let mut mask = free.clone();
                        cands.iter().for_each(|i| mask[i / 64] |= 1 << (i % 64));
                        (k, mask.into_boxed_slice())
                    })
                    .collect();
                FieldIndex {
                    field,
                    free: free.into_boxed_slice(),
                    by_key,
                }
            })
            .collect();
        Self {
            len: needs.len(),
            fields,
        }
    }

    /// Calls `each` with the index of every candidate this event leaves possible, in order,
    /// until it returns false.
    #[inline]
    pub fn for_each_possible(&self, ctx: &Ctx<'_>, mut each: impl FnMut(usize) -> bool) {
        let n = self.len;
        let mut masks: [&[u64]; MAX_FIELDS] = [&[]; MAX_FIELDS];
        for (m, ix) in masks.iter_mut().zip(&*self.fields) {
            *m = match ctx.extract(&ix.field) {
                Some(v) => ix.by_key.get(key(&v.text())).unwrap_or(&ix.free),
                // A check of an unset field is false.
                None => &ix.free,
            };
        }
        let masks = &masks[..self.fields.len()];
        for w in 0..n.div_ceil(64) {
            let mut word = if w == n / 64 {
                (1u64 << (n % 64)) - 1
            } else {
                u64::MAX
            };
            for m in masks {
                word &= m[w];
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

#[cfg(test)]
mod tests;
