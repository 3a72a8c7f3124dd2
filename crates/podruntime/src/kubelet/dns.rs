//! Name resolution inside pods, as the kubelet sets it up with `dnsPolicy: ClusterFirst`: a
//! `resolv.conf` per pod naming the cluster DNS server, the search path of the pod's namespace
//! followed by the node's own search domains, and `ndots:5`. `dnsPolicy: Default` (and
//! `ClusterFirst` on the host network) gives the pod the node's resolv.conf, as the kubelet does;
//! `ClusterFirstWithHostNet` is ClusterFirst everywhere.
//!
//! The node's resolv.conf is the one `ip netns exec` would show for the node's network namespace:
//! `/etc/netns/<namespace>/resolv.conf` (the lab writes one per host, naming the router's DNS
//! server), found from the runtime's own namespace; else none is added.
//!
//! The cluster DNS server is the agent of the pod's node, listening on the node's router IP (the
//! pod's gateway, which the CNI result carries), so the runtime writes the file next to the pod's
//! record once the pod is networked: `<pods dir>/<uid>.resolv.conf`.
//!
//! Lab pods are network namespaces, not containers with their own root filesystem, so a process
//! in a pod would read the machine's `/etc/resolv.conf`. [`netconf::resolv_conf`] gives the
//! process a private mount namespace with the pod's file bind-mounted over `/etc/resolv.conf`,
//! which is what `ip netns exec` does with `/etc/netns/<name>/resolv.conf`; nothing outside that
//! process sees it.

use std::{
    io,
    net::Ipv4Addr,
    path::{Path, PathBuf},
};

use api::types::Pod;

use super::paths::NodePaths;

pub const CLUSTER_DOMAIN: &str = "cluster.local";

/// The pod's `resolv.conf` with `nameserver` as the cluster DNS server; None for pods that do
/// not use it (`dnsPolicy: Default` inherits the node's resolver, as in Kubernetes).
pub fn resolv_conf(pod: &Pod, nameserver: Ipv4Addr) -> Option<String> {
    resolv_conf_on_node(pod, nameserver, None)
}

/// [`resolv_conf`] on a node whose own resolv.conf is `node`: its search domains follow the
/// cluster's (at most six in all, glibc's limit before 2.26 that the kubelet keeps), and pods that
/// do not use the cluster DNS get the node's file itself.
pub fn resolv_conf_on_node(pod: &Pod, nameserver: Ipv4Addr, node: Option<&str>) -> Option<String> {
    let policy = pod_dns_policy(pod);
    let host_network = pod.spec.host_network == Some(true);
    if policy == "Default" || (policy == "ClusterFirst" && host_network) {
        return node.map(str::to_string);
    }
    if policy == "None" {
        return None;
    }
    let ns = pod.metadata.namespace.as_deref().unwrap_or("default");
    let mut search =
        vec![format!("{ns}.svc.{CLUSTER_DOMAIN}"), format!("svc.{CLUSTER_DOMAIN}"), CLUSTER_DOMAIN.to_string()];
    for domain in node.map(search_domains).unwrap_or_default() {
        if search.len() < MAX_SEARCH && !search.contains(&domain) {
            search.push(domain);
        }
    }
    Some(format!("nameserver {nameserver}\nsearch {}\noptions ndots:5\n", search.join(" ")))
}

/// Search domains in a pod's resolv.conf, at most.
const MAX_SEARCH: usize = 6;

/// The `search` (or `domain`) entries of a resolv.conf; the last such line wins, as in glibc.
fn search_domains(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    for line in text.lines() {
        let mut words = line.split_whitespace();
        if let Some("search" | "domain") = words.next() {
            out = words.map(|w| w.trim_end_matches('.').to_string()).collect();
        }
    }
    out
}

/// The node's resolv.conf as `ip netns exec` shows it for this process's network namespace; None
/// when the namespace has no name or no file of its own.
pub fn node_resolv_conf() -> Option<String> {
    use std::os::unix::fs::MetadataExt;
    let own = std::fs::metadata("/proc/self/ns/net").ok()?;
    let name = std::fs::read_dir("/run/netns").ok()?.flatten().find_map(|e| {
        let m = std::fs::metadata(e.path()).ok()?;
        (m.dev() == own.dev() && m.ino() == own.ino()).then(|| e.file_name())
    })?;
    std::fs::read_to_string(Path::new("/etc/netns").join(name).join("resolv.conf")).ok()
}

fn pod_dns_policy(pod: &Pod) -> &str {
    pod.spec.dns_policy.as_deref().unwrap_or("ClusterFirst")
}

/// Where the runtime keeps a pod's `resolv.conf`: beside its record in the node's pods dir.
pub fn path(pods_dir: &Path, uid: &str) -> PathBuf {
    pods_dir.join(format!("{uid}.resolv.conf"))
}

/// The pod's file on its node in `lab`, if the runtime wrote one.
pub fn existing(lab: &lab::Lab, node: &str, uid: &str) -> Option<PathBuf> {
    let p = path(&NodePaths::new(lab, node).pods_dir(), uid);
    p.exists().then_some(p)
}

/// The gateway of a CNI result: the node's router IP, where its agent answers DNS.
pub fn gateway_of(cni_result: &serde_json::Value) -> Option<Ipv4Addr> {
    cni_result.get("ips")?.get(0)?.get("gateway")?.as_str()?.parse().ok()
}

/// Writes the pod's file (atomically, so a concurrent `cilia exec` never binds a half-written
/// one); returns whether a file exists afterwards.
pub fn write(pods_dir: &Path, pod: &Pod, uid: &str, cni_result: &serde_json::Value) -> io::Result<bool> {
    let target = path(pods_dir, uid);
    let node = node_resolv_conf();
    let Some(content) = gateway_of(cni_result).and_then(|gw| resolv_conf_on_node(pod, gw, node.as_deref())) else {
        return Ok(false);
    };
    if std::fs::read_to_string(&target).is_ok_and(|c| c == content) {
        return Ok(true);
    }
    let tmp = target.with_extension("resolv.conf.tmp");
    std::fs::write(&tmp, content)?;
    std::fs::rename(&tmp, &target)?;
    Ok(true)
}

pub fn remove(pods_dir: &Path, uid: &str) {
    let _ = std::fs::remove_file(path(pods_dir, uid));
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn pod(ns: &str, policy: Option<&str>) -> Pod {
        let mut spec = json!({"containers": [{"name": "c", "image": "nicolaka/netshoot"}]});
        if let Some(p) = policy {
            spec["dnsPolicy"] = json!(p);
        }
        serde_json::from_value(json!({"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "curl-pod", "namespace": ns}, "spec": spec}))
        .unwrap()
    }

    #[test]
    fn cluster_first_pods_use_the_node_agent_with_the_namespace_search_path() {
        let ns = Ipv4Addr::new(172, 20, 0, 1);
        assert_eq!(
            resolv_conf(&pod("default", None), ns).unwrap(),
            "nameserver 172.20.0.1\nsearch default.svc.cluster.local svc.cluster.local cluster.local\noptions ndots:5\n"
        );
        assert!(
            resolv_conf(&pod("kube-system", Some("ClusterFirst")), ns).unwrap().contains("search kube-system.svc.")
        );
        assert_eq!(resolv_conf(&pod("default", Some("Default")), ns), None);
    }

    #[test]
    fn the_node_search_domains_follow_and_default_pods_get_the_node_file() {
        let ns = Ipv4Addr::new(172, 20, 0, 1);
        let node = "# lab\nnameserver 192.168.10.200\nsearch lab example.org\noptions timeout:1\n";
        assert_eq!(
            resolv_conf_on_node(&pod("default", None), ns, Some(node)).unwrap(),
            "nameserver 172.20.0.1\nsearch default.svc.cluster.local svc.cluster.local cluster.local lab example.org\noptions ndots:5\n"
        );
        assert_eq!(resolv_conf_on_node(&pod("default", Some("Default")), ns, Some(node)).as_deref(), Some(node));
        assert_eq!(resolv_conf_on_node(&pod("default", Some("Default")), ns, None), None);
        let mut host = pod("default", None);
        host.spec.host_network = Some(true);
        assert_eq!(resolv_conf_on_node(&host, ns, Some(node)).as_deref(), Some(node));
        let many = "search a b c d e\n";
        let conf = resolv_conf_on_node(&pod("default", Some("ClusterFirstWithHostNet")), ns, Some(many)).unwrap();
        assert!(conf.contains("search default.svc.cluster.local svc.cluster.local cluster.local a b c\n"), "{conf}");
    }

    #[test]
    fn gateway_from_the_cni_result() {
        let r = json!({"ips": [{"address": "172.20.0.5/32", "gateway": "172.20.0.1"}]});
        assert_eq!(gateway_of(&r), Some(Ipv4Addr::new(172, 20, 0, 1)));
        assert_eq!(gateway_of(&json!({"ips": [{"address": "172.20.0.5/32"}]})), None);
    }

    #[test]
    fn written_next_to_the_record_and_removed() {
        let dir = tempfile::tempdir().unwrap();
        let r = json!({"ips": [{"address": "172.20.0.5/32", "gateway": "172.20.0.1"}]});
        assert!(write(dir.path(), &pod("default", None), "u1", &r).unwrap());
        let text = std::fs::read_to_string(path(dir.path(), "u1")).unwrap();
        assert!(text.starts_with("nameserver 172.20.0.1\n"), "{text}");
        assert!(!write(dir.path(), &pod("default", Some("Default")), "u2", &r).unwrap());
        remove(dir.path(), "u1");
        assert!(!path(dir.path(), "u1").exists());
    }
}
