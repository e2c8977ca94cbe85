//! Least-privilege invariants of daemonset.yaml, so they can't regress. (`cargo xtask test`
//! also validates the file against the Kubernetes schemas with kubernetes-validate.)

use yaml_rust2::{Yaml, YamlLoader};

fn docs() -> Vec<Yaml> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../daemonset.yaml");
    let text = std::fs::read_to_string(path).expect("daemonset.yaml at the repository root");
    YamlLoader::load_from_str(&text).expect("daemonset.yaml is YAML")
}

fn find<'a>(docs: &'a [Yaml], kind: &str, name: &str) -> &'a Yaml {
    docs.iter()
        .find(|d| d["kind"].as_str() == Some(kind) && d["metadata"]["name"].as_str() == Some(name))
        .unwrap_or_else(|| panic!("{kind}/{name} missing from daemonset.yaml"))
}

fn strs(y: &Yaml) -> Vec<&str> {
    y.as_vec()
        .map(|v| v.iter().filter_map(Yaml::as_str).collect())
        .unwrap_or_default()
}

#[test]
fn manifest_has_every_piece() {
    let d = docs();
    find(&d, "Namespace", "osprey");
    find(&d, "ServiceAccount", "osprey-agent");
    find(&d, "ConfigMap", "osprey-rules");
    find(&d, "DaemonSet", "osprey-agent");
    find(&d, "Deployment", "osprey-collector");
    find(&d, "Service", "osprey-collector");
    // The agent asks the API server nothing: no RBAC grants at all.
    assert!(
        !d.iter().any(|x| matches!(
            x["kind"].as_str(),
            Some("ClusterRole" | "ClusterRoleBinding" | "Role" | "RoleBinding")
        )),
        "no RBAC is needed, so none is granted"
    );
}

#[test]
fn agent_is_least_privilege() {
    let d = docs();
    let ds = find(&d, "DaemonSet", "osprey-agent");
    let pod = &ds["spec"]["template"]["spec"];
    assert_eq!(pod["automountServiceAccountToken"].as_bool(), Some(false));
    assert_eq!(
        pod["priorityClassName"].as_str(),
        Some("system-node-critical")
    );
    let tolerations = pod["tolerations"].as_vec().unwrap();
    assert!(
        tolerations
            .iter()
            .any(|t| t["operator"].as_str() == Some("Exists") && t["key"].is_badvalue()),
        "tolerates every taint"
    );
    assert_eq!(
        ds["spec"]["updateStrategy"]["type"].as_str(),
        Some("RollingUpdate")
    );

    let c = &pod["containers"][0];
    let sc = &c["securityContext"];
    assert_ne!(sc["privileged"].as_bool(), Some(true), "not privileged");
    assert_eq!(sc["allowPrivilegeEscalation"].as_bool(), Some(false));
    assert_eq!(sc["readOnlyRootFilesystem"].as_bool(), Some(true));
    assert_eq!(strs(&sc["capabilities"]["drop"]), ["ALL"]);
    let mut added = strs(&sc["capabilities"]["add"]);
    added.sort();
    assert_eq!(
        added,
        [
            "BPF",
            "DAC_READ_SEARCH",
            "PERFMON",
            "SYS_PTRACE",
            "SYS_RESOURCE"
        ],
        "only the capabilities the agent needs (each explained in the manifest)"
    );
    assert!(!added.contains(&"SYS_ADMIN"));

    for probe in ["livenessProbe", "readinessProbe"] {
        assert!(!c[probe]["httpGet"]["path"].is_badvalue(), "{probe}");
    }
    assert_eq!(
        c["livenessProbe"]["httpGet"]["path"].as_str(),
        Some("/healthz")
    );
    assert_eq!(
        c["readinessProbe"]["httpGet"]["path"].as_str(),
        Some("/readyz")
    );
    for kind in ["requests", "limits"] {
        for r in ["cpu", "memory"] {
            assert!(
                !c["resources"][kind][r].is_badvalue(),
                "resources.{kind}.{r}"
            );
        }
    }

    // Everything it mounts from the host is read-only, except its own spool directory.
    let volumes = pod["volumes"].as_vec().unwrap();
    for m in c["volumeMounts"].as_vec().unwrap() {
        let name = m["name"].as_str().unwrap();
        let vol = volumes
            .iter()
            .find(|v| v["name"].as_str() == Some(name))
            .unwrap_or_else(|| panic!("volume {name}"));
        if name == "spool" {
            assert_eq!(vol["hostPath"]["path"].as_str(), Some("/var/lib/osprey"));
            continue;
        }
        assert_eq!(
            m["readOnly"].as_bool(),
            Some(true),
            "{name} must be read-only"
        );
    }
    let host_paths: Vec<&str> = volumes
        .iter()
        .filter_map(|v| v["hostPath"]["path"].as_str())
        .collect();
    for p in ["/sys/kernel/btf", "/sys/kernel/tracing", "/sys/fs/cgroup"] {
        assert!(host_paths.contains(&p), "mounts {p}");
    }
    assert!(
        !host_paths
            .iter()
            .any(|p| *p == "/" || *p == "/etc" || p.ends_with(".sock")),
        "no host root, /etc or runtime sockets: {host_paths:?}"
    );
    // mTLS material comes from a Secret.
    assert!(
        volumes
            .iter()
            .any(|v| v["secret"]["secretName"].as_str() == Some("osprey-agent-tls"))
    );
}

#[test]
fn collector_runs_unprivileged() {
    let d = docs();
    let dep = find(&d, "Deployment", "osprey-collector");
    let c = &dep["spec"]["template"]["spec"]["containers"][0];
    let sc = &c["securityContext"];
    assert_eq!(sc["runAsNonRoot"].as_bool(), Some(true));
    assert_eq!(strs(&sc["capabilities"]["drop"]), ["ALL"]);
    assert!(
        sc["capabilities"]["add"].is_badvalue(),
        "no capabilities added"
    );
    assert_eq!(sc["readOnlyRootFilesystem"].as_bool(), Some(true));
}
