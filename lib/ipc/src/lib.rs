//! Typed IPC protocols: one declaration of an interface gives client stubs,
//! a server trait and dispatch; a server loop dispatches requests to
//! objects by the label of the gate they came through.
//!
//! * [`codec`]: how values travel in message registers ([`Arg`], [`Writer`],
//!   [`Reader`]), including byte strings ([`Bytes`], [`Str`]) and typed
//!   items ([`CapArg`], [`MemArg`]); decoding refuses malformed messages
//!   with an error and never panics;
//! * [`varg`]: L4Re's typed factory arguments;
//! * [`protocol!`]: declares a protocol (id, operations with opcode,
//!   arguments and result) and generates the client stub, server trait and
//!   dispatch function;
//! * [`transport`]: how a call reaches the server ([`Transport`]): the UTCB
//!   and the kernel on AArch64, an in-process [`Loopback`] for tests;
//! * [`server`]: request context ([`Ctx`]), objects ([`Handler`],
//!   [`Object`]), registries by label, and the server loop ([`Server`]);
//! * [`protocols`]: the L4Re-compatible protocols: Dataspace, Namespace,
//!   Parent, Log, Factory;
//! * [`vbus`]: io's virtual bus protocol (devices, resources, MMIO
//!   dataspaces and Irqs of the platform devices a client may use);
//! * [`virtio`]: a virtio device over shared memory (L4Re's l4virtio):
//!   registered dataspaces, feature negotiation, queue setup, Irqs both
//!   ways;
//! * [`netstats`]: the virtio network switch's statistics interface and
//!   the layout of its buffer.
//!
//! # Messages
//!
//! A request has the protocol id as its tag label, the opcode in MR0 and the
//! arguments after it: untyped words, then typed items (two words each)
//! for capabilities and memory. A reply has label 0 (any non-negative label
//! counts as success) with the results as words and items, or a negative
//! [`Error`] code and nothing else, as kernel objects reply. A server
//! answers a request for another protocol with [`Error::BadProto`], an
//! unknown opcode with [`Error::NoSys`], a malformed request with the
//! codec's error ([`Error::MsgTooShort`], [`Error::MsgTooLong`],
//! [`Error::MsgMissArg`], [`Error::Inval`], [`Error::TooBig`]), and a
//! request to an unknown label with [`Error::NoEnt`].
//!
//! ```
//! use l4_ipc::{Ctx, Error, Loopback, Object, ObjectTable, protocol};
//!
//! protocol! {
//!     /// A counter.
//!     pub protocol Counter = 0x7100;
//!     client CounterClient;
//!     server CounterServer;
//!
//!     /// Adds `n`; returns the new value.
//!     fn add(n: u32) -> u64 = 0;
//! }
//!
//! struct Count(u64);
//!
//! impl CounterServer for Count {
//!     fn add(&mut self, _: &Ctx, n: u32) -> Result<u64, Error> {
//!         self.0 += u64::from(n);
//!         Ok(self.0)
//!     }
//! }
//!
//! // The server's objects under the labels of their gates (the low two
//! // bits stay zero: the kernel puts the sender's W and S rights there).
//! let mut counter = Object::<Counter, _>::new(Count(0));
//! let mut objects = ObjectTable::<4>::new();
//! objects.register(0x50, &mut counter).unwrap();
//! // A client of capability 0x50, which the loopback treats as the gate
//! // with label 0x50.
//! let mut c = CounterClient::with_transport(0x50, Loopback::new(objects));
//! assert_eq!(c.add(2), Ok(2));
//! assert_eq!(c.add(3), Ok(5));
//! ```

#![no_std]
#![deny(unsafe_op_in_unsafe_fn)]
#![deny(missing_docs)]

#[cfg(feature = "alloc")]
extern crate alloc;

pub mod codec;
mod macros;
pub mod netstats;
pub mod protocols;
pub mod server;
pub mod transport;
pub mod varg;
pub mod vbus;
pub mod virtio;
mod words;

#[cfg(target_arch = "aarch64")]
mod glue;

pub use codec::{Arg, Bytes, CapArg, MemArg, OptCap, RcvCap, Reader, Str, Writer};
#[cfg(target_arch = "aarch64")]
pub use glue::{UtcbServerTransport, UtcbTransport};
pub use l4_abi::utcb::MR_COUNT;
pub use l4_abi::{Error, MsgTag};
#[cfg(feature = "alloc")]
pub use server::ObjectMap;
pub use server::{
    Ctx, Dispatch, Handler, LabelRange, Object, ObjectTable, Protocol, Registry, Server,
    ServerTransport, handle_request,
};
pub use transport::{Loopback, NoTransport, RecvBufs, Request, Transport};
