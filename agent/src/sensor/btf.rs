//! A small reader of the kernel's BTF (`/sys/kernel/btf/vmlinux`): enough to find struct member
//! offsets and type sizes at start-up.
//!
//! Rust eBPF programs get no CO-RE relocations (rustc emits none), so a program that reads
//! `task_struct` must be told where the members are on the running kernel. The format is the
//! one in the kernel's Documentation/bpf/btf.rst: a header, a type section of `btf_type`
//! records (each followed by kind-specific data), and a string section.

use std::{collections::HashMap, path::Path};

/// Why a BTF lookup failed.
#[derive(Debug, thiserror::Error)]
pub enum BtfError {
    #[error("cannot read {path}: {source}")]
    Io {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("malformed BTF: {0}")]
    Format(String),
    #[error("the kernel's BTF has no type `{0}`")]
    NoType(String),
    #[error("the kernel's BTF has no member `{member}` in `{ty}`")]
    NoMember { ty: String, member: String },
    #[error("`{ty}.{member}` is a bitfield; its byte offset cannot be read directly")]
    Bitfield { ty: String, member: String },
}

const KIND_INT: u32 = 1;
const KIND_PTR: u32 = 2;
const KIND_ARRAY: u32 = 3;
const KIND_STRUCT: u32 = 4;
const KIND_UNION: u32 = 5;
const KIND_ENUM: u32 = 6;
const KIND_FWD: u32 = 7;
const KIND_TYPEDEF: u32 = 8;
const KIND_VOLATILE: u32 = 9;
const KIND_CONST: u32 = 10;
const KIND_RESTRICT: u32 = 11;
const KIND_FUNC: u32 = 12;
const KIND_FUNC_PROTO: u32 = 13;
const KIND_VAR: u32 = 14;
const KIND_DATASEC: u32 = 15;
const KIND_FLOAT: u32 = 16;
const KIND_DECL_TAG: u32 = 17;
const KIND_TYPE_TAG: u32 = 18;
const KIND_ENUM64: u32 = 19;

#[derive(Clone, Debug)]
struct Member {
    name: u32,
    ty: u32,
    /// Bit offset, and the bitfield size when the struct's kind_flag is set (0 otherwise).
    bit_offset: u32,
    bitfield_size: u32,
}

#[derive(Clone, Debug)]
struct Type {
    name: u32,
    kind: u32,
    /// `size` for INT/STRUCT/UNION/ENUM/FLOAT/DATASEC, the referenced type otherwise.
    size_or_type: u32,
    /// STRUCT/UNION members, or FUNC_PROTO parameter types (name, type).
    members: Vec<Member>,
}

/// Parsed BTF types with a name index.
pub struct Btf {
    /// Index = type id; id 0 is `void`.
    types: Vec<Type>,
    strings: Vec<u8>,
    by_name: HashMap<String, Vec<u32>>,
}

fn u32_at(b: &[u8], off: usize) -> Result<u32, BtfError> {
    b.get(off..off + 4)
        .map(|s| u32::from_le_bytes([s[0], s[1], s[2], s[3]]))
        .ok_or_else(|| BtfError::Format(format!("truncated at byte {off}")))
}

impl Btf {
    pub fn from_file(path: &Path) -> Result<Btf, BtfError> {
        let bytes = std::fs::read(path).map_err(|source| BtfError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        Self::parse(&bytes)
    }

    /// Parses a little-endian BTF blob. Never panics; garbage is a `Format` error.
    pub fn parse(bytes: &[u8]) -> Result<Btf, BtfError> {
        let magic = bytes
            .get(0..2)
            .map(|m| u16::from_le_bytes([m[0], m[1]]))
            .ok_or_else(|| BtfError::Format("shorter than its header".into()))?;
        if magic != 0xEB9F {
            return Err(BtfError::Format(format!(
                "bad magic {magic:#x} (big-endian BTF is not supported)"
            )));
        }
        let hdr_len = u32_at(bytes, 4)? as usize;
        let type_off = u32_at(bytes, 8)? as usize;
        let type_len = u32_at(bytes, 12)? as usize;
        let str_off = u32_at(bytes, 16)? as usize;
        let str_len = u32_at(bytes, 20)? as usize;
        let section = |off: usize, len: usize, what: &str| {
            hdr_len
                .checked_add(off)
                .and_then(|s| Some((s, s.checked_add(len)?)))
                .and_then(|(s, e)| bytes.get(s..e))
                .ok_or_else(|| BtfError::Format(format!("{what} section out of bounds")))
        };
        let tsec = section(type_off, type_len, "type")?;
        let strings = section(str_off, str_len, "string")?.to_vec();

        let mut types = vec![Type {
            name: 0,
            kind: 0,
            size_or_type: 0,
            members: Vec::new(),
        }];
        let mut off = 0;
        while off < tsec.len() {
            let name = u32_at(tsec, off)?;
            let info = u32_at(tsec, off + 4)?;
            let size_or_type = u32_at(tsec, off + 8)?;
            off += 12;
            let vlen = (info & 0xffff) as usize;
            let kind = (info >> 24) & 0x1f;
            let kind_flag = info >> 31 == 1;
            let mut members = Vec::new();
            let extra = match kind {
                KIND_INT | KIND_VAR | KIND_DECL_TAG => 4,
                KIND_ARRAY => 12,
                KIND_STRUCT | KIND_UNION => {
                    for i in 0..vlen {
                        let m = off + 12 * i;
                        let raw = u32_at(tsec, m + 8)?;
                        members.push(if kind_flag {
                            Member {
                                name: u32_at(tsec, m)?,
                                ty: u32_at(tsec, m + 4)?,
                                bit_offset: raw & 0xff_ffff,
                                bitfield_size: raw >> 24,
                            }
                        } else {
                            Member {
                                name: u32_at(tsec, m)?,
                                ty: u32_at(tsec, m + 4)?,
                                bit_offset: raw,
                                bitfield_size: 0,
                            }
                        });
                    }
                    12 * vlen
                }
                KIND_ENUM => 8 * vlen,
                KIND_FUNC_PROTO => {
                    for i in 0..vlen {
                        let m = off + 8 * i;
                        members.push(Member {
                            name: u32_at(tsec, m)?,
                            ty: u32_at(tsec, m + 4)?,
                            bit_offset: 0,
                            bitfield_size: 0,
                        });
                    }
                    8 * vlen
                }
                KIND_DATASEC | KIND_ENUM64 => 12 * vlen,
                KIND_PTR | KIND_FWD | KIND_TYPEDEF | KIND_VOLATILE | KIND_CONST | KIND_RESTRICT
                | KIND_FUNC | KIND_FLOAT | KIND_TYPE_TAG => 0,
                k => {
                    return Err(BtfError::Format(format!(
                        "unknown type kind {k} at type id {}",
                        types.len()
                    )));
                }
            };
            off = off
                .checked_add(extra)
                .filter(|o| *o <= tsec.len())
                .ok_or_else(|| BtfError::Format("type record runs past the section".into()))?;
            types.push(Type {
                name,
                kind,
                size_or_type,
                members,
            });
        }

        let mut btf = Btf {
            types,
            strings,
            by_name: HashMap::new(),
        };
        for id in 1..btf.types.len() {
            let n = btf.str(btf.types[id].name);
            if !n.is_empty() {
                let n = n.to_string();
                btf.by_name.entry(n).or_default().push(id as u32);
            }
        }
        Ok(btf)
    }

    fn str(&self, off: u32) -> &str {
        let Some(rest) = self.strings.get(off as usize..) else {
            return "";
        };
        let end = rest.iter().position(|b| *b == 0).unwrap_or(rest.len());
        std::str::from_utf8(&rest[..end]).unwrap_or("")
    }

    fn ty(&self, id: u32) -> Option<&Type> {
        self.types.get(id as usize)
    }

    /// Follows typedef/const/volatile/restrict/type_tag to the underlying type id.
    fn resolve(&self, mut id: u32) -> u32 {
        for _ in 0..32 {
            match self.ty(id) {
                Some(t)
                    if matches!(
                        t.kind,
                        KIND_TYPEDEF | KIND_VOLATILE | KIND_CONST | KIND_RESTRICT | KIND_TYPE_TAG
                    ) =>
                {
                    id = t.size_or_type
                }
                _ => break,
            }
        }
        id
    }

    /// The struct or union called `name` (a complete one, not a forward declaration), or the
    /// type a typedef of that name stands for.
    fn composite(&self, name: &str) -> Result<u32, BtfError> {
        let ids = self
            .by_name
            .get(name)
            .ok_or_else(|| BtfError::NoType(name.to_string()))?;
        for &id in ids {
            let r = self.resolve(id);
            if let Some(t) = self.ty(r)
                && matches!(t.kind, KIND_STRUCT | KIND_UNION)
            {
                return Ok(r);
            }
        }
        Err(BtfError::NoType(name.to_string()))
    }

    /// Finds `member` in the composite `id`, looking through anonymous struct/union members;
    /// returns (bit offset, member type id).
    fn find_member(&self, id: u32, member: &str, depth: u32) -> Option<(u32, u32, u32)> {
        if depth > 16 {
            return None;
        }
        let t = self.ty(id)?;
        for m in &t.members {
            if self.str(m.name) == member {
                return Some((m.bit_offset, m.ty, m.bitfield_size));
            }
        }
        for m in &t.members {
            if m.name == 0 {
                let inner = self.resolve(m.ty);
                if self
                    .ty(inner)
                    .is_some_and(|t| matches!(t.kind, KIND_STRUCT | KIND_UNION))
                    && let Some((off, ty, bits)) = self.find_member(inner, member, depth + 1)
                {
                    return Some((m.bit_offset + off, ty, bits));
                }
            }
        }
        None
    }

    /// Byte offset of a member path inside a struct or union: `("task_struct", "nsproxy")`,
    /// `("mnt_namespace", "ns.inum")`. Dotted paths descend through named members; members of
    /// anonymous structs and unions are found as if they were direct members.
    pub fn member_offset(&self, struct_name: &str, path: &str) -> Result<u32, BtfError> {
        let mut id = self.composite(struct_name)?;
        let mut ty_name = struct_name.to_string();
        let mut bits = 0u32;
        let parts: Vec<&str> = path.split('.').collect();
        for (i, part) in parts.iter().enumerate() {
            let (off, mty, bitfield) =
                self.find_member(id, part, 0)
                    .ok_or_else(|| BtfError::NoMember {
                        ty: ty_name.clone(),
                        member: part.to_string(),
                    })?;
            if bitfield != 0 || off % 8 != 0 {
                return Err(BtfError::Bitfield {
                    ty: ty_name,
                    member: part.to_string(),
                });
            }
            bits += off;
            if i + 1 < parts.len() {
                id = self.resolve(mty);
                if !self
                    .ty(id)
                    .is_some_and(|t| matches!(t.kind, KIND_STRUCT | KIND_UNION))
                {
                    return Err(BtfError::NoMember {
                        ty: format!("{ty_name}.{part}"),
                        member: parts[i + 1].to_string(),
                    });
                }
                ty_name = format!("{ty_name}.{part}");
            }
        }
        Ok(bits / 8)
    }

    /// `sizeof` a struct, union or typedef'd composite.
    pub fn type_size(&self, name: &str) -> Result<u32, BtfError> {
        let id = self.composite(name)?;
        Ok(self.ty(id).map(|t| t.size_or_type).unwrap_or(0))
    }

    /// Number of `TP_PROTO` arguments of a raw tracepoint, from the `btf_trace_<name>` typedef
    /// (a pointer to a function prototype whose first parameter is the `void *__data` cookie).
    pub fn tracepoint_arg_count(&self, tracepoint: &str) -> Result<usize, BtfError> {
        let name = format!("btf_trace_{tracepoint}");
        let id = *self
            .by_name
            .get(&name)
            .and_then(|v| v.first())
            .ok_or_else(|| BtfError::NoType(name.clone()))?;
        let ptr = self.resolve(id);
        let proto = self
            .ty(ptr)
            .filter(|t| t.kind == KIND_PTR)
            .map(|t| self.resolve(t.size_or_type))
            .and_then(|p| self.ty(p))
            .filter(|t| t.kind == KIND_FUNC_PROTO)
            .ok_or_else(|| BtfError::Format(format!("{name} is not a function pointer")))?;
        Ok(proto.members.len().saturating_sub(1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Builds small BTF blobs for tests.
    #[derive(Default)]
    struct Builder {
        types: Vec<u8>,
        strings: Vec<u8>,
        next_id: u32,
    }

    impl Builder {
        fn new() -> Self {
            Self {
                strings: vec![0],
                next_id: 1,
                ..Default::default()
            }
        }
        fn s(&mut self, name: &str) -> u32 {
            if name.is_empty() {
                return 0;
            }
            let off = self.strings.len() as u32;
            self.strings.extend(name.as_bytes());
            self.strings.push(0);
            off
        }
        fn push(&mut self, words: &[u32]) -> u32 {
            for w in words {
                self.types.extend(w.to_le_bytes());
            }
            let id = self.next_id;
            self.next_id += 1;
            id
        }
        fn int(&mut self, name: &str, size: u32) -> u32 {
            let n = self.s(name);
            self.push(&[n, KIND_INT << 24, size, size * 8])
        }
        fn ptr(&mut self, to: u32) -> u32 {
            self.push(&[0, KIND_PTR << 24, to])
        }
        fn typedef(&mut self, name: &str, to: u32) -> u32 {
            let n = self.s(name);
            self.push(&[n, KIND_TYPEDEF << 24, to])
        }
        fn fwd(&mut self, name: &str) -> u32 {
            let n = self.s(name);
            self.push(&[n, KIND_FWD << 24, 0])
        }
        /// members: (name, type, bit offset, bitfield size)
        fn composite(
            &mut self,
            kind: u32,
            name: &str,
            size: u32,
            members: &[(&str, u32, u32, u32)],
        ) -> u32 {
            let n = self.s(name);
            let kind_flag = members.iter().any(|m| m.3 != 0) as u32;
            let mut words = vec![
                n,
                (kind_flag << 31) | (kind << 24) | members.len() as u32,
                size,
            ];
            for (mname, ty, off, bits) in members {
                let mn = self.s(mname);
                words.extend([
                    mn,
                    *ty,
                    if kind_flag == 1 {
                        (bits << 24) | off
                    } else {
                        *off
                    },
                ]);
            }
            self.push(&words)
        }
        fn proto(&mut self, params: &[u32]) -> u32 {
            let mut words = vec![0, (KIND_FUNC_PROTO << 24) | params.len() as u32, 0];
            for p in params {
                words.extend([0, *p]);
            }
            self.push(&words)
        }
        fn build(&self) -> Vec<u8> {
            let mut b = Vec::new();
            b.extend(0xEB9Fu16.to_le_bytes());
            b.extend([1u8, 0]);
            b.extend(24u32.to_le_bytes());
            b.extend(0u32.to_le_bytes());
            b.extend((self.types.len() as u32).to_le_bytes());
            b.extend((self.types.len() as u32).to_le_bytes());
            b.extend((self.strings.len() as u32).to_le_bytes());
            b.extend(&self.types);
            b.extend(&self.strings);
            b
        }
    }

    fn sample() -> Vec<u8> {
        let mut b = Builder::new();
        let int = b.int("int", 4);
        let uint = b.int("unsigned int", 4);
        b.fwd("task_struct");
        let ns_common = b.composite(
            KIND_STRUCT,
            "ns_common",
            16,
            &[("stashed", int, 0, 0), ("inum", uint, 64, 0)],
        );
        let anon = b.composite(
            KIND_UNION,
            "",
            8,
            &[("pid", int, 0, 0), ("alias", int, 0, 0)],
        );
        let anon_struct = b.composite(KIND_STRUCT, "", 8, &[("tgid", int, 32, 0)]);
        let ns_t = b.typedef("ns_common_t", ns_common);
        let task = b.composite(
            KIND_STRUCT,
            "task_struct",
            64,
            &[
                ("state", int, 0, 0),
                ("", anon, 64, 0),
                ("", anon_struct, 128, 0),
                ("ns", ns_t, 256, 0),
                ("flags", uint, 384, 3),
            ],
        );
        b.typedef("task_t", task);
        let void_ptr = b.ptr(0);
        let tptr = b.ptr(task);
        let proto = b.proto(&[void_ptr, tptr, int]);
        let fptr = b.ptr(proto);
        b.typedef("btf_trace_sched_process_exit", fptr);
        b.build()
    }

    #[test]
    fn member_offsets_through_anonymous_and_nested_members() {
        let btf = Btf::parse(&sample()).unwrap();
        assert_eq!(btf.member_offset("task_struct", "state").unwrap(), 0);
        assert_eq!(btf.member_offset("task_struct", "pid").unwrap(), 8);
        assert_eq!(btf.member_offset("task_struct", "alias").unwrap(), 8);
        assert_eq!(btf.member_offset("task_struct", "tgid").unwrap(), 20);
        assert_eq!(btf.member_offset("task_struct", "ns.inum").unwrap(), 40);
        assert_eq!(
            btf.member_offset("task_t", "ns.inum").unwrap(),
            40,
            "via typedef"
        );
        assert_eq!(btf.type_size("task_struct").unwrap(), 64, "not the FWD");
        assert_eq!(btf.tracepoint_arg_count("sched_process_exit").unwrap(), 2);
    }

    #[test]
    fn errors_name_what_is_missing() {
        let btf = Btf::parse(&sample()).unwrap();
        let e = btf
            .member_offset("task_struct", "nope")
            .unwrap_err()
            .to_string();
        assert!(e.contains("nope") && e.contains("task_struct"), "{e}");
        let e = btf.member_offset("task_struct", "flags").unwrap_err();
        assert!(matches!(e, BtfError::Bitfield { .. }), "{e}");
        let e = btf.member_offset("nothing", "x").unwrap_err();
        assert!(matches!(e, BtfError::NoType(_)), "{e}");
        let e = btf.member_offset("task_struct", "state.x").unwrap_err();
        assert!(matches!(e, BtfError::NoMember { .. }), "{e}");
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        let blob = sample();
        for n in 0..blob.len() {
            let _ = Btf::parse(&blob[..n]);
        }
        let mut bad = blob.clone();
        bad[0] = 0;
        assert!(Btf::parse(&bad).is_err());
        for i in 24..blob.len() {
            let mut b = blob.clone();
            b[i] ^= 0xff;
            if let Ok(btf) = Btf::parse(&b) {
                let _ = btf.member_offset("task_struct", "ns.inum");
                let _ = btf.tracepoint_arg_count("sched_process_exit");
            }
        }
    }

    #[test]
    fn real_kernel_offsets() {
        let path = Path::new("/sys/kernel/btf/vmlinux");
        if !path.exists() {
            eprintln!("skipping: {} absent on this machine", path.display());
            return;
        }
        let btf = Btf::from_file(path).unwrap();
        for m in [
            "cred",
            "real_cred",
            "nsproxy",
            "thread_pid",
            "pid",
            "tgid",
            "mm",
            "exit_code",
            "group_leader",
        ] {
            btf.member_offset("task_struct", m).unwrap();
        }
        btf.member_offset("cred", "euid").unwrap();
        btf.member_offset("mnt_namespace", "ns.inum").unwrap();
        btf.member_offset("pid_namespace", "ns.inum").unwrap();
        btf.member_offset("mm_struct", "arg_start").unwrap();
        assert_eq!(
            btf.member_offset("upid", "ns").unwrap(),
            8,
            "struct upid {{ int nr; struct pid_namespace *ns; }}"
        );
        // x86_64 pt_regs is fixed by the entry code's register save order.
        #[cfg(target_arch = "x86_64")]
        {
            let regs: Vec<u32> = ["di", "si", "dx", "r10", "r8", "r9", "orig_ax"]
                .iter()
                .map(|r| btf.member_offset("pt_regs", r).unwrap())
                .collect();
            assert_eq!(regs, vec![112, 104, 96, 56, 72, 64, 120]);
            assert_eq!(btf.type_size("pt_regs").unwrap(), 168);
        }
        assert_eq!(btf.tracepoint_arg_count("sys_enter").unwrap(), 2);
        assert_eq!(btf.tracepoint_arg_count("sched_process_fork").unwrap(), 2);
    }
}
