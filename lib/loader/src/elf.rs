//! A small ELF64 reader: the file header and the loadable segments.
//!
//! Only what a loader needs: little-endian AArch64 executables
//! (`ET_EXEC`), their entry point and their `PT_LOAD` program headers.
//! Every offset and size is checked against the file and against the
//! 47-bit user address space before anything is read, so a hostile or
//! truncated file gives an [`ElfError`], never a panic or a read out of
//! bounds.

use alloc::vec::Vec;
use core::fmt;

/// `PT_LOAD`.
pub const PT_LOAD: u32 = 1;
/// `ET_EXEC`.
pub const ET_EXEC: u16 = 2;
/// `EM_AARCH64`.
pub const EM_AARCH64: u16 = 183;
/// Segment flag: executable.
pub const PF_X: u32 = 1;
/// Segment flag: writable.
pub const PF_W: u32 = 2;
/// Segment flag: readable.
pub const PF_R: u32 = 4;
/// End of the user half of the address space (47 bits).
pub const USER_END: u64 = 1 << 47;
/// Most loadable segments accepted.
pub const MAX_SEGMENTS: usize = 16;

const EHDR_SIZE: usize = 64;
const PHDR_SIZE: usize = 56;

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
    /// Not an executable linked at fixed addresses (the `e_type` value).
    NotExecutable(u16),
    /// The program-header table is missing, has a wrong entry size, or
    /// lies outside the file.
    BadProgramHeaders,
    /// Segment `n`'s file bytes lie outside the file.
    SegmentOutsideFile(usize),
    /// Segment `n` is larger in the file than in memory.
    SegmentFileSize(usize),
    /// Segment `n` wraps around or leaves the user address space.
    SegmentAddress(usize),
    /// Segment `n` has an alignment that is not a power of two.
    SegmentAlign(usize),
    /// Segments `a` and `b` share a page.
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
                write!(
                    f,
                    "ELF type {t} is not an executable linked at fixed addresses"
                )
            }
            ElfError::BadProgramHeaders => f.write_str("bad or truncated program-header table"),
            ElfError::SegmentOutsideFile(n) => write!(f, "segment {n} lies outside the file"),
            ElfError::SegmentFileSize(n) => {
                write!(f, "segment {n} is larger in the file than in memory")
            }
            ElfError::SegmentAddress(n) => {
                write!(f, "segment {n} leaves the user address space")
            }
            ElfError::SegmentAlign(n) => write!(f, "segment {n} has a bad alignment"),
            ElfError::SegmentsOverlap(a, b) => write!(f, "segments {a} and {b} share a page"),
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
    /// Virtual address.
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
    /// First page of the segment.
    pub const fn page_start(&self) -> u64 {
        self.vaddr & !(crate::PAGE - 1)
    }

    /// End of the last page of the segment.
    pub const fn page_end(&self) -> u64 {
        (self.vaddr + self.memsz).next_multiple_of(crate::PAGE)
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

/// A parsed ELF executable.
#[derive(Clone, Debug)]
pub struct Elf<'a> {
    data: &'a [u8],
    /// The entry point.
    pub entry: u64,
    /// The loadable segments, sorted by address, not sharing pages.
    pub segments: Vec<Segment>,
}

fn u16_at(d: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_le_bytes(d.get(at..at + 2)?.try_into().ok()?))
}

fn u32_at(d: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(d.get(at..at + 4)?.try_into().ok()?))
}

fn u64_at(d: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_le_bytes(d.get(at..at + 8)?.try_into().ok()?))
}

impl<'a> Elf<'a> {
    /// Parses and checks `data`.
    pub fn parse(data: &'a [u8]) -> Result<Elf<'a>, ElfError> {
        if data.len() < EHDR_SIZE {
            return Err(ElfError::TooShort);
        }
        if data[..4] != *b"\x7fELF" {
            return Err(ElfError::BadMagic);
        }
        if data[4] != 2 {
            return Err(ElfError::NotElf64);
        }
        if data[5] != 1 {
            return Err(ElfError::NotLittleEndian);
        }
        let h = |at| u16_at(data, at).ok_or(ElfError::TooShort);
        if data[6] != 1 || u32_at(data, 20) != Some(1) {
            return Err(ElfError::BadVersion);
        }
        let ty = h(16)?;
        let machine = h(18)?;
        if machine != EM_AARCH64 {
            return Err(ElfError::WrongMachine(machine));
        }
        if ty != ET_EXEC {
            return Err(ElfError::NotExecutable(ty));
        }
        let entry = u64_at(data, 24).ok_or(ElfError::TooShort)?;
        let phoff = u64_at(data, 32).ok_or(ElfError::TooShort)?;
        let phentsize = h(54)? as usize;
        let phnum = h(56)? as usize;
        if phnum == 0 || phentsize != PHDR_SIZE {
            return Err(ElfError::BadProgramHeaders);
        }
        let table = usize::try_from(phoff)
            .ok()
            .and_then(|off| Some((off, off.checked_add(phnum.checked_mul(PHDR_SIZE)?)?)))
            .and_then(|(off, end)| data.get(off..end))
            .ok_or(ElfError::BadProgramHeaders)?;
        let mut segments = Vec::new();
        for (index, ph) in table.chunks_exact(PHDR_SIZE).enumerate() {
            let field = |at| u64_at(ph, at).ok_or(ElfError::BadProgramHeaders);
            if u32_at(ph, 0) != Some(PT_LOAD) {
                continue;
            }
            let flags = u32_at(ph, 4).ok_or(ElfError::BadProgramHeaders)?;
            let (offset, vaddr, filesz, memsz, align) =
                (field(8)?, field(16)?, field(32)?, field(40)?, field(48)?);
            if memsz == 0 {
                continue;
            }
            if filesz > memsz {
                return Err(ElfError::SegmentFileSize(index));
            }
            if offset
                .checked_add(filesz)
                .is_none_or(|end| end > data.len() as u64)
            {
                return Err(ElfError::SegmentOutsideFile(index));
            }
            if vaddr.checked_add(memsz).is_none_or(|end| end > USER_END) {
                return Err(ElfError::SegmentAddress(index));
            }
            if align > 1 && !align.is_power_of_two() {
                return Err(ElfError::SegmentAlign(index));
            }
            if segments.len() == MAX_SEGMENTS {
                return Err(ElfError::TooManySegments);
            }
            segments.push(Segment {
                index,
                vaddr,
                memsz,
                offset,
                filesz,
                flags: flags & (PF_R | PF_W | PF_X),
            });
        }
        if segments.is_empty() {
            return Err(ElfError::NoSegments);
        }
        segments.sort_unstable_by_key(|s| s.vaddr);
        for w in segments.windows(2) {
            if w[1].page_start() < w[0].page_end() {
                return Err(ElfError::SegmentsOverlap(w[0].index, w[1].index));
            }
        }
        if !segments
            .iter()
            .any(|s| s.executable() && (s.vaddr..s.vaddr + s.memsz).contains(&entry))
        {
            return Err(ElfError::EntryOutside(entry));
        }
        Ok(Elf {
            data,
            entry,
            segments,
        })
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

/// Builds small ELF files for tests (here and in the loader's users).
#[cfg(test)]
pub(crate) mod build {
    use alloc::vec::Vec;

    /// A program header: (type, flags, offset, vaddr, filesz, memsz, align).
    pub type Ph = (u32, u32, u64, u64, u64, u64, u64);

    /// An ELF64 AArch64 executable with `phs` and `body` bytes after the
    /// headers (at offset 0x1000).
    pub fn elf(entry: u64, phs: &[Ph], body: &[u8]) -> Vec<u8> {
        let mut d = alloc::vec![0u8; 0x1000];
        d[..4].copy_from_slice(b"\x7fELF");
        d[4] = 2;
        d[5] = 1;
        d[6] = 1;
        d[16..18].copy_from_slice(&2u16.to_le_bytes());
        d[18..20].copy_from_slice(&183u16.to_le_bytes());
        d[20..24].copy_from_slice(&1u32.to_le_bytes());
        d[24..32].copy_from_slice(&entry.to_le_bytes());
        d[32..40].copy_from_slice(&64u64.to_le_bytes());
        d[52..54].copy_from_slice(&64u16.to_le_bytes());
        d[54..56].copy_from_slice(&56u16.to_le_bytes());
        d[56..58].copy_from_slice(&(phs.len() as u16).to_le_bytes());
        for (i, p) in phs.iter().enumerate() {
            let at = 64 + i * 56;
            d[at..at + 4].copy_from_slice(&p.0.to_le_bytes());
            d[at + 4..at + 8].copy_from_slice(&p.1.to_le_bytes());
            for (k, v) in [p.2, p.3, p.3, p.4, p.5, p.6].iter().enumerate() {
                d[at + 8 + k * 8..at + 16 + k * 8].copy_from_slice(&v.to_le_bytes());
            }
        }
        d.extend_from_slice(body);
        d
    }
}

#[cfg(test)]
mod tests {
    use super::build::elf;
    use super::*;

    const BASE: u64 = 0x7f00_0000_0000;

    fn good() -> Vec<u8> {
        elf(
            BASE + 0x10,
            &[
                (PT_LOAD, PF_R | PF_X, 0x1000, BASE, 0x1800, 0x1800, 0x1000),
                (6, PF_R, 0, 0, 0, 0, 8), // PT_PHDR: ignored
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

    #[test]
    fn parses_segments_and_entry() {
        let d = good();
        let e = Elf::parse(&d).unwrap();
        assert_eq!(e.entry, BASE + 0x10);
        assert_eq!(e.segments.len(), 2);
        let (t, w) = (e.segments[0], e.segments[1]);
        assert_eq!(
            (t.vaddr, t.memsz, t.filesz, t.index),
            (BASE, 0x1800, 0x1800, 0)
        );
        assert!(t.executable() && !t.writable());
        assert_eq!((t.page_start(), t.page_end()), (BASE, BASE + 0x2000));
        assert!(w.writable());
        assert_eq!(
            (w.page_start(), w.page_end()),
            (BASE + 0x3000, BASE + 0x6000)
        );
        assert_eq!(e.file_bytes(&w).len(), 0x100);
        assert_eq!(e.data().len(), d.len());
    }

    fn patched(f: impl FnOnce(&mut Vec<u8>)) -> Result<usize, ElfError> {
        let mut d = good();
        f(&mut d);
        Elf::parse(&d).map(|e| e.segments.len())
    }

    #[test]
    fn refuses_bad_headers() {
        assert_eq!(Elf::parse(&[]).err(), Some(ElfError::TooShort));
        assert_eq!(Elf::parse(&[0x7f; 63]).err(), Some(ElfError::TooShort));
        assert_eq!(patched(|d| d[1] = b'X'), Err(ElfError::BadMagic));
        assert_eq!(patched(|d| d[4] = 1), Err(ElfError::NotElf64));
        assert_eq!(patched(|d| d[5] = 2), Err(ElfError::NotLittleEndian));
        assert_eq!(patched(|d| d[6] = 0), Err(ElfError::BadVersion));
        assert_eq!(patched(|d| d[18] = 62), Err(ElfError::WrongMachine(62)));
        assert_eq!(patched(|d| d[16] = 3), Err(ElfError::NotExecutable(3)));
    }

    #[test]
    fn refuses_bad_program_header_tables() {
        // No entries, wrong entry size, table past the end, huge offset.
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
    }

    fn one(ph: build::Ph) -> Result<Elf<'static>, ElfError> {
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
                (PT_LOAD, PF_R | PF_W, 0x1000, BASE + 0xff0, 0x10, 0x20, 0),
            ],
            &[0; 0x100],
        );
        assert_eq!(Elf::parse(&d).err(), Some(ElfError::SegmentsOverlap(0, 1)));
        let phs: Vec<build::Ph> = (0..17)
            .map(|i| (PT_LOAD, PF_R | PF_X, 0x1000, BASE + i * 0x1000, 8, 8, 0))
            .collect();
        let d = elf(BASE, &phs, &[0; 0x100]);
        assert_eq!(Elf::parse(&d).err(), Some(ElfError::TooManySegments));
    }

    #[test]
    fn survives_random_garbage() {
        // A cheap deterministic fuzz: flip bytes of a good file; parsing
        // must never panic.
        let base = good();
        let mut x: u64 = 0x1234_5678_9abc_def0;
        for _ in 0..20_000 {
            let mut d = base.clone();
            for _ in 0..4 {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                let at = (x % 400) as usize;
                d[at] = (x >> 32) as u8;
            }
            if let Ok(e) = Elf::parse(&d) {
                for s in &e.segments {
                    let _ = e.file_bytes(s);
                }
            }
        }
    }
}
