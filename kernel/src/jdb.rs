//! A small kernel debugger on the console, entered by a lone ESC on the
//! serial line when the kernel runs with `-serial_esc` (as Fiasco's jdb).
//! It runs with the big kernel lock held and interrupts masked: no kernel
//! operation proceeds on any CPU meanwhile (threads already in user mode
//! run on until they enter the kernel). Single-key commands, as in jdb:
//!
//! * `lp` — list the threads (task, state, CPU, priority, user pc)
//! * `lt` — list the tasks (ASID, threads, capabilities, mappings)
//! * `k`  — kernel state (CPUs, memory, objects)
//! * `h` or `?` — help
//! * `g`  — leave the debugger
//! * `^`  — reset the machine

use crate::arch;
use crate::kprintln;
use crate::obj::KObject;
use crate::platform::console;
use crate::state::Kernel;

/// Set by the boot CPU: how to reach PSCI for a reset.
static PSCI: spin::Once<arch::Conduit> = spin::Once::new();

/// Remembers the PSCI conduit (for `^`).
pub fn init(psci: arch::Conduit) {
    PSCI.call_once(|| psci);
}

const HELP: &str = "\
jdb commands:
  lp   list threads          lt   list tasks
  k    kernel state          h ?  this help
  g    go on                 ^    reset the machine";

/// The debugger's command loop; returns when the user types `g`.
pub fn run(k: &Kernel) {
    kprintln!(
        "\n--- jdb: kernel debugger on CPU {} (h: help, g: go on) ---",
        arch::cpu_id()
    );
    loop {
        console::write_bytes(b"jdb: ");
        let c = console::wait_byte();
        match c {
            b'g' => {
                kprintln!("g\njdb: going on");
                return;
            }
            b'h' | b'?' => kprintln!("{}\n{}", c as char, HELP),
            b'k' => {
                kprintln!("k");
                kernel_state(k);
            }
            b'l' => {
                console::write_bytes(b"l");
                match console::wait_byte() {
                    b'p' => {
                        kprintln!("p");
                        threads(k);
                    }
                    b't' => {
                        kprintln!("t");
                        tasks(k);
                    }
                    other => kprintln!(
                        "{}\njdb: l{} is no command (lp, lt)",
                        other as char,
                        other as char
                    ),
                }
            }
            b'^' => {
                kprintln!("^\njdb: resetting");
                if let Some(&conduit) = PSCI.get() {
                    // PSCI SYSTEM_RESET; does not return when it works.
                    arch::psci_call(conduit, 0x8400_0009, 0, 0, 0);
                }
                kprintln!("jdb: reset failed");
            }
            b'\r' | b'\n' | b' ' => kprintln!(""),
            other => kprintln!("\njdb: unknown command {:?} (h: help)", other as char),
        }
    }
}

fn kernel_state(k: &Kernel) {
    let (mut threads, mut tasks, mut others) = (0, 0, 0);
    for (_, o) in k.objs.iter() {
        match o {
            KObject::Thread(_) => threads += 1,
            KObject::Task(_) => tasks += 1,
            _ => others += 1,
        }
    }
    kprintln!(
        "  CPUs {}  free memory {} KiB  kernel heap {} of {} KiB in use\n  tasks {}  threads {}  other objects {}  mappings {}",
        k.ncpus,
        crate::mm::free_bytes() / 1024,
        crate::mm::heap_used() / 1024,
        crate::mm::heap_bytes() / 1024,
        tasks,
        threads,
        others,
        k.mapdb.len()
    );
    for (i, c) in k.cpus.iter().enumerate().take(k.ncpus) {
        kprintln!("  CPU {}: running {:?}, {} ready", i, c.current, c.rq.len());
    }
}

fn threads(k: &Kernel) {
    kprintln!("  thread         task           cpu prio  pc                state");
    for (id, o) in k.objs.iter() {
        if let KObject::Thread(t) = o {
            let pc = t.frame().elr;
            kprintln!(
                "  {:<14} {:<14} {:>3} {:>4}  {:#018x}  {:?}{}",
                alloc::format!("{id:?}"),
                t.task.map_or_else(
                    || alloc::string::String::from("-"),
                    |x| alloc::format!("{x:?}")
                ),
                t.cpu,
                t.sched.prio,
                pc,
                t.state,
                if t.running_on.is_some() {
                    " (running)"
                } else {
                    ""
                }
            );
        }
    }
}

fn tasks(k: &Kernel) {
    kprintln!("  task           asid  threads  caps  mappings");
    for (id, o) in k.objs.iter() {
        if let KObject::Task(t) = o {
            kprintln!(
                "  {:<14} {:>4}  {:>7}  {:>4}  {:>8}",
                alloc::format!("{id:?}"),
                t.asid,
                t.threads.len(),
                t.caps.len(),
                k.mapdb.mappings(id).count()
            );
        }
    }
}
