//! Reading a flattened device tree blob, strictly: every offset and
//! length is checked against the blob before it is used, so a damaged or
//! hostile blob is an error that says what is wrong and where, never a
//! panic (the `fdt` crate, which the tests use to read back what
//! [`crate::dt::Tree::to_dtb`] writes, panics on many damaged blobs and
//! keeps at most 64 levels of nodes).

use crate::dt::{DtError, Node};

/// `FDT_MAGIC`.
const MAGIC: u32 = 0xd00d_feed;
/// Structure block tokens.
const BEGIN_NODE: u32 = 1;
const END_NODE: u32 = 2;
const PROP: u32 = 3;
const NOP: u32 = 4;
const END: u32 = 9;
/// Header size (version 17).
const HEADER_LEN: usize = 40;
/// Nodes nested deeper than this are refused (the tree is read and
/// written recursively).
pub const MAX_DEPTH: usize = 64;

/// The blob's root node (named "") and its memory reservations
/// (address, size).
pub fn read(blob: &[u8]) -> Result<(Node, Vec<(u64, u64)>), DtError> {
    let bad = |what: String| Err(DtError::Parse(what));
    if blob.len() < HEADER_LEN {
        return bad(format!("{} bytes, shorter than a header", blob.len()));
    }
    let field = |i: usize| be32(blob, 4 * i).unwrap_or(0);
    if field(0) != MAGIC {
        return bad(format!("magic {:#x}, not {MAGIC:#x}", field(0)));
    }
    let total = field(1) as usize;
    if total > blob.len() || total < HEADER_LEN {
        return bad(format!(
            "total size {total} outside the blob's {} bytes",
            blob.len()
        ));
    }
    let blob = &blob[..total];
    let (version, last_compatible) = (field(5), field(6));
    if version < 16 || last_compatible > 17 {
        return bad(format!(
            "version {version} (compatible with {last_compatible}), not 16 or 17"
        ));
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
    let block = |name: &str, off: usize, len: usize| match off.checked_add(len) {
        Some(end) if end <= total => Ok(&blob[off..end]),
        _ => Err(DtError::Parse(format!(
            "{name} block at {off} of {len} bytes beyond the total size {total}"
        ))),
    };
    let structs = block("structure", off_struct, struct_len)?;
    let strings = block("strings", off_strings, strings_len)?;
    if off_struct % 4 != 0 || off_rsv % 8 != 0 {
        return bad(format!(
            "structure block at {off_struct} or reservations at {off_rsv} misaligned"
        ));
    }
    let reserved = reservations(blob, off_rsv)?;
    let root = structure(structs, strings)?;
    Ok((root, reserved))
}

/// The memory reservation block at `off`: 16-byte entries up to one of
/// size and address 0.
fn reservations(blob: &[u8], off: usize) -> Result<Vec<(u64, u64)>, DtError> {
    let mut out = Vec::new();
    let mut at = off;
    loop {
        let (Some(addr), Some(size)) = (be64(blob, at), be64(blob, at + 8)) else {
            return Err(DtError::Parse(format!(
                "memory reservations from {off} run past the blob without their end"
            )));
        };
        if (addr, size) == (0, 0) {
            return Ok(out);
        }
        out.push((addr, size));
        at += 16;
    }
}

/// Reads the structure block `s` with names from `strings`.
fn structure(s: &[u8], strings: &[u8]) -> Result<Node, DtError> {
    let bad = |what: String| Err(DtError::Parse(what));
    let mut open: Vec<Node> = Vec::new();
    let mut root = None;
    let mut at = 0;
    loop {
        let Some(token) = be32(s, at) else {
            return bad(format!("the structure block ends at {at} without FDT_END"));
        };
        match token {
            BEGIN_NODE => {
                if root.is_some() {
                    return bad(format!("a second root node at structure offset {at}"));
                }
                if open.len() == MAX_DEPTH {
                    return bad(format!("nodes nested deeper than {MAX_DEPTH} at {at}"));
                }
                let name = cstr(s, at + 4).ok_or_else(|| {
                    DtError::Parse(format!("node name at {} unterminated or not UTF-8", at + 4))
                })?;
                at = align4(at + 4 + name.len() + 1);
                let name = if open.is_empty() {
                    String::new()
                } else {
                    name.to_string()
                };
                open.push(Node {
                    name,
                    props: Vec::new(),
                    children: Vec::new(),
                });
            }
            END_NODE => {
                let Some(node) = open.pop() else {
                    return bad(format!("FDT_END_NODE outside a node at {at}"));
                };
                match open.last_mut() {
                    Some(parent) => parent.children.push(node),
                    None => root = Some(node),
                }
                at += 4;
            }
            PROP => {
                let (Some(len), Some(name_off)) = (be32(s, at + 4), be32(s, at + 8)) else {
                    return bad(format!("property at {at} cut short"));
                };
                let Some(node) = open.last_mut() else {
                    return bad(format!("property at {at} outside a node"));
                };
                let start = at + 12;
                let Some(value) = start
                    .checked_add(len as usize)
                    .and_then(|end| s.get(start..end))
                else {
                    return bad(format!(
                        "property at {at} of {len} bytes runs past the structure block"
                    ));
                };
                let name = cstr(strings, name_off as usize).ok_or_else(|| {
                    DtError::Parse(format!(
                        "property at {at}: name offset {name_off} outside the strings block, unterminated or not UTF-8"
                    ))
                })?;
                node.props.push((name.to_string(), value.to_vec()));
                at = align4(start + value.len());
            }
            NOP => at += 4,
            END => {
                if let Some(n) = open.last() {
                    return bad(format!("FDT_END at {at} inside node '{}'", n.name));
                }
                return root.ok_or_else(|| DtError::Parse("no root node".into()));
            }
            t => return bad(format!("unknown token {t:#x} at structure offset {at}")),
        }
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
    core::str::from_utf8(&rest[..end]).ok()
}

fn align4(n: usize) -> usize {
    (n + 3) & !3
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dt::tests::virt_dtb;

    /// The reader agrees with the `fdt` crate on a good blob.
    #[test]
    fn agrees_with_fdt() {
        let blob = virt_dtb(2);
        let (root, reserved) = read(&blob).unwrap();
        let f = fdt::Fdt::new(&blob).unwrap();
        assert_eq!(
            reserved,
            f.memory_reservations()
                .map(|r| (r.address() as u64, r.size() as u64))
                .collect::<Vec<_>>()
        );
        fn same(ours: &Node, theirs: &fdt::node::FdtNode<'_, '_>) {
            let name = if theirs.name == "/" { "" } else { theirs.name };
            assert_eq!(ours.name, name);
            let props: Vec<(String, Vec<u8>)> = theirs
                .properties()
                .map(|p| (p.name.to_string(), p.value.to_vec()))
                .collect();
            assert_eq!(ours.props, props, "{name}");
            let children: Vec<_> = theirs.children().collect();
            assert_eq!(ours.children.len(), children.len(), "{name}");
            for (o, t) in ours.children.iter().zip(&children) {
                same(o, t);
            }
        }
        same(&root, &f.find_node("/").unwrap());
    }

    /// Hand-made damage, each named.
    #[test]
    fn damage_is_named() {
        let good = virt_dtb(1);
        let with = |at: usize, v: u32| {
            let mut b = good.clone();
            b[at..at + 4].copy_from_slice(&v.to_be_bytes());
            b
        };
        let off_struct = be32(&good, 8).unwrap() as usize;
        let err = |b: &[u8]| read(b).unwrap_err().to_string();
        assert!(err(&good[..20]).contains("shorter than a header"));
        assert!(err(&with(0, 1)).contains("magic 0x1"));
        assert!(err(&with(4, u32::MAX)).contains("total size"));
        assert!(err(&with(20, 15)).contains("version 15"));
        assert!(err(&with(36, u32::MAX)).contains("structure block"));
        assert!(err(&with(off_struct, 7)).contains("unknown token 0x7"));
        assert!(err(&with(off_struct, END)).contains("no root node"));
        assert!(err(&with(off_struct, END_NODE)).contains("outside a node"));
        // Deep nesting: MAX_DEPTH + 1 nodes inside each other.
        let mut s = Vec::new();
        for _ in 0..=MAX_DEPTH {
            s.extend_from_slice(&BEGIN_NODE.to_be_bytes());
            s.extend_from_slice(b"a\0\0\0");
        }
        let e = structure(&s, b"").unwrap_err().to_string();
        assert!(e.contains("deeper than 64"), "{e}");
    }
}
