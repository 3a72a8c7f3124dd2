//! Shared by the end-to-end tests: a lab with a unique name, torn down even when a test panics.

#![allow(dead_code, reason = "each test binary uses a different subset")]

use std::{
    io::{BufRead, BufReader, Read},
    process::{Child, Command, Output, Stdio},
    time::{Duration, Instant},
};

pub fn cilia_bin() -> &'static str {
    env!("CARGO_BIN_EXE_cilia")
}

/// A running lab named uniquely for this test process; `down` on drop.
pub struct TestLab {
    pub name: String,
}

impl TestLab {
    /// Brings up a lab named `<prefix><pid>` (lab names are lowercase letters and digits).
    pub fn up(prefix: &str) -> TestLab {
        Self::up_with(prefix, &[])
    }

    /// [`TestLab::up`] with more arguments to `cilia lab up`.
    pub fn up_with(prefix: &str, args: &[&str]) -> TestLab {
        let lab = TestLab { name: format!("{prefix}{}", std::process::id()) };
        let out = lab.cilia(&[&["lab", "up"][..], args].concat());
        assert!(out.status.success(), "lab up failed:\n{}", text(&out));
        lab
    }

    pub fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(cilia_bin());
        cmd.args(args).env("CILIA_LAB", &self.name).env_remove("CILIA_DATASTORE");
        cmd
    }

    pub fn cilia(&self, args: &[&str]) -> Output {
        self.command(args).output().expect("running cilia")
    }

    /// Runs cilia with `stdin` as its standard input.
    pub fn cilia_stdin(&self, args: &[&str], stdin: &str) -> Output {
        use std::io::Write as _;
        let mut child = self
            .command(args)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("spawning cilia");
        child.stdin.take().expect("stdin").write_all(stdin.as_bytes()).expect("writing stdin");
        child.wait_with_output().expect("waiting for cilia")
    }

    /// Runs cilia and returns stdout, failing the test on a non-zero exit.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.cilia(args);
        assert!(out.status.success(), "cilia {args:?} failed:\n{}", text(&out));
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Polls `cilia args` until `pred` holds on its stdout, or fails after `timeout`.
    pub fn eventually(&self, args: &[&str], timeout: Duration, pred: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            let out = self.cilia(args);
            let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
            if out.status.success() && pred(&stdout) {
                return stdout;
            }
            assert!(
                Instant::now() < deadline,
                "cilia {args:?} never satisfied the condition; last output:\n{}",
                text(&out)
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The real kubectl as the lab's admin, inside k8s-ctr (`cilia lab kubectl`); fails the test on
    /// a non-zero exit.
    pub fn kubectl(&self, args: &[&str]) -> String {
        self.ok(&[&["lab", "kubectl", "--"][..], args].concat())
    }

    /// Polls kubectl until `pred` holds on its stdout (60 s at most).
    pub fn kubectl_until(&self, args: &[&str], pred: impl Fn(&str) -> bool) -> String {
        self.eventually(&[&["lab", "kubectl", "--"][..], args].concat(), Duration::from_secs(60), pred)
    }

    pub fn namespace(&self, host: &str) -> String {
        format!("{}-{host}", self.name)
    }
}

impl Drop for TestLab {
    fn drop(&mut self) {
        let out = self.cilia(&["lab", "down"]);
        if !out.status.success() {
            eprintln!("lab down of {} failed:\n{}", self.name, text(&out));
        }
    }
}

/// A file of the repository, by its path from the root.
pub fn repo_file(path: &str) -> String {
    format!("{}/../../{path}", env!("CARGO_MANIFEST_DIR"))
}

pub fn text(out: &Output) -> String {
    format!(
        "status {}\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

pub fn guide_manifest(file: &str) -> String {
    let path = format!("{}/../../examples/guide/{file}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// The address the guide's pool gives the first LoadBalancer Service.
pub const GUIDE_LB_IP: &str = "192.168.10.241";

impl TestLab {
    /// Applies the guide's webpod with `clients` (more manifests), the guide's pool, and patches
    /// webpod to type LoadBalancer, as the guide does; waits until it has the pool's first address.
    pub fn webpod_as_load_balancer(&self, clients: &str, timeout: Duration) {
        let out =
            self.cilia_stdin(&["apply", "-f", "-"], &format!("{}\n---\n{clients}", guide_manifest("webpod.yaml")));
        assert!(out.status.success(), "apply:\n{}", text(&out));
        let out = self.cilia_stdin(&["apply", "-f", "-"], &guide_manifest("lb-ippool.yaml"));
        assert!(out.status.success(), "apply pool:\n{}", text(&out));
        self.ok(&["patch", "svc", "webpod", "-p", r#"{"spec":{"type":"LoadBalancer"}}"#]);
        self.eventually(
            &["get", "svc", "webpod", "-o", "jsonpath={.status.loadBalancer.ingress[0].ip}"],
            timeout,
            |o| o.trim() == GUIDE_LB_IP,
        );
    }
}

impl TestLab {
    /// Makes `node` the one that answers ARP for the LoadBalancer IPs of webpod's Services (label
    /// `app: webpod`): L2 announcements on, a policy selecting only `node` on eth1. Returns once
    /// the router's ARP request for `lb_ip` is answered with `node`'s eth1 MAC, so traffic from
    /// the router to the LB IP enters the cluster at `node`, with no route on the router.
    pub fn announce_from(&self, node: &str, lb_ip: &str, timeout: Duration) {
        self.ok(&["config", "set", "--set", "l2announcements.enabled=true"]);
        let policy = format!(
            "apiVersion: cilium.io/v2alpha1
kind: CiliumL2AnnouncementPolicy
metadata: {{name: from-{node}}}
spec:
  serviceSelector: {{matchLabels: {{app: webpod}}}}
  nodeSelector: {{matchLabels: {{kubernetes.io/hostname: {node}}}}}
  interfaces: [\"^eth1$\"]
  loadBalancerIPs: true
"
        );
        let out = self.cilia_stdin(&["apply", "-f", "-"], &policy);
        assert!(out.status.success(), "apply the L2 policy:\n{}", text(&out));
        let link = self.ok(&["lab", "exec", node, "--", "ip", "-br", "link", "show", "eth1"]);
        let mac = link.split_whitespace().nth(2).expect("a MAC column").to_lowercase();
        self.eventually(
            &["lab", "exec", "router", "--", "arping", "-I", "eth1", "-c", "1", "-w", "1", lb_ip],
            timeout,
            |o| o.to_lowercase().contains(&format!("from {mac}")),
        );
    }
}

/// A UDP client that connects, sends one datagram and waits up to 3 s for an answer: prints
/// `refused` when an ICMP port unreachable reached its socket, `timeout` when nothing did.
const UDP_PROBE: &str = "import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.settimeout(3)
s.connect((sys.argv[1], int(sys.argv[2])))
try:
    s.send(b'x')
    s.recv(100)
    print('answered')
except ConnectionRefusedError:
    print('refused')
except socket.timeout:
    print('timeout')
";

impl TestLab {
    /// A field of Service `svc`'s spec that the operator allocates on its own (`clusterIP`,
    /// `ports[0].nodePort`), once it is there: not within the write that created the Service, nor
    /// with its LB IP.
    pub fn allocated(&self, svc: &str, path: &str, timeout: Duration) -> String {
        let jsonpath = format!("jsonpath={{.spec.{path}}}");
        self.eventually(&["get", "svc", svc, "-o", &jsonpath], timeout, |o| !o.trim().is_empty()).trim().to_string()
    }

    /// A NodePort Service on UDP 9 of the webpods, where nobody listens (whoami serves TCP 80):
    /// every backend answers with "port unreachable", which quotes the packet after DNAT (to the
    /// pod, and from the node for SNATed north-south packets) and reaches the client's connected
    /// socket only when the datapath turns the quote back into the client's own packet. Returns the
    /// ClusterIP and the node port once every node has the `backends`.
    pub fn udp_service_without_listener(&self, nodes: &[&str], backends: usize, timeout: Duration) -> (String, String) {
        let svc = "apiVersion: v1
kind: Service
metadata: {name: udp-closed}
spec:
  type: NodePort
  selector: {app: webpod}
  ports: [{port: 9, targetPort: 9, protocol: UDP}]
";
        let out = self.cilia_stdin(&["apply", "-f", "-"], svc);
        assert!(out.status.success(), "{}", text(&out));
        let ip = self.allocated("udp-closed", "clusterIP", timeout);
        let node_port = self.allocated("udp-closed", "ports[0].nodePort", timeout);
        let count = format!("count={backends}");
        // The ClusterIP on every node; the node port on k8s-ctr, which serves its own address.
        let cluster_ip = format!("{ip}:9/UDP (0)");
        let node_port_row = format!("192.168.10.100:{node_port}/UDP (0)");
        let wanted = nodes.iter().map(|n| (*n, &cluster_ip)).chain([("k8s-ctr", &node_port_row)]);
        for (node, frontend) in wanted {
            self.eventually(&["dbg", node, "bpf", "lb", "list"], timeout, |o| {
                o.lines().any(|l| l.starts_with(frontend.as_str()) && l.ends_with(&count))
            });
        }
        (ip, node_port)
    }

    /// Sends `n` UDP probes to `target` (address and port), one connected socket each, from where
    /// the command prefix `exec` runs them (`exec POD --` or `lab exec HOST --`), and returns how
    /// many were refused, with everything they printed.
    pub fn udp_probes_refused(&self, exec: &[&str], target: (&str, &str), n: usize) -> (usize, String) {
        // Half a second apart: a host sends one peer a burst of 6 ICMP errors, then 1 a second
        // (net.ipv4.icmp_ratelimit), and a backend may draw more than 6 of the probes.
        let probes = format!("for i in $(seq {n}); do python3 -c \"$0\" {} {}; sleep 0.5; done", target.0, target.1);
        let mut args = exec.to_vec();
        args.extend(["bash", "-c", &probes, UDP_PROBE]);
        let out = self.ok(&args);
        (out.lines().filter(|l| *l == "refused").count(), out)
    }
}

/// Reads `from` until a line containing `needle`, then keeps draining it in the background (so
/// the writer never blocks or dies on a closed pipe). Panics if `from` ends first.
pub fn wait_for_line(from: impl Read + Send + 'static, needle: &str, what: &str) {
    let mut reader = BufReader::new(from);
    let mut line = String::new();
    loop {
        line.clear();
        let n = reader.read_line(&mut line).unwrap_or_else(|e| panic!("{what}: {e}"));
        assert!(n > 0, "{what} exited before printing {needle:?}");
        if line.contains(needle) {
            break;
        }
    }
    std::thread::spawn(move || std::io::copy(&mut reader, &mut std::io::sink()));
}

/// Starts tcpdump (line-buffered, stopped after `secs`) in network namespace `ns` and returns once
/// it captures; its stdout is piped.
pub fn start_tcpdump(ns: &str, secs: u32, args: &[&str]) -> Child {
    let mut child = Command::new("ip")
        .args(["netns", "exec", ns, "timeout", &secs.to_string(), "tcpdump", "-l"])
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("tcpdump");
    wait_for_line(child.stderr.take().expect("piped stderr"), "listening on", "tcpdump");
    child
}

/// Network namespaces whose name starts with `prefix`.
pub fn namespaces_with_prefix(prefix: &str) -> Vec<String> {
    let out = Command::new("ip").args(["netns", "list"]).output().expect("ip netns list");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|n| n.starts_with(prefix))
        .map(str::to_string)
        .collect()
}
