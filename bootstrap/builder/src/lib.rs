//! Host side of bootstrap: `modules.list` parsing and image packing.
//!
//! API used by `tools/xtask`:
//!
//! ```ignore
//! let list = bootstrap_builder::modlist::ModulesList::load(path)?;   // parse (and `include`)
//! list.entries() -> impl Iterator<Item=&str>                       // names, in file order
//! let report = bootstrap_builder::build_image(&BuildOptions{..})?;     // write the image
//! ```

mod elfwrite;
pub mod modlist;
mod pack;

pub use pack::{BuildError, BuildOptions, BuildReport, ElfProblem, PackedModule, build_image};

#[cfg(test)]
mod testutil;
