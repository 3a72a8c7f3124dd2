//! Gives every Node a pod CIDR from the cluster pool (`spec.podCIDR` and `spec.podCIDRs`), as
//! Cilium's operator does in cluster-pool mode and kube-controller-manager's range allocator does
//! for Kubernetes.
//!
//! - At start, every CIDR the stored Nodes hold is claimed before anything is allocated, so a
//!   restarted (or newly elected) operator never moves a node's CIDR.
//! - Nodes that need a CIDR are served in the order they were created. Nodes created within the
//!   same second (timestamps have second precision) are ordered by InternalIP, then name: a
//!   cluster registered in one go is numbered in address order whatever order its events arrive
//!   in, which for the guide's lab is k8s-ctr .0, k8s-w1 .1, k8s-w0 .2.
//! - A CIDR is never taken away from a node; a deleted node's CIDR is freed.
//! - Failures are written on the Node as the condition `cilia.io/PodCIDRAllocated` = False
//!   (reasons `CIDRNotAvailable`, `CIDRConflict`) and logged; a node left waiting for a free CIDR
//!   gets one as soon as another node is deleted.

use std::{
    collections::{BTreeMap, BTreeSet},
    convert::Infallible,
    sync::Arc,
};

use api::{Condition, Object, ObjectRef, kinds, meta::now_rfc3339};
use ipnet::Ipv4Net;
use serde_json::json;
use store::{
    Change, Informer, Store, WatchEventType,
    reconcile::{self, Reconcile, Runner, Wake},
};
use tokio_util::sync::CancellationToken;

use crate::error::{OperatorError, Result};
use crate::{config::OperatorConfig, pod_cidrs::PodCidrAllocator, status};

/// The Node condition this controller owns.
pub const CONDITION: &str = "cilia.io/PodCIDRAllocated";

/// Rejects a cluster pool configuration the controller could not work with.
pub fn check_config(config: &OperatorConfig) -> Result<()> {
    PodCidrAllocator::new(&config.cluster_pool_cidrs, config.cluster_pool_mask)
        .map(drop)
        .map_err(OperatorError::PoolConfig)
}

pub async fn run(store: Arc<dyn Store>, config: OperatorConfig, shutdown: CancellationToken) -> Result<()> {
    let alloc = PodCidrAllocator::new(&config.cluster_pool_cidrs, config.cluster_pool_mask)
        .map_err(OperatorError::PoolConfig)?;
    let nodes = Informer::start(store.clone(), &kinds::NODE, None);
    // Subscribing after the first list makes the first change the complete state, so every stored
    // CIDR is claimed before anything is allocated.
    tokio::select! {
        () = nodes.wait_synced() => {}
        () = shutdown.cancelled() => return Ok(()),
    }
    // Allocation is first come, first served over all nodes, so each change goes into the
    // allocator as it comes, in the informer's order; a pass writes what is pending.
    let runner = Runner::new("pod-cidrs").watch_changes(&nodes, |pod_cidrs: &mut PodCidrs, change| {
        let ctl = &mut pod_cidrs.ctl;
        match change {
            Change::Resync(all) => ctl.resync(&all),
            Change::Event(ev) if ev.type_ == WatchEventType::Deleted => ctl.deleted(ev.object.name()),
            Change::Event(ev) => ctl.observed(&NodeView::of(&ev.object)),
        }
        Wake::Now
    });
    let state = PodCidrs { store, ctl: Controller::new(alloc), _nodes: nodes };
    runner.run_until_cancelled(state, shutdown).await;
    Ok(())
}

/// The controller and where it writes; holds the informer its runner watches.
struct PodCidrs {
    store: Arc<dyn Store>,
    ctl: Controller,
    _nodes: Informer,
}

impl Reconcile for PodCidrs {
    type Error = Infallible;

    /// Writes what is pending; what fails is retried after the backoff.
    async fn pass(&mut self) -> std::result::Result<reconcile::Outcome, Infallible> {
        self.ctl.flush(self.store.as_ref()).await;
        Ok(if self.ctl.unwritten.is_empty() { reconcile::Outcome::Done } else { reconcile::Outcome::Retry })
    }
}

/// What the controller reads from a Node.
#[derive(Debug, Clone, PartialEq, Eq)]
struct NodeView {
    name: String,
    pod_cidr: Option<Ipv4Net>,
    order: OrderKey,
}

/// Creation order: timestamp (RFC 3339 UTC, so it sorts as text), then InternalIP, then name.
type OrderKey = (String, u32, String);

impl NodeView {
    fn of(obj: &Object) -> NodeView {
        let text = |path: &str| obj.lookup_path(path).and_then(|v| v.as_str().map(str::to_string));
        let pod_cidr = text("spec.podCIDR").or_else(|| text("spec.podCIDRs.0")).and_then(|s| match s.parse() {
            Ok(c) => Some(c),
            Err(_) => {
                tracing::warn!(node = %obj.name(), pod_cidr = %s, "ignoring a pod CIDR that is not an IPv4 CIDR");
                None
            }
        });
        let internal_ip = obj.node_internal_ipv4();
        NodeView {
            name: obj.name().to_string(),
            pod_cidr,
            order: (
                obj.metadata.creation_timestamp.clone().unwrap_or_default(),
                internal_ip.map_or(u32::MAX, u32::from),
                obj.name().to_string(),
            ),
        }
    }
}

/// What has to be written on a Node.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Outcome {
    Assigned(Ipv4Net),
    /// The node holds this CIDR after an earlier failure: the condition turns True again.
    Held(Ipv4Net),
    /// The condition's reason and message.
    Failed {
        reason: &'static str,
        message: String,
    },
}

struct Controller {
    alloc: PodCidrAllocator,
    known: BTreeSet<String>,
    /// Written on the next flush (and retried until the write succeeds).
    unwritten: BTreeMap<String, Outcome>,
    /// Nodes without a CIDR because the pool is full, with their order.
    waiting: BTreeMap<String, OrderKey>,
    /// The last failure reported per node, so one failure is logged and written once.
    reported: BTreeMap<String, Outcome>,
}

impl Controller {
    fn new(alloc: PodCidrAllocator) -> Self {
        Controller {
            alloc,
            known: BTreeSet::new(),
            unwritten: BTreeMap::new(),
            waiting: BTreeMap::new(),
            reported: BTreeMap::new(),
        }
    }

    /// The complete state: forget the gone, claim what is held (oldest node first, so the older
    /// of two conflicting nodes keeps its CIDR), then allocate for the rest in creation order.
    fn resync(&mut self, all: &[Object]) {
        let mut views: Vec<NodeView> = all.iter().map(NodeView::of).collect();
        views.sort_by(|a, b| a.order.cmp(&b.order));
        let now: BTreeSet<String> = views.iter().map(|v| v.name.clone()).collect();
        for gone in self.known.difference(&now).cloned().collect::<Vec<_>>() {
            self.forget(&gone);
        }
        self.known = now;
        for v in views.iter().filter(|v| v.pod_cidr.is_some()) {
            self.observed(v);
        }
        for v in views.iter().filter(|v| v.pod_cidr.is_none()) {
            self.observed(v);
        }
    }

    fn observed(&mut self, node: &NodeView) {
        self.known.insert(node.name.clone());
        match node.pod_cidr {
            Some(cidr) => {
                self.waiting.remove(&node.name);
                if self.unwritten.get(&node.name).is_some_and(|o| *o == Outcome::Assigned(cidr)) {
                    self.unwritten.remove(&node.name);
                }
                if self.alloc.get(&node.name) == Some(cidr.trunc()) {
                    return;
                }
                match self.alloc.claim(&node.name, cidr) {
                    Ok(()) => {
                        if self.reported.remove(&node.name).is_some() {
                            self.unwritten.insert(node.name.clone(), Outcome::Held(cidr.trunc()));
                        }
                    }
                    Err(e) => self.fail(&node.name, "CIDRConflict", e.to_string()),
                }
            }
            None => self.assign(&node.name, &node.order),
        }
    }

    fn deleted(&mut self, name: &str) {
        self.forget(name);
        self.known.remove(name);
    }

    fn forget(&mut self, name: &str) {
        self.unwritten.remove(name);
        self.waiting.remove(name);
        self.reported.remove(name);
        if let Some(cidr) = self.alloc.release(name) {
            tracing::info!(node = %name, %cidr, "node deleted; its pod CIDR is free again");
            // Somebody may have been waiting for exactly this.
            let mut waiting: Vec<(String, OrderKey)> = std::mem::take(&mut self.waiting).into_iter().collect();
            waiting.sort_by(|a, b| a.1.cmp(&b.1));
            for (node, order) in waiting {
                self.assign(&node, &order);
            }
        }
    }

    fn assign(&mut self, name: &str, order: &OrderKey) {
        let fresh = self.alloc.get(name).is_none();
        match self.alloc.allocate(name) {
            Ok(cidr) => {
                self.waiting.remove(name);
                self.reported.remove(name);
                self.unwritten.insert(name.to_string(), Outcome::Assigned(cidr));
                if fresh {
                    tracing::info!(node = %name, %cidr, "assigning pod CIDR");
                }
            }
            Err(e) => {
                self.waiting.insert(name.to_string(), order.clone());
                self.fail(name, "CIDRNotAvailable", e.to_string());
            }
        }
    }

    fn fail(&mut self, name: &str, reason: &'static str, message: String) {
        let outcome = Outcome::Failed { reason, message };
        if self.reported.get(name) == Some(&outcome) {
            return;
        }
        if let Outcome::Failed { message, .. } = &outcome {
            tracing::warn!(node = %name, reason, "no pod CIDR: {message}");
        }
        self.reported.insert(name.to_string(), outcome.clone());
        self.unwritten.insert(name.to_string(), outcome);
    }

    /// Writes what is pending; what fails stays for the next retry.
    async fn flush(&mut self, store: &dyn Store) {
        let pending: Vec<(String, Outcome)> = self.unwritten.iter().map(|(n, o)| (n.clone(), o.clone())).collect();
        for (name, outcome) in pending {
            let target = ObjectRef::new(&kinds::NODE, None, &name);
            match status::write(store, &target, |obj| Ok(apply(obj, &outcome))).await {
                Ok(()) => {
                    if self.unwritten.get(&name) == Some(&outcome) {
                        self.unwritten.remove(&name);
                    }
                }
                Err(e) => {
                    tracing::warn!(node = %name, error = %api::error::Chain(&e), "writing the pod CIDR; will retry")
                }
            }
        }
    }
}

/// Writes `outcome` into the Node; returns whether anything changed. A CIDR already on the Node
/// is never replaced: it was written by someone else meanwhile, and its event follows.
fn apply(obj: &mut Object, outcome: &Outcome) -> bool {
    let has_cidr = obj.lookup_path("spec.podCIDR").is_some_and(|v| v.as_str().is_some_and(|s| !s.is_empty()));
    let assigned = |cidr: &Ipv4Net| Condition {
        type_: CONDITION.into(),
        status: "True".into(),
        reason: "CIDRAssigned".into(),
        message: format!("pod CIDR {cidr} from the cluster pool"),
        ..Condition::default()
    };
    match outcome {
        Outcome::Held(cidr) => set_condition(obj, assigned(cidr)),
        Outcome::Assigned(cidr) => {
            if has_cidr {
                return false;
            }
            let spec = obj.body.entry("spec").or_insert_with(|| json!({}));
            if !spec.is_object() {
                *spec = json!({});
            }
            spec["podCIDR"] = cidr.to_string().into();
            spec["podCIDRs"] = json!([cidr.to_string()]);
            set_condition(obj, assigned(cidr));
            true
        }
        // A node that got a CIDR meanwhile is no longer short of one.
        Outcome::Failed { reason: "CIDRNotAvailable", .. } if has_cidr => false,
        Outcome::Failed { reason, message } => set_condition(
            obj,
            Condition {
                type_: CONDITION.into(),
                status: "False".into(),
                reason: (*reason).into(),
                message: message.clone(),
                ..Condition::default()
            },
        ),
    }
}

/// Sets one condition in `status.conditions`, keeping the others as they are.
fn set_condition(obj: &mut Object, condition: Condition) -> bool {
    let status = obj.body.entry("status").or_insert_with(|| json!({}));
    if !status.is_object() {
        *status = json!({});
    }
    let mut conditions: Vec<Condition> = match status.get("conditions") {
        None => Vec::new(),
        Some(v) => match serde_json::from_value(v.clone()) {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(error = %e, "status.conditions of a Node is not a list of conditions; leaving it alone");
                return false;
            }
        },
    };
    if !Condition::set(&mut conditions, condition, &now_rfc3339()) {
        return false;
    }
    status["conditions"] = serde_json::to_value(conditions).expect("conditions serialize");
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(name: &str, created: &str, ip: &str, cidr: Option<&str>) -> Object {
        let mut o = Object::new(&kinds::NODE, None, name);
        o.metadata.creation_timestamp = Some(created.into());
        o.body.insert("status".into(), json!({"addresses": [{"type": "InternalIP", "address": ip}]}));
        if let Some(c) = cidr {
            o.body.insert("spec".into(), json!({"podCIDR": c, "podCIDRs": [c]}));
        }
        o
    }

    fn controller(pool: &str, mask: u8) -> Controller {
        Controller::new(PodCidrAllocator::new(&[pool.parse().unwrap()], mask).unwrap())
    }

    fn assigned(ctl: &Controller) -> Vec<(String, String)> {
        ctl.unwritten
            .iter()
            .filter_map(|(n, o)| match o {
                Outcome::Assigned(c) => Some((n.clone(), c.to_string())),
                Outcome::Failed { .. } | Outcome::Held(_) => None,
            })
            .collect()
    }

    const T: &str = "2026-01-01T00:00:00Z";

    #[test]
    fn a_cluster_registered_at_once_is_numbered_by_address() {
        let mut ctl = controller("172.20.0.0/16", 24);
        // Listed by name, all in one second: k8s-w0 sorts before k8s-w1 by name, not by address.
        ctl.resync(&[
            node("k8s-ctr", T, "192.168.10.100", None),
            node("k8s-w0", T, "192.168.20.100", None),
            node("k8s-w1", T, "192.168.10.101", None),
        ]);
        let mut got = assigned(&ctl);
        got.sort_by(|a, b| a.1.cmp(&b.1));
        assert_eq!(
            got,
            [
                ("k8s-ctr".to_string(), "172.20.0.0/24".to_string()),
                ("k8s-w1".to_string(), "172.20.1.0/24".to_string()),
                ("k8s-w0".to_string(), "172.20.2.0/24".to_string()),
            ]
        );
    }

    #[test]
    fn older_nodes_come_first_and_held_cidrs_are_kept() {
        let mut ctl = controller("172.20.0.0/16", 24);
        ctl.resync(&[
            node("a", "2026-01-01T00:00:05Z", "10.0.0.1", None),
            node("b", "2026-01-01T00:00:01Z", "10.0.0.9", None),
            node("c", "2026-01-01T00:00:00Z", "10.0.0.5", Some("172.20.0.0/24")),
        ]);
        assert_eq!(
            assigned(&ctl),
            [("a".to_string(), "172.20.2.0/24".to_string()), ("b".to_string(), "172.20.1.0/24".to_string())]
        );
    }

    #[test]
    fn exhaustion_is_written_on_the_node_and_cleared_by_a_deletion() {
        let mut ctl = controller("172.20.0.0/24", 25);
        ctl.resync(&[
            node("a", T, "10.0.0.1", Some("172.20.0.0/25")),
            node("b", T, "10.0.0.2", Some("172.20.0.128/25")),
        ]);
        ctl.observed(&NodeView::of(&node("c", "2026-01-01T00:00:01Z", "10.0.0.3", None)));
        let Some(Outcome::Failed { reason, message }) = ctl.unwritten.get("c").cloned() else {
            panic!("{:?}", ctl.unwritten)
        };
        assert_eq!(reason, "CIDRNotAvailable");
        assert_eq!(message, "no free /25 left in the cluster pool 172.20.0.0/24 (2 of 2 allocated)");

        let mut obj = node("c", T, "10.0.0.3", None);
        assert!(apply(&mut obj, &ctl.unwritten["c"]));
        let cond = &obj.lookup_path("status.conditions").unwrap()[0];
        assert_eq!((cond["type"].as_str(), cond["status"].as_str()), (Some(CONDITION), Some("False")));
        assert!(!apply(&mut obj, &ctl.unwritten["c"]), "an unchanged condition is not written again");

        ctl.unwritten.clear();
        ctl.deleted("a");
        assert_eq!(assigned(&ctl), [("c".to_string(), "172.20.0.0/25".to_string())]);
        apply(&mut obj, &ctl.unwritten["c"]);
        assert_eq!(obj.lookup_path("spec.podCIDR").unwrap(), "172.20.0.0/25");
        let cond = &obj.lookup_path("status.conditions").unwrap()[0];
        assert_eq!((cond["status"].as_str(), cond["reason"].as_str()), (Some("True"), Some("CIDRAssigned")));
    }

    #[test]
    fn a_cidr_written_meanwhile_is_not_overwritten() {
        let mut obj = node("a", T, "10.0.0.1", Some("172.20.9.0/24"));
        assert!(!apply(&mut obj, &Outcome::Assigned("172.20.0.0/24".parse().unwrap())));
        assert_eq!(obj.lookup_path("spec.podCIDR").unwrap(), "172.20.9.0/24");
    }

    #[test]
    fn conflicting_nodes_are_reported_and_the_older_keeps_its_cidr() {
        let mut ctl = controller("172.20.0.0/16", 24);
        ctl.resync(&[
            node("new", "2026-01-01T00:00:09Z", "10.0.0.1", Some("172.20.3.0/24")),
            node("old", "2026-01-01T00:00:01Z", "10.0.0.2", Some("172.20.3.0/24")),
        ]);
        assert_eq!(ctl.alloc.get("old"), Some("172.20.3.0/24".parse().unwrap()));
        assert!(matches!(ctl.unwritten.get("new"), Some(Outcome::Failed { reason: "CIDRConflict", .. })));
    }
}
