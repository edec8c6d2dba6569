//! MAC address learning: which port a source address was last seen on
//! in each network (VLAN), and where a frame goes.

use std::collections::BTreeMap;

use crate::vlan::Vid;

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
/// entry learned longest ago makes room. An address is learned per
/// network (VLAN id, [`crate::vlan::UNTAGGED`] for ports without one): the
/// same address in two VLANs is two stations. Ordered by network and
/// address: a lookup (two per frame) costs a few comparisons and no
/// hashing, and no choice of addresses by a guest makes it slower.
#[derive(Debug)]
pub struct MacTable<P> {
    entries: BTreeMap<(Vid, Mac), (P, u64)>,
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

    /// Notes that `src` sent from `port` into network `vid` (group
    /// addresses are not learned: they are no station's). Whether that is
    /// news: an address not known before, or one that moved to `port`.
    pub fn learn(&mut self, vid: Vid, src: &Mac, port: P) -> bool {
        if is_group(src) {
            return false;
        }
        self.clock += 1;
        let key = (vid, *src);
        if !self.entries.contains_key(&key) && self.entries.len() >= self.capacity {
            let oldest = self.entries.iter().min_by_key(|e| e.1.1).map(|e| *e.0);
            if let Some(o) = oldest {
                self.entries.remove(&o);
            }
        }
        let old = self.entries.insert(key, (port, self.clock));
        old.is_none_or(|(p, _)| p != port)
    }

    /// Where a frame of network `vid` to `dst` from port `from` goes.
    pub fn route(&self, vid: Vid, dst: &Mac, from: P) -> Route<P> {
        if is_group(dst) {
            return Route::Flood;
        }
        match self.entries.get(&(vid, *dst)) {
            Some(&(p, _)) if p == from => Route::Drop,
            Some(&(p, _)) => Route::Port(p),
            None => Route::Flood,
        }
    }

    /// The port `m` was learned on in network `vid`.
    pub fn lookup(&self, vid: Vid, m: &Mac) -> Option<P> {
        self.entries.get(&(vid, *m)).map(|e| e.0)
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
        assert_eq!(t.route(0, &B, 1), Route::Flood, "unknown: flooded");
        assert!(t.learn(0, &A, 1));
        assert!(t.learn(0, &B, 2));
        assert!(!t.learn(0, &B, 2), "known");
        assert_eq!(t.route(0, &B, 1), Route::Port(2));
        assert_eq!(t.route(0, &A, 2), Route::Port(1));
        assert_eq!(t.route(0, &A, 1), Route::Drop, "back to its own port");
        assert_eq!(t.route(0, &BROADCAST, 1), Route::Flood);
        assert_eq!(t.route(0, &[0x33, 0x33, 0, 0, 0, 1], 1), Route::Flood);
        // A station that moved.
        assert!(t.learn(0, &A, 3));
        assert_eq!(t.lookup(0, &A), Some(3));
        // Group sources are not learned.
        assert!(!t.learn(0, &BROADCAST, 4));
        assert_eq!(t.len(), 2);
        t.forget_port(3);
        assert_eq!(t.route(0, &A, 2), Route::Flood);
        assert_eq!(t.len(), 1);
    }

    #[test]
    fn full_table_evicts_the_oldest() {
        let mut t = MacTable::new(2);
        t.learn(0, &A, 1);
        t.learn(0, &B, 2);
        t.learn(0, &A, 1);
        t.learn(0, &C, 3);
        assert_eq!(t.len(), 2);
        assert_eq!(t.lookup(0, &B), None, "B was learned longest ago");
        assert_eq!((t.lookup(0, &A), t.lookup(0, &C)), (Some(1), Some(3)));
    }

    #[test]
    fn each_vlan_learns_apart() {
        let mut t = MacTable::new(8);
        assert!(t.learn(5, &A, 1));
        assert_eq!(t.route(5, &A, 2), Route::Port(1));
        assert_eq!(t.route(7, &A, 2), Route::Flood, "not learned in VLAN 7");
        assert_eq!(t.route(0, &A, 2), Route::Flood, "nor untagged");
        // The same address in another VLAN is another station.
        assert!(t.learn(7, &A, 3));
        assert_eq!((t.lookup(5, &A), t.lookup(7, &A)), (Some(1), Some(3)));
        t.forget_port(1);
        assert_eq!((t.lookup(5, &A), t.lookup(7, &A)), (None, Some(3)));
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
