//! Falco-compatible rules: the YAML loader, the condition language and the loaded [`Ruleset`].
//!
//! `load_files` / `load_sources` read rules files in order, apply Falco's override semantics,
//! expand macros, lists and exceptions, and compile every enabled rule. Problems come back as
//! Falco-coded diagnostics with file, line and column ([`diag`]).

pub mod cli;
pub mod condition;
pub mod diag;
mod loader;
pub mod yaml;

#[cfg(test)]
mod tests;

use std::{collections::BTreeSet, sync::Arc};

use serde::Serialize;

pub use loader::{ENGINE_VERSION, LoadResult, evttypes, load_files, load_sources};

use osprey_model::Priority;

use crate::{compile::Node, output::Format};

/// A rule's compiled condition and output.
#[derive(Debug)]
pub struct Compiled {
    pub(crate) matcher: Node,
    pub(crate) output: Format,
}

/// One loaded rule. Disabled rules are listed but not compiled.
#[derive(Debug, Clone, Serialize)]
pub struct Rule {
    pub name: String,
    pub desc: String,
    /// The condition as written (after appends), before macro expansion.
    pub condition: String,
    #[serde(rename = "output")]
    pub output_text: String,
    pub priority: Priority,
    pub tags: Vec<String>,
    pub source: String,
    pub enabled: bool,
    /// The event types the condition can match; None for any (LOAD_NO_EVTTYPE).
    pub evttypes: Option<BTreeSet<String>>,
    pub capture: bool,
    pub capture_duration: u64,
    /// Where the rule was (last) defined.
    pub file: Option<diag::Position>,
    #[serde(skip)]
    pub compiled: Option<Arc<Compiled>>,
}

/// What the loader produced. Empty of rules when any file had errors.
#[derive(Debug, Default)]
pub struct Ruleset {
    pub rules: Vec<Rule>,
    /// Macro name and condition, in definition order.
    pub macros: Vec<(String, String)>,
    /// List name and its items after expansion.
    pub lists: Vec<(String, Vec<String>)>,
    pub required_engine_version: Option<String>,
    /// Syscall profiles (`profile` items), enabled or not, in definition order.
    pub profiles: Vec<crate::profile::Profile>,
}
