//! uvmm as an L4Re task: capabilities from the environment, files from
//! `rom/`, guest RAM attached from its dataspace (with its host-physical
//! address from moe, for `-i`), the devices of the `vbus` capability,
//! console output to the log and input from it, the VM run on the
//! kernel's Vm object ([`crate::l4vm`]). A console device whose node names
//! another Vcon capability (`l4vmm,vcon_cap`) writes to and reads from
//! that one.

use std::collections::BTreeMap;
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

/// Guest console output: the task's log (standard output) or another Vcon
/// capability, written by a thread of its own in lines. A guest's UART
/// hands over one byte per register write; one log message per byte would
/// cost the log's server (cons) a request each. What has no newline yet
/// goes out once the guest paused for [`LOG_IDLE`] (a shell prompt).
#[derive(Clone)]
struct LogOut(Arc<(std::sync::Mutex<Vec<u8>>, std::sync::Condvar)>);

/// Where a [`LogOut`] writes.
#[derive(Clone, Copy)]
enum Sink {
    /// The task's standard output (the `log` capability).
    Stdout,
    /// A Vcon capability of its own.
    Vcon(Cap<l4::Vcon>),
}

impl Sink {
    fn write(self, bytes: &[u8]) {
        // Nowhere to report a failing console.
        match self {
            Sink::Stdout => {
                let mut out = std::io::stdout().lock();
                let _ = out.write_all(bytes);
                let _ = out.flush();
            }
            Sink::Vcon(con) => {
                let _ = con.write(bytes);
            }
        }
    }
}

/// How long a partial line waits for more output.
const LOG_IDLE: std::time::Duration = std::time::Duration::from_millis(20);
/// Most bytes held back.
const LOG_HOLD_MAX: usize = 1024;

impl LogOut {
    /// The writer to `sink` and its thread.
    fn start(sink: Sink) -> LogOut {
        let out = LogOut(Arc::default());
        let shared = out.0.clone();
        let spawned = std::thread::Builder::new()
            .name("log-out".into())
            .spawn(move || log_writer(&shared, sink));
        if let Err(e) = spawned {
            uvmm::warn!("vmm", "no console output thread: {e}");
        }
        out
    }
}

/// Writes what [`LogOut`] collects: whole lines at once, a partial line
/// after [`LOG_IDLE`] without more.
fn log_writer(shared: &(std::sync::Mutex<Vec<u8>>, std::sync::Condvar), sink: Sink) {
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
        sink.write(&bytes);
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
    /// The console writers by capability name, once a console uses them.
    consoles: BTreeMap<String, LogOut>,
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
        if let Some(out) = self.consoles.get(cap) {
            return Ok(Box::new(out.clone()));
        }
        let log = cap == machine::DEFAULT_VCON_CAP;
        let con = if log {
            Cap::<l4::Vcon>::from_index(caps::LOG)
        } else {
            let index =
                l4re::env::get_cap(cap).ok_or_else(|| format!("no capability named '{cap}'"))?;
            Cap::from_index(index)
        };
        // Raw mode: the guest's terminal echoes and translates, so cons (or
        // the kernel console) must pass keys through as typed, as L4Re's
        // Vcon front-ends ask it to. A named capability that does not
        // answer is no console; the log stays usable either way.
        match con.make_raw() {
            Err(e) if !log => return Err(format!("not a console ({e:?})")),
            Err(e) => uvmm::warn!("vmm", "cannot put the console into raw mode: {e:?}"),
            Ok(()) => {}
        }
        let sink = if log { Sink::Stdout } else { Sink::Vcon(con) };
        let out = LogOut::start(sink);
        self.consoles.insert(cap.to_string(), out.clone());
        Ok(Box::new(out))
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

/// Feeds what is typed into each console capability to the guest's
/// consoles on it (`consoles`: capability name and input side, as
/// [`machine::Machine::consoles`] lists them): the log's through standard
/// input, every other one on a thread of its own.
fn console_input(consoles: &[(String, ConsoleInput)]) {
    let mut by_cap: BTreeMap<&str, Vec<ConsoleInput>> = BTreeMap::new();
    for (cap, c) in consoles {
        by_cap.entry(cap).or_default().push(c.clone());
    }
    for (cap, consoles) in by_cap {
        // Standard input for the log; any other capability `console`
        // found when the devices were made (and put into raw mode).
        let source = if cap == machine::DEFAULT_VCON_CAP {
            None
        } else {
            let Some(index) = l4re::env::get_cap(cap) else {
                continue;
            };
            Some(Cap::<l4::Vcon>::from_index(index))
        };
        let spawned = std::thread::Builder::new()
            .name(format!("console-in-{cap}"))
            .spawn(move || match source {
                None => {
                    let mut stdin = std::io::stdin();
                    feed_consoles(&consoles, |buf| stdin.read(buf).ok());
                }
                Some(con) => {
                    let irq = input_irq(con);
                    feed_consoles(&consoles, |buf| vcon_read(con, irq, buf));
                }
            });
        if let Err(e) = spawned {
            uvmm::warn!("vmm", "no console input from '{cap}': {e}");
        }
    }
}

/// Waits for input on a Vcon: the next bytes into `buf`, `None` once the
/// console fails. `irq` is its input Irq, bound to this thread (without
/// one: a look every 50 ms).
fn vcon_read(con: Cap<l4::Vcon>, irq: Option<Cap<Irq>>, buf: &mut [u8]) -> Option<usize> {
    loop {
        match con.read(buf) {
            Ok((n, _)) if n > 0 => return Some(n),
            Ok(_) => {}
            Err(e) => {
                uvmm::warn!("vmm", "a console fails ({e:?}): no more input from it");
                return None;
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

/// Gives each of `consoles` all that `next` reads until it ends (`None`
/// or 0 bytes), waiting while a device is full and its guest reads from
/// it. Where several consoles share the input, one whose guest did not
/// read for a while (e.g. a PL011 next to the virtio console the guest
/// uses) has its input dropped, not waited for, until it takes it again;
/// a console of its own waits for its guest however long that takes (a
/// guest that shares its CPU may not run for tens of milliseconds).
fn feed_consoles(consoles: &[ConsoleInput], mut next: impl FnMut(&mut [u8]) -> Option<usize>) {
    let shared = consoles.len() > 1;
    let mut buf = [0u8; 64];
    let mut stalled = vec![false; consoles.len()];
    while let Some(n) = next(&mut buf) {
        if n == 0 {
            break;
        }
        for (c, stalled) in consoles.iter().zip(stalled.iter_mut()) {
            let mut done = c.receive(&buf[..n]);
            let mut idle_ms = 0;
            while done < n && !*stalled {
                std::thread::sleep(std::time::Duration::from_millis(1));
                let took = c.receive(&buf[done..n]);
                done += took;
                idle_ms = if took == 0 { idle_ms + 1 } else { 0 };
                *stalled = shared && idle_ms >= CONSOLE_STALL_MS;
            }
            if done == n {
                *stalled = false;
            }
        }
    }
}

/// The label of a console's input Irq (the monitor's and the guest
/// consoles').
const INPUT_IRQ_LABEL: u64 = 0x6d6f_6e00;
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
/// thread waits for input; `None` where the console has none (then
/// [`vcon_read`] looks for input every 50 ms).
fn input_irq(con: Cap<l4::Vcon>) -> Option<Cap<Irq>> {
    let me = Cap::<l4::Thread>::from_index(l4re::env::thread_cap().ok()?);
    let slot = SLOTS.alloc()?;
    let irq = Cap::<Factory>::from_index(caps::FACTORY)
        .create_irq(slot)
        .ok()?;
    irq.attach(me, INPUT_IRQ_LABEL).ok()?;
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
    while let Some(n) = vcon_read(con, irq, &mut buf) {
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
    console_input(&m.consoles);
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
