//! cons's IPC side: the Factory protocol on the `cons` capability, the Log
//! (Vcon) protocol and a one-line Icu on every client's log, and the
//! terminal's input interrupt, over a [`Backend`] that does what needs the
//! kernel. The server binary implements the backend with system calls;
//! the tests with a fake, through [`l4_ipc::Loopback`].
//!
//! # Labels
//!
//! The `cons` gate is bound with [`labels::FACTORY`], the terminal's input
//! Irq with [`labels::INPUT`], and client `n`'s log gate with
//! [`client_label`]`(n)`. Labels keep their low two bits clear (Fiasco
//! puts the caller's rights there).
//!
//! # Reading, and why it never blocks
//!
//! A client calls its log through an IPC gate, and a server can only
//! answer such a call with the implicit reply of its next receive:
//! deferring the answer would need the caller's thread capability, which
//! a gate does not reveal. So `read` is Fiasco's Vcon read: it returns what
//! is queued (possibly nothing) at once, with
//! [`l4_abi::proto::vcon::READ_STAT_DONE`] when the queue is empty
//! afterwards. A client that wants to wait binds an Irq to line 0 of its
//! log, which is also an Icu, exactly as with the kernel's console:
//!
//! 1. `Icu::bind(0, irq)` (label [`Proto::Irq`], [`IcuOp::Bind`], the Irq
//!    as an item); cons keeps the Irq;
//! 2. read until `READ_STAT_DONE`;
//! 3. `Icu::unmask(0)`, then wait for the Irq; read again.
//!
//! cons triggers the Irq whenever input is queued for the client and the
//! line is not masked, and again at unmask if input is waiting, so no input
//! is missed whichever way a client unmasks ([`IcuOp::Unmask`] here, or
//! the Irq's own unmask).

use std::collections::BTreeMap;

use l4::ServerCaps;
use l4_abi::proto::{IcuOp, vcon};
use l4_abi::utcb::MR_COUNT;
use l4_abi::{CapRights, Error, MsgTag, Proto};
use l4_ipc::protocols::{
    Factory, FactoryServer, LOG_READ_MAX, LOG_TAG_MAX, LOG_WRITE_MAX, Log, LogRead, LogServer,
};
use l4_ipc::server::error_reply;
use l4_ipc::varg::{VAny, VOpt, VStr, VUint, VarArgs, str_bytes};
use l4_ipc::{Bytes, CapArg, Ctx, Handler, OptCap, RcvCap, Registry};

use crate::console::{ClientId, Console, Event};
use crate::spec::{ClientSpec, CreateArg};

/// The labels of cons's gates and interrupts.
pub mod labels {
    /// The `cons` gate (the Factory).
    pub const FACTORY: u64 = 0x10;
    /// The terminal's input Irq.
    pub const INPUT: u64 = 0x20;
    /// The clients' log gates (the low two bits are the rights).
    pub const CLIENTS: l4_ipc::LabelRange = l4_ipc::LabelRange::new(0x1000, 2);
}

/// The label of client `id`'s log gate.
pub const fn client_label(id: ClientId) -> u64 {
    labels::CLIENTS.label(id as u64)
}

/// The client a label belongs to (the low two bits are ignored).
pub fn label_client(label: u64) -> Option<ClientId> {
    labels::CLIENTS
        .object(label)
        .and_then(|(n, _)| ClientId::try_from(n).ok())
}

/// How often gone clients are looked for, in ms.
pub const GC_PERIOD_MS: u64 = 1000;
/// The most terminal reads per input interrupt.
pub const MAX_INPUT_READS: usize = 64;

/// What cons needs from the kernel: its capabilities (the clients' log
/// gates, the Irqs clients bind) and clock, and the terminal.
pub trait Backend {
    /// cons's capabilities.
    type Caps: ServerCaps;
    /// cons's capabilities.
    fn caps(&mut self) -> &mut Self::Caps;
    /// Writes to the terminal.
    fn write_output(&mut self, bytes: &[u8]);
    /// Reads typed bytes without waiting: the count and the Vcon read
    /// flags.
    fn read_input(&mut self, buf: &mut [u8]) -> Result<(usize, u64), Error>;
    /// Unmasks the terminal's input interrupt.
    fn unmask_input(&mut self);
}

/// A client's capabilities.
#[derive(Clone, Copy, Debug)]
struct Caps {
    gate: u64,
    irq: Option<u64>,
    had_users: bool,
}

/// The server: the console and its capabilities.
#[derive(Debug)]
pub struct Service<B> {
    /// The console.
    pub console: Console,
    /// The kernel side.
    pub backend: B,
    caps: BTreeMap<ClientId, Caps>,
    last_gc: u64,
}

impl<B: Backend> Service<B> {
    /// A server for `console`.
    pub fn new(console: Console, backend: B) -> Service<B> {
        Service {
            console,
            backend,
            caps: BTreeMap::new(),
            last_gc: 0,
        }
    }

    /// Writes the banner and the prompt.
    pub fn start(&mut self) {
        self.sync_time();
        self.console.start();
        self.flush();
    }

    fn sync_time(&mut self) -> u64 {
        let now = self.backend.caps().now_ms();
        self.console.set_time(now);
        now
    }

    /// Writes a message of cons (on lines of its own).
    pub fn message(&mut self, text: &str) {
        self.sync_time();
        self.console.message(text);
        self.flush();
    }

    /// The log gate of a client.
    pub fn gate(&self, id: ClientId) -> Option<u64> {
        self.caps.get(&id).map(|c| c.gate)
    }

    /// Handles a message received with `label`: returns the reply, or
    /// `None` for a message that wants none (an interrupt).
    pub fn serve(&mut self, label: u64, tag: MsgTag, mrs: &mut [u64; MR_COUNT]) -> Option<MsgTag> {
        self.sync_time();
        let ctx = Ctx::new(label, tag, mrs);
        // The kernel's rights bits are not part of the object's label.
        let label = ctx.label();
        let reply = match label {
            labels::FACTORY => Some(Factory::dispatch(&mut FactoryObj(self), &ctx, tag, mrs)),
            labels::INPUT => {
                self.read_terminal(true);
                None
            }
            _ => match label_client(label).filter(|id| self.caps.contains_key(id)) {
                Some(id) if tag.label() == Log::ID => {
                    Some(Log::dispatch(&mut LogObj { svc: self, id }, &ctx, tag, mrs))
                }
                Some(id) if tag.label() == Proto::Irq as i64 => Some(self.icu(id, &ctx, tag, mrs)),
                Some(_) => Some(error_reply(Error::BadProto)),
                None => Some(error_reply(Error::NoEnt)),
            },
        };
        self.flush();
        reply
    }

    /// The receive timeout expired: partial lines, gone clients.
    pub fn timeout(&mut self) {
        let now = self.sync_time();
        self.console.tick();
        if now >= self.last_gc + GC_PERIOD_MS {
            self.last_gc = now;
            self.collect();
        }
        self.flush();
    }

    /// Reads the terminal without an interrupt (when the terminal has
    /// none).
    pub fn poll_input(&mut self) {
        self.sync_time();
        self.read_terminal(false);
        self.flush();
    }

    /// How long to wait for the next message before [`Service::timeout`]
    /// is due, in ms; `None`: no timeout.
    pub fn next_timeout_ms(&mut self) -> Option<u64> {
        let now = self.sync_time();
        let lines = self.console.next_deadline();
        let gc = (!self.caps.is_empty()).then_some(self.last_gc + GC_PERIOD_MS);
        let due = match (lines, gc) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        due.map(|d| d.saturating_sub(now))
    }

    fn read_terminal(&mut self, unmask: bool) {
        let mut buf = [0u8; LOG_READ_MAX];
        for _ in 0..MAX_INPUT_READS {
            match self.backend.read_input(&mut buf) {
                Ok((n, flags)) => {
                    let n = n.min(buf.len());
                    self.console.input(&buf[..n]);
                    if n == 0 || flags & vcon::READ_STAT_DONE != 0 {
                        break;
                    }
                }
                Err(_) => break,
            }
        }
        if unmask {
            self.backend.unmask_input();
        }
    }

    /// Looks for clients whose log has no users any more. A client counts
    /// only once it has been seen in use, so a kernel that cannot tell
    /// never loses clients.
    fn collect(&mut self) {
        let mut gone = Vec::new();
        for (&id, c) in self.caps.iter_mut() {
            match self.backend.caps().has_users(c.gate) {
                Ok(true) => c.had_users = true,
                Ok(false) if c.had_users => gone.push(id),
                _ => {}
            }
        }
        for id in gone {
            let _ = self.console.gone(id);
        }
    }

    /// Writes the console's output and carries out its events.
    fn flush(&mut self) {
        let out = self.console.take_output();
        if !out.is_empty() {
            self.backend.write_output(&out);
        }
        for ev in self.console.take_events() {
            match ev {
                Event::Trigger(id) => {
                    if let Some(irq) = self.caps.get(&id).and_then(|c| c.irq) {
                        self.backend.caps().trigger(irq);
                    }
                }
                Event::Release(id) => {
                    if let Some(c) = self.caps.remove(&id) {
                        self.backend.caps().delete(c.gate);
                        if let Some(irq) = c.irq {
                            self.backend.caps().release(irq);
                        }
                    }
                }
            }
        }
    }

    /// Creates a client's log.
    fn create_log(&mut self, spec: &ClientSpec) -> Result<u64, Error> {
        if self.console.is_full() {
            return Err(Error::NoMem);
        }
        let id = self.console.next_id();
        let gate = self.backend.caps().create_gate(client_label(id))?;
        match self.console.create(spec) {
            Ok(got) if got == id => {
                self.caps.insert(
                    id,
                    Caps {
                        gate,
                        irq: None,
                        had_users: false,
                    },
                );
                Ok(gate)
            }
            Ok(got) => {
                // Cannot happen (ids are handed out in order); keep the
                // client reachable through nothing rather than a wrong gate.
                let _ = self.console.gone(got);
                self.backend.caps().delete(gate);
                Err(Error::Inval)
            }
            Err(_) => {
                self.backend.caps().delete(gate);
                Err(Error::NoMem)
            }
        }
    }

    /// The Icu operations on a client's log: one line, 0.
    fn icu(&mut self, id: ClientId, ctx: &Ctx, tag: MsgTag, mrs: &mut [u64; MR_COUNT]) -> MsgTag {
        match self.icu_op(id, ctx, tag, mrs) {
            Ok(words) => MsgTag::new(0, words, 0, 0),
            Err(e) => error_reply(e),
        }
    }

    fn icu_op(
        &mut self,
        id: ClientId,
        ctx: &Ctx,
        tag: MsgTag,
        mrs: &mut [u64; MR_COUNT],
    ) -> Result<u32, Error> {
        if tag.words() == 0 {
            return Err(Error::MsgTooShort);
        }
        let (op, _) = IcuOp::decode(mrs[0]).map_err(|_| Error::NoSys)?;
        let line_zero = || {
            if tag.words() >= 2 && mrs[1] == 0 {
                Ok(())
            } else {
                Err(Error::Inval)
            }
        };
        match op {
            IcuOp::Info => {
                mrs[..3].copy_from_slice(&[0, 1, 0]);
                Ok(3)
            }
            IcuOp::Bind => {
                line_zero()?;
                let item = ctx.items().first().ok_or(Error::MsgMissArg)?;
                let slot = CapArg::from_item(*item)?.index;
                let irq = self.backend.caps().adopt_received(slot)?;
                let c = self.caps.get_mut(&id).ok_or(Error::NoEnt)?;
                if let Some(old) = c.irq.replace(irq) {
                    self.backend.caps().release(old);
                }
                self.console.irq_bind(id).map_err(|_| Error::NoEnt)?;
                Ok(0)
            }
            IcuOp::Unbind => {
                line_zero()?;
                let c = self.caps.get_mut(&id).ok_or(Error::NoEnt)?;
                if let Some(old) = c.irq.take() {
                    self.backend.caps().release(old);
                }
                self.console.irq_unbind(id).map_err(|_| Error::NoEnt)?;
                Ok(0)
            }
            IcuOp::Mask | IcuOp::Unmask => {
                line_zero()?;
                self.console
                    .irq_mask(id, op == IcuOp::Mask)
                    .map_err(|_| Error::NoEnt)?;
                Ok(0)
            }
            IcuOp::SetMode => {
                line_zero()?;
                Ok(0)
            }
            IcuOp::MsiInfo => Err(Error::NoSys),
        }
    }
}

impl<B: Backend> Handler for Service<B> {
    fn handle(&mut self, ctx: &Ctx, tag: MsgTag, mrs: &mut [u64; MR_COUNT]) -> MsgTag {
        self.serve(ctx.label(), tag, mrs)
            .unwrap_or(MsgTag::new(0, 0, 0, 0))
    }
}

/// Every label reaches the service (it answers unknown ones itself).
impl<B: Backend> Registry for Service<B> {
    fn handler(&mut self, _label: u64) -> Option<&mut dyn Handler> {
        Some(self)
    }
}

/// The Factory protocol on the `cons` gate.
struct FactoryObj<'a, B>(&'a mut Service<B>);

/// Reads the options of a create request (strings and integers).
fn create_args(opts: &VarArgs) -> Result<Vec<Opt>, Error> {
    let mut out = Vec::new();
    let mut buf = [0u8; LOG_WRITE_MAX];
    for a in opts.iter() {
        let a = a.map_err(|()| Error::Inval)?;
        out.push(match a {
            l4_abi::proto::varg::Varg::Nil => continue,
            l4_abi::proto::varg::Varg::Umword(v) => Opt::Int(v as i64),
            l4_abi::proto::varg::Varg::Mword(v) => Opt::Int(v),
            l4_abi::proto::varg::Varg::Fpage(_) => Opt::Other,
            s @ l4_abi::proto::varg::Varg::Str(..) => {
                let b = str_bytes(&s, &mut buf).ok_or(Error::TooBig)?;
                Opt::Str(String::from_utf8(b.to_vec()).map_err(|_| Error::Inval)?)
            }
        });
    }
    Ok(out)
}

/// An owned create option.
enum Opt {
    Str(String),
    Int(i64),
    Other,
}

impl Opt {
    fn arg(&self) -> CreateArg<'_> {
        match self {
            Opt::Str(s) => CreateArg::Str(s),
            Opt::Int(i) => CreateArg::Int(*i),
            Opt::Other => CreateArg::Other,
        }
    }
}

impl<B: Backend> FactoryServer for FactoryObj<'_, B> {
    fn create_dataspace(
        &mut self,
        _: &Ctx,
        _: VUint,
        _: VOpt<VUint>,
        _: VOpt<VUint>,
    ) -> Result<RcvCap, Error> {
        Err(Error::NoSys)
    }

    fn create_namespace(&mut self, _: &Ctx) -> Result<RcvCap, Error> {
        Err(Error::NoSys)
    }

    fn create_log(
        &mut self,
        _: &Ctx,
        tag: VStr<LOG_TAG_MAX>,
        colour: VOpt<VAny<16>>,
        opts: VarArgs,
    ) -> Result<RcvCap, Error> {
        let colour = colour.0.map(|c| match c {
            VAny::Str(s) => Opt::Str(s.as_str().to_string()),
            VAny::Uint(v) => Opt::Int(v as i64),
            VAny::Int(v) => Opt::Int(v),
            VAny::Fpage(_) => Opt::Other,
        });
        let opts = create_args(&opts)?;
        let args: Vec<CreateArg<'_>> = opts.iter().map(Opt::arg).collect();
        let spec = match ClientSpec::parse(tag.as_str(), colour.as_ref().map(Opt::arg), &args) {
            Ok(s) => s,
            Err(e) => {
                let msg = format!("cons: refusing log '{}': {e}", tag.as_str());
                self.0.console.message(&msg);
                return Err(Error::Inval);
            }
        };
        let gate = self.0.create_log(&spec)?;
        Ok(RcvCap::new(gate, CapRights::RWS))
    }

    fn create_scheduler(
        &mut self,
        _: &Ctx,
        _: VUint,
        _: VUint,
        _: VOpt<VUint>,
    ) -> Result<RcvCap, Error> {
        Err(Error::NoSys)
    }

    fn create_ipc_gate(&mut self, _: &Ctx, _: VOpt<VUint>, _: OptCap) -> Result<RcvCap, Error> {
        Err(Error::NoSys)
    }

    fn create_factory(&mut self, _: &Ctx, _: VUint) -> Result<RcvCap, Error> {
        Err(Error::NoSys)
    }
}

/// The Log protocol on a client's gate.
struct LogObj<'a, B> {
    svc: &'a mut Service<B>,
    id: ClientId,
}

impl<B: Backend> LogServer for LogObj<'_, B> {
    fn write(&mut self, _: &Ctx, data: Bytes<LOG_WRITE_MAX>) -> Result<(), Error> {
        self.svc
            .console
            .write(self.id, data.as_slice())
            .map_err(|_| Error::NoEnt)
    }

    fn read(&mut self, _: &Ctx, max: u64) -> Result<LogRead, Error> {
        let max = usize::try_from(max).unwrap_or(usize::MAX).min(LOG_READ_MAX);
        let (data, flags) = self
            .svc
            .console
            .read(self.id, max)
            .map_err(|_| Error::NoEnt)?;
        Ok(LogRead {
            data: Bytes::new(&data)?,
            flags,
        })
    }

    fn set_attr(&mut self, _: &Ctx, iflags: u64, oflags: u64, lflags: u64) -> Result<(), Error> {
        let a = crate::ldisc::Attrs {
            iflags,
            oflags,
            lflags,
        };
        self.svc
            .console
            .set_attrs(self.id, a)
            .map_err(|_| Error::NoEnt)
    }

    fn get_attr(&mut self, _: &Ctx) -> Result<(u64, u64, u64), Error> {
        let a = self.svc.console.attrs(self.id).map_err(|_| Error::NoEnt)?;
        Ok((a.iflags, a.oflags, a.lflags))
    }
}
