//! The server on the target: capabilities from the task's environment,
//! the terminal (the kernel console, a Vcon), and the receive loop around
//! [`cons::Service`].
//!
//! One thread serves everything: the `cons` factory gate, every client's
//! log gate and the terminal's input interrupt are bound to it with their
//! labels ([`cons::service::labels`]). The receive timeout drives partial
//! lines and the look for gone clients; without an input interrupt (a
//! terminal that is not an Icu) the terminal is polled every
//! [`POLL_MS`].

use std::convert::Infallible;
use std::fmt;

use cons::service::{Backend, Service, labels};
use cons::{Console, Options};
use l4::server::{ServerCaps, SlotCaps};
use l4::{Cap, Error, Factory, Icu, IpcGate, SlotAlloc, Task, Thread, Timeout, Timeouts, Vcon};
use l4_abi::utcb::MR_COUNT;
use l4_ipc::{MsgTag, RecvBufs, ServerTransport, UtcbServerTransport};
use l4re::env::{Env, FIRST_PROGRAM_CAP, caps};

/// The first capability slot cons allocates for itself (gates, received
/// Irqs, receive slots): the program's part of the table (the runtime
/// allocates below it).
pub const SLOT_BASE: u64 = FIRST_PROGRAM_CAP;
/// cons's capability slots: `SLOT_BASE .. SLOT_BASE + 1024`.
static SLOTS: SlotAlloc<16> = SlotAlloc::new(SLOT_BASE);

/// The capability of the program's main thread (the one running `main`),
/// which the gates and the input Irq are bound to. `l4-env` has no index
/// for it yet; the runtime must map it here (proposed as
/// `l4_env::caps::MAIN_THREAD`).
pub const MAIN_THREAD: u64 = 6;

/// How often the terminal is read when it has no input interrupt, in ms.
pub const POLL_MS: u64 = 20;

const FACTORY: Cap<Factory> = Cap::from_index(caps::FACTORY);
const TASK: Cap<Task> = Cap::from_index(caps::THIS_TASK);

/// Why the server could not start.
#[derive(Debug)]
pub enum StartError {
    /// The environment page is missing or of another version.
    NoEnv,
    /// A named capability is missing.
    NoCap(String),
    /// The `cons` gate could not be bound to the server thread.
    Bind(Error),
    /// No capability slot for the receive buffer.
    NoSlots,
}

impl fmt::Display for StartError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StartError::NoEnv => f.write_str("not running as an L4Re task (no environment page)"),
            StartError::NoCap(n) => write!(
                f,
                "no capability named '{n}' (start cons with caps = {{ {n} = ... }})"
            ),
            StartError::Bind(e) => write!(
                f,
                "cannot bind the 'cons' gate to thread capability {MAIN_THREAD:#x}: {e:?} (does the runtime map the main thread there, and is 'cons' the server end, cons:svr()?)"
            ),
            StartError::NoSlots => f.write_str("no free capability slot"),
        }
    }
}

impl std::error::Error for StartError {}

/// The environment page the loader mapped.
fn env() -> Result<&'static Env, StartError> {
    l4re::env::env().ok_or(StartError::NoEnv)
}

/// The kernel side of the service.
struct Kernel {
    term: Cap<Vcon>,
    caps: SlotCaps<16>,
}

impl Backend for Kernel {
    type Caps = SlotCaps<16>;

    fn caps(&mut self) -> &mut SlotCaps<16> {
        &mut self.caps
    }

    fn write_output(&mut self, bytes: &[u8]) {
        // Nowhere to report a failing terminal.
        let _ = self.term.write(bytes);
    }

    fn read_input(&mut self, buf: &mut [u8]) -> Result<(usize, u64), Error> {
        let n = buf.len().min(l4::msg::VCON_READ_MAX);
        self.term.read(&mut buf[..n])
    }

    fn unmask_input(&mut self) {
        let _ = self.term.cast::<Icu>().unmask(0);
    }
}

/// Binds an Irq to the terminal's input line (the Vcon is a one-line Icu).
fn setup_input(term: Cap<Vcon>, thread: Cap<Thread>) -> Result<(), Error> {
    SLOTS.create(TASK, |slot| {
        let irq = FACTORY.create_irq(slot)?;
        irq.bind(thread, labels::INPUT)?;
        term.cast::<Icu>().bind(0, irq)
    })
}

/// Starts the server and serves forever.
pub fn run(opts: Options) -> Result<Infallible, StartError> {
    let env = env()?;
    let gate = env
        .cap("cons")
        .ok_or_else(|| StartError::NoCap("cons".into()))?;
    let term: Cap<Vcon> = match &opts.frontend {
        Some(name) => Cap::from_index(
            env.cap(name)
                .ok_or_else(|| StartError::NoCap(name.clone()))?,
        ),
        None => Cap::from_index(caps::LOG),
    };
    let thread: Cap<Thread> = Cap::from_index(MAIN_THREAD);
    Cap::<IpcGate>::from_index(gate)
        .bind(thread, labels::FACTORY)
        .map_err(StartError::Bind)?;
    let input = setup_input(term, thread);
    let kernel = Kernel {
        term,
        caps: SlotCaps::new(&SLOTS, TASK, FACTORY, thread).map_err(|_| StartError::NoSlots)?,
    };
    let mut svc = Service::new(Console::new(opts), kernel);
    svc.start();
    let polling = input.is_err();
    if let Err(e) = input {
        svc.message(&format!(
            "WARNING: terminal without input interrupt ({e:?}); polling every {POLL_MS} ms"
        ));
    }
    serve(&mut svc, polling)
}

/// The receive loop.
fn serve(svc: &mut Service<Kernel>, polling: bool) -> ! {
    let mut transport = UtcbServerTransport::new(RecvBufs::cap_slot(svc.backend.caps.rcv_slot));
    let mut mrs = [0u64; MR_COUNT];
    let mut reply: Option<MsgTag> = None;
    let mut last_poll = 0;
    loop {
        transport.rcv = RecvBufs::cap_slot(svc.backend.caps.rcv_slot);
        let mut wait = svc.next_timeout_ms();
        if polling {
            wait = Some(wait.map_or(POLL_MS, |w| w.min(POLL_MS)));
        }
        let recv = wait.map_or(Timeout::NEVER, |ms| {
            Timeout::from_us(ms.clamp(1, 3_600_000) * 1000)
        });
        transport.timeouts = Timeouts::new(Timeout::ZERO, recv);
        match transport.reply_or_wait(reply.take(), &mut mrs) {
            Ok((tag, label)) => reply = svc.serve(label, tag, &mut mrs),
            Err(Error::RecvTimeout) => svc.timeout(),
            // The reply could not be sent (the caller is gone) or the
            // receive was cancelled: nobody to answer, wait again.
            Err(_) => {}
        }
        if polling && svc.backend.caps.now_ms() >= last_poll + POLL_MS {
            last_poll = svc.backend.caps.now_ms();
            svc.poll_input();
        }
        if svc.next_timeout_ms() == Some(0) {
            svc.timeout();
        }
    }
}
