//! Faults and exceptions that end the task; exits; strangers.

use super::*;

#[test]
fn a_fault_outside_every_region_ends_the_task() {
    let mut rt = runtime();
    assert_eq!(
        data_fault(&mut rt, 0x10, true, DYN_BASE + 0x1100),
        PfAction::Exit
    );
    assert_eq!(rt.b.exit, Some(-11));
    assert!(
        rt.b.log_text()
            .contains("l4re: rom/prog: unhandled page fault at 0x10 pc 0x401100 (write)")
    );
    // Later messages are ignored.
    assert_eq!(sys(&mut rt, 1, SYS_WRITE, &[1, 0, 0]), Action::Exit);
    // Writing to the text segment is refused too.
    let mut rt = runtime();
    assert_eq!(
        data_fault(&mut rt, DYN_BASE + 0x100, true, 0),
        PfAction::Exit
    );
    assert!(rt.b.log_text().contains("is r-x"));
}

#[test]
fn other_exceptions_are_reported() {
    let mut rt = runtime();
    let r = ExcRegs {
        err: 0x0200_0000,
        pc: DYN_BASE + 0x1200,
        tpidruro: utcb(1),
        ..Default::default()
    };
    assert_eq!(rt.exception(r), Action::Exit);
    assert_eq!(rt.b.exit, Some(-4));
    let log = rt.b.log_text();
    assert!(log.contains("undefined instruction"), "{log}");
    assert!(log.contains("x30"), "{log}");
    assert!(log.contains("SIGILL"), "{log}");
    assert_eq!(describe_esr(0x3c << 26).1, 5);
    assert_eq!(describe_esr((0x24 << 26) | 0x21).1, 7);
}

#[test]
fn exit_group_reports_the_code() {
    let mut rt = runtime();
    assert_eq!(sys(&mut rt, 1, 94, &[3]), Action::Exit);
    assert_eq!(rt.b.exit, Some(3));
    assert!(rt.b.threads.is_empty());
    let mut rt = runtime();
    assert_eq!(sys(&mut rt, 1, 94, &[-1i64 as u64]), Action::Exit);
    assert_eq!(rt.b.exit, Some(255));
}

#[test]
fn unknown_threads_are_ignored() {
    let mut rt = runtime();
    assert_eq!(sys(&mut rt, 9, SYS_WRITE, &[1, 0, 0]), Action::NoReply);
    assert!(rt.b.log_text().contains("unknown thread"));
}

#[test]
fn a_page_mapped_and_unmapped_again_and_again_is_no_failure() {
    // A program that maps a page, touches it and unmaps it in a loop
    // faults at the same address each time: that is progress, not a
    // mapping that does not stay.
    let mut rt = runtime();
    for _ in 0..40 {
        let a = call(&mut rt, 1, 222, &[0, PAGE, 3, 0x22, u64::MAX, 0]) as u64;
        assert_eq!(
            data_fault(&mut rt, a, true, DYN_BASE + 0x1100),
            PfAction::Retry
        );
        assert_eq!(call(&mut rt, 1, 215, &[a, PAGE]), 0);
    }
    assert_eq!(rt.b.exit, None);
}
