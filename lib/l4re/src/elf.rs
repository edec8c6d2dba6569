//! A strict reader of the ELF header and program headers of an AArch64
//! executable (`ET_EXEC`, or `ET_DYN` for static PIE as Rust's musl target
//! links by default). Every field that leads to an address or an offset is
//! checked, so a hostile file is refused with an error, never a panic or an
//! overflow.

use alloc::vec::Vec;
use core::fmt;

/// `ET_EXEC`.
pub const ET_EXEC: u16 = 2;
/// `ET_DYN`.
pub const ET_DYN: u16 = 3;
/// `EM_AARCH64`.
pub const EM_AARCH64: u16 = 183;
/// `PT_LOAD`.
pub const PT_LOAD: u32 = 1;
/// `PT_DYNAMIC`.
pub const PT_DYNAMIC: u32 = 2;
/// `PT_INTERP`.
pub const PT_INTERP: u32 = 3;
/// `PT_PHDR`.
pub const PT_PHDR: u32 = 6;
/// `PT_GNU_STACK`.
pub const PT_GNU_STACK: u32 = 0x6474_e551;
/// Segment flag: executable.
pub const PF_X: u32 = 1;
/// Segment flag: writable.
pub const PF_W: u32 = 2;
/// Segment flag: readable.
pub const PF_R: u32 = 4;
/// Size of the ELF header.
pub const EHDR_SIZE: usize = 64;
/// Size of one program header.
pub const PHDR_SIZE: usize = 56;
/// Most program headers accepted.
pub const MAX_PHDRS: usize = 128;
/// Highest user address + 1 (47-bit user half).
pub const USER_END: u64 = 1 << 47;
const PAGE: u64 = 4096;

/// Why a file is not a program this runtime loads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ElfError {
    /// Shorter than its headers say.
    Truncated,
    /// Not an ELF file.
    BadMagic,
    /// Not 64-bit little-endian version 1.
    BadClass,
    /// Not AArch64.
    BadMachine,
    /// Neither `ET_EXEC` nor `ET_DYN`.
    BadType,
    /// Program header size or count out of range.
    BadPhdrs,
    /// A segment's numbers are inconsistent (file range, sizes, alignment,
    /// addresses beyond the user half, overlapping segments).
    BadSegment,
    /// No loadable segment, or the entry point is in none.
    NoEntry,
    /// Needs a dynamic linker (`PT_INTERP`).
    Dynamic,
}

impl fmt::Display for ElfError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ElfError::Truncated => "truncated ELF file",
            ElfError::BadMagic => "not an ELF file",
            ElfError::BadClass => "not a 64-bit little-endian ELF file",
            ElfError::BadMachine => "not an AArch64 program",
            ElfError::BadType => "not an executable (ET_EXEC or ET_DYN)",
            ElfError::BadPhdrs => "bad program headers",
            ElfError::BadSegment => "bad loadable segment",
            ElfError::NoEntry => "entry point outside the loadable segments",
            ElfError::Dynamic => "dynamically linked (PT_INTERP); link statically",
        })
    }
}

/// One `PT_LOAD` segment (addresses before relocation by the load base).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Load {
    /// Virtual address.
    pub vaddr: u64,
    /// Size in memory.
    pub memsz: u64,
    /// Offset in the file.
    pub offset: u64,
    /// Size in the file (`<= memsz`).
    pub filesz: u64,
    /// `PF_R | PF_W | PF_X`.
    pub flags: u32,
}

impl Load {
    /// Whether the segment is writable.
    pub const fn writable(&self) -> bool {
        self.flags & PF_W != 0
    }

    /// End of the segment in memory.
    pub const fn end(&self) -> u64 {
        self.vaddr + self.memsz
    }
}

/// What the loader needs of a program.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Program {
    /// `ET_EXEC` or `ET_DYN`.
    pub etype: u16,
    /// Entry point (unrelocated).
    pub entry: u64,
    /// File offset of the program headers.
    pub phoff: u64,
    /// Number of program headers.
    pub phnum: u16,
    /// Where the program headers are in memory (unrelocated): `PT_PHDR`,
    /// else the load segment that holds them in the file.
    pub phdr_vaddr: Option<u64>,
    /// The loadable segments, ascending.
    pub loads: Vec<Load>,
}

impl Program {
    /// Lowest page of the image.
    pub fn low(&self) -> u64 {
        self.loads.first().map_or(0, |l| l.vaddr & !(PAGE - 1))
    }

    /// End of the image (page-aligned).
    pub fn high(&self) -> u64 {
        self.loads
            .iter()
            .map(|l| l.end())
            .max()
            .unwrap_or(0)
            .div_ceil(PAGE)
            * PAGE
    }
}

fn u16_at(b: &[u8], at: usize) -> Result<u16, ElfError> {
    let s = b.get(at..at + 2).ok_or(ElfError::Truncated)?;
    Ok(u16::from_le_bytes([s[0], s[1]]))
}

fn u32_at(b: &[u8], at: usize) -> Result<u32, ElfError> {
    let s = b.get(at..at + 4).ok_or(ElfError::Truncated)?;
    Ok(u32::from_le_bytes([s[0], s[1], s[2], s[3]]))
}

fn u64_at(b: &[u8], at: usize) -> Result<u64, ElfError> {
    let s = b.get(at..at + 8).ok_or(ElfError::Truncated)?;
    let mut w = [0u8; 8];
    w.copy_from_slice(s);
    Ok(u64::from_le_bytes(w))
}

/// Where the program headers end in the file (to know how much of it
/// [`parse`] needs); reads only the ELF header.
pub fn headers_len(ehdr: &[u8]) -> Result<u64, ElfError> {
    let phoff = u64_at(ehdr, 32)?;
    let phnum = u16_at(ehdr, 56)? as u64;
    phoff
        .checked_add(phnum * PHDR_SIZE as u64)
        .ok_or(ElfError::BadPhdrs)
}

/// Reads a program: `head` is the start of the file (at least through the
/// program headers), `file_size` the whole file's size.
pub fn parse(head: &[u8], file_size: u64) -> Result<Program, ElfError> {
    if head.len() < EHDR_SIZE || (head.len() as u64) > file_size {
        return Err(ElfError::Truncated);
    }
    if head[..4] != *b"\x7fELF" {
        return Err(ElfError::BadMagic);
    }
    // ELFCLASS64, ELFDATA2LSB, EV_CURRENT.
    if head[4] != 2 || head[5] != 1 || head[6] != 1 {
        return Err(ElfError::BadClass);
    }
    let etype = u16_at(head, 16)?;
    if u16_at(head, 18)? != EM_AARCH64 {
        return Err(ElfError::BadMachine);
    }
    if etype != ET_EXEC && etype != ET_DYN {
        return Err(ElfError::BadType);
    }
    let entry = u64_at(head, 24)?;
    let phoff = u64_at(head, 32)?;
    let phentsize = u16_at(head, 54)? as usize;
    let phnum = u16_at(head, 56)?;
    if phentsize != PHDR_SIZE || phnum == 0 || phnum as usize > MAX_PHDRS {
        return Err(ElfError::BadPhdrs);
    }
    let ph_end = headers_len(head)?;
    if ph_end > file_size {
        return Err(ElfError::BadPhdrs);
    }
    if ph_end > head.len() as u64 {
        return Err(ElfError::Truncated);
    }
    let mut loads: Vec<Load> = Vec::new();
    let mut phdr_vaddr = None;
    for i in 0..phnum as usize {
        let at = phoff as usize + i * PHDR_SIZE;
        let p_type = u32_at(head, at)?;
        let flags = u32_at(head, at + 4)?;
        let offset = u64_at(head, at + 8)?;
        let vaddr = u64_at(head, at + 16)?;
        let filesz = u64_at(head, at + 32)?;
        let memsz = u64_at(head, at + 40)?;
        match p_type {
            PT_INTERP => return Err(ElfError::Dynamic),
            PT_PHDR => phdr_vaddr = Some(vaddr),
            PT_LOAD => {
                let file_end = offset.checked_add(filesz).ok_or(ElfError::BadSegment)?;
                let mem_end = vaddr.checked_add(memsz).ok_or(ElfError::BadSegment)?;
                if memsz == 0 {
                    continue;
                }
                if file_end > file_size
                    || filesz > memsz
                    || mem_end > USER_END
                    || offset % PAGE != vaddr % PAGE
                {
                    return Err(ElfError::BadSegment);
                }
                if let Some(prev) = loads.last()
                    && vaddr < prev.end()
                {
                    // Unordered or overlapping segments.
                    return Err(ElfError::BadSegment);
                }
                loads.push(Load {
                    vaddr,
                    memsz,
                    offset,
                    filesz,
                    flags,
                });
            }
            _ => {}
        }
    }
    if loads.is_empty() {
        return Err(ElfError::NoEntry);
    }
    if !loads
        .iter()
        .any(|l| l.flags & PF_X != 0 && entry >= l.vaddr && entry < l.end())
    {
        return Err(ElfError::NoEntry);
    }
    if phdr_vaddr.is_none() {
        phdr_vaddr = loads
            .iter()
            .find(|l| phoff >= l.offset && ph_end <= l.offset + l.filesz)
            .map(|l| l.vaddr + (phoff - l.offset));
    }
    Ok(Program {
        etype,
        entry,
        phoff,
        phnum,
        phdr_vaddr,
        loads,
    })
}

/// Builds a minimal valid ELF image for tests: `loads` as
/// `(vaddr, memsz, offset, filesz, flags)`, the program headers right after
/// the ELF header, a `PT_PHDR`, and the file padded to cover all segments.
#[cfg(test)]
pub fn build_test_elf(etype: u16, entry: u64, loads: &[(u64, u64, u64, u64, u32)]) -> Vec<u8> {
    let phnum = loads.len() + 1;
    let mut f = alloc::vec![0u8; EHDR_SIZE + phnum * PHDR_SIZE];
    f[..4].copy_from_slice(b"\x7fELF");
    f[4] = 2;
    f[5] = 1;
    f[6] = 1;
    f[16..18].copy_from_slice(&etype.to_le_bytes());
    f[18..20].copy_from_slice(&EM_AARCH64.to_le_bytes());
    f[24..32].copy_from_slice(&entry.to_le_bytes());
    f[32..40].copy_from_slice(&(EHDR_SIZE as u64).to_le_bytes());
    f[54..56].copy_from_slice(&(PHDR_SIZE as u16).to_le_bytes());
    f[56..58].copy_from_slice(&(phnum as u16).to_le_bytes());
    let mut put = |i: usize, t: u32, fl: u32, off: u64, va: u64, fsz: u64, msz: u64| {
        let at = EHDR_SIZE + i * PHDR_SIZE;
        f[at..at + 4].copy_from_slice(&t.to_le_bytes());
        f[at + 4..at + 8].copy_from_slice(&fl.to_le_bytes());
        f[at + 8..at + 16].copy_from_slice(&off.to_le_bytes());
        f[at + 16..at + 24].copy_from_slice(&va.to_le_bytes());
        f[at + 32..at + 40].copy_from_slice(&fsz.to_le_bytes());
        f[at + 40..at + 48].copy_from_slice(&msz.to_le_bytes());
    };
    let first = loads.first().map_or(0, |l| l.0 - l.2);
    put(
        0,
        PT_PHDR,
        PF_R,
        EHDR_SIZE as u64,
        first + EHDR_SIZE as u64,
        (phnum * PHDR_SIZE) as u64,
        (phnum * PHDR_SIZE) as u64,
    );
    for (i, &(va, msz, off, fsz, fl)) in loads.iter().enumerate() {
        put(i + 1, PT_LOAD, fl, off, va, fsz, msz);
    }
    let end = loads.iter().map(|l| l.2 + l.3).max().unwrap_or(0) as usize;
    if f.len() < end {
        f.resize(end, 0);
    }
    // Recognisable file contents after the headers.
    let hdr = EHDR_SIZE + phnum * PHDR_SIZE;
    for (i, b) in f.iter_mut().enumerate().skip(hdr) {
        *b = (i % 251) as u8;
    }
    f
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Vec<u8> {
        build_test_elf(
            ET_DYN,
            0x1100,
            &[
                (0, 0x1800, 0, 0x1800, PF_R | PF_X),
                (0x12000, 0x3000, 0x2000, 0x800, PF_R | PF_W),
            ],
        )
    }

    #[test]
    fn reads_a_static_pie() {
        let f = sample();
        let p = parse(&f, f.len() as u64).unwrap();
        assert_eq!(p.etype, ET_DYN);
        assert_eq!(p.entry, 0x1100);
        assert_eq!(p.loads.len(), 2);
        assert_eq!(p.phdr_vaddr, Some(64));
        assert!(p.loads[1].writable());
        assert_eq!(p.low(), 0);
        assert_eq!(p.high(), 0x15000);
        assert_eq!(headers_len(&f).unwrap(), 64 + 3 * 56);
    }

    #[test]
    fn refuses_hostile_headers() {
        let good = sample();
        let n = good.len() as u64;
        let check = |f: &[u8], e: ElfError| assert_eq!(parse(f, f.len() as u64), Err(e));
        check(&good[..10], ElfError::Truncated);
        let mut f = good.clone();
        f[0] = 0;
        check(&f, ElfError::BadMagic);
        let mut f = good.clone();
        f[4] = 1;
        check(&f, ElfError::BadClass);
        let mut f = good.clone();
        f[18] = 62;
        check(&f, ElfError::BadMachine);
        let mut f = good.clone();
        f[16] = 4;
        check(&f, ElfError::BadType);
        let mut f = good.clone();
        f[56..58].copy_from_slice(&1000u16.to_le_bytes());
        check(&f, ElfError::BadPhdrs);
        let mut f = good.clone();
        f[32..40].copy_from_slice(&u64::MAX.to_le_bytes());
        check(&f, ElfError::BadPhdrs);
        // Segment beyond the file.
        let mut f = good.clone();
        let seg = EHDR_SIZE + 2 * PHDR_SIZE;
        f[seg + 32..seg + 40].copy_from_slice(&(n * 2).to_le_bytes());
        f[seg + 40..seg + 48].copy_from_slice(&(n * 2).to_le_bytes());
        check(&f, ElfError::BadSegment);
        // Offset overflow.
        let mut f = good.clone();
        f[seg + 8..seg + 16].copy_from_slice(&(u64::MAX - 10).to_le_bytes());
        check(&f, ElfError::BadSegment);
        // filesz > memsz.
        let mut f = good.clone();
        f[seg + 40..seg + 48].copy_from_slice(&0x10u64.to_le_bytes());
        check(&f, ElfError::BadSegment);
        // Beyond the user half.
        let mut f = good.clone();
        f[seg + 16..seg + 24].copy_from_slice(&(USER_END - 0x1000).to_le_bytes());
        check(&f, ElfError::BadSegment);
        // Misaligned offset/address.
        let mut f = good.clone();
        f[seg + 16..seg + 24].copy_from_slice(&0x12008u64.to_le_bytes());
        check(&f, ElfError::BadSegment);
        // Overlapping segments.
        let mut f = good.clone();
        f[seg + 16..seg + 24].copy_from_slice(&0x1000u64.to_le_bytes());
        check(&f, ElfError::BadSegment);
        // Entry outside the executable segment.
        let mut f = good.clone();
        f[24..32].copy_from_slice(&0x12000u64.to_le_bytes());
        check(&f, ElfError::NoEntry);
        // PT_INTERP.
        let mut f = good.clone();
        f[EHDR_SIZE..EHDR_SIZE + 4].copy_from_slice(&PT_INTERP.to_le_bytes());
        check(&f, ElfError::Dynamic);
        // A file shorter than the caller claims the head to be.
        assert_eq!(parse(&good, 10), Err(ElfError::Truncated));
    }

    #[test]
    fn never_panics_on_mutations() {
        let good = sample();
        let mut seed = 0x1234_5678_9abc_def0u64;
        let mut next = || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        for _ in 0..20_000 {
            let mut f = good.clone();
            for _ in 0..(next() % 8 + 1) {
                let at = (next() % 300) as usize % f.len();
                f[at] = next() as u8;
            }
            let cut = (next() as usize) % (f.len() + 1);
            let len = if next().is_multiple_of(4) {
                cut
            } else {
                f.len()
            };
            if let Ok(p) = parse(&f[..len], next() % (2 * good.len() as u64 + 1)) {
                for l in &p.loads {
                    assert!(l.filesz <= l.memsz && l.end() <= USER_END);
                }
            }
        }
    }
}
