//! Linux kernel modules: what a `.ko` file says about itself (its `.modinfo`
//! section) and the order in which a set of them must be loaded.
//!
//! Debian's kernel package ships no `modules.dep` (depmod makes it on
//! installation), so the dependencies come from each module's
//! `depends=a,b` entry, as depmod reads them.

use std::collections::BTreeMap;

use goblin::elf::Elf;

use crate::error::{Error, Result, bail};

/// A module's name (`virtio_net`, never `virtio-net`: the kernel's spelling)
/// and the modules it needs.
#[derive(Clone, Debug, PartialEq)]
pub struct ModInfo {
    pub name: String,
    pub depends: Vec<String>,
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
    for entry in bytes[range].split(|&b| b == 0) {
        let entry = String::from_utf8_lossy(entry);
        if let Some(n) = entry.strip_prefix("name=") {
            name = Some(canonical(n));
        } else if let Some(list) = entry.strip_prefix("depends=") {
            depends.extend(list.split(',').filter(|d| !d.is_empty()).map(canonical));
        }
    }
    let name = match name {
        Some(n) => n,
        None => name_of_file(file.rsplit('/').next().unwrap_or(file))
            .ok_or_else(|| bad("no name= entry".into()))?,
    };
    Ok(ModInfo { name, depends })
}

/// The modules to load for `wanted`, dependencies first, each once. `known`
/// maps every module of the kernel to its dependencies; names in `builtin`
/// are part of the kernel image and are skipped (also as dependencies).
pub fn load_order(
    wanted: &[&str],
    known: &BTreeMap<String, Vec<String>>,
    builtin: &[String],
) -> Result<Vec<String>> {
    fn visit(
        name: &str,
        known: &BTreeMap<String, Vec<String>>,
        builtin: &[String],
        path: &mut Vec<String>,
        order: &mut Vec<String>,
    ) -> Result<()> {
        if builtin.iter().any(|b| b == name) || order.iter().any(|o| o == name) {
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
            visit(d, known, builtin, path, order)?;
        }
        path.pop();
        order.push(name.to_string());
        Ok(())
    }
    let mut order = Vec::new();
    for w in wanted {
        visit(&canonical(w), known, builtin, &mut Vec::new(), &mut order)?;
    }
    Ok(order)
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
