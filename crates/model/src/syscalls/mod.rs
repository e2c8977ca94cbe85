//! Syscall tables: numbers and names (x86_64), and the names of argument flags.

pub mod flags;
mod numbers;

pub use numbers::{SYSCALL_NUMBERS, name, number};
