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

use std::{collections::BTreeSet, fmt, sync::Arc};

use serde::Serialize;

pub use loader::{ENGINE_VERSION, LoadResult, evttypes, load_files, load_sources};

use crate::{engine::compile::Node, output::Format};

/// Rule priority, most severe first (so `a < b` means a is more severe).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Priority {
    Emergency,
    Alert,
    Critical,
    Error,
    Warning,
    Notice,
    Informational,
    Debug,
}

impl Priority {
    pub const ALL: [Priority; 8] = [
        Priority::Emergency,
        Priority::Alert,
        Priority::Critical,
        Priority::Error,
        Priority::Warning,
        Priority::Notice,
        Priority::Informational,
        Priority::Debug,
    ];

    /// Case-insensitive, with Falco's `info` alias.
    pub fn parse(s: &str) -> Option<Self> {
        let l = s.trim().to_ascii_lowercase();
        if l == "info" {
            return Some(Priority::Informational);
        }
        Self::ALL
            .into_iter()
            .find(|p| p.as_str().eq_ignore_ascii_case(&l))
    }

    /// Falco's spelling in alerts: `Warning`, `Informational`...
    pub fn as_str(self) -> &'static str {
        match self {
            Priority::Emergency => "Emergency",
            Priority::Alert => "Alert",
            Priority::Critical => "Critical",
            Priority::Error => "Error",
            Priority::Warning => "Warning",
            Priority::Notice => "Notice",
            Priority::Informational => "Informational",
            Priority::Debug => "Debug",
        }
    }
}

impl fmt::Display for Priority {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for Priority {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

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
