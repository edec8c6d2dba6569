//! Kernel-memory quotas of factories.
//!
//! Every factory draws the kernel memory of the objects it creates from its
//! quota. A factory created by another gets a quota of its own whose whole
//! limit is charged to the parent (as Fiasco's `Ram_quota` does), so nested
//! factories can never hand out more than their parents own, and the
//! parent gets the reservation back when the child quota is destroyed.

use crate::kobj::{Arena, ObjId};

/// A quota.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct QuotaId(ObjId);

impl QuotaId {
    /// The underlying arena id.
    pub const fn obj(self) -> ObjId {
        self.0
    }
}

/// Why a quota operation was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum QuotaError {
    /// The quota does not exist (any more).
    Stale,
    /// Not enough left: the request, and what was available.
    Exceeded {
        /// Bytes requested.
        want: usize,
        /// Bytes available.
        available: usize,
    },
    /// More was returned than is charged.
    Underflow,
    /// The quota still has charges (objects or child quotas) and cannot go.
    Busy,
    /// No room for another quota.
    Full,
}

impl QuotaError {
    /// The error code an invocation reports.
    pub const fn to_error(self) -> l4_abi::Error {
        match self {
            QuotaError::Stale => l4_abi::Error::NoPartner,
            QuotaError::Exceeded { .. } | QuotaError::Full => l4_abi::Error::NoMem,
            QuotaError::Underflow => l4_abi::Error::Inval,
            QuotaError::Busy => l4_abi::Error::Busy,
        }
    }
}

#[derive(Clone, Copy, Debug)]
struct Quota {
    limit: usize,
    used: usize,
    parent: Option<QuotaId>,
}

/// All quotas.
pub struct Quotas {
    arena: Arena<Quota>,
}

impl Quotas {
    /// No quotas yet.
    pub const fn new() -> Quotas {
        Quotas {
            arena: Arena::new(),
        }
    }

    /// A top-level quota (the root factory's: the kernel memory for user
    /// objects).
    pub fn new_root(&mut self, limit: usize) -> Result<QuotaId, QuotaError> {
        self.arena
            .insert(Quota {
                limit,
                used: 0,
                parent: None,
            })
            .map(QuotaId)
            .map_err(|_| QuotaError::Full)
    }

    /// A child quota of `limit` bytes, charged to `parent` in full.
    pub fn new_child(&mut self, parent: QuotaId, limit: usize) -> Result<QuotaId, QuotaError> {
        if !self.arena.has_room() {
            return Err(QuotaError::Full);
        }
        self.charge(parent, limit)?;
        self.arena
            .insert(Quota {
                limit,
                used: 0,
                parent: Some(parent),
            })
            .map(QuotaId)
            .map_err(|_| QuotaError::Full)
    }

    /// Charges `bytes` (a new object); refused if it would exceed the limit.
    pub fn charge(&mut self, id: QuotaId, bytes: usize) -> Result<(), QuotaError> {
        let q = self.arena.get_mut(id.0).ok_or(QuotaError::Stale)?;
        let available = q.limit - q.used;
        if bytes > available {
            return Err(QuotaError::Exceeded {
                want: bytes,
                available,
            });
        }
        q.used += bytes;
        Ok(())
    }

    /// Returns `bytes` (an object was freed).
    pub fn uncharge(&mut self, id: QuotaId, bytes: usize) -> Result<(), QuotaError> {
        let q = self.arena.get_mut(id.0).ok_or(QuotaError::Stale)?;
        q.used = q.used.checked_sub(bytes).ok_or(QuotaError::Underflow)?;
        Ok(())
    }

    /// Destroys a quota with nothing charged and gives its limit back to
    /// the parent.
    pub fn destroy(&mut self, id: QuotaId) -> Result<(), QuotaError> {
        let q = *self.arena.get(id.0).ok_or(QuotaError::Stale)?;
        if q.used != 0 {
            return Err(QuotaError::Busy);
        }
        self.arena.remove(id.0);
        if let Some(p) = q.parent {
            // The parent outlives its children: it is Busy while they exist.
            self.uncharge(p, q.limit)?;
        }
        Ok(())
    }

    /// Bytes charged.
    pub fn used(&self, id: QuotaId) -> Option<usize> {
        self.arena.get(id.0).map(|q| q.used)
    }

    /// The limit.
    pub fn limit(&self, id: QuotaId) -> Option<usize> {
        self.arena.get(id.0).map(|q| q.limit)
    }

    /// Bytes still available.
    pub fn available(&self, id: QuotaId) -> Option<usize> {
        self.arena.get(id.0).map(|q| q.limit - q.used)
    }

    /// The parent quota.
    pub fn parent(&self, id: QuotaId) -> Option<QuotaId> {
        self.arena.get(id.0)?.parent
    }
}

impl Default for Quotas {
    fn default() -> Quotas {
        Quotas::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What a charge of `want` beyond what is `available` gives.
    fn exceeded<T>(want: usize, available: usize) -> Result<T, QuotaError> {
        Err(QuotaError::Exceeded { want, available })
    }

    #[test]
    fn charge_and_uncharge() {
        let mut q = Quotas::new();
        let root = q.new_root(1000).unwrap();
        q.charge(root, 600).unwrap();
        assert_eq!(q.charge(root, 401), exceeded(401, 400));
        q.charge(root, 400).unwrap();
        assert_eq!(q.available(root), Some(0));
        q.uncharge(root, 1000).unwrap();
        assert_eq!(q.uncharge(root, 1), Err(QuotaError::Underflow));
        assert_eq!(q.used(root), Some(0));
        assert_eq!(q.limit(root), Some(1000));
    }

    #[test]
    fn nested_factories() {
        let mut q = Quotas::new();
        let root = q.new_root(10_000).unwrap();
        let child = q.new_child(root, 4000).unwrap();
        assert_eq!(
            q.used(root),
            Some(4000),
            "the whole child limit is reserved"
        );
        assert_eq!(q.parent(child), Some(root));
        let grandchild = q.new_child(child, 3000).unwrap();
        assert_eq!(q.available(child), Some(1000));
        // The grandchild cannot exceed its own limit, nor can a new child of
        // the child exceed what is left.
        assert!(matches!(
            q.charge(grandchild, 3001),
            Err(QuotaError::Exceeded { .. })
        ));
        assert_eq!(q.new_child(child, 1001), exceeded(1001, 1000));
        q.charge(grandchild, 3000).unwrap();
        // A quota with charges cannot be destroyed.
        assert_eq!(q.destroy(grandchild), Err(QuotaError::Busy));
        assert_eq!(q.destroy(child), Err(QuotaError::Busy));
        q.uncharge(grandchild, 3000).unwrap();
        q.destroy(grandchild).unwrap();
        assert_eq!(q.used(child), Some(0));
        q.destroy(child).unwrap();
        assert_eq!(q.used(root), Some(0));
        assert_eq!(q.charge(child, 1), Err(QuotaError::Stale));
        assert_eq!(q.destroy(child), Err(QuotaError::Stale));
        assert_eq!(
            QuotaError::Exceeded {
                want: 1,
                available: 0
            }
            .to_error(),
            l4_abi::Error::NoMem
        );
    }
}
