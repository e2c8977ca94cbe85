//! The sets `in` and `pmatch` lists compile to, and the texts of or'd `contains` checks.

use std::collections::HashSet;

use super::{FastBuild, glob_match};

/// The strings of an `in` list. Most probes miss, and a probe whose length no item has
/// misses without hashing (paths and command lines are rarely as long as a list's names).
#[derive(Debug, Clone)]
pub struct StrSet {
    /// Bit `n` is set when an item is `n` bytes long; bit 63 stands for 63 bytes or more.
    lens: u64,
    set: HashSet<Box<str>, FastBuild>,
}

impl StrSet {
    pub fn iter(&self) -> impl Iterator<Item = &str> {
        self.set.iter().map(|s| &**s)
    }

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
///
/// A node's children are a sorted list searched by halves, not a hash table: most nodes have
/// one child, and a table per node (room for four entries at least) made the default rules'
/// tries, copied into every event type's conditions, a third of the engine's memory.
#[derive(Debug, Default, Clone)]
pub struct PathTrie {
    terminal: bool,
    /// By name, in name order.
    children: Vec<(Box<str>, PathTrie)>,
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
                let i = match node.children.binary_search_by(|(k, _)| (**k).cmp(comp)) {
                    Ok(i) => i,
                    Err(i) => {
                        node.children.insert(i, (comp.into(), PathTrie::default()));
                        i
                    }
                };
                &mut node.children[i].1
            };
        }
        node.terminal = true;
    }

    /// The first path components a matching path can start with, or None when any can
    /// (a `/` prefix, or a glob as the first component).
    pub fn first_components(&self) -> Option<impl Iterator<Item = &str>> {
        (!self.terminal && self.globs.is_empty()).then(|| self.children.iter().map(|(k, _)| &**k))
    }

    /// The literal paths one of which every match starts with: each entry's
    /// components down to its end or to its first glob (`/var/lib/kubelet/pods/*/volumes` gives
    /// `var/lib/kubelet/pods`), joined by `/`. None when any path can match (a `/` entry, or a
    /// glob as the first component) or the entries are too many to be worth keys.
    pub fn prefixes(&self) -> Option<Vec<String>> {
        /// More keys than this cost more to index than the prefix saves.
        const MAX: usize = 256;
        fn collect(node: &PathTrie, path: &mut String, out: &mut Vec<String>) -> Option<()> {
            if node.terminal || !node.globs.is_empty() {
                (out.len() < MAX).then(|| out.push(path.clone()))
            } else {
                for (name, child) in &node.children {
                    let len = path.len();
                    if len > 0 {
                        path.push('/');
                    }
                    path.push_str(name);
                    collect(child, path, out)?;
                    path.truncate(len);
                }
                Some(())
            }
        }
        if self.terminal || !self.globs.is_empty() {
            return None;
        }
        let mut out = Vec::new();
        collect(self, &mut String::new(), &mut out)?;
        Some(out)
    }

    pub fn matches(&self, path: &str) -> bool {
        self.walk(path)
    }

    /// Matches the components of `rest` from this node down. Components are cut with a byte
    /// loop: a `split('/')` iterator, cloned at each level, cost more than the lookups.
    fn walk(&self, rest: &str) -> bool {
        if self.terminal {
            return true;
        }
        let Some((first, rest)) = next_component(rest) else {
            return false;
        };
        if let Ok(i) = self.children.binary_search_by(|(k, _)| (**k).cmp(first))
            && self.children[i].1.walk(rest)
        {
            return true;
        }
        self.globs
            .iter()
            .any(|(g, child)| glob_match(g, first) && child.walk(rest))
    }
}

/// The first non-empty component of `path` and what follows it, or None when there is none.
#[inline]
pub(super) fn next_component(path: &str) -> Option<(&str, &str)> {
    let b = path.as_bytes();
    let start = b.iter().position(|&c| c != b'/')?;
    let end = b[start..]
        .iter()
        .position(|&c| c == b'/')
        .map_or(b.len(), |n| start + n);
    Some((&path[start..end], &path[end..]))
}

/// The texts of an `or`'s `contains` checks of one field, searched for in one pass over the
/// value (`proc.cmdline contains "stratum+tcp://" or ... "stratum+ssl://"`: five scans of
/// the command line were most of what the miner rules cost).
#[derive(Clone)]
pub struct TextSet {
    texts: Box<[Box<str>]>,
    searcher: aho_corasick::AhoCorasick,
}

impl TextSet {
    /// None when the texts are too many for a searcher (then the checks stay apart).
    pub fn new(texts: &[Box<str>]) -> Option<Self> {
        let searcher = aho_corasick::AhoCorasick::new(texts.iter().map(|t| t.as_bytes())).ok()?;
        Some(Self {
            texts: texts.into(),
            searcher,
        })
    }

    /// Whether one of the texts is in `hay`.
    #[inline]
    pub fn in_text(&self, hay: &str) -> bool {
        self.searcher.is_match(hay)
    }
}

/// The texts alone: what makes two checks the same ([`super::Node::share_checks`]).
impl std::fmt::Debug for TextSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("TextSet").field(&self.texts).finish()
    }
}
