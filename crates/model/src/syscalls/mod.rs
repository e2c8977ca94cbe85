//! Syscall tables: numbers and names (x86_64), the names of argument flags and of errno values.

mod errno;
pub mod flags;
mod numbers;

pub use errno::errno_name;
pub use numbers::{SYSCALL_NUMBERS, name, number};
