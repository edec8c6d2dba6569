//! A set of INTIDs as a two-level bitmap: one bit per interrupt, and a
//! summary word with one bit per non-empty word, so that walking the set
//! costs a step per member (plus one per non-empty word), not one per
//! interrupt the GIC has.

/// INTIDs below 64 * 64 (the GIC's 1020 fit).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct IrqSet {
    /// Bit `w` set: `words[w]` is not zero.
    summary: u64,
    words: Vec<u64>,
}

/// The most INTIDs a set holds.
pub const CAPACITY: u32 = 64 * 64;

impl IrqSet {
    /// An empty set for INTIDs below `n` (at most [`CAPACITY`]).
    pub fn new(n: u32) -> IrqSet {
        IrqSet {
            summary: 0,
            words: vec![0; n.min(CAPACITY).div_ceil(64) as usize],
        }
    }

    /// Adds `intid` (ignored beyond the set's range).
    pub fn insert(&mut self, intid: u32) {
        let w = (intid / 64) as usize;
        if let Some(word) = self.words.get_mut(w) {
            *word |= 1 << (intid % 64);
            self.summary |= 1 << w;
        }
    }

    /// Removes `intid`.
    pub fn remove(&mut self, intid: u32) {
        let w = (intid / 64) as usize;
        if let Some(word) = self.words.get_mut(w) {
            *word &= !(1 << (intid % 64));
            if *word == 0 {
                self.summary &= !(1 << w);
            }
        }
    }

    /// Whether `intid` is in the set.
    pub fn contains(&self, intid: u32) -> bool {
        self.words
            .get((intid / 64) as usize)
            .is_some_and(|w| w & (1 << (intid % 64)) != 0)
    }

    /// Whether the set is empty.
    pub fn is_empty(&self) -> bool {
        self.summary == 0
    }

    /// The members in ascending order.
    pub fn iter(&self) -> impl Iterator<Item = u32> + '_ {
        bits(self.summary).flat_map(move |w| bits(self.words[w as usize]).map(move |b| w * 64 + b))
    }

    /// Visits the members in ascending order and keeps those for which
    /// `keep` returns true.
    pub fn retain(&mut self, mut keep: impl FnMut(u32) -> bool) {
        for w in bits(self.summary) {
            let word = &mut self.words[w as usize];
            for b in bits(*word) {
                if !keep(w * 64 + b) {
                    *word &= !(1 << b);
                }
            }
            if *word == 0 {
                self.summary &= !(1 << w);
            }
        }
    }
}

/// The set bits of `v`, lowest first.
fn bits(mut v: u64) -> impl Iterator<Item = u32> {
    core::iter::from_fn(move || {
        if v == 0 {
            return None;
        }
        let b = v.trailing_zeros();
        v &= v - 1;
        Some(b)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn insert_remove_iterate_retain() {
        let mut s = IrqSet::new(1020);
        assert!(s.is_empty());
        for n in [1019, 3, 64, 63, 200, 3] {
            s.insert(n);
        }
        s.insert(1024 + 64 * 64);
        assert_eq!(s.iter().collect::<Vec<_>>(), [3, 63, 64, 200, 1019]);
        assert!(s.contains(64) && !s.contains(65));
        s.remove(64);
        s.remove(5000);
        assert_eq!(s.iter().collect::<Vec<_>>(), [3, 63, 200, 1019]);
        let mut seen = Vec::new();
        s.retain(|n| {
            seen.push(n);
            n % 2 == 1
        });
        assert_eq!(seen, [3, 63, 200, 1019]);
        assert_eq!(s.iter().collect::<Vec<_>>(), [3, 63, 1019]);
        s.retain(|_| false);
        assert!(s.is_empty());
        assert_eq!(s, IrqSet::new(1020));
    }
}
