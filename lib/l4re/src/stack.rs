//! The initial stack of a program's main thread, as Linux builds it
//! (`fs/binfmt_elf.c`): from `sp` upwards `argc`, the `argv` pointers, a
//! null pointer, the `envp` pointers, a null pointer, the auxiliary vector
//! ending with `AT_NULL`; above that the 16 `AT_RANDOM` bytes, the
//! platform string, the argument and environment strings and the file name
//! (`AT_EXECFN`), then an 8-byte null end marker just below the top.

use alloc::vec;
use alloc::vec::Vec;
use core::ops::Range;

use crate::linux::auxv::*;

/// The initial stack: `sp` and the bytes of `[sp, top)`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InitialStack {
    /// The stack pointer (16-byte aligned).
    pub sp: u64,
    /// The memory from `sp` to the top.
    pub bytes: Vec<u8>,
    /// Where in `bytes` the auxiliary vector lies, `AT_NULL` included
    /// (what `/proc/self/auxv` reads).
    pub auxv: Range<usize>,
}

/// Why the stack could not be built.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StackError {
    /// More than `limit` bytes.
    TooBig,
}

/// Builds the initial stack below `top` (16-byte aligned). `auxv` are the
/// entries besides `AT_RANDOM`, `AT_EXECFN`, `AT_PLATFORM` and `AT_NULL`,
/// which this adds. `execfn` is usually `argv[0]`. At most `limit` bytes.
pub fn build(
    top: u64,
    argv: &[&[u8]],
    envp: &[&[u8]],
    auxv: &[(u64, u64)],
    execfn: &[u8],
    random: [u8; 16],
    limit: usize,
) -> Result<InitialStack, StackError> {
    const PLATFORM: &[u8] = b"aarch64";
    let strings: usize = argv.iter().chain(envp).map(|s| s.len() + 1).sum::<usize>()
        + execfn.len()
        + 1
        + PLATFORM.len()
        + 1;
    let nauxv = auxv.len() + 4;
    let pointers = (1 + argv.len() + 1 + envp.len() + 1 + 2 * nauxv) * 8;
    // Rounded to 16 so that offsets and addresses align alike.
    let estimate = (8 + strings + 16 + 16 + pointers + 16).next_multiple_of(16);
    if estimate > limit || !top.is_multiple_of(16) || (top as usize) < estimate {
        return Err(StackError::TooBig);
    }
    let mut img = vec![0u8; estimate];
    let base = top - estimate as u64;
    // Byte cursor, downwards from the top; the end marker stays zero.
    let mut cur = estimate - 8;
    let mut put = |img: &mut Vec<u8>, s: &[u8]| -> u64 {
        cur -= s.len() + 1;
        img[cur..cur + s.len()].copy_from_slice(s);
        img[cur + s.len()] = 0;
        base + cur as u64
    };
    let execfn_at = put(&mut img, execfn);
    let env_at: Vec<u64> = envp.iter().rev().map(|s| put(&mut img, s)).collect();
    let arg_at: Vec<u64> = argv.iter().rev().map(|s| put(&mut img, s)).collect();
    let platform_at = put(&mut img, PLATFORM);
    cur &= !15;
    cur -= 16;
    img[cur..cur + 16].copy_from_slice(&random);
    let random_at = base + cur as u64;
    // The pointer block, 16-byte aligned at sp.
    let start = (cur - pointers) & !15;
    let sp = base + start as u64;
    // argc, argv and envp with their null ends, then the vector.
    let auxv_at = start + 8 * (argv.len() + envp.len() + 3);
    let mut w = start;
    let mut word = |img: &mut Vec<u8>, v: u64| {
        img[w..w + 8].copy_from_slice(&v.to_le_bytes());
        w += 8;
    };
    word(&mut img, argv.len() as u64);
    for a in arg_at.iter().rev() {
        word(&mut img, *a);
    }
    word(&mut img, 0);
    for e in env_at.iter().rev() {
        word(&mut img, *e);
    }
    word(&mut img, 0);
    for &(t, v) in auxv {
        word(&mut img, t);
        word(&mut img, v);
    }
    for (t, v) in [
        (AT_RANDOM, random_at),
        (AT_EXECFN, execfn_at),
        (AT_PLATFORM, platform_at),
        (AT_NULL, 0),
    ] {
        word(&mut img, t);
        word(&mut img, v);
    }
    Ok(InitialStack {
        sp,
        bytes: img.split_off(start),
        auxv: auxv_at - start..auxv_at - start + 16 * nauxv,
    })
}

/// What a C runtime finds on the initial stack.
pub type Parsed = (Vec<Vec<u8>>, Vec<Vec<u8>>, Vec<(u64, u64)>);

/// Reads an initial stack back as a C runtime would, from the memory
/// `bytes` at `sp` up: `(argv, envp, auxv)` (for tests and checks).
pub fn parse(sp: u64, bytes: &[u8]) -> Option<Parsed> {
    let word = |at: u64| -> Option<u64> {
        let o = at.checked_sub(sp)? as usize;
        let b = bytes.get(o..o + 8)?;
        Some(u64::from_le_bytes(b.try_into().ok()?))
    };
    let string = |at: u64| -> Option<Vec<u8>> {
        let o = at.checked_sub(sp)? as usize;
        let rest = bytes.get(o..)?;
        let n = rest.iter().position(|&b| b == 0)?;
        Some(rest[..n].to_vec())
    };
    let mut at = sp;
    let argc = word(at)?;
    at += 8;
    let mut argv = Vec::new();
    for _ in 0..argc {
        argv.push(string(word(at)?)?);
        at += 8;
    }
    if word(at)? != 0 {
        return None;
    }
    at += 8;
    let mut envp = Vec::new();
    loop {
        let p = word(at)?;
        at += 8;
        if p == 0 {
            break;
        }
        envp.push(string(p)?);
    }
    let mut auxv = Vec::new();
    loop {
        let t = word(at)?;
        let v = word(at + 8)?;
        at += 16;
        if t == AT_NULL {
            break;
        }
        auxv.push((t, v));
    }
    Some((argv, envp, auxv))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn linux_layout() {
        let top = 0x7ffe_0000_0000;
        let st = build(
            top,
            &[b"rom/hello", b"-v"],
            &[b"HOME=/", b"TERM=vt100"],
            &[(AT_PAGESZ, 4096), (AT_ENTRY, 0x40_1000)],
            b"rom/hello",
            [7; 16],
            64 << 10,
        )
        .unwrap();
        assert_eq!(st.sp % 16, 0);
        assert_eq!(st.sp + st.bytes.len() as u64, top);
        assert_eq!(&st.bytes[st.bytes.len() - 8..], &[0; 8], "end marker");
        let (argv, envp, auxv) = parse(st.sp, &st.bytes).unwrap();
        // `auxv` says where the vector is, as a C runtime finds it.
        let raw: Vec<(u64, u64)> = st.bytes[st.auxv.clone()]
            .chunks(16)
            .map(|c| {
                let w = |i: usize| u64::from_le_bytes(c[i..i + 8].try_into().unwrap());
                (w(0), w(8))
            })
            .collect();
        assert_eq!(raw[..raw.len() - 1], auxv[..]);
        assert_eq!(raw.last(), Some(&(AT_NULL, 0)));
        assert_eq!(argv, [b"rom/hello".to_vec(), b"-v".to_vec()]);
        assert_eq!(envp, [b"HOME=/".to_vec(), b"TERM=vt100".to_vec()]);
        let get = |t| auxv.iter().find(|(k, _)| *k == t).map(|(_, v)| *v);
        assert_eq!(get(AT_PAGESZ), Some(4096));
        assert_eq!(get(AT_ENTRY), Some(0x40_1000));
        let r = get(AT_RANDOM).unwrap();
        let o = (r - st.sp) as usize;
        assert_eq!(&st.bytes[o..o + 16], &[7; 16]);
        let e = get(AT_EXECFN).unwrap();
        let o = (e - st.sp) as usize;
        assert_eq!(&st.bytes[o..o + 10], b"rom/hello\0");
        let p = get(AT_PLATFORM).unwrap();
        let o = (p - st.sp) as usize;
        assert_eq!(&st.bytes[o..o + 8], b"aarch64\0");
        // Every pointer lies inside the stack.
        for (_, v) in auxv
            .iter()
            .filter(|(k, _)| [AT_RANDOM, AT_EXECFN].contains(k))
        {
            assert!(*v >= st.sp && *v < top);
        }
    }

    #[test]
    fn empty_and_oversized() {
        let st = build(0x10000, &[], &[], &[], b"", [0; 16], 4096).unwrap();
        let (argv, envp, auxv) = parse(st.sp, &st.bytes).unwrap();
        assert!(argv.is_empty() && envp.is_empty());
        assert_eq!(auxv.len(), 3);
        let big = [b'x'; 3000];
        assert_eq!(
            build(0x10000, &[&big, &big], &[], &[], b"", [0; 16], 4096),
            Err(StackError::TooBig)
        );
        assert_eq!(
            build(0x40, &[], &[], &[], b"", [0; 16], 4096),
            Err(StackError::TooBig)
        );
        assert_eq!(
            build(0x10008, &[], &[], &[], b"", [0; 16], 4096),
            Err(StackError::TooBig),
            "unaligned top"
        );
    }
}
