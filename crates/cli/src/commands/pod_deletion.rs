//! Deleting a running pod gracefully, as the API server and kubelet do: the pod is marked
//! (`deletionTimestamp`, shown as Terminating), the Services stop sending it new connections, its
//! node's runtime drains it, stops its containers within the grace period and removes the object.
//! `cilia delete` waits for that, as `kubectl delete` does by default.
//!
//! A pod that no node runs (unscheduled), one with `terminationGracePeriodSeconds: 0` or deleted
//! with `--grace-period=0`, and one already marked go at once. A node that does not confirm within [`CONFIRM_WITHIN`] (its
//! runtime is down) does not block the command: the object is then removed as with
//! `--grace-period=0 --force`, and the command says so.

use std::time::{Duration, Instant};

use anyhow::{Context as _, Result};
use api::{Object, ObjectRef, meta::now_rfc3339};
use store::Store;

/// How long a node's runtime has to confirm a graceful deletion (its grace is capped at a few
/// seconds, its drain at two).
pub const CONFIRM_WITHIN: Duration = Duration::from_secs(30);
const POLL: Duration = Duration::from_millis(100);
/// Kubernetes' default `terminationGracePeriodSeconds`.
const DEFAULT_GRACE_SECONDS: i64 = 30;

/// The grace period a graceful deletion of `pod` gets, or `None` when it should go at once.
/// `requested` is `--grace-period`; without it the pod's own period counts.
pub fn graceful_period(pod: &Object, requested: Option<i64>) -> Option<i64> {
    if pod.metadata.deletion_timestamp.is_some() {
        return None;
    }
    pod.lookup_path("spec.nodeName").and_then(|n| n.as_str().map(|n| !n.is_empty()))?.then_some(())?;
    let own = pod.lookup_path("spec.terminationGracePeriodSeconds").and_then(|g| g.as_i64());
    Some(requested.or(own).unwrap_or(DEFAULT_GRACE_SECONDS)).filter(|g| *g > 0)
}

/// Deletes the pod gracefully if it should be, and waits until its node removed it. Returns the
/// pod's last state, or `None` if it did not exist; falls back to an immediate delete for pods
/// that go at once.
pub async fn delete(store: &dyn Store, target: &ObjectRef, grace_period: Option<i64>) -> Result<Option<Object>> {
    for _ in 0..5 {
        let Some(mut pod) = store.get(target).await? else {
            return Ok(None);
        };
        let Some(grace) = graceful_period(&pod, grace_period) else {
            return Ok(store.delete(target, None).await?);
        };
        let uid = pod.metadata.uid.clone();
        pod.metadata.deletion_timestamp = Some(now_rfc3339());
        pod.metadata.deletion_grace_period_seconds = Some(grace);
        match store.update(pod).await {
            Ok(marked) => {
                wait_for_node(store, target, uid.as_deref()).await?;
                return Ok(Some(marked));
            }
            // Changed under us (its runtime wrote its status): read it again.
            Err(store::Error::Conflict { .. }) => continue,
            Err(e) => return Err(e).with_context(|| format!("marking pod {} for deletion", target.name)),
        }
    }
    anyhow::bail!("pod {} kept changing while it was being marked for deletion; try again", target.name)
}

async fn wait_for_node(store: &dyn Store, target: &ObjectRef, uid: Option<&str>) -> Result<()> {
    let deadline = Instant::now() + CONFIRM_WITHIN;
    loop {
        match store.get(target).await? {
            Some(obj) if obj.metadata.uid.as_deref() == uid => {}
            // Gone, or replaced by a new pod of the same name.
            _ => return Ok(()),
        }
        if Instant::now() >= deadline {
            let node = store
                .get(target)
                .await?
                .and_then(|o| o.lookup_path("spec.nodeName"))
                .and_then(|n| n.as_str().map(str::to_string))
                .unwrap_or_default();
            eprintln!(
                "warning: node {node} did not remove pod {} within {}s; removing it without waiting for its runtime (as --grace-period=0 --force)",
                target.name,
                CONFIRM_WITHIN.as_secs()
            );
            store.delete(target, None).await?;
            return Ok(());
        }
        tokio::time::sleep(POLL).await;
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn pod(spec: serde_json::Value) -> Object {
        serde_json::from_value(json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}, "spec": spec}))
            .unwrap()
    }

    #[test]
    fn running_pods_get_their_grace_period() {
        assert_eq!(graceful_period(&pod(json!({"nodeName": "k8s-w1"})), None), Some(30));
        let three = pod(json!({"nodeName": "k8s-w1", "terminationGracePeriodSeconds": 3}));
        assert_eq!(graceful_period(&three, None), Some(3));
        assert_eq!(graceful_period(&three, Some(1)), Some(1));
        assert_eq!(graceful_period(&three, Some(0)), None, "--grace-period=0 removes it at once");
    }

    #[test]
    fn unscheduled_immediate_and_marked_pods_go_at_once() {
        assert_eq!(graceful_period(&pod(json!({})), None), None);
        assert_eq!(
            graceful_period(&pod(json!({"nodeName": "k8s-w1", "terminationGracePeriodSeconds": 0})), None),
            None
        );
        let mut marked = pod(json!({"nodeName": "k8s-w1"}));
        marked.metadata.deletion_timestamp = Some("2026-01-01T00:00:00Z".into());
        assert_eq!(graceful_period(&marked, None), None);
    }
}
