//! `cilia observe` end to end, as root, in a lab of its own in tunnel mode (torn down even on
//! panic): real packets through the eBPF datapath, turned into flows by each node's agent, read
//! over each node's Observer socket and merged.
//!
//! - curl-pod → webpod across the overlay shows `to-overlay FORWARDED` lines with both pods'
//!   names, the client's port and 80, and TCP flags, as the guide's `hubble observe` does;
//! - a request to a Service without backends shows a DROPPED flow with its reason;
//! - each filter keeps exactly what it names (`--not` everything else), and `--first`,
//!   `--since`, `--until` and `-o table` answer;
//! - `-o json` parses with Hubble's field names and names each flow's device as the node does.
//!
//! Every request starts in a pod namespace.

mod common;

use std::io::{BufRead as _, BufReader};
use std::process::Stdio;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::{TestLab, guide_manifest, text};
use serde_json::Value;

const WAIT: Duration = Duration::from_secs(60);

const NO_BACKENDS: &str = "apiVersion: v1
kind: Service
metadata:
  name: nobackend
  namespace: default
spec:
  selector:
    app: nothing-matches-this
  ports:
  - port: 80
    targetPort: 80
";

fn tunnel_lab(prefix: &str) -> TestLab {
    let lab = TestLab { name: format!("{prefix}{}", std::process::id()) };
    let out = lab.cilia(&["lab", "up", "--routing-mode", "tunnel"]);
    assert!(out.status.success(), "lab up failed:\n{}", text(&out));
    lab
}

/// `curl webpod` from curl-pod `n` times (a third of the backends are on curl-pod's node, the
/// rest across the overlay).
fn curl_webpod(lab: &TestLab, n: usize) {
    let script = format!("for i in $(seq 1 {n}); do curl -s -m 3 -o /dev/null webpod; done");
    let out = lab.cilia(&["exec", "curl-pod", "--", "sh", "-c", &script]);
    assert!(out.status.success(), "curl loop:\n{}", text(&out));
}

/// Lines of `cilia observe ARGS` (not following).
fn observe(lab: &TestLab, args: &[&str]) -> Vec<String> {
    let mut all = vec!["observe"];
    all.extend(args);
    lab.ok(&all).lines().map(str::to_string).collect()
}

/// A guide line: `<time>: default/curl-pod:<port> (ID:n) -> default/webpod-…:80 (ID:n)
/// to-overlay FORWARDED (TCP Flags: …)`.
fn is_guide_line(line: &str) -> bool {
    let Some((_, rest)) = line.split_once(": default/curl-pod:") else { return false };
    let mut words = rest.split(' ');
    let port_ok = words.next().is_some_and(|p| p.parse::<u16>().is_ok_and(|p| p != 80));
    let src_id = words.next().is_some_and(|w| w.starts_with("(ID:"));
    let arrow = words.next() == Some("->");
    let dst = words.next().is_some_and(|w| w.starts_with("default/webpod-") && w.ends_with(":80"));
    let dst_id = words.next().is_some_and(|w| w.starts_with("(ID:"));
    port_ok && src_id && arrow && dst && dst_id && rest.contains(" to-overlay FORWARDED (TCP Flags: ")
}

#[test]
fn observe_shows_the_guides_flows_drops_and_filters() {
    let lab = tunnel_lab("obs");
    let manifests = format!("{}\n---\n{}", guide_manifest("webpod.yaml"), guide_manifest("curl-pod.yaml"));
    let out = lab.cilia_stdin(&["apply", "-f", "-"], &manifests);
    assert!(out.status.success(), "apply:\n{}", text(&out));
    lab.eventually(&["exec", "curl-pod", "--", "curl", "-s", "-m", "2", "webpod"], WAIT, |o| o.contains("Hostname:"));

    // --follow: the guide's command, started before the traffic.
    let mut follower = lab
        .command(&["observe", "-f", "--protocol", "tcp", "--pod", "curl-pod"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawning cilia observe -f");
    let stdout = follower.stdout.take().expect("stdout");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    std::thread::sleep(Duration::from_millis(500));
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut followed = Vec::new();
    while Instant::now() < deadline && !followed.iter().any(|l: &String| is_guide_line(l)) {
        curl_webpod(&lab, 6);
        while let Ok(line) = rx.recv_timeout(Duration::from_millis(700)) {
            followed.push(line);
        }
    }
    let _ = follower.kill();
    let _ = follower.wait();
    assert!(
        followed.iter().any(|l| is_guide_line(l)),
        "no `curl-pod -> webpod:80 to-overlay FORWARDED (TCP Flags: ...)` line while following:\n{}",
        followed.join("\n")
    );
    assert!(
        followed.iter().all(|l| l.contains("default/curl-pod") && l.contains("TCP Flags")),
        "--pod curl-pod --protocol tcp let other flows through:\n{}",
        followed.join("\n")
    );

    // History: the same lines, and the connection's SYN and FIN among them.
    let lines = observe(&lab, &["--pod", "curl-pod", "--last", "1000"]);
    let guide: Vec<&String> = lines.iter().filter(|l| is_guide_line(l)).collect();
    assert!(!guide.is_empty(), "no guide line in the history:\n{}", lines.join("\n"));
    assert!(guide.iter().any(|l| l.contains("(TCP Flags: SYN)")), "no SYN to-overlay:\n{}", lines.join("\n"));
    assert!(guide.iter().any(|l| l.contains("FIN")), "no FIN to-overlay:\n{}", lines.join("\n"));

    // A Service without backends: the request is dropped, and the flow says why.
    let out = lab.cilia_stdin(&["apply", "-f", "-"], NO_BACKENDS);
    assert!(out.status.success(), "apply nobackend:\n{}", text(&out));
    let ip = lab.eventually(&["get", "svc", "nobackend", "-o", "jsonpath={.spec.clusterIP}"], WAIT, |o| {
        o.trim().parse::<std::net::Ipv4Addr>().is_ok()
    });
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut drops = Vec::new();
    while Instant::now() < deadline {
        let _ = lab.cilia(&["exec", "curl-pod", "--", "curl", "-s", "-m", "1", &format!("http://{}/", ip.trim())]);
        drops = observe(&lab, &["--verdict", "DROPPED", "--pod", "curl-pod", "--last", "50"]);
        if drops.iter().any(|l| l.contains("Service backend not found DROPPED")) {
            break;
        }
    }
    assert!(
        drops.iter().any(|l| l.contains("default/curl-pod:") && l.contains("Service backend not found DROPPED")),
        "no `Service backend not found DROPPED` flow from curl-pod:\n{}",
        drops.join("\n")
    );

    // Each filter keeps exactly what it names. `curl webpod` picks a backend at random, so a
    // node can have seen none of the requests yet: curl until every node has flows of its own.
    for node in ["k8s-ctr", "k8s-w1", "k8s-w0"] {
        let deadline = Instant::now() + Duration::from_secs(20);
        while observe(&lab, &["--node", node, "--last", "1"]).is_empty() {
            assert!(Instant::now() < deadline, "no flow on {node} after 20 s of curl webpod");
            curl_webpod(&lab, 3);
        }
    }
    let all = observe(&lab, &["--last", "4000", "--print-node-name"]);
    assert!(all.len() > guide.len(), "the unfiltered view is not larger than the filtered one");
    let only = |args: &[&str], pred: &dyn Fn(&str) -> bool, what: &str| {
        let mut a = vec!["--last", "4000", "--print-node-name"];
        a.extend(args);
        let got = observe(&lab, &a);
        assert!(!got.is_empty(), "{what}: nothing selected");
        assert!(got.iter().all(|l| pred(l)), "{what}: selected lines that do not match:\n{}", got.join("\n"));
        let missing: Vec<&String> = all.iter().filter(|l| pred(l) && !got.contains(l)).collect();
        // Flows newer than the unfiltered snapshot may appear only in `got`; none of the
        // snapshot's matching flows may be missing unless the ring moved on.
        assert!(missing.len() <= all.len() / 10, "{what}: left out matching lines:\n{missing:?}");
    };
    only(&["--verdict", "DROPPED"], &|l| l.contains(" DROPPED "), "--verdict DROPPED");
    only(&["--type", "drop"], &|l| l.contains(" DROPPED "), "--type drop");
    only(&["--type", "trace:to-overlay"], &|l| l.contains(" to-overlay "), "--type trace:to-overlay");
    only(&["--node", "k8s-w1"], &|l| l.contains(" [k8s-w1]: "), "--node k8s-w1");
    only(&["--port", "80", "--protocol", "tcp"], &|l| l.contains(":80 ") && l.contains("TCP Flags"), "--port 80");
    only(&["--protocol", "udp"], &|l| l.ends_with(" (UDP)"), "--protocol udp");
    only(
        &["--verdict", "FORWARDED", "--type", "trace"],
        &|l| l.contains(" FORWARDED ("),
        "--verdict FORWARDED --type trace",
    );
    only(&["--label", "app=webpod"], &|l| l.contains("default/webpod-"), "--label app=webpod");
    only(&["--pod", "curl-pod"], &|l| l.contains("default/curl-pod"), "--pod curl-pod");
    only(&["-n", "default"], &|l| l.contains(" default/"), "--namespace default");
    // The client's own flows (a reply to it prints it on the left too, but with `<-`), and
    // everything else with `--not`.
    let from_curl = |l: &str| l.contains(": default/curl-pod") && !l.contains(" <- ");
    only(&["--from-pod", "curl-pod"], &from_curl, "--from-pod curl-pod");
    only(&["--not", "--from-pod", "curl-pod"], &|l| !from_curl(l), "--not --from-pod curl-pod");
    // Time bounds and the first flows of the buffers.
    assert_eq!(observe(&lab, &["--first", "3"]).len(), 3, "--first 3");
    assert!(!observe(&lab, &["--since", "1h"]).is_empty(), "--since 1h selected nothing");
    assert!(observe(&lab, &["--until", "2000-01-01T00:00:00Z"]).is_empty(), "--until 2000 selected flows");
    let table = observe(&lab, &["-o", "table", "--last", "5"]);
    assert!(
        table.len() == 6 && table[0].starts_with("TIMESTAMP ") && table[0].ends_with("   SUMMARY"),
        "-o table --last 5:\n{}",
        table.join("\n")
    );
    // No pod of kube-system talks here: an explicit -n filters even though -n has a default.
    let kube_system = observe(&lab, &["-n", "kube-system", "--last", "4000"]);
    assert!(kube_system.iter().all(|l| l.contains(" kube-system/")), "-n kube-system:\n{}", kube_system.join("\n"));

    // Hubble's port: k8s-w1 reads k8s-ctr's flows over TCP 4244 at its node address, inside the lab.
    let k8s_ctr = "192.168.10.100:4244";
    let over_tcp = lab.ok(&[
        "lab",
        "exec",
        "k8s-w1",
        "--",
        common::cilia_bin(),
        "observe",
        "--server",
        k8s_ctr,
        "--last",
        "5",
        "--print-node-name",
    ]);
    assert!(
        over_tcp.lines().count() == 5 && over_tcp.lines().all(|l| l.contains(" [k8s-ctr]: ")),
        "observe --server {k8s_ctr} from k8s-w1:\n{over_tcp}"
    );
    // The port takes only TLS with a client certificate of the cluster's CA: a pod that reaches
    // the node's address reads nothing, in plain gRPC nor in TLS without a certificate.
    let pki = format!("/var/lib/cilia/lab/{}/pki", lab.name);
    let plain = ["--http2-prior-knowledge", "http://192.168.10.100:4244/observer.Observer/ServerStatus"];
    let no_cert = ["--cacert", &format!("{pki}/ca.crt"), "https://192.168.10.100:4244/observer.Observer/ServerStatus"];
    for (what, how) in [("plain gRPC", &plain[..]), ("TLS without a certificate", &no_cert[..])] {
        let mut args = vec!["exec", "curl-pod", "--", "curl", "-sS", "-m", "3", "-X", "POST"];
        args.extend(how);
        let out = lab.cilia(&args);
        assert!(!out.status.success(), "curl-pod reached 4244 with {what}:\n{}", text(&out));
    }

    // -o json: Hubble's field names.
    let json = observe(&lab, &["--pod", "curl-pod", "--type", "trace:to-overlay", "-o", "json", "--last", "20"]);
    assert!(!json.is_empty(), "no JSON flows");
    for line in &json {
        let v: Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
        let f = &v["flow"];
        assert_eq!(f["trace_observation_point"], "TO_OVERLAY", "{line}");
        assert_eq!(f["verdict"], "FORWARDED", "{line}");
        assert!(f["source"]["pod_name"] == "curl-pod" || f["destination"]["pod_name"] == "curl-pod", "{line}");
        assert!(f["traffic_direction"].is_string(), "{line}");
        assert!(f["l4"]["TCP"]["flags"].is_object(), "{line}");
        assert!(v["node_name"].is_string() && v["time"].is_string(), "{line}");
    }
    // Each flow names the device it was seen on, as the node's kernel names it.
    let links = lab.ok(&["lab", "exec", "k8s-ctr", "--", "ip", "-o", "link", "show"]);
    let device = |index: u64| {
        links.lines().find_map(|l| {
            let (n, rest) = l.split_once(": ")?;
            (n.parse::<u64>().ok()? == index).then(|| rest.split([':', '@']).next().unwrap_or("").to_string())
        })
    };
    let json = observe(&lab, &["--node", "k8s-ctr", "--type", "trace", "-o", "json", "--last", "50"]);
    assert!(!json.is_empty(), "no trace flows on k8s-ctr");
    let mut named = 0;
    for line in &json {
        let v: Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
        let iface = &v["flow"]["interface"];
        // A program that runs on no device (a socket's) has no interface.
        let Some(index) = iface["index"].as_u64() else { continue };
        assert_eq!(iface["name"].as_str(), device(index).as_deref(), "interface {index} of k8s-ctr:\n{links}\n{line}");
        named += 1;
    }
    assert!(named > 0, "no flow on k8s-ctr names its device:\n{}", json.join("\n"));
}
