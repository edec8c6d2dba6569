//! The seeds' io configurations, verbatim from `conf/` (seed 000's
//! `io.cfg` and `vm1_hw.vbus`, seed 003's `vm_hw.vbus`), and broken copies
//! of them: what io makes of them, what a client of each bus sees, and
//! the messages for the mistakes.

use io::model::{Config, Limits, SYSTEM_BUS};
use io::service::{Backend, Service};
use l4_abi::Error;
use l4_ipc::vbus::{ResourceKind, VbusClient};
use l4_ipc::{Loopback, RecvBufs};

fn conf(name: &str) -> String {
    let path = format!("{}/../conf/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn load(files: &[(&str, String)], caps: &[&str]) -> Result<Config, String> {
    let files: Vec<(String, String)> = files
        .iter()
        .map(|(n, t)| (format!("rom/{n}"), t.clone()))
        .collect();
    let caps = caps.iter().map(|c| c.to_string()).collect();
    io::load_all(Limits::qemu_virt(), Some(caps), &files).map_err(|e| e.to_string())
}

/// As ned starts io in seed 000: `vm1_hw`, `icu`, `sigma0`.
const CAPS: &[&str] = &["vm1_hw", "icu", "sigma0"];

struct Fake;

impl Backend for Fake {
    fn map_mmio(&mut self, pa: u64, _: u64) -> Result<u64, Error> {
        Ok(pa)
    }
    fn create_gate(&mut self, label: u64) -> Result<u64, Error> {
        Ok(label)
    }
    fn create_irq(&mut self, line: u64, _: u64) -> Result<u64, Error> {
        Ok(0x1000 + line)
    }
}

#[test]
fn seed_000_gives_vm1_the_rtc() {
    let cfg = load(
        &[
            ("io.cfg", conf("io.cfg")),
            ("vm1_hw.vbus", conf("vm1_hw.vbus")),
        ],
        CAPS,
    )
    .unwrap();
    let rtc = cfg.platform.child(SYSTEM_BUS, "rtc").unwrap();
    let d = &cfg.platform.devices[rtc];
    assert_eq!(d.compatible, ["arm,pl031"]);
    assert_eq!(d.pos.0, "rom/io.cfg:7");
    let bus = cfg.bus("vm1_hw").unwrap();
    assert_eq!(bus.devices.len(), 1);
    assert_eq!(
        (bus.devices[0].name.as_str(), bus.devices[0].hw),
        ("PL031", rtc)
    );

    // What uvmm sees on the bus.
    let svc = Service::new(cfg, Fake);
    let label = svc.bus_label("vm1_hw").unwrap();
    let mut lb = Loopback::new(svc);
    let mut c = VbusClient::with_transport(label, &mut lb);
    c.rcv = RecvBufs::cap_slot(0x300);
    let devs = c.devices().unwrap();
    assert_eq!(devs.len(), 1);
    assert_eq!(devs[0].1.name.as_str(), "PL031");
    let pl031 = c.find_first("arm,pl031").unwrap().unwrap();
    let res = c.resources(pl031).unwrap();
    assert_eq!(
        res.iter()
            .map(|r| (r.id.as_str(), r.kind, r.start, r.end, r.flags))
            .collect::<Vec<_>>(),
        [
            ("reg0", ResourceKind::Mmio, 0x901_0000, 0x901_0fff, 0),
            ("irq0", ResourceKind::Irq, 34, 34, 3),
        ]
    );
    c.mmio(pl031, 0).unwrap();
    c.irq(pl031, 1).unwrap();
}

#[test]
fn seed_003_gives_vm_hw_the_rtc() {
    let cfg = load(
        &[
            ("io.cfg", conf("io.cfg")),
            ("vm_hw.vbus", conf("vm_hw.vbus")),
        ],
        &["vm_hw", "icu", "sigma0"],
    )
    .unwrap();
    assert_eq!(cfg.bus("vm_hw").unwrap().devices[0].name, "PL031");
}

#[test]
fn a_device_on_two_buses_is_refused() {
    let e = load(
        &[
            ("io.cfg", conf("io.cfg")),
            ("vm1_hw.vbus", conf("vm1_hw.vbus")),
            ("vm_hw.vbus", conf("vm_hw.vbus")),
        ],
        &["vm1_hw", "vm_hw"],
    )
    .unwrap_err();
    assert_eq!(
        e,
        "rom/vm_hw.vbus:4: device System_bus.rtc is already on virtual bus 'vm1_hw' (rom/vm1_hw.vbus:3); a device belongs to one virtual bus only"
    );
}

/// Loads `io.cfg` with `from` replaced by `to`, and the seed's bus.
fn broken_cfg(from: &str, to: &str) -> String {
    let cfg = conf("io.cfg");
    assert!(cfg.contains(from), "the seed has no '{from}'");
    load(
        &[
            ("io.cfg", cfg.replace(from, to)),
            ("vm1_hw.vbus", conf("vm1_hw.vbus")),
        ],
        CAPS,
    )
    .unwrap_err()
}

#[test]
fn broken_io_cfg() {
    assert_eq!(
        broken_cfg("0x9010000, 0x9010fff", "0x9010fff, 0x9010000"),
        "rom/io.cfg:9: Io.Res.mmio: end 0x9010000 is below start 0x9010fff"
    );
    assert_eq!(
        broken_cfg("0x9010000, 0x9010fff", "0x40000000, 0x40000fff"),
        "rom/io.cfg:9: System_bus.rtc.reg0 (MMIO 0x40000000-0x40000fff) lies in RAM (0x40000000-0x7fffffff), not device memory"
    );
    assert_eq!(
        broken_cfg("32 + 2", "32 + 300"),
        "rom/io.cfg:10: System_bus.rtc.irq0 (IRQ 332) lies outside the platform: the interrupt controller's device lines are 32-287"
    );
    assert_eq!(
        broken_cfg("Irq_type_level_high", "Irq_type_level_hi"),
        "rom/io.cfg:10: Io.Resource has no the string 'Irq_type_level_hi' (it has: Irq_type_none, Irq_type_level_high, Irq_type_level_low, Irq_type_raising_edge, Irq_type_falling_edge, Irq_type_both_edges, F_prefetchable, F_cached_mem)"
    );
    assert_eq!(
        broken_cfg("Resource.reg0 = Res.mmio", "Resource.reg0 = Res.mmoi"),
        "rom/io.cfg:9: attempt to call a nil value (field 'mmoi')"
    );
    assert_eq!(
        broken_cfg(
            "Resource.reg0 = Res.mmio(0x9010000, 0x9010fff)",
            "Resource.reg0 = 0x9010000"
        ),
        "rom/io.cfg:9: Resource.reg0 must be a resource (Io.Res.mmio or Io.Res.irq), not the number 151060480"
    );
    assert_eq!(
        broken_cfg("  end)\nend)", "  end)\n"),
        "rom/io.cfg:13: 'end' expected (to close 'function' at line 6) near <eof>"
    );
    // A second device at the same address.
    let dup = "  rtc2 = Hw.Device(function()\n    Resource.r = Res.mmio(0x9010800, 0x9010803);\n  end)\nend)";
    let e = broken_cfg("  end)\nend)", &format!("  end)\n{dup}"));
    assert_eq!(
        e,
        "rom/io.cfg:13: System_bus.rtc2.r (MMIO 0x9010800-0x9010803) overlaps System_bus.rtc.reg0 (MMIO 0x9010000-0x9010fff, rom/io.cfg:9)"
    );
}

#[test]
fn broken_vbus() {
    let vbus = conf("vm1_hw.vbus");
    let e = load(
        &[
            ("io.cfg", conf("io.cfg")),
            ("vm1_hw.vbus", vbus.replace("().rtc", "().rtx")),
        ],
        CAPS,
    )
    .unwrap_err();
    assert_eq!(
        e,
        "rom/vm1_hw.vbus:4: System_bus has no device 'rtx' (it has: rtc)"
    );
    let e = load(
        &[("io.cfg", conf("io.cfg")), ("vm1_hw.vbus", vbus.clone())],
        &["vm2_hw", "icu", "sigma0"],
    )
    .unwrap_err();
    assert!(
        e.starts_with("rom/vm1_hw.vbus:")
            && e.contains("no capability named 'vm1_hw' for virtual bus 'vm1_hw'")
            && e.contains("it has: vm2_hw, icu, sigma0"),
        "{e}"
    );
    // The bus without the platform's configuration.
    let e = load(&[("vm1_hw.vbus", vbus.clone())], CAPS).unwrap_err();
    assert_eq!(
        e,
        "rom/vm1_hw.vbus:4: System_bus has no device 'rtc' (it has: none)"
    );
    let e = load(
        &[
            ("io.cfg", conf("io.cfg")),
            (
                "vm1_hw.vbus",
                vbus.replace("wrap(Io.system_bus().rtc)", "Io.system_bus().rtc"),
            ),
        ],
        CAPS,
    )
    .unwrap_err();
    assert_eq!(
        e,
        "rom/vm1_hw.vbus:4: virtual bus entry 'PL031' must be wrap(device), not a device"
    );
}
