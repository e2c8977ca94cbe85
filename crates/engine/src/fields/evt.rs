//! `evt.*`: the event itself (Falco's `sinsp_filtercheck_event`): type, number, times, result
//! and arguments.

use std::borrow::Cow;

use osprey_model::{
    event::{ArgValue, EventKind, TRUNCATED_MARKER},
    syscalls::errno_name,
    time::{format_datetime, format_iso8601, format_time},
};

use super::{ArgSpec, Ctx, FieldArg, FieldDef, FieldType as T, Val};

pub(super) const FIELDS: &[FieldDef] = &[
    FieldDef::new(
        "evt.type",
        T::Charbuf,
        "Event type: the syscall name (openat, execve...), or procexit.",
        |c, _| Val::str(c.evt_type()),
    ),
    FieldDef::new(
        "evt.num",
        T::Uint64,
        "Event number, counted by the engine from 1.",
        |c, _| Some(Val::Num(c.evt_num as i64)),
    ),
    FieldDef::new(
        "evt.time",
        T::Abstime,
        "Event time; text HH:MM:SS.nnnnnnnnn (UTC), number in JSON.",
        |c, _| Some(Val::Time(c.en.event.time)),
    ),
    FieldDef::new(
        "evt.time.s",
        T::Charbuf,
        "Event time as HH:MM:SS (UTC).",
        |c, _| Val::owned(format_time(c.en.event.time)[..8].to_string()),
    ),
    FieldDef::new(
        "evt.time.iso8601",
        T::Charbuf,
        "Event time in ISO 8601 with nanoseconds (UTC).",
        |c, _| Val::owned(format_iso8601(c.en.event.time)),
    ),
    FieldDef::new(
        "evt.datetime",
        T::Charbuf,
        "Event date and time, YYYY-MM-DD HH:MM:SS.nnnnnnnnn (UTC).",
        |c, _| Val::owned(format_datetime(c.en.event.time)),
    ),
    FieldDef::new(
        "evt.rawtime",
        T::Abstime,
        "Event time in nanoseconds since the epoch.",
        |c, _| Some(Val::Time(c.en.event.time)),
    ),
    FieldDef::new(
        "evt.res",
        T::Charbuf,
        "Result: SUCCESS, or the errno name (ENOENT...).",
        |c, _| {
            c.sc.map(|sc| {
                Val::Str(match sc.errno() {
                    Some(e) => errno_name(e),
                    None => Cow::Borrowed("SUCCESS"),
                })
            })
        },
    ),
    FieldDef::new(
        "evt.rawres",
        T::Int64,
        "Return value of the syscall, as a number.",
        |c, _| c.sc.map(|sc| Val::Num(sc.ret)),
    ),
    FieldDef::new(
        "evt.failed",
        T::Bool,
        "true when the syscall returned an error.",
        |c, _| c.sc.map(|sc| Val::Bool(sc.errno().is_some())),
    ),
    FieldDef::new(
        "evt.arg",
        T::Dynamic,
        "Argument by name (evt.arg.flags, evt.arg[flags]) or position (evt.arg[0]), as text; flags compare by name with contains.",
        |c, a| marked(c, arg(c, a)?, false),
    )
    .with_arg(ArgSpec::Name),
    FieldDef::new(
        "evt.rawarg",
        T::Dynamic,
        "Argument by name, as a number when it has one.",
        |c, a| arg_val(arg(c, a)?, true),
    )
    .with_arg(ArgSpec::Name),
    FieldDef::new(
        "evt.args",
        T::Charbuf,
        "All arguments as name=value text.",
        |c, _| {
            c.sc.map(|sc| {
                let mut out = String::new();
                for a in &sc.args {
                    if !out.is_empty() {
                        out.push(' ');
                    }
                    out.push_str(&a.name);
                    out.push('=');
                    if let Some(v) = arg_val(&a.value, false) {
                        out.push_str(&v.text());
                    }
                    if sc.is_truncated_arg(&a.value) {
                        out.push_str(TRUNCATED_MARKER);
                    }
                }
                Val::Str(Cow::Owned(out))
            })
        },
    ),
    FieldDef::new(
        "evt.is_truncated",
        T::Bool,
        "Osprey: some user memory the event carries (a path, a string argument, argv) was longer than what the sensor captured; the cut value ends with ...[truncated].",
        |c, _| {
            Some(Val::Bool(match &c.en.event.kind {
                EventKind::Syscall(sc) => sc.truncated,
                EventKind::Exec(e) => e.args_truncated,
                _ => false,
            }))
        },
    ),
    FieldDef::new(
        "evt.is_io_uring",
        T::Bool,
        "Osprey: the operation was submitted through an io_uring ring rather than made as a syscall; it reads as the syscall it stands for (IORING_OP_OPENAT as openat, CONNECT as connect...), with the path as the kernel copied it and the result of its completion.",
        |c, _| Some(Val::Bool(c.sc.is_some_and(|sc| sc.io_uring.is_some()))),
    ),
    FieldDef::new(
        "evt.is_ia32",
        T::Bool,
        "Osprey: the syscall came through the 32-bit entry (`int $0x80`, which any x86_64 process can execute, or a 32-bit program); it reads as the x86_64 call it is (the i386 open, 5, as open). A 64-bit program has no reason to use that entry but to be read as another call by a sensor that does not translate it.",
        |c, _| Some(Val::Bool(c.sc.is_some_and(|sc| sc.ia32))),
    ),
    FieldDef::new(
        "evt.is_ia32_from_64bit",
        T::Bool,
        "Osprey: the syscall came through the 32-bit entry from code running in 64-bit mode (the user code segment at the call was the 64-bit one): `int $0x80` in an x86_64 program, not a call of a 32-bit program. Calls a rule captures only.",
        |c, _| Some(Val::Bool(c.sc.is_some_and(|sc| sc.ia32_from_64bit))),
    ),
    FieldDef::new(
        "evt.io_uring_op",
        T::Charbuf,
        "Osprey: the io_uring opcode of an operation a ring submitted, without IORING_OP_ (OPENAT, OPENAT2, CONNECT, ACCEPT, SOCKET, SEND, RECV, SENDMSG, RECVMSG, SPLICE, TEE, UNLINKAT, RENAMEAT); unset for a syscall. A request on a registered file, or one whose result went into a registered slot, leaves the fd.* fields unset: those numbers are not the process's descriptors.",
        |c, _| {
            c.sc.and_then(|sc| sc.io_uring.as_ref())
                .map(|r| Val::Str(Cow::Borrowed(&*r.op)))
        },
    ),
    FieldDef::new(
        "evt.dir",
        T::Charbuf,
        "Deprecated: always '<' (Osprey only sees completed syscalls).",
        |_, _| Val::str("<"),
    )
    .deprecated(),
    FieldDef::new(
        "evt.is_open_read",
        T::Bool,
        "For open syscalls: opened for reading.",
        |c, _| Some(Val::Bool(open_flags(c).is_some_and(|f| matches!(f & 3, 0 | 2)))),
    ),
    FieldDef::new(
        "evt.is_open_write",
        T::Bool,
        "For open syscalls: opened for writing.",
        |c, _| Some(Val::Bool(open_flags(c).is_some_and(|f| matches!(f & 3, 1 | 2)))),
    ),
    FieldDef::new(
        "evt.is_open_exec",
        T::Bool,
        "For open syscalls: a file created with execute permission.",
        |c, _| Some(Val::Bool(open_exec(c))),
    ),
    FieldDef::new(
        "evt.hostname",
        T::Charbuf,
        "Host name of the node.",
        |c, _| Val::str(c.svc.hostname),
    ),
    FieldDef::new(
        "evt.source",
        T::Charbuf,
        "Event source: syscall.",
        |_, _| Val::str("syscall"),
    ),
    FieldDef::new(
        "evt.latency",
        T::Reltime,
        "Deprecated: nanoseconds between syscall entry and exit.",
        |c, _| c.sc.map(|sc| Val::Num(sc.latency_ns as i64)),
    )
    .deprecated(),
];

/// `evt.arg.*` as text, with the truncation marker on the capture that was cut short.
fn marked<'a>(c: &Ctx<'a>, v: &'a ArgValue, raw: bool) -> Option<Val<'a>> {
    let val = arg_val(v, raw)?;
    if c.sc.is_some_and(|sc| sc.is_truncated_arg(v)) {
        return Val::owned(format!("{}{TRUNCATED_MARKER}", val.text()));
    }
    Some(val)
}

/// The argument `evt.arg[...]` names, by position or by name.
fn arg<'a>(c: &Ctx<'a>, a: &FieldArg) -> Option<&'a ArgValue> {
    match a {
        FieldArg::Index(i) => c.sc.and_then(|sc| sc.args.get(*i)).map(|a| &a.value),
        FieldArg::Name(n, aliases) => c.arg_by_name(n, aliases),
        _ => None,
    }
}

/// The open flags of an open syscall; None for any other event.
fn open_flags(c: &Ctx<'_>) -> Option<u64> {
    let sc = c.sc?;
    // Where the sensor's decoder puts the flags (`how` for openat2), tried first: several
    // checks of the default rules read them on every open, and a search by name costs a
    // comparison per argument. Any other layout (a replayed event) is searched.
    let at = match &*sc.name {
        "open" => 1,
        "openat" | "openat2" => 2,
        "creat" => usize::MAX,
        _ => return None,
    };
    let flags = match sc.args.get(at) {
        Some(a) if a.name == "flags" || a.name == "how" => Some(&a.value),
        _ => sc.arg("flags").or_else(|| sc.arg("how")),
    };
    let flags = flags
        .and_then(ArgValue::as_i64)
        // creat() is open(O_CREAT|O_WRONLY|O_TRUNC).
        .unwrap_or(if sc.name == "creat" { 0o1101 } else { 0 });
    Some(flags as u64)
}

fn open_exec(c: &Ctx<'_>) -> bool {
    const O_CREAT: u64 = 0o100;
    const O_TMPFILE: u64 = 0o20_000_000;
    let (Some(flags), Some(sc)) = (open_flags(c), c.sc) else {
        return false;
    };
    let mode = match sc.arg("mode") {
        Some(ArgValue::Mode(m)) => u64::from(*m),
        Some(v) => v.as_i64().unwrap_or(0) as u64,
        None => 0,
    };
    flags & (O_CREAT | O_TMPFILE) != 0 && mode & 0o111 != 0
}

/// An argument as `evt.arg` (text) or `evt.rawarg` (`raw`: a number when it has one) shows it.
fn arg_val(v: &ArgValue, raw: bool) -> Option<Val<'_>> {
    Some(match v {
        ArgValue::Int(n) | ArgValue::Fd(n) => Val::Num(*n),
        ArgValue::Id(n) => Val::Num(if *n == u32::MAX { -1 } else { i64::from(*n) }),
        ArgValue::Mode(m) if raw => Val::Num(i64::from(*m)),
        ArgValue::Mode(m) => Val::Str(Cow::Owned(format!("0{m:o}"))),
        ArgValue::Flags { raw: r, .. } if raw => Val::Num(*r as i64),
        ArgValue::Flags { raw, names } => Val::Flags { raw: *raw, names },
        ArgValue::Enum { raw: r, .. } if raw => Val::Num(*r),
        ArgValue::Enum { raw, name } => match name {
            Some(n) => Val::Str(Cow::Borrowed(n)),
            None => Val::Num(*raw),
        },
        ArgValue::Path { raw, .. } => Val::Str(Cow::Borrowed(raw)),
        ArgValue::Str(s) => Val::Str(Cow::Borrowed(s)),
        ArgValue::SockAddr(sa) => Val::Str(Cow::Owned(sa.to_string())),
        ArgValue::Argv(a) => Val::Str(Cow::Owned(a.join(" "))),
        ArgValue::Ptr(p) if raw => Val::Num(*p as i64),
        ArgValue::Ptr(p) => Val::Str(Cow::Owned(format!("{p:#x}"))),
    })
}

/// Falco's argument names for the kernel's (`syscalls:sys_enter_*`) where they differ.
pub(super) fn arg_aliases(name: &str) -> &'static [&'static str] {
    match name {
        "name" => &["filename", "pathname", "uname", "name_user"],
        "path" | "pathname" => &["pathname", "filename", "dir_name"],
        "filename" => &["filename", "pathname"],
        "dirfd" => &["dfd"],
        "target" => &["oldname"],
        "linkpath" => &["newname"],
        "oldpath" => &["oldname"],
        "newpath" => &["newname"],
        "olddir" | "olddirfd" => &["olddfd"],
        "newdir" | "newdirfd" | "linkdirfd" => &["newdfd"],
        "domain" => &["family"],
        "proto" => &["protocol"],
        "tuple" | "addr" => &["uservaddr", "addr", "upeer_sockaddr", "umyaddr"],
        "flags" => &["flags", "how", "unshare_flags", "clone_flags", "flag"],
        "nstype" => &["flags"],
        "fd" => &["fd", "fildes"],
        "size" => &["len", "count"],
        "dev" => &["dev_name"],
        "dir" => &["dir_name"],
        "args" => &["argv"],
        "exe" => &["filename"],
        _ => &[],
    }
}
