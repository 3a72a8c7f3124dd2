//! The lab's pods end to end, as root: the guide's manifests become pods on their nodes, wired by
//! the real CNI plugin and agents; `cilia exec` reaches them; deletion, churn and a pod runtime
//! restart leave nothing behind and disturb nothing. Every packet starts in a pod or lab
//! namespace.

mod common;

use std::{
    collections::{BTreeMap, BTreeSet},
    path::Path,
    time::{Duration, Instant},
};

use common::{TestLab, guide_manifest, namespaces_with_prefix, text};
use serde_json::Value;

/// The plugin is a binary of another package: `cargo test -p cilia` does not build it.
fn require_plugin() {
    let plugin = Path::new(common::cilia_bin()).with_file_name("cilia-cni");
    assert!(plugin.exists(), "{} is missing: run `cargo build --workspace --bins` first", plugin.display());
}

fn pods(lab: &TestLab) -> Vec<Value> {
    let out = lab.ok(&["get", "pods", "-o", "json"]);
    let list: Value = serde_json::from_str(&out).expect("get -o json is JSON");
    list["items"].as_array().cloned().unwrap_or_default()
}

fn ready(pod: &Value) -> bool {
    pod["status"]["conditions"]
        .as_array()
        .is_some_and(|c| c.iter().any(|c| c["type"] == "Ready" && c["status"] == "True"))
}

fn name(pod: &Value) -> &str {
    pod["metadata"]["name"].as_str().unwrap_or_default()
}

/// Polls until `pred` holds on the pods, or fails with the last listing.
fn wait_pods(lab: &TestLab, what: &str, timeout: Duration, pred: impl Fn(&[Value]) -> bool) -> Vec<Value> {
    let deadline = Instant::now() + timeout;
    loop {
        let pods = pods(lab);
        if pred(&pods) {
            return pods;
        }
        if Instant::now() >= deadline {
            panic!("timed out waiting for {what}; pods:\n{}", lab.ok(&["get", "pods", "-o", "wide"]));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The pod subnet of each lab node, as the operator assigns them in the guide.
fn pod_prefix(node: &str) -> &'static str {
    match node {
        "k8s-ctr" => "172.20.0.",
        "k8s-w1" => "172.20.1.",
        "k8s-w0" => "172.20.2.",
        other => panic!("unexpected node {other}"),
    }
}

const NODES: [&str; 3] = ["k8s-ctr", "k8s-w1", "k8s-w0"];

/// Host ends of pod veths in every node.
fn pod_veths(lab: &TestLab) -> BTreeMap<&'static str, Vec<String>> {
    NODES
        .iter()
        .map(|node| {
            let out = lab.ok(&["lab", "exec", node, "--", "ip", "-o", "link", "show"]);
            let veths = out
                .lines()
                .filter_map(|l| l.split(": ").nth(1))
                .map(|n| n.split('@').next().unwrap_or(n).to_string())
                .filter(|n| n.starts_with("lxc"))
                .collect();
            (*node, veths)
        })
        .collect()
}

/// Addresses the agents hold for pods, from their allocation files.
fn allocations(lab: &TestLab) -> usize {
    NODES
        .iter()
        .map(|node| {
            let path = format!("/run/cilia/lab/{}/nodes/{node}/pod-ips.json", lab.name);
            std::fs::read_to_string(&path)
                .ok()
                .and_then(|t| serde_json::from_str::<Value>(&t).ok())
                .and_then(|v| v["allocations"].as_object().map(|a| a.len()))
                .unwrap_or(0)
        })
        .sum()
}

fn pod_namespaces(lab: &TestLab) -> Vec<String> {
    namespaces_with_prefix(&format!("{}-pod-", lab.name))
}

/// Processes whose environment names this lab (supervised processes and what they started).
fn lab_processes(lab: &str) -> Vec<(i32, String)> {
    let needle = format!("CILIA_LAB={lab}");
    std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/environ"))
                .is_ok_and(|env| env.split(|b| *b == 0).any(|kv| kv == needle.as_bytes()))
        })
        .filter_map(|pid| {
            let cmd = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
            let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
            (!cmd.is_empty()).then_some((pid, cmd))
        })
        .collect()
}

fn process_with(lab: &str, needle: &str) -> Option<i32> {
    lab_processes(lab).into_iter().find(|(_, cmd)| cmd.contains(needle)).map(|(pid, _)| pid)
}

#[test]
fn guide_pods_run_on_their_nodes_and_answer() {
    require_plugin();
    let lab = TestLab::up("pods");
    for file in ["webpod.yaml", "curl-pod.yaml"] {
        let out = lab.cilia_stdin(&["apply", "-f", "-"], &guide_manifest(file));
        assert!(out.status.success(), "{}", text(&out));
    }

    // Three webpods on three nodes, curl-pod on k8s-ctr, all Ready, addressed from their node's CIDR.
    let pods = wait_pods(&lab, "4 ready pods", Duration::from_secs(60), |p| p.len() == 4 && p.iter().all(ready));
    let mut webpod_nodes = BTreeSet::new();
    for pod in &pods {
        let node = pod["spec"]["nodeName"].as_str().expect("bound");
        let ip = pod["status"]["podIP"].as_str().expect("an address");
        assert!(ip.starts_with(pod_prefix(node)), "{} on {node} has {ip}", name(pod));
        assert_eq!(pod["status"]["phase"], "Running");
        assert!(pod["status"]["hostIP"].as_str().is_some_and(|h| h.starts_with("192.168.")), "{pod}");
        if name(pod).starts_with("webpod-") {
            webpod_nodes.insert(node.to_string());
            let parts: Vec<&str> = name(pod).split('-').collect();
            assert_eq!(parts.len(), 3, "webpod-<hash>-<suffix>: {}", name(pod));
            assert_eq!(parts[2].len(), 5);
            assert_eq!(pod["metadata"]["labels"]["pod-template-hash"], parts[1]);
            assert_eq!(pod["metadata"]["ownerReferences"][0]["kind"], "Deployment");
        } else {
            assert_eq!((name(pod), node), ("curl-pod", "k8s-ctr"));
        }
    }
    assert_eq!(webpod_nodes.len(), 3, "anti-affinity spreads webpod");
    assert_eq!(pod_namespaces(&lab).len(), 4);
    lab.eventually(&["get", "deploy", "webpod"], Duration::from_secs(10), |o| o.contains("3/3"));
    let slices = lab.eventually(
        &["get", "endpointslices", "-l", "kubernetes.io/service-name=webpod", "-o", "json"],
        Duration::from_secs(10),
        |o| o.matches("\"ready\": true").count() == 3,
    );
    assert!(slices.contains("endpointslice-controller.k8s.io"), "{slices}");

    // The guide's lookups and `kubectl exec`: same segment, native routing.
    let w1_ip = lab.ok(&[
        "get",
        "pod",
        "-l",
        "app=webpod",
        "--field-selector",
        "spec.nodeName=k8s-w1",
        "-o",
        "jsonpath={.items[0].status.podIP}",
    ]);
    let w1_name = pods.iter().find(|p| p["status"]["podIP"] == w1_ip.as_str()).map(name).unwrap().to_string();
    let out = lab.cilia(&["exec", "curl-pod", "--", "curl", "-s", "--max-time", "5", &w1_ip]);
    let body = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", text(&out));
    assert!(body.contains(&format!("Hostname: {w1_name}")), "{body}");
    assert!(body.contains(&format!("IP: {w1_ip}")) && body.contains("IP: 127.0.0.1"), "{body}");
    assert!(body.contains("RemoteAddr: 172.20.0.") && body.contains("GET / HTTP/1.1"), "{body}");
    let ping = lab.cilia(&["exec", "-it", "curl-pod", "--", "ping", "-c", "1", "-W", "2", &w1_ip]);
    assert!(ping.status.success(), "{}", text(&ping));
    let code = lab.cilia(&["exec", "curl-pod", "--", "sh", "-c", "exit 7"]);
    assert_eq!(code.status.code(), Some(7), "exit codes pass through");
    for (args, needle) in [
        (vec!["exec", "nope", "--", "true"], "not found"),
        (vec!["exec", "curl-pod", "--", "no-such-program"], "not found"),
    ] {
        let out = lab.cilia(&args);
        assert!(!out.status.success());
        assert!(String::from_utf8_lossy(&out.stderr).contains(needle), "{args:?}: {}", text(&out));
    }

    // A fourth replica has no node left.
    lab.ok(&["patch", "deploy", "webpod", "-p", r#"{"spec":{"replicas":4}}"#]);
    let pending = wait_pods(&lab, "an unschedulable webpod", Duration::from_secs(20), |p| {
        p.iter().any(|p| {
            p["spec"]["nodeName"].is_null()
                && p["status"]["conditions"]
                    .as_array()
                    .is_some_and(|c| c.iter().any(|c| c["type"] == "PodScheduled" && c["reason"] == "Unschedulable"))
        })
    });
    let stuck = pending.iter().find(|p| p["spec"]["nodeName"].is_null()).unwrap();
    assert_eq!(stuck["status"]["phase"], "Pending");
    let out = lab.cilia(&["exec", name(stuck), "--", "true"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("not running yet"), "{}", text(&out));
    lab.ok(&["patch", "deploy", "webpod", "-p", r#"{"spec":{"replicas":3}}"#]);
    wait_pods(&lab, "3 webpods again", Duration::from_secs(20), |p| p.len() == 4 && p.iter().all(ready));

    // Deleting a pod releases its veth, address and namespace; the Deployment replaces it.
    let (veths, addresses) = (pod_veths(&lab), allocations(&lab));
    assert_eq!(veths.values().map(Vec::len).sum::<usize>(), 4, "{veths:?}");
    assert_eq!(addresses, 4);
    lab.ok(&["delete", "pod", "curl-pod"]);
    let deadline = Instant::now() + Duration::from_secs(20);
    while pod_veths(&lab)["k8s-ctr"].len() != veths["k8s-ctr"].len() - 1
        || allocations(&lab) != 3
        || pod_namespaces(&lab).iter().any(|n| n.contains("curl-pod"))
    {
        assert!(
            Instant::now() < deadline,
            "curl-pod's veth, address or namespace stays: {:?} {:?}",
            pod_veths(&lab),
            pod_namespaces(&lab)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    lab.ok(&["delete", "pod", &w1_name]);
    wait_pods(&lab, "a replacement webpod on k8s-w1", Duration::from_secs(30), |p| {
        p.len() == 3 && p.iter().all(ready) && p.iter().any(|p| p["spec"]["nodeName"] == "k8s-w1" && name(p) != w1_name)
    });
    assert_eq!(pod_namespaces(&lab).len(), 3, "{:?}", pod_namespaces(&lab));

    // `lab down` takes pods, their namespaces and processes with it.
    let out = lab.cilia(&["lab", "down"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(namespaces_with_prefix(&format!("{}-", lab.name)).is_empty());
    assert!(lab_processes(&lab.name).is_empty(), "{:?}", lab_processes(&lab.name));
}

#[test]
fn a_restarted_pod_runtime_adopts_its_pods_and_removes_leftovers() {
    require_plugin();
    let lab = TestLab::up("kubr");
    let out = lab.cilia_stdin(&["apply", "-f", "-"], &guide_manifest("webpod.yaml"));
    assert!(out.status.success(), "{}", text(&out));
    let before = wait_pods(&lab, "3 ready webpods", Duration::from_secs(60), |p| p.len() == 3 && p.iter().all(ready));
    let on_w1 = before.iter().find(|p| p["spec"]["nodeName"] == "k8s-w1").expect("a webpod on k8s-w1");
    let (pod_name, ip) = (name(on_w1).to_string(), on_w1["status"]["podIP"].as_str().unwrap().to_string());
    let whoami = process_with(&lab.name, &format!("lab whoami --name {pod_name}")).expect("whoami runs");
    let namespaces = pod_namespaces(&lab);

    // A namespace no pod owns, as a crash might leave one.
    let leftover = format!("{}-pod-default-gone-12345678", lab.name);
    assert!(std::process::Command::new("ip").args(["netns", "add", &leftover]).status().unwrap().success());
    let kubelet = process_with(&lab.name, "lab kubelet --node k8s-w1").expect("the pod runtime runs");
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(kubelet), nix::sys::signal::Signal::SIGKILL).unwrap();

    let deadline = Instant::now() + Duration::from_secs(30);
    while pod_namespaces(&lab).contains(&leftover) {
        assert!(Instant::now() < deadline, "the leftover namespace stays");
        std::thread::sleep(Duration::from_millis(100));
    }
    let restarted = process_with(&lab.name, "lab kubelet --node k8s-w1").expect("restarted by the supervisor");
    assert_ne!(restarted, kubelet);
    assert_eq!(
        process_with(&lab.name, &format!("lab whoami --name {pod_name}")),
        Some(whoami),
        "adopted, not restarted"
    );
    assert_eq!(pod_namespaces(&lab), namespaces);
    let after = pods(&lab);
    let same = after.iter().find(|p| name(p) == pod_name).expect("the pod is still there");
    assert!(ready(same) && same["status"]["podIP"] == ip.as_str(), "{same}");
    let from = before.iter().find(|p| p["spec"]["nodeName"] == "k8s-ctr").map(name).unwrap().to_string();
    let curl = lab.cilia(&["exec", &from, "--", "curl", "-s", "--max-time", "5", &ip]);
    assert!(String::from_utf8_lossy(&curl.stdout).contains(&format!("Hostname: {pod_name}")), "{}", text(&curl));

    // An agent that does not answer: the pod waits in ContainerCreating with the plugin's reason,
    // and starts once the agent is back.
    let socket = format!("/run/cilia/lab/{}/nodes/k8s-w0/cni.sock", lab.name);
    let away = format!("{socket}.away");
    std::fs::rename(&socket, &away).expect("hiding the agent's socket");
    let waiter = "apiVersion: v1\nkind: Pod\nmetadata: {name: waiter}\nspec:\n  nodeName: k8s-w0\n  containers: [{name: c, image: nicolaka/netshoot}]\n";
    assert!(lab.cilia_stdin(&["apply", "-f", "-"], waiter).status.success());
    lab.eventually(&["get", "pod", "waiter", "-o", "jsonpath={.status.message}"], Duration::from_secs(20), |m| {
        m.contains("code 11")
    });
    assert!(lab.ok(&["get", "pod", "waiter"]).contains("ContainerCreating"));
    std::fs::rename(&away, &socket).expect("restoring the agent's socket");
    wait_pods(&lab, "waiter running", Duration::from_secs(30), |p| {
        p.iter().any(|p| name(p) == "waiter" && ready(p) && p["status"]["message"].is_null())
    });
}

#[test]
fn a_hundred_pods_come_and_go_without_leaks() {
    require_plugin();
    let lab = TestLab::up("churn");
    let deployment = "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: churn}\nspec:\n  replicas: 20\n  selector: {matchLabels: {app: churn}}\n  template:\n    metadata: {labels: {app: churn}}\n    spec:\n      terminationGracePeriodSeconds: 0\n      containers: [{name: c, image: traefik/whoami, ports: [{containerPort: 80}]}]\n";
    let out = lab.cilia_stdin(&["apply", "-f", "-"], deployment);
    assert!(out.status.success(), "{}", text(&out));
    let mut seen = BTreeSet::new();
    for round in 0..5 {
        if round > 0 {
            lab.ok(&["patch", "deploy", "churn", "-p", r#"{"spec":{"replicas":20}}"#]);
        }
        let pods = wait_pods(&lab, &format!("round {round}: 20 ready pods"), Duration::from_secs(120), |p| {
            p.len() == 20 && p.iter().all(ready)
        });
        seen.extend(pods.iter().map(|p| name(p).to_string()));
        assert_eq!(pod_namespaces(&lab).len(), 20);
        lab.ok(&["patch", "deploy", "churn", "-p", r#"{"spec":{"replicas":0}}"#]);
        wait_pods(&lab, &format!("round {round}: no pods"), Duration::from_secs(60), |p| p.is_empty());
    }
    assert_eq!(seen.len(), 100, "every round made new pods");
    // Teardown runs after the objects are gone; give it a moment.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (namespaces, veths, addresses) = (pod_namespaces(&lab), pod_veths(&lab), allocations(&lab));
        let veth_count: usize = veths.values().map(Vec::len).sum();
        if namespaces.is_empty() && veth_count == 0 && addresses == 0 {
            break;
        }
        assert!(Instant::now() < deadline, "leaked: namespaces {namespaces:?}, veths {veths:?}, {addresses} addresses");
        std::thread::sleep(Duration::from_millis(200));
    }
    for node in NODES {
        let dir = format!("/run/cilia/lab/{}/nodes/{node}/pods", lab.name);
        let left: Vec<_> =
            std::fs::read_dir(&dir).map(|d| d.flatten().map(|e| e.file_name()).collect()).unwrap_or_default();
        assert!(left.is_empty(), "{dir}: {left:?}");
    }
    assert!(!lab_processes(&lab.name).iter().any(|(_, cmd)| cmd.contains("lab whoami")), "a whoami survives");
}
