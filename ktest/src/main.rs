//! ktest, the kernel test suite (`E=ktest`).
//!
//! ktest is the root task of its modules.list entry. It exercises every
//! kernel object and operation and every refusal the ABI (`l4-abi`)
//! documents, prints one line per test (`ktest: PASS <name>` or
//! `ktest: FAIL <name>: <why>`), then `ktest: N passed, N failed`, and
//! idles. Tests are independent: each creates the objects, threads and
//! tasks it needs and releases them when it ends (also on failure). Every
//! wait for another thread has a timeout, kernel-object calls have one
//! ([`rt::OBJECT_CALL_US`]), and a watchdog thread per test cancels the
//! main thread's IPC once the test overran [`rt::TEST_BUDGET_US`], so a
//! broken kernel gives FAIL lines rather than a hang.
//!
//! Run it with `cargo xtask test ktest` (the scenario
//! `tests/scenarios/ktest.toml` needs `0 failed`) or `cargo xtask qemu
//! E=ktest`. Building with `KTEST_ONLY=ipc.,faults.` runs only the tests
//! whose names start with one of those prefixes.
//!
//! [`rt`] is the environment (slots, memory, worker threads, other tasks,
//! probes); [`fw`] the framework; every other module holds the tests of one
//! area.

#![no_std]
#![no_main]
#![deny(unsafe_op_in_unsafe_fn)]
#![allow(
    clippy::result_large_err,
    reason = "a failure carries its formatted reason inline (there is no allocator); \
              it is built once per failed test, so its size does not matter"
)]

#[macro_use]
mod fw;
mod rt;

mod bench;
mod caps;
mod deletion;
mod exceptions;
mod factory;
mod faults;
mod fp;
mod fuzz;
mod ipc;
mod irq;
mod mapping;
mod random_code;
mod sched;
mod semaphore;
mod setup;
mod sys;
mod thread;
mod timeouts;
mod vcon;
mod vm;

use core::fmt::Write;

use fw::Test;
use l4::base;
use l4::io::FixedStr;
use l4::println;

core::arch::global_asm!(
    ".section .text.start, \"ax\"",
    ".global _start",
    "_start:",
    "    bl ktest_main",
    "1:  b 1b",
);

/// Every group of tests, in the order they run. `setup` comes first: it
/// pins the main thread and learns the CPUs the other tests use.
const GROUPS: &[&[Test]] = &[
    setup::TESTS,
    vcon::TESTS,
    sys::TESTS,
    caps::TESTS,
    factory::TESTS,
    ipc::TESTS,
    timeouts::TESTS,
    mapping::TESTS,
    faults::TESTS,
    exceptions::TESTS,
    fp::TESTS,
    thread::TESTS,
    sched::TESTS,
    irq::TESTS,
    semaphore::TESTS,
    deletion::TESTS,
    vm::TESTS,
    random_code::TESTS,
    fuzz::TESTS,
];

/// Tests to run, chosen when ktest is built: `KTEST_ONLY` is a
/// comma-separated list of name prefixes (e.g. `KTEST_ONLY=ipc.,faults.`);
/// unset or empty runs everything. The words of the root task's command
/// line narrow the choice alike (`roottask ktest vm.`). The `setup` tests
/// always run.
const ONLY: Option<&str> = option_env!("KTEST_ONLY");

/// Whether `name` starts with one of `prefixes` (or there are none).
fn chosen<'a>(name: &str, prefixes: impl Iterator<Item = &'a str>) -> bool {
    let mut prefixes = prefixes.peekable();
    prefixes.peek().is_none() || prefixes.any(|p| name.starts_with(p))
}

fn selected(t: &Test) -> bool {
    let built = ONLY.unwrap_or("");
    let built = built.split(',').map(str::trim).filter(|p| !p.is_empty());
    t.name.starts_with("setup.") || (chosen(t.name, built) && chosen(t.name, cmdline_words()))
}

/// The words of the root task's command line (the program's name is not
/// part of it).
fn cmdline_words() -> impl Iterator<Item = &'static str> {
    cmdline().split_whitespace()
}

fn tests() -> impl Iterator<Item = &'static Test> {
    GROUPS.iter().flat_map(|g| g.iter()).filter(|t| selected(t))
}

/// The root task's command line, from the kernel's boot-info page.
fn cmdline() -> &'static str {
    // SAFETY: the kernel maps its boot-info page read-only at this address
    // into the root task for the task's whole life.
    let info = unsafe { &*(l4::abi::root::BOOTINFO_VA as *const l4_bootinfo::BootInfo) };
    if info.is_valid() {
        info.roottask.cmdline.as_str()
    } else {
        ""
    }
}

#[unsafe(no_mangle)]
extern "C" fn ktest_main() -> ! {
    rt::init();
    if cmdline_words().any(|w| w == "ipcbench") {
        for t in setup::TESTS {
            if let Err(why) = (t.run)() {
                println!("ipcbench: setup {} failed: {}", t.name, why);
            }
        }
        bench::main();
        rt::park()
    }
    let total = tests().count();
    println!("ktest: kernel test suite, {total} tests");
    let (mut passed, mut failed) = (0usize, 0usize);
    for test in tests() {
        rt::before_test();
        let watchdog = rt::Watchdog::arm(rt::TEST_BUDGET_US);
        let result = (test.run)();
        drop(watchdog);
        let stray = rt::after_test();
        match result {
            Ok(()) => {
                passed += 1;
                println!("ktest: PASS {}", test.name);
            }
            Err(why) => {
                failed += 1;
                println!("ktest: FAIL {}: {}", test.name, why);
            }
        }
        if stray > 0 {
            println!("ktest: note: {stray} stray message(s) after {}", test.name);
        }
    }
    println!("ktest: {passed} passed, {failed} failed");
    rt::park()
}

#[panic_handler]
fn panic(info: &core::panic::PanicInfo<'_>) -> ! {
    // No statics here (not even through `l4`'s object stubs): this may run
    // in a task that has only ktest's code.
    let mut s = FixedStr::<240>::new();
    let _ = write!(s, "ktest: panic: {}", info.message());
    if let Some(loc) = info.location() {
        let _ = write!(s, " at {}:{}", loc.file(), loc.line());
    }
    let _ = s.write_str("\n");
    let mut rest = s.as_str().as_bytes();
    while !rest.is_empty() {
        // SAFETY: the closure only builds the message and makes no call.
        let (tag, n) = unsafe { l4::utcb::with_utcb(|u| l4::msg::vcon_write(u, rest)) };
        let _ = l4::ipc::ipc_send(base::LOG.sel(), tag, l4::Timeouts::NEVER);
        rest = &rest[n..];
    }
    rt::park()
}
