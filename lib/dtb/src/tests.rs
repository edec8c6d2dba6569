extern crate std;

use super::*;
use std::format;
use std::string::{String, ToString};
use std::vec;
use std::vec::Vec;
use vm_fdt::FdtWriter;

/// QEMU's own tree for the machine every entry runs on (`-M
/// virt,virtualization=on,gic-version=3 -cpu max,pauth-impdef=on -smp 4 -m
/// 1024`), dumped by QEMU 7.2 with `dumpdtb=` and compacted with `dtc -I
/// dtb -O dtb` (the dump is padded to 1 MiB).
const QEMU_VIRT: &[u8] = include_bytes!("qemu-virt.dtb");

#[test]
fn reads_qemus_board() {
    let d = Dtb::new(QEMU_VIRT).unwrap();
    assert_eq!(d.total_size(), QEMU_VIRT.len());
    assert_eq!(d.reservations().count(), 0);
    assert_eq!(d.root().name(), "");
    assert_eq!(d.memory().collect::<Vec<_>>(), [(0x4000_0000, 0x4000_0000)]);
    let cpus: Vec<_> = d.cpus().map(|c| c.reg().next()).collect();
    assert_eq!(
        cpus,
        [
            Some((0, None)),
            Some((1, None)),
            Some((2, None)),
            Some((3, None))
        ]
    );
    let gic = d.find_compatible(&["arm,gic-v3"]).unwrap();
    assert_eq!(
        gic.reg().take(2).collect::<Vec<_>>(),
        [(0x800_0000, Some(0x1_0000)), (0x80a_0000, Some(0xf6_0000))]
    );
    let timer = d
        .find_compatible(&["arm,armv7-timer", "arm,armv8-timer"])
        .unwrap();
    assert_eq!(timer.name(), "timer");
    // The fourth specifier: the EL2 physical timer, PPI 10.
    assert_eq!(timer.property("interrupts").unwrap().u32_at(10), Some(10));
    assert_eq!(
        d.find_node("/psci")
            .and_then(|n| n.property("method"))
            .and_then(|p| p.as_str()),
        Some("smc")
    );
    let uart = d.stdout().unwrap();
    assert_eq!(uart.name(), "pl011@9000000");
    assert_eq!(
        uart.compatible().collect::<Vec<_>>(),
        ["arm,pl011", "arm,primecell"]
    );
    assert!(uart.property("compatible").unwrap().as_str().is_none());
    assert_eq!(uart.reg().collect::<Vec<_>>(), [(0x900_0000, Some(0x1000))]);
    assert_eq!(d.find_node("/pl011").unwrap().name(), "pl011@9000000");
    assert_eq!(d.find_node("/cpus/cpu@1").unwrap().name(), "cpu@1");
    assert!(d.find_node("/cpus/cpu@7").is_none());
    assert!(
        d.find_node("serial0").is_none(),
        "QEMU's tree has no aliases"
    );
    assert!(d.find_compatible(&["arm,gic-400"]).is_none());
}

/// The same nodes and properties, in the same order, as the `fdt` crate
/// reads from a good blob.
#[test]
fn agrees_with_fdt() {
    let d = Dtb::new(QEMU_VIRT).unwrap();
    let f = fdt::Fdt::new(QEMU_VIRT).unwrap();
    let ours: Vec<String> = d
        .nodes()
        .map(|n| {
            let props: Vec<String> = n
                .properties()
                .map(|p| format!("{}={:?}", p.name, p.value))
                .collect();
            format!("{} {}", n.name(), props.join(","))
        })
        .collect();
    let mut theirs = Vec::new();
    fn walk(n: fdt::node::FdtNode<'_, '_>, out: &mut Vec<String>) {
        let props: Vec<String> = n
            .properties()
            .map(|p| format!("{}={:?}", p.name, p.value))
            .collect();
        let name = if n.name == "/" { "" } else { n.name };
        out.push(format!("{name} {}", props.join(",")));
        for c in n.children() {
            walk(c, out);
        }
    }
    walk(f.find_node("/").unwrap(), &mut theirs);
    assert_eq!(ours, theirs);
    assert_eq!(ours.len(), 62);
}

/// Aliases, `stdout-path` options, reservations, cell counts and string
/// lists beyond QEMU's tree.
#[test]
fn aliases_cells_and_strings() {
    let reserved = vm_fdt::FdtReserveEntry::new(0x4800_0000, 0x1000).unwrap();
    let mut w = FdtWriter::new_with_mem_reserv(&[reserved]).unwrap();
    let root = w.begin_node("").unwrap();
    w.property_u32("#address-cells", 1).unwrap();
    w.property_u32("#size-cells", 1).unwrap();
    let chosen = w.begin_node("chosen").unwrap();
    w.property_string("stdout-path", "serial0:115200n8")
        .unwrap();
    w.end_node(chosen).unwrap();
    let aliases = w.begin_node("aliases").unwrap();
    w.property_string("serial0", "/a@10/b").unwrap();
    w.end_node(aliases).unwrap();
    let a = w.begin_node("a@10").unwrap();
    w.property_array_u32("reg", &[0x10, 0x20, 0x30, 0x40, 0x50])
        .unwrap();
    w.property_u32("#address-cells", 3).unwrap();
    let b = w.begin_node("b").unwrap();
    w.property_array_u32("reg", &[1, 2, 3, 4]).unwrap();
    w.property("empty", &[]).unwrap();
    w.property("unterminated", b"abc").unwrap();
    w.property("strs", b"x\0\xff\0y\0").unwrap();
    w.end_node(b).unwrap();
    w.end_node(a).unwrap();
    w.end_node(root).unwrap();
    let blob = w.finish().unwrap();
    let d = Dtb::new(&blob).unwrap();
    let a = d.find_node("/a").unwrap();
    // Five cells: two whole entries, the partial one left out.
    assert_eq!(
        a.reg().collect::<Vec<_>>(),
        [(0x10, Some(0x20)), (0x30, Some(0x40))]
    );
    assert_eq!(
        a.own_cells(),
        Cells {
            address: 3,
            size: 1
        }
    );
    let b = d.find_node("/a@10/b").unwrap();
    assert_eq!(b.reg().count(), 0, "three address cells do not fit");
    let p = |n: &str| b.property(n).unwrap();
    assert_eq!(p("empty").as_str(), None);
    assert_eq!(p("empty").strs().count(), 0);
    assert_eq!(p("unterminated").as_str(), None);
    assert_eq!(p("unterminated").strs().count(), 0);
    assert_eq!(p("strs").strs().collect::<Vec<_>>(), ["x", "y"]);
    assert_eq!(p("strs").u32_at(usize::MAX), None);
    assert_eq!(
        d.reservations().collect::<Vec<_>>(),
        [(0x4800_0000, 0x1000)]
    );
    assert_eq!(d.stdout().map(|n| n.name()), Some("b"));
    assert_eq!(d.find_node("serial0").map(|n| n.name()), Some("b"));
    assert!(d.find_node("serial1").is_none());
    assert_eq!(d.memory().count(), 0);
    assert_eq!(d.cpus().count(), 0);
}

fn be(v: u32) -> [u8; 4] {
    v.to_be_bytes()
}

#[test]
fn damage_is_named() {
    let good = QEMU_VIRT.to_vec();
    let with = |at: usize, v: u32| {
        let mut b = good.clone();
        b[at..at + 4].copy_from_slice(&be(v));
        b
    };
    let off_struct = be32(&good, 8).unwrap() as usize;
    let err = |b: &[u8]| Dtb::new(b).unwrap_err().to_string();
    assert!(err(&good[..20]).contains("shorter than a header"));
    assert!(err(&with(0, 1)).contains("magic 0x1"));
    assert!(err(&with(4, u32::MAX)).contains("total size"));
    assert!(err(&with(20, 15)).contains("version 15"));
    assert!(err(&with(36, u32::MAX)).contains("structure block"));
    assert!(err(&with(32, u32::MAX)).contains("strings block"));
    assert!(err(&with(16, 4)).contains("misaligned"));
    assert!(err(&with(off_struct, 7)).contains("unknown token 0x7"));
    assert!(err(&with(off_struct, END)).contains("no root node"));
    assert!(err(&with(off_struct, END_NODE)).contains("outside a node"));
    assert!(err(&with(off_struct, PROP)).contains("outside a node"));
    // The root's first property: its length, then its name offset.
    let first_prop = off_struct + 8;
    assert_eq!(be32(&good, first_prop), Some(PROP));
    assert!(err(&with(first_prop + 4, 1 << 30)).contains("runs past the structure block"));
    assert!(err(&with(first_prop + 8, 1 << 30)).contains("name offset"));
    // The reservations without their end entry.
    let off_rsv = be32(&good, 16).unwrap() as usize;
    let mut b = good.clone();
    b[off_rsv..].fill(1);
    assert!(err(&b).contains("memory reservations"));

    // Deep nesting: MAX_DEPTH + 1 nodes inside each other; a second root;
    // FDT_END inside a node; no FDT_END.
    let blob = |s: &[u8]| {
        let mut b = vec![0u8; HEADER_LEN];
        let words = [
            MAGIC,
            (HEADER_LEN + 16 + s.len()) as u32,
            (HEADER_LEN + 16) as u32,
            (HEADER_LEN + 16 + s.len()) as u32,
            HEADER_LEN as u32,
            17,
            16,
            0,
            0,
            s.len() as u32,
        ];
        for (i, w) in words.iter().enumerate() {
            b[4 * i..4 * i + 4].copy_from_slice(&be(*w));
        }
        b.extend_from_slice(&[0; 16]);
        b.extend_from_slice(s);
        b
    };
    let node = |s: &mut Vec<u8>| {
        s.extend_from_slice(&be(BEGIN_NODE));
        s.extend_from_slice(b"a\0\0\0");
    };
    let mut s = Vec::new();
    for _ in 0..=MAX_DEPTH {
        node(&mut s);
    }
    assert!(err(&blob(&s)).contains("deeper than 64"));
    let mut s = Vec::new();
    for _ in 0..MAX_DEPTH {
        node(&mut s);
    }
    for _ in 0..MAX_DEPTH {
        s.extend_from_slice(&be(END_NODE));
    }
    s.extend_from_slice(&be(END));
    let deep = blob(&s);
    let deepest = Dtb::new(&deep).unwrap();
    assert_eq!(deepest.nodes().count(), MAX_DEPTH);
    let mut s = Vec::new();
    node(&mut s);
    s.extend_from_slice(&be(END_NODE));
    let one_root = s.clone();
    node(&mut s);
    assert!(err(&blob(&s)).contains("a second root node"));
    let mut s = one_root.clone();
    s.extend_from_slice(&be(NOP));
    assert!(err(&blob(&s)).contains("without FDT_END"));
    let mut s = Vec::new();
    node(&mut s);
    s.extend_from_slice(&be(END));
    assert!(err(&blob(&s)).contains("inside a node"));
    let mut s = Vec::new();
    s.extend_from_slice(&be(BEGIN_NODE));
    s.extend_from_slice(b"\xff\0\0\0");
    assert!(err(&blob(&s)).contains("node name"));
    assert_eq!(claimed_size(&good), Some(good.len()));
    assert_eq!(claimed_size(&good[..6]), None);
    assert_eq!(claimed_size(&with(0, 1)), None);
}

/// Walks everything a reader might ask of a blob.
fn use_all(d: &Dtb<'_>) -> usize {
    let mut n = d.reservations().count() + d.memory().count() + d.cpus().count();
    for node in d.nodes() {
        n += node.name().len() + node.reg().count() + node.compatible().count();
        n += node.properties().map(|p| p.strs().count()).sum::<usize>();
        n += node.children().count();
        let _ = (node.device_type(), node.own_cells());
    }
    for path in ["/chosen", "/cpus/cpu@0", "/pl011", "serial0", "x/y", "/"] {
        n += d.find_node(path).is_some() as usize;
    }
    n + d.stdout().is_some() as usize + d.find_compatible(&["arm,gic-v3"]).is_some() as usize
}

/// 5,000 blobs (QEMU's) with 1-4 random bytes changed or cut short: each is an
/// error or a tree that can be walked whole; nothing panics.
#[test]
fn damaged_blobs_are_errors_or_trees() {
    let good = QEMU_VIRT.to_vec();
    let mut rng = l4_xorshift::XorShift::new(0xd7b_5eed);
    let (mut errors, mut trees) = (0, 0);
    for _ in 0..5_000 {
        let mut b = good.clone();
        for _ in 0..1 + rng.next_u64() % 4 {
            let at = (rng.next_u64() % b.len() as u64) as usize;
            b[at] = rng.next_u64() as u8;
        }
        if rng.next_u64().is_multiple_of(8) {
            b.truncate((rng.next_u64() % b.len() as u64) as usize);
        }
        match Dtb::new(&b) {
            Ok(d) => {
                use_all(&d);
                trees += 1;
            }
            Err(e) => {
                assert!(!e.to_string().is_empty());
                errors += 1;
            }
        }
    }
    assert!(
        errors > 500 && trees > 500,
        "{errors} errors, {trees} trees"
    );
}
