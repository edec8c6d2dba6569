//! `rom/` files.

use super::*;

#[test]
fn rom_files() {
    let mut rt = runtime();
    let path = buffer(&mut rt, b"rom/stdtest.txt\0");
    let buf = buffer(&mut rt, &[0; 256]);
    let fd = call(&mut rt, 1, 56, &[-100i64 as u64, path, 0o2000000, 0]);
    assert_eq!(fd, 3);
    let fd = fd as u64;
    assert_eq!(call(&mut rt, 1, 80, &[fd, buf]), 0);
    assert_eq!(rt.b.prog_read(buf + 48, 8), 27u64.to_le_bytes(), "st_size");
    assert_eq!(call(&mut rt, 1, SYS_READ, &[fd, buf, 6]), 6);
    assert_eq!(rt.b.prog_read(buf, 6), b"hello ");
    assert_eq!(call(&mut rt, 1, SYS_READ, &[fd, buf, 100]), 21);
    assert_eq!(rt.b.prog_read(buf, 21), b"from rom\nsecond line\n");
    assert_eq!(
        call(&mut rt, 1, SYS_READ, &[fd, buf, 100]),
        0,
        "end of file"
    );
    assert_eq!(call(&mut rt, 1, 62, &[fd, -5i64 as u64, 2]), 22);
    assert_eq!(call(&mut rt, 1, SYS_READ, &[fd, buf, 100]), 5);
    assert_eq!(call(&mut rt, 1, 67, &[fd, buf, 5, 0]), 5, "pread");
    assert_eq!(rt.b.prog_read(buf, 5), b"hello");
    assert_eq!(call(&mut rt, 1, 62, &[fd, -100i64 as u64, 1]), -EINVAL);
    assert_eq!(call(&mut rt, 1, 62, &[1, 0, 0]), -ESPIPE);
    assert_eq!(call(&mut rt, 1, 25, &[fd, 1, 0]), 1, "FD_CLOEXEC");
    assert_eq!(call(&mut rt, 1, 29, &[1, 0x5401, 0]), -ENOTTY);
    // statx and newfstatat by path.
    let st = buffer(&mut rt, &[0; 256]);
    assert_eq!(
        call(&mut rt, 1, 291, &[-100i64 as u64, path, 0, 0x7ff, st]),
        0
    );
    assert_eq!(rt.b.prog_read(st + 40, 8), 27u64.to_le_bytes());
    assert_eq!(call(&mut rt, 1, 79, &[-100i64 as u64, path, st, 0]), 0);
    assert_eq!(rt.b.prog_read(st + 48, 8), 27u64.to_le_bytes());
    let empty = buffer(&mut rt, b"\0");
    assert_eq!(call(&mut rt, 1, 79, &[1, empty, st, 0x1000]), 0);
    // Close releases the file's dataspace.
    let ds = rt.b.released.len();
    assert_eq!(call(&mut rt, 1, 57, &[fd]), 0);
    assert_eq!(rt.b.released.len(), ds + 1);
    assert_eq!(call(&mut rt, 1, 57, &[fd]), -EBADF);
    // Missing files, other paths, writing.
    let missing = buffer(&mut rt, b"rom/nope\0");
    assert_eq!(
        call(&mut rt, 1, 56, &[-100i64 as u64, missing, 0, 0]),
        -ENOENT
    );
    let etc = buffer(&mut rt, b"/etc/passwd\0");
    assert_eq!(call(&mut rt, 1, 56, &[-100i64 as u64, etc, 0, 0]), -ENOENT);
    assert_eq!(
        call(&mut rt, 1, 56, &[-100i64 as u64, path, 0o1101, 0o644]),
        -EROFS
    );
    assert_eq!(call(&mut rt, 1, 56, &[-100i64 as u64, 0x10, 0, 0]), -EFAULT);
    // A read-only private mapping of the file.
    let fd = call(&mut rt, 1, 56, &[-100i64 as u64, path, 0, 0]) as u64;
    let m = call(&mut rt, 1, 222, &[0, PAGE, 1, 2, fd, 0]) as u64;
    touch(&mut rt, m, false);
    assert_eq!(rt.b.prog_read(m, 5), b"hello");
    let c = call(&mut rt, 1, 222, &[0, PAGE, 3, 2, fd, 0]) as u64;
    touch(&mut rt, c, true);
    assert_eq!(rt.b.prog_read(c, 5), b"hello", "private copy");
    // MAP_POPULATE maps the file's pages at once, none past its end.
    let flags = 2 | mman::MAP_POPULATE;
    let p = call(&mut rt, 1, 222, &[0, 2 * PAGE, 5, flags, fd, 0]) as u64;
    assert!(rt.b.pages.contains_key(&p), "populated");
    assert!(rt.b.pages.range(p + PAGE..p + 2 * PAGE).next().is_none());
    assert_eq!(call(&mut rt, 1, 57, &[fd]), 0);
    assert_eq!(
        rt.b.prog_read(m, 5),
        b"hello",
        "the mapping outlives the descriptor"
    );
    // getcwd.
    assert_eq!(call(&mut rt, 1, 17, &[buf, 64]), 2);
    assert_eq!(rt.b.prog_read(buf, 2), b"/\0");
}

#[test]
fn proc_self_auxv_is_the_vector_the_program_started_with() {
    let cpu_id = l4_abi::cpuid::CpuId::for_tasks(0x1_0020, 0, 0);
    let mut rt = runtime_with(Config { cpu_id, ..config() });
    let path = buffer(&mut rt, b"/proc/self/auxv\0");
    let fd = call(&mut rt, 1, 56, &[-100i64 as u64, path, 0o2000000, 0]);
    assert_eq!(fd, 3);
    let buf = buffer(&mut rt, &[0xee; 1024]);
    let n = call(&mut rt, 1, SYS_READ, &[3, buf, 1024]);
    assert!(n > 0 && n % 16 == 0, "{n}");
    let bytes = rt.b.prog_read(buf, n as usize);
    let pairs: Vec<(u64, u64)> = bytes
        .chunks(16)
        .map(|c| {
            let w = |i: usize| u64::from_le_bytes(c[i..i + 8].try_into().unwrap());
            (w(0), w(8))
        })
        .collect();
    assert_eq!(pairs.last(), Some(&(auxv::AT_NULL, 0)));
    let get = |t| pairs.iter().find(|(k, _)| *k == t).map(|p| p.1);
    assert_eq!(get(auxv::AT_HWCAP), Some(auxv::hwcaps(cpu_id).0));
    assert_eq!(get(auxv::AT_PAGESZ), Some(4096));
    assert!(get(auxv::AT_RANDOM).is_some());
    assert_eq!(
        call(&mut rt, 1, SYS_READ, &[3, buf, 1024]),
        0,
        "end of file"
    );
    // pread and lseek; read-only.
    assert_eq!(call(&mut rt, 1, 67, &[3, buf, 8, 8]), 8, "pread");
    assert_eq!(rt.b.prog_read(buf, 8), pairs[0].1.to_le_bytes());
    assert_eq!(call(&mut rt, 1, 62, &[3, 16, 0]), 16);
    assert_eq!(call(&mut rt, 1, 57, &[3]), 0);
    assert_eq!(
        call(&mut rt, 1, 56, &[-100i64 as u64, path, 0o1, 0]),
        -EACCES
    );
    // stat and access by path, as for rom files.
    let st = buffer(&mut rt, &[0xff; 256]);
    assert_eq!(call(&mut rt, 1, 79, &[-100i64 as u64, path, st, 0]), 0);
    assert_eq!(rt.b.prog_read(st + 48, 8), 0u64.to_le_bytes(), "size 0");
    assert_eq!(call(&mut rt, 1, 48, &[-100i64 as u64, path, 4]), 0, "R_OK");
    assert_eq!(call(&mut rt, 1, 48, &[-100i64 as u64, path, 2]), -EACCES);
    let other = buffer(&mut rt, b"/proc/self/maps\0");
    assert_eq!(
        call(&mut rt, 1, 56, &[-100i64 as u64, other, 0, 0]),
        -ENOENT
    );
}
