//! Helpers for the unit tests: scratch directories and hand-made ELF files.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

/// A fresh directory under the system temp dir, removed on drop.
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> Self {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let path = std::env::temp_dir().join(format!(
            "bootstrap_builder-test-{}-{n}-{tag}",
            std::process::id()
        ));
        let _ = fs::remove_dir_all(&path);
        fs::create_dir_all(&path).unwrap();
        TempDir(path)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }

    /// Writes `name` (which may contain directories) below the temp dir.
    pub fn write(&self, name: &str, data: impl AsRef<[u8]>) -> PathBuf {
        let path = self.0.join(name);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(&path, data).unwrap();
        path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

pub const EM_AARCH64: u16 = 183;
pub const EM_X86_64: u16 = 62;
pub const ET_EXEC: u16 = 2;
pub const ET_DYN: u16 = 3;

/// A loadable segment for [`elf`]: `data` at `vaddr`, `memsz` bytes in memory.
pub struct Segment<'a> {
    pub vaddr: u64,
    pub data: &'a [u8],
    pub memsz: u64,
}

/// A minimal little-endian ELF64 file with one PT_LOAD per segment and no
/// sections.
pub fn elf(machine: u16, e_type: u16, segments: &[Segment]) -> Vec<u8> {
    const EHDR: usize = 64;
    const PHDR: usize = 56;
    let mut out = Vec::new();
    out.extend_from_slice(b"\x7fELF");
    out.extend_from_slice(&[2, 1, 1, 0]); // 64-bit, little-endian, version 1, SysV
    out.resize(16, 0);
    out.extend_from_slice(&e_type.to_le_bytes());
    out.extend_from_slice(&machine.to_le_bytes());
    out.extend_from_slice(&1u32.to_le_bytes()); // e_version
    out.extend_from_slice(&segments.first().map_or(0, |s| s.vaddr).to_le_bytes()); // e_entry
    out.extend_from_slice(&(EHDR as u64).to_le_bytes()); // e_phoff
    out.extend_from_slice(&0u64.to_le_bytes()); // e_shoff
    out.extend_from_slice(&0u32.to_le_bytes()); // e_flags
    for v in [EHDR, PHDR, segments.len(), 64, 0, 0] {
        out.extend_from_slice(&(v as u16).to_le_bytes()); // sizes and counts
    }
    let mut offset = (EHDR + PHDR * segments.len()) as u64;
    for s in segments {
        out.extend_from_slice(&1u32.to_le_bytes()); // PT_LOAD
        out.extend_from_slice(&7u32.to_le_bytes()); // RWX
        for v in [offset, s.vaddr, s.vaddr, s.data.len() as u64, s.memsz, 8] {
            out.extend_from_slice(&v.to_le_bytes());
        }
        offset += s.data.len() as u64;
    }
    for s in segments {
        out.extend_from_slice(s.data);
    }
    out
}

/// An AArch64 executable with one small segment (a stand-in kernel or root
/// task).
pub fn program(marker: &[u8]) -> Vec<u8> {
    elf(
        EM_AARCH64,
        ET_EXEC,
        &[Segment {
            vaddr: 0x40_0000,
            data: marker,
            memsz: marker.len() as u64,
        }],
    )
}
