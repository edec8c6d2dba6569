//! The server's protocols end to end: client stubs of `l4-ipc` through the
//! in-process loopback to [`cons::Service`] over a fake kernel.

use std::collections::{BTreeMap, VecDeque};

use cons::service::{Backend, GC_PERIOD_MS, client_label, label_client, labels};
use cons::{Console, Options, Service};
use l4::ServerCaps;
use l4_abi::proto::{IcuOp, vcon};
use l4_abi::utcb::MR_COUNT;
use l4_abi::{CapRights, Error, MsgTag, Proto};
use l4_ipc::protocols::{FactoryClient, LogClient};
use l4_ipc::varg::{VAny, VarArgs};
use l4_ipc::{CapArg, Loopback, RecvBufs, Request, Str, Transport};

/// Where the server receives capabilities.
const SERVER_SLOT: u64 = 50;
/// Where clients receive theirs.
const CLIENT_SLOT: u64 = 20;

/// A kernel that records what cons asks of it.
#[derive(Debug, Default)]
struct Fake {
    now: u64,
    out: Vec<u8>,
    typed: VecDeque<Vec<u8>>,
    unmasks: usize,
    gates: BTreeMap<u64, u64>,
    next_gate: u64,
    fail_gates: bool,
    deleted: Vec<u64>,
    dropped: Vec<u64>,
    adopted: Vec<u64>,
    triggers: Vec<u64>,
    users: BTreeMap<u64, bool>,
}

impl Backend for Fake {
    type Caps = Fake;

    fn caps(&mut self) -> &mut Fake {
        self
    }

    fn write_output(&mut self, bytes: &[u8]) {
        self.out.extend_from_slice(bytes);
    }

    fn read_input(&mut self, buf: &mut [u8]) -> Result<(usize, u64), Error> {
        let Some(mut chunk) = self.typed.pop_front() else {
            return Ok((0, vcon::READ_STAT_DONE));
        };
        let n = chunk.len().min(buf.len());
        buf[..n].copy_from_slice(&chunk[..n]);
        chunk.drain(..n);
        if !chunk.is_empty() {
            self.typed.push_front(chunk);
        }
        let done = if self.typed.is_empty() {
            vcon::READ_STAT_DONE
        } else {
            0
        };
        Ok((n, done))
    }

    fn unmask_input(&mut self) {
        self.unmasks += 1;
    }
}

impl ServerCaps for Fake {
    fn now_ms(&mut self) -> u64 {
        self.now
    }

    fn create_gate(&mut self, label: u64) -> Result<u64, Error> {
        if self.fail_gates {
            return Err(Error::NoMem);
        }
        let g = 0x800 + self.next_gate;
        self.next_gate += 1;
        self.gates.insert(g, label);
        Ok(g)
    }

    fn adopt_received(&mut self, slot: u64) -> Result<u64, Error> {
        // The fake keeps every received capability at 0x900 + n.
        let kept = 0x900 + self.adopted.len() as u64;
        self.adopted.push(slot);
        Ok(kept)
    }

    fn trigger(&mut self, irq: u64) {
        self.triggers.push(irq);
    }

    fn delete(&mut self, gate: u64) {
        self.deleted.push(gate);
    }

    fn release(&mut self, cap: u64) {
        self.dropped.push(cap);
    }

    fn has_users(&mut self, gate: u64) -> Result<bool, Error> {
        self.users.get(&gate).copied().ok_or(Error::Inval)
    }
}

fn service(args: &[&str]) -> Service<Fake> {
    let mut s = Service::new(Console::new(Options::parse(args).unwrap()), Fake::default());
    s.start();
    s
}

fn loopback(svc: &mut Service<Fake>) -> Loopback<&mut Service<Fake>> {
    let mut lb = Loopback::new(svc);
    lb.server_rcv = RecvBufs::cap_slot(SERVER_SLOT);
    lb
}

fn output(svc: &mut Service<Fake>) -> String {
    String::from_utf8_lossy(&std::mem::take(&mut svc.backend.out)).into_owned()
}

/// `log_fab:create(L4.Proto.Log, tag, colour, opts...)` as ned sends it.
fn create(
    svc: &mut Service<Fake>,
    tag: &str,
    colour: Option<VAny<16>>,
    opts: &[&str],
) -> Result<u64, Error> {
    let mut args = VarArgs::new();
    for o in opts {
        args.push_str(o).unwrap();
    }
    let mut f = FactoryClient::with_transport(labels::FACTORY, loopback(svc));
    f.rcv = RecvBufs::cap_slot(CLIENT_SLOT);
    f.create_log(tag, colour, &args).map(|c| c.index())
}

fn letter(s: &str) -> Option<VAny<16>> {
    Some(VAny::Str(Str::new(s).unwrap()))
}

/// The gate label of the n-th client created (ids start at 1).
fn label(n: u32) -> u64 {
    client_label(n)
}

fn log(svc: &mut Service<Fake>, n: u32) -> LogClient<Loopback<&mut Service<Fake>>> {
    LogClient::with_transport(label(n), loopback(svc))
}

/// Sends a raw Icu message to client `n`'s log.
fn icu(svc: &mut Service<Fake>, n: u32, words: &[u64], irq: Option<u64>) -> Result<MsgTag, Error> {
    let mut mrs = [0u64; MR_COUNT];
    mrs[..words.len()].copy_from_slice(words);
    let mut items = 0;
    if let Some(i) = irq {
        mrs[words.len()..words.len() + 2]
            .copy_from_slice(&CapArg::new(i, CapRights::RWS).item().to_words());
        items = 1;
    }
    let tag = MsgTag::new(Proto::Irq as i64, words.len() as u32, items, 0);
    let mut lb = loopback(svc);
    let reply = lb.call(Request::new(label(n), tag, &mut mrs))?;
    reply.to_result()?;
    Ok(reply)
}

/// The terminal's input interrupt with `typed` pending.
fn type_in(svc: &mut Service<Fake>, typed: &[u8]) {
    svc.backend.typed.push_back(typed.to_vec());
    let mut mrs = [0u64; MR_COUNT];
    let reply = svc.serve(labels::INPUT, MsgTag::proto(Proto::Irq, 0, 0), &mut mrs);
    assert_eq!(reply, None, "interrupts get no reply");
}

#[test]
fn labels_round_trip() {
    assert_eq!(label_client(client_label(7)), Some(7));
    assert_eq!(label_client(client_label(7) | 3), Some(7), "rights bits");
    assert_eq!(label_client(labels::FACTORY), None);
    assert_eq!(label_client(labels::INPUT), None);
    assert_eq!(client_label(1) & 3, 0);
}

#[test]
fn factory_creates_logs_with_gates() {
    let mut svc = service(&["-a"]);
    assert_eq!(output(&mut svc), "Console Server\ncons> ");
    let g1 = create(&mut svc, "one", letter("g"), &["key=1"]).unwrap();
    assert_eq!(g1, CLIENT_SLOT, "the log lands in the client's slot");
    assert_eq!(
        svc.backend.gates.values().copied().collect::<Vec<_>>(),
        [label(1)]
    );
    assert_eq!(svc.gate(1), Some(0x800));
    assert!(output(&mut svc).contains("Created vcon channel: one"));
    create(&mut svc, "two", Some(VAny::Int(4)), &["key=2", "hide"]).unwrap();
    create(&mut svc, "three", None, &[]).unwrap();
    let c = &svc.console;
    let two = c.client(2).unwrap();
    assert_eq!(
        (two.colour.number(), two.key, two.shown),
        (4, Some(b'2'), false)
    );
    assert_eq!(c.client(3).unwrap().colour.number(), 7);
    // Refusals: a bad colour, a bad option value, other protocols.
    assert_eq!(
        create(&mut svc, "x", Some(VAny::Int(99)), &[]),
        Err(Error::Inval)
    );
    assert!(output(&mut svc).contains("cons: refusing log 'x': colour 99 is not in 0..15"));
    assert_eq!(create(&mut svc, "x", None, &["bufsz=1"]), Err(Error::Inval));
    let mut f = FactoryClient::with_transport(labels::FACTORY, loopback(&mut svc));
    f.rcv = RecvBufs::cap_slot(CLIENT_SLOT);
    assert_eq!(f.create_namespace().err(), Some(Error::NoSys));
    assert_eq!(
        f.create_dataspace(4096, None, None).err(),
        Some(Error::NoSys)
    );
    // No gate, no client.
    svc.backend.fail_gates = true;
    assert_eq!(create(&mut svc, "y", None, &[]), Err(Error::NoMem));
    assert!(svc.console.client_by_name("y").is_none());
}

#[test]
fn log_write_read_and_attributes() {
    let mut svc = service(&["-a"]);
    create(&mut svc, "one", letter("g"), &["key=1"]).unwrap();
    output(&mut svc);
    log(&mut svc, 1).write_all(b"one: hello\n").unwrap();
    assert_eq!(
        output(&mut svc),
        "\r\x1b[K\x1b[32mone     | one: hello\x1b[0m\ncons> "
    );
    // Nothing typed: an empty read with DONE.
    let r = log(&mut svc, 1).read(100).unwrap();
    assert_eq!((r.data.len(), r.flags), (0, vcon::READ_STAT_DONE));
    // Ctrl-E 1, a line.
    type_in(&mut svc, b"\x051hello one\r");
    assert_eq!(svc.backend.unmasks, 1);
    assert_eq!(svc.console.focus(), Some(1));
    let r = log(&mut svc, 1).read(4).unwrap();
    assert_eq!((r.data.as_slice(), r.flags), (&b"hell"[..], 0));
    let r = log(&mut svc, 1).read(1000).unwrap();
    assert_eq!(
        (r.data.as_slice(), r.flags),
        (&b"o one\n"[..], vcon::READ_STAT_DONE)
    );
    log(&mut svc, 1).set_attr(0, 0, 0).unwrap();
    assert_eq!(log(&mut svc, 1).get_attr().unwrap(), (0, 0, 0));
    // Unknown labels and protocols.
    assert_eq!(log(&mut svc, 9).write(b"x"), Err(Error::NoEnt));
    let mut lb = loopback(&mut svc);
    let mut mrs = [0u64; MR_COUNT];
    let t = lb
        .call(Request::new(
            label(1),
            MsgTag::new(0x7777, 1, 0, 0),
            &mut mrs,
        ))
        .unwrap();
    assert_eq!(t.to_result(), Err(Error::BadProto));
    let t = lb
        .call(Request::new(
            0x4,
            MsgTag::new(Proto::Log as i64, 1, 0, 0),
            &mut mrs,
        ))
        .unwrap();
    assert_eq!(t.to_result(), Err(Error::NoEnt));
}

#[test]
fn input_interrupt_through_the_icu() {
    let mut svc = service(&[]);
    create(&mut svc, "one", letter("g"), &["key=1"]).unwrap();
    let info = icu(&mut svc, 1, &[IcuOp::Info.code()], None).unwrap();
    assert_eq!(info.words(), 3);
    // Bind an Irq (it lands in the server's slot and is kept).
    icu(&mut svc, 1, &[IcuOp::Bind.code(), 0], Some(33)).unwrap();
    assert_eq!(svc.backend.adopted, [SERVER_SLOT]);
    type_in(&mut svc, b"\x051x");
    assert_eq!(
        svc.backend.triggers,
        [0x900],
        "input: the client's Irq fires"
    );
    // Mask: no trigger; unmask with input waiting: trigger.
    icu(&mut svc, 1, &[IcuOp::Mask.code(), 0], None).unwrap();
    type_in(&mut svc, b"y");
    assert_eq!(svc.backend.triggers.len(), 1);
    icu(&mut svc, 1, &[IcuOp::Unmask.code(), 0], None).unwrap();
    assert_eq!(svc.backend.triggers.len(), 2);
    // Read everything, unmask: nothing to signal.
    log(&mut svc, 1).read(100).unwrap();
    icu(&mut svc, 1, &[IcuOp::Unmask.code(), 0], None).unwrap();
    assert_eq!(svc.backend.triggers.len(), 2);
    // A second bind replaces (and drops) the first Irq.
    icu(&mut svc, 1, &[IcuOp::Bind.code(), 0], Some(34)).unwrap();
    assert_eq!(svc.backend.dropped, [0x900]);
    icu(&mut svc, 1, &[IcuOp::SetMode.code(), 0, 0], None).unwrap();
    icu(&mut svc, 1, &[IcuOp::Unbind.code(), 0], Some(34)).unwrap();
    assert_eq!(svc.backend.dropped, [0x900, 0x901]);
    // Refusals: other lines, no Irq, unknown and MSI operations, nothing.
    assert_eq!(
        icu(&mut svc, 1, &[IcuOp::Bind.code(), 1], Some(35)),
        Err(Error::Inval)
    );
    assert_eq!(
        icu(&mut svc, 1, &[IcuOp::Bind.code(), 0], None),
        Err(Error::MsgMissArg)
    );
    assert_eq!(
        icu(&mut svc, 1, &[IcuOp::Unmask.code()], None),
        Err(Error::Inval)
    );
    assert_eq!(icu(&mut svc, 1, &[99, 0], None), Err(Error::NoSys));
    assert_eq!(
        icu(&mut svc, 1, &[IcuOp::MsiInfo.code(), 0], None),
        Err(Error::NoSys)
    );
    assert_eq!(icu(&mut svc, 1, &[], None), Err(Error::MsgTooShort));
}

#[test]
fn two_clients_switching() {
    let mut svc = service(&["-a"]);
    create(&mut svc, "one", letter("g"), &["key=1"]).unwrap();
    create(&mut svc, "two", letter("b"), &["key=2"]).unwrap();
    log(&mut svc, 1)
        .write(b"one: hello from one (1)\n")
        .unwrap();
    log(&mut svc, 2)
        .write(b"two: hello from two (1)\n")
        .unwrap();
    output(&mut svc);
    type_in(&mut svc, b"\x05");
    type_in(&mut svc, b"1");
    type_in(&mut svc, b"hello one\r");
    let line = log(&mut svc, 1).read(100).unwrap();
    assert_eq!(line.data.as_slice(), b"hello one\n");
    log(&mut svc, 1).write(b"one: got 'hello one'\n").unwrap();
    type_in(&mut svc, b"\x05");
    type_in(&mut svc, b"2");
    type_in(&mut svc, b"hello two\r");
    assert!(log(&mut svc, 1).read(100).unwrap().data.is_empty());
    let line = log(&mut svc, 2).read(100).unwrap();
    assert_eq!(line.data.as_slice(), b"hello two\n");
    log(&mut svc, 2).write(b"two: got 'hello two'\n").unwrap();
    let o = output(&mut svc);
    let want = [
        "------------- Connecting to 'one' -------------\none: hello from one (1)\n",
        "hello one\none: got 'hello one'\n",
        "[Ctrl-E]",
        "------------- Connecting to 'two' -------------\ntwo: hello from two (1)\n",
        "hello two\ntwo: got 'hello two'\n",
    ];
    let mut at = 0;
    for w in want {
        let found = o[at..]
            .find(w)
            .unwrap_or_else(|| panic!("{w:?} not in {:?}", &o[at..]));
        at += found + w.len();
    }
}

#[test]
fn partial_lines_and_gone_clients_on_timeouts() {
    let mut svc = service(&["-a"]);
    create(&mut svc, "one", letter("n"), &[]).unwrap();
    create(&mut svc, "two", letter("n"), &["keep"]).unwrap();
    output(&mut svc);
    svc.backend.now = 100;
    log(&mut svc, 1).write(b"partial").unwrap();
    assert_eq!(svc.next_timeout_ms(), Some(50));
    svc.backend.now = 150;
    assert_eq!(svc.next_timeout_ms(), Some(0));
    svc.timeout();
    assert_eq!(output(&mut svc), "\r\x1b[Kone     | partial");
    // A client counts as gone only after it was seen in use.
    svc.backend.users.insert(0x800, false);
    svc.backend.now = 2000;
    svc.timeout();
    assert!(svc.console.client(1).is_some());
    svc.backend.users.insert(0x800, true);
    svc.backend.users.insert(0x801, true);
    svc.backend.now = 3000;
    svc.timeout();
    svc.backend.users.insert(0x800, false);
    svc.backend.users.insert(0x801, false);
    svc.backend.now = 3000 + GC_PERIOD_MS;
    svc.timeout();
    assert!(svc.console.client(1).is_none(), "gone");
    assert!(svc.console.client(2).unwrap().dead, "kept");
    assert_eq!(svc.backend.deleted, [0x800, 0x801]);
    assert_eq!(svc.gate(1), None);
    assert_eq!(log(&mut svc, 1).write(b"x"), Err(Error::NoEnt));
    assert_eq!(svc.next_timeout_ms(), None, "nothing left to wait for");
}

#[test]
fn polling_and_messages() {
    let mut svc = service(&[]);
    output(&mut svc);
    svc.backend.typed.push_back(b"ls".to_vec());
    svc.backend.typed.push_back(b"\r".to_vec());
    svc.poll_input();
    assert_eq!(svc.backend.unmasks, 0);
    assert!(output(&mut svc).contains("no clients"));
    svc.message("WARNING: polling");
    assert_eq!(output(&mut svc), "\r\x1b[KWARNING: polling\ncons> ");
}

/// Random messages to every label never panic the server.
#[test]
fn random_messages_never_panic() {
    let mut svc = service(&["-a"]);
    create(&mut svc, "one", letter("g"), &["key=1"]).unwrap();
    let mut rng = l4_xorshift::XorShift::new(0x1234_5678_9abc_def1);
    let mut next = move || rng.next_u64();
    let labels = [
        labels::FACTORY,
        labels::INPUT,
        label(1),
        label(2),
        0,
        u64::MAX,
    ];
    let protos = [
        Proto::Log as i64,
        Proto::Irq as i64,
        Proto::Factory as i64,
        0,
        0x4000,
    ];
    for _ in 0..20_000 {
        let mut mrs = [0u64; MR_COUNT];
        for m in mrs.iter_mut().take(8) {
            *m = match next() % 4 {
                0 => next() % 8,
                1 => next(),
                2 => (next() % 64) << 16 | (next() % 4),
                _ => 0,
            };
        }
        let l = labels[(next() % labels.len() as u64) as usize];
        let p = protos[(next() % protos.len() as u64) as usize];
        let words = (next() % 10) as u32;
        let items = (next() % 2) as u32;
        if next() % 3 == 0 {
            svc.backend
                .typed
                .push_back((0..next() % 20).map(|_| next() as u8).collect());
        }
        let _ = svc.serve(l, MsgTag::new(p, words, items, 0), &mut mrs);
        if next() % 50 == 0 {
            svc.backend.now += 100;
            svc.timeout();
        }
        svc.backend.out.clear();
    }
}
