use std::io::Write;

use bootstrap_format::Payload;
use flate2::write::GzEncoder;

use super::*;
use crate::testutil::{EM_AARCH64, EM_X86_64, ET_DYN, ET_EXEC, Segment, TempDir, elf, program};

/// Size of the stand-in boot stage's flat image: 0x1000 of code and data
/// (starting with the Image header), a gap, a second segment with bss.
const STAGE_SPAN: u64 = 0x2000 + 0x300;
/// Where the stand-in boot stage is linked.
const STAGE_BASE: u64 = 0x4020_0000;

/// An arm64 Image header followed by some code.
fn stage_text() -> Vec<u8> {
    let mut text = vec![0u8; 0x1000];
    text[0..4].copy_from_slice(&[0x13, 0x00, 0x00, 0x14]); // b +0x4c, like Linux
    text[8..16].copy_from_slice(&0x20_0000u64.to_le_bytes()); // text_offset
    text[IMAGE_MAGIC_OFFSET..IMAGE_MAGIC_OFFSET + 4].copy_from_slice(b"ARM\x64");
    text[64..68].copy_from_slice(b"CODE");
    text
}

fn stage_elf(text: &[u8]) -> Vec<u8> {
    elf(
        EM_AARCH64,
        ET_EXEC,
        &[
            Segment {
                vaddr: STAGE_BASE,
                data: text,
                memsz: text.len() as u64,
            },
            Segment {
                vaddr: STAGE_BASE + 0x2000,
                data: b"DATA",
                memsz: 0x300,
            },
        ],
    )
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut encoder = GzEncoder::new(Vec::new(), flate2::Compression::default());
    encoder.write_all(data).unwrap();
    encoder.finish().unwrap()
}

fn gunzip(data: &[u8]) -> Vec<u8> {
    let mut plain = Vec::new();
    MultiGzDecoder::new(data).read_to_end(&mut plain).unwrap();
    plain
}

/// A scratch tree with a boot stage, kernel and root task and a `files/`
/// search directory.
struct Setup {
    dir: TempDir,
    opts: BuildOptions,
}

impl Setup {
    fn new(tag: &str, list: &str) -> Self {
        let dir = TempDir::new(tag);
        let kernel = dir.write("build/kernel.elf", program(b"KERNEL"));
        let moe = dir.write("build/moe.elf", program(b"MOE"));
        let opts = BuildOptions {
            modules_list: dir.write("conf/modules.list", list),
            entry: "e".to_string(),
            search_path: vec![dir.path().join("files"), dir.path().join("more")],
            aliases: vec![("fiasco".into(), kernel), ("moe".into(), moe)],
            stage_elf: dir.write("build/stage.elf", stage_elf(&stage_text())),
            shell_env: vec![("SRC_BASE_ABS".into(), dir.path().display().to_string())],
            roottask_options: Vec::new(),
            output: dir.path().join("out/image.bin"),
        };
        Setup { dir, opts }
    }

    fn build(&self) -> Result<BuildReport, BuildError> {
        build_image(&self.opts)
    }

    fn error(&self) -> String {
        self.build().expect_err("the build should fail").to_string()
    }

    /// [`Setup::error`] with the test's directory written `<dir>`.
    fn error_at_dir(&self) -> String {
        let dir = self.dir.path().display().to_string();
        self.error().replace(&dir, "<dir>")
    }
}

/// The image as QEMU loads the ELF file: its segments in order, the
/// first at the stage's address, the gaps between them (padding before a
/// module) zero.
fn image_of(file: &[u8]) -> Vec<u8> {
    let elf = Elf::parse(file).unwrap();
    assert_eq!(elf.header.e_machine, EM_AARCH64);
    assert_eq!(elf.header.e_type, ET_EXEC);
    assert_eq!(elf.entry, STAGE_BASE);
    let phs = &elf.program_headers;
    assert!(!phs.is_empty());
    assert_eq!((phs[0].p_vaddr, phs[0].p_offset), (STAGE_BASE, PAGE));
    let mut image = Vec::new();
    for ph in phs {
        assert_eq!(ph.p_type, PT_LOAD);
        assert_eq!(ph.p_vaddr, ph.p_paddr);
        assert_eq!(ph.p_filesz, ph.p_memsz);
        let at = (ph.p_vaddr - STAGE_BASE) as usize;
        assert!(at >= image.len(), "segments in order, apart");
        image.resize(at, 0);
        let (o, n) = (ph.p_offset as usize, ph.p_filesz as usize);
        image.extend_from_slice(&file[o..o + n]);
    }
    let last = phs.last().unwrap();
    assert_eq!(last.p_offset + last.p_filesz, file.len() as u64);
    image
}

fn payload(image: &[u8], stage_size: u64) -> Payload<'_> {
    let at = stage_size.div_ceil(PAGE) * PAGE;
    let bytes = &image[at as usize..];
    assert_eq!(Payload::total_size(bytes).unwrap(), bytes.len() as u64);
    Payload::parse(bytes).unwrap()
}

#[test]
fn builds_a_whole_image() {
    let list = "\
default-kernel fiasco -serial_esc
group common
module l4re
entry e
roottask moe rom/hello.ned
module-group common
module hello.ned
module[uncompress] Image.gz
module plain.gz
module[fname=renamed.cfg] sub/orig.cfg arg1 arg2
module[compress=gz] big.txt
module[glob] *.dtb
module[shell] echo $SRC_BASE_ABS/files/vmm.lua $SRC_BASE_ABS/pkg/uvmm/configs/gone.lua
";
    let setup = Setup::new("whole", list);
    let dir = &setup.dir;
    let linux = vec![0xa5u8; 10_000];
    dir.write("files/l4re", b"L4RE");
    dir.write("files/hello.ned", b"local L4 = require(\"L4\");");
    dir.write("files/Image.gz", gzip(&linux));
    dir.write("files/plain.gz", gzip(b"stays compressed"));
    dir.write("files/sub/orig.cfg", b"cfg");
    dir.write("files/big.txt", b"some text to compress");
    dir.write("files/b.dtb", b"B");
    dir.write("more/a.dtb", b"A");
    dir.write("more/b.dtb", b"hidden by files/b.dtb");
    dir.write("more/.hidden.dtb", b"not matched");
    dir.write("files/vmm.lua", b"-- vmm");
    dir.write("more/gone.lua", b"-- found by its name");

    let report = setup.build().unwrap();
    let file = fs::read(&report.image).unwrap();
    assert_eq!(report.image, setup.opts.output);
    assert_eq!(report.image_size, file.len() as u64);
    let image = image_of(&file);
    assert_eq!(report.stage_size, STAGE_SPAN);

    // The flat stage: both segments at their offsets, gap and bss zeroed.
    assert_eq!(
        &image[..0x1000],
        &{
            let mut patched = stage_text();
            patched[16..24].copy_from_slice(&(image.len() as u64).to_le_bytes());
            patched
        }[..]
    );
    assert!(image[0x1000..0x2000].iter().all(|&b| b == 0));
    assert_eq!(&image[0x2000..0x2004], b"DATA");
    assert!(image[0x2004..0x3000].iter().all(|&b| b == 0));
    assert_eq!(
        u64::from_le_bytes(image[16..24].try_into().unwrap()),
        image.len() as u64
    );

    // The padding before modules is not in the file.
    assert!(file.len() < image.len());
    let payload = payload(&image, report.stage_size);
    let modules: Vec<_> = payload.modules().collect();
    let summary: Vec<(Kind, &str, &str)> = modules
        .iter()
        .map(|m| (m.kind, m.name, m.cmdline))
        .collect();
    assert_eq!(
        summary,
        [
            (Kind::Kernel, "fiasco", "-serial_esc"),
            (Kind::Roottask, "moe", "rom/hello.ned"),
            (Kind::Module, "l4re", ""),
            (Kind::Module, "hello.ned", ""),
            (Kind::Module, "Image.gz", ""),
            (Kind::Module, "plain.gz", ""),
            (Kind::Module, "renamed.cfg", "arg1 arg2"),
            (Kind::Module, "big.txt", ""),
            (Kind::Module, "b.dtb", ""),
            (Kind::Module, "a.dtb", ""),
            (Kind::Module, "vmm.lua", ""),
            (Kind::Module, "gone.lua", ""),
        ]
    );
    assert_eq!(modules[0].data, program(b"KERNEL"));
    assert_eq!(modules[1].data, program(b"MOE"));
    assert_eq!(modules[2].data, b"L4RE");
    assert_eq!(modules[4].data, linux, "uncompressed at build time");
    assert_eq!(gunzip(modules[5].data), b"stays compressed");
    assert_eq!(gunzip(modules[7].data), b"some text to compress");
    assert_eq!(modules[8].data, b"B");
    assert_eq!(modules[9].data, b"A");
    assert_eq!(modules[11].data, b"-- found by its name");

    for (packed, module) in report.modules.iter().zip(&modules) {
        assert_eq!(
            (packed.kind, packed.name.as_str()),
            (module.kind, module.name)
        );
        assert_eq!(packed.cmdline, module.cmdline);
        assert_eq!(packed.size, module.data.len() as u64);
    }
    assert_eq!(report.modules.len(), modules.len());
    assert_eq!(report.modules[0].source, setup.opts.aliases[0].1);
    assert_eq!(report.modules[4].source, dir.path().join("files/Image.gz"));
    assert_eq!(report.modules[9].source, dir.path().join("more/a.dtb"));
    assert_eq!(report.modules[11].source, dir.path().join("more/gone.lua"));
    assert_eq!(report.notes.len(), 1, "{:?}", report.notes);
    let note = &report.notes[0];
    assert!(
        note.contains("modules.list:13: module[shell] printed"),
        "{note}"
    );
    assert!(
        note.contains("pkg/uvmm/configs/gone.lua', which does not exist; using"),
        "{note}"
    );
}

#[test]
fn search_order() {
    let list = "\
searchpath listdir
entry e
kernel fiasco
roottask moe
module one
module two
module three
";
    let setup = Setup::new("order", list);
    let dir = &setup.dir;
    dir.write("conf/listdir/one", b"list");
    dir.write("conf/listdir/two", b"list");
    dir.write("conf/listdir/three", b"list");
    dir.write("more/one", b"more");
    dir.write("more/two", b"more");
    dir.write("files/one", b"files");
    let report = setup.build().unwrap();
    let sources: Vec<_> = report.modules[2..]
        .iter()
        .map(|m| m.source.clone())
        .collect();
    assert_eq!(
        sources,
        [
            dir.path().join("files/one"),
            dir.path().join("more/two"),
            dir.path().join("conf/listdir/three"),
        ]
    );
}

#[test]
fn paths_as_written_and_missing_aliases() {
    let setup = Setup::new("as-written", "");
    let dir = &setup.dir;
    let abs = dir.write("elsewhere/abs.bin", b"abs");
    let list = format!(
        "entry e\nkernel fiasco\nroottask moe\nmodule {}\nmodule bootstrap\n",
        abs.display()
    );
    fs::write(&setup.opts.modules_list, list).unwrap();
    let mut opts = setup.opts;
    opts.aliases
        .push(("bootstrap".into(), dir.path().join("build/not-built")));
    dir.write("files/bootstrap", b"from the search path");
    let report = build_image(&opts).unwrap();
    assert_eq!(report.modules[2].source, abs);
    assert_eq!(report.modules[2].name, "abs.bin");
    assert_eq!(report.modules[3].source, dir.path().join("files/bootstrap"));
}

/// Lists whose build fails: the error names the line and what was looked
/// at.
#[test]
fn list_errors_name_the_line_and_the_places_looked_at() {
    let entry = "entry e\nkernel fiasco\nroottask moe\n";
    for (tag, module, want) in [
        (
            "missing",
            "\nmodule ned",
            "<dir>/conf/modules.list:5: module 'ned' not found; looked at:\n  ned\n  \
             <dir>/files/ned\n  <dir>/more/ned",
        ),
        (
            "shell-fails",
            "module[shell] echo oops >&2; exit 3",
            "<dir>/conf/modules.list:4: module[shell] 'echo oops >&2; exit 3': failed (exit \
             status: 3): oops",
        ),
        (
            "shell-silent",
            "module[shell] true",
            "<dir>/conf/modules.list:4: module[shell] 'true': printed no file names",
        ),
        (
            "shell-missing",
            "module[shell] echo /no/such/x.lua",
            "<dir>/conf/modules.list:4: module[shell] output '/no/such/x.lua' not found; looked \
             at:\n  /no/such/x.lua\n  x.lua\n  <dir>/files/x.lua\n  <dir>/more/x.lua",
        ),
        (
            "glob",
            "module[glob] *.dtb",
            "<dir>/conf/modules.list:4: module[glob] '*.dtb' matches no file in:\n  \
             <dir>/files\n  <dir>/more",
        ),
    ] {
        let setup = Setup::new(tag, &format!("{entry}{module}\n"));
        assert_eq!(setup.error_at_dir(), want, "{tag}");
    }
}

#[test]
fn missing_kernel_names_its_alias() {
    let setup = Setup::new("missing-kernel", "entry e\nkernel fiasco\nroottask moe\n");
    fs::remove_file(&setup.opts.aliases[0].1).unwrap();
    let d = setup.dir.path().display();
    assert_eq!(
        setup.error(),
        format!(
            "{d}/conf/modules.list:2: kernel 'fiasco' not found; looked at:\n  \
             {d}/build/kernel.elf\n  fiasco\n  {d}/files/fiasco\n  {d}/more/fiasco"
        )
    );
}

#[test]
fn roottask_options_come_first() {
    for (tag, args, want) in [
        ("options-alone", "", "--l4re-dbg=4"),
        ("options-first", " rom/x.ned", "--l4re-dbg=4 rom/x.ned"),
    ] {
        let list = format!("entry e\nkernel fiasco\nroottask moe{args}\n");
        let mut setup = Setup::new(tag, &list);
        setup.opts.roottask_options = vec!["--l4re-dbg=4".into()];
        let report = setup.build().unwrap();
        assert_eq!(report.modules[1].cmdline, want);
        let file = fs::read(&report.image).unwrap();
        let image = image_of(&file);
        let payload = payload(&image, report.stage_size);
        assert_eq!(payload.modules().nth(1).unwrap().cmdline, want);
    }
}

#[test]
fn list_errors_pass_through() {
    let setup = Setup::new("list-error", "entry e\nkernel fiasco\nroottask moe\n");
    let mut opts = setup.opts;
    opts.entry = "other".into();
    let e = build_image(&opts).unwrap_err();
    assert!(matches!(e, BuildError::List(_)));
    assert!(e.to_string().ends_with("(available: e)"), "{e}");
}

#[test]
fn kernel_and_roottask_must_be_aarch64_executables() {
    let setup = Setup::new("bad-elf", "entry e\nkernel fiasco\nroottask moe\n");
    let d = setup.dir.path().display();
    let kernel = &setup.opts.aliases[0].1;
    let at = format!("{d}/conf/modules.list:2: kernel '{d}/build/kernel.elf'");
    let cases: [(Vec<u8>, &str); 3] = [
        (b"#!/bin/sh\n".to_vec(), "is not a valid ELF file ("),
        (
            elf(EM_X86_64, ET_EXEC, &[]),
            "is for machine X86_64 (62), expected AARCH64 (183)",
        ),
        (
            elf(EM_AARCH64, ET_DYN, &[]),
            "has type ET_DYN (3), expected an executable (ET_EXEC)",
        ),
    ];
    for (data, problem) in cases {
        fs::write(kernel, data).unwrap();
        let e = setup.error();
        assert!(e.starts_with(&format!("{at} {problem}")), "{e}");
    }
    fs::write(kernel, elf(EM_AARCH64, ET_EXEC, &[])).unwrap();
    assert_eq!(
        setup.error(),
        format!("{at} has no loadable (PT_LOAD) segment")
    );

    let mut big_endian = program(b"K");
    big_endian[5] = 2;
    fs::write(kernel, big_endian).unwrap();
    assert!(setup.error().starts_with(&at));

    fs::write(kernel, program(b"K")).unwrap();
    let mut elf32 = program(b"M");
    elf32[4] = 1;
    fs::write(&setup.opts.aliases[1].1, elf32).unwrap();
    let e = setup.error();
    assert!(
        e.starts_with(&format!(
            "{d}/conf/modules.list:3: root task '{d}/build/moe.elf'"
        )),
        "{e}"
    );
}

#[test]
fn stage_needs_an_image_header() {
    let setup = Setup::new("stage", "entry e\nkernel fiasco\nroottask moe\n");
    let d = setup.dir.path().display();
    fs::write(&setup.opts.stage_elf, stage_elf(&[0u8; 0x1000])).unwrap();
    assert_eq!(
        setup.error(),
        format!(
            "boot stage '{d}/build/stage.elf' has no arm64 Image header (magic \"ARM\\x64\" at \
             offset 56 of its flat image)"
        )
    );
    fs::write(&setup.opts.stage_elf, program(b"tiny")).unwrap();
    assert!(setup.error().contains("has no arm64 Image header"));
    fs::remove_file(&setup.opts.stage_elf).unwrap();
    assert!(
        setup
            .error()
            .starts_with(&format!("cannot read '{d}/build/stage.elf': ")),
        "{}",
        setup.error()
    );
}

#[test]
fn flatten_checks_segments() {
    let text = stage_text();
    let good = stage_elf(&text);
    let headers = Elf::parse(&good).unwrap().program_headers;
    let (base, flat) = flatten(&good, &headers).unwrap();
    assert_eq!((base, flat.len() as u64), (STAGE_BASE, STAGE_SPAN));

    let mut beyond_file = headers.clone();
    beyond_file[1].p_filesz = 0x1000;
    beyond_file[1].p_memsz = 0x1000;
    assert_eq!(flatten(&good, &beyond_file), Err(ElfProblem::BadSegment(1)));

    let mut file_larger_than_memory = headers.clone();
    file_larger_than_memory[1].p_memsz = 2;
    assert_eq!(
        flatten(&good, &file_larger_than_memory),
        Err(ElfProblem::BadSegment(1))
    );

    let mut far_apart = headers.clone();
    far_apart[1].p_vaddr = 0x8000_0000;
    assert!(matches!(
        flatten(&good, &far_apart),
        Err(ElfProblem::TooLarge(_))
    ));

    let mut wrapping = headers;
    wrapping[1].p_vaddr = u64::MAX;
    assert_eq!(flatten(&good, &wrapping), Err(ElfProblem::BadSegment(1)));
}

#[test]
fn shell_env_is_passed() {
    let setup = Setup::new(
        "shell-env",
        "entry e\nkernel fiasco\nroottask moe\nmodule[shell] echo $SRC_BASE_ABS/files/a $SRC_BASE_ABS/files/b\n",
    );
    setup.dir.write("files/a", b"a");
    setup.dir.write("files/b", b"b");
    let report = setup.build().unwrap();
    let names: Vec<_> = report.modules.iter().map(|m| m.name.as_str()).collect();
    assert_eq!(names, ["fiasco", "moe", "a", "b"]);
    assert!(report.notes.is_empty());
}

#[test]
fn glob_with_directory_and_absolute_patterns() {
    let setup = Setup::new("glob-dir", "");
    let dir = &setup.dir;
    dir.write("files/dtb/x-1.dtb", b"1");
    dir.write("files/dtb/x-22.dtb", b"22");
    dir.write("files/dtb/y.dtb", b"y");
    dir.write("abs/q.bin", b"q");
    let list = format!(
        "entry e\nkernel fiasco\nroottask moe\nmodule[glob] dtb/x-*.dtb\nmodule[glob] {}/?.bin\n",
        dir.path().join("abs").display()
    );
    fs::write(&setup.opts.modules_list, list).unwrap();
    let report = setup.build().unwrap();
    let names: Vec<_> = report.modules[2..]
        .iter()
        .map(|m| m.name.as_str())
        .collect();
    assert_eq!(names, ["x-1.dtb", "x-22.dtb", "q.bin"]);
}

#[test]
fn wildcards() {
    let cases = [
        ("*", "anything", true),
        ("*.dtb", "virt.dtb", true),
        ("*.dtb", "virt.dtbo", false),
        ("v?rt*", "virt-arm.dtb", true),
        ("v?rt*", "vrt", false),
        ("a*b*c", "aXXbYYbZc", true),
        ("a*b*c", "aXXbYY", false),
        ("exact", "exact", true),
        ("exact", "exactly", false),
        ("**", "", true),
        ("*", ".hidden", false),
        (".*", ".hidden", true),
    ];
    for (pattern, name, expected) in cases {
        assert_eq!(
            wildcard_match(pattern, name),
            expected,
            "{pattern} vs {name}"
        );
    }
}

#[test]
fn assemble_pads_to_a_page_and_patches_the_size() {
    let mut stage = stage_text();
    stage.truncate(100);
    let image = assemble(stage, &[1, 2, 3]);
    assert_eq!(image.len(), 4096 + 3);
    assert_eq!(&image[4096..], [1, 2, 3]);
    assert_eq!(u64::from_le_bytes(image[16..24].try_into().unwrap()), 4099);
    assert!(image[100..4096].iter().all(|&b| b == 0));
}
