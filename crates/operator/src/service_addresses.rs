//! Cluster IPs (from the service CIDR) and node ports (30000–32767) for Services, as the Kubernetes
//! API server allocates them. Pure bookkeeping: the controller decides what to write.

use std::{
    collections::BTreeSet,
    net::{IpAddr, Ipv4Addr},
};

use ipnet::Ipv4Net;
use thiserror::Error;

#[derive(Debug, Error, PartialEq, Eq)]
pub enum AllocError {
    #[error("the service CIDR {0} is exhausted: every cluster IP is in use")]
    ClusterIpsExhausted(Ipv4Net),
    #[error("cluster IP {ip} is not in the service CIDR {cidr}")]
    OutsideCidr { ip: IpAddr, cidr: Ipv4Net },
    #[error("cluster IP {0} is already allocated to another Service")]
    ClusterIpTaken(IpAddr),
    #[error("the node port range {0}-{1} is exhausted")]
    NodePortsExhausted(u16, u16),
    #[error("node port {0} is already allocated to another Service")]
    NodePortTaken(u16),
    #[error("node port {port} is outside the node port range {lo}-{hi}")]
    NodePortOutOfRange { port: u16, lo: u16, hi: u16 },
}

/// Cluster IPs in use within one IPv4 service CIDR. The network address and the first host address
/// (the `kubernetes` Service's, by convention) are never handed out.
#[derive(Debug)]
pub struct ClusterIps {
    cidr: Ipv4Net,
    used: BTreeSet<u32>,
}

impl ClusterIps {
    pub fn new(cidr: Ipv4Net) -> Self {
        ClusterIps { cidr: cidr.trunc(), used: BTreeSet::new() }
    }

    fn bounds(&self) -> (u32, u32) {
        let net = u32::from(self.cidr.network());
        let bcast = u32::from(self.cidr.broadcast());
        (net + 2, bcast.saturating_sub(1).max(net + 2))
    }

    /// Marks an existing assignment (at start-up, from stored Services, or a user's `clusterIP`).
    pub fn claim(&mut self, ip: IpAddr) -> Result<(), AllocError> {
        let IpAddr::V4(v4) = ip else { return Err(AllocError::OutsideCidr { ip, cidr: self.cidr }) };
        if !self.cidr.contains(&v4) {
            return Err(AllocError::OutsideCidr { ip, cidr: self.cidr });
        }
        if !self.used.insert(u32::from(v4)) {
            return Err(AllocError::ClusterIpTaken(ip));
        }
        Ok(())
    }

    pub fn release(&mut self, ip: IpAddr) {
        if let IpAddr::V4(v4) = ip {
            self.used.remove(&u32::from(v4));
        }
    }

    /// A random free address (as the API server picks), falling back to a scan from there.
    pub fn allocate(&mut self, random: u32) -> Result<IpAddr, AllocError> {
        let (lo, hi) = self.bounds();
        let span = hi - lo + 1;
        let start = lo + random % span;
        let candidate = (start..=hi).chain(lo..start).find(|c| !self.used.contains(c));
        let ip = candidate.ok_or(AllocError::ClusterIpsExhausted(self.cidr))?;
        self.used.insert(ip);
        Ok(IpAddr::V4(Ipv4Addr::from(ip)))
    }
}

/// Node ports in use.
#[derive(Debug)]
pub struct NodePorts {
    lo: u16,
    hi: u16,
    used: BTreeSet<u16>,
}

impl NodePorts {
    pub fn new(lo: u16, hi: u16) -> Self {
        NodePorts { lo, hi, used: BTreeSet::new() }
    }

    pub fn claim(&mut self, port: u16) -> Result<(), AllocError> {
        if !(self.lo..=self.hi).contains(&port) {
            return Err(AllocError::NodePortOutOfRange { port, lo: self.lo, hi: self.hi });
        }
        if !self.used.insert(port) {
            return Err(AllocError::NodePortTaken(port));
        }
        Ok(())
    }

    pub fn release(&mut self, port: u16) {
        self.used.remove(&port);
    }

    pub fn allocate(&mut self, random: u32) -> Result<u16, AllocError> {
        let span = u32::from(self.hi - self.lo) + 1;
        let start = self.lo + u16::try_from(random % span).unwrap_or(0);
        let port = (start..=self.hi)
            .chain(self.lo..start)
            .find(|p| !self.used.contains(p))
            .ok_or(AllocError::NodePortsExhausted(self.lo, self.hi))?;
        self.used.insert(port);
        Ok(port)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cluster_ips_are_unique_until_exhausted() {
        let mut ips = ClusterIps::new("10.96.0.0/29".parse().unwrap());
        let mut seen = BTreeSet::new();
        for i in 0..5 {
            let ip = ips.allocate(i * 7).unwrap();
            assert!(seen.insert(ip), "{ip} handed out twice");
            assert_ne!(ip.to_string(), "10.96.0.0");
            assert_ne!(ip.to_string(), "10.96.0.1");
            assert_ne!(ip.to_string(), "10.96.0.7");
        }
        assert_eq!(ips.allocate(3), Err(AllocError::ClusterIpsExhausted("10.96.0.0/29".parse().unwrap())));
        ips.release("10.96.0.4".parse().unwrap());
        assert_eq!(ips.allocate(0).unwrap().to_string(), "10.96.0.4");
    }

    #[test]
    fn claims_are_checked() {
        let mut ips = ClusterIps::new("10.96.0.0/16".parse().unwrap());
        ips.claim("10.96.41.64".parse().unwrap()).unwrap();
        assert!(matches!(ips.claim("10.96.41.64".parse().unwrap()), Err(AllocError::ClusterIpTaken(_))));
        assert!(matches!(ips.claim("10.97.0.1".parse().unwrap()), Err(AllocError::OutsideCidr { .. })));
        let mut ports = NodePorts::new(30000, 30001);
        ports.claim(30000).unwrap();
        assert_eq!(ports.allocate(0), Ok(30001));
        assert_eq!(ports.allocate(0), Err(AllocError::NodePortsExhausted(30000, 30001)));
        assert_eq!(ports.claim(80), Err(AllocError::NodePortOutOfRange { port: 80, lo: 30000, hi: 30001 }));
    }
}
