//! The lab itself: the guide's hosts, subnets and router.

use super::runner::{Check, Section, Step, contains};

pub fn section() -> Section {
    Section {
        id: "topology",
        title: "Lab: router, k8s-ctr, k8s-w1 (192.168.10.0/24), k8s-w0 (192.168.20.0/24)",
        steps: vec![
            Step::new(
                "The router has no route for the pod CIDRs: its default route leaves through eth0",
                "cilia lab exec router -- ip route",
                contains([
                    "default via",
                    "10.10.1.0/24 dev loop1",
                    "10.10.2.0/24 dev loop2",
                    "192.168.10.0/24 dev eth1",
                    "192.168.20.0/24 dev eth2",
                ]),
            ),
            Step::new(
                "The router reaches k8s-w0 on the other subnet",
                "cilia lab exec router -- ping -c1 -W2 192.168.20.100",
                contains(["1 received"]),
            ),
            Step::new(
                "k8s-ctr carries the guide's node address",
                "cilia lab exec k8s-ctr -- ip -br addr",
                contains(["192.168.10.100/24"]),
            ),
            Step::new(
                "k8s-ctr reaches k8s-w0 through the router",
                "cilia lab exec k8s-ctr -- ping -c1 -W2 192.168.20.100",
                contains(["1 received"]),
            ),
            Step::new(
                "The three nodes are registered",
                "cilia get nodes -o wide",
                Check::Output(Box::new(|out| {
                    for (node, ip) in
                        [("k8s-ctr", "192.168.10.100"), ("k8s-w1", "192.168.10.101"), ("k8s-w0", "192.168.20.100")]
                    {
                        if !out.lines().any(|l| l.starts_with(node) && l.contains(ip)) {
                            return Err(format!("node {node} with address {ip} is missing"));
                        }
                    }
                    Ok(())
                })),
            ),
        ],
    }
}
