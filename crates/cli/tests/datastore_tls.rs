//! Nothing a pod can reach changes cluster state: the lab's etcd takes TLS with client
//! certificates on the network. From curl-pod, plain HTTP to 192.168.10.100:2379 (and the v3 JSON
//! gateway behind it) gets nothing, nor does TLS without a client certificate; the agents on
//! k8s-w1 and k8s-w0 connect over the network with their own node's certificate, as on separate
//! hosts, and are healthy.

mod common;

use std::time::Duration;

use common::{TestLab, guide_manifest, text};

const WAIT: Duration = Duration::from_secs(60);

#[test]
fn pods_cannot_reach_the_datastore_and_remote_agents_use_their_own_certificates() {
    let lab = TestLab::up("tls");
    let out = lab.cilia_stdin(&["apply", "-f", "-"], &guide_manifest("curl-pod.yaml"));
    assert!(out.status.success(), "{}", text(&out));
    lab.eventually(&["get", "pod", "curl-pod"], WAIT, |o| o.contains("Running"));

    for (what, args) in [
        ("plain HTTP", vec!["curl", "-s", "-m", "3", "http://192.168.10.100:2379/version"]),
        (
            "the v3 JSON gateway",
            vec![
                "curl",
                "-s",
                "-m",
                "3",
                "-X",
                "POST",
                "-d",
                "{\"key\":\"Lw==\"}",
                "http://192.168.10.100:2379/v3/kv/range",
            ],
        ),
        ("TLS without a client certificate", vec!["curl", "-sk", "-m", "3", "https://192.168.10.100:2379/version"]),
    ] {
        let mut exec = vec!["exec", "curl-pod", "--"];
        exec.extend(args);
        let out = lab.cilia(&exec);
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(!out.status.success() && !stdout.contains("etcd"), "{what} from a pod answered:\n{}", text(&out));
    }

    // The agents on the other nodes: over the network, each with its node's certificate.
    let status = lab.eventually(&["status"], WAIT, |o| !o.contains("FAIL"));
    for node in ["k8s-w1", "k8s-w0"] {
        assert!(status.contains(&format!("agent {node}")), "{status}");
        let log = std::fs::read_to_string(format!("/run/cilia/lab/{}/logs/agent-{node}.log", lab.name)).unwrap();
        assert!(log.contains("datastore=https://192.168.10.100:2379"), "the agent of {node} does not use TLS");
    }
}
