//! virtio-net's offloads between ports (virtio 1.x, 5.1.6): the header
//! in front of every frame (`virtio_net_hdr_v1`), what a driver may ask
//! for in it, and what the switch does for a receiver that did not
//! negotiate what the sender used: it completes a partial checksum, or
//! cuts a TCP segmentation offload frame (up to 64 KiB) into frames of
//! the sender's segment size with complete IP and TCP headers, as a
//! network card would.
//!
//! Between two drivers that both negotiated the offloads a frame passes
//! through with its header: one copy of up to 64 KiB instead of some 45
//! frames of 1.5 KiB, and no checksum computed anywhere (the receiver's
//! stack trusts a frame marked `NEEDS_CSUM` as a local one).

use core::fmt;

/// `VIRTIO_NET_F_CSUM`: the device takes frames with a partial checksum.
pub const F_CSUM: u64 = 1 << 0;
/// `VIRTIO_NET_F_GUEST_CSUM`: the driver takes frames with a partial
/// checksum.
pub const F_GUEST_CSUM: u64 = 1 << 1;
/// `VIRTIO_NET_F_GUEST_TSO4`: the driver takes TCP/IPv4 segmentation
/// offload frames.
pub const F_GUEST_TSO4: u64 = 1 << 7;
/// `VIRTIO_NET_F_GUEST_TSO6`: the driver takes TCP/IPv6 segmentation
/// offload frames.
pub const F_GUEST_TSO6: u64 = 1 << 8;
/// `VIRTIO_NET_F_HOST_TSO4`: the device takes TCP/IPv4 segmentation
/// offload frames.
pub const F_HOST_TSO4: u64 = 1 << 11;
/// `VIRTIO_NET_F_HOST_TSO6`: the device takes TCP/IPv6 segmentation
/// offload frames.
pub const F_HOST_TSO6: u64 = 1 << 12;
/// The offloads a port offers.
pub const OFFLOADS: u64 =
    F_CSUM | F_GUEST_CSUM | F_GUEST_TSO4 | F_GUEST_TSO6 | F_HOST_TSO4 | F_HOST_TSO6;

/// `VIRTIO_NET_HDR_F_NEEDS_CSUM`: the checksum at `csum_start +
/// csum_offset` covers only the pseudo header.
pub const NEEDS_CSUM: u8 = 1;
/// `VIRTIO_NET_HDR_GSO_NONE`.
pub const GSO_NONE: u8 = 0;
/// `VIRTIO_NET_HDR_GSO_TCPV4`.
pub const GSO_TCPV4: u8 = 1;
/// `VIRTIO_NET_HDR_GSO_TCPV6`.
pub const GSO_TCPV6: u8 = 4;

/// `sizeof(struct virtio_net_hdr_v1)`.
pub const HDR_LEN: usize = 12;
/// The largest frame without segmentation offload: 1500 bytes of
/// payload, the Ethernet header and a VLAN tag.
pub const MAX_FRAME: usize = 1518;
/// The largest segmentation offload frame: an IPv6 packet of 64 KiB
/// payload (no jumbograms) after an Ethernet header with a VLAN tag.
pub const MAX_GSO_FRAME: usize = 18 + 40 + 65535;

/// Which features need which (virtio 1.x, 5.1.3.1): a driver taking the
/// first without the second is refused.
pub const DEPENDS: [(u64, u64); 4] = [
    (F_GUEST_TSO4, F_GUEST_CSUM),
    (F_GUEST_TSO6, F_GUEST_CSUM),
    (F_HOST_TSO4, F_CSUM),
    (F_HOST_TSO6, F_CSUM),
];

/// Whether feature set `f` has every dependency (see [`DEPENDS`]).
pub fn consistent(f: u64) -> bool {
    DEPENDS.iter().all(|&(a, b)| f & a == 0 || f & b != 0)
}

/// The header in front of every frame.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NetHdr {
    /// [`NEEDS_CSUM`].
    pub flags: u8,
    /// [`GSO_NONE`], [`GSO_TCPV4`], [`GSO_TCPV6`].
    pub gso_type: u8,
    /// The length of the headers (a hint).
    pub hdr_len: u16,
    /// The segment size of a segmentation offload frame.
    pub gso_size: u16,
    /// Where the checksummed part starts.
    pub csum_start: u16,
    /// Where the checksum is, from `csum_start`.
    pub csum_offset: u16,
    /// Receive buffers the frame took (receive side only).
    pub num_buffers: u16,
}

impl NetHdr {
    /// The header in `b` (little-endian fields).
    pub fn parse(b: &[u8; HDR_LEN]) -> NetHdr {
        let u = |i: usize| u16::from_le_bytes([b[i], b[i + 1]]);
        NetHdr {
            flags: b[0],
            gso_type: b[1],
            hdr_len: u(2),
            gso_size: u(4),
            csum_start: u(6),
            csum_offset: u(8),
            num_buffers: u(10),
        }
    }

    /// The header's bytes.
    pub fn bytes(&self) -> [u8; HDR_LEN] {
        let mut b = [0u8; HDR_LEN];
        b[0] = self.flags;
        b[1] = self.gso_type;
        for (i, v) in [
            self.hdr_len,
            self.gso_size,
            self.csum_start,
            self.csum_offset,
            self.num_buffers,
        ]
        .into_iter()
        .enumerate()
        {
            b[2 + 2 * i..4 + 2 * i].copy_from_slice(&v.to_le_bytes());
        }
        b
    }

    /// The header of the frame made `by` bytes longer (negative: shorter)
    /// in front of its network header, by an 802.1Q tag added or
    /// removed: the checksum's start and the headers' length move along.
    /// `None` if the checksum would then start inside the Ethernet header.
    pub fn shifted(&self, by: isize) -> Option<NetHdr> {
        let moved = |v: u16| u16::try_from(v as isize + by).ok();
        let mut h = *self;
        if h.needs_csum() {
            h.csum_start = moved(h.csum_start).filter(|&s| s >= 14)?;
        }
        if h.hdr_len != 0 {
            h.hdr_len = moved(h.hdr_len)?;
        }
        Some(h)
    }

    /// Whether the frame is a segmentation offload frame.
    pub const fn gso(&self) -> bool {
        self.gso_type != GSO_NONE
    }

    /// Whether the frame's checksum is partial.
    pub const fn needs_csum(&self) -> bool {
        self.flags & NEEDS_CSUM != 0
    }

    /// Checks the header of a frame of `len` bytes transmitted by a
    /// driver with features `f`: what is wrong with it. Flags other than
    /// [`NEEDS_CSUM`] are the receive side's and ignored.
    pub fn check_tx(&mut self, len: usize, f: u64) -> Result<(), OffloadError> {
        self.flags &= NEEDS_CSUM;
        self.num_buffers = 0;
        if self.needs_csum() {
            if f & F_CSUM == 0 {
                return Err(OffloadError::NotNegotiated("checksum offload"));
            }
            let at = usize::from(self.csum_start) + usize::from(self.csum_offset);
            if at + 2 > len {
                return Err(OffloadError::Checksum);
            }
        }
        let need = match self.gso_type {
            GSO_NONE => return Ok(()),
            GSO_TCPV4 => F_HOST_TSO4,
            GSO_TCPV6 => F_HOST_TSO6,
            t => return Err(OffloadError::GsoType(t)),
        };
        if f & need == 0 {
            return Err(OffloadError::NotNegotiated("TCP segmentation offload"));
        }
        if self.gso_size < MIN_SEGMENT {
            return Err(OffloadError::SegmentSize);
        }
        Ok(())
    }
}

/// The smallest segment size a segmentation offload frame may ask for:
/// Linux's smallest TCP send MSS by default (`tcp_min_snd_mss`). With less,
/// one 64 KiB frame would be cut into thousands for a receiver without
/// the offload, and keep the switch from the other ports meanwhile.
pub const MIN_SEGMENT: u16 = 48;

/// The receive offloads of a driver: which frames it takes as they are.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RxOffloads(u64);

impl RxOffloads {
    /// The receive offloads among features `f`.
    pub const fn new(f: u64) -> RxOffloads {
        RxOffloads(f & (F_GUEST_CSUM | F_GUEST_TSO4 | F_GUEST_TSO6))
    }

    /// Whether a frame with header `h` goes to the driver as it is.
    pub const fn takes(&self, h: &NetHdr) -> bool {
        let csum = !h.needs_csum() || self.0 & F_GUEST_CSUM != 0;
        let gso = match h.gso_type {
            GSO_TCPV4 => self.0 & F_GUEST_TSO4 != 0,
            GSO_TCPV6 => self.0 & F_GUEST_TSO6 != 0,
            _ => true,
        };
        csum && gso
    }

    /// Whether the driver takes segmentation offload frames (and so
    /// posts buffers for them).
    pub const fn large(&self) -> bool {
        self.0 & (F_GUEST_TSO4 | F_GUEST_TSO6) != 0
    }
}

/// What is wrong with a frame's offload request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OffloadError {
    /// The driver asked for an offload it did not negotiate.
    NotNegotiated(&'static str),
    /// The checksum lies beyond the frame.
    Checksum,
    /// A segmentation type not offered.
    GsoType(u8),
    /// A segmentation offload frame with a segment size below
    /// [`MIN_SEGMENT`].
    SegmentSize,
    /// The frame is not what its segmentation type says.
    Headers(&'static str),
}

impl fmt::Display for OffloadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            OffloadError::NotNegotiated(what) => write!(f, "{what} not negotiated"),
            OffloadError::Checksum => f.write_str("checksum position beyond the frame"),
            OffloadError::GsoType(t) => write!(f, "segmentation type {t:#x} not offered"),
            OffloadError::SegmentSize => write!(f, "segment size below {MIN_SEGMENT}"),
            OffloadError::Headers(what) => write!(f, "segmentation offload frame: {what}"),
        }
    }
}

impl std::error::Error for OffloadError {}

/// The ones' complement sum of `data` (as big-endian 16-bit words, an
/// odd last byte padded with zero) added to `sum`, not folded.
fn sum_words(data: &[u8], mut sum: u64) -> u64 {
    let mut words = data.chunks_exact(2);
    for w in &mut words {
        sum += u64::from(u16::from_be_bytes([w[0], w[1]]));
    }
    if let [last] = words.remainder() {
        sum += u64::from(*last) << 8;
    }
    sum
}

/// Folds a sum into 16 bits.
fn fold(mut sum: u64) -> u16 {
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    sum as u16
}

/// Completes the partial checksum of `frame` (header `h` with
/// [`NEEDS_CSUM`]): the checksum field holds the pseudo header's sum, the
/// sum from `csum_start` to the end goes into it. A result of 0 is sent
/// as 0xffff (the same in ones' complement, and UDP's "no checksum"
/// otherwise).
pub fn complete_checksum(frame: &mut [u8], h: &NetHdr) -> Result<(), OffloadError> {
    let start = usize::from(h.csum_start);
    let at = start + usize::from(h.csum_offset);
    if at + 2 > frame.len() {
        return Err(OffloadError::Checksum);
    }
    let c = !fold(sum_words(&frame[start..], 0));
    let c = if c == 0 { 0xffff } else { c };
    frame[at..at + 2].copy_from_slice(&c.to_be_bytes());
    Ok(())
}

/// Where the headers of a TCP frame are.
struct TcpFrame {
    /// The IP header's offset (after the Ethernet header and VLAN tags).
    ip: usize,
    /// The TCP header's offset.
    tcp: usize,
    /// The payload's offset (the length of all headers).
    payload: usize,
    /// IPv4 (or IPv6).
    v4: bool,
}

const ETHERTYPE_IPV4: u16 = 0x0800;
const ETHERTYPE_IPV6: u16 = 0x86dd;
const ETHERTYPE_VLAN: u16 = 0x8100;
const IPPROTO_TCP: u8 = 6;

fn be16(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}

/// Finds the headers of a TCP/IPv4 (`v4`) or TCP/IPv6 frame.
fn tcp_headers(frame: &[u8], v4: bool) -> Result<TcpFrame, OffloadError> {
    let short = OffloadError::Headers("too short");
    if frame.len() < 14 {
        return Err(short);
    }
    let mut ip = 14;
    let mut ethertype = be16(frame, 12);
    if ethertype == ETHERTYPE_VLAN {
        if frame.len() < 18 {
            return Err(short);
        }
        ethertype = be16(frame, 16);
        ip = 18;
    }
    let tcp = if v4 {
        if ethertype != ETHERTYPE_IPV4 {
            return Err(OffloadError::Headers(
                "TCPv4 segmentation of a non-IPv4 frame",
            ));
        }
        let ihl = usize::from(frame.get(ip).ok_or(short)? & 0xf) * 4;
        if frame[ip] >> 4 != 4 || ihl < 20 || frame.len() < ip + ihl {
            return Err(OffloadError::Headers("bad IPv4 header"));
        }
        if frame[ip + 9] != IPPROTO_TCP {
            return Err(OffloadError::Headers("not TCP"));
        }
        ip + ihl
    } else {
        if ethertype != ETHERTYPE_IPV6 {
            return Err(OffloadError::Headers(
                "TCPv6 segmentation of a non-IPv6 frame",
            ));
        }
        if frame.len() < ip + 40 || frame[ip] >> 4 != 6 {
            return Err(OffloadError::Headers("bad IPv6 header"));
        }
        if frame[ip + 6] != IPPROTO_TCP {
            return Err(OffloadError::Headers(
                "not TCP right after the IPv6 header (extension headers are not segmented)",
            ));
        }
        ip + 40
    };
    let doff = usize::from(frame.get(tcp + 12).ok_or(short)? >> 4) * 4;
    if doff < 20 || frame.len() < tcp + doff {
        return Err(OffloadError::Headers("bad TCP header"));
    }
    Ok(TcpFrame {
        ip,
        tcp,
        payload: tcp + doff,
        v4,
    })
}

/// The (unfolded) sum of the TCP pseudo header of segment `seg`: the
/// addresses, the protocol and the TCP length.
fn pseudo_header_sum(seg: &[u8], t: &TcpFrame) -> u64 {
    let sum = u64::from(IPPROTO_TCP) + (seg.len() - t.tcp) as u64;
    if t.v4 {
        sum_words(&seg[t.ip + 12..t.ip + 20], sum)
    } else {
        sum_words(&seg[t.ip + 8..t.ip + 40], sum)
    }
}

/// The TCP checksum of the segment `seg` (headers at `t`), with the
/// pseudo header, into its field.
fn tcp_checksum(seg: &mut [u8], t: &TcpFrame) {
    seg[t.tcp + 16..t.tcp + 18].fill(0);
    let c = !fold(sum_words(&seg[t.tcp..], pseudo_header_sum(seg, t)));
    seg[t.tcp + 16..t.tcp + 18].copy_from_slice(&c.to_be_bytes());
}

/// TCP flags only the last segment keeps: FIN, PSH.
const TCP_LAST_ONLY: u8 = 0x01 | 0x08;
/// TCP flags only the first segment keeps: CWR.
const TCP_FIRST_ONLY: u8 = 0x80;

/// Cuts the segmentation offload frame `frame` (header `h`) into frames
/// of at most `h.gso_size` bytes of TCP payload, each with complete
/// headers and checksums, built one after the other in `seg` and handed
/// to `emit`, until it says to stop (returns false: the receiver has no
/// room for more). The number of frames emitted, or what is wrong with
/// the frame (nothing is emitted then).
pub fn segment(
    frame: &[u8],
    h: &NetHdr,
    seg: &mut Vec<u8>,
    mut emit: impl FnMut(&[u8]) -> bool,
) -> Result<usize, OffloadError> {
    let t = match h.gso_type {
        GSO_TCPV4 => tcp_headers(frame, true)?,
        GSO_TCPV6 => tcp_headers(frame, false)?,
        other => return Err(OffloadError::GsoType(other)),
    };
    if h.gso_size < MIN_SEGMENT {
        return Err(OffloadError::SegmentSize);
    }
    let headers = &frame[..t.payload];
    let payload = &frame[t.payload..];
    let seq = u32::from_be_bytes(frame[t.tcp + 4..t.tcp + 8].try_into().expect("4 bytes"));
    let id = be16(frame, t.ip + 4);
    let flags = frame[t.tcp + 13];
    let chunks = payload.chunks(usize::from(h.gso_size));
    let n = chunks.len().max(1);
    let mut chunks = chunks.peekable();
    let mut offset = 0usize;
    for i in 0..n {
        let chunk = chunks.next().unwrap_or(&[]);
        seg.clear();
        seg.extend_from_slice(headers);
        seg.extend_from_slice(chunk);
        let l3_len = seg.len() - t.ip;
        if t.v4 {
            seg[t.ip + 2..t.ip + 4].copy_from_slice(&(l3_len as u16).to_be_bytes());
            seg[t.ip + 4..t.ip + 6].copy_from_slice(&id.wrapping_add(i as u16).to_be_bytes());
            seg[t.ip + 10..t.ip + 12].fill(0);
            let c = !fold(sum_words(&seg[t.ip..t.tcp], 0));
            seg[t.ip + 10..t.ip + 12].copy_from_slice(&c.to_be_bytes());
        } else {
            let payload_len = (l3_len - 40) as u16;
            seg[t.ip + 4..t.ip + 6].copy_from_slice(&payload_len.to_be_bytes());
        }
        let s = seq.wrapping_add(offset as u32);
        seg[t.tcp + 4..t.tcp + 8].copy_from_slice(&s.to_be_bytes());
        let mut f = flags;
        if chunks.peek().is_some() {
            f &= !TCP_LAST_ONLY;
        }
        if i > 0 {
            f &= !TCP_FIRST_ONLY;
        }
        seg[t.tcp + 13] = f;
        tcp_checksum(seg, &t);
        offset += chunk.len();
        if !emit(seg) {
            return Ok(i + 1);
        }
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A TCP frame with `payload` (IPv4 or IPv6), checksums complete.
    fn tcp_frame(v4: bool, payload: &[u8], flags: u8) -> Vec<u8> {
        let mut f = vec![2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1];
        let tcp_len = 20 + payload.len();
        if v4 {
            f.extend_from_slice(&ETHERTYPE_IPV4.to_be_bytes());
            let mut ip = vec![0x45, 0, 0, 0, 0x12, 0x34, 0x40, 0, 64, IPPROTO_TCP, 0, 0];
            ip[2..4].copy_from_slice(&((20 + tcp_len) as u16).to_be_bytes());
            ip.extend_from_slice(&[192, 168, 1, 1, 192, 168, 1, 2]);
            let c = !fold(sum_words(&ip, 0));
            ip[10..12].copy_from_slice(&c.to_be_bytes());
            f.extend_from_slice(&ip);
        } else {
            f.extend_from_slice(&ETHERTYPE_IPV6.to_be_bytes());
            f.extend_from_slice(&[0x60, 0, 0, 0]);
            f.extend_from_slice(&(tcp_len as u16).to_be_bytes());
            f.extend_from_slice(&[IPPROTO_TCP, 64]);
            f.extend_from_slice(&[0xfe, 0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]);
            f.extend_from_slice(&[0xfe, 0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2]);
        }
        // Ports 5001 -> 40000, seq 0xfffffff0 (wraps), ack 1, doff 5.
        f.extend_from_slice(&[0x13, 0x89, 0x9c, 0x40, 0xff, 0xff, 0xff, 0xf0, 0, 0, 0, 1]);
        f.extend_from_slice(&[0x50, flags, 0xff, 0xff, 0, 0, 0, 0]);
        f.extend_from_slice(payload);
        let t = tcp_headers(&f, v4).unwrap();
        tcp_checksum(&mut f, &t);
        f
    }

    /// Whether the IP and TCP checksums of `f` are right (the sums over
    /// the checksummed data, fields included, fold to 0xffff).
    fn checksums_ok(f: &[u8], v4: bool) -> bool {
        let t = tcp_headers(f, v4).unwrap();
        let ip_ok = !v4 || fold(sum_words(&f[t.ip..t.tcp], 0)) == 0xffff;
        ip_ok && fold(sum_words(&f[t.tcp..], pseudo_header_sum(f, &t))) == 0xffff
    }

    #[test]
    fn header_bytes() {
        let h = NetHdr {
            flags: NEEDS_CSUM,
            gso_type: GSO_TCPV4,
            hdr_len: 66,
            gso_size: 1448,
            csum_start: 34,
            csum_offset: 16,
            num_buffers: 1,
        };
        let b = h.bytes();
        assert_eq!(b[..6], [1, 1, 66, 0, 0xa8, 0x05]);
        assert_eq!(NetHdr::parse(&b), h);
    }

    #[test]
    fn transmit_checks() {
        let all = OFFLOADS;
        let mut plain = NetHdr::default();
        assert_eq!(plain.check_tx(60, 0), Ok(()));
        let csum = NetHdr {
            flags: NEEDS_CSUM | 2,
            csum_start: 34,
            csum_offset: 16,
            ..NetHdr::default()
        };
        let mut h = csum;
        assert_eq!(h.check_tx(60, all), Ok(()));
        assert_eq!(h.flags, NEEDS_CSUM, "receive-side flags are dropped");
        assert_eq!(
            csum.clone().check_tx(60, 0),
            Err(OffloadError::NotNegotiated("checksum offload"))
        );
        assert_eq!(csum.clone().check_tx(51, all), Err(OffloadError::Checksum));
        let tso = NetHdr {
            gso_type: GSO_TCPV4,
            gso_size: 1448,
            ..csum
        };
        assert_eq!(tso.clone().check_tx(9000, all), Ok(()));
        assert!(tso.clone().check_tx(9000, F_CSUM | F_HOST_TSO6).is_err());
        assert_eq!(
            NetHdr { gso_size: 0, ..tso }.check_tx(9000, all),
            Err(OffloadError::SegmentSize)
        );
        assert_eq!(
            NetHdr { gso_type: 3, ..tso }.check_tx(9000, all),
            Err(OffloadError::GsoType(3))
        );
        assert!(consistent(all));
        assert!(!consistent(F_HOST_TSO4));
        assert!(!consistent(F_GUEST_TSO6 | F_CSUM));
    }

    #[test]
    fn receivers() {
        let tso4 = NetHdr {
            flags: NEEDS_CSUM,
            gso_type: GSO_TCPV4,
            gso_size: 1448,
            ..NetHdr::default()
        };
        let csum = NetHdr {
            gso_type: GSO_NONE,
            ..tso4
        };
        let none = RxOffloads::new(0);
        assert!(none.takes(&NetHdr::default()));
        assert!(!none.takes(&csum) && !none.takes(&tso4) && !none.large());
        let c = RxOffloads::new(F_GUEST_CSUM | F_HOST_TSO4);
        assert!(c.takes(&csum) && !c.takes(&tso4));
        let t = RxOffloads::new(F_GUEST_CSUM | F_GUEST_TSO4);
        assert!(t.takes(&tso4) && t.large());
        assert!(!t.takes(&NetHdr {
            gso_type: GSO_TCPV6,
            ..tso4
        }));
    }

    #[test]
    fn checksum_completion() {
        for v4 in [true, false] {
            let good = tcp_frame(v4, b"hello, odd length", 0x18);
            assert!(checksums_ok(&good, v4));
            // A partial checksum as a sender leaves it: the pseudo
            // header's sum only.
            let t = tcp_headers(&good, v4).unwrap();
            let mut partial = good.clone();
            let sum = fold(pseudo_header_sum(&good, &t));
            partial[t.tcp + 16..t.tcp + 18].copy_from_slice(&sum.to_be_bytes());
            assert!(!checksums_ok(&partial, v4));
            let h = NetHdr {
                flags: NEEDS_CSUM,
                csum_start: t.tcp as u16,
                csum_offset: 16,
                ..NetHdr::default()
            };
            complete_checksum(&mut partial, &h).unwrap();
            assert!(checksums_ok(&partial, v4));
            let beyond = NetHdr {
                csum_offset: 0x7000,
                ..h
            };
            assert_eq!(
                complete_checksum(&mut partial, &beyond),
                Err(OffloadError::Checksum)
            );
        }
    }

    #[test]
    fn segmentation() {
        let payload: Vec<u8> = (0..3000u32).map(|i| (i * 7) as u8).collect();
        for v4 in [true, false] {
            // FIN|PSH|ACK|CWR on the big frame.
            let big = tcp_frame(v4, &payload, 0x01 | 0x08 | 0x10 | 0x80);
            let t = tcp_headers(&big, v4).unwrap();
            let h = NetHdr {
                flags: NEEDS_CSUM,
                gso_type: if v4 { GSO_TCPV4 } else { GSO_TCPV6 },
                gso_size: 1448,
                csum_start: t.tcp as u16,
                csum_offset: 16,
                ..NetHdr::default()
            };
            let mut frames = Vec::new();
            let mut seg = Vec::new();
            let n = segment(&big, &h, &mut seg, |f| {
                frames.push(f.to_vec());
                true
            })
            .unwrap();
            assert_eq!(n, 3);
            let mut joined = Vec::new();
            for (i, f) in frames.iter().enumerate() {
                assert!(checksums_ok(f, v4), "segment {i}");
                let len = f.len() - t.payload;
                assert_eq!(len, [1448, 1448, 104][i]);
                let seq = u32::from_be_bytes(f[t.tcp + 4..t.tcp + 8].try_into().unwrap());
                assert_eq!(seq, 0xffff_fff0u32.wrapping_add(1448 * i as u32));
                let flags = f[t.tcp + 13];
                assert_eq!(flags, [0x90, 0x10, 0x19][i], "segment {i}");
                if v4 {
                    assert_eq!(be16(f, t.ip + 2) as usize, f.len() - t.ip);
                    assert_eq!(be16(f, t.ip + 4), 0x1234 + i as u16);
                } else {
                    assert_eq!(be16(f, t.ip + 4) as usize, f.len() - t.tcp);
                }
                joined.extend_from_slice(&f[t.payload..]);
            }
            assert_eq!(joined, payload);
        }
        // Headers only: one frame.
        let f = tcp_frame(true, &[], 0x10);
        let h = NetHdr {
            gso_type: GSO_TCPV4,
            gso_size: 1448,
            ..NetHdr::default()
        };
        let mut seg = Vec::new();
        assert_eq!(segment(&f, &h, &mut seg, |s| s == f), Ok(1));
    }

    #[test]
    fn segmentation_of_bad_frames() {
        let mut seg = Vec::new();
        let h4 = NetHdr {
            gso_type: GSO_TCPV4,
            gso_size: 100,
            ..NetHdr::default()
        };
        let h6 = NetHdr {
            gso_type: GSO_TCPV6,
            ..h4
        };
        let v4 = tcp_frame(true, &[0; 300], 0x10);
        let v6 = tcp_frame(false, &[0; 300], 0x10);
        let mut none = |_: &[u8]| -> bool { panic!("nothing is emitted") };
        for (f, h) in [
            (&v4[..10], h4),
            (&v4[..20], h4),
            (&v4[..40], h4),
            (&v6[..], h4),
            (&v4[..], h6),
            (&v6[..60], h6),
            (&v4[..], NetHdr { gso_size: 0, ..h4 }),
            (
                &v4[..],
                NetHdr {
                    gso_size: MIN_SEGMENT - 1,
                    ..h4
                },
            ),
            (&v4[..], NetHdr { gso_type: 3, ..h4 }),
        ] {
            assert!(
                segment(f, &h, &mut seg, &mut none).is_err(),
                "{h:?} {}",
                f.len()
            );
        }
        let mut udp = v4.clone();
        udp[14 + 9] = 17;
        assert_eq!(
            segment(&udp, &h4, &mut seg, &mut none),
            Err(OffloadError::Headers("not TCP"))
        );
        let mut ext = v6.clone();
        ext[14 + 6] = 0;
        assert!(segment(&ext, &h6, &mut seg, &mut none).is_err());
        let mut doff = v4.clone();
        doff[34 + 12] = 0x40;
        assert_eq!(
            segment(&doff, &h4, &mut seg, &mut none),
            Err(OffloadError::Headers("bad TCP header"))
        );
    }

    /// Random headers over frames that are TCP frames with random bytes
    /// written over them (header fields, lengths, flags) or cut short:
    /// checking, checksum completion and segmentation answer every one
    /// without a panic, and segments never carry more payload than asked.
    #[test]
    fn random_headers_and_frames_never_panic() {
        let mut rng = l4_xorshift::XorShift::new(0x2545_f491_4f6c_dd1d);
        let mut next = move || rng.next_u64();
        let mut seg = Vec::new();
        let mut segments = 0usize;
        for _ in 0..10_000 {
            let r = next();
            let payload: Vec<u8> = (0..next() % 3000).map(|_| next() as u8).collect();
            let mut f = tcp_frame(r & 1 == 0, &payload, (r >> 8) as u8);
            for _ in 0..(r >> 16) % 4 {
                let at = (next() % 80) as usize;
                if let Some(b) = f.get_mut(at) {
                    *b = next() as u8;
                }
            }
            if r & 2 == 0 {
                f.truncate((next() % (f.len() as u64 + 1)) as usize);
            }
            let small = |v: u64| {
                if v & 1 == 0 {
                    (v >> 1) as u16 % 128
                } else {
                    (v >> 1) as u16
                }
            };
            let mut h = NetHdr {
                flags: next() as u8,
                gso_type: [GSO_NONE, GSO_TCPV4, GSO_TCPV6, next() as u8][(r >> 24) as usize % 4],
                hdr_len: small(next()),
                gso_size: small(next()),
                csum_start: small(next()),
                csum_offset: small(next()),
                num_buffers: next() as u16,
            };
            let _ = h.check_tx(f.len(), next());
            let _ = complete_checksum(&mut f.clone(), &h);
            let gso = h.gso_size;
            let headers = tcp_headers(&f, h.gso_type == GSO_TCPV4).map(|t| t.payload);
            let mut longest = 0;
            let emit = |s: &[u8]| {
                longest = longest.max(s.len());
                true
            };
            if let Ok(n) = segment(&f, &h, &mut seg, emit) {
                segments += n;
                let headers = headers.expect("segmented frames have headers");
                assert!(
                    longest <= headers + usize::from(gso),
                    "{longest} > {headers} + {gso}"
                );
            }
        }
        assert!(segments > 1000, "only {segments} segments");
    }

    /// Segmentation stops where the receiver says it has no room.
    #[test]
    fn segmentation_stops_when_told() {
        let f = tcp_frame(true, &[7; 10_000], 0x10);
        let h = NetHdr {
            gso_type: GSO_TCPV4,
            gso_size: MIN_SEGMENT,
            ..NetHdr::default()
        };
        let mut seg = Vec::new();
        let mut room = 5;
        let emit = |_: &[u8]| {
            room -= 1;
            room > 0
        };
        assert_eq!(segment(&f, &h, &mut seg, emit), Ok(5));
        assert_eq!(
            segment(&f, &h, &mut seg, |_| true),
            Ok(10_000usize.div_ceil(48))
        );
    }
}
