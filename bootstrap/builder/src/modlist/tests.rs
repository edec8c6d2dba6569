use super::*;
use crate::testutil::TempDir;

// The modules.list entries quoted in the seeds, verbatim.

const HELLO_NED: &str = "\
entry hello-ned
roottask moe rom/hello.ned
module l4re
module ned
module hello.ned
module hello
";

const UVMM: &str = "\
entry uvmm
roottask moe rom/uvmm.ned
module l4re
module ned
module uvmm.ned
module uvmm
module virt-arm_virt.dtb
module ramdisk-armv8.cpio.gz
module Image.gz
";

const UVMM_2VM: &str = "\
entry uvmm-2vm
roottask moe rom/uvmm-2vm.ned
module l4re
module uvmm
module ned
module uvmm-2vm.ned
module uvmm
module cons
module[shell] echo $SRC_BASE_ABS/pkg/uvmm/configs/vmm.lua
module virt-arm_virt.dtb
module ramdisk-armv8.cpio.gz
module Image.gz
";

const UVMM_2VM_NET: &str = "\
entry uvmm-2vm-net
roottask moe rom/uvmm-2vm-net.ned
module l4re
module uvmm
module ned
module uvmm-2vm-net.ned
module uvmm
module cons
module l4vio_net_p2p
module[shell] echo $SRC_BASE_ABS/pkg/uvmm/configs/vmm.lua
module virt-arm_virt.dtb
module ramdisk-armv8.cpio.gz
module Image.gz
";

const UVMM_2VM_NET_IO: &str = "\
entry uvmm-2vm-net-io
roottask moe rom/uvmm-2vm-net-io.ned
module l4re
module uvmm
module ned
module uvmm-2vm-net-io.ned
module uvmm
module cons
module l4vio_net_p2p
module io
module io.cfg
module vm_hw.vbus
module[shell] echo $SRC_BASE_ABS/pkg/uvmm/configs/vmm.lua
module virt-arm_virt.dtb
module ramdisk-armv8.cpio.gz
module Image.gz
";

const UVMM_STATICPART: &str = "\
entry uvmm-staticpart
kernel fiasco -serial_esc
roottask moe rom/uvmm-staticpart.ned
module uvmm
module l4re
module ned
module virt-arm_virt-64.dtb
module virt-arm_virt-64-pl031.dtb
module ramdisk-armv8-64.cpio.gz
module uvmm-staticpart.ned
module[uncompress] Image.gz
module cons
module io
module io.cfg
module vm1_hw.vbus
";

const SEEDS: [&str; 6] = [
    HELLO_NED,
    UVMM,
    UVMM_2VM,
    UVMM_2VM_NET,
    UVMM_2VM_NET_IO,
    UVMM_STATICPART,
];

const DEFAULTS: &str = "default-kernel fiasco -serial_esc\n";

fn parse(text: &str) -> Result<ModulesList, ModListError> {
    ModulesList::parse(text, Path::new("modules.list"))
}

/// The error text for `text`, which must not parse.
fn error(text: &str) -> String {
    parse(text).expect_err("should not parse").to_string()
}

fn names(entry: &Entry) -> Vec<&str> {
    entry.modules.iter().map(ModSpec::name).collect()
}

fn all_seeds() -> String {
    let mut text = DEFAULTS.to_string();
    for seed in SEEDS {
        text.push('\n');
        text.push_str(seed);
    }
    text
}

#[test]
fn seed_entries_parse() {
    let list = parse(&all_seeds()).unwrap();
    let expected = [
        "hello-ned",
        "uvmm",
        "uvmm-2vm",
        "uvmm-2vm-net",
        "uvmm-2vm-net-io",
        "uvmm-staticpart",
    ];
    assert_eq!(list.entries().collect::<Vec<_>>(), expected);
    for (name, seed) in expected.iter().zip(SEEDS) {
        let entry = list.entry(name).unwrap();
        let module_lines = seed.lines().filter(|l| l.starts_with("module")).count();
        assert_eq!(entry.modules.len(), module_lines, "{name}");
        assert_eq!(entry.kernel.file, "fiasco");
        assert_eq!(entry.kernel.cmdline(), "-serial_esc");
        assert_eq!(entry.roottask.name(), "moe");
        let roottask_line = seed.lines().find(|l| l.starts_with("roottask")).unwrap();
        assert_eq!(
            format!("roottask moe {}", entry.roottask.cmdline()),
            roottask_line
        );
    }
}

#[test]
fn hello_ned_uses_the_default_kernel() {
    let list = parse(&format!("{DEFAULTS}{HELLO_NED}")).unwrap();
    let entry = list.entry("hello-ned").unwrap();
    assert_eq!(entry.name, "hello-ned");
    assert_eq!(entry.line, 2);
    assert_eq!(entry.kernel.line, 1, "taken from the default-kernel line");
    assert_eq!(entry.roottask.args, ["rom/hello.ned"]);
    assert_eq!(entry.roottask.line, 3);
    assert_eq!(names(entry), ["l4re", "ned", "hello.ned", "hello"]);
    assert!(entry.modules.iter().all(|m| m.args.is_empty()));
    assert_eq!(entry.modules[3].at().to_string(), "modules.list:7");
}

#[test]
fn uvmm_staticpart_options() {
    let list = parse(UVMM_STATICPART).unwrap();
    let entry = list.entry("uvmm-staticpart").unwrap();
    let image = entry.modules.iter().find(|m| m.file == "Image.gz").unwrap();
    assert!(image.opts.uncompress);
    assert_eq!(image.name(), "Image.gz");
    assert_eq!(image.line, 11);
    let others = entry.modules.iter().filter(|m| m.file != "Image.gz");
    assert!(others.into_iter().all(|m| m.opts == ModOpts::default()));
}

#[test]
fn shell_module_keeps_the_whole_command() {
    let list = parse(&format!("{DEFAULTS}{UVMM_2VM}")).unwrap();
    let entry = list.entry("uvmm-2vm").unwrap();
    let shell = &entry.modules[6];
    assert!(shell.opts.shell);
    assert_eq!(shell.file, "echo $SRC_BASE_ABS/pkg/uvmm/configs/vmm.lua");
    assert!(shell.args.is_empty());
    // `module uvmm` appears twice in the seed; both are kept.
    assert_eq!(names(entry).iter().filter(|n| **n == "uvmm").count(), 2);
}

#[test]
fn entry_lookup() {
    let list = parse(&all_seeds()).unwrap();
    assert_eq!(
        list.entry("UVMM").unwrap().name,
        "uvmm",
        "case is ignored as in L4Re"
    );
    let e = list.entry("nope").unwrap_err().to_string();
    assert_eq!(
        e,
        "no entry 'nope' in modules.list (available: hello-ned, uvmm, uvmm-2vm, uvmm-2vm-net, \
         uvmm-2vm-net-io, uvmm-staticpart)"
    );
    let empty = parse("# nothing\n").unwrap();
    assert_eq!(
        empty.entry("x").unwrap_err().to_string(),
        "no entry 'x' in modules.list (available: none)"
    );
}

#[test]
fn comments_blank_lines_and_whitespace() {
    let text = "\
# a comment
   default-kernel   fiasco   -serial_esc   # trailing comment

\tdefault-roottask moe#not-a-comment
entry   a   # the entry
  module  x#y   arg1   arg2  # comment
";
    let list = parse(text).unwrap();
    let entry = list.entry("a").unwrap();
    assert_eq!(entry.kernel.args, ["-serial_esc"]);
    assert_eq!(entry.roottask.file, "moe#not-a-comment");
    assert_eq!(entry.modules[0].file, "x#y");
    assert_eq!(entry.modules[0].cmdline(), "arg1 arg2");
    assert_eq!(entry.modules[0].line, 6);
}

#[test]
fn keywords_are_case_insensitive_and_bin_data_title_are_modules_and_entries() {
    let text = "title t\nKERNEL k\nRoottask r\nbin b\ndata d\nmodule m\n";
    let list = parse(text).unwrap();
    assert_eq!(names(list.entry("t").unwrap()), ["b", "d", "m"]);
}

#[test]
fn entry_lines_override_defaults() {
    let text = "\
default-kernel fiasco -serial_esc
default-roottask moe rom/default.ned
default-sigma0 sigma0
default-bootstrap bootstrap -modaddr 0x1000
entry own
kernel other -wait
roottask moe rom/own.ned
sigma0 s0
bootstrap bs
entry inherits
";
    let list = parse(text).unwrap();
    let own = list.entry("own").unwrap();
    assert_eq!(
        (own.kernel.file.as_str(), own.kernel.cmdline()),
        ("other", "-wait".into())
    );
    assert_eq!(own.roottask.cmdline(), "rom/own.ned");
    assert_eq!(own.sigma0.as_ref().unwrap().file, "s0");
    assert_eq!(own.bootstrap.as_ref().unwrap().file, "bs");
    let inherits = list.entry("inherits").unwrap();
    assert_eq!(inherits.kernel.cmdline(), "-serial_esc");
    assert_eq!(inherits.roottask.cmdline(), "rom/default.ned");
    assert_eq!(inherits.sigma0.as_ref().unwrap().file, "sigma0");
    assert_eq!(
        inherits.bootstrap.as_ref().unwrap().cmdline(),
        "-modaddr 0x1000"
    );
}

#[test]
fn defaults_apply_wherever_they_are_written() {
    let list = parse("entry a\nroottask moe\ndefault-kernel fiasco\n").unwrap();
    assert_eq!(list.entry("a").unwrap().kernel.file, "fiasco");
}

#[test]
fn missing_kernel_or_roottask() {
    assert_eq!(
        error(HELLO_NED),
        "modules.list:1: entry 'hello-ned' has no kernel: add a 'kernel' line to it or a \
         'default-kernel' line"
    );
    assert_eq!(
        error("default-kernel fiasco\nentry a\nmodule x\n"),
        "modules.list:2: entry 'a' has no roottask: add a 'roottask' line to it or a \
         'default-roottask' line"
    );
}

#[test]
fn no_defaults() {
    let base = "default-kernel fiasco\ndefault-roottask moe\ndefault-sigma0 sigma0\n";
    assert_eq!(
        error(&format!("{base}entry[no-defaults] bare\nroottask moe\n")),
        "modules.list:4: entry[no-defaults] 'bare' has no 'kernel' line"
    );
    let list = parse(&format!(
        "{base}entry[no-defaults] bare\nkernel k\nroottask r\n"
    ))
    .unwrap();
    let bare = list.entry("bare").unwrap();
    assert_eq!(
        (bare.kernel.file.as_str(), bare.roottask.file.as_str()),
        ("k", "r")
    );
    assert_eq!(bare.sigma0, None);
}

#[test]
fn moe_shorthand() {
    let list = parse(&format!(
        "{DEFAULTS}entry a\nmoe configs/hello.cfg\nmodule x\n"
    ))
    .unwrap();
    let entry = list.entry("a").unwrap();
    assert_eq!(entry.roottask.file, "moe");
    assert_eq!(entry.roottask.args, ["rom/hello.cfg"]);
    assert_eq!(entry.modules[0].file, "configs/hello.cfg");
    assert_eq!(names(entry), ["hello.cfg", "x"]);
    let list = parse(&format!("{DEFAULTS}entry a\nmoe[fname=b.cfg] a.cfg\n")).unwrap();
    assert_eq!(list.entry("a").unwrap().roottask.cmdline(), "rom/b.cfg");
    assert_eq!(
        error(&format!("{DEFAULTS}entry a\nroottask moe\nmoe x.cfg\n")),
        "modules.list:4: entry 'a' already has a roottask (line 3)"
    );
}

#[test]
fn options() {
    let text = format!(
        "{DEFAULTS}entry a\nroottask moe\n\
         module[uncompress, fname=vmlinux] Image.gz\n\
         module[glob] *.dtb\n\
         module[nostrip,compress=gz] big\n\
         module[shell]   echo   a  b   # comment\n\
         module[arch=arm64] for-arm64\n\
         module[arch=amd64|aarch64] for-both\n\
         module[arch=amd64] for-amd64\n\
         module[arch=arm|riscv] for-others\n"
    );
    let list = parse(&text).unwrap();
    let m = &list.entry("a").unwrap().modules;
    assert_eq!(m.len(), 6);
    assert!(m[0].opts.uncompress);
    assert_eq!(m[0].name(), "vmlinux");
    assert_eq!(m[0].name_for("other/file"), "vmlinux");
    assert!(m[1].opts.glob);
    assert_eq!(m[1].file, "*.dtb");
    assert!(m[2].opts.nostrip);
    assert_eq!(m[2].opts.compress, Some(Compression::Gzip));
    assert_eq!(m[3].file, "echo   a  b");
    assert_eq!(m[4].file, "for-arm64");
    assert_eq!(m[4].opts.arch, ["arm64"]);
    assert_eq!(m[5].file, "for-both");
}

#[test]
fn option_errors() {
    let in_entry = |line: &str| error(&format!("{DEFAULTS}entry a\nroottask moe\n{line}\n"));
    assert_eq!(
        in_entry("module[uncompres] x"),
        "modules.list:4: unknown option 'uncompres' in 'module[...]' (expected shell, glob, \
         uncompress, fname, nostrip, compress, arch, no-defaults)"
    );
    assert_eq!(
        in_entry("kernel[shell] echo k"),
        "modules.list:4: option 'shell' is not allowed on 'kernel' (allowed: uncompress, fname, \
         nostrip, arch)"
    );
    assert_eq!(
        in_entry("module-group[glob] g"),
        "modules.list:4: option 'glob' is not allowed on 'module-group' (allowed: arch)"
    );
    assert_eq!(
        in_entry("module[fname] x"),
        "modules.list:4: option 'fname' needs a value: a file name without '/'"
    );
    assert_eq!(
        in_entry("module[fname=a/b] x"),
        "modules.list:4: option 'fname=a/b': expected a file name without '/'"
    );
    assert_eq!(
        in_entry("module[compress=xz] x"),
        "modules.list:4: option 'compress=xz': expected gz"
    );
    assert_eq!(
        in_entry("module[arch=] x"),
        "modules.list:4: option 'arch=': expected architectures such as arm64|amd64"
    );
    assert_eq!(
        in_entry("module[shell=yes] x"),
        "modules.list:4: option 'shell=yes': expected no value"
    );
    assert_eq!(
        in_entry("module[shell,glob] x"),
        "modules.list:4: options 'shell' and 'glob' cannot be combined"
    );
    assert_eq!(
        in_entry("module[shell x"),
        "modules.list:4: 'module[' has no closing ']'"
    );
    assert_eq!(
        in_entry("module[shell]"),
        "modules.list:4: 'module' needs a shell command"
    );
    assert_eq!(
        error("entry[arch=arm64] a\n"),
        "modules.list:1: option 'arch' is not allowed on 'entry' (allowed: no-defaults)"
    );
    assert_eq!(
        error("group[x] g\n"),
        "modules.list:1: unknown option 'x' in 'group[...]' (expected shell, glob, uncompress, \
         fname, nostrip, compress, arch, no-defaults)"
    );
}

#[test]
fn syntax_errors() {
    let in_entry = |line: &str| error(&format!("{DEFAULTS}entry a\nroottask moe\n{line}\n"));
    assert_eq!(
        in_entry("module"),
        "modules.list:4: 'module' needs a file name"
    );
    assert_eq!(
        in_entry("  kernel  # no file"),
        "modules.list:4: 'kernel' needs a file name"
    );
    assert_eq!(
        in_entry("modul x"),
        "modules.list:4: unknown keyword 'modul' (expected entry, kernel, roottask, module, bin, \
         data, moe, sigma0, bootstrap, module-group, group, include, searchpath, modaddr, \
         default-kernel, default-roottask, default-sigma0, default-bootstrap, title)"
    );
    assert_eq!(error("entry\n"), "modules.list:1: 'entry' needs a name");
    assert_eq!(
        error("entry a b\n"),
        "modules.list:1: 'entry' takes a name only; unexpected 'b'"
    );
    assert_eq!(
        error("modaddr 0x1000 x\n"),
        "modules.list:1: 'modaddr' takes an address only; unexpected 'x'"
    );
    assert_eq!(
        error("modaddr 0x10g\n"),
        "modules.list:1: 'modaddr': '0x10g' is not a number (expected decimal or 0x hex)"
    );
    assert_eq!(
        error("searchpath\n"),
        "modules.list:1: 'searchpath' needs a directory list"
    );
    assert_eq!(
        in_entry("module-group"),
        "modules.list:4: 'module-group' needs a group name"
    );
    assert_eq!(
        in_entry("kernel a\nkernel b"),
        "modules.list:5: entry 'a' already has a kernel (line 4)"
    );
}

#[test]
fn lines_outside_an_entry() {
    let expected = |kw: &str| {
        format!("modules.list:2: '{kw}' outside an entry (expected 'entry NAME' before it)")
    };
    for kw in ["module", "kernel", "roottask", "moe", "bin", "module-group"] {
        assert_eq!(error(&format!("# top\n{kw} x\n")), expected(kw));
    }
}

#[test]
fn duplicate_entries() {
    assert_eq!(
        error(&format!("{DEFAULTS}entry a\nroottask moe\n\nentry a\n")),
        "modules.list:5: duplicate entry 'a' (first defined at modules.list:2)"
    );
}

#[test]
fn modaddr_global_and_per_entry() {
    let text = format!(
        "{DEFAULTS}default-roottask moe\nmodaddr 0x01100000\nentry a\nentry b\nmodaddr 4096\n"
    );
    let list = parse(&text).unwrap();
    assert_eq!(list.modaddr(), Some(0x0110_0000));
    assert_eq!(list.entry("a").unwrap().modaddr, Some(0x0110_0000));
    assert_eq!(list.entry("b").unwrap().modaddr, Some(4096));
}

#[test]
fn searchpath_is_relative_to_the_list() {
    let text = "searchpath a:/abs::b\nsearchpath[arch=amd64] skipped\nsearchpath c\n";
    let list = ModulesList::parse(text, Path::new("conf/modules.list")).unwrap();
    let expected: Vec<PathBuf> = ["conf/a", "/abs", "conf/b", "conf/c"]
        .map(PathBuf::from)
        .into();
    assert_eq!(list.search_path(), expected);
    let list = parse("searchpath x\n").unwrap();
    assert_eq!(list.search_path(), [PathBuf::from("x")]);
}

#[test]
fn groups() {
    let text = format!(
        "{DEFAULTS}default-roottask moe\n\
         group base\nmodule l4re\nmodule ned\n\
         group vm\nmodule uvmm arg\nmodule-group base\n\
         entry a\nmodule first\nmodule-group vm\nmodule last\n\
         entry b\nmodule-group base vm\n"
    );
    let list = parse(&text).unwrap();
    assert_eq!(
        names(list.entry("a").unwrap()),
        ["first", "uvmm", "l4re", "ned", "last"]
    );
    let b = list.entry("b").unwrap();
    assert_eq!(names(b), ["l4re", "ned", "uvmm", "l4re", "ned"]);
    assert_eq!(b.modules[0].line, 4, "group modules keep their own lines");
    assert_eq!(b.modules[2].cmdline(), "arg");
}

#[test]
fn group_errors() {
    assert_eq!(
        error(&format!(
            "{DEFAULTS}group g\nmodule x\nentry a\nmodule-group h\n"
        )),
        "modules.list:5: unknown group 'h' (groups defined before this line: g)"
    );
    assert_eq!(
        error(&format!(
            "{DEFAULTS}entry a\nmodule-group later\ngroup later\n"
        )),
        "modules.list:3: unknown group 'later' (groups defined before this line: none)"
    );
    assert_eq!(
        error("group g\nmodule x\ngroup g\n"),
        "modules.list:3: duplicate group 'g' (first defined at modules.list:1)"
    );
    assert_eq!(
        error("group g\nkernel fiasco\n"),
        "modules.list:2: 'kernel' in group 'g' (a group holds only module lines)"
    );
}

#[test]
fn includes_are_relative_to_the_including_file() {
    let dir = TempDir::new("include");
    dir.write(
        "conf/sub/defaults.list",
        "default-kernel fiasco -serial_esc\nsearchpath bin\n",
    );
    dir.write(
        "conf/sub/more.list",
        "include defaults.list\nentry two\nroottask moe rom/two\n",
    );
    let top = dir.write(
        "conf/modules.list",
        format!("include sub/more.list\n{HELLO_NED}module[arch=x86] include-ignored\n"),
    );
    let list = ModulesList::load(&top).unwrap();
    assert_eq!(list.entries().collect::<Vec<_>>(), ["two", "hello-ned"]);
    let two = list.entry("two").unwrap();
    assert_eq!(two.kernel.source, dir.path().join("conf/sub/defaults.list"));
    assert_eq!(
        two.roottask.at().to_string(),
        format!("{}:3", dir.path().join("conf/sub/more.list").display())
    );
    assert_eq!(list.entry("hello-ned").unwrap().line, 2);
    assert_eq!(list.search_path(), [dir.path().join("conf/sub/bin")]);
}

#[test]
fn include_errors() {
    let dir = TempDir::new("include-errors");
    let a = dir.write("a.list", "# a\ninclude b.list\n");
    dir.write("b.list", "include a.list\n");
    let shown = |name: &str| dir.path().join(name).display().to_string();
    assert_eq!(
        ModulesList::load(&a).unwrap_err().to_string(),
        format!(
            "{}:1: include cycle: {} -> {} -> {}",
            shown("b.list"),
            shown("a.list"),
            shown("b.list"),
            shown("a.list")
        )
    );
    let own = dir.write("own.list", "include own.list\n");
    let e = ModulesList::load(&own).unwrap_err().to_string();
    assert!(e.contains("include cycle"), "{e}");

    let missing = dir.write("missing.list", "\ninclude nothere.list\n");
    let e = ModulesList::load(&missing).unwrap_err().to_string();
    let prefix = format!(
        "{}:2: cannot read '{}': ",
        shown("missing.list"),
        shown("nothere.list")
    );
    assert!(e.starts_with(&prefix), "{e}");

    let e = ModulesList::load(&dir.path().join("none.list"))
        .unwrap_err()
        .to_string();
    assert!(
        e.starts_with(&format!("cannot read '{}': ", shown("none.list"))),
        "{e}"
    );

    let bad = dir.write("bad.list", "include inner.list\n");
    dir.write("inner.list", "\n\nbogus\n");
    let e = ModulesList::load(&bad).unwrap_err().to_string();
    assert!(
        e.starts_with(&format!(
            "{}:3: unknown keyword 'bogus'",
            shown("inner.list")
        )),
        "{e}"
    );
}

#[test]
fn the_same_file_may_be_included_twice_in_a_row() {
    let dir = TempDir::new("include-twice");
    dir.write("g.list", "module shared\n");
    let top = dir.write(
        "top.list",
        format!("{DEFAULTS}default-roottask moe\nentry a\ninclude g.list\ninclude g.list\n"),
    );
    let list = ModulesList::load(&top).unwrap();
    assert_eq!(names(list.entry("a").unwrap()), ["shared", "shared"]);
}

/// The seeds' entries with random lines, words and bytes put in, taken
/// out or changed: parsed, each entry looked up and its command lines
/// made, or an error naming a line; never a panic.
#[test]
fn damaged_lists_parse_or_fail_with_a_line() {
    let good = [HELLO_NED, UVMM].concat();
    let words = [
        "entry",
        "module",
        "roottask",
        "kernel",
        "moe",
        "group",
        "module-group",
        "include",
        "modaddr",
        "searchpath",
        "default-kernel",
        "default-bootstrap",
        "rom/",
        "\"",
        "'",
        "\\",
        "-",
        "--",
        "=",
        "\n",
        " ",
        "\t",
        "#",
        "0x",
        "€",
    ];
    let mut rng = l4_xorshift::XorShift::new(0x2545_f491_4f6c_dd1d);
    let mut next = move || rng.next_u64();
    for i in 0..5_000 {
        let mut text = good.clone();
        for _ in 0..1 + next() % 4 {
            let mut at = (next() % (text.len() as u64 + 1)) as usize;
            while !text.is_char_boundary(at) {
                at -= 1;
            }
            match next() % 3 {
                0 => text.insert_str(at, words[(next() % words.len() as u64) as usize]),
                1 => {
                    let mut end = (at + 1 + (next() % 8) as usize).min(text.len());
                    while !text.is_char_boundary(end) {
                        end -= 1;
                    }
                    text.replace_range(at..end, "");
                }
                _ => text.insert(at, char::from_u32((next() % 0x250) as u32).unwrap_or('x')),
            }
        }
        let r = std::panic::catch_unwind(|| match ModulesList::parse(&text, Path::new("t.list")) {
            Ok(list) => {
                let names: Vec<String> = list.entries().map(str::to_string).collect();
                for n in names {
                    if let Ok(e) = list.entry(&n) {
                        for m in [&e.kernel, &e.roottask].into_iter().chain(&e.modules) {
                            let _ = (m.cmdline(), m.at().to_string(), m.name());
                        }
                    }
                }
                None
            }
            Err(e) => Some(e.to_string()),
        });
        match r {
            Err(_) => panic!("case {i} panicked:\n{text}"),
            Ok(Some(e)) => assert!(e.contains("t.list"), "case {i}: {e}"),
            Ok(None) => {}
        }
    }
}
