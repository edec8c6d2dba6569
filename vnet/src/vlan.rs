//! IEEE 802.1Q VLANs on the switch's ports (the `vlan=` port option).
//!
//! Every frame inside the switch belongs to one network: [`UNTAGGED`] for
//! frames of ports without a VLAN, else its VLAN id (1 to [`VID_MAX`]).
//! A port's [`Vlan`] says which frames it lets in, to which network they
//! belong, which networks' frames it gets, and in which form:
//!
//! * no VLAN: its frames are the untagged network's, it gets only those,
//!   as they were sent;
//! * `access=V`: its frames belong to VLAN V and must carry no 802.1Q
//!   tag (a tagged one is dropped: a guest on an access port cannot reach
//!   another VLAN by tagging), it gets VLAN V's frames without a tag;
//! * `trunk=V,W,...` or `trunk=all`: its frames must carry a tag of one of
//!   its VLANs (others, and untagged ones, are dropped), it gets those
//!   VLANs' frames with the tag. The tag it gets has priority and DEI 0;
//!   those of a frame it sends are ignored.
//!
//! A monitor port (`type=monitor`, see [`crate::switch`]) gets every
//! frame let in, those of a VLAN tagged with it.

use core::fmt;

/// A frame's network inside the switch: 0 for frames of ports without a
/// VLAN, else a VLAN id.
pub type Vid = u16;

/// The network of ports without a VLAN.
pub const UNTAGGED: Vid = 0;
/// The largest VLAN id (4095 is reserved).
pub const VID_MAX: Vid = 4094;
/// The 802.1Q tag protocol identifier (the EtherType of a tagged frame).
pub const TPID: u16 = 0x8100;
/// The bytes of an 802.1Q tag.
pub const TAG_LEN: usize = 4;
/// Where a tag sits: after the destination and source addresses.
const TAG_AT: usize = 12;

/// A set of VLAN ids, one bit each.
#[derive(Clone, PartialEq, Eq)]
pub struct VidSet(Box<[u64; 64]>);

impl VidSet {
    /// No VLAN.
    pub fn empty() -> VidSet {
        VidSet(Box::new([0; 64]))
    }

    /// Every VLAN id (1 to [`VID_MAX`]).
    pub fn all() -> VidSet {
        let mut s = VidSet::empty();
        for v in 1..=VID_MAX {
            s.insert(v);
        }
        s
    }

    /// Adds `v`.
    pub fn insert(&mut self, v: Vid) {
        self.0[usize::from(v / 64)] |= 1 << (v % 64);
    }

    /// Whether `v` is in the set.
    pub fn contains(&self, v: Vid) -> bool {
        v <= VID_MAX && self.0[usize::from(v / 64)] & (1 << (v % 64)) != 0
    }

    /// The ids, ascending.
    pub fn iter(&self) -> impl Iterator<Item = Vid> + Clone + '_ {
        (1..=VID_MAX).filter(|&v| self.contains(v))
    }
}

impl fmt::Debug for VidSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set().entries(self.iter()).finish()
    }
}

/// A port's VLAN configuration.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum Vlan {
    /// No VLAN: the untagged network.
    #[default]
    None,
    /// An access port of one VLAN: frames without tags.
    Access(Vid),
    /// A trunk port of these VLANs: tagged frames.
    Trunk(VidSet),
}

impl fmt::Display for Vlan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Vlan::None => f.write_str("no VLAN"),
            Vlan::Access(v) => write!(f, "access port of VLAN {v}"),
            Vlan::Trunk(s) if s.iter().count() == usize::from(VID_MAX) => {
                f.write_str("trunk port of every VLAN")
            }
            // Runs of consecutive ids as ranges: 1-3,7.
            Vlan::Trunk(s) => write!(
                f,
                "trunk port of VLANs {}",
                l4_abi::runs::Runs(s.iter().map(u64::from))
            ),
        }
    }
}

/// Why a frame of a port is not let in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// A tagged frame on an access port.
    TaggedOnAccess,
    /// An untagged (or priority-tagged) frame on a trunk port.
    UntaggedOnTrunk,
    /// A tag of a VLAN the trunk port is not in.
    NotInTrunk(Vid),
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Refusal::TaggedOnAccess => f.write_str("an 802.1Q-tagged frame on an access port"),
            Refusal::UntaggedOnTrunk => f.write_str("a frame without a VLAN tag on a trunk port"),
            Refusal::NotInTrunk(v) => write!(f, "a frame of VLAN {v}, which the trunk is not in"),
        }
    }
}

/// Parses one VLAN id (1 to [`VID_MAX`]).
fn parse_vid(s: &str) -> Result<Vid, String> {
    s.parse::<Vid>()
        .ok()
        .filter(|v| (1..=VID_MAX).contains(v))
        .ok_or_else(|| format!("'{s}' is not a VLAN id (1 to {VID_MAX})"))
}

impl Vlan {
    /// Parses the value of a `vlan=` option: `access=<id>`,
    /// `trunk=<id>[,<id>]*` or `trunk=all`.
    pub fn parse(value: &str) -> Result<Vlan, String> {
        let bad = |why: String| format!("vlan={value}: {why}");
        match value.split_once('=') {
            Some(("access", v)) => parse_vid(v).map(Vlan::Access).map_err(bad),
            Some(("trunk", "all")) => Ok(Vlan::Trunk(VidSet::all())),
            Some(("trunk", list)) => {
                let mut s = VidSet::empty();
                for v in list.split(',') {
                    s.insert(parse_vid(v).map_err(bad)?);
                }
                Ok(Vlan::Trunk(s))
            }
            _ => Err(bad(
                "expected access=<id>, trunk=<id>[,<id>...] or trunk=all".to_string(),
            )),
        }
    }

    /// Whether the port gets frames of network `vid`.
    pub fn member(&self, vid: Vid) -> bool {
        match self {
            Vlan::None => vid == UNTAGGED,
            Vlan::Access(a) => vid == *a,
            Vlan::Trunk(s) => s.contains(vid),
        }
    }

    /// Whether the frames of the port carry their tag.
    pub fn tagged(&self) -> bool {
        matches!(self, Vlan::Trunk(_))
    }

    /// The network of `frame` sent by the port, or why it is not let in.
    pub fn ingress(&self, frame: &[u8]) -> Result<Vid, Refusal> {
        match self {
            Vlan::None => Ok(UNTAGGED),
            Vlan::Access(a) => match tci(frame) {
                None => Ok(*a),
                Some(_) => Err(Refusal::TaggedOnAccess),
            },
            Vlan::Trunk(s) => match tci(frame).map(|t| t & 0xfff) {
                None | Some(0) => Err(Refusal::UntaggedOnTrunk),
                Some(v) if s.contains(v) => Ok(v),
                Some(v) => Err(Refusal::NotInTrunk(v)),
            },
        }
    }
}

/// The tag control information of `frame`'s 802.1Q tag, if it has one
/// (and the EtherType after it: a frame that ends inside its tag is no
/// tagged frame).
pub fn tci(frame: &[u8]) -> Option<u16> {
    if frame.len() < TAG_AT + TAG_LEN + 2 {
        return None;
    }
    let b = &frame[TAG_AT..TAG_AT + TAG_LEN];
    (u16::from_be_bytes([b[0], b[1]]) == TPID).then(|| u16::from_be_bytes([b[2], b[3]]))
}

/// How a frame leaves a port.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Form {
    /// As its sender sent it.
    AsSent,
    /// Without a tag.
    Untagged,
    /// With a tag of this VLAN (priority and DEI 0).
    Tagged(Vid),
}

impl Form {
    /// The form of a frame of network `vid` for a port with VLAN `to`
    /// (`monitor`: a monitor port) that gets it.
    pub fn for_port(to: &Vlan, monitor: bool, vid: Vid) -> Form {
        if vid == UNTAGGED {
            Form::AsSent
        } else if monitor || to.tagged() {
            Form::Tagged(vid)
        } else {
            Form::Untagged
        }
    }
}

/// Makes `frame`, whose sender's frames carry tags if `sent_tagged`,
/// into `form` in `out`: how many bytes longer it got (negative: shorter),
/// or `None` if `frame` is in that form already (`out` untouched).
pub fn convert(frame: &[u8], sent_tagged: bool, form: Form, out: &mut Vec<u8>) -> Option<isize> {
    let head = &frame[..TAG_AT.min(frame.len())];
    match form {
        Form::AsSent => None,
        Form::Untagged if !sent_tagged => None,
        Form::Untagged => {
            out.clear();
            out.extend_from_slice(head);
            out.extend_from_slice(frame.get(TAG_AT + TAG_LEN..).unwrap_or_default());
            Some(-(TAG_LEN as isize))
        }
        Form::Tagged(v) if sent_tagged && tci(frame) == Some(v) => None,
        Form::Tagged(v) => {
            out.clear();
            out.extend_from_slice(head);
            out.extend_from_slice(&TPID.to_be_bytes());
            out.extend_from_slice(&v.to_be_bytes());
            let rest = if sent_tagged {
                TAG_AT + TAG_LEN
            } else {
                TAG_AT
            };
            out.extend_from_slice(frame.get(rest..).unwrap_or_default());
            Some(out.len() as isize - frame.len() as isize)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(tag: Option<u16>) -> Vec<u8> {
        let mut f = vec![1, 1, 1, 1, 1, 1, 2, 2, 2, 2, 2, 2];
        if let Some(t) = tag {
            f.extend_from_slice(&TPID.to_be_bytes());
            f.extend_from_slice(&t.to_be_bytes());
        }
        f.extend_from_slice(&[0x08, 0x00, 0x45, 0xaa]);
        f
    }

    #[test]
    fn options() {
        assert_eq!(Vlan::parse("access=1"), Ok(Vlan::Access(1)));
        assert_eq!(Vlan::parse("access=4094"), Ok(Vlan::Access(4094)));
        let Ok(Vlan::Trunk(s)) = Vlan::parse("trunk=1,2,4094") else {
            panic!("a trunk");
        };
        assert_eq!(s.iter().collect::<Vec<_>>(), [1, 2, 4094]);
        let Ok(Vlan::Trunk(all)) = Vlan::parse("trunk=all") else {
            panic!("a trunk");
        };
        assert_eq!(all.iter().count(), 4094);
        assert_eq!(
            Vlan::Trunk(all.clone()).to_string(),
            "trunk port of every VLAN"
        );
        let list = Vlan::parse("trunk=7,1,2,3,9,10").unwrap();
        assert_eq!(list.to_string(), "trunk port of VLANs 1-3,7,9-10");
        assert_eq!(Vlan::Access(5).to_string(), "access port of VLAN 5");
        assert!(!all.contains(0) && !all.contains(4095));
        for bad in [
            "access=0",
            "access=4095",
            "access=",
            "access=x",
            "trunk=",
            "trunk=1,,2",
            "trunk=1, 2",
            "trunk=5000",
            "trunk",
            "native=1",
            "1",
        ] {
            let e = Vlan::parse(bad).unwrap_err();
            assert!(e.starts_with(&format!("vlan={bad}: ")), "{e}");
        }
    }

    #[test]
    fn what_ports_let_in() {
        let trunk = Vlan::parse("trunk=5,7").unwrap();
        assert_eq!(Vlan::None.ingress(&frame(None)), Ok(UNTAGGED));
        assert_eq!(Vlan::None.ingress(&frame(Some(5))), Ok(UNTAGGED));
        assert_eq!(Vlan::Access(5).ingress(&frame(None)), Ok(5));
        assert_eq!(
            Vlan::Access(5).ingress(&frame(Some(7))),
            Err(Refusal::TaggedOnAccess)
        );
        assert_eq!(trunk.ingress(&frame(Some(7))), Ok(7));
        // Priority and DEI do not matter.
        assert_eq!(trunk.ingress(&frame(Some(0xf005))), Ok(5));
        assert_eq!(trunk.ingress(&frame(None)), Err(Refusal::UntaggedOnTrunk));
        assert_eq!(
            trunk.ingress(&frame(Some(0x2000))),
            Err(Refusal::UntaggedOnTrunk),
            "priority tag only"
        );
        assert_eq!(trunk.ingress(&frame(Some(6))), Err(Refusal::NotInTrunk(6)));
        assert_eq!(
            trunk.ingress(&frame(None)[..13]),
            Err(Refusal::UntaggedOnTrunk)
        );
        // A frame ending inside its tag, or right after it.
        assert_eq!(
            trunk.ingress(&frame(Some(5))[..16]),
            Err(Refusal::UntaggedOnTrunk)
        );
        assert_eq!(trunk.ingress(&frame(Some(5))[..18]), Ok(5));
    }

    #[test]
    fn who_gets_what() {
        let trunk = Vlan::parse("trunk=5,7").unwrap();
        assert!(Vlan::None.member(UNTAGGED) && !Vlan::None.member(5));
        assert!(Vlan::Access(5).member(5) && !Vlan::Access(5).member(UNTAGGED));
        assert!(trunk.member(7) && !trunk.member(6) && !trunk.member(UNTAGGED));
        assert_eq!(Form::for_port(&Vlan::None, false, UNTAGGED), Form::AsSent);
        assert_eq!(Form::for_port(&Vlan::Access(5), false, 5), Form::Untagged);
        assert_eq!(Form::for_port(&trunk, false, 5), Form::Tagged(5));
        assert_eq!(Form::for_port(&Vlan::None, true, 5), Form::Tagged(5));
        assert_eq!(Form::for_port(&Vlan::None, true, UNTAGGED), Form::AsSent);
    }

    #[test]
    fn tags_added_removed_and_cleaned() {
        let mut out = Vec::new();
        let plain = frame(None);
        let tagged = frame(Some(5));
        assert_eq!(convert(&plain, false, Form::AsSent, &mut out), None);
        assert_eq!(convert(&plain, false, Form::Untagged, &mut out), None);
        assert_eq!(convert(&tagged, true, Form::Tagged(5), &mut out), None);
        assert_eq!(convert(&plain, false, Form::Tagged(5), &mut out), Some(4));
        assert_eq!(out, tagged);
        assert_eq!(convert(&tagged, true, Form::Untagged, &mut out), Some(-4));
        assert_eq!(out, plain);
        // Priority and DEI are cleared.
        let prio = frame(Some(0xb005));
        assert_eq!(convert(&prio, true, Form::Tagged(5), &mut out), Some(0));
        assert_eq!(out, tagged);
        assert_eq!(tci(&out), Some(5));
    }
}
