//! Signals.

use super::*;

#[test]
fn signals() {
    let mut rt = runtime();
    let act = buffer(&mut rt, &[0; 64]);
    let mut a = Vec::new();
    for w in [0x40_2000u64, 0x0400_0000, 0x40_3000, 0] {
        a.extend_from_slice(&w.to_le_bytes());
    }
    rt.b.prog_write(act, &a);
    assert_eq!(call(&mut rt, 1, 134, &[11, act, 0, 8]), 0);
    assert_eq!(call(&mut rt, 1, 134, &[11, 0, act + 32, 8]), 0);
    assert_eq!(rt.b.prog_read(act + 32, 32), a);
    assert_eq!(call(&mut rt, 1, 134, &[9, act, 0, 8]), -EINVAL, "SIGKILL");
    assert_eq!(call(&mut rt, 1, 134, &[65, 0, act, 8]), -EINVAL);
    // Masks per thread.
    rt.b.prog_write(act, &0b1010u64.to_le_bytes());
    assert_eq!(call(&mut rt, 1, 135, &[0, act, act + 8, 8]), 0);
    assert_eq!(call(&mut rt, 1, 135, &[1, 0, act + 8, 8]), 0);
    assert_eq!(rt.b.prog_read(act + 8, 8), 0b1010u64.to_le_bytes());
    assert_eq!(call(&mut rt, 1, 135, &[7, act, 0, 8]), -EINVAL);
    // sigaltstack.
    let ss = buffer(&mut rt, &[0; 48]);
    assert_eq!(call(&mut rt, 1, 132, &[0, ss]), 0);
    assert_eq!(rt.b.prog_read(ss + 8, 4), 2u32.to_le_bytes(), "SS_DISABLE");
    let mut s = Vec::new();
    s.extend_from_slice(&0x1234_0000u64.to_le_bytes());
    s.extend_from_slice(&0u64.to_le_bytes());
    s.extend_from_slice(&0x4000u64.to_le_bytes());
    rt.b.prog_write(ss, &s);
    assert_eq!(call(&mut rt, 1, 132, &[ss, ss + 24]), 0);
    assert_eq!(call(&mut rt, 1, 132, &[0, ss + 24]), 0);
    assert_eq!(rt.b.prog_read(ss + 24, 24), s);
    // SIGCHLD's default is to ignore; SIGABRT ends the task.
    assert_eq!(call(&mut rt, 1, 131, &[1, 1, 17]), 0);
    assert_eq!(call(&mut rt, 1, 131, &[1, 77, 6]), -ESRCH);
    assert_eq!(call(&mut rt, 1, 129, &[1, 0]), 0);
    assert_eq!(sys(&mut rt, 1, 130, &[1, 6]), Action::Exit);
    assert_eq!(rt.b.exit, Some(-6));
    assert!(rt.b.log_text().contains("SIGABRT"));
}

#[test]
fn signal_masks() {
    use crate::runtime::signal::new_sigmask;
    let kill_stop = (1 << 8) | (1 << 18);
    assert_eq!(new_sigmask(0b1, 0, 0b110), Ok(0b111));
    assert_eq!(new_sigmask(0b111, 1, 0b10), Ok(0b101));
    assert_eq!(new_sigmask(0b111, 2, 0b1000 | kill_stop), Ok(0b1000));
    assert_eq!(new_sigmask(0, 3, 1), Err(EINVAL));
}
