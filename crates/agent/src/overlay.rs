//! The overlay's kernel side: the flow-based VXLAN device `cilium_vxlan`, the BPF programs on
//! `cilium_host` (egress, encapsulation) and on `cilium_vxlan` (ingress, delivery), and the tunnel
//! map. Pods' own packets are encapsulated by the service datapath's `from_container`, which
//! shares the map; the datapath is opened before the overlay, so that the overlay can also deliver
//! decapsulated packets straight into pods (`overlay_deliver`). Brought up in tunnel and hybrid mode and removed completely in native mode, so switching
//! modes leaves no device, program or map behind.

use std::path::PathBuf;

use datapath::{Overlay, TunnelEntry, TunnelSyncStats};
use netconf::{HOST_DEVICE, Netconf, VXLAN_DEVICE};

use crate::error::AgentError;

pub struct OverlayManager {
    bpf_dir: PathBuf,
    port: u16,
    /// Device MTU of `cilium_vxlan`: the base MTU, as Cilium leaves it (routes carry the 1450).
    mtu: u32,
    loaded: Option<Overlay>,
    /// Ifindex of the VXLAN device the programs were attached for.
    attached_to: Option<u32>,
}

impl OverlayManager {
    pub fn new(bpf_dir: PathBuf, port: u16, mtu: u32) -> Self {
        OverlayManager { bpf_dir, port, mtu, loaded: None, attached_to: None }
    }

    /// Brings the overlay up (idempotent) and makes the tunnel map equal to `entries`.
    pub async fn ensure(&mut self, kernel: &Netconf, entries: &[TunnelEntry]) -> Result<TunnelSyncStats, AgentError> {
        let vxlan = kernel.ensure_vxlan_device(VXLAN_DEVICE, self.port, self.mtu).await?;
        if self.loaded.is_none() {
            datapath::ensure_bpffs_for(&self.bpf_dir)?;
            self.loaded = Some(Overlay::open(&self.bpf_dir)?);
            tracing::info!(pins = %self.bpf_dir.display(), "overlay programs loaded");
        }
        let overlay = self.loaded.as_mut().expect("loaded above");
        // Entries first: the programs find a complete map the moment they run.
        let stats = overlay.sync(entries)?;
        if self.attached_to != Some(vxlan.index) {
            overlay.attach(HOST_DEVICE, VXLAN_DEVICE, vxlan.index)?;
            let ingress = if overlay.delivers_to_pods() {
                datapath::tunnel::PROG_OVERLAY_DELIVER
            } else {
                datapath::tunnel::PROG_FROM_OVERLAY
            };
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
    pub async fn remove(&mut self, kernel: &Netconf) -> Result<bool, AgentError> {
        self.loaded = None;
        self.attached_to = None;
        let had_pins = self.bpf_dir.join(datapath::tunnel_abi::MAP_TUNNEL).exists();
        if had_pins || self.bpf_dir.join("links").exists() {
            datapath::remove_overlay(&self.bpf_dir, HOST_DEVICE, VXLAN_DEVICE)?;
        }
        let had_device = kernel.delete_link(VXLAN_DEVICE).await?;
        if had_pins || had_device {
            tracing::info!(device = VXLAN_DEVICE, "overlay removed");
        }
        Ok(had_pins || had_device)
    }
}
