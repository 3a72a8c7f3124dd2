//! What L2 announcements need to know about a Service: its identity, labels, class, the addresses
//! that can be announced, and (for `externalTrafficPolicy: Local`) which nodes run a ready backend.

use std::{
    collections::{BTreeMap, BTreeSet},
    fmt,
    net::IpAddr,
};

use api::{
    Object,
    types::{EndpointSlice, Service},
};

/// Identifies a Service: `namespace/name`. Ordered by namespace, then name, so every agent walks
/// Services in the same order.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ServiceKey {
    /// The Service's namespace (`default` when the object carries none).
    pub namespace: String,
    /// The Service's name.
    pub name: String,
}

impl ServiceKey {
    /// A key from its two parts.
    pub fn new(namespace: impl Into<String>, name: impl Into<String>) -> Self {
        ServiceKey { namespace: namespace.into(), name: name.into() }
    }
}

impl fmt::Display for ServiceKey {
    /// `namespace/name`, as Cilium prints an origin.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

/// A Service reduced to what announcement decisions read.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ServiceInfo {
    /// Which Service.
    pub key: ServiceKey,
    /// `metadata.labels`, matched by policies' service selectors.
    pub labels: BTreeMap<String, String>,
    /// `spec.loadBalancerClass`.
    pub load_balancer_class: Option<String>,
    /// `status.loadBalancer.ingress[].ip`, parsed, deduplicated and sorted.
    pub lb_ips: Vec<IpAddr>,
    /// `spec.externalIPs`, parsed, deduplicated and sorted.
    pub external_ips: Vec<IpAddr>,
    /// `spec.externalTrafficPolicy == "Local"`: only a node with a local backend may announce.
    pub etp_local: bool,
    /// Nodes with at least one ready backend of this Service (see [`local_backend_nodes`]).
    pub local_backend_nodes: BTreeSet<String>,
}

/// Why a stored object is not read as a Service.
#[derive(Debug, thiserror::Error)]
#[error("{object} does not read as a Service")]
pub struct ServiceReadError {
    /// `namespace/name` of the object.
    pub object: String,
    /// The typed view's complaint.
    #[source]
    pub source: serde_json::Error,
}

impl ServiceInfo {
    /// Reads a stored Service object through the typed view. `local_backend_nodes` is left empty;
    /// fill it with [`fill_local_backends`].
    pub fn from_object(object: &Object) -> Result<Self, ServiceReadError> {
        let svc: Service = object.to_typed().map_err(|source| ServiceReadError {
            object: format!("{}/{}", object.namespace().unwrap_or("default"), object.name()),
            source,
        })?;
        Ok(Self::from_service(&svc))
    }

    /// Reads a typed Service.
    ///
    /// LoadBalancer ingress entries without an IP (hostname-only or empty) are skipped, as Cilium
    /// does; so are strings that do not parse and addresses no node can answer ARP/NDP for
    /// (unspecified, loopback, multicast, IPv4 broadcast), which the API refuses for externalIPs but
    /// which may have been stored around it.
    pub fn from_service(svc: &Service) -> Self {
        let key = ServiceKey::new(
            svc.metadata.namespace.clone().unwrap_or_else(|| "default".into()),
            svc.metadata.name.clone(),
        );
        let lb_ips = announceable(svc.status.load_balancer.ingress.iter().filter_map(|i| i.ip.as_deref()));
        let external_ips = announceable(svc.spec.external_ips.iter().map(String::as_str));
        ServiceInfo {
            key,
            labels: svc.metadata.labels.clone(),
            load_balancer_class: svc.spec.load_balancer_class.clone(),
            lb_ips,
            external_ips,
            etp_local: svc.spec.external_traffic_policy.as_deref() == Some("Local"),
            local_backend_nodes: BTreeSet::new(),
        }
    }

    /// Every address of the Service, LoadBalancer and external, sorted and deduplicated.
    pub fn all_ips(&self) -> BTreeSet<IpAddr> {
        self.lb_ips.iter().chain(&self.external_ips).copied().collect()
    }
}

/// Parses, filters, sorts and deduplicates addresses.
fn announceable<'a>(raw: impl Iterator<Item = &'a str>) -> Vec<IpAddr> {
    let set: BTreeSet<IpAddr> =
        raw.filter(|s| !s.is_empty()).filter_map(|s| s.trim().parse().ok()).filter(is_announceable).collect();
    set.into_iter().collect()
}

/// Whether a node could answer ARP/NDP for `ip` at all.
fn is_announceable(ip: &IpAddr) -> bool {
    let broadcast = matches!(ip, IpAddr::V4(v4) if v4.is_broadcast());
    !(ip.is_unspecified() || ip.is_loopback() || ip.is_multicast() || broadcast)
}

/// The nodes with a ready backend, per Service, from EndpointSlices: the slice names its Service by
/// the `kubernetes.io/service-name` label (same namespace), and an endpoint counts when it has a
/// `nodeName` and its `conditions.ready` is not false (Kubernetes reads an unset `ready` as ready).
/// Slices of every address type count: a node serving IPv6 backends serves the Service too.
pub fn local_backend_nodes(slices: &[EndpointSlice]) -> BTreeMap<ServiceKey, BTreeSet<String>> {
    let mut out: BTreeMap<ServiceKey, BTreeSet<String>> = BTreeMap::new();
    for slice in slices {
        let Some(service) = slice.metadata.labels.get(api::labels::SERVICE_NAME) else { continue };
        let namespace = slice.metadata.namespace.clone().unwrap_or_else(|| "default".into());
        let nodes = out.entry(ServiceKey::new(namespace, service.clone())).or_default();
        for endpoint in &slice.endpoints {
            if endpoint.conditions.ready == Some(false) {
                continue;
            }
            if let Some(node) = endpoint.node_name.as_ref().filter(|n| !n.is_empty()) {
                nodes.insert(node.clone());
            }
        }
    }
    out
}

/// [`fill_local_backends`] from stored EndpointSlice objects; objects that do not read as an
/// EndpointSlice are skipped (one odd object must not stop announcements).
pub fn fill_local_backends_from_objects(services: &mut [ServiceInfo], slices: &[Object]) {
    let typed: Vec<EndpointSlice> = slices.iter().filter_map(|o| o.to_typed().ok()).collect();
    fill_local_backends(services, &typed);
}

/// Sets every Service's `local_backend_nodes` from the slices (replacing what was there), in one
/// pass over the slices.
pub fn fill_local_backends(services: &mut [ServiceInfo], slices: &[EndpointSlice]) {
    let mut by_service = local_backend_nodes(slices);
    for svc in services {
        svc.local_backend_nodes = by_service.remove(&svc.key).unwrap_or_default();
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn service(body: serde_json::Value) -> Object {
        let mut obj = Object::new(&api::kinds::SERVICE, Some("shop"), "web");
        obj.metadata.labels.insert("app".into(), "web".into());
        for (k, v) in body.as_object().unwrap() {
            obj.body.insert(k.clone(), v.clone());
        }
        obj
    }

    #[test]
    fn reads_ips_class_and_traffic_policy() {
        let obj = service(json!({
            "spec": {
                "type": "LoadBalancer",
                "externalIPs": ["10.0.0.9", "bogus", "10.0.0.8", "10.0.0.9", "0.0.0.0"],
                "externalTrafficPolicy": "Local",
                "loadBalancerClass": "io.cilium/l2-announcer"
            },
            "status": {"loadBalancer": {"ingress": [
                {"ip": "192.168.10.5"}, {"hostname": "lb.example.com"}, {"ip": ""}, {"ip": "fd00::5"},
                {"ip": "not-an-ip"}, {"ip": "127.0.0.1"}
            ]}}
        }));
        let info = ServiceInfo::from_object(&obj).unwrap();
        assert_eq!(info.key.to_string(), "shop/web");
        assert_eq!(info.labels.get("app").map(String::as_str), Some("web"));
        assert_eq!(info.lb_ips, vec!["192.168.10.5".parse::<IpAddr>().unwrap(), "fd00::5".parse().unwrap()]);
        assert_eq!(info.external_ips, vec!["10.0.0.8".parse::<IpAddr>().unwrap(), "10.0.0.9".parse().unwrap()]);
        assert!(info.etp_local);
        assert_eq!(info.load_balancer_class.as_deref(), Some("io.cilium/l2-announcer"));
        assert_eq!(info.all_ips().len(), 4);
    }

    #[test]
    fn defaults_and_cluster_policy() {
        let info = ServiceInfo::from_object(&service(json!({"spec": {"externalTrafficPolicy": "Cluster"}}))).unwrap();
        assert!(!info.etp_local);
        assert!(info.lb_ips.is_empty() && info.external_ips.is_empty());
        assert_eq!(info.load_balancer_class, None);
    }

    #[test]
    fn an_object_that_is_no_service_is_an_error() {
        let obj = service(json!({"spec": {"ports": "eighty"}}));
        let err = ServiceInfo::from_object(&obj).unwrap_err();
        assert!(err.to_string().starts_with("shop/web does not read as a Service"), "{err}");
    }

    #[test]
    fn ready_backends_per_node() {
        let slice = |ns: &str, svc: Option<&str>, endpoints: serde_json::Value| -> EndpointSlice {
            let mut labels = serde_json::Map::new();
            if let Some(svc) = svc {
                labels.insert(api::labels::SERVICE_NAME.into(), json!(svc));
            }
            serde_json::from_value(json!({
                "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
                "metadata": {"name": "s", "namespace": ns, "labels": labels},
                "addressType": "IPv4", "endpoints": endpoints
            }))
            .unwrap()
        };
        let slices = vec![
            slice(
                "shop",
                Some("web"),
                json!([
                    {"addresses": ["10.1.0.1"], "nodeName": "w0", "conditions": {"ready": true}},
                    {"addresses": ["10.1.0.2"], "nodeName": "w1"},
                    {"addresses": ["10.1.0.3"], "nodeName": "w2", "conditions": {"ready": false}},
                    {"addresses": ["10.1.0.4"]}
                ]),
            ),
            slice("shop", Some("web"), json!([{"addresses": ["10.1.0.5"], "nodeName": "w3"}])),
            slice("other", Some("web"), json!([{"addresses": ["10.1.0.6"], "nodeName": "w4"}])),
            slice("shop", None, json!([{"addresses": ["10.1.0.7"], "nodeName": "w5"}])),
        ];
        let mut services = vec![
            ServiceInfo { key: ServiceKey::new("shop", "web"), ..Default::default() },
            ServiceInfo {
                key: ServiceKey::new("shop", "gone"),
                local_backend_nodes: ["stale".to_string()].into(),
                ..Default::default()
            },
        ];
        fill_local_backends(&mut services, &slices);
        let names = |s: &ServiceInfo| s.local_backend_nodes.iter().cloned().collect::<Vec<_>>();
        assert_eq!(names(&services[0]), ["w0", "w1", "w3"]);
        assert!(services[1].local_backend_nodes.is_empty());
    }

    #[test]
    fn keys_order_by_namespace_then_name() {
        let mut keys = [ServiceKey::new("b", "a"), ServiceKey::new("a", "z"), ServiceKey::new("a", "b")];
        keys.sort();
        assert_eq!(keys.map(|k| k.to_string()), ["a/b", "a/z", "b/a"]);
    }
}
