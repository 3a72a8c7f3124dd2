//! Tunnel and hybrid routing end to end, as root, each test in a lab of its own (torn down even
//! on panic): every pod reaches every pod through the VXLAN overlay with no pod routes on the
//! router; large packets and a bulk transfer cross the tunnel; a deleted node leaves every
//! tunnel map within a second; VXLAN from a sender that is no node is dropped; a bad `config set` changes nothing; hybrid encapsulates only
//! across the router; native → tunnel → hybrid → native each converge and leave nothing behind.
//!
//! Every packet starts inside a lab or pod namespace.

mod common;

use std::{
    path::PathBuf,
    process::Stdio,
    thread,
    time::{Duration, Instant},
};

use common::{TestLab, guide_manifest, start_tcpdump, text, wait_for_line};

const WAIT: Duration = Duration::from_secs(40);

fn lab_with_mode(prefix: &str, mode: Option<&str>) -> TestLab {
    let lab = TestLab { name: format!("{prefix}{}", std::process::id()) };
    let mut args = vec!["lab", "up"];
    if let Some(m) = mode {
        args.extend(["--routing-mode", m]);
    }
    let out = lab.cilia(&args);
    assert!(out.status.success(), "lab up failed:\n{}", text(&out));
    lab
}

/// (name, ip, node) of every running pod, once webpod has one replica per node and curl-pod runs.
fn deploy_pods(lab: &TestLab) -> Vec<(String, String, String)> {
    for file in ["webpod.yaml", "curl-pod.yaml"] {
        let out = lab.cilia_stdin(&["apply", "-f", "-"], &guide_manifest(file));
        assert!(out.status.success(), "apply {file}:\n{}", text(&out));
    }
    let wide = lab.eventually(&["get", "pod", "-o", "wide"], WAIT, |out| {
        out.lines().skip(1).filter(|l| l.contains(" Running ")).count() == 4
    });
    wide.lines()
        .skip(1)
        .map(|l| {
            let c: Vec<&str> = l.split_whitespace().collect();
            (c[0].to_string(), c[5].to_string(), c[6].to_string())
        })
        .collect()
}

fn exec_ok(lab: &TestLab, pod: &str, cmd: &[&str]) -> Result<String, String> {
    let mut args = vec!["exec", pod, "--"];
    args.extend(cmd);
    let out = lab.cilia(&args);
    if out.status.success() { Ok(String::from_utf8_lossy(&out.stdout).into_owned()) } else { Err(text(&out)) }
}

/// Every pod pings every other pod (retrying briefly while a mode converges).
fn all_pairs_reachable(lab: &TestLab, pods: &[(String, String, String)]) {
    for (from, _, from_node) in pods {
        for (to, ip, to_node) in pods {
            if from == to {
                continue;
            }
            let deadline = Instant::now() + Duration::from_secs(10);
            loop {
                match exec_ok(lab, from, &["ping", "-c", "1", "-W", "1", ip]) {
                    Ok(_) => break,
                    Err(e) if Instant::now() >= deadline => {
                        panic!("{from} ({from_node}) cannot reach {to} {ip} ({to_node}):\n{e}")
                    }
                    Err(_) => thread::sleep(Duration::from_millis(200)),
                }
            }
        }
    }
}

fn host(lab: &TestLab, node: &str, cmd: &[&str]) -> String {
    let mut args = vec!["lab", "exec", node, "--"];
    args.extend(cmd);
    let out = lab.cilia(&args);
    String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr)
}

fn pin_dir(lab: &TestLab, node: &str) -> PathBuf {
    PathBuf::from(datapath::BPF_ROOT).join(&lab.name).join(node)
}

fn ip_of(pods: &[(String, String, String)], node: &str) -> String {
    pods.iter().find(|p| p.0.starts_with("webpod-") && p.2 == node).map(|p| p.1.clone()).expect("webpod on node")
}

#[test]
fn tunnel_mode_reaches_every_pod_and_handles_mtu_node_removal_and_bad_config() {
    let lab = lab_with_mode("tun", Some("tunnel"));
    let pods = deploy_pods(&lab);
    all_pairs_reachable(&lab, &pods);
    assert!(!host(&lab, "router", &["ip", "route"]).contains("172.20."), "the router routes pod CIDRs");
    let link = host(&lab, "k8s-w0", &["ip", "-d", "link", "show", "cilium_vxlan"]);
    assert!(link.contains("mtu 1500") && link.contains("external") && link.contains("dstport 8472"), "{link}");

    // Large packets, fragmented where they exceed the tunnel MTU, and a 20 MB TCP transfer.
    let w0 = ip_of(&pods, "k8s-w0");
    for size in ["1472", "1500"] {
        exec_ok(&lab, "curl-pod", &["ping", "-c", "2", "-W", "2", "-M", "dont", "-s", size, &w0])
            .unwrap_or_else(|e| panic!("ping -s {size} to {w0}:\n{e}"));
    }
    let w0_pod = pods.iter().find(|p| p.1 == w0).unwrap().0.clone();
    let mut server = lab
        .command(&["exec", &w0_pod, "--", "timeout", "30", "iperf3", "-s", "-1", "-p", "5201", "--forceflush"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("iperf3 server");
    wait_for_line(server.stdout.take().expect("piped stdout"), "Server listening", "iperf3 -s");
    let bulk = exec_ok(&lab, "curl-pod", &["timeout", "25", "iperf3", "-c", &w0, "-p", "5201", "-n", "20M"]);
    let _ = server.kill();
    let _ = server.wait();
    let bulk = bulk.unwrap_or_else(|e| panic!("20 MB over the tunnel failed:\n{e}"));
    assert!(bulk.contains("receiver"), "{bulk}");

    // A bad value is refused with the valid ones, and nothing changes.
    let before = lab.ok(&["config", "view"]);
    let out = lab.cilia(&["config", "set", "routing-mode=tunel"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("valid values: native, tunnel, hybrid") && err.contains("nothing was changed"), "{err}");
    assert_eq!(lab.ok(&["config", "view"]), before);

    // Pod traffic to another node's pod is encapsulated on the pod's veth: k8s-ctr's stack does
    // not forward it (a local pod's is forwarded, both ways).
    let forwarded = || {
        host(&lab, "k8s-ctr", &["nstat", "-az", "IpForwDatagrams"])
            .lines()
            .find_map(|l| {
                l.strip_prefix("IpForwDatagrams").and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
            })
            .expect("IpForwDatagrams")
    };
    // Nor does the VXLAN driver see it: it is encapsulated and stripped in BPF, so cilium_vxlan's
    // counters on both ends stay still.
    let vxlan_packets = |node: &str| {
        let out = host(&lab, node, &["ip", "-s", "-j", "link", "show", "dev", "cilium_vxlan"]);
        let v: serde_json::Value = serde_json::from_str(&out).expect("ip -j output");
        let stats = &v[0]["stats64"];
        stats["tx"]["packets"].as_u64().expect("tx packets") + stats["rx"]["packets"].as_u64().expect("rx packets")
    };
    let before = forwarded();
    let vxlan_before = [vxlan_packets("k8s-ctr"), vxlan_packets("k8s-w0")];
    exec_ok(&lab, "curl-pod", &["ping", "-c", "5", "-i", "0.2", &w0]).expect("ping k8s-w0's pod");
    let through_stack = forwarded() - before;
    assert!(through_stack < 5, "{through_stack} of 10 packets to and from k8s-w0's pod went through k8s-ctr's stack");
    let through_driver = vxlan_packets("k8s-ctr") - vxlan_before[0] + vxlan_packets("k8s-w0") - vxlan_before[1];
    assert!(through_driver < 5, "{through_driver} of 20 packet passes went through cilium_vxlan");

    // `cilia dbg NODE bpf tunnel list` prints the other nodes' pod CIDRs behind their node IPs.
    let table = lab.ok(&["dbg", "k8s-ctr", "bpf", "tunnel", "list"]);
    let rows: Vec<Vec<&str>> = table.lines().map(|l| l.split_whitespace().collect()).collect();
    assert_eq!(rows.first().map(Vec::as_slice), Some(&["PREFIX", "ENDPOINT", "IDENTITY", "FLAGS"][..]), "{table}");
    for (cidr, node_ip, identity) in
        [("172.20.1.0/24", "192.168.10.101", "257"), ("172.20.2.0/24", "192.168.20.100", "258")]
    {
        assert!(rows.iter().any(|r| r[..] == [cidr, node_ip, identity, "hastunnel"]), "{cidr} → {node_ip}:\n{table}");
    }
    assert!(rows.iter().any(|r| r[..] == ["172.20.0.0/24", "0.0.0.0", "256", "local"]), "own pod CIDR:\n{table}");

    // VXLAN from an address that is no node's is dropped: the router plays a rogue sender, with
    // a VXLAN device of its own aimed at k8s-ctr and a route to k8s-ctr's pod through it.
    let ctr_pod = ip_of(&pods, "k8s-ctr");
    for cmd in [
        vec!["ip", "link", "add", "rogue0", "type", "vxlan", "id", "7", "remote", "192.168.10.100", "dstport", "8472"],
        vec!["ip", "addr", "add", "10.99.0.1/32", "dev", "rogue0"],
        vec!["ip", "link", "set", "rogue0", "up"],
        vec!["ip", "route", "add", &format!("{ctr_pod}/32"), "dev", "rogue0"],
        vec!["ip", "neigh", "add", &ctr_pod, "lladdr", "02:00:00:00:00:01", "dev", "rogue0"],
    ] {
        let out = lab.cilia(&[&["lab", "exec", "router", "--"][..], &cmd[..]].concat());
        assert!(out.status.success(), "{cmd:?} in the router:\n{}", text(&out));
    }
    let rogue = host(&lab, "router", &["ping", "-c", "3", "-i", "0.2", "-W", "1", &ctr_pod]);
    assert!(rogue.contains(" 0 received"), "a pod answered VXLAN from a sender that is no node:\n{rogue}");
    let drops = lab.eventually(
        &["observe", "--node", "k8s-ctr", "--verdict", "DROPPED", "--last", "200"],
        Duration::from_secs(5),
        |o| o.lines().any(|l| l.contains("10.99.0.1") && l.contains("Invalid source ip DROPPED")),
    );
    let ctr_pod_name = &pods.iter().find(|p| p.1 == ctr_pod).unwrap().0;
    assert!(drops.contains(&format!("-> default/{ctr_pod_name} ")), "{drops}");

    // A node that leaves is gone from every tunnel map within a second.
    let has_w0 = |node: &str| {
        datapath::tunnel_list_pinned(&pin_dir(&lab, node))
            .expect("tunnel map")
            .iter()
            .any(|e| e.prefix.to_string() == "172.20.2.0/24")
    };
    assert!(has_w0("k8s-ctr") && has_w0("k8s-w1"));
    lab.ok(&["delete", "node", "k8s-w0"]);
    let t0 = Instant::now();
    while has_w0("k8s-ctr") || has_w0("k8s-w1") {
        assert!(t0.elapsed() < Duration::from_secs(1), "172.20.2.0/24 still in a tunnel map after 1 s");
        thread::sleep(Duration::from_millis(20));
    }
}

fn overlay_left(lab: &TestLab, node: &str) -> Vec<String> {
    let mut left = Vec::new();
    if !host(lab, node, &["ip", "link", "show", "cilium_vxlan"]).contains("does not exist") {
        left.push(format!("{node}: cilium_vxlan"));
    }
    left.extend(
        host(lab, node, &["ip", "route"]).lines().filter(|l| l.contains("mtu 1450")).map(|l| format!("{node}: {l}")),
    );
    let dir = pin_dir(lab, node);
    for pin in datapath::tunnel_abi::TUNNEL_MAPS.into_iter().chain(["links/overlay_egress_cilium_host"]) {
        if dir.join(pin).exists() {
            left.push(format!("{node}: pin {pin}"));
        }
    }
    left
}

/// UDP 8472 on k8s-ctr's eth1 while curl-pod pings `ip`: the (src, dst) node pairs seen.
fn vxlan_pairs_during_ping(lab: &TestLab, ip: &str) -> String {
    let ns = lab.namespace("k8s-ctr");
    let dump = start_tcpdump(&ns, 4, &["-i", "eth1", "-nn", "udp", "port", "8472"]);
    exec_ok(lab, "curl-pod", &["ping", "-c", "3", "-W", "1", ip]).unwrap_or_else(|e| panic!("ping {ip}:\n{e}"));
    let out = dump.wait_with_output().expect("tcpdump output");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn hybrid_encapsulates_only_across_the_router_and_mode_switches_leave_nothing_behind() {
    let lab = lab_with_mode("hyb", None);
    let pods = deploy_pods(&lab);
    let nodes = ["k8s-ctr", "k8s-w1", "k8s-w0"];

    lab.ok(&["config", "set", "routing-mode=tunnel", "auto-direct-node-routes=false"]);
    all_pairs_reachable(&lab, &pods);
    let routes = host(&lab, "k8s-ctr", &["ip", "route"]);
    assert!(!routes.contains("via 192.168.10.101"), "a direct route survived the switch to tunnel:\n{routes}");

    lab.ok(&["config", "set", "routing-mode=hybrid"]);
    all_pairs_reachable(&lab, &pods);
    let same_segment = vxlan_pairs_during_ping(&lab, &ip_of(&pods, "k8s-w1"));
    assert!(same_segment.trim().is_empty(), "k8s-ctr ↔ k8s-w1 was encapsulated:\n{same_segment}");
    let across = vxlan_pairs_during_ping(&lab, &ip_of(&pods, "k8s-w0"));
    assert!(
        across.contains("192.168.10.100") && across.contains("192.168.20.100.8472"),
        "k8s-ctr → k8s-w0 was not encapsulated:\n{across}"
    );

    lab.ok(&["config", "set", "routing-mode=native", "auto-direct-node-routes=true"]);
    for node in nodes {
        let left = overlay_left(&lab, node);
        assert!(left.is_empty(), "left behind after switching to native: {left:?}");
    }
    let routes = host(&lab, "k8s-ctr", &["ip", "route"]);
    assert!(routes.contains("172.20.1.0/24 via 192.168.10.101"), "{routes}");
    let w1 = ip_of(&pods, "k8s-w1");
    exec_ok(&lab, "curl-pod", &["ping", "-c", "1", "-W", "1", &w1]).expect("k8s-w1 pod over native routing");
}
