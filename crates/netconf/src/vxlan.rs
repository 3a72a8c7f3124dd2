//! The flow-based VXLAN device of tunnel mode, like Cilium's `cilium_vxlan` (`setupVxlanDevice`):
//! `external` (collect metadata), no remote, no learning, so no FDB is ever needed; the outer
//! destination and the VNI of every packet come from BPF (`bpf_skb_set_tunnel_key`).

use futures::TryStreamExt;
use netlink_packet_route::link::{InfoData, InfoVxlan, LinkAttribute, LinkInfo as NlLinkInfo, LinkMessage};
use rtnetlink::{LinkUnspec, LinkVxlan};

use crate::error::Result;
use crate::handle::Netconf;
use crate::link::LinkInfo;
use crate::sysctl::ipv4_conf;

/// The device name the guide looks for (`ip link show cilium_vxlan`).
pub const VXLAN_DEVICE: &str = "cilium_vxlan";
/// Cilium's VXLAN port (the Linux default, not IANA's 4789).
pub const VXLAN_PORT: u16 = 8472;

/// What a VXLAN device of this namespace looks like, as far as reuse is concerned.
#[derive(Debug, Clone, PartialEq, Eq)]
struct VxlanFacts {
    is_vxlan: bool,
    external: bool,
    port: Option<u16>,
}

fn facts(msg: &LinkMessage) -> VxlanFacts {
    let mut f = VxlanFacts { is_vxlan: false, external: false, port: None };
    for attr in &msg.attributes {
        if let LinkAttribute::LinkInfo(infos) = attr {
            for info in infos {
                if let NlLinkInfo::Data(InfoData::Vxlan(data)) = info {
                    f.is_vxlan = true;
                    for d in data {
                        match d {
                            InfoVxlan::CollectMetadata(v) => f.external = *v,
                            InfoVxlan::Port(p) => f.port = Some(*p),
                            _ => {}
                        }
                    }
                }
            }
        }
    }
    f
}

impl Netconf {
    /// Creates the flow-based VXLAN device `name` on UDP `port` with device MTU `mtu`, up, with
    /// reverse-path filtering off. A device of that name of another kind or port is replaced (as
    /// Cilium does when the port changes); an MTU change is made in place. Idempotent.
    pub async fn ensure_vxlan_device(&self, name: &str, port: u16, mtu: u32) -> Result<LinkInfo> {
        let existing = self.link_message(name).await?;
        let reusable = existing.as_ref().map(facts).is_some_and(|f| f.is_vxlan && f.external && f.port == Some(port));
        if existing.is_some() && !reusable {
            tracing::info!(device = name, "replacing a device that is not a flow-based VXLAN device on port {port}");
            self.delete_link(name).await?;
        }
        if !reusable {
            let msg = LinkVxlan::new(name, 0).port(port).collect_metadata(true).learning(false).mtu(mtu).build();
            if let Err(e) = self.handle.link().add(msg).execute().await {
                let err = (self.nl_err("create vxlan device", name))(e);
                if !err.is_exists() {
                    return Err(err);
                }
            }
        }
        let link = self.require_link("ensure vxlan device", name).await?;
        if link.mtu != Some(mtu) {
            self.handle
                .link()
                .set(LinkUnspec::new_with_index(link.index).mtu(mtu).build())
                .execute()
                .await
                .map_err(self.nl_err("set mtu", name))?;
        }
        // Decapsulated packets carry other nodes' pod addresses as source.
        self.set_sysctls(&[(ipv4_conf(name, "rp_filter"), "0".into())]).await?;
        // The VXLAN socket's GRO hook already merges each inner flow on the underlay device; a
        // second GRO pass on the tunnel device (its gro_cells queue) only costs per packet
        // (request rate +5-10 % with it off, docs/routing-modes.md).
        self.set_gro(name, false).await?;
        self.set_link_up(link.index, name).await?;
        self.require_link("ensure vxlan device", name).await
    }

    async fn link_message(&self, name: &str) -> Result<Option<LinkMessage>> {
        let mut request = std::pin::pin!(self.handle.link().get().match_name(name).execute());
        match request.try_next().await {
            Ok(msg) => Ok(msg),
            Err(e) => {
                let err = (self.nl_err("get link", name))(e);
                if err.is_not_found() { Ok(None) } else { Err(err) }
            }
        }
    }
}
