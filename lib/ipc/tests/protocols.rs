//! Client stub -> loopback -> dispatch -> server -> reply, for every
//! declared protocol, and hostile requests and replies.

#![cfg(feature = "alloc")]

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;

use l4_abi::proto::varg::{self, Varg};
use l4_abi::{CapRights, Fpage, MemRights, Proto, RecvItem, SendItem};
use l4_ipc::codec::{Arg, Reader, Writer};
use l4_ipc::protocols::*;
use l4_ipc::varg::{VAny, VOpt, VStr, VUint, VarArgs, header, str_bytes};
use l4_ipc::{
    Bytes, CapArg, Ctx, Dispatch, Error, Loopback, MR_COUNT, MemArg, MsgTag, Object, ObjectMap,
    OptCap, Protocol, RcvCap, RecvBufs, Request, Str, Transport, arg_enum, handle_request,
    protocol,
};

/// Where the loopback server receives capabilities.
const SERVER_SLOT: u64 = 50;
/// Where clients receive capabilities.
const CLIENT_SLOT: u64 = 20;

fn loopback(objects: ObjectMap) -> Loopback<ObjectMap> {
    let mut lb = Loopback::new(objects);
    lb.server_rcv = RecvBufs::cap_slot(SERVER_SLOT);
    lb
}

/// A loopback to one object: `server` speaking `P` under `label`.
fn serve<P: Dispatch<S> + 'static, S: 'static>(label: u64, server: S) -> Loopback<ObjectMap> {
    let mut objects = ObjectMap::new();
    objects
        .register(label, Object::<P, S>::new(server))
        .unwrap();
    loopback(objects)
}

// ----------------------------------------------------------------------
// Every argument type
// ----------------------------------------------------------------------

arg_enum! {
    /// A test enum.
    pub enum Mode {
        /// One.
        One = 1,
        /// Three.
        Three = 3,
    }
}

protocol! {
    /// Echoes everything.
    pub protocol Echo = 0x7e00;
    client EchoClient;
    server EchoServer;

    /// Scalars.
    fn scalars(a: u8, b: u16, c: u32, d: u64, e: i8, f: i16, g: i32, h: i64)
        -> (u8, u16, u32, u64, i8, i16, i32, i64) = 0;
    /// More.
    fn misc(a: bool, b: usize, c: [u32; 3], d: Option<u64>, e: Option<u64>, f: Mode, g: Fpage)
        -> (bool, usize, [u32; 3], Option<u64>, Option<u64>, Mode, Fpage) = 1;
    /// Strings.
    fn strings(a: Bytes<40>, b: Str<20>, c: Bytes<0>) -> (Str<20>, Bytes<40>, u64) = 2;
    /// A capability in, a capability out; the label of the gate.
    fn caps(a: CapArg, b: OptCap) -> (CapArg, u64, u64) = 3;
    /// Nothing.
    fn nothing() -> () = 0xffff_ffff_ffff_ffff;
}

struct EchoImpl;

impl EchoServer for EchoImpl {
    fn scalars(
        &mut self,
        _: &Ctx,
        a: u8,
        b: u16,
        c: u32,
        d: u64,
        e: i8,
        f: i16,
        g: i32,
        h: i64,
    ) -> Result<(u8, u16, u32, u64, i8, i16, i32, i64), Error> {
        Ok((a, b, c, d, e, f, g, h))
    }

    fn misc(
        &mut self,
        _: &Ctx,
        a: bool,
        b: usize,
        c: [u32; 3],
        d: Option<u64>,
        e: Option<u64>,
        f: Mode,
        g: Fpage,
    ) -> Result<(bool, usize, [u32; 3], Option<u64>, Option<u64>, Mode, Fpage), Error> {
        Ok((a, b, c, d, e, f, g))
    }

    fn strings(
        &mut self,
        _: &Ctx,
        a: Bytes<40>,
        b: Str<20>,
        c: Bytes<0>,
    ) -> Result<(Str<20>, Bytes<40>, u64), Error> {
        Ok((b, a, c.len() as u64))
    }

    fn caps(&mut self, ctx: &Ctx, a: CapArg, b: OptCap) -> Result<(CapArg, u64, u64), Error> {
        // The capability arrived in the server's receive slot.
        assert_eq!(a.index, SERVER_SLOT);
        assert_eq!(ctx.items().len(), 1);
        assert_eq!(b, OptCap(None));
        Ok((a, ctx.label(), a.rights.0 as u64))
    }

    fn nothing(&mut self, _: &Ctx) -> Result<(), Error> {
        Ok(())
    }
}

#[test]
fn every_argument_type_round_trips() {
    let mut lb = serve::<Echo, _>(36, EchoImpl);
    let mut c = EchoClient::with_transport(36, &mut lb);
    let s = (
        u8::MAX,
        u16::MAX,
        u32::MAX,
        u64::MAX,
        i8::MIN,
        i16::MIN,
        i32::MIN,
        i64::MIN,
    );
    assert_eq!(c.scalars(s.0, s.1, s.2, s.3, s.4, s.5, s.6, s.7), Ok(s));
    let f = Fpage::mem(0x1234_5000, 12, MemRights::RX);
    let m = (
        true,
        usize::MAX,
        [1, 2, u32::MAX],
        Some(7),
        None,
        Mode::Three,
        f,
    );
    assert_eq!(c.misc(m.0, m.1, m.2, m.3, m.4, m.5, m.6), Ok(m));
    let (s, b, n) = c.strings(b"\0\x01binary\xff", "grüß dich", b"").unwrap();
    assert_eq!(
        (s.as_str(), b.as_slice(), n),
        ("grüß dich", &b"\0\x01binary\xff"[..], 0)
    );
    assert_eq!(
        c.strings(&[0; 41], "", b""),
        Err(Error::TooBig),
        "refused before sending"
    );
    assert_eq!(
        c.strings(b"", "123456789012345678901", b""),
        Err(Error::TooBig)
    );
    assert_eq!(c.strings(b"", "", b"x"), Err(Error::TooBig));
    c.rcv = RecvBufs::cap_slot(CLIENT_SLOT);
    let (cap, label, rights) = c.caps(CapArg::new(3, CapRights::RWS), None).unwrap();
    assert_eq!(
        cap,
        CapArg::new(CLIENT_SLOT, CapRights::RWS),
        "mapped back to us"
    );
    assert_eq!((label, rights), (36, CapRights::RWS.0 as u64));
    assert_eq!(c.nothing(), Ok(()));
    assert_eq!(lb.calls, 5, "the refused calls never left the client");
    assert_eq!(Echo::op_name(3), Some("caps"));
    assert_eq!(Echo::op_name(4), None);
    assert_eq!(<Echo as Protocol>::NAME, "Echo");
}

// ----------------------------------------------------------------------
// Mock servers of the declared protocols
// ----------------------------------------------------------------------

#[derive(Default)]
struct DsState {
    size: u64,
    cleared: Vec<(u64, u64)>,
    copied: Vec<(u64, CapArg, u64, u64)>,
    calls: usize,
}

struct Ds(Rc<RefCell<DsState>>);

impl DataspaceServer for Ds {
    fn map(&mut self, _: &Ctx, offset: u64, spot: u64, flags: u64) -> Result<MemArg, Error> {
        let s = self.0.borrow();
        if offset >= s.size {
            return Err(Error::Range);
        }
        let rights = MemRights((flags & ds_flags::RIGHTS_MASK) as u8);
        let base = 0x4000_0000 + (offset & !0xfff);
        Ok(MemArg::map(Fpage::mem(base, 12, rights), spot))
    }

    fn clear(&mut self, _: &Ctx, offset: u64, size: u64) -> Result<(), Error> {
        let mut s = self.0.borrow_mut();
        s.calls += 1;
        s.cleared.push((offset, size));
        Ok(())
    }

    fn info(&mut self, _: &Ctx) -> Result<(u64, u64), Error> {
        Ok((self.0.borrow().size, ds_flags::RW))
    }

    fn copy_in(
        &mut self,
        _: &Ctx,
        dst_offset: u64,
        src: CapArg,
        src_offset: u64,
        size: u64,
    ) -> Result<(), Error> {
        self.0
            .borrow_mut()
            .copied
            .push((dst_offset, src, src_offset, size));
        Ok(())
    }

    fn allocate(&mut self, _: &Ctx, offset: u64, size: u64) -> Result<(), Error> {
        if offset
            .checked_add(size)
            .is_none_or(|e| e > self.0.borrow().size)
        {
            return Err(Error::Range);
        }
        Ok(())
    }
}

#[derive(Default)]
struct Ns {
    entries: HashMap<String, (u64, Option<CapArg>)>,
}

impl NamespaceServer for Ns {
    fn query(&mut self, _: &Ctx, name: Str<NAME_MAX>) -> Result<(u64, CapArg), Error> {
        // "a/b": "a" resolves to a sub-name space, "/b" is left.
        let (head, rest) = match name.split_once('/') {
            Some((h, _)) => (h, name.len() - h.len()),
            None => (&*name, 0),
        };
        match self.entries.get(head) {
            Some((_, Some(cap))) => Ok((rest as u64, *cap)),
            Some((_, None)) => Err(Error::Again),
            None => Err(Error::NoEnt),
        }
    }

    fn register(
        &mut self,
        _: &Ctx,
        flags: u64,
        name: Str<NAME_MAX>,
        cap: OptCap,
    ) -> Result<(), Error> {
        if self.entries.contains_key(&*name) && flags & ns_flags::OVERWRITE == 0 {
            return Err(Error::Exist);
        }
        // A real server would move the capability out of its receive slot;
        // here it keeps a capability of its own under a fixed index.
        let cap = cap.0.map(|c| CapArg::new(100, c.rights));
        self.entries.insert(name.to_string(), (flags, cap));
        Ok(())
    }

    fn unlink(&mut self, _: &Ctx, name: Str<NAME_MAX>) -> Result<(), Error> {
        self.entries.remove(&*name).map(|_| ()).ok_or(Error::NoEnt)
    }
}

struct Par(Rc<RefCell<Vec<(u64, u64)>>>);

impl ParentServer for Par {
    fn signal(&mut self, _: &Ctx, sig: u64, val: u64) -> Result<(), Error> {
        self.0.borrow_mut().push((sig, val));
        Ok(())
    }
}

#[derive(Default)]
struct LogState {
    out: Vec<u8>,
    attrs: (u64, u64, u64),
}

struct Lg(Rc<RefCell<LogState>>);

impl LogServer for Lg {
    fn write(&mut self, _: &Ctx, data: Bytes<LOG_WRITE_MAX>) -> Result<(), Error> {
        self.0.borrow_mut().out.extend_from_slice(&data);
        Ok(())
    }

    fn read(&mut self, _: &Ctx, max: u64) -> Result<LogRead, Error> {
        let input = b"typed";
        let n = input.len().min(max as usize);
        Ok(LogRead {
            data: Bytes::new(&input[..n])?,
            flags: if n == input.len() {
                l4_abi::proto::vcon::READ_STAT_DONE
            } else {
                0
            },
        })
    }

    fn set_attr(&mut self, _: &Ctx, i: u64, o: u64, l: u64) -> Result<(), Error> {
        self.0.borrow_mut().attrs = (i, o, l);
        Ok(())
    }

    fn get_attr(&mut self, _: &Ctx) -> Result<(u64, u64, u64), Error> {
        Ok(self.0.borrow().attrs)
    }
}

#[derive(Debug, Default, PartialEq)]
struct FacLog {
    tag: String,
    colour: Option<String>,
    opts: Vec<String>,
}

#[derive(Default)]
struct FacState {
    dataspaces: Vec<(u64, Option<u64>, Option<u64>)>,
    logs: Vec<FacLog>,
    scheds: Vec<(u64, u64, Option<u64>)>,
    gates: Vec<(Option<u64>, Option<CapArg>)>,
}

struct Fac(Rc<RefCell<FacState>>);

impl FactoryServer for Fac {
    fn create_dataspace(
        &mut self,
        _: &Ctx,
        size: VUint,
        flags: VOpt<VUint>,
        align: VOpt<VUint>,
    ) -> Result<RcvCap, Error> {
        if size.0 == 0 {
            return Err(Error::Inval);
        }
        let f = flags.0.map(|v| v.0);
        self.0
            .borrow_mut()
            .dataspaces
            .push((size.0, f, align.0.map(|v| v.0)));
        Ok(RcvCap::new(200, CapRights::RWSD))
    }

    fn create_namespace(&mut self, _: &Ctx) -> Result<RcvCap, Error> {
        Ok(RcvCap::new(201, CapRights::RW))
    }

    fn create_log(
        &mut self,
        _: &Ctx,
        tag: VStr<LOG_TAG_MAX>,
        colour: VOpt<VAny<16>>,
        opts: VarArgs,
    ) -> Result<RcvCap, Error> {
        let colour = colour.0.map(|c| match c {
            VAny::Str(s) => s.to_string(),
            other => format!("{}", other.as_int().unwrap_or(-1)),
        });
        let mut list = Vec::new();
        for a in opts.iter() {
            let mut buf = [0; 64];
            match a {
                Ok(v @ Varg::Str(..)) => list.push(
                    String::from_utf8(str_bytes(&v, &mut buf).ok_or(Error::TooBig)?.to_vec())
                        .map_err(|_| Error::Inval)?,
                ),
                _ => return Err(Error::Inval),
            }
        }
        self.0.borrow_mut().logs.push(FacLog {
            tag: tag.as_str().to_string(),
            colour,
            opts: list,
        });
        Ok(RcvCap::new(202, CapRights::RW))
    }

    fn create_scheduler(
        &mut self,
        _: &Ctx,
        max_prio: VUint,
        base_prio: VUint,
        cpus: VOpt<VUint>,
    ) -> Result<RcvCap, Error> {
        if max_prio.0 <= base_prio.0 {
            return Err(Error::Inval);
        }
        self.0
            .borrow_mut()
            .scheds
            .push((max_prio.0, base_prio.0, cpus.0.map(|v| v.0)));
        Ok(RcvCap::new(203, CapRights::RW))
    }

    fn create_ipc_gate(
        &mut self,
        _: &Ctx,
        label: VOpt<VUint>,
        thread: OptCap,
    ) -> Result<RcvCap, Error> {
        self.0
            .borrow_mut()
            .gates
            .push((label.0.map(|v| v.0), thread.0));
        Ok(RcvCap::new(204, CapRights::ALL))
    }

    fn create_factory(&mut self, _: &Ctx, quota: VUint) -> Result<RcvCap, Error> {
        if quota.0 > 1 << 20 {
            return Err(Error::NoMem);
        }
        Ok(RcvCap::new(205, CapRights::RW))
    }
}

// ----------------------------------------------------------------------
// Round trips of the declared protocols
// ----------------------------------------------------------------------

#[test]
fn dataspace() {
    let st = Rc::new(RefCell::new(DsState {
        size: 0x10_000,
        ..Default::default()
    }));
    let mut lb = serve::<Dataspace, _>(4, Ds(st.clone()));
    let mut ds = DataspaceClient::with_transport(4, &mut lb);
    assert_eq!(ds.info(), Ok((0x10_000, ds_flags::RW)));
    assert_eq!(ds.size(), Ok(0x10_000));
    assert_eq!(ds.flags(), Ok(ds_flags::RW));
    // Map into a 1 MiB receive window at 0x80_0000, for address 0x80_3000.
    ds.rcv
        .set(&[RecvItem::Window(Fpage::mem(0x80_0000, 20, MemRights::RWX))])
        .unwrap();
    let m = ds.map(0x2345, 0x80_3000, ds_flags::RW).unwrap();
    assert_eq!(m.fpage, Fpage::mem(0x80_3000, 12, MemRights::RW));
    assert_eq!(m.snd_base, 0x80_3000);
    assert_eq!(ds.map(0x10_000, 0, ds_flags::R), Err(Error::Range));
    // Without a receive window the mapping cannot be delivered.
    ds.rcv.clear();
    assert_eq!(ds.map(0, 0, ds_flags::R), Err(Error::RecvMsgCut));
    assert_eq!(ds.clear(0x1000, 0x2000), Ok(()));
    assert_eq!(ds.allocate(0, 0x10_000), Ok(()));
    assert_eq!(ds.allocate(1, u64::MAX), Err(Error::Range));
    assert_eq!(ds.copy_in(8, CapArg::new(7, CapRights::R), 16, 32), Ok(()));
    let s = st.borrow();
    assert_eq!(s.cleared, [(0x1000, 0x2000)]);
    assert_eq!(
        s.copied,
        [(8, CapArg::new(SERVER_SLOT, CapRights::R), 16, 32)]
    );
    assert_eq!(Dataspace::ID, 0x4000);
    assert_eq!(
        (Dataspace::map, Dataspace::clear, Dataspace::info),
        (0, 1, 2)
    );
    assert_eq!((Dataspace::copy_in, Dataspace::allocate), (3, 4));
}

#[test]
fn namespace() {
    let mut lb = serve::<Namespace, _>(8, Ns::default());
    let mut ns = NamespaceClient::with_transport(8, &mut lb);
    ns.rcv = RecvBufs::cap_slot(CLIENT_SLOT);
    assert_eq!(ns.query("rom"), Err(Error::NoEnt));
    let rom = CapArg::new(33, CapRights::RO);
    assert_eq!(ns.register(ns_flags::RO, "rom", Some(rom)), Ok(()));
    assert_eq!(
        ns.register(ns_flags::RO, "rom", Some(rom)),
        Err(Error::Exist)
    );
    let rw = ns_flags::RW | ns_flags::OVERWRITE;
    assert_eq!(ns.register(rw, "rom", Some(rom)), Ok(()));
    assert_eq!(ns.register(ns_flags::RW, "later", None), Ok(()));
    assert_eq!(
        ns.query("rom"),
        Ok((0, CapArg::new(CLIENT_SLOT, CapRights::RO)))
    );
    assert_eq!(ns.query("rom/hello.lua").map(|r| r.0), Ok(10));
    assert_eq!(ns.query("later"), Err(Error::Again));
    let long = "x".repeat(NAME_MAX);
    assert_eq!(ns.query(&long), Err(Error::NoEnt));
    assert_eq!(ns.query(&(long + "x")), Err(Error::TooBig));
    assert_eq!(ns.unlink("rom"), Ok(()));
    assert_eq!(ns.unlink("rom"), Err(Error::NoEnt));
    assert_eq!(
        (
            Namespace::ID,
            Namespace::query,
            Namespace::register,
            Namespace::unlink
        ),
        (0x4001, 0, 1, 3)
    );
}

#[test]
fn parent() {
    let got = Rc::new(RefCell::new(Vec::new()));
    let mut lb = serve::<Parent, _>(12, Par(got.clone()));
    let mut p = ParentClient::with_transport(12, &mut lb);
    assert_eq!(p.signal(parent_signal::EXIT, 42), Ok(()));
    assert_eq!(*got.borrow(), [(0, 42)]);
    assert_eq!(Parent::ID, 0x4002);
}

#[test]
fn log() {
    let st = Rc::new(RefCell::new(LogState::default()));
    let mut lb = serve::<Log, _>(16, Lg(st.clone()));
    let mut log = LogClient::with_transport(16, &mut lb);
    assert_eq!(log.write(b"hello\n"), Ok(()));
    let big = vec![b'x'; LOG_WRITE_MAX];
    assert_eq!(log.write(&big), Ok(()));
    assert_eq!(log.write(&[0; LOG_WRITE_MAX + 1]), Err(Error::TooBig));
    let long: Vec<u8> = (0..1500u32).map(|i| b'a' + (i % 26) as u8).collect();
    assert_eq!(log.write_all(&long), Ok(()));
    let r = log.read(100).unwrap();
    assert_eq!(r.data.as_slice(), b"typed");
    assert_eq!(r.flags, l4_abi::proto::vcon::READ_STAT_DONE);
    assert_eq!(log.read(2).unwrap().flags, 0);
    assert_eq!(log.set_attr(1, 2, 3), Ok(()));
    assert_eq!(log.get_attr(), Ok((1, 2, 3)));
    let s = st.borrow();
    assert_eq!(&s.out[..6], b"hello\n");
    assert_eq!(s.out.len(), 6 + LOG_WRITE_MAX + long.len());
    assert_eq!(&s.out[6 + LOG_WRITE_MAX..], &long[..]);
    assert_eq!(Log::ID, -13);
}

#[test]
fn factory() {
    let st = Rc::new(RefCell::new(FacState::default()));
    let mut lb = serve::<Factory, _>(20, Fac(st.clone()));
    let mut f = FactoryClient::with_transport(20, &mut lb);
    f.rcv = RecvBufs::cap_slot(CLIENT_SLOT);
    let landed = RcvCap::new(CLIENT_SLOT, CapRights::RWSD);
    assert_eq!(f.create_dataspace(0x1000, None, None), Ok(landed));
    assert_eq!(f.create_dataspace(0x2000, None, Some(21)), Ok(landed));
    assert_eq!(f.create_dataspace(0x2000, Some(3), Some(21)), Ok(landed));
    assert_eq!(f.create_dataspace(0, None, None), Err(Error::Inval));
    assert_eq!(f.create_namespace().map(RcvCap::index), Ok(CLIENT_SLOT));
    let mut opts = VarArgs::new();
    opts.push_str("key=1").unwrap().push_str("keep").unwrap();
    let blue = VAny::Str(Str::new("B").unwrap());
    assert!(f.create_log("vm1", Some(blue), &opts).is_ok());
    assert!(f.create_log("io", None, &VarArgs::new()).is_ok());
    assert!(
        f.create_log("cpu", Some(VAny::Int(3)), &VarArgs::new())
            .is_ok()
    );
    assert_eq!(
        f.create_scheduler(10, 2, Some(0b11)).map(|c| c.0.index),
        Ok(20)
    );
    assert_eq!(f.create_scheduler(2, 2, None), Err(Error::Inval));
    let thread = CapArg::new(3, CapRights::RWS);
    assert!(f.create_ipc_gate(None, None).is_ok());
    assert!(f.create_ipc_gate(Some(0x10), Some(thread)).is_ok());
    assert!(f.create_factory(4096).is_ok());
    assert_eq!(f.create_factory(1 << 21), Err(Error::NoMem));
    // The generic form, as ned's factory:create(L4.Proto.Namespace).
    assert!(f.create(ids::NAMESPACE, &VarArgs::new()).is_ok());
    let mut a = VarArgs::new();
    a.push_int(0x1000).unwrap();
    assert!(f.create(ids::DATASPACE, &a).is_ok(), "signed size accepted");
    assert_eq!(f.create(Proto::Vm as i64, &a), Err(Error::NoSys));
    let s = st.borrow();
    assert_eq!(
        s.dataspaces,
        [
            (0x1000, None, None),
            (0x2000, None, Some(21)),
            (0x2000, Some(3), Some(21)),
            (0x1000, None, None)
        ]
    );
    assert_eq!(
        s.logs,
        [
            FacLog {
                tag: "vm1".into(),
                colour: Some("B".into()),
                opts: vec!["key=1".into(), "keep".into()]
            },
            FacLog {
                tag: "io".into(),
                colour: None,
                opts: vec![]
            },
            FacLog {
                tag: "cpu".into(),
                colour: Some("3".into()),
                opts: vec![]
            },
        ]
    );
    assert_eq!(s.scheds, [(10, 2, Some(3))]);
    assert_eq!(
        s.gates,
        [
            (None, None),
            (Some(0x10), Some(CapArg::new(SERVER_SLOT, CapRights::RWS)))
        ]
    );
}

// ----------------------------------------------------------------------
// Wire layouts shared with the kernel
// ----------------------------------------------------------------------

/// Records requests; replies with a fixed reply.
struct Capture {
    reply: MsgTag,
    reply_words: Vec<u64>,
    requests: Vec<(u64, MsgTag, Vec<u64>, RecvBufs)>,
}

impl Capture {
    fn new(reply: MsgTag, reply_words: &[u64]) -> Capture {
        Capture {
            reply,
            reply_words: reply_words.to_vec(),
            requests: Vec::new(),
        }
    }

    fn last(&self) -> (MsgTag, &[u64]) {
        let r = self.requests.last().unwrap();
        (r.1, &r.2)
    }
}

impl Transport for Capture {
    fn call(&mut self, r: Request<'_>) -> Result<MsgTag, Error> {
        self.requests
            .push((r.cap, r.tag, r.mrs[..r.tag.mr_len()].to_vec(), *r.rcv));
        r.mrs[..self.reply_words.len()].copy_from_slice(&self.reply_words);
        Ok(self.reply)
    }
}

#[test]
fn log_write_is_the_vcon_layout() {
    let t = Capture::new(MsgTag::new(0, 0, 0, 0), &[]);
    let mut log = LogClient::with_transport(20, t);
    log.write(b"hello, world!").unwrap();
    let (tag, m) = log.transport.last();
    assert_eq!(tag.label(), Proto::Log as i64);
    assert_eq!(tag.items(), 0);
    assert_eq!(m[0], l4_abi::proto::VconOp::Write.code());
    assert_eq!(m[1], 13);
    assert_eq!(
        m[2..],
        [
            u64::from_le_bytes(*b"hello, w"),
            u64::from_le_bytes(*b"orld!\0\0\0")
        ]
    );
    log.write(&[7; LOG_WRITE_MAX]).unwrap();
    assert_eq!(log.transport.last().0.words(), 63);
    assert_eq!(log.transport.requests[1].0, 20);
}

#[test]
fn kernel_factory_layout_and_reply() {
    // The kernel replies label 0, no words, no items, and has put the new
    // capability into the first receive slot.
    let t = Capture::new(MsgTag::new(0, 0, 0, 0), &[]);
    let mut f = FactoryClient::with_transport(8, t);
    f.rcv = RecvBufs::cap_slot(0x40);
    let cap = f.create_ipc_gate(None, None).unwrap();
    assert_eq!(cap, RcvCap::new(0x40, CapRights::ALL));
    let (tag, m) = f.transport.last();
    assert_eq!(tag, MsgTag::new(Proto::Factory as i64, 1, 0, 0));
    assert_eq!(m, [l4_abi::proto::FactoryOp::IpcGate.code()]);
    assert_eq!(f.transport.requests[0].3.first_cap_slot(), Some(0x40));

    let thread = CapArg::new(3, CapRights::RWS);
    f.create_ipc_gate(Some(0x77), Some(thread)).unwrap();
    let (tag, m) = f.transport.last();
    assert_eq!((tag.words(), tag.items()), (3, 1));
    assert_eq!(&m[..3], &[0, header(varg::UMWORD, 8), 0x77]);
    assert_eq!(SendItem::from_words([m[3], m[4]]), thread.item());

    f.create_factory(1 << 16).unwrap();
    let (_, m) = f.transport.last();
    assert_eq!(
        l4_abi::proto::FactoryOp::try_from(m[0]),
        Ok(l4_abi::proto::FactoryOp::Factory)
    );
    let mut args = l4_abi::proto::varg::Vargs::new(&m[1..]);
    assert_eq!(args.next(), Some(Ok(Varg::Umword(1 << 16))));
    assert_eq!(args.next(), None);

    // An absent optional argument before a present one is nil.
    f.create_dataspace(0x1000, None, Some(12)).unwrap();
    let (_, m) = f.transport.last();
    assert_eq!(m[0], 0x4000);
    let got: Vec<_> = l4_abi::proto::varg::Vargs::new(&m[1..]).collect();
    assert_eq!(
        got,
        [
            Ok(Varg::Umword(0x1000)),
            Ok(Varg::Nil),
            Ok(Varg::Umword(12))
        ]
    );
    f.create_log("vm1", None, &VarArgs::new()).unwrap();
    let (tag, m) = f.transport.last();
    assert_eq!(m[0], (-13i64) as u64);
    assert_eq!(
        tag.words(),
        3,
        "opcode and tag; the absent colour is left out"
    );

    // Without a receive slot and without an item there is no capability.
    f.rcv.clear();
    assert_eq!(f.create_namespace(), Err(Error::MsgMissArg));
}

// ----------------------------------------------------------------------
// Hostile requests
// ----------------------------------------------------------------------

/// Sends a raw request to the dataspace/namespace/factory objects; returns
/// the reply and how many operations the servers carried out.
struct Target {
    objects: ObjectMap,
    ds: Rc<RefCell<DsState>>,
}

impl Target {
    fn new() -> Target {
        let ds = Rc::new(RefCell::new(DsState {
            size: 0x1000,
            ..Default::default()
        }));
        let mut objects = ObjectMap::new();
        objects
            .register(4, Object::<Dataspace, _>::new(Ds(ds.clone())))
            .unwrap();
        objects
            .register(8, Object::<Namespace, _>::new(Ns::default()))
            .unwrap();
        objects
            .register(20, Object::<Factory, _>::new(Fac(Rc::default())))
            .unwrap();
        objects
            .register(36, Object::<Echo, _>::new(EchoImpl))
            .unwrap();
        Target { objects, ds }
    }

    fn send(&mut self, label: u64, tag: MsgTag, words: &[u64]) -> Result<Vec<u64>, Error> {
        let mut mrs = [0u64; MR_COUNT];
        mrs[..words.len()].copy_from_slice(words);
        let reply = handle_request(&mut self.objects, label, tag, &mut mrs);
        match reply.to_result() {
            Ok(_) => Ok(mrs[..reply.mr_len()].to_vec()),
            Err(e) => {
                assert_eq!(reply.mr_len(), 0, "an error reply carries nothing");
                assert_eq!(reply.flags(), 0);
                Err(e)
            }
        }
    }
}

fn ds_tag(words: u32, items: u32) -> MsgTag {
    MsgTag::new(Dataspace::ID, words, items, 0)
}

#[test]
fn hostile_requests() {
    let mut t = Target::new();
    let clear = Dataspace::clear;
    // Well formed, for reference.
    assert_eq!(t.send(4, ds_tag(3, 0), &[clear, 0, 8]), Ok(vec![]));
    // Wrong label (protocol), and the right protocol on the wrong object.
    let ns = MsgTag::new(Namespace::ID, 3, 0, 0);
    assert_eq!(t.send(4, ns, &[clear, 0, 8]), Err(Error::BadProto));
    assert_eq!(
        t.send(8, ds_tag(3, 0), &[clear, 0, 8]),
        Err(Error::BadProto)
    );
    // Unknown object.
    assert_eq!(t.send(308, ds_tag(3, 0), &[clear, 0, 8]), Err(Error::NoEnt));
    // Unknown opcode; no opcode at all.
    assert_eq!(t.send(4, ds_tag(1, 0), &[99]), Err(Error::NoSys));
    assert_eq!(
        t.send(4, ds_tag(1, 0), &[clear | 1 << 16]),
        Err(Error::NoSys)
    );
    assert_eq!(t.send(4, ds_tag(0, 0), &[]), Err(Error::MsgTooShort));
    // Too few and too many words.
    assert_eq!(
        t.send(4, ds_tag(2, 0), &[clear, 0]),
        Err(Error::MsgTooShort)
    );
    assert_eq!(
        t.send(4, ds_tag(4, 0), &[clear, 0, 8, 0]),
        Err(Error::MsgTooLong)
    );
    assert_eq!(
        t.send(4, ds_tag(1, 0), &[Dataspace::info]),
        Ok(vec![0x1000, ds_flags::RW])
    );
    assert_eq!(
        t.send(4, ds_tag(2, 0), &[Dataspace::info, 0]),
        Err(Error::MsgTooLong)
    );
    // A tag describing more registers than a UTCB has.
    assert_eq!(
        t.send(4, ds_tag(63, 3), &[clear, 0, 8]),
        Err(Error::MsgTooLong)
    );
    // copy_in: missing capability item, item of the wrong type, void item,
    // surplus item.
    let copy = Dataspace::copy_in;
    let cap = CapArg::new(SERVER_SLOT, CapRights::R).item().to_words();
    let mem = MemArg::map(Fpage::mem(0x1000, 12, MemRights::R), 0)
        .item()
        .to_words();
    let w = [copy, 1, 2, 3];
    assert_eq!(t.send(4, ds_tag(4, 0), &w), Err(Error::MsgMissArg));
    assert_eq!(
        t.send(4, ds_tag(4, 1), &[&w[..], &mem[..]].concat()),
        Err(Error::Inval)
    );
    assert_eq!(
        t.send(4, ds_tag(4, 1), &[&w[..], &[0, 0][..]].concat()),
        Err(Error::Inval)
    );
    let two = [&w[..], &cap, &cap].concat();
    assert_eq!(t.send(4, ds_tag(4, 2), &two), Err(Error::MsgTooLong));
    assert_eq!(
        t.send(4, ds_tag(4, 1), &[&w[..], &cap[..]].concat()),
        Ok(vec![])
    );
    // An item where none is expected.
    assert_eq!(
        t.send(4, ds_tag(3, 1), &[clear, 0, 8, cap[0], cap[1]]),
        Err(Error::MsgTooLong)
    );
    // Only the two well-formed operations reached the server.
    assert_eq!(t.ds.borrow().calls, 1);
    assert_eq!(t.ds.borrow().copied.len(), 1);
}

#[test]
fn hostile_strings() {
    let mut t = Target::new();
    let ns = |w: u32| MsgTag::new(Namespace::ID, w, 0, 0);
    let q = Namespace::query;
    let word = |s: &[u8; 8]| u64::from_le_bytes(*s);
    // Length larger than the bound.
    let mut w = vec![q, NAME_MAX as u64 + 1];
    w.extend(std::iter::repeat_n(word(b"xxxxxxxx"), 33));
    assert_eq!(t.send(8, ns(w.len() as u32), &w), Err(Error::TooBig));
    assert_eq!(t.send(8, ns(2), &[q, u64::MAX]), Err(Error::TooBig));
    // Length larger than the message.
    assert_eq!(
        t.send(8, ns(3), &[q, 20, word(b"rom\0\0\0\0\0")]),
        Err(Error::MsgTooShort)
    );
    assert_eq!(t.send(8, ns(2), &[q, 1]), Err(Error::MsgTooShort));
    // Not UTF-8.
    assert_eq!(t.send(8, ns(3), &[q, 2, 0xfffe]), Err(Error::Inval));
    // Fine.
    assert_eq!(
        t.send(8, ns(3), &[q, 3, word(b"rom\0\0\0\0\0")]),
        Err(Error::NoEnt)
    );
    // Surplus word after the string.
    assert_eq!(
        t.send(8, ns(4), &[q, 3, word(b"rom\0\0\0\0\0"), 0]),
        Err(Error::MsgTooLong)
    );
}

#[test]
fn hostile_values() {
    let mut t = Target::new();
    let echo = |w: u32| MsgTag::new(Echo::ID, w, 0, 0);
    let misc = |a: u64, d: u64, f: u64| vec![Echo::misc, a, 0, 1, 2, 3, d, 5, 0, f, 0];
    let ok = misc(1, 1, 3);
    assert!(t.send(36, echo(ok.len() as u32), &ok).is_ok());
    // bool 2, Option tag 2, enum value 2.
    for bad in [misc(2, 1, 3), misc(1, 2, 3), misc(1, 1, 2), misc(1, 1, 0)] {
        assert_eq!(t.send(36, echo(bad.len() as u32), &bad), Err(Error::Inval));
    }
    // Out of range for the integer types.
    let scal = |i: usize, v: u64| {
        let mut w = vec![Echo::scalars, 0, 0, 0, 0, 0, 0, 0, 0];
        w[i] = v;
        w
    };
    for (i, v) in [
        (1, 0x100),
        (2, 0x1_0000),
        (3, 1 << 32),
        (5, 0x80),
        (5, (-129i64) as u64),
        (6, 0x8000),
        (7, 1 << 31),
        (7, (i32::MIN as i64 - 1) as u64),
    ] {
        assert_eq!(
            t.send(36, echo(9), &scal(i, v)),
            Err(Error::Inval),
            "{i} {v:#x}"
        );
    }
    assert!(t.send(36, echo(9), &scal(4, u64::MAX)).is_ok());
    assert!(t.send(36, echo(9), &scal(8, u64::MAX)).is_ok());
    // Factory: a string where an integer belongs, unknown argument type,
    // string too long for a log tag, unknown protocol.
    let fac = |w: u32| MsgTag::new(Factory::ID, w, 0, 0);
    let ds = Factory::create_dataspace;
    let s = [
        ds,
        header(varg::STRING, 2),
        u64::from_le_bytes(*b"1\0\0\0\0\0\0\0"),
    ];
    assert_eq!(t.send(20, fac(3), &s), Err(Error::Inval));
    assert_eq!(
        t.send(20, fac(3), &[ds, header(0x55, 8), 1]),
        Err(Error::Inval)
    );
    assert_eq!(
        t.send(20, fac(2), &[ds, header(varg::UMWORD, 8)]),
        Err(Error::MsgTooShort)
    );
    assert_eq!(t.send(20, fac(1), &[ds]), Err(Error::MsgTooShort));
    assert!(
        t.send(20, fac(3), &[ds, header(varg::UMWORD, 8), 1])
            .is_ok()
    );
    let extra = [
        ds,
        header(varg::UMWORD, 8),
        1,
        0,
        0,
        0,
        0,
        header(varg::NIL, 0),
    ];
    assert_eq!(t.send(20, fac(8), &extra), Err(Error::MsgTooLong));
    let log = Factory::create_log;
    let mut w = vec![log, header(varg::STRING, LOG_TAG_MAX + 2)];
    w.extend(std::iter::repeat_n(0x4141_4141_4141_4141, 9));
    assert_eq!(t.send(20, fac(w.len() as u32), &w), Err(Error::TooBig));
    let bad_opts = [log, header(varg::STRING, 1), 0, header(0x66, 0)];
    assert_eq!(t.send(20, fac(4), &bad_opts), Err(Error::Inval));
    assert_eq!(t.send(20, fac(1), &[(-16i64) as u64]), Err(Error::NoSys));
}

// ----------------------------------------------------------------------
// Hostile and error replies
// ----------------------------------------------------------------------

#[test]
fn error_replies_decode_to_the_error() {
    for &e in Error::ALL {
        let mut t = Capture::new(MsgTag::reply(Err(e)), &[]);
        let mut ds = DataspaceClient::with_transport(4, &mut t);
        assert_eq!(ds.info(), Err(e));
    }
    // An unknown negative code.
    let mut t = Capture::new(MsgTag::new(-4242, 0, 0, 0), &[]);
    assert_eq!(
        DataspaceClient::with_transport(4, &mut t).info(),
        Err(Error::Inval)
    );
    // Through the loopback: the server's error comes back as is.
    let st = Rc::new(RefCell::new(DsState::default()));
    let mut lb = serve::<Dataspace, _>(4, Ds(st));
    let mut ds = DataspaceClient::with_transport(4, &mut lb);
    assert_eq!(ds.map(0, 0, 0), Err(Error::Range));
    // A client talking to a gate nobody serves.
    let mut none = DataspaceClient::with_transport(32, &mut lb);
    assert_eq!(none.info(), Err(Error::NoEnt));
}

#[test]
fn hostile_replies() {
    let info = |reply: MsgTag, words: &[u64]| {
        let mut t = Capture::new(reply, words);
        DataspaceClient::with_transport(4, &mut t).info()
    };
    assert_eq!(info(MsgTag::new(0, 2, 0, 0), &[1, 2]), Ok((1, 2)));
    assert_eq!(
        info(MsgTag::new(5, 2, 0, 0), &[1, 2]),
        Ok((1, 2)),
        "label >= 0"
    );
    assert_eq!(info(MsgTag::new(0, 1, 0, 0), &[1]), Err(Error::MsgTooShort));
    assert_eq!(
        info(MsgTag::new(0, 3, 0, 0), &[1, 2, 3]),
        Err(Error::MsgTooLong)
    );
    assert_eq!(
        info(MsgTag::new(0, 2, 1, 0), &[1, 2, 0, 0]),
        Err(Error::MsgTooLong)
    );
    assert_eq!(info(MsgTag::new(0, 40, 20, 0), &[]), Err(Error::MsgTooLong));
    let mut t = Capture::new(MsgTag::new(0, 1, 0, 0), &[0]);
    let mut ns = NamespaceClient::with_transport(8, &mut t);
    ns.rcv = RecvBufs::cap_slot(CLIENT_SLOT);
    assert_eq!(ns.query("rom"), Err(Error::MsgMissArg));
    let mem = MemArg::map(Fpage::mem(0, 12, MemRights::R), 0)
        .item()
        .to_words();
    let mut t = Capture::new(MsgTag::new(0, 1, 1, 0), &[0, mem[0], mem[1]]);
    let mut ns = NamespaceClient::with_transport(8, &mut t);
    assert_eq!(ns.query("rom"), Err(Error::Inval));
    let cap = CapArg::new(4, CapRights::R).item().to_words();
    let mut t = Capture::new(MsgTag::new(0, 0, 1, 0), &cap);
    let mut ds = DataspaceClient::with_transport(4, &mut t);
    assert_eq!(
        ds.map(0, 0, 0),
        Err(Error::Inval),
        "a capability is no mapping"
    );
    let mut t = Capture::new(MsgTag::new(0, 1, 0, 0), &[600]);
    let mut log = LogClient::with_transport(4, &mut t);
    assert_eq!(log.read(10), Err(Error::TooBig));
    let mut t = Capture::new(MsgTag::new(0, 1, 0, 0), &[1 << 32]);
    let mut log = LogClient::with_transport(4, &mut t);
    assert_eq!(log.read(10), Err(Error::Inval), "unknown read flag");
}

// ----------------------------------------------------------------------
// Nothing panics
// ----------------------------------------------------------------------

struct Rng(l4_xorshift::XorShift);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0.next_u64()
    }

    /// Mostly small values, sometimes anything.
    fn value(&mut self) -> u64 {
        match self.next() % 8 {
            0 => self.next(),
            1 => header(self.next() % 4, 8 * (self.next() % 3) as usize),
            2 => header(varg::STRING, (self.next() % 300) as usize),
            3 => {
                CapArg::new(self.next() % 64, CapRights(self.next() as u8))
                    .item()
                    .control
            }
            4 => Fpage(self.next()).0 & !0xf | 0x30,
            _ => self.next() % 8,
        }
    }
}

#[test]
fn random_requests_and_replies_never_panic() {
    let mut rng = Rng(l4_xorshift::XorShift::new(0x9e37_79b9_7f4a_7c15));
    let mut t = Target::new();
    let protos = [
        Dataspace::ID,
        Namespace::ID,
        Factory::ID,
        Echo::ID,
        Log::ID,
        0,
    ];
    let labels = [1, 2, 5, 9, 3];
    for _ in 0..50_000 {
        let label = protos[(rng.next() % protos.len() as u64) as usize];
        let tag = MsgTag::new(label, (rng.next() % 64) as u32, (rng.next() % 8) as u32, 0);
        let mut mrs = [0u64; MR_COUNT];
        mrs[0] = rng.next() % 6;
        if label == Factory::ID {
            mrs[0] = [
                0x4000,
                0x4001,
                -13i64 as u64,
                -14i64 as u64,
                0,
                -15i64 as u64,
            ][(rng.next() % 6) as usize];
        }
        for m in mrs.iter_mut().skip(1) {
            *m = rng.value();
        }
        let obj = labels[(rng.next() % labels.len() as u64) as usize];
        let reply = handle_request(&mut t.objects, obj, tag, &mut mrs);
        assert!(reply.mr_len() <= MR_COUNT);

        // The same registers as a reply to every kind of client.
        let words: Vec<u64> = mrs.to_vec();
        let rtag = MsgTag::new(0, (rng.next() % 64) as u32, (rng.next() % 4) as u32, 0);
        let mut c = Capture::new(rtag, &words);
        let _ = NamespaceClient::with_transport(4, &mut c).query("x");
        let _ = DataspaceClient::with_transport(4, &mut c).map(0, 0, 0);
        let _ = LogClient::with_transport(4, &mut c).read(1);
        let _ = FactoryClient::with_transport(4, &mut c).create_log("t", None, &VarArgs::new());
        let _ = EchoClient::with_transport(4, &mut c).strings(b"", "", b"");
        if let Ok(mut r) = Reader::new(rtag, &words) {
            let _ = VarArgs::decode(&mut r);
        }
    }
}

#[test]
fn writer_refuses_what_does_not_fit() {
    let mut mrs = [0; MR_COUNT];
    let mut w = Writer::new(&mut mrs);
    let mut big = VarArgs::new();
    while big.push_uint(1).is_ok() {}
    assert_eq!(big.words().len(), 62);
    assert_eq!(w.words(&[0, 0]), Ok(()));
    assert_eq!(big.encode(&mut w), Err(Error::MsgTooLong));
    // A client call whose arguments do not fit is refused before sending.
    let mut t = Capture::new(MsgTag::new(0, 0, 0, 0), &[]);
    let mut f = FactoryClient::with_transport(4, &mut t);
    let mut a = VarArgs::new();
    a.push_str(&"x".repeat(300)).unwrap();
    a.push_str(&"x".repeat(160)).unwrap();
    assert_eq!(f.create_log("x", None, &a), Err(Error::MsgTooLong));
    assert!(t.requests.is_empty());
    let _ = VStr::<4>::default();
}

// ----------------------------------------------------------------------
// The server loop
// ----------------------------------------------------------------------

/// Feeds recorded requests (cap = label) to a server; records replies.
struct Queue {
    requests: std::collections::VecDeque<(u64, MsgTag, Vec<u64>)>,
    replies: Vec<(MsgTag, Vec<u64>)>,
}

impl Queue {
    fn next(&mut self, mrs: &mut [u64; MR_COUNT]) -> Result<(MsgTag, u64), Error> {
        let (label, tag, words) = self.requests.pop_front().ok_or(Error::RecvTimeout)?;
        mrs[..words.len()].copy_from_slice(&words);
        Ok((tag, label))
    }
}

impl l4_ipc::ServerTransport for Queue {
    fn wait(&mut self, mrs: &mut [u64; MR_COUNT]) -> Result<(MsgTag, u64), Error> {
        self.next(mrs)
    }

    fn reply_and_wait(
        &mut self,
        reply: MsgTag,
        mrs: &mut [u64; MR_COUNT],
    ) -> Result<(MsgTag, u64), Error> {
        self.replies.push((reply, mrs[..reply.mr_len()].to_vec()));
        self.next(mrs)
    }
}

#[test]
fn server_loop_dispatches_by_label() {
    // Record what clients send (each call gets an empty reply).
    let mut rec = Capture::new(MsgTag::new(0, 0, 0, 0), &[]);
    let _ = DataspaceClient::with_transport(4, &mut rec).info();
    let _ = NamespaceClient::with_transport(8, &mut rec).unlink("x");
    let _ = DataspaceClient::with_transport(8, &mut rec).info();
    let _ = DataspaceClient::with_transport(12, &mut rec).info();
    let _ = DataspaceClient::with_transport(4, &mut rec).clear(0, 1);
    let requests = rec
        .requests
        .into_iter()
        .map(|(cap, tag, words, _)| (cap, tag, words))
        .collect();
    let t = Target::new();
    let queue = Queue {
        requests,
        replies: Vec::new(),
    };
    let mut server = l4_ipc::Server::new(t.objects, queue);
    let mut handled = Vec::new();
    while let Ok((label, _)) = server.step() {
        handled.push(label);
    }
    assert_eq!(handled, [4, 8, 8, 12, 4]);
    let replies: Vec<_> = server
        .transport
        .replies
        .iter()
        .map(|(t, w)| (t.to_result(), w.clone()))
        .collect();
    assert_eq!(
        replies,
        [
            (Ok(0), vec![0x1000, ds_flags::RW]),
            (Err(Error::NoEnt), vec![]),
            (Err(Error::BadProto), vec![]),
            (Err(Error::NoEnt), vec![]),
            (Ok(0), vec![]),
        ]
    );
    assert_eq!(t.ds.borrow().cleared, [(0, 1)]);
}

// ----------------------------------------------------------------------
// Argument names do not clash with the generated code
// ----------------------------------------------------------------------

protocol! {
    /// Odd argument names.
    pub protocol Names = 0x7e01;
    client NamesClient;
    server NamesServer;

    /// Arguments named like the generated code's locals.
    fn f(ctx: u64, mrs: u64, tag: u64, w: u64, r: u64, op: u64, server: u64, transport: u64)
        -> u64 = 0;
}

struct Sum;

impl NamesServer for Sum {
    fn f(
        &mut self,
        _: &Ctx,
        ctx: u64,
        mrs: u64,
        tag: u64,
        w: u64,
        r: u64,
        op: u64,
        server: u64,
        transport: u64,
    ) -> Result<u64, Error> {
        Ok(ctx + 2 * mrs + 3 * tag + 4 * w + 5 * r + 6 * op + 7 * server + 8 * transport)
    }
}

#[test]
fn argument_names_are_hygienic() {
    let mut c = NamesClient::with_transport(4, serve::<Names, _>(4, Sum));
    assert_eq!(c.f(1, 1, 1, 1, 1, 1, 1, 1), Ok(36));
    assert_eq!(c.f(1, 0, 0, 0, 0, 0, 0, 2), Ok(17));
}
