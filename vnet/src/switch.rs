//! The switch: its ports, the learned addresses, and the forwarding of
//! frames from a port's transmit queue to the other ports' receive
//! queues.
//!
//! A frame belongs to the network (VLAN) its port puts it in, or is not
//! let in at all ([`crate::vlan`]). A frame to a unicast address learned
//! in its network goes to that port only; a frame to a broadcast or
//! multicast address, or to an address not learned there yet, goes to
//! every other port of its network (flooding); a frame to an address on
//! its own port is dropped. The monitor port, if there is one, gets a copy
//! of every frame let in. A port that has no receive buffer (its driver
//! does not read) loses the frame; nobody waits for it. A port whose
//! queues are malformed stops (`NEEDS_RESET`) and loses its frames until
//! its driver resets it; the others go on.

use std::collections::BTreeMap;

use l4_abi::Error;

use crate::mac::{self, Mac, MacTable, Route};
use crate::offload::{self, NetHdr};
use crate::options::Options;
use crate::port::{Delivery, MAX_GSO_FRAME, Port, PortOptions};
use crate::vlan::{self, Form};

/// A port's number.
pub type PortId = u32;

/// Addresses the switch learns at most.
pub const MAC_CAPACITY: usize = 1024;
/// Frames taken from one port before the others get their turn.
pub const BUDGET: usize = 64;

/// What a round of forwarding did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Outcome {
    /// Ports whose driver wants an interrupt now (frames for them).
    pub notify: Vec<PortId>,
    /// The source port's driver wants an interrupt for the buffers it
    /// sent (given back to it): the caller decides when.
    pub tx_done: bool,
    /// Ports that received frames.
    pub delivered: Vec<PortId>,
    /// The source port has more frames (its budget ran out).
    pub more: bool,
    /// Frames taken from the source port.
    pub sent: usize,
    /// The longest of them, in bytes.
    pub longest: usize,
    /// The source port's transmit queue ran empty and was left quiet
    /// (the driver does not notify): the caller looks at it again.
    pub quiet: bool,
    /// Ports that failed (malformed queues), with the error.
    pub failed: Vec<(PortId, String)>,
    /// Addresses learned (new, or moved to their port).
    pub learned: Vec<(PortId, Mac)>,
    /// Frames of a port that were not let in (its VLAN, a monitor port)
    /// or could not be made into what a receiver takes (a segmentation
    /// offload frame whose headers are not TCP), with the reason.
    pub dropped: Vec<(PortId, String)>,
}

impl Outcome {
    /// Empty again, keeping the lists' room (the switch reuses one).
    pub fn clear(&mut self) {
        // Every field named: a new one cannot be left out.
        let Outcome {
            notify,
            tx_done,
            delivered,
            more,
            sent,
            longest,
            quiet,
            failed,
            learned,
            dropped,
        } = self;
        notify.clear();
        *tx_done = false;
        delivered.clear();
        *more = false;
        *sent = 0;
        *longest = 0;
        *quiet = false;
        failed.clear();
        learned.clear();
        dropped.clear();
    }

    fn notify(&mut self, p: PortId) {
        if !self.notify.contains(&p) {
            self.notify.push(p);
        }
    }
}

/// What [`Switch::transmit`] does with a transmit queue it emptied.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Quiet {
    /// The driver is told to notify again.
    Never,
    /// Left quiet if it gave frames, else the driver is told to notify.
    IfSent,
    /// Left quiet.
    Always,
}

/// The switch.
#[derive(Debug)]
pub struct Switch {
    ports: BTreeMap<PortId, Port>,
    macs: MacTable<PortId>,
    next: PortId,
    /// What the command line asked for (queue size, addresses).
    opts: Options,
    /// The monitor port.
    monitor: Option<PortId>,
    /// The frame being forwarded.
    frame: Vec<u8>,
    /// The frame being forwarded with a VLAN tag added, changed or
    /// removed.
    edited: Vec<u8>,
    /// A frame made for a receiver without the sender's offloads.
    scratch: Vec<u8>,
    /// The ports the frame being forwarded goes to.
    targets: Vec<PortId>,
}

impl Default for Switch {
    fn default() -> Switch {
        Switch::new(Options::default())
    }
}

impl Switch {
    /// A switch without ports, for command line `opts`.
    pub fn new(opts: Options) -> Switch {
        Switch {
            ports: BTreeMap::new(),
            macs: MacTable::new(MAC_CAPACITY),
            next: 0,
            opts,
            monitor: None,
            frame: vec![0; MAX_GSO_FRAME],
            edited: Vec::new(),
            scratch: Vec::new(),
            targets: Vec::new(),
        }
    }

    /// The address a port gets unless it asks for one: locally
    /// administered, with the port number.
    pub fn default_mac(id: PortId) -> Mac {
        let b = id.to_be_bytes();
        [0x02, 0x08, b[0], b[1], b[2], b[3].wrapping_add(1)]
    }

    /// Adds a port; its number, or why it cannot be: as many ports as
    /// the command line allows ([`Error::NoSpc`]), a second monitor port
    /// or an address another port has ([`Error::Exist`]), with a message.
    pub fn add_port(&mut self, opts: PortOptions) -> Result<PortId, (Error, String)> {
        let id = self.next;
        if self.ports.len() >= self.opts.max_ports {
            let n = self.ports.len();
            return Err((
                Error::NoSpc,
                format!("the switch has {n} ports already, as many as -p allows"),
            ));
        }
        if let Some(m) = self.monitor.filter(|_| opts.monitor) {
            let name = self.ports.get(&m).map_or("?", |p| &p.name);
            return Err((
                Error::Exist,
                format!("there is a monitor port already ({name})"),
            ));
        }
        let mac = opts
            .mac
            .or(self.opts.default_mac.then(|| Switch::default_mac(id)));
        if let Some(m) = mac
            && let Some(p) = self.ports.values().find(|p| p.mac == Some(m))
        {
            let e = format!("address {} is {}'s already", mac::format(&m), p.name);
            return Err((Error::Exist, e));
        }
        self.next += 1;
        if opts.monitor {
            self.monitor = Some(id);
        }
        let port = Port::new(format!("port{id}"), mac, opts, self.opts.queue_size);
        self.ports.insert(id, port);
        Ok(id)
    }

    /// Removes a port and forgets its addresses.
    pub fn remove_port(&mut self, id: PortId) -> Option<Port> {
        self.macs.forget_port(id);
        if self.monitor == Some(id) {
            self.monitor = None;
        }
        self.ports.remove(&id)
    }

    /// What the command line asked for.
    pub fn options(&self) -> &Options {
        &self.opts
    }

    /// A port.
    pub fn port(&mut self, id: PortId) -> Option<&mut Port> {
        self.ports.get_mut(&id)
    }

    /// The ports.
    pub fn ports(&self) -> impl Iterator<Item = (PortId, &Port)> {
        self.ports.iter().map(|(&i, p)| (i, p))
    }

    /// The learned addresses.
    pub fn macs(&self) -> &MacTable<PortId> {
        &self.macs
    }

    /// Forwards up to [`BUDGET`] frames from port `src`'s transmit queue.
    ///
    /// `quiet` says whether a queue that ran empty is left as it was
    /// while the switch worked on it (its driver does not notify, see
    /// [`Port::set_tx_busy`]) for the caller to look at it again
    /// ([`Outcome::quiet`]), or its driver told to notify again. What it
    /// did goes into `out` (cleared first).
    pub fn transmit(&mut self, src: PortId, quiet: Quiet, out: &mut Outcome) {
        out.clear();
        let Some(port) = self.ports.get_mut(&src) else {
            return;
        };
        port.set_tx_busy(true);
        loop {
            if out.sent == BUDGET {
                out.more = true;
                break;
            }
            let port = self.ports.get_mut(&src).expect("the source port exists");
            let (hdr, len) = match port.take_frame(&mut self.frame) {
                Ok(Some(f)) => f,
                Ok(None) if quiet == Quiet::Always || (quiet == Quiet::IfSent && out.sent > 0) => {
                    out.quiet = true;
                    break;
                }
                Ok(None) => {
                    // Idle: let the driver kick again, then look once more
                    // for a frame made available meanwhile.
                    port.set_tx_busy(false);
                    match port.take_frame(&mut self.frame) {
                        Ok(Some(f)) => {
                            port.set_tx_busy(true);
                            f
                        }
                        Ok(None) => break,
                        Err(e) => {
                            out.failed.push((src, e.to_string()));
                            break;
                        }
                    }
                }
                Err(e) => {
                    out.failed.push((src, e.to_string()));
                    break;
                }
            };
            out.sent += 1;
            out.longest = out.longest.max(len);
            self.forward(src, &hdr, len, out);
        }
        out.tx_done = self
            .ports
            .get_mut(&src)
            .is_some_and(|p| p.tx_interrupt_due());
    }

    /// Sends the frame in `self.frame[..len]` with header `hdr` from
    /// `src` where it goes.
    fn forward(&mut self, src: PortId, hdr: &NetHdr, len: usize, out: &mut Outcome) {
        let frame = &self.frame[..len];
        let sender = self.ports.get_mut(&src).expect("the source port exists");
        let vid = if sender.monitor() {
            Err("sent on a monitor port".to_string())
        } else {
            sender.vlan().ingress(frame).map_err(|r| r.to_string())
        };
        let vid = match vid {
            Ok(v) => v,
            Err(why) => {
                sender.stats.tx_dropped += 1;
                out.dropped.push((src, why));
                return;
            }
        };
        sender.stats.tx_bytes += len as u64;
        let sent_tagged = sender.vlan().tagged();
        let dst: Mac = frame[0..6]
            .try_into()
            .expect("frames have an Ethernet header");
        let from: Mac = frame[6..12]
            .try_into()
            .expect("frames have an Ethernet header");
        if self.macs.learn(vid, &from, src) {
            out.learned.push((src, from));
        }
        let mut targets = std::mem::take(&mut self.targets);
        targets.clear();
        match self.macs.route(vid, &dst, src) {
            Route::Drop => {}
            Route::Port(p) => targets.push(p),
            Route::Flood => targets.extend(
                self.ports
                    .iter()
                    .filter(|(p, port)| **p != src && !port.monitor() && port.vlan().member(vid))
                    .map(|(p, _)| *p),
            ),
        }
        targets.extend(self.monitor);
        // The frame in the form made last (the same for every port of a
        // kind): `None` when that is the frame as sent.
        let mut made: Option<(Form, Option<isize>)> = None;
        for &t in &targets {
            let Some(port) = self.ports.get_mut(&t) else {
                continue;
            };
            let form = Form::for_port(port.vlan(), port.monitor(), vid);
            let by = match made {
                Some((f, by)) if f == form => by,
                _ => {
                    let by = vlan::convert(frame, sent_tagged, form, &mut self.edited);
                    made = Some((form, by));
                    by
                }
            };
            let (hdr, frame) = match by.map(|by| hdr.shifted(by)) {
                None => (*hdr, frame),
                Some(Some(h)) => (h, &self.edited[..]),
                Some(None) => {
                    out.dropped
                        .push((src, "its checksum starts inside the VLAN tag".into()));
                    continue;
                }
            };
            let takes = port.rx_offloads().takes(&hdr);
            let mut result = Ok(());
            // Whether the port took the frame (a segmentation goes on
            // only while it does).
            let mut deliver = |h: &NetHdr, f: &[u8]| {
                if result.is_err() {
                    return false;
                }
                match port.deliver(h, f) {
                    Ok(Delivery::Done { notify }) => {
                        if notify {
                            out.notify(t);
                        }
                        if !out.delivered.contains(&t) {
                            out.delivered.push(t);
                        }
                        true
                    }
                    Ok(Delivery::Dropped) => false,
                    Err(e) => {
                        result = Err(e.to_string());
                        false
                    }
                }
            };
            let plain = NetHdr::default();
            let made = if takes {
                deliver(&hdr, frame);
                Ok(())
            } else if hdr.gso() {
                // Cut into frames with complete checksums, while the port
                // has room for them.
                offload::segment(frame, &hdr, &mut self.scratch, |f| deliver(&plain, f)).map(|_| ())
            } else {
                self.scratch.clear();
                self.scratch.extend_from_slice(frame);
                offload::complete_checksum(&mut self.scratch, &hdr).map(|()| {
                    deliver(&plain, &self.scratch);
                })
            };
            if let Err(e) = result {
                out.failed.push((t, e));
            }
            if let Err(e) = made {
                // The sender's frame is bad for this receiver only in
                // form: it is lost, as on a wire.
                out.dropped.push((src, e.to_string()));
            }
        }
        self.targets = targets;
    }
}
