//! The switch through its IPC side, with drivers writing their queues
//! into memory as a guest would, and a fake kernel.

use std::collections::VecDeque;
use std::sync::Arc;

use l4::ServerCaps;
use l4_abi::{CapRights, Error, MsgTag};
use l4_ipc::netstats::{self, STATS_CREATE, SwitchStatsClient};
use l4_ipc::protocols::FactoryClient;
use l4_ipc::varg::VarArgs;
use l4_ipc::virtio::{F_VERSION_1, QueueConfig, VirtioClient, queue_flags, status};
use l4_ipc::{CapArg, Loopback, MR_COUNT, RecvBufs};
use uvmm::devices::virtio::queue::{F_EVENT_IDX, USED_NO_NOTIFY};
use uvmm::memory::{GuestMemory, Ram};
use vnet::offload::{GSO_TCPV4, NEEDS_CSUM, NetHdr, OFFLOADS};
use vnet::options::Options;
use vnet::port::{F_MAC, F_MRG_RXBUF, HDR_LEN, RXQ, TXQ};
use vnet::service::{Backend, POLL_US, Service, TX_DONE_SMALL, TX_DONE_US, labels};
use vnet::switch::BUDGET;

const BASE: u64 = 0x4000_0000;
const RAM: usize = 0x4_0000;
const QSIZE: u16 = 16;
/// Queue q's rings at BASE + q * 0x1000 (desc), + 0x400 (avail), + 0x800 (used).
const fn ring(q: usize) -> (u64, u64, u64) {
    let b = BASE + q as u64 * 0x1000;
    (b, b + 0x400, b + 0x800)
}
/// Buffers: 2 KiB each from 0x10000 on, RX ones below TX ones.
const fn buffer(q: usize, i: u16) -> u64 {
    BASE + 0x1_0000 + (q as u64 * QSIZE as u64 + i as u64) * 0x800
}

/// Large receive buffers of `len` bytes (after the header) from 0x20000 on.
const fn big_rx(i: u16, len: u32) -> u64 {
    BASE + 0x2_0000 + i as u64 * (len as u64 + 0x100)
}
/// Where [`Driver::send_large`] puts its frame.
const BIG_TX: u64 = BASE + 0x3_0000;

#[derive(Default)]
struct Fake {
    now: u64,
    attach: VecDeque<Arc<Ram>>,
    triggered: Vec<u64>,
    deleted: Vec<u64>,
    released: Vec<u64>,
    users: std::collections::BTreeMap<u64, bool>,
    dead: Vec<u64>,
    log: Vec<String>,
    next_irq: u64,
    /// Dataspaces the switch made: capability, memory.
    allocated: Vec<(u64, Arc<Ram>)>,
}

impl Backend for Fake {
    type Caps = Fake;
    fn caps(&mut self) -> &mut Fake {
        self
    }
    fn create_irq(&mut self, label: u64) -> Result<u64, Error> {
        self.next_irq += 1;
        Ok(label)
    }
    fn attach(&mut self, _ds: u64, offset: u64, size: u64) -> Result<Arc<Ram>, Error> {
        let r = self.attach.pop_front().ok_or(Error::Inval)?;
        if offset != 0 || size != r.len() {
            return Err(Error::Inval);
        }
        Ok(r)
    }
    fn alloc(&mut self, size: u64) -> Result<(u64, Arc<Ram>), Error> {
        let ram = Arc::new(Ram::zeroed(size as usize));
        let cap = 0x7700 + self.allocated.len() as u64;
        self.allocated.push((cap, ram.clone()));
        Ok((cap, ram))
    }
    fn is_alive(&mut self, cap: u64) -> bool {
        !self.dead.contains(&cap)
    }
    fn log(&mut self, line: &str) {
        self.log.push(line.to_string());
    }
}

impl ServerCaps for Fake {
    fn now_ms(&mut self) -> u64 {
        self.now
    }
    fn create_gate(&mut self, label: u64) -> Result<u64, Error> {
        // The loopback reaches the object with label n through cap n.
        Ok(label)
    }
    fn adopt_received(&mut self, slot: u64) -> Result<u64, Error> {
        Ok(slot)
    }
    fn trigger(&mut self, irq: u64) {
        self.triggered.push(irq);
    }
    fn delete(&mut self, cap: u64) {
        self.deleted.push(cap);
    }
    fn release(&mut self, cap: u64) {
        self.released.push(cap);
    }
    fn has_users(&mut self, gate: u64) -> Result<bool, Error> {
        self.users.get(&gate).copied().ok_or(Error::NoSys)
    }
}

type Lb = Loopback<Service<Fake>>;

fn switch() -> Lb {
    let mut lb = Loopback::new(Service::new(Fake::default()));
    lb.server_rcv = RecvBufs::cap_slot(0x900);
    lb
}

/// A switch with three ports whose drivers are up.
fn three_ports() -> (Lb, Driver, Driver, Driver) {
    let mut lb = switch();
    let a = Driver::up(&mut lb, 0);
    let b = Driver::up(&mut lb, 0);
    let c = Driver::up(&mut lb, 0);
    (lb, a, b, c)
}

fn create(lb: &mut Lb, args: &VarArgs) -> Result<u64, Error> {
    let mut f = FactoryClient::with_transport(labels::FACTORY, &mut *lb);
    f.rcv = RecvBufs::cap_slot(0x700);
    f.create(0, args)?;
    // The loopback lands the gate in the receive slot; calls reach the
    // port through its label.
    let id = lb.objects.switch.ports().last().map(|p| p.0).unwrap();
    Ok(lb.objects.gate(id).unwrap())
}

fn four() -> VarArgs {
    let mut a = VarArgs::new();
    a.push_int(4).unwrap();
    a
}

/// A guest driving one port: its RAM, the queues' positions.
struct Driver {
    gate: u64,
    mem: GuestMemory,
    mac: [u8; 6],
    avail: [u16; 2],
    used_seen: [u16; 2],
    kick: u64,
}

impl Driver {
    /// Creates a port and brings it up as Linux would, without offloads.
    fn up(lb: &mut Lb, flags: u32) -> Driver {
        Driver::up_with(lb, flags, F_VERSION_1 | F_MAC)
    }

    /// Creates a port and brings it up with `features`.
    fn up_with(lb: &mut Lb, flags: u32, features: u64) -> Driver {
        Driver::up_args(lb, &four(), flags, features)
    }

    /// Creates a port with the options `args` and brings it up with
    /// `features`.
    fn up_opts(lb: &mut Lb, args: &[&str], features: u64) -> Driver {
        let mut a = VarArgs::new();
        for s in args {
            a.push_str(s).unwrap();
        }
        Driver::up_args(lb, &a, 0, features)
    }

    fn up_args(lb: &mut Lb, args: &VarArgs, flags: u32, features: u64) -> Driver {
        let gate = create(lb, args).unwrap();
        let ram = Arc::new(Ram::zeroed(RAM));
        lb.objects.backend.attach.push_back(ram.clone());
        let mem = GuestMemory::fill(ram, &[(BASE, RAM as u64)]).unwrap();
        let mut c = VirtioClient::with_transport(gate, &mut *lb);
        c.rcv = RecvBufs::cap_slot(0x600);
        assert_eq!(
            c.register_iface(CapArg::new(5, CapRights::RW))
                .unwrap()
                .index(),
            0x600
        );
        let kick = gate + labels::KICK;
        c.register_ds(CapArg::new(6, CapRights::RW), BASE, 0, RAM as u64)
            .unwrap();
        let mac = Driver::start(&mut c, flags, features);
        Driver {
            gate,
            mem,
            mac,
            avail: [0; 2],
            used_seen: [0; 2],
            kick,
        }
    }

    /// Negotiates and sets the queues up (after creation or a reset); the
    /// port's address.
    fn start(c: &mut VirtioClient<&mut Lb>, flags: u32, features: u64) -> [u8; 6] {
        let info = c.device_info().unwrap();
        assert_eq!((info.device_id, info.num_queues), (1, 2));
        let s = status::ACKNOWLEDGE | status::DRIVER;
        c.set_status(s).unwrap();
        c.set_features(features).unwrap();
        assert_eq!(
            c.set_status(s | status::FEATURES_OK).unwrap(),
            s | status::FEATURES_OK
        );
        let mut mac = [0u8; 6];
        for (i, b) in mac.iter_mut().enumerate() {
            *b = c.read_config(i as u32, 1).unwrap() as u8;
        }
        for q in [RXQ, TXQ] {
            let (desc, avail, used) = ring(q);
            let cfg = QueueConfig {
                size: QSIZE,
                desc,
                avail,
                used,
                flags: if q == TXQ { flags } else { 0 },
            };
            c.config_queue(q as u32, cfg).unwrap();
        }
        let s = s | status::FEATURES_OK | status::DRIVER_OK;
        assert_eq!(c.set_status(s).unwrap(), s);
        mac
    }

    fn desc(&self, q: usize, i: u16, addr: u64, len: u32, flags: u16, next: u16) {
        let d = ring(q).0 + 16 * u64::from(i);
        self.mem.write(d, &addr.to_le_bytes()).unwrap();
        self.mem.write_u32(d + 8, len).unwrap();
        self.mem.write_u16(d + 12, flags).unwrap();
        self.mem.write_u16(d + 14, next).unwrap();
    }

    fn make_available(&mut self, q: usize, head: u16) {
        let avail = ring(q).1;
        let slot = u64::from(self.avail[q] % QSIZE);
        self.mem.write_u16(avail + 4 + 2 * slot, head).unwrap();
        self.avail[q] = self.avail[q].wrapping_add(1);
        self.mem.write_u16(avail + 2, self.avail[q]).unwrap();
    }

    /// Posts all receive buffers.
    fn post_rx(&mut self) {
        for i in 0..QSIZE {
            self.desc(RXQ, i, buffer(RXQ, i), 0x800, 2, 0);
            self.make_available(RXQ, i);
        }
    }

    /// Queues a frame to `dst` (header and frame in one buffer).
    fn send(&mut self, dst: [u8; 6], payload: &[u8]) {
        let mut f = dst.to_vec();
        f.extend_from_slice(&self.mac);
        f.extend_from_slice(&[0x08, 0x00]);
        f.extend_from_slice(payload);
        self.send_frame(&f);
    }

    /// Queues `frame` (after a plain header, in one buffer).
    fn send_frame(&mut self, frame: &[u8]) {
        let i = self.avail[TXQ] % QSIZE;
        let mut f = vec![0u8; HDR_LEN];
        f.extend_from_slice(frame);
        self.mem.write(buffer(TXQ, i), &f).unwrap();
        self.desc(TXQ, i, buffer(TXQ, i), f.len() as u32, 0, 0);
        self.make_available(TXQ, i);
    }

    /// The receive buffers used since the last look: head and length.
    fn used_rx(&mut self) -> Vec<(u16, usize)> {
        let used = ring(RXQ).2;
        let idx = self.mem.read_u16(used + 2).unwrap();
        let mut out = Vec::new();
        while self.used_seen[RXQ] != idx {
            let e = used + 4 + 8 * u64::from(self.used_seen[RXQ] % QSIZE);
            let head = self.mem.read_u32(e).unwrap() as u16;
            out.push((head, self.mem.read_u32(e + 4).unwrap() as usize));
            self.used_seen[RXQ] = self.used_seen[RXQ].wrapping_add(1);
        }
        out
    }

    /// The payloads received since the last look.
    fn received(&mut self) -> Vec<Vec<u8>> {
        let frames = self.received_frames();
        frames.into_iter().map(|f| f[14..].to_vec()).collect()
    }

    /// The frames received since the last look, their buffers posted
    /// again.
    fn received_again(&mut self) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        for (head, len) in self.used_rx() {
            let mut b = vec![0u8; len];
            self.mem.read(buffer(RXQ, head), &mut b).unwrap();
            out.push(b[HDR_LEN..].to_vec());
            self.make_available(RXQ, head);
        }
        out
    }

    /// The frames received since the last look.
    fn received_frames(&mut self) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        for (head, len) in self.used_rx() {
            let mut b = vec![0u8; len];
            self.mem.read(buffer(RXQ, head), &mut b).unwrap();
            assert_eq!(b[10], 1, "num_buffers");
            out.push(b[HDR_LEN..].to_vec());
        }
        out
    }

    /// Posts `n` receive buffers of `len` bytes as Linux does for large
    /// frames: a chain of the header's buffer and one for the frame,
    /// contiguous at [`big_rx`]`(i)`.
    fn post_rx_large(&mut self, n: u16, len: u32) {
        for i in 0..n {
            let a = big_rx(i, len);
            self.desc(RXQ, 2 * i, a, HDR_LEN as u32, 2 | 1, 2 * i + 1);
            self.desc(RXQ, 2 * i + 1, a + HDR_LEN as u64, len, 2, 0);
            self.make_available(RXQ, 2 * i);
        }
    }

    /// The frames (with their header) received into buffers of
    /// [`Driver::post_rx_large`] since the last look.
    fn received_large(&mut self, len: u32) -> Vec<(NetHdr, Vec<u8>)> {
        let mut out = Vec::new();
        for (head, n) in self.used_rx() {
            let mut b = vec![0u8; n.max(HDR_LEN)];
            self.mem.read(big_rx(head / 2, len), &mut b).unwrap();
            let h = NetHdr::parse(b[..HDR_LEN].try_into().unwrap());
            out.push((h, b[HDR_LEN..].to_vec()));
        }
        out
    }

    /// Queues `frame` with header `h` in two buffers: the header and the
    /// frame's first `split` bytes, then the rest (in one place: kick
    /// before the next).
    fn send_large(&mut self, h: &NetHdr, frame: &[u8], split: usize) {
        let i = self.avail[TXQ] % QSIZE;
        let j = (i + QSIZE / 2) % QSIZE;
        let mut f = h.bytes().to_vec();
        f.extend_from_slice(frame);
        self.mem.write(BIG_TX, &f).unwrap();
        let first = (HDR_LEN + split) as u32;
        self.desc(TXQ, i, BIG_TX, first, 1, j);
        self.desc(
            TXQ,
            j,
            BIG_TX + u64::from(first),
            f.len() as u32 - first,
            0,
            0,
        );
        self.make_available(TXQ, i);
    }

    /// Transmitted buffers the switch gave back.
    fn tx_done(&self) -> u16 {
        self.mem.read_u16(ring(TXQ).2 + 2).unwrap()
    }
}

/// Kicks like the Irq would, then lets the switch work until idle (its
/// polls of quiet transmit queues included).
fn kick(lb: &mut Lb, d: &Driver) {
    kick_now(lb, d);
    loop {
        while lb.objects.has_work() {
            lb.objects.work();
        }
        if lb.objects.next_timeout_us() > Some(POLL_US) {
            break;
        }
        lb.objects.backend.now += 1;
        lb.objects.timeout();
    }
}

/// Serves `d`'s kick and forwards what it sent, without time passing
/// (unlike [`kick`], which lets the polls and deferred interrupts come).
fn kick_now(lb: &mut Lb, d: &Driver) {
    let mut mrs = [0u64; MR_COUNT];
    assert_eq!(
        lb.objects.serve(d.kick, MsgTag::new(0, 0, 0, 0), &mut mrs),
        None
    );
    while lb.objects.has_work() {
        lb.objects.work();
    }
}

#[test]
fn learning_broadcast_and_unknown() {
    let (mut lb, mut a, mut b, mut c) = three_ports();
    assert_ne!(a.mac, b.mac);
    for d in [&mut a, &mut b, &mut c] {
        d.post_rx();
    }
    // Broadcast from A: B and C.
    a.send([0xff; 6], b"who has");
    kick(&mut lb, &a);
    assert_eq!(a.tx_done(), 1);
    assert_eq!(b.received(), [b"who has".to_vec()]);
    assert_eq!(c.received(), [b"who has".to_vec()]);
    assert!(a.received().is_empty());
    // B to A, learned: only A.
    b.send(a.mac, b"is at");
    kick(&mut lb, &b);
    assert_eq!(a.received(), [b"is at".to_vec()]);
    assert!(c.received().is_empty());
    // A to B (learned from its reply): only B.
    a.send(b.mac, b"ping");
    kick(&mut lb, &a);
    assert_eq!(b.received(), [b"ping".to_vec()]);
    assert!(c.received().is_empty());
    // To an address nobody has shown: every other port.
    a.send([2, 9, 9, 9, 9, 9], b"unknown");
    kick(&mut lb, &a);
    assert_eq!(b.received().len(), 1);
    assert_eq!(c.received().len(), 1);
    let log = &lb.objects.backend.log;
    assert!(
        log.iter().any(|l| l == "port0: 02:08:00:00:00:01 is here"),
        "{log:?}"
    );
    assert!(log.iter().any(|l| l == "port1: 02:08:00:00:00:02 is here"));
    // Drivers were notified: A for its sent buffers, B and C for frames.
    let t = &lb.objects.backend.triggered;
    assert!(
        t.contains(&0x900),
        "guest Irqs are the received slot: {t:x?}"
    );
}

#[test]
fn a_port_that_does_not_read_loses_frames_only_itself() {
    let (mut lb, mut a, mut b, mut c) = three_ports();
    a.post_rx();
    b.post_rx();
    // C never posts receive buffers.
    for n in 0..40u8 {
        a.send([0xff; 6], &[n]);
        if n % 8 == 7 {
            kick(&mut lb, &a);
        }
    }
    kick(&mut lb, &a);
    assert_eq!(a.tx_done(), 40, "the sender is never held up");
    // B got what fitted into its 16 buffers.
    assert_eq!(b.received().len(), 16);
    assert!(c.received().is_empty());
    let stats = lb
        .objects
        .switch
        .ports()
        .map(|(_, p)| p.stats)
        .collect::<Vec<_>>();
    assert_eq!(stats[2].rx_dropped, 40);
}

#[test]
fn malformed_chains_stop_only_their_port() {
    let (mut lb, mut a, mut b, mut c) = three_ports();
    c.post_rx();
    b.post_rx();
    // A: a descriptor loop.
    a.desc(TXQ, 0, buffer(TXQ, 0), 64, 1, 1);
    a.desc(TXQ, 1, buffer(TXQ, 1), 64, 1, 0);
    a.make_available(TXQ, 0);
    kick(&mut lb, &a);
    let port_a = lb.objects.switch.port(0).unwrap();
    assert!(!port_a.running());
    assert_ne!(port_a.status() & status::NEEDS_RESET, 0);
    assert!(
        lb.objects.backend.log.iter().any(|l| l.contains("loops")),
        "{:?}",
        lb.objects.backend.log
    );
    // B: a head beyond the queue; C: a buffer outside its memory.
    b.make_available(TXQ, 99);
    kick(&mut lb, &b);
    assert!(!lb.objects.switch.port(1).unwrap().running());
    c.desc(TXQ, 0, 0x1000, 64, 0, 0);
    c.make_available(TXQ, 0);
    kick(&mut lb, &c);
    assert!(!lb.objects.switch.port(2).unwrap().running());
    // A fourth port and a fresh one still talk; the stopped ports lose
    // their frames and nothing stalls.
    let mut d = Driver::up(&mut lb, 0);
    let mut e = Driver::up(&mut lb, 0);
    e.post_rx();
    d.send([0xff; 6], b"still here");
    kick(&mut lb, &d);
    assert_eq!(e.received(), [b"still here".to_vec()]);
    // A resets, sets up again on fresh rings and talks.
    let mut c = VirtioClient::with_transport(a.gate, &mut lb);
    c.rcv = RecvBufs::cap_slot(0x600);
    assert_eq!(c.set_status(0), Ok(0));
    a.mem.zero(BASE, 0x2000).unwrap();
    Driver::start(&mut c, 0, F_VERSION_1 | F_MAC);
    a.avail = [0; 2];
    a.used_seen = [0; 2];
    assert!(lb.objects.switch.port(0).unwrap().running());
    a.send([0xff; 6], b"back");
    kick(&mut lb, &a);
    assert_eq!(e.received(), [b"back".to_vec()]);
}

/// Random requests on the factory, the statistics gate, one port's gate
/// and its kick label, and labels of nothing (the Virtio protocol, the
/// factory's, anything; plausible opcodes half the time), with the switch
/// working in between: each answered, none a panic, and two other ports
/// still exchange frames afterwards.
#[test]
fn random_requests_never_stall_the_other_ports() {
    let mut lb = switch();
    let mut a = Driver::up(&mut lb, 0);
    let mut b = Driver::up(&mut lb, 0);
    let c = Driver::up(&mut lb, 0);
    let targets = [
        labels::FACTORY,
        labels::STATS,
        c.gate,
        c.gate | labels::KICK,
        0,
        0x8000,
        c.gate + 0x1000,
    ];
    let mut rng = l4_xorshift::XorShift::new(0x2545_f491_4f6c_dd1d);
    let mut next = move || rng.next_u64();
    for i in 0..20_000 {
        let label = targets[(next() % targets.len() as u64) as usize];
        let mut mrs = [0u64; MR_COUNT];
        for m in mrs.iter_mut() {
            *m = l4_xorshift::word(next());
        }
        let tag = if next() % 2 == 0 {
            mrs[0] = next() % 16;
            let proto = [l4_ipc::virtio::VIRTIO_PROTO, -6][(next() % 2) as usize];
            MsgTag::new(proto, 1 + (next() % 6) as u32, 0, 0)
        } else {
            MsgTag::new(
                next() as i64 >> 40,
                (next() % 70) as u32,
                (next() % 4) as u32,
                0,
            )
        };
        if let Some(reply) = lb.objects.serve(label, tag, &mut mrs) {
            assert!(reply.words() as usize <= MR_COUNT);
        }
        if i % 100 == 0 {
            while lb.objects.has_work() {
                lb.objects.work();
            }
        }
    }
    // Ports the factory made stay within the switch's limit.
    assert!(lb.objects.switch.ports().count() <= lb.objects.switch.options().max_ports);
    for d in [&mut a, &mut b] {
        d.post_rx();
    }
    a.send(b.mac, b"still here");
    kick(&mut lb, &a);
    assert_eq!(b.received(), [b"still here".to_vec()]);
    b.send(a.mac, b"so am I");
    kick(&mut lb, &b);
    assert_eq!(a.received(), [b"so am I".to_vec()]);
}

#[test]
fn bad_requests_are_refused() {
    let mut lb = switch();
    let d = Driver::up(&mut lb, 0);
    let mut c = VirtioClient::with_transport(d.gate, &mut lb);
    let q = QueueConfig {
        size: QSIZE,
        desc: ring(0).0,
        avail: ring(0).1,
        used: ring(0).2,
        flags: 0,
    };
    assert_eq!(c.config_queue(0, q), Err(Error::Perm), "running");
    c.set_status(0).unwrap();
    assert_eq!(c.config_queue(2, q), Err(Error::Inval), "no queue 2");
    assert_eq!(c.config_queue(u32::MAX, q), Err(Error::Inval));
    assert_eq!(
        c.config_queue(0, QueueConfig { size: 3, ..q }),
        Err(Error::Inval)
    );
    assert_eq!(
        c.config_queue(0, QueueConfig { used: 0x1000, ..q }),
        Err(Error::Range)
    );
    assert_eq!(c.set_features(1 << 40), Err(Error::Inval));
    assert_eq!(c.read_config(7, 2), Err(Error::Inval));
    assert_eq!(c.read_config(6, 2), Ok(1), "link up");
    assert_eq!(c.write_config(0, 1, 0), Err(Error::Perm));
    assert_eq!(
        c.register_iface(CapArg::new(5, CapRights::RW)).map(|_| ()),
        Err(Error::Exist)
    );
    // More dataspaces than ds-max (4): one is registered already.
    for i in 0..3u64 {
        let r = Arc::new(Ram::zeroed(0x1000));
        c.transport.objects.backend.attach.push_back(r);
        c.register_ds(
            CapArg::new(6, CapRights::RW),
            0x1000_0000 * (i + 1),
            0,
            0x1000,
        )
        .unwrap();
    }
    c.transport
        .objects
        .backend
        .attach
        .push_back(Arc::new(Ram::zeroed(0x1000)));
    assert_eq!(
        c.register_ds(CapArg::new(6, CapRights::RW), 0x9000_0000, 0, 0x1000),
        Err(Error::NoSpc)
    );
    // Overlapping memory.
    let mut lb2 = switch();
    let d2 = Driver::up(&mut lb2, 0);
    let mut c2 = VirtioClient::with_transport(d2.gate, &mut lb2);
    c2.transport
        .objects
        .backend
        .attach
        .push_back(Arc::new(Ram::zeroed(0x1000)));
    assert_eq!(
        c2.register_ds(CapArg::new(6, CapRights::RW), BASE + 0x1000, 0, 0x1000),
        Err(Error::Exist)
    );
    assert_eq!(
        c2.register_ds(CapArg::new(6, CapRights::RW), u64::MAX, 0, 0x1000),
        Err(Error::Inval)
    );
    // Unknown labels.
    let mut mrs = [0u64; MR_COUNT];
    let r = lb2
        .objects
        .serve(0x8000, MsgTag::new(0, 1, 0, 0), &mut mrs)
        .unwrap();
    assert_eq!(r.to_result(), Err(Error::NoEnt));
}

#[test]
fn port_options() {
    let mut lb = switch();
    let mut a = VarArgs::new();
    a.push_str("ds-max=2").unwrap();
    a.push_str("mac=02:aa:00:00:00:01").unwrap();
    a.push_str("name=vm1").unwrap();
    let gate = create(&mut lb, &a).unwrap();
    let mut c = VirtioClient::with_transport(gate, &mut lb);
    assert_eq!(c.read_config(0, 1), Ok(2));
    assert_eq!(c.read_config(1, 1), Ok(0xaa));
    for bad in [
        &["frobnicate=1"][..],
        &["ds-max=0"],
        &["ds-max=x"],
        &["mac=ff:ff:ff:ff:ff:ff"],
        &["mac=1"],
        &["vlan=access=0"],
        &["vlan=access=4095"],
        &["vlan=trunk="],
        &["vlan=trunk=1,x"],
        &["vlan=native"],
        &["type=mirror"],
        &["type=monitor", "vlan=access=3"],
    ] {
        let mut a = VarArgs::new();
        for s in bad {
            a.push_str(s).unwrap();
        }
        assert_eq!(create(&mut lb, &a), Err(Error::Inval), "{bad:?}");
    }
    let mut a = VarArgs::new();
    a.push_int(81).unwrap();
    assert_eq!(create(&mut lb, &a), Err(Error::Inval));
    // An address another port has, a second monitor port.
    let mut a = VarArgs::new();
    a.push_str("mac=02:aa:00:00:00:01").unwrap();
    assert_eq!(create(&mut lb, &a), Err(Error::Exist));
    let mut a = VarArgs::new();
    a.push_str("type=monitor").unwrap();
    create(&mut lb, &a).unwrap();
    assert_eq!(create(&mut lb, &a), Err(Error::Exist));
    // Another protocol than virtio.
    let mut f = FactoryClient::with_transport(labels::FACTORY, &mut lb);
    f.rcv = RecvBufs::cap_slot(0x700);
    assert_eq!(
        f.create(-13, &VarArgs::new()).map(|_| ()),
        Err(Error::NoSys)
    );
    assert!(
        lb.objects
            .backend
            .log
            .iter()
            .any(|l| l.contains("unknown port option 'frobnicate=1'"))
    );
    for line in [
        "create: vlan=access=0: '0' is not a VLAN id (1 to 4094)",
        "create: address 02:aa:00:00:00:01 is vm1's already",
        "create: there is a monitor port already (port1)",
    ] {
        assert!(
            lb.objects.backend.log.iter().any(|l| l == line),
            "{line}: {:?}",
            lb.objects.backend.log
        );
    }
}

/// `frame` with an 802.1Q tag of `tci` after the addresses.
fn tagged(frame: &[u8], tci: u16) -> Vec<u8> {
    let mut f = frame[..12].to_vec();
    f.extend_from_slice(&[0x81, 0x00]);
    f.extend_from_slice(&tci.to_be_bytes());
    f.extend_from_slice(&frame[12..]);
    f
}

/// An Ethernet frame (IPv4's EtherType) to `dst` from `src`.
fn eth(dst: [u8; 6], src: [u8; 6], payload: &[u8]) -> Vec<u8> {
    let mut f = dst.to_vec();
    f.extend_from_slice(&src);
    f.extend_from_slice(&[0x08, 0x00]);
    f.extend_from_slice(payload);
    f
}

#[test]
fn vlans_keep_networks_apart() {
    let mut lb = switch();
    let basic = F_VERSION_1 | F_MAC;
    let mut a = Driver::up_opts(&mut lb, &["name=a", "vlan=access=5"], basic);
    let mut b = Driver::up_opts(&mut lb, &["name=b", "vlan=access=5"], basic);
    let mut c = Driver::up_opts(&mut lb, &["name=c", "vlan=access=7"], basic);
    let mut t = Driver::up_opts(&mut lb, &["name=t", "vlan=trunk=5,7"], basic);
    let mut n = Driver::up_opts(&mut lb, &["name=n"], basic);
    let mut m = Driver::up_opts(&mut lb, &["name=m", "type=monitor"], basic);
    for d in [&mut a, &mut b, &mut c, &mut t, &mut n, &mut m] {
        d.post_rx();
    }
    let bcast = [0xff; 6];
    // A broadcast on an access port reaches its VLAN: the other access
    // port without a tag, the trunk and the monitor with one.
    let f = eth(bcast, a.mac, b"who has");
    a.send_frame(&f);
    kick(&mut lb, &a);
    assert_eq!(b.received_frames(), [f.as_slice()]);
    assert_eq!(t.received_frames(), [tagged(&f, 5)]);
    assert_eq!(m.received_frames(), [tagged(&f, 5)]);
    assert!(c.received_frames().is_empty() && n.received_frames().is_empty());
    // From the trunk into VLAN 7 (priority bits set): C without the tag,
    // the monitor with a clean one.
    let f7 = eth(bcast, t.mac, b"vlan 7");
    t.send_frame(&tagged(&f7, 0xa007));
    kick(&mut lb, &t);
    assert_eq!(c.received_frames(), [f7.as_slice()]);
    assert_eq!(m.received_frames(), [tagged(&f7, 7)]);
    assert!(a.received_frames().is_empty() && b.received_frames().is_empty());
    assert!(n.received_frames().is_empty());
    // Learned per VLAN: A is known in VLAN 5 only.
    let to_a = eth(a.mac, t.mac, b"to a");
    t.send_frame(&tagged(&to_a, 5));
    kick(&mut lb, &t);
    assert_eq!(a.received_frames(), [to_a.as_slice()]);
    assert!(b.received_frames().is_empty(), "learned: A only");
    t.send_frame(&tagged(&to_a, 7));
    kick(&mut lb, &t);
    assert_eq!(c.received_frames(), [to_a.as_slice()], "unknown in VLAN 7");
    assert!(a.received_frames().is_empty());
    assert_eq!(m.received_frames().len(), 2);
    // Untagged frames stay among the ports without a VLAN (and the
    // monitor, as sent).
    let fu = eth(bcast, n.mac, b"plain");
    n.send_frame(&fu);
    kick(&mut lb, &n);
    assert_eq!(m.received_frames(), [fu.as_slice()]);
    for d in [&mut a, &mut b, &mut c, &mut t] {
        assert!(d.received_frames().is_empty());
    }
    // Not let in: an untagged frame or one of another VLAN on the trunk,
    // a tagged frame on an access port, anything from the monitor.
    t.send_frame(&fu);
    t.send_frame(&tagged(&f, 6));
    t.send_frame(&tagged(&f, 0x2000));
    kick(&mut lb, &t);
    a.send_frame(&tagged(&f, 7));
    kick(&mut lb, &a);
    m.send_frame(&eth(bcast, m.mac, b"quiet"));
    kick(&mut lb, &m);
    for d in [&mut a, &mut b, &mut c, &mut t, &mut n, &mut m] {
        assert!(d.received_frames().is_empty());
    }
    let dropped = |name: &str| {
        let s = &lb.objects.switch;
        s.ports()
            .find(|p| p.1.name == name)
            .unwrap()
            .1
            .stats
            .tx_dropped
    };
    assert_eq!((dropped("t"), dropped("a"), dropped("m")), (3, 1, 1));
    assert_eq!(t.tx_done(), 6, "dropped frames are given back too");
    let log = &lb.objects.backend.log;
    for line in [
        "a: created, address 02:08:00:00:00:01, access port of VLAN 5",
        "t: created, address 02:08:00:00:00:04, trunk port of VLANs 5,7",
        "m: created, address 02:08:00:00:00:06, monitor port",
        "t: frame dropped: a frame without a VLAN tag on a trunk port",
        "t: frame dropped: a frame of VLAN 6, which the trunk is not in",
        "a: frame dropped: an 802.1Q-tagged frame on an access port",
        "m: frame dropped: sent on a monitor port",
    ] {
        assert!(log.iter().any(|l| l == line), "{line}: {log:?}");
    }
}

/// Frames of every kind (tagged or not, any VLAN, priority bits, to
/// anyone) from ports of every kind: a frame reaches only ports of its
/// network, in the form the port takes, or nobody when the sender's port
/// does not let it in; the monitor sees exactly what is let in.
#[test]
fn no_frame_leaves_its_network() {
    let mut lb = switch();
    let basic = F_VERSION_1 | F_MAC;
    let kinds: [&[&str]; 8] = [
        &[],
        &[],
        &["vlan=access=3"],
        &["vlan=access=3"],
        &["vlan=access=4"],
        &["vlan=trunk=3,4"],
        &["vlan=trunk=all"],
        &["type=monitor"],
    ];
    // The rules, written out here rather than asked of the switch: the
    // networks each port gets (0: untagged), whether it gets tags, and
    // what it lets in.
    let member = |port: usize, vid: u16| match port {
        0 | 1 => vid == 0,
        2 | 3 => vid == 3,
        4 => vid == 4,
        5 => vid == 3 || vid == 4,
        6 => (1..=4094).contains(&vid),
        _ => true,
    };
    let trunk = |port: usize| port == 5 || port == 6;
    let ingress = |port: usize, tag: Option<u16>| -> Option<u16> {
        match (port, tag.map(|t| t & 0xfff)) {
            (0 | 1, _) => Some(0),
            (2..=4, None) => Some(if port == 4 { 4 } else { 3 }),
            (5 | 6, Some(v)) if v != 0 && member(port, v) => Some(v),
            _ => None,
        }
    };
    let mut ports: Vec<Driver> = kinds
        .iter()
        .map(|k| Driver::up_opts(&mut lb, k, basic))
        .collect();
    for p in &mut ports {
        p.post_rx();
    }
    let monitor = 7;
    let mut rng = l4_xorshift::XorShift::new(0x9e37_79b9_7f4a_7c15);
    let mut next = move || rng.next_u64();
    let macs: Vec<[u8; 6]> = ports.iter().map(|p| p.mac).collect();
    let (mut refused, mut delivered) = (0, 0);
    for round in 0..400 {
        let from = (next() % 8) as usize;
        let r = next();
        let dst = match r % 4 {
            0 => [0xff; 6],
            1 => [2, 9, 9, 9, 9, 9],
            _ => macs[(r >> 8) as usize % 8],
        };
        let mut frame = eth(dst, macs[from], &[round as u8; 20]);
        let tci = [0u16, 3, 4, 5, 0x6003, 0x2000][(r >> 16) as usize % 6];
        let tag = (r >> 24) % 3 != 0;
        if tag {
            frame = tagged(&frame, tci);
        }
        ports[from].send_frame(&frame);
        kick(&mut lb, &ports[from]);
        let got: Vec<Vec<Vec<u8>>> = ports.iter_mut().map(|p| p.received_again()).collect();
        let vid = ingress(from, tag.then_some(tci));
        let Some(vid) = vid else {
            assert!(
                got.iter().all(Vec::is_empty),
                "round {round}: a frame not let in went somewhere: {got:?}"
            );
            refused += 1;
            continue;
        };
        // The frame in its plain form, and tagged with its VLAN.
        let plain = if trunk(from) {
            let mut f = frame[..12].to_vec();
            f.extend_from_slice(&frame[16..]);
            f
        } else {
            frame.clone()
        };
        for (i, g) in got.iter().enumerate() {
            if i == monitor {
                let want = if vid == 0 {
                    plain.clone()
                } else {
                    tagged(&plain, vid)
                };
                assert_eq!(g, &[want], "round {round}: the monitor sees it once");
                continue;
            }
            if g.is_empty() {
                continue;
            }
            assert!(i != from, "round {round}: back to its sender");
            assert!(
                member(i, vid),
                "round {round}: port {i} got VLAN {vid}'s frame"
            );
            let want = if trunk(i) {
                tagged(&plain, vid)
            } else {
                plain.clone()
            };
            assert_eq!(g, &[want], "round {round}: port {i}");
            delivered += 1;
        }
    }
    assert!(
        refused > 50 && delivered > 200,
        "{refused} refused, {delivered} delivered"
    );
}

#[test]
fn tags_move_the_offload_headers() {
    let mut lb = switch();
    let mut t = Driver::up_opts(&mut lb, &["vlan=trunk=all"], ALL);
    let mut a = Driver::up_opts(&mut lb, &["vlan=access=9"], ALL);
    let mut plain = Driver::up_opts(&mut lb, &["vlan=access=9"], F_VERSION_1 | F_MAC);
    a.post_rx_large(4, 0x4000);
    plain.post_rx();
    // The switch learns where A is.
    a.send([0xff; 6], b"here");
    kick(&mut lb, &a);
    assert_eq!(plain.received().len(), 1);
    // A segmentation offload frame from the trunk: its headers start 4
    // bytes later than in the untagged frame A gets.
    let big = tcp4(a.mac, t.mac, 3000);
    let h = NetHdr {
        hdr_len: 58,
        csum_start: 38,
        ..tso4(1448)
    };
    t.send_large(&h, &tagged(&big, 9), 20);
    kick(&mut lb, &t);
    expect_tso(&a.received_large(0x4000), &big);
    // Flooded: the port without offloads gets segments with their
    // checksums completed where the untagged frame has them.
    let unknown = [2, 7, 7, 7, 7, 7];
    let small = tcp4(unknown, t.mac, 10);
    let csum = NetHdr {
        gso_type: 0,
        gso_size: 0,
        hdr_len: 0,
        csum_start: 38,
        ..tso4(0)
    };
    t.send_large(&csum, &tagged(&small, 9), 0);
    kick(&mut lb, &t);
    let got = plain.received_frames();
    assert_eq!(got.len(), 1);
    let mut want = small.clone();
    vnet::offload::complete_checksum(&mut want, &tso4(0)).unwrap();
    assert_ne!(&want[50..52], &[0, 0]);
    assert_eq!(got[0], want);
    // The other way: A's frame to the trunk gets the tag, its header
    // moves 4 bytes on.
    t.post_rx_large(4, 0x4000);
    a.send_large(&tso4(1448), &tcp4(t.mac, a.mac, 3000), 0);
    kick(&mut lb, &a);
    let got = t.received_large(0x4000);
    assert_eq!(got.len(), 1);
    assert_eq!((got[0].0.csum_start, got[0].0.hdr_len), (38, 58));
    assert_eq!(got[0].1, tagged(&tcp4(t.mac, a.mac, 3000), 9));
}

#[test]
fn command_line_options() {
    let opts = Options::parse(["-p", "2", "-M", "-s", "64", "-q"]).unwrap();
    let mut lb = Loopback::new(Service::with_options(Fake::default(), opts));
    lb.server_rcv = RecvBufs::cap_slot(0x900);
    // -M: no address offered (the driver picks one); -s: queues of 64.
    let mut a = Driver::up_args(&mut lb, &four(), 0, F_VERSION_1);
    let mut c = VirtioClient::with_transport(a.gate, &mut lb);
    let info = c.device_info().unwrap();
    assert_eq!(info.features & F_MAC, 0);
    assert_eq!(info.queue_max, 64);
    assert_eq!(c.read_config(0, 4), Ok(0));
    // A port with an address of its own, then -p's limit.
    let mut mac = VarArgs::new();
    mac.push_str("mac=02:00:00:00:00:07").unwrap();
    let mut b = Driver::up_args(&mut lb, &mac, 0, F_VERSION_1 | F_MAC);
    assert_eq!(b.mac, [2, 0, 0, 0, 0, 7]);
    assert_eq!(create(&mut lb, &four()), Err(Error::NoSpc));
    // Frames flow as ever; -q: nothing logged.
    a.mac = [2, 0, 0, 0, 0, 9];
    b.post_rx();
    a.send(b.mac, b"hi");
    kick(&mut lb, &a);
    assert_eq!(b.received(), [b"hi".to_vec()]);
    assert_eq!(lb.objects.backend.log, Vec::<String>::new());
}

#[test]
fn ports_whose_driver_is_gone_are_freed() {
    let mut lb = switch();
    let mut a = Driver::up(&mut lb, 0);
    let mut b = Driver::up(&mut lb, 0);
    b.post_rx();
    a.send(b.mac, b"x");
    kick(&mut lb, &a);
    let svc = &mut lb.objects;
    svc.backend.users.insert(a.gate, true);
    svc.backend.users.insert(b.gate, true);
    svc.backend.now = 2000;
    svc.timeout();
    assert_eq!(svc.port_count(), 2);
    svc.backend.users.insert(b.gate, false);
    svc.backend.now = 4000;
    svc.timeout();
    assert_eq!(svc.port_count(), 1);
    assert!(svc.backend.deleted.contains(&b.gate));
    assert!(
        svc.switch
            .macs()
            .lookup(vnet::vlan::UNTAGGED, &b.mac)
            .is_none(),
        "its addresses are forgotten"
    );
    // Frames to it are flooded to nobody; the sender goes on.
    a.send(b.mac, b"y");
    kick(&mut lb, &a);
    assert_eq!(a.tx_done(), 2);
    assert!(b.received().len() == 1);
    // A driver whose task ended: its Irq is gone, although the port's
    // creator still holds the gate.
    let mut c = Driver::up(&mut lb, 0);
    c.post_rx();
    let svc = &mut lb.objects;
    assert_eq!(svc.port_count(), 2);
    svc.backend.dead.push(0x900);
    svc.backend.now = 6000;
    svc.timeout();
    assert_eq!(
        svc.port_count(),
        0,
        "both drivers' Irqs were in the slot 0x900"
    );
    assert!(svc.backend.log.iter().any(|l| l.contains("port freed")));
}

/// `create(1, args)` on the switch's factory: the statistics capability.
fn create_stats(lb: &mut Lb, args: &VarArgs) -> Result<u64, Error> {
    let mut f = FactoryClient::with_transport(labels::FACTORY, &mut *lb);
    f.rcv = RecvBufs::cap_slot(0x700);
    f.create(STATS_CREATE, args).map(|c| c.index())
}

/// All of `ram`'s bytes.
fn ram_bytes(ram: &Ram) -> Vec<u8> {
    let mut buf = vec![0u8; ram.len() as usize];
    ram.read(0, &mut buf).unwrap();
    buf
}

/// The statistics interface (L4Re's `create(1)`): a read-only buffer
/// with every port's counters, brought up to date by `sync`, its age
/// grown by every port made or freed.
#[test]
fn statistics_interface() {
    let mut lb = switch();
    let mut a = Driver::up_opts(
        &mut lb,
        &["ds-max=4", "name=net0", "vlan=access=5"],
        F_VERSION_1 | F_MAC,
    );
    let mut b = Driver::up_opts(
        &mut lb,
        &["name=net1", "vlan=access=5"],
        F_VERSION_1 | F_MAC,
    );
    create_stats(&mut lb, &VarArgs::new()).unwrap();
    // The same object a second time; arguments are refused.
    create_stats(&mut lb, &VarArgs::new()).unwrap();
    assert_eq!(create_stats(&mut lb, &four()), Err(Error::Inval));
    assert_eq!(lb.objects.backend.allocated.len(), 1);
    let mut s = SwitchStatsClient::with_transport(labels::STATS, &mut lb);
    s.rcv = RecvBufs::cap_slot(0x500);
    let ds = s.get_buffer().unwrap();
    assert_eq!(ds.0.rights, CapRights::RO, "clients may only read it");
    assert_eq!(ds.index(), 0x500, "in the receive slot");
    let (_, ram) = lb.objects.backend.allocated[0].clone();
    let buf = ram_bytes(&ram);
    let snap = netstats::parse(&buf).unwrap();
    assert_eq!((snap.age, snap.max_ports), (2, 256));
    let ports: Vec<_> = snap.ports().collect();
    assert_eq!(ports.len(), 2);
    assert_eq!((ports[0].0, ports[0].1.name()), (0, "net0"));
    assert_eq!((ports[1].0, ports[1].1.name()), (1, "net1"));
    assert_eq!(ports[1].1.mac, b.mac);
    assert_eq!(ports[0].1.counters, Default::default());
    // Traffic: a frame each way, one tagged frame B may not send.
    a.post_rx();
    b.post_rx();
    a.send(b.mac, b"0123456789");
    kick(&mut lb, &a);
    b.send(a.mac, b"abc");
    kick(&mut lb, &b);
    b.send_frame(&tagged(&eth(a.mac, b.mac, b"hop"), 7));
    kick(&mut lb, &b);
    assert_eq!(a.received().len(), 1);
    // Nothing changes until sync.
    assert_eq!(ram_bytes(&ram), buf);
    let mut s = SwitchStatsClient::with_transport(labels::STATS, &mut lb);
    s.sync().unwrap();
    let buf = ram_bytes(&ram);
    let snap = netstats::parse(&buf).unwrap();
    let c: Vec<_> = snap.ports().map(|(_, r)| r.counters).collect();
    let payload = |n: u64| 14 + n;
    assert_eq!(
        (c[0].tx_num, c[0].tx_bytes, c[0].rx_num, c[0].rx_bytes),
        (1, payload(10), 1, payload(3))
    );
    assert_eq!(
        (c[1].tx_num, c[1].tx_dropped, c[1].tx_bytes, c[1].rx_num),
        (1, 1, payload(3), 1)
    );
    // A port freed: its record goes, the age grows.
    let svc = &mut lb.objects;
    svc.free_port(0);
    let mut s = SwitchStatsClient::with_transport(labels::STATS, &mut lb);
    s.sync().unwrap();
    let buf = ram_bytes(&ram);
    let snap = netstats::parse(&buf).unwrap();
    assert_eq!(snap.age, 3);
    let left: Vec<(usize, String)> = snap.ports().map(|(i, r)| (i, r.name().into())).collect();
    assert_eq!(left, [(0, "net1".to_string())], "records follow the ports");
}

/// Statistics records are the live ports in order, whatever numbers
/// ports got after others were freed (`-p 2`: the third port made is
/// number 2, beyond the buffer's two records).
#[test]
fn statistics_after_ports_come_and_go() {
    let opts = Options::parse(["-p", "2"].map(std::ffi::OsString::from)).unwrap();
    let mut lb = Loopback::new(Service::with_options(Fake::default(), opts));
    lb.server_rcv = RecvBufs::cap_slot(0x900);
    Driver::up_opts(&mut lb, &["name=a"], F_VERSION_1 | F_MAC);
    Driver::up_opts(&mut lb, &["name=b"], F_VERSION_1 | F_MAC);
    lb.objects.free_port(0);
    Driver::up_opts(&mut lb, &["name=c"], F_VERSION_1 | F_MAC);
    create_stats(&mut lb, &VarArgs::new()).unwrap();
    let buf = ram_bytes(&lb.objects.backend.allocated[0].1);
    let snap = netstats::parse(&buf).unwrap();
    assert_eq!((snap.age, snap.max_ports), (4, 2));
    let names: Vec<(usize, String)> = snap.ports().map(|(i, r)| (i, r.name().into())).collect();
    assert_eq!(names, [(0, "b".to_string()), (1, "c".to_string())]);
}

/// A `-p` too large for a statistics buffer is refused with a message,
/// not a wrapped size.
#[test]
fn statistics_for_too_many_ports_are_refused() {
    let huge = (usize::MAX / 2).to_string();
    let opts = Options::parse(["-p", huge.as_str()].map(std::ffi::OsString::from)).unwrap();
    let mut lb = Loopback::new(Service::with_options(Fake::default(), opts));
    assert_eq!(create_stats(&mut lb, &VarArgs::new()), Err(Error::NoMem));
    assert!(lb.objects.backend.allocated.is_empty());
    assert!(
        lb.objects
            .backend
            .log
            .iter()
            .any(|l| l.contains("no statistics buffer for"))
    );
}

/// A wake-up of the switch forwards the frame and looks at the queue of
/// the port it went to (polled: that port sent last) before it waits
/// again, with nothing left over for a poll in between.
#[test]
fn a_wake_up_ends_with_nothing_pending() {
    let mut lb = switch();
    let mut a = Driver::up(&mut lb, queue_flags::NO_NOTIFY);
    let mut b = Driver::up(&mut lb, queue_flags::NO_NOTIFY);
    a.post_rx();
    b.post_rx();
    let mut mrs = [0u64; MR_COUNT];
    b.send(a.mac, &[1]);
    lb.objects.serve(b.kick, MsgTag::new(0, 0, 0, 0), &mut mrs);
    lb.objects.work_rounds();
    assert_eq!(a.received().len(), 1);
    assert!(!lb.objects.has_work());
    a.send(b.mac, &[2]);
    lb.objects.serve(a.kick, MsgTag::new(0, 0, 0, 0), &mut mrs);
    lb.objects.work_rounds();
    assert_eq!(b.received().len(), 1);
    assert!(!lb.objects.has_work());
    assert_ne!(lb.objects.next_timeout_us(), Some(0));
}

#[test]
fn busy_senders_take_turns() {
    let mut lb = switch();
    let mut a = Driver::up(&mut lb, queue_flags::NO_NOTIFY);
    let mut b = Driver::up(&mut lb, 0);
    a.post_rx();
    b.post_rx();
    let n = QSIZE.min(BUDGET as u16);
    for i in 0..n {
        a.send(b.mac, &[i as u8]);
    }
    let mut mrs = [0u64; MR_COUNT];
    lb.objects.serve(a.kick, MsgTag::new(0, 0, 0, 0), &mut mrs);
    assert!(lb.objects.has_work());
    assert_eq!(lb.objects.next_timeout_us(), Some(0));
    lb.objects.work();
    assert_eq!(a.tx_done(), n);
    assert_eq!(b.received().len(), usize::from(n));
    // With no-notify the driver was told not to kick while busy, and is
    // not told to kick again: the switch looks at the queue again later.
    assert_eq!(a.mem.read_u16(ring(TXQ).2).unwrap(), USED_NO_NOTIFY);
    assert!(!lb.objects.has_work());
    assert_eq!(lb.objects.next_timeout_us(), Some(POLL_US));
    // A frame sent meanwhile needs no kick: the look takes it.
    b.post_rx();
    a.send(b.mac, &[0xaa]);
    lb.objects.backend.now += POLL_US.div_ceil(1000);
    lb.objects.timeout();
    assert!(lb.objects.has_work());
    lb.objects.work();
    assert_eq!(b.received().len(), 1);
    assert_eq!(a.mem.read_u16(ring(TXQ).2).unwrap(), USED_NO_NOTIFY);
    // A look that finds nothing lets the driver kick again.
    lb.objects.backend.now += POLL_US.div_ceil(1000);
    lb.objects.timeout();
    lb.objects.work();
    assert_eq!(a.mem.read_u16(ring(TXQ).2).unwrap(), 0);
    assert!(!lb.objects.has_work());
    let gc_in = 1_000_000 - lb.objects.backend.now * 1000;
    assert_eq!(lb.objects.next_timeout_us(), Some(gc_in));
}

#[test]
fn a_kick_of_one_port_takes_the_polled_frames_of_another() {
    let mut lb = switch();
    let mut a = Driver::up(&mut lb, queue_flags::NO_NOTIFY);
    let mut b = Driver::up(&mut lb, queue_flags::NO_NOTIFY);
    let mut c = Driver::up(&mut lb, 0);
    for d in [&mut a, &mut b, &mut c] {
        d.post_rx();
    }
    let mut mrs = [0u64; MR_COUNT];
    let mut serve_kick = |lb: &mut Lb, d: &Driver| {
        lb.objects.serve(d.kick, MsgTag::new(0, 0, 0, 0), &mut mrs);
        while lb.objects.has_work() {
            lb.objects.work();
        }
    };
    // C makes itself known; A sends to C: forwarded at once, A's queue is
    // polled from now on.
    c.send([0xff; 6], b"c");
    serve_kick(&mut lb, &c);
    a.send(c.mac, b"1");
    serve_kick(&mut lb, &a);
    assert_eq!(c.received().len(), 1);
    assert_eq!(a.received().len(), 1, "C's broadcast");
    assert_eq!(lb.objects.next_timeout_us(), Some(POLL_US));
    // A sends again (no kick), then B's kick wakes the switch: A's frame
    // goes along without waiting for the poll.
    a.send(c.mac, b"2");
    b.send(c.mac, b"x");
    serve_kick(&mut lb, &b);
    assert_eq!(c.received(), [b"x".to_vec(), b"2".to_vec()]);
    // A look that finds nothing when another port wakes the switch
    // leaves A's queue quiet ...
    b.send(c.mac, b"y");
    lb.objects.backend.now += 1;
    serve_kick(&mut lb, &b);
    assert_eq!(a.mem.read_u16(ring(TXQ).2).unwrap(), USED_NO_NOTIFY);
    // ... a frame for A does not: A may answer it at once.
    c.send(a.mac, b"z");
    serve_kick(&mut lb, &c);
    assert_eq!(a.received().len(), 1);
    assert_eq!(a.mem.read_u16(ring(TXQ).2).unwrap(), 0);
    // B's poll on time, finding nothing, lets B kick again.
    lb.objects.backend.now += POLL_US.div_ceil(1000);
    lb.objects.timeout();
    while lb.objects.has_work() {
        lb.objects.work();
    }
    assert_eq!(b.mem.read_u16(ring(TXQ).2).unwrap(), 0);
    assert_eq!(
        lb.objects.next_timeout_us().map(|t| t > POLL_US),
        Some(true)
    );
}

/// An Ethernet frame from `src` to `dst` with a TCP/IPv4 segment of
/// `payload` bytes (sequence 1000, flags PSH|ACK), checksums left to
/// whoever completes them.
fn tcp4(dst: [u8; 6], src: [u8; 6], payload: usize) -> Vec<u8> {
    let mut f = dst.to_vec();
    f.extend_from_slice(&src);
    f.extend_from_slice(&[0x08, 0x00]);
    let tot = (40 + payload) as u16;
    f.extend_from_slice(&[
        0x45,
        0,
        (tot >> 8) as u8,
        tot as u8,
        0,
        7,
        0x40,
        0,
        64,
        6,
        0,
        0,
    ]);
    f.extend_from_slice(&[192, 168, 1, 1, 192, 168, 1, 2]);
    f.extend_from_slice(&[0x9c, 0x40, 0x13, 0x89, 0, 0, 0x03, 0xe8, 0, 0, 0, 1]);
    f.extend_from_slice(&[0x50, 0x18, 0xff, 0xff, 0, 0, 0, 0]);
    f.extend((0..payload).map(|i| i as u8));
    f
}

/// A TCP segmentation offload header for [`tcp4`] frames.
fn tso4(mss: u16) -> NetHdr {
    NetHdr {
        flags: NEEDS_CSUM,
        gso_type: GSO_TCPV4,
        hdr_len: 54,
        gso_size: mss,
        csum_start: 34,
        csum_offset: 16,
        num_buffers: 0,
    }
}

const ALL: u64 = F_VERSION_1 | F_MAC | OFFLOADS;

/// `got` is one segmentation offload frame, `frame` with [`tso4`]`(1448)`'s
/// header, as the sender gave it.
fn expect_tso(got: &[(NetHdr, Vec<u8>)], frame: &[u8]) {
    assert_eq!(got.len(), 1, "one frame of {} bytes", frame.len());
    let want = NetHdr {
        num_buffers: 1,
        ..tso4(1448)
    };
    assert_eq!(got[0].0, want);
    assert_eq!(got[0].1, frame);
}

#[test]
fn offloads_pass_between_drivers_that_take_them() {
    let mut lb = switch();
    let mut a = Driver::up_with(&mut lb, 0, ALL);
    let mut b = Driver::up_with(&mut lb, 0, ALL);
    b.post_rx_large(4, 0x4000);
    let big = tcp4(b.mac, a.mac, 9000);
    a.send_large(&tso4(1448), &big, 20);
    kick(&mut lb, &a);
    expect_tso(&b.received_large(0x4000), &big);
    // A partial checksum alone, the header in a buffer of its own.
    let small = tcp4(b.mac, a.mac, 100);
    let csum = NetHdr {
        gso_type: 0,
        gso_size: 0,
        ..tso4(0)
    };
    a.send_large(&csum, &small, 0);
    kick(&mut lb, &a);
    let got = b.received_large(0x4000);
    assert_eq!(got[0].0.flags, NEEDS_CSUM);
    assert_eq!(got[0].1, small);
    // A buffer too small for the frame goes back empty.
    let huge = tcp4(b.mac, a.mac, 0x5000);
    a.send_large(&tso4(1448), &huge, 20);
    kick(&mut lb, &a);
    let got = b.received_large(0x4000);
    assert_eq!(got.len(), 1);
    assert!(got[0].1.is_empty());
    assert_eq!(lb.objects.switch.port(1).unwrap().stats.rx_too_small, 1);
    assert_eq!(a.tx_done(), 3);
}

#[test]
fn offloads_are_done_for_drivers_without_them() {
    let mut lb = switch();
    let mut a = Driver::up_with(&mut lb, 0, ALL);
    let mut b = Driver::up(&mut lb, 0);
    b.post_rx();
    // 3000 bytes in segments of 1448: three frames with their own
    // headers (the checksums are the offload module's tests).
    let big = tcp4(b.mac, a.mac, 3000);
    a.send_large(&tso4(1448), &big, 0);
    kick(&mut lb, &a);
    let got = b.received();
    assert_eq!(got.len(), 3);
    let mut payload = Vec::new();
    for (i, f) in got.iter().enumerate() {
        // After the Ethernet header: IPv4 (20) and TCP (20).
        let len = [1448, 1448, 104][i];
        assert_eq!(f.len(), 40 + len, "segment {i}");
        assert_eq!(u16::from_be_bytes([f[2], f[3]]) as usize, 40 + len);
        let seq = u32::from_be_bytes(f[24..28].try_into().unwrap());
        assert_eq!(seq, 1000 + 1448 * i as u32);
        assert_ne!(&f[36..38], &[0, 0], "a TCP checksum");
        payload.extend_from_slice(&f[40..]);
    }
    assert_eq!(payload, big[54..]);
    // A partial checksum alone is completed.
    a.send_large(
        &NetHdr {
            gso_type: 0,
            ..tso4(0)
        },
        &tcp4(b.mac, a.mac, 10),
        0,
    );
    kick(&mut lb, &a);
    let got = b.received();
    assert_eq!(got.len(), 1);
    assert_ne!(&got[0][36..38], &[0, 0]);
    // A frame whose headers are not what its header says is lost for B.
    let mut bad = tcp4(b.mac, a.mac, 3000);
    bad[23] = 17;
    a.send_large(&tso4(1448), &bad, 0);
    kick(&mut lb, &a);
    assert!(b.received().is_empty());
    assert!(
        lb.objects
            .backend
            .log
            .iter()
            .any(|l| l == "port0: frame dropped: segmentation offload frame: not TCP"),
        "{:?}",
        lb.objects.backend.log
    );
}

/// A driver cannot make the switch cut one frame into thousands: a
/// segment size below the smallest TCP segments Linux sends is refused,
/// and segmentation stops where the receiver has no room left.
#[test]
fn segmentation_is_bounded() {
    let mut lb = switch();
    let mut a = Driver::up_with(&mut lb, 0, ALL);
    let mut b = Driver::up(&mut lb, 0);
    b.post_rx();
    let big = tcp4(b.mac, a.mac, 3000);
    a.send_large(&tso4(vnet::offload::MIN_SEGMENT - 1), &big, 0);
    kick(&mut lb, &a);
    assert!(b.received().is_empty());
    assert_eq!(lb.objects.switch.port(0).unwrap().stats.tx_bad, 1);
    // 3000 bytes in 48-byte segments would be 63 frames; B has room for
    // QSIZE: the cutting ends at the first that finds none.
    a.send_large(&tso4(vnet::offload::MIN_SEGMENT), &big, 0);
    kick(&mut lb, &a);
    assert_eq!(b.received().len(), usize::from(QSIZE));
    assert_eq!(lb.objects.switch.port(1).unwrap().stats.rx_dropped, 1);
}

#[test]
fn offloads_not_negotiated_are_refused() {
    let mut lb = switch();
    let mut a = Driver::up(&mut lb, 0);
    let mut b = Driver::up_with(&mut lb, 0, ALL);
    b.post_rx_large(4, 0x4000);
    // A did not negotiate segmentation (nor frames beyond 1518 bytes):
    // the frame is given back and dropped.
    a.send_large(&tso4(1448), &tcp4(b.mac, a.mac, 1000), 0);
    kick(&mut lb, &a);
    a.send_large(&NetHdr::default(), &tcp4(b.mac, a.mac, 3000), 0);
    kick(&mut lb, &a);
    assert_eq!(a.tx_done(), 2);
    assert!(b.received_large(0x4000).is_empty());
    assert_eq!(lb.objects.switch.port(0).unwrap().stats.tx_bad, 2);
    // Features without those they depend on are refused.
    let mut c = VirtioClient::with_transport(a.gate, &mut lb);
    c.set_status(0).unwrap();
    c.set_status(status::ACKNOWLEDGE | status::DRIVER).unwrap();
    assert_eq!(
        c.set_features(F_VERSION_1 | vnet::offload::F_HOST_TSO4),
        Err(Error::Inval)
    );
}

#[test]
fn notifications_with_and_without_event_index() {
    let mut lb = switch();
    let mut a = Driver::up_with(&mut lb, queue_flags::NO_NOTIFY, ALL | F_EVENT_IDX);
    let mut b = Driver::up_with(&mut lb, 0, ALL | F_EVENT_IDX);
    let mut c = Driver::up(&mut lb, 0);
    // Receive queues are never to be kicked: avail_event one behind
    // with the event index, NO_NOTIFY without.
    let avail_event = ring(RXQ).2 + 4 + 8 * u64::from(QSIZE);
    assert_eq!(b.mem.read_u16(avail_event), Ok(0xffff));
    assert_eq!(c.mem.read_u16(ring(RXQ).2), Ok(USED_NO_NOTIFY));
    b.post_rx();
    c.post_rx();
    // The switch learns where B is.
    b.send([0xff; 6], b"here");
    kick(&mut lb, &b);
    assert_eq!(c.received().len(), 1);
    // A wants no interrupt for its sent frames before 100 of them; B
    // one when its sixth buffer is used.
    let used_event = |q: usize| ring(q).1 + 4 + 2 * u64::from(QSIZE);
    a.mem.write_u16(used_event(TXQ), 99).unwrap();
    b.mem.write_u16(used_event(RXQ), 5).unwrap();
    let triggered = |lb: &Lb| lb.objects.backend.triggered.len();
    let before = triggered(&lb);
    for _ in 0..3 {
        a.send(b.mac, b"x");
    }
    kick(&mut lb, &a);
    assert_eq!(b.received().len(), 3);
    assert_eq!(triggered(&lb), before, "nobody wants an interrupt yet");
    for _ in 0..3 {
        a.send(b.mac, b"y");
    }
    kick(&mut lb, &a);
    assert_eq!(b.received().len(), 3);
    assert_eq!(triggered(&lb), before + 1, "B's sixth buffer");
    // Idle again, A's transmit queue asks for a kick at its next frame.
    let tx_avail_event = ring(TXQ).2 + 4 + 8 * u64::from(QSIZE);
    assert_eq!(a.mem.read_u16(tx_avail_event), Ok(6));
    // C (no event index) is interrupted for every batch.
    let before = triggered(&lb);
    a.send(c.mac, b"z");
    kick(&mut lb, &a);
    assert_eq!(c.received().len(), 1);
    assert_eq!(triggered(&lb), before + 1);
}

#[test]
fn mergeable_receive_buffers() {
    let mut lb = switch();
    let mut a = Driver::up_with(&mut lb, 0, ALL);
    let mut b = Driver::up_with(&mut lb, 0, ALL | F_MRG_RXBUF);
    // 16 buffers of 2 KiB: a 9000-byte frame takes five of them.
    b.post_rx();
    let big = tcp4(b.mac, a.mac, 9000 - 54);
    a.send_large(&tso4(1448), &big, 20);
    kick(&mut lb, &a);
    let used = ring(RXQ).2;
    assert_eq!(b.mem.read_u16(used + 2), Ok(5));
    let mut got = Vec::new();
    for i in 0..5u64 {
        let head = b.mem.read_u32(used + 4 + 8 * i).unwrap() as u16;
        let len = b.mem.read_u32(used + 8 + 8 * i).unwrap() as usize;
        assert_eq!(len, if i < 4 { 0x800 } else { 9012 - 4 * 0x800 });
        let mut buf = vec![0u8; len];
        b.mem.read(buffer(RXQ, head), &mut buf).unwrap();
        got.extend_from_slice(&buf);
    }
    let h = NetHdr::parse(got[..HDR_LEN].try_into().unwrap());
    assert_eq!(
        h,
        NetHdr {
            num_buffers: 5,
            ..tso4(1448)
        }
    );
    assert_eq!(got[HDR_LEN..], big[..]);
    // Eleven buffers left: two more such frames take ten, a third finds
    // one, not enough: dropped, and the buffer stays the driver's.
    for _ in 0..3 {
        a.send_large(&tso4(1448), &big, 20);
        kick(&mut lb, &a);
    }
    assert_eq!(b.mem.read_u16(used + 2), Ok(15));
    let stats = lb.objects.switch.port(1).unwrap().stats;
    assert_eq!((stats.rx, stats.rx_dropped), (3, 1));
    // A small frame still finds the last buffer.
    a.send(b.mac, b"small");
    kick(&mut lb, &a);
    assert_eq!(b.mem.read_u16(used + 2), Ok(16));
}

#[test]
fn sent_buffers_are_reported_with_the_answer() {
    let mut lb = switch();
    let mut a = Driver::up(&mut lb, 0);
    let mut b = Driver::up(&mut lb, 0);
    a.post_rx();
    b.post_rx();
    a.send(b.mac, b"learn");
    kick(&mut lb, &a);
    b.send(a.mac, b"learn");
    kick(&mut lb, &b);
    assert_eq!(a.received().len(), 1);
    let triggered = |lb: &Lb| lb.objects.backend.triggered.len();
    // A pings B: B is interrupted for the frame; A's interrupt for its
    // sent buffer waits.
    let before = triggered(&lb);
    a.send(b.mac, b"ping");
    kick_now(&mut lb, &a);
    assert_eq!(triggered(&lb), before + 1);
    assert_eq!(a.tx_done(), 2, "the buffer is given back at once");
    // B answers: one interrupt for A brings the answer and its buffer.
    b.send(a.mac, b"pong");
    kick_now(&mut lb, &b);
    assert_eq!(triggered(&lb), before + 2);
    assert_eq!(a.received(), [b"pong".to_vec()]);
    // Nothing comes for B: its interrupt comes TX_DONE_US later.
    lb.objects.backend.now += TX_DONE_US / 1000 - 1;
    lb.objects.timeout();
    assert_eq!(triggered(&lb), before + 2);
    assert!(lb.objects.next_timeout_us() <= Some(1000));
    lb.objects.backend.now += 1;
    lb.objects.timeout();
    assert_eq!(triggered(&lb), before + 3);
    // A burst of a quarter of the queue: A may be waiting for room, so
    // its interrupt comes at once, with B's for the frames.
    for _ in 0..QSIZE / 4 {
        a.send(b.mac, b"burst");
    }
    kick_now(&mut lb, &a);
    assert_eq!(triggered(&lb), before + 5);
    // So does a long frame (TCP data: TCP waits for its buffers).
    a.send(b.mac, &[7u8; TX_DONE_SMALL]);
    kick_now(&mut lb, &a);
    assert_eq!(triggered(&lb), before + 7);
}

/// Counts the allocations of the thread that asks ([`allocations`]), so
/// that a test can see what the switch allocates while tests run in
/// parallel.
struct Counting;

thread_local! {
    static ALLOCATIONS: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

// SAFETY: every call goes to the system allocator unchanged; the
// counter is a thread-local cell, which allocates nothing.
unsafe impl std::alloc::GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: std::alloc::Layout) -> *mut u8 {
        ALLOCATIONS.with(|c| c.set(c.get() + 1));
        // SAFETY: the caller's contract is the system allocator's.
        unsafe { std::alloc::System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: std::alloc::Layout) {
        // SAFETY: `ptr` came from `alloc` above, that is the system's.
        unsafe { std::alloc::System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static COUNTING: Counting = Counting;

fn allocations() -> usize {
    ALLOCATIONS.with(|c| c.get())
}

#[test]
fn forwarding_a_frame_allocates_nothing() {
    let (mut lb, mut a, mut b, mut c) = three_ports();
    for d in [&mut a, &mut b, &mut c] {
        d.post_rx();
    }
    // Both addresses learned (the first frame floods: B is not known
    // yet), every list the switch keeps grown once.
    a.send(b.mac, b"hello");
    kick(&mut lb, &a);
    b.send(a.mac, b"hello");
    kick(&mut lb, &b);
    lb.objects.backend.triggered.reserve(64);
    for round in 0..4 {
        a.send(b.mac, b"ping");
        let before = allocations();
        kick(&mut lb, &a);
        assert_eq!(allocations(), before, "round {round}: a unicast frame");
        b.send(a.mac, b"pong");
        let before = allocations();
        kick(&mut lb, &b);
        assert_eq!(allocations(), before, "round {round}: its answer");
    }
    assert_eq!(b.received().len(), 5);
    assert_eq!(a.received().len(), 5);
    assert_eq!(c.received().len(), 1);
}

/// Frames of every kind with random bytes changed (addresses, tags, IP
/// and TCP headers) under random offload headers, sent from a trunk port
/// and an access port that negotiated the offloads, to an access port and
/// a monitor without them and to each other: forwarded, converted, cut or
/// dropped, never a panic; the ports keep working.
#[test]
fn random_frames_and_headers_go_or_drop() {
    let mut lb = switch();
    let mut t = Driver::up_opts(&mut lb, &["name=t", "vlan=trunk=5,7"], ALL);
    let mut n = Driver::up_opts(&mut lb, &["name=n", "vlan=access=5"], ALL);
    let mut a = Driver::up_opts(&mut lb, &["name=a", "vlan=access=5"], F_VERSION_1 | F_MAC);
    let mut m = Driver::up_opts(&mut lb, &["name=m", "type=monitor"], F_VERSION_1 | F_MAC);
    for d in [&mut t, &mut n, &mut a, &mut m] {
        d.post_rx();
    }
    let mut rng = l4_xorshift::XorShift::new(0x5eed_0ff4_a3e5);
    let mut next = move || rng.next_u64();
    for i in 0..3_000 {
        let sender_is_trunk = i % 2 == 0;
        let (from, to) = if sender_is_trunk {
            (t.mac, n.mac)
        } else {
            (n.mac, t.mac)
        };
        let dst = [to, a.mac, [0xff; 6], [2, 9, 9, 9, 9, 9]][(next() % 4) as usize];
        let mut f = match next() % 3 {
            0 => tcp4(dst, from, (next() % 4000) as usize),
            1 => eth(dst, from, &vec![0x45; (next() % 200) as usize]),
            _ => tagged(
                &tcp4(dst, from, (next() % 3000) as usize),
                (next() % 9) as u16,
            ),
        };
        for _ in 0..next() % 4 {
            let at = (next() % f.len().min(80) as u64) as usize;
            f[at] = next() as u8;
        }
        let h = NetHdr {
            flags: (next() % 2) as u8,
            gso_type: [0, GSO_TCPV4, 4, next() as u8][(next() % 4) as usize],
            hdr_len: (next() % 100) as u16,
            gso_size: [1448, 48, 47, 0, next() as u16][(next() % 5) as usize],
            csum_start: (next() % 80) as u16,
            csum_offset: [16, 6, 0, next() as u16][(next() % 4) as usize],
            num_buffers: 0,
        };
        let sender = if sender_is_trunk { &mut t } else { &mut n };
        sender.send_large(&h, &f, ((next() % 60) as usize).min(f.len()));
        kick(&mut lb, sender);
        // Give every receiver its buffers back.
        for d in [&mut t, &mut n, &mut a, &mut m] {
            for (head, _) in d.used_rx() {
                d.make_available(RXQ, head);
            }
        }
    }
    // Frames went every way: into the others (converted, cut) and out.
    for p in 0..4 {
        let st = &lb.objects.switch.port(p).unwrap().stats;
        assert!(st.tx + st.rx > 0, "port {p}: {st:?}");
    }
    // The ports still work: a plain frame from the trunk into VLAN 5.
    let f = eth(a.mac, t.mac, b"after all that");
    t.send_frame(&tagged(&f, 5));
    kick(&mut lb, &t);
    assert_eq!(a.received_frames(), [f.as_slice()]);
}
