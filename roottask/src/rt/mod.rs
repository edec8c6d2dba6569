//! Boot: the entry point, the heap, memory from Sigma0, the boot modules,
//! the banner, the start of init, then the server loop ([`roottask::server`]
//! over [`kernel::L4Kernel`]).

mod kernel;

use alloc::string::String;

use core::alloc::Layout;

use buddy_system_allocator::{Heap, LockedHeapWithRescue};
use l4::{Cap, Error, Proto, Sigma0, base, println};
use l4_bootinfo::{BootInfo, MemKind};
use l4_ipc::{RecvBufs, Server, UtcbServerTransport};
use roottask::boot::{self, BOOTINFO_VA, MAP_MODULE, MIB};
use roottask::pages::{PAGE, PageAlloc};
use roottask::server::{Moe, RCV_SLOT};

use kernel::L4Kernel;

#[global_allocator]
static HEAP: LockedHeapWithRescue<32> = LockedHeapWithRescue::new(grow_heap);

/// The heap's first chunk and its smallest growth step (log2): the kernel
/// maps every page of a chunk, so moe starts small.
const HEAP_CHUNK_ORDER: u8 = 21;

core::arch::global_asm!(
    ".section .text.start, \"ax\"",
    ".global _start",
    "_start:",
    "    bl moe_main",
    "1:  b 1b",
);

/// Sleeps forever (nothing left to do or serve).
fn idle() -> ! {
    loop {
        let _ = l4::ipc::sleep(l4::Timeout::NEVER);
    }
}

/// The kernel's boot-info page ([`boot`]).
fn boot_info() -> Option<&'static BootInfo> {
    // SAFETY: the kernel maps its boot-info page read-only at BOOTINFO_VA
    // in the root task for the task's whole life (roottask::boot), nothing in
    // moe writes there, and BootInfo is plain repr(C) data; its validity is
    // checked before any other field is used.
    let info = unsafe { &*(BOOTINFO_VA as *const BootInfo) };
    info.is_valid().then_some(info)
}

/// Takes the heap's first chunk from Sigma0; returns its size.
fn init_heap() -> u64 {
    for order in (16..=HEAP_CHUNK_ORDER).rev() {
        if let Ok(a) = base::PAGER.map_free(order) {
            // SAFETY: fresh RAM that Sigma0 just mapped 1:1 read-write into
            // moe; nothing else uses it, and the heap is initialised once.
            unsafe { HEAP.lock().init(a as usize, 1 << order) };
            return 1 << order;
        }
    }
    0
}

/// Adds a chunk from Sigma0 to the heap, big enough for `layout`.
fn grow_heap(heap: &mut Heap<32>, layout: &Layout) {
    let need = (layout.size() as u64).saturating_add(layout.align() as u64);
    let order = need
        .next_power_of_two()
        .trailing_zeros()
        .clamp(HEAP_CHUNK_ORDER.into(), 30) as u8;
    if let Ok(a) = base::PAGER.map_free(order) {
        // SAFETY: fresh RAM that Sigma0 just mapped 1:1 read-write into
        // moe, used by nothing else; it joins the heap for moe's life.
        unsafe { heap.add_to_heap(a as usize, (a + (1 << order)) as usize) };
    }
}

/// Free RAM from Sigma0, mapped 1:1 read-write: `2^order` bytes (the
/// source of moe's [`PageAlloc`]).
fn sigma0_chunk(order: u8) -> Option<u64> {
    base::PAGER.map_free(order).ok()
}

/// Maps a boot module's memory 1:1 read-execute (Sigma0 [`MAP_MODULE`]).
fn map_module(pa: u64, size: u64) -> Result<(), Error> {
    let sigma0: Cap<Sigma0> = base::PAGER;
    sigma0
        .invoke_raw(
            Proto::Sigma0 as i64,
            &[MAP_MODULE, pa, size.next_multiple_of(PAGE)],
        )
        .map(|_| ())
}

#[unsafe(no_mangle)]
extern "C" fn moe_main() -> ! {
    println!("moe: hello from the root task at EL0");
    let Some(info) = boot_info() else {
        println!("MOE: the kernel's boot-info page is missing or invalid; nothing to serve");
        idle()
    };
    let heap = init_heap();
    if heap == 0 {
        println!("MOE: no memory for moe's heap; nothing to serve");
        idle()
    }
    println!("MOE: Hello world");

    let free = info.total(MemKind::Free);
    let budget = boot::budget(free).saturating_sub(heap);
    // The kernel maps every page of a chunk it gives (moe clears what it
    // hands out): moe takes its budget as it needs it, not all at boot.
    let pages = PageAlloc::with_source(budget, sigma0_chunk);
    println!(
        "MOE: RAM: {} MiB free at boot; moe takes up to {} MiB as needed (+{} MiB heap, more as needed), {} MiB stay with the kernel",
        free / MIB,
        budget / MIB,
        heap / MIB,
        free.saturating_sub(budget + heap) / MIB
    );

    let mut moe = Moe::new(L4Kernel, pages);
    if let Err(e) = moe.create_services() {
        println!(
            "MOE: cannot create the rom name space and the user factory: {}",
            e.describe()
        );
        idle()
    }
    for m in info.modules() {
        let name = m.name.as_str();
        let r = map_module(m.base, m.size).and_then(|()| moe.add_module(name, m.base, m.size));
        match r {
            Ok(()) => println!(
                "MOE: rom/{:<16} {:>9} bytes at {:#x}{}{}",
                name,
                m.size,
                m.base,
                if m.cmdline.as_str().is_empty() {
                    ""
                } else {
                    "  "
                },
                m.cmdline.as_str()
            ),
            Err(e) => println!("MOE: rom/{name}: not available: {}", e.describe()),
        }
    }

    let cmdline: String = info.roottask.cmdline.as_str().into();
    let args = roottask::cmdline::parse(&cmdline);
    for w in &args.unknown {
        println!("MOE: unknown option '{w}' ignored");
    }
    for w in &args.bad {
        println!("MOE: bad option '{w}' ignored");
    }
    moe.start_init(&args, info.cpu_id);
    let transport = UtcbServerTransport::new(RecvBufs::cap_slot(RCV_SLOT));
    Server::new(moe, transport).run()
}

#[panic_handler]
fn panic(info: &core::panic::PanicInfo<'_>) -> ! {
    println!("moe: panic: {info}");
    idle()
}
