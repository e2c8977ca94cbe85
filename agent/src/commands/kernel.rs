//! `osprey kernel`: what the running kernel offers Osprey, without loading anything: its
//! release, the features found (and what Osprey does without each missing one), and every
//! offset the kernel programs would be given. Diffing its output between two kernels shows a
//! field that moved.

use std::path::PathBuf;

use crate::sensor::{self, SensorError};

#[derive(clap::Args)]
pub struct KernelArgs {
    /// One JSON object instead of the table.
    #[arg(long)]
    pub json: bool,
    /// Where the kernel's BTF is read from.
    #[arg(long, default_value = crate::sensor::btf::KERNEL_BTF)]
    pub btf: PathBuf,
}

/// Prints the report; false (exit status 1) when a feature the agent needs is missing.
pub fn run(args: KernelArgs) -> Result<bool, SensorError> {
    let tracefs = sensor::tracefs::ensure_mounted()?;
    let report = sensor::kernel_report(&args.btf, &tracefs)?;
    if args.json {
        let value = serde_json::json!({
            "release": report.release,
            "features": report.features,
            "offsets": report.offsets,
        });
        println!("{value}");
    } else {
        print!("{}", table(&report));
    }
    Ok(report
        .features
        .iter()
        .all(|f| f.available || sensor::OPTIONAL_FEATURES.contains(&f.name)))
}

fn table(report: &sensor::KernelReport) -> String {
    let mut out = format!("kernel {}\nfeatures:\n", report.release);
    for f in &report.features {
        let state = if f.available { "yes" } else { "no " };
        out.push_str(&format!("  {state} {:<20} {}\n", f.name, f.detail));
    }
    out.push_str("offsets:\n");
    for o in &report.offsets {
        out.push_str(&format!("  {:<48} {:>6}\n", o.name, o.value));
    }
    out
}
