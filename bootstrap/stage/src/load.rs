//! Loading ELF images and building the kernel's first translation tables.

use crate::{page_up, println};
use alloc::vec::Vec;
use goblin::container::{Container, Ctx, Endian};
use goblin::elf::{Elf, ProgramHeader, header, program_header};
use l4_bootinfo::{
    BootInfo, KERNEL_ALIGN, KERNEL_IMAGE_VA, LINEAR_MAP_VA, MAX_SEGMENTS, MemKind, MemRegion,
    SEG_R, SEG_W, SEG_X, Segment,
};
use l4_pgtable::{Attr, Tables};

type Result<T> = core::result::Result<T, &'static str>;

/// Where the kernel went.
pub struct Kernel {
    pub base: u64,
    pub entry_va: u64,
    segments: Vec<ProgramHeader>,
}

fn load_segments(data: &[u8]) -> Result<(u64, Vec<ProgramHeader>)> {
    let h = Elf::parse_header(data).map_err(|_| "not an ELF file")?;
    if h.e_ident[header::EI_CLASS] != header::ELFCLASS64
        || h.e_ident[header::EI_DATA] != header::ELFDATA2LSB
    {
        return Err("not a 64-bit little-endian ELF file");
    }
    if h.e_machine != header::EM_AARCH64 {
        return Err("not an AArch64 ELF file");
    }
    if h.e_type != header::ET_EXEC {
        return Err("not an executable ELF file (must be statically linked)");
    }
    let ctx = Ctx::new(Container::Big, Endian::Little);
    let phs = ProgramHeader::parse(data, h.e_phoff as usize, h.e_phnum as usize, ctx)
        .map_err(|_| "bad program headers")?;
    let loads: Vec<_> = phs
        .into_iter()
        .filter(|p| p.p_type == program_header::PT_LOAD && p.p_memsz > 0)
        .collect();
    for p in &loads {
        if p.p_filesz > p.p_memsz
            || p.p_offset
                .checked_add(p.p_filesz)
                .is_none_or(|e| e > data.len() as u64)
        {
            return Err("a segment lies outside the file");
        }
    }
    if loads.is_empty() {
        return Err("no loadable segments");
    }
    Ok((h.e_entry, loads))
}

/// Copies a segment's file bytes to `dest` and zeroes the rest up to `len`.
fn copy_segment(data: &[u8], p: &ProgramHeader, dest: u64, len: u64) {
    let src = &data[p.p_offset as usize..(p.p_offset + p.p_filesz) as usize];
    // SAFETY: dest..dest+len is RAM the caller reserved in the memory map
    // (MMU off, identity); src is within the image.
    unsafe {
        core::ptr::write_bytes(dest as *mut u8, 0, len as usize);
        let at = dest + (p.p_vaddr & 0xfff);
        core::ptr::copy_nonoverlapping(src.as_ptr(), at as *mut u8, src.len());
    }
}

/// Loads the kernel: it is linked at [`KERNEL_IMAGE_VA`] with physical
/// addresses relative to its load base, which we choose here.
pub fn load_kernel(info: &mut BootInfo, data: &[u8]) -> Result<Kernel> {
    let (entry, segs) = load_segments(data)?;
    let mut size = 0;
    for p in &segs {
        if p.p_vaddr.wrapping_sub(KERNEL_IMAGE_VA) != p.p_paddr || p.p_vaddr & 0xfff != 0 {
            return Err("segments not linked at the kernel image address, page-aligned");
        }
        size = size.max(page_up(p.p_paddr + p.p_memsz));
    }
    if !segs
        .iter()
        .any(|p| (p.p_vaddr..p.p_vaddr + p.p_memsz).contains(&entry))
    {
        return Err("entry point outside the image");
    }
    let base = info
        .find_free(size, KERNEL_ALIGN)
        .ok_or("no free memory for it")?;
    for p in &segs {
        copy_segment(data, p, base + p.p_paddr, page_up(p.p_memsz));
    }
    info.add_mem(MemRegion::new(base, size, MemKind::Kernel))
        .map_err(|_| "memory map full")?;
    info.kernel_paddr = base;
    info.kernel_size = size;
    println!(
        "    {:x}-{:x} at {:x}, entry {:x}",
        KERNEL_IMAGE_VA,
        KERNEL_IMAGE_VA + size,
        base,
        entry
    );
    Ok(Kernel {
        base,
        entry_va: entry,
        segments: segs,
    })
}

/// Loads a user program (the root task) to free memory, segment by segment,
/// and describes it in the boot-info page for the kernel to map.
pub fn load_program(info: &mut BootInfo, data: &[u8]) -> Result<()> {
    let (entry, segs) = load_segments(data)?;
    if segs.len() > MAX_SEGMENTS {
        return Err("too many loadable segments");
    }
    for (i, p) in segs.iter().enumerate() {
        let vstart = p.p_vaddr & !0xfff;
        let vend = page_up(
            p.p_vaddr
                .checked_add(p.p_memsz)
                .ok_or("segment wraps around")?,
        );
        if vend > 1 << 47 {
            return Err("segment outside the user address range");
        }
        let len = vend - vstart;
        let pa = info.find_free(len, 4096).ok_or("no free memory for it")?;
        copy_segment(data, p, pa, len);
        info.add_mem(MemRegion::new(pa, len, MemKind::Roottask))
            .map_err(|_| "memory map full")?;
        let flags = [
            (program_header::PF_R, SEG_R),
            (program_header::PF_W, SEG_W),
            (program_header::PF_X, SEG_X),
        ]
        .iter()
        .filter(|(f, _)| p.p_flags & f != 0)
        .fold(0, |acc, (_, s)| acc | s);
        info.roottask.segments[i] = Segment {
            paddr: pa,
            vaddr: vstart,
            memsz: len,
            flags,
            _pad: 0,
        };
        println!(
            "    {:x}-{:x} at {:x} {}{}{}",
            vstart,
            vend,
            pa,
            if flags & SEG_R != 0 { 'r' } else { '-' },
            if flags & SEG_W != 0 { 'w' } else { '-' },
            if flags & SEG_X != 0 { 'x' } else { '-' }
        );
    }
    info.roottask.nr_segments = segs.len() as u32;
    info.roottask.entry = entry;
    Ok(())
}

/// Table pages from free RAM, reached with the MMU off (identity).
struct BootTables<'a>(&'a mut BootInfo);

impl Tables for BootTables<'_> {
    fn alloc(&mut self) -> Option<u64> {
        let pa = self.0.find_free(4096, 4096)?;
        self.0
            .add_mem(MemRegion::new(pa, 4096, MemKind::PageTable))
            .ok()?;
        // SAFETY: pa is a free page just reserved; MMU off, so identity.
        unsafe { core::ptr::write_bytes(pa as *mut u8, 0, 4096) };
        Some(pa)
    }
    fn table(&mut self, pa: u64) -> &mut [u64; 512] {
        // SAFETY: pa is a table page this allocator handed out (MMU off).
        unsafe { &mut *(pa as *mut [u64; 512]) }
    }
}

fn sysreg_mmfr0() -> u64 {
    let v: u64;
    // SAFETY: reading an ID register has no side effects.
    unsafe { core::arch::asm!("mrs {}, id_aa64mmfr0_el1", out(reg) v, options(nomem, nostack)) };
    v
}

const HCR_RW: u64 = 1 << 31;
const HCR_TGE: u64 = 1 << 27;
const HCR_E2H: u64 = 1 << 34;

/// SCTLR_EL2 in its VHE layout: MMU, caches, alignment-check of SP, EL0
/// access to CTR/DC ZVA/cache maintenance, EL0 WFE allowed (WFI traps), and
/// the bits that are RES1 without the features they control.
const SCTLR: u64 = (1 << 0)
    | (1 << 2)
    | (1 << 3)
    | (1 << 4)
    | (1 << 11)
    | (1 << 12)
    | (1 << 14)
    | (1 << 15)
    | (1 << 18)
    | (1 << 20)
    | (1 << 22)
    | (1 << 23)
    | (1 << 26)
    | (1 << 28)
    | (1 << 29);

/// Builds the kernel's tables (TTBR1: linear map of RAM, kernel image) and an
/// identity map of RAM (TTBR0), and returns the register values to enter the
/// kernel with: [hcr, mair, tcr, ttbr0, ttbr1, sctlr].
pub fn build_tables(
    info: &mut BootInfo,
    fdt: &l4_dtb::Dtb<'_>,
    k: &Kernel,
) -> core::result::Result<[u64; 6], l4_pgtable::MapError> {
    let mut t = BootTables(info);
    let kroot = t.alloc().ok_or(l4_pgtable::MapError::NoMemory)?;
    let idroot = t.alloc().ok_or(l4_pgtable::MapError::NoMemory)?;
    for (base, size) in fdt.memory() {
        let (base, size) = (base & !0xfff, page_up(size + (base & 0xfff)));
        l4_pgtable::map(
            &mut t,
            kroot,
            LINEAR_MAP_VA + base,
            base,
            size,
            Attr::KERNEL_RW,
            true,
        )?;
        l4_pgtable::map(&mut t, idroot, base, base, size, Attr::KERNEL_RWX, true)?;
    }
    for p in &k.segments {
        let attr = if p.p_flags & program_header::PF_X != 0 {
            Attr::KERNEL_RX
        } else if p.p_flags & program_header::PF_W != 0 {
            Attr::KERNEL_RW
        } else {
            Attr::KERNEL_RO
        };
        l4_pgtable::map(
            &mut t,
            kroot,
            p.p_vaddr,
            k.base + p.p_paddr,
            page_up(p.p_memsz),
            attr,
            false,
        )?;
    }
    info.kernel_pt_root = kroot;
    info.idmap_pt_root = idroot;

    let mmfr0 = sysreg_mmfr0();
    let ips = (mmfr0 & 0xf).min(5);
    let asid16 = if (mmfr0 >> 4) & 0xf == 2 { 1 << 36 } else { 0 };
    let walk = |shift: u32| (1 << shift) | (1 << (shift + 2)) | (3 << (shift + 4));
    let tcr = 16 | walk(8) | (16 << 16) | walk(24) | (2 << 30) | (ips << 32) | asid16;
    Ok([
        HCR_E2H | HCR_TGE | HCR_RW,
        l4_pgtable::MAIR,
        tcr,
        idroot,
        kroot,
        SCTLR,
    ])
}
