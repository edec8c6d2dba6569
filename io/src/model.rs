//! The configuration model: the platform's devices with their resources,
//! and the virtual buses that give clients some of them.
//!
//! The Lua configuration ([`crate::config`]) builds it; the server
//! ([`crate::service`]) serves it. Every check that can be made without the
//! hardware is made here, each failure naming where in the configuration
//! the offending thing was written ([`ConfigError`]):
//!
//! * a resource lies inside the platform ([`Limits`]): MMIO below the
//!   physical address limit and outside RAM, interrupts among the
//!   interrupt controller's shared lines;
//! * no two devices share MMIO or an interrupt line;
//! * a virtual bus wraps only devices of the platform, each device (with
//!   its children) at most once on one bus, and no page of MMIO goes to
//!   two buses;
//! * each bus has a unique name that matches a capability given to io.

use std::fmt;

use l4_abi::proto::icu::mode;
use l4_ipc::vbus::{CID_MAX, NAME_MAX, RES_ID_MAX, ResourceKind, res_flags};

/// An index into [`Platform::devices`].
pub type DevId = usize;

/// The platform's root device, L4Re's `Io.system_bus()`.
pub const SYSTEM_BUS: DevId = 0;

/// A place in a configuration file: `file:line`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Pos(pub String);

impl fmt::Display for Pos {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            f.write_str("(configuration)")
        } else {
            f.write_str(&self.0)
        }
    }
}

/// A configuration mistake: where and what.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigError {
    /// Where it was written (may be empty when not known).
    pub pos: Pos,
    /// What is wrong.
    pub message: String,
}

impl ConfigError {
    /// An error at `pos`.
    pub fn new(pos: &Pos, message: impl Into<String>) -> ConfigError {
        ConfigError {
            pos: pos.clone(),
            message: message.into(),
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.pos, self.message)
    }
}

impl std::error::Error for ConfigError {}

/// What the machine offers: where device memory and interrupts may lie.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Physical addresses are below `1 << phys_bits`.
    pub phys_bits: u32,
    /// RAM: `(first, last)` byte ranges no device may claim.
    pub ram: Vec<(u64, u64)>,
    /// The first interrupt line a device may have (the GIC's first shared
    /// interrupt).
    pub first_irq: u64,
    /// The number of interrupt lines of the interrupt controller.
    pub irq_lines: u64,
}

impl Limits {
    /// QEMU's `virt` machine as the project runs it (GICv3 with 288
    /// lines, 1 GiB of RAM at 1 GiB, 40-bit physical addresses).
    pub fn qemu_virt() -> Limits {
        Limits::qemu_virt_with_ram(1 << 30)
    }

    /// QEMU's `virt` machine with `ram` bytes of RAM (`-m`), which start
    /// at 1 GiB.
    pub fn qemu_virt_with_ram(ram: u64) -> Limits {
        const RAM_BASE: u64 = 0x4000_0000;
        Limits {
            phys_bits: 40,
            ram: vec![(RAM_BASE, RAM_BASE + ram.max(1) - 1)],
            first_irq: 32,
            irq_lines: 288,
        }
    }
}

/// A resource of a device: an MMIO range or interrupt lines.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Res {
    /// What it is.
    pub kind: ResourceKind,
    /// First address or line.
    pub start: u64,
    /// Last address or line (inclusive).
    pub end: u64,
    /// Flags ([`res_flags`]; for interrupts the trigger mode).
    pub flags: u64,
    /// Where it was written.
    pub pos: Pos,
}

impl Res {
    /// `Io.Res.mmio(start, end[, flags])`.
    pub fn mmio(start: u64, end: u64, flags: u64, pos: Pos) -> Result<Res, ConfigError> {
        if end < start {
            return Err(ConfigError::new(
                &pos,
                format!("Io.Res.mmio: end {end:#x} is below start {start:#x}"),
            ));
        }
        let known = res_flags::MMIO_CACHEABLE | res_flags::MMIO_PREFETCH;
        if flags & !known != 0 {
            return Err(ConfigError::new(
                &pos,
                format!("Io.Res.mmio: unknown flags {:#x}", flags & !known),
            ));
        }
        Ok(Res {
            kind: ResourceKind::Mmio,
            start,
            end,
            flags,
            pos,
        })
    }

    /// `Io.Res.irq(n | {start, end}[, mode])`.
    pub fn irq(start: u64, end: u64, mode: u64, pos: Pos) -> Result<Res, ConfigError> {
        if end < start {
            return Err(ConfigError::new(
                &pos,
                format!("Io.Res.irq: last line {end} is below first line {start}"),
            ));
        }
        if !IRQ_TYPES.iter().any(|(_, m)| *m == mode) {
            return Err(ConfigError::new(
                &pos,
                format!("Io.Res.irq: unknown trigger type {mode:#x} (use Io.Resource.Irq_type_*)"),
            ));
        }
        Ok(Res {
            kind: ResourceKind::Irq,
            start,
            end,
            flags: mode,
            pos,
        })
    }

    /// `0x9010000-0x9010fff` or `irq 34`.
    pub fn describe(&self) -> String {
        match self.kind {
            ResourceKind::Mmio => format!("MMIO {:#x}-{:#x}", self.start, self.end),
            ResourceKind::Irq if self.start == self.end => format!("IRQ {}", self.start),
            ResourceKind::Irq => format!("IRQs {}-{}", self.start, self.end),
        }
    }

    fn overlaps(&self, o: &Res) -> bool {
        self.kind == o.kind && self.start <= o.end && o.start <= self.end
    }
}

/// L4Re's `Io.Resource.Irq_type_*` names and the trigger modes they stand
/// for.
pub const IRQ_TYPES: &[(&str, u64)] = &[
    ("Irq_type_none", mode::NONE),
    ("Irq_type_level_high", mode::LEVEL_HIGH),
    ("Irq_type_level_low", mode::LEVEL_LOW),
    ("Irq_type_raising_edge", mode::POS_EDGE),
    ("Irq_type_falling_edge", mode::NEG_EDGE),
    ("Irq_type_both_edges", mode::BOTH_EDGE),
];

/// `Io.Resource.F_*` names of MMIO flags (`Io.Res.mmio(s, e, flags)`).
pub const MMIO_FLAGS: &[(&str, u64)] = &[
    ("F_prefetchable", res_flags::MMIO_PREFETCH),
    ("F_cached_mem", res_flags::MMIO_CACHEABLE),
];

/// A platform device.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Device {
    /// Its name in its parent (`rtc`); empty until it gets a parent.
    pub name: String,
    /// Its parent; `None` for the system bus and for devices not (yet)
    /// on the platform.
    pub parent: Option<DevId>,
    /// `Property.hid`.
    pub hid: Option<String>,
    /// `compatible = { ... }`.
    pub compatible: Vec<String>,
    /// Other properties (`Property.x = ...`), as text.
    pub props: Vec<(String, String)>,
    /// `Resource.<id> = ...`, in the order written.
    pub resources: Vec<(String, Res)>,
    /// Its children, in the order added.
    pub children: Vec<DevId>,
    /// Where it was created.
    pub pos: Pos,
}

impl Device {
    /// Whether `cid` is its hid or one of its compatible strings.
    pub fn matches(&self, cid: &str) -> bool {
        self.hid.as_deref() == Some(cid) || self.compatible.iter().any(|c| c == cid)
    }

    /// Its MMIO ranges, in the order written.
    pub fn mmio(&self) -> impl Iterator<Item = &Res> {
        self.resources_of(ResourceKind::Mmio)
    }

    /// Its interrupt lines (single lines or ranges), in the order written.
    pub fn irqs(&self) -> impl Iterator<Item = &Res> {
        self.resources_of(ResourceKind::Irq)
    }

    fn resources_of(&self, kind: ResourceKind) -> impl Iterator<Item = &Res> {
        self.resources
            .iter()
            .map(|(_, r)| r)
            .filter(move |r| r.kind == kind)
    }
}

/// The platform: a tree of devices under the system bus.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Platform {
    /// Every device created, on the platform or not; [`SYSTEM_BUS`] first.
    pub devices: Vec<Device>,
}

impl Default for Platform {
    fn default() -> Platform {
        Platform::new()
    }
}

impl Platform {
    /// A platform with only the system bus.
    pub fn new() -> Platform {
        Platform {
            devices: vec![Device {
                name: "System_bus".into(),
                ..Device::default()
            }],
        }
    }

    /// A new device without a parent.
    pub fn create(&mut self, pos: Pos) -> DevId {
        self.devices.push(Device {
            pos,
            ..Device::default()
        });
        self.devices.len() - 1
    }

    /// Makes `child` the child `name` of `parent`.
    pub fn add_child(
        &mut self,
        parent: DevId,
        name: &str,
        child: DevId,
        pos: &Pos,
    ) -> Result<(), ConfigError> {
        if child == SYSTEM_BUS {
            return Err(ConfigError::new(pos, "the system bus cannot be a child"));
        }
        if let Some(p) = self.devices[child].parent {
            return Err(ConfigError::new(
                pos,
                format!(
                    "device '{name}' (created at {}) is already '{}' in {}",
                    self.devices[child].pos,
                    self.devices[child].name,
                    self.path(p)
                ),
            ));
        }
        if self.is_ancestor(child, parent) {
            return Err(ConfigError::new(
                pos,
                format!("device '{name}' cannot be a child of itself"),
            ));
        }
        if self.child(parent, name).is_some() {
            return Err(ConfigError::new(
                pos,
                format!("{} already has a device '{name}'", self.path(parent)),
            ));
        }
        self.devices[child].name = name.to_string();
        self.devices[child].parent = Some(parent);
        self.devices[parent].children.push(child);
        Ok(())
    }

    fn is_ancestor(&self, a: DevId, mut d: DevId) -> bool {
        loop {
            if d == a {
                return true;
            }
            match self.devices[d].parent {
                Some(p) => d = p,
                None => return false,
            }
        }
    }

    /// The child `name` of `parent`.
    pub fn child(&self, parent: DevId, name: &str) -> Option<DevId> {
        self.devices[parent]
            .children
            .iter()
            .copied()
            .find(|&c| self.devices[c].name == name)
    }

    /// Whether `d` is on the platform (under the system bus).
    pub fn on_platform(&self, d: DevId) -> bool {
        self.is_ancestor(SYSTEM_BUS, d)
    }

    /// `System_bus.rtc` style path of a device.
    pub fn path(&self, d: DevId) -> String {
        self.path_below(d, None)
    }

    /// The path of a device below the system bus (`rtc`, `soc.uart0`);
    /// for the system bus itself and devices not on the platform the same
    /// as [`Platform::path`].
    pub fn path_on_platform(&self, d: DevId) -> String {
        if d == SYSTEM_BUS || !self.on_platform(d) {
            return self.path(d);
        }
        self.path_below(d, Some(SYSTEM_BUS))
    }

    /// The names from `d`'s root (or from below `stop`) down to `d`.
    fn path_below(&self, d: DevId, stop: Option<DevId>) -> String {
        let mut parts = Vec::new();
        let mut at = Some(d);
        while let Some(x) = at.filter(|&x| Some(x) != stop) {
            parts.push(if self.devices[x].name.is_empty() {
                "(unnamed device)"
            } else {
                self.devices[x].name.as_str()
            });
            at = self.devices[x].parent;
        }
        parts.reverse();
        parts.join(".")
    }

    /// `d` and its descendants, depth first, `d` first.
    pub fn subtree(&self, d: DevId) -> Vec<DevId> {
        let mut out = vec![d];
        let mut i = 0;
        while i < out.len() {
            let kids = &self.devices[out[i]].children;
            // Children right after their parent, in order.
            let at = i + 1;
            for (k, &c) in kids.iter().enumerate() {
                out.insert(at + k, c);
            }
            i += 1;
        }
        out
    }

    /// Devices under `d` (not `d` itself) matching any of `cids`.
    pub fn find(&self, d: DevId, cids: &[String]) -> Vec<DevId> {
        self.subtree(d)
            .into_iter()
            .skip(1)
            .filter(|&x| cids.iter().any(|c| self.devices[x].matches(c)))
            .collect()
    }

    /// Checks the resources of every device on the platform against
    /// `limits` and against each other.
    pub fn check(&self, limits: &Limits) -> Result<(), ConfigError> {
        let on: Vec<DevId> = self.subtree(SYSTEM_BUS);
        let mut seen: Vec<(DevId, &str, &Res)> = Vec::new();
        for &d in &on {
            for (id, r) in &self.devices[d].resources {
                self.check_limits(d, id, r, limits)?;
                if let Some((o, oid, or)) = seen.iter().find(|(_, _, o)| o.overlaps(r)) {
                    return Err(ConfigError::new(
                        &r.pos,
                        format!(
                            "{}.{id} ({}) overlaps {}.{oid} ({}, {})",
                            self.path(d),
                            r.describe(),
                            self.path(*o),
                            or.describe(),
                            or.pos
                        ),
                    ));
                }
                seen.push((d, id, r));
            }
        }
        Ok(())
    }

    fn check_limits(&self, d: DevId, id: &str, r: &Res, l: &Limits) -> Result<(), ConfigError> {
        let what = || format!("{}.{id} ({})", self.path(d), r.describe());
        match r.kind {
            ResourceKind::Mmio => {
                if l.phys_bits < 64 && r.end >> l.phys_bits != 0 {
                    return Err(ConfigError::new(
                        &r.pos,
                        format!(
                            "{} lies outside the platform: physical addresses end at {:#x}",
                            what(),
                            (1u64 << l.phys_bits) - 1
                        ),
                    ));
                }
                if let Some((s, e)) = l.ram.iter().find(|(s, e)| r.start <= *e && *s <= r.end) {
                    return Err(ConfigError::new(
                        &r.pos,
                        format!("{} lies in RAM ({s:#x}-{e:#x}), not device memory", what()),
                    ));
                }
            }
            ResourceKind::Irq => {
                if r.start < l.first_irq || r.end >= l.irq_lines {
                    return Err(ConfigError::new(
                        &r.pos,
                        format!(
                            "{} lies outside the platform: the interrupt controller's device lines are {}-{}",
                            what(),
                            l.first_irq,
                            l.irq_lines.saturating_sub(1)
                        ),
                    ));
                }
            }
        }
        Ok(())
    }
}

/// A device of a virtual bus: a platform device under a name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VDevice {
    /// Its name on the bus.
    pub name: String,
    /// The platform device.
    pub hw: DevId,
    /// Its parent's index on the bus.
    pub parent: Option<u32>,
    /// Where it was put on the bus (`NAME = wrap(...)`).
    pub pos: Pos,
}

/// Refuses names and strings longer than the vbus protocol carries.
fn check_sizes(p: &Platform, d: DevId, vname: &str, pos: &Pos) -> Result<(), ConfigError> {
    let dev = &p.devices[d];
    let mut strings: Vec<(&str, &str, usize)> = vec![("name", vname, NAME_MAX)];
    strings.extend(dev.hid.as_deref().map(|h| ("hid", h, CID_MAX)));
    strings.extend(
        dev.compatible
            .iter()
            .map(|c| ("compatible string", c.as_str(), CID_MAX)),
    );
    strings.extend(
        dev.resources
            .iter()
            .map(|(id, _)| ("resource name", id.as_str(), RES_ID_MAX)),
    );
    match strings.iter().find(|(_, s, max)| s.len() > *max) {
        Some((what, s, max)) => Err(ConfigError::new(
            pos,
            format!(
                "{}: the {what} '{s}' is longer than {max} bytes, the most a virtual bus carries",
                p.path(d)
            ),
        )),
        None => Ok(()),
    }
}

/// A virtual bus being built (`Io.Vi.System_bus(fn)`), before it has a
/// name.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BusDraft {
    /// The wrapped devices under their names, in order.
    pub wrapped: Vec<(String, DevId, Pos)>,
    /// Where it was created.
    pub pos: Pos,
}

/// A virtual bus.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Vbus {
    /// Its name, also the name of the capability it is served on.
    pub name: String,
    /// Its devices; children follow their parents.
    pub devices: Vec<VDevice>,
    /// Where it was defined (`Io.Vi.System_bus(...)`).
    pub pos: Pos,
}

/// The whole configuration.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Config {
    /// The platform.
    pub platform: Platform,
    /// The virtual buses.
    pub buses: Vec<Vbus>,
}

impl Config {
    /// The bus named `name`.
    pub fn bus(&self, name: &str) -> Option<&Vbus> {
        self.buses.iter().find(|b| b.name == name)
    }

    /// Adds the bus `draft` as `name`. `caps` are the capability names io
    /// was given (`None`: not checked).
    pub fn add_bus(
        &mut self,
        name: &str,
        draft: &BusDraft,
        caps: Option<&[String]>,
        pos: &Pos,
    ) -> Result<(), ConfigError> {
        if name.is_empty() {
            return Err(ConfigError::new(pos, "a virtual bus needs a name"));
        }
        if let Some(b) = self.bus(name) {
            return Err(ConfigError::new(
                pos,
                format!("virtual bus '{name}' is already defined at {}", b.pos),
            ));
        }
        if let Some(caps) = caps
            && !caps.iter().any(|c| c == name)
        {
            return Err(ConfigError::new(
                pos,
                format!(
                    "no capability named '{name}' for virtual bus '{name}' (start io with caps = {{ {name} = channel:svr() }}; it has: {})",
                    if caps.is_empty() {
                        "none".to_string()
                    } else {
                        caps.join(", ")
                    }
                ),
            ));
        }
        let p = &self.platform;
        let mut devices: Vec<VDevice> = Vec::new();
        let mut claimed: Vec<DevId> = Vec::new();
        for (vname, hw, wpos) in &draft.wrapped {
            if !p.on_platform(*hw) {
                return Err(ConfigError::new(
                    wpos,
                    format!(
                        "'{vname}' wraps a device that is not on the platform (created at {}; add it with Io.Dt.add_children or Io.hw_add_devices)",
                        p.devices[*hw].pos
                    ),
                ));
            }
            if *hw == SYSTEM_BUS {
                return Err(ConfigError::new(
                    wpos,
                    format!("'{vname}' wraps the whole system bus; wrap its devices"),
                ));
            }
            let tree = p.subtree(*hw);
            for &d in &tree {
                if claimed.contains(&d) {
                    return Err(ConfigError::new(
                        wpos,
                        format!(
                            "device {} is wrapped twice on virtual bus '{name}'",
                            p.path(d)
                        ),
                    ));
                }
                if let Some(other) = self.owner(d) {
                    return Err(ConfigError::new(
                        wpos,
                        format!(
                            "device {} is already on virtual bus '{}' ({}); a device belongs to one virtual bus only",
                            p.path(d),
                            other.name,
                            other.pos
                        ),
                    ));
                }
            }
            for &d in &tree {
                self.check_pages(d, name, wpos)?;
                let vn = if d == *hw { vname } else { &p.devices[d].name };
                check_sizes(p, d, vn, wpos)?;
            }
            claimed.extend(&tree);
            // The wrapped device under its new name, its children under
            // their own names after it.
            let base = devices.len();
            for &d in &tree {
                let parent = match p.devices[d].parent {
                    Some(pp) if d != *hw => devices[base..]
                        .iter()
                        .position(|v| v.hw == pp)
                        .map(|i| (base + i) as u32),
                    _ => None,
                };
                let vn = if d == *hw {
                    vname.clone()
                } else {
                    p.devices[d].name.clone()
                };
                devices.push(VDevice {
                    name: vn,
                    hw: d,
                    parent,
                    pos: wpos.clone(),
                });
            }
        }
        self.buses.push(Vbus {
            name: name.to_string(),
            devices,
            pos: draft.pos.clone(),
        });
        Ok(())
    }

    /// Refuses device `d` for bus `name` if one of its MMIO pages is also a
    /// page of a device on another bus: clients map whole pages, so the
    /// other bus's client would reach this device's registers too.
    fn check_pages(&self, d: DevId, name: &str, pos: &Pos) -> Result<(), ConfigError> {
        const PAGE_MASK: u64 = 0xfff;
        let p = &self.platform;
        let pages = |r: &Res| (r.start & !PAGE_MASK, r.end | PAGE_MASK);
        for bus in &self.buses {
            for v in &bus.devices {
                for (oid, or) in &p.devices[v.hw].resources {
                    for (id, r) in &p.devices[d].resources {
                        let both_mmio =
                            r.kind == ResourceKind::Mmio && or.kind == ResourceKind::Mmio;
                        let ((s, e), (os, oe)) = (pages(r), pages(or));
                        if both_mmio && s <= oe && os <= e {
                            return Err(ConfigError::new(
                                pos,
                                format!(
                                    "{}.{id} ({}) shares a page with {}.{oid} ({}) on virtual bus '{}'; a page of MMIO can go to one virtual bus only, not also to '{name}'",
                                    p.path(d),
                                    r.describe(),
                                    p.path(v.hw),
                                    or.describe(),
                                    bus.name
                                ),
                            ));
                        }
                    }
                }
            }
        }
        Ok(())
    }

    /// The bus a platform device is on.
    pub fn owner(&self, d: DevId) -> Option<&Vbus> {
        self.buses
            .iter()
            .find(|b| b.devices.iter().any(|v| v.hw == d))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pos(l: u32) -> Pos {
        Pos(format!("t.cfg:{l}"))
    }

    fn rtc(p: &mut Platform) -> DevId {
        let d = p.create(pos(1));
        p.devices[d].compatible = vec!["arm,pl031".into()];
        p.devices[d].resources.push((
            "reg0".into(),
            Res::mmio(0x901_0000, 0x901_0fff, 0, pos(2)).unwrap(),
        ));
        p.devices[d].resources.push((
            "irq0".into(),
            Res::irq(34, 34, mode::LEVEL_HIGH, pos(3)).unwrap(),
        ));
        d
    }

    #[test]
    fn resources_are_checked_when_made() {
        assert!(
            Res::mmio(2, 1, 0, pos(1))
                .unwrap_err()
                .message
                .contains("below")
        );
        assert!(Res::mmio(1, 2, 0x1, pos(1)).is_err());
        assert!(Res::irq(5, 4, 0, pos(1)).is_err());
        assert!(
            Res::irq(5, 5, 0x2, pos(1))
                .unwrap_err()
                .message
                .contains("trigger")
        );
        assert_eq!(
            Res::irq(34, 34, mode::LEVEL_HIGH, pos(1))
                .unwrap()
                .describe(),
            "IRQ 34"
        );
    }

    #[test]
    fn resources_by_kind() {
        let mut p = Platform::new();
        let a = rtc(&mut p);
        let d = &p.devices[a];
        let mmio: Vec<_> = d.mmio().map(|r| (r.start, r.end)).collect();
        assert_eq!(mmio, [(0x901_0000, 0x901_0fff)]);
        let irqs: Vec<_> = d.irqs().map(|r| (r.start, r.end)).collect();
        assert_eq!(irqs, [(34, 34)]);
    }

    #[test]
    fn limits_follow_the_ram_size() {
        assert_eq!(Limits::qemu_virt().ram, [(0x4000_0000, 0x7fff_ffff)]);
        let l = Limits::qemu_virt_with_ram(2 << 30);
        assert_eq!(l.ram, [(0x4000_0000, 0xbfff_ffff)]);
        let mut p = Platform::new();
        let a = p.create(pos(1));
        p.devices[a].resources.push((
            "r".into(),
            Res::mmio(0x8000_0000, 0x8000_0fff, 0, pos(2)).unwrap(),
        ));
        p.add_child(SYSTEM_BUS, "a", a, &pos(3)).unwrap();
        p.check(&Limits::qemu_virt()).unwrap();
        assert!(p.check(&l).unwrap_err().message.contains("lies in RAM"));
    }

    #[test]
    fn tree_and_paths() {
        let mut p = Platform::new();
        let a = rtc(&mut p);
        p.add_child(SYSTEM_BUS, "rtc", a, &pos(4)).unwrap();
        assert_eq!(p.path(a), "System_bus.rtc");
        assert_eq!(p.child(SYSTEM_BUS, "rtc"), Some(a));
        assert!(p.on_platform(a));
        let b = p.create(pos(5));
        assert!(!p.on_platform(b));
        let e = p.add_child(SYSTEM_BUS, "rtc", b, &pos(6)).unwrap_err();
        assert_eq!(
            e.to_string(),
            "t.cfg:6: System_bus already has a device 'rtc'"
        );
        assert!(
            p.add_child(SYSTEM_BUS, "x", a, &pos(7)).is_err(),
            "two parents"
        );
        assert!(p.add_child(a, "self", a, &pos(7)).is_err());
        assert_eq!(p.path_on_platform(b), "(unnamed device)");
        p.add_child(a, "sub", b, &pos(8)).unwrap();
        assert_eq!(p.path_on_platform(a), "rtc");
        assert_eq!(p.path_on_platform(b), "rtc.sub");
        assert_eq!(p.path_on_platform(SYSTEM_BUS), "System_bus");
        assert_eq!(p.subtree(SYSTEM_BUS), vec![SYSTEM_BUS, a, b]);
        assert_eq!(p.find(SYSTEM_BUS, &["arm,pl031".into()]), vec![a]);
        p.check(&Limits::qemu_virt()).unwrap();
    }

    #[test]
    fn resources_outside_the_platform_or_shared_are_refused() {
        let l = Limits::qemu_virt();
        let mut p = Platform::new();
        let a = rtc(&mut p);
        p.add_child(SYSTEM_BUS, "rtc", a, &pos(4)).unwrap();
        let b = rtc(&mut p);
        p.add_child(SYSTEM_BUS, "rtc2", b, &pos(4)).unwrap();
        let e = p.check(&l).unwrap_err();
        assert!(e.message.contains("overlaps System_bus.rtc.reg0"), "{e}");
        p.devices[b].resources[0].1 = Res::mmio(0x4000_0000, 0x4000_0fff, 0, pos(9)).unwrap();
        let e = p.check(&l).unwrap_err();
        assert!(e.message.contains("lies in RAM"), "{e}");
        assert_eq!(e.pos, pos(9));
        p.devices[b].resources[0].1 = Res::mmio(1 << 40, (1 << 40) + 1, 0, pos(9)).unwrap();
        assert!(
            p.check(&l)
                .unwrap_err()
                .message
                .contains("outside the platform")
        );
        p.devices[b].resources[0].1 = Res::mmio(0x902_0000, 0x902_0fff, 0, pos(9)).unwrap();
        let e = p.check(&l).unwrap_err();
        assert!(e.message.contains("IRQ 34) overlaps"), "{e}");
        p.devices[b].resources[1].1 = Res::irq(300, 300, 0, pos(10)).unwrap();
        let e = p.check(&l).unwrap_err();
        assert!(e.message.contains("lines are 32-287"), "{e}");
        p.devices[b].resources[1].1 = Res::irq(35, 35, 0, pos(10)).unwrap();
        p.check(&l).unwrap();
    }

    #[test]
    fn buses_claim_devices_once() {
        let mut c = Config::default();
        let a = rtc(&mut c.platform);
        c.platform.add_child(SYSTEM_BUS, "rtc", a, &pos(4)).unwrap();
        let stray = c.platform.create(pos(5));
        let caps = ["a".to_string(), "b".to_string()];
        let draft = BusDraft {
            wrapped: vec![("PL031".into(), a, pos(6))],
            pos: pos(6),
        };
        c.add_bus("a", &draft, Some(&caps), &pos(7)).unwrap();
        let bus = c.bus("a").unwrap();
        assert_eq!(bus.devices.len(), 1);
        assert_eq!(bus.devices[0].name, "PL031");
        assert_eq!(bus.devices[0].pos, pos(6));
        let e = c.add_bus("b", &draft, Some(&caps), &pos(8)).unwrap_err();
        assert!(e.message.contains("already on virtual bus 'a'"), "{e}");
        assert!(
            c.add_bus("a", &BusDraft::default(), Some(&caps), &pos(8))
                .is_err()
        );
        let e = c
            .add_bus("c", &BusDraft::default(), Some(&caps), &pos(8))
            .unwrap_err();
        assert!(e.message.contains("no capability named 'c'"), "{e}");
        let e = c
            .add_bus(
                "b",
                &BusDraft {
                    wrapped: vec![("X".into(), stray, pos(9))],
                    pos: pos(9),
                },
                Some(&caps),
                &pos(9),
            )
            .unwrap_err();
        assert!(e.message.contains("not on the platform"), "{e}");
        let twice = BusDraft {
            wrapped: vec![("X".into(), a, pos(9)), ("Y".into(), a, pos(9))],
            pos: pos(9),
        };
        let mut c2 = c.clone();
        c2.buses.clear();
        assert!(c2.add_bus("b", &twice, None, &pos(9)).is_err());
    }

    #[test]
    fn mmio_pages_go_to_one_bus() {
        let mut c = Config::default();
        let p = &mut c.platform;
        let a = p.create(pos(1));
        let b = p.create(pos(2));
        for (d, s) in [(a, 0x900_0000), (b, 0x900_0800)] {
            p.devices[d]
                .resources
                .push(("r".into(), Res::mmio(s, s + 0xff, 0, pos(3)).unwrap()));
        }
        p.add_child(SYSTEM_BUS, "a", a, &pos(4)).unwrap();
        p.add_child(SYSTEM_BUS, "b", b, &pos(4)).unwrap();
        p.check(&Limits::qemu_virt()).unwrap();
        let bus = |d, at| BusDraft {
            wrapped: vec![("D".into(), d, pos(at))],
            pos: pos(at),
        };
        c.add_bus("one", &bus(a, 5), None, &pos(5)).unwrap();
        let e = c.add_bus("two", &bus(b, 6), None, &pos(6)).unwrap_err();
        assert_eq!(
            e.to_string(),
            "t.cfg:6: System_bus.b.r (MMIO 0x9000800-0x90008ff) shares a page with System_bus.a.r (MMIO 0x9000000-0x90000ff) on virtual bus 'one'; a page of MMIO can go to one virtual bus only, not also to 'two'"
        );
    }

    #[test]
    fn strings_fit_the_protocol() {
        let mut c = Config::default();
        let a = rtc(&mut c.platform);
        c.platform.add_child(SYSTEM_BUS, "rtc", a, &pos(4)).unwrap();
        c.platform.devices[a]
            .compatible
            .push("x".repeat(CID_MAX + 1));
        let draft = BusDraft {
            wrapped: vec![("PL031".into(), a, pos(6))],
            pos: pos(6),
        };
        let e = c.add_bus("a", &draft, None, &pos(7)).unwrap_err();
        assert!(e.message.contains("compatible string 'xxx"), "{e}");
        assert!(
            e.message
                .ends_with("is longer than 64 bytes, the most a virtual bus carries")
        );
        c.platform.devices[a].compatible.pop();
        let long = BusDraft {
            wrapped: vec![("N".repeat(NAME_MAX + 1), a, pos(6))],
            pos: pos(6),
        };
        assert!(c.add_bus("a", &long, None, &pos(7)).is_err());
        c.add_bus("a", &draft, None, &pos(7)).unwrap();
    }

    #[test]
    fn children_follow_their_parent_on_a_bus() {
        let mut c = Config::default();
        let p = &mut c.platform;
        let parent = p.create(pos(1));
        let k1 = p.create(pos(2));
        let k2 = p.create(pos(3));
        p.add_child(SYSTEM_BUS, "pci", parent, &pos(4)).unwrap();
        p.add_child(parent, "k1", k1, &pos(4)).unwrap();
        p.add_child(parent, "k2", k2, &pos(4)).unwrap();
        let draft = BusDraft {
            wrapped: vec![("PCI".into(), parent, pos(5))],
            pos: pos(5),
        };
        c.add_bus("bus", &draft, None, &pos(6)).unwrap();
        let names: Vec<_> = c.buses[0]
            .devices
            .iter()
            .map(|v| (v.name.as_str(), v.parent))
            .collect();
        assert_eq!(names, [("PCI", None), ("k1", Some(0)), ("k2", Some(0))]);
        // A child of a wrapped device cannot go to another bus.
        let draft = BusDraft {
            wrapped: vec![("K".into(), k1, pos(7))],
            pos: pos(7),
        };
        assert!(c.add_bus("other", &draft, None, &pos(7)).is_err());
    }
}
