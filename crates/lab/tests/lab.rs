//! End-to-end tests of the lab, as root. Each test builds its own lab with a unique name (so it
//! never touches a user's `cilia` lab or another test's), and removes it in a drop guard, also when
//! the test fails. Every packet starts inside a lab namespace.

use std::collections::BTreeSet;
use std::fs;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use lab::procfs::ProcessId;
use lab::{Lab, UpOptions};
use testkit::eventually;

/// A lab that is removed when the test ends, however it ends.
struct TestLab {
    lab: Lab,
    opts: UpOptions,
}

impl TestLab {
    /// Fails when not root (namespaces need CAP_SYS_ADMIN): a test that did not run must not pass.
    fn new(tag: &str) -> Self {
        assert!(nix::unistd::geteuid().is_root(), "needs root (network namespaces): run as root, as `make test` does");
        let name = format!("t{tag}{}", std::process::id() % 100_000);
        let lab = Lab::new(&name).expect("valid test lab name");
        // A leftover from an interrupted earlier run with the same pid.
        lab.down_quiet().expect("clean start");
        let supervisor = vec![env!("CARGO_BIN_EXE_lab-supervise").into(), name.into()];
        let opts = UpOptions::new(&lab, supervisor);
        TestLab { lab, opts }
    }

    fn up(&self) -> lab::UpReport {
        self.lab.up(&self.opts).expect("lab up")
    }

    fn ns(&self, host: &str) -> String {
        self.lab.namespace_of(host).unwrap().to_string()
    }

    /// Runs a command in a host and returns (exit code, stdout).
    fn run(&self, host: &str, argv: &[&str]) -> (i32, String) {
        let out = self
            .lab
            .command(host, argv[0])
            .unwrap()
            .args(&argv[1..])
            .output()
            .unwrap_or_else(|e| panic!("{argv:?} in {host}: {e}"));
        (out.status.code().unwrap_or(-1), String::from_utf8_lossy(&out.stdout).into_owned())
    }

    fn ping(&self, host: &str, dst: &str) -> bool {
        self.run(host, &["ping", "-c1", "-W1", dst]).0 == 0
    }

    /// (rx packets, tx packets) of an interface.
    fn counters(&self, host: &str, ifname: &str) -> (u64, u64) {
        let (code, json) = self.run(host, &["ip", "-j", "-s", "link", "show", "dev", ifname]);
        assert_eq!(code, 0, "ip link show {ifname} in {host}");
        let v: serde_json::Value = serde_json::from_str(&json).unwrap();
        let s = &v[0]["stats64"];
        (s["rx"]["packets"].as_u64().unwrap(), s["tx"]["packets"].as_u64().unwrap())
    }

    fn etcd(&self) -> lab::status::ProcessStatus {
        let status = self.lab.status().unwrap();
        status.processes.into_iter().find(|p| p.name == "etcd").expect("etcd in status")
    }

    fn ip(&self, args: &[&str]) {
        let out = Command::new("ip").args(args).output().unwrap();
        assert!(out.status.success(), "ip {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    }
}

impl Drop for TestLab {
    fn drop(&mut self) {
        if thread::panicking() {
            // The logs go away with the lab; show them while they exist.
            if let Ok(entries) = fs::read_dir(self.lab.paths().log_dir()) {
                for e in entries.flatten() {
                    let text = fs::read_to_string(e.path()).unwrap_or_default();
                    let lines: Vec<&str> = text.lines().collect();
                    eprintln!("=== {} (last 30 lines)", e.path().display());
                    eprintln!("{}", lines[lines.len().saturating_sub(30)..].join("\n"));
                }
            }
        }
        if let Err(e) = self.lab.down_quiet() {
            eprintln!("cleanup of lab {} failed: {e}", self.lab.name());
        }
    }
}

fn namespace_inode(ns: &str) -> u64 {
    use std::os::unix::fs::MetadataExt;
    fs::metadata(Path::new("/run/netns").join(ns)).unwrap().ino()
}

fn process_netns_inode(pid: i32) -> u64 {
    let link = fs::read_link(format!("/proc/{pid}/ns/net")).unwrap();
    let link = link.to_string_lossy();
    link.trim_start_matches("net:[").trim_end_matches(']').parse().unwrap()
}

#[test]
fn routes_between_segments_and_swallows_unknown_pod_traffic() {
    let t = TestLab::new("route");
    let started = Instant::now();
    let report = t.up();
    eprintln!("lab up took {:.3}s", started.elapsed().as_secs_f64());
    assert_eq!(report.datastore_url, format!("unix:///run/cilia/lab/{}/etcd.sock", t.lab.name()));
    assert_eq!(lab::datastore_url(t.lab.name()), Some(report.datastore_url.clone()));
    assert!(lab::etcd::healthy(&t.lab.paths().etcd_socket(), Duration::from_secs(2)));
    // The lab's processes reach etcd on k8s-ctr's node address, across the segment, with TLS and
    // their node's client certificate; without one, or over plain HTTP, etcd answers nothing.
    let pki = t.lab.paths().pki();
    let (ca, client) = (pki.ca(), pki.client("k8s-w1"));
    let (ca, cert, key) = (ca.to_str().unwrap(), client.cert.to_str().unwrap(), client.key.to_str().unwrap());
    let url = "https://192.168.10.100:2379/health";
    let with_cert = ["curl", "-s", "--max-time", "2", "--cacert", ca, "--cert", cert, "--key", key, url];
    let (code, health) = t.run("k8s-w1", &with_cert);
    assert!(code == 0 && health.contains(r#""health":"true""#), "{code} {health}");
    let (code, _) = t.run("k8s-w1", &["curl", "-s", "--max-time", "2", "--cacert", ca, url]);
    assert_ne!(code, 0, "etcd answered a client without a certificate");
    let (code, _) = t.run("k8s-w1", &["curl", "-s", "--max-time", "2", "http://192.168.10.100:2379/health"]);
    assert_ne!(code, 0, "etcd answered plain HTTP on the network");

    // Between the segments through the router, from the router and from a node.
    assert_eq!(t.lab.exec("router", &["ping", "-c1", "-W1", "192.168.20.100"]).unwrap(), 0);
    assert!(t.ping("k8s-ctr", "192.168.20.100"));
    assert!(t.ping("k8s-w0", "192.168.10.101"));
    assert!(t.ping("k8s-w1", "192.168.10.100"));
    assert!(t.ping("router", "10.10.2.200"));

    let (_, addrs) = t.run("k8s-ctr", &["ip", "-br", "addr"]);
    let eth1 = addrs.lines().find(|l| l.starts_with("eth1")).expect("eth1 in ip -br addr");
    assert!(eth1.contains("192.168.10.100/24"), "{addrs}");
    assert!(eth1.contains(" UP "), "{addrs}");

    assert_eq!(t.run("router", &["cat", "/proc/sys/net/ipv4/ip_forward"]).1.trim(), "1");
    assert_eq!(t.run("uplink", &["cat", "/proc/sys/net/ipv4/ip_forward"]).1.trim(), "0");
    assert_eq!(t.lab.exec("router", &["sh", "-c", "exit 3"]).unwrap(), 3);

    // The guide's failure: k8s-ctr -> 172.20.2.5 reaches the router on eth1, leaves on eth0 into
    // the uplink and never comes back.
    let mut tcpdump = t
        .lab
        .command("router", "tcpdump")
        .unwrap()
        .args(["-i", "eth0", "-nn", "-l", "-c", "3", "icmp"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("tcpdump");
    let mut stderr = BufReader::new(tcpdump.stderr.take().unwrap());
    let mut line = String::new();
    while !line.contains("listening on") {
        line.clear();
        assert!(stderr.read_line(&mut line).unwrap() > 0, "tcpdump exited");
    }
    assert!(line.contains("listening on eth0"), "tcpdump: {line}");

    let (eth1_rx0, _) = t.counters("router", "eth1");
    let (_, eth0_tx0) = t.counters("router", "eth0");
    let (uplink_rx0, _) = t.counters("uplink", "router-eth0");
    let (code, out) = t.run("k8s-ctr", &["ping", "-c3", "-i0.2", "-W1", "172.20.2.5"]);
    assert_ne!(code, 0, "172.20.2.5 must not answer: {out}");
    assert!(out.contains("3 packets transmitted, 0 received"), "{out}");
    let (eth1_rx1, _) = t.counters("router", "eth1");
    let (_, eth0_tx1) = t.counters("router", "eth0");
    let (uplink_rx1, _) = t.counters("uplink", "router-eth0");
    assert!(eth1_rx1 >= eth1_rx0 + 3, "router eth1 rx {eth1_rx0} -> {eth1_rx1}");
    assert!(eth0_tx1 >= eth0_tx0 + 3, "router eth0 tx {eth0_tx0} -> {eth0_tx1}");
    assert!(uplink_rx1 >= uplink_rx0 + 3, "uplink rx {uplink_rx0} -> {uplink_rx1}");

    let deadline = Instant::now() + Duration::from_secs(5);
    while tcpdump.try_wait().unwrap().is_none() && Instant::now() < deadline {
        thread::sleep(Duration::from_millis(20));
    }
    let _ = tcpdump.kill();
    let out = tcpdump.wait_with_output().unwrap();
    let captured = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        captured.lines().filter(|l| l.contains("192.168.10.100 > 172.20.2.5: ICMP echo request")).count(),
        3,
        "{captured}"
    );

    let status = t.lab.status().unwrap();
    assert!(status.is_up(), "{status}");
    let printed = status.to_string();
    assert!(printed.contains("192.168.20.200/24"), "{printed}");
    assert!(t.etcd().running);

    let started = Instant::now();
    t.lab.down_quiet().unwrap();
    eprintln!("lab down took {:.3}s", started.elapsed().as_secs_f64());
}

#[test]
fn up_is_idempotent_and_repairs_a_broken_lab() {
    let t = TestLab::new("repair");
    let first = t.up();
    assert!(first.network.changes > 0);
    let etcd_pid = t.etcd().pid;

    // A complete lab: nothing changes, nothing restarts.
    let again = t.up();
    assert_eq!(again.network.changes, 0);
    assert!(!again.supervisor_started);
    assert_eq!(again.supervisor_pid, first.supervisor_pid);
    assert_eq!(t.etcd().pid, etcd_pid);

    // One cable gone (deleting the fabric end removes k8s-w1's eth1 with it).
    t.ip(&["-n", &t.ns("fabric"), "link", "del", "k8s-w1-eth1"]);
    assert!(!t.ping("k8s-w1", "192.168.10.100"));
    let r = t.up();
    assert!(r.network.changes > 0 && !r.network.rebuilt);
    assert!(!r.supervisor_started, "k8s-w1 runs nothing; etcd must stay");
    assert!(t.ping("k8s-w1", "192.168.10.100"));
    assert!(t.ping("k8s-w1", "192.168.20.100"));

    // An address and a route gone.
    t.ip(&["-n", &t.ns("router"), "addr", "del", "10.10.1.200/24", "dev", "loop1"]);
    t.ip(&["-n", &t.ns("k8s-w0"), "route", "del", "192.168.0.0/16"]);
    assert!(!t.ping("k8s-w0", "192.168.10.100"));
    t.up();
    assert!(t.ping("k8s-w0", "192.168.10.100"));
    assert!(t.ping("router", "10.10.1.200"));

    // A whole namespace gone, and one left as a stale file (as after a crash).
    t.ip(&["netns", "del", &t.ns("k8s-w0")]);
    t.ip(&["netns", "del", &t.ns("uplink")]);
    fs::write(Path::new("/run/netns").join(t.ns("uplink")), b"").unwrap();
    let r = t.up();
    let new: BTreeSet<_> = r.network.new_hosts.iter().map(String::as_str).collect();
    assert_eq!(new, BTreeSet::from(["k8s-w0", "uplink"]));
    assert!(t.ping("k8s-ctr", "192.168.20.100"));
    assert_eq!(t.up().network.changes, 0);

    // The namespace etcd runs in gone: etcd must come back inside the new one.
    t.ip(&["netns", "del", &t.ns("k8s-ctr")]);
    let r = t.up();
    assert!(r.supervisor_started);
    let etcd = t.etcd();
    assert!(etcd.running);
    assert_eq!(
        process_netns_inode(etcd.pid.unwrap()),
        namespace_inode(&t.ns("k8s-ctr")),
        "etcd runs in the recreated k8s-ctr"
    );
    assert!(lab::etcd::healthy(&t.lab.paths().etcd_socket(), Duration::from_secs(2)));
    assert!(t.lab.status().unwrap().is_up());
}

#[test]
fn supervisor_restarts_etcd_and_down_leaves_nothing() {
    let t = TestLab::new("super");
    let report = t.up();
    let supervisor = ProcessId::of(report.supervisor_pid).unwrap();
    let first = t.etcd();
    let first_pid = first.pid.unwrap();
    assert_eq!(first.restarts, 0);
    assert_eq!(process_netns_inode(first_pid), namespace_inode(&t.ns("k8s-ctr")));

    nix::sys::signal::kill(nix::unistd::Pid::from_raw(first_pid), nix::sys::signal::SIGKILL).unwrap();
    eventually("etcd restarted", Duration::from_secs(15), || {
        let e = t.etcd();
        e.running && e.pid != Some(first_pid) && e.restarts >= 1
    });
    let socket = t.lab.paths().etcd_socket();
    eventually("etcd healthy again", Duration::from_secs(15), || {
        lab::etcd::healthy(&socket, Duration::from_millis(500))
    });

    // Rollout restarts are asked for: each starts the process again at once, not after a crash
    // backoff that grows with every restart.
    for _ in 0..3 {
        t.lab.restart_process("etcd", Duration::from_secs(15)).unwrap();
    }
    assert!(!t.lab.paths().restart_request("etcd").exists(), "restart request not consumed");
    let log = std::fs::read_to_string(t.lab.paths().supervisor_log()).unwrap();
    assert_eq!(log.lines().filter(|l| l.contains("etcd: ") && l.contains("restart requested")).count(), 3, "{log}");
    eventually("etcd healthy after the rollout restarts", Duration::from_secs(15), || {
        lab::etcd::healthy(&socket, Duration::from_millis(500))
    });
    let etcd = ProcessId::of(t.etcd().pid.unwrap()).unwrap();

    // Something started by hand inside the lab must not survive `down` either.
    let mut stray = t.lab.command("router", "sleep").unwrap().arg("300").spawn().unwrap();
    let stray_id = ProcessId::of(stray.id() as i32).unwrap();

    let r = t.lab.down_quiet().unwrap();
    assert_eq!(r.supervisors_stopped, 1);
    let _ = stray.wait();
    for (what, id) in [("supervisor", supervisor), ("etcd", etcd), ("stray", stray_id)] {
        assert!(!id.is_alive(), "{what} (pid {}) survived down", id.pid);
    }
    assert!(lab::procfs::with_env(lab::ENV_SUPERVISOR, t.lab.name()).is_empty());

    let prefix = t.lab.name_prefix();
    let netns = Command::new("ip").args(["netns", "list"]).output().unwrap();
    let netns = String::from_utf8_lossy(&netns.stdout);
    assert!(!netns.lines().any(|l| l.starts_with(&prefix)), "{netns}");
    assert!(lab::netns::list_with_prefix(&prefix).is_empty());
    let paths = t.lab.paths();
    for p in [paths.state_dir(), paths.data_dir(), paths.bpf_dir(), paths.lock_file()] {
        assert!(!p.exists(), "{} survived down", p.display());
    }
    assert_eq!(lab::datastore_url(t.lab.name()), None);
    assert!(t.lab.status().unwrap().is_down());

    // Nothing left: down again is fine.
    t.lab.down_quiet().unwrap();
}

#[test]
fn down_removes_a_partial_lab() {
    let t = TestLab::new("part");
    t.ip(&["netns", "add", &t.ns("router")]);
    t.ip(&["netns", "add", &format!("{}pod-x", t.lab.name_prefix())]);
    fs::create_dir_all("/run/netns").unwrap();
    fs::write(Path::new("/run/netns").join(t.ns("k8s-w1")), b"").unwrap();
    fs::create_dir_all(t.lab.paths().state_dir()).unwrap();
    fs::write(t.lab.paths().state_file(), b"{ not json").unwrap();

    let r = t.lab.down_quiet().unwrap();
    assert_eq!(r.namespaces_removed, 3);
    assert!(lab::netns::list_with_prefix(&t.lab.name_prefix()).is_empty());
    assert!(!t.lab.paths().state_dir().exists());
}

#[test]
fn unknown_hosts_are_named_with_the_valid_ones() {
    let lab = Lab::new("tunknown").unwrap();
    let err = lab.exec("k8s-w9", &["true"]).unwrap_err().to_string();
    assert!(err.contains("\"k8s-w9\""), "{err}");
    assert!(err.contains("router, k8s-ctr, k8s-w1, k8s-w0"), "{err}");
    assert!(lab::exec("Bad-Name", "router", &["true"]).is_err());
    let err = Lab::new("tnotup").unwrap().exec("router", &["true"]).unwrap_err();
    assert!(matches!(err, lab::LabError::HostDown { .. }), "{err}");
}

/// Test processes on the nodes: one per node, the k8s-w1 one with a child in its own session
/// (as a pod's process is, outside its runtime's process group).
fn node_sleepers(t: &TestLab) -> UpOptions {
    let mut opts = t.opts.clone();
    for node in ["k8s-ctr", "k8s-w1", "k8s-w0"] {
        let script = "setsid sleep 1000 & exec sleep 1000";
        opts.processes.push(lab::ProcessSpec::new(&format!("sleeper-{node}"), node, &["sh", "-c", script]));
    }
    opts
}

impl TestLab {
    fn process(&self, name: &str) -> lab::status::ProcessStatus {
        let status = self.lab.status().unwrap();
        status.processes.into_iter().find(|p| p.name == name).unwrap_or_else(|| panic!("{name} in status"))
    }

    fn running_pid(&self, name: &str) -> Option<i32> {
        let p = self.process(name);
        p.running.then_some(p.pid).flatten()
    }

    /// Links of a host that are administratively up, lo excepted.
    fn links_up(&self, host: &str) -> BTreeSet<String> {
        let (code, json) = self.run(host, &["ip", "-j", "link", "show"]);
        assert_eq!(code, 0);
        let links: Vec<serde_json::Value> = serde_json::from_str(&json).unwrap();
        links
            .iter()
            .filter(|l| l["flags"].as_array().is_some_and(|f| f.iter().any(|f| f == "UP")))
            .map(|l| l["ifname"].as_str().unwrap().to_string())
            .filter(|n| n != "lo")
            .collect()
    }

    fn wait_for_running(&self, name: &str, timeout: Duration) -> i32 {
        let mut pid = None;
        eventually(&format!("{name} running"), timeout, || {
            pid = self.running_pid(name);
            pid.is_some()
        });
        pid.unwrap()
    }
}

fn set(names: &[&str]) -> BTreeSet<String> {
    names.iter().map(|n| n.to_string()).collect()
}

#[test]
fn a_killed_worker_loses_links_processes_pods_and_bpf_state_until_up_repairs_it() {
    let t = TestLab::new("kill");
    let opts = node_sleepers(&t);
    t.lab.up(&opts).expect("lab up");
    let w1 = t.ns("k8s-w1");
    // Links an agent makes (up) and one left down: exactly the up ones come back.
    t.ip(&["-n", &w1, "link", "add", "cilium_host", "type", "veth", "peer", "name", "cilium_net"]);
    t.ip(&["-n", &w1, "link", "set", "cilium_host", "up"]);
    t.ip(&["-n", &w1, "link", "set", "cilium_net", "up"]);
    t.ip(&["-n", &w1, "link", "add", "spare0", "type", "veth", "peer", "name", "spare1"]);
    assert_eq!(t.links_up("k8s-w1"), set(&["eth0", "eth1", "cilium_host", "cilium_net"]));
    // A pod of k8s-w1: its runtime's record, its namespace, a process inside started by someone
    // else (no lab environment).
    let pod_ns = format!("{}pod-default-web-0123abcd", t.lab.name_prefix());
    let pods_dir = t.lab.paths().node_dir("k8s-w1").join("pods");
    fs::create_dir_all(&pods_dir).unwrap();
    fs::write(pods_dir.join("0123abcd.json"), format!(r#"{{"uid":"0123abcd","netns":"{pod_ns}"}}"#)).unwrap();
    t.ip(&["netns", "add", &pod_ns]);
    let mut pod_process = Command::new("ip").args(["netns", "exec", &pod_ns, "sleep", "1000"]).spawn().unwrap();
    let pod_process_id = ProcessId::of(pod_process.id() as i32).unwrap();
    // The node's BPF state.
    let bpf = t.lab.paths().bpf_dir().join("k8s-w1");
    fs::create_dir_all(bpf.join("links")).unwrap();

    let sleeper = ProcessId::of(t.wait_for_running("sleeper-k8s-w1", Duration::from_secs(10))).unwrap();
    let session_child = lab::procfs::with_env_all(&[("CILIA_LAB", t.lab.name()), ("CILIA_LAB_HOST", "k8s-w1")])
        .into_iter()
        .filter(|p| *p != sleeper.pid)
        .filter_map(ProcessId::of)
        .collect::<Vec<_>>();
    assert_eq!(session_child.len(), 1, "the sleeper's setsid child");
    let others: Vec<(&str, i32)> = ["etcd", "sleeper-k8s-ctr", "sleeper-k8s-w0"]
        .into_iter()
        .map(|n| (n, t.wait_for_running(n, Duration::from_secs(10))))
        .collect();
    assert!(t.ping("k8s-ctr", "192.168.10.101"));

    let before = chrono::Utc::now();
    let report = t.lab.kill_node("k8s-w1").expect("kill k8s-w1");
    eprintln!("kill took {:?}, links down within {:?}", report.elapsed, report.links_down_took);
    assert!(report.killed);
    assert!(report.failed_at >= before && report.failed_at <= chrono::Utc::now());
    assert_eq!(
        report.links_down.iter().cloned().collect::<BTreeSet<_>>(),
        set(&["eth0", "eth1", "cilium_host", "cilium_net"])
    );
    assert_eq!(report.processes_killed, ["sleeper-k8s-w1"]);
    assert_eq!(report.pod_namespaces_removed, std::slice::from_ref(&pod_ns));
    assert_eq!(report.bpf_dir_removed.as_deref(), Some(bpf.as_path()));
    assert!(report.supervisor_confirmed);

    assert!(t.links_up("k8s-w1").is_empty(), "{:?}", t.links_up("k8s-w1"));
    assert!(!t.ping("k8s-ctr", "192.168.10.101"), "a killed node answers no ping");
    let _ = pod_process.wait();
    for (what, id) in [("sleeper", sleeper), ("its session child", session_child[0]), ("pod process", pod_process_id)] {
        assert!(!id.is_alive(), "{what} survived the kill");
    }
    assert!(!lab::netns::path(&pod_ns).exists(), "pod namespace survived the kill");
    assert!(!bpf.exists(), "BPF state survived the kill");

    // It stays down; the rest of the lab does not notice.
    let until = Instant::now() + Duration::from_millis(2500);
    while Instant::now() < until {
        let p = t.process("sleeper-k8s-w1");
        assert!(!p.running && p.held, "the supervisor started a killed node's process: {p:?}");
        thread::sleep(Duration::from_millis(100));
    }
    for (name, pid) in &others {
        assert_eq!(t.running_pid(name), Some(*pid), "{name} was disturbed by the kill of k8s-w1");
    }
    let status = t.lab.status().unwrap();
    assert!(status.is_killed("k8s-w1"));
    let printed = status.to_string();
    assert!(printed.contains("killed: k8s-w1"), "{printed}");
    assert!(printed.contains(&format!("k8s-w1 (netns {w1}): killed at")), "{printed}");

    // A second kill is a no-op that names the first one's moment.
    let again = t.lab.kill_node("k8s-w1").unwrap();
    assert!(!again.killed);
    assert_eq!(again.failed_at, report.failed_at);

    // `up` boots it: the same links up, processes running again.
    t.lab.up(&opts).expect("lab up after the kill");
    assert_eq!(t.links_up("k8s-w1"), set(&["eth0", "eth1", "cilium_host", "cilium_net"]));
    assert!(t.lab.holds().is_empty());
    let pid = t.wait_for_running("sleeper-k8s-w1", Duration::from_secs(5));
    assert_ne!(pid, sleeper.pid);
    assert!(t.ping("k8s-ctr", "192.168.10.101"));
    assert!(t.ping("k8s-w1", "192.168.20.100"), "k8s-w1's routes via the router are back");
    assert!(!t.lab.status().unwrap().is_killed("k8s-w1"));
}

#[test]
fn reboot_brings_a_node_back_by_itself_and_a_hold_survives_a_supervisor_restart() {
    let t = TestLab::new("reboot");
    let opts = node_sleepers(&t);
    let report = t.lab.up(&opts).expect("lab up");
    for node in ["k8s-ctr", "k8s-w1", "k8s-w0"] {
        t.wait_for_running(&format!("sleeper-{node}"), Duration::from_secs(10));
    }

    // Only nodes can be killed.
    let e = t.lab.kill_node("router").unwrap_err();
    assert!(matches!(e, lab::LabError::NotANode { .. }), "{e}");
    let e = t.lab.kill_node("k8s-w9").unwrap_err().to_string();
    assert!(e.contains("nodes are: k8s-ctr, k8s-w1, k8s-w0"), "{e}");

    // A held node stays held across a supervisor restart.
    assert!(t.lab.kill_node("k8s-w0").unwrap().killed);
    let old = ProcessId::of(report.supervisor_pid).unwrap();
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(old.pid), nix::sys::signal::SIGTERM).unwrap();
    eventually("the supervisor stopped", Duration::from_secs(10), || !old.is_alive());
    let started = Command::new(env!("CARGO_BIN_EXE_lab-supervise")).arg(t.lab.name()).status().unwrap();
    assert!(started.success());
    eventually("a new supervisor", Duration::from_secs(10), || {
        t.lab.status().unwrap().supervisor.is_some_and(|s| s.running && s.pid != old.pid)
    });
    t.wait_for_running("sleeper-k8s-ctr", Duration::from_secs(10));
    thread::sleep(Duration::from_millis(500));
    let p = t.process("sleeper-k8s-w0");
    assert!(!p.running && p.held, "{p:?}");

    // Booting it starts its processes at once and restores its routes.
    let boot = t.lab.boot_node("k8s-w0", Duration::from_secs(10)).unwrap();
    assert!(boot.booted);
    assert!(boot.processes.iter().any(|(n, _)| n == "sleeper-k8s-w0"), "{:?}", boot.processes);
    assert!(boot.processes_took < Duration::from_secs(1), "started after {:?}", boot.processes_took);
    assert!(t.ping("k8s-ctr", "192.168.20.100"));
    assert!(t.ping("k8s-w0", "192.168.10.101"), "k8s-w0's route to the other segment is back");
    assert!(!t.lab.boot_node("k8s-w0", Duration::from_secs(1)).unwrap().booted);

    // A reboot: down for the time asked, then back without `up`.
    let before = t.running_pid("sleeper-k8s-w1").unwrap();
    let (killed, booted) = t.lab.reboot_node("k8s-w1", Duration::from_secs(2), Duration::from_secs(10)).unwrap();
    assert!(killed.killed && booted.booted);
    let down = (booted.booted_at - killed.failed_at).to_std().unwrap();
    assert!(down >= Duration::from_secs(2) && down < Duration::from_secs(4), "down for {down:?}");
    let after = booted.processes.iter().find(|(n, _)| n == "sleeper-k8s-w1").unwrap().1;
    assert_ne!(after, before);
    assert_eq!(t.running_pid("sleeper-k8s-w1"), Some(after));
    assert!(t.ping("k8s-ctr", "192.168.10.101"));
    assert!(t.lab.holds().is_empty());
}
