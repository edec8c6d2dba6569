//! The runtime against a fake backend: a program is loaded, threads make
//! system calls and faults, and the fake checks that the runtime only
//! touches memory it mapped (as the real runtime must: it cannot take page
//! faults on the program's memory itself).

use std::collections::{BTreeMap, VecDeque};
use std::string::String;
use std::vec::Vec;

use l4_abi::fault::{ExcRegs, PageFault};

use crate::layout::*;
use crate::linux::errno::*;
use crate::linux::{Timespec, auxv, futex as fx, mman};
use crate::regions::{Kind, PAGE, Prot};
use crate::runtime::*;
use crate::stack;
use l4_loader::elf::build;
use l4_loader::elf::{ET_DYN, PF_R, PF_W, PF_X, PT_PHDR};

mod faults;
mod fs;
mod io;
mod l4re_calls;
mod load;
mod mmap;
mod signal;
mod thread;
mod time;

const TRAMPOLINE: u64 = 0x7f00_0000_1000;
const PROGRAM: u64 = 10;

#[derive(Default)]
struct Fake {
    dss: BTreeMap<u64, Vec<u8>>,
    next_cap: u64,
    /// VA page -> (ds, offset of the page, rights).
    pages: BTreeMap<u64, (u64, u64, Prot)>,
    /// Largest mapping the fake "moe" hands out.
    max_order: u8,
    log: Vec<u8>,
    input: VecDeque<u8>,
    /// Whether the log signals input (an Irq), how often the runtime
    /// asked for that and how often it unmasked.
    input_irq: bool,
    irq_asked: u32,
    unmasks: u32,
    roms: BTreeMap<String, Vec<u8>>,
    threads: BTreeMap<u64, (u64, u64, u64, u32)>,
    deleted: Vec<u64>,
    released: Vec<u64>,
    now: u64,
    exit: Option<i64>,
}

impl Fake {
    fn new(program: Vec<u8>) -> Fake {
        let mut f = Fake {
            next_cap: 0x100,
            max_order: 16,
            now: 1_000_000,
            ..Default::default()
        };
        f.dss.insert(PROGRAM, program);
        f.roms.insert(
            "stdtest.txt".into(),
            b"hello from rom\nsecond line\n".to_vec(),
        );
        f
    }

    fn page(&self, addr: u64, write: bool) -> (u64, usize) {
        let (ds, off, prot) = *self
            .pages
            .get(&(addr & !(PAGE - 1)))
            .unwrap_or_else(|| panic!("runtime touched unmapped memory at {addr:#x}"));
        assert!(
            !write || prot.write(),
            "runtime wrote read-only memory at {addr:#x}"
        );
        (ds, (off + addr % PAGE) as usize)
    }

    /// A program access: the page must be mapped with the rights.
    fn prog_read(&self, addr: u64, len: usize) -> Vec<u8> {
        (0..len as u64)
            .map(|i| {
                let (ds, o) = self.page(addr + i, false);
                self.dss[&ds][o]
            })
            .collect()
    }

    fn prog_write(&mut self, addr: u64, data: &[u8]) {
        for (i, b) in data.iter().enumerate() {
            let (ds, o) = self.page(addr + i as u64, true);
            self.dss.get_mut(&ds).unwrap()[o] = *b;
        }
    }

    fn log_text(&self) -> String {
        String::from_utf8_lossy(&self.log).into_owned()
    }
}

impl Backend for Fake {
    fn ds_alloc(&mut self, size: u64, _dense: bool) -> Result<u64, i64> {
        let cap = self.next_cap;
        self.next_cap += 1;
        self.dss.insert(cap, vec![0; size as usize]);
        Ok(cap)
    }

    fn ds_map(&mut self, m: DsMap) -> Result<(u64, u8), i64> {
        let size = self.dss.get(&m.ds).ok_or(EINVAL)?.len() as u64;
        assert_eq!(m.offset % PAGE, 0);
        let (win_base, win_order) = m.window;
        assert!(m.spot >= win_base && m.spot < win_base + (1 << win_order));
        let order = win_order.min(self.max_order);
        let base = m.spot & !((1u64 << order) - 1);
        let first = m.offset - ((m.spot & !(PAGE - 1)) - base);
        for p in 0..(1u64 << order) / PAGE {
            let o = first + p * PAGE;
            if o < size {
                self.pages.insert(base + p * PAGE, (m.ds, o, m.prot));
            }
        }
        if m.offset >= size.next_multiple_of(PAGE) {
            return Err(ERANGE);
        }
        Ok((base, order))
    }

    fn ds_size(&mut self, ds: u64) -> Result<u64, i64> {
        self.dss.get(&ds).map(|d| d.len() as u64).ok_or(EINVAL)
    }

    fn unmap(&mut self, start: u64, end: u64) {
        let keys: Vec<u64> = self.pages.range(start..end).map(|(k, _)| *k).collect();
        for k in keys {
            self.pages.remove(&k);
        }
    }

    fn release_cap(&mut self, cap: u64) {
        self.released.push(cap);
    }

    fn read_mem(&mut self, addr: u64, buf: &mut [u8]) {
        let v = self.prog_read(addr, buf.len());
        buf.copy_from_slice(&v);
    }

    fn write_mem(&mut self, addr: u64, data: &[u8]) {
        self.prog_write(addr, data);
    }

    fn log_write(&mut self, data: &[u8]) {
        assert!(data.len() <= LOG_MAX);
        self.log.extend_from_slice(data);
    }

    fn log_read(&mut self, buf: &mut [u8]) -> usize {
        let n = buf.len().min(self.input.len());
        for b in buf.iter_mut().take(n) {
            *b = self.input.pop_front().unwrap();
        }
        n
    }

    fn stdin_irq(&mut self) -> bool {
        self.irq_asked += 1;
        self.input_irq
    }

    fn stdin_unmask(&mut self) {
        self.unmasks += 1;
    }

    fn rom_open(&mut self, name: &str) -> Result<u64, i64> {
        let data = self.roms.get(name).ok_or(ENOENT)?.clone();
        let cap = self.next_cap;
        self.next_cap += 1;
        self.dss.insert(cap, data);
        Ok(cap)
    }

    fn thread_create(&mut self, utcb: u64, pc: u64, sp: u64, cpu: u32) -> Result<u64, i64> {
        let cap = self.next_cap;
        self.next_cap += 1;
        self.threads.insert(cap, (utcb, pc, sp, cpu));
        Ok(cap)
    }

    fn thread_delete(&mut self, cap: u64) {
        assert!(self.threads.remove(&cap).is_some());
        self.deleted.push(cap);
    }

    fn now_ns(&mut self) -> u64 {
        self.now
    }

    fn entropy(&mut self) -> u64 {
        42
    }

    fn parent_exit(&mut self, code: i64) {
        assert!(self.exit.is_none(), "exit signalled twice");
        self.exit = Some(code);
    }
}

fn program() -> Vec<u8> {
    build::program(
        ET_DYN,
        0x1100,
        &[
            (0, 0x1800, 0, 0x1800, PF_R | PF_X),
            (0x12000, 0x3000, 0x2000, 0x800, PF_R | PF_W),
        ],
    )
}

/// How the tests' loader starts the program.
fn config() -> Config {
    Config {
        args: vec!["rom/prog".into(), "arg1".into()],
        envs: vec!["A=b".into()],
        program_ds: PROGRAM,
        trampoline: TRAMPOLINE,
        cpus: 0b1111,
        ..Default::default()
    }
}

/// The runtime for `cfg`, with the program loaded.
fn runtime_with(cfg: Config) -> Runtime<Fake> {
    let mut rt = Runtime::new(Fake::new(program()), cfg);
    rt.load().unwrap();
    rt
}

fn runtime() -> Runtime<Fake> {
    runtime_with(config())
}

/// A Linux system call of the thread in UTCB slot `slot`.
fn sys(rt: &mut Runtime<Fake>, slot: usize, nr: u64, args: &[u64]) -> Action {
    let mut r = ExcRegs {
        err: 0x15 << 26,
        pc: 0x40_1234,
        sp: 0x7ffd_ffff_0000,
        tpidruro: utcb(slot),
        tpidrurw: 0x5555,
        ..Default::default()
    };
    r.x[8] = nr;
    r.x[..args.len()].copy_from_slice(args);
    rt.exception(r)
}

/// The `x0` of a system call that must reply at once.
fn call(rt: &mut Runtime<Fake>, slot: usize, nr: u64, args: &[u64]) -> i64 {
    match sys(rt, slot, nr, args) {
        Action::Reply(r) => r.x[0] as i64,
        other => panic!("system call {nr} did not reply: {other:?}"),
    }
}

/// A data fault of the program at `addr` (a write if `write`) by the
/// instruction at `pc`, as the kernel reports it: what the runtime does.
fn data_fault(rt: &mut Runtime<Fake>, addr: u64, write: bool, pc: u64) -> PfAction {
    let pf = PageFault {
        addr,
        write,
        exec: false,
        pc,
    };
    rt.page_fault(pf)
}

/// A program touch of `addr`: fault it in as the kernel would.
fn touch(rt: &mut Runtime<Fake>, addr: u64, write: bool) {
    let got = data_fault(rt, addr, write, 0x40_1000);
    assert_eq!(got, PfAction::Retry, "fault at {addr:#x}");
}

/// Anonymous memory for a test buffer, written with `data`.
fn buffer(rt: &mut Runtime<Fake>, data: &[u8]) -> u64 {
    let len = (data.len() as u64).max(1).next_multiple_of(PAGE);
    let a = call(rt, 1, 222, &[0, len, 3, 0x22, u64::MAX, 0]) as u64;
    for p in (a..a + len).step_by(PAGE as usize) {
        touch(rt, p, true);
    }
    rt.b.prog_write(a, data);
    a
}

const SYS_WRITE: u64 = 64;
const SYS_READ: u64 = 63;
