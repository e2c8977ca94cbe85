//! Osprey, the node agent: a library so that its parts are testable, and the `osprey` binary
//! (`main.rs`) that wires them.
//!
//! Data flows in one direction: `sensor` (kernel programs, ring buffer, decoding) → `process`
//! (the process table, enrichment) → `engine` (rules) → `output` (alerts). See ARCHITECTURE.md.

pub mod alert;
pub mod commands;
pub mod config;
pub mod container;
pub mod dns;
pub mod fast_hash;
pub mod host;
pub mod metrics;
pub mod pipeline;
pub mod process;
pub mod profile;
pub mod rulefiles;
pub mod sensor;
pub mod server;
pub mod sink;
pub mod tail;
