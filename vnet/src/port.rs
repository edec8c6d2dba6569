//! One port of the switch: the device side of a virtio-net device
//! (virtio 1.x, 5.1) whose queues and buffers are in the driver's memory,
//! registered with the port as dataspaces.
//!
//! Queue 0 receives (the switch writes frames into the driver's buffers),
//! queue 1 transmits. Every buffer starts with the 12-byte
//! `virtio_net_hdr_v1`; no offloads are offered, so the switch only
//! checks the header's size on transmit and writes an empty one (one
//! buffer) on receive. The configuration space is the MAC address and
//! the link status (always up).

use std::sync::Arc;

use l4_abi::Error;
use l4_ipc::virtio::{
    DeviceInfo, F_VERSION_1, Negotiation, QueueConfig, StatusChange, config_read, queue_flags,
};
use uvmm::devices::virtio::queue::{Queue, QueueError};
use uvmm::memory::{GuestMemory, Ram};

use crate::mac::Mac;

/// The virtio device id of a network device.
pub const DEVICE_ID: u32 = 1;
/// The vendor id the ports report (L4Re's `L4VIRTIO_VENDOR_KK`).
pub const VENDOR_ID: u32 = 0x44;
/// `VIRTIO_NET_F_MAC`: the device has an address for the driver.
pub const F_MAC: u64 = 1 << 5;
/// `VIRTIO_NET_F_STATUS`: the configuration space has the link status.
pub const F_STATUS: u64 = 1 << 16;
/// `VIRTIO_NET_S_LINK_UP`.
pub const LINK_UP: u16 = 1;
/// The receive queue.
pub const RXQ: usize = 0;
/// The transmit queue.
pub const TXQ: usize = 1;
/// The largest queue a port offers.
pub const QUEUE_MAX: u16 = 256;
/// `sizeof(struct virtio_net_hdr_v1)`.
pub const HDR_LEN: usize = 12;
/// The largest frame switched: 1500 bytes of payload, the Ethernet
/// header and a VLAN tag (no jumbo frames and no segmentation offload
/// are offered).
pub const MAX_FRAME: usize = 1518;
/// Dataspaces a port takes unless its creation says otherwise.
pub const DEFAULT_DS_MAX: usize = 4;
/// The most dataspaces a port takes at all.
pub const DS_LIMIT: usize = 64;
/// `VIRTQ_USED_F_NO_NOTIFY`.
const USED_NO_NOTIFY: u16 = 1;

/// What a port was created with: the arguments of the factory's
/// `create(0, ...)`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PortOptions {
    /// How many dataspaces the driver may register (`ds-max=N`, or a bare
    /// integer as in `create(0, 4)`).
    pub ds_max: usize,
    /// The port's name in the switch's messages (`name=...`).
    pub name: Option<String>,
    /// The address offered to the driver (`mac=aa:bb:cc:dd:ee:ff`);
    /// without it the switch makes one up from the port number.
    pub mac: Option<Mac>,
}

impl Default for PortOptions {
    fn default() -> PortOptions {
        PortOptions {
            ds_max: DEFAULT_DS_MAX,
            name: None,
            mac: None,
        }
    }
}

/// One creation argument.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CreateArg {
    /// An integer.
    Int(i64),
    /// A string.
    Str(String),
}

impl PortOptions {
    /// Reads the creation arguments: a bare integer or `ds-max=N` (1 to
    /// [`DS_LIMIT`]), `name=...`, `mac=...`. Anything else is refused
    /// with a message naming it.
    pub fn parse(args: &[CreateArg]) -> Result<PortOptions, String> {
        let mut o = PortOptions::default();
        let ds_max = |v: i64| -> Result<usize, String> {
            usize::try_from(v)
                .ok()
                .filter(|n| (1..=DS_LIMIT).contains(n))
                .ok_or_else(|| format!("ds-max {v}: must be 1 to {DS_LIMIT}"))
        };
        for a in args {
            match a {
                CreateArg::Int(v) => o.ds_max = ds_max(*v)?,
                CreateArg::Str(s) => match s.split_once('=') {
                    Some(("ds-max", v)) => {
                        o.ds_max =
                            ds_max(v.parse().map_err(|_| format!("ds-max={v}: not a number"))?)?
                    }
                    Some(("name", v)) => o.name = Some(v.to_string()),
                    Some(("mac", v)) => {
                        let m = crate::mac::parse(v).ok_or_else(|| {
                            format!("mac={v}: not an address like 02:00:00:00:00:01")
                        })?;
                        if crate::mac::is_group(&m) {
                            return Err(format!("mac={v}: a group address"));
                        }
                        o.mac = Some(m)
                    }
                    _ => return Err(format!("unknown port option '{s}' (ds-max=, name=, mac=)")),
                },
            }
        }
        Ok(o)
    }
}

/// What a port counted.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Frames the driver sent.
    pub tx: u64,
    /// Frames delivered to the driver.
    pub rx: u64,
    /// Frames for this port dropped because the driver had no receive
    /// buffer (it does not read).
    pub rx_dropped: u64,
    /// Frames of the driver dropped as malformed (too short, too long).
    pub tx_bad: u64,
}

/// The result of delivering a frame to a port.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Delivery {
    /// In a receive buffer; whether the driver wants an interrupt.
    Done { notify: bool },
    /// Dropped: the port is not running or has no buffer.
    Dropped,
}

/// The device side of one port.
#[derive(Debug)]
pub struct Port {
    /// The port's name.
    pub name: String,
    /// Its address (configuration space).
    pub mac: Mac,
    opts: PortOptions,
    neg: Negotiation,
    mem: GuestMemory,
    queues: [Queue; 2],
    no_notify: [bool; 2],
    /// The queue error that stopped the port (until the driver resets it).
    pub error: Option<QueueError>,
    /// Counters.
    pub stats: Stats,
}

impl Port {
    /// A port called `name` with address `mac` (unless the options name
    /// one).
    pub fn new(name: String, mac: Mac, opts: PortOptions) -> Port {
        Port {
            name: opts.name.clone().unwrap_or(name),
            mac: opts.mac.unwrap_or(mac),
            opts,
            neg: Negotiation::new(F_MAC | F_STATUS),
            mem: GuestMemory::default(),
            queues: [Queue::default(), Queue::default()],
            no_notify: [false; 2],
            error: None,
            stats: Stats::default(),
        }
    }

    /// What the device is.
    pub fn info(&self) -> DeviceInfo {
        DeviceInfo {
            device_id: DEVICE_ID,
            vendor_id: VENDOR_ID,
            features: self.neg.offered(),
            num_queues: 2,
            queue_max: QUEUE_MAX,
            config_size: 8,
        }
    }

    /// Whether the port serves its queues.
    pub fn running(&self) -> bool {
        self.neg.running()
    }

    /// The device status.
    pub fn status(&self) -> u32 {
        self.neg.status()
    }

    /// The number of registered dataspaces.
    pub fn dataspaces(&self) -> usize {
        self.mem.rams().len()
    }

    /// Whether another dataspace may be registered.
    pub fn takes_dataspace(&self) -> bool {
        self.dataspaces() < self.opts.ds_max
    }

    /// Shares `ram` (the dataspace's bytes) at device addresses `base ..
    /// base + ram.len()`: [`Error::NoSpc`] beyond `ds-max`,
    /// [`Error::Exist`] if it overlaps memory registered before,
    /// [`Error::Inval`] if empty or wrapping.
    pub fn register(&mut self, ram: Arc<Ram>, base: u64) -> Result<(), Error> {
        if !self.takes_dataspace() {
            return Err(Error::NoSpc);
        }
        let len = ram.len();
        if len == 0 || base.checked_add(len).is_none() {
            return Err(Error::Inval);
        }
        self.mem.add_ram(ram, &[(base, len)]).map_err(|e| match e {
            uvmm::memory::LayoutError::Overlap(..) => Error::Exist,
            _ => Error::Inval,
        })
    }

    /// The driver's features.
    pub fn set_features(&mut self, f: u64) -> Result<(), Error> {
        self.neg.set_features(f)
    }

    /// A status write; returns the status after it.
    pub fn set_status(&mut self, s: u32) -> u32 {
        if self.neg.set_status(s) == StatusChange::Reset {
            self.queues = [Queue::default(), Queue::default()];
            self.no_notify = [false; 2];
            self.error = None;
        }
        self.neg.status()
    }

    /// Sets up queue `index`: [`Error::Inval`] for a queue or setup the
    /// device does not have, [`Error::Range`] for rings outside the
    /// registered memory, [`Error::Perm`] while running.
    pub fn config_queue(&mut self, index: u32, c: QueueConfig) -> Result<(), Error> {
        let i = usize::try_from(index)
            .ok()
            .filter(|&i| i < self.queues.len())
            .ok_or(Error::Inval)?;
        c.check(QUEUE_MAX)?;
        if !self.neg.configurable() {
            return Err(Error::Perm);
        }
        if c.size != 0
            && c.areas()
                .iter()
                .any(|&(a, len)| self.mem.translate(a, len).is_err())
        {
            return Err(Error::Range);
        }
        let mut q = Queue::default();
        q.size = c.size;
        q.ready = c.size != 0;
        q.desc = c.desc;
        q.avail = c.avail;
        q.used = c.used;
        self.queues[i] = q;
        self.no_notify[i] = c.flags & queue_flags::NO_NOTIFY != 0;
        Ok(())
    }

    /// Reads the configuration space: the MAC address, then the status.
    pub fn read_config(&self, offset: u32, size: u8) -> Result<u64, Error> {
        let mut space = [0u8; 8];
        space[..6].copy_from_slice(&self.mac);
        space[6..].copy_from_slice(&LINK_UP.to_le_bytes());
        config_read(&space, offset, size)
    }

    /// A queue error: the port stops (`NEEDS_RESET`) and keeps the error.
    fn fail(&mut self, e: QueueError) -> QueueError {
        self.neg.fail();
        self.error = Some(e.clone());
        e
    }

    /// Takes the next frame the driver transmitted into `buf` (at least
    /// [`MAX_FRAME`] bytes): its length, or `None` when the transmit queue
    /// is empty. A malformed frame (shorter than the header plus an
    /// Ethernet header, or longer than [`MAX_FRAME`]) is given back to
    /// the driver and skipped. A malformed queue stops the port and is
    /// the error.
    pub fn take_frame(&mut self, buf: &mut [u8]) -> Result<Option<usize>, QueueError> {
        if !self.running() || !self.queues[TXQ].ready {
            return Ok(None);
        }
        loop {
            let q = &mut self.queues[TXQ];
            let chain = match q.pop(&self.mem) {
                Ok(Some(c)) => c,
                Ok(None) => return Ok(None),
                Err(e) => return Err(self.fail(e)),
            };
            let total: u64 = chain.readable().map(|b| u64::from(b.len)).sum();
            let fits = total >= (HDR_LEN + 14) as u64
                && total <= (HDR_LEN + MAX_FRAME.min(buf.len())) as u64;
            let mut got = 0usize;
            if fits {
                // Gather the frame after the header.
                let mut skip = HDR_LEN as u64;
                for b in chain.readable() {
                    let len = u64::from(b.len);
                    let from = skip.min(len);
                    skip -= from;
                    let n = (len - from) as usize;
                    if let Err(e) = self.mem.read(b.addr + from, &mut buf[got..got + n]) {
                        return Err(self.fail(e.into()));
                    }
                    got += n;
                }
            }
            if let Err(e) = self.queues[TXQ].add_used(&self.mem, chain.head, 0) {
                return Err(self.fail(e));
            }
            if fits {
                self.stats.tx += 1;
                return Ok(Some(got));
            }
            self.stats.tx_bad += 1;
        }
    }

    /// Whether the driver wants an interrupt for the transmit queue's
    /// used buffers.
    pub fn tx_wants_interrupt(&self) -> bool {
        self.queues[TXQ].wants_interrupt(&self.mem)
    }

    /// For a queue with [`queue_flags::NO_NOTIFY`]: tells the driver not
    /// to kick while the switch works on it (`busy`), or to kick again.
    /// After clearing, the caller must look at the queue once more (a
    /// frame made available meanwhile came without a kick).
    pub fn set_tx_busy(&mut self, busy: bool) {
        let q = &self.queues[TXQ];
        if self.no_notify[TXQ] && q.ready {
            let _ = self
                .mem
                .write_u16(q.used, if busy { USED_NO_NOTIFY } else { 0 });
            std::sync::atomic::fence(std::sync::atomic::Ordering::SeqCst);
        }
    }

    /// Delivers `frame` into the driver's next receive buffer, after an
    /// empty header. Dropped when the port is not running or the driver
    /// has no buffer; a frame larger than the buffer is cut (the driver
    /// sees the length it got). A malformed receive queue stops the port
    /// and is the error.
    pub fn deliver(&mut self, frame: &[u8]) -> Result<Delivery, QueueError> {
        if !self.running() || !self.queues[RXQ].ready {
            self.stats.rx_dropped += 1;
            return Ok(Delivery::Dropped);
        }
        let chain = match self.queues[RXQ].pop(&self.mem) {
            Ok(Some(c)) => c,
            Ok(None) => {
                self.stats.rx_dropped += 1;
                return Ok(Delivery::Dropped);
            }
            Err(e) => return Err(self.fail(e)),
        };
        let mut hdr = [0u8; HDR_LEN];
        // num_buffers = 1.
        hdr[10] = 1;
        let mut parts = [&hdr[..], frame];
        let mut written = 0u32;
        for b in chain.writable() {
            let mut room = b.len as usize;
            let mut at = b.addr;
            for p in parts.iter_mut() {
                let n = p.len().min(room);
                if n == 0 {
                    continue;
                }
                if let Err(e) = self.mem.write(at, &p[..n]) {
                    return Err(self.fail(e.into()));
                }
                *p = &p[n..];
                at += n as u64;
                room -= n;
                written += n as u32;
            }
        }
        if let Err(e) = self.queues[RXQ].add_used(&self.mem, chain.head, written) {
            return Err(self.fail(e));
        }
        self.stats.rx += 1;
        Ok(Delivery::Done {
            notify: self.queues[RXQ].wants_interrupt(&self.mem),
        })
    }

    /// Whether the driver negotiated virtio 1.x (the only layout served).
    pub fn modern(&self) -> bool {
        self.neg.has(F_VERSION_1)
    }
}
