//! The plan of seed 000's scenario and of broken copies of it.

use std::path::PathBuf;
use std::process::Command;

use super::checks::{self, Finding, Level};
use super::model::{Inputs, Machine, Origin};
use super::{build, machine};

/// The repository's `conf/`.
fn conf() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../conf")
}

fn seed_script() -> String {
    std::fs::read_to_string(conf().join("uvmm-staticpart.ned")).unwrap()
}

/// The modules of seed 000's entry, from the repository's modules.list.
fn seed_modules() -> Vec<String> {
    let list =
        bootstrap_builder::modlist::ModulesList::load(&conf().join("../modules.list")).unwrap();
    let entry = list.entry("uvmm-staticpart").unwrap();
    entry.modules.iter().map(|m| m.name().to_string()).collect()
}

/// A scenario in a directory of its own: the seed's files, `script` as
/// the ned script, `extra` files, device trees compiled from `conf/`.
fn scenario(name: &str, script: &str, extra: &[(&str, &str)]) -> Inputs {
    let dir = std::env::temp_dir().join(format!("xtask-plan-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    for f in ["io.cfg", "vm1_hw.vbus", "virt-arm_virt.dtsi", "pl031.dtsi"] {
        std::fs::copy(conf().join(f), dir.join(f)).unwrap();
    }
    std::fs::write(dir.join("uvmm-staticpart.ned"), script).unwrap();
    for (f, text) in extra {
        std::fs::write(dir.join(f), text).unwrap();
    }
    for dts in [
        "virt-arm_virt",
        "virt-arm_virt-64",
        "virt-arm_virt-64-pl031",
    ] {
        std::fs::copy(
            conf().join(format!("{dts}.dts")),
            dir.join(format!("{dts}.dts")),
        )
        .unwrap();
    }
    let mut sources: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "dts"))
        .collect();
    sources.sort();
    for src in sources {
        let status = Command::new("dtc")
            .args(["-q", "-I", "dts", "-O", "dtb", "-o"])
            .arg(src.with_extension("dtb"))
            .arg(&src)
            .status()
            .expect("dtc (a build dependency) runs");
        assert!(status.success(), "dtc {}", src.display());
    }
    Inputs {
        entry: "uvmm-staticpart".into(),
        script: Some(("rom/uvmm-staticpart.ned".into(), Vec::new())),
        root: "moe rom/uvmm-staticpart.ned".into(),
        modules: seed_modules(),
        modules_size: 0,
        dirs: vec![dir],
        machine: Machine {
            cpus: 4,
            ram: 1024 << 20,
        },
    }
}

/// Adds `modules` to the entry's module list.
fn list(inputs: &mut Inputs, modules: &[&str]) {
    inputs.modules.extend(modules.iter().map(|m| m.to_string()));
}

fn findings(inputs: &Inputs, strict: bool) -> Vec<Finding> {
    checks::run(&build(inputs), inputs, strict)
}

fn errors(f: &[Finding]) -> Vec<&str> {
    f.iter()
        .filter(|f| f.level == Level::Error)
        .map(|f| f.message.as_str())
        .collect()
}

/// `script` with `from` replaced by `to` (which must be there).
fn edit(script: &str, from: &str, to: &str) -> String {
    assert!(script.contains(from), "{from}");
    script.replacen(from, to, 1)
}

/// The third VM of a broken copy.
const VM3: &str = r#"
l:startv({
           caps = {
             ram = L4.Env.user_factory:create(L4.Proto.Dataspace,
                                              768 * 1024 * 1024,
                                              flags, align):m("rw"),
           },
           log = { "vm3", "", "key=3" },
         },
         "rom/uvmm", "-i", "-krom/Image.gz", "-drom/virt-arm_virt-64.dtb");
"#;

#[test]
fn the_seed_scenario_is_sound() {
    let inputs = scenario("seed", &seed_script(), &[]);
    let plan = build(&inputs);
    let f = checks::run(&plan, &inputs, true);
    assert!(f.is_empty(), "{f:#?}");
    assert_eq!(plan.vms.len(), 2);
    let (vm1, vm2) = (&plan.vms[0], &plan.vms[1]);
    assert_eq!(plan.system.task(vm1.task).sched.cpus, [0, 1]);
    assert_eq!(plan.system.task(vm2.task).sched.cpus, [2, 3]);
    assert_eq!(vm1.ram[0].size, Some(256 << 20));
    assert_eq!(vm2.ram[0].size, Some(128 << 20));
    assert!(vm1.ram[0].identity);
    assert_eq!(vm1.passed.len(), 1);
    assert_eq!(vm1.passed[0].name, "PL031");
    assert_eq!(vm1.passed[0].node.as_deref(), Some("/pl031@9010000"));
    assert!(vm2.passed.is_empty());
    // The seed gives neither VM a `net` capability: uvmm disables the
    // proxy node of their device trees, so the plan does not list it as
    // emulated.
    for vm in [vm1, vm2] {
        assert!(
            vm.emulated.iter().all(|e| e.kind != "virtio proxy"),
            "{vm:?}"
        );
        assert!(
            vm.disabled.iter().any(|d| d
                == "/l4vmm/virtio_net@10000: virtio capability 'net': no capability named 'net'"),
            "{vm:?}"
        );
    }
    assert_eq!(plan.system.task(vm1.task).log.key.as_deref(), Some("1"));
    assert!(
        plan.system
            .task(vm1.task)
            .site
            .ends_with("uvmm-staticpart.ned:37")
    );
}

#[test]
fn a_third_vm_that_does_not_fit() {
    let script = seed_script() + VM3;
    assert_says(
        &the_error(&scenario("vm3", &script, &[])),
        &[
            "uvmm-staticpart.ned:",
            "768 MiB of Continuous memory do not fit",
            "1024 MiB (-m)",
        ],
    );
}

/// A bus `vm2_hw` with the platform's RTC, which seed 000 gives `vm1_hw`.
const VM2_RTC_VBUS: &str = "Io.add_vbusses\n{\n  vm2_hw = Io.Vi.System_bus(function()\n    RTC = wrap(Io.system_bus().rtc);\n  end);\n}\n";

/// The one error the plan of `inputs` finds.
fn the_error(inputs: &Inputs) -> String {
    let f = findings(inputs, false);
    let e = errors(&f);
    assert_eq!(e.len(), 1, "{f:#?}");
    e[0].to_string()
}

/// Asserts that `message` says each of `parts`.
fn assert_says(message: &str, parts: &[&str]) {
    for p in parts {
        assert!(message.contains(p), "{p:?} not in: {message}");
    }
}

#[test]
fn a_vbus_device_given_twice() {
    let script = edit(
        &seed_script(),
        "vm1_hw = vbus_vm1:svr(),",
        "vm1_hw = vbus_vm1:svr(), vm2_hw = l:new_channel():svr(),",
    );
    let script = edit(
        &script,
        "rom/vm1_hw.vbus\"",
        "rom/vm1_hw.vbus rom/vm2_hw.vbus\"",
    );
    let mut inputs = scenario("twice", &script, &[("vm2_hw.vbus", VM2_RTC_VBUS)]);
    inputs.modules.push("vm2_hw.vbus".into());
    let e = the_error(&inputs);
    // io itself refuses it, and the plan says so with io's words.
    assert!(
        e.contains("io (#2, ")
            && e.contains(
                "vm2_hw.vbus:4: device System_bus.rtc is already on virtual bus 'vm1_hw'"
            ),
        "{e}"
    );
}

#[test]
fn a_device_on_buses_of_two_io_tasks() {
    let io2 = "\nl:start({ caps = { vm2_hw = l:new_channel():svr() } },\n        \"rom/io rom/io.cfg rom/vm2_hw.vbus\");\n";
    let script = edit(
        &seed_script(),
        "\"rom/io rom/io.cfg rom/vm1_hw.vbus\");\n",
        &format!("\"rom/io rom/io.cfg rom/vm1_hw.vbus\");\n{io2}"),
    );
    let mut inputs = scenario("two-io", &script, &[("vm2_hw.vbus", VM2_RTC_VBUS)]);
    inputs.modules.push("vm2_hw.vbus".into());
    let e = the_error(&inputs);
    assert!(
        e.contains("vm2_hw.vbus:4: device rtc (RTC, 0x9010000..0x9011000)")
            && e.contains("is on two virtual buses: 'vm2_hw' and 'vm1_hw'")
            && e.contains("vm1_hw.vbus:4)"),
        "{e}"
    );
}

#[test]
fn an_io_device_in_the_ram_of_qemus_m() {
    // Clear of 1 GiB of RAM, inside 2 GiB: io is checked against `-m`.
    let cfg = std::fs::read_to_string(conf().join("io.cfg")).unwrap()
        + "\nIo.hw_add_devices{ late = Io.Hw.Device(function()\n  Resource.regs = Io.Res.mmio(0x80000000, 0x80000fff);\nend) }\n";
    let mut inputs = scenario("io-ram", &seed_script(), &[("io.cfg", &cfg)]);
    assert!(findings(&inputs, false).is_empty());
    inputs.machine.ram = 2048 << 20;
    let e = the_error(&inputs);
    assert!(
        e.contains("io (#2, ")
            && e.contains("io.cfg:15: System_bus.late.regs (MMIO 0x80000000-0x80000fff) lies in RAM (0x40000000-0xbfffffff)"),
        "{e}"
    );
}

#[test]
fn overlapping_cpu_masks() {
    let script = edit(&seed_script(), "10, 2, 0xc)", "10, 2, 0x6)");
    let inputs = scenario("cpus", &script, &[]);
    let f = findings(&inputs, false);
    assert!(errors(&f).is_empty(), "{f:#?}");
    assert!(f[0].level == Level::Warning && f[0].message.contains("vm1 and vm2 share CPU 1"));
    let f = findings(&inputs, true);
    let e = errors(&f);
    assert_eq!(e.len(), 1, "{f:#?}");
    assert!(
        e[0].contains("share CPU 1") && e[0].contains("uvmm-staticpart.ned:34"),
        "{}",
        e[0]
    );
}

#[test]
fn guest_ram_over_the_pl031_without_identity_mapping() {
    // Upstream's uvmm placed VM1's RAM at 0x8000000 for this device tree.
    let dts = "/include/ \"virt-arm_virt-64-pl031.dts\"\n/ {\n\tmemory@40000000 {\n\t\treg = <0x0 0x08000000 0x0 0x10000000>;\n\t};\n};\n";
    let script = edit(
        &seed_script(),
        "\"rom/uvmm\", \"-i\",\n            \"-krom/Image.gz\",\n            \"-rrom/ramdisk-armv8-64.cpio.gz\",\n            \"-drom/virt-arm_virt-64-pl031.dtb\"",
        "\"rom/uvmm\",\n            \"-krom/Image.gz\",\n            \"-rrom/ramdisk-armv8-64.cpio.gz\",\n            \"-drom/upstream.dtb\"",
    );
    let mut inputs = scenario("lowram", &script, &[("upstream.dts", dts)]);
    inputs.modules.push("upstream.dtb".into());
    assert_says(
        &the_error(&inputs),
        &[
            "vm1 (#3 uvmm, ",
            "guest RAM 'ram' at 0x8000000..0x18000000",
            "overlaps the PL031 (arm,pl031) at 0x9010000..0x9011000 it is given on vbus 'vm1_hw'",
        ],
    );
}

#[test]
fn a_missing_module() {
    let mut inputs = scenario("missing", &seed_script(), &[]);
    inputs.modules.retain(|m| m != "io.cfg");
    assert_says(
        &the_error(&inputs),
        &[
            "io (#2, started at ",
            "needs rom/io.cfg, but entry 'uvmm-staticpart' does not list it",
        ],
    );
}

#[test]
fn two_consoles_with_one_key_and_a_missing_capability() {
    let script = edit(
        &seed_script(),
        "\"vm2\", \"\", \"key=2\"",
        "\"vm2\", \"\", \"key=1\"",
    );
    let script = edit(&script, "vm1_hw = vbus_vm1:svr(),", "");
    let f = findings(&scenario("keys", &script, &[]), false);
    let e = errors(&f);
    assert_eq!(e.len(), 2, "{f:#?}");
    assert!(
        e.iter()
            .any(|m| m.contains("console 'vm2' gets Ctrl-E key 1, which console 'vm1'"))
    );
    assert!(
        e.iter()
            .any(|m| m.contains("io serves vbus 'vm1_hw'") && m.contains("is not given one"))
    );
}

#[test]
fn switch_ports_and_io_through_vmm_lua() {
    // Seed 003's pass-through script: io and the switch from vmm.lua.
    let script = std::fs::read_to_string(
        PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("../../ned/tests/scripts/uvmm-2vm-net-io.ned"),
    )
    .unwrap();
    let vmm = std::fs::read_to_string(conf().join("vmm.lua")).unwrap();
    let vbus = "Io.add_vbusses\n{\n  vm_hw = Io.Vi.System_bus(function()\n    PL031 = wrap(Io.system_bus().rtc);\n  end);\n}\n";
    let mut inputs = scenario(
        "switch",
        &script,
        &[("vmm.lua", &vmm), ("vm_hw.vbus", vbus)],
    );
    list(
        &mut inputs,
        &[
            "vmm.lua",
            "vm_hw.vbus",
            "l4vio_net_p2p",
            "virt-arm_virt.dtb",
            "ramdisk-armv8.cpio.gz",
        ],
    );
    let plan = build(&inputs);
    let s = &plan.system;
    let switch = s
        .tasks
        .iter()
        .find(|t| t.name() == "l4vio_net_p2p")
        .unwrap();
    assert_eq!(switch.log.tag.as_ref().unwrap().0, "switch");
    for vm in &plan.vms {
        assert!(
            vm.emulated.iter().any(|e| e.kind == "virtio proxy"),
            "{vm:?}"
        );
        let net = s.task(vm.task).cap("net").unwrap();
        assert!(
            matches!(&net.origin, Origin::Created { server: Some(sv), .. } if *sv == switch.id),
            "{net:?}"
        );
    }
    assert_eq!(plan.vms[0].passed.len(), 1);
    assert_eq!(plan.vms[0].passed[0].bus, "vm_hw");
    assert!(
        s.task(plan.vms[0].task)
            .site
            .contains("uvmm-staticpart.ned:")
    );
    let site = &s.task(plan.vms[0].task).site;
    // The call in the script, and the helper it went through: vmm.lua
    // tail-calls startv, a C function, so Lua keeps vmm.lua's frame.
    let vmm_lua = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../conf/vmm.lua"),
    )
    .unwrap();
    let startv = 1 + vmm_lua
        .lines()
        .position(|l| l.contains("return l:startv(opts, \"rom/uvmm\""))
        .expect("vmm.lua starts uvmm");
    assert!(
        site.contains(".ned:38 (in ") && site.ends_with(&format!("vmm.lua:{startv})")),
        "{site}"
    );
    let f = checks::run(&plan, &inputs, false);
    // No schedulers: the VMs share every CPU (a warning).
    assert!(errors(&f).is_empty(), "{f:#?}");
    assert!(
        f.iter()
            .any(|f| f.message.contains("vm1 and vm2 share CPU 0, 1, 2, 3"))
    );
}

#[test]
fn qemu_machine_options() {
    let s = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    let m = machine(&s(&["-smp", "4", "-m", "1024", "-m", "2G"])).unwrap();
    assert_eq!((m.cpus, m.ram), (4, 2 << 30));
    assert!(machine(&s(&["-m", "lots"])).is_err());
}

#[test]
fn every_entry_of_the_modules_list_is_sound() {
    let ws = crate::workspace::Workspace::locate().unwrap();
    let vars = crate::cli::Vars::default();
    let entries = crate::image::Modules::new(&ws, &vars)
        .unwrap()
        .entries()
        .unwrap();
    assert!(entries.iter().any(|e| e == "uvmm-staticpart"));
    for entry in &entries {
        let (_, _, f) = super::check(&ws, &vars, entry, false).unwrap();
        assert!(errors(&f).is_empty(), "{entry}: {f:#?}");
    }
    // Seed 000's scenario is partitioned: sound under --strict too.
    let (_, _, f) = super::check(&ws, &vars, "uvmm-staticpart", true).unwrap();
    assert!(f.is_empty(), "{f:#?}");
}

/// conf/uvmm-2vm-vlan.ned with `edits` applied, planned with the modules
/// it needs.
fn vlan_plan(edits: &[(&str, &str)]) -> (super::Plan, Vec<Finding>) {
    let mut script = std::fs::read_to_string(conf().join("uvmm-2vm-vlan.ned")).unwrap();
    for (from, to) in edits {
        script = edit(&script, from, to);
    }
    let vmm = std::fs::read_to_string(conf().join("vmm.lua")).unwrap();
    let mut inputs = scenario("vlan", &script, &[("vmm.lua", &vmm)]);
    list(
        &mut inputs,
        &[
            "vmm.lua",
            "cons",
            "l4vio_net_p2p",
            "statsclient",
            "virt-arm_virt.dtb",
            "ramdisk-armv8.cpio.gz",
        ],
    );
    let plan = build(&inputs);
    let f = checks::run(&plan, &inputs, false);
    (plan, f)
}

#[test]
fn consoles_and_their_capabilities() {
    let (plan, f) = vlan_plan(&[]);
    assert_eq!(errors(&f), Vec::<&str>::new());
    let consoles: Vec<(&str, Option<&str>)> = plan.vms[0]
        .emulated
        .iter()
        .filter(|e| e.console.is_some())
        .map(|e| (e.path.as_str(), e.console.as_deref()))
        .collect();
    assert_eq!(
        consoles,
        [
            ("/pl011@9000000", Some("con1")),
            ("/l4vmm/virtio_uart@20000", Some("log"))
        ]
    );
    // The PL011's capability not given: an error naming it.
    let (_, f) = vlan_plan(&[("con1 = vmm", "conx = vmm")]);
    assert!(errors(&f).iter().any(|e| e.contains("con1")), "{f:#?}");
}

#[test]
fn switch_ports_with_vlans() {
    let (plan, f) = vlan_plan(&[]);
    assert_eq!(errors(&f), Vec::<&str>::new());
    assert!(
        !f.iter().any(|f| f.message.contains("reach nobody")),
        "{f:#?}"
    );
    let [sw] = &plan.switches[..] else {
        panic!("one switch: {:#?}", plan.switches);
    };
    let ports: Vec<(String, String, Vec<usize>)> = sw
        .made_ports()
        .map(|(p, i)| {
            let holders = p.made.holders.iter().map(|h| h.0).collect();
            (i.name.clone(), i.vlan.clone(), holders)
        })
        .collect();
    let vm = |n: usize| plan.vms[n].task;
    assert_eq!(
        ports,
        [
            ("net0".into(), "access port of VLAN 5".into(), vec![vm(0)]),
            ("net1".into(), "trunk port of VLANs 5,7".into(), vec![vm(1)]),
        ]
    );
    // The statistics capability, held by rom/statsclient.
    let [stats] = &sw.stats[..] else {
        panic!("one statistics capability: {:#?}", sw.stats);
    };
    let holder = plan.system.task(stats.holders[0].0);
    assert_eq!(
        (holder.name(), stats.holders[0].1.as_str()),
        ("statsclient", "stats")
    );
    // A port the switch refuses, and two that share no VLAN.
    let (_, f) = vlan_plan(&[
        ("\"vlan=trunk=5,7\"", "\"vlan=trunk=7\""),
        ("net1 = {", "net2 = { \"vlan=acess=5\" },\n  net1 = {"),
    ]);
    let e = errors(&f);
    assert_eq!(e.len(), 1, "{f:#?}");
    assert!(
        e[0].contains("the port asked of switch (#2")
            && e[0].ends_with(
                "is refused: vlan=acess=5: expected access=<id>, trunk=<id>[,<id>...] or trunk=all"
            ),
        "{}",
        e[0]
    );
    let alone: Vec<&str> = f
        .iter()
        .filter(|f| f.level == Level::Warning && f.message.contains("reach nobody"))
        .map(|f| f.message.as_str())
        .collect();
    assert_eq!(alone.len(), 2, "{f:#?}");
    assert!(
        alone[0].contains("port net0 (access port of VLAN 5)"),
        "{}",
        alone[0]
    );
    assert!(
        alone[1].contains("port net1 (trunk port of VLANs 7)"),
        "{}",
        alone[1]
    );
}
