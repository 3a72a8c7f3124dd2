//! L2 announcements end to end, read from the router as a machine outside the cluster sees them:
//! who answers ARP for a LoadBalancer IP, on which interface, and what happens when Services,
//! policies and nodes change. The router has no route to any LB IP: only ARP brings it there.
//!
//! - the guide's section, from a fresh lab, failover and return included;
//! - only the nodes a policy selects announce, never on eth0 (the regex excludes it); a Service
//!   without an LB IP gets no lease; an LB IP added later is announced, one that moves is
//!   withdrawn from its old address; deleting the Service or the policy withdraws everything;
//! - with `externalTrafficPolicy: Local` only a node with a local backend announces, and only
//!   nodes on the IP's subnet announce it;
//! - a graceful agent restart hands over without a moment in which two MACs answer, and a 60 s
//!   datastore outage leaves the LB IP answering throughout.

mod common;

use std::{
    collections::BTreeSet,
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use common::{TestLab, guide_manifest, text};

const WAIT: Duration = Duration::from_secs(60);

const ONLY_CTR: &str = "apiVersion: cilium.io/v2alpha1
kind: CiliumL2AnnouncementPolicy
metadata: {name: only-ctr}
spec:
  serviceSelector: {matchLabels: {app: webpod}}
  nodeSelector: {matchLabels: {kubernetes.io/hostname: k8s-ctr}}
  interfaces: [\"^eth[1-9]+\"]
  loadBalancerIPs: true
";

const EVERY_NODE_ETH1: &str = "apiVersion: cilium.io/v2alpha1
kind: CiliumL2AnnouncementPolicy
metadata: {name: every-node}
spec:
  interfaces: [\"^eth1$\"]
  loadBalancerIPs: true
";

impl TestLab {
    /// The guide's webpod as a LoadBalancer (192.168.10.241), tunnel routing (every node reaches
    /// every backend), L2 announcements on, and `policy` applied.
    fn l2_lab(prefix: &str, policy: &str) -> TestLab {
        let lab = TestLab::up(prefix);
        lab.ok(&["config", "set", "routing-mode=tunnel", "auto-direct-node-routes=false"]);
        lab.ok(&["config", "set", "--set", "l2announcements.enabled=true"]);
        lab.webpod_as_load_balancer("", WAIT);
        lab.apply(policy);
        lab
    }

    fn apply(&self, yaml: &str) {
        let out = self.cilia_stdin(&["apply", "-f", "-"], yaml);
        assert!(out.status.success(), "apply:\n{}", text(&out));
    }

    /// The MAC of `dev` in `host`.
    fn mac(&self, host: &str, dev: &str) -> String {
        let out = self.ok(&["lab", "exec", host, "--", "ip", "-br", "link", "show", dev]);
        out.split_whitespace().nth(2).expect("a MAC column").to_lowercase()
    }

    /// The MACs answering `count` ARP requests for `ip` sent from the router's `dev`.
    fn arp_answers(&self, dev: &str, ip: &str, count: u32) -> BTreeSet<String> {
        let out =
            self.cilia(&["lab", "exec", "router", "--", "arping", "-I", dev, "-c", &count.to_string(), "-w", "2", ip]);
        macs_in(&String::from_utf8_lossy(&out.stdout))
    }

    /// Waits until exactly the MACs `want` answer ARP for `ip` on the router's `dev`.
    fn answered_by(&self, dev: &str, ip: &str, want: &[&str]) {
        let want: BTreeSet<String> = want.iter().map(|m| m.to_string()).collect();
        let deadline = Instant::now() + WAIT;
        loop {
            let got = self.arp_answers(dev, ip, 2);
            if got == want {
                return;
            }
            assert!(Instant::now() < deadline, "{ip} is answered by {got:?}, expected {want:?}");
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// The holder of Service `svc`'s announcement Lease, if it has one.
    fn holder(&self, svc: &str) -> Option<String> {
        let name = format!("cilium-l2announce-default-{svc}");
        let out = self.cilia(&["-n", "kube-system", "get", "lease", &name, "-o", "jsonpath={.spec.holderIdentity}"]);
        out.status.success().then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
    }

    /// The rows of a node's responder map (`bpf l2 list`, without header and liveness line).
    fn responder(&self, node: &str) -> Vec<String> {
        self.ok(&["dbg", node, "bpf", "l2", "list"])
            .lines()
            .filter(|l| l.starts_with(|c: char| c.is_ascii_digit()))
            .map(str::to_string)
            .collect()
    }

    /// The pid of a supervised process, from `lab status`.
    fn pid_of(&self, process: &str) -> i32 {
        let out = self.ok(&["lab", "status"]);
        out.lines()
            .find_map(|l| {
                let c: Vec<&str> = l.split_whitespace().collect();
                (c.first() == Some(&process) && c.get(3) == Some(&"running")).then(|| c[2].parse().ok()).flatten()
            })
            .unwrap_or_else(|| panic!("no running {process} in:\n{out}"))
    }

    fn lb_ip(&self, svc: &str) -> String {
        self.eventually(&["get", "svc", svc, "-o", "jsonpath={.status.loadBalancer.ingress[0].ip}"], WAIT, |o| {
            !o.trim().is_empty()
        })
        .trim()
        .to_string()
    }
}

fn macs_in(arping: &str) -> BTreeSet<String> {
    arping.lines().filter_map(|l| l.split(" from ").nth(1)?.split_whitespace().next().map(str::to_lowercase)).collect()
}

fn service(name: &str, annotations: &str, extra_spec: &str) -> String {
    format!(
        "apiVersion: v1
kind: Service
metadata:
  name: {name}
  labels: {{app: webpod}}
  annotations: {{{annotations}}}
spec:
  type: LoadBalancer
  selector: {{app: webpod}}
  ports: [{{port: 80, targetPort: 80}}]
{extra_spec}"
    )
}

#[test]
fn the_guides_l2_section_passes_from_a_fresh_lab() {
    let lab = TestLab::up("l2g");
    let out = lab.cilia(&["lab", "guide", "l2"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success() && stdout.contains(" 0 failed"), "{}", text(&out));
    assert!(stdout.contains("cilium-l2announce-default-webpod"), "{stdout}");
}

#[test]
fn only_selected_nodes_announce_and_announcements_follow_services_and_policies() {
    let lab = TestLab::l2_lab("l2sel", ONLY_CTR);
    let ctr = lab.mac("k8s-ctr", "eth1");
    let ip = common::GUIDE_LB_IP;

    // Only k8s-ctr answers, on eth1 only; the other nodes hold nothing.
    lab.answered_by("eth1", ip, &[&ctr]);
    for _ in 0..5 {
        assert_eq!(lab.arp_answers("eth1", ip, 3), BTreeSet::from([ctr.clone()]));
    }
    assert_eq!(lab.holder("webpod").as_deref(), Some("k8s-ctr"));
    let rows = lab.responder("k8s-ctr");
    assert!(rows.len() == 1 && rows[0].contains("(eth1)"), "{rows:?}");
    for node in ["k8s-w1", "k8s-w0"] {
        assert!(lab.responder(node).is_empty(), "{node} announces: {:?}", lab.responder(node));
    }
    // ARP for the VIP arriving on k8s-ctr's eth0 (from the management side) is not answered.
    let eth0 = Command::new("ip")
        .args(["netns", "exec", &lab.namespace("uplink"), "arping", "-I", "k8s-ctr-eth0", "-c", "2", "-w", "2", ip])
        .stdin(Stdio::null())
        .output()
        .expect("arping in the uplink");
    assert!(macs_in(&String::from_utf8_lossy(&eth0.stdout)).is_empty(), "answered on eth0:\n{}", text(&eth0));

    // A Service without an LB IP gets no lease.
    lab.apply(
        "apiVersion: v1\nkind: Service\nmetadata: {name: plain, labels: {app: webpod}}\n\
         spec: {selector: {app: webpod}, ports: [{port: 80}]}\n",
    );
    // An LB IP that comes later is announced; one that moves is withdrawn from the old address.
    lab.apply(&service("late", "", "").replace("type: LoadBalancer", "type: ClusterIP"));
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(lab.holder("late"), None, "a ClusterIP Service got a lease");
    lab.ok(&["patch", "svc", "late", "-p", r#"{"spec":{"type":"LoadBalancer"}}"#]);
    let late_ip = lab.lb_ip("late");
    lab.answered_by("eth1", &late_ip, &[&ctr]);
    lab.eventually(&["-n", "kube-system", "get", "lease"], WAIT, |o| o.contains("cilium-l2announce-default-late"));
    lab.ok(&["annotate", "svc", "late", "lbipam.cilium.io/ips=192.168.10.244", "--overwrite"]);
    lab.answered_by("eth1", "192.168.10.244", &[&ctr]);
    if late_ip != "192.168.10.244" {
        lab.answered_by("eth1", &late_ip, &[]);
    }
    assert_eq!(lab.holder("plain"), None, "a Service without an LB IP got a lease");

    // Deleting the Service withdraws its address and its lease.
    lab.ok(&["delete", "svc", "late"]);
    lab.answered_by("eth1", "192.168.10.244", &[]);
    lab.eventually(&["-n", "kube-system", "get", "lease"], WAIT, |o| !o.contains("cilium-l2announce-default-late"));
    // Deleting the policy withdraws the rest, everywhere.
    lab.ok(&["delete", "ciliuml2announcementpolicy", "only-ctr"]);
    lab.answered_by("eth1", ip, &[]);
    for node in ["k8s-ctr", "k8s-w1", "k8s-w0"] {
        assert!(lab.responder(node).is_empty(), "{node} still announces");
    }
    lab.eventually(&["-n", "kube-system", "get", "lease"], WAIT, |o| !o.contains("cilium-l2announce-"));
}

#[test]
fn local_backends_and_subnets_decide_who_may_announce() {
    let lab = TestLab::l2_lab("l2elig", EVERY_NODE_ETH1);
    let (ctr, w1, w0) = (lab.mac("k8s-ctr", "eth1"), lab.mac("k8s-w1", "eth1"), lab.mac("k8s-w0", "eth1"));

    // A backend on k8s-w1 only, behind four eTP=Local Services: k8s-w1 announces all four, whatever
    // the hash prefers (without the rule, each would go to k8s-ctr half the time).
    lab.apply(
        "apiVersion: apps/v1
kind: Deployment
metadata: {name: only-w1}
spec:
  replicas: 1
  selector: {matchLabels: {app: only-w1}}
  template:
    metadata: {labels: {app: only-w1}}
    spec:
      nodeSelector: {kubernetes.io/hostname: k8s-w1}
      containers: [{name: whoami, image: traefik/whoami}]
",
    );
    for (n, ip) in ["192.168.10.242", "192.168.10.243", "192.168.10.244", "192.168.10.245"].iter().enumerate() {
        let svc = service(
            &format!("local-{n}"),
            &format!("lbipam.cilium.io/ips: \"{ip}\""),
            "  externalTrafficPolicy: Local\n",
        )
        .replace("selector: {app: webpod}", "selector: {app: only-w1}");
        lab.apply(&svc);
    }
    for ip in ["192.168.10.242", "192.168.10.243", "192.168.10.244", "192.168.10.245"] {
        lab.answered_by("eth1", ip, &[&w1]);
    }
    // k8s-w0 is on 192.168.20.0/24: it never announces 192.168.10.x, though the policy selects it.
    assert!(lab.responder("k8s-w0").iter().all(|r| !r.starts_with("192.168.10.")), "{:?}", lab.responder("k8s-w0"));

    // An address on the other segment: only k8s-w0 is on its subnet, so only k8s-w0 announces it,
    // to the router's eth2.
    lab.apply(
        "apiVersion: cilium.io/v2
kind: CiliumLoadBalancerIPPool
metadata: {name: seg20}
spec:
  blocks: [{start: \"192.168.20.241\", stop: \"192.168.20.245\"}]
",
    );
    lab.apply(&service("seg20", "lbipam.cilium.io/ips: \"192.168.20.241\"", ""));
    lab.answered_by("eth2", "192.168.20.241", &[&w0]);
    for node in ["k8s-ctr", "k8s-w1"] {
        assert!(lab.responder(node).iter().all(|r| !r.starts_with("192.168.20.")), "{node} announces 192.168.20.x");
    }
    // The cluster-policy webpod keeps one owner on the 192.168.10 segment.
    let owner = lab.arp_answers("eth1", common::GUIDE_LB_IP, 3);
    assert!(owner == BTreeSet::from([ctr.clone()]) || owner == BTreeSet::from([w1.clone()]), "{owner:?}");
}

/// The router's ARP requests for `ip` in a capture (`tcpdump -n -e -tt`), each with the MACs that
/// answered it (unicast replies to the router; a gratuitous broadcast answers no request).
fn answers_per_request(capture: &str, ip: &str) -> Vec<BTreeSet<String>> {
    let mut requests: Vec<BTreeSet<String>> = Vec::new();
    for line in capture.lines() {
        if line.contains(&format!("Request who-has {ip} ")) {
            requests.push(BTreeSet::new());
        } else if let Some(rest) = line.split(&format!("Reply {ip} is-at ")).nth(1) {
            let to_broadcast = line.contains("> ff:ff:ff:ff:ff:ff");
            if let (Some(answers), false) = (requests.last_mut(), to_broadcast) {
                answers.insert(rest.split([',', ' ']).next().unwrap_or_default().to_lowercase());
            }
        }
    }
    requests
}

#[test]
fn a_graceful_restart_hands_over_cleanly_and_a_datastore_outage_changes_nothing() {
    let lab = TestLab::l2_lab("l2ha", &guide_manifest("l2-policy.yaml"));
    let ip = common::GUIDE_LB_IP;
    let holder = lab.eventually(
        &[
            "-n",
            "kube-system",
            "get",
            "lease",
            "cilium-l2announce-default-webpod",
            "-o",
            "jsonpath={.spec.holderIdentity}",
        ],
        WAIT,
        |o| o.starts_with("k8s-"),
    );
    let holder = holder.trim().to_string();
    let other = if holder == "k8s-ctr" { "k8s-w1" } else { "k8s-ctr" };
    let (holder_mac, other_mac) = (lab.mac(&holder, "eth1"), lab.mac(other, "eth1"));
    lab.answered_by("eth1", ip, &[&holder_mac]);

    // Graceful stop of the holder's agent (SIGTERM; the supervisor starts it again): the other
    // node takes over, the restarted agent takes the address back, and no ARP request of the
    // router (one every 20 ms) is answered by two MACs.
    let capture = common::start_tcpdump(&lab.namespace("router"), 12, &["-n", "-e", "-tt", "-i", "eth1", "arp"]);
    let mut arping = lab
        .command(&["lab", "exec", "router", "--", "arping", "-i", "eth1", "-W", "0.02", "-w", "10", ip])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("arping");
    std::thread::sleep(Duration::from_millis(500));
    let agent = lab.pid_of(&format!("agent-{holder}"));
    nix_kill(agent, "TERM");
    let out = capture.wait_with_output().expect("tcpdump");
    let _ = arping.kill();
    let _ = arping.wait();
    let requests = answers_per_request(&String::from_utf8_lossy(&out.stdout), ip);
    let macs: BTreeSet<String> = requests.iter().flatten().cloned().collect();
    assert!(macs.contains(&other_mac), "{other} never took over: {macs:?}");
    assert_eq!(
        requests.iter().rev().find(|a| !a.is_empty()),
        Some(&BTreeSet::from([holder_mac.clone()])),
        "{holder} did not take it back"
    );
    let dual: Vec<&BTreeSet<String>> = requests.iter().filter(|a| a.len() > 1).collect();
    assert!(dual.is_empty(), "{} of {} requests were answered by two MACs", dual.len(), requests.len());

    // The datastore frozen for 60 s: the address keeps answering ARP and HTTP from the router.
    let etcd = lab.pid_of("etcd");
    nix_kill(etcd, "STOP");
    let resume = scopeguard(etcd);
    let frozen = Instant::now();
    let mut failures = Vec::new();
    let mut requests = 0;
    while frozen.elapsed() < Duration::from_secs(60) {
        requests += 1;
        let out = lab.cilia(&["lab", "exec", "router", "--", "curl", "-s", "-m", "2", ip]);
        if !String::from_utf8_lossy(&out.stdout).contains("Hostname: webpod-") {
            failures.push(format!("{:.1}s: {}", frozen.elapsed().as_secs_f64(), text(&out)));
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    assert_eq!(lab.arp_answers("eth1", ip, 2), BTreeSet::from([holder_mac.clone()]), "announcement lost while frozen");
    drop(resume);
    assert!(
        failures.is_empty(),
        "{} of {requests} requests failed while the datastore was frozen:\n{failures:#?}",
        failures.len()
    );
    lab.eventually(&["status"], WAIT, |o| !o.contains("FAIL"));
}

/// Sends `signal` (TERM, STOP, CONT) to `pid`.
fn nix_kill(pid: i32, signal: &str) {
    let st = Command::new("kill").args([&format!("-{signal}"), &pid.to_string()]).status().expect("kill");
    assert!(st.success(), "kill -{signal} {pid}");
}

/// Resumes a stopped process when dropped, so a failing test never leaves etcd frozen.
struct Resume(i32);

impl Drop for Resume {
    fn drop(&mut self) {
        let _ = Command::new("kill").args(["-CONT", &self.0.to_string()]).status();
    }
}

fn scopeguard(pid: i32) -> Resume {
    Resume(pid)
}
