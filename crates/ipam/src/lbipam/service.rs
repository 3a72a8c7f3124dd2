//! What LB-IPAM knows about one Service: the parts of the object it reads (spec §3), its
//! allocations, and whether it is satisfied (§5.5).

use std::collections::BTreeMap;
use std::fmt;
use std::net::IpAddr;

use api::types::{Service, ServiceStatus};

use super::annotations::{self, InvalidIp};
use super::config::LbIpamConfig;
use super::families::{Families, requested_families};
use super::lbrange::RangeId;
use crate::addr::Family;

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ServiceKey {
    pub namespace: String,
    pub name: String,
}

impl ServiceKey {
    pub fn new(namespace: &str, name: &str) -> Self {
        ServiceKey { namespace: namespace.to_string(), name: name.to_string() }
    }

    /// An absent namespace is `default`, as the API server would have set it.
    pub fn of(svc: &Service) -> Self {
        ServiceKey::new(svc.metadata.namespace.as_deref().unwrap_or("default"), &svc.metadata.name)
    }
}

impl fmt::Display for ServiceKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

/// What the Service asks for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Request {
    /// These addresses (possibly none, when every entry was invalid). Families are ignored.
    Ips(Vec<IpAddr>),
    /// One address of each of these families.
    Families(Families),
}

/// One address held by the Service, and the range it was taken from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Allocation {
    pub ip: IpAddr,
    pub range: RangeId,
}

/// The fields that decide whether two Services may share an address (§5.4).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SharingTerms {
    pub key: Option<String>,
    pub namespace: String,
    pub cross_namespaces: Vec<String>,
    /// (port, protocol), protocol defaulted to TCP as the API server does.
    pub ports: Vec<(i64, String)>,
    /// Defaulted to `Cluster`, as the API server does.
    pub external_traffic_policy: String,
    pub selector: BTreeMap<String, String>,
}

#[derive(Clone, Debug)]
pub struct ServiceView {
    pub key: ServiceKey,
    pub generation: Option<i64>,
    /// The Service's own labels; [`ServiceView::label`] adds the synthetic ones.
    pub labels: BTreeMap<String, String>,
    pub request: Request,
    /// The first unparsable requested IP, reported in the condition.
    pub invalid_request: Option<InvalidIp>,
    pub sharing: SharingTerms,
    /// The status as last seen or written.
    pub status: ServiceStatus,
    pub allocated: Vec<Allocation>,
    /// Position in the queue of unsatisfied Services, if it is in it.
    pub waiting: Option<u64>,
}

impl ServiceView {
    /// A view of `svc`, carrying over the allocations and queue position of the previous view.
    pub fn from_service(svc: &Service, config: &LbIpamConfig, previous: Option<ServiceView>) -> Self {
        let key = ServiceKey::of(svc);
        let labels = svc.metadata.labels.clone();

        let ip_request = annotations::requested_ips(svc);
        let request = if ip_request.is_specific() {
            Request::Ips(ip_request.ips)
        } else {
            Request::Families(requested_families(
                svc.spec.ip_family_policy.as_deref(),
                &svc.spec.ip_families,
                config.ipv4,
                config.ipv6,
            ))
        };

        let sharing = SharingTerms {
            key: annotations::sharing_key(svc),
            namespace: key.namespace.clone(),
            cross_namespaces: annotations::sharing_cross_namespaces(svc),
            ports: svc.spec.ports.iter().map(|p| (p.port, p.protocol().to_string())).collect(),
            external_traffic_policy: svc.spec.external_traffic_policy.clone().unwrap_or_else(|| "Cluster".into()),
            selector: svc.spec.selector.clone().unwrap_or_default(),
        };

        let (allocated, waiting) = previous.map(|p| (p.allocated, p.waiting)).unwrap_or_default();
        ServiceView {
            key,
            generation: svc.metadata.generation,
            labels,
            request,
            invalid_request: ip_request.invalid.into_iter().next(),
            sharing,
            status: svc.status.clone(),
            allocated,
            waiting,
        }
    }

    /// A label as pool selectors see it: Cilium's name and namespace pseudo-labels override the
    /// Service's own, so a Service cannot claim another namespace (§3.4). (Kept apart rather than merged into `labels`, which would cost every Service a
    /// map of its own.)
    pub fn label(&self, key: &str) -> Option<&str> {
        match key {
            api::labels::CILIUM_SERVICE_NAME => Some(&self.key.name),
            api::labels::CILIUM_SERVICE_NAMESPACE => Some(&self.key.namespace),
            _ => self.labels.get(key).map(String::as_str),
        }
    }

    pub fn holds(&self, ip: IpAddr) -> bool {
        self.allocated.iter().any(|a| a.ip == ip)
    }

    pub fn holds_family(&self, family: Family) -> bool {
        self.allocated.iter().any(|a| Family::of(a.ip) == family)
    }

    /// The addresses in `status.loadBalancer.ingress`.
    pub fn ingress_ips(&self) -> impl Iterator<Item = IpAddr> + '_ {
        self.status.load_balancer.ingress.iter().filter_map(|i| i.ip.as_deref()?.parse().ok())
    }

    /// §5.5, judged from the published ingress rather than the allocations, so a Service is
    /// satisfied only once the user can see its addresses: every requested IP is there, or every
    /// requested family has one. A Service that requests no family is satisfied with nothing.
    pub fn is_satisfied(&self) -> bool {
        match &self.request {
            Request::Ips(ips) => ips.iter().all(|ip| self.ingress_ips().any(|i| i == *ip)),
            Request::Families(families) => {
                families.iter().all(|family| self.ingress_ips().any(|i| Family::of(i) == family))
            }
        }
    }

    /// Whether `ip` may be held under the current request: one of the requested addresses, or of a
    /// requested family.
    pub fn wants(&self, ip: IpAddr) -> bool {
        match &self.request {
            Request::Ips(ips) => ips.contains(&ip),
            Request::Families(families) => families.has(Family::of(ip)),
        }
    }
}
