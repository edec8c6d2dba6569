//! The test environment: capability slots, memory, worker threads (in
//! ktest's own task or in other tasks), probes of address spaces, and the
//! small thread bodies the tests run.
//!
//! # How code runs in another thread or task
//!
//! A worker is a thread that starts at [`ktest_thread_start`], a trampoline
//! that loads two arguments and a function from the top of its stack and
//! calls the function (an [`Entry`]); when the function returns the
//! thread parks (sleeps forever). Its pager and exception handler are the
//! main thread (capability [`PARENT`] in the worker's task), and it reports
//! with [`signal`]: a send to [`PARENT`] with label [`SIG`], which the main
//! thread picks up with a closed receive ([`Worker::signal`]).
//!
//! A [`Space`] is another task with ktest's text and read-only data mapped
//! at the same addresses, the main thread's capability at [`PARENT`] and
//! the console at [`base_caps::LOG`]: worker functions run there unchanged
//! as long as they touch only their stack, their UTCB and what the test
//! maps: never ktest's statics, which are not mapped there, and so none of
//! `l4`'s object stubs either (they read a static: the object-call
//! timeouts); the raw IPC calls of `l4::ipc` are fine. Functions marked
//! "root task only" use statics.
//!
//! Everything a test creates is released when it is dropped ([`Slot`],
//! [`Worker`], [`Space`]), also when the test fails early.

use core::cell::Cell;
use core::fmt;
use core::ops::Deref;
use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use l4::abi::base_caps;
use l4::abi::fault::{ExcRegs, PageFault};
use l4::abi::proto::ex_regs;
use l4::abi::utcb::UTCB_SIZE;
use l4::io::FixedStr;
use l4::ipc::{self, Msg};
use l4::{
    Cap, CapRights, Error, Factory, Fpage, IpcGate, Irq, MemRights, MsgTag, Semaphore, SlotAlloc,
    Task, Thread, ThreadControl, Timeout, Timeouts, base, utcb,
};

use crate::fw::{Ctx, Fail, R};

/// The root task's UTCB area ([`l4::abi::root`]); other tasks ktest
/// creates use the same address.
pub const UTCB_AREA: u64 = l4::abi::root::UTCB_AREA;
/// Log2 of the UTCB area's size (64 KiB: 64 UTCBs).
pub const UTCB_AREA_ORDER: u8 = 16;
/// UTCBs in an area.
pub const UTCBS_PER_AREA: u64 = (1 << UTCB_AREA_ORDER) / UTCB_SIZE as u64;
/// The first UTCB slot of the main thread's vCPU state area (the last
/// page of the root task's UTCB area; no UTCB goes there).
const VCPU_STATE_SLOT: u64 = UTCBS_PER_AREA - 4096 / UTCB_SIZE as u64;
/// The main thread's vCPU state area.
pub const VCPU_STATE: u64 = UTCB_AREA + VCPU_STATE_SLOT * UTCB_SIZE as u64;
/// The first UTCB slot of a second vCPU's state area (for a worker; the
/// page before the main thread's).
const VCPU_STATE_2_SLOT: u64 = VCPU_STATE_SLOT - 4096 / UTCB_SIZE as u64;
/// A second vCPU's state area (one worker at a time).
pub const VCPU_STATE_2: u64 = UTCB_AREA + VCPU_STATE_2_SLOT * UTCB_SIZE as u64;
/// The main thread's priority (set by the first test).
pub const MAIN_PRIO: u64 = 100;
/// Below the main thread: threads that must not starve it.
pub const LOW_PRIO: u64 = 80;
/// The main thread's capability, at the same index in every task ktest
/// runs code in: workers send there, and it is their pager and exception
/// handler.
pub const PARENT: u64 = base_caps::THREAD;
/// The label of a worker's report.
pub const SIG: i64 = 0x516;
/// How long the main thread waits for something that should happen (µs;
/// generous: QEMU may share few host CPUs with other work).
pub const WAIT_US: u64 = 5_000_000;
/// How long the main thread watches for something that must not happen.
pub const QUIET_US: u64 = 50_000;
/// How long one test may take before its watchdog cancels the main
/// thread's IPC.
pub const TEST_BUDGET_US: u64 = 30_000_000;
/// Log2 of a worker's stack size (16 KiB).
pub const STACK_ORDER: u8 = 14;
/// Address of the first "fresh" region (never mapped by anyone).
const FRESH_VA_BASE: u64 = 0x1000_0000_0000;
/// Size of a fresh region.
const FRESH_VA_STEP: u64 = 1 << 21;

/// Capability slots for the tests (indices 0x100..0x800).
pub static SLOTS: SlotAlloc<28> = SlotAlloc::new(0x100);
/// UTCB slots of the root task's area (slot 0: the main thread).
static UTCBS: SlotAlloc<1> = SlotAlloc::new(0);
static NEXT_VA: AtomicU64 = AtomicU64::new(FRESH_VA_BASE);
static ONLINE: AtomicU64 = AtomicU64::new(1);
static STACK_POOL: [AtomicU64; 16] = [const { AtomicU64::new(0) }; 16];

unsafe extern "C" {
    safe static __text_start: u8;
    safe static __text_end: u8;
    safe static __rodata_start: u8;
    safe static __rodata_end: u8;
}

/// How long a kernel-object invocation may take before ktest calls it
/// failed (a kernel object answers within the system call).
pub const OBJECT_CALL_US: u64 = 500_000;

/// Sets up the environment (before any test).
pub fn init() {
    UTCBS.reserve(0);
    // The last page of the area is the main thread's vCPU state area, the
    // one before a worker's.
    for i in VCPU_STATE_2_SLOT..UTCBS_PER_AREA {
        UTCBS.reserve(i);
    }
    let t = Timeout::from_us(OBJECT_CALL_US);
    l4::set_object_timeouts(Timeouts::new(t, t));
}

/// ktest's code: `[start, end)`.
pub fn text_range() -> (u64, u64) {
    (&raw const __text_start as u64, &raw const __text_end as u64)
}

/// ktest's read-only data: `[start, end)`.
pub fn rodata_range() -> (u64, u64) {
    (
        &raw const __rodata_start as u64,
        &raw const __rodata_end as u64,
    )
}

/// Whether `addr` is in ktest's code.
pub fn in_text(addr: u64) -> bool {
    let (s, e) = text_range();
    (s..e).contains(&addr)
}

/// Reads an instruction of ktest's code.
pub fn instruction_at(addr: u64) -> Option<u32> {
    if !in_text(addr) || !addr.is_multiple_of(4) {
        return None;
    }
    // SAFETY: `addr` is an aligned address inside ktest's text, which the
    // kernel mapped readable (RX) and which never changes.
    Some(unsafe { (addr as *const u32).read_volatile() })
}

// ---------------------------------------------------------------------
// CPUs
// ---------------------------------------------------------------------

/// Records the online CPUs (from the scheduler).
pub fn set_online(mask: u64) {
    ONLINE.store(mask | 1, Ordering::Relaxed);
}

/// The online CPUs (bit i = CPU i).
pub fn online() -> u64 {
    ONLINE.load(Ordering::Relaxed)
}

/// How many CPUs are online.
pub fn cpu_count() -> u32 {
    online().count_ones()
}

/// The `n`-th online CPU other than CPU 0 (cycling), or CPU 0 when it is
/// the only one.
pub fn other_cpu(n: usize) -> u32 {
    let others = online() & !1;
    let count = others.count_ones() as usize;
    if count == 0 {
        return 0;
    }
    let mut m = others;
    for _ in 0..n % count {
        m &= m - 1;
    }
    m.trailing_zeros()
}

/// Fails unless at least `n` CPUs are online.
pub fn need_cpus(n: u32) -> R {
    if cpu_count() < n {
        fail!("needs {n} CPUs, {} online", cpu_count());
    }
    Ok(())
}

// ---------------------------------------------------------------------
// Memory
// ---------------------------------------------------------------------

/// Memory from sigma0, mapped 1:1 (RW) in ktest. ktest never unmaps it
/// from its own space (tests revoke only mappings derived from it).
pub struct Page {
    addr: u64,
    order: u8,
}

impl Page {
    /// `2^order` bytes of fresh RAM.
    pub fn new(order: u8) -> Result<Page, Fail> {
        let addr = base::PAGER.map_free(order).ctx("sigma0 map_free")?;
        if addr % (1 << order) != 0 {
            fail!("sigma0 gave {addr:#x}, not aligned to 2^{order}");
        }
        Ok(Page { addr, order })
    }

    /// One page holding `marker` in its first word.
    pub fn with_marker(marker: u64) -> Result<Page, Fail> {
        let p = Page::new(12)?;
        p.write(0, marker);
        Ok(p)
    }

    /// The address (virtual = physical).
    pub fn addr(&self) -> u64 {
        self.addr
    }

    /// Log2 of the size.
    pub fn order(&self) -> u8 {
        self.order
    }

    /// The size in bytes.
    pub fn size(&self) -> u64 {
        1 << self.order
    }

    /// The flexpage of the whole region with `rights`.
    pub fn fpage(&self, rights: MemRights) -> Fpage {
        Fpage::mem(self.addr, self.order, rights)
    }

    /// Writes the word at byte offset `off` (cut into the region).
    pub fn write(&self, off: u64, v: u64) {
        let off = (off % self.size()) & !7;
        // SAFETY: the region came from sigma0, is mapped RW in ktest for
        // good and holds plain data; the offset is inside and aligned.
        unsafe { ((self.addr + off) as *mut u64).write_volatile(v) }
    }

    /// Reads the word at byte offset `off` (cut into the region).
    pub fn read(&self, off: u64) -> u64 {
        let off = (off % self.size()) & !7;
        // SAFETY: as in `write`.
        unsafe { ((self.addr + off) as *const u64).read_volatile() }
    }
}

/// A fresh 2 MiB-aligned region of addresses nobody has mapped (each call
/// gives another one).
pub fn fresh_va() -> u64 {
    NEXT_VA.fetch_add(FRESH_VA_STEP, Ordering::Relaxed)
}

/// A value that names one test's page.
pub fn marker(n: u64) -> u64 {
    0x6b74_6573_7400_0000 | n
}

/// A worker's stack (16 KiB from sigma0; recycled through a small pool).
pub struct Stack {
    base: u64,
}

impl Stack {
    fn alloc() -> Result<Stack, Fail> {
        for s in &STACK_POOL {
            let base = s.swap(0, Ordering::AcqRel);
            if base != 0 {
                return Ok(Stack { base });
            }
        }
        let p = Page::new(STACK_ORDER)?;
        Ok(Stack { base: p.addr })
    }

    /// The lowest address.
    pub fn base(&self) -> u64 {
        self.base
    }

    /// The address above the stack.
    pub fn top(&self) -> u64 {
        self.base + (1 << STACK_ORDER)
    }

    /// Puts the trampoline's arguments at the top; returns the initial sp.
    fn push_args(&self, a0: u64, a1: u64, entry: Entry) -> u64 {
        let sp = self.top() - 32;
        let words = [a0, a1, entry as usize as u64, 0];
        for (i, w) in words.iter().enumerate() {
            // SAFETY: the stack came from sigma0 and is mapped RW in ktest;
            // its thread is not running (not started yet, or about to be
            // redirected by ex_regs, abandoning what it had on the stack).
            unsafe { ((sp + 8 * i as u64) as *mut u64).write_volatile(*w) }
        }
        sp
    }
}

impl Drop for Stack {
    fn drop(&mut self) {
        for s in &STACK_POOL {
            if s.compare_exchange(0, self.base, Ordering::AcqRel, Ordering::Relaxed)
                .is_ok()
            {
                return;
            }
        }
    }
}

// ---------------------------------------------------------------------
// Capability slots
// ---------------------------------------------------------------------

/// A capability slot of ktest. Dropping it empties the slot (revoking what
/// was derived from it) and, for objects the test created ([`create`]),
/// deletes the object first.
pub struct Slot<T: ?Sized> {
    cap: Cap<T>,
    delete: bool,
}

impl<T: ?Sized> Slot<T> {
    /// A free, empty slot.
    pub fn empty() -> Result<Slot<T>, Fail> {
        match SLOTS.alloc_cap() {
            Some(cap) => Ok(Slot { cap, delete: false }),
            None => fail!("out of capability slots"),
        }
    }

    /// Makes the slot delete its object when dropped.
    pub fn owning(mut self) -> Slot<T> {
        self.delete = true;
        self
    }

    /// The capability.
    pub fn cap(&self) -> Cap<T> {
        self.cap
    }

    /// The index.
    pub fn idx(&self) -> u64 {
        self.cap.index()
    }
}

impl<T: ?Sized> Deref for Slot<T> {
    type Target = Cap<T>;

    fn deref(&self) -> &Cap<T> {
        &self.cap
    }
}

impl<T: ?Sized> Drop for Slot<T> {
    fn drop(&mut self) {
        let idx = self.cap.index();
        if self.delete {
            let _ = base::TASK.delete_cap(idx);
        }
        let _ = base::TASK.release_cap(idx);
        SLOTS.free(idx);
    }
}

/// Creates an object with `f` (given the slot index) in a fresh slot that
/// deletes it when dropped.
pub fn create<T: ?Sized>(
    what: &str,
    f: impl FnOnce(u64) -> Result<Cap<T>, Error>,
) -> Result<Slot<T>, Fail> {
    let s = Slot::empty()?.owning();
    f(s.idx()).ctx(what)?;
    Ok(s)
}

/// A new semaphore.
pub fn semaphore() -> Result<Slot<Semaphore>, Fail> {
    create("create semaphore", |d| base::FACTORY.create_semaphore(d))
}

/// A new Irq.
pub fn irq() -> Result<Slot<Irq>, Fail> {
    create("create irq", |d| base::FACTORY.create_irq(d))
}

/// A new IPC gate with `label`, bound to `thread` if given.
pub fn gate(label: u64, thread: Option<Cap<Thread>>) -> Result<Slot<IpcGate>, Fail> {
    create("create gate", |d| {
        base::FACTORY.create_gate(d, label, thread)
    })
}

/// A new thread (not bound, not running).
pub fn thread_obj() -> Result<Slot<Thread>, Fail> {
    create("create thread", |d| base::FACTORY.create_thread(d))
}

/// A new factory with `quota` bytes from the root factory.
pub fn factory(quota: u64) -> Result<Slot<Factory>, Fail> {
    create("create factory", |d| base::FACTORY.create_factory(d, quota))
}

/// A new empty task (no memory, no capabilities) with a UTCB area.
pub fn bare_task() -> Result<Slot<Task>, Fail> {
    create("create task", |d| {
        base::FACTORY.create_task(d, utcb_area_fpage())
    })
}

/// The UTCB area flexpage of the tasks ktest creates.
pub fn utcb_area_fpage() -> Fpage {
    Fpage::mem(UTCB_AREA, UTCB_AREA_ORDER, MemRights::RW)
}

/// A copy of ktest's capability `src` with `rights` in a fresh slot
/// (mapped from and to ktest's own task).
pub fn copy_cap<T: ?Sized>(src: Cap<T>, rights: CapRights) -> Result<Slot<T>, Fail> {
    let s = Slot::empty()?;
    base::TASK
        .map_cap(base::TASK, src.index(), rights, s.idx())
        .ctx("map capability")?;
    Ok(s)
}

/// Whether ktest's capability `idx` is valid.
pub fn valid(idx: u64) -> Result<bool, Fail> {
    base::TASK.cap_valid(idx).ctx("cap_valid")
}

// ---------------------------------------------------------------------
// Workers
// ---------------------------------------------------------------------

/// A worker's function: two arguments; returning parks the thread.
pub type Entry = extern "C" fn(u64, u64);

core::arch::global_asm!(
    ".section .text.ktest_thread_start, \"ax\"",
    ".global ktest_thread_start",
    ".balign 4",
    // sp points at [a0, a1, entry, 0]; after the loads sp is the stack top.
    "ktest_thread_start:",
    "    ldp x0, x1, [sp], #16",
    "    ldp x2, x3, [sp], #16",
    "    blr x2",
    "    b ktest_park",
);

unsafe extern "C" {
    /// The start of every worker (see the module documentation).
    safe fn ktest_thread_start();
}

/// The pc a worker starts at.
pub fn trampoline() -> u64 {
    ktest_thread_start as *const () as u64
}

/// Sleeps forever (the end of every worker, and of ktest).
#[unsafe(no_mangle)]
pub extern "C" fn ktest_park() -> ! {
    loop {
        let _ = ipc::sleep(Timeout::NEVER);
    }
}

/// Parks at once.
pub fn park() -> ! {
    ktest_park()
}

/// How to start a worker.
#[derive(Clone, Copy)]
pub struct Opts<'a> {
    space: Option<&'a Space>,
    prio: u64,
    cpu: u32,
    pager: Option<u64>,
    exc: Option<u64>,
    start: bool,
}

impl Opts<'static> {
    /// In ktest's task, at [`MAIN_PRIO`] on CPU 0, pager and exception
    /// handler the main thread, started.
    pub fn new() -> Opts<'static> {
        Opts {
            space: None,
            prio: MAIN_PRIO,
            cpu: 0,
            pager: Some(PARENT),
            exc: Some(PARENT),
            start: true,
        }
    }
}

impl<'a> Opts<'a> {
    /// In another task.
    pub fn space<'b>(self, s: &'b Space) -> Opts<'b> {
        Opts {
            space: Some(s),
            prio: self.prio,
            cpu: self.cpu,
            pager: self.pager,
            exc: self.exc,
            start: self.start,
        }
    }

    /// At another priority.
    pub fn prio(mut self, p: u64) -> Opts<'a> {
        self.prio = p;
        self
    }

    /// On another CPU.
    pub fn cpu(mut self, c: u32) -> Opts<'a> {
        self.cpu = c;
        self
    }

    /// Without pager and exception handler: a fault stops the thread.
    pub fn no_handlers(mut self) -> Opts<'a> {
        self.pager = None;
        self.exc = None;
        self
    }

    /// With capability `idx` (in the worker's task) as the pager.
    pub fn pager(mut self, idx: u64) -> Opts<'a> {
        self.pager = Some(idx);
        self
    }

    /// Without a pager (none is set).
    pub fn no_pager(mut self) -> Opts<'a> {
        self.pager = None;
        self
    }

    /// Without an exception handler (none is set).
    pub fn no_exc(mut self) -> Opts<'a> {
        self.exc = None;
        self
    }

    /// Created, bound and set up, but not given to the scheduler.
    pub fn unstarted(mut self) -> Opts<'a> {
        self.start = false;
        self
    }
}

struct UtcbSlot(Option<u64>);

impl Drop for UtcbSlot {
    fn drop(&mut self) {
        if let Some(i) = self.0 {
            UTCBS.free(i);
        }
    }
}

/// A worker thread; dropping it deletes the thread.
pub struct Worker {
    // Drop order: the thread goes first, then its UTCB slot and stack.
    thread: Slot<Thread>,
    _utcb_slot: UtcbSlot,
    stack: Stack,
    /// The UTCB address (in the worker's task).
    pub utcb: u64,
}

/// Starts `entry(a0, a1)` in a new thread.
pub fn spawn(entry: Entry, a0: u64, a1: u64, o: &Opts<'_>) -> Result<Worker, Fail> {
    let stack = Stack::alloc()?;
    let (utcb_slot, utcb, task) = match o.space {
        Some(s) => {
            s.map_stack(&stack)?;
            (UtcbSlot(None), s.next_utcb()?, s.cap())
        }
        None => {
            let Some(i) = UTCBS.alloc() else {
                fail!("out of UTCB slots");
            };
            (
                UtcbSlot(Some(i)),
                UTCB_AREA + i * UTCB_SIZE as u64,
                base::TASK,
            )
        }
    };
    let thread = thread_obj()?;
    let mut c = ThreadControl::new().bind(task.index(), utcb);
    if let Some(p) = o.pager {
        c = c.pager(l4::abi::Cap::new(p));
    }
    if let Some(e) = o.exc {
        c = c.exc_handler(l4::abi::Cap::new(e));
    }
    thread.control(&c).ctx("thread control (bind)")?;
    let sp = stack.push_args(a0, a1, entry);
    thread.ex_regs(trampoline(), sp, 0).ctx("ex_regs")?;
    let w = Worker {
        thread,
        _utcb_slot: utcb_slot,
        stack,
        utcb,
    };
    if o.start {
        w.run(o.prio, o.cpu)?;
    }
    Ok(w)
}

/// Starts `entry(a0, a1)` with the default options.
pub fn spawn_default(entry: Entry, a0: u64, a1: u64) -> Result<Worker, Fail> {
    spawn(entry, a0, a1, &Opts::new())
}

impl Worker {
    /// The thread.
    pub fn cap(&self) -> Cap<Thread> {
        self.thread.cap()
    }

    /// The thread's slot index in ktest.
    pub fn idx(&self) -> u64 {
        self.thread.idx()
    }

    /// `[base, top)` of the stack.
    pub fn stack_range(&self) -> (u64, u64) {
        (self.stack.base(), self.stack.top())
    }

    /// Runs the thread at `prio` on CPU `cpu`.
    pub fn run(&self, prio: u64, cpu: u32) -> R {
        base::SCHEDULER
            .run_thread(self.cap(), prio, 1 << cpu)
            .ctx("run_thread")
    }

    /// Points the thread at `entry(a0, a1)` from the top of its stack, with
    /// [`ex_regs`] `flags` (e.g. cancel its IPC).
    pub fn restart(&self, entry: Entry, a0: u64, a1: u64, flags: u64) -> R {
        let sp = self.stack.push_args(a0, a1, entry);
        self.cap()
            .ex_regs(trampoline(), sp, flags)
            .ctx("ex_regs")
            .map(|_| ())
    }

    /// Receives the next message from the thread within `us`.
    pub fn recv(&self, us: u64) -> Result<Msg, Error> {
        ipc::receive_msg(self.cap().sel(), ipc::recv_timeout_us(us))
    }

    /// Receives the thread's report ([`signal`]).
    pub fn signal(&self) -> Result<Msg, Fail> {
        match self.recv(WAIT_US) {
            Ok(m) if m.proto() == SIG => Ok(m),
            Ok(m) => fail!("worker sent {} instead of its report", describe(&m)),
            Err(e) => fail!("no report from the worker: {e:?}"),
        }
    }

    /// The first word of the thread's report.
    pub fn signal_word(&self) -> Result<u64, Fail> {
        self.signal().map(|m| m.word(0))
    }

    /// Receives the next message, which must be a page fault.
    pub fn page_fault(&self) -> Result<PageFault, Fail> {
        match self.recv(WAIT_US) {
            Ok(m) if m.tag.is_page_fault() => Ok(PageFault::from_words([m.word(0), m.word(1)])),
            Ok(m) => fail!("expected a page fault, got {}", describe(&m)),
            Err(e) => fail!("no page fault arrived: {e:?}"),
        }
    }

    /// Receives the next message, which must be an exception.
    pub fn exception(&self) -> Result<ExcRegs, Fail> {
        match self.recv(WAIT_US) {
            Ok(m) if m.tag.is_exception() => match ExcRegs::from_words(m.words()) {
                Some(r) => Ok(r),
                None => fail!("exception message with {} words", m.tag.words()),
            },
            Ok(m) => fail!("expected an exception, got {}", describe(&m)),
            Err(e) => fail!("no exception message arrived: {e:?}"),
        }
    }

    /// Nothing may arrive from the thread for `us`.
    pub fn quiet(&self, us: u64) -> R {
        match self.recv(us) {
            Err(Error::RecvTimeout) => Ok(()),
            Ok(m) => fail!("unexpected {}", describe(&m)),
            Err(e) => fail!("receive failed: {e:?}"),
        }
    }
}

/// A short description of a message for failure reasons.
pub fn describe(m: &Msg) -> FixedStr<96> {
    if m.tag.is_page_fault() {
        let pf = PageFault::from_words([m.word(0), m.word(1)]);
        FixedStr::format(format_args!(
            "a page fault at {:#x} (pc {:#x}, write {})",
            pf.addr, pf.pc, pf.write
        ))
    } else if m.tag.is_exception() {
        match ExcRegs::from_words(m.words()) {
            Some(r) => FixedStr::format(format_args!(
                "an exception (ESR {:#x}) at pc {:#x}",
                r.err, r.pc
            )),
            None => FixedStr::format(format_args!("a short exception message")),
        }
    } else {
        FixedStr::format(format_args!(
            "a message (label {}, {} words, {} items, word0 {:#x})",
            m.proto(),
            m.tag.words(),
            m.tag.items(),
            m.word(0)
        ))
    }
}

/// Replies to the last caller with a page-fault reply mapping `page` (its
/// whole region with `rights`) at `at`.
pub fn reply_map(page: &Page, rights: MemRights, at: u64) -> R {
    let item = l4::SendItem::map(page.fpage(rights), at);
    let n = l4::utcb::set_mrs(&item.to_words());
    debug_assert_eq!(n, 2);
    ipc::reply(MsgTag::new(0, 0, 1, 0)).ctx("reply with a mapping")
}

/// Replies to an exception with new registers.
pub fn reply_regs(regs: &ExcRegs) -> R {
    utcb::set_mrs(&regs.to_words());
    ipc::reply(ExcRegs::TAG.with_label(0)).ctx("exception reply")
}

// ---------------------------------------------------------------------
// Other tasks
// ---------------------------------------------------------------------

/// Another task that can run ktest's code (see the module documentation).
pub struct Space {
    task: Slot<Task>,
    next_utcb: Cell<u64>,
}

impl Space {
    /// A new task with ktest's code, the main thread's capability at
    /// [`PARENT`] and the console.
    pub fn new() -> Result<Space, Fail> {
        let s = Space::bare()?;
        let t = s.cap();
        t.map_cap(base::TASK, PARENT, CapRights::RWS, PARENT)
            .ctx("map the main thread's capability")?;
        t.map_cap(base::TASK, base_caps::LOG, CapRights::RW, base_caps::LOG)
            .ctx("map the console")?;
        Ok(s)
    }

    /// A new task with ktest's code and no capabilities.
    pub fn bare() -> Result<Space, Fail> {
        let task = bare_task()?;
        let t = task.cap();
        let (ts, te) = text_range();
        t.map_range(base::TASK, ts, te, MemRights::RX)
            .ctx("map ktest's text")?;
        let (rs, re) = rodata_range();
        if re > rs {
            t.map_range(base::TASK, rs, re, MemRights::R)
                .ctx("map ktest's rodata")?;
        }
        Ok(Space {
            task,
            next_utcb: Cell::new(0),
        })
    }

    /// The task.
    pub fn cap(&self) -> Cap<Task> {
        self.task.cap()
    }

    /// The task's slot index in ktest.
    pub fn idx(&self) -> u64 {
        self.task.idx()
    }

    fn next_utcb(&self) -> Result<u64, Fail> {
        let i = self.next_utcb.get();
        if i >= UTCBS_PER_AREA {
            fail!("out of UTCBs in the task");
        }
        self.next_utcb.set(i + 1);
        Ok(UTCB_AREA + i * UTCB_SIZE as u64)
    }

    fn map_stack(&self, s: &Stack) -> R {
        self.cap()
            .map_range(base::TASK, s.base(), s.top(), MemRights::RW)
            .ctx("map a stack into the task")
    }

    /// Maps ktest's `page` to `at` in this task with `rights`.
    pub fn map_page(&self, page: &Page, at: u64, rights: MemRights) -> R {
        self.cap()
            .map_mem(base::TASK, page.addr(), page.order(), rights, at)
            .ctx("map a page into the task")
    }
}

// ---------------------------------------------------------------------
// Probes
// ---------------------------------------------------------------------

/// What a probe thread saw at an address.
pub enum Probe {
    /// It read (or wrote and read back) this value.
    Value(u64),
    /// It faulted (its pager, the main thread, got this).
    Fault(PageFault),
    /// It raised an exception (its ESR).
    Exception(u64),
    /// Nothing arrived.
    Silent,
    /// Some other message (its label).
    Other(i64),
}

/// Reads `va` in `space` (ktest's own task if `None`) from a new thread.
pub fn probe_read(space: Option<&Space>, va: u64) -> Result<Probe, Fail> {
    probe(probe_read_entry, space, va, 0)
}

/// Writes `v` to `va` in `space` and reads it back, from a new thread.
pub fn probe_write(space: Option<&Space>, va: u64, v: u64) -> Result<Probe, Fail> {
    probe(probe_write_entry, space, va, v)
}

fn probe(entry: Entry, space: Option<&Space>, va: u64, v: u64) -> Result<Probe, Fail> {
    let opts = match space {
        Some(s) => Opts::new().space(s),
        None => Opts::new(),
    };
    let w = spawn(entry, va, v, &opts)?;
    Ok(match w.recv(WAIT_US) {
        Ok(m) if m.tag.is_page_fault() => {
            Probe::Fault(PageFault::from_words([m.word(0), m.word(1)]))
        }
        Ok(m) if m.tag.is_exception() => Probe::Exception(m.word(33)),
        Ok(m) if m.proto() == SIG => Probe::Value(m.word(0)),
        Ok(m) => Probe::Other(m.proto()),
        Err(Error::RecvTimeout) => Probe::Silent,
        Err(e) => fail!("probe: receive failed: {e:?}"),
    })
}

/// The probe must have seen `want`.
pub fn expect_value(p: Probe, want: u64, what: &str) -> R {
    match p {
        Probe::Value(v) if v == want => Ok(()),
        other => fail!("{what}: expected the value {want:#x}, saw {other}"),
    }
}

/// Reading `va` in `space` (`None`: ktest itself) must give marker `n`:
/// the page [`Page::with_marker`]`(marker(n))` is mapped there.
pub fn expect_marker(space: Option<&Space>, va: u64, n: u64, what: &str) -> R {
    expect_value(probe_read(space, va)?, marker(n), what)
}

/// The probe must have faulted.
pub fn expect_fault(p: Probe, what: &str) -> Result<PageFault, Fail> {
    match p {
        Probe::Fault(pf) => Ok(pf),
        other => fail!("{what}: expected a page fault, saw {other}"),
    }
}

impl fmt::Display for Probe {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Probe::Value(v) => write!(f, "the value {v:#x}"),
            Probe::Fault(pf) => write!(
                f,
                "a page fault at {:#x} (write {}, pc {:#x})",
                pf.addr, pf.write, pf.pc
            ),
            Probe::Exception(esr) => write!(f, "an exception (ESR {esr:#x})"),
            Probe::Silent => write!(f, "nothing"),
            Probe::Other(label) => write!(f, "a message with label {label}"),
        }
    }
}

// ---------------------------------------------------------------------
// Spinners (root task only) and timing
// ---------------------------------------------------------------------

/// Counters of [`spin_entry`] threads.
pub static COUNTERS: [AtomicU64; 4] = [const { AtomicU64::new(0) }; 4];
/// Stops every spinner.
pub static STOP: AtomicBool = AtomicBool::new(false);

/// A spinner's counter.
pub fn counter(i: usize) -> u64 {
    COUNTERS[i].load(Ordering::Relaxed)
}

/// Stops all spinners.
pub fn stop_spinners() {
    STOP.store(true, Ordering::Relaxed);
}

/// Burns about `n` loop iterations on the calling CPU without a system
/// call.
pub fn busy(n: u64) {
    for i in 0..n {
        core::hint::black_box(i);
        core::hint::spin_loop();
    }
}

/// Busy-waits (no system call) until counter `i` passes `from`, at most
/// `max` iterations; returns the counter.
pub fn busy_until_moves(i: usize, from: u64, max: u64) -> u64 {
    for _ in 0..max {
        let c = counter(i);
        if c != from {
            return c;
        }
        core::hint::spin_loop();
    }
    counter(i)
}

/// A low-priority thread spinning on `COUNTERS[0]` on another CPU, once
/// it has been seen running.
pub fn spinner_elsewhere() -> Result<Worker, Fail> {
    let w = spawn(
        spin_entry,
        0,
        u64::MAX,
        &Opts::new().prio(LOW_PRIO).cpu(other_cpu(0)),
    )?;
    ensure!(sleep_until_moves(0)?, "the spinner never ran");
    Ok(w)
}

/// Sleeps until counter `i` moves: 10 ms, then twice as long each time,
/// about 2.5 s in all; whether it moved. (Growing sleeps, so a busy host
/// that lets the timer expire before the CPU ran anything else does not
/// decide a test.)
pub fn sleep_until_moves(i: usize) -> Result<bool, Fail> {
    let mut us = 10_000;
    for _ in 0..8 {
        sleep_us(us)?;
        if counter(i) > 0 {
            return Ok(true);
        }
        us *= 2;
    }
    Ok(false)
}

/// Waits until counter `i` stands still for 30 ms (at most ten tries);
/// whether it did.
pub fn sleep_until_still(i: usize) -> Result<bool, Fail> {
    for _ in 0..10 {
        let before = counter(i);
        sleep_us(30_000)?;
        if counter(i) == before {
            return Ok(true);
        }
    }
    Ok(false)
}

/// Sleeps `us` microseconds.
pub fn sleep_us(us: u64) -> R {
    ipc::sleep_us(us).ctx("sleep")
}

// ---------------------------------------------------------------------
// Between tests
// ---------------------------------------------------------------------

/// Before each test: spinners reset, no receive items.
pub fn before_test() {
    STOP.store(false, Ordering::Relaxed);
    for c in &COUNTERS {
        c.store(0, Ordering::Relaxed);
    }
    utcb::clear_recv_items();
}

/// After each test: stops spinners, drops messages still queued for the
/// main thread (so one test's leftovers cannot confuse the next); returns
/// how many there were.
pub fn after_test() -> usize {
    stop_spinners();
    utcb::clear_recv_items();
    let mut n = 0;
    while n < 32 {
        match ipc::ipc_wait(Timeouts::RECV_ZERO).0 {
            Ok(_) => n += 1,
            Err(_) => break,
        }
    }
    n
}

/// A thread that cancels the main thread's IPC after `us`, and again every
/// half second, so a test that waits without a timeout (or on a kernel
/// that ignores one) ends with an error instead of hanging. Dropping it
/// disarms it. The runner arms one for every test ([`TEST_BUDGET_US`]).
pub struct Watchdog {
    /// The watchdog thread (deleted with it).
    _thread: Worker,
}

impl Watchdog {
    /// Arms the watchdog.
    pub fn arm(us: u64) -> Result<Watchdog, Fail> {
        // Above the main thread, on another CPU when there is one (so it
        // stays out of the scheduling tests on CPU 0).
        let o = Opts::new().prio(MAIN_PRIO + 10).cpu(other_cpu(0));
        spawn(watchdog_entry, us, PARENT, &o).map(|w| Watchdog { _thread: w })
    }
}

// ---------------------------------------------------------------------
// Worker bodies (unless marked, they touch only their stack and UTCB)
// ---------------------------------------------------------------------

/// The main thread (any task ktest runs code in).
fn parent() -> l4::abi::Cap {
    l4::abi::Cap::new(PARENT)
}

/// Reports `words` to the main thread (label [`SIG`]).
pub fn signal(words: &[u64]) {
    let _ = ipc::send_words(parent(), SIG, words, Timeouts::NEVER);
}

/// An error as a word for reports: 0 for success, else the code.
pub fn code(r: Result<(), Error>) -> u64 {
    match r {
        Ok(()) => 0,
        Err(e) => e.code() as u64,
    }
}

/// Reports its arguments.
pub extern "C" fn signal_args_entry(a0: u64, a1: u64) {
    signal(&[a0, a1]);
}

/// Busy for `n` iterations without a system call, then parks.
pub extern "C" fn busy_entry(n: u64, _: u64) {
    busy(n);
}

/// Does nothing (the thread parks).
pub extern "C" fn park_entry(_: u64, _: u64) {}

/// Reads `va` and reports the value.
pub extern "C" fn probe_read_entry(va: u64, _: u64) {
    // SAFETY: deliberately touches memory that may not be mapped: a fault
    // goes to the pager (the main thread), which is what a probe observes.
    let v = unsafe { (va as *const u64).read_volatile() };
    signal(&[v]);
}

/// Writes `v` to `va`, reads it back and reports it.
pub extern "C" fn probe_write_entry(va: u64, v: u64) {
    // SAFETY: as in `probe_read_entry`; the address is one the test
    // reserved for this.
    let back = unsafe {
        (va as *mut u64).write_volatile(v);
        (va as *const u64).read_volatile()
    };
    signal(&[back]);
}

/// Serves `n` calls (0: without end): replies with every word + 1, under
/// the label the call came through (the gate's label).
pub extern "C" fn echo_entry(n: u64, _: u64) {
    utcb::clear_recv_items();
    let mut served = 0;
    let mut reply: Option<MsgTag> = None;
    loop {
        let (r, label) = match reply.take() {
            Some(tag) => ipc::ipc_reply_and_wait(tag, Timeouts::NEVER),
            None => ipc::ipc_wait(Timeouts::NEVER),
        };
        let Ok(tag) = r else { continue };
        let words = tag.words() as usize;
        for i in 0..words {
            utcb::set_mr(i, utcb::mr(i).wrapping_add(1));
        }
        let out = MsgTag::new(label as i64, words as u32, 0, 0);
        served += 1;
        if n != 0 && served >= n {
            let _ = ipc::reply(out);
            return;
        }
        reply = Some(out);
    }
}

/// Receives one message from anyone and never replies.
pub extern "C" fn wait_then_park_entry(_: u64, _: u64) {
    utcb::clear_recv_items();
    let _ = ipc::ipc_wait(Timeouts::NEVER);
}

/// Waits `us`, then reports `v`.
pub extern "C" fn delayed_signal_entry(us: u64, v: u64) {
    let _ = ipc::sleep(Timeout::from_us(us));
    signal(&[v]);
}

/// Waits `us`, then receives from the main thread and reports
/// `[status, words, MR0]`.
pub extern "C" fn delayed_receive_entry(us: u64, _: u64) {
    utcb::clear_recv_items();
    if us > 0 {
        let _ = ipc::sleep(Timeout::from_us(us));
    }
    let (r, _) = ipc::ipc_receive(parent(), Timeouts::NEVER);
    match r {
        Ok(tag) => {
            let w0 = utcb::mr(0);
            signal(&[0, tag.words() as u64, w0]);
        }
        Err(e) => signal(&[e.code() as u64, 0, 0]),
    }
}

/// Waits for a message from anyone; reports `[status, label, tag label]`.
pub extern "C" fn wait_report_entry(_: u64, _: u64) {
    utcb::clear_recv_items();
    let (r, label) = ipc::ipc_wait(Timeouts::NEVER);
    match r {
        Ok(tag) => signal(&[0, label, tag.label() as u64]),
        Err(e) => signal(&[e.code() as u64, label, 0]),
    }
}

/// Calls thread `target` `n` times (MR0 = i, expecting i + 1), counting
/// the round trips in `COUNTERS[0]`; reports `[round trips, status of the
/// failed call or 0]`. Root task only.
pub extern "C" fn pinger_entry(target: u64, n: u64) {
    let t = l4::abi::Cap::new(target);
    let mut ok = 0;
    let mut status = 0;
    for i in 0..n {
        utcb::set_mr(0, i);
        match ipc::ipc_call(t, MsgTag::new(0, 1, 0, 0), ipc::timeouts_us(WAIT_US)).0 {
            Ok(_) if utcb::mr(0) == i + 1 => {
                ok += 1;
                COUNTERS[0].store(ok, Ordering::Relaxed);
            }
            Ok(_) => break,
            Err(e) => {
                status = e.code() as u64;
                break;
            }
        }
    }
    signal(&[ok, status]);
}

/// Sends `[v]` through capability `via` (e.g. a gate), then parks.
pub extern "C" fn send_via_entry(via: u64, v: u64) {
    let _ = ipc::send_words(l4::abi::Cap::new(via), SIG, &[v], Timeouts::NEVER);
}

/// Calls capability `via` with `[1]` and reports `[status]`.
pub extern "C" fn call_report_entry(via: u64, _: u64) {
    utcb::set_mr(0, 1);
    let r = ipc::ipc_call(
        l4::abi::Cap::new(via),
        MsgTag::new(0, 1, 0, 0),
        Timeouts::NEVER,
    )
    .0;
    signal(&[code(r.map(|_| ()))]);
}

/// Counts in `COUNTERS[idx]` until [`STOP`] or `limit` (root task only).
pub extern "C" fn spin_entry(idx: u64, limit: u64) {
    let Some(c) = COUNTERS.get(idx as usize) else {
        return;
    };
    while !STOP.load(Ordering::Relaxed) && c.load(Ordering::Relaxed) < limit {
        c.fetch_add(1, Ordering::Relaxed);
    }
}

/// Sleeps `us`, then cancels the IPC of thread `main`, and again every
/// half second (until it is deleted). Root task only.
extern "C" fn watchdog_entry(us: u64, main: u64) {
    let _ = ipc::sleep(Timeout::from_us(us));
    loop {
        let _ = Cap::<Thread>::from_index(main).ex_regs(
            ex_regs::UNCHANGED,
            ex_regs::UNCHANGED,
            ex_regs::CANCEL,
        );
        let _ = ipc::sleep(Timeout::from_us(500_000));
    }
}
