//! Osprey's shared vocabulary, the bottom layer of the agent above the kernel ABI
//! (`agent-common`): the events the sensor decodes ([`event`]), the processes and containers
//! they happen in, alert priorities, profile verdicts and the syscall tables.
//!
//! Plain data with serde derives and no I/O: the sensor produces these values, the rule engine
//! (`osprey-engine`) judges them and the agent's sinks render them. A recording is a JSON-lines
//! file of [`event::Enriched`] values.

pub mod action;
pub mod container;
pub mod event;
pub mod fd;
pub mod glob;
pub mod path;
pub mod priority;
pub mod process;
pub mod syscalls;
pub mod time;

pub use action::Action;
pub use container::ContainerInfo;
pub use priority::Priority;
pub use process::Process;
