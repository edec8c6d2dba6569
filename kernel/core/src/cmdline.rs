//! The kernel command line (from modules.list: `kernel fiasco -serial_esc`).

use l4_cmdline::{Word, parse_number};

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
        for odd in ["--wait", "-wait=1", "-kmemsize", "wait", "--"] {
            assert_eq!(parse(odd), (Options::default(), Some(odd)), "{odd}");
        }
    }
}
