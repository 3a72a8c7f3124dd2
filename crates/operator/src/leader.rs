//! One active operator per cluster. The leader holds the Lease `kube-system/cilia-operator`, written
//! with a datastore lease: if the leader dies, the datastore deletes the Lease when its TTL lapses,
//! and a standby watching for that creates it in turn. No clocks are compared between processes.
//!
//! Two leaders can never both write. The leader steps down by its own clock when no renewal has
//! succeeded for two thirds of the TTL, before the datastore can give the lease away; and every
//! controller write goes through a store fenced on the Lease's create revision ([`store::Fence`]),
//! so a leader that was paused past its TTL, and resumes believing it still leads, has each write
//! refused in the same transaction, from the moment a standby took the Lease.

use std::{sync::Arc, time::Duration};

use api::{Object, ObjectRef, kinds, meta::now_rfc3339};
use serde_json::json;
use store::{Fence, LeaseKeeper, Store};

use crate::error::{OperatorError, Result};

pub const LEASE_NAMESPACE: &str = "kube-system";
pub const LEASE_NAME: &str = "cilia-operator";

/// Held leadership. Dropping it stops renewing; [`Leadership::release`] hands over at once.
pub struct Leadership {
    store: Arc<dyn Store>,
    keeper: LeaseKeeper,
    fence: Fence,
}

impl Leadership {
    /// Resolves when the datastore says the lease expired (e.g. after a long partition).
    pub async fn lost(&self) {
        self.keeper.lost().await;
    }

    /// The condition every write of this leader must carry ([`Store::fenced`]).
    pub fn fence(&self) -> Fence {
        self.fence.clone()
    }

    /// Gives up leadership now, so a standby takes over without waiting for the TTL.
    pub async fn release(self) {
        if let Err(e) = self.store.revoke_lease(self.keeper.lease()).await {
            tracing::warn!(error = %e, "revoking the operator lease failed; it lapses by itself");
        }
    }
}

/// Waits until this process holds the operator lease.
pub async fn acquire(store: Arc<dyn Store>, identity: &str, ttl: Duration) -> Result<Leadership> {
    let lease_ref = ObjectRef::new(&kinds::LEASE, Some(LEASE_NAMESPACE), LEASE_NAME);
    let mut announced_wait = false;
    loop {
        let lease = store.grant_lease(ttl).await.map_err(|source| OperatorError::Write {
            action: "granting",
            object: "the operator lease".into(),
            source: Box::new(source),
        })?;
        let mut obj = Object::new(&kinds::LEASE, Some(LEASE_NAMESPACE), LEASE_NAME);
        let now = now_rfc3339();
        obj.body.insert(
            "spec".into(),
            json!({
                "holderIdentity": identity,
                "leaseDurationSeconds": ttl.as_secs(),
                "acquireTime": now,
                "renewTime": now,
            }),
        );
        match store.create_with_lease(obj, Some(lease)).await {
            Ok(created) => {
                let revision = created
                    .metadata
                    .resource_version
                    .as_deref()
                    .and_then(|rv| rv.parse().ok())
                    .ok_or(OperatorError::LeaseWithoutRevision)?;
                let keeper = LeaseKeeper::start_with_deadline(store.clone(), lease, ttl / 3, Some(ttl * 2 / 3));
                return Ok(Leadership { store, keeper, fence: Fence::new(lease_ref, revision) });
            }
            Err(store::Error::AlreadyExists(_)) => {
                let _ = store.revoke_lease(lease).await;
                if !announced_wait {
                    let holder = store
                        .get(&lease_ref)
                        .await
                        .ok()
                        .flatten()
                        .and_then(|l| l.lookup_path("spec.holderIdentity"))
                        .and_then(|h| h.as_str().map(str::to_string))
                        .unwrap_or_default();
                    tracing::info!(%holder, "another operator leads; standing by");
                    announced_wait = true;
                }
                wait_for_release(store.as_ref(), &lease_ref, ttl).await;
            }
            Err(e) => {
                let _ = store.revoke_lease(lease).await;
                tracing::warn!(error = %e, "could not write the operator lease; retrying");
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
    }
}

/// Returns once the lease object is deleted, or after a while anyway (so a missed event only delays,
/// never blocks, the takeover).
async fn wait_for_release(store: &dyn Store, lease_ref: &ObjectRef, ttl: Duration) {
    use futures::StreamExt as _;
    let Ok(revision) = store.revision().await else {
        tokio::time::sleep(ttl / 4).await;
        return;
    };
    if store.get(lease_ref).await.ok().flatten().is_none() {
        return;
    }
    let Ok(mut events) = store.watch(&kinds::LEASE, Some(LEASE_NAMESPACE), revision).await else {
        tokio::time::sleep(ttl / 4).await;
        return;
    };
    let deleted = async {
        while let Some(Ok(ev)) = events.next().await {
            if ev.type_ == store::WatchEventType::Deleted && ev.object.name() == LEASE_NAME {
                return;
            }
        }
    };
    let _ = tokio::time::timeout(ttl, deleted).await;
}
