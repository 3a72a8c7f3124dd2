//! [`OverlayDatapath`]: what the agent's overlay manager needs from the overlay's BPF side (the
//! tunnel map, the programs on the host and VXLAN devices, their pins). [`PinnedOverlay`]
//! implements it on a node's bpffs directory; [`crate::FakeOverlay`] in memory, for tests without
//! root. The VXLAN device itself is netlink's business (`netconf::VxlanOps`).

use std::path::PathBuf;

use crate::error::Result;
use crate::tunnel::{self, Overlay, TunnelEntry, TunnelSyncStats};
use crate::tunnel_abi;

/// The overlay's BPF side. Desired-state and idempotent like [`crate::LbDatapath`].
pub trait OverlayDatapath: Send {
    /// Makes the tunnel map hold exactly `entries`, loading the overlay programs first if they are
    /// not loaded (pinned maps of a previous run are reused, so forwarding never stops).
    fn sync_tunnel(&mut self, entries: &[TunnelEntry]) -> Result<TunnelSyncStats>;

    /// Attaches the encapsulation to `host_dev` (egress) and the delivery of decapsulated packets
    /// to `tunnel_dev` (ingress), encapsulating through the device `tunnel_ifindex`, loading the
    /// programs first if needed. Returns the name of the ingress program.
    fn attach(&mut self, host_dev: &str, tunnel_dev: &str, tunnel_ifindex: u32) -> Result<&'static str>;

    /// Unloads the programs, detaches them from both devices and removes the map pins, so no
    /// trace of the overlay stays. Idempotent; `Ok(true)` when a tunnel map was there.
    fn remove(&mut self, host_dev: &str, tunnel_dev: &str) -> Result<bool>;
}

/// The overlay of one node, pinned in its bpffs directory and loaded on first use.
pub struct PinnedOverlay {
    pin_dir: PathBuf,
    loaded: Option<Overlay>,
}

impl PinnedOverlay {
    /// Nothing is loaded until the first sync or attach.
    pub fn new(pin_dir: impl Into<PathBuf>) -> Self {
        PinnedOverlay { pin_dir: pin_dir.into(), loaded: None }
    }

    fn loaded(&mut self) -> Result<&mut Overlay> {
        if self.loaded.is_none() {
            crate::ensure_bpffs_for(&self.pin_dir)?;
            self.loaded = Some(Overlay::open(&self.pin_dir)?);
            tracing::info!(pins = %self.pin_dir.display(), "overlay programs loaded");
        }
        Ok(self.loaded.as_mut().expect("loaded above"))
    }
}

impl OverlayDatapath for PinnedOverlay {
    fn sync_tunnel(&mut self, entries: &[TunnelEntry]) -> Result<TunnelSyncStats> {
        self.loaded()?.sync(entries)
    }

    fn attach(&mut self, host_dev: &str, tunnel_dev: &str, tunnel_ifindex: u32) -> Result<&'static str> {
        let overlay = self.loaded()?;
        overlay.attach(host_dev, tunnel_dev, tunnel_ifindex)?;
        Ok(if overlay.delivers_to_pods() { tunnel::PROG_OVERLAY_DELIVER } else { tunnel::PROG_FROM_OVERLAY })
    }

    fn remove(&mut self, host_dev: &str, tunnel_dev: &str) -> Result<bool> {
        self.loaded = None;
        let had_map = self.pin_dir.join(tunnel_abi::MAP_TUNNEL).exists();
        if had_map || self.pin_dir.join("links").exists() {
            tunnel::remove_overlay(&self.pin_dir, host_dev, tunnel_dev)?;
        }
        Ok(had_map)
    }
}
