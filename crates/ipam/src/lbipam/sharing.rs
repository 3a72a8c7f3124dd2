//! IP sharing between Services (spec §5.4) and the sharing-key index used by generic requests
//! (§5.3 step 1).

use std::collections::BTreeMap;
use std::net::IpAddr;

use super::lbrange::RangeId;
use super::service::SharingTerms;

/// Why `a` and `b` may not share an address, in Cilium's words; `None` if they may. Symmetric.
///
/// Ports clash only on the same port *and* protocol (Cilium v1.19+; v1.18 by default refused
/// TCP/80 next to UDP/80). Unset protocols and traffic policies compare as their API defaults
/// (TCP, Cluster), where Cilium compares the raw strings.
pub fn incompatibility(a: &SharingTerms, b: &SharingTerms) -> Option<&'static str> {
    if a.key.is_none() || a.key != b.key {
        return Some("different sharing key");
    }
    let permits =
        |who: &SharingTerms, other_ns: &str| who.cross_namespaces.iter().any(|ns| ns == "*" || ns == other_ns);
    if a.namespace != b.namespace && !(permits(a, &b.namespace) && permits(b, &a.namespace)) {
        return Some("different and not permitted namespace");
    }
    if a.ports.iter().any(|pa| b.ports.contains(pa)) {
        return Some("same port and protocol");
    }
    if a.external_traffic_policy != b.external_traffic_policy {
        return Some("different ExternalTrafficPolicy");
    }
    // With `Local`, traffic for the shared address goes only to local backends, so both Services
    // must pick the same pods.
    if a.external_traffic_policy == "Local" && (a.selector.is_empty() || a.selector != b.selector) {
        return Some("compatible ExternalTrafficPolicy local but selecting different set of pods");
    }
    None
}

/// For each sharing key, the addresses held under it, in the order they were first taken. A generic
/// request with a key joins the first compatible one. An entry exists exactly while some Service
/// with that key holds the address (Cilium leaves stale entries behind after key changes and range
/// deletions; here removal is exact).
#[derive(Clone, Debug, Default)]
pub struct SharingIndex {
    by_key: BTreeMap<String, Vec<(IpAddr, RangeId)>>,
}

impl SharingIndex {
    pub fn add(&mut self, key: &str, ip: IpAddr, range: RangeId) {
        let entries = self.by_key.entry(key.to_string()).or_default();
        if !entries.contains(&(ip, range)) {
            entries.push((ip, range));
        }
    }

    pub fn remove(&mut self, key: &str, ip: IpAddr, range: RangeId) {
        if let Some(entries) = self.by_key.get_mut(key) {
            entries.retain(|e| *e != (ip, range));
            if entries.is_empty() {
                self.by_key.remove(key);
            }
        }
    }

    pub fn entries(&self, key: &str) -> &[(IpAddr, RangeId)] {
        self.by_key.get(key).map(Vec::as_slice).unwrap_or_default()
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, &[(IpAddr, RangeId)])> {
        self.by_key.iter().map(|(k, v)| (k.as_str(), v.as_slice()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn terms(ns: &str, key: &str, ports: &[(i64, &str)]) -> SharingTerms {
        SharingTerms {
            key: (!key.is_empty()).then(|| key.to_string()),
            namespace: ns.into(),
            cross_namespaces: vec![],
            ports: ports.iter().map(|(p, proto)| (*p, proto.to_string())).collect(),
            external_traffic_policy: "Cluster".into(),
            selector: BTreeMap::new(),
        }
    }

    #[test]
    fn rules_in_order() {
        let a = terms("default", "k", &[(80, "TCP")]);
        assert_eq!(incompatibility(&a, &terms("default", "k", &[(8080, "TCP")])), None);
        assert_eq!(incompatibility(&a, &terms("default", "j", &[(8080, "TCP")])), Some("different sharing key"));
        assert_eq!(
            incompatibility(&terms("default", "", &[]), &terms("default", "", &[])),
            Some("different sharing key")
        );
        assert_eq!(
            incompatibility(&a, &terms("other", "k", &[(81, "TCP")])),
            Some("different and not permitted namespace")
        );
        assert_eq!(incompatibility(&a, &terms("default", "k", &[(80, "TCP")])), Some("same port and protocol"));
        assert_eq!(incompatibility(&a, &terms("default", "k", &[(80, "UDP")])), None);
        assert_eq!(incompatibility(&terms("d", "k", &[]), &terms("d", "k", &[])), None);

        let mut local = terms("default", "k", &[(81, "TCP")]);
        local.external_traffic_policy = "Local".into();
        assert_eq!(incompatibility(&a, &local), Some("different ExternalTrafficPolicy"));
        let mut local2 = local.clone();
        local2.ports = vec![(82, "TCP".into())];
        assert_eq!(
            incompatibility(&local, &local2),
            Some("compatible ExternalTrafficPolicy local but selecting different set of pods")
        );
        local.selector.insert("app".into(), "web".into());
        local2.selector.insert("app".into(), "web".into());
        assert_eq!(incompatibility(&local, &local2), None);
    }

    // Spec §7 TestSharingCrossNamespace: both sides must opt in.
    #[test]
    fn cross_namespace_needs_both_sides() {
        let mut a = terms("ns-a", "k", &[]);
        let mut b = terms("ns-b", "k", &[]);
        a.cross_namespaces = vec!["ns-b".into()];
        assert_eq!(incompatibility(&a, &b), Some("different and not permitted namespace"));
        b.cross_namespaces = vec!["*".into()];
        assert_eq!(incompatibility(&a, &b), None);
        assert_eq!(incompatibility(&b, &a), None);
        let c = terms("ns-c", "k", &[]);
        assert_eq!(incompatibility(&b, &c), Some("different and not permitted namespace"));
    }
}
