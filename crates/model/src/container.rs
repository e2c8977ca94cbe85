//! The container a process runs in: identity and Kubernetes metadata (Falco's container
//! plugin fields), attached to events by the agent's container table.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// What is known about the container a process runs in (Falco's container plugin fields).
///
/// Serialized into recordings (`Enriched.container`), so a replay judges with the identity the
/// live agent saw.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ContainerInfo {
    /// 12-character id, or `host` for processes outside containers.
    pub id: String,
    /// The whole id (64 hex characters for every runtime here), or `host`.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub full_id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub image_repository: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub image_tag: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub image_digest: Option<String>,
    /// `docker`, `containerd`, `cri-o`, `podman`, or `host` (`container.type`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub runtime: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub privileged: Option<bool>,
    /// Wall-clock nanoseconds of the container's start.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub start_ts: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub k8s_ns_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub k8s_pod_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub k8s_pod_uid: Option<String>,
    /// The pod's labels (without the `io.kubernetes.*` bookkeeping the kubelet adds).
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub k8s_pod_labels: BTreeMap<String, String>,
}

impl ContainerInfo {
    /// What processes outside any container get: `container.id = host`, like Falco.
    pub fn host() -> Self {
        Self {
            id: "host".into(),
            full_id: "host".into(),
            name: Some("host".into()),
            runtime: Some("host".into()),
            ..Self::default()
        }
    }

    pub fn is_host(&self) -> bool {
        self.id == "host"
    }

    /// `k8s.pod.labels`: `key:value` pairs joined by commas, in key order (Falco's format).
    pub fn pod_labels_text(&self) -> Option<String> {
        if self.k8s_pod_labels.is_empty() {
            return None;
        }
        let parts: Vec<String> = self
            .k8s_pod_labels
            .iter()
            .map(|(k, v)| format!("{k}:{v}"))
            .collect();
        Some(parts.join(","))
    }
}
