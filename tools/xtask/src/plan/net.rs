//! The virtio network switches of a plan: each switch's command line and
//! ports read by the switch's own code (`vnet`: its option parser, and
//! its port table, which names the ports, gives them their addresses and
//! refuses what the running switch would refuse), who holds each port,
//! and which ports share a network (VLAN).

use l4_ipc::netstats::STATS_CREATE;
use ned::backend::FactoryArg;
use vnet::options::Options;
use vnet::port::{CreateArg, PortOptions};
use vnet::switch::Switch;
use vnet::vlan::{UNTAGGED, VID_MAX, Vid};

use super::model::{Made, System};

/// The module names of the switch (the same program).
pub const SWITCH_PROGRAMS: [&str; 2] = ["l4vio_net_p2p", "l4vio_switch"];

/// One port the script asked a switch for.
#[derive(Clone, Debug)]
pub struct PortPlan {
    /// What the script asked for.
    pub made: Made,
    /// The port as the switch makes it, or why it refuses.
    pub port: Result<PortInfo, String>,
}

/// A port the switch makes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PortInfo {
    /// Its name in the switch's log.
    pub name: String,
    /// The address offered to the driver, if any.
    pub mac: Option<[u8; 6]>,
    /// `access port of VLAN 5`, `no VLAN`, ...
    pub vlan: String,
    pub monitor: bool,
    /// The networks whose frames it gets ([`UNTAGGED`] for no VLAN),
    /// ascending.
    pub networks: Vec<Vid>,
}

/// A switch task and its ports.
#[derive(Clone, Debug)]
pub struct SwitchPlan {
    pub task: usize,
    /// Its command line, read as the switch reads it.
    pub options: Result<Options, String>,
    pub ports: Vec<PortPlan>,
    /// The statistics capabilities asked of it (`create(1)`).
    pub stats: Vec<Made>,
}

fn create_arg(a: &FactoryArg) -> Option<CreateArg> {
    match a {
        FactoryArg::Int(v) => Some(CreateArg::Int(*v)),
        FactoryArg::Uint(v) => Some(CreateArg::Int(*v as i64)),
        FactoryArg::Str(s) => Some(CreateArg::Str(s.clone())),
        FactoryArg::Nil => None,
    }
}

/// The switches of `s`, their ports in the order the script made them.
pub fn read(s: &System) -> Vec<SwitchPlan> {
    s.tasks
        .iter()
        .filter(|t| SWITCH_PROGRAMS.contains(&t.name()))
        .map(|t| {
            let options = Options::parse(&t.args);
            let mut switch = Switch::new(options.clone().unwrap_or_default());
            let (stats, ports): (Vec<&Made>, Vec<&Made>) =
                s.made.iter().filter(|m| m.server == t.id).partition(|m| {
                    m.proto == STATS_CREATE && m.args.iter().all(|a| *a == FactoryArg::Nil)
                });
            let ports = ports
                .into_iter()
                .map(|m| PortPlan {
                    made: m.clone(),
                    port: make_port(&mut switch, m),
                })
                .collect();
            SwitchPlan {
                task: t.id,
                options,
                ports,
                stats: stats.into_iter().cloned().collect(),
            }
        })
        .collect()
}

/// What the switch does with `create(proto, args...)` (but the
/// statistics capability, `create(1)`).
fn make_port(switch: &mut Switch, m: &Made) -> Result<PortInfo, String> {
    if m.proto == STATS_CREATE {
        return Err("the statistics interface (create(1)) takes no arguments".into());
    }
    if m.proto != 0 {
        return Err(format!(
            "protocol {} is not served: 0 makes a port (virtio), 1 the statistics interface",
            m.proto
        ));
    }
    let args: Vec<CreateArg> = m.args.iter().filter_map(create_arg).collect();
    let opts = PortOptions::parse(&args)?;
    let id = switch.add_port(opts).map_err(|(_, e)| e)?;
    let p = switch.port(id).expect("a port just made");
    let networks = (UNTAGGED..=VID_MAX)
        .filter(|&v| p.monitor() || p.vlan().member(v))
        .collect();
    Ok(PortInfo {
        name: p.name.clone(),
        mac: p.mac,
        vlan: p.vlan().to_string(),
        monitor: p.monitor(),
        networks,
    })
}

impl SwitchPlan {
    /// The ports made, without the refused ones.
    pub fn made_ports(&self) -> impl Iterator<Item = (&PortPlan, &PortInfo)> {
        self.ports
            .iter()
            .filter_map(|p| p.port.as_ref().ok().map(|i| (p, i)))
    }

    /// The other ports (not monitors) that get frames of a network `p`
    /// sends into.
    pub fn peers<'a>(&'a self, p: &'a PortInfo) -> impl Iterator<Item = &'a PortInfo> + 'a {
        self.made_ports().map(|(_, q)| q).filter(move |q| {
            !q.monitor
                && q.name != p.name
                && q.networks
                    .iter()
                    .any(|v| p.networks.binary_search(v).is_ok())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn made(server: usize, args: &[&str]) -> Made {
        Made {
            obj: 0,
            server,
            proto: 0,
            args: args
                .iter()
                .map(|a| FactoryArg::Str(a.to_string()))
                .collect(),
            site: "test.ned:1".into(),
            holders: Vec::new(),
        }
    }

    #[test]
    fn ports_as_the_switch_makes_them() {
        let mut sw = Switch::new(Options::default());
        let p = make_port(&mut sw, &made(1, &["vlan=access=5"])).unwrap();
        assert_eq!(p.name, "port0");
        assert_eq!(p.mac, Some([2, 8, 0, 0, 0, 1]));
        assert_eq!(p.vlan, "access port of VLAN 5");
        assert_eq!(p.networks, [5]);
        let t = make_port(&mut sw, &made(1, &["name=t", "vlan=trunk=5,7"])).unwrap();
        assert_eq!((t.name.as_str(), &t.networks[..]), ("t", &[5, 7][..]));
        let e = make_port(&mut sw, &made(1, &["vlan=acess=5"])).unwrap_err();
        assert!(e.contains("vlan=acess=5"), "{e}");
        let e = make_port(&mut sw, &made(1, &["mac=02:08:00:00:00:01"])).unwrap_err();
        assert_eq!(e, "address 02:08:00:00:00:01 is port0's already");
        let m = make_port(&mut sw, &made(1, &["type=monitor"])).unwrap();
        assert!(m.monitor && m.networks.len() == 4095);
        let mut stats = made(1, &["x"]);
        stats.proto = 1;
        assert!(
            make_port(&mut sw, &stats)
                .unwrap_err()
                .contains("takes no arguments")
        );
        stats.proto = 2;
        assert!(
            make_port(&mut sw, &stats)
                .unwrap_err()
                .contains("protocol 2 is not served")
        );
    }
}
