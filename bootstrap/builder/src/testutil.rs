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

pub use crate::elfwrite::Segment;

/// A minimal little-endian ELF64 file with one PT_LOAD per segment and no
/// sections, entered at its first segment.
pub fn elf(machine: u16, e_type: u16, segments: &[Segment]) -> Vec<u8> {
    let entry = segments.first().map_or(0, |s| s.vaddr);
    crate::elfwrite::elf_file(machine, e_type, entry, segments, 8)
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
