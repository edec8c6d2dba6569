//! The constant tables of the `L4` module, with L4Re's names and numbers:
//! `L4.Proto`, `L4.Rights`, `L4.Mem_alloc_flags`, `L4.Ldr_flags`, `L4.Dbg`.

/// `L4.Proto.Dataspace`.
pub const DATASPACE: i64 = 0x4000;
/// `L4.Proto.Namespace`.
pub const NAMESPACE: i64 = 0x4001;
/// `L4.Proto.Sigma0`.
pub const SIGMA0: i64 = -6;
/// `L4.Proto.Log`.
pub const LOG: i64 = -13;
/// `L4.Proto.Scheduler`.
pub const SCHEDULER: i64 = -14;
/// `L4.Proto.Factory`.
pub const FACTORY: i64 = -15;
/// `L4.Proto.Ipc_gate`.
pub const IPC_GATE: i64 = 0;

/// `L4.Proto`: name, number, and the C++ class `L4.cast` also accepts.
pub const PROTOS: &[(&str, i64, &str)] = &[
    ("Dataspace", DATASPACE, "L4Re::Dataspace"),
    ("Namespace", NAMESPACE, "L4Re::Namespace"),
    ("Goos", 0x4003, "L4Re::Video::Goos"),
    ("Mem_alloc", 0x4004, "L4Re::Mem_alloc"),
    ("Rm", 0x4005, "L4Re::Rm"),
    ("Event", 0x4006, "L4Re::Event"),
    ("Inhibitor", 0x4007, "L4Re::Inhibitor"),
    ("Irq", -1, "L4::Irq"),
    ("Sigma0", SIGMA0, "L4::Sigma0"),
    ("Log", LOG, "L4::Vcon"),
    ("Scheduler", SCHEDULER, "L4::Scheduler"),
    ("Factory", FACTORY, "L4::Factory"),
    ("Vm", -16, "L4::Vm"),
    ("Dma_space", -17, "L4::Dma_space"),
    ("Irq_sender", -18, "L4::Irq_sender"),
    ("Irq_muxer", -19, "L4::Irq_muxer"),
    ("Semaphore", -20, "L4::Semaphore"),
    ("Iommu", -22, "L4::Iommu"),
    ("Ipc_gate", IPC_GATE, "L4::Ipc_gate"),
];

/// The name of protocol `p` (`Factory` for -15).
pub fn name(p: i64) -> Option<&'static str> {
    PROTOS.iter().find(|e| e.1 == p).map(|e| e.0)
}

/// The protocol a name stands for: an `L4.Proto` name (`Factory`) or the
/// C++ class (`L4::Factory`, `L4Re::Dataspace`).
pub fn by_name(n: &str) -> Option<i64> {
    PROTOS.iter().find(|e| e.0 == n || e.2 == n).map(|e| e.1)
}

/// `L4.Rights`.
pub const RIGHTS: &[(&str, i64)] = &[
    ("w", 1),
    ("s", 2),
    ("r", 4),
    ("d", 8),
    ("n", 16),
    ("c", 32),
    ("ro", 4),
    ("rw", 5),
    ("rws", 7),
];

/// `L4.Mem_alloc_flags`.
pub const MEM_ALLOC_FLAGS: &[(&str, i64)] = &[("Continuous", 1), ("Pinned", 2), ("Super_pages", 4)];

/// `L4.Ldr_flags`.
pub const LDR_FLAGS: &[(&str, i64)] = &[("eager_map", 1), ("all_segs_cow", 2), ("pinned_segs", 4)];

/// `L4.Dbg.Warn`: the default `l4re_dbg` of a started program.
pub const DBG_WARN: i64 = 2;

/// `L4.Dbg`.
pub const DBG: &[(&str, i64)] = &[
    ("Info", 1),
    ("Warn", DBG_WARN),
    ("Boot", 4),
    ("Server", 0x10),
    ("Exceptions", 0x20),
    ("Cmd_line", 0x40),
    ("Loader", 0x80),
    ("Name_space", 0x400),
    ("All", 0xffff_ffff),
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn l4re_numbers() {
        assert_eq!(by_name("Dataspace"), Some(0x4000));
        assert_eq!(by_name("L4::Factory"), Some(-15));
        assert_eq!(by_name("L4Re::Namespace"), Some(0x4001));
        assert_eq!(by_name("Nope"), None);
        assert_eq!(name(-14), Some("Scheduler"));
        assert_eq!(name(0), Some("Ipc_gate"));
        assert_eq!(name(12345), None);
        // Names and numbers are unique.
        for (i, a) in PROTOS.iter().enumerate() {
            for b in &PROTOS[i + 1..] {
                assert!(a.0 != b.0 && a.1 != b.1 && a.2 != b.2, "{a:?} {b:?}");
            }
        }
        assert_eq!(
            MEM_ALLOC_FLAGS.iter().fold(0, |a, f| a | f.1),
            7,
            "Continuous | Pinned | Super_pages"
        );
    }
}
