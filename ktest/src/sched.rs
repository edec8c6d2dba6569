//! Scheduling: fixed priorities, preemption, round robin, affinity and
//! every CPU, migration, cross-CPU IPC, refusals.

use l4::ipc::{self, ipc_call};
use l4::{Error, MsgTag, base, utcb};

use crate::fw::{Ctx, R};
use crate::rt::{
    self, LOW_PRIO, MAIN_PRIO, Opts, WAIT_US, busy, busy_until_moves, counter, need_cpus, online,
    other_cpu,
};

tests! {
    "sched.lower_priority_waits" => lower_priority_waits,
    "sched.timer_preempts_lower_priority" => preemption,
    "sched.round_robin_equal_priority" => round_robin,
    "sched.round_robin_after_higher_priority" => round_robin_after_higher,
    "sched.runs_on_every_cpu" => every_cpu,
    "sched.migrate_between_cpus" => migrate,
    "sched.run_thread_refuses_non_thread" => non_thread,
    "sched.offline_cpu_refused" => offline_cpu,
    "sched.idle_time" => idle_time,
    "smp.ping_pong_with_main" => ping_pong_main,
    "smp.ping_pong_two_cpus" => ping_pong_two,
}

/// Spinner iterations that take far longer than the few milliseconds a
/// test waits (an upper bound, so a kernel without preemption still
/// finishes the test).
const SPIN_LIMIT: u64 = 1 << 28;
/// Main-thread busy loop long enough for several timer ticks.
const BUSY: u64 = 1 << 24;

/// A lower-priority thread on the main thread's CPU does not run while the
/// main thread is busy, and does once it sleeps.
fn lower_priority_waits() -> R {
    let _w = rt::spawn(rt::spin_entry, 0, SPIN_LIMIT, &Opts::new().prio(LOW_PRIO))?;
    busy(BUSY);
    ensure_eq!(
        counter(0),
        0,
        "spinner progress while the main thread was busy"
    );
    ensure!(
        rt::sleep_until_moves(0)?,
        "the spinner never ran while the main thread slept"
    );
    Ok(())
}

/// The main thread's timeout preempts a lower-priority thread that never
/// blocks.
fn preemption() -> R {
    let _w = rt::spawn(rt::spin_entry, 0, SPIN_LIMIT, &Opts::new().prio(LOW_PRIO))?;
    let ran = rt::sleep_until_moves(0)?;
    let c = counter(0);
    rt::stop_spinners();
    ensure!(ran, "the spinner did not run while the main thread slept");
    ensure!(
        c < SPIN_LIMIT,
        "the main thread woke only after the spinner finished"
    );
    Ok(())
}

/// Two threads of equal priority on one CPU share it.
fn round_robin() -> R {
    let o = Opts::new().prio(LOW_PRIO).cpu(other_cpu(0));
    let _a = rt::spawn(rt::spin_entry, 0, u64::MAX, &o)?;
    let _b = rt::spawn(rt::spin_entry, 1, u64::MAX, &o)?;
    let mut us = 100_000;
    for _ in 0..5 {
        rt::sleep_us(us)?;
        if counter(0) > 0 && counter(1) > 0 {
            break;
        }
        us *= 2;
    }
    let (a, b) = (counter(0), counter(1));
    rt::stop_spinners();
    ensure!(a > 0 && b > 0, "counters {a} and {b}: one thread never ran");
    Ok(())
}

/// Two threads of equal priority queued behind a higher one (whose CPU
/// needs no tick meanwhile: they cannot run anyway) share the CPU once it
/// stops: the switch to the first starts the tick for the turns.
fn round_robin_after_higher() -> R {
    need_cpus(2)?;
    let cpu = other_cpu(0);
    let _h = rt::spawn(
        rt::busy_entry,
        BUSY * 2,
        0,
        &Opts::new().prio(LOW_PRIO + 10).cpu(cpu),
    )?;
    let o = Opts::new().prio(LOW_PRIO).cpu(cpu);
    let _a = rt::spawn(rt::spin_entry, 0, u64::MAX, &o)?;
    let _b = rt::spawn(rt::spin_entry, 1, u64::MAX, &o)?;
    // Waiting without a timeout: a timer set for one would also give
    // that CPU a chance to start its tick.
    for _ in 0..64 {
        busy(BUSY);
        if counter(0) > 0 && counter(1) > 0 {
            break;
        }
    }
    let (a, b) = (counter(0), counter(1));
    rt::stop_spinners();
    ensure!(a > 0 && b > 0, "counters {a} and {b}: one thread never ran");
    Ok(())
}

/// A thread placed on each other CPU runs in parallel with the busy main
/// thread.
fn every_cpu() -> R {
    need_cpus(2)?;
    for cpu in 1..64 {
        if online() & (1 << cpu) == 0 {
            continue;
        }
        rt::COUNTERS[0].store(0, core::sync::atomic::Ordering::Relaxed);
        let w = rt::spawn(
            rt::spin_entry,
            0,
            u64::MAX,
            &Opts::new().prio(LOW_PRIO).cpu(cpu),
        )?;
        let c = busy_until_moves(0, 0, 1 << 28);
        drop(w);
        ensure!(c > 0, "the thread on CPU {cpu} made no progress");
    }
    Ok(())
}

/// A server moved from CPU to CPU keeps answering.
fn migrate() -> R {
    need_cpus(2)?;
    let w = rt::spawn(rt::echo_entry, 0, 0, &Opts::new().cpu(other_cpu(0)))?;
    for round in 0..2 {
        for cpu in 0..64 {
            if online() & (1 << cpu) == 0 {
                continue;
            }
            w.run(MAIN_PRIO, cpu)?;
            let v = round * 100 + cpu as u64;
            let m = ipc::call_words(w.cap().sel(), 0, &[v], ipc::timeouts_us(WAIT_US))
                .ctx("call after moving the server")?;
            ensure!(m.word(0) == v + 1, "on CPU {cpu}: reply {}", m.word(0));
        }
    }
    Ok(())
}

/// RunThread needs a thread.
fn non_thread() -> R {
    expect_some_err!(
        base::SCHEDULER.run_thread(base::LOG.cast(), MAIN_PRIO, 1),
        "run the console"
    );
    Ok(())
}

/// RunThread refuses a CPU set with no online CPU.
fn offline_cpu() -> R {
    let w = rt::spawn(rt::park_entry, 0, 0, &Opts::new().unstarted())?;
    expect_some_err!(
        base::SCHEDULER.run_thread(w.cap(), MAIN_PRIO, 1 << 63),
        "run on CPU 63 only"
    );
    Ok(())
}

/// The scheduler reports idle time.
fn idle_time() -> R {
    base::SCHEDULER
        .idle_time(online())
        .ctx("idle time")
        .map(|_| ())
}

/// The main thread calls a server on another CPU a thousand times.
fn ping_pong_main() -> R {
    need_cpus(2)?;
    let w = rt::spawn(rt::echo_entry, 0, 0, &Opts::new().cpu(other_cpu(0)))?;
    for i in 0..1000u64 {
        utcb::set_mr(0, i);
        let t = ipc::timeouts_us(WAIT_US);
        if let Err(e) = ipc_call(w.cap().sel(), MsgTag::new(0, 1, 0, 0), t).0 {
            fail!("round trip {i}: {e:?}");
        }
        ensure!(
            utcb::mr(0) == i + 1,
            "round trip {i}: reply {}",
            utcb::mr(0)
        );
    }
    Ok(())
}

/// Two threads on two other CPUs ping-pong a thousand times.
fn ping_pong_two() -> R {
    need_cpus(2)?;
    let a_cpu = other_cpu(0);
    let b_cpu = if rt::cpu_count() >= 3 {
        other_cpu(1)
    } else {
        0
    };
    let server = rt::spawn(rt::echo_entry, 0, 0, &Opts::new().cpu(b_cpu))?;
    let client = rt::spawn(
        rt::pinger_entry,
        server.idx(),
        1000,
        &Opts::new().cpu(a_cpu),
    )?;
    // Wait for the report as long as the round trips go on.
    let mut seen = 0;
    let m = loop {
        match client.recv(WAIT_US) {
            Ok(m) => break m,
            Err(Error::RecvTimeout) if counter(0) > seen => seen = counter(0),
            Err(e) => fail!(
                "no report from the pinger ({e:?}); stuck after {} round trips",
                counter(0)
            ),
        }
    };
    ensure!(
        m.word(0) == 1000,
        "{} round trips between CPU {a_cpu} and CPU {b_cpu}, then status {}",
        m.word(0),
        m.word(1)
    );
    Ok(())
}
