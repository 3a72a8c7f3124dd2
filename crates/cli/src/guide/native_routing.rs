//! "Native Routing 모드의 한계": pods on three nodes, native routing with auto direct node routes,
//! the cross-subnet failure seen in the router's tcpdump, and the static-route workaround.

use std::time::Duration;

use super::runner::{Check, Section, Step, contains};

const WEBPOD: &str = include_str!("../../../../examples/guide/webpod.yaml");
const CURL_POD: &str = include_str!("../../../../examples/guide/curl-pod.yaml");

const WEBPOD_W0_IP: &str = "WEBPOD=$(cilia get pod -l app=webpod --field-selector spec.nodeName=k8s-w0 -o jsonpath='{.items[0].status.podIP}')";
const WEBPOD_W1_IP: &str = "WEBPOD=$(cilia get pod -l app=webpod --field-selector spec.nodeName=k8s-w1 -o jsonpath='{.items[0].status.podIP}')";
/// The guide's two terminals, and how the runner does them in one.
const TWO_TERMINALS: (&str, &str) = (
    "tcpdump -i any icmp -nn (terminal 1, router); kubectl exec -it curl-pod -- ping -c 2 $WEBPOD (terminal 2)",
    "one script instead of two terminals: the router's capture runs in the background for 5 s (-l, -c 8) while curl-pod pings (-W 1 so the failing ping ends in 2 s), then prints",
);
/// The guide's ssh to the router.
const LAB_EXEC: &str =
    "the lab's hosts are network namespaces on this machine, not VMs: `cilia lab exec router --` instead of ssh";

const STATIC_ROUTES: [(&str, &str); 3] =
    [("172.20.0.0/24", "192.168.10.100"), ("172.20.1.0/24", "192.168.10.101"), ("172.20.2.0/24", "192.168.20.100")];

/// Captures ICMP on the router while `ping` runs from curl-pod, then prints the capture, as the
/// guide's two terminals do.
fn ping_with_router_capture(pod_ip_cmd: &str) -> String {
    format!(
        "{pod_ip_cmd}\n\
         f=$(mktemp); e=$(mktemp)\n\
         cilia lab exec router -- timeout 5 tcpdump -i any icmp -nn -l -c 8 > $f 2>$e &\n\
         for i in $(seq 50); do grep -q listening $e && break; sleep 0.1; done\n\
         cilia exec curl-pod -- ping -c 2 -W 1 $WEBPOD; rc=$?\n\
         wait\n\
         cat $f; rm -f $f $e\n\
         exit $rc"
    )
}

fn capture_lines(out: &str, want: &[(&str, &str)]) -> Result<(), String> {
    for (dev, dir) in want {
        let found = out.lines().any(|l| {
            let cols: Vec<&str> = l.split_whitespace().collect();
            cols.get(1) == Some(dev) && cols.get(2) == Some(dir) && l.contains("ICMP echo request")
        });
        if !found {
            return Err(format!("the router's capture has no echo request {dir} on {dev}"));
        }
    }
    Ok(())
}

pub fn section() -> Section {
    let wait = Duration::from_secs(60);
    let mut steps = vec![
        Step::new(
            "Deploy webpod (anti-affinity spreads it over the nodes)",
            format!("cat <<'EOF' | cilia apply -f -\n{WEBPOD}EOF"),
            contains(["deployment.apps/webpod"]),
        ),
        Step::new(
            "Deploy curl-pod on k8s-ctr",
            format!("cat <<'EOF' | cilia apply -f -\n{CURL_POD}EOF"),
            contains(["pod/curl-pod"]),
        ),
        Step::new(
            "Every pod runs, one webpod per node, with an IP from its node's pod CIDR",
            "cilia get pod -o wide",
            Check::Output(Box::new(|out| {
                for (node, prefix) in [("k8s-ctr", "172.20.0."), ("k8s-w1", "172.20.1."), ("k8s-w0", "172.20.2.")] {
                    let ok = out.lines().any(|l| {
                        let c: Vec<&str> = l.split_whitespace().collect();
                        c.first().is_some_and(|n| n.starts_with("webpod-"))
                            && c.get(1) == Some(&"1/1")
                            && c.get(2) == Some(&"Running")
                            && c.get(5).is_some_and(|ip| ip.starts_with(prefix))
                            && c.get(6) == Some(&node)
                    });
                    if !ok {
                        return Err(format!("no Ready webpod on {node} with an address in {prefix}0/24"));
                    }
                }
                let curl =
                    out.lines().any(|l| l.starts_with("curl-pod") && l.contains("Running") && l.contains("k8s-ctr"));
                if curl { Ok(()) } else { Err("curl-pod is not running on k8s-ctr".into()) }
            })),
        )
        .waiting(wait),
        Step::new(
            "The k8s-w0 pod's IP",
            format!("{WEBPOD_W0_IP}\necho \"k8s-w0 Pod IP: $WEBPOD\""),
            contains(["k8s-w0 Pod IP: 172.20.2."]),
        ),
        Step::new(
            "k8s-ctr has a direct route to k8s-w1's pod CIDR, none to k8s-w0's (another subnet)",
            "cilia lab exec k8s-ctr -- ip route",
            Check::Output(Box::new(|out| {
                if !out.contains("172.20.1.0/24 via 192.168.10.101") {
                    return Err("no route 172.20.1.0/24 via 192.168.10.101".into());
                }
                if out.lines().any(|l| l.starts_with("172.20.2.0/24") && !l.contains("via 192.168.10.200")) {
                    return Err("a direct route to 172.20.2.0/24 exists although k8s-w0 is on another subnet".into());
                }
                Ok(())
            })),
        ),
        Step::new(
            "The router has no route for the pod CIDRs",
            "cilia lab exec router -- ip route",
            Check::Output(Box::new(|out| {
                if out.contains("172.20.") { Err("the router already routes 172.20.0.0/16".into()) } else { Ok(()) }
            })),
        ),
        Step::new(
            "A pod on the same segment answers (k8s-w1)",
            format!("{WEBPOD_W1_IP}\ncilia exec curl-pod -- ping -c 2 -W 1 $WEBPOD"),
            contains([" 0% packet loss"]),
        ),
        Step::new(
            "The k8s-w0 pod does not: the router sends the echo requests out of eth0",
            ping_with_router_capture(WEBPOD_W0_IP),
            Check::FailsWith(Box::new(|out| capture_lines(out, &[("eth1", "In"), ("eth0", "Out")]))),
        )
        .differs(TWO_TERMINALS.0, TWO_TERMINALS.1),
    ];
    for (cidr, via) in STATIC_ROUTES {
        steps.push(
            Step::new(
                format!("Workaround: static route on the router for {cidr}"),
                format!("cilia lab exec router -- ip route add {cidr} via {via}"),
                Check::Succeeds,
            )
            .differs(
                format!("sshpass -p 'vagrant' ssh -T vagrant@router ... sudo ip route add {cidr} via {via}"),
                LAB_EXEC,
            ),
        );
    }
    steps.extend([
        Step::new(
            "The router's table now has the three pod CIDRs",
            "cilia lab exec router -- ip route | grep 172.20",
            contains(["172.20.0.0/24 via 192.168.10.100", "172.20.1.0/24 via 192.168.10.101", "172.20.2.0/24 via 192.168.20.100"]),
        ),
        Step::new(
            "The k8s-w0 pod answers, through eth1 and eth2 of the router",
            ping_with_router_capture(WEBPOD_W0_IP),
            Check::Output(Box::new(|out| {
                if !out.contains(" 0% packet loss") {
                    return Err("ping lost packets".into());
                }
                capture_lines(out, &[("eth1", "In"), ("eth2", "Out")])
            })),
        )
        .differs(TWO_TERMINALS.0, TWO_TERMINALS.1),
        Step::new(
            "Remove the workaround",
            "cilia lab exec router -- ip route del 172.20.0.0/24 && cilia lab exec router -- ip route del 172.20.1.0/24 && cilia lab exec router -- ip route del 172.20.2.0/24",
            Check::Succeeds,
        )
        .differs("sshpass -p 'vagrant' ssh vagrant@router ... sudo ip route del 172.20.0.0/24 ...", LAB_EXEC),
        Step::new(
            "and the k8s-w0 pod is unreachable again",
            format!("{WEBPOD_W0_IP}\ncilia exec curl-pod -- ping -c 2 -W 1 $WEBPOD"),
            Check::FailsWith(Box::new(|_| Ok(()))),
        ),
    ]);
    Section { id: "native-routing", title: "Native routing and its limit across subnets", steps }
}
