//! The one ELF reader of the loaders: moe and ned load the runtime with it
//! ([`Elf`], the whole file in memory), the runtime loads programs with it
//! ([`Program`], only the headers, read through a window onto the file).
//!
//! The headers are decoded by `goblin` (64-bit only, no `std`); this module
//! decides what a loadable AArch64 executable is. Every offset and size is
//! checked against the file and against the 47-bit user address space
//! before anything is used, so a hostile or truncated file gives an
//! [`ElfError`] naming what is wrong, never a panic, an overflow or a read
//! out of bounds.

use alloc::vec::Vec;
use core::fmt;

use goblin::container::Endian;
use goblin::elf::header::{
    EI_CLASS, EI_DATA, EI_VERSION, ELFCLASS64, ELFDATA2LSB, ELFMAG, EV_CURRENT, SELFMAG,
};
use goblin::elf64::header::{Header, SIZEOF_EHDR};
use goblin::elf64::program_header::{ProgramHeader, SIZEOF_PHDR};
use scroll::Pread;

pub use goblin::elf::header::{EM_AARCH64, ET_DYN, ET_EXEC};
pub use goblin::elf::program_header::{PF_R, PF_W, PF_X, PT_INTERP, PT_LOAD, PT_PHDR};

/// Size of the ELF header.
pub const EHDR_SIZE: usize = SIZEOF_EHDR;
/// Size of one program header.
pub const PHDR_SIZE: usize = SIZEOF_PHDR;
/// Most program headers accepted.
pub const MAX_PHDRS: usize = 128;
/// Most loadable segments accepted.
pub const MAX_SEGMENTS: usize = 16;
/// End of the user half of the address space (47 bits).
pub const USER_END: u64 = 1 << 47;

const PAGE: u64 = crate::PAGE;

/// Why a file is not a loadable ELF executable.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ElfError {
    /// Shorter than an ELF header.
    TooShort,
    /// No `\x7fELF` magic.
    BadMagic,
    /// Not a 64-bit ELF file.
    NotElf64,
    /// Not little-endian.
    NotLittleEndian,
    /// Unknown ELF version.
    BadVersion,
    /// Built for another machine (the `e_machine` value).
    WrongMachine(u16),
    /// Neither `ET_EXEC` nor `ET_DYN` (the `e_type` value).
    NotExecutable(u16),
    /// Position-independent (`ET_DYN`) where an executable linked at fixed
    /// addresses is needed.
    PositionIndependent,
    /// The program-header table is missing, has a wrong entry size, has
    /// more than [`MAX_PHDRS`] entries, or lies outside the file.
    BadProgramHeaders,
    /// The headers given end before the program-header table does (the
    /// caller read too little of the file: see [`Program::headers_len`]).
    HeadersCut,
    /// Needs a dynamic linker (`PT_INTERP`).
    Interpreter,
    /// Segment `n`'s file bytes lie outside the file.
    SegmentOutsideFile(usize),
    /// Segment `n` is larger in the file than in memory.
    SegmentFileSize(usize),
    /// Segment `n` wraps around or leaves the user address space.
    SegmentAddress(usize),
    /// Segment `n` has an alignment that is not a power of two, or its
    /// file offset and address differ within a page.
    SegmentAlign(usize),
    /// Segment `b` starts in or below segment `a`'s last page (loadable
    /// segments come in ascending address order and do not share pages).
    SegmentsOverlap(usize, usize),
    /// No loadable segment.
    NoSegments,
    /// More than [`MAX_SEGMENTS`] loadable segments.
    TooManySegments,
    /// The entry point is not inside an executable segment.
    EntryOutside(u64),
}

impl fmt::Display for ElfError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            ElfError::TooShort => f.write_str("file too short for an ELF header"),
            ElfError::BadMagic => f.write_str("not an ELF file (bad magic)"),
            ElfError::NotElf64 => f.write_str("not a 64-bit ELF file"),
            ElfError::NotLittleEndian => f.write_str("not a little-endian ELF file"),
            ElfError::BadVersion => f.write_str("unknown ELF version"),
            ElfError::WrongMachine(m) => write!(f, "ELF file for machine {m}, not AArch64"),
            ElfError::NotExecutable(t) => {
                write!(f, "ELF type {t} is not an executable (ET_EXEC or ET_DYN)")
            }
            ElfError::PositionIndependent => f.write_str(
                "position-independent executable (ET_DYN); it must be linked at fixed addresses",
            ),
            ElfError::BadProgramHeaders => f.write_str("bad or truncated program-header table"),
            ElfError::HeadersCut => f.write_str("program-header table cut short"),
            ElfError::Interpreter => f.write_str("dynamically linked (PT_INTERP); link statically"),
            ElfError::SegmentOutsideFile(n) => write!(f, "segment {n} lies outside the file"),
            ElfError::SegmentFileSize(n) => {
                write!(f, "segment {n} is larger in the file than in memory")
            }
            ElfError::SegmentAddress(n) => {
                write!(f, "segment {n} leaves the user address space")
            }
            ElfError::SegmentAlign(n) => write!(f, "segment {n} has a bad alignment"),
            ElfError::SegmentsOverlap(a, b) => {
                write!(f, "segment {b} overlaps or precedes segment {a}")
            }
            ElfError::NoSegments => f.write_str("no loadable segment"),
            ElfError::TooManySegments => write!(f, "more than {MAX_SEGMENTS} loadable segments"),
            ElfError::EntryOutside(e) => {
                write!(f, "entry point {e:#x} is not in an executable segment")
            }
        }
    }
}

/// A loadable segment (`PT_LOAD` with a non-zero memory size).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Segment {
    /// Index of the program header (for messages).
    pub index: usize,
    /// Virtual address (before relocation by a load base).
    pub vaddr: u64,
    /// Size in memory (the part beyond `filesz` is zero).
    pub memsz: u64,
    /// Offset of the file bytes.
    pub offset: u64,
    /// Number of file bytes.
    pub filesz: u64,
    /// [`PF_R`] | [`PF_W`] | [`PF_X`].
    pub flags: u32,
}

impl Segment {
    /// End of the segment in memory.
    pub const fn end(&self) -> u64 {
        self.vaddr + self.memsz
    }

    /// First page of the segment.
    pub const fn page_start(&self) -> u64 {
        self.vaddr & !(PAGE - 1)
    }

    /// End of the last page of the segment.
    pub const fn page_end(&self) -> u64 {
        self.end().next_multiple_of(PAGE)
    }

    /// Whether the segment is readable.
    pub const fn readable(&self) -> bool {
        self.flags & PF_R != 0
    }

    /// Whether the segment is writable.
    pub const fn writable(&self) -> bool {
        self.flags & PF_W != 0
    }

    /// Whether the segment is executable.
    pub const fn executable(&self) -> bool {
        self.flags & PF_X != 0
    }
}

/// What loading needs of an executable: its ELF header and program headers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Program {
    /// Position-independent (`ET_DYN`, a static PIE): it may be loaded at
    /// any base; else (`ET_EXEC`) at the addresses it is linked for.
    pub pie: bool,
    /// Entry point (before relocation).
    pub entry: u64,
    /// File offset of the program headers.
    pub phoff: u64,
    /// Number of program headers.
    pub phnum: u16,
    /// Where the program headers are in memory (before relocation):
    /// `PT_PHDR`, else the segment that holds them in the file.
    pub phdr_vaddr: Option<u64>,
    /// The loadable segments, in ascending address order, not sharing
    /// pages.
    pub segments: Vec<Segment>,
}

/// The checked ELF header of `head`.
fn header(head: &[u8]) -> Result<Header, ElfError> {
    if head.len() < EHDR_SIZE {
        return Err(ElfError::TooShort);
    }
    if head[..SELFMAG] != *ELFMAG {
        return Err(ElfError::BadMagic);
    }
    if head[EI_CLASS] != ELFCLASS64 {
        return Err(ElfError::NotElf64);
    }
    if head[EI_DATA] != ELFDATA2LSB {
        return Err(ElfError::NotLittleEndian);
    }
    let h: Header = head
        .pread_with(0, Endian::Little)
        .map_err(|_| ElfError::TooShort)?;
    if head[EI_VERSION] != EV_CURRENT || h.e_version != u32::from(EV_CURRENT) {
        return Err(ElfError::BadVersion);
    }
    if h.e_machine != EM_AARCH64 {
        return Err(ElfError::WrongMachine(h.e_machine));
    }
    if h.e_type != ET_EXEC && h.e_type != ET_DYN {
        return Err(ElfError::NotExecutable(h.e_type));
    }
    if h.e_phnum == 0 || usize::from(h.e_phnum) > MAX_PHDRS || h.e_phentsize as usize != PHDR_SIZE {
        return Err(ElfError::BadProgramHeaders);
    }
    Ok(h)
}

/// The end of the program-header table of `h` in the file.
fn table_end(h: &Header) -> Result<u64, ElfError> {
    h.e_phoff
        .checked_add(u64::from(h.e_phnum) * PHDR_SIZE as u64)
        .ok_or(ElfError::BadProgramHeaders)
}

/// A checked loadable segment from program header `index`, or `None` for
/// an empty one.
fn segment(index: usize, p: &ProgramHeader, file_size: u64) -> Result<Option<Segment>, ElfError> {
    if p.p_memsz == 0 {
        return Ok(None);
    }
    if p.p_filesz > p.p_memsz {
        return Err(ElfError::SegmentFileSize(index));
    }
    if p.p_offset
        .checked_add(p.p_filesz)
        .is_none_or(|end| end > file_size)
    {
        return Err(ElfError::SegmentOutsideFile(index));
    }
    if p.p_vaddr
        .checked_add(p.p_memsz)
        .is_none_or(|end| end > USER_END)
    {
        return Err(ElfError::SegmentAddress(index));
    }
    if (p.p_align > 1 && !p.p_align.is_power_of_two()) || p.p_offset % PAGE != p.p_vaddr % PAGE {
        return Err(ElfError::SegmentAlign(index));
    }
    Ok(Some(Segment {
        index,
        vaddr: p.p_vaddr,
        memsz: p.p_memsz,
        offset: p.p_offset,
        filesz: p.p_filesz,
        flags: p.p_flags & (PF_R | PF_W | PF_X),
    }))
}

impl Program {
    /// How many bytes from the start of the file [`Program::parse`] needs
    /// (through the program headers); reads only the ELF header.
    pub fn headers_len(head: &[u8]) -> Result<u64, ElfError> {
        table_end(&header(head)?)
    }

    /// Reads and checks a program: `head` is the start of the file, at
    /// least [`Program::headers_len`] bytes of it, `file_size` the whole
    /// file's size.
    pub fn parse(head: &[u8], file_size: u64) -> Result<Program, ElfError> {
        let h = header(head)?;
        let end = table_end(&h)?;
        if end > file_size {
            return Err(ElfError::BadProgramHeaders);
        }
        if end > head.len() as u64 {
            return Err(ElfError::HeadersCut);
        }
        let mut segments: Vec<Segment> = Vec::new();
        let mut phdr_vaddr = None;
        for index in 0..usize::from(h.e_phnum) {
            // In `head`: the table ends within it.
            let p: ProgramHeader = head
                .pread_with(h.e_phoff as usize + index * PHDR_SIZE, Endian::Little)
                .map_err(|_| ElfError::BadProgramHeaders)?;
            let p = &p;
            match p.p_type {
                PT_INTERP => return Err(ElfError::Interpreter),
                PT_PHDR => phdr_vaddr = Some(p.p_vaddr),
                PT_LOAD => {
                    if let Some(s) = segment(index, p, file_size)? {
                        if segments.len() == MAX_SEGMENTS {
                            return Err(ElfError::TooManySegments);
                        }
                        if let Some(prev) = segments.last()
                            && s.page_start() < prev.page_end()
                        {
                            return Err(ElfError::SegmentsOverlap(prev.index, index));
                        }
                        segments.push(s);
                    }
                }
                _ => {}
            }
        }
        if segments.is_empty() {
            return Err(ElfError::NoSegments);
        }
        let entry = h.e_entry;
        if !segments
            .iter()
            .any(|s| s.executable() && (s.vaddr..s.end()).contains(&entry))
        {
            return Err(ElfError::EntryOutside(entry));
        }
        let phoff = h.e_phoff;
        let phdr_vaddr = phdr_vaddr.or_else(|| {
            segments
                .iter()
                .find(|s| phoff >= s.offset && end <= s.offset + s.filesz)
                .map(|s| s.vaddr + (phoff - s.offset))
        });
        Ok(Program {
            pie: h.e_type == ET_DYN,
            entry,
            phoff,
            phnum: h.e_phnum,
            phdr_vaddr,
            segments,
        })
    }

    /// Lowest page of the image.
    pub fn low(&self) -> u64 {
        self.segments.first().map_or(0, Segment::page_start)
    }

    /// End of the image (page-aligned).
    pub fn high(&self) -> u64 {
        self.segments
            .iter()
            .map(Segment::page_end)
            .max()
            .unwrap_or(0)
    }
}

/// An executable linked at fixed addresses, the whole file in memory.
#[derive(Clone, Debug)]
pub struct Elf<'a> {
    data: &'a [u8],
    /// Its headers.
    pub program: Program,
}

impl<'a> Elf<'a> {
    /// Parses and checks `data`.
    pub fn parse(data: &'a [u8]) -> Result<Elf<'a>, ElfError> {
        let program = Program::parse(data, data.len() as u64)?;
        if program.pie {
            return Err(ElfError::PositionIndependent);
        }
        Ok(Elf { data, program })
    }

    /// The entry point.
    pub const fn entry(&self) -> u64 {
        self.program.entry
    }

    /// The loadable segments, in ascending address order, not sharing
    /// pages.
    pub fn segments(&self) -> &[Segment] {
        &self.program.segments
    }

    /// The file bytes of `s` (checked by [`Elf::parse`]).
    pub fn file_bytes(&self, s: &Segment) -> &'a [u8] {
        let start = s.offset as usize;
        &self.data[start..start + s.filesz as usize]
    }

    /// The whole file.
    pub const fn data(&self) -> &'a [u8] {
        self.data
    }
}

/// Builds small ELF files for tests (here and in the runtime's).
#[cfg(any(test, feature = "test-elf"))]
pub mod build {
    use alloc::vec::Vec;

    use goblin::container::Endian;
    use goblin::elf::header::{EI_CLASS, EI_DATA, EI_VERSION, ELFCLASS64, ELFDATA2LSB, ELFMAG};
    use goblin::elf64::header::Header;
    use goblin::elf64::program_header::ProgramHeader;
    use scroll::Pwrite;

    use super::{EHDR_SIZE, EM_AARCH64, PF_R, PHDR_SIZE, PT_LOAD, PT_PHDR};

    /// A program header: (type, flags, offset, vaddr, filesz, memsz, align).
    pub type Ph = (u32, u32, u64, u64, u64, u64, u64);

    /// An ELF64 AArch64 file of type `etype` with `phs` (the table right
    /// after the ELF header), padded with `pad` up to `len` bytes.
    pub fn file(
        etype: u16,
        entry: u64,
        phs: &[Ph],
        len: usize,
        pad: impl Fn(usize) -> u8,
    ) -> Vec<u8> {
        let table = EHDR_SIZE + phs.len() * PHDR_SIZE;
        let mut d: Vec<u8> = (0..len.max(table)).map(pad).collect();
        let mut ident = [0u8; 16];
        ident[..4].copy_from_slice(ELFMAG);
        ident[EI_CLASS] = ELFCLASS64;
        ident[EI_DATA] = ELFDATA2LSB;
        ident[EI_VERSION] = 1;
        let h = Header {
            e_ident: ident,
            e_type: etype,
            e_machine: EM_AARCH64,
            e_version: 1,
            e_entry: entry,
            e_phoff: EHDR_SIZE as u64,
            e_ehsize: EHDR_SIZE as u16,
            e_phentsize: PHDR_SIZE as u16,
            e_phnum: phs.len() as u16,
            ..Header::default()
        };
        let _ = d.pwrite_with(h, 0, Endian::Little);
        for (i, p) in phs.iter().enumerate() {
            let ph = ProgramHeader {
                p_type: p.0,
                p_flags: p.1,
                p_offset: p.2,
                p_vaddr: p.3,
                p_paddr: p.3,
                p_filesz: p.4,
                p_memsz: p.5,
                p_align: p.6,
            };
            let _ = d.pwrite_with(ph, EHDR_SIZE + i * PHDR_SIZE, Endian::Little);
        }
        d
    }

    /// An `ET_EXEC` file with `phs` and `body` bytes at offset 0x1000.
    pub fn elf(entry: u64, phs: &[Ph], body: &[u8]) -> Vec<u8> {
        let mut d = file(super::ET_EXEC, entry, phs, 0x1000, |_| 0);
        d.extend_from_slice(body);
        d
    }

    /// A program of type `etype` with `loads` as
    /// `(vaddr, memsz, offset, filesz, flags)`, a `PT_PHDR` first, and
    /// recognisable bytes (`offset % 251`) after the headers up to the end
    /// of the last segment.
    pub fn program(etype: u16, entry: u64, loads: &[(u64, u64, u64, u64, u32)]) -> Vec<u8> {
        let table = (loads.len() + 1) * PHDR_SIZE;
        let first = loads.first().map_or(0, |l| l.0 - l.2);
        let mut phs = Vec::from([(
            PT_PHDR,
            PF_R,
            EHDR_SIZE as u64,
            first + EHDR_SIZE as u64,
            table as u64,
            table as u64,
            8,
        )]);
        phs.extend(
            loads
                .iter()
                .map(|&(va, msz, off, fsz, fl)| (PT_LOAD, fl, off, va, fsz, msz, 0x1000)),
        );
        let end = loads.iter().map(|l| l.2 + l.3).max().unwrap_or(0) as usize;
        let hdr = EHDR_SIZE + table;
        file(etype, entry, &phs, end, |i| {
            if i < hdr { 0 } else { (i % 251) as u8 }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::build::{Ph, elf, program};
    use super::*;

    const BASE: u64 = 0x7f00_0000_0000;

    fn good() -> Vec<u8> {
        elf(
            BASE + 0x10,
            &[
                (PT_LOAD, PF_R | PF_X, 0x1000, BASE, 0x1800, 0x1800, 0x1000),
                (PT_PHDR, PF_R, 0x40, BASE + 0x40, 0, 0, 8),
                (
                    PT_LOAD,
                    PF_R | PF_W,
                    0x2800,
                    BASE + 0x3800,
                    0x100,
                    0x2000,
                    0x1000,
                ),
            ],
            &[0xaa; 0x1900],
        )
    }

    fn pie() -> Vec<u8> {
        program(
            ET_DYN,
            0x1100,
            &[
                (0, 0x1800, 0, 0x1800, PF_R | PF_X),
                (0x12000, 0x3000, 0x2000, 0x800, PF_R | PF_W),
            ],
        )
    }

    #[test]
    fn parses_segments_and_entry() {
        let d = good();
        let e = Elf::parse(&d).unwrap();
        assert_eq!(e.entry(), BASE + 0x10);
        assert_eq!(e.segments().len(), 2);
        let (t, w) = (e.segments()[0], e.segments()[1]);
        assert_eq!(
            (t.vaddr, t.memsz, t.filesz, t.index),
            (BASE, 0x1800, 0x1800, 0)
        );
        assert!(t.executable() && t.readable() && !t.writable());
        assert_eq!((t.page_start(), t.page_end()), (BASE, BASE + 0x2000));
        assert!(w.writable());
        assert_eq!(
            (w.page_start(), w.page_end()),
            (BASE + 0x3000, BASE + 0x6000)
        );
        assert_eq!(e.file_bytes(&w).len(), 0x100);
        assert_eq!(e.data().len(), d.len());
    }

    #[test]
    fn reads_a_static_pie_from_its_headers() {
        let f = pie();
        let need = Program::headers_len(&f).unwrap();
        assert_eq!(need, 64 + 3 * 56);
        let p = Program::parse(&f[..need as usize], f.len() as u64).unwrap();
        assert!(p.pie);
        assert_eq!(p.entry, 0x1100);
        assert_eq!(p.segments.len(), 2);
        assert_eq!(p.phdr_vaddr, Some(64));
        assert!(p.segments[1].writable());
        assert_eq!((p.low(), p.high()), (0, 0x15000));
        // Too little of the file read.
        assert_eq!(
            Program::parse(&f[..100], f.len() as u64),
            Err(ElfError::HeadersCut)
        );
        // The loaders want fixed addresses.
        assert_eq!(Elf::parse(&f).err(), Some(ElfError::PositionIndependent));
    }

    #[test]
    fn finds_the_program_headers_without_pt_phdr() {
        let mut f = pie();
        f[EHDR_SIZE..EHDR_SIZE + 4].copy_from_slice(&6_000_000u32.to_le_bytes());
        let p = Program::parse(&f, f.len() as u64).unwrap();
        assert_eq!(p.phdr_vaddr, Some(64));
    }

    fn patched(f: impl FnOnce(&mut Vec<u8>)) -> Result<usize, ElfError> {
        let mut d = good();
        f(&mut d);
        Elf::parse(&d).map(|e| e.segments().len())
    }

    #[test]
    fn refuses_bad_headers() {
        assert_eq!(Elf::parse(&[]).err(), Some(ElfError::TooShort));
        assert_eq!(Elf::parse(&[0x7f; 63]).err(), Some(ElfError::TooShort));
        assert_eq!(Program::headers_len(&good()[..10]), Err(ElfError::TooShort));
        assert_eq!(patched(|d| d[1] = b'X'), Err(ElfError::BadMagic));
        assert_eq!(patched(|d| d[4] = 1), Err(ElfError::NotElf64));
        assert_eq!(patched(|d| d[5] = 2), Err(ElfError::NotLittleEndian));
        assert_eq!(patched(|d| d[6] = 0), Err(ElfError::BadVersion));
        assert_eq!(patched(|d| d[20] = 0), Err(ElfError::BadVersion));
        assert_eq!(patched(|d| d[18] = 62), Err(ElfError::WrongMachine(62)));
        assert_eq!(patched(|d| d[16] = 4), Err(ElfError::NotExecutable(4)));
        assert_eq!(patched(|d| d[16] = 3), Err(ElfError::PositionIndependent));
        // Garbage of the right size.
        let junk: Vec<u8> = (0..4096u32).map(|i| (i * 37 % 256) as u8).collect();
        assert_eq!(Elf::parse(&junk).err(), Some(ElfError::BadMagic));
    }

    #[test]
    fn refuses_bad_program_header_tables() {
        // No entries, wrong entry size, too many, table past the end,
        // huge offset.
        assert_eq!(patched(|d| d[56] = 0), Err(ElfError::BadProgramHeaders));
        assert_eq!(patched(|d| d[54] = 32), Err(ElfError::BadProgramHeaders));
        assert_eq!(
            patched(|d| d[56..58].copy_from_slice(&0xffffu16.to_le_bytes())),
            Err(ElfError::BadProgramHeaders)
        );
        assert_eq!(
            patched(|d| d[32..40].copy_from_slice(&u64::MAX.to_le_bytes())),
            Err(ElfError::BadProgramHeaders)
        );
        let mut d = good();
        d.truncate(64 + 56);
        assert_eq!(Elf::parse(&d).err(), Some(ElfError::BadProgramHeaders));
        // PT_INTERP.
        assert_eq!(
            patched(|d| d[64..68].copy_from_slice(&PT_INTERP.to_le_bytes())),
            Err(ElfError::Interpreter)
        );
    }

    fn one(ph: Ph) -> Result<Elf<'static>, ElfError> {
        let d = alloc::boxed::Box::leak(elf(ph.3, &[ph], &[0; 0x100]).into_boxed_slice());
        Elf::parse(d)
    }

    #[test]
    fn refuses_hostile_segments() {
        let x = PF_R | PF_X;
        assert_eq!(
            one((PT_LOAD, x, 0x1000, BASE, 0x200, 0x200, 0)).err(),
            Some(ElfError::SegmentOutsideFile(0))
        );
        assert_eq!(
            one((PT_LOAD, x, u64::MAX, BASE, 2, 2, 0)).err(),
            Some(ElfError::SegmentOutsideFile(0))
        );
        assert_eq!(
            one((PT_LOAD, x, 0x1000, BASE, 0x10, 0x8, 0)).err(),
            Some(ElfError::SegmentFileSize(0))
        );
        assert_eq!(
            one((PT_LOAD, x, 0x1000, u64::MAX - 4, 0x10, 0x10, 0)).err(),
            Some(ElfError::SegmentAddress(0))
        );
        assert_eq!(
            one((PT_LOAD, x, 0x1000, USER_END - 8, 0x10, 0x10, 0)).err(),
            Some(ElfError::SegmentAddress(0))
        );
        assert_eq!(
            one((PT_LOAD, x, 0x1000, BASE, 0x10, 0x10, 3)).err(),
            Some(ElfError::SegmentAlign(0))
        );
        // File offset and address at different places in their pages.
        assert_eq!(
            one((PT_LOAD, x, 0x1000, BASE + 8, 0x10, 0x10, 0)).err(),
            Some(ElfError::SegmentAlign(0))
        );
        // Entry in a non-executable segment, or outside every segment.
        assert_eq!(
            one((PT_LOAD, PF_R, 0x1000, BASE, 0x10, 0x10, 0)).err(),
            Some(ElfError::EntryOutside(BASE))
        );
        // Only empty segments.
        assert_eq!(
            one((PT_LOAD, x, 0x1000, BASE, 0, 0, 0)).err(),
            Some(ElfError::NoSegments)
        );
        assert!(one((PT_LOAD, x, 0x1000, BASE, 0x10, 0x10, 0x1000)).is_ok());
    }

    #[test]
    fn refuses_shared_pages_and_too_many_segments() {
        let d = elf(
            BASE,
            &[
                (PT_LOAD, PF_R | PF_X, 0x1000, BASE, 0x10, 0x10, 0),
                (PT_LOAD, PF_R | PF_W, 0x1ff0, BASE + 0xff0, 0x10, 0x20, 0),
            ],
            &[0; 0x1000],
        );
        assert_eq!(Elf::parse(&d).err(), Some(ElfError::SegmentsOverlap(0, 1)));
        // Out of order.
        let d = elf(
            BASE,
            &[
                (PT_LOAD, PF_R | PF_W, 0x1000, BASE + 0x2000, 0x10, 0x10, 0),
                (PT_LOAD, PF_R | PF_X, 0x1000, BASE, 0x10, 0x10, 0),
            ],
            &[0; 0x100],
        );
        assert_eq!(Elf::parse(&d).err(), Some(ElfError::SegmentsOverlap(0, 1)));
        let phs: Vec<Ph> = (0..17)
            .map(|i| (PT_LOAD, PF_R | PF_X, 0x1000, BASE + i * 0x1000, 8, 8, 0))
            .collect();
        let d = elf(BASE, &phs, &[0; 0x100]);
        assert_eq!(Elf::parse(&d).err(), Some(ElfError::TooManySegments));
    }

    #[test]
    fn survives_random_garbage() {
        // A cheap deterministic fuzz: flip bytes of good files and cut
        // them short; parsing must never panic, and what it accepts is
        // consistent.
        let mut rng = l4_xorshift::XorShift::new(0x1234_5678_9abc_def0);
        let mut next = move || rng.next_u64();
        for base in [good(), pie()] {
            for _ in 0..20_000 {
                let mut d = base.clone();
                for _ in 0..(next() % 8 + 1) {
                    let at = (next() % 400) as usize % d.len();
                    d[at] = (next() >> 32) as u8;
                }
                let len = if next().is_multiple_of(4) {
                    next() as usize % (d.len() + 1)
                } else {
                    d.len()
                };
                let d = &d[..len];
                if let Ok(e) = Elf::parse(d) {
                    for s in e.segments() {
                        let _ = e.file_bytes(s);
                    }
                }
                if let Ok(p) = Program::parse(d, next() % (2 * base.len() as u64 + 1)) {
                    for s in &p.segments {
                        assert!(s.filesz <= s.memsz && s.end() <= USER_END);
                    }
                }
            }
        }
    }
}
