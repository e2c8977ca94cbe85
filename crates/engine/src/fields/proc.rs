//! `proc.*` and `thread.*`: the process, its ancestors and the thread (Falco's
//! `sinsp_filtercheck_thread`).

use osprey_model::{Process, event::cap_names, process::base};

use super::{ArgSpec, Ctx, FieldArg, FieldDef, FieldType as T, Val, why};

pub(super) const FIELDS: &[FieldDef] = &[
    FieldDef::new(
        "proc.name",
        T::Charbuf,
        "Process name (task->comm, at most 15 characters).",
        |c, _| {
            Val::str(
                c.process()
                    .map_or(c.en.event.comm.as_str(), |p| p.comm.as_str()),
            )
        },
    ),
    FieldDef::new("proc.exe", T::Charbuf, "argv[0] of the process.", |c, _| {
        c.process().and_then(|p| Val::str(exe(p)))
    }),
    FieldDef::new(
        "proc.exepath",
        T::Charbuf,
        "Full path of the executable the kernel loaded, walked from its own dentries: the \
         real file behind /proc/self/exe, /dev/fd/N or a symlink; /memfd:NAME for a memfd; \
         ' (deleted)' after an unlinked file.",
        |c, _| c.process().and_then(|p| Val::nonempty(&p.exe)),
    ),
    FieldDef::new(
        "proc.exepath_raw",
        T::Charbuf,
        "The path the process gave to exec (made absolute), whatever it pointed to; \
         proc.exepath is the file that ran.",
        |c, _| c.process().and_then(|p| Val::nonempty(&p.exe_requested)),
    ),
    FieldDef::new(
        "proc.cmdline",
        T::Charbuf,
        "proc.name followed by the arguments; ends with ...[truncated] when argv was longer than what the sensor captured.",
        |c, _| c.cmdline().and_then(Val::str),
    ),
    FieldDef::new(
        "proc.args",
        T::Charbuf,
        "Arguments after argv[0], joined by spaces.",
        |c, _| c.args().and_then(Val::str),
    ),
    FieldDef::new(
        "proc.pid",
        T::Int64,
        "Process id (thread group id).",
        |c, _| Some(Val::Num(i64::from(c.en.event.tgid))),
    ),
    FieldDef::new(
        "proc.vpid",
        T::Int64,
        "Process id inside its pid namespace.",
        |c, _| Some(Val::Num(i64::from(c.en.event.vpid))),
    ),
    FieldDef::new("proc.ppid", T::Int64, "Parent process id.", |c, _| {
        c.process().map(|p| Val::Num(i64::from(p.ppid)))
    }),
    FieldDef::new("proc.pname", T::Charbuf, "Parent process name.", |c, _| {
        c.ancestor(1).and_then(|a| Val::str(&a.comm))
    }),
    FieldDef::new("proc.pexe", T::Charbuf, "argv[0] of the parent.", |c, _| {
        c.ancestor(1).and_then(|a| Val::str(exe(a)))
    }),
    FieldDef::new(
        "proc.pexepath",
        T::Charbuf,
        "Executable path of the parent.",
        |c, _| c.ancestor(1).and_then(|a| Val::nonempty(&a.exe)),
    ),
    FieldDef::new(
        "proc.pcmdline",
        T::Charbuf,
        "Command line of the parent.",
        |c, _| c.ancestor(1).and_then(|a| Val::owned(a.cmdline())),
    ),
    FieldDef::new(
        "proc.aname",
        T::Charbuf,
        "Name of ancestor N (1 = parent, 0 = the process); without [N], matches any ancestor.",
        |c, a| ancestor(c, a).and_then(|a| Val::str(&a.comm)),
    )
    .with_arg(ArgSpec::Index),
    FieldDef::new(
        "proc.aexe",
        T::Charbuf,
        "argv[0] of ancestor N; without [N], any ancestor.",
        |c, a| ancestor(c, a).and_then(|a| Val::str(exe(a))),
    )
    .with_arg(ArgSpec::Index),
    FieldDef::new(
        "proc.aexepath",
        T::Charbuf,
        "Executable path of ancestor N; without [N], any ancestor.",
        |c, a| ancestor(c, a).and_then(|a| Val::nonempty(&a.exe)),
    )
    .with_arg(ArgSpec::Index),
    FieldDef::new(
        "proc.aexepath_raw",
        T::Charbuf,
        "proc.exepath_raw of ancestor N (1 = parent): the path it gave to exec (for a script, \
         the script's); without [N], any ancestor.",
        |c, a| ancestor(c, a).and_then(|a| Val::nonempty(&a.exe_requested)),
    )
    .with_arg(ArgSpec::Index),
    FieldDef::new(
        "proc.apid",
        T::Int64,
        "Pid of ancestor N; without [N], any ancestor.",
        |c, a| ancestor(c, a).map(|a| Val::Num(i64::from(a.pid))),
    )
    .with_arg(ArgSpec::Index),
    FieldDef::new(
        "proc.acmdline",
        T::Charbuf,
        "Command line of ancestor N; without [N], any ancestor.",
        |c, a| ancestor(c, a).and_then(|a| Val::owned(a.cmdline())),
    )
    .with_arg(ArgSpec::Index),
    FieldDef::new(
        "proc.tty",
        T::Uint32,
        "Controlling terminal device number, 0 for none.",
        |c, _| c.process().map(|p| Val::Num(i64::from(p.tty))),
    ),
    FieldDef::new(
        "proc.stdin.type",
        T::Charbuf,
        "What the process's stdin (fd 0) was when it started, as the kernel's descriptor table \
         held it at its exec: ipv4, ipv6, unix, pipe, file (a device such as a terminal too)... \
         unset when closed, and for processes found at start-up.",
        |c, _| stdio_type(c, 0),
    ),
    FieldDef::new(
        "proc.stdout.type",
        T::Charbuf,
        "proc.stdin.type for stdout (fd 1).",
        |c, _| stdio_type(c, 1),
    ),
    FieldDef::new(
        "proc.stderr.type",
        T::Charbuf,
        "proc.stdin.type for stderr (fd 2).",
        |c, _| stdio_type(c, 2),
    ),
    FieldDef::new(
        "proc.stdin.name",
        T::Charbuf,
        "The name of that stdin, as fd.name shows one (a path, a socket's \
         client_ip:port->server_ip:port), where the fd table or /proc knew it.",
        |c, _| stdio_name(c, 0),
    ),
    FieldDef::new(
        "proc.stdout.name",
        T::Charbuf,
        "proc.stdin.name for stdout (fd 1).",
        |c, _| stdio_name(c, 1),
    ),
    FieldDef::new(
        "proc.stderr.name",
        T::Charbuf,
        "proc.stdin.name for stderr (fd 2).",
        |c, _| stdio_name(c, 2),
    ),
    FieldDef::new(
        "proc.cwd",
        T::Charbuf,
        "Working directory, with a trailing '/'.",
        |c, _| c.cwd().and_then(Val::str),
    ),
    FieldDef::new(
        "proc.duration",
        T::Reltime,
        "Nanoseconds since the process started.",
        |c, _| {
            c.process()
                .map(|p| Val::Num(c.en.event.ts.saturating_sub(p.start_ts) as i64))
        },
    ),
    FieldDef::new(
        "proc.exe_basename",
        T::Charbuf,
        "File name of proc.exepath: the name of the file the kernel loaded, which a process \
         cannot change the way it renames proc.name (prctl, or a copy of a binary).",
        |c, _| c.process().and_then(|p| Val::nonempty(p.exe_name())),
    ),
    FieldDef::new(
        "proc.exe_rawname",
        T::Charbuf,
        "File name of proc.exepath_raw, the path given to exec: for a script, the script's own \
         name (proc.exe_basename is then its interpreter's).",
        |c, _| {
            c.process()
                .and_then(|p| Val::nonempty(base(&p.exe_requested)))
        },
    ),
    FieldDef::new(
        "proc.program",
        T::Charbuf,
        "The program the process runs, by a name the way it was started cannot choose: \
         proc.exe_basename (a symlink named otherwise, `exec -a` or prctl(PR_SET_NAME) leave \
         it `bash`), but for a multi-call binary (busybox, toybox) the applet it runs (`busybox \
         sh` is `sh`), and for a script the script's own name (its executable is its \
         interpreter; the kernel says which execs loaded one). A copy of a binary under \
         another name is that name.",
        |c, _| c.process().and_then(|p| Val::nonempty(p.program())),
    ),
    FieldDef::new(
        "proc.aprogram",
        T::Charbuf,
        "proc.program of ancestor N (1 = parent); without [N], any ancestor.",
        |c, a| ancestor(c, a).and_then(|p| Val::nonempty(p.program())),
    )
    .with_arg(ArgSpec::Index),
    FieldDef::new(
        "proc.aexe_basename",
        T::Charbuf,
        "proc.exe_basename of ancestor N (1 = parent); without [N], any ancestor.",
        |c, a| ancestor(c, a).and_then(|p| Val::nonempty(p.exe_name())),
    )
    .with_arg(ArgSpec::Index),
    FieldDef::new(
        "proc.is_exe_from_host",
        T::Bool,
        "The executable is one of the node's own files: it was exec'd in the node's mount \
         namespace, so no container image, and nothing a container can write, supplied it.",
        |c, _| c.process().map(|p| Val::Bool(p.exe_from_host)),
    ),
    FieldDef::new(
        "proc.ais_exe_from_host",
        T::Bool,
        "proc.is_exe_from_host of ancestor N (1 = parent); without [N], any ancestor.",
        |c, a| ancestor(c, a).map(|p| Val::Bool(p.exe_from_host)),
    )
    .with_arg(ArgSpec::Index),
    FieldDef::new(
        "proc.image_exepath",
        T::Charbuf,
        "proc.exepath when the executable came with the node or with the container's image: \
         exec'd in the node's mount namespace, or in a container from its root file system and \
         not its overlayfs upper layer (not written or copied up after the container started, \
         not on a volume); empty for a file the workload wrote or a volume supplied. Where the kernel's overlayfs layout is unknown (overlayfs built as a \
         module), a container's file counts as its image's.",
        |c, _| {
            c.process()
                .and_then(|p| image_exepath(p).and_then(Val::nonempty))
        },
    ),
    FieldDef::new(
        "proc.aimage_exepath",
        T::Charbuf,
        "proc.image_exepath of ancestor N (1 = parent); without [N], any ancestor.",
        |c, a| ancestor(c, a).and_then(|p| image_exepath(p).and_then(Val::nonempty)),
    )
    .with_arg(ArgSpec::Index),
    FieldDef::new(
        "proc.is_exe_from_memfd",
        T::Bool,
        "The executable is a memfd (fileless execution).",
        |c, _| c.process().map(|p| Val::Bool(p.exe_from_memfd())),
    ),
    FieldDef::new(
        "proc.is_exe_32bit",
        T::Bool,
        "Osprey: the executable is a 32-bit ELF (the class of the header the kernel read at \
         exec; for a script, its interpreter's): a 32-bit program, which makes its calls \
         through the 32-bit entry as a matter of course.",
        |c, _| c.process().map(|p| Val::Bool(p.exe_elf32)),
    ),
    FieldDef::new(
        "proc.is_exe_upper_layer",
        T::Bool,
        "The executable is in the overlayfs upper layer: written or copied up after the \
         container started, not part of its image (drift). False off overlayfs.",
        |c, _| {
            c.process()
                .map(|p| Val::Bool(p.exe_layer.is_some_and(|l| l.upper)))
        },
    ),
    FieldDef::new(
        "proc.is_exe_from_volume",
        T::Bool,
        "The executable was loaded from another mount than the process's root file system: in \
         a container, one of its volumes (emptyDir, hostPath, tmpfs, configMap...), not its \
         image, whatever the storage driver; on the node, any other mount (/usr on its own \
         partition, a tmpfs). False for a process found at start-up.",
        |c, _| c.process().map(|p| Val::Bool(p.exe_mount.is_some())),
    ),
    FieldDef::new(
        "proc.is_exe_from_writable_volume",
        T::Bool,
        "proc.is_exe_from_volume, and neither that mount nor its file system is read-only: \
         whoever runs in the container could have written the file.",
        |c, _| {
            c.process()
                .map(|p| Val::Bool(p.exe_mount.is_some_and(|m| !m.read_only)))
        },
    ),
    FieldDef::unset(
        "proc.is_exe_writable",
        T::Bool,
        "The executable is writable by the process's user.",
        why::NOT_CAPTURED,
    ),
    FieldDef::unset(
        "proc.exe_ino",
        T::Int64,
        "Inode of the executable.",
        why::NOT_CAPTURED,
    ),
    FieldDef::unset(
        "proc.exe_ino.ctime",
        T::Abstime,
        "ctime of the executable's inode.",
        why::NOT_CAPTURED,
    ),
    FieldDef::unset(
        "proc.exe_ino.mtime",
        T::Abstime,
        "mtime of the executable's inode.",
        why::NOT_CAPTURED,
    ),
    FieldDef::unset(
        "proc.exe_ino.ctime_duration_proc_start",
        T::Reltime,
        "Time between the exe's ctime and the process start.",
        why::NOT_CAPTURED,
    ),
    FieldDef::new(
        "proc.env",
        T::Charbuf,
        "Environment, space-separated NAME=value entries (proc.env[NAME]: one variable's value). \
         proc.env[LD_PRELOAD] is the last LD_PRELOAD entry exec gave the program (the one the \
         dynamic loader uses), read by the kernel before the program ran; the rest the live \
         agent reads from /proc when a rule or output asks for it (unset once the process is \
         gone, and in replays).",
        // Asked of the host like proc.vpgid: a replay judges the recording, not today's pid.
        |c, a| {
            let kernel = match a {
                FieldArg::Key(name) if &**name == "LD_PRELOAD" => {
                    c.process().and_then(|p| p.exec_env.as_ref())
                }
                _ => None,
            };
            // The kernel read every entry: the whole truth, whatever the process did since.
            if let Some(env) = kernel.filter(|e| e.complete) {
                return env.ld_preload.as_deref().and_then(Val::str);
            }
            let Some(env) = c.svc.process_groups.environ(c.en.event.tgid) else {
                // Gone: what the kernel did read.
                return kernel
                    .and_then(|e| e.ld_preload.as_deref())
                    .and_then(Val::str);
            };
            match a {
                FieldArg::Key(name) => env.iter().find_map(|e| {
                    e.strip_prefix(&**name)
                        .and_then(|v| v.strip_prefix('='))
                        .and_then(|v| Val::owned(v.to_string()))
                }),
                _ => Val::owned(env.join(" ")),
            }
        },
    )
    .with_arg(ArgSpec::Key),
    FieldDef::unset("proc.sid", T::Int64, "Session id.", why::NOT_CAPTURED),
    FieldDef::unset(
        "proc.sname",
        T::Charbuf,
        "Name of the session leader.",
        why::NOT_CAPTURED,
    ),
    FieldDef::new(
        "proc.vpgid",
        T::Int64,
        "Process group id inside the process's pid namespace (the live agent reads it from \
         /proc when a rule or output asks for it; unset once the process is gone, and in \
         replays).",
        // Asked of the host through `env::ProcessGroups`, so that a replay judges the
        // recording rather than whatever process has that pid now.
        |c, _| c.svc.process_groups.vpgid(c.en.event.tgid).map(Val::Num),
    ),
    FieldDef::unset(
        "proc.vpgid.name",
        T::Charbuf,
        "Name of the process group leader.",
        why::NOT_CAPTURED,
    ),
    FieldDef::unset(
        "proc.vpgid.exe",
        T::Charbuf,
        "argv[0] of the process group leader.",
        why::NOT_CAPTURED,
    ),
    FieldDef::unset(
        "proc.is_vpgid_leader",
        T::Bool,
        "The process leads its process group.",
        why::NOT_CAPTURED,
    ),
    FieldDef::unset(
        "proc.loginshellid",
        T::Int64,
        "Pid of the outermost shell.",
        why::NOT_CAPTURED,
    ),
    FieldDef::unset(
        "proc.is_container_healthcheck",
        T::Bool,
        "The process is a container health check.",
        why::CONTAINER,
    ),
    FieldDef::unset(
        "proc.is_container_liveness_probe",
        T::Bool,
        "The process is a liveness probe.",
        why::CONTAINER,
    ),
    FieldDef::unset(
        "proc.is_container_readiness_probe",
        T::Bool,
        "The process is a readiness probe.",
        why::CONTAINER,
    ),
    // thread.*
    FieldDef::new("thread.tid", T::Int64, "Thread id.", |c, _| {
        Some(Val::Num(i64::from(c.en.event.tid)))
    }),
    FieldDef::unset(
        "thread.vtid",
        T::Int64,
        "Thread id inside the pid namespace.",
        why::NOT_CAPTURED,
    ),
    FieldDef::new(
        "thread.comm",
        T::Charbuf,
        "The thread's name (task->comm) when the event happened. proc.name is the name the \
         process had at exec; a thread or process that renamed itself (prctl PR_SET_NAME, \
         perl's $0) shows its new name here.",
        |c, _| Val::nonempty(&c.en.event.comm),
    ),
    FieldDef::new(
        "thread.cap_effective",
        T::Charbuf,
        "Effective capabilities, space-separated names (CAP_CHOWN CAP_SYS_ADMIN ...).",
        |c, _| Val::owned(cap_names(c.en.event.cap_effective).join(" ")),
    ),
    FieldDef::new(
        "thread.cap_permitted",
        T::Charbuf,
        "Permitted capabilities, space-separated names.",
        |c, _| Val::owned(cap_names(c.en.event.cap_permitted).join(" ")),
    ),
    FieldDef::unset(
        "thread.cap_inheritable",
        T::Charbuf,
        "Inheritable capabilities.",
        why::CAPS,
    ),
];

/// The ancestor a `proc.a*[N]` field names; the parent without an index (the any-ancestor
/// form goes through `Ctx::extract_ancestors`, which passes every index).
fn ancestor<'a>(c: &Ctx<'a>, a: &FieldArg) -> Option<&'a Process> {
    c.ancestor(match a {
        FieldArg::Index(i) => *i,
        _ => 1,
    })
}

/// The executable's path when it came with the node or the image, not from the workload.
fn image_exepath(p: &Process) -> Option<&str> {
    // Written in the container, fileless, or from one of its volumes (another mount than its
    // root: the image is the root mount).
    let not_the_image =
        p.exe_layer.is_some_and(|l| l.upper) || p.exe_from_memfd() || p.exe_mount.is_some();
    (p.exe_from_host || !not_the_image).then_some(p.exe.as_str())
}

/// Falco's `proc.exe` is argv[0]; a process known only from its event header has no argv.
fn exe(p: &Process) -> &str {
    p.args.first().map_or(p.exe.as_str(), String::as_str)
}

impl<'a> Ctx<'a> {
    /// `proc.cmdline`, joined once per event.
    fn cmdline(&self) -> Option<&'a str> {
        self.cache
            .cmdline
            .get_or_init(|| self.process().map(Process::cmdline))
            .as_deref()
    }

    /// `proc.args`, joined once per event.
    fn args(&self) -> Option<&'a str> {
        self.cache
            .args
            .get_or_init(|| {
                self.process().map(|p| {
                    let mut s = p.args.get(1..).map(|a| a.join(" ")).unwrap_or_default();
                    if p.args_truncated {
                        s.push_str(osprey_model::event::TRUNCATED_MARKER);
                    }
                    s
                })
            })
            .as_deref()
    }

    /// `proc.cwd`: with its trailing '/', added once per event when the table lacks it.
    fn cwd(&self) -> Option<&'a str> {
        let c = self.process()?.cwd.as_deref()?;
        if c.ends_with('/') {
            return Some(c);
        }
        self.cache
            .cwd
            .get_or_init(|| Some(format!("{c}/")))
            .as_deref()
    }
}

/// `proc.stdin.type` and the like: descriptor `fd` as the process started with it.
fn stdio_type<'a>(c: &Ctx<'a>, fd: usize) -> Option<Val<'a>> {
    let s = c.process()?.stdio.get(fd)?.as_ref()?;
    Val::str(s.kind.as_str())
}

/// `proc.stdin.name` and the like.
fn stdio_name<'a>(c: &Ctx<'a>, fd: usize) -> Option<Val<'a>> {
    Val::nonempty(&c.process()?.stdio.get(fd)?.as_ref()?.name)
}
