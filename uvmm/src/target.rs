//! uvmm as an L4Re task: capabilities from the environment, files from
//! `rom/`, console output to the log.
//!
//! What the system offers today and what not:
//! * `ram` (or a memory node's `l4vmm,dscap`) is looked up and asked for
//!   its size and rights (`Dataspace::info`). The runtime has no region
//!   manager call a program can use to attach a dataspace, so the guest
//!   images are loaded into a RAM image of that size in uvmm's own memory
//!   (pages only where something was loaded); the backend will map the
//!   dataspace itself and copy nothing.
//! * The scheduler says how many CPUs there are (one vCPU each at most).
//! * The kernel has no Vm object and no vCPU interface yet, so after
//!   building the VM uvmm says so and stops.

use std::io::Write;
use std::process::ExitCode;
use std::sync::Arc;

use l4::{Cap, Scheduler};
use l4_ipc::protocols::{DataspaceClient, ds_flags};
use l4re::env::caps;
use uvmm::devices::ConsoleOut;
use uvmm::machine::{self, Host};
use uvmm::memory::Ram;
use uvmm::{Options, info};

/// Guest console output: the task's log (standard output).
struct LogOut;

impl ConsoleOut for LogOut {
    fn write(&mut self, bytes: &[u8]) {
        let mut out = std::io::stdout().lock();
        // Nowhere to report a failing log.
        let _ = out.write_all(bytes);
        let _ = out.flush();
    }
}

struct L4Host;

impl Host for L4Host {
    fn read_file(&mut self, path: &str) -> Result<Vec<u8>, String> {
        std::fs::read(path).map_err(|e| e.to_string())
    }

    fn ram(&mut self, cap: &str) -> Result<(Arc<Ram>, Option<u64>), String> {
        let index = l4re::env::get_cap(cap).ok_or_else(|| {
            format!("no capability named '{cap}' (start uvmm with caps = {{ {cap} = <dataspace>:m(\"rw\") }})")
        })?;
        let (size, flags) = DataspaceClient::new(index)
            .info()
            .map_err(|e| format!("'{cap}' does not answer as a dataspace: {e:?}"))?;
        if flags & ds_flags::W == 0 {
            return Err(format!(
                "dataspace '{cap}' is read-only (hand it over with :m(\"rw\"))"
            ));
        }
        let size = usize::try_from(size).map_err(|_| format!("dataspace '{cap}' is too big"))?;
        info!(
            "ram",
            "dataspace '{cap}': {size:#x} bytes (loaded into a local image: no attach yet)"
        );
        // No host-physical address: the dataspace protocol has no query for it.
        Ok((Arc::new(Ram::zeroed(size)), None))
    }

    fn console(&mut self, cap: &str) -> Result<Box<dyn ConsoleOut>, String> {
        // The log is the task's standard output; other Vcon capabilities
        // need a Vcon client the runtime does not offer programs yet.
        if cap == machine::DEFAULT_VCON_CAP {
            Ok(Box::new(LogOut))
        } else {
            Err("only the log can be a console yet".into())
        }
    }
}

/// Builds the VM and stops before running it.
pub fn run(opts: Options) -> ExitCode {
    let cpus = Cap::<Scheduler>::from_index(caps::SCHEDULER)
        .info()
        .map(|i| i.count().max(1) as usize)
        .unwrap_or(1);
    let m = match machine::build(&opts, &mut L4Host, cpus) {
        Ok(m) => m,
        Err(e) => {
            eprintln!("uvmm: {e}");
            return ExitCode::FAILURE;
        }
    };
    info!(
        "vmm",
        "{} vCPU(s), boot at {:#x} with the device tree at {:#x}",
        m.mpidrs.len(),
        m.boot.pc,
        m.boot.x[0]
    );
    eprintln!(
        "uvmm: the guest is loaded, but the kernel has no Vm object or vCPU interface yet: cannot run it; stopping"
    );
    ExitCode::FAILURE
}
