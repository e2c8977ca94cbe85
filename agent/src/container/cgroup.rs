//! Container ids from cgroup paths, and where to find a process's cgroup path.
//!
//! Every runtime names the cgroup it creates for a container after the container's id; only the
//! shape differs (systemd driver or cgroupfs, runtime prefix or none, v1 or v2):
//!
//! | runtime                        | cgroup path (last components)                              |
//! |--------------------------------|------------------------------------------------------------|
//! | containerd CRI, systemd driver | `kubepods-burstable-pod<uid>.slice/cri-containerd-<id>.scope` |
//! | containerd CRI, cgroupfs       | `/kubepods/burstable/pod<uid>/<id>`                        |
//! | containerd (ctr, nerdctl)      | `/<namespace>/<id>` (`/k8s.io/<id>`, `/default/<id>`)      |
//! | CRI-O                          | `crio-<id>.scope` (`crio-conmon-<id>.scope` is its monitor) |
//! | Docker                         | `docker-<id>.scope`, `/docker/<id>`                        |
//! | podman                         | `libpod-<id>.scope`, `/libpod_parent/libpod-<id>` (`libpod-conmon-<id>` is its monitor) |
//!
//! The kernel hands the sensor the last two components (`parent/name`) at exec; `/proc/PID/cgroup`
//! gives whole paths, one line per v1 hierarchy plus `0::` for v2.

use std::{
    collections::HashMap,
    os::unix::fs::MetadataExt as _,
    path::{Path, PathBuf},
};

/// Which runtime made a container's cgroup, as far as the path tells.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Runtime {
    Podman,
    Containerd,
    CriO,
    Docker,
    /// A bare id (cgroupfs driver under `kubepods`, or an unknown prefix): the kubelet's
    /// runtime could be containerd, CRI-O or Docker; the metadata lookup tries each.
    Unknown,
}

impl Runtime {
    /// `container.type`.
    pub fn as_str(self) -> &'static str {
        match self {
            Runtime::Podman => "podman",
            Runtime::Containerd => "containerd",
            Runtime::CriO => "cri-o",
            Runtime::Docker => "docker",
            Runtime::Unknown => "unknown",
        }
    }
}

/// A container found in a cgroup path.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CgroupMatch {
    pub runtime: Runtime,
    /// The whole id, lowercase hex.
    pub id: String,
    /// The pod's uid when the path is under `kubepods` (`pod<uid>` or `...-pod<uid>.slice`).
    pub pod_uid: Option<String>,
}

fn is_id(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// The container of a cgroup path, or None for a host cgroup (including the runtimes' own
/// monitor processes, `libpod-conmon-*` and `crio-conmon-*`). Accepts whole paths and the
/// kernel's `parent/name`; the deepest container component wins (a container in a container).
pub fn container_from_path(path: &str) -> Option<CgroupMatch> {
    let comps: Vec<&str> = path.split('/').filter(|c| !c.is_empty()).collect();
    for (i, comp) in comps.iter().enumerate().rev() {
        let name = comp.strip_suffix(".scope").unwrap_or(comp);
        if name.starts_with("libpod-conmon-") || name.starts_with("crio-conmon-") {
            return None;
        }
        let parent = i.checked_sub(1).map(|p| comps[p]);
        let found = if is_id(name) {
            let runtime = match parent {
                Some("docker") => Runtime::Docker,
                // containerd's own layout is /<namespace>/<id>; the CRI namespace is k8s.io.
                Some(p) if !p.starts_with("kubepods") && !p.starts_with("pod") => {
                    Runtime::Containerd
                }
                _ => Runtime::Unknown,
            };
            Some((runtime, name))
        } else {
            name.rsplit_once('-').and_then(|(prefix, id)| {
                is_id(id).then(|| {
                    let runtime = match prefix {
                        "libpod" => Runtime::Podman,
                        "cri-containerd" => Runtime::Containerd,
                        "crio" => Runtime::CriO,
                        "docker" => Runtime::Docker,
                        _ => Runtime::Unknown,
                    };
                    (runtime, id)
                })
            })
        };
        if let Some((runtime, id)) = found {
            return Some(CgroupMatch {
                runtime,
                id: id.to_ascii_lowercase(),
                pod_uid: comps[..i].iter().rev().find_map(|c| pod_uid(c)),
            });
        }
    }
    None
}

/// `pod<uid>` (cgroupfs) or `kubepods-<qos>-pod<uid_with_underscores>.slice` (systemd).
fn pod_uid(comp: &str) -> Option<String> {
    let name = comp.strip_suffix(".slice").unwrap_or(comp);
    let uid = match name.rfind("-pod") {
        Some(i) => &name[i + 4..],
        None => name.strip_prefix("pod")?,
    };
    let uid = uid.replace('_', "-");
    (uid.len() == 36 && uid.bytes().all(|b| b.is_ascii_hexdigit() || b == b'-')).then_some(uid)
}

/// The container in a `/proc/PID/cgroup` file: the v2 line (`0::/path`) first, then the v1
/// hierarchies, since on v1 and hybrid hosts only those may carry the container's path.
pub fn container_from_proc_cgroup(text: &str) -> Option<CgroupMatch> {
    let mut lines: Vec<(&str, &str)> = text
        .lines()
        .filter_map(|l| {
            let mut it = l.splitn(3, ':');
            let hier = it.next()?;
            it.next()?;
            Some((hier, it.next()?))
        })
        .collect();
    lines.sort_by_key(|(hier, _)| *hier != "0");
    lines.iter().find_map(|(_, path)| container_from_path(path))
}

/// Where the unified (v2) hierarchy is mounted under `root`: `sys/fs/cgroup` on v2 hosts,
/// `sys/fs/cgroup/unified` on hybrid ones; None on pure v1 hosts.
pub fn v2_mount(root: &Path) -> Option<PathBuf> {
    const CGROUP2_SUPER_MAGIC: i64 = 0x6367_7270;
    ["sys/fs/cgroup/unified", "sys/fs/cgroup"]
        .iter()
        .map(|p| root.join(p))
        .find(|p| {
            let Ok(c) = std::ffi::CString::new(p.as_os_str().as_encoded_bytes()) else {
                return false;
            };
            // SAFETY: statfs writes into the zeroed struct we own; the path is NUL-terminated.
            let mut st: libc::statfs = unsafe { std::mem::zeroed() };
            let rc = unsafe { libc::statfs(c.as_ptr(), &mut st) };
            rc == 0 && st.f_type as i64 == CGROUP2_SUPER_MAGIC
        })
}

/// Every cgroup directory under a v2 mount by inode (what `bpf_get_current_cgroup_id` returns),
/// with its path relative to the mount. Depth-limited: container cgroups sit a few levels down
/// and a runaway tree must not stall the pipeline.
pub fn scan_v2(mount: &Path) -> HashMap<u64, String> {
    const MAX_DEPTH: usize = 8;
    let mut out = HashMap::new();
    let mut stack = vec![(mount.to_path_buf(), String::new(), 0usize)];
    if let Ok(md) = std::fs::metadata(mount) {
        out.insert(md.ino(), "/".to_string());
    }
    while let Some((dir, rel, depth)) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in rd.flatten() {
            let Ok(ft) = entry.file_type() else { continue };
            if !ft.is_dir() {
                continue;
            }
            let Ok(md) = entry.metadata() else { continue };
            let name = entry.file_name().to_string_lossy().into_owned();
            let child = format!("{rel}/{name}");
            out.insert(md.ino(), child.clone());
            if depth + 1 < MAX_DEPTH {
                stack.push((entry.path(), child, depth + 1));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "d628a7bc1f3e4d5a6b7c8d9e0f1a2b3c4d5e6f708192a3b4c5d6e7f8091a2b3c";
    const UID: &str = "0a1b2c3d-4e5f-6071-8293-a4b5c6d7e8f9";

    fn m(path: &str) -> Option<(Runtime, String, Option<String>)> {
        container_from_path(path).map(|m| (m.runtime, m.id, m.pod_uid))
    }

    #[test]
    fn podman_cgroupfs_and_systemd() {
        let want = Some((Runtime::Podman, ID.to_string(), None));
        assert_eq!(m(&format!("/libpod_parent/libpod-{ID}")), want);
        assert_eq!(
            m(&format!("libpod_parent/libpod-{ID}")),
            want,
            "kernel names"
        );
        assert_eq!(
            m(&format!("/machine.slice/libpod-{ID}.scope")),
            want,
            "systemd driver"
        );
        assert_eq!(
            m(&format!("/machine.slice/libpod-{ID}.scope/container")),
            want,
            "crun's nested cgroup"
        );
        assert_eq!(m(&format!("/machine.slice/libpod-conmon-{ID}.scope")), None);
        assert_eq!(m(&format!("libpod_parent/libpod-conmon-{ID}")), None);
    }

    #[test]
    fn containerd_layouts() {
        let pod = Some(UID.to_string());
        assert_eq!(
            m(&format!(
                "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{}.slice/cri-containerd-{ID}.scope",
                UID.replace('-', "_")
            )),
            Some((Runtime::Containerd, ID.to_string(), pod.clone()))
        );
        assert_eq!(
            m(&format!(
                "kubepods-besteffort-pod{}.slice/cri-containerd-{ID}.scope",
                UID.replace('-', "_")
            )),
            Some((Runtime::Containerd, ID.to_string(), pod.clone())),
            "kernel names"
        );
        assert_eq!(
            m(&format!("/kubepods/burstable/pod{UID}/{ID}")),
            Some((Runtime::Unknown, ID.to_string(), pod.clone())),
            "cgroupfs driver: containerd, CRI-O or Docker"
        );
        assert_eq!(
            m(&format!("/kubepods/pod{UID}/{ID}")),
            Some((Runtime::Unknown, ID.to_string(), pod)),
            "guaranteed QoS"
        );
        assert_eq!(
            m(&format!("/k8s.io/{ID}")),
            Some((Runtime::Containerd, ID.to_string(), None))
        );
        assert_eq!(
            m(&format!("k8s.io/{ID}")),
            Some((Runtime::Containerd, ID.to_string(), None))
        );
        assert_eq!(
            m(&format!("/default/{ID}")),
            Some((Runtime::Containerd, ID.to_string(), None))
        );
    }

    #[test]
    fn crio_layouts() {
        assert_eq!(
            m(&format!(
                "/kubepods.slice/kubepods-pod{}.slice/crio-{ID}.scope",
                UID.replace('-', "_")
            )),
            Some((Runtime::CriO, ID.to_string(), Some(UID.to_string())))
        );
        assert_eq!(
            m(&format!("/kubepods/besteffort/pod{UID}/crio-{ID}")),
            Some((Runtime::CriO, ID.to_string(), Some(UID.to_string())))
        );
        assert_eq!(
            m(&format!(
                "/kubepods.slice/kubepods-pod{}.slice/crio-conmon-{ID}.scope",
                UID.replace('-', "_")
            )),
            None,
            "the monitor is not the container"
        );
    }

    #[test]
    fn docker_layouts() {
        let want = Some((Runtime::Docker, ID.to_string(), None));
        assert_eq!(m(&format!("/system.slice/docker-{ID}.scope")), want);
        assert_eq!(m(&format!("/docker/{ID}")), want);
        assert_eq!(m(&format!("docker/{ID}")), want);
    }

    #[test]
    fn nested_container_is_the_inner_one() {
        let outer = "1".repeat(64);
        assert_eq!(
            m(&format!("/docker/{outer}/docker/{ID}")),
            Some((Runtime::Docker, ID.to_string(), None))
        );
    }

    #[test]
    fn host_paths() {
        for p in [
            "",
            "/",
            "/user.slice/user-0.slice/session-3.scope",
            "/system.slice/containerd.service",
            "/system.slice/docker.service",
            "/kubepods.slice",
            "/kubepods/burstable/pod0a1b2c3d-4e5f-6071-8293-a4b5c6d7e8f9",
            "/process_api/cf48a004289bd95458e66a3f77fa350e",
            "/docker/abc",
            "/docker-xyz.scope",
            "init.scope",
            "//..//",
            "/machine.slice/machine-qemu\\x2d1.scope",
            &format!("/x/{}", "g".repeat(64)),
            &format!("/x/{ID}0"),
        ] {
            assert_eq!(m(p), None, "{p}");
        }
    }

    #[test]
    fn uppercase_ids_normalize() {
        assert_eq!(
            container_from_path(&format!("/docker/{}", ID.to_uppercase())).map(|m| m.id),
            Some(ID.to_string())
        );
    }

    #[test]
    fn proc_cgroup_v2_v1_and_hybrid() {
        let v2 = format!("0::/libpod_parent/libpod-{ID}\n");
        assert_eq!(
            container_from_proc_cgroup(&v2).map(|m| m.runtime),
            Some(Runtime::Podman)
        );
        // Hybrid host where the container has a v2 cgroup too (these machines).
        let hybrid = format!(
            "9:name=systemd:/libpod_parent/libpod-{ID}\n4:memory:/libpod_parent/libpod-{ID}\n0::/libpod_parent/libpod-{ID}\n"
        );
        assert_eq!(
            container_from_proc_cgroup(&hybrid).map(|m| m.id),
            Some(ID.to_string())
        );
        // Pure v1: no 0:: line at all.
        let v1 =
            format!("12:pids:/docker/{ID}\n11:memory:/docker/{ID}\n1:name=systemd:/docker/{ID}\n");
        assert_eq!(
            container_from_proc_cgroup(&v1).map(|m| m.runtime),
            Some(Runtime::Docker)
        );
        // Hybrid host whose runtime only made v1 cgroups: the v2 line says root.
        let v1_only = format!("4:memory:/kubepods/besteffort/pod{UID}/{ID}\n0::/\n");
        assert_eq!(
            container_from_proc_cgroup(&v1_only).map(|m| m.pod_uid),
            Some(Some(UID.to_string()))
        );
        let host =
            "9:name=systemd:/\n4:memory:/process_api/cf48a004289bd95458e66a3f77fa350e\n0::/\n";
        assert_eq!(container_from_proc_cgroup(host), None);
        assert_eq!(container_from_proc_cgroup("garbage\n::\n0:\n"), None);
    }
}
