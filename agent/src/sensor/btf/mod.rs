//! A small reader of the kernel's BTF (`/sys/kernel/btf/vmlinux`): enough to find struct member
//! offsets, type sizes and raw tracepoint arities at start-up.
//!
//! Rust eBPF programs get no CO-RE relocations (rustc emits none), so a program that reads
//! `task_struct` must be told where the members are on the running kernel. The format is the
//! one in the kernel's `Documentation/bpf/btf.rst` and `include/uapi/linux/btf.h`: a header, a
//! type section of `btf_type` records (each followed by kind-specific data), and a string
//! section. Only little-endian BTF is read, which is what the kernel exposes on x86_64 and arm64.

use std::{collections::HashMap, io, ops::Range, path::Path};

/// Why reading BTF or looking something up in it failed.
#[derive(Debug, thiserror::Error)]
pub enum BtfError {
    #[error("{}", io_message(path, source))]
    Io {
        path: std::path::PathBuf,
        #[source]
        source: io::Error,
    },
    #[error(
        "malformed BTF: {0}. Osprey reads the little-endian BTF the kernel exposes at \
         /sys/kernel/btf/vmlinux; point it at that file"
    )]
    Format(String),
    #[error(
        "the kernel's BTF has no struct, union or typedef `{0}`: this kernel lays out its data \
         differently from the kernels Osprey supports; please report it with `uname -r`"
    )]
    NoType(String),
    #[error(
        "`{ty}` has no member `{member}` in the kernel's BTF: the field was renamed or moved in \
         this kernel version; please report it with `uname -r`"
    )]
    NoMember { ty: String, member: String },
    #[error(
        "`{ty}.{member}` is not an embedded struct or union (a pointer or scalar, say), so the \
         member path cannot continue into it"
    )]
    NotComposite { ty: String, member: String },
    #[error(
        "`{ty}.{member}` is a bitfield on this kernel and has no byte offset; Osprey cannot read \
         it with a plain load. Please report it with `uname -r`"
    )]
    Bitfield { ty: String, member: String },
}

fn io_message(path: &Path, e: &io::Error) -> String {
    let p = path.display();
    match e.kind() {
        io::ErrorKind::NotFound => format!(
            "kernel BTF not found at {p}: the kernel was built without CONFIG_DEBUG_INFO_BTF; \
             Osprey needs it to find struct offsets"
        ),
        io::ErrorKind::PermissionDenied => {
            format!("cannot read kernel BTF at {p}: permission denied; run Osprey as root")
        }
        _ => format!("cannot read kernel BTF at {p}: {e}"),
    }
}

// Type kinds, from include/uapi/linux/btf.h.
const KIND_INT: u8 = 1;
const KIND_PTR: u8 = 2;
const KIND_ARRAY: u8 = 3;
const KIND_STRUCT: u8 = 4;
const KIND_UNION: u8 = 5;
const KIND_ENUM: u8 = 6;
const KIND_FWD: u8 = 7;
const KIND_TYPEDEF: u8 = 8;
const KIND_VOLATILE: u8 = 9;
const KIND_CONST: u8 = 10;
const KIND_RESTRICT: u8 = 11;
const KIND_FUNC: u8 = 12;
const KIND_FUNC_PROTO: u8 = 13;
const KIND_VAR: u8 = 14;
const KIND_DATASEC: u8 = 15;
const KIND_FLOAT: u8 = 16;
const KIND_DECL_TAG: u8 = 17;
const KIND_TYPE_TAG: u8 = 18;
const KIND_ENUM64: u8 = 19;

const HEADER_LEN: usize = 24;
/// Chains of typedefs and qualifiers longer than this are treated as a cycle.
const MAX_CHAIN: usize = 64;
/// How deep anonymous struct/union members may nest (the kernel uses two or three levels).
const MAX_ANON_DEPTH: u32 = 32;
/// How many members one look-up may visit; bounds the work a hostile blob can cause.
const MAX_VISITS: u32 = 1 << 20;

/// A struct/union member, or a function prototype parameter (`bit_offset` and `bitfield_size`
/// are 0 for those).
#[derive(Clone, Copy, Debug)]
struct Member {
    name: u32,
    ty: u32,
    bit_offset: u32,
    /// Non-zero only for bitfields declared through the struct's kind_flag encoding.
    bitfield_size: u8,
}

#[derive(Clone, Debug)]
struct Type {
    name: u32,
    kind: u8,
    /// `size` for INT/ENUM/ENUM64/STRUCT/UNION/FLOAT/DATASEC, the referenced type id otherwise.
    size_or_type: u32,
    /// For INT: the (bits, bit offset) of its encoding word, which old-style bitfields use.
    int_bits: (u8, u8),
    /// STRUCT/UNION members or FUNC_PROTO parameters, as a range of `Btf::members`.
    members: Range<usize>,
}

/// Where the running kernel exposes its own BTF.
pub const KERNEL_BTF: &str = "/sys/kernel/btf/vmlinux";

/// The kernel's types, parsed once, with an index from name to type ids.
pub struct Btf {
    /// Index = type id; id 0 is `void`.
    types: Vec<Type>,
    members: Vec<Member>,
    strings: Vec<u8>,
    /// Names of structs, unions and typedefs (the kinds look-ups start from) to their ids.
    by_name: HashMap<String, Vec<u32>>,
}

impl std::fmt::Debug for Btf {
    // The tables are megabytes; a summary is what a log line needs.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Btf")
            .field("types", &self.types.len())
            .field("string_bytes", &self.strings.len())
            .finish()
    }
}

/// A little-endian u32 at `off`, or a format error naming `what` was being read.
fn u32_at(b: &[u8], off: usize, what: &str) -> Result<u32, BtfError> {
    off.checked_add(4)
        .and_then(|end| b.get(off..end))
        .map(|s| u32::from_le_bytes([s[0], s[1], s[2], s[3]]))
        .ok_or_else(|| BtfError::Format(format!("truncated {what} at byte {off}")))
}

impl Btf {
    /// Reads and parses a BTF file, normally `/sys/kernel/btf/vmlinux`.
    pub fn from_file(path: &Path) -> Result<Btf, BtfError> {
        let bytes = std::fs::read(path).map_err(|source| BtfError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        Self::parse(&bytes)
    }

    /// Parses a little-endian BTF blob. Never panics: anything malformed is a `Format` error.
    pub fn parse(bytes: &[u8]) -> Result<Btf, BtfError> {
        if bytes.len() < HEADER_LEN {
            return Err(BtfError::Format(format!(
                "{} bytes is shorter than the {HEADER_LEN}-byte header",
                bytes.len()
            )));
        }
        match u16::from_le_bytes([bytes[0], bytes[1]]) {
            0xEB9F => {}
            0x9FEB => return Err(BtfError::Format("big-endian BTF is not supported".into())),
            m => return Err(BtfError::Format(format!("bad magic {m:#06x}, want 0xeb9f"))),
        }
        if bytes[2] != 1 {
            return Err(BtfError::Format(format!(
                "unsupported BTF version {}",
                bytes[2]
            )));
        }
        let word = |off| u32_at(bytes, off, "header").map(|v| v as usize);
        let hdr_len = word(4)?;
        if hdr_len < HEADER_LEN || hdr_len > bytes.len() {
            return Err(BtfError::Format(format!(
                "header length {hdr_len} is outside {HEADER_LEN}..={}",
                bytes.len()
            )));
        }
        let section = |off: usize, len: usize, what: &str| {
            hdr_len
                .checked_add(off)
                .and_then(|start| Some(start..start.checked_add(len)?))
                .and_then(|r| bytes.get(r))
                .ok_or_else(|| {
                    BtfError::Format(format!(
                        "{what} section ({len} bytes at {off} after the header) runs past the \
                         end of the {}-byte blob",
                        bytes.len()
                    ))
                })
        };
        let type_sec = section(word(8)?, word(12)?, "type")?;
        let strings = section(word(16)?, word(20)?, "string")?;
        if strings.first() != Some(&0) {
            return Err(BtfError::Format(
                "the string section does not start with the empty string".into(),
            ));
        }

        let mut types = vec![Type {
            name: 0,
            kind: 0,
            size_or_type: 0,
            int_bits: (0, 0),
            members: 0..0,
        }];
        let mut members = Vec::new();
        let mut off = 0;
        while off < type_sec.len() {
            let id = types.len();
            let what = format!("type {id}");
            let name = u32_at(type_sec, off, &what)?;
            let info = u32_at(type_sec, off + 4, &what)?;
            let size_or_type = u32_at(type_sec, off + 8, &what)?;
            off += 12;
            let vlen = (info & 0xffff) as usize;
            let kind = ((info >> 24) & 0x1f) as u8;
            let kind_flag = info >> 31 == 1;
            let first = members.len();
            let mut int_bits = (0, 0);
            // Bytes of kind-specific data that follow the record.
            let extra = match kind {
                KIND_INT => {
                    let enc = u32_at(type_sec, off, &what)?;
                    int_bits = (enc as u8, (enc >> 16) as u8);
                    4
                }
                KIND_VAR | KIND_DECL_TAG => 4,
                KIND_ARRAY => 12,
                KIND_STRUCT | KIND_UNION => {
                    for i in 0..vlen {
                        let m = off + 12 * i;
                        let raw = u32_at(type_sec, m + 8, &what)?;
                        // With kind_flag: bitfield size in the top 8 bits, bit offset below.
                        let (bit_offset, bitfield_size) = if kind_flag {
                            (raw & 0x00ff_ffff, (raw >> 24) as u8)
                        } else {
                            (raw, 0)
                        };
                        members.push(Member {
                            name: u32_at(type_sec, m, &what)?,
                            ty: u32_at(type_sec, m + 4, &what)?,
                            bit_offset,
                            bitfield_size,
                        });
                    }
                    12 * vlen
                }
                KIND_FUNC_PROTO => {
                    for i in 0..vlen {
                        let p = off + 8 * i;
                        members.push(Member {
                            name: u32_at(type_sec, p, &what)?,
                            ty: u32_at(type_sec, p + 4, &what)?,
                            bit_offset: 0,
                            bitfield_size: 0,
                        });
                    }
                    8 * vlen
                }
                KIND_ENUM => 8 * vlen,
                KIND_ENUM64 | KIND_DATASEC => 12 * vlen,
                KIND_PTR | KIND_FWD | KIND_TYPEDEF | KIND_VOLATILE | KIND_CONST | KIND_RESTRICT
                | KIND_FUNC | KIND_FLOAT | KIND_TYPE_TAG => 0,
                k => {
                    return Err(BtfError::Format(format!(
                        "type {id} has unknown kind {k} (a BTF kind newer than this reader?)"
                    )));
                }
            };
            off = off
                .checked_add(extra)
                .filter(|end| *end <= type_sec.len())
                .ok_or_else(|| {
                    BtfError::Format(format!("type {id} runs past the end of the type section"))
                })?;
            types.push(Type {
                name,
                kind,
                size_or_type,
                int_bits,
                members: first..members.len(),
            });
        }

        let mut btf = Btf {
            types,
            members,
            strings: strings.to_vec(),
            by_name: HashMap::new(),
        };
        let mut by_name: HashMap<String, Vec<u32>> = HashMap::new();
        for (id, t) in btf.types.iter().enumerate().skip(1) {
            if matches!(t.kind, KIND_STRUCT | KIND_UNION | KIND_TYPEDEF) {
                let name = btf.str(t.name);
                if !name.is_empty() {
                    by_name.entry(name.to_string()).or_default().push(id as u32);
                }
            }
        }
        btf.by_name = by_name;
        Ok(btf)
    }

    /// The string at `off`; empty when the offset or the bytes are invalid.
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

    fn members_of(&self, t: &Type) -> &[Member] {
        self.members.get(t.members.clone()).unwrap_or(&[])
    }

    fn is_composite(&self, id: u32) -> bool {
        self.ty(id)
            .is_some_and(|t| matches!(t.kind, KIND_STRUCT | KIND_UNION))
    }

    /// Follows typedef, const, volatile, restrict and type_tag to the type they stand for.
    fn resolve(&self, mut id: u32) -> u32 {
        for _ in 0..MAX_CHAIN {
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

    /// The struct or union called `name`, or the one a typedef of that name stands for. A
    /// forward declaration is never returned: it has no members.
    fn composite(&self, name: &str) -> Result<u32, BtfError> {
        let ids = self.by_name.get(name).map(Vec::as_slice).unwrap_or(&[]);
        // A struct's own name wins over a typedef that happens to share it.
        let direct = ids.iter().copied().find(|&id| self.is_composite(id));
        direct
            .or_else(|| {
                ids.iter()
                    .map(|&id| self.resolve(id))
                    .find(|&id| self.is_composite(id))
            })
            .ok_or_else(|| BtfError::NoType(name.to_string()))
    }

    /// Finds the member called `name` in composite `id`, looking into anonymous struct and
    /// union members as C does. Returns the member with its bit offset made relative to `id`.
    fn find_member(&self, id: u32, name: &str, depth: u32, visits: &mut u32) -> Option<Member> {
        let t = self.ty(id)?;
        let members = self.members_of(t);
        *visits = visits.saturating_add(members.len() as u32);
        if depth > MAX_ANON_DEPTH || *visits > MAX_VISITS {
            return None;
        }
        if let Some(m) = members.iter().find(|m| self.str(m.name) == name) {
            return Some(*m);
        }
        members
            .iter()
            .filter(|m| self.str(m.name).is_empty())
            .find_map(|anon| {
                let inner = self.resolve(anon.ty);
                if !self.is_composite(inner) {
                    return None;
                }
                let mut found = self.find_member(inner, name, depth + 1, visits)?;
                found.bit_offset = found.bit_offset.checked_add(anon.bit_offset)?;
                Some(found)
            })
    }

    /// Whether `m` is a bitfield, in either of BTF's two encodings: the struct's kind_flag
    /// (bitfield size in the member) or an INT type whose encoding is narrower than its size.
    fn is_bitfield(&self, m: &Member) -> bool {
        if m.bitfield_size != 0 || !m.bit_offset.is_multiple_of(8) {
            return true;
        }
        match self.ty(self.resolve(m.ty)) {
            Some(t) if t.kind == KIND_INT => {
                let (bits, bit_off) = t.int_bits;
                bit_off != 0 || u64::from(bits) != u64::from(t.size_or_type) * 8
            }
            _ => false,
        }
    }

    /// Byte offset of a member path inside a struct or union, e.g. `("task_struct", "nsproxy")`
    /// or `("mnt_namespace", "ns.inum")`. Dotted paths descend through named, embedded (not
    /// pointed-to) members; members of anonymous struct and union members are found as if they
    /// were direct members. Typedefs and qualifiers are followed on the way. A bitfield member
    /// is an error.
    pub fn member_offset(&self, struct_name: &str, path: &str) -> Result<u32, BtfError> {
        let mut id = self.composite(struct_name)?;
        let mut ty_name = struct_name.to_string();
        let mut bits: u64 = 0;
        let mut parts = path.split('.').peekable();
        while let Some(part) = parts.next() {
            let no_member = || BtfError::NoMember {
                ty: ty_name.clone(),
                member: part.to_string(),
            };
            if part.is_empty() {
                return Err(no_member());
            }
            let m = self
                .find_member(id, part, 0, &mut 0)
                .ok_or_else(no_member)?;
            if self.is_bitfield(&m) {
                return Err(BtfError::Bitfield {
                    ty: ty_name,
                    member: part.to_string(),
                });
            }
            bits += u64::from(m.bit_offset);
            if parts.peek().is_some() {
                id = self.resolve(m.ty);
                if !self.is_composite(id) {
                    return Err(BtfError::NotComposite {
                        ty: ty_name,
                        member: part.to_string(),
                    });
                }
                ty_name = format!("{ty_name}.{part}");
            }
        }
        u32::try_from(bits / 8).map_err(|_| {
            BtfError::Format(format!("{struct_name}.{path} has an offset beyond 4 GiB"))
        })
    }

    /// `sizeof` a struct or union, or of the type a typedef of that name stands for.
    pub fn type_size(&self, name: &str) -> Result<u32, BtfError> {
        if let Ok(id) = self.composite(name) {
            return Ok(self.ty(id).map_or(0, |t| t.size_or_type));
        }
        // A typedef of a scalar (`pid_t`, say).
        self.by_name
            .get(name)
            .into_iter()
            .flatten()
            .filter_map(|&id| self.ty(self.resolve(id)))
            .find(|t| matches!(t.kind, KIND_INT | KIND_ENUM | KIND_ENUM64 | KIND_FLOAT))
            .map(|t| t.size_or_type)
            .ok_or_else(|| BtfError::NoType(name.to_string()))
    }

    /// The type id of the `btf_trace_<tracepoint>` typedef: what a BTF tracepoint program
    /// names as the tracepoint it attaches to.
    pub fn tracepoint_typedef(&self, tracepoint: &str) -> Result<u32, BtfError> {
        let name = format!("btf_trace_{tracepoint}");
        self.by_name
            .get(&name)
            .into_iter()
            .flatten()
            .copied()
            .find(|&id| self.ty(id).is_some_and(|t| t.kind == KIND_TYPEDEF))
            .ok_or(BtfError::NoType(name))
    }

    /// Whether the kernel has a function of this name: a BPF helper's implementation, say
    /// (`bpf_loop`). A walk over the types, made once at start-up: functions are not indexed
    /// by name, which would hold tens of thousands of names for a few look-ups.
    pub fn has_function(&self, name: &str) -> bool {
        self.types
            .iter()
            .any(|t| t.kind == KIND_FUNC && self.str(t.name) == name)
    }

    /// The type id of the kernel function `name` (a kfunc's, which a program's call names by
    /// it), where the kernel has one.
    pub fn function_id(&self, name: &str) -> Option<u32> {
        self.types
            .iter()
            .position(|t| t.kind == KIND_FUNC && self.str(t.name) == name)
            .map(|id| id as u32)
    }

    /// The type id of the struct called `name`.
    pub fn struct_id(&self, name: &str) -> Result<u32, BtfError> {
        self.by_name
            .get(name)
            .into_iter()
            .flatten()
            .copied()
            .find(|&id| self.ty(id).is_some_and(|t| t.kind == KIND_STRUCT))
            .ok_or_else(|| BtfError::NoType(name.to_string()))
    }

    /// Number of `TP_PROTO` arguments of a raw tracepoint, from its `btf_trace_<name>` typedef:
    /// a pointer to a function prototype whose first parameter is the `void *__data` cookie,
    /// which is not counted.
    pub fn tracepoint_arg_count(&self, tracepoint: &str) -> Result<usize, BtfError> {
        let name = format!("btf_trace_{tracepoint}");
        let typedef = self
            .by_name
            .get(&name)
            .into_iter()
            .flatten()
            .copied()
            .find(|&id| self.ty(id).is_some_and(|t| t.kind == KIND_TYPEDEF))
            .ok_or_else(|| BtfError::NoType(name.clone()))?;
        let not_proto = || {
            BtfError::Format(format!(
                "{name} is not a pointer to a function taking `void *__data` first"
            ))
        };
        let ptr = self
            .ty(self.resolve(typedef))
            .filter(|t| t.kind == KIND_PTR)
            .ok_or_else(not_proto)?;
        let proto = self
            .ty(self.resolve(ptr.size_or_type))
            .filter(|t| t.kind == KIND_FUNC_PROTO)
            .ok_or_else(not_proto)?;
        let params = self.members_of(proto);
        let data_is_ptr = params
            .first()
            .and_then(|p| self.ty(self.resolve(p.ty)))
            .is_some_and(|t| t.kind == KIND_PTR);
        if !data_is_ptr {
            return Err(not_proto());
        }
        Ok(params.len() - 1)
    }
}

#[cfg(test)]
mod tests;
