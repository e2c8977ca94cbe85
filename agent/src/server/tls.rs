//! TLS for every gRPC endpoint (rustls through tonic). Servers present a certificate and, with
//! a client CA, require and verify client certificates (mTLS); clients verify the server
//! against a CA and present their own certificate.

use std::path::{Path, PathBuf};

use tonic::transport::{Certificate, ClientTlsConfig, Identity, ServerTlsConfig};

use super::ServerError;

/// Server side: `--tls-cert`, `--tls-key`, `--tls-client-ca`.
#[derive(Clone, Debug, Default, clap::Args)]
pub struct ServerTlsArgs {
    /// Server certificate (PEM); with --tls-key, the endpoint speaks TLS only.
    #[arg(long, env = "OSPREY_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// The server certificate's private key (PEM).
    #[arg(long, env = "OSPREY_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// CA bundle (PEM) that signs client certificates: clients without one it signed are refused.
    #[arg(long, env = "OSPREY_TLS_CLIENT_CA", requires = "tls_cert")]
    pub tls_client_ca: Option<PathBuf>,
}

/// Client side: `--tls-ca`, `--tls-cert`, `--tls-key` (for tail, and the agent's push).
#[derive(Clone, Debug, Default, clap::Args)]
pub struct ClientTlsArgs {
    /// CA bundle (PEM) to verify the server with; turns TLS on.
    #[arg(long, env = "OSPREY_TLS_CA")]
    pub tls_ca: Option<PathBuf>,
    /// Client certificate (PEM) to present (mTLS).
    #[arg(long = "tls-cert", env = "OSPREY_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// The client certificate's private key (PEM).
    #[arg(long = "tls-key", env = "OSPREY_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// The name to verify the server certificate against (default: the host in ADDR).
    #[arg(long)]
    pub tls_server_name: Option<String>,
}

fn read(p: &Path) -> Result<Vec<u8>, ServerError> {
    std::fs::read(p).map_err(|e| ServerError::Tls(format!("reading {}: {e}", p.display())))
}

impl ServerTlsArgs {
    pub fn config(&self) -> Result<Option<ServerTlsConfig>, ServerError> {
        let (Some(cert), Some(key)) = (&self.tls_cert, &self.tls_key) else {
            return Ok(None);
        };
        let mut c = ServerTlsConfig::new().identity(Identity::from_pem(read(cert)?, read(key)?));
        if let Some(ca) = &self.tls_client_ca {
            c = c.client_ca_root(Certificate::from_pem(read(ca)?));
        }
        Ok(Some(c))
    }
}

/// The host part of `host:port` (brackets of an IPv6 literal removed).
fn host_of(addr: &str) -> &str {
    let bare = addr
        .strip_prefix("https://")
        .or_else(|| addr.strip_prefix("http://"))
        .unwrap_or(addr);
    let host = bare.rsplit_once(':').map_or(bare, |(h, _)| h);
    host.trim_start_matches('[').trim_end_matches(']')
}

/// Loopback: plaintext is allowed there without asking.
pub fn is_loopback(addr: &str) -> bool {
    let host = host_of(addr);
    host == "localhost"
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

impl ClientTlsArgs {
    /// An endpoint for `addr` (`host:port`), TLS when a CA is given. Plaintext to anything but
    /// loopback needs `allow_plaintext_remote`.
    pub fn endpoint(
        &self,
        addr: &str,
        allow_plaintext_remote: bool,
    ) -> Result<tonic::transport::Endpoint, ServerError> {
        let bare = addr
            .strip_prefix("https://")
            .or_else(|| addr.strip_prefix("http://"))
            .unwrap_or(addr);
        let scheme = if self.tls_ca.is_some() {
            "https"
        } else {
            "http"
        };
        let uri = format!("{scheme}://{bare}");
        let mut ep = tonic::transport::Endpoint::from_shared(uri)
            .map_err(|e| ServerError::Tls(format!("bad address {addr}: {e}")))?
            .connect_timeout(std::time::Duration::from_secs(5))
            .tcp_nodelay(true)
            .http2_keep_alive_interval(std::time::Duration::from_secs(10))
            .keep_alive_timeout(std::time::Duration::from_secs(10));
        match &self.tls_ca {
            Some(ca) => {
                let mut c = ClientTlsConfig::new()
                    .ca_certificate(Certificate::from_pem(read(ca)?))
                    .domain_name(
                        self.tls_server_name
                            .clone()
                            .unwrap_or_else(|| host_of(addr).to_string()),
                    );
                if let (Some(cert), Some(key)) = (&self.tls_cert, &self.tls_key) {
                    c = c.identity(Identity::from_pem(read(cert)?, read(key)?));
                }
                ep = ep.tls_config(c)?;
            }
            None if !is_loopback(addr) && !allow_plaintext_remote => {
                return Err(ServerError::PlaintextRemote {
                    addr: addr.into(),
                    flag: "--insecure-allow-remote",
                });
            }
            None => {}
        }
        Ok(ep)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_is_recognised_in_every_spelling() {
        assert!(is_loopback("127.0.0.1:7443"));
        assert!(is_loopback("[::1]:7443"));
        assert!(is_loopback("localhost:7443"));
        assert!(is_loopback("https://127.0.0.2:1"));
        assert!(!is_loopback("0.0.0.0:7443"));
        assert!(!is_loopback("10.0.0.1:7443"));
        assert!(!is_loopback("collector.osprey:7443"));
    }
}
