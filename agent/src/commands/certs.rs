//! `osprey certs`: a CA and the collector's, agents' and readers' certificates, with their roles
//! (server/certs.rs), and the `kubectl` commands that load them.

use std::path::PathBuf;

use crate::server::certs::{self, IssueOptions};

#[derive(Debug, clap::Args)]
pub struct CertsArgs {
    /// Directory to write into (created). A ca.crt/ca.key pair already there signs the new
    /// certificates instead of a new CA.
    #[arg(long, default_value = "osprey-certs")]
    pub out: PathBuf,
    /// Issue a per-node agent certificate (repeatable): it pushes as this node only.
    #[arg(long = "node", value_name = "NAME")]
    pub nodes: Vec<String>,
    /// Issue a fleet-wide agent certificate (agent.crt): it pushes as any node. What one
    /// Secret shared by a DaemonSet needs; a node holding it can push as any other node.
    #[arg(long)]
    pub fleet: bool,
    /// Issue a reader certificate (repeatable): Subscribe and Status, never Push.
    #[arg(long = "reader", value_name = "NAME")]
    pub readers: Vec<String>,
    /// Extra DNS name or IP address for the collector's certificate (repeatable).
    #[arg(long = "collector-name", value_name = "NAME")]
    pub collector_names: Vec<String>,
    /// Do not issue the collector's certificate.
    #[arg(long)]
    pub no_collector: bool,
    /// Validity of the certificates in days (the CA's is ten times as long).
    #[arg(long, default_value_t = 365)]
    pub days: u32,
    /// Replace files that exist (a new CA too).
    #[arg(long)]
    pub force: bool,
}

pub fn run(args: CertsArgs) -> anyhow::Result<()> {
    // With nothing chosen: what the manifest needs (collector, fleet agent, one reader).
    let nothing = args.nodes.is_empty() && !args.fleet && args.readers.is_empty();
    let opts = IssueOptions {
        dir: args.out,
        nodes: args.nodes,
        fleet: args.fleet || nothing,
        readers: if nothing {
            vec!["reader".into()]
        } else {
            args.readers
        },
        collector_names: args.collector_names,
        collector: !args.no_collector,
        days: args.days,
        force: args.force,
    };
    let issued = certs::issue(&opts)?;
    if issued.reused_ca {
        println!("signed with the existing CA in {}", opts.dir.display());
    }
    for w in &issued.written {
        println!("wrote {}: {}", w.path.display(), w.what);
    }
    if !issued.kubectl.is_empty() {
        println!("\nLoad them into the cluster:");
        for k in &issued.kubectl {
            println!("{k}");
        }
    }
    if opts.fleet {
        println!(
            "\nThe fleet-wide agent certificate lets any node holding it push as any other node; \
             issue per-node certificates (--node NAME, mounted per node, e.g. by a CSI driver) to \
             confine each node to its own name."
        );
    }
    Ok(())
}
