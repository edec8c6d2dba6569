//! cons, the console multiplexer, as L4Re has it: a Log factory whose
//! clients each get a name, a colour and an optional key; their output is
//! tagged per client and kept in a history; Ctrl-E and a client's key
//! focus that client, whose output is then shown untagged and which gets
//! what is typed; with no client focused, typed lines are commands at the
//! `cons> ` prompt.
//!
//! This crate is the logic, free of system calls and tested on the host:
//!
//! * [`options`]: the command line (`-a`, `-B`, `-c`, `-k`, `-l`, `-m`,
//!   `-n`, `-t`, ...);
//! * [`spec`]: a client's `create(L4.Proto.Log, tag, colour, opts...)`
//!   arguments; [`colour`]: its colour;
//! * [`history`]: its output history;
//! * [`ldisc`]: its input side (attributes, translation, echo, the queue
//!   `read` takes from);
//! * [`escape`]: the Ctrl-E escape parser; [`command`]: prompt commands;
//! * [`term`]: the output formatter (tags, colours, lines that never mix);
//! * [`console`]: the multiplexer tying them together;
//! * [`service`]: the Factory, Log and Icu protocols over a [`Backend`]
//!   for the kernel side, and how a client waits for input.
//!
//! The `cons` binary (AArch64) is the server loop around [`Service`].

#![warn(missing_docs)]
#![forbid(unsafe_code)]

pub mod colour;
pub mod command;
pub mod console;
pub mod escape;
pub mod history;
pub mod ldisc;
pub mod options;
pub mod service;
pub mod spec;
pub mod term;

pub use colour::Colour;
pub use console::{ClientId, ConsError, Console, Event};
pub use options::{OptError, Options};
pub use service::{Backend, Service};
pub use spec::ClientSpec;
