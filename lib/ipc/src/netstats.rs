//! The virtio network switch's statistics interface (L4Re's
//! `Virtio_net_switch::Statistics_if`): `create(1)` on the switch's
//! factory gives a capability through which a client gets a read-only
//! dataspace with every port's counters ([`SwitchStats::get_buffer`]) and
//! has the switch bring that dataspace up to date ([`SwitchStats::sync`]).
//!
//! # The buffer
//!
//! L4Re's layout, little-endian: a header ([`HEADER_LEN`] bytes: `age`,
//! which grows whenever a port is created or freed, and `max_ports`, the
//! number of records), then one [`RECORD_LEN`]-byte record per port
//! number: six counters ([`PortCounters`]), the port's address (6 bytes),
//! its name (20 bytes, NUL-padded) and an in-use flag (1 byte), padded to
//! 8 bytes. [`Record`] writes and reads one; [`parse`] reads a buffer.

use crate::codec::RcvCap;

/// What `create` asks the switch's factory for to get a statistics
/// capability (L4Re's switch: protocol argument 1; 0 makes a port).
pub const STATS_CREATE: i64 = 1;

crate::protocol! {
    /// The statistics interface of the virtio network switch.
    pub protocol SwitchStats = 0;
    client SwitchStatsClient;
    server SwitchStatsServer;

    /// The dataspace with the statistics (read-only; lands in `rcv`).
    fn get_buffer() -> RcvCap = 0;
    /// Writes the switch's current counters into the dataspace.
    fn sync() -> () = 1;
}

/// Bytes before the first record: `age`, `max_ports`.
pub const HEADER_LEN: usize = 16;
/// Bytes of one port's record.
pub const RECORD_LEN: usize = 80;
/// Bytes of a record's name field (a longer name is cut).
pub const NAME_LEN: usize = 20;

/// Offsets in a record.
const MAC_AT: usize = 48;
const NAME_AT: usize = MAC_AT + 6;
const IN_USE_AT: usize = NAME_AT + NAME_LEN;

/// The size of a buffer with `max_ports` records; `None` past `usize`.
pub const fn buffer_len(max_ports: usize) -> Option<usize> {
    match max_ports.checked_mul(RECORD_LEN) {
        Some(n) => n.checked_add(HEADER_LEN),
        None => None,
    }
}

/// A port's counters, as L4Re's switch names them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PortCounters {
    /// Frames the port sent that the switch took.
    pub tx_num: u64,
    /// Frames the port sent that the switch dropped.
    pub tx_dropped: u64,
    /// Bytes of the frames counted in `tx_num`.
    pub tx_bytes: u64,
    /// Frames delivered to the port.
    pub rx_num: u64,
    /// Frames for the port that it did not get.
    pub rx_dropped: u64,
    /// Bytes of the frames counted in `rx_num`.
    pub rx_bytes: u64,
}

/// One port's record.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Record {
    /// The port's counters.
    pub counters: PortCounters,
    /// The port's address (zero when it has none).
    pub mac: [u8; 6],
    /// Its name, NUL-padded (see [`Record::name`]).
    pub name: [u8; NAME_LEN],
}

impl Record {
    /// A record for `name`, cut to [`NAME_LEN`] bytes (at a character
    /// boundary).
    pub fn new(counters: PortCounters, mac: [u8; 6], name: &str) -> Record {
        let mut n = name.len().min(NAME_LEN);
        while !name.is_char_boundary(n) {
            n -= 1;
        }
        let mut field = [0u8; NAME_LEN];
        field[..n].copy_from_slice(&name.as_bytes()[..n]);
        Record {
            counters,
            mac,
            name: field,
        }
    }

    /// The name (up to the first NUL; what is not UTF-8 cut off).
    pub fn name(&self) -> &str {
        let end = self.name.iter().position(|&c| c == 0).unwrap_or(NAME_LEN);
        match core::str::from_utf8(&self.name[..end]) {
            Ok(s) => s,
            Err(e) => core::str::from_utf8(&self.name[..e.valid_up_to()]).unwrap_or(""),
        }
    }

    /// The record's bytes (in use).
    pub fn encode(&self) -> [u8; RECORD_LEN] {
        let mut b = [0u8; RECORD_LEN];
        let c = &self.counters;
        let words = [
            c.tx_num,
            c.tx_dropped,
            c.tx_bytes,
            c.rx_num,
            c.rx_dropped,
            c.rx_bytes,
        ];
        for (i, w) in words.iter().enumerate() {
            b[i * 8..i * 8 + 8].copy_from_slice(&w.to_le_bytes());
        }
        b[MAC_AT..NAME_AT].copy_from_slice(&self.mac);
        b[NAME_AT..IN_USE_AT].copy_from_slice(&self.name);
        b[IN_USE_AT] = 1;
        b
    }

    /// The record in `b` if it is in use.
    pub fn decode(b: &[u8; RECORD_LEN]) -> Option<Record> {
        if b[IN_USE_AT] == 0 {
            return None;
        }
        let w = |i: usize| u64::from_le_bytes(b[i * 8..i * 8 + 8].try_into().expect("8 bytes"));
        Some(Record {
            counters: PortCounters {
                tx_num: w(0),
                tx_dropped: w(1),
                tx_bytes: w(2),
                rx_num: w(3),
                rx_dropped: w(4),
                rx_bytes: w(5),
            },
            mac: b[MAC_AT..NAME_AT].try_into().expect("6 bytes"),
            name: b[NAME_AT..IN_USE_AT].try_into().expect("the name field"),
        })
    }
}

/// The header's bytes.
pub fn encode_header(age: u64, max_ports: usize) -> [u8; HEADER_LEN] {
    let mut b = [0u8; HEADER_LEN];
    b[..8].copy_from_slice(&age.to_le_bytes());
    b[8..].copy_from_slice(&(max_ports as u64).to_le_bytes());
    b
}

/// A statistics buffer, read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Snapshot<'a> {
    /// Grows whenever a port is created or freed.
    pub age: u64,
    /// How many records the buffer has (the switch's most ports).
    pub max_ports: u64,
    records: &'a [u8],
}

impl<'a> Snapshot<'a> {
    /// The records in use, with their port numbers.
    pub fn ports(&self) -> impl Iterator<Item = (usize, Record)> + 'a {
        self.records
            .chunks_exact(RECORD_LEN)
            .enumerate()
            .filter_map(|(i, r)| Some((i, Record::decode(r.try_into().ok()?)?)))
    }
}

/// Reads a statistics buffer; `None` if it is shorter than its header
/// says.
pub fn parse(buf: &[u8]) -> Option<Snapshot<'_>> {
    let head = buf.get(..HEADER_LEN)?;
    let age = u64::from_le_bytes(head[..8].try_into().ok()?);
    let max_ports = u64::from_le_bytes(head[8..].try_into().ok()?);
    let len = buffer_len(usize::try_from(max_ports).ok()?)?;
    let records = buf.get(HEADER_LEN..len)?;
    Some(Snapshot {
        age,
        max_ports,
        records,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_have_l4res_layout() {
        let counters = PortCounters {
            tx_num: 1,
            tx_dropped: 2,
            tx_bytes: 3,
            rx_num: 4,
            rx_dropped: 5,
            rx_bytes: 6,
        };
        let r = Record::new(counters, [2, 8, 0, 0, 0, 1], "a-rather-long-port-name[7]");
        let b = r.encode();
        assert_eq!(b[16], 3);
        assert_eq!(b[40], 6);
        assert_eq!(&b[48..54], &[2, 8, 0, 0, 0, 1]);
        assert_eq!(&b[54..74], b"a-rather-long-port-n");
        assert_eq!(b[74], 1);
        let back = Record::decode(&b).unwrap();
        assert_eq!(back.name(), "a-rather-long-port-n");
        assert_eq!(
            Record::new(counters, [0; 6], "aäääääääääää").name(),
            &"aäääääääääää"[..19]
        );
        assert_eq!((back.counters, back.mac), (r.counters, r.mac));
        assert_eq!(Record::decode(&[0; RECORD_LEN]), None);
    }

    #[test]
    fn buffers_parse_and_short_ones_are_refused() {
        let mut buf = [0u8; buffer_len(3).unwrap()];
        buf[..HEADER_LEN].copy_from_slice(&encode_header(7, 3));
        let r = Record::new(PortCounters::default(), [0; 6], "net1");
        let at = HEADER_LEN + RECORD_LEN;
        buf[at..at + RECORD_LEN].copy_from_slice(&r.encode());
        let s = parse(&buf).unwrap();
        assert_eq!((s.age, s.max_ports), (7, 3));
        assert!(s.ports().eq([(1, r)]));
        assert_eq!(parse(&buf[..buf.len() - 1]), None);
        assert_eq!(parse(&buf[..8]), None);
        let mut huge = [0u8; 80];
        huge[..HEADER_LEN].copy_from_slice(&encode_header(0, usize::MAX));
        assert_eq!(parse(&huge), None);
        assert_eq!(buffer_len(usize::MAX), None);
    }
}
