//! Publishes L2 ownership as Cilium does, one Lease `kube-system/cilium-l2announce-<ns>-<svc>`
//! per announced Service with holderIdentity = the owning node, so that `cilia get lease -n
//! kube-system` reads like the guide. Ownership is decided by the assignment, not by these
//! Leases: they are written only when it changes (by the new owner), never renewed, and a
//! datastore outage only delays them.

use std::{collections::BTreeMap, sync::Arc, time::Duration};

use api::kinds;
use l2::{ServiceKey, lease::LeaseOp};
use store::{Informer, Store};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

const RETRY: Duration = Duration::from_secs(1);

/// Keeps the Leases this node should hold in line with `holders` (the whole cluster's
/// Service → owner map as this node computed it) until `shutdown`.
pub async fn publish(
    store: Arc<dyn Store>,
    node: String,
    mut holders: watch::Receiver<Option<BTreeMap<ServiceKey, String>>>,
    shutdown: CancellationToken,
) {
    let leases = Informer::start(store.clone(), &kinds::LEASE, Some(l2::lease::NAMESPACE));
    let mut sub = leases.subscribe();
    tokio::select! {
        () = leases.wait_synced() => {}
        () = shutdown.cancelled() => return,
    }
    let mut retry_at: Option<tokio::time::Instant> = None;
    loop {
        let wanted = holders.borrow_and_update().clone();
        if let Some(wanted) = wanted {
            let ops = l2::lease::plan(&node, &wanted, &leases.snapshot());
            let mut failed = false;
            for op in &ops {
                if let Err(e) = execute(store.as_ref(), op).await {
                    tracing::warn!(lease = %op.name(), error = %e, "writing the L2 announcement lease failed; retrying");
                    failed = true;
                    break;
                }
            }
            retry_at = failed.then(|| tokio::time::Instant::now() + RETRY);
        }
        tokio::select! {
            () = shutdown.cancelled() => return,
            changed = holders.changed() => if changed.is_err() { return },
            c = sub.recv() => if c.is_none() { return },
            () = async { match retry_at { Some(t) => tokio::time::sleep_until(t).await, None => std::future::pending().await } } => {}
        }
    }
}

async fn execute(store: &dyn Store, op: &LeaseOp) -> store::Result<()> {
    match op {
        LeaseOp::Create(obj) => match store.create(obj.clone()).await {
            Ok(_) | Err(store::Error::AlreadyExists(_)) => Ok(()),
            Err(e) => Err(e),
        },
        LeaseOp::Update(obj) => store.update(obj.clone()).await.map(drop),
        LeaseOp::Delete { name, resource_version } => {
            let r = api::ObjectRef::new(&kinds::LEASE, Some(l2::lease::NAMESPACE), name);
            store.delete(&r, resource_version.as_deref()).await.map(drop)
        }
    }
}
