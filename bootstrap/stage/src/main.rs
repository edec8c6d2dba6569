//! The boot stage. QEMU loads the boot image and enters here at EL2 with the
//! MMU off and the device tree's address in `x0`, or `x0` = 0 and the device
//! tree at RAM base when it loaded the image as the ELF file the image
//! builder writes. We find the module table
//! the image builder appended, load the kernel and the root task (ELF),
//! describe memory and modules in the boot-info page, build the kernel's
//! first translation tables and enter the kernel at its virtual address.

#![no_std]
#![no_main]
#![deny(unsafe_op_in_unsafe_fn)]

extern crate alloc;

mod heap;
mod load;

use core::fmt::Write;
use l4_bootinfo::{BootInfo, KERNEL_IMAGE_VA, LINEAR_MAP_VA, MemKind, MemRegion};

core::arch::global_asm!(include_str!("start.S"));

unsafe extern "C" {
    static __image_start: u8;
    static __payload_start: u8;
    fn enter_kernel(entry: u64, bootinfo: u64, regs: *const [u64; 6]) -> !;
}

// The boot stage runs on one CPU with the MMU off, where memory is Device
// memory and exclusive loads and stores (what `Once` or a lock would use)
// are not reliable: its two statics are therefore plain `static mut`,
// written once, before any reader.
static mut CONSOLE: Option<l4_pl011::Pl011> = None;

/// Prints to the console once it is known.
macro_rules! println {
    ($($arg:tt)*) => {{
        crate::console_write(format_args!($($arg)*));
    }};
}
pub(crate) use println;

pub fn console_write(args: core::fmt::Arguments<'_>) {
    // SAFETY: one CPU runs the boot stage; CONSOLE is set once before use.
    let console = unsafe { &mut *core::ptr::addr_of_mut!(CONSOLE) };
    if let Some(c) = console {
        let _ = c.write_fmt(args);
        let _ = c.write_str("\n");
    }
}

/// Stops with a message: nothing sensible can follow a broken boot.
fn fail(what: core::fmt::Arguments<'_>) -> ! {
    println!("bootstrap: error: {}", what);
    println!("bootstrap: cannot continue; halting.");
    loop {
        aarch64_wfe();
    }
}

/// RAM base, where QEMU puts the device tree for an ELF file: the stage's
/// start less the `text_offset` of its Image header (start.S), as QEMU
/// places an Image and as the image builder places the ELF segment.
fn ram_base() -> usize {
    let start = core::ptr::addr_of!(__image_start) as usize;
    // SAFETY: the stage's first bytes are its Image header (start.S), in
    // memory QEMU loaded; text_offset is its second 64-bit word, aligned.
    let text_offset = unsafe { ((start + 8) as *const u64).read_volatile() };
    start - text_offset as usize
}

fn aarch64_wfe() {
    // SAFETY: wfe only waits for an event.
    unsafe { core::arch::asm!("wfe", options(nomem, nostack)) };
}

static mut BOOT_INFO: core::mem::MaybeUninit<BootInfo> = core::mem::MaybeUninit::uninit();

#[unsafe(no_mangle)]
extern "C" fn stage_main(dtb: usize, entry_counter: u64) -> ! {
    let dtb = if dtb == 0 { ram_base() } else { dtb };
    // SAFETY: QEMU passes the address of a flattened device tree in x0, or
    // puts it at RAM base, in RAM nothing writes while the stage runs;
    // `from_ptr` reads its header before the rest.
    let fdt = match unsafe { l4_dtb::Dtb::from_ptr(dtb as *const u8) } {
        Ok(f) => f,
        Err(_) => loop {
            // No device tree means no console to complain on.
            aarch64_wfe();
        },
    };
    if let Some(c) = l4_pl011::find_console(&fdt) {
        // SAFETY: the device tree names this PL011 as the console; the MMU
        // is off, so its physical address reaches it.
        unsafe { *core::ptr::addr_of_mut!(CONSOLE) = Some(l4_pl011::Pl011::new(c.base as usize)) };
    }
    println!("\nL4 Bootstrapper");
    println!(
        "  Build: {} {}",
        env!("CARGO_PKG_NAME"),
        env!("CARGO_PKG_VERSION")
    );

    // SAFETY: the static is only used here, on one CPU, and init() sets every
    // field that is read later.
    let info = unsafe { (*core::ptr::addr_of_mut!(BOOT_INFO)).as_mut_ptr() };
    // SAFETY: BOOT_INFO lives in the zeroed .bss, a valid bit pattern for every
    // field but MemKind, which init() and add_mem() set before any read.
    let info: &mut BootInfo = unsafe { &mut *info };
    info.init();
    info.boot_counter = entry_counter;
    info.counter_freq = read_cntfrq();
    info.dtb_paddr = dtb as u64;
    info.dtb_size = fdt.total_size() as u64;

    let mut total = 0;
    for (base, size) in fdt.memory() {
        if size == 0 {
            continue;
        }
        println!(
            "  RAM: {:016x} - {:016x}: {}kB",
            base,
            base + size - 1,
            size / 1024
        );
        total += size;
        add_mem(info, MemRegion::new(base, size, MemKind::Free));
    }
    println!("  Total RAM: {}MB", total >> 20);
    if total == 0 {
        fail(format_args!("the device tree describes no memory"));
    }
    add_mem(
        info,
        MemRegion::new(
            dtb as u64 & !0xfff,
            page_up(info.dtb_size + (dtb as u64 & 0xfff)),
            MemKind::Dtb,
        ),
    );

    // Linker symbols; only their addresses are taken.
    let (image_start, payload_start) = (
        core::ptr::addr_of!(__image_start) as u64,
        core::ptr::addr_of!(__payload_start) as u64,
    );
    // SAFETY: the image builder put at least a header after the stage; the
    // header is checked before its size is trusted.
    let header = unsafe {
        core::slice::from_raw_parts(payload_start as *const u8, bootstrap_format::HEADER_SIZE)
    };
    let total_size = bootstrap_format::Payload::total_size(header)
        .unwrap_or_else(|e| fail(format_args!("boot image: {}", e)));
    // SAFETY: QEMU loaded the whole image; total_size comes from the header
    // the builder wrote, and parse() checks every offset against it.
    let bytes =
        unsafe { core::slice::from_raw_parts(payload_start as *const u8, total_size as usize) };
    let payload = bootstrap_format::Payload::parse(bytes)
        .unwrap_or_else(|e| fail(format_args!("boot image: {}", e)));
    add_mem(
        info,
        MemRegion::new(image_start, payload_start - image_start, MemKind::Bootstrap),
    );

    let mut kernel = None;
    let mut roottask = None;
    let first_module = payload
        .modules()
        .map(|m| m.offset)
        .min()
        .unwrap_or(total_size);
    add_mem(
        info,
        MemRegion::new(payload_start, first_module, MemKind::Bootstrap),
    );
    for (i, m) in payload.modules().enumerate() {
        let pa = payload_start + m.offset;
        println!(
            "  module {:02} {{ {:x}-{:x} }} [{:8}] {} {}",
            i,
            pa,
            pa + m.data.len() as u64,
            m.data.len(),
            m.name,
            m.cmdline
        );
        let kind = match m.kind {
            bootstrap_format::Kind::Kernel => {
                kernel = Some(m);
                MemKind::Bootstrap
            }
            bootstrap_format::Kind::Roottask => {
                roottask = Some(m);
                MemKind::Bootstrap
            }
            bootstrap_format::Kind::Module => {
                if let Err(e) = info.add_module(pa, m.data.len() as u64, m.name, m.cmdline) {
                    fail(format_args!("{}", e));
                }
                MemKind::Module
            }
        };
        add_mem(info, MemRegion::new(pa, page_up(m.data.len() as u64), kind));
    }
    let kernel = kernel.unwrap_or_else(|| fail(format_args!("the image has no kernel")));
    let roottask = roottask.unwrap_or_else(|| fail(format_args!("the image has no root task")));
    if !info.kernel_cmdline.set(kernel.cmdline) {
        println!(
            "  warning: kernel command line cut to {} bytes",
            l4_bootinfo::CMDLINE_LEN - 1
        );
    }

    println!("  Loading {}", kernel.name);
    let k = load::load_kernel(info, kernel.data)
        .unwrap_or_else(|e| fail(format_args!("kernel '{}': {}", kernel.name, e)));
    println!("  Loading {}", roottask.name);
    load::load_program(info, roottask.data)
        .unwrap_or_else(|e| fail(format_args!("root task '{}': {}", roottask.name, e)));
    info.roottask.name.set(roottask.name);
    info.roottask.cmdline.set(roottask.cmdline);

    let regs = load::build_tables(info, &fdt, &k)
        .unwrap_or_else(|e| fail(format_args!("translation tables: {}", e)));

    // Move the boot-info page to memory of its own, listed in itself.
    let size = page_up(core::mem::size_of::<BootInfo>() as u64);
    let dest = info
        .find_free(size, 4096)
        .unwrap_or_else(|| fail(format_args!("no memory for the boot-info page")));
    add_mem(info, MemRegion::new(dest, size, MemKind::BootInfo));

    println!("  Regions of list 'regions'");
    for r in info.mem() {
        println!(
            "    [{:9x}, {:9x}] {{{:9x}}} {:?}",
            r.base,
            r.end() - 1,
            r.size,
            r.kind
        );
    }
    println!(
        "  Roottask config  ip:{:x} ({} segments)",
        info.roottask.entry, info.roottask.nr_segments
    );
    println!(
        "  Starting kernel {} at {:x} (boot info at {:x})",
        kernel.name, k.entry_va, dest
    );
    // SAFETY: dest is free RAM of the right size, just reserved; the source
    // is our own static.
    unsafe {
        core::ptr::copy_nonoverlapping(
            info as *const BootInfo as *const u8,
            dest as *mut u8,
            core::mem::size_of::<BootInfo>(),
        )
    };
    // SAFETY: the tables map RAM identically (TTBR0) so this code keeps running
    // once the MMU is on, and map the kernel image at its link address.
    unsafe { enter_kernel(k.entry_va, dest, &regs) }
}

fn add_mem(info: &mut BootInfo, r: MemRegion) {
    if let Err(e) = info.add_mem(r) {
        fail(format_args!("{}", e));
    }
}

pub fn page_up(v: u64) -> u64 {
    v.div_ceil(4096) * 4096
}

fn read_cntfrq() -> u64 {
    let v: u64;
    // SAFETY: reading the counter frequency has no side effects.
    unsafe { core::arch::asm!("mrs {}, cntfrq_el0", out(reg) v, options(nomem, nostack)) };
    v
}

#[panic_handler]
fn panic(info: &core::panic::PanicInfo<'_>) -> ! {
    fail(format_args!("panic: {}", info))
}

// Keep the constants referenced so a layout change breaks the build here too.
const _: () = assert!(KERNEL_IMAGE_VA > LINEAR_MAP_VA);
