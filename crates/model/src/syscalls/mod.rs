//! Syscall tables: numbers and names (x86_64), the names of argument flags and of errno values.

mod errno;
pub mod flags;
mod ia32;
mod numbers;

pub use errno::errno_name;
pub use ia32::{IA32, IA32_IPC, IA32_SOCKETCALL};
pub use numbers::{SYSCALL_NUMBERS, name, number};
