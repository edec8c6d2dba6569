//! IPC: calls, replies, sends and receives between threads and through
//! gates; labels; typed items (capabilities, memory: map and grant);
//! message cuts; cancellation.

use l4::abi::proto::ex_regs;
use l4::ipc::{self, ipc_call};
use l4::{CapRights, Error, Fpage, MemRights, MsgTag, RecvItem, SendItem, Timeouts, base, utcb};

use crate::fw::{Ctx, R};
use crate::rt::{
    self, Opts, Page, SIG, Space, WAIT_US, copy_cap, expect_fault, fresh_va, marker, valid,
};

tests! {
    "ipc.call_thread" => call_thread,
    "ipc.call_63_words" => words_63,
    "ipc.reply_and_wait_serves_many" => serves_many,
    "ipc.undeliverable_reply_ends_the_call" => undeliverable_reply,
    "ipc.undeliverable_message_fails_both_sides" => undeliverable_message,
    "ipc.send_and_closed_receive" => send_and_receive,
    "ipc.gate_call_carries_label" => gate_label,
    "ipc.gate_label_carries_sender_rights" => gate_label_rights,
    "ipc.gate_bind_and_get_info" => gate_bind,
    "ipc.gate_without_c_right" => gate_without_c,
    "ipc.bind_needs_s_on_thread" => bind_needs_s,
    "ipc.unbound_gate_refused" => unbound_gate,
    "ipc.open_wait_sees_gate_labels" => open_wait_labels,
    "ipc.closed_receive_picks_sender" => closed_receive,
    "ipc.cancel_blocked_receive" => cancel,
    "ipc.deferred_reply_by_send" => deferred_reply,
    "ipc.capability_item" => capability_item,
    "ipc.capability_grant" => capability_grant,
    "ipc.item_without_receive_buffer_cut" => no_receive_buffer,
    "ipc.items_beyond_registers_cut" => beyond_registers,
    "ipc.memory_item_into_window" => memory_item,
    "ipc.memory_grant" => memory_grant,
    "ipc.unowned_memory_maps_nothing" => unowned_memory,
}

/// Both phases limited to the usual wait.
fn t() -> Timeouts {
    ipc::timeouts_us(WAIT_US)
}

/// A call to a thread is answered by its reply.
fn call_thread() -> R {
    let w = rt::spawn_default(rt::echo_entry, 0, 0)?;
    let m = ipc::call_words(w.cap().sel(), 0, &[41], t()).ctx("call")?;
    ensure_eq!(m.tag.words(), 1, "reply words");
    ensure_eq!(m.word(0), 42, "reply word");
    Ok(())
}

/// All 63 untyped words travel both ways.
fn words_63() -> R {
    let w = rt::spawn_default(rt::echo_entry, 0, 0)?;
    let mut words = [0u64; 63];
    for (i, x) in words.iter_mut().enumerate() {
        *x = 0x1000 * i as u64 + 7;
    }
    let m = ipc::call_words(w.cap().sel(), 0, &words, t()).ctx("call")?;
    ensure_eq!(m.tag.words(), 63, "reply words");
    for (i, x) in words.iter().enumerate() {
        ensure!(
            m.word(i) == x + 1,
            "word {i}: {:#x}, expected {:#x}",
            m.word(i),
            x + 1
        );
    }
    Ok(())
}

/// A server loop in reply-and-wait answers one call after another.
fn serves_many() -> R {
    let w = rt::spawn_default(rt::echo_entry, 0, 0)?;
    for i in 0..50u64 {
        let m = ipc::call_words(w.cap().sel(), 0, &[i * 3], t()).ctx("call")?;
        ensure!(m.word(0) == i * 3 + 1, "call {i}: reply {}", m.word(0));
    }
    Ok(())
}

/// A send reaches a thread in a closed receive on the sender.
fn send_and_receive() -> R {
    let w = rt::spawn_default(rt::delayed_receive_entry, 0, 0)?;
    ipc::send_words(w.cap().sel(), 0, &[7, 8], t()).ctx("send")?;
    let m = w.signal()?;
    ensure_eq!(m.word(0), 0, "receiver's status");
    ensure_eq!(m.word(1), 2, "words received");
    ensure_eq!(m.word(2), 7, "first word received");
    Ok(())
}

/// The server sees the label of the gate a call came through (the echo
/// server replies with it as its label).
fn gate_label() -> R {
    let w = rt::spawn_default(rt::echo_entry, 0, 0)?;
    let g = rt::gate(0x1230, Some(w.cap()))?;
    let m = ipc::call_words(g.sel(), 0, &[1], t()).ctx("call the gate")?;
    ensure_eq!(m.word(0), 2, "reply word");
    // The caller's W and S rights arrive in the label's low bits.
    ensure_eq!(m.proto(), 0x1230 | 3, "label the server saw");
    Ok(())
}

/// The server learns the W and S rights of the capability each call came
/// through, in the label's low two bits (as with Fiasco); R alone gives
/// none.
fn gate_label_rights() -> R {
    let w = rt::spawn_default(rt::echo_entry, 0, 0)?;
    let g = rt::gate(0x1240, Some(w.cap()))?;
    for (rights, bits) in [
        (CapRights::R, 0),
        (CapRights::RW, 1),
        (CapRights::RS, 2),
        (CapRights::RWS, 3),
    ] {
        let c = copy_cap(g.cap(), rights)?;
        let m = ipc::call_words(c.sel(), 0, &[1], t()).ctx("call the gate")?;
        ensure_eq!(
            m.proto(),
            0x1240 | bits,
            "label through a capability with {rights:?}"
        );
    }
    Ok(())
}

/// A gate created unbound can be bound later; get_info reads the label.
fn gate_bind() -> R {
    let w = rt::spawn_default(rt::echo_entry, 0, 0)?;
    let g = rt::gate(0, None)?;
    g.bind(w.cap(), 0x7770).ctx("bind")?;
    ensure_eq!(g.get_info().ctx("get_info")?, 0x7770, "label after bind");
    let m = ipc::call_words(g.sel(), 0, &[1], t()).ctx("call the gate")?;
    ensure_eq!(m.proto(), 0x7770 | 3, "label the server saw");
    Ok(())
}

/// Without `C` a gate capability can call but neither bind nor read the
/// label: the kernel refuses with `Perm`, or (Fiasco's way) passes the
/// message on to the server like any other; either way the caller learns
/// nothing and the binding stays.
fn gate_without_c() -> R {
    let w = rt::spawn_default(rt::echo_entry, 0, 0)?;
    let g = rt::gate(0x800, Some(w.cap()))?;
    let c = copy_cap(g.cap(), CapRights::RWS)?;
    if let Ok(0x800) = c.get_info() {
        fail!("get_info without C revealed the label");
    }
    let _ = c.bind(w.cap(), 0x900);
    let m = ipc::call_words(c.sel(), 0, &[1], t()).ctx("call without C")?;
    ensure_eq!(m.proto(), 0x800 | 3, "label after a bind without C");
    ensure_eq!(
        g.get_info().ctx("get_info with C")?,
        0x800,
        "label read with C"
    );
    Ok(())
}

/// Binding needs `S` on the thread: offering less, or holding less, is
/// refused.
fn bind_needs_s() -> R {
    let w = rt::spawn_default(rt::park_entry, 0, 0)?;
    let g = rt::gate(0, None)?;
    expect_err!(
        g.bind_with_rights(w.cap(), 0x10, CapRights::RW),
        Error::Perm,
        "bind offering RW on the thread"
    );
    let t = copy_cap(w.cap(), CapRights::RW)?;
    expect_err!(
        g.bind(t.cap(), 0x10),
        Error::Perm,
        "bind with a thread capability without S"
    );
    Ok(())
}

/// Nobody receives through an unbound gate.
fn unbound_gate() -> R {
    let g = rt::gate(0x10, None)?;
    utcb::set_mr(0, 1);
    let r = ipc_call(
        g.sel(),
        MsgTag::new(0, 1, 0, 0),
        ipc::timeouts_us(rt::QUIET_US),
    )
    .0;
    match r {
        Err(Error::NoPartner) | Err(Error::SendTimeout) => Ok(()),
        Err(e) => fail!("call through an unbound gate: {e:?}, expected NoPartner or SendTimeout"),
        Ok(_) => fail!("call through an unbound gate succeeded"),
    }
}

/// An open wait tells gates apart by their labels.
fn open_wait_labels() -> R {
    let g1 = rt::gate(0x10, Some(base::THREAD))?;
    let g2 = rt::gate(0x20, Some(base::THREAD))?;
    let _w1 = rt::spawn_default(rt::send_via_entry, g1.idx(), 1)?;
    let _w2 = rt::spawn_default(rt::send_via_entry, g2.idx(), 2)?;
    let mut seen = [false; 2];
    for _ in 0..2 {
        let m = ipc::wait_msg(ipc::recv_timeout_us(WAIT_US)).ctx("open wait")?;
        match (m.label, m.word(0)) {
            // The senders' W and S rights come in the low bits.
            (0x13, 1) => seen[0] = true,
            (0x23, 2) => seen[1] = true,
            (l, v) => fail!("label {l:#x} with word {v} (expected 0x13/1 and 0x23/2)"),
        }
    }
    ensure!(seen == [true, true], "a sender came twice: {seen:?}");
    Ok(())
}

/// A closed receive takes the named sender's message even when another
/// sender queued first.
fn closed_receive() -> R {
    let a = rt::spawn_default(rt::signal_args_entry, 0xa, 0)?;
    rt::sleep_us(10_000)?;
    let b = rt::spawn_default(rt::signal_args_entry, 0xb, 0)?;
    rt::sleep_us(10_000)?;
    ensure_eq!(b.signal()?.word(0), 0xb, "message received from b");
    ensure_eq!(a.signal()?.word(0), 0xa, "message received from a");
    Ok(())
}

/// ex_regs with `CANCEL` ends a blocked receive with `RecvCanceled`.
fn cancel() -> R {
    let w = rt::spawn_default(rt::wait_report_entry, 0, 0)?;
    // Cancel until the report comes (the first cancel may come before the
    // worker waits, and then does nothing).
    for _ in 0..20 {
        rt::sleep_us(10_000)?;
        w.cap()
            .ex_regs(ex_regs::UNCHANGED, ex_regs::UNCHANGED, ex_regs::CANCEL)
            .ctx("ex_regs cancel")?;
        match w.recv(100_000) {
            Ok(m) => {
                ensure_eq!(m.proto(), SIG, "label of the report");
                ensure_eq!(
                    m.word(0),
                    Error::RecvCanceled.code() as u64,
                    "status of the canceled wait"
                );
                return Ok(());
            }
            Err(Error::RecvTimeout) => continue,
            Err(e) => fail!("receive the report: {e:?}"),
        }
    }
    fail!("the canceled wait never ended");
}

/// A capability item lands in the receiver's single-capability slot.
fn capability_item() -> R {
    let dst = rt::Slot::<l4::Vcon>::empty()?;
    let w = rt::spawn_default(send_cap_entry, base::LOG.index(), CapRights::RW.0 as u64)?;
    // After the spawn: factory calls replace the receive items.
    utcb::set_recv_items(&[RecvItem::SmallCap { index: dst.idx() }]);
    let m = w.recv(WAIT_US);
    utcb::clear_recv_items();
    let m = m.ctx("receive the item")?;
    ensure_eq!(m.proto(), SIG, "label");
    ensure_eq!(m.tag.items(), 1, "items received");
    ensure!(valid(dst.idx())?, "no capability in the receive slot");
    ensure!(
        base::TASK
            .cap_equal(dst.idx(), base::LOG.index())
            .ctx("cap_equal")?,
        "received capability is not LOG"
    );
    dst.write(b"").ctx("use the received capability")
}

/// Receives a call, waits 10 ms, then answers it with a plain send to the
/// caller's thread capability (`caller`): MR0 + 1.
extern "C" fn deferred_reply_entry(caller: u64, _: u64) {
    utcb::clear_recv_items();
    if ipc::ipc_wait(Timeouts::NEVER).0.is_err() {
        return;
    }
    let v = utcb::mr(0);
    let _ = ipc::sleep(l4::Timeout::from_us(10_000));
    let _ = ipc::send_words(l4::abi::Cap::new(caller), 0, &[v + 1], Timeouts::NEVER);
}

/// A callee may answer later with a plain send to the caller's thread
/// capability: the caller gets it as the reply.
fn deferred_reply() -> R {
    let w = rt::spawn_default(deferred_reply_entry, rt::PARENT, 0)?;
    let m = ipc::call_words(w.cap().sel(), 0, &[5], t()).ctx("call")?;
    ensure_eq!(m.word(0), 6, "deferred reply word");
    Ok(())
}

/// Grants capability `idx` to the main thread.
extern "C" fn grant_cap_entry(idx: u64, _: u64) {
    let item = SendItem::grant(Fpage::obj(idx, 0, CapRights::RW), 0);
    utcb::set_mrs(&item.to_words());
    let _ = ipc::ipc_send(
        l4::abi::Cap::new(rt::PARENT),
        MsgTag::new(SIG, 0, 1, 0),
        Timeouts::NEVER,
    );
}

/// A granted capability moves: the receiver has it, the sender's slot is
/// empty.
fn capability_grant() -> R {
    let k = copy_cap(base::LOG, CapRights::RW)?;
    let dst = rt::Slot::<l4::Vcon>::empty()?;
    let w = rt::spawn_default(grant_cap_entry, k.idx(), 0)?;
    utcb::set_recv_items(&[RecvItem::SmallCap { index: dst.idx() }]);
    let m = w.recv(WAIT_US);
    utcb::clear_recv_items();
    let m = m.ctx("receive the grant")?;
    ensure_eq!(m.tag.items(), 1, "items received");
    ensure!(valid(dst.idx())?, "no capability in the receive slot");
    ensure!(!valid(k.idx())?, "the sender kept the granted capability");
    Ok(())
}

/// An item with no receive buffer for it cuts the message.
fn no_receive_buffer() -> R {
    let w = rt::spawn_default(rt::echo_entry, 0, 0)?;
    let item = SendItem::caps(base::LOG.index(), 0, CapRights::RW, 0);
    utcb::set_mrs(&item.to_words());
    expect_err!(
        ipc_call(w.cap().sel(), MsgTag::new(0, 0, 1, 0), t()).0,
        Error::SendMsgCut,
        "send an item to a thread without receive items"
    );
    Ok(())
}

/// Items that do not fit in the 64 message registers cut the message.
fn beyond_registers() -> R {
    let w = rt::spawn_default(rt::echo_entry, 0, 0)?;
    let item = SendItem::caps(base::LOG.index(), 0, CapRights::RW, 0);
    utcb::set_mr(62, item.to_words()[0]);
    utcb::set_mr(63, item.to_words()[1]);
    expect_err!(
        ipc_call(w.cap().sel(), MsgTag::new(0, 63, 1, 0), t()).0,
        Error::SendMsgCut,
        "63 words and an item"
    );
    Ok(())
}

/// Sends a memory item for the page at `va` (grant if `grant` != 0) to the
/// main thread.
extern "C" fn send_mem_entry(va: u64, grant: u64) {
    let fp = Fpage::mem(va, 12, MemRights::RW);
    let item = if grant != 0 {
        SendItem::grant(fp, 0)
    } else {
        SendItem::map(fp, 0)
    };
    utcb::set_mrs(&item.to_words());
    let _ = ipc::ipc_send(
        l4::abi::Cap::new(rt::PARENT),
        MsgTag::new(SIG, 0, 1, 0),
        Timeouts::NEVER,
    );
}

/// Sends a capability item (index, rights) to the main thread.
extern "C" fn send_cap_entry(idx: u64, rights: u64) {
    let item = SendItem::caps(idx, 0, CapRights(rights as u8), 0);
    utcb::set_mrs(&item.to_words());
    let _ = ipc::ipc_send(
        l4::abi::Cap::new(rt::PARENT),
        MsgTag::new(SIG, 0, 1, 0),
        Timeouts::NEVER,
    );
}

/// Runs a thread in another task that sends its page at `x` to the main
/// thread, which receives it into a window at a fresh address; returns
/// the space, the page and the window address.
fn memory_transfer(grant: bool, n: u64) -> Result<(Space, Page, u64, u64), crate::fw::Fail> {
    let s = Space::new()?;
    let p = Page::with_marker(marker(n))?;
    let x = fresh_va();
    s.map_page(&p, x, MemRights::RW)?;
    let y = fresh_va();
    let w = rt::spawn(send_mem_entry, x, grant as u64, &Opts::new().space(&s))?;
    // After the spawn: factory calls replace the receive items.
    utcb::set_recv_items(&[RecvItem::Window(Fpage::mem(y, 12, MemRights::RWX))]);
    let m = w.recv(WAIT_US);
    utcb::clear_recv_items();
    let m = m.ctx("receive the memory item")?;
    ensure_eq!(m.proto(), SIG, "label");
    ensure_eq!(m.tag.items(), 1, "items received");
    Ok((s, p, x, y))
}

/// A memory item maps the sender's page into the receive window.
fn memory_item() -> R {
    let (s, _p, x, y) = memory_transfer(false, 0x101)?;
    rt::expect_marker(None, y, 0x101, "window after the map")?;
    rt::expect_marker(Some(&s), x, 0x101, "sender after the map")
}

/// A grant moves the page: the sender no longer has it.
fn memory_grant() -> R {
    let (s, _p, x, y) = memory_transfer(true, 0x102)?;
    rt::expect_marker(None, y, 0x102, "window after the grant")?;
    expect_fault(rt::probe_read(Some(&s), x)?, "sender after the grant").map(|_| ())
}

/// An item naming memory the sender does not have maps nothing.
fn unowned_memory() -> R {
    let z = fresh_va();
    let y = fresh_va();
    let w = rt::spawn_default(send_mem_entry, z, 0)?;
    utcb::set_recv_items(&[RecvItem::Window(Fpage::mem(y, 12, MemRights::RWX))]);
    let _ = w.recv(WAIT_US);
    utcb::clear_recv_items();
    expect_fault(
        rt::probe_read(None, y)?,
        "window after mapping unowned memory",
    )
    .map(|_| ())
}

/// Puts one memory item (the page at `page`, read-write) into the message
/// registers; returns the tag of such a message.
fn one_map_item(page: u64) -> MsgTag {
    let w = SendItem::map(Fpage::mem(page, 12, MemRights::RW), 0).to_words();
    utcb::set_mr(0, w[0]);
    utcb::set_mr(1, w[1]);
    MsgTag::new(0, 0, 1, 0)
}

/// Records a worker's status in `COUNTERS[i]`: 1 for success, else the
/// error code.
fn record_status(i: usize, r: Result<(), Error>) {
    let status = match r {
        Ok(()) => 1,
        Err(e) => e.code() as u64,
    };
    rt::COUNTERS[i].store(status, core::sync::atomic::Ordering::Relaxed);
}

/// Waits for a worker's status in `COUNTERS[i]` and fails if it says the
/// operation succeeded.
fn expect_worker_failed(i: usize, what: &str) -> R {
    let status = loop {
        let s = rt::counter(i);
        if s != 0 {
            break s;
        }
        rt::sleep_us(1000)?;
    };
    ensure!(status != 1, "{what} counted as delivered");
    Ok(())
}

/// A server that answers its first call with a memory item and records its
/// status for the reply in `COUNTERS[0]`.
extern "C" fn map_replier(page: u64, _: u64) {
    utcb::clear_recv_items();
    let _ = ipc::ipc_wait(Timeouts::NEVER);
    let tag = one_map_item(page);
    record_status(0, ipc::reply(tag));
    loop {
        let _ = ipc::ipc_wait(Timeouts::NEVER);
    }
}

/// A reply the caller cannot take (an item, no receive window) ends the
/// call with the receive-side error at once, and the server learns that
/// its reply failed; the caller is not left waiting.
fn undeliverable_reply() -> R {
    let p = Page::with_marker(marker(0x10a))?;
    let w = rt::spawn_default(map_replier, p.addr(), 0)?;
    utcb::clear_recv_items();
    let t = ipc::timeouts_us(WAIT_US);
    match ipc_call(w.cap().sel(), MsgTag::new(0, 0, 0, 0), t).0 {
        Err(Error::RecvMsgCut | Error::RecvMapFailed) => {}
        other => fail!("call answered with an undeliverable item: {other:?}"),
    }
    expect_worker_failed(0, "the server's reply")
}

/// Sends the main thread a memory item with a send that waits; records its
/// status in `COUNTERS[1]`.
extern "C" fn map_sender(page: u64, _: u64) {
    let tag = one_map_item(page);
    let r = ipc::ipc_send(base::THREAD.sel(), tag, Timeouts::NEVER).0;
    record_status(1, r.map(|_| ()));
}

/// A queued message the receiver cannot take (an item, no receive window)
/// fails for both: the sender with the send-side error, the receiver with
/// the receive-side one.
fn undeliverable_message() -> R {
    let p = Page::with_marker(marker(0x10b))?;
    let _w = rt::spawn_default(map_sender, p.addr(), 0)?;
    // Let the sender queue up at the main thread.
    rt::sleep_us(20_000)?;
    utcb::clear_recv_items();
    match ipc::ipc_wait(ipc::recv_timeout_us(WAIT_US)).0 {
        Err(Error::RecvMsgCut | Error::RecvMapFailed) => {}
        other => fail!("receive of an undeliverable message: {other:?}"),
    }
    expect_worker_failed(1, "the sender's message")
}
