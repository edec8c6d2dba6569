//! The boot image: the boot stage's flat binary, then, at the next page
//! boundary after the stage's `_end`, a payload that starts with a header and a
//! module table, followed by a string table and the module contents (each
//! page-aligned; [`build`] aligns each further by its size, [`module_align`]).
//!
//! ```text
//! +-------------------+ image start (RAM base + 2 MiB: the image builder
//! |                   | writes it as an ELF file, see [`Payload::filled`])
//! | boot stage        | arm64 Linux Image header, code, data, zeroed bss
//! +-------------------+ page-aligned: payload start
//! | Header            |
//! | ModuleDesc[n]     |
//! | strings           | names and command lines, UTF-8, not NUL-terminated
//! | module 0 (page)   |
//! | module 1 (page)   |
//! +-------------------+
//! ```
//! All integers little-endian. [`Payload::parse`] is used on the target and
//! checks every offset; [`build`] (feature `std`) is used by the image builder.

#![no_std]
#![deny(unsafe_op_in_unsafe_fn)]

#[cfg(feature = "std")]
extern crate std;

pub const MAGIC: [u8; 8] = *b"L4RSIMG\0";
pub const VERSION: u32 = 1;
pub const PAGE: u64 = 4096;
pub const HEADER_SIZE: usize = 32;
pub const DESC_SIZE: usize = 40;
/// Where in a module descriptor the name's (offset, length) is.
const NAME_REF: usize = 24;
/// Where in a module descriptor the command line's (offset, length) is.
const CMDLINE_REF: usize = 32;
/// Where module contents start in memory: at multiples of 64 KiB at least
/// when the payload's place is known ([`build`]), so that programs map their
/// segments from a module in pieces larger than a page (ELF segments are
/// aligned alike in file and memory up to 64 KiB on AArch64).
pub const MODULE_ALIGN: u64 = 64 * 1024;
/// The largest alignment a module gets ([`module_align`]): a 2 MiB block,
/// the largest piece moe maps at a time.
pub const MODULE_ALIGN_MAX: u64 = 2 << 20;

/// Where a module of `size` bytes starts: at a multiple of the smallest
/// power of two not below its size, between [`MODULE_ALIGN`] and
/// [`MODULE_ALIGN_MAX`], so that a module up to 2 MiB lies in one naturally
/// aligned block. Its readers then fault it in through as few and as large
/// mappings as moe makes (each page fault is a round trip to moe): a VMM
/// reads a 33 MB guest kernel in 2 MiB pieces instead of 64 KiB ones, and a
/// program's segments come in pieces as large as their own alignment in
/// the program allows. The padding is at most one alignment per module, in
/// memory only (the ELF image leaves it out).
pub fn module_align(size: u64) -> u64 {
    size.checked_next_power_of_two()
        .unwrap_or(MODULE_ALIGN_MAX)
        .clamp(MODULE_ALIGN, MODULE_ALIGN_MAX)
}

/// The role of a module in the boot.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Kernel,
    Roottask,
    Module,
}

impl Kind {
    #[cfg(feature = "std")]
    fn to_u32(self) -> u32 {
        match self {
            Kind::Kernel => 0,
            Kind::Roottask => 1,
            Kind::Module => 2,
        }
    }
    fn from_u32(v: u32) -> Option<Self> {
        Some(match v {
            0 => Kind::Kernel,
            1 => Kind::Roottask,
            2 => Kind::Module,
            _ => return None,
        })
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Error {
    TooShort,
    BadMagic,
    BadVersion(u32),
    BadKind { index: usize, kind: u32 },
    OutOfBounds { index: usize },
    BadString { index: usize },
    Misaligned { index: usize },
}

impl core::fmt::Display for Error {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Error::TooShort => write!(f, "image payload shorter than its header"),
            Error::BadMagic => write!(f, "no module table after the boot stage (bad magic)"),
            Error::BadVersion(v) => write!(f, "module table version {v}, expected {VERSION}"),
            Error::BadKind { index, kind } => write!(f, "module {index}: unknown kind {kind}"),
            Error::OutOfBounds { index } => write!(f, "module {index}: lies outside the image"),
            Error::BadString { index } => write!(
                f,
                "module {index}: name or command line is not UTF-8 or out of bounds"
            ),
            Error::Misaligned { index } => write!(f, "module {index}: not page-aligned"),
        }
    }
}

fn u32_at(b: &[u8], off: usize) -> u32 {
    u32::from_le_bytes([b[off], b[off + 1], b[off + 2], b[off + 3]])
}

fn u64_at(b: &[u8], off: usize) -> u64 {
    u64::from(u32_at(b, off)) | (u64::from(u32_at(b, off + 4)) << 32)
}

/// A validated view of the payload.
#[derive(Clone, Copy)]
pub struct Payload<'a> {
    bytes: &'a [u8],
    count: usize,
}

/// One module as found in the payload.
#[derive(Clone, Copy, Debug)]
pub struct Module<'a> {
    pub kind: Kind,
    pub name: &'a str,
    pub cmdline: &'a str,
    /// Offset of the contents from the payload start.
    pub offset: u64,
    pub data: &'a [u8],
}

impl<'a> Payload<'a> {
    /// Checks the header and every descriptor against `bytes`, which must
    /// span the whole payload (the stage takes the length from the header via
    /// [`Payload::total_size`] first).
    pub fn parse(bytes: &'a [u8]) -> Result<Self, Error> {
        if bytes.len() < HEADER_SIZE {
            return Err(Error::TooShort);
        }
        if bytes[..8] != MAGIC {
            return Err(Error::BadMagic);
        }
        let version = u32_at(bytes, 8);
        if version != VERSION {
            return Err(Error::BadVersion(version));
        }
        let count = u32_at(bytes, 12) as usize;
        let table_end = HEADER_SIZE
            .checked_add(count.checked_mul(DESC_SIZE).ok_or(Error::TooShort)?)
            .ok_or(Error::TooShort)?;
        if table_end > bytes.len() {
            return Err(Error::TooShort);
        }
        let p = Payload { bytes, count };
        for i in 0..count {
            p.module(i)?;
        }
        Ok(p)
    }

    /// Reads the total payload size from a header without validating the rest.
    pub fn total_size(header: &[u8]) -> Result<u64, Error> {
        if header.len() < HEADER_SIZE {
            return Err(Error::TooShort);
        }
        if header[..8] != MAGIC {
            return Err(Error::BadMagic);
        }
        Ok(u64_at(header, 16))
    }

    pub fn len(&self) -> usize {
        self.count
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// The (offset, length) reference of descriptor `index` at `field`
    /// ([`NAME_REF`], [`CMDLINE_REF`]).
    fn str_ref(&self, index: usize, field: usize) -> (u32, u32) {
        let at = HEADER_SIZE + index * DESC_SIZE + field;
        (u32_at(self.bytes, at), u32_at(self.bytes, at + 4))
    }

    /// The string descriptor `index` refers to at `field`.
    fn str_of(&self, index: usize, field: usize) -> Result<&'a str, Error> {
        let (off, len) = self.str_ref(index, field);
        let (off, len) = (off as usize, len as usize);
        let s = off
            .checked_add(len)
            .and_then(|end| self.bytes.get(off..end))
            .ok_or(Error::BadString { index })?;
        core::str::from_utf8(s).map_err(|_| Error::BadString { index })
    }

    pub fn module(&self, index: usize) -> Result<Module<'a>, Error> {
        let d = HEADER_SIZE + index * DESC_SIZE;
        let b = self.bytes;
        let kind = u32_at(b, d);
        let kind = Kind::from_u32(kind).ok_or(Error::BadKind { index, kind })?;
        let offset = u64_at(b, d + 8);
        let size = u64_at(b, d + 16);
        if !offset.is_multiple_of(PAGE) {
            return Err(Error::Misaligned { index });
        }
        let end = offset
            .checked_add(size)
            .ok_or(Error::OutOfBounds { index })?;
        if end > b.len() as u64 {
            return Err(Error::OutOfBounds { index });
        }
        Ok(Module {
            kind,
            name: self.str_of(index, NAME_REF)?,
            cmdline: self.str_of(index, CMDLINE_REF)?,
            offset,
            data: &b[offset as usize..end as usize],
        })
    }

    pub fn modules(&self) -> impl Iterator<Item = Module<'a>> + '_ {
        // parse() validated every descriptor.
        (0..self.count).filter_map(|i| self.module(i).ok())
    }

    /// Where the header, the module table and the strings end.
    fn tables_end(&self) -> u64 {
        let table_end = (HEADER_SIZE + self.count * DESC_SIZE) as u64;
        (0..self.count)
            .flat_map(|i| [NAME_REF, CMDLINE_REF].map(|f| self.str_ref(i, f)))
            .map(|(off, len)| u64::from(off) + u64::from(len))
            .fold(table_end, u64::max)
    }

    /// The page-rounded ranges of the payload (offsets from its start)
    /// that hold bytes, in order: the tables, then each non-empty module.
    /// What lies between them is zero padding before a module.
    pub fn filled(&self) -> impl Iterator<Item = (u64, u64)> + '_ {
        let page_up = |v: u64| v.next_multiple_of(PAGE);
        let tables = (0, page_up(self.tables_end()));
        core::iter::once(tables).chain(
            self.modules()
                .filter(|m| !m.data.is_empty())
                .map(move |m| (m.offset, page_up(m.offset + m.data.len() as u64))),
        )
    }
}

/// A module to put into an image.
#[cfg(feature = "std")]
#[derive(Clone, Debug)]
pub struct Input {
    pub kind: Kind,
    pub name: std::string::String,
    pub cmdline: std::string::String,
    pub data: std::vec::Vec<u8>,
}

/// Builds the payload bytes for `modules` (to be appended to the boot stage
/// at a page boundary). `at` is where the payload will be in the image
/// (which is loaded at a [`MODULE_ALIGN_MAX`] boundary): each module starts
/// at a [`module_align`] boundary of the loaded image.
#[cfg(feature = "std")]
pub fn build(modules: &[Input], at: u64) -> std::vec::Vec<u8> {
    use std::vec::Vec;
    let align = |v: u64| v.div_ceil(PAGE) * PAGE;
    let align_module = |v: u64, size: u64| (at + v).next_multiple_of(module_align(size)) - at;
    let mut strings: Vec<u8> = Vec::new();
    let table_end = (HEADER_SIZE + modules.len() * DESC_SIZE) as u64;
    let mut descs = Vec::new();
    let mut str_ref = |s: &str| {
        let off = table_end as usize + strings.len();
        strings.extend_from_slice(s.as_bytes());
        (off as u32, s.len() as u32)
    };
    let refs: Vec<_> = modules
        .iter()
        .map(|m| (str_ref(&m.name), str_ref(&m.cmdline)))
        .collect();
    let mut offset = align(table_end + strings.len() as u64);
    for (m, (name, cmd)) in modules.iter().zip(refs) {
        offset = align_module(offset, m.data.len() as u64);
        descs.push((m.kind, offset, m.data.len() as u64, name, cmd));
        offset = align(offset + m.data.len() as u64);
    }
    let total = offset;
    let mut out = Vec::with_capacity(total as usize);
    out.extend_from_slice(&MAGIC);
    out.extend_from_slice(&VERSION.to_le_bytes());
    out.extend_from_slice(&(modules.len() as u32).to_le_bytes());
    out.extend_from_slice(&total.to_le_bytes());
    out.extend_from_slice(&0u64.to_le_bytes());
    for (kind, off, size, name, cmd) in &descs {
        out.extend_from_slice(&kind.to_u32().to_le_bytes());
        out.extend_from_slice(&0u32.to_le_bytes());
        out.extend_from_slice(&off.to_le_bytes());
        out.extend_from_slice(&size.to_le_bytes());
        for v in [name.0, name.1, cmd.0, cmd.1] {
            out.extend_from_slice(&v.to_le_bytes());
        }
    }
    out.extend_from_slice(&strings);
    for (m, (_, off, ..)) in modules.iter().zip(&descs) {
        out.resize(*off as usize, 0);
        out.extend_from_slice(&m.data);
    }
    out.resize(total as usize, 0);
    out
}

#[cfg(all(test, feature = "std"))]
mod tests {
    use super::*;
    use std::string::ToString;
    use std::vec;

    fn input(kind: Kind, name: &str, cmdline: &str, data: &[u8]) -> Input {
        Input {
            kind,
            name: name.to_string(),
            cmdline: cmdline.to_string(),
            data: data.to_vec(),
        }
    }

    #[test]
    fn round_trip() {
        let mods = vec![
            input(Kind::Kernel, "fiasco", "-serial_esc", b"kernel"),
            input(Kind::Roottask, "moe", "rom/hello.ned", &[7u8; 5000]),
            input(Kind::Module, "hello.ned", "", b""),
        ];
        let at = 0x5000;
        let bytes = build(&mods, at);
        assert_eq!(bytes.len() as u64 % PAGE, 0);
        assert_eq!(Payload::total_size(&bytes).unwrap(), bytes.len() as u64);
        let p = Payload::parse(&bytes).unwrap();
        assert_eq!(p.len(), 3);
        let got: vec::Vec<_> = p.modules().collect();
        assert_eq!(got[0].name, "fiasco");
        assert_eq!(got[0].cmdline, "-serial_esc");
        assert_eq!(got[0].data, b"kernel");
        assert_eq!(got[1].kind, Kind::Roottask);
        assert_eq!(got[1].data.len(), 5000);
        assert!(got.iter().all(|m| (at + m.offset) % MODULE_ALIGN == 0));
        assert_eq!(got[2].data, b"");
    }

    #[test]
    fn big_modules_start_at_big_boundaries() {
        assert_eq!(module_align(0), MODULE_ALIGN);
        assert_eq!(module_align(5000), MODULE_ALIGN);
        assert_eq!(module_align(0x1_0000), 0x1_0000);
        assert_eq!(module_align(0x1_0001), 0x2_0000);
        assert_eq!(module_align(967_792), 1 << 20);
        assert_eq!(module_align(1_081_874), 2 << 20);
        assert_eq!(module_align(32_961_565), MODULE_ALIGN_MAX);
        assert_eq!(module_align(u64::MAX), MODULE_ALIGN_MAX);
        let mods = vec![
            input(Kind::Kernel, "fiasco", "", b"kernel"),
            input(Kind::Module, "big", "", &vec![1u8; (2 << 20) + 1]),
            input(Kind::Module, "mid", "", &vec![2u8; 300_000]),
            input(Kind::Module, "small", "", b"x"),
        ];
        let at = 0x4_5000;
        let bytes = build(&mods, at);
        let p = Payload::parse(&bytes).unwrap();
        let got: vec::Vec<_> = p.modules().collect();
        assert_eq!((at + got[1].offset) % (2 << 20), 0, "2 MiB module");
        assert_eq!((at + got[2].offset) % (512 << 10), 0, "300 KB module");
        assert_eq!((at + got[3].offset) % MODULE_ALIGN, 0);
        assert_eq!(got[1].data.len(), (2 << 20) + 1);
        assert_eq!(got[2].data[299_999], 2);
        // The tables' page, then each module's pages; padding in between.
        let filled: vec::Vec<_> = p.filled().collect();
        let page = |v: u64| v.next_multiple_of(PAGE);
        assert_eq!(filled[0], (0, PAGE));
        let m = |i: usize| {
            (
                got[i].offset,
                page(got[i].offset + got[i].data.len() as u64),
            )
        };
        assert_eq!(&filled[1..], &[m(0), m(1), m(2), m(3)]);
        assert!(filled.windows(2).all(|w| w[0].1 <= w[1].0));
        let pad = (filled[1].1..filled[2].0).map(|o| bytes[o as usize]);
        assert!(pad.clone().count() > 0 && pad.into_iter().all(|b| b == 0));
    }

    #[test]
    fn hostile_payloads_are_refused() {
        let bytes = build(&[input(Kind::Module, "a", "", b"xyz")], 0);
        assert_eq!(Payload::parse(&bytes[..10]).err(), Some(Error::TooShort));
        let max64 = u64::MAX.to_le_bytes();
        let max32 = u32::MAX.to_le_bytes();
        // (where, what is written there, the error)
        let cases: [(usize, &[u8], Error); 7] = [
            (0, b"X", Error::BadMagic),
            (8, &[9], Error::BadVersion(9)),
            (HEADER_SIZE, &[17], Error::BadKind { index: 0, kind: 17 }),
            (HEADER_SIZE + 16, &max64, Error::OutOfBounds { index: 0 }),
            (HEADER_SIZE + 8, &[1], Error::Misaligned { index: 0 }),
            (HEADER_SIZE + 28, &max32, Error::BadString { index: 0 }),
            (12, &max32, Error::TooShort),
        ];
        for (at, patch, err) in cases {
            let mut b = bytes.clone();
            b[at..at + patch.len()].copy_from_slice(patch);
            assert_eq!(Payload::parse(&b).err(), Some(err), "{patch:?} at {at}");
        }
    }
}
