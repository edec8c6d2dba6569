//! The kernel command line (from modules.list: `kernel fiasco -serial_esc`).

use l4_cmdline::{Word, parse_number};
use l4_pgtable::stage2::Leaves;

/// Options the kernel understands, in Fiasco's spelling.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Options {
    /// `-serial_esc`: an escape on the serial line enters the kernel debugger.
    pub serial_esc: bool,
    /// `-nojdb`: no kernel debugger (wins over `-serial_esc`).
    pub nojdb: bool,
    /// `-wait`: wait for a key before starting the root task.
    pub wait: bool,
    /// `-kmemsize=<KiB>`: kernel memory to reserve.
    pub kmem_kib: Option<u64>,
    /// `-nofastpath` (ours): every IPC takes the general path, e.g. to
    /// measure what the fast path saves.
    pub nofastpath: bool,
    /// `-stage2=blocks` or `-stage2=pages` (ours): the leaves of guests'
    /// stage-2 tables; without it the kernel picks for the CPU it runs on.
    pub stage2: Option<Leaves>,
}

/// MIDR_EL1's implementer code reserved for software use: QEMU's `max`
/// CPU has it; no hardware does.
const SOFTWARE_IMPLEMENTER: u64 = 0x00;

/// The leaves of guests' stage-2 tables: what `-stage2=` asked for, else
/// pages on a CPU whose MIDR_EL1 (`midr`) names the software implementer
/// (an emulator, whose TLB flushes all of a guest's translations at each
/// of its invalidations by address once blocks back them) and blocks on
/// anything else. With why, for the boot log.
pub fn stage2_leaves(asked: Option<Leaves>, midr: u64) -> (Leaves, &'static str) {
    match asked {
        Some(l) => (l, "kernel option -stage2"),
        None if (midr >> 24) & 0xff == SOFTWARE_IMPLEMENTER => (
            Leaves::Pages,
            "emulated CPU: with blocks, each TLB invalidation of a guest would flush all its translations",
        ),
        None => (Leaves::Blocks, "hardware CPU"),
    }
}

/// Parses the command line; returns the options and the first word it did
/// not understand, if any (reported, never fatal).
pub fn parse(line: &str) -> (Options, Option<&str>) {
    let mut o = Options::default();
    let mut unknown = None;
    for w in l4_cmdline::words(line) {
        let known = match w {
            Word::Opt {
                name,
                value: None,
                long: false,
                ..
            } => match name {
                "serial_esc" => set(&mut o.serial_esc),
                "nojdb" => set(&mut o.nojdb),
                "wait" => set(&mut o.wait),
                "nofastpath" => set(&mut o.nofastpath),
                _ => false,
            },
            Word::Opt {
                name: "kmemsize",
                value: Some(v),
                long: false,
                ..
            } => parse_number(v).map(|k| o.kmem_kib = Some(k)).is_some(),
            Word::Opt {
                name: "stage2",
                value: Some(v),
                long: false,
                ..
            } => {
                o.stage2 = match v {
                    "blocks" => Some(Leaves::Blocks),
                    "pages" => Some(Leaves::Pages),
                    _ => None,
                };
                o.stage2.is_some()
            }
            _ => false,
        };
        if !known {
            unknown = unknown.or(Some(word_of(w)));
        }
    }
    (o, unknown)
}

fn set(flag: &mut bool) -> bool {
    *flag = true;
    true
}

/// The word as written.
fn word_of(w: Word<'_>) -> &str {
    match w {
        Word::Opt { word, .. } | Word::Arg(word) => word,
        Word::End => "--",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fiasco_options() {
        let (o, u) = parse("-serial_esc  -kmemsize=4096");
        assert!(o.serial_esc && !o.nojdb && !o.wait);
        assert_eq!(o.kmem_kib, Some(4096));
        assert_eq!(u, None);
        let (o, u) = parse("-wait -bogus -kmemsize=x -nofastpath");
        assert!(o.wait && o.nofastpath);
        assert_eq!(u, Some("-bogus"));
        assert_eq!(parse(""), (Options::default(), None));
        assert_eq!(parse("-kmemsize=0x1000").0.kmem_kib, Some(0x1000));
        assert_eq!(parse("-stage2=pages").0.stage2, Some(Leaves::Pages));
        // MIDR of QEMU's max CPU, then of a Cortex-A57.
        assert_eq!(stage2_leaves(None, 0x000f_0510).0, Leaves::Pages);
        assert_eq!(stage2_leaves(None, 0x411f_d070).0, Leaves::Blocks);
        let asked = Some(Leaves::Blocks);
        assert_eq!(stage2_leaves(asked, 0x000f_0510).0, Leaves::Blocks);
        assert_eq!(parse("-stage2=blocks").0.stage2, Some(Leaves::Blocks));
        for odd in [
            "--wait",
            "-wait=1",
            "-kmemsize",
            "wait",
            "--",
            "-stage2",
            "-stage2=huge",
        ] {
            assert_eq!(parse(odd), (Options::default(), Some(odd)), "{odd}");
        }
    }
}
