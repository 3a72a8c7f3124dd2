//! REST paths of cilia's kinds on the Kubernetes API.

use api::ResourceKind;

/// `/api/v1/namespaces/default/services`, `/apis/cilium.io/v2/ciliumloadbalancerippools`: the
/// collection of `kind` (in `namespace`, for a namespaced kind), at the version cilia stores.
pub(crate) fn collection_path(kind: &ResourceKind, namespace: Option<&str>) -> String {
    let version = kind.versions[0];
    let root =
        if kind.group.is_empty() { format!("/api/{version}") } else { format!("/apis/{}/{version}", kind.group) };
    match namespace {
        Some(ns) if kind.namespaced => format!("{root}/namespaces/{ns}/{}", kind.plural),
        _ => format!("{root}/{}", kind.plural),
    }
}

#[cfg(test)]
mod tests {
    use api::kinds::{DEPLOYMENT, LB_IP_POOL, NODE, SERVICE};

    use super::*;

    #[test]
    fn core_grouped_namespaced_and_cluster_scoped_kinds() {
        assert_eq!(collection_path(&SERVICE, Some("default")), "/api/v1/namespaces/default/services");
        assert_eq!(collection_path(&SERVICE, None), "/api/v1/services");
        assert_eq!(
            collection_path(&DEPLOYMENT, Some("kube-system")),
            "/apis/apps/v1/namespaces/kube-system/deployments"
        );
        assert_eq!(collection_path(&NODE, Some("ignored")), "/api/v1/nodes");
        assert_eq!(collection_path(&LB_IP_POOL, None), "/apis/cilium.io/v2/ciliumloadbalancerippools");
    }
}
