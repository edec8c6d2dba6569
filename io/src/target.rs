//! The real system: capabilities from the task's environment, device
//! memory from `sigma0`, interrupts through `icu`, and the server loop.
//!
//! io's main thread serves everything: each bus's gate (the capability
//! named like the bus) and each MMIO dataspace's gate are bound to it with
//! the labels [`Service`] gives them.

use std::convert::Infallible;

use l4::{Cap, Error, Factory, Icu, IpcGate, Sigma0, SlotAlloc, Task, Thread};
use l4_abi::proto::icu::mode;
use l4_ipc::{RecvBufs, Server, UtcbServerTransport};
use l4re::env::{FIRST_PROGRAM_CAP, caps};

use crate::Options;
use crate::model::Limits;
use crate::service::{Backend, PAGE, Service};

/// io's capability slots (gates, Irqs).
static SLOTS: SlotAlloc<16> = SlotAlloc::new(FIRST_PROGRAM_CAP);

const FACTORY: Cap<Factory> = Cap::from_index(caps::FACTORY);
const TASK: Cap<Task> = Cap::from_index(caps::THIS_TASK);
const THREAD: Cap<Thread> = Cap::from_index(caps::MAIN_THREAD);

/// Physical address bits of the machine (the kernel maps device memory
/// below `1 << 40`).
const PHYS_BITS: u32 = 40;

/// The kernel side of the service.
struct Kernel {
    sigma0: Cap<Sigma0>,
    icu: Cap<Icu>,
}

/// Reserves `[addr, addr + size)` of io's address space, so that neither
/// the heap nor `mmap` ever puts anything where sigma0 maps the device 1:1.
fn reserve(addr: u64, size: u64) -> Result<(), Error> {
    // SAFETY: a fixed, no-replace anonymous mapping never touches memory
    // the program uses; it fails instead if anything is there.
    let got = unsafe {
        libc::mmap(
            addr as *mut libc::c_void,
            size as usize,
            libc::PROT_NONE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_FIXED_NOREPLACE,
            -1,
            0,
        )
    };
    if got as u64 == addr {
        Ok(())
    } else {
        Err(Error::Exist)
    }
}

impl Backend for Kernel {
    fn map_mmio(&mut self, pa: u64, size: u64) -> Result<u64, Error> {
        reserve(pa, size).inspect_err(|_| {
            eprintln!("io: device memory {pa:#x}+{size:#x} collides with io's own memory");
        })?;
        let mut at = pa;
        while at < pa + size {
            // sigma0 maps 1:1: io's address of the device is its physical one.
            self.sigma0.map_device(at, 12).inspect_err(|e| {
                eprintln!("io: sigma0 refuses device memory {at:#x}: {e:?}");
            })?;
            at += PAGE;
        }
        Ok(pa)
    }

    fn create_gate(&mut self, label: u64) -> Result<u64, Error> {
        SLOTS
            .create(TASK, |slot| FACTORY.create_gate(slot, label, Some(THREAD)))
            .map(|g| g.index())
    }

    fn create_irq(&mut self, line: u64, trigger: u64) -> Result<u64, Error> {
        SLOTS
            .create(TASK, |slot| {
                let irq = FACTORY.create_irq(slot)?;
                if trigger != mode::NONE {
                    self.icu.set_mode(line, trigger)?;
                }
                self.icu.bind(line, irq)?;
                Ok(slot)
            })
            .inspect_err(|&e| {
                let hint = if e == Error::Perm {
                    " (this kernel wants the W right on the Icu: start io with icu = L4.Env.icu:m(\"rw\"))"
                } else {
                    ""
                };
                eprintln!("io: cannot bind interrupt {line}: {e:?}{hint}");
            })
    }
}

/// Reads the configuration, binds each bus's gate and serves forever.
pub fn run(opts: &Options) -> Result<Infallible, String> {
    let env = l4re::env::env().ok_or("not running as an L4Re task (no environment page)")?;
    let named: Vec<String> = env.named_caps().map(|(n, _)| n.to_string()).collect();
    let need = |name: &str| {
        env.cap(name).ok_or_else(|| {
            format!(
                "no capability named '{name}' (start io with caps = {{ {name} = L4.Env.{name} }})"
            )
        })
    };
    let icu: Cap<Icu> = Cap::from_index(need("icu")?);
    let sigma0: Cap<Sigma0> = Cap::from_index(need("sigma0")?);
    let lines = icu
        .info()
        .map_err(|e| format!("the 'icu' capability does not answer Icu::info: {e:?}"))?
        .nr_irqs;
    let limits = Limits {
        phys_bits: PHYS_BITS,
        // sigma0 refuses RAM itself; io does not know where it is.
        ram: Vec::new(),
        first_irq: 32,
        irq_lines: lines,
    };
    let cfg = crate::load_files(&opts.files, limits, Some(named))?;
    if opts.verbose {
        print!("{}", crate::config::summary(&cfg));
    }
    let svc = Service::new(cfg, Kernel { sigma0, icu });
    let mut names = Vec::new();
    for bus in &svc.config().buses {
        let label = svc
            .bus_label(&bus.name)
            .ok_or_else(|| format!("no label for bus '{}'", bus.name))?;
        let gate: Cap<IpcGate> = Cap::from_index(need(&bus.name)?);
        gate.bind(THREAD, label).map_err(|e| {
            format!(
                "cannot serve virtual bus '{}' on its capability: {e:?} (is it the server end, channel:svr()?)",
                bus.name
            )
        })?;
        names.push(format!("{} ({} devices)", bus.name, bus.devices.len()));
    }
    println!("io: ready, serving {}", names.join(", "));
    let transport = UtcbServerTransport::new(RecvBufs::new());
    Server::new(svc, transport).run()
}
