//! IPC timeouts: zero, finite, absolute and infinite, in both phases;
//! sleeping.

use l4::abi::call::clock_us;
use l4::ipc::{self, ipc_call, ipc_send};
use l4::{Error, MsgTag, Timeout, Timeouts, utcb};

use crate::fw::{Ctx, R};
use crate::rt::{self, WAIT_US, Watchdog};

tests! {
    "timeouts.receive_zero" => receive_zero,
    "timeouts.receive_finite" => receive_finite,
    "timeouts.receive_from_silent_thread" => receive_silent,
    "timeouts.send_zero" => send_zero,
    "timeouts.send_finite" => send_finite,
    "timeouts.call_reply_timeout" => call_reply_timeout,
    "timeouts.receive_never_gets_message" => receive_never,
    "timeouts.send_never_delivers" => send_never,
    "timeouts.sleep" => sleep,
    "timeouts.absolute_receive" => absolute_receive,
    "timeouts.absolute_send" => absolute_send,
    "timeouts.absolute_past_or_bad_register" => absolute_past_or_bad,
}

const MS10: u64 = 10_000;

/// An open wait with timeout zero and nothing pending ends at once.
fn receive_zero() -> R {
    expect_err!(
        ipc::ipc_wait(Timeouts::RECV_ZERO).0,
        Error::RecvTimeout,
        "wait with timeout zero"
    );
    Ok(())
}

/// A finite open wait ends with `RecvTimeout`.
fn receive_finite() -> R {
    expect_err!(
        ipc::ipc_wait(ipc::recv_timeout_us(MS10)).0,
        Error::RecvTimeout,
        "wait for 10 ms"
    );
    Ok(())
}

/// A closed receive from a thread that never sends times out.
fn receive_silent() -> R {
    let w = rt::spawn_default(rt::park_entry, 0, 0)?;
    expect_err!(
        w.recv(MS10),
        Error::RecvTimeout,
        "receive from a silent thread"
    );
    Ok(())
}

/// A send with `t` to a thread that never receives fails with
/// `SendTimeout`.
fn send_times_out(t: Timeouts, what: &str) -> R {
    let w = rt::spawn_default(rt::park_entry, 0, 0)?;
    expect_err!(
        ipc_send(w.cap().sel(), MsgTag::new(0, 0, 0, 0), t).0,
        Error::SendTimeout,
        what
    );
    Ok(())
}

/// A send with timeout zero to a thread that is not receiving fails at
/// once with `SendTimeout`.
fn send_zero() -> R {
    send_times_out(Timeouts::SEND_ZERO, "send with timeout zero")
}

/// A finite send timeout expires with `SendTimeout`.
fn send_finite() -> R {
    let t = Timeouts::new(Timeout::from_us(MS10), Timeout::NEVER);
    send_times_out(t, "send with a 10 ms timeout")
}

/// A call whose partner takes the message but never replies ends with
/// `RecvTimeout` (the send phase succeeded).
fn call_reply_timeout() -> R {
    let w = rt::spawn_default(rt::wait_then_park_entry, 0, 0)?;
    let t = Timeouts::new(Timeout::from_us(WAIT_US), Timeout::from_us(20_000));
    expect_err!(
        ipc_call(w.cap().sel(), MsgTag::new(0, 0, 0, 0), t).0,
        Error::RecvTimeout,
        "call without a reply"
    );
    Ok(())
}

/// A receive without timeout gets a message that comes later.
fn receive_never() -> R {
    let w = rt::spawn_default(rt::delayed_signal_entry, 20_000, 0x77)?;
    let _wd = Watchdog::arm(5 * WAIT_US)?;
    let m = ipc::receive_msg(w.cap().sel(), Timeouts::NEVER).ctx("receive without timeout")?;
    ensure_eq!(m.word(0), 0x77, "word received");
    Ok(())
}

/// A send without timeout waits for a receiver that comes later.
fn send_never() -> R {
    let w = rt::spawn_default(rt::delayed_receive_entry, 20_000, 0)?;
    {
        let _wd = Watchdog::arm(5 * WAIT_US)?;
        ipc::send_words(w.cap().sel(), 0, &[0x55], Timeouts::NEVER).ctx("send without timeout")?;
    }
    let m = w.signal()?;
    ensure_eq!(
        (m.word(0), m.word(2)),
        (0, 0x55),
        "receiver's status and word"
    );
    Ok(())
}

/// Sleeping (a receive from nobody) ends normally.
fn sleep() -> R {
    ipc::sleep(Timeout::from_us(5_000)).ctx("sleep 5 ms")?;
    ipc::sleep(Timeout::rel(1, 0)).ctx("sleep 1 µs")
}

/// A receive whose deadline (system clock, µs) is in a buffer register
/// ends with `RecvTimeout` at that time, not before.
fn absolute_receive() -> R {
    until_deadline(5, 30_000, Error::RecvTimeout, "wait", |abs| {
        ipc::ipc_wait(Timeouts::new(Timeout::NEVER, abs))
            .0
            .map(|_| ())
    })
}

/// A send with an absolute deadline to a thread that never receives ends
/// with `SendTimeout` at that time.
fn absolute_send() -> R {
    let w = rt::spawn_default(rt::park_entry, 0, 0)?;
    until_deadline(6, 20_000, Error::SendTimeout, "send", |abs| {
        let t = Timeouts::new(abs, Timeout::NEVER);
        ipc_send(w.cap().sel(), MsgTag::new(0, 0, 0, 0), t)
            .0
            .map(|_| ())
    })
}

/// Puts a deadline `us` from now in buffer register `br`, runs `op` with
/// the absolute timeout naming it, and checks it failed with `err` no
/// earlier than the deadline (and within a second).
fn until_deadline(
    br: u8,
    us: u64,
    err: Error,
    what: &str,
    op: impl FnOnce(Timeout) -> Result<(), Error>,
) -> R {
    utcb::clear_recv_items();
    let start = clock_us();
    utcb::set_br(br.into(), start + us);
    expect_err!(op(Timeout::abs(br)), err, what);
    let took = clock_us() - start;
    ensure!(
        (us..1_000_000).contains(&took),
        "{what} with a deadline {us} µs ahead took {took} µs"
    );
    Ok(())
}

/// A deadline already past acts as a zero timeout; a register index
/// beyond the buffer registers is refused.
fn absolute_past_or_bad() -> R {
    utcb::clear_recv_items();
    utcb::set_br(4, clock_us().saturating_sub(1));
    expect_err!(
        ipc::ipc_wait(Timeouts::new(Timeout::NEVER, Timeout::abs(4))).0,
        Error::RecvTimeout,
        "wait until a time already past"
    );
    expect_err!(
        ipc::ipc_wait(Timeouts::new(Timeout::NEVER, Timeout::abs(40))).0,
        Error::Inval,
        "deadline in a register that does not exist"
    );
    Ok(())
}
