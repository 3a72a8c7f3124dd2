//! Node lifecycle, as Kubernetes' node lifecycle controller does it from node leases: a node
//! whose agent stopped renewing its membership Lease (`kube-system/cilia-node-<node>`, which
//! lapses one TTL after the agent dies without saying goodbye) gets `Ready=Unknown`
//! (`NodeStatusUnknown`), and the EndpointSlice controller then takes its pods out of every
//! Service ([`node_lost`]). When the agent is back it joins again and sets `Ready=True` itself,
//! and the endpoints return.
//!
//! A clean stop (`Ready=False`, `AgentStopped`, as in a rollout restart) is left alone: the pods
//! of a node whose agent restarts keep serving, and taking them out would break the rollout.

use std::{collections::BTreeSet, convert::Infallible, sync::Arc, time::Duration};

use api::{Condition, Object, ObjectRef, kinds};
use serde_json::json;
use store::{
    Informer, Store,
    reconcile::{Backoff, Outcome, Reconcile, Runner},
};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::error::Result;
use crate::status;

pub const MEMBERSHIP_NAMESPACE: &str = "kube-system";
pub const REASON_UNKNOWN: &str = "NodeStatusUnknown";
/// A node without a membership Lease at the operator's start gets this long to join before it
/// is called lost (its agent may be starting right now).
const START_GRACE: Duration = Duration::from_secs(5);
const RETRY: Duration = Duration::from_secs(1);

fn membership_lease(node: &str) -> String {
    format!("cilia-node-{node}")
}

/// The Node's `Ready` condition, if it has one.
fn ready(node: &Object) -> Option<Condition> {
    let conditions: Vec<Condition> =
        node.lookup_path("status.conditions").and_then(|c| serde_json::from_value(c).ok()).unwrap_or_default();
    Condition::find(&conditions, "Ready").cloned()
}

/// Whether the node was lost (`Ready=Unknown`): its pods are no endpoints.
pub fn node_lost(node: &Object) -> bool {
    ready(node).is_some_and(|c| c.status == "Unknown")
}

/// Nodes whose agent said it is ready but whose membership Lease is gone.
pub fn lost_nodes(nodes: &[Object], leases: &BTreeSet<String>) -> Vec<String> {
    nodes
        .iter()
        .filter(|n| ready(n).is_some_and(|c| c.status == "True"))
        .filter(|n| !leases.contains(&membership_lease(n.name())))
        .map(|n| n.name().to_string())
        .collect()
}

/// The Nodes, their membership Leases, and when the controller began watching them.
struct NodeLifecycle {
    store: Arc<dyn Store>,
    nodes: Arc<Informer>,
    leases: Informer,
    /// The first pass's time; nodes are called lost only [`START_GRACE`] after it.
    started: Option<Instant>,
}

impl Reconcile for NodeLifecycle {
    type Error = Infallible;

    async fn pass(&mut self) -> std::result::Result<Outcome, Infallible> {
        let started = *self.started.get_or_insert_with(Instant::now);
        if started.elapsed() < START_GRACE {
            return Ok(Outcome::RequeueAfter(START_GRACE - started.elapsed()));
        }
        let live: BTreeSet<String> = self.leases.snapshot().iter().map(|l| l.name().to_string()).collect();
        let mut outcome = Outcome::Done;
        for node in lost_nodes(&self.nodes.snapshot(), &live) {
            if let Err(e) = mark_lost(self.store.as_ref(), &node).await {
                tracing::warn!(%node, error = %api::error::Chain(&e), "cannot mark the node lost; retrying");
                outcome = Outcome::Retry;
            }
        }
        Ok(outcome)
    }
}

pub async fn run(store: Arc<dyn Store>, nodes: Arc<Informer>, shutdown: CancellationToken) -> Result<()> {
    let leases = Informer::start(store.clone(), &kinds::LEASE, Some(MEMBERSHIP_NAMESPACE));
    let runner = Runner::new("node-lifecycle").backoff(Backoff::fixed(RETRY)).watch(&nodes).watch(&leases);
    runner.run_until_cancelled(NodeLifecycle { store, nodes, leases, started: None }, shutdown).await;
    Ok(())
}

async fn mark_lost(store: &dyn Store, node: &str) -> Result<()> {
    let target = ObjectRef::new(&kinds::NODE, None, node);
    let lease = membership_lease(node);
    let now = api::meta::now_rfc3339();
    status::write(store, &target, |obj| {
        // Read again inside the write: the agent may have come back meanwhile.
        if ready(obj).is_none_or(|c| c.status != "True") {
            return Ok(false);
        }
        let mut conditions: Vec<Condition> =
            obj.lookup_path("status.conditions").and_then(|c| serde_json::from_value(c).ok()).unwrap_or_default();
        let lost = Condition {
            type_: "Ready".into(),
            status: "Unknown".into(),
            reason: REASON_UNKNOWN.into(),
            message: format!("the cilia agent stopped renewing its membership lease {MEMBERSHIP_NAMESPACE}/{lease}"),
            ..Condition::default()
        };
        Condition::set(&mut conditions, lost, &now);
        let status = obj.body.entry("status").or_insert_with(|| json!({}));
        status["conditions"] = serde_json::to_value(conditions).map_err(|e| store::Error::Invalid(e.to_string()))?;
        Ok(true)
    })
    .await?;
    tracing::warn!(%node, "node lost: its membership lease lapsed; its pods leave every Service");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(name: &str, ready: &str) -> Object {
        let mut n = Object::new(&kinds::NODE, None, name);
        n.body.insert("status".into(), json!({"conditions": [{"type": "Ready", "status": ready, "reason": "x"}]}));
        n
    }

    #[test]
    fn only_ready_nodes_without_a_lease_are_lost() {
        let nodes = [node("a", "True"), node("b", "True"), node("c", "False"), node("d", "Unknown")];
        let leases: BTreeSet<String> = ["cilia-node-a".to_string()].into();
        assert_eq!(lost_nodes(&nodes, &leases), ["b"]);
        assert!(node_lost(&nodes[3]));
        assert!(!node_lost(&nodes[2]), "a clean stop keeps the node's endpoints");
    }
}
