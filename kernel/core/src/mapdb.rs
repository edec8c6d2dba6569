//! The mapping database: who got which mapping from whom.
//!
//! Every mapping of a memory region or a capability is a node: (space,
//! kind, address or index, order, rights, origin). A node made by `map` is
//! a child of the node it was mapped from, so the mappings of one page (or
//! capability) form a tree rooted where it entered the system (the root
//! task's memory, the creator's capability of a new object). Invariants:
//!
//! * rights only shrink along a chain (a child never has a right its parent
//!   lacks);
//! * the nodes of one space and kind never overlap;
//! * `unmap` revokes a whole subtree (optionally only some rights) and
//!   reports every change, so the kernel can update page tables and
//!   capability tables; `grant` moves a node to another space, keeping its
//!   children.
//!
//! The `origin` of a node identifies what it maps: the physical address for
//! memory, an object reference (e.g. [`crate::kobj::ObjId::to_raw`]) for a
//! capability. A child's origin is its parent's plus its offset in the
//! parent. Capabilities are mapped one per node (order 0), since adjacent
//! indices hold unrelated objects.
//!
//! Map, grant and unmap allocate (nodes, the list of changes); lookups do
//! not. Traversals are iterative, so deep chains do not use kernel stack.

use alloc::collections::BTreeMap;
use alloc::vec::Vec;

use crate::kobj::{Arena, ObjId};

/// Which space of a task a mapping lives in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    /// Memory (addresses in bytes).
    Mem,
    /// Capabilities (indices).
    Cap,
}

/// A node of the database.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NodeId(ObjId);

/// A mapping as the kernel sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Mapping<S> {
    /// The space (task) holding the mapping.
    pub space: S,
    /// Memory or capability.
    pub kind: Kind,
    /// First address or index.
    pub addr: u64,
    /// Log2 of the size.
    pub order: u8,
    /// The rights (memory or capability rights bits).
    pub rights: u8,
    /// What is mapped (physical address, object reference).
    pub origin: u64,
}

/// A naturally aligned range in one space: `2^order` units from `addr`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Range {
    /// Memory or capabilities.
    pub kind: Kind,
    /// First address or index.
    pub addr: u64,
    /// Log2 of the size.
    pub order: u8,
}

impl Range {
    /// A range.
    pub const fn new(kind: Kind, addr: u64, order: u8) -> Range {
        Range { kind, addr, order }
    }
}

/// What to map (or grant): `2^order` units at `src_addr` of the source
/// mapping to `dst_addr` in `dst_space`, with at most `rights`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MapReq<S> {
    /// First unit in the source space.
    pub src_addr: u64,
    /// Log2 of the size.
    pub order: u8,
    /// The receiving space.
    pub dst_space: S,
    /// First unit in the receiving space.
    pub dst_addr: u64,
    /// The rights wanted (reduced to the source's).
    pub rights: u8,
}

impl<S> MapReq<S> {
    /// A request.
    pub const fn new(
        src_addr: u64,
        order: u8,
        dst_space: S,
        dst_addr: u64,
        rights: u8,
    ) -> MapReq<S> {
        MapReq {
            src_addr,
            order,
            dst_space,
            dst_addr,
            rights,
        }
    }
}

/// A change the kernel must apply to a page table or capability table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Change<S> {
    /// The mapping is gone: remove it.
    Unmapped(Mapping<S>),
    /// The mapping's rights changed to `rights` (reduced, or raised by a
    /// repeated map from the same parent).
    Rights(Mapping<S>),
}

/// Where the database reports its [`Change`]s, as they happen: the kernel
/// applies each at once (nothing is collected, so an operation on a
/// million mappings needs no memory in proportion); tests collect them in
/// a `Vec`.
pub trait ChangeSink<S> {
    /// One change, to be applied now.
    fn change(&mut self, c: Change<S>);
}

impl<S> ChangeSink<S> for Vec<Change<S>> {
    fn change(&mut self, c: Change<S>) {
        self.push(c);
    }
}

/// Why a database operation was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MapDbError {
    /// The node does not exist (any more).
    StaleNode,
    /// The source range is not inside the parent mapping, or an order is
    /// larger than the parent's.
    OutOfRange,
    /// An address is not aligned to the order.
    Misaligned,
    /// An order above 63.
    BadOrder,
    /// The resulting rights would be empty.
    NoRights,
    /// The destination overlaps the source or one of its ancestors.
    Overlap,
    /// A grant must move a whole node.
    PartialGrant,
    /// The database is full.
    Full,
}

#[derive(Clone, Copy, Debug)]
struct Node<S> {
    m: Mapping<S>,
    parent: Option<NodeId>,
    first_child: Option<NodeId>,
    prev: Option<NodeId>,
    next: Option<NodeId>,
}

/// The mapping database, generic over the space identifier `S`.
pub struct MapDb<S> {
    nodes: Arena<Node<S>>,
    index: BTreeMap<(S, Kind, u64), NodeId>,
}

/// The last unit covered by an aligned range.
const fn last(addr: u64, order: u8) -> u64 {
    if order >= 64 {
        u64::MAX
    } else {
        addr | ((1u64 << order) - 1)
    }
}

const fn aligned(addr: u64, order: u8) -> bool {
    order >= 64 || addr & ((1u64 << order) - 1) == 0
}

/// Every right bit.
pub const ALL_RIGHTS: u8 = 0xff;

impl<S: Copy + Ord> MapDb<S> {
    /// An empty database.
    pub const fn new() -> MapDb<S> {
        MapDb::with_limit(u32::MAX as usize)
    }

    /// An empty database with at most `limit` nodes.
    pub const fn with_limit(limit: usize) -> MapDb<S> {
        MapDb {
            nodes: Arena::with_limit(limit),
            index: BTreeMap::new(),
        }
    }

    /// A database that holds `limit` mappings, with the room for their
    /// records reserved now (it never grows, so it never needs a large
    /// allocation later).
    pub fn with_capacity(limit: usize) -> MapDb<S> {
        let mut db = MapDb::with_limit(limit);
        db.nodes.reserve(limit);
        db
    }

    /// Heap bytes the record of one mapping takes, besides its index entry.
    pub const fn node_bytes() -> usize {
        Arena::<Node<S>>::slot_bytes()
    }

    /// The number of mappings.
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// Whether there are no mappings.
    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    fn node(&self, id: NodeId) -> Result<&Node<S>, MapDbError> {
        self.nodes.get(id.0).ok_or(MapDbError::StaleNode)
    }

    fn node_mut(&mut self, id: NodeId) -> &mut Node<S> {
        self.nodes.get_mut(id.0).expect("mapdb: live node expected")
    }

    /// The mapping of a node.
    pub fn get(&self, id: NodeId) -> Option<Mapping<S>> {
        self.nodes.get(id.0).map(|n| n.m)
    }

    /// The node a mapping was derived from.
    pub fn parent(&self, id: NodeId) -> Option<NodeId> {
        self.nodes.get(id.0)?.parent
    }

    /// The direct children of a node.
    pub fn children(&self, id: NodeId) -> Children<'_, S> {
        Children {
            db: self,
            next: self.nodes.get(id.0).and_then(|n| n.first_child),
        }
    }

    /// The node of `space` covering `addr`.
    pub fn lookup(&self, space: S, kind: Kind, addr: u64) -> Option<NodeId> {
        let (_, &id) = self
            .index
            .range((space, kind, 0)..=(space, kind, addr))
            .next_back()?;
        let m = self.nodes.get(id.0)?.m;
        (last(m.addr, m.order) >= addr).then_some(id)
    }

    /// The largest piece of a map or grant that one record can hold: the
    /// node of `space` covering `src` and the largest order in
    /// `orders` such that `src` and `dst` are aligned to it,
    /// it fits in the `left` units still to map, and that node covers all
    /// of it. `None` if nothing covers `src` or not even `min_order` fits.
    ///
    /// Mapping a range piece by piece this way makes one record per 2 MiB
    /// (with orders up to 21) where the source holds 2 MiB or more in one
    /// record, and one per page elsewhere; [`MapDb::unmap_range`] revokes
    /// a large record as a whole, with what derives from it.
    pub fn chunk(
        &self,
        space: S,
        kind: Kind,
        src: u64,
        dst: u64,
        left: u64,
        orders: core::ops::RangeInclusive<u8>,
    ) -> Option<(NodeId, u8)> {
        let id = self.lookup(space, kind, src)?;
        let m = self.nodes.get(id.0)?.m;
        let end = last(m.addr, m.order);
        (*orders.start()..=(*orders.end()).min(63))
            .rev()
            .find_map(|o| {
                let fits = aligned(src, o)
                    && aligned(dst, o)
                    && (o >= 64 || left >= 1 << o)
                    && last(src, o) <= end;
                fits.then_some((id, o))
            })
    }

    /// The mappings of one space.
    pub fn mappings(&self, space: S) -> impl Iterator<Item = Mapping<S>> + '_ {
        self.index
            .range((space, Kind::Mem, 0)..=(space, Kind::Cap, u64::MAX))
            .filter_map(|(_, id)| self.get(*id))
    }

    /// The node of `space` and `kind` overlapping `[addr, last(addr, order)]`
    /// that starts highest at or below `below`. Nodes of one space never
    /// overlap, so stepping `below` down past each node's start visits all
    /// overlapping nodes in descending order, whatever happens to them.
    fn overlapping_below(
        &self,
        space: S,
        kind: Kind,
        addr: u64,
        order: u8,
        below: u64,
    ) -> Option<NodeId> {
        let end = last(addr, order).min(below);
        let (_, &id) = self
            .index
            .range((space, kind, 0)..=(space, kind, end))
            .next_back()?;
        let m = self
            .nodes
            .get(id.0)
            .expect("mapdb: index points at a dead node")
            .m;
        (last(m.addr, m.order) >= addr).then_some(id)
    }

    /// Calls `f` for each node of `space` and `kind` overlapping
    /// `[addr, last(addr, order)]`, highest first; `f` may change or remove
    /// the node it is given. Stops early when `f` says so.
    fn each_overlapping(
        &mut self,
        space: S,
        kind: Kind,
        addr: u64,
        order: u8,
        mut f: impl FnMut(&mut Self, NodeId, Mapping<S>) -> core::ops::ControlFlow<()>,
    ) {
        let mut below = u64::MAX;
        while let Some(id) = self.overlapping_below(space, kind, addr, order, below) {
            let m = self.nodes.get(id.0).expect("mapdb: overlapping node").m;
            if f(self, id, m).is_break() || m.addr <= addr {
                return;
            }
            below = m.addr - 1;
        }
    }

    /// Whether a node overlapping the range is `keep` or one of its
    /// ancestors (which a mapping there would revoke).
    fn overlaps_ancestor(&self, space: S, kind: Kind, addr: u64, order: u8, keep: NodeId) -> bool {
        let end = last(addr, order);
        for (_, &id) in self
            .index
            .range((space, kind, 0)..=(space, kind, end))
            .rev()
        {
            let m = self
                .nodes
                .get(id.0)
                .expect("mapdb: index points at a dead node")
                .m;
            if last(m.addr, m.order) < addr {
                return false;
            }
            if self.is_ancestor_or_self(id, keep) {
                return true;
            }
        }
        false
    }

    /// Removes every mapping overlapping the range, with what derives from it.
    fn clear_range(
        &mut self,
        space: S,
        kind: Kind,
        addr: u64,
        order: u8,
        changes: &mut impl ChangeSink<S>,
    ) {
        self.each_overlapping(space, kind, addr, order, |db, id, _| {
            db.revoke(id, ALL_RIGHTS, true, changes);
            core::ops::ControlFlow::Continue(())
        });
    }

    fn is_ancestor_or_self(&self, a: NodeId, mut n: NodeId) -> bool {
        loop {
            if a == n {
                return true;
            }
            match self.nodes.get(n.0).and_then(|x| x.parent) {
                Some(p) => n = p,
                None => return false,
            }
        }
    }

    fn link(&mut self, id: NodeId, parent: Option<NodeId>) {
        let first = parent.and_then(|p| self.node_mut(p).first_child);
        {
            let n = self.node_mut(id);
            n.parent = parent;
            n.prev = None;
            n.next = first;
        }
        if let Some(f) = first {
            self.node_mut(f).prev = Some(id);
        }
        if let Some(p) = parent {
            self.node_mut(p).first_child = Some(id);
        }
    }

    fn unlink(&mut self, id: NodeId) {
        let (parent, prev, next) = {
            let n = self.node_mut(id);
            (n.parent, n.prev, n.next)
        };
        match prev {
            Some(p) => self.node_mut(p).next = next,
            None => {
                if let Some(par) = parent {
                    self.node_mut(par).first_child = next;
                }
            }
        }
        if let Some(nx) = next {
            self.node_mut(nx).prev = prev;
        }
        let n = self.node_mut(id);
        n.parent = None;
        n.prev = None;
        n.next = None;
    }

    fn add(&mut self, m: Mapping<S>, parent: Option<NodeId>) -> NodeId {
        let node = Node {
            m,
            parent: None,
            first_child: None,
            prev: None,
            next: None,
        };
        let Ok(id) = self.nodes.insert(node) else {
            unreachable!("room was checked")
        };
        let id = NodeId(id);
        self.index.insert((m.space, m.kind, m.addr), id);
        self.link(id, parent);
        id
    }

    /// Clears the destination range for a new mapping; refuses if that would
    /// revoke `keep` or one of its ancestors.
    fn clear_destination(
        &mut self,
        space: S,
        kind: Kind,
        addr: u64,
        order: u8,
        keep: Option<NodeId>,
        changes: &mut impl ChangeSink<S>,
    ) -> Result<(), MapDbError> {
        if let Some(k) = keep
            && self.overlaps_ancestor(space, kind, addr, order, k)
        {
            return Err(MapDbError::Overlap);
        }
        self.clear_range(space, kind, addr, order, changes);
        Ok(())
    }

    /// Enters a root mapping (memory the kernel hands out, the first
    /// capability of a new object). Whatever overlapped it in `space` is
    /// unmapped first.
    pub fn insert_root(
        &mut self,
        space: S,
        range: Range,
        rights: u8,
        origin: u64,
        changes: &mut impl ChangeSink<S>,
    ) -> Result<NodeId, MapDbError> {
        let Range { kind, addr, order } = range;
        if order > 63 {
            return Err(MapDbError::BadOrder);
        }
        if !aligned(addr, order) {
            return Err(MapDbError::Misaligned);
        }
        if rights == 0 {
            return Err(MapDbError::NoRights);
        }
        if !self.nodes.has_room() {
            return Err(MapDbError::Full);
        }
        self.clear_destination(space, kind, addr, order, None, changes)?;
        Ok(self.add(
            Mapping {
                space,
                kind,
                addr,
                order,
                rights,
                origin,
            },
            None,
        ))
    }

    /// Maps `2^order` units at `src_addr` of `parent`'s mapping to
    /// `dst_addr` in `dst_space`, with `rights` reduced to the parent's.
    ///
    /// Mappings that overlap the destination are unmapped first (reported
    /// in `changes`), except that mapping the same thing from the same
    /// parent again only adds rights. Refused if the destination overlaps
    /// the parent or one of its ancestors.
    pub fn map(
        &mut self,
        parent: NodeId,
        req: MapReq<S>,
        changes: &mut impl ChangeSink<S>,
    ) -> Result<NodeId, MapDbError> {
        let MapReq {
            src_addr,
            order,
            dst_space,
            dst_addr,
            rights,
        } = req;
        let p = self.node(parent)?.m;
        if order > 63 {
            return Err(MapDbError::BadOrder);
        }
        if order > p.order {
            return Err(MapDbError::OutOfRange);
        }
        if !aligned(src_addr, order) || !aligned(dst_addr, order) {
            return Err(MapDbError::Misaligned);
        }
        if src_addr < p.addr || last(src_addr, order) > last(p.addr, p.order) {
            return Err(MapDbError::OutOfRange);
        }
        let rights = rights & p.rights;
        if rights == 0 {
            return Err(MapDbError::NoRights);
        }
        let origin = p.origin.wrapping_add(src_addr - p.addr);
        let m = Mapping {
            space: dst_space,
            kind: p.kind,
            addr: dst_addr,
            order,
            rights,
            origin,
        };
        // The same mapping from the same parent again: only add rights.
        if let Some(e) = self.overlapping_below(dst_space, p.kind, dst_addr, order, u64::MAX) {
            let n = self.node(e)?;
            if n.parent == Some(parent)
                && n.m.addr == dst_addr
                && n.m.order == order
                && n.m.origin == origin
            {
                if n.m.rights | rights != n.m.rights {
                    let n = self.node_mut(e);
                    n.m.rights |= rights;
                    changes.change(Change::Rights(n.m));
                }
                return Ok(e);
            }
        }
        if !self.nodes.has_room() {
            return Err(MapDbError::Full);
        }
        self.clear_destination(dst_space, p.kind, dst_addr, order, Some(parent), changes)?;
        Ok(self.add(m, Some(parent)))
    }

    /// Moves a whole node to `dst_addr` in `dst_space`, keeping its children
    /// and reducing its rights (and its subtree's) to `rights`. The source
    /// location is reported as [`Change::Unmapped`]; mappings overlapping the
    /// destination are unmapped. Refused if the destination overlaps the node
    /// or an ancestor (unless it is the same place). As after
    /// [`MapDb::map`], the kernel then installs the returned node's mapping.
    pub fn grant(
        &mut self,
        node: NodeId,
        dst_space: S,
        dst_addr: u64,
        rights: u8,
        changes: &mut impl ChangeSink<S>,
    ) -> Result<NodeId, MapDbError> {
        let old = self.node(node)?.m;
        if !aligned(dst_addr, old.order) {
            return Err(MapDbError::Misaligned);
        }
        let new_rights = old.rights & rights;
        if new_rights == 0 {
            return Err(MapDbError::NoRights);
        }
        let same_place = dst_space == old.space && dst_addr == old.addr;
        if !same_place {
            if self.overlaps_ancestor(dst_space, old.kind, dst_addr, old.order, node) {
                return Err(MapDbError::Overlap);
            }
            self.clear_range(dst_space, old.kind, dst_addr, old.order, changes);
            self.index.remove(&(old.space, old.kind, old.addr));
            changes.change(Change::Unmapped(old));
            let n = self.node_mut(node);
            n.m.space = dst_space;
            n.m.addr = dst_addr;
            self.index.insert((dst_space, old.kind, dst_addr), node);
        }
        if new_rights != old.rights {
            self.node_mut(node).m.rights = new_rights;
            if same_place {
                changes.change(Change::Rights(self.node_mut(node).m));
            }
            self.revoke(node, old.rights & !new_rights, false, changes);
        }
        Ok(node)
    }

    /// Grants the range `req` names of a node: only whole nodes move, so
    /// this succeeds only if `(req.src_addr, req.order)` is exactly the
    /// node's range ([`MapDbError::PartialGrant`] otherwise).
    pub fn grant_part(
        &mut self,
        node: NodeId,
        req: MapReq<S>,
        changes: &mut impl ChangeSink<S>,
    ) -> Result<NodeId, MapDbError> {
        let m = self.node(node)?.m;
        if m.addr != req.src_addr || m.order != req.order {
            return Err(MapDbError::PartialGrant);
        }
        self.grant(node, req.dst_space, req.dst_addr, req.rights, changes)
    }

    /// Revokes `revoke` rights from the mappings derived from `node` (and
    /// from `node` itself if `self_too`). A mapping left without rights is
    /// removed with its whole subtree.
    pub fn unmap(
        &mut self,
        node: NodeId,
        revoke: u8,
        self_too: bool,
        changes: &mut impl ChangeSink<S>,
    ) -> Result<(), MapDbError> {
        self.node(node)?;
        self.revoke(node, revoke, self_too, changes);
        Ok(())
    }

    /// Revokes `revoke` rights in `range` of `space`: for each mapping
    /// there, its derived mappings lose the rights (and the mapping itself
    /// if `self_too`). A mapping larger than the range loses only the
    /// children derived from the range; with `self_too` it is revoked as a
    /// whole (a mapping is never split).
    pub fn unmap_range(
        &mut self,
        space: S,
        range: Range,
        revoke: u8,
        self_too: bool,
        changes: &mut impl ChangeSink<S>,
    ) -> Result<(), MapDbError> {
        let Range { kind, addr, order } = range;
        if order > 63 {
            return Err(MapDbError::BadOrder);
        }
        let addr = l4_abi::fpage::align_down(addr, order);
        let end = last(addr, order);
        self.each_overlapping(space, kind, addr, order, |db, id, m| {
            let inside = m.addr >= addr && last(m.addr, m.order) <= end;
            if inside || self_too {
                db.revoke(id, revoke, self_too, changes);
                return core::ops::ControlFlow::Continue(());
            }
            // Only what was derived from the range loses the rights.
            let mut child = db.nodes.get(id.0).and_then(|n| n.first_child);
            while let Some(c) = child {
                let Some(cn) = db.nodes.get(c.0) else { break };
                let (cm, next) = (cn.m, cn.next);
                let src = m.addr.wrapping_add(cm.origin.wrapping_sub(m.origin));
                if src <= end && last(src, cm.order) >= addr {
                    db.revoke(c, revoke, true, changes);
                }
                child = next;
            }
            core::ops::ControlFlow::Continue(())
        });
        Ok(())
    }

    /// Removes every mapping of `space` (a task is deleted) and, with them,
    /// everything derived from them in other spaces.
    pub fn remove_space(&mut self, space: S, changes: &mut impl ChangeSink<S>) {
        while let Some((_, &id)) = self
            .index
            .range((space, Kind::Mem, 0)..=(space, Kind::Cap, u64::MAX))
            .next()
        {
            self.revoke(id, ALL_RIGHTS, true, changes);
        }
    }

    /// The revocation walk over `start`'s subtree (without `start` unless
    /// `self_too`), in preorder along the links, without a stack. Pruning:
    /// a mapping that keeps all its rights has none of `revoke`, so
    /// neither have its descendants.
    fn revoke(
        &mut self,
        start: NodeId,
        revoke: u8,
        self_too: bool,
        changes: &mut impl ChangeSink<S>,
    ) {
        let mut cur = if self_too {
            Some(start)
        } else {
            self.nodes.get(start.0).and_then(|n| n.first_child)
        };
        while let Some(id) = cur {
            let Some(n) = self.nodes.get(id.0) else {
                return;
            };
            let new = n.m.rights & !revoke;
            if new == 0 {
                let after = self.next_outside(id, start);
                self.remove_subtree(id, changes);
                cur = after;
            } else if new != n.m.rights {
                let n = self.node_mut(id);
                n.m.rights = new;
                let (m, first) = (n.m, n.first_child);
                changes.change(Change::Rights(m));
                cur = first.or_else(|| self.next_outside(id, start));
            } else {
                cur = self.next_outside(id, start);
            }
        }
    }

    /// The node after `id`'s subtree in preorder, within `boundary`'s
    /// subtree (`None` when that is done).
    fn next_outside(&self, mut id: NodeId, boundary: NodeId) -> Option<NodeId> {
        loop {
            if id == boundary {
                return None;
            }
            let n = self.nodes.get(id.0)?;
            if let Some(next) = n.next {
                return Some(next);
            }
            id = n.parent?;
        }
    }

    /// Removes `root` and everything below it, leaves first, without a
    /// stack.
    fn remove_subtree(&mut self, root: NodeId, changes: &mut impl ChangeSink<S>) {
        self.unlink(root);
        let mut cur = root;
        loop {
            if let Some(c) = self.nodes.get(cur.0).and_then(|n| n.first_child) {
                cur = c;
                continue;
            }
            let parent = self.nodes.get(cur.0).and_then(|n| n.parent);
            if cur != root {
                self.unlink(cur);
            }
            if let Some(n) = self.nodes.remove(cur.0) {
                self.index.remove(&(n.m.space, n.m.kind, n.m.addr));
                changes.change(Change::Unmapped(n.m));
            }
            match parent {
                Some(p) if cur != root => cur = p,
                _ => return,
            }
        }
    }
}

impl<S: Copy + Ord> Default for MapDb<S> {
    fn default() -> MapDb<S> {
        MapDb::new()
    }
}

/// Iterator over a node's children.
pub struct Children<'a, S> {
    db: &'a MapDb<S>,
    next: Option<NodeId>,
}

impl<S> Iterator for Children<'_, S> {
    type Item = NodeId;

    fn next(&mut self) -> Option<NodeId> {
        let id = self.next?;
        self.next = self.db.nodes.get(id.0).and_then(|n| n.next);
        Some(id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;

    const R: u8 = 4;
    const W: u8 = 2;
    const X: u8 = 1;
    const RW: u8 = 6;
    const RWX: u8 = 7;
    const PAGE: u8 = 12;

    /// Memory: `1 << order` bytes at `addr`.
    fn mem(addr: u64, order: u8) -> Range {
        Range::new(Kind::Mem, addr, order)
    }

    fn unmapped<S: Copy>(c: &[Change<S>]) -> Vec<(S, u64)> {
        let mut v: Vec<_> = c
            .iter()
            .filter_map(|c| {
                if let Change::Unmapped(m) = c {
                    Some((m.space, m.addr))
                } else {
                    None
                }
            })
            .collect();
        v.sort_by_key(|x| x.1);
        v
    }

    /// sigma0-like root in space 0; task 1 maps to 2, 2 maps to 3.
    fn chain() -> (MapDb<u32>, [NodeId; 3]) {
        let mut db = MapDb::new();
        let mut ch = Vec::new();
        let a = db
            .insert_root(1, mem(0x10_0000, PAGE), RWX, 0x8000_0000, &mut ch)
            .unwrap();
        let b = db
            .map(a, MapReq::new(0x10_0000, PAGE, 2, 0x20_0000, RW), &mut ch)
            .unwrap();
        let c = db
            .map(b, MapReq::new(0x20_0000, PAGE, 3, 0x30_0000, RWX), &mut ch)
            .unwrap();
        assert!(ch.is_empty());
        (db, [a, b, c])
    }

    #[test]
    fn chain_of_three_rights_shrink() {
        let (db, [a, b, c]) = chain();
        assert_eq!(db.get(b).unwrap().rights, RW);
        assert_eq!(db.get(c).unwrap().rights, RW, "X was not in the parent");
        assert_eq!(db.get(c).unwrap().origin, 0x8000_0000);
        assert_eq!(db.parent(c), Some(b));
        assert_eq!(db.parent(b), Some(a));
        assert_eq!(db.parent(a), None);
        assert_eq!(db.children(a).collect::<Vec<_>>(), vec![b]);
        assert_eq!(db.lookup(3, Kind::Mem, 0x30_0fff), Some(c));
        assert_eq!(db.lookup(3, Kind::Mem, 0x30_1000), None);
        assert_eq!(db.lookup(3, Kind::Cap, 0x30_0000), None);
        assert_eq!(db.len(), 3);
    }

    #[test]
    fn revocation_is_recursive() {
        let (mut db, [a, b, c]) = chain();
        let mut ch = Vec::new();
        db.unmap(a, ALL_RIGHTS, false, &mut ch).unwrap();
        assert_eq!(unmapped(&ch), vec![(2, 0x20_0000), (3, 0x30_0000)]);
        assert!(db.get(a).is_some());
        assert!(db.get(b).is_none() && db.get(c).is_none());
        assert_eq!(db.lookup(2, Kind::Mem, 0x20_0000), None);
        assert_eq!(db.children(a).count(), 0);
        assert_eq!(
            db.unmap(b, ALL_RIGHTS, true, &mut ch),
            Err(MapDbError::StaleNode)
        );
    }

    #[test]
    fn unmap_self_too_and_partial_rights() {
        let (mut db, [a, b, c]) = chain();
        let mut ch = Vec::new();
        // Revoke only W from everything below a: read-only copies remain.
        db.unmap(a, W, false, &mut ch).unwrap();
        assert_eq!(ch.len(), 2);
        assert!(
            ch.iter()
                .all(|c| matches!(c, Change::Rights(m) if m.rights == R))
        );
        assert_eq!(db.get(c).unwrap().rights, R);
        // Revoking W again changes nothing (pruned).
        ch.clear();
        db.unmap(a, W, false, &mut ch).unwrap();
        assert!(ch.is_empty());
        // b revokes itself: b and c go, a stays.
        db.unmap(b, ALL_RIGHTS, true, &mut ch).unwrap();
        assert_eq!(unmapped(&ch), vec![(2, 0x20_0000), (3, 0x30_0000)]);
        assert_eq!(db.len(), 1);
        assert!(db.get(a).is_some());
    }

    #[test]
    fn grant_moves_the_node_and_keeps_children() {
        let (mut db, [a, b, c]) = chain();
        let mut ch = Vec::new();
        // Task 2 grants its page to task 4: 2 loses it, 3 keeps its child mapping.
        let g = db.grant(b, 4, 0x40_0000, ALL_RIGHTS, &mut ch).unwrap();
        assert_eq!(g, b);
        assert_eq!(unmapped(&ch), vec![(2, 0x20_0000)]);
        assert_eq!(db.lookup(2, Kind::Mem, 0x20_0000), None);
        assert_eq!(db.lookup(4, Kind::Mem, 0x40_0000), Some(b));
        assert_eq!(db.parent(c), Some(b));
        assert_eq!(db.parent(b), Some(a));
        // Revoking from the root still reaches the moved subtree.
        ch.clear();
        db.unmap(a, ALL_RIGHTS, false, &mut ch).unwrap();
        assert_eq!(unmapped(&ch), vec![(3, 0x30_0000), (4, 0x40_0000)]);
    }

    #[test]
    fn grant_with_fewer_rights_downgrades_the_subtree() {
        let (mut db, [_, b, c]) = chain();
        let mut ch = Vec::new();
        db.grant(b, 4, 0x40_0000, R, &mut ch).unwrap();
        assert_eq!(db.get(b).unwrap().rights, R);
        assert_eq!(db.get(c).unwrap().rights, R);
        assert!(ch.contains(&Change::Rights(db.get(c).unwrap())));
        // In place, rights only.
        ch.clear();
        assert_eq!(
            db.grant(b, 4, 0x40_0000, 0, &mut ch),
            Err(MapDbError::NoRights)
        );
        db.grant(b, 4, 0x40_0000, R, &mut ch).unwrap();
        assert!(ch.is_empty());
    }

    #[test]
    fn grant_refusals() {
        let (mut db, [a, b, _]) = chain();
        let mut ch = Vec::new();
        assert_eq!(
            db.grant(b, 1, 0x10_0000, ALL_RIGHTS, &mut ch),
            Err(MapDbError::Overlap),
            "onto its parent"
        );
        assert_eq!(
            db.grant(b, 4, 0x40_0800, ALL_RIGHTS, &mut ch),
            Err(MapDbError::Misaligned)
        );
        assert_eq!(
            db.grant_part(a, MapReq::new(0x10_0000, 11, 4, 0, ALL_RIGHTS), &mut ch),
            Err(MapDbError::PartialGrant)
        );
        assert!(ch.is_empty());
    }

    #[test]
    fn map_refusals() {
        let (mut db, [a, b, c]) = chain();
        let mut ch = Vec::new();
        use MapDbError as E;
        let cases = [
            // Bigger than the parent, outside it, misaligned.
            (a, MapReq::new(0x10_0000, 13, 5, 0, RW), E::OutOfRange),
            (a, MapReq::new(0x11_0000, PAGE, 5, 0, RW), E::OutOfRange),
            (a, MapReq::new(0x10_0000, PAGE, 5, 0x123, RW), E::Misaligned),
            // c has no X.
            (c, MapReq::new(0x30_0000, PAGE, 5, 0, X), E::NoRights),
            (a, MapReq::new(0x10_0000, 64, 5, 0, RW), E::BadOrder),
            // Mapping over one's own source (or an ancestor) is refused.
            (b, MapReq::new(0x20_0000, PAGE, 2, 0x20_0000, R), E::Overlap),
            (c, MapReq::new(0x30_0000, PAGE, 1, 0x10_0000, R), E::Overlap),
        ];
        for (i, (from, req, err)) in cases.into_iter().enumerate() {
            assert_eq!(db.map(from, req, &mut ch), Err(err), "case {i}");
        }
        assert!(ch.is_empty());
        let mut stale = MapDb::<u32>::new();
        let s = stale.insert_root(1, mem(0, PAGE), R, 0, &mut ch).unwrap();
        stale.unmap(s, ALL_RIGHTS, true, &mut ch).unwrap();
        assert_eq!(
            stale.map(s, MapReq::new(0, PAGE, 2, 0, R), &mut ch),
            Err(MapDbError::StaleNode)
        );
    }

    #[test]
    fn remap_same_parent_adds_rights_other_replaces() {
        let (mut db, [a, b, _]) = chain();
        let mut ch = Vec::new();
        // Mapping the same page again from the same parent upgrades in place.
        let b2 = db
            .map(a, MapReq::new(0x10_0000, PAGE, 2, 0x20_0000, RWX), &mut ch)
            .unwrap();
        assert_eq!(b2, b);
        assert_eq!(db.get(b).unwrap().rights, RWX);
        assert_eq!(ch, vec![Change::Rights(db.get(b).unwrap())]);
        // A different page over it replaces it (and its subtree).
        ch.clear();
        let other = db
            .insert_root(1, mem(0x50_0000, PAGE), RW, 0x9000_0000, &mut ch)
            .unwrap();
        let n = db
            .map(
                other,
                MapReq::new(0x50_0000, PAGE, 2, 0x20_0000, RW),
                &mut ch,
            )
            .unwrap();
        assert_eq!(unmapped(&ch), vec![(2, 0x20_0000), (3, 0x30_0000)]);
        assert_eq!(db.get(n).unwrap().origin, 0x9000_0000);
    }

    #[test]
    fn superpages_and_ranges() {
        let mut db = MapDb::new();
        let mut ch = Vec::new();
        let big = db
            .insert_root(1u8, mem(0x20_0000, 21), RW, 0x4020_0000, &mut ch)
            .unwrap();
        let p1 = db
            .map(big, MapReq::new(0x20_1000, PAGE, 2, 0x1000, RW), &mut ch)
            .unwrap();
        let p2 = db
            .map(big, MapReq::new(0x3f_f000, PAGE, 2, 0x2000, RW), &mut ch)
            .unwrap();
        assert_eq!(db.get(p1).unwrap().origin, 0x4020_1000);
        assert_eq!(db.get(p2).unwrap().origin, 0x403f_f000);
        // Unmapping one 4K page of the superpage from the children only.
        db.unmap_range(1, mem(0x20_1000, PAGE), ALL_RIGHTS, false, &mut ch)
            .unwrap();
        assert_eq!(unmapped(&ch), vec![(2, 0x1000)]);
        assert!(db.get(p2).is_some() && db.get(big).is_some());
        // With self_too the superpage goes as a whole.
        ch.clear();
        db.unmap_range(1, mem(0x20_1000, PAGE), ALL_RIGHTS, true, &mut ch)
            .unwrap();
        assert_eq!(unmapped(&ch), vec![(2, 0x2000), (1, 0x20_0000)]);
        assert!(db.is_empty());
        assert_eq!(
            db.unmap_range(1, mem(0, 64), ALL_RIGHTS, true, &mut ch),
            Err(MapDbError::BadOrder)
        );
    }

    #[test]
    fn large_records_where_the_source_allows() {
        const BLOCK: u8 = 21;
        let mut db = MapDb::new();
        let mut ch = Vec::new();
        // The root holds 1 GiB in one record; a VMM got 4 MiB + 8 KiB of
        // it in 2 MiB records and pages, and maps it into a guest space.
        let root = db
            .insert_root(1u8, mem(0, 30), RWX, 0x4000_0000, &mut ch)
            .unwrap();
        assert_eq!(
            db.chunk(1, Kind::Mem, 0x20_0000, 0x60_0000, 1 << 22, 12..=BLOCK),
            Some((root, 21))
        );
        // Destination or size do not allow a block: pages.
        assert_eq!(
            db.chunk(1, Kind::Mem, 0x20_0000, 0x60_1000, 1 << 22, 12..=BLOCK),
            Some((root, 12))
        );
        assert_eq!(
            db.chunk(1, Kind::Mem, 0x20_0000, 0x60_0000, 0x1f_f000, 12..=BLOCK),
            Some((root, 20))
        );
        assert_eq!(
            db.chunk(1, Kind::Mem, 0x20_0000, 0x60_0000, 0x800, 12..=BLOCK),
            None
        );
        let mut vmm = Vec::new();
        let mut addr = 0x20_0000;
        let mut left = (4 << 20) + 0x2000;
        while left > 0 {
            let (n, o) = db
                .chunk(1, Kind::Mem, addr, 0x100_0000 + addr, left, 12..=BLOCK)
                .unwrap();
            vmm.push(
                db.map(n, MapReq::new(addr, o, 2, 0x100_0000 + addr, RW), &mut ch)
                    .unwrap(),
            );
            addr += 1 << o;
            left -= 1 << o;
        }
        assert_eq!(vmm.len(), 3, "two blocks and 8 KiB");
        // The guest space from the VMM's records: 2 MiB where one VMM
        // record covers it.
        let (n, o) = db
            .chunk(2, Kind::Mem, 0x120_0000, 0x4000_0000, 1 << 22, 12..=BLOCK)
            .unwrap();
        assert_eq!((n, o), (vmm[0], 21));
        let g1 = db
            .map(n, MapReq::new(0x120_0000, o, 3, 0x4000_0000, RW), &mut ch)
            .unwrap();
        let (n, o) = db
            .chunk(2, Kind::Mem, 0x160_0000, 0x4040_0000, 0x2000, 12..=BLOCK)
            .unwrap();
        assert_eq!((n, o), (vmm[2], 13), "a small record cannot give a block");
        let g2 = db
            .map(n, MapReq::new(0x160_0000, o, 3, 0x4040_0000, RW), &mut ch)
            .unwrap();
        // Unmapping one page of the VMM's block from the others revokes
        // the guest's whole block and nothing else.
        db.unmap_range(2, mem(0x120_3000, PAGE), ALL_RIGHTS, false, &mut ch)
            .unwrap();
        assert_eq!(unmapped(&ch), vec![(3, 0x4000_0000)]);
        assert!(db.get(g1).is_none() && db.get(g2).is_some());
        assert!(db.get(vmm[0]).is_some());
        // Revoking in the root's space reaches the guest through the VMM.
        ch.clear();
        db.unmap_range(1, mem(0x40_0000, 22), ALL_RIGHTS, false, &mut ch)
            .unwrap();
        assert_eq!(
            unmapped(&ch),
            vec![(2, 0x140_0000), (2, 0x160_0000), (3, 0x4040_0000)]
        );
        assert_eq!(db.len(), 2, "the root and the VMM's first block");
    }

    #[test]
    fn range_covering_several_mappings() {
        let (mut db, [a, ..]) = chain();
        let mut ch = Vec::new();
        db.map(a, MapReq::new(0x10_0000, PAGE, 2, 0x20_1000, R), &mut ch)
            .unwrap();
        db.unmap_range(2, mem(0x20_0000, 16), ALL_RIGHTS, true, &mut ch)
            .unwrap();
        assert_eq!(
            unmapped(&ch),
            vec![(2, 0x20_0000), (2, 0x20_1000), (3, 0x30_0000)]
        );
        assert_eq!(db.len(), 1);
    }

    #[test]
    fn capabilities_and_space_removal() {
        let mut db = MapDb::new();
        let mut ch = Vec::new();
        let obj = 0xabcd;
        let root = db
            .insert_root(1u32, Range::new(Kind::Cap, 5, 0), 0x0f, obj, &mut ch)
            .unwrap();
        let c2 = db
            .map(root, MapReq::new(5, 0, 2, 17, 0x05), &mut ch)
            .unwrap();
        let c3 = db.map(c2, MapReq::new(17, 0, 3, 1, 0x07), &mut ch).unwrap();
        assert_eq!(db.get(c3).unwrap().rights, 0x05);
        assert_eq!(db.get(c3).unwrap().origin, obj);
        // A memory mapping in the same space at the same number is distinct.
        db.insert_root(2, mem(0, PAGE), R, 0, &mut ch).unwrap();
        // Task 2 dies: its mappings and what was derived from them go.
        db.remove_space(2, &mut ch);
        let gone: Vec<_> = ch
            .iter()
            .filter_map(|c| {
                if let Change::Unmapped(m) = c {
                    Some((m.space, m.kind, m.addr))
                } else {
                    None
                }
            })
            .collect();
        assert_eq!(gone.len(), 3);
        assert!(
            gone.contains(&(3, Kind::Cap, 1))
                && gone.contains(&(2, Kind::Cap, 17))
                && gone.contains(&(2, Kind::Mem, 0))
        );
        assert_eq!(db.mappings(1).count(), 1);
        assert_eq!(db.mappings(2).count(), 0);
        assert_eq!(db.children(root).count(), 0);
    }

    #[test]
    fn sibling_links_survive_removal() {
        let mut db = MapDb::new();
        let mut ch = Vec::new();
        let r = db
            .insert_root(0u32, Range::new(Kind::Cap, 1, 0), 0xf, 1, &mut ch)
            .unwrap();
        let kids: Vec<_> = (1..=4)
            .map(|s| db.map(r, MapReq::new(1, 0, s, 1, 0xf), &mut ch).unwrap())
            .collect();
        // Remove a middle, the first and the last child.
        db.unmap(kids[2], ALL_RIGHTS, true, &mut ch).unwrap();
        db.unmap(kids[3], ALL_RIGHTS, true, &mut ch).unwrap();
        db.unmap(kids[0], ALL_RIGHTS, true, &mut ch).unwrap();
        assert_eq!(db.children(r).collect::<Vec<_>>(), vec![kids[1]]);
        db.unmap(r, ALL_RIGHTS, false, &mut ch).unwrap();
        assert_eq!(db.len(), 1);
    }

    #[test]
    fn full_database() {
        let mut db = MapDb::with_limit(2);
        let mut ch = Vec::new();
        let r = db.insert_root(0u32, mem(0, PAGE), R, 0, &mut ch).unwrap();
        db.map(r, MapReq::new(0, PAGE, 1, 0, R), &mut ch).unwrap();
        assert_eq!(
            db.map(r, MapReq::new(0, PAGE, 2, 0, R), &mut ch),
            Err(MapDbError::Full)
        );
        assert_eq!(
            db.insert_root(0, mem(0x1000, PAGE), R, 0, &mut ch),
            Err(MapDbError::Full)
        );
    }

    #[test]
    fn deep_chains_do_not_recurse() {
        let mut db = MapDb::new();
        let mut ch = Vec::new();
        let mut n = db
            .insert_root(0u32, Range::new(Kind::Cap, 1, 0), 0xf, 7, &mut ch)
            .unwrap();
        let root = n;
        for s in 1..20_000u32 {
            n = db.map(n, MapReq::new(1, 0, s, 1, 0xf), &mut ch).unwrap();
        }
        db.unmap(root, ALL_RIGHTS, false, &mut ch).unwrap();
        assert_eq!(ch.len(), 19_999);
        assert_eq!(db.len(), 1);
    }

    /// Counts changes without keeping them (as the kernel applies them).
    struct Count(usize, usize);

    impl ChangeSink<u32> for Count {
        fn change(&mut self, c: Change<u32>) {
            match c {
                Change::Unmapped(_) => self.0 += 1,
                Change::Rights(_) => self.1 += 1,
            }
        }
    }

    #[test]
    fn wide_trees_revoke_in_place() {
        // One page mapped 30,000 times into space 1, each copy on into
        // space 2: revoking rights, then deleting space 1, then space 0.
        let mut db = MapDb::new();
        let mut c = Count(0, 0);
        let root = db
            .insert_root(0u32, mem(0, PAGE), 0b111, 0, &mut c)
            .unwrap();
        for i in 0..30_000u64 {
            let a = db
                .map(root, MapReq::new(0, PAGE, 1, i * 0x1000, 0b111), &mut c)
                .unwrap();
            db.map(
                a,
                MapReq::new(i * 0x1000, PAGE, 2, i * 0x1000, 0b111),
                &mut c,
            )
            .unwrap();
        }
        assert_eq!((c.0, c.1, db.len()), (0, 0, 60_001));
        db.unmap(root, 0b010, false, &mut c).unwrap();
        assert_eq!((c.0, c.1), (0, 60_000), "every copy lost the right");
        // Part of space 1 (the first 16 pages) with what derives from it.
        db.unmap_range(1, mem(0, 16), ALL_RIGHTS, true, &mut c)
            .unwrap();
        assert_eq!((c.0, db.len()), (32, 60_001 - 32));
        db.remove_space(1, &mut c);
        assert_eq!((c.0, db.len()), (60_000, 1));
        assert_eq!(db.mappings(2).count(), 0);
        db.remove_space(0, &mut c);
        assert!(db.is_empty());
    }
}
