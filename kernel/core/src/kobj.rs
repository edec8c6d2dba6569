//! Object references with liveness: an arena of slots with generation
//! counters.
//!
//! An [`ObjId`] names a slot and the generation the slot had when the object
//! was inserted. Removing the object bumps the generation, so every
//! outstanding `ObjId` (in capability tables, wait queues, bindings) stops
//! resolving at once, without the kernel having to find and clear them.
//! A slot whose generation counter would wrap is retired instead of reused,
//! so an id never comes back to life.

use alloc::vec::Vec;
use core::fmt;

/// A reference to an object in an [`Arena`].
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ObjId {
    slot: u32,
    generation: u32,
}

impl ObjId {
    /// The slot index.
    pub const fn slot(self) -> u32 {
        self.slot
    }

    /// The generation.
    pub const fn generation(self) -> u32 {
        self.generation
    }

    /// Packs the id into a word (slot in the high half).
    pub const fn to_raw(self) -> u64 {
        ((self.slot as u64) << 32) | self.generation as u64
    }

    /// Unpacks [`ObjId::to_raw`]. Any value is accepted; a made-up id simply
    /// resolves to nothing.
    pub const fn from_raw(raw: u64) -> ObjId {
        ObjId {
            slot: (raw >> 32) as u32,
            generation: raw as u32,
        }
    }
}

impl fmt::Debug for ObjId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ObjId({}#{})", self.slot, self.generation)
    }
}

/// Why an insertion failed; the value is handed back.
#[derive(Debug, PartialEq, Eq)]
pub struct ArenaFull<T>(pub T);

/// One slot: the object while it lives; a free slot links to the next
/// free one; a slot whose generation ran out stays empty for good.
struct Slot<T> {
    generation: u32,
    /// The next free slot (`NO_SLOT`: none) while this one is free.
    next_free: u32,
    value: Option<T>,
}

const NO_SLOT: u32 = u32::MAX;

/// A set of objects addressed by [`ObjId`]s, with at most `limit` slots.
pub struct Arena<T> {
    slots: Vec<Slot<T>>,
    free: Option<u32>,
    len: usize,
    limit: usize,
}

impl<T> Arena<T> {
    /// An empty arena with room for `limit` slots (at most `u32::MAX`).
    pub const fn with_limit(limit: usize) -> Arena<T> {
        Arena {
            slots: Vec::new(),
            free: None,
            len: 0,
            limit,
        }
    }

    /// An empty arena limited only by the id space.
    pub const fn new() -> Arena<T> {
        Arena::with_limit(u32::MAX as usize)
    }

    /// Heap bytes one slot takes (for sizing [`Arena::with_limit`]).
    pub const fn slot_bytes() -> usize {
        core::mem::size_of::<Slot<T>>()
    }

    /// Reserves room for `n` more slots, so that inserting does not
    /// allocate until they are used.
    pub fn reserve(&mut self, n: usize) {
        self.slots
            .reserve(n.min(self.limit.saturating_sub(self.slots.len())));
    }

    /// Whether [`Arena::insert`] would succeed.
    pub fn has_room(&self) -> bool {
        self.free.is_some() || self.slots.len() < self.limit.min(NO_SLOT as usize)
    }

    /// Inserts an object; fails when every slot is in use (or retired).
    pub fn insert(&mut self, value: T) -> Result<ObjId, ArenaFull<T>> {
        if let Some(slot) = self.free {
            let s = &mut self.slots[slot as usize];
            debug_assert!(s.value.is_none(), "free list points at a used slot");
            self.free = (s.next_free != NO_SLOT).then_some(s.next_free);
            s.next_free = NO_SLOT;
            s.value = Some(value);
            self.len += 1;
            return Ok(ObjId {
                slot,
                generation: s.generation,
            });
        }
        // Slot numbers stay below NO_SLOT.
        if self.slots.len() >= self.limit.min(NO_SLOT as usize) {
            return Err(ArenaFull(value));
        }
        let slot = self.slots.len() as u32;
        self.slots.push(Slot {
            generation: 0,
            next_free: NO_SLOT,
            value: Some(value),
        });
        self.len += 1;
        Ok(ObjId {
            slot,
            generation: 0,
        })
    }

    /// The object, if `id` is still alive.
    #[inline]
    pub fn get(&self, id: ObjId) -> Option<&T> {
        let s = self.slots.get(id.slot as usize)?;
        if s.generation == id.generation {
            s.value.as_ref()
        } else {
            None
        }
    }

    /// The object, mutably, if `id` is still alive.
    #[inline]
    pub fn get_mut(&mut self, id: ObjId) -> Option<&mut T> {
        let s = self.slots.get_mut(id.slot as usize)?;
        if s.generation == id.generation {
            s.value.as_mut()
        } else {
            None
        }
    }

    /// Two distinct live objects, both mutably; `None` if either is dead
    /// or `a == b` names the same slot.
    #[inline(always)]
    pub fn get2_mut(&mut self, a: ObjId, b: ObjId) -> Option<(&mut T, &mut T)> {
        let [si, sj] = self
            .slots
            .get_disjoint_mut([a.slot as usize, b.slot as usize])
            .ok()?;
        if si.generation != a.generation || sj.generation != b.generation {
            return None;
        }
        Some((si.value.as_mut()?, sj.value.as_mut()?))
    }

    /// Whether `id` is alive.
    pub fn contains(&self, id: ObjId) -> bool {
        self.get(id).is_some()
    }

    /// Removes the object; every copy of `id` becomes stale.
    pub fn remove(&mut self, id: ObjId) -> Option<T> {
        self.get(id)?;
        let s = &mut self.slots[id.slot as usize];
        let v = s.value.take();
        if let Some(g) = s.generation.checked_add(1) {
            s.generation = g;
            s.next_free = self.free.unwrap_or(NO_SLOT);
            self.free = Some(id.slot);
        }
        // Otherwise the slot is retired: it is never handed out again.
        self.len -= 1;
        v
    }

    /// The number of live objects.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether there are no live objects.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The live objects with their ids.
    pub fn iter(&self) -> impl Iterator<Item = (ObjId, &T)> {
        self.slots.iter().enumerate().filter_map(|(i, s)| {
            let id = ObjId {
                slot: i as u32,
                generation: s.generation,
            };
            s.value.as_ref().map(|v| (id, v))
        })
    }

    /// Every live object, mutably, with its id.
    pub fn iter_mut(&mut self) -> impl Iterator<Item = (ObjId, &mut T)> {
        self.slots.iter_mut().enumerate().filter_map(|(i, s)| {
            let id = ObjId {
                slot: i as u32,
                generation: s.generation,
            };
            s.value.as_mut().map(|v| (id, v))
        })
    }

    #[cfg(test)]
    fn force_generation(&mut self, slot: u32, generation: u32) {
        self.slots[slot as usize].generation = generation;
    }
}

impl<T> Default for Arena<T> {
    fn default() -> Arena<T> {
        Arena::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;

    #[test]
    fn iter_mut_visits_live_objects_only() {
        let mut a = Arena::new();
        let x = a.insert(1).unwrap();
        let y = a.insert(2).unwrap();
        a.remove(x);
        for (id, v) in a.iter_mut() {
            assert_eq!(id, y);
            *v += 10;
        }
        assert_eq!(a.get(y), Some(&12));
    }

    #[test]
    fn two_objects_at_once() {
        let mut a = Arena::new();
        let x = a.insert(1).unwrap();
        let y = a.insert(2).unwrap();
        let z = a.insert(3).unwrap();
        let (p, q) = a.get2_mut(z, x).unwrap();
        core::mem::swap(p, q);
        assert_eq!((a.get(x), a.get(z)), (Some(&3), Some(&1)));
        assert!(a.get2_mut(x, x).is_none(), "the same object twice");
        a.remove(y);
        assert!(a.get2_mut(x, y).is_none(), "a dead object");
        let y2 = a.insert(4).unwrap();
        assert!(a.get2_mut(y, x).is_none(), "a stale id of a reused slot");
        assert!(a.get2_mut(y2, x).is_some());
        assert!(
            a.get2_mut(x, ObjId::from_raw(99 << 32)).is_none(),
            "out of range"
        );
    }

    #[test]
    fn stale_ids_do_not_resolve() {
        let mut a = Arena::new();
        let x = a.insert("task").unwrap();
        let copy = x;
        assert_eq!(a.get(copy), Some(&"task"));
        assert_eq!(a.remove(x), Some("task"));
        assert_eq!(a.get(copy), None);
        assert_eq!(a.remove(copy), None, "double delete");
        // The slot is reused with a new generation; the old id stays dead.
        let y = a.insert("thread").unwrap();
        assert_eq!(y.slot(), x.slot());
        assert_ne!(y, x);
        assert_eq!(a.get(x), None);
        assert_eq!(a.get(y), Some(&"thread"));
        assert_eq!(a.len(), 1);
    }

    #[test]
    fn limit_and_iteration() {
        let mut a = Arena::with_limit(2);
        a.reserve(10);
        let p = a.insert(1).unwrap();
        assert!(a.has_room());
        let q = a.insert(2).unwrap();
        assert!(!a.has_room());
        assert_eq!(a.insert(3), Err(ArenaFull(3)));
        *a.get_mut(q).unwrap() = 20;
        a.remove(p);
        assert!(!a.contains(p) && a.contains(q));
        let live: Vec<_> = a.iter().map(|(_, v)| *v).collect();
        assert_eq!(live, vec![20]);
        assert!(a.insert(4).is_ok());
        assert!(!a.is_empty());
    }

    #[test]
    fn raw_round_trip_and_garbage() {
        let mut a = Arena::new();
        let x = a.insert(()).unwrap();
        assert_eq!(ObjId::from_raw(x.to_raw()), x);
        assert_eq!(a.get(ObjId::from_raw(0xffff_ffff_0000_0000)), None);
        assert_eq!(a.get(ObjId::from_raw(x.to_raw() + 1)), None);
        assert_eq!(alloc::format!("{x:?}"), "ObjId(0#0)");
    }

    #[test]
    fn exhausted_generation_retires_the_slot() {
        let mut a = Arena::new();
        let x = a.insert('a').unwrap();
        a.remove(x);
        a.force_generation(0, u32::MAX);
        let y = a.insert('b').unwrap();
        assert_eq!(y.generation(), u32::MAX);
        a.remove(y);
        let z = a.insert('c').unwrap();
        assert_ne!(z.slot(), y.slot(), "retired slot not reused");
        assert_eq!(a.get(y), None);
    }
}
