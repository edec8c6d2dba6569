//! uvmm as an L4Re task: capabilities from the environment, files from
//! `rom/`, guest RAM attached from its dataspace (with its host-physical
//! address from moe, for `-i`), the devices of the `vbus` capability,
//! console output to the log and input from it, the VM run on the
//! kernel's Vm object ([`crate::l4vm`]).
//!
//! Not offered yet: console capabilities other than `log`.

use std::io::{Read, Write};
use std::process::ExitCode;
use std::ptr::NonNull;
use std::sync::{Arc, OnceLock};

use l4::abi::CapRights;
use l4::cap::{Factory, Irq};
use l4::{Cap, Scheduler, Vm};
use l4_ipc::protocols::{DataspaceClient, DataspacePhysClient, ds_flags};
use l4_ipc::vbus::{ResourceKind, VbusClient};
use l4_ipc::virtio::VirtioClient;
use l4_ipc::{CapArg, RecvBufs};
use l4re::env::caps;
use uvmm::devices::ConsoleOut;
use uvmm::devices::virtio::proxy::{FastPath, FastPathFn, Port, ProxyIrq, Remote};
use uvmm::machine::{self, ConsoleInput, FileBytes, Host};
use uvmm::memory::{Ram, RamRegion};
use uvmm::passthrough::{BusDevice, BusResource};
use uvmm::{Options, info};

use crate::l4vm::{AttachedRam, L4Vm, SLOTS};

/// Guest console output: the task's log (standard output), written by a
/// thread of its own in lines. A guest's UART hands over one byte per
/// register write; one log message per byte would cost the log's server
/// (cons) a request each. What has no newline yet goes out once the guest
/// paused for [`LOG_IDLE`] (a shell prompt).
#[derive(Clone)]
struct LogOut(Arc<(std::sync::Mutex<Vec<u8>>, std::sync::Condvar)>);

/// How long a partial line waits for more output.
const LOG_IDLE: std::time::Duration = std::time::Duration::from_millis(20);
/// Most bytes held back.
const LOG_HOLD_MAX: usize = 1024;

impl LogOut {
    /// The log writer and its thread.
    fn start() -> LogOut {
        let out = LogOut(Arc::default());
        let shared = out.0.clone();
        let spawned = std::thread::Builder::new()
            .name("log-out".into())
            .spawn(move || log_writer(&shared));
        if let Err(e) = spawned {
            uvmm::warn!("vmm", "no console output thread: {e}");
        }
        out
    }
}

/// Writes what [`LogOut`] collects: whole lines at once, a partial line
/// after [`LOG_IDLE`] without more.
fn log_writer(shared: &(std::sync::Mutex<Vec<u8>>, std::sync::Condvar)) {
    let (buf, more) = shared;
    let mut held = uvmm::bus::lock(buf);
    loop {
        while held.is_empty() {
            held = more
                .wait(held)
                .unwrap_or_else(std::sync::PoisonError::into_inner);
        }
        // A partial line waits for its end, or for the guest to pause.
        if !held.contains(&b'\n') && held.len() < LOG_HOLD_MAX {
            let before = held.len();
            held = more
                .wait_timeout(held, LOG_IDLE)
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .0;
            if held.len() != before {
                continue;
            }
        }
        let cut = match held.iter().rposition(|&b| b == b'\n') {
            Some(nl) if held.len() < LOG_HOLD_MAX => nl + 1,
            _ => held.len(),
        };
        let bytes: Vec<u8> = held.drain(..cut).collect();
        drop(held);
        let mut out = std::io::stdout().lock();
        // Nowhere to report a failing log.
        let _ = out.write_all(&bytes);
        let _ = out.flush();
        drop(out);
        held = uvmm::bus::lock(buf);
    }
}

impl ConsoleOut for LogOut {
    fn write(&mut self, bytes: &[u8]) {
        let (buf, more) = &*self.0;
        let mut held = uvmm::bus::lock(buf);
        let was_empty = held.is_empty();
        held.extend_from_slice(bytes);
        // The writer needs waking only for what it waits for: the first
        // byte, a line's end, a full buffer. Waking it for every byte of a
        // line (a PL011 sends one per exit) cost two system calls a byte.
        let wake = was_empty || bytes.contains(&b'\n') || held.len() >= LOG_HOLD_MAX;
        drop(held);
        if wake {
            more.notify_one();
        }
    }
}

/// The capability of io's virtual bus.
const VBUS_CAP: &str = "vbus";

/// The environment; remembers the RAM it attached and the vbus for the Vm.
#[derive(Default)]
struct L4Host {
    rams: Vec<AttachedRam>,
    vbus: Option<u64>,
    /// The virtio proxies' notification Irqs with their INTIDs, for the
    /// kernel to inject.
    virqs: Vec<(u64, u32)>,
    /// The log writer, once a console uses it.
    log: Option<LogOut>,
    /// The Vm, once it exists (the devices are made before it).
    vm: Arc<OnceLock<Cap<Vm>>>,
}

impl Host for L4Host {
    fn read_file(&mut self, path: &str) -> Result<FileBytes, String> {
        let file = std::fs::File::open(path).map_err(|e| e.to_string())?;
        // SAFETY: boot modules (`rom/...`) are read-only dataspaces nobody
        // writes, so the mapping's bytes never change under the slice.
        match unsafe { memmap2::Mmap::map(&file) } {
            Ok(m) => Ok(Box::new(m)),
            // Files that cannot be mapped are read.
            Err(_) => std::fs::read(path)
                .map(|v| Box::new(v) as FileBytes)
                .map_err(|e| e.to_string()),
        }
    }

    fn ram(&mut self, cap: &str, want_phys: bool) -> Result<(Arc<Ram>, Option<u64>), String> {
        let index = l4re::env::get_cap(cap).ok_or_else(|| {
            format!("no capability named '{cap}' (start uvmm with caps = {{ {cap} = <dataspace>:m(\"rw\") }})")
        })?;
        let (size, flags) = DataspaceClient::new(index)
            .info()
            .map_err(|e| format!("'{cap}' does not answer as a dataspace: {e:?}"))?;
        if flags & ds_flags::W == 0 {
            return Err(format!(
                "dataspace '{cap}' is read-only (hand it over with :m(\"rw\"))"
            ));
        }
        let len = usize::try_from(size).map_err(|_| format!("dataspace '{cap}' is too big"))?;
        // PROT_READ | PROT_WRITE | PROT_EXEC (the guest runs code from it),
        // mapped on demand: moe clears RAM only when it is first mapped,
        // and the Vm gets a block when the guest first touches it
        // (`L4Vcpu::map_on_demand`).
        let prot = 7 | l4re::linux::l4re_sys::ATTACH_ON_DEMAND;
        let local = l4re::env::attach(index, size, 0, prot)
            .map_err(|e| format!("cannot attach dataspace '{cap}' (error {e})"))?;
        let ptr = NonNull::new(local as *mut u8)
            .ok_or_else(|| format!("dataspace '{cap}' attached at 0"))?;
        info!("ram", "dataspace '{cap}': {size:#x} bytes at {local:#x}");
        self.rams.push(AttachedRam {
            name: cap.to_string(),
            local,
            size,
        });
        // SAFETY: the runtime attached the whole dataspace read-write at
        // `local` for good (uvmm never detaches it) and maps what is
        // touched; uvmm only copies bytes in and out of it.
        let ram = unsafe { Ram::from_raw(ptr, len) };
        if !want_phys {
            return Ok((Arc::new(ram), None));
        }
        // The host-physical address, when the whole dataspace is one
        // contiguous range (moe's Continuous dataspaces; moe clears all of
        // it before it answers).
        let phys = match DataspacePhysClient::new(index).phys(0) {
            Ok((pa, n)) if n >= size => {
                info!("ram", "dataspace '{cap}' is at host-physical {pa:#x}");
                Some(pa)
            }
            Ok((pa, n)) => {
                info!(
                    "ram",
                    "dataspace '{cap}' is not contiguous ({n:#x} bytes at {pa:#x})"
                );
                None
            }
            Err(e) => {
                info!("ram", "dataspace '{cap}' has no physical address: {e:?}");
                None
            }
        };
        Ok((Arc::new(ram), phys))
    }

    fn vbus_devices(&mut self) -> Result<Vec<BusDevice>, String> {
        let Some(cap) = l4re::env::get_cap(VBUS_CAP) else {
            return Ok(Vec::new());
        };
        self.vbus = Some(cap);
        let mut bus = VbusClient::new(cap);
        let e = |what: String| move |err| format!("{what}: {err:?}");
        let list = bus.devices().map_err(e("listing the devices".into()))?;
        let mut out = Vec::new();
        for (index, d) in list {
            let mut ids: Vec<String> = Vec::new();
            if !d.hid.is_empty() {
                ids.push(d.hid.to_string());
            }
            let compatibles = bus
                .compatibles(index)
                .map_err(e(format!("device {}", d.name)))?;
            ids.extend(compatibles.iter().map(|c| c.to_string()));
            let resources = bus
                .resources(index)
                .map_err(e(format!("device {}", d.name)))?
                .iter()
                .zip(0u32..)
                .map(|(r, n)| match r.kind {
                    ResourceKind::Mmio => BusResource::Mmio {
                        index: n,
                        start: r.start,
                        size: r.len(),
                    },
                    ResourceKind::Irq => BusResource::Irq {
                        index: n,
                        line: r.start as u32,
                    },
                })
                .collect();
            out.push(BusDevice {
                index,
                name: d.name.to_string(),
                ids,
                resources,
            });
        }
        info!("dev", "vbus: {} device(s)", out.len());
        Ok(out)
    }

    fn console(&mut self, cap: &str) -> Result<Box<dyn ConsoleOut>, String> {
        // The log is the task's standard output; other Vcon capabilities
        // need a Vcon client the runtime does not offer programs yet.
        if cap == machine::DEFAULT_VCON_CAP {
            Ok(Box::new(self.log.get_or_insert_with(LogOut::start).clone()))
        } else {
            Err("only the log can be a console yet".into())
        }
    }

    fn virtio_port(
        &mut self,
        cap: &str,
        ram: &[(String, RamRegion)],
        irq: Arc<ProxyIrq>,
    ) -> Result<Box<dyn Port>, String> {
        let index =
            l4re::env::get_cap(cap).ok_or_else(|| format!("no capability named '{cap}'"))?;
        // The Irq the device triggers for the guest: bound to the first
        // vCPU once it runs ([`L4Vm::route_virq`]), so that the kernel
        // injects the interrupt.
        let slot = SLOTS.alloc().ok_or("out of capability slots")?;
        let notify = Cap::<Factory>::from_index(caps::FACTORY)
            .create_irq(slot)
            .map_err(|e| format!("cannot create the notification Irq: {e:?}"))?
            .index();
        let kick_slot = SLOTS.alloc().ok_or("out of capability slots")?;
        let mut client = VirtioClient::new(index);
        client.rcv = RecvBufs::cap_slot(kick_slot);
        let kick = client
            .register_iface(CapArg::new(notify, CapRights::RWS))
            .map_err(|e| format!("'{cap}' does not take a driver: {e:?}"))?
            .index();
        for (dscap, r) in ram {
            let ds = l4re::env::get_cap(dscap)
                .ok_or_else(|| format!("no RAM capability named '{dscap}'"))?;
            client
                .register_ds(CapArg::new(ds, CapRights::RWS), r.gpa, r.ds_offset, r.size)
                .map_err(|e| {
                    format!(
                        "'{cap}' does not take guest RAM {:#x}..{:#x}: {e:?}",
                        r.gpa,
                        r.end()
                    )
                })?;
        }
        irq.inject_directly(Box::new(move || Cap::<Irq>::from_index(notify).notify()));
        self.virqs.push((notify, irq.intid()));
        Ok(Box::new(Remote {
            client,
            kick: Box::new(move || {
                // A device that is gone is not kicked.
                Cap::<Irq>::from_index(kick).notify();
            }),
            fast_path: Some(shortcuts(self.vm.clone(), Cap::from_index(kick))),
        }))
    }
}

/// A proxy's [`FastPath`] as shortcuts of the Vm: the notification a
/// doorbell of the device's Irq `kick`, the interrupt status and
/// acknowledgement constant registers. Each call first removes what the
/// last one set.
fn shortcuts(vm: Arc<OnceLock<Cap<Vm>>>, kick: Cap<Irq>) -> FastPathFn {
    let mut set: Option<FastPath> = None;
    let mut refused = false;
    Box::new(move |regs| {
        let Some(&vm) = vm.get() else {
            return false;
        };
        let remove = |r: FastPath| {
            for gpa in [r.notify, r.status, r.ack] {
                let _ = vm.remove_shortcut(gpa);
            }
        };
        if let Some(old) = set.take() {
            remove(old);
        }
        let Some(r) = regs else {
            return false;
        };
        let done = vm
            .set_doorbell(r.notify, kick)
            .and_then(|()| vm.set_constant(r.status, r.status_value))
            .and_then(|()| vm.set_constant(r.ack, 0));
        match done {
            Ok(()) => {
                set = Some(r);
                true
            }
            Err(e) => {
                remove(r);
                if !std::mem::replace(&mut refused, true) {
                    uvmm::warn!(
                        "dev",
                        "the kernel does not answer the virtio registers at {:#x} ({e:?}): every access exits",
                        r.notify
                    );
                }
                false
            }
        }
    })
}

/// How long console input waits for a guest that does not read its
/// console before it is dropped for that console.
const CONSOLE_STALL_MS: u32 = 50;

/// Feeds what is typed into the log to the guest's consoles.
fn console_input(consoles: Vec<ConsoleInput>) {
    if consoles.is_empty() {
        return;
    }
    // The guest's terminal echoes and translates; cons (or the kernel
    // console) must pass keys through as typed, as L4Re's Vcon front-ends
    // ask it to.
    if let Err(e) = Cap::<l4::Vcon>::from_index(caps::LOG).make_raw() {
        uvmm::warn!("vmm", "cannot put the console into raw mode: {e:?}");
    }
    let spawned = std::thread::Builder::new()
        .name("console-in".into())
        .spawn(move || {
            let mut buf = [0u8; 64];
            let mut stdin = std::io::stdin();
            // Consoles whose guest did not read for a while (e.g. a PL011
            // next to the virtio console the guest uses): input for them
            // is dropped, not waited for, until they take it again.
            let mut stalled = vec![false; consoles.len()];
            while let Ok(n) = stdin.read(&mut buf) {
                if n == 0 {
                    break;
                }
                // Each console takes all of it, waiting while its device
                // is full and its guest reads from it.
                for (c, stalled) in consoles.iter().zip(stalled.iter_mut()) {
                    let mut done = c.receive(&buf[..n]);
                    let mut idle_ms = 0;
                    while done < n && !*stalled {
                        std::thread::sleep(std::time::Duration::from_millis(1));
                        let took = c.receive(&buf[done..n]);
                        done += took;
                        idle_ms = if took == 0 { idle_ms + 1 } else { 0 };
                        *stalled = idle_ms >= CONSOLE_STALL_MS;
                    }
                    if done == n {
                        *stalled = false;
                    }
                }
            }
        });
    if let Err(e) = spawned {
        uvmm::warn!("vmm", "no console input: {e}");
    }
}

/// The label of the monitor's input Irq.
const MONITOR_IRQ_LABEL: u64 = 0x6d6f_6e00;
/// The longest command line the monitor takes.
const MONITOR_LINE_MAX: usize = 256;

/// Serves the monitor ([`uvmm::monitor`]) on the capability `mon` (a
/// console: vmm.lua's `mon<id>` log on cons), if uvmm was given one, on a
/// thread of its own.
fn monitor(vm: Arc<uvmm::vmm::Vm>, tree: uvmm::dt::Tree) {
    let Some(cap) = l4re::env::get_cap("mon") else {
        return;
    };
    let spawned = std::thread::Builder::new()
        .name("monitor".into())
        .spawn(move || serve_monitor(Cap::<l4::Vcon>::from_index(cap), &vm, &tree));
    if let Err(e) = spawned {
        uvmm::warn!("vmm", "no monitor: {e}");
    }
}

/// An Irq of this thread on the console's input line, unmasked when the
/// thread waits for input; `None` where the console has none (then the
/// monitor looks for input every 50 ms).
fn input_irq(con: Cap<l4::Vcon>) -> Option<Cap<Irq>> {
    let me = Cap::<l4::Thread>::from_index(l4re::env::thread_cap().ok()?);
    let slot = SLOTS.alloc()?;
    let irq = Cap::<Factory>::from_index(caps::FACTORY)
        .create_irq(slot)
        .ok()?;
    irq.attach(me, MONITOR_IRQ_LABEL).ok()?;
    con.cast::<l4::Icu>().bind(0, irq).ok()?;
    Some(irq)
}

fn serve_monitor(con: Cap<l4::Vcon>, vm: &uvmm::vmm::Vm, tree: &uvmm::dt::Tree) {
    let say = |text: &str| {
        // A console that is gone cannot be told anything.
        let _ = con.write(text.as_bytes());
    };
    say("uvmm monitor: 'help' lists the commands\n");
    say(uvmm::monitor::PROMPT);
    let irq = input_irq(con);
    let mut line: Vec<u8> = Vec::new();
    let mut buf = [0u8; 64];
    loop {
        match con.read(&mut buf) {
            Ok((n, _)) if n > 0 => {
                for &b in &buf[..n] {
                    match b {
                        b'\r' | b'\n' => {
                            let text = String::from_utf8_lossy(&line).into_owned();
                            line.clear();
                            say(&uvmm::monitor::execute(vm, tree, &text));
                            say(uvmm::monitor::PROMPT);
                        }
                        0x08 | 0x7f => {
                            line.pop();
                        }
                        _ if line.len() < MONITOR_LINE_MAX => line.push(b),
                        _ => {}
                    }
                }
                continue;
            }
            Ok(_) => {}
            Err(e) => {
                uvmm::warn!("vmm", "the monitor's console fails ({e:?}): no monitor");
                return;
            }
        }
        match irq {
            Some(_) => {
                let _ = con.cast::<l4::Icu>().unmask(0);
                let t = l4::Timeouts::new(l4::Timeout::NEVER, l4::Timeout::NEVER);
                let _ = l4::ipc::wait_msg(t);
            }
            None => std::thread::sleep(std::time::Duration::from_millis(50)),
        }
    }
}

/// Builds the VM and runs it until it ends; its exit code.
pub fn run(opts: Options) -> ExitCode {
    let online = Cap::<Scheduler>::from_index(caps::SCHEDULER)
        .info()
        .map(|i| i.online)
        .unwrap_or(1);
    let cpus = online.count_ones().max(1) as usize;
    let mut host = L4Host::default();
    let m = match machine::build(&opts, &mut host, cpus) {
        Ok(m) => m,
        Err(e) => {
            uvmm::log::line(format_args!("uvmm: {e}"));
            return ExitCode::FAILURE;
        }
    };
    info!(
        "vmm",
        "{} vCPU(s), boot at {:#x} with the device tree at {:#x}",
        m.mpidrs.len(),
        m.boot.pc,
        m.boot.x[0]
    );
    let mut vm = match L4Vm::new(std::mem::take(&mut host.rams), online, host.vbus) {
        Ok(vm) => vm,
        Err(e) => {
            uvmm::log::line(format_args!("uvmm: {e}"));
            return ExitCode::FAILURE;
        }
    };
    for &(irq, intid) in &host.virqs {
        vm.route_virq(irq, intid);
    }
    let _ = host.vm.set(vm.cap());
    console_input(m.consoles.clone());
    monitor(m.vm.clone(), m.tree.clone());
    match m.run(&mut vm) {
        Ok(code) => {
            info!("vmm", "the VM ended with {code}");
            ExitCode::from(code)
        }
        Err(e) => {
            uvmm::log::line(format_args!(
                "uvmm: {e}\nVM entered a fatal state. Halting."
            ));
            ExitCode::FAILURE
        }
    }
}
