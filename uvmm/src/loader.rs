//! Guest images: the kernel (arm64 `Image`, gzip-compressed `Image.gz`,
//! ELF or a raw binary), the initial ramdisk and the device tree, placed in
//! guest RAM, and the register state the boot vCPU starts with.
//!
//! Placement in the first RAM region (`base` = its start):
//!
//! | what        | where                                                        |
//! |-------------|--------------------------------------------------------------|
//! | `Image`     | `align_up(base, 2 MiB) + text_offset` (header flag bit 3 set: `base + text_offset`) |
//! | raw binary  | `base + 0x80000`                                             |
//! | ELF         | its `PT_LOAD` segments at their physical addresses           |
//! | device tree | the last whole 2 MiB block of the region                      |
//! | ramdisk     | page-aligned, just below the device tree                      |
//!
//! The boot vCPU starts at the entry with `x0` = the device tree, `x1..x3`
//! = 0 and PSTATE = EL1h with D, A, I and F masked (the arm64 boot protocol).

use core::fmt;
use std::borrow::Cow;
use std::io::Read;

use goblin::elf::{Elf, header, program_header};

use crate::memory::{GuestMemory, MemError};

/// 2 MiB: the Image alignment and the device-tree window.
pub const BLOCK: u64 = 2 << 20;
/// Where a raw binary goes, from the RAM base.
pub const RAW_OFFSET: u64 = 0x8_0000;
/// `text_offset` of Images whose header says `image_size` 0 (pre-3.17).
pub const LEGACY_TEXT_OFFSET: u64 = 0x8_0000;
/// The largest device tree the boot protocol allows.
pub const MAX_DTB: u64 = BLOCK;
/// The arm64 Image header's magic, "ARM\x64", at offset 0x38.
pub const IMAGE_MAGIC: u32 = 0x644d_5241;
/// PSTATE of the boot vCPU: EL1h (M = 0b0101) with D, A, I, F masked.
pub const BOOT_PSTATE: u64 = 0x3c5;

const PAGE: u64 = 4096;
const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];

/// Why a guest image could not be loaded.
#[derive(Debug, PartialEq, Eq)]
pub enum LoadError {
    /// The kernel file is empty.
    EmptyKernel,
    /// An arm64 Image header is shorter than 64 bytes.
    TruncatedImageHeader(usize),
    /// An arm64 Image's `text_offset` or `image_size` makes no sense.
    BadImageHeader(String),
    /// gzip data that does not decompress.
    Gzip(String),
    /// The decompressed kernel is bigger than guest RAM.
    TooBig {
        /// What is being loaded.
        what: &'static str,
        /// Its size.
        size: u64,
        /// The room there is.
        room: u64,
    },
    /// An ELF file goblin cannot parse or uvmm cannot run.
    Elf(String),
    /// Something lands outside guest RAM.
    NotInRam {
        /// What.
        what: &'static str,
        /// The guest-physical start.
        gpa: u64,
        /// Its size.
        size: u64,
    },
    /// Two images overlap.
    Overlap(&'static str, &'static str),
    /// A memory access failed.
    Mem(MemError),
}

impl fmt::Display for LoadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LoadError::EmptyKernel => f.write_str("the kernel file is empty"),
            LoadError::TruncatedImageHeader(n) => write!(
                f,
                "the arm64 Image is truncated: {n} bytes, the header alone has 64"
            ),
            LoadError::BadImageHeader(m) => write!(f, "bad arm64 Image header: {m}"),
            LoadError::Gzip(m) => write!(f, "the gzip-compressed kernel does not decompress: {m}"),
            LoadError::TooBig { what, size, room } => write!(
                f,
                "the {what} ({size:#x} bytes) does not fit guest RAM ({room:#x} bytes there)"
            ),
            LoadError::Elf(m) => write!(f, "bad ELF kernel: {m}"),
            LoadError::NotInRam { what, gpa, size } => write!(
                f,
                "the {what} at {gpa:#x}..{:#x} is not inside guest RAM",
                gpa.saturating_add(*size)
            ),
            LoadError::Overlap(a, b) => write!(f, "the {a} and the {b} overlap in guest RAM"),
            LoadError::Mem(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for LoadError {}

impl From<MemError> for LoadError {
    fn from(e: MemError) -> LoadError {
        LoadError::Mem(e)
    }
}

/// The kind of kernel file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KernelFormat {
    /// An arm64 `Image` (its header parsed).
    Image(ImageHeader),
    /// An ELF executable.
    Elf,
    /// Anything else: bytes run from their first one.
    Raw,
}

/// The fields of the arm64 Image header uvmm uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ImageHeader {
    /// Offset of the image from a 2 MiB-aligned base.
    pub text_offset: u64,
    /// Bytes the kernel occupies including bss (0: unknown, old kernel).
    pub image_size: u64,
    /// Header flags: bit 0 big-endian, bits 1-2 page size, bit 3 placement anywhere.
    pub flags: u64,
}

impl ImageHeader {
    /// Parses the header at the start of `b`: `None` when there is no
    /// `ARM\x64` magic, an error when it is there but the header is bad.
    pub fn parse(b: &[u8]) -> Result<Option<ImageHeader>, LoadError> {
        let magic = b.get(0x38..0x3c).map(|m| [m[0], m[1], m[2], m[3]]);
        if magic.map(u32::from_le_bytes) != Some(IMAGE_MAGIC) {
            return Ok(None);
        }
        if b.len() < 64 {
            return Err(LoadError::TruncatedImageHeader(b.len()));
        }
        let word = |at: usize| {
            let mut w = [0u8; 8];
            w.copy_from_slice(&b[at..at + 8]);
            u64::from_le_bytes(w)
        };
        let (mut text_offset, image_size, flags) = (word(8), word(16), word(24));
        if image_size == 0 {
            text_offset = LEGACY_TEXT_OFFSET;
        }
        if flags & 1 != 0 {
            return Err(LoadError::BadImageHeader(
                "big-endian kernel (flags bit 0); uvmm runs little-endian guests".into(),
            ));
        }
        if text_offset % PAGE != 0 || text_offset >= BLOCK {
            return Err(LoadError::BadImageHeader(format!(
                "text_offset {text_offset:#x} is not a page offset inside 2 MiB"
            )));
        }
        if image_size != 0 && image_size < b.len() as u64 {
            return Err(LoadError::BadImageHeader(format!(
                "image_size {image_size:#x} is smaller than the file ({:#x} bytes)",
                b.len()
            )));
        }
        Ok(Some(ImageHeader {
            text_offset,
            image_size,
            flags,
        }))
    }

    /// Whether the kernel may sit anywhere in RAM (flags bit 3) rather than
    /// near the start of RAM.
    pub fn place_anywhere(&self) -> bool {
        self.flags & (1 << 3) != 0
    }
}

/// A kernel file, recognised. A gzip-compressed `Image` stays compressed
/// until [`load`] inflates it straight into guest RAM; other compressed
/// kernels (ELF, raw) are inflated here, since they are read at random.
#[derive(Debug)]
pub struct Kernel<'a> {
    data: KernelData<'a>,
    /// What it is.
    pub format: KernelFormat,
    /// Whether the file was gzip-compressed.
    pub was_gzip: bool,
}

#[derive(Debug)]
enum KernelData<'a> {
    /// The kernel's bytes: the file itself, or inflated from it.
    Bytes(Cow<'a, [u8]>),
    /// gzip data that inflates to `size` bytes (its trailer says so).
    Gzip { file: &'a [u8], size: u64 },
}

/// How much of a compressed kernel is inflated to recognise it.
const PEEK: usize = 64;

impl<'a> Kernel<'a> {
    /// Recognises `file`; its decompressed size must be at most `limit`
    /// bytes (the guest RAM size).
    pub fn parse(file: &'a [u8], limit: u64) -> Result<Kernel<'a>, LoadError> {
        if file.is_empty() {
            return Err(LoadError::EmptyKernel);
        }
        if !file.starts_with(&GZIP_MAGIC) {
            let format = KernelFormat::recognise(file)?;
            return Ok(Kernel {
                data: KernelData::Bytes(Cow::Borrowed(file)),
                format,
                was_gzip: false,
            });
        }
        let format = KernelFormat::recognise(&gzip_head(file)?)?;
        let data = match (format, gzip_size(file)) {
            (KernelFormat::Image(_), Some(size)) if size >= PEEK as u64 => {
                if size > limit {
                    return Err(LoadError::TooBig {
                        what: "kernel",
                        size,
                        room: limit,
                    });
                }
                KernelData::Gzip { file, size }
            }
            _ => KernelData::Bytes(Cow::Owned(gunzip(file, limit, "kernel")?)),
        };
        Ok(Kernel {
            data,
            format,
            was_gzip: true,
        })
    }

    /// The (decompressed) size in bytes.
    pub fn len(&self) -> u64 {
        match &self.data {
            KernelData::Bytes(b) => b.len() as u64,
            KernelData::Gzip { size, .. } => *size,
        }
    }

    /// Whether the kernel has no bytes (never, once parsed).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Writes the (decompressed) kernel to guest RAM at `gpa`.
    fn write_to(&self, mem: &GuestMemory, gpa: u64) -> Result<(), LoadError> {
        match &self.data {
            KernelData::Bytes(b) => Ok(mem.write(gpa, b)?),
            KernelData::Gzip { file, size } => inflate_into(mem, gpa, file, *size),
        }
    }
}

impl KernelFormat {
    /// The format of kernel bytes starting with `b`.
    fn recognise(b: &[u8]) -> Result<KernelFormat, LoadError> {
        Ok(if b.starts_with(&header::ELFMAG[..]) {
            KernelFormat::Elf
        } else if let Some(h) = ImageHeader::parse(b)? {
            KernelFormat::Image(h)
        } else {
            KernelFormat::Raw
        })
    }
}

/// The size a gzip file inflates to, from its trailer (ISIZE, the size
/// modulo 2^32; the decoder checks it against the data).
fn gzip_size(file: &[u8]) -> Option<u64> {
    let t = file.len().checked_sub(4).filter(|t| *t >= 18)?;
    Some(u64::from(u32::from_le_bytes(file[t..].try_into().ok()?)))
}

/// The first [`PEEK`] bytes (fewer if there are not as many) gzip `file`
/// inflates to. A stored first block (how `cargo xtask guest` writes the
/// kernel) is read as it is; anything else is inflated that far.
fn gzip_head(file: &[u8]) -> Result<Cow<'_, [u8]>, LoadError> {
    // A stored block: 3 header bits (BFINAL, BTYPE 00), the rest of the
    // byte unused, then LEN and its complement NLEN, then LEN bytes.
    if let Ok([first, l0, l1, n0, n1, data @ ..]) = deflate_stream(file)
        && first & 0b110 == 0
        && let len = u16::from_le_bytes([*l0, *l1])
        && len == !u16::from_le_bytes([*n0, *n1])
        && usize::from(len) >= PEEK
        && let Some(head) = data.get(..PEEK)
    {
        return Ok(Cow::Borrowed(head));
    }
    let mut head = Vec::with_capacity(PEEK);
    flate2::read::GzDecoder::new(file)
        .take(PEEK as u64)
        .read_to_end(&mut head)
        .map_err(|e| LoadError::Gzip(e.to_string()))?;
    Ok(Cow::Owned(head))
}

/// The deflate stream of the gzip member `file`: what lies between its
/// header (with the optional extra field, name, comment and header CRC its
/// flags announce) and its 8-byte trailer.
fn deflate_stream(file: &[u8]) -> Result<&[u8], LoadError> {
    const FHCRC: u8 = 1 << 1;
    const FEXTRA: u8 = 1 << 2;
    const FNAME: u8 = 1 << 3;
    const FCOMMENT: u8 = 1 << 4;
    const RESERVED: u8 = 0xe0;
    let short = || LoadError::Gzip(format!("its header runs past its {} bytes", file.len()));
    if file.len() < 18 || !file.starts_with(&GZIP_MAGIC) {
        return Err(LoadError::Gzip(format!(
            "{} bytes are no gzip member (magic 1f 8b, a 10-byte header, an 8-byte trailer)",
            file.len()
        )));
    }
    if file[2] != 8 {
        return Err(LoadError::Gzip(format!(
            "compression method {} (only 8, deflate, exists)",
            file[2]
        )));
    }
    let flags = file[3];
    if flags & RESERVED != 0 {
        return Err(LoadError::Gzip(format!("reserved header flags {flags:#x}")));
    }
    let end = file.len() - 8;
    let mut at = 10;
    if flags & FEXTRA != 0 {
        let len = file.get(at..at + 2).ok_or_else(short)?;
        at += 2 + usize::from(u16::from_le_bytes([len[0], len[1]]));
    }
    for flag in [FNAME, FCOMMENT] {
        if flags & flag != 0 {
            let nul = file
                .get(at..end)
                .and_then(|rest| rest.iter().position(|&b| b == 0));
            at += nul.ok_or_else(short)? + 1;
        }
    }
    if flags & FHCRC != 0 {
        at += 2;
    }
    file.get(at..end).ok_or_else(short)
}

/// Inflates gzip `file` into `out`, which its inflated size must fill
/// exactly (libdeflate: about half the instructions of a streaming
/// decoder, and no window to copy through).
///
/// The deflate stream's structure and the trailer's size are checked, the
/// trailer's CRC-32 is not (QEMU's own loader of a gzipped `Image` does
/// not check it either): under emulation the CRC of a 33 MB Debian kernel is four
/// million `CRC32X` instructions, each a call into QEMU, 90 ms of a VM's
/// start, more than copying the kernel.
fn inflate(file: &[u8], out: &mut [u8]) -> Result<(), LoadError> {
    use libdeflater::DecompressionError;
    let n = libdeflater::Decompressor::new()
        .deflate_decompress(deflate_stream(file)?, out)
        .map_err(|e| {
            LoadError::Gzip(match e {
                DecompressionError::BadData => "its deflate data is damaged".to_string(),
                DecompressionError::InsufficientSpace => format!(
                    "it inflates to more than the {:#x} bytes its trailer says (a cut or damaged file?)",
                    out.len()
                ),
            })
        })?;
    if n != out.len() {
        return Err(LoadError::Gzip(format!(
            "it inflates to {n:#x} bytes, its trailer says {:#x}",
            out.len()
        )));
    }
    Ok(())
}

/// Inflates gzip `file`, which must give exactly `size` bytes, straight
/// into guest RAM at `gpa` (no copy of the kernel in uvmm's memory).
fn inflate_into(mem: &GuestMemory, gpa: u64, file: &[u8], size: u64) -> Result<(), LoadError> {
    // SAFETY: [`load`] runs while the machine is built, before any vCPU of
    // the guest exists, and the RAM dataspace is this VM's alone: nothing
    // else touches these bytes while the decoder writes and reads them.
    unsafe { mem.with_bytes_mut(gpa, size, |out| inflate(file, out)) }?
}

/// Decompresses gzip `data`, refusing output beyond `limit` bytes.
pub fn gunzip(data: &[u8], limit: u64, what: &'static str) -> Result<Vec<u8>, LoadError> {
    let size = gzip_size(data).ok_or_else(|| {
        LoadError::Gzip(format!("{} bytes are too few for gzip data", data.len()))
    })?;
    if size > limit {
        return Err(LoadError::TooBig {
            what,
            size,
            room: limit,
        });
    }
    let mut out = vec![0; size as usize];
    inflate(data, &mut out)?;
    Ok(out)
}

/// The boot vCPU's registers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BootState {
    /// Where the kernel starts.
    pub pc: u64,
    /// `x0..x3`: the device tree, then zeroes.
    pub x: [u64; 4],
    /// [`BOOT_PSTATE`].
    pub pstate: u64,
}

/// Where everything went in guest-physical memory.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Layout {
    /// The kernel's lowest and one-past-highest address (incl. bss).
    pub kernel: (u64, u64),
    /// The kernel entry.
    pub entry: u64,
    /// Start and end of the ramdisk, if any.
    pub initrd: Option<(u64, u64)>,
    /// Where the device tree goes (it is written by [`write_dtb`]).
    pub dtb: u64,
}

impl Layout {
    /// The boot vCPU's registers.
    pub fn boot_state(&self) -> BootState {
        BootState {
            pc: self.entry,
            x: [self.dtb, 0, 0, 0],
            pstate: BOOT_PSTATE,
        }
    }
}

fn align_up(v: u64, a: u64) -> Option<u64> {
    v.checked_add(a - 1).map(|x| x & !(a - 1))
}

fn check_ram(mem: &GuestMemory, what: &'static str, gpa: u64, size: u64) -> Result<(), LoadError> {
    mem.region_of(gpa, size.max(1))
        .map(|_| ())
        .map_err(|_| LoadError::NotInRam { what, gpa, size })
}

/// Loads `kernel` and `initrd` into `mem` and decides where the device
/// tree goes; everything in the first RAM region except ELF segments,
/// which go where their physical addresses say. Runs before the guest's
/// vCPUs exist: a compressed kernel is inflated in place in guest RAM.
pub fn load(
    mem: &GuestMemory,
    kernel: &Kernel,
    initrd: Option<&[u8]>,
) -> Result<Layout, LoadError> {
    let first = mem.regions()[0];
    let (kstart, kend, entry) = match kernel.format {
        KernelFormat::Image(h) => {
            let base = if h.place_anywhere() {
                first.gpa
            } else {
                align_up(first.gpa, BLOCK).ok_or(LoadError::NotInRam {
                    what: "kernel",
                    gpa: first.gpa,
                    size: 0,
                })?
            };
            let start = base + h.text_offset;
            let size = h.image_size.max(kernel.len());
            check_ram(mem, "kernel", start, size)?;
            kernel.write_to(mem, start)?;
            mem.zero(start + kernel.len(), size - kernel.len())?;
            (start, start + size, start)
        }
        KernelFormat::Raw => {
            let start = first.gpa + RAW_OFFSET;
            let size = kernel.len();
            check_ram(mem, "kernel", start, size)?;
            kernel.write_to(mem, start)?;
            (start, start + size, start)
        }
        KernelFormat::Elf => match &kernel.data {
            KernelData::Bytes(b) => load_elf(mem, b)?,
            // `parse` inflates compressed ELF files; this only keeps the
            // match whole.
            KernelData::Gzip { file, size } => load_elf(mem, &gunzip(file, *size, "kernel")?)?,
        },
    };

    // The device tree takes the last whole 2 MiB block of the first region.
    let dtb = (first.end() & !(BLOCK - 1))
        .checked_sub(BLOCK)
        .filter(|d| *d >= first.gpa);
    let dtb = dtb.ok_or(LoadError::TooBig {
        what: "device tree window (2 MiB)",
        size: BLOCK,
        room: first.size,
    })?;
    if kend > dtb && kstart < dtb + BLOCK {
        return Err(LoadError::Overlap("kernel", "device tree"));
    }

    let initrd = match initrd {
        None => None,
        Some(rd) => {
            let size = rd.len() as u64;
            let start = dtb
                .checked_sub(size)
                .map(|s| s & !(PAGE - 1))
                .filter(|s| *s >= first.gpa)
                .ok_or(LoadError::TooBig {
                    what: "ramdisk",
                    size,
                    room: dtb - first.gpa,
                })?;
            if start < kend && kstart < start + size {
                return Err(LoadError::Overlap("kernel", "ramdisk"));
            }
            mem.write(start, rd)?;
            Some((start, start + size))
        }
    };
    Ok(Layout {
        kernel: (kstart, kend),
        entry,
        initrd,
        dtb,
    })
}

/// Writes the finished device tree to where [`load`] put its window.
pub fn write_dtb(mem: &GuestMemory, layout: &Layout, dtb: &[u8]) -> Result<(), LoadError> {
    if dtb.len() as u64 > MAX_DTB {
        return Err(LoadError::TooBig {
            what: "device tree",
            size: dtb.len() as u64,
            room: MAX_DTB,
        });
    }
    mem.write(layout.dtb, dtb)?;
    Ok(())
}

/// Makes what [`load`] and [`write_dtb`] wrote (`dtb_len` bytes of
/// device tree) visible to the guest's first instructions, which run with
/// the MMU and caches off: everything cleaned to the point of coherency,
/// the kernel also out of the instruction cache.
pub fn sync_for_boot(mem: &GuestMemory, layout: &Layout, dtb_len: u64) -> Result<(), LoadError> {
    let (kstart, kend) = layout.kernel;
    mem.sync_for_guest(kstart, kend - kstart, true)?;
    if let Some((start, end)) = layout.initrd {
        mem.sync_for_guest(start, end - start, false)?;
    }
    mem.sync_for_guest(layout.dtb, dtb_len, false)?;
    Ok(())
}

fn load_elf(mem: &GuestMemory, bytes: &[u8]) -> Result<(u64, u64, u64), LoadError> {
    let elf = Elf::parse(bytes).map_err(|e| LoadError::Elf(e.to_string()))?;
    if !elf.is_64 || elf.header.e_machine != header::EM_AARCH64 {
        return Err(LoadError::Elf(format!(
            "not a 64-bit AArch64 executable (machine {})",
            header::machine_to_str(elf.header.e_machine)
        )));
    }
    if !elf.little_endian {
        return Err(LoadError::Elf("big-endian".into()));
    }
    let mut lo = u64::MAX;
    let mut hi = 0u64;
    let mut entry = None;
    for ph in elf
        .program_headers
        .iter()
        .filter(|p| p.p_type == program_header::PT_LOAD)
    {
        let file = ph
            .p_offset
            .checked_add(ph.p_filesz)
            .filter(|e| *e <= bytes.len() as u64)
            .ok_or_else(|| {
                LoadError::Elf(format!(
                    "segment at file offset {:#x} (+{:#x}) is beyond the file's end ({:#x})",
                    ph.p_offset,
                    ph.p_filesz,
                    bytes.len()
                ))
            })?;
        if ph.p_filesz > ph.p_memsz {
            return Err(LoadError::Elf(format!(
                "segment at {:#x} has more file bytes than memory bytes",
                ph.p_paddr
            )));
        }
        check_ram(mem, "ELF segment", ph.p_paddr, ph.p_memsz)?;
        mem.write(ph.p_paddr, &bytes[ph.p_offset as usize..file as usize])?;
        mem.zero(ph.p_paddr + ph.p_filesz, ph.p_memsz - ph.p_filesz)?;
        lo = lo.min(ph.p_paddr);
        hi = hi.max(ph.p_paddr + ph.p_memsz);
        // The entry is a virtual address; run it at the matching physical one.
        let e = elf.entry;
        if e >= ph.p_vaddr && e - ph.p_vaddr < ph.p_memsz {
            entry = Some(ph.p_paddr + (e - ph.p_vaddr));
        }
    }
    if lo == u64::MAX {
        return Err(LoadError::Elf("no loadable segment".into()));
    }
    let entry = entry.ok_or_else(|| {
        LoadError::Elf(format!("entry {:#x} is in no loadable segment", elf.entry))
    })?;
    Ok((lo, hi, entry))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::memory::Ram;
    use std::io::Write;
    use std::sync::Arc;

    pub const RAM_BASE: u64 = 0x4000_0000;

    pub fn memory(size: u64) -> GuestMemory {
        GuestMemory::fill(Arc::new(Ram::zeroed(size as usize)), &[(RAM_BASE, size)]).unwrap()
    }

    /// An arm64 Image: header plus `body` filler.
    pub fn image(text_offset: u64, image_size: u64, flags: u64, body: usize) -> Vec<u8> {
        let mut b = vec![0u8; 64 + body];
        b[0..4].copy_from_slice(&[0x4d, 0x5a, 0x00, 0x91]); // "MZ" + nop-ish branch
        b[8..16].copy_from_slice(&text_offset.to_le_bytes());
        b[16..24].copy_from_slice(&image_size.to_le_bytes());
        b[24..32].copy_from_slice(&flags.to_le_bytes());
        b[0x38..0x3c].copy_from_slice(&IMAGE_MAGIC.to_le_bytes());
        for (i, x) in b[64..].iter_mut().enumerate() {
            *x = i as u8;
        }
        b
    }

    pub fn gzip(data: &[u8]) -> Vec<u8> {
        gzip_at(data, flate2::Compression::fast())
    }

    pub fn gzip_at(data: &[u8], level: flate2::Compression) -> Vec<u8> {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), level);
        e.write_all(data).unwrap();
        e.finish().unwrap()
    }

    /// A minimal AArch64 ELF with one PT_LOAD segment.
    fn elf(machine: u16, vaddr: u64, paddr: u64, entry: u64, code: &[u8], memsz: u64) -> Vec<u8> {
        let mut b = vec![0u8; 64 + 56];
        b[0..4].copy_from_slice(b"\x7fELF");
        b[4] = 2; // 64-bit
        b[5] = 1; // little-endian
        b[6] = 1;
        b[16..18].copy_from_slice(&2u16.to_le_bytes()); // ET_EXEC
        b[18..20].copy_from_slice(&machine.to_le_bytes());
        b[20..24].copy_from_slice(&1u32.to_le_bytes());
        b[24..32].copy_from_slice(&entry.to_le_bytes());
        b[32..40].copy_from_slice(&64u64.to_le_bytes()); // phoff
        b[52..54].copy_from_slice(&64u16.to_le_bytes()); // ehsize
        b[54..56].copy_from_slice(&56u16.to_le_bytes()); // phentsize
        b[56..58].copy_from_slice(&1u16.to_le_bytes()); // phnum
        let ph = &mut b[64..120];
        ph[0..4].copy_from_slice(&1u32.to_le_bytes()); // PT_LOAD
        ph[4..8].copy_from_slice(&5u32.to_le_bytes()); // R X
        ph[8..16].copy_from_slice(&120u64.to_le_bytes()); // offset
        ph[16..24].copy_from_slice(&vaddr.to_le_bytes());
        ph[24..32].copy_from_slice(&paddr.to_le_bytes());
        ph[32..40].copy_from_slice(&(code.len() as u64).to_le_bytes());
        ph[40..48].copy_from_slice(&memsz.to_le_bytes());
        ph[48..56].copy_from_slice(&0x1000u64.to_le_bytes());
        b.extend_from_slice(code);
        b
    }

    #[test]
    fn image_header_placement_and_boot_state() {
        let m = memory(16 << 20);
        let k_file = image(0x8_0000, 0x20_0000, 0b1010, 1000);
        let k = Kernel::parse(&k_file, 16 << 20).unwrap();
        assert_eq!(
            k.format,
            KernelFormat::Image(ImageHeader {
                text_offset: 0x8_0000,
                image_size: 0x20_0000,
                flags: 0b1010
            })
        );
        let l = load(&m, &k, Some(b"initrd!")).unwrap();
        assert_eq!(l.kernel, (RAM_BASE + 0x8_0000, RAM_BASE + 0x28_0000));
        assert_eq!(l.dtb, RAM_BASE + (14 << 20));
        assert_eq!(
            l.initrd,
            Some((
                RAM_BASE + (14 << 20) - 4096,
                RAM_BASE + (14 << 20) - 4096 + 7
            ))
        );
        let mut got = [0u8; 4];
        m.read(RAM_BASE + 0x8_0000 + 0x38, &mut got).unwrap();
        assert_eq!(u32::from_le_bytes(got), IMAGE_MAGIC);
        m.read(l.initrd.unwrap().0, &mut got).unwrap();
        assert_eq!(&got, b"init");
        let s = l.boot_state();
        assert_eq!(
            s,
            BootState {
                pc: RAM_BASE + 0x8_0000,
                x: [l.dtb, 0, 0, 0],
                pstate: 0x3c5
            }
        );
    }

    #[test]
    fn image_base_is_2m_aligned_unless_anywhere() {
        let m = GuestMemory::fill(
            Arc::new(Ram::zeroed(8 << 20)),
            &[(RAM_BASE + 0x1000, 8 << 20)],
        )
        .unwrap();
        let k_file = image(0x1000, 0x10000, 0, 100);
        let k = Kernel::parse(&k_file, 1 << 30).unwrap();
        assert_eq!(load(&m, &k, None).unwrap().entry, RAM_BASE + BLOCK + 0x1000);
        let k_file = image(0x1000, 0x10000, 1 << 3, 100);
        let k = Kernel::parse(&k_file, 1 << 30).unwrap();
        assert_eq!(load(&m, &k, None).unwrap().entry, RAM_BASE + 0x2000);
        // image_size 0: a legacy kernel at text_offset 0x80000.
        let k_file = image(0x1234, 0, 0, 100);
        let k = Kernel::parse(&k_file, 1 << 30).unwrap();
        assert!(matches!(k.format, KernelFormat::Image(h) if h.text_offset == LEGACY_TEXT_OFFSET));
    }

    #[test]
    fn gzip_headers_with_every_optional_field() {
        let data = image(0, 0x1_0000, 0, 3000);
        let mut e = flate2::GzBuilder::new()
            .extra(vec![1, 2, 3])
            .filename("Image")
            .comment("a kernel")
            .write(Vec::new(), flate2::Compression::none());
        e.write_all(&data).unwrap();
        let mut full = e.finish().unwrap();
        // flate2 writes no header CRC: add the flag and two bytes after the
        // comment's NUL (their value is not checked).
        let comment_end = full.windows(9).position(|w| w == b"a kernel\0").unwrap() + 9;
        full[3] |= 1 << 1;
        full.splice(comment_end..comment_end, [0xaa, 0xbb]);
        for gz in [gzip(&data), full] {
            let mut out = vec![0; data.len()];
            inflate(&gz, &mut out).unwrap();
            assert_eq!(out, data);
        }
    }

    #[test]
    fn head_of_stored_and_deflated_gzip() {
        let data = image(0, 0x1_0000, 0, 3000);
        for level in [flate2::Compression::none(), flate2::Compression::best()] {
            let gz = gzip_at(&data, level);
            let head = gzip_head(&gz).unwrap();
            assert_eq!(&head[..], &data[..PEEK], "{level:?}");
            assert_eq!(
                matches!(head, Cow::Borrowed(_)),
                level == flate2::Compression::none()
            );
        }
        // A stored block shorter than PEEK is inflated (all 10 bytes); one
        // whose length and complement disagree is refused by the inflater.
        let stored = |bytes: &[u8]| gzip_at(bytes, flate2::Compression::none());
        let short = stored(&data[..10]);
        assert!(matches!(gzip_head(&short).unwrap(), Cow::Owned(h) if h[..] == data[..10]));
        let mut broken = stored(&data);
        broken[13] ^= 1; // NLEN's low byte, after the 10-byte header, BFINAL/BTYPE, LEN
        assert!(matches!(gzip_head(&broken), Err(LoadError::Gzip(_))));
    }

    #[test]
    fn bad_gzip_headers_are_named() {
        let gz = gzip(&image(0, 0x1_0000, 0, 100));
        let mut out = vec![0; 164];
        let err = |gz: &[u8], out: &mut [u8]| inflate(gz, out).unwrap_err().to_string();
        let mut method = gz.clone();
        method[2] = 7;
        assert!(err(&method, &mut out).contains("compression method 7"));
        let mut reserved = gz.clone();
        reserved[3] = 0x20;
        assert!(err(&reserved, &mut out).contains("reserved header flags 0x20"));
        let mut nameless = gz.clone();
        nameless[3] = 1 << 3; // a name whose NUL never comes
        for b in &mut nameless[10..] {
            *b = b'x';
        }
        assert!(err(&nameless, &mut out).contains("header runs past"));
        let mut extra = gz.clone();
        extra[3] = 1 << 2;
        extra[10..12].copy_from_slice(&0xffffu16.to_le_bytes());
        assert!(err(&extra, &mut out).contains("header runs past"));
        assert!(err(&gz[..17], &mut out).contains("no gzip member"));
        // A block of the reserved type 11, and a member cut short, whose
        // last 4 bytes give a size smaller than what it inflates to.
        let mut reserved_block = gz.clone();
        reserved_block[10] |= 0b110;
        assert!(err(&reserved_block, &mut out).contains("deflate data is damaged"));
        assert!(err(&gz, &mut out[..100]).contains("more than the 0x64 bytes"));
    }

    #[test]
    fn gzip_image_and_raw() {
        let m = memory(8 << 20);
        let img = image(0, 0x1_0000, 0, 5000);
        let k_file = gzip(&img);
        let k = Kernel::parse(&k_file, 8 << 20).unwrap();
        assert!(k.was_gzip);
        assert_eq!(k.len(), img.len() as u64);
        let l = load(&m, &k, None).unwrap();
        let mut back = vec![0; img.len()];
        m.read(l.kernel.0, &mut back).unwrap();
        assert_eq!(back, img, "inflated straight into guest RAM");
        // A bigger one.
        let big = image(0, 3 << 20, 0, 2 << 20);
        let big_gz = gzip(&big);
        let k = Kernel::parse(&big_gz, 8 << 20).unwrap();
        let l = load(&m, &k, None).unwrap();
        let mut back = vec![0; big.len()];
        m.read(l.kernel.0, &mut back).unwrap();
        assert_eq!(back, big);
        // A compressed raw binary is inflated up front.
        let raw_gz = gzip(b"\x00\x00\x00\x14raw code, compressed");
        let k = Kernel::parse(&raw_gz, 8 << 20).unwrap();
        assert_eq!((k.format, k.len()), (KernelFormat::Raw, 24));
        let raw = Kernel::parse(b"\x00\x00\x00\x14raw code", 8 << 20).unwrap();
        assert_eq!(raw.format, KernelFormat::Raw);
        let l = load(&m, &raw, None).unwrap();
        assert_eq!(l.entry, RAM_BASE + RAW_OFFSET);
        assert_eq!(l.boot_state().x[0], RAM_BASE + (6 << 20));
    }

    #[test]
    fn elf_segments_and_entry() {
        let m = memory(8 << 20);
        let code = [0xaa; 32];
        let f = elf(
            header::EM_AARCH64,
            0xffff_0000_0010_0000,
            RAM_BASE + 0x10_0000,
            0xffff_0000_0010_0008,
            &code,
            0x100,
        );
        let k = Kernel::parse(&f, 8 << 20).unwrap();
        assert_eq!(k.format, KernelFormat::Elf);
        let l = load(&m, &k, None).unwrap();
        assert_eq!(l.entry, RAM_BASE + 0x10_0008);
        assert_eq!(l.kernel, (RAM_BASE + 0x10_0000, RAM_BASE + 0x10_0100));
        assert_eq!(m.read_u32(RAM_BASE + 0x10_001c), Ok(0xaaaa_aaaa));
        assert_eq!(m.read_u32(RAM_BASE + 0x10_0020), Ok(0));
    }

    #[test]
    fn bad_kernels_get_clear_errors() {
        let m = memory(8 << 20);
        assert_eq!(
            Kernel::parse(&Vec::new(), 1).unwrap_err(),
            LoadError::EmptyKernel
        );
        // Image magic with a truncated header.
        let mut short = vec![0u8; 0x3c];
        short[0x38..0x3c].copy_from_slice(&IMAGE_MAGIC.to_le_bytes());
        assert_eq!(
            Kernel::parse(&short, 1 << 20).unwrap_err(),
            LoadError::TruncatedImageHeader(0x3c)
        );
        assert!(matches!(
            Kernel::parse(&image(0x123, 0x1_0000, 0, 10), 1 << 20),
            Err(LoadError::BadImageHeader(_))
        ));
        assert!(matches!(
            Kernel::parse(&image(0, 0x1_0000, 1, 10), 1 << 20),
            Err(LoadError::BadImageHeader(_))
        ));
        // Truncated / garbage gzip.
        let gz = gzip(&image(0, 0x1_0000, 0, 5000));
        // (A cut file's last bytes are no trailer: parse may take them for
        // a size too big, or load finds the stream cut.)
        let cut = &gz[..gz.len() / 2];
        let e = Kernel::parse(cut, 1 << 20).and_then(|k| load(&m, &k, None));
        assert!(
            matches!(e, Err(LoadError::Gzip(_)) | Err(LoadError::TooBig { .. })),
            "{e:?}"
        );
        assert!(matches!(
            Kernel::parse(&[0x1f, 0x8b, 8, 0, 1, 2, 3], 1 << 20),
            Err(LoadError::Gzip(_))
        ));
        assert!(matches!(
            Kernel::parse(&gz, 100),
            Err(LoadError::TooBig { .. })
        ));
        // A trailer that lies about the size: found while
        // inflating into guest RAM.
        let mut lie = gz.clone();
        let n = lie.len();
        lie[n - 4..].copy_from_slice(&0x1000u32.to_le_bytes());
        let k = Kernel::parse(&lie, 1 << 20).unwrap();
        let e = load(&m, &k, None).unwrap_err();
        assert!(matches!(&e, LoadError::Gzip(_)), "{e}");
        lie[n - 4..].copy_from_slice(&0x9000u32.to_le_bytes());
        let k = Kernel::parse(&lie, 1 << 20).unwrap();
        let e = load(&m, &k, None).unwrap_err();
        assert!(matches!(&e, LoadError::Gzip(_)), "{e}");
        // ELF: wrong machine, truncated, outside RAM.
        let code = [0u8; 16];
        let f = elf(header::EM_X86_64, 0x1000, RAM_BASE, 0x1000, &code, 16);
        assert!(matches!(
            load(&m, &Kernel::parse(&f, 1 << 20).unwrap(), None),
            Err(LoadError::Elf(_))
        ));
        let f = elf(header::EM_AARCH64, 0x1000, RAM_BASE, 0x1000, &code, 16);
        let cut = Kernel::parse(&f[..f.len() - 8], 1 << 20).unwrap();
        assert!(matches!(load(&m, &cut, None), Err(LoadError::Elf(_))));
        let f = elf(header::EM_AARCH64, 0x1000, 0x1000, 0x1000, &code, 16);
        assert!(matches!(
            load(&m, &Kernel::parse(&f, 1 << 20).unwrap(), None),
            Err(LoadError::NotInRam {
                what: "ELF segment",
                ..
            })
        ));
        let f = elf(header::EM_AARCH64, 0x1000, RAM_BASE, 0x9000, &code, 16);
        assert!(matches!(
            load(&m, &Kernel::parse(&f, 1 << 20).unwrap(), None),
            Err(LoadError::Elf(_))
        ));
        assert!(matches!(
            load(&m, &Kernel::parse(b"\x7fELFxx", 1 << 20).unwrap(), None),
            Err(LoadError::Elf(_))
        ));
    }

    /// Kernels (an ELF file, an arm64 Image, both gzip-compressed) with
    /// random bytes written over them or cut short: parsed and loaded into
    /// guest RAM, or an error; never a panic.
    #[test]
    fn damaged_kernels_are_errors() {
        let m = memory(8 << 20);
        let code = [0x5au8; 64];
        let elf_file = elf(header::EM_AARCH64, 0x1000, RAM_BASE, 0x1000, &code, 128);
        let img = image(0, 0x1_0000, 0, 3000);
        let good = [elf_file.clone(), img.clone(), gzip(&elf_file), gzip(&img)];
        crate::damage::never_panics(&good, 8_000, 128, |k| {
            let _ = Kernel::parse(k, 4 << 20).and_then(|kernel| load(&m, &kernel, Some(b"initrd")));
        });
    }

    #[test]
    fn things_that_do_not_fit() {
        let m = memory(4 << 20);
        let big_file = image(0, 3 << 20, 0, 100);
        let big = Kernel::parse(&big_file, 1 << 30).unwrap();
        assert_eq!(
            load(&m, &big, None).unwrap_err(),
            LoadError::Overlap("kernel", "device tree")
        );
        let k_file = image(0, 0x10_0000, 0, 100);
        let k = Kernel::parse(&k_file, 1 << 30).unwrap();
        assert_eq!(
            load(&m, &k, Some(&vec![1; 0x18_0000])).unwrap_err(),
            LoadError::Overlap("kernel", "ramdisk")
        );
        let tiny = memory(1 << 20);
        assert!(matches!(
            load(&tiny, &k, None),
            Err(LoadError::NotInRam { .. }) | Err(LoadError::TooBig { .. })
        ));
        let l = load(&m, &k, None).unwrap();
        assert!(matches!(
            write_dtb(&m, &l, &vec![0; (2 << 20) + 1]),
            Err(LoadError::TooBig { .. })
        ));
    }
}
