//! The boot-info page: what the boot stage tells the kernel about the machine.
//!
//! The boot stage fills one [`BootInfo`] in physical memory and passes its address
//! to the kernel in `x0`. The layout is `#[repr(C)]` with fixed-size arrays so
//! that both sides (and the host tests) agree on it without an allocator.

#![no_std]
#![deny(unsafe_op_in_unsafe_fn)]

pub const MAGIC: u64 = u64::from_le_bytes(*b"L4RSKIP\0");
pub const VERSION: u32 = 2;
pub const MAX_MEM_REGIONS: usize = 48;
pub const MAX_MODULES: usize = 64;
pub const MAX_CPUS: usize = 16;
pub const MAX_SEGMENTS: usize = 8;
pub const NAME_LEN: usize = 64;
pub const CMDLINE_LEN: usize = 512;

/// Where the kernel image is mapped (TTBR1 range); the ELF is linked there
/// and its physical addresses are offsets from wherever the boot stage put it.
pub const KERNEL_IMAGE_VA: u64 = 0xffff_ff80_0000_0000;
/// The kernel's linear map: physical address `pa` is at `LINEAR_MAP_VA + pa`.
pub const LINEAR_MAP_VA: u64 = 0xffff_0000_0000_0000;
/// Physical alignment of the kernel image.
pub const KERNEL_ALIGN: u64 = 2 << 20;

/// A NUL-padded string of at most `N - 1` bytes.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct FixedStr<const N: usize> {
    bytes: [u8; N],
}

impl<const N: usize> FixedStr<N> {
    pub const EMPTY: Self = Self { bytes: [0; N] };

    /// Stores `s`, cut at a character boundary so that it fits. Returns
    /// `false` when `s` had to be shortened.
    pub fn set(&mut self, s: &str) -> bool {
        let mut len = s.len().min(N - 1);
        while !s.is_char_boundary(len) {
            len -= 1;
        }
        self.bytes = [0; N];
        self.bytes[..len].copy_from_slice(&s.as_bytes()[..len]);
        len == s.len()
    }

    pub fn as_str(&self) -> &str {
        let len = self.bytes.iter().position(|&b| b == 0).unwrap_or(N);
        // Only `set` writes the bytes, always from a `&str` cut at a char boundary;
        // a corrupted page yields the valid prefix.
        match core::str::from_utf8(&self.bytes[..len]) {
            Ok(s) => s,
            Err(e) => core::str::from_utf8(&self.bytes[..e.valid_up_to()]).unwrap_or(""),
        }
    }
}

impl<const N: usize> core::fmt::Debug for FixedStr<N> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        core::fmt::Debug::fmt(self.as_str(), f)
    }
}

/// What a physical memory region is used for.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum MemKind {
    /// Free RAM: the kernel and the root task may use it.
    Free = 1,
    /// The boot stage and the image it carried (may be reclaimed once booted).
    Bootstrap = 2,
    /// The kernel image.
    Kernel = 3,
    /// This boot-info page.
    BootInfo = 4,
    /// A boot module (rom/ file).
    Module = 5,
    /// The device tree QEMU passed.
    Dtb = 6,
    /// The loaded segments of the root task.
    Roottask = 7,
    /// Translation tables the boot stage built for the kernel.
    PageTable = 8,
}

#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MemRegion {
    pub base: u64,
    pub size: u64,
    pub kind: MemKind,
    pub _pad: u32,
}

impl MemRegion {
    pub const fn new(base: u64, size: u64, kind: MemKind) -> Self {
        Self {
            base,
            size,
            kind,
            _pad: 0,
        }
    }
    pub const fn end(&self) -> u64 {
        self.base + self.size
    }
}

/// A boot module, visible to the root task under `rom/<name>`.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct Module {
    pub base: u64,
    pub size: u64,
    pub name: FixedStr<NAME_LEN>,
    pub cmdline: FixedStr<CMDLINE_LEN>,
}

pub const SEG_R: u32 = 4;
pub const SEG_W: u32 = 2;
pub const SEG_X: u32 = 1;

/// One loaded ELF segment: `memsz` bytes at `paddr` to be mapped at `vaddr`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct Segment {
    pub paddr: u64,
    pub vaddr: u64,
    pub memsz: u64,
    pub flags: u32,
    pub _pad: u32,
}

/// A program the boot stage loaded for the kernel to start (the root task).
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct Program {
    pub entry: u64,
    pub nr_segments: u32,
    pub _pad: u32,
    pub segments: [Segment; MAX_SEGMENTS],
    pub name: FixedStr<NAME_LEN>,
    pub cmdline: FixedStr<CMDLINE_LEN>,
}

impl Program {
    pub const EMPTY: Self = Self {
        entry: 0,
        nr_segments: 0,
        _pad: 0,
        segments: [Segment {
            paddr: 0,
            vaddr: 0,
            memsz: 0,
            flags: 0,
            _pad: 0,
        }; MAX_SEGMENTS],
        name: FixedStr::EMPTY,
        cmdline: FixedStr::EMPTY,
    };
    pub fn segments(&self) -> &[Segment] {
        &self.segments[..(self.nr_segments as usize).min(MAX_SEGMENTS)]
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Error {
    TooManyRegions,
    TooManyModules,
    TooManySegments,
}

impl core::fmt::Display for Error {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            Error::TooManyRegions => "too many memory regions for the boot-info page",
            Error::TooManyModules => "too many modules for the boot-info page",
            Error::TooManySegments => "too many loadable segments in the root task",
        })
    }
}

/// The boot-info page.
#[repr(C)]
pub struct BootInfo {
    pub magic: u64,
    pub version: u32,
    pub size: u32,
    /// Physical address and size of the flattened device tree.
    pub dtb_paddr: u64,
    pub dtb_size: u64,
    /// Counter value (CNTPCT_EL0) when the boot stage started, and its frequency.
    pub boot_counter: u64,
    pub counter_freq: u64,
    /// Where the kernel image was loaded (physical) and its size.
    pub kernel_paddr: u64,
    pub kernel_size: u64,
    /// Translation tables the stage built: the kernel's (TTBR1: linear map of
    /// RAM and the kernel image) and an identity map of RAM (TTBR0) that
    /// secondary CPUs use while they turn their MMU on.
    pub kernel_pt_root: u64,
    pub idmap_pt_root: u64,
    pub kernel_cmdline: FixedStr<CMDLINE_LEN>,
    pub nr_mem: u32,
    pub nr_modules: u32,
    pub mem: [MemRegion; MAX_MEM_REGIONS],
    pub modules: [Module; MAX_MODULES],
    pub roottask: Program,
    /// The CPU features tasks may use, which the kernel fills in before it
    /// maps this page into the root task (the boot stage leaves it zero).
    pub cpu_id: l4_abi::cpuid::CpuId,
}

impl BootInfo {
    /// Initialises a boot-info page in place (it is too large for a small stack).
    pub fn init(&mut self) {
        self.magic = MAGIC;
        self.version = VERSION;
        self.size = core::mem::size_of::<Self>() as u32;
        self.dtb_paddr = 0;
        self.dtb_size = 0;
        self.boot_counter = 0;
        self.counter_freq = 0;
        self.kernel_paddr = 0;
        self.kernel_size = 0;
        self.kernel_pt_root = 0;
        self.idmap_pt_root = 0;
        self.kernel_cmdline = FixedStr::EMPTY;
        self.nr_mem = 0;
        self.nr_modules = 0;
        self.roottask = Program::EMPTY;
        self.cpu_id = l4_abi::cpuid::CpuId::UNKNOWN;
    }

    pub fn is_valid(&self) -> bool {
        self.magic == MAGIC
            && self.version == VERSION
            && self.size as usize == core::mem::size_of::<Self>()
            && self.nr_mem as usize <= MAX_MEM_REGIONS
            && self.nr_modules as usize <= MAX_MODULES
    }

    pub fn mem(&self) -> &[MemRegion] {
        &self.mem[..(self.nr_mem as usize).min(MAX_MEM_REGIONS)]
    }

    pub fn modules(&self) -> &[Module] {
        &self.modules[..(self.nr_modules as usize).min(MAX_MODULES)]
    }

    pub fn add_module(
        &mut self,
        base: u64,
        size: u64,
        name: &str,
        cmdline: &str,
    ) -> Result<(), Error> {
        let i = self.nr_modules as usize;
        if i >= MAX_MODULES {
            return Err(Error::TooManyModules);
        }
        let m = &mut self.modules[i];
        m.base = base;
        m.size = size;
        m.name.set(name);
        m.cmdline.set(cmdline);
        self.nr_modules += 1;
        Ok(())
    }

    /// Adds a region to the memory map. RAM is added as [`MemKind::Free`];
    /// every other kind is carved out of the free regions it overlaps, so the
    /// map always says exactly which memory nobody uses yet.
    pub fn add_mem(&mut self, region: MemRegion) -> Result<(), Error> {
        if region.size == 0 {
            return Ok(());
        }
        if region.kind != MemKind::Free {
            self.carve_free(region.base, region.end())?;
        }
        // A table page next to another one joins it: the boot stage takes
        // many, and one entry each could fill the table.
        if region.kind == MemKind::PageTable
            && let Some(r) = self.mem[..self.nr_mem as usize]
                .iter_mut()
                .find(|r| r.kind == MemKind::PageTable && r.end() == region.base)
        {
            r.size += region.size;
            return Ok(());
        }
        self.push_mem(region)?;
        self.sort_mem();
        Ok(())
    }

    fn push_mem(&mut self, region: MemRegion) -> Result<(), Error> {
        let n = self.nr_mem as usize;
        if n >= MAX_MEM_REGIONS {
            return Err(Error::TooManyRegions);
        }
        self.mem[n] = region;
        self.nr_mem += 1;
        Ok(())
    }

    fn carve_free(&mut self, start: u64, end: u64) -> Result<(), Error> {
        let mut i = 0;
        while i < self.nr_mem as usize {
            let r = self.mem[i];
            if r.kind != MemKind::Free || r.end() <= start || r.base >= end {
                i += 1;
                continue;
            }
            // Remove r, then put back what lies outside [start, end).
            let n = self.nr_mem as usize;
            self.mem[i] = self.mem[n - 1];
            self.nr_mem -= 1;
            if r.base < start {
                self.push_mem(MemRegion::new(r.base, start - r.base, MemKind::Free))?;
            }
            if r.end() > end {
                self.push_mem(MemRegion::new(end, r.end() - end, MemKind::Free))?;
            }
        }
        Ok(())
    }

    fn sort_mem(&mut self) {
        let n = self.nr_mem as usize;
        // Insertion sort: few entries, no allocator.
        for i in 1..n {
            let mut j = i;
            while j > 0 && self.mem[j - 1].base > self.mem[j].base {
                self.mem.swap(j - 1, j);
                j -= 1;
            }
        }
    }

    /// The free region at least `size` bytes large whose aligned start is the
    /// lowest, or `None`.
    pub fn find_free(&self, size: u64, align: u64) -> Option<u64> {
        self.mem()
            .iter()
            .filter(|r| r.kind == MemKind::Free)
            .find_map(|r| {
                let start = r.base.checked_add(align - 1)? & !(align - 1);
                (start.checked_add(size)? <= r.end()).then_some(start)
            })
    }

    /// Total bytes of the given kind.
    pub fn total(&self, kind: MemKind) -> u64 {
        self.mem()
            .iter()
            .filter(|r| r.kind == kind)
            .map(|r| r.size)
            .sum()
    }
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use std::boxed::Box;

    fn new_info() -> Box<BootInfo> {
        // SAFETY: BootInfo is plain data (integers, byte arrays and a u32 enum
        // whose value is set by init before any read), and init fills every
        // field that is read afterwards.
        let mut b: Box<BootInfo> = unsafe { Box::new_zeroed().assume_init() };
        b.init();
        b
    }

    /// A boot-info page to which the regions (start, size, kind) were
    /// added in order.
    fn with_regions(regions: &[(u64, u64, MemKind)]) -> Box<BootInfo> {
        let mut b = new_info();
        for &(start, size, kind) in regions {
            b.add_mem(MemRegion::new(start, size, kind)).unwrap();
        }
        b
    }

    #[test]
    fn fixed_str_truncates_at_char_boundary() {
        let mut s = FixedStr::<5>::EMPTY;
        assert!(s.set("abcd"));
        assert_eq!(s.as_str(), "abcd");
        assert!(!s.set("abcdef"));
        assert_eq!(s.as_str(), "abcd");
        assert!(!s.set("abcé"));
        assert_eq!(s.as_str(), "abc");
    }

    #[test]
    fn carving_splits_free_ram() {
        let b = with_regions(&[
            (0x4000_0000, 0x4000_0000, MemKind::Free),
            (0x4008_0000, 0x10_0000, MemKind::Bootstrap),
            (0x4000_0000, 0x1000, MemKind::Dtb),
        ]);
        let m = b.mem();
        assert_eq!(m.len(), 4);
        assert_eq!(m[0], MemRegion::new(0x4000_0000, 0x1000, MemKind::Dtb));
        assert_eq!(m[1], MemRegion::new(0x4000_1000, 0x7_f000, MemKind::Free));
        assert_eq!(
            m[2],
            MemRegion::new(0x4008_0000, 0x10_0000, MemKind::Bootstrap)
        );
        assert_eq!(
            m[3],
            MemRegion::new(0x4018_0000, 0x3fe8_0000, MemKind::Free)
        );
        assert_eq!(b.total(MemKind::Free), 0x4000_0000 - 0x10_1000);
    }

    #[test]
    fn find_free_respects_alignment_and_size() {
        let b = with_regions(&[
            (0x4000_0000, 0x100_0000, MemKind::Free),
            (0x4000_0000, 0x1000, MemKind::Dtb),
        ]);
        assert_eq!(b.find_free(0x1000, 0x1000), Some(0x4000_1000));
        assert_eq!(b.find_free(0x1000, 0x20_0000), Some(0x4020_0000));
        assert_eq!(b.find_free(0x200_0000, 0x1000), None);
    }

    #[test]
    fn region_table_overflow_is_an_error() {
        let mut b = with_regions(&[(0, 1 << 40, MemKind::Free)]);
        let mut err = None;
        for i in 0..MAX_MEM_REGIONS as u64 {
            if let Err(e) = b.add_mem(MemRegion::new(i * 0x2000 + 0x1000, 0x1000, MemKind::Module))
            {
                err = Some(e);
                break;
            }
        }
        assert_eq!(err, Some(Error::TooManyRegions));
    }

    #[test]
    fn adjacent_table_pages_share_one_entry() {
        let mut b = with_regions(&[(0x4000_0000, 0x100_0000, MemKind::Free)]);
        for _ in 0..2 * MAX_MEM_REGIONS {
            let pa = b.find_free(0x1000, 0x1000).unwrap();
            b.add_mem(MemRegion::new(pa, 0x1000, MemKind::PageTable))
                .unwrap();
        }
        let tables = MAX_MEM_REGIONS as u64 * 2 * 0x1000;
        assert_eq!(
            b.mem()[0],
            MemRegion::new(0x4000_0000, tables, MemKind::PageTable)
        );
        assert_eq!(b.mem().len(), 2);
        assert_eq!(b.total(MemKind::Free), 0x100_0000 - tables);
    }

    #[test]
    fn modules_are_bounded() {
        let mut b = new_info();
        for i in 0..MAX_MODULES {
            b.add_module(i as u64, 1, "m", "").unwrap();
        }
        assert_eq!(b.add_module(0, 1, "x", ""), Err(Error::TooManyModules));
        assert_eq!(b.modules().len(), MAX_MODULES);
        assert!(b.is_valid());
    }
}
