//! Writing ELF64 executables: the boot image file ([`crate::pack`]) and, in
//! the unit tests, stand-in programs.

use goblin::elf::program_header::{PF_R, PF_W, PF_X, PT_LOAD};

const EHDR_SIZE: u64 = 64;
const PHDR_SIZE: u64 = 56;

/// A loadable segment: `data` at `vaddr` (physical address alike),
/// `memsz` bytes in memory.
pub struct Segment<'a> {
    pub vaddr: u64,
    pub data: &'a [u8],
    pub memsz: u64,
}

/// A little-endian ELF64 file for `machine` of type `e_type` (System V
/// ABI), entered at `entry`, with one readable, writable and executable
/// `PT_LOAD` per segment and no sections. Each segment's bytes start at a
/// multiple of `align` in the file, which is also its `p_align`.
pub fn elf_file(
    machine: u16,
    e_type: u16,
    entry: u64,
    segments: &[Segment],
    align: u64,
) -> Vec<u8> {
    let mut f = Vec::new();
    // e_ident: magic, 64-bit, little-endian, version 1, System V ABI.
    f.extend_from_slice(b"\x7fELF\x02\x01\x01");
    f.resize(16, 0);
    f.extend_from_slice(&e_type.to_le_bytes());
    f.extend_from_slice(&machine.to_le_bytes());
    f.extend_from_slice(&1u32.to_le_bytes()); // e_version
    f.extend_from_slice(&entry.to_le_bytes());
    f.extend_from_slice(&EHDR_SIZE.to_le_bytes()); // e_phoff
    f.extend_from_slice(&0u64.to_le_bytes()); // e_shoff: no sections
    f.extend_from_slice(&0u32.to_le_bytes()); // e_flags
    for half in [EHDR_SIZE, PHDR_SIZE, segments.len() as u64, 64, 0, 0] {
        // e_ehsize, e_phentsize, e_phnum, e_shentsize, e_shnum, e_shstrndx
        f.extend_from_slice(&(half as u16).to_le_bytes());
    }
    let mut offset = EHDR_SIZE + PHDR_SIZE * segments.len() as u64;
    let mut offsets = Vec::with_capacity(segments.len());
    for s in segments {
        offset = offset.next_multiple_of(align);
        offsets.push(offset);
        f.extend_from_slice(&PT_LOAD.to_le_bytes());
        f.extend_from_slice(&(PF_R | PF_W | PF_X).to_le_bytes());
        let size = s.data.len() as u64;
        for word in [offset, s.vaddr, s.vaddr, size, s.memsz, align] {
            // p_offset, p_vaddr, p_paddr, p_filesz, p_memsz, p_align
            f.extend_from_slice(&word.to_le_bytes());
        }
        offset += size;
    }
    for (s, at) in segments.iter().zip(offsets) {
        f.resize(at as usize, 0);
        f.extend_from_slice(s.data);
    }
    f
}
