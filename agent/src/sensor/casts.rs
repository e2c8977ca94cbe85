//! The kernel programs' casts (`bpf_rdonly_cast`), given the running kernel's type ids.
//!
//! `sys_exit_cast` reads the objects a path walk reaches (a descriptor's file, dentries,
//! mounts, the inode) with plain loads, each through a kfunc call that casts an address to a
//! pointer to a kernel struct (agent-ebpf/src/task.rs, `Cast`). A kfunc is called by its BTF id
//! in the running kernel, and the struct is named by its BTF id too; the toolchain emits
//! neither (aya resolves no kfunc), so the programs carry placeholder instructions
//! (`agent_common::cast`) that [`patch`] replaces in a copy of the object before it is loaded.
//! Where the kernel has no `bpf_rdonly_cast` (before Linux 6.2) nothing is patched, the
//! program fails verification, and `sys_exit` is attached in a form without casts.

use agent_common::cast;

use super::btf::Btf;

/// The kernel's BTF ids the casts need.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CastIds {
    /// `bpf_rdonly_cast`.
    pub func: u32,
    /// `agent_common::cast::TYPE`.
    pub ty: u32,
}

impl CastIds {
    /// The ids in the kernel's own BTF, or what is missing.
    pub fn find(btf: &Btf) -> Result<CastIds, String> {
        let func = btf
            .function_id("bpf_rdonly_cast")
            .ok_or("no bpf_rdonly_cast kfunc (Linux 6.2)")?;
        let ty = btf.struct_id(cast::TYPE).map_err(|e| e.to_string())?;
        Ok(CastIds { func, ty })
    }
}

/// A copy of an eBPF object, 8-aligned as the ELF parser needs it.
pub struct Object {
    words: Vec<u64>,
    len: usize,
}

impl Object {
    pub fn bytes(&self) -> &[u8] {
        // SAFETY: `len` bytes of the `words` allocation, which holds at least that many;
        // u8 has no alignment or validity requirement.
        unsafe { std::slice::from_raw_parts(self.words.as_ptr().cast::<u8>(), self.len) }
    }
}

/// `object` with every placeholder of `agent_common::cast` given its id, and how many
/// instructions were patched. Instructions are 8-aligned in the object's sections (and the
/// sections in the file), so only aligned words are looked at; a placeholder is a whole
/// instruction word, opcode and registers included.
pub fn patch(object: &[u8], ids: &CastIds) -> (Object, usize) {
    let mut words = vec![0u64; object.len().div_ceil(8)];
    for (w, chunk) in words.iter_mut().zip(object.chunks(8)) {
        let mut b = [0u8; 8];
        b[..chunk.len()].copy_from_slice(chunk);
        *w = u64::from_ne_bytes(b);
    }
    let call = cast::kfunc_call(cast::CALL_MAGIC);
    let mut patched = 0;
    for w in &mut words {
        // The word as the instruction's little-endian bytes read it.
        let insn = u64::from_le(*w);
        let new = if insn == call {
            cast::kfunc_call(ids.func)
        } else if insn == cast::mov_r2(cast::TYPE_MAGIC) {
            cast::mov_r2(ids.ty)
        } else {
            continue;
        };
        *w = new.to_le();
        patched += 1;
    }
    (
        Object {
            words,
            len: object.len(),
        },
        patched,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids() -> CastIds {
        CastIds {
            func: 70_000,
            ty: 12,
        }
    }

    fn insn(w: u64) -> [u8; 8] {
        w.to_le_bytes()
    }

    #[test]
    fn placeholders_get_the_kernels_ids_and_nothing_else_changes() {
        let mut object = b"\x7fELF....".to_vec();
        object.extend(insn(cast::mov_r2(cast::TYPE_MAGIC)));
        object.extend(insn(cast::kfunc_call(cast::CALL_MAGIC)));
        // r2 = the magic into another register, and a helper call with the magic: not ours.
        object.extend(insn(0xb7 | 0x03 << 8 | u64::from(cast::TYPE_MAGIC) << 32));
        object.extend(insn(0x85 | u64::from(cast::CALL_MAGIC) << 32));
        object.extend(insn(cast::mov_r2(cast::TYPE_MAGIC)));
        // Another value into r2 is left alone.
        object.extend(insn(cast::mov_r2(cast::TYPE_MAGIC + 1)));
        object.extend(b"tail");
        let (out, n) = patch(&object, &ids());
        let out = out.bytes();
        assert_eq!(n, 3);
        assert_eq!(out.len(), object.len());
        assert_eq!(&out[..8], &object[..8]);
        assert_eq!(out[8..16], insn(cast::mov_r2(12)));
        assert_eq!(out[16..24], insn(cast::kfunc_call(70_000)));
        assert_eq!(out[24..40], object[24..40]);
        assert_eq!(out[40..48], insn(cast::mov_r2(12)));
        assert_eq!(out[48..], object[48..]);
    }

    #[test]
    fn a_placeholder_off_the_instruction_grid_is_not_an_instruction() {
        let mut object = vec![0u8; 4];
        object.extend(insn(cast::kfunc_call(cast::CALL_MAGIC)));
        object.extend([0u8; 4]);
        let (out, n) = patch(&object, &ids());
        assert_eq!(n, 0);
        assert_eq!(out.bytes(), &object[..]);
    }

    #[test]
    fn the_encodings_are_the_kernels() {
        // BPF_ALU64 | BPF_MOV | BPF_K, dst r2, imm 5: `b7 02 00 00 05 00 00 00`.
        assert_eq!(insn(cast::mov_r2(5)), [0xb7, 0x02, 0, 0, 5, 0, 0, 0]);
        // BPF_JMP | BPF_CALL, src BPF_PSEUDO_KFUNC_CALL (2), imm 0x01020304.
        assert_eq!(
            insn(cast::kfunc_call(0x0102_0304)),
            [0x85, 0x20, 0, 0, 4, 3, 2, 1]
        );
    }

    /// On a kernel with `bpf_rdonly_cast`, the ids are found in its own BTF.
    #[test]
    fn ids_of_the_running_kernel() {
        let Ok(btf) = Btf::from_file(std::path::Path::new(super::super::btf::KERNEL_BTF)) else {
            return;
        };
        match CastIds::find(&btf) {
            Ok(ids) => {
                assert_ne!(ids.func, 0);
                assert_ne!(ids.ty, 0, "{ids:?}");
            }
            Err(why) => assert!(!btf.has_function("bpf_rdonly_cast"), "{why}"),
        }
    }
}
