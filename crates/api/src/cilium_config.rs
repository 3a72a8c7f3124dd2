//! The settings of `kube-system/cilium-config`, with Cilium's key names, as `cilia config set`
//! writes them and agents read them: which keys exist, their Helm names (`helm upgrade --set
//! l2announcements.enabled=true` sets `enable-l2-announcements`), which values each takes, their
//! defaults, and the rules between keys. Pure, so the CLI rejects a bad `key=value` before anything
//! is written and an agent never starts from a configuration the CLI would refuse.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

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
    /// A Go-style duration (`100ms`, `1s`, `1.5s`, `1m30s`) from the first to the second bound,
    /// in milliseconds, inclusive.
    Duration(u64, u64),
}

impl fmt::Display for ValueKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ValueKind::OneOf(words) => f.write_str(&words.join(", ")),
            ValueKind::Bool => f.write_str("true, false"),
            ValueKind::Int(lo, hi) => write!(f, "an integer from {lo} to {hi}"),
            ValueKind::Ipv4CidrOrEmpty => f.write_str("an IPv4 CIDR like 172.20.0.0/16, or empty"),
            ValueKind::Duration(lo, hi) => write!(
                f,
                "a duration like 100ms or 1.5s, from {} to {}",
                format_duration(Duration::from_millis(*lo)),
                format_duration(Duration::from_millis(*hi))
            ),
        }
    }
}

pub struct KeySpec {
    /// The ConfigMap key, as Cilium names it (`enable-l2-announcements`).
    pub key: &'static str,
    /// The Helm value that sets it (`l2announcements.enabled`), as the guide's `helm upgrade
    /// --set` writes it.
    pub helm: &'static str,
    pub kind: ValueKind,
    /// The effective value when the key is not stored.
    pub default: &'static str,
}

pub const ROUTING_MODES: &[&str] = &["native", "tunnel", "hybrid"];

pub const L2_HEARTBEAT_INTERVAL: &str = "l2-announcements-heartbeat-interval";
pub const BPF_LB_MAP_MAX: &str = "bpf-lb-map-max";
pub const L2_DEAD_AFTER: &str = "l2-announcements-dead-after";
pub const CONNTRACK_GC_INTERVAL: &str = "conntrack-gc-interval";

/// Every key cilia knows, in the order `cilia config view` prints unset defaults.
pub static KEYS: &[KeySpec] = &[
    KeySpec { key: "routing-mode", helm: "routingMode", kind: ValueKind::OneOf(ROUTING_MODES), default: "tunnel" },
    KeySpec { key: "tunnel-protocol", helm: "tunnelProtocol", kind: ValueKind::OneOf(&["vxlan"]), default: "vxlan" },
    KeySpec { key: "tunnel-port", helm: "tunnelPort", kind: ValueKind::Int(1, 65535), default: "8472" },
    KeySpec { key: "auto-direct-node-routes", helm: "autoDirectNodeRoutes", kind: ValueKind::Bool, default: "false" },
    KeySpec {
        key: "direct-routing-skip-unreachable",
        helm: "directRoutingSkipUnreachable",
        kind: ValueKind::Bool,
        default: "false",
    },
    KeySpec {
        key: "ipv4-native-routing-cidr",
        helm: "ipv4NativeRoutingCIDR",
        kind: ValueKind::Ipv4CidrOrEmpty,
        default: "",
    },
    KeySpec { key: "kube-proxy-replacement", helm: "kubeProxyReplacement", kind: ValueKind::Bool, default: "true" },
    KeySpec {
        key: "bpf-lb-algorithm",
        helm: "loadBalancer.algorithm",
        kind: ValueKind::OneOf(&["random", "maglev"]),
        default: "random",
    },
    // Entries of each service map (frontend rows, backends, rev-NAT): Cilium's key. A new value
    // recreates the maps when the agents restart.
    KeySpec { key: BPF_LB_MAP_MAX, helm: "bpf.lbMapMax", kind: ValueKind::Int(16, 16_777_216), default: "65536" },
    KeySpec {
        key: "enable-l2-announcements",
        helm: "l2announcements.enabled",
        kind: ValueKind::Bool,
        default: "false",
    },
    KeySpec {
        key: "enable-l2-neigh-discovery",
        helm: "l2NeighDiscovery.enabled",
        kind: ValueKind::Bool,
        default: "true",
    },
    KeySpec {
        key: L2_HEARTBEAT_INTERVAL,
        helm: "l2announcements.heartbeatInterval",
        kind: ValueKind::Duration(10, 10_000),
        default: "100ms",
    },
    KeySpec {
        key: L2_DEAD_AFTER,
        helm: "l2announcements.deadAfter",
        kind: ValueKind::Duration(30, 60_000),
        default: "500ms",
    },
    KeySpec { key: "mtu", helm: "MTU", kind: ValueKind::Int(576, 65535), default: "1500" },
    // How often the agents sweep the conntrack and SNAT maps for flows that ended: Cilium's key
    // (Cilium's default adapts the interval; cilia's is fixed).
    KeySpec {
        key: CONNTRACK_GC_INTERVAL,
        helm: "conntrackGCInterval",
        kind: ValueKind::Duration(100, 3_600_000),
        default: "30s",
    },
];

/// Cilium settings cilia refuses with an explanation rather than as unknown: Cilium's per-Service
/// lease tuning, by Helm name and ConfigMap key. cilia elects no per-Service leases: nodes send
/// heartbeats and a node that misses them is dead, so the two heartbeat settings replace these.
const REFUSED: &[(&str, &str)] = &[
    ("l2announcements.leaseDuration", "l2-announcements-lease-duration"),
    ("l2announcements.leaseRenewDeadline", "l2-announcements-renew-deadline"),
    ("l2announcements.leaseRetryPeriod", "l2-announcements-retry-period"),
];

/// The key spec by ConfigMap key.
pub fn spec(key: &str) -> Option<&'static KeySpec> {
    KEYS.iter().find(|k| k.key == key)
}

/// The key spec by ConfigMap key or Helm name.
pub fn spec_by_any_name(name: &str) -> Option<&'static KeySpec> {
    KEYS.iter().find(|k| k.key == name || k.helm == name)
}

fn valid_keys() -> String {
    KEYS.iter().map(|k| k.key).collect::<Vec<_>>().join(", ")
}

/// Levenshtein distance over chars, case-insensitive (Helm names mix cases).
fn edit_distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.to_lowercase().chars().collect();
    let b: Vec<char> = b.to_lowercase().chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.iter().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            let substitution = prev[j] + usize::from(ca != cb);
            cur[j + 1] = substitution.min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

/// The known name (ConfigMap key or Helm name, in the spelling it resembles) closest to `name`,
/// if it is close enough to be a typo of it.
pub fn suggest(name: &str) -> Option<&'static str> {
    let (distance, best) = KEYS
        .iter()
        .flat_map(|k| [k.key, k.helm])
        .map(|candidate| (edit_distance(name, candidate), candidate))
        .min_by_key(|(d, _)| *d)?;
    let limit = (name.chars().count() / 3).max(2);
    (distance <= limit).then_some(best)
}

/// Resolves a ConfigMap key or a Helm name to its key spec; unknown names get the closest known
/// name as a suggestion, Cilium's lease settings an explanation.
pub fn resolve(name: &str) -> Result<&'static KeySpec, ValidationError> {
    if let Some(spec) = spec_by_any_name(name) {
        return Ok(spec);
    }
    if REFUSED.iter().any(|(helm, key)| *helm == name || *key == name) {
        return Err(ValidationError::field(
            format!("data.{name}"),
            format!(
                "{name} is not supported: cilia elects no per-Service leases for L2 announcements; every node \
                 sends heartbeats and a node that misses them is declared dead. Tune \
                 l2announcements.heartbeatInterval ({L2_HEARTBEAT_INTERVAL}) and l2announcements.deadAfter \
                 ({L2_DEAD_AFTER}) instead"
            ),
        ));
    }
    let reason = match suggest(name) {
        Some(best) => format!("unknown setting {name:?}; did you mean {best}?"),
        None => format!(
            "unknown setting {name:?}; valid keys: {} (or their Helm names, see `cilia config view --helm`)",
            valid_keys()
        ),
    };
    Err(ValidationError::field(format!("data.{name}"), reason))
}

/// Parses a Go-style duration: a sequence of decimal numbers, each with a unit (`ns`, `us`, `µs`,
/// `ms`, `s`, `m`, `h`), like `100ms`, `1.5s` or `1m30s`; `0` alone is zero.
pub fn parse_duration(text: &str) -> Option<Duration> {
    if text == "0" {
        return Some(Duration::ZERO);
    }
    if text.is_empty() {
        return None;
    }
    let mut rest = text;
    let mut total_nanos: f64 = 0.0;
    while !rest.is_empty() {
        let number_len = rest.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(rest.len());
        let (number, after) = rest.split_at(number_len);
        if number.is_empty() || number == "." || number.matches('.').count() > 1 {
            return None;
        }
        let value: f64 = number.parse().ok()?;
        let unit_len = after.find(|c: char| c.is_ascii_digit() || c == '.').unwrap_or(after.len());
        let (unit, after) = after.split_at(unit_len);
        let scale = match unit {
            "ns" => 1.0,
            "us" | "µs" | "μs" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            "m" => 60e9,
            "h" => 3600e9,
            _ => return None,
        };
        total_nanos += value * scale;
        rest = after;
    }
    if !total_nanos.is_finite() || total_nanos > u64::MAX as f64 {
        return None;
    }
    Some(Duration::from_nanos(total_nanos.round() as u64))
}

/// A duration as Go prints short ones: `100ms`, `1.5s`, `2m0s`.
pub fn format_duration(d: Duration) -> String {
    let nanos = d.as_nanos();
    if nanos == 0 {
        return "0s".into();
    }
    if nanos < 1_000_000_000 && nanos.is_multiple_of(1_000_000) {
        return format!("{}ms", nanos / 1_000_000);
    }
    if nanos < 60_000_000_000 {
        return format!("{}s", trim_float(d.as_secs_f64()));
    }
    let secs = d.as_secs_f64();
    let minutes = (secs / 60.0).floor();
    format!("{}m{}s", minutes as u64, trim_float(secs - minutes * 60.0))
}

fn trim_float(v: f64) -> String {
    let s = format!("{v:.9}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    s.to_string()
}

/// Checks one `key=value` (ConfigMap key); the error lists the valid keys or values.
pub fn check_value(key: &str, value: &str) -> Result<(), ValidationError> {
    let Some(spec) = spec(key) else {
        return Err(match resolve(key) {
            Err(e) => e,
            Ok(s) => ValidationError::field(
                format!("data.{key}"),
                format!("{key:?} is a Helm name; the ConfigMap key is {}", s.key),
            ),
        });
    };
    let ok = match spec.kind {
        ValueKind::OneOf(words) => words.contains(&value),
        ValueKind::Bool => value == "true" || value == "false",
        ValueKind::Int(lo, hi) => value.parse::<u32>().is_ok_and(|n| (lo..=hi).contains(&n)),
        ValueKind::Ipv4CidrOrEmpty => value.is_empty() || value.parse::<ipnet::Ipv4Net>().is_ok_and(|c| c.trunc() == c),
        ValueKind::Duration(lo, hi) => {
            parse_duration(value).is_some_and(|d| (Duration::from_millis(lo)..=Duration::from_millis(hi)).contains(&d))
        }
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
    if cfg.enable_l2_announcements && !cfg.kube_proxy_replacement {
        return Err(ValidationError::field(
            "data.enable-l2-announcements",
            "enable-l2-announcements=true requires kube-proxy-replacement=true: the ARP responder for \
             LoadBalancer IPs is part of the eBPF datapath (set kubeProxyReplacement=true as well)",
        ));
    }
    if cfg.l2_dead_after < cfg.l2_heartbeat_interval * 3 {
        return Err(ValidationError::field(
            format!("data.{L2_DEAD_AFTER}"),
            format!(
                "{L2_DEAD_AFTER} ({}) must be at least 3 × {L2_HEARTBEAT_INTERVAL} ({} × 3 = {}): a node is \
                 declared dead only after it missed three heartbeats",
                format_duration(cfg.l2_dead_after),
                format_duration(cfg.l2_heartbeat_interval),
                format_duration(cfg.l2_heartbeat_interval * 3)
            ),
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
    /// `bpf-lb-map-max`: entries of each service map (default 65536).
    pub bpf_lb_map_max: u32,
    pub enable_l2_announcements: bool,
    /// `enable-l2-neigh-discovery`: nodes learn their neighbours' MACs themselves (default true).
    pub enable_l2_neigh_discovery: bool,
    /// `l2-announcements-heartbeat-interval`: how often a node says it is alive (default 100ms).
    pub l2_heartbeat_interval: Duration,
    /// `l2-announcements-dead-after`: silence after which a node counts as dead (default 500ms).
    pub l2_dead_after: Duration,
    pub mtu: u32,
    /// `conntrack-gc-interval`: how often the flow state is swept (default 30s).
    pub conntrack_gc_interval: Duration,
}

impl CiliumConfig {
    pub fn from_data(data: &BTreeMap<String, String>) -> Self {
        let get = |key: &str| -> String {
            data.get(key).cloned().unwrap_or_else(|| spec(key).map(|s| s.default.to_string()).unwrap_or_default())
        };
        let default_of = |key: &str| spec(key).map(|s| s.default).unwrap_or_default();
        let duration =
            |key: &str| parse_duration(&get(key)).or_else(|| parse_duration(default_of(key))).unwrap_or(Duration::ZERO);
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
            bpf_lb_map_max: get(BPF_LB_MAP_MAX).parse().unwrap_or(65536),
            enable_l2_announcements: get("enable-l2-announcements") == "true",
            enable_l2_neigh_discovery: get("enable-l2-neigh-discovery") == "true",
            l2_heartbeat_interval: duration(L2_HEARTBEAT_INTERVAL),
            l2_dead_after: duration(L2_DEAD_AFTER),
            mtu: get("mtu").parse().unwrap_or(1500),
            conntrack_gc_interval: duration(CONNTRACK_GC_INTERVAL),
        }
    }
}

/// The effective `(key, value)` pairs: stored keys, then defaults of unset known keys, sorted by
/// key.
fn effective(data: &BTreeMap<String, String>) -> BTreeMap<&str, &str> {
    let mut all: BTreeMap<&str, &str> = KEYS.iter().map(|k| (k.key, k.default)).collect();
    for (k, v) in data {
        all.insert(k, v);
    }
    all
}

/// `key  value` lines like `cilium config view`: stored keys, then defaults of unset known keys,
/// sorted by key.
pub fn view(data: &BTreeMap<String, String>) -> String {
    let all = effective(data);
    let width = all.keys().map(|k| k.len()).max().unwrap_or(0);
    all.iter().map(|(k, v)| format!("{k:<width$}   {v}\n")).collect()
}

/// As [`view`], with the Helm name of each key in a third column (`-` for keys without one).
pub fn view_with_helm_names(data: &BTreeMap<String, String>) -> String {
    let all = effective(data);
    let kw = all.keys().map(|k| k.len()).max().unwrap_or(0);
    let vw = all.values().map(|v| v.len()).max().unwrap_or(0).max(1);
    all.iter()
        .map(|(k, v)| {
            let helm = spec(k).map_or("-", |s| s.helm);
            let v = if v.is_empty() { "\"\"" } else { v };
            format!("{k:<kw$}   {v:<vw$}   {helm}\n")
        })
        .collect()
}

/// Parses `name=value` arguments (`cilia config set`), where a name is a ConfigMap key or a Helm
/// name, checking each; returns the values by ConfigMap key. Later assignments of a key win.
pub fn parse_assignments(args: &[String]) -> Result<BTreeMap<String, String>, ValidationError> {
    let mut out = BTreeMap::new();
    for arg in args {
        let Some((name, v)) = arg.split_once('=') else {
            return Err(ValidationError::new(format!(
                "{arg:?} is not key=value (a ConfigMap key or a Helm name); valid keys: {}",
                valid_keys()
            )));
        };
        let spec = resolve(name.trim())?;
        let v = v.trim();
        check_value(spec.key, v)?;
        out.insert(spec.key.to_string(), v.to_string());
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
        assert!(e.contains("unknown setting \"routing-mod\"; did you mean routing-mode?"), "{e}");
        let e = check_value("zzz", "1").unwrap_err().to_string();
        assert!(e.contains("unknown setting \"zzz\"; valid keys: routing-mode, tunnel-protocol"), "{e}");
        let e = check_value("routingMode", "tunnel").unwrap_err().to_string();
        assert!(e.contains("a Helm name; the ConfigMap key is routing-mode"), "{e}");
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

    fn args(a: &[&str]) -> Vec<String> {
        a.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn every_helm_name_of_the_guide_maps_to_its_configmap_key() {
        let pairs = [
            ("kubeProxyReplacement", "kube-proxy-replacement", "true"),
            ("l2announcements.enabled", "enable-l2-announcements", "true"),
            ("l2NeighDiscovery.enabled", "enable-l2-neigh-discovery", "false"),
            ("routingMode", "routing-mode", "native"),
            ("tunnelProtocol", "tunnel-protocol", "vxlan"),
            ("tunnelPort", "tunnel-port", "8473"),
            ("autoDirectNodeRoutes", "auto-direct-node-routes", "true"),
            ("ipv4NativeRoutingCIDR", "ipv4-native-routing-cidr", "172.20.0.0/16"),
            ("loadBalancer.algorithm", "bpf-lb-algorithm", "maglev"),
            ("MTU", "mtu", "1450"),
            ("l2announcements.heartbeatInterval", "l2-announcements-heartbeat-interval", "200ms"),
            ("l2announcements.deadAfter", "l2-announcements-dead-after", "1s"),
        ];
        for (helm, key, value) in pairs {
            assert_eq!(resolve(helm).unwrap().key, key, "{helm}");
            assert_eq!(resolve(key).unwrap().key, key, "{key}");
            let set = parse_assignments(&[format!("{helm}={value}")]).unwrap();
            assert_eq!(set, data(&[(key, value)]), "{helm}");
        }
        // Every key has a Helm name, and no two keys share one.
        let mut helm: Vec<_> = KEYS.iter().map(|k| k.helm).collect();
        helm.sort_unstable();
        helm.dedup();
        assert_eq!(helm.len(), KEYS.len());
    }

    #[test]
    fn helm_names_and_configmap_keys_mix_and_later_ones_win() {
        let set = parse_assignments(&args(&[
            "l2announcements.enabled=true",
            "kube-proxy-replacement=true",
            "routingMode=tunnel",
            "routing-mode=hybrid",
        ]))
        .unwrap();
        assert_eq!(
            set,
            data(&[
                ("enable-l2-announcements", "true"),
                ("kube-proxy-replacement", "true"),
                ("routing-mode", "hybrid")
            ])
        );
        let e = parse_assignments(&args(&["l2announcements.enabled=yes"])).unwrap_err().to_string();
        assert!(e.contains("invalid value \"yes\" for enable-l2-announcements"), "{e}");
    }

    #[test]
    fn a_misspelt_name_suggests_the_closest_in_its_own_spelling() {
        let e = parse_assignments(&args(&["l2anouncements.enabled=true"])).unwrap_err().to_string();
        assert!(e.contains("did you mean l2announcements.enabled?"), "{e}");
        let e = parse_assignments(&args(&["enable-l2-anouncements=true"])).unwrap_err().to_string();
        assert!(e.contains("did you mean enable-l2-announcements?"), "{e}");
        let e = parse_assignments(&args(&["kubeProxyReplacment=true"])).unwrap_err().to_string();
        assert!(e.contains("did you mean kubeProxyReplacement?"), "{e}");
        assert_eq!(suggest("tunnelprotocol"), Some("tunnelProtocol"));
        assert_eq!(suggest("something-else-entirely"), None);
    }

    #[test]
    fn cilium_lease_settings_are_refused_naming_the_heartbeat_settings() {
        for name in [
            "l2announcements.leaseDuration",
            "l2announcements.leaseRenewDeadline",
            "l2announcements.leaseRetryPeriod",
            "l2-announcements-lease-duration",
        ] {
            let e = parse_assignments(&[format!("{name}=3s")]).unwrap_err().to_string();
            assert!(e.contains("elects no per-Service leases"), "{e}");
            assert!(e.contains("l2announcements.heartbeatInterval"), "{e}");
            assert!(e.contains("l2announcements.deadAfter"), "{e}");
        }
    }

    #[test]
    fn durations_parse_like_go() {
        let ms = Duration::from_millis;
        assert_eq!(parse_duration("100ms"), Some(ms(100)));
        assert_eq!(parse_duration("1s"), Some(ms(1000)));
        assert_eq!(parse_duration("1.5s"), Some(ms(1500)));
        assert_eq!(parse_duration("1m30s"), Some(ms(90_000)));
        assert_eq!(parse_duration("250us"), Some(Duration::from_micros(250)));
        assert_eq!(parse_duration("0"), Some(Duration::ZERO));
        for bad in ["", "1", "ms", "1.2.3s", "1x", "-1s", "1 s"] {
            assert_eq!(parse_duration(bad), None, "{bad}");
        }
        assert_eq!(format_duration(ms(100)), "100ms");
        assert_eq!(format_duration(ms(1500)), "1.5s");
        assert_eq!(format_duration(ms(10_000)), "10s");
        assert_eq!(format_duration(ms(90_000)), "1m30s");
    }

    #[test]
    fn l2_timing_values_are_bounded() {
        assert!(check_value(L2_HEARTBEAT_INTERVAL, "10ms").is_ok());
        assert!(check_value(L2_HEARTBEAT_INTERVAL, "10s").is_ok());
        let e = check_value(L2_HEARTBEAT_INTERVAL, "5ms").unwrap_err().to_string();
        assert!(e.contains("a duration like 100ms or 1.5s, from 10ms to 10s"), "{e}");
        assert!(check_value(L2_HEARTBEAT_INTERVAL, "11s").is_err());
        assert!(check_value(L2_DEAD_AFTER, "30ms").is_ok());
        assert!(check_value(L2_DEAD_AFTER, "1m").is_ok());
        assert!(check_value(L2_DEAD_AFTER, "29ms").is_err());
        assert!(check_value(L2_DEAD_AFTER, "61s").is_err());
        assert!(check_value(L2_DEAD_AFTER, "soon").is_err());
    }

    #[test]
    fn dead_after_must_cover_three_heartbeats() {
        assert!(check(&data(&[])).is_ok(), "defaults: 100ms and 500ms");
        assert!(check(&data(&[(L2_HEARTBEAT_INTERVAL, "200ms"), (L2_DEAD_AFTER, "600ms")])).is_ok());
        let e = check(&data(&[(L2_HEARTBEAT_INTERVAL, "200ms")])).unwrap_err().to_string();
        assert!(
            e.contains("l2-announcements-dead-after (500ms) must be at least 3 × l2-announcements-heartbeat-interval (200ms × 3 = 600ms)"),
            "{e}"
        );
        assert!(check(&data(&[(L2_DEAD_AFTER, "299ms")])).is_err());
    }

    #[test]
    fn l2_announcements_need_kube_proxy_replacement() {
        let bad = data(&[("enable-l2-announcements", "true"), ("kube-proxy-replacement", "false")]);
        let e = check(&bad).unwrap_err().to_string();
        assert!(e.contains("enable-l2-announcements=true requires kube-proxy-replacement=true"), "{e}");
        assert!(check(&data(&[("enable-l2-announcements", "true"), ("kube-proxy-replacement", "true")])).is_ok());
        assert!(check(&data(&[("enable-l2-announcements", "false"), ("kube-proxy-replacement", "false")])).is_ok());
    }

    #[test]
    fn l2_settings_are_exposed_with_their_defaults() {
        let cfg = CiliumConfig::from_data(&data(&[]));
        assert!(!cfg.enable_l2_announcements);
        assert!(cfg.enable_l2_neigh_discovery);
        assert_eq!(cfg.l2_heartbeat_interval, Duration::from_millis(100));
        assert_eq!(cfg.l2_dead_after, Duration::from_millis(500));
        let cfg = CiliumConfig::from_data(&data(&[
            ("enable-l2-neigh-discovery", "false"),
            (L2_HEARTBEAT_INTERVAL, "1.5s"),
            (L2_DEAD_AFTER, "5s"),
        ]));
        assert!(!cfg.enable_l2_neigh_discovery);
        assert_eq!(cfg.l2_heartbeat_interval, Duration::from_millis(1500));
        assert_eq!(cfg.l2_dead_after, Duration::from_secs(5));
    }

    #[test]
    fn the_guides_grep_of_the_view_still_finds_key_and_value() {
        let v = view(&data(&[("enable-l2-announcements", "true"), ("kube-proxy-replacement", "true")]));
        let lines: Vec<&str> = v.lines().filter(|l| l.contains("enable-l2") || l.contains("replacement")).collect();
        let columns: Vec<Vec<&str>> = lines.iter().map(|l| l.split_whitespace().collect()).collect();
        assert_eq!(
            columns,
            [
                vec!["enable-l2-announcements", "true"],
                vec!["enable-l2-neigh-discovery", "true"],
                vec!["kube-proxy-replacement", "true"]
            ],
            "{v}"
        );
        let h = view_with_helm_names(&data(&[]));
        let line = h.lines().find(|l| l.starts_with("enable-l2-announcements ")).unwrap();
        assert_eq!(
            line.split_whitespace().collect::<Vec<_>>(),
            ["enable-l2-announcements", "false", "l2announcements.enabled"]
        );
        let line = h.lines().find(|l| l.starts_with("ipv4-native-routing-cidr ")).unwrap();
        assert_eq!(
            line.split_whitespace().collect::<Vec<_>>(),
            ["ipv4-native-routing-cidr", "\"\"", "ipv4NativeRoutingCIDR"]
        );
    }

    #[test]
    fn the_deployment_manifests_config_map_is_valid() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../deploy/kubernetes/cilium-config.yaml");
        let text = std::fs::read_to_string(path).unwrap();
        let objects = crate::manifest::parse(path, &text, "default").unwrap();
        let data: BTreeMap<String, String> = serde_json::from_value(objects[0].body["data"].clone()).unwrap();
        check(&data).unwrap_or_else(|e| panic!("{path}: {e}"));
        assert_eq!(objects[0].metadata.namespace.as_deref(), Some("kube-system"));
    }
}
