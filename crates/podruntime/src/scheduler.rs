//! Where a pod runs, as a pure function of the pod, the nodes and the pods already placed. The
//! filters are the ones the guide's manifests need: node readiness, `nodeSelector`, and required
//! pod anti-affinity (both the pod's own terms and those of pods already placed, which
//! Kubernetes also enforces). Among the nodes left, the least loaded wins, which spreads a
//! Deployment across nodes the way the default scheduler's scoring does.

use std::collections::BTreeMap;

use api::{
    Condition, Selector,
    types::{Node, Pod, PodAffinityTerm},
};

/// The scheduler's answer for one pod.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    Bind(String),
    /// No node fits; the message says why, as Kubernetes words it
    /// (`0/3 nodes are available: 3 node(s) didn't match pod anti-affinity rules.`).
    Unschedulable(String),
}

const NOT_READY: &str = "node(s) had untolerated taint {node.kubernetes.io/not-ready: }";
const UNSCHEDULABLE: &str = "node(s) were unschedulable";
const SELECTOR: &str = "node(s) didn't match Pod's node affinity/selector";
const ANTI_AFFINITY: &str = "node(s) didn't match pod anti-affinity rules";
const EXISTING_ANTI_AFFINITY: &str = "node(s) didn't match pod anti-affinity rules of existing pods";

/// A pod already bound (or assumed bound) to a node.
#[derive(Debug, Clone, Copy)]
pub struct Placed<'a> {
    pub pod: &'a Pod,
    pub node: &'a str,
}

/// Whether the node takes new pods: not cordoned, and `Ready` unless it reports no conditions
/// at all (an agent that has not started yet; the lab's nodes are registered before their
/// agents run).
pub fn node_is_ready(node: &Node) -> bool {
    node.status.conditions.is_empty()
        || Condition::find(&node.status.conditions, "Ready").is_some_and(|c| c.status == "True")
}

/// Picks a node for `pod`.
pub fn schedule(pod: &Pod, nodes: &[Node], placed: &[Placed<'_>]) -> Decision {
    if nodes.is_empty() {
        return Decision::Unschedulable("no nodes available to schedule pods".into());
    }
    let by_name: BTreeMap<&str, &Node> = nodes.iter().map(|n| (n.metadata.name.as_str(), n)).collect();
    let mut load: BTreeMap<&str, usize> = BTreeMap::new();
    for p in placed {
        *load.entry(p.node).or_default() += 1;
    }
    let mut reasons: BTreeMap<&str, usize> = BTreeMap::new();
    let mut best: Option<(&str, usize)> = None;
    for node in nodes {
        let name = node.metadata.name.as_str();
        let failed = if node.spec.unschedulable == Some(true) {
            Some(UNSCHEDULABLE)
        } else if !node_is_ready(node) {
            Some(NOT_READY)
        } else if !pod.spec.node_selector.iter().all(|(k, v)| node.metadata.labels.get(k) == Some(v)) {
            Some(SELECTOR)
        } else if violates_own_anti_affinity(pod, node, placed, &by_name) {
            Some(ANTI_AFFINITY)
        } else if violates_existing_anti_affinity(pod, node, placed, &by_name) {
            Some(EXISTING_ANTI_AFFINITY)
        } else {
            None
        };
        match failed {
            Some(reason) => *reasons.entry(reason).or_default() += 1,
            None => {
                let l = load.get(name).copied().unwrap_or(0);
                if best.is_none_or(|(_, bl)| l < bl) {
                    best = Some((name, l));
                }
            }
        }
    }
    match best {
        Some((name, _)) => Decision::Bind(name.to_string()),
        None => {
            let why: Vec<String> = reasons.iter().map(|(r, n)| format!("{n} {r}")).collect();
            Decision::Unschedulable(format!("0/{} nodes are available: {}.", nodes.len(), why.join(", ")))
        }
    }
}

/// The pod's required anti-affinity terms.
fn anti_affinity_terms(pod: &Pod) -> &[PodAffinityTerm] {
    pod.spec
        .affinity
        .as_ref()
        .and_then(|a| a.pod_anti_affinity.as_ref())
        .map_or(&[], |a| a.required_during_scheduling_ignored_during_execution.as_slice())
}

/// Whether `term` (declared by a pod in `owner_namespace`) selects `candidate`. A term without a
/// label selector selects nothing, as in Kubernetes.
fn term_selects(term: &PodAffinityTerm, owner_namespace: &str, candidate: &Pod) -> bool {
    let namespace = candidate.metadata.namespace.as_deref().unwrap_or("default");
    let in_scope = if term.namespaces.is_empty() {
        namespace == owner_namespace
    } else {
        term.namespaces.iter().any(|n| n == namespace)
    };
    in_scope
        && term
            .label_selector
            .as_ref()
            .and_then(|s| Selector::from_label_selector(s).ok())
            .is_some_and(|s| s.matches(&candidate.metadata.labels))
}

/// Whether two nodes share the topology domain `key`. A node without the label is in no domain.
fn same_domain(key: &str, a: &Node, b: Option<&&Node>) -> bool {
    match (a.metadata.labels.get(key), b.and_then(|b| b.metadata.labels.get(key))) {
        (Some(x), Some(y)) => x == y,
        _ => false,
    }
}

fn violates_own_anti_affinity(pod: &Pod, node: &Node, placed: &[Placed<'_>], nodes: &BTreeMap<&str, &Node>) -> bool {
    let namespace = pod.metadata.namespace.as_deref().unwrap_or("default");
    anti_affinity_terms(pod).iter().any(|term| {
        placed.iter().any(|p| {
            p.pod.metadata.uid != pod.metadata.uid
                && same_domain(&term.topology_key, node, nodes.get(p.node))
                && term_selects(term, namespace, p.pod)
        })
    })
}

fn violates_existing_anti_affinity(
    pod: &Pod,
    node: &Node,
    placed: &[Placed<'_>],
    nodes: &BTreeMap<&str, &Node>,
) -> bool {
    placed.iter().any(|p| {
        let owner_namespace = p.pod.metadata.namespace.as_deref().unwrap_or("default");
        p.pod.metadata.uid != pod.metadata.uid
            && anti_affinity_terms(p.pod).iter().any(|term| {
                same_domain(&term.topology_key, node, nodes.get(p.node)) && term_selects(term, owner_namespace, pod)
            })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(name: &str, ready: Option<bool>) -> Node {
        let mut n: Node = serde_json::from_value(serde_json::json!({
            "apiVersion": "v1", "kind": "Node",
            "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name}}
        }))
        .unwrap();
        if let Some(r) = ready {
            n.status.conditions.push(Condition {
                type_: "Ready".into(),
                status: if r { "True" } else { "False" }.into(),
                ..Default::default()
            });
        }
        n
    }

    fn webpod(i: usize) -> Pod {
        serde_json::from_value(serde_json::json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": format!("webpod-{i}"), "namespace": "default", "uid": format!("u{i}"),
                         "labels": {"app": "webpod"}},
            "spec": {
                "affinity": {"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
                    {"labelSelector": {"matchLabels": {"app": "webpod"}}, "topologyKey": "kubernetes.io/hostname"}
                ]}},
                "containers": [{"name": "webpod", "image": "traefik/whoami"}]
            }
        }))
        .unwrap()
    }

    fn plain(i: usize, labels: serde_json::Value) -> Pod {
        serde_json::from_value(serde_json::json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": format!("p{i}"), "namespace": "default", "uid": format!("p{i}"), "labels": labels},
            "spec": {"containers": [{"name": "c", "image": "nicolaka/netshoot"}]}
        }))
        .unwrap()
    }

    /// Schedules pods one after the other, as the controller does, and returns the decisions.
    fn place_all(pods: &[Pod], nodes: &[Node]) -> Vec<Decision> {
        let mut bound: Vec<(usize, String)> = Vec::new();
        pods.iter()
            .enumerate()
            .map(|(i, pod)| {
                let placed: Vec<Placed<'_>> =
                    bound.iter().map(|(j, n)| Placed { pod: &pods[*j], node: n.as_str() }).collect();
                let d = schedule(pod, nodes, &placed);
                if let Decision::Bind(n) = &d {
                    bound.push((i, n.clone()));
                }
                d
            })
            .collect()
    }

    #[test]
    fn anti_affinity_spreads_three_replicas_and_leaves_the_fourth_pending() {
        let nodes = [node("k8s-ctr", None), node("k8s-w1", None), node("k8s-w0", None)];
        let pods: Vec<Pod> = (0..4).map(webpod).collect();
        let decisions = place_all(&pods, &nodes);
        let mut used: Vec<&str> = decisions[..3]
            .iter()
            .map(|d| match d {
                Decision::Bind(n) => n.as_str(),
                other => panic!("{other:?}"),
            })
            .collect();
        used.sort();
        assert_eq!(used, ["k8s-ctr", "k8s-w0", "k8s-w1"]);
        assert_eq!(
            decisions[3],
            Decision::Unschedulable("0/3 nodes are available: 3 node(s) didn't match pod anti-affinity rules.".into())
        );
    }

    #[test]
    fn existing_pods_anti_affinity_is_symmetric() {
        let nodes = [node("a", None)];
        let guard = webpod(0);
        let newcomer = plain(1, serde_json::json!({"app": "webpod"}));
        let placed = [Placed { pod: &guard, node: "a" }];
        let d = schedule(&newcomer, &nodes, &placed);
        assert!(matches!(&d, Decision::Unschedulable(m) if m.contains("of existing pods")), "{d:?}");
        // A pod the term does not select is welcome.
        let other = plain(2, serde_json::json!({"app": "curl"}));
        assert_eq!(schedule(&other, &nodes, &placed), Decision::Bind("a".into()));
    }

    #[test]
    fn readiness_and_node_selector() {
        let nodes = [node("a", Some(false)), node("b", Some(true)), node("c", None)];
        let mut pod = plain(0, serde_json::json!({}));
        pod.spec.node_selector.insert("kubernetes.io/hostname".into(), "c".into());
        assert_eq!(schedule(&pod, &nodes, &[]), Decision::Bind("c".into()));
        pod.spec.node_selector.insert("kubernetes.io/hostname".into(), "a".into());
        let d = schedule(&pod, &nodes, &[]);
        assert_eq!(
            d,
            Decision::Unschedulable(
                "0/3 nodes are available: 2 node(s) didn't match Pod's node affinity/selector, 1 node(s) had untolerated taint {node.kubernetes.io/not-ready: }.".into()
            )
        );
        assert!(matches!(schedule(&pod, &[], &[]), Decision::Unschedulable(m) if m.contains("no nodes")));
    }

    #[test]
    fn least_loaded_node_wins() {
        let nodes = [node("a", None), node("b", None)];
        let busy = plain(1, serde_json::json!({}));
        let placed = [Placed { pod: &busy, node: "a" }];
        assert_eq!(schedule(&plain(2, serde_json::json!({})), &nodes, &placed), Decision::Bind("b".into()));
    }
}
