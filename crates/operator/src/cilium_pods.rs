//! The agents and the operator as Pods in `kube-system`, where Cilium's DaemonSet and Deployment
//! put them, so that commands written for Cilium find them:
//!
//! ```text
//! kubectl get pod -n kube-system -l k8s-app=cilium --field-selector spec.nodeName=k8s-ctr
//! kubectl exec -n kube-system cilium-xxxxx -- cilium-dbg bpf lb list
//! ```
//!
//! cilia's agents are processes on the nodes, not containers, so these Pods are mirrors: one
//! `cilium-<suffix>` per Node (labels `k8s-app=cilium`, `spec.nodeName`, `hostNetwork: true`),
//! `Running` and Ready while the node's agent says it is (`Ready=True` on the Node), `Pending`
//! while it restarts (`Ready=False`) and `Unknown` with reason `NodeLost` once its membership
//! lapsed ([`crate::node_lifecycle`]); and one `cilium-operator-<hash>-<suffix>` (label
//! `io.cilium/app=operator`) for the leading operator. The suffixes are derived from the node
//! name (the identity), so a name stays the same across restarts. They are mirror pods
//! ([`api::types::MIRROR_ANNOTATION`], its value what they mirror), which pod runtimes leave
//! alone, and `cilia exec` into an agent's pod runs `cilium-dbg ARGS` as `cilia dbg NODE ARGS`.

use std::{collections::BTreeMap, convert::Infallible, sync::Arc, time::Duration};

use crate::error::{OperatorError, Result};
use api::{Condition, Object, ObjectRef, kinds};
use serde_json::{Value, json};
use store::{
    Informer, Store,
    reconcile::{Outcome, Reconcile, Runner},
};
use tokio_util::sync::CancellationToken;

pub const NAMESPACE: &str = "kube-system";
/// The agent pods' label, as Cilium's DaemonSet sets it.
pub const AGENT_LABEL: (&str, &str) = ("k8s-app", "cilium");
/// The operator pod's label, as Cilium's Deployment sets it.
pub const OPERATOR_LABEL: (&str, &str) = ("io.cilium/app", "operator");
/// Marks the Pods this module owns (and may delete), and tells pod runtimes not to run them.
const MIRROR_ANNOTATION: &str = api::types::MIRROR_ANNOTATION;
const RESYNC: Duration = Duration::from_secs(5);

/// Kubernetes' name alphabet (no vowels, no look-alikes).
const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";

fn fnv1a64(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3))
}

/// `n` characters of [`ALPHABET`] derived from `seed`.
fn suffix(seed: &str, n: usize) -> String {
    let mut h = fnv1a64(seed);
    (0..n)
        .map(|_| {
            let c = ALPHABET[(h % ALPHABET.len() as u64) as usize] as char;
            h /= ALPHABET.len() as u64;
            c
        })
        .collect()
}

/// `cilium-<5 characters>`: the agent pod of `node`.
pub fn agent_pod_name(node: &str) -> String {
    format!("cilium-{}", suffix(node, 5))
}

/// `cilium-operator-<10>-<5>`: the operator pod of `identity`.
pub fn operator_pod_name(identity: &str) -> String {
    format!(
        "cilium-operator-{}-{}",
        suffix(&format!("template/{identity}"), 10),
        suffix(&format!("operator/{identity}"), 5)
    )
}

fn node_ready(node: &Object) -> Option<Condition> {
    let conditions: Vec<Condition> =
        node.lookup_path("status.conditions").and_then(|c| serde_json::from_value(c).ok()).unwrap_or_default();
    Condition::find(&conditions, "Ready").cloned()
}

/// `status` of an agent pod from its node's `Ready` condition.
fn agent_status(node: &Object) -> Value {
    let ip = node.node_internal_ipv4().map(|ip| ip.to_string());
    let ready = node_ready(node);
    let (phase, reason, ready_status) = match ready.as_ref().map(|c| c.status.as_str()) {
        Some("True") => ("Running", None, "True"),
        Some("Unknown") => ("Unknown", Some("NodeLost"), "False"),
        _ => ("Pending", None, "False"),
    };
    let mut status = json!({
        "phase": phase,
        "conditions": [{"type": "Ready", "status": ready_status}],
    });
    if let Some(reason) = reason {
        status["reason"] = json!(reason);
        status["message"] = json!(format!("Node {} which was running pod cilium is unresponsive", node.name()));
    }
    if let Some(ip) = ip {
        status["hostIP"] = json!(ip);
        status["podIP"] = json!(ip);
        status["podIPs"] = json!([{"ip": ip}]);
    }
    status
}

fn mirror_pod(name: &str, node: &str, labels: &[(&str, &str)], container: (&str, &str), mirror_of: &str) -> Object {
    let mut pod = Object::new(&kinds::POD, Some(NAMESPACE), name);
    pod.metadata.labels = labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    pod.metadata.annotations.insert(MIRROR_ANNOTATION.into(), mirror_of.into());
    pod.body.insert(
        "spec".into(),
        json!({
            "nodeName": node,
            "hostNetwork": true,
            "containers": [{"name": container.0, "image": container.1}],
        }),
    );
    pod
}

/// The agent pod `node` should have.
pub fn desired_agent_pod(node: &Object) -> Object {
    let mut pod = mirror_pod(
        &agent_pod_name(node.name()),
        node.name(),
        &[AGENT_LABEL, ("app.kubernetes.io/name", "cilium-agent"), ("app.kubernetes.io/part-of", "cilium")],
        ("cilium-agent", "quay.io/cilium/cilium:v1.18.0"),
        &format!("agent/{}", node.name()),
    );
    pod.body.insert("status".into(), agent_status(node));
    pod
}

/// The operator pod of `identity` (running on the node of that name, if any).
pub fn desired_operator_pod(identity: &str, node: Option<&Object>) -> Object {
    let mut pod = mirror_pod(
        &operator_pod_name(identity),
        identity,
        &[OPERATOR_LABEL, ("name", "cilium-operator"), ("app.kubernetes.io/part-of", "cilium")],
        ("cilium-operator", "quay.io/cilium/operator-generic:v1.18.0"),
        &format!("operator/{identity}"),
    );
    let mut status = json!({"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}]});
    if let Some(ip) = node.and_then(Object::node_internal_ipv4) {
        status["hostIP"] = json!(ip.to_string());
        status["podIP"] = json!(ip.to_string());
        status["podIPs"] = json!([{"ip": ip.to_string()}]);
    }
    pod.body.insert("status".into(), status);
    pod
}

/// Whether `current` already carries what `desired` says (labels, spec, status).
fn up_to_date(current: &Object, desired: &Object) -> bool {
    current.metadata.labels == desired.metadata.labels
        && current.body.get("spec") == desired.body.get("spec")
        && current.body.get("status") == desired.body.get("status")
}

/// The Nodes, the mirror Pods, and the operator's own identity.
struct CiliumPods {
    store: Arc<dyn Store>,
    nodes: Arc<Informer>,
    pods: Informer,
    identity: String,
}

impl Reconcile for CiliumPods {
    type Error = Infallible;

    /// Failures wait for the next resync, which comes soon anyway.
    async fn pass(&mut self) -> std::result::Result<Outcome, Infallible> {
        let result =
            reconcile(self.store.as_ref(), &self.nodes.snapshot(), &self.pods.snapshot(), &self.identity).await;
        if let Err(e) = result {
            tracing::warn!(error = &e as &dyn std::error::Error, "cannot write the agent and operator pods; retrying");
        }
        Ok(Outcome::RequeueAfter(RESYNC))
    }
}

pub async fn run(
    store: Arc<dyn Store>,
    nodes: Arc<Informer>,
    identity: String,
    shutdown: CancellationToken,
) -> Result<()> {
    let pods = Informer::start(store.clone(), &kinds::POD, Some(NAMESPACE));
    let runner = Runner::new("cilium-pods").watch(&nodes).watch(&pods);
    runner.run_until_cancelled(CiliumPods { store, nodes, pods, identity }, shutdown).await;
    Ok(())
}

async fn reconcile(store: &dyn Store, nodes: &[Object], pods: &[Object], identity: &str) -> Result<()> {
    let mut desired: BTreeMap<String, Object> =
        nodes.iter().map(desired_agent_pod).map(|p| (p.name().to_string(), p)).collect();
    let op = desired_operator_pod(identity, nodes.iter().find(|n| n.name() == identity));
    desired.insert(op.name().to_string(), op);
    let current: BTreeMap<&str, &Object> =
        pods.iter().filter(|p| p.metadata.annotations.contains_key(MIRROR_ANNOTATION)).map(|p| (p.name(), p)).collect();
    for (name, want) in &desired {
        match current.get(name.as_str()) {
            None => match store.create(want.clone()).await {
                Ok(_) | Err(store::Error::AlreadyExists(_)) => {}
                Err(source) => {
                    return Err(OperatorError::Write {
                        action: "creating pod",
                        object: format!("{NAMESPACE}/{name}"),
                        source: Box::new(source),
                    });
                }
            },
            Some(cur) if up_to_date(cur, want) => {}
            Some(_) => {
                let target = ObjectRef::new(&kinds::POD, Some(NAMESPACE), name);
                crate::status::write(store, &target, |obj| {
                    if up_to_date(obj, want) {
                        return Ok(false);
                    }
                    obj.metadata.labels = want.metadata.labels.clone();
                    for key in ["spec", "status"] {
                        if let Some(v) = want.body.get(key) {
                            obj.body.insert(key.into(), v.clone());
                        }
                    }
                    Ok(true)
                })
                .await?;
            }
        }
    }
    for (name, _) in current.iter().filter(|(n, _)| !desired.contains_key(**n)) {
        let target = ObjectRef::new(&kinds::POD, Some(NAMESPACE), name);
        match store.delete(&target, None).await {
            Ok(_) | Err(store::Error::NotFound(_)) => {}
            Err(source) => {
                return Err(OperatorError::Write {
                    action: "deleting pod",
                    object: format!("{NAMESPACE}/{name}"),
                    source: Box::new(source),
                });
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(name: &str, ready: &str) -> Object {
        let mut n = Object::new(&kinds::NODE, None, name);
        n.body.insert(
            "status".into(),
            json!({"conditions": [{"type": "Ready", "status": ready, "reason": "x"}],
                   "addresses": [{"type": "InternalIP", "address": "192.168.10.100"}]}),
        );
        n
    }

    #[test]
    fn names_look_like_ciliums_and_stay_the_same() {
        let a = agent_pod_name("k8s-ctr");
        assert_eq!(a, agent_pod_name("k8s-ctr"));
        assert_ne!(a, agent_pod_name("k8s-w1"));
        assert!(a.starts_with("cilium-") && a.len() == "cilium-".len() + 5, "{a}");
        let o = operator_pod_name("k8s-ctr");
        assert!(o.starts_with("cilium-operator-") && o.len() == "cilium-operator-".len() + 10 + 1 + 5, "{o}");
    }

    #[test]
    fn agent_pod_follows_the_node() {
        let running = desired_agent_pod(&node("k8s-ctr", "True"));
        let pod: api::types::Pod = running.to_typed().unwrap();
        assert_eq!(pod.metadata.namespace.as_deref(), Some("kube-system"));
        assert_eq!(pod.metadata.labels.get("k8s-app").map(String::as_str), Some("cilium"));
        assert_eq!(pod.spec.node_name.as_deref(), Some("k8s-ctr"));
        assert_eq!(pod.spec.host_network, Some(true));
        assert!(pod.is_mirror(), "pod runtimes leave it alone");
        assert_eq!(pod.status.phase.as_deref(), Some("Running"));
        assert!(pod.is_ready());
        assert_eq!(pod.status.pod_ip.as_deref(), Some("192.168.10.100"));
        let lost: api::types::Pod = desired_agent_pod(&node("k8s-ctr", "Unknown")).to_typed().unwrap();
        assert_eq!((lost.status.phase.as_deref(), lost.status.reason.as_deref()), (Some("Unknown"), Some("NodeLost")));
        assert!(!lost.is_ready());
        let stopped: api::types::Pod = desired_agent_pod(&node("k8s-ctr", "False")).to_typed().unwrap();
        assert_eq!(stopped.status.phase.as_deref(), Some("Pending"));
        assert!(!up_to_date(&running, &desired_agent_pod(&node("k8s-ctr", "False"))));
        assert!(up_to_date(&running, &desired_agent_pod(&node("k8s-ctr", "True"))));
    }
}
