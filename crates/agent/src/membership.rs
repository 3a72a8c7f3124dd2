//! Node membership: the Lease `kube-system/cilia-node-<node>`, written with a datastore lease the
//! agent keeps alive. It exists exactly while the agent runs (plus one TTL after a crash), so
//! whoever needs the set of live nodes (L2 announcements) watches these Leases instead of
//! comparing clocks.

use std::{sync::Arc, time::Duration};

use api::{Object, ObjectRef, kinds, meta::now_rfc3339};
use serde_json::json;
use store::{LeaseKeeper, Store};
use tokio_util::sync::CancellationToken;

pub const NAMESPACE: &str = "kube-system";

/// `cilia-node-<node>`.
pub fn lease_name(node: &str) -> String {
    format!("cilia-node-{node}")
}

/// Joined: the Lease object exists and its datastore lease is renewed until this is dropped.
pub struct Membership {
    store: Arc<dyn Store>,
    keeper: LeaseKeeper,
}

impl Membership {
    /// Grants a lease and writes the Lease object with it. A Lease left by a previous run of the
    /// agent (still waiting for its old TTL) is taken over.
    pub async fn join(store: Arc<dyn Store>, node: &str, ttl: Duration) -> store::Result<Membership> {
        let lease = store.grant_lease(ttl).await?;
        let mut obj = Object::new(&kinds::LEASE, Some(NAMESPACE), &lease_name(node));
        let now = now_rfc3339();
        obj.body.insert(
            "spec".into(),
            json!({
                "holderIdentity": node,
                "leaseDurationSeconds": ttl.as_secs().max(1),
                "acquireTime": now,
                "renewTime": now,
            }),
        );
        let written = match store.create_with_lease(obj.clone(), Some(lease)).await {
            Err(store::Error::AlreadyExists(_)) => store.update_with_lease(obj, Some(lease)).await,
            other => other,
        };
        if let Err(e) = written {
            let _ = store.revoke_lease(lease).await;
            return Err(e);
        }
        let keeper = LeaseKeeper::start(store.clone(), lease, ttl / 3);
        Ok(Membership { store, keeper })
    }

    /// Resolves when the datastore let the lease expire (an outage longer than the TTL).
    pub async fn lost(&self) {
        self.keeper.lost().await;
    }

    /// Leaves now: the Lease object is deleted with the lease.
    pub async fn leave(self) {
        if let Err(e) = self.store.revoke_lease(self.keeper.lease()).await {
            tracing::warn!(error = %e, "revoking the membership lease failed; it lapses by itself");
        }
    }
}

/// Stays a member until `shutdown`: joins, re-joins after a lost lease, retries while the
/// datastore is unreachable, and leaves on shutdown.
pub async fn maintain(store: Arc<dyn Store>, node: String, ttl: Duration, shutdown: CancellationToken) {
    let lease = ObjectRef::new(&kinds::LEASE, Some(NAMESPACE), &lease_name(&node));
    let mut backoff = Duration::from_millis(500);
    loop {
        let joined = tokio::select! {
            j = Membership::join(store.clone(), &node, ttl) => j,
            () = shutdown.cancelled() => return,
        };
        let membership = match joined {
            Ok(m) => {
                tracing::info!(lease = %lease, "joined the cluster");
                backoff = Duration::from_millis(500);
                m
            }
            Err(e) => {
                tracing::warn!(lease = %lease, error = %e, "cannot write the membership lease; retrying in {backoff:?}");
                tokio::select! {
                    () = tokio::time::sleep(backoff) => {}
                    () = shutdown.cancelled() => return,
                }
                backoff = (backoff * 2).min(Duration::from_secs(5));
                continue;
            }
        };
        tokio::select! {
            () = membership.lost() => tracing::warn!(lease = %lease, "membership lease expired; joining again"),
            () = shutdown.cancelled() => {
                // Bounded: a datastore that is down must not hold up the agent's exit.
                let _ = tokio::time::timeout(Duration::from_secs(2), membership.leave()).await;
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use store::MemoryStore;

    use super::*;

    #[tokio::test]
    async fn join_takes_over_a_stale_lease_and_leave_removes_it() {
        let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
        let r = ObjectRef::new(&kinds::LEASE, Some(NAMESPACE), "cilia-node-k8s-w1");
        let first = Membership::join(store.clone(), "k8s-w1", Duration::from_secs(30)).await.unwrap();
        // A restarted agent joins while the old lease still holds the object.
        let second = Membership::join(store.clone(), "k8s-w1", Duration::from_secs(30)).await.unwrap();
        drop(first);
        let obj = store.get(&r).await.unwrap().unwrap();
        assert_eq!(obj.lookup_path("spec.holderIdentity").unwrap(), "k8s-w1");
        second.leave().await;
        assert!(store.get(&r).await.unwrap().is_none());
    }
}
