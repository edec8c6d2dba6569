//! Starting the program: its ELF headers are read through a window onto
//! the `PROGRAM` dataspace (checked by [`l4_loader::elf::Program`]), each
//! loadable segment becomes a region (mapped from the file when read-only
//! and complete, else copied into anonymous memory), then the main
//! thread's stack is built as Linux builds it ([`crate::stack`]) and the
//! thread started.

use alloc::format;
use alloc::string::String;
use alloc::vec;
use alloc::vec::Vec;

use l4_loader::elf::{EHDR_SIZE, PHDR_SIZE, Program, Segment};

use super::{Backend, LoadError, PID, Runtime, Space, Thread};
use crate::layout::*;
use crate::linux::auxv;
use crate::regions::{Backing, Kind, PAGE, Prot, Region, page_down, page_up};
use crate::stack;

impl<B: Backend> Runtime<B> {
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
                l4_env::RUNTIME_BASE,
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
                l4_env::PROGRAM_STACK_TOP,
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
        let need = Program::headers_len(&head)
            .map_err(|e| err(format!("{e}")))?
            .clamp(EHDR_SIZE as u64, 64 * PAGE)
            .min(size);
        if need > head_len {
            self.ensure(Space::Windows, file_win, need, false)
                .map_err(|e| err(format!("cannot read the program (error {e})")))?;
            head.resize(need as usize, 0);
            self.b.read_mem(file_win, &mut head);
        }
        let prog = Program::parse(&head, size).map_err(|e| err(format!("{e}")))?;
        let base = if prog.pie { DYN_BASE - prog.low() } else { 0 };
        if prog.low().wrapping_add(base) < PROGRAM_MIN
            || prog.high().saturating_add(base) > MMAP_BASE
        {
            return Err(err("program outside the program area".into()));
        }
        for l in &prog.segments {
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

    fn load_segment(&mut self, file_win: u64, base: u64, l: &Segment) -> Result<(), LoadError> {
        let start = page_down(base + l.vaddr);
        let end = page_up(base + l.end()).ok_or(LoadError("segment too large".into()))?;
        let prot = segment_prot(l);
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

    fn start_main(&mut self, prog: &Program, base: u64) -> Result<(), LoadError> {
        let top = l4_env::PROGRAM_STACK_TOP;
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
        let (hwcap, hwcap2) = auxv::hwcaps(self.cfg.cpu_id);
        let aux = [
            (auxv::AT_PHDR, phdr),
            (auxv::AT_PHENT, PHDR_SIZE as u64),
            (auxv::AT_PHNUM, prog.phnum as u64),
            (auxv::AT_PAGESZ, PAGE),
            (auxv::AT_BASE, 0),
            (auxv::AT_FLAGS, 0),
            (auxv::AT_ENTRY, prog.entry + base),
            (auxv::AT_UID, 0),
            (auxv::AT_EUID, 0),
            (auxv::AT_GID, 0),
            (auxv::AT_EGID, 0),
            (auxv::AT_HWCAP, hwcap),
            (auxv::AT_HWCAP2, hwcap2),
            (auxv::AT_CLKTCK, 100),
            (auxv::AT_SECURE, 0),
            (auxv::AT_MINSIGSTKSZ, 5120),
            (auxv::AT_L4RE_ENV, l4_env::ENV_VA),
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
        self.auxv = st.bytes[st.auxv].into();
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
}

/// The rights of a segment's region: ELF's `PF_R`, `PF_W` and `PF_X` are
/// the bits of [`Prot`]; writable implies readable, as on AArch64.
pub(super) fn segment_prot(s: &Segment) -> Prot {
    let p = Prot((s.flags & 7) as u8);
    if p.write() { Prot(p.0 | Prot::R.0) } else { p }
}
