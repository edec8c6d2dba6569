//! The root task: its address space, its start at EL0, and (until the real
//! IPC exists) the temporary debug calls it makes.

use crate::arch::{self, TrapFrame};
use crate::kprintln;
use crate::mm::{self, FrameTables, PAGE};
use kernel_core::esr::{Esr, ec};
use l4_abi::{SVC_LINUX, SVC_NATIVE, debug};
use l4_bootinfo::{BootInfo, SEG_W, SEG_X};
use l4_pgtable::Attr;
use spin::Mutex;

const USER_STACK_TOP: u64 = 0x0000_7fff_ffff_0000;
const USER_STACK_PAGES: u64 = 16;
const ROOT_ASID: u16 = 1;

struct Task {
    name: [u8; 16],
    name_len: usize,
    pt_root: u64,
}

impl Task {
    fn name(&self) -> &str {
        core::str::from_utf8(&self.name[..self.name_len]).unwrap_or("?")
    }
}

static CURRENT: Mutex<Option<Task>> = Mutex::new(None);

/// Builds the root task's address space from the segments the boot stage
/// loaded, gives it a stack and enters it at EL0.
pub fn start_roottask(info: &BootInfo) -> ! {
    let rt = &info.roottask;
    let mut t = FrameTables;
    let root = mm::alloc_frame().expect("no memory for the root task's page table");
    for s in rt.segments() {
        let attr = Attr::user(s.flags & SEG_W != 0, s.flags & SEG_X != 0);
        l4_pgtable::map(&mut t, root, s.vaddr, s.paddr, s.memsz, attr, false)
            .unwrap_or_else(|e| panic!("root task segment at {:#x}: {e}", s.vaddr));
    }
    for i in 1..=USER_STACK_PAGES {
        let pa = mm::alloc_frame().expect("no memory for the root task's stack");
        l4_pgtable::map(
            &mut t,
            root,
            USER_STACK_TOP - i * PAGE,
            pa,
            PAGE,
            Attr::user(true, false),
            false,
        )
        .unwrap_or_else(|e| panic!("root task stack: {e}"));
    }
    let name = rt.name.as_str();
    let mut task = Task {
        name: [0; 16],
        name_len: name.len().min(16),
        pt_root: root,
    };
    task.name[..task.name_len].copy_from_slice(&name.as_bytes()[..task.name_len]);
    *CURRENT.lock() = Some(task);
    arch::set_user_space(root, ROOT_ASID);
    kprintln!(
        "kernel: starting root task '{}' at {:#x} ({})",
        name,
        rt.entry,
        rt.cmdline.as_str()
    );
    let frame = TrapFrame {
        elr: rt.entry,
        sp_el0: USER_STACK_TOP,
        spsr: 0,
        ..TrapFrame::default()
    };
    arch::enter_user(&frame)
}

/// Copies up to `buf.len()` bytes from the current task's memory at `va`;
/// `None` if any byte is not mapped readable for the task.
fn copy_from_user(pt_root: u64, va: u64, buf: &mut [u8]) -> Option<()> {
    let mut t = FrameTables;
    let mut done = 0;
    while done < buf.len() {
        let at = va.checked_add(done as u64)?;
        let (pa, attr) = l4_pgtable::translate(&mut t, pt_root, at)?;
        if !attr.user {
            return None;
        }
        let n = ((PAGE - (at & (PAGE - 1))) as usize).min(buf.len() - done);
        // SAFETY: pa..pa+n is RAM mapped into the task (so, RAM the kernel's
        // linear map covers) within one page.
        let src = unsafe { core::slice::from_raw_parts(mm::phys_to_virt(pa) as *const u8, n) };
        buf[done..done + n].copy_from_slice(src);
        done += n;
    }
    Some(())
}

const ENOSYS: i64 = -(l4_abi::Error::NoSys as i64);
const EFAULT: i64 = -(l4_abi::Error::Fault as i64);

/// A synchronous exception from EL0.
pub fn user_exception(frame: &mut TrapFrame, esr: Esr, far: u64) {
    let (name_buf, root) = match CURRENT.lock().as_ref() {
        Some(t) => ((t.name, t.name_len), t.pt_root),
        None => panic!("exception from EL0 without a task"),
    };
    let name = Task {
        name: name_buf.0,
        name_len: name_buf.1,
        pt_root: root,
    };
    let name = name.name();
    if esr.ec() == ec::SVC64 && esr.imm16() == SVC_NATIVE {
        frame.x[0] = match frame.x[8] {
            debug::PUTS => {
                let mut buf = [0u8; 512];
                let len = (frame.x[1] as usize).min(buf.len());
                match copy_from_user(root, frame.x[0], &mut buf[..len]) {
                    Some(()) => {
                        crate::console::write_bytes(&buf[..len]);
                        len as u64
                    }
                    None => EFAULT as u64,
                }
            }
            debug::EXIT => {
                kprintln!(
                    "kernel: task '{}' exited with code {} (CPU {} took {} timer ticks so far)",
                    name,
                    frame.x[0] as i64,
                    arch::cpu_id(),
                    arch::ticks()
                );
                stop();
            }
            _ => ENOSYS as u64,
        };
        return;
    }
    if esr.ec() == ec::SVC64 && esr.imm16() == SVC_LINUX {
        kprintln!(
            "kernel: task '{}': Linux system call {} but no exception handler; task stopped",
            name,
            frame.x[8]
        );
    } else {
        kprintln!(
            "kernel: task '{}': unhandled {}; task stopped",
            name,
            esr.class_name()
        );
        crate::arch::trap_dump(frame, esr, far);
    }
    stop()
}

/// Nothing else to run yet: this CPU idles.
fn stop() -> ! {
    *CURRENT.lock() = None;
    arch::idle()
}
