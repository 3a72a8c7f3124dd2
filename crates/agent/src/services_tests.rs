use std::net::Ipv4Addr;

use datapath::{FakeDatapath, LbDatapath, abi};
use serde_json::{Value, json};

use super::*;

const CTR: Ipv4Addr = Ipv4Addr::new(192, 168, 10, 100);
const W1: Ipv4Addr = Ipv4Addr::new(192, 168, 10, 101);
const W0: Ipv4Addr = Ipv4Addr::new(192, 168, 20, 100);
const CLUSTER_IP: Ipv4Addr = Ipv4Addr::new(10, 96, 41, 64);
const LB_IP: Ipv4Addr = Ipv4Addr::new(192, 168, 10, 241);

fn options() -> BuildOptions {
    BuildOptions {
        node_name: "k8s-ctr".into(),
        default_algorithm: LbAlgorithm::Random,
        unreachable_nodes: Default::default(),
    }
}

fn nodes() -> Vec<NodeView> {
    [("k8s-ctr", CTR), ("k8s-w1", W1), ("k8s-w0", W0)]
        .into_iter()
        .map(|(name, ip)| NodeView { name: name.into(), pod_cidr: None, internal_ip: Some(ip) })
        .collect()
}

fn service(spec: Value, status: Value, annotations: Value) -> Service {
    serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "webpod", "namespace": "default", "annotations": annotations},
        "spec": spec,
        "status": status,
    }))
    .unwrap()
}

fn webpod(kind: &str) -> Service {
    service(
        json!({"type": kind, "clusterIP": CLUSTER_IP.to_string(), "selector": {"app": "webpod"},
               "ports": [{"port": 80, "targetPort": 80, "nodePort": 32353}]}),
        json!({"loadBalancer": {"ingress": [{"ip": LB_IP.to_string()}]}}),
        json!({}),
    )
}

/// An endpoint: (address, node, ready, terminating).
fn slice(name: &str, ports: Value, endpoints: &[(&str, &str, bool, bool)]) -> EndpointSlice {
    let endpoints: Vec<Value> = endpoints
        .iter()
        .map(|(addr, node, ready, term)| {
            json!({"addresses": [addr], "nodeName": node,
                   "conditions": {"ready": ready, "serving": *ready || *term, "terminating": term}})
        })
        .collect();
    serde_json::from_value(json!({
        "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
        "metadata": {"name": name, "namespace": "default", "labels": {api::labels::SERVICE_NAME: "webpod"}},
        "addressType": "IPv4",
        "ports": ports,
        "endpoints": endpoints,
    }))
    .unwrap()
}

fn three_pods() -> EndpointSlice {
    slice(
        "webpod-abcde",
        json!([{"name": "", "port": 80, "protocol": "TCP"}]),
        &[
            ("172.20.0.10", "k8s-ctr", true, false),
            ("172.20.1.10", "k8s-w1", true, false),
            ("172.20.2.10", "k8s-w0", true, false),
        ],
    )
}

fn frontends(d: &Desired) -> Vec<(ServiceKind, String)> {
    d.entries.iter().map(|e| (e.kind, format!("{}:{}", e.frontend.address, e.frontend.port))).collect()
}

#[test]
fn cluster_ip_service_has_one_frontend_with_every_ready_backend() {
    let d = desired(&options(), &[webpod("ClusterIP")], &[three_pods()], &nodes());
    assert_eq!(frontends(&d), [(ServiceKind::ClusterIp, "10.96.41.64:80".to_string())]);
    let e = &d.entries[0];
    assert_eq!(e.frontend.protocol, Protocol::Tcp);
    assert_eq!(e.backends.len(), 3);
    assert!(e.backends.iter().all(|b| b.state == BackendState::Active && b.port == 80));
    let local: Vec<_> = e.backends.iter().filter(|b| b.node_local).map(|b| b.address).collect();
    assert_eq!(local, [Ipv4Addr::new(172, 20, 0, 10)], "only k8s-ctr's pod is node-local");
    assert_eq!((e.affinity_timeout, e.algorithm), (None, LbAlgorithm::Random));
}

#[test]
fn endpoints_on_nodes_gone_silent_get_no_new_connections() {
    let mut opts = options();
    opts.unreachable_nodes.insert("k8s-w0".into());
    let d = desired(&opts, &[webpod("ClusterIP")], &[three_pods()], &nodes());
    let backends: Vec<Ipv4Addr> = d.entries[0].backends.iter().map(|b| b.address).collect();
    assert_eq!(backends, [Ipv4Addr::new(172, 20, 0, 10), Ipv4Addr::new(172, 20, 1, 10)]);
}

#[test]
fn load_balancer_expands_to_cluster_ip_node_ports_and_ingress_ips() {
    let d = desired(&options(), &[webpod("LoadBalancer")], &[three_pods()], &nodes());
    assert_eq!(
        frontends(&d),
        [
            (ServiceKind::NodePort, "0.0.0.0:32353".to_string()),
            (ServiceKind::ClusterIp, "10.96.41.64:80".to_string()),
            (ServiceKind::NodePort, "192.168.10.100:32353".to_string()),
            (ServiceKind::LoadBalancer, "192.168.10.241:80".to_string()),
        ]
    );
    assert!(d.entries.iter().all(|e| e.backends.len() == 3));
    // A ClusterIP service ignores node ports and ingress IPs it may still carry.
    assert_eq!(desired(&options(), &[webpod("ClusterIP")], &[three_pods()], &nodes()).entries.len(), 1);
    let np = desired(&options(), &[webpod("NodePort")], &[three_pods()], &nodes());
    assert_eq!(
        np.entries.iter().filter(|e| e.kind == ServiceKind::NodePort).count(),
        2,
        "this node's address and 0.0.0.0: the other nodes serve their own"
    );
    assert!(np.entries.iter().all(|e| e.kind != ServiceKind::LoadBalancer));
}

#[test]
fn external_ips_and_udp_ports() {
    let svc = service(
        json!({"clusterIP": "10.96.0.10", "externalIPs": ["192.168.10.50"],
               "ports": [{"name": "dns", "port": 53, "protocol": "UDP"}, {"name": "sctp", "port": 9, "protocol": "SCTP"}]}),
        json!({}),
        json!({}),
    );
    let s = slice(
        "webpod-x",
        json!([{"name": "dns", "port": 5353, "protocol": "UDP"}]),
        &[("172.20.1.3", "k8s-w1", true, false)],
    );
    let d = desired(&options(), &[svc], &[s], &nodes());
    assert_eq!(
        frontends(&d),
        [
            (ServiceKind::ClusterIp, "10.96.0.10:53".to_string()),
            (ServiceKind::ExternalIp, "192.168.10.50:53".to_string())
        ]
    );
    assert!(d.entries.iter().all(|e| e.frontend.protocol == Protocol::Udp && e.backends[0].port == 5353));
}

#[test]
fn headless_and_external_name_services_have_no_frontends() {
    let headless = service(json!({"clusterIP": "None", "ports": [{"port": 80}]}), json!({}), json!({}));
    let external = service(json!({"type": "ExternalName", "externalName": "example.com"}), json!({}), json!({}));
    assert!(desired(&options(), &[headless, external], &[three_pods()], &nodes()).entries.is_empty());
}

#[test]
fn terminating_endpoints_stay_for_existing_connections_and_unready_ones_go() {
    let s = slice(
        "webpod-abcde",
        json!([{"name": "", "port": 80}]),
        &[
            ("172.20.0.10", "k8s-ctr", true, false),
            ("172.20.1.10", "k8s-w1", false, true),
            ("172.20.2.10", "k8s-w0", false, false),
        ],
    );
    let d = desired(&options(), &[webpod("ClusterIP")], &[s], &nodes());
    let states: Vec<_> = d.entries[0].backends.iter().map(|b| (b.address.to_string(), b.state)).collect();
    assert_eq!(
        states,
        [("172.20.0.10".to_string(), BackendState::Active), ("172.20.1.10".to_string(), BackendState::Terminating)]
    );
}

#[test]
fn no_endpoints_keeps_the_frontend_with_zero_backends() {
    let empty = slice("webpod-abcde", json!([]), &[]);
    let d = desired(&options(), &[webpod("LoadBalancer")], &[empty], &nodes());
    assert_eq!(d.entries.len(), 4, "cluster IP, this node's address and 0.0.0.0, LB IP");
    assert!(d.entries.iter().all(|e| e.backends.is_empty()));
    // No slice at all (the operator has not written one yet): the same.
    let d = desired(&options(), &[webpod("ClusterIP")], &[], &nodes());
    assert_eq!((d.entries.len(), d.entries[0].backends.len()), (1, 0));
}

#[test]
fn named_target_ports_resolve_per_slice() {
    let svc = service(
        json!({"clusterIP": CLUSTER_IP.to_string(), "ports": [{"name": "http", "port": 80, "targetPort": "web"}]}),
        json!({}),
        json!({}),
    );
    let a = slice("webpod-a", json!([{"name": "http", "port": 8080}]), &[("172.20.0.10", "k8s-ctr", true, false)]);
    let b = slice("webpod-b", json!([{"name": "http", "port": 9090}]), &[("172.20.1.10", "k8s-w1", true, false)]);
    // A slice for another port name contributes nothing to this port.
    let c = slice("webpod-c", json!([{"name": "metrics", "port": 9100}]), &[("172.20.2.10", "k8s-w0", true, false)]);
    let d = desired(&options(), &[svc], &[a, b, c], &nodes());
    let backends: Vec<_> = d.entries[0].backends.iter().map(|b| format!("{}:{}", b.address, b.port)).collect();
    assert_eq!(backends, ["172.20.0.10:8080", "172.20.1.10:9090"]);
}

#[test]
fn slices_of_other_services_and_namespaces_are_not_mixed_in() {
    let mut other = three_pods();
    other.metadata.labels.insert(api::labels::SERVICE_NAME.into(), "other".into());
    let mut elsewhere = three_pods();
    elsewhere.metadata.namespace = Some("kube-system".into());
    let d = desired(&options(), &[webpod("ClusterIP")], &[other, elsewhere], &nodes());
    assert!(d.entries[0].backends.is_empty());
}

#[test]
fn traffic_policies_affinity_and_algorithm() {
    let svc = service(
        json!({"type": "LoadBalancer", "clusterIP": CLUSTER_IP.to_string(), "ports": [{"port": 80, "nodePort": 30080}],
               "externalTrafficPolicy": "Local", "internalTrafficPolicy": "Local",
               "sessionAffinity": "ClientIP", "sessionAffinityConfig": {"clientIP": {"timeoutSeconds": 60}}}),
        json!({"loadBalancer": {"ingress": [{"ip": LB_IP.to_string()}]}}),
        json!({LB_ALGORITHM_ANNOTATION: "maglev"}),
    );
    let d = desired(&options(), &[svc], &[three_pods()], &nodes());
    for e in &d.entries {
        assert_eq!(e.affinity_timeout, Some(60));
        assert_eq!(e.algorithm, LbAlgorithm::Maglev);
        let cluster = e.kind == ServiceKind::ClusterIp;
        assert_eq!((e.internal_traffic_local, e.external_traffic_local), (cluster, !cluster), "{:?}", e.kind);
    }
    // Defaults: 3 h affinity; the configured algorithm for services without the annotation.
    let svc = service(
        json!({"clusterIP": CLUSTER_IP.to_string(), "ports": [{"port": 80}], "sessionAffinity": "ClientIP"}),
        json!({}),
        json!({}),
    );
    let maglev = BuildOptions { default_algorithm: LbAlgorithm::Maglev, ..options() };
    let d = desired(&maglev, &[svc], &[three_pods()], &nodes());
    assert_eq!((d.entries[0].affinity_timeout, d.entries[0].algorithm), (Some(10800), LbAlgorithm::Maglev));
}

#[test]
fn a_frontend_claimed_twice_goes_to_the_first_service() {
    let mut second = webpod("ClusterIP");
    second.metadata.name = "zzz".into();
    let d = desired(&options(), &[second, webpod("ClusterIP")], &[three_pods()], &nodes());
    assert_eq!(d.entries.len(), 1);
    assert_eq!(d.entries[0].backends.len(), 3, "default/webpod wins");
    assert_eq!(d.conflicts.len(), 1);
    assert_eq!((d.conflicts[0].kept.as_str(), d.conflicts[0].dropped.as_str()), ("default/webpod", "default/zzz"));
}

#[test]
fn the_fake_datapath_takes_the_entries_and_a_second_sync_writes_nothing() {
    let d = desired(&options(), &[webpod("LoadBalancer")], &[three_pods()], &nodes());
    let mut dp = FakeDatapath::new();
    let first = dp.sync_services(&d.entries).expect("valid entries");
    assert!(first.upserts > 0);
    let again = dp.sync_services(&d.entries).unwrap();
    assert_eq!((again.upserts, again.deletes), (0, 0));
    let lb_frontend = |dp: &FakeDatapath| {
        let key = abi::Lb4Key::new(LB_IP, 80, abi::IPPROTO_TCP, 0, abi::LB_SCOPE_ALL);
        dp.service_maps().unwrap().services.get(&key).copied()
    };
    let frontend = lb_frontend(&dp).expect("the LoadBalancer IP's frontend is in the map");
    assert!(frontend.flags.contains(abi::SvcFlags::LOADBALANCER), "{frontend:?}");
    assert!(frontend.count > 0, "{frontend:?}");
    // Scaling to zero keeps the frontends with count 0.
    let empty = desired(&options(), &[webpod("LoadBalancer")], &[slice("webpod-abcde", json!([]), &[])], &nodes());
    dp.sync_services(&empty.entries).unwrap();
    let frontend = lb_frontend(&dp).expect("the frontend stays without backends");
    assert_eq!(frontend.count, 0, "{frontend:?}");
}

#[test]
fn unspecified_addresses_stored_around_the_api_are_skipped_not_fatal() {
    // Written straight to the datastore, past the API's validation: an external IP and an
    // endpoint of 0.0.0.0. The datapath refuses a sync holding either, which would stop every
    // Service from being programmed; they are skipped instead.
    let svc = service(
        json!({"clusterIP": "10.96.0.10", "externalIPs": ["0.0.0.0", "192.168.10.50"], "ports": [{"port": 80}]}),
        json!({}),
        json!({}),
    );
    let s = slice(
        "webpod-x",
        json!([{"name": "", "port": 80, "protocol": "TCP"}]),
        &[("0.0.0.0", "k8s-w1", true, false), ("172.20.1.3", "k8s-w1", true, false)],
    );
    let d = desired(&options(), &[svc], &[s], &nodes());
    assert_eq!(frontends(&d).len(), 2, "the cluster IP and 192.168.10.50: {:?}", frontends(&d));
    let external = d.entries.iter().find(|e| e.kind == ServiceKind::ExternalIp).expect("192.168.10.50 kept");
    assert_eq!(external.backends.iter().map(|b| b.address.to_string()).collect::<Vec<_>>(), ["172.20.1.3"]);
    FakeDatapath::new().sync_services(&d.entries).expect("the datapath takes every entry");
}

#[test]
fn frontends_on_pod_cidrs_node_addresses_or_special_addresses_are_refused() {
    let nodes: Vec<NodeView> = nodes()
        .into_iter()
        .enumerate()
        .map(|(i, mut n)| {
            n.pod_cidr = Some(format!("172.20.{i}.0/24").parse().unwrap());
            n
        })
        .collect();
    // Stored around the API: the pods' gateway and DNS server as a cluster IP, and external IPs
    // on a pod, a node and an address no node can serve, beside one good external IP.
    let svc = service(
        json!({"type": "ClusterIP", "clusterIP": "172.20.0.1", "selector": {"app": "webpod"},
               "externalIPs": ["172.20.1.5", W1.to_string(), "127.0.0.1", "203.0.113.7"],
               "ports": [{"port": 53, "protocol": "UDP", "targetPort": 53}]}),
        json!({}),
        json!({}),
    );
    let d = desired(&options(), &[svc], &[], &nodes);
    assert_eq!(frontends(&d), [(ServiceKind::ExternalIp, "203.0.113.7:53".to_string())]);
    let refused: Vec<(String, &str)> = d.refused.iter().map(|r| (r.address.to_string(), r.why)).collect();
    assert_eq!(
        refused,
        [
            ("172.20.0.1".to_string(), "it is in a pod CIDR"),
            ("127.0.0.1".to_string(), "no node can serve it"),
            ("172.20.1.5".to_string(), "it is in a pod CIDR"),
            (W1.to_string(), "it is a node's address"),
        ]
    );
    assert!(d.refused.iter().all(|r| r.service == "default/webpod"));
}
