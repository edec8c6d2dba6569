//! Reading a flattened device tree blob into uvmm's tree ([`Node`]),
//! strictly: `l4-dtb` checks every offset and length of the blob before
//! anything is read, so a damaged or hostile blob is an error that says
//! what is wrong and where, never a panic (the `fdt` crate, which the
//! tests use to read back what [`crate::dt::Tree::to_dtb`] writes, panics
//! on many damaged blobs).

use crate::dt::{DtError, Node};

/// The blob's root node (named "") and its memory reservations
/// (address, size).
pub fn read(blob: &[u8]) -> Result<(Node, Vec<(u64, u64)>), DtError> {
    let dtb = l4_dtb::Dtb::new(blob).map_err(|e| DtError::Parse(e.to_string()))?;
    Ok((node(dtb.root()), dtb.reservations().collect()))
}

/// `n` and everything below it (at most [`l4_dtb::MAX_DEPTH`] levels, as
/// checked: the tree is read and written recursively).
fn node(n: l4_dtb::Node<'_>) -> Node {
    Node {
        name: n.name().to_string(),
        props: n
            .properties()
            .map(|p| (p.name.to_string(), p.value.to_vec()))
            .collect(),
        children: n.children().map(node).collect(),
    }
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

    /// A damaged blob is an error that says what is wrong (each kind of
    /// damage is l4-dtb's tests').
    #[test]
    fn damage_is_named() {
        let mut b = virt_dtb(1);
        b[..4].copy_from_slice(&1u32.to_be_bytes());
        assert_eq!(
            read(&b).unwrap_err().to_string(),
            "not a valid device tree: magic 0x1, not 0xd00dfeed"
        );
    }
}
