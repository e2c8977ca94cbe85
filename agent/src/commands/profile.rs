//! `osprey profile import|record`: their flags; the work is [`crate::profile::import`] and
//! [`crate::profile::record`].

use std::{path::PathBuf, time::Duration};

use crate::profile::{
    import::import_file,
    oci::Mode,
    record::{RecordOptions, record},
};

#[derive(Debug, clap::Subcommand)]
pub enum ProfileCommand {
    /// Convert an OCI/Docker seccomp profile (JSON) to an Osprey profile (YAML on stdout).
    Import {
        file: PathBuf,
        /// audit: alert on what the seccomp profile would deny; enforce: kill.
        #[arg(long, value_enum, default_value_t = Mode::Audit)]
        mode: Mode,
        /// The profile's name (default: the file's stem).
        #[arg(long)]
        name: Option<String>,
        /// `containers` (all), `host`, `image=GLOB`, `namespace=NS`, `container=NAME|ID`,
        /// `label=KEY=VALUE`; repeat to combine container conditions.
        #[arg(long, default_value = "containers")]
        scope: Vec<String>,
        /// Capabilities of the containers, for the profile's includes/excludes by
        /// capability (default: podman's and CRI-O's default set).
        #[arg(long, value_delimiter = ',')]
        caps: Vec<String>,
    },
    /// Record the syscalls a container makes, in the kernel, and write them as an allow-list
    /// profile (YAML, on stdout without --output) and optionally as OCI seccomp JSON.
    Record(RecordArgs),
}

/// Arguments of `osprey profile record`.
#[derive(Debug, clap::Args)]
pub struct RecordArgs {
    /// The container: its name, or its id (whole or a prefix of at least 12 characters). One
    /// that is not running yet is recorded from when it starts within the duration.
    #[arg(long)]
    pub container: String,
    /// How long to record: `90s`, `5m`, `1h`, `500ms` or seconds alone. Ctrl-C stops early
    /// and still writes the profile.
    #[arg(long, default_value = "60s", value_parser = parse_duration)]
    pub duration: Duration,
    /// Where to write the Osprey profile (YAML); stdout when not given.
    #[arg(long)]
    pub output: Option<PathBuf>,
    /// Also write the recorded syscalls as an OCI seccomp profile (JSON) to this file, for
    /// `podman run --security-opt seccomp=FILE` or a pod's `seccompProfile` of type `Localhost`.
    #[arg(long)]
    pub seccomp: Option<PathBuf>,
    /// The profile's name (default: `recorded-<container name>`).
    #[arg(long)]
    pub name: Option<String>,
    /// enforce: any other syscall kills; audit: it raises an alert.
    #[arg(long, value_enum, default_value_t = Mode::Enforce)]
    pub mode: Mode,
    /// The profile's scope, as for `import` (default: the container's image, or its name
    /// when the runtime names no image).
    #[arg(long)]
    pub scope: Vec<String>,
}

/// Parses `90s`, `5m`, `1h`, `500ms`, or a number of seconds.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: f64 = num
        .parse()
        .map_err(|_| format!("`{s}`: expected a duration such as 60s, 5m or 500ms"))?;
    let secs = match unit {
        "" | "s" => n,
        "ms" => n / 1000.0,
        "m" => n * 60.0,
        "h" => n * 3600.0,
        _ => return Err(format!("`{s}`: unknown unit `{unit}` (ms, s, m or h)")),
    };
    if !(secs > 0.0 && secs.is_finite()) {
        return Err(format!("`{s}`: the duration must be positive"));
    }
    Ok(Duration::from_secs_f64(secs))
}

pub fn run(cmd: ProfileCommand) -> anyhow::Result<bool> {
    match cmd {
        ProfileCommand::Record(a) => {
            record(RecordOptions {
                container: a.container,
                duration: a.duration,
                output: a.output,
                seccomp: a.seccomp,
                name: a.name,
                mode: a.mode,
                scope: a.scope,
            })?;
            Ok(true)
        }
        ProfileCommand::Import {
            file,
            mode,
            name,
            scope,
            caps,
        } => {
            print!("{}", import_file(&file, mode, name, &scope, &caps)?);
            Ok(true)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("60s"), Ok(Duration::from_secs(60)));
        assert_eq!(parse_duration("5m"), Ok(Duration::from_secs(300)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("2.5"), Ok(Duration::from_millis(2500)));
        assert!(parse_duration("0s").is_err());
        assert!(parse_duration("5 days").is_err());
        assert!(parse_duration("s").is_err());
    }
}
