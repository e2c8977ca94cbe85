//! Container and pod metadata from what the runtimes write on the node.
//!
//! Every OCI runtime is started with a bundle whose `config.json` (the OCI runtime spec) the
//! container manager wrote before the container's first process ran: it carries the
//! annotations where Kubernetes runtimes put the pod's identity, and the capabilities, seccomp
//! and masked paths that say whether the container is privileged. Names and images come from
//! each manager's own state files next to it. Reading files needs no client library, no socket
//! permissions and works for containers that already exited; what is missing is left unset.
//!
//! | runtime    | files (under the host root)                                                      |
//! |------------|----------------------------------------------------------------------------------|
//! | podman     | `var/lib/containers/storage/overlay-containers/{containers.json,<id>/userdata/config.json}`, `.../overlay-images/images.json` |
//! | CRI-O      | `run/containers/storage/overlay-containers/<id>/userdata/config.json` (or under var/lib) |
//! | containerd | `run/containerd/io.containerd.runtime.v2.task/<namespace>/<id>/config.json`      |
//! | Docker     | `var/lib/docker/containers/<id>/{config.v2.json,hostconfig.json}`               |

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
};

use serde::Deserialize;
use serde_json::Value;

use super::cgroup::Runtime;

/// What the runtime files said about one container.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Metadata {
    pub runtime: Option<Runtime>,
    pub name: Option<String>,
    /// The image reference as the user gave it (`localhost/busybox:test`).
    pub image: Option<String>,
    pub image_digest: Option<String>,
    pub privileged: Option<bool>,
    pub pod_name: Option<String>,
    pub pod_namespace: Option<String>,
    pub pod_uid: Option<String>,
    pub pod_labels: BTreeMap<String, String>,
}

/// Looks the container up in every runtime's files, the cgroup's runtime first. None when no
/// runtime has (yet) written anything about it.
pub fn lookup(root: &Path, hint: Runtime, id: &str) -> Option<Metadata> {
    let order: &[Runtime] = match hint {
        Runtime::Podman => &[Runtime::Podman, Runtime::CriO],
        Runtime::CriO => &[Runtime::CriO, Runtime::Podman],
        Runtime::Containerd => &[Runtime::Containerd],
        Runtime::Docker => &[Runtime::Docker, Runtime::Containerd],
        Runtime::Unknown => &[
            Runtime::Containerd,
            Runtime::CriO,
            Runtime::Podman,
            Runtime::Docker,
        ],
    };
    order.iter().find_map(|r| match r {
        Runtime::Podman => podman(root, id),
        Runtime::CriO => crio(root, id),
        Runtime::Containerd => containerd(root, id),
        Runtime::Docker => docker(root, id),
        Runtime::Unknown => None,
    })
}

fn read_json<T: for<'de> Deserialize<'de>>(path: &Path) -> Option<T> {
    let text = std::fs::read(path).ok()?;
    match serde_json::from_slice(&text) {
        Ok(v) => Some(v),
        Err(e) => {
            // A file caught mid-write parses on the next try; anything else is worth a word.
            tracing::debug!(path = %path.display(), "not readable as JSON yet: {e}");
            None
        }
    }
}

/// The parts of an OCI runtime spec (`config.json`) that identify and classify a container.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct OciSpec {
    pub annotations: BTreeMap<String, String>,
    pub process: Option<OciProcess>,
    pub linux: Option<OciLinux>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct OciProcess {
    pub capabilities: Option<OciCaps>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct OciCaps {
    pub bounding: Vec<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct OciLinux {
    pub seccomp: Option<Value>,
    pub masked_paths: Vec<String>,
}

impl OciSpec {
    /// Privileged as the runtimes make it (`--privileged`, `securityContext.privileged`): every
    /// capability, no seccomp filter and nothing of /proc masked. An explicit runtime
    /// annotation wins.
    pub fn privileged(&self) -> Option<bool> {
        if let Some(v) = self.annotations.get("io.podman.annotations.privileged") {
            return Some(v.eq_ignore_ascii_case("true"));
        }
        let caps = &self.process.as_ref()?.capabilities.as_ref()?.bounding;
        let all_caps = [
            "CAP_SYS_ADMIN",
            "CAP_SYS_MODULE",
            "CAP_SYS_RAWIO",
            "CAP_SYS_BOOT",
        ]
        .iter()
        .all(|c| caps.iter().any(|x| x == c));
        let linux = self.linux.as_ref();
        let no_seccomp = linux.is_none_or(|l| l.seccomp.is_none());
        let unmasked = linux.is_none_or(|l| l.masked_paths.is_empty());
        Some(all_caps && no_seccomp && unmasked)
    }

    /// Pod identity from the annotations: CRI-O and `ctr --label` use the kubelet's label names,
    /// containerd's CRI plugin its own `io.kubernetes.cri.*`.
    fn fill_pod(&self, m: &mut Metadata) {
        let a = |keys: &[&str]| keys.iter().find_map(|k| self.annotations.get(*k).cloned());
        m.pod_name = a(&["io.kubernetes.pod.name", "io.kubernetes.cri.sandbox-name"]);
        m.pod_namespace = a(&[
            "io.kubernetes.pod.namespace",
            "io.kubernetes.cri.sandbox-namespace",
        ]);
        m.pod_uid = a(&["io.kubernetes.pod.uid", "io.kubernetes.cri.sandbox-uid"]);
        if m.name.is_none() {
            m.name = a(&[
                "io.kubernetes.container.name",
                "io.kubernetes.cri.container-name",
            ]);
        }
        if m.image.is_none() {
            m.image = a(&[
                "io.kubernetes.cri.image-name",
                "io.kubernetes.cri-o.ImageName",
            ]);
        }
        if m.pod_name.is_none() {
            return;
        }
        // CRI-O keeps the labels as JSON in one annotation; `ctr run --label` (what a test
        // stands in for the kubelet with) copies them into annotations one by one.
        if let Some(labels) = self.annotations.get("io.kubernetes.cri-o.Labels")
            && let Ok(map) = serde_json::from_str::<BTreeMap<String, String>>(labels)
        {
            m.pod_labels
                .extend(map.into_iter().filter(|(k, _)| is_user_label(k)));
        } else {
            m.pod_labels.extend(
                self.annotations
                    .iter()
                    .filter(|(k, _)| is_user_label(k))
                    .map(|(k, v)| (k.clone(), v.clone())),
            );
        }
    }
}

/// Not one of the keys runtimes and the kubelet add for their own bookkeeping.
fn is_user_label(key: &str) -> bool {
    const SYSTEM: &[&str] = &[
        "io.kubernetes.",
        "io.cri-containerd.",
        "io.containerd.",
        "io.container.",
        "io.podman.",
        "org.opencontainers.",
        "org.systemd.",
        "run.oci.",
        "annotation.",
        "kubernetes.io/config.",
    ];
    !SYSTEM.iter().any(|p| key.starts_with(p))
}

fn from_spec(spec: &OciSpec, runtime: Runtime) -> Metadata {
    let mut m = Metadata {
        runtime: Some(runtime),
        privileged: spec.privileged(),
        ..Metadata::default()
    };
    spec.fill_pod(&mut m);
    m
}

fn storage_config(root: &Path, id: &str) -> Option<OciSpec> {
    // CRI-O and podman share containers/storage; CRI-O keeps its bundles under the run root,
    // podman under the graph root.
    ["run/containers/storage", "var/lib/containers/storage"]
        .iter()
        .find_map(|base| {
            read_json(
                &root
                    .join(base)
                    .join("overlay-containers")
                    .join(id)
                    .join("userdata/config.json"),
            )
        })
}

/// containers/storage's record of a container (`containers.json`).
#[derive(Debug, Deserialize)]
struct StorageContainer {
    id: String,
    #[serde(default)]
    names: Vec<String>,
    #[serde(default)]
    image: String,
    /// JSON text with podman's `image-name`.
    #[serde(default)]
    metadata: String,
}

#[derive(Debug, Deserialize)]
struct StorageImage {
    id: String,
    #[serde(default)]
    digest: String,
}

fn podman(root: &Path, id: &str) -> Option<Metadata> {
    let storage = root.join("var/lib/containers/storage");
    let all: Vec<StorageContainer> =
        read_json(&storage.join("overlay-containers/containers.json"))?;
    let c = all.into_iter().find(|c| c.id == id)?;
    let spec = storage_config(root, id).unwrap_or_default();
    // CRI-O containers live in the same storage; its annotations tell them apart.
    let runtime = if spec
        .annotations
        .get("io.container.manager")
        .is_some_and(|m| m == "libpod")
        || !spec
            .annotations
            .contains_key("io.kubernetes.cri-o.ContainerID")
    {
        Runtime::Podman
    } else {
        Runtime::CriO
    };
    let mut m = from_spec(&spec, runtime);
    m.name = c.names.first().cloned().or(m.name);
    #[derive(Deserialize)]
    struct PodmanMeta {
        #[serde(rename = "image-name", default)]
        image_name: String,
    }
    if let Ok(meta) = serde_json::from_str::<PodmanMeta>(&c.metadata)
        && !meta.image_name.is_empty()
    {
        m.image = Some(meta.image_name);
    }
    if !c.image.is_empty() {
        let images: Vec<StorageImage> =
            read_json(&storage.join("overlay-images/images.json")).unwrap_or_default();
        m.image_digest = images
            .into_iter()
            .find(|i| i.id == c.image)
            .map(|i| i.digest)
            .filter(|d| !d.is_empty());
    }
    Some(m)
}

fn crio(root: &Path, id: &str) -> Option<Metadata> {
    let spec = storage_config(root, id)?;
    if spec
        .annotations
        .get("io.container.manager")
        .is_some_and(|m| m == "libpod")
    {
        return None;
    }
    let mut m = from_spec(&spec, Runtime::CriO);
    if let Some(name) = spec.annotations.get("io.kubernetes.cri-o.Name") {
        m.name.get_or_insert_with(|| name.clone());
    }
    Some(m)
}

/// containerd's task bundles, one directory per namespace (v2 shims; v1 for old nodes).
fn containerd_bundle(root: &Path, id: &str) -> Option<PathBuf> {
    [
        "run/containerd/io.containerd.runtime.v2.task",
        "run/containerd/io.containerd.runtime.v1.linux",
    ]
    .iter()
    .filter_map(|base| std::fs::read_dir(root.join(base)).ok())
    .flat_map(|rd| rd.flatten())
    .map(|ns| ns.path().join(id).join("config.json"))
    .find(|p| p.is_file())
}

/// The containerd namespace (`k8s.io`, `default`, ...) of a container with a task bundle.
pub fn containerd_namespace(root: &Path, id: &str) -> Option<String> {
    let bundle = containerd_bundle(root, id)?;
    let ns = bundle.parent()?.parent()?.file_name()?;
    Some(ns.to_string_lossy().into_owned())
}

/// Adds what containerd's API said to what the bundle said: the image reference, and the
/// pod's identity from the labels the CRI plugin sets when the annotations lack it.
pub fn merge_containerd_api(m: &mut Metadata, image: &str, labels: &BTreeMap<String, String>) {
    if m.image.is_none() && !image.is_empty() {
        m.image = Some(image.to_string());
    }
    if m.pod_name.is_none() {
        let spec = OciSpec {
            annotations: labels.clone(),
            ..OciSpec::default()
        };
        let mut from_labels = Metadata::default();
        spec.fill_pod(&mut from_labels);
        if from_labels.pod_name.is_some() {
            m.pod_name = from_labels.pod_name;
            m.pod_namespace = from_labels.pod_namespace;
            m.pod_uid = from_labels.pod_uid;
            m.pod_labels = from_labels.pod_labels;
            if let Some(name) = from_labels.name {
                m.name = Some(name);
            }
        }
    }
}

fn containerd(root: &Path, id: &str) -> Option<Metadata> {
    let spec: OciSpec = read_json(&containerd_bundle(root, id)?)?;
    let mut m = from_spec(&spec, Runtime::Containerd);
    // Outside Kubernetes (ctr, nerdctl) the id is the name the user chose.
    if m.name.is_none() && m.pod_name.is_none() {
        m.name = Some(id.to_string());
    }
    Some(m)
}

fn docker(root: &Path, id: &str) -> Option<Metadata> {
    #[derive(Deserialize, Default)]
    #[serde(default, rename_all = "PascalCase")]
    struct Config {
        name: String,
        config: Inner,
    }
    #[derive(Deserialize, Default)]
    #[serde(default, rename_all = "PascalCase")]
    struct Inner {
        image: String,
        labels: BTreeMap<String, String>,
    }
    #[derive(Deserialize, Default)]
    #[serde(default, rename_all = "PascalCase")]
    struct HostConfig {
        privileged: bool,
    }
    let dir = root.join("var/lib/docker/containers").join(id);
    let c: Config = read_json(&dir.join("config.v2.json"))?;
    let host: Option<HostConfig> = read_json(&dir.join("hostconfig.json"));
    // dockershim put the kubelet's labels on the container; they read like annotations.
    let spec = OciSpec {
        annotations: c.config.labels,
        ..OciSpec::default()
    };
    let mut m = from_spec(&spec, Runtime::Docker);
    m.privileged = host.map(|h| h.privileged);
    if m.name.is_none() {
        m.name = Some(c.name.trim_start_matches('/').to_string()).filter(|n| !n.is_empty());
    }
    m.image = Some(c.config.image).filter(|i| !i.is_empty());
    Some(m)
}

/// An image reference split into repository, tag and digest:
/// `registry:5000/ns/app:1.2@sha256:...` → (`registry:5000/ns/app`, `1.2`, `sha256:...`).
pub fn split_image(image: &str) -> (String, Option<String>, Option<String>) {
    let (rest, digest) = match image.split_once('@') {
        Some((r, d)) => (r, Some(d.to_string())),
        None => (image, None),
    };
    let last_slash = rest.rfind('/').map_or(0, |i| i + 1);
    match rest[last_slash..].rfind(':') {
        Some(i) => {
            let at = last_slash + i;
            (
                rest[..at].to_string(),
                Some(rest[at + 1..].to_string()),
                digest,
            )
        }
        None => (rest.to_string(), None, digest),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "06f1bc2493b9c4639f28edfb8d77c141cdb7dcfee49049bc36314768dcb31028";

    fn write(root: &Path, rel: &str, text: &str) {
        let p = root.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    }

    fn tmp(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("osprey-rt-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn image_references() {
        assert_eq!(
            split_image("localhost/busybox:test"),
            ("localhost/busybox".into(), Some("test".into()), None)
        );
        assert_eq!(
            split_image("registry:5000/ns/app"),
            ("registry:5000/ns/app".into(), None, None)
        );
        assert_eq!(
            split_image("docker.io/library/nginx:1.25@sha256:abc"),
            (
                "docker.io/library/nginx".into(),
                Some("1.25".into()),
                Some("sha256:abc".into())
            )
        );
        assert_eq!(
            split_image("nginx@sha256:abc"),
            ("nginx".into(), None, Some("sha256:abc".into()))
        );
        assert_eq!(split_image(""), (String::new(), None, None));
        assert_eq!(split_image(":"), (String::new(), Some(String::new()), None));
    }

    #[test]
    fn podman_state_files() {
        let root = tmp("podman");
        write(
            &root,
            "var/lib/containers/storage/overlay-containers/containers.json",
            &format!(
                r#"[{{"id":"{ID}","names":["web"],"image":"e81a","metadata":"{{\"image-name\":\"localhost/busybox:test\",\"name\":\"web\"}}"}}]"#
            ),
        );
        write(
            &root,
            &format!("var/lib/containers/storage/overlay-containers/{ID}/userdata/config.json"),
            r#"{"annotations":{"io.container.manager":"libpod","io.podman.annotations.privileged":"FALSE"},"process":{"capabilities":{"bounding":["CAP_CHOWN"]}}}"#,
        );
        write(
            &root,
            "var/lib/containers/storage/overlay-images/images.json",
            r#"[{"id":"e81a","digest":"sha256:ab81"}]"#,
        );
        let m = lookup(&root, Runtime::Podman, ID).unwrap();
        assert_eq!(m.runtime, Some(Runtime::Podman));
        assert_eq!(m.name.as_deref(), Some("web"));
        assert_eq!(m.image.as_deref(), Some("localhost/busybox:test"));
        assert_eq!(m.image_digest.as_deref(), Some("sha256:ab81"));
        assert_eq!(m.privileged, Some(false));
        assert_eq!(lookup(&root, Runtime::Podman, &"0".repeat(64)), None);
        std::fs::remove_dir_all(root).unwrap();
    }

    #[test]
    fn containerd_cri_annotations() {
        let root = tmp("containerd");
        write(
            &root,
            &format!("run/containerd/io.containerd.runtime.v2.task/k8s.io/{ID}/config.json"),
            r#"{"annotations":{
                "io.kubernetes.cri.container-type":"container",
                "io.kubernetes.cri.container-name":"nginx",
                "io.kubernetes.cri.image-name":"docker.io/library/nginx:1.25",
                "io.kubernetes.cri.sandbox-name":"web-7d4b9",
                "io.kubernetes.cri.sandbox-namespace":"shop",
                "io.kubernetes.cri.sandbox-uid":"0a1b"},
              "process":{"capabilities":{"bounding":["CAP_CHOWN","CAP_SYS_ADMIN","CAP_SYS_MODULE","CAP_SYS_RAWIO","CAP_SYS_BOOT"]}},
              "linux":{"maskedPaths":[]}}"#,
        );
        let m = lookup(&root, Runtime::Unknown, ID).unwrap();
        assert_eq!(m.runtime, Some(Runtime::Containerd));
        assert_eq!(m.name.as_deref(), Some("nginx"));
        assert_eq!(m.image.as_deref(), Some("docker.io/library/nginx:1.25"));
        assert_eq!(m.pod_name.as_deref(), Some("web-7d4b9"));
        assert_eq!(m.pod_namespace.as_deref(), Some("shop"));
        assert_eq!(m.pod_uid.as_deref(), Some("0a1b"));
        assert!(m.pod_labels.is_empty(), "{:?}", m.pod_labels);
        assert_eq!(
            m.privileged,
            Some(true),
            "all caps, no seccomp, nothing masked"
        );
        std::fs::remove_dir_all(root).unwrap();
    }

    #[test]
    fn containerd_ctr_labels_and_plain_containers() {
        let root = tmp("ctr");
        write(
            &root,
            &format!("run/containerd/io.containerd.runtime.v2.task/k8s.io/{ID}/config.json"),
            r#"{"annotations":{"app":"web","tier":"front","io.kubernetes.pod.name":"web-1","io.kubernetes.pod.namespace":"shop"},
               "process":{"capabilities":{"bounding":["CAP_CHOWN"]}},"linux":{"seccomp":{},"maskedPaths":["/proc/kcore"]}}"#,
        );
        let m = lookup(&root, Runtime::Containerd, ID).unwrap();
        assert_eq!(m.pod_name.as_deref(), Some("web-1"));
        assert_eq!(m.pod_namespace.as_deref(), Some("shop"));
        assert_eq!(
            m.pod_labels,
            BTreeMap::from([
                ("app".into(), "web".into()),
                ("tier".into(), "front".into())
            ])
        );
        assert_eq!(m.privileged, Some(false));

        let plain = "1".repeat(64);
        write(
            &root,
            &format!("run/containerd/io.containerd.runtime.v2.task/default/{plain}/config.json"),
            r#"{"annotations":{"note":"not a pod"}}"#,
        );
        let m = lookup(&root, Runtime::Containerd, &plain).unwrap();
        assert_eq!(m.name.as_deref(), Some(plain.as_str()));
        assert!(
            m.pod_labels.is_empty(),
            "annotations of a non-pod are not pod labels"
        );
        assert_eq!(m.privileged, None, "no process section: unknown");
        std::fs::remove_dir_all(root).unwrap();
    }

    #[test]
    fn crio_and_docker() {
        let root = tmp("crio-docker");
        write(
            &root,
            &format!("run/containers/storage/overlay-containers/{ID}/userdata/config.json"),
            r#"{"annotations":{"io.kubernetes.cri-o.ContainerID":"x","io.kubernetes.cri-o.ImageName":"quay.io/app:2",
               "io.kubernetes.container.name":"app","io.kubernetes.pod.name":"p","io.kubernetes.pod.namespace":"n",
               "io.kubernetes.pod.uid":"u","io.kubernetes.cri-o.Labels":"{\"app\":\"a\",\"io.kubernetes.pod.name\":\"p\"}"}}"#,
        );
        let m = lookup(&root, Runtime::CriO, ID).unwrap();
        assert_eq!(m.runtime, Some(Runtime::CriO));
        assert_eq!(m.name.as_deref(), Some("app"));
        assert_eq!(m.image.as_deref(), Some("quay.io/app:2"));
        assert_eq!(m.pod_uid.as_deref(), Some("u"));
        assert_eq!(m.pod_labels, BTreeMap::from([("app".into(), "a".into())]));

        let d = "2".repeat(64);
        write(
            &root,
            &format!("var/lib/docker/containers/{d}/config.v2.json"),
            r#"{"Name":"/db","Config":{"Image":"postgres:16","Labels":{}}}"#,
        );
        write(
            &root,
            &format!("var/lib/docker/containers/{d}/hostconfig.json"),
            r#"{"Privileged":true}"#,
        );
        let m = lookup(&root, Runtime::Docker, &d).unwrap();
        assert_eq!(m.name.as_deref(), Some("db"));
        assert_eq!(m.image.as_deref(), Some("postgres:16"));
        assert_eq!(m.privileged, Some(true));
        std::fs::remove_dir_all(root).unwrap();
    }

    #[test]
    fn malformed_files_are_not_metadata() {
        let root = tmp("bad");
        write(
            &root,
            "var/lib/containers/storage/overlay-containers/containers.json",
            "{not json",
        );
        write(
            &root,
            &format!("run/containerd/io.containerd.runtime.v2.task/k8s.io/{ID}/config.json"),
            r#"{"annotations":["wrong type"]}"#,
        );
        write(
            &root,
            &format!("var/lib/docker/containers/{ID}/config.v2.json"),
            "\u{0}\u{1}",
        );
        assert_eq!(lookup(&root, Runtime::Unknown, ID), None);
        std::fs::remove_dir_all(root).unwrap();
    }

    #[test]
    fn containerd_api_fills_image_and_pod_from_cri_labels() {
        let root = tmp("ctrd-api");
        // A CRI container on containerd 1.6: a bundle without image or pod annotations.
        write(
            &root,
            &format!("run/containerd/io.containerd.runtime.v2.task/k8s.io/{ID}/config.json"),
            r#"{"annotations":{"io.kubernetes.cri.container-type":"container"}}"#,
        );
        assert_eq!(containerd_namespace(&root, ID).as_deref(), Some("k8s.io"));
        let mut m = lookup(&root, Runtime::Containerd, ID).unwrap();
        assert_eq!(m.image, None);
        let labels: BTreeMap<String, String> = [
            ("io.kubernetes.pod.name", "web-0"),
            ("io.kubernetes.pod.namespace", "shop"),
            ("io.kubernetes.pod.uid", "u-1"),
            ("io.kubernetes.container.name", "nginx"),
            ("app", "web"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        merge_containerd_api(&mut m, "docker.io/library/nginx:1.27", &labels);
        assert_eq!(m.image.as_deref(), Some("docker.io/library/nginx:1.27"));
        assert_eq!(m.pod_name.as_deref(), Some("web-0"));
        assert_eq!(m.pod_namespace.as_deref(), Some("shop"));
        assert_eq!(m.name.as_deref(), Some("nginx"));
        assert_eq!(m.pod_labels.get("app").map(String::as_str), Some("web"));
        assert!(!m.pod_labels.contains_key("io.kubernetes.pod.name"));
        std::fs::remove_dir_all(root).unwrap();
    }
}
