//! The kernel command line (from modules.list: `kernel fiasco -serial_esc`).

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
    for word in line.split_whitespace() {
        match word {
            "-serial_esc" => o.serial_esc = true,
            "-nojdb" => o.nojdb = true,
            "-wait" => o.wait = true,
            "-nofastpath" => o.nofastpath = true,
            w => match w.strip_prefix("-kmemsize=").map(str::parse) {
                Some(Ok(k)) => o.kmem_kib = Some(k),
                _ => unknown = unknown.or(Some(w)),
            },
        }
    }
    (o, unknown)
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
    }
}
