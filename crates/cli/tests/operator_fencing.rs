//! Two operators never lead at once. The lab's operator leads; a second one stands by. The leader
//! is frozen (SIGSTOP) past its lease TTL, the standby takes over and serves new Services, then the
//! old leader resumes believing it leads: its writes are refused (fenced on the Lease) and it steps
//! down, and no LoadBalancer IP is ever held by two Services. The same with SIGKILL.

mod common;

use std::{
    collections::BTreeMap,
    process::{Child, Command, Stdio},
    time::Duration,
};

use common::{TestLab, text};

const WAIT: Duration = Duration::from_secs(60);

const POOL: &str = "apiVersion: cilium.io/v2
kind: CiliumLoadBalancerIPPool
metadata: {name: pool}
spec:
  blocks: [{start: \"192.168.10.241\", stop: \"192.168.10.245\"}]
";

fn lb_service(name: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Service\nmetadata: {{name: {name}}}\n\
         spec: {{type: LoadBalancer, selector: {{app: none}}, ports: [{{port: 80}}]}}\n"
    )
}

impl TestLab {
    fn holder(&self) -> String {
        self.ok(&["-n", "kube-system", "get", "lease", "cilia-operator", "-o", "jsonpath={.spec.holderIdentity}"])
            .trim()
            .to_string()
    }

    fn wait_holder(&self, who: &str) {
        self.eventually(
            &["-n", "kube-system", "get", "lease", "cilia-operator", "-o", "jsonpath={.spec.holderIdentity}"],
            WAIT,
            |o| o.trim() == who,
        );
    }

    fn operator_pid(&self) -> i32 {
        let status = self.ok(&["lab", "status"]);
        status
            .lines()
            .find_map(|l| {
                let c: Vec<&str> = l.split_whitespace().collect();
                (c.first() == Some(&"operator") && c.get(3) == Some(&"running")).then(|| c[2].parse().ok()).flatten()
            })
            .unwrap_or_else(|| panic!("no running operator:\n{status}"))
    }

    /// LoadBalancer IP → the Services holding it.
    fn ip_holders(&self) -> BTreeMap<String, Vec<String>> {
        let out = self.ok(&["get", "svc", "-o", "json"]);
        let list: serde_json::Value = serde_json::from_str(&out).expect("json");
        let mut holders: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for svc in list["items"].as_array().into_iter().flatten() {
            for ingress in svc["status"]["loadBalancer"]["ingress"].as_array().into_iter().flatten() {
                if let Some(ip) = ingress["ip"].as_str() {
                    holders
                        .entry(ip.to_string())
                        .or_default()
                        .push(svc["metadata"]["name"].as_str().unwrap_or("").into());
                }
            }
        }
        holders
    }

    fn lb_ip(&self, svc: &str) -> String {
        self.eventually(&["get", "svc", svc, "-o", "jsonpath={.status.loadBalancer.ingress[0].ip}"], WAIT, |o| {
            o.trim().starts_with("192.168.10.")
        })
        .trim()
        .to_string()
    }
}

fn signal(pid: i32, sig: &str) {
    let st = Command::new("kill").args([&format!("-{sig}"), &pid.to_string()]).status().expect("kill");
    assert!(st.success(), "kill -{sig} {pid}");
}

/// A second operator, killed when dropped.
struct Standby(Child);

impl Drop for Standby {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Resumes a frozen process when dropped, so a failing test leaves nothing stopped.
struct Frozen(i32);

impl Drop for Frozen {
    fn drop(&mut self) {
        let _ = Command::new("kill").args(["-CONT", &self.0.to_string()]).status();
    }
}

fn assert_unique(lab: &TestLab) {
    let holders = lab.ip_holders();
    let twice: Vec<_> = holders.iter().filter(|(_, s)| s.len() > 1).collect();
    assert!(twice.is_empty(), "LB IPs held by two Services: {twice:?}");
}

#[test]
fn a_paused_or_killed_leader_never_writes_beside_its_successor() {
    let lab = TestLab::up("fence");
    lab.wait_holder("k8s-ctr");
    let standby = Standby(
        lab.command(&["operator", "--identity", "standby"])
            .env("CILIA_LOG", "info")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("a standby operator"),
    );
    for yaml in [POOL.to_string(), lb_service("a"), lb_service("b")] {
        let out = lab.cilia_stdin(&["apply", "-f", "-"], &yaml);
        assert!(out.status.success(), "{}", text(&out));
    }
    let a = lab.lb_ip("a");
    lab.lb_ip("b");
    assert_eq!(lab.holder(), "k8s-ctr", "the standby took over too early");

    // Freeze the leader past its 5 s TTL: the standby takes over and serves the changes.
    let leader = lab.operator_pid();
    signal(leader, "STOP");
    let frozen = Frozen(leader);
    lab.wait_holder("standby");
    lab.ok(&["delete", "svc", "a"]);
    let out = lab.cilia_stdin(&["apply", "-f", "-"], &lb_service("c"));
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(lab.lb_ip("c"), a, "the standby reuses the freed address");

    // The old leader resumes with its stale view: nothing it writes lands, and it steps down.
    drop(frozen);
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(lab.holder(), "standby");
    assert_unique(&lab);
    let out = lab.cilia_stdin(&["apply", "-f", "-"], &lb_service("d"));
    assert!(out.status.success(), "{}", text(&out));
    lab.lb_ip("d");
    assert_unique(&lab);
    let log = std::fs::read_to_string(format!("/run/cilia/lab/{}/logs/operator.log", lab.name)).unwrap_or_default();
    assert!(
        log.contains("giving the lease up") || log.contains("lease expired") || log.contains("lost the operator lease"),
        "the resumed operator did not step down:\n{}",
        log.lines().rev().take(30).collect::<Vec<_>>().join("\n")
    );

    // Now kill the new leader outright: the lab's operator (restarted as a standby) takes over.
    drop(standby);
    lab.wait_holder("k8s-ctr");
    let out = lab.cilia_stdin(&["apply", "-f", "-"], &lb_service("e"));
    assert!(out.status.success(), "{}", text(&out));
    lab.lb_ip("e");
    assert_unique(&lab);
}
