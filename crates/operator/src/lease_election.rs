//! Leader election on Kubernetes: the Lease `kube-system/cilia-operator` in `coordination.k8s.io`,
//! as client-go's leader election keeps it (Kubernetes has no TTL leases to bind an object to).
//!
//! - A candidate takes the Lease when there is none, when it is released (no holder), or when
//!   nobody has renewed it for `leaseDurationSeconds` as this candidate's own clock measures it
//!   (it notes when it last saw the Lease change; no clocks are compared between processes).
//! - The leader renews it every third of the duration, each write conditional on the version it
//!   read, and steps down by its own clock when no renewal has succeeded for two thirds of the
//!   duration: before any standby can count the Lease as lapsed.
//! - Releasing clears the holder, so a standby takes over at once.
//!
//! Unlike the etcd mode, writes are not fenced: the Kubernetes API has no transaction across two
//! objects. Kubernetes' own controllers rely on the same renew deadline.

use std::sync::Arc;
use std::time::Duration;

use api::{Object, ObjectRef, kinds, meta::now_micro_rfc3339};
use serde_json::{Value, json};
use store::Store;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::error::Result;
use crate::leader::{LEASE_NAME, LEASE_NAMESPACE};

/// Held leadership: renewed in the background until dropped, released, or lost.
pub struct LeaseLeadership {
    store: Arc<dyn Store>,
    identity: String,
    lost: CancellationToken,
    stop: CancellationToken,
}

impl LeaseLeadership {
    /// Resolves when a renewal deadline passed or another holder took the Lease.
    pub async fn lost(&self) {
        self.lost.cancelled().await;
    }

    /// Stops renewing and clears the holder, so a standby takes over without waiting.
    pub async fn release(self) {
        self.stop.cancel();
        let lease_ref = lease_ref();
        let Ok(Some(mut lease)) = self.store.get(&lease_ref).await else { return };
        if spec_str(&lease, "holderIdentity") != Some(self.identity.as_str()) {
            return;
        }
        if let Some(spec) = lease.body.get_mut("spec").and_then(Value::as_object_mut) {
            spec.insert("holderIdentity".into(), Value::String(String::new()));
        }
        if let Err(e) = self.store.update(lease).await {
            tracing::warn!(error = %e, "releasing the operator Lease failed; it lapses by itself");
        }
    }
}

impl Drop for LeaseLeadership {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

fn lease_ref() -> ObjectRef {
    ObjectRef::new(&kinds::LEASE, Some(LEASE_NAMESPACE), LEASE_NAME)
}

fn spec_str<'a>(lease: &'a Object, field: &str) -> Option<&'a str> {
    lease.body.get("spec")?.get(field)?.as_str()
}

fn lease_spec(identity: &str, duration: Duration, acquired: &str, transitions: i64) -> Value {
    json!({
        "holderIdentity": identity,
        "leaseDurationSeconds": duration.as_secs().max(1),
        "acquireTime": acquired,
        "renewTime": now_micro_rfc3339(),
        "leaseTransitions": transitions,
    })
}

/// What a candidate saw of the Lease last: its version and when (by the candidate's clock) that
/// version was first seen.
struct Observed {
    version: Option<String>,
    since: Instant,
}

/// Waits until this process holds the Lease, then renews it in the background.
pub async fn acquire(store: Arc<dyn Store>, identity: &str, duration: Duration) -> Result<LeaseLeadership> {
    let retry = duration / 4;
    let mut observed = Observed { version: None, since: Instant::now() };
    let mut announced = false;
    loop {
        match try_acquire(store.as_ref(), identity, duration, &mut observed).await {
            Ok(true) => break,
            Ok(false) => {
                if !announced {
                    tracing::info!("another operator holds the Lease; standing by");
                    announced = true;
                }
            }
            Err(e) => tracing::warn!(error = %e, "could not read or write the operator Lease; retrying"),
        }
        tokio::time::sleep(retry).await;
    }
    let leadership = LeaseLeadership {
        store: store.clone(),
        identity: identity.to_string(),
        lost: CancellationToken::new(),
        stop: CancellationToken::new(),
    };
    tokio::spawn(renew(store, identity.to_string(), duration, leadership.lost.clone(), leadership.stop.clone()));
    Ok(leadership)
}

/// One attempt: true when this process now holds the Lease.
async fn try_acquire(
    store: &dyn Store,
    identity: &str,
    duration: Duration,
    observed: &mut Observed,
) -> store::Result<bool> {
    let now = now_micro_rfc3339();
    let Some(mut lease) = store.get(&lease_ref()).await? else {
        let mut lease = Object::new(&kinds::LEASE, Some(LEASE_NAMESPACE), LEASE_NAME);
        lease.body.insert("spec".into(), lease_spec(identity, duration, &now, 0));
        return match store.create(lease).await {
            Ok(_) => Ok(true),
            Err(store::Error::AlreadyExists(_)) => Ok(false),
            Err(e) => Err(e),
        };
    };
    if lease.metadata.resource_version != observed.version {
        observed.version = lease.metadata.resource_version.clone();
        observed.since = Instant::now();
    }
    let holder = spec_str(&lease, "holderIdentity").unwrap_or_default();
    let held_for = lease.body.get("spec").and_then(|s| s.get("leaseDurationSeconds")).and_then(Value::as_u64);
    let lapsed = observed.since.elapsed() >= held_for.map_or(duration, Duration::from_secs);
    if !(holder.is_empty() || holder == identity || lapsed) {
        return Ok(false);
    }
    let transitions = lease.body.get("spec").and_then(|s| s.get("leaseTransitions")).and_then(Value::as_i64);
    let transitions = transitions.unwrap_or(0) + i64::from(holder != identity);
    lease.body.insert("spec".into(), lease_spec(identity, duration, &now, transitions));
    // Conditional on the version read: of two standbys, one wins.
    match store.update(lease).await {
        Ok(_) => Ok(true),
        Err(store::Error::Conflict { .. } | store::Error::NotFound(_)) => Ok(false),
        Err(e) => Err(e),
    }
}

/// Renews every third of `duration`; cancels `lost` when another holder took the Lease or no
/// renewal succeeded for two thirds of it.
async fn renew(
    store: Arc<dyn Store>,
    identity: String,
    duration: Duration,
    lost: CancellationToken,
    stop: CancellationToken,
) {
    let deadline = duration * 2 / 3;
    let mut renewed = Instant::now();
    loop {
        tokio::select! {
            () = tokio::time::sleep(duration / 3) => {}
            () = stop.cancelled() => return,
        }
        match renew_once(store.as_ref(), &identity).await {
            Ok(true) => renewed = Instant::now(),
            Ok(false) => {
                tracing::warn!("another operator took the Lease; stepping down");
                lost.cancel();
                return;
            }
            Err(e) => tracing::warn!(error = %e, "renewing the operator Lease failed"),
        }
        if renewed.elapsed() >= deadline {
            tracing::warn!(?deadline, "no renewal of the operator Lease succeeded in time; stepping down");
            lost.cancel();
            return;
        }
    }
}

/// True when renewed; false when the Lease is no longer this process's.
async fn renew_once(store: &dyn Store, identity: &str) -> store::Result<bool> {
    let Some(mut lease) = store.get(&lease_ref()).await? else { return Ok(false) };
    if spec_str(&lease, "holderIdentity") != Some(identity) {
        return Ok(false);
    }
    if let Some(spec) = lease.body.get_mut("spec").and_then(Value::as_object_mut) {
        spec.insert("renewTime".into(), Value::String(now_micro_rfc3339()));
    }
    match store.update(lease).await {
        Ok(_) => Ok(true),
        // Someone wrote it since the read: look again next round.
        Err(store::Error::Conflict { .. }) => Ok(true),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use store::MemoryStore;

    use super::*;

    fn holder(lease: &Object) -> String {
        spec_str(lease, "holderIdentity").unwrap_or_default().to_string()
    }

    async fn lease(store: &Arc<dyn Store>) -> Object {
        store.get(&lease_ref()).await.unwrap().expect("the Lease exists")
    }

    #[tokio::test(start_paused = true)]
    async fn the_first_candidate_leads_and_a_second_waits_for_the_lease_to_lapse() {
        let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
        let ttl = Duration::from_secs(6);
        let a = acquire(store.clone(), "a", ttl).await.unwrap();
        assert_eq!(holder(&lease(&store).await), "a");

        // While a renews, b never takes over.
        let b = tokio::spawn({
            let store = store.clone();
            async move { acquire(store, "b", ttl).await.unwrap() }
        });
        tokio::time::sleep(ttl * 3).await;
        assert!(!b.is_finished(), "b took a Lease that a renews");
        assert_eq!(holder(&lease(&store).await), "a");

        // a stops renewing (dropped without release): b takes over once the duration passed.
        drop(a);
        let b = tokio::time::timeout(ttl * 3, b).await.expect("b takes over").unwrap();
        let taken = lease(&store).await;
        assert_eq!(holder(&taken), "b");
        assert_eq!(taken.body["spec"]["leaseTransitions"], 1);
        drop(b);
    }

    #[tokio::test(start_paused = true)]
    async fn release_hands_over_at_once() {
        let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
        let ttl = Duration::from_secs(60);
        let a = acquire(store.clone(), "a", ttl).await.unwrap();
        let b = tokio::spawn({
            let store = store.clone();
            async move { acquire(store, "b", ttl).await.unwrap() }
        });
        tokio::time::sleep(Duration::from_secs(1)).await;
        let before = Instant::now();
        a.release().await;
        let _b = b.await.unwrap();
        assert!(before.elapsed() <= ttl / 4 + Duration::from_secs(1), "took {:?}", before.elapsed());
        assert_eq!(holder(&lease(&store).await), "b");
    }

    #[tokio::test(start_paused = true)]
    async fn a_leader_whose_lease_was_taken_steps_down() {
        let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
        let ttl = Duration::from_secs(6);
        let a = acquire(store.clone(), "a", ttl).await.unwrap();
        // Another writer takes the Lease over (as a standby that saw it lapse would).
        let mut taken = lease(&store).await;
        taken.body.insert("spec".into(), lease_spec("b", ttl, &now_micro_rfc3339(), 1));
        store.update(taken).await.unwrap();
        tokio::time::timeout(ttl, a.lost()).await.expect("a notices within one duration");
        assert_eq!(holder(&lease(&store).await), "b", "a did not write the Lease back");
    }
}
