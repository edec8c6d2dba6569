//! The [`protocol!`](crate::protocol) macro.

/// Declares an IPC protocol: its id, its operations with their arguments
/// and results, and from that a client stub, a server trait and dispatch.
///
/// ```
/// use l4_ipc::{CapArg, Str, protocol};
///
/// protocol! {
///     /// A key-value store.
///     pub protocol Store = 0x7000;
///     client StoreClient;
///     server StoreServer;
///
///     /// Looks a key up.
///     fn get(key: Str<32>) -> u64 = 0;
///     /// Stores a value; returns the old one, if any.
///     fn put(key: Str<32>, value: u64) -> Option<u64> = 1;
///     /// Hands out the store's notification capability.
///     fn notifier() -> CapArg = 2;
/// }
/// # fn main() {}
/// ```
///
/// # Syntax
///
/// ```text
/// protocol! {
///     #[attrs] VIS protocol NAME = ID;     // ID: the request label (i64)
///     client CLIENT;                      // name of the client stub type
///     server SERVER;                      // name of the server trait
///     #[attrs] fn OP(ARG: TYPE, ...) -> RET = OPCODE;   // OPCODE: MR0 (u64)
///     ...
/// }
/// ```
///
/// Every `TYPE` and `RET` is an [`Arg`](crate::codec::Arg). A request is
/// the tag (label `ID`, words, items), MR0 = `OPCODE` (the whole word is
/// compared), then the arguments in order as the codec lays them out
/// (words, and typed items behind all words). A successful reply has label
/// 0 and `RET` as its words and items; a failure the negative error code.
/// Opcodes must be distinct (checked at compile time).
///
/// # Generated items
///
/// * `enum NAME {}` implementing [`Protocol`](crate::Protocol): `NAME::ID`,
///   one opcode constant per operation named like the operation
///   (`NAME::OP`), and `NAME::dispatch(server, ctx, tag, mrs) -> MsgTag`,
///   which checks the label ([`Error::BadProto`](crate::Error::BadProto)),
///   the opcode ([`Error::NoSys`](crate::Error::NoSys) if unknown), decodes
///   the arguments and refuses malformed ones and surplus words or items
///   with the codec's error, calls the server, and encodes its result or
///   error into the reply. It never panics on any input.
/// * `trait SERVER` with `fn OP(&mut self, ctx: &Ctx, ARG: TYPE, ...) ->
///   Result<RET, Error>` per operation. `NAME` implements
///   [`Dispatch<S>`](crate::Dispatch) for every `S: SERVER`, so
///   `Object::<NAME, _>::new(s)` is a [`Handler`](crate::Handler).
/// * `struct CLIENT<T = DefaultTransport> { cap, transport, rcv }` with
///   `CLIENT::new(cap)` (on the default transport) and
///   `CLIENT::with_transport(cap, t)`, and `fn OP(&mut self, ARG: <TYPE as
///   Arg>::View<'_>, ...) -> Result<RET, Error>` per operation: encodes
///   the request, calls `cap` through the transport offering the receive
///   buffers `rcv` for returned items, and decodes the reply (an error label
///   is returned as that error; a malformed reply as the codec's error).
#[macro_export]
macro_rules! protocol {
    (
        $(#[$pmeta:meta])*
        $vis:vis protocol $name:ident = $id:expr;
        client $client:ident;
        server $server:ident;
        $(
            $(#[$ometa:meta])*
            fn $op:ident ( $( $arg:ident : $aty:ty ),* $(,)? ) -> $ret:ty = $code:expr;
        )*
    ) => {
        $(#[$pmeta])*
        #[derive(Debug)]
        $vis enum $name {}

        #[allow(non_upper_case_globals)]
        impl $name {
            /// The protocol id (request label).
            pub const ID: i64 = $id;

            $(
                #[doc = concat!("Opcode (MR0) of `", stringify!($op), "`.")]
                pub const $op: u64 = $code;
            )*

            /// Answers a request of this protocol: decodes it, calls
            /// `server`, and encodes the reply into `mrs`; returns the
            /// reply tag. Malformed requests get an error reply.
            pub fn dispatch<S: $server + ?Sized>(
                server: &mut S,
                ctx: &$crate::Ctx,
                tag: $crate::MsgTag,
                mrs: &mut [u64; $crate::MR_COUNT],
            ) -> $crate::MsgTag {
                #[allow(unused_variables, unused_mut)]
                fn run<S: $server + ?Sized>(
                    server: &mut S,
                    ctx: &$crate::Ctx,
                    tag: $crate::MsgTag,
                    mrs: &mut [u64; $crate::MR_COUNT],
                ) -> ::core::result::Result<$crate::MsgTag, $crate::Error> {
                    if tag.label() != $name::ID {
                        return Err($crate::Error::BadProto);
                    }
                    let mut r = $crate::codec::Reader::new(tag, &mrs[..])?;
                    let op = r.word()?;
                    $(
                        if op == $name::$op {
                            $(
                                let $arg = <$aty as $crate::codec::Arg>::decode(&mut r)?;
                            )*
                            r.finish()?;
                            let ret: $ret = server.$op(ctx $(, $arg)*)?;
                            return Ok($crate::server::encode_reply(&ret, mrs));
                        }
                    )*
                    Err($crate::Error::NoSys)
                }
                match run(server, ctx, tag, mrs) {
                    Ok(t) => t,
                    Err(e) => $crate::server::error_reply(e),
                }
            }
        }

        const _: () = {
            let ops: &[u64] = &[$($name::$op),*];
            let mut i = 0;
            while i < ops.len() {
                let mut j = i + 1;
                while j < ops.len() {
                    assert!(ops[i] != ops[j], "duplicate opcode");
                    j += 1;
                }
                i += 1;
            }
        };

        impl $crate::Protocol for $name {
            const ID: i64 = $id;
            const NAME: &'static str = stringify!($name);
            const OPS: &'static [(&'static str, u64)] = &[$((stringify!($op), $name::$op)),*];
        }

        impl<S: $server + ?Sized> $crate::Dispatch<S> for $name {
            fn dispatch(
                server: &mut S,
                ctx: &$crate::Ctx,
                tag: $crate::MsgTag,
                mrs: &mut [u64; $crate::MR_COUNT],
            ) -> $crate::MsgTag {
                $name::dispatch(server, ctx, tag, mrs)
            }
        }

        #[doc = concat!("Server side of [`", stringify!($name), "`]: one method per operation.")]
        $vis trait $server {
            $(
                $(#[$ometa])*
                #[allow(clippy::too_many_arguments)]
                fn $op(&mut self, ctx: &$crate::Ctx $(, $arg: $aty)*)
                    -> ::core::result::Result<$ret, $crate::Error>;
            )*
        }

        #[doc = concat!("Client stub of [`", stringify!($name), "`] for the capability `cap`.")]
        #[derive(Debug)]
        $vis struct $client<T = $crate::transport::DefaultTransport> {
            /// The capability index of the server object.
            pub cap: u64,
            /// The transport calls go through.
            pub transport: T,
            /// Receive buffers offered for capabilities and mappings in
            /// replies.
            pub rcv: $crate::RecvBufs,
        }

        impl $client<$crate::transport::DefaultTransport> {
            /// A client of `cap` on the default transport (the UTCB on
            /// AArch64), offering no receive buffers.
            pub const fn new(cap: u64) -> Self {
                Self::with_transport(cap, <$crate::transport::DefaultTransport>::new())
            }
        }

        impl<T: $crate::Transport> $client<T> {
            /// A client of `cap` calling through `transport`, offering no
            /// receive buffers.
            pub const fn with_transport(cap: u64, transport: T) -> Self {
                $client {
                    cap,
                    transport,
                    rcv: $crate::RecvBufs::new(),
                }
            }

            $(
                $(#[$ometa])*
                #[allow(clippy::too_many_arguments)]
                pub fn $op(
                    &mut self
                    $(, $arg: <$aty as $crate::codec::Arg>::View<'_>)*
                ) -> ::core::result::Result<$ret, $crate::Error> {
                    let mut mrs = [0u64; $crate::MR_COUNT];
                    let mut w = $crate::codec::Writer::new(&mut mrs);
                    w.word($name::$op)?;
                    $(
                        <$aty as $crate::codec::Arg>::encode_view($arg, &mut w)?;
                    )*
                    let tag = w.finish($name::ID)?;
                    $crate::transport::call::<T, $ret>(
                        &mut self.transport,
                        self.cap,
                        tag,
                        &mut mrs,
                        &self.rcv,
                    )
                }
            )*
        }
    };
}
