//! Loading a static PIE and refusing what is not a program.

use super::*;
use crate::runtime::load::segment_prot;
use l4_loader::elf::Segment;

#[test]
fn loads_a_static_pie_with_a_linux_stack() {
    let rt = runtime();
    assert_eq!(rt.thread_count(), 1);
    let (&cap, &(u, pc, sp, cpu)) = rt.b.threads.iter().next().unwrap();
    assert_eq!((u, pc, cpu), (utcb(1), DYN_BASE + 0x1100, 0));
    assert!(cap >= 0x100);
    // Text straight from the file, data copied with its bss zeroed.
    let text = rt.regions().lookup(DYN_BASE).unwrap();
    assert_eq!((text.prot, text.kind), (Prot::RX, Kind::Image));
    let data = rt.regions().lookup(DYN_BASE + 0x12000).unwrap();
    assert_eq!(data.prot, Prot::RW);
    let file = program();
    assert_eq!(
        rt.b.prog_read(DYN_BASE + 0x12000, 0x800),
        file[0x2000..0x2800]
    );
    assert!(
        rt.b.prog_read(DYN_BASE + 0x12800, 0x800)
            .iter()
            .all(|&b| b == 0)
    );
    // The stack as Linux builds it.
    let top = l4_env::PROGRAM_STACK_TOP;
    let bytes = rt.b.prog_read(sp, (top - sp) as usize);
    let (argv, envp, aux) = stack::parse(sp, &bytes).unwrap();
    assert_eq!(argv, [b"rom/prog".to_vec(), b"arg1".to_vec()]);
    assert_eq!(envp, [b"A=b".to_vec()]);
    let get = |t| aux.iter().find(|(k, _)| *k == t).unwrap().1;
    assert_eq!(get(auxv::AT_ENTRY), DYN_BASE + 0x1100);
    assert_eq!(get(auxv::AT_BASE), 0);
    assert_eq!(get(auxv::AT_PAGESZ), 4096);
    assert_eq!(get(auxv::AT_PHNUM), 3);
    assert_eq!(get(auxv::AT_L4RE_ENV), l4_env::ENV_VA);
    assert_eq!(get(auxv::AT_HWCAP), auxv::HWCAP_FP_ASIMD, "nothing known");
    // AT_PHDR points at the program headers in memory (the first is PT_PHDR).
    let mut rt = rt;
    let phdr = get(auxv::AT_PHDR);
    touch(&mut rt, phdr, false);
    assert_eq!(rt.b.prog_read(phdr, 4), PT_PHDR.to_le_bytes());
}

#[test]
fn reports_the_cpu_features_it_was_given() {
    // CRC32 and AES with PMULL.
    let cpu_id = l4_abi::cpuid::CpuId::for_tasks(0x1_0020, 0, 0);
    let rt = runtime_with(Config { cpu_id, ..config() });
    let (_, &(_, _, sp, _)) = rt.b.threads.iter().next().unwrap();
    let bytes =
        rt.b.prog_read(sp, (l4_env::PROGRAM_STACK_TOP - sp) as usize);
    let (_, _, aux) = stack::parse(sp, &bytes).unwrap();
    let get = |t| aux.iter().find(|(k, _)| *k == t).unwrap().1;
    assert_eq!(get(auxv::AT_HWCAP), auxv::hwcaps(cpu_id).0);
    assert_eq!(
        get(auxv::AT_HWCAP) & 0b1001_1000,
        0b1001_1000,
        "AES PMULL CRC32"
    );
}

#[test]
fn refuses_a_bad_program() {
    let load = |file: Vec<u8>| {
        let cfg = Config {
            args: vec!["rom/bad".into()],
            program_ds: PROGRAM,
            ..Default::default()
        };
        let mut rt = Runtime::new(Fake::new(file), cfg);
        let e = rt.load().unwrap_err();
        assert_eq!(rt.thread_count(), 0);
        e.0
    };
    let e = load(b"#!/bin/sh\necho hi\n".repeat(10));
    assert!(e.contains("not an ELF"), "{e}");
    // Cut inside the program headers.
    let e = load(program()[..100].to_vec());
    assert!(e.contains("program-header table"), "{e}");
    // Needs a dynamic linker.
    let mut f = program();
    let interp = 3u32.to_le_bytes();
    f[64..68].copy_from_slice(&interp);
    let e = load(f);
    assert!(e.contains("PT_INTERP"), "{e}");
    // Nothing left of it.
    let e = load(Vec::new());
    assert!(e.contains("too short"), "{e}");
}

#[test]
fn segment_rights_follow_the_elf_flags() {
    let seg = |flags| Segment {
        index: 0,
        vaddr: 0,
        memsz: 1,
        offset: 0,
        filesz: 0,
        flags,
    };
    assert_eq!(segment_prot(&seg(PF_R | PF_X)), Prot::RX);
    assert_eq!(segment_prot(&seg(PF_R | PF_W)), Prot::RW);
    // Writable implies readable.
    assert_eq!(segment_prot(&seg(PF_W)), Prot::RW);
    assert_eq!(segment_prot(&seg(0)), Prot::NONE);
}
