//! Devices of the `vbus` passed through to the guest.
//!
//! io hands uvmm a virtual bus (the `vbus` capability): devices with
//! compatible strings, MMIO ranges and interrupt lines. Each bus device is
//! matched to the guest device-tree node that describes the same device:
//! an enabled node whose `compatible` list shares a string with the
//! device (or whose `l4vmm,vbus-dev` names it) and whose `reg` ranges,
//! as guest-physical addresses, are the device's MMIO ranges in the same
//! order. Such a node stays enabled and uvmm does not emulate it: its MMIO
//! is mapped into the guest's stage-2 space at the node's addresses, and
//! each of its interrupts (the node's `interrupts`, in order) is bound to
//! the bus device's interrupt line of the same position, for the kernel
//! to inject directly.
//!
//! Everything here is about matching; the target's backend does the
//! mapping and binding ([`crate::backend::VmBackend::map_mmio`],
//! [`crate::backend::VmBackend::route_irq`]).

use core::fmt;

use crate::dt::{self, DtError, Tree};

/// A resource of a bus device, as uvmm uses it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BusResource {
    /// An MMIO range: the resource's index in the device, its first
    /// address and its size.
    Mmio {
        /// The resource's index in its device.
        index: u32,
        /// First address.
        start: u64,
        /// Size in bytes.
        size: u64,
    },
    /// An interrupt line: the resource's index and the line (host INTID).
    Irq {
        /// The resource's index in its device.
        index: u32,
        /// The host interrupt number.
        line: u32,
    },
}

/// A device on uvmm's vbus.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BusDevice {
    /// Its index on the bus.
    pub index: u32,
    /// Its name on the bus (`PL031`).
    pub name: String,
    /// Its hid (if any) and compatible strings.
    pub ids: Vec<String>,
    /// Its MMIO and interrupt resources, in the device's order.
    pub resources: Vec<BusResource>,
}

impl BusDevice {
    fn mmio(&self) -> Vec<(u64, u64)> {
        self.resources
            .iter()
            .filter_map(|r| match *r {
                BusResource::Mmio { start, size, .. } => Some((start, size)),
                BusResource::Irq { .. } => None,
            })
            .collect()
    }
}

/// An MMIO range passed through.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PtMmio {
    /// The bus device's index.
    pub device: u32,
    /// The resource's index in that device.
    pub resource: u32,
    /// Where the guest sees it.
    pub gpa: u64,
    /// Its size.
    pub size: u64,
}

/// An interrupt passed through.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PtIrq {
    /// The bus device's index.
    pub device: u32,
    /// The resource's index in that device.
    pub resource: u32,
    /// The host's line.
    pub line: u32,
    /// The INTID the guest's device tree gives it.
    pub intid: u32,
}

/// A device-tree node backed by a bus device.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Passthrough {
    /// The node's path.
    pub path: String,
    /// The bus device's name.
    pub name: String,
    /// Its MMIO ranges.
    pub mmio: Vec<PtMmio>,
    /// Its interrupts.
    pub irqs: Vec<PtIrq>,
}

impl fmt::Display for Passthrough {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} = vbus device {}", self.path, self.name)?;
        for m in &self.mmio {
            write!(f, ", MMIO {:#x}+{:#x}", m.gpa, m.size)?;
        }
        for i in &self.irqs {
            write!(f, ", line {} as INTID {}", i.line, i.intid)?;
        }
        Ok(())
    }
}

/// The result of [`match_devices`].
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Matched {
    /// The nodes backed by bus devices.
    pub passed: Vec<Passthrough>,
    /// Bus devices without a node, and nodes whose interrupts do not fit
    /// their device's: what the user should hear about.
    pub warnings: Vec<String>,
}

/// Whether node `n` names bus device `d`: by `l4vmm,vbus-dev` (the
/// device's name, hid or a compatible string), else by a shared
/// compatible string.
fn names(n: &dt::Node, d: &BusDevice) -> bool {
    match n.prop_str("l4vmm,vbus-dev") {
        Some(want) => d.name == want || d.ids.iter().any(|i| i == want),
        None => d.ids.iter().any(|i| n.is_compatible(i)),
    }
}

/// Matches the bus devices to the enabled nodes of `t`.
pub fn match_devices(t: &Tree, bus: &[BusDevice]) -> Result<Matched, DtError> {
    let mut out = Matched::default();
    let mut taken = vec![false; bus.len()];
    for (path, n, _) in t.walk() {
        if !n.is_enabled()
            || n.prop("reg").is_none()
            || !bus.iter().zip(&taken).any(|(d, t)| !t && names(n, d))
        {
            continue;
        }
        let reg = t
            .reg(&path)?
            .into_iter()
            .map(|(addr, size)| Ok((t.bus_address(&path, addr)?, size)))
            .collect::<Result<Vec<_>, DtError>>()?;
        let Some(k) = bus
            .iter()
            .enumerate()
            .position(|(k, d)| !taken[k] && names(n, d) && d.mmio() == reg)
        else {
            continue;
        };
        taken[k] = true;
        let d = &bus[k];
        let intids = dt::gic_intids(&path, n)?;
        let lines: Vec<(u32, u32)> = d
            .resources
            .iter()
            .filter_map(|r| match *r {
                BusResource::Irq { index, line } => Some((index, line)),
                BusResource::Mmio { .. } => None,
            })
            .collect();
        if lines.len() != intids.len() {
            out.warnings.push(format!(
                "{path}: {} interrupt(s) in the device tree, {} on vbus device {}; passing {}",
                intids.len(),
                lines.len(),
                d.name,
                lines.len().min(intids.len())
            ));
        }
        let mmio = d
            .resources
            .iter()
            .filter_map(|r| match *r {
                BusResource::Mmio { index, start, size } => Some(PtMmio {
                    device: d.index,
                    resource: index,
                    gpa: start,
                    size,
                }),
                BusResource::Irq { .. } => None,
            })
            .collect();
        let irqs = lines
            .iter()
            .zip(&intids)
            .map(|(&(resource, line), &intid)| PtIrq {
                device: d.index,
                resource,
                line,
                intid,
            })
            .collect();
        out.passed.push(Passthrough {
            path,
            name: d.name.clone(),
            mmio,
            irqs,
        });
    }
    for (d, _) in bus.iter().zip(&taken).filter(|(_, t)| !**t) {
        out.warnings.push(format!(
            "vbus device {} ({}) has no enabled node with its compatible and registers in the device tree; not passed through",
            d.name,
            d.ids.join(", ")
        ));
    }
    Ok(out)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::dt::{reg_bytes, str_bytes};

    /// io's PL031 at `addr` on the vbus (also the VM tests' device).
    pub(crate) fn pl031(addr: u64) -> BusDevice {
        BusDevice {
            index: 0,
            name: "PL031".into(),
            ids: vec!["arm,pl031".into()],
            resources: vec![
                BusResource::Mmio {
                    index: 0,
                    start: addr,
                    size: 0x1000,
                },
                BusResource::Irq { index: 1, line: 34 },
            ],
        }
    }

    fn tree() -> Tree {
        let mut t = Tree::default();
        t.root.set_u32("#address-cells", 2);
        t.root.set_u32("#size-cells", 2);
        let n = t.node_or_create("/pl031@9010000");
        n.set_prop("compatible", str_bytes(&["arm,pl031", "arm,primecell"]));
        n.set_prop("reg", reg_bytes(&[(0x901_0000, 0x1000)], 2, 2));
        n.set_prop(
            "interrupts",
            [0u32, 2, 4].iter().flat_map(|c| c.to_be_bytes()).collect(),
        );
        t
    }

    #[test]
    fn same_compatible_and_registers_match() {
        let m = match_devices(&tree(), &[pl031(0x901_0000)]).unwrap();
        assert_eq!(m.warnings, Vec::<String>::new());
        assert_eq!(
            m.passed,
            vec![Passthrough {
                path: "/pl031@9010000".into(),
                name: "PL031".into(),
                mmio: vec![PtMmio {
                    device: 0,
                    resource: 0,
                    gpa: 0x901_0000,
                    size: 0x1000
                }],
                irqs: vec![PtIrq {
                    device: 0,
                    resource: 1,
                    line: 34,
                    intid: 34
                }],
            }]
        );
        assert_eq!(
            m.passed[0].to_string(),
            "/pl031@9010000 = vbus device PL031, MMIO 0x9010000+0x1000, line 34 as INTID 34"
        );
    }

    #[test]
    fn other_registers_disabled_nodes_and_no_bus_do_not_match() {
        let m = match_devices(&tree(), &[pl031(0x902_0000)]).unwrap();
        assert!(m.passed.is_empty());
        assert!(m.warnings[0].contains("vbus device PL031 (arm,pl031) has no enabled node"));
        let mut t = tree();
        t.node_mut("/pl031@9010000")
            .unwrap()
            .set_str("status", "disabled");
        assert!(
            match_devices(&t, &[pl031(0x901_0000)])
                .unwrap()
                .passed
                .is_empty()
        );
        assert_eq!(match_devices(&tree(), &[]).unwrap(), Matched::default());
    }

    #[test]
    fn vbus_dev_names_the_device_and_irq_counts_are_checked() {
        let mut t = tree();
        let n = t.node_mut("/pl031@9010000").unwrap();
        n.set_prop("compatible", str_bytes(&["vendor,rtc"]));
        n.set_str("l4vmm,vbus-dev", "PL031");
        n.remove_prop("interrupts");
        let m = match_devices(&t, &[pl031(0x901_0000)]).unwrap();
        assert_eq!(m.passed.len(), 1);
        assert!(m.passed[0].irqs.is_empty());
        assert!(m.warnings[0].contains("0 interrupt(s) in the device tree, 1 on vbus device"));
    }
}
