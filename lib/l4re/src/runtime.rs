//! The runtime proper, independent of the kernel: it loads the program,
//! resolves page faults from the region map and serves Linux system calls.
//! Everything it does to the outside world goes through a [`Backend`]: the
//! real one makes L4 calls (the `l4re` binary), the tests use a fake.
//!
//! The serving thread receives one message at a time:
//!
//! * [`Runtime::page_fault`]: map the page(s) from the region's dataspace
//!   into the task and let the thread retry, or report and end the task;
//! * [`Runtime::exception`]: a Linux system call (`svc #0`) is served and
//!   answered with the thread's new registers ([`Action::Reply`]), or the
//!   thread is kept waiting ([`Action::NoReply`]: futex waits, sleeps,
//!   blocking reads and polls) and answered later by a deferred reply
//!   ([`Runtime::take_wakeups`]); other exceptions end the task with a
//!   report;
//! * [`Runtime::tick`]: timeouts and input polling, at
//!   [`Runtime::next_deadline`].
//!
//! # Threads
//!
//! A thread is known by its UTCB slot (the exception message carries the
//! UTCB address). `clone` starts a new kernel thread at the runtime's
//! clone trampoline with the new stack; the 16 bytes below that stack
//! pointer hold the thread pointer (`sp - 16`) and the pc to continue at
//! (`sp - 8`), which the trampoline loads into `TPIDR_EL0` and jumps to
//! with `x0` = 0. Linux leaves those bytes alone too (they are below the
//! stack pointer), so a clone caller loses nothing.

use alloc::collections::{BTreeMap, BTreeSet, VecDeque};
use alloc::format;
use alloc::string::String;
use alloc::vec;
use alloc::vec::Vec;

use l4_abi::fault::{ExcRegs, PageFault};

use crate::elf::{self, Program};
use crate::fd::{self, FdTable, File, RomFile};
use crate::futex::FutexTable;
use crate::layout::*;
use crate::linux::errno::*;
use crate::linux::{self, Stat, Sys, SysResult, Timespec, auxv, clock, mman, sig};
use crate::regions::{
    Backing, DsRefs, Kind, PAGE, PageSet, Prot, Region, RegionMap, page_down, page_up,
};
use crate::stack;

/// Most bytes one log write message carries.
pub const LOG_MAX: usize = l4_abi::proto::vcon::WRITE_MAX;
/// Most bytes one `write`/`read` moves (short counts beyond).
pub const IO_MAX: usize = 1 << 20;
/// How often blocked readers of the log poll for input (ns).
pub const STDIN_POLL_NS: u64 = 20_000_000;
/// The process id (also the main thread's id).
pub const PID: u32 = 1;
/// Largest window the runtime offers a dataspace for one mapping.
pub const MAX_WINDOW_ORDER: u8 = 21;

/// What the runtime needs from the kernel and the services.
pub trait Backend {
    /// A new zero-filled dataspace of `size` bytes; its capability.
    fn ds_alloc(&mut self, size: u64) -> Result<u64, i64>;
    /// Maps part of dataspace `ds` into the task: the page at `offset` for
    /// the address `spot`, into the receive window `window` (base,
    /// log2 size) around it, with rights `prot`. Returns where the mapping
    /// landed (base, log2 size); it must contain `spot`.
    fn ds_map(
        &mut self,
        ds: u64,
        offset: u64,
        spot: u64,
        window: (u64, u8),
        prot: Prot,
    ) -> Result<(u64, u8), i64>;
    /// The size of dataspace `ds`.
    fn ds_size(&mut self, ds: u64) -> Result<u64, i64>;
    /// Removes every mapping of the task in `[start, end)` (pages the
    /// runtime mapped).
    fn unmap(&mut self, start: u64, end: u64);
    /// Drops a capability (a dataspace no region uses any more).
    fn release_cap(&mut self, cap: u64);
    /// Reads task memory that the runtime mapped.
    fn read_mem(&mut self, addr: u64, buf: &mut [u8]);
    /// Writes task memory that the runtime mapped writable.
    fn write_mem(&mut self, addr: u64, data: &[u8]);
    /// Copies task memory (both ranges mapped, `dst` writable).
    fn copy_mem(&mut self, dst: u64, src: u64, len: u64) {
        let mut buf = [0u8; 512];
        let mut done = 0;
        while done < len {
            let n = (len - done).min(buf.len() as u64) as usize;
            self.read_mem(src + done, &mut buf[..n]);
            self.write_mem(dst + done, &buf[..n]);
            done += n as u64;
        }
    }
    /// Writes one message (at most [`LOG_MAX`] bytes) to the log.
    fn log_write(&mut self, data: &[u8]);
    /// Reads pending log input without waiting; the number of bytes.
    fn log_read(&mut self, buf: &mut [u8]) -> usize;
    /// Looks a name up in the `rom/` namespace: a dataspace capability.
    fn rom_open(&mut self, name: &str) -> Result<u64, i64>;
    /// Creates a thread of the task with its UTCB at `utcb`, starting at
    /// `pc` with `sp`, paged and served by the runtime, on CPU `cpu`.
    fn thread_create(&mut self, utcb: u64, pc: u64, sp: u64, cpu: u32) -> Result<u64, i64>;
    /// Deletes a thread created by [`Backend::thread_create`].
    fn thread_delete(&mut self, cap: u64);
    /// The monotonic clock in nanoseconds.
    fn now_ns(&mut self) -> u64;
    /// Some entropy (seeds the runtime's random numbers).
    fn entropy(&mut self) -> u64;
    /// Tells the parent that the task exits with `code`.
    fn parent_exit(&mut self, code: i64);
}

/// How the loader started the task.
#[derive(Clone, Debug, Default)]
pub struct Config {
    /// Arguments; the first is the program's name (`rom/x`).
    pub args: Vec<String>,
    /// Environment strings.
    pub envs: Vec<String>,
    /// The program's ELF file.
    pub program_ds: u64,
    /// Address of the clone trampoline.
    pub trampoline: u64,
    /// The CPUs threads may run on (bit `i` = CPU `i`).
    pub cpus: u64,
    /// Log every system call.
    pub trace: bool,
}

/// What to do after an exception message.
// The registers travel by value once per system call; boxing them would
// allocate for every call.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// Reply now with these registers.
    Reply(ExcRegs),
    /// No reply now (the thread waits, or is gone).
    NoReply,
    /// The task is over: stop serving.
    Exit,
}

/// How a system call went.
enum Flow {
    /// Reply with this result.
    Done(SysResult),
    /// The thread waits (deferred reply).
    Wait,
    /// The task ended.
    Exit,
}

/// What to do after a page fault.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PfAction {
    /// Reply (empty): the thread retries.
    Retry,
    /// The task is over.
    Exit,
}

/// Why a thread waits.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Wait {
    Futex,
    Sleep {
        deadline: u64,
    },
    Read {
        buf: u64,
        len: u64,
    },
    Poll {
        fds: u64,
        nfds: u64,
        deadline: Option<u64>,
    },
}

#[derive(Clone, Debug)]
struct Thread {
    tid: u32,
    cap: u64,
    clear_tid: u64,
    sigmask: u64,
    altstack: [u8; 24],
    name: [u8; 16],
    blocked: Option<(ExcRegs, Wait)>,
}

/// Where the runtime looks up an address.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Space {
    /// The program's regions (syscall buffers, faults).
    Program,
    /// The runtime's windows (files).
    Windows,
}

/// The runtime of one task.
pub struct Runtime<B: Backend> {
    /// The backend.
    pub b: B,
    cfg: Config,
    name: String,
    regions: RegionMap,
    windows: RegionMap,
    refs: DsRefs,
    mapped: PageSet,
    threads: BTreeMap<usize, Thread>,
    next_tid: u32,
    spawned: u32,
    futex: FutexTable,
    fds: FdTable,
    stdin: VecDeque<u8>,
    stdin_poll_at: Option<u64>,
    brk_start: u64,
    brk_cur: u64,
    brk_end: u64,
    sigactions: [[u64; 4]; sig::NSIG],
    rng: u64,
    unknown: BTreeSet<u64>,
    wakeups: Vec<(u64, ExcRegs)>,
    last_fault: (u64, u32),
    exited: bool,
}

/// Why loading the program failed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LoadError(pub String);

fn signame(s: i64) -> &'static str {
    match s {
        sig::SIGILL => "SIGILL",
        sig::SIGTRAP => "SIGTRAP",
        sig::SIGABRT => "SIGABRT",
        sig::SIGBUS => "SIGBUS",
        sig::SIGFPE => "SIGFPE",
        sig::SIGKILL => "SIGKILL",
        sig::SIGSEGV => "SIGSEGV",
        sig::SIGSYS => "SIGSYS",
        _ => "signal",
    }
}

/// A description of an exception syndrome and the signal Linux would send.
pub fn describe_esr(esr: u64) -> (&'static str, i64) {
    let ec = (esr >> 26) & 0x3f;
    match ec {
        0x00 => ("undefined instruction", sig::SIGILL),
        0x01 => ("trapped WFI/WFE", sig::SIGILL),
        0x07 => ("trapped SIMD/FP access", sig::SIGILL),
        0x0e => ("illegal execution state", sig::SIGILL),
        0x15 => ("SVC with an unknown immediate", sig::SIGSYS),
        0x18 => ("trapped system register access", sig::SIGILL),
        0x20 => ("instruction abort", sig::SIGSEGV),
        0x22 => ("misaligned pc", sig::SIGBUS),
        0x24 if esr & 0x3f == 0x21 => ("alignment fault", sig::SIGBUS),
        0x24 => ("data abort", sig::SIGSEGV),
        0x26 => ("misaligned sp", sig::SIGBUS),
        0x2c => ("floating-point exception", sig::SIGFPE),
        0x30 | 0x32 | 0x34 => ("debug exception", sig::SIGTRAP),
        0x3c => ("breakpoint (BRK)", sig::SIGTRAP),
        _ => ("unknown exception", sig::SIGILL),
    }
}

fn prot_str(p: Prot) -> [u8; 3] {
    [
        if p.read() { b'r' } else { b'-' },
        if p.write() { b'w' } else { b'-' },
        if p.exec() { b'x' } else { b'-' },
    ]
}

impl<B: Backend> Runtime<B> {
    /// A runtime for the program described by `cfg`; [`Runtime::load`]
    /// starts it.
    pub fn new(mut b: B, cfg: Config) -> Runtime<B> {
        let name = cfg
            .args
            .first()
            .cloned()
            .unwrap_or_else(|| String::from("program"));
        let seed = b.entropy() ^ b.now_ns().rotate_left(32) ^ 0x9e37_79b9_7f4a_7c15;
        Runtime {
            b,
            cfg,
            name,
            regions: RegionMap::new(),
            windows: RegionMap::new(),
            refs: DsRefs::new(),
            mapped: PageSet::new(),
            threads: BTreeMap::new(),
            next_tid: PID,
            spawned: 0,
            futex: FutexTable::new(),
            fds: FdTable::new(),
            stdin: VecDeque::new(),
            stdin_poll_at: None,
            brk_start: 0,
            brk_cur: 0,
            brk_end: 0,
            sigactions: [[0; 4]; sig::NSIG],
            rng: seed | 1,
            unknown: BTreeSet::new(),
            wakeups: Vec::new(),
            last_fault: (u64::MAX, 0),
            exited: false,
        }
    }

    /// Whether the task has ended.
    pub fn exited(&self) -> bool {
        self.exited
    }

    /// The program's name (`argv[0]`).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Number of live program threads.
    pub fn thread_count(&self) -> usize {
        self.threads.len()
    }

    /// The region map (for reports and tests).
    pub fn regions(&self) -> &RegionMap {
        &self.regions
    }

    /// Deferred replies to send now: (thread capability, registers).
    pub fn take_wakeups(&mut self) -> Vec<(u64, ExcRegs)> {
        core::mem::take(&mut self.wakeups)
    }

    /// Writes a line to the log, prefixed `l4re: NAME: `.
    pub fn report(&mut self, msg: &str) {
        let line = format!("l4re: {}: {}\n", self.name, msg);
        self.log(line.as_bytes());
    }

    fn log(&mut self, data: &[u8]) {
        for c in fd::log_chunks(data, LOG_MAX) {
            self.b.log_write(c);
        }
    }

    fn random(&mut self) -> u64 {
        // xorshift64*, stirred with the clock.
        self.rng ^= self.b.now_ns();
        self.rng ^= self.rng >> 12;
        self.rng ^= self.rng << 25;
        self.rng ^= self.rng >> 27;
        self.rng.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    // ------------------------------------------------------------------
    // Memory
    // ------------------------------------------------------------------

    fn map_of(&self, space: Space) -> &RegionMap {
        match space {
            Space::Program => &self.regions,
            Space::Windows => &self.windows,
        }
    }

    /// The dataspace of region `r`, creating an anonymous one on first use.
    fn region_ds(&mut self, space: Space, r: &Region) -> Result<(u64, u64), i64> {
        match r.backing {
            Backing::Reserved => Err(EFAULT),
            Backing::Ds { ds, offset }
            | Backing::Anon {
                ds: Some(ds),
                offset,
            } => Ok((ds, offset)),
            Backing::Anon { ds: None, .. } => {
                let ds = self.b.ds_alloc(r.len())?;
                let map = match space {
                    Space::Program => &mut self.regions,
                    Space::Windows => &mut self.windows,
                };
                map.set_anon_ds(r.start, ds, &mut self.refs);
                Ok((ds, 0))
            }
        }
    }

    /// Maps `[from, to)` of region `r` (all inside it) with `prot`.
    fn map_pages(
        &mut self,
        space: Space,
        r: &Region,
        from: u64,
        to: u64,
        prot: Prot,
    ) -> Result<(), i64> {
        let (ds, offset) = self.region_ds(space, r)?;
        let mut va = page_down(from);
        while va < to {
            let mut order = 12u8;
            while order < MAX_WINDOW_ORDER {
                let size = 1u64 << (order + 1);
                let base = va & !(size - 1);
                if base < r.start || base + size > r.end {
                    break;
                }
                order += 1;
            }
            let base = va & !((1u64 << order) - 1);
            let off = offset + (va - r.start);
            let (lb, lo) = self.b.ds_map(ds, off, va, (base, order), prot)?;
            let lend = lb.saturating_add(1u64 << lo.min(63));
            if lb > va || lend <= va {
                return Err(EFAULT);
            }
            self.mapped.insert(lb.max(r.start), lend.min(r.end));
            va = lend;
        }
        Ok(())
    }

    /// Makes sure `[addr, addr + len)` is mapped so the runtime can read
    /// it (and write it with `write`), within regions that allow it.
    fn ensure(&mut self, space: Space, addr: u64, len: u64, write: bool) -> Result<(), i64> {
        if len == 0 {
            return Ok(());
        }
        let end = addr.checked_add(len).ok_or(EFAULT)?;
        while let Some((gs, ge)) = self.mapped.first_gap(addr, end) {
            let r = *self.map_of(space).lookup(gs).ok_or(EFAULT)?;
            if !r.prot.read() || (write && !r.prot.write()) {
                return Err(EFAULT);
            }
            self.map_pages(space, &r, gs, ge.min(r.end), r.prot)?;
        }
        // Mapped pages may belong to regions that forbid the access.
        let mut at = addr;
        while at < end {
            let r = self.map_of(space).lookup(at).ok_or(EFAULT)?;
            if !r.prot.read() || (write && !r.prot.write()) {
                return Err(EFAULT);
            }
            at = r.end;
        }
        Ok(())
    }

    fn read_user(&mut self, addr: u64, len: usize) -> Result<Vec<u8>, i64> {
        self.ensure(Space::Program, addr, len as u64, false)?;
        let mut v = vec![0u8; len];
        self.b.read_mem(addr, &mut v);
        Ok(v)
    }

    fn write_user(&mut self, addr: u64, data: &[u8]) -> Result<(), i64> {
        self.ensure(Space::Program, addr, data.len() as u64, true)?;
        self.b.write_mem(addr, data);
        Ok(())
    }

    fn read_u32(&mut self, addr: u64) -> Result<u32, i64> {
        let v = self.read_user(addr, 4)?;
        Ok(u32::from_le_bytes([v[0], v[1], v[2], v[3]]))
    }

    fn read_u64(&mut self, addr: u64) -> Result<u64, i64> {
        let v = self.read_user(addr, 8)?;
        let mut w = [0u8; 8];
        w.copy_from_slice(&v);
        Ok(u64::from_le_bytes(w))
    }

    fn read_timespec(&mut self, addr: u64) -> Result<u64, i64> {
        let v = self.read_user(addr, 16)?;
        let mut b = [0u8; 16];
        b.copy_from_slice(&v);
        Timespec::from_bytes(b).to_ns().ok_or(EINVAL)
    }

    /// A NUL-terminated string of at most `max` bytes.
    fn read_cstr(&mut self, addr: u64, max: usize) -> Result<Vec<u8>, i64> {
        let mut out = Vec::new();
        let mut at = addr;
        loop {
            let n = (PAGE - at % PAGE) as usize;
            let chunk = self.read_user(at, n)?;
            if let Some(z) = chunk.iter().position(|&c| c == 0) {
                out.extend_from_slice(&chunk[..z]);
                break;
            }
            out.extend_from_slice(&chunk);
            if out.len() > max {
                return Err(ENAMETOOLONG);
            }
            at = at.checked_add(n as u64).ok_or(EFAULT)?;
        }
        if out.len() > max {
            return Err(ENAMETOOLONG);
        }
        Ok(out)
    }

    /// Removes the mappings of `[start, end)` (the runtime maps again on
    /// the next touch).
    fn unmap_range(&mut self, start: u64, end: u64) {
        // Only what is mapped: unmapping costs the kernel work per page.
        for (s, e) in self.mapped.within(start, end) {
            self.b.unmap(s, e);
        }
        self.mapped.remove(start, end);
    }

    fn detach(&mut self, space: Space, start: u64, end: u64) {
        let map = match space {
            Space::Program => &mut self.regions,
            Space::Windows => &mut self.windows,
        };
        if let Ok((removed, dead)) = map.detach(start, end, &mut self.refs) {
            for r in removed {
                self.unmap_range(r.start, r.end);
            }
            for ds in dead {
                self.b.release_cap(ds);
            }
        }
    }

    fn attach(&mut self, space: Space, r: Region) -> Result<(), i64> {
        let map = match space {
            Space::Program => &mut self.regions,
            Space::Windows => &mut self.windows,
        };
        map.attach(r, &mut self.refs).map_err(|_| ENOMEM)
    }

    // ------------------------------------------------------------------
    // Loading
    // ------------------------------------------------------------------

    /// Loads the program, builds its stack and starts its main thread.
    pub fn load(&mut self) -> Result<(), LoadError> {
        let err = |s: String| LoadError(s);
        let ds = self.cfg.program_ds;
        let size = self
            .b
            .ds_size(ds)
            .map_err(|e| err(format!("cannot read the program's size (error {e})")))?;
        // The runtime's own ranges.
        self.attach(
            Space::Program,
            Region::new(
                l4re_env::RUNTIME_BASE,
                STACK_LOW - STACK_GUARD,
                Prot::NONE,
                Backing::Reserved,
                Kind::Runtime,
            ),
        )
        .map_err(|_| err("address space in use".into()))?;
        self.attach(
            Space::Program,
            Region::new(
                l4re_env::PROGRAM_STACK_TOP,
                USER_END,
                Prot::NONE,
                Backing::Reserved,
                Kind::Runtime,
            ),
        )
        .map_err(|_| err("address space in use".into()))?;
        // A window onto the file.
        let file_win = self
            .open_window(ds, size)
            .map_err(|e| err(format!("cannot map the program (error {e})")))?;
        let head_len = size.min(PAGE);
        self.ensure(Space::Windows, file_win, head_len, false)
            .map_err(|e| err(format!("cannot read the program (error {e})")))?;
        let mut head = vec![0u8; head_len as usize];
        self.b.read_mem(file_win, &mut head);
        let need = elf::headers_len(&head)
            .map_err(|e| err(format!("{e}")))?
            .clamp(elf::EHDR_SIZE as u64, 64 * PAGE)
            .min(size);
        if need > head_len {
            self.ensure(Space::Windows, file_win, need, false)
                .map_err(|e| err(format!("cannot read the program (error {e})")))?;
            head.resize(need as usize, 0);
            self.b.read_mem(file_win, &mut head);
        }
        let prog = elf::parse(&head, size).map_err(|e| err(format!("{e}")))?;
        let base = if prog.etype == elf::ET_DYN {
            DYN_BASE - prog.low()
        } else {
            0
        };
        if prog.low().wrapping_add(base) < PROGRAM_MIN
            || prog.high().saturating_add(base) > MMAP_BASE
        {
            return Err(err("program outside the program area".into()));
        }
        for l in &prog.loads {
            self.load_segment(file_win, base, l)?;
        }
        // The file window is no longer needed: segments map the file
        // through their own regions.
        self.detach(
            Space::Windows,
            file_win,
            file_win + page_up(size).unwrap_or(0).max(PAGE),
        );
        self.brk_start = base + prog.high();
        self.brk_cur = self.brk_start;
        self.brk_end = self.brk_start;
        self.start_main(&prog, base)
    }

    fn load_segment(&mut self, file_win: u64, base: u64, l: &elf::Load) -> Result<(), LoadError> {
        let start = page_down(base + l.vaddr);
        let end = page_up(base + l.end()).ok_or(LoadError("segment too large".into()))?;
        let mut prot = Prot(0);
        if l.flags & elf::PF_R != 0 {
            prot.0 |= 4;
        }
        if l.flags & elf::PF_W != 0 {
            prot.0 |= 6;
        }
        if l.flags & elf::PF_X != 0 {
            prot.0 |= 1;
        }
        let overlap = |_| LoadError(format!("segment at {start:#x} overlaps another"));
        if !l.writable() && l.filesz == l.memsz {
            // Read-only and all in the file: map the file itself.
            return self
                .attach(
                    Space::Program,
                    Region::new(
                        start,
                        end,
                        prot,
                        Backing::Ds {
                            ds: self.cfg.program_ds,
                            offset: page_down(l.offset),
                        },
                        Kind::Image,
                    ),
                )
                .map_err(overlap);
        }
        // A copy in anonymous memory, written by the runtime, then given
        // its rights.
        let anon = Backing::Anon {
            ds: None,
            offset: 0,
        };
        self.attach(
            Space::Program,
            Region::new(start, end, Prot::RW, anon, Kind::Image),
        )
        .map_err(overlap)?;
        let copy_from = page_down(l.offset);
        let copy_len = l.offset + l.filesz - copy_from;
        let fail = |e: i64| LoadError(format!("cannot load segment at {start:#x} (error {e})"));
        self.ensure(Space::Windows, file_win + copy_from, copy_len, false)
            .map_err(fail)?;
        self.ensure(Space::Program, start, copy_len, true)
            .map_err(fail)?;
        self.b.copy_mem(start, file_win + copy_from, copy_len);
        // Zero the rest of the last file page (fresh dataspaces are zero).
        let tail = start + copy_len;
        if let Some(tail_end) = page_up(tail)
            && tail_end > tail
            && tail_end <= end
        {
            self.ensure(Space::Program, tail, tail_end - tail, true)
                .map_err(fail)?;
            self.b
                .write_mem(tail, &vec![0u8; (tail_end - tail) as usize]);
        }
        if prot != Prot::RW {
            let _ = self.regions.protect(start, end, prot, &mut self.refs);
            self.unmap_range(start, end);
        }
        Ok(())
    }

    fn open_window(&mut self, ds: u64, size: u64) -> Result<u64, i64> {
        let len = page_up(size).ok_or(ENOMEM)?.max(PAGE);
        let at = self
            .windows
            .find_free(len, RT_WINDOWS_BASE, RT_WINDOWS_END, 1 << 16)
            .ok_or(ENOMEM)?;
        self.attach(
            Space::Windows,
            Region::new(
                at,
                at + len,
                Prot::R,
                Backing::Ds { ds, offset: 0 },
                Kind::Window,
            ),
        )?;
        Ok(at)
    }

    fn start_main(&mut self, prog: &Program, base: u64) -> Result<(), LoadError> {
        let top = l4re_env::PROGRAM_STACK_TOP;
        self.attach(
            Space::Program,
            Region::new(
                STACK_LOW - STACK_GUARD,
                STACK_LOW,
                Prot::NONE,
                Backing::Reserved,
                Kind::Stack,
            ),
        )
        .map_err(|_| LoadError("stack guard overlaps".into()))?;
        self.attach(
            Space::Program,
            Region::new(
                STACK_LOW,
                top,
                Prot::RW,
                Backing::Anon {
                    ds: None,
                    offset: 0,
                },
                Kind::Stack,
            ),
        )
        .map_err(|_| LoadError("stack overlaps".into()))?;
        let phdr = prog
            .phdr_vaddr
            .map(|p| p + base)
            .ok_or(LoadError("program headers are not loaded".into()))?;
        let aux = [
            (auxv::AT_PHDR, phdr),
            (auxv::AT_PHENT, elf::PHDR_SIZE as u64),
            (auxv::AT_PHNUM, prog.phnum as u64),
            (auxv::AT_PAGESZ, PAGE),
            (auxv::AT_BASE, 0),
            (auxv::AT_FLAGS, 0),
            (auxv::AT_ENTRY, prog.entry + base),
            (auxv::AT_UID, 0),
            (auxv::AT_EUID, 0),
            (auxv::AT_GID, 0),
            (auxv::AT_EGID, 0),
            (auxv::AT_HWCAP, auxv::HWCAP_FP_ASIMD),
            (auxv::AT_HWCAP2, 0),
            (auxv::AT_CLKTCK, 100),
            (auxv::AT_SECURE, 0),
            (auxv::AT_MINSIGSTKSZ, 5120),
            (auxv::AT_L4RE_ENV, l4re_env::ENV_VA),
        ];
        let mut random = [0u8; 16];
        let (r0, r1) = (self.random(), self.random());
        random[..8].copy_from_slice(&r0.to_le_bytes());
        random[8..].copy_from_slice(&r1.to_le_bytes());
        let args: Vec<&[u8]> = self.cfg.args.iter().map(|s| s.as_bytes()).collect();
        let envs: Vec<&[u8]> = self.cfg.envs.iter().map(|s| s.as_bytes()).collect();
        let st = stack::build(
            top,
            &args,
            &envs,
            &aux,
            self.name.as_bytes(),
            random,
            1 << 20,
        )
        .map_err(|_| LoadError("arguments too large for the stack".into()))?;
        self.write_user(st.sp, &st.bytes)
            .map_err(|e| LoadError(format!("cannot write the initial stack (error {e})")))?;
        let entry = prog.entry + base;
        let cpu = self.next_cpu();
        let cap = self
            .b
            .thread_create(utcb(1), entry, st.sp, cpu)
            .map_err(|e| LoadError(format!("cannot create the main thread (error {e})")))?;
        self.threads.insert(
            1,
            Thread {
                tid: PID,
                cap,
                clear_tid: 0,
                sigmask: 0,
                altstack: Self::no_altstack(),
                name: [0; 16],
                blocked: None,
            },
        );
        self.next_tid = PID + 1;
        Ok(())
    }

    fn no_altstack() -> [u8; 24] {
        let mut a = [0u8; 24];
        a[8..12].copy_from_slice(&sig::SS_DISABLE.to_le_bytes());
        a
    }

    fn next_cpu(&mut self) -> u32 {
        let cpus = if self.cfg.cpus == 0 { 1 } else { self.cfg.cpus };
        let n = self.spawned % cpus.count_ones();
        self.spawned += 1;
        let mut m = cpus;
        for _ in 0..n {
            m &= m - 1;
        }
        m.trailing_zeros()
    }

    // ------------------------------------------------------------------
    // Faults and exceptions
    // ------------------------------------------------------------------

    /// A page fault of a program thread.
    pub fn page_fault(&mut self, pf: PageFault) -> PfAction {
        if self.exited {
            return PfAction::Exit;
        }
        let access = if pf.exec {
            "exec"
        } else if pf.write {
            "write"
        } else {
            "read"
        };
        let addr = page_down(pf.addr);
        let region = self.regions.lookup(pf.addr).copied();
        let detail = match region {
            None => None,
            Some(r) if matches!(r.backing, Backing::Reserved) => Some(format!(
                "{:#x} is in a guard or runtime area ({:#x}..{:#x})",
                pf.addr, r.start, r.end
            )),
            Some(r)
                if !r.prot.read()
                    || (pf.write && !r.prot.write())
                    || (pf.exec && !r.prot.exec()) =>
            {
                let p = prot_str(r.prot);
                Some(format!(
                    "region {:#x}..{:#x} is {}",
                    r.start,
                    r.end,
                    core::str::from_utf8(&p).unwrap_or("?")
                ))
            }
            Some(r) => {
                // Repeated faults at one address: the mapping does not stick.
                if self.last_fault.0 == addr {
                    self.last_fault.1 += 1;
                } else {
                    self.last_fault = (addr, 0);
                }
                if self.last_fault.1 > 16 {
                    Some(String::from("the page does not stay mapped"))
                } else {
                    match self.map_pages(Space::Program, &r, addr, addr + PAGE, r.prot) {
                        Ok(()) => return PfAction::Retry,
                        Err(e) => Some(format!("cannot map the page (error {e})")),
                    }
                }
            }
        };
        self.report(&format!(
            "unhandled page fault at {:#x} pc {:#x} ({access})",
            pf.addr, pf.pc
        ));
        if let Some(d) = detail {
            self.report(&d);
        }
        self.exit_group(-sig::SIGSEGV);
        PfAction::Exit
    }

    /// An exception of a program thread (its UTCB tells which).
    pub fn exception(&mut self, regs: ExcRegs) -> Action {
        if self.exited {
            return Action::Exit;
        }
        let Some(slot) = utcb_slot(regs.tpidruro).filter(|s| self.threads.contains_key(s)) else {
            self.report(&format!(
                "exception from an unknown thread (UTCB {:#x}, pc {:#x}); ignored",
                regs.tpidruro, regs.pc
            ));
            return Action::NoReply;
        };
        if !regs.is_linux_syscall() {
            return self.fatal_exception(&regs);
        }
        let a = self.syscall(slot, regs);
        if self.exited {
            return Action::Exit;
        }
        a
    }

    fn fatal_exception(&mut self, r: &ExcRegs) -> Action {
        let (what, signal) = describe_esr(r.err);
        self.report(&format!(
            "unhandled exception: {what} (ESR {:#x}) at pc {:#x}, address {:#x}",
            r.err, r.pc, r.pfa
        ));
        for i in (0..31).step_by(4) {
            let mut line = String::new();
            for j in i..(i + 4).min(31) {
                line.push_str(&format!("x{j:<2} {:016x}  ", r.x[j]));
            }
            if i == 28 {
                line.push_str(&format!("sp  {:016x}", r.sp));
            }
            self.report(line.trim_end());
        }
        self.report(&format!("ends with {}", signame(signal)));
        self.exit_group(-signal);
        Action::Exit
    }

    /// Ends the task: stops every thread and tells the parent.
    fn exit_group(&mut self, code: i64) {
        let threads = core::mem::take(&mut self.threads);
        for t in threads.values() {
            self.b.thread_delete(t.cap);
        }
        self.wakeups.clear();
        self.exited = true;
        self.b.parent_exit(code);
    }

    // ------------------------------------------------------------------
    // Time
    // ------------------------------------------------------------------

    /// When [`Runtime::tick`] is due next (runtime clock, ns).
    pub fn next_deadline(&self) -> Option<u64> {
        let threads = self.threads.values().filter_map(|t| match t.blocked {
            Some((_, Wait::Sleep { deadline })) => Some(deadline),
            Some((_, Wait::Poll { deadline, .. })) => deadline,
            _ => None,
        });
        threads
            .chain(self.futex.next_deadline())
            .chain(self.stdin_poll_at)
            .min()
    }

    /// Ends timed-out waits and polls the log for input.
    pub fn tick(&mut self) {
        if self.exited {
            return;
        }
        let now = self.b.now_ns();
        for tid in self.futex.expire(now) {
            if let Some(slot) = self.slot_of(tid) {
                self.wake(slot, Err(ETIMEDOUT));
            }
        }
        let due: Vec<usize> = self
            .threads
            .iter()
            .filter(|(_, t)| match t.blocked {
                Some((_, Wait::Sleep { deadline })) => deadline <= now,
                Some((_, Wait::Poll { deadline, .. })) => deadline.is_some_and(|d| d <= now),
                _ => false,
            })
            .map(|(s, _)| *s)
            .collect();
        for slot in due {
            let poll = match self.threads.get(&slot).and_then(|t| t.blocked.as_ref()) {
                Some((_, Wait::Poll { fds, nfds, .. })) => Some((*fds, *nfds)),
                _ => None,
            };
            match poll {
                Some((fds, nfds)) => {
                    let r = self.poll_eval(fds, nfds, true).map(|n| n as u64);
                    self.wake(slot, r);
                }
                None => self.wake(slot, Ok(0)),
            }
        }
        if self.stdin_poll_at.is_some_and(|t| t <= now) {
            self.stdin_poll_at = None;
            self.serve_stdin(now);
        }
    }

    fn slot_of(&self, tid: u32) -> Option<usize> {
        self.threads
            .iter()
            .find(|(_, t)| t.tid == tid)
            .map(|(s, _)| *s)
    }

    /// Answers a waiting thread with `r` in `x0` (a deferred reply).
    fn wake(&mut self, slot: usize, r: SysResult) {
        if let Some(t) = self.threads.get_mut(&slot)
            && let Some((mut regs, _)) = t.blocked.take()
        {
            regs.x[0] = linux::ret_value(r);
            self.wakeups.push((t.cap, regs));
        }
    }

    fn block(&mut self, slot: usize, regs: &ExcRegs, why: Wait) -> Flow {
        if let Some(t) = self.threads.get_mut(&slot) {
            t.blocked = Some((*regs, why));
        }
        Flow::Wait
    }

    // ------------------------------------------------------------------
    // System calls
    // ------------------------------------------------------------------

    fn syscall(&mut self, slot: usize, regs: ExcRegs) -> Action {
        let nr = regs.x[8];
        let a = [
            regs.x[0], regs.x[1], regs.x[2], regs.x[3], regs.x[4], regs.x[5],
        ];
        let r = match Sys::from_nr(nr) {
            Some(s) => match self.dispatch(slot, &regs, s, a) {
                Flow::Done(r) => r,
                Flow::Wait => {
                    self.traced(slot, nr, a, None);
                    return Action::NoReply;
                }
                Flow::Exit => return Action::Exit,
            },
            None => {
                if self.unknown.insert(nr) {
                    self.report(&format!("system call {nr} is not implemented (ENOSYS)"));
                }
                Err(ENOSYS)
            }
        };
        self.traced(slot, nr, a, Some(r));
        let mut out = regs;
        out.x[0] = linux::ret_value(r);
        Action::Reply(out)
    }

    fn traced(&mut self, slot: usize, nr: u64, a: [u64; 6], r: Option<SysResult>) {
        if self.cfg.trace {
            let name = Sys::from_nr(nr).map_or("?", Sys::name);
            let tid = self.threads.get(&slot).map_or(0, |t| t.tid);
            let res = match r {
                None => String::from("(waits)"),
                Some(Ok(v)) => format!("= {v:#x}"),
                Some(Err(e)) => format!("= -{e}"),
            };
            self.report(&format!(
                "[{tid}] {name}({:#x}, {:#x}, {:#x}, {:#x}) {res}",
                a[0], a[1], a[2], a[3]
            ));
        }
    }

    /// `Ok(Some(r))`: reply with `r`; `Ok(None)`: the thread waits;
    /// `Err(action)`: something else (exit).
    fn dispatch(&mut self, slot: usize, regs: &ExcRegs, s: Sys, a: [u64; 6]) -> Flow {
        let done = Flow::Done;
        let tid = self.threads.get(&slot).map_or(0, |t| t.tid);
        match s {
            Sys::Write => done(self.sys_write(a[0], a[1], a[2])),
            Sys::Writev => done(self.sys_writev(a[0], a[1], a[2])),
            Sys::Read => match self.sys_read(a[0], a[1], a[2]) {
                Ok(Some(n)) => done(Ok(n)),
                Ok(None) => self.block(
                    slot,
                    regs,
                    Wait::Read {
                        buf: a[1],
                        len: a[2],
                    },
                ),
                Err(e) => done(Err(e)),
            },
            Sys::Readv => done(self.sys_readv(a[0], a[1], a[2])),
            Sys::Pread64 => done(self.sys_pread(a[0], a[1], a[2], a[3])),
            Sys::Openat => done(self.sys_openat(a[0] as i64, a[1], a[2])),
            Sys::Close => done(self.sys_close(a[0])),
            Sys::Lseek => done(self.sys_lseek(a[0], a[1] as i64, a[2])),
            Sys::Fstat => done(self.sys_fstat(a[0], a[1], false)),
            Sys::Newfstatat => done(self.sys_fstatat(a[0] as i64, a[1], a[2], a[3], false)),
            Sys::Statx => done(self.sys_fstatat(a[0] as i64, a[1], a[4], a[2], true)),
            Sys::Faccessat => done(self.sys_faccessat(a[0] as i64, a[1], a[2])),
            Sys::Fcntl => done(self.sys_fcntl(a[0], a[1], a[2])),
            Sys::Ioctl => done(self.fds.get(a[0]).map_or(Err(EBADF), |_| Err(ENOTTY))),
            Sys::Getcwd => done(self.sys_getcwd(a[0], a[1])),
            Sys::Getdents64 => done(self.fds.get(a[0]).map_or(Err(EBADF), |_| Err(ENOTDIR))),
            Sys::Readlinkat => done(Err(ENOENT)),
            Sys::Ppoll => match self.sys_ppoll(a[0], a[1], a[2]) {
                Ok(Ok(n)) => done(Ok(n)),
                Ok(Err(deadline)) => self.block(
                    slot,
                    regs,
                    Wait::Poll {
                        fds: a[0],
                        nfds: a[1],
                        deadline,
                    },
                ),
                Err(e) => done(Err(e)),
            },
            Sys::Exit => {
                self.thread_exit(slot, a[0] as i32 as i64);
                if self.exited { Flow::Exit } else { Flow::Wait }
            }
            Sys::ExitGroup => {
                self.exit_group((a[0] & 0xff) as i64);
                Flow::Exit
            }
            Sys::SetTidAddress => {
                if let Some(t) = self.threads.get_mut(&slot) {
                    t.clear_tid = a[0];
                }
                done(Ok(tid as u64))
            }
            Sys::SetRobustList => done(Ok(0)),
            Sys::Futex => match self.sys_futex(tid, a) {
                Ok(Some(v)) => done(Ok(v)),
                Ok(None) => self.block(slot, regs, Wait::Futex),
                Err(e) => done(Err(e)),
            },
            Sys::Nanosleep => self.sleep(slot, regs, clock::MONOTONIC, 0, a[0]),
            Sys::ClockNanosleep => self.sleep(slot, regs, a[0], a[1], a[2]),
            Sys::ClockGettime => done(self.sys_clock_gettime(a[0], a[1])),
            Sys::ClockGetres => done(self.sys_clock_getres(a[0], a[1])),
            Sys::SchedGetaffinity => done(self.sys_getaffinity(a[0], a[1], a[2])),
            Sys::SchedSetaffinity => done(Ok(0)),
            Sys::SchedYield => done(Ok(0)),
            Sys::Kill => done(self.sys_kill(a[0] as i64 == PID as i64 || a[0] == 0, a[1])),
            Sys::Tkill => done(self.sys_kill(self.slot_of(a[0] as u32).is_some(), a[1])),
            Sys::Tgkill => done(self.sys_kill(
                a[0] as u32 == PID && self.slot_of(a[1] as u32).is_some(),
                a[2],
            )),
            Sys::Sigaltstack => done(self.sys_sigaltstack(slot, a[0], a[1])),
            Sys::RtSigaction => done(self.sys_sigaction(a[0], a[1], a[2], a[3])),
            Sys::RtSigprocmask => done(self.sys_sigprocmask(slot, a[0], a[1], a[2], a[3])),
            Sys::Uname => done(
                self.write_user(a[0], &linux::utsname("6.1.0", "aarch64"))
                    .map(|()| 0),
            ),
            Sys::Prctl => done(self.sys_prctl(slot, a[0], a[1])),
            Sys::Getpid => done(Ok(PID as u64)),
            Sys::Getppid => done(Ok(0)),
            Sys::Getuid | Sys::Geteuid | Sys::Getgid | Sys::Getegid => done(Ok(0)),
            Sys::Gettid => done(Ok(tid as u64)),
            Sys::Brk => done(Ok(self.sys_brk(a[0]))),
            Sys::Mmap => done(self.sys_mmap(a[0], a[1], a[2], a[3], a[4] as i32 as i64, a[5])),
            Sys::Munmap => done(self.sys_munmap(a[0], a[1])),
            Sys::Mremap => done(self.sys_mremap(a[0], a[1])),
            Sys::Mprotect => done(self.sys_mprotect(a[0], a[1], a[2])),
            Sys::Madvise => done(self.sys_madvise(a[0], a[1], a[2])),
            Sys::Prlimit64 => done(self.sys_prlimit(a[0], a[1], a[3])),
            Sys::Getrandom => done(self.sys_getrandom(a[0], a[1])),
            Sys::Rseq | Sys::Clone3 => done(Err(ENOSYS)),
            Sys::Clone => done(self.sys_clone(slot, regs, a)),
        }
    }

    // --- I/O -------------------------------------------------------------

    fn sys_write(&mut self, fd: u64, buf: u64, len: u64) -> SysResult {
        match self.fds.get(fd)?.file {
            File::Stdout | File::Stderr => {}
            _ => return Err(EBADF),
        }
        let n = (len as usize).min(IO_MAX);
        let data = self.read_user(buf, n)?;
        self.log(&data);
        Ok(n as u64)
    }

    fn sys_writev(&mut self, fd: u64, iov: u64, cnt: u64) -> SysResult {
        match self.fds.get(fd)?.file {
            File::Stdout | File::Stderr => {}
            _ => return Err(EBADF),
        }
        if cnt > 1024 {
            return Err(EINVAL);
        }
        let mut data = Vec::new();
        for i in 0..cnt {
            let base = self.read_u64(iov + 16 * i)?;
            let len = self.read_u64(iov + 16 * i + 8)?;
            let n = (len as usize).min(IO_MAX - data.len());
            data.extend_from_slice(&self.read_user(base, n)?);
            if data.len() >= IO_MAX {
                break;
            }
        }
        self.log(&data);
        Ok(data.len() as u64)
    }

    /// `Ok(None)`: nothing to read yet (the caller waits).
    fn sys_read(&mut self, fd: u64, buf: u64, len: u64) -> Result<Option<u64>, i64> {
        let file = self.fds.get(fd)?.file.clone();
        match file {
            File::Stdin => {
                if len == 0 {
                    return Ok(Some(0));
                }
                self.fill_stdin();
                if self.stdin.is_empty() {
                    // Check the buffer is writable before waiting.
                    self.ensure(Space::Program, buf, 1, true)?;
                    let now = self.b.now_ns();
                    self.stdin_poll_at.get_or_insert(now + STDIN_POLL_NS);
                    return Ok(None);
                }
                self.deliver_stdin(buf, len).map(Some)
            }
            File::Rom(f) => {
                let n = self.rom_read(&f, f.pos, buf, len)?;
                if let File::Rom(f) = &mut self.fds.get_mut(fd)?.file {
                    f.pos += n;
                }
                Ok(Some(n))
            }
            _ => Err(EBADF),
        }
    }

    fn sys_readv(&mut self, fd: u64, iov: u64, cnt: u64) -> SysResult {
        if cnt > 1024 {
            return Err(EINVAL);
        }
        let mut total = 0;
        for i in 0..cnt {
            let base = self.read_u64(iov + 16 * i)?;
            let len = self.read_u64(iov + 16 * i + 8)?;
            if len == 0 {
                continue;
            }
            // Never wait in readv: a stdin read without input returns what
            // was read so far (EAGAIN if nothing).
            match self.sys_read(fd, base, len)? {
                Some(n) => {
                    total += n;
                    if n < len {
                        break;
                    }
                }
                None if total == 0 => return Err(EAGAIN),
                None => break,
            }
        }
        Ok(total)
    }

    fn sys_pread(&mut self, fd: u64, buf: u64, len: u64, off: u64) -> SysResult {
        match self.fds.get(fd)?.file.clone() {
            File::Rom(f) => self.rom_read(&f, off, buf, len),
            _ => Err(ESPIPE),
        }
    }

    fn rom_read(&mut self, f: &RomFile, pos: u64, buf: u64, len: u64) -> SysResult {
        if pos >= f.size {
            return Ok(0);
        }
        let n = len.min(f.size - pos).min(IO_MAX as u64);
        self.ensure(Space::Program, buf, n, true)?;
        self.ensure(Space::Windows, f.window + pos, n, false)?;
        self.b.copy_mem(buf, f.window + pos, n);
        Ok(n)
    }

    fn fill_stdin(&mut self) {
        let mut buf = [0u8; 256];
        loop {
            let n = self.b.log_read(&mut buf).min(buf.len());
            self.stdin.extend(&buf[..n]);
            if n < buf.len() || self.stdin.len() > 4096 {
                break;
            }
        }
    }

    fn deliver_stdin(&mut self, buf: u64, len: u64) -> SysResult {
        let n = (len as usize).min(self.stdin.len());
        let data: Vec<u8> = self.stdin.iter().take(n).copied().collect();
        self.write_user(buf, &data)?;
        self.stdin.drain(..n);
        Ok(n as u64)
    }

    /// Serves threads waiting for log input.
    fn serve_stdin(&mut self, now: u64) {
        let readers: Vec<usize> = self
            .threads
            .iter()
            .filter(|(_, t)| matches!(t.blocked, Some((_, Wait::Read { .. } | Wait::Poll { .. }))))
            .map(|(s, _)| *s)
            .collect();
        if readers.is_empty() {
            return;
        }
        self.fill_stdin();
        for slot in readers {
            let w = self.threads.get(&slot).and_then(|t| t.blocked.clone());
            match w {
                Some((_, Wait::Read { buf, len })) if !self.stdin.is_empty() => {
                    let r = self.deliver_stdin(buf, len);
                    self.wake(slot, r);
                }
                Some((_, Wait::Poll { fds, nfds, .. })) => {
                    if let Ok(n) = self.poll_eval(fds, nfds, false)
                        && n > 0
                    {
                        self.wake(slot, Ok(n as u64));
                    }
                }
                _ => {}
            }
        }
        let still = self.threads.values().any(|t| {
            matches!(t.blocked, Some((_, Wait::Read { .. })))
                || matches!(t.blocked, Some((_, Wait::Poll { .. })))
        });
        if still {
            self.stdin_poll_at = Some(now + STDIN_POLL_NS);
        }
    }

    fn sys_openat(&mut self, dirfd: i64, path: u64, flags: u64) -> SysResult {
        let p = self.read_cstr(path, 4096)?;
        if dirfd != linux::AT_FDCWD && p.first() != Some(&b'/') {
            self.fds.get(dirfd as u64)?;
            return Err(ENOTDIR);
        }
        let Some(name) = fd::rom_name(&p) else {
            return Err(ENOENT);
        };
        use linux::open_flags::*;
        let ds = self.b.rom_open(name)?;
        if flags & O_ACCMODE != O_RDONLY || flags & (O_CREAT | O_TRUNC) != 0 {
            self.b.release_cap(ds);
            return Err(EROFS);
        }
        if flags & O_DIRECTORY != 0 {
            self.b.release_cap(ds);
            return Err(ENOTDIR);
        }
        let size = match self.b.ds_size(ds) {
            Ok(s) => s,
            Err(e) => {
                self.b.release_cap(ds);
                return Err(e);
            }
        };
        let window = match self.open_window(ds, size) {
            Ok(w) => w,
            Err(e) => {
                self.b.release_cap(ds);
                return Err(e);
            }
        };
        let file = File::Rom(RomFile {
            name: name.into(),
            ds,
            size,
            window,
            pos: 0,
        });
        match self.fds.open(file, flags & O_CLOEXEC != 0) {
            Ok(fd) => Ok(fd),
            Err(e) => {
                self.close_window(window, size);
                Err(e)
            }
        }
    }

    fn close_window(&mut self, window: u64, size: u64) {
        let len = page_up(size).unwrap_or(PAGE).max(PAGE);
        self.detach(Space::Windows, window, window + len);
    }

    fn sys_close(&mut self, fd: u64) -> SysResult {
        if let File::Rom(f) = self.fds.close(fd)? {
            self.close_window(f.window, f.size);
        }
        Ok(0)
    }

    fn sys_lseek(&mut self, fd: u64, off: i64, whence: u64) -> SysResult {
        match &mut self.fds.get_mut(fd)?.file {
            File::Rom(f) => {
                f.pos = fd::seek(f.pos, f.size, off, whence)?;
                Ok(f.pos)
            }
            _ => Err(ESPIPE),
        }
    }

    fn stat_of(file: &File) -> Stat {
        match file {
            File::Rom(f) => Stat {
                dev: 0x4c34,
                ino: f.ds,
                mode: linux::S_IFREG | 0o444,
                nlink: 1,
                size: f.size,
                blksize: PAGE as u32,
                blocks: f.size.div_ceil(512),
                rdev: 0,
            },
            _ => Stat {
                dev: 0x4c35,
                ino: 1,
                mode: linux::S_IFCHR | 0o620,
                nlink: 1,
                size: 0,
                blksize: 1024,
                blocks: 0,
                rdev: 136 << 8,
            },
        }
    }

    fn put_stat(&mut self, st: &Stat, buf: u64, statx: bool) -> SysResult {
        if statx {
            self.write_user(buf, &st.to_statx())?;
        } else {
            self.write_user(buf, &st.to_bytes())?;
        }
        Ok(0)
    }

    fn sys_fstat(&mut self, fd: u64, buf: u64, statx: bool) -> SysResult {
        let st = Self::stat_of(&self.fds.get(fd)?.file);
        self.put_stat(&st, buf, statx)
    }

    fn sys_fstatat(
        &mut self,
        dirfd: i64,
        path: u64,
        buf: u64,
        flags: u64,
        statx: bool,
    ) -> SysResult {
        let p = self.read_cstr(path, 4096)?;
        if p.is_empty() {
            if flags & linux::AT_EMPTY_PATH == 0 {
                return Err(ENOENT);
            }
            return self.sys_fstat(dirfd as u64, buf, statx);
        }
        let trimmed = p.strip_prefix(b"./").unwrap_or(&p);
        let trimmed = trimmed.strip_prefix(b"/").unwrap_or(trimmed);
        if trimmed == b"rom" || trimmed == b"rom/" || trimmed.is_empty() || trimmed == b"." {
            let st = Stat {
                dev: 0x4c34,
                ino: 2,
                mode: linux::S_IFDIR | 0o555,
                nlink: 2,
                blksize: PAGE as u32,
                ..Default::default()
            };
            return self.put_stat(&st, buf, statx);
        }
        let name = fd::rom_name(&p).ok_or(ENOENT)?;
        let ds = self.b.rom_open(name)?;
        let size = self.b.ds_size(ds);
        self.b.release_cap(ds);
        let st = Self::stat_of(&File::Rom(RomFile {
            name: name.into(),
            ds,
            size: size?,
            window: 0,
            pos: 0,
        }));
        self.put_stat(&st, buf, statx)
    }

    fn sys_faccessat(&mut self, _dirfd: i64, path: u64, mode: u64) -> SysResult {
        let p = self.read_cstr(path, 4096)?;
        let name = fd::rom_name(&p).ok_or(ENOENT)?;
        let ds = self.b.rom_open(name)?;
        self.b.release_cap(ds);
        if mode & 2 != 0 { Err(EROFS) } else { Ok(0) }
    }

    fn sys_fcntl(&mut self, fd: u64, cmd: u64, arg: u64) -> SysResult {
        const F_DUPFD: u64 = 0;
        const F_GETFD: u64 = 1;
        const F_SETFD: u64 = 2;
        const F_GETFL: u64 = 3;
        const F_SETFL: u64 = 4;
        const F_DUPFD_CLOEXEC: u64 = 1030;
        let f = self.fds.get_mut(fd)?;
        match cmd {
            F_GETFD => Ok(f.cloexec as u64),
            F_SETFD => {
                f.cloexec = arg & 1 != 0;
                Ok(0)
            }
            F_GETFL => Ok(match f.file {
                File::Stdin | File::Stdout | File::Stderr => 2,
                File::Rom(_) => 0,
            }),
            F_SETFL => Ok(0),
            F_DUPFD | F_DUPFD_CLOEXEC => match f.file {
                File::Rom(_) => Err(EINVAL),
                ref other => {
                    let file = other.clone();
                    self.fds.open(file, cmd == F_DUPFD_CLOEXEC)
                }
            },
            _ => Err(EINVAL),
        }
    }

    fn sys_getcwd(&mut self, buf: u64, size: u64) -> SysResult {
        if size < 2 {
            return Err(ERANGE);
        }
        self.write_user(buf, b"/\0")?;
        Ok(2)
    }

    /// `Ok(Ok(n))`: ready now; `Ok(Err(deadline))`: the caller waits.
    fn sys_ppoll(
        &mut self,
        fds: u64,
        nfds: u64,
        tmo: u64,
    ) -> Result<Result<u64, Option<u64>>, i64> {
        if nfds > 1024 {
            return Err(EINVAL);
        }
        let timeout = if tmo == 0 {
            None
        } else {
            Some(self.read_timespec(tmo)?)
        };
        self.fill_stdin();
        let n = self.poll_eval(fds, nfds, timeout == Some(0))?;
        if n > 0 || timeout == Some(0) {
            return Ok(Ok(n as u64));
        }
        let now = self.b.now_ns();
        if self.poll_watches_stdin(fds, nfds)? {
            self.stdin_poll_at.get_or_insert(now + STDIN_POLL_NS);
        }
        Ok(Err(timeout.map(|t| now.saturating_add(t))))
    }

    fn poll_watches_stdin(&mut self, fds: u64, nfds: u64) -> Result<bool, i64> {
        for i in 0..nfds {
            let v = self.read_user(fds + 8 * i, 8)?;
            let fd = i32::from_le_bytes([v[0], v[1], v[2], v[3]]);
            if fd >= 0 && matches!(self.fds.get(fd as u64).map(|f| &f.file), Ok(File::Stdin)) {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// Fills in `revents`; writes them back if any is set or `always`.
    fn poll_eval(&mut self, fds: u64, nfds: u64, always: bool) -> Result<usize, i64> {
        use linux::poll::*;
        let len = (nfds * 8) as usize;
        let mut v = self.read_user(fds, len)?;
        let mut ready = 0;
        for e in v.chunks_mut(8) {
            let fd = i32::from_le_bytes([e[0], e[1], e[2], e[3]]);
            let events = u16::from_le_bytes([e[4], e[5]]);
            let rev = if fd < 0 {
                0
            } else {
                match self.fds.get(fd as u64).map(|f| &f.file) {
                    Err(_) => POLLNVAL,
                    Ok(File::Stdin) if !self.stdin.is_empty() => events & POLLIN,
                    Ok(File::Stdin) => 0,
                    Ok(File::Stdout | File::Stderr) => events & POLLOUT,
                    Ok(File::Rom(_)) => events & (POLLIN | POLLOUT),
                }
            };
            e[6..8].copy_from_slice(&rev.to_le_bytes());
            if rev != 0 {
                ready += 1;
            }
        }
        if ready > 0 || always {
            self.write_user(fds, &v)?;
        }
        Ok(ready)
    }

    // --- Threads -----------------------------------------------------------

    fn sys_clone(&mut self, slot: usize, regs: &ExcRegs, a: [u64; 6]) -> SysResult {
        use linux::clone_flags::*;
        let flags = a[0];
        let (sp, ptid, tls, ctid) = (a[1], a[2], a[3], a[4]);
        if flags & (VM | THREAD | SIGHAND) != (VM | THREAD | SIGHAND) {
            // fork, vfork and posix_spawn need a new task.
            return Err(ENOSYS);
        }
        if sp == 0 || !sp.is_multiple_of(16) {
            return Err(EINVAL);
        }
        let Some(new_slot) = (2..UTCB_SLOTS).find(|s| !self.threads.contains_key(s)) else {
            return Err(EAGAIN);
        };
        let tls = if flags & SETTLS != 0 {
            tls
        } else {
            regs.tpidrurw
        };
        let mut frame = [0u8; 16];
        frame[..8].copy_from_slice(&tls.to_le_bytes());
        frame[8..].copy_from_slice(&regs.pc.to_le_bytes());
        self.write_user(sp - 16, &frame)?;
        let tid = self.next_tid;
        if flags & PARENT_SETTID != 0 {
            self.write_user(ptid, &tid.to_le_bytes())?;
        }
        if flags & CHILD_SETTID != 0 {
            self.write_user(ctid, &tid.to_le_bytes())?;
        }
        let cpu = self.next_cpu();
        let cap = self
            .b
            .thread_create(utcb(new_slot), self.cfg.trampoline, sp, cpu)?;
        self.next_tid = self.next_tid.checked_add(1).unwrap_or(PID + 1);
        let sigmask = self.threads.get(&slot).map_or(0, |t| t.sigmask);
        self.threads.insert(
            new_slot,
            Thread {
                tid,
                cap,
                clear_tid: if flags & CHILD_CLEARTID != 0 { ctid } else { 0 },
                sigmask,
                altstack: Self::no_altstack(),
                name: [0; 16],
                blocked: None,
            },
        );
        Ok(tid as u64)
    }

    fn thread_exit(&mut self, slot: usize, code: i64) {
        let Some(t) = self.threads.remove(&slot) else {
            return;
        };
        self.futex.remove(t.tid);
        if t.clear_tid != 0 && self.write_user(t.clear_tid, &0u32.to_le_bytes()).is_ok() {
            for w in self.futex.wake(t.clear_tid, 1, u32::MAX) {
                if let Some(s) = self.slot_of(w) {
                    self.wake(s, Ok(0));
                }
            }
        }
        self.b.thread_delete(t.cap);
        if self.threads.is_empty() {
            self.exit_group(code & 0xff);
        }
    }

    fn sys_futex(&mut self, tid: u32, a: [u64; 6]) -> Result<Option<u64>, i64> {
        use linux::futex::*;
        let (uaddr, op, val, arg4, uaddr2, val3) =
            (a[0], a[1], a[2] as u32, a[3], a[4], a[5] as u32);
        let cmd = op & CMD_MASK;
        if !uaddr.is_multiple_of(4) {
            return Err(EINVAL);
        }
        match cmd {
            WAIT | WAIT_BITSET => {
                let bitset = if cmd == WAIT { u32::MAX } else { val3 };
                if bitset == 0 {
                    return Err(EINVAL);
                }
                let now = self.b.now_ns();
                let deadline = if arg4 == 0 {
                    None
                } else {
                    let t = self.read_timespec(arg4)?;
                    Some(if cmd == WAIT {
                        now.saturating_add(t)
                    } else {
                        t
                    })
                };
                if self.read_u32(uaddr)? != val {
                    return Err(EAGAIN);
                }
                if deadline.is_some_and(|d| d <= now) {
                    return Err(ETIMEDOUT);
                }
                self.futex.wait(uaddr, bitset, tid, deadline);
                Ok(None)
            }
            WAKE | WAKE_BITSET => {
                let bitset = if cmd == WAKE { u32::MAX } else { val3 };
                if bitset == 0 {
                    return Err(EINVAL);
                }
                let woken = self.futex.wake(uaddr, val.min(i32::MAX as u32), bitset);
                for w in &woken {
                    if let Some(s) = self.slot_of(*w) {
                        self.wake(s, Ok(0));
                    }
                }
                Ok(Some(woken.len() as u64))
            }
            REQUEUE | CMP_REQUEUE => {
                if !uaddr2.is_multiple_of(4) {
                    return Err(EINVAL);
                }
                if cmd == CMP_REQUEUE && self.read_u32(uaddr)? != val3 {
                    return Err(EAGAIN);
                }
                let n_move = (arg4 as u32).min(i32::MAX as u32);
                let (woken, moved) =
                    self.futex
                        .requeue(uaddr, uaddr2, val.min(i32::MAX as u32), n_move);
                for w in &woken {
                    if let Some(s) = self.slot_of(*w) {
                        self.wake(s, Ok(0));
                    }
                }
                Ok(Some(woken.len() as u64 + moved as u64))
            }
            _ => Err(ENOSYS),
        }
    }

    fn sleep(&mut self, slot: usize, regs: &ExcRegs, clk: u64, flags: u64, req: u64) -> Flow {
        let r: Result<Option<u64>, i64> = (|| {
            if !matches!(clk, clock::REALTIME | clock::MONOTONIC | clock::BOOTTIME) {
                return Err(EINVAL);
            }
            let t = self.read_timespec(req)?;
            let now = self.b.now_ns();
            let deadline = if flags & clock::TIMER_ABSTIME != 0 {
                t
            } else {
                now.saturating_add(t)
            };
            Ok((deadline > now).then_some(deadline))
        })();
        match r {
            Err(e) => Flow::Done(Err(e)),
            Ok(None) => Flow::Done(Ok(0)),
            Ok(Some(deadline)) => self.block(slot, regs, Wait::Sleep { deadline }),
        }
    }

    fn sys_clock_gettime(&mut self, clk: u64, tp: u64) -> SysResult {
        if clk > clock::BOOTTIME {
            return Err(EINVAL);
        }
        let now = self.b.now_ns();
        self.write_user(tp, &Timespec::from_ns(now).to_bytes())?;
        Ok(0)
    }

    fn sys_clock_getres(&mut self, clk: u64, res: u64) -> SysResult {
        if clk > clock::BOOTTIME {
            return Err(EINVAL);
        }
        if res != 0 {
            self.write_user(res, &Timespec::from_ns(1).to_bytes())?;
        }
        Ok(0)
    }

    fn sys_getaffinity(&mut self, _pid: u64, size: u64, mask: u64) -> SysResult {
        if size < 8 || !size.is_multiple_of(8) {
            return Err(EINVAL);
        }
        let cpus = if self.cfg.cpus == 0 { 1 } else { self.cfg.cpus };
        self.write_user(mask, &cpus.to_le_bytes())?;
        Ok(8)
    }

    // --- Signals -------------------------------------------------------------

    fn sys_kill(&mut self, target_exists: bool, signal: u64) -> SysResult {
        if !target_exists {
            return Err(ESRCH);
        }
        if signal == 0 {
            return Ok(0);
        }
        if signal > sig::NSIG as u64 {
            return Err(EINVAL);
        }
        let handler = self.sigactions[signal as usize - 1][0];
        let ignored = handler == sig::SIG_IGN
            || (handler == sig::SIG_DFL && sig::DEFAULT_IGNORED & (1 << (signal - 1)) != 0);
        if ignored {
            return Ok(0);
        }
        let s = signal as i64;
        if handler != sig::SIG_DFL {
            self.report(&format!(
                "signal {s} has a handler, but signals cannot be delivered; ending"
            ));
        }
        self.report(&format!("killed by signal {s} ({})", signame(s)));
        self.exit_group(-s);
        Ok(0)
    }

    fn sys_sigaction(&mut self, signal: u64, act: u64, oact: u64, size: u64) -> SysResult {
        if size != 8 || signal == 0 || signal > sig::NSIG as u64 {
            return Err(EINVAL);
        }
        let i = signal as usize - 1;
        if act != 0 && (signal as i64 == sig::SIGKILL || signal as i64 == sig::SIGSTOP) {
            return Err(EINVAL);
        }
        let new = if act != 0 {
            let v = self.read_user(act, 32)?;
            let mut w = [0u64; 4];
            for (k, c) in v.chunks(8).enumerate() {
                w[k] = u64::from_le_bytes(c.try_into().unwrap_or([0; 8]));
            }
            Some(w)
        } else {
            None
        };
        if oact != 0 {
            let mut b = [0u8; 32];
            for (k, w) in self.sigactions[i].iter().enumerate() {
                b[k * 8..k * 8 + 8].copy_from_slice(&w.to_le_bytes());
            }
            self.write_user(oact, &b)?;
        }
        if let Some(w) = new {
            self.sigactions[i] = w;
        }
        Ok(0)
    }

    fn sys_sigprocmask(
        &mut self,
        slot: usize,
        how: u64,
        set: u64,
        oset: u64,
        size: u64,
    ) -> SysResult {
        if size != 8 {
            return Err(EINVAL);
        }
        let old = self.threads.get(&slot).map_or(0, |t| t.sigmask);
        let new = if set != 0 {
            let s = self.read_u64(set)?;
            let unblockable = (1u64 << (sig::SIGKILL - 1)) | (1 << (sig::SIGSTOP - 1));
            Some(
                match how {
                    0 => old | s,
                    1 => old & !s,
                    2 => s,
                    _ => return Err(EINVAL),
                } & !unblockable,
            )
        } else {
            None
        };
        if oset != 0 {
            self.write_user(oset, &old.to_le_bytes())?;
        }
        if let (Some(n), Some(t)) = (new, self.threads.get_mut(&slot)) {
            t.sigmask = n;
        }
        Ok(0)
    }

    fn sys_sigaltstack(&mut self, slot: usize, ss: u64, old: u64) -> SysResult {
        let cur = self
            .threads
            .get(&slot)
            .map_or(Self::no_altstack(), |t| t.altstack);
        let new = if ss != 0 {
            let v = self.read_user(ss, 24)?;
            let flags = u32::from_le_bytes([v[8], v[9], v[10], v[11]]);
            let size = u64::from_le_bytes(v[16..24].try_into().unwrap_or([0; 8]));
            if flags & !sig::SS_DISABLE != 0 {
                return Err(EINVAL);
            }
            if flags & sig::SS_DISABLE == 0 && size < 2048 {
                return Err(ENOMEM);
            }
            let mut a = [0u8; 24];
            a.copy_from_slice(&v);
            Some(a)
        } else {
            None
        };
        if old != 0 {
            self.write_user(old, &cur)?;
        }
        if let (Some(a), Some(t)) = (new, self.threads.get_mut(&slot)) {
            t.altstack = a;
        }
        Ok(0)
    }

    fn sys_prctl(&mut self, slot: usize, op: u64, arg: u64) -> SysResult {
        const PR_SET_NAME: u64 = 15;
        const PR_GET_NAME: u64 = 16;
        match op {
            PR_SET_NAME => {
                let n = self.read_cstr(arg, 4096)?;
                if let Some(t) = self.threads.get_mut(&slot) {
                    let k = n.len().min(15);
                    t.name = [0; 16];
                    t.name[..k].copy_from_slice(&n[..k]);
                }
                Ok(0)
            }
            PR_GET_NAME => {
                let name = self.threads.get(&slot).map_or([0; 16], |t| t.name);
                self.write_user(arg, &name)?;
                Ok(0)
            }
            _ => Err(EINVAL),
        }
    }

    // --- Memory --------------------------------------------------------------

    fn sys_brk(&mut self, addr: u64) -> u64 {
        if addr < self.brk_start || addr > self.brk_start + BRK_MAX {
            return self.brk_cur;
        }
        let Some(top) = page_up(addr) else {
            return self.brk_cur;
        };
        if top > self.brk_end {
            let end = top
                .next_multiple_of(BRK_CHUNK)
                .min(self.brk_start + BRK_MAX);
            let r = Region::new(
                self.brk_end,
                end,
                Prot::RW,
                Backing::Anon {
                    ds: None,
                    offset: 0,
                },
                Kind::Brk,
            );
            if self.attach(Space::Program, r).is_err() {
                return self.brk_cur;
            }
            self.brk_end = end;
        } else if top < self.brk_end && top < page_up(self.brk_cur).unwrap_or(top) {
            // Shrinking: give the memory back; growing again gives zeros.
            self.detach(Space::Program, top, self.brk_end);
            self.brk_end = top;
        }
        self.brk_cur = addr;
        addr
    }

    fn touches_runtime(&self, start: u64, end: u64) -> bool {
        end > USER_END
            || start < PROGRAM_MIN
            || self
                .regions
                .intersecting(start, end)
                .iter()
                .any(|r| r.kind == Kind::Runtime)
    }

    fn sys_mmap(
        &mut self,
        addr: u64,
        len: u64,
        prot: u64,
        flags: u64,
        fd: i64,
        off: u64,
    ) -> SysResult {
        if len == 0 || !off.is_multiple_of(PAGE) {
            return Err(EINVAL);
        }
        let len = page_up(len).ok_or(ENOMEM)?;
        if !matches!(flags & 3, 1..=3) {
            return Err(EINVAL);
        }
        let p = Prot::from_linux(prot);
        let backing = if flags & mman::MAP_ANONYMOUS != 0 {
            Backing::Anon {
                ds: None,
                offset: 0,
            }
        } else {
            let f = match &self.fds.get(fd as u64)?.file {
                File::Rom(f) => f.clone(),
                _ => return Err(ENODEV),
            };
            if p.write() {
                if flags & mman::MAP_SHARED != 0 {
                    return Err(EACCES);
                }
                // A private writable copy is made below.
                Backing::Anon {
                    ds: None,
                    offset: 0,
                }
            } else {
                Backing::Ds {
                    ds: f.ds,
                    offset: off,
                }
            }
        };
        let fixed = flags & (mman::MAP_FIXED | mman::MAP_FIXED_NOREPLACE) != 0;
        let start = if fixed {
            if !addr.is_multiple_of(PAGE) {
                return Err(EINVAL);
            }
            let end = addr.checked_add(len).ok_or(ENOMEM)?;
            if self.touches_runtime(addr, end) {
                return Err(if addr < PROGRAM_MIN { EPERM } else { ENOMEM });
            }
            if self.regions.overlaps(addr, end) {
                if flags & mman::MAP_FIXED_NOREPLACE != 0 {
                    return Err(EEXIST);
                }
                self.detach(Space::Program, addr, end);
            }
            addr
        } else {
            let hint_ok = addr != 0
                && addr.is_multiple_of(PAGE)
                && addr.checked_add(len).is_some_and(|e| {
                    addr >= PROGRAM_MIN && e <= MMAP_END && !self.regions.overlaps(addr, e)
                });
            if hint_ok {
                addr
            } else {
                let align = if len >= 1 << 21 {
                    1 << 21
                } else if len >= 1 << 16 {
                    1 << 16
                } else {
                    PAGE
                };
                self.regions
                    .find_free(len, MMAP_BASE, MMAP_END, align)
                    .ok_or(ENOMEM)?
            }
        };
        self.attach(
            Space::Program,
            Region::new(start, start + len, p, backing, Kind::Mmap),
        )?;
        if flags & mman::MAP_ANONYMOUS == 0 && p.write() {
            // Private writable file mapping: copy the file in.
            let f = match &self.fds.get(fd as u64)?.file {
                File::Rom(f) => f.clone(),
                _ => return Err(ENODEV),
            };
            let n = f.size.saturating_sub(off).min(len);
            let r = (|| {
                self.ensure(Space::Windows, f.window + off, n, false)?;
                self.ensure(Space::Program, start, n, true)?;
                self.b.copy_mem(start, f.window + off, n);
                Ok(())
            })();
            if let Err(e) = r {
                self.detach(Space::Program, start, start + len);
                return Err(e);
            }
        }
        Ok(start)
    }

    fn sys_munmap(&mut self, addr: u64, len: u64) -> SysResult {
        if !addr.is_multiple_of(PAGE) || len == 0 {
            return Err(EINVAL);
        }
        let end = addr
            .checked_add(page_up(len).ok_or(EINVAL)?)
            .ok_or(EINVAL)?;
        if self.touches_runtime(addr, end) {
            return Err(EINVAL);
        }
        self.detach(Space::Program, addr, end);
        Ok(0)
    }

    fn sys_mremap(&mut self, old: u64, old_len: u64) -> SysResult {
        // Not moving or growing mappings: EFAULT where nothing is mapped
        // (musl's stack probing relies on it), else ENOMEM (callers then
        // allocate and copy).
        let end = old.checked_add(old_len.max(1)).ok_or(EFAULT)?;
        if !old.is_multiple_of(PAGE) {
            return Err(EINVAL);
        }
        if !self.regions.covers(old, end) || self.touches_runtime(old, end) {
            return Err(EFAULT);
        }
        Err(ENOMEM)
    }

    fn sys_mprotect(&mut self, addr: u64, len: u64, prot: u64) -> SysResult {
        if !addr.is_multiple_of(PAGE) {
            return Err(EINVAL);
        }
        if len == 0 {
            return Ok(0);
        }
        let end = addr
            .checked_add(page_up(len).ok_or(ENOMEM)?)
            .ok_or(ENOMEM)?;
        if self.touches_runtime(addr, end) {
            return Err(ENOMEM);
        }
        let p = Prot::from_linux(prot);
        self.regions
            .protect(addr, end, p, &mut self.refs)
            .map_err(|_| ENOMEM)?;
        // Mapped pages keep their old rights until unmapped; the next
        // touch maps them with the new ones.
        self.unmap_range(addr, end);
        Ok(0)
    }

    fn sys_madvise(&mut self, addr: u64, len: u64, advice: u64) -> SysResult {
        const MADV_DONTNEED: u64 = 4;
        if !addr.is_multiple_of(PAGE) {
            return Err(EINVAL);
        }
        if advice != MADV_DONTNEED || len == 0 {
            return Ok(0);
        }
        let end = addr
            .checked_add(page_up(len).ok_or(EINVAL)?)
            .ok_or(EINVAL)?;
        if self.touches_runtime(addr, end) {
            return Err(EINVAL);
        }
        // Anonymous memory reads as zeros afterwards: its pieces in the
        // range get fresh (lazily created) memory.
        for r in self.regions.intersecting(addr, end) {
            if let Backing::Anon { ds: Some(_), .. } = r.backing {
                let s = addr.max(r.start);
                let e = end.min(r.end);
                self.detach(Space::Program, s, e);
                let fresh = Backing::Anon {
                    ds: None,
                    offset: 0,
                };
                self.attach(Space::Program, Region::new(s, e, r.prot, fresh, r.kind))?;
            }
        }
        Ok(0)
    }

    fn sys_prlimit(&mut self, pid: u64, res: u64, old: u64) -> SysResult {
        const RLIMIT_STACK: u64 = 3;
        const RLIMIT_NOFILE: u64 = 7;
        if pid != 0 && pid != PID as u64 {
            return Err(ESRCH);
        }
        if res > 15 {
            return Err(EINVAL);
        }
        if old != 0 {
            let (cur, max) = match res {
                RLIMIT_STACK => (l4re_env::PROGRAM_STACK_SIZE, u64::MAX),
                RLIMIT_NOFILE => (fd::MAX_FDS as u64, fd::MAX_FDS as u64),
                _ => (u64::MAX, u64::MAX),
            };
            let mut b = [0u8; 16];
            b[..8].copy_from_slice(&cur.to_le_bytes());
            b[8..].copy_from_slice(&max.to_le_bytes());
            self.write_user(old, &b)?;
        }
        Ok(0)
    }

    fn sys_getrandom(&mut self, buf: u64, len: u64) -> SysResult {
        let n = (len as usize).min(IO_MAX);
        let mut v = vec![0u8; n];
        for c in v.chunks_mut(8) {
            let r = self.random().to_le_bytes();
            c.copy_from_slice(&r[..c.len()]);
        }
        self.write_user(buf, &v)?;
        Ok(n as u64)
    }
}
