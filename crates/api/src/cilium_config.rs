//! The settings of `kube-system/cilium-config`, with Cilium's key names, as `cilia config set`
//! writes them and agents read them: which keys exist, which values each takes, their defaults,
//! and the rules between keys. Pure, so the CLI rejects a bad `key=value` before anything is
//! written and an agent never starts from a configuration the CLI would refuse.

use std::collections::BTreeMap;
use std::fmt;

use crate::error::ValidationError;

pub const NAMESPACE: &str = "kube-system";
pub const NAME: &str = "cilium-config";

/// What a key accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ValueKind {
    /// One of the listed words.
    OneOf(&'static [&'static str]),
    Bool,
    /// An integer in the range (inclusive).
    Int(u32, u32),
    /// An IPv4 network address with prefix length (`172.20.0.0/16`), or empty.
    Ipv4CidrOrEmpty,
}

impl fmt::Display for ValueKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ValueKind::OneOf(words) => f.write_str(&words.join(", ")),
            ValueKind::Bool => f.write_str("true, false"),
            ValueKind::Int(lo, hi) => write!(f, "an integer from {lo} to {hi}"),
            ValueKind::Ipv4CidrOrEmpty => f.write_str("an IPv4 CIDR like 172.20.0.0/16, or empty"),
        }
    }
}

pub struct KeySpec {
    pub key: &'static str,
    pub kind: ValueKind,
    /// The effective value when the key is not stored.
    pub default: &'static str,
}

pub const ROUTING_MODES: &[&str] = &["native", "tunnel", "hybrid"];

/// Every key cilia knows, in the order `cilia config view` prints unset defaults.
pub static KEYS: &[KeySpec] = &[
    KeySpec { key: "routing-mode", kind: ValueKind::OneOf(ROUTING_MODES), default: "tunnel" },
    KeySpec { key: "tunnel-protocol", kind: ValueKind::OneOf(&["vxlan"]), default: "vxlan" },
    KeySpec { key: "tunnel-port", kind: ValueKind::Int(1, 65535), default: "8472" },
    KeySpec { key: "auto-direct-node-routes", kind: ValueKind::Bool, default: "false" },
    KeySpec { key: "direct-routing-skip-unreachable", kind: ValueKind::Bool, default: "false" },
    KeySpec { key: "ipv4-native-routing-cidr", kind: ValueKind::Ipv4CidrOrEmpty, default: "" },
    KeySpec { key: "kube-proxy-replacement", kind: ValueKind::Bool, default: "true" },
    KeySpec { key: "bpf-lb-algorithm", kind: ValueKind::OneOf(&["random", "maglev"]), default: "random" },
    KeySpec { key: "enable-l2-announcements", kind: ValueKind::Bool, default: "false" },
    KeySpec { key: "mtu", kind: ValueKind::Int(576, 65535), default: "1500" },
];

pub fn spec(key: &str) -> Option<&'static KeySpec> {
    KEYS.iter().find(|k| k.key == key)
}

fn valid_keys() -> String {
    KEYS.iter().map(|k| k.key).collect::<Vec<_>>().join(", ")
}

/// Checks one `key=value`; the error lists the valid keys or values.
pub fn check_value(key: &str, value: &str) -> Result<(), ValidationError> {
    let Some(spec) = spec(key) else {
        return Err(ValidationError::field(
            format!("data.{key}"),
            format!("unknown key {key:?}; valid keys: {}", valid_keys()),
        ));
    };
    let ok = match spec.kind {
        ValueKind::OneOf(words) => words.contains(&value),
        ValueKind::Bool => value == "true" || value == "false",
        ValueKind::Int(lo, hi) => value.parse::<u32>().is_ok_and(|n| (lo..=hi).contains(&n)),
        ValueKind::Ipv4CidrOrEmpty => value.is_empty() || value.parse::<ipnet::Ipv4Net>().is_ok_and(|c| c.trunc() == c),
    };
    if ok {
        Ok(())
    } else {
        Err(ValidationError::field(
            format!("data.{key}"),
            format!("invalid value {value:?} for {key}; valid values: {}", spec.kind),
        ))
    }
}

/// Checks every key and the rules between keys of a whole configuration.
pub fn check(data: &BTreeMap<String, String>) -> Result<(), ValidationError> {
    for (k, v) in data {
        check_value(k, v)?;
    }
    let cfg = CiliumConfig::from_data(data);
    if cfg.routing_mode == "tunnel" && cfg.auto_direct_node_routes {
        return Err(ValidationError::field(
            "data.auto-direct-node-routes",
            "auto-direct-node-routes cannot be used with routing-mode tunnel: packets must be routed through the \
             tunnel device (set auto-direct-node-routes=false, or use routing-mode hybrid)",
        ));
    }
    Ok(())
}

/// The effective settings: stored values, defaults for the rest. Built from data that passed
/// [`check`]; unparsable values fall back to the default.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CiliumConfig {
    pub routing_mode: String,
    pub tunnel_protocol: String,
    pub tunnel_port: u16,
    pub auto_direct_node_routes: bool,
    pub ipv4_native_routing_cidr: Option<ipnet::Ipv4Net>,
    pub kube_proxy_replacement: bool,
    pub bpf_lb_algorithm: String,
    pub enable_l2_announcements: bool,
    pub mtu: u32,
}

impl CiliumConfig {
    pub fn from_data(data: &BTreeMap<String, String>) -> Self {
        let get = |key: &str| -> String {
            data.get(key).cloned().unwrap_or_else(|| spec(key).map(|s| s.default.to_string()).unwrap_or_default())
        };
        let default_of = |key: &str| spec(key).map(|s| s.default).unwrap_or_default();
        CiliumConfig {
            routing_mode: get("routing-mode"),
            tunnel_protocol: get("tunnel-protocol"),
            tunnel_port: get("tunnel-port")
                .parse()
                .unwrap_or_else(|_| default_of("tunnel-port").parse().unwrap_or(8472)),
            auto_direct_node_routes: get("auto-direct-node-routes") == "true",
            ipv4_native_routing_cidr: get("ipv4-native-routing-cidr").parse().ok(),
            kube_proxy_replacement: get("kube-proxy-replacement") == "true",
            bpf_lb_algorithm: get("bpf-lb-algorithm"),
            enable_l2_announcements: get("enable-l2-announcements") == "true",
            mtu: get("mtu").parse().unwrap_or(1500),
        }
    }
}

/// `key  value` lines like `cilium config view`: stored keys, then defaults of unset known keys,
/// sorted by key.
pub fn view(data: &BTreeMap<String, String>) -> String {
    let mut all: BTreeMap<&str, &str> = KEYS.iter().map(|k| (k.key, k.default)).collect();
    for (k, v) in data {
        all.insert(k, v);
    }
    let width = all.keys().map(|k| k.len()).max().unwrap_or(0);
    all.iter().map(|(k, v)| format!("{k:<width$}   {v}\n")).collect()
}

/// Parses `key=value` arguments (`cilia config set`), checking each.
pub fn parse_assignments(args: &[String]) -> Result<BTreeMap<String, String>, ValidationError> {
    let mut out = BTreeMap::new();
    for arg in args {
        let Some((k, v)) = arg.split_once('=') else {
            return Err(ValidationError::new(format!("{arg:?} is not key=value; valid keys: {}", valid_keys())));
        };
        check_value(k, v)?;
        out.insert(k.to_string(), v.to_string());
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn values_are_checked_with_the_valid_ones_listed() {
        assert!(check_value("routing-mode", "tunnel").is_ok());
        let e = check_value("routing-mode", "tunel").unwrap_err().to_string();
        assert!(e.contains("invalid value \"tunel\" for routing-mode; valid values: native, tunnel, hybrid"), "{e}");
        let e = check_value("routing-mod", "tunnel").unwrap_err().to_string();
        assert!(e.contains("unknown key \"routing-mod\"; valid keys: routing-mode, tunnel-protocol"), "{e}");
        assert!(check_value("auto-direct-node-routes", "yes").is_err());
        assert!(check_value("tunnel-port", "0").is_err());
        assert!(check_value("ipv4-native-routing-cidr", "172.20.1.0/16").is_err());
        assert!(check_value("ipv4-native-routing-cidr", "172.20.0.0/16").is_ok());
        assert!(check_value("ipv4-native-routing-cidr", "").is_ok());
    }

    #[test]
    fn tunnel_with_direct_routes_is_refused() {
        let bad = data(&[("routing-mode", "tunnel"), ("auto-direct-node-routes", "true")]);
        assert!(check(&bad).unwrap_err().to_string().contains("cannot be used with routing-mode tunnel"));
        assert!(check(&data(&[("routing-mode", "hybrid"), ("auto-direct-node-routes", "true")])).is_ok());
    }

    #[test]
    fn assignments_and_effective_view() {
        let args: Vec<String> = ["routing-mode=tunnel", "auto-direct-node-routes=false"].map(String::from).to_vec();
        let set = parse_assignments(&args).unwrap();
        assert_eq!(set, data(&[("routing-mode", "tunnel"), ("auto-direct-node-routes", "false")]));
        assert!(parse_assignments(&["routing-mode".to_string()]).is_err());
        let cfg = CiliumConfig::from_data(&set);
        assert_eq!(cfg.routing_mode, "tunnel");
        assert_eq!(cfg.tunnel_port, 8472);
        assert!(cfg.kube_proxy_replacement);
        let v = view(&set);
        assert!(v.lines().any(|l| l.split_whitespace().collect::<Vec<_>>() == ["routing-mode", "tunnel"]), "{v}");
        assert!(v.lines().any(|l| l.split_whitespace().collect::<Vec<_>>() == ["tunnel-protocol", "vxlan"]), "{v}");
    }
}
