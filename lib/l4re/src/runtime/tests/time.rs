//! Sleeping and clocks.

use super::*;

#[test]
fn sleeping_and_clocks() {
    let mut rt = runtime();
    let ts = buffer(&mut rt, &Timespec { sec: 1, nsec: 500 }.to_bytes());
    assert_eq!(sys(&mut rt, 1, 101, &[ts, 0]), Action::NoReply);
    assert_eq!(rt.next_deadline(), Some(rt.b.now + 1_000_000_500));
    rt.b.now += 1_000_000_500;
    rt.tick();
    let w = rt.take_wakeups();
    assert_eq!((w.len(), w[0].1.x[0]), (1, 0));
    // clock_nanosleep with an absolute time in the past returns at once.
    assert_eq!(call(&mut rt, 1, 115, &[1, 1, ts, 0]), 0);
    assert_eq!(call(&mut rt, 1, 115, &[3, 0, ts, 0]), -EINVAL);
    let zero = buffer(&mut rt, &[0; 16]);
    assert_eq!(call(&mut rt, 1, 101, &[zero, 0]), 0);
    // clock_gettime.
    let out = buffer(&mut rt, &[0; 16]);
    rt.b.now = 7_000_000_123;
    assert_eq!(call(&mut rt, 1, 113, &[1, out]), 0);
    let t = Timespec::from_bytes(rt.b.prog_read(out, 16).try_into().unwrap());
    assert_eq!((t.sec, t.nsec), (7, 123));
    assert_eq!(call(&mut rt, 1, 113, &[99, out]), -EINVAL);
    assert_eq!(call(&mut rt, 1, 114, &[1, 0]), 0);
    // getrandom, affinity, limits, uname.
    let r = buffer(&mut rt, &[0; 64]);
    assert_eq!(call(&mut rt, 1, 278, &[r, 64, 0]), 64);
    assert!(rt.b.prog_read(r, 64).iter().any(|&b| b != 0));
    assert_eq!(call(&mut rt, 1, 123, &[0, 128, r]), 8);
    assert_eq!(rt.b.prog_read(r, 8), 0b1111u64.to_le_bytes());
    assert_eq!(call(&mut rt, 1, 123, &[0, 4, r]), -EINVAL);
    assert_eq!(call(&mut rt, 1, 261, &[0, 3, 0, r]), 0);
    assert_eq!(rt.b.prog_read(r, 8), (8u64 << 20).to_le_bytes());
    let u = buffer(&mut rt, &[0; 390]);
    assert_eq!(call(&mut rt, 1, 160, &[u]), 0);
    assert_eq!(rt.b.prog_read(u, 6), b"Linux\0");
}
