//! Setup that the other tests build on, checked like tests: the main
//! thread's priority and CPU, and the CPUs online.

use l4::{base, println};

use crate::fw::{Ctx, R};
use crate::rt::{self, MAIN_PRIO};

tests! {
    "setup.main_thread_prio_100_on_cpu0" => pin_main,
    "setup.cpus_online" => cpus_online,
}

/// The scheduler runs the main thread itself at a known priority on CPU 0
/// (tests with spinning threads rely on it).
fn pin_main() -> R {
    base::SCHEDULER
        .run_thread(base::THREAD, MAIN_PRIO, 1)
        .ctx("run_thread on the main thread")
}

/// The scheduler reports the online CPUs; CPU 0 is among them.
fn cpus_online() -> R {
    let info = base::SCHEDULER.info().ctx("scheduler info")?;
    ensure!(
        info.online & 1 != 0,
        "CPU 0 not online (map {:#x})",
        info.online
    );
    let highest = 64 - info.online.leading_zeros() as u64;
    ensure!(
        info.max_cpus >= highest,
        "max CPUs {} below the highest online CPU + 1 ({highest})",
        info.max_cpus
    );
    rt::set_online(info.online);
    println!(
        "ktest: {} CPUs online (map {:#x}, max {})",
        info.count(),
        info.online,
        info.max_cpus
    );
    Ok(())
}
