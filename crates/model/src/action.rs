//! A syscall profile's verdict on a syscall, shared by the rule files that state it, the
//! kernel tables that enforce it and the events that report it.

use std::fmt;

use agent_common::action;
use serde::{Deserialize, Serialize};

/// What a profile does with a syscall.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// Nothing happens and nothing is reported.
    Allow,
    /// Reported as a `Notice` alert.
    Log,
    /// Reported as a `Warning` alert.
    Alert,
    /// SIGKILL from the kernel at syscall entry, reported as a `Critical` alert.
    Kill,
}

impl Action {
    pub const NAMES: &[&str] = &["allow", "log", "alert", "kill"];

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "allow" => Some(Action::Allow),
            "log" => Some(Action::Log),
            "alert" => Some(Action::Alert),
            "kill" => Some(Action::Kill),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Action::Allow => "allow",
            Action::Log => "log",
            Action::Alert => "alert",
            Action::Kill => "kill",
        }
    }

    pub fn kernel(self) -> u32 {
        match self {
            Action::Allow => action::ALLOW,
            Action::Log => action::LOG,
            Action::Alert => action::ALERT,
            Action::Kill => action::KILL,
        }
    }

    pub fn from_kernel(v: u32) -> Option<Self> {
        match v {
            action::ALLOW => Some(Action::Allow),
            action::LOG => Some(Action::Log),
            action::ALERT => Some(Action::Alert),
            action::KILL => Some(Action::Kill),
            _ => None,
        }
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
