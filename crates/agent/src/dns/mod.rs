//! Cluster DNS, to the Kubernetes DNS-Based Service Discovery specification: every agent answers
//! on its node's router IP (the `cilia_host` address, the pods' gateway, port 53, UDP and TCP).
//! Pods reach that address through their default route without the service datapath, so name
//! resolution keeps working whatever the datapath does, and every node answers for itself.
//!
//! - [`records`]: what the zone holds, built from Services, EndpointSlices, Pods and Namespaces
//!   by the [`controller`];
//! - [`zone`]: the authoritative answers for `cluster.local.` and the reverse names of cluster
//!   addresses (the table of records is there), with SOA, NS and negative-caching TTLs;
//! - [`forwarder`] and [`cache`]: every other name goes to the node's upstream resolvers (its
//!   `resolv.conf`), cached for the answers' TTLs; SERVFAIL when no upstream answers, never a
//!   made-up NXDOMAIN;
//! - [`server`]: the message handling and truncation (TC over UDP, whole over TCP); the sockets
//!   are here;
//! - [`standalone`]: DNS as a process of its own beside the agent, so that restarting the agent
//!   never interrupts name resolution.
//!
//! Messages are parsed and built with hickory-proto.

pub mod cache;
pub mod controller;
pub mod forwarder;
pub mod records;
pub mod server;
pub mod standalone;
pub mod zone;

#[cfg(test)]
mod tests;

use std::{
    net::{IpAddr, Ipv4Addr, SocketAddr},
    sync::Arc,
    time::Duration,
};

use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
    sync::{Semaphore, watch},
};
use tokio_util::sync::CancellationToken;

pub use forwarder::{Forwarder, Upstreams};
pub use records::Records;
pub use server::{Handler, Prepared, Transport};

pub const CLUSTER_DOMAIN: &str = "cluster.local";
pub const DNS_PORT: u16 = 53;
/// CoreDNS's default TTL for Kubernetes records: short, services come and go. Also the SOA's
/// TTL and minimum, so NXDOMAIN and NODATA are cached for as long.
pub const TTL: u32 = 5;
/// Open TCP connections at once; more wait for a slot.
const MAX_TCP: usize = 64;
const TCP_IDLE: Duration = Duration::from_secs(10);
const RETRY_BIND: Duration = Duration::from_secs(2);
/// Threads receiving on the UDP socket: answers from the zone and the cache are made on the
/// receiving thread, with blocking system calls and no event loop in between (a cache miss goes
/// to the async runtime), so this many run in parallel.
const UDP_RECEIVERS: usize = 2;
/// How often a receiving thread looks whether the server is shutting down.
const UDP_POLL: Duration = Duration::from_millis(200);

/// Serves DNS on `address:port` (UDP and TCP) until `shutdown`, answering from the latest
/// `records` and forwarding the rest to the node's resolvers. Binding is retried while the
/// address is not there yet.
pub async fn serve(address: Ipv4Addr, port: u16, records: watch::Receiver<Arc<Records>>, shutdown: CancellationToken) {
    let forwarder = Arc::new(Forwarder::new(Upstreams::Node, vec![IpAddr::V4(address)]));
    serve_with(address, port, records, forwarder, shutdown).await;
}

/// [`serve`] with a given forwarder.
pub async fn serve_with(
    address: Ipv4Addr,
    port: u16,
    records: watch::Receiver<Arc<Records>>,
    forwarder: Arc<Forwarder>,
    shutdown: CancellationToken,
) {
    let at = SocketAddr::from((address, port));
    // Not a single answer before the names are known: a query now goes unanswered (the client
    // asks again) rather than getting a false NXDOMAIN.
    let mut first = records.clone();
    tokio::select! {
        built = first.wait_for(|r| r.built) => if built.is_err() { return },
        () = shutdown.cancelled() => return,
    }
    let (udp, tcp) = loop {
        match (std::net::UdpSocket::bind(at), TcpListener::bind(at).await) {
            (Ok(u), Ok(t)) => break (u, t),
            (Err(e), _) | (_, Err(e)) => {
                tracing::warn!(%at, error = %e, "cannot listen for DNS; retrying in {RETRY_BIND:?}");
                tokio::select! {
                    () = tokio::time::sleep(RETRY_BIND) => {}
                    () = shutdown.cancelled() => return,
                }
            }
        }
    };
    // The upstreams are read once now, so the log says where names outside the cluster go.
    let upstreams = forwarder.servers();
    tracing::info!(%at, ?upstreams, "cluster DNS listening (UDP and TCP) for {CLUSTER_DOMAIN}, forwarding the rest");
    let handler = Arc::new(Handler { records, forwarder, address: IpAddr::V4(address) });
    let stop = shutdown.child_token();
    let mut threads = Vec::new();
    if let Err(e) = udp.set_read_timeout(Some(UDP_POLL)) {
        tracing::warn!(error = %e, "DNS over UDP: cannot set a receive timeout");
    }
    for i in 0..UDP_RECEIVERS {
        let (sock, handler, stop, rt) =
            (udp.try_clone(), handler.clone(), stop.clone(), tokio::runtime::Handle::current());
        match sock {
            Ok(sock) => {
                let spawned = std::thread::Builder::new()
                    .name(format!("dns-udp-{i}"))
                    .spawn(move || serve_udp(sock, handler, stop, rt));
                match spawned {
                    Ok(t) => threads.push(t),
                    Err(e) => tracing::warn!(error = %e, "DNS over UDP: cannot start a receiving thread"),
                }
            }
            Err(e) => tracing::warn!(error = %e, "DNS over UDP: cannot share the socket"),
        }
    }
    serve_tcp(tcp, handler, stop.clone()).await;
    stop.cancel();
    // The threads see it within UDP_POLL.
    let _ = tokio::task::spawn_blocking(move || {
        for t in threads {
            let _ = t.join();
        }
    })
    .await;
}

/// One receiving thread: blocking receive, answer, send; until `stop`.
fn serve_udp(sock: std::net::UdpSocket, handler: Arc<Handler>, stop: CancellationToken, rt: tokio::runtime::Handle) {
    let sock = Arc::new(sock);
    let mut buf = vec![0u8; 4096];
    let mut cache = server::PacketCache::new();
    while !stop.is_cancelled() {
        let (n, peer) = match sock.recv_from(&mut buf) {
            Ok(x) => x,
            Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => continue,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => {
                tracing::warn!(error = %e, "DNS over UDP: receive failed");
                std::thread::sleep(Duration::from_millis(100));
                continue;
            }
        };
        match cache.prepare(&handler, &buf[..n]) {
            Prepared::Done(Some(answer)) => {
                if let Err(e) = sock.send_to(&answer, peer) {
                    tracing::debug!(%peer, error = %e, "DNS over UDP: send failed");
                }
            }
            Prepared::Done(None) => {}
            // A cache miss waits for an upstream on a task of its own.
            Prepared::Upstream(pending) => {
                let (sock, handler) = (sock.clone(), handler.clone());
                rt.spawn(async move {
                    if let Some(answer) = handler.complete(pending).await
                        && let Err(e) = sock.send_to(&answer, peer)
                    {
                        tracing::debug!(%peer, error = %e, "DNS over UDP: send failed");
                    }
                });
            }
        }
    }
}

async fn serve_tcp(listener: TcpListener, handler: Arc<Handler>, shutdown: CancellationToken) {
    let slots = Arc::new(Semaphore::new(MAX_TCP));
    loop {
        let permit = tokio::select! {
            p = slots.clone().acquire_owned() => match p { Ok(p) => p, Err(_) => return },
            () = shutdown.cancelled() => return,
        };
        let accepted = tokio::select! {
            a = listener.accept() => a,
            () = shutdown.cancelled() => return,
        };
        let (conn, peer) = match accepted {
            Ok(x) => x,
            Err(e) => {
                tracing::warn!(error = %e, "DNS over TCP: accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let handler = handler.clone();
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            let _permit = permit;
            tokio::select! {
                r = tcp_connection(conn, &handler) => if let Err(e) = r {
                    tracing::debug!(%peer, error = %e, "DNS over TCP connection ended");
                },
                () = shutdown.cancelled() => {}
            }
        });
    }
}

/// RFC 1035 §4.2.2: each message is preceded by its length in two bytes.
async fn tcp_connection(mut conn: TcpStream, handler: &Handler) -> std::io::Result<()> {
    loop {
        let mut len = [0u8; 2];
        match tokio::time::timeout(TCP_IDLE, conn.read_exact(&mut len)).await {
            Err(_) => return Ok(()),
            Ok(Err(e)) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(()),
            Ok(r) => r?,
        };
        let mut msg = vec![0u8; usize::from(u16::from_be_bytes(len))];
        tokio::time::timeout(TCP_IDLE, conn.read_exact(&mut msg))
            .await
            .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "message incomplete"))??;
        let Some(answer) = handler.handle(&msg, Transport::Tcp).await else { continue };
        let Ok(n) = u16::try_from(answer.len()) else { continue };
        let mut out = Vec::with_capacity(answer.len() + 2);
        out.extend_from_slice(&n.to_be_bytes());
        out.extend_from_slice(&answer);
        conn.write_all(&out).await?;
    }
}
