//! The foundation end to end, as root: the lab's topology, the datastore behind the CLI, kubectl-like
//! verbs on the guide's manifests, and bad input that leaves stored objects untouched.

mod common;

use std::time::Duration;

use common::{TestLab, guide_manifest, namespaces_with_prefix, text};

#[test]
fn lab_topology_datastore_and_verbs() {
    let lab = TestLab::up("fnd");

    // Routing between the segments through the router, as in the guide.
    let ping = lab.cilia(&["lab", "exec", "router", "--", "ping", "-c1", "-W2", "192.168.20.100"]);
    assert!(ping.status.success(), "router cannot reach k8s-w0:\n{}", text(&ping));
    let addrs = lab.ok(&["lab", "exec", "k8s-ctr", "--", "ip", "-br", "addr"]);
    assert!(addrs.contains("192.168.10.100/24"), "{addrs}");
    let unknown = lab.cilia(&["lab", "exec", "k8s-w9", "--", "true"]);
    assert!(!unknown.status.success());
    assert!(
        String::from_utf8_lossy(&unknown.stderr).contains("k8s-w0"),
        "the error lists valid hosts: {}",
        text(&unknown)
    );

    // The Nodes are registered with the guide's addresses.
    let nodes = lab.ok(&["get", "nodes", "-o", "wide"]);
    for (node, ip) in [("k8s-ctr", "192.168.10.100"), ("k8s-w1", "192.168.10.101"), ("k8s-w0", "192.168.20.100")] {
        assert!(nodes.lines().any(|l| l.starts_with(node) && l.contains(ip)), "{nodes}");
    }
    let host_label = lab.ok(&["get", "nodes", "-l", "kubernetes.io/hostname=k8s-w1", "-o", "name"]);
    assert_eq!(host_label.trim(), "node/k8s-w1");

    // The guide's CRDs apply unchanged and read back.
    let out = lab.cilia_stdin(&["apply", "-f", "-"], &guide_manifest("lb-ippool.yaml"));
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "ciliumloadbalancerippool.cilium.io/cilium-lb-ippool created"
    );
    let out = lab.cilia_stdin(&["apply", "-f", "-"], &guide_manifest("l2-policy.yaml"));
    assert!(out.status.success(), "{}", text(&out));
    let yaml = lab.ok(&["get", "l2announcement", "policy1", "-o", "yaml"]);
    for part in [
        "apiVersion: cilium.io/v2alpha1",
        "kind: CiliumL2AnnouncementPolicy",
        "- ^eth[1-9]+",
        "operator: In",
        "loadBalancerIPs: true",
    ] {
        assert!(yaml.contains(part), "{part:?} missing from\n{yaml}");
    }
    let again = lab.cilia_stdin(&["apply", "-f", "-"], &guide_manifest("l2-policy.yaml"));
    assert_eq!(String::from_utf8_lossy(&again.stdout).trim(), "ciliuml2announcementpolicy.cilium.io/policy1 unchanged");
    let pools = lab.eventually(&["get", "ippools"], Duration::from_secs(15), |o| o.contains(" 5 "));
    let header: Vec<&str> = pools.lines().next().unwrap_or_default().split_whitespace().collect();
    assert_eq!(header, ["NAME", "DISABLED", "CONFLICTING", "IPS", "AVAILABLE", "AGE"]);
    let json = lab.ok(&["get", "ippools", "cilium-lb-ippool", "-o", "json"]);
    let value: serde_json::Value = serde_json::from_str(&json).expect("-o json is JSON");
    assert_eq!(value["spec"]["blocks"][0]["stop"], "192.168.10.245");

    // Bad input: nothing is written, the error says where.
    let before = lab.ok(&["get", "ippools", "-o", "yaml"]);
    let bad = "apiVersion: v1\nkind: Namespace\nmetadata: {name: fine}\n---\napiVersion: cilium.io/v2\nkind: CiliumLoadBalancerIPPool\nmetadata: {name: cilium-lb-ippool}\nspec: {blocks: [{start: 10.0.0.9, stop: 10.0.0.1}]}\n";
    let out = lab.cilia_stdin(&["apply", "-f", "-"], bad);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("CiliumLoadBalancerIPPool cilium-lb-ippool") && err.contains("spec.blocks[0]"), "{err}");
    assert_eq!(lab.ok(&["get", "ippools", "-o", "yaml"]), before, "the pool is untouched");
    assert!(!lab.cilia(&["get", "ns", "fine"]).status.success(), "no object of a rejected file is written");
    for (args, needle) in [
        (vec!["get", "pods", "-l", "app in (a"], "invalid label selector"),
        (vec!["get", "frobs"], "doesn't have a resource type"),
        (vec!["get", "svc", "nope"], "NotFound"),
        (vec!["patch", "ippools", "cilium-lb-ippool", "-p", "{not json"], "unable to parse"),
    ] {
        let out = lab.cilia(&args);
        assert!(!out.status.success(), "{args:?} should fail");
        assert!(String::from_utf8_lossy(&out.stderr).contains(needle), "{args:?}: {}", text(&out));
    }
}

#[test]
fn racing_label_commands_lose_no_update() {
    let lab = TestLab::up("race");
    let ns = "apiVersion: v1\nkind: Namespace\nmetadata: {name: race}\n";
    assert!(lab.cilia_stdin(&["apply", "-f", "-"], ns).status.success());
    let writers: Vec<_> = (0..2)
        .map(|w| {
            let name = lab.name.clone();
            std::thread::spawn(move || {
                for i in 0..15 {
                    let out = std::process::Command::new(common::cilia_bin())
                        .args(["label", "ns", "race", &format!("w{w}-{i}=x")])
                        .env("CILIA_LAB", &name)
                        .output()
                        .expect("cilia label");
                    assert!(out.status.success(), "{}", text(&out));
                }
            })
        })
        .collect();
    for w in writers {
        w.join().expect("writer");
    }
    let labels = lab.ok(&["get", "ns", "race", "-o", "jsonpath={.metadata.labels}"]);
    let labels: serde_json::Value = serde_json::from_str(&labels).expect("labels as JSON");
    assert_eq!(labels.as_object().map(|m| m.len()), Some(30), "{labels}");
}

#[test]
fn down_removes_everything_and_up_is_idempotent() {
    let lab = TestLab::up("idem");
    let second = lab.cilia(&["lab", "up"]);
    assert!(second.status.success(), "{}", text(&second));
    let status = lab.ok(&["lab", "status"]);
    assert!(status.contains("etcd") && status.contains("running"), "{status}");
    let out = lab.cilia(&["lab", "down"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(namespaces_with_prefix(&format!("{}-", lab.name)).is_empty(), "namespaces remain");
    assert!(!std::path::Path::new(&format!("/run/cilia/lab/{}", lab.name)).exists(), "state dir remains");
    let ps = std::process::Command::new("ps").args(["-eo", "args"]).output().expect("ps");
    let lab_flag = format!("--lab {}", lab.name);
    assert!(
        !String::from_utf8_lossy(&ps.stdout)
            .lines()
            .any(|l| l.contains(&lab_flag) || l.contains(&format!("/lab/{}/", lab.name))),
        "processes of the lab remain"
    );
}
