//! Services over the VXLAN overlay end to end, as root, in a lab of its own started in tunnel mode
//! (torn down even on panic): the guide's webpod as a LoadBalancer Service with curl-pod, and the
//! router with no pod routes at all.
//!
//! - curl-pod reaches every backend by the Service's name, k8s-w0's across the router;
//! - UDP to a port nobody listens on is refused at once, from curl-pod and from the router through
//!   a node port (the backends' ICMP errors come back through the tunnel);
//! - the router reaches the LoadBalancer IP through k8s-ctr, which DNATs, SNATs to itself and
//!   encapsulates towards backends on the other nodes: UDP 8472 on k8s-ctr's eth1.
//!
//! Every request starts in a lab or pod namespace.

mod common;

use std::{collections::BTreeMap, process::Command, time::Duration};

use common::{TestLab, guide_manifest, start_tcpdump, text};
use serde_json::Value;

const WAIT: Duration = Duration::from_secs(60);
const NODES: [&str; 3] = ["k8s-ctr", "k8s-w1", "k8s-w0"];
/// The pool's first address, which webpod gets.
const LB_IP: &str = common::GUIDE_LB_IP;
const REQUESTS: usize = 30;

fn tunnel_lab(prefix: &str) -> TestLab {
    let lab = TestLab { name: format!("{prefix}{}", std::process::id()) };
    let out = lab.cilia(&["lab", "up", "--routing-mode", "tunnel"]);
    assert!(out.status.success(), "lab up failed:\n{}", text(&out));
    lab
}

/// webpod name → node, once the three webpods and curl-pod are ready.
fn webpods(lab: &TestLab) -> BTreeMap<String, String> {
    let ready = |o: &str| -> Vec<Value> {
        let list: Value = serde_json::from_str(o).unwrap_or_default();
        list["items"]
            .as_array()
            .cloned()
            .unwrap_or_default()
            .into_iter()
            .filter(|p| {
                p["status"]["conditions"]
                    .as_array()
                    .is_some_and(|c| c.iter().any(|c| c["type"] == "Ready" && c["status"] == "True"))
            })
            .collect()
    };
    lab.eventually(&["get", "pods", "-l", "app=curl", "-o", "json"], WAIT, |o| ready(o).len() == 1);
    let out = lab.eventually(&["get", "pods", "-l", "app=webpod", "-o", "json"], WAIT, |o| ready(o).len() == 3);
    ready(&out)
        .iter()
        .map(|p| {
            let name = p["metadata"]["name"].as_str().unwrap_or_default().to_string();
            (name, p["spec"]["nodeName"].as_str().unwrap_or_default().to_string())
        })
        .collect()
}

/// `REQUESTS` requests from one shell loop in `cilia args`, counted by the answering hostname;
/// a failed request counts under "FAILED <curl exit code>".
fn distribution(lab: &TestLab, args: &[&str], target: &str) -> BTreeMap<String, usize> {
    let script = format!(
        "for i in $(seq 1 {REQUESTS}); do out=$(curl -sS -m 3 {target} 2>&1); rc=$?; \
         if [ $rc -eq 0 ]; then echo \"$out\" | grep '^Hostname:'; else echo \"FAILED $rc\"; fi; done"
    );
    let mut all = args.to_vec();
    all.extend(["bash", "-c", &script]);
    let out = lab.cilia(&all);
    assert!(out.status.success(), "request loop {args:?}:\n{}", text(&out));
    let mut counts = BTreeMap::new();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        *counts.entry(line.trim_start_matches("Hostname: ").trim().to_string()).or_insert(0) += 1;
    }
    counts
}

fn assert_every_backend(counts: &BTreeMap<String, usize>, webpods: &BTreeMap<String, String>, what: &str) {
    assert_eq!(counts.values().sum::<usize>(), REQUESTS, "{what}: {counts:?}");
    assert!(counts.keys().all(|k| webpods.contains_key(k)), "{what}: failed or unexpected answers {counts:?}");
    for (pod, node) in webpods {
        assert!(counts.contains_key(pod), "{what}: {pod} on {node} never answered: {counts:?}");
    }
}

#[test]
fn services_reach_every_backend_over_the_tunnel_from_pods_and_from_outside() {
    let lab = tunnel_lab("tsvc");
    lab.webpod_as_load_balancer(&guide_manifest("curl-pod.yaml"), WAIT);
    let webpods = webpods(&lab);
    assert_eq!(
        webpods.values().cloned().collect::<std::collections::BTreeSet<_>>().len(),
        3,
        "one webpod per node: {webpods:?}"
    );
    // Every node's datapath offers the LB IP with the three backends.
    for node in NODES {
        let frontend = format!("{LB_IP}:80/TCP (0)");
        lab.eventually(&["dbg", node, "bpf", "lb", "list"], WAIT, |o| {
            o.lines().any(|l| l.starts_with(&frontend) && l.ends_with("count=3"))
        });
    }
    // The nodes' NICs receive with GRO; the tunnel device does not aggregate a second time.
    let features = |dev: &str| lab.ok(&["lab", "exec", "k8s-w1", "--", "ethtool", "-k", dev]);
    assert!(features("eth1").contains("generic-receive-offload: on"), "{}", features("eth1"));
    assert!(features("cilium_vxlan").contains("generic-receive-offload: off"), "{}", features("cilium_vxlan"));
    let router_routes = lab.ok(&["lab", "exec", "router", "--", "ip", "route"]);
    assert!(!router_routes.contains("172.20."), "the router has pod routes:\n{router_routes}");

    // East-west: by name from curl-pod, every backend, k8s-w0's through the router.
    let counts = distribution(&lab, &["exec", "curl-pod", "--"], "webpod");
    assert_every_backend(&counts, &webpods, "curl-pod → webpod");

    // A UDP port nobody listens on: the backends' "port unreachable" comes back through the
    // tunnel too (k8s-w0's across the router) and reaches curl-pod's socket as the ClusterIP's.
    // From the router through k8s-ctr's node port too: the errors about the packets k8s-ctr
    // SNATed come back to it through the tunnel.
    let (ip, node_port) = lab.udp_service_without_listener(&NODES, 3, WAIT);
    let (refused, out) = lab.udp_probes_refused(&["exec", "curl-pod", "--"], (&ip, "9"), 12);
    assert_eq!(refused, 12, "from curl-pod:\n{out}");
    let (refused, out) = lab.udp_probes_refused(&["lab", "exec", "router", "--"], ("192.168.10.100", &node_port), 12);
    assert_eq!(refused, 12, "from the router:\n{out}");

    // North-south: the LB IP routed to k8s-ctr inside the router, standing in for an L2
    // announcement; the router still has no pod route. Capture the underlay meanwhile.
    lab.ok(&["lab", "exec", "router", "--", "ip", "route", "replace", LB_IP, "via", "192.168.10.100"]);
    let ns = lab.namespace("k8s-ctr");
    let dump = start_tcpdump(&ns, 20, &["-i", "eth1", "-nn", "udp", "port", "8472"]);
    let counts = distribution(&lab, &["lab", "exec", "router", "--"], LB_IP);
    // `ip netns exec` became `timeout`, which passes SIGTERM on to tcpdump (line-buffered).
    let _ = Command::new("kill").args(["-TERM", &dump.id().to_string()]).status();
    let captured = dump.wait_with_output().expect("tcpdump output");
    let captured = String::from_utf8_lossy(&captured.stdout);
    assert_every_backend(&counts, &webpods, "router → LB IP");
    for remote in ["192.168.10.101", "192.168.20.100"] {
        let towards = "192.168.10.100.";
        let needle = format!("> {remote}.8472: ");
        assert!(
            captured.lines().any(|l| l.contains(towards) && l.contains(&needle)),
            "no VXLAN from k8s-ctr towards {remote} on eth1:\n{captured}"
        );
    }
    let nat = lab.ok(&["dbg", "k8s-ctr", "bpf", "nat", "list"]);
    assert!(nat.contains("SNAT"), "{nat}");
}
