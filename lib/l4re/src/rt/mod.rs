//! The runtime binary (AArch64): entry, heap, the L4 backend and the serve
//! loop around [`l4re::runtime::Runtime`].

mod heap;
mod start;
mod sys;

use alloc::string::String;
use alloc::vec::Vec;

use l4::abi::fault::{EXC_REGS_WORDS, ExcRegs, PageFault};
use l4::abi::utcb::BR_COUNT;
use l4::{Error, MsgTag, Timeout, Timeouts};
use l4_env::Env;
use l4re::runtime::{Action, Config, PfAction, Runtime};

extern crate alloc;

pub use l4re::env::PROGRAM_PRIO;
/// `l4re_dbg` bit: log every system call.
pub const DBG_TRACE_SYSCALLS: u32 = 0x1;
/// Exit code when the program cannot be started (`-ENOEXEC`).
const EXIT_NOEXEC: i64 = -8;

/// The runtime's Rust entry (from `_start`).
#[unsafe(no_mangle)]
extern "C" fn l4re_main() -> ! {
    // SAFETY: the loader maps the read-only environment page at ENV_VA
    // for the task's life before starting this thread (the l4-env
    // contract); `Env` is plain data valid for any bytes.
    let env: &'static Env = unsafe { &*(l4_env::ENV_VA as *const Env) };
    if !env.is_valid() {
        sys::log_str("l4re: the environment page is not valid; stopping\n");
        sys::parent_exit(EXIT_NOEXEC);
        halt();
    }
    let args: Vec<String> = env.args().map(String::from).collect();

    let envs: Vec<String> = env.envs().map(String::from).collect();
    let cfg = Config {
        args,
        envs,
        program_ds: l4_env::caps::PROGRAM,
        trampoline: start::trampoline(),
        cpus: sys::online_cpus(),
        trace: env.dbg & DBG_TRACE_SYSCALLS != 0,
        startup_report: env.dbg & l4re::env::DBG_BOOT != 0,
        cpu_id: env.cpu_id,
    };
    let mut rt = Runtime::new(sys::L4, cfg);
    if let Err(e) = rt.load() {
        rt.report(&alloc::format!("cannot start: {}", e.0));
        sys::parent_exit(EXIT_NOEXEC);
        halt();
    }
    serve(&mut rt)
}

/// The receive timeout until `deadline` (runtime clock, ns).
fn timeout_until(now: u64, deadline: Option<u64>) -> Timeout {
    match deadline {
        None => Timeout::NEVER,
        Some(d) if d <= now => Timeout::ZERO,
        Some(d) => Timeout::from_us((d - now).div_ceil(1000)),
    }
}

/// The answer to the message just received.
// One value lives on the serve loop's stack; boxing would allocate per call.
#[allow(clippy::large_enum_variant)]
enum Reply {
    /// A page fault: the thread retries.
    Empty,
    /// An exception: the thread's new registers.
    Regs(ExcRegs),
    /// Someone else: an error.
    Error(Error),
}

/// Serves page faults and exceptions until the task ends.
fn serve(rt: &mut Runtime<sys::L4>) -> ! {
    let mut reply: Option<Reply> = None;
    loop {
        for (cap, regs) in rt.take_wakeups() {
            sys::deferred_reply(cap, &regs);
        }
        let recv = timeout_until(sys::now_ns(), rt.next_deadline());
        // Accept no items from the threads served.
        for i in 0..BR_COUNT.min(2) {
            l4::utcb::set_br(i, 0);
        }
        // The reply goes into the message registers only now: the
        // deferred replies above used them too.
        let (res, label) = match reply.take() {
            // The caller waits for the reply: never block on it.
            Some(r) => {
                let tag = match r {
                    Reply::Empty => MsgTag(0),
                    Reply::Regs(regs) => sys::exception_reply(&regs),
                    Reply::Error(e) => MsgTag::reply(Err(e)),
                };
                l4::ipc::ipc_reply_and_wait(tag, Timeouts::new(Timeout::ZERO, recv))
            }
            None => l4::ipc::ipc_wait(Timeouts::new(Timeout::NEVER, recv)),
        };
        match res {
            Ok(tag) if tag.is_irq() && label == l4re::runtime::STDIN_IRQ_LABEL => {
                rt.stdin_signalled();
            }
            Ok(tag) if tag.is_page_fault() => {
                let pf = PageFault::from_words([l4::utcb::mr(0), l4::utcb::mr(1)]);
                match rt.page_fault(pf) {
                    PfAction::Retry => reply = Some(Reply::Empty),
                    PfAction::Exit => halt(),
                }
            }
            Ok(tag) if tag.is_exception() => {
                let mut w = [0u64; EXC_REGS_WORDS];
                l4::utcb::mrs(&mut w[..(tag.words() as usize).min(EXC_REGS_WORDS)]);
                let Some(regs) =
                    ExcRegs::from_words(&w).filter(|_| tag.words() as usize >= EXC_REGS_WORDS)
                else {
                    continue;
                };
                match rt.exception(regs) {
                    Action::Reply(r) => reply = Some(Reply::Regs(r)),
                    Action::NoReply => {}
                    Action::Exit => halt(),
                }
            }
            Ok(_) => {
                // Nobody else should call the runtime's thread; a caller
                // gets an error instead of waiting forever.
                reply = Some(Reply::Error(Error::BadProto));
            }
            // A timeout, a canceled wait, or a reply that could not be
            // delivered (the thread is gone): nothing to answer.
            Err(_) => {}
        }
        rt.tick();
        if rt.exited() {
            halt();
        }
    }
}

/// Blocks forever (the task is over; the parent removes it).
fn halt() -> ! {
    loop {
        let _ = l4::ipc::sleep(Timeout::NEVER);
    }
}

#[panic_handler]
fn panic(info: &core::panic::PanicInfo) -> ! {
    l4::println!("l4re: runtime panic: {}", info);
    sys::parent_exit(-(l4re::linux::sig::SIGABRT));
    halt()
}
