//! One port of the switch: the device side of a virtio-net device
//! (virtio 1.x, 5.1) whose queues and buffers are in the driver's memory,
//! registered with the port as dataspaces.
//!
//! Queue 0 receives (the switch writes frames into the driver's buffers),
//! queue 1 transmits. Every frame starts with the 12-byte
//! `virtio_net_hdr_v1` ([`NetHdr`]): the checksum and TCP segmentation
//! offloads of [`crate::offload`] are offered both ways; a frame is
//! written into one receive buffer (a chain), or with mergeable receive
//! buffers into as many as it takes. The
//! configuration space is the MAC address and the link status (always
//! up).

use std::sync::Arc;

use l4_abi::Error;
use l4_ipc::virtio::{
    DeviceInfo, F_VERSION_1, Negotiation, QueueConfig, StatusChange, config_read, queue_flags,
};
use uvmm::devices::virtio::queue::{Chain, F_EVENT_IDX, Queue, QueueError};
use uvmm::memory::{GuestMemory, Ram};

use crate::mac::Mac;
use crate::offload::{F_HOST_TSO4, F_HOST_TSO6, NetHdr, OFFLOADS, RxOffloads};
pub use crate::offload::{HDR_LEN, MAX_FRAME, MAX_GSO_FRAME};
use crate::vlan::Vlan;

/// The virtio device id of a network device.
pub const DEVICE_ID: u32 = 1;
/// The vendor id the ports report (L4Re's `L4VIRTIO_VENDOR_KK`).
pub const VENDOR_ID: u32 = 0x44;
/// `VIRTIO_NET_F_MAC`: the device has an address for the driver.
pub const F_MAC: u64 = 1 << 5;
/// `VIRTIO_NET_F_STATUS`: the configuration space has the link status.
pub const F_STATUS: u64 = 1 << 16;
/// `VIRTIO_NET_F_MRG_RXBUF`: a received frame may take several receive
/// buffers (`num_buffers` in its header).
pub const F_MRG_RXBUF: u64 = 1 << 15;
/// `VIRTIO_NET_S_LINK_UP`.
pub const LINK_UP: u16 = 1;
/// The receive queue.
pub const RXQ: usize = 0;
/// The transmit queue.
pub const TXQ: usize = 1;
/// Dataspaces a port takes unless its creation says otherwise.
pub const DEFAULT_DS_MAX: usize = 4;
/// The most dataspaces a port takes at all (L4Re's limit).
pub const DS_LIMIT: usize = 80;

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
    /// The port's VLAN (`vlan=access=N`, `vlan=trunk=N,M,...`,
    /// `vlan=trunk=all`; see [`crate::vlan`]).
    pub vlan: Vlan,
    /// A monitor port (`type=monitor`): it gets a copy of every frame the
    /// switch lets in and sends nothing.
    pub monitor: bool,
}

impl Default for PortOptions {
    fn default() -> PortOptions {
        PortOptions {
            ds_max: DEFAULT_DS_MAX,
            name: None,
            mac: None,
            vlan: Vlan::None,
            monitor: false,
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
    /// [`DS_LIMIT`]), `name=...`, `mac=...`, `type=monitor` (or `none`),
    /// `vlan=...` (not with `type=monitor`). Anything else is refused with
    /// a message naming it.
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
                    Some(("type", "monitor")) => o.monitor = true,
                    Some(("type", "none")) => o.monitor = false,
                    Some(("type", v)) => {
                        return Err(format!("type={v}: a port is of type monitor or none"));
                    }
                    Some(("vlan", v)) => o.vlan = Vlan::parse(v)?,
                    _ => {
                        return Err(format!(
                            "unknown port option '{s}' (ds-max=, name=, mac=, type=, vlan=)"
                        ));
                    }
                },
            }
        }
        if o.monitor && o.vlan != Vlan::None {
            return Err("a monitor port gets every VLAN's frames: it takes no vlan=".to_string());
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
    /// Frames of the driver dropped as malformed (too short, too long,
    /// an offload not negotiated).
    pub tx_bad: u64,
    /// Frames for this port dropped because its receive buffer was too
    /// small (the buffer went back empty).
    pub rx_too_small: u64,
    /// Frames of the driver not let into the switch: by the port's VLAN
    /// (see [`crate::vlan::Vlan::ingress`]), or sent on a monitor port.
    pub tx_dropped: u64,
    /// Bytes of the frames let into the switch (without headers).
    pub tx_bytes: u64,
    /// Bytes of the frames delivered to the driver (without headers).
    pub rx_bytes: u64,
}

impl Stats {
    /// The counters as the statistics interface (L4Re's) shows them:
    /// sent frames the switch took or dropped (malformed, or not let in),
    /// received frames delivered or dropped (no buffer, too small).
    pub fn counters(&self) -> l4_ipc::netstats::PortCounters {
        l4_ipc::netstats::PortCounters {
            tx_num: self.tx - self.tx_dropped,
            tx_dropped: self.tx_dropped + self.tx_bad,
            tx_bytes: self.tx_bytes,
            rx_num: self.rx,
            rx_dropped: self.rx_dropped + self.rx_too_small,
            rx_bytes: self.rx_bytes,
        }
    }
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
    /// Its address (configuration space), if it offers one.
    pub mac: Option<Mac>,
    opts: PortOptions,
    queue_max: u16,
    neg: Negotiation,
    mem: GuestMemory,
    queues: [Queue; 2],
    no_notify: [bool; 2],
    /// The chains of the frame being taken or delivered, kept so that
    /// forwarding a frame allocates nothing.
    chains: Vec<Chain>,
    /// The queue error that stopped the port (until the driver resets it).
    pub error: Option<QueueError>,
    /// Counters.
    pub stats: Stats,
}

impl Port {
    /// A port called `name` (unless the options name it) with address
    /// `mac` (`None`: the driver picks its address), whose queues have
    /// at most `queue_max` entries.
    pub fn new(name: String, mac: Option<Mac>, opts: PortOptions, queue_max: u16) -> Port {
        let f_mac = if mac.is_some() { F_MAC } else { 0 };
        Port {
            name: opts.name.clone().unwrap_or(name),
            mac,
            opts,
            queue_max,
            neg: Negotiation::new(f_mac | F_STATUS | F_MRG_RXBUF | OFFLOADS | F_EVENT_IDX),
            mem: GuestMemory::default(),
            queues: [Queue::default(), Queue::default()],
            no_notify: [false; 2],
            chains: Vec::new(),
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
            queue_max: self.queue_max,
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

    /// The port's VLAN.
    pub fn vlan(&self) -> &Vlan {
        &self.opts.vlan
    }

    /// Whether it is a monitor port.
    pub fn monitor(&self) -> bool {
        self.opts.monitor
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

    /// The driver's features: [`Error::Inval`] for features not offered or
    /// without those they depend on ([`crate::offload::DEPENDS`]).
    pub fn set_features(&mut self, f: u64) -> Result<(), Error> {
        if !crate::offload::consistent(f) {
            return Err(Error::Inval);
        }
        self.neg.set_features(f)
    }

    /// A status write; returns the status after it. When the driver
    /// starts the device, it is asked never to notify the receive queue:
    /// the switch does not wait for receive buffers (a frame finding none
    /// is lost), so refilling needs no exit of the guest and no kick.
    pub fn set_status(&mut self, s: u32) -> u32 {
        match self.neg.set_status(s) {
            StatusChange::Reset => {
                self.queues = [Queue::default(), Queue::default()];
                self.no_notify = [false; 2];
                self.error = None;
            }
            StatusChange::Start if self.queues[RXQ].ready => {
                if let Err(e) = self.queues[RXQ].set_notify(&self.mem, false) {
                    self.fail(e);
                }
            }
            _ => {}
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
        c.check(self.queue_max)?;
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
        q.event_idx = self.neg.has(F_EVENT_IDX);
        self.queues[i] = q;
        self.no_notify[i] = c.flags & queue_flags::NO_NOTIFY != 0;
        Ok(())
    }

    /// Reads the configuration space: the MAC address (zeroes without
    /// one), then the status.
    pub fn read_config(&self, offset: u32, size: u8) -> Result<u64, Error> {
        let mut space = [0u8; 8];
        space[..6].copy_from_slice(&self.mac.unwrap_or_default());
        space[6..].copy_from_slice(&LINK_UP.to_le_bytes());
        config_read(&space, offset, size)
    }

    /// A queue error: the port stops (`NEEDS_RESET`) and keeps the error.
    fn fail(&mut self, e: QueueError) -> QueueError {
        self.neg.fail();
        self.error = Some(e.clone());
        e
    }

    /// The largest frame the driver may transmit: [`MAX_GSO_FRAME`] with
    /// segmentation offload, [`MAX_FRAME`] without.
    pub fn max_tx_frame(&self) -> usize {
        if self.neg.features() & (F_HOST_TSO4 | F_HOST_TSO6) != 0 {
            MAX_GSO_FRAME
        } else {
            MAX_FRAME
        }
    }

    /// What frames the driver takes as they are.
    pub fn rx_offloads(&self) -> RxOffloads {
        RxOffloads::new(self.neg.features())
    }

    /// Takes the next frame the driver transmitted into `buf` (at least
    /// [`Port::max_tx_frame`] bytes): its header and length, or `None`
    /// when the transmit queue is empty. A malformed frame (shorter than
    /// the header plus an Ethernet header, longer than the port takes,
    /// or asking for an offload it may not, see [`NetHdr::check_tx`]) is
    /// given back to the driver and skipped. A malformed queue stops the
    /// port and is the error.
    pub fn take_frame(&mut self, buf: &mut [u8]) -> Result<Option<(NetHdr, usize)>, QueueError> {
        let mut chains = std::mem::take(&mut self.chains);
        if chains.is_empty() {
            chains.push(Chain::default());
        }
        let taken = self.take_frame_with(buf, &mut chains[0]);
        self.chains = chains;
        taken
    }

    /// [`Port::take_frame`] with `chain` for the descriptors.
    fn take_frame_with(
        &mut self,
        buf: &mut [u8],
        chain: &mut Chain,
    ) -> Result<Option<(NetHdr, usize)>, QueueError> {
        if !self.running() || !self.queues[TXQ].ready {
            return Ok(None);
        }
        let max = self.max_tx_frame().min(buf.len());
        let features = self.neg.features();
        loop {
            match self.queues[TXQ].pop_into(&self.mem, chain) {
                Ok(true) => {}
                Ok(false) => return Ok(None),
                Err(e) => return Err(self.fail(e)),
            }
            let total: u64 = chain.readable().map(|b| u64::from(b.len)).sum();
            let fits = total >= (HDR_LEN + 14) as u64 && total <= (HDR_LEN + max) as u64;
            let mut hdr = [0u8; HDR_LEN];
            let mut got = 0usize;
            if fits {
                // The header, then the frame after it.
                let mut at = 0usize;
                for b in chain.readable() {
                    let len = b.len as usize;
                    let h = (HDR_LEN - at.min(HDR_LEN)).min(len);
                    let n = len - h;
                    let read = self
                        .mem
                        .read(b.addr, &mut hdr[at..at + h])
                        .and_then(|()| self.mem.read(b.addr + h as u64, &mut buf[got..got + n]));
                    if let Err(e) = read {
                        return Err(self.fail(e.into()));
                    }
                    at += h;
                    got += n;
                }
            }
            if let Err(e) = self.queues[TXQ].add_used(&self.mem, chain.head, 0) {
                return Err(self.fail(e));
            }
            if fits {
                let mut h = NetHdr::parse(&hdr);
                if h.check_tx(got, features).is_ok() {
                    self.stats.tx += 1;
                    return Ok(Some((h, got)));
                }
            }
            self.stats.tx_bad += 1;
        }
    }

    /// Whether the driver wants an interrupt for the transmit queue's
    /// buffers given back since the last look.
    pub fn tx_interrupt_due(&mut self) -> bool {
        self.queues[TXQ].interrupt_due(&self.mem)
    }

    /// The transmit queue's size (0 before the driver sets it up).
    pub fn tx_queue_size(&self) -> u16 {
        self.queues[TXQ].size
    }

    /// Whether the driver may be told not to notify the transmit queue
    /// (its setup has [`queue_flags::NO_NOTIFY`]): the switch may then
    /// poll it instead.
    pub fn tx_quiet(&self) -> bool {
        self.no_notify[TXQ] && self.queues[TXQ].ready && self.running()
    }

    /// For a transmit queue with [`queue_flags::NO_NOTIFY`]: tells the
    /// driver not to kick while the switch works on it (`busy`), or to
    /// kick again. After clearing, the caller must look at the queue once
    /// more (a frame made available meanwhile came without a kick).
    pub fn set_tx_busy(&mut self, busy: bool) {
        let q = &self.queues[TXQ];
        if self.no_notify[TXQ] && q.ready {
            // A ring outside the memory was refused by `config_queue`.
            let _ = q.set_notify(&self.mem, !busy);
        }
    }

    /// Delivers `frame` with header `hdr` (which the driver takes, see
    /// [`Port::rx_offloads`]) into the driver's next receive buffer, or
    /// with [`F_MRG_RXBUF`] into as many as it takes. Dropped when the
    /// port is not running or the driver has no (or not enough) buffers;
    /// without [`F_MRG_RXBUF`] a buffer too small for the frame is given
    /// back empty (the driver counts a length error) and the frame
    /// dropped. A malformed receive queue stops the port and is the
    /// error.
    pub fn deliver(&mut self, hdr: &NetHdr, frame: &[u8]) -> Result<Delivery, QueueError> {
        let mut chains = std::mem::take(&mut self.chains);
        let delivered = self.deliver_with(hdr, frame, &mut chains);
        self.chains = chains;
        delivered
    }

    /// [`Port::deliver`] with `pool` for the descriptor chains (grown as
    /// needed, its first entries overwritten).
    fn deliver_with(
        &mut self,
        hdr: &NetHdr,
        frame: &[u8],
        pool: &mut Vec<Chain>,
    ) -> Result<Delivery, QueueError> {
        if !self.running() || !self.queues[RXQ].ready {
            self.stats.rx_dropped += 1;
            return Ok(Delivery::Dropped);
        }
        let merge = self.neg.has(F_MRG_RXBUF);
        let need = (HDR_LEN + frame.len()) as u64;
        let mut n = 0usize;
        let mut room = 0u64;
        while room < need && (merge || n == 0) {
            if n == pool.len() {
                pool.push(Chain::default());
            }
            match self.queues[RXQ].pop_into(&self.mem, &mut pool[n]) {
                Ok(true) => {
                    room += pool[n].writable().map(|b| u64::from(b.len)).sum::<u64>();
                    n += 1;
                }
                Ok(false) => {
                    // Not enough buffers: they stay the driver's.
                    self.queues[RXQ].unpop(n as u16);
                    self.stats.rx_dropped += 1;
                    return Ok(Delivery::Dropped);
                }
                Err(e) => return Err(self.fail(e)),
            }
        }
        let chains = &pool[..n];
        if room < need {
            let head = chains[0].head;
            if let Err(e) = self.queues[RXQ].add_used(&self.mem, head, 0) {
                return Err(self.fail(e));
            }
            self.stats.rx_too_small += 1;
            return Ok(Delivery::Dropped);
        }
        let hdr = NetHdr {
            num_buffers: n as u16,
            ..*hdr
        }
        .bytes();
        let mut parts = [&hdr[..], frame];
        for c in chains {
            let mut written = 0u32;
            for b in c.writable() {
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
            if let Err(e) = self.queues[RXQ].push_used(&self.mem, c.head, written) {
                return Err(self.fail(e));
            }
        }
        // The driver sees all buffers of the frame at once.
        if let Err(e) = self.queues[RXQ].publish_used(&self.mem) {
            return Err(self.fail(e));
        }
        self.stats.rx += 1;
        self.stats.rx_bytes += frame.len() as u64;
        Ok(Delivery::Done {
            notify: self.queues[RXQ].interrupt_due(&self.mem),
        })
    }

    /// Whether the driver negotiated virtio 1.x (the only layout served).
    pub fn modern(&self) -> bool {
        self.neg.has(F_VERSION_1)
    }
}
