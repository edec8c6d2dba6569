//! ipcbench: the cost of an IPC, measured as L4Re's ipcbench measures it.
//!
//! N call/reply round trips with an empty message, timed with the PMU
//! cycle counter (which the kernel lets EL0 read and which counts at EL2
//! too); one IPC is a round trip divided by two. Under QEMU's
//! `-icount shift=0` the cycle counter equals the instructions retired, so
//! the figures are instruction counts and reproducible. Three set-ups: the
//! server in ktest's own address space on the same CPU, in another address
//! space on the same CPU, and on another CPU.
//!
//! Selected by the root task's command line (`roottask ktest ipcbench`,
//! entry `ipcbench`); `cargo xtask bench ipc` boots it with icount.

use crate::fw::{Ctx, Fail};
use crate::rt::{self, Opts, Space};
use l4::abi::call::ipc_call;
use l4::abi::{CapRights, RecvItem, SendItem};
use l4::{MsgTag, Timeouts, base, println, utcb};

/// Round trips per measurement.
const ROUNDS: u64 = 10_000;

/// The server: answers every call with an empty reply, forever.
extern "C" fn server_entry(_: u64, _: u64) {
    utcb::clear_recv_items();
    let (mut r, _) = l4::abi::call::ipc_wait(Timeouts::NEVER);
    loop {
        if r.is_err() {
            (r, _) = l4::abi::call::ipc_wait(Timeouts::NEVER);
            continue;
        }
        (r, _) = l4::abi::call::ipc_reply_and_wait(MsgTag::new(0, 0, 0, 0), Timeouts::NEVER);
    }
}

/// [`server_entry`] receiving a capability into slot `cap_slot` (free in
/// its task) with every call, the next one replacing it. Its own loop:
/// setting receive items on every wait would cost [`server_entry`]'s
/// measurements instructions.
extern "C" fn cap_server_entry(cap_slot: u64, _: u64) {
    let items = [RecvItem::SmallCap { index: cap_slot }];
    utcb::set_recv_items(&items);
    let (mut r, _) = l4::abi::call::ipc_wait(Timeouts::NEVER);
    loop {
        utcb::set_recv_items(&items);
        if r.is_err() {
            (r, _) = l4::abi::call::ipc_wait(Timeouts::NEVER);
            continue;
        }
        (r, _) = l4::abi::call::ipc_reply_and_wait(MsgTag::new(0, 0, 0, 0), Timeouts::NEVER);
    }
}

/// Where the server puts the capability of each call, in the capability
/// measurement.
const CAP_SERVER_SLOT: u64 = 0x300;

pub(crate) fn cycles() -> u64 {
    let v: u64;
    // SAFETY: the kernel enables EL0 reads of the cycle counter
    // (PMUSERENR_EL0); reading it has no side effects.
    unsafe { core::arch::asm!("isb", "mrs {}, pmccntr_el0", out(reg) v, options(nomem, nostack)) };
    v
}

/// Runs `ROUNDS` calls (`call`) to `server`; returns cycles per IPC, or
/// the error.
fn measure(
    server: &rt::Worker,
    call: impl Fn(l4::abi::Cap) -> Result<MsgTag, l4::Error>,
) -> Result<u64, l4::Error> {
    let sel = server.cap().sel();
    // Warm up (first faults, caches of the emulator).
    for _ in 0..100 {
        call(sel)?;
    }
    let start = cycles();
    for _ in 0..ROUNDS {
        call(sel)?;
    }
    Ok((cycles() - start) / (2 * ROUNDS))
}

/// An empty call.
fn empty_call(sel: l4::abi::Cap) -> Result<MsgTag, l4::Error> {
    ipc_call(sel, MsgTag::new(0, 0, 0, 0), Timeouts::NEVER).0
}

/// A call that maps a capability (the log's) to the server.
fn cap_call(sel: l4::abi::Cap) -> Result<MsgTag, l4::Error> {
    utcb::set_mrs(&SendItem::caps(base::LOG.index(), 0, CapRights::RW, 0).to_words());
    ipc_call(sel, MsgTag::new(0, 0, 1, 0), Timeouts::NEVER).0
}

fn report(what: &str, r: Result<u64, Fail>) {
    match r {
        Ok(c) => println!("ipcbench: {what}: {ROUNDS} round trips, {c} cycles per IPC"),
        Err(e) => println!("ipcbench: {what}: failed: {e}"),
    }
}

fn run(o: &Opts<'_>) -> Result<u64, Fail> {
    let w = rt::spawn(server_entry, 0, 0, o)?;
    measure(&w, empty_call).ctx("call")
}

/// All three measurements, then `ipcbench: done`.
pub fn main() {
    report("same address space, one CPU", run(&Opts::new()));
    let other = Space::new();
    match &other {
        Ok(s) => {
            report("two address spaces, one CPU", run(&Opts::new().space(s)));
            let caps = rt::spawn(cap_server_entry, CAP_SERVER_SLOT, 0, &Opts::new().space(s))
                .and_then(|w| measure(&w, cap_call).ctx("call with a capability"));
            report(
                "two address spaces, one CPU, a capability with each call",
                caps,
            );
        }
        Err(e) => println!("ipcbench: two address spaces: failed to make the task: {e}"),
    }
    if rt::cpu_count() >= 2 {
        report(
            "same address space, two CPUs",
            run(&Opts::new().cpu(rt::other_cpu(0))),
        );
    }
    println!("ipcbench: done");
}
