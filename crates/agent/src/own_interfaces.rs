//! The node's own network devices as L2 announcements see them: which exist, whether they are
//! up, their addresses (for the subnet preference) and, for the responder map, their ifindex and
//! MAC. Only the datapath's node devices are candidates, as in Cilium (an interface outside
//! `--devices` has no `from_netdev` to answer ARP on it).

use ipnet::{IpNet, Ipv4Net};
use netconf::Netconf;

/// Name prefixes that are never node devices: cilia's host pair, the tunnel device, pod veths.
const NOT_NETDEVS: [&str; 5] = ["lo", "cilia_", "cilium_", "lxc", "vxlan"];

/// One device of this node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OwnInterface {
    pub name: String,
    pub index: u32,
    pub mac: [u8; 6],
    pub up: bool,
    pub addresses: Vec<Ipv4Net>,
}

impl OwnInterface {
    /// As the heartbeat reports it to the other nodes.
    pub fn report(&self) -> l2::Interface {
        l2::Interface {
            name: self.name.clone(),
            up: self.up,
            addrs: self.addresses.iter().copied().map(IpNet::V4).collect(),
        }
    }
}

/// The devices L2 announcements may use: `devices` when given (the agent's `--devices`), else
/// every device with an IPv4 address that is not loopback, cilia's own or a pod's. Down devices
/// are listed (as down) so that the other nodes see a failed NIC, not a missing one.
pub async fn scan(kernel: &Netconf, devices: &[String]) -> netconf::Result<Vec<OwnInterface>> {
    let mut out = Vec::new();
    for link in kernel.links().await? {
        let wanted = if devices.is_empty() {
            !NOT_NETDEVS.iter().any(|p| link.name.starts_with(p))
        } else {
            devices.contains(&link.name)
        };
        let Some(mac) = link.mac.filter(|m| *m != [0; 6]) else { continue };
        if !wanted {
            continue;
        }
        let addresses = kernel.addresses(link.index).await.unwrap_or_default();
        if devices.is_empty() && addresses.is_empty() {
            continue;
        }
        out.push(OwnInterface { name: link.name, index: link.index, mac, up: link.up, addresses });
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}
