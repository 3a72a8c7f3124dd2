//! Pod networking end to end, as root, in a lab of its own: the operator's pod CIDRs, each node's
//! agent (host device, CNI socket, auto direct node routes), pods wired by the real `cilia-cni`
//! plugin the way a container runtime calls it, the guide's native-routing limit (a pod on k8s-w1
//! answers k8s-ctr's pod, a pod on k8s-w0 does not), and an agent killed with SIGKILL coming
//! back without disturbing routes or pods.
//!
//! The second test does the guide's own check with the lab's pod runtime: curl-pod on k8s-ctr
//! pings the webpod replicas on k8s-w1 (answers) and on k8s-w0 (does not).
//!
//! Every packet starts inside a lab namespace; the pods' namespaces carry the lab's prefix, so
//! `lab down` removes them with the rest.

mod common;

use std::{
    path::PathBuf,
    process::Command,
    time::{Duration, Instant},
};

use common::{TestLab, cilia_bin, guide_manifest, text};

const WAIT: Duration = Duration::from_secs(30);

/// The plugin, built beside `cilia` by `cargo build --bins`; built here if it is missing.
fn cni_plugin() -> PathBuf {
    let path = PathBuf::from(cilia_bin()).with_file_name("cilia-cni");
    if !path.exists() {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let status = Command::new(cargo)
            .args(["build", "-p", "cni", "--bin", "cilia-cni"])
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .status()
            .expect("running cargo build for cilia-cni");
        assert!(status.success(), "building cilia-cni failed");
    }
    assert!(path.exists(), "{} is missing: run `cargo build --bins`", path.display());
    path
}

/// A pod: a network namespace `<lab>-pod-<name>` wired by `cilia-cni ADD` on `node`.
struct Pod {
    netns: testkit::TestNetns,
    ip: String,
}

impl Pod {
    fn add(lab: &TestLab, node: &str, name: &str) -> Pod {
        let netns = testkit::TestNetns::named(&format!("{}-pod-{name}", lab.name));
        let socket = format!("/run/cilia/lab/{}/nodes/{node}/cni.sock", lab.name);
        let conf =
            serde_json::json!({"cniVersion": "1.0.0", "name": "cilia", "type": "cilia-cni", "agentSocket": socket});
        let plugin = cni_plugin();
        let (container, netns_path) = (format!("CNI_CONTAINERID={name}"), format!("CNI_NETNS={}", netns.path()));
        let cni_path = format!("CNI_PATH={}", plugin.parent().unwrap().display());
        let args = ["env", "-i", "CNI_COMMAND=ADD", &container, &netns_path, "CNI_IFNAME=eth0", &cni_path];
        let args = [&["lab", "exec", node, "--"], &args[..], &[plugin.to_str().unwrap()]].concat();
        let out = lab.cilia_stdin(&args, &conf.to_string());
        assert!(out.status.success(), "cilia-cni ADD {name} on {node}:\n{}", text(&out));
        let result: serde_json::Value = serde_json::from_slice(&out.stdout).expect("the CNI result is JSON");
        let address = result["ips"][0]["address"].as_str().expect("an address").to_string();
        Pod { ip: address.trim_end_matches("/32").to_string(), netns }
    }

    fn ping(&self, ip: &str) -> bool {
        let out = Command::new("ip")
            .args(["netns", "exec", &self.netns.name, "ping", "-c2", "-i0.2", "-W1", ip])
            .output()
            .expect("ping");
        out.status.success()
    }
}

fn routes(lab: &TestLab, host: &str) -> String {
    lab.ok(&["lab", "exec", host, "--", "ip", "-4", "route", "show"])
}

/// The pid of a supervised process, from `cilia lab status`.
fn pid_of(lab: &TestLab, process: &str) -> Option<(i32, u32)> {
    let status = lab.ok(&["lab", "status"]);
    let line = status.lines().find(|l| l.split_whitespace().next() == Some(process))?;
    let cols: Vec<&str> = line.split_whitespace().collect();
    let running = cols.get(3) == Some(&"running");
    Some((cols.get(2)?.parse().ok().filter(|_| running)?, cols.get(4)?.parse().ok()?))
}

fn agent_log(lab: &TestLab, node: &str) -> String {
    std::fs::read_to_string(format!("/run/cilia/lab/{}/logs/agent-{node}.log", lab.name)).unwrap_or_default()
}

#[test]
fn native_routing_with_auto_direct_node_routes() {
    let lab = TestLab::up("pn");

    // The operator numbers the nodes as in the guide.
    let nodes = lab.eventually(&["get", "nodes", "-o", "wide"], WAIT, |out| {
        [("k8s-ctr", "172.20.0.0/24"), ("k8s-w1", "172.20.1.0/24"), ("k8s-w0", "172.20.2.0/24")]
            .iter()
            .all(|(node, cidr)| out.lines().any(|l| l.starts_with(node) && l.trim_end().ends_with(cidr)))
    });
    assert!(nodes.contains("k8s-w0"), "{nodes}");

    // Every agent marks its node Ready and holds a membership lease.
    lab.eventually(&["get", "nodes", "-o", "json"], WAIT, |out| {
        let v: serde_json::Value = serde_json::from_str(out).unwrap_or_default();
        let items = v["items"].as_array().cloned().unwrap_or_default();
        items.len() == 3
            && items.iter().all(|n| {
                n["status"]["conditions"].as_array().is_some_and(|c| {
                    c.iter().any(|c| c["type"] == "Ready" && c["status"] == "True" && c["reason"] == "AgentReady")
                })
            })
    });
    lab.eventually(&["get", "lease", "-n", "kube-system"], WAIT, |out| {
        ["cilia-node-k8s-ctr", "cilia-node-k8s-w1", "cilia-node-k8s-w0"].iter().all(|l| out.contains(l))
    });

    // k8s-ctr: a direct route to k8s-w1's pods, none to k8s-w0's (another subnet); its own pod
    // CIDR behind cilium_host.
    let deadline = Instant::now() + WAIT;
    let ctr = loop {
        let r = routes(&lab, "k8s-ctr");
        if r.contains("172.20.1.0/24 via 192.168.10.101 dev eth1 proto 193") || Instant::now() > deadline {
            break r;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(ctr.contains("172.20.1.0/24 via 192.168.10.101 dev eth1 proto 193"), "{ctr}");
    assert!(!ctr.lines().any(|l| l.starts_with("172.20.2.0/24")), "a direct route to k8s-w0:\n{ctr}");
    assert!(ctr.contains("172.20.0.0/24 via 172.20.0.1 dev cilium_host"), "{ctr}");
    let host = lab.ok(&["lab", "exec", "k8s-ctr", "--", "ip", "-br", "addr", "show", "cilium_host"]);
    assert!(host.contains("172.20.0.1/32"), "{host}");
    lab.eventually(&["lab", "exec", "k8s-w1", "--", "ip", "-4", "route"], WAIT, |r| {
        r.contains("172.20.0.0/24 via 192.168.10.100 dev eth1 proto 193")
    });
    let w0 = routes(&lab, "k8s-w0");
    assert!(!w0.lines().any(|l| l.starts_with("172.20.0.0/24") || l.starts_with("172.20.1.0/24")), "{w0}");
    let log = agent_log(&lab, "k8s-ctr");
    assert!(
        log.contains(
            "skipping direct route to k8s-w0 (172.20.2.0/24): 192.168.20.100 is reached via gateway 192.168.10.200"
        ),
        "the skip is logged:\n{log}"
    );

    // Pods wired by the plugin through each node's agent: the guide's native-routing limit.
    let curl = Pod::add(&lab, "k8s-ctr", "curl");
    let web_w1 = Pod::add(&lab, "k8s-w1", "web-w1");
    let web_w0 = Pod::add(&lab, "k8s-w0", "web-w0");
    assert!(
        curl.ip.starts_with("172.20.0.") && web_w1.ip.starts_with("172.20.1.") && web_w0.ip.starts_with("172.20.2.")
    );
    assert!(curl.ping(&web_w1.ip), "k8s-ctr's pod cannot reach k8s-w1's pod {}", web_w1.ip);
    assert!(web_w1.ping(&curl.ip), "k8s-w1's pod cannot reach k8s-ctr's pod {}", curl.ip);
    assert!(!curl.ping(&web_w0.ip), "k8s-w0's pod {} answered without a route on the router", web_w0.ip);

    // SIGKILL the agent of k8s-ctr: the supervisor restarts it, and routes, device and pods are
    // as they were, without duplicates.
    let before = routes(&lab, "k8s-ctr");
    let (pid, restarts) = pid_of(&lab, "agent-k8s-ctr").expect("agent-k8s-ctr runs");
    let killed = Command::new("kill").args(["-9", &pid.to_string()]).status().expect("kill");
    assert!(killed.success());
    assert!(curl.ping(&web_w1.ip), "pods lost connectivity while the agent was down");
    let deadline = Instant::now() + WAIT;
    loop {
        let restarted = pid_of(&lab, "agent-k8s-ctr").is_some_and(|(p, r)| p != pid && r > restarts);
        let ready = agent_log(&lab, "k8s-ctr").matches("joined the cluster").count() >= 2;
        if restarted && ready {
            break;
        }
        assert!(Instant::now() < deadline, "agent-k8s-ctr did not come back:\n{}", lab.ok(&["lab", "status"]));
        std::thread::sleep(Duration::from_millis(100));
    }
    let after = routes(&lab, "k8s-ctr");
    assert_eq!(before, after, "the routing table changed across the agent restart");
    assert_eq!(after.lines().filter(|l| l.starts_with("172.20.1.0/24")).count(), 1, "{after}");
    let links = lab.ok(&["lab", "exec", "k8s-ctr", "--", "ip", "-br", "link"]);
    assert_eq!(links.lines().filter(|l| l.starts_with("cilium_host")).count(), 1, "{links}");
    assert!(agent_log(&lab, "k8s-ctr").contains("kept=1"), "the restarted agent kept the pod");
    assert!(curl.ping(&web_w1.ip), "pods lost connectivity after the agent restart");
    assert!(!curl.ping(&web_w0.ip));

    // `lab up` again changes nothing: same CIDRs, same routes.
    lab.ok(&["lab", "up"]);
    let nodes_again = lab.ok(&["get", "nodes", "-o", "wide"]);
    for cidr in ["172.20.0.0/24", "172.20.1.0/24", "172.20.2.0/24"] {
        assert!(nodes_again.contains(cidr), "{nodes_again}");
    }
    assert_eq!(routes(&lab, "k8s-ctr"), after);
}

/// The guide's pods: `cilia apply` the webpod Deployment and curl-pod, then ping from curl-pod.
#[test]
fn guide_pods_reach_the_same_segment_only() {
    let lab = TestLab::up("pg");
    for file in ["webpod.yaml", "curl-pod.yaml"] {
        let out = lab.cilia_stdin(&["apply", "-f", "-"], &guide_manifest(file));
        assert!(out.status.success(), "apply {file}:\n{}", text(&out));
    }
    let pod_ip = |node: &str| {
        let selector = format!("spec.nodeName={node}");
        let args = ["get", "pod", "-l", "app=webpod", "--field-selector", &selector];
        let args = [&args[..], &["-o", "jsonpath={.items[0].status.podIP}"]].concat();
        lab.eventually(&args, Duration::from_secs(60), |ip| !ip.trim().is_empty()).trim().to_string()
    };
    let (w1, w0) = (pod_ip("k8s-w1"), pod_ip("k8s-w0"));
    assert!(w1.starts_with("172.20.1.") && w0.starts_with("172.20.2."), "{w1} {w0}");
    lab.eventually(&["get", "pod", "curl-pod", "-o", "jsonpath={.status.podIP}"], Duration::from_secs(60), |ip| {
        ip.starts_with("172.20.0.")
    });
    let ping = |ip: &str| lab.cilia(&["exec", "curl-pod", "--", "ping", "-c", "2", "-W", "1", ip]);
    // The pods report their IPs once wired; a few more tries absorb a route pass still in flight.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let same_segment = ping(&w1);
        if same_segment.status.success() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "curl-pod -> k8s-w1 pod {w1}:\n{}\nk8s-ctr routes:\n{}",
            text(&same_segment),
            routes(&lab, "k8s-ctr")
        );
    }
    let other_subnet = ping(&w0);
    assert!(!other_subnet.status.success(), "curl-pod -> k8s-w0 pod {w0} answered:\n{}", text(&other_subnet));
    assert!(String::from_utf8_lossy(&other_subnet.stdout).contains("100% packet loss"), "{}", text(&other_subnet));
}
