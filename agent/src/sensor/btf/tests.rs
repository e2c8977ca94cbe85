//! Tests of the BTF reader, mostly on small BTF blobs built here (no kernel needed), kept
//! apart from the reader so that its file stays short.

use super::*;

/// Emits small BTF blobs: header, type section, string section.
struct Builder {
    types: Vec<u8>,
    strings: Vec<u8>,
    next_id: u32,
}

/// A struct/union member for the builder: name, type, bit offset, bitfield size.
type M<'a> = (&'a str, u32, u32, u8);

impl Builder {
    fn new() -> Self {
        Builder {
            types: Vec::new(),
            strings: vec![0],
            next_id: 1,
        }
    }

    fn name(&mut self, s: &str) -> u32 {
        if s.is_empty() {
            return 0;
        }
        let off = self.strings.len() as u32;
        self.strings.extend(s.as_bytes());
        self.strings.push(0);
        off
    }

    fn record(&mut self, words: &[u32]) -> u32 {
        for w in words {
            self.types.extend(w.to_le_bytes());
        }
        self.next_id += 1;
        self.next_id - 1
    }

    fn info(kind: u8, vlen: usize, kind_flag: bool) -> u32 {
        (u32::from(kind_flag) << 31) | (u32::from(kind) << 24) | vlen as u32
    }

    /// An int of `size` bytes whose encoding holds `bits` bits at `bit_off`.
    fn int_enc(&mut self, name: &str, size: u32, bits: u32, bit_off: u32) -> u32 {
        let n = self.name(name);
        let info = Self::info(KIND_INT, 0, false);
        self.record(&[n, info, size, (bit_off << 16) | bits])
    }

    fn int(&mut self, name: &str, size: u32) -> u32 {
        self.int_enc(name, size, size * 8, 0)
    }

    fn refer(&mut self, kind: u8, name: &str, to: u32) -> u32 {
        let n = self.name(name);
        self.record(&[n, Self::info(kind, 0, false), to])
    }

    fn composite(&mut self, kind: u8, name: &str, size: u32, members: &[M]) -> u32 {
        let n = self.name(name);
        let kind_flag = members.iter().any(|m| m.3 != 0);
        let mut words = vec![n, Self::info(kind, members.len(), kind_flag), size];
        for &(mname, ty, bit_off, bitfield) in members {
            let mn = self.name(mname);
            let off = if kind_flag {
                (u32::from(bitfield) << 24) | bit_off
            } else {
                bit_off
            };
            words.extend([mn, ty, off]);
        }
        self.record(&words)
    }

    fn strukt(&mut self, name: &str, size: u32, members: &[M]) -> u32 {
        self.composite(KIND_STRUCT, name, size, members)
    }

    fn proto(&mut self, ret: u32, params: &[u32]) -> u32 {
        let mut words = vec![0, Self::info(KIND_FUNC_PROTO, params.len(), false), ret];
        for &p in params {
            words.extend([0, p]);
        }
        self.record(&words)
    }

    fn build(&self) -> Vec<u8> {
        let mut b = Vec::new();
        b.extend(0xEB9Fu16.to_le_bytes());
        b.extend([1, 0]);
        for w in [
            HEADER_LEN as u32,
            0,
            self.types.len() as u32,
            self.types.len() as u32,
            self.strings.len() as u32,
        ] {
            b.extend(w.to_le_bytes());
        }
        b.extend(&self.types);
        b.extend(&self.strings);
        b
    }
}

/// A miniature kernel: a forward declaration before the real `task_struct`, anonymous
/// members, a typedef'd embedded struct, both bitfield encodings and a raw tracepoint.
fn sample() -> Vec<u8> {
    let mut b = Builder::new();
    let int = b.int("int", 4);
    let uint = b.int("unsigned int", 4);
    let three_bits = b.int_enc("unsigned int", 4, 3, 0);
    b.refer(KIND_FWD, "task_struct", 0);
    let ns_common = b.strukt(
        "ns_common",
        16,
        &[("stashed", int, 0, 0), ("inum", uint, 64, 0)],
    );
    let ns_t = b.refer(KIND_TYPEDEF, "ns_common_t", ns_common);
    let const_ns = b.refer(KIND_CONST, "", ns_t);
    let pid_union = b.composite(
        KIND_UNION,
        "",
        4,
        &[("pid", int, 0, 0), ("pid_alias", int, 0, 0)],
    );
    let inner = b.strukt("", 8, &[("tgid", int, 32, 0)]);
    let outer = b.strukt("", 8, &[("", inner, 0, 0)]);
    let task = b.strukt(
        "task_struct",
        96,
        &[
            ("state", int, 0, 0),
            ("", pid_union, 32, 0),
            ("", outer, 64, 0),
            ("ns", const_ns, 128, 0),
            ("flags", uint, 256, 3),
            ("prio", uint, 288, 0),
        ],
    );
    let task_ptr = b.refer(KIND_PTR, "", task);
    b.strukt(
        "old_bits",
        8,
        &[("mode", three_bits, 0, 0), ("parent", task_ptr, 64, 0)],
    );
    b.refer(KIND_TYPEDEF, "task_t", task);
    b.refer(KIND_TYPEDEF, "pid_t", int);
    let void_ptr = b.refer(KIND_PTR, "", 0);
    let proto = b.proto(0, &[void_ptr, task_ptr, int]);
    let fn_ptr = b.refer(KIND_PTR, "", proto);
    b.refer(KIND_TYPEDEF, "btf_trace_sched_process_exit", fn_ptr);
    let helper = b.proto(0, &[int]);
    b.refer(KIND_FUNC, "bpf_loop", helper);
    b.build()
}

fn btf() -> Btf {
    Btf::parse(&sample()).expect("the sample parses")
}

#[test]
fn plain_member() {
    let btf = btf();
    assert_eq!(btf.member_offset("task_struct", "state").unwrap(), 0);
    assert_eq!(btf.member_offset("task_struct", "prio").unwrap(), 36);
    assert_eq!(btf.member_offset("ns_common", "inum").unwrap(), 8);
}

#[test]
fn members_of_anonymous_members_are_direct_members() {
    let btf = btf();
    assert_eq!(btf.member_offset("task_struct", "pid").unwrap(), 4);
    assert_eq!(btf.member_offset("task_struct", "pid_alias").unwrap(), 4);
    // Two anonymous levels: 64 bits to the outer struct, then 32 inside the inner one.
    assert_eq!(btf.member_offset("task_struct", "tgid").unwrap(), 12);
}

#[test]
fn dotted_path_through_a_typedefd_const_member() {
    let btf = btf();
    assert_eq!(btf.member_offset("task_struct", "ns.inum").unwrap(), 24);
    assert_eq!(btf.member_offset("task_struct", "ns.stashed").unwrap(), 16);
}

#[test]
fn typedef_names_and_forward_declarations() {
    let btf = btf();
    assert_eq!(btf.member_offset("task_t", "ns.inum").unwrap(), 24);
    assert_eq!(
        btf.type_size("task_struct").unwrap(),
        96,
        "the STRUCT, not the FWD"
    );
    assert_eq!(btf.type_size("task_t").unwrap(), 96);
    assert_eq!(btf.type_size("ns_common_t").unwrap(), 16);
    assert_eq!(btf.type_size("pid_t").unwrap(), 4);
}

#[test]
fn bitfields_are_errors_in_both_encodings() {
    let btf = btf();
    let e = btf.member_offset("task_struct", "flags").unwrap_err();
    assert!(
        matches!(&e, BtfError::Bitfield { ty, member } if ty == "task_struct" && member == "flags"),
        "{e}"
    );
    let e = btf.member_offset("old_bits", "mode").unwrap_err();
    assert!(matches!(e, BtfError::Bitfield { .. }), "{e}");
    // A plain member of a struct with bitfields still resolves.
    assert_eq!(btf.member_offset("old_bits", "parent").unwrap(), 8);
}

#[test]
fn missing_things_are_named() {
    let btf = btf();
    let e = btf.member_offset("task_struct", "nope").unwrap_err();
    assert!(
        matches!(&e, BtfError::NoMember { ty, member } if ty == "task_struct" && member == "nope"),
        "{e}"
    );
    let e = btf.member_offset("task_struct", "ns.nope").unwrap_err();
    assert!(
        matches!(&e, BtfError::NoMember { ty, member } if ty == "task_struct.ns" && member == "nope"),
        "{e}"
    );
    let e = btf.member_offset("nothing", "x").unwrap_err();
    assert!(matches!(&e, BtfError::NoType(n) if n == "nothing"), "{e}");
    assert!(e.to_string().contains("uname -r"), "{e}");
    // An empty component must not match an anonymous member.
    for path in ["", "ns.", ".state", "ns..inum"] {
        let e = btf.member_offset("task_struct", path).unwrap_err();
        assert!(matches!(e, BtfError::NoMember { .. }), "{path:?}: {e}");
    }
    // Pointers are not followed: the programs must read through them themselves.
    let e = btf.member_offset("old_bits", "parent.state").unwrap_err();
    assert!(matches!(e, BtfError::NotComposite { .. }), "{e}");
    let e = btf.member_offset("task_struct", "state.x").unwrap_err();
    assert!(matches!(e, BtfError::NotComposite { .. }), "{e}");
}

#[test]
fn tracepoint_arity_excludes_the_data_cookie() {
    let btf = btf();
    assert_eq!(btf.tracepoint_arg_count("sched_process_exit").unwrap(), 2);
    let e = btf.tracepoint_arg_count("nope").unwrap_err();
    assert!(
        matches!(&e, BtfError::NoType(n) if n == "btf_trace_nope"),
        "{e}"
    );
}

#[test]
fn functions_are_found_by_name_and_kind() {
    let btf = btf();
    assert!(btf.has_function("bpf_loop"));
    // A struct or typedef of the name is not a function; nor is a name nobody declared.
    assert!(!btf.has_function("task_struct"));
    assert!(!btf.has_function("task_t"));
    assert!(!btf.has_function("bpf_lo"));
    // Ids, for the placeholders a kfunc call and its type argument carry (sensor/casts.rs).
    let id = btf.function_id("bpf_loop").unwrap();
    assert_eq!(btf.ty(id).map(|t| t.kind), Some(KIND_FUNC));
    assert_eq!(btf.function_id("task_struct"), None);
    let id = btf.struct_id("task_struct").unwrap();
    assert_eq!(btf.ty(id).map(|t| t.kind), Some(KIND_STRUCT));
    // A typedef is not the struct a cast names.
    assert!(matches!(btf.struct_id("task_t"), Err(BtfError::NoType(_))));
}

#[test]
fn missing_file_says_what_to_do() {
    let e = Btf::from_file(Path::new("/nonexistent/vmlinux")).unwrap_err();
    let msg = e.to_string();
    assert!(
        msg.contains("/nonexistent/vmlinux") && msg.contains("CONFIG_DEBUG_INFO_BTF"),
        "{msg}"
    );
}

#[test]
fn every_truncation_is_an_error() {
    let blob = sample();
    for n in 0..blob.len() {
        assert!(
            matches!(Btf::parse(&blob[..n]), Err(BtfError::Format(_))),
            "truncated to {n} of {} bytes",
            blob.len()
        );
    }
}

#[test]
fn bad_headers_are_errors() {
    let blob = sample();
    let patched = |at: usize, bytes: &[u8]| {
        let mut b = blob.clone();
        b[at..at + bytes.len()].copy_from_slice(bytes);
        Btf::parse(&b)
    };
    let e = patched(0, &[0xEB, 0x9F]).unwrap_err().to_string();
    assert!(e.contains("big-endian"), "{e}");
    assert!(patched(0, &[0, 0]).is_err(), "bad magic");
    assert!(patched(2, &[2]).is_err(), "version 2");
    assert!(patched(4, &8u32.to_le_bytes()).is_err(), "short header");
    assert!(patched(4, &u32::MAX.to_le_bytes()).is_err(), "huge header");
    assert!(patched(8, &u32::MAX.to_le_bytes()).is_err(), "type offset");
    assert!(patched(12, &u32::MAX.to_le_bytes()).is_err(), "type length");
    assert!(
        patched(16, &u32::MAX.to_le_bytes()).is_err(),
        "string offset"
    );
    assert!(
        patched(20, &u32::MAX.to_le_bytes()).is_err(),
        "string length"
    );
    assert!(Btf::parse(&[]).is_err());
    assert!(Btf::parse(&[0xff; 4096]).is_err());
}

#[test]
fn corrupted_blobs_never_panic() {
    let blob = sample();
    let lookups = |btf: &Btf| {
        let _ = btf.member_offset("task_struct", "ns.inum");
        let _ = btf.member_offset("task_struct", "tgid");
        let _ = btf.type_size("task_t");
        let _ = btf.tracepoint_arg_count("sched_process_exit");
    };
    for i in 0..blob.len() {
        for x in [0x01, 0x80, 0xff] {
            let mut b = blob.clone();
            b[i] ^= x;
            if let Ok(btf) = Btf::parse(&b) {
                lookups(&btf);
            }
        }
    }
}

#[test]
fn self_referencing_anonymous_members_terminate() {
    let mut b = Builder::new();
    // Type 1 is an anonymous struct containing itself, twice; type 2 names it.
    b.strukt("", 8, &[("", 1, 0, 0), ("", 1, 0, 0)]);
    b.refer(KIND_TYPEDEF, "loop_t", 1);
    b.refer(KIND_TYPEDEF, "cycle_t", 4);
    b.refer(KIND_TYPEDEF, "cycle2_t", 3);
    let btf = Btf::parse(&b.build()).unwrap();
    assert!(btf.member_offset("loop_t", "x").is_err());
    assert!(btf.member_offset("cycle_t", "x").is_err());
}

#[test]
fn real_kernel_offsets() {
    let path = Path::new("/sys/kernel/btf/vmlinux");
    if !path.exists() {
        eprintln!("skipping: {} is absent on this machine", path.display());
        return;
    }
    let btf = Btf::from_file(path).unwrap();
    // The helper the chunked environment scan needs (5.17; this machine's kernel is newer).
    assert!(btf.has_function("bpf_loop"));
    let off = |s: &str, p: &str| {
        let o = btf
            .member_offset(s, p)
            .unwrap_or_else(|e| panic!("{s}.{p}: {e}"));
        eprintln!("{s}.{p} = {o}");
        o
    };
    let task: Vec<u32> = [
        "cred",
        "real_cred",
        "nsproxy",
        "thread_pid",
        "pid",
        "tgid",
        "mm",
        "exit_code",
        "group_leader",
    ]
    .iter()
    .map(|m| off("task_struct", m))
    .collect();
    let task_size = btf.type_size("task_struct").unwrap();
    eprintln!("sizeof(task_struct) = {task_size}");
    assert!(task.iter().all(|o| *o < task_size), "{task:?}");
    // Adjacent in include/linux/sched.h since long before 5.8.
    assert_eq!(task[5], task[4] + 4, "pid_t pid; pid_t tgid;");
    assert_eq!(task[0], task[1] + 8, "real_cred then cred");

    // kuid_t uid, gid, suid, sgid, euid, egid in include/linux/cred.h.
    let (euid, egid) = (off("cred", "euid"), off("cred", "egid"));
    assert_eq!(egid, euid + 4);
    assert_eq!(off("cred", "uid") + 16, euid);
    assert_eq!(off("nsproxy", "mnt_ns") % 8, 0, "a pointer");
    off("mnt_namespace", "ns.inum");
    off("pid_namespace", "ns.inum");
    off("pid", "level");
    let numbers = off("pid", "numbers");
    let (pid_size, upid_size) = (
        btf.type_size("pid").unwrap(),
        btf.type_size("upid").unwrap(),
    );
    // `numbers` is the last member: `numbers[1]` in older kernels, `numbers[]` in newer ones.
    assert!(
        numbers <= pid_size && pid_size - numbers <= upid_size,
        "numbers at {numbers}, sizeof(pid) {pid_size}"
    );
    // struct upid { int nr; struct pid_namespace *ns; }
    assert_eq!(off("upid", "nr"), 0);
    assert_eq!(off("upid", "ns"), 8);
    assert_eq!(btf.type_size("upid").unwrap(), 16);
    let arg_start = off("mm_struct", "arg_start");
    assert_eq!(off("mm_struct", "arg_end"), arg_start + 8);

    // x86_64 pt_regs is ABI, fixed by the entry code's save order (asm/ptrace.h).
    #[cfg(target_arch = "x86_64")]
    {
        let regs: Vec<u32> = ["di", "si", "dx", "r10", "r8", "r9", "orig_ax"]
            .iter()
            .map(|r| off("pt_regs", r))
            .collect();
        assert_eq!(regs, [112, 104, 96, 56, 72, 64, 120]);
        assert_eq!(btf.type_size("pt_regs").unwrap(), 168);
    }

    // TP_PROTO(struct pt_regs *regs, long id) and (struct task_struct *parent, *child).
    assert_eq!(btf.tracepoint_arg_count("sys_enter").unwrap(), 2);
    assert_eq!(btf.tracepoint_arg_count("sched_process_fork").unwrap(), 2);
    let exit = btf.tracepoint_arg_count("sched_process_exit").unwrap();
    eprintln!("sched_process_exit takes {exit} args");
    assert!((1..=2).contains(&exit), "{exit}");
}
