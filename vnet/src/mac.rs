//! MAC address learning: which port a source address was last seen on,
//! and where a frame goes.

use std::collections::BTreeMap;

/// An Ethernet address.
pub type Mac = [u8; 6];

/// The broadcast address.
pub const BROADCAST: Mac = [0xff; 6];

/// Whether `m` is a group (multicast or broadcast) address.
pub const fn is_group(m: &Mac) -> bool {
    m[0] & 1 != 0
}

/// Formats `aa:bb:cc:dd:ee:ff`.
pub fn format(m: &Mac) -> String {
    m.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// Parses `aa:bb:cc:dd:ee:ff` (or with `-`); `None` if malformed.
pub fn parse(s: &str) -> Option<Mac> {
    let mut m = [0u8; 6];
    let mut parts = s.split([':', '-']);
    for b in &mut m {
        let p = parts.next()?;
        if p.is_empty() || p.len() > 2 {
            return None;
        }
        *b = u8::from_str_radix(p, 16).ok()?;
    }
    parts.next().is_none().then_some(m)
}

/// Where a frame goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Route<P> {
    /// To every port but the source: a group address, or a unicast
    /// address not learned (yet).
    Flood,
    /// To the one port the address was learned on.
    Port(P),
    /// Nowhere: the destination is on the source port itself.
    Drop,
}

/// The learned addresses, at most `capacity` of them: when full, the
/// entry learned longest ago makes room. Ordered by address: a lookup
/// (two per frame) costs a few comparisons and no hashing, and no choice
/// of addresses by a guest makes it slower.
#[derive(Debug)]
pub struct MacTable<P> {
    entries: BTreeMap<Mac, (P, u64)>,
    capacity: usize,
    clock: u64,
}

impl<P: Copy + PartialEq> MacTable<P> {
    /// An empty table for `capacity` addresses (at least one).
    pub fn new(capacity: usize) -> MacTable<P> {
        MacTable {
            entries: BTreeMap::new(),
            capacity: capacity.max(1),
            clock: 0,
        }
    }

    /// Notes that `src` sent from `port` (group addresses are not
    /// learned: they are no station's). Whether that is news: an address
    /// not known before, or one that moved to `port`.
    pub fn learn(&mut self, src: &Mac, port: P) -> bool {
        if is_group(src) {
            return false;
        }
        self.clock += 1;
        if !self.entries.contains_key(src) && self.entries.len() >= self.capacity {
            let oldest = self.entries.iter().min_by_key(|e| e.1.1).map(|e| *e.0);
            if let Some(o) = oldest {
                self.entries.remove(&o);
            }
        }
        let old = self.entries.insert(*src, (port, self.clock));
        old.is_none_or(|(p, _)| p != port)
    }

    /// Where a frame to `dst` from port `from` goes.
    pub fn route(&self, dst: &Mac, from: P) -> Route<P> {
        if is_group(dst) {
            return Route::Flood;
        }
        match self.entries.get(dst) {
            Some(&(p, _)) if p == from => Route::Drop,
            Some(&(p, _)) => Route::Port(p),
            None => Route::Flood,
        }
    }

    /// The port `m` was learned on.
    pub fn lookup(&self, m: &Mac) -> Option<P> {
        self.entries.get(m).map(|e| e.0)
    }

    /// Forgets every address of `port` (it is gone).
    pub fn forget_port(&mut self, port: P) {
        self.entries.retain(|_, e| e.0 != port);
    }

    /// The number of learned addresses.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether nothing is learned.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: Mac = [2, 0, 0, 0, 0, 1];
    const B: Mac = [2, 0, 0, 0, 0, 2];
    const C: Mac = [2, 0, 0, 0, 0, 3];

    #[test]
    fn learning_and_routes() {
        let mut t = MacTable::new(8);
        assert_eq!(t.route(&B, 1), Route::Flood, "unknown: flooded");
        assert!(t.learn(&A, 1));
        assert!(t.learn(&B, 2));
        assert!(!t.learn(&B, 2), "known");
        assert_eq!(t.route(&B, 1), Route::Port(2));
        assert_eq!(t.route(&A, 2), Route::Port(1));
        assert_eq!(t.route(&A, 1), Route::Drop, "back to its own port");
        assert_eq!(t.route(&BROADCAST, 1), Route::Flood);
        assert_eq!(t.route(&[0x33, 0x33, 0, 0, 0, 1], 1), Route::Flood);
        // A station that moved.
        assert!(t.learn(&A, 3));
        assert_eq!(t.lookup(&A), Some(3));
        // Group sources are not learned.
        assert!(!t.learn(&BROADCAST, 4));
        assert_eq!(t.len(), 2);
        t.forget_port(3);
        assert_eq!(t.route(&A, 2), Route::Flood);
        assert_eq!(t.len(), 1);
    }

    #[test]
    fn full_table_evicts_the_oldest() {
        let mut t = MacTable::new(2);
        t.learn(&A, 1);
        t.learn(&B, 2);
        t.learn(&A, 1);
        t.learn(&C, 3);
        assert_eq!(t.len(), 2);
        assert_eq!(t.lookup(&B), None, "B was learned longest ago");
        assert_eq!((t.lookup(&A), t.lookup(&C)), (Some(1), Some(3)));
    }

    #[test]
    fn mac_text() {
        assert_eq!(parse("02:00:00:00:0a:FF"), Some([2, 0, 0, 0, 0xa, 0xff]));
        assert_eq!(parse("2-0-0-0-0-1"), Some([2, 0, 0, 0, 0, 1]));
        for bad in [
            "",
            "02:00:00:00:00",
            "02:00:00:00:00:00:00",
            "02::00:00:00:00",
            "x2:00:00:00:00:00",
            "123:00:00:00:00:00",
        ] {
            assert_eq!(parse(bad), None, "{bad}");
        }
        assert_eq!(format(&[2, 0, 0, 0, 0xa, 0xff]), "02:00:00:00:0a:ff");
    }
}
