//! Irqs (bind, trigger, labels, attach/detach, unmask, refusals) and the
//! interrupt controller (info, modes, masks, refusals, a real hardware
//! interrupt from QEMU's PL031 real-time clock).

use l4::abi::proto::icu;
use l4::ipc;
use l4::{Cap, CapRights, Error, Irq, MsgTag, Proto, Timeouts, base};

use crate::fw::{Ctx, Fail, R};
use crate::mapping::{PL031, mmio_read, mmio_write};
use crate::rt::{self, Opts, Slot, WAIT_US, copy_cap, other_cpu};

tests! {
    "irq.trigger_delivers_label" => trigger,
    "irq.closed_receive_from_irq" => closed_receive,
    "irq.pending_until_received" => pending,
    "irq.open_wait_tells_irqs_apart" => two_irqs,
    "irq.to_thread_on_other_cpu" => to_other_cpu,
    "irq.attach_legacy" => attach,
    "irq.detach_stops_delivery" => detach,
    "irq.unmask" => unmask,
    "irq.bind_missing_w_right_perm" => bind_missing_w,
    "irq.bind_needs_s_on_thread" => bind_needs_s,
    "irq.deleted_irq_refused" => deleted,
    "icu.info" => icu_info,
    "icu.mode_mask_unmask" => icu_mode_mask,
    "icu.bind_needs_w_on_the_irq" => icu_missing_w,
    "icu.bind_bad_line_refused" => icu_bad_line,
    "icu.hardware_irq_pl031" => hardware_irq,
}

/// The PL031's interrupt (GIC INTID: SPI 2).
const PL031_IRQ: u64 = 34;

/// Waits (open) for an IRQ message within `us`; returns its label.
fn wait_irq(us: u64) -> Result<u64, Fail> {
    let (r, label) = ipc::ipc_wait(ipc::recv_timeout_us(us));
    irq_label(r.ctx("wait for the IRQ")?, label)
}

/// `label` if `tag` is that of an IRQ message.
fn irq_label(tag: MsgTag, label: u64) -> Result<u64, Fail> {
    ensure!(
        tag.is_irq(),
        "message with label {} is not an IRQ",
        tag.label()
    );
    Ok(label)
}

/// A new Irq bound to this thread with `label`.
fn bound_irq(label: u64) -> Result<Slot<Irq>, Fail> {
    let i = rt::irq()?;
    i.bind(base::THREAD, label).ctx("bind")?;
    Ok(i)
}

/// Triggering `i` (bound to this thread) sends an IRQ message with
/// `label` here.
fn trigger_arrives(i: &Cap<Irq>, label: u64) -> R {
    i.trigger().ctx("trigger")?;
    ensure_eq!(wait_irq(WAIT_US)?, label, "label");
    Ok(())
}

/// A triggered Irq sends an IRQ message with its label to the bound
/// thread.
fn trigger() -> R {
    let i = bound_irq(0x1110)?;
    trigger_arrives(&i, 0x1110)
}

/// A closed receive names the Irq to receive from.
fn closed_receive() -> R {
    let i = bound_irq(0x1130)?;
    i.trigger().ctx("trigger")?;
    let (tag, label) = i
        .ipc_receive(ipc::recv_timeout_us(WAIT_US))
        .ctx("receive from the irq")?;
    ensure_eq!(irq_label(tag, label)?, 0x1130, "label");
    Ok(())
}

/// An IRQ stays pending until its thread receives.
fn pending() -> R {
    let i = bound_irq(0x1120)?;
    i.trigger().ctx("trigger")?;
    let (r, label) = ipc::ipc_wait(Timeouts::RECV_ZERO);
    let tag = r.ctx("wait with timeout zero")?;
    ensure!(tag.is_irq(), "not an IRQ message");
    ensure_eq!(label, 0x1120, "label");
    Ok(())
}

/// Two Irqs bound to one thread are told apart by their labels.
fn two_irqs() -> R {
    let a = rt::irq()?;
    let b = rt::irq()?;
    a.bind(base::THREAD, 0x10).ctx("bind a")?;
    b.bind(base::THREAD, 0x20).ctx("bind b")?;
    a.trigger().ctx("trigger a")?;
    b.trigger().ctx("trigger b")?;
    let mut seen = 0;
    for _ in 0..2 {
        let (r, label) = ipc::ipc_wait(ipc::recv_timeout_us(WAIT_US));
        let tag = r.ctx("wait")?;
        ensure!(tag.is_irq(), "not an IRQ message");
        seen |= match label {
            0x10 => 1,
            0x20 => 2,
            l => fail!("unexpected label {l:#x}"),
        };
    }
    ensure_eq!(seen, 3, "labels seen (bit 0: a, bit 1: b)");
    Ok(())
}

/// An IRQ reaches a thread waiting on another CPU.
fn to_other_cpu() -> R {
    let w = rt::spawn(rt::wait_report_entry, 0, 0, &Opts::new().cpu(other_cpu(0)))?;
    let i = rt::irq()?;
    i.bind(w.cap(), 0x3330).ctx("bind")?;
    rt::sleep_us(10_000)?;
    i.trigger().ctx("trigger")?;
    let m = w.signal()?;
    ensure_eq!(m.word(0), 0, "waiter's status");
    ensure_eq!(m.word(1), 0x3330, "label");
    ensure_eq!(
        m.word(2) as i64,
        Proto::Irq as i64,
        "protocol of the message"
    );
    Ok(())
}

/// The legacy attach binds like bind.
fn attach() -> R {
    let i = rt::irq()?;
    i.attach(base::THREAD, 0x2220).ctx("attach")?;
    trigger_arrives(&i, 0x2220)
}

/// A detached Irq delivers nothing.
fn detach() -> R {
    let i = bound_irq(0x40)?;
    i.detach().ctx("detach")?;
    let _ = i.trigger();
    expect_err!(
        ipc::ipc_wait(ipc::recv_timeout_us(rt::QUIET_US)).0,
        Error::RecvTimeout,
        "wait after triggering a detached irq"
    );
    Ok(())
}

/// Unmask (end of interrupt) on a bound Irq.
fn unmask() -> R {
    let i = bound_irq(0x50)?;
    i.unmask().ctx("unmask")
}

/// Binding needs `W` on the Irq.
fn bind_missing_w() -> R {
    let i = rt::irq()?;
    let c = copy_cap(i.cap(), CapRights::RO)?;
    expect_err!(c.bind(base::THREAD, 1), Error::Perm, "bind without W");
    Ok(())
}

/// Binding needs `S` on the thread.
fn bind_needs_s() -> R {
    let i = rt::irq()?;
    expect_err!(
        i.bind_with_rights(base::THREAD, 1, CapRights::RW),
        Error::Perm,
        "bind offering RW on the thread"
    );
    Ok(())
}

/// A deleted Irq's capability is invalid.
fn deleted() -> R {
    let i = bound_irq(0x60)?;
    base::TASK.delete_cap(i.idx()).ctx("delete")?;
    expect_err!(i.trigger(), Error::NoPartner, "trigger a deleted irq");
    Ok(())
}

/// The controller reports its lines (the PL031's among them).
fn icu_info() -> R {
    let info = base::ICU.info().ctx("icu info")?;
    ensure!(
        info.nr_irqs > PL031_IRQ,
        "{} lines: the PL031's line {PL031_IRQ} is missing",
        info.nr_irqs
    );
    Ok(())
}

/// Mode, mask and unmask of a line with an Irq bound.
fn icu_mode_mask() -> R {
    let i = rt::irq()?;
    base::ICU.bind(PL031_IRQ, i.cap()).ctx("bind")?;
    let r = (|| -> R {
        base::ICU
            .set_mode(PL031_IRQ, icu::mode::LEVEL_HIGH)
            .ctx("set_mode")?;
        base::ICU.mask(PL031_IRQ).ctx("mask")?;
        base::ICU.unmask(PL031_IRQ).ctx("unmask")?;
        base::ICU.mask(PL031_IRQ).ctx("mask again")
    })();
    let u = base::ICU.unbind(PL031_IRQ, i.cap()).ctx("unbind");
    r.and(u)
}

/// Binding a line needs `W` on the Irq, not on the controller (as in
/// Fiasco: ned hands the Icu on read-only).
fn icu_missing_w() -> R {
    let i = rt::irq()?;
    let ro_irq = copy_cap(i.cap(), CapRights::RO)?;
    expect_err!(
        base::ICU.bind(PL031_IRQ, ro_irq.cap()),
        Error::Perm,
        "bind of an Irq without W"
    );
    let ro_icu = copy_cap(base::ICU, CapRights::RO)?;
    ro_icu
        .bind(PL031_IRQ, i.cap())
        .ctx("bind through a read-only Icu")?;
    ro_icu.unbind(PL031_IRQ, i.cap()).ctx("unbind")
}

/// Lines the controller does not have are refused.
fn icu_bad_line() -> R {
    let info = base::ICU.info().ctx("icu info")?;
    let i = rt::irq()?;
    for line in [info.nr_irqs, 0xffff_fff0] {
        if base::ICU.bind(line, i.cap()).is_ok() {
            let _ = base::ICU.unbind(line, i.cap());
            fail!("line {line:#x} ({} lines) was bound", info.nr_irqs);
        }
    }
    Ok(())
}

/// A real device interrupt: the PL031's match register fires within a
/// second, the Irq bound to its line delivers it.
fn hardware_irq() -> R {
    let base_va = base::PAGER.map_device(PL031, 12).ctx("map the PL031")?;
    ensure_eq!(base_va, PL031, "device address");
    let i = rt::irq()?;
    i.bind(base::THREAD, 0x3400).ctx("bind the irq")?;
    base::ICU.bind(PL031_IRQ, i.cap()).ctx("bind the line")?;
    let r = (|| -> R {
        let _ = base::ICU.set_mode(PL031_IRQ, icu::mode::LEVEL_HIGH);
        base::ICU.unmask(PL031_IRQ).ctx("unmask the line")?;
        i.unmask().ctx("unmask the irq")?;
        // RTCICR: clear; RTCMR: match one second ahead; RTCIMSC: enable.
        mmio_write(PL031 + 0x1c, 1);
        let now = mmio_read(PL031);
        mmio_write(PL031 + 0x04, now.wrapping_add(1));
        mmio_write(PL031 + 0x10, 1);
        let label = wait_irq(WAIT_US);
        ensure_eq!(label?, 0x3400, "label of the RTC interrupt");
        Ok(())
    })();
    mmio_write(PL031 + 0x10, 0);
    mmio_write(PL031 + 0x1c, 1);
    let _ = i.unmask();
    let u = base::ICU.unbind(PL031_IRQ, i.cap()).ctx("unbind the line");
    r.and(u)
}
