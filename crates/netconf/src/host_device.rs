//! The node's gateway device for pods, like Cilium's `cilium_host`/`cilium_net`.
//!
//! A veth pair kept whole in the node namespace. `cilium_host` carries the router IP as a /32 and
//! is the next hop of the local pod CIDR; pods use the router IP as their default gateway, and the
//! host side of each pod veth answers for it (see [`crate::pod_veth`]). Host-originated traffic
//! to pods therefore leaves with the router IP as source, as on a Cilium node.

use std::net::Ipv4Addr;

use ipnet::Ipv4Net;
use rtnetlink::LinkVeth;

use crate::error::Result;
use crate::handle::Netconf;
use crate::link::LinkInfo;
use crate::route::{Route, RouteScope};
use crate::sysctl::ipv4_conf;

/// Name of the host end, which carries the router IP.
pub const HOST_DEVICE: &str = "cilium_host";
/// Name of the other end of the pair.
pub const NET_DEVICE: &str = "cilium_net";

/// What the host device is built from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostDeviceConfig {
    /// The node's router IP ("CiliumInternalIP"), inside `pod_cidr`.
    pub router_ip: Ipv4Addr,
    /// The node's pod CIDR.
    pub pod_cidr: Ipv4Net,
    /// Device MTU of both ends.
    pub mtu: u32,
}

/// The host device as it exists after [`Netconf::ensure_host_device`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostDevice {
    pub host: LinkInfo,
    pub net: LinkInfo,
}

impl Netconf {
    /// Creates (or completes) the host device and its routes. Idempotent: run at every agent
    /// start, it repairs whatever is missing and leaves the rest alone.
    ///
    /// Results in:
    /// ```text
    /// cilium_host: <router>/32, up, noarp     cilium_net: up, noarp
    /// <router> dev cilium_host scope link
    /// <pod_cidr> via <router> dev cilium_host src <router>
    /// net.ipv4.ip_forward = 1, rp_filter off on all/cilium_host/cilium_net
    /// ```
    pub async fn ensure_host_device(&self, config: &HostDeviceConfig) -> Result<HostDevice> {
        if !config.pod_cidr.contains(&config.router_ip) {
            return Err(self.invalid(
                "ensure host device",
                HOST_DEVICE,
                format!("router IP {} is outside pod CIDR {}", config.router_ip, config.pod_cidr),
            ));
        }
        if self.link(HOST_DEVICE).await?.is_none() {
            // A half-created pair cannot exist (veth ends are created and destroyed together),
            // but a stray `cilium_net` of another kind would block creation: remove it first.
            self.delete_link(NET_DEVICE).await?;
            let peer = rtnetlink::LinkUnspec::new_with_name(NET_DEVICE).mtu(config.mtu).build();
            let msg = LinkVeth::new(HOST_DEVICE, NET_DEVICE)
                .mtu(config.mtu)
                .set_info_data(netlink_packet_route::link::InfoData::Veth(netlink_packet_route::link::InfoVeth::Peer(
                    peer,
                )))
                .build();
            match self.handle.link().add(msg).execute().await {
                Ok(()) => {}
                Err(e) => {
                    let err = (self.nl_err("create veth", HOST_DEVICE))(e);
                    // Another agent start raced us: fine, the device is there.
                    if !err.is_exists() {
                        return Err(err);
                    }
                }
            }
        }
        let host = self.require_link("ensure host device", HOST_DEVICE).await?;
        let net = self.require_link("ensure host device", NET_DEVICE).await?;

        self.handle
            .address()
            .add(host.index, config.router_ip.into(), 32)
            .replace()
            .execute()
            .await
            .map_err(self.nl_err("add router address", HOST_DEVICE))?;
        // NOARP, as Cilium's cilium_host/cilium_net: routes `via <router IP> dev cilium_host`
        // (tunnel mode) have a local gateway, and the kernel would otherwise ask by ARP for every
        // destination behind it, which nobody answers; the BPF program on the egress takes the
        // packets whatever their MAC.
        for (index, name) in [(host.index, HOST_DEVICE), (net.index, NET_DEVICE)] {
            self.handle
                .link()
                .set(rtnetlink::LinkUnspec::new_with_index(index).arp(false).build())
                .execute()
                .await
                .map_err(self.nl_err("set noarp", name))?;
        }
        self.set_link_up(net.index, NET_DEVICE).await?;
        self.set_link_up(host.index, HOST_DEVICE).await?;

        // Forwarding between pods and the node's uplinks, and no reverse-path filtering: pod
        // traffic enters on lxc devices and replies may leave elsewhere (Cilium disables rp_filter
        // on its devices for the same reason). The effective rp_filter is max(all, device).
        self.set_sysctls(&[
            ("net/ipv4/ip_forward".into(), "1".into()),
            (ipv4_conf("all", "rp_filter"), "0".into()),
            (ipv4_conf(HOST_DEVICE, "rp_filter"), "0".into()),
            (ipv4_conf(NET_DEVICE, "rp_filter"), "0".into()),
            (ipv4_conf(HOST_DEVICE, "send_redirects"), "0".into()),
            (ipv4_conf(NET_DEVICE, "send_redirects"), "0".into()),
        ])
        .await?;

        let router_net = Ipv4Net::new(config.router_ip, 32).expect("/32 is valid");
        self.replace_route(&Route::new(router_net).oif(host.index).scope(RouteScope::Link)).await?;
        self.replace_route(&Route::via(config.pod_cidr, config.router_ip).oif(host.index).prefsrc(config.router_ip))
            .await?;

        let host = self.require_link("ensure host device", HOST_DEVICE).await?;
        let net = self.require_link("ensure host device", NET_DEVICE).await?;
        Ok(HostDevice { host, net })
    }

    /// Removes the host device (its routes go with it). `Ok(false)` if it was not there.
    pub async fn delete_host_device(&self) -> Result<bool> {
        self.delete_link(HOST_DEVICE).await
    }
}
