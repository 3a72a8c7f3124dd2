//! Services without kube-proxy: the guide's `kubectl exec -it curl-pod -- curl webpod` (a
//! ClusterIP by name, which the guide runs after switching to VXLAN) and its ten requests to the
//! LoadBalancer IP from k8s-ctr, spread over the webpod replicas, on cilia's eBPF datapath, in
//! tunnel mode as the guide is here: k8s-w0's pod is reached through the tunnel, without any
//! route on the router. The router reaches the LoadBalancer IP in the L2 announcements section,
//! by ARP, not by a route.

use std::{collections::BTreeMap, time::Duration};

use super::runner::{Check, Section, Step, contains, webpods_and_curl_pod_ready};

const WEBPOD: &str = include_str!("../../../../examples/guide/webpod.yaml");
const CURL_POD: &str = include_str!("../../../../examples/guide/curl-pod.yaml");
const POOL: &str = include_str!("../../../../examples/guide/lb-ippool.yaml");

const LBIP: &str = "LBIP=$(cilia get svc webpod -o jsonpath='{.status.loadBalancer.ingress[0].ip}')";

/// `uniq -c` output: every line a webpod, at least two distinct ones, `total` requests.
fn spread(total: usize) -> Check {
    Check::Output(Box::new(move |out| {
        let mut counts = BTreeMap::new();
        for line in out.lines().filter(|l| !l.trim().is_empty()) {
            let mut cols = line.split_whitespace();
            let n: usize = cols.next().and_then(|c| c.parse().ok()).ok_or(format!("not a count: {line}"))?;
            let host = cols.nth(1).ok_or(format!("no hostname: {line}"))?;
            if !host.starts_with("webpod-") {
                return Err(format!("answered by {host}, not a webpod"));
            }
            counts.insert(host.to_string(), n);
        }
        let sum: usize = counts.values().sum();
        if sum != total {
            return Err(format!("{sum} of {total} requests answered"));
        }
        if counts.len() < 2 {
            return Err(format!("all requests went to {counts:?}: not balanced"));
        }
        Ok(())
    }))
}

pub fn section() -> Section {
    let wait = Duration::from_secs(60);
    Section {
        id: "service-lb",
        title: "Services in eBPF: ClusterIP by name, LoadBalancer IP, balancing (tunnel mode)",
        steps: vec![
            Step::new(
                "Deploy webpod and curl-pod",
                format!("cat <<'EOF' | cilia apply -f -\n{WEBPOD}---\n{CURL_POD}EOF"),
                contains(["service/webpod", "pod/curl-pod"]),
            ),
            Step::new(
                "Three webpods and curl-pod are ready",
                "cilia get pod -o wide",
                webpods_and_curl_pod_ready(),
            )
            .waiting(wait),
            Step::new(
                "k8s-ctr's agent, found as the guide finds it, balances webpod's ClusterIP over the three pods",
                "CILIUMPOD=$(cilia get pod -n kube-system -l k8s-app=cilium --field-selector spec.nodeName=k8s-ctr -o jsonpath='{.items[0].metadata.name}')\n\
                 echo \"CILIUMPOD=$CILIUMPOD\"\n\
                 CIP=$(cilia get svc webpod -o jsonpath='{.spec.clusterIP}')\n\
                 cilia exec -n kube-system $CILIUMPOD -- cilium-dbg bpf lb list | grep \"^$CIP:\"",
                Check::Output(Box::new(|out| {
                    if out.lines().any(|l| l.contains("[ClusterIP") && l.ends_with("count=3")) {
                        Ok(())
                    } else {
                        Err("no ClusterIP frontend row with count=3".into())
                    }
                })),
            )
            .waiting(wait),
            Step::new(
                "curl-pod resolves names through its node's cluster DNS",
                "cilia exec curl-pod -- cat /etc/resolv.conf",
                contains(["nameserver 172.20.0.", "search default.svc.cluster.local svc.cluster.local cluster.local", "ndots:5"]),
            ),
            Step::new(
                "The name curl resolves: webpod's ClusterIP, from the cluster DNS on the pod's gateway",
                "CIP=$(cilia get svc webpod -o jsonpath='{.spec.clusterIP}'); echo \"clusterIP $CIP\"\n\
                 cilia exec curl-pod -- dig +search +short webpod",
                Check::Output(Box::new(|out| {
                    let cip = out.lines().find_map(|l| l.strip_prefix("clusterIP ")).ok_or("no cluster IP")?.trim();
                    if out.lines().skip(1).any(|l| l.trim() == cip) {
                        Ok(())
                    } else {
                        Err(format!("dig did not answer {cip}"))
                    }
                })),
            ),
            Step::new(
                "ClusterIP by name",
                "cilia exec curl-pod -- curl -s webpod | grep Hostname",
                contains(["Hostname: webpod-"]),
            ),
            Step::new(
                "The pod's connection in k8s-ctr's conntrack (SERVICE to the ClusterIP, OUT to the backend)",
                "cilia exec curl-pod -- curl -s -o /dev/null webpod\ncilia dbg k8s-ctr bpf ct list | grep 172.20.0.",
                contains(["TCP SERVICE 172.20.0.", "TCP OUT 172.20.0."]),
            ),
            Step::new(
                "The LoadBalancer IP pool (LB-IPAM)",
                format!("cat <<'EOF' | cilia apply -f -\n{POOL}EOF"),
                contains(["ciliumloadbalancerippool.cilium.io/cilium-lb-ippool"]),
            ),
            Step::new(
                "webpod becomes a LoadBalancer Service",
                r#"cilia patch svc webpod -p '{"spec":{"type":"LoadBalancer"}}'"#,
                contains(["service/webpod patched"]),
            ),
            Step::new(
                "and gets an address from the pool",
                format!("{LBIP}; echo \"LBIP=$LBIP\""),
                contains(["LBIP=192.168.10.2"]),
            )
            .waiting(Duration::from_secs(15)),
            Step::new(
                "Every node's datapath has the LoadBalancer frontend",
                format!("{LBIP}\nfor n in k8s-ctr k8s-w1 k8s-w0; do cilia dbg $n bpf lb list | grep \"^$LBIP:80/TCP (0)\"; done"),
                Check::Output(Box::new(|out| {
                    let rows = out.lines().filter(|l| l.contains("[LoadBalancer") && l.ends_with("count=3")).count();
                    if rows == 3 { Ok(()) } else { Err(format!("{rows} of 3 nodes have the frontend with 3 backends")) }
                })),
            )
            .waiting(wait),
            Step::new(
                "The LoadBalancer IP from k8s-ctr",
                format!("{LBIP}\ncilia lab exec k8s-ctr -- curl -s $LBIP | grep Hostname"),
                contains(["Hostname: webpod-"]),
            ),
            Step::new(
                "Ten requests spread over the replicas",
                format!(
                    "{LBIP}\nfor i in {{1..10}}; do cilia lab exec k8s-ctr -- curl -s $LBIP | grep Hostname; done | sort | uniq -c"
                ),
                spread(10),
            ),
        ],
    }
}
