//! Test scaffolding: namespaces removed on drop, an agent running inside a node namespace, and
//! the plugin binary driven the way a container runtime drives it.
#![allow(dead_code)]

use std::io::Write;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;

use cni::{CniServer, CniServerConfig, PodNetwork, PodNetworkConfig};
use ipnet::Ipv4Net;
use netconf::Netns;
use serde_json::Value;

/// The kit's network namespace (`cnit-...`, deleted when dropped, even on panic), with what the
/// plugin tests read from it.
pub struct TestNetns(testkit::TestNetns);

impl std::ops::Deref for TestNetns {
    type Target = testkit::TestNetns;

    fn deref(&self) -> &testkit::TestNetns {
        &self.0
    }
}

impl TestNetns {
    pub fn new(role: &str) -> Self {
        TestNetns(testkit::TestNetns::new("cnit", role))
    }

    /// Runs a command inside the namespace and returns its stdout.
    pub fn exec(&self, args: &[&str]) -> String {
        let out = Command::new("ip").args(["netns", "exec", &self.name]).args(args).output().expect("ip netns exec");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    pub fn ping(&self, ip: Ipv4Addr) -> bool {
        Command::new("ip")
            .args(["netns", "exec", &self.name, "ping", "-c1", "-W2", &ip.to_string()])
            .stdout(Stdio::null())
            .status()
            .expect("ping")
            .success()
    }

    /// Interface names in the namespace.
    pub fn links(&self) -> Vec<String> {
        self.exec(&["ip", "-o", "link", "show"])
            .lines()
            .filter_map(|l| l.split(": ").nth(1))
            .map(|n| n.split('@').next().unwrap_or(n).to_string())
            .collect()
    }

    /// Main-table IPv4 routes, one `ip route` line each.
    pub fn routes(&self) -> Vec<String> {
        self.exec(&["ip", "-4", "route", "show"]).lines().map(String::from).collect()
    }
}

pub fn sh(args: &[&str]) {
    let out = Command::new(args[0]).args(&args[1..]).output().expect("spawn");
    assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

pub const CIDR: &str = "172.20.1.0/24";
pub const ROUTER: Ipv4Addr = Ipv4Addr::new(172, 20, 1, 141);
pub const MTU: u32 = 1400;

/// An agent's CNI side running inside a node namespace, on a thread of its own whose runtime
/// threads all live in that namespace. Dropping it kills the agent abruptly: the runtime is
/// dropped with whatever it was doing.
pub struct Agent {
    pub network: Arc<PodNetwork>,
    pub socket: PathBuf,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Agent {
    pub fn start(node: &TestNetns, dir: &Path) -> Agent {
        let netns = Netns::open(node.path()).expect("open node netns");
        let socket = dir.join("run/cni.sock");
        let config = CniServerConfig {
            pod_network: PodNetworkConfig {
                node_name: node.name.clone(),
                pod_cidr: CIDR.parse::<Ipv4Net>().unwrap(),
                router_ip: ROUTER,
                mtu: MTU,
                route_mtu: None,
                node_netns: None,
                state_dir: dir.join("state"),
            },
            socket_path: socket.clone(),
        };
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            netns.enter().expect("enter node netns");
            let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
            rt.block_on(async move {
                match CniServer::start(config).await {
                    Ok((server, network)) => {
                        ready_tx.send(Ok(network)).unwrap();
                        let _ = stop_rx.await;
                        drop(server);
                    }
                    Err(e) => ready_tx.send(Err(e.to_string())).unwrap(),
                }
            });
        });
        let network = ready_rx.recv().expect("agent thread").expect("agent start");
        Agent { network, socket, stop: Some(stop_tx), thread: Some(thread) }
    }

    pub fn kill(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// The network configuration a runtime would pass.
pub fn net_conf(socket: &Path) -> String {
    serde_json::json!({
        "cniVersion": "1.0.0",
        "name": "cilia",
        "type": "cilia-cni",
        "agentSocket": socket,
        "mtu": MTU,
    })
    .to_string()
}

/// What the plugin printed and how it exited.
#[derive(Debug)]
pub struct CniOutput {
    pub code: i32,
    pub stdout: String,
}

impl CniOutput {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| panic!("stdout {:?} is not JSON: {e}", self.stdout))
    }

    /// The CNI error code, asserting the run failed.
    pub fn error_code(&self) -> u64 {
        assert_ne!(self.code, 0, "expected failure, got {}", self.stdout);
        let v = self.json();
        assert!(v["msg"].is_string(), "{v}");
        assert!(v["cniVersion"].is_string(), "{v}");
        v["code"].as_u64().expect("code")
    }

    pub fn assert_ok(&self) -> &Self {
        assert_eq!(self.code, 0, "plugin failed: {}", self.stdout);
        self
    }
}

/// Runs `cilia-cni` exactly as a runtime does: a clean environment with the CNI_* variables,
/// the configuration on stdin, the result on stdout.
pub fn run_cni(env: &[(&str, &str)], stdin: &str) -> CniOutput {
    let mut child = Command::new(env!("CARGO_BIN_EXE_cilia-cni"))
        .env_clear()
        .envs(env.iter().copied())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn cilia-cni");
    child.stdin.take().unwrap().write_all(stdin.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    CniOutput { code: out.status.code().unwrap_or(-1), stdout: String::from_utf8_lossy(&out.stdout).into_owned() }
}

pub fn cni(command: &str, container_id: &str, netns: &str, conf: &str) -> CniOutput {
    run_cni(
        &[
            ("CNI_COMMAND", command),
            ("CNI_CONTAINERID", container_id),
            ("CNI_NETNS", netns),
            ("CNI_IFNAME", "eth0"),
            ("CNI_PATH", "/opt/cni/bin"),
            ("CNI_ARGS", "IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME=web"),
        ],
        conf,
    )
}

/// The pod address of an ADD result.
pub fn result_ip(result: &Value) -> Ipv4Addr {
    let net: Ipv4Net = result["ips"][0]["address"].as_str().expect("ips[0].address").parse().unwrap();
    assert_eq!(net.prefix_len(), 32);
    net.addr()
}

/// Pod devices on the node.
pub fn lxc_links(node: &TestNetns) -> Vec<String> {
    node.links().into_iter().filter(|l| l.starts_with("lxc")).collect()
}
