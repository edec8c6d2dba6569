//! Every ned script of the seeds, verbatim (`tests/scripts/`, and `conf/`
//! for those modules.list boots: `uvmm.ned`, `uvmm-2vm.ned`), run against
//! the fake backend with the real `conf/vmm.lua`, with what they start.

mod common;

use std::cell::RefCell;
use std::rc::Rc;

use common::{caps, map, ned_with, run};
use ned::backend::StartSpec;
use ned::cmdline;
use ned::fake::{DEFAULT_MEMORY, FakeBackend};

/// `module` lines of seed 003's `uvmm-2vm*` entries (vmm.lua comes from
/// conf/).
const VM_MODULES: &[&str] = &[
    "l4re",
    "uvmm",
    "ned",
    "cons",
    "l4vio_net_p2p",
    "statsclient",
    "io",
    "io.cfg",
    "vm_hw.vbus",
    "virt-arm_virt.dtb",
    "ramdisk-armv8.cpio.gz",
    "Image.gz",
];

const MIB: u64 = 1 << 20;

#[test]
fn hello_from_conf_as_moe_starts_it() {
    // conf/hello.ned, through ned's command line as moe passes it.
    let (ned, fake) = ned_with(FakeBackend::new().with_modules(&["l4re", "ned", "hello"]));
    let cmd = cmdline::parse(["rom/hello.ned"]).unwrap();
    assert_eq!(ned::run(&ned, &cmd), None, "ned stays after the script");
    let fake = fake.borrow();
    assert_eq!(
        fake.log_lines(),
        ["Ned says: Hi World!", "Ned: loading file: 'rom/hello.ned'"]
    );
    let [hello] = fake.started() else {
        panic!("one program: {:?}", fake.started());
    };
    let s = &hello.spec;
    assert_eq!(s.argv(), ["rom/hello"]);
    assert_eq!(caps(&fake, s), map(&[("rom", "env:rom r")]));
    assert_eq!(fake.describe(&s.log), "Log(\"hello\")@env:mem_alloc r");
    assert_eq!(s.scheduler, None);
    assert_eq!(fake.describe(s.mem.as_ref().unwrap()), "env:mem_alloc r");
    assert_eq!(fake.describe(s.factory.as_ref().unwrap()), "env:factory r");
    assert_eq!(s.l4re_loader, "rom/l4re");
    assert_eq!(s.l4re_dbg, 2, "L4.Dbg.Warn");
}

#[test]
fn hello_of_the_seed() {
    let (_, fake, r) = run("hello.ned", &["l4re", "hello"]);
    r.unwrap();
    let fake = fake.borrow();
    assert_eq!(fake.started().len(), 1);
    assert_eq!(fake.started()[0].spec.argv(), ["rom/hello"]);
}

#[test]
fn a_linux_vm() {
    let (_, fake, r) = run("uvmm.ned", &["l4re", "ned", "uvmm", "virt-arm_virt.dtb"]);
    r.unwrap();
    let fake = fake.borrow();
    let [vm] = fake.started() else {
        panic!("one program");
    };
    let s = &vm.spec;
    assert_eq!(
        s.argv(),
        [
            "rom/uvmm",
            "--dtb",
            "rom/virt-arm_virt.dtb",
            "--ramdisk",
            "rom/ramdisk-armv8.cpio.gz",
            "--kernel",
            "rom/Image.gz",
            "--cmdline",
            "console=hvc0 earlyprintk=1 rdinit=/init"
        ]
    );
    assert_eq!(
        caps(&fake, s),
        map(&[
            ("ram", "Dataspace(134217728, 7, 21)@env:mem_alloc rws"),
            ("rom", "env:rom r"),
        ])
    );
    assert_eq!(fake.describe(&s.log), "env:log r");
    assert_eq!(fake.memory_free(), DEFAULT_MEMORY - 128 * MIB);
}

/// The one io seed 000's scripts start: its command line and capabilities,
/// its `vm_hw` vbus being `vm_hw`.
fn io_started<'a>(fake: &'a FakeBackend, vm_hw: &str) -> &'a StartSpec {
    let [io] = fake.started_program("rom/io")[..] else {
        panic!("one io");
    };
    assert_eq!(io.argv(), ["rom/io", "rom/io.cfg", "rom/vm_hw.vbus"]);
    assert_eq!(
        caps(fake, io),
        map(&[
            ("icu", "env:icu r"),
            ("rom", "env:rom r"),
            ("sigma0", "Sigma0()@env:sigma0 r"),
            ("vm_hw", vm_hw),
        ])
    );
    io
}

/// The two VMs of `vm(1)`, `vm(2)` in seed 003's scripts: 128 MiB each,
/// logs from the cons channel, the bootargs with `extra`.
fn check_vms(fake: &FakeBackend, extra: [&str; 2], vbus: Option<&str>, net: [Option<&str>; 2]) {
    let vms = fake.started_program("rom/uvmm");
    assert_eq!(vms.len(), 2);
    for (i, vm) in vms.iter().enumerate() {
        let id = i + 1;
        assert_eq!(
            vm.argv(),
            [
                "rom/uvmm".to_string(),
                "-drom/virt-arm_virt.dtb".into(),
                format!("-cconsole=hvc0 earlyprintk=1 rdinit=/init {}", extra[i]),
                "-rrom/ramdisk-armv8.cpio.gz".into(),
                "-krom/Image.gz".into(),
            ]
        );
        let mut want = map(&[
            ("ram", "Dataspace(134217728, 7, 21)@env:mem_alloc rw"),
            ("rom", "env:rom r"),
        ]);
        if let (1, Some(v)) = (id, vbus) {
            want.insert("vbus".into(), v.into());
        }
        if let Some(n) = net[i] {
            want.insert("net".into(), n.into());
        }
        assert_eq!(caps(fake, vm), want, "vm{id}");
        assert_eq!(
            fake.describe(&vm.log),
            format!("Log(\"vm{id}\", \"w\", \"key={id}\")@channel#1 r")
        );
        assert_eq!(vm.scheduler, None);
    }
}

/// cons of seed 003: the server end of vmm.loader.log_fab, ned's log.
fn check_cons(fake: &FakeBackend) {
    let [cons] = fake.started_program("rom/cons")[..] else {
        panic!("one cons");
    };
    assert_eq!(cons.argv(), ["rom/cons", "-a"]);
    assert_eq!(
        caps(fake, cons),
        map(&[("cons", "channel#1 rwsdc"), ("rom", "env:rom r")])
    );
    assert_eq!(fake.describe(&cons.log), "env:log r");
}

#[test]
fn two_linux_vms_with_vmm_lua() {
    let (_, fake, r) = run("uvmm-2vm.ned", VM_MODULES);
    r.unwrap();
    let fake = fake.borrow();
    assert_eq!(fake.started().len(), 3);
    assert_eq!(fake.started()[0].spec.program, "rom/cons");
    check_cons(&fake);
    check_vms(&fake, ["", ""], None, [None, None]);
    assert_eq!(fake.memory_free(), DEFAULT_MEMORY - 256 * MIB);
}

#[test]
fn two_vms_with_the_virtio_switch() {
    let (_, fake, r) = run("uvmm-2vm-net.ned", VM_MODULES);
    r.unwrap();
    let fake = fake.borrow();
    check_cons(&fake);
    let [switch] = fake.started_program("rom/l4vio_net_p2p")[..] else {
        panic!("one switch");
    };
    assert_eq!(switch.argv(), ["rom/l4vio_net_p2p"]);
    assert_eq!(
        caps(&fake, switch),
        map(&[("rom", "env:rom r"), ("svr", "channel#2 rwsdc")])
    );
    assert_eq!(
        fake.describe(&switch.log),
        "Log(\"switch\", \"Blue\")@channel#1 r"
    );
    check_vms(
        &fake,
        [
            "ip=192.168.1.1:::255.255.255.0:server:eth0",
            "ip=192.168.1.2:::255.255.255.0:server:eth0",
        ],
        None,
        // Two distinct ports of the switch.
        [
            Some("Ipc_gate(4)@channel#2 r"),
            Some("Ipc_gate(4)@channel#2 r"),
        ],
    );
    let vms = fake.started_program("rom/uvmm");
    assert_ne!(vms[0].cap("net"), vms[1].cap("net"));
}

/// conf/uvmm-2vm-vlan.ned (ours, not a seed's): ports made with VLAN
/// options through vmm.lua's table form, each VM's monitor console
/// (vmm.lua's default, as L4Re's), and the switch's statistics
/// capability (`create(1)` on the channel vmm.lua returns) for
/// rom/statsclient.
#[test]
fn two_vms_in_a_vlan() {
    let (_, fake, r) = run("uvmm-2vm-vlan.ned", VM_MODULES);
    r.unwrap();
    let fake = fake.borrow();
    check_cons(&fake);
    assert_eq!(fake.started_program("rom/l4vio_net_p2p").len(), 1);
    let [stats] = &fake.started_program("rom/statsclient")[..] else {
        panic!("one statsclient");
    };
    // The fake names what create(1) makes by its protocol number.
    assert_eq!(caps(&fake, stats)["stats"], "1()@channel#2 r");
    let vms = fake.started_program("rom/uvmm");
    assert_eq!(vms.len(), 2);
    for (i, (vlan, ip)) in [
        ("vlan=access=5", "192.168.5.1"),
        ("vlan=trunk=5,7", "192.168.5.2"),
    ]
    .into_iter()
    .enumerate()
    {
        let c = caps(&fake, vms[i]);
        assert_eq!(
            c["net"],
            format!("Ipc_gate(\"ds-max=4\", \"name=net{i}\", \"{vlan}\")@channel#2 r")
        );
        assert_eq!(
            c["mon"],
            format!("Log(\"mon{}\", \"g\")@channel#1 r", i + 1)
        );
        assert!(
            vms[i].argv()[2].contains(&format!("ip={ip}:")),
            "{:?}",
            vms[i].argv()
        );
    }
}

#[test]
fn two_vms_with_switch_and_io_pass_through() {
    let (_, fake, r) = run("uvmm-2vm-net-io.ned", VM_MODULES);
    r.unwrap();
    let fake = fake.borrow();
    check_cons(&fake);
    let programs: Vec<&str> = fake
        .started()
        .iter()
        .map(|s| s.spec.program.as_str())
        .collect();
    assert_eq!(
        programs,
        [
            "rom/cons",
            "rom/io",
            "rom/l4vio_net_p2p",
            "rom/uvmm",
            "rom/uvmm"
        ]
    );
    let io = io_started(&fake, "channel#2 rwsdc");
    assert_eq!(fake.describe(&io.log), "Log(\"io\", \"red\")@channel#1 r");
    check_vms(
        &fake,
        [
            "ip=192.168.1.1:::255.255.255.0:server:eth0",
            "ip=192.168.1.2:::255.255.255.0:server:eth0",
        ],
        Some("channel#2 r"),
        [
            Some("Ipc_gate(4)@channel#3 r"),
            Some("Ipc_gate(4)@channel#3 r"),
        ],
    );
}

#[test]
fn static_partitioning() {
    let (_, fake, r) = run(
        "uvmm-staticpart.ned",
        &[
            "uvmm",
            "l4re",
            "ned",
            "virt-arm_virt-64.dtb",
            "virt-arm_virt-64-pl031.dtb",
            "ramdisk-armv8-64.cpio.gz",
            "Image.gz",
            "cons",
            "io",
            "io.cfg",
            "vm1_hw.vbus",
        ],
    );
    r.unwrap();
    let fake = fake.borrow();
    let programs: Vec<&str> = fake
        .started()
        .iter()
        .map(|s| s.spec.program.as_str())
        .collect();
    assert_eq!(programs, ["rom/cons", "rom/io", "rom/uvmm", "rom/uvmm"]);

    let cons = &fake.started()[0].spec;
    assert_eq!(cons.argv(), ["rom/cons", "-a"]);
    assert_eq!(
        caps(&fake, cons),
        map(&[("cons", "channel#1 rwsdc"), ("rom", "env:rom r")])
    );
    assert_eq!(fake.describe(&cons.log), "env:log r");

    let io = &fake.started()[1].spec;
    assert_eq!(io.argv(), ["rom/io", "rom/io.cfg", "rom/vm1_hw.vbus"]);
    assert_eq!(
        caps(&fake, io),
        map(&[
            ("icu", "env:icu r"),
            ("rom", "env:rom r"),
            ("sigma0", "env:sigma0 r"),
            ("vm1_hw", "channel#2 rwsdc"),
        ])
    );
    assert_eq!(fake.describe(&io.log), "Log(\"io\", \"red\")@channel#1 r");

    for (i, (mib, mask, dtb)) in [
        (256, 0x3, "virt-arm_virt-64-pl031.dtb"),
        (128, 0xc, "virt-arm_virt-64.dtb"),
    ]
    .into_iter()
    .enumerate()
    {
        let id = i + 1;
        let vm = &fake.started()[2 + i].spec;
        assert_eq!(
            vm.argv(),
            [
                "rom/uvmm".to_string(),
                "-i".into(),
                "-krom/Image.gz".into(),
                "-rrom/ramdisk-armv8-64.cpio.gz".into(),
                format!("-drom/{dtb}"),
                "-cconsole=ttyAMA0 earlyprintk=1 rdinit=/init".into(),
            ]
        );
        let mut want = map(&[("rom", "env:rom r")]);
        want.insert(
            "ram".into(),
            format!("Dataspace({}, 7, 21)@env:mem_alloc rw", mib * 1024 * 1024),
        );
        if id == 1 {
            want.insert("vbus".into(), "channel#2 r".into());
        }
        assert_eq!(caps(&fake, vm), want, "vm{id}");
        assert_eq!(
            fake.describe(vm.scheduler.as_ref().unwrap()),
            format!("Scheduler(10, 2, {mask})@env:mem_alloc r")
        );
        assert_eq!(
            fake.describe(&vm.log),
            format!("Log(\"vm{id}\", \"\", \"key={id}\")@channel#1 r")
        );
    }
    assert_eq!(fake.memory_free(), DEFAULT_MEMORY - 384 * MIB);
}

/// Runs a seed-000 fragment (with its test preamble) with script
/// arguments, which its `...` passes on.
fn fragment(script: &str, args: &[&str]) -> Rc<RefCell<FakeBackend>> {
    let (ned, fake) = ned_with(FakeBackend::new().with_modules(&["l4re", "uvmm", "io"]));
    let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    ned.run_file(&format!("rom/{script}"), &args).unwrap();
    fake
}

#[test]
fn static_partitioning_fragments() {
    let fake = fragment("staticpart-cpus.ned", &["-i", "-krom/Image.gz"]);
    let fake = fake.borrow();
    let vm = &fake.started()[0].spec;
    assert_eq!(vm.argv(), ["rom/uvmm", "-i", "-krom/Image.gz"]);
    assert_eq!(
        fake.describe(vm.scheduler.as_ref().unwrap()),
        "Scheduler(10, 2, 3)@env:mem_alloc r"
    );
    let scheds: Vec<String> = fake.created().into_iter().map(|c| c.0).collect();
    assert_eq!(
        scheds,
        [
            "Scheduler(10, 2, 3)@env:mem_alloc",
            "Scheduler(10, 2, 12)@env:mem_alloc",
            "Log(\"uvmm\")@env:mem_alloc"
        ]
    );

    let fake = fragment("staticpart-memory.ned", &[]);
    let fake = fake.borrow();
    let vm = &fake.started()[0].spec;
    assert_eq!(vm.argv(), ["rom/uvmm"]);
    assert_eq!(
        caps(&fake, vm)["ram"],
        "Dataspace(268435456, 7, 21)@env:mem_alloc rw"
    );

    let fake = fragment("staticpart-io.ned", &[]);
    let fake = fake.borrow();
    let io = &fake.started()[0].spec;
    assert_eq!(io.argv(), ["rom/io", "rom/io.cfg", "rom/vm1_hw.vbus"]);
    assert_eq!(caps(&fake, io)["vm1_hw"], "channel#1 rwsdc");
    assert_eq!(
        fake.describe(&io.log),
        "Log(\"io\", \"red\")@env:mem_alloc r"
    );
}

#[test]
fn vmm_lua_fragments_of_the_seed() {
    let (ned, fake) = ned_with(FakeBackend::new().with_modules(VM_MODULES));
    ned.run_file("rom/seed003-vmm-fragments.lua", &[]).unwrap();
    ned.exec(
        r#"
        local L4 = require "L4"
        local busses = { vm_hw = 1 }
        local io = start_io(busses, "rom/io.cfg")
        assert(io:state() == "running")
        assert(tostring(busses.vm_hw):find("Ipc_gate"), tostring(busses.vm_hw))
        local ports = { net0 = 1, net1 = 1 }
        start_virtio_switch(ports)
        assert(svr:state() == "running")
        assert(ports.net0 ~= ports.net1)
        "#,
    )
    .unwrap();
    let fake = fake.borrow();
    io_started(&fake, "channel#1 rwsdc");
    let [sw] = fake.started_program("rom/l4vio_net_p2p")[..] else {
        panic!("one switch");
    };
    assert_eq!(caps(&fake, sw)["svr"], "channel#2 rwsdc");
    assert_eq!(
        fake.describe(&sw.log),
        "Log(\"switch\", \"Blue\")@env:mem_alloc r"
    );
}

#[test]
fn a_broken_script_is_reported_and_ned_goes_on() {
    let (ned, fake) = ned_with(FakeBackend::new().with_modules(&["l4re", "hello"]));
    let e = ned.run_file("rom/broken.ned", &[]).unwrap_err();
    assert_eq!(
        e.message,
        "rom/broken.ned:6: attempt to index a nil value (local 'vm')"
    );
    assert_eq!(fake.borrow().started().len(), 1, "hello runs on");

    // The same through ned's command line: reported on the log, ned stays,
    // and the next statement still works.
    let cmd = cmdline::parse(["rom/broken.ned"]).unwrap();
    assert_eq!(ned::run(&ned, &cmd), None);
    ned.exec("L4.default_loader:start({}, 'rom/hello')")
        .unwrap();
    let fake = fake.borrow();
    assert!(
        fake.log_lines().contains(
            &"Ned: error: rom/broken.ned:6: attempt to index a nil value (local 'vm')".to_string()
        ),
        "{:?}",
        fake.log_lines()
    );
    assert_eq!(fake.started().len(), 3);
}
