//! tracefs: mounted when missing, and read for the record layouts of the tracepoints we attach
//! (formats differ between kernels; see aya.md §4.5 in the reference notes).

use std::{fs, path::PathBuf};

use super::SensorError;

/// Where the agent looks for tracefs, in order.
const CANDIDATES: &[&str] = &["/sys/kernel/tracing", "/sys/kernel/debug/tracing"];

/// Returns the tracefs root, mounting it at /sys/kernel/tracing when it is not mounted.
pub fn ensure_mounted() -> Result<PathBuf, SensorError> {
    for c in CANDIDATES {
        if PathBuf::from(c).join("events").is_dir() {
            return Ok(PathBuf::from(c));
        }
    }
    let target = PathBuf::from(CANDIDATES[0]);
    let src = c"nodev";
    let dst = c"/sys/kernel/tracing";
    let fstype = c"tracefs";
    // SAFETY: valid C strings; no data argument.
    let r = unsafe {
        libc::mount(
            src.as_ptr(),
            dst.as_ptr(),
            fstype.as_ptr(),
            0,
            std::ptr::null(),
        )
    };
    if r != 0 {
        return Err(SensorError::Tracefs(format!(
            "tracefs is not mounted and mounting it at /sys/kernel/tracing failed: {}. Run \
             `mount -t tracefs nodev /sys/kernel/tracing` as root, or give the agent \
             CAP_SYS_ADMIN (in Kubernetes, mount the host's /sys/kernel/tracing into the pod)",
            std::io::Error::last_os_error()
        )));
    }
    tracing::info!("mounted tracefs at /sys/kernel/tracing");
    Ok(target)
}

/// A tracepoint record's layout, from its `format` file.
#[derive(Debug)]
pub struct Format {
    fields: Vec<(String, u32, u32)>,
}

impl Format {
    pub fn read(root: &std::path::Path, category: &str, name: &str) -> Result<Self, SensorError> {
        let path = root.join("events").join(category).join(name).join("format");
        let text = fs::read_to_string(&path).map_err(|e| {
            SensorError::Tracefs(format!(
                "cannot read {}: {e}; is this kernel built with CONFIG_FTRACE and the {category}:{name} tracepoint?",
                path.display()
            ))
        })?;
        Ok(Self::parse(&text))
    }

    /// Parses lines like `\tfield:__data_loc char[] filename;\toffset:8;\tsize:4;\tsigned:0;`.
    pub fn parse(text: &str) -> Self {
        let mut fields = Vec::new();
        for line in text.lines() {
            let mut decl = None;
            let mut offset = None;
            let mut size = None;
            for part in line.split(';') {
                let part = part.trim();
                if let Some(d) = part.strip_prefix("field:") {
                    decl = Some(d.trim().to_string());
                } else if let Some(o) = part.strip_prefix("offset:") {
                    offset = o.parse().ok();
                } else if let Some(s) = part.strip_prefix("size:") {
                    size = s.parse().ok();
                }
            }
            if let (Some(decl), Some(offset), Some(size)) = (decl, offset, size) {
                // The name is the last identifier, before any array brackets.
                let name = decl
                    .split_whitespace()
                    .last()
                    .unwrap_or("")
                    .split('[')
                    .next()
                    .unwrap_or("")
                    .to_string();
                fields.push((name, offset, size));
            }
        }
        Self { fields }
    }

    /// The offset of field `name`, if the record has it.
    pub fn offset(&self, name: &str) -> Option<u32> {
        self.fields
            .iter()
            .find(|(n, ..)| n == name)
            .map(|(_, o, _)| *o)
    }
}

/// The C types of a syscall's arguments, in order, as its `syscalls:sys_enter_NAME` format
/// declares them (`int family`, `unsigned long arg`): None when the kernel has no such event.
pub fn syscall_arg_types(root: &std::path::Path, name: &str) -> Option<Vec<String>> {
    let path = root
        .join("events/syscalls")
        .join(format!("sys_enter_{name}"))
        .join("format");
    Some(arg_types(&fs::read_to_string(path).ok()?))
}

/// The declared types of a `sys_enter_*` format's argument fields (those after
/// `__syscall_nr`): each `field:` declaration without its last word, the name.
fn arg_types(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut args = false;
    for line in text.lines() {
        let Some(decl) = line
            .split(';')
            .find_map(|p| p.trim().strip_prefix("field:"))
        else {
            continue;
        };
        let decl = decl.trim();
        let (ty, name) = decl.rsplit_once(char::is_whitespace).unwrap_or(("", decl));
        if args {
            out.push(ty.trim().to_string());
        } else if name == "__syscall_nr" {
            args = true;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_a_syscalls_argument_types() {
        let text = "name: sys_enter_fcntl\nID: 1\nformat:\n\tfield:unsigned short common_type;\toffset:0;\tsize:2;\tsigned:0;\n\tfield:int common_pid;\toffset:4;\tsize:4;\tsigned:1;\n\n\tfield:int __syscall_nr;\toffset:8;\tsize:4;\tsigned:1;\n\tfield:unsigned int fd;\toffset:16;\tsize:8;\tsigned:0;\n\tfield:unsigned int cmd;\toffset:24;\tsize:8;\tsigned:0;\n\tfield:unsigned long arg;\toffset:32;\tsize:8;\tsigned:0;\n\tfield:const char __attribute__((btf_type_tag(\"user\"))) * filename;\toffset:40;\tsize:8;\tsigned:0;\n\nprint fmt: \"fd: 0x%08lx\"\n";
        assert_eq!(
            arg_types(text),
            [
                "unsigned int",
                "unsigned int",
                "unsigned long",
                "const char __attribute__((btf_type_tag(\"user\"))) *"
            ]
        );
    }

    #[test]
    fn parses_a_format_file() {
        let text = "name: sched_process_exec\nID: 312\nformat:\n\
            \tfield:unsigned short common_type;\toffset:0;\tsize:2;\tsigned:0;\n\
            \tfield:__data_loc char[] filename;\toffset:8;\tsize:4;\tsigned:0;\n\
            \tfield:pid_t pid;\toffset:12;\tsize:4;\tsigned:1;\n\
            \tfield:char comm[16];\toffset:16;\tsize:16;\tsigned:0;\n\
            \nprint fmt: \"filename=%s\"\n";
        let f = Format::parse(text);
        assert_eq!(f.offset("filename"), Some(8));
        assert_eq!(f.offset("pid"), Some(12));
        assert_eq!(f.offset("comm"), Some(16));
        assert_eq!(f.offset("group_dead"), None);
    }
}
