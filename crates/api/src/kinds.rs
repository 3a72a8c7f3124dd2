//! The kinds cilia knows: their group, versions, names and scope, as `kubectl api-resources` lists them.

use std::fmt;

/// One resource kind.
#[derive(Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ResourceKind {
    pub kind: &'static str,
    /// API group; empty for the core group (`v1`).
    pub group: &'static str,
    /// Served versions; the first is the storage version written back.
    pub versions: &'static [&'static str],
    pub plural: &'static str,
    pub singular: &'static str,
    pub short_names: &'static [&'static str],
    pub namespaced: bool,
}

impl ResourceKind {
    /// The apiVersion objects of this kind are stored with (`v1`, `apps/v1`, `cilium.io/v2`).
    pub fn api_version(&self) -> String {
        api_version(self.group, self.versions[0])
    }

    /// Whether `api_version` is one this kind serves.
    pub fn serves(&self, wanted: &str) -> bool {
        self.versions.iter().any(|v| api_version(self.group, v) == wanted)
    }

    /// All apiVersions this kind serves, for error messages.
    pub fn served_api_versions(&self) -> Vec<String> {
        self.versions.iter().map(|v| api_version(self.group, v)).collect()
    }

    /// `services`, `ciliumloadbalancerippools.cilium.io`: the name kubectl prints in `kind/name` output.
    pub fn qualified_plural(&self) -> String {
        if self.group.is_empty() { self.plural.to_string() } else { format!("{}.{}", self.plural, self.group) }
    }

    /// Lower-case kind with group, as in `kubectl get -o name` (`service/webpod`,
    /// `ciliumloadbalancerippool.cilium.io/pool`).
    pub fn name_prefix(&self) -> String {
        if self.group.is_empty() {
            self.kind.to_lowercase()
        } else {
            format!("{}.{}", self.kind.to_lowercase(), self.group)
        }
    }
}

impl fmt::Display for ResourceKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.kind)
    }
}

fn api_version(group: &str, version: &str) -> String {
    if group.is_empty() { version.to_string() } else { format!("{group}/{version}") }
}

pub static NAMESPACE: ResourceKind = ResourceKind {
    kind: "Namespace",
    group: "",
    versions: &["v1"],
    plural: "namespaces",
    singular: "namespace",
    short_names: &["ns"],
    namespaced: false,
};
pub static NODE: ResourceKind = ResourceKind {
    kind: "Node",
    group: "",
    versions: &["v1"],
    plural: "nodes",
    singular: "node",
    short_names: &["no"],
    namespaced: false,
};
pub static POD: ResourceKind = ResourceKind {
    kind: "Pod",
    group: "",
    versions: &["v1"],
    plural: "pods",
    singular: "pod",
    short_names: &["po"],
    namespaced: true,
};
pub static CONFIG_MAP: ResourceKind = ResourceKind {
    kind: "ConfigMap",
    group: "",
    versions: &["v1"],
    plural: "configmaps",
    singular: "configmap",
    short_names: &["cm"],
    namespaced: true,
};
pub static SECRET: ResourceKind = ResourceKind {
    kind: "Secret",
    group: "",
    versions: &["v1"],
    plural: "secrets",
    singular: "secret",
    short_names: &[],
    namespaced: true,
};
pub static SERVICE: ResourceKind = ResourceKind {
    kind: "Service",
    group: "",
    versions: &["v1"],
    plural: "services",
    singular: "service",
    short_names: &["svc"],
    namespaced: true,
};
pub static DEPLOYMENT: ResourceKind = ResourceKind {
    kind: "Deployment",
    group: "apps",
    versions: &["v1"],
    plural: "deployments",
    singular: "deployment",
    short_names: &["deploy"],
    namespaced: true,
};
pub static ENDPOINT_SLICE: ResourceKind = ResourceKind {
    kind: "EndpointSlice",
    group: "discovery.k8s.io",
    versions: &["v1"],
    plural: "endpointslices",
    singular: "endpointslice",
    short_names: &[],
    namespaced: true,
};
pub static LEASE: ResourceKind = ResourceKind {
    kind: "Lease",
    group: "coordination.k8s.io",
    versions: &["v1"],
    plural: "leases",
    singular: "lease",
    short_names: &[],
    namespaced: true,
};
pub static LB_IP_POOL: ResourceKind = ResourceKind {
    kind: "CiliumLoadBalancerIPPool",
    group: "cilium.io",
    versions: &["v2", "v2alpha1"],
    plural: "ciliumloadbalancerippools",
    singular: "ciliumloadbalancerippool",
    short_names: &["ippools", "ippool", "lbippool", "lbippools"],
    namespaced: false,
};
pub static L2_ANNOUNCEMENT_POLICY: ResourceKind = ResourceKind {
    kind: "CiliumL2AnnouncementPolicy",
    group: "cilium.io",
    versions: &["v2alpha1"],
    plural: "ciliuml2announcementpolicies",
    singular: "ciliuml2announcementpolicy",
    short_names: &["l2announcement"],
    namespaced: false,
};

/// Endpoints (core/v1), as `kubectl get endpoints` (`ep`) shows them: not stored, but derived on
/// read from the EndpointSlices of each Service (`kubernetes.io/service-name`), as Kubernetes'
/// mirroring does in the other direction.
pub static ENDPOINTS: ResourceKind = ResourceKind {
    kind: "Endpoints",
    group: "",
    versions: &["v1"],
    plural: "endpoints",
    singular: "endpoints",
    short_names: &["ep"],
    namespaced: true,
};

/// Kinds that can be read but are not stored: derived from stored kinds when read.
pub static DERIVED: &[&ResourceKind] = &[&ENDPOINTS];

/// Every kind, in the order `get all`-style listings use.
pub static ALL: &[&ResourceKind] = &[
    &NAMESPACE,
    &NODE,
    &POD,
    &CONFIG_MAP,
    &SECRET,
    &SERVICE,
    &DEPLOYMENT,
    &ENDPOINT_SLICE,
    &LEASE,
    &LB_IP_POOL,
    &L2_ANNOUNCEMENT_POLICY,
];

/// Finds a kind by `kind` field value (`Service`).
pub fn by_kind(kind: &str) -> Option<&'static ResourceKind> {
    ALL.iter().copied().find(|k| k.kind == kind)
}

/// Finds a kind (stored or [`DERIVED`]) the way kubectl resolves a resource argument: kind, plural, singular or short name, in
/// any case, optionally qualified with its group (`ippools.cilium.io`, `leases.coordination.k8s.io`).
pub fn resolve(name: &str) -> Option<&'static ResourceKind> {
    let lower = name.to_ascii_lowercase();
    let (bare, group) = match lower.split_once('.') {
        Some((bare, group)) => (bare.to_string(), Some(group.to_string())),
        None => (lower.clone(), None),
    };
    ALL.iter().chain(DERIVED).copied().find(|k| {
        let names_match = k.kind.to_ascii_lowercase() == bare
            || k.plural == bare
            || k.singular == bare
            || k.short_names.contains(&bare.as_str());
        let group_matches = match &group {
            None => true,
            Some(g) => k.group == g || k.versions.iter().any(|v| format!("{v}.{}", k.group) == *g),
        };
        names_match && group_matches
    })
}

/// Names a user may type for kinds, for the "unknown resource type" error.
pub fn known_names() -> String {
    ALL.iter().map(|k| k.plural).collect::<Vec<_>>().join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolves_kubectl_names() {
        assert_eq!(resolve("svc"), Some(&SERVICE));
        assert_eq!(resolve("Services"), Some(&SERVICE));
        assert_eq!(resolve("po"), Some(&POD));
        assert_eq!(resolve("no"), Some(&NODE));
        assert_eq!(resolve("deploy"), Some(&DEPLOYMENT));
        assert_eq!(resolve("lease"), Some(&LEASE));
        assert_eq!(resolve("cm"), Some(&CONFIG_MAP));
        assert_eq!(resolve("ippools"), Some(&LB_IP_POOL));
        assert_eq!(resolve("ciliumloadbalancerippools.cilium.io"), Some(&LB_IP_POOL));
        assert_eq!(resolve("l2announcement"), Some(&L2_ANNOUNCEMENT_POLICY));
        assert_eq!(resolve("leases.coordination.k8s.io"), Some(&LEASE));
        assert_eq!(resolve("svc.apps"), None);
        assert_eq!(resolve("frobs"), None);
    }

    #[test]
    fn api_versions() {
        assert_eq!(DEPLOYMENT.api_version(), "apps/v1");
        assert_eq!(SERVICE.api_version(), "v1");
        assert!(LB_IP_POOL.serves("cilium.io/v2alpha1"));
        assert!(LB_IP_POOL.serves("cilium.io/v2"));
        assert!(!LB_IP_POOL.serves("cilium.io/v1"));
        assert_eq!(LB_IP_POOL.api_version(), "cilium.io/v2");
    }
}
