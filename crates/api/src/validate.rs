//! Validation of objects: structure (via the typed views, with the exact field path of any error) and
//! the semantic rules Kubernetes' API server would enforce for the fields cilia acts on.

use std::net::IpAddr;

use ipnet::Ipv4Net;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::{
    error::ValidationError,
    kinds::{self, ResourceKind},
    object::Object,
    selector::Selector,
    types,
};

/// Largest serialized object accepted, as Kubernetes' default request limit for one object (etcd's
/// default request size is 1.5 MiB; objects must leave room for metadata).
pub const MAX_OBJECT_BYTES: usize = 1024 * 1024;

/// Checks a JSON value that claims to be an object and returns it as an [`Object`] with its namespace
/// defaulted (`default_namespace` for namespaced kinds, none for cluster-scoped ones).
pub fn object(value: Value, default_namespace: &str) -> Result<Object, ValidationError> {
    let Value::Object(map) = &value else {
        return Err(ValidationError::new(format!(
            "expected a mapping with apiVersion and kind, got {}",
            kind_of(&value)
        )));
    };
    let api_version = match map.get("apiVersion") {
        Some(Value::String(s)) if !s.is_empty() => s.clone(),
        Some(_) => return Err(ValidationError::field("apiVersion", "must be a non-empty string")),
        None => return Err(ValidationError::field("apiVersion", "is required")),
    };
    let kind_name = match map.get("kind") {
        Some(Value::String(s)) if !s.is_empty() => s.clone(),
        Some(_) => return Err(ValidationError::field("kind", "must be a non-empty string")),
        None => return Err(ValidationError::field("kind", "is required")),
    };
    let name_hint = map
        .get("metadata")
        .and_then(|m| m.get("name"))
        .and_then(Value::as_str)
        .map(|n| format!("{kind_name} {n}"))
        .unwrap_or_else(|| kind_name.clone());
    let Some(kind) = kinds::by_kind(&kind_name) else {
        return Err(ValidationError::field(
            "kind",
            format!(
                "unknown kind {kind_name:?}; known kinds: {}",
                kinds::ALL.iter().map(|k| k.kind).collect::<Vec<_>>().join(", ")
            ),
        ));
    };
    if !kind.serves(&api_version) {
        return Err(ValidationError::field(
            "apiVersion",
            format!("{api_version:?} does not serve kind {kind_name}; use {}", kind.served_api_versions().join(" or ")),
        )
        .with_object(name_hint));
    }
    let size = serde_json::to_vec(&value).map(|v| v.len()).unwrap_or(0);
    if size > MAX_OBJECT_BYTES {
        return Err(ValidationError::new(format!("object is {} bytes; the limit is {MAX_OBJECT_BYTES} bytes", size))
            .with_object(name_hint));
    }

    let mut obj: Object = typed_parse::<Object>(&value).map_err(|e| e.with_object(name_hint.clone()))?;
    if kind.namespaced {
        if obj.metadata.namespace.as_deref().unwrap_or("").is_empty() {
            obj.metadata.namespace = Some(default_namespace.to_string());
        }
    } else if obj.metadata.namespace.is_some() {
        // kubectl ignores a namespace on cluster-scoped objects; so do we.
        obj.metadata.namespace = None;
    }
    let display = obj.object_ref().map(|r| r.to_string()).unwrap_or(name_hint);
    check(kind, &obj).map_err(|e| e.with_object(display))?;
    Ok(obj)
}

/// Semantic checks of one object of a known kind.
pub fn check(kind: &'static ResourceKind, obj: &Object) -> Result<(), ValidationError> {
    let meta = &obj.metadata;
    if meta.name.is_empty() {
        return Err(ValidationError::field("metadata.name", "is required"));
    }
    dns_subdomain(&meta.name).map_err(|e| e.under("metadata.name"))?;
    if let Some(ns) = &meta.namespace {
        dns_label(ns).map_err(|e| e.under("metadata.namespace"))?;
    }
    for (k, v) in &meta.labels {
        label_key(k).map_err(|e| e.under(&format!("metadata.labels.{k}")))?;
        label_value(v).map_err(|e| e.under(&format!("metadata.labels.{k}")))?;
    }
    for k in meta.annotations.keys() {
        label_key(k).map_err(|e| e.under(&format!("metadata.annotations.{k}")))?;
    }
    let value = obj.to_value();
    match kind.kind {
        "Service" => service(&typed_parse(&value)?),
        "Deployment" => deployment(&typed_parse(&value)?),
        "Pod" => {
            let pod: types::Pod = typed_parse(&value)?;
            pod_spec(&pod.spec).map_err(|e| e.under("spec"))
        }
        "CiliumLoadBalancerIPPool" => lb_ip_pool(&typed_parse(&value)?),
        "CiliumL2AnnouncementPolicy" => l2_policy(&typed_parse(&value)?),
        "Node" => typed_parse::<types::Node>(&value).map(drop),
        "Namespace" => typed_parse::<types::Namespace>(&value).map(drop),
        "Lease" => typed_parse::<types::Lease>(&value).map(drop),
        "ConfigMap" => config_map(&typed_parse(&value)?),
        "EndpointSlice" => typed_parse::<types::EndpointSlice>(&value).map(drop),
        _ => Ok(()),
    }
}

/// Deserializes with the path of the failing field (`spec.ports[0].port`), so unknown and mistyped
/// fields are reported where they are.
pub fn typed_parse<T: DeserializeOwned>(value: &Value) -> Result<T, ValidationError> {
    serde_path_to_error::deserialize(value).map_err(|err| {
        let path = err.path().to_string();
        let inner = err.into_inner().to_string();
        let reason = inner.split(" at line ").next().unwrap_or(&inner).to_string();
        if path == "." || path.is_empty() { ValidationError::new(reason) } else { ValidationError::field(path, reason) }
    })
}

fn config_map(cm: &types::ConfigMap) -> Result<(), ValidationError> {
    for key in cm.data.keys() {
        let ok =
            !key.is_empty() && key.len() <= 253 && key.chars().all(|c| c.is_ascii_alphanumeric() || "-._".contains(c));
        if !ok {
            return Err(ValidationError::field(
                format!("data.{key}"),
                "keys consist of letters, digits, '-', '_' and '.'",
            ));
        }
    }
    // Cilium's configuration is checked key by key, so a typo never reaches the agents.
    if cm.metadata.name == crate::cilium_config::NAME
        && cm.metadata.namespace.as_deref() == Some(crate::cilium_config::NAMESPACE)
    {
        crate::cilium_config::check(&cm.data)?;
    }
    Ok(())
}

fn service(svc: &types::Service) -> Result<(), ValidationError> {
    let spec = &svc.spec;
    let types_ok = ["ClusterIP", "NodePort", "LoadBalancer", "ExternalName"];
    if let Some(t) = &spec.type_
        && !types_ok.contains(&t.as_str())
    {
        return Err(ValidationError::field("spec.type", format!("{t:?} is not one of {}", types_ok.join(", "))));
    }
    if spec.ports.len() > 1 {
        for (i, p) in spec.ports.iter().enumerate() {
            if p.name.as_deref().unwrap_or("").is_empty() {
                return Err(ValidationError::field(
                    format!("spec.ports[{i}].name"),
                    "is required when a Service has more than one port",
                ));
            }
        }
    }
    for (i, p) in spec.ports.iter().enumerate() {
        let at = |f: &str| format!("spec.ports[{i}].{f}");
        port_number(p.port).map_err(|e| e.under(&at("port")))?;
        if !["TCP", "UDP", "SCTP"].contains(&p.protocol()) {
            return Err(ValidationError::field(
                at("protocol"),
                format!("{:?} is not one of TCP, UDP, SCTP", p.protocol()),
            ));
        }
        if let Some(np) = p.node_port
            && !(30000..=32767).contains(&np)
        {
            return Err(ValidationError::field(
                at("nodePort"),
                format!("{np} is outside the node port range 30000-32767"),
            ));
        }
        match &p.target_port {
            Some(types::IntOrString::Int(tp)) => port_number(*tp).map_err(|e| e.under(&at("targetPort")))?,
            Some(types::IntOrString::String(name)) if name.is_empty() || name.len() > 15 => {
                return Err(ValidationError::field(at("targetPort"), "a named port must be 1-15 characters"));
            }
            _ => {}
        }
        let dup = spec.ports[..i].iter().any(|q| q.port == p.port && q.protocol() == p.protocol());
        if dup {
            return Err(ValidationError::field(at("port"), format!("duplicate port {}/{}", p.port, p.protocol())));
        }
    }
    let cluster_ips = spec.cluster_ip.iter().map(|ip| ("spec.clusterIP".to_string(), ip));
    let cluster_ips =
        cluster_ips.chain(spec.cluster_ips.iter().enumerate().map(|(i, ip)| (format!("spec.clusterIPs[{i}]"), ip)));
    for (field, ip) in cluster_ips.filter(|(_, ip)| !ip.is_empty() && *ip != "None") {
        let Ok(addr) = ip.parse::<IpAddr>() else {
            return Err(ValidationError::field(field, format!("{ip:?} is not an IP address")));
        };
        if let Some(why) = special_address(addr) {
            return Err(ValidationError::field(field, format!("{ip} is {why}, which cannot be a cluster IP")));
        }
    }
    for (i, ip) in spec.external_ips.iter().enumerate() {
        let field = || format!("spec.externalIPs[{i}]");
        let Ok(addr) = ip.parse::<IpAddr>() else {
            return Err(ValidationError::field(field(), format!("{ip:?} is not an IP address")));
        };
        if let Some(why) = special_address(addr) {
            return Err(ValidationError::field(
                field(),
                format!("{ip} is {why}, which no node can serve as a frontend"),
            ));
        }
    }
    for (field, value, allowed) in [
        ("spec.externalTrafficPolicy", &spec.external_traffic_policy, &["Cluster", "Local"][..]),
        ("spec.internalTrafficPolicy", &spec.internal_traffic_policy, &["Cluster", "Local"][..]),
        ("spec.sessionAffinity", &spec.session_affinity, &["None", "ClientIP"][..]),
        ("spec.ipFamilyPolicy", &spec.ip_family_policy, &["SingleStack", "PreferDualStack", "RequireDualStack"][..]),
    ] {
        if let Some(v) = value
            && !allowed.contains(&v.as_str())
        {
            return Err(ValidationError::field(field, format!("{v:?} is not one of {}", allowed.join(", "))));
        }
    }
    for (i, fam) in spec.ip_families.iter().enumerate() {
        if fam != "IPv4" && fam != "IPv6" {
            return Err(ValidationError::field(
                format!("spec.ipFamilies[{i}]"),
                format!("{fam:?} is not one of IPv4, IPv6"),
            ));
        }
    }
    if let Some(sel) = &spec.selector {
        for (k, v) in sel {
            label_key(k).map_err(|e| e.under(&format!("spec.selector.{k}")))?;
            label_value(v).map_err(|e| e.under(&format!("spec.selector.{k}")))?;
        }
    }
    Ok(())
}

/// The service CIDR when none is configured: kube-apiserver's and the operator's default.
pub const DEFAULT_SERVICE_CIDR: &str = "10.96.0.0/16";

/// Refuses a Service whose `spec.clusterIP` or `spec.clusterIPs` lie outside the cluster's
/// service CIDR, as kube-apiserver does with its `--service-cluster-ip-range`: the operator can
/// never allocate such an address, and refuses the Service later, where its author does not look.
/// Headless (`None`) and unset addresses pass; other kinds pass.
pub fn cluster_ips_in_service_cidr(obj: &Object, service_cidr: Ipv4Net) -> Result<(), ValidationError> {
    if obj.kind != "Service" {
        return Ok(());
    }
    let single = obj.lookup_path("spec.clusterIP").map(|ip| ("spec.clusterIP".to_string(), ip));
    let listed = match obj.lookup_path("spec.clusterIPs") {
        Some(Value::Array(ips)) => ips,
        _ => Vec::new(),
    };
    let listed = listed.into_iter().enumerate().map(|(i, ip)| (format!("spec.clusterIPs[{i}]"), ip));
    for (field, ip) in single.into_iter().chain(listed) {
        let Some(ip) = ip.as_str() else { continue };
        if ip.is_empty() || ip == "None" {
            continue;
        }
        let inside = matches!(ip.parse::<IpAddr>(), Ok(IpAddr::V4(v4)) if service_cidr.contains(&v4));
        if !inside {
            return Err(ValidationError::field(
                field,
                format!("{ip} is not in the service CIDR {service_cidr}: cluster IPs are allocated from it"),
            ));
        }
    }
    Ok(())
}

fn deployment(d: &types::Deployment) -> Result<(), ValidationError> {
    if let Some(r) = d.spec.replicas
        && r < 0
    {
        return Err(ValidationError::field("spec.replicas", format!("must be >= 0, got {r}")));
    }
    let selector = Selector::from_label_selector(&d.spec.selector).map_err(|e| e.under("spec.selector"))?;
    if selector.is_empty() {
        return Err(ValidationError::field("spec.selector", "is required and must not be empty"));
    }
    if !selector.matches(&d.spec.template.metadata.labels) {
        return Err(ValidationError::field(
            "spec.template.metadata.labels",
            "`selector` does not match template `labels`",
        ));
    }
    pod_spec(&d.spec.template.spec).map_err(|e| e.under("spec.template.spec"))
}

fn pod_spec(spec: &types::PodSpec) -> Result<(), ValidationError> {
    if spec.containers.is_empty() {
        return Err(ValidationError::field("containers", "at least one container is required"));
    }
    for (i, c) in spec.containers.iter().enumerate() {
        dns_label(&c.name).map_err(|e| e.under(&format!("containers[{i}].name")))?;
        if c.image.is_empty() {
            return Err(ValidationError::field(format!("containers[{i}].image"), "is required"));
        }
        for (j, p) in c.ports.iter().enumerate() {
            port_number(p.container_port).map_err(|e| e.under(&format!("containers[{i}].ports[{j}].containerPort")))?;
        }
    }
    if let Some(aff) = spec.affinity.as_ref().and_then(|a| a.pod_anti_affinity.as_ref()) {
        for (i, term) in aff.required_during_scheduling_ignored_during_execution.iter().enumerate() {
            let at = format!("affinity.podAntiAffinity.requiredDuringSchedulingIgnoredDuringExecution[{i}]");
            if term.topology_key.is_empty() {
                return Err(ValidationError::field(format!("{at}.topologyKey"), "is required"));
            }
            if let Some(sel) = &term.label_selector {
                Selector::from_label_selector(sel).map_err(|e| e.under(&format!("{at}.labelSelector")))?;
            }
        }
    }
    Ok(())
}

fn lb_ip_pool(pool: &types::LbIpPool) -> Result<(), ValidationError> {
    for (i, block) in pool.spec.blocks.iter().enumerate() {
        let at = format!("spec.blocks[{i}]");
        match (&block.cidr, &block.start, &block.stop) {
            (Some(cidr), _, _) if !cidr.is_empty() => {
                parse_cidr(cidr).map_err(|r| ValidationError::field(format!("{at}.cidr"), r))?;
            }
            (_, Some(start), stop) => {
                let s: IpAddr = start.parse().map_err(|_| {
                    ValidationError::field(format!("{at}.start"), format!("{start:?} is not an IP address"))
                })?;
                if let Some(stop) = stop.as_deref().filter(|s| !s.is_empty()) {
                    let e: IpAddr = stop.parse().map_err(|_| {
                        ValidationError::field(format!("{at}.stop"), format!("{stop:?} is not an IP address"))
                    })?;
                    if s.is_ipv4() != e.is_ipv4() {
                        return Err(ValidationError::field(
                            at,
                            format!("start {s} and stop {e} are of different address families"),
                        ));
                    }
                    if s > e {
                        return Err(ValidationError::field(at, format!("start {s} is after stop {e}")));
                    }
                }
            }
            (_, None, Some(_)) => {
                return Err(ValidationError::field(at, "stop without start: start and stop must be in the same block"));
            }
            _ => return Err(ValidationError::field(at, "a block needs either cidr or start (and optionally stop)")),
        }
    }
    if let Some(v) = &pool.spec.allow_first_last_ips
        && v != "Yes"
        && v != "No"
    {
        return Err(ValidationError::field("spec.allowFirstLastIPs", format!("{v:?} is not one of Yes, No")));
    }
    if let Some(sel) = &pool.spec.service_selector {
        Selector::from_label_selector(sel).map_err(|e| e.under("spec.serviceSelector"))?;
    }
    Ok(())
}

fn l2_policy(policy: &types::L2AnnouncementPolicy) -> Result<(), ValidationError> {
    for (field, sel) in
        [("spec.serviceSelector", &policy.spec.service_selector), ("spec.nodeSelector", &policy.spec.node_selector)]
    {
        if let Some(sel) = sel {
            Selector::from_label_selector(sel).map_err(|e| e.under(field))?;
        }
    }
    for (i, pattern) in policy.spec.interfaces.iter().enumerate() {
        regex::Regex::new(pattern).map_err(|e| {
            ValidationError::field(
                format!("spec.interfaces[{i}]"),
                format!("{pattern:?} is not a valid regular expression: {e}"),
            )
        })?;
    }
    Ok(())
}

/// Parses `a.b.c.d/len` or an IPv6 CIDR, returning why not.
pub fn parse_cidr(cidr: &str) -> Result<(IpAddr, u8), String> {
    let (addr, len) = cidr.split_once('/').ok_or_else(|| format!("{cidr:?} is not a CIDR (missing /prefix-length)"))?;
    let addr: IpAddr = addr.parse().map_err(|_| format!("{cidr:?} is not a CIDR ({addr:?} is not an IP address)"))?;
    let max = if addr.is_ipv4() { 32 } else { 128 };
    // Digits only, no sign and no leading zero: `/+8` and `/08` are not prefix lengths.
    let canonical = !len.is_empty() && len.bytes().all(|b| b.is_ascii_digit()) && (len == "0" || !len.starts_with('0'));
    let len: u8 = Some(len)
        .filter(|_| canonical)
        .and_then(|l| l.parse().ok())
        .filter(|l| *l <= max)
        .ok_or_else(|| format!("{cidr:?} is not a CIDR (prefix length must be 0-{max})"))?;
    Ok((addr, len))
}

fn port_number(port: i64) -> Result<(), ValidationError> {
    if (1..=65535).contains(&port) {
        Ok(())
    } else {
        Err(ValidationError::new(format!("must be between 1 and 65535, got {port}")))
    }
}

/// RFC 1123 subdomain: lower-case alphanumerics, `-` and `.`, at most 253 characters.
pub fn dns_subdomain(name: &str) -> Result<(), ValidationError> {
    let ok = !name.is_empty() && name.len() <= 253 && name.split('.').all(|part| is_dns_label(part, 63));
    if ok {
        Ok(())
    } else {
        Err(ValidationError::new(format!(
            "{name:?} is not a valid name: lower-case letters, digits, '-' and '.', starting and ending with a letter or digit, at most 253 characters"
        )))
    }
}

/// RFC 1123 label: lower-case alphanumerics and `-`, at most 63 characters.
pub fn dns_label(name: &str) -> Result<(), ValidationError> {
    if is_dns_label(name, 63) {
        Ok(())
    } else {
        Err(ValidationError::new(format!(
            "{name:?} is not a valid name: lower-case letters, digits and '-', starting and ending with a letter or digit, at most 63 characters"
        )))
    }
}

fn is_dns_label(s: &str, max: usize) -> bool {
    !s.is_empty()
        && s.len() <= max
        && s.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

/// A label or annotation key: optional DNS-subdomain prefix and `/`, then a name of at most 63
/// characters of alphanumerics, `-`, `_` and `.`, starting and ending alphanumeric.
pub fn label_key(key: &str) -> Result<(), ValidationError> {
    let (prefix, name) = match key.rsplit_once('/') {
        Some((p, n)) => (Some(p), n),
        None => (None, key),
    };
    if let Some(p) = prefix
        && dns_subdomain(p).is_err()
    {
        return Err(ValidationError::new(format!("{key:?} is not a valid key: prefix {p:?} must be a DNS subdomain")));
    }
    if !is_label_name(name) {
        return Err(ValidationError::new(format!(
            "{key:?} is not a valid key: the name part must be 1-63 characters of letters, digits, '-', '_' or '.', starting and ending with a letter or digit"
        )));
    }
    Ok(())
}

/// A label value: empty, or like a key's name part.
pub fn label_value(value: &str) -> Result<(), ValidationError> {
    if value.is_empty() || is_label_name(value) {
        Ok(())
    } else {
        Err(ValidationError::new(format!(
            "{value:?} is not a valid label value: at most 63 characters of letters, digits, '-', '_' or '.', starting and ending with a letter or digit"
        )))
    }
}

fn is_label_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
        && s.as_bytes()[0].is_ascii_alphanumeric()
        && s.as_bytes()[s.len() - 1].is_ascii_alphanumeric()
}

fn kind_of(v: &Value) -> &'static str {
    match v {
        Value::Null => "an empty document",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "a mapping",
    }
}

/// Why an address cannot be a Service's external IP, as Kubernetes refuses them: unspecified,
/// loopback, link-local, multicast or broadcast.
fn special_address(addr: IpAddr) -> Option<&'static str> {
    match addr {
        IpAddr::V4(a) if a.is_unspecified() => Some("unspecified"),
        IpAddr::V4(a) if a.is_loopback() => Some("a loopback address"),
        IpAddr::V4(a) if a.is_link_local() => Some("link-local"),
        IpAddr::V4(a) if a.octets()[..3] == [224, 0, 0] => Some("link-local multicast"),
        IpAddr::V4(a) if a.is_multicast() => Some("multicast"),
        IpAddr::V4(a) if a.is_broadcast() => Some("the broadcast address"),
        IpAddr::V6(a) if a.is_unspecified() => Some("unspecified"),
        IpAddr::V6(a) if a.is_loopback() => Some("a loopback address"),
        IpAddr::V6(a) if a.segments()[0] & 0xffc0 == 0xfe80 => Some("link-local"),
        IpAddr::V6(a) if a.segments()[0] & 0xff0f == 0xff02 => Some("link-local multicast"),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::parse_cidr;

    #[test]
    fn cidr_prefix_lengths_are_canonical() {
        assert!(parse_cidr("10.0.0.0/8").is_ok());
        assert!(parse_cidr("10.0.0.0/0").is_ok());
        assert!(parse_cidr("fd00::/64").is_ok());
        for bad in ["10.0.0.0/+8", "10.0.0.0/08", "10.0.0.0/33", "10.0.0.0/", "10.0.0.0", "fd00::/129", "x/8"] {
            assert!(parse_cidr(bad).is_err(), "{bad} accepted");
        }
    }
}
