//! "VXLAN Overlay Network로 해결": the guide's kernel-module check, its helm upgrade to tunnel mode
//! and rollout restart (`cilia config set` does both), the `cilium_vxlan` device, the `mtu 1450`
//! routes through `cilium_host`, the service by name from curl-pod, and the k8s-w0 pod through
//! the tunnel, captured with the guide's own `tcpdump -i any icmp -nn` and then as VXLAN. The
//! guide stays in tunnel mode from here on, and so does the lab.

use std::time::Duration;

use super::runner::{Check, Section, Step, contains};

const WEBPOD_W0_IP: &str = "WEBPOD=$(cilia get pod -l app=webpod --field-selector spec.nodeName=k8s-w0 -o jsonpath='{.items[0].status.podIP}')";

/// Why `cilia config set` stands for the guide's `helm upgrade` and `rollout restart`.
pub const NO_HELM: &str = "cilia is not installed by Helm: `cilia config set` writes the same settings to kube-system/cilium-config (ConfigMap keys, or the Helm names with --set) and restarts the operator and each agent in turn";

/// Why `cilium_vxlan` is (nearly) silent in the guide's capture; docs/guide.md says the same.
pub const SILENT_VXLAN: &str = "cilia encapsulates and decapsulates pods' packets in BPF on eth1 (faster, see docs/routing-modes.md), so the inner ICMP shows on the pod's lxc only; cilium_vxlan carries just a packet sent before the sender knew its next hop's MAC";

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

/// The guide's capture on k8s-w0 (`tcpdump -i any icmp -nn`): both replies leave the pod on its
/// lxc, and none goes out of cilium_vxlan.
fn guide_capture(out: &str) -> Result<(), String> {
    if !out.contains(" 0% packet loss") {
        return Err("ping lost packets".into());
    }
    let cols = |l: &str| l.split_whitespace().map(str::to_string).collect::<Vec<_>>();
    let replies_from_pod = out
        .lines()
        .filter(|l| {
            let c = cols(l);
            c.get(1).is_some_and(|d| d.starts_with("lxc")) && c.get(2).map(String::as_str) == Some("In")
        })
        .filter(|l| l.contains("ICMP echo reply"))
        .count();
    if replies_from_pod != 2 {
        return Err(format!("{replies_from_pod} of 2 echo replies seen leaving the pod on its lxc device"));
    }
    if out.lines().any(|l| cols(l).get(1).map(String::as_str) == Some("cilium_vxlan") && l.contains("echo reply")) {
        return Err("a reply went out of cilium_vxlan: the BPF encapsulation on eth1 was bypassed".into());
    }
    Ok(())
}

/// The guide's `hubble observe` lines: `default/curl-pod:PORT (ID:n) -> default/webpod-…:80
/// (ID:n) to-overlay FORWARDED (TCP Flags: …)`.
fn to_overlay_forwarded(out: &str) -> Result<(), String> {
    let guide_line = |l: &&str| {
        l.contains(": default/curl-pod:")
            && l.contains(" -> default/webpod-")
            && l.contains(":80 (ID:")
            && l.contains(" to-overlay FORWARDED (TCP Flags: ")
    };
    match out.lines().filter(guide_line).count() {
        0 => Err("no `default/curl-pod:… -> default/webpod-…:80 … to-overlay FORWARDED (TCP Flags: …)` line".into()),
        _ => Ok(()),
    }
}

/// Runs `capture` on k8s-w0 in the background while curl-pod pings the k8s-w0 pod twice, then
/// prints the capture, as the guide's two terminals do.
fn ping_with_w0_capture(capture: &str) -> String {
    format!(
        "{WEBPOD_W0_IP}\n\
         f=$(mktemp); e=$(mktemp)\n\
         cilia lab exec k8s-w0 -- timeout 5 {capture} > $f 2>$e &\n\
         for i in $(seq 50); do grep -q listening $e && break; sleep 0.1; done\n\
         cilia exec -it curl-pod -- ping -c 2 $WEBPOD; rc=$?\n\
         wait\n\
         cat $f; rm -f $f $e\n\
         exit $rc"
    )
}

pub fn section() -> Section {
    let steps = vec![
        Step::new(
            "The vxlan kernel module",
            "cilia lab exec k8s-ctr -- sh -c 'if [ -e /proc/modules ]; then grep -w ^vxlan /proc/modules || echo \"vxlan: not loaded yet; the kernel loads it when cilium_vxlan is created\"; else echo \"this kernel loads no modules: VXLAN is built in\"; fi'",
            Check::Output(Box::new(|out| {
                if out.to_lowercase().contains("vxlan") { Ok(()) } else { Err("nothing about vxlan".into()) }
            })),
        )
        .differs(
            "modprobe vxlan; lsmod | grep vxlan (on each node)",
            "no modprobe: the lab's nodes share this machine's kernel, which loads the vxlan module by itself when the agent creates cilium_vxlan (or has it built in); cilia's encapsulation on eth1 runs in BPF and needs no module",
        ),
        Step::new(
            "Switch to VXLAN (helm upgrade --set routingMode=tunnel ..., then rollout restart of the operator and the agents)",
            "cilia config set routing-mode=tunnel tunnel-protocol=vxlan auto-direct-node-routes=false",
            contains(["configmap/cilium-config", "rollout finished"]),
        )
        .differs(
            "helm upgrade cilium cilium/cilium --reuse-values --set routingMode=tunnel --set tunnelProtocol=vxlan --set autoDirectNodeRoutes=false ...; kubectl rollout restart deploy cilium-operator / ds cilium",
            NO_HELM,
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
            "The VXLAN interface",
            "cilia lab exec k8s-ctr -- ip link show cilium_vxlan",
            contains(["cilium_vxlan:", "UP", "mtu 1500"]),
        ),
        Step::new(
            "in detail: flow-based (external), UDP 8472",
            "cilia lab exec k8s-ctr -- ip -d link show cilium_vxlan",
            contains(["cilium_vxlan:", "external", "dstport 8472"]),
        ),
        Step::new(
            "MTU 1450 on the routes to the other nodes' pods (VXLAN overhead), none on the local pod CIDR",
            "cilia lab exec k8s-ctr -- ip route | grep cilium_host",
            Check::Output(Box::new(overlay_routes)),
        ),
        Step::new(
            "The service answers by name from curl-pod",
            "cilia exec -it curl-pod -- curl webpod | grep Hostname",
            contains(["Hostname: webpod-"]),
        )
        .waiting(Duration::from_secs(30)),
        Step::new(
            "Where the datapath sends each pod CIDR: k8s-w1's and k8s-w0's through the tunnel",
            "cilia dbg k8s-ctr bpf tunnel list",
            contains(["172.20.1.0/24", "192.168.10.101", "172.20.2.0/24", "192.168.20.100"]),
        ),
        Step::new(
            "Hubble's view of curl-pod's requests: to-overlay FORWARDED towards the webpods on other nodes",
            "cilia exec curl-pod -- sh -c 'for i in 1 2 3 4 5 6; do curl -s -o /dev/null webpod; done'\n\
             cilia observe --protocol tcp --pod curl-pod --last 60",
            Check::Output(Box::new(to_overlay_forwarded)),
        )
        .waiting(Duration::from_secs(20))
        .differs(
            "cilium hubble port-forward& hubble observe -f --protocol tcp --pod curl-pod",
            "cilia observe reads every agent's Observer API (Hubble's, also on TCP 4244 at each node) through its socket, so no port-forward; --last instead of -f so that the step ends",
        ),
        Step::new(
            "The k8s-w0 pod's IP",
            format!("{WEBPOD_W0_IP}\necho \"k8s-w0 Pod IP: $WEBPOD\""),
            contains(["k8s-w0 Pod IP: 172.20.2."]),
        ),
        Step::new(
            "The guide's capture on k8s-w0 while curl-pod pings the k8s-w0 pod",
            ping_with_w0_capture("tcpdump -i any icmp -nn -l"),
            Check::Output(Box::new(guide_capture)),
        )
        .differs("tcpdump -i any icmp -nn (shows the echo on cilium_vxlan, P and Out)", SILENT_VXLAN),
        Step::new(
            "The same ping, captured as the tunnel carries it: requests arrive on eth1 and replies leave it VXLAN-encapsulated",
            ping_with_w0_capture("tcpdump -i any -nn -l -c 4 -T vxlan udp port 8472"),
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
    ];
    Section { id: "vxlan", title: "VXLAN overlay across subnets (the guide stays in tunnel mode from here on)", steps }
}
