//! Reading a flattened device tree blob strictly, without allocating.
//!
//! [`Dtb::new`] checks the whole blob once: the header, that every block
//! lies inside it, the memory reservations up to their end, and every
//! token of the structure block (node names terminated, each property's
//! value inside the block and its name inside the strings block, nodes
//! nested at most [`MAX_DEPTH`] deep, one root, `FDT_END` after it). A
//! damaged or hostile blob is an [`Error`] that says what is wrong and
//! where. After that, walking the tree ([`Node`], [`Property`]) cannot
//! fail, and every read is still bounds-checked, so nothing here panics
//! whatever the bytes. The boot stage and the kernel read the firmware's
//! tree with it, uvmm the trees it is given for guests.
//!
//! What the crate `fdt` offers for the same job panics on many damaged
//! blobs (uvmm's tests found 11,000 panics in 20,000 randomly damaged
//! ones) and on good ones without a `/chosen`, `/memory` or `/cpus`.

#![no_std]
// One function reads a blob at an address (`Dtb::from_ptr`); everything
// else is safe code.
#![deny(unsafe_code)]

use core::fmt;

/// `FDT_MAGIC`.
pub const MAGIC: u32 = 0xd00d_feed;
/// Structure block tokens.
pub const BEGIN_NODE: u32 = 1;
pub const END_NODE: u32 = 2;
pub const PROP: u32 = 3;
pub const NOP: u32 = 4;
pub const END: u32 = 9;
/// Header size (version 17).
pub const HEADER_LEN: usize = 40;
/// Nodes nested deeper than this are refused (readers may walk the tree
/// recursively).
pub const MAX_DEPTH: usize = 64;

/// What is wrong with a blob. Offsets are bytes from the blob's start,
/// or from the structure block's start where they say "structure offset".
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Error {
    /// Fewer bytes than a header.
    Short {
        len: usize,
    },
    Magic(u32),
    /// The header's total size is below a header or beyond the bytes.
    TotalSize {
        total: usize,
        len: usize,
    },
    Version {
        version: u32,
        last_compatible: u32,
    },
    /// A block that does not lie inside the total size.
    Block {
        name: &'static str,
        off: usize,
        len: usize,
        total: usize,
    },
    Misaligned {
        off_struct: usize,
        off_rsv: usize,
    },
    /// The memory reservations have no terminating entry.
    Reservations {
        off: usize,
    },
    /// The structure block ends before `FDT_END`.
    NoEnd {
        at: usize,
    },
    SecondRoot {
        at: usize,
    },
    TooDeep {
        at: usize,
    },
    /// A node name unterminated or not UTF-8.
    NodeName {
        at: usize,
    },
    /// `FDT_END_NODE` with no node open.
    StrayEndNode {
        at: usize,
    },
    /// A property whose header is cut short.
    PropertyCut {
        at: usize,
    },
    /// A property outside any node.
    PropertyOutside {
        at: usize,
    },
    /// A property value beyond the structure block.
    PropertyLength {
        at: usize,
        len: u32,
    },
    /// A property name offset outside the strings block, unterminated or
    /// not UTF-8.
    PropertyName {
        at: usize,
        name_off: u32,
    },
    /// `FDT_END` with nodes still open.
    EndInsideNode {
        at: usize,
    },
    NoRoot,
    Token {
        token: u32,
        at: usize,
    },
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Error::Short { len } => write!(f, "{len} bytes, shorter than a header"),
            Error::Magic(m) => write!(f, "magic {m:#x}, not {MAGIC:#x}"),
            Error::TotalSize { total, len } => {
                write!(f, "total size {total} outside the blob's {len} bytes")
            }
            Error::Version {
                version,
                last_compatible,
            } => write!(
                f,
                "version {version} (compatible with {last_compatible}), not 16 or 17"
            ),
            Error::Block {
                name,
                off,
                len,
                total,
            } => write!(
                f,
                "{name} block at {off} of {len} bytes beyond the total size {total}"
            ),
            Error::Misaligned {
                off_struct,
                off_rsv,
            } => write!(
                f,
                "structure block at {off_struct} or reservations at {off_rsv} misaligned"
            ),
            Error::Reservations { off } => write!(
                f,
                "memory reservations from {off} run past the blob without their end"
            ),
            Error::NoEnd { at } => {
                write!(f, "the structure block ends at {at} without FDT_END")
            }
            Error::SecondRoot { at } => {
                write!(f, "a second root node at structure offset {at}")
            }
            Error::TooDeep { at } => write!(
                f,
                "nodes nested deeper than {MAX_DEPTH} at structure offset {at}"
            ),
            Error::NodeName { at } => write!(
                f,
                "node name at structure offset {at} unterminated or not UTF-8"
            ),
            Error::StrayEndNode { at } => {
                write!(f, "FDT_END_NODE outside a node at structure offset {at}")
            }
            Error::PropertyCut { at } => {
                write!(f, "property at structure offset {at} cut short")
            }
            Error::PropertyOutside { at } => {
                write!(f, "property at structure offset {at} outside a node")
            }
            Error::PropertyLength { at, len } => write!(
                f,
                "property at structure offset {at} of {len} bytes runs past the structure block"
            ),
            Error::PropertyName { at, name_off } => write!(
                f,
                "property at structure offset {at}: name offset {name_off} outside the strings block, unterminated or not UTF-8"
            ),
            Error::EndInsideNode { at } => {
                write!(f, "FDT_END at structure offset {at} inside a node")
            }
            Error::NoRoot => write!(f, "no root node"),
            Error::Token { token, at } => {
                write!(f, "unknown token {token:#x} at structure offset {at}")
            }
        }
    }
}

/// The total size a blob's header claims, from its first 8 bytes, if they
/// begin with the magic number: for a reader that has only an address
/// and must decide how many bytes to look at before [`Dtb::new`].
pub fn claimed_size(head: &[u8]) -> Option<usize> {
    (be32(head, 0)? == MAGIC).then_some(be32(head, 4)? as usize)
}

/// The largest blob [`Dtb::from_ptr`] reads (Linux's limit on arm64).
pub const MAX_SIZE: usize = 2 << 20;

/// A checked blob.
#[derive(Clone, Copy, Debug)]
pub struct Dtb<'a> {
    blob: &'a [u8],
    structs: &'a [u8],
    strings: &'a [u8],
    off_rsv: usize,
}

impl<'a> Dtb<'a> {
    /// Checks `blob` (see the crate's description). Bytes after the
    /// header's total size are ignored.
    pub fn new(blob: &'a [u8]) -> Result<Dtb<'a>, Error> {
        if blob.len() < HEADER_LEN {
            return Err(Error::Short { len: blob.len() });
        }
        let field = |i: usize| be32(blob, 4 * i).unwrap_or(0);
        if field(0) != MAGIC {
            return Err(Error::Magic(field(0)));
        }
        let total = field(1) as usize;
        if total > blob.len() || total < HEADER_LEN {
            return Err(Error::TotalSize {
                total,
                len: blob.len(),
            });
        }
        let blob = blob.get(..total).unwrap_or(blob);
        let (version, last_compatible) = (field(5), field(6));
        if version < 16 || last_compatible > 17 {
            return Err(Error::Version {
                version,
                last_compatible,
            });
        }
        let (off_struct, off_strings, off_rsv) =
            (field(2) as usize, field(3) as usize, field(4) as usize);
        let strings_len = field(8) as usize;
        // Version 16 has no structure block size: up to the end.
        let struct_len = if version >= 17 {
            field(9) as usize
        } else {
            total.saturating_sub(off_struct)
        };
        let block = |name: &'static str, off: usize, len: usize| {
            off.checked_add(len)
                .and_then(|end| blob.get(off..end))
                .ok_or(Error::Block {
                    name,
                    off,
                    len,
                    total,
                })
        };
        let structs = block("structure", off_struct, struct_len)?;
        let strings = block("strings", off_strings, strings_len)?;
        if off_struct % 4 != 0 || off_rsv % 8 != 0 {
            return Err(Error::Misaligned {
                off_struct,
                off_rsv,
            });
        }
        let dtb = Dtb {
            blob,
            structs,
            strings,
            off_rsv,
        };
        dtb.check_reservations()?;
        dtb.check_structure()?;
        Ok(dtb)
    }

    /// Checks the blob at `p` (firmware's, given by address): its first 8
    /// bytes, then as many as they claim, at most [`MAX_SIZE`].
    ///
    /// # Safety
    /// `p` is readable for 8 bytes and, when those begin with the magic
    /// number, for the total size they claim up to [`MAX_SIZE`]; nothing
    /// writes those bytes for as long as the result is used.
    #[allow(unsafe_code)]
    pub unsafe fn from_ptr(p: *const u8) -> Result<Dtb<'static>, Error> {
        // SAFETY: 8 readable bytes (the caller's contract).
        let head = unsafe { core::slice::from_raw_parts(p, 8) };
        let total = claimed_size(head).ok_or(Error::Magic(be32(head, 0).unwrap_or(0)))?;
        if total > MAX_SIZE {
            return Err(Error::TotalSize {
                total,
                len: MAX_SIZE,
            });
        }
        // SAFETY: the claimed size, readable and unchanging (the caller's
        // contract).
        Dtb::new(unsafe { core::slice::from_raw_parts(p, total) })
    }

    fn check_reservations(&self) -> Result<(), Error> {
        let mut at = self.off_rsv;
        loop {
            match (be64(self.blob, at), be64(self.blob, at.saturating_add(8))) {
                (Some(0), Some(0)) => return Ok(()),
                (Some(_), Some(_)) => at += 16,
                _ => return Err(Error::Reservations { off: self.off_rsv }),
            }
        }
    }

    fn check_structure(&self) -> Result<(), Error> {
        let s = self.structs;
        let mut depth = 0usize;
        let mut had_root = false;
        let mut at = 0;
        loop {
            let (token, next) = token(s, at)?;
            match token {
                Token::BeginNode => {
                    if depth == 0 && had_root {
                        return Err(Error::SecondRoot { at });
                    }
                    if depth == MAX_DEPTH {
                        return Err(Error::TooDeep { at });
                    }
                    depth += 1;
                    had_root = true;
                }
                Token::EndNode => {
                    if depth == 0 {
                        return Err(Error::StrayEndNode { at });
                    }
                    depth -= 1;
                }
                Token::Prop { name_off, .. } => {
                    if depth == 0 {
                        return Err(Error::PropertyOutside { at });
                    }
                    if cstr(self.strings, name_off as usize).is_none() {
                        return Err(Error::PropertyName { at, name_off });
                    }
                }
                Token::Nop => {}
                Token::End => {
                    if depth != 0 {
                        return Err(Error::EndInsideNode { at });
                    }
                    return if had_root { Ok(()) } else { Err(Error::NoRoot) };
                }
            }
            at = next;
        }
    }

    /// The header's total size in bytes.
    pub fn total_size(&self) -> usize {
        self.blob.len()
    }

    /// The memory reservations (address, size).
    pub fn reservations(&self) -> impl Iterator<Item = (u64, u64)> + use<'a> {
        let blob = self.blob;
        let mut at = self.off_rsv;
        core::iter::from_fn(move || {
            let entry = (be64(blob, at)?, be64(blob, at.checked_add(8)?)?);
            at += 16;
            (entry != (0, 0)).then_some(entry)
        })
    }

    /// The root node.
    pub fn root(&self) -> Node<'a> {
        // Checked: the first token that is not a NOP begins the root.
        Node {
            dtb: *self,
            at: past_nops(self.structs, 0),
            cells: Cells::default(),
        }
    }

    /// Every node, in the blob's order (a node before its children).
    pub fn nodes(&self) -> impl Iterator<Item = Node<'a>> + use<'a> {
        // Depth-first, with the cursor over each open level's children (the
        // check bounds the levels by MAX_DEPTH).
        let mut siblings: [Option<Children<'a>>; MAX_DEPTH + 1] = [None; MAX_DEPTH + 1];
        let mut depth = 0;
        let mut next = Some(self.root());
        core::iter::from_fn(move || {
            if let Some(n) = next.take() {
                if depth <= MAX_DEPTH {
                    siblings[depth] = Some(n.children());
                    depth += 1;
                }
                return Some(n);
            }
            while depth > 0 {
                if let Some(n) = siblings[depth - 1].as_mut().and_then(|c| c.next()) {
                    if depth <= MAX_DEPTH {
                        siblings[depth] = Some(n.children());
                        depth += 1;
                    }
                    return Some(n);
                }
                depth -= 1;
            }
            None
        })
    }

    /// The node at `path`: absolute (`/cpus/cpu@0`), a component without
    /// a unit address also matching a node that has one (`/pl011` finds
    /// `pl011@9000000`), or beginning with an alias from `/aliases`
    /// (`serial0`, `serial0/child`).
    pub fn find_node(&self, path: &str) -> Option<Node<'a>> {
        let (mut node, rest) = match path.strip_prefix('/') {
            Some(rest) => (self.root(), rest),
            None => {
                let (alias, rest) = path.split_once('/').unwrap_or((path, ""));
                let target = self.find_node("/aliases")?.property(alias)?.as_str()?;
                if !target.starts_with('/') {
                    return None;
                }
                (self.find_node(target)?, rest)
            }
        };
        for part in rest.split('/').filter(|p| !p.is_empty()) {
            node = node.children().find(|c| c.matches(part))?;
        }
        Some(node)
    }

    /// The first node, in the blob's order, compatible with one of
    /// `compatible`.
    pub fn find_compatible(&self, compatible: &[&str]) -> Option<Node<'a>> {
        self.nodes().find(|n| n.is_compatible(compatible))
    }

    /// The console `/chosen`'s `stdout-path` names (options after `:`
    /// dropped), if there is one.
    pub fn stdout(&self) -> Option<Node<'a>> {
        let path = self
            .find_node("/chosen")?
            .property("stdout-path")?
            .as_str()?;
        self.find_node(path.split(':').next()?)
    }

    /// The RAM ranges (address, size) of the root's children whose
    /// `device_type` is "memory".
    pub fn memory(&self) -> impl Iterator<Item = (u64, u64)> + use<'a> {
        self.root()
            .children()
            .filter(|n| n.device_type() == Some("memory"))
            .flat_map(|n| n.reg().filter_map(|(a, s)| Some((a, s?))))
    }

    /// The children of `/cpus` whose `device_type` is "cpu".
    pub fn cpus(&self) -> impl Iterator<Item = Node<'a>> + use<'a> {
        self.find_node("/cpus")
            .into_iter()
            .flat_map(|c| c.children())
            .filter(|n| n.device_type() == Some("cpu"))
    }
}

/// `#address-cells` and `#size-cells` of a node's parent: how its `reg`
/// is read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cells {
    pub address: u32,
    pub size: u32,
}

impl Default for Cells {
    /// The defaults the specification gives: 2 and 1.
    fn default() -> Cells {
        Cells {
            address: 2,
            size: 1,
        }
    }
}

/// A node of a checked blob.
#[derive(Clone, Copy, Debug)]
pub struct Node<'a> {
    dtb: Dtb<'a>,
    /// Structure offset of its `FDT_BEGIN_NODE`.
    at: usize,
    /// Its parent's cells.
    cells: Cells,
}

impl<'a> Node<'a> {
    /// Its name with the unit address (`pl011@9000000`); "" for the root.
    pub fn name(&self) -> &'a str {
        cstr(self.dtb.structs, self.at + 4).unwrap_or("")
    }

    /// Whether path component `part` names this node: the whole name, or
    /// the name before `@` when `part` has no unit address.
    fn matches(&self, part: &str) -> bool {
        let name = self.name();
        name == part || (!part.contains('@') && name.split('@').next() == Some(part))
    }

    /// Structure offset of its first property or child.
    fn body(&self) -> usize {
        align4(self.at + 4 + self.name().len() + 1)
    }

    /// Its properties, in order.
    pub fn properties(&self) -> Properties<'a> {
        Properties {
            dtb: self.dtb,
            at: self.body(),
        }
    }

    /// Its property `name`.
    pub fn property(&self, name: &str) -> Option<Property<'a>> {
        self.properties().find(|p| p.name == name)
    }

    /// Its child nodes, in order.
    pub fn children(&self) -> Children<'a> {
        // Past the properties (and NOPs): the first child or the end.
        let mut props = self.properties();
        while props.next().is_some() {}
        Children {
            dtb: self.dtb,
            at: props.at,
            cells: self.own_cells(),
        }
    }

    /// The cells its children's `reg` is read with.
    pub fn own_cells(&self) -> Cells {
        let d = Cells::default();
        let cell = |name| self.property(name).and_then(|p| p.u32_at(0));
        Cells {
            address: cell("#address-cells").unwrap_or(d.address),
            size: cell("#size-cells").unwrap_or(d.size),
        }
    }

    /// Its `device_type`.
    pub fn device_type(&self) -> Option<&'a str> {
        self.property("device_type")?.as_str()
    }

    /// The strings of its `compatible`.
    pub fn compatible(&self) -> impl Iterator<Item = &'a str> + use<'a> {
        self.property("compatible")
            .into_iter()
            .flat_map(|p| p.strs())
    }

    /// Whether one of its `compatible` strings is in `any`.
    pub fn is_compatible(&self, any: &[&str]) -> bool {
        self.compatible().any(|c| any.contains(&c))
    }

    /// Its `reg` entries (address, size) read with its parent's cells;
    /// `None` for the size when the parent has `#size-cells = <0>`. Empty
    /// when a cell count is above 2 (the value would not fit) or there is
    /// no `reg`; a partial entry at the end is left out.
    pub fn reg(&self) -> impl Iterator<Item = (u64, Option<u64>)> + use<'a> {
        let Cells { address, size } = self.cells;
        let fits = address <= 2 && size <= 2;
        let value = self
            .property("reg")
            .filter(|_| fits)
            .map_or(&[][..], |p| p.value);
        let (a, s) = (address as usize, size as usize);
        let step = (a + s).max(1) * 4;
        let mut at = 0usize;
        core::iter::from_fn(move || {
            if a + s == 0 {
                return None;
            }
            let entry = value.get(at..at.checked_add(step)?)?;
            at += step;
            let addr = cells(entry, 0, a)?;
            let size = if s == 0 {
                None
            } else {
                Some(cells(entry, a, s)?)
            };
            Some((addr, size))
        })
    }
}

/// The value of `n` big-endian cells from cell `first` of `b`.
fn cells(b: &[u8], first: usize, n: usize) -> Option<u64> {
    (first..first + n).try_fold(0u64, |v, i| Some(v << 32 | u64::from(be32(b, i * 4)?)))
}

/// The properties of a node.
#[derive(Clone, Debug)]
pub struct Properties<'a> {
    dtb: Dtb<'a>,
    at: usize,
}

impl<'a> Iterator for Properties<'a> {
    type Item = Property<'a>;

    fn next(&mut self) -> Option<Property<'a>> {
        loop {
            let (token, next) = token(self.dtb.structs, self.at).ok()?;
            match token {
                Token::Nop => self.at = next,
                Token::Prop { name_off, value } => {
                    let name = cstr(self.dtb.strings, name_off as usize)?;
                    self.at = next;
                    return Some(Property { name, value });
                }
                _ => return None,
            }
        }
    }
}

/// The child nodes of a node.
#[derive(Clone, Copy, Debug)]
pub struct Children<'a> {
    dtb: Dtb<'a>,
    /// Where the next child begins, or the parent's `FDT_END_NODE`.
    at: usize,
    cells: Cells,
}

impl<'a> Iterator for Children<'a> {
    type Item = Node<'a>;

    fn next(&mut self) -> Option<Node<'a>> {
        let s = self.dtb.structs;
        self.at = past_nops(s, self.at);
        if !matches!(token(s, self.at), Ok((Token::BeginNode, _))) {
            return None;
        }
        let node = Node {
            dtb: self.dtb,
            at: self.at,
            cells: self.cells,
        };
        self.at = skip_node(s, self.at)?;
        Some(node)
    }
}

/// The offset of the first token at or after `at` that is not a NOP.
fn past_nops(s: &[u8], mut at: usize) -> usize {
    while let Ok((Token::Nop, next)) = token(s, at) {
        at = next;
    }
    at
}

/// The structure offset just past the node that begins at `at`.
fn skip_node(s: &[u8], mut at: usize) -> Option<usize> {
    let mut depth = 0usize;
    loop {
        let (token, next) = token(s, at).ok()?;
        at = next;
        match token {
            Token::BeginNode => depth += 1,
            Token::EndNode => {
                depth = depth.checked_sub(1)?;
                if depth == 0 {
                    return Some(at);
                }
            }
            Token::Prop { .. } | Token::Nop => {}
            Token::End => return None,
        }
    }
}

/// A token of the structure block.
enum Token<'a> {
    /// `FDT_BEGIN_NODE` (its name checked).
    BeginNode,
    EndNode,
    /// `FDT_PROP`: where its name is in the strings block, and its value.
    Prop {
        name_off: u32,
        value: &'a [u8],
    },
    Nop,
    End,
}

/// The token at offset `at` of structure block `s`, and the offset of the
/// token after it. The one decoder of tokens: the check of the whole blob
/// and the walks of a checked one.
fn token(s: &[u8], at: usize) -> Result<(Token<'_>, usize), Error> {
    let code = be32(s, at).ok_or(Error::NoEnd { at })?;
    Ok(match code {
        BEGIN_NODE => {
            let name = cstr(s, at + 4).ok_or(Error::NodeName { at })?;
            (Token::BeginNode, align4(at + 4 + name.len() + 1))
        }
        END_NODE => (Token::EndNode, at + 4),
        PROP => {
            let (Some(len), Some(name_off)) = (be32(s, at + 4), be32(s, at + 8)) else {
                return Err(Error::PropertyCut { at });
            };
            let start = at + 12;
            let value = start
                .checked_add(len as usize)
                .and_then(|end| s.get(start..end))
                .ok_or(Error::PropertyLength { at, len })?;
            (Token::Prop { name_off, value }, align4(start + value.len()))
        }
        NOP => (Token::Nop, at + 4),
        END => (Token::End, at + 4),
        token => return Err(Error::Token { token, at }),
    })
}

/// A property: its name and value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Property<'a> {
    pub name: &'a str,
    pub value: &'a [u8],
}

impl<'a> Property<'a> {
    /// The value as one NUL-terminated UTF-8 string.
    pub fn as_str(&self) -> Option<&'a str> {
        let (last, text) = self.value.split_last()?;
        if *last != 0 || text.contains(&0) {
            return None;
        }
        core::str::from_utf8(text).ok()
    }

    /// The value as a list of NUL-terminated strings (those that are
    /// UTF-8).
    pub fn strs(&self) -> impl Iterator<Item = &'a str> + use<'a> {
        let text = match self.value.split_last() {
            Some((0, text)) => text,
            _ => &[][..],
        };
        text.split(|&b| b == 0)
            .filter(|_| !text.is_empty())
            .filter_map(|s| core::str::from_utf8(s).ok())
    }

    /// Big-endian cell `i`.
    pub fn u32_at(&self, i: usize) -> Option<u32> {
        be32(self.value, i.checked_mul(4)?)
    }
}

fn be32(b: &[u8], at: usize) -> Option<u32> {
    let bytes = b.get(at..at.checked_add(4)?)?;
    Some(u32::from_be_bytes(bytes.try_into().ok()?))
}

fn be64(b: &[u8], at: usize) -> Option<u64> {
    let bytes = b.get(at..at.checked_add(8)?)?;
    Some(u64::from_be_bytes(bytes.try_into().ok()?))
}

/// The NUL-terminated UTF-8 string at `at` of `b`.
fn cstr(b: &[u8], at: usize) -> Option<&str> {
    let rest = b.get(at..)?;
    let end = rest.iter().position(|&c| c == 0)?;
    core::str::from_utf8(rest.get(..end)?).ok()
}

fn align4(n: usize) -> usize {
    n.saturating_add(3) & !3
}

#[cfg(test)]
mod tests;
