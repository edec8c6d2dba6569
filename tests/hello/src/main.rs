//! `hello`: prints `Hello World!` once a second, forever (L4Re's hello
//! example, started by `conf/hello.ned` in the `hello-ned` scenario).

use std::io::Write;
use std::time::Duration;

fn main() {
    let mut out = std::io::stdout();
    loop {
        // A failed write (no log) is nothing to stop for: try again later.
        let _ = writeln!(out, "Hello World!").and_then(|()| out.flush());
        std::thread::sleep(Duration::from_secs(1));
    }
}
