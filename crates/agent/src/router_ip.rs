//! The node's router IP (Cilium's "CiliumInternalIP"): the address of `cilium_host`, the pods'
//! gateway. It must not change while pods use it, so an address the host device already carries
//! inside the pod CIDR is kept; a fresh node takes the CIDR's first host address.

use std::net::Ipv4Addr;

use ipnet::Ipv4Net;
use netconf::{HOST_DEVICE, Netconf};

/// The router IP for `cidr`, given the addresses `cilium_host` has now.
pub fn pick(cidr: Ipv4Net, existing: &[Ipv4Net]) -> Ipv4Addr {
    let usable = |ip: &Ipv4Addr| cidr.contains(ip) && *ip != cidr.network() && *ip != cidr.broadcast();
    existing
        .iter()
        .map(|a| a.addr())
        .find(usable)
        .or_else(|| cidr.hosts().next())
        // A /31 or /32 has no host range; its network address is all there is.
        .unwrap_or(cidr.network())
}

/// Reads `cilium_host`'s addresses (if it exists) and picks.
pub async fn choose(node: &Netconf, cidr: Ipv4Net) -> netconf::Result<Ipv4Addr> {
    let existing = match node.link(HOST_DEVICE).await? {
        Some(link) => node.addresses(link.index).await?,
        None => Vec::new(),
    };
    Ok(pick(cidr, &existing))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(s: &str) -> Ipv4Net {
        s.parse().unwrap()
    }

    #[test]
    fn a_fresh_node_takes_the_first_host() {
        assert_eq!(pick(net("172.20.1.0/24"), &[]), Ipv4Addr::new(172, 20, 1, 1));
    }

    #[test]
    fn an_existing_router_ip_is_kept() {
        // As on a Cilium node, where the router IP is random: 172.20.0.192.
        let existing = [net("10.0.0.1/32"), net("172.20.0.192/32")];
        assert_eq!(pick(net("172.20.0.0/24"), &existing), Ipv4Addr::new(172, 20, 0, 192));
        // One from a former pod CIDR does not count.
        assert_eq!(pick(net("172.20.5.0/24"), &existing), Ipv4Addr::new(172, 20, 5, 1));
    }
}
