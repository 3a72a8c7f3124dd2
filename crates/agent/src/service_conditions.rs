//! The agents' word on Services their datapath left out for want of room
//! ([`crate::service_fit`]): the condition `cilia.io/DatapathProgrammed`, status False, reason
//! `ServiceMapFull`, whose message names the nodes that left the Service out. Each agent adds or
//! removes only its own node, with a write conditional on the version it read (so agents never
//! undo each other), and the condition goes once no node leaves the Service out.
//!
//! It runs beside the service controller, never inside it: a slow or frozen datastore delays
//! the condition, not the datapath.

use std::collections::BTreeSet;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use api::{Condition, Object, ObjectRef, kinds, meta::now_rfc3339};
use serde_json::json;
use store::{
    Informer, Store,
    reconcile::{Backoff, Outcome, Reconcile, Runner, Wake},
};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

pub const PROGRAMMED: &str = "cilia.io/DatapathProgrammed";
pub const REASON_MAP_FULL: &str = "ServiceMapFull";
const PREFIX: &str = "left out of the service maps of ";
const SUFFIX: &str = " (full: the oldest Services keep their place; raise bpf-lb-map-max)";
/// Writes that failed are tried again this often.
const RETRY: Duration = Duration::from_secs(5);

fn conditions_of(obj: &Object) -> Vec<Condition> {
    obj.lookup_path("status.conditions").and_then(|v| serde_json::from_value(v).ok()).unwrap_or_default()
}

/// The nodes a Service's condition says left it out.
pub fn nodes_leaving_out(obj: &Object) -> BTreeSet<String> {
    let conditions = conditions_of(obj);
    let Some(c) = Condition::find(&conditions, PROGRAMMED) else { return BTreeSet::new() };
    let nodes = c.message.strip_prefix(PREFIX).and_then(|m| m.strip_suffix(SUFFIX)).unwrap_or("");
    nodes.split(", ").filter(|n| !n.is_empty()).map(str::to_string).collect()
}

/// Adds `node` to (or removes it from) the Service's condition. Returns whether it changed.
fn mark(obj: &mut Object, node: &str, left_out: bool) -> store::Result<bool> {
    let mut nodes = nodes_leaving_out(obj);
    let changed = if left_out { nodes.insert(node.to_string()) } else { nodes.remove(node) };
    if !changed {
        return Ok(false);
    }
    let mut conditions: Vec<Condition> = conditions_of(obj).into_iter().filter(|c| c.type_ != PROGRAMMED).collect();
    if !nodes.is_empty() {
        let message = format!("{PREFIX}{}{SUFFIX}", nodes.into_iter().collect::<Vec<_>>().join(", "));
        let condition = Condition {
            type_: PROGRAMMED.into(),
            status: "False".into(),
            reason: REASON_MAP_FULL.into(),
            message,
            ..Condition::default()
        };
        Condition::set(&mut conditions, condition, &now_rfc3339());
    }
    let status = obj.body.entry("status").or_insert_with(|| json!({}));
    if !status.is_object() {
        *status = json!({});
    }
    status["conditions"] = serde_json::to_value(conditions).map_err(|e| store::Error::Invalid(e.to_string()))?;
    Ok(true)
}

/// Makes every Service in `services` say whether `node` left it out, as `left_out` has it.
/// Returns the Services it could not update (tried again by the caller).
pub async fn reconcile(store: &dyn Store, node: &str, services: &[Object], left_out: &BTreeSet<String>) -> usize {
    let mut failed = 0;
    for svc in services {
        let name = format!("{}/{}", svc.namespace().unwrap_or("default"), svc.name());
        let want = left_out.contains(&name);
        if nodes_leaving_out(svc).contains(node) == want {
            continue;
        }
        let target = ObjectRef::new(&kinds::SERVICE, svc.namespace(), svc.name());
        match store::update_with_retry(store, &target, |obj| mark(obj, node, want)).await {
            Ok(_) | Err(store::Error::NotFound(_)) => {}
            Err(e) => {
                failed += 1;
                tracing::warn!(service = %name, error = %e, "cannot write the DatapathProgrammed condition; retrying");
            }
        }
    }
    failed
}

/// This node's name, the Services, and what the service controller left out.
struct ServiceConditions {
    store: Arc<dyn Store>,
    node: String,
    services: Informer,
    left_out: watch::Receiver<Vec<String>>,
}

impl Reconcile for ServiceConditions {
    type Error = Infallible;

    async fn pass(&mut self) -> Result<Outcome, Infallible> {
        let wanted: BTreeSet<String> = self.left_out.borrow().iter().cloned().collect();
        let failed = reconcile(self.store.as_ref(), &self.node, &self.services.snapshot(), &wanted).await;
        Ok(if failed > 0 { Outcome::Retry } else { Outcome::Done })
    }
}

/// Keeps the Services' conditions in line with what the service controller left out.
pub async fn run(
    store: Arc<dyn Store>,
    node: String,
    left_out: watch::Receiver<Vec<String>>,
    shutdown: CancellationToken,
) {
    let services = Informer::start(store.clone(), &kinds::SERVICE, None);
    let runner = Runner::new("service-conditions")
        .backoff(Backoff::fixed(RETRY))
        // A Service made again under the same name starts without the condition.
        .watch(&services)
        .on_change(left_out.clone(), |_, _| Wake::Debounced);
    runner.run_until_cancelled(ServiceConditions { store, node, services, left_out }, shutdown).await;
}

#[cfg(test)]
mod tests {
    use store::MemoryStore;

    use super::*;

    async fn service(store: &MemoryStore, name: &str) {
        let mut svc = Object::new(&kinds::SERVICE, Some("default"), name);
        svc.body.insert("spec".into(), json!({"ports": [{"port": 80}]}));
        svc.body.insert(
            "status".into(),
            json!({"conditions": [{"type": "cilium.io/IPAMRequestSatisfied", "status": "True", "reason": "satisfied"}]}),
        );
        store.create(svc).await.unwrap();
    }

    async fn get(store: &MemoryStore, name: &str) -> Object {
        store.get(&ObjectRef::new(&kinds::SERVICE, Some("default"), name)).await.unwrap().unwrap()
    }

    #[tokio::test]
    async fn each_node_adds_and_removes_only_itself_and_the_condition_goes_with_the_last() {
        let store = MemoryStore::new();
        service(&store, "old").await;
        service(&store, "new").await;
        let list = |store: &MemoryStore| {
            let store = store.clone();
            async move { vec![get(&store, "old").await, get(&store, "new").await] }
        };
        let new_only: BTreeSet<String> = ["default/new".to_string()].into();

        assert_eq!(reconcile(&store, "k8s-ctr", &list(&store).await, &new_only).await, 0);
        assert_eq!(reconcile(&store, "k8s-w1", &list(&store).await, &new_only).await, 0);
        let new = get(&store, "new").await;
        assert_eq!(nodes_leaving_out(&new), ["k8s-ctr".to_string(), "k8s-w1".to_string()].into());
        let c = Condition::find(&conditions_of(&new), PROGRAMMED).cloned().expect("the condition");
        assert_eq!((c.status.as_str(), c.reason.as_str()), ("False", REASON_MAP_FULL));
        assert!(c.message.contains("k8s-ctr, k8s-w1") && c.message.contains("bpf-lb-map-max"), "{}", c.message);
        assert_eq!(conditions_of(&new).len(), 2, "LB-IPAM's condition stays");
        assert!(nodes_leaving_out(&get(&store, "old").await).is_empty());
        // Nothing changes: nothing is written.
        let version = new.metadata.resource_version.clone();
        reconcile(&store, "k8s-ctr", &list(&store).await, &new_only).await;
        assert_eq!(get(&store, "new").await.metadata.resource_version, version);

        // k8s-ctr finds room: only its name goes; with k8s-w1's, the condition goes.
        reconcile(&store, "k8s-ctr", &list(&store).await, &BTreeSet::new()).await;
        assert_eq!(nodes_leaving_out(&get(&store, "new").await), ["k8s-w1".to_string()].into());
        reconcile(&store, "k8s-w1", &list(&store).await, &BTreeSet::new()).await;
        let new = get(&store, "new").await;
        assert!(Condition::find(&conditions_of(&new), PROGRAMMED).is_none());
        assert_eq!(conditions_of(&new).len(), 1);
    }
}
