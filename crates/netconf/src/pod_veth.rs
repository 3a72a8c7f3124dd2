//! Pod veths: host side `lxc<hash>` in the node namespace, peer born in the pod namespace.
//!
//! The pod gets its address as a /32 and reaches everything through the router IP:
//! ```text
//! pod:  eth0 <ip>/32 mtu <mtu>
//!       <router> dev eth0 scope link
//!       default via <router> dev eth0 [mtu <route_mtu>]
//!       neigh <router> lladdr <lxc mac> PERMANENT
//! node: lxc<hash> up, alias <container id>
//!       <ip> dev lxc<hash> scope link src <router>
//! ```
//! On a Cilium node the pod's ARP request for the router IP is answered by bpf_lxc with the lxc
//! device's MAC. cilia writes that answer into the pod up front as a permanent neighbour, so the
//! pod never has to ARP for its gateway and nothing depends on the node's arp_ignore/proxy_arp
//! settings; the host side then routes, since the router IP is a local address of the node.

use std::net::{IpAddr, Ipv4Addr};

use ipnet::Ipv4Net;
use netlink_packet_route::link::{InfoData, InfoVeth};
use netlink_packet_route::neighbour::NeighbourState;
use rtnetlink::{LinkUnspec, LinkVeth};

use crate::error::Result;
use crate::handle::Netconf;
use crate::link::LinkInfo;
use crate::netns::Netns;
use crate::route::{MAIN_TABLE, Route, RouteScope};
use crate::sysctl::ipv4_conf;

/// Longest interface name the kernel accepts (IFNAMSIZ - 1).
const MAX_IFNAME: usize = 15;
/// Prefix of host-side pod devices, as Cilium names them.
pub const HOST_IFNAME_PREFIX: &str = "lxc";
/// Loopback is ifindex 1 in every network namespace.
const LOOPBACK_INDEX: u32 = 1;

/// Host-side device name for a container: `lxc` + 12 hex digits of a stable hash of the ID.
///
/// Stable across agent restarts and releases (FNV-1a, not std's randomly seeded hasher), since a
/// restarted agent finds a pod's device by this name.
pub fn host_ifname_for(container_id: &str) -> String {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in container_id.as_bytes() {
        hash ^= u64::from(*byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    format!("{HOST_IFNAME_PREFIX}{:012x}", hash >> 16)
}

/// Everything needed to wire one pod.
#[derive(Debug)]
pub struct PodVethSpec<'a> {
    /// Host-side name, normally [`host_ifname_for`] of the container ID.
    pub host_ifname: String,
    /// Name inside the pod (CNI_IFNAME, usually `eth0`).
    pub pod_ifname: String,
    pub pod_netns: &'a Netns,
    pub pod_ip: Ipv4Addr,
    pub router_ip: Ipv4Addr,
    /// Device MTU of both ends.
    pub mtu: u32,
    /// MTU metric on the pod's default route (e.g. 1450 in tunnel mode), if any.
    pub route_mtu: Option<u32>,
    /// Recorded as the host device's alias so the device can be mapped back to its container.
    pub container_id: String,
}

/// The result of wiring a pod.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodVeth {
    pub host: LinkInfo,
    pub pod: LinkInfo,
}

impl Netconf {
    /// Creates and configures the pod's veth. `self` is the node namespace.
    ///
    /// Fails with EEXIST (see [`crate::Error::is_exists`]) if either name is taken, without
    /// touching the existing devices. Any failure after the pair exists removes it again, so
    /// nothing is left behind.
    pub async fn add_pod_veth(&self, spec: &PodVethSpec<'_>) -> Result<PodVeth> {
        for name in [&spec.host_ifname, &spec.pod_ifname] {
            validate_ifname(name).map_err(|r| self.invalid("add pod veth", name.as_str(), r))?;
        }
        let host_mac = random_mac();
        let pod_mac = random_mac();
        // The peer is created directly inside the pod namespace with its MTU and MAC: one request
        // instead of create, move, configure. It cannot be created up: the kernel configures the
        // peer before linking the pair and refuses to open a veth without a peer (ENOTCONN).
        let peer = LinkUnspec::new_with_name(&spec.pod_ifname)
            .mtu(spec.mtu)
            .address(pod_mac.to_vec())
            .setns_by_fd(std::os::fd::AsRawFd::as_raw_fd(spec.pod_netns))
            .build();
        let msg = LinkVeth::new(&spec.host_ifname, &spec.pod_ifname)
            .mtu(spec.mtu)
            .address(host_mac.to_vec())
            .up()
            .set_info_data(InfoData::Veth(InfoVeth::Peer(peer)))
            .build();
        self.handle.link().add(msg).execute().await.map_err(self.nl_err("create veth", spec.host_ifname.as_str()))?;

        match self.configure_pod_veth(spec, host_mac).await {
            Ok(veth) => Ok(veth),
            Err(err) => {
                if let Err(undo) = self.delete_link(&spec.host_ifname).await {
                    tracing::warn!(error = %undo, "cannot remove half-configured pod veth");
                }
                Err(err)
            }
        }
    }

    async fn configure_pod_veth(&self, spec: &PodVethSpec<'_>, host_mac: [u8; 6]) -> Result<PodVeth> {
        let host = self.require_link("configure pod veth", &spec.host_ifname).await?;
        self.handle
            .link()
            .set(LinkUnspec::new_with_index(host.index).alias(spec.container_id.clone()).build())
            .execute()
            .await
            .map_err(self.nl_err("set alias", spec.host_ifname.as_str()))?;
        self.set_sysctls(&[
            (ipv4_conf(&spec.host_ifname, "rp_filter"), "0".into()),
            (ipv4_conf(&spec.host_ifname, "send_redirects"), "0".into()),
        ])
        .await?;

        let pod = Netconf::connect(spec.pod_netns.try_clone()?).await?;
        let pod_link = pod.require_link("configure pod veth", &spec.pod_ifname).await?;
        pod.set_link_up(LOOPBACK_INDEX, "lo").await?;
        pod.set_link_up(pod_link.index, &spec.pod_ifname).await?;
        pod.handle
            .address()
            .add(pod_link.index, IpAddr::V4(spec.pod_ip), 32)
            .execute()
            .await
            .map_err(pod.nl_err("add pod address", spec.pod_ifname.as_str()))?;
        let router = Ipv4Net::new(spec.router_ip, 32).expect("/32 is valid");
        pod.add_route(&Route::new(router).oif(pod_link.index).scope(RouteScope::Link)).await?;
        pod.handle
            .neighbours()
            .add(pod_link.index, IpAddr::V4(spec.router_ip))
            .link_layer_address(&host_mac)
            .state(NeighbourState::Permanent)
            .replace()
            .execute()
            .await
            .map_err(pod.nl_err("add router neighbour", spec.pod_ifname.as_str()))?;
        let mut default = Route::via(Ipv4Net::default(), spec.router_ip).oif(pod_link.index);
        if let Some(mtu) = spec.route_mtu {
            default = default.mtu(mtu);
        }
        pod.add_route(&default).await?;

        self.add_route(
            &Route::new(Ipv4Net::new(spec.pod_ip, 32).expect("/32 is valid"))
                .oif(host.index)
                .scope(RouteScope::Link)
                .prefsrc(spec.router_ip),
        )
        .await?;
        let host = LinkInfo { alias: Some(spec.container_id.clone()), ..host };
        let pod_link = LinkInfo { up: true, ..pod_link };
        Ok(PodVeth { host, pod: pod_link })
    }

    /// Deletes a pod's veth by its host-side name (the peer and the host route go with it).
    /// Idempotent: `Ok(false)` when it was already gone.
    pub async fn delete_pod_veth(&self, host_ifname: &str) -> Result<bool> {
        self.delete_link(host_ifname).await
    }

    /// Host-side pod devices of this (node) namespace.
    pub async fn pod_veths(&self) -> Result<Vec<LinkInfo>> {
        Ok(self.links().await?.into_iter().filter(|l| l.name.starts_with(HOST_IFNAME_PREFIX)).collect())
    }

    /// Checks that the pod is wired as [`Netconf::add_pod_veth`] left it; the error says what
    /// differs.
    pub async fn verify_pod_veth(&self, spec: &PodVethSpec<'_>) -> Result<PodVeth> {
        let host = self.require_link("verify pod veth", &spec.host_ifname).await?;
        if !host.up {
            return Err(self.mismatch(&spec.host_ifname, "is down"));
        }
        let host_route = self
            .routes(MAIN_TABLE)
            .await?
            .into_iter()
            .any(|r| r.destination.addr() == spec.pod_ip && r.oif == Some(host.index));
        if !host_route {
            return Err(self.mismatch(&spec.host_ifname, format!("no route to {} via this device", spec.pod_ip)));
        }

        let pod = Netconf::connect(spec.pod_netns.try_clone()?).await?;
        let pod_link = pod.require_link("verify pod veth", &spec.pod_ifname).await?;
        if !pod_link.up {
            return Err(pod.mismatch(&spec.pod_ifname, "is down"));
        }
        if pod_link.mtu != Some(spec.mtu) {
            return Err(pod.mismatch(&spec.pod_ifname, format!("MTU is {:?}, expected {}", pod_link.mtu, spec.mtu)));
        }
        let has_address =
            pod.addresses(pod_link.index).await?.contains(&Ipv4Net::new(spec.pod_ip, 32).expect("/32 is valid"));
        if !has_address {
            return Err(pod.mismatch(&spec.pod_ifname, format!("address {}/32 missing", spec.pod_ip)));
        }
        let default_ok = pod.routes(MAIN_TABLE).await?.into_iter().any(|r| {
            r.destination.prefix_len() == 0 && r.gateway == Some(spec.router_ip) && r.oif == Some(pod_link.index)
        });
        if !default_ok {
            return Err(pod.mismatch(&spec.pod_ifname, format!("no default route via {}", spec.router_ip)));
        }
        Ok(PodVeth { host, pod: pod_link })
    }

    /// IPv4 addresses on the link with `index`.
    pub async fn addresses(&self, index: u32) -> Result<Vec<Ipv4Net>> {
        use futures::TryStreamExt;
        use netlink_packet_route::address::AddressAttribute;
        let msgs: Vec<_> = self
            .handle
            .address()
            .get()
            .set_link_index_filter(index)
            .execute()
            .try_collect()
            .await
            .map_err(self.nl_err("list addresses", index.to_string()))?;
        Ok(msgs
            .iter()
            .filter(|m| m.header.index == index)
            .filter_map(|m| {
                m.attributes.iter().find_map(|a| match a {
                    AddressAttribute::Address(IpAddr::V4(ip)) => Ipv4Net::new(*ip, m.header.prefix_len).ok(),
                    _ => None,
                })
            })
            .collect())
    }
}

fn validate_ifname(name: &str) -> std::result::Result<(), String> {
    if name.is_empty() || name.len() > MAX_IFNAME {
        return Err(format!("interface name {name:?} must have 1 to {MAX_IFNAME} bytes"));
    }
    if name == "." || name == ".." || name.contains(['/', ':']) || name.contains(char::is_whitespace) {
        return Err(format!("interface name {name:?} is not allowed"));
    }
    Ok(())
}

/// A random unicast, locally administered MAC.
fn random_mac() -> [u8; 6] {
    let mut mac: [u8; 6] = rand::random();
    mac[0] = (mac[0] & 0xfe) | 0x02;
    mac
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_ifname_is_stable_and_fits() {
        let a = host_ifname_for("0123456789abcdef");
        assert_eq!(a, host_ifname_for("0123456789abcdef"));
        assert_ne!(a, host_ifname_for("0123456789abcdeg"));
        assert!(a.len() <= MAX_IFNAME, "{a}");
        assert!(a.starts_with("lxc"));
    }

    #[test]
    fn ifname_rules() {
        assert!(validate_ifname("eth0").is_ok());
        assert!(validate_ifname("").is_err());
        assert!(validate_ifname("a/b").is_err());
        assert!(validate_ifname("0123456789abcdef").is_err());
    }

    #[test]
    fn random_mac_is_local_unicast() {
        for _ in 0..100 {
            let m = random_mac();
            assert_eq!(m[0] & 0x01, 0);
            assert_eq!(m[0] & 0x02, 0x02);
        }
    }
}
