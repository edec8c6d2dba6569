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
  lv   tasks with vCPUs: where their threads ever ran
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
                    b'v' => {
                        kprintln!("v");
                        vm_tasks(k);
                    }
                    other => kprintln!(
                        "{}\njdb: l{} is no command (lp, lt, lv)",
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
    let now = arch::counter().max(1);
    let per_ms = (arch::counter_freq() / 1000).max(1);
    for (i, c) in k.cpus.iter().enumerate().take(k.ncpus) {
        let (waits, ticks, sleeps) = crate::bkl::waits(i);
        kprintln!(
            "  CPU {}: running {:?}, {} ready; waited for the kernel lock {} times ({} slept), {} ms ({}% of the time since start)",
            i,
            c.current,
            c.rq.len(),
            waits,
            sleeps,
            ticks / per_ms,
            ticks * 100 / now
        );
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

/// The CPUs of mask `m` as `0,1,3`.
fn cpu_list(m: u64) -> alloc::string::String {
    let mut s = alloc::string::String::new();
    for c in (0..64).filter(|c| m & (1 << c) != 0) {
        if !s.is_empty() {
            s.push(',');
        }
        s.push_str(&alloc::format!("{c}"));
    }
    s
}

/// Every task with vCPU threads (a VMM): its vCPUs and the CPUs any of
/// its threads ever ran on, which shows a static partition from the
/// kernel's side.
fn vm_tasks(k: &Kernel) {
    kprintln!("  task           vCPUs  threads  ran on CPUs (vCPU threads / all)");
    let mut lines = alloc::vec::Vec::new();
    for (id, o) in k.objs.iter() {
        if !matches!(o, KObject::Task(_)) {
            continue;
        }
        let (mut vcpus, mut threads, mut vcpu_cpus, mut all_cpus) = (0, 0, 0u64, 0u64);
        for (_, t) in k.objs.iter() {
            if let KObject::Thread(t) = t
                && t.task == Some(id)
            {
                threads += 1;
                all_cpus |= t.ran_on;
                if t.vcpu.is_some() {
                    vcpus += 1;
                    vcpu_cpus |= t.ran_on;
                }
            }
        }
        if vcpus > 0 {
            lines.push((vcpu_cpus, id, vcpus, threads, all_cpus));
        }
    }
    // By the CPUs, so that partitions read in order.
    lines.sort_by_key(|l| l.0.reverse_bits());
    for (vcpu_cpus, id, vcpus, threads, all_cpus) in lines {
        kprintln!(
            "  {:<14} {:>5}  {:>7}  {} / {}",
            alloc::format!("{id:?}"),
            vcpus,
            threads,
            cpu_list(vcpu_cpus),
            cpu_list(all_cpus)
        );
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
