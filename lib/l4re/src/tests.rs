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
    fn ds_alloc(&mut self, size: u64) -> Result<u64, i64> {
        let cap = self.next_cap;
        self.next_cap += 1;
        self.dss.insert(cap, vec![0; size as usize]);
        Ok(cap)
    }

    fn ds_map(
        &mut self,
        ds: u64,
        offset: u64,
        spot: u64,
        window: (u64, u8),
        prot: Prot,
    ) -> Result<(u64, u8), i64> {
        let size = self.dss.get(&ds).ok_or(EINVAL)?.len() as u64;
        assert_eq!(offset % PAGE, 0);
        assert!(spot >= window.0 && spot < window.0 + (1 << window.1));
        let order = window.1.min(self.max_order);
        let base = spot & !((1u64 << order) - 1);
        let first = offset - ((spot & !(PAGE - 1)) - base);
        for p in 0..(1u64 << order) / PAGE {
            let o = first + p * PAGE;
            if o < size {
                self.pages.insert(base + p * PAGE, (ds, o, prot));
            }
        }
        if offset >= size.next_multiple_of(PAGE) {
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

fn runtime() -> Runtime<Fake> {
    let cfg = Config {
        args: vec!["rom/prog".into(), "arg1".into()],
        envs: vec!["A=b".into()],
        program_ds: PROGRAM,
        trampoline: TRAMPOLINE,
        cpus: 0b1111,
        trace: false,
    };
    let mut rt = Runtime::new(Fake::new(program()), cfg);
    rt.load().unwrap();
    rt
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

/// A program touch of `addr`: fault it in as the kernel would.
fn touch(rt: &mut Runtime<Fake>, addr: u64, write: bool) {
    let pf = PageFault {
        addr,
        write,
        exec: false,
        pc: 0x40_1000,
    };
    assert_eq!(rt.page_fault(pf), PfAction::Retry, "fault at {addr:#x}");
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

#[test]
fn loads_a_static_pie_with_a_linux_stack() {
    let rt = runtime();
    assert_eq!(rt.thread_count(), 1);
    let (&cap, &(u, pc, sp, cpu)) = rt.b.threads.iter().next().unwrap();
    assert_eq!((u, pc, cpu), (utcb(1), DYN_BASE + 0x1100, 0));
    assert!(cap >= 0x100);
    // Text straight from the file, data copied with its bss zeroed.
    let text = rt.regions().lookup(DYN_BASE).unwrap();
    assert_eq!((text.prot, text.kind), (Prot::RX, Kind::Image));
    let data = rt.regions().lookup(DYN_BASE + 0x12000).unwrap();
    assert_eq!(data.prot, Prot::RW);
    let file = program();
    assert_eq!(
        rt.b.prog_read(DYN_BASE + 0x12000, 0x800),
        file[0x2000..0x2800]
    );
    assert!(
        rt.b.prog_read(DYN_BASE + 0x12800, 0x800)
            .iter()
            .all(|&b| b == 0)
    );
    // The stack as Linux builds it.
    let top = l4re_env::PROGRAM_STACK_TOP;
    let bytes = rt.b.prog_read(sp, (top - sp) as usize);
    let st = stack::InitialStack { sp, bytes };
    let (argv, envp, aux) = stack::parse(&st).unwrap();
    assert_eq!(argv, [b"rom/prog".to_vec(), b"arg1".to_vec()]);
    assert_eq!(envp, [b"A=b".to_vec()]);
    let get = |t| aux.iter().find(|(k, _)| *k == t).unwrap().1;
    assert_eq!(get(auxv::AT_ENTRY), DYN_BASE + 0x1100);
    assert_eq!(get(auxv::AT_BASE), 0);
    assert_eq!(get(auxv::AT_PAGESZ), 4096);
    assert_eq!(get(auxv::AT_PHNUM), 3);
    assert_eq!(get(auxv::AT_L4RE_ENV), l4re_env::ENV_VA);
    // AT_PHDR points at the program headers in memory (the first is PT_PHDR).
    let mut rt = rt;
    let phdr = get(auxv::AT_PHDR);
    touch(&mut rt, phdr, false);
    assert_eq!(rt.b.prog_read(phdr, 4), PT_PHDR.to_le_bytes());
}

#[test]
fn refuses_a_bad_program() {
    let cfg = Config {
        args: vec!["rom/bad".into()],
        program_ds: PROGRAM,
        ..Default::default()
    };
    let mut rt = Runtime::new(Fake::new(b"#!/bin/sh\necho hi\n".repeat(10)), cfg);
    let e = rt.load().unwrap_err();
    assert!(e.0.contains("not an ELF"), "{e:?}");
}

#[test]
fn writes_go_to_the_log_and_unknown_calls_fail() {
    let mut rt = runtime();
    // A string in the program's read-only data that nobody touched yet.
    let s = DYN_BASE + 0x200;
    assert_eq!(call(&mut rt, 1, SYS_WRITE, &[1, s, 16]), 16);
    assert_eq!(rt.b.log, program()[0x200..0x210]);
    rt.b.log.clear();
    let b = buffer(&mut rt, b"stdtest: one\nstdtest: two\n");
    assert_eq!(call(&mut rt, 1, SYS_WRITE, &[2, b, 26]), 26);
    assert_eq!(rt.b.log_text(), "stdtest: one\nstdtest: two\n");
    // writev gathers.
    let iov = buffer(&mut rt, &[0; 32]);
    let mut v = Vec::new();
    for (a, l) in [(b, 13u64), (b + 13, 13)] {
        v.extend_from_slice(&a.to_le_bytes());
        v.extend_from_slice(&l.to_le_bytes());
    }
    rt.b.prog_write(iov, &v);
    rt.b.log.clear();
    assert_eq!(call(&mut rt, 1, 66, &[1, iov, 2]), 26);
    assert_eq!(rt.b.log_text(), "stdtest: one\nstdtest: two\n");
    // Bad descriptors and addresses.
    assert_eq!(call(&mut rt, 1, SYS_WRITE, &[0, b, 1]), -EBADF);
    assert_eq!(call(&mut rt, 1, SYS_WRITE, &[9, b, 1]), -EBADF);
    assert_eq!(call(&mut rt, 1, SYS_WRITE, &[1, 0x10, 1]), -EFAULT);
    assert_eq!(call(&mut rt, 1, SYS_WRITE, &[1, u64::MAX - 2, 8]), -EFAULT);
    // Unknown: ENOSYS, reported once.
    rt.b.log.clear();
    assert_eq!(call(&mut rt, 1, 999, &[]), -ENOSYS);
    assert_eq!(call(&mut rt, 1, 999, &[]), -ENOSYS);
    assert_eq!(rt.b.log_text().matches("system call 999").count(), 1);
    // Silent ENOSYS for calls std probes.
    rt.b.log.clear();
    assert_eq!(call(&mut rt, 1, 293, &[]), -ENOSYS);
    assert!(rt.b.log.is_empty());
    // Long output is split into messages without cutting lines.
    let long: Vec<u8> = (0..40)
        .flat_map(|i| format!("line {i:02} ........\n").into_bytes())
        .collect();
    let lb = buffer(&mut rt, &long);
    rt.b.log.clear();
    assert_eq!(
        call(&mut rt, 1, SYS_WRITE, &[1, lb, long.len() as u64]),
        long.len() as i64
    );
    assert_eq!(rt.b.log, long);
}

#[test]
fn brk_mmap_munmap_mprotect() {
    let mut rt = runtime();
    let start = call(&mut rt, 1, 214, &[0]) as u64;
    assert_eq!(start, DYN_BASE + 0x15000);
    assert_eq!(
        call(&mut rt, 1, 214, &[start + 0x3000]) as u64,
        start + 0x3000
    );
    touch(&mut rt, start + 0x2fff, true);
    rt.b.prog_write(start + 0x2000, b"heap");
    assert_eq!(
        call(&mut rt, 1, 214, &[start + 0x1000]) as u64,
        start + 0x1000
    );
    assert_eq!(
        call(&mut rt, 1, 214, &[start + 0x3000]) as u64,
        start + 0x3000
    );
    touch(&mut rt, start + 0x2000, false);
    assert_eq!(
        rt.b.prog_read(start + 0x2000, 4),
        [0; 4],
        "zero after shrink"
    );
    assert_eq!(
        call(&mut rt, 1, 214, &[1]) as u64,
        start + 0x3000,
        "refused"
    );
    assert_eq!(
        call(&mut rt, 1, 214, &[start + (2 << 30)]) as u64,
        start + 0x3000
    );

    // 64 MiB anonymous: a region, its dataspace created on first touch,
    // released by munmap.
    let len = 64 << 20;
    let a = call(&mut rt, 1, 222, &[0, len, 3, 0x22, u64::MAX, 0]) as u64;
    assert!(a >= MMAP_BASE && a.is_multiple_of(2 << 20));
    let caps_before = rt.b.dss.len();
    touch(&mut rt, a + len - 1, true);
    assert_eq!(rt.b.dss.len(), caps_before + 1);
    let ds = *rt.b.dss.keys().last().unwrap();
    assert_eq!(rt.b.dss[&ds].len() as u64, len);
    assert_eq!(call(&mut rt, 1, 215, &[a, len]), 0);
    assert_eq!(rt.b.released, [ds]);
    assert!(rt.b.pages.range(a..a + len).next().is_none(), "unmapped");
    assert!(rt.regions().lookup(a).is_none());

    // Hints, fixed mappings, refusals.
    let h = 0x20_0000_0000;
    assert_eq!(
        call(&mut rt, 1, 222, &[h, PAGE, 3, 0x22, u64::MAX, 0]) as u64,
        h
    );
    assert_eq!(
        call(
            &mut rt,
            1,
            222,
            &[h, PAGE, 3, 0x22 | mman::MAP_FIXED_NOREPLACE, u64::MAX, 0]
        ),
        -EEXIST
    );
    assert_eq!(
        call(&mut rt, 1, 222, &[h, PAGE, 1, 0x32, u64::MAX, 0]) as u64,
        h
    );
    assert_eq!(rt.regions().lookup(h).unwrap().prot, Prot::R);
    assert_eq!(
        call(&mut rt, 1, 222, &[0, 0, 3, 0x22, u64::MAX, 0]),
        -EINVAL
    );
    assert_eq!(
        call(&mut rt, 1, 222, &[0x1000, PAGE, 3, 0x32, u64::MAX, 0]),
        -EPERM
    );
    assert_eq!(
        call(
            &mut rt,
            1,
            222,
            &[l4re_env::RUNTIME_BASE, PAGE, 3, 0x32, u64::MAX, 0]
        ),
        -ENOMEM
    );
    assert_eq!(call(&mut rt, 1, 222, &[0, PAGE, 3, 0x02, 7, 0]), -EBADF);
    assert_eq!(call(&mut rt, 1, 215, &[l4re_env::UTCB_AREA, PAGE]), -EINVAL);
    assert_eq!(call(&mut rt, 1, 215, &[h + 1, PAGE]), -EINVAL);

    // mprotect: a guard page faults; the rest stays usable.
    let s = call(&mut rt, 1, 222, &[0, 4 * PAGE, 3, 0x22, u64::MAX, 0]) as u64;
    touch(&mut rt, s, true);
    assert_eq!(call(&mut rt, 1, 226, &[s, PAGE, 0]), 0);
    assert!(!rt.b.pages.contains_key(&s), "unmapped for the new rights");
    touch(&mut rt, s + PAGE, true);
    assert_eq!(call(&mut rt, 1, 226, &[s + 8 * PAGE, PAGE, 3]), -ENOMEM);
    // MADV_DONTNEED: zeros afterwards; MADV_FREE: nothing happens.
    rt.b.prog_write(s + PAGE, b"data");
    assert_eq!(call(&mut rt, 1, 233, &[s + PAGE, PAGE, 8]), 0);
    assert_eq!(rt.b.prog_read(s + PAGE, 4), b"data");
    assert_eq!(call(&mut rt, 1, 233, &[s + PAGE, PAGE, 4]), 0);
    touch(&mut rt, s + PAGE, false);
    assert_eq!(rt.b.prog_read(s + PAGE, 4), [0; 4]);
    assert_eq!(rt.regions().lookup(s + PAGE).unwrap().prot, Prot::RW);
    // mremap: EFAULT outside mappings (musl's stack probe), else ENOMEM.
    assert_eq!(call(&mut rt, 1, 216, &[s, PAGE, 2 * PAGE, 0]), -ENOMEM);
    assert_eq!(
        call(&mut rt, 1, 216, &[0x20000, PAGE, 2 * PAGE, 0]),
        -EFAULT
    );
    // The runtime itself refuses to read the guard page.
    assert_eq!(call(&mut rt, 1, SYS_WRITE, &[1, s, 1]), -EFAULT);
    rt.b.log.clear();
    let pf = PageFault {
        addr: s + 8,
        write: true,
        exec: false,
        pc: 0x40_1111,
    };
    assert_eq!(rt.page_fault(pf), PfAction::Exit);
    assert_eq!(rt.b.exit, Some(-11));
    let log = rt.b.log_text();
    assert!(
        log.contains(&format!(
            "l4re: rom/prog: unhandled page fault at {:#x} pc 0x401111 (write)",
            s + 8
        )),
        "{log}"
    );
    assert!(log.contains("is ---"), "{log}");
    assert!(rt.b.threads.is_empty(), "threads stopped");
    assert!(rt.exited());
}

#[test]
fn a_fault_outside_every_region_ends_the_task() {
    let mut rt = runtime();
    let pf = PageFault {
        addr: 0x10,
        write: true,
        exec: false,
        pc: DYN_BASE + 0x1100,
    };
    assert_eq!(rt.page_fault(pf), PfAction::Exit);
    assert_eq!(rt.b.exit, Some(-11));
    assert!(
        rt.b.log_text()
            .contains("l4re: rom/prog: unhandled page fault at 0x10 pc 0x401100 (write)")
    );
    // Later messages are ignored.
    assert_eq!(sys(&mut rt, 1, SYS_WRITE, &[1, 0, 0]), Action::Exit);
    // Writing to the text segment is refused too.
    let mut rt = runtime();
    let pf = PageFault {
        addr: DYN_BASE + 0x100,
        write: true,
        exec: false,
        pc: 0,
    };
    assert_eq!(rt.page_fault(pf), PfAction::Exit);
    assert!(rt.b.log_text().contains("is r-x"));
}

#[test]
fn other_exceptions_are_reported() {
    let mut rt = runtime();
    let r = ExcRegs {
        err: 0x0200_0000,
        pc: DYN_BASE + 0x1200,
        tpidruro: utcb(1),
        ..Default::default()
    };
    assert_eq!(rt.exception(r), Action::Exit);
    assert_eq!(rt.b.exit, Some(-4));
    let log = rt.b.log_text();
    assert!(log.contains("undefined instruction"), "{log}");
    assert!(log.contains("x30"), "{log}");
    assert!(log.contains("SIGILL"), "{log}");
    assert_eq!(describe_esr(0x3c << 26).1, 5);
    assert_eq!(describe_esr((0x24 << 26) | 0x21).1, 7);
}

#[test]
fn exit_group_reports_the_code() {
    let mut rt = runtime();
    assert_eq!(sys(&mut rt, 1, 94, &[3]), Action::Exit);
    assert_eq!(rt.b.exit, Some(3));
    assert!(rt.b.threads.is_empty());
    let mut rt = runtime();
    assert_eq!(sys(&mut rt, 1, 94, &[-1i64 as u64]), Action::Exit);
    assert_eq!(rt.b.exit, Some(255));
}

/// Creates a thread with `clone` as musl's pthread_create does; returns
/// (tid, its slot, its stack, the ptid/ctid word).
fn spawn(rt: &mut Runtime<Fake>) -> (u64, usize, u64, u64) {
    let stack = call(rt, 1, 222, &[0, 16 * PAGE, 3, 0x22, u64::MAX, 0]) as u64;
    let sp = stack + 16 * PAGE - 64;
    let word = buffer(rt, &[0xff; 8]);
    let flags = 0x7d0f00; // musl: VM|FS|FILES|SIGHAND|THREAD|SYSVSEM|SETTLS|PARENT_SETTID|CHILD_CLEARTID|DETACHED
    let threads_before: Vec<u64> = rt.b.threads.keys().copied().collect();
    let tid = call(rt, 1, 220, &[flags, sp, word, 0xabc0, word]) as u64;
    let (&cap, &(u, pc, tsp, _)) =
        rt.b.threads
            .iter()
            .find(|(c, _)| !threads_before.contains(c))
            .unwrap();
    assert_eq!((pc, tsp), (TRAMPOLINE, sp));
    let slot = utcb_slot(u).unwrap();
    assert!(slot >= 2 && cap >= 0x100);
    // The trampoline's frame: tls, then the pc after the parent's svc.
    let f = rt.b.prog_read(sp - 16, 16);
    assert_eq!(u64::from_le_bytes(f[..8].try_into().unwrap()), 0xabc0);
    assert_eq!(u64::from_le_bytes(f[8..].try_into().unwrap()), 0x40_1234);
    assert_eq!(
        rt.b.prog_read(word, 4),
        (tid as u32).to_le_bytes(),
        "PARENT_SETTID"
    );
    (tid, slot, sp, word)
}

#[test]
fn clone_futex_join() {
    let mut rt = runtime();
    let (tid, slot, _, word) = spawn(&mut rt);
    assert_eq!(tid, 2);
    assert_eq!(call(&mut rt, slot, 178, &[]), 2, "gettid");
    assert_eq!(call(&mut rt, 1, 178, &[]), 1);
    assert_eq!(call(&mut rt, slot, 172, &[]), 1, "getpid");
    let name = buffer(&mut rt, b"worker0\0");
    assert_eq!(call(&mut rt, slot, 167, &[15, name]), 0);
    assert_eq!(call(&mut rt, slot, 167, &[16, name + 16]), 0);
    assert_eq!(rt.b.prog_read(name + 16, 8), b"worker0\0");
    assert_eq!(call(&mut rt, slot, 167, &[1234, 0]), -EINVAL);
    // The main thread joins: waits on the tid word while it holds the tid.
    let op = fx::WAIT | fx::PRIVATE;
    assert_eq!(call(&mut rt, 1, 98, &[word, op, 99, 0, 0, 0]), -EAGAIN);
    assert_eq!(
        sys(&mut rt, 1, 98, &[word, op, tid, 0, 0, 0]),
        Action::NoReply
    );
    assert!(rt.take_wakeups().is_empty());
    // The thread exits: CHILD_CLEARTID clears the word and wakes the joiner.
    assert_eq!(sys(&mut rt, slot, 93, &[0]), Action::NoReply);
    assert_eq!(rt.b.prog_read(word, 4), [0; 4]);
    let w = rt.take_wakeups();
    assert_eq!(w.len(), 1);
    let main_cap = *rt.b.threads.keys().next().unwrap();
    assert_eq!((w[0].0, w[0].1.x[0], w[0].1.pc), (main_cap, 0, 0x40_1234));
    assert_eq!(rt.thread_count(), 1);
    assert_eq!(rt.b.deleted.len(), 1);
    assert!(rt.b.exit.is_none(), "the task goes on");
    // The last thread's exit ends the task.
    assert_eq!(sys(&mut rt, 1, 93, &[7]), Action::Exit);
    assert_eq!(rt.b.exit, Some(7));
}

#[test]
fn futex_wake_requeue_and_timeouts() {
    let mut rt = runtime();
    let (_, t2, _, _) = spawn(&mut rt);
    let (_, t3, _, _) = spawn(&mut rt);
    let cpus: Vec<u32> = rt.b.threads.values().map(|t| t.3).collect();
    assert_eq!(cpus, [0, 1, 2], "threads spread over the CPUs");
    let f = buffer(&mut rt, &[1, 0, 0, 0, 0, 0, 0, 0]);
    let op = fx::WAIT_BITSET | fx::PRIVATE;
    assert_eq!(
        sys(&mut rt, t2, 98, &[f, op, 1, 0, 0, u32::MAX as u64]),
        Action::NoReply
    );
    assert_eq!(
        sys(&mut rt, t3, 98, &[f, op, 1, 0, 0, u32::MAX as u64]),
        Action::NoReply
    );
    assert_eq!(
        call(&mut rt, 1, 98, &[f + 1, fx::WAKE, 1, 0, 0, 0]),
        -EINVAL
    );
    assert_eq!(
        call(&mut rt, 1, 98, &[f, fx::WAKE | fx::PRIVATE, 1, 0, 0, 0]),
        1
    );
    let w = rt.take_wakeups();
    assert_eq!(w.len(), 1);
    assert_eq!(w[0].1.tpidruro, utcb(t2), "oldest first");
    // Requeue t3 to f+4 and wake it there.
    assert_eq!(
        call(&mut rt, 1, 98, &[f, fx::CMP_REQUEUE, 0, 1, f + 4, 1]),
        1
    );
    assert_eq!(call(&mut rt, 1, 98, &[f, fx::WAKE, 1, 0, 0, 0]), 0);
    assert_eq!(call(&mut rt, 1, 98, &[f + 4, fx::WAKE, 9, 0, 0, 0]), 1);
    assert_eq!(rt.take_wakeups()[0].1.tpidruro, utcb(t3));
    // A timed wait (relative for WAIT) ends with ETIMEDOUT.
    let ts = buffer(
        &mut rt,
        &Timespec {
            sec: 0,
            nsec: 5_000_000,
        }
        .to_bytes(),
    );
    assert_eq!(
        sys(&mut rt, t2, 98, &[f, fx::WAIT, 1, ts, 0, 0]),
        Action::NoReply
    );
    let d = rt.next_deadline().unwrap();
    assert_eq!(d, rt.b.now + 5_000_000);
    rt.b.now = d - 1;
    rt.tick();
    assert!(rt.take_wakeups().is_empty());
    rt.b.now = d;
    rt.tick();
    let w = rt.take_wakeups();
    assert_eq!(w[0].1.x[0] as i64, -ETIMEDOUT);
    // An absolute timeout in the past fails at once; bad timespecs are refused.
    let past = buffer(&mut rt, &Timespec { sec: 0, nsec: 1 }.to_bytes());
    assert_eq!(
        call(&mut rt, t2, 98, &[f, op, 1, past, 0, u32::MAX as u64]),
        -ETIMEDOUT
    );
    let bad = buffer(
        &mut rt,
        &Timespec {
            sec: 0,
            nsec: 2_000_000_000,
        }
        .to_bytes(),
    );
    assert_eq!(call(&mut rt, t2, 98, &[f, fx::WAIT, 1, bad, 0, 0]), -EINVAL);
    assert_eq!(call(&mut rt, t2, 98, &[f, 77, 1, 0, 0, 0]), -ENOSYS);
    assert_eq!(rt.next_deadline(), None);
}

#[test]
fn sleeping_and_clocks() {
    let mut rt = runtime();
    let ts = buffer(&mut rt, &Timespec { sec: 1, nsec: 500 }.to_bytes());
    assert_eq!(sys(&mut rt, 1, 101, &[ts, 0]), Action::NoReply);
    assert_eq!(rt.next_deadline(), Some(rt.b.now + 1_000_000_500));
    rt.b.now += 1_000_000_500;
    rt.tick();
    let w = rt.take_wakeups();
    assert_eq!((w.len(), w[0].1.x[0]), (1, 0));
    // clock_nanosleep with an absolute time in the past returns at once.
    assert_eq!(call(&mut rt, 1, 115, &[1, 1, ts, 0]), 0);
    assert_eq!(call(&mut rt, 1, 115, &[3, 0, ts, 0]), -EINVAL);
    let zero = buffer(&mut rt, &[0; 16]);
    assert_eq!(call(&mut rt, 1, 101, &[zero, 0]), 0);
    // clock_gettime.
    let out = buffer(&mut rt, &[0; 16]);
    rt.b.now = 7_000_000_123;
    assert_eq!(call(&mut rt, 1, 113, &[1, out]), 0);
    let t = Timespec::from_bytes(rt.b.prog_read(out, 16).try_into().unwrap());
    assert_eq!((t.sec, t.nsec), (7, 123));
    assert_eq!(call(&mut rt, 1, 113, &[99, out]), -EINVAL);
    assert_eq!(call(&mut rt, 1, 114, &[1, 0]), 0);
    // getrandom, affinity, limits, uname.
    let r = buffer(&mut rt, &[0; 64]);
    assert_eq!(call(&mut rt, 1, 278, &[r, 64, 0]), 64);
    assert!(rt.b.prog_read(r, 64).iter().any(|&b| b != 0));
    assert_eq!(call(&mut rt, 1, 123, &[0, 128, r]), 8);
    assert_eq!(rt.b.prog_read(r, 8), 0b1111u64.to_le_bytes());
    assert_eq!(call(&mut rt, 1, 123, &[0, 4, r]), -EINVAL);
    assert_eq!(call(&mut rt, 1, 261, &[0, 3, 0, r]), 0);
    assert_eq!(rt.b.prog_read(r, 8), (8u64 << 20).to_le_bytes());
    let u = buffer(&mut rt, &[0; 390]);
    assert_eq!(call(&mut rt, 1, 160, &[u]), 0);
    assert_eq!(rt.b.prog_read(u, 6), b"Linux\0");
}

#[test]
fn rom_files() {
    let mut rt = runtime();
    let path = buffer(&mut rt, b"rom/stdtest.txt\0");
    let buf = buffer(&mut rt, &[0; 256]);
    let fd = call(&mut rt, 1, 56, &[-100i64 as u64, path, 0o2000000, 0]);
    assert_eq!(fd, 3);
    let fd = fd as u64;
    assert_eq!(call(&mut rt, 1, 80, &[fd, buf]), 0);
    assert_eq!(rt.b.prog_read(buf + 48, 8), 27u64.to_le_bytes(), "st_size");
    assert_eq!(call(&mut rt, 1, SYS_READ, &[fd, buf, 6]), 6);
    assert_eq!(rt.b.prog_read(buf, 6), b"hello ");
    assert_eq!(call(&mut rt, 1, SYS_READ, &[fd, buf, 100]), 21);
    assert_eq!(rt.b.prog_read(buf, 21), b"from rom\nsecond line\n");
    assert_eq!(
        call(&mut rt, 1, SYS_READ, &[fd, buf, 100]),
        0,
        "end of file"
    );
    assert_eq!(call(&mut rt, 1, 62, &[fd, -5i64 as u64, 2]), 22);
    assert_eq!(call(&mut rt, 1, SYS_READ, &[fd, buf, 100]), 5);
    assert_eq!(call(&mut rt, 1, 67, &[fd, buf, 5, 0]), 5, "pread");
    assert_eq!(rt.b.prog_read(buf, 5), b"hello");
    assert_eq!(call(&mut rt, 1, 62, &[fd, -100i64 as u64, 1]), -EINVAL);
    assert_eq!(call(&mut rt, 1, 62, &[1, 0, 0]), -ESPIPE);
    assert_eq!(call(&mut rt, 1, 25, &[fd, 1, 0]), 1, "FD_CLOEXEC");
    assert_eq!(call(&mut rt, 1, 29, &[1, 0x5401, 0]), -ENOTTY);
    // statx and newfstatat by path.
    let st = buffer(&mut rt, &[0; 256]);
    assert_eq!(
        call(&mut rt, 1, 291, &[-100i64 as u64, path, 0, 0x7ff, st]),
        0
    );
    assert_eq!(rt.b.prog_read(st + 40, 8), 27u64.to_le_bytes());
    assert_eq!(call(&mut rt, 1, 79, &[-100i64 as u64, path, st, 0]), 0);
    assert_eq!(rt.b.prog_read(st + 48, 8), 27u64.to_le_bytes());
    let empty = buffer(&mut rt, b"\0");
    assert_eq!(call(&mut rt, 1, 79, &[1, empty, st, 0x1000]), 0);
    // Close releases the file's dataspace.
    let ds = rt.b.released.len();
    assert_eq!(call(&mut rt, 1, 57, &[fd]), 0);
    assert_eq!(rt.b.released.len(), ds + 1);
    assert_eq!(call(&mut rt, 1, 57, &[fd]), -EBADF);
    // Missing files, other paths, writing.
    let missing = buffer(&mut rt, b"rom/nope\0");
    assert_eq!(
        call(&mut rt, 1, 56, &[-100i64 as u64, missing, 0, 0]),
        -ENOENT
    );
    let etc = buffer(&mut rt, b"/etc/passwd\0");
    assert_eq!(call(&mut rt, 1, 56, &[-100i64 as u64, etc, 0, 0]), -ENOENT);
    assert_eq!(
        call(&mut rt, 1, 56, &[-100i64 as u64, path, 0o1101, 0o644]),
        -EROFS
    );
    assert_eq!(call(&mut rt, 1, 56, &[-100i64 as u64, 0x10, 0, 0]), -EFAULT);
    // A read-only private mapping of the file.
    let fd = call(&mut rt, 1, 56, &[-100i64 as u64, path, 0, 0]) as u64;
    let m = call(&mut rt, 1, 222, &[0, PAGE, 1, 2, fd, 0]) as u64;
    touch(&mut rt, m, false);
    assert_eq!(rt.b.prog_read(m, 5), b"hello");
    let c = call(&mut rt, 1, 222, &[0, PAGE, 3, 2, fd, 0]) as u64;
    touch(&mut rt, c, true);
    assert_eq!(rt.b.prog_read(c, 5), b"hello", "private copy");
    assert_eq!(call(&mut rt, 1, 57, &[fd]), 0);
    assert_eq!(
        rt.b.prog_read(m, 5),
        b"hello",
        "the mapping outlives the descriptor"
    );
    // getcwd.
    assert_eq!(call(&mut rt, 1, 17, &[buf, 64]), 2);
    assert_eq!(rt.b.prog_read(buf, 2), b"/\0");
}

#[test]
fn stdin_reads_wait_for_input_and_poll() {
    let mut rt = runtime();
    let buf = buffer(&mut rt, &[0; 64]);
    rt.b.input.extend(b"ab");
    assert_eq!(call(&mut rt, 1, SYS_READ, &[0, buf, 64]), 2);
    assert_eq!(sys(&mut rt, 1, SYS_READ, &[0, buf, 64]), Action::NoReply);
    let d = rt.next_deadline().unwrap();
    rt.b.now = d;
    rt.tick();
    assert!(rt.take_wakeups().is_empty(), "still nothing");
    rt.b.input.extend(b"line\n");
    rt.b.now = rt.next_deadline().unwrap();
    rt.tick();
    let w = rt.take_wakeups();
    assert_eq!(w[0].1.x[0], 5);
    assert_eq!(rt.b.prog_read(buf, 5), b"line\n");
    assert_eq!(rt.next_deadline(), None, "no more polling");
    // ppoll as std's start-up does it: fds 0..2, no events, timeout 0.
    let fds = buffer(&mut rt, &[0; 32]);
    let mut v = Vec::new();
    for fd in [0i32, 1, 2, 42] {
        v.extend_from_slice(&fd.to_le_bytes());
        v.extend_from_slice(&[0, 0, 0xff, 0xff]);
    }
    rt.b.prog_write(fds, &v);
    let zero = buffer(&mut rt, &[0; 16]);
    assert_eq!(call(&mut rt, 1, 73, &[fds, 4, zero, 0, 8]), 1);
    let out = rt.b.prog_read(fds, 32);
    for i in 0..3 {
        assert_eq!(&out[i * 8 + 6..i * 8 + 8], &[0, 0]);
    }
    assert_eq!(u16::from_le_bytes([out[30], out[31]]), 0x20, "POLLNVAL");
    // Waiting for stdin input with ppoll.
    rt.b.prog_write(fds, &[0, 0, 0, 0, 1, 0, 0, 0]);
    assert_eq!(sys(&mut rt, 1, 73, &[fds, 1, 0, 0, 8]), Action::NoReply);
    rt.b.input.extend(b"x");
    rt.b.now = rt.next_deadline().unwrap();
    rt.tick();
    assert_eq!(rt.take_wakeups()[0].1.x[0], 1);
    assert_eq!(rt.b.prog_read(fds + 6, 2), [1, 0], "POLLIN");
}

#[test]
fn signals() {
    let mut rt = runtime();
    let act = buffer(&mut rt, &[0; 64]);
    let mut a = Vec::new();
    for w in [0x40_2000u64, 0x0400_0000, 0x40_3000, 0] {
        a.extend_from_slice(&w.to_le_bytes());
    }
    rt.b.prog_write(act, &a);
    assert_eq!(call(&mut rt, 1, 134, &[11, act, 0, 8]), 0);
    assert_eq!(call(&mut rt, 1, 134, &[11, 0, act + 32, 8]), 0);
    assert_eq!(rt.b.prog_read(act + 32, 32), a);
    assert_eq!(call(&mut rt, 1, 134, &[9, act, 0, 8]), -EINVAL, "SIGKILL");
    assert_eq!(call(&mut rt, 1, 134, &[65, 0, act, 8]), -EINVAL);
    // Masks per thread.
    rt.b.prog_write(act, &0b1010u64.to_le_bytes());
    assert_eq!(call(&mut rt, 1, 135, &[0, act, act + 8, 8]), 0);
    assert_eq!(call(&mut rt, 1, 135, &[1, 0, act + 8, 8]), 0);
    assert_eq!(rt.b.prog_read(act + 8, 8), 0b1010u64.to_le_bytes());
    assert_eq!(call(&mut rt, 1, 135, &[7, act, 0, 8]), -EINVAL);
    // sigaltstack.
    let ss = buffer(&mut rt, &[0; 48]);
    assert_eq!(call(&mut rt, 1, 132, &[0, ss]), 0);
    assert_eq!(rt.b.prog_read(ss + 8, 4), 2u32.to_le_bytes(), "SS_DISABLE");
    let mut s = Vec::new();
    s.extend_from_slice(&0x1234_0000u64.to_le_bytes());
    s.extend_from_slice(&0u64.to_le_bytes());
    s.extend_from_slice(&0x4000u64.to_le_bytes());
    rt.b.prog_write(ss, &s);
    assert_eq!(call(&mut rt, 1, 132, &[ss, ss + 24]), 0);
    assert_eq!(call(&mut rt, 1, 132, &[0, ss + 24]), 0);
    assert_eq!(rt.b.prog_read(ss + 24, 24), s);
    // SIGCHLD's default is to ignore; SIGABRT ends the task.
    assert_eq!(call(&mut rt, 1, 131, &[1, 1, 17]), 0);
    assert_eq!(call(&mut rt, 1, 131, &[1, 77, 6]), -ESRCH);
    assert_eq!(call(&mut rt, 1, 129, &[1, 0]), 0);
    assert_eq!(sys(&mut rt, 1, 130, &[1, 6]), Action::Exit);
    assert_eq!(rt.b.exit, Some(-6));
    assert!(rt.b.log_text().contains("SIGABRT"));
}

#[test]
fn clone_refusals() {
    let mut rt = runtime();
    // fork and posix_spawn's vfork need a new task.
    assert_eq!(call(&mut rt, 1, 220, &[17, 0, 0, 0, 0]), -ENOSYS);
    assert_eq!(call(&mut rt, 1, 220, &[0x4111, 0x1000, 0, 0, 0]), -ENOSYS);
    assert_eq!(call(&mut rt, 1, 220, &[0x10f00, 0, 0, 0, 0]), -EINVAL);
    // The new stack must be writable.
    assert_eq!(
        call(&mut rt, 1, 220, &[0x10f00, 0x10_0000, 0, 0, 0]),
        -EFAULT
    );
    // UTCB slots run out.
    for _ in 2..UTCB_SLOTS {
        spawn(&mut rt);
    }
    let s = call(&mut rt, 1, 222, &[0, PAGE, 3, 0x22, u64::MAX, 0]) as u64;
    assert_eq!(
        call(&mut rt, 1, 220, &[0x10f00, s + PAGE, 0, 0, 0]),
        -EAGAIN
    );
    assert_eq!(rt.thread_count(), UTCB_SLOTS - 1);
}

#[test]
fn unknown_threads_are_ignored() {
    let mut rt = runtime();
    assert_eq!(sys(&mut rt, 9, SYS_WRITE, &[1, 0, 0]), Action::NoReply);
    assert!(rt.b.log_text().contains("unknown thread"));
}

#[test]
fn smaller_mappings_from_the_dataspace_server() {
    // The dataspace server may map less than the window: the runtime maps
    // page by page then.
    let mut f = Fake::new(program());
    f.max_order = 12;
    let cfg = Config {
        args: vec!["rom/prog".into()],
        program_ds: PROGRAM,
        trampoline: TRAMPOLINE,
        cpus: 1,
        trace: true,
        ..Default::default()
    };
    let mut rt = Runtime::new(f, cfg);
    rt.load().unwrap();
    let b = buffer(&mut rt, &[b'z'; 3 * 4096]);
    assert_eq!(call(&mut rt, 1, SYS_WRITE, &[1, b, 3 * 4096]), 3 * 4096);
    assert!(rt.b.log_text().contains("[1] write(0x1"), "trace");
}
