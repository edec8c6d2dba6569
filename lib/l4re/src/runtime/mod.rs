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
//! # Where things are
//!
//! This module holds the [`Runtime`] state, the [`Backend`] it works
//! through and what it answers; each concern has its module:
//!
//! * `memory`: regions, on-demand mapping, program memory access;
//! * `load`: loading the program and starting its main thread;
//! * `faults`: page faults and exceptions;
//! * `syscall`: the system-call switch, tracing;
//! * `thread`: threads, `clone`, exit, waiting and waking;
//! * `time`: clocks, sleeps, timeouts ([`Runtime::tick`]);
//! * `futex`: the `futex` call;
//! * `io`: standard input and output, `ppoll`;
//! * `fs`: `rom/` files and descriptors;
//! * `signal`: signal actions, masks, `kill`;
//! * `mmap`: `brk`, `mmap` and the other memory calls;
//! * `process`: CPUs, limits, random numbers;
//! * `l4re_calls`: the runtime's own calls ([`crate::linux::l4re_sys`]).

use alloc::collections::{BTreeMap, BTreeSet, VecDeque};
use alloc::format;
use alloc::string::String;
use alloc::sync::Arc;
use alloc::vec::Vec;

use l4_abi::fault::ExcRegs;

use crate::fd::{self, FdTable};
use crate::futex::FutexTable;
use crate::linux::sig;
use crate::regions::{DsRefs, PageSet, Prot, RegionMap};

mod faults;
mod fs;
mod futex;
mod io;
mod l4re_calls;
mod load;
mod memory;
mod mmap;
mod process;
mod signal;
mod syscall;
mod thread;
mod time;

#[cfg(test)]
mod tests;

pub use faults::describe_esr;
use memory::Space;
use syscall::Flow;
use thread::{Thread, Wait};

/// Most bytes one log write message carries.
pub const LOG_MAX: usize = l4_abi::proto::vcon::WRITE_MAX;
/// Most bytes one `write`/`read` moves (short counts beyond).
pub const IO_MAX: usize = 1 << 20;
/// How often blocked readers of the log poll for input (ns), when the log
/// cannot signal it ([`Backend::stdin_irq`]).
pub const STDIN_POLL_NS: u64 = 20_000_000;
/// Label of the Irq message that says the log has input
/// ([`Backend::stdin_irq`]; the low two bits clear, as Fiasco's labels).
pub const STDIN_IRQ_LABEL: u64 = 0x5354_4400;
/// The process id (also the main thread's id).
pub const PID: u32 = 1;
/// Largest window the runtime offers a dataspace for one mapping.
pub const MAX_WINDOW_ORDER: u8 = 21;

/// What the runtime needs from the kernel and the services.
pub trait Backend {
    /// A new zero-filled dataspace of `size` bytes; its capability.
    /// `dense`: memory that is likely used in full, which may come in
    /// super pages (a sparse one, like the main stack, comes in small
    /// blocks).
    fn ds_alloc(&mut self, size: u64, dense: bool) -> Result<u64, i64>;
    /// Maps part of a dataspace into the task as `m` says. Returns where
    /// the mapping landed (base, log2 size); it must contain `m.spot`.
    fn ds_map(&mut self, m: DsMap) -> Result<(u64, u8), i64>;
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
    /// Has the log signal its input to the runtime's thread (an Irq
    /// message with [`STDIN_IRQ_LABEL`]) so that waiting readers need not
    /// poll; whether it will. Asked once, when a reader first waits.
    fn stdin_irq(&mut self) -> bool {
        false
    }
    /// Lets the log signal input again (after the runtime took what was
    /// there and a reader waits): input already waiting signals at once.
    fn stdin_unmask(&mut self) {}
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

/// What [`Backend::ds_map`] maps: the page at `offset` of dataspace `ds`
/// for the address `spot`, into the receive window `window` (base, log2
/// size) around it, with rights `prot`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DsMap {
    /// The dataspace's capability.
    pub ds: u64,
    /// The offset in the dataspace of the page for `spot`.
    pub offset: u64,
    /// The address the page is for.
    pub spot: u64,
    /// The receive window around `spot`: base and log2 size.
    pub window: (u64, u8),
    /// The rights of the mapping.
    pub prot: Prot,
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
    /// Report, before the program's first output, what its start cost
    /// ([`Startup`]).
    pub startup_report: bool,
    /// The CPU features the program may use: its `AT_HWCAP`.
    pub cpu_id: l4_abi::cpuid::CpuId,
}

/// What starting the program cost until its first output: the runtime's
/// clock (ns since the machine started) when the runtime began, the page
/// faults it resolved and the mappings it asked dataspaces for (with the
/// bytes they brought), the system calls it served, the anonymous
/// dataspaces it created and the time it spent serving the program.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Startup {
    /// When the runtime was created.
    pub began_ns: u64,
    /// Page faults of program threads.
    pub faults: u64,
    /// Dataspace map requests (faults and the runtime's own accesses).
    pub maps: u64,
    /// Bytes those requests mapped.
    pub mapped: u64,
    /// System calls served.
    pub syscalls: u64,
    /// Anonymous dataspaces created.
    pub dataspaces: u64,
    /// Time spent serving faults and system calls (ns).
    pub serving_ns: u64,
    /// Whether the program has written output yet.
    pub reported: bool,
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

/// What to do after a page fault.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PfAction {
    /// Reply (empty): the thread retries.
    Retry,
    /// The task is over.
    Exit,
}

/// The runtime of one task.
pub struct Runtime<B: Backend> {
    /// The backend.
    pub b: B,
    cfg: Config,
    /// `argv[0]`, for reports.
    name: String,
    // Memory (`memory`, `mmap`).
    /// The program's regions.
    regions: RegionMap,
    /// The runtime's windows onto files.
    windows: RegionMap,
    /// How many regions use each dataspace.
    refs: DsRefs,
    /// The pages mapped into the task (of either map).
    mapped: PageSet,
    /// The heap: where it starts, the program's break, where the regions
    /// backing it end.
    brk_start: u64,
    brk_cur: u64,
    brk_end: u64,
    // Threads (`thread`, `futex`, `time`).
    /// By UTCB slot.
    threads: BTreeMap<usize, Thread>,
    /// UTCB slots the program reserved (`l4re_calls`): no thread's.
    utcb_reserved: BTreeSet<usize>,
    /// The id the next `clone` gives.
    next_tid: u32,
    /// Threads started so far (spreads them over the CPUs).
    spawned: u32,
    futex: FutexTable,
    /// Deferred replies to waiting threads, for the serve loop to send.
    wakeups: Vec<(u64, ExcRegs)>,
    // Files and input (`fs`, `io`).
    fds: FdTable,
    /// Log input read but not yet consumed.
    stdin: VecDeque<u8>,
    /// When to poll the log for waiting readers next.
    stdin_poll_at: Option<u64>,
    /// Whether the log signals input ([`Backend::stdin_irq`]; `None`
    /// until a reader first waits).
    stdin_irq: Option<bool>,
    // Signals (`signal`): each signal's `sigaction`.
    sigactions: [[u64; 4]; sig::NSIG],
    /// State of the random numbers (`process`).
    rng: u64,
    /// System-call numbers already reported as unknown.
    unknown: BTreeSet<u64>,
    /// The last faulting page and how often it faulted in a row since it
    /// was last unmapped.
    last_fault: (u64, u32),
    /// Where small anonymous mappings get their memory ([`mmap`]).
    pool: Option<mmap::Pool>,
    /// The cost of the start so far.
    startup: Startup,
    /// The auxiliary vector the program started with, as
    /// `/proc/self/auxv` reads it (pairs of words, `AT_NULL` last).
    auxv: Arc<[u8]>,
    exited: bool,
}

/// Why loading the program failed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LoadError(pub String);

impl<B: Backend> Runtime<B> {
    /// A runtime for the program described by `cfg`; [`Runtime::load`]
    /// starts it.
    pub fn new(mut b: B, cfg: Config) -> Runtime<B> {
        let name = cfg
            .args
            .first()
            .cloned()
            .unwrap_or_else(|| String::from("program"));
        let began_ns = b.now_ns();
        let seed = b.entropy() ^ began_ns.rotate_left(32) ^ 0x9e37_79b9_7f4a_7c15;
        Runtime {
            b,
            cfg,
            name,
            regions: RegionMap::new(),
            windows: RegionMap::new(),
            refs: DsRefs::new(),
            mapped: PageSet::new(),
            threads: BTreeMap::new(),
            utcb_reserved: BTreeSet::new(),
            next_tid: PID,
            spawned: 0,
            futex: FutexTable::new(),
            fds: FdTable::new(),
            stdin: VecDeque::new(),
            stdin_poll_at: None,
            stdin_irq: None,
            brk_start: 0,
            brk_cur: 0,
            brk_end: 0,
            sigactions: [[0; 4]; sig::NSIG],
            rng: seed | 1,
            unknown: BTreeSet::new(),
            wakeups: Vec::new(),
            auxv: Arc::from([]),
            last_fault: (u64::MAX, 0),
            pool: None,
            startup: Startup {
                began_ns,
                ..Startup::default()
            },
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

    /// What the start has cost so far.
    pub fn startup(&self) -> Startup {
        self.startup
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

    /// Program output: the log, after the start-up report when asked.
    pub(super) fn output(&mut self, data: &[u8]) {
        if !data.is_empty() && !self.startup.reported {
            self.startup.reported = true;
            if self.cfg.startup_report {
                let s = self.startup;
                let ms = |ns: u64| format!("{}.{:03}", ns / 1_000_000, ns / 1_000 % 1_000);
                let now = self.b.now_ns();
                self.report(&format!(
                    "first output at {} ms: runtime began at {} ms, {} page faults, {} mappings ({} KiB), {} system calls, {} dataspaces, {} ms serving",
                    ms(now),
                    ms(s.began_ns),
                    s.faults,
                    s.maps,
                    s.mapped / 1024,
                    s.syscalls,
                    s.dataspaces,
                    ms(s.serving_ns)
                ));
            }
        }
        self.log(data);
    }

    pub(super) fn log(&mut self, data: &[u8]) {
        for c in fd::log_chunks(data, LOG_MAX) {
            self.b.log_write(c);
        }
    }

    pub(super) fn random(&mut self) -> u64 {
        // xorshift64*, stirred with the clock.
        self.rng ^= self.b.now_ns();
        self.rng ^= self.rng >> 12;
        self.rng ^= self.rng << 25;
        self.rng ^= self.rng >> 27;
        self.rng.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
}
