//! `fd.*`: the file descriptor an event creates or uses (Falco's `sinsp_filtercheck_fd`).
//!
//! What the event itself shows (an open's path, a connect's address, a socket's family and
//! type) comes first; the rest comes from the agent's file-descriptor table, whose entry for
//! the descriptor the event uses rides on the event ([`Enriched::fd`]): so `dup2(3, 0)` knows
//! fd 3 is a TCP socket to 10.0.0.5:4444, and a connect knows its socket's protocol. Derived
//! once per event into [`FdInfo`].
//!
//! [`Enriched::fd`]: osprey_model::event::Enriched::fd

use std::{borrow::Cow, net::IpAddr};

use osprey_model::{
    event::{ArgValue, KernelFile, KernelFileOf, SockAddr, Syscall},
    fd::FdEntry,
};

use super::{Ctx, FieldDef, FieldType as T, Val, why};

pub(super) const FIELDS: &[FieldDef] = &[
    FieldDef::new(
        "fd.num",
        T::Int64,
        "File descriptor the syscall created or used (-1 for a failed open).",
        |c, _| c.fd().num.map(Val::Num),
    ),
    FieldDef::new(
        "fd.name",
        T::Charbuf,
        "Full path for files, as the kernel resolved it: for an open, the file behind the \
         returned descriptor (symlinks, '..', /proc/self/root and directory descriptors \
         followed by the kernel); for a descriptor argument, its file (socket:[INODE], \
         pipe:[INODE] for those); for a relative path, joined to the directory the kernel \
         resolved; for other descriptors, from the fd table. The remote (connect) or local \
         (bind) endpoint ip:port for sockets, client->server for a socket the fd table knows \
         both ends of.",
        |c, _| c.fd_name().and_then(Val::str),
    ),
    FieldDef::new(
        "fd.nameraw",
        T::Charbuf,
        "The path string as the process gave it, before the kernel resolved it.",
        |c, _| c.fd().nameraw.and_then(Val::str),
    ),
    FieldDef::new(
        "fd.directory",
        T::Charbuf,
        "Directory of fd.name.",
        |c, _| c.file_name().and_then(|n| Val::str(directory(n))),
    ),
    FieldDef::new(
        "fd.filename",
        T::Charbuf,
        "File name of fd.name, without its directory.",
        |c, _| {
            c.file_name()
                .and_then(|n| Val::str(osprey_model::process::base(n)))
        },
    ),
    FieldDef::new(
        "fd.typechar",
        T::Charbuf,
        "Type as one character: f file, d directory, 4 ipv4, 6 ipv6, u unix, n netlink, s other socket, p pipe, m memfd, a anon_inode (eventfd, pidfd, io_uring...).",
        |c, _| {
            c.fd().typechar.map(|t| {
                Val::Str(match t {
                    'f' => Cow::Borrowed("f"),
                    'd' => Cow::Borrowed("d"),
                    '4' => Cow::Borrowed("4"),
                    '6' => Cow::Borrowed("6"),
                    'u' => Cow::Borrowed("u"),
                    'm' => Cow::Borrowed("m"),
                    'n' => Cow::Borrowed("n"),
                    's' => Cow::Borrowed("s"),
                    'p' => Cow::Borrowed("p"),
                    'a' => Cow::Borrowed("a"),
                    t => Cow::Owned(t.to_string()),
                })
            })
        },
    ),
    FieldDef::new(
        "fd.type",
        T::Charbuf,
        "Type: file, directory, ipv4, ipv6, unix, netlink, socket (another family), pipe, memfd, anon_inode; for any fd a syscall uses (dup2's old fd, connect's socket), from the fd table. Unset when not known.",
        |c, _| {
            c.fd().typechar.and_then(|t| {
                Val::str(match t {
                    'f' => "file",
                    'd' => "directory",
                    '4' => "ipv4",
                    '6' => "ipv6",
                    'u' => "unix",
                    'm' => "memfd",
                    'n' => "netlink",
                    's' => "socket",
                    'p' => "pipe",
                    'a' => "anon_inode",
                    _ => return None,
                })
            })
        },
    ),
    FieldDef::new(
        "fd.l4proto",
        T::Charbuf,
        "Layer-4 protocol of an IP socket (tcp, udp, raw), from socket() or the fd table.",
        |c, _| c.fd().l4proto.and_then(Val::str),
    ),
    FieldDef::new(
        "fd.sockfamily",
        T::Charbuf,
        "Socket family: ip or unix.",
        |c, _| match c.fd().typechar {
            Some('4' | '6') => Val::str("ip"),
            Some('u') => Val::str("unix"),
            _ => None,
        },
    ),
    FieldDef::new(
        "fd.ip",
        T::Ipaddr,
        "An IP of the connection (the one the event shows).",
        |c, _| ip(c.fd().any_end()),
    ),
    FieldDef::new("fd.cip", T::Ipaddr, "Client IP.", |c, _| {
        ip(c.fd().end(false))
    }),
    FieldDef::new("fd.sip", T::Ipaddr, "Server IP.", |c, _| {
        ip(c.fd().end(true))
    }),
    FieldDef::new("fd.lip", T::Ipaddr, "Local IP.", |c, _| ip(c.fd().local)),
    FieldDef::new("fd.rip", T::Ipaddr, "Remote IP.", |c, _| ip(c.fd().remote)),
    FieldDef::new(
        "fd.port",
        T::Port,
        "A port of the connection (the one the event shows).",
        |c, _| port(c.fd().any_end()),
    ),
    FieldDef::new("fd.cport", T::Port, "Client port.", |c, _| {
        port(c.fd().end(false))
    }),
    FieldDef::new("fd.sport", T::Port, "Server port.", |c, _| {
        port(c.fd().end(true))
    }),
    FieldDef::new("fd.lport", T::Port, "Local port.", |c, _| {
        port(c.fd().local)
    }),
    FieldDef::new("fd.rport", T::Port, "Remote port.", |c, _| {
        port(c.fd().remote)
    }),
    FieldDef::new(
        "fd.net",
        T::Ipnet,
        "fd.ip, compared with a network: fd.net = 10.0.0.0/8.",
        |c, _| ip(c.fd().any_end()),
    ),
    FieldDef::new(
        "fd.cnet",
        T::Ipnet,
        "fd.cip, compared with a network.",
        |c, _| ip(c.fd().end(false)),
    ),
    FieldDef::new(
        "fd.snet",
        T::Ipnet,
        "fd.sip, compared with a network.",
        |c, _| ip(c.fd().end(true)),
    ),
    FieldDef::new(
        "fd.lnet",
        T::Ipnet,
        "fd.lip, compared with a network.",
        |c, _| ip(c.fd().local),
    ),
    FieldDef::new(
        "fd.rnet",
        T::Ipnet,
        "fd.rip, compared with a network.",
        |c, _| ip(c.fd().remote),
    ),
    FieldDef::new(
        "fd.sip.name",
        T::Charbuf,
        "DNS name of the server IP, among the names the loaded rules compare fd.sip.name with \
         (the agent resolves those names and refreshes them, as Falco does; unset in replays).",
        |c, _| {
            let (ip, _) = c.fd().end(true)?;
            c.svc
                .dns
                .name_of(ip)
                .map(|n| Val::Str(Cow::Owned(n.to_string())))
        },
    ),
    FieldDef::unset(
        "fd.cip.name",
        T::Charbuf,
        "DNS name of the client IP.",
        why::DNS,
    ),
    FieldDef::unset(
        "fd.lip.name",
        T::Charbuf,
        "DNS name of the local IP.",
        why::DNS,
    ),
    FieldDef::unset(
        "fd.rip.name",
        T::Charbuf,
        "DNS name of the remote IP.",
        why::DNS,
    ),
    FieldDef::new(
        "fd.connected",
        T::Bool,
        "The socket is connected (its remote end is known).",
        |c, _| {
            let fd = c.fd();
            matches!(fd.typechar, Some('4' | '6')).then_some(Val::Bool(fd.remote.is_some()))
        },
    ),
    FieldDef::unset(
        "fd.name_changed",
        T::Bool,
        "The fd's name changed in this event.",
        why::FD_TABLE,
    ),
    FieldDef::new(
        "fd.is_server",
        T::Bool,
        "The process is the server of the connection (it bound, listened or accepted).",
        |c, _| {
            let fd = c.fd();
            matches!(fd.typechar, Some('4' | '6' | 'u')).then_some(Val::Bool(fd.local_is_server))
        },
    ),
    FieldDef::new(
        "fd.from_procfs",
        T::Bool,
        "Osprey: what fd.* shows of this descriptor was read from /proc/PID/fd (a process older than the agent, or a descriptor made by a syscall the sensor does not see) rather than followed from the syscall that made it.",
        |c, _| c.en.fd.as_ref().map(|e| Val::Bool(e.from_procfs)),
    ),
    FieldDef::unset("fd.ino", T::Int64, "Inode of the file.", why::FD_TABLE),
    FieldDef::unset("fd.dev", T::Uint32, "Device of the file.", why::FD_TABLE),
];

fn ip<'a>(end: Option<(IpAddr, u16)>) -> Option<Val<'a>> {
    end.map(|(ip, _)| Val::Ip(ip))
}

fn port<'a>(end: Option<(IpAddr, u16)>) -> Option<Val<'a>> {
    end.map(|(_, p)| Val::Num(i64::from(p)))
}

/// The file descriptor an event created or used, as far as the event alone shows it.
#[derive(Default)]
pub(super) struct FdInfo<'a> {
    num: Option<i64>,
    name: Option<Cow<'a, str>>,
    nameraw: Option<&'a str>,
    typechar: Option<char>,
    l4proto: Option<&'static str>,
    local: Option<(IpAddr, u16)>,
    remote: Option<(IpAddr, u16)>,
    /// A socket's address, which is its `fd.name` as text (formatted only when asked for:
    /// rules on connects mostly ask for the IP and port).
    sock: Option<&'a SockAddr>,
    /// Whether the local end is the server (bind/accept) rather than the client (connect).
    local_is_server: bool,
}

impl<'a> FdInfo<'a> {
    /// Fills what the event did not show from the fd table's entry for the descriptor.
    fn fill_from(&mut self, e: &'a FdEntry) {
        let event_named_it = self.typechar.is_some();
        if self.num.is_none() {
            self.num = Some(e.num);
        }
        // An open's flags say file or directory; /proc (or the table) may know better only
        // when the event said nothing.
        if !event_named_it {
            self.typechar = Some(e.kind.typechar());
            self.local_is_server = e.local_is_server;
        }
        if self.l4proto.is_none() && self.typechar.is_some_and(|t| matches!(t, '4' | '6')) {
            self.l4proto = e.l4proto.map(|p| p.as_str());
        }
        if self.sock.is_some() || self.name.is_some() {
            // The event named it (an open's path, a connect's address): keep that name, take
            // the other end from the table.
            if e.kind.is_ip() {
                self.local = self.local.or(e.local);
                self.remote = self.remote.or(e.remote);
            }
            return;
        }
        if e.kind.is_ip() {
            self.local = self.local.or(e.local);
            self.remote = self.remote.or(e.remote);
            let name = e.name();
            if !name.is_empty() {
                self.name = Some(Cow::Owned(name));
            }
        } else if !e.path.is_empty() {
            self.name = Some(Cow::Borrowed(&e.path));
        }
    }

    /// The end the event shows, remote first (`fd.ip`, `fd.port`).
    fn any_end(&self) -> Option<(IpAddr, u16)> {
        self.remote.or(self.local)
    }

    /// The server's end (`fd.sip`) or the client's (`fd.cip`).
    fn end(&self, server: bool) -> Option<(IpAddr, u16)> {
        if server == self.local_is_server {
            self.local
        } else {
            self.remote
        }
    }
}

impl<'a> Ctx<'a> {
    fn fd(&self) -> &'a FdInfo<'a> {
        self.cache.fd.get_or_init(|| {
            let mut fd = self.sc.map(fd_info).unwrap_or_default();
            if let Some(e) = &self.en.fd {
                fd.fill_from(e);
            }
            fd
        })
    }

    /// `fd.name`.
    fn fd_name(&self) -> Option<&'a str> {
        let fd = self.fd();
        match (&fd.name, fd.sock) {
            (Some(n), _) => Some(&**n),
            (None, Some(sa)) => Some(self.cache.sock_name.get_or_init(|| sa.to_string())),
            (None, None) => None,
        }
    }

    /// `fd.name` when the fd is a file or directory: what `fd.directory` and `fd.filename` split.
    fn file_name(&self) -> Option<&'a str> {
        if !matches!(self.fd().typechar, Some('f' | 'd')) {
            return None;
        }
        self.fd_name()
    }
}

/// `fd.directory` of a file named `name`: up to its last `/`, `/` for a file right under the
/// root, `.` for a name without a `/`.
#[inline]
pub(crate) fn directory(name: &str) -> &str {
    match name.bytes().rposition(|b| b == b'/') {
        Some(0) => "/",
        Some(i) => &name[..i],
        None => ".",
    }
}

fn flag_set(v: Option<&ArgValue>, name: &str) -> bool {
    matches!(v, Some(ArgValue::Flags { names, .. }) if names.iter().any(|n| n == name))
}

fn sock_end(sa: &SockAddr) -> Option<(IpAddr, u16)> {
    match sa {
        SockAddr::Inet { ip, port } => Some((*ip, *port)),
        _ => None,
    }
}

fn sock_typechar(sa: &SockAddr) -> Option<char> {
    match sa {
        SockAddr::Inet {
            ip: IpAddr::V4(_), ..
        } => Some('4'),
        SockAddr::Inet {
            ip: IpAddr::V6(_), ..
        } => Some('6'),
        SockAddr::Unix { .. } => Some('u'),
        SockAddr::Other { .. } => None,
    }
}

/// What the event alone says about the fd it creates or uses. There is no fd table yet, so
/// a connect() knows its remote end but not the socket's protocol or local end.
fn fd_info(sc: &Syscall) -> FdInfo<'_> {
    let mut fd = FdInfo::default();
    let ret_fd = (sc.ret >= 0).then_some(sc.ret);
    match &*sc.name {
        "open" | "openat" | "openat2" | "creat" => {
            fd.num = Some(ret_fd.unwrap_or(-1));
            let v = sc.arg("filename").or_else(|| sc.arg("pathname"));
            if let Some(ArgValue::Path { raw, resolved }) = v {
                // The marker says the name is cut. A file the kernel walked is named whole
                // whatever the path string's length: a path of 4,095 bytes (PATH_MAX with its
                // NUL, which fills the capture) to /etc/shadow is /etc/shadow, or padding the
                // string would slip past every rule that compares names.
                let walked = sc.file.as_ref().is_some_and(|f| {
                    f.of == KernelFileOf::Returned && f.file_path().is_some() && !f.truncated
                });
                let cut = !walked && v.is_some_and(|v| sc.is_truncated_arg(v));
                fd.nameraw = Some(raw);
                let name = resolved.as_deref().unwrap_or(raw.as_str());
                fd.name = Some(if cut {
                    Cow::Owned(format!("{name}{}", osprey_model::event::TRUNCATED_MARKER))
                } else {
                    Cow::Borrowed(name)
                });
            }
            let flags = sc.arg("flags").or_else(|| sc.arg("how"));
            fd.typechar = Some(if flag_set(flags, "O_DIRECTORY") {
                'd'
            } else {
                'f'
            });
        }
        "connect" | "sendto" | "sendmsg" | "bind" | "accept" | "accept4" => {
            let (arg, local) = match &*sc.name {
                "connect" => ("uservaddr", false),
                "bind" => ("umyaddr", true),
                "accept" | "accept4" => ("upeer_sockaddr", false),
                _ => ("addr", false),
            };
            fd.num = if sc.name.starts_with("accept") {
                ret_fd
            } else {
                sc.arg("fd").and_then(ArgValue::as_i64)
            };
            fd.local_is_server = local || sc.name.starts_with("accept");
            if let Some(ArgValue::SockAddr(sa)) = sc.arg(arg) {
                fd.typechar = sock_typechar(sa);
                let end = sock_end(sa);
                if local {
                    fd.local = end;
                } else {
                    fd.remote = end;
                }
                fd.sock = Some(sa);
            }
        }
        "socket" => {
            fd.num = Some(ret_fd.unwrap_or(-1));
            if let Some(ArgValue::Enum { name: Some(n), .. }) = sc.arg("family") {
                fd.typechar = match &**n {
                    "AF_INET" => Some('4'),
                    "AF_INET6" => Some('6'),
                    "AF_UNIX" | "AF_LOCAL" => Some('u'),
                    "AF_NETLINK" => Some('n'),
                    _ => None,
                };
            }
            let ty = sc.arg("type");
            fd.l4proto = if flag_set(ty, "SOCK_STREAM") {
                Some("tcp")
            } else if flag_set(ty, "SOCK_DGRAM") {
                Some("udp")
            } else if flag_set(ty, "SOCK_RAW") {
                Some("raw")
            } else {
                None
            };
            if matches!(fd.typechar, Some('u' | 'n')) {
                fd.l4proto = None;
            }
        }
        "memfd_create" => {
            fd.num = Some(ret_fd.unwrap_or(-1));
            fd.typechar = Some('m');
            if let Some(ArgValue::Str(n)) = sc.arg("uname") {
                fd.name = Some(Cow::Owned(format!("memfd:{n}")));
            }
        }
        "dup" | "dup2" | "dup3" => fd.num = ret_fd,
        _ => {
            fd.num = sc.arg("fd").and_then(ArgValue::as_i64);
        }
    }
    // The file behind the descriptor `fd.num` names, as the kernel holds it: the syscall's
    // descriptor argument (fchmod, ftruncate, fsetxattr, fchown...), or the descriptor it
    // returned (a dup's). A socket's name and family are not in its file (the fd table has
    // its addresses); a pipe's and a file's are.
    let of_num = |f: &&KernelFile| match f.of {
        KernelFileOf::FdArg => true,
        KernelFileOf::Returned => ret_fd.is_some() && fd.num == ret_fd,
        _ => false,
    };
    if let Some(f) = sc.file.as_ref().filter(|f| of_num(f) && !f.is_socket()) {
        if fd.name.is_none() {
            fd.name = Some(Cow::Borrowed(f.path.as_str()));
        }
        if fd.typechar.is_none() {
            fd.typechar = Some(if f.is_pipe() { 'p' } else { 'f' });
        }
    }
    fd
}
