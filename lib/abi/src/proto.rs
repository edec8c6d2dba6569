//! Protocol ids (message labels) and the operations of each kernel object.
//!
//! A kernel object is invoked with a call whose tag label is the object's
//! protocol and whose first message word (`MR0`) is the opcode, possibly
//! with flags above bit 16 ([`OPCODE_MASK`]). The reply's label is `0` (or a
//! non-negative result) on success and the negative [`crate::Error`] code on
//! failure. Typed items in an invocation are not mapped: the kernel reads
//! each as a reference to a capability of the caller (its flexpage names
//! the index, its rights bits restrict what the operation may use). A new
//! capability that an operation creates (Factory) goes to the caller's
//! first receive item, which must be a single-capability slot.
//!
//! The numbers are Fiasco's (`l4/sys/types.h`, `l4/sys/*.h`). The message
//! layout of every operation (its arguments in order and its reply) is
//! declared once in [`crate::ops`], which encodes and decodes it.
//!
//! Rights this kernel checks on the invoked capability ([`CapRights`]):
//!
//! | operation                                                  | needs   |
//! |------------------------------------------------------------|---------|
//! | any invocation, IPC to a thread or gate                    | `R`     |
//! | changing an object: Task map/unmap, Thread control/ex_regs,| `R`+`W` |
//! | Factory create, Irq bind/detach, Icu bind/unbind/set_mode  |         |
//! | IPC gate bind and get_info (the server end)                | `R`+`C` |
//! | deleting the object (Task unmap with `DELETE_OBJ`)         | `D`     |
//! | the thread named in a bind, as a typed item                | `S`     |
//!
//! A capability sent in IPC keeps its `S` right only if the capability the
//! sender invoked has `S` (as in Fiasco).
//!
//! [`CapRights`]: crate::fpage::CapRights

/// Mask of the opcode in `MR0`; bits above carry operation flags.
pub const OPCODE_MASK: u64 = 0xffff;

/// Kernel protocols (tag labels).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(i64)]
pub enum Proto {
    /// Default label; also the protocol of an IPC gate's creation.
    None = 0,
    /// IRQ message; also the Irq/Icu/Semaphore-up protocol.
    Irq = -1,
    /// Page-fault message (kernel to pager).
    PageFault = -2,
    /// Preemption message.
    Preemption = -3,
    /// System exception.
    SysException = -4,
    /// Exception message (kernel to exception handler).
    Exception = -5,
    /// Sigma0 protocol.
    Sigma0 = -6,
    /// I/O page fault.
    IoPageFault = -8,
    /// Generic kernel object (receive-endpoint bind, gate info).
    Kobject = -10,
    /// Task.
    Task = -11,
    /// Thread.
    Thread = -12,
    /// Log / Vcon.
    Log = -13,
    /// Scheduler.
    Scheduler = -14,
    /// Factory.
    Factory = -15,
    /// Virtual machine.
    Vm = -16,
    /// DMA space.
    DmaSpace = -17,
    /// IRQ sender (IRQ to IPC).
    IrqSender = -18,
    /// IRQ multiplexer.
    IrqMux = -19,
    /// Semaphore.
    Semaphore = -20,
    /// Meta information.
    Meta = -21,
    /// IOMMU.
    Iommu = -22,
    /// Kernel debugger.
    Debugger = -23,
    /// ARM SMC calls.
    Smccc = -24,
}

impl TryFrom<i64> for Proto {
    type Error = i64;

    /// The protocol with this label; the label itself if unknown.
    fn try_from(v: i64) -> Result<Proto, i64> {
        Ok(match v {
            0 => Proto::None,
            -1 => Proto::Irq,
            -2 => Proto::PageFault,
            -3 => Proto::Preemption,
            -4 => Proto::SysException,
            -5 => Proto::Exception,
            -6 => Proto::Sigma0,
            -8 => Proto::IoPageFault,
            -10 => Proto::Kobject,
            -11 => Proto::Task,
            -12 => Proto::Thread,
            -13 => Proto::Log,
            -14 => Proto::Scheduler,
            -15 => Proto::Factory,
            -16 => Proto::Vm,
            -17 => Proto::DmaSpace,
            -18 => Proto::IrqSender,
            -19 => Proto::IrqMux,
            -20 => Proto::Semaphore,
            -21 => Proto::Meta,
            -22 => Proto::Iommu,
            -23 => Proto::Debugger,
            -24 => Proto::Smccc,
            other => return Err(other),
        })
    }
}

macro_rules! opcodes {
    ($(#[$doc:meta])* $name:ident { $( $(#[$vdoc:meta])* $var:ident = $val:expr, )* }) => {
        $(#[$doc])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        #[repr(u64)]
        pub enum $name {
            $( $(#[$vdoc])* $var = $val, )*
        }

        impl TryFrom<u64> for $name {
            type Error = u64;

            /// The operation with this exact value; the value itself if unknown.
            fn try_from(v: u64) -> Result<$name, u64> {
                match v {
                    $( x if x == $val => Ok($name::$var), )*
                    other => Err(other),
                }
            }
        }

        impl $name {
            /// The opcode word.
            pub const fn code(self) -> u64 {
                self as u64
            }

            /// Decodes `MR0`: the opcode in its low 16 bits and the flags above.
            pub fn decode(mr0: u64) -> Result<($name, u64), u64> {
                Ok(($name::try_from(mr0 & OPCODE_MASK)?, mr0 & !OPCODE_MASK))
            }
        }
    };
}

/// Flag bits written down once and given two ways: as `u64` constants in
/// a module (to build message words with) and as a `bitflags` set (to
/// decode them into); `other` constants of the same word that are not
/// flags (a zero value, a special value) go in the module only.
macro_rules! flag_words {
    (
        $(#[$mdoc:meta])* mod $module:ident;
        $(#[$($sdoc:tt)*])* struct $set:ident;
        flags { $( $(#[$($fdoc:tt)*])* $flag:ident = $fval:expr; )* }
        $( other { $( $(#[$odoc:meta])* $other:ident = $oval:expr; )* } )?
    ) => {
        $(#[$mdoc])*
        pub mod $module {
            $( $(#[$($fdoc)*])* pub const $flag: u64 = $fval; )*
            $( $( $(#[$odoc])* pub const $other: u64 = $oval; )* )?
        }

        bitflags::bitflags! {
            $(#[$($sdoc)*])*
            #[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
            pub struct $set: u64 {
                $( $(#[$($fdoc)*])* const $flag = $module::$flag; )*
            }
        }
    };
}

opcodes! {
    /// Operations of the generic kernel-object protocol ([`Proto::Kobject`];
    /// layouts: [`crate::ops::KobjectMsg`]). After a bind, messages through
    /// the endpoint go to the bound thread and carry the label in `x2`.
    KobjectOp {
        /// Bind a receive endpoint (IPC gate, Irq) to a thread with a label.
        Bind = 0x10,
        /// Read an IPC gate's label.
        GetInfo = 0x11,
    }
}

opcodes! {
    /// Task operations ([`Proto::Task`], invoked on the destination task;
    /// layouts: [`crate::ops::TaskMsg`]). A map moves capabilities and
    /// memory from the source task into the invoked task as an IPC map item
    /// would.
    ///
    /// Deleting an object is `Unmap` of its capability with
    /// [`unmap::DELETE_OBJ`] (needs the `D` right).
    TaskOp {
        /// Map from a source task into this task.
        Map = 0,
        /// Revoke mappings.
        Unmap = 1,
        /// Query capabilities.
        CapInfo = 2,
        /// Add kernel-user memory.
        AddKuMem = 3,
    }
}

flag_words! {
    /// Flags of [`TaskOp::Unmap`] (MR1), Fiasco's `l4_unmap_flags_t`.
    mod unmap;
    /// [`TaskOp::Unmap`] flags as a set (the values of [`unmap`]).
    struct UnmapFlags;
    flags {
        /// Also revoke the named mappings in the invoked task.
        ALL_SPACES = 0x8000_0000;
        /// For capabilities: delete the objects (implies `ALL_SPACES`;
        /// needs `D`).
        DELETE_OBJ = 0xc000_0000;
    }
    other {
        /// Revoke only the mappings derived from the named ones.
        OTHER_SPACES = 0;
    }
}

opcodes! {
    /// Thread operations ([`Proto::Thread`]; layouts:
    /// [`crate::ops::ThreadMsg`]). `VcpuResume`, `VcpuControl` (virtualisation)
    /// and `ModifySender` have no layout yet.
    ///
    /// Starting a thread: `Control` (bind to a task, set pager and exception
    /// handler), `ExRegs` (pc, sp), then the scheduler's `RunThread`.
    /// Yielding: a receive on [`crate::sys::Cap::INVALID`] with both
    /// timeouts zero.
    ThreadOp {
        /// Set pager, exception handler, bind to task.
        Control = 0,
        /// Exchange pc/sp, cancel IPC, trigger an exception.
        ExRegs = 1,
        /// Switch to the thread.
        Switch = 2,
        /// Statistics.
        Stats = 3,
        /// Resume a vCPU.
        VcpuResume = 4,
        /// Register an IPC-gate deletion IRQ.
        RegisterDeleteIrq = 5,
        /// Modify sender labels.
        ModifySender = 6,
        /// Enable or disable vCPU mode.
        VcpuControl = 7,
        /// Set `TPIDRRO_EL0`.
        ArmTpidrUro = 0x10,
    }
}

flag_words! {
    /// Flags of [`ThreadOp::Control`] (in `MR0`; the layout is
    /// [`crate::ops::ThreadControl`]).
    mod thread_control;
    /// [`ThreadOp::Control`] flags as a set (the values of
    /// [`thread_control`]): which settings change, and their values.
    struct ControlFlags;
    flags {
        /// Set the pager: MR1 names it.
        SET_PAGER = 0x001_0000;
        /// Bind the thread to a task: MR5/MR6.. give it and the UTCB
        /// address.
        BIND_TASK = 0x020_0000;
        /// Alien mode (system calls become exceptions).
        ALIEN = 0x040_0000;
        /// Set the exception handler: MR2 names it.
        SET_EXC_HANDLER = 0x100_0000;
    }
}

flag_words! {
    /// Flags of [`ThreadOp::ExRegs`].
    mod ex_regs;
    /// [`ThreadOp::ExRegs`] flags as a set (the values of [`ex_regs`]).
    struct ExRegsFlags;
    flags {
        /// Cancel an ongoing IPC of the thread.
        CANCEL = 0x1_0000;
        /// Make the thread raise an exception (to its exception handler).
        TRIGGER_EXCEPTION = 0x2_0000;
    }
    other {
        /// Value of pc/sp meaning "unchanged".
        UNCHANGED = u64::MAX;
    }
}

opcodes! {
    /// Factory operations ([`Proto::Factory`]): MR0 is the protocol of the
    /// object to create (sign-extended), then arguments as [`varg`] values;
    /// the new capability goes to the caller's first receive item (layouts:
    /// [`crate::ops::FactoryMsg`]). `Irq` makes an IRQ sender (Fiasco's
    /// `L4_PROTO_IRQ_SENDER`).
    FactoryOp {
        /// Create a task.
        Task = Proto::Task as i64 as u64,
        /// Create a thread.
        Thread = Proto::Thread as i64 as u64,
        /// Create a factory with a quota.
        Factory = Proto::Factory as i64 as u64,
        /// Create an IPC gate.
        IpcGate = 0,
        /// Create an IRQ.
        Irq = Proto::IrqSender as i64 as u64,
        /// Create a semaphore.
        Semaphore = Proto::Semaphore as i64 as u64,
        /// Create a virtual machine.
        Vm = Proto::Vm as i64 as u64,
        /// On sigma0: another capability to it (seed 003's `start_io`).
        Sigma0 = Proto::Sigma0 as i64 as u64,
    }
}

/// Typed arguments of factory calls (Fiasco's `L4_varg_type`): a header word
/// `type | size << 16`, then the value (a string takes `ceil(size / 8)`
/// words, nil none).
pub mod varg {
    /// No value.
    pub const NIL: u64 = 0x00;
    /// Unsigned word.
    pub const UMWORD: u64 = 0x01;
    /// Signed word.
    pub const MWORD: u64 = 0x81;
    /// String (bytes, including the terminating NUL if any).
    pub const STRING: u64 = 0x02;
    /// Flexpage.
    pub const FPAGE: u64 = 0x03;

    /// One argument.
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    pub enum Varg<'a> {
        /// Nil.
        Nil,
        /// Unsigned word.
        Umword(u64),
        /// Signed word.
        Mword(i64),
        /// Flexpage.
        Fpage(crate::fpage::Fpage),
        /// String, as the message words holding it and its length in bytes.
        Str(&'a [u64], usize),
    }

    /// Reads arguments from message words; stops (returning `Err`) at a
    /// malformed or truncated argument.
    #[derive(Clone, Debug)]
    pub struct Vargs<'a> {
        words: &'a [u64],
    }

    impl<'a> Vargs<'a> {
        /// Arguments in `words` (the message words after MR0).
        pub const fn new(words: &'a [u64]) -> Vargs<'a> {
            Vargs { words }
        }
    }

    impl<'a> Iterator for Vargs<'a> {
        type Item = Result<Varg<'a>, ()>;

        fn next(&mut self) -> Option<Self::Item> {
            let (&h, rest) = self.words.split_first()?;
            let size = (h >> 16) as usize;
            let value = |n: usize| rest.get(..n).map(|v| (v, &rest[n..]));
            let r = match h & 0xffff {
                NIL => Some((Varg::Nil, rest)),
                UMWORD if size == 8 => value(1).map(|(v, r)| (Varg::Umword(v[0]), r)),
                MWORD if size == 8 => value(1).map(|(v, r)| (Varg::Mword(v[0] as i64), r)),
                FPAGE if size == 8 => {
                    value(1).map(|(v, r)| (Varg::Fpage(crate::fpage::Fpage(v[0])), r))
                }
                STRING => value(size.div_ceil(8)).map(|(v, r)| (Varg::Str(v, size), r)),
                _ => None,
            };
            match r {
                Some((v, rest)) => {
                    self.words = rest;
                    Some(Ok(v))
                }
                None => {
                    self.words = &[];
                    Some(Err(()))
                }
            }
        }
    }

    /// The header word of an argument.
    pub const fn header(ty: u64, size: usize) -> u64 {
        ty | ((size as u64) << 16)
    }
}

opcodes! {
    /// Vm operations with [`Proto::Vm`] (layouts: [`crate::ops::VmMsg`]).
    /// Memory goes into a Vm with the Task protocol's map.
    VmOp {
        /// Set or remove an MMIO shortcut: a guest access at an address
        /// the kernel answers itself ([`crate::vcpu::shortcut`]).
        Shortcut = 0x10,
    }
}

opcodes! {
    /// Irq operations with [`Proto::Irq`] (also Semaphore `up` = `Trigger`;
    /// layouts: [`crate::ops::IrqMsg`]).
    ///
    /// Binding is [`KobjectOp::Bind`]; an IRQ message has the label
    /// [`Proto::Irq`], no words, and the bound label in `x2`.
    IrqOp {
        /// Trigger the IRQ (software IRQ, semaphore up).
        Trigger = 2,
        /// Unmask / end of interrupt (Fiasco's `L4_IRQ_OP_EOI`).
        Unmask = 4,
    }
}

opcodes! {
    /// Irq-sender operations with [`Proto::IrqSender`] (layouts:
    /// [`crate::ops::IrqSenderMsg`]).
    IrqSenderOp {
        /// Attach to a thread (legacy; use [`KobjectOp::Bind`]).
        Attach = 0,
        /// Detach from the bound thread.
        Detach = 1,
        /// Bind to a vCPU (inject into its guest).
        BindVcpu = 0x10,
    }
}

opcodes! {
    /// Interrupt controller operations (label [`Proto::Irq`], on an Icu;
    /// layouts: [`crate::ops::IcuMsg`]).
    IcuOp {
        /// Bind an Irq object to an IRQ line.
        Bind = 0,
        /// Unbind.
        Unbind = 1,
        /// Controller information.
        Info = 2,
        /// MSI information.
        MsiInfo = 3,
        /// Unmask a line.
        Unmask = 4,
        /// Mask a line.
        Mask = 5,
        /// Set trigger mode.
        SetMode = 6,
    }
}

/// Interrupt-controller constants.
pub mod icu {
    /// Feature / IRQ-number flag: MSI.
    pub const FLAG_MSI: u64 = 0x8000_0000;

    /// Trigger modes (Fiasco's `L4_irq_mode`).
    pub mod mode {
        /// No mode.
        pub const NONE: u64 = 0;
        /// Level triggered (flag).
        pub const LEVEL: u64 = 0x2;
        /// Negative polarity (flag).
        pub const NEG: u64 = 0x4;
        /// Both edges (flag).
        pub const BOTH: u64 = 0x8;
        /// Level, active high.
        pub const LEVEL_HIGH: u64 = 0x3;
        /// Level, active low.
        pub const LEVEL_LOW: u64 = 0x7;
        /// Rising edge.
        pub const POS_EDGE: u64 = 0x1;
        /// Falling edge.
        pub const NEG_EDGE: u64 = 0x5;
        /// Both edges.
        pub const BOTH_EDGE: u64 = 0x9;
        /// Mask of the mode bits.
        pub const MASK: u64 = 0xf;
        /// Make the IRQ a wakeup source.
        pub const SET_WAKEUP: u64 = 0x10;
        /// Stop using the IRQ as a wakeup source.
        pub const CLEAR_WAKEUP: u64 = 0x20;
    }
}

opcodes! {
    /// Scheduler operations ([`Proto::Scheduler`]; layouts:
    /// [`crate::ops::SchedulerMsg`]).
    SchedulerOp {
        /// CPUs online.
        Info = 0,
        /// Run a thread with priority, quantum and affinity.
        RunThread = 1,
        /// Idle time.
        IdleTime = 2,
    }
}

/// A set of CPUs in Fiasco's message form (`l4_sched_cpu_set_t`): bit `i` of
/// `map` stands for CPUs `offset + i * 2^granularity ..` (`2^granularity`
/// CPUs per bit).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SchedCpuSet {
    /// First CPU of bit 0 (24 bits).
    pub offset: u32,
    /// Log2 of the CPUs per bit.
    pub granularity: u8,
    /// The bitmap.
    pub map: u64,
}

impl SchedCpuSet {
    /// Reads the granularity/offset word and the map word.
    pub const fn from_words(gran_offset: u64, map: u64) -> SchedCpuSet {
        SchedCpuSet {
            offset: (gran_offset & 0xff_ffff) as u32,
            granularity: (gran_offset >> 24) as u8,
            map,
        }
    }

    /// The granularity/offset word.
    pub const fn gran_offset(self) -> u64 {
        ((self.granularity as u64) << 24) | (self.offset & 0xff_ffff) as u64
    }

    /// Whether `cpu` is in the set.
    pub const fn contains(self, cpu: u32) -> bool {
        if cpu < self.offset {
            return false;
        }
        let d = (cpu - self.offset) as u64;
        let bit = if self.granularity >= 64 {
            0
        } else {
            d >> self.granularity
        };
        bit < 64 && self.map & (1 << bit) != 0
    }
}

opcodes! {
    /// Vcon (kernel console, [`Proto::Log`]) operations (layouts:
    /// [`crate::ops::VconMsg`]).
    VconOp {
        /// Write bytes.
        Write = 0,
        /// Read bytes.
        Read = 1,
        /// Set attributes.
        SetAttr = 2,
        /// Get attributes.
        GetAttr = 3,
    }
}

/// Vcon read-result flags (Fiasco's `L4_vcon_read_flags`).
pub mod vcon {
    /// Mask of the byte count.
    pub const READ_SIZE_MASK: u64 = 0x3fff_ffff;
    /// A break condition occurred.
    pub const READ_STAT_BREAK: u64 = 1 << 30;
    /// No more input is pending.
    pub const READ_STAT_DONE: u64 = 1 << 31;
    /// Largest number of bytes one write carries: a tag holds at most 63
    /// words, two of which are the opcode and the count (Fiasco's
    /// `L4_VCON_WRITE_SIZE`).
    pub const WRITE_MAX: usize = (crate::msgtag::MsgTag::MAX_WORDS as usize - 2) * 8;

    /// Attribute flags of `SetAttr`/`GetAttr` (Fiasco's `L4_vcon_*_flags`,
    /// the termios values).
    pub mod attr {
        /// Input: translate NL to CR.
        pub const INLCR: u64 = 0o100;
        /// Input: ignore CR.
        pub const IGNCR: u64 = 0o200;
        /// Input: translate CR to NL (unless `IGNCR`).
        pub const ICRNL: u64 = 0o400;
        /// Output: translate NL to CR-NL.
        pub const ONLCR: u64 = 0o4;
        /// Output: translate CR to NL.
        pub const OCRNL: u64 = 0o10;
        /// Output: do not output CR.
        pub const ONLRET: u64 = 0o40;
        /// Local: canonical mode.
        pub const ICANON: u64 = 0o2;
        /// Local: echo input.
        pub const ECHO: u64 = 0o10;
        /// Input flags a raw console clears (its client sees every byte as
        /// typed).
        pub const RAW_CLEAR_I: u64 = INLCR | IGNCR | ICRNL;
        /// Output flags a raw console clears.
        pub const RAW_CLEAR_O: u64 = ONLCR | OCRNL | ONLRET;
        /// Local flags a raw console clears.
        pub const RAW_CLEAR_L: u64 = ECHO | ICANON;
    }
}

opcodes! {
    /// Semaphore operations ([`Proto::Semaphore`]; layouts:
    /// [`crate::ops::SemaphoreMsg`]). `up` is [`IrqOp::Trigger`] with the
    /// label [`Proto::Irq`].
    SemaphoreOp {
        /// Decrement, blocking while zero.
        Down = 0,
    }
}

opcodes! {
    /// The root task's memory protocol ([`Proto::Sigma0`]; the numbers are
    /// [`crate::sigma0`]'s, compared as whole words).
    Sigma0Op {
        /// Map free RAM.
        MapFree = crate::sigma0::MAP_FREE,
        /// Map device memory.
        MapDevice = crate::sigma0::MAP_DEVICE,
        /// Map the memory of a boot module.
        MapModule = crate::sigma0::MAP_MODULE,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn protocols() {
        assert_eq!(Proto::try_from(-15), Ok(Proto::Factory));
        assert_eq!(Proto::try_from(-20), Ok(Proto::Semaphore));
        assert_eq!(Proto::try_from(-7), Err(-7));
        assert_eq!(Proto::try_from(0x4000), Err(0x4000));
        for p in [
            Proto::Irq,
            Proto::PageFault,
            Proto::Kobject,
            Proto::Smccc,
            Proto::None,
        ] {
            assert_eq!(Proto::try_from(p as i64), Ok(p));
        }
    }

    #[test]
    fn opcodes_reject_unknown() {
        assert_eq!(TaskOp::try_from(1), Ok(TaskOp::Unmap));
        assert_eq!(TaskOp::try_from(4), Err(4));
        assert_eq!(ThreadOp::try_from(0x10), Ok(ThreadOp::ArmTpidrUro));
        assert_eq!(ThreadOp::try_from(8), Err(8));
        assert_eq!(
            ThreadOp::decode(1 | ex_regs::CANCEL),
            Ok((ThreadOp::ExRegs, ex_regs::CANCEL))
        );
        assert_eq!(ThreadOp::decode(0x0009_0009), Err(9));
        assert_eq!(FactoryOp::try_from((-11i64) as u64), Ok(FactoryOp::Task));
        assert_eq!(FactoryOp::try_from((-18i64) as u64), Ok(FactoryOp::Irq));
        assert_eq!(FactoryOp::try_from(0), Ok(FactoryOp::IpcGate));
        assert_eq!(
            FactoryOp::try_from((-12i64 as u64) & OPCODE_MASK),
            Err(0xfff4)
        );
        assert_eq!(KobjectOp::try_from(0x11), Ok(KobjectOp::GetInfo));
        assert_eq!(IcuOp::try_from(6), Ok(IcuOp::SetMode));
        assert_eq!(IcuOp::try_from(7), Err(7));
        assert_eq!(IrqOp::try_from(4), Ok(IrqOp::Unmask));
        assert_eq!(IrqOp::try_from(0), Err(0));
        assert_eq!(IrqSenderOp::try_from(1), Ok(IrqSenderOp::Detach));
        assert_eq!(SchedulerOp::try_from(2), Ok(SchedulerOp::IdleTime));
        assert_eq!(VconOp::try_from(3), Ok(VconOp::GetAttr));
        assert_eq!(SemaphoreOp::try_from(0), Ok(SemaphoreOp::Down));
        assert_eq!(SemaphoreOp::try_from(1), Err(1));
        assert_eq!(TaskOp::Map.code(), 0);
    }

    #[test]
    fn vargs() {
        use varg::*;
        let words = [
            header(UMWORD, 8),
            42,
            header(STRING, 3),
            u64::from_le_bytes(*b"ab\0\0\0\0\0\0"),
            header(NIL, 0),
            header(MWORD, 8),
            -5i64 as u64,
        ];
        let mut v = Vargs::new(&words);
        assert_eq!(v.next(), Some(Ok(Varg::Umword(42))));
        assert_eq!(v.next(), Some(Ok(Varg::Str(&words[3..4], 3))));
        assert_eq!(v.next(), Some(Ok(Varg::Nil)));
        assert_eq!(v.next(), Some(Ok(Varg::Mword(-5))));
        assert_eq!(v.next(), None);
        // Truncated value, bad size, unknown type.
        assert_eq!(Vargs::new(&[header(UMWORD, 8)]).next(), Some(Err(())));
        assert_eq!(Vargs::new(&[header(UMWORD, 4), 1]).next(), Some(Err(())));
        assert_eq!(Vargs::new(&[header(0x77, 8), 1]).next(), Some(Err(())));
        let truncated = [header(STRING, 100), 0];
        let mut bad = Vargs::new(&truncated);
        assert_eq!(bad.next(), Some(Err(())));
        assert_eq!(bad.next(), None, "stops after an error");
    }

    #[test]
    fn cpu_sets() {
        let s = SchedCpuSet::from_words((1 << 24) | 4, 0b101);
        assert_eq!((s.offset, s.granularity, s.map), (4, 1, 0b101));
        assert_eq!(s.gran_offset(), (1 << 24) | 4);
        assert!(!s.contains(3));
        assert!(s.contains(4) && s.contains(5));
        assert!(!s.contains(6) && !s.contains(7));
        assert!(s.contains(8) && s.contains(9));
        assert!(!s.contains(4 + 2 * 64));
        let all = SchedCpuSet::from_words(0, !0);
        assert!(all.contains(0) && all.contains(63) && !all.contains(64));
    }
}
