//! The switch on the target: its capabilities, the kernel side of
//! [`Backend`], and the receive loop.
//!
//! One thread serves everything: the `svr` gate, every port's gate and
//! every port's kick Irq are bound to it with their labels
//! ([`vnet::service::labels`]).

use std::convert::Infallible;
use std::ptr::NonNull;
use std::sync::Arc;

use l4::server::SlotCaps;
use l4::{Cap, Error, Factory, IpcGate, SlotAlloc, Task, Thread, Timeout, Timeouts};
use l4_abi::utcb::MR_COUNT;
use l4_ipc::protocols::FactoryClient;
use l4_ipc::{MsgTag, RecvBufs, ServerTransport, UtcbServerTransport};
use l4re::env::{FIRST_PROGRAM_CAP, caps};
use uvmm::memory::Ram;
use vnet::options::{Component, Level, Options};
use vnet::service::{Backend, Service, labels};

/// The switch's capability slots (gates, Irqs, received capabilities).
static SLOTS: SlotAlloc<16> = SlotAlloc::new(FIRST_PROGRAM_CAP);

const FACTORY: Cap<Factory> = Cap::from_index(caps::FACTORY);
const TASK: Cap<Task> = Cap::from_index(caps::THIS_TASK);

/// `PROT_READ | PROT_WRITE`.
const PROT_RW: u64 = 3;

/// The kernel side.
struct Kernel {
    caps: SlotCaps<16>,
}

impl Backend for Kernel {
    type Caps = SlotCaps<16>;

    fn caps(&mut self) -> &mut SlotCaps<16> {
        &mut self.caps
    }

    fn create_irq(&mut self, label: u64) -> Result<u64, Error> {
        let thread = self.caps.thread;
        SLOTS.create(TASK, |slot| {
            let irq = FACTORY.create_irq(slot)?;
            irq.attach(thread, label)?;
            Ok(irq.index())
        })
    }

    fn attach(&mut self, ds: u64, offset: u64, size: u64) -> Result<Arc<Ram>, Error> {
        let len = usize::try_from(size).map_err(|_| Error::Inval)?;
        let local = l4re::env::attach(ds, size, offset, PROT_RW).map_err(|_| Error::Inval)?;
        let ptr = NonNull::new(local as *mut u8).ok_or(Error::Inval)?;
        // SAFETY: the runtime attached and mapped `size` bytes of the
        // dataspace read-write at `local`, for good (the switch never
        // detaches it); the switch only copies bytes in and out through
        // `Ram`, never holding references into the shared memory.
        Ok(Arc::new(unsafe { Ram::from_raw(ptr, len) }))
    }

    fn alloc(&mut self, size: u64) -> Result<(u64, Arc<Ram>), Error> {
        let ds = SLOTS.create(TASK, |slot| {
            let mut f = FactoryClient::new(caps::MEM_ALLOC);
            f.rcv = RecvBufs::cap_slot(slot);
            f.create_dataspace(size, None, None).map(|c| c.index())
        })?;
        match self.attach(ds, 0, size) {
            Ok(ram) => Ok((ds, ram)),
            Err(e) => {
                SLOTS.delete_cap(TASK, ds);
                Err(e)
            }
        }
    }

    fn is_alive(&mut self, cap: u64) -> bool {
        // A failing query is no proof of death: keep the port.
        TASK.cap_valid(cap).unwrap_or(true)
    }

    fn log(&mut self, line: &str) {
        println!("{line}");
    }
}

/// Starts the switch and serves forever.
pub fn run() -> Result<Infallible, String> {
    let opts = Options::parse(std::env::args_os().skip(1))?;
    let gate = l4re::env::get_cap("svr").ok_or(
        "no capability named 'svr' (start the switch with caps = { svr = channel:svr() })",
    )?;
    let thread = Cap::<Thread>::from_index(
        l4re::env::thread_cap().map_err(|e| format!("no thread capability (error {e})"))?,
    );
    Cap::<IpcGate>::from_index(gate)
        .bind(thread, labels::FACTORY)
        .map_err(|e| {
            format!("cannot bind the 'svr' gate: {e:?} (is it the server end, switch:svr()?)")
        })?;
    let kernel = Kernel {
        caps: SlotCaps::new(&SLOTS, TASK, FACTORY, thread)
            .map_err(|_| "no free capability slot")?,
    };
    let quiet = !opts.verbosity.shows(Component::Core, Level::Info);
    let mut svc = Service::with_options(kernel, opts);
    if !quiet {
        println!("virtio network switch ready");
    }
    serve(&mut svc)
}

/// The receive loop.
fn serve(svc: &mut Service<Kernel>) -> ! {
    let mut transport = UtcbServerTransport::new(RecvBufs::cap_slot(svc.backend.caps.rcv_slot));
    let mut mrs = [0u64; MR_COUNT];
    let mut reply: Option<MsgTag> = None;
    loop {
        transport.rcv = RecvBufs::cap_slot(svc.backend.caps.rcv_slot);
        let recv = match svc.next_timeout_us() {
            None => Timeout::NEVER,
            Some(0) => Timeout::ZERO,
            Some(us) => Timeout::from_us(us.min(3_600_000_000)),
        };
        transport.timeouts = Timeouts::new(Timeout::ZERO, recv);
        match transport.reply_or_wait(reply.take(), &mut mrs) {
            Ok((tag, label)) => reply = svc.serve(label, tag, &mut mrs),
            Err(Error::RecvTimeout) => {}
            // The reply could not be sent (the caller is gone) or the
            // receive was cancelled: nobody to answer, wait again.
            Err(_) => {}
        }
        svc.work_rounds();
        svc.timeout();
    }
}
