//! Collecting: the definitions of every item kind in the order they were read, with Falco's
//! ordering and override semantics written once (Falco's `rule_loader_collector`).
//!
//! Whatever its kind, an item is either a definition, which replaces an earlier item of the
//! same name in place (so the order of definitions stays that of first appearance), or an
//! update of an earlier item: legacy `append: true` appends every appendable key the item sets,
//! `override: {key: append|replace}` appends to or replaces the keys it names (for a list or a
//! macro, an override that only replaces is a definition, as in Falco's reader). Updating an
//! item that does not exist is an error (`LOAD_ERR_VALIDATE`), and so is asking for both forms
//! at once. Each kind says only which keys it lets be appended or replaced, how one key is
//! merged, and what a definition needs ([`Definition`]).

use std::collections::HashMap;

use super::{Code, Node, read::bool_key, report::Reporter};

#[cfg(test)]
mod tests;

/// An item kind the collector keeps: lists, macros, rules, profiles.
pub(super) trait Definition: Sized {
    /// What one item of the kind says. For a rule every key is optional, since an override
    /// names only what it changes; for the other kinds it is the definition itself.
    type Item;
    /// The kind as diagnostics name it.
    const KIND: &'static str;
    /// Keys `override:` may append to; legacy `append: true` appends to those the item sets.
    const APPENDABLE: &'static [&'static str];
    /// Keys `override:` may replace.
    const REPLACEABLE: &'static [&'static str];
    /// Whether an override that appends nothing is a plain definition. Falco's reader makes it
    /// one for lists and macros, whose replaced key is all they hold; a rule's replace changes
    /// the rule it names, which must exist.
    const REPLACE_DEFINES: bool = false;

    fn name(&self) -> &str;
    fn item_name(item: &Self::Item) -> &str;
    /// The definition an item makes, or None when it lacks a required key (reported).
    fn define(item: Self::Item, r: &Reporter) -> Option<Self>;
    /// Takes a later definition of the same name: by default, it replaces this one whole.
    fn redefine(&mut self, later: Self) {
        *self = later;
    }
    /// Appends `key` of `item` to this definition, or replaces it (`append` false).
    fn merge(&mut self, key: &str, append: bool, item: &Self::Item, r: &Reporter);
}

/// How an item asks to be merged, from its `append` and `override` keys.
#[derive(Debug, Default)]
pub(super) struct Merge {
    /// Legacy `append: true`.
    legacy_append: bool,
    /// `override:` as (key, append) pairs; Some(empty) when it named nothing valid.
    overrides: Option<Vec<(String, bool)>>,
    /// The appendable keys the item sets: what legacy `append: true` appends.
    set: Vec<&'static str>,
}

impl Merge {
    /// Reads `append` and `override` from item `n`, reporting values that are not valid. A
    /// kind with no key to append or replace (profiles) has neither: each item defines.
    pub(super) fn read<T: Definition>(n: &Node, r: &Reporter) -> Self {
        if T::APPENDABLE.is_empty() && T::REPLACEABLE.is_empty() {
            return Self::default();
        }
        Self {
            legacy_append: bool_key(n, "append", r).unwrap_or(false),
            overrides: overrides(n, r, T::APPENDABLE, T::REPLACEABLE),
            set: T::APPENDABLE
                .iter()
                .copied()
                .filter(|k| n.get(k).is_some())
                .collect(),
        }
    }

    /// Neither `append: true` nor `override`: the item defines.
    pub(super) fn is_definition(&self) -> bool {
        !self.legacy_append && self.overrides.is_none()
    }
}

/// `override:` → key → "append" | "replace", for a kind that may append to `appendable` and
/// replace `replaceable`.
fn overrides(
    n: &Node,
    r: &Reporter,
    appendable: &[&str],
    replaceable: &[&str],
) -> Option<Vec<(String, bool)>> {
    let o = n.get("override")?;
    let Some(map) = o.as_map() else {
        r.at(o)
            .error(Code::ErrYamlValidate, "Value of 'override' must be a map");
        return Some(Vec::new());
    };
    let mut out = Vec::new();
    for (k, v) in map {
        let key = k.as_str().unwrap_or_default().to_string();
        let append = match v.as_str() {
            Some("append") => true,
            Some("replace") => false,
            _ => {
                r.at(k).error(
                    Code::ErrYamlValidate,
                    format!(
                        "Invalid override value for key '{key}': must be 'append' or 'replace'"
                    ),
                );
                continue;
            }
        };
        let allowed = if append { appendable } else { replaceable };
        if !allowed.contains(&key.as_str()) {
            let msg = if append && replaceable.contains(&key.as_str()) {
                format!("Key '{key}' cannot be appended to, use 'replace' instead")
            } else {
                format!("Key '{key}' cannot be overridden")
            };
            r.at(k).error(Code::ErrYamlValidate, msg);
            continue;
        }
        if n.get(&key).is_none() {
            r.at(k).error(
                Code::ErrYamlValidate,
                format!("An override is defined for '{key}' but the item does not define '{key}'"),
            );
            continue;
        }
        out.push((key, append));
    }
    if out.is_empty() && map.is_empty() {
        r.at(o).error(
            Code::ErrYamlValidate,
            "'override' must name at least one key",
        );
    }
    Some(out)
}

/// The definitions of one kind, in the order their names first appeared.
pub(super) struct Collector<T> {
    defs: Vec<T>,
    by_name: HashMap<String, usize>,
}

impl<T> Default for Collector<T> {
    fn default() -> Self {
        Self {
            defs: Vec::new(),
            by_name: HashMap::new(),
        }
    }
}

impl<T: Definition> Collector<T> {
    pub(super) fn get_mut(&mut self, name: &str) -> Option<&mut T> {
        self.by_name.get(name).map(|&i| &mut self.defs[i])
    }

    pub(super) fn into_vec(self) -> Vec<T> {
        self.defs
    }

    /// Adds what `item` says, as `merge` asks: a definition, or an update of the item of the
    /// same name. `r` reports about `item`.
    pub(super) fn add(&mut self, item: T::Item, merge: Merge, r: &Reporter) {
        if merge.legacy_append && merge.overrides.is_some() {
            // Falco's example key: a list's items, a macro's or a rule's condition.
            let key = T::APPENDABLE.first().copied().unwrap_or_default();
            r.error(
                Code::ErrYamlValidate,
                format!("Keys 'override' and 'append: true' cannot be used together. Add an 'append' entry (e.g. '{key}: append') under 'override' instead."),
            );
            return;
        }
        if merge.legacy_append {
            let instead = match T::APPENDABLE {
                [one] => format!("'override: {{{one}: append}}'"),
                _ => "'override' with 'append' entries".to_string(),
            };
            r.warning(
                Code::DeprecatedItem,
                format!("The 'append' key is deprecated. Use {instead} instead."),
            );
        }
        let keys: Vec<(String, bool)> = match merge.overrides {
            Some(o) => o,
            None if merge.legacy_append => {
                merge.set.iter().map(|k| (k.to_string(), true)).collect()
            }
            None => return self.define(item, r),
        };
        if T::REPLACE_DEFINES && !keys.iter().any(|(_, append)| *append) {
            return self.define(item, r);
        }
        let Some(def) = self.get_mut(T::item_name(&item)) else {
            // Falco's ERROR_NO_PREVIOUS_LIST, _MACRO and _RULE_APPEND. A rule's replace gets the
            // append message too (Falco has one of its own for it).
            let kind = T::KIND;
            let named = match T::APPENDABLE {
                [one] => one,
                _ => "<key>",
            };
            let mut title = kind.to_string();
            title[..1].make_ascii_uppercase();
            r.error(
                Code::ErrValidate,
                format!("{title} uses 'append' or 'override.{named}: append' but no {kind} by that name already exists"),
            );
            return;
        };
        for (key, append) in &keys {
            def.merge(key, *append, &item, r);
        }
    }

    /// Defines `item`: it replaces an earlier definition of the same name in place, or comes
    /// last.
    fn define(&mut self, item: T::Item, r: &Reporter) {
        let Some(def) = T::define(item, r) else {
            return;
        };
        match self.by_name.get(def.name()) {
            Some(&i) => self.defs[i].redefine(def),
            None => {
                self.by_name.insert(def.name().to_string(), self.defs.len());
                self.defs.push(def);
            }
        }
    }
}
