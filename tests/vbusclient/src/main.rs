//! A test client of io: `vbusclient NAME`, started with its virtual bus as
//! the capability `vbus`.
//!
//! It lists the devices of its bus (`NAME: device 0: PL031 ...`). If one of
//! them is a PL031 real-time clock (compatible `arm,pl031`), it asks io for
//! the clock's MMIO dataspace, maps its page, reads the data register
//! (seconds since 1970) and prints the date (`NAME: PL031 says ... (year
//! 2026)`); then it asks for the clock's interrupt, binds the Irq it gets
//! to its thread, sets the clock's alarm a second ahead and waits for the
//! interrupt. Without a PL031 it says `NAME: no PL031 on this bus` and
//! shows that io refuses the MMIO of a device past the end of its bus.

use std::fmt::Write as _;
use std::process::ExitCode;

use l4_ipc::vbus::{DeviceInfo, Resource, ResourceKind};

/// The PL031's compatible string.
const PL031: &str = "arm,pl031";

/// A date and time in UTC.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Utc {
    year: i64,
    month: u32,
    day: u32,
    hour: u32,
    min: u32,
    sec: u32,
}

/// The civil date of `secs` seconds since 1970-01-01 00:00 UTC (the
/// proleptic Gregorian calendar, by eras of 400 years).
fn utc(secs: u64) -> Utc {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    Utc {
        year,
        month,
        day,
        hour: (rem / 3600) as u32,
        min: (rem / 60 % 60) as u32,
        sec: (rem % 60) as u32,
    }
}

impl std::fmt::Display for Utc {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{:04}-{:02}-{:02} {:02}:{:02}:{:02} UTC",
            self.year, self.month, self.day, self.hour, self.min, self.sec
        )
    }
}

/// One line describing a device and its resources.
fn describe(index: u32, d: &DeviceInfo, compatible: &[String], res: &[Resource]) -> String {
    let mut s = format!("device {index}: {}", d.name);
    if !d.hid.is_empty() {
        let _ = write!(s, " hid {}", d.hid);
    }
    if !compatible.is_empty() {
        let _ = write!(s, " compatible {}", compatible.join(","));
    }
    for r in res {
        let _ = match r.kind {
            ResourceKind::Mmio => write!(s, " {} MMIO {:#x}-{:#x}", r.id, r.start, r.end),
            ResourceKind::Irq => write!(s, " {} IRQ {} mode {:#x}", r.id, r.start, r.flags),
        };
    }
    s
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [name] = args.as_slice() else {
        eprintln!("usage: vbusclient NAME (with the capability 'vbus')");
        return ExitCode::from(2);
    };
    match run(name) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            println!("{name}: {e}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(all(target_os = "linux", target_arch = "aarch64", target_env = "musl"))]
fn run(name: &str) -> Result<(), String> {
    use l4::{Cap, Irq, SlotAlloc};
    use l4_abi::{Fpage, MemRights, RecvItem};
    use l4_ipc::RecvBufs;
    use l4_ipc::protocols::{DataspaceClient, ds_flags};
    use l4_ipc::vbus::VbusClient;
    use l4re::env::FIRST_PROGRAM_CAP;

    static SLOTS: SlotAlloc<1> = SlotAlloc::new(FIRST_PROGRAM_CAP);
    let cap = l4re::env::get_cap("vbus").ok_or("no capability named 'vbus'")?;
    let mut bus = VbusClient::new(cap);
    let n = bus.info().map_err(|e| format!("vbus info: {e:?}"))?;
    println!("{name}: {n} device(s) on my vbus");
    let mut rtc = None;
    for i in 0..n {
        let d = bus.device(i).map_err(|e| format!("device {i}: {e:?}"))?;
        let compatible: Vec<String> = bus
            .compatibles(i)
            .map_err(|e| format!("device {i}: {e:?}"))?
            .iter()
            .map(|c| c.to_string())
            .collect();
        let res = bus.resources(i).map_err(|e| format!("device {i}: {e:?}"))?;
        println!("{name}: {}", describe(i, &d, &compatible, &res));
        if rtc.is_none() && compatible.iter().any(|c| c == PL031) {
            rtc = Some((i, res));
        }
    }
    let Some((dev, res)) = rtc else {
        println!("{name}: no PL031 on this bus");
        // A device index past the end of the bus reaches nothing.
        match bus.mmio(n, 0) {
            Ok(_) => return Err(format!("io handed out MMIO of device {n}, past my bus")),
            Err(e) => println!("{name}: MMIO of device {n} refused: {e:?}"),
        }
        return Ok(());
    };
    let reg = res
        .iter()
        .position(|r| r.kind == ResourceKind::Mmio)
        .ok_or("the PL031 has no MMIO resource")? as u32;
    let slot = SLOTS.alloc().ok_or("no capability slot")?;
    bus.rcv = RecvBufs::cap_slot(slot);
    let ds = bus
        .mmio(dev, reg)
        .map_err(|e| format!("MMIO dataspace: {e:?}"))?
        .index();
    let mut ds = DataspaceClient::new(ds);
    let (size, flags) = ds.info().map_err(|e| format!("dataspace info: {e:?}"))?;
    // A page of address space nothing else uses, for the mapping to land in.
    // SAFETY: a fresh anonymous mapping the kernel places; nothing aliases it.
    let page = unsafe {
        libc::mmap(
            core::ptr::null_mut(),
            0x1000,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        )
    };
    if page == libc::MAP_FAILED {
        return Err("no address space for the mapping".into());
    }
    let addr = page as u64;
    ds.rcv
        .push(RecvItem::Window(Fpage::mem(addr, 12, MemRights::RW)))
        .map_err(|e| format!("{e:?}"))?;
    ds.map(0, addr, ds_flags::RW)
        .map_err(|e| format!("mapping the PL031: {e:?}"))?;
    // SAFETY: io just mapped the PL031's register page at `addr`; the
    // data register (offset 0) is a 32-bit read-only register.
    let secs = unsafe { core::ptr::read_volatile((addr + pl031::DR) as *const u32) };
    let now = utc(u64::from(secs));
    println!(
        "{name}: PL031 at {:#x} ({size:#x} bytes, flags {flags:#x}) says {secs} s since 1970: {now} (year {})",
        res[reg as usize].start, now.year
    );
    if let Some(irq) = res.iter().position(|r| r.kind == ResourceKind::Irq) {
        let slot = SLOTS.alloc().ok_or("no capability slot")?;
        bus.rcv = RecvBufs::cap_slot(slot);
        let got = bus
            .irq(dev, irq as u32)
            .map_err(|e| format!("PL031 interrupt: {e:?}"))?;
        let irq_cap: Cap<Irq> = Cap::from_index(got.index());
        irq_cap
            .bind(Cap::from_index(l4re::env::caps::MAIN_THREAD), IRQ_LABEL)
            .map_err(|e| format!("binding the PL031's Irq: {e:?}"))?;
        println!(
            "{name}: PL031 interrupt {} as Irq capability {:#x}, bound to my thread",
            res[irq].start,
            got.index()
        );
        alarm(name, addr, irq_cap)?;
    }
    Ok(())
}

/// The label the PL031's Irq arrives with.
#[cfg(all(target_os = "linux", target_arch = "aarch64", target_env = "musl"))]
const IRQ_LABEL: u64 = 0x10;

/// PL031 registers (byte offsets): data, match, load, control, interrupt
/// mask set/clear, raw status, masked status, clear.
#[cfg(all(target_os = "linux", target_arch = "aarch64", target_env = "musl"))]
mod pl031 {
    pub const DR: u64 = 0x00;
    pub const MR: u64 = 0x04;
    pub const IMSC: u64 = 0x10;
    pub const ICR: u64 = 0x1c;
}

/// Sets the clock's alarm one second ahead and waits for its interrupt
/// through the Irq io handed out.
#[cfg(all(target_os = "linux", target_arch = "aarch64", target_env = "musl"))]
fn alarm(name: &str, regs: u64, irq: l4::Cap<l4::Irq>) -> Result<(), String> {
    use l4::{Timeout, Timeouts};

    let read = |off: u64| {
        // SAFETY: `regs` is the PL031's register page, mapped read-write;
        // every offset used is a 32-bit register inside it.
        unsafe { core::ptr::read_volatile((regs + off) as *const u32) }
    };
    let write = |off: u64, v: u32| {
        // SAFETY: as for `read`.
        unsafe { core::ptr::write_volatile((regs + off) as *mut u32, v) }
    };
    let start = std::time::Instant::now();
    write(pl031::MR, read(pl031::DR).wrapping_add(1));
    write(pl031::IMSC, 1);
    irq.unmask()
        .map_err(|e| format!("unmasking the PL031's Irq: {e:?}"))?;
    let t = Timeouts::new(Timeout::NEVER, Timeout::from_us(3_000_000));
    let got = irq.ipc_receive(t);
    write(pl031::IMSC, 0);
    write(pl031::ICR, 1);
    match got {
        Ok((_, label)) => {
            println!(
                "{name}: PL031 alarm interrupt arrived after {} ms (label {label:#x})",
                start.elapsed().as_millis()
            );
            Ok(())
        }
        Err(e) => Err(format!("no PL031 alarm interrupt within 3 s: {e:?}")),
    }
}

#[cfg(not(all(target_os = "linux", target_arch = "aarch64", target_env = "musl")))]
fn run(_: &str) -> Result<(), String> {
    Err("runs only as an L4 task on AArch64".into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use l4_ipc::Str;

    #[test]
    fn dates() {
        let d = |y, mo, da, h, mi, s| Utc {
            year: y,
            month: mo,
            day: da,
            hour: h,
            min: mi,
            sec: s,
        };
        assert_eq!(utc(0), d(1970, 1, 1, 0, 0, 0));
        assert_eq!(utc(951_782_400), d(2000, 2, 29, 0, 0, 0));
        assert_eq!(utc(1_772_634_181), d(2026, 3, 4, 14, 23, 1));
        assert_eq!(utc(u64::from(u32::MAX)), d(2106, 2, 7, 6, 28, 15));
        assert_eq!(utc(0).to_string(), "1970-01-01 00:00:00 UTC");
    }

    #[test]
    fn device_lines() {
        let d = DeviceInfo {
            name: Str::new("PL031").unwrap(),
            hid: Str::empty(),
            compatibles: 1,
            resources: 2,
            parent: None,
        };
        let res = [
            Resource {
                kind: ResourceKind::Mmio,
                flags: 0,
                start: 0x901_0000,
                end: 0x901_0fff,
                id: Str::new("reg0").unwrap(),
            },
            Resource {
                kind: ResourceKind::Irq,
                flags: 3,
                start: 34,
                end: 34,
                id: Str::new("irq0").unwrap(),
            },
        ];
        assert_eq!(
            describe(0, &d, &["arm,pl031".into()], &res),
            "device 0: PL031 compatible arm,pl031 reg0 MMIO 0x9010000-0x9010fff irq0 IRQ 34 mode 0x3"
        );
    }
}
