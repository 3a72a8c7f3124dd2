//! The guide's "L2 Announcements" section: the LoadBalancer IP reachable from the router without
//! any route, because one node answers ARP for it; then the leader loses power and another node
//! takes over.
//!
//! Where cilia differs, the step says so: the Helm upgrade is `cilia config set --set` with the
//! same value names; the lease is written by the owner when ownership changes, not renewed; the
//! guide's `sudo reboot` is `cilia lab kill` here, and the node boots again at the end of the
//! section (`cilia lab boot`).

use std::{collections::BTreeSet, time::Duration};

use super::runner::{Check, Section, Step, contains};

const WEBPOD: &str = include_str!("../../../../examples/guide/webpod.yaml");
const CURL_POD: &str = include_str!("../../../../examples/guide/curl-pod.yaml");
const POOL: &str = include_str!("../../../../examples/guide/lb-ippool.yaml");
const POLICY: &str = include_str!("../../../../examples/guide/l2-policy.yaml");

const LBIP: &str = "LBIP=$(cilia get svc webpod -o jsonpath='{.status.loadBalancer.ingress[0].ip}')";
/// The node holding the lease, and its eth1 MAC.
const LEADER: &str = "LEADER=$(cilia get lease cilium-l2announce-default-webpod -n kube-system -o jsonpath='{.spec.holderIdentity}')\n\
                      MAC=$(cilia lab exec $LEADER -- ip -br link show eth1 | awk '{print $3}')";
/// The node this section powered off.
const KILLED: &str = "KILLED=$(cilia lab status | sed -n 's/.*killed: \\([a-z0-9-]*\\).*/\\1/p' | head -1)";

/// `leader NODE MAC` printed by the command, then every `from MAC` arping line is that MAC.
fn answered_by_the_leader() -> Check {
    Check::Output(Box::new(|out| {
        let leader_mac = out
            .lines()
            .find_map(|l| l.strip_prefix("leader ").and_then(|r| r.split_whitespace().nth(1)))
            .ok_or("no leader line")?
            .to_lowercase();
        let macs: BTreeSet<String> = out
            .lines()
            .filter_map(|l| l.split(" from ").nth(1)?.split_whitespace().next().map(str::to_lowercase))
            .collect();
        match macs.iter().collect::<Vec<_>>().as_slice() {
            [] => Err("no ARP reply".into()),
            [one] if **one == leader_mac => Ok(()),
            _ => Err(format!("answered by {macs:?}, expected only the leader's {leader_mac}")),
        }
    }))
}

/// The `cilium-l2announce-default-webpod` row of `get lease`, held by one of `holders`; with
/// `not_killed`, by a node `lab status` does not report killed.
fn lease_held(not_killed: bool) -> Check {
    Check::Output(Box::new(move |out| {
        let killed: Vec<&str> = out.lines().filter_map(|l| l.strip_prefix("killed: ")).collect();
        let row = out
            .lines()
            .find(|l| l.starts_with("cilium-l2announce-default-webpod"))
            .ok_or("no lease cilium-l2announce-default-webpod")?;
        let holder = row.split_whitespace().nth(1).ok_or("the lease has no holder")?;
        if !["k8s-ctr", "k8s-w1"].contains(&holder) {
            return Err(format!("held by {holder}, which the policy does not select"));
        }
        if not_killed && killed.contains(&holder) {
            return Err(format!("still held by {holder}, which is powered off"));
        }
        Ok(())
    }))
}

/// `uniq -c` of `Hostname:` lines: all `total` requests answered by webpods.
fn all_answered(total: usize) -> Check {
    Check::Output(Box::new(move |out| count_answered(out, total)))
}

fn count_answered(out: &str, total: usize) -> Result<(), String> {
    let mut sum = 0;
    for line in out.lines().filter(|l| !l.trim().is_empty()) {
        let mut cols = line.split_whitespace();
        let n: usize = cols.next().and_then(|c| c.parse().ok()).ok_or(format!("not a count: {line}"))?;
        if !cols.nth(1).is_some_and(|h| h.starts_with("webpod-")) {
            return Err(format!("not a webpod: {line}"));
        }
        sum += n;
    }
    if sum == total { Ok(()) } else { Err(format!("{sum} of {total} requests answered")) }
}

pub fn section() -> Section {
    let wait = Duration::from_secs(60);
    Section {
        id: "l2",
        title: "L2 Announcements: ARP for the LoadBalancer IP, leader election and failover",
        steps: vec![
            Step::new(
                "Preparation: the guide is in VXLAN mode here, with webpod a LoadBalancer Service from the pool",
                format!(
                    "[ \"$(cilia config view | awk '$1==\"routing-mode\"{{print $2}}')\" = tunnel ] || \
                     cilia config set routing-mode=tunnel auto-direct-node-routes=false\n\
                     cat <<'EOF' | cilia apply -f -\n{WEBPOD}---\n{CURL_POD}---\n{POOL}EOF\n\
                     cilia patch svc webpod -p '{{\"spec\":{{\"type\":\"LoadBalancer\"}}}}'"
                ),
                contains(["service/webpod patched"]),
            ),
            Step::new(
                "The LoadBalancer IP, and no route to it on the router",
                format!("{LBIP}; echo \"LBIP=$LBIP\"\ncilia lab exec router -- ip route get $LBIP"),
                Check::Output(Box::new(|out| {
                    if !out.contains("LBIP=192.168.10.2") {
                        return Err("no LoadBalancer IP from the pool yet".into());
                    }
                    if out.lines().any(|l| l.contains(" via ")) {
                        return Err("the router routes the LB IP through a gateway".into());
                    }
                    Ok(())
                })),
            )
            .waiting(Duration::from_secs(30)),
            Step::new(
                "Turn L2 announcements on, as the guide's helm upgrade --set (cilia config set takes the same names) and rollout restart",
                "cilia config set --set kubeProxyReplacement=true --set l2announcements.enabled=true --set l2NeighDiscovery.enabled=true",
                contains(["configmap/cilium-config"]),
            )
            .differs(
                "helm upgrade cilium cilium/cilium --reuse-values --set kubeProxyReplacement=true --set l2announcements.enabled=true --set l2NeighDiscovery.enabled=true; kubectl rollout restart ...",
                super::vxlan::NO_HELM,
            ),
            Step::new(
                "Check the settings",
                "cilia config view | grep -E 'enable-l2|replacement'",
                Check::Output(Box::new(|out| {
                    for key in ["enable-l2-announcements", "enable-l2-neigh-discovery", "kube-proxy-replacement"] {
                        let on = out.lines().any(|l| {
                            let c: Vec<&str> = l.split_whitespace().collect();
                            c.first() == Some(&key) && c.get(1) == Some(&"true")
                        });
                        if !on {
                            return Err(format!("{key} is not true"));
                        }
                    }
                    Ok(())
                })),
            ),
            Step::new("cilium status --wait", "cilia status --wait", contains(["l2-announcements   OK"])),
            Step::new(
                "The L2 announcement policy: webpod's LoadBalancer IP, from k8s-w1 or k8s-ctr, on eth1 and up",
                format!("cat <<'EOF' | cilia apply -f -\n{POLICY}EOF"),
                contains(["ciliuml2announcementpolicy.cilium.io/policy1"]),
            ),
            Step::new(
                "The leader: one node holds the lease (cilia writes it when ownership changes; nobody renews it)",
                "cilia -n kube-system get lease | grep l2announce",
                lease_held(false),
            )
            .waiting(Duration::from_secs(15)),
            Step::new(
                "Its holderIdentity",
                "cilia -n kube-system get lease/cilium-l2announce-default-webpod -o yaml | grep holderIdentity",
                contains(["holderIdentity: k8s-"]),
            ),
            Step::new(
                "The leader's l2-announce table, through its agent's pod",
                format!(
                    "{LEADER}\n\
                     CILIUMPOD=$(cilia get pod -n kube-system -l k8s-app=cilium --field-selector spec.nodeName=$LEADER -o jsonpath='{{.items[0].metadata.name}}')\n\
                     echo \"CILIUMPOD=$CILIUMPOD\"\n\
                     cilia exec -n kube-system $CILIUMPOD -- cilium-dbg shell -- db/show l2-announce"
                ),
                contains(["NetworkInterface", "192.168.10.24", "eth1"]),
            )
            .waiting(Duration::from_secs(5))
            .differs(
                "CILIUMPOD=$(kubectl get pod -n kube-system -l k8s-app=cilium --field-selector spec.nodeName=k8s-ctr ...); kubectl exec -n kube-system $CILIUMPOD -- cilium-dbg shell -- db/show l2-announce",
                "the same commands, asked of the leader's agent rather than k8s-ctr's: an agent's table lists what that node itself announces, and the leader may be k8s-w1",
            ),
            Step::new(
                "From the router: ARP for the LoadBalancer IP is answered by the leader's eth1",
                format!("{LBIP}\n{LEADER}\necho \"leader $LEADER $MAC\"\ncilia lab exec router -- arping -I eth1 $LBIP -c 2"),
                answered_by_the_leader(),
            )
            .waiting(Duration::from_secs(5)),
            Step::new(
                "HTTP from the router, without any route",
                format!("{LBIP}\ncilia lab exec router -- curl -s $LBIP | grep Hostname"),
                contains(["Hostname: webpod-"]),
            ),
            Step::new(
                "The router's ARP table: the LoadBalancer IP at the leader's MAC, on eth1",
                format!("{LBIP}\n{LEADER}\necho \"leader $LEADER $MAC\"\ncilia lab exec router -- arp -a | grep \"($LBIP)\""),
                Check::Output(Box::new(|out| {
                    let mac = out
                        .lines()
                        .find_map(|l| l.strip_prefix("leader ").and_then(|r| r.split_whitespace().nth(1)))
                        .ok_or("no leader line")?
                        .to_lowercase();
                    let row = out.lines().find(|l| l.contains("(192.168.10.24")).ok_or("no ARP entry for the LB IP")?;
                    if row.to_lowercase().contains(&format!(" at {mac} ")) && row.ends_with(" on eth1") {
                        Ok(())
                    } else {
                        Err(format!("{row:?} is not the leader's {mac} on eth1"))
                    }
                })),
            ),
            Step::new(
                "Ten requests from the router, spread over the replicas",
                format!("{LBIP}\nfor i in {{1..10}}; do cilia lab exec router -- curl -s $LBIP | grep Hostname; done | sort | uniq -c"),
                all_answered(10),
            ),
            Step::new(
                "Failover: the leader loses power (the guide reboots it; cilia lab kill keeps it down until the end of the section)",
                format!("{LEADER}\necho \"leader: $LEADER\"\ncilia lab kill $LEADER"),
                contains(["killed at"]),
            )
            .differs(
                "vagrant ssh k8s-w1; sudo reboot",
                "the nodes are namespaces on one machine: `cilia lab kill` is a power loss (links down, processes, pods and BPF state gone) held until `cilia lab boot`",
            ),
            Step::new(
                "Another node takes over (Cilium needs about 15 s here)",
                format!("{KILLED}\necho \"killed: $KILLED\"\ncilia -n kube-system get lease | grep l2announce"),
                lease_held(true),
            )
            .waiting(Duration::from_secs(15)),
            Step::new(
                "The router reaches the Service through the new leader",
                format!("{LBIP}\n{LEADER}\necho \"leader $LEADER $MAC\"\ncilia lab exec router -- arping -I eth1 $LBIP -c 2"),
                answered_by_the_leader(),
            )
            .waiting(Duration::from_secs(5)),
            Step::new(
                "and every request is answered once the lost node's pods have left the Service",
                format!(
                    "{LBIP}\nfor i in {{1..10}}; do cilia lab exec router -- curl -s -m 2 $LBIP | grep Hostname; done | sort | uniq -c"
                ),
                all_answered(10),
            )
            .waiting(wait),
            Step::new(
                "The node boots again and rejoins",
                format!("{KILLED}\ncilia lab boot $KILLED --wait"),
                contains(["booted at", "Ready at"]),
            ),
            Step::new(
                "One node answers for the LoadBalancer IP again",
                format!("{LBIP}\n{LEADER}\necho \"leader $LEADER $MAC\"\ncilia lab exec router -- arping -I eth1 $LBIP -c 3"),
                answered_by_the_leader(),
            )
            .waiting(Duration::from_secs(15)),
            Step::new(
                "Where the guide ends: tunnel mode, and curl-pod reaches webpod by name, 10 of 10",
                "cilia config view | grep '^routing-mode '\n\
                 for i in {1..10}; do cilia exec curl-pod -- curl -s -m 2 webpod | grep Hostname; done | sort | uniq -c",
                Check::Output(Box::new(|out| {
                    if !out.lines().any(|l| l.split_whitespace().eq(["routing-mode", "tunnel"])) {
                        return Err("the lab is not in tunnel mode".into());
                    }
                    let rest: String = out.lines().filter(|l| !l.starts_with("routing-mode")).collect::<Vec<_>>().join("\n");
                    count_answered(&rest, 10)
                })),
            )
            .waiting(wait),
        ],
    }
}
