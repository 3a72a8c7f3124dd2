//! Services end to end, as root, each test in a lab of its own: the operator's cluster IPs, node
//! ports, LB-IPAM and EndpointSlices, every node's agent programming its eBPF datapath, and real
//! requests to the lab's whoami pods.
//!
//! - ClusterIP by name (cluster DNS) from a pod on every node, and ClusterIP and LoadBalancer IP
//!   from every node's own namespace (socket-LB); a new pod's first SYN, sent as CNI ADD answers,
//!   reaches a backend;
//! - NodePort and a LoadBalancer IP from the router (outside the cluster), reaching backends on
//!   other nodes through SNAT, with replies from the frontend;
//! - UDP to a service port nobody listens on is refused at once (the ICMP error names the frontend);
//! - a deleted backend gets no new connections; 3 → 0 → 3 replicas, with an immediate reject at 0;
//! - the agent killed with SIGKILL under a continuous request loop: no request fails;
//! - backends deleted one after another under a continuous request loop: no request fails (each is
//!   drained from its Services before it stops).
//!
//! Native routing reaches pods across the two subnets only through the router's static routes,
//! so every test adds them first, as the guide's workaround does. The router has no route to the
//! LoadBalancer IP: k8s-ctr announces it (L2 announcements), so it enters the cluster there. Every
//! request starts in a lab or pod namespace.

mod common;

use std::{
    collections::BTreeMap,
    path::Path,
    process::Command,
    time::{Duration, Instant},
};

use common::{TestLab, text};
use serde_json::Value;

const WAIT: Duration = Duration::from_secs(60);
const NODES: [&str; 3] = ["k8s-ctr", "k8s-w1", "k8s-w0"];
const ROUTER_ROUTES: [(&str, &str); 3] =
    [("172.20.0.0/24", "192.168.10.100"), ("172.20.1.0/24", "192.168.10.101"), ("172.20.2.0/24", "192.168.20.100")];
/// The pool's first address, which webpod gets.
const LB_IP: &str = common::GUIDE_LB_IP;

/// One client pod per node, pinned there like the guide's curl-pod.
const CLIENTS: &str = "apiVersion: v1
kind: Pod
metadata: {name: curl-k8s-ctr, labels: {app: curl}}
spec:
  nodeName: k8s-ctr
  containers: [{name: curl, image: nicolaka/netshoot}]
  terminationGracePeriodSeconds: 0
---
apiVersion: v1
kind: Pod
metadata: {name: curl-k8s-w1, labels: {app: curl}}
spec:
  nodeName: k8s-w1
  containers: [{name: curl, image: nicolaka/netshoot}]
  terminationGracePeriodSeconds: 0
---
apiVersion: v1
kind: Pod
metadata: {name: curl-k8s-w0, labels: {app: curl}}
spec:
  nodeName: k8s-w0
  containers: [{name: curl, image: nicolaka/netshoot}]
  terminationGracePeriodSeconds: 0
";

fn require_plugin() {
    let plugin = Path::new(common::cilia_bin()).with_file_name("cilia-cni");
    assert!(plugin.exists(), "{} is missing: run `cargo build --workspace --bins` first", plugin.display());
}

/// The cluster as the tests use it: webpod on every node, a client pod on every node, webpod a
/// LoadBalancer Service with the pool's first address, and the router's pod routes.
struct Cluster {
    lab: TestLab,
    cluster_ip: String,
    node_port: String,
    /// webpod name → (node, pod IP).
    webpods: BTreeMap<String, (String, String)>,
}

impl Cluster {
    fn up(prefix: &str) -> Cluster {
        require_plugin();
        let lab = TestLab::up(prefix);
        for (cidr, via) in ROUTER_ROUTES {
            lab.ok(&["lab", "exec", "router", "--", "ip", "route", "replace", cidr, "via", via]);
        }
        lab.webpod_as_load_balancer(CLIENTS, WAIT);
        let cluster_ip = lab.allocated("webpod", "clusterIP", WAIT);
        let node_port = lab.allocated("webpod", "ports[0].nodePort", WAIT);
        let mut cluster = Cluster { lab, cluster_ip, node_port, webpods: BTreeMap::new() };
        cluster.wait_webpods(3);
        cluster.lab.eventually(&["get", "pods", "-l", "app=curl", "-o", "json"], WAIT, |o| ready_count(o) == 3);
        cluster
    }

    /// Waits until `n` webpods are ready and every node's datapath has them as the ClusterIP's
    /// backends, then records them.
    fn wait_webpods(&mut self, n: usize) {
        let out = self.lab.eventually(&["get", "pods", "-l", "app=webpod", "-o", "json"], WAIT, |o| {
            ready_count(o) == n && pods_of(o).len() == n
        });
        self.webpods = pods_of(&out)
            .iter()
            .map(|p| {
                let name = p["metadata"]["name"].as_str().unwrap_or_default().to_string();
                let node = p["spec"]["nodeName"].as_str().unwrap_or_default().to_string();
                let ip = p["status"]["podIP"].as_str().unwrap_or_default().to_string();
                (name, (node, ip))
            })
            .collect();
        for node in NODES {
            let frontend = format!("{}:80/TCP (0)", self.cluster_ip);
            let want = format!("count={n}");
            self.lab.eventually(&["dbg", node, "bpf", "lb", "list"], WAIT, |o| {
                o.lines().any(|l| l.starts_with(&frontend) && l.ends_with(&want))
            });
        }
    }

    fn curl_from_pod(&self, pod: &str, target: &str) -> Result<String, String> {
        let out = self.lab.cilia(&["exec", pod, "--", "curl", "-sS", "-m", "3", target]);
        hostname(&out)
    }

    /// Sends `n` requests from `host` in one shell loop (fast) and counts the answers by
    /// hostname; failed requests count under "FAILED <curl exit code> <curl's message>".
    fn distribution(&self, host: &str, target: &str, n: usize) -> BTreeMap<String, usize> {
        let script = format!(
            "for i in $(seq 1 {n}); do out=$(curl -sS -m 3 {target} 2>&1); rc=$?; \
             if [ $rc -eq 0 ]; then echo \"$out\" | grep '^Hostname:'; else echo \"FAILED $rc $(echo \"$out\" | head -1)\"; fi; done"
        );
        let out = self.lab.cilia(&["lab", "exec", host, "--", "bash", "-c", &script]);
        assert!(out.status.success(), "request loop in {host}:\n{}", text(&out));
        let mut counts = BTreeMap::new();
        for line in String::from_utf8_lossy(&out.stdout).lines() {
            *counts.entry(line.trim_start_matches("Hostname: ").to_string()).or_insert(0) += 1;
        }
        counts
    }
}

fn pods_of(list_json: &str) -> Vec<Value> {
    let list: Value = serde_json::from_str(list_json).unwrap_or_default();
    list["items"].as_array().cloned().unwrap_or_default()
}

fn ready_count(list_json: &str) -> usize {
    pods_of(list_json)
        .iter()
        .filter(|p| p["metadata"]["deletionTimestamp"].is_null())
        .filter(|p| {
            p["status"]["conditions"]
                .as_array()
                .is_some_and(|c| c.iter().any(|c| c["type"] == "Ready" && c["status"] == "True"))
        })
        .count()
}

fn hostname(out: &std::process::Output) -> Result<String, String> {
    let stdout = String::from_utf8_lossy(&out.stdout);
    match stdout.lines().find_map(|l| l.strip_prefix("Hostname: ")) {
        Some(h) if out.status.success() => Ok(h.trim().to_string()),
        _ => Err(text(out)),
    }
}

fn assert_all_answer(counts: &BTreeMap<String, usize>, webpods: &BTreeMap<String, (String, String)>, what: &str) {
    assert!(counts.keys().all(|k| webpods.contains_key(k)), "{what}: unexpected answers {counts:?}");
}

#[test]
fn cluster_ip_by_name_from_pods_and_frontends_from_every_node() {
    let c = Cluster::up("svcip");
    // By name from a pod on every node: the search path and the node's cluster DNS, then the
    // pod's own datapath.
    for node in NODES {
        let pod = format!("curl-{node}");
        let out = c.lab.ok(&["exec", &pod, "--", "cat", "/etc/resolv.conf"]);
        assert!(out.contains("search default.svc.cluster.local svc.cluster.local cluster.local"), "{out}");
        let who = c.curl_from_pod(&pod, "webpod").unwrap_or_else(|e| panic!("curl webpod from {pod}: {e}"));
        assert!(c.webpods.contains_key(&who), "{pod} got {who}");
        let who = c
            .curl_from_pod(&pod, "webpod.default.svc.cluster.local")
            .unwrap_or_else(|e| panic!("FQDN from {pod}: {e}"));
        assert!(c.webpods.contains_key(&who));
    }
    // A name that is no Service does not resolve.
    let out = c.lab.cilia(&["exec", "curl-k8s-ctr", "--", "curl", "-sS", "-m", "3", "nothere"]);
    assert!(!out.status.success() && text(&out).contains("Could not resolve host"), "{}", text(&out));

    // From every node's own namespace: the ClusterIP, the LB IP and the loopback node port through
    // socket-LB, and k8s-w1's node port (served by k8s-w1's datapath from the others), each
    // spreading over more than one backend.
    for node in NODES {
        let node_ports = [format!("192.168.10.101:{}", c.node_port), format!("127.0.0.1:{}", c.node_port)];
        for target in [c.cluster_ip.clone(), LB_IP.to_string()].into_iter().chain(node_ports) {
            let counts = c.distribution(node, &target, 12);
            assert_all_answer(&counts, &c.webpods, &format!("{target} from {node}"));
            assert!(counts.len() >= 2, "{target} from {node} always reached the same backend: {counts:?}");
        }
    }
    // The guide's check from a pod, ten requests: spread over at least two of the three pods.
    let counts = c.distribution("k8s-ctr", LB_IP, 10);
    assert!(counts.len() >= 2, "{counts:?}");
    let lb = c.lab.ok(&["dbg", "k8s-ctr", "bpf", "lb", "list"]);
    assert!(lb.contains(&format!("{LB_IP}:80/TCP (0)")) && lb.contains("[LoadBalancer"), "{lb}");

    // A new pod's very first packet is translated: on every node, a namespace wired by
    // `cilia-cni ADD` connects to the ClusterIP as soon as ADD answers, in the same shell. The
    // connect timeout is under TCP's first SYN retransmission (1 s), so only an answered first
    // SYN connects: one sent before the pod's programs were attached would go out untranslated.
    for node in NODES {
        let who = first_connection(&c.lab, node, &c.cluster_ip);
        assert!(c.webpods.contains_key(&who), "a new pod on {node} got {who}");
    }
}

/// Wires a new namespace on `node` with `cilia-cni ADD` and, the moment ADD answers, curls
/// `cluster_ip` from it with a connect timeout of 0.9 s; returns the backend's hostname.
fn first_connection(lab: &TestLab, node: &str, cluster_ip: &str) -> String {
    // Named with the lab's prefix, so that `lab down` removes it too after a killed run.
    let pod = testkit::TestNetns::named(&format!("{}-pod-first-{node}", lab.name));
    let netns = &pod.name;
    let plugin = Path::new(common::cilia_bin()).with_file_name("cilia-cni");
    let socket = format!("/run/cilia/lab/{}/nodes/{node}/cni.sock", lab.name);
    let conf = serde_json::json!({"cniVersion": "1.0.0", "name": "cilia", "type": "cilia-cni", "agentSocket": socket});
    let script = format!(
        "env -i CNI_COMMAND=ADD CNI_CONTAINERID=first-{node} CNI_NETNS=/run/netns/{netns} CNI_IFNAME=eth0 \
         CNI_PATH={dir} {plugin} >/dev/null && \
         ip netns exec {netns} curl -sS --connect-timeout 0.9 -m 3 http://{cluster_ip}/",
        dir = plugin.parent().unwrap().display(),
        plugin = plugin.display(),
    );
    let out = lab.cilia_stdin(&["lab", "exec", node, "--", "bash", "-c", &script], &conf.to_string());
    hostname(&out).unwrap_or_else(|e| panic!("the first connection of a new pod on {node} to {cluster_ip}: {e}"))
}

/// What a failed north-south request leaves to look at: k8s-ctr's conntrack, SNAT and service
/// maps and the neighbour tables on the way (only gathered when an assertion fails).
fn north_south_state(c: &Cluster) -> String {
    let dumps: [&[&str]; 5] = [
        &["dbg", "k8s-ctr", "bpf", "ct", "list"],
        &["dbg", "k8s-ctr", "bpf", "nat", "list"],
        &["dbg", "k8s-ctr", "bpf", "lb", "list"],
        &["lab", "exec", "router", "--", "ip", "neigh"],
        &["lab", "exec", "k8s-ctr", "--", "ip", "neigh"],
    ];
    dumps.iter().map(|args| format!("$ cilia {}\n{}", args.join(" "), text(&c.lab.cilia(args)))).collect()
}

#[test]
fn north_south_node_port_and_load_balancer_ip_reach_other_nodes_through_snat() {
    let c = Cluster::up("svcns");
    // The LoadBalancer IP enters the cluster at k8s-ctr, which announces it.
    c.lab.announce_from("k8s-ctr", LB_IP, WAIT);
    let webpod_on = |node: &str| c.webpods.iter().find(|(_, (n, _))| n == node).map(|(name, _)| name.clone()).unwrap();
    let (local, remote_w1, remote_w0) = (webpod_on("k8s-ctr"), webpod_on("k8s-w1"), webpod_on("k8s-w0"));
    // The strict checks below are about the settled path: first every backend answers once
    // through the node port. Requests that fail meanwhile are printed (shown if the test fails).
    let warm_up = format!("for i in $(seq 1 12); do curl -sS -m 2 192.168.10.100:{} 2>&1; done", c.node_port);
    c.lab.eventually(&["lab", "exec", "router", "--", "bash", "-c", &warm_up], WAIT, |o| {
        o.lines().filter(|l| l.starts_with("curl:")).for_each(|l| eprintln!("warm-up: {l}"));
        [&local, &remote_w1, &remote_w0].iter().all(|who| o.contains(&format!("Hostname: {who}")))
    });

    for target in [format!("192.168.10.100:{}", c.node_port), LB_IP.to_string()] {
        // Every backend answers, each request a fresh connection; the answer comes from the
        // address curl connected to (`remote_ip`), and the backend saw the router itself when
        // it runs on k8s-ctr, k8s-ctr's address (SNAT) when it runs elsewhere.
        let script = format!(
            "for i in $(seq 1 40); do {{ curl -sS -m 3 -w 'Peer: %{{remote_ip}}\\n' {target} 2>&1; }} | grep -E '^(Hostname|RemoteAddr|Peer|curl):' | tr '\\n' ' '; echo; done"
        );
        let out = c.lab.ok(&["lab", "exec", "router", "--", "bash", "-c", &script]);
        let mut seen = BTreeMap::new();
        for line in out.lines().filter(|l| !l.trim().is_empty()) {
            let field =
                |k: &str| line.split_whitespace().skip_while(|w| *w != k).nth(1).unwrap_or_default().to_string();
            let (who, client, peer) = (field("Hostname:"), field("RemoteAddr:"), field("Peer:"));
            let want_peer = target.split(':').next().unwrap();
            assert_eq!(peer, want_peer, "{target}: reply not from the frontend: {line}\n{}", north_south_state(&c));
            let client_ip = client.split(':').next().unwrap_or_default().to_string();
            let expected = if who == local { "192.168.10.200" } else { "192.168.10.100" };
            assert_eq!(client_ip, expected, "{target} via {who}: {line}");
            *seen.entry(who).or_insert(0) += 1;
        }
        assert_eq!(seen.values().sum::<usize>(), 40, "{target}: some requests failed:\n{out}");
        for who in [&local, &remote_w1, &remote_w0] {
            assert!(seen.contains_key(who), "{target}: {who} never answered: {seen:?}");
        }
    }
    let ct = c.lab.ok(&["dbg", "k8s-ctr", "bpf", "ct", "list"]);
    assert!(ct.contains(&format!("-> {LB_IP}:80")), "{ct}");
    let nat = c.lab.ok(&["dbg", "k8s-ctr", "bpf", "nat", "list"]);
    assert!(nat.contains("SNAT"), "{nat}");
}

#[test]
fn udp_to_a_service_port_without_a_listener_is_refused_at_once() {
    let c = Cluster::up("svcudp");
    let (ip, node_port) = c.lab.udp_service_without_listener(&NODES, 3, WAIT);
    // Backends on the client's node, on the other node of its segment and across the router: 12
    // probes from each client reach all three with near certainty.
    for node in NODES {
        let pod = format!("curl-{node}");
        let (refused, out) = c.lab.udp_probes_refused(&["exec", &pod, "--"], (&ip, "9"), 12);
        assert_eq!(refused, 12, "from {pod}:\n{out}");
    }
    // From outside through k8s-ctr's node port: the remote backends' errors come to k8s-ctr,
    // about the packets it SNATed.
    let (refused, out) = c.lab.udp_probes_refused(&["lab", "exec", "router", "--"], ("192.168.10.100", &node_port), 12);
    assert_eq!(refused, 12, "from the router:\n{out}");
}

#[test]
fn deleted_backends_stop_receiving_and_zero_replicas_reject_at_once() {
    let mut c = Cluster::up("svcbe");
    let (victim, (_, victim_ip)) =
        c.webpods.iter().find(|(_, (n, _))| n == "k8s-w1").map(|(a, b)| (a.clone(), b.clone())).unwrap();
    c.lab.ok(&["delete", "pod", &victim]);
    // Once every node's datapath no longer offers it, no new connection reaches it. The
    // Deployment's replacement on the same node may get the freed address back and become a
    // backend under it before a node is looked at; the distribution below tells pods by name.
    let address_reused = || {
        let pods = c.lab.ok(&[
            "get",
            "pod",
            "-l",
            "app=webpod",
            "-o",
            r#"jsonpath={range .items[*]}{.metadata.name}={.status.podIP}{"\n"}{end}"#,
        ]);
        pods.lines().any(|l| l.split_once('=').is_some_and(|(name, ip)| name != victim && ip == victim_ip))
    };
    for node in NODES {
        let backend = format!("{victim_ip}:80/TCP");
        c.lab.eventually(&["dbg", node, "bpf", "lb", "list"], WAIT, |o| {
            !o.lines().any(|l| l.starts_with(&c.cluster_ip) && l.contains(&backend)) || address_reused()
        });
    }
    let counts = c.distribution("k8s-ctr", &c.cluster_ip, 30);
    assert!(!counts.contains_key(&victim), "the deleted pod still gets connections: {counts:?}");
    assert!(counts.keys().all(|k| !k.starts_with("FAILED")), "{counts:?}");
    c.wait_webpods(3);

    // Scale to zero: every frontend is still there, with no backend, and refuses at once.
    c.lab.ok(&["patch", "deployment", "webpod", "-p", r#"{"spec":{"replicas":0}}"#]);
    c.wait_webpods(0);
    let node_port = format!("192.168.10.100:{}", c.node_port);
    for (how, args) in [
        ("pod", vec!["exec", "curl-k8s-ctr", "--", "curl", "-sS", "-m", "5", c.cluster_ip.as_str()]),
        ("node", vec!["lab", "exec", "k8s-w1", "--", "curl", "-sS", "-m", "5", c.cluster_ip.as_str()]),
        ("router", vec!["lab", "exec", "router", "--", "curl", "-sS", "-m", "5", node_port.as_str()]),
    ] {
        let start = Instant::now();
        let out = c.lab.cilia(&args);
        let took = start.elapsed();
        assert!(!out.status.success(), "{how}: answered with no backends:\n{}", text(&out));
        assert!(
            text(&out).contains("Connection refused") || text(&out).contains("Couldn't connect"),
            "{how}: {}",
            text(&out)
        );
        assert!(took < Duration::from_secs(2), "{how}: the reject took {took:?}");
    }
    // And back to three.
    c.lab.ok(&["patch", "deployment", "webpod", "-p", r#"{"spec":{"replicas":3}}"#]);
    c.wait_webpods(3);
    let counts = c.distribution("k8s-ctr", &c.cluster_ip, 12);
    assert_all_answer(&counts, &c.webpods, "after scaling back");
    assert!(counts.len() >= 2, "{counts:?}");
}

#[test]
fn agent_killed_under_load_loses_no_request() {
    let c = Cluster::up("svckill");
    c.lab.announce_from("k8s-ctr", LB_IP, WAIT);
    let agent_pid = || -> Option<(String, String)> {
        let status = c.lab.ok(&["lab", "status"]);
        status.lines().find(|l| l.starts_with("agent-k8s-ctr ")).map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f[2].to_string(), f[4].to_string())
        })
    };
    let (pid, restarts) = agent_pid().expect("the agent of k8s-ctr runs");
    // 300 requests, 20 ms apart: long enough to span the agent's death, the supervisor's restart
    // and the new agent's first sync. A marker file says when the loop is under way.
    let script = "ok=0; fail=0; for i in $(seq 1 300); do \
                  if curl -s -m 3 -o /dev/null 192.168.10.241; then ok=$((ok+1)); else fail=$((fail+1)); fi; \
                  [ $i -eq 30 ] && touch /tmp/cilia-svckill-$PPID.started; sleep 0.02; done; echo ok=$ok fail=$fail";
    let load = c
        .lab
        .command(&["lab", "exec", "router", "--", "bash", "-c", script])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("start the request loop");
    // The loop's parent is this `cilia lab exec`, whose pid names the marker.
    let marker = format!("/tmp/cilia-svckill-{}.started", load.id());
    let deadline = Instant::now() + Duration::from_secs(30);
    while !Path::new(&marker).exists() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    let _ = std::fs::remove_file(&marker);
    let killed = Command::new("kill").args(["-9", &pid]).status().expect("kill");
    assert!(killed.success(), "kill -9 {pid}");
    let out = load.wait_with_output().expect("the request loop ends");
    let summary = String::from_utf8_lossy(&out.stdout).trim().to_string();
    assert_eq!(summary, "ok=300 fail=0", "requests failed while the agent was down or restarting");

    // The supervisor restarted it, and its first sync found the maps as they were.
    let deadline = Instant::now() + WAIT;
    loop {
        if let Some((new_pid, new_restarts)) = agent_pid()
            && new_pid != pid
            && new_restarts != restarts
        {
            break;
        }
        assert!(Instant::now() < deadline, "the agent did not come back:\n{}", c.lab.ok(&["lab", "status"]));
        std::thread::sleep(Duration::from_millis(100));
    }
    let log = format!("/run/cilia/lab/{}/logs/agent-k8s-ctr.log", c.lab.name);
    let deadline = Instant::now() + WAIT;
    loop {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        let after_restart = text.rsplit("supervisor: starting agent-k8s-ctr").next().unwrap_or_default();
        if let Some(line) = after_restart.lines().find(|l| l.contains("services synced to the datapath")) {
            assert!(line.contains("upserts=0 deletes=0"), "the restarted agent rewrote the maps: {line}");
            break;
        }
        assert!(Instant::now() < deadline, "the restarted agent never synced:\n{after_restart}");
        std::thread::sleep(Duration::from_millis(100));
    }
    let counts = c.distribution("router", LB_IP, 10);
    assert_all_answer(&counts, &c.webpods, "after the restart");
}

#[test]
fn deleting_backends_under_load_fails_no_request() {
    let mut c = Cluster::up("svcdrain");
    // Requests 10 ms apart from a pod on k8s-ctr, across three graceful deletions (each waits
    // until its node removed the pod) and their replacements. A marker says the loop runs.
    let lab_name = c.lab.name.clone();
    let marker = |what: &str| format!("/tmp/cilia-{lab_name}.{what}");
    let script = format!(
        "ok=0; fail=0; end=$(($(date +%s) + 40)); while [ $(date +%s) -lt $end ] && [ ! -e {stop} ]; do \
         if curl -s -m 3 -o /dev/null {ip}; then ok=$((ok+1)); else fail=$((fail+1)); fi; \
         [ $ok -eq 20 ] && touch {started}; sleep 0.01; done; echo ok=$ok fail=$fail",
        stop = marker("stop"),
        started = marker("started"),
        ip = c.cluster_ip
    );
    let load = c
        .lab
        .command(&["exec", "curl-k8s-ctr", "--", "sh", "-c", &script])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("start the request loop");
    let deadline = Instant::now() + Duration::from_secs(30);
    while !Path::new(&marker("started")).exists() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    let _ = std::fs::remove_file(marker("started"));
    let victims: Vec<(String, String)> =
        c.webpods.iter().map(|(name, (node, _))| (name.clone(), node.clone())).collect();
    for (victim, _) in &victims {
        let out = c.lab.ok(&["delete", "pod", victim]);
        assert!(out.contains(&format!("pod \"{victim}\" deleted")), "{out}");
        // `delete` returned: the node has removed the pod.
        let pods = c.lab.ok(&["get", "pod", "-l", "app=webpod", "-o", "jsonpath={.items[*].metadata.name}"]);
        assert!(!pods.split_whitespace().any(|p| p == victim), "{victim} is still there: {pods}");
        c.wait_webpods(3);
    }
    std::fs::write(marker("stop"), "").expect("stop marker");
    let out = load.wait_with_output().expect("the request loop ends");
    let _ = std::fs::remove_file(marker("stop"));
    let summary = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let (ok, fail) = summary
        .split_once(' ')
        .and_then(|(o, f)| {
            Some((o.strip_prefix("ok=")?.parse::<u32>().ok()?, f.strip_prefix("fail=")?.parse::<u32>().ok()?))
        })
        .unwrap_or_else(|| panic!("the request loop said {summary:?}"));
    assert!(ok > 40, "too few requests to tell: {summary}");
    assert_eq!(fail, 0, "requests failed while backends were deleted: {summary}");
    // Each was drained before it stopped: its node waited for the Services to let it go.
    for (victim, node) in &victims {
        let log = std::fs::read_to_string(format!("/run/cilia/lab/{}/logs/kubelet-{node}.log", c.lab.name))
            .unwrap_or_default();
        assert!(
            log.lines().any(|l| l.contains("drained from its Services") && l.contains(victim.as_str())),
            "kubelet-{node} did not drain {victim}"
        );
    }
}

/// Three keep-alive connections from `host` (a pod or a lab host) to `target`:80, each asked
/// once, left idle for `idle`, then asked again. Returns per connection the two `Hostname:`
/// answers ("none" when the connection gave no answer: reset or closed).
fn keep_alive_across_idle(lab: &TestLab, exec: &[&str], target: &str, idle: Duration) -> Vec<(String, String)> {
    let script = format!(
        r#"trap '' PIPE
req=$'GET / HTTP/1.1\r\nHost: webpod\r\n\r\n'
answer() {{ while IFS= read -r -t 5 -u "$1" line; do case $line in Hostname:*) echo "${{line#Hostname: }}"; return;; esac; done; echo none; }}
exec 3<>/dev/tcp/{target}/80 4<>/dev/tcp/{target}/80 5<>/dev/tcp/{target}/80
for fd in 3 4 5; do printf '%s' "$req" >&"$fd"; echo "before $fd $(answer $fd)"; done
sleep {}
for fd in 3 4 5; do printf '%s' "$req" >&"$fd" 2>/dev/null; echo "after $fd $(answer $fd)"; done"#,
        idle.as_secs()
    );
    let mut args = exec.to_vec();
    args.extend(["bash", "-c", &script]);
    let out = lab.cilia(&args);
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let answer = |phase: &str, fd: &str| {
        stdout
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{phase} {fd} ")))
            .unwrap_or_else(|| panic!("no {phase} line for connection {fd}:\n{}", text(&out)))
            .to_string()
    };
    ["3", "4", "5"].iter().map(|fd| (answer("before", fd), answer("after", fd))).collect()
}

#[test]
fn idle_keep_alive_connections_keep_their_backend_past_the_syn_timeout() {
    // Longer than a lone SYN's conntrack lifetime (60 s) and than two conntrack GC passes (30 s).
    const IDLE: Duration = Duration::from_secs(65);
    let c = Cluster::up("svcidle");
    c.lab.announce_from("k8s-ctr", LB_IP, WAIT);
    // A pod through the ClusterIP (from_container) and the router through the LB IP (from_netdev,
    // SNAT for backends on other nodes), side by side.
    let results = std::thread::scope(|s| {
        let pod = s.spawn(|| keep_alive_across_idle(&c.lab, &["exec", "curl-k8s-w1", "--"], &c.cluster_ip, IDLE));
        let router = s.spawn(|| keep_alive_across_idle(&c.lab, &["lab", "exec", "router", "--"], LB_IP, IDLE));
        [("ClusterIP from curl-k8s-w1", pod.join().unwrap()), ("LB IP from the router", router.join().unwrap())]
    });
    for (path, conns) in results {
        for (before, after) in conns {
            assert!(c.webpods.contains_key(&before), "{path}: first request answered by {before:?}");
            assert_eq!(after, before, "{path}: after {IDLE:?} idle the connection went elsewhere (none: reset)");
        }
    }
}
