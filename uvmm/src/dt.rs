//! The guest's device tree: read ([`crate::dtb`]), merged, changed and
//! written again (`vm-fdt`).
//!
//! [`Tree`] is the whole tree as plain data. [`Tree::from_dtb`] reads a
//! blob, [`Tree::merge`] lays a later `-d` tree over an earlier one (nodes
//! by path, properties replaced), [`Tree::to_dtb`] writes a blob. The
//! guest-specific changes are functions on the tree:
//!
//! * [`memory_specs`] reads the memory nodes (`device_type = "memory"`,
//!   `reg`, `l4vmm,dscap`), [`set_memory`] writes back what uvmm mapped;
//! * [`set_cpus`] makes one `/cpus/cpu@N` per vCPU, started by PSCI;
//! * [`set_chosen`] sets `bootargs` and the initrd range;
//! * [`set_psci`] announces PSCI 1.0 over HVC;
//! * [`find_devices`] and [`disable_unbacked`] find what uvmm emulates and
//!   switch off the devices nobody provides.

use core::fmt;

use crate::options::{DtMod, PropValue};

/// Why a device tree could not be read, changed or written.
#[derive(Debug, PartialEq, Eq)]
pub enum DtError {
    /// The blob is not a flattened device tree.
    Parse(String),
    /// A property has the wrong length or content.
    BadProp {
        /// The node's path.
        node: String,
        /// The property.
        prop: String,
        /// What is wrong.
        what: String,
    },
    /// Writing the blob failed.
    Write(String),
}

impl fmt::Display for DtError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DtError::Parse(m) => write!(f, "not a valid device tree: {m}"),
            DtError::BadProp { node, prop, what } => {
                write!(f, "device tree {node}: '{prop}' {what}")
            }
            DtError::Write(m) => write!(f, "cannot write the device tree: {m}"),
        }
    }
}

impl std::error::Error for DtError {}

/// A device-tree node.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Node {
    /// The name with unit address (`uart@9000000`); empty for the root.
    pub name: String,
    /// Properties in order.
    pub props: Vec<(String, Vec<u8>)>,
    /// Children in order.
    pub children: Vec<Node>,
}

impl Node {
    /// A node without properties or children.
    pub fn new(name: &str) -> Node {
        Node {
            name: name.to_string(),
            ..Node::default()
        }
    }

    /// A property's value.
    pub fn prop(&self, name: &str) -> Option<&[u8]> {
        self.props
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_slice())
    }

    /// Sets (replaces or appends) a property.
    pub fn set_prop(&mut self, name: &str, value: Vec<u8>) {
        match self.props.iter_mut().find(|(n, _)| n == name) {
            Some((_, v)) => *v = value,
            None => self.props.push((name.to_string(), value)),
        }
    }

    /// Sets a string property.
    pub fn set_str(&mut self, name: &str, value: &str) {
        self.set_prop(name, str_bytes(&[value]));
    }

    /// Sets a property of one 32-bit cell.
    pub fn set_u32(&mut self, name: &str, value: u32) {
        self.set_prop(name, value.to_be_bytes().to_vec());
    }

    /// Removes a property.
    pub fn remove_prop(&mut self, name: &str) {
        self.props.retain(|(n, _)| n != name);
    }

    /// The first string of a string property.
    pub fn prop_str(&self, name: &str) -> Option<&str> {
        self.prop_strs(name).into_iter().next()
    }

    /// The strings of a string-list property.
    pub fn prop_strs(&self, name: &str) -> Vec<&str> {
        self.prop(name)
            .map(|v| {
                v.split(|b| *b == 0)
                    .filter(|s| !s.is_empty())
                    .filter_map(|s| core::str::from_utf8(s).ok())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// A property as 32-bit cells (`None` when absent or not whole cells).
    pub fn prop_cells(&self, name: &str) -> Option<Vec<u32>> {
        let v = self.prop(name)?;
        (v.len() % 4 == 0).then(|| {
            v.chunks_exact(4)
                .map(|c| u32::from_be_bytes([c[0], c[1], c[2], c[3]]))
                .collect()
        })
    }

    /// Whether `compatible` lists `c`.
    pub fn is_compatible(&self, c: &str) -> bool {
        self.prop_strs("compatible").contains(&c)
    }

    /// Whether the node is enabled (no `status`, or "okay"/"ok").
    pub fn is_enabled(&self) -> bool {
        self.prop_str("status")
            .is_none_or(|s| s == "okay" || s == "ok")
    }

    /// The name without the unit address.
    pub fn base_name(&self) -> &str {
        self.name.split('@').next().unwrap_or("")
    }

    /// A child by full name.
    pub fn child(&self, name: &str) -> Option<&Node> {
        self.children.iter().find(|c| c.name == name)
    }

    fn child_mut(&mut self, name: &str) -> Option<&mut Node> {
        self.children.iter_mut().find(|c| c.name == name)
    }

    fn merge(&mut self, other: Node) {
        for (n, v) in other.props {
            self.set_prop(&n, v);
        }
        for c in other.children {
            match self.child_mut(&c.name) {
                Some(mine) => mine.merge(c),
                None => self.children.push(c),
            }
        }
    }

    /// `#address-cells` and `#size-cells` this node gives its children
    /// (2 and 1 when absent, as the specification says).
    pub fn child_cells(&self) -> (u32, u32) {
        let cell = |n| self.prop_cells(n).and_then(|c| c.first().copied());
        (
            cell("#address-cells").unwrap_or(2),
            cell("#size-cells").unwrap_or(1),
        )
    }
}

/// NUL-terminated strings, concatenated (a string-list property).
pub fn str_bytes(strs: &[&str]) -> Vec<u8> {
    let mut v = Vec::new();
    for s in strs {
        v.extend_from_slice(s.as_bytes());
        v.push(0);
    }
    v
}

/// `(address, size)` pairs in `acells`/`scells` 32-bit cells each.
pub fn reg_bytes(pairs: &[(u64, u64)], acells: u32, scells: u32) -> Vec<u8> {
    let mut v = Vec::new();
    let put = |v: &mut Vec<u8>, x: u64, cells: u32| {
        for i in (0..cells).rev() {
            v.extend_from_slice(&((x >> (32 * i)) as u32).to_be_bytes());
        }
    };
    for &(a, s) in pairs {
        put(&mut v, a, acells);
        put(&mut v, s, scells);
    }
    v
}

fn cells_value(c: &[u32]) -> u64 {
    c.iter().fold(0u64, |acc, x| (acc << 32) | u64::from(*x))
}

/// The whole device tree.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Tree {
    /// The root node.
    pub root: Node,
    /// The memory reservation block: (address, size).
    pub reserved: Vec<(u64, u64)>,
}

impl Default for Tree {
    fn default() -> Tree {
        let mut root = Node::new("");
        root.set_u32("#address-cells", 2);
        root.set_u32("#size-cells", 2);
        Tree {
            root,
            reserved: Vec::new(),
        }
    }
}

impl Tree {
    /// Reads a flattened device tree blob ([`crate::dtb::read`]: every
    /// offset checked, a damaged blob an error saying where).
    pub fn from_dtb(blob: &[u8]) -> Result<Tree, DtError> {
        let (root, reserved) = crate::dtb::read(blob)?;
        Ok(Tree { root, reserved })
    }

    /// Writes the tree as a blob.
    pub fn to_dtb(&self) -> Result<Vec<u8>, DtError> {
        let err = |e: vm_fdt::Error| DtError::Write(e.to_string());
        let reserved: Vec<vm_fdt::FdtReserveEntry> = self
            .reserved
            .iter()
            .map(|&(a, s)| vm_fdt::FdtReserveEntry::new(a, s))
            .collect::<Result<_, _>>()
            .map_err(err)?;
        let mut w = vm_fdt::FdtWriter::new_with_mem_reserv(&reserved).map_err(err)?;
        fn emit(w: &mut vm_fdt::FdtWriter, n: &Node) -> Result<(), vm_fdt::Error> {
            let h = w.begin_node(&n.name)?;
            for (name, value) in &n.props {
                w.property(name, value)?;
            }
            for c in &n.children {
                emit(w, c)?;
            }
            w.end_node(h)
        }
        emit(&mut w, &self.root).map_err(err)?;
        w.finish().map_err(err)
    }

    /// Lays `other` over this tree: its nodes are added or merged by path,
    /// its properties replace these; its reservations are added.
    pub fn merge(&mut self, other: Tree) {
        self.root.merge(other.root);
        for r in other.reserved {
            if !self.reserved.contains(&r) {
                self.reserved.push(r);
            }
        }
    }

    fn components(path: &str) -> impl Iterator<Item = &str> {
        path.split('/').filter(|c| !c.is_empty())
    }

    /// The node at `path` (`/` is the root).
    pub fn node(&self, path: &str) -> Option<&Node> {
        let mut n = &self.root;
        for c in Tree::components(path) {
            n = n.child(c)?;
        }
        Some(n)
    }

    /// The node at `path`, mutable.
    pub fn node_mut(&mut self, path: &str) -> Option<&mut Node> {
        let mut n = &mut self.root;
        for c in Tree::components(path) {
            n = n.child_mut(c)?;
        }
        Some(n)
    }

    /// The node at `path`, created (with its missing parents) if needed.
    pub fn node_or_create(&mut self, path: &str) -> &mut Node {
        let mut n = &mut self.root;
        for c in Tree::components(path) {
            let i = match n.children.iter().position(|x| x.name == c) {
                Some(i) => i,
                None => {
                    n.children.push(Node::new(c));
                    n.children.len() - 1
                }
            };
            n = &mut n.children[i];
        }
        n
    }

    /// Removes the node at `path`; whether it was there.
    pub fn remove(&mut self, path: &str) -> bool {
        let (parent, name) = match path.rsplit_once('/') {
            Some((p, n)) => (if p.is_empty() { "/" } else { p }, n),
            None => return false,
        };
        match self.node_mut(parent) {
            Some(p) => {
                let before = p.children.len();
                p.children.retain(|c| c.name != name);
                p.children.len() != before
            }
            None => false,
        }
    }

    /// Every node with its path and its parent's `(#address-cells,
    /// #size-cells)`, depth first.
    pub fn walk(&self) -> Vec<(String, &Node, (u32, u32))> {
        fn go<'a>(
            n: &'a Node,
            path: String,
            cells: (u32, u32),
            out: &mut Vec<(String, &'a Node, (u32, u32))>,
        ) {
            let mine = n.child_cells();
            out.push((path.clone(), n, cells));
            for c in &n.children {
                let p = if path == "/" {
                    format!("/{}", c.name)
                } else {
                    format!("{path}/{}", c.name)
                };
                go(c, p, mine, out);
            }
        }
        let mut out = Vec::new();
        go(&self.root, "/".to_string(), (2, 1), &mut out);
        out
    }

    /// The cells the parent of `path` gives it.
    pub fn cells_of(&self, path: &str) -> (u32, u32) {
        let parent = path
            .rsplit_once('/')
            .map_or("/", |(p, _)| if p.is_empty() { "/" } else { p });
        self.node(parent).map_or((2, 1), Node::child_cells)
    }

    /// The `reg` of the node at `path` as (address, size) pairs.
    pub fn reg(&self, path: &str) -> Result<Vec<(u64, u64)>, DtError> {
        let Some(n) = self.node(path) else {
            return Ok(Vec::new());
        };
        let (a, s) = self.cells_of(path);
        decode_reg(path, n, a, s)
    }

    /// Translates `addr` in the address space of the node at `path`'s
    /// parent to a root (guest-physical) address through the `ranges` of
    /// every bus on the way up. An empty `ranges` maps one to one; a bus
    /// without `ranges`, or an address no entry covers, is an error.
    pub fn bus_address(&self, path: &str, addr: u64) -> Result<u64, DtError> {
        let parts: Vec<&str> = Tree::components(path).collect();
        let mut addr = addr;
        // Buses from the innermost (the node's parent) out to the root's child.
        for depth in (1..parts.len()).rev() {
            let bus_path = format!("/{}", parts[..depth].join("/"));
            let parent_path = if depth == 1 {
                "/".to_string()
            } else {
                format!("/{}", parts[..depth - 1].join("/"))
            };
            let bus = self
                .node(&bus_path)
                .ok_or_else(|| DtError::Parse(format!("no node {bus_path}")))?;
            let bad = |what: String| DtError::BadProp {
                node: bus_path.clone(),
                prop: "ranges".into(),
                what,
            };
            let Some(ranges) = bus.prop("ranges") else {
                return Err(bad(format!("is missing, so {path} is not reachable")));
            };
            if ranges.is_empty() {
                continue;
            }
            let (ca, cs) = bus.child_cells();
            let (pa, _) = self.node(&parent_path).map_or((2, 1), Node::child_cells);
            if ca == 0 || ca > 2 || pa == 0 || pa > 2 || cs > 2 {
                return Err(bad(format!(
                    "uses {ca}/{pa}/{cs} cells (uvmm reads 1 or 2)"
                )));
            }
            let cells = bus
                .prop_cells("ranges")
                .ok_or_else(|| bad(format!("has {} bytes, not whole cells", ranges.len())))?;
            let per = (ca + pa + cs) as usize;
            if cells.len() % per != 0 {
                return Err(bad(format!(
                    "has {} cells, not a multiple of {per}",
                    cells.len()
                )));
            }
            let hit = cells.chunks_exact(per).find_map(|e| {
                let child = cells_value(&e[..ca as usize]);
                let parent = cells_value(&e[ca as usize..(ca + pa) as usize]);
                let size = cells_value(&e[(ca + pa) as usize..]);
                (addr >= child && addr - child < size).then(|| parent + (addr - child))
            });
            addr = hit.ok_or_else(|| bad(format!("maps no range over {addr:#x} of {path}")))?;
        }
        Ok(addr)
    }

    /// Applies a `-m` change.
    pub fn apply(&mut self, m: &DtMod) {
        let n = self.node_or_create(&m.node);
        let value = match &m.value {
            PropValue::Str(s) => str_bytes(&[s]),
            PropValue::U32(v) => v.iter().flat_map(|x| x.to_be_bytes()).collect(),
            PropValue::U64(v) => v.iter().flat_map(|x| x.to_be_bytes()).collect(),
            PropValue::Empty => Vec::new(),
        };
        n.set_prop(&m.prop, value);
    }
}

fn decode_reg(path: &str, n: &Node, a: u32, s: u32) -> Result<Vec<(u64, u64)>, DtError> {
    let Some(v) = n.prop("reg") else {
        return Ok(Vec::new());
    };
    let bad = |what: String| DtError::BadProp {
        node: path.to_string(),
        prop: "reg".into(),
        what,
    };
    if a > 2 || s > 2 || a == 0 {
        return Err(bad(format!(
            "uses {a} address and {s} size cells (uvmm reads 1 or 2)"
        )));
    }
    let cells = n
        .prop_cells("reg")
        .ok_or_else(|| bad(format!("has {} bytes, not whole cells", v.len())))?;
    let per = (a + s) as usize;
    if cells.len() % per != 0 {
        return Err(bad(format!(
            "has {} cells, not a multiple of {per}",
            cells.len()
        )));
    }
    Ok(cells
        .chunks_exact(per)
        .map(|c| (cells_value(&c[..a as usize]), cells_value(&c[a as usize..])))
        .collect())
}

/// The dataspace capability of memory nodes without `l4vmm,dscap`.
pub const DEFAULT_RAM_CAP: &str = "ram";

/// A memory node as uvmm reads it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MemorySpec {
    /// Its path.
    pub path: String,
    /// The capability name of its dataspace (`l4vmm,dscap`, default `ram`).
    pub dscap: String,
    /// The wanted guest-physical ranges (`reg`).
    pub reg: Vec<(u64, u64)>,
    /// `l4vmm,physmap`: map the dataspace at its host-physical address.
    pub physmap: bool,
    /// The node has `dma-ranges`: uvmm adds the host-physical ranges.
    pub dma_ranges: bool,
}

/// The enabled memory nodes.
pub fn memory_specs(t: &Tree) -> Result<Vec<MemorySpec>, DtError> {
    let mut out = Vec::new();
    for (path, n, (a, s)) in t.walk() {
        if n.prop_str("device_type") != Some("memory") || !n.is_enabled() {
            continue;
        }
        out.push(MemorySpec {
            dscap: n
                .prop_str("l4vmm,dscap")
                .unwrap_or(DEFAULT_RAM_CAP)
                .to_string(),
            reg: decode_reg(&path, n, a, s)?,
            physmap: n.prop("l4vmm,physmap").is_some(),
            dma_ranges: n.prop("dma-ranges").is_some(),
            path,
        });
    }
    Ok(out)
}

/// Writes the RAM uvmm set up: the memory node at `path` (created as
/// `/memory@<base>` when `None`) gets `regions` as its `reg`.
pub fn set_memory(t: &mut Tree, path: Option<&str>, regions: &[(u64, u64)]) {
    let path = match path {
        Some(p) => p.to_string(),
        None => format!("/memory@{:x}", regions.first().map_or(0, |r| r.0)),
    };
    let (a, s) = t.cells_of(&path);
    let n = t.node_or_create(&path);
    n.set_str("device_type", "memory");
    n.set_prop("reg", reg_bytes(regions, a.clamp(1, 2), s.clamp(1, 2)));
}

/// Appends `(guest-physical, host-physical, size)` triples to the
/// `dma-ranges` of the node at `path`, in its parent's cells (what seed
/// 001 describes for memory nodes with an empty `dma-ranges`).
pub fn add_dma_ranges(t: &mut Tree, path: &str, ranges: &[(u64, u64, u64)]) {
    let (a, s) = t.cells_of(path);
    let (a, s) = (a.clamp(1, 2), s.clamp(1, 2));
    let Some(n) = t.node_mut(path) else {
        return;
    };
    let mut v = n.prop("dma-ranges").map(<[u8]>::to_vec).unwrap_or_default();
    for &(gpa, hpa, size) in ranges {
        let pair = reg_bytes(&[(gpa, hpa)], a, a);
        v.extend_from_slice(&pair);
        v.extend_from_slice(&reg_bytes(&[(size, 0)], s, 0));
    }
    n.set_prop("dma-ranges", v);
}

/// The MPIDR affinity (Aff1.Aff0) of vCPU `i`: 16 per cluster, as the
/// GICv3 SGI target list can address.
pub fn vcpu_mpidr(i: usize) -> u64 {
    (((i / 16) as u64) << 8) | (i % 16) as u64
}

/// Makes `/cpus` hold one `cpu@N` per vCPU (`count`), `reg` = its MPIDR
/// affinity, started with PSCI. Existing cpu nodes keep their other
/// properties (`compatible`, caches); extra ones are removed.
pub fn set_cpus(t: &mut Tree, count: usize) {
    let old = t
        .node("/cpus")
        .cloned()
        .unwrap_or_else(|| Node::new("cpus"));
    let cpu_nodes: Vec<Node> = old
        .children
        .iter()
        .filter(|c| c.prop_str("device_type") == Some("cpu"))
        .cloned()
        .collect();
    let cpus = t.node_or_create("/cpus");
    cpus.children
        .retain(|c| c.prop_str("device_type") != Some("cpu"));
    cpus.set_u32("#address-cells", 1);
    cpus.set_u32("#size-cells", 0);
    for i in 0..count {
        let mpidr = vcpu_mpidr(i);
        let mut n = cpu_nodes.get(i).cloned().unwrap_or_default();
        n.name = format!("cpu@{mpidr:x}");
        n.set_str("device_type", "cpu");
        if n.prop("compatible").is_none() {
            n.set_prop("compatible", str_bytes(&["arm,armv8"]));
        }
        n.set_u32("reg", mpidr as u32);
        n.set_str("enable-method", "psci");
        n.remove_prop("cpu-release-addr");
        n.remove_prop("status");
        cpus.children.push(n);
    }
}

/// The number of enabled cpu nodes (L4Re's uvmm: one vCPU each; none
/// means one).
pub fn cpu_count(t: &Tree) -> usize {
    t.node("/cpus")
        .map_or(0, |c| {
            c.children
                .iter()
                .filter(|n| n.prop_str("device_type") == Some("cpu") && n.is_enabled())
                .count()
        })
        .max(1)
}

/// Sets `/chosen`: `bootargs` when given, `linux,initrd-start/-end` when
/// there is a ramdisk (removed otherwise).
pub fn set_chosen(t: &mut Tree, bootargs: Option<&str>, initrd: Option<(u64, u64)>) {
    let c = t.node_or_create("/chosen");
    if let Some(b) = bootargs {
        c.set_str("bootargs", b);
    }
    match initrd {
        Some((s, e)) => {
            c.set_prop("linux,initrd-start", s.to_be_bytes().to_vec());
            c.set_prop("linux,initrd-end", e.to_be_bytes().to_vec());
        }
        None => {
            c.remove_prop("linux,initrd-start");
            c.remove_prop("linux,initrd-end");
        }
    }
}

/// Announces PSCI 1.0 (and 0.2) over HVC at `/psci`.
pub fn set_psci(t: &mut Tree) {
    let p = t.node_or_create("/psci");
    p.set_prop("compatible", str_bytes(&["arm,psci-1.0", "arm,psci-0.2"]));
    p.set_str("method", "hvc");
    for old in ["cpu_on", "cpu_off", "cpu_suspend", "migrate"] {
        p.remove_prop(old);
    }
}

/// What uvmm emulates for a node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DeviceKind {
    /// `arm,gic-v3`: distributor and redistributor regions.
    GicV3,
    /// `arm,pl011`.
    Pl011,
    /// `virtio,mmio` with `l4vmm,vdev = "console"`.
    VirtioConsole,
    /// `virtio,mmio` with `l4vmm,vdev = "proxy"`: a virtio device served
    /// by another task through the capability `l4vmm,virtiocap` names;
    /// `l4vmm,no-notify` names a queue whose notifications the device may
    /// suppress while busy.
    VirtioProxy {
        /// The capability (`l4vmm,virtiocap`).
        cap: String,
        /// `l4vmm,no-notify`.
        no_notify: Option<u32>,
    },
    /// The architected timer (the kernel virtualises it; nothing to map).
    ArchTimer,
}

/// An emulated device found in the tree.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Device {
    /// Its path.
    pub path: String,
    /// What it is.
    pub kind: DeviceKind,
    /// Its MMIO regions, as guest-physical addresses (translated through
    /// the parent buses' `ranges`).
    pub reg: Vec<(u64, u64)>,
    /// Its interrupts as GIC INTIDs (3-cell GIC specifiers).
    pub irqs: Vec<u32>,
    /// `l4vmm,vcon_cap`: the Vcon capability a console device uses.
    pub vcon_cap: Option<String>,
}

/// A device uvmm cannot provide although the tree asks for it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Unsupported {
    /// Its path.
    pub path: String,
    /// Why.
    pub why: String,
}

/// Decodes 3-cell GIC interrupt specifiers (type, number, flags) to
/// INTIDs: SPI n is 32 + n, PPI n is 16 + n.
pub fn gic_intids(path: &str, n: &Node) -> Result<Vec<u32>, DtError> {
    let Some(cells) = n.prop_cells("interrupts") else {
        return Ok(Vec::new());
    };
    if cells.len() % 3 != 0 {
        return Err(DtError::BadProp {
            node: path.into(),
            prop: "interrupts".into(),
            what: format!("has {} cells, not GIC triples", cells.len()),
        });
    }
    cells
        .chunks_exact(3)
        .map(|c| match c[0] {
            0 if c[1] < 988 => Ok(32 + c[1]),
            1 if c[1] < 16 => Ok(16 + c[1]),
            t => Err(DtError::BadProp {
                node: path.into(),
                prop: "interrupts".into(),
                what: format!("has type {t} number {} (not an SPI or PPI)", c[1]),
            }),
        })
        .collect()
}

/// The enabled devices uvmm emulates, and the `l4vmm,vdev` nodes it
/// cannot provide.
pub fn find_devices(t: &Tree) -> Result<(Vec<Device>, Vec<Unsupported>), DtError> {
    let mut found = Vec::new();
    let mut unsupported = Vec::new();
    for (path, n, (a, s)) in t.walk() {
        if !n.is_enabled() {
            continue;
        }
        let kind = if n.is_compatible("arm,gic-v3") {
            DeviceKind::GicV3
        } else if n.is_compatible("arm,pl011") && n.prop("l4vmm,vbus-dev").is_none() {
            DeviceKind::Pl011
        } else if n.is_compatible("arm,armv8-timer") || n.is_compatible("arm,armv7-timer") {
            DeviceKind::ArchTimer
        } else if let Some(v) = n.prop_str("l4vmm,vdev") {
            match (v, n.is_compatible("virtio,mmio")) {
                ("console", true) => DeviceKind::VirtioConsole,
                ("proxy", true) if n.prop_str("l4vmm,virtiocap").is_some() => {
                    DeviceKind::VirtioProxy {
                        cap: n
                            .prop_str("l4vmm,virtiocap")
                            .unwrap_or_default()
                            .to_string(),
                        no_notify: n
                            .prop_cells("l4vmm,no-notify")
                            .and_then(|c| c.first().copied()),
                    }
                }
                _ => {
                    unsupported.push(Unsupported {
                        path,
                        why: format!("l4vmm,vdev = \"{v}\" is not emulated"),
                    });
                    continue;
                }
            }
        } else {
            continue;
        };
        let irqs = if kind == DeviceKind::GicV3 {
            Vec::new()
        } else {
            gic_intids(&path, n)?
        };
        let reg = decode_reg(&path, n, a, s)?
            .into_iter()
            .map(|(addr, size)| Ok((t.bus_address(&path, addr)?, size)))
            .collect::<Result<_, DtError>>()?;
        found.push(Device {
            reg,
            irqs,
            vcon_cap: n.prop_str("l4vmm,vcon_cap").map(str::to_string),
            kind,
            path,
        });
    }
    Ok((found, unsupported))
}

/// Compatibles of nodes that are buses or infrastructure, never disabled.
const INFRASTRUCTURE: &[&str] = &[
    "simple-bus",
    "arm,psci",
    "arm,psci-0.2",
    "arm,psci-1.0",
    "fixed-clock",
];

/// Sets `status = "disabled"` on every enabled device node (one with a
/// `compatible` and a `reg` or `interrupts`) that is not in `keep` (the
/// emulated devices' and the vbus devices' paths); returns the paths it
/// disabled.
pub fn disable_unbacked(t: &mut Tree, keep: &[String]) -> Vec<String> {
    let victims: Vec<String> = t
        .walk()
        .into_iter()
        .filter(|(path, n, _)| {
            n.prop("compatible").is_some()
                && (n.prop("reg").is_some() || n.prop("interrupts").is_some())
                && n.is_enabled()
                && n.prop_str("device_type").is_none()
                && !INFRASTRUCTURE.iter().any(|c| n.is_compatible(c))
                && !keep.iter().any(|k| k == path)
        })
        .map(|(p, _, _)| p)
        .collect();
    for p in &victims {
        if let Some(n) = t.node_mut(p) {
            n.set_str("status", "disabled");
        }
    }
    victims
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use vm_fdt::FdtWriter;

    /// A QEMU-virt-like tree written with vm-fdt.
    pub fn virt_dtb(with_cpus: usize) -> Vec<u8> {
        let mut w =
            FdtWriter::new_with_mem_reserv(&[
                vm_fdt::FdtReserveEntry::new(0x4800_0000, 0x1000).unwrap()
            ])
            .unwrap();
        let root = w.begin_node("").unwrap();
        w.property_u32("#address-cells", 2).unwrap();
        w.property_u32("#size-cells", 2).unwrap();
        w.property_string("compatible", "linux,dummy-virt").unwrap();
        let m = w.begin_node("memory@40000000").unwrap();
        w.property_string("device_type", "memory").unwrap();
        w.property_array_u64("reg", &[0x4000_0000, 0x800_0000])
            .unwrap();
        w.end_node(m).unwrap();
        let cpus = w.begin_node("cpus").unwrap();
        w.property_u32("#address-cells", 1).unwrap();
        w.property_u32("#size-cells", 0).unwrap();
        for i in 0..with_cpus {
            let c = w.begin_node(&format!("cpu@{i}")).unwrap();
            w.property_string("device_type", "cpu").unwrap();
            w.property_string("compatible", "arm,cortex-a57").unwrap();
            w.property_u32("reg", i as u32).unwrap();
            w.property_string("enable-method", "spin-table").unwrap();
            w.property_u64("cpu-release-addr", 0x1234).unwrap();
            w.end_node(c).unwrap();
        }
        w.end_node(cpus).unwrap();
        let gic = w.begin_node("intc@8000000").unwrap();
        w.property_string("compatible", "arm,gic-v3").unwrap();
        w.property_array_u64("reg", &[0x800_0000, 0x1_0000, 0x80a_0000, 0xf6_0000])
            .unwrap();
        w.property_null("interrupt-controller").unwrap();
        w.property_u32("#interrupt-cells", 3).unwrap();
        w.property_u32("phandle", 1).unwrap();
        w.end_node(gic).unwrap();
        let timer = w.begin_node("timer").unwrap();
        w.property_string("compatible", "arm,armv8-timer").unwrap();
        w.property_array_u32("interrupts", &[1, 13, 4, 1, 14, 4, 1, 11, 4, 1, 10, 4])
            .unwrap();
        w.end_node(timer).unwrap();
        let clk = w.begin_node("apb-pclk").unwrap();
        w.property_string("compatible", "fixed-clock").unwrap();
        w.property_u32("#clock-cells", 0).unwrap();
        w.property_u32("clock-frequency", 24_000_000).unwrap();
        w.end_node(clk).unwrap();
        let uart = w.begin_node("pl011@9000000").unwrap();
        w.property_string_list(
            "compatible",
            vec!["arm,pl011".into(), "arm,primecell".into()],
        )
        .unwrap();
        w.property_array_u64("reg", &[0x900_0000, 0x1000]).unwrap();
        w.property_array_u32("interrupts", &[0, 1, 4]).unwrap();
        w.end_node(uart).unwrap();
        let rtc = w.begin_node("pl031@9010000").unwrap();
        w.property_string_list(
            "compatible",
            vec!["arm,pl031".into(), "arm,primecell".into()],
        )
        .unwrap();
        w.property_array_u64("reg", &[0x901_0000, 0x1000]).unwrap();
        w.property_array_u32("interrupts", &[0, 2, 4]).unwrap();
        w.end_node(rtc).unwrap();
        let vcon = w.begin_node("virtio_uart@20000").unwrap();
        w.property_string("compatible", "virtio,mmio").unwrap();
        w.property_array_u64("reg", &[0x2_0000, 0x200]).unwrap();
        w.property_array_u32("interrupts", &[0, 122, 4]).unwrap();
        w.property_string("l4vmm,vdev", "console").unwrap();
        w.end_node(vcon).unwrap();
        let proxy = w.begin_node("virtio_net@10000").unwrap();
        w.property_string("compatible", "virtio,mmio").unwrap();
        w.property_array_u64("reg", &[0x1_0000, 0x200]).unwrap();
        w.property_string("l4vmm,vdev", "proxy").unwrap();
        w.property_string("l4vmm,virtiocap", "net").unwrap();
        w.property_array_u32("l4vmm,no-notify", &[1]).unwrap();
        w.end_node(proxy).unwrap();
        w.end_node(root).unwrap();
        w.finish().unwrap()
    }

    #[test]
    fn read_merge_write_round_trip() {
        let mut t = Tree::from_dtb(&virt_dtb(2)).unwrap();
        assert_eq!(t.reserved, [(0x4800_0000, 0x1000)]);
        assert_eq!(t.reg("/pl011@9000000").unwrap(), [(0x900_0000, 0x1000)]);
        let mut over = Tree::default();
        over.node_or_create("/chosen")
            .set_str("stdout-path", "serial0");
        over.node_or_create("/pl011@9000000")
            .set_str("status", "okay");
        t.merge(over);
        let blob = t.to_dtb().unwrap();
        let back = Tree::from_dtb(&blob).unwrap();
        assert_eq!(back, t);
        assert_eq!(
            back.node("/chosen").unwrap().prop_str("stdout-path"),
            Some("serial0")
        );
        assert_eq!(
            back.node("/pl011@9000000").unwrap().prop_strs("compatible"),
            ["arm,pl011", "arm,primecell"]
        );
    }

    #[test]
    fn garbage_and_bad_props() {
        assert!(matches!(
            Tree::from_dtb(b"not a device tree at all"),
            Err(DtError::Parse(_))
        ));
        let blob = virt_dtb(1);
        assert!(Tree::from_dtb(&blob[..blob.len() / 2]).is_err());
        let mut t = Tree::from_dtb(&blob).unwrap();
        t.node_mut("/pl011@9000000")
            .unwrap()
            .set_prop("reg", vec![1, 2, 3]);
        assert!(matches!(
            t.reg("/pl011@9000000"),
            Err(DtError::BadProp { .. })
        ));
        t.node_mut("/pl011@9000000")
            .unwrap()
            .set_prop("reg", vec![0; 12]);
        let e = t.reg("/pl011@9000000").unwrap_err().to_string();
        assert!(e.contains("not a multiple of 4"), "{e}");
        t.node_mut("/pl011@9000000")
            .unwrap()
            .set_prop("interrupts", vec![0; 8]);
        assert!(find_devices(&t).is_err());
    }

    /// Device trees with random bytes written over them (header,
    /// structure, strings) or cut short: read, merged, written back, or an
    /// error; never a panic.
    #[test]
    fn damaged_device_trees_are_errors() {
        crate::damage::never_panics(&[virt_dtb(2)], 20_000, usize::MAX, |blob| {
            if let Ok(t) = Tree::from_dtb(blob) {
                let _ = find_devices(&t);
                let _ = t.to_dtb();
            }
        });
    }

    #[test]
    fn memory_cpus_chosen_psci_read_back_with_fdt() {
        let mut t = Tree::from_dtb(&virt_dtb(4)).unwrap();
        let specs = memory_specs(&t).unwrap();
        assert_eq!(
            specs,
            [MemorySpec {
                path: "/memory@40000000".into(),
                dscap: "ram".into(),
                reg: vec![(0x4000_0000, 0x800_0000)],
                physmap: false,
                dma_ranges: false,
            }]
        );
        assert_eq!(cpu_count(&t), 4);
        set_memory(
            &mut t,
            Some("/memory@40000000"),
            &[(0x4000_0000, 0x400_0000)],
        );
        set_cpus(&mut t, 2);
        set_chosen(
            &mut t,
            Some("console=ttyAMA0 rdinit=/init"),
            Some((0x4700_0000, 0x4710_0000)),
        );
        set_psci(&mut t);
        let blob = t.to_dtb().unwrap();
        let f = fdt::Fdt::new(&blob).unwrap();
        let mem: Vec<_> = f
            .memory()
            .regions()
            .map(|r| (r.starting_address as u64, r.size))
            .collect();
        assert_eq!(mem, [(0x4000_0000, Some(0x400_0000))]);
        let cpus: Vec<_> = f.cpus().map(|c| c.ids().first()).collect();
        assert_eq!(cpus, [0, 1]);
        let c1 = f.find_node("/cpus/cpu@1").unwrap();
        assert_eq!(c1.property("enable-method").unwrap().as_str(), Some("psci"));
        assert!(c1.property("cpu-release-addr").is_none());
        assert_eq!(c1.compatible().unwrap().first(), "arm,cortex-a57");
        assert_eq!(f.chosen().bootargs(), Some("console=ttyAMA0 rdinit=/init"));
        let chosen = f.find_node("/chosen").unwrap();
        assert_eq!(
            chosen.property("linux,initrd-start").unwrap().as_usize(),
            Some(0x4700_0000)
        );
        assert_eq!(
            chosen.property("linux,initrd-end").unwrap().as_usize(),
            Some(0x4710_0000)
        );
        let psci = f.find_node("/psci").unwrap();
        assert_eq!(psci.property("method").unwrap().as_str(), Some("hvc"));
        assert!(
            psci.compatible()
                .unwrap()
                .all()
                .any(|c| c == "arm,psci-1.0")
        );
        // More vCPUs than nodes: new ones; no memory node: one is made.
        let mut t = Tree::from_dtb(&virt_dtb(0)).unwrap();
        assert_eq!(cpu_count(&t), 1);
        t.remove("/memory@40000000");
        set_cpus(&mut t, 17);
        set_memory(&mut t, None, &[(0x8000_0000, 0x100_0000)]);
        let blob = t.to_dtb().unwrap();
        let f = fdt::Fdt::new(&blob).unwrap();
        assert_eq!(f.cpus().count(), 17);
        assert!(f.find_node("/cpus/cpu@100").is_some());
        let mem: Vec<_> = f
            .memory()
            .regions()
            .map(|r| (r.starting_address as u64, r.size))
            .collect();
        assert_eq!(mem, [(0x8000_0000, Some(0x100_0000))]);
    }

    #[test]
    fn dscap_memory_nodes() {
        let mut t = Tree::default();
        let m = t.node_or_create("/memory@0");
        m.set_str("device_type", "memory");
        m.set_prop(
            "reg",
            reg_bytes(&[(0, 0x10_0000), (0x20_0000, 0xffff_ffff)], 2, 2),
        );
        m.set_str("l4vmm,dscap", "memcap");
        let off = t.node_or_create("/memory@1");
        off.set_str("device_type", "memory");
        off.set_str("status", "disabled");
        let s = memory_specs(&t).unwrap();
        assert_eq!(s.len(), 1);
        assert_eq!(s[0].dscap, "memcap");
        assert_eq!(s[0].reg, [(0, 0x10_0000), (0x20_0000, 0xffff_ffff)]);
    }

    #[test]
    fn devices_found_and_others_disabled() {
        let mut t = Tree::from_dtb(&virt_dtb(1)).unwrap();
        let (devs, unsupported) = find_devices(&t).unwrap();
        let kinds: Vec<_> = devs
            .iter()
            .map(|d| (d.path.as_str(), d.kind.clone()))
            .collect();
        assert_eq!(
            kinds,
            [
                ("/intc@8000000", DeviceKind::GicV3),
                ("/timer", DeviceKind::ArchTimer),
                ("/pl011@9000000", DeviceKind::Pl011),
                ("/virtio_uart@20000", DeviceKind::VirtioConsole),
                (
                    "/virtio_net@10000",
                    DeviceKind::VirtioProxy {
                        cap: "net".into(),
                        no_notify: Some(1),
                    }
                ),
            ]
        );
        assert_eq!(
            devs[0].reg,
            [(0x800_0000, 0x1_0000), (0x80a_0000, 0xf6_0000)]
        );
        assert_eq!(devs[2].irqs, [33]);
        assert_eq!(devs[1].irqs, [29, 30, 27, 26]);
        assert!(unsupported.is_empty());
        // Without the proxy's capability uvmm does not keep it.
        let keep: Vec<String> = devs[..4].iter().map(|d| d.path.clone()).collect();
        let off = disable_unbacked(&mut t, &keep);
        assert_eq!(off, ["/pl031@9010000", "/virtio_net@10000"]);
        let blob = t.to_dtb().unwrap();
        let f = fdt::Fdt::new(&blob).unwrap();
        let status = |p: &str| {
            f.find_node(p)
                .unwrap()
                .property("status")
                .and_then(|s| s.as_str())
        };
        assert_eq!(status("/pl031@9010000"), Some("disabled"));
        assert_eq!(status("/pl011@9000000"), None);
        assert_eq!(status("/apb-pclk"), None);
        assert_eq!(status("/memory@40000000"), None);
    }

    #[test]
    fn bus_ranges_translate_device_addresses() {
        let mut t = Tree::from_dtb(&virt_dtb(1)).unwrap();
        let bus = t.node_or_create("/l4vmm");
        bus.set_prop("compatible", str_bytes(&["simple-bus"]));
        bus.set_u32("#address-cells", 1);
        bus.set_u32("#size-cells", 1);
        // child 0 -> parent 0x3000_0000 (2 cells), 0x21000 bytes.
        bus.set_prop(
            "ranges",
            [0u32, 0, 0x3000_0000, 0x21000]
                .iter()
                .flat_map(|c| c.to_be_bytes())
                .collect(),
        );
        let con = t.node_or_create("/l4vmm/virtio_uart@20000");
        con.set_prop("compatible", str_bytes(&["virtio,mmio"]));
        con.set_prop("reg", reg_bytes(&[(0x2_0000, 0x100)], 1, 1));
        con.set_prop(
            "interrupts",
            [0u32, 122, 4]
                .iter()
                .flat_map(|c| c.to_be_bytes())
                .collect(),
        );
        con.set_str("l4vmm,vdev", "console");
        con.set_str("l4vmm,vcon_cap", "log");
        t.remove("/virtio_uart@20000");
        let (devs, _) = find_devices(&t).unwrap();
        let con = devs
            .iter()
            .find(|d| d.kind == DeviceKind::VirtioConsole)
            .unwrap();
        assert_eq!(con.reg, [(0x3002_0000, 0x100)]);
        assert_eq!(con.irqs, [154]);
        assert_eq!(con.vcon_cap.as_deref(), Some("log"));
        // Outside the bus window, and a bus without ranges.
        assert!(t.bus_address("/l4vmm/virtio_uart@20000", 0x2_1000).is_err());
        t.node_mut("/l4vmm").unwrap().remove_prop("ranges");
        let e = find_devices(&t).unwrap_err().to_string();
        assert!(e.contains("/l4vmm") && e.contains("not reachable"), "{e}");
        // An empty ranges maps one to one.
        t.node_mut("/l4vmm").unwrap().set_prop("ranges", Vec::new());
        assert_eq!(
            t.bus_address("/l4vmm/virtio_uart@20000", 0x2_0000),
            Ok(0x2_0000)
        );
    }

    #[test]
    fn dt_mods_apply() {
        let mut t = Tree::from_dtb(&virt_dtb(1)).unwrap();
        let o = crate::Options::parse([
            "-m/chosen/stdout-path=str:serial0",
            "-m/new/node/x=u32:1,2",
            "-m/pl011@9000000/y=empty:",
        ])
        .unwrap();
        for m in &o.dt_mods {
            t.apply(m);
        }
        assert_eq!(
            t.node("/chosen").unwrap().prop_str("stdout-path"),
            Some("serial0")
        );
        assert_eq!(
            t.node("/new/node").unwrap().prop_cells("x"),
            Some(vec![1, 2])
        );
        assert_eq!(t.node("/pl011@9000000").unwrap().prop("y"), Some(&[][..]));
    }
}
