//! Certificates and roles. `osprey certs` issues a CA and the collector's, agents' and readers'
//! certificates; the servers read a peer's role from its certificate, never from what it says.
//!
//! A role is a URI subject alternative name:
//!
//! | URI | may |
//! |---|---|
//! | `urn:osprey:reader` | Subscribe, Status |
//! | `urn:osprey:agent:node:<name>` | Push as node `<name>` (one URI per node), Status |
//! | `urn:osprey:agent:fleet` | Push as any node, Status (one Secret shared by a DaemonSet) |
//! | `urn:osprey:collector` | nothing as a client: it is the collector's server certificate |
//!
//! A certificate from the CA without any `urn:osprey:` URI is treated as a reader's: it may
//! read, never push.

use std::{
    fmt,
    path::{Path, PathBuf},
};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType,
};

pub const URI_READER: &str = "urn:osprey:reader";
pub const URI_FLEET: &str = "urn:osprey:agent:fleet";
pub const URI_NODE_PREFIX: &str = "urn:osprey:agent:node:";
pub const URI_COLLECTOR: &str = "urn:osprey:collector";

/// The DNS names the manifest's collector Service answers to.
pub const COLLECTOR_NAMES: &[&str] = &[
    "osprey-collector",
    "osprey-collector.osprey",
    "osprey-collector.osprey.svc",
    "osprey-collector.osprey.svc.cluster.local",
    "localhost",
    "127.0.0.1",
];

/// What a peer's certificate allows.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Roles {
    pub reader: bool,
    pub fleet: bool,
    pub nodes: Vec<String>,
    pub collector: bool,
}

impl Roles {
    /// Read from the certificate's URI SANs.
    pub fn from_der(der: &[u8]) -> Result<Roles, String> {
        use x509_parser::prelude::{FromDer as _, GeneralName, X509Certificate};
        let (_, cert) =
            X509Certificate::from_der(der).map_err(|e| format!("unreadable certificate: {e}"))?;
        let mut r = Roles::default();
        let san = cert
            .subject_alternative_name()
            .map_err(|e| format!("unreadable subjectAltName: {e}"))?;
        for name in san.iter().flat_map(|s| s.value.general_names.iter()) {
            if let GeneralName::URI(u) = name {
                r.add_uri(u);
            }
        }
        Ok(r)
    }

    fn add_uri(&mut self, u: &str) {
        if u == URI_READER {
            self.reader = true;
        } else if u == URI_FLEET {
            self.fleet = true;
        } else if u == URI_COLLECTOR {
            self.collector = true;
        } else if let Some(n) = u.strip_prefix(URI_NODE_PREFIX)
            && !n.is_empty()
        {
            self.nodes.push(n.to_string());
        }
    }

    /// An agent's certificate (for some node, or the fleet).
    pub fn is_agent(&self) -> bool {
        self.fleet || !self.nodes.is_empty()
    }

    /// Whether this certificate may push alerts as `node`.
    pub fn may_push_as(&self, node: &str) -> bool {
        self.fleet || self.nodes.iter().any(|n| n == node)
    }

    /// Whether this certificate may Subscribe: readers, and certificates without a role.
    pub fn may_read(&self) -> bool {
        self.reader || (!self.is_agent() && !self.collector)
    }
}

impl fmt::Display for Roles {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut parts = Vec::new();
        if self.reader {
            parts.push("reader".to_string());
        }
        if self.fleet {
            parts.push("fleet-wide agent".to_string());
        }
        if !self.nodes.is_empty() {
            parts.push(format!("agent for node(s) {}", self.nodes.join(", ")));
        }
        if self.collector {
            parts.push("collector".to_string());
        }
        if parts.is_empty() {
            parts.push("no osprey role (treated as a reader)".to_string());
        }
        f.write_str(&parts.join(", "))
    }
}

#[derive(Debug, thiserror::Error)]
pub enum CertsError {
    #[error(
        "{0} already exists; pass --force to replace it, or another --out directory (an existing ca.crt/ca.key pair is reused to sign new certificates)"
    )]
    Exists(PathBuf),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{what}: {source}")]
    Rcgen {
        what: String,
        #[source]
        source: rcgen::Error,
    },
    #[error("{0}")]
    Invalid(String),
}

/// What `osprey certs` issues.
#[derive(Clone, Debug, Default)]
pub struct IssueOptions {
    pub dir: PathBuf,
    /// One agent certificate per node name (`agent-<node>.crt`).
    pub nodes: Vec<String>,
    /// A fleet-wide agent certificate (`agent.crt`): pushes as any node.
    pub fleet: bool,
    /// Reader certificates (`reader-<name>.crt`, or `reader.crt` for the name `reader`).
    pub readers: Vec<String>,
    /// Extra DNS names or IP addresses for the collector's certificate.
    pub collector_names: Vec<String>,
    /// Issue the collector's certificate.
    pub collector: bool,
    /// Validity of the leaf certificates, in days (the CA gets ten times as long).
    pub days: u32,
    /// Replace existing files.
    pub force: bool,
}

/// One file written.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Written {
    pub path: PathBuf,
    pub what: String,
}

/// The result: the files, and the `kubectl` commands that load them.
#[derive(Clone, Debug, Default)]
pub struct Issued {
    pub written: Vec<Written>,
    pub reused_ca: bool,
    pub kubectl: Vec<String>,
}

fn valid_name(n: &str) -> bool {
    !n.is_empty()
        && n.len() <= 253
        && n.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_'))
}

fn rc(what: &str) -> impl FnOnce(rcgen::Error) -> CertsError + '_ {
    move |source| CertsError::Rcgen {
        what: what.to_string(),
        source,
    }
}

fn validity(params: &mut CertificateParams, days: u32) {
    let now = time::OffsetDateTime::now_utc();
    params.not_before = now - time::Duration::hours(1);
    params.not_after = now + time::Duration::days(i64::from(days.max(1)));
}

fn leaf(
    cn: &str,
    dns: &[String],
    uris: &[String],
    eku: &[ExtendedKeyUsagePurpose],
    days: u32,
) -> Result<CertificateParams, CertsError> {
    let mut p = CertificateParams::new(Vec::<String>::new()).map_err(rc(cn))?;
    p.distinguished_name.push(DnType::CommonName, cn);
    for n in dns {
        p.subject_alt_names
            .push(match n.parse::<std::net::IpAddr>() {
                Ok(ip) => SanType::IpAddress(ip),
                Err(_) => {
                    SanType::DnsName(n.clone().try_into().map_err(|e: rcgen::Error| rc(n)(e))?)
                }
            });
    }
    for u in uris {
        p.subject_alt_names.push(SanType::URI(
            u.clone().try_into().map_err(|e: rcgen::Error| rc(u)(e))?,
        ));
    }
    p.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    p.extended_key_usages = eku.to_vec();
    p.use_authority_key_identifier_extension = true;
    validity(&mut p, days);
    Ok(p)
}

fn write(path: &Path, data: &str, secret: bool, force: bool) -> Result<(), CertsError> {
    use std::{fs::OpenOptions, io::Write as _, os::unix::fs::OpenOptionsExt as _};
    let io = |source| CertsError::Io {
        path: path.to_path_buf(),
        source,
    };
    if path.exists() && !force {
        return Err(CertsError::Exists(path.to_path_buf()));
    }
    let mut f = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(if secret { 0o600 } else { 0o644 })
        .open(path)
        .map_err(io)?;
    f.write_all(data.as_bytes()).map_err(io)
}

/// Issues the CA (or reuses `ca.crt`/`ca.key` found in the directory) and the certificates asked
/// for, into `opts.dir`.
pub fn issue(opts: &IssueOptions) -> Result<Issued, CertsError> {
    for n in opts.nodes.iter().chain(&opts.readers) {
        if !valid_name(n) {
            return Err(CertsError::Invalid(format!(
                "{n:?} is not a valid node or reader name (letters, digits, '-', '.', '_')"
            )));
        }
    }
    let dir = &opts.dir;
    std::fs::create_dir_all(dir).map_err(|source| CertsError::Io {
        path: dir.clone(),
        source,
    })?;
    let mut out = Issued::default();
    let (ca_crt, ca_key) = (dir.join("ca.crt"), dir.join("ca.key"));
    let issuer = if ca_crt.exists() && ca_key.exists() && !opts.force {
        let read = |p: &Path| {
            std::fs::read_to_string(p).map_err(|source| CertsError::Io {
                path: p.to_path_buf(),
                source,
            })
        };
        let key = KeyPair::from_pem(&read(&ca_key)?).map_err(rc("ca.key"))?;
        out.reused_ca = true;
        Issuer::from_ca_cert_pem(&read(&ca_crt)?, key).map_err(rc("ca.crt"))?
    } else {
        let mut p = CertificateParams::new(Vec::<String>::new()).map_err(rc("CA"))?;
        p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        p.distinguished_name
            .push(DnType::CommonName, "osprey alert delivery CA");
        p.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        validity(&mut p, opts.days.saturating_mul(10));
        let key = KeyPair::generate().map_err(rc("CA key"))?;
        let cert = p.self_signed(&key).map_err(rc("CA"))?;
        write(&ca_crt, &cert.pem(), false, opts.force)?;
        write(&ca_key, &key.serialize_pem(), true, opts.force)?;
        out.written.push(Written {
            path: ca_crt.clone(),
            what: "CA certificate (every component trusts it)".into(),
        });
        out.written.push(Written {
            path: ca_key.clone(),
            what: "CA key: keep it off the cluster; it signs new certificates".into(),
        });
        Issuer::new(p, key)
    };

    use ExtendedKeyUsagePurpose::{ClientAuth, ServerAuth};
    let mut emit = |stem: &str,
                    what: String,
                    params: CertificateParams|
     -> Result<(PathBuf, PathBuf), CertsError> {
        let key = KeyPair::generate().map_err(rc(stem))?;
        let cert = params.signed_by(&key, &issuer).map_err(rc(stem))?;
        let (crt, k) = (
            dir.join(format!("{stem}.crt")),
            dir.join(format!("{stem}.key")),
        );
        write(&crt, &cert.pem(), false, opts.force)?;
        write(&k, &key.serialize_pem(), true, opts.force)?;
        out.written.push(Written {
            path: crt.clone(),
            what,
        });
        out.written.push(Written {
            path: k.clone(),
            what: format!("{stem}'s key"),
        });
        Ok((crt, k))
    };
    let mut secrets = Vec::new();
    let secret = |name: &str, crt: &Path, key: &Path| {
        format!(
            "kubectl -n osprey create secret generic {name} --from-file=ca.crt={} --from-file=tls.crt={} --from-file=tls.key={}",
            ca_crt.display(),
            crt.display(),
            key.display()
        )
    };
    if opts.collector {
        let mut names: Vec<String> = COLLECTOR_NAMES.iter().map(|s| s.to_string()).collect();
        for n in &opts.collector_names {
            if !names.contains(n) {
                names.push(n.clone());
            }
        }
        let p = leaf(
            "osprey collector",
            &names,
            &[URI_COLLECTOR.to_string()],
            &[ServerAuth],
            opts.days,
        )?;
        let (c, k) = emit(
            "collector",
            format!("collector's server certificate ({})", names.join(", ")),
            p,
        )?;
        secrets.push(secret("osprey-collector-tls", &c, &k));
    }
    // An agent's certificate is also its own gRPC server's (osprey tail on the node).
    let agent_dns = ["localhost".to_string(), "127.0.0.1".to_string()];
    if opts.fleet {
        let p = leaf(
            "osprey agent (fleet)",
            &agent_dns,
            &[URI_FLEET.to_string()],
            &[ClientAuth, ServerAuth],
            opts.days,
        )?;
        let (c, k) = emit(
            "agent",
            "fleet-wide agent certificate: pushes as ANY node".into(),
            p,
        )?;
        secrets.push(secret("osprey-agent-tls", &c, &k));
    }
    for n in &opts.nodes {
        let p = leaf(
            &format!("osprey agent {n}"),
            &agent_dns,
            &[format!("{URI_NODE_PREFIX}{n}")],
            &[ClientAuth, ServerAuth],
            opts.days,
        )?;
        let (c, k) = emit(
            &format!("agent-{n}"),
            format!("agent certificate: pushes as node {n} only"),
            p,
        )?;
        secrets.push(format!(
            "# node {n}: mount it on that node only (e.g. a CSI driver), never as the DaemonSet's shared Secret\n{}",
            secret(&format!("osprey-agent-tls-{n}"), &c, &k)
        ));
    }
    for r in &opts.readers {
        let stem = if r == "reader" {
            "reader".to_string()
        } else {
            format!("reader-{r}")
        };
        let p = leaf(
            &format!("osprey reader {r}"),
            &[],
            &[URI_READER.to_string()],
            &[ClientAuth],
            opts.days,
        )?;
        emit(
            &stem,
            format!("reader certificate for {r}: Subscribe and Status, never Push"),
            p,
        )?;
    }
    out.kubectl = secrets;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn der_of(path: &Path) -> Vec<u8> {
        use rustls::pki_types::{CertificateDer, pem::PemObject as _};
        CertificateDer::from_pem_file(path).unwrap().to_vec()
    }

    #[test]
    fn issued_certificates_carry_their_roles_and_a_second_run_reuses_the_ca() {
        let dir = std::env::temp_dir().join(format!("osprey-certs-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let mut opts = IssueOptions {
            dir: dir.clone(),
            nodes: vec!["node-a".into()],
            fleet: true,
            readers: vec!["reader".into(), "alice".into()],
            collector: true,
            collector_names: vec!["collector.example".into()],
            days: 30,
            force: false,
        };
        let issued = issue(&opts).unwrap();
        assert!(!issued.reused_ca);
        assert_eq!(issued.kubectl.len(), 3);
        let roles = |f: &str| Roles::from_der(&der_of(&dir.join(f))).unwrap();
        assert_eq!(roles("agent-node-a.crt").nodes, vec!["node-a".to_string()]);
        assert!(roles("agent-node-a.crt").may_push_as("node-a"));
        assert!(!roles("agent-node-a.crt").may_push_as("node-b"));
        assert!(!roles("agent-node-a.crt").may_read());
        assert!(roles("agent.crt").may_push_as("anything"));
        assert!(roles("reader.crt").may_read());
        assert!(!roles("reader-alice.crt").may_push_as("node-a"));
        assert!(roles("collector.crt").collector);
        assert!(!roles("collector.crt").may_push_as("node-a"));
        // Existing files are not overwritten; an existing CA signs new certificates.
        assert!(matches!(issue(&opts), Err(CertsError::Exists(_))));
        opts = IssueOptions {
            dir: dir.clone(),
            nodes: vec!["node-b".into()],
            days: 30,
            ..Default::default()
        };
        let again = issue(&opts).unwrap();
        assert!(again.reused_ca);
        assert!(roles("agent-node-b.crt").may_push_as("node-b"));
        assert!(
            issue(&IssueOptions {
                dir: dir.clone(),
                nodes: vec!["bad/name".into()],
                ..Default::default()
            })
            .is_err()
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
