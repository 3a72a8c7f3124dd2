//! The plugin binary against a real agent, as root, in namespaces each test creates and removes.

mod common;

use std::collections::HashSet;
use std::net::Ipv4Addr;
use std::sync::Arc;

use common::*;
use ipnet::Ipv4Net;

#[test]
fn add_check_del() {
    let dir = tempfile::tempdir().unwrap();
    let node = TestNetns::new("node");
    let pod = TestNetns::new("pod");
    let agent = Agent::start(&node, dir.path());
    let conf = net_conf(&agent.socket);

    let add = cni("ADD", "ctr-one", &pod.path(), &conf);
    add.assert_ok();
    let result = add.json();
    assert_eq!(result["cniVersion"], "1.0.0");
    let ip = result_ip(&result);
    assert!(CIDR.parse::<Ipv4Net>().unwrap().contains(&ip));
    assert_ne!(ip, ROUTER);
    assert_eq!(result["ips"][0]["gateway"], ROUTER.to_string());
    assert_eq!(result["ips"][0]["interface"], 1);
    assert_eq!(result["interfaces"][1]["name"], "eth0");
    assert_eq!(result["interfaces"][1]["sandbox"], pod.path());
    assert!(result["interfaces"][0]["name"].as_str().unwrap().starts_with("lxc"));
    assert_eq!(result["routes"][0]["dst"], "0.0.0.0/0");

    let addrs = pod.exec(&["ip", "-4", "-o", "addr", "show", "dev", "eth0"]);
    assert!(addrs.contains(&format!("inet {ip}/32")), "{addrs}");
    let link = pod.exec(&["ip", "link", "show", "eth0"]);
    assert!(link.contains(&format!("mtu {MTU}")), "{link}");
    assert!(
        pod.routes().iter().any(|r| r.starts_with(&format!("default via {ROUTER} dev eth0"))),
        "{:?}",
        pod.routes()
    );
    assert!(pod.ping(ROUTER), "pod -> router IP");
    assert!(node.ping(ip), "node -> pod");

    // CHECK, with the previous result as a runtime passes it.
    let mut check_conf: serde_json::Value = serde_json::from_str(&conf).unwrap();
    check_conf["prevResult"] = result.clone();
    cni("CHECK", "ctr-one", &pod.path(), &check_conf.to_string()).assert_ok();
    assert_eq!(cni("CHECK", "ctr-unknown", &pod.path(), &conf).error_code(), 3);

    cni("DEL", "ctr-one", &pod.path(), &conf).assert_ok();
    assert!(lxc_links(&node).is_empty(), "{:?}", node.links());
    assert!(!pod.links().contains(&"eth0".to_string()));
    assert!(agent.network.allocations().is_empty());
    assert!(!node.routes().iter().any(|r| r.starts_with(&format!("{ip} "))), "{:?}", node.routes());
    // Idempotent, also without a namespace or for a container never seen.
    cni("DEL", "ctr-one", &pod.path(), &conf).assert_ok();
    cni("DEL", "ctr-one", "", &conf).assert_ok();
    cni("DEL", "ctr-never", "/run/netns/cnit-gone", &conf).assert_ok();
    // CHECK after DEL: unknown container.
    assert_eq!(cni("CHECK", "ctr-one", &pod.path(), &conf).error_code(), 3);
    // VERSION needs no agent.
    let version = run_cni(&[("CNI_COMMAND", "VERSION")], r#"{"cniVersion":"1.0.0"}"#);
    version.assert_ok();
    let supported = version.json()["supportedVersions"].clone();
    assert!(supported.as_array().unwrap().iter().any(|v| v == "1.0.0"), "{supported}");
    assert!(supported.as_array().unwrap().iter().any(|v| v == "0.4.0"), "{supported}");
}

#[test]
fn add_twice_returns_the_same_attachment() {
    let dir = tempfile::tempdir().unwrap();
    let node = TestNetns::new("node");
    let pod = TestNetns::new("pod");
    let agent = Agent::start(&node, dir.path());
    let conf = net_conf(&agent.socket);

    let first = cni("ADD", "ctr-twice", &pod.path(), &conf);
    first.assert_ok();
    let ip = result_ip(&first.json());
    // The runtime did not hear the answer and asks again: the same attachment, wired once.
    let second = cni("ADD", "ctr-twice", &pod.path(), &conf);
    second.assert_ok();
    assert_eq!(second.json()["ips"], first.json()["ips"]);
    assert_eq!(second.json()["interfaces"], first.json()["interfaces"], "the same devices (and MACs)");
    assert_eq!(pod.links().iter().filter(|l| *l != "lo").count(), 1, "{:?}", pod.links());
    assert_eq!(lxc_links(&node).len(), 1);
    assert_eq!(agent.network.allocations().len(), 1);
    assert!(node.ping(ip));
    cni("CHECK", "ctr-twice", &pod.path(), &conf).assert_ok();
    cni("DEL", "ctr-twice", &pod.path(), &conf).assert_ok();
}

#[test]
fn bad_input_leaves_nothing_behind() {
    let dir = tempfile::tempdir().unwrap();
    let node = TestNetns::new("node");
    let pod = TestNetns::new("pod");
    let agent = Agent::start(&node, dir.path());
    let conf = net_conf(&agent.socket);
    let full_env = |netns: &str| {
        vec![
            ("CNI_COMMAND", "ADD".to_string()),
            ("CNI_CONTAINERID", "ctr-bad".to_string()),
            ("CNI_NETNS", netns.to_string()),
            ("CNI_IFNAME", "eth0".to_string()),
            ("CNI_PATH", "/opt/cni/bin".to_string()),
        ]
    };
    let as_refs = |v: &[(&'static str, String)]| v.iter().map(|(k, v)| (*k, v.clone())).collect::<Vec<_>>();
    let run = |env: &[(&'static str, String)], stdin: &str| {
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
        run_cni(&env, stdin)
    };

    assert_eq!(run(&full_env(&pod.path()), "this is { not json").error_code(), 6);
    for missing in ["CNI_COMMAND", "CNI_CONTAINERID", "CNI_NETNS", "CNI_IFNAME"] {
        let env: Vec<_> = as_refs(&full_env(&pod.path())).into_iter().filter(|(k, _)| *k != missing).collect();
        assert_eq!(run(&env, &conf).error_code(), 4, "without {missing}");
    }
    let future = conf.replace("\"1.0.0\"", "\"9.0.0\"");
    let out = run(&full_env(&pod.path()), &future);
    assert_eq!(out.error_code(), 1);
    assert_eq!(out.json()["cniVersion"], "1.0.0");
    let no_agent = net_conf(&dir.path().join("nobody-listens.sock"));
    assert_eq!(run(&full_env(&pod.path()), &no_agent).error_code(), 11);
    assert_eq!(run(&full_env("/run/netns/cnit-does-not-exist"), &conf).error_code(), 4);

    // A failure after the veth exists: the pod already has a default route, so installing ours
    // fails half-way. The veth must be removed again and the address released.
    sh(&["ip", "-n", &pod.name, "link", "add", "x0", "type", "veth", "peer", "x1"]);
    sh(&["ip", "-n", &pod.name, "link", "set", "x0", "up"]);
    sh(&["ip", "-n", &pod.name, "addr", "add", "10.9.9.1/24", "dev", "x0"]);
    sh(&["ip", "-n", &pod.name, "route", "add", "default", "via", "10.9.9.2"]);
    let out = run(&full_env(&pod.path()), &conf);
    let code = out.error_code();
    assert_eq!(code, 100, "{}", out.stdout);
    assert!(out.json()["msg"].as_str().unwrap().contains("route"), "{}", out.stdout);

    let mut pod_links = pod.links();
    pod_links.sort();
    assert_eq!(pod_links, ["lo", "x0", "x1"]);
    assert!(lxc_links(&node).is_empty(), "{:?}", node.links());
    assert!(agent.network.allocations().is_empty());
}

#[test]
fn hundred_pods_leak_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let node = TestNetns::new("node");
    let agent = Agent::start(&node, dir.path());
    let conf = net_conf(&agent.socket);
    let routes_before = node.routes();
    let pods: Vec<TestNetns> = (0..100).map(|i| TestNetns::new(&format!("p{i}"))).collect();

    let mut ips = HashSet::new();
    for (i, pod) in pods.iter().enumerate() {
        let out = cni("ADD", &format!("ctr-{i}"), &pod.path(), &conf);
        out.assert_ok();
        assert!(ips.insert(result_ip(&out.json())), "duplicate address");
    }
    assert_eq!(lxc_links(&node).len(), 100);
    assert_eq!(agent.network.allocations().len(), 100);
    assert!(pods[0].ping(ROUTER));
    assert!(pods[99].ping(ROUTER));

    for (i, pod) in pods.iter().enumerate() {
        cni("DEL", &format!("ctr-{i}"), &pod.path(), &conf).assert_ok();
    }
    assert!(lxc_links(&node).is_empty(), "{:?}", node.links());
    assert_eq!(node.routes(), routes_before);
    assert!(agent.network.allocations().is_empty());
    let state: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("state/pod-ips.json")).unwrap()).unwrap();
    assert_eq!(state["allocations"].as_object().unwrap().len(), 0, "{state}");
    for pod in &pods {
        assert_eq!(pod.links(), ["lo"]);
    }
}

#[test]
fn agent_restart_keeps_pods() {
    let dir = tempfile::tempdir().unwrap();
    let node = TestNetns::new("node");
    let mut pods: Vec<TestNetns> = (0..4).map(|i| TestNetns::new(&format!("r{i}"))).collect();
    let agent = Agent::start(&node, dir.path());
    let conf = net_conf(&agent.socket);
    let ips: Vec<Ipv4Addr> = pods
        .iter()
        .enumerate()
        .map(|(i, pod)| result_ip(&cni("ADD", &format!("ctr-{i}"), &pod.path(), &conf).assert_ok().json()))
        .collect();

    // Kill the agent. Pods keep their connectivity: the kernel does the forwarding.
    agent.kill();
    assert!(!dir.path().join("run/cni.sock").exists());
    assert_eq!(cni("ADD", "ctr-while-down", &pods[0].path(), &conf).error_code(), 11);
    assert!(pods[1].ping(ROUTER));
    // A pod disappears while the agent is down: its veth goes with its namespace.
    let gone = ips[3];
    drop(pods.pop());
    // The kernel dismantles a namespace asynchronously; wait until the veth is gone.
    assert!(
        testkit::wait_until(std::time::Duration::from_secs(10), || lxc_links(&node).len() == 3),
        "{:?}",
        node.links()
    );

    let agent = Agent::start(&node, dir.path());
    let allocations = agent.network.allocations();
    assert_eq!(allocations.len(), 3, "{allocations:?}");
    for (i, ip) in ips.iter().take(3).enumerate() {
        assert_eq!(allocations[&format!("ctr-{i}")].ip, *ip);
        assert!(node.ping(*ip), "node -> pod {ip} after restart");
    }
    assert!(!allocations.values().any(|a| a.ip == gone));
    let fresh = TestNetns::new("fresh");
    let new_ip = result_ip(&cni("ADD", "ctr-new", &fresh.path(), &conf).assert_ok().json());
    assert!(!ips[..3].contains(&new_ip), "{new_ip} handed out twice");
    assert!(fresh.ping(ROUTER));

    // Even a lost state file is recovered from the kernel: each veth names its container.
    agent.kill();
    std::fs::remove_file(dir.path().join("state/pod-ips.json")).unwrap();
    let agent = Agent::start(&node, dir.path());
    let allocations = agent.network.allocations();
    assert_eq!(allocations.len(), 4, "{allocations:?}");
    assert_eq!(allocations["ctr-new"].ip, new_ip);
    assert_eq!(allocations["ctr-0"].ip, ips[0]);
    let another = TestNetns::new("another");
    let another_ip = result_ip(&cni("ADD", "ctr-another", &another.path(), &conf).assert_ok().json());
    assert!(!ips[..3].contains(&another_ip) && another_ip != new_ip);
}

/// The agent is killed in the middle of an ADD, before or after part of the wiring; the runtime
/// retries the ADD against the restarted agent and the pod gets the address it was first given.
#[test]
fn add_retried_across_an_agent_restart_keeps_the_first_address() {
    let dir = tempfile::tempdir().unwrap();
    let node = TestNetns::new("node");
    let pods: Vec<TestNetns> = (0..2).map(|i| TestNetns::new(&format!("k{i}"))).collect();
    let agent = Agent::start(&node, dir.path());
    let conf = net_conf(&agent.socket);
    let ips: Vec<Ipv4Addr> = pods
        .iter()
        .enumerate()
        .map(|(i, pod)| result_ip(&cni("ADD", &format!("ctr-k{i}"), &pod.path(), &conf).assert_ok().json()))
        .collect();
    agent.kill();
    // ctr-k0: the address was recorded, the veth not made yet.
    let host0 = netconf::host_ifname_for("ctr-k0");
    sh(&["ip", "-n", &node.name, "link", "del", &host0]);
    // ctr-k1: the veth made, the pod's address not set yet.
    sh(&["ip", "-n", &pods[1].name, "addr", "flush", "dev", "eth0"]);

    let agent = Agent::start(&node, dir.path());
    assert_eq!(agent.network.allocations().len(), 2, "{:?}", agent.network.allocations());
    for (i, pod) in pods.iter().enumerate() {
        let retried = cni("ADD", &format!("ctr-k{i}"), &pod.path(), &conf);
        retried.assert_ok();
        assert_eq!(result_ip(&retried.json()), ips[i], "ctr-k{i} keeps its first address");
        assert_eq!(pod.links().iter().filter(|l| *l != "lo").count(), 1, "{:?}", pod.links());
        cni("CHECK", &format!("ctr-k{i}"), &pod.path(), &conf).assert_ok();
        assert!(node.ping(ips[i]), "node -> {}", ips[i]);
    }
    assert_eq!(lxc_links(&node).len(), 2, "wired once: {:?}", node.links());
    assert_eq!(agent.network.allocations().len(), 2);
}

/// The agent's datapath is on a pod's veth before ADD answers, so the pod's first packet already
/// meets it: ADD calls the wired hook with the host-side interface, and returns only after it. A
/// hook that fails fails the ADD and leaves nothing behind.
#[test]
fn add_answers_after_the_wired_hook_ran() {
    let dir = tempfile::tempdir().unwrap();
    let node = TestNetns::new("node");
    let pod = TestNetns::new("pod");
    let agent = Agent::start(&node, dir.path());
    let conf = net_conf(&agent.socket);
    let seen = Arc::new(std::sync::Mutex::new(Vec::<(String, std::net::Ipv4Addr)>::new()));
    let record = seen.clone();
    agent.network.set_wired_hook(Arc::new(move |ifname: &str, addr| {
        record.lock().unwrap().push((ifname.to_string(), addr));
        Box::pin(async { Ok(()) })
    }));

    let add = cni("ADD", "ctr-hook", &pod.path(), &conf);
    add.assert_ok();
    let host = add.json()["interfaces"][0]["name"].as_str().unwrap().to_string();
    let address = add.json()["ips"][0]["address"].as_str().unwrap().split('/').next().unwrap().parse().unwrap();
    assert_eq!(*seen.lock().unwrap(), [(host.clone(), address)], "ADD answered before the hook ran");
    assert_eq!(agent.network.address_of_host_veth(&host), Some(address));
    // A retried ADD of a wired container runs it again (a restarted agent attaches again).
    cni("ADD", "ctr-hook", &pod.path(), &conf).assert_ok();
    assert_eq!(seen.lock().unwrap().len(), 2);

    agent.network.set_wired_hook(Arc::new(|_: &str, _| Box::pin(async { Err("no datapath".to_string()) })));
    let pod2 = TestNetns::new("pod2");
    let failed = cni("ADD", "ctr-fails", &pod2.path(), &conf);
    failed.error_code();
    assert!(failed.stdout.contains("no datapath"), "{}", failed.stdout);
    assert!(!pod2.links().contains(&"eth0".to_string()), "a failed ADD left the pod wired");
    assert_eq!(lxc_links(&node).len(), 1, "a failed ADD left its veth: {:?}", node.links());
    assert_eq!(agent.network.allocations().len(), 1, "a failed ADD kept its address");
}
