//! The Service annotations LB-IPAM reads (spec §3.2) and the requested-IP list (§3.3).
//!
//! For each annotation the `lbipam.cilium.io/...` key wins; the older `io.cilium/...` alias is read
//! only when the new key is absent, so an empty new key shadows the alias. Nothing here can fail:
//! malformed values are reported, not rejected, so a bad annotation never stops the controller.

use std::collections::BTreeMap;
use std::net::IpAddr;

use api::types::Service;

pub const IPS: &str = "lbipam.cilium.io/ips";
pub const IPS_ALIAS: &str = "io.cilium/lb-ipam-ips";
pub const SHARING_KEY: &str = "lbipam.cilium.io/sharing-key";
pub const SHARING_KEY_ALIAS: &str = "io.cilium/lb-ipam-sharing-key";
pub const SHARING_CROSS_NAMESPACE: &str = "lbipam.cilium.io/sharing-cross-namespace";
pub const SHARING_CROSS_NAMESPACE_ALIAS: &str = "io.cilium/lb-ipam-sharing-cross-namespace";

/// The value of `key`, or of `alias` when `key` is absent. Returns the key that was used too.
fn get<'a>(
    annotations: &'a BTreeMap<String, String>,
    key: &'static str,
    alias: &'static str,
) -> Option<(&'static str, &'a str)> {
    match annotations.get(key) {
        Some(v) => Some((key, v)),
        None => annotations.get(alias).map(|v| (alias, v.as_str())),
    }
}

/// What a Service asks for by address.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct IpRequest {
    /// `spec.loadBalancerIP` first, then the annotation's entries, duplicates removed.
    pub ips: Vec<IpAddr>,
    /// Entries that are not IP addresses, with where they were written.
    pub invalid: Vec<InvalidIp>,
}

impl IpRequest {
    /// Whether the Service asked for specific addresses at all, even if none of them parse. A
    /// request made only of typos must not silently turn into "any address".
    pub fn is_specific(&self) -> bool {
        !self.ips.is_empty() || !self.invalid.is_empty()
    }
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("'{value}' in {source_field} is not an IP address")]
pub struct InvalidIp {
    pub value: String,
    /// `spec.loadBalancerIP` or `annotation lbipam.cilium.io/ips`.
    pub source_field: String,
}

/// `spec.loadBalancerIP` followed by the comma-separated, whitespace-trimmed entries of
/// `lbipam.cilium.io/ips` (or its alias). Empty entries (a trailing comma) are ignored.
pub fn requested_ips(svc: &Service) -> IpRequest {
    let mut request = IpRequest::default();
    let mut add = |entry: &str, source: &dyn Fn() -> String| {
        let entry = entry.trim();
        if entry.is_empty() {
            return;
        }
        match entry.parse::<IpAddr>() {
            Ok(ip) if !request.ips.contains(&ip) => request.ips.push(ip),
            Ok(_) => {}
            Err(_) => request.invalid.push(InvalidIp { value: entry.to_string(), source_field: source() }),
        }
    };
    if let Some(ip) = svc.spec.load_balancer_ip.as_deref() {
        add(ip, &|| "spec.loadBalancerIP".to_string());
    }
    if let Some((key, value)) = get(&svc.metadata.annotations, IPS, IPS_ALIAS) {
        for entry in value.split(',') {
            add(entry, &|| format!("annotation {key}"));
        }
    }
    request
}

/// The sharing key; an empty value means no sharing.
pub fn sharing_key(svc: &Service) -> Option<String> {
    get(&svc.metadata.annotations, SHARING_KEY, SHARING_KEY_ALIAS)
        .map(|(_, v)| v)
        .filter(|v| !v.is_empty())
        .map(str::to_string)
}

/// The namespaces this Service agrees to share with (`*` for all). Entries are trimmed, unlike
/// Cilium v1.18–v1.19 where `"a, b"` yields `" b"`, which never matches.
pub fn sharing_cross_namespaces(svc: &Service) -> Vec<String> {
    get(&svc.metadata.annotations, SHARING_CROSS_NAMESPACE, SHARING_CROSS_NAMESPACE_ALIAS)
        .map(|(_, v)| v.split(',').map(str::trim).filter(|s| !s.is_empty()).map(str::to_string).collect())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn svc(lb_ip: Option<&str>, annotations: &[(&str, &str)]) -> Service {
        let mut svc = Service::default();
        svc.spec.load_balancer_ip = lb_ip.map(str::to_string);
        svc.metadata.annotations = annotations.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        svc
    }

    fn ips(list: &[&str]) -> Vec<IpAddr> {
        list.iter().map(|s| s.parse().unwrap()).collect()
    }

    #[test]
    fn load_balancer_ip_comes_first_then_the_annotation() {
        let r = requested_ips(&svc(Some("10.0.10.21"), &[(IPS_ALIAS, "10.0.10.22, 10.0.10.23")]));
        assert_eq!(r.ips, ips(&["10.0.10.21", "10.0.10.22", "10.0.10.23"]));
        assert!(r.invalid.is_empty());
        // Duplicates collapse.
        let r = requested_ips(&svc(Some("10.0.10.21"), &[(IPS, "10.0.10.21,10.0.10.22,10.0.10.21")]));
        assert_eq!(r.ips, ips(&["10.0.10.21", "10.0.10.22"]));
    }

    #[test]
    fn the_new_key_shadows_the_alias_even_when_empty() {
        let r = requested_ips(&svc(None, &[(IPS, ""), (IPS_ALIAS, "10.0.0.1")]));
        assert!(!r.is_specific());
        let r = requested_ips(&svc(None, &[(IPS, "10.0.0.2"), (IPS_ALIAS, "10.0.0.1")]));
        assert_eq!(r.ips, ips(&["10.0.0.2"]));
        assert_eq!(sharing_key(&svc(None, &[(SHARING_KEY, ""), (SHARING_KEY_ALIAS, "k")])), None);
        assert_eq!(sharing_key(&svc(None, &[(SHARING_KEY_ALIAS, "k")])), Some("k".into()));
    }

    #[test]
    fn bad_entries_are_reported_with_their_source() {
        let r = requested_ips(&svc(Some("nope"), &[(IPS, "10.0.0.1,, 300.1.1.1 ,")]));
        assert_eq!(r.ips, ips(&["10.0.0.1"]));
        assert_eq!(r.invalid.len(), 2);
        assert_eq!(r.invalid[0].to_string(), "'nope' in spec.loadBalancerIP is not an IP address");
        assert_eq!(r.invalid[1].to_string(), "'300.1.1.1' in annotation lbipam.cilium.io/ips is not an IP address");
        assert!(requested_ips(&svc(Some("x"), &[])).is_specific());
        assert!(!requested_ips(&svc(Some(""), &[(IPS, " , ")])).is_specific());
    }

    #[test]
    fn cross_namespace_entries_are_trimmed() {
        let s = svc(None, &[(SHARING_CROSS_NAMESPACE, "ns-a, ns-b,,*")]);
        assert_eq!(sharing_cross_namespaces(&s), ["ns-a", "ns-b", "*"]);
        let s = svc(None, &[(SHARING_CROSS_NAMESPACE_ALIAS, "x")]);
        assert_eq!(sharing_cross_namespaces(&s), ["x"]);
    }
}
