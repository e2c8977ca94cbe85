//! The field catalog (`osprey fields`) and field extraction from an [`Enriched`] event.
//!
//! Names follow Falco's (`libs:userspace/libsinsp/sinsp_filtercheck_*.cpp`). Rules reference a
//! field by name once, at load time; evaluation works on [`FieldRef`]s holding a [`FieldId`].
//! Fields that Osprey defines but cannot derive yet (they need an fd table, capabilities,
//! overlayfs or the container runtime) are in the catalog so rules load, and read as unset.

use std::{borrow::Cow, cell::OnceCell, fmt, net::IpAddr, sync::Arc};

use serde::Serialize;

use osprey_model::{
    ContainerInfo, Process,
    event::{ArgValue, Enriched, EventKind, SockAddr, Syscall},
};

use crate::env::{ContainerLookup, UserResolver};

/// The type of a field, as `osprey fields` shows it (Falco's type names).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum FieldType {
    Charbuf,
    Int64,
    Uint64,
    Uint32,
    Port,
    Bool,
    Ipaddr,
    Ipnet,
    Reltime,
    Abstime,
    /// An event argument: text, flags or a number depending on the syscall.
    Dynamic,
}

impl FieldType {
    pub fn as_str(self) -> &'static str {
        match self {
            FieldType::Charbuf => "CHARBUF",
            FieldType::Int64 => "INT64",
            FieldType::Uint64 => "UINT64",
            FieldType::Uint32 => "UINT32",
            FieldType::Port => "PORT",
            FieldType::Bool => "BOOL",
            FieldType::Ipaddr => "IPADDR",
            FieldType::Ipnet => "IPNET",
            FieldType::Reltime => "RELTIME",
            FieldType::Abstime => "ABSTIME",
            FieldType::Dynamic => "DYNAMIC",
        }
    }

    pub fn is_numeric(self) -> bool {
        matches!(
            self,
            FieldType::Int64
                | FieldType::Uint64
                | FieldType::Uint32
                | FieldType::Port
                | FieldType::Reltime
                | FieldType::Abstime
        )
    }
}

/// What a field takes between brackets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ArgSpec {
    None,
    /// `proc.aname[N]`: an optional ancestor index.
    Index,
    /// `evt.arg.NAME`, `evt.arg[NAME]` or `evt.arg[N]`.
    Name,
    /// `proc.env[NAME]`, `container.label[KEY]`: a required key.
    Key,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FieldId {
    ProcName,
    ProcExe,
    ProcExepath,
    ProcCmdline,
    ProcArgs,
    ProcPid,
    ProcVpid,
    ProcVpgid,
    ProcPpid,
    ProcPname,
    ProcPexe,
    ProcPexepath,
    ProcPcmdline,
    ProcAname,
    ProcAexe,
    ProcAexepath,
    ProcApid,
    ProcAcmdline,
    ProcTty,
    ProcCwd,
    ProcDuration,
    ProcIsExeFromMemfd,
    ProcIsExeUpperLayer,
    ThreadTid,
    ThreadCapEffective,
    ThreadCapPermitted,
    UserUid,
    UserName,
    UserLoginuid,
    UserLoginname,
    GroupGid,
    GroupName,
    EvtType,
    EvtNum,
    EvtTime,
    EvtTimeS,
    EvtTimeIso8601,
    EvtDatetime,
    EvtRawtime,
    EvtRes,
    EvtRawres,
    EvtFailed,
    EvtArg,
    EvtRawarg,
    EvtArgs,
    EvtDir,
    EvtIsOpenRead,
    EvtIsOpenWrite,
    EvtIsOpenExec,
    EvtHostname,
    EvtSource,
    EvtLatency,
    FdNum,
    FdName,
    FdNameraw,
    FdDirectory,
    FdFilename,
    FdTypechar,
    FdType,
    FdL4proto,
    FdSockfamily,
    FdIp,
    FdCip,
    FdSip,
    FdLip,
    FdRip,
    FdPort,
    FdCport,
    FdSport,
    FdLport,
    FdRport,
    FdNet,
    FdCnet,
    FdSnet,
    FdLnet,
    FdRnet,
    ContainerId,
    ContainerFullId,
    ContainerName,
    ContainerImage,
    ContainerImageRepository,
    ContainerImageTag,
    ContainerImageDigest,
    ContainerType,
    ContainerPrivileged,
    ContainerStartTs,
    K8sNsName,
    K8sPodName,
    K8sPodUid,
    K8sPodLabels,
    K8sPodLabel,
    /// Defined so rules load; Osprey cannot derive it yet.
    Unavailable,
}

/// One entry of the catalog.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct FieldDef {
    pub name: &'static str,
    #[serde(skip)]
    pub id: FieldId,
    #[serde(rename = "type")]
    pub ty: FieldType,
    #[serde(skip)]
    pub arg: ArgSpec,
    pub desc: &'static str,
    /// Why the field is always unset for now, if it is.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unavailable: Option<&'static str>,
    /// Deprecated by Falco (warning `LOAD_DEPRECATED_ITEM`).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub deprecated: bool,
}

const fn f(name: &'static str, id: FieldId, ty: FieldType, desc: &'static str) -> FieldDef {
    FieldDef {
        name,
        id,
        ty,
        arg: ArgSpec::None,
        desc,
        unavailable: None,
        deprecated: false,
    }
}

const fn fa(
    name: &'static str,
    id: FieldId,
    ty: FieldType,
    arg: ArgSpec,
    desc: &'static str,
) -> FieldDef {
    FieldDef {
        name,
        id,
        ty,
        arg,
        desc,
        unavailable: None,
        deprecated: false,
    }
}

const fn na(name: &'static str, ty: FieldType, desc: &'static str, why: &'static str) -> FieldDef {
    FieldDef {
        name,
        id: FieldId::Unavailable,
        ty,
        arg: ArgSpec::None,
        desc,
        unavailable: Some(why),
        deprecated: false,
    }
}

const FD_TABLE: &str = "needs a file-descriptor table";
const CAPS: &str = "only the effective and permitted sets are captured";
const CONTAINER: &str = "not read from the container runtime yet";
const NOT_CAPTURED: &str = "not captured by the sensor yet";
const DNS: &str = "needs DNS name tracking";

use FieldId as I;
use FieldType as T;

/// Every field Osprey knows, in `osprey fields` order.
pub static CATALOG: &[FieldDef] = &[
    // evt.*
    f(
        "evt.type",
        I::EvtType,
        T::Charbuf,
        "Event type: the syscall name (openat, execve...), or procexit.",
    ),
    f(
        "evt.num",
        I::EvtNum,
        T::Uint64,
        "Event number, counted by the engine from 1.",
    ),
    f(
        "evt.time",
        I::EvtTime,
        T::Abstime,
        "Event time; text HH:MM:SS.nnnnnnnnn (UTC), number in JSON.",
    ),
    f(
        "evt.time.s",
        I::EvtTimeS,
        T::Charbuf,
        "Event time as HH:MM:SS (UTC).",
    ),
    f(
        "evt.time.iso8601",
        I::EvtTimeIso8601,
        T::Charbuf,
        "Event time in ISO 8601 with nanoseconds (UTC).",
    ),
    f(
        "evt.datetime",
        I::EvtDatetime,
        T::Charbuf,
        "Event date and time, YYYY-MM-DD HH:MM:SS.nnnnnnnnn (UTC).",
    ),
    f(
        "evt.rawtime",
        I::EvtRawtime,
        T::Abstime,
        "Event time in nanoseconds since the epoch.",
    ),
    f(
        "evt.res",
        I::EvtRes,
        T::Charbuf,
        "Result: SUCCESS, or the errno name (ENOENT...).",
    ),
    f(
        "evt.rawres",
        I::EvtRawres,
        T::Int64,
        "Return value of the syscall, as a number.",
    ),
    f(
        "evt.failed",
        I::EvtFailed,
        T::Bool,
        "true when the syscall returned an error.",
    ),
    fa(
        "evt.arg",
        I::EvtArg,
        T::Dynamic,
        ArgSpec::Name,
        "Argument by name (evt.arg.flags, evt.arg[flags]) or position (evt.arg[0]), as text; flags compare by name with contains.",
    ),
    fa(
        "evt.rawarg",
        I::EvtRawarg,
        T::Dynamic,
        ArgSpec::Name,
        "Argument by name, as a number when it has one.",
    ),
    f(
        "evt.args",
        I::EvtArgs,
        T::Charbuf,
        "All arguments as name=value text.",
    ),
    FieldDef {
        deprecated: true,
        ..f(
            "evt.dir",
            I::EvtDir,
            T::Charbuf,
            "Deprecated: always '<' (Osprey only sees completed syscalls).",
        )
    },
    f(
        "evt.is_open_read",
        I::EvtIsOpenRead,
        T::Bool,
        "For open syscalls: opened for reading.",
    ),
    f(
        "evt.is_open_write",
        I::EvtIsOpenWrite,
        T::Bool,
        "For open syscalls: opened for writing.",
    ),
    f(
        "evt.is_open_exec",
        I::EvtIsOpenExec,
        T::Bool,
        "For open syscalls: a file created with execute permission.",
    ),
    f(
        "evt.hostname",
        I::EvtHostname,
        T::Charbuf,
        "Host name of the node.",
    ),
    f(
        "evt.source",
        I::EvtSource,
        T::Charbuf,
        "Event source: syscall.",
    ),
    FieldDef {
        deprecated: true,
        ..f(
            "evt.latency",
            I::EvtLatency,
            T::Reltime,
            "Deprecated: nanoseconds between syscall entry and exit.",
        )
    },
    // proc.*
    f(
        "proc.name",
        I::ProcName,
        T::Charbuf,
        "Process name (task->comm, at most 15 characters).",
    ),
    f(
        "proc.exe",
        I::ProcExe,
        T::Charbuf,
        "argv[0] of the process.",
    ),
    f(
        "proc.exepath",
        I::ProcExepath,
        T::Charbuf,
        "Full path of the executable, as exec resolved it.",
    ),
    f(
        "proc.cmdline",
        I::ProcCmdline,
        T::Charbuf,
        "proc.name followed by the arguments.",
    ),
    f(
        "proc.args",
        I::ProcArgs,
        T::Charbuf,
        "Arguments after argv[0], joined by spaces.",
    ),
    f(
        "proc.pid",
        I::ProcPid,
        T::Int64,
        "Process id (thread group id).",
    ),
    f(
        "proc.vpid",
        I::ProcVpid,
        T::Int64,
        "Process id inside its pid namespace.",
    ),
    f("proc.ppid", I::ProcPpid, T::Int64, "Parent process id."),
    f(
        "proc.pname",
        I::ProcPname,
        T::Charbuf,
        "Parent process name.",
    ),
    f(
        "proc.pexe",
        I::ProcPexe,
        T::Charbuf,
        "argv[0] of the parent.",
    ),
    f(
        "proc.pexepath",
        I::ProcPexepath,
        T::Charbuf,
        "Executable path of the parent.",
    ),
    f(
        "proc.pcmdline",
        I::ProcPcmdline,
        T::Charbuf,
        "Command line of the parent.",
    ),
    fa(
        "proc.aname",
        I::ProcAname,
        T::Charbuf,
        ArgSpec::Index,
        "Name of ancestor N (1 = parent, 0 = the process); without [N], matches any ancestor.",
    ),
    fa(
        "proc.aexe",
        I::ProcAexe,
        T::Charbuf,
        ArgSpec::Index,
        "argv[0] of ancestor N; without [N], any ancestor.",
    ),
    fa(
        "proc.aexepath",
        I::ProcAexepath,
        T::Charbuf,
        ArgSpec::Index,
        "Executable path of ancestor N; without [N], any ancestor.",
    ),
    fa(
        "proc.apid",
        I::ProcApid,
        T::Int64,
        ArgSpec::Index,
        "Pid of ancestor N; without [N], any ancestor.",
    ),
    fa(
        "proc.acmdline",
        I::ProcAcmdline,
        T::Charbuf,
        ArgSpec::Index,
        "Command line of ancestor N; without [N], any ancestor.",
    ),
    f(
        "proc.tty",
        I::ProcTty,
        T::Uint32,
        "Controlling terminal device number, 0 for none.",
    ),
    f(
        "proc.cwd",
        I::ProcCwd,
        T::Charbuf,
        "Working directory, with a trailing '/'.",
    ),
    f(
        "proc.duration",
        I::ProcDuration,
        T::Reltime,
        "Nanoseconds since the process started.",
    ),
    f(
        "proc.is_exe_from_memfd",
        I::ProcIsExeFromMemfd,
        T::Bool,
        "The executable is a memfd (fileless execution).",
    ),
    f(
        "proc.is_exe_upper_layer",
        I::ProcIsExeUpperLayer,
        T::Bool,
        "The executable is in the overlayfs upper layer: written or copied up after the \
         container started, not part of its image (drift). False off overlayfs.",
    ),
    na(
        "proc.is_exe_writable",
        T::Bool,
        "The executable is writable by the process's user.",
        NOT_CAPTURED,
    ),
    na(
        "proc.exe_ino",
        T::Int64,
        "Inode of the executable.",
        NOT_CAPTURED,
    ),
    na(
        "proc.exe_ino.ctime",
        T::Abstime,
        "ctime of the executable's inode.",
        NOT_CAPTURED,
    ),
    na(
        "proc.exe_ino.mtime",
        T::Abstime,
        "mtime of the executable's inode.",
        NOT_CAPTURED,
    ),
    na(
        "proc.exe_ino.ctime_duration_proc_start",
        T::Reltime,
        "Time between the exe's ctime and the process start.",
        NOT_CAPTURED,
    ),
    FieldDef {
        arg: ArgSpec::Key,
        ..na(
            "proc.env",
            T::Charbuf,
            "Environment (proc.env[NAME] for one variable).",
            NOT_CAPTURED,
        )
    },
    na("proc.sid", T::Int64, "Session id.", NOT_CAPTURED),
    na(
        "proc.sname",
        T::Charbuf,
        "Name of the session leader.",
        NOT_CAPTURED,
    ),
    f(
        "proc.vpgid",
        I::ProcVpgid,
        T::Int64,
        "Process group id inside the process's pid namespace (read from /proc when a rule or \
         output asks for it; unset once the process is gone).",
    ),
    na(
        "proc.vpgid.name",
        T::Charbuf,
        "Name of the process group leader.",
        NOT_CAPTURED,
    ),
    na(
        "proc.vpgid.exe",
        T::Charbuf,
        "argv[0] of the process group leader.",
        NOT_CAPTURED,
    ),
    na(
        "proc.is_vpgid_leader",
        T::Bool,
        "The process leads its process group.",
        NOT_CAPTURED,
    ),
    na(
        "proc.loginshellid",
        T::Int64,
        "Pid of the outermost shell.",
        NOT_CAPTURED,
    ),
    na(
        "proc.is_container_healthcheck",
        T::Bool,
        "The process is a container health check.",
        CONTAINER,
    ),
    na(
        "proc.is_container_liveness_probe",
        T::Bool,
        "The process is a liveness probe.",
        CONTAINER,
    ),
    na(
        "proc.is_container_readiness_probe",
        T::Bool,
        "The process is a readiness probe.",
        CONTAINER,
    ),
    // thread.*
    f("thread.tid", I::ThreadTid, T::Int64, "Thread id."),
    na(
        "thread.vtid",
        T::Int64,
        "Thread id inside the pid namespace.",
        NOT_CAPTURED,
    ),
    f(
        "thread.cap_effective",
        I::ThreadCapEffective,
        T::Charbuf,
        "Effective capabilities, space-separated names (CAP_CHOWN CAP_SYS_ADMIN ...).",
    ),
    f(
        "thread.cap_permitted",
        I::ThreadCapPermitted,
        T::Charbuf,
        "Permitted capabilities, space-separated names.",
    ),
    na(
        "thread.cap_inheritable",
        T::Charbuf,
        "Inheritable capabilities.",
        CAPS,
    ),
    // user.*, group.*
    f("user.uid", I::UserUid, T::Uint32, "Effective user id."),
    f(
        "user.name",
        I::UserName,
        T::Charbuf,
        "Name of the effective user (from the user database).",
    ),
    f(
        "user.loginuid",
        I::UserLoginuid,
        T::Int64,
        "Audit login uid, -1 when unset.",
    ),
    f(
        "user.loginname",
        I::UserLoginname,
        T::Charbuf,
        "Name of the audit login user.",
    ),
    na(
        "user.homedir",
        T::Charbuf,
        "Home directory of the user.",
        NOT_CAPTURED,
    ),
    na(
        "user.shell",
        T::Charbuf,
        "Login shell of the user.",
        NOT_CAPTURED,
    ),
    f("group.gid", I::GroupGid, T::Uint32, "Effective group id."),
    f(
        "group.name",
        I::GroupName,
        T::Charbuf,
        "Name of the effective group.",
    ),
    // fd.*
    f(
        "fd.num",
        I::FdNum,
        T::Int64,
        "File descriptor the syscall created or used (-1 for a failed open).",
    ),
    f(
        "fd.name",
        I::FdName,
        T::Charbuf,
        "Full path for files; the remote (connect) or local (bind) endpoint ip:port for sockets.",
    ),
    f(
        "fd.nameraw",
        I::FdNameraw,
        T::Charbuf,
        "The path as the process gave it, before resolution.",
    ),
    f(
        "fd.directory",
        I::FdDirectory,
        T::Charbuf,
        "Directory of fd.name.",
    ),
    f(
        "fd.filename",
        I::FdFilename,
        T::Charbuf,
        "File name of fd.name, without its directory.",
    ),
    f(
        "fd.typechar",
        I::FdTypechar,
        T::Charbuf,
        "Type as one character: f file, d directory, 4 ipv4, 6 ipv6, u unix, m memfd.",
    ),
    f(
        "fd.type",
        I::FdType,
        T::Charbuf,
        "Type: file, directory, ipv4, ipv6, unix, memfd, netlink.",
    ),
    f(
        "fd.l4proto",
        I::FdL4proto,
        T::Charbuf,
        "Layer-4 protocol (tcp, udp, raw); known at socket(), not at connect() yet.",
    ),
    f(
        "fd.sockfamily",
        I::FdSockfamily,
        T::Charbuf,
        "Socket family: ip or unix.",
    ),
    f(
        "fd.ip",
        I::FdIp,
        T::Ipaddr,
        "An IP of the connection (the one the event shows).",
    ),
    f("fd.cip", I::FdCip, T::Ipaddr, "Client IP."),
    f("fd.sip", I::FdSip, T::Ipaddr, "Server IP."),
    f("fd.lip", I::FdLip, T::Ipaddr, "Local IP."),
    f("fd.rip", I::FdRip, T::Ipaddr, "Remote IP."),
    f(
        "fd.port",
        I::FdPort,
        T::Port,
        "A port of the connection (the one the event shows).",
    ),
    f("fd.cport", I::FdCport, T::Port, "Client port."),
    f("fd.sport", I::FdSport, T::Port, "Server port."),
    f("fd.lport", I::FdLport, T::Port, "Local port."),
    f("fd.rport", I::FdRport, T::Port, "Remote port."),
    f(
        "fd.net",
        I::FdNet,
        T::Ipnet,
        "fd.ip, compared with a network: fd.net = 10.0.0.0/8.",
    ),
    f(
        "fd.cnet",
        I::FdCnet,
        T::Ipnet,
        "fd.cip, compared with a network.",
    ),
    f(
        "fd.snet",
        I::FdSnet,
        T::Ipnet,
        "fd.sip, compared with a network.",
    ),
    f(
        "fd.lnet",
        I::FdLnet,
        T::Ipnet,
        "fd.lip, compared with a network.",
    ),
    f(
        "fd.rnet",
        I::FdRnet,
        T::Ipnet,
        "fd.rip, compared with a network.",
    ),
    na(
        "fd.sip.name",
        T::Charbuf,
        "DNS name the server IP was resolved from.",
        DNS,
    ),
    na("fd.cip.name", T::Charbuf, "DNS name of the client IP.", DNS),
    na("fd.lip.name", T::Charbuf, "DNS name of the local IP.", DNS),
    na("fd.rip.name", T::Charbuf, "DNS name of the remote IP.", DNS),
    na(
        "fd.connected",
        T::Bool,
        "The socket is connected.",
        FD_TABLE,
    ),
    na(
        "fd.name_changed",
        T::Bool,
        "The fd's name changed in this event.",
        FD_TABLE,
    ),
    na(
        "fd.is_server",
        T::Bool,
        "The process is the server of the connection.",
        FD_TABLE,
    ),
    na("fd.ino", T::Int64, "Inode of the file.", FD_TABLE),
    na("fd.dev", T::Uint32, "Device of the file.", FD_TABLE),
    // container.*, k8s.*
    f(
        "container.id",
        I::ContainerId,
        T::Charbuf,
        "Container id (12 characters) from the process's cgroup, or host.",
    ),
    f(
        "container.full_id",
        I::ContainerFullId,
        T::Charbuf,
        "The whole container id (64 characters), or host.",
    ),
    f(
        "container.name",
        I::ContainerName,
        T::Charbuf,
        "Container name (the Kubernetes container name in a pod); host outside containers.",
    ),
    f(
        "container.image",
        I::ContainerImage,
        T::Charbuf,
        "Container image, as repository:tag.",
    ),
    f(
        "container.image.repository",
        I::ContainerImageRepository,
        T::Charbuf,
        "Container image repository.",
    ),
    f(
        "container.image.tag",
        I::ContainerImageTag,
        T::Charbuf,
        "Container image tag.",
    ),
    f(
        "container.image.digest",
        I::ContainerImageDigest,
        T::Charbuf,
        "Container image digest.",
    ),
    f(
        "container.type",
        I::ContainerType,
        T::Charbuf,
        "Container runtime: podman, containerd, cri-o, docker; host outside containers.",
    ),
    f(
        "container.privileged",
        I::ContainerPrivileged,
        T::Bool,
        "The container is privileged (runtime's flag, or all capabilities without seccomp \
         and masked paths in its OCI spec).",
    ),
    f(
        "container.start_ts",
        I::ContainerStartTs,
        T::Abstime,
        "Container start time.",
    ),
    na(
        "container.image.id",
        T::Charbuf,
        "Container image id.",
        CONTAINER,
    ),
    na(
        "container.mounts",
        T::Charbuf,
        "Container mounts.",
        CONTAINER,
    ),
    FieldDef {
        arg: ArgSpec::Key,
        ..na(
            "container.label",
            T::Charbuf,
            "Container label (container.label[KEY]).",
            CONTAINER,
        )
    },
    na(
        "container.healthcheck",
        T::Charbuf,
        "Container health check command.",
        CONTAINER,
    ),
    f(
        "k8s.ns.name",
        I::K8sNsName,
        T::Charbuf,
        "Kubernetes namespace of the pod.",
    ),
    f(
        "k8s.pod.name",
        I::K8sPodName,
        T::Charbuf,
        "Kubernetes pod name.",
    ),
    f(
        "k8s.pod.uid",
        I::K8sPodUid,
        T::Charbuf,
        "Kubernetes pod uid.",
    ),
    fa(
        "k8s.pod.label",
        I::K8sPodLabel,
        T::Charbuf,
        ArgSpec::Key,
        "Kubernetes pod label (k8s.pod.label[KEY]).",
    ),
    f(
        "k8s.pod.labels",
        I::K8sPodLabels,
        T::Charbuf,
        "Kubernetes pod labels as key:value pairs joined by commas, in key order.",
    ),
    na("k8s.pod.ip", T::Ipaddr, "Kubernetes pod IP.", CONTAINER),
    na(
        "k8s.pod.cni.json",
        T::Charbuf,
        "Kubernetes pod CNI result.",
        CONTAINER,
    ),
];

/// A field resolved at load time.
#[derive(Clone, Debug, PartialEq)]
pub struct FieldRef {
    pub def: &'static FieldDef,
    pub arg: FieldArg,
}

#[derive(Clone, Debug, PartialEq)]
pub enum FieldArg {
    None,
    Index(usize),
    /// An argument name with the kernel names it may go by (`evt.arg.target` is `oldname`).
    Name(Box<str>, &'static [&'static str]),
    Key(Box<str>),
}

impl FieldRef {
    pub fn id(&self) -> FieldId {
        self.def.id
    }

    pub fn ty(&self) -> FieldType {
        self.def.ty
    }

    /// `proc.aname` and friends without an index: true if any ancestor matches.
    pub fn is_any_ancestor(&self) -> bool {
        self.def.arg == ArgSpec::Index && self.arg == FieldArg::None
    }
}

/// Falco's argument names for the kernel's (`syscalls:sys_enter_*`) where they differ.
fn arg_aliases(name: &str) -> &'static [&'static str] {
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

/// Resolves `name` (and its bracket argument) against the catalog.
pub fn resolve(name: &str, arg: Option<&str>) -> Result<FieldRef, String> {
    let unknown = || format!("filter_check called with nonexistent field {name}");
    let (def, arg) = match CATALOG.iter().find(|d| d.name == name) {
        Some(d) => (d, arg.map(str::to_string)),
        None => {
            // evt.arg.NAME / evt.rawarg.NAME
            let (base, rest) = name
                .strip_prefix("evt.arg.")
                .map(|r| ("evt.arg", r))
                .or_else(|| name.strip_prefix("evt.rawarg.").map(|r| ("evt.rawarg", r)))
                .ok_or_else(unknown)?;
            if arg.is_some() {
                return Err(format!("field {name} does not take an argument"));
            }
            let def = CATALOG
                .iter()
                .find(|d| d.name == base)
                .ok_or_else(unknown)?;
            (def, Some(rest.to_string()))
        }
    };
    let arg = match (def.arg, arg) {
        (ArgSpec::None, None) => FieldArg::None,
        (ArgSpec::None, Some(_)) => return Err(format!("field {name} does not take an argument")),
        (ArgSpec::Index, None) => FieldArg::None,
        (ArgSpec::Index, Some(a)) => FieldArg::Index(
            a.parse()
                .map_err(|_| format!("field {name}: argument '{a}' is not an ancestor number"))?,
        ),
        (ArgSpec::Name, None) => {
            return Err(format!("field {name} needs an argument name or index"));
        }
        (ArgSpec::Name, Some(a)) => match a.parse::<usize>() {
            Ok(i) => FieldArg::Index(i),
            Err(_) => {
                let aliases = arg_aliases(&a);
                FieldArg::Name(a.into(), aliases)
            }
        },
        (ArgSpec::Key, None) => FieldArg::None,
        (ArgSpec::Key, Some(a)) => FieldArg::Key(a.into()),
    };
    Ok(FieldRef { def, arg })
}

/// A field's value for one event.
#[derive(Clone, Debug, PartialEq)]
pub enum Val<'a> {
    Str(Cow<'a, str>),
    Num(i64),
    Bool(bool),
    Ip(IpAddr),
    /// Nanoseconds since the epoch.
    Time(u64),
    Flags {
        raw: u64,
        names: &'a [Cow<'static, str>],
    },
}

impl Val<'_> {
    /// The text Falco shows for the value.
    #[inline]
    pub fn text(&self) -> Cow<'_, str> {
        match self {
            Val::Str(s) => Cow::Borrowed(s),
            Val::Num(n) => Cow::Owned(n.to_string()),
            Val::Bool(b) => Cow::Borrowed(if *b { "true" } else { "false" }),
            Val::Ip(ip) => Cow::Owned(ip.to_string()),
            Val::Time(t) => Cow::Owned(format_time(*t)),
            Val::Flags { names, raw } => {
                if names.is_empty() {
                    Cow::Owned(raw.to_string())
                } else {
                    Cow::Owned(names.join("|"))
                }
            }
        }
    }

    pub fn num(&self) -> Option<i64> {
        match self {
            Val::Num(n) => Some(*n),
            Val::Time(t) => i64::try_from(*t).ok(),
            Val::Bool(b) => Some(i64::from(*b)),
            Val::Flags { raw, .. } => Some(*raw as i64),
            Val::Str(s) => s.parse().ok(),
            Val::Ip(_) => None,
        }
    }

    /// The value for JSON `output_fields`: numbers stay numbers.
    pub fn to_json(&self) -> serde_json::Value {
        match self {
            Val::Num(n) => (*n).into(),
            Val::Time(t) => (*t).into(),
            Val::Bool(b) => (*b).into(),
            other => other.text().into_owned().into(),
        }
    }
}

impl fmt::Display for Val<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text())
    }
}

/// Days since 1970-01-01 → (year, month, day), proleptic Gregorian (Howard Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

struct Tm {
    year: i64,
    month: u32,
    day: u32,
    h: u64,
    m: u64,
    s: u64,
    ns: u64,
}

fn tm(ns_epoch: u64) -> Tm {
    let secs = ns_epoch / 1_000_000_000;
    let (year, month, day) = civil_from_days((secs / 86_400) as i64);
    let sod = secs % 86_400;
    Tm {
        year,
        month,
        day,
        h: sod / 3600,
        m: sod / 60 % 60,
        s: sod % 60,
        ns: ns_epoch % 1_000_000_000,
    }
}

/// `HH:MM:SS.nnnnnnnnn` (UTC), Falco's `%evt.time`.
pub fn format_time(ns_epoch: u64) -> String {
    let t = tm(ns_epoch);
    format!("{:02}:{:02}:{:02}.{:09}", t.h, t.m, t.s, t.ns)
}

/// `YYYY-MM-DDTHH:MM:SS.nnnnnnnnnZ`, the JSON alert `time`.
pub fn format_iso8601(ns_epoch: u64) -> String {
    let t = tm(ns_epoch);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:09}Z",
        t.year, t.month, t.day, t.h, t.m, t.s, t.ns
    )
}

fn format_datetime(ns_epoch: u64) -> String {
    let t = tm(ns_epoch);
    format!(
        "{:04}-{:02}-{:02} {:02}:{:02}:{:02}.{:09}",
        t.year, t.month, t.day, t.h, t.m, t.s, t.ns
    )
}

/// Linux errno names (asm-generic), index = errno.
static ERRNO: &[&str] = &[
    "SUCCESS",
    "EPERM",
    "ENOENT",
    "ESRCH",
    "EINTR",
    "EIO",
    "ENXIO",
    "E2BIG",
    "ENOEXEC",
    "EBADF",
    "ECHILD",
    "EAGAIN",
    "ENOMEM",
    "EACCES",
    "EFAULT",
    "ENOTBLK",
    "EBUSY",
    "EEXIST",
    "EXDEV",
    "ENODEV",
    "ENOTDIR",
    "EISDIR",
    "EINVAL",
    "ENFILE",
    "EMFILE",
    "ENOTTY",
    "ETXTBSY",
    "EFBIG",
    "ENOSPC",
    "ESPIPE",
    "EROFS",
    "EMLINK",
    "EPIPE",
    "EDOM",
    "ERANGE",
    "EDEADLK",
    "ENAMETOOLONG",
    "ENOLCK",
    "ENOSYS",
    "ENOTEMPTY",
    "ELOOP",
    "E41",
    "ENOMSG",
    "EIDRM",
    "ECHRNG",
    "EL2NSYNC",
    "EL3HLT",
    "EL3RST",
    "ELNRNG",
    "EUNATCH",
    "ENOCSI",
    "EL2HLT",
    "EBADE",
    "EBADR",
    "EXFULL",
    "ENOANO",
    "EBADRQC",
    "EBADSLT",
    "E58",
    "EBFONT",
    "ENOSTR",
    "ENODATA",
    "ETIME",
    "ENOSR",
    "ENONET",
    "ENOPKG",
    "EREMOTE",
    "ENOLINK",
    "EADV",
    "ESRMNT",
    "ECOMM",
    "EPROTO",
    "EMULTIHOP",
    "EDOTDOT",
    "EBADMSG",
    "EOVERFLOW",
    "ENOTUNIQ",
    "EBADFD",
    "EREMCHG",
    "ELIBACC",
    "ELIBBAD",
    "ELIBSCN",
    "ELIBMAX",
    "ELIBEXEC",
    "EILSEQ",
    "ERESTART",
    "ESTRPIPE",
    "EUSERS",
    "ENOTSOCK",
    "EDESTADDRREQ",
    "EMSGSIZE",
    "EPROTOTYPE",
    "ENOPROTOOPT",
    "EPROTONOSUPPORT",
    "ESOCKTNOSUPPORT",
    "EOPNOTSUPP",
    "EPFNOSUPPORT",
    "EAFNOSUPPORT",
    "EADDRINUSE",
    "EADDRNOTAVAIL",
    "ENETDOWN",
    "ENETUNREACH",
    "ENETRESET",
    "ECONNABORTED",
    "ECONNRESET",
    "ENOBUFS",
    "EISCONN",
    "ENOTCONN",
    "ESHUTDOWN",
    "ETOOMANYREFS",
    "ETIMEDOUT",
    "ECONNREFUSED",
    "EHOSTDOWN",
    "EHOSTUNREACH",
    "EALREADY",
    "EINPROGRESS",
    "ESTALE",
    "EUCLEAN",
    "ENOTNAM",
    "ENAVAIL",
    "EISNAM",
    "EREMOTEIO",
    "EDQUOT",
    "ENOMEDIUM",
    "EMEDIUMTYPE",
    "ECANCELED",
    "ENOKEY",
    "EKEYEXPIRED",
    "EKEYREVOKED",
    "EKEYREJECTED",
    "EOWNERDEAD",
    "ENOTRECOVERABLE",
];

pub fn errno_name(errno: i32) -> Cow<'static, str> {
    usize::try_from(errno)
        .ok()
        .and_then(|i| ERRNO.get(i))
        .map_or_else(|| Cow::Owned(format!("E{errno}")), |s| Cow::Borrowed(*s))
}

/// What the engine knows about an event beyond the event itself.
pub struct Services<'a> {
    pub users: &'a dyn UserResolver,
    pub containers: &'a dyn ContainerLookup,
    pub hostname: &'a str,
}

/// The file descriptor an event created or used, as far as the event alone shows it.
#[derive(Default)]
struct FdInfo<'a> {
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

/// What one event's fields derive, computed at most once per event and kept beside the
/// event, so that every check and the output borrow it instead of deriving and allocating
/// it again (a rule set checks `proc.cmdline` or `fd.name` many times per event).
#[derive(Default)]
pub struct EventCache<'a> {
    fd: OnceCell<FdInfo<'a>>,
    container: OnceCell<Option<Arc<ContainerInfo>>>,
    cmdline: OnceCell<Option<String>>,
    args: OnceCell<Option<String>>,
    cwd: OnceCell<Option<String>>,
    user_name: OnceCell<Option<Arc<str>>>,
    sock_name: OnceCell<String>,
}

/// One event being judged: the event, its process and lazily computed extras.
pub struct Ctx<'a> {
    pub en: &'a Enriched,
    pub sc: Option<&'a Syscall>,
    pub evt_num: u64,
    svc: &'a Services<'a>,
    cache: &'a EventCache<'a>,
    /// Results of the checks rules share, by slot: 0 not evaluated yet, 1 false, 2 true
    /// (see `compile::Node::share_checks`). Empty: nothing is kept.
    pub memo: &'a [std::cell::Cell<u8>],
}

impl<'a> Ctx<'a> {
    pub fn new(
        en: &'a Enriched,
        evt_num: u64,
        svc: &'a Services<'a>,
        cache: &'a EventCache<'a>,
    ) -> Self {
        let sc = match &en.event.kind {
            EventKind::Syscall(sc) => Some(sc),
            _ => None,
        };
        Self {
            en,
            sc,
            evt_num,
            svc,
            cache,
            memo: &[],
        }
    }

    /// With room for the results of `memo.len()` shared checks, all unset.
    pub fn with_memo(mut self, memo: &'a [std::cell::Cell<u8>]) -> Self {
        self.memo = memo;
        self
    }

    /// `evt.type`.
    pub fn evt_type(&self) -> &'a str {
        match &self.en.event.kind {
            EventKind::Syscall(sc) => &sc.name,
            EventKind::Exit(_) => "procexit",
            EventKind::Exec(_) => "execve",
            EventKind::Fork(_) => "clone",
            EventKind::Profile(_) => "profile",
        }
    }

    fn process(&self) -> Option<&'a Process> {
        self.en.process.as_deref()
    }

    /// Ancestor `n`: 0 is the process itself, 1 the parent.
    fn ancestor(&self, n: usize) -> Option<&'a Process> {
        if n == 0 {
            self.process()
        } else {
            self.en.ancestors.get(n - 1).map(|p| &**p)
        }
    }

    /// The event's own container when the pipeline attached one (live and recorded events),
    /// else what the lookup finds.
    /// The event's container, shared (for the alert to carry).
    pub fn container_arc(&self) -> Option<Arc<ContainerInfo>> {
        if let Some(c) = &self.en.container {
            return Some(c.clone());
        }
        self.cache
            .container
            .get_or_init(|| self.svc.containers.lookup(&self.en.event, self.process()))
            .clone()
    }

    fn container(&self) -> Option<&'a ContainerInfo> {
        if let Some(c) = &self.en.container {
            return Some(c);
        }
        self.cache
            .container
            .get_or_init(|| self.svc.containers.lookup(&self.en.event, self.process()))
            .as_deref()
    }

    fn fd(&self) -> &'a FdInfo<'a> {
        self.cache
            .fd
            .get_or_init(|| self.sc.map(fd_info).unwrap_or_default())
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
            .get_or_init(|| self.process().map(proc_args))
            .as_deref()
    }

    fn arg_by_name(&self, name: &str, aliases: &[&str]) -> Option<&'a ArgValue> {
        let sc = self.sc?;
        sc.arg(name)
            .or_else(|| aliases.iter().find_map(|a| sc.arg(a)))
    }

    /// Extracts one field. Unset is None. For `proc.aname` without an index, use
    /// [`Ctx::extract_ancestors`].
    pub fn extract(&self, f: &FieldRef) -> Option<Val<'a>> {
        let ev = &self.en.event;
        let p = self.process();
        let idx = match f.arg {
            FieldArg::Index(i) => i,
            _ => 1,
        };
        let s = |v: &'a str| Some(Val::Str(Cow::Borrowed(v)));
        let o = |v: String| Some(Val::Str(Cow::Owned(v)));
        match f.def.id {
            I::ProcName => s(p.map_or(ev.comm.as_str(), |p| p.comm.as_str())),
            I::ProcExe => p.and_then(|p| s(proc_exe(p))),
            I::ProcExepath => p.and_then(|p| nonempty(&p.exe)),
            I::ProcCmdline => self.cmdline().and_then(s),
            I::ProcArgs => self.args().and_then(s),
            I::ProcPid => Some(Val::Num(i64::from(ev.tgid))),
            I::ProcVpid => Some(Val::Num(i64::from(ev.vpid))),
            I::ProcVpgid => ns_pgid(ev.tgid).map(Val::Num),
            I::ProcPpid => p.map(|p| Val::Num(i64::from(p.ppid))),
            I::ProcPname => self.ancestor(1).and_then(|a| s(&a.comm)),
            I::ProcPexe => self.ancestor(1).and_then(|a| s(proc_exe(a))),
            I::ProcPexepath => self.ancestor(1).and_then(|a| nonempty(&a.exe)),
            I::ProcPcmdline => self.ancestor(1).map(|a| Val::Str(Cow::Owned(a.cmdline()))),
            I::ProcAname => self.ancestor(idx).and_then(|a| s(&a.comm)),
            I::ProcAexe => self.ancestor(idx).and_then(|a| s(proc_exe(a))),
            I::ProcAexepath => self.ancestor(idx).and_then(|a| nonempty(&a.exe)),
            I::ProcApid => self.ancestor(idx).map(|a| Val::Num(i64::from(a.pid))),
            I::ProcAcmdline => self
                .ancestor(idx)
                .map(|a| Val::Str(Cow::Owned(a.cmdline()))),
            I::ProcTty => p.map(|p| Val::Num(i64::from(p.tty))),
            I::ProcCwd => p.and_then(|p| p.cwd.as_deref()).and_then(|c| {
                if c.ends_with('/') {
                    s(c)
                } else {
                    self.cache
                        .cwd
                        .get_or_init(|| Some(format!("{c}/")))
                        .as_deref()
                        .and_then(s)
                }
            }),
            I::ProcDuration => p.map(|p| Val::Num(ev.ts.saturating_sub(p.start_ts) as i64)),
            I::ProcIsExeFromMemfd => p.map(|p| Val::Bool(p.exe_from_memfd())),
            I::ProcIsExeUpperLayer => p.map(|p| Val::Bool(p.exe_layer.is_some_and(|l| l.upper))),
            I::ThreadTid => Some(Val::Num(i64::from(ev.tid))),
            I::ThreadCapEffective => o(osprey_model::event::cap_names(ev.cap_effective).join(" ")),
            I::ThreadCapPermitted => o(osprey_model::event::cap_names(ev.cap_permitted).join(" ")),
            I::UserUid => Some(Val::Num(i64::from(ev.euid))),
            I::UserName => self
                .cache
                .user_name
                .get_or_init(|| self.svc.users.user_name(ev.euid))
                .as_deref()
                .and_then(s),
            I::UserLoginuid => p.map(|p| {
                Val::Num(if p.loginuid == u32::MAX {
                    -1
                } else {
                    i64::from(p.loginuid)
                })
            }),
            I::UserLoginname => p
                .filter(|p| p.loginuid != u32::MAX)
                .and_then(|p| self.svc.users.user_name(p.loginuid))
                .and_then(|n| o(n.to_string())),
            I::GroupGid => Some(Val::Num(i64::from(ev.egid))),
            I::GroupName => self
                .svc
                .users
                .group_name(ev.egid)
                .and_then(|n| o(n.to_string())),
            I::EvtType => s(self.evt_type()),
            I::EvtNum => Some(Val::Num(self.evt_num as i64)),
            I::EvtTime | I::EvtRawtime => Some(Val::Time(ev.time)),
            I::EvtTimeS => o(format_time(ev.time)[..8].to_string()),
            I::EvtTimeIso8601 => o(format_iso8601(ev.time)),
            I::EvtDatetime => o(format_datetime(ev.time)),
            I::EvtRes => self.sc.map(|sc| {
                Val::Str(match sc.errno() {
                    Some(e) => errno_name(e),
                    None => Cow::Borrowed("SUCCESS"),
                })
            }),
            I::EvtRawres => self.sc.map(|sc| Val::Num(sc.ret)),
            I::EvtFailed => self.sc.map(|sc| Val::Bool(sc.errno().is_some())),
            I::EvtArg | I::EvtRawarg => {
                let raw = f.def.id == I::EvtRawarg;
                let v = match &f.arg {
                    FieldArg::Index(i) => self.sc.and_then(|sc| sc.args.get(*i)).map(|a| &a.value),
                    FieldArg::Name(n, aliases) => self.arg_by_name(n, aliases),
                    _ => None,
                }?;
                arg_val(v, raw)
            }
            I::EvtArgs => self.sc.map(|sc| {
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
                }
                Val::Str(Cow::Owned(out))
            }),
            I::EvtDir => s("<"),
            I::EvtIsOpenRead | I::EvtIsOpenWrite | I::EvtIsOpenExec => {
                Some(Val::Bool(self.open_mode(f.def.id)))
            }
            I::EvtHostname => s(self.svc.hostname),
            I::EvtSource => s("syscall"),
            I::EvtLatency => self.sc.map(|sc| Val::Num(sc.latency_ns as i64)),
            I::FdNum => self.fd().num.map(Val::Num),
            I::FdName => self.fd_name().and_then(s),
            I::FdNameraw => self.fd().nameraw.map(|r| Val::Str(Cow::Borrowed(r))),
            I::FdDirectory => {
                let fd = self.fd();
                if !matches!(fd.typechar, Some('f' | 'd')) {
                    return None;
                }
                self.fd_name().and_then(|n| {
                    s(match n.rfind('/') {
                        Some(0) => "/",
                        Some(i) => &n[..i],
                        None => ".",
                    })
                })
            }
            I::FdFilename => {
                let fd = self.fd();
                if !matches!(fd.typechar, Some('f' | 'd')) {
                    return None;
                }
                self.fd_name()
                    .and_then(|n| s(n.rsplit('/').next().unwrap_or(n)))
            }
            I::FdTypechar => self.fd().typechar.map(|c| {
                Val::Str(match c {
                    'f' => Cow::Borrowed("f"),
                    'd' => Cow::Borrowed("d"),
                    '4' => Cow::Borrowed("4"),
                    '6' => Cow::Borrowed("6"),
                    'u' => Cow::Borrowed("u"),
                    'm' => Cow::Borrowed("m"),
                    'n' => Cow::Borrowed("n"),
                    c => Cow::Owned(c.to_string()),
                })
            }),
            I::FdType => self.fd().typechar.and_then(|c| {
                s(match c {
                    'f' => "file",
                    'd' => "directory",
                    '4' => "ipv4",
                    '6' => "ipv6",
                    'u' => "unix",
                    'm' => "memfd",
                    'n' => "netlink",
                    _ => return None,
                })
            }),
            I::FdL4proto => self.fd().l4proto.and_then(s),
            I::FdSockfamily => self.fd().typechar.and_then(|c| match c {
                '4' | '6' => s("ip"),
                'u' => s("unix"),
                _ => None,
            }),
            I::FdIp | I::FdNet => {
                let fd = self.fd();
                fd.remote.or(fd.local).map(|(ip, _)| Val::Ip(ip))
            }
            I::FdPort => {
                let fd = self.fd();
                fd.remote.or(fd.local).map(|(_, p)| Val::Num(i64::from(p)))
            }
            I::FdLip | I::FdLnet => self.fd().local.map(|(ip, _)| Val::Ip(ip)),
            I::FdRip | I::FdRnet => self.fd().remote.map(|(ip, _)| Val::Ip(ip)),
            I::FdLport => self.fd().local.map(|(_, p)| Val::Num(i64::from(p))),
            I::FdRport => self.fd().remote.map(|(_, p)| Val::Num(i64::from(p))),
            I::FdSip | I::FdSnet | I::FdSport | I::FdCip | I::FdCnet | I::FdCport => {
                let fd = self.fd();
                let server = matches!(f.def.id, I::FdSip | I::FdSnet | I::FdSport);
                let end = if server == fd.local_is_server {
                    fd.local
                } else {
                    fd.remote
                };
                end.map(|(ip, port)| {
                    if matches!(f.def.id, I::FdSport | I::FdCport) {
                        Val::Num(i64::from(port))
                    } else {
                        Val::Ip(ip)
                    }
                })
            }
            I::ContainerId => self.container().and_then(|c| s(&c.id)),
            I::ContainerFullId => self.container().map(|c| {
                Val::Str(Cow::Owned(if c.full_id.is_empty() {
                    c.id.clone()
                } else {
                    c.full_id.clone()
                }))
            }),
            I::ContainerName => self
                .container()
                .and_then(|c| c.name.clone())
                .map(|v| Val::Str(Cow::Owned(v))),
            I::ContainerImage => self
                .container()
                .and_then(|c| c.image.clone())
                .map(|v| Val::Str(Cow::Owned(v))),
            I::ContainerImageRepository => self
                .container()
                .and_then(|c| c.image_repository.clone())
                .map(|v| Val::Str(Cow::Owned(v))),
            I::ContainerImageTag => self
                .container()
                .and_then(|c| c.image_tag.clone())
                .map(|v| Val::Str(Cow::Owned(v))),
            I::ContainerImageDigest => self
                .container()
                .and_then(|c| c.image_digest.clone())
                .map(|v| Val::Str(Cow::Owned(v))),
            I::ContainerType => self
                .container()
                .and_then(|c| c.runtime.clone())
                .map(|v| Val::Str(Cow::Owned(v))),
            I::ContainerPrivileged => self.container().and_then(|c| c.privileged).map(Val::Bool),
            I::ContainerStartTs => self.container().and_then(|c| c.start_ts).map(Val::Time),
            I::K8sNsName => self
                .container()
                .and_then(|c| c.k8s_ns_name.clone())
                .map(|v| Val::Str(Cow::Owned(v))),
            I::K8sPodName => self
                .container()
                .and_then(|c| c.k8s_pod_name.clone())
                .map(|v| Val::Str(Cow::Owned(v))),
            I::K8sPodUid => self
                .container()
                .and_then(|c| c.k8s_pod_uid.clone())
                .map(|v| Val::Str(Cow::Owned(v))),
            I::K8sPodLabels => self
                .container()
                .and_then(ContainerInfo::pod_labels_text)
                .map(|v| Val::Str(Cow::Owned(v))),
            I::K8sPodLabel => match &f.arg {
                FieldArg::Key(k) => self
                    .container()
                    .and_then(|c| c.k8s_pod_labels.get(&**k).cloned())
                    .map(|v| Val::Str(Cow::Owned(v))),
                _ => None,
            },
            I::Unavailable => None,
        }
    }

    /// The values of an ancestor field over every ancestor (`proc.aname` without an index).
    pub fn extract_ancestors(&self, f: &FieldRef) -> Vec<Val<'a>> {
        let mut out = Vec::with_capacity(self.en.ancestors.len());
        for n in 1..=self.en.ancestors.len() {
            let r = FieldRef {
                def: f.def,
                arg: FieldArg::Index(n),
            };
            if let Some(v) = self.extract(&r) {
                out.push(v);
            }
        }
        out
    }

    fn open_mode(&self, id: FieldId) -> bool {
        let Some(sc) = self.sc else { return false };
        if !matches!(&*sc.name, "open" | "openat" | "openat2" | "creat") {
            return false;
        }
        let flags = sc
            .arg("flags")
            .or_else(|| sc.arg("how"))
            .and_then(ArgValue::as_i64)
            // creat() is open(O_CREAT|O_WRONLY|O_TRUNC).
            .unwrap_or(if sc.name == "creat" { 0o1101 } else { 0 }) as u64;
        let acc = flags & 3;
        match id {
            I::EvtIsOpenRead => acc == 0 || acc == 2,
            I::EvtIsOpenWrite => acc == 1 || acc == 2,
            _ => {
                const O_CREAT: u64 = 0o100;
                const O_TMPFILE: u64 = 0o20_000_000;
                let mode = match sc.arg("mode") {
                    Some(ArgValue::Mode(m)) => u64::from(*m),
                    Some(v) => v.as_i64().unwrap_or(0) as u64,
                    None => 0,
                };
                flags & (O_CREAT | O_TMPFILE) != 0 && mode & 0o111 != 0
            }
        }
    }
}

fn nonempty(s: &str) -> Option<Val<'_>> {
    (!s.is_empty()).then_some(Val::Str(Cow::Borrowed(s)))
}

/// Falco's `proc.exe` is argv[0]; a process known only from its event header has no argv.
fn proc_exe(p: &Process) -> &str {
    p.args.first().map_or(p.exe.as_str(), String::as_str)
}

fn proc_args(p: &Process) -> String {
    p.args.get(1..).map(|a| a.join(" ")).unwrap_or_default()
}

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
            if let Some(ArgValue::Path { raw, resolved }) =
                sc.arg("filename").or_else(|| sc.arg("pathname"))
            {
                fd.nameraw = Some(raw);
                fd.name = Some(match resolved {
                    Some(r) => Cow::Borrowed(r.as_str()),
                    None => Cow::Borrowed(raw.as_str()),
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
    fd
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_catalog_name_resolves_and_is_unique() {
        let mut seen = std::collections::HashSet::new();
        for d in CATALOG {
            assert!(seen.insert(d.name), "duplicate {}", d.name);
            let arg = match d.arg {
                ArgSpec::Name => Some("flags"),
                ArgSpec::Key => Some("K"),
                _ => None,
            };
            resolve(d.name, arg).unwrap();
        }
    }

    #[test]
    fn resolves_arguments() {
        let r = resolve("evt.arg.target", None).unwrap();
        assert_eq!(r.id(), I::EvtArg);
        assert!(
            matches!(&r.arg, FieldArg::Name(n, a) if &**n == "target" && a.contains(&"oldname"))
        );
        assert_eq!(
            resolve("evt.arg", Some("0")).unwrap().arg,
            FieldArg::Index(0)
        );
        assert_eq!(
            resolve("proc.aname", Some("2")).unwrap().arg,
            FieldArg::Index(2)
        );
        assert!(resolve("proc.aname", None).unwrap().is_any_ancestor());
        assert!(resolve("proc.aname", Some("x")).is_err());
        assert!(resolve("proc.name", Some("1")).is_err());
        assert_eq!(
            resolve("proc.nobody", None).unwrap_err(),
            "filter_check called with nonexistent field proc.nobody"
        );
    }

    #[test]
    fn formats_times() {
        // 2023-05-25T13:44:05.478445995Z
        let t = 1_685_022_245_478_445_995;
        assert_eq!(format_iso8601(t), "2023-05-25T13:44:05.478445995Z");
        assert_eq!(format_time(t), "13:44:05.478445995");
        assert_eq!(format_datetime(0), "1970-01-01 00:00:00.000000000");
    }

    #[test]
    fn errno_names() {
        assert_eq!(errno_name(2), "ENOENT");
        assert_eq!(errno_name(115), "EINPROGRESS");
        assert_eq!(errno_name(999), "E999");
    }
}

/// The process group id in the innermost pid namespace (`NSpgid` in `/proc/PID/status`).
fn ns_pgid(pid: u32) -> Option<i64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    parse_ns_pgid(&status)
}

fn parse_ns_pgid(status: &str) -> Option<i64> {
    let line = status.lines().find_map(|l| l.strip_prefix("NSpgid:"))?;
    line.split_whitespace().last()?.parse().ok()
}

#[cfg(test)]
#[test]
fn ns_pgid_is_the_innermost() {
    assert_eq!(parse_ns_pgid("Name:\tsh\nNSpgid:\t4711\t1\n"), Some(1));
    assert_eq!(parse_ns_pgid("NSpgid:\t300\n"), Some(300));
    assert_eq!(parse_ns_pgid("Name:\tsh\n"), None);
}
