//! A task's capability table: index -> (object reference, rights).
//!
//! Generic over the object reference `O` (the kernel uses its own handle,
//! e.g. a [`crate::kobj::ObjId`] plus a type tag). Conventions:
//!
//! * **Index 0 is never valid** (as in Fiasco, where the base capabilities
//!   start at 1): inserting there is refused and looking it up fails.
//! * The table has a fixed upper bound (`limit`: valid indices are
//!   `1..limit`) and grows on demand up to it; lookups never allocate.
//! * Refusals are errors, never panics: an empty or out-of-range index is
//!   [`CapError::Empty`] / [`CapError::OutOfRange`], missing rights are
//!   [`CapError::NoRights`].

use alloc::vec::Vec;
use l4_abi::{CapRights, Error};

/// One capability.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CapEntry<O> {
    /// The object.
    pub obj: O,
    /// The rights this capability grants.
    pub rights: CapRights,
}

/// Why a capability operation was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CapError {
    /// Index 0, or at or beyond the table's limit.
    OutOfRange,
    /// No capability at the index (or its object is gone).
    Empty,
    /// The capability lacks rights the operation needs.
    NoRights {
        /// What the capability has.
        have: CapRights,
        /// What the operation needs.
        need: CapRights,
    },
}

impl CapError {
    /// The error an object invocation reports: a missing capability is
    /// [`Error::NoPartner`] (Fiasco's "non-existing destination"), missing
    /// rights [`Error::Perm`].
    pub const fn to_error(self) -> Error {
        match self {
            CapError::OutOfRange | CapError::Empty => Error::NoPartner,
            CapError::NoRights { .. } => Error::Perm,
        }
    }
}

/// A capability table.
#[derive(Clone, Debug)]
pub struct CapTable<O> {
    slots: Vec<Option<CapEntry<O>>>,
    limit: u64,
    count: usize,
}

impl<O: Copy> CapTable<O> {
    /// An empty table for indices `1..limit`.
    pub const fn new(limit: u64) -> CapTable<O> {
        CapTable {
            slots: Vec::new(),
            limit,
            count: 0,
        }
    }

    /// The bound: valid indices are `1..limit()`.
    pub fn limit(&self) -> u64 {
        self.limit
    }

    /// The number of capabilities present.
    pub fn len(&self) -> usize {
        self.count
    }

    /// Whether the table holds no capability.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    fn check(&self, index: u64) -> Result<usize, CapError> {
        if index == 0 || index >= self.limit {
            return Err(CapError::OutOfRange);
        }
        usize::try_from(index).map_err(|_| CapError::OutOfRange)
    }

    /// The capability at `index`, if any.
    pub fn get(&self, index: u64) -> Option<&CapEntry<O>> {
        let i = self.check(index).ok()?;
        self.slots.get(i)?.as_ref()
    }

    /// Looks up `index` and checks that it has every right in `need`.
    #[inline]
    pub fn lookup(&self, index: u64, need: CapRights) -> Result<CapEntry<O>, CapError> {
        // Only indices `1..limit` are ever filled, so the range needs
        // checking only for the error.
        let slot = usize::try_from(index).ok().and_then(|i| self.slots.get(i));
        match slot.and_then(Option::as_ref) {
            Some(e) if e.rights.contains(need) => Ok(*e),
            Some(e) => Err(CapError::NoRights {
                have: e.rights,
                need,
            }),
            None => Err(self.check(index).err().unwrap_or(CapError::Empty)),
        }
    }

    /// Like [`CapTable::lookup`], but also asks `alive` whether the object
    /// still exists; a capability to a deleted object is cleared and
    /// reported as [`CapError::Empty`].
    pub fn lookup_live(
        &mut self,
        index: u64,
        need: CapRights,
        alive: impl FnOnce(&O) -> bool,
    ) -> Result<CapEntry<O>, CapError> {
        let e = match self.lookup(index, need) {
            Err(CapError::NoRights { have, need }) => {
                // A dead object is reported as missing, not as lacking rights.
                let obj = self.get(index).map(|e| e.obj);
                return match obj {
                    Some(o) if !alive(&o) => {
                        self.remove(index);
                        Err(CapError::Empty)
                    }
                    _ => Err(CapError::NoRights { have, need }),
                };
            }
            r => r?,
        };
        if alive(&e.obj) {
            Ok(e)
        } else {
            self.remove(index);
            Err(CapError::Empty)
        }
    }

    /// Puts a capability at `index`, growing the table if needed; returns
    /// the capability it replaced.
    pub fn insert(
        &mut self,
        index: u64,
        obj: O,
        rights: CapRights,
    ) -> Result<Option<CapEntry<O>>, CapError> {
        let i = self.check(index)?;
        if i >= self.slots.len() {
            let cap = (self.limit as usize)
                .min(i.saturating_add(1).max(self.slots.len().saturating_mul(2)));
            self.slots.resize(cap.max(i + 1), None);
        }
        let old = self.slots[i].replace(CapEntry { obj, rights });
        if old.is_none() {
            self.count += 1;
        }
        Ok(old)
    }

    /// Removes the capability at `index`.
    pub fn remove(&mut self, index: u64) -> Option<CapEntry<O>> {
        let i = self.check(index).ok()?;
        let old = self.slots.get_mut(i)?.take();
        if old.is_some() {
            self.count -= 1;
        }
        old
    }

    /// Removes `revoke` from the rights at `index`; returns the new rights.
    /// A capability left without rights is removed (and `None` returned).
    pub fn reduce_rights(&mut self, index: u64, revoke: CapRights) -> Option<CapRights> {
        let i = self.check(index).ok()?;
        let slot = self.slots.get_mut(i)?;
        let e = slot.as_mut()?;
        e.rights = e.rights.difference(revoke);
        if e.rights == CapRights::NONE {
            *slot = None;
            self.count -= 1;
            return None;
        }
        Some(e.rights)
    }

    /// The first free index at or after `from` (and at least 1).
    pub fn free_index(&self, from: u64) -> Option<u64> {
        (from.max(1)..self.limit).find(|&i| self.get(i).is_none())
    }

    /// The capabilities present, by index.
    pub fn iter(&self) -> impl Iterator<Item = (u64, &CapEntry<O>)> {
        self.slots
            .iter()
            .enumerate()
            .filter_map(|(i, s)| s.as_ref().map(|e| (i as u64, e)))
    }

    /// Keeps only the capabilities for which `keep` returns true (e.g. to
    /// drop capabilities of deleted objects).
    pub fn retain(&mut self, mut keep: impl FnMut(u64, &CapEntry<O>) -> bool) {
        for (i, s) in self.slots.iter_mut().enumerate() {
            if let Some(e) = s
                && !keep(i as u64, e)
            {
                *s = None;
                self.count -= 1;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kobj::{Arena, ObjId};
    use alloc::vec;

    #[test]
    fn index_zero_and_bounds() {
        let mut t: CapTable<u32> = CapTable::new(16);
        assert_eq!(t.insert(0, 1, CapRights::RW), Err(CapError::OutOfRange));
        assert_eq!(t.insert(16, 1, CapRights::RW), Err(CapError::OutOfRange));
        assert_eq!(t.lookup(0, CapRights::NONE), Err(CapError::OutOfRange));
        assert_eq!(
            t.lookup(u64::MAX, CapRights::NONE),
            Err(CapError::OutOfRange)
        );
        assert_eq!(t.lookup(3, CapRights::NONE), Err(CapError::Empty));
        assert_eq!(t.get(0), None);
        assert_eq!(t.remove(99), None);
        assert!(t.is_empty());
    }

    #[test]
    fn rights_are_checked() {
        let mut t = CapTable::new(64);
        assert_eq!(t.insert(5, 'g', CapRights::RO), Ok(None));
        assert_eq!(t.lookup(5, CapRights::R).map(|e| e.obj), Ok('g'));
        assert_eq!(
            t.lookup(5, CapRights::RW),
            Err(CapError::NoRights {
                have: CapRights::RO,
                need: CapRights::RW
            })
        );
        assert_eq!(
            CapError::NoRights {
                have: CapRights::RO,
                need: CapRights::RW
            }
            .to_error(),
            Error::Perm
        );
        assert_eq!(CapError::Empty.to_error(), Error::NoPartner);
    }

    #[test]
    fn insert_replace_remove_iterate() {
        let mut t = CapTable::new(1 << 20);
        t.insert(1, 10, CapRights::RWS).unwrap();
        t.insert(1000, 20, CapRights::RW).unwrap();
        assert_eq!(
            t.insert(1, 11, CapRights::RO),
            Ok(Some(CapEntry {
                obj: 10,
                rights: CapRights::RWS
            }))
        );
        assert_eq!(t.len(), 2);
        let all: Vec<_> = t.iter().map(|(i, e)| (i, e.obj)).collect();
        assert_eq!(all, vec![(1, 11), (1000, 20)]);
        assert_eq!(t.free_index(0), Some(2));
        assert_eq!(t.free_index(1000), Some(1001));
        assert_eq!(t.remove(1000).map(|e| e.obj), Some(20));
        assert_eq!(t.len(), 1);
        t.retain(|i, _| i != 1);
        assert!(t.is_empty());
        assert_eq!(t.limit(), 1 << 20);
    }

    #[test]
    fn full_table() {
        let mut t = CapTable::new(3);
        t.insert(1, (), CapRights::RO).unwrap();
        t.insert(2, (), CapRights::RO).unwrap();
        assert_eq!(t.free_index(0), None);
    }

    #[test]
    fn reduce_rights() {
        let mut t = CapTable::new(8);
        t.insert(2, 0u8, CapRights::RWS).unwrap();
        assert_eq!(t.reduce_rights(2, CapRights::W), Some(CapRights::RS));
        assert_eq!(t.reduce_rights(2, CapRights::ALL), None);
        assert_eq!(t.get(2), None);
        assert_eq!(t.reduce_rights(2, CapRights::ALL), None);
        assert!(t.is_empty());
    }

    #[test]
    fn deleted_objects_make_capabilities_invalid() {
        let mut objs = Arena::new();
        let gate = objs.insert("gate").unwrap();
        let mut a: CapTable<ObjId> = CapTable::new(32);
        let mut b: CapTable<ObjId> = CapTable::new(32);
        a.insert(4, gate, CapRights::RWSD).unwrap();
        b.insert(9, gate, CapRights::RO).unwrap();
        assert!(
            a.lookup_live(4, CapRights::R, |o| objs.contains(*o))
                .is_ok()
        );
        // Deleting through a's capability invalidates b's copy too.
        let e = a.lookup(4, CapRights::D).unwrap();
        objs.remove(e.obj);
        assert_eq!(
            b.lookup_live(9, CapRights::R, |o| objs.contains(*o)),
            Err(CapError::Empty)
        );
        assert_eq!(b.get(9), None, "stale entry cleared");
        // A stale capability is reported as missing even if rights lack.
        assert_eq!(
            a.lookup_live(4, CapRights::ALL, |o| objs.contains(*o)),
            Err(CapError::Empty)
        );
        assert!(a.is_empty());
    }
}
