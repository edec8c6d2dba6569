//! Raw IPC (AArch64 only): the calls of [`l4_abi::call`], plus reply, a
//! received-message snapshot ([`Msg`]) and a raw system call.

pub use l4_abi::call::{
    debug_exit, debug_puts, ipc, ipc_call, ipc_receive, ipc_reply_and_wait, ipc_send, ipc_wait,
    sleep, yield_now,
};

use l4_abi::sys::{self, Cap, X8_IPC};
use l4_abi::utcb::MR_COUNT;
use l4_abi::{Error, MsgTag, SVC_NATIVE, Timeout, Timeouts};

use crate::utcb;

/// Reply to the last caller (send through the implicit reply capability,
/// no receive phase). The caller waits for the reply, so the send timeout
/// is zero.
pub fn reply(tag: MsgTag) -> Result<(), Error> {
    ipc(
        Cap::INVALID,
        sys::REPLY | sys::SEND,
        tag,
        Timeouts::BOTH_ZERO,
    )
    .0
    .map(|_| ())
}

/// Sleeps about `us` microseconds (never shorter).
pub fn sleep_us(us: u64) -> Result<(), Error> {
    sleep(Timeout::from_us(us))
}

/// A receive timeout of `us` microseconds with an infinite send phase.
pub const fn recv_timeout_us(us: u64) -> Timeouts {
    Timeouts::new(Timeout::NEVER, Timeout::from_us(us))
}

/// Both phases limited to `us` microseconds.
pub const fn timeouts_us(us: u64) -> Timeouts {
    Timeouts::new(Timeout::from_us(us), Timeout::from_us(us))
}

/// A native system call with exactly these `x0`, `x1`, `x2` (and `x8` =
/// [`X8_IPC`]): returns `x0`, `x1`, `x2` after it. For testing how the
/// kernel decodes invocations; [`ipc`] is the normal way.
pub fn raw_syscall(x0: u64, x1: u64, x2: u64) -> [u64; 3] {
    let (r0, r1, r2): (u64, u64, u64);
    // SAFETY: as `l4_abi::call::ipc`: the kernel preserves every register
    // but x0..x2 and touches no memory of this task except the calling
    // thread's UTCB and the receive windows the caller set up; the asm is
    // not `nomem`.
    unsafe {
        core::arch::asm!("svc #{imm}", imm = const SVC_NATIVE,
            inout("x0") x0 => r0, inout("x1") x1 => r1, inout("x2") x2 => r2,
            in("x8") X8_IPC, options(nostack));
    }
    [r0, r1, r2]
}

/// A received message: tag, label (`x2`) and a copy of its message
/// registers.
#[derive(Clone, Debug)]
pub struct Msg {
    /// The received tag.
    pub tag: MsgTag,
    /// The label of the gate or IRQ it came through (`x2`).
    pub label: u64,
    /// The message registers (the first `tag.mr_len()` are meaningful).
    pub mr: [u64; MR_COUNT],
}

impl Msg {
    /// Copies the message registers of the message just received.
    pub fn read(tag: MsgTag, label: u64) -> Msg {
        let mut mr = [0u64; MR_COUNT];
        utcb::mrs(&mut mr[..tag.mr_len().min(MR_COUNT)]);
        Msg { tag, label, mr }
    }

    /// The untyped words.
    pub fn words(&self) -> &[u64] {
        &self.mr[..(self.tag.words() as usize).min(MR_COUNT)]
    }

    /// Untyped word `i`, 0 if the message has fewer.
    pub fn word(&self, i: usize) -> u64 {
        self.words().get(i).copied().unwrap_or(0)
    }

    /// The label of the tag (the protocol of kernel messages).
    pub fn proto(&self) -> i64 {
        self.tag.label()
    }
}

fn snapshot(r: (Result<MsgTag, Error>, u64)) -> Result<Msg, Error> {
    let (tag, label) = r;
    Ok(Msg::read(tag?, label))
}

/// Receives from `cap` only and copies the message.
pub fn receive_msg(cap: Cap, t: Timeouts) -> Result<Msg, Error> {
    snapshot(ipc_receive(cap, t))
}

/// Receives from anyone and copies the message.
pub fn wait_msg(t: Timeouts) -> Result<Msg, Error> {
    snapshot(ipc_wait(t))
}

/// Calls `cap` with `words` and label `label`; copies the reply.
pub fn call_words(cap: Cap, label: i64, words: &[u64], t: Timeouts) -> Result<Msg, Error> {
    let n = utcb::set_mrs(&words[..words.len().min(MsgTag::MAX_WORDS as usize)]);
    snapshot(ipc_call(cap, MsgTag::new(label, n as u32, 0, 0), t))
}

/// Sends `words` with label `label` to `cap`.
pub fn send_words(cap: Cap, label: i64, words: &[u64], t: Timeouts) -> Result<(), Error> {
    let n = utcb::set_mrs(&words[..words.len().min(MsgTag::MAX_WORDS as usize)]);
    ipc_send(cap, MsgTag::new(label, n as u32, 0, 0), t)
        .0
        .map(|_| ())
}
