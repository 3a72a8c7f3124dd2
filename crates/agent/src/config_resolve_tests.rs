//! [`AgentConfig::resolve`]: flags over the stored configuration over Cilium's defaults.

use std::collections::BTreeMap;
use std::error::Error as _;
use std::path::PathBuf;
use std::time::Duration;

use super::*;

/// The flags of `cilia agent --node k8s-w1` and nothing else.
fn flags() -> AgentFlags {
    AgentFlags {
        node: "k8s-w1".into(),
        routing_mode: None,
        auto_direct_node_routes: None,
        ipv4_native_routing_cidr: None,
        state_dir: PathBuf::from(DEFAULT_STATE_DIR),
        cni_socket: PathBuf::from(DEFAULT_CNI_SOCKET),
        mtu: None,
        lease_ttl: Duration::from_secs(10),
        kube_proxy_replacement: None,
        bpf_dir: None,
        devices: Vec::new(),
        lb_algorithm: None,
        socket_lb: true,
        dns_port: 53,
        l2_heartbeat_port: 4250,
    }
}

fn data(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

#[test]
fn without_stored_configuration_native_routing_and_defaults() {
    let c = AgentConfig::resolve(&flags(), None).unwrap();
    assert_eq!(c.node_name, "k8s-w1");
    assert_eq!(c.routing_mode, RoutingMode::Native);
    assert_eq!(c.mtu, 1500);
    assert_eq!(c.bpf_dir, PathBuf::from("/sys/fs/bpf/cilia/k8s-w1"));
    let lb = c.service_lb.expect("kube-proxy replacement is Cilium's default");
    assert_eq!((lb.bpf_dir, lb.algorithm, lb.socket_lb), (c.bpf_dir, LbAlgorithm::Random, true));
    assert_eq!(c.dns_port, Some(53));
    assert!(c.l2.is_none());
}

#[test]
fn stored_settings_apply_where_no_flag_is_given() {
    let stored = data(&[
        ("routing-mode", "tunnel"),
        ("tunnel-port", "8473"),
        ("mtu", "1400"),
        ("bpf-lb-algorithm", "maglev"),
        ("enable-l2-announcements", "true"),
    ]);
    let c = AgentConfig::resolve(&flags(), Some(&stored)).unwrap();
    assert_eq!((c.routing_mode, c.tunnel_port, c.mtu), (RoutingMode::Tunnel, 8473, 1400));
    assert_eq!(c.service_lb.as_ref().map(|lb| lb.algorithm), Some(LbAlgorithm::Maglev));
    let l2 = c.l2.expect("enable-l2-announcements");
    assert_eq!(
        (l2.port, l2.heartbeat_interval, l2.dead_after),
        (4250, Duration::from_millis(100), Duration::from_millis(500))
    );
}

#[test]
fn flags_win_over_stored_settings() {
    let stored = data(&[("routing-mode", "tunnel"), ("mtu", "1400"), ("bpf-lb-algorithm", "maglev")]);
    let f = AgentFlags {
        routing_mode: Some(RoutingMode::Hybrid),
        auto_direct_node_routes: Some(true),
        mtu: Some(9000),
        lb_algorithm: Some(LbAlgorithm::Random),
        bpf_dir: Some(PathBuf::from("/sys/fs/bpf/elsewhere")),
        devices: vec!["eth1".into()],
        dns_port: 0,
        ..flags()
    };
    let c = AgentConfig::resolve(&f, Some(&stored)).unwrap();
    assert_eq!((c.routing_mode, c.auto_direct_node_routes, c.mtu), (RoutingMode::Hybrid, true, 9000));
    let lb = c.service_lb.unwrap();
    assert_eq!((lb.algorithm, lb.devices), (LbAlgorithm::Random, vec!["eth1".to_string()]));
    assert_eq!(lb.bpf_dir, PathBuf::from("/sys/fs/bpf/elsewhere"));
    assert_eq!(c.dns_port, None, "port 0 turns the DNS server off");

    let off = AgentFlags { kube_proxy_replacement: Some(false), ..flags() };
    assert!(AgentConfig::resolve(&off, Some(&stored)).unwrap().service_lb.is_none());
}

#[test]
fn an_invalid_stored_configuration_names_the_configmap_and_the_key() {
    let err = AgentConfig::resolve(&flags(), Some(&data(&[("mtu", "100")]))).unwrap_err();
    assert!(matches!(err, ConfigError::StoredConfig(_)), "{err:?}");
    assert_eq!(err.to_string(), "kube-system/cilium-config is invalid");
    assert!(err.source().unwrap().to_string().contains("data.mtu"), "{:?}", err.source());
}

#[test]
fn resolved_settings_are_validated() {
    let f = AgentFlags { routing_mode: Some(RoutingMode::Tunnel), auto_direct_node_routes: Some(true), ..flags() };
    assert_eq!(AgentConfig::resolve(&f, None), Err(ConfigError::DirectRoutesWithTunnel));
    let f = AgentFlags { lease_ttl: Duration::ZERO, ..flags() };
    assert_eq!(AgentConfig::resolve(&f, None), Err(ConfigError::LeaseTtl(Duration::ZERO)));
}
