//! Linux kernel modules: what a `.ko` file says about itself (its `.modinfo`
//! section) and the order in which a set of them must be loaded.
//!
//! Debian's kernel package ships no `modules.dep` (depmod makes it on
//! installation), so the dependencies come from each module's
//! `depends=a,b` entry, as depmod reads them. For the ramdisk this module
//! also writes two of the index files busybox's `modprobe` reads in
//! `/lib/modules/<release>/`: `modules.dep` and `modules.alias` (the
//! package's `modules.builtin` is taken as it is).

use std::collections::BTreeMap;

use goblin::elf::Elf;

use crate::error::{Error, Result, bail};

/// A module's name (`virtio_net`, never `virtio-net`: the kernel's spelling),
/// the modules it needs and the other names the kernel may ask for it by
/// (`alias=` entries such as `rtnl-link-vlan` or `virtio:d00000001v*`).
#[derive(Clone, Debug, PartialEq)]
pub struct ModInfo {
    pub name: String,
    pub depends: Vec<String>,
    pub aliases: Vec<String>,
}

/// The kernel's spelling of a module name: `-` becomes `_`.
pub fn canonical(name: &str) -> String {
    name.replace('-', "_")
}

/// The module name of a file name such as `virtio-rng.ko` or `failover.ko.xz`.
pub fn name_of_file(file: &str) -> Option<String> {
    let stem = file
        .strip_suffix(".ko")
        .or_else(|| file.strip_suffix(".ko.xz"))?;
    Some(canonical(stem))
}

/// Reads the `.modinfo` section of a module (an uncompressed ELF file):
/// NUL-separated `key=value` strings. `file` names it in errors.
pub fn modinfo(file: &str, bytes: &[u8]) -> Result<ModInfo> {
    let bad = |why: String| Error::new(format!("{file}: not a kernel module: {why}"));
    let elf = Elf::parse(bytes).map_err(|e| bad(e.to_string()))?;
    let section = elf
        .section_headers
        .iter()
        .find(|s| elf.shdr_strtab.get_at(s.sh_name) == Some(".modinfo"))
        .ok_or_else(|| bad("no .modinfo section".into()))?;
    let range = section
        .file_range()
        .filter(|r| r.end <= bytes.len())
        .ok_or_else(|| bad(".modinfo lies outside the file".into()))?;
    let mut name = None;
    let mut depends = Vec::new();
    let mut aliases = Vec::new();
    for entry in bytes[range].split(|&b| b == 0) {
        let entry = String::from_utf8_lossy(entry);
        if let Some(n) = entry.strip_prefix("name=") {
            name = Some(canonical(n));
        } else if let Some(list) = entry.strip_prefix("depends=") {
            depends.extend(list.split(',').filter(|d| !d.is_empty()).map(canonical));
        } else if let Some(alias) = entry.strip_prefix("alias=") {
            aliases.push(alias.to_string());
        }
    }
    let name = match name {
        Some(n) => n,
        None => name_of_file(file.rsplit('/').next().unwrap_or(file))
            .ok_or_else(|| bad("no name= entry".into()))?,
    };
    Ok(ModInfo {
        name,
        depends,
        aliases,
    })
}

/// The modules to load for `wanted`, dependencies first, each once. `known`
/// maps every module of the kernel to its dependencies; names in `present`
/// are there already (built into the kernel image, or loaded or chosen
/// before) and are skipped, also as dependencies.
pub fn load_order(
    wanted: &[&str],
    known: &BTreeMap<String, Vec<String>>,
    present: &[String],
) -> Result<Vec<String>> {
    fn visit(
        name: &str,
        known: &BTreeMap<String, Vec<String>>,
        present: &[String],
        path: &mut Vec<String>,
        order: &mut Vec<String>,
    ) -> Result<()> {
        if present.iter().any(|b| b == name) || order.iter().any(|o| o == name) {
            return Ok(());
        }
        if path.iter().any(|p| p == name) {
            bail!(
                "kernel modules depend on each other in a circle: {} -> {name}",
                path.join(" -> ")
            );
        }
        let Some(depends) = known.get(name) else {
            match path.last() {
                Some(parent) => bail!(
                    "kernel module {parent} needs {name}, which the kernel package does not have"
                ),
                None => bail!("the kernel package has no module {name} (and it is not built in)"),
            }
        };
        path.push(name.to_string());
        for d in depends {
            visit(d, known, present, path, order)?;
        }
        path.pop();
        order.push(name.to_string());
        Ok(())
    }
    let mut order = Vec::new();
    for w in wanted {
        visit(&canonical(w), known, present, &mut Vec::new(), &mut order)?;
    }
    Ok(order)
}

/// The file of a module in the ramdisk's flat module directory.
pub fn file_of(name: &str) -> String {
    format!("{name}.ko")
}

/// The text of `modules.dep` for `modules` (every module of the ramdisk):
/// a line `a.ko: b.ko c.ko` per module with all it needs, directly or
/// through others, as depmod writes it. Busybox's modprobe loads the list
/// from its end, so the modules are listed in reverse load order (`c`
/// first); the file names are relative to the module directory. Built-in
/// modules are left out, as in [`load_order`].
pub fn modules_dep(
    modules: &[String],
    known: &BTreeMap<String, Vec<String>>,
    builtin: &[String],
) -> Result<String> {
    let mut text = String::new();
    for name in modules {
        let mut needs = load_order(&[name.as_str()], known, builtin)?;
        // load_order ends with the module itself.
        needs.pop();
        text.push_str(&file_of(name));
        text.push(':');
        for dep in needs.iter().rev() {
            text.push(' ');
            text.push_str(&file_of(dep));
        }
        text.push('\n');
    }
    Ok(text)
}

/// The text of `modules.alias`: `alias <alias> <module>` for each alias of
/// `modules`, so that the kernel's requests by alias (e.g.
/// `rtnl-link-vlan` when a VLAN link is added) reach the module.
pub fn modules_alias(modules: &[String], aliases: &BTreeMap<String, Vec<String>>) -> String {
    let mut text = String::new();
    for name in modules {
        for alias in aliases.get(name).into_iter().flatten() {
            text.push_str(&format!("alias {alias} {name}\n"));
        }
    }
    text
}

/// The names in a `modules.builtin` file (`kernel/drivers/virtio/virtio.ko`
/// lines).
pub fn builtin_names(text: &str) -> Vec<String> {
    text.lines()
        .filter_map(|l| name_of_file(l.trim().rsplit('/').next()?))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn known(pairs: &[(&str, &[&str])]) -> BTreeMap<String, Vec<String>> {
        pairs
            .iter()
            .map(|(n, d)| (n.to_string(), d.iter().map(|s| s.to_string()).collect()))
            .collect()
    }

    #[test]
    fn dependencies_come_first_once() {
        let k = known(&[
            ("virtio_net", &["net_failover", "virtio_ring"]),
            ("net_failover", &["failover"]),
            ("failover", &[]),
            ("virtio_mmio", &[]),
            ("virtio_console", &[]),
            ("virtio_ring", &[]),
        ]);
        let builtin = vec!["virtio_ring".to_string()];
        let order = load_order(
            &["virtio-mmio", "virtio_net", "failover", "virtio_console"],
            &k,
            &builtin,
        )
        .unwrap();
        assert_eq!(
            order,
            [
                "virtio_mmio",
                "failover",
                "net_failover",
                "virtio_net",
                "virtio_console"
            ]
        );
    }

    /// Debian 6.1's VLAN module and what it needs (`depends=` of each).
    fn vlan_stack() -> BTreeMap<String, Vec<String>> {
        known(&[
            ("8021q", &["mrp", "garp"]),
            ("mrp", &[]),
            ("garp", &["stp", "llc"]),
            ("stp", &["llc"]),
            ("llc", &[]),
            ("virtio_mmio", &[]),
            ("failover", &[]),
            ("net_failover", &["failover"]),
            ("virtio_net", &["net_failover", "virtio_ring"]),
            ("virtio_ring", &[]),
        ])
    }

    #[test]
    fn present_modules_are_not_loaded_again() {
        let k = vlan_stack();
        let present = ["llc".to_string(), "virtio_ring".to_string()];
        let order = load_order(&["8021q"], &k, &present).unwrap();
        assert_eq!(order, ["mrp", "stp", "garp", "8021q"]);
    }

    #[test]
    fn modules_dep_lists_every_need_in_reverse_load_order() {
        let k = vlan_stack();
        let builtin = vec!["virtio_ring".to_string()];
        let all: Vec<String> = [
            "virtio_mmio",
            "failover",
            "net_failover",
            "virtio_net",
            "mrp",
            "llc",
            "stp",
            "garp",
            "8021q",
        ]
        .map(String::from)
        .to_vec();
        let text = modules_dep(&all, &k, &builtin).unwrap();
        assert_eq!(
            text,
            "virtio_mmio.ko:\n\
             failover.ko:\n\
             net_failover.ko: failover.ko\n\
             virtio_net.ko: net_failover.ko failover.ko\n\
             mrp.ko:\n\
             llc.ko:\n\
             stp.ko: llc.ko\n\
             garp.ko: stp.ko llc.ko\n\
             8021q.ko: garp.ko stp.ko llc.ko mrp.ko\n"
        );
        // Busybox's modprobe loads a line's modules from its end to its
        // start, the module itself last: dependencies must come first then.
        let line = text.lines().find(|l| l.starts_with("8021q.ko:")).unwrap();
        let mut loaded: Vec<&str> = line.split([':', ' ']).filter(|w| !w.is_empty()).collect();
        let module = loaded.remove(0);
        loaded.reverse();
        loaded.push(module);
        for (i, m) in loaded.iter().enumerate() {
            let name = m.strip_suffix(".ko").unwrap();
            for dep in &k[name] {
                let at = loaded.iter().position(|l| *l == file_of(dep)).unwrap();
                assert!(at < i, "{dep} after {name} in {loaded:?}");
            }
        }
    }

    #[test]
    fn alias_index() {
        let aliases: BTreeMap<String, Vec<String>> = [
            ("8021q".to_string(), vec!["rtnl-link-vlan".to_string()]),
            ("llc".to_string(), vec![]),
            ("unused".to_string(), vec!["x".to_string()]),
        ]
        .into_iter()
        .collect();
        let names = ["llc".to_string(), "8021q".to_string()];
        assert_eq!(
            modules_alias(&names, &aliases),
            "alias rtnl-link-vlan 8021q\n"
        );
    }

    #[test]
    fn missing_and_circular_modules_are_errors() {
        let k = known(&[("a", &["b"]), ("b", &["a"]), ("c", &["gone"])]);
        let err = load_order(&["a"], &k, &[]).unwrap_err().to_string();
        assert!(err.contains("circle: a -> b -> a"), "{err}");
        let err = load_order(&["c"], &k, &[]).unwrap_err().to_string();
        assert!(err.contains("c needs gone"), "{err}");
        let err = load_order(&["x"], &k, &[]).unwrap_err().to_string();
        assert!(err.contains("no module x"), "{err}");
    }

    #[test]
    fn names_of_files() {
        assert_eq!(name_of_file("virtio-rng.ko").as_deref(), Some("virtio_rng"));
        assert_eq!(name_of_file("failover.ko.xz").as_deref(), Some("failover"));
        assert_eq!(name_of_file("modules.dep"), None);
        assert_eq!(
            builtin_names("kernel/drivers/virtio/virtio.ko\nkernel/lib/crc-t10dif.ko\n"),
            ["virtio", "crc_t10dif"]
        );
    }

    #[test]
    fn not_a_module() {
        let err = modinfo("x.ko", b"\x7fELF garbage").unwrap_err().to_string();
        assert!(err.contains("x.ko: not a kernel module"), "{err}");
        // An ELF file without .modinfo: this test program itself.
        let me = std::fs::read(std::env::current_exe().unwrap()).unwrap();
        let err = modinfo("self.ko", &me).unwrap_err().to_string();
        assert!(err.contains("no .modinfo section"), "{err}");
    }
}
