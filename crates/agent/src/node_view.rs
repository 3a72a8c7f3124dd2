//! What the agent reads from a Node: its pod CIDR and InternalIP. Read field by field rather than
//! through the typed Node, so one odd field elsewhere in an object does not hide the node.

use std::net::Ipv4Addr;

use api::Object;
use ipnet::Ipv4Net;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeView {
    pub name: String,
    /// `spec.podCIDR`, else the first of `spec.podCIDRs`; `None` until the operator assigns one.
    pub pod_cidr: Option<Ipv4Net>,
    /// The first `InternalIP` of `status.addresses`.
    pub internal_ip: Option<Ipv4Addr>,
}

impl NodeView {
    pub fn of(obj: &Object) -> NodeView {
        let text = |path: &str| obj.lookup_path(path).and_then(|v| v.as_str().map(str::to_string));
        let pod_cidr = text("spec.podCIDR")
            .filter(|s| !s.is_empty())
            .or_else(|| text("spec.podCIDRs.0"))
            .and_then(|s| s.parse::<Ipv4Net>().ok())
            .map(|c| c.trunc());
        let internal_ip = obj.node_internal_ipv4();
        NodeView { name: obj.name().to_string(), pod_cidr, internal_ip }
    }
}

#[cfg(test)]
mod tests {
    use api::kinds;
    use serde_json::json;

    use super::*;

    #[test]
    fn reads_cidr_and_internal_ip() {
        let mut o = Object::new(&kinds::NODE, None, "k8s-w1");
        o.body.insert("spec".into(), json!({"podCIDRs": ["172.20.1.0/24"]}));
        o.body.insert(
            "status".into(),
            json!({"addresses": [{"type": "Hostname", "address": "k8s-w1"}, {"type": "InternalIP", "address": "192.168.10.101"}]}),
        );
        let v = NodeView::of(&o);
        assert_eq!(v.pod_cidr, Some("172.20.1.0/24".parse().unwrap()));
        assert_eq!(v.internal_ip, Some(Ipv4Addr::new(192, 168, 10, 101)));
        let bare = NodeView::of(&Object::new(&kinds::NODE, None, "new"));
        assert_eq!((bare.pod_cidr, bare.internal_ip), (None, None));
    }
}
