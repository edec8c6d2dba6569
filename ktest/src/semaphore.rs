//! Semaphores: counting, timeouts, waking a waiter (across CPUs), waking
//! it with an error when the semaphore is deleted.

use l4::{Cap, Error, Semaphore, Timeout, base};

use crate::fw::{Ctx, R};
use crate::rt::{self, Opts, code, other_cpu, signal};

tests! {
    "sem.down_zero_timeout" => down_zero,
    "sem.up_then_down" => up_then_down,
    "sem.counts" => counts,
    "sem.down_finite_timeout" => down_finite,
    "sem.up_wakes_waiter_on_other_cpu" => up_wakes_waiter,
    "sem.delete_wakes_waiter" => delete_wakes_waiter,
}

/// Downs semaphore `idx` without timeout; reports the status. Root task
/// only.
extern "C" fn down_entry(idx: u64, _: u64) {
    let r = Cap::<Semaphore>::from_index(idx).down(Timeout::NEVER);
    signal(&[code(r)]);
}

/// Down on a zero count with timeout zero fails with `RecvTimeout`.
fn down_zero() -> R {
    let s = rt::semaphore()?;
    expect_err!(s.down(Timeout::ZERO), Error::RecvTimeout, "down at count 0");
    Ok(())
}

/// Up, then down succeeds without waiting.
fn up_then_down() -> R {
    let s = rt::semaphore()?;
    s.up().ctx("up")?;
    s.down(Timeout::ZERO).ctx("down after up")
}

/// The count counts.
fn counts() -> R {
    let s = rt::semaphore()?;
    for _ in 0..3 {
        s.up().ctx("up")?;
    }
    for i in 0..3 {
        s.down(Timeout::ZERO)
            .ctx(if i == 0 { "first down" } else { "later down" })?;
    }
    expect_err!(
        s.down(Timeout::ZERO),
        Error::RecvTimeout,
        "fourth down after three ups"
    );
    Ok(())
}

/// A finite down times out.
fn down_finite() -> R {
    let s = rt::semaphore()?;
    expect_err!(
        s.down(Timeout::from_us(10_000)),
        Error::RecvTimeout,
        "down for 10 ms at count 0"
    );
    Ok(())
}

/// Up wakes a thread blocked in down on another CPU.
fn up_wakes_waiter() -> R {
    let s = rt::semaphore()?;
    let w = rt::spawn(down_entry, s.idx(), 0, &Opts::new().cpu(other_cpu(0)))?;
    rt::sleep_us(10_000)?;
    w.quiet(0)?;
    s.up().ctx("up")?;
    ensure_eq!(w.signal_word()?, 0, "waiter's status");
    Ok(())
}

/// Deleting a semaphore wakes its waiter with an error.
fn delete_wakes_waiter() -> R {
    let s = rt::semaphore()?;
    let w = rt::spawn(down_entry, s.idx(), 0, &Opts::new().cpu(other_cpu(0)))?;
    rt::sleep_us(10_000)?;
    base::TASK.delete_cap(s.idx()).ctx("delete")?;
    let status = w.signal_word()?;
    ensure!(status != 0, "down succeeded on a deleted semaphore");
    Ok(())
}
