//! The monitor: commands typed on uvmm's `mon` capability (a console,
//! vmm.lua's `mon<id>` log on cons) that show the VM's state while it
//! runs, in the spirit of L4Re uvmm's monitor interface.
//!
//! | command | shows |
//! |---|---|
//! | `help` | the commands |
//! | `cpu` (`cpu list`) | each vCPU: its MPIDR affinity and whether it is on |
//! | `cpu <n> regs` | vCPU n's general and EL1 registers at an exit it is kicked into |
//! | `dev` (`dev list`) | the emulated devices' MMIO windows |
//! | `memmap` | guest RAM and the MMIO windows, by address |
//! | `ram dump <gpa> [<bytes>]` | guest RAM as hex and text (at most 4 KiB; 256 bytes by default) |
//! | `dt` | the device tree the guest was given, as source |
//! | `gic` | the distributor's enables and every SPI, SGI or PPI that is enabled, pending or active |
//!
//! Every answer is text ending in a newline; a bad command or argument
//! gets a line saying what is wrong. Nothing here changes the VM (`cpu
//! <n> regs` makes the vCPU exit once, as an interrupt would).

use std::fmt::Write;

use crate::devices::gic::state::{CTLR_GRP0, CTLR_GRP1};
use crate::dt::{Node, Tree};
use crate::psci::Power;
use crate::vmm::Vm;

/// The most bytes `ram dump` shows.
pub const DUMP_MAX: u64 = 4096;
/// What `ram dump` shows without a length.
pub const DUMP_DEFAULT: u64 = 256;

/// The prompt written after each answer.
pub const PROMPT: &str = "mon> ";

const HELP: &str = "\
commands:
  help                      this list
  cpu [list]                the vCPUs: MPIDR affinity, power state
  cpu <n> regs              vCPU n's registers (it is kicked out of the guest for them)
  dev [list]                the emulated devices' MMIO windows
  memmap                    guest RAM and MMIO windows by address
  ram dump <gpa> [<bytes>]  guest RAM as hex (at most 4096 bytes, 256 by default)
  dt                        the device tree the guest was given
  gic                       the interrupt controller: enables, pending and active interrupts
";

/// The answer to the command `line` about `vm`, whose device tree is
/// `tree`.
pub fn execute(vm: &Vm, tree: &Tree, line: &str) -> String {
    let words: Vec<&str> = line.split_whitespace().collect();
    match words.as_slice() {
        [] => String::new(),
        ["help"] | ["?"] => HELP.to_string(),
        ["cpu"] | ["cpu", "list"] => cpus(vm),
        ["cpu", n, "regs"] => match number(n) {
            Some(n) => cpu_regs(vm, n as usize),
            None => format!("cpu: '{n}' is not a vCPU number\n"),
        },
        ["dev"] | ["dev", "list"] => devices(vm),
        ["memmap"] => memmap(vm),
        ["ram", "dump", rest @ ..] => ram_dump(vm, rest),
        ["dt"] => device_tree(tree),
        ["gic"] => gic(vm),
        [cmd, ..] => format!("unknown command '{cmd}' (help lists the commands)\n"),
    }
}

fn cpus(vm: &Vm) -> String {
    let mut o = String::new();
    for (i, mpidr) in vm.mpidrs().iter().enumerate() {
        let state = match vm.power(i) {
            Some(Power::On) => "on".to_string(),
            Some(Power::OnPending { entry, .. }) => format!("starting at {entry:#x}"),
            Some(Power::Off) | None => "off".to_string(),
        };
        let _ = writeln!(o, "vCPU {i}: affinity {mpidr:#x}, {state}");
    }
    o
}

/// How long `cpu <n> regs` waits for the vCPU to come out of the guest.
const REGS_WAIT: std::time::Duration = std::time::Duration::from_secs(1);

fn cpu_regs(vm: &Vm, cpu: usize) -> String {
    let r = match vm.vcpu_regs(cpu, REGS_WAIT) {
        Ok(r) => r,
        Err(e) => return format!("cpu {cpu} regs: {e}\n"),
    };
    let g = &r.regs;
    let mut o = String::new();
    let el = match g.pstate & 0xf {
        0 => "EL0",
        0b0100 => "EL1t",
        0b0101 => "EL1h",
        _ => "?",
    };
    let _ = writeln!(o, "vCPU {cpu} at its exit for the monitor ({el}):");
    for (i, pair) in g.x.chunks(4).enumerate() {
        for (j, v) in pair.iter().enumerate() {
            let _ = write!(o, "x{:<2} {v:016x}  ", 4 * i + j);
        }
        o.truncate(o.trim_end().len());
        o.push('\n');
    }
    let e = &r.el1;
    let rows: [(&str, u64); 16] = [
        ("pc", g.pc),
        ("pstate", g.pstate),
        ("sp_el0", g.sp_el0),
        ("sp_el1", g.sp_el1),
        ("elr_el1", g.elr_el1),
        ("spsr_el1", g.spsr_el1),
        ("esr_el1", e.esr),
        ("far_el1", e.far),
        ("sctlr_el1", e.sctlr),
        ("tcr_el1", e.tcr),
        ("ttbr0_el1", e.ttbr0),
        ("ttbr1_el1", e.ttbr1),
        ("mair_el1", e.mair),
        ("vbar_el1", e.vbar),
        ("tpidr_el1", e.tpidr_el1),
        ("contextidr", e.contextidr),
    ];
    for pair in rows.chunks(2) {
        let cols: Vec<String> = pair
            .iter()
            .map(|(n, v)| format!("{n:<10} {v:016x}"))
            .collect();
        let _ = writeln!(o, "{}", cols.join("  "));
    }
    o
}

fn devices(vm: &Vm) -> String {
    let mut o = String::new();
    for (base, size, name) in vm.bus.windows() {
        let _ = writeln!(o, "{:#012x}..{:#012x}  {name}", base, base + size);
    }
    if o.is_empty() {
        o.push_str("no emulated devices\n");
    }
    o
}

fn memmap(vm: &Vm) -> String {
    let mut rows: Vec<(u64, u64, String)> = vm
        .mem
        .regions()
        .iter()
        .map(|r| {
            (
                r.gpa,
                r.gpa + r.size,
                format!(
                    "RAM ({} MiB, dataspace {} + {:#x})",
                    r.size >> 20,
                    r.ram,
                    r.ds_offset
                ),
            )
        })
        .collect();
    rows.extend(
        vm.bus
            .windows()
            .map(|(b, s, n)| (b, b + s, format!("MMIO: {n}"))),
    );
    rows.sort();
    let mut o = String::new();
    for (a, b, what) in rows {
        let _ = writeln!(o, "{a:#012x}..{b:#012x}  {what}");
    }
    o
}

/// A number as `0x...` or decimal.
fn number(s: &str) -> Option<u64> {
    match s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        Some(h) => u64::from_str_radix(h, 16).ok(),
        None => s.parse().ok(),
    }
}

fn ram_dump(vm: &Vm, args: &[&str]) -> String {
    let (gpa, len) = match args {
        [a] => (number(a), Some(DUMP_DEFAULT)),
        [a, n] => (number(a), number(n)),
        _ => return "usage: ram dump <gpa> [<bytes>]\n".to_string(),
    };
    let Some(gpa) = gpa else {
        return format!("ram dump: '{}' is not an address\n", args[0]);
    };
    let len = match len {
        Some(n) if (1..=DUMP_MAX).contains(&n) => n,
        _ => return format!("ram dump: the length must be 1 to {DUMP_MAX} bytes\n"),
    };
    let mut bytes = vec![0u8; len as usize];
    if let Err(e) = vm.mem.read(gpa, &mut bytes) {
        return format!("ram dump: {gpa:#x} (+{len:#x}): {e}\n");
    }
    let mut o = String::new();
    for (i, chunk) in bytes.chunks(16).enumerate() {
        let _ = write!(o, "{:#012x}:", gpa + 16 * i as u64);
        for b in chunk {
            let _ = write!(o, " {b:02x}");
        }
        let pad = 3 * (16 - chunk.len());
        let text: String = chunk
            .iter()
            .map(|&b| {
                if b.is_ascii_graphic() || b == b' ' {
                    b as char
                } else {
                    '.'
                }
            })
            .collect();
        let _ = writeln!(o, "{:pad$}  {text}", "");
    }
    o
}

/// A property's value as device-tree source: strings, cells or bytes.
fn value(v: &[u8]) -> String {
    if v.is_empty() {
        return String::new();
    }
    let strings: Option<Vec<&str>> = v
        .strip_suffix(&[0])
        .map(|s| s.split(|&b| b == 0).map(std::str::from_utf8).collect())
        .and_then(Result::ok);
    if let Some(s) = strings.filter(|s| {
        s.iter()
            .all(|p| !p.is_empty() && p.chars().all(|c| c.is_ascii_graphic() || c == ' '))
    }) {
        let quoted: Vec<String> = s.iter().map(|p| format!("\"{p}\"")).collect();
        return format!(" = {}", quoted.join(", "));
    }
    if v.len().is_multiple_of(4) {
        let cells: Vec<String> = v
            .chunks(4)
            .map(|c| format!("{:#x}", u32::from_be_bytes([c[0], c[1], c[2], c[3]])))
            .collect();
        return format!(" = <{}>", cells.join(" "));
    }
    let bytes: Vec<String> = v.iter().map(|b| format!("{b:02x}")).collect();
    format!(" = [{}]", bytes.join(" "))
}

fn device_tree(tree: &Tree) -> String {
    fn node(o: &mut String, n: &Node, depth: usize) {
        let indent = "\t".repeat(depth);
        let name = if n.name.is_empty() { "/" } else { &n.name };
        let _ = writeln!(o, "{indent}{name} {{");
        for (p, v) in &n.props {
            let _ = writeln!(o, "{indent}\t{p}{};", value(v));
        }
        for c in &n.children {
            node(o, c, depth + 1);
        }
        let _ = writeln!(o, "{indent}}};");
    }
    let mut o = String::new();
    if let Some(root) = tree.node("/") {
        node(&mut o, root, 0);
    }
    o
}

fn gic(vm: &Vm) -> String {
    vm.gic.with_state(|s| {
        let mut o = String::new();
        let group = |bit: u32| {
            if s.ctlr & bit != 0 {
                "enabled"
            } else {
                "disabled"
            }
        };
        let _ = writeln!(
            o,
            "distributor: group 0 {}, group 1 {}; {} SPIs",
            group(CTLR_GRP0),
            group(CTLR_GRP1),
            s.spi_count()
        );
        for (intid, cpu, irq) in s.interrupts() {
            if !(irq.enabled || irq.pending || irq.level || irq.active) {
                continue;
            }
            let mut flags = Vec::new();
            for (on, what) in [
                (irq.enabled, "enabled"),
                (irq.pending || irq.level, "pending"),
                (irq.active, "active"),
            ] {
                if on {
                    flags.push(what);
                }
            }
            let whose = match cpu {
                Some(c) => format!(" of vCPU {c}"),
                None => format!(", routed to {:#x}", irq.route),
            };
            let _ = writeln!(
                o,
                "INTID {intid}{whose}: {}, priority {:#x}, {}{}",
                flags.join(" "),
                irq.priority,
                if irq.edge { "edge" } else { "level" },
                irq.owner.map_or(String::new(), |v| format!(
                    ", in a list register of vCPU {v}"
                ))
            );
        }
        o
    })
}
