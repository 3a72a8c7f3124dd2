//! Publishes L2 ownership as Cilium does, one Lease `kube-system/cilium-l2announce-<ns>-<svc>`
//! per announced Service with holderIdentity = the owning node, so that `cilia get lease -n
//! kube-system` reads like the guide. Ownership is decided by the assignment, not by these
//! Leases: they are written only when it changes (by the new owner), never renewed, and a
//! datastore outage only delays them.

use std::{collections::BTreeMap, convert::Infallible, sync::Arc, time::Duration};

use api::kinds;
use l2::{ServiceKey, lease::LeaseOp};
use store::{
    Informer, Store,
    reconcile::{Backoff, Outcome, Reconcile, Runner, Wake},
};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

const RETRY: Duration = Duration::from_secs(1);

/// This node's name, the Leases, and who should hold which.
struct LeasePublisher {
    store: Arc<dyn Store>,
    node: String,
    leases: Informer,
    holders: watch::Receiver<Option<BTreeMap<ServiceKey, String>>>,
}

impl Reconcile for LeasePublisher {
    type Error = Infallible;

    async fn pass(&mut self) -> Result<Outcome, Infallible> {
        // Nothing to say before the assignment first ran.
        let Some(wanted) = self.holders.borrow().clone() else { return Ok(Outcome::Done) };
        for op in &l2::lease::plan(&self.node, &wanted, &self.leases.snapshot()) {
            if let Err(e) = execute(self.store.as_ref(), op).await {
                tracing::warn!(lease = %op.name(), error = %e, "writing the L2 announcement lease failed; retrying");
                return Ok(Outcome::Retry);
            }
        }
        Ok(Outcome::Done)
    }
}

/// Keeps the Leases this node should hold in line with `holders` (the whole cluster's
/// Service → owner map as this node computed it) until `shutdown`.
pub async fn publish(
    store: Arc<dyn Store>,
    node: String,
    holders: watch::Receiver<Option<BTreeMap<ServiceKey, String>>>,
    shutdown: CancellationToken,
) {
    let leases = Informer::start(store.clone(), &kinds::LEASE, Some(l2::lease::NAMESPACE));
    let runner = Runner::new("l2-leases")
        .backoff(Backoff::fixed(RETRY))
        .watch(&leases)
        .on_change(holders.clone(), |_, _| Wake::Debounced);
    runner.run_until_cancelled(LeasePublisher { store, node, leases, holders }, shutdown).await;
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
