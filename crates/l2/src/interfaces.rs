//! The network interfaces a node reports in its heartbeats: what policies' interface regexes match
//! and what the subnet preference reads.

use std::net::IpAddr;

use ipnet::IpNet;

/// Longest interface name Linux accepts (`IFNAMSIZ` − 1 for the terminating NUL).
pub const MAX_INTERFACE_NAME: usize = 15;

/// One interface of a node, as the node reports it.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Interface {
    /// The kernel's name (`eth0`), at most [`MAX_INTERFACE_NAME`] bytes.
    pub name: String,
    /// Operationally up (carrier and admin up): a down interface reaches nobody, so it never
    /// announces.
    pub up: bool,
    /// The interface's addresses with their prefix length (`192.168.10.11/24`).
    pub addrs: Vec<IpNet>,
}

impl Interface {
    /// An interface from its parts.
    pub fn new(name: impl Into<String>, up: bool, addrs: Vec<IpNet>) -> Self {
        Interface { name: name.into(), up, addrs }
    }

    /// Whether one of the interface's subnets holds `ip`: a neighbour on that link can ARP for it
    /// directly, so announcing there reaches the clients that need it.
    pub fn on_subnet_of(&self, ip: IpAddr) -> bool {
        self.addrs.iter().any(|net| net.contains(&ip))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subnet_membership_follows_prefix_and_family() {
        let eth =
            Interface::new("eth1", true, vec!["192.168.10.11/24".parse().unwrap(), "fd00:10::b/64".parse().unwrap()]);
        assert!(eth.on_subnet_of("192.168.10.200".parse().unwrap()));
        assert!(!eth.on_subnet_of("192.168.20.200".parse().unwrap()));
        assert!(eth.on_subnet_of("fd00:10::77".parse().unwrap()));
        assert!(!eth.on_subnet_of("fd00:20::77".parse().unwrap()));
        assert!(!Interface::new("lo", true, vec![]).on_subnet_of("192.168.10.200".parse().unwrap()));
    }
}
