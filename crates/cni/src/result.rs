//! The result JSON an ADD prints, in the shape of the configuration's CNI version.

use serde_json::{Value, json};

use crate::protocol::Attachment;
use crate::version;

/// Renders the ADD result: the host device, the pod device (with its sandbox), the pod's /32 on
/// interface index 1 (the pod device), its routes and the DNS settings from the configuration.
pub fn render(attachment: &Attachment, cni_version: &str, dns: Option<&Value>) -> Value {
    let mut ip = json!({
        "address": attachment.ip.to_string(),
        "gateway": attachment.gateway.to_string(),
        "interface": 1,
    });
    if version::needs_ip_version_field(cni_version) {
        ip["version"] = json!("4");
    }
    let routes: Vec<Value> = attachment
        .routes
        .iter()
        .map(|r| match r.gw {
            Some(gw) => json!({"dst": r.dst.to_string(), "gw": gw.to_string()}),
            None => json!({"dst": r.dst.to_string()}),
        })
        .collect();
    json!({
        "cniVersion": cni_version,
        "interfaces": [
            {"name": attachment.host_interface.name, "mac": attachment.host_interface.mac},
            {"name": attachment.pod_interface.name, "mac": attachment.pod_interface.mac, "sandbox": attachment.sandbox},
        ],
        "ips": [ip],
        "routes": routes,
        "dns": dns.cloned().unwrap_or_else(|| json!({})),
    })
}

/// The pod address of a previous result (`prevResult.ips[]` on the pod interface), for CHECK.
pub fn prev_ip(prev_result: &Value) -> Option<ipnet::Ipv4Net> {
    prev_result.get("ips")?.as_array()?.iter().find_map(|ip| ip.get("address")?.as_str()?.parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::{Interface, PodRoute};

    fn attachment() -> Attachment {
        Attachment {
            host_interface: Interface { name: "lxc1".into(), mac: "02:00:00:00:00:01".into() },
            pod_interface: Interface { name: "eth0".into(), mac: "02:00:00:00:00:02".into() },
            sandbox: "/run/netns/p".into(),
            ip: "172.20.0.5/32".parse().unwrap(),
            gateway: "172.20.0.1".parse().unwrap(),
            routes: vec![PodRoute { dst: "0.0.0.0/0".parse().unwrap(), gw: Some("172.20.0.1".parse().unwrap()) }],
            mtu: 1500,
            node: "n".into(),
        }
    }

    #[test]
    fn renders_1_0_0() {
        let v = render(&attachment(), "1.0.0", None);
        assert_eq!(v["ips"][0]["interface"], 1);
        assert_eq!(v["ips"][0]["address"], "172.20.0.5/32");
        assert!(v["ips"][0].get("version").is_none());
        assert_eq!(v["interfaces"][1]["sandbox"], "/run/netns/p");
        assert_eq!(v["routes"][0]["gw"], "172.20.0.1");
        assert_eq!(prev_ip(&v), Some("172.20.0.5/32".parse().unwrap()));
    }

    #[test]
    fn renders_0_4_0_with_ip_version() {
        let v = render(&attachment(), "0.4.0", Some(&json!({"nameservers": ["10.96.0.10"]})));
        assert_eq!(v["ips"][0]["version"], "4");
        assert_eq!(v["dns"]["nameservers"][0], "10.96.0.10");
    }
}
