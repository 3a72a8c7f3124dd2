//! "VXLAN Overlay Network로 해결": the guide's helm upgrade to tunnel mode and rollout restart
//! (`cilia config set` does both), the `cilium_vxlan` device, the `mtu 1450` routes through the
//! host device, and traffic to the k8s-w0 pod through the tunnel; then back to native routing,
//! the state the later sections (and a re-run of the guide) start from.

use std::time::Duration;

use super::runner::{Check, Section, Step, contains};

const WEBPOD_W0_IP: &str = "WEBPOD=$(cilia get pod -l app=webpod --field-selector spec.nodeName=k8s-w0 -o jsonpath='{.items[0].status.podIP}')";

fn overlay_routes(out: &str) -> Result<(), String> {
    for cidr in ["172.20.1.0/24", "172.20.2.0/24"] {
        let ok = out.lines().any(|l| l.starts_with(cidr) && l.contains("dev cilium_host") && l.contains("mtu 1450"));
        if !ok {
            return Err(format!("no route {cidr} via the router IP dev cilium_host with mtu 1450"));
        }
    }
    if out.lines().any(|l| l.starts_with("172.20.0.0/24") && l.contains("mtu")) {
        return Err("the local pod CIDR's route carries an MTU".into());
    }
    Ok(())
}

pub fn section() -> Section {
    let steps = vec![
        Step::new(
            "Switch to VXLAN (helm upgrade --set routingMode=tunnel ..., then rollout restart of the operator and the agents)",
            "cilia config set routing-mode=tunnel tunnel-protocol=vxlan auto-direct-node-routes=false",
            contains(["configmap/cilium-config", "rollout finished"]),
        ),
        Step::new(
            "The configuration as the agents see it",
            "cilia config view | grep -E '^(routing-mode|tunnel-protocol|auto-direct-node-routes) '",
            Check::Output(Box::new(|out| {
                let want =
                    [["routing-mode", "tunnel"], ["tunnel-protocol", "vxlan"], ["auto-direct-node-routes", "false"]];
                for pair in want {
                    if !out.lines().any(|l| l.split_whitespace().eq(pair.iter().copied())) {
                        return Err(format!("no line {} {}", pair[0], pair[1]));
                    }
                }
                Ok(())
            })),
        ),
        Step::new(
            "The VXLAN interface (flow-based, UDP 8472, device MTU 1500)",
            "cilia lab exec k8s-ctr -- ip -d link show cilium_vxlan",
            contains(["cilium_vxlan:", "mtu 1500", "external", "dstport 8472"]),
        ),
        Step::new(
            "MTU 1450 on the routes to the other nodes' pods (VXLAN overhead), none on the local pod CIDR",
            "cilia lab exec k8s-ctr -- ip route | grep cilium_host",
            Check::Output(Box::new(overlay_routes)),
        ),
        Step::new(
            "The service answers by name from curl-pod",
            "cilia exec curl-pod -- curl -s -m 3 webpod | grep Hostname",
            contains(["Hostname: webpod-"]),
        )
        .waiting(Duration::from_secs(30)),
        Step::new(
            "The k8s-w0 pod's IP",
            format!("{WEBPOD_W0_IP}\necho \"k8s-w0 Pod IP: $WEBPOD\""),
            contains(["k8s-w0 Pod IP: 172.20.2."]),
        ),
        // The guide captures `-i any icmp` and sees the pod's packets on cilium_vxlan. Here pods'
        // packets are encapsulated and stripped by BPF on the node device (docs/routing-modes.md),
        // so the capture is of the tunnel itself, decoded as VXLAN: the inner packet is printed
        // on the line after the outer one.
        Step::new(
            "Ping the k8s-w0 pod while k8s-w0 captures the tunnel: requests arrive, replies leave VXLAN-encapsulated",
            format!(
                "{WEBPOD_W0_IP}\n\
                 cilia lab exec k8s-w0 -- timeout 5 tcpdump -i any -nn -l -c 4 -T vxlan udp port 8472 > /tmp/cilia-guide-vxlan.txt 2>/dev/null &\n\
                 sleep 0.5\n\
                 cilia exec curl-pod -- ping -c 2 -W 1 $WEBPOD; rc=$?\n\
                 wait\n\
                 cat /tmp/cilia-guide-vxlan.txt; rm -f /tmp/cilia-guide-vxlan.txt\n\
                 exit $rc"
            ),
            Check::Output(Box::new(|out| {
                if !out.contains(" 0% packet loss") {
                    return Err("ping lost packets".into());
                }
                let lines: Vec<&str> = out.lines().collect();
                let seen = |dir: &str, what: &str| {
                    lines.windows(2).any(|w| {
                        let c: Vec<&str> = w[0].split_whitespace().collect();
                        c.get(1) == Some(&"eth1")
                            && c.get(2) == Some(&dir)
                            && w[0].contains("VXLAN, flags [I]")
                            && w[1].contains(what)
                    })
                };
                if !seen("In", "ICMP echo request") || !seen("Out", "ICMP echo reply") {
                    return Err("k8s-w0's capture has no VXLAN-encapsulated request in and reply out on eth1".into());
                }
                Ok(())
            })),
        ),
        Step::new(
            "curl the k8s-w0 pod by IP",
            format!("{WEBPOD_W0_IP}\ncilia exec curl-pod -- curl -s -m 3 $WEBPOD | grep Hostname"),
            contains(["Hostname: webpod-"]),
        ),
        Step::new(
            "The router still knows no pod CIDR: only node-to-node UDP crosses it",
            "cilia lab exec router -- ip route",
            Check::Output(Box::new(|out| {
                if out.contains("172.20.") { Err("the router routes pod CIDRs".into()) } else { Ok(()) }
            })),
        ),
        Step::new(
            "Back to native routing with auto direct node routes, where the next sections start",
            "cilia config set routing-mode=native auto-direct-node-routes=true",
            contains(["rollout finished"]),
        ),
        Step::new(
            "Nothing of the overlay is left",
            "cilia lab exec k8s-ctr -- ip link show cilium_vxlan",
            Check::FailsWith(Box::new(|out| {
                if out.contains("does not exist") { Ok(()) } else { Err("cilium_vxlan still exists".into()) }
            })),
        ),
        Step::new(
            "and the direct route to k8s-w1's pods is back",
            "cilia lab exec k8s-ctr -- ip route",
            Check::Output(Box::new(|out| {
                if !out.contains("172.20.1.0/24 via 192.168.10.101") {
                    return Err("no route 172.20.1.0/24 via 192.168.10.101".into());
                }
                if out.lines().any(|l| l.contains("mtu 1450")) {
                    return Err("an overlay route is left".into());
                }
                Ok(())
            })),
        ),
    ];
    Section { id: "vxlan", title: "VXLAN overlay across subnets", steps }
}
