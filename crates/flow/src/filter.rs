//! Hubble's `FlowFilter` and its matching rules (`pkg/hubble/filters`): inside one filter every
//! set field must match (AND), the values of one field are alternatives (OR); a request keeps the
//! flows matched by any whitelist filter and by no blacklist filter.

use std::net::IpAddr;

use ipnet::IpNet;

use crate::model::{Endpoint, Flow, IpVersion, Service, TrafficDirection, Verdict};

/// Hubble `flow.EventTypeFilter`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct EventTypeFilter {
    pub r#type: i32,
    /// Required because 0 is a valid sub-type (to-endpoint).
    pub match_sub_type: bool,
    pub sub_type: i32,
}

/// Hubble `flow.FlowFilter` (the fields cilia's flows can answer). Empty fields match anything.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct FlowFilter {
    /// Exact addresses or CIDRs.
    pub source_ip: Vec<String>,
    /// `ns/pod-prefix`, `ns/` (a whole namespace) or `pod-prefix` (any namespace).
    pub source_pod: Vec<String>,
    /// Label selectors: `k=v`, `k!=v`, `k`, `!k`, comma-separated requirements ANDed.
    pub source_label: Vec<String>,
    /// `ns/name-prefix` or `name-prefix`, like `source_pod`.
    pub source_service: Vec<String>,
    pub destination_ip: Vec<String>,
    pub destination_pod: Vec<String>,
    pub destination_label: Vec<String>,
    pub destination_service: Vec<String>,
    pub traffic_direction: Vec<TrafficDirection>,
    pub verdict: Vec<Verdict>,
    pub event_type: Vec<EventTypeFilter>,
    /// `tcp`, `udp`, `sctp`, `icmp` (either version), `icmpv4`, `icmpv6`.
    pub protocol: Vec<String>,
    pub source_port: Vec<String>,
    pub destination_port: Vec<String>,
    pub reply: Vec<bool>,
    pub source_identity: Vec<u32>,
    pub destination_identity: Vec<u32>,
    /// Node-name patterns, `*` matching any run of characters.
    pub node_name: Vec<String>,
    pub ip_version: Vec<IpVersion>,
}

/// Protocol names a filter may name; the L7 ones are accepted (Hubble has them) and match
/// nothing, since cilia produces no L7 flows.
const PROTOCOLS: &[&str] = &["tcp", "udp", "sctp", "icmp", "icmpv4", "icmpv6", "http", "dns", "kafka"];

impl FlowFilter {
    /// Rejects values that could never be meant (a port that is not a number, a bad CIDR, an
    /// unknown protocol) so that a typo is an error, not an empty output.
    pub fn check(&self) -> Result<(), String> {
        for ip in self.source_ip.iter().chain(&self.destination_ip) {
            parse_ip_or_cidr(ip)?;
        }
        for port in self.source_port.iter().chain(&self.destination_port) {
            port.parse::<u16>().map_err(|_| format!("invalid port {port:?}: expected 0-65535"))?;
        }
        for proto in &self.protocol {
            if !PROTOCOLS.contains(&proto.to_ascii_lowercase().as_str()) {
                return Err(format!("unknown protocol {proto:?}: expected one of {}", PROTOCOLS.join(", ")));
            }
        }
        for sel in self.source_label.iter().chain(&self.destination_label) {
            LabelSelector::parse(sel)?;
        }
        Ok(())
    }

    pub fn matches(&self, flow: &Flow) -> bool {
        let (src_ip, dst_ip) = match &flow.ip {
            Some(ip) => (Some(ip.source), Some(ip.destination)),
            None => (None, None),
        };
        any_or_empty(&self.source_ip, |p| ip_matches(p, src_ip))
            && any_or_empty(&self.destination_ip, |p| ip_matches(p, dst_ip))
            && any_or_empty(&self.source_pod, |p| pod_matches(p, &flow.source))
            && any_or_empty(&self.destination_pod, |p| pod_matches(p, &flow.destination))
            && any_or_empty(&self.source_label, |s| labels_match(s, &flow.source))
            && any_or_empty(&self.destination_label, |s| labels_match(s, &flow.destination))
            && any_or_empty(&self.source_service, |s| service_matches(s, flow.source_service.as_ref()))
            && any_or_empty(&self.destination_service, |s| service_matches(s, flow.destination_service.as_ref()))
            && any_or_empty(&self.traffic_direction, |d| *d == flow.traffic_direction)
            && any_or_empty(&self.verdict, |v| *v == flow.verdict)
            && any_or_empty(&self.event_type, |e| event_type_matches(e, flow))
            && any_or_empty(&self.protocol, |p| protocol_matches(p, flow))
            && any_or_empty(&self.source_port, |p| port_matches(p, flow.source_port()))
            && any_or_empty(&self.destination_port, |p| port_matches(p, flow.destination_port()))
            && any_or_empty(&self.reply, |r| flow.is_reply == Some(*r))
            && any_or_empty(&self.source_identity, |i| *i == flow.source.identity)
            && any_or_empty(&self.destination_identity, |i| *i == flow.destination.identity)
            && any_or_empty(&self.node_name, |n| glob_matches(n, &flow.node_name))
            && any_or_empty(&self.ip_version, |v| flow.ip.as_ref().map(|ip| ip.ip_version()) == Some(*v))
    }
}

/// `whitelist − blacklist`: kept if any whitelist filter matches (or there is none) and no
/// blacklist filter does.
pub fn is_selected(whitelist: &[FlowFilter], blacklist: &[FlowFilter], flow: &Flow) -> bool {
    (whitelist.is_empty() || whitelist.iter().any(|f| f.matches(flow))) && !blacklist.iter().any(|f| f.matches(flow))
}

fn any_or_empty<T>(values: &[T], pred: impl Fn(&T) -> bool) -> bool {
    values.is_empty() || values.iter().any(pred)
}

fn parse_ip_or_cidr(s: &str) -> Result<IpNet, String> {
    if let Ok(net) = s.parse::<IpNet>() {
        return Ok(net);
    }
    s.parse::<IpAddr>().map(IpNet::from).map_err(|_| format!("invalid IP or CIDR {s:?}"))
}

fn ip_matches(pattern: &str, ip: Option<IpAddr>) -> bool {
    match (parse_ip_or_cidr(pattern), ip) {
        (Ok(net), Some(ip)) => net.contains(&ip),
        _ => false,
    }
}

/// Splits `ns/name` into its parts; a value without a slash names any namespace.
fn split_namespaced(s: &str) -> (Option<&str>, &str) {
    match s.split_once('/') {
        Some((ns, name)) => (Some(ns), name),
        None => (None, s),
    }
}

fn pod_matches(pattern: &str, ep: &Endpoint) -> bool {
    let (ns, prefix) = split_namespaced(pattern);
    if ns.is_some_and(|ns| ns != ep.namespace) {
        return false;
    }
    if prefix.is_empty() {
        // `ns/`: any endpoint of the namespace, pod or not (Hubble's namespace filter).
        return !ep.namespace.is_empty();
    }
    !ep.pod_name.is_empty() && ep.pod_name.starts_with(prefix)
}

fn service_matches(pattern: &str, svc: Option<&Service>) -> bool {
    let Some(svc) = svc else { return false };
    let (ns, prefix) = split_namespaced(pattern);
    if ns.is_some_and(|ns| ns != svc.namespace) {
        return false;
    }
    !svc.name.is_empty() && svc.name.starts_with(prefix)
}

fn event_type_matches(f: &EventTypeFilter, flow: &Flow) -> bool {
    f.r#type == flow.event_type.r#type && (!f.match_sub_type || f.sub_type == flow.event_type.sub_type)
}

fn protocol_matches(p: &str, flow: &Flow) -> bool {
    let Some(l4) = &flow.l4 else { return false };
    let name = l4.protocol_name();
    let p = p.to_ascii_lowercase();
    p == name || (p == "icmp" && name.starts_with("icmp"))
}

fn port_matches(p: &str, port: Option<u16>) -> bool {
    match (p.parse::<u16>(), port) {
        (Ok(want), Some(port)) => want == port,
        _ => false,
    }
}

/// `*` matches any run of characters; everything else literally.
pub fn glob_matches(pattern: &str, s: &str) -> bool {
    let parts: Vec<&str> = pattern.split('*').collect();
    if parts.len() == 1 {
        return pattern == s;
    }
    let (first, last) = (parts[0], parts[parts.len() - 1]);
    if !s.starts_with(first) || s.len() < first.len() + last.len() || !s.ends_with(last) {
        return false;
    }
    let mut rest = &s[first.len()..s.len() - last.len()];
    for mid in &parts[1..parts.len() - 1] {
        match rest.find(mid) {
            Some(i) => rest = &rest[i + mid.len()..],
            None => return false,
        }
    }
    true
}

fn labels_match(selector: &str, ep: &Endpoint) -> bool {
    LabelSelector::parse(selector).is_ok_and(|sel| sel.matches(&ep.labels))
}

/// One requirement of a label selector.
#[derive(Debug, PartialEq, Eq)]
enum Requirement {
    Equals(LabelKey, String),
    NotEquals(LabelKey, String),
    Exists(LabelKey),
    NotExists(LabelKey),
}

/// A label key with an optional source (`k8s:app`); no source or `any` matches every source.
#[derive(Debug, PartialEq, Eq)]
struct LabelKey {
    source: Option<String>,
    key: String,
}

impl LabelKey {
    fn parse(s: &str) -> Result<LabelKey, String> {
        let s = s.trim();
        if s.is_empty() {
            return Err("empty label key in selector".to_string());
        }
        Ok(match s.split_once(':') {
            Some(("any", key)) => LabelKey { source: None, key: key.to_string() },
            Some((source, key)) => LabelKey { source: Some(source.to_string()), key: key.to_string() },
            None => LabelKey { source: None, key: s.to_string() },
        })
    }

    /// The value of this key among `labels` (`source:key=value` strings), if present.
    fn value_in<'a>(&self, labels: &'a [String]) -> Option<&'a str> {
        labels.iter().find_map(|label| {
            let (key_part, value) = label.split_once('=').unwrap_or((label.as_str(), ""));
            let (source, key) = match key_part.split_once(':') {
                Some((src, key)) => (Some(src), key),
                None => (None, key_part),
            };
            let source_ok = match &self.source {
                None => true,
                Some(want) => source == Some(want.as_str()),
            };
            (source_ok && key == self.key).then_some(value)
        })
    }
}

#[derive(Debug)]
struct LabelSelector(Vec<Requirement>);

impl LabelSelector {
    fn parse(s: &str) -> Result<LabelSelector, String> {
        let mut reqs = Vec::new();
        for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let req = if let Some((k, v)) = part.split_once("!=") {
                Requirement::NotEquals(LabelKey::parse(k)?, v.trim().to_string())
            } else if let Some((k, v)) = part.split_once("==").or_else(|| part.split_once('=')) {
                Requirement::Equals(LabelKey::parse(k)?, v.trim().to_string())
            } else if let Some(k) = part.strip_prefix('!') {
                Requirement::NotExists(LabelKey::parse(k)?)
            } else {
                Requirement::Exists(LabelKey::parse(part)?)
            };
            reqs.push(req);
        }
        if reqs.is_empty() {
            return Err(format!("empty label selector {s:?}"));
        }
        Ok(LabelSelector(reqs))
    }

    fn matches(&self, labels: &[String]) -> bool {
        self.0.iter().all(|req| match req {
            Requirement::Equals(k, v) => k.value_in(labels) == Some(v.as_str()),
            Requirement::NotEquals(k, v) => k.value_in(labels) != Some(v.as_str()),
            Requirement::Exists(k) => k.value_in(labels).is_some(),
            Requirement::NotExists(k) => k.value_in(labels).is_none(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{EventType, Layer4, TraceObservationPoint};
    use crate::testing::{curl_to_webpod, drop_no_backend};

    fn f() -> FlowFilter {
        FlowFilter::default()
    }

    #[test]
    fn empty_filter_matches_everything() {
        assert!(f().matches(&curl_to_webpod()));
        assert!(is_selected(&[], &[], &drop_no_backend()));
    }

    #[test]
    fn pod_prefix_and_namespace() {
        let flow = curl_to_webpod();
        let src = |p: &str| FlowFilter { source_pod: vec![p.into()], ..f() }.matches(&flow);
        assert!(src("default/curl-pod"));
        assert!(src("default/curl"));
        assert!(src("curl-pod"));
        assert!(src("default/"));
        assert!(!src("kube-system/curl-pod"));
        assert!(!src("default/webpod"));
        let dst = |p: &str| FlowFilter { destination_pod: vec![p.into()], ..f() }.matches(&flow);
        assert!(dst("default/webpod"));
        assert!(!dst("default/curl-pod"));
        // A destination without a pod (a world address) matches no pod filter.
        assert!(!FlowFilter { destination_pod: vec!["default/".into()], ..f() }.matches(&drop_no_backend()));
    }

    #[test]
    fn labels() {
        let flow = curl_to_webpod();
        let src = |s: &str| FlowFilter { source_label: vec![s.into()], ..f() }.matches(&flow);
        assert!(src("app=curl"));
        assert!(src("k8s:app=curl"));
        assert!(src("any:app=curl"));
        assert!(!src("reserved:app=curl"));
        assert!(!src("app=webpod"));
        assert!(src("app"));
        assert!(src("app!=webpod"));
        assert!(src("!tier"));
        assert!(!src("!app"));
        assert!(src("app=curl,io.kubernetes.pod.namespace=default"));
        assert!(!src("app=curl,io.kubernetes.pod.namespace=kube-system"));
    }

    #[test]
    fn protocol_port_verdict_node_identity() {
        let flow = curl_to_webpod();
        let m = |filter: FlowFilter| filter.matches(&flow);
        assert!(m(FlowFilter { protocol: vec!["TCP".into()], ..f() }));
        assert!(!m(FlowFilter { protocol: vec!["udp".into()], ..f() }));
        assert!(m(FlowFilter { destination_port: vec!["80".into()], ..f() }));
        assert!(!m(FlowFilter { source_port: vec!["80".into()], ..f() }));
        assert!(m(FlowFilter { verdict: vec![Verdict::Forwarded], ..f() }));
        assert!(!m(FlowFilter { verdict: vec![Verdict::Dropped], ..f() }));
        assert!(m(FlowFilter { node_name: vec!["k8s-*".into()], ..f() }));
        assert!(m(FlowFilter { node_name: vec!["k8s-w1".into()], ..f() }));
        assert!(!m(FlowFilter { node_name: vec!["k8s-ctr".into()], ..f() }));
        assert!(m(FlowFilter { source_identity: vec![14553], ..f() }));
        assert!(!m(FlowFilter { destination_identity: vec![14553], ..f() }));
        assert!(m(FlowFilter { reply: vec![false], ..f() }));
        assert!(!m(FlowFilter { reply: vec![true], ..f() }));
        assert!(m(FlowFilter { traffic_direction: vec![TrafficDirection::Egress], ..f() }));
        assert!(m(FlowFilter { ip_version: vec![IpVersion::Ipv4], ..f() }));
        assert!(m(FlowFilter { destination_service: vec!["default/webpod".into()], ..f() }));
        assert!(!m(FlowFilter { source_service: vec!["webpod".into()], ..f() }));
        let mut icmp = flow.clone();
        icmp.l4 = Some(Layer4::Icmpv4 { r#type: 8, code: 0 });
        let proto = |p: &str| FlowFilter { protocol: vec![p.into()], ..f() }.matches(&icmp);
        assert!(proto("icmp") && proto("icmpv4") && !proto("icmpv6") && !proto("tcp"));
    }

    #[test]
    fn ips_and_cidrs() {
        let flow = curl_to_webpod();
        let src = |s: &str| FlowFilter { source_ip: vec![s.into()], ..f() }.matches(&flow);
        assert!(src("10.244.1.5"));
        assert!(src("10.244.1.0/24"));
        assert!(!src("10.244.2.0/24"));
    }

    #[test]
    fn event_types() {
        let trace = curl_to_webpod();
        let drop = drop_no_backend();
        let any_trace =
            FlowFilter { event_type: vec![EventTypeFilter { r#type: EventType::TRACE, ..Default::default() }], ..f() };
        assert!(any_trace.matches(&trace) && !any_trace.matches(&drop));
        let to_endpoint = FlowFilter {
            event_type: vec![EventTypeFilter { r#type: EventType::TRACE, match_sub_type: true, sub_type: 0 }],
            ..f()
        };
        assert!(!to_endpoint.matches(&trace));
        let mut at_endpoint = trace.clone();
        at_endpoint.event_type = EventType::trace(TraceObservationPoint::ToEndpoint);
        assert!(to_endpoint.matches(&at_endpoint));
    }

    #[test]
    fn whitelist_minus_blacklist() {
        let trace = curl_to_webpod();
        let drop = drop_no_backend();
        let tcp = FlowFilter { protocol: vec!["tcp".into()], ..f() };
        let dropped = FlowFilter { verdict: vec![Verdict::Dropped], ..f() };
        assert!(is_selected(std::slice::from_ref(&tcp), std::slice::from_ref(&dropped), &trace));
        assert!(!is_selected(&[tcp], std::slice::from_ref(&dropped), &drop));
        assert!(is_selected(&[], &[], &drop));
        assert!(!is_selected(&[], &[dropped], &drop));
    }

    #[test]
    fn check_rejects_typos() {
        assert!(FlowFilter { source_port: vec!["http".into()], ..f() }.check().is_err());
        assert!(FlowFilter { protocol: vec!["tpc".into()], ..f() }.check().is_err());
        assert!(FlowFilter { source_ip: vec!["10.0.0.0/33".into()], ..f() }.check().is_err());
        assert!(FlowFilter { source_label: vec![",".into()], ..f() }.check().is_err());
        assert!(FlowFilter { protocol: vec!["TCP".into()], ..f() }.check().is_ok());
    }

    #[test]
    fn globs() {
        assert!(glob_matches("k8s*", "k8s-w1"));
        assert!(glob_matches("*w1", "k8s-w1"));
        assert!(glob_matches("k*-*1", "k8s-w1"));
        assert!(!glob_matches("k*-*2", "k8s-w1"));
        assert!(glob_matches("*", ""));
        assert!(!glob_matches("ab*ba", "aba"));
    }
}
