//! The switch's IPC side: the Factory protocol on the `svr` gate (new
//! ports, the statistics capability), the virtio protocol on every port's
//! gate, the statistics interface ([`l4_ipc::netstats`]), the ports' kick Irqs,
//! and freeing ports whose driver went away, over a [`Backend`] that does
//! what needs the kernel. The server binary implements the backend with
//! system calls; the tests with a fake, through [`l4_ipc::Loopback`].
//!
//! # Labels
//!
//! The `svr` gate has [`labels::FACTORY`]; port `n`'s gate
//! [`port_label`]`(n)` and its kick Irq the same plus [`labels::KICK`].
//! Labels keep their low two bits clear (the kernel puts the caller's
//! rights there).
//!
//! # Fairness
//!
//! A kick makes the port *pending*; [`Service::work`] takes at most
//! [`crate::switch::BUDGET`] frames from one pending port before the next
//! one's turn, and the server loop calls it with a zero receive timeout
//! while work is left, so that one busy sender cannot starve the others
//! or the control requests.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;

use l4::ServerCaps;
use l4_abi::proto::varg::Varg;
use l4_abi::utcb::MR_COUNT;
use l4_abi::{CapRights, Error, MsgTag};
use l4_ipc::codec::Reader;
use l4_ipc::netstats::{self, Record, STATS_CREATE, SwitchStats, SwitchStatsServer};
use l4_ipc::protocols::Factory;
use l4_ipc::server::{encode_reply, error_reply};
use l4_ipc::varg::{VarArgs, str_bytes};
use l4_ipc::virtio::{DeviceInfo, QueueConfig, VIRTIO_PROTO, Virtio, VirtioServer};
use l4_ipc::{Arg, CapArg, Ctx, RcvCap};
use uvmm::memory::Ram;

use crate::mac;
use crate::options::{Component, Level, Options};
use crate::port::{CreateArg, PortOptions};
use crate::switch::{Outcome, PortId, Quiet, Switch};
use crate::vlan::Vlan;

/// The labels of the switch's gates and Irqs.
pub mod labels {
    /// The `svr` gate (the Factory).
    pub const FACTORY: u64 = 0x10;
    /// The statistics gate (`create(1)`).
    pub const STATS: u64 = 0x20;
    /// The ports' gates (the low two bits are the rights, the third
    /// [`KICK`]).
    pub const PORTS: l4_ipc::LabelRange = l4_ipc::LabelRange::new(0x1000, 3);
    /// Added to a port's gate label: its kick Irq.
    pub const KICK: u64 = 0x4;
}

/// The label of port `id`'s gate.
pub const fn port_label(id: PortId) -> u64 {
    labels::PORTS.label(id as u64)
}

/// The port and whether it is the kick Irq, for a label.
pub fn label_port(label: u64) -> Option<(PortId, bool)> {
    let (n, low) = labels::PORTS.object(label)?;
    Some((PortId::try_from(n).ok()?, low & labels::KICK != 0))
}

/// Learned addresses (and dropped frames) logged per port at most.
pub const LEARN_LOG_MAX: usize = 4;

/// How often ports whose driver went away are looked for, in ms.
pub const GC_PERIOD_MS: u64 = 1000;

/// How long after forwarding a port's frames the switch looks at its
/// transmit queue again, in µs, while the driver does not notify (see
/// [`Service::work`]).
pub const POLL_US: u64 = 4000;

/// How long the interrupt for a few small sent buffers given back may
/// wait, in µs, for an interrupt the port gets anyway (a frame for it:
/// the driver's handler looks at both queues), see [`Service::work`].
pub const TX_DONE_US: u64 = 4000;

/// The longest frame (bytes) whose sent buffer's interrupt may wait: a
/// ping, an ARP request, a TCP acknowledgement. A TCP sender's data
/// frames get theirs at once: TCP holds back its next segments until
/// the buffers of the last ones come back (TCP small queues).
pub const TX_DONE_SMALL: usize = 256;

/// What the switch needs from the kernel: its capabilities (the ports'
/// gates and kick Irqs, what drivers send) and clock, dataspaces and a
/// log.
pub trait Backend {
    /// The switch's capabilities.
    type Caps: ServerCaps;
    /// The switch's capabilities.
    fn caps(&mut self) -> &mut Self::Caps;
    /// Creates an Irq attached to the server thread with `label`; its
    /// capability index.
    fn create_irq(&mut self, label: u64) -> Result<u64, Error>;
    /// Maps `size` bytes of dataspace `ds` from `offset`.
    fn attach(&mut self, ds: u64, offset: u64, size: u64) -> Result<Arc<Ram>, Error>;
    /// A new dataspace of `size` bytes (zeroed), and where it is mapped.
    fn alloc(&mut self, size: u64) -> Result<(u64, Arc<Ram>), Error>;
    /// Whether the object behind `cap` still exists (a driver's Irq goes
    /// with the driver's task).
    fn is_alive(&mut self, cap: u64) -> bool;
    /// Writes a line to the switch's log.
    fn log(&mut self, line: &str);
}

/// Why a port's transmit queue is looked at.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Look {
    /// Its driver notified, or its poll is due.
    Due,
    /// Another port's notification woke the switch.
    Sweep,
}

/// A port's capabilities.
#[derive(Debug, Default)]
struct PortCaps {
    gate: u64,
    kick: Option<u64>,
    guest_irq: Option<u64>,
    dataspaces: Vec<u64>,
    had_users: bool,
    /// When (µs) its transmit queue is looked at again, while the switch
    /// polls it.
    poll_at: Option<u64>,
    /// When (µs) its driver gets the interrupt for sent buffers it was
    /// given back, unless a frame for it brings one first.
    tx_done_at: Option<u64>,
    learned_logged: usize,
    dropped_logged: usize,
}

/// Puts port `id` on the list of ports to look at (once: a second
/// reason to look makes it [`Look::Due`] if either is).
fn look(pending: &mut VecDeque<(PortId, Look)>, id: PortId, why: Look) {
    match pending.iter_mut().find(|(p, _)| *p == id) {
        Some((_, w)) if why == Look::Due => *w = Look::Due,
        Some(_) => {}
        None => pending.push_back((id, why)),
    }
}

/// Interrupts the driver of the port with capabilities `c` (which then
/// also finds the sent buffers given back meanwhile).
fn raise<B: Backend>(backend: &mut B, c: &mut PortCaps) {
    c.tx_done_at = None;
    if let Some(irq) = c.guest_irq {
        backend.caps().trigger(irq);
    }
}

/// The switch and its capabilities.
pub struct Service<B> {
    /// The switch.
    pub switch: Switch,
    /// The kernel side.
    pub backend: B,
    caps: BTreeMap<PortId, PortCaps>,
    pending: VecDeque<(PortId, Look)>,
    /// The statistics gate and buffer, made by the first `create(1)`.
    stats: Option<Stats>,
    /// Grows whenever a port is created or freed (the buffer's `age`).
    age: u64,
    last_gc: u64,
    /// What the last round of forwarding did (kept for its room).
    out: Outcome,
}

impl<B: Backend> Service<B> {
    /// A switch without ports, with the default options.
    pub fn new(backend: B) -> Service<B> {
        Service::with_options(backend, Options::default())
    }

    /// A switch without ports, for command line `opts`.
    pub fn with_options(backend: B, opts: Options) -> Service<B> {
        Service {
            switch: Switch::new(opts),
            backend,
            caps: BTreeMap::new(),
            pending: VecDeque::new(),
            stats: None,
            age: 0,
            last_gc: 0,
            out: Outcome::default(),
        }
    }

    /// The gate of port `id`.
    pub fn gate(&self, id: PortId) -> Option<u64> {
        self.caps.get(&id).map(|c| c.gate)
    }

    /// The number of ports.
    pub fn port_count(&self) -> usize {
        self.caps.len()
    }

    /// Handles a message received with `label`: the reply, or `None` for
    /// one that wants none (a kick).
    pub fn serve(&mut self, label: u64, tag: MsgTag, mrs: &mut [u64; MR_COUNT]) -> Option<MsgTag> {
        let ctx = Ctx::new(label, tag, mrs);
        let label = ctx.label();
        if label == labels::FACTORY {
            return Some(self.factory(tag, mrs));
        }
        if label == labels::STATS && self.stats.is_some() {
            return Some(SwitchStats::dispatch(self, &ctx, tag, mrs));
        }
        match label_port(label).filter(|(id, _)| self.caps.contains_key(id)) {
            Some((id, true)) => {
                self.kick(id);
                None
            }
            Some((id, false)) => Some(Virtio::dispatch(
                &mut PortObj { svc: self, id },
                &ctx,
                tag,
                mrs,
            )),
            None => Some(error_reply(Error::NoEnt)),
        }
    }

    /// A port was kicked: it has frames to send. The switch, awake
    /// anyway, also looks at the queues it polls.
    pub fn kick(&mut self, id: PortId) {
        self.look(id, Look::Due);
        for (&p, c) in &self.caps {
            if c.poll_at.is_some() {
                look(&mut self.pending, p, Look::Sweep);
            }
        }
    }

    fn look(&mut self, id: PortId, why: Look) {
        look(&mut self.pending, id, why);
    }

    /// Stops polling port `id`; whether it was polled.
    fn unpoll(&mut self, id: PortId) -> bool {
        self.caps
            .get_mut(&id)
            .and_then(|c| c.poll_at.take())
            .is_some()
    }

    /// Whether ports wait for [`Service::work`].
    pub fn has_work(&self) -> bool {
        !self.pending.is_empty()
    }

    /// Forwards one budget of frames from the next pending port.
    ///
    /// A port whose driver may be told not to notify ([`Port::tx_quiet`])
    /// is not told to notify again when its queue ran empty after giving
    /// frames: the switch looks at it again [`POLL_US`] later (or
    /// earlier, when another port's notification wakes it). The driver
    /// may notify again after the look on time that finds nothing, or as
    /// soon as a frame for the port finds its queue empty (its driver may
    /// answer at once). A sender that keeps sending (a TCP stream) then
    /// costs one look per [`POLL_US`] instead of a notification (a guest
    /// exit) and a wake-up of the switch per frame, and its frames reach
    /// the receiver, and the buffers come back to it, a batch at a time,
    /// each with one interrupt; a lone frame (a ping) still goes at once.
    ///
    /// [`Port::tx_quiet`]: crate::port::Port::tx_quiet
    pub fn work(&mut self) {
        let Some((id, why)) = self.pending.pop_front() else {
            return;
        };
        let quiet = match why {
            _ if !self.switch.port(id).is_some_and(|p| p.tx_quiet()) => Quiet::Never,
            Look::Due => Quiet::IfSent,
            Look::Sweep => Quiet::Always,
        };
        let mut out = std::mem::take(&mut self.out);
        self.switch.transmit(id, quiet, &mut out);
        if out.more {
            self.pending.push_back((id, why));
        } else if out.quiet && out.sent > 0 {
            let at = self.backend.caps().now_us() + POLL_US;
            if let Some(c) = self.caps.get_mut(&id) {
                c.poll_at = Some(at);
            }
        }
        for &p in &out.delivered {
            if self.unpoll(p) {
                self.look(p, Look::Due);
            }
        }
        for (p, m) in &out.learned {
            self.note_learned(*p, m);
        }
        for (p, e) in &out.dropped {
            self.note_dropped(*p, e);
        }
        for (p, e) in &out.failed {
            let name = self
                .switch
                .port(*p)
                .map(|p| p.name.clone())
                .unwrap_or_default();
            self.say(
                Component::Queue,
                Level::Warn,
                &format!("{name}: {e}; stopped until its driver resets it"),
            );
        }
        if out.tx_done {
            self.tx_done(id, out.sent, out.longest);
        }
        for &p in &out.notify {
            self.interrupt(p);
        }
        self.out = out;
    }

    /// Forwards from the pending ports ([`Service::work`]) until none is
    /// left, but for at most two rounds over the ports: a port with more
    /// to send than that goes on after the switch looked for messages
    /// again, so busy senders cannot keep it from its gates and kicks.
    /// One wake-up of the switch (a frame to forward, the port it
    /// delivered to looked at) then ends in one wait for the next
    /// message, instead of a poll for messages between the two looks.
    pub fn work_rounds(&mut self) {
        for _ in 0..2 * self.caps.len().max(1) {
            if !self.has_work() {
                return;
            }
            self.work();
        }
    }

    /// Port `id`'s driver wants an interrupt for the `sent` buffers it was
    /// just given back, the longest `longest` bytes. A few small frames (a
    /// ping, an ARP request, TCP acknowledgements: at most
    /// [`TX_DONE_SMALL`] bytes) wait up to [`TX_DONE_US`] for the
    /// interrupt of a frame for the port, usually the answer, so that an
    /// exchange interrupts each guest once instead of twice, and the
    /// answer need not wait while the sender takes its buffers back.
    /// Longer frames, and a burst (a quarter of the queue or more: the
    /// driver may be waiting for room), get it now.
    fn tx_done(&mut self, id: PortId, sent: usize, longest: usize) {
        let burst = self
            .switch
            .port(id)
            .map_or(1, |p| usize::from(p.tx_queue_size() / 4).max(1));
        if sent >= burst || longest > TX_DONE_SMALL {
            self.interrupt(id);
            return;
        }
        let at = self.backend.caps().now_us() + TX_DONE_US;
        if let Some(c) = self.caps.get_mut(&id) {
            c.tx_done_at.get_or_insert(at);
        }
    }

    /// Interrupts port `id`'s driver (which then also finds the sent
    /// buffers given back meanwhile).
    fn interrupt(&mut self, id: PortId) {
        if let Some(c) = self.caps.get_mut(&id) {
            raise(&mut self.backend, c);
        }
    }

    /// Logs a learned address, the first [`LEARN_LOG_MAX`] of each port
    /// (so that a driver sending from ever new addresses cannot flood the
    /// log).
    fn note_learned(&mut self, id: PortId, m: &mac::Mac) {
        let m = mac::format(m);
        self.log_limited(
            (Component::Port, Level::Info),
            id,
            |c| &mut c.learned_logged,
            |name| format!("{name}: {m} is here"),
        );
    }

    /// Logs a frame of port `id` that a receiver could not take, the
    /// first [`LEARN_LOG_MAX`] of each port.
    fn note_dropped(&mut self, id: PortId, why: &str) {
        self.log_limited(
            (Component::Packet, Level::Warn),
            id,
            |c| &mut c.dropped_logged,
            |name| format!("{name}: frame dropped: {why}"),
        );
    }

    /// Logs `line(port name)` of component and level `what` for port
    /// `id` unless its counter `count` reached [`LEARN_LOG_MAX`] (no limit
    /// when the component's level is above `what`'s: `-v`, `-D`).
    fn log_limited(
        &mut self,
        (c, l): (Component, Level),
        id: PortId,
        count: impl FnOnce(&mut PortCaps) -> &mut usize,
        line: impl FnOnce(&str) -> String,
    ) {
        let verbosity = self.switch.options().verbosity;
        if !verbosity.shows(c, l) {
            return;
        }
        let unlimited = verbosity.level(c) >= Level::Debug;
        let Some(n) = self.caps.get_mut(&id).map(count) else {
            return;
        };
        if *n >= LEARN_LOG_MAX && !unlimited {
            return;
        }
        *n += 1;
        if let Some(p) = self.switch.port(id) {
            let line = line(&p.name);
            self.backend.log(&line);
        }
    }

    /// Logs `line`, a message of component `c` at level `l`, if the
    /// command line lets it.
    fn say(&mut self, c: Component, l: Level, line: &str) {
        if self.switch.options().verbosity.shows(c, l) {
            self.backend.log(line);
        }
    }

    /// The receive timeout expired (or the loop is idle): looks at the
    /// polled transmit queues that are due, gives the interrupts for sent
    /// buffers that waited long enough, and frees ports whose driver went
    /// away: nobody holds the port's gate any more (after someone did), or
    /// the driver's notification Irq is gone (its task ended, while
    /// whoever created the port may still hold it).
    pub fn timeout(&mut self) {
        let now_us = self.backend.caps().now_us();
        for (&id, c) in self.caps.iter_mut() {
            if c.poll_at.is_some_and(|at| at <= now_us) {
                c.poll_at = None;
                look(&mut self.pending, id, Look::Due);
            }
            if c.tx_done_at.is_some_and(|at| at <= now_us) {
                raise(&mut self.backend, c);
            }
        }
        let now = now_us / 1000;
        if now < self.last_gc + GC_PERIOD_MS {
            return;
        }
        self.last_gc = now;
        let mut gone = Vec::new();
        for (&id, c) in self.caps.iter_mut() {
            if let Some(irq) = c.guest_irq
                && !self.backend.is_alive(irq)
            {
                gone.push(id);
                continue;
            }
            match self.backend.caps().has_users(c.gate) {
                Ok(true) => c.had_users = true,
                Ok(false) if c.had_users => gone.push(id),
                _ => {}
            }
        }
        for id in gone {
            self.free_port(id);
        }
    }

    /// How long the loop may wait for a message, in µs (`Some(0)`: work
    /// is pending).
    pub fn next_timeout_us(&mut self) -> Option<u64> {
        if self.has_work() {
            return Some(0);
        }
        if self.caps.is_empty() {
            return None;
        }
        let now = self.backend.caps().now_us();
        let gc = ((self.last_gc + GC_PERIOD_MS) * 1000).saturating_sub(now);
        let poll = self
            .caps
            .values()
            .flat_map(|c| [c.poll_at, c.tx_done_at])
            .flatten()
            .min()
            .map(|at| at.saturating_sub(now));
        Some(poll.map_or(gc, |p| p.min(gc)))
    }

    /// Frees port `id` and its capabilities.
    pub fn free_port(&mut self, id: PortId) {
        let Some(c) = self.caps.remove(&id) else {
            return;
        };
        self.age += 1;
        self.pending.retain(|&(p, _)| p != id);
        if let Some(p) = self.switch.remove_port(id) {
            self.say(
                Component::Port,
                Level::Info,
                &format!(
                    "{}: its driver is gone; port freed ({} frames sent, {} not let in, {} received, {} dropped)",
                    p.name, p.stats.tx, p.stats.tx_dropped, p.stats.rx, p.stats.rx_dropped
                ),
            );
        }
        self.backend.caps().delete(c.gate);
        if let Some(k) = c.kick {
            self.backend.caps().delete(k);
        }
        if let Some(i) = c.guest_irq {
            self.backend.caps().release(i);
        }
        for d in c.dataspaces {
            self.backend.caps().release(d);
        }
    }

    /// The Factory protocol: `create(0, args...)` makes a port,
    /// `create(1)` hands out the statistics capability.
    fn factory(&mut self, tag: MsgTag, mrs: &mut [u64; MR_COUNT]) -> MsgTag {
        match self.create(tag, mrs) {
            Ok(gate) => encode_reply(&RcvCap::new(gate, CapRights::RWS), mrs),
            Err(e) => error_reply(e),
        }
    }

    fn create(&mut self, tag: MsgTag, mrs: &[u64; MR_COUNT]) -> Result<u64, Error> {
        if tag.label() != Factory::ID {
            return Err(Error::BadProto);
        }
        let mut r = Reader::new(tag, &mrs[..])?;
        let proto = r.word()? as i64;
        let args = VarArgs::decode(&mut r)?;
        r.finish()?;
        match proto {
            VIRTIO_PROTO => self.create_port(&args),
            STATS_CREATE if args.iter().next().is_none() => self.create_stats(),
            STATS_CREATE => {
                self.say(
                    Component::Request,
                    Level::Warn,
                    "create(1): the statistics interface takes no arguments",
                );
                Err(Error::Inval)
            }
            _ => {
                self.say(
                    Component::Request,
                    Level::Warn,
                    &format!(
                        "create: protocol {proto} refused: 0 makes a port (virtio), 1 the statistics interface"
                    ),
                );
                Err(Error::NoSys)
            }
        }
    }

    /// The statistics gate, made with its buffer the first time.
    fn create_stats(&mut self) -> Result<u64, Error> {
        if let Some(s) = &self.stats {
            return Ok(s.gate);
        }
        let max = self.switch.options().max_ports;
        // A record for each port `-p` allows (its number is not bounded).
        let Some(size) =
            netstats::buffer_len(max).and_then(|n| (n as u64).checked_next_multiple_of(4096))
        else {
            self.say(
                Component::Request,
                Level::Warn,
                &format!("create(1): no statistics buffer for {max} ports"),
            );
            return Err(Error::NoMem);
        };
        let (ds, buf) = self.backend.alloc(size)?;
        let gate = match self.backend.caps().create_gate(labels::STATS) {
            Ok(g) => g,
            Err(e) => {
                self.backend.caps().delete(ds);
                return Err(e);
            }
        };
        self.stats = Some(Stats { gate, ds, buf });
        self.write_stats()?;
        Ok(gate)
    }

    /// Writes every port's counters into the statistics buffer: the
    /// ports in the order they were made, in records 0, 1, ...; the
    /// records after them zeroed (not in use). A record's number is not
    /// the port's: ports are found by name, again whenever `age` grew.
    fn write_stats(&mut self) -> Result<(), Error> {
        let Some(s) = &self.stats else {
            return Err(Error::NoEnt);
        };
        let max = self.switch.options().max_ports;
        let put = |at: usize, bytes: &[u8]| {
            s.buf
                .write(
                    (netstats::HEADER_LEN + at * netstats::RECORD_LEN) as u64,
                    bytes,
                )
                .map_err(|_| Error::Inval)
        };
        let mut n = 0;
        for (_, p) in self.switch.ports().take(max) {
            let r = Record::new(p.stats.counters(), p.mac.unwrap_or_default(), &p.name);
            put(n, &r.encode())?;
            n += 1;
        }
        for at in n..max {
            put(at, &[0; netstats::RECORD_LEN])?;
        }
        s.buf
            .write(0, &netstats::encode_header(self.age, max))
            .map_err(|_| Error::Inval)
    }

    fn create_port(&mut self, args: &VarArgs) -> Result<u64, Error> {
        let mut parsed = Vec::new();
        let mut buf = [0u8; 512];
        for a in args.iter() {
            match a.map_err(|()| Error::Inval)? {
                Varg::Nil => {}
                Varg::Umword(v) => parsed.push(CreateArg::Int(v as i64)),
                Varg::Mword(v) => parsed.push(CreateArg::Int(v)),
                s @ Varg::Str(..) => {
                    let b = str_bytes(&s, &mut buf).ok_or(Error::TooBig)?;
                    let s = String::from_utf8(b.to_vec()).map_err(|_| Error::Inval)?;
                    parsed.push(CreateArg::Str(s));
                }
                Varg::Fpage(_) => return Err(Error::Inval),
            }
        }
        let opts = match PortOptions::parse(&parsed) {
            Ok(o) => o,
            Err(e) => {
                self.say(Component::Request, Level::Warn, &format!("create: {e}"));
                return Err(Error::Inval);
            }
        };
        let id = match self.switch.add_port(opts) {
            Ok(id) => id,
            Err((err, e)) => {
                self.say(Component::Request, Level::Warn, &format!("create: {e}"));
                return Err(err);
            }
        };
        let gate = match self.backend.caps().create_gate(port_label(id)) {
            Ok(g) => g,
            Err(e) => {
                self.switch.remove_port(id);
                return Err(e);
            }
        };
        self.caps.insert(
            id,
            PortCaps {
                gate,
                ..PortCaps::default()
            },
        );
        self.age += 1;
        if let Some(p) = self.switch.port(id) {
            let mut line = match p.mac {
                Some(m) => format!("{}: created, address {}", p.name, mac::format(&m)),
                None => format!("{}: created, no address (its driver picks one)", p.name),
            };
            if p.monitor() {
                line.push_str(", monitor port");
            }
            if *p.vlan() != Vlan::None {
                line.push_str(&format!(", {}", p.vlan()));
            }
            self.say(Component::Port, Level::Info, &line);
        }
        Ok(gate)
    }
}

/// The statistics gate's capability and buffer.
#[derive(Debug)]
struct Stats {
    gate: u64,
    ds: u64,
    buf: Arc<Ram>,
}

impl<B: Backend> SwitchStatsServer for Service<B> {
    fn get_buffer(&mut self, _: &Ctx) -> Result<RcvCap, Error> {
        let s = self.stats.as_ref().ok_or(Error::NoEnt)?;
        // Read-only: clients look, only the switch writes.
        Ok(RcvCap::new(s.ds, CapRights::RO))
    }

    fn sync(&mut self, _: &Ctx) -> Result<(), Error> {
        self.write_stats()
    }
}

/// The virtio protocol on one port's gate.
struct PortObj<'a, B> {
    svc: &'a mut Service<B>,
    id: PortId,
}

impl<B: Backend> PortObj<'_, B> {
    fn parts(&mut self) -> Result<(&mut crate::port::Port, &mut PortCaps, &mut B), Error> {
        let port = self.svc.switch.port(self.id).ok_or(Error::NoEnt)?;
        let caps = self.svc.caps.get_mut(&self.id).ok_or(Error::NoEnt)?;
        Ok((port, caps, &mut self.svc.backend))
    }
}

impl<B: Backend> VirtioServer for PortObj<'_, B> {
    fn set_status(&mut self, _: &Ctx, status: u32) -> Result<u32, Error> {
        let (port, _, _) = self.parts()?;
        let before = port.running();
        let s = port.set_status(status);
        if port.running() && !before {
            let line = format!("{}: up", port.name);
            self.svc.say(Component::Port, Level::Info, &line);
        }
        Ok(s)
    }

    fn config_queue(&mut self, _: &Ctx, index: u32, queue: QueueConfig) -> Result<(), Error> {
        self.parts()?.0.config_queue(index, queue)
    }

    fn register_iface(&mut self, _: &Ctx, guest_irq: CapArg) -> Result<RcvCap, Error> {
        let label = port_label(self.id) + labels::KICK;
        let (_, caps, backend) = self.parts()?;
        if caps.guest_irq.is_some() {
            return Err(Error::Exist);
        }
        let irq = backend.caps().adopt_received(guest_irq.index)?;
        let kick = match backend.create_irq(label) {
            Ok(k) => k,
            Err(e) => {
                backend.caps().release(irq);
                return Err(e);
            }
        };
        caps.guest_irq = Some(irq);
        caps.kick = Some(kick);
        Ok(RcvCap::new(kick, CapRights::RWS))
    }

    fn register_ds(
        &mut self,
        _: &Ctx,
        ds: CapArg,
        base: u64,
        offset: u64,
        size: u64,
    ) -> Result<(), Error> {
        let (port, caps, backend) = self.parts()?;
        if !port.takes_dataspace() {
            return Err(Error::NoSpc);
        }
        if size == 0 || base.checked_add(size).is_none() || offset.checked_add(size).is_none() {
            return Err(Error::Inval);
        }
        let cap = backend.caps().adopt_received(ds.index)?;
        let ram = match backend.attach(cap, offset, size) {
            Ok(r) => r,
            Err(e) => {
                backend.caps().release(cap);
                return Err(e);
            }
        };
        match port.register(ram, base) {
            Ok(()) => {
                caps.dataspaces.push(cap);
                Ok(())
            }
            Err(e) => {
                backend.caps().release(cap);
                Err(e)
            }
        }
    }

    fn device_info(&mut self, _: &Ctx) -> Result<DeviceInfo, Error> {
        Ok(self.parts()?.0.info())
    }

    fn set_features(&mut self, _: &Ctx, features: u64) -> Result<(), Error> {
        self.parts()?.0.set_features(features)
    }

    fn read_config(&mut self, _: &Ctx, offset: u32, size: u8) -> Result<u64, Error> {
        self.parts()?.0.read_config(offset, size)
    }

    fn write_config(&mut self, _: &Ctx, _: u32, _: u8, _: u64) -> Result<(), Error> {
        // The address and the status are the device's.
        Err(Error::Perm)
    }
}

/// Every label reaches the service (it answers unknown ones itself).
impl<B: Backend> l4_ipc::Handler for Service<B> {
    fn handle(&mut self, ctx: &Ctx, tag: MsgTag, mrs: &mut [u64; MR_COUNT]) -> MsgTag {
        self.serve(ctx.label(), tag, mrs)
            .unwrap_or(MsgTag::new(0, 0, 0, 0))
    }
}

impl<B: Backend> l4_ipc::Registry for Service<B> {
    fn handler(&mut self, _label: u64) -> Option<&mut dyn l4_ipc::Handler> {
        Some(self)
    }
}
