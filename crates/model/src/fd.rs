//! What the agent's file-descriptor table knows about one descriptor of a process: its kind,
//! its name (a path, or a socket's endpoints) and, for sockets, the protocol and both ends.
//!
//! The table lives in the agent (it watches open, socket, accept, connect, bind, dup, close,
//! exec and fork, and reads `/proc/PID/fd` for what it did not see); an event that uses an fd
//! carries the table's entry for it in [`crate::event::Enriched::fd`], so that the engine's
//! `fd.*` fields are the same for `dup2(3, 0)` as for the `socket()` that made fd 3.

use std::{net::IpAddr, sync::Arc};

use serde::{Deserialize, Serialize};

/// The kind of object behind a descriptor (Falco's `fd.type`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FdKind {
    File,
    Directory,
    Ipv4,
    Ipv6,
    Unix,
    Netlink,
    /// Another socket family (AF_PACKET, AF_VSOCK, ...).
    Socket,
    Pipe,
    Memfd,
    /// eventfd, signalfd, timerfd, inotify, epoll, pidfd, io_uring, bpf, userfaultfd...
    /// (`anon_inode:[name]`; the name is in [`FdEntry::name`]).
    AnonInode,
}

impl FdKind {
    /// Falco's `fd.type` text.
    pub fn as_str(self) -> &'static str {
        match self {
            FdKind::File => "file",
            FdKind::Directory => "directory",
            FdKind::Ipv4 => "ipv4",
            FdKind::Ipv6 => "ipv6",
            FdKind::Unix => "unix",
            FdKind::Netlink => "netlink",
            FdKind::Socket => "socket",
            FdKind::Pipe => "pipe",
            FdKind::Memfd => "memfd",
            FdKind::AnonInode => "anon_inode",
        }
    }

    /// Falco's `fd.typechar`.
    pub fn typechar(self) -> char {
        match self {
            FdKind::File => 'f',
            FdKind::Directory => 'd',
            FdKind::Ipv4 => '4',
            FdKind::Ipv6 => '6',
            FdKind::Unix => 'u',
            FdKind::Netlink => 'n',
            FdKind::Socket => 's',
            FdKind::Pipe => 'p',
            FdKind::Memfd => 'm',
            FdKind::AnonInode => 'a',
        }
    }

    /// The kind of a socket of address family `family` (`AF_INET`...).
    pub fn of_family(family: i64) -> Self {
        match family {
            1 => FdKind::Unix,
            2 => FdKind::Ipv4,
            10 => FdKind::Ipv6,
            16 => FdKind::Netlink,
            _ => FdKind::Socket,
        }
    }

    pub fn is_ip(self) -> bool {
        matches!(self, FdKind::Ipv4 | FdKind::Ipv6)
    }

    /// Any socket family, including one not told apart ([`FdKind::Socket`]).
    pub fn is_socket(self) -> bool {
        matches!(
            self,
            FdKind::Ipv4 | FdKind::Ipv6 | FdKind::Unix | FdKind::Netlink | FdKind::Socket
        )
    }
}

/// Layer-4 protocol of an IP socket.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum L4Proto {
    Tcp,
    Udp,
    Raw,
}

impl L4Proto {
    pub fn as_str(self) -> &'static str {
        match self {
            L4Proto::Tcp => "tcp",
            L4Proto::Udp => "udp",
            L4Proto::Raw => "raw",
        }
    }
}

/// One descriptor of one process, as the table knows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FdEntry {
    pub num: i64,
    pub kind: FdKind,
    /// The path for files and directories, `memfd:NAME`, the socket path for unix sockets,
    /// `pipe:[INODE]`, `anon_inode:[eventfd]`...; empty when not known. IP sockets show their
    /// ends instead (see [`FdEntry::name`]). Shared: every event on the descriptor carries
    /// the entry, and copying it must not copy the path.
    #[serde(default, skip_serializing_if = "str_is_empty")]
    pub path: Arc<str>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub l4proto: Option<L4Proto>,
    /// Local address and port of a socket, once bound, accepted or read from /proc.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub local: Option<(IpAddr, u16)>,
    /// Remote address and port of a socket, once connected or accepted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remote: Option<(IpAddr, u16)>,
    /// The local end is the server's (bind, listen, accept) rather than the client's.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub local_is_server: bool,
    /// Closed at exec (`O_CLOEXEC`, `SOCK_CLOEXEC`, `F_DUPFD_CLOEXEC`, `dup3(O_CLOEXEC)`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub cloexec: bool,
    /// For a pidfd: the process it refers to (`pidfd_getfd` takes descriptors out of it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_pid: Option<u32>,
    /// Learned from `/proc/PID/fd` rather than from the syscall that made it.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub from_procfs: bool,
}

fn str_is_empty(s: &Arc<str>) -> bool {
    s.is_empty()
}

impl FdEntry {
    pub fn new(num: i64, kind: FdKind) -> Self {
        FdEntry {
            num,
            kind,
            path: Arc::default(),
            l4proto: None,
            local: None,
            remote: None,
            local_is_server: false,
            cloexec: false,
            target_pid: None,
            from_procfs: false,
        }
    }

    /// Falco's `fd.name`: the path, or `client_ip:port->server_ip:port` for a connected IP
    /// socket (the known end alone otherwise).
    pub fn name(&self) -> String {
        if !self.kind.is_ip() {
            return self.path.to_string();
        }
        let fmt = |(ip, port): (IpAddr, u16)| match ip {
            IpAddr::V4(ip) => format!("{ip}:{port}"),
            IpAddr::V6(ip) => format!("[{ip}]:{port}"),
        };
        let (client, server) = if self.local_is_server {
            (self.remote, self.local)
        } else {
            (self.local, self.remote)
        };
        match (client, server) {
            (Some(c), Some(s)) => format!("{}->{}", fmt(c), fmt(s)),
            (None, Some(e)) | (Some(e), None) => fmt(e),
            (None, None) => String::new(),
        }
    }
}
