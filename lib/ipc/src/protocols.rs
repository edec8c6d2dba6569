//! The L4Re-compatible user-level protocols the system's components speak.
//!
//! Protocol ids are L4Re's (`l4/re/protocols.h`, `l4/sys/types.h`, ned's
//! `L4.Proto`), opcodes are the positions of the operations in L4Re's
//! interface definitions (`Rpcs<...>`), or Fiasco's for the kernel-defined
//! Log (Vcon) and Factory messages. The argument layout is this crate's
//! codec (one word per scalar), which matches L4Re's for word-sized
//! arguments; byte strings carry a length word as L4Re's `Array` does.
//!
//! | protocol                | id       | operations (opcode)                                              |
//! |-------------------------|----------|------------------------------------------------------------------|
//! | [`Dataspace`]           | `0x4000` | map 0, clear 1, info 2, copy_in 3, allocate 4                    |
//! | [`DataspacePhys`] (moe) | `0x4000` | phys 0x10                                                        |
//! | [`Namespace`]           | `0x4001` | query 0, register 1, unlink 3 (L4Re's compatibility opcode)      |
//! | [`Parent`]              | `0x4002` | signal 0                                                         |
//! | [`Log`] (Vcon)          | `-13`    | write 0, read 1, set_attr 2, get_attr 3                          |
//! | [`Factory`] (Mem_alloc) | `-15`    | create: MR0 = the protocol of the new object (sign-extended)     |

use l4_abi::msgtag::MsgTag;
use l4_abi::proto::vcon;
use l4_abi::{Error, Proto};

use crate::codec::{Arg, Bytes, CapArg, MemArg, OptCap, RcvCap, Reader, Str, Writer};
use crate::transport::{Transport, call};
use crate::varg::{VAny, VOpt, VStr, VUint, VarArgs};

/// Protocol ids of L4Re's user-level protocols (`enum L4re_protocols`).
pub mod ids {
    /// `L4RE_PROTO_DATASPACE`.
    pub const DATASPACE: i64 = 0x4000;
    /// `L4RE_PROTO_NAMESPACE`.
    pub const NAMESPACE: i64 = 0x4001;
    /// `L4RE_PROTO_PARENT`.
    pub const PARENT: i64 = 0x4002;
    /// `L4RE_PROTO_GOOS`.
    pub const GOOS: i64 = 0x4003;
    /// ned's `L4.Proto.Mem_alloc` (L4Re: reserved; memory allocation is the
    /// Factory protocol).
    pub const MEM_ALLOC: i64 = 0x4004;
    /// `L4RE_PROTO_RM`.
    pub const RM: i64 = 0x4005;
    /// `L4RE_PROTO_EVENT`.
    pub const EVENT: i64 = 0x4006;
    /// `L4RE_PROTO_INHIBITOR`.
    pub const INHIBITOR: i64 = 0x4007;
}

/// Longest name a [`Namespace`] operation takes, in bytes.
pub const NAME_MAX: usize = 255;
/// Longest tag of a new Log ([`Factory`] `create_log`), in bytes.
pub const LOG_TAG_MAX: usize = 64;
/// Most bytes one [`Log`] write carries: 63 words minus the opcode and the
/// length (Fiasco's `L4_VCON_WRITE_SIZE`).
pub const LOG_WRITE_MAX: usize = (MsgTag::MAX_WORDS as usize - 2) * 8;
/// Most bytes one [`Log`] read returns: 63 words minus the count word.
pub const LOG_READ_MAX: usize = (MsgTag::MAX_WORDS as usize - 1) * 8;

// ----------------------------------------------------------------------
// Dataspace
// ----------------------------------------------------------------------

/// Dataspace flags (`L4Re::Dataspace::F`): the access rights in the low
/// four bits (memory flexpage rights), caching above.
pub mod ds_flags {
    /// Execute.
    pub const X: u64 = 0x1;
    /// Write.
    pub const W: u64 = 0x2;
    /// Read.
    pub const R: u64 = 0x4;
    /// Read and write.
    pub const RW: u64 = 0x6;
    /// Read and execute.
    pub const RX: u64 = 0x5;
    /// Everything.
    pub const RWX: u64 = 0x7;
    /// The rights bits.
    pub const RIGHTS_MASK: u64 = 0x0f;
    /// Normal (cacheable) memory.
    pub const NORMAL: u64 = 0x00;
    /// Bufferable (write-combining) memory.
    pub const BUFFERABLE: u64 = 0x10;
    /// Uncached memory (device memory).
    pub const UNCACHEABLE: u64 = 0x20;
    /// The caching bits.
    pub const CACHING_MASK: u64 = 0x30;
}

/// Flags of a new dataspace (`L4Re::Mem_alloc::Mem_alloc_flags`, ned's
/// `L4.Mem_alloc_flags`).
pub mod mem_alloc_flags {
    /// Physically contiguous.
    pub const CONTINUOUS: u64 = 1;
    /// Pinned: never paged out or moved.
    pub const PINNED: u64 = 2;
    /// Mapped with super pages where possible.
    pub const SUPER_PAGES: u64 = 4;
}

crate::protocol! {
    /// L4Re's dataspace (`L4Re::Dataspace`): memory that can be mapped.
    pub protocol Dataspace = ids::DATASPACE;
    client DataspaceClient;
    server DataspaceServer;

    /// Maps the page(s) around `offset` with `flags` ([`ds_flags`]) for the
    /// hot spot `spot` (the client address the mapping is meant for). The
    /// reply carries the mapping as a memory item (a [`MemArg`] the server
    /// returns from its own space, with `snd_base` = the hot spot); it
    /// lands in the receive window the client offers in its `rcv` (L4Re's
    /// `Rcv_fpage`, e.g. the region the region manager is filling), and
    /// the client gets where it landed. [`Error::Range`] for an offset
    /// outside the dataspace, [`Error::Perm`] for rights it lacks.
    fn map(offset: u64, spot: u64, flags: u64) -> MemArg = 0;
    /// Zeroes `size` bytes from `offset`.
    fn clear(offset: u64, size: u64) -> () = 1;
    /// The size in bytes and the flags ([`ds_flags`]) (L4Re's `Stats`).
    fn info() -> (u64, u64) = 2;
    /// Copies `size` bytes from `src` at `src_offset` to `dst_offset`.
    fn copy_in(dst_offset: u64, src: CapArg, src_offset: u64, size: u64) -> () = 3;
    /// Makes sure `size` bytes from `offset` are backed by memory.
    fn allocate(offset: u64, size: u64) -> () = 4;
}

crate::protocol! {
    /// moe's addition to the Dataspace protocol (same id, an opcode L4Re's
    /// interface does not use): where a dataspace's memory physically is.
    /// uvmm's identity mode (`-i`) needs it for guest RAM. The answer
    /// covers the whole dataspace only for contiguous ones
    /// (`Continuous`); for others it is the block around `offset`.
    pub protocol DataspacePhys = ids::DATASPACE;
    client DataspacePhysClient;
    server DataspacePhysServer;

    /// The physical address of `offset` and the number of bytes that are
    /// contiguous from there (within the dataspace).
    fn phys(offset: u64) -> (u64, u64) = 0x10;
}

impl<T: Transport> DataspaceClient<T> {
    /// The size in bytes (from [`DataspaceClient::info`]).
    pub fn size(&mut self) -> Result<u64, Error> {
        self.info().map(|i| i.0)
    }

    /// The flags (from [`DataspaceClient::info`]).
    pub fn flags(&mut self) -> Result<u64, Error> {
        self.info().map(|i| i.1)
    }
}

// ----------------------------------------------------------------------
// Namespace
// ----------------------------------------------------------------------

/// Flags of [`Namespace`] `register` (`L4Re::Namespace::Register_flags`):
/// the capability rights clients get, and what to do with an existing
/// entry.
pub mod ns_flags {
    /// Read-only.
    pub const RO: u64 = 0x4;
    /// Read-write.
    pub const RW: u64 = 0x5;
    /// Read-only, strong.
    pub const RS: u64 = 0x6;
    /// Read-write, strong.
    pub const RWS: u64 = 0x7;
    /// Strong (the `S` right).
    pub const STRONG: u64 = 0x2;
    /// The capability-rights bits.
    pub const CAP_FLAGS: u64 = 0xf;
    /// Overwrite an existing entry.
    pub const OVERWRITE: u64 = 0x200;
}

crate::protocol! {
    /// L4Re's name space (`L4Re::Namespace`): names to capabilities, and
    /// through capabilities of other name spaces, hierarchies of them.
    pub protocol Namespace = ids::NAMESPACE;
    client NamespaceClient;
    server NamespaceServer;

    /// Looks `name` up (no leading slash). Returns the number of bytes at
    /// the end of `name` *not* resolved (0: fully resolved; otherwise the
    /// capability is a name space to continue with, on the rest after the
    /// `/`) and the capability, which lands in the client's receive slot
    /// (`rcv`). [`Error::NoEnt`] for an unknown name, [`Error::Again`] for a
    /// name reserved without an object yet.
    fn query(name: Str<NAME_MAX>) -> (u64, CapArg) = 0;
    /// Registers `cap` under `name` with `flags` ([`ns_flags`]); without a
    /// capability the name is only reserved. [`Error::Exist`] if the name
    /// is taken (unless [`ns_flags::OVERWRITE`]).
    fn register(flags: u64, name: Str<NAME_MAX>, cap: OptCap) -> () = 1;
    /// Removes `name`. [`Error::NoEnt`] if there is no such entry.
    fn unlink(name: Str<NAME_MAX>) -> () = 3;
}

// ----------------------------------------------------------------------
// Parent
// ----------------------------------------------------------------------

crate::protocol! {
    /// L4Re's parent interface (`L4Re::Parent`): how a task reports to the
    /// one that started it (ned or moe).
    pub protocol Parent = ids::PARENT;
    client ParentClient;
    server ParentServer;

    /// Signal `sig` with value `val`. Signal 0 is exit: `val` is the exit
    /// code, and the parent ends the task (the call need not return).
    fn signal(sig: u64, val: u64) -> () = 0;
}

/// [`Parent`] signal numbers.
pub mod parent_signal {
    /// The task exits; the value is its exit code.
    pub const EXIT: u64 = 0;
}

// ----------------------------------------------------------------------
// Log
// ----------------------------------------------------------------------

/// The reply of a [`Log`] read (Fiasco's Vcon read): MR0 = byte count |
/// status flags ([`vcon::READ_STAT_BREAK`], [`vcon::READ_STAT_DONE`]), then
/// the bytes packed into words.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LogRead {
    /// The bytes read.
    pub data: Bytes<LOG_READ_MAX>,
    /// Status flags.
    pub flags: u64,
}

impl Arg for LogRead {
    type View<'a> = LogRead;

    fn encode(&self, w: &mut Writer<'_>) -> Result<(), Error> {
        if self.flags & vcon::READ_SIZE_MASK != 0
            || self.flags & !(vcon::READ_STAT_BREAK | vcon::READ_STAT_DONE) != 0
        {
            return Err(Error::Inval);
        }
        w.word(self.data.len() as u64 | self.flags)?;
        w.bytes(self.data.as_slice())
    }

    fn encode_view(v: LogRead, w: &mut Writer<'_>) -> Result<(), Error> {
        v.encode(w)
    }

    fn decode(r: &mut Reader<'_>) -> Result<LogRead, Error> {
        let w0 = r.word()?;
        let flags = w0 & !vcon::READ_SIZE_MASK;
        if flags & !(vcon::READ_STAT_BREAK | vcon::READ_STAT_DONE) != 0 {
            return Err(Error::Inval);
        }
        let len = (w0 & vcon::READ_SIZE_MASK) as usize;
        if len > LOG_READ_MAX {
            return Err(Error::TooBig);
        }
        let mut buf = [0u8; LOG_READ_MAX];
        r.bytes_into(&mut buf[..len])?;
        Ok(LogRead {
            data: Bytes::new(&buf[..len])?,
            flags,
        })
    }
}

crate::protocol! {
    /// The log / console protocol: Fiasco's Vcon message layout, so that the
    /// kernel's console and a user-level log server (cons, moe's log) are
    /// interchangeable for clients.
    pub protocol Log = Proto::Log as i64;
    client LogClient;
    server LogServer;

    /// Writes bytes (MR1 = count, MR2.. = the bytes).
    fn write(data: Bytes<LOG_WRITE_MAX>) -> () = 0;
    /// Reads up to `max` bytes of input, without blocking.
    fn read(max: u64) -> LogRead = 1;
    /// Sets the input, output and local attribute flags.
    fn set_attr(iflags: u64, oflags: u64, lflags: u64) -> () = 2;
    /// The input, output and local attribute flags.
    fn get_attr() -> (u64, u64, u64) = 3;
}

impl<T: Transport> LogClient<T> {
    /// Writes all of `s`, in as many messages as needed.
    pub fn write_all(&mut self, s: &[u8]) -> Result<(), Error> {
        s.chunks(LOG_WRITE_MAX).try_for_each(|c| self.write(c))
    }
}

// ----------------------------------------------------------------------
// Factory
// ----------------------------------------------------------------------

crate::protocol! {
    /// The factory protocol (Fiasco's and L4Re's `L4::Factory`; L4Re's
    /// `Mem_alloc` and moe's `user_factory` speak it too): MR0 is the
    /// protocol of the object to create, sign-extended, then its arguments
    /// as typed values ([`crate::varg`]). The new capability lands in the
    /// client's first receive slot (`rcv`, which must be a
    /// single-capability slot): a user-level server returns it as an item
    /// ([`RcvCap`]); kernel factories put it there directly.
    ///
    /// [`FactoryClient::create`] sends any protocol with any arguments (as
    /// ned's `factory:create(proto, ...)` does).
    pub protocol Factory = Proto::Factory as i64;
    client FactoryClient;
    server FactoryServer;

    /// A dataspace of `size` bytes with `flags` ([`mem_alloc_flags`]) and
    /// alignment `align` (log2 of bytes).
    fn create_dataspace(size: VUint, flags: VOpt<VUint>, align: VOpt<VUint>) -> RcvCap
        = ids::DATASPACE as u64;
    /// An empty name space.
    fn create_namespace() -> RcvCap = ids::NAMESPACE as u64;
    /// A log named `tag`, with a colour (a letter of `nrgybmcw`, upper case
    /// for bright, or 0..15) and further options (`"key=X"`, `"hide"`, ...,
    /// as cons takes them).
    fn create_log(tag: VStr<LOG_TAG_MAX>, colour: VOpt<VAny<16>>, opts: VarArgs) -> RcvCap
        = Proto::Log as i64 as u64;
    /// A scheduler proxy limited to priorities `base_prio ..= max_prio`
    /// (offset by `base_prio`) on the CPUs in the bit mask `cpus` (all if
    /// absent). `max_prio` must exceed `base_prio`.
    fn create_scheduler(max_prio: VUint, base_prio: VUint, cpus: VOpt<VUint>) -> RcvCap
        = Proto::Scheduler as i64 as u64;
    /// An IPC gate with `label`, bound to `thread` if given (as the kernel
    /// factory takes it: the label an unsigned word, the thread an item).
    fn create_ipc_gate(label: VOpt<VUint>, thread: OptCap) -> RcvCap = 0;
    /// A factory with a quota of `quota` bytes.
    fn create_factory(quota: VUint) -> RcvCap = Proto::Factory as i64 as u64;
}

impl<T: Transport> FactoryClient<T> {
    /// Creates an object of protocol `proto` with the arguments `args`.
    pub fn create(&mut self, proto: i64, args: &VarArgs) -> Result<RcvCap, Error> {
        let mut mrs = [0u64; crate::MR_COUNT];
        let mut w = Writer::new(&mut mrs);
        w.word(proto as u64)?;
        args.encode(&mut w)?;
        let tag = w.finish(Factory::ID)?;
        call(&mut self.transport, self.cap, tag, &mut mrs, &self.rcv)
    }
}
