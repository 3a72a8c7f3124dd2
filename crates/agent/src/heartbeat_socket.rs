//! The heartbeat's transport: one UDP socket per agent, on the node's address space, sending the
//! node's heartbeat to every other node and receiving theirs. Datagrams are authenticated with
//! the cluster's heartbeat key ([`l2::heartbeat`]); anything that does not verify is counted and
//! dropped, so a pod cannot keep a dead node alive nor push a live one out.

use std::{
    io,
    net::{Ipv4Addr, SocketAddr, SocketAddrV4},
    sync::atomic::{AtomicU64, Ordering},
};

use l2::Heartbeat;
use tokio::net::UdpSocket;

/// UDP port of the heartbeats (`l2-announcements-heartbeat-port`); see `docs/ports.md`.
pub const HEARTBEAT_PORT: u16 = 4250;

/// The largest datagram a heartbeat can be: the format bounds interfaces and addresses.
const MAX_DATAGRAM: usize = l2::heartbeat::MAX_DATAGRAM;

pub struct HeartbeatSocket {
    socket: UdpSocket,
    key: Vec<u8>,
    /// Datagrams that did not decode or verify.
    rejected: AtomicU64,
}

impl HeartbeatSocket {
    /// Binds `0.0.0.0:port` in the calling thread's network namespace (the node's).
    pub async fn bind(port: u16, key: Vec<u8>) -> io::Result<Self> {
        let socket = UdpSocket::bind(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, port)).await?;
        Ok(HeartbeatSocket { socket, key, rejected: AtomicU64::new(0) })
    }

    /// Sends `beat` to every peer; returns how many sends failed (a peer without a route, a full
    /// socket buffer). A failed send is a missed heartbeat, nothing more.
    pub async fn send(&self, beat: &Heartbeat, peers: &[SocketAddr]) -> usize {
        let datagram = match beat.encode(&self.key) {
            Ok(d) => d,
            Err(e) => {
                tracing::error!(error = %e, "cannot encode this node's heartbeat");
                return peers.len();
            }
        };
        let mut failed = 0;
        for peer in peers {
            if let Err(e) = self.socket.send_to(&datagram, peer).await {
                tracing::debug!(%peer, error = %e, "heartbeat not sent");
                failed += 1;
            }
        }
        failed
    }

    /// The next heartbeat that verifies, with its sender's address.
    pub async fn recv(&self) -> io::Result<(Heartbeat, SocketAddr)> {
        let mut buf = vec![0u8; MAX_DATAGRAM];
        loop {
            let (n, from) = self.socket.recv_from(&mut buf).await?;
            match Heartbeat::decode(&buf[..n], &self.key) {
                Ok(beat) => return Ok((beat, from)),
                Err(e) => {
                    let total = self.rejected.fetch_add(1, Ordering::Relaxed) + 1;
                    // The first and then every 1000th, so a flood cannot fill the log.
                    if total == 1 || total.is_multiple_of(1000) {
                        tracing::warn!(%from, error = %e, rejected = total, "heartbeat datagram rejected");
                    }
                }
            }
        }
    }

    pub fn rejected(&self) -> u64 {
        self.rejected.load(Ordering::Relaxed)
    }
}
