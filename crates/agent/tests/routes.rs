//! The agent in a network namespace of its own, as root, against an in-memory datastore: the
//! routes follow the node list (added, replaced, removed when stale, others' routes untouched),
//! the Node is marked Ready and a membership Lease exists while it runs, and a second start
//! changes nothing. Nothing is sent: the namespace holds a veth pair `eth1`/`eth1p` and the routes only.

use std::{
    process::Command,
    sync::Arc,
    thread::JoinHandle,
    time::{Duration, Instant},
};

use agent::AgentConfig;
use api::{Object, ObjectRef, kinds};
use netconf::Netns;
use serde_json::json;
use store::{MemoryStore, Store};
use tokio_util::sync::CancellationToken;

/// A named network namespace with `eth1` 192.168.10.100/24 and the lab's route to the other
/// subnet via a router on it; deleted on drop, even on panic.
struct NodeNetns {
    ns: testkit::TestNetns,
}

impl NodeNetns {
    fn new() -> Self {
        let ns = NodeNetns { ns: testkit::TestNetns::new("agt", "node") };
        for cmd in [
            "ip link set lo up",
            "ip link add eth1 type veth peer name eth1p",
            "ip link set eth1p up",
            "ip addr add 192.168.10.100/24 dev eth1",
            "ip link set eth1 up",
            "ip route add 192.168.20.0/24 via 192.168.10.200 dev eth1",
        ] {
            ns.exec(cmd);
        }
        ns
    }

    fn sh(&self, args: &[&str]) -> String {
        let out = Command::new(args[0]).args(&args[1..]).output().expect("spawn");
        assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn exec(&self, cmd: &str) -> String {
        let args: Vec<&str> =
            ["ip", "netns", "exec", &self.ns.name].into_iter().chain(cmd.split_whitespace()).collect();
        self.sh(&args)
    }

    fn routes(&self) -> String {
        self.exec("ip -4 route show")
    }
}

/// `agent::run` on a thread inside the namespace, with a runtime whose threads all live there.
struct RunningAgent {
    stop: CancellationToken,
    thread: Option<JoinHandle<Result<(), String>>>,
}

impl RunningAgent {
    fn start(ns: &NodeNetns, store: Arc<dyn Store>, config: AgentConfig) -> Self {
        let netns = Netns::open(ns.ns.path()).expect("open netns");
        let stop = CancellationToken::new();
        let token = stop.clone();
        let thread = std::thread::spawn(move || {
            netns.enter().expect("enter netns");
            let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
            rt.block_on(agent::run(store, config, token)).map_err(|e| api::error::Chain(&e).to_string())
        });
        RunningAgent { stop, thread: Some(thread) }
    }

    fn shutdown(mut self) -> Result<(), String> {
        self.stop.cancel();
        self.thread.take().unwrap().join().expect("agent thread")
    }
}

impl Drop for RunningAgent {
    fn drop(&mut self) {
        self.stop.cancel();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn node(name: &str, cidr: &str, ip: &str) -> Object {
    let mut o = Object::new(&kinds::NODE, None, name);
    o.body.insert("spec".into(), json!({"podCIDR": cidr, "podCIDRs": [cidr]}));
    o.body.insert("status".into(), json!({"addresses": [{"type": "InternalIP", "address": ip}]}));
    o
}

fn eventually(what: &str, probe: impl FnMut() -> bool) {
    testkit::eventually(what, Duration::from_secs(10), probe);
}

#[test]
fn routes_follow_the_node_list_and_survive_a_restart() {
    let ns = NodeNetns::new();
    let dir = tempfile::tempdir().unwrap();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
    let put = |obj: Object| {
        rt.block_on(async {
            let r = obj.object_ref().unwrap();
            if store.get(&r).await.unwrap().is_some() {
                store.update(obj).await.unwrap();
            } else {
                store.create(obj).await.unwrap();
            }
        })
    };
    let get = |r: &ObjectRef| rt.block_on(store.get(r)).unwrap();
    put(node("me", "172.20.0.0/24", "192.168.10.100"));
    put(node("w1", "172.20.1.0/24", "192.168.10.101"));
    put(node("w0", "172.20.2.0/24", "192.168.20.100"));

    let mut config = AgentConfig::new("me");
    config.auto_direct_node_routes = true;
    config.state_dir = dir.path().join("state");
    config.cni_socket = dir.path().join("cni.sock");
    config.resync_interval = Duration::from_millis(300);
    let agent = RunningAgent::start(&ns, store.clone(), config.clone());

    eventually("the route to w1", || ns.routes().contains("172.20.1.0/24 via 192.168.10.101 dev eth1 proto 193"));
    let routes = ns.routes();
    assert!(!routes.contains("172.20.2.0/24"), "w0 is behind a router:\n{routes}");
    assert!(routes.contains("172.20.0.0/24 via 172.20.0.1 dev cilium_host proto 193 src 172.20.0.1"), "{routes}");
    let me = ObjectRef::new(&kinds::NODE, None, "me");
    let lease = ObjectRef::new(&kinds::LEASE, Some("kube-system"), "cilia-node-me");
    eventually("Ready", || {
        get(&me).and_then(|o| o.lookup_path("status.conditions")).is_some_and(|c| {
            c.as_array().is_some_and(|c| c.iter().any(|c| c["type"] == "Ready" && c["reason"] == "AgentReady"))
        })
    });
    eventually("the membership lease", || get(&lease).is_some());
    assert!(config.cni_socket.exists());

    // A new node on the segment, a changed address, a deleted node.
    put(node("w3", "172.20.3.0/24", "192.168.10.103"));
    eventually("the route to w3", || ns.routes().contains("172.20.3.0/24 via 192.168.10.103 dev eth1 proto 193"));
    put(node("w3", "172.20.3.0/24", "192.168.10.104"));
    eventually("the route to w3 replaced", || {
        ns.routes().contains("172.20.3.0/24 via 192.168.10.104 dev eth1 proto 193")
    });
    assert_eq!(ns.routes().lines().filter(|l| l.starts_with("172.20.3.0/24")).count(), 1, "{}", ns.routes());
    rt.block_on(store.delete(&ObjectRef::new(&kinds::NODE, None, "w1"), None)).unwrap();
    eventually("the route to w1 removed", || !ns.routes().contains("172.20.1.0/24"));

    // A stale route of ours (left by an earlier run) goes at the next pass; an administrator's
    // route stays.
    ns.exec("ip route add 172.20.9.0/24 via 192.168.10.109 dev eth1 proto 193");
    ns.exec("ip route add 172.20.8.0/24 via 192.168.10.108 dev eth1 proto static");
    eventually("the stale route removed", || !ns.routes().contains("172.20.9.0/24"));
    assert!(ns.routes().contains("172.20.8.0/24 via 192.168.10.108"), "{}", ns.routes());

    // A clean stop: not Ready, no lease, no socket; the kernel state stays for the next start.
    let before = ns.routes();
    agent.shutdown().unwrap();
    let cond = get(&me).unwrap().lookup_path("status.conditions").unwrap();
    assert!(cond.as_array().unwrap().iter().any(|c| c["type"] == "Ready" && c["status"] == "False"), "{cond}");
    assert!(get(&lease).is_none(), "the membership lease is revoked");
    assert!(!config.cni_socket.exists());
    assert_eq!(ns.routes(), before);

    let agent = RunningAgent::start(&ns, store.clone(), config.clone());
    eventually("Ready again", || {
        get(&me).and_then(|o| o.lookup_path("status.conditions")).is_some_and(|c| {
            c.as_array().is_some_and(|c| c.iter().any(|c| c["type"] == "Ready" && c["status"] == "True"))
        })
    });
    assert_eq!(ns.routes(), before, "a second start changes nothing");

    // The node's own CIDR changes: the agent stops and says why.
    put(node("me", "172.20.7.0/24", "192.168.10.100"));
    let deadline = Instant::now() + Duration::from_secs(10);
    while agent.thread.as_ref().is_some_and(|t| !t.is_finished()) {
        assert!(Instant::now() < deadline, "the agent kept running on a stale pod CIDR");
        std::thread::sleep(Duration::from_millis(50));
    }
    let err = agent.shutdown().unwrap_err();
    assert_eq!(err, "the pod CIDR of node me changed from 172.20.0.0/24 to 172.20.7.0/24; restarting pod networking");
}
