//! The shipped deployment, played for real: the pod templates of daemonset.yaml's agent
//! DaemonSet and collector Deployment run as containers of the image `cargo xtask image` builds,
//! with the manifest's own args, env, capabilities, user, read-only root, host mounts, secrets
//! and memory limits. An attack on the host must reach `osprey tail` connected to the collector
//! over mTLS with a reader certificate, and the manifest's probes must pass.
//!
//! podman 4.3 (Debian 12) cannot play these objects itself: `kube play` takes no DaemonSet and
//! ignores `hostPID`, so each pod template is translated field by field into `podman run`
//! flags ([`Pod::run_args`]); a field this translation does not know fails the test rather
//! than being dropped. The only substitutions, named where they happen: `spec.nodeName` is the
//! test's node name, the spool's hostPath is a scratch directory, Secrets and the ConfigMap are
//! files the test writes, and the Service's DNS name is an alias on a podman network the test
//! creates (its own network namespaces; the test talks to the containers through ports
//! published on 127.0.0.1).

mod support;

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    process::Command,
    time::{Duration, Instant},
};

use serde_json::Value;
use support::Agent;
use yaml_rust2::{Yaml, YamlLoader};

const NODE: &str = "node-a";

fn manifest() -> Vec<Yaml> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../daemonset.yaml");
    let text = std::fs::read_to_string(path).expect("daemonset.yaml at the repository root");
    YamlLoader::load_from_str(&text).expect("daemonset.yaml is YAML")
}

fn find<'a>(docs: &'a [Yaml], kind: &str, name: &str) -> &'a Yaml {
    docs.iter()
        .find(|d| d["kind"].as_str() == Some(kind) && d["metadata"]["name"].as_str() == Some(name))
        .unwrap_or_else(|| panic!("{kind}/{name} missing from daemonset.yaml"))
}

fn podman(args: &[&str]) -> std::process::Output {
    Command::new("podman")
        .args(args)
        .output()
        .expect("podman runs")
}

fn podman_ok(args: &[&str]) -> String {
    let out = podman(args);
    assert!(
        out.status.success(),
        "podman {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// Files the test writes for the cluster objects a pod mounts (Secrets, ConfigMaps) and the
/// host paths it must not touch (the spool).
struct Cluster {
    dir: PathBuf,
    network: String,
    /// `name/key` → contents, for Secrets; ConfigMaps come from the manifest itself.
    secrets: BTreeMap<String, BTreeMap<String, String>>,
    containers: Vec<String>,
}

impl Cluster {
    fn new() -> Cluster {
        let dir = std::env::temp_dir().join(format!("osprey-deploy-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let network = format!("osprey-deploy-{}", std::process::id());
        podman_ok(&["network", "create", &network]);
        Cluster {
            dir,
            network,
            secrets: BTreeMap::new(),
            containers: Vec::new(),
        }
    }

    /// A Secret or ConfigMap's keys as files in a directory, as the kubelet mounts them.
    fn materialize(&self, kind: &str, name: &str, data: &BTreeMap<String, String>) -> PathBuf {
        let d = self.dir.join(kind).join(name);
        std::fs::create_dir_all(&d).unwrap();
        for (k, v) in data {
            std::fs::write(d.join(k), v).unwrap();
        }
        d
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for c in &self.containers {
            let _ = podman(&["rm", "-f", "-t", "2", c]);
        }
        let _ = podman(&["network", "rm", "-f", &self.network]);
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// One pod template of the manifest, with its first container.
struct Pod<'a> {
    doc: &'a Yaml,
    spec: &'a Yaml,
    container: &'a Yaml,
}

impl<'a> Pod<'a> {
    fn of(doc: &'a Yaml) -> Pod<'a> {
        let spec = &doc["spec"]["template"]["spec"];
        let containers = spec["containers"].as_vec().expect("containers");
        assert_eq!(containers.len(), 1, "one container per pod");
        Pod {
            doc,
            spec,
            container: &containers[0],
        }
    }

    fn name(&self) -> &str {
        self.doc["metadata"]["name"].as_str().unwrap()
    }

    fn container_port(&self, name: &str) -> i64 {
        self.container["ports"]
            .as_vec()
            .into_iter()
            .flatten()
            .find(|p| p["name"].as_str() == Some(name))
            .and_then(|p| p["containerPort"].as_i64())
            .unwrap_or_else(|| panic!("{}: no port named {name}", self.name()))
    }

    /// `podman run` flags for everything the pod template says. Unknown fields fail the test.
    fn run_args(&self, cluster: &Cluster, aliases: &[String]) -> Vec<String> {
        let mut a: Vec<String> = vec![
            "run".into(),
            "-d".into(),
            "--runtime".into(),
            "runc".into(),
            "--name".into(),
            format!("{}-{}", cluster.network, self.name()),
            "--network".into(),
            cluster.network.clone(),
        ];
        for alias in aliases {
            a.extend(["--network-alias".into(), alias.clone()]);
        }
        let known_pod = [
            "serviceAccountName",
            "automountServiceAccountToken",
            "hostPID",
            "tolerations",
            "priorityClassName",
            "terminationGracePeriodSeconds",
            "containers",
            "volumes",
        ];
        for (k, _) in self.spec.as_hash().unwrap() {
            let k = k.as_str().unwrap();
            assert!(known_pod.contains(&k), "pod field {k} is not played");
        }
        if self.spec["hostPID"].as_bool() == Some(true) {
            a.extend(["--pid".into(), "host".into()]);
        }
        if let Some(g) = self.spec["terminationGracePeriodSeconds"].as_i64() {
            a.extend(["--stop-timeout".into(), g.to_string()]);
        }
        let c = self.container;
        let known_container = [
            "name",
            "image",
            "imagePullPolicy",
            "args",
            "env",
            "ports",
            "securityContext",
            "resources",
            "livenessProbe",
            "readinessProbe",
            "volumeMounts",
        ];
        for (k, _) in c.as_hash().unwrap() {
            let k = k.as_str().unwrap();
            assert!(
                known_container.contains(&k),
                "container field {k} is not played"
            );
        }
        for e in c["env"].as_vec().into_iter().flatten() {
            let name = e["name"].as_str().unwrap();
            let value = match (
                e["value"].as_str(),
                e["valueFrom"]["fieldRef"]["fieldPath"].as_str(),
            ) {
                (Some(v), _) => v.to_string(),
                (None, Some("spec.nodeName")) => NODE.to_string(),
                other => panic!("env {name}: {other:?} is not played"),
            };
            a.extend(["--env".into(), format!("{name}={value}")]);
        }
        for p in c["ports"].as_vec().into_iter().flatten() {
            let port = p["containerPort"].as_i64().unwrap();
            a.extend(["--publish".into(), format!("127.0.0.1::{port}")]);
        }
        let sc = &c["securityContext"];
        for (k, v) in sc.as_hash().into_iter().flatten() {
            match (k.as_str().unwrap(), v) {
                ("privileged", Yaml::Boolean(p)) => {
                    if *p {
                        a.push("--privileged".into());
                    }
                }
                ("allowPrivilegeEscalation", Yaml::Boolean(false)) => {
                    a.extend(["--security-opt".into(), "no-new-privileges".into()]);
                }
                ("readOnlyRootFilesystem", Yaml::Boolean(true)) => a.push("--read-only".into()),
                ("runAsUser" | "runAsGroup" | "runAsNonRoot", _) => {}
                ("seccompProfile", p) => match p["type"].as_str() {
                    Some("Unconfined") => {
                        a.extend(["--security-opt".into(), "seccomp=unconfined".into()]);
                    }
                    Some("RuntimeDefault") => {}
                    other => panic!("seccompProfile {other:?} is not played"),
                },
                ("capabilities", caps) => {
                    for d in caps["drop"].as_vec().into_iter().flatten() {
                        a.push(format!("--cap-drop={}", d.as_str().unwrap().to_lowercase()));
                    }
                    for add in caps["add"].as_vec().into_iter().flatten() {
                        a.push(format!("--cap-add={}", add.as_str().unwrap()));
                    }
                }
                (k, v) => panic!("securityContext.{k} = {v:?} is not played"),
            }
        }
        match (sc["runAsUser"].as_i64(), sc["runAsGroup"].as_i64()) {
            (Some(u), Some(g)) => a.extend(["--user".into(), format!("{u}:{g}")]),
            (Some(u), None) => a.extend(["--user".into(), u.to_string()]),
            _ => {}
        }
        if let Some(m) = c["resources"]["limits"]["memory"].as_str() {
            let mib = m.strip_suffix("Mi").expect("memory limits in Mi");
            a.extend(["--memory".into(), format!("{mib}m")]);
        }
        let volumes: BTreeMap<&str, &Yaml> = self.spec["volumes"]
            .as_vec()
            .into_iter()
            .flatten()
            .map(|v| (v["name"].as_str().unwrap(), v))
            .collect();
        for m in c["volumeMounts"].as_vec().into_iter().flatten() {
            let name = m["name"].as_str().unwrap();
            let at = m["mountPath"].as_str().unwrap();
            let ro = m["readOnly"].as_bool() == Some(true);
            let v = volumes
                .get(name)
                .unwrap_or_else(|| panic!("volume {name} is not defined"));
            let source = if let Some(path) = v["hostPath"]["path"].as_str() {
                if path == "/var/lib/osprey" {
                    // The spool: the test's own directory, not the machine's.
                    let d = cluster.dir.join("spool");
                    std::fs::create_dir_all(&d).unwrap();
                    d
                } else {
                    if v["hostPath"]["type"].as_str() == Some("DirectoryOrCreate") {
                        std::fs::create_dir_all(path).unwrap();
                    }
                    PathBuf::from(path)
                }
            } else if let Some(secret) = v["secret"]["secretName"].as_str() {
                let data = cluster
                    .secrets
                    .get(secret)
                    .unwrap_or_else(|| panic!("the test has no Secret {secret}"));
                cluster.materialize("secret", secret, data)
            } else if let Some(cm) = v["configMap"]["name"].as_str() {
                let doc = find(&manifest(), "ConfigMap", cm).clone();
                let data = doc["data"]
                    .as_hash()
                    .unwrap()
                    .iter()
                    .map(|(k, v)| (k.as_str().unwrap().into(), v.as_str().unwrap().into()))
                    .collect();
                cluster.materialize("configmap", cm, &data)
            } else {
                panic!("volume {name}: kind not played");
            };
            let mut spec = format!("{}:{at}", source.display());
            if ro {
                spec.push_str(":ro");
            }
            a.extend(["--volume".into(), spec]);
        }
        a.push(c["image"].as_str().unwrap().into());
        a.extend(
            c["args"]
                .as_vec()
                .into_iter()
                .flatten()
                .map(|x| x.as_str().unwrap().to_string()),
        );
        a
    }

    /// Starts the pod's container; returns its name.
    fn start(&self, cluster: &mut Cluster, aliases: &[String]) -> String {
        let args = self.run_args(cluster, aliases);
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        podman_ok(&refs);
        let name = format!("{}-{}", cluster.network, self.name());
        cluster.containers.push(name.clone());
        name
    }

    /// The manifest's probes (httpGet), against the port podman published for it.
    fn probe(&self, container: &str) -> Vec<(String, u16, String)> {
        let mut out = Vec::new();
        for probe in ["livenessProbe", "readinessProbe"] {
            let p = &self.container[probe]["httpGet"];
            let path = p["path"].as_str().expect("httpGet probes");
            let port = match &p["port"] {
                Yaml::String(name) => self.container_port(name),
                Yaml::Integer(n) => *n,
                other => panic!("probe port {other:?}"),
            };
            let host_port = published(container, port);
            let (code, body) = support::http_get(host_port, path).unwrap_or((0, String::new()));
            out.push((format!("{probe} {path}"), code, body));
        }
        out
    }
}

/// The 127.0.0.1 port podman published for a container port.
fn published(container: &str, port: i64) -> u16 {
    let out = podman_ok(&["port", container, &format!("{port}/tcp")]);
    out.rsplit(':')
        .next()
        .and_then(|p| p.trim().parse().ok())
        .unwrap_or_else(|| panic!("podman port {container} {port}: {out}"))
}

/// A CA and the collector's, the agents' and a reader's certificates, as `osprey certs`
/// writes them.
fn certificates(dir: &Path) -> BTreeMap<String, String> {
    let osprey = env!("CARGO_BIN_EXE_osprey");
    let out = Command::new(osprey)
        .args(["certs", "--out"])
        .arg(dir)
        .output()
        .expect("osprey certs runs");
    assert!(
        out.status.success(),
        "osprey certs: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| {
            (
                e.file_name().to_string_lossy().into_owned(),
                std::fs::read_to_string(e.path()).unwrap(),
            )
        })
        .collect()
}

fn wait_logs(container: &str, marker: &str, timeout: Duration) -> String {
    let start = Instant::now();
    loop {
        let out = podman(&["logs", container]);
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        if text.contains(marker) {
            return text;
        }
        assert!(
            start.elapsed() < timeout,
            "{container} never said {marker:?}:\n{text}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn deploy_the_manifest_and_an_attack_on_the_node_reaches_a_reader_through_the_collector() {
    support::require_root();
    let docs = manifest();
    let agent = Pod::of(find(&docs, "DaemonSet", "osprey-agent"));
    let collector = Pod::of(find(&docs, "Deployment", "osprey-collector"));
    let image = agent.container["image"].as_str().unwrap();
    assert!(
        podman(&["image", "exists", image]).status.success(),
        "the image {image} is missing: `cargo xtask image` builds it (`cargo xtask test` does first)"
    );

    let mut cluster = Cluster::new();
    let certs = certificates(&cluster.dir.join("certs"));
    let pick = |names: [(&str, &str); 3]| -> BTreeMap<String, String> {
        names
            .iter()
            .map(|(key, file)| ((*key).to_string(), certs[*file].clone()))
            .collect()
    };
    cluster.secrets.insert(
        "osprey-collector-tls".into(),
        pick([
            ("ca.crt", "ca.crt"),
            ("tls.crt", "collector.crt"),
            ("tls.key", "collector.key"),
        ]),
    );
    cluster.secrets.insert(
        "osprey-agent-tls".into(),
        pick([
            ("ca.crt", "ca.crt"),
            ("tls.crt", "agent.crt"),
            ("tls.key", "agent.key"),
        ]),
    );

    // The collector, reachable under its Service's name, as the agents' args spell it.
    let service = find(&docs, "Service", "osprey-collector");
    let svc_name = format!(
        "{}.{}.svc",
        service["metadata"]["name"].as_str().unwrap(),
        service["metadata"]["namespace"].as_str().unwrap()
    );
    let col = collector.start(&mut cluster, &[svc_name]);
    wait_logs(&col, "osprey collector is serving", Duration::from_secs(30));
    for (probe, code, body) in collector.probe(&col) {
        assert_eq!(code, 200, "collector {probe}: {body}");
    }

    let ag = agent.start(&mut cluster, &[]);
    wait_logs(&ag, "osprey is running", Duration::from_secs(60));
    wait_logs(&ag, "connected to the collector", Duration::from_secs(30));

    // A reader follows the collector from outside, over mTLS with its own certificate.
    let dir = cluster.dir.join("certs");
    let p = |f: &str| dir.join(f).display().to_string();
    let grpc = published(&col, collector.container_port("grpc"));
    let mut tail = Agent::spawn(
        "osprey tail",
        &[
            "tail".to_string(),
            format!("127.0.0.1:{grpc}"),
            "--tls-ca".into(),
            p("ca.crt"),
            "--tls-cert".into(),
            p("reader.crt"),
            "--tls-key".into(),
            p("reader.key"),
            "--tls-server-name".into(),
            "osprey-collector.osprey.svc".into(),
            "--rule".into(),
            "Read sensitive file".into(),
            "-o".into(),
            "json".into(),
        ],
        None,
    );

    // The attack, on the node itself: a copied `cat` reads the shadow file.
    let thief = cluster.dir.join("thief");
    std::fs::copy("/bin/cat", &thief).unwrap();
    let marker = Instant::now();
    let mut seen: Option<Value> = None;
    while seen.is_none() && marker.elapsed() < Duration::from_secs(30) {
        let _ = Command::new(&thief).arg("/etc/shadow").output();
        let got = tail.collect_for(Duration::from_secs(2));
        seen = got
            .iter()
            .find(|v| {
                v["rule"] == "Read sensitive file"
                    && v["output"].as_str().is_some_and(|o| o.contains("thief"))
            })
            .cloned();
    }
    let a = seen.unwrap_or_else(|| {
        panic!(
            "no alert reached the reader;\nagent:\n{}\ncollector:\n{}\ntail:\n{}",
            wait_logs(&ag, "", Duration::ZERO),
            wait_logs(&col, "", Duration::ZERO),
            tail.stderr()
        )
    });
    assert_eq!(
        a["node"], NODE,
        "the node's name comes from spec.nodeName: {a}"
    );
    for (probe, code, body) in agent.probe(&ag) {
        assert_eq!(code, 200, "agent {probe}: {body}");
    }
    for (probe, code, body) in collector.probe(&col) {
        assert_eq!(code, 200, "collector {probe} after the alert: {body}");
    }
}
