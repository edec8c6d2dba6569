//! For tests: damaged copies of good input, to show that a reader turns
//! every one into a result or an error, never a panic.

use std::panic::{RefUnwindSafe, catch_unwind};

/// Runs `check` on `cases` damaged copies of `goods` (taking them in
/// turn): each with 1 to 4 random bytes changed, three in four of those
/// within the first `head` bytes (where the lengths and offsets are), and
/// one copy in eight cut short. Fails naming the first cases that
/// panicked.
pub fn never_panics(
    goods: &[Vec<u8>],
    cases: usize,
    head: usize,
    check: impl Fn(&[u8]) + RefUnwindSafe,
) {
    let mut rng = l4_xorshift::XorShift::new(0x9e37_79b9_7f4a_7c15);
    let mut next = move || rng.next_u64();
    let mut panics = Vec::new();
    for i in 0..cases {
        let mut b = goods[i % goods.len()].clone();
        for _ in 0..1 + next() % 4 {
            let span = if next() % 4 == 0 {
                b.len()
            } else {
                b.len().min(head)
            };
            let at = (next() % span as u64) as usize;
            b[at] = next() as u8;
        }
        if next() % 8 == 0 {
            b.truncate((next() % b.len() as u64) as usize);
        }
        if catch_unwind(|| check(&b)).is_err() {
            panics.push(i);
        }
    }
    assert!(
        panics.is_empty(),
        "{} of {cases} panicked, first {:?}",
        panics.len(),
        &panics[..panics.len().min(5)]
    );
}
