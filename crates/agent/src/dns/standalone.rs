//! Cluster DNS as a process of its own on each node (`cilia dns --node N`), beside the agent.
//!
//! In the agent, DNS went down with it: a `kill -9` or a `cilia config set` restart left pods
//! without an answer for a second or more, and while the new agent's informers synced, names were
//! NXDOMAIN. Here the server keeps its own informers and sockets, so an agent restart does not
//! touch it. It answers on the router IP, which the agent puts on `cilium_host`: the process
//! waits for the node's pod CIDR and for that address, and binds once it is there.

use std::{net::Ipv4Addr, sync::Arc, time::Duration};

use api::{ObjectRef, kinds};
use ipnet::Ipv4Net;
use netconf::{HOST_DEVICE, Netconf};
use store::Store;
use tokio_util::sync::CancellationToken;

use super::Records;
use crate::node_view::NodeView;

const POLL: Duration = Duration::from_millis(100);

/// Serves the node's cluster DNS until `shutdown`.
pub async fn run(store: Arc<dyn Store>, node: &str, port: u16, shutdown: CancellationToken) -> Result<(), String> {
    let kernel = Netconf::current().map_err(|e| format!("netlink: {}", api::error::Chain(&e)))?;
    let Some(router_ip) = wait_for_router_ip(store.as_ref(), &kernel, node, &shutdown).await else {
        return Ok(());
    };
    tracing::info!(%router_ip, "the node's router IP is up; serving cluster DNS there");
    let (records, records_rx) = tokio::sync::watch::channel(Arc::new(Records::default()));
    let controller = tokio::spawn(super::controller::run(store, records, shutdown.clone()));
    super::serve(router_ip, port, records_rx, shutdown.clone()).await;
    shutdown.cancel();
    let _ = controller.await;
    Ok(())
}

/// The router IP once the agent has put it on `cilium_host`: the address of that device inside
/// the node's pod CIDR.
async fn wait_for_router_ip(
    store: &dyn Store,
    kernel: &Netconf,
    node: &str,
    shutdown: &CancellationToken,
) -> Option<Ipv4Addr> {
    let node_ref = ObjectRef::new(&kinds::NODE, None, node);
    let mut said = false;
    loop {
        let cidr = match store.get(&node_ref).await {
            Ok(Some(obj)) => NodeView::of(&obj).pod_cidr,
            Ok(None) => None,
            Err(e) => {
                tracing::debug!(error = %e, "reading the node");
                None
            }
        };
        if let Some(cidr) = cidr
            && let Some(ip) = router_ip_on_host_device(kernel, cidr).await
        {
            return Some(ip);
        }
        if !said {
            tracing::info!(node, "waiting for the node's pod CIDR and its router IP on {HOST_DEVICE}");
            said = true;
        }
        tokio::select! {
            () = tokio::time::sleep(POLL) => {}
            () = shutdown.cancelled() => return None,
        }
    }
}

async fn router_ip_on_host_device(kernel: &Netconf, cidr: Ipv4Net) -> Option<Ipv4Addr> {
    let link = kernel.link(HOST_DEVICE).await.ok()??;
    let addresses = kernel.addresses(link.index).await.ok()?;
    addresses.iter().map(|a| a.addr()).find(|ip| cidr.contains(ip) && *ip != cidr.network())
}
