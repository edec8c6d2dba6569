//! The `l4re` runtime binary: see the library's documentation.
#![cfg_attr(target_os = "none", no_std, no_main)]

#[cfg(target_os = "none")]
mod rt;

#[cfg(not(target_os = "none"))]
fn main() {
    eprintln!("l4re: the runtime runs only inside an L4 task (aarch64-unknown-none)");
    std::process::exit(1);
}
