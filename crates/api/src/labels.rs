//! Well-known label keys: the ones Kubernetes and Cilium give a meaning to, written and read by
//! several components, so each is spelled out once.

/// The node's name, on every Node; the usual topology key and node selector.
pub const HOSTNAME: &str = "kubernetes.io/hostname";

/// The node's operating system, on every Node.
pub const OS: &str = "kubernetes.io/os";

/// Prefix of node-role labels; what follows it is a role (`kubectl get nodes` shows it as ROLES).
pub const NODE_ROLE_PREFIX: &str = "node-role.kubernetes.io/";

/// The role label of control-plane nodes (with an empty value).
pub const CONTROL_PLANE: &str = "node-role.kubernetes.io/control-plane";

/// On an EndpointSlice: the name of its Service, in the same namespace.
pub const SERVICE_NAME: &str = "kubernetes.io/service-name";

/// Prefix of the labels the EndpointSlice controller sets besides [`SERVICE_NAME`].
pub const ENDPOINT_SLICE_PREFIX: &str = "endpointslice.kubernetes.io/";

/// On an EndpointSlice: the controller that owns it.
pub const ENDPOINT_SLICE_MANAGED_BY: &str = "endpointslice.kubernetes.io/managed-by";

/// On a Service: the proxy that should implement it; another proxy's Services are left alone.
pub const SERVICE_PROXY_NAME: &str = "service.kubernetes.io/service-proxy-name";

/// Cilium's pseudo-label with a Service's name, which LB-IPAM and L2 policy selectors can match.
pub const CILIUM_SERVICE_NAME: &str = "io.kubernetes.service.name";

/// Cilium's pseudo-label with a Service's namespace, which LB-IPAM and L2 policy selectors can
/// match.
pub const CILIUM_SERVICE_NAMESPACE: &str = "io.kubernetes.service.namespace";
