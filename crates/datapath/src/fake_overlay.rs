//! An in-memory [`OverlayDatapath`] for unit tests of the agent's overlay handling: no root, no
//! BPF. The tunnel map is changed with the same planning code as the real one
//! ([`crate::tunnel::tunnel_changes`]), so its stats are what the kernel map would give.
//!
//! [`FakeOverlay`] is a handle: clones share one state, so a test keeps a clone to look into
//! what the code under test did with the other.

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use crate::error::{Error, Result};
use crate::overlay_datapath::OverlayDatapath;
use crate::tunnel::{self, TunnelEntry, TunnelSyncStats};

/// Where the overlay's programs are attached.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OverlayAttachment {
    pub host_dev: String,
    pub tunnel_dev: String,
    pub tunnel_ifindex: u32,
}

/// The operations of [`OverlayDatapath`], to make one fail.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FakeOverlayOp {
    SyncTunnel,
    Attach,
    Remove,
}

/// A call made on the fake, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FakeOverlayCall {
    SyncTunnel(Vec<TunnelEntry>),
    Attach(OverlayAttachment),
    Remove,
}

#[derive(Debug, Default)]
pub struct FakeOverlayState {
    /// The tunnel map, sorted by prefix.
    pub tunnel: Vec<TunnelEntry>,
    /// Whether the tunnel map is pinned (from the first sync until a remove).
    pub pinned: bool,
    /// How often the programs were loaded (once per sync or attach after a remove).
    pub loads: usize,
    loaded: bool,
    pub attached: Option<OverlayAttachment>,
    pub calls: Vec<FakeOverlayCall>,
    /// Planned failures: the next call of the operation fails with the message.
    pub failures: Vec<(FakeOverlayOp, String)>,
}

impl FakeOverlayState {
    fn check_failure(&mut self, op: FakeOverlayOp) -> Result<()> {
        match self.failures.iter().position(|(o, _)| *o == op) {
            Some(i) => {
                let (_, reason) = self.failures.remove(i);
                Err(Error::Interface { ifname: "fake overlay".into(), reason })
            }
            None => Ok(()),
        }
    }

    fn load(&mut self) {
        if !self.loaded {
            self.loaded = true;
            self.loads += 1;
        }
    }
}

/// A cloneable handle on one in-memory overlay.
#[derive(Debug, Clone, Default)]
pub struct FakeOverlay {
    state: Arc<Mutex<FakeOverlayState>>,
}

impl FakeOverlay {
    pub fn new() -> Self {
        Self::default()
    }

    /// The overlay's state, to inspect or change.
    pub fn state(&self) -> MutexGuard<'_, FakeOverlayState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The next call of `op` fails with `reason`.
    pub fn fail_next(&self, op: FakeOverlayOp, reason: &str) {
        self.state().failures.push((op, reason.into()));
    }
}

impl OverlayDatapath for FakeOverlay {
    fn sync_tunnel(&mut self, entries: &[TunnelEntry]) -> Result<TunnelSyncStats> {
        let mut state = self.state();
        state.calls.push(FakeOverlayCall::SyncTunnel(entries.to_vec()));
        state.check_failure(FakeOverlayOp::SyncTunnel)?;
        state.load();
        let (write, delete) = tunnel::tunnel_changes(&state.tunnel, entries);
        state.tunnel.retain(|e| !delete.contains(&e.prefix) && !write.iter().any(|w| w.prefix == e.prefix));
        state.tunnel.extend(&write);
        state.tunnel.sort();
        state.pinned = true;
        Ok(TunnelSyncStats { written: write.len(), deleted: delete.len() })
    }

    fn attach(&mut self, host_dev: &str, tunnel_dev: &str, tunnel_ifindex: u32) -> Result<&'static str> {
        let mut state = self.state();
        let attachment = OverlayAttachment { host_dev: host_dev.into(), tunnel_dev: tunnel_dev.into(), tunnel_ifindex };
        state.calls.push(FakeOverlayCall::Attach(attachment.clone()));
        state.check_failure(FakeOverlayOp::Attach)?;
        state.load();
        state.pinned = true;
        state.attached = Some(attachment);
        Ok(tunnel::PROG_FROM_OVERLAY)
    }

    fn remove(&mut self, _host_dev: &str, _tunnel_dev: &str) -> Result<bool> {
        let mut state = self.state();
        state.calls.push(FakeOverlayCall::Remove);
        state.loaded = false;
        state.check_failure(FakeOverlayOp::Remove)?;
        let had_map = state.pinned;
        state.tunnel.clear();
        state.attached = None;
        state.pinned = false;
        Ok(had_map)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn remote(prefix: &str, endpoint: &str) -> TunnelEntry {
        TunnelEntry::remote(prefix.parse().unwrap(), endpoint.parse().unwrap(), 257)
    }

    #[test]
    fn fake_syncs_like_the_map_and_clones_share_state() {
        let fake = FakeOverlay::new();
        let mut dp = fake.clone();
        let a = remote("172.20.1.0/24", "192.168.10.101");
        let b = remote("172.20.2.0/24", "192.168.20.100");
        assert_eq!(dp.sync_tunnel(&[b, a]).unwrap(), TunnelSyncStats { written: 2, deleted: 0 });
        assert_eq!(dp.sync_tunnel(&[b, a]).unwrap(), TunnelSyncStats::default());
        let moved = remote("172.20.1.0/24", "192.168.10.111");
        assert_eq!(dp.sync_tunnel(&[moved]).unwrap(), TunnelSyncStats { written: 1, deleted: 1 });
        assert_eq!(fake.state().tunnel, [moved]);
        dp.attach("cilium_host", "cilium_vxlan", 7).unwrap();
        assert_eq!(fake.state().attached.as_ref().map(|a| a.tunnel_ifindex), Some(7));
        assert_eq!(fake.state().loads, 1);

        assert!(dp.remove("cilium_host", "cilium_vxlan").unwrap());
        assert!(!dp.remove("cilium_host", "cilium_vxlan").unwrap());
        assert!(fake.state().tunnel.is_empty() && fake.state().attached.is_none());

        fake.fail_next(FakeOverlayOp::SyncTunnel, "map full");
        assert!(dp.sync_tunnel(&[a]).is_err());
        assert!(fake.state().tunnel.is_empty(), "a failed sync writes nothing");
        dp.sync_tunnel(&[a]).unwrap();
        assert_eq!(fake.state().loads, 2, "loaded again after the remove");
    }
}
