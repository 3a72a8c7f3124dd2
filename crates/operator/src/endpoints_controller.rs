//! EndpointSlices for Services with a selector, as Kubernetes' EndpointSlice controller writes
//! them: every pod the selector matches that has an address is an endpoint, with its readiness
//! (`ready`, `serving`, `terminating`), its node and a reference to it; the slice's ports are the
//! Service's ports with `targetPort` resolved, by number or by the pods' container port names.
//! Pods that resolve a named port differently land in different slices, one per distinct port
//! mapping. A Service that is deleted or loses its selector loses its slices.
//!
//! Pods on a lost node (`Ready=Unknown`: its agent's membership lapsed, [`crate::node_lifecycle`])
//! are endpoints that are neither ready nor serving, as Kubernetes marks the pods of such a node
//! not ready: traffic stops going to a machine that died.
//!
//! Slices are named `<service>-<5 characters>` like Kubernetes' generated names, but the
//! characters come from a hash of the Service's uid and the port mapping: writing the same slice
//! twice (a retry, a watch cache that lags behind the controller's own write) then meets the
//! existing object instead of making a duplicate.

use std::{
    collections::{BTreeMap, BTreeSet},
    convert::Infallible,
    sync::Arc,
};

use crate::error::Result;
use api::{
    Object, ObjectRef, OwnerReference, kinds,
    types::{Endpoint, EndpointConditions, EndpointPort, IntOrString, Pod, Service, ServicePort},
};
use serde_json::json;
use store::{
    Change, Informer, Store,
    reconcile::{Enqueue, Outcome, ReconcileKey, Runner},
};
use tokio_util::sync::CancellationToken;

/// The manager Kubernetes' own controller writes; cilia stands in for it.
pub const MANAGED_BY: &str = "endpointslice-controller.k8s.io";

/// A Service's namespace and name: the slices of one Service are one piece of work.
type Key = (String, String);

pub async fn run(
    store: Arc<dyn Store>,
    services: Arc<Informer>,
    pods: Arc<Informer>,
    slices: Arc<Informer>,
    nodes: Arc<Informer>,
    shutdown: CancellationToken,
) -> Result<()> {
    let runner = Runner::keyed("endpoints")
        .watch_changes(&services, |_, change| match change {
            Change::Resync(_) => Enqueue::All,
            Change::Event(ev) => Enqueue::Keys(vec![key(&ev.object)]),
        })
        // A pod's old labels are not in its event, so every Service of its namespace is looked
        // at again: cheap at the lab's scale, and never misses a pod that left.
        .watch_changes(&pods, |ctl: &mut EndpointSlices, change| match change {
            Change::Resync(_) => Enqueue::All,
            Change::Event(ev) => {
                let ns = ev.object.namespace().unwrap_or_default();
                Enqueue::Keys(ctl.services.snapshot().iter().filter(|s| s.namespace() == Some(ns)).map(key).collect())
            }
        })
        .watch_changes(&slices, |_, change| match change {
            Change::Resync(_) => Enqueue::All,
            Change::Event(ev) => Enqueue::Keys(service_of_slice(&ev.object).into_iter().collect()),
        })
        // Losing or getting back a node changes the readiness of its pods in every slice.
        .watch_changes(&nodes, |ctl: &mut EndpointSlices, _| {
            let now = lost_nodes(&ctl.nodes);
            if now == ctl.lost {
                return Enqueue::Nothing;
            }
            ctl.lost = now;
            Enqueue::All
        });
    let state = EndpointSlices { store, services, pods, slices, nodes, lost: BTreeSet::new() };
    runner.run_until_cancelled(state, shutdown).await;
    Ok(())
}

/// The controller's view: the informers, and the lost nodes as last seen.
struct EndpointSlices {
    store: Arc<dyn Store>,
    services: Arc<Informer>,
    pods: Arc<Informer>,
    slices: Arc<Informer>,
    nodes: Arc<Informer>,
    lost: BTreeSet<String>,
}

impl ReconcileKey for EndpointSlices {
    type Key = Key;
    type Error = Infallible;

    async fn reconcile(&mut self, k: &Key) -> std::result::Result<Outcome, Infallible> {
        match reconcile(self.store.as_ref(), &self.services, &self.pods, &self.slices, &self.lost, k).await {
            Ok(()) => Ok(Outcome::Done),
            Err(e) => {
                tracing::warn!(service = %format!("{}/{}", k.0, k.1), error = %api::error::Chain(&e), "writing EndpointSlices; will retry");
                Ok(Outcome::Retry)
            }
        }
    }

    /// Every Service, and every Service that still has slices (deleted ones lose them).
    fn all_keys(&self) -> Vec<Key> {
        let mut keys: BTreeSet<Key> = self.services.snapshot().iter().map(key).collect();
        keys.extend(self.slices.snapshot().iter().filter_map(service_of_slice));
        keys.into_iter().collect()
    }
}

/// The Service a slice belongs to, by its `kubernetes.io/service-name` label.
fn service_of_slice(slice: &Object) -> Option<Key> {
    Some((slice.namespace()?.to_string(), slice.metadata.labels.get(api::labels::SERVICE_NAME)?.clone()))
}

/// Nodes whose pods are no endpoints (see [`crate::node_lifecycle`]).
fn lost_nodes(nodes: &Informer) -> BTreeSet<String> {
    nodes.snapshot().iter().filter(|n| crate::node_lifecycle::node_lost(n)).map(|n| n.name().to_string()).collect()
}

fn key(obj: &Object) -> Key {
    (obj.namespace().unwrap_or_default().to_string(), obj.name().to_string())
}

async fn reconcile(
    store: &dyn Store,
    services: &Informer,
    pods: &Informer,
    slices: &Informer,
    lost: &BTreeSet<String>,
    (ns, name): &Key,
) -> Result<()> {
    let existing: Vec<Object> = slices
        .snapshot()
        .into_iter()
        .filter(|s| s.namespace() == Some(ns.as_str()))
        .filter(|s| s.metadata.labels.get(api::labels::SERVICE_NAME) == Some(name))
        .filter(|s| {
            s.metadata.labels.get(api::labels::ENDPOINT_SLICE_MANAGED_BY).map(String::as_str) == Some(MANAGED_BY)
        })
        .collect();
    let service: Option<Service> = services.get(Some(ns), name).and_then(|o| o.to_typed().ok());
    let wanted = match &service {
        Some(svc) if svc.spec.selector.is_some() && svc.type_() != "ExternalName" => {
            let pods: Vec<Pod> = pods
                .snapshot()
                .iter()
                .filter(|p| p.namespace() == Some(ns.as_str()))
                .filter_map(|p| p.to_typed().ok())
                .collect();
            desired_slices(svc, &pods, lost)
        }
        _ => Vec::new(),
    };
    let mut kept: BTreeSet<String> = BTreeSet::new();
    for slice in wanted {
        let target = ObjectRef::new(&kinds::ENDPOINT_SLICE, Some(ns), &slice.metadata.name);
        kept.insert(slice.metadata.name.clone());
        let unchanged = existing.iter().any(|e| e.metadata.name == slice.metadata.name && same_content(e, &slice));
        if unchanged {
            continue;
        }
        match store.create(slice.clone()).await {
            Ok(_) => {}
            Err(store::Error::AlreadyExists(_)) => {
                store::update_with_retry(store, &target, |obj| {
                    let before = obj.clone();
                    obj.metadata.labels = slice.metadata.labels.clone();
                    obj.metadata.owner_references = slice.metadata.owner_references.clone();
                    obj.body = slice.body.clone();
                    Ok(*obj != before)
                })
                .await?;
            }
            Err(e) => return Err(e.into()),
        }
    }
    for stale in existing.iter().filter(|e| !kept.contains(&e.metadata.name)) {
        if let Some(r) = stale.object_ref() {
            store.delete(&r, None).await?;
        }
    }
    Ok(())
}

fn same_content(a: &Object, b: &Object) -> bool {
    a.body == b.body
        && a.metadata.labels == b.metadata.labels
        && a.metadata.owner_references == b.metadata.owner_references
}

/// The slices `svc` should have, complete objects named deterministically. Pods on `lost` nodes
/// are neither ready nor serving.
pub fn desired_slices(svc: &Service, pods: &[Pod], lost: &BTreeSet<String>) -> Vec<Object> {
    let selector: BTreeMap<String, String> = svc.spec.selector.clone().unwrap_or_default();
    let publish_not_ready = svc.spec.publish_not_ready_addresses == Some(true);
    // Keyed by the ports' JSON: one slice per distinct port mapping, in a stable order.
    let mut groups: BTreeMap<String, (Vec<EndpointPort>, Vec<Endpoint>)> = BTreeMap::new();
    let mut matching: Vec<&Pod> = pods
        .iter()
        .filter(|p| selector.iter().all(|(k, v)| p.metadata.labels.get(k) == Some(v)))
        .filter(|p| !matches!(p.status.phase.as_deref(), Some("Succeeded") | Some("Failed")))
        .filter(|p| p.status.pod_ip.as_deref().is_some_and(|ip| !ip.is_empty()))
        .collect();
    matching.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
    for pod in matching {
        let ports: Vec<EndpointPort> = svc.spec.ports.iter().filter_map(|p| resolve_port(p, pod)).collect();
        let terminating = pod.metadata.deletion_timestamp.is_some();
        let on_lost_node = pod.spec.node_name.as_ref().is_some_and(|n| lost.contains(n));
        let ready = (pod.is_ready() || publish_not_ready) && !on_lost_node;
        let endpoint = Endpoint {
            addresses: vec![pod.status.pod_ip.clone().unwrap_or_default()],
            conditions: EndpointConditions {
                ready: Some(ready && !terminating),
                serving: Some(ready),
                terminating: Some(terminating),
            },
            node_name: pod.spec.node_name.clone(),
            target_ref: Some(json!({
                "kind": "Pod",
                "namespace": pod.metadata.namespace.as_deref().unwrap_or("default"),
                "name": pod.metadata.name,
                "uid": pod.metadata.uid.as_deref().unwrap_or_default(),
            })),
            ..Default::default()
        };
        let key = serde_json::to_string(&ports).expect("ports always serialize");
        groups.entry(key).or_insert_with(|| (ports, Vec::new())).1.push(endpoint);
    }
    if groups.is_empty() {
        // Kubernetes keeps one empty slice for a Service without endpoints.
        groups.insert(String::new(), (Vec::new(), Vec::new()));
    }
    groups.into_values().map(|(ports, endpoints)| slice_object(svc, ports, endpoints)).collect()
}

/// The port a pod serves `port` on: `targetPort` as a number, or the pod's container port of
/// that name (and protocol); no `targetPort` means the Service's port. None when a name does not
/// resolve on this pod.
fn resolve_port(port: &ServicePort, pod: &Pod) -> Option<EndpointPort> {
    let number = match &port.target_port {
        None => port.port,
        Some(IntOrString::Int(n)) => *n,
        Some(IntOrString::String(s)) => match s.parse::<i64>() {
            Ok(n) => n,
            Err(_) => pod
                .spec
                .containers
                .iter()
                .flat_map(|c| &c.ports)
                .find(|cp| cp.name.as_deref() == Some(s) && cp.protocol.as_deref().unwrap_or("TCP") == port.protocol())
                .map(|cp| cp.container_port)?,
        },
    };
    Some(EndpointPort {
        name: Some(port.name.clone().unwrap_or_default()),
        port: Some(number),
        protocol: Some(port.protocol().to_string()),
        app_protocol: port.app_protocol.clone(),
    })
}

fn slice_object(svc: &Service, ports: Vec<EndpointPort>, endpoints: Vec<Endpoint>) -> Object {
    let ns = svc.metadata.namespace.as_deref().unwrap_or("default");
    let uid = svc.metadata.uid.clone().unwrap_or_default();
    let ports_json = serde_json::to_string(&ports).expect("ports always serialize");
    let mut base: String = svc.metadata.name.chars().take(57).collect();
    base.push('-');
    let name = format!("{base}{}", suffix(&format!("{uid}/{ports_json}")));
    let mut obj = Object::new(&kinds::ENDPOINT_SLICE, Some(ns), &name);
    obj.metadata.labels = svc.metadata.labels.clone();
    obj.metadata.labels.insert(api::labels::SERVICE_NAME.into(), svc.metadata.name.clone());
    obj.metadata.labels.insert(api::labels::ENDPOINT_SLICE_MANAGED_BY.into(), MANAGED_BY.into());
    obj.metadata.owner_references = vec![OwnerReference {
        api_version: "v1".into(),
        kind: "Service".into(),
        name: svc.metadata.name.clone(),
        uid,
        controller: Some(true),
        block_owner_deletion: Some(true),
    }];
    obj.body.insert("addressType".into(), "IPv4".into());
    obj.body.insert("endpoints".into(), serde_json::to_value(endpoints).expect("endpoints always serialize"));
    obj.body.insert("ports".into(), serde_json::to_value(ports).expect("ports always serialize"));
    obj
}

/// Five characters of Kubernetes' name alphabet from a hash of `seed`.
fn suffix(seed: &str) -> String {
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for b in seed.bytes() {
        hash ^= u64::from(b);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    (0..5)
        .map(|_| {
            let c = ALPHABET[(hash % ALPHABET.len() as u64) as usize] as char;
            hash /= ALPHABET.len() as u64;
            c
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn service(target: serde_json::Value) -> Service {
        serde_json::from_value(json!({
            "apiVersion": "v1", "kind": "Service",
            "metadata": {"name": "webpod", "namespace": "default", "uid": "s-1", "labels": {"app": "webpod"}},
            "spec": {"selector": {"app": "webpod"}, "ports": [{"port": 80, "targetPort": target}]}
        }))
        .unwrap()
    }

    fn pod(name: &str, ip: Option<&str>, ready: bool, port_name: &str, port: i64) -> Pod {
        let mut p: Pod = serde_json::from_value(json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": "default", "uid": format!("u-{name}"), "labels": {"app": "webpod"}},
            "spec": {"nodeName": "k8s-w1", "containers": [{"name": "w", "image": "traefik/whoami",
                     "ports": [{"containerPort": port, "name": port_name}]}]},
            "status": {"phase": "Running"}
        }))
        .unwrap();
        p.status.pod_ip = ip.map(str::to_string);
        if ready {
            p.status.conditions.push(api::types::PodCondition {
                type_: "Ready".into(),
                status: "True".into(),
                ..Default::default()
            });
        }
        p
    }

    #[test]
    fn endpoints_carry_readiness_node_and_target() {
        let pods = [
            pod("a", Some("172.20.1.5"), true, "http", 80),
            pod("b", Some("172.20.2.5"), false, "http", 80),
            pod("c", None, true, "http", 80),
        ];
        let slices = desired_slices(&service(json!(80)), &pods, &BTreeSet::new());
        assert_eq!(slices.len(), 1);
        let s: api::types::EndpointSlice = slices[0].to_typed().unwrap();
        assert!(s.metadata.name.starts_with("webpod-") && s.metadata.name.len() == "webpod-".len() + 5);
        assert_eq!(s.metadata.labels[api::labels::SERVICE_NAME], "webpod");
        assert_eq!(s.metadata.labels[api::labels::ENDPOINT_SLICE_MANAGED_BY], MANAGED_BY);
        assert_eq!(s.metadata.owner_references[0].uid, "s-1");
        assert_eq!(s.address_type, "IPv4");
        assert_eq!(s.endpoints.len(), 2, "the pod without an address is left out");
        assert_eq!(s.endpoints[0].addresses, ["172.20.1.5"]);
        assert_eq!(s.endpoints[0].conditions.ready, Some(true));
        assert_eq!(s.endpoints[1].conditions.ready, Some(false));
        assert_eq!(s.endpoints[1].conditions.serving, Some(false));
        assert_eq!(s.endpoints[0].node_name.as_deref(), Some("k8s-w1"));
        assert_eq!(s.endpoints[0].target_ref.as_ref().unwrap()["name"], "a");
        assert_eq!(s.ports[0].port, Some(80));
        // Deterministic: the same inputs give the same name.
        assert_eq!(desired_slices(&service(json!(80)), &pods, &BTreeSet::new())[0].metadata.name, s.metadata.name);
    }

    #[test]
    fn named_target_ports_resolve_per_pod() {
        let pods = [pod("a", Some("172.20.1.5"), true, "web", 8080), pod("b", Some("172.20.1.6"), true, "web", 9090)];
        let slices = desired_slices(&service(json!("web")), &pods, &BTreeSet::new());
        let ports: BTreeSet<i64> =
            slices.iter().map(|s| s.to_typed::<api::types::EndpointSlice>().unwrap().ports[0].port.unwrap()).collect();
        assert_eq!(ports, BTreeSet::from([8080, 9090]), "one slice per port mapping");
        // A name no container has: the pod serves no port of the Service.
        let slices = desired_slices(&service(json!("nope")), &pods[..1], &BTreeSet::new());
        let s: api::types::EndpointSlice = slices[0].to_typed().unwrap();
        assert!(s.ports.is_empty());
    }

    #[test]
    fn pods_on_a_lost_node_are_neither_ready_nor_serving() {
        let pods = [pod("a", Some("172.20.1.5"), true, "http", 80)];
        let lost = BTreeSet::from(["k8s-w1".to_string()]);
        let s: api::types::EndpointSlice = desired_slices(&service(json!(80)), &pods, &lost)[0].to_typed().unwrap();
        let c = &s.endpoints[0].conditions;
        assert_eq!((c.ready, c.serving), (Some(false), Some(false)));
        let s: api::types::EndpointSlice =
            desired_slices(&service(json!(80)), &pods, &BTreeSet::new())[0].to_typed().unwrap();
        assert_eq!(s.endpoints[0].conditions.ready, Some(true), "back once the node is");
    }

    #[test]
    fn terminating_pods_are_serving_but_not_ready() {
        let mut p = pod("a", Some("172.20.1.5"), true, "http", 80);
        p.metadata.deletion_timestamp = Some("2026-01-01T00:00:00Z".into());
        let s: api::types::EndpointSlice =
            desired_slices(&service(json!(80)), &[p], &BTreeSet::new())[0].to_typed().unwrap();
        let c = &s.endpoints[0].conditions;
        assert_eq!((c.ready, c.serving, c.terminating), (Some(false), Some(true), Some(true)));
    }
}
