//! `brk`, `mmap`, `munmap`, `mprotect`, and mapping pages in pieces.

use super::*;

#[test]
fn brk_mmap_munmap_mprotect() {
    let mut rt = runtime();
    let start = call(&mut rt, 1, 214, &[0]) as u64;
    assert_eq!(start, DYN_BASE + 0x15000);
    assert_eq!(
        call(&mut rt, 1, 214, &[start + 0x3000]) as u64,
        start + 0x3000
    );
    touch(&mut rt, start + 0x2fff, true);
    rt.b.prog_write(start + 0x2000, b"heap");
    assert_eq!(
        call(&mut rt, 1, 214, &[start + 0x1000]) as u64,
        start + 0x1000
    );
    assert_eq!(
        call(&mut rt, 1, 214, &[start + 0x3000]) as u64,
        start + 0x3000
    );
    touch(&mut rt, start + 0x2000, false);
    assert_eq!(
        rt.b.prog_read(start + 0x2000, 4),
        [0; 4],
        "zero after shrink"
    );
    assert_eq!(
        call(&mut rt, 1, 214, &[1]) as u64,
        start + 0x3000,
        "refused"
    );
    assert_eq!(
        call(&mut rt, 1, 214, &[start + (2 << 30)]) as u64,
        start + 0x3000
    );

    // 64 MiB anonymous: a region, its dataspace created on first touch,
    // released by munmap.
    let len = 64 << 20;
    let a = call(&mut rt, 1, 222, &[0, len, 3, 0x22, u64::MAX, 0]) as u64;
    assert!(a >= MMAP_BASE && a.is_multiple_of(2 << 20));
    let caps_before = rt.b.dss.len();
    touch(&mut rt, a + len - 1, true);
    assert_eq!(rt.b.dss.len(), caps_before + 1);
    let ds = *rt.b.dss.keys().last().unwrap();
    assert_eq!(rt.b.dss[&ds].len() as u64, len);
    assert_eq!(call(&mut rt, 1, 215, &[a, len]), 0);
    assert_eq!(rt.b.released, [ds]);
    assert!(rt.b.pages.range(a..a + len).next().is_none(), "unmapped");
    assert!(rt.regions().lookup(a).is_none());

    // MAP_POPULATE: every page mapped before the first touch.
    let flags = 0x22 | mman::MAP_POPULATE;
    let a = call(&mut rt, 1, 222, &[0, 4 * PAGE, 3, flags, u64::MAX, 0]) as u64;
    assert_eq!(rt.b.pages.range(a..a + 4 * PAGE).count(), 4);
    assert_eq!(call(&mut rt, 1, 215, &[a, 4 * PAGE]), 0);

    // Hints, fixed mappings, refusals.
    let h = 0x20_0000_0000;
    assert_eq!(
        call(&mut rt, 1, 222, &[h, PAGE, 3, 0x22, u64::MAX, 0]) as u64,
        h
    );
    assert_eq!(
        call(
            &mut rt,
            1,
            222,
            &[h, PAGE, 3, 0x22 | mman::MAP_FIXED_NOREPLACE, u64::MAX, 0]
        ),
        -EEXIST
    );
    assert_eq!(
        call(&mut rt, 1, 222, &[h, PAGE, 1, 0x32, u64::MAX, 0]) as u64,
        h
    );
    assert_eq!(rt.regions().lookup(h).unwrap().prot, Prot::R);
    assert_eq!(
        call(&mut rt, 1, 222, &[0, 0, 3, 0x22, u64::MAX, 0]),
        -EINVAL
    );
    assert_eq!(
        call(&mut rt, 1, 222, &[0x1000, PAGE, 3, 0x32, u64::MAX, 0]),
        -EPERM
    );
    assert_eq!(
        call(
            &mut rt,
            1,
            222,
            &[l4_env::RUNTIME_BASE, PAGE, 3, 0x32, u64::MAX, 0]
        ),
        -ENOMEM
    );
    assert_eq!(call(&mut rt, 1, 222, &[0, PAGE, 3, 0x02, 7, 0]), -EBADF);
    assert_eq!(call(&mut rt, 1, 215, &[l4_env::UTCB_AREA, PAGE]), -EINVAL);
    assert_eq!(call(&mut rt, 1, 215, &[h + 1, PAGE]), -EINVAL);

    // mprotect: a guard page faults; the rest stays usable.
    let s = call(&mut rt, 1, 222, &[0, 4 * PAGE, 3, 0x22, u64::MAX, 0]) as u64;
    touch(&mut rt, s, true);
    assert_eq!(call(&mut rt, 1, 226, &[s, PAGE, 0]), 0);
    assert!(!rt.b.pages.contains_key(&s), "unmapped for the new rights");
    touch(&mut rt, s + PAGE, true);
    assert_eq!(call(&mut rt, 1, 226, &[s + 8 * PAGE, PAGE, 3]), -ENOMEM);
    // MADV_DONTNEED: zeros afterwards; MADV_FREE: nothing happens.
    rt.b.prog_write(s + PAGE, b"data");
    assert_eq!(call(&mut rt, 1, 233, &[s + PAGE, PAGE, 8]), 0);
    assert_eq!(rt.b.prog_read(s + PAGE, 4), b"data");
    assert_eq!(call(&mut rt, 1, 233, &[s + PAGE, PAGE, 4]), 0);
    touch(&mut rt, s + PAGE, false);
    assert_eq!(rt.b.prog_read(s + PAGE, 4), [0; 4]);
    assert_eq!(rt.regions().lookup(s + PAGE).unwrap().prot, Prot::RW);
    // mremap: EFAULT outside mappings (musl's stack probe), else ENOMEM.
    assert_eq!(call(&mut rt, 1, 216, &[s, PAGE, 2 * PAGE, 0]), -ENOMEM);
    assert_eq!(
        call(&mut rt, 1, 216, &[0x20000, PAGE, 2 * PAGE, 0]),
        -EFAULT
    );
    // The runtime itself refuses to read the guard page.
    assert_eq!(call(&mut rt, 1, SYS_WRITE, &[1, s, 1]), -EFAULT);
    rt.b.log.clear();
    assert_eq!(data_fault(&mut rt, s + 8, true, 0x40_1111), PfAction::Exit);
    assert_eq!(rt.b.exit, Some(-11));
    let log = rt.b.log_text();
    assert!(
        log.contains(&format!(
            "l4re: rom/prog: unhandled page fault at {:#x} pc 0x401111 (write)",
            s + 8
        )),
        "{log}"
    );
    assert!(log.contains("is ---"), "{log}");
    assert!(rt.b.threads.is_empty(), "threads stopped");
    assert!(rt.exited());
}

#[test]
fn smaller_mappings_from_the_dataspace_server() {
    // The dataspace server may map less than the window: the runtime maps
    // page by page then.
    let mut f = Fake::new(program());
    f.max_order = 12;
    let cfg = Config {
        args: vec!["rom/prog".into()],
        program_ds: PROGRAM,
        trampoline: TRAMPOLINE,
        cpus: 1,
        trace: true,
        ..Default::default()
    };
    let mut rt = Runtime::new(f, cfg);
    rt.load().unwrap();
    let b = buffer(&mut rt, &[b'z'; 3 * 4096]);
    assert_eq!(call(&mut rt, 1, SYS_WRITE, &[1, b, 3 * 4096]), 3 * 4096);
    assert!(rt.b.log_text().contains("[1] write(0x1"), "trace");
}

#[test]
fn large_mappings_are_placed_for_large_pages() {
    use crate::runtime::mmap::placement_align;
    assert_eq!(placement_align(PAGE), PAGE);
    assert_eq!(placement_align(3 * PAGE), 4 * PAGE);
    assert_eq!(placement_align(0xffff), 1 << 16);
    assert_eq!(placement_align(1 << 16), 1 << 16);
    assert_eq!(placement_align(1 << 20), 1 << 20);
    assert_eq!(placement_align(1_081_874), 1 << 21);
    assert_eq!(placement_align(3 << 20), 1 << 21);
    assert_eq!(placement_align(u64::MAX), 1 << 21);
}

#[test]
fn small_anonymous_mappings_share_a_pool() {
    let mut rt = runtime();
    let before = rt.b.dss.len();
    let counted = rt.startup().dataspaces;
    let mmap =
        |rt: &mut Runtime<Fake>, len: u64| call(rt, 1, 222, &[0, len, 3, 0x22, u64::MAX, 0]) as u64;
    // Musl's allocator: one-page mappings, one freed in between.
    let a = mmap(&mut rt, PAGE);
    let b = mmap(&mut rt, PAGE);
    let c = mmap(&mut rt, 2 * PAGE);
    assert_eq!(rt.b.dss.len(), before + 1, "one dataspace for all");
    assert_eq!(rt.startup().dataspaces, counted + 1);
    for (at, text) in [(a, b"aaaa"), (b, b"bbbb"), (c + PAGE, b"cccc")] {
        touch(&mut rt, at, true);
        rt.b.prog_write(at, text);
    }
    assert_eq!(rt.b.prog_read(a, 4), b"aaaa", "pieces do not overlap");
    assert_eq!(rt.b.prog_read(b, 4), b"bbbb");
    assert_eq!(rt.b.prog_read(c + PAGE, 4), b"cccc");
    assert_eq!(call(&mut rt, 1, 215, &[b, PAGE]), 0);
    let d = mmap(&mut rt, PAGE);
    touch(&mut rt, d, false);
    assert_eq!(rt.b.prog_read(d, 4), [0; 4], "a new piece reads as zeros");
    assert!(rt.b.released.is_empty(), "the pool stays while in use");

    // Large mappings get a dataspace of their own.
    let big = mmap(&mut rt, 128 << 10);
    touch(&mut rt, big, true);
    assert_eq!(rt.b.dss.len(), before + 2);

    // A full pool moves on; the old one goes with its last mapping.
    let pool = *rt.b.dss.keys().nth(before).unwrap();
    let mut pieces = vec![a, c, d];
    while rt.b.dss.len() == before + 2 {
        pieces.push(mmap(&mut rt, 16 * PAGE));
    }
    let moved = pieces.pop().unwrap();
    for p in pieces {
        assert_eq!(call(&mut rt, 1, 215, &[p, PAGE]), 0);
    }
    assert!(
        rt.b.released.is_empty(),
        "pieces of 16 pages are still mapped in part"
    );
    for p in rt
        .regions()
        .iter()
        .filter(|r| r.backing.ds() == Some(pool))
        .map(|r| (r.start, r.end))
        .collect::<Vec<_>>()
    {
        assert_eq!(call(&mut rt, 1, 215, &[p.0, p.1 - p.0]), 0);
    }
    assert_eq!(rt.b.released, [pool]);
    assert_eq!(call(&mut rt, 1, 215, &[moved, 16 * PAGE]), 0);
}
