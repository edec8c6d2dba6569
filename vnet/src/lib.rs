//! `l4vio_net_p2p`, the virtio network switch.
//!
//! The switch is a factory of ports (`create(0, ...)` on its `svr`
//! capability, as vmm.lua's `start_virtio_switch` asks). Each port is a
//! virtio-net device served over shared memory with the protocol
//! [`l4_ipc::virtio`]: a driver (uvmm's virtio proxy for a guest)
//! registers its memory, sets the port up and kicks it through an Irq; the
//! switch takes the frames from the port's transmit queue and copies each
//! into the receive queue of the port its destination address was learned
//! on, or of every other port for broadcast, multicast and unknown
//! addresses ([`switch`]), then notifies the drivers through their Irqs.
//!
//! * [`mac`]: address learning;
//! * [`offload`]: the frame header, checksum and segmentation offloads;
//! * [`options`]: the command line (L4Re's switch options);
//! * [`port`]: one port's virtio-net device side;
//! * [`switch`]: ports and forwarding;
//! * [`vlan`]: 802.1Q VLANs of ports (access and trunk ports);
//! * [`service`]: the IPC side (factory, ports, kicks, ports whose driver
//!   went away) over a [`service::Backend`] that does what needs the
//!   kernel.

pub mod mac;
pub mod offload;
pub mod options;
pub mod port;
pub mod service;
pub mod switch;
pub mod vlan;
