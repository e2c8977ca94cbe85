//! `sys_exit` as per-syscall events: `syscalls:sys_exit_NAME`, one attachment for each syscall
//! a rule wants, where the kernel has no 32-bit syscall entry.
//!
//! `raw_syscalls:sys_exit` runs a program for every syscall on the node, and the program's
//! dispatch and its table lookup are most of what a syscall nobody asked for costs (about
//! 70 ns on the benchmark host). The kernel's per-syscall events sit on the same tracepoint but
//! test a bitmap in the kernel's own code before anything runs, so an unwanted syscall costs
//! that test alone. The catch: those events skip every call made through the 32-bit entry
//! (`in_32bit_syscall()`: `int $0x80`, which any x86_64 process may execute, or a 32-bit
//! program), so with that entry on, an open of /etc/shadow through it would go unseen. They
//! are used only where [`entry32`] finds the entry off (`CONFIG_IA32_EMULATION=n`, or Linux
//! 6.7's `ia32_emulation=false` boot option), or where the operator says so
//! ([`ExitEvents::Always`], which the agent warns about).

use std::{
    collections::{BTreeMap, BTreeSet},
    fs,
    path::{Path, PathBuf},
};

use aya::{
    Ebpf,
    programs::{ProgramError, TracePoint, trace_point::TracePointLinkId},
};

/// Whether `sys_exit` is attached per syscall (`kernel_syscall_events`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ExitEvents {
    /// Per syscall where the kernel has no 32-bit entry, else the `raw_syscalls` tracepoint.
    #[default]
    Auto,
    /// Always the `raw_syscalls` tracepoint.
    Off,
    /// Per syscall even where the 32-bit entry is on: calls made through it go unseen. For
    /// measuring what a node without that entry gets, not for a node.
    Always,
}

impl std::str::FromStr for ExitEvents {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "auto" => Ok(Self::Auto),
            "off" => Ok(Self::Off),
            "always" => Ok(Self::Always),
            _ => Err(format!("`{s}`: expected auto, off or always")),
        }
    }
}

/// What the 32-bit syscall entry does on this kernel.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Entry32 {
    /// `int $0x80` runs i386 syscalls.
    On,
    /// `int $0x80` faults: no call can come through it.
    Off,
    /// The probe did not say (why): treated as on.
    Unknown(String),
}

impl std::fmt::Display for Entry32 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Entry32::On => f.write_str("on"),
            Entry32::Off => f.write_str("off"),
            Entry32::Unknown(why) => write!(f, "unknown ({why})"),
        }
    }
}

/// The child's exit status when `int $0x80` ran getpid, and when it faulted.
const RAN: i32 = 0;
const FAULTED: i32 = 3;

/// Asks the kernel rather than its configuration: a child executes `int $0x80` with i386
/// `getpid`. A kernel without the entry (`CONFIG_IA32_EMULATION=n`, or `ia32_emulation=false`)
/// answers with SIGSEGV, which the child catches (no core, no kernel log line). Anything else
/// (a seccomp filter's SIGSYS, a failed fork) is [`Entry32::Unknown`].
#[cfg(target_arch = "x86_64")]
pub fn entry32() -> Entry32 {
    extern "C" fn on_fault(_: libc::c_int) {
        // SAFETY: async-signal-safe.
        unsafe { libc::_exit(FAULTED) }
    }
    // SAFETY: the child calls only async-signal-safe functions (sigaction, _exit) and one
    // syscall instruction, then exits; the parent reaps it.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return Entry32::Unknown(format!("fork: {}", std::io::Error::last_os_error()));
    }
    if pid == 0 {
        // SAFETY: in the child, see above.
        unsafe {
            let mut sa: libc::sigaction = std::mem::zeroed();
            sa.sa_sigaction = on_fault as extern "C" fn(libc::c_int) as usize;
            libc::sigaction(libc::SIGSEGV, &sa, std::ptr::null_mut());
            let pid: i32;
            // i386 getpid is 20. The 32-bit entry clears r8-r11 of a 64-bit caller.
            std::arch::asm!(
                "int 0x80",
                inlateout("eax") 20 => pid,
                out("r8") _, out("r9") _, out("r10") _, out("r11") _,
                options(nostack),
            );
            libc::_exit(if pid > 0 { RAN } else { 2 });
        }
    }
    let mut status = 0;
    // SAFETY: our own child.
    let r = unsafe { libc::waitpid(pid, &mut status, 0) };
    if r != pid {
        return Entry32::Unknown(format!("waitpid: {}", std::io::Error::last_os_error()));
    }
    match (libc::WIFEXITED(status), libc::WEXITSTATUS(status)) {
        (true, RAN) => Entry32::On,
        (true, FAULTED) => Entry32::Off,
        (true, code) => Entry32::Unknown(format!("the probe exited with {code}")),
        _ if libc::WIFSIGNALED(status) => Entry32::Unknown(format!(
            "the probe was killed by signal {} (a seccomp filter?)",
            libc::WTERMSIG(status)
        )),
        _ => Entry32::Unknown(format!("the probe's wait status {status:#x}")),
    }
}

#[cfg(not(target_arch = "x86_64"))]
pub fn entry32() -> Entry32 {
    Entry32::Unknown("the probe is written for x86_64".into())
}

/// Our syscall names (x86_64's table) whose event the kernel names otherwise.
const EVENT_NAMES: &[(&str, &str)] = &[("umount2", "umount")];

/// The name of `name`'s `syscalls:sys_exit_*` event.
fn event_name(name: &str) -> String {
    let base = EVENT_NAMES
        .iter()
        .find(|(ours, _)| *ours == name)
        .map_or(name, |(_, theirs)| theirs);
    format!("sys_exit_{base}")
}

/// What to attach for a set of wanted syscalls.
#[derive(Debug, Default, PartialEq, Eq)]
struct Plan<'a> {
    /// (number, event) of each syscall with an event.
    events: Vec<(u32, String)>,
    /// The names this kernel does not build in (their number runs `sys_ni_syscall`, which
    /// fails with ENOSYS before anything happens, and has no event): they need none.
    absent: Vec<&'a str>,
}

/// The events to attach for `wanted` (number, name). Err names a syscall the kernel builds in
/// but has no event for: the per-syscall form would not see it.
fn plan<'a>(
    tracefs: &Path,
    wanted: impl IntoIterator<Item = (u32, &'a str)>,
) -> Result<Plan<'a>, String> {
    plan_with(tracefs, wanted, || fs::read_to_string("/proc/kallsyms"))
}

/// [`plan`], with `/proc/kallsyms` read by `kallsyms` (only when an event is missing).
fn plan_with<'a>(
    tracefs: &Path,
    wanted: impl IntoIterator<Item = (u32, &'a str)>,
    kallsyms: impl FnOnce() -> std::io::Result<String>,
) -> Result<Plan<'a>, String> {
    let mut events = Vec::new();
    let mut missing = Vec::new();
    for (nr, name) in wanted {
        let event = event_name(name);
        if tracefs.join("events/syscalls").join(&event).is_dir() {
            events.push((nr, event));
        } else {
            missing.push((name, event));
        }
    }
    let mut absent = Vec::new();
    if let Some((_, first)) = missing.first() {
        let symbols = syscall_symbols(&kallsyms().map_err(|e| {
            format!("no {first} event, and /proc/kallsyms unreadable to tell why: {e}")
        })?);
        for (name, event) in missing {
            match symbols.get(name) {
                // A weak symbol is `COND_SYSCALL`'s alias of sys_ni_syscall: not built in.
                None | Some('W' | 'w') => absent.push(name),
                Some(_) => {
                    return Err(format!(
                        "this kernel builds in {name} but has no syscalls:{event} event"
                    ));
                }
            }
        }
    }
    Ok(Plan { events, absent })
}

/// The per-syscall form once loaded: which of the object's two programs, and its link on each
/// syscall's event.
pub struct Attached {
    pub program: &'static str,
    tracefs: PathBuf,
    links: BTreeMap<u32, TracePointLinkId>,
}

/// Why the per-syscall form could not follow the wanted set.
#[derive(Debug, thiserror::Error)]
pub enum AttachError {
    /// A wanted syscall has no event to attach to (see [`plan`]).
    #[error("{0}")]
    Plan(String),
    #[error("no tracepoint program {0} in the object")]
    NoProgram(&'static str),
    #[error("attaching or detaching program {program} failed: {source}")]
    Program {
        program: &'static str,
        #[source]
        source: ProgramError,
    },
}

impl Attached {
    /// `program` (`sys_exit_event` or `sys_exit_event_cast`), loaded, attached to nothing yet.
    pub fn new(program: &'static str, tracefs: &Path) -> Self {
        Self {
            program,
            tracefs: tracefs.to_path_buf(),
            links: BTreeMap::new(),
        }
    }

    /// Attaches to the events of those of `wanted` not attached yet; returns the names with
    /// no event because the kernel does not build them in.
    pub fn add<'a>(
        &mut self,
        ebpf: &mut Ebpf,
        wanted: impl IntoIterator<Item = (u32, &'a str)>,
    ) -> Result<Vec<&'a str>, AttachError> {
        let new = wanted
            .into_iter()
            .filter(|(nr, _)| !self.links.contains_key(nr));
        let Plan { events, absent } = plan(&self.tracefs, new).map_err(AttachError::Plan)?;
        let program = self.program;
        let prog = tracepoint(ebpf, program)?;
        for (nr, event) in events {
            let link = prog
                .attach("syscalls", &event)
                .map_err(|source| AttachError::Program { program, source })?;
            self.links.insert(nr, link);
        }
        Ok(absent)
    }

    /// Detaches from the events of the syscalls not in `keep`, all at once: the kernel waits
    /// out an RCU grace period (tasks-trace, SRCU and classic) for each event it unregisters,
    /// about 90 ms on the benchmark host, so one after another 62 events took 5.5 s (an
    /// agent's stop; a reload that drops syscalls blocked the event loop as long). Each link is
    /// dropped on a thread of its own and the waits overlap; returns when all are gone. The
    /// kernel still switches the `sys_exit` tracepoint's static key once, when the last event
    /// goes, under its own locks, as it does when they go one after another.
    pub fn retain(&mut self, ebpf: &mut Ebpf, keep: &BTreeSet<u32>) -> Result<(), AttachError> {
        let program = self.program;
        let prog = tracepoint(ebpf, program)?;
        let gone: Vec<u32> = self
            .links
            .keys()
            .filter(|nr| !keep.contains(nr))
            .copied()
            .collect();
        let mut owned = Vec::with_capacity(gone.len());
        for nr in gone {
            if let Some(link) = self.links.remove(&nr) {
                owned.push(
                    prog.take_link(link)
                        .map_err(|source| AttachError::Program { program, source })?,
                );
            }
        }
        std::thread::scope(|s| {
            for link in owned {
                s.spawn(move || drop(link));
            }
        });
        Ok(())
    }

    /// How many syscalls' events it is attached to.
    pub fn attached(&self) -> usize {
        self.links.len()
    }
}

fn tracepoint<'e>(
    ebpf: &'e mut Ebpf,
    program: &'static str,
) -> Result<&'e mut TracePoint, AttachError> {
    ebpf.program_mut(program)
        .and_then(|p| p.try_into().ok())
        .ok_or(AttachError::NoProgram(program))
}

/// `__x64_sys_NAME` symbols of a `/proc/kallsyms` text: NAME and the symbol's type letter.
fn syscall_symbols(kallsyms: &str) -> BTreeMap<String, char> {
    kallsyms
        .lines()
        .filter_map(|l| {
            let mut words = l.split_whitespace();
            let (_, kind, symbol) = (words.next()?, words.next()?, words.next()?);
            let name = symbol.strip_prefix("__x64_sys_")?;
            Some((name.to_string(), kind.chars().next()?))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_names_are_the_kernels_where_ours_differ() {
        assert_eq!(event_name("openat"), "sys_exit_openat");
        assert_eq!(event_name("umount2"), "sys_exit_umount");
    }

    #[test]
    fn a_missing_event_is_allowed_only_for_a_syscall_the_kernel_does_not_build() {
        let dir = std::env::temp_dir().join(format!("osprey-events-{}", std::process::id()));
        fs::create_dir_all(dir.join("events/syscalls/sys_exit_openat")).unwrap();
        let p = plan(&dir, [(257, "openat")]).unwrap();
        assert_eq!(p.events, vec![(257, "sys_exit_openat".to_string())]);
        assert!(p.absent.is_empty());
        let symbols = syscall_symbols(
            "ffffffff81398a00 W __x64_sys_init_module\nffffffff816d7b70 T __x64_sys_openat\n\
             ffffffff816d7b70 T __ia32_sys_openat\n",
        );
        assert_eq!(symbols.get("init_module"), Some(&'W'));
        assert_eq!(symbols.get("openat"), Some(&'T'));
        assert_eq!(symbols.len(), 2);
        let kallsyms = "ffffffff81398a00 W __x64_sys_init_module\n\
                        ffffffff81398b00 T __x64_sys_delete_module\n";
        // Not built in (a weak alias, or no symbol at all): no event needed.
        let p = plan_with(
            &dir,
            [(257, "openat"), (175, "init_module"), (246, "kexec_load")],
            || Ok(kallsyms.to_string()),
        )
        .unwrap();
        assert_eq!(p.events.len(), 1);
        assert_eq!(p.absent, ["init_module", "kexec_load"]);
        // Built in without an event: the per-syscall form would miss it.
        let e = plan_with(&dir, [(176, "delete_module")], || Ok(kallsyms.to_string())).unwrap_err();
        assert!(e.contains("builds in delete_module"), "{e}");
        // Unreadable kallsyms: no guess.
        let e = plan_with(&dir, [(176, "delete_module")], || {
            Err(std::io::Error::from(std::io::ErrorKind::PermissionDenied))
        })
        .unwrap_err();
        assert!(e.contains("/proc/kallsyms unreadable"), "{e}");
        fs::remove_dir_all(&dir).unwrap();
    }

    /// On the machine running the tests: every syscall of our table has its event under the
    /// name [`event_name`] gives, or is one this kernel does not build in.
    #[test]
    fn every_syscall_we_know_has_an_event_or_is_not_built_here() {
        let Ok(tracefs) = crate::sensor::tracefs::ensure_mounted() else {
            eprintln!("skipped: no tracefs (not root?)");
            return;
        };
        if fs::read_to_string("/proc/kallsyms").is_err() {
            eprintln!("skipped: /proc/kallsyms unreadable");
            return;
        }
        let wanted = crate::sensor::syscalls::SYSCALLS
            .iter()
            .map(|d| (d.nr, d.name));
        let p = plan(&tracefs, wanted).unwrap();
        assert_eq!(
            p.events.len() + p.absent.len(),
            crate::sensor::syscalls::SYSCALLS.len()
        );
        assert!(p.events.iter().any(|(_, e)| e == "sys_exit_openat"));
    }
}
