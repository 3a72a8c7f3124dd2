//! Typed views of the kinds cilia acts on. Unknown fields are rejected when a manifest is parsed
//! (`deny_unknown_fields`), so a typo is reported instead of silently dropped; fields Kubernetes has
//! and cilia does not act on are accepted as opaque JSON so real manifests still apply.

mod config_map;
mod coordination;
mod core;
mod deployment;
mod discovery;
mod l2_policy;
mod lb_ip_pool;
mod pod;
mod service;

pub use config_map::ConfigMap;
pub use coordination::{Lease, LeaseSpec};
pub use core::{Namespace, Node, NodeAddress, NodeSpec, NodeStatus};
pub use deployment::{Deployment, DeploymentSpec, DeploymentStatus, PodTemplateSpec};
pub use discovery::{Endpoint, EndpointConditions, EndpointPort, EndpointSlice};
pub use l2_policy::{L2AnnouncementPolicy, L2AnnouncementPolicySpec};
pub use lb_ip_pool::{IpBlock, LbIpPool, LbIpPoolSpec, LbIpPoolStatus};
pub use pod::{
    Affinity, Container, ContainerPort, MIRROR_ANNOTATION, Pod, PodAffinityTerm, PodAntiAffinity, PodCondition, PodIp,
    PodSpec, PodStatus,
};
pub use service::{LoadBalancerIngress, LoadBalancerStatus, Service, ServicePort, ServiceSpec, ServiceStatus};

/// For `skip_serializing_if` on default-valued structs.
pub(crate) fn is_default<T: Default + PartialEq>(value: &T) -> bool {
    *value == T::default()
}

/// Either a number or a name, as Kubernetes' `IntOrString` (`targetPort: 80` or `targetPort: http`).
#[derive(serde::Serialize, serde::Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(untagged)]
pub enum IntOrString {
    Int(i64),
    String(String),
}

impl std::fmt::Display for IntOrString {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            IntOrString::Int(i) => write!(f, "{i}"),
            IntOrString::String(s) => f.write_str(s),
        }
    }
}
