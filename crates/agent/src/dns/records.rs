//! What the cluster zone holds, built from Services, EndpointSlices and Pods: one entry per
//! Service (its cluster IPs, its ready endpoints when headless, or its ExternalName), the named
//! ports for SRV, and the reverse (PTR) names of cluster IPs, headless endpoints and pod IPs.
//!
//! Everything is keyed in lowercase: names are compared without regard to case (the spec, §2.1).

use std::{
    collections::{BTreeMap, HashMap, HashSet},
    net::{IpAddr, Ipv4Addr},
};

use api::types::{EndpointSlice, Pod, Service};
use hickory_proto::rr::Name;

use super::CLUSTER_DOMAIN;

/// The pre-`publishNotReadyAddresses` annotation the spec still names (§2.1, _ready_).
pub const TOLERATE_UNREADY: &str = "service.alpha.kubernetes.io/tolerate-unready-endpoints";

/// A named port of a Service (SRV records); unnamed ports have none (§2.3.2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NamedPort {
    /// Lowercase, as queried: `http` in `_http._tcp.<svc>...`.
    pub name: String,
    /// Lowercase protocol: `tcp`, `udp`, `sctp`.
    pub protocol: String,
    pub port: u16,
}

/// A ready endpoint of a headless Service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EndpointRecord {
    /// The spec's _hostname_: the pod's `hostname` when its `subdomain` is the Service, else the
    /// endpoint's `hostname`, else the address with dashes (`10-244-1-5`), which is unique per
    /// endpoint, as CoreDNS makes it.
    pub hostname: String,
    pub ips: Vec<IpAddr>,
    /// The named ports of the endpoint's slice: the port the pod serves, which is what a client
    /// of a headless Service connects to.
    pub ports: Vec<NamedPort>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServiceKind {
    /// A Service with cluster IPs (none yet while the operator has not allocated one).
    ClusterIp(Vec<IpAddr>),
    /// `clusterIP: None`: its ready endpoints, sorted by hostname.
    Headless(Vec<EndpointRecord>),
    /// `type: ExternalName`: a CNAME to this (absolute) name.
    ExternalName(Name),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceRecord {
    pub kind: ServiceKind,
    /// The Service's named ports.
    pub ports: Vec<NamedPort>,
}

/// The names the server knows. `serial` is the zone's SOA serial: it grows with every change.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Records {
    pub(crate) services: HashMap<(String, String), ServiceRecord>,
    pub(crate) namespaces: HashSet<String>,
    pub(crate) ptr: HashMap<IpAddr, Name>,
    pub serial: u32,
    /// Built from the cluster (false only for the empty stand-in before the first build): a
    /// server never answers from the stand-in, whose every name would be NXDOMAIN.
    pub built: bool,
}

impl Records {
    /// Only Services: no endpoints (headless Services without endpoints are NXDOMAIN), no pods.
    pub fn from_services(services: &[Service]) -> Records {
        Records::build(services, &[], &[])
    }

    pub fn build(services: &[Service], slices: &[EndpointSlice], pods: &[Pod]) -> Records {
        let mut r = Records { built: true, ..Records::default() };
        // Pods by (namespace, name): their hostname and subdomain, for headless endpoints.
        let mut pod_names: HashMap<(&str, &str), (&str, &str)> = HashMap::new();
        for pod in pods {
            let ns = pod.metadata.namespace.as_deref().unwrap_or("default");
            if let (Some(h), Some(s)) = (pod.spec.hostname.as_deref(), pod.spec.subdomain.as_deref()) {
                pod_names.insert((ns, pod.metadata.name.as_str()), (h, s));
            }
        }
        // Slices by (namespace, service).
        let mut slices_of: HashMap<(String, String), Vec<&EndpointSlice>> = HashMap::new();
        for s in slices {
            if let Some(svc) = s.metadata.labels.get(api::labels::SERVICE_NAME) {
                let ns = s.metadata.namespace.clone().unwrap_or_else(|| "default".into());
                slices_of.entry((ns, svc.clone())).or_default().push(s);
            }
        }
        // Sorted, so that a PTR claimed twice goes to the same name on every node.
        let mut sorted: Vec<&Service> = services.iter().collect();
        sorted
            .sort_by(|a, b| (&a.metadata.namespace, &a.metadata.name).cmp(&(&b.metadata.namespace, &b.metadata.name)));
        for svc in sorted {
            let ns = svc.metadata.namespace.clone().unwrap_or_else(|| "default".into()).to_ascii_lowercase();
            let name = svc.metadata.name.to_ascii_lowercase();
            let fqdn = service_fqdn(&name, &ns);
            let ports = svc
                .spec
                .ports
                .iter()
                .filter_map(|p| named_port(p.name.as_deref(), p.protocol(), Some(p.port)))
                .collect();
            let kind = if svc.type_() == "ExternalName" {
                let Some(target) = svc.spec.external_name.as_deref().and_then(absolute_name) else { continue };
                ServiceKind::ExternalName(target)
            } else if svc.spec.cluster_ip.as_deref() == Some("None") {
                let tolerate = svc.metadata.annotations.get(TOLERATE_UNREADY).is_some_and(|v| v == "true");
                let key =
                    (svc.metadata.namespace.clone().unwrap_or_else(|| "default".into()), svc.metadata.name.clone());
                let mut eps: BTreeMap<String, EndpointRecord> = BTreeMap::new();
                for slice in slices_of.get(&key).map(Vec::as_slice).unwrap_or_default() {
                    if slice.address_type != "IPv4" && slice.address_type != "IPv6" {
                        continue;
                    }
                    let ports: Vec<NamedPort> = slice
                        .ports
                        .iter()
                        .filter_map(|p| named_port(p.name.as_deref(), p.protocol.as_deref().unwrap_or("TCP"), p.port))
                        .collect();
                    for ep in &slice.endpoints {
                        // A missing condition means ready (discovery.k8s.io/v1).
                        if ep.conditions.ready == Some(false) && !tolerate {
                            continue;
                        }
                        let ips: Vec<IpAddr> = ep.addresses.iter().filter_map(|a| a.parse().ok()).collect();
                        let Some(first) = ips.first() else { continue };
                        let from_pod = ep
                            .target_ref
                            .as_ref()
                            .filter(|t| t.get("kind").and_then(|k| k.as_str()) == Some("Pod"))
                            .and_then(|t| {
                                let pod_ns = t.get("namespace").and_then(|v| v.as_str()).unwrap_or(&key.0);
                                pod_names.get(&(pod_ns, t.get("name")?.as_str()?))
                            })
                            .filter(|(_, sub)| sub.eq_ignore_ascii_case(&name))
                            .map(|(h, _)| *h);
                        let hostname = from_pod
                            .or(ep.hostname.as_deref())
                            .map(str::to_ascii_lowercase)
                            .unwrap_or_else(|| dashed(*first));
                        let entry = eps.entry(hostname.clone()).or_insert_with(|| EndpointRecord {
                            hostname,
                            ips: Vec::new(),
                            ports: ports.clone(),
                        });
                        for ip in ips {
                            if !entry.ips.contains(&ip) {
                                entry.ips.push(ip);
                            }
                        }
                    }
                }
                for ep in eps.values() {
                    let target = Name::from_ascii(format!("{}.{fqdn}", ep.hostname));
                    for ip in &ep.ips {
                        if let Ok(t) = &target {
                            r.ptr.entry(*ip).or_insert_with(|| t.clone());
                        }
                    }
                }
                ServiceKind::Headless(eps.into_values().collect())
            } else {
                let mut ips: Vec<IpAddr> = svc
                    .spec
                    .cluster_ip
                    .iter()
                    .chain(svc.spec.cluster_ips.iter())
                    .filter_map(|ip| ip.parse().ok())
                    .collect();
                ips.sort_unstable();
                ips.dedup();
                if let Ok(n) = Name::from_ascii(&fqdn) {
                    for ip in &ips {
                        r.ptr.entry(*ip).or_insert_with(|| n.clone());
                    }
                }
                ServiceKind::ClusterIp(ips)
            };
            r.namespaces.insert(ns.clone());
            r.services.insert((ns, name), ServiceRecord { kind, ports });
        }
        // Pod IPs that no Service claimed: `a-b-c-d.<ns>.pod.<zone>` (an extension: the spec's PTR
        // records are for cluster IPs and headless endpoints only).
        for pod in pods {
            if pod.spec.host_network == Some(true) {
                continue;
            }
            let ns = pod.metadata.namespace.as_deref().unwrap_or("default").to_ascii_lowercase();
            let ips = pod.status.pod_ip.iter().chain(pod.status.pod_ips.iter().map(|p| &p.ip));
            for ip in ips.filter_map(|s| s.parse::<IpAddr>().ok()) {
                if let Ok(n) = Name::from_ascii(format!("{}.{ns}.pod.{CLUSTER_DOMAIN}.", dashed(ip))) {
                    r.ptr.entry(ip).or_insert(n);
                }
            }
            r.namespaces.insert(ns);
        }
        r
    }

    pub fn len(&self) -> usize {
        self.services.len()
    }

    pub fn is_empty(&self) -> bool {
        self.services.is_empty()
    }

    /// Same names and addresses, whatever the serial.
    pub fn same_content(&self, other: &Records) -> bool {
        self.services == other.services && self.namespaces == other.namespaces && self.ptr == other.ptr
    }

    pub(crate) fn service(&self, ns: &str, name: &str) -> Option<&ServiceRecord> {
        // Keys are lowercase; the lookup's labels are lowercased before.
        self.services.get(&(ns.to_string(), name.to_string()))
    }
}

/// `<svc>.<ns>.svc.cluster.local.`
pub fn service_fqdn(name: &str, ns: &str) -> String {
    format!("{name}.{ns}.svc.{CLUSTER_DOMAIN}.")
}

/// `10.244.1.5` → `10-244-1-5`; IPv6 with dashes for colons, as CoreDNS writes it.
pub fn dashed(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => v4.to_string().replace('.', "-"),
        IpAddr::V6(v6) => v6.to_string().replace(':', "-"),
    }
}

/// `10-244-1-5` → 10.244.1.5 (decimal octets only, no leading `+`).
pub fn undashed_v4(label: &str) -> Option<Ipv4Addr> {
    let parts: Vec<&str> = label.split('-').collect();
    if parts.len() != 4 || parts.iter().any(|p| p.is_empty() || p.len() > 3 || !p.bytes().all(|b| b.is_ascii_digit())) {
        return None;
    }
    let o: Vec<u8> = parts.iter().filter_map(|p| p.parse().ok()).collect();
    (o.len() == 4).then(|| Ipv4Addr::new(o[0], o[1], o[2], o[3]))
}

fn named_port(name: Option<&str>, protocol: &str, port: Option<i64>) -> Option<NamedPort> {
    let name = name.filter(|n| !n.is_empty())?;
    Some(NamedPort {
        name: name.to_ascii_lowercase(),
        protocol: protocol.to_ascii_lowercase(),
        port: u16::try_from(port?).ok()?,
    })
}

fn absolute_name(s: &str) -> Option<Name> {
    let s = s.trim_end_matches('.');
    if s.is_empty() {
        return None;
    }
    Name::from_ascii(format!("{s}.")).ok()
}
