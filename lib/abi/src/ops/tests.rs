extern crate std;

use super::*;
use crate::proto::{ControlFlags, ExRegsFlags, UnmapFlags, thread_control};
use crate::{MemRights, sigma0};
use core::fmt::Debug;

/// What a truncated message may decode to.
#[derive(Clone, Copy, PartialEq)]
enum Cut {
    /// Every argument is required: any cut is an error.
    Fails,
    /// Trailing arguments are optional: a cut never yields the same value.
    Differs,
}

/// Encodes `op`, checks its tag, decodes it back through the operation and
/// the protocol enum (`wrap`), and checks that every shorter message (fewer
/// words or fewer items) is refused or decodes to something else.
fn round_trip<T, M>(
    op: T,
    words: u32,
    items: u32,
    cut: Cut,
    wrap: fn(T) -> M,
    proto: ProtoDecode<M>,
) where
    T: Op + Copy + PartialEq + Debug,
    M: PartialEq + Debug,
{
    let mut mr = [0xdead_beef; MR_COUNT];
    let tag = op.encode(&mut mr);
    assert_eq!(tag.label(), T::PROTO as i64, "{}", T::NAME);
    assert_eq!((tag.words(), tag.items()), (words, items), "{}", T::NAME);
    assert_eq!(T::decode(tag, &mr), Ok(op), "{}", T::NAME);
    assert_eq!(proto(tag, &mr), Ok(wrap(op)), "{}", T::NAME);
    for w in 0..words {
        let short = tag.with_counts(w, items);
        // The items move with the word count: put them where they belong.
        let mut m = mr;
        m.copy_within(words as usize..(words + 2 * items) as usize, w as usize);
        match (T::decode(short, &m), cut) {
            (Err(e), _) => {
                assert!(
                    matches!(e, MsgError::Short { .. } | MsgError::Malformed { .. }),
                    "{}: {e:?}",
                    T::NAME
                );
                assert_eq!(Error::from(e), Error::Inval);
            }
            (Ok(v), Cut::Differs) => assert_ne!(v, op, "{} cut to {w} words", T::NAME),
            (Ok(v), Cut::Fails) => panic!("{} cut to {w} words decoded: {v:?}", T::NAME),
        }
    }
    for i in 0..items {
        match (T::decode(tag.with_counts(words, i), &mr), cut) {
            (Err(e), _) => assert!(matches!(e, MsgError::Short { .. }), "{e:?}"),
            (Ok(v), Cut::Differs) => assert_ne!(v, op),
            (Ok(v), Cut::Fails) => panic!("{} with {i} items decoded: {v:?}", T::NAME),
        }
    }
}

type ProtoDecode<M> = fn(MsgTag, &[u64; MR_COUNT]) -> Result<M, MsgError>;

fn cap(i: u64) -> CapArg {
    CapArg::new(i, CapRights::RWS)
}

#[test]
fn kobject() {
    let d: ProtoDecode<KobjectMsg> = KobjectMsg::decode;
    let bind = KobjectBind {
        label: 0xabc0,
        thread: CapArg::new(0x40, CapRights::RWS | CapRights::C),
    };
    round_trip(bind, 2, 1, Cut::Fails, KobjectMsg::Bind, d);
    round_trip(KobjectGetInfo {}, 1, 0, Cut::Fails, KobjectMsg::GetInfo, d);
}

#[test]
fn task() {
    let d: ProtoDecode<TaskMsg> = TaskMsg::decode;
    let item = SendItem::map(Fpage::mem(0x1000_0000, 16, MemRights::RX), 0x2000_0000);
    let map = TaskMap { item, src: cap(1) };
    round_trip(map, 3, 1, Cut::Fails, TaskMsg::Map, d);
    let f = [
        Fpage::mem(0x4000, 12, MemRights::W),
        Fpage::obj(9, 0, CapRights::RWSD),
    ];
    let un = TaskUnmap {
        flags: UnmapFlags::DELETE_OBJ,
        fpages: Fpages::new(&f),
    };
    round_trip(un, 4, 0, Cut::Differs, TaskMsg::Unmap, d);
    let many = TaskUnmap {
        flags: UnmapFlags::empty(),
        fpages: Fpages::new(&[Fpage::invalid(); 80]),
    };
    assert_eq!(many.fpages.as_slice().len(), UNMAP_MAX);
    round_trip(many, 63, 0, Cut::Differs, TaskMsg::Unmap, d);
    let info = TaskCapInfo {
        sel: (7 << 12) | 1,
        other: None,
    };
    round_trip(info, 2, 0, Cut::Fails, TaskMsg::CapInfo, d);
    let same = TaskCapInfo {
        sel: 3 << 12,
        other: Some(4 << 12),
    };
    round_trip(same, 3, 0, Cut::Differs, TaskMsg::CapInfo, d);
    let ku = TaskAddKuMem {
        fpage: Fpage::mem(0x8000, 12, MemRights::RW),
    };
    round_trip(ku, 2, 0, Cut::Fails, TaskMsg::AddKuMem, d);
}

#[test]
fn vm() {
    use crate::vcpu::shortcut;
    let d: ProtoDecode<VmMsg> = VmMsg::decode;
    let bell = VmShortcut {
        gpa: 0x3001_0050,
        kind: shortcut::DOORBELL,
        value: 0,
        irq: Some(cap(0x31)),
    };
    round_trip(bell, 4, 1, Cut::Differs, VmMsg::Shortcut, d);
    let constant = VmShortcut {
        gpa: 0x3001_0060,
        kind: shortcut::CONSTANT,
        value: 1,
        irq: None,
    };
    round_trip(constant, 4, 0, Cut::Fails, VmMsg::Shortcut, d);
    // The Vm's map is the Task protocol's: no Vm opcode of its own.
    let mut mr = [0; MR_COUNT];
    mr[0] = TaskOp::Map.code();
    assert!(matches!(
        VmMsg::decode(MsgTag::proto(Proto::Vm, 1, 0), &mr),
        Err(MsgError::UnknownOp { .. })
    ));
}

#[test]
fn thread() {
    use thread_control::*;
    let d: ProtoDecode<ThreadMsg> = ThreadMsg::decode;
    let c = ThreadControl {
        flags: ControlFlags::SET_PAGER | ControlFlags::SET_EXC_HANDLER | ControlFlags::BIND_TASK,
        pager: 3 << 12,
        exc_handler: 4 << 12,
        reserved: 0,
        flag_vals: ControlFlags::empty(),
        bind_utcb: 0x7ff0_0000_0400,
        bind_task: Some(cap(1)),
    };
    round_trip(c, 6, 1, Cut::Differs, ThreadMsg::Control, d);
    // The Fiasco layout: flags, pager, exception handler, a zero word,
    // the flag values, the UTCB address, then the task item.
    let mut mr = [0; MR_COUNT];
    c.encode(&mut mr);
    assert_eq!(mr[0], SET_PAGER | SET_EXC_HANDLER | BIND_TASK);
    assert_eq!((mr[1], mr[2]), (3 << 12, 4 << 12));
    assert_eq!((mr[4], mr[5]), (0, 0x7ff0_0000_0400));
    assert_eq!(mr[0] & !OPCODE_MASK, c.flags.bits());
    let item = SendItem::from_words([mr[6], mr[7]]);
    assert_eq!(CapArg::from_item(item), Ok(cap(1)));
    let alien = ThreadControl {
        flags: ControlFlags::ALIEN,
        flag_vals: ControlFlags::ALIEN,
        bind_task: None,
        ..c
    };
    round_trip(alien, 6, 0, Cut::Fails, ThreadMsg::Control, d);

    let ex = ThreadExRegs {
        flags: ExRegsFlags::CANCEL | ExRegsFlags::TRIGGER_EXCEPTION,
        pc: 0x1000,
        sp: crate::proto::ex_regs::UNCHANGED,
    };
    round_trip(ex, 3, 0, Cut::Fails, ThreadMsg::ExRegs, d);
    round_trip(ThreadSwitch {}, 1, 0, Cut::Fails, ThreadMsg::Switch, d);
    round_trip(ThreadStats {}, 1, 0, Cut::Fails, ThreadMsg::Stats, d);
    let del = ThreadRegisterDeleteIrq { irq: cap(0x21) };
    round_trip(del, 1, 1, Cut::Fails, ThreadMsg::RegisterDeleteIrq, d);
    let tp = ThreadArmTpidrUro { value: 0x1234 };
    round_trip(tp, 2, 0, Cut::Fails, ThreadMsg::ArmTpidrUro, d);
    let vc = ThreadVcpuControl {
        state: 0x7ff0_0000_f000,
        vm: Some(cap(0x22)),
    };
    round_trip(vc, 2, 1, Cut::Differs, ThreadMsg::VcpuControl, d);
    let off = ThreadVcpuControl { state: 0, vm: None };
    round_trip(off, 2, 0, Cut::Fails, ThreadMsg::VcpuControl, d);
    round_trip(
        ThreadVcpuResume {},
        1,
        0,
        Cut::Fails,
        ThreadMsg::VcpuResume,
        d,
    );
    // Operations without a layout here are unknown.
    let mut mr = [0; MR_COUNT];
    mr[0] = ThreadOp::ModifySender.code();
    let e = ThreadMsg::decode(MsgTag::proto(Proto::Thread, 1, 0), &mr);
    assert!(matches!(e, Err(MsgError::UnknownOp { mr0: 6, .. })));
    assert_eq!(Error::from(e.unwrap_err()), Error::NoSys);
}

#[test]
fn factory() {
    let d: ProtoDecode<FactoryMsg> = FactoryMsg::decode;
    let area = Fpage::mem(0x7ff0_0000_0000, 16, MemRights::RW);
    let task = FactoryTask {
        utcb_area: Varg(area),
    };
    round_trip(task, 3, 0, Cut::Fails, FactoryMsg::Task, d);
    let mut mr = [0; MR_COUNT];
    task.encode(&mut mr);
    assert_eq!(mr[0], (-11i64) as u64, "sign-extended protocol");
    round_trip(FactoryThread {}, 1, 0, Cut::Fails, FactoryMsg::Thread, d);
    let fac = FactoryFactory { quota: Varg(65536) };
    round_trip(fac, 3, 0, Cut::Fails, FactoryMsg::Factory, d);
    let gate = FactoryIpcGate {
        label: Some(Varg(0x1230)),
        thread: Some(cap(0x55)),
    };
    round_trip(gate, 3, 1, Cut::Differs, FactoryMsg::IpcGate, d);
    let plain = FactoryIpcGate {
        label: None,
        thread: None,
    };
    round_trip(plain, 1, 0, Cut::Fails, FactoryMsg::IpcGate, d);
    round_trip(FactoryIrq {}, 1, 0, Cut::Fails, FactoryMsg::Irq, d);
    round_trip(
        FactorySemaphore {},
        1,
        0,
        Cut::Fails,
        FactoryMsg::Semaphore,
        d,
    );
    round_trip(FactoryVm {}, 1, 0, Cut::Fails, FactoryMsg::Vm, d);
    round_trip(FactorySigma0 {}, 1, 0, Cut::Fails, FactoryMsg::Sigma0, d);

    // A varg of the wrong type, and MR0 compared as a whole word.
    let mut mr = [0; MR_COUNT];
    let tag = fac.encode(&mut mr);
    mr[1] = varg::header(varg::MWORD, 8);
    assert_eq!(
        FactoryMsg::decode(tag, &mr),
        Err(MsgError::Malformed {
            op: "FactoryMsg::Factory",
            field: "quota"
        })
    );
    mr[0] = FactoryOp::Task.code() & OPCODE_MASK;
    assert!(matches!(
        FactoryMsg::decode(tag, &mr),
        Err(MsgError::UnknownOp { .. })
    ));
}

#[test]
fn irq_icu() {
    let d: ProtoDecode<IrqMsg> = IrqMsg::decode;
    round_trip(IrqTrigger {}, 1, 0, Cut::Fails, IrqMsg::Trigger, d);
    round_trip(IrqUnmask {}, 1, 0, Cut::Fails, IrqMsg::Unmask, d);
    let d: ProtoDecode<IrqSenderMsg> = IrqSenderMsg::decode;
    let at = IrqAttach {
        label: 9,
        thread: cap(3),
    };
    round_trip(at, 2, 1, Cut::Fails, IrqSenderMsg::Attach, d);
    round_trip(IrqDetach {}, 1, 0, Cut::Fails, IrqSenderMsg::Detach, d);
    let bv = IrqBindVcpu {
        irq: crate::vcpu::VirqSpec {
            intid: 40,
            priority: 0xa0,
        },
        thread: cap(0x23),
    };
    round_trip(bv, 2, 1, Cut::Fails, IrqSenderMsg::BindVcpu, d);
    // An interrupt number beyond the SPIs is malformed.
    let mut mr = [0; MR_COUNT];
    let tag = bv.encode(&mut mr);
    mr[1] = 1020;
    assert!(matches!(
        IrqSenderMsg::decode(tag, &mr),
        Err(MsgError::Malformed { field: "irq", .. })
    ));

    let d: ProtoDecode<IcuMsg> = IcuMsg::decode;
    let bind = IcuBind {
        irq: 34,
        irq_cap: cap(0x77),
    };
    round_trip(bind, 2, 1, Cut::Fails, IcuMsg::Bind, d);
    let unbind = IcuUnbind {
        irq: 34,
        irq_cap: cap(0x77),
    };
    round_trip(unbind, 2, 1, Cut::Fails, IcuMsg::Unbind, d);
    round_trip(IcuInfo {}, 1, 0, Cut::Fails, IcuMsg::Info, d);
    let msi = IcuMsiInfo { msi: 2, source: 7 };
    round_trip(msi, 3, 0, Cut::Fails, IcuMsg::MsiInfo, d);
    round_trip(IcuUnmask { irq: 34 }, 2, 0, Cut::Fails, IcuMsg::Unmask, d);
    round_trip(IcuMask { irq: 34 }, 2, 0, Cut::Fails, IcuMsg::Mask, d);
    let mode = IcuSetMode { irq: 34, mode: 3 };
    round_trip(mode, 3, 0, Cut::Fails, IcuMsg::SetMode, d);
}

#[test]
fn scheduler_vcon_semaphore_sigma0() {
    let d: ProtoDecode<SchedulerMsg> = SchedulerMsg::decode;
    round_trip(
        SchedInfo {
            gran_offset: (1 << 24) | 4,
        },
        2,
        0,
        Cut::Fails,
        SchedulerMsg::Info,
        d,
    );
    let cpus = SchedCpuSet::from_words(0, 0b10);
    let run = SchedRunThread {
        cpus,
        prio: 100,
        quantum_us: 5000,
        thread: cap(0x88),
    };
    round_trip(run, 5, 1, Cut::Fails, SchedulerMsg::RunThread, d);
    let idle = SchedIdleTime { cpus };
    round_trip(idle, 3, 0, Cut::Fails, SchedulerMsg::IdleTime, d);

    let d: ProtoDecode<VconMsg> = VconMsg::decode;
    let hello = VconWrite {
        bytes: Bytes::new(b"hello, world\n"),
    };
    round_trip(hello, 4, 0, Cut::Fails, VconMsg::Write, d);
    let long = VconWrite {
        bytes: Bytes::new(&[b'x'; 1000]),
    };
    assert_eq!(long.bytes.as_slice().len(), vcon::WRITE_MAX);
    round_trip(long, 63, 0, Cut::Fails, VconMsg::Write, d);
    round_trip(VconRead { max: 100 }, 2, 0, Cut::Fails, VconMsg::Read, d);
    let attr = VconSetAttr {
        iflags: 1,
        oflags: 2,
        lflags: 3,
    };
    round_trip(attr, 4, 0, Cut::Fails, VconMsg::SetAttr, d);
    round_trip(VconGetAttr {}, 1, 0, Cut::Fails, VconMsg::GetAttr, d);
    // A count beyond the limit is malformed.
    let mut mr = [0; MR_COUNT];
    let tag = hello.encode(&mut mr);
    mr[1] = vcon::WRITE_MAX as u64 + 1;
    assert!(matches!(
        VconMsg::decode(tag.with_counts(63, 0), &mr),
        Err(MsgError::Malformed { field: "bytes", .. })
    ));

    let d: ProtoDecode<SemaphoreMsg> = SemaphoreMsg::decode;
    let down = SemaphoreDown {
        timeout: Timeout::from_us(10_000),
    };
    round_trip(down, 2, 0, Cut::Fails, SemaphoreMsg::Down, d);
    let mut mr = [0; MR_COUNT];
    down.encode(&mut mr);
    assert_eq!(Timeouts::from_reg(mr[1]).send(), Timeout::NEVER);

    let d: ProtoDecode<Sigma0Msg> = Sigma0Msg::decode;
    let free = Sigma0MapFree { order: 12 };
    round_trip(free, 2, 0, Cut::Fails, Sigma0Msg::MapFree, d);
    let dev = Sigma0MapDevice {
        pa: 0x0901_0000,
        order: 12,
    };
    round_trip(dev, 3, 0, Cut::Fails, Sigma0Msg::MapDevice, d);
    let module = Sigma0MapModule {
        pa: 0x4010_0000,
        size: 0x3000,
    };
    round_trip(module, 3, 0, Cut::Fails, Sigma0Msg::MapModule, d);
    let mut mr = [0; MR_COUNT];
    module.encode(&mut mr);
    assert_eq!(mr[..3], [sigma0::MAP_MODULE, 0x4010_0000, 0x3000]);
}

#[test]
fn protocol_enums_refuse() {
    let mut mr = [0; MR_COUNT];
    // No words at all.
    assert!(matches!(
        TaskMsg::decode(MsgTag::proto(Proto::Task, 0, 0), &mr),
        Err(MsgError::Short {
            field: "opcode",
            ..
        })
    ));
    // An unknown opcode.
    mr[0] = 9;
    assert_eq!(
        TaskMsg::decode(MsgTag::proto(Proto::Task, 1, 0), &mr),
        Err(MsgError::UnknownOp {
            op: "TaskMsg",
            mr0: 9
        })
    );
    // A typed item that is no capability.
    let tag = IcuBind {
        irq: 40,
        irq_cap: cap(5),
    }
    .encode(&mut mr);
    let mem = SendItem::map(Fpage::mem(0x1000, 12, MemRights::RW), 0).to_words();
    mr[2..4].copy_from_slice(&mem);
    assert_eq!(
        IcuMsg::decode(tag, &mr),
        Err(MsgError::Malformed {
            op: "IcuMsg::Bind",
            field: "irq_cap"
        })
    );
    // Flags above the opcode stay with the operations that have them.
    mr[0] = IcuOp::Mask.code() | 0x1_0000;
    mr[1] = 40;
    assert_eq!(
        IcuMsg::decode(MsgTag::proto(Proto::Irq, 2, 0), &mr),
        Ok(IcuMsg::Mask(IcuMask { irq: 40 }))
    );
    // Messages name what was wrong.
    let e = MsgError::Short {
        op: "TaskMsg::Map",
        field: "item",
    };
    assert_eq!(
        std::format!("{e}"),
        "TaskMsg::Map: message ends before `item`"
    );
}

#[test]
fn cap_arg_rights() {
    let a = CapArg::new(0x12, CapRights::RW | CapRights::C);
    assert_eq!(CapArg::from_item(a.item()), Ok(a));
    // Only a map item of one capability is a capability argument.
    let two = SendItem::caps(0x12, 1, CapRights::RW, 0);
    assert_eq!(CapArg::from_item(two), Err(Error::Inval));
    let void = SendItem::from_words([0, a.item().fpage.0]);
    assert_eq!(CapArg::from_item(void), Err(Error::Inval));
    assert_eq!(
        a.restricts(),
        CapRights::RW | CapRights(CapRights::CTL_MASK)
    );
}

fn reply_round_trip<R: Reply + PartialEq + Debug + Copy>(r: R, words: usize) {
    let mut mr = [0; MR_COUNT];
    assert_eq!(r.encode(&mut mr), words);
    assert_eq!(R::decode(words, &mr), Ok(r));
    for w in 0..words {
        assert!(matches!(R::decode(w, &mr), Err(MsgError::Short { .. })));
    }
}

#[test]
fn replies() {
    reply_round_trip(GateInfo { label: 0x50 }, 1);
    reply_round_trip(
        ExRegsReply {
            pstate: 0x3c0,
            pc: 0x2000,
            sp: 0x3000,
        },
        3,
    );
    reply_round_trip(ThreadStatsReply { time_us: 17 }, 1);
    reply_round_trip(
        FactoryTaskReply {
            utcb_area: Fpage::mem(0x7ff0_0000_0000, 16, MemRights::RW),
        },
        1,
    );
    reply_round_trip(
        IcuInfoReply {
            features: 0,
            nr_irqs: 288,
            nr_msis: 0,
        },
        3,
    );
    reply_round_trip(IcuMsiInfoReply { addr: 1, data: 2 }, 2);
    let info = SchedInfoReply {
        online: 0b1111,
        max_cpus: 4,
    };
    reply_round_trip(info, 2);
    assert_eq!(info.count(), 4);
    reply_round_trip(SchedIdleTimeReply { time_us: 5 }, 1);
    reply_round_trip(
        VconAttrReply {
            iflags: 1,
            oflags: 2,
            lflags: 3,
        },
        3,
    );
    reply_round_trip(Sigma0Reply { addr: 0x4000_0000 }, 1);
    let read = VconReadReply {
        status: vcon::READ_STAT_DONE,
        bytes: Bytes::new(b"abcdefghij"),
    };
    reply_round_trip(read, 3);
    let mut mr = [0; MR_COUNT];
    read.encode(&mut mr);
    assert_eq!(mr[0], 10 | vcon::READ_STAT_DONE);
    let full = VconReadReply {
        status: 0,
        bytes: Bytes::new(&[1; 1000]),
    };
    assert_eq!(full.encode(&mut mr), 63);
}

#[test]
fn debug_calls() {
    for c in [
        DebugCall::Puts {
            addr: 0x1000,
            len: 5,
        },
        DebugCall::Exit { code: -3 },
    ] {
        let [x8, x0, x1] = c.to_regs();
        assert_eq!(DebugCall::from_regs(x8, x0, x1), Ok(c));
    }
    assert!(DebugCall::from_regs(0x77, 0, 0).is_err());
}
