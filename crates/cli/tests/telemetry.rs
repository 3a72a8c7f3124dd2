//! Metrics and health end to end, on one lab: the agents' and the operator's endpoints answer on
//! their node's address (read from inside the node's namespace, over TLS with the CLI's client
//! certificate) with Cilium's families under `cilia_`, and curl-pod gets nothing from them; the conntrack count moves when curl-pod talks to webpod; `cilia dbg NODE metrics`
//! prints the same exposition from the unix socket; a stored value that is not an object shows
//! in the unreadable-object counts and as a warning in `cilia status` until it is deleted; and `cilia status` names an agent stopped
//! with SIGSTOP within 2 s, then sees it healthy again after SIGCONT, and names a killed one.

mod common;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{TestLab, guide_manifest, text};

const WAIT: Duration = Duration::from_secs(60);

/// The agent families the exposition must declare (`# TYPE name kind`).
const AGENT_FAMILIES: &[(&str, &str)] = &[
    ("cilia_forward_count", "counter"),
    ("cilia_drop_count", "counter"),
    ("cilia_conntrack_entries", "gauge"),
    ("cilia_nat_entries", "gauge"),
    ("cilia_bpf_map_pressure", "gauge"),
    ("cilia_services_programmed", "gauge"),
    ("cilia_service_backends_programmed", "gauge"),
    ("cilia_service_implementation_delay_seconds", "histogram"),
    ("cilia_l2_arp_replies", "counter"),
    ("cilia_l2_announcement_ownership_changes", "counter"),
    ("cilia_ipam_ip_addresses", "gauge"),
    ("cilia_flow_events_lost", "counter"),
    ("cilia_flow_buffer_flows", "gauge"),
    ("cilia_conntrack_gc_deleted", "counter"),
    ("cilia_datastore_unreadable_objects", "gauge"),
    ("cilia_datastore_unreadable_values", "counter"),
];

/// The value of the unlabelled sample `name` in an exposition.
fn value(exposition: &str, name: &str) -> f64 {
    exposition
        .lines()
        .find_map(|l| l.strip_prefix(name).and_then(|rest| rest.strip_prefix(' ')))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no sample {name} in:\n{exposition}"))
}

/// The sum of every sample of `name` (all label sets); 0 when there is none.
fn sum(exposition: &str, name: &str) -> f64 {
    exposition
        .lines()
        .filter_map(|l| l.strip_prefix(name))
        .filter(|rest| rest.starts_with(['{', ' ']))
        .filter_map(|rest| rest.rsplit(' ').next()?.trim().parse::<f64>().ok())
        .sum()
}

fn declares(exposition: &str, family: &str, kind: &str) -> bool {
    exposition.lines().any(|l| l == format!("# TYPE {family} {kind}"))
}

/// `curl` inside `node`'s network namespace, to that node's own address, over TLS with the
/// CLI's client certificate (`https://...`).
fn node_curl(lab: &TestLab, node: &str, url: &str) -> (String, String) {
    let pki = format!("/var/lib/cilia/lab/{}/pki", lab.name);
    let (ca, cert, key) =
        (format!("{pki}/ca.crt"), format!("{pki}/client-admin.crt"), format!("{pki}/client-admin.key"));
    let args = ["-s", "-m", "3", "--cacert", &ca, "--cert", &cert, "--key", &key, "-w", "\n%{http_code}", url];
    let out = lab.cilia(&[&["lab", "exec", node, "--", "curl"][..], &args[..]].concat());
    assert!(out.status.success(), "curl {url} in {node}:\n{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = stdout.rsplit_once('\n').unwrap_or((&stdout, ""));
    (body.to_string(), code.trim().to_string())
}

/// `etcdctl` on the lab's datastore socket: writes around cilia, as a corrupt or foreign value would.
fn etcdctl(lab: &TestLab, args: &[&str]) {
    let url = lab::datastore_url(&lab.name).expect("the lab's datastore");
    let endpoint = format!("--endpoints={url}");
    let out = Command::new("etcdctl").arg(endpoint).args(args).output().expect("etcdctl runs");
    assert!(out.status.success(), "etcdctl {args:?}:\n{}", text(&out));
}

fn agent_pid(lab: &TestLab, node: &str) -> i32 {
    let status = lab.ok(&["lab", "status"]);
    let process = format!("agent-{node}");
    status
        .lines()
        .find_map(|l| {
            let c: Vec<&str> = l.split_whitespace().collect();
            (c.first() == Some(&process.as_str()) && c.get(3) == Some(&"running")).then(|| c[2].parse().ok()).flatten()
        })
        .unwrap_or_else(|| panic!("no running {process}:\n{status}"))
}

/// A process killed when dropped (what it started in the lab goes with `lab down`).
struct Standby(Child);

impl Drop for Standby {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Resumes a stopped process when dropped, so a failing test leaves nothing stopped.
struct Stopped(i32);

impl Stopped {
    fn new(pid: i32) -> Self {
        let st = Command::new("kill").args(["-STOP", &pid.to_string()]).status().expect("kill");
        assert!(st.success(), "kill -STOP {pid}");
        Stopped(pid)
    }
}

impl Drop for Stopped {
    fn drop(&mut self) {
        let _ = Command::new("kill").args(["-CONT", &self.0.to_string()]).status();
    }
}

#[test]
fn metrics_and_health_answer_move_with_traffic_and_status_names_a_stopped_agent() {
    let lab = TestLab::up("telem");
    for file in ["webpod.yaml", "curl-pod.yaml"] {
        let out = lab.cilia_stdin(&["apply", "-f", "-"], &guide_manifest(file));
        assert!(out.status.success(), "{}", text(&out));
    }
    lab.eventually(&["get", "pod", "curl-pod"], WAIT, |o| o.contains("Running"));
    let out = lab.cilia(&["status", "--wait", "--wait-duration", "60s"]);
    assert!(out.status.success(), "status --wait:\n{}", text(&out));

    // The agent's endpoints on its node's address (9962), from inside the node's namespace.
    let (metrics, code) = node_curl(&lab, "k8s-w1", "https://192.168.10.101:9962/metrics");
    assert_eq!(code, "200", "{metrics}");
    for (family, kind) in AGENT_FAMILIES {
        assert!(declares(&metrics, family, kind), "no {kind} {family} in:\n{metrics}");
    }
    assert!(metrics.ends_with("# EOF\n"), "not OpenMetrics text:\n{metrics}");
    for path in ["/healthz", "/readyz"] {
        let (body, code) = node_curl(&lab, "k8s-w1", &format!("https://192.168.10.101:9962{path}"));
        assert_eq!(code, "200", "{path}: {body}");
        let report: serde_json::Value = serde_json::from_str(&body).expect("JSON");
        assert_eq!(report["healthy"], true, "{body}");
        assert_eq!(report["ready"], true, "{body}");
    }
    let (body, code) = node_curl(&lab, "k8s-w1", "https://192.168.10.101:9962/readyz");
    assert!(code == "200" && body.contains("programs attached"), "{body}");

    // Closed to pods as the datastore is: no plain HTTP, no answer to TLS without a client
    // certificate of the cluster's CA.
    for (what, args) in [
        ("plain HTTP", vec!["curl", "-s", "-m", "3", "http://192.168.10.101:9962/metrics"]),
        ("TLS without a client certificate", vec!["curl", "-sk", "-m", "3", "https://192.168.10.101:9962/metrics"]),
        ("the operator without a certificate", vec!["curl", "-sk", "-m", "3", "https://192.168.10.100:9963/metrics"]),
    ] {
        let out = lab.cilia(&[&["exec", "curl-pod", "--"][..], &args[..]].concat());
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(!out.status.success() && !stdout.contains("cilia_"), "{what} from curl-pod answered:\n{}", text(&out));
    }

    // The operator's (9963) on k8s-ctr.
    let (op, code) = node_curl(&lab, "k8s-ctr", "https://192.168.10.100:9963/metrics");
    assert_eq!(code, "200", "{op}");
    assert_eq!(value(&op, "cilia_operator_is_leader"), 1.0, "{op}");
    assert!(declares(&op, "cilia_operator_lbipam_ips_used", "gauge"), "{op}");
    assert!(op.contains("cilia_operator_reconciles_total{kind="), "{op}");
    assert_eq!(value(&op, "cilia_operator_datastore_unreadable_objects"), 0.0, "{op}");
    let (body, code) = node_curl(&lab, "k8s-ctr", "https://192.168.10.100:9963/readyz");
    assert!(code == "200" && body.contains("leading"), "{body}");

    // A second operator, in k8s-w1, stands by; status lists it from its socket.
    let _standby = Standby(
        lab.command(&["lab", "exec", "k8s-w1", "--", common::cilia_bin(), "operator", "--identity", "k8s-w1"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("a standby operator"),
    );
    let status = lab.eventually(&["status"], WAIT, |o| o.contains("operator k8s-w1"));
    let line = status.lines().find(|l| l.starts_with("operator k8s-w1")).unwrap_or_default();
    assert!(line.contains("OK") && line.contains("standby"), "{status}");
    assert!(status.lines().any(|l| l.starts_with("operator ") && l.contains("leader k8s-ctr")), "{status}");

    // `dbg NODE metrics` reads curl-pod's node's agent over its socket; traffic moves the
    // conntrack count there (pods get per-packet service translation, with conntrack entries).
    let node = lab.ok(&["get", "pod", "curl-pod", "-o", "jsonpath={.spec.nodeName}"]).trim().to_string();
    // webpod's three replicas, once they all run.
    let before =
        lab.eventually(&["dbg", &node, "metrics"], WAIT, |o| value(o, "cilia_service_backends_programmed") >= 3.0);
    assert!(declares(&before, "cilia_conntrack_entries", "gauge"), "{before}");
    assert!(value(&before, "cilia_services_programmed") >= 1.0, "{before}");
    assert!(value(&before, "cilia_ipam_ip_addresses") >= 1.0, "{before}");
    let served = (0..10)
        .filter(|_| lab.cilia(&["exec", "curl-pod", "--", "curl", "-s", "-m", "2", "webpod"]).status.success())
        .count();
    assert!(served > 0, "curl-pod never reached webpod");
    let after = lab.ok(&["dbg", &node, "metrics"]);
    let (ct0, ct1) = (value(&before, "cilia_conntrack_entries"), value(&after, "cilia_conntrack_entries"));
    assert!(ct1 > ct0, "{served} requests, conntrack entries {ct0} -> {ct1}:\n{after}");
    let (fwd0, fwd1) = (sum(&before, "cilia_forward_count_total"), sum(&after, "cilia_forward_count_total"));
    assert!(fwd1 >= fwd0 + served as f64, "{served} requests, packets forwarded {fwd0} -> {fwd1}:\n{after}");

    // A stored Service value that is not an object, written around cilia: the agents and the
    // leading operator skip it, count it and say so in status (a warning); once the key is
    // deleted, the counts and the line go back.
    assert_eq!(value(&after, "cilia_datastore_unreadable_objects"), 0.0, "{after}");
    let junk = "/cilia/registry/services/default/unreadable-junk";
    etcdctl(&lab, &["put", junk, "{not json"]);
    let metrics =
        lab.eventually(&["dbg", &node, "metrics"], WAIT, |o| value(o, "cilia_datastore_unreadable_objects") == 1.0);
    assert!(sum(&metrics, "cilia_datastore_unreadable_values_total") >= 1.0, "{metrics}");
    let status = lab.eventually(&["status"], WAIT, |o| {
        o.lines().any(|l| {
            l.starts_with("unreadable")
                && l.contains("operator k8s-ctr 1")
                && !l.contains("agent k8s-w0 0")
                && !l.contains("agent k8s-w1 0")
                && !l.contains("agent k8s-ctr 0")
        })
    });
    let line = status.lines().find(|l| l.starts_with("unreadable")).unwrap_or_default();
    assert!(line.contains("WARN") && line.contains(&format!("agent {node} 1")), "{status}");
    etcdctl(&lab, &["del", junk]);
    lab.eventually(&["dbg", &node, "metrics"], WAIT, |o| value(o, "cilia_datastore_unreadable_objects") == 0.0);
    let status = lab.eventually(&["status"], WAIT, |o| {
        o.lines().any(|l| l.starts_with("unreadable") && l.contains(" OK ") && l.contains("operator k8s-ctr 0"))
    });
    assert!(!status.contains(" WARN "), "{status}");

    // A stopped agent: named by status within 2 s.
    let pid = agent_pid(&lab, "k8s-w1");
    let stopped = Stopped::new(pid);
    let started = Instant::now();
    let out = lab.cilia(&["status"]);
    let took = started.elapsed();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success(), "status passed with k8s-w1's agent stopped:\n{}", text(&out));
    let line = stdout.lines().find(|l| l.starts_with("agent k8s-w1")).unwrap_or_else(|| panic!("{stdout}"));
    assert!(line.contains("FAIL") && line.contains("stalled"), "{line}");
    assert!(took < Duration::from_secs(2), "status took {took:?}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("agent k8s-w1"), "{}", text(&out));
    drop(stopped);
    let out = lab.cilia(&["status", "--wait", "--wait-duration", "30s"]);
    assert!(out.status.success(), "k8s-w1's agent did not come back:\n{}", text(&out));

    // A killed one (the supervisor restarts it): named too, before its membership Lease lapses.
    let pid = agent_pid(&lab, "k8s-w0");
    let st = Command::new("kill").args(["-KILL", &pid.to_string()]).status().expect("kill");
    assert!(st.success(), "kill -KILL {pid}");
    let started = Instant::now();
    let out = lab.cilia(&["status"]);
    let took = started.elapsed();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = stdout.lines().find(|l| l.starts_with("agent k8s-w0")).unwrap_or_else(|| panic!("{stdout}"));
    assert!(line.contains("FAIL"), "{line}");
    assert!(took < Duration::from_secs(2), "status took {took:?}");
    let out = lab.cilia(&["status", "--wait", "--wait-duration", "30s"]);
    assert!(out.status.success(), "k8s-w0's agent did not come back:\n{}", text(&out));
}
