//! The log as standard output and input; `ppoll`.

use super::*;

#[test]
fn writes_go_to_the_log_and_unknown_calls_fail() {
    let mut rt = runtime();
    // A string in the program's read-only data that nobody touched yet.
    let s = DYN_BASE + 0x200;
    assert_eq!(call(&mut rt, 1, SYS_WRITE, &[1, s, 16]), 16);
    assert_eq!(rt.b.log, program()[0x200..0x210]);
    rt.b.log.clear();
    let b = buffer(&mut rt, b"stdtest: one\nstdtest: two\n");
    assert_eq!(call(&mut rt, 1, SYS_WRITE, &[2, b, 26]), 26);
    assert_eq!(rt.b.log_text(), "stdtest: one\nstdtest: two\n");
    // writev gathers.
    let iov = buffer(&mut rt, &[0; 32]);
    let mut v = Vec::new();
    for (a, l) in [(b, 13u64), (b + 13, 13)] {
        v.extend_from_slice(&a.to_le_bytes());
        v.extend_from_slice(&l.to_le_bytes());
    }
    rt.b.prog_write(iov, &v);
    rt.b.log.clear();
    assert_eq!(call(&mut rt, 1, 66, &[1, iov, 2]), 26);
    assert_eq!(rt.b.log_text(), "stdtest: one\nstdtest: two\n");
    // Bad descriptors and addresses.
    assert_eq!(call(&mut rt, 1, SYS_WRITE, &[0, b, 1]), -EBADF);
    assert_eq!(call(&mut rt, 1, SYS_WRITE, &[9, b, 1]), -EBADF);
    assert_eq!(call(&mut rt, 1, SYS_WRITE, &[1, 0x10, 1]), -EFAULT);
    assert_eq!(call(&mut rt, 1, SYS_WRITE, &[1, u64::MAX - 2, 8]), -EFAULT);
    // Unknown: ENOSYS, reported once.
    rt.b.log.clear();
    assert_eq!(call(&mut rt, 1, 999, &[]), -ENOSYS);
    assert_eq!(call(&mut rt, 1, 999, &[]), -ENOSYS);
    assert_eq!(rt.b.log_text().matches("system call 999").count(), 1);
    // Silent ENOSYS for calls std probes.
    rt.b.log.clear();
    assert_eq!(call(&mut rt, 1, 293, &[]), -ENOSYS);
    assert!(rt.b.log.is_empty());
    // Long output is split into messages without cutting lines.
    let long: Vec<u8> = (0..40)
        .flat_map(|i| format!("line {i:02} ........\n").into_bytes())
        .collect();
    let lb = buffer(&mut rt, &long);
    rt.b.log.clear();
    assert_eq!(
        call(&mut rt, 1, SYS_WRITE, &[1, lb, long.len() as u64]),
        long.len() as i64
    );
    assert_eq!(rt.b.log, long);
}

#[test]
fn stdin_reads_wait_for_input_and_poll() {
    let mut rt = runtime();
    let buf = buffer(&mut rt, &[0; 64]);
    rt.b.input.extend(b"ab");
    assert_eq!(call(&mut rt, 1, SYS_READ, &[0, buf, 64]), 2);
    assert_eq!(sys(&mut rt, 1, SYS_READ, &[0, buf, 64]), Action::NoReply);
    let d = rt.next_deadline().unwrap();
    rt.b.now = d;
    rt.tick();
    assert!(rt.take_wakeups().is_empty(), "still nothing");
    rt.b.input.extend(b"line\n");
    rt.b.now = rt.next_deadline().unwrap();
    rt.tick();
    let w = rt.take_wakeups();
    assert_eq!(w[0].1.x[0], 5);
    assert_eq!(rt.b.prog_read(buf, 5), b"line\n");
    assert_eq!(rt.next_deadline(), None, "no more polling");
    // ppoll as std's start-up does it: fds 0..2, no events, timeout 0.
    let fds = buffer(&mut rt, &[0; 32]);
    let mut v = Vec::new();
    for fd in [0i32, 1, 2, 42] {
        v.extend_from_slice(&fd.to_le_bytes());
        v.extend_from_slice(&[0, 0, 0xff, 0xff]);
    }
    rt.b.prog_write(fds, &v);
    let zero = buffer(&mut rt, &[0; 16]);
    rt.b.input.extend(b"typed");
    assert_eq!(call(&mut rt, 1, 73, &[fds, 4, zero, 0, 8]), 1);
    assert_eq!(rt.b.input.len(), 5, "a poll for no input reads none");
    rt.b.input.clear();
    let out = rt.b.prog_read(fds, 32);
    for i in 0..3 {
        assert_eq!(&out[i * 8 + 6..i * 8 + 8], &[0, 0]);
    }
    assert_eq!(u16::from_le_bytes([out[30], out[31]]), 0x20, "POLLNVAL");
    // Waiting for stdin input with ppoll.
    rt.b.prog_write(fds, &[0, 0, 0, 0, 1, 0, 0, 0]);
    assert_eq!(sys(&mut rt, 1, 73, &[fds, 1, 0, 0, 8]), Action::NoReply);
    rt.b.input.extend(b"x");
    rt.b.now = rt.next_deadline().unwrap();
    rt.tick();
    assert_eq!(rt.take_wakeups()[0].1.x[0], 1);
    assert_eq!(rt.b.prog_read(fds + 6, 2), [1, 0], "POLLIN");
}

#[test]
fn stdin_waits_for_the_logs_irq_instead_of_polling() {
    let mut rt = runtime();
    rt.b.input_irq = true;
    let buf = buffer(&mut rt, &[0; 64]);
    assert_eq!(sys(&mut rt, 1, SYS_READ, &[0, buf, 64]), Action::NoReply);
    assert_eq!((rt.b.irq_asked, rt.b.unmasks), (1, 1));
    assert_eq!(rt.next_deadline(), None, "no polling with an Irq");
    // A signal without input wakes nobody and re-arms.
    rt.stdin_signalled();
    assert!(rt.take_wakeups().is_empty());
    assert_eq!(rt.b.unmasks, 2);
    rt.b.input.extend(b"hi\n");
    rt.stdin_signalled();
    let w = rt.take_wakeups();
    assert_eq!(w.len(), 1);
    assert_eq!(w[0].1.x[0], 3);
    assert_eq!(rt.b.prog_read(buf, 3), b"hi\n");
    assert_eq!(rt.b.unmasks, 2, "nobody waits: not re-armed");
    // The next reader: asked once only, armed again.
    assert_eq!(sys(&mut rt, 1, SYS_READ, &[0, buf, 64]), Action::NoReply);
    assert_eq!((rt.b.irq_asked, rt.b.unmasks), (1, 3));
    assert_eq!(rt.next_deadline(), None);
}

#[test]
fn stdin_polls_when_the_log_has_no_irq() {
    let mut rt = runtime();
    let buf = buffer(&mut rt, &[0; 64]);
    assert_eq!(sys(&mut rt, 1, SYS_READ, &[0, buf, 64]), Action::NoReply);
    assert_eq!((rt.b.irq_asked, rt.b.unmasks), (1, 0));
    assert!(rt.next_deadline().is_some(), "polls");
    let d = rt.next_deadline().unwrap();
    rt.b.now = d;
    rt.tick();
    assert_eq!(rt.b.irq_asked, 1, "asked once");
}

#[test]
fn the_start_is_reported_before_the_first_output_when_asked() {
    let mut rt = runtime_with(Config {
        startup_report: true,
        ..config()
    });
    let before = rt.startup();
    assert_eq!(before.faults, 0);
    touch(&mut rt, DYN_BASE, false);
    let b = buffer(&mut rt, b"hi\n");
    let s = rt.startup();
    assert_eq!(s.faults, 2, "the code page and the buffer");
    assert!(s.maps > before.maps && s.mapped > before.mapped);
    assert!(rt.b.log.is_empty());
    assert_eq!(call(&mut rt, 1, SYS_WRITE, &[1, b, 0]), 0);
    assert!(rt.b.log.is_empty(), "nothing written, nothing reported");
    assert_eq!(call(&mut rt, 1, SYS_WRITE, &[1, b, 3]), 3);
    let log = rt.b.log_text();
    let (report, rest) = log.split_once('\n').unwrap();
    assert!(
        report.starts_with("l4re: rom/prog: first output at ")
            && report.contains(" 2 page faults, "),
        "{report}"
    );
    assert_eq!(rest, "hi\n");
    rt.b.log.clear();
    assert_eq!(call(&mut rt, 1, SYS_WRITE, &[1, b, 3]), 3);
    assert_eq!(rt.b.log_text(), "hi\n", "once");
    // Without the flag: the output alone.
    let mut quiet = runtime();
    let b = buffer(&mut quiet, b"hi\n");
    assert_eq!(call(&mut quiet, 1, SYS_WRITE, &[1, b, 3]), 3);
    assert_eq!(quiet.b.log_text(), "hi\n");
}
