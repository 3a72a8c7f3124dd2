//! The overlay's kernel side: the flow-based VXLAN device `cilium_vxlan`, the BPF programs on
//! `cilium_host` (egress, encapsulation) and on `cilium_vxlan` (ingress, delivery), and the tunnel
//! map. Pods' own packets are encapsulated by the service datapath's `from_container`, which
//! shares the map; the datapath is opened before the overlay, so that the overlay can also deliver
//! decapsulated packets straight into pods (`overlay_deliver`). Brought up in tunnel and hybrid
//! mode and removed completely in native mode, so switching modes leaves no device, program or
//! map behind.
//!
//! The device goes through [`VxlanOps`], the BPF side through [`OverlayDatapath`], so the order
//! of the steps is tested with fakes of both.

use datapath::{OverlayDatapath, TunnelEntry, TunnelSyncStats};
use netconf::{HOST_DEVICE, VXLAN_DEVICE, VxlanOps};

use crate::error::AgentError;

pub struct OverlayManager<O> {
    datapath: O,
    port: u16,
    /// Device MTU of `cilium_vxlan`: the base MTU, as Cilium leaves it (routes carry the 1450).
    mtu: u32,
    /// Ifindex of the VXLAN device the programs were attached for.
    attached_to: Option<u32>,
}

impl<O: OverlayDatapath> OverlayManager<O> {
    pub fn new(datapath: O, port: u16, mtu: u32) -> Self {
        OverlayManager { datapath, port, mtu, attached_to: None }
    }

    /// The same overlay with another UDP port and device MTU, nothing attached yet.
    pub fn with_device(self, port: u16, mtu: u32) -> Self {
        OverlayManager::new(self.datapath, port, mtu)
    }

    /// Brings the overlay up (idempotent) and makes the tunnel map equal to `entries`.
    pub async fn ensure(
        &mut self,
        kernel: &impl VxlanOps,
        entries: &[TunnelEntry],
    ) -> Result<TunnelSyncStats, AgentError> {
        let vxlan = kernel.ensure_vxlan_device(VXLAN_DEVICE, self.port, self.mtu).await?;
        // Entries first: the programs find a complete map the moment they run.
        let stats = self.datapath.sync_tunnel(entries)?;
        // A device recreated (another port, deleted by hand) has a new ifindex: attach again.
        if self.attached_to != Some(vxlan.index) {
            let ingress = self.datapath.attach(HOST_DEVICE, VXLAN_DEVICE, vxlan.index)?;
            tracing::info!(
                device = VXLAN_DEVICE,
                ifindex = vxlan.index,
                port = self.port,
                "overlay attached: to_overlay on {HOST_DEVICE} egress, {ingress} on {VXLAN_DEVICE} ingress"
            );
            self.attached_to = Some(vxlan.index);
        }
        Ok(stats)
    }

    /// Removes everything of the overlay: programs, map pins, the VXLAN device. Idempotent.
    pub async fn remove(&mut self, kernel: &impl VxlanOps) -> Result<bool, AgentError> {
        self.attached_to = None;
        let had_pins = self.datapath.remove(HOST_DEVICE, VXLAN_DEVICE)?;
        let had_device = kernel.delete_link(VXLAN_DEVICE).await?;
        if had_pins || had_device {
            tracing::info!(device = VXLAN_DEVICE, "overlay removed");
        }
        Ok(had_pins || had_device)
    }
}

#[cfg(test)]
mod tests {
    use datapath::{FakeOverlay, FakeOverlayCall, FakeOverlayOp};
    use netconf::{FakeCall, FakeNetconf, FakeOp};

    use super::*;

    fn entries() -> Vec<TunnelEntry> {
        vec![
            TunnelEntry::local("172.20.0.0/24".parse().unwrap(), 256),
            TunnelEntry::remote("172.20.1.0/24".parse().unwrap(), "192.168.10.101".parse().unwrap(), 257),
        ]
    }

    fn setup() -> (FakeNetconf, FakeOverlay, OverlayManager<FakeOverlay>) {
        let kernel = FakeNetconf::new();
        let bpf = FakeOverlay::new();
        let manager = OverlayManager::new(bpf.clone(), 8472, 1500);
        (kernel, bpf, manager)
    }

    #[tokio::test]
    async fn ensure_fills_the_map_before_attaching_and_attaches_once() {
        let (kernel, bpf, mut manager) = setup();
        let stats = manager.ensure(&kernel, &entries()).await.unwrap();
        assert_eq!(stats, TunnelSyncStats { written: 2, deleted: 0 });
        let vxlan = kernel.state().links[VXLAN_DEVICE].clone();
        assert_eq!(kernel.state().vxlan_ports[VXLAN_DEVICE], 8472);
        assert_eq!(vxlan.mtu, Some(1500));
        let calls = bpf.state().calls.clone();
        assert!(matches!(calls[0], FakeOverlayCall::SyncTunnel(_)), "{calls:?}");
        let FakeOverlayCall::Attach(attachment) = &calls[1] else { panic!("{calls:?}") };
        assert_eq!(
            (attachment.host_dev.as_str(), attachment.tunnel_dev.as_str(), attachment.tunnel_ifindex),
            (HOST_DEVICE, VXLAN_DEVICE, vxlan.index)
        );

        // Nothing changed: the map is left as it is and nothing is attached again.
        assert_eq!(manager.ensure(&kernel, &entries()).await.unwrap(), TunnelSyncStats::default());
        assert_eq!(bpf.state().calls.iter().filter(|c| matches!(c, FakeOverlayCall::Attach(_))).count(), 1);
    }

    #[tokio::test]
    async fn a_recreated_device_gets_the_programs_again() {
        let (kernel, bpf, mut manager) = setup();
        manager.ensure(&kernel, &entries()).await.unwrap();
        kernel.remove_link(VXLAN_DEVICE);
        manager.ensure(&kernel, &entries()).await.unwrap();
        let new_index = kernel.state().links[VXLAN_DEVICE].index;
        assert_eq!(bpf.state().attached.as_ref().map(|a| a.tunnel_ifindex), Some(new_index));
        assert_eq!(bpf.state().calls.iter().filter(|c| matches!(c, FakeOverlayCall::Attach(_))).count(), 2);
    }

    #[tokio::test]
    async fn without_its_device_the_overlay_writes_nothing() {
        let (kernel, bpf, mut manager) = setup();
        kernel.fail_next(FakeOp::EnsureVxlanDevice);
        assert!(manager.ensure(&kernel, &entries()).await.is_err());
        assert!(bpf.state().calls.is_empty());
        // The next pass starts from scratch and succeeds.
        manager.ensure(&kernel, &entries()).await.unwrap();
        assert_eq!(bpf.state().tunnel.len(), 2);
        assert!(bpf.state().attached.is_some());
    }

    #[tokio::test]
    async fn a_failed_attach_is_tried_again_next_pass() {
        let (kernel, bpf, mut manager) = setup();
        bpf.fail_next(FakeOverlayOp::Attach, "no such device");
        assert!(manager.ensure(&kernel, &entries()).await.is_err());
        assert_eq!(bpf.state().tunnel.len(), 2, "the map is filled before the attach");
        assert!(bpf.state().attached.is_none());
        manager.ensure(&kernel, &entries()).await.unwrap();
        let index = kernel.state().links[VXLAN_DEVICE].index;
        assert_eq!(bpf.state().attached.as_ref().map(|a| a.tunnel_ifindex), Some(index));
    }

    #[tokio::test]
    async fn remove_takes_programs_and_device_and_starts_over_after() {
        let (kernel, bpf, mut manager) = setup();
        manager.ensure(&kernel, &entries()).await.unwrap();
        assert!(manager.remove(&kernel).await.unwrap());
        assert!(!kernel.state().links.contains_key(VXLAN_DEVICE));
        assert!(bpf.state().tunnel.is_empty() && bpf.state().attached.is_none());
        assert!(!manager.remove(&kernel).await.unwrap(), "nothing left to remove");
        assert_eq!(kernel.calls().last(), Some(&FakeCall::DeleteLink(VXLAN_DEVICE.into())));

        // Brought up again: a new device, the programs attached to it.
        manager.ensure(&kernel, &entries()).await.unwrap();
        assert!(bpf.state().attached.is_some());
    }
}
